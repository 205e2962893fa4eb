"""Bring moto's EC2 / ELBv2 state closer to what AWS shows, where the data plane depends on it.

moto gives interface-endpoint ENIs random addresses outside their subnet and no description,
creates network load balancers with an application-LB ARN and no network interfaces at all. The
lab serves traffic on the addresses it finds in the control plane, so these must be right:

- every interface endpoint has one ENI per subnet, addressed inside that subnet, described
  ``VPC Endpoint Interface vpce-...`` and carrying the endpoint's security groups;
- a network load balancer has a ``loadbalancer/net/...`` ARN, becomes ``active``, and has one
  ENI per subnet described ``ELB net/<name>/<id>``, which is where its listeners live;
- ENIs whose endpoint or load balancer is gone, or whose instance was terminated, are deleted
  (and their addresses released).

``reconcile`` is idempotent and cheap; the lab runs it after every control-plane change.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from moto.ec2.models import ec2_backends
from moto.ec2.utils import generate_dns_from_ip
from moto.elbv2.models import elbv2_backends

OWNER = "lab_owner"  # attribute set on ENIs the lab manages: ("vpce"|"elb", owner id)


def reconcile(account_id: str, region: str) -> None:
    """Apply every fidelity fix to one region's EC2 and ELBv2 state."""
    ec2 = ec2_backends[account_id][region]
    elbv2 = elbv2_backends[account_id][region]
    live: set[tuple[str, str]] = set()
    for endpoint in list(ec2.vpc_end_points.values()):
        if (
            endpoint.vpc_endpoint_type or ""
        ).lower() == "interface" and endpoint.state != "deleted":
            _fix_endpoint(ec2, endpoint)
            live.add(("vpce", endpoint.id))
    for lb in list(elbv2.load_balancers.values()):
        if lb.type == "network":
            _fix_network_load_balancer(ec2, elbv2, lb)
            live.add(("elb", lb.arn))
    for eni in list(ec2.enis.values()):
        owner = getattr(eni, OWNER, None)
        if owner is not None and owner not in live:
            _delete_eni(ec2, eni)
        elif eni.instance is not None and eni.instance.state == "terminated":
            # A terminated instance's primary interface is deleted with it (DeleteOnTermination).
            _delete_eni(ec2, eni)


def nlb_addresses(lb: Any) -> dict[str, str]:
    """Return {subnet id: VPC address} of a network load balancer's nodes."""
    return dict(getattr(lb, "lab_addresses", {}))


def _fix_endpoint(ec2: Any, endpoint: Any) -> None:
    by_subnet = {}
    for eni_id in list(endpoint.network_interface_ids):
        eni = ec2.enis.get(eni_id)
        if eni is not None:
            by_subnet[eni.subnet.id] = eni
    eni_ids = []
    for subnet_id in endpoint.subnet_ids or []:
        eni = by_subnet.get(subnet_id)
        if eni is None:
            eni = ec2.create_network_interface(subnet_id, [], description="")
            eni.private_ip_address = None
        eni_ids.append(eni.id)
        _place(ec2, eni)
        eni.description = f"VPC Endpoint Interface {endpoint.id}"
        eni.interface_type = "vpc_endpoint"
        eni.requester_managed = True
        eni.requester_id = "727180483921"  # the AWS-owned requester shown for endpoint ENIs
        eni._group_set = [
            group
            for group in (ec2.get_security_group_from_id(g) for g in endpoint.security_group_ids)
            if group is not None
        ]
        setattr(eni, OWNER, ("vpce", endpoint.id))
    for stale in set(endpoint.network_interface_ids) - set(eni_ids):
        if stale in ec2.enis:
            _delete_eni(ec2, ec2.enis[stale])
    endpoint.network_interface_ids = eni_ids


def _fix_network_load_balancer(ec2: Any, elbv2: Any, lb: Any) -> None:
    if "/app/" in lb.arn:
        old = lb.arn
        lb.arn = old.replace(":loadbalancer/app/", ":loadbalancer/net/")
        elbv2.load_balancers[lb.arn] = elbv2.load_balancers.pop(old)
        tags = elbv2.tagging_service.list_tags_for_resource(old).get("Tags", [])
        if tags:
            elbv2.tagging_service.tag_resource(lb.arn, tags)
        elbv2.tagging_service.delete_all_tags_for_resource(old)
        lb_id = lb.arn.rsplit("/", 1)[-1]
        lb.dns_name = f"{lb.name}-{lb_id}.elb.{elbv2.region_name}.amazonaws.com"
    lb.activate()
    addresses = getattr(lb, "lab_addresses", {})
    enis = getattr(lb, "lab_enis", {})
    name_and_id = lb.arn.split(":loadbalancer/", 1)[1]  # net/<name>/<id>
    for subnet in lb.subnets:
        eni = ec2.enis.get(enis.get(subnet.id, ""))
        if eni is None:
            eni = ec2.create_network_interface(subnet.id, [], description="")
            eni.private_ip_address = None
            enis[subnet.id] = eni.id
        _place(ec2, eni)
        eni.description = f"ELB {name_and_id}"
        eni._group_set = [
            group
            for group in (ec2.get_security_group_from_id(g) for g in lb.security_groups or [])
            if group is not None
        ]
        eni.interface_type = "network_load_balancer"
        eni.requester_managed = True
        eni.requester_id = "amazon-elb"
        setattr(eni, OWNER, ("elb", lb.arn))
        addresses[subnet.id] = eni.private_ip_address
    lb.lab_addresses = addresses
    lb.lab_enis = enis


def _place(ec2: Any, eni: Any) -> None:
    """Give ``eni`` an address inside its subnet, allocated from the subnet's own pool."""
    subnet = eni.subnet
    current = eni.private_ip_address
    cidr = ipaddress.ip_network(subnet.cidr_block)
    if current and ipaddress.ip_address(current) in cidr and subnet._subnet_ips.get(current) is eni:
        return
    address = subnet.get_available_subnet_ip(eni)
    eni.private_ip_address = address
    entry: dict[str, Any] = {"Primary": True, "PrivateIpAddress": address}
    vpc = ec2.get_vpc(subnet.vpc_id)
    if vpc is not None and vpc.enable_dns_hostnames:
        eni.private_dns_name = generate_dns_from_ip(address)
        entry["PrivateDnsName"] = eni.private_dns_name
    eni.private_ip_addresses = [entry]


def _delete_eni(ec2: Any, eni: Any) -> None:
    address = eni.private_ip_address
    if address and eni.subnet._subnet_ips.get(address) is eni:
        eni.subnet.del_subnet_ip(address)
    ec2.enis.pop(eni.id, None)
