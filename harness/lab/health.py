"""The lab's health pipeline: NLB target health -> CloudWatch -> alarms -> Route 53 -> resolvers.

Every stage runs on the lab clock (``lab.scheduler``) and reads its parameters from the deployed
resources on each tick, so the failover time the lab shows is the one the templates would give on
AWS (``harness.lab.model`` predicts it from the same parameters). The stages, with the exact
timing the model relies on:

1. **Target health checks** (per target group, one timer per group). A target is checked once
   when the lab first sees it registered (AWS registers in minutes; the lab at once, so a freshly
   deployed stack is steady), then with all of its group's targets on the group's timer, every
   ``HealthCheckIntervalSeconds`` from when the lab first saw the group.
   A check succeeds when the target group is in use by a load balancer (a target registered
   before any listener uses its group is checked once the group is in use), the target's address
   is reachable on the health-check port from the load balancer node in the target's
   availability zone (any node when no node is in that zone) according to ``lab.network``, the
   address is an interface endpoint's ENI (the only thing the lab serves on 443), and, for an
   ``execute-api`` endpoint, ``api_up(region)`` holds. States follow ELB: a new target is
   ``initial`` (``Elb.RegistrationInProgress``, then ``Elb.InitialHealthChecking``) and becomes
   ``healthy`` after ONE successful check ("your target is not in service until it passes one
   health check", NLB troubleshooting guide) or ``unhealthy`` after ``UnhealthyThresholdCount``
   consecutive failures; a healthy target becomes ``unhealthy`` after ``UnhealthyThresholdCount``
   consecutive failures, an unhealthy one ``healthy`` after ``HealthyThresholdCount``
   consecutive successes. A target group no load balancer uses has ``unused`` targets
   (``Target.NotInUse``) and is not checked. Deregistered targets disappear at once (the lab does
   not model the deregistration delay). HTTP/HTTPS health checks are evaluated as TCP connects
   (logged once per target group).
2. **Metrics.** At every lab minute boundary ``m`` the pipeline writes ``HealthyHostCount`` and
   ``UnHealthyHostCount`` (namespace ``AWS/NetworkELB``) into moto CloudWatch for every
   (LoadBalancer, TargetGroup) pair, stamped ``m - 60`` (the start of the minute the datapoint
   describes, as AWS stamps its per-minute aggregates) with the count at ``m`` (the lab's
   aggregate is the end-of-minute sample). The lab keeps ``METRIC_RETENTION`` lab seconds of its own datapoints. The per-zone
   series (with an ``AvailabilityZone`` dimension) is not published: moto's GetMetricStatistics
   matches dimensions as a subset, so it would add the per-zone datapoints into every
   (LoadBalancer, TargetGroup) query and double the sums AWS returns.
3. **Alarms.** Every metric alarm is evaluated at each multiple of its ``Period`` on the lab
   clock (so at the minute boundary, just after publication, for 60 s periods) over the
   ``EvaluationPeriods`` most recent complete periods ``[e - k*P, e - (k-1)*P)``, with the
   statistic, ``DatapointsToAlarm``, ``TreatMissingData``, comparison and threshold as
   configured (``evaluate_alarm``). State changes go through moto's ``set_alarm_state`` with
   AWS-style reasons and lab-clock timestamps, and into the lab's alarm history (served by the
   CloudWatch overlay as ``DescribeAlarmHistory``). New alarms start ``INSUFFICIENT_DATA``
   (moto starts them ``OK``; corrected as soon as the pipeline sees them).
4. **Route 53 health checks**, recomputed in the same tick as an alarm change (and every
   ``TICK`` seconds, and at once on ``UpdateHealthCheck``): ``CLOUDWATCH_METRIC`` follows the
   alarm (``OK`` healthy, ``ALARM`` unhealthy, ``INSUFFICIENT_DATA`` per
   ``InsufficientDataHealthStatus``, ``LastKnownStatus`` starting healthy), ``CALCULATED``
   counts healthy children against ``HealthThreshold``; ``Inverted`` flips; ``Disabled`` is
   always healthy. Other types (HTTP, TCP...) cannot be checked from the lab (nothing in it is
   public): they are reported healthy and logged once, naming the type.
5. **Propagation.** What the resolvers see (``record_healthy``, ``load_balancer_healthy``) is
   the computed status as it was ``lab.health_propagation`` lab seconds ago (default 10 s): the
   lab's model of Route 53 aggregating its checkers' results before DNS changes.
   ``GetHealthCheckStatus`` shows the checkers' own (unpropagated) view.

Locking: the pipeline's lock is always taken after ``lab.state_lock``, never before it, and
nothing that may take the state lock (``lab.topology()``, ``lab.network.check``) is called while
holding it. The views other components read on every connection or query
(``record_healthy``, ``healthy_nodes``...) are lock-free reads of immutable values.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from moto.cloudwatch.models import cloudwatch_backends

from harness.errors import LabError
from harness.lab.scheduler import Handle
from harness.lab.topology import HealthCheck, LoadBalancer, TargetGroup, Topology

if TYPE_CHECKING:
    from harness.lab.lab import Lab

log = logging.getLogger(__name__)

NAMESPACE = "AWS/NetworkELB"
HEALTHY_HOST_COUNT = "HealthyHostCount"
UNHEALTHY_HOST_COUNT = "UnHealthyHostCount"
METRIC_INTERVAL = 60  # lab seconds between datapoints (NLB metrics are per minute)
TICK = 10  # lab seconds; every CloudWatch alarm period (10, 20, 30, 60*k) is a multiple of it
METRIC_RETENTION = 3 * 3600  # lab seconds of the lab's own datapoints kept in moto
HISTORY_LIMIT = 1000  # alarm history items kept per region
DEFAULT_PROPAGATION = 10.0  # lab seconds; Lab(health_propagation=...) overrides it
API_SERVICE_SUFFIX = ".execute-api"
SERVED_ENDPOINT_PORT = 443  # interface endpoints accept TLS on 443 only

KNOWN_HOOKS = frozenset({"ignore-inverted"})
"""Deliberate faults in the lab itself, used only to prove that tests can fail.

