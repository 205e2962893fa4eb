"""Reachability: every link of the path allows and denies, on hand-built and on live state.

Unit tests build a three-region mesh (the shape the stack set deploys) as a frozen
``Topology`` and break one link at a time; hypothesis checks properties over random breakages.
Integration tests deploy the real stack set into the lab, change state through the EC2 API with
boto3, and see the next ``lab.network.check`` follow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.aws.session import SessionFactory
from harness.aws.stacks import Deployment, StackSetDeployer
from harness.config import load_config
from harness.errors import LabError
from harness.lab import lab as lab_module
from harness.lab.lab import Lab
from harness.lab.network import Network, Verdict, evaluate
from harness.lab.topology import (
    Instance,
    Interface,
    LoadBalancer,
    Route,
    RouteTable,
    Rule,
    SecurityGroup,
    Subnet,
    TgwAttachment,
    TgwRoute,
    TgwRouteTable,
    Topology,
    Vpc,
)
from harness.targets import lab_sessions

REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
net = ipaddress.IPv4Network
ANY = net("0.0.0.0/0")


# ---------------------------------------------------------------------- a hand-built mesh


def cidr(i: int) -> ipaddress.IPv4Network:
    return net(f"10.{i}.0.0/16")


def bastion(i: int, az: str = "a") -> str:
    return f"10.{i}.{1 if az == 'a' else 2}.8"


def endpoint(i: int, az: str = "a") -> str:
    return f"10.{i}.{1 if az == 'a' else 2}.4"


def nlb(i: int, az: str = "a") -> str:
    return f"10.{i}.{1 if az == 'a' else 2}.9"


def peering_id(i: int, j: int) -> str:
    low, high = sorted((i, j))
    return f"tgw-attach-p{low}{high}"


def all_tcp(port: int, *cidrs: ipaddress.IPv4Network) -> Rule:
    return Rule("tcp", port, port, tuple(cidrs), ())


ALL_OUT = Rule("-1", None, None, (ANY,), ())


def mesh(n: int = 3, *, open_groups: bool = False) -> Topology:
    """Return n regions wired like the stack set: TGW peering mesh, bastions, NLBs, endpoints."""
    vpcs: dict[str, Vpc] = {}
    subnets: dict[str, Subnet] = {}
    tables: dict[str, RouteTable] = {}
    groups: dict[str, SecurityGroup] = {}
    interfaces: dict[str, Interface] = {}
    instances: dict[str, Instance] = {}
    attachments: dict[tuple[str, str], TgwAttachment] = {}
    tgw_tables: dict[str, TgwRouteTable] = {}
    lbs: dict[str, LoadBalancer] = {}
    everyone = tuple(cidr(k) for k in range(1, n + 1))
    for i in range(1, n + 1):
        region = REGIONS[i - 1]
        vpc = f"vpc-{i}"
        vpcs[vpc] = Vpc(vpc, region, cidr(i), True)
        routes = [Route(cidr(i), "local", vpc)]
        routes += [Route(cidr(j), "tgw", f"tgw-{i}") for j in range(1, n + 1) if j != i]
        tables[f"rtb-{i}"] = RouteTable(f"rtb-{i}", vpc, region, tuple(routes))
        if open_groups:
            ingress_b: tuple[Rule, ...] = (Rule("-1", None, None, (ANY,), ()),)
            ingress_e = ingress_b
        else:
            ingress_b = (all_tcp(22, cidr(i)),)
            ingress_e = tuple(all_tcp(443, c) for c in everyone)
        groups[f"sg-bastion{i}"] = SecurityGroup(f"sg-bastion{i}", vpc, ingress_b, (ALL_OUT,))
        groups[f"sg-endpoint{i}"] = SecurityGroup(f"sg-endpoint{i}", vpc, ingress_e, (ALL_OUT,))
        lb_arn = f"arn:aws:elasticloadbalancing:{region}:123456789012:loadbalancer/net/nlb{i}/0{i}"
        nodes = {}
        for az, third in (("a", 1), ("b", 2)):
            subnet = f"subnet-{i}{az}"
            subnets[subnet] = Subnet(
                subnet, vpc, region, net(f"10.{i}.{third}.0/24"), f"{region}{az}", f"rtb-{i}"
            )
            instance = f"i-{i}{az}"
            instances[instance] = Instance(
                instance,
                region,
                "running",
                bastion(i, az),
                subnet,
                vpc,
                f"{region}{az}",
                None,
                {"regiondrill:role": "bastion"},
            )
            common = {
                "subnet_id": subnet,
                "vpc_id": vpc,
                "region": region,
                "availability_zone": f"{region}{az}",
            }
            interfaces[bastion(i, az)] = Interface(
                id=f"eni-b{i}{az}",
                address=bastion(i, az),
                security_group_ids=frozenset({f"sg-bastion{i}"}),
                kind="instance",
                owner_id=instance,
                **common,
            )
            interfaces[endpoint(i, az)] = Interface(
                id=f"eni-e{i}{az}",
                address=endpoint(i, az),
                security_group_ids=frozenset({f"sg-endpoint{i}"}),
                kind="vpc_endpoint",
                owner_id=f"vpce-{i}",
                **common,
            )
            interfaces[nlb(i, az)] = Interface(
                id=f"eni-n{i}{az}",
                address=nlb(i, az),
                security_group_ids=frozenset(),
                kind="network_load_balancer",
                owner_id=lb_arn,
                **common,
            )
            nodes[subnet] = nlb(i, az)
        lbs[lb_arn] = LoadBalancer(
            lb_arn,
            f"nlb{i}",
            region,
            "network",
            "internal",
            vpc,
            f"nlb{i}.elb.amazonaws.com",
            "Z1",
            "active",
            nodes,
            (),
        )
        attachments[(region, f"tgw-attach-v{i}")] = TgwAttachment(
            f"tgw-attach-v{i}",
            region,
            f"tgw-{i}",
            "vpc",
            "available",
            vpc,
            None,
            None,
            f"tgw-rtb-{i}",
        )
        tgw_routes = [TgwRoute(cidr(i), f"tgw-attach-v{i}", "active")]
        for j in range(1, n + 1):
            if j == i:
                continue
            attachments[(region, peering_id(i, j))] = TgwAttachment(
                peering_id(i, j),
                region,
                f"tgw-{i}",
                "peering",
                "available",
                None,
                REGIONS[j - 1],
                f"tgw-{j}",
                f"tgw-rtb-{i}",
            )
            tgw_routes.append(TgwRoute(cidr(j), peering_id(i, j), "active"))
        tgw_tables[f"tgw-rtb-{i}"] = TgwRouteTable(
            f"tgw-rtb-{i}", f"tgw-{i}", region, tuple(tgw_routes)
        )
    return Topology(
        version=1,
        account_id="123456789012",
        vpcs=vpcs,
        subnets=subnets,
        route_tables=tables,
        security_groups=groups,
        interfaces=interfaces,
        instances=instances,
        tgw_attachments=attachments,
        tgw_route_tables=tgw_tables,
        load_balancers=lbs,
    )


# Mutations return a new topology (next version); the original stays as it was.


def put(topology: Topology, name: str, key: Any, value: Any) -> Topology:
    mapping = dict(getattr(topology, name))
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value
    changes: dict[str, Any] = {"version": topology.version + 1, name: mapping}
    return dataclasses.replace(topology, **changes)


def vpc_routes(
    topology: Topology, i: int, change: Callable[[list[Route]], list[Route]]
) -> Topology:
    table = topology.route_tables[f"rtb-{i}"]
    return put(
        topology,
        "route_tables",
        table.id,
        dataclasses.replace(table, routes=tuple(change(list(table.routes)))),
    )


def without_vpc_route(topology: Topology, i: int, destination: ipaddress.IPv4Network) -> Topology:
    return vpc_routes(
        topology, i, lambda routes: [r for r in routes if r.destination != destination]
    )


def tgw_route(topology: Topology, i: int, route: TgwRoute | ipaddress.IPv4Network) -> Topology:
    """Set (TgwRoute, replacing one with the same destination) or delete (a network) a TGW route."""
    table = topology.tgw_route_tables[f"tgw-rtb-{i}"]
    destination = route.destination if isinstance(route, TgwRoute) else route
    routes = [r for r in table.routes if r.destination != destination]
    if isinstance(route, TgwRoute):
        routes.append(route)
    return put(
        topology, "tgw_route_tables", table.id, dataclasses.replace(table, routes=tuple(routes))
    )


def attachment(topology: Topology, i: int, attachment_id: str, **changes: Any) -> Topology:
    key = (REGIONS[i - 1], attachment_id)
    return put(
        topology,
        "tgw_attachments",
        key,
        dataclasses.replace(topology.tgw_attachments[key], **changes),
    )


def peering_state(topology: Topology, i: int, j: int, state: str) -> Topology:
    """Set a peering attachment's state on both sides (moto shares one object between regions)."""
    return attachment(
        attachment(topology, i, peering_id(i, j), state=state), j, peering_id(i, j), state=state
    )


