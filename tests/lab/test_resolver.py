"""The lab's Route 53 Resolver per VPC.

Three layers, as the module is built:
- pure policy and zone rules (``choose``, ``answer_question``) on hand-made topologies with a
  fake health oracle, including a property test against an independent reference of the rules;
- the cache on a manual lab clock (a stand-in lab object, real sockets);
- real DNS over UDP and TCP (dnspython) against the resolvers of a deployed stack set, for 2
  and 3 regions, with extra zones and records created through the Route 53 API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import math
import random
import socket
import struct
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.aws.session import SessionFactory
from harness.aws.stacks import Deployment, StackSetDeployer
from harness.config import load_config
from harness.errors import LabError
from harness.lab.addresses import PortMap, to_loopback
from harness.lab.lab import Lab
from harness.lab.latency import LatencyMatrix
from harness.lab.resolver import (
    MAX_MULTIVALUE,
    Answer,
    Resolvers,
    UnsupportedPolicy,
    answer_question,
    choose,
    routing_policy,
)
from harness.lab.topology import (
    HostedZone,
    LoadBalancer,
    RecordSet,
    Subnet,
    Topology,
    Vpc,
    VpcEndpoint,
)
from harness.targets import lab_sessions

LATENCY = LatencyMatrix.default()
SOA = "ns-2048.awsdns-64.com. hostmaster.example.com. 1 7200 900 1209600 86400"
ZONE = "internal.example.com"
API = f"api.{ZONE}"

# ---------------------------------------------------------------------- hand-made topologies

EAST = Vpc("vpc-east", "us-east-1", ipaddress.IPv4Network("10.1.0.0/16"), True)
WEST = Vpc("vpc-west", "us-west-2", ipaddress.IPv4Network("10.2.0.0/16"), True)
EU = Vpc("vpc-eu", "eu-west-1", ipaddress.IPv4Network("10.3.0.0/16"), True)
VPCS = (EAST, WEST, EU)
INDEX = {EAST.id: 1, WEST.id: 2, EU.id: 3}


def rr(name: str, rtype: str = "A", *values: str, ttl: int | None = 60, **kw: Any) -> RecordSet:
    """Return a record set as the topology carries it (simple unless policy fields are given)."""
    fields: dict[str, Any] = {
        "set_identifier": None,
        "weight": None,
        "region": None,
        "failover": None,
        "multi_value": False,
        "health_check_id": None,
        "alias_dns_name": None,
        "alias_evaluate_target_health": False,
        "geo_location": None,
    }
    fields.update(kw)
    return RecordSet(name=name, type=rtype, ttl=ttl, values=tuple(values), **fields)


def zone(
    zone_id: str,
    name: str,
    vpcs: Iterable[Vpc],
    *records: RecordSet,
    private: bool = True,
    soa: str = SOA,
    soa_ttl: int = 900,
) -> HostedZone:
    apex = (rr(name, "SOA", soa, ttl=soa_ttl), rr(name, "NS", "ns-2048.awsdns-64.com", ttl=172800))
    return HostedZone(
        zone_id, name, private, tuple((v.id, v.region) for v in vpcs), apex + tuple(records)
    )


def nlb(vpc: Vpc) -> LoadBalancer:
    n = INDEX[vpc.id]
    return LoadBalancer(
        arn=f"arn:aws:elasticloadbalancing:{vpc.region}:123456789012:loadbalancer/net/api-{n}/{n}",
        name=f"api-{n}",
        region=vpc.region,
        type="network",
        scheme="internal",
        vpc_id=vpc.id,
        dns_name=f"api-{n}-abc{n}.elb.{vpc.region}.amazonaws.com",
        canonical_hosted_zone_id="Z26RNL4JYFTOTI",
        state="active",
        nodes={f"subnet-{n}a": f"10.{n}.1.9", f"subnet-{n}b": f"10.{n}.2.9"},
        listeners=(),
    )


LBS = {vpc.id: nlb(vpc) for vpc in VPCS}


def nodes(vpc: Vpc) -> list[str]:
    return sorted(LBS[vpc.id].nodes.values())


def latency_records(name: str = API, ttl: int | None = None) -> tuple[RecordSet, ...]:
    """The stack's records: one latency alias per region, with a health check, ETH on."""
    return tuple(
        rr(
            name,
            "A",
            ttl=ttl,
            set_identifier=vpc.region,
            region=vpc.region,
            health_check_id=f"hc-{vpc.region}",
            alias_dns_name=LBS[vpc.id].dns_name.lower(),
            alias_evaluate_target_health=True,
        )
        for vpc in VPCS
    )


def subnets() -> dict[str, Subnet]:
    found = {}
    for vpc in VPCS:
        n = INDEX[vpc.id]
        for letter, third in (("a", 1), ("b", 2)):
            subnet_id = f"subnet-{n}{letter}"
            found[subnet_id] = Subnet(
                subnet_id,
                vpc.id,
                vpc.region,
                ipaddress.IPv4Network(f"10.{n}.{third}.0/24"),
                f"{vpc.region}{letter}",
                "rtb",
            )
    return found


def endpoints() -> dict[str, VpcEndpoint]:
    def endpoint(vpc: Vpc, endpoint_id: str, service: str, private_dns: bool, host: int):
        n = INDEX[vpc.id]
        return VpcEndpoint(
            id=endpoint_id,
            region=vpc.region,
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{vpc.region}.{service}",
            type="Interface",
            private_dns_enabled=private_dns,
            addresses={f"subnet-{n}a": f"10.{n}.1.{host}", f"subnet-{n}b": f"10.{n}.2.{host}"},
            security_group_ids=(),
        )

    found = [
        endpoint(EAST, "vpce-0e1", "execute-api", True, 4),
        endpoint(EAST, "vpce-0e2", "ssm", True, 5),
        endpoint(WEST, "vpce-0w1", "execute-api", False, 4),  # private DNS off
    ]
    return {e.id: e for e in found}


def topology(*zones: HostedZone, version: int = 1) -> Topology:
    return Topology(
        version=version,
        account_id="123456789012",
        vpcs={v.id: v for v in VPCS},
        subnets=subnets(),
        load_balancers={lb.arn: lb for lb in LBS.values()},
        endpoints=endpoints(),
        hosted_zones={z.id: z for z in zones},
    )


@dataclass
class FakeHealth:
    """Test double of ``lab.health``: health checks and load balancers named unhealthy are.

    ``nodes`` maps a load balancer to its node addresses (all healthy unless ``partial_nodes``
    says which nodes are in AZs with a healthy target).
    """

    unhealthy_checks: set[str] = field(default_factory=set)
    unhealthy_lbs: set[str] = field(default_factory=set)
    partial_nodes: dict[str, list[str]] = field(default_factory=dict)
    nodes: dict[str, list[str]] = field(
        default_factory=lambda: {lb.arn: sorted(lb.nodes.values()) for lb in LBS.values()}
    )
    calls: int = 0

    def record_healthy(self, health_check_id: str) -> bool:
        self.calls += 1
        return health_check_id not in self.unhealthy_checks

    def load_balancer_healthy(self, lb_arn: str) -> bool:
        self.calls += 1
        return lb_arn not in self.unhealthy_lbs

    def healthy_nodes(self, lb_arn: str) -> list[str]:
        self.calls += 1
        if lb_arn in self.partial_nodes:
            return list(self.partial_nodes[lb_arn])
        return list(self.nodes[lb_arn])


