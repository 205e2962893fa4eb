"""Every fault through the real AWS API on the lab: inject changes state, restore puts back
exactly the prior state; guardrails refuse what they must; the ledger restores after a crash."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.aws.session import SessionFactory
from harness.aws.stacks import Deployment, StackSetDeployer
from harness.chaos import faults
from harness.chaos.ledger import Ledger
from harness.chaos.manager import FaultManager, recover
from harness.config import HarnessConfig, load_config
from harness.errors import FaultError, GuardrailViolation
from harness.lab.lab import Lab
from harness.targets import lab_sessions

REGIONS = ("us-east-1", "us-west-2")


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Lab, SessionFactory, HarnessConfig, Deployment]]:
    config = load_config({"regions": ",".join(REGIONS)}, environ={})
    # Faults are checked through the API only: the control plane is enough.
    with Lab(REGIONS, components=()) as lab:
        sessions = lab_sessions(lab.info)
        deployer = StackSetDeployer(config, sessions)
        deployment = deployer.deploy()
        try:
            yield lab, sessions, config, deployment
        finally:
            deployer.teardown()


@pytest.fixture
def manager(world, tmp_path: Path) -> Iterator[FaultManager]:  # type: ignore[no-untyped-def]
    lab, sessions, config, deployment = world
    chaos = FaultManager(
        sessions=sessions,
        deployment=deployment,
        config=config,
        clock=lab.clock,
        ledger=Ledger.in_dir(tmp_path),
        run_id=deployment.run_id,
        environment={"target": "lab", "endpoint": lab.endpoint},
    )
    yield chaos
    assert chaos.restore_all() == []


def all_faults(deployment: Deployment) -> list[faults.Fault]:
    east = deployment.region("us-east-1")
    return [
        faults.invert_health_check(deployment, "us-east-1"),
        faults.fail_targets(deployment, "us-east-1"),
        faults.revoke_endpoint_ingress(deployment, "us-east-1"),
        faults.blackhole_peering(deployment, "us-east-1", "us-west-2"),
        faults.throttle_api(deployment, "us-east-1"),
        faults.stop_bastion(deployment, east.bastion_ids[0]),
    ]


@pytest.mark.parametrize(
    "index", range(6), ids=["invert", "targets", "ingress", "peering", "throttle", "bastion"]
)
def test_inject_changes_state_and_restore_puts_back_the_prior(
    world, manager: FaultManager, index: int
) -> None:  # type: ignore[no-untyped-def]
    _lab, sessions, _config, deployment = world
    fault = all_faults(deployment)[index]
    prior = fault.capture(sessions)
    assert type(fault).verify(sessions, fault.target, prior) == []
    active = manager.inject(fault)
    changed = type(fault).verify(sessions, fault.target, prior)
    assert changed, f"{fault.describe()} did not change anything visible through the API"
    entry = manager.ledger.get(active.id)
    assert entry.state == "injected"
    assert entry.prior == prior
    active.restore()
    assert type(fault).verify(sessions, fault.target, prior) == []
    assert manager.ledger.get(active.id).state == "restored"
    assert manager.ledger.outstanding() == []


def test_injecting_the_same_fault_twice_is_refused(world, manager: FaultManager) -> None:  # type: ignore[no-untyped-def]
    _, _, _, deployment = world
    with (
        manager.inject(faults.invert_health_check(deployment, "us-east-1")),
        pytest.raises(FaultError, match="already inverted"),
    ):
        manager.inject(faults.invert_health_check(deployment, "us-east-1"))


def test_a_fault_leaving_no_healthy_region_is_refused_unless_declared(
    world, manager: FaultManager
) -> None:  # type: ignore[no-untyped-def]
    _, _, _, deployment = world
    with manager.inject(faults.invert_health_check(deployment, "us-east-1")):
        with pytest.raises(GuardrailViolation, match="no healthy region"):
            manager.inject(faults.fail_targets(deployment, "us-west-2"))
        with manager.inject(faults.fail_targets(deployment, "us-west-2"), allow_total_outage=True):
            pass
    # Faults that do not take a region's health down are always allowed.
    with (
        manager.inject(faults.throttle_api(deployment, "us-east-1")),
        manager.inject(faults.throttle_api(deployment, "us-west-2")),
    ):
        pass


def test_aws_target_refuses_destructive_faults_without_the_flag(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab, sessions, _, deployment = world
    arns = {
        "us-east-1": "arn:aws:acm:us-east-1:123456789012:certificate/11111111-1111-1111-1111-111111111111",
        "us-west-2": "arn:aws:acm:us-west-2:123456789012:certificate/22222222-2222-2222-2222-222222222222",
    }
    aws = load_config(
        {
            "target": "aws",
            "regions": ",".join(REGIONS),
            "certificate_arns": [f"{k}={v}" for k, v in arns.items()],
        },
        environ={},
    )
    chaos = FaultManager(
        sessions=sessions,
        deployment=deployment,
        config=aws,
        clock=lab.clock,
        ledger=Ledger.in_dir(tmp_path),
        run_id="r",
        environment={"target": "aws", "account": "x"},
    )
    with pytest.raises(GuardrailViolation, match="--allow-destructive"):
        chaos.inject(faults.invert_health_check(deployment, "us-east-1"))
    assert Ledger.in_dir(tmp_path).entries() == [], "nothing was written, nothing injected"


def test_ledger_restores_a_fault_after_a_crash(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab, sessions, config, deployment = world
    environment = {"target": "lab", "endpoint": lab.endpoint}
    crashed = FaultManager(
        sessions=sessions,
        deployment=deployment,
        config=config,
        clock=lab.clock,
        ledger=Ledger.in_dir(tmp_path),
        run_id="crashed",
        environment=environment,
    )
    fault = faults.blackhole_peering(deployment, "us-east-1", "us-west-2")
    prior = fault.capture(sessions)
    crashed.inject(fault)  # ...and the process dies: no restore, no finalizer
    assert type(fault).verify(sessions, fault.target, prior)
    ledger = Ledger.in_dir(tmp_path)
    recovery = recover(ledger, sessions, environment)
    assert [e.kind for e in recovery.restored] == ["blackhole_peering"]
    assert type(fault).verify(sessions, fault.target, prior) == []
    assert ledger.outstanding() == []


def test_recovery_abandons_faults_of_a_lab_that_is_gone(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, sessions, _, _ = world
    ledger = Ledger.in_dir(tmp_path)
    gone = {"target": "lab", "endpoint": "http://127.0.0.1:9"}
    fault_id = ledger.intent(
        "invert_health_check",
        {"region": "us-east-1", "health_check_id": "x"},
        {"inverted": False},
        run_id="old",
        environment=gone,
    )
    ledger.mark(fault_id, "injected")
    recovery = recover(
        ledger,
        sessions,
        {"target": "lab", "endpoint": "http://127.0.0.1:8"},
        is_alive=lambda env: False,
    )
    assert [e.id for e, _ in recovery.abandoned] == [fault_id]
    assert ledger.outstanding() == []
