"""ELBv2 overlay: network load balancers created through the API get AWS's identity at once.

The fidelity pass rewrites a network load balancer's ARN (``loadbalancer/net/...``) and DNS name;
for CreateLoadBalancer the response must already carry the final identity, or the caller would
hold an ARN that no longer exists.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from moto.elbv2.models import elbv2_backends

from harness.lab import fidelity
from harness.lab.gateway import Gateway, LabRequest, LabResponse

if TYPE_CHECKING:
    from harness.lab.lab import Lab

_ARN = re.compile(rb"<LoadBalancerArn>([^<]+)</LoadBalancerArn>")
_DNS = re.compile(rb"<DNSName>([^<]+)</DNSName>")


def install(gateway: Gateway, lab: Lab) -> None:
    def create_load_balancer(request: LabRequest) -> LabResponse | None:
        assert request.forward is not None
        response = request.forward()
        arn = _ARN.search(response.body)
        dns = _DNS.search(response.body)
        if response.status >= 300 or arn is None:
            return response
        from harness.lab.lab import ACCOUNT_ID

        backend = elbv2_backends[ACCOUNT_ID][request.region]
        old_arn = arn.group(1).decode()
        lb = backend.load_balancers.get(old_arn)
        fidelity.reconcile(ACCOUNT_ID, request.region)
        if lb is None or lb.arn == old_arn:
            return response
        body = response.body.replace(old_arn.encode(), lb.arn.encode())
        if dns is not None:
            body = body.replace(dns.group(1), lb.dns_name.encode())
        return LabResponse(response.status, body, response.headers)

    gateway.overlay("elbv2", "CreateLoadBalancer", create_load_balancer)
