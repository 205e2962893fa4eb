"""Per-service overlays: the AWS operations the lab answers itself (moto answers the rest)."""
