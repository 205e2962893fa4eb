"""ELBv2 overlay: load balancer identity at creation, and target health from the lab.

The fidelity pass rewrites a network load balancer's ARN (``loadbalancer/net/...``) and DNS name;
for CreateLoadBalancer the response must already carry the final identity, or the caller would
hold an ARN that no longer exists. DescribeTargetHealth reports the health pipeline's target
states instead of moto's unconditional ``healthy``.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from moto.elbv2.models import elbv2_backends

from harness.lab import fidelity
from harness.lab.gateway import Gateway, LabRequest, LabResponse, error_response

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
    _install_target_health(gateway, lab)


ELBV2_NS = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"


def _requested_targets(form: dict[str, str]) -> list[dict[str, str]]:
    """Return the Targets.member.N.{Id,Port,AvailabilityZone} of a query-protocol request."""
    targets = []
    index = 1
    while f"Targets.member.{index}.Id" in form:
        prefix = f"Targets.member.{index}."
        target = {"Id": form[prefix + "Id"]}
        for key in ("Port", "AvailabilityZone"):
            if form.get(prefix + key):
                target[key] = form[prefix + key]
        targets.append(target)
        index += 1
    return targets


def _render_target_health(descriptions: list[dict[str, Any]]) -> LabResponse:
    members = []
    for d in descriptions:
        target = f"<Id>{escape(d['Id'])}</Id><Port>{d['Port']}</Port>"
        if d.get("AvailabilityZone"):
            target += f"<AvailabilityZone>{escape(d['AvailabilityZone'])}</AvailabilityZone>"
        health = f"<State>{d['State']}</State>"
        if d.get("Reason"):
            health += f"<Reason>{d['Reason']}</Reason>"
        if d.get("Description"):
            health += f"<Description>{escape(d['Description'])}</Description>"
        members.append(
            f"<member><Target>{target}</Target>"
            f"<HealthCheckPort>{escape(str(d['HealthCheckPort']))}</HealthCheckPort>"
            f"<TargetHealth>{health}</TargetHealth>"
            "<AdministrativeOverride><State>no_override</State>"
            "<Reason>AdministrativeOverride.NoOverride</Reason>"
            "<Description>No override is currently active on target</Description>"
            "</AdministrativeOverride></member>"
        )
    return LabResponse.xml(
        f'<DescribeTargetHealthResponse xmlns="{ELBV2_NS}"><DescribeTargetHealthResult>'
        f"<TargetHealthDescriptions>{''.join(members)}</TargetHealthDescriptions>"
        "</DescribeTargetHealthResult>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        "</DescribeTargetHealthResponse>"
    )


def _install_target_health(gateway: Gateway, lab: Lab) -> None:
    """Answer DescribeTargetHealth with the health pipeline's target states.

    moto reports every registered target ``healthy``; the lab reports what its health checks
    found (``initial``/``healthy``/``unhealthy``/``unused`` with ELB's reason codes). moto still
    validates the request (unknown target group...) and answers for targets that are not
    registered (``unused``, ``Target.NotRegistered``).
    """

    def describe_target_health(request: LabRequest) -> LabResponse | None:
        assert request.forward is not None
        response = request.forward()
        if response.status >= 300:
            return response
        if lab.health is None:
            return error_response(
                "query",
                400,
                "InvalidAction",
                "the lab's health pipeline is not running, so target health is unknown",
            )
        from harness.lab.lab import ACCOUNT_ID

        form = request.form()
        arn = form.get("TargetGroupArn", "")
        group = elbv2_backends[ACCOUNT_ID][request.region].target_groups.get(arn)
        if group is None:
            return response
        states = lab.health.target_health(arn)
        topology = lab.topology()
        wanted = _requested_targets(form) or [
            {"Id": str(t["Id"]), "Port": str(t.get("Port") or group.port)}
            for t in group.targets.values()
        ]
        descriptions = []
        for target in wanted:
            target_id = target["Id"]
            registered = group.targets.get(target_id)
            port = int(target.get("Port") or (registered or {}).get("Port") or group.port or 0)
            configured = str(group.health_check_port or "traffic-port")
            check_port = str(port) if configured == "traffic-port" else configured
            entry: dict[str, Any] = {"Id": target_id, "Port": port, "HealthCheckPort": check_port}
            zone = (registered or {}).get("AvailabilityZone") or target.get("AvailabilityZone")
            if zone:
                entry["AvailabilityZone"] = zone
            view = states.get((target_id, port))
            if registered is None or int(registered.get("Port") or group.port or 0) != port:
                entry.update(
                    State="unused",
                    Reason="Target.NotRegistered",
                    Description="Target is not registered to the target group",
                )
            elif view is None:  # registered a moment ago; the pipeline has not seen it yet
                entry.update(
                    State="initial",
                    Reason="Elb.RegistrationInProgress",
                    Description="Target registration is in progress",
                )
            else:
                instance = topology.instances.get(target_id)
                if instance is not None and instance.state in ("stopped", "stopping"):
                    entry.update(
                        State="unused",
                        Reason="Target.InvalidState",
                        Description=f"Target is in the {instance.state} state",
                    )
                else:
                    entry.update(State=view.state, Reason=view.reason, Description=view.description)
            descriptions.append(entry)
        return _render_target_health(descriptions)

    gateway.overlay("elbv2", "DescribeTargetHealth", describe_target_health)
