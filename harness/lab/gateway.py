"""The lab's front door: a WSGI gateway in front of moto's server application.

Every AWS API call to the lab passes here. The gateway authenticates the request (SigV4 with the
lab's per-run credentials), serialises access to moto's state (the data plane reads the same
state from other threads), answers the few operations whose AWS behaviour moto does not model
(overlays: SSM command execution, Route 53 health-check status, asynchronous CloudFormation...)
and passes everything else to moto. After a mutating call it bumps the state version and runs the
registered after-hooks, which is how the lab keeps derived views (addresses, listeners,
resolvers) in step with the control plane.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import botocore.session

from harness.lab import sigv4

log = logging.getLogger(__name__)

# botocore service names by SigV4 signing name, for services whose operation we need to identify.
_SIGNING_TO_SERVICE = {
    "monitoring": "cloudwatch",
    "elasticloadbalancing": "elbv2",
    "execute-api": "apigateway",
}
SLOW_CALL = 0.2  # wall seconds an API call may hold the state lock before it is logged
_READ_PREFIXES = ("Describe", "List", "Get", "Search", "Lookup", "Test", "Validate", "Estimate")

Handler = Callable[["LabRequest"], "LabResponse | None"]
AfterHook = Callable[["LabRequest", int], None]


@dataclass
class LabRequest:
    """An authenticated AWS API request, with its service, region and operation identified."""

    service: str  # botocore service name: ec2, cloudformation, ssm, route53, cloudwatch, elbv2...
    region: str
    operation: str
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    protocol: str
    path_params: dict[str, str] = field(default_factory=dict)
    forward: Callable[[], LabResponse] | None = field(default=None, repr=False)

    @property
    def is_mutating(self) -> bool:
        return not self.operation.startswith(_READ_PREFIXES)

    def form(self) -> dict[str, str]:
        """Return query-protocol parameters (first value of each key)."""
        source = self.body.decode() if self.method == "POST" else self.query
        return {k: v[0] for k, v in parse_qs(source, keep_blank_values=True).items()}

    def json(self) -> dict[str, Any]:
        """Return the JSON body of a json/rest-json request ({} when empty)."""
        return json.loads(self.body or b"{}")


@dataclass
class LabResponse:
    """A response produced by an overlay instead of moto."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> LabResponse:
        return cls(
            status,
            json.dumps(payload, default=str).encode(),
            [("Content-Type", "application/x-amz-json-1.1")],
        )

    @classmethod
    def xml(cls, text: str, status: int = 200) -> LabResponse:
        return cls(status, text.encode(), [("Content-Type", "text/xml")])