def ask(
    topo: Topology,
    vpc: Vpc,
    name: str,
    rdtype: str = "A",
    health: FakeHealth | None = None,
    *,
    seed: int = 0,
    latency: LatencyMatrix = LATENCY,
) -> Answer:
    return answer_question(
        topo,
        vpc.id,
        name,
        rdtype,
        health=health or FakeHealth(),
        latency=latency,
        rng=random.Random(seed),
    )


def addresses(answer: Answer) -> list[str]:
    return sorted(answer.addresses)


MAIN = zone("Z1", ZONE, VPCS, *latency_records())
BASE = topology(MAIN)

# ---------------------------------------------------------------------- pure: latency + health


@pytest.mark.parametrize("vpc", VPCS, ids=lambda v: v.region)
def test_latency_alias_answers_each_vpc_with_its_own_region(vpc: Vpc) -> None:
    answer = ask(BASE, vpc, API)
    assert answer.rcode == "NOERROR"
    assert addresses(answer) == nodes(vpc)
    assert answer.ttl == 60  # alias to an NLB
    assert f"latency {vpc.region}" in answer.note


def test_latency_skips_an_unhealthy_health_check_to_the_next_nearest() -> None:
    health = FakeHealth(unhealthy_checks={"hc-us-east-1"})
    # From us-east-1, us-west-2 (~53 ms) is nearer than eu-west-1 (~80 ms).
    assert addresses(ask(BASE, EAST, API, health=health)) == nodes(WEST)
    # From eu-west-1 its own region is still healthy.
    assert addresses(ask(BASE, EU, API, health=health)) == nodes(EU)


def test_latency_evaluates_target_health_of_the_alias() -> None:
    health = FakeHealth(unhealthy_lbs={LBS[EAST.id].arn})
    assert addresses(ask(BASE, EAST, API, health=health)) == nodes(WEST)


def test_target_health_is_ignored_without_evaluate_target_health() -> None:
    records = [
        dataclasses.replace(r, alias_evaluate_target_health=False) for r in latency_records()
    ]
    topo = topology(zone("Z1", ZONE, VPCS, *records))
    health = FakeHealth(unhealthy_lbs={LBS[EAST.id].arn})
    assert addresses(ask(topo, EAST, API, health=health)) == nodes(EAST)


def test_every_candidate_unhealthy_fails_open_to_the_nearest() -> None:
    health = FakeHealth(unhealthy_checks={f"hc-{v.region}" for v in VPCS})
    for vpc in VPCS:
        answer = ask(BASE, vpc, API, health=health)
        assert addresses(answer) == nodes(vpc)
        assert "answered as if healthy" in answer.note


def test_alias_answers_only_nodes_of_healthy_azs() -> None:
    east = LBS[EAST.id]
    health = FakeHealth(partial_nodes={east.arn: ["10.1.2.9"]})
    assert addresses(ask(BASE, EAST, API, health=health)) == ["10.1.2.9"]
    # No healthy node at all reported: every node (the NLB fails open too).
    health = FakeHealth(partial_nodes={east.arn: []})
    assert addresses(ask(BASE, EAST, API, health=health)) == nodes(EAST)


def test_latency_matrix_override_changes_the_choice() -> None:
    far = LatencyMatrix.from_mapping({"us-east-1": {"us-west-2": 900, "eu-west-1": 1}})
    health = FakeHealth(unhealthy_checks={"hc-us-east-1"})
    assert addresses(ask(BASE, EAST, API, health=health, latency=far)) == nodes(EU)


def test_missing_latency_pair_is_servfail_naming_it() -> None:
    only = LatencyMatrix(rtt_ms={("us-east-1", "us-west-2"): 5.0, ("us-west-2", "us-east-1"): 5.0})
    answer = ask(BASE, EAST, API, latency=only)
    assert answer.rcode == "SERVFAIL"
    assert "eu-west-1" in answer.note


# ---------------------------------------------------------------------- pure: other policies

W = f"w.{ZONE}"
F = f"f.{ZONE}"
M = f"m.{ZONE}"


def weighted(*weights: int, checks: bool = True) -> tuple[RecordSet, ...]:
    return tuple(
        rr(
            W,
            "A",
            f"10.9.0.{i}",
            set_identifier=f"w{i}",
            weight=w,
            health_check_id=f"hc-w{i}" if checks else None,
        )
        for i, w in enumerate(weights, start=1)
    )


def pick_counts(topo: Topology, health: FakeHealth, draws: int = 2000) -> dict[str, int]:
    counts: dict[str, int] = {}
    rng = random.Random(7)
    for _ in range(draws):
        answer = answer_question(topo, EAST.id, W, "A", health=health, latency=LATENCY, rng=rng)
        (value,) = answer.addresses
        counts[value] = counts.get(value, 0) + 1
    return counts


def test_weighted_follows_the_weights() -> None:
    counts = pick_counts(topology(zone("Z1", ZONE, VPCS, *weighted(1, 3))), FakeHealth())
    assert set(counts) == {"10.9.0.1", "10.9.0.2"}
    assert 0.20 <= counts["10.9.0.1"] / 2000 <= 0.30


def test_weighted_zero_weight_only_when_every_nonzero_record_is_unhealthy() -> None:
    topo = topology(zone("Z1", ZONE, VPCS, *weighted(2, 0, 1)))
    assert set(pick_counts(topo, FakeHealth(), 300)) == {"10.9.0.1", "10.9.0.3"}
    one_down = FakeHealth(unhealthy_checks={"hc-w1"})
    assert set(pick_counts(topo, one_down, 100)) == {"10.9.0.3"}
    nonzero_down = FakeHealth(unhealthy_checks={"hc-w1", "hc-w3"})
    assert set(pick_counts(topo, nonzero_down, 100)) == {"10.9.0.2"}
    # Everything unhealthy: as if all were healthy, i.e. by weight (zero never).
    all_down = FakeHealth(unhealthy_checks={"hc-w1", "hc-w2", "hc-w3"})
    assert set(pick_counts(topo, all_down, 300)) == {"10.9.0.1", "10.9.0.3"}


def test_weighted_all_zero_is_equal_chances() -> None:
    counts = pick_counts(topology(zone("Z1", ZONE, VPCS, *weighted(0, 0))), FakeHealth())
    assert 0.4 <= counts["10.9.0.1"] / 2000 <= 0.6


def failover(secondary: bool = True) -> tuple[RecordSet, ...]:
    records = [
        rr(F, "A", "10.9.1.1", set_identifier="p", failover="PRIMARY", health_check_id="hc-p")
    ]
    if secondary:
        records.append(
            rr(F, "A", "10.9.1.2", set_identifier="s", failover="SECONDARY", health_check_id="hc-s")
        )
    return tuple(records)


