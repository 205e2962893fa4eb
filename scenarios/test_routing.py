"""Routing: every VPC resolves the API name to its nearest healthy region (latency records).

With every region healthy, the nearest region of a VPC is its own, so the N x N matrix of
(client VPC, answering region) must be the identity. NLB names resolve from every VPC, which is
what cross-region failover relies on.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.chaos.drill import load_balancer_nodes

pytestmark = [pytest.mark.routing, pytest.mark.gate]


@pytest.fixture(scope="module")
def nodes(deployment: Any, target: Any) -> dict[str, tuple[str, ...]]:
    return load_balancer_nodes(target.sessions, deployment)


def test_each_vpc_resolves_the_api_to_its_own_region(
    bastions: Any, nodes: dict[str, tuple[str, ...]], harness_config: Any, run_record: Any
) -> None:
    by_address = {a: r for r, addresses in nodes.items() for a in addresses}
    matrix: dict[str, dict[str, str]] = {}
    for bastion in bastions:
        answer = bastion.dig(harness_config.domain, short=True, time=2, tries=2)
        regions = sorted({by_address.get(a, f"unknown {a}") for a in answer.addresses})
        matrix.setdefault(bastion.region, {})[bastion.instance_id] = (
            ",".join(regions) or "no answer"
        )
        assert set(answer.addresses) == set(nodes[bastion.region]), (
            f"{bastion.instance_id} in {bastion.region} resolved {harness_config.domain} to "
            f"{answer.addresses} ({regions}); expected its own region's NLB {nodes[bastion.region]}"
        )
    run_record.samples["routing_matrix"] = matrix


def test_every_regions_load_balancer_name_resolves_from_every_vpc(
    bastions: Any, deployment: Any, nodes: dict[str, tuple[str, ...]]
) -> None:
    for bastion in bastions:
        for region in deployment.regions:
            answer = bastion.dig(region.load_balancer_dns_name, short=True, time=2, tries=2)
            assert set(answer.addresses) == set(nodes[region.name]), (
                f"{region.load_balancer_dns_name} from {bastion.instance_id}: {answer.addresses}"
            )
