"""Randomised chaos: a hypothesis state machine injects faults in any order, the oracle judges.

Fixed scenarios test the faults somebody thought of; this tests the sequences nobody wrote
down. ``ChaosMachine`` is a ``RuleBasedStateMachine`` with one rule per fault of the catalogue
(invert a health check, fail the NLB targets, blackhole a peering, throttle the API); a rule
toggles its fault, injecting it when it is not in place and restoring it when it is, through the
session's ``FaultManager`` (ledger first, guardrails on). After every step every bastion's
``dig`` and ``curl`` are polled, and every observation must be one the oracle
(``harness.chaos.model``) accepts for its time: old answers stay acceptable for the change's
model window plus the TTL, after which only the new truth is. The step is over when every
bastion shows the new truth after the instant from which Route 53's view and the data path can
no longer change (``Oracle.stable_from``), at the latest when the oracle accepts nothing else.
So each wait is bounded by the analytic model (on the lab clock; by the objective on AWS) and
is usually much shorter.

What the oracle expects but hurts clients is a finding, not a failure: a throttled region still
answered by DNS (health-check blind spot), clients failed over across a blackholed peering
(stranded), every region unhealthy so Route 53 fails open, and convergence slower than
``--rto``. Findings go to the run record, deduplicated by (kind, regions). A divergence the
oracle does not expect fails the run with the (shrunk) fault sequence and the observed and
expected answers of every bastion; hypothesis adds the replayable program.

Guardrails: while every region is unhealthy nothing is injected and only health faults are
restored, so a total outage lasts one step (the manager's watchdog aborts one that outlasts the
objective); a total outage is only injected when the model says it and its recovery fit in the
objective. Teardown restores every fault through the ledger and waits for the steady state, so
the next sequence starts clean; the run's first sequence first checks the steady-state
hypothesis (health checks and targets healthy through the API, one TTL of agreeing answers).

Probes that did not observe anything are asked again: a shell that could not execute the tool
(exit 126/127) and a curl that spent its whole connect timeout resolving the name (curl's
connect timeout covers the lookup; DNS is judged by dig).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyFailure
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from harness.aws.readiness import unhealthy_inputs
from harness.aws.stacks import Deployment
from harness.chaos import faults
from harness.chaos.manager import ActiveFault, FaultManager
from harness.chaos.model import (
    BLACKHOLE,
    BLIND_SPOT,
    ERROR,
    FAIL_OPEN,
    FAIL_TARGETS,
    FAULT_KINDS,
    INVERT,
    OK,
    STRANDED,
    THROTTLE,
    UNREACHABLE,
    ApiOutcome,
    Change,
    Delay,
    Expected,
    FaultSpec,
    Hazard,
    HealthDelays,
    Oracle,
    Timing,
)
from harness.clock import Clock
from harness.config import HarnessConfig
from harness.errors import CommandError, ConfigError, FaultError
from harness.probes.curl import CurlResult
from harness.probes.dig import DigResult
from harness.report.recorder import Finding, RunRecord

Say = Callable[[str], None]

SLOW = "slow_convergence"
# Rule arguments drawn from the machine's own world (rules are defined before any world exists).
_REGION = st.runner().flatmap(lambda machine: st.sampled_from(machine.world.regions))
_PAIR = st.runner().flatmap(lambda machine: st.sampled_from(machine.world.pairs))
# curl exit codes of a connection that never got through: could not connect / timed out.
_NOT_CONNECTED = frozenset({7, 28})
# Shell exit codes of a command that never ran (not executable / not found): no observation.
_NOT_RUN = frozenset({126, 127})
PROBE_ATTEMPTS = 3
PROBE_SLACK = 5.0  # wall seconds for the transport around a probe
# On AWS nothing publishes how long Route 53 takes: allow twice the objective before a change
# that has not shown counts as a failure (between the objective and this, it is slow_convergence).
UNMODELLED_FACTOR = 2.0
UNMODELLED_DATA_PLANE = Delay(0.0, 60.0)  # TGW route and Lambda concurrency changes on AWS


# ---------------------------------------------------------------------- observations


@dataclass(frozen=True)
class ObservedApi:
    """What one ``curl`` of the API met: ``ok``, ``error``, ``unreachable`` or ``failed``.

    ``failed`` is anything the oracle never expects (TLS failure, a timeout after connecting, a
    2xx without a region...); ``detail`` says what exactly.
    """

    kind: str
    region: str | None = None
    status: int | None = None
    detail: str = ""
    address: str | None = None  # the NLB node curl connected to (evidence)

    def matches(self, outcome: ApiOutcome) -> bool:
        """Return whether this observation is the outcome the oracle describes."""
        if self.kind != outcome.kind:
            return False
        if self.kind == OK:
            return self.region == outcome.region
        if self.kind == ERROR and self.status != outcome.status:
            return False
        return self.region is None or self.region == outcome.region

    def describe(self) -> str:
        where = self.region or "unknown region"
        if self.address:
            where += f" via {self.address}"
        if self.kind == OK:
            return f"200 from {where}"
        if self.kind == ERROR:
            return f"HTTP {self.status} from {where}"
        if self.kind == UNREACHABLE:
            return f"unreachable ({where}; {self.detail})"
        return f"failed: {self.detail}"


@dataclass(frozen=True)
class Observation:
    """One bastion's ``dig`` and ``curl`` of the API, made during [started, ended] (modelled)."""

    bastion: str
    client: str  # the bastion's region
    started: float
    ended: float
    addresses: tuple[str, ...]
    dns_region: str | None
    dns_problem: str | None
    api: ObservedApi

    def describe(self) -> str:
        dns = self.dns_problem or f"{self.dns_region} ({', '.join(self.addresses)})"
        return f"DNS -> {dns}; API -> {self.api.describe()}"


