"""Small loopback servers standing for a VPC's resolver and an NLB node, for the tool tests.

A test VPC ``10.77.0.0/16`` is served on ``127.77.0.0/16`` exactly as the lab does: the resolver
(10.77.0.2) answers on 127.77.0.2, the "NLB node" (10.77.1.20) serves HTTPS on 127.77.1.20 with
a certificate from a :class:`harness.lab.pki.LabCA`, and the bastion (10.77.1.8) sends from
127.77.1.8. Everything binds loopback only; nothing is ever sent to a 10.x address.

Used by ``test_tools.py`` and ``test_shim_conformance.py`` (which runs the real dig and curl
against the very same servers).
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import socketserver
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from harness.lab.addresses import PortMap, to_loopback
from harness.lab.pki import LabCA
from harness.lab.tools import HostView, ToolServer, render_shim

VPC_RESOLVER = "10.77.0.2"
BASTION = "10.77.1.8"
NLB_NODE = "10.77.1.20"
PLAIN_NODE = "10.77.1.21"  # plain HTTP and misbehaving TCP servers
OTHER_NODE = "10.77.1.22"  # HTTPS with certificates the lab CA did not issue
API = "api.regiondrill.internal"
NLB_NAME = "api-nlb-0a1b2c3d.elb.us-east-1.amazonaws.com"
ZONES = ("regiondrill.internal.", "elb.us-east-1.amazonaws.com.", "77.10.in-addr.arpa.")
RECORDS = [
    (f"{API}.", 60, "A", ["10.77.1.20", "10.77.2.20"]),
    ("v6.regiondrill.internal.", 60, "AAAA", ["fd00:1:1::10", "fd00:1:2::10"]),
    (
        "txt.regiondrill.internal.",
        300,
        "TXT",
        ['"region=us-east-1"', '"owner=regiondrill probe" "second string"', '"quote\\"inside"'],
    ),
    ("alias.regiondrill.internal.", 300, "CNAME", [f"{NLB_NAME}."]),
    (f"{NLB_NAME}.", 60, "A", ["10.77.1.20", "10.77.2.20"]),
    ("dangling.regiondrill.internal.", 300, "CNAME", ["gone.regiondrill.internal."]),
    ("mx.regiondrill.internal.", 300, "MX", ["10 mail.regiondrill.internal."]),
    ("20.1.77.10.in-addr.arpa.", 300, "PTR", [f"{NLB_NAME}."]),
    (
        "a-very-long-owner-name-for-column-tests.regiondrill.internal.",
        60,
        "A",
        ["10.77.1.20"],
    ),
    ("wrong.regiondrill.internal.", 60, "A", ["10.77.1.20"]),
    ("unreachable.regiondrill.internal.", 60, "A", ["10.77.9.9"]),
]
SERVFAIL = {"servfail.regiondrill.internal."}
EDE_NAME = "blocked.regiondrill.internal."
COOKIE_NAME = "cookie.regiondrill.internal."


def _soa(zone: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(
        zone, 300, "IN", "SOA", f"ns1.{zone} hostmaster.{zone} 1 7200 900 1209600 86400"
    )


def answer(query: dns.message.Message) -> dns.message.Message:
    """Answer like a recursive resolver in front of private hosted zones (no shuffling)."""
    response = dns.message.make_response(query)
    question = query.question[0]
    qname = question.name.to_text().lower()
    qtype = dns.rdatatype.to_text(question.rdtype)
    if qname == COOKIE_NAME:
        response.flags |= dns.flags.RA
        for option in query.options:
            if isinstance(option, dns.edns.CookieOption):
                cookie = dns.edns.CookieOption(option.client, bytes(range(16)))
                response.use_edns(0, 0, 4096, options=[cookie])
        response.answer.append(dns.rrset.from_text(qname, 60, "IN", "A", "10.77.1.20"))
        return response
    if qname == EDE_NAME:
        response.flags |= dns.flags.RA
        response.set_rcode(dns.rcode.REFUSED)
        response.use_edns(0, 0, 1232, options=[dns.edns.EDEOption(dns.edns.EDECode.PROHIBITED)])
        return response
    zone = next(
        (z for z in ZONES if dns.name.from_text(qname).is_subdomain(dns.name.from_text(z))), None
    )
    if zone is None:
        response.set_rcode(dns.rcode.REFUSED)  # no RA: dig warns about recursion
        return response
    response.flags |= dns.flags.RA
    if qname in SERVFAIL:
        response.set_rcode(dns.rcode.SERVFAIL)
        return response
    table = {(name, kind): (ttl, values) for name, ttl, kind, values in RECORDS}
    name = qname
    for _ in range(8):
        if (name, qtype) in table:
            ttl, values = table[(name, qtype)]
            response.answer.append(dns.rrset.from_text_list(name, ttl, "IN", qtype, values))
            return response
        if (name, "CNAME") not in table:
            break
        ttl, values = table[(name, "CNAME")]
        response.answer.append(dns.rrset.from_text_list(name, ttl, "IN", "CNAME", values))
        name = values[0].lower()
    if name not in {n for n, _ in table}:
        response.set_rcode(dns.rcode.NXDOMAIN)
    target = next(
        (z for z in ZONES if dns.name.from_text(name).is_subdomain(dns.name.from_text(z))), zone
    )
    response.authority.append(_soa(target))
    return response


def wire(response: dns.message.Message) -> bytes:
    return response.to_wire(want_shuffle=False)


class DnsServer:
    """UDP and TCP DNS on one loopback address and port; records who asked.

    The serving threads poll with a short timeout and exit before the sockets close: a thread
    blocked in recvfrom() on a closed descriptor would otherwise read from whatever socket
    reuses that number later (another test's server) and steal its queries.
    """

    def __init__(self, address: str) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((address, 0))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((address, self.port))
        self.tcp.listen(16)
        self.udp.settimeout(0.1)
        self.tcp.settimeout(0.1)
        self.peers: list[str] = []
        self._closing = threading.Event()
        self._threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _serve_udp(self) -> None:
        while not self._closing.is_set():
            try:
                data, peer = self.udp.recvfrom(65535)
            except TimeoutError:
                continue
            self.peers.append(peer[0])
            self.udp.sendto(wire(answer(dns.message.from_wire(data))), peer)

    def _serve_tcp(self) -> None:
        while not self._closing.is_set():
            try:
                conn, peer = self.tcp.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            self.peers.append(peer[0])
            threading.Thread(target=self._tcp, args=(conn,), daemon=True).start()

    def _tcp(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    head = _exact(conn, 2)
                    if head is None:
                        return
                    data = _exact(conn, struct.unpack("!H", head)[0])
                    if data is None:
                        return
                    reply = wire(answer(dns.message.from_wire(data)))
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
                except OSError:
                    return

    def close(self) -> None:
        self._closing.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self.udp.close()
        self.tcp.close()


def _exact(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class ApiHandler(http.server.BaseHTTPRequestHandler):
    """Answer like the private API's echo Lambda behind the NLB, deterministically."""

    protocol_version = "HTTP/1.1"

    def _send(self, status: int, payload: object, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        # No Date or Server header: the conformance test compares -i output byte for byte.
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else None
        if self.path.startswith("/demo/forbidden"):
            self._send(403, {"message": "Forbidden"}, {"x-amzn-ErrorType": "ForbiddenException"})
        elif self.path.startswith("/demo/broken"):
            self._send(502, {"message": "Internal server error"})
        elif self.path.startswith("/demo/whoami"):
            self._send(200, {"sourceIp": self.client_address[0]})
        elif self.path.startswith("/demo/chunked"):
            self.send_response_only(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world\n"):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            path, _, query = self.path.partition("?")
            self._send(
                200,
                {
                    "region": "us-east-1",
                    "event": {
                        "path": path,
                        "httpMethod": self.command,
                        "headers": dict(self.headers.items()),
                        "query": query or None,
                        "body": body,
                    },
                },
            )

    do_GET = _dispatch
    do_POST = _dispatch
    do_PUT = _dispatch
    do_DELETE = _dispatch
    do_HEAD = _dispatch

    def log_message(self, format: str, *args: object) -> None:
        return


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


def https_server(address: str, port: int, context: ssl.SSLContext) -> _Server:
    server = _Server((address, port), ApiHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def http_server(address: str, port: int) -> _Server:
    server = _Server((address, port), ApiHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def tcp_server(
    address: str, behaviour: Callable[[socket.socket], None]
) -> socketserver.ThreadingTCPServer:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            behaviour(self.request)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        block_on_close = False  # a stalling handler must not hold up the test

    server = Server((address, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stall(conn: socket.socket) -> None:
    time.sleep(15)


def _half_response(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    conn.sendall(b'{"region": "us-')
    time.sleep(0.2)


def close_mid_body(conn: socket.socket) -> None:
    _half_response(conn)


def reset_mid_body(conn: socket.socket) -> None:
    _half_response(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def close_after_request(conn: socket.socket) -> None:
    conn.recv(65536)
    time.sleep(0.05)


def syn_drop_listener(address: str) -> tuple[int, list[socket.socket]]:
    """Listen with a full accept queue: the kernel drops new SYNs, like a dropped packet."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((address, 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held = [listener]
    for _ in range(3):
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        try:
            filler.connect((address, port))
        except BlockingIOError:
            pass
        held.append(filler)
    time.sleep(0.2)
    return port, held


def unused_port(address: str) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((address, 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@dataclass
class ToolWorld:
    """The servers, the tool server and a bastion shell directory with the shims."""

    root: Path
    ca: LabCA
    other_ca: LabCA
    dns: DnsServer
    ports: PortMap
    host: HostView
    tools: ToolServer
    bin_dir: Path
    token: str
    plain_port: int
    self_signed_port: int
    foreign_port: int
    servers: list[object] = field(default_factory=list)
    reachable: dict[tuple[str, int], bool] = field(default_factory=dict)

    def shell(self, command: str, *, timeout: float = 20) -> subprocess.CompletedProcess[bytes]:
        """Run ``command`` in a bash whose PATH starts with the shims (like a bastion)."""
        env = {"PATH": f"{self.bin_dir}:/usr/bin:/bin", "HOME": str(self.root), "LANG": "C.UTF-8"}
        return subprocess.run(
            ["/bin/bash", "-c", command],
            cwd=self.root,
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )


def build_world(root: Path) -> Iterator[ToolWorld]:
    """Start everything; yields once, stops on exit (a generator for pytest fixtures)."""
    ca = LabCA.create(root / "pki")
    other_ca = LabCA.create(root / "other-pki", name="not the lab CA")
    dns_server = DnsServer(to_loopback(VPC_RESOLVER))
    tls_port = unused_port(to_loopback(NLB_NODE))
    ports = PortMap({53: dns_server.port, 443: tls_port, 22: unused_port("127.0.0.1")})
    servers: list[object] = []
    servers.append(
        https_server(
            to_loopback(NLB_NODE),
            tls_port,
            ca.server_context(ca.issue([API, "alias.regiondrill.internal"])),
        )
    )
    plain = http_server(to_loopback(PLAIN_NODE), 0)
    servers.append(plain)
    foreign = https_server(
        to_loopback(OTHER_NODE), 0, other_ca.server_context(other_ca.issue([API]))
    )
    servers.append(foreign)
    self_signed = https_server(to_loopback(OTHER_NODE), 0, _self_signed_context(root))
    servers.append(self_signed)
    reachable: dict[tuple[str, int], bool] = {}

    def check(src: str | None, dst: str, port: int, protocol: str) -> bool:
        return reachable.get((dst, port), True)

    host = HostView(
        address=BASTION, resolver=VPC_RESOLVER, ports=ports, ca_pem=ca.ca_pem, reachable=check
    )
    token = os.urandom(16).hex()
    tools = ToolServer(lambda t: host if t == token else None)
    tools.start()
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for tool in ("dig", "curl"):
        path = bin_dir / tool
        path.write_text(render_shim(tool, port=tools.port, token=token, host_label="i-test"))
        path.chmod(0o700)
    world = ToolWorld(
        root=root,
        ca=ca,
        other_ca=other_ca,
        dns=dns_server,
        ports=ports,
        host=host,
        tools=tools,
        bin_dir=bin_dir,
        token=token,
        plain_port=plain.server_address[1],
        self_signed_port=self_signed.server_address[1],
        foreign_port=foreign.server_address[1],
        servers=servers,
        reachable=reachable,
    )
    try:
        yield world
    finally:
        tools.stop()
        dns_server.close()
        for server in servers:
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]


def _self_signed_context(root: Path) -> ssl.SSLContext:
    """A server presenting a self-signed leaf for API (its own issuer, no CA above it)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, API)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(API)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = root / "self-signed.pem"
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(path)
    return context
