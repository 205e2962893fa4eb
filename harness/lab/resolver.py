"""Route 53 Resolver per VPC: private hosted zones, routing policies, health and a real cache.

Every VPC gets a resolver at its base+2 address, answering DNS over UDP and TCP (wire format by
dnspython) on that address's loopback twin at the lab DNS port. What a client observes is what a
host in the VPC observes on AWS:

- Zones: only private hosted zones associated with the querying VPC apply; the most specific
  (longest) matching zone wins; inside it an existing name without the type is NODATA and a
  missing name is NXDOMAIN (SOA in the authority section), never a fall-through to a less
  specific zone. Wildcards (``*.zone``, RFC 4592 closest-encloser rules) and CNAME chains across
  the zones the VPC can see are followed.
- Routing policies: simple, weighted (weight 0 records only when every non-zero record is
  unhealthy; all zero = equal chances), latency (nearest healthy region from the VPC's region by
  ``harness.lab.latency``), failover (PRIMARY unless unhealthy) and multivalue (up to 8 healthy
  records). Geolocation, geoproximity and CIDR routing are not modelled: such a group answers
  SERVFAIL and the resolver logs an error naming the policy.
- Health: a record is unhealthy if its health check is unhealthy or it is an alias with
  EvaluateTargetHealth whose load balancer has no healthy target. When every candidate of a
  group is unhealthy, Route 53 answers as if all were healthy (fails open).
- Alias records to network load balancers answer the nodes of AZs with a healthy target
  (``lab.health.healthy_nodes``) with TTL 60. AWS-provided names also resolve: internal NLB DNS
  names, private DNS of the VPC's interface endpoints (``*.execute-api.<region>.amazonaws.com``
  and e.g. ``ssm.<region>.amazonaws.com``) and ``vpce-...`` endpoint DNS names.
- Everything else is an internet name, and the lab has no internet: the answer is **REFUSED**.
  REFUSED says "this resolver will not answer that" explicitly, where SERVFAIL would look like
  an outage of the resolver or of the zone. SERVFAIL is kept for what really is a failure here
  (an unsupported policy, an alias target the lab cannot resolve, invalid record data, a CNAME
  loop), each logged with its cause. Public hosted zones are internet DNS too: not served.
- Cache: per resolver, keyed (name, type), on the lab clock. An entry keeps the *chosen* answer
  (a weighted or latency choice sticks until it expires, which is what makes failover take up to
  one TTL) and is served with the TTL counting down in whole seconds. Negative answers are
  cached for min(SOA TTL, SOA minimum); REFUSED and SERVFAIL are not cached.
- Who may ask: only sources inside the VPC (AWS's resolver is reachable only from its VPC).
  Anything else, including the harness host 127.0.0.1, is dropped silently: UDP gets no answer,
  a TCP connection is held open in silence until the client gives up.

Layers: ``choose`` (one record-set group + health + region + latency + rng -> chosen records)
and ``answer_question`` (topology + VPC + question -> ``Answer``) are pure: no sockets, no cache,
no clock. ``Resolvers`` (the lab component) adds the per-VPC caches and one selector thread that
serves every VPC's UDP and TCP sockets.
"""

from __future__ import annotations

import collections
import functools
import ipaddress
import logging
import math
import random
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from harness.errors import LabError
from harness.lab import netio
from harness.lab.latency import LatencyMatrix, matrix_from
from harness.lab.topology import HostedZone, LoadBalancer, RecordSet, Topology, Vpc

if TYPE_CHECKING:
    from harness.lab.lab import Lab

log = logging.getLogger(__name__)

DNS_PORT = 53
ALIAS_TTL = 60  # Route 53 answers alias records to AWS resources with a 60 s TTL
AWS_NAME_TTL = 60  # AWS-provided names (load balancers, endpoint private DNS)
MAX_MULTIVALUE = 8
MAX_CHAIN = 16  # CNAME/alias hops before the answer is declared a loop
UDP_PAYLOAD = 1232  # what the resolver advertises over EDNS (the DNS flag day 2020 size)
TCP_IDLE = 10.0  # wall seconds an idle client TCP connection is kept (RFC 7766 suggests ~10)
CACHE_LIMIT = 20_000  # entries per resolver; beyond that expired, then oldest, entries go
POLICIES = ("simple", "weighted", "latency", "failover", "multivalue")


# ---------------------------------------------------------------------- values


@dataclass(frozen=True)
class ResourceRecord:
    """One resource record as served: owner name (no trailing dot), type, TTL, rdata text."""

    name: str
    type: str
    ttl: int
    value: str


@dataclass(frozen=True)
class Answer:
    """What a VPC's resolver answers to one question.

    ``note`` says where the answer came from (zone and policy, AWS name, or why it failed);
    ``cached`` is True when it was served from the resolver's cache (TTLs then count down).
    """

    rcode: str  # "NOERROR", "NXDOMAIN", "REFUSED", "SERVFAIL", ...
    records: tuple[ResourceRecord, ...] = ()
    authority: tuple[ResourceRecord, ...] = ()
    note: str = ""
    cached: bool = False

    @property
    def addresses(self) -> tuple[str, ...]:
        """Return the A/AAAA values of the answer section, in order."""
        return tuple(r.value for r in self.records if r.type in ("A", "AAAA"))

    @property
    def ttl(self) -> int | None:
        """Return the smallest TTL of the answer (of the authority section for negative answers)."""
        section = self.records or self.authority
        return min((r.ttl for r in section), default=None)

    def values(self, rdtype: str) -> tuple[str, ...]:
        """Return the values of the answer records of one type."""
        return tuple(r.value for r in self.records if r.type == rdtype.upper())


class HealthOracle(Protocol):
    """Route 53's view of health, as the resolver needs it (``lab.health`` implements it)."""

    def record_healthy(self, health_check_id: str) -> bool: ...

    def load_balancer_healthy(self, lb_arn: str) -> bool: ...

    def healthy_nodes(self, lb_arn: str) -> list[str]: ...


class UnsupportedPolicy(LabError):
    """A record-set group uses a routing policy the lab does not model (or mixes policies)."""


# ---------------------------------------------------------------------- pure: policies