@pytest.mark.parametrize(
    ("down", "expected"),
    [
        (set(), "10.9.1.1"),
        ({"hc-p"}, "10.9.1.2"),
        ({"hc-s"}, "10.9.1.1"),
        ({"hc-p", "hc-s"}, "10.9.1.1"),  # both down: the primary (fail open)
    ],
)
def test_failover(down: set[str], expected: str) -> None:
    topo = topology(zone("Z1", ZONE, VPCS, *failover()))
    assert ask(topo, EAST, F, health=FakeHealth(unhealthy_checks=down)).addresses == (expected,)


def test_failover_primary_alone_is_answered_even_when_unhealthy() -> None:
    topo = topology(zone("Z1", ZONE, VPCS, *failover(secondary=False)))
    health = FakeHealth(unhealthy_checks={"hc-p"})
    assert ask(topo, EAST, F, health=health).addresses == ("10.9.1.1",)


def multivalue(count: int) -> tuple[RecordSet, ...]:
    return tuple(
        rr(
            M,
            "A",
            f"10.9.2.{i}",
            set_identifier=f"m{i}",
            multi_value=True,
            health_check_id=f"hc-m{i}",
        )
        for i in range(1, count + 1)
    )


def test_multivalue_answers_up_to_eight_healthy_records() -> None:
    topo = topology(zone("Z1", ZONE, VPCS, *multivalue(12)))
    answer = ask(topo, EAST, M)
    assert len(set(answer.addresses)) == MAX_MULTIVALUE
    down = FakeHealth(unhealthy_checks={f"hc-m{i}" for i in range(1, 8)})  # 5 left
    assert addresses(ask(topo, EAST, M, health=down)) == sorted(f"10.9.2.{i}" for i in range(8, 13))


def test_multivalue_all_unhealthy_answers_up_to_eight_of_all() -> None:
    topo = topology(zone("Z1", ZONE, VPCS, *multivalue(10)))
    down = FakeHealth(unhealthy_checks={f"hc-m{i}" for i in range(1, 11)})
    answer = ask(topo, EAST, M, health=down)
    assert len(set(answer.addresses)) == 8
    assert set(answer.addresses) <= {f"10.9.2.{i}" for i in range(1, 11)}


def test_simple_record_answers_every_value_and_ignores_health() -> None:
    name = f"s.{ZONE}"
    record = rr(name, "A", "10.9.3.1", "10.9.3.2", ttl=30, health_check_id="hc-s")
    topo = topology(zone("Z1", ZONE, VPCS, record))
    answer = ask(topo, EAST, name, health=FakeHealth(unhealthy_checks={"hc-s"}))
    assert answer.addresses == ("10.9.3.1", "10.9.3.2")
    assert answer.ttl == 30


@pytest.mark.parametrize(
    ("extra", "policy"),
    [
        ({"geo_location": {"CountryCode": "US"}}, "geolocation"),
        ({}, "geoproximity or cidr"),
    ],
)
def test_unsupported_policies_answer_servfail_naming_the_policy(
    extra: dict[str, Any], policy: str
) -> None:
    name = f"g.{ZONE}"
    record = rr(name, "A", "10.9.4.1", set_identifier="g", **extra)
    assert routing_policy(record) == policy
    answer = ask(topology(zone("Z1", ZONE, VPCS, record)), EAST, name)
    assert answer.rcode == "SERVFAIL"
    assert policy in answer.note


def test_mixed_policies_in_one_group_are_refused_loudly() -> None:
    mixed = [rr(W, "A", "10.9.0.1", set_identifier="a", weight=1), failover()[0]]
    with pytest.raises(UnsupportedPolicy, match="mix routing policies"):
        choose(
            [dataclasses.replace(r, name=W) for r in mixed],
            healthy=lambda r: True,
            region="us-east-1",
            latency=LATENCY,
            rng=random.Random(0),
        )


# ---------------------------------------------------------------------- pure: zones


def test_private_zone_applies_only_to_associated_vpcs() -> None:
    name = f"x.{ZONE}"
    topo = topology(zone("Z1", ZONE, [EAST], rr(name, "A", "10.9.5.1")))
    assert ask(topo, EAST, name).addresses == ("10.9.5.1",)
    answer = ask(topo, WEST, name)
    assert answer.rcode == "REFUSED"
    assert "no internet" in answer.note


def test_public_zones_are_not_served() -> None:
    name = f"x.{ZONE}"
    topo = topology(zone("Z1", ZONE, VPCS, rr(name, "A", "10.9.5.1"), private=False))
    assert ask(topo, EAST, name).rcode == "REFUSED"


def test_most_specific_zone_wins_without_fall_through() -> None:
    parent = zone(
        "Z1",
        ZONE,
        VPCS,
        rr(f"a.sub.{ZONE}", "A", "10.9.6.1"),
        rr(f"b.sub.{ZONE}", "A", "10.9.6.2"),
    )
    child = zone("Z2", f"sub.{ZONE}", [EAST], rr(f"a.sub.{ZONE}", "A", "10.9.6.9"))
    topo = topology(parent, child)
    assert ask(topo, EAST, f"a.sub.{ZONE}").addresses == ("10.9.6.9",)
    nx = ask(topo, EAST, f"b.sub.{ZONE}")  # exists only in the parent: NXDOMAIN, no fall-through
    assert nx.rcode == "NXDOMAIN"
    assert nx.authority[0].name == f"sub.{ZONE}"
    # West is not associated with the child zone: the parent answers.
    assert ask(topo, WEST, f"a.sub.{ZONE}").addresses == ("10.9.6.1",)
    assert ask(topo, WEST, f"b.sub.{ZONE}").addresses == ("10.9.6.2",)


def test_nxdomain_and_nodata_carry_the_soa_with_the_negative_ttl() -> None:
    name = f"x.{ZONE}"
    short_minimum = SOA.rsplit(" ", 1)[0] + " 300"
    topo = topology(zone("Z1", ZONE, VPCS, rr(name, "A", "10.9.5.1"), soa=short_minimum))
    nx = ask(topo, EAST, f"missing.{ZONE}")
    assert nx.rcode == "NXDOMAIN"
    assert not nx.records
    (soa,) = nx.authority
    assert (soa.type, soa.ttl) == ("SOA", 300)  # min(SOA TTL 900, minimum 300)
    nodata = ask(topo, EAST, name, "TXT")
    assert nodata.rcode == "NOERROR"
    assert not nodata.records
    assert nodata.authority[0].type == "SOA"


def test_wildcards_follow_closest_encloser_rules() -> None:
    wild = f"wild.{ZONE}"
    topo = topology(
        zone(
            "Z1",
            ZONE,
            VPCS,
            rr(f"*.{wild}", "A", "10.9.7.1"),
            rr(f"b.{wild}", "TXT", '"b"'),
        )
    )
    answer = ask(topo, EAST, f"a.{wild}")
    assert answer.addresses == ("10.9.7.1",)
    assert answer.records[0].name == f"a.{wild}"  # synthesised at the query name
    assert ask(topo, EAST, f"x.y.{wild}").addresses == ("10.9.7.1",)
    assert ask(topo, EAST, wild).rcode == "NOERROR"  # an empty non-terminal: NODATA
    assert not ask(topo, EAST, wild).records
    assert not ask(topo, EAST, f"b.{wild}").records  # exists: no wildcard, NODATA
    assert ask(topo, EAST, f"c.b.{wild}").rcode == "NXDOMAIN"  # encloser b has no wildcard


