"""Wire every service overlay into the gateway (one module per AWS service, like moto)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.lab.gateway import Gateway

if TYPE_CHECKING:
    from harness.lab.lab import Lab


def install(gateway: Gateway, lab: Lab) -> None:
    """Register the operations the lab answers itself instead of moto."""
    from harness.lab.services import acm, awslambda, cloudwatch, ec2, elbv2, route53, ssm

    acm.install(gateway, lab)
    awslambda.install(gateway, lab)
    cloudwatch.install(gateway, lab)
    ec2.install(gateway, lab)
    elbv2.install(gateway, lab)
    route53.install(gateway, lab)
    ssm.install(gateway, lab)