def instance_state(topology: Topology, instance_id: str, state: str) -> Topology:
    return put(
        topology,
        "instances",
        instance_id,
        dataclasses.replace(topology.instances[instance_id], state=state),
    )


def group(topology: Topology, group_id: str, **changes: Any) -> Topology:
    return put(
        topology,
        "security_groups",
        group_id,
        dataclasses.replace(topology.security_groups[group_id], **changes),
    )


def check(
    topology: Topology, src: str | None, dst: str, port: int = 443, protocol: str = "tcp"
) -> Verdict:
    return evaluate(topology, src, dst, port, protocol).verdict


def denied(
    topology: Topology, src: str | None, dst: str, port: int = 443, protocol: str = "tcp"
) -> str:
    verdict = check(topology, src, dst, port, protocol)
    assert not verdict.allowed, f"expected a drop, got: {verdict.reason}"
    return verdict.reason


BASE = mesh()


# ---------------------------------------------------------------------- unit: allowed paths


def test_the_healthy_mesh_allows_the_api_path_between_every_pair_of_regions() -> None:
    for i in (1, 2, 3):
        for j in (1, 2, 3):
            for az in ("a", "b"):
                assert check(BASE, bastion(i), nlb(j, az)).allowed, (i, j, az)
                assert check(BASE, bastion(i), endpoint(j, az)).allowed, (i, j, az)
                # The NLB node forwards to its region's endpoint ENIs, admitted by that VPC's CIDR.
                assert check(BASE, nlb(j, az), endpoint(j, "a" if az == "b" else "b")).allowed


def test_cross_region_verdict_and_trace_name_every_hop() -> None:
    result = evaluate(BASE, bastion(1), nlb(2), 443)
    assert result.verdict.allowed
    assert "peering attachment tgw-attach-p12" in result.verdict.reason
    joined = "\n".join(result.hops)
    for expected in (
        "rtb-1 (subnet subnet-1a): 10.2.0.0/16 -> tgw-1",
        "TGW route table tgw-rtb-1 (us-east-1)",
        "TGW route table tgw-rtb-2 (us-west-2): 10.2.0.0/16 -> VPC attachment tgw-attach-v2",
        "return path: TGW route table tgw-rtb-2",
        "no security groups (load balancer node)",
    ):
        assert expected in joined
    assert result.hops[-1].startswith("ALLOWED: ")


def test_same_vpc_uses_the_local_route_and_the_bastion_group_admits_ssh_from_its_vpc() -> None:
    verdict = check(BASE, bastion(1, "a"), bastion(1, "b"), 22)
    assert verdict.allowed
    assert "local route in vpc-1" in verdict.reason
    assert check(BASE, bastion(1), bastion(1), 22).allowed  # to itself: never leaves the interface


# ---------------------------------------------------------------------- unit: each routing link