def test_route53_octal_escaped_wildcard_is_understood() -> None:
    topo = topology(zone("Z1", ZONE, VPCS, rr(f"\\052.esc.{ZONE}", "A", "10.9.7.2")))
    assert ask(topo, EAST, f"q.esc.{ZONE}").addresses == ("10.9.7.2",)


def test_cname_is_followed_across_visible_zones() -> None:
    other = zone("Z2", "other.example", [EAST], rr("target.other.example", "A", "10.9.8.1", ttl=20))
    main = zone(
        "Z1",
        ZONE,
        VPCS,
        rr(f"c.{ZONE}", "CNAME", "target.other.example", ttl=100),
        rr(f"dangling.{ZONE}", "CNAME", f"nothing.{ZONE}"),
        rr(f"out.{ZONE}", "CNAME", "www.example.org"),
        rr(f"nlb.{ZONE}", "CNAME", LBS[WEST.id].dns_name),
        rr(f"loop1.{ZONE}", "CNAME", f"loop2.{ZONE}"),
        rr(f"loop2.{ZONE}", "CNAME", f"loop1.{ZONE}"),
    )
    topo = topology(main, other)
    answer = ask(topo, EAST, f"c.{ZONE}")
    assert [(r.type, r.value) for r in answer.records] == [
        ("CNAME", "target.other.example."),
        ("A", "10.9.8.1"),
    ]
    assert answer.ttl == 20
    assert ask(topo, EAST, f"c.{ZONE}", "CNAME").records[0].value == "target.other.example."
    # West cannot see other.example: the chain leads to the internet.
    assert ask(topo, WEST, f"c.{ZONE}").rcode == "REFUSED"
    dangling = ask(topo, EAST, f"dangling.{ZONE}")
    assert dangling.rcode == "NXDOMAIN"
    assert dangling.records[0].type == "CNAME"
    assert ask(topo, EAST, f"out.{ZONE}").rcode == "REFUSED"
    assert addresses(ask(topo, EAST, f"nlb.{ZONE}")) == nodes(WEST)
    loop = ask(topo, EAST, f"loop1.{ZONE}")
    assert loop.rcode == "SERVFAIL"
    assert "loop" in loop.note


def test_alias_to_a_record_in_the_zone_and_to_unknown_targets() -> None:
    topo = topology(
        zone(
            "Z1",
            ZONE,
            VPCS,
            rr(f"t.{ZONE}", "A", "10.9.9.1", ttl=45),
            rr(f"al.{ZONE}", "A", ttl=None, alias_dns_name=f"t.{ZONE}"),
            rr(f"cf.{ZONE}", "A", ttl=None, alias_dns_name="d111111abcdef8.cloudfront.net"),
        )
    )
    answer = ask(topo, EAST, f"al.{ZONE}")
    assert answer.addresses == ("10.9.9.1",)
    assert (answer.records[0].name, answer.ttl) == (f"al.{ZONE}", 45)
    broken = ask(topo, EAST, f"cf.{ZONE}")
    assert broken.rcode == "SERVFAIL"
    assert "cloudfront.net" in broken.note


def test_aws_names_resolve_outside_every_zone() -> None:
    west = LBS[WEST.id]
    # Internal NLB names are public DNS of private addresses: every VPC resolves them.
    for vpc in VPCS:
        assert addresses(ask(BASE, vpc, west.dns_name)) == nodes(WEST)
    assert addresses(ask(BASE, EAST, "dualstack." + west.dns_name.upper())) == nodes(WEST)
    nodata = ask(BASE, EAST, west.dns_name, "AAAA")
    assert (nodata.rcode, nodata.records) == ("NOERROR", ())
    # execute-api private DNS: only in a VPC whose endpoint has private DNS on, own region.
    api = "abc123.execute-api.us-east-1.amazonaws.com"
    assert addresses(ask(BASE, EAST, api)) == ["10.1.1.4", "10.1.2.4"]
    assert ask(BASE, WEST, "abc123.execute-api.us-west-2.amazonaws.com").rcode == "REFUSED"
    assert ask(BASE, EAST, "abc123.execute-api.us-west-2.amazonaws.com").rcode == "REFUSED"
    assert addresses(ask(BASE, EAST, "ssm.us-east-1.amazonaws.com")) == ["10.1.1.5", "10.1.2.5"]
    # Endpoint-specific names resolve anywhere; the zonal one gives that AZ's address.
    regional = "vpce-0w1-1a2b3c4d.execute-api.us-west-2.vpce.amazonaws.com"
    assert addresses(ask(BASE, EAST, regional)) == ["10.2.1.4", "10.2.2.4"]
    zonal = "vpce-0w1-1a2b3c4d-us-west-2b.execute-api.us-west-2.vpce.amazonaws.com"
    assert addresses(ask(BASE, EAST, zonal)) == ["10.2.2.4"]
    assert addresses(ask(BASE, EU, "abc123-vpce-0w1.execute-api.us-west-2.amazonaws.com")) == [
        "10.2.1.4",
        "10.2.2.4",
    ]
    refused = ask(BASE, EAST, "www.example.org")
    assert refused.rcode == "REFUSED"


def test_unknown_vpc_is_a_lab_error() -> None:
    with pytest.raises(LabError, match="vpc-nope"):
        ask(BASE, dataclasses.replace(EAST, id="vpc-nope"), API)


# ---------------------------------------------------------------------- property: reference model


