"""A consistent, immutable snapshot of the lab's control-plane state, for the data plane.

The resolvers, listeners, health pipeline and reachability checks all need the same facts
(VPCs, subnets, route tables, security groups, interfaces, transit gateways, load balancers,
hosted zones, health checks). Reading moto's objects directly from many threads would be racy
and slow, so the lab builds one ``Topology`` per control-plane version, under the state lock,
and hands the same frozen object to every data-plane component until the next change.

Everything here is the VPC view (10.x addresses); nothing knows about loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from moto.ec2.models import ec2_backends
from moto.elbv2.models import elbv2_backends
from moto.route53.models import route53_backends

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address


class _Routed(Protocol):
    @property
    def destination(self) -> IPv4Network: ...


R = TypeVar("R", bound=_Routed)


def longest_prefix_match(routes: Iterable[R], address: IPv4Address) -> R | None:
    """Return the route whose destination contains ``address`` with the longest prefix."""
    best: R | None = None
    for route in routes:
        if address in route.destination and (
            best is None or route.destination.prefixlen > best.destination.prefixlen
        ):
            best = route
    return best


@dataclass(frozen=True)
class Vpc:
    id: str
    region: str
    cidr: IPv4Network
    dns_support: bool

    @property
    def resolver_address(self) -> str:
        """The Route 53 Resolver of a VPC lives at the VPC's base address plus two."""
        return str(self.cidr.network_address + 2)


@dataclass(frozen=True)
class Subnet:
    id: str
    vpc_id: str
    region: str
    cidr: IPv4Network
    availability_zone: str
    route_table_id: str  # the explicitly associated table, else the VPC's main table


@dataclass(frozen=True)
class Route:
    destination: IPv4Network
    target: str  # "local", "tgw", "vpce" (gateway endpoint), "igw", "other"
    target_id: str  # e.g. the transit gateway id
    state: str = "active"  # "active" | "blackhole"


@dataclass(frozen=True)
class RouteTable:
    id: str
    vpc_id: str
    region: str
    routes: tuple[Route, ...]

    def lookup(self, address: IPv4Address) -> Route | None:
        """Longest-prefix match, as a VPC router does."""
        return longest_prefix_match(self.routes, address)


@dataclass(frozen=True)
class Rule:
    """One security-group rule (ingress or egress)."""

    protocol: str  # "tcp", "udp", "icmp", "-1" (all)
    from_port: int | None
    to_port: int | None
    cidrs: tuple[IPv4Network, ...]
    group_ids: tuple[str, ...]

    def admits(
        self, protocol: str, port: int, peer: IPv4Address, peer_groups: frozenset[str]
    ) -> bool:
        if self.protocol not in ("-1", "all", protocol):
            return False
        if (
            (
                self.protocol not in ("-1", "all")
                and self.from_port is not None
                and self.to_port is not None
            )
            and self.from_port != -1
            and not self.from_port <= port <= self.to_port
        ):
            return False
        return any(peer in cidr for cidr in self.cidrs) or bool(
            peer_groups.intersection(self.group_ids)
        )


@dataclass(frozen=True)
class SecurityGroup:
    id: str
    vpc_id: str
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]


@dataclass(frozen=True)
class Interface:
    """A network interface: an address a packet can come from or go to."""

    id: str
    address: str
    subnet_id: str
    vpc_id: str
    region: str
    availability_zone: str
    security_group_ids: frozenset[str]
    kind: str  # "instance", "vpc_endpoint", "network_load_balancer", "interface"
    owner_id: str  # instance id, endpoint id or load balancer arn ("" if none)


@dataclass(frozen=True)
class Instance:
    id: str
    region: str
    state: str
    address: str
    subnet_id: str
    vpc_id: str
    availability_zone: str
    key_name: str | None
    tags: Mapping[str, str]
    iam_instance_profile: str | None = None  # ARN; set when the instance has a profile


@dataclass(frozen=True)
class TgwRoute:
    destination: IPv4Network
    attachment_id: str | None
    state: str  # "active" | "blackhole"


@dataclass(frozen=True)
class TgwRouteTable:
    id: str
    tgw_id: str
    region: str
    routes: tuple[TgwRoute, ...]

    def lookup(self, address: IPv4Address) -> TgwRoute | None:
        """Longest-prefix match, as a transit gateway does."""
        return longest_prefix_match(self.routes, address)