def test_missing_vpc_route_drops_naming_the_table_and_subnet() -> None:
    broken = without_vpc_route(BASE, 1, cidr(2))
    assert denied(broken, bastion(1), nlb(2)) == "no route to 10.2.1.9 in rtb-1 (subnet subnet-1a)"
    assert check(broken, bastion(1), nlb(3)).allowed  # only the one destination is cut


def test_return_path_must_exist_too() -> None:
    broken = without_vpc_route(BASE, 2, cidr(1))
    assert (
        denied(broken, bastion(1), nlb(2))
        == "return path: no route to 10.1.1.8 in rtb-2 (subnet subnet-2a)"
    )
    broken = tgw_route(BASE, 1, cidr(1))  # region 1's TGW no longer delivers to its own VPC
    assert (
        denied(broken, bastion(2), nlb(1))
        == "TGW route table tgw-rtb-1 (us-east-1) has no route to 10.1.1.9"
    )
    assert denied(broken, bastion(1), nlb(2)).startswith("return path: TGW route table tgw-rtb-1")


def test_vpc_route_to_a_vanished_transit_gateway_is_a_blackhole() -> None:
    broken = vpc_routes(
        BASE,
        1,
        lambda rs: [
            dataclasses.replace(r, state="blackhole") if r.destination == cidr(2) else r for r in rs
        ],
    )
    assert denied(broken, bastion(1), nlb(2)) == (
        "route 10.2.0.0/16 in rtb-1 (subnet subnet-1a) is a blackhole: "
        "transit gateway tgw-1 no longer exists"
    )


def test_vpc_route_to_another_kind_of_gateway_does_not_reach_a_peer_vpc() -> None:
    broken = vpc_routes(
        BASE,
        1,
        lambda rs: [
            Route(r.destination, "igw", "igw-1") if r.destination == cidr(2) else r for r in rs
        ],
    )
    assert "sends 10.2.1.9 to igw-1, which does not lead to vpc-2" in denied(
        broken, bastion(1), nlb(2)
    )


def test_more_specific_vpc_route_wins_by_longest_prefix() -> None:
    broken = vpc_routes(BASE, 1, lambda rs: [*rs, Route(net("10.2.1.0/24"), "igw", "igw-1")])
    assert not check(broken, bastion(1), nlb(2, "a")).allowed
    assert check(broken, bastion(1), nlb(2, "b")).allowed


def test_vpc_attachment_must_exist_and_be_available() -> None:
    gone = put(BASE, "tgw_attachments", ("us-east-1", "tgw-attach-v1"), None)
    assert (
        denied(gone, bastion(1), nlb(2))
        == "vpc-1 has no attachment to transit gateway tgw-1 (us-east-1)"
    )
    pending = attachment(BASE, 1, "tgw-attach-v1", state="pending")
    assert (
        denied(pending, bastion(1), nlb(2))
        == "VPC attachment tgw-attach-v1 of vpc-1 to tgw-1 is pending"
    )
    # The destination side: TGW 2 delivers only over an available attachment.
    deleting = attachment(BASE, 2, "tgw-attach-v2", state="deleting")
    assert "VPC attachment tgw-attach-v2 of vpc-2 (us-west-2) is deleting" in denied(
        deleting, bastion(1), nlb(2)
    )


def test_attachment_without_association_drops() -> None:
    broken = attachment(BASE, 1, "tgw-attach-v1", route_table_id=None)
    assert denied(broken, bastion(1), nlb(2)) == (
        "attachment tgw-attach-v1 has no route table association on tgw-1 (us-east-1)"
    )
    # The peering side of the peer region is where the packet arrives: association needed there.
    broken = attachment(BASE, 2, peering_id(1, 2), route_table_id=None)
    assert denied(broken, bastion(1), nlb(2)) == (
        "attachment tgw-attach-p12 has no route table association on tgw-2 (us-west-2)"
    )


def test_tgw_route_missing_blackholed_or_more_specific_blackhole() -> None:
    missing = tgw_route(BASE, 1, cidr(2))
    assert (
        denied(missing, bastion(1), nlb(2))
        == "TGW route table tgw-rtb-1 (us-east-1) has no route to 10.2.1.9"
    )
    replaced = tgw_route(BASE, 1, TgwRoute(cidr(2), None, "blackhole"))
    assert denied(replaced, bastion(1), nlb(2)) == (
        "TGW route table tgw-rtb-1 (us-east-1) has a blackhole route for 10.2.0.0/16"
    )
    specific = tgw_route(BASE, 1, TgwRoute(net("10.2.1.0/24"), None, "blackhole"))
    assert "blackhole route for 10.2.1.0/24" in denied(specific, bastion(1), nlb(2, "a"))
    assert check(specific, bastion(1), nlb(2, "b")).allowed
    # On the peer side too: the peer gateway must route the destination onward.
    peer_side = tgw_route(BASE, 2, TgwRoute(cidr(2), None, "blackhole"))
    assert "TGW route table tgw-rtb-2 (us-west-2) has a blackhole route" in denied(
        peer_side, bastion(1), nlb(2)
    )


def test_tgw_route_to_a_missing_or_wrong_attachment_drops() -> None:
    dangling = tgw_route(BASE, 1, TgwRoute(cidr(2), "tgw-attach-gone", "active"))
    assert (
        "sends 10.2.0.0/16 to attachment tgw-attach-gone, which does not exist in us-east-1"
        in denied(dangling, bastion(1), nlb(2))
    )
    wrong_vpc = tgw_route(BASE, 2, TgwRoute(cidr(2), "tgw-attach-p12", "active"))  # bounced back
    assert "arrived over peering attachment tgw-attach-p12" in denied(wrong_vpc, bastion(1), nlb(2))
    foreign = tgw_route(BASE, 1, TgwRoute(cidr(2), "tgw-attach-v1", "active"))
    assert (
        "sends 10.2.1.9 to VPC attachment tgw-attach-v1 of vpc-1, but 10.2.1.9 is in vpc-2"
        in denied(foreign, bastion(1), nlb(2))
    )


