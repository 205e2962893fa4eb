"""The DR-readiness report of a run: what was measured, found and injected, and the verdict.

:func:`build_report` turns the run record (scenario outcomes, measured phases with their probe
timelines, findings), the deployment (stacks and template hashes) and the fault ledger into a
:class:`Report`; :meth:`Report.to_dict` is the ``dr-readiness.json`` document described by
``schema.json`` (:data:`SCHEMA_VERSION`).

The verdict answers one question for the on-call engineer: *would the API survive losing a
region today?* Rules, in order of precedence (every rule that applies adds a reason, and the
verdict is the worst of them):

NOT READY (the answer is no, or a region's failover path is broken):
  - a DR scenario (marked ``smoke``, ``routing``, ``api``, ``cross_region``, ``failover`` or
    ``gate``) failed or errored: the steady state or a failover assertion does not hold;
  - a *clean* measured phase (failover or failback with no other fault active, see below) did
    not converge (some client never recovered) or took longer than the RTO objective;
  - a fault is still injected when the run ends (its restore failed): the system is left with a
    region (or a path) down, so the next loss may be total; run ``regiondrill restore``.
AT RISK (the answer is yes today, with a known weakness):
  - a finding of severity ``high`` or ``medium`` (e.g. clients stranded when a region and its
    peering fail together): the API survives the single loss that was drilled, not every loss;
  - a clean phase converged within the objective but with less than :data:`RTO_MARGIN` (20%) to
    spare: run-to-run jitter in health checks and DNS caches is of that order, so the next run
    may fail;
  - on the lab, a measured DNS flip fell outside the analytic model's window (plus/minus one
    probe interval): the lab's prediction of AWS cannot be trusted for that region;
  - a ``chaos`` scenario failed: a randomised compound-fault sequence diverged from the routing
    model (single-region loss is judged by the failover scenarios, so this is a risk, not a block);
  - a region has no clean failover *and* failback measured in this run: its readiness is unproven
    (a ``-m smoke`` run therefore never says READY);
  - the fault ledger could not be read, so whether every fault was restored is unknown.
READY: none of the above — every region failed over and back within the objective with margin,
every DR scenario passed, nothing risky was found and every fault was restored.

A phase is *clean* when no fault other than its own was active while it was probed. Compound
drills (e.g. a region lost while its peering is blackholed) exist to uncover hazards; they
report those as findings and are shown, but not judged against the objective.

Times: wall-clock instants are ISO 8601 UTC; fault and drill instants are *modelled* seconds on
the target's clock (equal to wall time on AWS; on the lab, lab time), and everything inside a
drill is relative to the drill's origin (the failover's fault injection, t = 0).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness import __version__
from harness.chaos.timing import PhaseResult, Segment, Timeline
from harness.report.recorder import Finding, RunRecord, ScenarioOutcome

if TYPE_CHECKING:
    from harness.aws.stacks import Deployment
    from harness.chaos.ledger import Entry
    from harness.clock import Clock
    from harness.config import HarnessConfig

SCHEMA_VERSION = "1.0"
SCHEMA_ID = "urn:regiondrill:schema:dr-readiness:1"

READY, AT_RISK, NOT_READY = "READY", "AT RISK", "NOT READY"
STATUSES: tuple[str, ...] = (READY, AT_RISK, NOT_READY)  # in order of severity
RTO_MARGIN = 0.20

DR_MARKERS: frozenset[str] = frozenset(
    {"smoke", "routing", "api", "cross_region", "failover", "chaos", "gate"}
)
BLOCKING_MARKERS: frozenset[str] = DR_MARKERS - {"chaos"}
# Scenarios whose run makes the verdict decide the exit code (see harness.report.pytest_plugin).
GATING_MARKERS: frozenset[str] = frozenset({"failover", "gate"})
RISKY_SEVERITIES: frozenset[str] = frozenset({"high", "medium"})

PHASE_OK = "ok"
PHASE_NEAR = "near_objective"
PHASE_OVER = "over_objective"
PHASE_STUCK = "did_not_converge"


def worst(statuses: Iterable[str]) -> str:
    """Return the most severe of ``statuses`` (READY for none)."""
    return max(statuses, key=STATUSES.index, default=READY)


# ---------------------------------------------------------------------- values


@dataclass(frozen=True)
class Reason:
    """One reason for the verdict, in words an on-call engineer can act on."""

    status: str  # AT_RISK | NOT_READY
    code: str
    message: str
    regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    status: str
    headline: str
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class StackInfo:
    name: str
    kind: str
    region: str | None
    deployed_in: str
    template_sha256: str
    created: bool


@dataclass(frozen=True)
class FaultRecord:
    """A fault from the ledger, with its inject/restore instants in modelled time."""

    id: str
    kind: str
    target: Mapping[str, Any]
    state: str  # the ledger state: intent | injected | restored | restore_failed | abandoned
    run_id: str
    injected_at: float | None
    restored_at: float | None
    note: str
    this_run: bool  # False: left by an earlier run and dealt with by this one

    @property
    def outstanding(self) -> bool:
        return self.state in ("intent", "injected", "restore_failed")

    @property
    def regions(self) -> tuple[str, ...]:
        """The regions the fault acts on (one, or both ends of a peering)."""
        keys = ("region", "region_a", "region_b")
        return tuple(dict.fromkeys(str(self.target[k]) for k in keys if self.target.get(k)))

    def describe(self) -> str:
        """Name the fault briefly: kind, regions and the instance for per-host faults."""
        parts = list(self.regions)
        if self.target.get("instance_id"):
            parts.append(str(self.target["instance_id"]))
        return f"{self.kind}({', '.join(parts)})" if parts else self.kind


@dataclass(frozen=True)
class SegmentView:
    """A run of probe samples with the same observation; times relative to the drill origin."""

    start: float
    end: float
    samples: int
    addresses: tuple[str, ...]
    dns_region: str  # region of the DNS answer ("" none, "?" unknown address, "a,b" mixed)
    api_region: str
    http_code: str
    curl_exit: int

    @property
    def ok(self) -> bool:
        return self.curl_exit == 0 and self.http_code.startswith("2")


@dataclass(frozen=True)
class LaneView:
    """What one bastion's probe loop saw during one phase."""

    phase: str
    bastion: str
    region: str
    started: float
    ended: float
    samples: int
    complete: bool
    segments: tuple[SegmentView, ...]


