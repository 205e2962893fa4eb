"""The regiondrill pytest plugin: options, validated configuration, fixtures and reporting hooks.

Loaded by the repository's ``conftest.py``. Configuration is validated in ``pytest_configure``
so a bad value fails at start-up with a usage error (exit code 4) before any AWS or lab call,
even under ``--collect-only``.
"""

from __future__ import annotations

import pytest

from harness import config as config_module
from harness.config import HarnessConfig
from harness.errors import ConfigError

CONFIG_KEY = pytest.StashKey[HarnessConfig]()


def pytest_addoption(parser: pytest.Parser) -> None:
    config_module.add_pytest_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    try:
        config.stash[CONFIG_KEY] = config_module.from_pytest(config)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None


def harness_config_of(config: pytest.Config) -> HarnessConfig:
    """Return the validated configuration of a pytest run."""
    return config.stash[CONFIG_KEY]


@pytest.fixture(scope="session")
def harness_config(pytestconfig: pytest.Config) -> HarnessConfig:
    """The run's validated, frozen configuration."""
    return harness_config_of(pytestconfig)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # `pytest -m failover` before any failover scenario exists (or a marker expression that
    # matches nothing) is not an error for a user: say so and exit 0 instead of pytest's 5.
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and session.config.option.markexpr:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = (
            f"regiondrill: no tests match -m {session.config.option.markexpr!r}; nothing to do"
        )
        if reporter is not None:
            reporter.write_line(message, yellow=True)
        session.exitstatus = pytest.ExitCode.OK
