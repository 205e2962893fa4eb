"""The regiondrill pytest plugin: options, validated configuration, fixtures and reporting hooks.

Loaded by the repository's ``conftest.py``. Configuration is validated in ``pytest_configure``
so a bad value fails at start-up with a usage error (exit code 4) before any AWS or lab call,
even under ``--collect-only``.

Session fixtures:
  harness_config  the frozen HarnessConfig
  target          the opened target (an in-process lab by default, a lab attached with
                  --lab-url, or AWS)
  deployment      the provisioned stack set (created, or attached with --reuse-stacks), torn
                  down at session end unless --keep-stacks
  bastions        every bastion of the deployment, reached over SSM, checked Online
  bastion_in      bastion_in(region) -> the first bastion in that region
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from harness import config as config_module
from harness.config import HarnessConfig
from harness.errors import ConfigError, HarnessError

if TYPE_CHECKING:
    from harness.aws.stacks import Deployment, StackSetDeployer
    from harness.targets import Target

CONFIG_KEY = pytest.StashKey[HarnessConfig]()
Say = Callable[[str], None]


def pytest_addoption(parser: pytest.Parser) -> None:
    config_module.add_pytest_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    try:
        config.stash[CONFIG_KEY] = config_module.from_pytest(config)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    from harness.report.recorder import RECORD_KEY, RunRecord

    config.stash[RECORD_KEY] = RunRecord()
    config.pluginmanager.import_plugin("harness.chaos.fixtures")
    config.pluginmanager.import_plugin("harness.report.pytest_plugin")
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (CI cancelling a job, `kill`) must run the same teardown as Ctrl-C: stacks
        # deleted, faults restored. Python's default would just die.
        signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def harness_config_of(config: pytest.Config) -> HarnessConfig:
    """Return the validated configuration of a pytest run."""
    return config.stash[CONFIG_KEY]


def progress_writer(config: pytest.Config) -> Say:
    """Return a function printing live progress lines on the terminal (even under capture)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def write(line: str) -> None:
        if reporter is not None:
            reporter.write_line(f"regiondrill: {line}")

    return write


@pytest.fixture(scope="session")
def harness_config(pytestconfig: pytest.Config) -> HarnessConfig:
    """The run's validated, frozen configuration."""
    return harness_config_of(pytestconfig)


@pytest.fixture(scope="session")
def target(harness_config: HarnessConfig, pytestconfig: pytest.Config) -> Iterator[Target]:
    """The opened target: the lab (in-process, or attached with --lab-url) or AWS."""
    from harness.targets import open_target

    say = progress_writer(pytestconfig)
    opened = open_target(harness_config)
    if opened.is_lab:
        info = opened.lab_info
        where = "in-process" if opened.lab is not None else "attached"
        say(f"lab {where} at {info.endpoint} (clock x{info.clock.speed:g})")
    else:
        say("target: AWS")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="session")
def deployment(
    harness_config: HarnessConfig, target: Target, fault_ledger: Any, pytestconfig: pytest.Config
) -> Iterator[Deployment]:
    """The stack set for the configured regions, in service, torn down unless --keep-stacks.

    Faults left by an interrupted run are restored first (``fault_ledger``); then the stacks are
    deployed (or attached) and the session waits for the steady state (harness.aws.readiness).
    """
    from harness.aws.stacks import StackSetDeployer

    say = progress_writer(pytestconfig)
    deployer = StackSetDeployer(harness_config, target.sessions, progress=say)
    try:
        deployed = deployer.deploy()
    except (HarnessError, KeyboardInterrupt):
        if not harness_config.keep_stacks:
            _teardown(deployer, say)
        raise
    try:
        _wait_in_service(deployed, target, harness_config, say)
        yield deployed
    finally:
        if harness_config.keep_stacks:
            created = len(deployed.created_stacks)
            say(f"--keep-stacks: leaving {created} stack(s) of run {deployed.run_id} in place")
        else:
            _teardown(deployer, say)


