"""Run ``dig`` and ``curl`` for a bastion, inside the lab, from the bastion's own address.

A bastion's shell finds ``dig`` and ``curl`` first on its PATH as tiny bash shims
(``harness/lab/shims/``). A shim sends its argv, working directory and the bastion's token over
``/dev/tcp`` to the :class:`ToolServer` on 127.0.0.1, which runs the tool logic here, in the lab
process, and streams back stdout, stderr and the exit status. That costs a bash start and one
loopback round trip (a few milliseconds) instead of a Python interpreter per probe, which matters
when four bastions probe every 50 ms of wall time on two cores.

The network work is real and happens from the bastion's loopback address (VPC ``10.a.b.c`` is
``127.a.b.c``), so resolvers, listeners and reachability checks see the true source:

- ``dig`` sends the query BIND 9.18's dig sends (RD, AD, EDNS0 with a 1232-byte UDP size and a
  client cookie) to the bastion's VPC resolver (base + 2) or ``@server``, over UDP or TCP, with
  ``+time``/``+tries`` semantics, and prints the reply in dig's own format (``+short`` or full).
- ``curl`` resolves through the same resolver (``--resolve`` overrides), connects from the bastion
  address, speaks TLS trusting only the lab CA (``-k`` and ``--cacert`` as curl), sends an
  HTTP/1.1 request and reports exit codes, ``-S`` messages and ``-w`` variables as curl 7.88 does
  with OpenSSL 3.0.

Addresses follow the bastion's view: a VPC address (10/8) is served by the lab on loopback; the
bastion's own loopback (127/8) has nothing listening (refused); anything else is the internet,
which a private subnet cannot reach (silently dropped). When the lab's network component says a
path is not allowed, the connection is treated as dropped: nothing is sent, the tool times out
exactly as after an unanswered SYN.

Time: the shell on a bastion runs on the wall clock (``sleep 1`` sleeps one wall second), so the
tools' own timeouts (``+time``, ``-m``, ``--connect-timeout``) and reported durations are wall
seconds, exactly like the real tools on a real host. The harness converts probe timestamps through
the target's clock.

Output formats were checked against BIND 9.18 ``dig`` and curl 7.88.1 on Debian 12
(``tests/lab/test_shim_conformance.py`` runs both against the same servers).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import ipaddress
import logging
import os
import re
import secrets
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename

from harness.lab.addresses import PortMap, to_loopback

log = logging.getLogger(__name__)

__all__ = [
    "CURL_VERSION",
    "DIG_VERSION",
    "PROTOCOL_MAGIC",
    "Cancel",
    "HostView",
    "Invocation",
    "ToolResult",
    "ToolServer",
    "render_shim",
    "run_curl",
    "run_dig",
    "run_tool",
]

DIG_VERSION = "9.18.28-regiondrill-lab"  # the banner names the lab so a transcript says it
CURL_VERSION = "7.88.1"
PROTOCOL_MAGIC = "RD1"  # first field of every shim request
TOOLS = ("dig", "curl")

_VPC = ipaddress.IPv4Network("10.0.0.0/8")
_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
_SLICE = 0.25  # longest blocking wait before checking whether the shim went away
_MAX_BODY = 64 * 1024 * 1024  # a runaway response must not eat the lab's memory


# ---------------------------------------------------------------------------------------------
# What every tool run gets and returns
# ---------------------------------------------------------------------------------------------


Reachable = Callable[[str | None, str, int, str], bool]


@dataclass(frozen=True)
class HostView:
    """A host as the tools see it: its address, its resolver, what it trusts.

    ``address`` is the host's VPC address (None: the harness host, outside every VPC, sending from
    127.0.0.1). ``reachable(src, dst, port, protocol)`` answers whether the network delivers a
    connection; None means every path is open (no network model).
    """

    address: str | None
    resolver: str
    ports: PortMap
    ca_pem: str
    reachable: Reachable | None = None


@dataclass(frozen=True)
class Invocation:
    """One command line as a shim received it."""

    tool: str
    argv: tuple[str, ...]
    cwd: Path
    stdout_tty: bool = False


@dataclass(frozen=True)
class ToolResult:
    """What the tool wrote, in order, and its exit status."""

    rc: int
    chunks: tuple[tuple[int, bytes], ...] = ()

    @property
    def stdout(self) -> bytes:
        return b"".join(data for fd, data in self.chunks if fd == 1)

    @property
    def stderr(self) -> bytes:
        return b"".join(data for fd, data in self.chunks if fd == 2)


class Cancel:
    """Tell a running tool to stop: set by the server, or noticed when the shim hangs up."""

    def __init__(self, client: socket.socket | None = None) -> None:
        self._event = threading.Event()
        self._client = client

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        if self._event.is_set():
            return True
        if self._client is not None:
            try:
                data = self._client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            except OSError:
                data = b""
            if not data:  # the shim died (killed by a timeout or a cancelled command)
                self._event.set()
                return True
        return False

    def sleep_until(self, deadline: float) -> bool:
        """Sleep until ``deadline`` (monotonic); return False if cancelled first."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if self.is_set():
                return False
            self._event.wait(min(remaining, _SLICE))


class _Stopped(Exception):
    """The shim went away: abandon the run, nobody is listening."""


class _Out:
    """Collect stdout/stderr writes in order (adjacent writes to one stream are merged)."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, bytes]] = []

    def write(self, fd: int, data: bytes | str) -> None:
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        if not raw:
            return
        if self.chunks and self.chunks[-1][0] == fd:
            self.chunks[-1] = (fd, self.chunks[-1][1] + raw)
        else:
            self.chunks.append((fd, raw))

    def out(self, data: bytes | str) -> None:
        self.write(1, data)

    def err(self, data: bytes | str) -> None:
        self.write(2, data)

    def result(self, rc: int) -> ToolResult:
        return ToolResult(rc, tuple(self.chunks))


def run_tool(host: HostView, invocation: Invocation, cancel: Cancel | None = None) -> ToolResult:
    """Run ``dig`` or ``curl`` for ``host``.

    Raises:
        ValueError: the tool is neither dig nor curl.
    """
    if invocation.tool == "dig":
        return run_dig(host, invocation, cancel)
    if invocation.tool == "curl":
        return run_curl(host, invocation, cancel)
    raise ValueError(f"unknown lab tool {invocation.tool!r}; the lab provides {', '.join(TOOLS)}")


# ---------------------------------------------------------------------------------------------
# Sockets from the host's address
# ---------------------------------------------------------------------------------------------


def _kind(address: str) -> str:
    """Classify a destination as the host sees it: vpc, local (its own loopback) or outside."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4 and ip in _VPC:
        return "vpc"
    if ip.version == 4 and ip in _LOOPBACK:
        return "local"
    return "outside"


def _source(host: HostView) -> tuple[str, int] | None:
    return (to_loopback(host.address), 0) if host.address else None


def _reachable(host: HostView, dst: str, port: int, protocol: str) -> bool:
    if host.reachable is None:
        return True
    return bool(host.reachable(host.address, dst, port, protocol))


def _wait_fd(sock: socket.socket, write: bool, deadline: float, cancel: Cancel) -> bool:
    """Wait until ``sock`` is ready; False on deadline. Raises _Stopped when cancelled."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if cancel.is_set():
            raise _Stopped
        wait = min(remaining, _SLICE)
        if write:
            _, ready, _ = select.select([], [sock], [], wait)
        else:
            ready, _, _ = select.select([sock], [], [], wait)
        if ready:
            return True


def _socket_to(
    host: HostView, dst: str, port: int, proto: str, deadline: float, cancel: Cancel
) -> socket.socket | str:
    """Return a socket bound to the host's VPC address for talking to ``dst:port``.

    Or the outcome when nothing can be sent: "refused" for the bastion's own loopback (nothing
    listens there), "timeout" once the deadline passes for a packet the network drops (no
    answer at all; nothing is sent anywhere, the wait is just sat out).
    """
    kind = _kind(dst)
    if kind == "local":
        return "refused"
    if kind == "outside" or not _reachable(host, dst, port, proto):
        if not cancel.sleep_until(deadline):
            raise _Stopped
        return "timeout"
    sock = socket.socket(
        socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    )
    source = _source(host)
    if source is not None:
        try:
            sock.bind(source)
        except BaseException:
            sock.close()
            raise
    return sock


def _tcp_connect(
    host: HostView, dst: str, port: int, deadline: float, cancel: Cancel
) -> tuple[str, socket.socket | None]:
    """Connect to ``dst:port`` as the host would; return (outcome, socket).

    Outcomes: "ok", "refused" or "timeout" (the deadline passed with no answer).
    """
    sock = _socket_to(host, dst, port, "tcp", deadline, cancel)
    if isinstance(sock, str):
        return sock, None
    try:
        sock.setblocking(False)
        err = sock.connect_ex((to_loopback(dst), host.ports.lab_port(port)))
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            sock.close()
            return "refused", None
        if not _wait_fd(sock, True, deadline, cancel):
            sock.close()
            return "timeout", None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            sock.close()
            return "refused", None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return "ok", sock
    except BaseException:
        sock.close()
        raise


# ---------------------------------------------------------------------------------------------
# dig
# ---------------------------------------------------------------------------------------------

_DIG_USAGE = """Usage:  dig [@global-server] [domain] [q-type] [q-class] {q-opt}
            {global-d-opt} host [@local-server] {local-d-opt}
            [ host [@local-server] {local-d-opt} [...]]

