"""The failover parameters of the deployed stack, shared by the health and model tests."""

from harness.lab.model import FailoverParameters

# The deployed stack's parameters (deploy/api.yaml, deploy/dns.yaml.j2) with the lab's default
# 10 s propagation and the 60 s alias TTL.
DEPLOYED = FailoverParameters(
    region="us-east-1",
    check_interval=10,
    healthy_threshold=3,
    unhealthy_threshold=3,
    targets=2,
    metric_name="HealthyHostCount",
    statistic="Sum",
    period=60,
    evaluation_periods=1,
    datapoints_to_alarm=1,
    comparison="LessThanOrEqualToThreshold",
    threshold=1.0,
    propagation=10.0,
    ttl=60.0,
    evaluate_target_health=True,
)