``ignore-inverted``: health-check status ignores ``Inverted`` (so the reference outage method
has no effect).
"""

# Route 53 health checkers: region and an address inside that region's published
# ROUTE53_HEALTHCHECKS range (only ever shown in GetHealthCheckStatus, never contacted).
CHECKERS: tuple[tuple[str, str], ...] = (
    ("us-east-1", "54.243.31.202"),
    ("us-west-1", "54.183.255.140"),
    ("us-west-2", "54.244.52.200"),
    ("eu-west-1", "54.228.16.10"),
    ("ap-southeast-1", "54.255.254.200"),
    ("ap-southeast-2", "54.252.254.200"),
    ("ap-northeast-1", "54.248.220.10"),
    ("sa-east-1", "177.71.207.140"),
)

ALARM_STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")
COMPARISONS = {
    "GreaterThanOrEqualToThreshold": ("greater than or equal to", lambda v, t: v >= t),
    "GreaterThanThreshold": ("greater than", lambda v, t: v > t),
    "LessThanThreshold": ("less than", lambda v, t: v < t),
    "LessThanOrEqualToThreshold": ("less than or equal to", lambda v, t: v <= t),
}
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
MISSING_TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")

# ELB target-health reasons and their AWS descriptions.
REASONS = {
    "Elb.RegistrationInProgress": "Target registration is in progress",
    "Elb.InitialHealthChecking": "Initial health checks in progress",
    "Target.FailedHealthChecks": "Health checks failed",
    "Target.NotInUse": "Target group is not configured to receive traffic from the load balancer",
    "Target.InvalidState": "Target is in the stopped state",
}


# ---------------------------------------------------------------------- time


def lab_datetime(lab_seconds: float) -> datetime:
    """Return a lab epoch instant as the naive UTC datetime moto stores."""
    return datetime.fromtimestamp(lab_seconds, UTC).replace(tzinfo=None)


def epoch_seconds(value: datetime) -> float:
    """Return the epoch seconds of a datetime (naive ones are UTC, as in moto)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _reason_time(lab_seconds: float) -> str:
    """Format an instant as alarm state reasons do: ``26/11/26 10:01:00``."""
    return lab_datetime(lab_seconds).strftime("%d/%m/%y %H:%M:%S")


def _data_time(lab_seconds: float) -> str:
    """Format an instant as alarm state reason data does: ``2026-11-26T10:01:00.000+0000``."""
    return lab_datetime(lab_seconds).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{round(lab_seconds * 1000) % 1000:03d}+0000"
    )


def iso_time(lab_seconds: float) -> str:
    """Format an instant as Route 53 does: ``2026-11-26T10:01:00.000Z``."""
    return lab_datetime(lab_seconds).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{round(lab_seconds * 1000) % 1000:03d}Z"
    )


# ---------------------------------------------------------------------- alarms (pure)


@dataclass(frozen=True)
class AlarmConfig:
    """The parts of a CloudWatch metric alarm that decide its state."""

    name: str
    region: str
    namespace: str
    metric_name: str
    dimensions: frozenset[tuple[str, str]]
    statistic: str | None
    extended_statistic: str | None
    unit: str | None
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    comparison: str
    threshold: float
    treat_missing_data: str
    metric_math: bool = False

    @classmethod
    def from_moto(cls, alarm: Any, region: str) -> AlarmConfig:
        """Read a moto ``Alarm`` (call with the lab's state lock held)."""
        evaluation_periods = int(alarm.evaluation_periods or 1)
        return cls(
            name=alarm.name,
            region=region,
            namespace=alarm.namespace or "",
            metric_name=alarm.metric_name or "",
            dimensions=frozenset((d.name, d.value) for d in alarm.dimensions),
            statistic=alarm.statistic or None,
            extended_statistic=alarm.extended_statistic or None,
            unit=alarm.unit or None,
            period=int(alarm.period or 60),
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=int(alarm.datapoints_to_alarm or evaluation_periods),
            comparison=alarm.comparison_operator or "",
            threshold=float(alarm.threshold if alarm.threshold is not None else 0.0),
            treat_missing_data=alarm.treat_missing_data or "missing",
            metric_math=bool(alarm.metric_data_queries),
        )

    @property
    def statistic_name(self) -> str:
        return self.statistic or self.extended_statistic or ""

    @property
    def unsupported(self) -> str | None:
        """Why the lab cannot evaluate this alarm, or None when it can."""
        if self.metric_math:
            return "metric-math alarms (Metrics)"
        if self.comparison not in COMPARISONS:
            return f"comparison operator {self.comparison!r} (anomaly-detection bands)"
        if self.statistic is not None and self.statistic not in STATISTICS:
            return f"statistic {self.statistic!r}"
        if self.statistic is None and _percentile(self.extended_statistic) is None:
            return f"extended statistic {self.extended_statistic!r} (only pNN is modelled)"
        if self.period <= 0 or self.period % TICK:
            return f"period {self.period} s (CloudWatch allows 10, 20, 30 or a multiple of 60)"
        if not 1 <= self.datapoints_to_alarm <= self.evaluation_periods:
            return (
                f"DatapointsToAlarm {self.datapoints_to_alarm} with EvaluationPeriods "
                f"{self.evaluation_periods}"
            )
        if self.treat_missing_data not in MISSING_TREATMENTS:
            return f"TreatMissingData {self.treat_missing_data!r}"
        return None


@dataclass(frozen=True)
class PeriodData:
    """One evaluation period: its start (lab epoch seconds) and statistic (None = missing)."""

    start: float
    value: float | None
    sample_count: float = 0.0


@dataclass(frozen=True)
class AlarmDecision:
    """The state an evaluation arrives at, with AWS-style reason text and data."""

    state: str
    reason: str
    reason_data: Mapping[str, Any]


def _percentile(name: str | None) -> float | None:
    if not name or not name.startswith("p"):
        return None
    try:
        value = float(name[1:])
    except ValueError:
        return None
    return value if 0 <= value <= 100 else None


def aggregate(
    statistic: str, values: Sequence[float], aggregated: Sequence[Any] = ()
) -> float | None:
    """Return ``statistic`` over raw values and pre-aggregated sets (None when there are none).

    ``aggregated`` items carry ``sum``, ``min``, ``max`` and ``sample_count`` (moto's
    ``MetricAggregatedDatum``). Percentiles (``pNN``) use the nearest-rank method over the raw
    values; they cannot be computed from pre-aggregated sets.
    """
    count = len(values) + sum(float(a.sample_count) for a in aggregated)
    if count == 0:
        return None
    if statistic == "SampleCount":
        return float(count)
    total = float(sum(values)) + sum(float(a.sum) for a in aggregated)
    if statistic == "Sum":
        return total
    if statistic == "Average":
        return total / count
    if statistic == "Minimum":
        return min([*values, *(float(a.min) for a in aggregated)])
    if statistic == "Maximum":
        return max([*values, *(float(a.max) for a in aggregated)])
    percentile = _percentile(statistic)
    if percentile is None:
        raise LabError(f"the lab does not compute the statistic {statistic!r}")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return float(ordered[rank - 1])


