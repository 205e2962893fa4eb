"""The lab: an embedded, offline twin of the multi-region private API stack.

One ``Lab`` per process (moto keeps its state in process-global backends). It serves the AWS
APIs on a loopback HTTP endpoint through the gateway (moto + overlays) and, as later parts land,
the data plane derived from that state: resolvers, NLB listeners, the API, bastions.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import secrets
import shutil
import string
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from werkzeug.serving import BaseWSGIServer, make_server

from harness.clock import Clock
from harness.errors import LabError
from harness.lab import fidelity
from harness.lab.addresses import PortMap
from harness.lab.cloudformation import resources as cfn_resources
from harness.lab.cloudformation.engine import StackEngine
from harness.lab.gateway import Gateway, LabRequest, moto_dispatcher
from harness.lab.health import DEFAULT_PROPAGATION
from harness.lab.lambda_runtime import LambdaRuntime
from harness.lab.pki import LabCA
from harness.lab.scheduler import Scheduler
from harness.lab.topology import Topology
from harness.lab.topology import build as build_topology

log = logging.getLogger(__name__)

ACCOUNT_ID = "123456789012"  # moto's default account; the lab is a single-account twin

# The data-plane components, started in this order and stopped in reverse. Each is
# "module:Class"; the class is constructed with the Lab and implements Component.
COMPONENTS: tuple[str, ...] = (
    "harness.lab.network:Network",
    "harness.lab.health:HealthPipeline",
    "harness.lab.resolver:Resolvers",
    "harness.lab.nlb:LoadBalancers",
    "harness.lab.bastions:Bastions",
    "harness.lab.sshd:SshServers",
)


class Component(Protocol):
    """A part of the lab's data plane, kept in step with the control plane."""

    name: str

    def start(self) -> None:
        """Start serving (bind sockets, schedule timers)."""

    def update(self, topology: Topology) -> None:
        """Bring the component in line with a new control-plane snapshot (reconciler thread)."""

    def stop(self) -> None:
        """Stop serving and release everything."""


_active_lock = threading.Lock()
_active: Lab | None = None


def _quiet_handler() -> type:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class QuietRequestHandler(MotoRequestHandler):
        """moto's request handler without werkzeug's per-request access log lines."""

        def log_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return QuietRequestHandler


def _random_key(length: int, alphabet: str) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class LabInfo:
    """How to reach a running lab (what `regiondrill lab serve` prints)."""

    endpoint: str
    aws_access_key_id: str
    aws_secret_access_key: str
    regions: tuple[str, ...]
    ports: PortMap
    clock: Clock
    ca_bundle: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def health_propagation(self) -> float:
        """Lab seconds Route 53's view lags its checkers (``Lab(health_propagation=...)``)."""
        return float(self.extra.get("health_propagation", DEFAULT_PROPAGATION))

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
            "regions": list(self.regions),
            "ports": self.ports.to_dict(),
            "clock": self.clock.to_dict(),
            "ca_bundle": self.ca_bundle,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabInfo:
        known = {
            "endpoint",
            "aws_access_key_id",
            "aws_secret_access_key",
            "regions",
            "ports",
            "clock",
            "ca_bundle",
        }
        return cls(
            endpoint=data["endpoint"],
            aws_access_key_id=data["aws_access_key_id"],
            aws_secret_access_key=data["aws_secret_access_key"],
            regions=tuple(data["regions"]),
            ports=PortMap.from_dict(data["ports"]),
            clock=Clock(**data["clock"]),
            ca_bundle=data.get("ca_bundle", ""),
            extra={k: v for k, v in data.items() if k not in known},
        )


