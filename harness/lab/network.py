"""Reachability in the lab: may a packet from one VPC address reach another, given live state?

Every data-plane server the lab runs (resolvers, NLB listeners, SSH on bastions) asks
``lab.network.check(src, dst, port, protocol)`` for each new connection or datagram and drops it
silently when the answer is no, so a client times out exactly as it would on AWS. The verdict is
computed from ``lab.topology()`` alone, i.e. from moto's live state: a route deleted, a security
group rule revoked or an instance stopped through the EC2 API takes effect on the next
connection, with no lab-specific switch.

The path model, in packet order:

1. **Endpoints answer.** Both addresses must belong to a network interface (an address no
   interface owns is dropped, as on AWS); an instance that is not ``running`` neither sends nor
   answers; a load balancer node answers only while its load balancer is ``active``.
2. **Source egress.** One of the source interface's security groups must allow the protocol and
   port out to the destination.
3. **Forward routing.** Longest-prefix match in the route table of the source's subnet: the
   ``local`` route delivers inside the VPC; a ``tgw`` route must point at an existing transit
   gateway to which the source VPC has an ``available`` VPC attachment in its region. The
   transit gateway looks the destination up in the route table *associated* with the attachment
   the packet arrived on (no association: dropped). An ``active`` route to the destination VPC's
   attachment delivers it; a route to an ``available`` peering attachment carries it to the peer
   region's gateway, which looks it up again in the table associated with the same attachment
   there and must deliver it to the destination VPC's attachment. Blackhole routes drop;
   deleted routes are gone. The lab models one peering hop: a packet that arrived over a peering
   attachment and would leave over another one is dropped (transit gateway peering is treated
   as non-transitive, so a path through a third region's gateway is denied).
4. **Destination ingress.** One of the destination interface's security groups must admit the
   protocol and port from the source address, or from one of the source's security groups when
   both are in the same VPC (cross-VPC security-group references are not modelled).
5. **Return routing.** TCP needs the SYN-ACK back (and UDP the answer), so the same routing walk
   must succeed from the destination's subnet to the source. Security groups are stateful, so
   the return traffic is not checked against them again.

What the lab does not model, on purpose: network ACLs (moto's default ACLs allow everything,
which is also what the stack deploys), the availability-zone affinity of transit gateway VPC
attachments, appliance mode, and security-group references across VPCs. An interface with no
security groups admits nothing, except a network load balancer node: an NLB without security
groups passes all traffic, as on AWS. The Route 53 Resolver at a VPC's base+2 address has no
interface; it answers DNS (tcp/udp 53) from inside its own VPC only, and security groups do not
filter traffic to it, as on AWS.

**The harness host** (``src=None``: the machine running the harness, loopback 127.0.0.1) is
modelled as an operator whose traffic enters the destination's VPC the way an SSM
port-forwarding session does: it needs no route (it is already inside the destination VPC) and
carries no security group, and a destination rule admits it only if the rule admits *every*
address of the destination VPC (a CIDR rule containing the whole VPC CIDR, e.g. ``0.0.0.0/0`` or
the bastion group's "22 from the VPC CIDR"). So SSH from the harness to a bastion works, like
``ssh`` over an SSM session does on AWS, and revoking the destination VPC's own CIDR from a
group cuts the harness off too; rules naming a narrower CIDR or another group do not admit it.
The alternative (an operator outside every VPC matched only against ``0.0.0.0/0`` rules) would
make the bastions unreachable over SSH from the harness with the stack's own security groups.

ICMP is checked with ``port`` as the ICMP type (8 = echo request).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from harness.errors import LabError
from harness.lab.topology import Interface, Rule, TgwAttachment, Topology

if TYPE_CHECKING:
    from harness.lab.lab import Lab

PROTOCOLS = ("tcp", "udp", "icmp")
# IANA protocol numbers a security-group rule may carry instead of a name.
_PROTOCOL_NUMBERS = {"6": "tcp", "17": "udp", "1": "icmp"}
_ALL_PROTOCOLS = ("-1", "all")
RESOLVER_PORT = 53
MAX_MEMO = 65536  # verdicts kept per topology version; far more than the lab's address pairs


@dataclass(frozen=True)
class Verdict:
    """Whether a connection is allowed and, in plain language, why (the failing link if not)."""

    allowed: bool
    reason: str


@dataclass(frozen=True)
class Evaluation:
    """A verdict with the hops that led to it, in packet order."""

    verdict: Verdict
    hops: tuple[str, ...]


def evaluate(
    topology: Topology, src: str | None, dst: str, port: int, protocol: str = "tcp"
) -> Evaluation:
    """Evaluate a connection from ``src`` (None: the harness host) to ``dst:port`` on a topology.

    Pure: depends on the topology and the arguments only, so verdicts can be cached per
    topology version.

    Raises:
        LabError: an address is not IPv4, the protocol is not tcp/udp/icmp, or the port is
            out of range (the message names the bad value).
    """
    proto = _protocol(protocol)
    _check_port(port, proto)
    _address(dst, "destination")
    if src is not None:
        _address(src, "source")
    walk = _Walk(topology, proto, port)
    try:
        reason = walk.run(src, dst)
    except _Denied as denied:
        walk.hops.append(f"DENIED: {denied.reason}")
        return Evaluation(Verdict(False, denied.reason), tuple(walk.hops))
    walk.hops.append(f"ALLOWED: {reason}")
    return Evaluation(Verdict(True, reason), tuple(walk.hops))


class Network:
    """The lab's reachability model (component ``network``): ``check`` and ``trace``."""

    name = "network"

    def __init__(self, lab: Lab) -> None:
        self._lab = lab
        # (topology version, verdicts): swapped as a whole, so readers on other threads always
        # see a memo that matches the version it is tagged with.
        self._memo: tuple[int, dict[tuple[Any, ...], Verdict]] = (-1, {})

    def start(self) -> None:
        self._lab.network = self

    def update(self, topology: Topology) -> None:
        """Forget verdicts of older topology versions (they are never looked up again)."""
        if self._memo[0] != topology.version:
            self._memo = (topology.version, {})

    def stop(self) -> None:
        self._memo = (-1, {})
        if self._lab.network is self:
            self._lab.network = None

    def check(self, src: str | None, dst: str, port: int, protocol: str = "tcp") -> Verdict:
        """Return whether ``src`` (None: the harness host) may connect to ``dst:port``.

        Called per connection by every listener, so verdicts are memoised per topology version.

        Raises:
            LabError: a malformed address, protocol or port (see ``evaluate``).
        """
        topology = self._lab.topology()
        version, memo = self._memo
        if version != topology.version:
            memo = {}
            self._memo = (topology.version, memo)
        key = (src, dst, port, protocol)
        verdict = memo.get(key)
        if verdict is None:
            verdict = evaluate(topology, src, dst, port, protocol).verdict
            if len(memo) >= MAX_MEMO:
                memo.clear()
            memo[key] = verdict
        return verdict

    def trace(self, src: str | None, dst: str, port: int, protocol: str = "tcp") -> list[str]:
        """Describe each hop of ``src`` -> ``dst:port`` on the current topology, verdict last."""
        return list(evaluate(self._lab.topology(), src, dst, port, protocol).hops)