@dataclass(frozen=True)
class TgwAttachment:
    """A transit-gateway attachment as seen from one region's gateway."""

    id: str
    region: str
    tgw_id: str  # the gateway in ``region`` this attachment belongs to
    kind: str  # "vpc" | "peering"
    state: str
    vpc_id: str | None  # for vpc attachments
    peer_region: str | None  # for peering: the other side
    peer_tgw_id: str | None
    route_table_id: str | None  # association in ``region``


@dataclass(frozen=True)
class Target:
    id: str  # IP address or instance id
    port: int
    availability_zone: str | None


@dataclass(frozen=True)
class TargetGroup:
    arn: str
    region: str
    vpc_id: str
    protocol: str
    port: int
    health_check_protocol: str
    health_check_port: str  # "traffic-port" or a number
    health_check_path: str | None
    interval: int
    timeout: int
    healthy_threshold: int
    unhealthy_threshold: int
    targets: tuple[Target, ...]
    # Target-group attributes as DescribeTargetGroupAttributes shows them (string values),
    # e.g. preserve_client_ip.enabled, load_balancing.cross_zone.enabled.
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return self.arn.split(":", 5)[5]


@dataclass(frozen=True)
class Listener:
    arn: str
    protocol: str
    port: int
    certificate_arn: str | None
    ssl_policy: str | None
    target_group_arns: tuple[str, ...]
    # The certificate's ACM bundle (leaf, key, chain PEM) read in the same snapshot as the
    # listener, so the two always agree; None when ACM does not hold it with a key.
    certificate: tuple[bytes, bytes, bytes] | None = None


@dataclass(frozen=True)
class LoadBalancer:
    arn: str
    name: str
    region: str
    type: str
    scheme: str
    vpc_id: str
    dns_name: str
    canonical_hosted_zone_id: str
    state: str
    nodes: Mapping[str, str]  # subnet id -> VPC address of the node (network load balancers)
    listeners: tuple[Listener, ...]
    # Load-balancer attributes (string values), e.g. load_balancing.cross_zone.enabled.
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return self.arn.split(":loadbalancer/", 1)[1]


@dataclass(frozen=True)
class VpcEndpoint:
    id: str
    region: str
    vpc_id: str
    service_name: str
    type: str
    private_dns_enabled: bool
    addresses: Mapping[str, str]  # subnet id -> ENI address
    security_group_ids: tuple[str, ...]


@dataclass(frozen=True)
class RecordSet:
    name: str  # lower case, no trailing dot
    type: str
    ttl: int | None
    values: tuple[str, ...]
    set_identifier: str | None
    weight: int | None
    region: str | None
    failover: str | None
    multi_value: bool
    health_check_id: str | None
    alias_dns_name: str | None
    alias_evaluate_target_health: bool
    geo_location: Mapping[str, str] | None


@dataclass(frozen=True)
class HostedZone:
    id: str
    name: str  # lower case, no trailing dot
    private: bool
    vpcs: tuple[tuple[str, str], ...]  # (vpc id, region)
    records: tuple[RecordSet, ...]


@dataclass(frozen=True)
class HealthCheck:
    id: str
    type: str
    inverted: bool
    disabled: bool
    alarm_name: str | None
    alarm_region: str | None
    insufficient_data_health_status: str | None
    children: tuple[str, ...] = ()  # CALCULATED: child health-check ids
    health_threshold: int | None = None  # CALCULATED: healthy children needed


