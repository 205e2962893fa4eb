"""regiondrill: chaos and disaster-recovery validation for multi-region private REST APIs on AWS."""

__version__ = "0.1.0"