Use "dig -h" (or "dig -h | more") for complete list of options
"""

# dig's +options: the ones the lab implements, and the rest of BIND 9.18's list, which are
# refused by name rather than silently ignored.
_DIG_BOOL_OPTIONS = tuple(
    (  # noqa: SIM905 - a word list reads better than 20 quoted items
        "additional adflag all answer authority cdflag class cmd comments cookie edns question "
        "rdflag recurse short stats tcp ttlid vc"
    ).split()
)
_DIG_VALUE_OPTIONS = ("retry", "timeout", "tries")
_DIG_UNSUPPORTED = tuple(
    (  # noqa: SIM905
        "aaflag aaonly badcookie besteffort bufsize crypto defname dns64prefix dnssec domain dscp "
        "ednsflags ednsnegotiation ednsopt expandaaaa expire fail header-only http-plain "
        "http-plain-get http-plain-post https https-get https-post identify idnin idnout ignore "
        "keepalive keepopen mapped multiline ndots nsid nssearch onesoa opcode padding qid qr "
        "raflag rrcomments search showbadcookie showsearch sigchase split subnet tcflag tls "
        "tls-ca tls-certfile tls-hostname tls-keyfile topdown trace trusted-key ttlunits "
        "unexpected unknownformat yaml zflag"
    ).split()
)
_DIG_ALL_PLUS = _DIG_BOOL_OPTIONS + _DIG_VALUE_OPTIONS + _DIG_UNSUPPORTED
_DIG_DASH_VALUE = "bcfkmpqtxy"  # dash options that take a value
_DIG_DASH_UNSUPPORTED = "6bfkmy"


class _DigUsage(Exception):
    """dig rejects the command line (exit 1, message on stderr)."""


class _DigUnsupported(Exception):
    """A real dig option the lab does not model (exit 1, lab message on stderr)."""


@dataclass
class _DigOptions:
    name: str | None = None
    rdtype: str | None = None
    rdclass: str | None = None
    server: str | None = None
    port: int = 53
    short: bool = False
    tcp: bool = False
    timeout: int = 5
    tries: int = 3
    cmd: bool = True
    comments: bool = True
    stats: bool = True
    question: bool = True
    answer: bool = True
    authority: bool = True
    additional: bool = True
    recurse: bool = True
    cookie: bool = True
    edns: bool = True
    adflag: bool = True
    cdflag: bool = False
    ttlid: bool = True
    show_class: bool = True
    version_only: bool = False
    help_only: bool = False


def _plus_option(text: str, opts: _DigOptions) -> None:
    body = text[1:]
    value: str | None = None
    if "=" in body:
        body, value = body.split("=", 1)
    negated = body.startswith("no")
    word = body[2:] if negated else body
    matches = [name for name in _DIG_ALL_PLUS if name.startswith(word)] if word else []
    exact = [name for name in matches if name == word]
    if exact:
        matches = exact
    if word == "time":  # BIND takes "+time" for "+timeout"
        matches = ["timeout"]
    if len(matches) != 1:
        raise _DigUsage(f"Invalid option: {text}")
    name = matches[0]
    if name in _DIG_UNSUPPORTED:
        raise _DigUnsupported(f"dig option +{name} is not supported by the regiondrill lab's dig")
    if name in _DIG_VALUE_OPTIONS:
        if negated or value is None:
            raise _DigUsage(f"Invalid option: {text}")
        try:
            number = int(value)
        except ValueError as exc:
            raise _DigUsage(f"Invalid option: {text}") from exc
        if name == "timeout":
            opts.timeout = max(number, 1)
        elif name == "tries":
            opts.tries = max(number, 1)
        else:
            opts.tries = max(number, 0) + 1
        return
    on = not negated
    if name == "edns" and value not in (None, "0"):
        raise _DigUnsupported("dig EDNS versions other than 0 are not supported by the lab")
    if name == "all":
        for field_name in ("cmd", "comments", "stats", "question", "answer", "authority"):
            setattr(opts, field_name, on)
        opts.additional = on
        return
    attribute = {"vc": "tcp", "rdflag": "recurse", "class": "show_class"}.get(name, name)
    setattr(opts, attribute, on)


def _parse_dig(argv: Sequence[str]) -> _DigOptions:
    opts = _DigOptions()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("@") and len(arg) > 1:
            opts.server = arg[1:]
        elif arg.startswith("+") and len(arg) > 1:
            _plus_option(arg, opts)
        elif arg.startswith("-") and len(arg) > 1:
            letter = arg[1]
            if letter in _DIG_DASH_UNSUPPORTED:
                raise _DigUnsupported(
                    f"dig option -{letter} is not supported by the regiondrill lab's dig"
                )
            if letter in _DIG_DASH_VALUE:
                value = arg[2:]
                if not value:
                    if i >= len(args):
                        raise _DigUsage(f"option requires an argument -- '{letter}'")
                    value = args[i]
                    i += 1
                _dash_value(letter, value, opts)
            else:
                for flag in arg[1:]:
                    if flag in "4ir":
                        continue  # IPv4 only / obsolete / ignore ~/.digrc: the lab has neither
                    if flag == "u":
                        raise _DigUnsupported("dig -u is not supported by the regiondrill lab")
                    if flag == "v":
                        opts.version_only = True
                    elif flag == "h":
                        opts.help_only = True
                    else:
                        raise _DigUsage(f"Invalid option: -{flag}")
        else:
            _positional(arg, opts)
    return opts


def _dash_value(letter: str, value: str, opts: _DigOptions) -> None:
    if letter == "p":
        try:
            port = int(value)
        except ValueError as exc:
            raise _DigUsage(f"invalid port number '{value}'") from exc
        if not 0 < port < 65536:
            raise _DigUsage(f"invalid port number '{value}'")
        opts.port = port
    elif letter == "q":
        _set_name(value, opts)
    elif letter == "t":
        try:
            dns.rdatatype.from_text(value)
        except dns.exception.DNSException as exc:
            raise _DigUsage(f"'{value}' is not a valid type") from exc
        opts.rdtype = value.upper()
    elif letter == "c":
        try:
            dns.rdataclass.from_text(value)
        except dns.exception.DNSException as exc:
            raise _DigUsage(f"'{value}' is not a valid class") from exc
        opts.rdclass = value.upper()
    elif letter == "x":
        try:
            _set_name(dns.reversename.from_address(value).to_text(), opts)
        except (dns.exception.DNSException, ValueError) as exc:
            raise _DigUsage(f"'{value}' is not a legal IPv4 or IPv6 address") from exc
        opts.rdtype = opts.rdtype or "PTR"
    else:  # pragma: no cover - _DIG_DASH_VALUE and this function list the same letters
        raise _DigUnsupported(f"dig option -{letter} is not supported by the regiondrill lab")


def _set_name(name: str, opts: _DigOptions) -> None:
    if opts.name is not None:
        raise _DigUnsupported(
            f"more than one query ({opts.name}, {name}) is not supported by the lab's dig"
        )
    opts.name = name


def _positional(word: str, opts: _DigOptions) -> None:
    """Read a bare word as dig does: a type if it names one, else a class, else the name."""
    try:
        dns.rdatatype.from_text(word)
    except dns.exception.DNSException:
        pass
    else:
        if opts.rdtype is None:
            opts.rdtype = word.upper()
            return
    try:
        dns.rdataclass.from_text(word)
    except dns.exception.DNSException:
        pass
    else:
        if opts.rdclass is None:
            opts.rdclass = word.upper()
            return
    _set_name(word, opts)


def run_dig(host: HostView, invocation: Invocation, cancel: Cancel | None = None) -> ToolResult:
    """Run one ``dig`` command line for ``host``."""
    out = _Out()
    cancel = cancel or Cancel()
    try:
        opts = _parse_dig(invocation.argv)
    except _DigUsage as exc:
        out.err(f"{exc}\n{_DIG_USAGE}")
        return out.result(1)
    except _DigUnsupported as exc:
        out.err(f"dig: {exc}\n")
        return out.result(1)
    if opts.version_only:
        out.err(f"DiG {DIG_VERSION}\n")
        return out.result(0)
    if opts.help_only:
        out.out(_DIG_USAGE)
        return out.result(0)
    try:
        return _dig(host, invocation.argv, opts, out, cancel)
    except _Stopped:
        return out.result(10)


def _dig(
    host: HostView, argv: Sequence[str], opts: _DigOptions, out: _Out, cancel: Cancel
) -> ToolResult:
    name = opts.name if opts.name is not None else "."
    rdtype = opts.rdtype or ("NS" if opts.name is None else "A")
    rdclass = opts.rdclass or "IN"
    try:
        qname = dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        out.err(f"dig: '{name}' is not a legal name ({exc})\n")
        return out.result(10)

    servers: list[str]
    server_label: str | None = None
    if opts.server is None:
        servers = [host.resolver]
    else:
        server_label = opts.server
        try:
            servers = [str(ipaddress.IPv4Address(opts.server))]
        except ValueError:
            found = _lookup_a(host, opts.server, cancel)
            if not found:
                out.err(f"dig: couldn't get address for '{opts.server}': not found\n")
                return out.result(10)
            servers = found
    banner = ""
    if opts.cmd:
        banner = f"\n; <<>> DiG {DIG_VERSION} <<>> {' '.join(argv)}\n"
        if opts.server is not None:
            count = len(servers)
            banner += f"; ({count} server{'s' if count != 1 else ''} found)\n"
        banner += ";; global options: +cmd\n"

    query = dns.message.make_query(
        qname,
        dns.rdatatype.from_text(rdtype),
        dns.rdataclass.from_text(rdclass),
        use_edns=0 if opts.edns else False,
        payload=1232,
        options=[dns.edns.CookieOption(secrets.token_bytes(8), b"")] if opts.cookie else None,
    )
    query.flags = 0
    if opts.recurse:
        query.flags |= dns.flags.RD
    if opts.adflag:
        query.flags |= dns.flags.AD
    if opts.cdflag:
        query.flags |= dns.flags.CD
    wire = query.to_wire()
    question_text = name.rstrip(".") if name != "." else "."

    failures: list[str] = []
    banner_printed = False
    tcp = opts.tcp
    for server in servers:
        tries = opts.tries
        attempt = 0
        while attempt < tries:
            attempt += 1
            started = time.monotonic()
            if tcp:
                outcome, reply = _dns_tcp(host, server, opts.port, wire, opts.timeout, cancel)
            else:
                outcome, reply = _dns_udp(
                    host, server, opts.port, wire, query.id, opts.timeout, cancel
                )
            elapsed_ms = int((time.monotonic() - started) * 1000)
            where = f"{server}#{opts.port}"
            if outcome == "refused" and tcp:
                # BIND 9.18 reports a refused TCP connection on its own, without the banner.
                out.out(
                    f";; Connection to {where}({server_label or server}) for {question_text} "
                    "failed: connection refused.\n;; no servers could be reached\n"
                )
                continue
            if outcome in ("refused", "timeout"):
                reason = "connection refused" if outcome == "refused" else "timed out"
                failures.append(f";; communications error to {where}: {reason}\n")
                out.out(failures[-1])
                continue
            assert reply is not None
            try:
                response = dns.message.from_wire(reply, ignore_trailing=True)
            except dns.exception.DNSException as exc:
                out.out(f";; Got bad packet: {exc}\n")
                continue
            if (response.flags & dns.flags.TC) and not tcp:
                out.out(";; Truncated, retrying in TCP mode.\n")
                tcp = True
                attempt = 0
                continue
            if not opts.short and not banner_printed:
                out.out(banner)
                banner_printed = True
            _print_response(
                out,
                opts,
                response,
                reply,
                query,
                server=server,
                server_label=server_label or server,
                port=opts.port,
                tcp=tcp,
                query_ms=elapsed_ms,
            )
            return out.result(0)
    if failures and not opts.short and not banner_printed:
        out.out(banner)
    if failures:
        out.out(";; no servers could be reached\n")
    return out.result(9)


def _dns_udp(
    host: HostView, server: str, port: int, wire: bytes, qid: int, timeout: int, cancel: Cancel
) -> tuple[str, bytes | None]:
    deadline = time.monotonic() + timeout
    sock = _socket_to(host, server, port, "udp", deadline, cancel)
    if isinstance(sock, str):
        return sock, None
    try:
        # connect() so an ICMP port-unreachable comes back as ECONNREFUSED, as dig reports it.
        sock.connect((to_loopback(server), host.ports.lab_port(port)))
        sock.setblocking(False)
        try:
            sock.send(wire)
        except ConnectionRefusedError:
            return "refused", None
        while True:
            if not _wait_fd(sock, False, deadline, cancel):
                return "timeout", None
            try:
                data = sock.recv(65535)
            except ConnectionRefusedError:
                return "refused", None
            except BlockingIOError:
                continue
            if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == qid:
                return "ok", data
    finally:
        sock.close()


def _dns_tcp(
    host: HostView, server: str, port: int, wire: bytes, timeout: int, cancel: Cancel
) -> tuple[str, bytes | None]:
    deadline = time.monotonic() + timeout
    outcome, sock = _tcp_connect(host, server, port, deadline, cancel)
    if sock is None:
        return outcome, None
    try:
        sock.setblocking(True)
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.sendall(struct.pack("!H", len(wire)) + wire)
        except OSError:
            return "refused", None
        sock.setblocking(False)
        data = b""
        need = 2
        while len(data) < need:
            if not _wait_fd(sock, False, deadline, cancel):
                return "timeout", None
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                return "refused", None
            if not chunk:
                return "refused", None
            data += chunk
            if len(data) >= 2:
                need = 2 + struct.unpack("!H", data[:2])[0]
        return "ok", data[2:need]
    finally:
        sock.close()


def _lookup_a(host: HostView, name: str, cancel: Cancel) -> list[str]:
    """Resolve ``name`` to IPv4 addresses through the host's resolver, as glibc would."""
    try:
        qname = dns.name.from_text(name)
    except dns.exception.DNSException:
        return []
    query = dns.message.make_query(qname, dns.rdatatype.A)
    wire = query.to_wire()
    # Amazon Linux: "options timeout:2 attempts:5" for the VPC resolver.
    for _ in range(5):
        outcome, reply = _dns_udp(host, host.resolver, 53, wire, query.id, 2, cancel)
        if outcome != "ok" or reply is None:
            continue
        try:
            response = dns.message.from_wire(reply, ignore_trailing=True)
        except dns.exception.DNSException:
            continue
        if response.rcode() != dns.rcode.NOERROR:
            return []
        return _final_addresses(response, qname)
    return []


