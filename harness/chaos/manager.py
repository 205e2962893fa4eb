"""Inject faults safely: ledger first, guardrails always, restore guaranteed.

``FaultManager.inject`` checks the guardrails, reads the prior state, writes the ledger intent
(fsync'd) and only then calls the API. Restore runs from the ``ActiveFault`` (context manager or
explicit call), from ``restore_all`` in fixture finalizers and on Ctrl-C/SIGTERM, and from the
ledger at the start of the next session after a crash. After a restore the changed resource is
read back and compared with the prior state.

Guardrails:
- on ``--target aws`` destructive faults need ``--allow-destructive`` and only act on stacks
  tagged by regiondrill;
- a fault that would leave no region healthy is refused unless the caller declares it
  (``allow_total_outage=True``);
- a watchdog aborts and restores everything if every region stays unhealthy for longer than
  the stop limit (default: the RTO objective).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.aws.readiness import region_healthy
from harness.aws.session import SessionFactory, aws_call
from harness.aws.stacks import TAG_STACK_SET, Deployment
from harness.chaos.faults import CATALOGUE, Fault, restore_from_ledger
from harness.chaos.ledger import Entry, Ledger
from harness.clock import Clock
from harness.config import HarnessConfig
from harness.errors import CloudError, FaultError, GuardrailViolation, HarnessError

log = logging.getLogger(__name__)
Say = Callable[[str], None]


@dataclass
class ActiveFault:
    """A fault currently injected; restore it with ``restore()`` or by leaving the ``with``."""

    id: str
    fault: Fault
    prior: Mapping[str, Any]
    injected_at: float  # modelled time
    manager: FaultManager = field(repr=False)
    restored_at: float | None = None

    def restore(self) -> None:
        self.manager.restore(self)

    def __enter__(self) -> ActiveFault:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.restored_at is None:
            self.restore()


def environment_of(
    sessions: SessionFactory, target_name: str, lab_endpoint: str | None
) -> dict[str, Any]:
    """Where faults are injected, so a later session knows whether an entry is its own."""
    if target_name == "lab":
        return {"target": "lab", "endpoint": lab_endpoint}
    with aws_call("GetCallerIdentity"):
        account = sessions.client("sts", "us-east-1").get_caller_identity()["Account"]
    return {"target": "aws", "account": account}


class FaultManager:
    """Inject and restore faults for one session."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        deployment: Deployment,
        config: HarnessConfig,
        clock: Clock,
        ledger: Ledger,
        run_id: str,
        environment: Mapping[str, Any],
        say: Say | None = None,
    ) -> None:
        self.sessions = sessions
        self.deployment = deployment
        self.config = config
        self.clock = clock
        self.ledger = ledger
        self.run_id = run_id
        self.environment = dict(environment)
        self._say = say or (lambda line: None)
        self._lock = threading.RLock()
        self.active: list[ActiveFault] = []
        self.history: list[ActiveFault] = []
        self.aborted: str | None = None
        self._tags_checked = False
        self._watchdog: Watchdog | None = None

    # ------------------------------------------------------------------ guardrails

    def _check_guardrails(self, fault: Fault, allow_total_outage: bool) -> None:
        if self.aborted:
            raise GuardrailViolation(f"fault injection stopped: {self.aborted}")
        if self.config.target == "aws":
            if fault.DESTRUCTIVE and not self.config.allow_destructive:
                raise GuardrailViolation(
                    f"refusing {fault.describe()} on AWS without --allow-destructive"
                )
            self._check_tagged()
        all_regions = set(self.deployment.region_names)
        down = set().union(*(a.fault.takes_down for a in self.active), fault.takes_down)
        if down >= all_regions and not allow_total_outage:
            raise GuardrailViolation(
                f"refusing {fault.describe()}: it would leave no healthy region "
                f"({', '.join(sorted(down))} down); pass allow_total_outage=True to test that on purpose"
            )

    def _check_tagged(self) -> None:
        """Faults only touch resources of stacks regiondrill tagged (never arbitrary ones)."""
        if self._tags_checked:
            return
        for stack in self.deployment.stacks:
            with aws_call(f"DescribeStacks {stack.name}", stack.deployed_in):
                found = self.sessions.client("cloudformation", stack.deployed_in).describe_stacks(
                    StackName=stack.name
                )["Stacks"][0]
            tags = {t["Key"]: t["Value"] for t in found.get("Tags") or []}
            if tags.get(TAG_STACK_SET) != self.deployment.stack_set:
                raise GuardrailViolation(
                    f"stack {stack.name} in {stack.deployed_in} is not tagged "
                    f"{TAG_STACK_SET}={self.deployment.stack_set}; regiondrill only injects faults "
                    "into stacks it tagged"
                )
        self._tags_checked = True

    # ------------------------------------------------------------------ inject / restore

    def inject(self, fault: Fault, *, allow_total_outage: bool = False) -> ActiveFault:
        """Inject ``fault`` (ledger first) and return its handle."""
        with self._lock:
            self._check_guardrails(fault, allow_total_outage)
            prior = fault.capture(self.sessions)
            fault_id = self.ledger.intent(
                fault.KIND, fault.target, prior, run_id=self.run_id, environment=self.environment
            )
            try:
                fault.inject(self.sessions, prior)
            except BaseException as exc:
                # A half-made change is still a change: put back what we can, then report.
                problems = self._restore_quietly(fault.KIND, fault.target, prior)
                self.ledger.mark(
                    fault_id,
                    "restored" if not problems else "restore_failed",
                    f"injection failed: {exc}",
                )
                if isinstance(exc, HarnessError):
                    raise FaultError(f"injecting {fault.describe()} failed: {exc}") from exc
                raise
            injected_at = self.clock.now()
            self.ledger.mark(fault_id, "injected")
            active = ActiveFault(fault_id, fault, prior, injected_at, self)
            self.active.append(active)
            self.history.append(active)
            self._say(f"fault injected: {fault.describe()}")
            return active

    def restore(self, active: ActiveFault) -> None:
        """Restore one fault and check the resource is back to its prior state.

        Raises:
            FaultError: the state could not be restored (the ledger keeps it outstanding).
        """
        with self._lock:
            if active.restored_at is not None:
                return
            problems = self._restore_quietly(active.fault.KIND, active.fault.target, active.prior)
            if problems:
                self.ledger.mark(active.id, "restore_failed", "; ".join(problems))
                raise FaultError(
                    f"restoring {active.fault.describe()} failed: {'; '.join(problems)}"
                )
            active.restored_at = self.clock.now()
            self.ledger.mark(active.id, "restored")
            if active in self.active:
                self.active.remove(active)
            self._say(f"fault restored: {active.fault.describe()}")

    def restore_all(self) -> list[str]:
        """Restore every active fault, newest first; return the failures (never raises)."""
        failures = []
        for active in reversed(list(self.active)):
            try:
                self.restore(active)
            except FaultError as exc:
                failures.append(str(exc))
                log.error("%s", exc)
        return failures

    def _restore_quietly(
        self, kind: str, target: Mapping[str, Any], prior: Mapping[str, Any]
    ) -> list[str]:
        try:
            return restore_from_ledger(self.sessions, kind, target, prior)
        except (HarnessError, CloudError) as exc:
            return [str(exc)]

    # ------------------------------------------------------------------ stop condition

    def start_watchdog(self, *, limit: float | None = None, every: float = 5.0) -> None:
        """Abort and restore if every region is unhealthy for longer than ``limit`` (modelled s)."""
        if self._watchdog is None:
            self._watchdog = Watchdog(
                self, limit=limit if limit is not None else self.config.rto, every=every
            )
            self._watchdog.start()

    def stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None

    def abort(self, reason: str) -> None:
        self.aborted = reason
        self._say(f"STOP: {reason}; restoring every fault")
        self.restore_all()

    def raise_if_aborted(self) -> None:
        if self.aborted:
            raise GuardrailViolation(f"the run was stopped: {self.aborted}")


