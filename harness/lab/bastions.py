"""The lab's bastions: a shell per bastion instance, its SSM agent, and its dig/curl.

Every instance tagged ``regiondrill:role=bastion`` gets an environment under
``<lab workdir>/bastions/<instance-id>/``: that directory is the shell's HOME and working
directory, and ``bin/`` in it holds the ``dig`` and ``curl`` shims (``harness/lab/shims``), first
on PATH. Commands run as ``/bin/bash`` in their own process group, with a minimal environment
built from nothing (no variable of the lab process reaches them, so neither do the lab's
credentials)::

    PATH=<scratch>/bin:/usr/local/bin:/usr/bin:/bin  HOME=<scratch>  LANG=C.UTF-8
    AWS_SSM_INSTANCE_ID=<instance id>  AWS_SSM_REGION_NAME=<region>   (as the SSM agent sets)

The SSM agent of a bastion exists when the instance has an IAM instance profile (the stack gives
bastions one with AmazonSSMManagedInstanceCore; moto's CloudFormation drops the role's managed
policy ARNs, so the lab cannot check the policy itself). Run Command semantics (statuses,
timeouts, output limits) live in :mod:`harness.lab.services.ssm`; this module runs the shells.

Shells run on a bounded pool of threads (:data:`SHELL_WORKERS`); a command beyond that waits for a
free worker. A stopped instance's shells are killed, as powering off would.

SSH: ``harness/lab/sshd.py`` (its own component) serves each bastion's SSH port and runs exec
requests through :meth:`Bastions.spawn`, so SSH and SSM commands share one environment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from harness.errors import CommandTimeout, LabError
from harness.lab.tools import TOOLS, HostView, ToolServer, render_shim

if TYPE_CHECKING:
    from harness.lab.lab import Lab
    from harness.lab.services.ssm import RunCommandService
    from harness.lab.topology import Topology

log = logging.getLogger(__name__)

SHELL = "/bin/bash"
SHELL_WORKERS = 32
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
KILL_GRACE = 2.0  # wall seconds to wait for output pipes to close after killing a shell
GONE_STATES = frozenset({"terminated", "shutting-down"})


@dataclass(frozen=True)
class Bastion:
    """One bastion's environment: where it is in the network and where its shell lives."""

    instance_id: str
    region: str
    vpc_id: str
    address: str  # the instance's VPC address (its sockets are on the matching 127.x address)
    resolver_address: str  # the VPC's Route 53 Resolver (base + 2)
    scratch: Path  # HOME and working directory
    managed: bool  # an SSM agent runs (the instance has an instance profile)
    token: str = field(repr=False)  # names this bastion to the tool server; grants nothing else

    @property
    def bin_dir(self) -> Path:
        return self.scratch / "bin"


class ShellResult(NamedTuple):
    """What a command printed and how it ended (``rc`` as a shell reports it)."""

    rc: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class ShellOutcome:
    """How a shell run ended, for the SSM agent.

    ``returncode`` is the process's (negative: killed by that signal); ``killed`` says why the
    lab killed it ("timeout", "cancel", "stopped") or is empty.
    """

    returncode: int
    stdout: bytes
    stderr: bytes
    killed: str