@dataclass(frozen=True)
class BastionResult:
    """One bastion's timing of one phase (seconds after the phase's event)."""

    bastion: str
    region: str
    converged: bool
    recovery: float | None
    dns_flip: float | None
    api_recovery: float | None
    first_failure: float | None
    last_failure: float | None
    failed_samples: int
    flaps: int
    regions_seen: tuple[str, ...]
    error_windows: tuple[tuple[float, float], ...]  # failed requests, relative to the event


@dataclass(frozen=True)
class PhaseView:
    phase: str  # failover | failback
    fault: str
    region: str
    at: float  # the event (inject or restore), relative to the drill origin
    objective: float
    rto: float | None
    dns_flip: float | None
    converged: bool
    status: str  # PHASE_OK | PHASE_NEAR | PHASE_OVER | PHASE_STUCK
    model_window: tuple[float, float] | None
    model_agrees: bool | None  # None: no model (AWS) or nothing to compare
    fault_id: str
    bastions: tuple[BastionResult, ...]

    @property
    def margin(self) -> float | None:
        """Fraction of the objective left unused (negative when over it)."""
        if self.rto is None or self.objective <= 0:
            return None
        return (self.objective - self.rto) / self.objective

    @property
    def stuck(self) -> tuple[BastionResult, ...]:
        return tuple(b for b in self.bastions if not b.converged)

    def title(self) -> str:
        return f"{self.phase} of {self.region} via {self.fault}"


@dataclass(frozen=True)
class Marker:
    """A fault injected or restored during a drill (a vertical line on its timeline)."""

    at: float  # relative to the drill origin
    kind: str  # inject | restore
    label: str
    own: bool  # the drill's own fault (not a concurrent one)


@dataclass(frozen=True)
class FaultSpan:
    """A fault's active period as far as it overlaps a drill (relative to the drill origin)."""

    label: str
    start: float
    end: float | None  # None: not restored (still active when the report was built)
    own: bool


@dataclass(frozen=True)
class DrillView:
    """One region taken down and brought back: its phases, probe lanes and fault markers."""

    id: str
    scenario: str
    fault: str
    region: str
    origin: float  # modelled epoch of the failover's fault injection
    probe_interval: float
    phases: tuple[PhaseView, ...]
    lanes: tuple[LaneView, ...]
    markers: tuple[Marker, ...]
    spans: tuple[FaultSpan, ...]
    concurrent_faults: tuple[str, ...]  # other faults active during the drill (compound)

    @property
    def compound(self) -> bool:
        return bool(self.concurrent_faults)

    def phase(self, name: str) -> PhaseView | None:
        return next((p for p in self.phases if p.phase == name), None)

    @property
    def span(self) -> tuple[float, float]:
        """The probed time range, relative to the origin."""
        if not self.lanes:
            return (0.0, 0.0)
        return (
            min(lane.started for lane in self.lanes),
            max(lane.ended for lane in self.lanes),
        )

    @property
    def status(self) -> str:
        """The drill's own verdict contribution (READY for compound drills: not judged)."""
        if self.compound:
            return READY
        return worst(_phase_status(p) for p in self.phases)


@dataclass(frozen=True)
class RegionView:
    name: str
    status: str
    phases: tuple[PhaseView, ...]  # clean phases of this region, in run order
    reasons: tuple[Reason, ...]
    findings: int

    def worst(self, phase: str) -> PhaseView | None:
        """The slowest clean phase of this kind (a non-converged one counts as slowest)."""
        matching = [p for p in self.phases if p.phase == phase]
        if not matching:
            return None
        return max(matching, key=lambda p: math.inf if p.rto is None else p.rto)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.fault for p in self.phases))