def breaches(comparison: str, value: float, threshold: float) -> bool:
    """Return whether ``value`` is on the alarming side of ``threshold``."""
    try:
        return bool(COMPARISONS[comparison][1](value, threshold))
    except KeyError:
        raise LabError(f"unsupported comparison operator {comparison!r}") from None


def evaluate_alarm(
    config: AlarmConfig,
    periods: Sequence[PeriodData],
    current_state: str,
    evaluated_at: float,
) -> AlarmDecision | None:
    """Decide an alarm's state from its most recent periods (most recent first).

    Returns None when the alarm keeps its state without re-evaluation (``ignore`` with no data).
    Missing data follows AWS's documented rules ("Configuring how CloudWatch alarms treat
    missing data"):

    - every period missing: ``missing`` -> INSUFFICIENT_DATA, ``ignore`` -> keep the state,
      ``breaching`` -> ALARM, ``notBreaching`` -> OK;
    - at least ``DatapointsToAlarm`` real datapoints: only they are evaluated (M of them must
      breach for ALARM), whatever the treatment;
    - fewer real datapoints than ``DatapointsToAlarm``: missing ones are filled as breaching
      (``breaching``), as not breaching (``notBreaching``), as the current state says
      (``ignore``: ALARM counts them as breaching), and ``missing`` evaluates the real ones
      alone, ALARM when all of them breach (for 3 of 3, AWS's examples give ALARM for one
      breaching datapoint and two missing, OK for one non-breaching and two missing).

    The lab's evaluation range is exactly ``EvaluationPeriods`` periods (AWS looks a little
    further back for late data; the lab's data is never late).
    """
    if len(periods) != config.evaluation_periods:
        raise LabError(
            f"alarm {config.name}: {len(periods)} periods given for EvaluationPeriods "
            f"{config.evaluation_periods}"
        )
    n, m = config.evaluation_periods, config.datapoints_to_alarm
    treatment = config.treat_missing_data
    existing = [p for p in periods if p.value is not None]
    flags = {
        p.start: breaches(config.comparison, p.value, config.threshold)
        for p in existing
        if p.value is not None
    }
    breaching = sum(flags.values())
    missing = n - len(existing)
    filled_breaching = 0
    if not existing:
        if treatment == "missing":
            state = "INSUFFICIENT_DATA"
        elif treatment == "ignore":
            return None
        else:
            state = "ALARM" if treatment == "breaching" else "OK"
    elif len(existing) >= m:
        state = "ALARM" if breaching >= m else "OK"
    elif treatment == "missing":
        state = "ALARM" if breaching == len(existing) else "OK"
    else:
        fill = treatment == "breaching" or (treatment == "ignore" and current_state == "ALARM")
        filled_breaching = missing if fill else 0
        state = "ALARM" if breaching + filled_breaching >= m else "OK"
    reason = _state_reason(config, periods, flags, state, current_state, missing, filled_breaching)
    data: dict[str, Any] = {
        "version": "1.0",
        "queryDate": _data_time(evaluated_at),
        "startDate": _data_time(periods[-1].start) if periods else _data_time(evaluated_at),
        "statistic": config.statistic_name,
        "period": config.period,
        "recentDatapoints": [p.value for p in reversed(existing)],
        "threshold": config.threshold,
        "evaluatedDatapoints": [
            {
                "timestamp": _data_time(p.start),
                "sampleCount": float(p.sample_count),
                "value": p.value,
            }
            for p in existing
        ],
    }
    return AlarmDecision(state, reason, data)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _state_reason(
    config: AlarmConfig,
    periods: Sequence[PeriodData],
    flags: Mapping[float, bool],
    state: str,
    current_state: str,
    missing: int,
    filled_breaching: int,
) -> str:
    n, m = config.evaluation_periods, config.datapoints_to_alarm
    if state == "INSUFFICIENT_DATA":
        verb = "was" if n == 1 else "were"
        return f"Insufficient Data: {_plural(n, 'datapoint')} {verb} unknown."
    words = COMPARISONS[config.comparison][0]
    threshold = repr(float(config.threshold))
    alarming = state == "ALARM"
    listed = [
        (p.start, p.value)
        for p in periods
        if p.value is not None and p.start in flags and flags[p.start] == alarming
    ]
    shown = ", ".join(f"{float(value)!r} ({_reason_time(start)})" for start, value in listed)
    negation = "" if alarming else "not "
    if not flags:
        treated = "Breaching" if state == "ALARM" else "NonBreaching"
        return (
            f"Threshold Crossed: no datapoints were received for {_plural(n, 'period')} and "
            f"{_plural(n, 'missing datapoint')} {'was' if n == 1 else 'were'} treated as "
            f"[{treated}]."
        )
    if n == 1:
        return (
            f"Threshold Crossed: 1 datapoint [{shown}] was {negation}{words} the threshold "
            f"({threshold})."
        )
    verb = "was" if len(listed) == 1 else "were"
    text = (
        f"Threshold Crossed: {len(listed)} out of the last {n} datapoints [{shown}] {verb} "
        f"{negation}{words} the threshold ({threshold}) (minimum {_plural(m, 'datapoint')} for "
        f"{current_state} -> {state} transition)."
    )
    if filled_breaching:
        text += f" {_plural(filled_breaching, 'missing datapoint')} treated as [Breaching]."
    elif missing and config.treat_missing_data in ("notBreaching", "ignore"):
        text += f" {_plural(missing, 'missing datapoint')} treated as [NonBreaching]."
    return text


# ---------------------------------------------------------------------- target health (pure)


@dataclass(frozen=True)
class TargetHealth:
    """What DescribeTargetHealth shows for one target."""

    state: str  # initial | healthy | unhealthy | unused
    reason: str | None = None
    description: str | None = None


@dataclass
class TargetCheckState:
    """One target's ELB health state machine (see the module docstring)."""

    state: str = "initial"
    reason: str | None = "Elb.RegistrationInProgress"
    successes: int = 0
    failures: int = 0
    changed_at: float = 0.0
    last_failure: str = ""

    def observe(
        self, ok: bool, *, healthy_threshold: int, unhealthy_threshold: int, now: float
    ) -> bool:
        """Record one health-check result; return whether the state changed."""
        before = self.state
        if ok:
            self.failures = 0
            self.successes += 1
            if self.state == "initial" or (
                self.state == "unhealthy" and self.successes >= healthy_threshold
            ):
                self.state, self.reason = "healthy", None
        else:
            self.successes = 0
            self.failures += 1
            if self.state == "initial":
                self.reason = "Elb.InitialHealthChecking"
            if self.state != "unhealthy" and self.failures >= unhealthy_threshold:
                self.state, self.reason = "unhealthy", "Target.FailedHealthChecks"
        if self.state != before:
            self.changed_at = now
            return True
        return False

    def view(self) -> TargetHealth:
        return TargetHealth(self.state, self.reason, REASONS.get(self.reason or ""))