def _final_addresses(response: dns.message.Message, qname: dns.name.Name) -> list[str]:
    """Follow the CNAME chain in an answer to the A records at its end (answer order)."""
    name = qname
    for _ in range(16):
        a_records = [
            rdata.address
            for rrset in response.answer
            if rrset.name == name and rrset.rdtype == dns.rdatatype.A
            for rdata in rrset
        ]
        if a_records:
            return a_records
        cname = next(
            (r for r in response.answer if r.name == name and r.rdtype == dns.rdatatype.CNAME),
            None,
        )
        if cname is None:
            return []
        name = next(iter(cname)).target
    return []


# --------------------------------------------------------------------------- dig output


def _indent(column: int, to: int) -> tuple[str, int]:
    """BIND's masterdump indent(): tabs to the tab stop, then spaces (tab width 8)."""
    to = max(to, column + 1)
    tabs = to // 8 - column // 8
    text = ""
    if tabs > 0:
        text = "\t" * tabs
        column = (to // 8) * 8
    text += " " * (to - column)
    return text, to


def _rr_lines(rrset: Any, opts: _DigOptions, *, question: bool = False) -> list[str]:
    """Format an RRset as dig prints it (BIND's debug master style: columns 24/32/40/48)."""
    owner = rrset.name.to_text()
    klass = dns.rdataclass.to_text(rrset.rdclass)
    kind = dns.rdatatype.to_text(rrset.rdtype)
    items = [None] if question else list(rrset)
    lines = []
    for rdata in items:
        line = (";" if question else "") + owner
        column = len(line)
        if not question and opts.ttlid:
            pad, column = _indent(column, 24)
            ttl = str(rrset.ttl)
            line += pad + ttl
            column += len(ttl)
        if opts.show_class:
            pad, column = _indent(column, 32)
            line += pad + klass
            column += len(klass)
        pad, column = _indent(column, 40)
        line += pad + kind
        column += len(kind)
        if rdata is not None:
            pad, column = _indent(column, 48)
            line += pad + rdata.to_text()
        lines.append(line)
    return lines


_FLAG_ORDER = (
    (dns.flags.QR, "qr"),
    (dns.flags.AA, "aa"),
    (dns.flags.TC, "tc"),
    (dns.flags.RD, "rd"),
    (dns.flags.RA, "ra"),
    (dns.flags.AD, "ad"),
    (dns.flags.CD, "cd"),
)


# RFC 8914 names as BIND prints them.
_EDE_NAMES = (
    "Other",
    "Unsupported DNSKEY Algorithm",
    "Unsupported DS Digest Type",
    "Stale Answer",
    "Forged Answer",
    "DNSSEC Indeterminate",
    "DNSSEC Bogus",
    "Signature Expired",
    "Signature Not Yet Valid",
    "DNSKEY Missing",
    "RRSIGs Missing",
    "No Zone Key Bit Set",
    "NSEC Missing",
    "Cached Error",
    "Not Ready",
    "Blocked",
    "Censored",
    "Filtered",
    "Prohibited",
    "Stale NXDOMAIN Answer",
    "Not Authoritative",
    "Not Supported",
    "No Reachable Authority",
    "Network Error",
    "Invalid Data",
)


def _opt_lines(response: dns.message.Message, query: dns.message.Message) -> list[str]:
    flags = "do" if response.ednsflags & dns.flags.DO else ""
    lines = [
        f"; EDNS: version: {response.edns}, flags:{' ' + flags if flags else ''}; "
        f"udp: {response.payload}"
    ]
    sent_cookie = next(
        (o.client for o in query.options if isinstance(o, dns.edns.CookieOption)), None
    )
    for option in response.options:
        code = int(option.otype)
        if isinstance(option, dns.edns.CookieOption):
            data = (option.client + option.server).hex()
            verdict = ""
            if sent_cookie is not None:
                if option.client != sent_cookie:
                    verdict = " (bad)"
                elif option.server:
                    verdict = " (good)"
                else:
                    verdict = " (echoed)"
            lines.append(f"; COOKIE: {data}{verdict}")
        elif isinstance(option, dns.edns.EDEOption):
            text = f"; EDE: {int(option.code)}"
            if int(option.code) < len(_EDE_NAMES):
                text += f" ({_EDE_NAMES[int(option.code)]})"
            if option.text:
                text += f": ({option.text})"
            lines.append(text)
        elif isinstance(option, dns.edns.NSIDOption):
            lines.append(f'; NSID: {option.nsid.hex()} ("{_printable(option.nsid)}")')
        else:
            raw = option.to_wire() or b""
            lines.append(f'; OPT={code}: {raw.hex().upper()} ("{_printable(raw)}")')
    return lines


def _printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data)


