"""Sockets for the lab's data plane: VPC addresses served on loopback, and AWS-like drops.

Every server the lab runs for a VPC address ``10.a.b.c:port`` listens on ``127.a.b.c`` at the
lab port for ``port``. A client's VPC address is recovered from its loopback source address, which
is how reachability, security groups and ``sourceIp`` are evaluated for real connections. A
connection the network would drop is held open in silence until the client gives up, so the
client times out exactly as it would on AWS instead of seeing a refusal.
"""

from __future__ import annotations

import socket
import threading
import time

from harness.lab.addresses import LOOPBACK_SPACE, PortMap, to_loopback, to_vpc

HARNESS_HOST = "127.0.0.1"  # the machine running the harness: outside every VPC
MAX_SILENT_HOLD = 300.0  # wall seconds a dropped connection is held before the lab lets go


def loopback_endpoint(vpc_address: str, port: int, ports: PortMap) -> tuple[str, int]:
    """Return where the lab serves ``vpc_address:port``."""
    return to_loopback(vpc_address), ports.lab_port(port)


def peer_vpc_address(peer_ip: str) -> str | None:
    """Return the VPC address of a loopback peer, or None for the harness host itself."""
    import ipaddress

    address = ipaddress.IPv4Address(peer_ip)
    if address not in LOOPBACK_SPACE or peer_ip == HARNESS_HOST:
        return None
    return to_vpc(peer_ip)


def bind_tcp(vpc_address: str, port: int, ports: PortMap, *, backlog: int = 128) -> socket.socket:
    """Return a listening TCP socket serving ``vpc_address:port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit TCP_NODELAY on Linux: without it a response written in two
    # pieces waits for the client's delayed ACK (~40 ms on loopback), which is not AWS.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(loopback_endpoint(vpc_address, port, ports))
    sock.listen(backlog)
    return sock


def bind_udp(vpc_address: str, port: int, ports: PortMap) -> socket.socket:
    """Return a bound UDP socket serving ``vpc_address:port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(loopback_endpoint(vpc_address, port, ports))
    return sock


def connect_from(
    source_vpc_address: str | None, vpc_address: str, port: int, ports: PortMap, *, timeout: float
) -> socket.socket:
    """Open a TCP connection to ``vpc_address:port`` from a VPC address (None: the harness host)."""
    sock = socket.create_connection(
        loopback_endpoint(vpc_address, port, ports),
        timeout=timeout,
        source_address=(to_loopback(source_vpc_address), 0) if source_vpc_address else None,
    )
    return sock


def drop_silently(conn: socket.socket, *, max_hold: float = MAX_SILENT_HOLD) -> None:
    """Behave like a dropped connection: never answer; release when the client gives up.

    Runs on its own daemon thread so the accepting loop is never blocked.
    """

    def hold() -> None:
        deadline = time.monotonic() + max_hold
        try:
            conn.settimeout(1.0)
            while time.monotonic() < deadline:
                try:
                    if not conn.recv(65536):
                        return  # the client closed: it gave up
                except TimeoutError:
                    continue
                except OSError:
                    return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    threading.Thread(target=hold, name="lab-drop", daemon=True).start()