def read_dns(result: DigResult, region_of: Mapping[str, str]) -> tuple[str | None, str | None]:
    """Return (the one region every answer address belongs to, or why there is none)."""
    addresses = result.addresses
    if not addresses:
        why = f"no address ({result.status}"
        why += f": {result.error_message})" if result.error_message else ")"
        return None, why
    regions = {region_of.get(a) for a in addresses}
    if None in regions:
        unknown = [a for a in addresses if a not in region_of]
        return None, f"addresses {', '.join(unknown)} belong to no region's NLB"
    if len(regions) > 1:
        return None, f"addresses of several regions: {', '.join(sorted(map(str, regions)))}"
    return regions.pop(), None


def read_api(result: CurlResult, region_of: Mapping[str, str]) -> ObservedApi:
    """Classify one ``curl`` of the API; anything the oracle never expects is ``failed``."""
    address = result.remote_ip
    at = region_of.get(address or "")
    if result.exit_code == 0 and result.http_code is not None:
        if 200 <= result.http_code < 300:
            if not result.region:
                return ObservedApi("failed", at, result.http_code, "2xx without a region", address)
            return ObservedApi(OK, result.region, result.http_code, "", address)
        return ObservedApi(ERROR, at, result.http_code, result.body[:120], address)
    never_connected = not result.time_connect  # curl reports 0 for a phase it never reached
    if result.exit_code in _NOT_CONNECTED and never_connected:
        return ObservedApi(UNREACHABLE, at, None, f"curl exit {result.exit_code}", address)
    reason = result.stderr_message or result.exit_meaning or result.parse_error or ""
    return ObservedApi(
        "failed", at, result.http_code, f"curl exit {result.exit_code}: {reason}", address
    )


def lookup_ate_the_budget(result: CurlResult, connect_timeout: float) -> bool:
    """Return whether curl timed out still resolving (no connection was ever tried)."""
    if result.exit_code != 28 or result.time_connect:
        return False
    lookup = result.time_namelookup or 0.0
    return lookup == 0.0 or lookup >= 0.9 * connect_timeout


def disagreements(observation: Observation, expected: Expected) -> list[str]:
    """Return how ``observation`` differs from what ``expected`` accepts (empty: it agrees)."""
    problems = []
    if observation.dns_problem is not None:
        problems.append(f"DNS: {observation.dns_problem}")
    elif observation.dns_region not in expected.dns:
        problems.append(
            f"DNS answered {observation.dns_region}, expected one of "
            f"{{{', '.join(sorted(expected.dns))}}}"
        )
    if not any(observation.api.matches(o) for o in expected.api):
        problems.append(
            f"API {observation.api.describe()}, expected one of "
            f"{{{'; '.join(o.describe() for o in sorted(expected.api))}}}"
        )
    return problems


