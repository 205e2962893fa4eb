"""The lab's SSH servers: one per bastion, on its VPC address, authenticated by its key pair.

Every bastion instance (``regiondrill:role=bastion``, not terminated) gets a listening socket on
its VPC address at the lab port for 22 (``127.a.b.c:<lab ssh port>``); a single accept thread
serves all of them. What a client sees follows an Amazon Linux 2023 bastion:

- **Host key**: one Ed25519 key per instance, generated when the lab first sees it and kept
  for the lab's lifetime (as a host key survives stop/start on the instance's root volume).
  :meth:`SshServers.host_key` gives the public key so the harness can pin it.
- **Authentication**: public key only, for the user ``ec2-user`` (the account cloud-init
  installs the launch key for). The authorized key is the public key of the EC2 key pair named
  by the instance's ``KeyName``, captured when the lab first sees the instance, like
  cloud-init's first boot: deleting the key pair later does not lock anyone out, and an
  instance launched without a key pair accepts no one.
- **Reachability**: each connection is checked with ``lab.network.check`` from the client's
  VPC address; a denied one is dropped silently (the client times out). The harness host
  (127.0.0.1) is the operator path ``harness.lab.network`` documents: it is admitted when the
  bastion's security group admits the whole VPC on port 22, as SSH over an SSM session is.
- **Commands**: ``exec`` requests run through ``lab.bastions.spawn`` — the same per-bastion
  scratch directory, minimal environment and dig/curl shims as SSM commands — streaming stdin,
  stdout, stderr and the exit status (128 + signal for a killed command, as a shell reports
  it). A command whose client goes away is killed with its process group, where OpenSSH
  would leave it running: the lab must not leak processes. Interactive shells are answered
  with a message and exit status 1, and pty requests are refused: the harness never needs
  them.
- **Jump host** (``direct-tcpip``): the bastion opens the connection from its own VPC address,
  so the destination's reachability and security groups apply; forwarding is to VPC IP
  addresses only (no name resolution). A destination the network drops leaves the channel
  silent, so the client times out as it would on AWS.
"""

from __future__ import annotations

import base64
import contextlib
import io
import ipaddress
import logging
import os
import queue
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

from harness.lab.addresses import VPC_SPACE
from harness.lab.netio import (
    MAX_SILENT_HOLD,
    bind_tcp,
    connect_from,
    drop_silently,
    peer_vpc_address,
)
from harness.lab.topology import Topology

if TYPE_CHECKING:
    from harness.lab.lab import Lab

log = logging.getLogger(__name__)

SSH_PORT = 22
LOGIN_USER = "ec2-user"
SERVER_VERSION = "OpenSSH_8.7"  # what Amazon Linux 2023's sshd announces
SHELL_REFUSAL = (
    "regiondrill lab: interactive shells are not supported on lab bastions; "
    "run a command instead (ssh ec2-user@HOST 'COMMAND')\n"
)
_FORWARD_CONNECT_TIMEOUT = 5.0
_CLOSE_GRACE = 2.0  # wall seconds a finished session waits for the client to close it


@dataclass(frozen=True)
class AuthorizedKey:
    """The public key cloud-init installed for ``ec2-user`` (from the launch key pair)."""

    key_name: str
    key_type: str
    blob: bytes

    def matches(self, key: paramiko.PKey) -> bool:
        return key.get_name() == self.key_type and key.asbytes() == self.blob


@dataclass
class _Listener:
    instance_id: str
    address: str
    sock: socket.socket


def _new_host_key() -> paramiko.PKey:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem))


def authorized_key_from_material(key_name: str, material: bytes | str) -> AuthorizedKey:
    """Return the authorized key for an EC2 key pair's public material (OpenSSH or RFC 4716).

    Raises:
        ValueError: the material is not a public key (moto validated it on import, so this
            means a lab bug).
    """
    from moto.ec2.utils import public_key_parse

    raw = material.encode() if isinstance(material, str) else material
    public = public_key_parse(raw)
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    key_type, encoded = line.decode().split()[:2]
    return AuthorizedKey(key_name=key_name, key_type=key_type, blob=base64.b64decode(encoded))


