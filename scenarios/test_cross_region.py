"""Cross-region path: each bastion reaches every other region's NLB over the Transit Gateway.

This is the path clients take after a failover, so it must work before one is needed.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.chaos.drill import load_balancer_nodes

pytestmark = [pytest.mark.cross_region]


def test_each_bastion_reaches_every_other_regions_api(
    bastions: Any, deployment: Any, target: Any, harness_config: Any
) -> None:
    nodes = load_balancer_nodes(target.sessions, deployment)
    failures = []
    for bastion in bastions:
        for region, addresses in nodes.items():
            if region == bastion.region:
                continue
            result = bastion.curl(
                f"https://{harness_config.domain}/demo",
                resolve=[f"{harness_config.domain}:443:{addresses[0]}"],
                max_time=10,
            )
            if not (result.ok and result.region == region):
                failures.append(
                    f"{bastion.instance_id} ({bastion.region}) -> {region} NLB {addresses[0]}: "
                    f"exit {result.exit_code} http {result.http_code} region {result.region!r}"
                )
    assert not failures, "cross-region path broken:\n" + "\n".join(failures)