# ---------------------------------------------------------------------- pipeline state


@dataclass
class _Group:
    """A target group's checker: its timer and its targets' state machines."""

    arn: str
    handle: Handle | None = None
    next_due: float = 0.0
    targets: dict[tuple[str, int], TargetCheckState] = field(default_factory=dict)


@dataclass(frozen=True)
class HistoryItem:
    """One alarm history entry (DescribeAlarmHistory)."""

    alarm_name: str
    timestamp: float  # lab epoch seconds
    item_type: str  # ConfigurationUpdate | StateUpdate
    summary: str
    data: str
    alarm_type: str = "MetricAlarm"


@dataclass(frozen=True)
class CheckStatus:
    """A Route 53 health check's computed (unpropagated) status."""

    healthy: bool
    text: str  # GetHealthCheckStatus status text, "Success: ..." / "Failure: ..."
    checked_at: float


Timeline = tuple[tuple[float, bool], ...]  # (lab time, healthy), oldest first


def _status_at(timeline: Timeline, when: float, default: bool = True) -> bool:
    status = default
    for at, healthy in timeline:
        if at > when:
            break
        status = healthy
    return status


def _append(timeline: Timeline, at: float, healthy: bool, keep_after: float) -> Timeline:
    """Add a transition, dropping entries no reader can need (older than ``keep_after``)."""
    if timeline and timeline[-1][1] == healthy:
        return timeline
    if timeline:
        at = max(at, timeline[-1][0])  # a late tick must not insert a transition in the past
    kept = list(timeline)
    while len(kept) > 1 and kept[1][0] <= keep_after:
        kept.pop(0)
    kept.append((at, healthy))
    return tuple(kept)


class _Hooks(set[str]):
    """The pipeline's deliberate-fault switches; only names in KNOWN_HOOKS are accepted."""

    def add(self, name: str) -> None:
        if name not in KNOWN_HOOKS:
            raise LabError(
                f"unknown health-pipeline hook {name!r}; known: {', '.join(sorted(KNOWN_HOOKS))}"
            )
        super().add(name)