class Watchdog:
    """Polls Route 53's view of every region; aborts the run if all stay unhealthy too long."""

    def __init__(self, manager: FaultManager, *, limit: float, every: float) -> None:
        self.manager = manager
        self.limit = limit
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-watchdog", daemon=True)
        self.all_down_since: float | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        clock = self.manager.clock
        while not self._stop.wait(clock.wall_duration(self.every)):
            try:
                healthy = [
                    region_healthy(self.manager.sessions, r.health_check_id)
                    for r in self.manager.deployment.regions
                ]
            except HarnessError as exc:
                log.warning("watchdog could not read health-check status: %s", exc)
                continue
            now = clock.now()
            if any(healthy):
                self.all_down_since = None
                continue
            if self.all_down_since is None:
                self.all_down_since = now
            elif now - self.all_down_since > self.limit:
                self.manager.abort(
                    f"every region has been unhealthy for {now - self.all_down_since:.0f}s "
                    f"(limit {self.limit:.0f}s)"
                )
                return


# ---------------------------------------------------------------------- recovery


@dataclass(frozen=True)
class Recovery:
    """What restoring outstanding ledger entries did."""

    restored: tuple[Entry, ...]
    failed: tuple[tuple[Entry, str], ...]
    abandoned: tuple[tuple[Entry, str], ...]
    foreign: tuple[Entry, ...]


def recover(
    ledger: Ledger,
    sessions: SessionFactory,
    environment: Mapping[str, Any],
    *,
    is_alive: Callable[[Mapping[str, Any]], bool] | None = None,
    say: Say | None = None,
) -> Recovery:
    """Restore every outstanding ledger entry that belongs to ``environment``.

    Entries from a lab that no longer runs are marked abandoned (the lab and its state are
    gone); entries from another environment are left alone and reported as foreign.
    """
    say = say or (lambda line: None)
    restored: list[Entry] = []
    failed: list[tuple[Entry, str]] = []
    abandoned: list[tuple[Entry, str]] = []
    foreign: list[Entry] = []
    for entry in ledger.outstanding():
        if dict(entry.environment) != dict(environment):
            if (
                entry.environment.get("target") == "lab"
                and is_alive is not None
                and not is_alive(entry.environment)
            ):
                note = (
                    f"the lab at {entry.environment.get('endpoint')} is gone, and its state with it"
                )
                ledger.mark(entry.id, "abandoned", note)
                abandoned.append((entry, note))
            else:
                foreign.append(entry)
            continue
        if entry.kind not in CATALOGUE:
            failed.append((entry, f"unknown fault kind {entry.kind}"))
            continue
        try:
            problems = restore_from_ledger(sessions, entry.kind, entry.target, entry.prior)
        except (HarnessError, CloudError) as exc:
            problems = [str(exc)]
        if problems:
            ledger.mark(entry.id, "restore_failed", "; ".join(problems))
            failed.append((entry, "; ".join(problems)))
            say(f"could not restore {entry.describe()}: {'; '.join(problems)}")
        else:
            ledger.mark(entry.id, "restored", "restored after an interrupted run")
            restored.append(entry)
            say(f"restored {entry.describe()} (left by run {entry.run_id})")
    return Recovery(tuple(restored), tuple(failed), tuple(abandoned), tuple(foreign))


def describe_entries(entries: Iterable[Entry]) -> str:
    return ", ".join(entry.describe() for entry in entries)
