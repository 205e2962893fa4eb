"""The lab's address plan: VPC addresses 10.a.b.c are served on loopback 127.a.b.c.

What the harness and users see (dig answers, ENI addresses, stack outputs) is the VPC view,
exactly as on AWS. Only the lab's sockets live on 127.x, and privileged ports (53, 443, 22) are
mapped to per-lab unprivileged ports so the lab runs without root and two labs can coexist.
Nothing is ever sent to a 10.x address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.errors import LabError

VPC_SPACE = ipaddress.IPv4Network("10.0.0.0/8")
LOOPBACK_SPACE = ipaddress.IPv4Network("127.0.0.0/8")
PRIVILEGED_PORTS = (53, 443, 22)


def to_loopback(vpc_address: str) -> str:
    """Return the loopback address serving ``vpc_address`` (10.a.b.c -> 127.a.b.c)."""
    address = _parse(vpc_address)
    if address not in VPC_SPACE:
        raise LabError(
            f"address {vpc_address} is outside 10.0.0.0/8; the lab can only serve VPC "
            "addresses 10.a.b.c (on loopback 127.a.b.c)"
        )
    return str(ipaddress.IPv4Address(int(address) - int(VPC_SPACE[0]) + int(LOOPBACK_SPACE[0])))


def to_vpc(loopback_address: str) -> str:
    """Return the VPC address a loopback address stands for (127.a.b.c -> 10.a.b.c)."""
    address = _parse(loopback_address)
    if address not in LOOPBACK_SPACE:
        raise LabError(f"address {loopback_address} is not a lab loopback address (127.0.0.0/8)")
    return str(ipaddress.IPv4Address(int(address) - int(LOOPBACK_SPACE[0]) + int(VPC_SPACE[0])))


def _parse(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError as exc:
        raise LabError(f"not an IPv4 address: {text!r}") from exc


@dataclass(frozen=True)
class PortMap:
    """The lab port standing in for each privileged port (same on every lab address)."""

    ports: Mapping[int, int] = field(default_factory=dict)

    @classmethod
    def allocate(cls) -> PortMap:
        """Pick free unprivileged ports for 53, 443 and 22.

        Ports are chosen by the kernel on 127.0.0.1 and then reused on every 127.a.b.c address
        the lab serves; a clash there is reported when the lab binds it.
        """
        chosen: dict[int, int] = {}
        held: list[socket.socket] = []
        try:
            for privileged in PRIVILEGED_PORTS:
                while True:
                    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    tcp.bind(("127.0.0.1", 0))
                    port = tcp.getsockname()[1]
                    held.append(tcp)
                    if privileged != 53:
                        break
                    # DNS needs the same port free for UDP as well.
                    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    try:
                        udp.bind(("127.0.0.1", port))
                    except OSError:
                        udp.close()
                        continue
                    held.append(udp)
                    break
                chosen[privileged] = port
        finally:
            for sock in held:
                sock.close()
        return cls(ports=chosen)

    def lab_port(self, port: int) -> int:
        """Return the lab port for ``port`` (unprivileged ports map to themselves)."""
        return self.ports.get(port, port)

    def to_dict(self) -> dict[str, int]:
        return {str(k): v for k, v in sorted(self.ports.items())}

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> PortMap:
        return cls(ports={int(k): int(v) for k, v in data.items()})
