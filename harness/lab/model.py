"""Analytic model of DNS failover and failback time, from the deployed health parameters.

Given a region's target-group health-check settings, its alarm, Route 53's propagation delay and
the record's TTL, predict the earliest and latest time (seconds after a fault takes effect, on
the lab clock) at which each stage of the health pipeline (``harness.lab.health``) changes, up to
resolvers answering with another region. Later issues compare measured failover times with it;
the health pipeline's tests check the lab against it.

Every bound below is derived from the pipeline's exact timing (see ``harness.lab.health``):

- **Target detection.** Checks of a target group run every ``I`` seconds at a phase unrelated to
  the fault, so the first check that sees a fault at ``t0`` runs ``(0, I]`` later; a healthy
  target turns unhealthy on the ``U``-th consecutive failure: ``[(U-1)*I, U*I]`` after ``t0``.
  Likewise an unhealthy target turns healthy ``[(H-1)*I, H*I]`` after a repair. All targets of
  a group are checked on the same tick, so all failed targets change on the same tick.
- **Metric publication.** At each minute boundary ``m`` a datapoint stamped ``m-60`` carries the
  count at ``m``. A change at ``d`` first shows in the datapoint published at
  ``ceil60(d) in [d, d+60)``.
- **Alarm evaluation** at each multiple ``e`` of the period ``P`` (a multiple of 60) over periods
  ``[e-k*P, e-(k-1)*P)``. A period holds ``j = P/60`` datapoints; after a change at ``d`` the
  most recent period holds ``n`` new-state datapoints once ``e >= ceil60(d) + (n-1)*60``. If
  ``k*`` new-state datapoints make a period breach (``k_ok`` make it stop breaching), the first
  breaching period is evaluated at ``ceilP(ceil60(d) + (k*-1)*60)``; ``ceil60`` adds ``[0, 60)``
  and ``ceilP`` of a multiple of 60 adds ``[0, P-60]``, so the first breaching evaluation is
  ``[(k*-1)*60, (k*-1)*60 + P)`` after ``d``. ALARM needs ``M`` breaching periods of the last
  ``N``: ``(M-1)*P`` more. OK needs ``N-M+1`` non-breaching ones: ``(N-M)*P`` more.
- **Health check.** Recomputed in the same tick as the alarm change (0 s); ``Inverted`` is
  applied the moment UpdateHealthCheck returns (0 s).
- **Propagation.** Route 53's view (``record_healthy``, and ``load_balancer_healthy`` for alias
  records with EvaluateTargetHealth) lags by exactly ``D`` seconds.
- **Resolvers** answer from cache for up to the record's TTL (``[0, TTL]``); an alias to a load
  balancer has AWS's 60 s TTL.

A record stops being chosen when its health check is unhealthy OR (EvaluateTargetHealth and its
load balancer has no healthy target), so failover takes the earlier of the two paths and
failback the later. The model assumes the steady state before each change (targets healthy
and the alarm OK before a fault; the failure lasted at least ``N`` periods before a repair), and
another healthy region to fail over to (with every region unhealthy Route 53 answers them all).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.errors import LabError

if TYPE_CHECKING:
    from harness.lab.lab import Lab

METRIC_INTERVAL = 60  # the pipeline's datapoint spacing (NLB metrics are per minute)
ALIAS_TTL = 60  # Route 53's TTL for alias records to a load balancer
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
COMPARISONS = (
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
)
METRICS = ("HealthyHostCount", "UnHealthyHostCount")


@dataclass(frozen=True)
class Window:
    """A closed interval of seconds after an event: when something happens at the earliest/latest.

    ``Window.never()`` (both bounds infinite) says it does not happen at all.
    """

    earliest: float
    latest: float

    def __post_init__(self) -> None:
        if math.isnan(self.earliest) or math.isnan(self.latest) or self.earliest > self.latest:
            raise ValueError(f"invalid window [{self.earliest}, {self.latest}]")

    @classmethod
    def never(cls) -> Window:
        """Return the window of something that does not happen."""
        return cls(math.inf, math.inf)

    @classmethod
    def exactly(cls, seconds: float) -> Window:
        """Return a window of zero width."""
        return cls(seconds, seconds)

    @property
    def is_never(self) -> bool:
        return math.isinf(self.earliest)

    def __add__(self, other: Window) -> Window:
        return Window(self.earliest + other.earliest, self.latest + other.latest)

    def contains(self, seconds: float, tolerance: float = 0.0) -> bool:
        """Return whether ``seconds`` lies in the window widened by ``tolerance`` each side."""
        return self.earliest - tolerance <= seconds <= self.latest + tolerance


def earlier(a: Window, b: Window) -> Window:
    """Return the window of whichever of two events comes first."""
    return Window(min(a.earliest, b.earliest), min(a.latest, b.latest))


def later(a: Window, b: Window) -> Window:
    """Return the window of the later of two events (both must happen)."""
    return Window(max(a.earliest, b.earliest), max(a.latest, b.latest))


@dataclass(frozen=True)
class FailoverParameters:
    """A region's deployed health parameters, as plain values (all times in seconds)."""

    region: str
    check_interval: float  # target group HealthCheckIntervalSeconds (I)
    healthy_threshold: int  # HealthyThresholdCount (H)
    unhealthy_threshold: int  # UnhealthyThresholdCount (U)
    targets: int  # registered targets in the target group
    metric_name: str  # HealthyHostCount | UnHealthyHostCount
    statistic: str  # Sum, Average, Minimum, Maximum, SampleCount or pNN
    period: int  # alarm Period (P)
    evaluation_periods: int  # EvaluationPeriods (N)
    datapoints_to_alarm: int  # DatapointsToAlarm (M)
    comparison: str
    threshold: float
    propagation: float  # Route 53 propagation delay (D)
    ttl: float  # the record's TTL as resolvers cache it
    evaluate_target_health: bool

    def __post_init__(self) -> None:
        problems = []
        if not self.check_interval > 0:
            problems.append(f"check_interval {self.check_interval!r} must be > 0")
        for name in ("healthy_threshold", "unhealthy_threshold", "targets", "evaluation_periods"):
            if getattr(self, name) < 1:
                problems.append(f"{name} {getattr(self, name)!r} must be >= 1")
        if self.metric_name not in METRICS:
            problems.append(f"metric {self.metric_name!r} must be one of {', '.join(METRICS)}")
        if self.statistic not in STATISTICS and _percentile(self.statistic) is None:
            problems.append(f"statistic {self.statistic!r} is not modelled")
        if self.period < METRIC_INTERVAL or self.period % METRIC_INTERVAL:
            problems.append(
                f"period {self.period!r} must be a multiple of {METRIC_INTERVAL} s (the NLB "
                "metrics are per minute; shorter periods never see a datapoint)"
            )
        if not 1 <= self.datapoints_to_alarm <= self.evaluation_periods:
            problems.append(
                f"datapoints_to_alarm {self.datapoints_to_alarm!r} must be between 1 and "
                f"evaluation_periods {self.evaluation_periods!r}"
            )
        if self.comparison not in COMPARISONS:
            problems.append(f"comparison {self.comparison!r} is not modelled")
        if self.propagation < 0 or self.ttl < 0:
            problems.append("propagation and ttl must be >= 0")
        if problems:
            raise LabError(f"failover parameters of {self.region}: " + "; ".join(problems))

    @classmethod
    def from_lab(cls, lab: Lab, region: str) -> FailoverParameters:
        """Extract a region's parameters from a running lab's deployed resources.

        The region's health check is the CLOUDWATCH_METRIC one whose alarm lives in ``region``;
        the alarm's LoadBalancer/TargetGroup dimensions name the target group.

        Raises:
            LabError: the region has no (or more than one) such health check, its alarm is
                missing or watches something the model does not cover.
        """
        from moto.cloudwatch.models import cloudwatch_backends

        from harness.lab.health import AlarmConfig

        topology = lab.topology()
        records = [r for zone in topology.hosted_zones.values() for r in zone.records]
        checks = [
            c
            for c in topology.health_checks.values()
            if c.type == "CLOUDWATCH_METRIC" and c.alarm_region == region
        ]
        used = [c for c in checks if any(r.health_check_id == c.id for r in records)]
        checks = used or checks
        if len(checks) != 1:
            found = ", ".join(c.id for c in checks) or "none"
            raise LabError(
                f"region {region}: expected one CLOUDWATCH_METRIC health check on an alarm in "
                f"{region}, found {found}"
            )
        check = checks[0]
        with lab.state_lock:
            alarm = cloudwatch_backends[lab.account_id][region].alarms.get(check.alarm_name or "")
            config = AlarmConfig.from_moto(alarm, region) if alarm is not None else None
        if config is None:
            raise LabError(
                f"region {region}: health check {check.id} follows alarm {check.alarm_name!r}, "
                "which does not exist"
            )
        dimensions = dict(config.dimensions)
        if config.namespace != "AWS/NetworkELB" or set(dimensions) != {
            "LoadBalancer",
            "TargetGroup",
        }:
            raise LabError(
                f"alarm {config.name} in {region} watches {config.namespace} "
                f"{config.metric_name} by {sorted(dimensions)}; the model covers AWS/NetworkELB "
                "host counts by (LoadBalancer, TargetGroup)"
            )
        groups = [
            tg
            for tg in topology.target_groups.values()
            if tg.region == region and tg.full_name == dimensions["TargetGroup"]
        ]
        if not groups:
            raise LabError(
                f"alarm {config.name} in {region}: no target group {dimensions['TargetGroup']}"
            )
        tg = groups[0]
        record = next((r for r in records if r.health_check_id == check.id), None)
        if record is None:
            ttl, evaluate = 0.0, False
        elif record.alias_dns_name:
            ttl, evaluate = float(ALIAS_TTL), record.alias_evaluate_target_health
        else:
            ttl, evaluate = float(record.ttl or 0), False
        return cls(
            region=region,
            check_interval=float(tg.interval),
            healthy_threshold=tg.healthy_threshold,
            unhealthy_threshold=tg.unhealthy_threshold,
            targets=len(tg.targets),
            metric_name=config.metric_name,
            statistic=config.statistic_name,
            period=config.period,
            evaluation_periods=config.evaluation_periods,
            datapoints_to_alarm=config.datapoints_to_alarm,
            comparison=config.comparison,
            threshold=config.threshold,
            propagation=float(getattr(lab, "health_propagation", 10.0)),
            ttl=ttl,
            evaluate_target_health=evaluate,
        )