def reference(
    records: Sequence[RecordSet], health: FakeHealth, vpc: Vpc
) -> tuple[str, list[frozenset[str]], int]:
    """Independent restatement of the rules: (policy, possible answers, how many records)."""

    def healthy(r: RecordSet) -> bool:
        if r.health_check_id in health.unhealthy_checks:
            return False
        if r.alias_dns_name and r.alias_evaluate_target_health:
            lb = next(lb for lb in LBS.values() if lb.dns_name.lower() == r.alias_dns_name)
            return lb.arn not in health.unhealthy_lbs
        return True

    def value(r: RecordSet) -> frozenset[str]:
        if r.alias_dns_name:
            lb = next(lb for lb in LBS.values() if lb.dns_name.lower() == r.alias_dns_name)
            return frozenset(health.partial_nodes.get(lb.arn) or lb.nodes.values())
        return frozenset(r.values)

    up = [r for r in records if healthy(r)]
    if records[0].region:
        pool = up or list(records)
        best = min(pool, key=lambda r: (LATENCY.rtt(vpc.region, r.region or ""), r.region))
        return "latency", [value(best)], 1
    if records[0].failover:
        primary = [r for r in records if r.failover == "PRIMARY"]
        secondary = [r for r in records if r.failover == "SECONDARY"]
        for candidate in primary + secondary:
            if healthy(candidate):
                return "failover", [value(candidate)], 1
        return "failover", [value((primary + secondary)[0])], 1
    if records[0].multi_value:
        pool = up or list(records)
        return "multivalue", [value(r) for r in pool], min(8, len(pool))
    heavy = [r for r in records if (r.weight or 0) > 0]
    if any(healthy(r) for r in heavy):
        pool = [r for r in heavy if healthy(r)]
    elif any(healthy(r) for r in records):
        pool = [r for r in records if healthy(r)]  # only zero-weight records are left
    else:
        pool = heavy or list(records)
    return "weighted", [value(r) for r in pool], 1


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    vpc=st.sampled_from(VPCS),
    weights=st.lists(st.integers(0, 3), min_size=1, max_size=4),
    multivalue_count=st.integers(1, 12),
    seed=st.integers(0, 2**31),
)
def test_answers_agree_with_a_reference_for_random_health(
    data: st.DataObject, vpc: Vpc, weights: list[int], multivalue_count: int, seed: int
) -> None:
    groups = {
        API: latency_records(),
        F: failover(),
        M: multivalue(multivalue_count),
        W: weighted(*weights),
    }
    topo = topology(zone("Z1", ZONE, VPCS, *(r for g in groups.values() for r in g)))
    checks = sorted({r.health_check_id for g in groups.values() for r in g if r.health_check_id})
    arns = sorted(lb.arn for lb in LBS.values())
    health = FakeHealth(
        unhealthy_checks=data.draw(st.sets(st.sampled_from(checks))),
        unhealthy_lbs=data.draw(st.sets(st.sampled_from(arns))),
        partial_nodes={
            arn: sorted(LBS_BY_ARN[arn].nodes.values())[:1]
            for arn in data.draw(st.sets(st.sampled_from(arns)))
        },
    )
    for name, records in groups.items():
        answer = ask(topo, vpc, name, health=health, seed=seed)
        policy, possible, count = reference(records, health, vpc)
        assert answer.rcode == "NOERROR", answer.note
        got = frozenset(answer.addresses)
        if policy == "multivalue":
            assert len(answer.addresses) == count
            assert all(frozenset({a}) in possible for a in answer.addresses)
        else:
            assert got in possible, f"{name}: {answer.note}"


LBS_BY_ARN = {lb.arn: lb for lb in LBS.values()}


# ---------------------------------------------------------------------- cache: manual lab clock


class ManualClock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class StandInLab:
    """The few lab attributes ``Resolvers`` uses, with a clock the test moves by hand."""

    def __init__(self, topo: Topology) -> None:
        self.clock = ManualClock()
        self.ports = PortMap.allocate()
        self.health: Any = None
        self.resolvers: Any = None
        self.current = topo

    @property
    def state_version(self) -> int:
        return self.current.version

    def topology(self) -> Topology:
        return self.current

    def change(self, *zones: HostedZone) -> None:
        self.current = topology(*zones, version=self.current.version + 1)


@contextlib.contextmanager
def standin(*zones: HostedZone, health: FakeHealth | None = None) -> Iterator[StandInLab]:
    lab = StandInLab(topology(*zones))
    lab.health = health if health is not None else FakeHealth()
    resolvers = Resolvers(lab)  # type: ignore[arg-type]
    resolvers.start()
    try:
        resolvers.update(lab.current)
        yield lab
    finally:
        resolvers.stop()
    assert lab.resolvers is None


def test_cache_counts_ttl_down_and_expires_on_the_lab_clock() -> None:
    with standin(MAIN) as lab:
        first = lab.resolvers.resolve(EAST.id, API)
        assert (first.ttl, first.cached) == (60, False)
        lab.clock.advance(5.5)
        later = lab.resolvers.resolve(EAST.id, API)
        assert (later.ttl, later.cached) == (54, True)
        lab.clock.advance(54.4)  # 59.9 s after the miss: still cached, TTL 0
        assert lab.resolvers.resolve(EAST.id, API).ttl == 0
        lab.clock.advance(0.1)
        fresh = lab.resolvers.resolve(EAST.id, API)
        assert (fresh.ttl, fresh.cached) == (60, False)


def test_cached_answer_survives_a_health_change_until_it_expires() -> None:
    health = FakeHealth()
    with standin(MAIN, health=health) as lab:
        assert addresses(lab.resolvers.resolve(EAST.id, API)) == nodes(EAST)
        health.unhealthy_checks.add("hc-us-east-1")
        lab.clock.advance(59)
        stale = lab.resolvers.resolve(EAST.id, API)
        assert addresses(stale) == nodes(EAST)
        assert stale.ttl == 1
        lab.clock.advance(1)
        assert addresses(lab.resolvers.resolve(EAST.id, API)) == nodes(WEST)
        # Other resolvers have their own caches: West never cached East's answer.
        assert addresses(lab.resolvers.resolve(WEST.id, API)) == nodes(WEST)


def test_weighted_choice_sticks_until_expiry_then_is_drawn_again() -> None:
    with standin(zone("Z1", ZONE, VPCS, *weighted(1, 1, checks=False))) as lab:
        seen = set()
        for _ in range(40):
            first = lab.resolvers.resolve(EAST.id, W).addresses
            for _ in range(5):
                lab.clock.advance(10)
                assert lab.resolvers.resolve(EAST.id, W).addresses == first
            lab.clock.advance(10)  # 60 s: expired
            seen.add(first)
        assert seen == {("10.9.0.1",), ("10.9.0.2",)}


def test_negative_answers_are_cached_for_the_soa_negative_ttl() -> None:
    soa = SOA.rsplit(" ", 1)[0] + " 300"
    name = f"late.{ZONE}"
    with standin(zone("Z1", ZONE, VPCS, soa=soa)) as lab:
        assert lab.resolvers.resolve(EAST.id, name).rcode == "NXDOMAIN"
        lab.change(zone("Z1", ZONE, VPCS, rr(name, "A", "10.9.9.9"), soa=soa))
        lab.clock.advance(299)
        cached = lab.resolvers.resolve(EAST.id, name)
        assert (cached.rcode, cached.cached, cached.ttl) == ("NXDOMAIN", True, 1)
        assert lab.resolvers.resolve(WEST.id, name).addresses == ("10.9.9.9",)
        lab.clock.advance(1)
        assert lab.resolvers.resolve(EAST.id, name).addresses == ("10.9.9.9",)


def test_refused_and_servfail_are_not_cached_and_flush_empties_the_cache() -> None:
    health = FakeHealth()
    with standin(MAIN, health=health) as lab:
        assert lab.resolvers.resolve(EAST.id, "www.example.org").cached is False
        assert lab.resolvers.resolve(EAST.id, "www.example.org").cached is False
        assert lab.resolvers.resolve(EAST.id, API).cached is False
        assert lab.resolvers.resolve(EAST.id, API).cached is True
        calls = health.calls
        lab.resolvers.flush(EAST.id)
        assert lab.resolvers.resolve(EAST.id, API).cached is False
        assert health.calls > calls  # a miss really re-evaluated health


def test_without_a_health_pipeline_everything_is_healthy_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with standin(MAIN) as lab:
        lab.health = None
        caplog.set_level(logging.WARNING, logger="harness.lab.resolver")
        assert addresses(lab.resolvers.resolve(EAST.id, API)) == nodes(EAST)
        assert addresses(lab.resolvers.resolve(WEST.id, API)) == nodes(WEST)
        warnings = [r for r in caplog.records if "no health pipeline" in r.getMessage()]
        assert len(warnings) == 1


