"""The health pipeline: target checks -> metrics -> alarms -> Route 53 status -> propagation.

Pure parts (alarm evaluation, statistics, the target state machine) are tested on hand-worked
cases. The pipeline is tested end to end on a deployed two-region stack set, through boto3,
against the analytic model (``harness.lab.model``): each stage of a real outage (security-group
ingress revoked through the EC2 API; the region's API Gateway switched off) and of the reference
outage method (UpdateHealthCheck Inverted=True) must happen in order, inside the model's window.

Timing tolerance: the lab runs at 60x, so a callback or a polling loop that runs 50 ms late
(wall) is 3 lab seconds late. Every measured instant is allowed ``TOLERANCE`` = 5 lab seconds
outside its window (half a check interval; the windows themselves are 10-70 s wide), and the
fault's own instant is bracketed by the lab time just before and just after the API call.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from deployed_parameters import DEPLOYED
from moto.cloudwatch.models import cloudwatch_backends

from harness.aws.session import SessionFactory
from harness.aws.stacks import Deployment, RegionDeployment, StackSetDeployer
from harness.config import load_config
from harness.errors import LabError
from harness.lab.health import (
    AlarmConfig,
    PeriodData,
    TargetCheckState,
    aggregate,
    breaches,
    evaluate_alarm,
)
from harness.lab.lab import Lab
from harness.lab.model import (
    FailoverParameters,
    TargetsPrediction,
    Window,
    inverted_stages,
    predict_inverted,
    targets_failed_stages,
    targets_restored_stages,
)
from harness.targets import lab_sessions

REGIONS = ("us-east-1", "us-west-2")
SPEED = 60.0
TOLERANCE = 5.0  # lab seconds; see the module docstring
COMPONENTS = ("harness.lab.network:Network", "harness.lab.health:HealthPipeline")

# ---------------------------------------------------------------------- pure parts


def _config(**changes: Any) -> AlarmConfig:
    values: dict[str, Any] = {
        "name": "a",
        "region": "us-east-1",
        "namespace": "AWS/NetworkELB",
        "metric_name": "HealthyHostCount",
        "dimensions": frozenset(),
        "statistic": "Sum",
        "extended_statistic": None,
        "unit": None,
        "period": 60,
        "evaluation_periods": 3,
        "datapoints_to_alarm": 3,
        "comparison": "GreaterThanThreshold",
        "threshold": 0.5,
        "treat_missing_data": "missing",
    }
    values.update(changes)
    return AlarmConfig(**values)


T = datetime(2026, 11, 26, 10, 3, tzinfo=UTC).timestamp()


def _periods(pattern: str) -> list[PeriodData]:
    """Periods from a pattern, most recent first: X breaching (1.0), 0 not (0.0), - missing."""
    values = {"X": 1.0, "0": 0.0, "-": None}
    return [
        PeriodData(T - (i + 1) * 60, values[c], 0.0 if c == "-" else 1.0)
        for i, c in enumerate(pattern)
    ]


@pytest.mark.parametrize(
    ("pattern", "treatment", "current", "expected"),
    [
        # Every period missing.
        ("---", "missing", "OK", "INSUFFICIENT_DATA"),
        ("---", "ignore", "ALARM", None),
        ("---", "breaching", "OK", "ALARM"),
        ("---", "notBreaching", "ALARM", "OK"),
        # As many real datapoints as DatapointsToAlarm: only they count, whatever the treatment.
        ("X0X", "breaching", "OK", "OK"),
        ("XXX", "notBreaching", "OK", "ALARM"),  # three breaching datapoints (see _periods)
        # Fewer real datapoints than DatapointsToAlarm (3 of 3), AWS's documented rows.
        ("-X-", "missing", "OK", "ALARM"),
        ("-X-", "ignore", "OK", "OK"),
        ("-X-", "ignore", "ALARM", "ALARM"),
        ("-X-", "breaching", "OK", "ALARM"),
        ("-X-", "notBreaching", "ALARM", "OK"),
        ("0--", "missing", "ALARM", "OK"),
        ("0--", "breaching", "ALARM", "OK"),
        ("0--", "ignore", "ALARM", "OK"),
    ],
)
def test_missing_data_treatment(
    pattern: str, treatment: str, current: str, expected: str | None
) -> None:
    decision = evaluate_alarm(_config(treat_missing_data=treatment), _periods(pattern), current, T)
    assert (decision.state if decision else None) == expected


def test_datapoints_to_alarm_is_m_of_n() -> None:
    config = _config(datapoints_to_alarm=2)
    alarm = evaluate_alarm(config, _periods("X0X"), "OK", T)
    ok = evaluate_alarm(config, _periods("X00"), "ALARM", T)
    assert alarm is not None
    assert alarm.state == "ALARM"
    assert ok is not None
    assert ok.state == "OK"


def test_state_reason_reads_like_aws() -> None:
    config = _config(
        evaluation_periods=1,
        datapoints_to_alarm=1,
        comparison="LessThanOrEqualToThreshold",
        threshold=1.0,
    )
    start = datetime(2026, 11, 26, 10, 1, tzinfo=UTC).timestamp()
    decision = evaluate_alarm(config, [PeriodData(start, 0.0, 1.0)], "OK", start + 60)
    assert decision is not None
    assert decision.reason == (
        "Threshold Crossed: 1 datapoint [0.0 (26/11/26 10:01:00)] was less than or equal to "
        "the threshold (1.0)."
    )
    assert decision.reason_data["recentDatapoints"] == [0.0]
    assert decision.reason_data["evaluatedDatapoints"][0]["timestamp"] == (
        "2026-11-26T10:01:00.000+0000"
    )
    ok = evaluate_alarm(config, [PeriodData(start, 2.0, 1.0)], "ALARM", start + 60)
    assert ok is not None
    assert ok.reason.endswith("was not less than or equal to the threshold (1.0).")
    many = evaluate_alarm(_config(datapoints_to_alarm=2), _periods("X0X"), "OK", T)
    assert many is not None
    assert many.reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints [1.0 (26/11/26 10:02:00), 1.0 "
        "(26/11/26 10:00:00)] were greater than the threshold (0.5) (minimum 2 datapoints for "
        "OK -> ALARM transition)."
    )
    unknown = evaluate_alarm(_config(), _periods("---"), "OK", T)
    assert unknown is not None
    assert unknown.reason == "Insufficient Data: 3 datapoints were unknown."


def test_statistics_and_comparisons() -> None:
    class Set:  # moto's MetricAggregatedDatum shape
        sum, min, max, sample_count = 10.0, 1.0, 6.0, 4.0

    assert aggregate("Sum", [1.0, 2.0]) == 3.0
    assert aggregate("Average", [1.0, 2.0], [Set()]) == 13.0 / 6
    assert aggregate("Minimum", [3.0], [Set()]) == 1.0
    assert aggregate("Maximum", [3.0], [Set()]) == 6.0
    assert aggregate("SampleCount", [3.0], [Set()]) == 5.0
    assert aggregate("p50", [4.0, 1.0, 3.0, 2.0]) == 2.0
    assert aggregate("p100", [4.0, 1.0, 3.0, 2.0]) == 4.0
    assert aggregate("Sum", []) is None
    assert breaches("LessThanOrEqualToThreshold", 1.0, 1.0)
    assert not breaches("LessThanThreshold", 1.0, 1.0)
    with pytest.raises(LabError, match="LessThanLowerOrGreaterThanUpperThreshold"):
        breaches("LessThanLowerOrGreaterThanUpperThreshold", 1.0, 1.0)


def test_unsupported_alarms_name_what_the_lab_cannot_model() -> None:
    assert _config().unsupported is None
    assert "metric-math" in (_config(metric_math=True).unsupported or "")
    assert "anomaly" in (
        _config(comparison="LessThanLowerOrGreaterThanUpperThreshold").unsupported or ""
    )
    assert "tm90" in (_config(statistic=None, extended_statistic="tm90").unsupported or "")
    assert _config(statistic=None, extended_statistic="p99").unsupported is None


def test_target_state_machine_follows_elb() -> None:
    def run(state: TargetCheckState, results: str) -> list[str]:
        seen = []
        for r in results:
            state.observe(r == "+", healthy_threshold=3, unhealthy_threshold=2, now=0.0)
            seen.append(state.state)
        return seen

    # A new target is in service after ONE passing check.
    assert run(TargetCheckState(), "+") == ["healthy"]
    # ...or unhealthy after UnhealthyThresholdCount failures (initial checking meanwhile).
    fresh = TargetCheckState()
    assert run(fresh, "--") == ["initial", "unhealthy"]
    assert fresh.reason == "Target.FailedHealthChecks"
    # Healthy -> unhealthy needs consecutive failures; a success in between resets them.
    assert run(TargetCheckState(state="healthy"), "-+--") == [
        "healthy",
        "healthy",
        "healthy",
        "unhealthy",
    ]
    # Unhealthy -> healthy needs HealthyThresholdCount consecutive successes.
    assert run(TargetCheckState(state="unhealthy"), "++-+++") == [
        "unhealthy",
        "unhealthy",
        "unhealthy",
        "unhealthy",
        "unhealthy",
        "healthy",
    ]


def test_lab_rejects_a_negative_propagation_delay() -> None:
    with pytest.raises(LabError, match="health_propagation must be"):
        Lab(REGIONS, health_propagation=-1.0)


# ---------------------------------------------------------------------- the deployed stack


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(REGIONS, speed=SPEED, components=COMPONENTS) as running:
        yield running


@pytest.fixture(scope="module")
def sessions(lab: Lab) -> SessionFactory:
    return lab_sessions(lab.info)


@pytest.fixture(scope="module")
def deployment(lab: Lab, sessions: SessionFactory) -> Iterator[Deployment]:
    config = load_config({"regions": ",".join(REGIONS)}, environ={})
    deployer = StackSetDeployer(config, sessions)
    try:
        yield deployer.deploy()
    finally:
        deployer.teardown()


def lab_dt(lab_seconds: float) -> datetime:
    return datetime.fromtimestamp(lab_seconds, UTC)


def wait_for(lab: Lab, predicate: Callable[[], bool], within: float, what: str) -> float:
    """Poll ``predicate`` until true; return the lab time it was first seen true."""
    deadline = lab.clock.now() + within
    while lab.clock.now() < deadline:
        now = lab.clock.now()
        if predicate():
            return now
        time.sleep(0.002)
    raise AssertionError(f"{what}: not reached within {within} lab seconds")


def watch(lab: Lab, probes: dict[str, Callable[[], bool]], until: float) -> dict[str, float]:
    """Sample every probe until each has been true once (or ``until``); return when each was."""
    seen: dict[str, float] = {}
    while len(seen) < len(probes) and lab.clock.now() < until:
        now = lab.clock.now()
        for name, probe in probes.items():
            if name not in seen and probe():
                seen[name] = now
        time.sleep(0.002)
    missing = set(probes) - set(seen)
    assert not missing, f"stages never reached: {sorted(missing)} (reached: {seen})"
    return seen


def all_targets(lab: Lab, tg_arn: str, state: str) -> bool:
    """Return whether every target of a group is in ``state`` (per the pipeline)."""
    views = lab.health.target_health(tg_arn).values()
    return bool(views) and all(v.state == state for v in views)


def alarm_state(lab: Lab, region: str, name: str) -> str:
    return cloudwatch_backends[lab.account_id][region].alarms[name].state_value


def wait_steady(lab: Lab, deployment: Deployment) -> None:
    """Wait until every region's targets are healthy, alarms OK and Route 53 sees it."""
    for region in deployment.regions:
        wait_for(
            lab,
            lambda r=region: (
                alarm_state(lab, r.name, r.alarm_name) == "OK"
                and lab.health.record_healthy(r.health_check_id)
                and lab.health.load_balancer_healthy(r.load_balancer_arn)
                and lab.health.target_group_healthy_targets(r.target_group_arn)
                == set(r.endpoint_ips)
            ),
            200,
            f"steady state of {region.name}",
        )