def _print_response(
    out: _Out,
    opts: _DigOptions,
    response: dns.message.Message,
    raw: bytes,
    query: dns.message.Message,
    *,
    server: str,
    server_label: str,
    port: int,
    tcp: bool,
    query_ms: int,
) -> None:
    if opts.short:  # the answer section's data, whatever the response code
        for rrset in response.answer:
            for rdata in rrset:
                out.out(rdata.to_text() + "\n")
        return
    text: list[str] = []
    if opts.comments:
        status = dns.rcode.to_text(response.rcode())
        opcode = dns.opcode.to_text(response.opcode())
        flags = " ".join(label for bit, label in _FLAG_ORDER if response.flags & bit)
        additional = sum(len(r) for r in response.additional) + (1 if response.edns >= 0 else 0)
        answer = sum(len(r) for r in response.answer)
        authority = sum(len(r) for r in response.authority)
        text.append(";; Got answer:")
        text.append(f";; ->>HEADER<<- opcode: {opcode}, status: {status}, id: {response.id}")
        text.append(
            f";; flags: {flags}; QUERY: {len(response.question)}, ANSWER: {answer}, "
            f"AUTHORITY: {authority}, ADDITIONAL: {additional}"
        )
        if response.flags & dns.flags.RD and not response.flags & dns.flags.RA:
            text.append(";; WARNING: recursion requested but not available")
        text.append("")
        if response.edns >= 0:
            text.append(";; OPT PSEUDOSECTION:")
            text.extend(_opt_lines(response, query))
    if opts.question and response.question:
        if opts.comments:
            text.append(";; QUESTION SECTION:")
        for rrset in response.question:
            text.extend(_rr_lines(rrset, opts, question=True))
        if opts.comments:
            text.append("")
    for title, wanted, section in (
        ("ANSWER", opts.answer, response.answer),
        ("AUTHORITY", opts.authority, response.authority),
        ("ADDITIONAL", opts.additional, response.additional),
    ):
        if not wanted or not section:
            continue
        if opts.comments:
            text.append(f";; {title} SECTION:")
        for rrset in section:
            text.extend(_rr_lines(rrset, opts))
        if opts.comments:
            text.append("")
    if opts.stats:
        when = dt.datetime.now(dt.UTC).strftime("%a %b %d %H:%M:%S UTC %Y")
        text.append(f";; Query time: {query_ms} msec")
        text.append(f";; SERVER: {server}#{port}({server_label}) ({'TCP' if tcp else 'UDP'})")
        text.append(f";; WHEN: {when}")
        text.append(f";; MSG SIZE  rcvd: {len(raw)}")
        text.append("")
    out.out("".join(line + "\n" for line in text))


# ---------------------------------------------------------------------------------------------
# curl
# ---------------------------------------------------------------------------------------------

_CURL_HINT = "curl: try 'curl --help' or 'curl --manual' for more information\n"
_SSL_HELP = (
    "More details here: https://curl.se/docs/sslcerts.html\n\n"
    "curl failed to verify the legitimacy of the server and therefore could not\n"
    "establish a secure connection to it. To learn more about this situation and\n"
    "how to fix it, please visit the web page mentioned above.\n"
)
_DEFAULT_CONNECT_TIMEOUT = 300.0  # curl's DEFAULT_CONNECT_TIMEOUT
_KERNEL_SYN_GIVE_UP = 134.5  # Linux's default SYN retries give up after this (measured)

# curl's long options: name -> (short letter or "", takes a value)
_CURL_LONG: dict[str, tuple[str, bool]] = {
    "silent": ("s", False),
    "show-error": ("S", False),
    "insecure": ("k", False),
    "fail": ("f", False),
    "include": ("i", False),
    "head": ("I", False),
    "output": ("o", True),
    "write-out": ("w", True),
    "max-time": ("m", True),
    "connect-timeout": ("", True),
    "header": ("H", True),
    "request": ("X", True),
    "data": ("d", True),
    "data-ascii": ("", True),
    "data-raw": ("", True),
    "data-binary": ("", True),
    "resolve": ("", True),
    "cacert": ("", True),
    "noproxy": ("", True),
    "user-agent": ("A", True),
    "url": ("", True),
    "ipv4": ("4", False),
    "http1.1": ("", False),
    "no-progress-meter": ("", False),
    "version": ("V", False),
    "disable": ("q", False),
    "no-keepalive": ("", False),
    "no-buffer": ("N", False),
}
_CURL_SHORT_FLAGS = "sSkfiIq4VN"
_CURL_SHORT_VALUES = "owmHXdA"
# Real curl options the lab does not model: refused by name.
_CURL_UNSUPPORTED = {
    "L": "location",
    "v": "verbose",
    "u": "user",
    "x": "proxy",
    "F": "form",
    "T": "upload-file",
    "C": "continue-at",
    "r": "range",
    "b": "cookie",
    "c": "cookie-jar",
    "e": "referer",
    "G": "get",
    "O": "remote-name",
    "K": "config",
    "E": "cert",
    "6": "ipv6",
    "2": "sslv2",
    "3": "sslv3",
    "0": "http1.0",
    "#": "progress-bar",
    "Z": "parallel",
}
_CURL_UNSUPPORTED_LONG = set(_CURL_UNSUPPORTED.values()) | {
    "location-trusted",
    "compressed",
    "http2",
    "http2-prior-knowledge",
    "http3",
    "capath",
    "key",
    "proxy-insecure",
    "retry",
    "retry-max-time",
    "retry-delay",
    "trace",
    "trace-ascii",
    "dump-header",
    "interface",
    "local-port",
    "tlsv1.3",
    "tlsv1.2",
    "ciphers",
    "pinnedpubkey",
    "fail-with-body",
    "json",
    "etag-save",
    "unix-socket",
    "abstract-unix-socket",
    "connect-to",
    "doh-url",
    "dns-servers",
    "variable",
    "limit-rate",
    "speed-limit",
    "speed-time",
}


