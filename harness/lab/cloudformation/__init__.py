"""CloudFormation in the lab: an asynchronous stack engine over moto's resource models."""