def assert_in(window: Window, instant: float, t0: float, t1: float, what: str) -> None:
    """Assert a stage at ``instant`` is inside ``window`` after a fault effective in [t0, t1]."""
    assert instant - t1 >= window.earliest - TOLERANCE, (
        f"{what} after {instant - t1:.1f}..{instant - t0:.1f} s, before its window {window}"
    )
    assert instant - t0 <= window.latest + TOLERANCE, (
        f"{what} after {instant - t1:.1f}..{instant - t0:.1f} s, after its window {window}"
    )


def state_updates(sessions: SessionFactory, region: RegionDeployment, since: float) -> list[dict]:
    history = sessions.client("cloudwatch", region.name).describe_alarm_history(
        AlarmName=region.alarm_name,
        HistoryItemType="StateUpdate",
        StartDate=lab_dt(since),
        ScanBy="TimestampAscending",
    )["AlarmHistoryItems"]
    return history


def test_a_deployed_stack_settles_healthy(
    lab: Lab, sessions: SessionFactory, deployment: Deployment
) -> None:
    wait_steady(lab, deployment)
    region = deployment.region("us-east-1")
    health = sessions.client("elbv2", region.name).describe_target_health(
        TargetGroupArn=region.target_group_arn
    )["TargetHealthDescriptions"]
    assert {(d["Target"]["Id"], d["TargetHealth"]["State"]) for d in health} == {
        (ip, "healthy") for ip in region.endpoint_ips
    }
    assert {d["HealthCheckPort"] for d in health} == {"443"}
    alarm = sessions.client("cloudwatch", region.name).describe_alarms(
        AlarmNames=[region.alarm_name]
    )["MetricAlarms"][0]
    assert alarm["StateValue"] == "OK"
    # Timestamps are on the lab clock (60x ahead of the wall clock by now), on a minute.
    assert alarm["StateUpdatedTimestamp"].timestamp() % 60 == 0
    assert abs(alarm["StateUpdatedTimestamp"].timestamp() - lab.clock.now()) < 200
    history = sessions.client("cloudwatch", region.name).describe_alarm_history(
        AlarmName=region.alarm_name, ScanBy="TimestampAscending"
    )["AlarmHistoryItems"]
    assert [h["HistorySummary"] for h in history[:2]] == [
        f'Alarm "{region.alarm_name}" created',
        "Alarm updated from INSUFFICIENT_DATA to OK",
    ]
    observations = sessions.global_client("route53").get_health_check_status(
        HealthCheckId=region.health_check_id
    )["HealthCheckObservations"]
    assert len(observations) == 8
    assert {o["StatusReport"]["Status"] for o in observations} == {
        f"Success: CloudWatch alarm {region.alarm_name} in {region.name} is in state OK"
    }
    assert FailoverParameters.from_lab(lab, region.name) == replace(DEPLOYED, region=region.name)
    assert lab.health.record_healthy("no-such-health-check")  # unknown: healthy until checked
    assert sorted(lab.health.healthy_nodes(region.load_balancer_arn)) == sorted(
        lab.topology().load_balancers[region.load_balancer_arn].nodes.values()
    )


