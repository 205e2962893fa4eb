"""The steady-state hypothesis: a deployment is in service before any scenario judges it.

CloudFormation says ``CREATE_COMPLETE`` long before the stack serves traffic the way the
scenarios assume: NLB targets start ``initial`` and pass their first health check later, the
alarm starts ``INSUFFICIENT_DATA``, and Route 53 acts on what its checkers saw some seconds ago.
A scenario that queries DNS in that window sees a transient (a VPC answered by another region,
because its own NLB had no healthy target yet) and reports it as a routing failure. So the
session waits, through the AWS API alone (the same on the lab and on AWS), until every region's
health check is healthy and every NLB target ``healthy``, and then holds that for a settle
period covering Route 53's propagation, before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.aws.session import SessionFactory, aws_call
from harness.aws.stacks import Deployment
from harness.clock import Clock
from harness.errors import HarnessError

Say = Callable[[str], None]

# Route 53 publishes no figure for how long DNS lags its checkers; half a minute covers what is
# observed in practice. The lab's delay is its configured ``health_propagation``.
AWS_PROPAGATION = 30.0
# How long a fresh deployment may take to come into service (modelled seconds): NLB targets
# pass their first check within a few intervals, alarms leave INSUFFICIENT_DATA within a period
# or two. Generous on AWS, where new targets take minutes to register.
IN_SERVICE_TIMEOUT = {"aws": 900.0, "lab": 300.0}


class NotInService(HarnessError):
    """The deployment did not reach its steady state in time."""


def region_healthy(sessions: SessionFactory, health_check_id: str) -> bool:
    """Route 53's verdict on a health check: most checkers report success."""
    with aws_call(f"GetHealthCheckStatus {health_check_id}"):
        observations = sessions.global_client("route53").get_health_check_status(
            HealthCheckId=health_check_id
        )["HealthCheckObservations"]
    if not observations:
        return True
    good = sum(
        1 for o in observations if o.get("StatusReport", {}).get("Status", "").startswith("Success")
    )
    return good * 2 > len(observations)


def unhealthy_inputs(sessions: SessionFactory, deployment: Deployment) -> list[str]:
    """Return what is not healthy in the health pipeline's inputs (empty: all healthy).

    Every region's Route 53 health check must be healthy (``GetHealthCheckStatus``) and every
    target of its NLB target group ``healthy`` (``DescribeTargetHealth``).
    """
    problems = []
    for region in deployment.regions:
        if not region_healthy(sessions, region.health_check_id):
            problems.append(f"health check {region.health_check_id} of {region.name} unhealthy")
        with aws_call(f"DescribeTargetHealth {region.target_group_arn}", region.name):
            targets = sessions.client("elbv2", region.name).describe_target_health(
                TargetGroupArn=region.target_group_arn
            )["TargetHealthDescriptions"]
        states = sorted(t["TargetHealth"]["State"] for t in targets)
        if not states or set(states) != {"healthy"}:
            problems.append(f"NLB targets of {region.name} are {', '.join(states) or 'none'}")
    return problems


def wait_in_service(
    sessions: SessionFactory,
    deployment: Deployment,
    *,
    clock: Clock,
    settle: float,
    timeout: float,
    interval: float = 1.0,
    say: Say | None = None,
) -> float:
    """Wait until every health input is healthy and has stayed so for ``settle`` seconds.

    All durations are modelled seconds on ``clock``. Returns how long the wait took. Progress
    lines name what is still not healthy, at most every ten modelled intervals.

    Raises:
        NotInService: the steady state was not reached within ``timeout``; the message names
            every input still unhealthy.
    """
    say = say or (lambda line: None)
    started = clock.now()
    healthy_since: float | None = None
    last_said = -float("inf")
    while True:
        problems = unhealthy_inputs(sessions, deployment)
        now = clock.now()
        if problems:
            healthy_since = None
        elif healthy_since is None:
            healthy_since = now
        if healthy_since is not None and now - healthy_since >= settle:
            return now - started
        if now - started > timeout:
            raise NotInService(
                f"the deployment was not in service {timeout:.0f}s after it was created: "
                + ("; ".join(problems) or "health flapped during the settle period")
            )
        if problems and now - last_said >= 10 * interval:
            say(
                f"waiting for the deployment to come into service ({now - started:.0f}s, "
                f"at most {timeout:.0f}s): {'; '.join(problems)}"
            )
            last_said = now
        clock.sleep(interval)