def confirms(observation: Observation, hazard: Hazard) -> bool:
    """Return whether an observation shows the hazard the oracle predicted."""
    if hazard.kind == FAIL_OPEN:
        return observation.dns_region == hazard.dns_region
    return hazard.outcome is not None and observation.api.matches(hazard.outcome)


class ChaosDivergence(AssertionError):
    """The target did something the oracle does not accept (a failure, not a finding)."""


# ---------------------------------------------------------------------- the world


@dataclass
class ChaosStats:
    """What a run did: steps, examples, wall time, and when the first failure was seen."""

    examples: int = 0
    steps: int = 0
    polls: int = 0
    started: float = field(default_factory=time.monotonic)
    first_failure: float | None = None  # time.monotonic() of the first divergence
    reruns: int = 0  # probes asked again because they observed nothing (see the docstring)
    slowest_step: float = 0.0  # modelled seconds from a change to convergence


@dataclass
class ChaosWorld:
    """Everything a ChaosMachine works with (rules cannot take fixtures: built once, shared)."""

    config: HarnessConfig
    deployment: Deployment
    manager: FaultManager
    bastions: Sequence[Any]  # harness.hosts.bastion.Bastion
    clock: Clock
    oracle: Oracle
    nodes: Mapping[str, tuple[str, ...]]  # region -> NLB node addresses
    record: RunRecord
    scenario: str = ""
    seed: int | None = None
    say: Say = field(default=lambda line: None)
    stats: ChaosStats = field(default_factory=ChaosStats)
    steady: bool = False  # the last sequence's teardown left the steady state for good
    # The fault kinds the rules may use (all four by default); a rule of another kind is a
    # no-op step. Tests and benchmarks narrow it to keep planted failures quick to shrink.
    kinds: frozenset[str] = frozenset(FAULT_KINDS)

    def __post_init__(self) -> None:
        self.regions = tuple(self.deployment.region_names)
        self.pairs = tuple(itertools.combinations(self.regions, 2))
        self.region_of = {a: r for r, addresses in self.nodes.items() for a in addresses}
        self.url = f"https://{self.config.domain}/demo"
        if not self.bastions:
            raise ConfigError("the chaos run needs at least one bastion to observe from")
        timing = self.oracle.timing
        worst_down = max((d.down.latest for d in timing.health.values()), default=self.config.rto)
        worst_up = max((d.up.latest for d in timing.health.values()), default=self.config.rto)
        # From a total outage's injection to its first restore's health check: its settlement
        # plus the restore's window. Only on purpose, and only if the watchdog would not abort.
        outage = worst_down + timing.ttl + worst_up + 4 * timing.tolerance
        self.allow_total_outage = outage < self.config.rto
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown or not self.kinds:
            raise ConfigError(
                f"chaos fault kinds {sorted(unknown) or 'none'} are not in the catalogue the "
                f"state machine drives ({', '.join(FAULT_KINDS)})"
            )
        self.recovery_bound = worst_up + timing.ttl + 2 * timing.tolerance

    def catalogue_fault(self, spec: FaultSpec) -> faults.Fault:
        """Return the catalogue fault (real API calls) for an oracle fault spec."""
        if spec.kind == INVERT:
            return faults.invert_health_check(self.deployment, spec.region)
        if spec.kind == FAIL_TARGETS:
            return faults.fail_targets(self.deployment, spec.region)
        if spec.kind == THROTTLE:
            return faults.throttle_api(self.deployment, spec.region)
        return faults.blackhole_peering(self.deployment, *spec.regions)

    def observe(self) -> list[Observation]:
        """Run ``dig`` and ``curl`` on every bastion at once; return what each saw.

        A probe whose shell could not run the tool (exit 126/127: the command never ran, so it
        observed nothing) is run again, up to ``PROBE_ATTEMPTS`` times in all.

        Raises:
            CommandError: a probe could not be run at all (SSM failure, or 126/127 throughout).
        """
        clock = self.clock
        self.stats.polls += 1
        started = clock.now()
        with ThreadPoolExecutor(
            max_workers=2 * len(self.bastions), thread_name_prefix="chaos-probe"
        ) as pool:
            digs = [pool.submit(self._dig, b) for b in self.bastions]
            curls = [pool.submit(self._curl, b) for b in self.bastions]
            results = [(d.result(), c.result()) for d, c in zip(digs, curls, strict=True)]
        ended = clock.now()
        observations = []
        for bastion, (dig, curl) in zip(self.bastions, results, strict=True):
            region, problem = read_dns(dig, self.region_of)
            observations.append(
                Observation(
                    bastion=bastion.instance_id,
                    client=bastion.region,
                    started=started,
                    ended=ended,
                    addresses=dig.addresses,
                    dns_region=region,
                    dns_problem=problem,
                    api=read_api(curl, self.region_of),
                )
            )
        return observations

    def _dig(self, bastion: Any) -> DigResult:
        # Command timeouts are modelled seconds; the tools' own limits are wall seconds.
        timeout = self.clock.model_duration(2 * 2 + PROBE_SLACK)
        for _ in range(PROBE_ATTEMPTS):
            result: DigResult = bastion.dig(
                self.config.domain, short=True, time=2, tries=2, timeout=timeout
            )
            if result.rc not in _NOT_RUN:
                return result
            self.stats.reruns += 1
        raise CommandError(
            f"dig on {bastion.instance_id} ({bastion.region}) did not run {PROBE_ATTEMPTS} "
            f"times in a row (shell exit {result.rc}): {'; '.join(result.messages)[:200]}"
        )

    def _curl(self, bastion: Any) -> CurlResult:
        connect, total = self.curl_limits
        timeout = self.clock.model_duration(total + PROBE_SLACK)
        for _ in range(PROBE_ATTEMPTS):
            result: CurlResult = bastion.curl(
                self.url, max_time=total, connect_timeout=connect, timeout=timeout
            )
            if result.exit_code in _NOT_RUN:
                self.stats.reruns += 1
                continue
            if lookup_ate_the_budget(result, connect):
                # curl's connect timeout covers the name lookup: a slow lookup under load is
                # not a dropped connection. Ask again; dig is what judges DNS.
                self.stats.reruns += 1
                continue
            return result
        if result.exit_code in _NOT_RUN:
            raise CommandError(
                f"curl on {bastion.instance_id} ({bastion.region}) did not run {PROBE_ATTEMPTS} "
                f"times in a row (shell exit {result.exit_code}): {result.stderr_message or ''}"
            )
        return result

    @property
    def curl_limits(self) -> tuple[float, float]:
        """Return curl's (connect timeout, max time) in wall seconds.

        A dropped connection must time out quickly (each poll of a stranded client waits for
        it); a slow Lambda must not be mistaken for one.
        """
        return max(self.clock.wall_duration(2.0), 1.0), max(self.clock.wall_duration(30.0), 5.0)

    def add_finding(self, finding: Finding) -> bool:
        """Record a finding unless one of the same (kind, regions) is already recorded."""
        key = (finding.kind, finding.regions)
        if any((f.kind, f.regions) == key for f in self.record.findings):
            return False
        self.record.add_finding(finding)
        self.say(f"chaos finding: {finding.title}")
        return True