class Lab:
    """Start, serve and stop the lab. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        regions: Sequence[str],
        *,
        speed: float = 20.0,
        workdir: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        components: Sequence[str] | None = None,
        health_propagation: float = DEFAULT_PROPAGATION,
    ) -> None:
        if not regions:
            raise LabError("the lab needs at least one region")
        if not (math.isfinite(health_propagation) and health_propagation >= 0):
            raise LabError(
                "health_propagation must be a finite number of lab seconds >= 0, "
                f"got {health_propagation!r}"
            )
        # Lab seconds Route 53 takes to act on a health-check change (harness.lab.health).
        self.health_propagation = float(health_propagation)
        self.regions = tuple(regions)
        self.speed = speed
        # Which data-plane components to run; tests of the control plane alone pass ().
        self.component_specs = tuple(COMPONENTS if components is None else components)
        self.host = host
        self._requested_port = port
        self._own_workdir = workdir is None
        self.workdir = (
            Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="regiondrill-lab-"))
        )
        self.state_lock = threading.RLock()
        self.access_key = "AKIA" + _random_key(16, string.ascii_uppercase + string.digits)
        self.secret_key = _random_key(40, string.ascii_letters + string.digits + "+/")
        self.ports = PortMap.allocate()
        self.clock = Clock.scaled(speed)
        self.ca: LabCA | None = None
        self.gateway: Gateway | None = None
        self.engine: StackEngine | None = None
        self.scheduler = Scheduler(self.clock)
        self.components: dict[str, Component] = {}
        # Data-plane components look each other up through these names:
        self.network: Any = None  # harness.lab.network.Network (reachability)
        self.health: Any = None  # harness.lab.health.HealthPipeline
        self.resolvers: Any = None  # harness.lab.resolver.Resolvers
        self.load_balancers: Any = None  # harness.lab.nlb.LoadBalancers (TLS listeners + API)
        self.bastions: Any = None  # harness.lab.bastions.Bastions (SSM agents, SSH, shims)
        self.ssh: Any = None  # harness.lab.sshd.SshServers (an SSH server per bastion)
        self.lambda_runtime: LambdaRuntime | None = None
        self._topology: Topology | None = None
        self._changed = threading.Event()
        self._reconciler: threading.Thread | None = None
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._stoppers: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Lab:
        global _active
        with _active_lock:
            if _active is not None:
                raise LabError(
                    "a lab is already running in this process (moto's state is process-wide); "
                    "stop it first or attach to it with --lab-url"
                )
            _active = self
        try:
            self._start()
        except Exception:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()
        cfn_resources.register()
        self.ca = LabCA.create(self.workdir / "pki")
        cfn_resources.set_certificate_issuer(self._issue_certificate)
        self._stoppers.append(lambda: cfn_resources.set_certificate_issuer(None))

        self.gateway = Gateway(
            moto_dispatcher(),
            access_key=self.access_key,
            secret_key=self.secret_key,
            state_lock=self.state_lock,
            admin=self._admin,
        )
        self.engine = StackEngine(lock=self.state_lock, on_change=self._control_plane_changed)
        self.engine.install(self.gateway)
        self._stoppers.append(self.engine.close)
        self.gateway.after(self._after_api_call)
        self._install_overlays()

        self._server = make_server(
            self.host,
            self._requested_port,
            self.gateway,
            threaded=True,
            request_handler=_quiet_handler(),
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="lab-gateway", daemon=True
        )
        self._thread.start()
        self.scheduler.start()
        self._stoppers.append(self.scheduler.stop)
        # One runtime runs every Lambda function's code (warm workers under the lab's workdir);
        # closed after the components that invoke it have stopped.
        self.lambda_runtime = LambdaRuntime(self.workdir / "lambda", max_workers_per_function=8)
        self._stoppers.append(self.lambda_runtime.close)
        self._start_components()
        log.info("lab serving AWS APIs on %s", self.endpoint)

    def _start_components(self) -> None:
        import importlib

        for spec in self.component_specs:
            module_name, class_name = spec.split(":")
            component = getattr(importlib.import_module(module_name), class_name)(self)
            self.components[component.name] = component
            component.start()
            self._stoppers.append(component.stop)
        self._reconciler = threading.Thread(
            target=self._reconcile_loop, name="lab-reconciler", daemon=True
        )
        self._reconciler.start()
        self._stoppers.append(self._stop_reconciler)
        self.notify_changed()

    def _stop_reconciler(self) -> None:
        self._stopping.set()
        self._changed.set()
        if self._reconciler is not None:
            self._reconciler.join(timeout=10)

    def _reconcile_loop(self) -> None:
        """Push each new control-plane snapshot to every component, coalescing bursts."""
        while not self._stopping.is_set():
            self._changed.wait()
            if self._stopping.is_set():
                return
            self._changed.clear()
            topology = self.topology()
            for component in list(self.components.values()):
                try:
                    component.update(topology)
                except Exception:
                    log.exception("lab component %s failed to update", component.name)

    def _install_overlays(self) -> None:
        """Register the service overlays (each module wires its own operations)."""
        from harness.lab import overlays

        assert self.gateway is not None
        overlays.install(self.gateway, self)

    def stop(self) -> None:
        global _active
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        for stopper in reversed(self._stoppers):
            try:
                stopper()
            except Exception:
                log.exception("stopping %r failed", stopper)
        self._stoppers.clear()
        with _active_lock:
            if _active is self:
                _active = None
                from moto.moto_api._internal.models import moto_api_backend

                moto_api_backend.reset()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ facts

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise LabError("the lab is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def info(self) -> LabInfo:
        return LabInfo(
            endpoint=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            regions=self.regions,
            ports=self.ports,
            clock=self.clock,
            ca_bundle=str(self.ca.bundle_path) if self.ca else "",
            extra={"account_id": ACCOUNT_ID, "health_propagation": self.health_propagation},
        )

    def wait_idle(self, timeout: float | None = 60) -> None:
        """Wait until queued control-plane work (stack operations) has finished."""
        if self.engine is not None:
            self.engine.wait_idle(timeout)

    # ------------------------------------------------------------------ state for the data plane

    @property
    def account_id(self) -> str:
        return ACCOUNT_ID

    @property
    def state_version(self) -> int:
        return self.gateway.state_version if self.gateway is not None else 0

    def topology(self) -> Topology:
        """Return the control-plane snapshot for the current state version (cached)."""
        cached = self._topology
        version = self.state_version
        if cached is not None and cached.version == version:
            return cached
        with self.state_lock:
            version = self.state_version
            if self._topology is None or self._topology.version != version:
                self._topology = build_topology(ACCOUNT_ID, version)
            return self._topology

    def notify_changed(self) -> None:
        """Record a control-plane change and wake the reconciler."""
        if self.gateway is not None:
            self.gateway.bump()
        self._changed.set()

    # ------------------------------------------------------------------ control-plane events

    def _issue_certificate(self, names: Sequence[str]) -> tuple[bytes, bytes, bytes]:
        assert self.ca is not None
        issued = self.ca.issue(names)
        return issued.cert_pem.encode(), issued.key_pem.encode(), self.ca.ca_pem.encode()

    def _control_plane_changed(self, region: str) -> None:
        """Re-derive lab views after a change in ``region`` (called with or without the lock)."""
        with self.state_lock:
            fidelity.reconcile(ACCOUNT_ID, region)
        self.notify_changed()

    def _after_api_call(self, request: LabRequest, status: int) -> None:
        if request.service in ("ec2", "elbv2"):
            self._control_plane_changed(request.region)
        else:
            self._changed.set()  # the gateway already bumped the version

    # ------------------------------------------------------------------ health (Route 53)

    def health_check_changed(self, health_check_id: str) -> None:
        """A health check's configuration changed (e.g. Inverted): re-evaluate it."""
        if self.health is not None:
            self.health.health_check_changed(health_check_id)

    def health_check_observations(self, health_check: Any) -> list[dict[str, str]]:
        """Return what Route 53's checkers report for a health check (GetHealthCheckStatus)."""
        if self.health is None:
            raise LabError("the lab's health pipeline is not running")
        return self.health.observations(health_check)

    # ------------------------------------------------------------------ admin API

    def _admin(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Serve /_lab/*: lab facts for clients attached with --lab-url (basic auth = creds)."""
        expected = base64.b64encode(f"{self.access_key}:{self.secret_key}".encode()).decode()
        if environ.get("HTTP_AUTHORIZATION", "") != f"Basic {expected}":
            start_response(
                "401 Unauthorized",
                [
                    ("Content-Type", "application/json"),
                    ("WWW-Authenticate", 'Basic realm="regiondrill lab"'),
                ],
            )
            return [b'{"message": "lab credentials required"}']
        path = environ.get("PATH_INFO", "")
        if path == "/_lab/info":
            payload = self.info.to_dict()
            if self.ca is not None:
                payload["ca_pem"] = self.ca.ca_pem
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(payload).encode()]
        if path == "/_lab/stats":
            assert self.gateway is not None
            calls = {
                f"{service}:{operation}": count
                for (service, operation), count in self.gateway.calls.items()
            }
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps({"calls": calls, "state_version": self.state_version}).encode()]
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [json.dumps({"message": f"unknown lab endpoint {path}"}).encode()]