class _CurlExit(Exception):
    """curl ends with ``code`` (and ``message`` on stderr when errors are shown)."""

    def __init__(self, code: int, message: str, *, extra: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


@dataclass
class _CurlOptions:
    url: str | None = None
    silent: bool = False
    show_error: bool = False
    insecure: bool = False
    fail: bool = False
    include: bool = False
    head: bool = False
    output: str | None = None
    write_out: str | None = None
    max_time: float | None = None
    connect_timeout: float | None = None
    headers: list[str] = field(default_factory=list)
    method: str | None = None
    data: list[bytes] | None = None
    resolve: list[str] = field(default_factory=list)
    cacert: str | None = None
    user_agent: str | None = None
    no_progress: bool = False
    version: bool = False
    cwd: Path = Path("/")


def _curl_seconds(option: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds != seconds:
        raise _CurlExit(
            2, f"option {option}: expected a proper numerical parameter", extra=_CURL_HINT
        )
    return seconds


def _parse_curl(argv: Sequence[str], cwd: Path) -> _CurlOptions:
    opts = _CurlOptions(cwd=cwd)
    args = list(argv)
    i = 0
    urls: list[str] = []

    def take(name: str) -> str:
        nonlocal i
        if i >= len(args):
            raise _CurlExit(2, f"option {name}: requires parameter", extra=_CURL_HINT)
        value = args[i]
        i += 1
        return value

    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("--") and len(arg) > 2:
            long = arg[2:]
            if long in _CURL_UNSUPPORTED_LONG:
                raise _CurlExit(
                    2,
                    f"option {arg}: is not supported by the regiondrill lab's curl",
                    extra=_CURL_HINT,
                )
            negated = (
                long.startswith("no-") and long[3:] in _CURL_LONG and not _CURL_LONG[long[3:]][1]
            )
            spec = _CURL_LONG.get(long[3:] if negated else long)
            if spec is None:
                raise _CurlExit(2, f"option {arg}: is unknown", extra=_CURL_HINT)
            letter, wants_value = spec
            value = take(arg) if wants_value else ""
            _curl_option(
                opts, long[3:] if negated else long, letter, value, arg, cwd, urls, not negated
            )
        elif arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                letter = arg[j]
                j += 1
                if letter in _CURL_UNSUPPORTED:
                    raise _CurlExit(
                        2,
                        f"option -{letter}: is not supported by the regiondrill lab's curl",
                        extra=_CURL_HINT,
                    )
                if letter in _CURL_SHORT_FLAGS:
                    name = next(k for k, v in _CURL_LONG.items() if v[0] == letter)
                    _curl_option(opts, name, letter, "", f"-{letter}", cwd, urls, True)
                elif letter in _CURL_SHORT_VALUES:
                    name = next(k for k, v in _CURL_LONG.items() if v[0] == letter)
                    value = arg[j:] if j < len(arg) else take(f"-{letter}")
                    _curl_option(opts, name, letter, value, f"-{letter}", cwd, urls, True)
                    break
                else:
                    raise _CurlExit(2, f"option -{letter}: is unknown", extra=_CURL_HINT)
        else:
            urls.append(arg)
    if opts.version:
        return opts
    if not urls:
        raise _CurlExit(2, "no URL specified!", extra=_CURL_HINT)
    if len(urls) > 1:
        raise _CurlExit(2, "more than one URL is not supported by the regiondrill lab's curl")
    opts.url = urls[0]
    return opts


# Boolean curl options (``--no-NAME`` turns them off) and the _CurlOptions field each sets.
_CURL_SWITCHES = {
    "silent": "silent",
    "show-error": "show_error",
    "insecure": "insecure",
    "fail": "fail",
    "include": "include",
    "head": "head",
    "no-progress-meter": "no_progress",
}


def _curl_option(
    opts: _CurlOptions,
    name: str,
    letter: str,
    value: str,
    shown: str,
    cwd: Path,
    urls: list[str],
    on: bool,
) -> None:
    if name in _CURL_SWITCHES:
        setattr(opts, _CURL_SWITCHES[name], on)
    elif name == "output":
        opts.output = value
    elif name == "write-out":
        if value.startswith("@"):
            path = value[1:]
            if path == "-":
                raise _CurlExit(2, "-w @- (read from stdin) is not supported by the lab's curl")
            try:
                value = (cwd / path).read_text()
            except OSError:
                value = ""
        opts.write_out = value
    elif name == "max-time":
        opts.max_time = _curl_seconds(shown, value)
    elif name == "connect-timeout":
        opts.connect_timeout = _curl_seconds(shown, value)
    elif name == "header":
        if value.startswith("@"):
            raise _CurlExit(2, "-H @file is not supported by the regiondrill lab's curl")
        opts.headers.append(value)
    elif name == "request":
        opts.method = value
    elif name in ("data", "data-ascii", "data-raw", "data-binary"):
        data = value.encode("utf-8", "surrogateescape")
        if name != "data-raw" and value.startswith("@"):
            try:
                data = (cwd / value[1:]).read_bytes()
            except OSError:
                data = b""
            if name != "data-binary":
                data = data.replace(b"\r", b"").replace(b"\n", b"")
        opts.data = [*(opts.data or []), data]
    elif name == "resolve":
        opts.resolve.append(value)
    elif name == "cacert":
        opts.cacert = value
    elif name == "user-agent":
        opts.user_agent = value
    elif name == "url":
        urls.append(value)
    elif name == "version":
        opts.version = True
    # noproxy, ipv4, http1.1, disable (-q), no-keepalive, no-buffer: no effect in the lab


@dataclass
class _Url:
    scheme: str
    host: str
    port: int
    target: str  # path?query as sent in the request line
    effective: str


def _parse_url(text: str) -> _Url:
    raw = text if "://" in text else "http://" + text
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise _CurlExit(3, "URL using bad/illegal format or missing URL") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _CurlExit(
            1, f'Protocol "{parts.scheme}" not supported by the regiondrill lab\'s curl'
        )
    if parts.username or parts.password:
        raise _CurlExit(1, "user names in URLs are not supported by the regiondrill lab's curl")
    host = (parts.hostname or "").lower()
    if not host or any(ch.isspace() for ch in text) or "[" in parts.netloc:
        raise _CurlExit(3, "URL using bad/illegal format or missing URL")
    default = 443 if scheme == "https" else 80
    path = parts.path or "/"
    target = path + (f"?{parts.query}" if parts.query else "")
    netloc = host + (f":{port}" if port is not None else "")
    return _Url(
        scheme, host, port if port is not None else default, target, f"{scheme}://{netloc}{target}"
    )


@dataclass
class _Transfer:
    """What curl's --write-out can report about the run."""

    start: float = 0.0
    namelookup: float = 0.0
    connect: float = 0.0
    appconnect: float = 0.0
    pretransfer: float = 0.0
    starttransfer: float = 0.0
    total: float = 0.0
    remote_ip: str = ""
    remote_port: int = 0
    local_ip: str = ""
    local_port: int = 0
    http_code: int = 0
    http_version: str = "0"
    ssl_verify_result: int = 0
    size_download: int = 0
    size_expected: int | None = None  # Content-Length of the response, when given
    size_header: int = 0
    size_request: int = 0
    size_upload: int = 0
    content_type: str = ""
    num_connects: int = 0
    redirect_url: str = ""
    scheme: str = ""
    method: str = "GET"
    url: str = ""
    url_effective: str = ""
    exitcode: int = 0
    errormsg: str = ""

    def since(self) -> float:
        return time.monotonic() - self.start


def run_curl(host: HostView, invocation: Invocation, cancel: Cancel | None = None) -> ToolResult:
    """Run one ``curl`` command line for ``host``."""
    out = _Out()
    cancel = cancel or Cancel()
    argv = list(invocation.argv)
    try:
        opts = _parse_curl(argv, invocation.cwd)
    except _CurlExit as exc:
        out.err(f"curl: {exc.message}\n{exc.extra}")
        return out.result(exc.code)
    if opts.version:
        out.out(
            f"curl {CURL_VERSION} (x86_64-pc-linux-gnu) libcurl/{CURL_VERSION} "
            f"{_openssl_version()} (regiondrill lab)\nRelease-Date: 2023-02-20\n"
            "Protocols: http https\nFeatures: IPv6 Largefile SSL\n"
        )
        return out.result(0)
    show_errors = opts.show_error or not opts.silent
    transfer = _Transfer(start=time.monotonic())
    assert opts.url is not None
    transfer.url = opts.url
    try:
        url = _parse_url(opts.url)
    except _CurlExit as exc:
        if show_errors:
            out.err(f"curl: ({exc.code}) {exc.message}\n")
        if exc.code != 3:  # a malformed URL stops curl before it writes anything else
            transfer.exitcode, transfer.errormsg = exc.code, exc.message
            transfer.total = transfer.since()
            _write_out(out, opts.write_out, transfer)
        return out.result(exc.code)
    transfer.url_effective = url.effective
    body_sink = _BodySink(opts, invocation.cwd, out)
    meter = (
        not opts.silent
        and not opts.no_progress
        and (opts.output is not None or not invocation.stdout_tty)
    )
    if meter:
        out.err(
            "  % Total    % Received % Xferd  Average Speed   Time    Time     Time  Current\n"
            "                                 Dload  Upload   Total   Spent    Left  Speed\n"
            + _METER_START
        )
    code, message, extra = 0, "", ""
    try:
        _curl_transfer(host, opts, url, transfer, body_sink, cancel)
        if opts.fail and transfer.http_code >= 400:
            raise _CurlExit(22, f"The requested URL returned error: {transfer.http_code}")
    except _CurlExit as exc:
        code, message, extra = exc.code, exc.message, exc.extra
    except _Stopped:
        return out.result(130)
    transfer.total = transfer.since()
    transfer.exitcode, transfer.errormsg = code, message
    if body_sink.write_error:
        code, message = 23, "Failure writing output to destination"
        transfer.exitcode, transfer.errormsg = code, message
    if meter:
        out.err(_meter_line(transfer, transfer.size_expected) + "\n")
    if code and show_errors:
        out.err(f"curl: ({code}) {message}\n{extra}")
    _write_out(out, opts.write_out, transfer)
    return out.result(code)


class _BodySink:
    """Where the response body goes: stdout, or a file created at the first byte (as curl)."""

    def __init__(self, opts: _CurlOptions, cwd: Path, out: _Out) -> None:
        self._opts = opts
        self._cwd = cwd
        self._out = out
        self._file: Any = None
        self.write_error = False

    def write(self, data: bytes) -> None:
        if not data or self.write_error:
            return
        target = self._opts.output
        if target is None or target == "-":
            self._out.out(data)
            return
        if self._file is None:
            path = Path(target) if os.path.isabs(target) else self._cwd / target
            try:
                self._file = path.open("wb")
            except OSError as exc:
                self._out.err(f"Warning: Failed to open the file {target}: {exc.strerror}\n")
                self.write_error = True
                return
        try:
            self._file.write(data)
        except OSError:
            self.write_error = True

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()


def _resolve_entries(opts: _CurlOptions, url: _Url) -> list[str] | None:
    for entry in opts.resolve:
        parts = entry.lstrip("+").split(":", 2)
        if len(parts) != 3:
            continue
        name, port, addresses = parts
        if name.lower() == url.host and port.isdigit() and int(port) == url.port:
            return [a.strip("[]") for a in addresses.split(",") if a]
    return None


def _curl_transfer(
    host: HostView,
    opts: _CurlOptions,
    url: _Url,
    transfer: _Transfer,
    sink: _BodySink,
    cancel: Cancel,
) -> None:
    max_deadline = transfer.start + opts.max_time if opts.max_time else None
    connect_binding = opts.connect_timeout is not None and (
        opts.max_time is None or opts.connect_timeout < opts.max_time
    )
    connect_budget = (
        opts.connect_timeout if opts.connect_timeout is not None else _DEFAULT_CONNECT_TIMEOUT
    )
    connect_deadline = transfer.start + connect_budget
    if max_deadline is not None:
        connect_deadline = min(connect_deadline, max_deadline)

    # ---- name lookup
    addresses = _resolve_entries(opts, url)
    if addresses is None:
        try:
            addresses = [str(ipaddress.IPv4Address(url.host))]
        except ValueError:
            addresses = _curl_lookup(host, url.host, transfer, max_deadline, cancel)
    transfer.namelookup = transfer.since()
    if not addresses:
        raise _CurlExit(6, f"Could not resolve host: {url.host}")

    # ---- connect (each address but the last gets half the remaining time, as curl)
    sock: socket.socket | None = None
    outcome = "timeout"
    for index, address in enumerate(addresses):
        now = time.monotonic()
        remaining = connect_deadline - now
        if remaining <= 0:
            outcome = "timeout"
            break
        last = index == len(addresses) - 1
        attempt_deadline = now + (remaining if last else remaining / 2)
        # The kernel gives up on unanswered SYNs on its own before curl's default 300 s.
        attempt_deadline = min(attempt_deadline, now + _KERNEL_SYN_GIVE_UP)
        outcome, sock = _tcp_connect(host, address, url.port, attempt_deadline, cancel)
        if outcome == "ok":
            transfer.remote_ip, transfer.remote_port = address, url.port
            break
    if sock is None:
        elapsed = int(transfer.since() * 1000)
        where = f"Failed to connect to {url.host} port {url.port} after {elapsed} ms"
        if outcome == "timeout" and time.monotonic() >= connect_deadline - 0.0005:
            if connect_binding:
                raise _CurlExit(28, f"{where}: Timeout was reached")
            raise _CurlExit(28, f"Connection timed out after {elapsed} milliseconds")
        if outcome == "timeout":  # the kernel gave up (ETIMEDOUT) before curl did
            raise _CurlExit(28, f"{where}: Couldn't connect to server")
        raise _CurlExit(7, f"{where}: Couldn't connect to server")
    transfer.num_connects = 1
    local_ip, transfer.local_port = sock.getsockname()[:2]
    transfer.local_ip = host.address or local_ip
    tcp_connected = transfer.since()
    transfer.scheme = url.scheme.upper()
    holder: list[socket.socket] = [sock]
    try:
        stream: socket.socket = sock
        if url.scheme == "https":
            stream = _tls_handshake(
                host, opts, url, holder, transfer, connect_deadline, connect_binding, cancel
            )
            transfer.connect = tcp_connected
            transfer.appconnect = transfer.since()
        else:
            transfer.connect = tcp_connected
        _http_exchange(opts, url, stream, transfer, sink, max_deadline, cancel)
    finally:
        sink.close()
        with contextlib.suppress(OSError):
            holder[-1].close()


def _curl_lookup(
    host: HostView, name: str, transfer: _Transfer, max_deadline: float | None, cancel: Cancel
) -> list[str]:
    if max_deadline is None:
        return _lookup_a(host, name, cancel)
    result: list[str] = []
    done = threading.Event()

    def work() -> None:
        nonlocal result
        try:
            result = _lookup_a(host, name, cancel)
        except _Stopped:
            pass
        finally:
            done.set()

    worker = threading.Thread(target=work, name="lab-curl-resolve", daemon=True)
    worker.start()
    while not done.wait(min(max(max_deadline - time.monotonic(), 0), _SLICE)):
        if time.monotonic() >= max_deadline:
            raise _CurlExit(
                28, f"Resolving timed out after {int(transfer.since() * 1000)} milliseconds"
            )
        if cancel.is_set():
            raise _Stopped
    return result


@lru_cache(maxsize=32)
def _client_context(ca_pem: str, insecure: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The lab's curl speaks HTTP/1.1 only, so it offers only that (an AWS NLB TLS listener
    # negotiates no ALPN by default, so a real curl ends up on HTTP/1.1 there too).
    context.set_alpn_protocols(["http/1.1"])
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context.load_verify_locations(cadata=ca_pem)
    return context


@lru_cache(maxsize=1)
def _openssl_version() -> str:
    match = re.match(r"OpenSSL (\S+)", ssl.OPENSSL_VERSION)
    return f"OpenSSL/{match.group(1)}" if match else ssl.OPENSSL_VERSION.replace(" ", "/", 1)


def _ssl_error_text(exc: ssl.SSLError) -> str:
    """Format an OpenSSL error as curl 7.88 does: 'OpenSSL/3.0.x: error:0A00010B:SSL routines::...'."""
    import _ssl

    library = getattr(exc, "library", None) or ""
    reason = getattr(exc, "reason", None) or ""
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    match = re.match(r"\[[^\]]*\]\s*(.*?)\s*\(_ssl\.c:\d+\)$", text)
    reason_text = match.group(1) if match else text
    codes = getattr(_ssl, "err_names_to_codes", {})  # reason name -> (library code, reason code)
    packed = codes.get(reason)
    lib_names = {"SSL": "SSL routines", "X509": "x509 certificate routines", "PEM": "PEM routines"}
    if packed is not None:
        lib_code, reason_code = packed
        number = (lib_code << 23) | reason_code
        return f"error:{number:08X}:{lib_names.get(library, library)}::{reason_text}"
    return reason_text


def _tls_handshake(
    host: HostView,
    opts: _CurlOptions,
    url: _Url,
    holder: list[socket.socket],
    transfer: _Transfer,
    deadline: float,
    connect_binding: bool,
    cancel: Cancel,
) -> ssl.SSLSocket:
    """Do the TLS handshake on ``holder[0]``; the TLS socket is appended (the caller closes it)."""
    transfer.ssl_verify_result = 1  # curl reports 1 until verification has actually passed
    trusted = host.ca_pem
    if opts.cacert is not None:
        path = Path(opts.cacert)
        try:
            trusted = (path if path.is_absolute() else opts.cwd / path).read_text("ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise _CurlExit(77, f"error setting certificate file: {opts.cacert}") from exc
    try:
        context = _client_context(trusted, opts.insecure)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise _CurlExit(77, f"error setting certificate file: {opts.cacert}") from exc
    server_name = url.host
    tls = context.wrap_socket(holder[0], server_hostname=server_name, do_handshake_on_connect=False)
    holder.append(tls)
    tls.setblocking(False)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            ready = _wait_fd(tls, False, deadline, cancel)
        except ssl.SSLWantWriteError:
            ready = _wait_fd(tls, True, deadline, cancel)
        except ssl.SSLCertVerificationError as exc:
            code = exc.verify_code
            if code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH / IP_ADDRESS_MISMATCH
                raise _CurlExit(
                    60,
                    "SSL: no alternative certificate subject name matches target host name "
                    f"'{url.host}'",
                    extra=_SSL_HELP,
                ) from exc
            transfer.ssl_verify_result = code
            raise _CurlExit(
                60, f"SSL certificate problem: {exc.verify_message}", extra=_SSL_HELP
            ) from exc
        except ssl.SSLEOFError as exc:
            raise _CurlExit(
                35,
                f"OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection to {url.host}:{url.port} ",
            ) from exc
        except ssl.SSLError as exc:
            raise _CurlExit(35, f"{_openssl_version()}: {_ssl_error_text(exc)}") from exc
        except ConnectionResetError as exc:
            raise _CurlExit(35, "Recv failure: Connection reset by peer") from exc
        except OSError as exc:
            raise _CurlExit(
                35,
                f"OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection to {url.host}:{url.port} ",
            ) from exc
        if not ready:
            elapsed = int(transfer.since() * 1000)
            if connect_binding:
                raise _CurlExit(28, "SSL connection timeout")
            raise _CurlExit(28, f"Connection timed out after {elapsed} milliseconds")
    transfer.ssl_verify_result = _verify_result(tls, trusted) if opts.insecure else 0
    return tls


def _verify_result(tls: ssl.SSLSocket, trusted_pem: str) -> int:
    """Return the OpenSSL verify code curl would report with -k (verification ran, was ignored).

    Python does not expose SSL_get_verify_result, so the peer's chain is checked here the way
    OpenSSL builds it: 0 when it leads to a trusted CA (10 if the leaf expired), 18 for a
    self-signed leaf, 19 for a chain ending in an untrusted self-signed root, 20 otherwise.
    """
    import _ssl

    from cryptography import x509

    try:
        raw = tls._sslobj.get_unverified_chain()  # type: ignore[attr-defined]
        chain = [x509.load_der_x509_certificate(c.public_bytes(_ssl.ENCODING_DER)) for c in raw]
        roots = x509.load_pem_x509_certificates(trusted_pem.encode()) if trusted_pem else []
    except (AttributeError, ValueError, TypeError):
        return 1
    if not chain:
        return 1

    def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        try:
            cert.verify_directly_issued_by(issuer)
        except Exception:  # wrong issuer name, bad signature or unsupported key
            return False
        return True

    for index, cert in enumerate(chain):
        if any(issued_by(cert, root) for root in roots):
            leaf = chain[0]
            now = dt.datetime.now(dt.UTC)
            return 10 if leaf.not_valid_after_utc < now else 0
        if issued_by(cert, cert):
            return 18 if index == 0 else 19
        if index + 1 < len(chain) and not issued_by(cert, chain[index + 1]):
            break
    return 20


def _quick_ack(sock: socket.socket) -> None:
    """Acknowledge at once (Linux re-arms delayed ACKs after every read, so set it each time).

    The lab's servers are Python on loopback; one that writes a response in two segments with
    Nagle on waits for the ACK of the first, which a delayed ACK holds back 40 ms. That stall
    is an artefact of the twin (AWS's front ends do not add it) and would cost every probe
    40 ms, so the lab's curl acknowledges immediately.
    """
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


class _Reader:
    """Buffered, deadline-aware reads from a (TLS) socket for the HTTP exchange."""

    def __init__(
        self,
        stream: socket.socket,
        deadline: float | None,
        cancel: Cancel,
        on_timeout: Callable[[], None],
    ) -> None:
        self._stream = stream
        self._deadline = deadline
        self._cancel = cancel
        self._on_timeout = on_timeout
        self._buffer = b""
        self.eof = False
        self.received = 0

    def _fill(self) -> bool:
        """Read more; False on EOF. Raises _CurlExit on reset, timeout or TLS failure."""
        while True:
            try:
                _quick_ack(self._stream)
                chunk = self._stream.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                deadline = self._deadline if self._deadline is not None else time.monotonic() + 3600
                ready = _wait_fd(self._stream, False, deadline, self._cancel)
                if not ready and self._deadline is not None:
                    self._on_timeout()
                continue
            except ssl.SSLWantWriteError:
                deadline = self._deadline if self._deadline is not None else time.monotonic() + 3600
                if (
                    not _wait_fd(self._stream, True, deadline, self._cancel)
                    and self._deadline is not None
                ):
                    self._on_timeout()
                continue
            except ssl.SSLEOFError as exc:
                raise _CurlExit(
                    56,
                    f"OpenSSL SSL_read: {_ssl_error_text(exc)}, errno 0",
                ) from exc
            except ConnectionResetError as exc:
                raise _CurlExit(56, "Recv failure: Connection reset by peer") from exc
            except ssl.SSLError as exc:
                raise _CurlExit(56, f"OpenSSL SSL_read: {_ssl_error_text(exc)}, errno 0") from exc
            except OSError as exc:
                raise _CurlExit(56, f"Recv failure: {exc.strerror or exc}") from exc
            if not chunk:
                self.eof = True
                return False
            self._buffer += chunk
            return True

    def line(self) -> bytes | None:
        while b"\n" not in self._buffer:
            if len(self._buffer) > 1 << 20 or not self._fill():
                return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"

    def read(self, size: int) -> bytes:
        """Return up to ``size`` bytes: what is buffered, else one read's worth (b"" at EOF)."""
        if not self._buffer and not self._fill():
            return b""
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def read_exact(self, size: int) -> bytes:
        """Return ``size`` bytes, or fewer if the stream ends first."""
        while len(self._buffer) < size:
            if not self._fill():
                break
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def some(self) -> bytes:
        if not self._buffer and not self._fill():
            return b""
        data, self._buffer = self._buffer, b""
        return data

    def pending(self) -> bool:
        return bool(self._buffer)


def _request_bytes(opts: _CurlOptions, url: _Url, method: str) -> bytes:
    default_port = 443 if url.scheme == "https" else 80
    host_header = url.host + (f":{url.port}" if url.port != default_port else "")
    defaults: list[tuple[str, str]] = [
        ("Host", host_header),
        ("User-Agent", opts.user_agent if opts.user_agent is not None else f"curl/{CURL_VERSION}"),
        ("Accept", "*/*"),
    ]
    custom: list[tuple[str, str | None]] = []
    for header in opts.headers:
        if ":" in header:
            name, value = header.split(":", 1)
            custom.append((name.strip(), value.strip() or None))
        elif header.endswith(";"):
            custom.append((header[:-1].strip(), ""))
    overridden = {name.lower() for name, _ in custom}
    lines = [f"{method} {url.target} HTTP/1.1"]
    for name, default in defaults:
        if name.lower() not in overridden:
            lines.append(f"{name}: {default}")
        elif name == "Host":
            host_value = next(v for n, v in custom if n.lower() == "host")
            if host_value is not None:
                lines.append(f"Host: {host_value}")
    body = b"&".join(opts.data) if opts.data is not None else b""
    for name, given in custom:
        if name.lower() == "host" or given is None:
            continue
        lines.append(f"{name}: {given}")
    if opts.data is not None:
        if "content-length" not in overridden:
            lines.append(f"Content-Length: {len(body)}")
        if "content-type" not in overridden:
            lines.append("Content-Type: application/x-www-form-urlencoded")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body


def _http_exchange(
    opts: _CurlOptions,
    url: _Url,
    stream: socket.socket,
    transfer: _Transfer,
    sink: _BodySink,
    max_deadline: float | None,
    cancel: Cancel,
) -> None:
    method = opts.method or ("HEAD" if opts.head else "POST" if opts.data is not None else "GET")
    transfer.method = method
    request = _request_bytes(opts, url, method)
    transfer.size_request = len(request)
    transfer.size_upload = len(b"&".join(opts.data)) if opts.data else 0
    transfer.pretransfer = transfer.since()
    expected: int | None = None

    def timed_out() -> None:
        elapsed = int(transfer.since() * 1000)
        got = transfer.size_download
        if expected is not None:
            raise _CurlExit(
                28,
                f"Operation timed out after {elapsed} milliseconds with {got} out of "
                f"{expected} bytes received",
            )
        raise _CurlExit(
            28, f"Operation timed out after {elapsed} milliseconds with {got} bytes received"
        )

    _send_all(stream, request, max_deadline, cancel, timed_out)
    reader = _Reader(stream, max_deadline, cancel, timed_out)

    # ---- status line and headers (skipping interim 1xx responses)
    while True:
        status_line = reader.line()
        if status_line is None:
            if transfer.size_header == 0 and not reader.pending():
                raise _CurlExit(52, "Empty reply from server")
            raise _CurlExit(8, "Weird server reply")
        if transfer.starttransfer == 0.0:
            transfer.starttransfer = transfer.since()
        match = re.match(rb"HTTP/(\d)\.(\d) (\d{3})", status_line)
        if match is None:
            raise _CurlExit(1, "Received HTTP/0.9 when not allowed")
        code = int(match.group(3))
        raw_headers = [status_line]
        headers: list[tuple[str, str]] = []
        while True:
            line = reader.line()
            if line is None:
                raise _CurlExit(8, "Weird server reply")
            raw_headers.append(line)
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        transfer.size_header += sum(len(h) for h in raw_headers)
        if 100 <= code < 200 and code != 101:
            continue
        break
    transfer.http_code = code
    transfer.http_version = f"{match.group(1).decode()}.{match.group(2).decode()}"
    if transfer.http_version == "1.0":
        transfer.http_version = "1"
    header_map = dict(headers)
    transfer.content_type = header_map.get("content-type", "")
    location = header_map.get("location")
    if location and 300 <= code < 400:
        transfer.redirect_url = location
    if opts.fail and code >= 400:
        return  # curl stops at the status line: no body is read or written
    if opts.include or method == "HEAD":
        sink.write(b"".join(raw_headers))

    # ---- body
    if method == "HEAD" or code in (204, 304):
        return
    chunked = "chunked" in header_map.get("transfer-encoding", "").lower()
    if not chunked and header_map.get("content-length", "").isdigit():
        expected = int(header_map["content-length"])
        transfer.size_expected = expected
    if chunked:
        _read_chunked(reader, transfer, sink)
        return
    while expected is None or transfer.size_download < expected:
        data = (
            reader.some()
            if expected is None
            else reader.read(min(65536, expected - transfer.size_download))
        )
        if not data:
            break
        transfer.size_download += len(data)
        if transfer.size_download > _MAX_BODY:
            raise _CurlExit(63, "Exceeded the maximum allowed file size")
        sink.write(data)
    if expected is not None and transfer.size_download < expected:
        raise _CurlExit(
            18, f"transfer closed with {expected - transfer.size_download} bytes remaining to read"
        )


def _read_chunked(reader: _Reader, transfer: _Transfer, sink: _BodySink) -> None:
    while True:
        line = reader.line()
        if line is None:
            raise _CurlExit(18, "transfer closed with outstanding read data remaining")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise _CurlExit(
                56, "Illegal or missing hexadecimal sequence in chunked-encoding"
            ) from exc
        if size == 0:
            while True:  # trailers up to the empty line
                trailer = reader.line()
                if trailer is None or trailer in (b"\r\n", b"\n"):
                    return
        data = reader.read_exact(size)
        transfer.size_download += len(data)
        sink.write(data)
        if len(data) < size:
            raise _CurlExit(18, "transfer closed with outstanding read data remaining")
        reader.read_exact(2)  # the CRLF after the chunk


def _send_all(
    stream: socket.socket,
    data: bytes,
    deadline: float | None,
    cancel: Cancel,
    on_timeout: Callable[[], None],
) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = stream.send(view)
        except (ssl.SSLWantWriteError, BlockingIOError):
            sent = 0
        except ssl.SSLWantReadError:
            sent = 0
        except ConnectionResetError as exc:
            raise _CurlExit(55, "Send failure: Connection reset by peer") from exc
        except OSError as exc:
            raise _CurlExit(55, f"Send failure: {exc.strerror or exc}") from exc
        if sent:
            view = view[sent:]
            continue
        wait_until = deadline if deadline is not None else time.monotonic() + 3600
        if not _wait_fd(stream, True, wait_until, cancel) and deadline is not None:
            on_timeout()


# --------------------------------------------------------------------------- curl --write-out

_WRITE_OUT_RE = re.compile(r"%\{([^}]*)\}|%%|\\.|%", re.S)


def _write_out(out: _Out, template: str | None, transfer: _Transfer) -> None:
    if not template:
        return
    fd = 1
    buffer = ""
    values = _write_out_values(transfer)
    position = 0
    for match in _WRITE_OUT_RE.finditer(template):
        buffer += template[position : match.start()]
        position = match.end()
        token = match.group(0)
        if token in ("%%", "%"):
            buffer += "%"
        elif token.startswith("\\"):
            # curl turns \r, \n and \t into characters and copies any other pair as it is.
            buffer += {"\\r": "\r", "\\n": "\n", "\\t": "\t"}.get(token, token)
        else:
            name = match.group(1)
            if name in ("stdout", "stderr"):
                out.write(fd, buffer)
                buffer = ""
                fd = 1 if name == "stdout" else 2
            elif name in values:
                buffer += values[name]
            else:
                out.write(fd, buffer)
                buffer = ""
                out.err(f"curl: unknown --write-out variable: '{name}'\n")
    buffer += template[position:]
    out.write(fd, buffer)


def _write_out_values(t: _Transfer) -> dict[str, str]:
    def seconds(value: float) -> str:
        return f"{value:.6f}"

    speed = int(t.size_download / t.total) if t.total > 0 else 0
    upload_speed = int(t.size_upload / t.total) if t.total > 0 else 0
    return {
        "content_type": t.content_type,
        "errormsg": t.errormsg,
        "exitcode": str(t.exitcode),
        "filename_effective": "",
        "ftp_entry_path": "",
        "http_code": f"{t.http_code:03d}",
        "http_connect": "000",
        "http_version": t.http_version,
        "local_ip": t.local_ip,
        "local_port": str(t.local_port),
        "method": t.method,
        "num_connects": str(t.num_connects),
        "num_headers": "0",
        "num_redirects": "0",
        "proxy_ssl_verify_result": "0",
        "redirect_url": t.redirect_url,
        "referer": "",
        "remote_ip": t.remote_ip,
        "remote_port": str(t.remote_port),
        "response_code": f"{t.http_code:03d}",
        "scheme": t.scheme,
        "size_download": str(t.size_download),
        "size_header": str(t.size_header),
        "size_request": str(t.size_request),
        "size_upload": str(t.size_upload),
        "speed_download": str(speed),
        "speed_upload": str(upload_speed),
        "ssl_verify_result": str(t.ssl_verify_result),
        "time_appconnect": seconds(t.appconnect),
        "time_connect": seconds(t.connect),
        "time_namelookup": seconds(t.namelookup),
        "time_pretransfer": seconds(t.pretransfer),
        "time_redirect": seconds(0.0),
        "time_starttransfer": seconds(t.starttransfer),
        "time_total": seconds(t.total),
        "url": t.url,
        "url_effective": t.url_effective,
        "urlnum": "0",
    }


def _meter_size(value: int) -> str:
    """curl's max5data(): a byte count in five columns."""
    if value < 100000:
        return f"{value:5d}"
    if value < 10000 * 1024:
        return f"{value // 1024:4d}k"
    if value < 100 * 1024 * 1024:
        return f"{value / (1024 * 1024):4.1f}M"
    return f"{value // (1024 * 1024):4d}M"


def _meter_time(seconds: float | None) -> str:
    if not seconds or seconds < 1:
        return "--:--:--"
    whole = int(seconds)
    return f"{whole // 3600:2d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


_METER_START = "\r  0     0    0     0    0     0      0      0 --:--:-- --:--:-- --:--:--     0"


def _meter_line(t: _Transfer, expected: int | None) -> str:
    """The progress meter's final update (curl's meter goes to stderr unless -s)."""
    got = t.size_download
    percent = got * 100 // expected if expected else 0
    speed = int(got / t.total) if t.total > 0 else 0
    size = _meter_size
    return (
        f"\r{percent:3d} {size(expected or got)}  {percent:3d} {size(got)}    0     0  "
        f"{size(speed)}      0 --:--:-- {_meter_time(t.total)} --:--:-- {size(speed)}"
    )


# ---------------------------------------------------------------------------------------------
# The server the shims talk to
# ---------------------------------------------------------------------------------------------

# Exit status of a shim that cannot reach the lab: dig's "internal error", curl's "failed to
# initialize".
SHIM_FAILURE_RC = {"dig": 10, "curl": 2}


def render_shim(tool: str, *, port: int, token: str, host_label: str) -> str:
    """Return the bash shim for ``tool`` talking to the tool server on 127.0.0.1:``port``.

    Raises:
        ValueError: ``tool`` is not one the lab provides, or ``token`` is not hexadecimal.
    """
    if tool not in TOOLS:
        raise ValueError(f"unknown lab tool {tool!r}; the lab provides {', '.join(TOOLS)}")
    if not re.fullmatch(r"[0-9a-f]+", token):
        raise ValueError(f"shim token {token!r} must be lower-case hexadecimal")
    from importlib import resources

    template = resources.files("harness.lab").joinpath("shims/tool.bash").read_text()
    return (
        template.replace("@TOOL@", tool)
        .replace("@INSTANCE@", host_label)
        .replace("@PORT@", str(int(port)))
        .replace("@TOKEN@", token)
        .replace("@FAIL_RC@", str(SHIM_FAILURE_RC[tool]))
    )


class ToolServer:
    """Serve shim requests on 127.0.0.1: run the tool for the bastion the token names.

    Wire format (all text fields NUL-terminated): ``RD1``, token, tool, stdout-is-a-tty (0/1),
    working directory, argument count, then each argument. The reply is a sequence of frames
    ``<stream> <length>\\n<bytes>`` (stream ``1``/``2``; ``B1``/``B2`` for bytes with a NUL, which
    the shim copies with ``head -c`` instead of bash's ``read``) ended by ``x <exit status>\\n``.

    A token identifies a bastion and grants nothing else: the server runs only dig and curl.
    """

    def __init__(
        self, resolve_token: Callable[[str], HostView | None], *, workers: int = 64
    ) -> None:
        self._resolve = resolve_token
        self._listener: socket.socket | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lab-tool")
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._active: set[Cancel] = set()
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the tool server is not running")
        return int(self._listener.getsockname()[1])

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(256)
        self._listener = listener
        self._thread = threading.Thread(
            target=self._accept_loop, name="lab-tool-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            for cancel in list(self._active):
                cancel.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            try:
                self._pool.submit(self._serve, conn)
            except RuntimeError:  # shutting down
                conn.close()
                return

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._serve_one(conn)
        except Exception:
            log.exception("lab tool server failed on a shim request")

    def _serve_one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10.0)
            try:
                token, invocation = _read_request(conn)
            except (OSError, ValueError) as exc:
                log.warning("lab tool server: bad shim request: %s", exc)
                return
            host = self._resolve(token)
            if host is None:
                reply = _Out()
                reply.err(
                    f"{invocation.tool}: this shell is not a regiondrill lab bastion (unknown token)\n"
                )
                _send_reply(conn, reply.result(SHIM_FAILURE_RC[invocation.tool]))
                return
            conn.settimeout(None)
            cancel = Cancel(conn)
            with self._lock:
                self._active.add(cancel)
            try:
                result = run_tool(host, invocation, cancel)
            except Exception:
                log.exception("lab %s failed", invocation.tool)
                failure = _Out()
                failure.err(
                    f"{invocation.tool}: internal error in the regiondrill lab (see the lab log)\n"
                )
                result = failure.result(SHIM_FAILURE_RC[invocation.tool])
            finally:
                with self._lock:
                    self._active.discard(cancel)
            if cancel.is_set():
                return
            with contextlib.suppress(OSError):
                _send_reply(conn, result)


def _read_request(conn: socket.socket) -> tuple[str, Invocation]:
    data = b""
    fields: list[bytes] = []
    argc: int | None = None
    while True:
        while b"\0" in data:
            item, _, data = data.partition(b"\0")
            fields.append(item)
            if len(fields) == 6:
                argc = int(fields[5])
        if argc is not None and len(fields) >= 6 + argc:
            break
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("connection closed before the request was complete")
        data += chunk
        if len(data) > 1 << 20:
            raise ValueError("request too large")
    if fields[0].decode() != PROTOCOL_MAGIC:
        raise ValueError(f"unexpected protocol {fields[0]!r}")
    token = fields[1].decode()
    tool = fields[2].decode()
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}")
    decode = _surrogate
    return token, Invocation(
        tool=tool,
        argv=tuple(decode(f) for f in fields[6 : 6 + argc]),
        cwd=Path(decode(fields[4]) or "/"),
        stdout_tty=fields[3] == b"1",
    )


def _surrogate(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _send_reply(conn: socket.socket, result: ToolResult) -> None:
    conn.sendall(b"".join(_frames(result)))


def _frames(result: ToolResult) -> Iterator[bytes]:
    for fd, data in result.chunks:
        kind = f"B{fd}" if b"\0" in data else str(fd)
        yield f"{kind} {len(data)}\n".encode() + data
    yield f"x {result.rc}\n".encode()
