"""Cross-region hazard: with the peering to the failover region blackholed, losing a region
strands the clients in it. DNS still fails over — Route 53 knows nothing of the TGW — but the
surviving region is unreachable from the stranded VPC. This is reported as a finding (the
expected consequence of the injected faults), not a crash.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.chaos import faults
from harness.chaos.expectations import model_windows
from harness.report.recorder import Finding

pytestmark = [pytest.mark.failover, pytest.mark.destructive]


def test_blackholed_peering_strands_the_clients_of_a_failed_region(
    drill: Any,
    chaos: Any,
    deployment: Any,
    target: Any,
    harness_config: Any,
    run_record: Any,
    request: pytest.FixtureRequest,
) -> None:
    lost, survivor = deployment.region_names[0], deployment.region_names[1]
    others = deployment.region_names[1:]
    for other in others:
        chaos.inject(faults.blackhole_peering(deployment, lost, other))
    fault = faults.invert_health_check(deployment, lost)
    windows = model_windows(target, deployment, lost, fault.KIND)
    # Stranded clients never converge: watch until DNS must have moved (the model's latest
    # time, else the objective) plus a margin, instead of 1.5x the objective.
    horizon = (
        windows[0][1] if windows else harness_config.rto
    ) + 20 * harness_config.probe_interval
    # Failback is an ordinary recovery: judged against (and watched for) the model's window.
    failover, failback = drill.failover(
        fault, max_window=horizon, failback_window=windows[1] if windows else None
    )
    run_record.add_phase(request.node.nodeid, failover)
    run_record.add_phase(request.node.nodeid, failback)
    stranded = [m for m in failover.measurements if m.region == lost]
    unaffected = [m for m in failover.measurements if m.region != lost]
    # DNS moved every stranded client to a surviving region...
    assert all(m.dns_flip is not None for m in stranded), [m.regions_seen for m in stranded]
    # ...but none of them could reach it: requests kept failing to the end of the window.
    assert all(m.api_recovery is None and m.failed_samples > 0 for m in stranded)
    # Clients elsewhere never noticed.
    assert all(m.converged and m.failed_samples == 0 for m in unaffected)
    run_record.add_finding(
        Finding(
            kind="stranded_clients",
            severity="high",
            title=f"clients in {lost} are stranded when {lost} fails and its peering is down",
            explanation=(
                f"Route 53 moved {lost}'s clients to {survivor} within "
                f"{max(m.dns_flip or 0 for m in stranded):.0f}s, but with the Transit Gateway "
                f"peering from {lost} blackholed every request from {lost} timed out: a region "
                "failure and a peering failure together cut those clients off. Monitor the "
                "peering attachments and routes, or give each VPC a path that does not depend "
                "on one peering."
            ),
            regions=(lost,),
            evidence={"failed_samples": {m.bastion: m.failed_samples for m in stranded}},
            scenario=request.node.nodeid,
        )
    )
    # Failback restores the region; the blackhole is still in place, which does not matter to
    # clients that are back on their own region.
    assert failback.converged