def routing_policy(record: RecordSet) -> str:
    """Return the routing policy of one record, from the fields Route 53 uses to tell them apart."""
    if record.set_identifier is None:
        return "simple"
    if record.weight is not None:
        return "weighted"
    if record.region:
        return "latency"
    if record.failover:
        return "failover"
    if record.multi_value:
        return "multivalue"
    if record.geo_location:
        return "geolocation"
    # moto keeps neither GeoProximityLocation nor CidrRoutingConfig: a record with a set
    # identifier and no other policy field can only be one of those two.
    return "geoproximity or cidr"


@dataclass(frozen=True)
class Choice:
    """The records one policy group answers with; ``failed_open`` when all were unhealthy."""

    policy: str
    records: tuple[RecordSet, ...]
    failed_open: bool = False


def choose(
    records: Sequence[RecordSet],
    *,
    healthy: Callable[[RecordSet], bool],
    region: str,
    latency: LatencyMatrix,
    rng: random.Random,
) -> Choice:
    """Apply Route 53's routing policy to one group (same name and type) of records.

    ``healthy`` is the record's health (health check and, for aliases with
    EvaluateTargetHealth, the target); ``region`` is the querying VPC's region.

    Raises:
        UnsupportedPolicy: geolocation, geoproximity or CIDR routing, mixed policies, or a
            group Route 53 would not accept (several simple records, two primaries).
        LabError: the latency matrix lacks a region pair.
    """
    if not records:
        raise LabError("no records to choose from")
    policies = {routing_policy(r) for r in records}
    if len(policies) > 1:
        raise UnsupportedPolicy(
            f"records {records[0].name} {records[0].type} mix routing policies "
            f"{', '.join(sorted(policies))}; Route 53 does not allow that"
        )
    policy = policies.pop()
    if policy not in POLICIES:
        raise UnsupportedPolicy(
            f"routing policy {policy} of {records[0].name} {records[0].type} is not modelled "
            "by the lab (supported: " + ", ".join(POLICIES) + ")"
        )
    if policy == "simple":
        if len(records) != 1:
            raise UnsupportedPolicy(
                f"{len(records)} simple records for {records[0].name} {records[0].type}; "
                "Route 53 allows one"
            )
        return Choice(policy, (records[0],))
    if policy == "weighted":
        return _weighted(records, healthy, rng)
    if policy == "latency":
        return _latency(records, healthy, region, latency)
    if policy == "failover":
        return _failover(records, healthy)
    return _multivalue(records, healthy, rng)


def _weight(record: RecordSet) -> int:
    return max(0, record.weight or 0)


def _pick_weighted(records: Sequence[RecordSet], rng: random.Random) -> RecordSet:
    total = sum(_weight(r) for r in records)
    if total <= 0:
        return records[rng.randrange(len(records))]
    ticket = rng.randrange(total)
    for record in records:
        ticket -= _weight(record)
        if ticket < 0:
            return record
    return records[-1]  # unreachable: tickets are below the total


def _weighted(
    records: Sequence[RecordSet], healthy: Callable[[RecordSet], bool], rng: random.Random
) -> Choice:
    # Route 53: non-zero weights first; zero-weight records only once every non-zero record is
    # unhealthy (then with equal chances); all zero = equal chances; all unhealthy = fail open.
    nonzero = [r for r in records if _weight(r) > 0]
    zero = [r for r in records if _weight(r) == 0]
    up_nonzero = [r for r in nonzero if healthy(r)]
    if up_nonzero:
        return Choice("weighted", (_pick_weighted(up_nonzero, rng),))
    up_zero = [r for r in zero if healthy(r)]
    if up_zero:
        return Choice("weighted", (up_zero[rng.randrange(len(up_zero))],))
    pool = nonzero or zero
    return Choice("weighted", (_pick_weighted(pool, rng),), failed_open=True)


def _latency(
    records: Sequence[RecordSet],
    healthy: Callable[[RecordSet], bool],
    region: str,
    latency: LatencyMatrix,
) -> Choice:
    ranked = sorted(
        records,
        key=lambda r: (latency.rtt(region, r.region or ""), r.region or "", r.set_identifier),
    )
    for record in ranked:
        if healthy(record):
            return Choice("latency", (record,))
    return Choice("latency", (ranked[0],), failed_open=True)


def _failover(records: Sequence[RecordSet], healthy: Callable[[RecordSet], bool]) -> Choice:
    roles: dict[str, list[RecordSet]] = {"PRIMARY": [], "SECONDARY": []}
    for record in records:
        role = (record.failover or "").upper()
        if role not in roles:
            raise UnsupportedPolicy(
                f"failover value {record.failover!r} of {record.name} {record.type} is neither "
                "PRIMARY nor SECONDARY"
            )
        roles[role].append(record)
    if len(roles["PRIMARY"]) > 1 or len(roles["SECONDARY"]) > 1:
        raise UnsupportedPolicy(
            f"{record.name} {record.type} has more than one PRIMARY or SECONDARY failover record"
        )
    ordered = roles["PRIMARY"] + roles["SECONDARY"]
    for record in ordered:
        if healthy(record):
            return Choice("failover", (record,))
    return Choice("failover", (ordered[0],), failed_open=True)


def _multivalue(
    records: Sequence[RecordSet], healthy: Callable[[RecordSet], bool], rng: random.Random
) -> Choice:
    up = [r for r in records if healthy(r)]
    pool, failed_open = (up, False) if up else (list(records), True)
    chosen = rng.sample(pool, min(MAX_MULTIVALUE, len(pool)))
    return Choice("multivalue", tuple(chosen), failed_open)


# ---------------------------------------------------------------------- pure: zones