def test_health_override_takes_precedence_over_lab_health() -> None:
    with standin(MAIN) as lab:
        lab.resolvers.health_override = FakeHealth(unhealthy_checks={"hc-us-east-1"})
        assert addresses(lab.resolvers.resolve(EAST.id, API)) == nodes(WEST)


def test_resolve_rejects_unknown_vpcs_and_types() -> None:
    with standin(MAIN) as lab:
        with pytest.raises(LabError, match="vpc-nope"):
            lab.resolvers.resolve("vpc-nope", API)
        with pytest.raises(LabError, match="BOGUS"):
            lab.resolvers.resolve(EAST.id, API, "BOGUS")
        assert lab.resolvers.resolve(EAST.id, API, dns.rdatatype.A).addresses


def test_vpcs_without_dns_support_get_no_resolver_and_gone_vpcs_lose_theirs() -> None:
    with standin(MAIN) as lab:
        assert set(lab.resolvers.served()) == {v.id for v in VPCS}
        host, port = lab.resolvers.address(WEST.id)
        lab.current = dataclasses.replace(
            lab.current,
            version=2,
            vpcs={EAST.id: EAST, WEST.id: dataclasses.replace(WEST, dns_support=False)},
        )
        lab.resolvers.update(lab.current)
        assert set(lab.resolvers.served()) == {EAST.id}
        # The address is free again (its sockets were closed on the loop before update returned).
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind((host, port))
        finally:
            probe.close()


# ---------------------------------------------------------------------- wire format (stand-in lab)


def udp(
    lab: StandInLab | Lab,
    vpc_id: str,
    name: str,
    rdtype: str = "A",
    *,
    source: str,
    tcp: bool = False,
    timeout: float = 2.0,
    **query_options: Any,
) -> dns.message.Message:
    host, port = lab.resolvers.address(vpc_id)
    query = dns.message.make_query(name, rdtype, **query_options)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, host, port=port, source=source, timeout=timeout)


def test_wire_answers_count_ttl_down_over_udp_and_tcp() -> None:
    with standin(MAIN) as lab:
        source = to_loopback("10.1.1.8")
        response = udp(lab, EAST.id, API, source=source)
        assert response.rcode() == dns.rcode.NOERROR
        assert response.flags & dns.flags.RA
        assert response.flags & dns.flags.RD
        assert not response.flags & dns.flags.AA
        (rrset,) = response.answer
        assert (rrset.ttl, sorted(r.address for r in rrset)) == (60, nodes(EAST))
        lab.clock.advance(12.3)
        response = udp(lab, EAST.id, API, source=source, tcp=True)
        assert response.answer[0].ttl == 47
        response = udp(lab, EAST.id, f"nope.{ZONE}", source=source)
        assert response.rcode() == dns.rcode.NXDOMAIN
        assert response.authority[0].rdtype == dns.rdatatype.SOA


def test_large_answers_are_truncated_over_udp_and_complete_over_tcp() -> None:
    big = rr(f"big.{ZONE}", "TXT", *[f'"{"x" * 200}{i}"' for i in range(6)])
    with standin(zone("Z1", ZONE, VPCS, big)) as lab:
        source = to_loopback("10.1.1.8")
        host, port = lab.resolvers.address(EAST.id)
        query = dns.message.make_query(f"big.{ZONE}", "TXT")
        truncated = dns.query.udp(
            query, host, port=port, source=source, timeout=2, ignore_trailing=True
        )
        assert truncated.flags & dns.flags.TC
        full = udp(lab, EAST.id, f"big.{ZONE}", "TXT", source=source, tcp=True)
        assert len(full.answer[0]) == 6


def test_malformed_messages_get_formerr_and_any_gets_notimp() -> None:
    with standin(MAIN) as lab:
        source = to_loopback("10.1.1.8")
        host, port = lab.resolvers.address(EAST.id)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
            sock.settimeout(2)
            sock.sendto(
                struct.pack("!HHHHHH", 4242, 0x0100, 1, 0, 0, 0) + b"\x05junk", (host, port)
            )
            reply = sock.recv(512)
        assert struct.unpack("!H", reply[:2])[0] == 4242
        assert reply[3] & 0x0F == dns.rcode.FORMERR
        assert udp(lab, EAST.id, API, "ANY", source=source).rcode() == dns.rcode.NOTIMP


def test_only_sources_inside_the_vpc_are_answered() -> None:
    with standin(MAIN) as lab:
        inside = to_loopback("10.1.200.7")  # any address of the VPC, not only instances
        assert udp(lab, EAST.id, API, source=inside).rcode() == dns.rcode.NOERROR
        for outsider in (to_loopback("10.2.1.8"), "127.0.0.1"):
            for tcp in (False, True):
                with pytest.raises(dns.exception.Timeout):
                    udp(lab, EAST.id, API, source=outsider, tcp=tcp, timeout=0.3)


# ---------------------------------------------------------------------- integration: live lab

REGIONS = ("us-east-1", "us-west-2", "eu-west-1")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(REGIONS) as running:
        yield running


class Stack:
    """A deployed stack set, seen from its VPCs' resolvers."""

    def __init__(self, lab: Lab, deployment: Deployment, sessions: SessionFactory) -> None:
        self.lab = lab
        self.deployment = deployment
        self.sessions = sessions
        self.regions = deployment.regions
        topology = lab.topology()
        self.sources = [
            to_loopback(topology.instances[r.bastion_ids[0]].address) for r in self.regions
        ]
        self.nodes = [
            sorted(topology.load_balancers[r.load_balancer_arn].nodes.values())
            for r in self.regions
        ]

    @property
    def region_names(self) -> list[str]:
        return [r.name for r in self.regions]

    def health_view(self) -> dict[str, bool]:
        """Return each region's record health as ``lab.health`` sees it (all True without it)."""
        health = self.lab.health
        return {
            r.name: health is None
            or (
                health.record_healthy(r.health_check_id)
                and health.load_balancer_healthy(r.load_balancer_arn)
            )
            for r in self.regions
        }

    def wait_all_healthy(self, timeout: float = 15.0) -> None:
        """Wait until the lab's health view calls every region healthy."""
        deadline = time.monotonic() + timeout
        while not all((view := self.health_view()).values()):
            if time.monotonic() > deadline:
                pytest.fail(f"the lab's health pipeline never called every region healthy: {view}")
            time.sleep(0.05)

    def query(
        self,
        index: int,
        name: str,
        rdtype: str = "A",
        *,
        tcp: bool = False,
        source: str | None = None,
        timeout: float = 2.0,
    ) -> dns.message.Message:
        return udp(
            self.lab,
            self.regions[index].vpc_id,
            name,
            rdtype,
            source=source or self.sources[index],
            tcp=tcp,
            timeout=timeout,
        )