def error_response(protocol: str, status: int, code: str, message: str) -> LabResponse:
    """Build an AWS-style error in the wire format of ``protocol`` so botocore parses the code."""
    request_id = str(uuid.uuid4())
    headers = [("x-amzn-RequestId", request_id), ("x-amzn-ErrorType", code)]
    if protocol in ("json", "rest-json", "smithy-rpc-v2-cbor"):
        body = json.dumps({"__type": code, "message": message, "Message": message}).encode()
        return LabResponse(status, body, [("Content-Type", "application/x-amz-json-1.1"), *headers])
    if protocol == "ec2":
        text = (
            f"<Response><Errors><Error><Code>{_esc(code)}</Code><Message>{_esc(message)}"
            f"</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
        )
    else:
        text = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{_esc(code)}</Code>"
            f"<Message>{_esc(message)}</Message></Error><RequestId>{request_id}</RequestId>"
            "</ErrorResponse>"
        )
    return LabResponse(status, text.encode(), [("Content-Type", "text/xml"), *headers])


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@cache
def _service_model(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


@cache
def _rest_routes(service: str) -> list[tuple[str, re.Pattern[str], str]]:
    """Return (method, path regex, operation) for a REST service, most specific first."""
    model = _service_model(service)
    routes = []
    for name in model.operation_names:
        http = model.operation_model(name).http
        uri = http["requestUri"].split("?", 1)[0]
        pattern = re.sub(
            r"\\\{(\w+)(\\\+)?\\\}",
            lambda m: f"(?P<{m[1]}>.+)" if m[2] else f"(?P<{m[1]}>[^/]+)",
            re.escape(uri),
        )
        routes.append((http["method"], re.compile(f"^{pattern}/?$"), name))
    # Literal segments beat parameters: sort by number of literal characters, longest first.
    routes.sort(key=lambda r: -len(re.sub(r"\(\?P<\w+>[^)]*\)", "", r[1].pattern)))
    return routes


def identify(
    signing_service: str,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
) -> tuple[str, str, str, dict[str, str]]:
    """Return (service, protocol, operation, path params) of an AWS API request."""
    service = _SIGNING_TO_SERVICE.get(signing_service, signing_service)
    try:
        model = _service_model(service)
    except Exception:  # an unknown service: moto answers (or rejects) it, we only pass it on
        return service, "unknown", "", {}
    protocol = model.metadata.get("protocol", "")
    protocols = model.metadata.get("protocols") or [protocol]
    if "smithy-rpc-v2-cbor" in protocols and path.startswith("/service/"):
        return service, "smithy-rpc-v2-cbor", path.rsplit("/", 1)[-1], {}
    target = headers.get("x-amz-target", "")
    if target:
        return service, "json", target.rsplit(".", 1)[-1], {}
    if protocol in ("query", "ec2") or "query" in protocols:
        source = body.decode(errors="replace") if method == "POST" else query
        action = parse_qs(source).get("Action", [""])[0]
        return service, protocol if protocol in ("query", "ec2") else "query", action, {}
    if protocol.startswith("rest"):
        for route_method, pattern, name in _rest_routes(service):
            if route_method == method:
                match = pattern.match(path)
                if match:
                    return service, protocol, name, match.groupdict()
    return service, protocol, "", {}


class Gateway:
    """WSGI application: authenticate, overlay or pass to moto, then run after-hooks."""

    def __init__(
        self,
        moto_app: Callable[..., Iterable[bytes]],
        *,
        access_key: str,
        secret_key: str,
        state_lock: threading.RLock,
        admin: Callable[..., Iterable[bytes]] | None = None,
    ) -> None:
        self._moto = moto_app
        self._access_key = access_key
        self._secret_key = secret_key
        self._lock = state_lock
        self._admin = admin
        self._overlays: dict[tuple[str, str], Handler] = {}
        self._after: list[AfterHook] = []
        self.state_version = 0
        # API calls served, by (service, operation): what benchmarks and `/_lab/stats` report.
        self.calls: Counter[tuple[str, str]] = Counter()

    def overlay(self, service: str, operation: str, handler: Handler) -> None:
        """Answer ``service:operation`` with ``handler`` (which may return None to pass to moto)."""
        self._overlays[(service, operation)] = handler

    def after(self, hook: AfterHook) -> None:
        """Run ``hook(request, status)`` after every successful mutating call."""
        self._after.append(hook)

    def bump(self) -> None:
        """Record that control-plane state changed outside an API call (e.g. a lab timer)."""
        with self._lock:
            self.state_version += 1

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path.startswith("/_lab/") and self._admin is not None:
            return self._admin(environ, start_response)
        raw = _read_body(environ)
        body = _decoded(raw, environ)
        verdict = sigv4.verify(
            environ, raw, access_key=self._access_key, secret_key=self._secret_key
        )
        headers = _headers(environ)
        signing_service = verdict.scope.service if verdict.scope else ""
        service, protocol, operation, params = identify(
            signing_service,
            environ["REQUEST_METHOD"],
            path,
            environ.get("QUERY_STRING", ""),
            headers,
            body,
        )
        if not verdict.ok:
            log.info("rejected %s %s: %s", service, operation, verdict.code)
            return _send(
                start_response, error_response(protocol, 403, verdict.code, verdict.message)
            )
        assert verdict.scope is not None
        request = LabRequest(
            service=service,
            region=verdict.scope.region,
            operation=operation,
            method=environ["REQUEST_METHOD"],
            path=path,
            query=environ.get("QUERY_STRING", ""),
            headers=headers,
            body=body,
            protocol=protocol,
            path_params=params,
        )
        environ["regiondrill.operation"] = (service, operation)
        environ["regiondrill.protocol"] = protocol
        request.forward = lambda: self._call_moto(environ, raw)
        self.calls[(service, operation)] += 1
        handler = self._overlays.get((service, operation))
        with self._lock:
            started = time.perf_counter()
            response = handler(request) if handler is not None else None
            if response is None:
                response = self._call_moto(environ, raw)
            if request.is_mutating and response.status < 300:
                self._changed(request, response.status)
            held = time.perf_counter() - started
        if held > SLOW_CALL:
            # Every data-plane path waits for this lock: a slow call shows up as a lab stall.
            log.warning(
                "lab API call %s:%s held the state lock for %.2fs", service, operation, held
            )
        return _send(start_response, response)

    def _call_moto(self, environ: dict, raw: bytes) -> LabResponse:
        """Run moto's application on the request and capture its response."""
        captured: dict[str, Any] = {}

        def capture(status: str, response_headers: list, exc_info: Any = None) -> Any:
            captured["status"] = int(status.split()[0])
            captured["headers"] = [
                (k, v) for k, v in response_headers if k.lower() != "content-length"
            ]
            return lambda data: None

        environ = dict(environ)
        environ["wsgi.input"] = _BytesInput(raw)
        environ["CONTENT_LENGTH"] = str(len(raw))
        try:
            body = b"".join(self._moto(environ, capture))
        except NotImplementedError:
            # An operation neither moto nor the lab models: say so plainly (and do not let
            # botocore retry a 500 that can never succeed).
            service, operation = environ.get("regiondrill.operation", ("?", "?"))
            return error_response(
                environ.get("regiondrill.protocol", "query"),
                400,
                "InvalidAction",
                f"The regiondrill lab does not implement {service}:{operation}",
            )
        return LabResponse(captured.get("status", 500), body, captured.get("headers", []))

    def _changed(self, request: LabRequest, status: int) -> None:
        self.state_version += 1
        for hook in self._after:
            try:
                hook(request, status)
            except Exception:  # a hook must never turn a successful API call into a failure
                log.exception(
                    "after-hook %r failed for %s:%s", hook, request.service, request.operation
                )


class _BytesInput:
    """A re-readable wsgi.input (the gateway reads the body before moto does)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = len(self._data) - self._pos
        chunk = self._data[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk

    def readline(self, size: int = -1) -> bytes:
        end = self._data.find(b"\n", self._pos)
        end = len(self._data) if end < 0 else end + 1
        if size is not None and size >= 0:
            end = min(end, self._pos + size)
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def __iter__(self) -> Any:
        while True:
            line = self.readline()
            if not line:
                return
            yield line


def _read_body(environ: dict) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH")
    if length:
        body = stream.read(int(length))
    elif environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked" or environ.get(
        "wsgi.input_terminated"
    ):
        body = stream.read()
    else:
        body = b""
    return body


def _decoded(raw: bytes, environ: dict) -> bytes:
    """Return the request body without content encoding.

    botocore gzips large CloudWatch payloads; the signature covers the encoded bytes (and moto
    decodes them itself), but the gateway needs the plain body to identify the operation.
    """
    if environ.get("HTTP_CONTENT_ENCODING", "").lower() == "gzip":
        try:
            return gzip.decompress(raw)
        except OSError:
            return raw
    return raw


def _headers(environ: dict) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    return headers


def _send(start_response: Callable[..., Any], response: LabResponse) -> list[bytes]:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Status"
    headers = [*response.headers, ("Content-Length", str(len(response.body)))]
    start_response(f"{response.status} {reason}", headers)
    return [response.body]


def moto_dispatcher() -> Any:
    """Return moto's server application with its per-request backend lookup cached.

    moto's ``DomainDispatcherApplication`` finds the backend for a request's host by listing its
    own package directory (``os.listdir`` plus an ``isdir`` per entry) and then trying every
    backend's URL regex, on every request, under a global lock: about 0.5 ms of a 4 ms
    ``DescribeVpcs`` round trip on the lab (measured side by side). The answer depends only on
    the host, and the lab sees a handful of hosts, so it is memoised. Same decisions as moto 5.2
    (pinned in pyproject.toml).
    """
    from moto import backends
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    modules = frozenset(backends.list_of_moto_modules())

    class _Dispatcher(DomainDispatcherApplication):
        def __init__(self) -> None:
            super().__init__(create_backend_app)
            self._backend_of: dict[str, Any] = {}

        def get_backend_for_host(self, host: str | None) -> Any:
            if host is None:
                return None
            if host not in self._backend_of:  # under moto's dispatcher lock
                if host == "moto_api" or host in modules:
                    backend: Any = host
                else:
                    backend = next(
                        (b for b, p in self.backend_url_patterns if p.match(f"http://{host}")),
                        None,
                    )
                self._backend_of[host] = backend
            return self._backend_of[host]

    return _Dispatcher()
