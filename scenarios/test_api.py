"""API: TLS to the custom domain from every VPC returns the Lambda's event from the right region."""

from __future__ import annotations

from typing import Any

import pytest

from harness.chaos.drill import load_balancer_nodes

pytestmark = [pytest.mark.api, pytest.mark.gate]


def test_every_vpc_reaches_the_api_over_verified_tls(
    bastions: Any, harness_config: Any, deployment: Any, target: Any
) -> None:
    url = f"https://{harness_config.domain}/demo"
    nodes = load_balancer_nodes(target.sessions, deployment)
    for bastion in bastions:
        result = bastion.curl(url, max_time=10)
        assert result.ok, (
            f"{bastion.instance_id}: curl {url} failed: exit {result.exit_code} ({result.exit_meaning}) {result.stderr_message}"
        )
        assert result.region == bastion.region
        event = result.json["event"]
        context = event["requestContext"]
        assert context["domainName"] == harness_config.domain
        assert context["stage"] == harness_config.stage
        # A TLS listener terminates the client's connection and opens its own to the endpoint,
        # so API Gateway sees the NLB node's address, not the bastion's.
        assert context["identity"]["sourceIp"] in nodes[bastion.region]
        assert event["path"].endswith("/demo") or event["path"] == "/"


def test_an_unmapped_path_is_refused_like_api_gateway(bastions: Any, harness_config: Any) -> None:
    result = bastions[0].curl(f"https://{harness_config.domain}/not-mapped", max_time=10)
    assert result.exit_code == 0
    assert result.http_code == 403
