"""The steady-state wait before scenarios, through the AWS API against a lab deployment.

A fresh deployment comes into service and is held for the settle period; an unhealthy input
(an inverted health check) keeps it out of service and the error names it;
health that flaps during the settle period restarts it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from harness.aws.readiness import NotInService, unhealthy_inputs, wait_in_service
from harness.aws.stacks import Deployment, StackSetDeployer
from harness.config import load_config
from harness.lab.lab import Lab
from harness.targets import lab_sessions

REGIONS = ("us-east-1", "us-west-2")
SPEED = 60.0


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Any, Deployment]]:
    config = load_config(
        {
            "regions": ",".join(REGIONS),
            "report_dir": str(tmp_path_factory.mktemp("readiness")),
            "lab_speed": str(SPEED),
        },
        environ={},
    )
    with Lab(REGIONS, speed=SPEED) as lab:
        sessions = lab_sessions(lab.info)
        deployer = StackSetDeployer(config, sessions)
        deployment = deployer.deploy()
        try:
            yield lab, sessions, deployment
        finally:
            deployer.teardown()


def test_a_fresh_deployment_comes_into_service_and_is_held_for_the_settle_period(
    deployed: tuple[Lab, Any, Deployment],
) -> None:
    lab, sessions, deployment = deployed
    said: list[str] = []
    took = wait_in_service(
        sessions, deployment, clock=lab.clock, settle=20.0, timeout=300.0, say=said.append
    )
    assert 20.0 <= took < 300.0
    assert unhealthy_inputs(sessions, deployment) == []


def test_an_inverted_health_check_keeps_it_out_of_service_and_is_named(
    deployed: tuple[Lab, Any, Deployment],
) -> None:
    lab, sessions, deployment = deployed
    west = deployment.region("us-west-2")
    route53 = sessions.global_client("route53")
    route53.update_health_check(HealthCheckId=west.health_check_id, Inverted=True)
    said: list[str] = []
    try:
        with pytest.raises(NotInService) as caught:
            wait_in_service(
                sessions,
                deployment,
                clock=lab.clock,
                settle=5.0,
                timeout=30.0,
                interval=1.0,
                say=said.append,
            )
    finally:
        route53.update_health_check(HealthCheckId=west.health_check_id, Inverted=False)
    message = str(caught.value)
    assert f"health check {west.health_check_id} of us-west-2 unhealthy" in message
    assert "not in service 30s after" in message
    assert said
    assert "waiting for the deployment to come into service" in said[0]
    wait_in_service(sessions, deployment, clock=lab.clock, settle=5.0, timeout=120.0)


def test_health_that_flaps_during_the_settle_period_restarts_it(
    deployed: tuple[Lab, Any, Deployment],
) -> None:
    """Invert a health check for a moment while the wait is settling: the settle period starts
    again after the restore, so the wait lasts longer than one settle period from its start."""
    lab, sessions, deployment = deployed
    east = deployment.region("us-east-1")
    route53 = sessions.global_client("route53")

    def flap() -> None:
        lab.clock.sleep(10.0)
        route53.update_health_check(HealthCheckId=east.health_check_id, Inverted=True)
        lab.clock.sleep(10.0)
        route53.update_health_check(HealthCheckId=east.health_check_id, Inverted=False)

    flapper = threading.Thread(target=flap)
    flapper.start()
    try:
        took = wait_in_service(
            sessions, deployment, clock=lab.clock, settle=30.0, timeout=200.0, interval=1.0
        )
    finally:
        flapper.join()
        route53.update_health_check(HealthCheckId=east.health_check_id, Inverted=False)
    assert took >= 10.0 + 10.0 + 30.0 - 2.0  # healthy, flapped, then a whole settle period