@pytest.mark.parametrize("state", ["pendingAcceptance", "rejected", "deleting", "failed"])
def test_peering_must_be_available(state: str) -> None:
    broken = peering_state(BASE, 1, 2, state)
    assert denied(broken, bastion(1), nlb(2)) == f"peering attachment tgw-attach-p12 is {state}"
    assert check(broken, bastion(1), nlb(3)).allowed


def test_peering_not_visible_in_peer_region_drops() -> None:
    broken = put(BASE, "tgw_attachments", ("us-west-2", peering_id(1, 2)), None)
    assert (
        "peering attachment tgw-attach-p12 is not visible in its peer region us-west-2"
        in denied(broken, bastion(1), nlb(2))
    )


def test_multi_hop_through_a_third_region_is_not_transitive() -> None:
    # Region 1 sends region 3's CIDR to region 2, which would forward it over its own peering.
    detour = tgw_route(BASE, 1, TgwRoute(cidr(3), peering_id(1, 2), "active"))
    reason = denied(detour, bastion(1), nlb(3))
    assert reason == (
        "TGW route table tgw-rtb-2 (us-west-2) sends 10.3.0.0/16 on over peering attachment "
        "tgw-attach-p23, but the packet arrived over peering attachment tgw-attach-p12: "
        "transit gateway peering is not transitive"
    )


# ---------------------------------------------------------------------- unit: security groups


def test_security_group_denies_ssh_from_a_peer_region() -> None:
    assert denied(BASE, bastion(1), bastion(2), 22) == (
        "security group sg-bastion2 of 10.2.1.8 does not admit 10.1.1.8 on tcp/22"
    )


def test_revoking_one_regions_cidr_from_the_endpoint_group_cuts_only_that_region() -> None:
    rules = tuple(r for r in BASE.security_groups["sg-endpoint2"].ingress if cidr(1) not in r.cidrs)
    revoked = group(BASE, "sg-endpoint2", ingress=rules)
    assert (
        denied(revoked, bastion(1), endpoint(2))
        == "security group sg-endpoint2 of 10.2.1.4 does not admit 10.1.1.8 on tcp/443"
    )
    assert check(revoked, bastion(3), endpoint(2)).allowed
    assert check(revoked, nlb(2), endpoint(2)).allowed


def test_egress_rules_of_the_source_apply() -> None:
    closed = group(BASE, "sg-bastion1", egress=(all_tcp(22, ANY),))
    assert (
        denied(closed, bastion(1), nlb(2))
        == "security group sg-bastion1 of 10.1.1.8 does not allow egress to 10.2.1.9 on tcp/443"
    )
    assert check(closed, bastion(1), bastion(1, "b"), 22).allowed


def test_rule_matching_protocols_ports_and_references() -> None:
    def with_ingress(*rules: Rule) -> Topology:
        return group(BASE, "sg-endpoint1", ingress=rules)

    assert check(
        with_ingress(Rule("6", 443, 443, (ANY,), ())), bastion(1), endpoint(1)
    ).allowed  # protocol number
    assert check(with_ingress(Rule("tcp", 400, 500, (ANY,), ())), bastion(1), endpoint(1)).allowed
    assert not check(
        with_ingress(Rule("tcp", 444, 500, (ANY,), ())), bastion(1), endpoint(1)
    ).allowed
    assert not check(
        with_ingress(Rule("udp", 443, 443, (ANY,), ())), bastion(1), endpoint(1)
    ).allowed
    assert check(
        with_ingress(Rule("-1", None, None, (ANY,), ())), bastion(1), endpoint(1), 8080, "udp"
    ).allowed
    assert check(
        with_ingress(Rule("icmp", 8, -1, (ANY,), ())), bastion(1), endpoint(1), 8, "icmp"
    ).allowed
    assert not check(
        with_ingress(Rule("icmp", 0, -1, (ANY,), ())), bastion(1), endpoint(1), 8, "icmp"
    ).allowed
    # A reference to the source's group admits it inside one VPC; cross-VPC references do not.
    by_group = with_ingress(Rule("tcp", 443, 443, (), ("sg-bastion1",)))
    assert check(by_group, bastion(1), endpoint(1)).allowed
    foreign = group(
        by_group, "sg-endpoint1", ingress=(Rule("tcp", 443, 443, (), ("sg-bastion2",)),)
    )
    assert not check(foreign, bastion(2), endpoint(1)).allowed


def test_interface_without_groups_admits_nothing_unless_it_is_a_load_balancer_node() -> None:
    bare = put(
        BASE,
        "interfaces",
        endpoint(1),
        dataclasses.replace(BASE.interfaces[endpoint(1)], security_group_ids=frozenset()),
    )
    assert (
        denied(bare, bastion(1), endpoint(1))
        == "10.1.1.4 has no security group, so it does not admit 10.1.1.8 on tcp/443"
    )
    assert check(BASE, bastion(2), nlb(1), 12345).allowed  # NLB without groups passes any port


# ---------------------------------------------------------------------- unit: endpoints


@pytest.mark.parametrize("state", ["stopped", "stopping", "pending", "terminated"])
def test_instances_that_are_not_running_neither_send_nor_answer(state: str) -> None:
    stopped = instance_state(BASE, "i-2a", state)
    assert (
        denied(stopped, bastion(1, "a"), bastion(2, "a"), 22)
        == f"destination instance i-2a (10.2.1.8) is {state}: it answers nothing"
    )
    assert (
        denied(stopped, bastion(2, "a"), nlb(1))
        == f"source instance i-2a (10.2.1.8) is {state}: it sends nothing"
    )
    assert check(stopped, bastion(2, "b"), nlb(1)).allowed


def test_load_balancer_nodes_answer_only_while_active() -> None:
    arn = BASE.interfaces[nlb(2)].owner_id
    provisioning = put(
        BASE,
        "load_balancers",
        arn,
        dataclasses.replace(BASE.load_balancers[arn], state="provisioning"),
    )
    assert "which is provisioning" in denied(provisioning, bastion(1), nlb(2))