def _unescape(name: str) -> str:
    r"""Return a Route 53 name with its octal escapes decoded (``\052`` is ``*``)."""
    if "\\" not in name:
        return name
    out, i = [], 0
    while i < len(name):
        if name[i] == "\\" and name[i + 1 : i + 4].isdigit():
            out.append(chr(int(name[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


def normalize_name(name: str) -> str:
    """Return a DNS name lower-cased, without the trailing dot."""
    return name.strip().rstrip(".").lower()


@dataclass
class IndexedZone:
    """One hosted zone, indexed by owner name and type."""

    zone: HostedZone
    nodes: dict[str, dict[str, list[RecordSet]]] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)  # every existing name, empty non-terminals too

    @property
    def name(self) -> str:
        return self.zone.name

    def soa(self) -> RecordSet | None:
        group = self.nodes.get(self.zone.name, {}).get("SOA")
        return group[0] if group else None

    def closest_encloser(self, name: str) -> str:
        while name != self.zone.name and name not in self.names:
            name = name.split(".", 1)[1]
        return name


class ZoneIndex:
    """The hosted zones and load balancers of one topology snapshot, indexed for lookups."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.zones: list[IndexedZone] = []
        for zone in topology.hosted_zones.values():
            if not zone.private:
                continue  # public zones are internet DNS, which the lab does not have
            indexed = IndexedZone(zone)
            indexed.names.add(zone.name)
            for record in zone.records:
                owner = _unescape(record.name)
                if owner != zone.name and not owner.endswith("." + zone.name):
                    continue  # moto accepts names outside the zone; Route 53 does not
                indexed.nodes.setdefault(owner, {}).setdefault(record.type, []).append(record)
                while owner != zone.name:
                    indexed.names.add(owner)
                    owner = owner.split(".", 1)[1]
            self.zones.append(indexed)
        # Most specific first; equal names (Route 53 refuses to associate both) by zone id.
        self.zones.sort(key=lambda z: (-len(z.name), z.zone.id))
        self._load_balancers = {lb.dns_name.lower(): lb for lb in topology.load_balancers.values()}
        self._visible: dict[str, list[IndexedZone]] = {}

    def visible(self, vpc: Vpc) -> list[IndexedZone]:
        """Return the private zones associated with ``vpc``, most specific first."""
        found = self._visible.get(vpc.id)
        if found is None:
            key = (vpc.id, vpc.region)
            found = [z for z in self.zones if key in z.zone.vpcs]
            self._visible[vpc.id] = found
        return found

    def zone_for(self, vpc: Vpc, name: str) -> IndexedZone | None:
        """Return the most specific zone visible to ``vpc`` that contains ``name``."""
        for zone in self.visible(vpc):
            if name == zone.name or name.endswith("." + zone.name):
                return zone
        return None

    def load_balancer(self, name: str) -> LoadBalancer | None:
        """Return the load balancer named ``name`` (its DNS name, maybe ``dualstack.``-prefixed)."""
        lb = self._load_balancers.get(name)
        if lb is None and name.startswith("dualstack."):
            lb = self._load_balancers.get(name[len("dualstack.") :])
        return lb


class _Fail(Exception):
    """The question cannot be answered; the message becomes the SERVFAIL note."""


def _address_key(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)


@functools.lru_cache(maxsize=8192)
def _parse_rdata(rdtype: str, value: str) -> dns.rdata.Rdata:
    # Rdata objects are immutable; zones are re-read on every miss, so parse each value once.
    return dns.rdata.from_text(
        dns.rdataclass.IN, rdtype, value, origin=dns.name.root, relativize=False
    )


@functools.lru_cache(maxsize=8192)
def _parse_name(name: str) -> dns.name.Name:
    return dns.name.from_text(name)


def _rdata_text(rdtype: str, value: str, where: str) -> str:
    try:
        return _parse_rdata(rdtype, value).to_text()
    except (dns.exception.DNSException, ValueError) as exc:
        raise _Fail(f"{where}: invalid {rdtype} value {value!r}: {exc}") from None


def _soa_minimum(value: str) -> int:
    return int(_parse_rdata("SOA", value).minimum)  # type: ignore[attr-defined]


def answer_question(
    topology: Topology,
    vpc_id: str,
    qname: str,
    qtype: str,
    *,
    health: HealthOracle,
    latency: LatencyMatrix,
    rng: random.Random,
    index: ZoneIndex | None = None,
) -> Answer:
    """Answer one question as the resolver of ``vpc_id`` would, from a topology snapshot.

    Pure apart from ``rng`` and ``health``: no cache, no clock, no sockets. Failures the
    resolver must not hide come back as SERVFAIL answers with the cause in ``note``.

    Raises:
        LabError: ``vpc_id`` is not in the topology.
    """
    vpc = topology.vpcs.get(vpc_id)
    if vpc is None:
        raise LabError(f"VPC {vpc_id} is not part of the lab's topology")
    resolution = _Resolution(
        index if index is not None and index.topology is topology else ZoneIndex(topology),
        vpc,
        health,
        latency,
        rng,
    )
    try:
        return resolution.run(normalize_name(qname), qtype.upper())
    except _Fail as exc:
        return Answer("SERVFAIL", note=str(exc))
    except LabError as exc:  # unsupported policy, missing latency pair
        return Answer("SERVFAIL", note=str(exc))


@dataclass(frozen=True)
class _Step:
    rcode: str
    records: tuple[ResourceRecord, ...] = ()
    authority: tuple[ResourceRecord, ...] = ()
    cname: str | None = None  # the next name to follow
    note: str = ""


class _Resolution:
    """One question, answered for one VPC (helper of ``answer_question``)."""

    def __init__(
        self,
        index: ZoneIndex,
        vpc: Vpc,
        health: HealthOracle,
        latency: LatencyMatrix,
        rng: random.Random,
    ) -> None:
        self.index = index
        self.topology = index.topology
        self.vpc = vpc
        self.health = health
        self.latency = latency
        self.rng = rng
        self.hops = 0

    def _hop(self, what: str) -> None:
        self.hops += 1
        if self.hops > MAX_CHAIN:
            raise _Fail(f"more than {MAX_CHAIN} CNAME/alias hops resolving {what} (a loop?)")

    def run(self, qname: str, qtype: str) -> Answer:
        chain: list[ResourceRecord] = []
        name = qname
        notes: list[str] = []
        while True:
            self._hop(qname)
            zone = self.index.zone_for(self.vpc, name)
            if zone is None:
                step = self._aws_name(name, qtype)
                if step is None:
                    why = (
                        f"{name} is outside every zone {self.vpc.id} can see and the lab has no "
                        "internet"
                    )
                    if chain:
                        why = f"CNAME target {why}"
                    return Answer("REFUSED", note=why)
            else:
                step = self._in_zone(zone, name, qtype)
            notes.append(step.note)
            if step.cname is not None:
                chain.extend(step.records)
                name = step.cname
                continue
            return Answer(
                step.rcode, tuple(chain) + step.records, step.authority, note="; ".join(notes)
            )

    # ------------------------------------------------------------------ inside a zone

    def _in_zone(self, zone: IndexedZone, name: str, qtype: str) -> _Step:
        types = zone.nodes.get(name)
        where = f"zone {zone.name}"
        if types is None:
            if name in zone.names:
                return self._negative(zone, "NOERROR", f"{where}: {name} has no records (NODATA)")
            encloser = zone.closest_encloser(name)
            types = zone.nodes.get("*." + encloser)
            if types is None:
                return self._negative(zone, "NXDOMAIN", f"{where}: no record {name} (NXDOMAIN)")
            where += f" wildcard *.{encloser}"
        group = types.get(qtype)
        if group:
            records, note = self._group(name, qtype, group, where)
            if not records:
                return self._negative(zone, "NOERROR", f"{note}: no {qtype} data (NODATA)")
            return _Step("NOERROR", records, note=note)
        if qtype != "CNAME" and types.get("CNAME"):
            records, note = self._group(name, "CNAME", types["CNAME"], where)
            target = normalize_name(records[0].value)
            return _Step("NOERROR", records[:1], cname=target, note=note)
        return self._negative(zone, "NOERROR", f"{where}: {name} has no {qtype} (NODATA)")

    def _negative(self, zone: IndexedZone, rcode: str, note: str) -> _Step:
        soa = zone.soa()
        if soa is None or not soa.values:
            return _Step(rcode, note=note)
        value = _rdata_text("SOA", soa.values[0], f"zone {zone.name} SOA")
        ttl = min(soa.ttl if soa.ttl is not None else 0, _soa_minimum(value))
        return _Step(rcode, authority=(ResourceRecord(zone.name, "SOA", ttl, value),), note=note)

    def _group(
        self, owner: str, rdtype: str, group: Sequence[RecordSet], where: str
    ) -> tuple[tuple[ResourceRecord, ...], str]:
        choice = choose(
            group, healthy=self._healthy, region=self.vpc.region, latency=self.latency, rng=self.rng
        )
        note = f"{where}: {choice.policy}"
        if choice.policy != "simple":
            note += " " + ",".join(str(r.set_identifier) for r in choice.records)
        if choice.failed_open:
            note += " (all unhealthy: answered as if healthy)"
        values: list[ResourceRecord] = []
        for record in choice.records:
            if record.alias_dns_name:
                values.extend(self._alias(owner, rdtype, record))
            else:
                if record.ttl is None:
                    raise _Fail(f"{where}: record {record.name} {rdtype} has no TTL")
                values.extend(
                    ResourceRecord(owner, rdtype, record.ttl, _rdata_text(rdtype, v, where))
                    for v in record.values
                )
        if not values:
            return (), note
        # One RRset has one TTL: the smallest of the chosen records.
        ttl = min(r.ttl for r in values)
        unique = dict.fromkeys(r.value for r in values)
        return tuple(ResourceRecord(owner, rdtype, ttl, v) for v in unique), note

    def _alias(self, owner: str, rdtype: str, record: RecordSet) -> list[ResourceRecord]:
        target = normalize_name(record.alias_dns_name or "")
        self._hop(target)
        lb = self.index.load_balancer(target)
        if lb is not None:
            return [
                ResourceRecord(owner, rdtype, ALIAS_TTL, a) for a in self._lb_addresses(lb, rdtype)
            ]
        endpoint = self._endpoint_addresses(target)
        if endpoint is not None:
            if rdtype != "A":
                return []
            return [ResourceRecord(owner, "A", ALIAS_TTL, a) for a in endpoint]
        if self.index.zone_for(self.vpc, target) is not None:
            sub = self.run(target, rdtype)
            found = [r for r in sub.records if r.type == rdtype]
            if sub.rcode != "NOERROR":
                raise _Fail(f"alias {record.name} -> {target}: the target answers {sub.rcode}")
            return [ResourceRecord(owner, rdtype, r.ttl, r.value) for r in found]
        raise _Fail(
            f"alias {record.name} -> {target}: the lab resolves aliases to network load "
            "balancers, VPC endpoints and records in zones the VPC sees; this target is none of "
            "those (CloudFront, S3, API Gateway and similar targets are internet-facing)"
        )

    def _lb_addresses(self, lb: LoadBalancer, rdtype: str) -> list[str]:
        if lb.type != "network" or not lb.nodes:
            raise _Fail(
                f"load balancer {lb.name} is of type {lb.type}; the lab gives addresses only to "
                "network load balancers"
            )
        if rdtype != "A":
            return []  # the lab's load balancers are IPv4 only
        nodes = list(self.health.healthy_nodes(lb.arn)) or list(lb.nodes.values())
        return sorted(set(nodes), key=_address_key)

    def _healthy(self, record: RecordSet) -> bool:
        if record.health_check_id and not self.health.record_healthy(record.health_check_id):
            return False
        if record.alias_dns_name and record.alias_evaluate_target_health:
            target = normalize_name(record.alias_dns_name)
            lb = self.index.load_balancer(target)
            if lb is not None:
                return bool(self.health.load_balancer_healthy(lb.arn))
            zone = self.index.zone_for(self.vpc, target)
            group = zone.nodes.get(target, {}).get(record.type) if zone is not None else None
            if group and self.hops < MAX_CHAIN:
                # An alias to a record set is healthy when any record of that set is.
                self.hops += 1
                try:
                    return any(self._healthy(r) for r in group)
                finally:
                    self.hops -= 1
        return True

    # ------------------------------------------------------------------ AWS-provided names

    def _aws_name(self, name: str, qtype: str) -> _Step | None:
        lb = self.index.load_balancer(name)
        if lb is not None:
            nodes = self._lb_addresses(lb, qtype)
            records = tuple(ResourceRecord(name, "A", AWS_NAME_TTL, a) for a in nodes)
            return _Step("NOERROR", records, note=f"load balancer {lb.name}")
        note = "interface endpoint private DNS"
        addresses = self._private_dns(name)
        if addresses is None:
            note = "VPC endpoint DNS name"
            addresses = self._endpoint_addresses(name)
            if addresses is None:
                return None
        if qtype != "A":
            return _Step("NOERROR", note=f"{note}: no {qtype} data (NODATA)")
        return _Step(
            "NOERROR",
            tuple(ResourceRecord(name, "A", AWS_NAME_TTL, a) for a in addresses),
            note=note,
        )

    def _private_dns(self, name: str) -> list[str] | None:
        """Return the ENI addresses of this VPC's endpoint whose private DNS covers ``name``."""
        for endpoint in self.topology.endpoints.values():
            if (
                endpoint.vpc_id != self.vpc.id
                or endpoint.type.lower() != "interface"
                or not endpoint.private_dns_enabled
            ):
                continue
            prefix = f"com.amazonaws.{endpoint.region}."
            if not endpoint.service_name.startswith(prefix):
                continue
            service = endpoint.service_name[len(prefix) :]
            base = f"{service}.{endpoint.region}.amazonaws.com"
            # execute-api's private DNS is a wildcard: every API id under the service name.
            if name == base or (service == "execute-api" and name.endswith("." + base)):
                return sorted(endpoint.addresses.values(), key=_address_key)
        return None

    def _endpoint_addresses(self, name: str) -> list[str] | None:
        """Return the addresses behind an endpoint-specific DNS name, or None if it is not one.

        ``vpce-<id>-<suffix>[-<az>].<service>.<region>.vpce.amazonaws.com`` and, for private
        APIs, ``<api-id>-vpce-<id>.execute-api.<region>.amazonaws.com``; both are public DNS
        names of private addresses, so they resolve from any VPC.
        """
        labels = name.split(".")
        zone = None
        if len(labels) >= 5 and labels[-2:] == ["amazonaws", "com"] and labels[-3] == "vpce":
            first, service, region = labels[0], ".".join(labels[1:-4]), labels[-4]
            if not first.startswith("vpce-"):
                return None
            parts = first.split("-")
            if len(parts) < 3:
                return None
            endpoint_id = "-".join(parts[:2])
            zone = "-".join(parts[3:]) or None
        elif len(labels) == 5 and labels[1] == "execute-api" and labels[3:] == ["amazonaws", "com"]:
            api_and_endpoint, service, region = labels[0], "execute-api", labels[2]
            if "-vpce-" not in api_and_endpoint:
                return None
            endpoint_id = "vpce-" + api_and_endpoint.split("-vpce-", 1)[1]
        else:
            return None
        endpoint = self.topology.endpoints.get(endpoint_id)
        if (
            endpoint is None
            or endpoint.region != region
            or endpoint.service_name != f"com.amazonaws.{region}.{service}"
        ):
            return None
        addresses = [
            address
            for subnet_id, address in endpoint.addresses.items()
            if zone is None
            or (
                subnet_id in self.topology.subnets
                and self.topology.subnets[subnet_id].availability_zone == zone
            )
        ]
        return sorted(addresses, key=_address_key) or None


# ---------------------------------------------------------------------- cache


@dataclass
class _Entry:
    """A cached answer: original TTLs, when it was stored, and its RRsets ready for the wire."""

    answer: Answer
    stored_at: float
    expires_at: float
    rcode: dns.rcode.Rcode
    answer_sets: list[dns.rrset.RRset]
    authority_sets: list[dns.rrset.RRset]
    # The sections as last served, keyed by whole seconds elapsed: building an RRset hashes its
    # rdata, so hits within the same second reuse one rendering.
    _rendered: tuple[int, list[dns.rrset.RRset], list[dns.rrset.RRset]] | None = None

    @classmethod
    def build(cls, answer: Answer, now: float) -> _Entry:
        lifetime = 0
        if answer.rcode in ("NOERROR", "NXDOMAIN"):
            ttls = [r.ttl for r in answer.records + answer.authority]
            lifetime = min(ttls) if ttls else 0
        return cls(
            answer=answer,
            stored_at=now,
            expires_at=now + lifetime,
            rcode=dns.rcode.from_text(answer.rcode),
            answer_sets=_rrsets(answer.records),
            authority_sets=_rrsets(answer.authority),
        )

    @property
    def cacheable(self) -> bool:
        return self.expires_at > self.stored_at

    def served(self, now: float, *, hit: bool) -> Answer:
        """Return the answer with TTLs counted down to ``now`` (whole seconds)."""
        elapsed = max(0.0, now - self.stored_at)
        if not hit:
            return self.answer
        return replace(
            self.answer,
            records=tuple(replace(r, ttl=_remaining(r.ttl, elapsed)) for r in self.answer.records),
            authority=tuple(
                replace(r, ttl=_remaining(r.ttl, elapsed)) for r in self.answer.authority
            ),
            cached=True,
        )

    def sections(self, now: float) -> tuple[list[dns.rrset.RRset], list[dns.rrset.RRset]]:
        """Return the answer and authority RRsets with TTLs counted down to ``now``."""
        elapsed = max(0.0, now - self.stored_at)
        # floor(ttl - elapsed) == ttl - ceil(elapsed) for integer TTLs: one key for all sets.
        key = math.ceil(elapsed)
        rendered = self._rendered
        if rendered is None or rendered[0] != key:
            rendered = (
                key,
                [_with_ttl(r, _remaining(r.ttl, elapsed)) for r in self.answer_sets],
                [_with_ttl(r, _remaining(r.ttl, elapsed)) for r in self.authority_sets],
            )
            self._rendered = rendered
        return rendered[1], rendered[2]


def _with_ttl(rrset: dns.rrset.RRset, ttl: int) -> dns.rrset.RRset:
    copy = rrset.copy()  # a shallow copy: the rdata are shared, not re-hashed
    copy.ttl = ttl
    return copy


def _remaining(ttl: int, elapsed: float) -> int:
    return max(0, math.floor(ttl - elapsed))


def _rrsets(records: Iterable[ResourceRecord]) -> list[dns.rrset.RRset]:
    groups: dict[tuple[str, str], tuple[int, list[str]]] = {}
    for record in records:
        groups.setdefault((record.name, record.type), (record.ttl, []))[1].append(record.value)
    return [
        _rrset(name, rdtype, ttl, tuple(values)) for (name, rdtype), (ttl, values) in groups.items()
    ]


@functools.lru_cache(maxsize=4096)
def _rrset(name: str, rdtype: str, ttl: int, values: tuple[str, ...]) -> dns.rrset.RRset:
    # Shared between entries and never mutated (served copies get their own TTL): the same
    # negative answer (one SOA) or NLB address set is built once, not on every miss.
    return dns.rrset.from_rdata_list(
        _parse_name(name), ttl, [_parse_rdata(rdtype, v) for v in values]
    )


# ---------------------------------------------------------------------- one VPC's resolver


class VpcResolver:
    """The resolver of one VPC: its cache, who may ask, and the wire protocol."""

    def __init__(self, owner: Resolvers, vpc: Vpc) -> None:
        self.owner = owner
        self.vpc = vpc
        self.udp: socket.socket | None = None
        self.tcp: socket.socket | None = None
        self._cache: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()
        self._admitted: dict[str, bool] = {}

    @property
    def address(self) -> str:
        return self.vpc.resolver_address

    def bind(self, ports: Any) -> None:
        """Bind the UDP and TCP sockets at the VPC's resolver address (non-blocking)."""
        udp = netio.bind_udp(self.address, DNS_PORT, ports)
        try:
            tcp = netio.bind_tcp(self.address, DNS_PORT, ports)
        except OSError:
            udp.close()
            raise
        udp.setblocking(False)
        tcp.setblocking(False)
        self.udp, self.tcp = udp, tcp

    def admits(self, peer_ip: str) -> bool:
        """Return whether a loopback peer stands for an address inside this VPC."""
        known = self._admitted.get(peer_ip)
        if known is None:
            try:
                vpc_address = netio.peer_vpc_address(peer_ip)
            except ValueError:
                vpc_address = None
            known = vpc_address is not None and ipaddress.IPv4Address(vpc_address) in self.vpc.cidr
            if len(self._admitted) > 4096:
                self._admitted.clear()
            self._admitted[peer_ip] = known
        return known

    def flush(self) -> None:
        with self._lock:
            self._cache.clear()

    def lookup(self, qname: str, qtype: str) -> tuple[_Entry, float, bool]:
        """Return the entry answering (qname, qtype) (resolving on a miss), now, and hit."""
        key = (qname, qtype)
        clock = self.owner.lab.clock
        with self._lock:
            now = clock.now()
            entry = self._cache.get(key)
            if entry is not None and now < entry.expires_at:
                return entry, now, True
            answer = self.owner.answer_uncached(self, qname, qtype)
            now = clock.now()
            entry = _Entry.build(answer, now)
            if entry.cacheable:
                if len(self._cache) >= CACHE_LIMIT:
                    self._evict(now)
                self._cache[key] = entry
            else:
                self._cache.pop(key, None)
            return entry, now, False

    def _evict(self, now: float) -> None:
        for key in [k for k, e in self._cache.items() if e.expires_at <= now]:
            del self._cache[key]
        if len(self._cache) >= CACHE_LIMIT:
            for key in list(self._cache)[: CACHE_LIMIT // 2]:
                del self._cache[key]

    def answer(self, qname: str, qtype: str) -> Answer:
        entry, now, hit = self.lookup(qname, qtype)
        return entry.served(now, hit=hit)

    def handle(self, wire: bytes, peer_ip: str, *, tcp: bool) -> bytes | None:
        """Return the response to one DNS message, or None to drop it."""
        if not self.admits(peer_ip):
            return None
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return _formerr(wire)
        if query.flags & dns.flags.QR:
            return None  # never answer a response
        response = dns.message.make_response(
            query, recursion_available=True, our_payload=UDP_PAYLOAD
        )
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response.to_wire()
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        if question.rdtype in (dns.rdatatype.ANY, dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            self.owner.report(
                self, f"{dns.rdatatype.to_text(question.rdtype)} queries are not modelled"
            )
            response.set_rcode(dns.rcode.NOTIMP)
            return response.to_wire()
        qname = normalize_name(question.name.to_text())
        entry, now, _ = self.lookup(qname, dns.rdatatype.to_text(question.rdtype))
        response.set_rcode(entry.rcode)
        answer_sets, authority_sets = entry.sections(now)
        response.answer.extend(answer_sets)
        response.authority.extend(authority_sets)
        limit = 65535 if tcp else max(512, query.payload if query.edns >= 0 else 512)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(
                query, recursion_available=True, our_payload=UDP_PAYLOAD
            )
            truncated.set_rcode(entry.rcode)
            truncated.flags |= dns.flags.TC
            return truncated.to_wire()

    def close(self) -> None:
        for sock in (self.udp, self.tcp):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        self.udp = self.tcp = None


def _formerr(wire: bytes) -> bytes | None:
    """Return a bare FORMERR for an unparsable message that at least has a header."""
    if len(wire) < 12:
        return None
    (query_id, flags) = struct.unpack("!HH", wire[:4])
    if flags & 0x8000:
        return None
    opcode = flags & 0x7800
    return struct.pack("!HHHHHH", query_id, 0x8000 | opcode | dns.rcode.FORMERR, 0, 0, 0, 0)


# ---------------------------------------------------------------------- the event loop


@dataclass
class _TcpConn:
    sock: socket.socket
    peer_ip: str
    resolver: VpcResolver | None  # None: dropped (held open in silence)
    deadline: float  # monotonic
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    writing: bool = False


class _Loop:
    """One selector thread serving every resolver's UDP and TCP sockets."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._calls: collections.deque[Callable[[], None]] = collections.deque()
        self._conns: dict[socket.socket, _TcpConn] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="lab-resolvers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self.call_soon(lambda: None)
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for conn in list(self._conns.values()):
            self._close_conn(conn)
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop thread (thread-safe)."""
        self._calls.append(callback)
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the loop is already awake (buffer full) or stopped

    def run_sync(self, callback: Callable[[], None], *, timeout: float = 10.0) -> None:
        """Run ``callback`` on the loop thread and wait for it (inline if not running there).

        Raises:
            LabError: the loop did not run it within ``timeout`` wall seconds.
        """
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            callback()
            return
        done = threading.Event()
        errors: list[BaseException] = []

        def wrapped() -> None:
            try:
                callback()
            except BaseException as exc:
                errors.append(exc)
            finally:
                done.set()

        self.call_soon(wrapped)
        if not done.wait(timeout):
            raise LabError(f"the resolver loop did not run a change within {timeout:g} s")
        if errors:
            raise errors[0]

    def add(self, resolver: VpcResolver) -> None:
        if resolver.udp is not None:
            self.selector.register(resolver.udp, selectors.EVENT_READ, ("udp", resolver))
        if resolver.tcp is not None:
            self.selector.register(resolver.tcp, selectors.EVENT_READ, ("listen", resolver))

    def remove(self, resolver: VpcResolver) -> None:
        for sock in (resolver.udp, resolver.tcp):
            if sock is not None:
                try:
                    self.selector.unregister(sock)
                except (KeyError, ValueError):
                    pass
        for conn in [c for c in self._conns.values() if c.resolver is resolver]:
            self._close_conn(conn)
        resolver.close()

    def _run(self) -> None:
        last_sweep = time.monotonic()
        while not self._stopping:
            try:
                events = self.selector.select(timeout=1.0)
            except OSError:
                if self._stopping:
                    return
                raise
            for key, mask in events:
                kind, target = key.data
                try:
                    if kind == "wake":
                        self._drain_wake()
                    elif kind == "udp":
                        self._on_udp(target, key.fileobj)  # type: ignore[arg-type]
                    elif kind == "listen":
                        self._on_accept(target, key.fileobj)  # type: ignore[arg-type]
                    else:
                        self._on_conn(target, mask)
                except Exception:
                    log.exception("resolver loop: handling a %s event failed", kind)
            while self._calls:
                callback = self._calls.popleft()
                try:
                    callback()
                except Exception:
                    log.exception("resolver loop: a queued call failed")
            now = time.monotonic()
            if now - last_sweep >= 1.0:
                last_sweep = now
                for conn in [c for c in self._conns.values() if c.deadline <= now]:
                    self._close_conn(conn)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _on_udp(self, resolver: VpcResolver, sock: socket.socket) -> None:
        for _ in range(64):  # bounded, so one busy VPC cannot starve the others
            try:
                data, peer = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            response = resolver.handle(data, peer[0], tcp=False)
            if response is not None:
                try:
                    sock.sendto(response, peer)
                except OSError:
                    pass  # the client went away; UDP has nobody to tell

    def _on_accept(self, resolver: VpcResolver, listener: socket.socket) -> None:
        for _ in range(64):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            admitted = resolver.admits(peer[0])
            hold = TCP_IDLE if admitted else netio.MAX_SILENT_HOLD
            conn = _TcpConn(sock, peer[0], resolver if admitted else None, time.monotonic() + hold)
            self._conns[sock] = conn
            self.selector.register(sock, selectors.EVENT_READ, ("conn", conn))

    def _on_conn(self, conn: _TcpConn, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(conn)
        if not mask & selectors.EVENT_READ:
            return
        try:
            data = conn.sock.recv(65535)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close_conn(conn)
            return
        if not data:
            self._close_conn(conn)
            return
        if conn.resolver is None:
            return  # dropped: swallow whatever the client sends until it gives up
        conn.deadline = time.monotonic() + TCP_IDLE
        conn.inbuf += data
        while len(conn.inbuf) >= 2:
            size = int.from_bytes(conn.inbuf[:2], "big")
            if len(conn.inbuf) < 2 + size:
                break
            message = bytes(conn.inbuf[2 : 2 + size])
            del conn.inbuf[: 2 + size]
            response = conn.resolver.handle(message, conn.peer_ip, tcp=True)
            if response is not None:
                conn.outbuf += len(response).to_bytes(2, "big") + response
        self._flush(conn)

    def _flush(self, conn: _TcpConn) -> None:
        if conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
                del conn.outbuf[:sent]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close_conn(conn)
                return
        want_write = bool(conn.outbuf)
        if want_write != conn.writing:
            conn.writing = want_write
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
            self.selector.modify(conn.sock, events, ("conn", conn))

    def _close_conn(self, conn: _TcpConn) -> None:
        self._conns.pop(conn.sock, None)
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            conn.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------- the component


class _LabHealth:
    """Health as the resolvers see it: the override, else ``lab.health``, else all healthy."""

    def __init__(self, owner: Resolvers, topology: Topology) -> None:
        self.owner = owner
        self.topology = topology

    def _source(self) -> HealthOracle | None:
        source = self.owner.health_override or self.owner.lab.health
        if source is None:
            self.owner.warn_no_health()
        return source

    def record_healthy(self, health_check_id: str) -> bool:
        source = self._source()
        return True if source is None else bool(source.record_healthy(health_check_id))

    def load_balancer_healthy(self, lb_arn: str) -> bool:
        source = self._source()
        return True if source is None else bool(source.load_balancer_healthy(lb_arn))

    def healthy_nodes(self, lb_arn: str) -> list[str]:
        source = self._source()
        if source is None:
            lb = self.topology.load_balancers.get(lb_arn)
            return list(lb.nodes.values()) if lb is not None else []
        return list(source.healthy_nodes(lb_arn))


class Resolvers:
    """The lab component serving one Route 53 Resolver per VPC (``lab.resolvers``).

    Health comes from ``health_override`` when set (a ``HealthOracle``: tests and tools that
    model health themselves), else from ``lab.health``, else everything is healthy (with one
    warning). ``seed`` makes weighted and multivalue draws reproducible; ``latency`` (or a
    ``lab.latency`` matrix, mapping or JSON/TOML path) replaces the default latency matrix.
    """

    name = "resolvers"

    def __init__(self, lab: Lab, *, seed: int = 0, latency: LatencyMatrix | None = None) -> None:
        self.lab = lab
        self.rng = random.Random(seed)
        # A lab may carry latency overrides (a matrix, a nested mapping or a JSON/TOML path).
        self.latency: LatencyMatrix = latency or matrix_from(getattr(lab, "latency", None))
        self.health_override: HealthOracle | None = None
        self._resolvers: dict[str, VpcResolver] = {}
        self._failed: set[str] = set()
        self._topology: Topology | None = None
        self._index: ZoneIndex | None = None
        self._index_lock = threading.Lock()
        self._update_lock = threading.Lock()
        self._loop: _Loop | None = None
        self._warned_no_health = False
        self._reported: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._loop = _Loop()
        self._loop.start()
        self.lab.resolvers = self

    def update(self, topology: Topology) -> None:
        """Serve a resolver for every VPC with DNS support; close those of VPCs that are gone."""
        with self._update_lock:
            self._topology = topology
            wanted = {v.id: v for v in topology.vpcs.values() if v.dns_support}
            for vpc_id in [v for v in self._resolvers if v not in wanted]:
                resolver = self._resolvers.pop(vpc_id)
                log.info("resolver of %s at %s stopped", vpc_id, resolver.address)
                self._on_loop(functools.partial(self._remove, resolver))
            for vpc_id, vpc in wanted.items():
                existing = self._resolvers.get(vpc_id)
                if existing is not None:
                    existing.vpc = vpc
                    continue
                resolver = VpcResolver(self, vpc)
                try:
                    resolver.bind(self.lab.ports)
                except (OSError, LabError) as exc:
                    if vpc_id not in self._failed:
                        self._failed.add(vpc_id)
                        log.error(
                            "cannot serve the resolver of %s at %s: %s",
                            vpc_id,
                            vpc.resolver_address,
                            exc,
                        )
                    continue
                self._failed.discard(vpc_id)
                self._resolvers[vpc_id] = resolver
                self._on_loop(functools.partial(self._add, resolver))

    def _add(self, resolver: VpcResolver) -> None:
        if self._loop is not None:
            self._loop.add(resolver)

    def _remove(self, resolver: VpcResolver) -> None:
        if self._loop is not None:
            self._loop.remove(resolver)
        else:
            resolver.close()

    def _on_loop(self, callback: Callable[[], None]) -> None:
        # Synchronous: a removed VPC's sockets must be closed before a new VPC with the same
        # CIDR (a redeployed stack) binds the same resolver address.
        if self._loop is None:
            callback()
        else:
            self._loop.run_sync(callback)

    def stop(self) -> None:
        with self._update_lock:
            resolvers = list(self._resolvers.values())
            self._resolvers.clear()
        if self._loop is not None:
            self._loop.stop()
            self._loop = None
        for resolver in resolvers:
            resolver.close()
        if self.lab.resolvers is self:
            self.lab.resolvers = None

    # ------------------------------------------------------------------ for clients and tests

    def sync(self) -> None:
        """Bring the served VPCs in line with the current control plane now."""
        self.update(self.lab.topology())

    def resolver(self, vpc_id: str) -> VpcResolver:
        """Return the resolver of ``vpc_id``.

        Raises:
            LabError: the VPC is unknown, has DNS support disabled, or could not be served.
        """
        found = self._resolvers.get(vpc_id)
        if found is None:
            self.sync()
            found = self._resolvers.get(vpc_id)
        if found is None:
            raise LabError(
                f"no resolver serves VPC {vpc_id} (unknown VPC, DNS support disabled, or its "
                "address could not be bound)"
            )
        return found

    def address(self, vpc_id: str) -> tuple[str, int]:
        """Return the (loopback host, port) where the resolver of ``vpc_id`` listens."""
        resolver = self.resolver(vpc_id)
        return netio.loopback_endpoint(resolver.address, DNS_PORT, self.lab.ports)

    def served(self) -> Mapping[str, str]:
        """Return VPC id -> resolver VPC address for every VPC currently served."""
        return {vpc_id: r.address for vpc_id, r in self._resolvers.items()}

    def resolve(self, vpc_id: str, name: str, rdtype: str | int = "A") -> Answer:
        """Answer a question as the VPC's resolver does, through its cache (in-process).

        Raises:
            LabError: no resolver serves the VPC, or ``rdtype`` is not a DNS type.
        """
        try:
            code = (
                dns.rdatatype.RdataType.make(rdtype)
                if isinstance(rdtype, int)
                else dns.rdatatype.from_text(rdtype)
            )
            qtype = dns.rdatatype.to_text(code)
        except (dns.exception.DNSException, ValueError) as exc:
            raise LabError(f"not a DNS record type: {rdtype!r}") from exc
        return self.resolver(vpc_id).answer(normalize_name(name), qtype)

    def flush(self, vpc_id: str | None = None) -> None:
        """Empty the cache of one VPC's resolver, or of every resolver."""
        targets = [self.resolver(vpc_id)] if vpc_id else list(self._resolvers.values())
        for resolver in targets:
            resolver.flush()

    def set_latency(self, latency: LatencyMatrix) -> None:
        """Use another latency matrix for answers resolved from now on (caches keep theirs)."""
        self.latency = latency

    # ------------------------------------------------------------------ resolution

    def snapshot(self) -> Topology:
        """Return the newest control-plane snapshot (read-your-writes for API changes)."""
        topology = self._topology
        if topology is None or topology.version != self.lab.state_version:
            topology = self.lab.topology()
        return topology

    def _zone_index(self, topology: Topology) -> ZoneIndex:
        with self._index_lock:
            if self._index is None or self._index.topology is not topology:
                self._index = ZoneIndex(topology)
            return self._index

    def answer_uncached(self, resolver: VpcResolver, qname: str, qtype: str) -> Answer:
        """Resolve a question for ``resolver``'s VPC without its cache (a cache miss)."""
        try:
            topology = self.snapshot()
            answer = answer_question(
                topology,
                resolver.vpc.id,
                qname,
                qtype,
                health=_LabHealth(self, topology),
                latency=self.latency,
                rng=self.rng,
                index=self._zone_index(topology),
            )
        except Exception as exc:  # the resolver answers SERVFAIL rather than dying
            log.exception("resolver of %s failed on %s %s", resolver.vpc.id, qname, qtype)
            return Answer("SERVFAIL", note=f"internal error: {exc}")
        if answer.rcode == "SERVFAIL":
            self.report(resolver, answer.note)
        return answer

    def report(self, resolver: VpcResolver, note: str) -> None:
        """Log a failure once per VPC and cause (SERVFAILs are not cached, so they repeat)."""
        key = (resolver.vpc.id, note)
        if key in self._reported:
            return
        if len(self._reported) > 1000:
            self._reported.clear()
        self._reported.add(key)
        log.error("resolver of %s: SERVFAIL: %s", resolver.vpc.id, note)

    def warn_no_health(self) -> None:
        if not self._warned_no_health:
            self._warned_no_health = True
            log.warning(
                "the lab has no health pipeline (lab.health is None): the resolvers treat "
                "every health check and load balancer as healthy"
            )
