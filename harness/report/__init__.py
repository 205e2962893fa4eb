"""The DR-readiness record of a run: what was measured, found and injected, and the verdict."""