def test_addresses_no_interface_owns_are_dropped() -> None:
    assert (
        denied(BASE, bastion(1), "10.2.1.77")
        == "no network interface has address 10.2.1.77 (inside subnet subnet-2a of vpc-2)"
    )
    assert (
        denied(BASE, "10.9.0.5", nlb(1))
        == "no network interface has address 10.9.0.5 (outside every lab VPC)"
    )


def test_route_53_resolver_answers_dns_from_its_own_vpc_only() -> None:
    assert check(BASE, bastion(1), "10.1.0.2", 53, "udp").allowed
    assert check(BASE, bastion(1), "10.1.0.2", 53, "tcp").allowed
    assert check(BASE, None, "10.2.0.2", 53, "udp").allowed
    assert "answers only queries from inside vpc-2; 10.1.1.8 is in vpc-1" in denied(
        BASE, bastion(1), "10.2.0.2", 53, "udp"
    )
    assert "answers only DNS (tcp/udp 53), not tcp/443" in denied(BASE, bastion(1), "10.1.0.2", 443)
    # Security groups do not filter Resolver traffic: even a bastion with no egress reaches it.
    closed = group(BASE, "sg-bastion1", egress=())
    assert check(closed, bastion(1), "10.1.0.2", 53, "udp").allowed


def test_harness_host_is_an_operator_inside_the_destination_vpc() -> None:
    assert check(BASE, None, bastion(2), 22).allowed  # 22 from the VPC CIDR: SSH like over SSM
    assert check(BASE, None, endpoint(3), 443).allowed
    assert check(BASE, None, nlb(1), 443).allowed
    assert denied(BASE, None, bastion(2), 443) == (
        "security group sg-bastion2 of 10.2.1.8 does not admit the harness host "
        "(any address of vpc-2 10.2.0.0/16) on tcp/443"
    )
    narrow = group(BASE, "sg-bastion2", ingress=(all_tcp(22, net("10.2.1.0/24")),))
    assert not check(narrow, None, bastion(2), 22).allowed  # the rule must cover the whole VPC
    by_ref = group(BASE, "sg-bastion2", ingress=(Rule("tcp", 22, 22, (), ("sg-bastion2",)),))
    assert not check(by_ref, None, bastion(2), 22).allowed
    stopped = instance_state(BASE, "i-2a", "stopped")
    assert "is stopped" in denied(stopped, None, bastion(2), 22)
    # Routing does not apply to it: the VPC is cut off from every TGW, the harness still gets in.
    isolated = attachment(BASE, 2, "tgw-attach-v2", route_table_id=None)
    assert check(isolated, None, endpoint(2), 443).allowed


@pytest.mark.parametrize(
    ("src", "dst", "port", "protocol", "message"),
    [
        ("10.1.1.8", "10.2.1.9", 443, "sctp", "protocol must be one of tcp, udp, icmp, not 'sctp'"),
        ("10.1.1.8", "10.2.1.9", 0, "tcp", "tcp port must be an integer in 1..65535, not 0"),
        (
            "10.1.1.8",
            "10.2.1.9",
            70000,
            "udp",
            "udp port must be an integer in 1..65535, not 70000",
        ),
        ("10.1.1.8", "10.2.1.9", 300, "icmp", "ICMP type must be an integer in 0..255, not 300"),
        ("10.1.1.8", "10.2.1.9", True, "tcp", "tcp port must be an integer in 1..65535, not True"),
        (
            "10.1.1.8",
            "api.example.com",
            443,
            "tcp",
            "destination must be an IPv4 VPC address, not 'api.example.com'",
        ),
        ("10.1.1.x", "10.2.1.9", 443, "tcp", "source must be an IPv4 VPC address, not '10.1.1.x'"),
    ],
)
def test_bad_input_is_a_one_line_error_naming_the_value(
    src: str, dst: str, port: Any, protocol: str, message: str
) -> None:
    with pytest.raises(LabError) as raised:
        evaluate(BASE, src, dst, port, protocol)
    assert str(raised.value) == message


def test_protocol_names_are_case_insensitive_and_numbers_are_accepted() -> None:
    assert check(BASE, bastion(1), nlb(2), 443, "TCP") == check(BASE, bastion(1), nlb(2), 443, "6")


# ---------------------------------------------------------------------- unit: the component


class FakeLab:
    """Just what Network needs from a Lab: topology() and the network attribute."""

    def __init__(self, topology: Topology) -> None:
        self.current = topology
        self.network: Any = None

    def topology(self) -> Topology:
        return self.current


def test_component_registers_first_and_sets_lab_network() -> None:
    assert lab_module.COMPONENTS[0] == "harness.lab.network:Network"
    fake = FakeLab(BASE)
    network = Network(fake)  # type: ignore[arg-type]
    assert network.name == "network"
    network.start()
    assert fake.network is network
    network.stop()
    assert fake.network is None