@dataclass(frozen=True)
class Topology:
    """Every control-plane fact the data plane needs, frozen at one state version."""

    version: int
    account_id: str
    vpcs: Mapping[str, Vpc] = field(default_factory=dict)
    subnets: Mapping[str, Subnet] = field(default_factory=dict)
    route_tables: Mapping[str, RouteTable] = field(default_factory=dict)
    security_groups: Mapping[str, SecurityGroup] = field(default_factory=dict)
    interfaces: Mapping[str, Interface] = field(default_factory=dict)  # by VPC address
    instances: Mapping[str, Instance] = field(default_factory=dict)
    tgw_attachments: Mapping[tuple[str, str], TgwAttachment] = field(
        default_factory=dict
    )  # (region, id)
    tgw_route_tables: Mapping[str, TgwRouteTable] = field(default_factory=dict)
    load_balancers: Mapping[str, LoadBalancer] = field(default_factory=dict)
    target_groups: Mapping[str, TargetGroup] = field(default_factory=dict)
    endpoints: Mapping[str, VpcEndpoint] = field(default_factory=dict)
    hosted_zones: Mapping[str, HostedZone] = field(default_factory=dict)
    health_checks: Mapping[str, HealthCheck] = field(default_factory=dict)

    def interface(self, address: str) -> Interface | None:
        return self.interfaces.get(address)

    def vpc_containing(self, address: str) -> Vpc | None:
        """Return the VPC whose CIDR contains ``address`` (VPC CIDRs never overlap here)."""
        ip = IPv4Address(address)
        for vpc in self.vpcs.values():
            if ip in vpc.cidr:
                return vpc
        return None

    def subnet_containing(self, address: str) -> Subnet | None:
        ip = IPv4Address(address)
        for subnet in self.subnets.values():
            if ip in subnet.cidr:
                return subnet
        return None

    def vpc_by_resolver(self, address: str) -> Vpc | None:
        for vpc in self.vpcs.values():
            if vpc.resolver_address == address:
                return vpc
        return None

    def load_balancer_by_dns(self, name: str) -> LoadBalancer | None:
        wanted = name.lower().rstrip(".")
        for lb in self.load_balancers.values():
            if lb.dns_name.lower() == wanted:
                return lb
        return None

    def load_balancer_at(self, address: str) -> LoadBalancer | None:
        for lb in self.load_balancers.values():
            if address in lb.nodes.values():
                return lb
        return None

    def bastions(self) -> list[Instance]:
        """Instances tagged ``regiondrill:role=bastion``, in a stable order."""
        found = [i for i in self.instances.values() if i.tags.get("regiondrill:role") == "bastion"]
        return sorted(found, key=lambda i: (i.region, i.availability_zone, i.id))


# ---------------------------------------------------------------------- building


def acm_bundle(account_id: str, arn: str) -> tuple[bytes, bytes, bytes] | None:
    """Return an ACM certificate's (leaf, key, chain) PEM, or None when ACM does not hold it
    with a private key. Call with the lab's state lock held."""
    from moto.acm.models import acm_backends

    region = arn.split(":")[3] if arn.count(":") >= 5 else ""
    if account_id not in acm_backends or not region:
        return None
    bundle = acm_backends[account_id][region]._certificates.get(arn)
    if bundle is None or not bundle.key:
        return None
    return _pem(bundle.cert), _pem(bundle.key), _pem(getattr(bundle, "chain", b"") or b"")


