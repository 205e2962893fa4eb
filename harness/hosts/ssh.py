"""Run commands on hosts over SSH (paramiko), optionally through a jump host.

The executor is target-agnostic: it always names hosts by the address the user knows (a
bastion's VPC address on AWS and in the lab) and asks a ``resolve_endpoint`` callable where to
open the TCP connection. On AWS that is the identity (the operator's network reaches the VPC);
for the lab, :func:`lab_endpoint_resolver` maps ``10.a.b.c:22`` to ``127.a.b.c:<lab ssh port>``.
Host keys are checked against ``host_keys`` (pinned keys by host) and ``known_hosts``; an
unknown key is rejected unless another ``host_key_policy`` is given. A mismatching key is
always rejected.

One connection is opened per executor on first use and shared by concurrent ``run`` calls
(paramiko multiplexes channels over one transport). A command that exceeds its timeout has its
channel closed and raises :class:`~harness.errors.CommandTimeout`; as with OpenSSH without a
pty, the remote process is not killed by that.
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import paramiko

from harness.clock import REAL_TIME, Clock
from harness.errors import CommandError, CommandTimeout, ConfigError, LabError
from harness.hosts.base import CommandResult, Executor, tail

if TYPE_CHECKING:
    from harness.lab.addresses import PortMap

__all__ = [
    "DEFAULT_PORT",
    "ResolveEndpoint",
    "SshExecutor",
    "lab_endpoint_resolver",
    "load_private_key",
    "parse_ssh_target",
]

ResolveEndpoint = Callable[[str, int], tuple[str, int]]
DEFAULT_PORT = 22
MAX_OUTPUT = 16 * 1024 * 1024  # bytes kept per stream by default; more is marked truncated
_READ_CHUNK = 65536
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\Z", re.IGNORECASE)
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")


def parse_ssh_target(target: str) -> tuple[str, str, int]:
    """Return ``(user, host, port)`` from ``ssh://USER@HOST[:PORT]``.

    Raises:
        ConfigError: the string is not such a target (the bad part is named).
    """
    parts = urlsplit(target) if isinstance(target, str) else None
    if parts is None or parts.scheme != "ssh":
        raise ConfigError(f"SSH target {target!r} must look like ssh://USER@HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.password:
        raise ConfigError(f"SSH target {target!r} must look like ssh://USER@HOST[:PORT]")
    user, host = parts.username or "", parts.hostname or ""
    if not _USER.match(user):
        raise ConfigError(f"SSH target {target!r}: user {user!r} is missing or not a user name")
    if not _HOST.match(host):
        raise ConfigError(f"SSH target {target!r}: host {host!r} is not a host name or address")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"SSH target {target!r}: {exc}") from exc
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"SSH target {target!r}: port {port} is outside 1..65535")
    return user, host, port or DEFAULT_PORT


def lab_endpoint_resolver(ports: PortMap) -> ResolveEndpoint:
    """Return where the lab serves a VPC address and port (its loopback twin, lab port)."""
    from harness.lab.addresses import to_loopback

    def resolve(host: str, port: int) -> tuple[str, int]:
        try:
            return to_loopback(host), ports.lab_port(port)
        except LabError as exc:
            raise CommandError(f"the lab cannot serve SSH host {host!r}: {exc}") from exc

    return resolve


def load_private_key(key: paramiko.PKey | str | Path) -> paramiko.PKey:
    """Return ``key`` as a paramiko key, loading it from a file when given a path.

    Raises:
        ConfigError: the file is missing or not a private key paramiko can read.
    """
    if isinstance(key, paramiko.PKey):
        return key
    path = Path(key).expanduser()
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError as exc:
        raise ConfigError(f"SSH private key file {path} does not exist") from exc
    except (OSError, ValueError, paramiko.SSHException) as exc:
        raise ConfigError(f"SSH private key file {path} cannot be read: {exc}") from exc


class SshExecutor(Executor):
    """Run commands on one host over SSH with public-key authentication."""

    NAME: ClassVar[str] = "ssh"

    def __init__(
        self,
        user: str,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        key: paramiko.PKey | str | Path,
        jump: str | None = None,
        clock: Clock = REAL_TIME,
        resolve_endpoint: ResolveEndpoint | None = None,
        host_keys: Mapping[str, paramiko.PKey] | None = None,
        known_hosts: str | Path | None = None,
        host_key_policy: paramiko.MissingHostKeyPolicy | None = None,
        connect_timeout: float = 10.0,
        max_output: int = MAX_OUTPUT,
    ) -> None:
        parse_ssh_target(f"ssh://{user}@{host}:{port}")  # validates all three
        self.user = user
        self._host = host
        self.port = port
        self.key = load_private_key(key)
        self.jump = parse_ssh_target(jump) if jump is not None else None
        self.clock = clock
        self.resolve_endpoint: ResolveEndpoint = resolve_endpoint or (lambda h, p: (h, p))
        self.host_keys = dict(host_keys or {})
        self.known_hosts = Path(known_hosts).expanduser() if known_hosts else None
        self.host_key_policy = host_key_policy or paramiko.RejectPolicy()
        self.connect_timeout = connect_timeout
        self.max_output = max_output
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._jump_client: paramiko.SSHClient | None = None

    @classmethod
    def from_target(
        cls, target: str, *, sessions: Any = None, clock: Clock = REAL_TIME, **options: Any
    ) -> SshExecutor:
        user, host, port = parse_ssh_target(target)
        if "key" not in options:
            raise ConfigError(f"{target}: the ssh executor needs a private key (key=...)")
        return cls(user, host, port, clock=clock, **options)

    @property
    def host(self) -> str:
        return self._host

    @property
    def target(self) -> str:
        suffix = "" if self.port == DEFAULT_PORT else f":{self.port}"
        return f"ssh://{self.user}@{self._host}{suffix}"

    def __repr__(self) -> str:
        via = f" via {self.jump[1]}" if self.jump else ""
        return f"SshExecutor({self.target!r}{via})"

    # ------------------------------------------------------------------ connection

    def _host_key_store(self, client: paramiko.SSHClient) -> None:
        if self.known_hosts is not None:
            try:
                client.load_host_keys(str(self.known_hosts))
            except OSError as exc:
                raise ConfigError(f"known_hosts file {self.known_hosts}: {exc}") from exc
        for host, key in self.host_keys.items():
            for name in {host, f"[{host}]:{self.port}"}:
                client.get_host_keys().add(name, key.get_name(), key)
        client.set_missing_host_key_policy(self.host_key_policy)

    def _connect(self, user: str, host: str, port: int, sock: Any) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        self._host_key_store(client)
        where = f"ssh://{user}@{host}:{port}"
        try:
            client.connect(
                hostname=host,
                port=port,
                username=user,
                pkey=self.key,
                sock=sock,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                channel_timeout=self.connect_timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise CommandError(
                f"{where}: host key mismatch (got {exc.key.get_name()} "
                f"{exc.key.fingerprint}, expected {exc.expected_key.fingerprint}); refusing to "
                "connect"
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise CommandError(
                f"{where}: authentication failed for user {user!r} with key "
                f"{self.key.get_name()} {self.key.fingerprint} ({exc})"
            ) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            detail = str(exc) or type(exc).__name__
            raise CommandError(f"{where}: SSH connection failed: {detail}") from exc
        return client

    def _open_socket(self) -> Any:
        """Return a stream to the target: a TCP socket, or a channel through the jump host."""
        if self.jump is None:
            address = self.resolve_endpoint(self._host, self.port)
            try:
                return socket.create_connection(address, timeout=self.connect_timeout)
            except OSError as exc:
                raise CommandError(
                    f"ssh://{self.user}@{self._host}:{self.port}: cannot connect to "
                    f"{address[0]}:{address[1]}: {exc}"
                ) from exc
        jump_user, jump_host, jump_port = self.jump
        jump_address = self.resolve_endpoint(jump_host, jump_port)
        try:
            jump_sock = socket.create_connection(jump_address, timeout=self.connect_timeout)
        except OSError as exc:
            raise CommandError(
                f"jump host ssh://{jump_user}@{jump_host}:{jump_port}: cannot connect to "
                f"{jump_address[0]}:{jump_address[1]}: {exc}"
            ) from exc
        self._jump_client = self._connect(jump_user, jump_host, jump_port, jump_sock)
        transport = self._jump_client.get_transport()
        assert transport is not None
        try:
            return transport.open_channel(
                "direct-tcpip",
                (self._host, self.port),
                ("127.0.0.1", 0),
                timeout=self.connect_timeout,
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise CommandError(
                f"jump host {jump_host} could not open a connection to {self._host}:{self.port}: "
                f"{exc}"
            ) from exc

    def _session(self) -> paramiko.Channel:
        """Open a session channel, (re)connecting when there is no live connection."""
        with self._lock:
            for attempt in range(2):
                if self._client is None:
                    try:
                        sock = self._open_socket()
                        self._client = self._connect(self.user, self._host, self.port, sock)
                    except CommandError:
                        self._close_locked()  # the jump host's connection too
                        raise
                transport = self._client.get_transport()
                try:
                    if transport is None or not transport.is_active():
                        raise paramiko.SSHException("connection closed")
                    return transport.open_session(timeout=self.connect_timeout)
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    self._close_locked()
                    if attempt:
                        raise CommandError(
                            f"{self.target}: cannot open an SSH session: {exc}"
                        ) from exc
            raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        for client in (self._client, self._jump_client):
            if client is not None:
                client.close()
        self._client = None
        self._jump_client = None

    # ------------------------------------------------------------------ commands

    def run(
        self, command: str, timeout: float, *, expected_duration: float | None = None
    ) -> CommandResult:
        if not isinstance(command, str) or not command.strip():
            raise ConfigError(f"command must be a non-empty string, got {command!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(
                f"command timeout must be a positive number of seconds, got {timeout!r}"
            )
        started = time.monotonic()
        deadline = started + self.clock.wall_duration(timeout)
        channel = self._session()
        try:
            try:
                channel.exec_command(command)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise CommandError(
                    f"{self.target}: the server refused to run the command: {exc}"
                ) from exc
            out, err, truncated = self._collect(channel, deadline, command, timeout)
            rc = channel.recv_exit_status()
        finally:
            channel.close()
        return CommandResult(
            rc=rc,
            stdout=out,
            stderr=err,
            duration=time.monotonic() - started,
            truncated=truncated,
            status="Success" if rc == 0 else "Failed",
            host=self._host,
        )

    def _collect(
        self, channel: paramiko.Channel, deadline: float, command: str, timeout: float
    ) -> tuple[str, str, bool]:
        """Read stdout and stderr until the command exits, or raise CommandTimeout."""
        out: list[bytes] = []
        err: list[bytes] = []
        sizes = [0, 0]
        truncated = False

        def keep(chunks: list[bytes], index: int, data: bytes) -> None:
            nonlocal truncated
            room = self.max_output - sizes[index]
            if len(data) > room:
                truncated = True
                data = data[: max(room, 0)]
            sizes[index] += len(data)
            if data:
                chunks.append(data)

        while True:
            while channel.recv_ready():
                keep(out, 0, channel.recv(_READ_CHUNK))
            while channel.recv_stderr_ready():
                keep(err, 1, channel.recv_stderr(_READ_CHUNK))
            done = channel.exit_status_ready() and (channel.eof_received or channel.closed)
            if done and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CommandTimeout(
                    f"command {command.strip().splitlines()[0][:80]!r} on {self.target} did not "
                    f"finish within {timeout:g} s"
                    f"\n--- stdout ---\n{tail(_text(out))}\n--- stderr ---\n{tail(_text(err))}"
                )
            if channel.eof_received:
                # Drained and at EOF: only the exit status (or the close) is still to come.
                channel.status_event.wait(min(remaining, 0.5))
            else:
                # The channel's fileno is a pipe paramiko sets when data or EOF arrives.
                select.select([channel], [], [], min(remaining, 0.5))
        return _text(out), _text(err), truncated


def _text(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode("utf-8", errors="replace")
