"""pytest fixtures for fault injection (loaded by harness.plugin).

fault_ledger   the run's fault ledger (<report-dir>/fault-ledger.jsonl); at session start every
               outstanding entry of this target is restored first, and scenarios refuse to
               start if that fails
chaos          a FaultManager bound to the deployment; every fault still active when a test
               ends is restored by its finalizer (and at session end, and on Ctrl-C/SIGTERM)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest
import requests

from harness.chaos.drill import Drill
from harness.chaos.ledger import Ledger
from harness.chaos.manager import FaultManager, describe_entries, environment_of, recover
from harness.config import HarnessConfig
from harness.errors import FaultError
from harness.report.recorder import RECORD_KEY, RunRecord

if TYPE_CHECKING:
    from harness.aws.stacks import Deployment
    from harness.targets import Target


def lab_is_alive(environment: Mapping[str, Any]) -> bool:
    """True if the lab an old ledger entry was written against still answers."""
    endpoint = environment.get("endpoint")
    if not endpoint:
        return False
    try:
        requests.get(f"{endpoint.rstrip('/')}/_lab/info", timeout=2)
    except requests.RequestException:
        return False
    return True


@pytest.fixture(scope="session")
def fault_ledger(
    harness_config: HarnessConfig, target: Target, pytestconfig: pytest.Config
) -> Ledger:
    """The fault ledger, with leftovers from interrupted runs restored before anything runs."""
    from harness.plugin import progress_writer

    say = progress_writer(pytestconfig)
    ledger = Ledger.in_dir(harness_config.report_dir)
    if not ledger.outstanding():
        return ledger
    environment = environment_of(
        target.sessions, target.name, target.lab_info.endpoint if target.is_lab else None
    )
    say(
        f"fault ledger has outstanding faults from an earlier run: {describe_entries(ledger.outstanding())}"
    )
    recovery = recover(ledger, target.sessions, environment, is_alive=lab_is_alive, say=say)
    for entry, note in recovery.abandoned:
        say(f"abandoned {entry.describe()}: {note}")
    if recovery.failed:
        details = "; ".join(f"{entry.describe()}: {why}" for entry, why in recovery.failed)
        raise FaultError(
            f"refusing to start scenarios: faults from an earlier run could not be restored ({details}); "
            "fix them and run `regiondrill restore`"
        )
    if recovery.foreign:
        say(
            "outstanding faults belong to another target and were left alone: "
            f"{describe_entries(recovery.foreign)} (restore them with `regiondrill restore` against that target)"
        )
    return ledger


@pytest.fixture(scope="session")
def chaos_session(
    harness_config: HarnessConfig,
    target: Target,
    deployment: Deployment,
    fault_ledger: Ledger,
    pytestconfig: pytest.Config,
) -> Iterator[FaultManager]:
    """The session's FaultManager; restores everything still injected at session end."""
    from harness.plugin import progress_writer

    environment = environment_of(
        target.sessions, target.name, target.lab_info.endpoint if target.is_lab else None
    )
    manager = FaultManager(
        sessions=target.sessions,
        deployment=deployment,
        config=harness_config,
        clock=target.clock,
        ledger=fault_ledger,
        run_id=deployment.run_id,
        environment=environment,
        say=progress_writer(pytestconfig),
    )
    manager.start_watchdog()
    try:
        yield manager
    finally:
        manager.stop_watchdog()
        failures = manager.restore_all()
        if failures:
            raise FaultError("faults could not be restored at session end: " + "; ".join(failures))


@pytest.fixture
def chaos(chaos_session: FaultManager) -> Iterator[FaultManager]:
    """Inject faults in a test; whatever is still injected when the test ends is restored."""
    chaos_session.raise_if_aborted()
    try:
        yield chaos_session
    finally:
        failures = chaos_session.restore_all()
        if failures:
            raise FaultError("faults could not be restored after the test: " + "; ".join(failures))


@pytest.fixture(scope="session")
def run_record(pytestconfig: pytest.Config) -> RunRecord:
    """The run's record: measured phases, findings and scenario outcomes."""
    return pytestconfig.stash[RECORD_KEY]


@pytest.fixture(scope="session")
def drill(
    harness_config: HarnessConfig,
    target: Target,
    deployment: Deployment,
    bastions: Any,
    chaos_session: FaultManager,
    pytestconfig: pytest.Config,
) -> Drill:
    """Measure failover and failback of faults from every bastion."""
    from harness.plugin import progress_writer

    return Drill(
        config=harness_config,
        deployment=deployment,
        sessions=target.sessions,
        clock=target.clock,
        bastions=bastions,
        chaos=chaos_session,
        say=progress_writer(pytestconfig),
    )
