"""The analytic failover model: hand-worked windows, and a brute-force simulation inside them.

The hand-worked cases spell out each stage's arithmetic. The hypothesis test simulates the
health pipeline's timing rules directly (check ticks at a random phase, per-minute datapoints,
aligned alarm evaluation, M of N) for random parameters and fault instants, independently of
the model's closed forms, and checks every simulated stage lands in the model's window.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from deployed_parameters import DEPLOYED
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import LabError
from harness.lab.model import (
    FailoverParameters,
    Window,
    earlier,
    inverted_stages,
    later,
    predict_inverted,
    predict_inverted_restored,
    predict_targets_failed,
    predict_targets_restored,
    targets_failed_stages,
    targets_restored_stages,
)


def test_window_arithmetic() -> None:
    assert Window(1, 2) + Window(10, 20) == Window(11, 22)
    assert earlier(Window(5, 50), Window(10, 20)) == Window(5, 20)
    assert later(Window(5, 50), Window(10, 20)) == Window(10, 50)
    assert Window(1, 2).contains(2.5, tolerance=0.5)
    assert not Window(1, 2).contains(2.6, tolerance=0.5)
    assert Window.never().is_never
    with pytest.raises(ValueError, match="invalid window"):
        Window(3, 2)


def test_inverted_health_check_is_propagation_then_ttl() -> None:
    # Computed status flips when UpdateHealthCheck returns; Route 53 acts D = 10 s later;
    # resolvers hold the old answer for up to the 60 s TTL.
    stages = inverted_stages(DEPLOYED)
    assert stages.health_check == Window(0, 0)
    assert stages.record == Window(10, 10)
    assert stages.dns == Window(10, 70)
    assert predict_inverted(DEPLOYED) == predict_inverted_restored(DEPLOYED) == Window(10, 70)


def test_all_targets_failing_with_the_deployed_parameters() -> None:
    stages = targets_failed_stages(DEPLOYED)
    # 3 failures 10 s apart, the first 0..10 s after the fault: 20..30 s.
    assert stages.targets == Window(20, 30)
    # Sum of one datapoint of 0 <= 1 breaches (k* = 1, M = 1): the next minute boundary, 0..60 s.
    assert stages.alarm == Window(20, 90)
    assert stages.health_check == Window(20, 90)
    # Route 53 sees the load balancer without healthy targets D after the targets (30..40 s),
    # before the alarm path (30..100 s): the record flips on the earlier one.
    assert stages.load_balancer == Window(30, 40)
    assert stages.record == Window(30, 40)
    assert stages.dns == Window(30, 100)
    assert predict_targets_failed(DEPLOYED) == Window(30, 100)


def test_one_of_two_targets_failing_goes_through_the_alarm_only() -> None:
    stages = targets_failed_stages(DEPLOYED, failed=1)
    # HealthyHostCount 1 <= 1 still breaches, but the load balancer keeps a healthy target.
    assert stages.alarm == Window(20, 90)
    assert stages.load_balancer.is_never
    assert stages.record == Window(30, 100)
    assert stages.dns == Window(30, 160)


def test_repair_needs_the_alarm_and_the_load_balancer() -> None:
    stages = targets_restored_stages(DEPLOYED)
    assert stages.targets == Window(20, 30)  # 3 successes 10 s apart
    assert stages.alarm == Window(20, 90)  # the next minute's datapoint of 2 is not <= 1
    assert stages.load_balancer == Window(30, 40)
    assert stages.record == Window(30, 100)  # both must be healthy again: the later path
    assert predict_targets_restored(DEPLOYED) == Window(30, 160)


def test_five_minute_average_alarm_with_two_of_three_datapoints() -> None:
    params = replace(
        DEPLOYED,
        check_interval=30,
        unhealthy_threshold=2,
        healthy_threshold=5,
        targets=4,
        statistic="Average",
        period=300,
        evaluation_periods=3,
        datapoints_to_alarm=2,
        comparison="LessThanThreshold",
        threshold=1.5,
        propagation=0.0,
        ttl=30.0,
        evaluate_target_health=False,
    )
    failed = targets_failed_stages(params)
    assert failed.targets == Window(30, 60)  # (2-1)*30 .. 2*30
    # A 5-minute period averages 5 datapoints: k zeros and 5-k fours; the average drops below
    # 1.5 at k* = 4 (0.8), so the first breaching evaluation is 3*60 .. 3*60+300 after the
    # targets, plus (M-1)*P = 300 for the second breaching period.
    assert failed.alarm == Window(30 + 480, 60 + 780)
    assert failed.dns == Window(510, 870)
    restored = targets_restored_stages(params)
    assert restored.targets == Window(120, 150)  # (5-1)*30 .. 5*30
    # k_ok = 2 fours make the average 1.6 >= 1.5; OK needs N-M+1 = 2 good periods: 60 + 300.
    assert restored.alarm == Window(120 + 360, 150 + 660)
    assert restored.dns == Window(480, 840)


def test_a_fault_the_alarm_cannot_see_never_fails_over() -> None:
    params = replace(DEPLOYED, targets=4, statistic="Minimum", comparison="LessThanThreshold")
    stages = targets_failed_stages(params, failed=1)  # 3 healthy hosts are not < 1
    assert stages.alarm.is_never
    assert stages.dns.is_never
    # ...unless every target fails and the record evaluates target health.
    assert targets_failed_stages(params).dns == Window(30, 100)


def test_unhealthy_host_count_alarm() -> None:
    params = replace(
        DEPLOYED,
        metric_name="UnHealthyHostCount",
        statistic="Maximum",
        comparison="GreaterThanOrEqualToThreshold",
        evaluation_periods=3,
        datapoints_to_alarm=2,
    )
    stages = targets_failed_stages(params, failed=1)
    assert stages.alarm == Window(20 + 60, 30 + 120)  # k* = 1, plus one more period


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"period": 30}, "period 30 must be a multiple of 60"),
        ({"datapoints_to_alarm": 2}, "datapoints_to_alarm 2 must be between 1 and"),
        ({"statistic": "tm90"}, "statistic 'tm90' is not modelled"),
        ({"metric_name": "ActiveFlowCount"}, "metric 'ActiveFlowCount'"),
        ({"check_interval": 0}, "check_interval 0 must be > 0"),
    ],
)
def test_bad_parameters_are_refused_naming_the_value(changes: dict, message: str) -> None:
    with pytest.raises(LabError, match=message):
        replace(DEPLOYED, **changes)


def test_an_alarm_breaching_in_the_steady_state_has_no_failover() -> None:
    with pytest.raises(LabError, match="breaches with every target healthy"):
        targets_failed_stages(replace(DEPLOYED, threshold=2.0))
    with pytest.raises(LabError, match="failed targets 3"):
        targets_failed_stages(DEPLOYED, failed=3)


# ---------------------------------------------------------------------- brute-force simulation


def _stat(name: str, values: list[float]) -> float:
    return {
        "Sum": sum(values),
        "Average": sum(values) / len(values),
        "Minimum": min(values),
        "Maximum": max(values),
    }[name]


def _breach(p: FailoverParameters, value: float) -> bool:
    return {
        "LessThanOrEqualToThreshold": value <= p.threshold,
        "LessThanThreshold": value < p.threshold,
        "GreaterThanThreshold": value > p.threshold,
        "GreaterThanOrEqualToThreshold": value >= p.threshold,
    }[p.comparison]


def _simulate(
    p: FailoverParameters, failed: int, phase: float, fault: float, *, repair: bool
) -> dict[str, float]:
    """Replay the pipeline's rules tick by tick; return each stage's delay after ``fault``.

    Before ``fault`` the system is in the steady state of the other side (healthy for a
    failure, failed for a repair); ``phase`` is the check timer's offset.
    """
    healthy_count, failed_count = float(p.targets), float(p.targets - failed)
    if p.metric_name == "UnHealthyHostCount":
        healthy_count, failed_count = 0.0, float(failed)
    old, new = (failed_count, healthy_count) if repair else (healthy_count, failed_count)
    needed = p.healthy_threshold if repair else p.unhealthy_threshold
    first_check = phase + math.floor((fault - phase) / p.check_interval + 1) * p.check_interval
    changed = first_check + (needed - 1) * p.check_interval

    def value_at(boundary: float) -> float:  # datapoint published at ``boundary``
        return new if boundary >= changed else old

    stages = {"targets": changed - fault}
    per = p.period // 60
    e = math.ceil(changed / p.period) * p.period
    history: list[bool] = []
    for _ in range(200):
        values = [value_at(e - i * 60) for i in range(per)]
        history.append(_breach(p, _stat(p.statistic, values)))
        window = history[-p.evaluation_periods :]
        full = [True] * (p.evaluation_periods - len(window)) + window  # steady past
        if not repair:
            full = [False] * (p.evaluation_periods - len(window)) + window
        count = sum(full)
        if (not repair and count >= p.datapoints_to_alarm) or (
            repair and count < p.datapoints_to_alarm
        ):
            stages["alarm"] = e - fault
            break
        e += p.period
    return stages


@settings(max_examples=150, deadline=None)
@given(
    interval=st.sampled_from([5, 10, 30]),
    unhealthy=st.integers(2, 5),
    healthy=st.integers(2, 5),
    targets=st.integers(1, 4),
    data=st.data(),
    statistic=st.sampled_from(["Sum", "Average", "Minimum", "Maximum"]),
    period=st.sampled_from([60, 120, 300]),
    evaluation=st.integers(1, 4),
    phase=st.floats(0, 1, exclude_max=True),
    fault=st.floats(1_800_000_000, 1_800_003_600),
    repair=st.booleans(),
)
def test_simulated_stages_land_inside_the_model_windows(
    interval: int,
    unhealthy: int,
    healthy: int,
    targets: int,
    data: st.DataObject,
    statistic: str,
    period: int,
    evaluation: int,
    phase: float,
    fault: float,
    repair: bool,
) -> None:
    failed = data.draw(st.integers(1, targets))
    params = replace(
        DEPLOYED,
        check_interval=interval,
        unhealthy_threshold=unhealthy,
        healthy_threshold=healthy,
        targets=targets,
        statistic=statistic,
        period=period,
        evaluation_periods=evaluation,
        datapoints_to_alarm=data.draw(st.integers(1, evaluation)),
        threshold=data.draw(st.sampled_from([0.0, 0.5, 1.0, float(targets) - 0.5])),
        comparison=data.draw(st.sampled_from(["LessThanOrEqualToThreshold", "LessThanThreshold"])),
    )
    try:
        stages = targets_failed_stages(params, failed)
        if repair:
            if stages.alarm.is_never:
                return  # the alarm never fired: there is nothing to repair
            stages = targets_restored_stages(params, failed)
    except LabError:
        return  # breaching in the steady state: no failover to model
    simulated = _simulate(params, failed, phase * interval, fault, repair=repair)
    assert stages.targets.contains(simulated["targets"], 1e-6)
    if stages.alarm.is_never:
        assert "alarm" not in simulated
    else:
        assert stages.alarm.contains(simulated["alarm"], 1e-6), (stages.alarm, simulated)