class SshServers:
    """The lab component serving SSH on every bastion (``lab.ssh``)."""

    name = "ssh"

    def __init__(self, lab: Lab) -> None:
        self._lab = lab
        self._lock = threading.Lock()
        self._host_keys: dict[str, paramiko.PKey] = {}
        self._authorized: dict[str, AuthorizedKey | None] = {}
        self._listeners: dict[str, _Listener] = {}
        self._changes: queue.SimpleQueue[tuple[str, _Listener]] = queue.SimpleQueue()
        self._transports: set[paramiko.Transport] = set()
        self._processes: set[subprocess.Popen[bytes]] = set()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ component

    def start(self) -> None:
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._accept_loop, name="lab-sshd", daemon=True)
        self._thread.start()
        self._lab.ssh = self

    def update(self, topology: Topology) -> None:
        """Listen on every bastion's address; stop when the instance (or address) is gone.

        A stopped or terminated bastion keeps its listener: the network check drops every
        connection to an instance that is not running, so clients time out as on AWS instead
        of being refused.
        """
        wanted = {i.id: i for i in topology.bastions() if i.address}
        with self._lock:
            for instance_id, listener in list(self._listeners.items()):
                instance = wanted.get(instance_id)
                if instance is None or instance.address != listener.address:
                    del self._listeners[instance_id]
                    # Closed here so a new bastion on the same address can bind at once; the
                    # accept thread unregisters it (in queue order, before any new socket).
                    listener.sock.close()
                    self._changes.put(("remove", listener))
            for instance_id, instance in wanted.items():
                if instance_id not in self._host_keys:
                    self._host_keys[instance_id] = _new_host_key()
                if self._authorized.get(instance_id) is None:
                    self._authorized[instance_id] = self._launch_key(
                        instance.region, instance.key_name
                    )
                if instance_id in self._listeners:
                    continue
                try:
                    sock = bind_tcp(instance.address, SSH_PORT, self._lab.ports)
                except OSError as exc:
                    log.error(
                        "lab sshd: cannot listen for bastion %s on %s:%s: %s",
                        instance_id,
                        instance.address,
                        SSH_PORT,
                        exc,
                    )
                    continue
                sock.setblocking(False)
                listener = _Listener(instance_id, instance.address, sock)
                self._listeners[instance_id] = listener
                self._changes.put(("add", listener))
        self._wake()

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            listeners = list(self._listeners.values())
            self._listeners.clear()
            transports = list(self._transports)
            processes = list(self._processes)
        for listener in listeners:
            listener.sock.close()
        for proc in processes:
            _kill(proc)
        for transport in transports:
            transport.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        if self._lab.ssh is self:
            self._lab.ssh = None

    # ------------------------------------------------------------------ facts for the harness

    def host_key(self, instance_id: str) -> paramiko.PKey:
        """Return the public host key of a bastion (to pin it in a client).

        Raises:
            KeyError: the lab has never seen that instance as a bastion.
        """
        with self._lock:
            key = self._host_keys.get(instance_id)
        if key is None:
            raise KeyError(f"the lab serves no SSH host key for instance {instance_id}")
        return paramiko.Ed25519Key(data=key.asbytes())

    def host_keys(self) -> dict[str, paramiko.PKey]:
        """Return the public host key of every bastion currently served, by VPC address."""
        with self._lock:
            served = [(lst.address, lst.instance_id) for lst in self._listeners.values()]
        return {address: self.host_key(instance_id) for address, instance_id in served}

    def serving(self) -> dict[str, str]:
        """Return the bastions currently listening: instance id -> VPC address."""
        with self._lock:
            return {i: lst.address for i, lst in self._listeners.items()}

    def authorized_key(self, instance_id: str) -> AuthorizedKey | None:
        with self._lock:
            return self._authorized.get(instance_id)

    # ------------------------------------------------------------------ accepting

    def _launch_key(self, region: str, key_name: str | None) -> AuthorizedKey | None:
        if not key_name:
            return None
        from moto.ec2.models import ec2_backends

        with self._lab.state_lock:
            pair = ec2_backends[self._lab.account_id][region].key_pairs.get(key_name)
            material = pair.material_public if pair is not None else None
        if not material:
            log.debug("lab sshd: key pair %s in %s has no public key", key_name, region)
            return None
        return authorized_key_from_material(key_name, material)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _apply_changes(self) -> None:
        while True:
            try:
                action, listener = self._changes.get_nowait()
            except queue.Empty:
                return
            if action == "add":
                self._selector.register(listener.sock, selectors.EVENT_READ, listener)
            else:
                try:
                    self._selector.unregister(listener.sock)
                except (KeyError, ValueError):
                    pass

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            self._apply_changes()
            for key, _events in self._selector.select(timeout=1.0):
                if key.data is None:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                    continue
                listener: _Listener = key.data
                try:
                    conn, peer = listener.sock.accept()
                except (BlockingIOError, OSError):
                    continue
                try:
                    self._admit(conn, peer[0], listener)
                except Exception:
                    log.exception("lab sshd: failed to admit a connection to %s", listener.address)
                    conn.close()

    def _admit(self, conn: socket.socket, peer_ip: str, listener: _Listener) -> None:
        conn.setblocking(True)
        source = peer_vpc_address(peer_ip)
        network = self._lab.network
        if network is None:
            log.error(
                "lab sshd: no network component; dropping a connection to %s", listener.address
            )
            drop_silently(conn)
            return
        verdict = network.check(source, listener.address, SSH_PORT, "tcp")
        if not verdict.allowed:
            log.debug(
                "lab sshd: dropping %s -> %s:22: %s", source, listener.address, verdict.reason
            )
            drop_silently(conn)
            return
        threading.Thread(
            target=self._serve,
            args=(conn, listener.instance_id, listener.address),
            name=f"lab-sshd-{listener.instance_id}",
            daemon=True,
        ).start()

    def _serve(self, conn: socket.socket, instance_id: str, address: str) -> None:
        transport = paramiko.Transport(conn)
        transport.local_version = f"SSH-2.0-{SERVER_VERSION}"
        with self._lock:
            host_key = self._host_keys[instance_id]
            self._transports.add(transport)
        server = _BastionServer(self, instance_id, address)
        try:
            transport.add_server_key(host_key)
            try:
                transport.start_server(server=server)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                log.debug("lab sshd: handshake with a client of %s failed: %s", address, exc)
                return
            while transport.is_active() and not self._stopping.is_set():
                channel = transport.accept(timeout=1.0)
                if channel is None:
                    continue
                destination = server.forwards.pop(channel.get_id(), None)
                if destination is not None:
                    threading.Thread(
                        target=self._forward,
                        args=(channel, address, destination),
                        name=f"lab-sshd-fwd-{instance_id}",
                        daemon=True,
                    ).start()
        finally:
            transport.close()
            with self._lock:
                self._transports.discard(transport)

    # ------------------------------------------------------------------ channels

    def run_exec(self, channel: paramiko.Channel, instance_id: str, command: str) -> None:
        """Run an exec request in the bastion's shell, streaming its output and exit status.

        The command's process group is killed when the client goes away first (its timeout,
        a dropped connection) or the lab stops: unlike OpenSSH, which leaves such a command
        running until it next writes, the lab must not leak processes.
        """
        bastions = self._lab.bastions
        if bastions is None:
            _fail(
                channel,
                f"the bastions component is not running; cannot run commands on {instance_id}",
            )
            return
        try:
            proc = bastions.spawn(instance_id, command)
        except Exception as exc:
            _fail(channel, str(exc))
            return
        with self._lock:
            self._processes.add(proc)
        rc: int | None = None
        try:
            rc = _stream(channel, proc, self._stopping.is_set)
            if rc is not None:
                channel.send_exit_status(rc)
                channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            rc = None  # the client went away while we answered; nobody is left to tell
        finally:
            _kill(proc)
            with self._lock:
                self._processes.discard(proc)
            if rc is None:
                channel.close()
            else:
                _finish(channel)

    def refuse_shell(self, channel: paramiko.Channel) -> None:
        try:
            channel.sendall_stderr(SHELL_REFUSAL.encode())
            channel.send_exit_status(1)
            channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            _finish(channel)

    def _forward(
        self, channel: paramiko.Channel, source: str, destination: tuple[str, int]
    ) -> None:
        """Serve one direct-tcpip channel; a failure ends that channel, never the server."""
        try:
            self._forward_channel(channel, source, destination)
        except Exception:
            # Like sshd, one broken forward is logged and closed; the bastion keeps serving.
            log.warning("lab sshd: forward %s -> %s:%s failed", source, *destination, exc_info=True)
            channel.close()

    def _forward_channel(
        self, channel: paramiko.Channel, source: str, destination: tuple[str, int]
    ) -> None:
        host, port = destination
        network = self._lab.network
        verdict = network.check(source, host, port, "tcp") if network is not None else None
        if verdict is None or not verdict.allowed:
            why = verdict.reason if verdict is not None else "no network component"
            log.debug("lab sshd: forward %s -> %s:%s dropped: %s", source, host, port, why)
            _hold_silently(channel)
            return
        try:
            upstream = connect_from(
                source, host, port, self._lab.ports, timeout=_FORWARD_CONNECT_TIMEOUT
            )
        except OSError as exc:
            log.debug("lab sshd: forward %s -> %s:%s failed: %s", source, host, port, exc)
            channel.close()
            return
        _pump(channel, upstream, self._stopping.is_set)