@pytest.fixture(scope="class")
def stack(request: pytest.FixtureRequest, lab: Lab) -> Iterator[Stack]:
    """The stack set of the class's ``REGION_COUNT`` regions (torn down before the next class)."""
    sessions = lab_sessions(lab.info)
    config = load_config({"regions": ",".join(REGIONS[: request.cls.REGION_COUNT])}, environ={})
    deployer = StackSetDeployer(config, sessions)
    try:
        yield Stack(lab, deployer.deploy(), sessions)
    finally:
        lab.resolvers.health_override = None
        deployer.teardown()


def a_values(response: dns.message.Message) -> list[str]:
    return sorted(r.address for rrset in response.answer for r in rrset if r.rdtype == 1)


class EveryStack:
    """Checks that hold for any number of regions (run for 2 and 3)."""

    REGION_COUNT = 0

    def test_each_vpc_resolves_the_api_name_to_its_own_region(self, stack: Stack) -> None:
        # Uses the lab's own health view (the pipeline if running). Once every region is
        # healthy each VPC gets its own region; should the pipeline flap (a loaded machine can
        # fail a health check), the answer must still be the nearest region healthy in the
        # view held while the query ran.
        stack.wait_all_healthy()
        for index, region in enumerate(stack.regions):
            for tcp in (False, True):
                for _ in range(20):
                    before = stack.health_view()
                    stack.lab.resolvers.flush(region.vpc_id)
                    response = stack.query(index, stack.deployment.domain, tcp=tcp)
                    if stack.health_view() == before:
                        break
                else:
                    pytest.fail("the lab's health view kept changing during every query")
                healthy = [r.name for r in stack.regions if before[r.name]]
                nearest = LATENCY.nearest(region.name, healthy or stack.region_names)
                if all(before.values()):
                    assert nearest == region.name
                assert response.rcode() == dns.rcode.NOERROR
                got = a_values(response)
                assert got, f"no addresses for {region.name}"
                assert set(got) <= set(stack.nodes[stack.region_names.index(nearest)]), (
                    region.name,
                    before,
                )
                assert 0 < response.answer[0].ttl <= 60

    def test_every_nlb_name_resolves_in_every_vpc(self, stack: Stack) -> None:
        for index in range(len(stack.regions)):
            for target, region in enumerate(stack.regions):
                response = stack.query(index, region.load_balancer_dns_name)
                got = a_values(response)
                assert got
                assert set(got) <= set(stack.nodes[target])

    def test_nxdomain_in_the_zone_and_refused_outside(self, stack: Stack) -> None:
        for index in range(len(stack.regions)):
            nx = stack.query(index, f"no-such-record.{stack.deployment.zone}")
            assert nx.rcode() == dns.rcode.NXDOMAIN
            assert nx.authority[0].rdtype == dns.rdatatype.SOA
            assert stack.query(index, "www.example.org").rcode() == dns.rcode.REFUSED


@dataclass
class Extra:
    zone_id: str  # t.<zone>, associated with both VPCs
    sub_id: str  # sub.t.<zone>, associated with the first VPC only
    other_id: str  # other.example, associated with the second VPC only
    name: str  # t.<zone>


@pytest.fixture(scope="class")
def extra(stack: Stack) -> Iterator[Extra]:
    """Zones and records created through the Route 53 API, removed afterwards."""
    r53 = stack.sessions.client("route53", "us-east-1")
    first, second = stack.regions[0], stack.regions[1]
    created: list[tuple[str, list[dict[str, Any]]]] = []

    def new_zone(name: str, vpc: Any) -> str:
        zone_id = r53.create_hosted_zone(
            Name=name,
            CallerReference=uuid.uuid4().hex,
            HostedZoneConfig={"Comment": "resolver tests", "PrivateZone": True},
            VPC={"VPCRegion": vpc.name, "VPCId": vpc.vpc_id},
        )["HostedZone"]["Id"].split("/")[-1]
        created.append((zone_id, []))
        return zone_id

    def add(zone_id: str, *sets: dict[str, Any]) -> None:
        r53.change_resource_record_sets(
            HostedZoneId=zone_id,
            ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": s} for s in sets]},
        )
        next(c for z, c in created if z == zone_id).extend(sets)

    t = f"t.{stack.deployment.zone}"
    zone_id = new_zone(t, first)
    r53.associate_vpc_with_hosted_zone(
        HostedZoneId=zone_id, VPC={"VPCRegion": second.name, "VPCId": second.vpc_id}
    )
    sub_id = new_zone(f"sub.{t}", first)
    other_id = new_zone("other.example", second)
    hc = [r.health_check_id for r in stack.regions]

    def a(name: str, *values: str, ttl: int = 60, **extra: Any) -> dict[str, Any]:
        return {
            "Name": name,
            "Type": "A",
            "TTL": ttl,
            "ResourceRecords": [{"Value": v} for v in values],
            **extra,
        }

    add(
        zone_id,
        a(f"simple.{t}", "10.250.0.1", "10.250.0.2", ttl=30),
        a(f"w.{t}", "10.250.1.1", SetIdentifier="one", Weight=1, HealthCheckId=hc[0]),
        a(f"w.{t}", "10.250.1.2", SetIdentifier="zero", Weight=0),
        a(
            f"f.{t}",
            "10.250.2.1",
            ttl=10,
            SetIdentifier="p",
            Failover="PRIMARY",
            HealthCheckId=hc[0],
        ),
        a(
            f"f.{t}",
            "10.250.2.2",
            ttl=10,
            SetIdentifier="s",
            Failover="SECONDARY",
            HealthCheckId=hc[1],
        ),
        *[
            a(f"m.{t}", f"10.250.3.{i}", SetIdentifier=f"m{i}", MultiValueAnswer=True)
            for i in range(1, 11)
        ],
        a(f"*.wild.{t}", "10.250.4.1"),
        {
            "Name": f"c.{t}",
            "Type": "CNAME",
            "TTL": 60,
            "ResourceRecords": [{"Value": f"simple.{t}"}],
        },
        a(f"y.sub.{t}", "10.250.5.2"),  # shadowed by sub.<t> for the first VPC
    )
    add(sub_id, a(f"x.sub.{t}", "10.250.5.1"))
    add(other_id, a("host.other.example", "10.250.6.1"))
    try:
        yield Extra(zone_id, sub_id, other_id, t)
    finally:
        for made_id, sets in reversed(created):
            if sets:
                r53.change_resource_record_sets(
                    HostedZoneId=made_id,
                    ChangeBatch={
                        "Changes": [{"Action": "DELETE", "ResourceRecordSet": s} for s in sets]
                    },
                )
            r53.delete_hosted_zone(Id=made_id)


@pytest.fixture
def health(stack: Stack) -> Iterator[FakeHealth]:
    """A health double in place of the lab's health view, for exact health states."""
    double = FakeHealth(
        nodes={r.load_balancer_arn: n for r, n in zip(stack.regions, stack.nodes, strict=True)}
    )
    stack.lab.resolvers.health_override = double
    stack.lab.resolvers.flush()
    yield double
    stack.lab.resolvers.health_override = None
    stack.lab.resolvers.flush()