@dataclass(frozen=True)
class InvertedPrediction:
    """Stages after UpdateHealthCheck flips Inverted (either way), seconds after it returns."""

    health_check: Window  # computed status (GetHealthCheckStatus)
    record: Window  # Route 53's propagated view (record_healthy)
    dns: Window  # resolvers answer accordingly


@dataclass(frozen=True)
class TargetsPrediction:
    """Stages after a target fault (or its repair), seconds after it takes effect."""

    targets: Window  # failed targets change state (DescribeTargetHealth)
    alarm: Window  # the alarm changes state (never: the change does not move it)
    health_check: Window  # computed health-check status changes
    record: Window  # Route 53's view of the record changes (health check / target health)
    load_balancer: Window  # propagated load-balancer health changes (never: it does not)
    dns: Window  # resolvers answer accordingly


def inverted_stages(params: FailoverParameters) -> InvertedPrediction:
    """Predict the stages after inverting (or un-inverting) a region's health check.

    The computed status flips when UpdateHealthCheck returns (0 s), Route 53's view exactly
    ``D`` later, and resolvers within the TTL after that: ``[D, D + TTL]``. Symmetric for the
    restore.
    """
    record = Window.exactly(params.propagation)
    return InvertedPrediction(
        health_check=Window.exactly(0.0),
        record=record,
        dns=record + Window(0.0, params.ttl),
    )