def test_inverting_the_health_check_flips_route53_after_propagation_and_back(
    lab: Lab, sessions: SessionFactory, deployment: Deployment
) -> None:
    wait_steady(lab, deployment)
    region, other = deployment.region("us-east-1"), deployment.region("us-west-2")
    hc = region.health_check_id
    params = FailoverParameters.from_lab(lab, region.name)
    stages = inverted_stages(params)
    # The DNS flip is the health window plus the resolvers' cache (the resolver's own part).
    assert predict_inverted(params) == stages.record + Window(0, params.ttl)
    route53 = sessions.global_client("route53")

    try:
        for inverted in (True, False):
            t0 = lab.clock.now()
            route53.update_health_check(HealthCheckId=hc, Inverted=inverted)
            t1 = lab.clock.now()
            # The checkers see it at once (stage health_check = 0 s)...
            assert lab.health.health_check_status(hc) is not inverted
            status = route53.get_health_check_status(HealthCheckId=hc)["HealthCheckObservations"]
            texts = {o["StatusReport"]["Status"] for o in status}
            assert len(texts) == 1
            assert texts.pop().startswith("Failure:" if inverted else "Success:")
            # ...Route 53's DNS view after the propagation delay.
            flipped = wait_for(
                lab,
                lambda want=not inverted: lab.health.record_healthy(hc) is want,
                stages.record.latest + 3 * TOLERANCE,
                f"record_healthy after Inverted={inverted}",
            )
            assert_in(stages.record, flipped, t0, t1, f"Route 53 view after Inverted={inverted}")
            assert lab.health.record_healthy(other.health_check_id)
    finally:
        route53.update_health_check(HealthCheckId=hc, Inverted=False)
    assert lab.health.record_healthy(hc)