# ---------------------------------------------------------------------- timing inputs


def timing_for(target: Any, deployment: Deployment, config: HarnessConfig) -> Timing:
    """Return the oracle's timing: the lab's analytic model, or the objective on AWS.

    On the lab every region's delays come from its deployed parameters (read through the AWS
    API, as ``harness.chaos.expectations`` does) and ``harness.lab.model``; the tolerance covers
    scheduling jitter (a quarter of a wall second, at least 5 modelled seconds).

    Raises:
        ConfigError: the deployed alarm cannot take a region down (the model says never).
    """
    regions = deployment.region_names
    info = getattr(target, "lab_info", None)
    if info is None:
        bound = Delay(0.0, UNMODELLED_FACTOR * config.rto)
        return Timing.uniform(
            regions,
            down=bound,
            data_plane=UNMODELLED_DATA_PLANE,
            tolerance=config.probe_interval,
            modelled=False,
        )
    from harness.chaos.expectations import parameters_from_api
    from harness.lab.model import inverted_stages, targets_failed_stages, targets_restored_stages

    propagation = info.health_propagation
    health: dict[tuple[str, str], HealthDelays] = {}
    ttl = 0.0
    for region in regions:
        params = parameters_from_api(target.sessions, deployment, region, propagation=propagation)
        ttl = max(ttl, params.ttl)
        inverted = inverted_stages(params).record
        failed = targets_failed_stages(params).record
        repaired = targets_restored_stages(params).record
        if failed.is_never or repaired.is_never:
            raise ConfigError(
                f"the deployed health pipeline of {region} never takes the region down when its "
                "targets fail (see harness.lab.model); the chaos run cannot model fail_targets"
            )
        as_delay = lambda w: Delay(w.earliest, w.latest)  # noqa: E731
        health[(INVERT, region)] = HealthDelays(as_delay(inverted), as_delay(inverted))
        health[(FAIL_TARGETS, region)] = HealthDelays(as_delay(failed), as_delay(repaired))
    clock: Clock = target.clock
    return Timing(
        health=health,
        data_plane=Delay(0.0, 0.0),
        ttl=ttl,
        tolerance=max(5.0, clock.model_duration(0.25)),
    )


