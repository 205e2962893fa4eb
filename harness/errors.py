"""The harness's own exception tree; third-party errors are converted at module boundaries.

::

    HarnessError
    ├── ConfigError            bad option, environment variable or config-file value
    ├── ProvisioningError      a stack failed, timed out or does not match the configuration
    ├── CloudError             an AWS API call failed (botocore ClientError converted, names the
    │                          operation, resource and region)
    ├── CommandError           a command on a bastion could not be run or failed to deliver
    │   └── CommandTimeout     the command exceeded its timeout
    ├── FaultError             a fault could not be injected or restored
    ├── GuardrailViolation     a fault or test was refused by a safety rule
    └── LabError               the lab could not start or was asked something it cannot model

botocore's ``ClientError`` never escapes a harness module unconverted; every message names the
resource and the region it concerns, so a user can act on it without a traceback.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base class of every error the harness raises on purpose."""


class ConfigError(HarnessError):
    """A configuration value is invalid; raised before any AWS or lab call."""


class ProvisioningError(HarnessError):
    """A stack could not be created, attached to, or deleted."""


class CloudError(HarnessError):
    """An AWS API call failed; carries the error code for callers that branch on it."""

    def __init__(self, message: str, *, code: str = "", operation: str = "", region: str = ""):
        super().__init__(message)
        self.code = code
        self.operation = operation
        self.region = region


class CommandError(HarnessError):
    """A command could not be run on a host (not delivered, host unknown, transport failed)."""


class CommandTimeout(CommandError):
    """A command did not finish within its timeout."""


class FaultError(HarnessError):
    """A fault could not be injected or restored."""


class GuardrailViolation(HarnessError):
    """A safety rule refused a fault or a destructive test."""


class LabError(HarnessError):
    """The lab failed to start, or was asked for something it does not model."""