def test_check_is_memoised_per_version_and_follows_a_new_topology(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.lab import network as network_module

    calls: list[tuple[Any, ...]] = []
    real = network_module.evaluate

    def counting(*args: Any) -> Any:
        calls.append(args[1:])
        return real(*args)

    monkeypatch.setattr(network_module, "evaluate", counting)
    fake = FakeLab(BASE)
    network = Network(fake)  # type: ignore[arg-type]
    assert network.check(bastion(1), nlb(2), 443).allowed
    assert network.check(bastion(1), nlb(2), 443).allowed
    assert len(calls) == 1, "the second identical check is answered from the memo"
    fake.current = tgw_route(BASE, 1, TgwRoute(cidr(2), None, "blackhole"))
    assert not network.check(bastion(1), nlb(2), 443).allowed
    assert len(calls) == 2
    network.update(fake.current)  # the reconciler's call keeps the current memo
    assert not network.check(bastion(1), nlb(2), 443).allowed
    assert len(calls) == 2
    trace = network.trace(bastion(1), nlb(2), 443)
    assert (
        trace[-1]
        == "DENIED: TGW route table tgw-rtb-1 (us-east-1) has a blackhole route for 10.2.0.0/16"
    )


# ---------------------------------------------------------------------- properties

PAIRS = [
    (a, b)
    for a in (bastion(1), bastion(2, "b"), nlb(3), endpoint(2))
    for b in (nlb(1), bastion(2), nlb(3, "b"), endpoint(1))
]
PEERS = [(1, 2), (1, 3), (2, 3)]


@st.composite
def breakage(draw: st.DrawFn) -> Callable[[Topology], Topology]:
    """One random change to the routing of the mesh, as the EC2 API could make it."""
    kind = draw(
        st.sampled_from(
            ["vpc_route", "tgw_route", "tgw_blackhole", "peering", "association", "stop", "detour"]
        )
    )
    i = draw(st.integers(1, 3))
    j = draw(st.sampled_from([k for k in (1, 2, 3) if k != i]))
    if kind == "vpc_route":
        return lambda t: without_vpc_route(t, i, cidr(j))
    if kind == "tgw_route":
        gone = cidr(draw(st.integers(1, 3)))
        return lambda t: tgw_route(t, i, gone)
    if kind == "tgw_blackhole":
        third = draw(st.integers(1, 2))
        return lambda t: tgw_route(t, i, TgwRoute(net(f"10.{j}.{third}.0/24"), None, "blackhole"))
    if kind == "peering":
        low, high = sorted((i, j))
        state = draw(st.sampled_from(["pendingAcceptance", "deleted", "rejected"]))
        return lambda t: peering_state(t, low, high, state)
    if kind == "association":
        target = draw(st.sampled_from([f"tgw-attach-v{i}", peering_id(i, j)]))
        return lambda t: attachment(t, i, target, route_table_id=None)
    if kind == "stop":
        instance = f"i-{i}{draw(st.sampled_from('ab'))}"
        return lambda t: instance_state(t, instance, "stopped")
    k = 6 - i - j  # detour: send region k's CIDR from region i through region j
    return lambda t: tgw_route(t, i, TgwRoute(cidr(k), peering_id(i, j), "active"))


def broken_mesh(base: Topology, changes: list[Callable[[Topology], Topology]]) -> Topology:
    for change in changes:
        base = change(base)
    return base


@settings(max_examples=120, deadline=None)
@given(
    changes=st.lists(breakage(), max_size=4),
    pair=st.sampled_from(PAIRS),
    region=st.integers(1, 3),
    prefix=st.integers(16, 32),
)
def test_a_blackhole_for_the_destination_never_turns_a_drop_into_a_connection(
    changes: list[Callable[[Topology], Topology]], pair: tuple[str, str], region: int, prefix: int
) -> None:
    src, dst = pair
    topology = broken_mesh(BASE, changes)
    before = check(topology, src, dst)
    blackholed = tgw_route(
        topology, region, TgwRoute(net(f"{dst}/{prefix}", strict=False), None, "blackhole")
    )
    after = check(blackholed, src, dst)
    assert before.allowed or not after.allowed, (before, after)
    src_region, dst_region = int(src.split(".")[1]), int(dst.split(".")[1])
    if before.allowed and src_region != dst_region and region == src_region:
        # The table associated with the source's VPC attachment is always on the forward path.
        assert not after.allowed, after
        assert "blackhole route for" in after.reason, after


@settings(max_examples=120, deadline=None)
@given(changes=st.lists(breakage(), max_size=5))
def test_with_open_security_groups_reachability_is_symmetric(
    changes: list[Callable[[Topology], Topology]],
) -> None:
    topology = broken_mesh(mesh(open_groups=True), changes)
    addresses = [bastion(1), bastion(1, "b"), bastion(2), nlb(2, "b"), bastion(3), endpoint(3, "b")]
    for a in addresses:
        for b in addresses:
            forward, backward = check(topology, a, b), check(topology, b, a)
            assert forward.allowed == backward.allowed, (a, b, forward, backward)


@settings(max_examples=60, deadline=None)
@given(
    changes=st.lists(breakage(), max_size=3),
    pair=st.sampled_from(PAIRS),
    port=st.sampled_from([22, 443, 8080]),
)
def test_adding_an_ingress_rule_never_turns_a_connection_into_a_drop(
    changes: list[Callable[[Topology], Topology]], pair: tuple[str, str], port: int
) -> None:
    src, dst = pair
    topology = broken_mesh(BASE, changes)
    before = check(topology, src, dst, port)
    after = topology
    for group_id in topology.interfaces[dst].security_group_ids:
        existing = topology.security_groups[group_id]
        after = group(after, group_id, ingress=(*existing.ingress, all_tcp(port, net(f"{src}/32"))))
    now = check(after, src, dst, port)
    assert now.allowed or not before.allowed
    if not before.allowed and not now.allowed:
        assert "security group" not in now.reason or "egress" in now.reason


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.lists(breakage(), max_size=2), st.sampled_from(PAIRS)), min_size=1, max_size=6
    )
)
def test_memoised_check_always_agrees_with_a_fresh_evaluation(
    steps: list[tuple[list[Callable[[Topology], Topology]], tuple[str, str]]],
) -> None:
    fake = FakeLab(BASE)
    network = Network(fake)  # type: ignore[arg-type]
    for changes, (src, dst) in steps:
        fake.current = broken_mesh(fake.current, changes)
        for _ in range(2):
            assert network.check(src, dst, 443) == check(fake.current, src, dst)


# ---------------------------------------------------------------------- integration: the live lab


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(REGIONS) as running:
        yield running


@pytest.fixture(scope="module")
def sessions(lab: Lab) -> SessionFactory:
    return lab_sessions(lab.info)