class HealthPipeline:
    """Component ``health``: target health, metrics, alarms and Route 53 health-check status."""

    name = "health"

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.hooks: set[str] = _Hooks()
        self._lock = threading.RLock()
        self._groups: dict[str, _Group] = {}
        self._api_down: set[str] = set()
        self._tick_handle: Handle | None = None
        self._stopped = False
        self._warned: set[str] = set()
        # Read lock-free by other components: whole values are swapped in (a dict, or one
        # entry's immutable tuple), never mutated in place.
        self._target_views: dict[str, dict[tuple[str, int], TargetHealth]] = {}
        self._check_status: dict[str, CheckStatus] = {}
        self._check_timelines: dict[str, Timeline] = {}
        self._lb_timelines: dict[str, Timeline] = {}
        self._last_known: dict[str, bool] = {}
        self._last_failure: dict[str, CheckStatus] = {}
        self._history: dict[str, list[HistoryItem]] = {}
        self._last_prune = 0.0
        # The newest topology version acted on: the reconciler may deliver an older snapshot after
        # a newer one was used (e.g. by health_check_changed), and acting on it would undo changes.
        self._newest_version = -1

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Publish the pipeline as ``lab.health`` and start the lab-clock tick."""
        self.lab.health = self
        now = self.lab.clock.now()
        first = math.floor(now / TICK) * TICK + TICK
        self._schedule_tick(first)

    def stop(self) -> None:
        """Cancel every timer and withdraw ``lab.health``."""
        with self._lock:
            self._stopped = True
            if self._tick_handle is not None:
                self._tick_handle.cancel()
            for group in self._groups.values():
                if group.handle is not None:
                    group.handle.cancel()
            self._groups.clear()
        if self.lab.health is self:
            self.lab.health = None

    def update(self, topology: Topology) -> None:
        """Follow registrations, new alarms and health-check changes (reconciler thread)."""
        now = self.lab.clock.now()
        fresh: list[tuple[str, tuple[str, int]]] = []
        users = _users_by_group(topology)
        with self._lock:
            if self._stopped or topology.version < self._newest_version:
                return
            self._newest_version = topology.version
            for arn in list(self._groups):
                if arn not in topology.target_groups:
                    gone = self._groups.pop(arn)
                    if gone.handle is not None:
                        gone.handle.cancel()
            for arn, tg in topology.target_groups.items():
                group = self._groups.get(arn)
                if group is None:
                    group = self._groups[arn] = _Group(arn)
                    self._schedule_group(group, now + tg.interval)
                wanted = {(t.id, t.port) for t in tg.targets}
                for key in list(group.targets):
                    if key not in wanted:
                        del group.targets[key]
                for key in wanted - set(group.targets):
                    group.targets[key] = TargetCheckState(changed_at=now)
                # Registration completes once a load balancer uses the group: targets never
                # checked yet are checked at once (a stack creates the listener after them).
                if users.get(arn):
                    fresh.extend(
                        (arn, key)
                        for key, state in group.targets.items()
                        if state.reason == "Elb.RegistrationInProgress"
                    )
            self._refresh_views(topology, now)
        # A target is checked once as soon as it is registered (the lab's registration is
        # instantaneous); outside the lock, since reachability reads the topology.
        self._run_checks(topology, fresh, now)
        with self.lab.state_lock, self._lock:
            self._sync_alarms_locked()
            self._recompute_checks_locked(topology, now)

    # ------------------------------------------------------------------ public views

    def api_up(self, region: str) -> bool:
        """Return whether the region's API Gateway service is up (default: yes)."""
        return region not in self._api_down

    def set_api_up(self, region: str, up: bool) -> None:
        """Switch a region's API Gateway service on or off (an outage the lab can inject).

        Raises:
            LabError: the region is not one of the lab's.
        """
        if region not in self.lab.regions:
            raise LabError(
                f"region {region!r} is not served by this lab ({', '.join(self.lab.regions)})"
            )
        with self._lock:
            if up:
                self._api_down.discard(region)
            else:
                self._api_down.add(region)
        log.info("API Gateway in %s is now %s", region, "up" if up else "DOWN")

    @property
    def propagation(self) -> float:
        """The lab seconds Route 53 takes to act on a health-check status change."""
        return float(getattr(self.lab, "health_propagation", DEFAULT_PROPAGATION))

    def record_healthy(self, health_check_id: str) -> bool:
        """Return Route 53's propagated view of a health check (what DNS answers follow).

        A health check the pipeline has not evaluated yet counts as healthy, as Route 53
        treats a new health check until it has data.
        """
        timeline = self._check_timelines.get(health_check_id, ())
        return _status_at(timeline, self.lab.clock.now() - self.propagation)

    def health_check_status(self, health_check_id: str) -> bool:
        """Return a health check's computed status now (before propagation)."""
        status = self._check_status.get(health_check_id)
        return True if status is None else status.healthy

    def target_health(self, target_group_arn: str) -> dict[tuple[str, int], TargetHealth]:
        """Return each registered target's health, keyed by (target id, port)."""
        return dict(self._target_views.get(target_group_arn, {}))

    def target_group_healthy_targets(self, tg_arn: str) -> set[str]:
        """Return the ids of a target group's healthy targets."""
        return {
            target_id
            for (target_id, _), view in self._target_views.get(tg_arn, {}).items()
            if view.state == "healthy"
        }

    def load_balancer_healthy(self, lb_arn: str) -> bool:
        """Return Route 53's propagated view of whether a load balancer has a healthy target.

        This is what alias records with EvaluateTargetHealth follow, so it lags the targets'
        state by the same propagation delay as health checks. A load balancer the pipeline has
        not seen yet counts as healthy.
        """
        timeline = self._lb_timelines.get(lb_arn, ())
        return _status_at(timeline, self.lab.clock.now() - self.propagation)

    def healthy_nodes(self, lb_arn: str) -> list[str]:
        """Return the node addresses of a load balancer's zones that have a healthy target.

        All nodes when no zone has one (NLB fails open), in subnet order; [] for an unknown
        load balancer. Not delayed: this is the load balancer's own DNS, not Route 53's.
        """
        topology = self.lab.topology()
        lb = topology.load_balancers.get(lb_arn)
        if lb is None:
            return []
        nodes = sorted(lb.nodes.items())
        zones = {
            self._target_zone(topology, target_id)
            for arn in _target_groups_of(lb)
            for (target_id, _), view in self._target_views.get(arn, {}).items()
            if view.state == "healthy"
        }
        chosen = [
            address
            for subnet_id, address in nodes
            if (subnet := topology.subnets.get(subnet_id)) is not None
            and subnet.availability_zone in zones
        ]
        return chosen or [address for _, address in nodes]

    def alarm_history(self, region: str) -> list[HistoryItem]:
        """Return the lab's alarm history of a region, oldest first."""
        with self._lock:
            return list(self._history.get(region, ()))

    def observations(self, health_check: Any) -> list[dict[str, str]]:
        """Return GetHealthCheckStatus observations for a moto health check (one per checker)."""
        status = self._check_status.get(health_check.id)
        if status is None:
            topology = self.lab.topology()
            now = self.lab.clock.now()
            with self.lab.state_lock, self._lock:
                self._recompute_checks_locked(topology, now)
            status = self._check_status.get(health_check.id)
        if status is None:
            raise LabError(f"health check {health_check.id} is unknown to the lab")
        checked = iso_time(status.checked_at)
        return [
            {"Region": region, "IPAddress": address, "Status": status.text, "CheckedTime": checked}
            for region, address in CHECKERS
        ]

    def last_failure_observations(self, health_check: Any) -> list[dict[str, str]]:
        """Return GetHealthCheckLastFailureReason observations ([] if it never failed)."""
        status = self._last_failure.get(health_check.id)
        if status is None:
            return []
        checked = iso_time(status.checked_at)
        return [
            {"Region": region, "IPAddress": address, "Status": status.text, "CheckedTime": checked}
            for region, address in CHECKERS
        ]

    # ------------------------------------------------------------------ control-plane events

    def health_check_changed(self, health_check_id: str) -> None:
        """Re-evaluate a health check at once (called after UpdateHealthCheck).

        Runs inside the gateway's request, before the gateway records the change, so the
        topology is bumped here to see the new configuration; the propagated view still lags.
        """
        self.lab.notify_changed()
        topology = self.lab.topology()
        now = self.lab.clock.now()
        with self.lab.state_lock, self._lock:
            self._recompute_checks_locked(topology, now)

    def sync_alarms(self) -> None:
        """Give alarms the pipeline has not seen yet their AWS initial state (INSUFFICIENT_DATA)."""
        with self.lab.state_lock, self._lock:
            self._sync_alarms_locked()

    def alarm_replaced(self, region: str, old: Any, new: Any) -> None:
        """PutMetricAlarm overwrote an existing alarm: keep its state, as AWS does."""
        now = self.lab.clock.now()
        with self.lab.state_lock, self._lock:
            new.state_value = old.state_value
            new.state_reason = old.state_reason
            new.state_reason_data = old.state_reason_data
            new.state_updated_timestamp = old.state_updated_timestamp
            new.state_transitioned_timestamp = getattr(
                old, "state_transitioned_timestamp", old.state_updated_timestamp
            )
            new.configuration_updated_timestamp = lab_datetime(now)
            new.lab_seen = True
            self._record(
                region,
                HistoryItem(
                    new.name,
                    now,
                    "ConfigurationUpdate",
                    f'Alarm "{new.name}" updated',
                    json.dumps({"type": "Update", "version": "1.0"}),
                ),
            )

    def alarm_state_set(self, region: str, name: str, old_state: str, old_reason: str) -> None:
        """SetAlarmState changed an alarm: lab timestamps, history, health checks at once."""
        now = self.lab.clock.now()
        topology = self.lab.topology()
        with self.lab.state_lock, self._lock:
            alarm: Any = cloudwatch_backends[self.lab.account_id][region].alarms.get(name)
            if alarm is None:
                return
            alarm.lab_seen = True
            changed = alarm.state_value != old_state
            self._stamp_state(alarm, now, changed=changed)
            if changed:
                self._record_state_change(region, alarm, old_state, old_reason, now)
            self._recompute_checks_locked(topology, now)

    # ------------------------------------------------------------------ target checks

    def _schedule_group(self, group: _Group, due: float) -> None:
        group.next_due = due
        group.handle = self.lab.scheduler.call_at(
            due, lambda: self._group_tick(group.arn, due), name=f"health-check {group.arn}"
        )

    def _group_tick(self, arn: str, due: float) -> None:
        topology = self.lab.topology()
        tg = topology.target_groups.get(arn)
        with self._lock:
            group = self._groups.get(arn)
            if self._stopped or group is None or tg is None or group.next_due != due:
                return
            keys = list(group.targets)
            # Read the interval on every tick, so ModifyTargetGroup takes effect.
            self._schedule_group(group, due + tg.interval)
        self._run_checks(topology, [(arn, key) for key in keys], due)

    def _run_checks(
        self, topology: Topology, work: Iterable[tuple[str, tuple[str, int]]], now: float
    ) -> None:
        """Check targets (no lock held: reachability reads the topology) and apply results."""
        users = _users_by_group(topology)
        results = []
        for arn, key in work:
            tg = topology.target_groups.get(arn)
            if tg is None:
                continue
            results.append((arn, key, self._probe(topology, tg, users.get(arn, []), key)))
        if not results:
            return
        with self._lock:
            for arn, key, (ok, why) in results:
                group = self._groups.get(arn)
                tg = topology.target_groups.get(arn)
                state = group.targets.get(key) if group is not None else None
                if state is None or tg is None or ok is None:
                    continue
                if not ok:
                    state.last_failure = why
                if state.observe(
                    ok,
                    healthy_threshold=tg.healthy_threshold,
                    unhealthy_threshold=tg.unhealthy_threshold,
                    now=now,
                ):
                    log.info(
                        "target %s:%s of %s is now %s%s",
                        key[0],
                        key[1],
                        tg.full_name,
                        state.state,
                        f" ({why})" if not ok else "",
                    )
            self._refresh_views(topology, now)

    def _probe(
        self,
        topology: Topology,
        tg: TargetGroup,
        users: Sequence[LoadBalancer],
        key: tuple[str, int],
    ) -> tuple[bool | None, str]:
        """Run one health check; (None, why) when the target is not checked at all."""
        target_id, port = key
        if not users:
            return None, "target group not in use"
        if tg.health_check_protocol not in ("TCP", "TLS"):
            self._warn_once(
                f"protocol {tg.arn}",
                "target group %s uses %s health checks; the lab evaluates them as TCP connects",
                tg.full_name,
                tg.health_check_protocol,
            )
        check_port = port if tg.health_check_port == "traffic-port" else int(tg.health_check_port)
        interface = topology.interface(target_id)
        if interface is None:
            instance = topology.instances.get(target_id)
            if instance is not None:
                self._warn_once(
                    f"instance {target_id}",
                    "target %s of %s is an instance; the lab serves nothing on instances' "
                    "health-check ports, so its checks fail",
                    target_id,
                    tg.full_name,
                )
                return False, f"nothing serves {target_id}:{check_port}"
            return False, f"no network interface has the address {target_id}"
        if interface.kind != "vpc_endpoint" or check_port != SERVED_ENDPOINT_PORT:
            return False, f"nothing listens on {target_id}:{check_port}"
        endpoint = topology.endpoints.get(interface.owner_id)
        serves_api = endpoint is not None and endpoint.service_name.endswith(API_SERVICE_SUFFIX)
        if serves_api and endpoint is not None and not self.api_up(endpoint.region):
            return False, f"API Gateway in {endpoint.region} is down"
        network = self.lab.network
        if network is None:
            self._warn_once(
                "no network",
                "lab.network is not running: the health pipeline treats every target as "
                "reachable from its load balancer",
            )
            return True, ""
        nodes = _checking_nodes(topology, users, interface.availability_zone)
        reasons = []
        for node in nodes:
            try:
                verdict = network.check(node, target_id, check_port, "tcp")
            except Exception as exc:  # a malformed target must fail its check, not the tick
                return False, f"reachability check failed: {exc}"
            if verdict.allowed:
                return True, ""
            reasons.append(verdict.reason)
        return False, "; ".join(reasons) or "the load balancer has no nodes"

    def _refresh_views(self, topology: Topology, now: float) -> None:
        """Rebuild the lock-free target views and load-balancer timelines (lock held)."""
        users = _users_by_group(topology)
        views: dict[str, dict[tuple[str, int], TargetHealth]] = {}
        for arn, group in self._groups.items():
            in_use = bool(users.get(arn))
            views[arn] = {
                key: state.view()
                if in_use
                else TargetHealth("unused", "Target.NotInUse", REASONS["Target.NotInUse"])
                for key, state in group.targets.items()
            }
        self._target_views = views
        keep_after = now - self.propagation
        for lb in topology.load_balancers.values():
            healthy = any(
                view.state == "healthy"
                for arn in _target_groups_of(lb)
                for view in views.get(arn, {}).values()
            )
            timeline = self._lb_timelines.get(lb.arn, ())
            self._lb_timelines[lb.arn] = _append(timeline, now, healthy, keep_after)
        for arn in list(self._lb_timelines):
            if arn not in topology.load_balancers:
                del self._lb_timelines[arn]

    @staticmethod
    def _target_zone(topology: Topology, target_id: str) -> str | None:
        interface = topology.interface(target_id)
        if interface is not None:
            return interface.availability_zone
        try:
            subnet = topology.subnet_containing(target_id)
        except ValueError:
            instance = topology.instances.get(target_id)
            return instance.availability_zone if instance is not None else None
        return subnet.availability_zone if subnet is not None else None

    # ------------------------------------------------------------------ the lab-clock tick

    def _schedule_tick(self, due: float) -> None:
        self._tick_handle = self.lab.scheduler.call_at(
            due, lambda: self._tick(due), name="health pipeline tick"
        )

    def _tick(self, due: float) -> None:
        """Publish metrics (on the minute), evaluate due alarms, recompute health checks."""
        with self._lock:
            if self._stopped:
                return
            self._schedule_tick(due + TICK)
        topology = self.lab.topology()
        instant = float(round(due))
        with self.lab.state_lock, self._lock:
            if instant % METRIC_INTERVAL == 0:
                self._publish_locked(topology, instant)
            self._sync_alarms_locked()
            self._evaluate_alarms_locked(instant)
            self._recompute_checks_locked(topology, instant)

    def _publish_locked(self, topology: Topology, instant: float) -> None:
        stamp = lab_datetime(instant - METRIC_INTERVAL)
        by_region: dict[str, list[dict[str, Any]]] = {}
        for lb in topology.load_balancers.values():
            if lb.type != "network":
                continue
            for arn in _target_groups_of(lb):
                tg = topology.target_groups.get(arn)
                if tg is None:
                    continue
                group = self._groups.get(arn)
                states = [state.state for state in (group.targets.values() if group else ())]
                dimensions = [
                    {"Name": "LoadBalancer", "Value": lb.full_name},
                    {"Name": "TargetGroup", "Value": tg.full_name},
                ]
                for metric, wanted in (
                    (HEALTHY_HOST_COUNT, "healthy"),
                    (UNHEALTHY_HOST_COUNT, "unhealthy"),
                ):
                    by_region.setdefault(lb.region, []).append(
                        {
                            "MetricName": metric,
                            "Dimensions": dimensions,
                            "Value": float(states.count(wanted)),
                            "Unit": "Count",
                            "Timestamp": stamp,
                        }
                    )
        account = self.lab.account_id
        for region, data in by_region.items():
            cloudwatch_backends[account][region].put_metric_data(NAMESPACE, data)
        if instant - self._last_prune >= 3600:
            self._last_prune = instant
            horizon = lab_datetime(instant - METRIC_RETENTION)
            for region in by_region:
                backend = cloudwatch_backends[account][region]
                backend.metric_data = [
                    d
                    for d in backend.metric_data
                    if d.namespace != NAMESPACE or d.timestamp >= horizon
                ]

    def _regions_with_alarms(self) -> list[tuple[str, Any]]:
        account = self.lab.account_id
        if account not in cloudwatch_backends:
            return []
        per_region = cloudwatch_backends[account]
        return [(region, per_region[region]) for region in list(per_region.keys())]

    def _sync_alarms_locked(self) -> None:
        for region, backend in self._regions_with_alarms():
            for alarm in list(backend.alarms.values()):
                if getattr(alarm, "lab_seen", False):
                    continue
                alarm.lab_seen = True
                created = self.lab.clock.to_model(
                    epoch_seconds(alarm.configuration_updated_timestamp)
                )
                alarm.configuration_updated_timestamp = lab_datetime(created)
                alarm.state_value = "INSUFFICIENT_DATA"
                alarm.state_reason = "Unchecked: Initial alarm creation"
                alarm.state_reason_data = "{}"
                alarm.state_updated_timestamp = lab_datetime(created)
                alarm.state_transitioned_timestamp = lab_datetime(created)
                self._record(
                    region,
                    HistoryItem(
                        alarm.name,
                        created,
                        "ConfigurationUpdate",
                        f'Alarm "{alarm.name}" created',
                        json.dumps({"type": "Create", "version": "1.0"}),
                        "CompositeAlarm" if alarm.rule is not None else "MetricAlarm",
                    ),
                )

    def _evaluate_alarms_locked(self, instant: float) -> None:
        for region, backend in self._regions_with_alarms():
            index: dict[tuple[str, str, frozenset[tuple[str, str]]], list[Any]] | None = None
            for alarm in list(backend.alarms.values()):
                if alarm.rule is not None:
                    self._warn_once(
                        f"composite {region} {alarm.name}",
                        "composite alarm %s in %s is not evaluated by the lab",
                        alarm.name,
                        region,
                    )
                    continue
                config = AlarmConfig.from_moto(alarm, region)
                problem = config.unsupported
                if problem is not None:
                    self._unsupported_alarm(region, alarm, problem, instant)
                    continue
                if instant % config.period:
                    continue
                if index is None:
                    index = _index_metrics(backend.metric_data)
                periods = _periods(config, index, instant)
                try:
                    decision = evaluate_alarm(config, periods, alarm.state_value, instant)
                except LabError as exc:
                    self._unsupported_alarm(region, alarm, str(exc), instant)
                    continue
                if decision is None or decision.state == alarm.state_value:
                    continue
                old_state, old_reason = alarm.state_value, alarm.state_reason
                backend.set_alarm_state(
                    alarm.name, decision.reason, json.dumps(decision.reason_data), decision.state
                )
                self._stamp_state(alarm, instant, changed=True)
                self._record_state_change(region, alarm, old_state, old_reason, instant)
                log.info("alarm %s in %s: %s -> %s", alarm.name, region, old_state, decision.state)

    def _unsupported_alarm(self, region: str, alarm: Any, problem: str, instant: float) -> None:
        self._warn_once(
            f"unsupported {region} {alarm.name}",
            "alarm %s in %s is not evaluated: the lab does not model %s",
            alarm.name,
            region,
            problem,
            level=logging.ERROR,
        )
        reason = f"Unchecked: the regiondrill lab does not model {problem}"
        if alarm.state_value != "INSUFFICIENT_DATA" or alarm.state_reason != reason:
            old_state, old_reason = alarm.state_value, alarm.state_reason
            alarm.update_state(reason, "{}", "INSUFFICIENT_DATA")
            self._stamp_state(alarm, instant, changed=old_state != "INSUFFICIENT_DATA")
            if old_state != "INSUFFICIENT_DATA":
                self._record_state_change(region, alarm, old_state, old_reason, instant)

    @staticmethod
    def _stamp_state(alarm: Any, instant: float, *, changed: bool) -> None:
        """Put lab-clock timestamps on an alarm moto just stamped with the wall clock."""
        alarm.state_updated_timestamp = lab_datetime(instant)
        if changed or not hasattr(alarm, "state_transitioned_timestamp"):
            alarm.state_transitioned_timestamp = lab_datetime(instant)

    def _record_state_change(
        self, region: str, alarm: Any, old_state: str, old_reason: str, instant: float
    ) -> None:
        try:
            reason_data = json.loads(alarm.state_reason_data or "{}")
        except ValueError:
            reason_data = {}
        data = {
            "version": "1.0",
            "oldState": {"stateValue": old_state, "stateReason": old_reason},
            "newState": {
                "stateValue": alarm.state_value,
                "stateReason": alarm.state_reason,
                "stateReasonData": reason_data,
            },
        }
        self._record(
            region,
            HistoryItem(
                alarm.name,
                instant,
                "StateUpdate",
                f"Alarm updated from {old_state} to {alarm.state_value}",
                json.dumps(data),
            ),
        )

    def _record(self, region: str, item: HistoryItem) -> None:
        items = self._history.setdefault(region, [])
        items.append(item)
        items.sort(key=lambda i: i.timestamp)
        del items[:-HISTORY_LIMIT]

    # ------------------------------------------------------------------ Route 53 health checks

    def _recompute_checks_locked(self, topology: Topology, now: float) -> None:
        """Recompute every health check's status (state lock and pipeline lock held)."""
        if topology.version < self._newest_version:
            return  # a newer snapshot was already used; the reconciler delivers it again
        self._newest_version = topology.version
        statuses: dict[str, CheckStatus] = {}
        for check_id in topology.health_checks:
            self._compute(topology, check_id, now, statuses, depth=0)
        keep_after = now - self.propagation
        for check_id, status in statuses.items():
            timeline = self._check_timelines.get(check_id, ())
            if timeline and timeline[-1][1] != status.healthy:
                log.info(
                    "health check %s is now %s: %s",
                    check_id,
                    "healthy" if status.healthy else "UNHEALTHY",
                    status.text,
                )
            self._check_timelines[check_id] = _append(timeline, now, status.healthy, keep_after)
            if not status.healthy:
                self._last_failure[check_id] = status
        self._check_status = statuses
        for gone in set(self._check_timelines) - set(statuses):
            del self._check_timelines[gone]
            self._last_known.pop(gone, None)
            self._last_failure.pop(gone, None)

    def _compute(
        self,
        topology: Topology,
        check_id: str,
        now: float,
        statuses: dict[str, CheckStatus],
        depth: int,
    ) -> CheckStatus:
        done = statuses.get(check_id)
        if done is not None:
            return done
        check = topology.health_checks.get(check_id)
        if check is None:
            return CheckStatus(False, f"Failure: health check {check_id} does not exist", now)
        if check.disabled:
            status = CheckStatus(
                True, "Success: the health check is disabled; Route 53 considers it healthy", now
            )
            statuses[check_id] = status
            return status
        healthy, text = self._underlying(topology, check, now, statuses, depth)
        if check.inverted and "ignore-inverted" not in self.hooks:
            healthy = not healthy
            text += "; the health check is inverted"
        status = CheckStatus(healthy, ("Success: " if healthy else "Failure: ") + text, now)
        statuses[check_id] = status
        return status

    def _underlying(
        self,
        topology: Topology,
        check: HealthCheck,
        now: float,
        statuses: dict[str, CheckStatus],
        depth: int,
    ) -> tuple[bool, str]:
        """Return a health check's status before Inverted, with the observation text."""
        if check.type == "CLOUDWATCH_METRIC":
            return self._alarm_status(check)
        if check.type == "CALCULATED":
            children, threshold = check.children, check.health_threshold
            if depth > 8:
                return False, "calculated health checks nest too deeply"
            healthy_children = sum(
                1
                for child in children
                if self._compute(topology, child, now, statuses, depth + 1).healthy
            )
            wanted = len(children) if threshold is None else int(threshold)
            return (
                healthy_children >= wanted,
                f"{healthy_children} of {len(children)} child health checks are healthy "
                f"(HealthThreshold {wanted})",
            )
        self._warn_once(
            f"type {check.type}",
            "Route 53 %s health checks cannot be performed in the lab (nothing in it is "
            "public); health check %s and every other of that type are reported healthy",
            check.type,
            check.id,
            level=logging.ERROR,
        )
        return True, f"the regiondrill lab does not perform {check.type} health checks"

    def _alarm_status(self, check: HealthCheck) -> tuple[bool, str]:
        name, region = check.alarm_name, check.alarm_region
        alarm = None
        if name and region:
            try:
                backend = cloudwatch_backends[self.lab.account_id][region]
            except KeyError:  # not a region moto knows: the alarm cannot exist
                backend = None
            alarm = backend.alarms.get(name) if backend is not None else None
        label = f"CloudWatch alarm {name} in {region}"
        if alarm is not None and alarm.state_value in ("OK", "ALARM"):
            healthy = alarm.state_value == "OK"
            self._last_known[check.id] = healthy
            return healthy, f"{label} is in state {alarm.state_value}"
        policy = check.insufficient_data_health_status or "LastKnownStatus"
        if policy == "Healthy":
            healthy = True
        elif policy == "Unhealthy":
            healthy = False
        else:
            healthy = self._last_known.get(check.id, True)
        what = "does not exist" if alarm is None else "is in state INSUFFICIENT_DATA"
        return healthy, f"{label} {what} (InsufficientDataHealthStatus {policy})"

    # ------------------------------------------------------------------ helpers

    def _warn_once(self, key: str, message: str, *args: Any, level: int = logging.WARNING) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        log.log(level, message, *args)