def test_a_lab_that_ignores_inverted_is_caught(
    lab: Lab, sessions: SessionFactory, deployment: Deployment
) -> None:
    """The deliberately broken lab (hook ``ignore-inverted``) must fail the inverted check."""
    wait_steady(lab, deployment)
    region = deployment.region("us-east-1")
    route53 = sessions.global_client("route53")
    with pytest.raises(LabError, match="unknown health-pipeline hook 'bogus'"):
        lab.health.hooks.add("bogus")
    lab.health.hooks.add("ignore-inverted")
    try:
        route53.update_health_check(HealthCheckId=region.health_check_id, Inverted=True)
        lab.clock.sleep(lab.health.propagation + 2 * TOLERANCE)
        assert lab.health.record_healthy(region.health_check_id), "the hook is not in effect"
    finally:
        route53.update_health_check(HealthCheckId=region.health_check_id, Inverted=False)
        lab.health.hooks.discard("ignore-inverted")


def _check_failover(
    lab: Lab,
    sessions: SessionFactory,
    region: RegionDeployment,
    params: FailoverParameters,
    failing: TargetsPrediction,
    t0: float,
    t1: float,
) -> None:
    """Watch a target fault's stages and check them against the model and the APIs."""
    hc, lb, tg = region.health_check_id, region.load_balancer_arn, region.target_group_arn
    propagation = Window.exactly(params.propagation)
    cloudwatch = sessions.client("cloudwatch", region.name)
    elbv2 = sessions.client("elbv2", region.name)
    route53 = sessions.global_client("route53")
    other_checks = [c for c in lab.topology().health_checks if c != hc]

    seen = watch(
        lab,
        {
            "targets": lambda: all_targets(lab, tg, "unhealthy"),
            "health_check": lambda: not lab.health.health_check_status(hc),
            "check_record": lambda: not lab.health.record_healthy(hc),
            "load_balancer": lambda: not lab.health.load_balancer_healthy(lb),
        },
        until=t1 + (failing.health_check + propagation).latest + 2 * TOLERANCE,
    )
    updates = [u for u in state_updates(sessions, region, t0) if "to ALARM" in u["HistorySummary"]]
    assert len(updates) == 1, updates
    alarmed = updates[0]["Timestamp"].timestamp()
    assert alarmed % 60 == 0, "alarms are evaluated on the lab minute"
    assert_in(failing.targets, seen["targets"], t0, t1, "targets unhealthy")
    assert_in(failing.alarm, alarmed, t0, t1, "alarm ALARM")
    assert_in(failing.health_check, seen["health_check"], t0, t1, "health check unhealthy")
    assert_in(failing.load_balancer, seen["load_balancer"], t0, t1, "load balancer unhealthy")
    record = min(seen["check_record"], seen["load_balancer"])
    assert_in(failing.record, record, t0, t1, "record unhealthy in Route 53")
    # In order: targets, then the alarm on the next minute, the health check in the same tick,
    # Route 53 exactly the propagation delay later.
    assert seen["targets"] <= alarmed + TOLERANCE
    assert abs(seen["health_check"] - alarmed) <= TOLERANCE
    assert abs(seen["check_record"] - (alarmed + params.propagation)) <= TOLERANCE
    assert abs(seen["load_balancer"] - (seen["targets"] + params.propagation)) <= TOLERANCE
    assert all(lab.health.record_healthy(c) for c in other_checks)

    # The same story through the AWS APIs.
    health = elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
    assert {(d["TargetHealth"]["State"], d["TargetHealth"]["Reason"]) for d in health} == {
        ("unhealthy", "Target.FailedHealthChecks")
    }
    alarm = cloudwatch.describe_alarms(AlarmNames=[region.alarm_name])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM"
    assert alarm["StateUpdatedTimestamp"].timestamp() == alarmed
    assert alarm["StateReason"].startswith("Threshold Crossed: 1 datapoint [0.0 (")
    datapoints = cloudwatch.get_metric_statistics(
        Namespace="AWS/NetworkELB",
        MetricName="HealthyHostCount",
        Dimensions=[
            {"Name": "LoadBalancer", "Value": region.load_balancer_full_name},
            {"Name": "TargetGroup", "Value": tg.split(":")[-1]},
        ],
        StartTime=lab_dt(alarmed - 120),
        EndTime=lab_dt(alarmed),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    # The minute before the failure still counted 2 hosts; the failure minute counted 0.
    assert sorted((d["Timestamp"].timestamp() - alarmed, d["Sum"]) for d in datapoints) == [
        (-120, 2.0),
        (-60, 0.0),
    ]
    observations = route53.get_health_check_status(HealthCheckId=hc)["HealthCheckObservations"]
    assert {o["StatusReport"]["Status"] for o in observations} == {
        f"Failure: CloudWatch alarm {region.alarm_name} in {region.name} is in state ALARM"
    }
    assert route53.get_health_check_last_failure_reason(HealthCheckId=hc)["HealthCheckObservations"]


def _fault_cycle(
    lab: Lab,
    sessions: SessionFactory,
    deployment: Deployment,
    region: RegionDeployment,
    inject: Callable[[], None],
    repair: Callable[[], None],
) -> None:
    """Inject a target fault, check every stage in order and in its window, repair, re-check."""
    wait_steady(lab, deployment)
    params = FailoverParameters.from_lab(lab, region.name)
    failing, restoring = targets_failed_stages(params), targets_restored_stages(params)
    hc, lb, tg = region.health_check_id, region.load_balancer_arn, region.target_group_arn

    t0 = lab.clock.now()
    inject()
    t1 = lab.clock.now()
    try:
        _check_failover(lab, sessions, region, params, failing, t0, t1)
    except BaseException:
        repair()  # leave the stack healthy for the next test
        raise

    t2 = lab.clock.now()
    repair()
    t3 = lab.clock.now()
    back = watch(
        lab,
        {
            "targets": lambda: all_targets(lab, tg, "healthy"),
            "health_check": lambda: lab.health.health_check_status(hc),
            "check_record": lambda: lab.health.record_healthy(hc),
            "load_balancer": lambda: lab.health.load_balancer_healthy(lb),
        },
        until=t3 + restoring.record.latest + 2 * TOLERANCE,
    )
    updates = [u for u in state_updates(sessions, region, t2) if "to OK" in u["HistorySummary"]]
    assert len(updates) == 1, updates
    recovered = updates[0]["Timestamp"].timestamp()
    assert_in(restoring.targets, back["targets"], t2, t3, "targets healthy again")
    assert_in(restoring.alarm, recovered, t2, t3, "alarm OK")
    assert_in(restoring.load_balancer, back["load_balancer"], t2, t3, "load balancer healthy")
    record = max(back["check_record"], back["load_balancer"])
    assert_in(restoring.record, record, t2, t3, "record healthy in Route 53")
    assert abs(back["check_record"] - (recovered + params.propagation)) <= TOLERANCE
    wait_steady(lab, deployment)


def test_revoking_endpoint_ingress_fails_the_region_over_in_order(
    lab: Lab, sessions: SessionFactory, deployment: Deployment
) -> None:
    assert lab.network is not None, "this test needs the lab's reachability model"
    region = deployment.region("us-east-1")
    ec2 = sessions.client("ec2", region.name)
    group = ec2.describe_security_groups(GroupIds=[region.endpoint_security_group_id])
    rules = group["SecurityGroups"][0]["IpPermissions"]
    assert rules, "the endpoint security group has ingress rules to revoke"

    _fault_cycle(
        lab,
        sessions,
        deployment,
        region,
        inject=lambda: ec2.revoke_security_group_ingress(
            GroupId=region.endpoint_security_group_id, IpPermissions=rules
        ),
        repair=lambda: ec2.authorize_security_group_ingress(
            GroupId=region.endpoint_security_group_id, IpPermissions=rules
        ),
    )


def test_an_api_gateway_outage_fails_the_region_over_in_order(
    lab: Lab, sessions: SessionFactory, deployment: Deployment
) -> None:
    region = deployment.region("us-west-2")
    with pytest.raises(LabError, match="region 'eu-west-9' is not served by this lab"):
        lab.health.set_api_up("eu-west-9", False)
    try:
        _fault_cycle(
            lab,
            sessions,
            deployment,
            region,
            inject=lambda: lab.health.set_api_up(region.name, False),
            repair=lambda: lab.health.set_api_up(region.name, True),
        )
    finally:
        lab.health.set_api_up(region.name, True)


def test_a_target_nobody_serves_fails_and_deregistered_targets_disappear(
    lab: Lab, sessions: SessionFactory, deployment: Deployment
) -> None:
    wait_steady(lab, deployment)
    region = deployment.region("us-east-1")
    elbv2 = sessions.client("elbv2", region.name)
    tg = region.target_group_arn
    bogus = {"Id": "10.1.1.200", "Port": 443}  # inside subnet A; no interface owns it

    def bogus_state() -> tuple[str, str | None]:
        health = elbv2.describe_target_health(TargetGroupArn=tg, Targets=[bogus])
        described = health["TargetHealthDescriptions"][0]["TargetHealth"]
        return described["State"], described.get("Reason")

    elbv2.register_targets(TargetGroupArn=tg, Targets=[bogus])
    try:
        assert bogus_state()[0] == "initial"
        wait_for(
            lab,
            lambda: bogus_state() == ("unhealthy", "Target.FailedHealthChecks"),
            40 + TOLERANCE,  # the registration check, then 3 failures 10 s apart at most
            "unowned target unhealthy",
        )
        # The two real targets keep the region healthy.
        assert lab.health.target_group_healthy_targets(tg) == set(region.endpoint_ips)
    finally:
        elbv2.deregister_targets(TargetGroupArn=tg, Targets=[bogus])
    assert bogus_state() == ("unused", "Target.NotRegistered")
    wait_for(
        lab,
        lambda: ("10.1.1.200", 443) not in lab.health.target_health(tg),
        TOLERANCE,
        "deregistered target dropped",
    )
    everything = elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
    assert {d["Target"]["Id"] for d in everything} == set(region.endpoint_ips)

    # A target group no load balancer uses is not checked: its targets are unused.
    spare = elbv2.create_target_group(
        Name="health-unused",
        Protocol="TCP",
        Port=443,
        VpcId=region.vpc_id,
        TargetType="ip",
    )["TargetGroups"][0]["TargetGroupArn"]
    try:
        elbv2.register_targets(TargetGroupArn=spare, Targets=[{"Id": region.endpoint_ips[0]}])
        wait_for(
            lab,
            lambda: (
                elbv2.describe_target_health(TargetGroupArn=spare)["TargetHealthDescriptions"][0][
                    "TargetHealth"
                ].get("Reason")
                == "Target.NotInUse"
            ),
            TOLERANCE,
            "unused target group",
        )
    finally:
        elbv2.delete_target_group(TargetGroupArn=spare)


def test_alarm_evaluation_history_and_api_semantics(
    lab: Lab, sessions: SessionFactory, deployment: Deployment
) -> None:
    """A custom alarm (2 of 2, Maximum > 5) evaluated from datapoints put through the API."""
    region = deployment.region("us-east-1")
    cloudwatch = sessions.client("cloudwatch", region.name)
    name = "health-test-custom"
    definition = {
        "AlarmName": name,
        "Namespace": "Regiondrill/Test",
        "MetricName": "Errors",
        "Statistic": "Maximum",
        "Period": 60,
        "EvaluationPeriods": 2,
        "DatapointsToAlarm": 2,
        "Threshold": 5.0,
        "ComparisonOperator": "GreaterThanThreshold",
    }
    cloudwatch.put_metric_alarm(**definition)
    try:
        alarm = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
        assert alarm["StateValue"] == "INSUFFICIENT_DATA"  # AWS's initial state, not moto's OK
        now = lab.clock.now()
        boundary = (now // 60 + 1) * 60
        if boundary - now < 5:  # too close to the next evaluation to put data in time
            boundary += 60
        cloudwatch.put_metric_data(
            Namespace="Regiondrill/Test",
            MetricData=[
                {"MetricName": "Errors", "Value": 9.0, "Timestamp": lab_dt(boundary - 115)},
                {"MetricName": "Errors", "Value": 7.0, "Timestamp": lab_dt(boundary - 55)},
            ],
        )
        wait_for(
            lab,
            lambda: alarm_state(lab, region.name, name) == "ALARM",
            boundary - lab.clock.now() + TOLERANCE,
            "custom alarm ALARM",
        )
        alarm = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
        assert alarm["StateUpdatedTimestamp"].timestamp() == boundary
        stamp = lab_dt(boundary - 60).strftime("%d/%m/%y %H:%M:%S")
        earlier = lab_dt(boundary - 120).strftime("%d/%m/%y %H:%M:%S")
        assert alarm["StateReason"] == (
            f"Threshold Crossed: 2 out of the last 2 datapoints [7.0 ({stamp}), 9.0 "
            f"({earlier})] were greater than the threshold (5.0) (minimum 2 datapoints for "
            "INSUFFICIENT_DATA -> ALARM transition)."
        )
        assert json.loads(alarm["StateReasonData"])["recentDatapoints"] == [9.0, 7.0]

        # Updating an alarm keeps its state (moto would start it over as OK).
        cloudwatch.put_metric_alarm(**definition, AlarmDescription="updated")
        assert (
            cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"]
            == "ALARM"
        )

        # One more minute: 1 real datapoint of 2 needed, treated as "missing": still ALARM.
        # Two more: no data at all: INSUFFICIENT_DATA.
        wait_for(
            lab,
            lambda: alarm_state(lab, region.name, name) == "INSUFFICIENT_DATA",
            120 + TOLERANCE,
            "custom alarm INSUFFICIENT_DATA",
        )
        alarm = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
        assert alarm["StateUpdatedTimestamp"].timestamp() == boundary + 120
        assert alarm["StateReason"] == "Insufficient Data: 2 datapoints were unknown."

        # SetAlarmState: lab-clock timestamp and history at once; the next evaluation decides.
        before = lab.clock.now()
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="by hand")
        alarm = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
        assert alarm["StateValue"] == "OK"
        assert before <= alarm["StateUpdatedTimestamp"].timestamp() <= lab.clock.now() + 1
        wait_for(
            lab,
            lambda: alarm_state(lab, region.name, name) == "INSUFFICIENT_DATA",
            60 + TOLERANCE,
            "evaluation after SetAlarmState",
        )

        history = cloudwatch.describe_alarm_history(AlarmName=name, ScanBy="TimestampAscending")[
            "AlarmHistoryItems"
        ]
        assert [h["HistorySummary"] for h in history] == [
            f'Alarm "{name}" created',
            "Alarm updated from INSUFFICIENT_DATA to ALARM",
            f'Alarm "{name}" updated',
            "Alarm updated from ALARM to INSUFFICIENT_DATA",
            "Alarm updated from INSUFFICIENT_DATA to OK",
            "Alarm updated from OK to INSUFFICIENT_DATA",
        ]
        data = json.loads(history[1]["HistoryData"])
        assert data["oldState"]["stateValue"] == "INSUFFICIENT_DATA"
        assert data["newState"]["stateReasonData"]["recentDatapoints"] == [9.0, 7.0]
        # Filters, order and paging.
        updates = cloudwatch.describe_alarm_history(AlarmName=name, HistoryItemType="StateUpdate")[
            "AlarmHistoryItems"
        ]
        assert [h["HistorySummary"] for h in updates] == [
            h["HistorySummary"] for h in reversed(history) if h["HistoryItemType"] == "StateUpdate"
        ]
        first = cloudwatch.describe_alarm_history(AlarmName=name, MaxRecords=4)
        rest = cloudwatch.describe_alarm_history(
            AlarmName=name, MaxRecords=4, NextToken=first["NextToken"]
        )
        assert "NextToken" not in rest
        paged = first["AlarmHistoryItems"] + rest["AlarmHistoryItems"]
        assert [h["HistorySummary"] for h in paged] == [
            h["HistorySummary"] for h in reversed(history)
        ]
        window = cloudwatch.describe_alarm_history(
            AlarmName=name, StartDate=lab_dt(boundary - 1), EndDate=lab_dt(boundary)
        )["AlarmHistoryItems"]
        assert [h["HistorySummary"] for h in window] == [
            "Alarm updated from INSUFFICIENT_DATA to ALARM"
        ]
        with pytest.raises(ClientError, match="MaxRecords 500 must be between 1 and 100"):
            cloudwatch.describe_alarm_history(AlarmName=name, MaxRecords=500)
    finally:
        cloudwatch.delete_alarms(AlarmNames=[name])


def test_set_alarm_state_drives_the_health_check_until_the_next_evaluation(
    lab: Lab, sessions: SessionFactory, deployment: Deployment
) -> None:
    wait_steady(lab, deployment)
    region = deployment.region("us-west-2")
    hc = region.health_check_id
    sessions.client("cloudwatch", region.name).set_alarm_state(
        AlarmName=region.alarm_name, StateValue="ALARM", StateReason="game day"
    )
    assert not lab.health.health_check_status(hc)
    # The next minute's evaluation puts the alarm back to OK (the data says so).
    wait_for(
        lab,
        lambda: alarm_state(lab, region.name, region.alarm_name) == "OK",
        60 + TOLERANCE,
        "alarm back to OK",
    )
    assert lab.health.health_check_status(hc)
    wait_steady(lab, deployment)


def test_calculated_http_inverted_and_disabled_health_checks(
    lab: Lab,
    sessions: SessionFactory,
    deployment: Deployment,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wait_steady(lab, deployment)
    route53 = sessions.global_client("route53")
    children = [r.health_check_id for r in deployment.regions]
    created = []

    def status(check_id: str) -> str:
        observations = route53.get_health_check_status(HealthCheckId=check_id)
        return observations["HealthCheckObservations"][0]["StatusReport"]["Status"]

    try:
        calculated = route53.create_health_check(
            CallerReference="health-calculated",
            HealthCheckConfig={
                "Type": "CALCULATED",
                "ChildHealthChecks": children,
                "HealthThreshold": 2,
            },
        )["HealthCheck"]["Id"]
        created.append(calculated)
        assert status(calculated) == (
            "Success: 2 of 2 child health checks are healthy (HealthThreshold 2)"
        )
        route53.update_health_check(HealthCheckId=children[0], Inverted=True)
        assert status(calculated) == (
            "Failure: 1 of 2 child health checks are healthy (HealthThreshold 2)"
        )
        route53.update_health_check(HealthCheckId=children[0], Inverted=False)

        with caplog.at_level(logging.ERROR, logger="harness.lab.health"):
            http = route53.create_health_check(
                CallerReference="health-http",
                HealthCheckConfig={"Type": "HTTP", "IPAddress": "10.1.1.4", "Port": 80},
            )["HealthCheck"]["Id"]
            created.append(http)
            assert status(http) == (
                "Success: the regiondrill lab does not perform HTTP health checks"
            )
        assert any("HTTP health checks cannot be performed" in r.message for r in caplog.records)
        route53.update_health_check(HealthCheckId=http, Inverted=True)
        assert status(http).startswith("Failure: ")
        route53.update_health_check(HealthCheckId=http, Disabled=True)
        assert status(http) == (
            "Success: the health check is disabled; Route 53 considers it healthy"
        )
    finally:
        route53.update_health_check(HealthCheckId=children[0], Inverted=False)
        for check_id in created:
            route53.delete_health_check(HealthCheckId=check_id)
    wait_steady(lab, deployment)