@contextlib.contextmanager
def deployed(sessions: SessionFactory, count: int) -> Iterator[Deployment]:
    """Deploy the first ``count`` regions' stack set; tear it down afterwards."""
    deployer = StackSetDeployer(
        load_config({"regions": ",".join(REGIONS[:count])}, environ={}), sessions
    )
    try:
        yield deployer.deploy()
    finally:
        deployer.teardown()


class Live:
    """Addresses and ids of one deployed stack set, read back from the lab's topology."""

    def __init__(self, lab: Lab, deployment: Deployment) -> None:
        self.lab = lab
        self.deployment = deployment
        topology = lab.topology()
        self.bastions = {
            r.name: [topology.instances[i].address for i in r.bastion_ids]
            for r in deployment.regions
        }
        self.nlb_nodes = {
            r.name: sorted(topology.load_balancers[r.load_balancer_arn].nodes.values())
            for r in deployment.regions
        }
        self.endpoints = {r.name: list(r.endpoint_ips) for r in deployment.regions}

    def check(self, src: str | None, dst: str, port: int = 443, protocol: str = "tcp") -> Verdict:
        return self.lab.network.check(src, dst, port, protocol)

    def allowed(self, src: str | None, dst: str, port: int = 443) -> bool:
        return self.check(src, dst, port).allowed

    def reason(self, src: str | None, dst: str, port: int = 443) -> str:
        verdict = self.check(src, dst, port)
        assert not verdict.allowed, f"expected a drop, got: {verdict.reason}"
        return verdict.reason


EAST, WEST, THIRD = REGIONS


# Class scope: the 2-region set is torn down before the 3-region one (same CIDR plan) is deployed.


@pytest.fixture(scope="class")
def live(request: pytest.FixtureRequest, lab: Lab, sessions: SessionFactory) -> Iterator[Live]:
    """The stack set of the class's ``REGION_COUNT`` regions, deployed once for the class."""
    with deployed(sessions, request.cls.REGION_COUNT) as deployment:
        yield Live(lab, deployment)