def _target_groups_of(lb: LoadBalancer) -> list[str]:
    return list(
        dict.fromkeys(arn for listener in lb.listeners for arn in listener.target_group_arns)
    )


def _users_by_group(topology: Topology) -> dict[str, list[LoadBalancer]]:
    users: dict[str, list[LoadBalancer]] = {}
    for lb in topology.load_balancers.values():
        for arn in _target_groups_of(lb):
            users.setdefault(arn, []).append(lb)
    return users


def _checking_nodes(
    topology: Topology, users: Sequence[LoadBalancer], zone: str | None
) -> list[str]:
    """Return the node addresses that health-check a target in ``zone``.

    The node in the target's zone; every node when the load balancer has none there.
    """
    nodes = [address for lb in users for _, address in sorted(lb.nodes.items())]
    same_zone = [
        address
        for lb in users
        for subnet_id, address in sorted(lb.nodes.items())
        if (subnet := topology.subnets.get(subnet_id)) is not None
        and subnet.availability_zone == zone
    ]
    return same_zone or nodes


MetricIndex = dict[tuple[str, str, frozenset[tuple[str, str]]], list[Any]]


def _index_metrics(data: Iterable[Any]) -> MetricIndex:
    index: MetricIndex = {}
    for datum in data:
        key = (datum.namespace, datum.name, frozenset((d.name, d.value) for d in datum.dimensions))
        index.setdefault(key, []).append(datum)
    return index


def _periods(config: AlarmConfig, index: MetricIndex, instant: float) -> list[PeriodData]:
    """Return the alarm's evaluation periods ending at ``instant``, most recent first."""
    data = index.get((config.namespace, config.metric_name, config.dimensions), [])
    if config.unit:
        data = [d for d in data if d.unit == config.unit]
    periods = []
    for k in range(1, config.evaluation_periods + 1):
        start = instant - k * config.period
        end = start + config.period
        inside = [d for d in data if start <= epoch_seconds(d.timestamp) < end]
        values = [float(d.value) for d in inside if hasattr(d, "value")]
        aggregated = [d for d in inside if not hasattr(d, "value")]
        value = aggregate(config.statistic_name, values, aggregated)
        count = len(values) + sum(float(a.sample_count) for a in aggregated)
        periods.append(PeriodData(start, value, count))
    return periods
