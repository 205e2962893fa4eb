"""Failover: take each region down, measure failover and failback from every VPC.

Two ways to take a region down: inverting its Route 53 health check (the reference method, DNS
only) and failing its NLB targets' health checks (the real alarm path: target health -> Route 53
via EvaluateTargetHealth and via the CloudWatch alarm). Each is measured from inside every VPC,
restored, and measured again for failback; both must converge within the RTO objective and, on
the lab, within the analytic model's window (plus/minus one probe interval).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness.chaos import faults
from harness.chaos.expectations import model_windows
from harness.chaos.timing import PhaseResult

pytestmark = [pytest.mark.failover, pytest.mark.destructive]


def check(phase: PhaseResult, interval: float) -> None:
    __tracebackhide__ = True
    slow = [m for m in phase.measurements if not m.converged]
    assert not slow, (
        f"{phase.phase} of {phase.region} ({phase.fault}) never converged on "
        + ", ".join(f"{m.bastion} ({m.region}): saw {m.regions_seen}" for m in slow)
    )
    assert phase.within_objective, (
        f"{phase.phase} of {phase.region} ({phase.fault}) took {phase.rto:.1f}s, over the "
        f"{phase.objective:g}s objective"
    )
    if phase.model_window is not None and phase.dns_flip is not None:
        earliest, latest = phase.model_window
        # Only clients of the region that went down (or came back) move; others stay put.
        flips = [
            m.dns_flip
            for m in phase.measurements
            if m.region == phase.region and m.dns_flip is not None
        ]
        assert flips, f"no bastion in {phase.region} was measured"
        for flip in flips:
            assert earliest - interval <= flip <= latest + interval, (
                f"{phase.phase} of {phase.region}: DNS flipped after {flip:.1f}s, outside the "
                f"model's window {earliest:.0f}..{latest:.0f}s (+/- {interval:g}s)"
            )


@pytest.fixture
def drill_region(
    region: str,
    drill: Any,
    chaos: Any,  # restores whatever a failed drill left injected
    target: Any,
    deployment: Any,
    harness_config: Any,
    run_record: Any,
    request: pytest.FixtureRequest,
) -> Callable[[faults.Fault], None]:
    """Drill ``region`` with a fault: failover and failback measured, recorded and checked."""

    def run(fault: faults.Fault) -> None:
        __tracebackhide__ = True
        windows = model_windows(target, deployment, region, fault.KIND)
        failover, failback = drill.failover(
            fault,
            model_window=windows[0] if windows else None,
            failback_window=windows[1] if windows else None,
        )
        run_record.add_phase(request.node.nodeid, failover)
        run_record.add_phase(request.node.nodeid, failback)
        check(failover, harness_config.probe_interval)
        check(failback, harness_config.probe_interval)
        assert chaos.ledger.outstanding() == [], "a fault is still recorded as injected"

    return run


@pytest.mark.gate
def test_failover_when_the_health_check_is_inverted(
    region: str, deployment: Any, drill_region: Callable[[faults.Fault], None]
) -> None:
    drill_region(faults.invert_health_check(deployment, region))


def test_failover_when_the_targets_fail_their_health_checks(
    region: str, deployment: Any, drill_region: Callable[[faults.Fault], None]
) -> None:
    drill_region(faults.fail_targets(deployment, region))