def latency_for(target: Any, regions: Sequence[str]) -> dict[tuple[str, str], float] | None:
    """Return the in-process lab's configured latency matrix as data, else None.

    The matrix is the lab's *configuration* (input, like the deployed templates), not its
    routing code. An attached lab (``--lab-url``) or AWS gives no matrix: then the oracle
    accepts any healthy region for a VPC whose own region is down (R1 in the model).
    """
    lab = getattr(target, "lab", None)
    resolvers = getattr(lab, "resolvers", None)
    matrix = getattr(resolvers, "latency", None)
    if matrix is None:
        return None
    return {(a, b): float(matrix.rtt(a, b)) for a in regions for b in regions}


# ---------------------------------------------------------------------- the machine


class ChaosMachine(RuleBasedStateMachine):
    """Inject and restore faults in any order; after each step the bastions must agree with
    the oracle."""

    def __init__(self, world: ChaosWorld) -> None:
        super().__init__()
        self.world = world
        self.history: list[Change] = []
        self.handles: dict[FaultSpec, ActiveFault] = {}
        self.log: list[str] = []
        self.origin = world.clock.now()
        self.last: list[Observation] | None = None
        self.failed = False
        world.stats.examples += 1

    # ------------------------------------------------------------------ rules
    # Each rule toggles its fault: injects it when it is not in place, restores it when it is.
    # So every step changes something (bar the guardrails below) whatever rules hypothesis
    # enables for a sequence (it disables random subsets: swarm testing), and no sequence is
    # thrown away for lack of an applicable rule after its real, slow steps.

    @rule(region=_REGION)
    def invert_health_check(self, region: str) -> None:
        self._toggle(FaultSpec(INVERT, (region,)))

    @rule(region=_REGION)
    def fail_targets(self, region: str) -> None:
        self._toggle(FaultSpec(FAIL_TARGETS, (region,)))

    @rule(region=_REGION)
    def throttle_api(self, region: str) -> None:
        self._toggle(FaultSpec(THROTTLE, (region,)))

    @rule(regions=_PAIR)
    def blackhole_peering(self, regions: tuple[str, str]) -> None:
        self._toggle(FaultSpec(BLACKHOLE, regions))

    # ------------------------------------------------------------------ invariant

    @invariant()
    def every_bastion_agrees_with_the_oracle(self) -> None:
        """Compare every bastion's last dig and curl with the oracle's settled truth."""
        if self.last is None:
            self.last = self._reach_steady_state()
        active = Oracle.active(self.history)
        truths = {r: self.world.oracle.truth(r, active) for r in self.world.regions}
        for observation in self.last:
            truth = truths[observation.client]
            if disagreements(observation, truth):
                self._fail(
                    f"{observation.bastion} settled on a state the oracle rejects",
                    self.last,
                    truths=truths,
                )
            for hazard in truth.hazards:
                if confirms(observation, hazard):
                    self._record_hazard(hazard, observation)

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> None:
        """Restore every fault through the ledger, then wait until the world is steady again."""
        world = self.world
        failures = []
        for spec in reversed(list(self.handles)):
            try:
                self._restore(spec, settle=False)
            except FaultError as exc:
                failures.append(str(exc))
        failures += world.manager.restore_all()
        if failures:
            raise FaultError("chaos teardown could not restore: " + "; ".join(failures))
        if not self.history:
            return
        world.steady = False
        if self.failed:
            # The sequence already failed (report that failure, not another one): just wait
            # for the steady state, quietly, so the next sequence (or shrinking attempt) starts
            # from it.
            self._reach_steady_state(quiet=True)
            return
        self._settle()
        world.steady = True

    # ------------------------------------------------------------------ internals

    def _toggle(self, spec: FaultSpec) -> None:
        """Restore ``spec`` if it is injected, else inject it, within the guardrails.

        While every region is unhealthy only health faults are restored (nothing injected), so
        a total outage lasts one step; a total outage is only injected when the world allows it
        (``ChaosWorld.allow_total_outage``). A refused toggle is a no-op step.
        """
        if spec.kind not in self.world.kinds:
            self.log.append(f"({spec.kind} is not used in this run)")
            return
        outage = self._total_outage()
        if spec in self.handles:
            if outage and not spec.affects_health:
                self.log.append(f"(kept {spec.describe()}: every region is down)")
                return
            self._restore(spec)
            return
        if outage:
            self.log.append(f"(not injecting {spec.describe()}: every region is down)")
            return
        if (
            spec.affects_health
            and not self.world.allow_total_outage
            and self._total_outage(extra=spec)
        ):
            self.log.append(f"(not injecting {spec.describe()}: it would take every region down)")
            return
        self._inject(spec)

    def _total_outage(self, extra: FaultSpec | None = None) -> bool:
        specs = [*self.handles, *([extra] if extra else [])]
        down = {r for s in specs if s.affects_health for r in s.regions}
        return down >= set(self.world.regions)

    def _inject(self, spec: FaultSpec) -> None:
        world, clock = self.world, self.world.clock
        fault = world.catalogue_fault(spec)
        started = clock.now()
        handle = world.manager.inject(fault, allow_total_outage=world.allow_total_outage)
        self.handles[spec] = handle
        self._changed(Change(spec, True, started, clock.now()))

    def _restore(self, spec: FaultSpec, *, settle: bool = True) -> None:
        clock = self.world.clock
        handle = self.handles.pop(spec)
        started = clock.now()
        handle.restore()
        self._changed(Change(spec, False, started, clock.now()), settle=settle)

    def _changed(self, change: Change, *, settle: bool = True) -> None:
        self.history.append(change)
        self.world.stats.steps += 1
        self.log.append(f"t+{change.started - self.origin:6.1f}s  {change.describe()}")
        if settle:
            self._settle()

    def _settle(self) -> None:
        """Watch until the new state is reached for good; every observation must be acceptable.

        Done when every bastion shows the oracle's truth at or after ``Oracle.stable_from``
        (nothing but caches can change after it, and the caches were seen holding the truth).
        Without a model (AWS) that instant is only an outer bound, so instead every bastion must
        show the truth without a break for one TTL plus the tolerance: weaker, but the best a
        black box allows. After ``Oracle.settled_at`` only the truth is acceptable, so the loop
        ends there at the latest, by agreeing or by failing.
        """
        world, oracle, clock = self.world, self.world.oracle, self.world.clock
        change = self.history[-1]
        active = Oracle.active(self.history)
        truths = {r: oracle.truth(r, active) for r in world.regions}
        stable, deadline = oracle.stable_from(self.history), oracle.settled_at(self.history)
        hold = oracle.timing.ttl + oracle.timing.tolerance  # without a model only
        agreeing_since: float | None = None
        while True:
            observations = world.observe()
            started = observations[0].started
            for observation in observations:
                expected = oracle.expected(
                    observation.client, self.history, observation.started, observation.ended
                )
                if disagreements(observation, expected):
                    self._fail(f"{observation.bastion} saw what the oracle rejects", observations)
            if all(not disagreements(o, truths[o.client]) for o in observations):
                agreeing_since = started if agreeing_since is None else agreeing_since
                held = not oracle.timing.modelled and started - agreeing_since >= hold
                if started >= stable or held:
                    self.last = observations
                    self._converged(change, agreeing_since - change.started)
                    return
            else:
                agreeing_since = None
            if started > deadline:  # pragma: no cover - the check above fails first
                self._fail("the oracle's settlement instant passed without agreement", observations)
            clock.sleep(world.config.probe_interval)

    def _reach_steady_state(self, *, quiet: bool = False) -> list[Observation]:
        """Make sure the sequence starts from the fault-free steady state.

        After a clean teardown one agreeing observation suffices (the teardown waited for the
        steady state for good). Otherwise (the run's first sequence, or after a failure) what
        came before is unknown, so the steady-state hypothesis is checked through the API first
        (every region's health check healthy, every NLB target healthy), then every bastion must
        agree with the fault-free truth for one TTL plus the tolerance without a break. Bounded
        by the slowest recovery the timing allows.
        """
        world = self.world
        clock = world.clock
        deadline = clock.now() + world.recovery_bound
        truths = {r: world.oracle.truth(r, ()) for r in world.regions}
        hold = 0.0 if world.steady else world.oracle.timing.ttl + world.oracle.timing.tolerance
        unhealthy: list[str] = []  # the health inputs' problems, until they were once all healthy
        inputs_ok = world.steady
        agreeing_since: float | None = None
        while True:
            if not inputs_ok:
                unhealthy = unhealthy_inputs(world.manager.sessions, world.deployment)
                inputs_ok = not unhealthy
            observations = world.observe()
            if inputs_ok and all(not disagreements(o, truths[o.client]) for o in observations):
                if agreeing_since is None:
                    agreeing_since = observations[0].started
                if observations[0].started - agreeing_since >= hold:
                    world.steady = True
                    return observations
            else:
                agreeing_since = None
            if clock.now() > deadline:
                world.steady = False
                if quiet:
                    return observations
                problems = "" if inputs_ok else f" ({'; '.join(unhealthy)})"
                self._fail(
                    f"the deployment was not in its steady state within {world.recovery_bound:.0f}s"
                    f"{problems}: every health check and NLB target healthy, every VPC answered "
                    "by its own region, the API answering 200",
                    observations,
                    truths=truths,
                )
            clock.sleep(world.config.probe_interval)

    def _converged(self, change: Change, after: float) -> None:
        world = self.world
        world.stats.slowest_step = max(world.stats.slowest_step, after)
        if after <= world.config.rto:
            return
        regions = change.fault.regions
        world.add_finding(
            Finding(
                kind=SLOW,
                severity="medium",
                title=f"clients took {after:.0f}s to converge after {change.describe()}",
                explanation=(
                    f"After {change.describe()} the last client VPC showed the expected DNS "
                    f"answer and API response only {after:.0f}s later, over the "
                    f"{world.config.rto:g}s objective. Detection (target-group interval x "
                    "thresholds, alarm period x evaluation periods), Route 53 propagation and "
                    "the 60 s alias TTL add up; shorten the alarm's period or evaluation "
                    "periods, or the target group's interval, to fail over within the objective."
                ),
                regions=regions,
                evidence={"seconds": round(after, 1), "steps": list(self.log)},
                scenario=world.scenario,
            )
        )

    def _record_hazard(self, hazard: Hazard, observation: Observation) -> None:
        world = self.world
        active = sorted(s.describe() for s in Oracle.active(self.history))
        evidence = {
            "faults": active,
            "steps": list(self.log),
            "bastion": observation.bastion,
            "observed": observation.describe(),
            "seed": world.seed,
        }
        if hazard.kind == BLIND_SPOT:
            region = hazard.regions[0]
            finding = Finding(
                kind=BLIND_SPOT,
                severity="high",
                title=f"health-check blind spot: {region} answers HTTP 500 yet keeps receiving traffic",
                explanation=(
                    f"With {region}'s API failing (its Lambda throttled), requests from "
                    f"{hazard.client} got HTTP {hazard.outcome.status if hazard.outcome else 500} "
                    f"from {region}, and Route 53 kept answering {region}: its health check "
                    "follows the load balancer's healthy hosts, which stay healthy while the "
                    "API behind them fails, so DNS failover never starts. Make an API-level "
                    "signal (5XXError, Lambda Throttles) part of the region's health check, e.g. "
                    "a CALCULATED health check over both alarms."
                ),
                regions=(region,),
                evidence=evidence,
                scenario=world.scenario,
            )
        elif hazard.kind == STRANDED:
            client, region = hazard.regions
            finding = Finding(
                kind=STRANDED,
                severity="high",
                title=f"clients in {client} are stranded: failed over to {region}, which they cannot reach",
                explanation=(
                    f"Route 53 answered {client}'s clients with {region} (their own region was "
                    f"unhealthy), but the Transit Gateway route between {client} and {region} is "
                    "blackholed, so their requests never got through. Route 53 knows nothing of "
                    "the network path: monitor the peering attachments and TGW routes, and do "
                    "not rely on a single peering for failover."
                ),
                regions=(client, region),
                evidence=evidence,
                scenario=world.scenario,
            )
        else:
            finding = Finding(
                kind=FAIL_OPEN,
                severity="medium",
                title="every region unhealthy: Route 53 fails open and sends clients to unhealthy regions",
                explanation=(
                    "With every region's health check unhealthy, Route 53 treats all records as "
                    f"healthy and answers each VPC its nearest region ({hazard.client} got "
                    f"{hazard.dns_region}), although it knows that region is unhealthy. If the "
                    "regions really are down, clients get errors with no warning from DNS; alert "
                    "on 'all health checks unhealthy' and plan a fallback for a total outage."
                ),
                regions=hazard.regions,
                evidence=evidence,
                scenario=world.scenario,
            )
        world.add_finding(finding)

    def _fail(
        self,
        headline: str,
        observations: Sequence[Observation],
        *,
        truths: Mapping[str, Expected] | None = None,
    ) -> None:
        world = self.world
        self.failed = True
        if world.stats.first_failure is None:
            world.stats.first_failure = time.monotonic()
        lines = [f"chaos: {headline}"]
        if world.seed is not None:
            lines.append(f"  replay: --chaos-seed {world.seed}")
        lines.append("  fault steps (modelled time since the sequence started):")
        lines += [f"    {entry}" for entry in self.log] or ["    (none)"]
        active = sorted(s.describe() for s in Oracle.active(self.history))
        lines.append(f"  active faults: {', '.join(active) or 'none'}")
        lines.append("  observed vs expected:")
        for o in observations:
            if truths is not None:
                expected = truths[o.client]
            else:
                expected = world.oracle.expected(o.client, self.history, o.started, o.ended)
            verdict = "; ".join(disagreements(o, expected)) or "agrees"
            lines.append(
                f"    {o.bastion} ({o.client}) at t+{o.started - self.origin:.1f}s: "
                f"{o.describe()}\n      expected {expected.describe()}\n      -> {verdict}"
            )
        raise ChaosDivergence("\n".join(lines))