class TestTwoRegions(EveryStack):
    REGION_COUNT = 2

    def test_queries_from_outside_the_vpc_are_dropped(self, stack: Stack) -> None:
        name = stack.deployment.domain
        for tcp in (False, True):
            with pytest.raises(dns.exception.Timeout):
                stack.query(0, name, tcp=tcp, source=stack.sources[1], timeout=0.3)
            with pytest.raises(dns.exception.Timeout):
                stack.query(0, name, tcp=tcp, source="127.0.0.1", timeout=0.3)

    def test_execute_api_private_dns(self, stack: Stack) -> None:
        for index, region in enumerate(stack.regions):
            response = stack.query(index, f"abc123.execute-api.{region.name}.amazonaws.com")
            assert a_values(response) == sorted(region.endpoint_ips)
        other = stack.regions[1].name
        assert (
            stack.query(0, f"abc123.execute-api.{other}.amazonaws.com").rcode() == dns.rcode.REFUSED
        )

    def test_ttl_counts_down_on_the_lab_clock(self, stack: Stack) -> None:
        stack.lab.resolvers.flush()
        clock = stack.lab.clock
        t0 = clock.now()
        first = stack.query(0, stack.deployment.domain).answer[0].ttl
        t1 = clock.now()
        clock.sleep(5)
        t2 = clock.now()
        second = stack.query(0, stack.deployment.domain).answer[0].ttl
        t3 = clock.now()
        assert first == 60  # the miss: a full alias TTL
        # Served TTL = 60 - whole lab seconds since the answer was stored (between t0 and t1).
        assert math.floor(t2 - t1) <= first - second <= math.ceil(t3 - t0), (first, second)
        assert first - second >= 4

    def test_alias_answer_is_cached_for_60s_before_failing_over(
        self, stack: Stack, health: FakeHealth
    ) -> None:
        clock = stack.lab.clock
        started = clock.now()
        assert a_values(stack.query(0, stack.deployment.domain)) == stack.nodes[0]
        health.unhealthy_checks.add(stack.regions[0].health_check_id)
        clock.sleep(30)
        stale = stack.query(0, stack.deployment.domain)
        if clock.now() - started < 59:  # a stalled machine may have slept past the TTL
            assert a_values(stale) == stack.nodes[0]
            assert stale.answer[0].ttl <= 60 - (clock.now() - started) + 1
        # The other VPC is unaffected: its own region is still healthy.
        assert a_values(stack.query(1, stack.deployment.domain)) == stack.nodes[1]
        clock.sleep(max(0.0, started + 61 - clock.now()))
        assert a_values(stack.query(0, stack.deployment.domain)) == stack.nodes[1]

    # Routing policies and zone rules end to end, on records created through boto3, with a
    # health double so health states are exact (the real pipeline has its own tests).

    def test_simple_cname_wildcard_and_nodata(
        self, stack: Stack, extra: Extra, health: FakeHealth
    ) -> None:
        t = extra.name
        assert a_values(stack.query(1, f"simple.{t}")) == ["10.250.0.1", "10.250.0.2"]
        cname = stack.query(0, f"c.{t}", tcp=True)
        assert [r.rdtype for r in cname.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
        assert a_values(cname) == ["10.250.0.1", "10.250.0.2"]
        assert a_values(stack.query(0, f"deep.er.wild.{t}")) == ["10.250.4.1"]
        nodata = stack.query(0, f"simple.{t}", "TXT")
        assert (nodata.rcode(), nodata.answer) == (dns.rcode.NOERROR, [])
        assert nodata.authority[0].rdtype == dns.rdatatype.SOA

    def test_weighted_failover_and_multivalue(
        self, stack: Stack, extra: Extra, health: FakeHealth
    ) -> None:
        t = extra.name
        assert a_values(stack.query(0, f"w.{t}")) == ["10.250.1.1"]  # weight 0 never, yet
        assert a_values(stack.query(0, f"f.{t}")) == ["10.250.2.1"]
        multi = a_values(stack.query(0, f"m.{t}"))
        assert len(multi) == 8
        assert set(multi) <= {f"10.250.3.{i}" for i in range(1, 11)}
        health.unhealthy_checks.add(stack.regions[0].health_check_id)
        stack.lab.resolvers.flush()
        assert a_values(stack.query(0, f"w.{t}")) == ["10.250.1.2"]
        assert a_values(stack.query(0, f"f.{t}")) == ["10.250.2.2"]
        health.unhealthy_checks.add(stack.regions[1].health_check_id)
        stack.lab.resolvers.flush()
        assert a_values(stack.query(0, f"f.{t}")) == ["10.250.2.1"]  # both down: primary

    def test_failover_flips_only_after_the_cached_ttl(
        self, stack: Stack, extra: Extra, health: FakeHealth
    ) -> None:
        name, clock = f"f.{extra.name}", stack.lab.clock
        started = clock.now()
        assert a_values(stack.query(1, name)) == ["10.250.2.1"]
        health.unhealthy_checks.add(stack.regions[0].health_check_id)
        clock.sleep(4)
        cached = stack.query(1, name)
        if clock.now() - started < 9:  # a loaded machine may have slept past the TTL
            assert a_values(cached) == ["10.250.2.1"]
            assert cached.answer[0].ttl < 10
        clock.sleep(max(0.0, started + 11 - clock.now()))
        assert a_values(stack.query(1, name)) == ["10.250.2.2"]

    def test_zone_association_and_most_specific_zone(
        self, stack: Stack, extra: Extra, health: FakeHealth
    ) -> None:
        t = extra.name
        assert a_values(stack.query(0, f"x.sub.{t}")) == ["10.250.5.1"]
        assert stack.query(0, f"y.sub.{t}").rcode() == dns.rcode.NXDOMAIN  # no fall-through
        assert a_values(stack.query(1, f"y.sub.{t}")) == ["10.250.5.2"]  # not associated
        assert stack.query(1, f"x.sub.{t}").rcode() == dns.rcode.NXDOMAIN
        assert a_values(stack.query(1, "host.other.example")) == ["10.250.6.1"]
        assert stack.query(0, "host.other.example").rcode() == dns.rcode.REFUSED

    def test_negative_answer_is_cached_past_a_new_record(
        self, stack: Stack, extra: Extra, health: FakeHealth
    ) -> None:
        r53 = stack.sessions.client("route53", "us-east-1")
        name = f"late.{extra.name}"
        assert stack.query(0, name).rcode() == dns.rcode.NXDOMAIN
        record = {
            "Name": name,
            "Type": "A",
            "TTL": 60,
            "ResourceRecords": [{"Value": "10.250.7.1"}],
        }
        r53.change_resource_record_sets(
            HostedZoneId=extra.zone_id,
            ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": record}]},
        )
        try:
            cached = stack.query(0, name)
            assert cached.rcode() == dns.rcode.NXDOMAIN  # the SOA negative TTL (900 s) holds
            assert a_values(stack.query(1, name)) == ["10.250.7.1"]  # its own cache: fresh
            stack.lab.resolvers.flush()
            assert a_values(stack.query(0, name)) == ["10.250.7.1"]
        finally:
            r53.change_resource_record_sets(
                HostedZoneId=extra.zone_id,
                ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": record}]},
            )


class TestThreeRegions(EveryStack):
    REGION_COUNT = 3