class TestTwoRegions:
    REGION_COUNT = 2

    def test_bastions_reach_their_own_and_the_peer_nlb_and_endpoints_on_443(
        self, live: Live
    ) -> None:
        for region in (EAST, WEST):
            for src in live.bastions[region]:
                for target in (EAST, WEST):
                    for dst in live.nlb_nodes[target] + live.endpoints[target]:
                        verdict = live.check(src, dst)
                        assert verdict.allowed, verdict.reason
        peering = live.deployment.region(EAST).peering_attachments[WEST]
        trace = live.lab.network.trace(live.bastions[EAST][0], live.nlb_nodes[WEST][0], 443)
        assert any(f"peering attachment {peering}" in hop for hop in trace), trace

    def test_ssh_to_a_peer_regions_bastion_is_denied_by_its_security_group(
        self, live: Live
    ) -> None:
        src, dst = live.bastions[EAST][0], live.bastions[WEST][0]
        groups = sorted(live.lab.topology().interfaces[dst].security_group_ids)
        reason = live.reason(src, dst, 22)
        assert reason.startswith("security group"), reason
        assert all(g in reason for g in groups), reason
        assert reason.endswith(f"not admit {src} on tcp/22")

    def test_bastions_carry_the_bastion_group_so_ssh_from_their_vpc_works(self, live: Live) -> None:
        a, b = live.bastions[EAST]
        assert live.allowed(a, b, 22), live.reason(a, b, 22)
        assert live.allowed(None, a, 22)

    def test_blackholing_the_peer_route_drops_and_restoring_it_reconnects(
        self, live: Live, sessions: SessionFactory
    ) -> None:
        east, west = live.deployment.region(EAST), live.deployment.region(WEST)
        ec2 = sessions.client("ec2", EAST)
        src, dst = live.bastions[EAST][0], live.nlb_nodes[WEST][0]
        assert live.allowed(src, dst)
        ec2.replace_transit_gateway_route(
            TransitGatewayRouteTableId=east.transit_gateway_route_table_id,
            DestinationCidrBlock=west.vpc_cidr,
            Blackhole=True,
        )
        try:
            assert live.reason(src, dst) == (
                f"TGW route table {east.transit_gateway_route_table_id} ({EAST}) "
                f"has a blackhole route for {west.vpc_cidr}"
            )
            assert live.reason(live.bastions[WEST][0], live.nlb_nodes[EAST][0]).startswith(
                "return path: "
            )
        finally:
            ec2.replace_transit_gateway_route(
                TransitGatewayRouteTableId=east.transit_gateway_route_table_id,
                DestinationCidrBlock=west.vpc_cidr,
                TransitGatewayAttachmentId=east.peering_attachments[WEST],
            )
        assert live.allowed(src, dst)

    def test_a_more_specific_blackhole_drops_only_its_subnet(
        self, live: Live, sessions: SessionFactory
    ) -> None:
        east = live.deployment.region(EAST)
        ec2 = sessions.client("ec2", EAST)
        src = live.bastions[EAST][0]
        node_a, node_b = live.nlb_nodes[WEST]
        subnet = str(ipaddress.IPv4Network(f"{node_a}/24", strict=False))
        ec2.create_transit_gateway_route(
            TransitGatewayRouteTableId=east.transit_gateway_route_table_id,
            DestinationCidrBlock=subnet,
            Blackhole=True,
        )
        try:
            assert f"has a blackhole route for {subnet}" in live.reason(src, node_a)
            assert live.allowed(src, node_b)
        finally:
            ec2.delete_transit_gateway_route(
                TransitGatewayRouteTableId=east.transit_gateway_route_table_id,
                DestinationCidrBlock=subnet,
            )
        assert live.allowed(src, node_a)

    def test_deleting_the_vpc_route_to_the_transit_gateway_drops(
        self, live: Live, sessions: SessionFactory
    ) -> None:
        east, west = live.deployment.region(EAST), live.deployment.region(WEST)
        ec2 = sessions.client("ec2", EAST)
        src, dst = live.bastions[EAST][0], live.endpoints[WEST][0]
        topology = live.lab.topology()
        subnet = topology.interfaces[src].subnet_id
        ec2.delete_route(RouteTableId=east.route_table_id, DestinationCidrBlock=west.vpc_cidr)
        try:
            assert (
                live.reason(src, dst)
                == f"no route to {dst} in {east.route_table_id} (subnet {subnet})"
            )
            assert live.allowed(src, live.endpoints[EAST][0])  # the local route is untouched
        finally:
            ec2.create_route(
                RouteTableId=east.route_table_id,
                DestinationCidrBlock=west.vpc_cidr,
                TransitGatewayId=east.transit_gateway_id,
            )
        assert live.allowed(src, dst)

    def test_disassociating_the_peering_attachment_drops(
        self, live: Live, sessions: SessionFactory
    ) -> None:
        west = live.deployment.region(WEST)
        ec2 = sessions.client("ec2", WEST)
        peering = west.peering_attachments[EAST]
        src, dst = live.bastions[EAST][0], live.nlb_nodes[WEST][0]
        ec2.disassociate_transit_gateway_route_table(
            TransitGatewayRouteTableId=west.transit_gateway_route_table_id,
            TransitGatewayAttachmentId=peering,
        )
        try:
            assert live.reason(src, dst) == (
                f"attachment {peering} has no route table association on "
                f"{west.transit_gateway_id} ({WEST})"
            )
        finally:
            ec2.associate_transit_gateway_route_table(
                TransitGatewayRouteTableId=west.transit_gateway_route_table_id,
                TransitGatewayAttachmentId=peering,
            )
        assert live.allowed(src, dst)

    def test_revoking_endpoint_ingress_for_a_regions_cidr_drops_that_region(
        self, live: Live, sessions: SessionFactory
    ) -> None:
        east, west = live.deployment.region(EAST), live.deployment.region(WEST)
        ec2 = sessions.client("ec2", WEST)
        permission = {
            "IpProtocol": "tcp",
            "FromPort": 443,
            "ToPort": 443,
            "IpRanges": [{"CidrIp": east.vpc_cidr, "Description": "HTTPS from region 1"}],
        }
        src, dst = live.bastions[EAST][0], live.endpoints[WEST][0]
        assert live.allowed(None, dst)
        ec2.revoke_security_group_ingress(
            GroupId=west.endpoint_security_group_id, IpPermissions=[permission]
        )
        try:
            assert live.reason(src, dst) == (
                f"security group {west.endpoint_security_group_id} of {dst} "
                f"does not admit {src} on tcp/443"
            )
            assert live.allowed(live.bastions[WEST][0], dst)
            assert live.allowed(live.nlb_nodes[WEST][0], dst)  # the NLB path inside the region
            assert live.allowed(None, dst)  # the harness enters the west VPC, still admitted
        finally:
            ec2.authorize_security_group_ingress(
                GroupId=west.endpoint_security_group_id, IpPermissions=[permission]
            )
        assert live.allowed(src, dst)

    def test_a_stopped_bastion_neither_sends_nor_answers(
        self, live: Live, sessions: SessionFactory
    ) -> None:
        east = live.deployment.region(EAST)
        ec2 = sessions.client("ec2", EAST)
        instance = east.bastion_ids[1]
        stopped, other = live.bastions[EAST][1], live.bastions[EAST][0]
        dst = live.nlb_nodes[WEST][0]
        ec2.stop_instances(InstanceIds=[instance])
        try:
            assert (
                live.reason(stopped, dst)
                == f"source instance {instance} ({stopped}) is stopped: it sends nothing"
            )
            assert live.reason(other, stopped, 22) == (
                f"destination instance {instance} ({stopped}) is stopped: it answers nothing"
            )
            assert live.allowed(other, dst)
        finally:
            ec2.start_instances(InstanceIds=[instance])
        assert live.allowed(stopped, dst)

    def test_each_vpc_reaches_only_its_own_resolver(self, live: Live) -> None:
        east, west = live.deployment.region(EAST), live.deployment.region(WEST)
        own = str(ipaddress.IPv4Network(east.vpc_cidr).network_address + 2)
        other = str(ipaddress.IPv4Network(west.vpc_cidr).network_address + 2)
        assert live.check(live.bastions[EAST][0], own, 53, "udp").allowed
        assert not live.check(live.bastions[EAST][0], other, 53, "udp").allowed


class TestThreeRegions:
    REGION_COUNT = 3

    def test_every_pair_of_regions_reaches_the_api_path_and_not_ssh(self, live: Live) -> None:
        for a in REGIONS:
            for b in REGIONS:
                for src in live.bastions[a]:
                    for dst in live.nlb_nodes[b] + live.endpoints[b]:
                        verdict = live.check(src, dst)
                        assert verdict.allowed, f"{a} -> {b}: {verdict.reason}"
                    if a != b:
                        assert not live.check(src, live.bastions[b][0], 22).allowed

    def test_a_detour_through_a_third_region_is_not_transitive(
        self, live: Live, sessions: SessionFactory
    ) -> None:
        east, third = live.deployment.region(EAST), live.deployment.region(THIRD)
        ec2 = sessions.client("ec2", EAST)
        via_west = east.peering_attachments[WEST]
        src, dst = live.bastions[EAST][0], live.nlb_nodes[THIRD][0]
        ec2.replace_transit_gateway_route(
            TransitGatewayRouteTableId=east.transit_gateway_route_table_id,
            DestinationCidrBlock=third.vpc_cidr,
            TransitGatewayAttachmentId=via_west,
        )
        try:
            reason = live.reason(src, dst)
            assert reason.endswith("transit gateway peering is not transitive"), reason
            assert f"arrived over peering attachment {via_west}" in reason
        finally:
            ec2.replace_transit_gateway_route(
                TransitGatewayRouteTableId=east.transit_gateway_route_table_id,
                DestinationCidrBlock=third.vpc_cidr,
                TransitGatewayAttachmentId=east.peering_attachments[THIRD],
            )
        assert live.allowed(src, dst)