@dataclass(frozen=True)
class ScenarioView:
    nodeid: str
    outcome: str
    duration: float
    markers: tuple[str, ...]
    message: str
    region: str | None


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    target: str
    regions: tuple[str, ...]
    stack_set: str
    domain: str
    started: float  # wall epoch
    ended: float
    objective: float
    probe_interval: float
    lab_speed: float | None
    invocation: str
    exit_status: int | None
    regiondrill_version: str = __version__

    @property
    def duration(self) -> float:
        return max(self.ended - self.started, 0.0)


@dataclass(frozen=True)
class Report:
    run: RunInfo
    verdict: Verdict
    regions: tuple[RegionView, ...]
    drills: tuple[DrillView, ...]
    scenarios: tuple[ScenarioView, ...]
    other_tests: Mapping[str, int]
    faults: tuple[FaultRecord, ...]
    findings: tuple[Finding, ...]
    stacks: tuple[StackInfo, ...]
    observations: Mapping[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def template_digest(self) -> str:
        """One hash over every stack's template hash: "the same templates" at a glance."""
        return template_digest(self.stacks)

    @property
    def gated(self) -> bool:
        """Whether scenarios that gate the exit code (failover/gate) actually ran."""
        return any(
            set(s.markers) & GATING_MARKERS and s.outcome != "skipped" for s in self.scenarios
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the ``dr-readiness.json`` document (see ``schema.json``)."""
        return _report_dict(self)


def template_digest(stacks: Sequence[StackInfo]) -> str:
    joined = "\n".join(
        f"{s.name}:{s.template_sha256}" for s in sorted(stacks, key=lambda s: s.name)
    )
    return hashlib.sha256(joined.encode()).hexdigest() if stacks else ""


# ---------------------------------------------------------------------- building


def build_report(
    record: RunRecord,
    config: HarnessConfig,
    *,
    deployment: Deployment | None = None,
    clock: Clock | None = None,
    ledger_entries: Sequence[Entry] | None = None,
    ledger_problem: str | None = None,
    invocation: str = "",
    exit_status: int | None = None,
    ended: float | None = None,
) -> Report:
    """Build the report of a run.

    ``deployment`` is None when no stack was deployed (then the stacks are the rendered
    templates the configuration would deploy); ``clock`` converts the ledger's wall times to
    modelled time (identity when None); ``ledger_entries`` is the folded fault ledger (None with
    ``ledger_problem`` when it could not be read).
    """
    regions = tuple(config.region_names)
    run_id = deployment.run_id if deployment is not None else ""
    finished = ended if ended is not None else (record.ended or record.started)
    scenarios, other = _scenarios(record.scenarios, regions)
    faults = _faults(ledger_entries or (), run_id=run_id, since=record.started, clock=clock)
    drills = build_drills(
        record.phases, faults, interval=config.probe_interval, is_lab=config.is_lab
    )
    problems = (ledger_problem,) if ledger_problem else ()
    findings = tuple(record.findings)
    verdict, region_views = decide(
        regions=regions,
        scenarios=scenarios,
        drills=drills,
        findings=findings,
        faults=faults,
        problems=problems,
        objective=config.rto,
    )
    run = RunInfo(
        run_id=run_id,
        target=config.target,
        regions=regions,
        stack_set=deployment.stack_set if deployment is not None else "",
        domain=config.domain,
        started=record.started,
        ended=finished,
        objective=config.rto,
        probe_interval=config.probe_interval,
        lab_speed=config.lab_speed if config.is_lab else None,
        invocation=invocation,
        exit_status=exit_status,
    )
    return Report(
        run=run,
        verdict=verdict,
        regions=region_views,
        drills=drills,
        scenarios=scenarios,
        other_tests=other,
        faults=faults,
        findings=findings,
        stacks=_stacks(deployment, config),
        observations=_jsonable(dict(record.samples)),
        problems=problems,
    )


def _stacks(deployment: Deployment | None, config: HarnessConfig) -> tuple[StackInfo, ...]:
    if deployment is not None:
        return tuple(
            StackInfo(s.name, s.kind, s.region, s.deployed_in, s.template_sha256, s.created)
            for s in deployment.stacks
        )
    from harness.aws import templates

    # Nothing deployed (e.g. every scenario skipped): report what would have been deployed.
    return tuple(
        StackInfo(
            name=templates.stack_name(config.stack_prefix, t.kind, t.region),
            kind=t.kind,
            region=t.region,
            deployed_in=templates.stack_region(t.kind, config.region_names, t.region),
            template_sha256=t.sha256,
            created=False,
        )
        for t in templates.render_stack_set(config.region_names).values()
    )


_PARAMS = re.compile(r"\[(?P<params>[^\]]*)\]$")


def region_of_nodeid(nodeid: str, regions: Sequence[str]) -> str | None:
    """Return the configured region a parametrised scenario runs for (from its node id)."""
    match = _PARAMS.search(nodeid)
    if not match:
        return None
    params = match.group("params")
    for region in sorted(regions, key=len, reverse=True):
        if re.search(rf"(^|[-_]){re.escape(region)}($|[-_])", params):
            return region
    return None


def _scenarios(
    outcomes: Sequence[ScenarioOutcome], regions: Sequence[str]
) -> tuple[tuple[ScenarioView, ...], dict[str, int]]:
    scenarios = []
    other = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    for outcome in outcomes:
        if set(outcome.markers) & DR_MARKERS:
            scenarios.append(
                ScenarioView(
                    nodeid=outcome.nodeid,
                    outcome=outcome.outcome,
                    duration=outcome.duration,
                    markers=tuple(sorted(set(outcome.markers) & DR_MARKERS)),
                    message=outcome.message,
                    region=region_of_nodeid(outcome.nodeid, regions),
                )
            )
        else:
            other[outcome.outcome] = other.get(outcome.outcome, 0) + 1
    return tuple(scenarios), other


def _faults(
    entries: Sequence[Entry], *, run_id: str, since: float, clock: Clock | None
) -> tuple[FaultRecord, ...]:
    def model(wall: float | None) -> float | None:
        if wall is None:
            return None
        return clock.to_model(wall) if clock is not None else wall

    records = []
    for entry in entries:
        mine = bool(run_id) and entry.run_id == run_id
        touched = any(at >= since for _, at, _ in entry.history[1:])
        if not (mine or touched):
            continue
        notes = [note for _, _, note in entry.history if note]
        records.append(
            FaultRecord(
                id=entry.id,
                kind=entry.kind,
                target=dict(entry.target),
                state=entry.state,
                run_id=entry.run_id,
                injected_at=model(entry.injected_at),
                restored_at=model(entry.restored_at),
                note=notes[-1] if notes else "",
                this_run=mine,
            )
        )
    return tuple(records)


def build_drills(
    phases: Sequence[tuple[str, PhaseResult]],
    faults: Sequence[FaultRecord],
    *,
    interval: float,
    is_lab: bool,
) -> tuple[DrillView, ...]:
    """Pair each failover with its failback (same scenario and fault) into drills."""
    groups: list[tuple[str, list[PhaseResult]]] = []
    open_failovers: dict[tuple[str, str, str, str], list[PhaseResult]] = {}
    for scenario, phase in phases:
        key = (scenario, phase.fault, phase.region, phase.fault_id)
        if phase.phase == "failback" and key in open_failovers:
            open_failovers.pop(key).append(phase)
            continue
        members = [phase]
        groups.append((scenario, members))
        if phase.phase == "failover":
            open_failovers[key] = members
    return tuple(
        _drill(f"drill-{index}", scenario, members, faults, interval=interval, is_lab=is_lab)
        for index, (scenario, members) in enumerate(groups, start=1)
    )


def _drill(
    drill_id: str,
    scenario: str,
    phases: Sequence[PhaseResult],
    faults: Sequence[FaultRecord],
    *,
    interval: float,
    is_lab: bool,
) -> DrillView:
    first = phases[0]
    origin = first.event_time
    lanes = tuple(
        _lane(phase.phase, timeline, origin, dict(phase.address_regions))
        for phase in phases
        for timeline in phase.timelines
    )
    start = min([lane.started for lane in lanes] + [0.0]) + origin
    end = max([lane.ended for lane in lanes] + [p.event_time - origin for p in phases]) + origin

    def own(fault: FaultRecord) -> bool:
        if first.fault_id:
            return fault.id == first.fault_id
        return fault.kind == first.fault and fault.regions == (first.region,)

    markers: list[Marker] = []
    spans: list[FaultSpan] = []
    concurrent: list[str] = []
    for fault in faults:
        if fault.injected_at is None:
            continue
        restored = fault.restored_at if fault.restored_at is not None else math.inf
        if fault.injected_at > end or restored < start:
            continue
        mine = own(fault)
        if not mine:
            concurrent.append(fault.describe())
        spans.append(
            FaultSpan(
                fault.describe(),
                fault.injected_at - origin,
                None if fault.restored_at is None else fault.restored_at - origin,
                mine,
            )
        )
        if start <= fault.injected_at <= end:
            markers.append(
                Marker(fault.injected_at - origin, "inject", f"{fault.describe()} injected", mine)
            )
        if fault.restored_at is not None and start <= fault.restored_at <= end:
            markers.append(
                Marker(fault.restored_at - origin, "restore", f"{fault.describe()} restored", mine)
            )
    if not any(span.own for span in spans):
        # No ledger (or no clock): the phases' own events are the inject and restore.
        for phase in phases:
            kind = "inject" if phase.phase == "failover" else "restore"
            markers.append(Marker(phase.event_time - origin, kind, f"{phase.fault} {kind}ed", True))
        restore = phases[1].event_time - origin if len(phases) > 1 else None
        spans.append(FaultSpan(first.fault, 0.0, restore, True))
    return DrillView(
        id=drill_id,
        scenario=scenario,
        fault=first.fault,
        region=first.region,
        origin=origin,
        probe_interval=interval,
        phases=tuple(_phase_view(p, origin, interval, is_lab) for p in phases),
        lanes=lanes,
        markers=tuple(sorted(markers, key=lambda m: m.at)),
        spans=tuple(spans),
        concurrent_faults=tuple(dict.fromkeys(concurrent)),
    )


def _lane(
    phase: str, timeline: Timeline, origin: float, address_regions: Mapping[str, str]
) -> LaneView:
    return LaneView(
        phase=phase,
        bastion=timeline.bastion,
        region=timeline.region,
        started=timeline.started - origin,
        ended=timeline.ended - origin,
        samples=timeline.samples,
        complete=timeline.complete,
        segments=merge_segments(_segment(s, origin, address_regions) for s in timeline.segments),
    )


def merge_segments(segments: Iterable[SegmentView]) -> tuple[SegmentView, ...]:
    """Merge neighbours that observed the same thing.

    The probe loop starts a new segment whenever its raw output changes, and dig may list the
    same answer in a different order from one sample to the next; for the report those are one
    state.
    """
    merged: list[SegmentView] = []
    for segment in segments:
        if merged and _same_state(merged[-1], segment):
            last = merged[-1]
            merged[-1] = SegmentView(
                start=last.start,
                end=max(last.end, segment.end),
                samples=last.samples + segment.samples,
                addresses=last.addresses,
                dns_region=last.dns_region,
                api_region=last.api_region,
                http_code=last.http_code,
                curl_exit=last.curl_exit,
            )
        else:
            merged.append(segment)
    return tuple(merged)


def _same_state(a: SegmentView, b: SegmentView) -> bool:
    return (a.addresses, a.api_region, a.http_code, a.curl_exit) == (
        b.addresses,
        b.api_region,
        b.http_code,
        b.curl_exit,
    )


def _segment(segment: Segment, origin: float, address_regions: Mapping[str, str]) -> SegmentView:
    regions = sorted({address_regions.get(a, "?") for a in segment.addresses})
    return SegmentView(
        start=segment.start - origin,
        end=segment.end - origin,
        samples=segment.samples,
        addresses=segment.addresses,
        dns_region=",".join(regions),
        api_region=segment.api_region,
        http_code=segment.http_code,
        curl_exit=segment.curl_exit,
    )


def phase_status(rto: float | None, objective: float) -> str:
    """Classify a phase's recovery time against the objective (see the module docstring)."""
    if rto is None:
        return PHASE_STUCK
    if rto > objective:
        return PHASE_OVER
    if rto > (1.0 - RTO_MARGIN) * objective:
        return PHASE_NEAR
    return PHASE_OK


def _phase_status(phase: PhaseView) -> str:
    if phase.status in (PHASE_STUCK, PHASE_OVER):
        return NOT_READY
    if phase.status == PHASE_NEAR or phase.model_agrees is False:
        return AT_RISK
    return READY


def _phase_view(phase: PhaseResult, origin: float, interval: float, is_lab: bool) -> PhaseView:
    timelines = {t.bastion: t for t in phase.timelines}
    bastions = tuple(
        BastionResult(
            bastion=m.bastion,
            region=m.region,
            converged=m.converged,
            recovery=m.recovery,
            dns_flip=m.dns_flip,
            api_recovery=m.api_recovery,
            first_failure=m.first_failure,
            last_failure=m.last_failure,
            failed_samples=m.failed_samples,
            flaps=m.flaps,
            regions_seen=m.regions_seen,
            error_windows=error_windows(timelines.get(m.bastion), phase.event_time, interval),
        )
        for m in phase.measurements
    )
    return PhaseView(
        phase=phase.phase,
        fault=phase.fault,
        region=phase.region,
        at=phase.event_time - origin,
        objective=phase.objective,
        rto=phase.rto,
        dns_flip=phase.dns_flip,
        converged=phase.converged,
        status=phase_status(phase.rto, phase.objective),
        model_window=phase.model_window,
        model_agrees=_model_agrees(phase, interval) if is_lab else None,
        fault_id=phase.fault_id,
        bastions=bastions,
    )


def _model_agrees(phase: PhaseResult, interval: float) -> bool | None:
    # Same rule as the failover scenarios: only clients of the region that moved are compared.
    if phase.model_window is None:
        return None
    flips = [
        m.dns_flip
        for m in phase.measurements
        if m.region == phase.region and m.dns_flip is not None
    ]
    if not flips:
        return None
    earliest, latest = phase.model_window
    return all(earliest - interval <= flip <= latest + interval for flip in flips)


def error_windows(
    timeline: Timeline | None, event_time: float, interval: float
) -> tuple[tuple[float, float], ...]:
    """Return the intervals after ``event_time`` in which requests failed (merged, relative)."""
    if timeline is None:
        return ()
    windows: list[tuple[float, float]] = []
    segments = timeline.segments
    for index, segment in enumerate(segments):
        if segment.ok or segment.end < event_time:
            continue
        # Failing from its first sample until the next state was first seen (samples are back
        # to back); the last state until one interval after its last sample.
        stop = segments[index + 1].start if index + 1 < len(segments) else segment.end + interval
        start = max(segment.start, event_time) - event_time
        end = stop - event_time
        if windows and start <= windows[-1][1] + 1e-9:
            windows[-1] = (windows[-1][0], max(windows[-1][1], end))
        else:
            windows.append((start, max(end, start)))
    return tuple(windows)


# ---------------------------------------------------------------------- verdict


def decide(
    *,
    regions: Sequence[str],
    scenarios: Sequence[ScenarioView],
    drills: Sequence[DrillView],
    findings: Sequence[Finding],
    faults: Sequence[FaultRecord],
    problems: Sequence[str],
    objective: float,
) -> tuple[Verdict, tuple[RegionView, ...]]:
    """Apply the verdict rules of the module docstring; return the verdict and region views."""
    reasons: list[Reason] = []
    for scenario in scenarios:
        if scenario.outcome not in ("failed", "error"):
            continue
        where = (scenario.region,) if scenario.region else ()
        first_line = _first_line(scenario.message)
        detail = f": {first_line}" if first_line else ""
        if set(scenario.markers) & BLOCKING_MARKERS:
            reasons.append(
                Reason(
                    NOT_READY,
                    "scenario_failed",
                    f"{scenario.nodeid} {scenario.outcome}{detail}",
                    where,
                )
            )
        else:
            reasons.append(
                Reason(
                    AT_RISK, "chaos_failed", f"{scenario.nodeid} {scenario.outcome}{detail}", where
                )
            )
    for drill in drills:
        if drill.compound:
            continue
        for phase in drill.phases:
            reasons.extend(_phase_reasons(phase, drill.probe_interval))
    for fault in faults:
        if fault.outstanding:
            note = f" ({fault.note})" if fault.note else ""
            reasons.append(
                Reason(
                    NOT_READY,
                    "fault_not_restored",
                    f"{fault.describe()} is still {fault.state.replace('_', ' ')}{note}: "
                    "run `regiondrill restore`",
                    fault.regions,
                )
            )
    for finding in findings:
        if finding.severity in RISKY_SEVERITIES:
            reasons.append(
                Reason(
                    AT_RISK,
                    "finding",
                    f"[{finding.severity}] {finding.title}",
                    tuple(finding.regions),
                )
            )
    for problem in problems:
        reasons.append(Reason(AT_RISK, "restore_status_unknown", problem))
    reasons.extend(_coverage(regions, drills, scenarios, reasons))
    reasons.sort(key=lambda r: -STATUSES.index(r.status))  # stable: keeps the order within a level

    views = []
    for region in regions:
        mine = tuple(r for r in reasons if region in r.regions)
        views.append(
            RegionView(
                name=region,
                status=worst(r.status for r in mine),
                phases=tuple(
                    p for d in drills if not d.compound for p in d.phases if p.region == region
                ),
                reasons=mine,
                findings=sum(1 for f in findings if region in f.regions),
            )
        )
    status = worst(r.status for r in reasons)
    return Verdict(status, _headline(status, reasons, views, objective), tuple(reasons)), tuple(
        views
    )


def _first_line(message: str) -> str:
    """The first line of a failure message, without the exception class pytest prefixes."""
    lines = message.strip().splitlines()
    if not lines:
        return ""
    return re.sub(r"^(AssertionError|Failed|[A-Za-z]+Error): ", "", lines[0].strip())


def _phase_reasons(phase: PhaseView, interval: float) -> list[Reason]:
    where = (phase.region,)
    if phase.status == PHASE_STUCK:
        stuck = ", ".join(f"{b.bastion} ({b.region})" for b in phase.stuck)
        return [
            Reason(
                NOT_READY,
                "did_not_converge",
                f"{phase.title()} did not converge: {len(phase.stuck)} of {len(phase.bastions)} "
                f"clients never recovered ({stuck})",
                where,
            )
        ]
    assert phase.rto is not None
    reasons = []
    if phase.status == PHASE_OVER:
        reasons.append(
            Reason(
                NOT_READY,
                "over_objective",
                f"{phase.title()} took {phase.rto:.0f} s, over the {phase.objective:g} s objective",
                where,
            )
        )
    elif phase.status == PHASE_NEAR:
        reasons.append(
            Reason(
                AT_RISK,
                "near_objective",
                f"{phase.title()} took {phase.rto:.0f} s: within the {phase.objective:g} s "
                f"objective but with less than {RTO_MARGIN:.0%} to spare",
                where,
            )
        )
    if phase.model_agrees is False and phase.model_window is not None:
        low, high = phase.model_window
        reasons.append(
            Reason(
                AT_RISK,
                "model_disagrees",
                f"{phase.title()}: DNS flipped after {phase.dns_flip or 0:.0f} s, outside the lab "
                f"model's window {low:.0f}..{high:.0f} s (+/- {interval:g} s)",
                where,
            )
        )
    return reasons


def _coverage(
    regions: Sequence[str],
    drills: Sequence[DrillView],
    scenarios: Sequence[ScenarioView],
    reasons: Sequence[Reason],
) -> list[Reason]:
    measured = {
        d.region
        for d in drills
        if not d.compound and d.phase("failover") is not None and d.phase("failback") is not None
    }
    blocked = {r for reason in reasons if reason.status == NOT_READY for r in reason.regions}
    missing = [r for r in regions if r not in measured and r not in blocked]
    if not missing:
        return []
    if not measured:
        ran = sorted({m for s in scenarios if s.outcome != "skipped" for m in s.markers})
        what = f" (this run: {', '.join(ran)})" if ran else ""
        return [
            Reason(
                AT_RISK,
                "not_measured",
                f"no failover was measured in this run{what}: readiness to lose a region is unproven",
                tuple(missing),
            )
        ]
    return [
        Reason(
            AT_RISK,
            "not_measured",
            f"no clean failover and failback of {region} was measured in this run: its readiness "
            "is unproven",
            (region,),
        )
        for region in missing
    ]


def _headline(
    status: str, reasons: Sequence[Reason], regions: Sequence[RegionView], objective: float
) -> str:
    if status == READY:
        rtos = [p.rto for r in regions for p in r.phases if p.rto is not None]
        slowest = max(rtos, default=0.0)
        return (
            f"Losing any one region today: every client fails over and back within the "
            f"{objective:g} s objective (slowest {slowest:.0f} s)."
        )
    if status == NOT_READY:
        lost = [r.name for r in regions if r.status == NOT_READY]
        if lost:
            return f"The API would not survive losing {' or '.join(lost)} today."
        return "The API is not ready to lose a region: see the blocking reasons below."
    count = sum(1 for r in reasons if r.status == AT_RISK)
    if not any(region.phases for region in regions):
        others = count - sum(1 for r in reasons if r.code == "not_measured")
        more = f" ({others} other risk{'s' if others != 1 else ''} below)" if others else ""
        return (
            f"No failover was measured in this run: readiness to lose a region is unproven{more}."
        )
    noun = "risk needs" if count == 1 else "risks need"
    return f"It survived losing each region drilled, but {count} {noun} attention."


# ---------------------------------------------------------------------- JSON


def iso(epoch: float) -> str:
    """Format a wall-clock epoch as ISO 8601 UTC with millisecond precision."""
    return (
        dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _num(value: float | None, digits: int = 3) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value):
        return None
    return round(float(value), digits)


def _report_dict(report: Report) -> dict[str, Any]:
    run = report.run
    return {
        "schema_version": SCHEMA_VERSION,
        "generator": {"name": "regiondrill", "version": run.regiondrill_version},
        "run": {
            "run_id": run.run_id,
            "target": run.target,
            "regions": list(run.regions),
            "stack_set": run.stack_set,
            "domain": run.domain,
            "started": iso(run.started),
            "ended": iso(run.ended),
            "duration_s": _num(run.duration),
            "objective_s": run.objective,
            "probe_interval_s": run.probe_interval,
            "lab_speed": run.lab_speed,
            "invocation": run.invocation,
            "exit_status": run.exit_status,
            "template_digest": report.template_digest,
        },
        "verdict": {
            "status": report.verdict.status,
            "headline": report.verdict.headline,
            "reasons": [
                {
                    "status": r.status,
                    "code": r.code,
                    "message": r.message,
                    "regions": list(r.regions),
                }
                for r in report.verdict.reasons
            ],
        },
        "regions": [_region_dict(region) for region in report.regions],
        "drills": [drill_dict(drill) for drill in report.drills],
        "scenarios": [
            {
                "nodeid": s.nodeid,
                "outcome": s.outcome,
                "duration_s": _num(s.duration),
                "markers": list(s.markers),
                "region": s.region,
                "message": s.message,
            }
            for s in report.scenarios
        ],
        "other_tests": dict(report.other_tests),
        "faults": [
            {
                "id": f.id,
                "kind": f.kind,
                "target": _jsonable(dict(f.target)),
                "state": f.state,
                "run_id": f.run_id,
                "this_run": f.this_run,
                "injected_at": _num(f.injected_at),
                "restored_at": _num(f.restored_at),
                "restored": f.state == "restored",
                "note": f.note,
            }
            for f in report.faults
        ],
        "findings": [
            {
                "kind": f.kind,
                "severity": f.severity,
                "title": f.title,
                "explanation": f.explanation,
                "regions": list(f.regions),
                "scenario": f.scenario,
                "evidence": _jsonable(dict(f.evidence)),
            }
            for f in report.findings
        ],
        "stacks": [
            {
                "name": s.name,
                "kind": s.kind,
                "region": s.region,
                "deployed_in": s.deployed_in,
                "template_sha256": s.template_sha256,
                "created": s.created,
            }
            for s in report.stacks
        ],
        "observations": _jsonable(dict(report.observations)),
        "problems": list(report.problems),
    }


def _region_dict(region: RegionView) -> dict[str, Any]:
    def summary(phase: PhaseView | None) -> dict[str, Any] | None:
        if phase is None:
            return None
        return {
            "fault": phase.fault,
            "rto_s": _num(phase.rto),
            "objective_s": phase.objective,
            "status": phase.status,
            "margin": _num(phase.margin),
        }

    return {
        "name": region.name,
        "status": region.status,
        "worst_failover": summary(region.worst("failover")),
        "worst_failback": summary(region.worst("failback")),
        "methods": list(region.methods),
        "findings": region.findings,
        "reasons": [r.code for r in region.reasons],
    }


def drill_dict(drill: DrillView) -> dict[str, Any]:
    """Return one drill as report JSON (also attached to allure on its own)."""
    return {
        "id": drill.id,
        "scenario": drill.scenario,
        "fault": drill.fault,
        "region": drill.region,
        "origin": _num(drill.origin),
        "compound": drill.compound,
        "concurrent_faults": list(drill.concurrent_faults),
        "markers": [
            {"at_s": _num(m.at), "kind": m.kind, "label": m.label, "own": m.own}
            for m in drill.markers
        ],
        "faults_active": [
            {"label": f.label, "from_s": _num(f.start), "to_s": _num(f.end), "own": f.own}
            for f in drill.spans
        ],
        "phases": [
            {
                "phase": p.phase,
                "fault": p.fault,
                "region": p.region,
                "at_s": _num(p.at),
                "objective_s": p.objective,
                "rto_s": _num(p.rto),
                "dns_flip_s": _num(p.dns_flip),
                "converged": p.converged,
                "status": p.status,
                "margin": _num(p.margin),
                "model_window_s": list(p.model_window) if p.model_window else None,
                "model_agrees": p.model_agrees,
                "fault_id": p.fault_id,
                "bastions": [
                    {
                        "bastion": b.bastion,
                        "region": b.region,
                        "converged": b.converged,
                        "recovery_s": _num(b.recovery),
                        "dns_flip_s": _num(b.dns_flip),
                        "api_recovery_s": _num(b.api_recovery),
                        "first_failure_s": _num(b.first_failure),
                        "last_failure_s": _num(b.last_failure),
                        "failed_samples": b.failed_samples,
                        "flaps": b.flaps,
                        "regions_seen": list(b.regions_seen),
                        "error_windows_s": [[_num(a), _num(z)] for a, z in b.error_windows],
                    }
                    for b in p.bastions
                ],
            }
            for p in drill.phases
        ],
        "timelines": [
            {
                "phase": lane.phase,
                "bastion": lane.bastion,
                "region": lane.region,
                "started_s": _num(lane.started),
                "ended_s": _num(lane.ended),
                "samples": lane.samples,
                "complete": lane.complete,
                "segments": [
                    {
                        "start_s": _num(s.start),
                        "end_s": _num(s.end),
                        "samples": s.samples,
                        "addresses": list(s.addresses),
                        "dns_region": s.dns_region,
                        "api_region": s.api_region,
                        "http_code": s.http_code,
                        "curl_exit": s.curl_exit,
                        "ok": s.ok,
                    }
                    for s in lane.segments
                ],
            }
            for lane in drill.lanes
        ],
    }


def _jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON data (tuples to lists, other objects to strings)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_jsonable(v) for v in items]
    return str(value)


# ---------------------------------------------------------------------- history


HISTORY_SCHEMA = "regiondrill.history/1"


def history_record(report: Report) -> dict[str, Any]:
    """Return the compact one-line record of a run kept in ``history.jsonl`` for trends."""
    rto: dict[str, dict[str, Any]] = {}
    for region in report.regions:
        entry: dict[str, Any] = {}
        for phase in ("failover", "failback"):
            view = region.worst(phase)
            if view is not None:
                entry[phase] = _num(view.rto, 1)  # None: did not converge
        if entry:
            rto[region.name] = entry
    counts = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    for scenario in report.scenarios:
        counts[scenario.outcome] = counts.get(scenario.outcome, 0) + 1
    severities = {"high": 0, "medium": 0, "low": 0}
    for finding in report.findings:
        severities[finding.severity] = severities.get(finding.severity, 0) + 1
    return {
        "schema": HISTORY_SCHEMA,
        "run_id": report.run.run_id,
        "started": iso(report.run.started),
        "target": report.run.target,
        "regions": list(report.run.regions),
        "objective_s": report.run.objective,
        "verdict": report.verdict.status,
        "reasons": sorted({r.code for r in report.verdict.reasons}),
        "rto_s": rto,
        "scenarios": counts,
        "findings": severities,
        "template_digest": report.template_digest[:16],
    }
