"""What the lab's analytic model predicts for a drill, from the deployed configuration.

The parameters are read through the AWS API (target group, alarm, record set) — the same reads
work against AWS — plus the lab's Route 53 propagation delay from the lab's own facts. On AWS
there is no model (Route 53's internals are not published): drills compare with the objective
only.
"""

from __future__ import annotations

from typing import Any

from harness.aws.session import SessionFactory, aws_call
from harness.aws.stacks import Deployment
from harness.lab.model import (
    ALIAS_TTL,
    FailoverParameters,
    predict_inverted,
    predict_inverted_restored,
    predict_targets_failed,
    predict_targets_restored,
)

# Faults whose effect on DNS the model predicts, by the path they take.
INVERT = frozenset({"invert_health_check"})
TARGETS = frozenset({"fail_targets", "revoke_endpoint_ingress"})

Window = tuple[float, float]


def parameters_from_api(
    sessions: SessionFactory, deployment: Deployment, region: str, *, propagation: float
) -> FailoverParameters:
    """Read a region's failover parameters through the AWS API."""
    plan = deployment.region(region)
    elb = sessions.client("elbv2", region)
    with aws_call(f"DescribeTargetGroups {plan.target_group_arn}", region):
        group = elb.describe_target_groups(TargetGroupArns=[plan.target_group_arn])["TargetGroups"][
            0
        ]
        targets = elb.describe_target_health(TargetGroupArn=plan.target_group_arn)[
            "TargetHealthDescriptions"
        ]
    with aws_call(f"DescribeAlarms {plan.alarm_name}", region):
        alarm = sessions.client("cloudwatch", region).describe_alarms(AlarmNames=[plan.alarm_name])[
            "MetricAlarms"
        ][0]
    route53 = sessions.global_client("route53")
    with aws_call(f"ListResourceRecordSets {deployment.zone_id}"):
        records = route53.list_resource_record_sets(HostedZoneId=deployment.zone_id)[
            "ResourceRecordSets"
        ]
    record = next(
        (
            r
            for r in records
            if r.get("SetIdentifier") == region and r.get("HealthCheckId") == plan.health_check_id
        ),
        None,
    )
    alias = (record or {}).get("AliasTarget")
    return FailoverParameters(
        region=region,
        check_interval=float(group["HealthCheckIntervalSeconds"]),
        healthy_threshold=int(group["HealthyThresholdCount"]),
        unhealthy_threshold=int(group["UnhealthyThresholdCount"]),
        targets=len(targets),
        metric_name=alarm["MetricName"],
        statistic=alarm.get("Statistic") or alarm.get("ExtendedStatistic", ""),
        period=int(alarm["Period"]),
        evaluation_periods=int(alarm["EvaluationPeriods"]),
        datapoints_to_alarm=int(alarm.get("DatapointsToAlarm") or alarm["EvaluationPeriods"]),
        comparison=alarm["ComparisonOperator"],
        threshold=float(alarm["Threshold"]),
        propagation=propagation,
        ttl=float(ALIAS_TTL if alias else (record or {}).get("TTL", 0)),
        evaluate_target_health=bool(alias and alias.get("EvaluateTargetHealth")),
    )


def model_windows(
    target: Any, deployment: Deployment, region: str, fault_kind: str
) -> tuple[Window, Window] | None:
    """Return the lab model's (failover, failback) DNS windows, or None when there is no model."""
    info = getattr(target, "lab_info", None)
    if info is None or (fault_kind not in INVERT and fault_kind not in TARGETS):
        return None
    propagation = info.health_propagation
    params = parameters_from_api(target.sessions, deployment, region, propagation=propagation)
    if fault_kind in INVERT:
        down, up = predict_inverted(params), predict_inverted_restored(params)
    else:
        down, up = predict_targets_failed(params), predict_targets_restored(params)
    if down.is_never or up.is_never:
        return None
    return (down.earliest, down.latest), (up.earliest, up.latest)