class ShellHandle:
    """A command running (or about to run) in a bastion's shell; ``kill()`` stops its group."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._reason = ""
        self.killed_at: float | None = None

    @property
    def kill_reason(self) -> str:
        return self._reason

    def attach(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._proc = proc
            pending = bool(self._reason)
        if pending:
            self._signal()

    def kill(self, reason: str) -> None:
        """Kill the command's whole process group (idempotent; the first reason wins)."""
        with self._lock:
            if self._reason:
                return
            self._reason = reason
            self.killed_at = time.monotonic()
        self._signal()

    def _signal(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


class Bastions:
    """Lab component: bastion environments, their shells, SSM agents and the tool server."""

    name = "bastions"

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.root = Path(lab.workdir) / "bastions"
        self._lock = threading.RLock()
        self._bastions: dict[str, Bastion] = {}
        self._by_token: dict[str, str] = {}
        self._states: dict[str, str] = {}
        self._last_seen: dict[str, float] = {}  # lab time an agent was last online
        self._tags: dict[str, Mapping[str, str]] = {}
        self._running: dict[str, set[ShellHandle]] = {}
        self._pool = ThreadPoolExecutor(max_workers=SHELL_WORKERS, thread_name_prefix="lab-shell")
        self.tools = ToolServer(self._host_for_token)
        from harness.lab.services.ssm import RunCommandService

        self.ssm: RunCommandService = RunCommandService(lab, self)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.tools.start()
        self.lab.bastions = self

    def stop(self) -> None:
        self.ssm.close()
        with self._lock:
            handles = [h for hs in self._running.values() for h in hs]
        for handle in handles:
            handle.kill("stopped")
        self.tools.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.lab.bastions is self:
            self.lab.bastions = None

    def update(self, topology: Topology) -> None:
        """Create environments for new bastions, drop gone ones, follow start/stop."""
        seen: set[str] = set()
        started: list[str] = []
        stopped: list[str] = []
        now = self.lab.clock.now()
        with self._lock:
            for instance in topology.bastions():
                if instance.state in GONE_STATES:
                    continue
                seen.add(instance.id)
                vpc = topology.vpcs.get(instance.vpc_id)
                if vpc is None:
                    continue
                if instance.id not in self._bastions:
                    self._add(instance, vpc.resolver_address)
                self._tags[instance.id] = dict(instance.tags)
                previous = self._states.get(instance.id)
                self._states[instance.id] = instance.state
                if instance.state == "running":
                    self._last_seen[instance.id] = now
                    if previous is not None and previous != "running":
                        started.append(instance.id)
                elif previous == "running":
                    stopped.append(instance.id)
            gone = [iid for iid in self._bastions if iid not in seen]
            for instance_id in gone:
                self._remove(instance_id)
        for instance_id in stopped:
            # Powering off kills the shells; their invocations are then marked lost by the agent.
            self._kill_all(instance_id, "stopped")
        for instance_id in started:
            self.ssm.instance_started(instance_id)
        for instance_id in gone:
            self.ssm.instance_gone(instance_id)

    # ------------------------------------------------------------------ environments

    def _add(self, instance: Any, resolver: str) -> Bastion:
        scratch = self.root / instance.id
        token = secrets.token_hex(16)
        bastion = Bastion(
            instance_id=instance.id,
            region=instance.region,
            vpc_id=instance.vpc_id,
            address=instance.address,
            resolver_address=resolver,
            scratch=scratch,
            managed=bool(getattr(instance, "iam_instance_profile", None)),
            token=token,
        )
        bastion.bin_dir.mkdir(parents=True, exist_ok=True)
        scratch.chmod(0o700)
        for tool in TOOLS:
            text = render_shim(tool, port=self.tools.port, token=token, host_label=instance.id)
            path = bastion.bin_dir / tool
            path.write_text(text)
            path.chmod(0o700)
        self._bastions[instance.id] = bastion
        self._by_token[token] = instance.id
        self._running.setdefault(instance.id, set())
        log.info(
            "bastion %s (%s, %s) ready in %s",
            instance.id,
            instance.region,
            instance.address,
            scratch,
        )
        return bastion

    def _remove(self, instance_id: str) -> Bastion:
        bastion = self._bastions.pop(instance_id)
        self._by_token.pop(bastion.token, None)
        self._states.pop(instance_id, None)
        self._tags.pop(instance_id, None)
        self._last_seen.pop(instance_id, None)
        for handle in list(self._running.pop(instance_id, ())):
            handle.kill("stopped")
        shutil.rmtree(bastion.scratch, ignore_errors=True)
        return bastion

    # ------------------------------------------------------------------ facts

    def bastion(self, instance_id: str) -> Bastion:
        """Return the environment of ``instance_id``.

        Raises:
            LabError: no bastion with that id exists in the lab.
        """
        with self._lock:
            found = self._bastions.get(instance_id)
        if found is None:
            raise LabError(
                f"no bastion {instance_id!r} in the lab (bastions: {', '.join(self.ids()) or 'none'})"
            )
        return found

    def ids(self) -> list[str]:
        with self._lock:
            return sorted(self._bastions)

    def all(self) -> list[Bastion]:
        with self._lock:
            return [self._bastions[i] for i in sorted(self._bastions)]

    def state(self, instance_id: str) -> str | None:
        """Return the EC2 state the lab last saw for ``instance_id`` (None: not a bastion)."""
        with self._lock:
            return self._states.get(instance_id)

    def tags(self, instance_id: str) -> Mapping[str, str]:
        with self._lock:
            return dict(self._tags.get(instance_id, {}))

    def last_seen(self, instance_id: str) -> float | None:
        """Return the lab time the instance's agent was last online."""
        with self._lock:
            if self._states.get(instance_id) == "running":
                return self.lab.clock.now()
            return self._last_seen.get(instance_id)

    def environment(
        self, instance_id: str, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Return the environment a command on ``instance_id`` runs with (built from nothing)."""
        bastion = self.bastion(instance_id)
        env = {
            "PATH": f"{bastion.bin_dir}:{SYSTEM_PATH}",
            "HOME": str(bastion.scratch),
            "LANG": "C.UTF-8",
            "AWS_SSM_INSTANCE_ID": bastion.instance_id,
            "AWS_SSM_REGION_NAME": bastion.region,
        }
        env.update(extra or {})
        return env

    def host_view(self, instance_id: str) -> HostView:
        """Return how ``dig``/``curl`` on ``instance_id`` see the network."""
        bastion = self.bastion(instance_id)
        return HostView(
            address=bastion.address,
            resolver=bastion.resolver_address,
            ports=self.lab.ports,
            ca_pem=self.lab.ca.ca_pem if self.lab.ca is not None else "",
            reachable=self._reachable,
        )

    def _reachable(self, src: str | None, dst: str, port: int, protocol: str) -> bool:
        network = self.lab.network
        if network is None:
            return True  # no network model running: every path is open
        return bool(network.check(src, dst, port, protocol).allowed)

    def _host_for_token(self, token: str) -> HostView | None:
        with self._lock:
            instance_id = self._by_token.get(token)
            running = instance_id is not None and self._states.get(instance_id) == "running"
        if instance_id is None or not running:
            return None
        try:
            return self.host_view(instance_id)
        except LabError:
            return None

    # ------------------------------------------------------------------ running commands

    def spawn(
        self, instance_id: str, command: str, *, extra_env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``bash -c command`` on the bastion (own process group, pipes for all streams).

        For callers that stream (the SSH server). The caller owns the process; kill its group
        with ``os.killpg(proc.pid, signal.SIGKILL)``.

        Raises:
            LabError: the bastion does not exist or is not running.
        """
        bastion = self._require_running(instance_id)
        return subprocess.Popen(
            [SHELL, "-c", command],
            cwd=bastion.scratch,
            env=self.environment(instance_id, extra_env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )

    def run(self, instance_id: str, command: str, timeout: float | None = None) -> ShellResult:
        """Run ``command`` in the bastion's shell and wait for it (``timeout`` in lab seconds).

        Raises:
            LabError: the bastion does not exist or is not running.
            CommandTimeout: the command ran longer than ``timeout``; its process group is killed.
        """
        self._require_running(instance_id)
        finished = threading.Event()
        box: list[ShellOutcome] = []

        def done(outcome: ShellOutcome) -> None:
            box.append(outcome)
            finished.set()

        handle = self.execute(instance_id, [SHELL, "-c", command], done, limits=(None, None))
        wall = None if timeout is None else self.lab.clock.wall_duration(timeout)
        if not finished.wait(wall):
            handle.kill("timeout")
            finished.wait(KILL_GRACE + 1)
            raise CommandTimeout(
                f"command on bastion {instance_id} did not finish within {timeout:g} lab seconds "
                "(killed)"
            )
        outcome = box[0]
        if outcome.killed:
            raise LabError(f"command on bastion {instance_id} was killed ({outcome.killed})")
        rc = outcome.returncode if outcome.returncode >= 0 else 128 - outcome.returncode
        return ShellResult(
            rc,
            outcome.stdout.decode("utf-8", "replace"),
            outcome.stderr.decode("utf-8", "replace"),
        )

    def execute(
        self,
        instance_id: str,
        argv: list[str],
        on_done: Callable[[ShellOutcome], None],
        *,
        limits: tuple[int | None, int | None],
        cwd: Path | None = None,
    ) -> ShellHandle:
        """Run ``argv`` on the bastion in the background; ``on_done`` gets the outcome.

        ``limits`` caps the bytes kept of stdout and stderr (the rest is read and dropped, so
        a chatty command never blocks on a full pipe). ``on_done`` runs on a pool thread.

        Raises:
            LabError: the bastion does not exist or is not running.
        """
        bastion = self._require_running(instance_id)
        handle = ShellHandle(instance_id)
        with self._lock:
            self._running.setdefault(instance_id, set()).add(handle)
        env = self.environment(instance_id)

        def work() -> None:
            try:
                outcome = _run_shell(argv, cwd or bastion.scratch, env, handle, limits)
            except Exception as exc:
                log.exception("shell on %s failed to run", instance_id)
                outcome = ShellOutcome(127, b"", f"failed to start the shell: {exc}".encode(), "")
            finally:
                with self._lock:
                    self._running.get(instance_id, set()).discard(handle)
            on_done(outcome)

        self._pool.submit(work)
        return handle

    def _require_running(self, instance_id: str) -> Bastion:
        bastion = self.bastion(instance_id)
        state = self.state(instance_id)
        if state != "running":
            raise LabError(f"bastion {instance_id} is {state}, not running")
        return bastion

    def _kill_all(self, instance_id: str, reason: str) -> None:
        with self._lock:
            handles = list(self._running.get(instance_id, ()))
        for handle in handles:
            handle.kill(reason)


def _run_shell(
    argv: list[str],
    cwd: Path,
    env: Mapping[str, str],
    handle: ShellHandle,
    limits: tuple[int | None, int | None],
) -> ShellOutcome:
    """Run one shell to completion, keeping at most ``limits`` bytes of each stream."""
    if handle.kill_reason:
        return ShellOutcome(-signal.SIGKILL, b"", b"", handle.kill_reason)
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
    )
    handle.attach(proc)
    kept: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
    caps = {1: limits[0], 2: limits[1]}
    selector = selectors.DefaultSelector()
    assert proc.stdout is not None
    assert proc.stderr is not None
    selector.register(proc.stdout, selectors.EVENT_READ, 1)
    selector.register(proc.stderr, selectors.EVENT_READ, 2)
    open_streams = 2
    try:
        while open_streams:
            if handle.killed_at is not None and time.monotonic() - handle.killed_at > KILL_GRACE:
                break  # something outside the group holds the pipes; stop waiting for them
            for key, _ in selector.select(timeout=0.5):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                stream = key.data
                cap = caps[stream]
                buffer = kept[stream]
                if cap is None:
                    buffer.extend(data)
                elif len(buffer) < cap:
                    buffer.extend(data[: cap - len(buffer)])
    finally:
        selector.close()
        proc.stdout.close()
        proc.stderr.close()
    try:
        returncode = proc.wait(timeout=KILL_GRACE if handle.killed_at is not None else None)
    except subprocess.TimeoutExpired:
        handle.kill(handle.kill_reason or "timeout")
        returncode = proc.wait()
    return ShellOutcome(returncode, bytes(kept[1]), bytes(kept[2]), handle.kill_reason)