class _BastionServer(paramiko.ServerInterface):
    """What one bastion's sshd allows on one connection."""

    def __init__(self, servers: SshServers, instance_id: str, address: str) -> None:
        self._servers = servers
        self._instance_id = instance_id
        self._address = address
        self.forwards: dict[int, tuple[str, int]] = {}

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_none(self, username: str) -> int:
        return AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        return AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if username != LOGIN_USER:
            log.debug("lab sshd %s: no such user %r", self._instance_id, username)
            return AUTH_FAILED
        authorized = self._servers.authorized_key(self._instance_id)
        if authorized is None or not authorized.matches(key):
            return AUTH_FAILED
        return AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return OPEN_SUCCEEDED
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        text = command.decode("utf-8", errors="replace") if isinstance(command, bytes) else command
        threading.Thread(
            target=self._servers.run_exec,
            args=(channel, self._instance_id, text),
            name=f"lab-sshd-exec-{self._instance_id}",
            daemon=True,
        ).start()
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        threading.Thread(target=self._servers.refuse_shell, args=(channel,), daemon=True).start()
        return True

    def check_channel_pty_request(self, *args: Any) -> bool:
        return False

    def check_channel_direct_tcpip_request(
        self, chanid: int, origin: tuple[str, int], destination: tuple[str, int]
    ) -> int:
        host, port = destination
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            log.debug("lab sshd: refusing to forward to %r (VPC IP addresses only)", host)
            return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        if address not in VPC_SPACE or not 1 <= int(port) <= 65535:
            return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self.forwards[chanid] = (str(address), int(port))
        return OPEN_SUCCEEDED


