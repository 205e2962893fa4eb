"""The lab's network load balancers: TLS (and TCP) listeners on every NLB node address.

For each active network load balancer in the control plane, every node (one per subnet, at the
address the fidelity pass gave its ENI) listens on each TLS or TCP listener's port (443 is
served on the lab port for 443). A connection then goes through what an NLB does, in order:

1. **Client → node.** ``lab.network.check(client, node, port)``: a denied connection is dropped
   silently (the client times out), never refused. The client's VPC address is recovered from
   its loopback source address.
2. **Target choice (layer 4, once per connection).** The listener's target group; targets in the
   node's availability zone only, unless cross-zone load balancing is on (target-group attribute,
   else the load balancer's; off by default, as on AWS). Among them the healthy ones
   (``lab.health.target_group_healthy_targets``); none healthy fails open to all of them. The
   flow (client address and port, node, listener port) hashes to one target, so one connection
   sticks to one target, and an established connection keeps working when a security-group rule
   is later revoked (security groups track connections).
3. **Node → target.** The source the target sees is the node's address, or the client's when the
   target group preserves client addresses (``preserve_client_ip.enabled``; off by default for
   IP targets with TCP/TLS, as on AWS); ``lab.network.check(source, target, target port)`` must
   allow it. The target must be an ``execute-api`` interface endpoint ENI listening on 443 whose
   region's API Gateway is up (``lab.health.api_up``).
4. **TLS listener.** The node terminates TLS with the listener's ACM certificate (lab-issued
   certificates come from the lab CA, so a client verifying host names against the lab CA fails
   for a wrong name, and one not trusting the lab CA fails), ALPN ``http/1.1``, minimum version
   from the listener's security policy. If the target hop fails (step 3) the handshake still
   completes, and the node resets the connection (TCP RST) after the NLB's 10 s target connect
   timeout, on the lab clock: that is what a client of a TLS listener sees when the target does
   not answer. A target that actively refuses (not an execute-api endpoint, wrong port, a TCP
   target group behind a TLS listener, no target in the zone) is reset right after the
   handshake.
   **TCP listener.** Bytes pass through, so TLS is the endpoint's: the custom domain's regional
   certificate when the client's SNI names one, else a lab-issued
   ``*.execute-api.<region>.amazonaws.com``; a failed target hop is a silent drop.
5. **Forwarding.** The NLB → endpoint TLS hop and API Gateway's own socket are modelled by the
   checks above rather than by a second connection: each HTTP/1.1 request (``Content-Length``
   bodies, keep-alive) goes in-process to :class:`harness.lab.apigateway.ApiGateway` for the
   endpoint's region, with the endpoint id and VPC as ``aws:SourceVpce``/``aws:SourceVpc``.
   If API Gateway goes down during a kept-alive connection, the connection is reset.

Threads: one accept loop (a selector over every listening socket) and a bounded worker pool
(:data:`MAX_CONNECTIONS` connections served at once; more wait for a worker). Lab limits, not AWS
ones: a kept-alive connection idles out after :data:`KEEPALIVE_IDLE_S` real seconds and serves at
most :data:`MAX_REQUESTS_PER_CONNECTION` requests; chunked request bodies are refused (501).
``lab.network`` or ``lab.health`` missing means every check passes (logged once).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import selectors
import socket
import ssl
import struct
import tempfile
import threading
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from harness.errors import LabError
from harness.lab import netio
from harness.lab.apigateway import (
    MAX_PAYLOAD_BYTES,
    ApiGateway,
    ApiRequest,
    ApiResponse,
    ApiUnavailable,
)
from harness.lab.lambda_runtime import LambdaRuntime
from harness.lab.topology import (
    Listener,
    LoadBalancer,
    Target,
    TargetGroup,
    Topology,
    acm_bundle,
)

if TYPE_CHECKING:
    from harness.lab.lab import Lab

log = logging.getLogger(__name__)

__all__ = ["LoadBalancers"]

MAX_CONNECTIONS = 16
KEEPALIVE_IDLE_S = 5.0
MAX_REQUESTS_PER_CONNECTION = 100
HANDSHAKE_TIMEOUT_S = 10.0
# After refusing a request, how long (real seconds) and how much the node reads before closing.
LINGER_S = 0.5
LINGER_MAX_BYTES = 1 << 20
# How long an NLB node tries to reach a target before resetting the client (model seconds).
TARGET_CONNECT_TIMEOUT = 10.0
# What the node -> endpoint TLS session negotiates (x-amzn-tls-version / x-amzn-cipher-suite).
BACKEND_TLS = ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")
_SERVED_PROTOCOLS = ("TLS", "TCP")


@dataclass(frozen=True)
class _Binding:
    """What one listening socket serves: a listener on one node of one load balancer."""

    region: str
    lb_arn: str
    node_address: str
    availability_zone: str
    listener: Listener
    context: ssl.SSLContext | None  # TLS listener: the node's certificate (None: cannot serve)


@dataclass(frozen=True)
class _Plan:
    """Where a connection goes: the endpoint it reaches, or why it does not."""

    outcome: str  # "forward" | "unreachable" (no answer) | "refused" (reset at once)
    reason: str
    region: str = ""
    vpce_id: str = ""
    vpc_id: str = ""
    source_address: str = ""


class LoadBalancers:
    """Serve every NLB listener of the lab and forward requests to API Gateway."""

    name = "load_balancers"

    def __init__(self, lab: Lab) -> None:
        self._lab = lab
        runtime = lab.lambda_runtime
        self._own_runtime = runtime is None
        if runtime is None:
            runtime = LambdaRuntime(lab.workdir / "lambda")
        self._runtime: LambdaRuntime = runtime
        self.api = ApiGateway(lab, runtime)
        self._lock = threading.Lock()
        self._bindings: dict[tuple[str, int], _Binding] = {}
        self._sockets: dict[tuple[str, int], socket.socket] = {}
        self._pending: list[tuple[str, socket.socket, tuple[str, int]]] = []
        self._contexts: dict[tuple[str, bytes, str], ssl.SSLContext] = {}
        self._endpoint_tls: dict[str, ssl.SSLContext] = {}
        self._live: set[socket.socket] = set()
        self._warned: set[str] = set()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers = ThreadPoolExecutor(
            max_workers=MAX_CONNECTIONS, thread_name_prefix="lab-nlb"
        )

    # ------------------------------------------------------------------ component lifecycle

    def start(self) -> None:
        """Start the accept loop; listeners appear with the first topology update."""
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(
            target=self._accept_loop, name="lab-nlb-accept", daemon=True
        )
        self._thread.start()
        self._lab.load_balancers = self

    def update(self, topology: Topology) -> None:
        """Bind listeners that appeared, close those that went, refresh certificates."""
        if self._stopping.is_set():
            return
        desired = self._desired(topology)
        with self._lock:
            if self._stopping.is_set():
                return
            for key in list(self._sockets):
                if key not in desired:
                    # Closed here so that a listener re-created at once can bind again; the
                    # accept loop drops it from its selector.
                    sock = self._sockets.pop(key)
                    _close(sock)
                    self._pending.append(("remove", sock, key))
            for key in desired:
                if key in self._sockets:
                    continue
                address, port = key
                try:
                    sock = netio.bind_tcp(address, port, self._lab.ports)
                except OSError as exc:
                    self._warn(
                        f"bind {address}:{port}",
                        f"cannot serve NLB listener {address}:{port} "
                        f"(loopback {netio.loopback_endpoint(address, port, self._lab.ports)}): "
                        f"{exc}",
                    )
                    continue
                sock.setblocking(False)
                self._sockets[key] = sock
                self._pending.append(("add", sock, key))
            self._bindings = {k: v for k, v in desired.items() if k in self._sockets}
        self._wake()

    def stop(self) -> None:
        """Close every listener and connection and stop the worker pool."""
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            sockets = list(self._sockets.values())
            self._sockets.clear()
            self._bindings = {}
            live = list(self._live)
            self._live.clear()
        for sock in sockets + live:
            _close(sock)
        self._workers.shutdown(wait=False, cancel_futures=True)
        self.api.close()
        if self._own_runtime:
            self._runtime.close()
        self._selector.close()
        _close(self._wake_r)
        _close(self._wake_w)
        if self._lab.load_balancers is self:
            self._lab.load_balancers = None

    # ------------------------------------------------------------------ in-process API access

    def invoke_api(
        self,
        region: str,
        host: str,
        method: str,
        path: str,
        headers: Mapping[str, str] | Sequence[tuple[str, str]],
        body: bytes,
        source_address: str,
        vpce_id: str | None = None,
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        """Send one request to the region's API Gateway as if it arrived through an endpoint.

        Skips the NLB and the network: ``source_address`` is what API Gateway sees
        (``identity.sourceIp``, ``aws:VpcSourceIp``) and ``vpce_id`` the endpoint it came
        through (default: the region's ``execute-api`` endpoint in the source's VPC, else the
        region's only one). ``path`` may carry a query string.

        Raises:
            ApiUnavailable: the region's API Gateway is down in the lab.
            LabError: no endpoint to come through (or an unknown ``vpce_id``).
        """
        if vpce_id is None:
            vpce, vpc = self.api.default_endpoint(region, source_address)
        else:
            endpoint = self._lab.topology().endpoints.get(vpce_id)
            if endpoint is None:
                raise LabError(f"VPC endpoint {vpce_id} does not exist")
            vpce, vpc = endpoint.id, endpoint.vpc_id
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        if not any(k.lower() == "host" for k, _ in pairs):
            pairs.insert(0, ("Host", host))
        response = self.api.invoke(
            ApiRequest(
                region=region,
                host=host,
                method=method.upper(),
                target=path,
                headers=tuple(pairs),
                body=body,
                source_address=source_address,
                vpce_id=vpce,
                vpc_id=vpc,
            )
        )
        return response.status, response.headers, response.body

    # ------------------------------------------------------------------ desired state

    def _desired(self, topology: Topology) -> dict[tuple[str, int], _Binding]:
        desired: dict[tuple[str, int], _Binding] = {}
        for lb in sorted(topology.load_balancers.values(), key=lambda b: b.arn):
            if lb.type != "network" or lb.state != "active":
                continue
            for listener in lb.listeners:
                protocol = listener.protocol.upper()
                if protocol not in _SERVED_PROTOCOLS:
                    self._warn(
                        f"protocol {listener.arn}",
                        f"NLB listener {listener.arn} uses {protocol}; the lab serves only "
                        f"{' and '.join(_SERVED_PROTOCOLS)} listeners",
                    )
                    continue
                context = self._listener_context(listener) if protocol == "TLS" else None
                if protocol == "TCP":
                    self._refresh_endpoint_tls(lb.region)
                for subnet_id, address in sorted(lb.nodes.items()):
                    subnet = topology.subnets.get(subnet_id)
                    if not address or subnet is None:
                        continue
                    desired[(address, listener.port)] = _Binding(
                        region=lb.region,
                        lb_arn=lb.arn,
                        node_address=address,
                        availability_zone=subnet.availability_zone,
                        listener=listener,
                        context=context,
                    )
        return desired

    def _listener_context(self, listener: Listener) -> ssl.SSLContext | None:
        arn = listener.certificate_arn
        if not arn:
            self._warn(f"cert {listener.arn}", f"TLS listener {listener.arn} has no certificate")
            return None
        bundle = listener.certificate
        if bundle is None:
            self._warn(
                f"cert {listener.arn} {arn}",
                f"certificate {arn} of TLS listener {listener.arn} is not in ACM; connections "
                "to it are reset",
            )
            return None
        return self._context(arn, bundle, listener.ssl_policy or "")

    def _certificate(self, arn: str) -> tuple[bytes, bytes, bytes] | None:
        with self._lab.state_lock:
            return acm_bundle(self._lab.account_id, arn)

    def _context(
        self, arn: str, bundle: tuple[bytes, bytes, bytes], policy: str
    ) -> ssl.SSLContext | None:
        key = (arn, b"\0".join(bundle), policy)
        with self._lock:
            cached = self._contexts.get(key)
        if cached is not None:
            return cached
        try:
            context = _server_context(*bundle, policy=policy)
        except (ssl.SSLError, OSError, ValueError) as exc:
            self._warn(f"context {arn}", f"cannot load certificate {arn}: {exc}")
            return None
        with self._lock:
            self._contexts[key] = context
        return context

    def _refresh_endpoint_tls(self, region: str) -> None:
        """Build the endpoint-side TLS of a region (TCP listeners pass TLS through to it)."""
        from moto.apigateway.models import apigateway_backends

        ca = self._lab.ca
        if ca is None:
            return
        default_name = f"*.execute-api.{region}.amazonaws.com"
        issued = ca.issue([default_name])
        default = self._context(
            f"lab:{default_name}",
            (issued.cert_pem.encode(), issued.key_pem.encode(), ca.ca_pem.encode()),
            "",
        )
        if default is None:
            return
        by_name: dict[str, ssl.SSLContext] = {}
        with self._lab.state_lock:
            account = self._lab.account_id
            domains = (
                list(apigateway_backends[account][region].domain_names.values())
                if account in apigateway_backends
                else []
            )
            arns: dict[str, str] = {
                d.domain_name.lower(): str(d.regional_certificate_arn or d.certificate_arn or "")
                for d in domains
            }
        for name, arn in arns.items():
            bundle = self._certificate(arn) if arn else None
            context = self._context(arn, bundle, "") if bundle is not None else None
            if context is not None:
                by_name[name] = context

        def choose(sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: Any) -> None:
            chosen = by_name.get((server_name or "").lower())
            if chosen is not None:
                sock.context = chosen

        default.sni_callback = choose
        with self._lock:
            self._endpoint_tls[region] = default

    # ------------------------------------------------------------------ accept loop

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                events = self._selector.select(timeout=1.0)
            except OSError:
                return
            for key, _ in events:
                if key.data is None:
                    self._drain_wake()
                    continue
                self._accept(key.fileobj, key.data)  # type: ignore[arg-type]

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        with self._lock:
            pending, self._pending = self._pending, []
        for action, sock, key in pending:
            if action == "add":
                try:
                    self._selector.register(sock, selectors.EVENT_READ, key)
                except (KeyError, ValueError, OSError):
                    _close(sock)
            else:
                try:
                    self._selector.unregister(sock)
                except (KeyError, ValueError):
                    pass
                _close(sock)

    def _accept(self, listening: socket.socket, key: tuple[str, int]) -> None:
        while True:
            try:
                conn, peer = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(True)
            with self._lock:
                binding = self._bindings.get(key)
                if binding is not None:
                    self._live.add(conn)
            if binding is None:
                _close(conn)
                continue
            try:
                self._workers.submit(self._serve, conn, peer, binding)
            except RuntimeError:  # stopping
                self._forget(conn)
                _close(conn)
                return

    # ------------------------------------------------------------------ one connection

    def _serve(self, conn: socket.socket, peer: tuple[str, int], binding: _Binding) -> None:
        keep = False
        try:
            keep = self._serve_connection(conn, peer, binding)
        except Exception:
            log.exception("NLB listener %s:%s failed", binding.node_address, binding.listener.port)
        finally:
            if not keep:
                self._forget(conn)
                _close(conn)

    def _serve_connection(
        self, conn: socket.socket, peer: tuple[str, int], binding: _Binding
    ) -> bool:
        """Serve one client connection; True when it was handed on (dropped or reset later)."""
        client = netio.peer_vpc_address(peer[0])
        node, port = binding.node_address, binding.listener.port
        verdict = self._check(client, node, port)
        if not verdict.allowed:
            log.debug("NLB node %s:%s drops %s: %s", node, port, client, verdict.reason)
            self._forget(conn)
            netio.drop_silently(conn)
            return True
        topology = self._lab.topology()
        plan = self._plan(topology, binding, client, peer)
        tcp = binding.listener.protocol.upper() == "TCP"
        if tcp:
            if plan.outcome == "unreachable":
                log.debug("NLB %s:%s: target does not answer: %s", node, port, plan.reason)
                self._forget(conn)
                netio.drop_silently(conn)
                return True
            with self._lock:
                context = self._endpoint_tls.get(plan.region) if plan.region else None
        else:
            context = binding.context
        if context is None or (tcp and plan.outcome == "refused"):
            log.debug("NLB %s:%s resets %s: %s", node, port, client, plan.reason)
            _reset(conn)
            return False
        conn.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            tls = context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("NLB %s:%s: TLS handshake with %s failed: %s", node, port, client, exc)
            return False
        with self._lock:
            self._live.discard(conn)
            self._live.add(tls)
        if plan.outcome == "unreachable":
            log.debug("NLB %s:%s: target does not answer: %s", node, port, plan.reason)
            self._reset_later(tls)
            return True
        if plan.outcome == "refused":
            # The node opens its target connection once the client's handshake is done.
            log.debug("NLB %s:%s resets %s: %s", node, port, client, plan.reason)
            self._forget(tls)
            _reset(tls)
            return True
        try:
            tls_info = (
                (tls.version() or BACKEND_TLS[0], (tls.cipher() or BACKEND_TLS)[0])
                if tcp
                else BACKEND_TLS
            )
            _HttpSession(self, tls, peer, plan, tls_info).run()
        finally:
            self._forget(tls)
            _close(tls)
        return True

    def _plan(
        self,
        topology: Topology,
        binding: _Binding,
        client: str | None,
        peer: tuple[str, int],
    ) -> _Plan:
        listener = binding.listener
        groups = [
            topology.target_groups[a]
            for a in listener.target_group_arns
            if a in topology.target_groups
        ]
        if not groups:
            return _Plan("refused", f"listener {listener.arn} forwards to no target group")
        if len(groups) > 1:
            self._warn(
                f"groups {listener.arn}",
                f"listener {listener.arn} forwards to {len(groups)} target groups; the lab uses "
                f"the first, {groups[0].arn}",
            )
        group = groups[0]
        lb = topology.load_balancers.get(binding.lb_arn)
        cross_zone = _cross_zone(group, lb)
        zone_targets = [
            t
            for t in group.targets
            if cross_zone or _target_zone(topology, t) in (binding.availability_zone, "all")
        ]
        if not zone_targets:
            return _Plan("refused", f"no target of {group.arn} in {binding.availability_zone}")
        healthy = self._healthy(group.arn, zone_targets)
        pool = [t for t in zone_targets if t.id in healthy] or zone_targets
        flow = f"{peer[0]}:{peer[1]}>{binding.node_address}:{listener.port}".encode()
        target = pool[zlib.crc32(flow) % len(pool)]
        source = client if client is not None and _preserves_client(group, target) else None
        source = source or binding.node_address
        verdict = self._check(source, target.id, target.port)
        if not verdict.allowed:
            return _Plan("unreachable", f"{source} -> {target.id}:{target.port}: {verdict.reason}")
        interface = topology.interface(target.id)
        endpoint = (
            topology.endpoints.get(interface.owner_id)
            if interface is not None and interface.kind == "vpc_endpoint"
            else None
        )
        if endpoint is None or not endpoint.service_name.endswith(".execute-api"):
            self._warn(
                f"target {target.id}",
                f"target {target.id} of {group.arn} is not an execute-api endpoint ENI; the lab "
                "forwards NLB traffic only to API Gateway, so connections to it are reset",
            )
            return _Plan("refused", f"target {target.id} is not an execute-api endpoint")
        if target.port != 443:
            return _Plan("refused", f"endpoint {endpoint.id} does not listen on {target.port}")
        if group.protocol.upper() != listener.protocol.upper():
            return _Plan(
                "refused",
                f"{listener.protocol} listener to a {group.protocol} target group: the endpoint "
                "speaks TLS on 443",
            )
        health = self._lab.health
        if health is not None and not health.api_up(endpoint.region):
            return _Plan("unreachable", f"API Gateway in {endpoint.region} is down")
        return _Plan(
            "forward",
            "",
            region=endpoint.region,
            vpce_id=endpoint.id,
            vpc_id=endpoint.vpc_id,
            source_address=source,
        )

    def _healthy(self, group_arn: str, targets: Sequence[Target]) -> set[str]:
        health = self._lab.health
        if health is None:
            self._warn("health", "lab.health is not running; every NLB target counts as healthy")
            return {t.id for t in targets}
        return set(health.target_group_healthy_targets(group_arn))

    def _check(self, src: str | None, dst: str, port: int) -> Any:
        network = self._lab.network
        if network is None:
            self._warn("network", "lab.network is not running; every NLB connection is allowed")
            return _Allowed()
        return network.check(src, dst, port, "tcp")

    def _reset_later(self, tls: socket.socket) -> None:
        def reset() -> None:
            self._forget(tls)
            _reset(tls)

        self._lab.scheduler.call_later(TARGET_CONNECT_TIMEOUT, reset)

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._live.discard(sock)

    def _warn(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning("%s", message)


class _Allowed:
    allowed = True
    reason = "lab.network is not running"


class _HttpSession:
    """Read HTTP/1.1 requests from one TLS connection and answer them through API Gateway."""

    def __init__(
        self,
        nlb: LoadBalancers,
        tls: ssl.SSLSocket,
        peer: tuple[str, int],
        plan: _Plan,
        tls_info: tuple[str, str],
    ) -> None:
        self.nlb = nlb
        self.tls = tls
        self.peer = peer
        self.plan = plan
        self.tls_info = tls_info
        self.requests = 0
        self.refused = False

    def run(self) -> None:
        try:
            _HttpHandler(self.tls, self.peer, self)  # type: ignore[arg-type]
            if self.refused:
                self._linger()
        except (OSError, ssl.SSLError) as exc:
            log.debug("NLB connection from %s ended: %s", self.peer, exc)

    def _linger(self) -> None:
        """Read what the client still sends before closing, so the close is not a reset.

        A refused request may leave unread bytes (a body, a stray line); closing a socket with
        unread input sends a RST, which can destroy the error response before the client reads
        it.
        """
        self.tls.settimeout(LINGER_S)
        received = 0
        try:
            while received < LINGER_MAX_BYTES:
                chunk = self.tls.recv(65536)
                if not chunk:
                    return
                received += len(chunk)
        except (TimeoutError, OSError, ssl.SSLError):
            return

    def forward(self, handler: _HttpHandler, body: bytes) -> ApiResponse | None:
        plan = self.plan
        request = ApiRequest(
            region=plan.region,
            host=handler.headers.get("Host", ""),
            method=handler.command,
            target=handler.path,
            headers=tuple(handler.headers.items()),
            body=body,
            source_address=plan.source_address,
            vpce_id=plan.vpce_id,
            vpc_id=plan.vpc_id,
            tls_version=self.tls_info[0],
            cipher_suite=self.tls_info[1],
        )
        try:
            return self.nlb.api.invoke(request)
        except ApiUnavailable:
            return None


class _HttpHandler(BaseHTTPRequestHandler):
    """http.server's request parser, answering every method through the session."""

    protocol_version = "HTTP/1.1"
    timeout = KEEPALIVE_IDLE_S
    server: _HttpSession  # type: ignore[assignment]

    def do_GET(self) -> None:
        self._forward()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _forward(self) -> None:
        session = self.server
        session.requests += 1
        if session.requests >= MAX_REQUESTS_PER_CONNECTION:
            self.close_connection = True
        if self.headers.get("Transfer-Encoding"):
            self._plain(501, "regiondrill lab: chunked request bodies are not modelled")
            return
        length_text = self.headers.get("Content-Length", "0").strip() or "0"
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError(length_text)
        except ValueError:
            self._plain(400, "Bad Request")
            return
        if length > MAX_PAYLOAD_BYTES:
            self._plain(413, "Request Too Long")
            return
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            self.close_connection = True
            return
        response = session.forward(self, body)
        if response is None:
            self.close_connection = True
            self.wfile.flush()
            _reset(session.tls)
            return
        self.send_response_only(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Connection", "close" if self.close_connection else "keep-alive")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _plain(self, status: int, message: str) -> None:
        body = json.dumps({"message": message}).encode()
        self.close_connection = True
        self.server.refused = True
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if getattr(self, "command", None) != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a malformed request (http.server's parser) with a JSON error, then close."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        if self.request_version == "HTTP/0.9":
            # http.server would answer an unparseable request line the HTTP/0.9 way (no status
            # line); the endpoint speaks HTTP/1.1 only.
            self.request_version = self.protocol_version
        self._plain(code, phrase)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("NLB %s: " + format, self.client_address[0], *args)


# ---------------------------------------------------------------------- helpers


def _server_context(cert: bytes, key: bytes, chain: bytes, *, policy: str) -> ssl.SSLContext:
    """Return a TLS server context for a certificate (ACM bundle: leaf, key, chain)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # ELB security policies named TLS13-1-3 allow TLS 1.3 only; the others start at 1.2 here
    # (older protocol versions are not offered by the lab's OpenSSL build anyway).
    context.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if "TLS13-1-3" in policy else ssl.TLSVersion.TLSv1_2
    )
    context.set_alpn_protocols(["http/1.1"])
    fd, path = tempfile.mkstemp(prefix="regiondrill-nlb-", suffix=".pem")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.rstrip(b"\n") + b"\n")
            handle.write(cert.rstrip(b"\n") + b"\n")
            if chain.strip() and chain.strip() != cert.strip():
                handle.write(chain.rstrip(b"\n") + b"\n")
        context.load_cert_chain(path)
    finally:
        os.unlink(path)
    return context


def _cross_zone(group: TargetGroup, lb: LoadBalancer | None) -> bool:
    value = group.attributes.get(
        "load_balancing.cross_zone.enabled", "use_load_balancer_configuration"
    )
    if value in ("true", "false"):
        return value == "true"
    return lb is not None and lb.attributes.get("load_balancing.cross_zone.enabled") == "true"


def _preserves_client(group: TargetGroup, target: Target) -> bool:
    value = group.attributes.get("preserve_client_ip.enabled")
    if value in ("true", "false"):
        return value == "true"
    try:
        ipaddress.IPv4Address(target.id)
        ip_target = True
    except ValueError:
        ip_target = False
    return not (ip_target and group.protocol.upper() in ("TCP", "TLS"))


def _target_zone(topology: Topology, target: Target) -> str:
    if target.availability_zone:
        return target.availability_zone
    instance = topology.instances.get(target.id)
    if instance is not None:
        return instance.availability_zone
    try:
        subnet = topology.subnet_containing(target.id)
    except ValueError:
        return "all"
    return subnet.availability_zone if subnet is not None else "all"


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a load balancer resetting a flow does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