def _pem(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("ascii")
    return bytes(value or b"")


def build(account_id: str, version: int) -> Topology:
    """Read every region's moto state into a Topology. Call with the lab's state lock held."""
    topology = Topology(version=version, account_id=account_id)
    vpcs: dict[str, Vpc] = {}
    subnets: dict[str, Subnet] = {}
    route_tables: dict[str, RouteTable] = {}
    groups: dict[str, SecurityGroup] = {}
    interfaces: dict[str, Interface] = {}
    instances: dict[str, Instance] = {}
    attachments: dict[tuple[str, str], TgwAttachment] = {}
    tgw_tables: dict[str, TgwRouteTable] = {}
    lbs: dict[str, LoadBalancer] = {}
    tgs: dict[str, TargetGroup] = {}
    endpoints: dict[str, VpcEndpoint] = {}
    for region, ec2 in _backends(ec2_backends, account_id):
        _read_ec2(
            region,
            ec2,
            vpcs,
            subnets,
            route_tables,
            groups,
            interfaces,
            instances,
            attachments,
            tgw_tables,
            endpoints,
        )
    for region, elbv2 in _backends(elbv2_backends, account_id):
        _read_elbv2(account_id, region, elbv2, lbs, tgs)
    zones, health_checks = _read_route53(account_id)
    object.__setattr__(topology, "vpcs", vpcs)
    object.__setattr__(topology, "subnets", subnets)
    object.__setattr__(topology, "route_tables", route_tables)
    object.__setattr__(topology, "security_groups", groups)
    object.__setattr__(topology, "interfaces", interfaces)
    object.__setattr__(topology, "instances", instances)
    object.__setattr__(topology, "tgw_attachments", attachments)
    object.__setattr__(topology, "tgw_route_tables", tgw_tables)
    object.__setattr__(topology, "load_balancers", lbs)
    object.__setattr__(topology, "target_groups", tgs)
    object.__setattr__(topology, "endpoints", endpoints)
    object.__setattr__(topology, "hosted_zones", zones)
    object.__setattr__(topology, "health_checks", health_checks)
    return topology


def _backends(backend_dict: Any, account_id: str) -> list[tuple[str, Any]]:
    """Return the (region, backend) pairs moto has instantiated (never create new ones)."""
    if account_id not in backend_dict:
        return []
    per_region = backend_dict[account_id]
    return [(region, per_region[region]) for region in list(per_region.keys())]


def _net(text: str) -> IPv4Network | None:
    try:
        return IPv4Network(text, strict=False)
    except (ValueError, TypeError):
        return None


def _read_ec2(
    region: str,
    ec2: Any,
    vpcs: dict[str, Vpc],
    subnets: dict[str, Subnet],
    route_tables: dict[str, RouteTable],
    groups: dict[str, SecurityGroup],
    interfaces: dict[str, Interface],
    instances: dict[str, Instance],
    attachments: dict[tuple[str, str], TgwAttachment],
    tgw_tables: dict[str, TgwRouteTable],
    endpoints: dict[str, VpcEndpoint],
) -> None:
    for vpc in list(ec2.vpcs.values()):
        cidr = _net(vpc.cidr_block)
        if cidr is None or getattr(vpc, "is_default", False):
            continue  # moto's default VPC (172.31/16) is not part of any lab deployment
        vpcs[vpc.id] = Vpc(vpc.id, region, cidr, bool(getattr(vpc, "enable_dns_support", True)))

    main_tables: dict[str, str] = {}
    explicit: dict[str, str] = {}
    for table in list(ec2.route_tables.values()):
        if table.vpc_id not in vpcs:
            continue
        if getattr(table, "main_association_id", None):
            main_tables[table.vpc_id] = table.id
        for subnet_id in table._associations.values():
            explicit[subnet_id] = table.id
        routes = []
        for route in list(table._routes.values()):
            destination = (
                _net(route.destination_cidr_block) if route.destination_cidr_block else None
            )
            if destination is None:
                continue  # prefix-list routes (gateway endpoints) carry no IPv4 CIDR traffic here
            if route.local:
                routes.append(Route(destination, "local", table.vpc_id))
            elif route.transit_gateway is not None:
                tgw_id = getattr(route.transit_gateway, "id", route.transit_gateway)
                state = "active" if tgw_id in ec2.transit_gateways else "blackhole"
                routes.append(Route(destination, "tgw", str(tgw_id), state))
            else:
                routes.append(
                    Route(destination, "other", str(route.gateway or route.interface or ""))
                )
        route_tables[table.id] = RouteTable(table.id, table.vpc_id, region, tuple(routes))

    for subnet in ec2.describe_subnets():
        if subnet.vpc_id not in vpcs:
            continue
        table_id = explicit.get(subnet.id) or main_tables.get(subnet.vpc_id, "")
        subnets[subnet.id] = Subnet(
            subnet.id,
            subnet.vpc_id,
            region,
            IPv4Network(subnet.cidr_block),
            subnet.availability_zone,
            table_id,
        )

    for group in ec2.describe_security_groups():
        if group.vpc_id not in vpcs:
            continue
        groups[group.id] = SecurityGroup(
            group.id,
            group.vpc_id,
            tuple(_rules(group.ingress_rules)),
            tuple(_rules(group.egress_rules)),
        )

    for eni in list(ec2.enis.values()):
        subnet = subnets.get(eni.subnet.id) if eni.subnet is not None else None
        if subnet is None or not eni.private_ip_address:
            continue
        owner = getattr(eni, "lab_owner", None)
        if eni.instance is not None:
            kind, owner_id = "instance", eni.instance.id
        elif owner is not None:
            kind = "vpc_endpoint" if owner[0] == "vpce" else "network_load_balancer"
            owner_id = owner[1]
        else:
            kind, owner_id = eni.interface_type or "interface", ""
        interfaces[eni.private_ip_address] = Interface(
            id=eni.id,
            address=eni.private_ip_address,
            subnet_id=subnet.id,
            vpc_id=subnet.vpc_id,
            region=region,
            availability_zone=subnet.availability_zone,
            security_group_ids=frozenset(g.id for g in eni._group_set),
            kind=kind,
            owner_id=owner_id,
        )

    for instance in ec2.all_instances():
        subnet = subnets.get(instance.subnet_id or "")
        if subnet is None:
            continue
        instances[instance.id] = Instance(
            id=instance.id,
            region=region,
            state=instance.state,
            address=instance.private_ip,
            subnet_id=subnet.id,
            vpc_id=subnet.vpc_id,
            availability_zone=subnet.availability_zone,
            key_name=instance.key_name,
            tags=dict(ec2.tags.get(instance.id, {})),
            iam_instance_profile=(getattr(instance, "iam_instance_profile", None) or {}).get("Arn"),
        )

    associations = {
        attachment_id: relation.transit_gateway_route_table_id
        for attachment_id, relation in ec2.transit_gateway_associations.items()
        if relation.state == "associated"
    }
    for attachment in list(ec2.transit_gateway_attachments.values()):
        if attachment.state == "deleted":
            continue
        if attachment.resource_type == "peering":
            requester = attachment.requester_tgw_info
            accepter = attachment.accepter_tgw_info
            if requester["Region"] == region:
                local, peer = requester, accepter
            else:
                local, peer = accepter, requester
            attachments[(region, attachment.id)] = TgwAttachment(
                id=attachment.id,
                region=region,
                tgw_id=local["TransitGatewayId"],
                kind="peering",
                state=attachment.state,
                vpc_id=None,
                peer_region=peer["Region"],
                peer_tgw_id=peer["TransitGatewayId"],
                route_table_id=associations.get(attachment.id),
            )
        elif attachment.resource_type == "vpc":
            attachments[(region, attachment.id)] = TgwAttachment(
                id=attachment.id,
                region=region,
                tgw_id=attachment.transit_gateway_id,
                kind="vpc",
                state=attachment.state,
                vpc_id=attachment.vpc_id,
                peer_region=None,
                peer_tgw_id=None,
                route_table_id=associations.get(attachment.id),
            )

    for table in list(ec2.transit_gateways_route_tables.values()):
        if table.state == "deleted":
            continue
        tgw_routes: list[TgwRoute] = []
        for cidr, route in list(table.routes.items()):
            destination = _net(cidr)
            if destination is None or route.get("state") == "deleted":
                continue
            attached = route.get("transitGatewayAttachments") or {}
            tgw_routes.append(
                TgwRoute(
                    destination,
                    attached.get("transitGatewayAttachmentId"),
                    route.get("state", "active"),
                )
            )
        tgw_tables[table.id] = TgwRouteTable(
            table.id, table.transit_gateway_id, region, tuple(tgw_routes)
        )

    for endpoint in list(ec2.vpc_end_points.values()):
        if endpoint.state == "deleted" or endpoint.vpc_id not in vpcs:
            continue
        addresses = {}
        for eni_id in endpoint.network_interface_ids:
            eni = ec2.enis.get(eni_id)
            if eni is not None and eni.private_ip_address:
                addresses[eni.subnet.id] = eni.private_ip_address
        endpoints[endpoint.id] = VpcEndpoint(
            id=endpoint.id,
            region=region,
            vpc_id=endpoint.vpc_id,
            service_name=endpoint.service_name,
            type=(endpoint.vpc_endpoint_type or "Gateway"),
            private_dns_enabled=bool(endpoint.private_dns_enabled),
            addresses=addresses,
            security_group_ids=tuple(endpoint.security_group_ids),
        )


def _rules(rules: Any) -> list[Rule]:
    out = []
    for rule in rules:
        cidr = _net(rule.ip_range.get("CidrIp", "")) if rule.ip_range else None
        group = rule.source_group.get("GroupId") if rule.source_group else None
        out.append(
            Rule(
                protocol=str(rule.ip_protocol).lower() if rule.ip_protocol is not None else "-1",
                from_port=rule.from_port,
                to_port=rule.to_port,
                cidrs=(cidr,) if cidr is not None else (),
                group_ids=(group,) if group else (),
            )
        )
    return out


def _read_elbv2(
    account_id: str,
    region: str,
    elbv2: Any,
    lbs: dict[str, LoadBalancer],
    tgs: dict[str, TargetGroup],
) -> None:
    for group in list(elbv2.target_groups.values()):
        port = int(group.port) if group.port else 0
        tgs[group.arn] = TargetGroup(
            arn=group.arn,
            region=region,
            vpc_id=group.vpc_id,
            protocol=group.protocol or "",
            port=port,
            health_check_protocol=(group.health_check_protocol or "TCP").upper(),
            health_check_port=str(group.health_check_port or "traffic-port"),
            health_check_path=group.health_check_path,
            interval=int(group.health_check_interval_seconds or 30),
            timeout=int(group.health_check_timeout_seconds or 10),
            healthy_threshold=int(group.healthy_threshold_count or 3),
            unhealthy_threshold=int(group.unhealthy_threshold_count or 3),
            targets=tuple(
                Target(str(t["Id"]), int(t.get("Port") or port), t.get("AvailabilityZone"))
                for t in group.targets.values()
            ),
            attributes={
                str(k): str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in (getattr(group, "attributes", None) or {}).items()
            },
        )
    for lb in list(elbv2.load_balancers.values()):
        listeners = []
        for listener in list(lb.listeners.values()):
            target_groups = []
            for action in listener.default_actions:
                data = getattr(action, "data", {}) or {}
                if data.get("TargetGroupArn"):
                    target_groups.append(data["TargetGroupArn"])
                for forward in (data.get("ForwardConfig") or {}).get("TargetGroups", []) or []:
                    target_groups.append(forward["TargetGroupArn"])
            certificate_arn = getattr(listener, "certificate", None)
            listeners.append(
                Listener(
                    arn=listener.arn,
                    protocol=listener.protocol,
                    port=int(listener.port),
                    certificate_arn=certificate_arn,
                    certificate=acm_bundle(account_id, certificate_arn)
                    if certificate_arn
                    else None,
                    ssl_policy=getattr(listener, "ssl_policy", None),
                    target_group_arns=tuple(dict.fromkeys(target_groups)),
                )
            )
        lbs[lb.arn] = LoadBalancer(
            arn=lb.arn,
            name=lb.name,
            region=region,
            type=lb.type,
            scheme=lb.scheme,
            vpc_id=lb.vpc_id,
            dns_name=lb.dns_name,
            canonical_hosted_zone_id=lb.canonical_hosted_zone_id,
            state=lb.state,
            nodes=dict(getattr(lb, "lab_addresses", {})),
            listeners=tuple(listeners),
            attributes={str(k): str(v) for k, v in (getattr(lb, "attrs", None) or {}).items()},
        )


def _read_route53(account_id: str) -> tuple[dict[str, HostedZone], dict[str, HealthCheck]]:
    zones: dict[str, HostedZone] = {}
    checks: dict[str, HealthCheck] = {}
    if account_id not in route53_backends:
        return zones, checks
    backend = route53_backends[account_id]["aws"]
    for zone in list(backend.zones.values()):
        zone_id = str(zone.id).replace("/hostedzone/", "")
        records = tuple(_record(r) for r in list(zone.rrsets))
        zones[zone_id] = HostedZone(
            id=zone_id,
            name=zone.name.lower().rstrip("."),
            private=bool(zone.private_zone),
            vpcs=tuple((v["vpc_id"], v["vpc_region"]) for v in zone.vpcs),
            records=records,
        )
    for check in list(backend.health_checks.values()):
        alarm = getattr(check, "lab_alarm_identifier", None) or {}
        checks[check.id] = HealthCheck(
            id=check.id,
            type=str(check.type_),
            inverted=bool(check.inverted),
            disabled=bool(check.disabled),
            alarm_name=alarm.get("Name"),
            alarm_region=alarm.get("Region"),
            children=tuple(check.children or ()),
            health_threshold=int(check.health_threshold)
            if check.health_threshold is not None
            else None,
            insufficient_data_health_status=getattr(
                check, "lab_insufficient_data_health_status", None
            ),
        )
    return zones, checks


def _record(record: Any) -> RecordSet:
    values = []
    for value in record.records or []:
        values.append(value["Value"] if isinstance(value, dict) else str(value))
    alias = record.alias_target or {}
    return RecordSet(
        name=record.name.lower().rstrip("."),
        type=str(record.type).upper(),
        ttl=int(record.ttl) if record.ttl not in (None, "") else None,
        values=tuple(values),
        set_identifier=record.set_identifier,
        weight=int(record.weight) if record.weight not in (None, "") else None,
        region=record.region,
        failover=record.failover,
        multi_value=str(record.multi_value_answer).lower() == "true",
        health_check_id=record.health_check_id or None,
        alias_dns_name=alias.get("DNSName", "").lower().rstrip(".") or None if alias else None,
        alias_evaluate_target_health=str(alias.get("EvaluateTargetHealth", "false")).lower()
        == "true"
        if alias
        else False,
        geo_location=record.geo_location,
    )
