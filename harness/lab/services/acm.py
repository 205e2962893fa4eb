"""ACM overlay: a certificate still in use cannot be deleted, as on AWS.

moto deletes any certificate it holds. AWS refuses ``DeleteCertificate`` with
``ResourceInUseException`` while another service uses the certificate ("You cannot delete an
ACM certificate that is being used by another AWS service"): here a load balancer listener or
an API Gateway custom domain name of the certificate's region. Without this a user could delete
the listener's certificate and the lab's TLS listener would lose what it serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from moto.apigateway.models import apigateway_backends
from moto.elbv2.models import elbv2_backends

from harness.lab.gateway import Gateway, LabRequest, LabResponse, error_response

if TYPE_CHECKING:
    from harness.lab.lab import Lab


def users_of(account: str, region: str, certificate_arn: str) -> list[str]:
    """Return the ARNs of listeners and domain names in ``region`` using the certificate."""
    users = []
    if account in elbv2_backends:
        for lb in elbv2_backends[account][region].load_balancers.values():
            for listener in lb.listeners.values():
                if certificate_arn in (listener.certificates or []):
                    users.append(listener.arn)
    if account in apigateway_backends:
        for name, domain in apigateway_backends[account][region].domain_names.items():
            if certificate_arn in (domain.certificate_arn, domain.regional_certificate_arn):
                users.append(f"arn:aws:apigateway:{region}::/domainnames/{name}")
    return users


def install(gateway: Gateway, lab: Lab) -> None:
    def delete_certificate(request: LabRequest) -> LabResponse | None:
        from harness.lab.lab import ACCOUNT_ID

        arn = str(request.json().get("CertificateArn", ""))
        users = users_of(ACCOUNT_ID, request.region, arn)
        if not users:
            return None  # moto deletes it (or says it does not exist)
        return error_response(
            request.protocol,
            400,
            "ResourceInUseException",
            f"Certificate {arn} in use by {', '.join(users)}",
        )

    gateway.overlay("acm", "DeleteCertificate", delete_certificate)