# ---------------------------------------------------------------------- running


def chaos_settings(*, examples: int, steps: int) -> settings:
    """Return the hypothesis settings of a chaos run (no database: the seed alone replays)."""
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        print_blob=False,
    )


def run_chaos(world: ChaosWorld, *, seed_value: int, examples: int, steps: int) -> ChaosStats:
    """Run ``examples`` random fault sequences of up to ``steps`` steps; return what ran.

    Raises:
        ChaosDivergence: the target did something the oracle rejects (hypothesis adds the
            shrunk program to the exception's notes).
    """
    if examples < 1 or steps < 1:
        raise ConfigError(f"chaos examples {examples!r} and steps {steps!r} must be >= 1")
    world.seed = seed_value
    world.stats = ChaosStats()

    def factory() -> ChaosMachine:
        return ChaosMachine(world)

    try:
        # Hypothesis documents any factory returning a machine; its annotation says a class.
        run_state_machine_as_test(
            seed(seed_value)(factory),  # type: ignore[arg-type]
            settings=chaos_settings(examples=examples, steps=steps),
        )
    except FlakyFailure as exc:
        seen = [e for e in _leaves(exc) if isinstance(e, ChaosDivergence)]
        if not seen:
            raise
        raise ChaosDivergence(
            f"{seen[0]}\n  This divergence did not happen again when hypothesis replayed the "
            "same fault sequence: it depends on timing (in the target, or in the lab under load)."
        ) from exc
    return world.stats


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def steps_per_minute(stats: ChaosStats) -> float:
    """Return fault steps per wall minute of a finished run."""
    elapsed = time.monotonic() - stats.started
    return stats.steps * 60.0 / elapsed if elapsed > 0 else math.inf


def build_world(
    *,
    config: HarnessConfig,
    target: Any,
    deployment: Deployment,
    bastions: Sequence[Any],
    manager: FaultManager,
    record: RunRecord,
    scenario: str = "",
    say: Say | None = None,
) -> ChaosWorld:
    """Assemble a ChaosWorld for an opened target (``harness.targets.Target``) and deployment."""
    from harness.chaos.drill import load_balancer_nodes

    regions = deployment.region_names
    oracle = Oracle(
        regions,
        timing=timing_for(target, deployment, config),
        latency=latency_for(target, regions),
    )
    return ChaosWorld(
        config=config,
        deployment=deployment,
        manager=manager,
        bastions=bastions,
        clock=target.clock,
        oracle=oracle,
        nodes=load_balancer_nodes(target.sessions, deployment),
        record=record,
        scenario=scenario,
        say=say or (lambda line: None),
    )