def predict_inverted(params: FailoverParameters) -> Window:
    """Return when DNS stops answering with a region after its health check is inverted."""
    return inverted_stages(params).dns


def predict_inverted_restored(params: FailoverParameters) -> Window:
    """Return when DNS answers with the region again after Inverted is cleared."""
    return inverted_stages(params).dns


def targets_failed_stages(
    params: FailoverParameters, failed: int | None = None
) -> TargetsPrediction:
    """Predict the stages after ``failed`` targets (default: all) start failing health checks.

    targets = ``[(U-1)*I, U*I]``; alarm = targets + ``[(k*-1)*60 + (M-1)*P, ... + P]`` (never
    when no number of failed datapoints makes a period breach); health check = alarm; Route 53
    = health check + ``D``; with EvaluateTargetHealth and every target failed, the load balancer
    path = targets + ``D``; the record flips on the earlier path; DNS = record + ``[0, TTL]``.

    Raises:
        LabError: ``failed`` is out of range, or the alarm already breaches in the steady state.
    """
    failed = _failed(params, failed)
    before, after = _values(params, failed)
    if _period_breaches(params, before, after, 0):
        raise LabError(
            f"alarm of {params.region} breaches with every target healthy; there is no "
            "steady state to fail over from"
        )
    interval = params.check_interval
    targets = Window(
        (params.unhealthy_threshold - 1) * interval, params.unhealthy_threshold * interval
    )
    k = _first_count(params, before, after, breaching=True)
    if k is None:
        alarm = Window.never()
    else:
        alarm = targets + _evaluation_delay(params, k, params.datapoints_to_alarm)
    propagation = Window.exactly(params.propagation)
    health_check = alarm
    check_record = health_check + propagation
    if params.evaluate_target_health and failed == params.targets:
        load_balancer = targets + propagation
        record = earlier(check_record, load_balancer)
    else:
        load_balancer = Window.never()
        record = check_record
    return TargetsPrediction(
        targets=targets,
        alarm=alarm,
        health_check=health_check,
        record=record,
        load_balancer=load_balancer,
        dns=record + Window(0.0, params.ttl) if not record.is_never else record,
    )