def _fail(channel: paramiko.Channel, message: str) -> None:
    """End an exec request the lab cannot run: the reason on stderr, exit status 255."""
    try:
        channel.sendall_stderr(f"regiondrill lab: {message}\n".encode())
        channel.send_exit_status(255)
        channel.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        _finish(channel)


def _finish(channel: paramiko.Channel) -> None:
    """Close a session channel once its request has surely been answered.

    paramiko sends the reply to an exec or shell request only after the request handler
    returns, while the command runs on another thread; a CLOSE overtaking that reply makes
    the client see "Channel closed" instead of the result. So the server waits for the client
    to close first (as OpenSSH and paramiko clients do once they have the exit status and
    EOF) and closes it itself only after a grace period.
    """
    channel.status_event.wait(_CLOSE_GRACE)  # server side: set when the channel closes
    channel.close()


def _stream(
    channel: paramiko.Channel, proc: subprocess.Popen[bytes], stopping: Callable[[], bool]
) -> int | None:
    """Copy the process's stdout/stderr to the channel and the channel to its stdin.

    Return the exit status as a shell reports it (128 + signal when killed), or None when the
    client closed the channel or the lab is stopping first.
    """
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, "stdout")
    selector.register(proc.stderr, selectors.EVENT_READ, "stderr")
    selector.register(channel, selectors.EVENT_READ, "stdin")
    open_streams = 2
    watching_stdin = True
    try:
        while open_streams:
            if stopping() or channel.closed:
                return None
            # Once the client's stdin is at EOF the channel's pipe stays readable, so it leaves
            # the selector and a close is noticed by this short poll instead.
            for key, _events in selector.select(timeout=1.0 if watching_stdin else 0.2):
                if key.data == "stdin":
                    if channel.closed:
                        return None
                    if channel.recv_ready():
                        data = channel.recv(65536)
                        with contextlib.suppress(OSError):
                            proc.stdin.write(data)
                            proc.stdin.flush()
                    elif channel.eof_received:
                        selector.unregister(channel)
                        watching_stdin = False
                        with contextlib.suppress(OSError):
                            proc.stdin.close()
                    continue
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                elif key.data == "stdout":
                    channel.sendall(data)
                else:
                    channel.sendall_stderr(data)
    finally:
        selector.close()
    returncode = proc.wait()
    return returncode if returncode >= 0 else 128 - returncode


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill a spawned shell's process group (it runs in its own session) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _hold_silently(channel: paramiko.Channel) -> None:
    """Swallow what the client sends and never answer, until it gives up."""
    deadline = time.monotonic() + MAX_SILENT_HOLD
    channel.settimeout(1.0)
    try:
        while time.monotonic() < deadline:
            try:
                if not channel.recv(65536):
                    return
            except TimeoutError:
                continue
    except (OSError, EOFError, paramiko.SSHException):
        return
    finally:
        channel.close()


def _pump(channel: paramiko.Channel, upstream: socket.socket, stopping: Callable[[], bool]) -> None:
    """Copy bytes both ways between a forwarded channel and its TCP connection."""
    selector = selectors.DefaultSelector()
    try:
        # Registering reads the channel's file descriptor, which paramiko closes when the
        # client goes away first (ValueError), as it may while we copy.
        selector.register(channel, selectors.EVENT_READ, "channel")
        selector.register(upstream, selectors.EVENT_READ, "upstream")
        while not stopping():
            for key, _events in selector.select(timeout=1.0):
                if key.data == "channel":
                    data = channel.recv(65536)
                    if not data:
                        return
                    upstream.sendall(data)
                else:
                    data = upstream.recv(65536)
                    if not data:
                        return
                    channel.sendall(data)
    except (OSError, ValueError, EOFError, paramiko.SSHException):
        return
    finally:
        selector.close()
        upstream.close()
        channel.close()