def _wait_in_service(deployed: Deployment, target: Target, config: HarnessConfig, say: Say) -> None:
    """Hold the scenarios until the deployment is in its steady state (harness.aws.readiness)."""
    from harness.aws import readiness

    if target.lab_info is not None:
        settle = target.lab_info.health_propagation
    else:
        settle = readiness.AWS_PROPAGATION
    took = readiness.wait_in_service(
        target.sessions,
        deployed,
        clock=target.clock,
        settle=settle + config.probe_interval,
        timeout=readiness.IN_SERVICE_TIMEOUT["lab" if target.is_lab else "aws"],
        interval=config.probe_interval,
        say=say,
    )
    say(f"deployment in service: every health check and NLB target healthy ({took:.0f}s)")


def _teardown(deployer: StackSetDeployer, say: Say) -> None:
    try:
        deployer.teardown()
    except HarnessError as exc:
        say(f"teardown failed: {exc}")
        raise


# ---------------------------------------------------------------------- bastions
# How long bastions' SSM agents may take to come Online after the stacks complete (modelled
# seconds): minutes on AWS; the lab's agents register within a few lab seconds.
BASTION_READY_WAIT = {"aws": 600.0, "lab": 120.0}


@pytest.fixture(scope="session")
def bastions(deployment: Deployment, target: Target, pytestconfig: pytest.Config) -> Iterator[Any]:
    """Every bastion of the deployment (list[harness.hosts.bastion.Bastion]), over SSM.

    Fails the first test that uses it, naming every bastion that is not running or whose SSM
    agent is not Online after waiting for the agents to register.
    """
    from harness.hosts.bastion import discover_bastions

    say = progress_writer(pytestconfig)
    found = discover_bastions(
        deployment,
        target.sessions,
        clock=target.clock,
        wait=BASTION_READY_WAIT["lab" if target.is_lab else "aws"],
    )
    say(
        f"{len(found)} bastion(s) online over SSM: "
        + ", ".join(f"{b.instance_id} ({b.availability_zone})" for b in found)
    )
    try:
        yield found
    finally:
        for bastion in found:
            bastion.executor.close()


@pytest.fixture(scope="session")
def bastion_in(bastions: Any) -> Callable[[str], Any]:
    """Return a function giving the first bastion in a region (ConfigError naming it if none)."""
    from harness.hosts.bastion import bastion_in as first_in

    def find(region: str) -> Any:
        return first_in(bastions, region)

    return find


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A scenario that takes a ``region`` argument runs once per configured region.
    if "region" in metafunc.fixturenames and not any(
        "region" in marker.args[0] for marker in metafunc.definition.iter_markers("parametrize")
    ):
        metafunc.parametrize("region", harness_config_of(metafunc.config).region_names)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Record each test's outcome in the run record (for the DR-readiness report)."""
    from harness.report.recorder import RECORD_KEY, ScenarioOutcome

    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    record = item.config.stash.get(RECORD_KEY, None)
    if record is None:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        result = (
            report.outcome if report.when == "call" else ("skipped" if report.skipped else "error")
        )
        message = ""
        if report.longrepr is not None and result != "passed":
            crash = getattr(report.longrepr, "reprcrash", None)
            message = str(crash.message if crash is not None else report.longrepr)[:500]
        record.add_outcome(
            ScenarioOutcome(
                nodeid=report.nodeid,
                outcome=result,
                duration=report.duration,
                markers=tuple(sorted({m.name for m in item.iter_markers()})),
                message=message,
            )
        )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    from harness.report.recorder import RECORD_KEY, rto_table

    record = config.stash.get(RECORD_KEY, None)
    if record is None:
        return
    table = rto_table(record)
    if table:
        terminalreporter.section("regiondrill: failover and failback times (modelled seconds)")
        for line in table:
            terminalreporter.write_line(line)
    if record.findings:
        terminalreporter.section("regiondrill: findings")
        for finding in record.findings:
            terminalreporter.write_line(
                f"[{finding.severity}] {finding.title}: {finding.explanation}"
            )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    harness = harness_config_of(config)
    destructive = pytest.mark.skip(
        reason="destructive test on --target aws: pass --allow-destructive to inject faults into "
        "the regiondrill stacks of this account"
    )
    aws_only = pytest.mark.skip(reason="needs a real AWS account: run with --target aws")
    for item in items:
        if (
            harness.target == "aws"
            and not harness.allow_destructive
            and item.get_closest_marker("destructive")
        ):
            item.add_marker(destructive)
        if harness.target != "aws" and item.get_closest_marker("aws"):
            item.add_marker(aws_only)


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