def targets_restored_stages(
    params: FailoverParameters, failed: int | None = None
) -> TargetsPrediction:
    """Predict the stages after ``failed`` failing targets (default: all) are repaired.

    targets = ``[(H-1)*I, H*I]``; alarm OK = targets + ``[(k_ok-1)*60 + (N-M)*P, ... + P]``;
    health check = alarm; Route 53 = health check + ``D``; with EvaluateTargetHealth and every
    target having failed, the load balancer path = targets + ``D`` and the record needs both
    (the later path); DNS = record + ``[0, TTL]``. When the fault never moved the alarm, only
    the load-balancer path (if any) applies.

    Raises:
        LabError: ``failed`` is out of range.
    """
    failed = _failed(params, failed)
    before, after = _values(params, failed)
    interval = params.check_interval
    targets = Window((params.healthy_threshold - 1) * interval, params.healthy_threshold * interval)
    propagation = Window.exactly(params.propagation)
    fired = _first_count(params, before, after, breaching=True) is not None
    if fired:
        k_ok = _first_count(params, after, before, breaching=False)
        if k_ok is None:  # a full period of healthy data does not breach (steady state holds)
            raise LabError(f"alarm of {params.region} never returns to OK")
        ok_after = params.evaluation_periods - params.datapoints_to_alarm + 1
        alarm = targets + _evaluation_delay(params, k_ok, ok_after)
        check_record = alarm + propagation
    else:
        alarm = Window.never()
        check_record = Window.never()
    if params.evaluate_target_health and failed == params.targets:
        load_balancer = targets + propagation
        record = load_balancer if check_record.is_never else later(check_record, load_balancer)
    else:
        load_balancer = Window.never()
        record = check_record
    return TargetsPrediction(
        targets=targets,
        alarm=alarm,
        health_check=alarm,
        record=record,
        load_balancer=load_balancer,
        dns=record + Window(0.0, params.ttl) if not record.is_never else record,
    )


def predict_targets_failed(params: FailoverParameters, failed: int | None = None) -> Window:
    """Return when DNS stops answering with a region after its targets start failing."""
    return targets_failed_stages(params, failed).dns


def predict_targets_restored(params: FailoverParameters, failed: int | None = None) -> Window:
    """Return when DNS answers with the region again after its targets are repaired."""
    return targets_restored_stages(params, failed).dns


# ---------------------------------------------------------------------- helpers


def _failed(params: FailoverParameters, failed: int | None) -> int:
    count = params.targets if failed is None else failed
    if not 1 <= count <= params.targets:
        raise LabError(f"failed targets {failed!r} must be between 1 and {params.targets}")
    return count


def _values(params: FailoverParameters, failed: int) -> tuple[float, float]:
    """Return the metric's per-minute value with all targets healthy, and with ``failed`` down."""
    if params.metric_name == "HealthyHostCount":
        return float(params.targets), float(params.targets - failed)
    return 0.0, float(failed)


def _percentile(name: str) -> float | None:
    if not name.startswith("p"):
        return None
    try:
        value = float(name[1:])
    except ValueError:
        return None
    return value if 0 <= value <= 100 else None


def _statistic(name: str, values: Sequence[float]) -> float:
    if name == "SampleCount":
        return float(len(values))
    if name == "Sum":
        return float(sum(values))
    if name == "Average":
        return float(sum(values)) / len(values)
    if name == "Minimum":
        return min(values)
    if name == "Maximum":
        return max(values)
    percentile = _percentile(name)
    assert percentile is not None  # validated in FailoverParameters
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percentile / 100 * len(ordered))) - 1]


def _breaches(params: FailoverParameters, value: float) -> bool:
    threshold = params.threshold
    return {
        "GreaterThanOrEqualToThreshold": value >= threshold,
        "GreaterThanThreshold": value > threshold,
        "LessThanThreshold": value < threshold,
        "LessThanOrEqualToThreshold": value <= threshold,
    }[params.comparison]


def _period_breaches(params: FailoverParameters, old: float, new: float, count: int) -> bool:
    """Return whether a period with ``count`` new-value datapoints (rest old) breaches."""
    per_period = params.period // METRIC_INTERVAL
    values = [new] * count + [old] * (per_period - count)
    return _breaches(params, _statistic(params.statistic, values))


def _first_count(
    params: FailoverParameters, old: float, new: float, *, breaching: bool
) -> int | None:
    """Return the fewest new-value datapoints (1..P/60) that make a period (not) breach."""
    for count in range(1, params.period // METRIC_INTERVAL + 1):
        if _period_breaches(params, old, new, count) == breaching:
            return count
    return None


def _evaluation_delay(params: FailoverParameters, count: int, periods: int) -> Window:
    """Return the delay from a metric change to the ``periods``-th period reflecting it.

    ``count`` new-value datapoints must be in the period; see the module docstring.
    """
    base = (count - 1) * METRIC_INTERVAL + (periods - 1) * params.period
    return Window(float(base), float(base + params.period))