# ---------------------------------------------------------------------- the walk


class _Denied(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Walk:
    """One evaluation: follows the packet, records hops, raises _Denied at the failing link."""

    def __init__(self, topology: Topology, protocol: str, port: int) -> None:
        self.t = topology
        self.protocol = protocol
        self.port = port
        self.hops: list[str] = []

    @property
    def service(self) -> str:
        return f"{self.protocol}/{self.port}"

    def deny(self, reason: str) -> NoReturn:
        raise _Denied(reason)

    def run(self, src: str | None, dst: str) -> str:
        resolver_vpc = self.t.vpc_by_resolver(dst)
        if resolver_vpc is not None:
            return self._resolver(src, dst, resolver_vpc.id)
        dst_if = self._interface(dst, "destination")
        self._answers(dst_if, "destination")
        if src is None:
            return self._from_harness(dst_if)
        src_if = self._interface(src, "source")
        self._answers(src_if, "source")
        if src == dst:
            self.hops.append(f"{src} is {dst}: traffic to itself never leaves the interface")
            return f"{src} -> {dst} {self.service}: same interface"
        self._egress(src_if, dst_if)
        summary = self._route(src_if, dst_if, "")
        self._ingress(src_if, dst_if)
        self._route(dst_if, src_if, "return path: ")
        return f"{src} -> {dst} {self.service}: {summary}"

    # ------------------------------------------------------------------ endpoints

    def _interface(self, address: str, role: str) -> Interface:
        found = self.t.interface(address)
        if found is None:
            subnet = self.t.subnet_containing(address)
            where = (
                f" (inside subnet {subnet.id} of {subnet.vpc_id})"
                if subnet is not None
                else " (outside every lab VPC)"
            )
            self.deny(f"no network interface has address {address}{where}")
        self.hops.append(
            f"{role} {address}: {found.kind} {found.owner_id or found.id} ({found.id}) in "
            f"{found.subnet_id}, {found.vpc_id}, {found.region}"
        )
        return found

    def _answers(self, iface: Interface, role: str) -> None:
        if iface.kind == "instance":
            instance = self.t.instances.get(iface.owner_id)
            if instance is None:
                self.deny(f"{role} {iface.address}: instance {iface.owner_id} no longer exists")
            if instance.state != "running":
                verb = "sends" if role == "source" else "answers"
                self.deny(
                    f"{role} instance {instance.id} ({iface.address}) is {instance.state}: "
                    f"it {verb} nothing"
                )
        elif iface.kind == "network_load_balancer":
            lb = self.t.load_balancers.get(iface.owner_id)
            if lb is None or lb.state != "active":
                state = "gone" if lb is None else lb.state
                self.deny(
                    f"{role} {iface.address} is a node of load balancer {iface.owner_id}, "
                    f"which is {state}"
                )

    def _resolver(self, src: str | None, dst: str, vpc_id: str) -> str:
        self.hops.append(f"destination {dst}: the Route 53 Resolver of {vpc_id}")
        if self.protocol not in ("tcp", "udp") or self.port != RESOLVER_PORT:
            self.deny(
                f"the Route 53 Resolver of {vpc_id} ({dst}) answers only DNS (tcp/udp 53), "
                f"not {self.service}"
            )
        if src is None:
            self.hops.append(f"harness host: enters {vpc_id} like an SSM session")
            return f"harness host -> {dst} {self.service}: the Resolver of {vpc_id}"
        src_if = self._interface(src, "source")
        self._answers(src_if, "source")
        if src_if.vpc_id != vpc_id:
            self.deny(
                f"the Route 53 Resolver of {vpc_id} ({dst}) answers only queries from inside "
                f"{vpc_id}; {src} is in {src_if.vpc_id}"
            )
        self.hops.append("security groups do not filter traffic to the Route 53 Resolver")
        return f"{src} -> {dst} {self.service}: the Resolver of its own VPC {vpc_id}"

    def _from_harness(self, dst_if: Interface) -> str:
        vpc = self.t.vpcs.get(dst_if.vpc_id)
        if vpc is None:
            self.deny(f"VPC {dst_if.vpc_id} of {dst_if.address} no longer exists")
        self.hops.append(
            f"harness host: enters {vpc.id} like an SSM session (no route needed; matched as "
            f"any address of {vpc.cidr})"
        )
        if not self._admitted_from_harness(dst_if, vpc.cidr):
            self.deny(
                f"{self._groups_do(dst_if, 'do')} not admit the harness host (any address of "
                f"{vpc.id} {vpc.cidr}) on {self.service}"
            )
        self.hops.append(f"{self._groups_do(dst_if, 'admit')} the harness host")
        return f"harness host -> {dst_if.address} {self.service}: inside {vpc.id}"

    # ------------------------------------------------------------------ security groups

    def _groups_do(self, iface: Interface, verb: str) -> str:
        """Return e.g. 'security group sg-1 of 10.1.1.4 does' / 'security groups ... do'."""
        groups = sorted(iface.security_group_ids)
        if not groups:
            return (
                f"{iface.address} has no security group, so it {'does' if verb == 'do' else verb}"
            )
        if verb == "do":
            verb = "does" if len(groups) == 1 else "do"
        elif len(groups) == 1:
            verb += "s"
        noun = "security group" if len(groups) == 1 else "security groups"
        return f"{noun} {', '.join(groups)} of {iface.address} {verb}"

    def _rules(self, iface: Interface, direction: str) -> list[Rule] | None:
        """Return the interface's rules in ``direction``, or None when it passes everything."""
        if not iface.security_group_ids:
            return None if iface.kind == "network_load_balancer" else []
        rules: list[Rule] = []
        for group_id in sorted(iface.security_group_ids):
            group = self.t.security_groups.get(group_id)
            if group is not None:
                rules.extend(group.ingress if direction == "ingress" else group.egress)
        return rules

    def _egress(self, src_if: Interface, dst_if: Interface) -> None:
        rules = self._rules(src_if, "egress")
        if rules is None:
            self.hops.append(f"{src_if.address}: load balancer node without security groups")
            return
        peer_groups = dst_if.security_group_ids if dst_if.vpc_id == src_if.vpc_id else frozenset()
        peer = ipaddress.IPv4Address(dst_if.address)
        if not any(self._rule_admits(r, peer, peer_groups) for r in rules):
            self.deny(
                f"{self._groups_do(src_if, 'do')} not allow egress to {dst_if.address} on "
                f"{self.service}"
            )
        self.hops.append(f"{self._groups_do(src_if, 'allow')} egress to {dst_if.address}")

    def _ingress(self, src_if: Interface, dst_if: Interface) -> None:
        rules = self._rules(dst_if, "ingress")
        if rules is None:
            self.hops.append(
                f"{dst_if.address}: no security groups (load balancer node), all traffic admitted"
            )
            return
        peer_groups = src_if.security_group_ids if src_if.vpc_id == dst_if.vpc_id else frozenset()
        peer = ipaddress.IPv4Address(src_if.address)
        if not any(self._rule_admits(r, peer, peer_groups) for r in rules):
            self.deny(
                f"{self._groups_do(dst_if, 'do')} not admit {src_if.address} on {self.service}"
            )
        self.hops.append(f"{self._groups_do(dst_if, 'admit')} {src_if.address}")

    def _admitted_from_harness(self, dst_if: Interface, vpc_cidr: ipaddress.IPv4Network) -> bool:
        rules = self._rules(dst_if, "ingress")
        if rules is None:
            return True
        return any(
            self._rule_matches_service(rule)
            and any(vpc_cidr.subnet_of(cidr) for cidr in rule.cidrs)
            for rule in rules
        )

    def _rule_matches_service(self, rule: Rule) -> bool:
        protocol = _PROTOCOL_NUMBERS.get(rule.protocol, rule.protocol)
        if protocol in _ALL_PROTOCOLS:
            return True
        if protocol != self.protocol:
            return False
        if rule.from_port is None or rule.from_port == -1:
            return True
        if self.protocol == "icmp":
            return rule.from_port == self.port  # from_port is the ICMP type, to_port the code
        upper = rule.to_port if rule.to_port is not None else rule.from_port
        return rule.from_port <= self.port <= upper

    def _rule_admits(
        self, rule: Rule, peer: ipaddress.IPv4Address, peer_groups: frozenset[str]
    ) -> bool:
        if not self._rule_matches_service(rule):
            return False
        return any(peer in cidr for cidr in rule.cidrs) or bool(
            peer_groups.intersection(rule.group_ids)
        )

    # ------------------------------------------------------------------ routing

    def _route(self, src_if: Interface, dst_if: Interface, prefix: str) -> str:
        """Walk the routing path from ``src_if`` to ``dst_if``; return a one-line summary."""
        dst = dst_if.address
        dst_ip = ipaddress.IPv4Address(dst)
        subnet = self.t.subnets.get(src_if.subnet_id)
        if subnet is None:
            self.deny(f"{prefix}subnet {src_if.subnet_id} of {src_if.address} no longer exists")
        table = self.t.route_tables.get(subnet.route_table_id)
        if table is None:
            self.deny(f"{prefix}subnet {subnet.id} of {src_if.address} has no route table")
        route = table.lookup(dst_ip)
        if route is None:
            self.deny(f"{prefix}no route to {dst} in {table.id} (subnet {subnet.id})")
        where = f"{table.id} (subnet {subnet.id})"
        if route.state != "active":
            gone = ""
            if route.target == "tgw":
                gone = f": transit gateway {route.target_id} no longer exists"
            self.deny(f"{prefix}route {route.destination} in {where} is a blackhole{gone}")
        if route.target == "local":
            if dst_if.vpc_id != src_if.vpc_id:
                self.deny(
                    f"{prefix}{dst} matches the local route {route.destination} of {where}, "
                    f"but it is in {dst_if.vpc_id}"
                )
            self.hops.append(f"{prefix}{where}: {route.destination} local -> {src_if.vpc_id}")
            return f"local route in {src_if.vpc_id}"
        if route.target != "tgw":
            self.deny(
                f"{prefix}route {route.destination} in {where} sends {dst} to "
                f"{route.target_id or route.target}, which does not lead to {dst_if.vpc_id}"
            )
        entry = self._vpc_attachment(src_if, route.target_id, prefix)
        self.hops.append(
            f"{prefix}{where}: {route.destination} -> {route.target_id} "
            f"(VPC attachment {entry.id}, {entry.region})"
        )
        return self._transit(entry, dst_if, prefix)

    def _vpc_attachment(self, src_if: Interface, tgw_id: str, prefix: str) -> TgwAttachment:
        found = [
            a
            for (region, _), a in self.t.tgw_attachments.items()
            if region == src_if.region
            and a.kind == "vpc"
            and a.tgw_id == tgw_id
            and a.vpc_id == src_if.vpc_id
        ]
        available = [a for a in found if a.state == "available"]
        if available:
            return min(available, key=lambda a: a.id)
        if found:
            attachment = min(found, key=lambda a: a.id)
            self.deny(
                f"{prefix}VPC attachment {attachment.id} of {src_if.vpc_id} to {tgw_id} is "
                f"{attachment.state}"
            )
        self.deny(
            f"{prefix}{src_if.vpc_id} has no attachment to transit gateway {tgw_id} "
            f"({src_if.region})"
        )

    def _transit(self, entry: TgwAttachment, dst_if: Interface, prefix: str) -> str:
        dst = dst_if.address
        dst_ip = ipaddress.IPv4Address(dst)
        current = entry
        crossed: TgwAttachment | None = None
        while True:
            region = current.region
            if current.route_table_id is None:
                self.deny(
                    f"{prefix}attachment {current.id} has no route table association on "
                    f"{current.tgw_id} ({region})"
                )
            table = self.t.tgw_route_tables.get(current.route_table_id)
            if table is None:
                self.deny(
                    f"{prefix}TGW route table {current.route_table_id} ({region}) associated "
                    f"with {current.id} no longer exists"
                )
            named = f"TGW route table {table.id} ({region})"
            route = table.lookup(dst_ip)
            if route is None:
                self.deny(f"{prefix}{named} has no route to {dst}")
            if route.state == "blackhole":
                self.deny(f"{prefix}{named} has a blackhole route for {route.destination}")
            if route.state != "active":
                self.deny(f"{prefix}{named}: route {route.destination} is {route.state}")
            if route.attachment_id is None:
                self.deny(f"{prefix}{named}: route {route.destination} has no attachment")
            nxt = self.t.tgw_attachments.get((region, route.attachment_id))
            if nxt is None:
                self.deny(
                    f"{prefix}{named} sends {route.destination} to attachment "
                    f"{route.attachment_id}, which does not exist in {region}"
                )
            if nxt.kind == "vpc":
                if nxt.state != "available":
                    self.deny(
                        f"{prefix}VPC attachment {nxt.id} of {nxt.vpc_id} ({region}) is {nxt.state}"
                    )
                if nxt.vpc_id != dst_if.vpc_id:
                    self.deny(
                        f"{prefix}{named} sends {dst} to VPC attachment {nxt.id} of {nxt.vpc_id}, "
                        f"but {dst} is in {dst_if.vpc_id}"
                    )
                self.hops.append(
                    f"{prefix}{named}: {route.destination} -> VPC attachment {nxt.id} -> "
                    f"{dst} in {dst_if.vpc_id}"
                )
                if crossed is None:
                    return f"via {entry.tgw_id} ({entry.region})"
                return (
                    f"via {entry.tgw_id} ({entry.region}), peering attachment {crossed.id}, "
                    f"{nxt.tgw_id} ({region})"
                )
            if nxt.kind != "peering":
                self.deny(
                    f"{prefix}{named} sends {route.destination} to {nxt.kind} attachment "
                    f"{nxt.id}, which the lab does not model"
                )
            if crossed is not None:
                self.deny(
                    f"{prefix}{named} sends {route.destination} on over peering attachment "
                    f"{nxt.id}, but the packet arrived over peering attachment {crossed.id}: "
                    "transit gateway peering is not transitive"
                )
            if nxt.state != "available":
                self.deny(f"{prefix}peering attachment {nxt.id} is {nxt.state}")
            peer = self.t.tgw_attachments.get((nxt.peer_region or "", nxt.id))
            if peer is None:
                self.deny(
                    f"{prefix}peering attachment {nxt.id} is not visible in its peer region "
                    f"{nxt.peer_region}"
                )
            if peer.state != "available":
                self.deny(f"{prefix}peering attachment {nxt.id} is {peer.state} in {peer.region}")
            self.hops.append(
                f"{prefix}{named}: {route.destination} -> peering attachment {nxt.id} -> "
                f"{peer.tgw_id} ({peer.region})"
            )
            crossed = nxt
            current = peer


# ---------------------------------------------------------------------- input checks


def _protocol(protocol: str) -> str:
    if not isinstance(protocol, str):
        raise LabError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    name = _PROTOCOL_NUMBERS.get(protocol.strip(), protocol.strip().lower())
    if name not in PROTOCOLS:
        raise LabError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    return name


def _check_port(port: int, protocol: str) -> None:
    upper = 255 if protocol == "icmp" else 65535
    lower = 0 if protocol == "icmp" else 1
    if isinstance(port, bool) or not isinstance(port, int) or not lower <= port <= upper:
        what = "ICMP type" if protocol == "icmp" else f"{protocol} port"
        raise LabError(f"{what} must be an integer in {lower}..{upper}, not {port!r}")


def _address(text: str, role: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except (ValueError, TypeError) as exc:
        raise LabError(f"{role} must be an IPv4 VPC address, not {text!r}") from exc
