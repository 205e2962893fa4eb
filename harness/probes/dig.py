"""Build ``dig`` command lines and parse what BIND's ``dig`` (9.16-9.18) prints.

The same parser reads real ``dig`` on AWS bastions and the lab's shim, so it follows the real
tool's output, checked against outputs captured from BIND 9.18 (``tests/probes/fixtures``):

Full output (abridged)::

    ;; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 4242
    ;; flags: qr rd ra; QUERY: 1, ANSWER: 0, AUTHORITY: 1, ADDITIONAL: 1
    ;; ANSWER SECTION:
    api.example.internal.   60  IN  A   10.1.1.10
    ;; Query time: 3 msec
    ;; SERVER: 10.1.0.2#53(10.1.0.2) (UDP)         <- 9.16 prints no "(UDP)"

``+short`` prints the rdata of each answer record, one per line, and nothing else.  When no
server answers, 9.16 prints ``;; connection timed out; no servers could be reached``; 9.18 prints
one ``;; communications error to 10.1.0.2#53: timed out`` line per try followed by ``;; no
servers could be reached``.  Both exit 9.

``+short`` cannot tell NXDOMAIN from NODATA (or from SERVFAIL/REFUSED): all print nothing and exit
0. The parser reports status ``UNKNOWN`` in that case instead of guessing; callers that need the
response code must run the full form.

Parsers never raise on arbitrary text: anything they cannot read becomes status ``ERROR`` with
the reason in ``error_message``.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass

import dns.exception
import dns.rdatatype

from harness.errors import ConfigError

__all__ = [
    "DIG_EXIT_CODES",
    "NO_RESPONSE_STATUSES",
    "DigQuery",
    "DigRecord",
    "DigResult",
    "build_dig_command",
    "dig_exit_code_meaning",
    "parse_dig",
]

# From dig(1) "RETURN CODES" (BIND 9.16 and 9.18 print the same table).
DIG_EXIT_CODES: dict[int, str] = {
    0: "DNS response received, including NXDOMAIN status",
    1: "Usage error",
    8: "Couldn't open batch file",
    9: "No reply from server",
    10: "Internal error",
}

# Statuses that mean no DNS response was read; every other status is a response code.
NO_RESPONSE_STATUSES = frozenset({"TIMEOUT", "ERROR"})

_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_NAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?\Z")
_MAX_NAME_LENGTH = 253

# re.ASCII: dig prints ASCII; Unicode digits or spaces in arbitrary input must not match.
_HEADER_RE = re.compile(
    r"->>HEADER<<-\s+opcode:\s*([A-Z0-9]+),\s*status:\s*([A-Z0-9]+),\s*id:\s*([0-9]+)", re.ASCII
)
_FLAGS_RE = re.compile(r"^;;\s*flags:([^;]*);", re.ASCII)
_QUERY_TIME_RE = re.compile(r"^;;\s*Query time:\s*([0-9]{1,9})\s*(msec|usec)\b", re.ASCII)
_SERVER_RE = re.compile(r"^;;\s*SERVER:\s*(.+?)\s*$", re.ASCII)
_SECTION_RE = re.compile(r"^;;\s*([A-Z][A-Z ]*?)\s+(?:SECTION|PSEUDOSECTION):\s*$", re.ASCII)
_RECORD_RE = re.compile(
    r"^(?P<name>\S+)\s+(?:(?P<ttl>[0-9]{1,10})\s+)?"
    r"(?:(?P<rclass>IN|CH|HS|CS|NONE|ANY|CLASS[0-9]+)\s+)?"
    r"(?P<rdtype>[A-Z][A-Z0-9-]*|TYPE[0-9]+)(?:\s+(?P<data>.*?))?\s*$",
    re.ASCII,
)
# ";;" lines that describe every run rather than this one; kept out of DigResult.messages.
_INFORMATIONAL = ("global options:", "Got answer:", "WHEN:", "MSG SIZE")
# Lines dig prints when it got no usable reply; the text after ";; " is kept as the message.
_NO_REPLY_MARKERS = (
    "no servers could be reached",
    "communications error",
    "connection timed out",
    "failed: ",
)


@dataclass(frozen=True)
class DigQuery:
    """Describe one ``dig`` invocation; validated on construction so a bad value fails early.

    Raises:
        ConfigError: a value dig would reject or that could change the command's meaning, named
            in the message.
    """

    name: str
    rdtype: str = "A"
    server: str | None = None
    port: int | None = None
    short: bool = False
    tcp: bool = False
    time: int | None = None
    tries: int | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, what="query name")
        object.__setattr__(self, "rdtype", _check_rdtype(self.rdtype))
        if self.server is not None:
            _check_server(self.server)
        if self.port is not None:
            _check_int(self.port, what="port", low=1, high=65535)
        if self.time is not None:
            _check_int(self.time, what="time", low=1, high=3600)
        if self.tries is not None:
            _check_int(self.tries, what="tries", low=1, high=100)

    def argv(self) -> list[str]:
        """Return the argument vector; ``-q``/``-t`` keep a name such as ``A`` from being a type."""
        # -r ignores ~/.digrc so a bastion user's defaults cannot change the output format.
        args = ["dig", "-r"]
        if self.server is not None:
            args.append(f"@{self.server}")
        if self.port is not None:
            args += ["-p", str(self.port)]
        if self.tcp:
            args.append("+tcp")
        if self.time is not None:
            args.append(f"+time={self.time}")
        if self.tries is not None:
            args.append(f"+tries={self.tries}")
        if self.short:
            args.append("+short")
        args += ["-q", self.name, "-t", self.rdtype]
        return args

    def command(self) -> str:
        """Return the shell-safe command line (every value quoted)."""
        return " ".join(shlex.quote(arg) for arg in self.argv())


@dataclass(frozen=True)
class DigRecord:
    """One resource record from an answer; ``+short`` output knows only ``data``.

    In ``+short`` output ``name``, ``ttl`` and ``rclass`` are None and ``rdtype`` is inferred
    (an IP literal is A/AAAA, a bare name in the answer to an A/AAAA/TXT query is a CNAME) or
    None when it cannot be known.
    """

    name: str | None
    ttl: int | None
    rclass: str | None
    rdtype: str | None
    data: str


@dataclass(frozen=True)
class DigResult:
    """What one ``dig`` run tells about a name: response code, answers, timing, server.

    ``status`` is the DNS response code (NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...), ``UNKNOWN``
    when a response was received but the output does not say which code (``+short``), or
    ``TIMEOUT``/``ERROR`` when no response was read (``error_message`` says why).
    """

    status: str
    answers: tuple[DigRecord, ...] = ()
    flags: tuple[str, ...] = ()
    query_time_ms: float | None = None
    server: str | None = None
    error_message: str | None = None
    rc: int | None = None
    messages: tuple[str, ...] = ()

    @property
    def addresses(self) -> tuple[str, ...]:
        """Return A and AAAA data in answer order (the addresses a client would connect to)."""
        return tuple(r.data for r in self.answers if r.rdtype in ("A", "AAAA"))

    @property
    def ttl_min(self) -> int | None:
        """Return the smallest answer TTL (how long a resolver may cache the answer), if known."""
        ttls = [r.ttl for r in self.answers if r.ttl is not None]
        return min(ttls) if ttls else None

    @property
    def responded(self) -> bool:
        """Return True when a DNS response was received, whatever its response code.

        ``UNKNOWN`` counts as received: it only comes from ``+short`` output that exit status 0
        or printed data proves was a reply.
        """
        return self.status not in NO_RESPONSE_STATUSES


def build_dig_command(
    name: str,
    *,
    rdtype: str = "A",
    server: str | None = None,
    port: int | None = None,
    short: bool = False,
    tcp: bool = False,
    time: int | None = None,
    tries: int | None = None,
) -> str:
    """Return a shell-safe ``dig`` command line for one query.

    Raises:
        ConfigError: a value is invalid (named in the message).
    """
    query = DigQuery(
        name=name,
        rdtype=rdtype,
        server=server,
        port=port,
        short=short,
        tcp=tcp,
        time=time,
        tries=tries,
    )
    return query.command()


def dig_exit_code_meaning(code: int) -> str:
    """Return the dig(1) meaning of an exit status, or say that dig does not define it."""
    meaning = DIG_EXIT_CODES.get(code)
    if meaning is not None:
        return meaning
    if code == 127:
        return "dig not found (shell exit status 127)"
    if 128 < code <= 255:
        return f"dig killed by signal {code - 128} (shell exit status {code})"
    return f"exit status {code} is not defined by dig"


def parse_dig(
    output: str,
    *,
    short: bool,
    rc: int | None = None,
    rdtype: str | None = None,
    stderr: str = "",
) -> DigResult:
    """Parse the standard output of one ``dig`` run (full or ``+short``) into a DigResult.

    ``rc`` is dig's exit status when known: 9 means no reply, 1/8/10 are failures of dig itself.
    ``rdtype`` (the queried type) helps classify ``+short`` lines that are names. ``stderr`` is
    only used to explain failures (dig writes usage errors there). Never raises.
    """
    if short:
        return _parse_short(output, rc=rc, rdtype=rdtype, stderr=stderr)
    return _parse_full(output, rc=rc, stderr=stderr)


def _check_name(value: object, *, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"dig {what} must be a non-empty string, got {value!r}")
    if len(value.rstrip(".")) > _MAX_NAME_LENGTH or not _NAME_RE.match(value):
        raise ConfigError(
            f"dig {what} {value!r} is not a DNS name (letters, digits, '-', '_' in dot-separated "
            f"labels of 1-63 characters, no leading or trailing '-')"
        )


def _check_rdtype(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", value):
        raise ConfigError(f"dig record type {value!r} is not a record type mnemonic")
    try:
        dns.rdatatype.from_text(value)
    except dns.exception.DNSException as exc:
        raise ConfigError(f"dig record type {value!r} is not a known record type") from exc
    return value.upper()


def _check_server(value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"dig server must be a non-empty string, got {value!r}")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        _check_name(value, what="server")


def _check_int(value: object, *, what: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"dig {what} must be an integer in {low}..{high}, got {value!r}")


def _diagnostic(line: str) -> str | None:
    """Return the text of a ``;; ...`` diagnostic line that reports a failed exchange."""
    if not line.startswith(";;"):
        return None
    text = line[2:].strip()
    lowered = text.lower()
    if any(marker in lowered for marker in _NO_REPLY_MARKERS):
        return text
    return None


def _no_reply_status(failures: list[str]) -> str:
    # TIMEOUT only when every failed exchange timed out; "connection refused" and friends say
    # something different about the path (the server host answered with an error).
    reasons = [f for f in failures if "no servers could be reached" not in f.lower()]
    if "connection timed out" in " ".join(failures).lower():
        return "TIMEOUT"
    if reasons and all("timed out" in r.lower() for r in reasons):
        return "TIMEOUT"
    return "ERROR"


def _failure_result(
    failures: list[str], *, rc: int | None, stderr: str, messages: tuple[str, ...]
) -> DigResult:
    if failures:
        return DigResult(
            status=_no_reply_status(failures),
            error_message="; ".join(_dedupe(failures)),
            rc=rc,
            messages=messages,
        )
    detail = _first_line(stderr)
    if rc is None:
        message = "no DNS response in dig's output"
    elif rc == 0:
        message = "dig exited 0 but printed no ->>HEADER<<- line (truncated or not dig output?)"
    else:
        message = f"dig exit {rc}: {dig_exit_code_meaning(rc)}"
    if detail:
        message = f"{message}: {detail}"
    return DigResult(status="ERROR", error_message=message, rc=rc, messages=messages)


def _parse_short(output: str, *, rc: int | None, rdtype: str | None, stderr: str) -> DigResult:
    lines = [line.strip() for line in output.splitlines()]
    failures: list[str] = []
    messages: list[str] = []
    data: list[str] = []
    for line in lines:
        if not line:
            continue
        if line.startswith(";"):
            messages.append(line.lstrip(";").strip())
            failure = _diagnostic(line)
            if failure is not None:
                failures.append(failure)
            continue
        data.append(line)
    if rc not in (None, 0) or (rc is None and failures and not data):
        return _failure_result(failures, rc=rc, stderr=stderr, messages=tuple(messages))
    if rc is None and not data:
        return DigResult(
            status="ERROR",
            error_message="empty +short output and no exit status: cannot tell a reply from none",
            messages=tuple(messages),
        )
    records = _short_records(data, rdtype=rdtype)
    status = "UNKNOWN"
    if records and _short_answer_is_final(records, rdtype=rdtype):
        status = "NOERROR"
    return DigResult(status=status, answers=records, rc=rc, messages=tuple(messages))


def _short_records(data: list[str], *, rdtype: str | None) -> tuple[DigRecord, ...]:
    query_type = rdtype.upper() if rdtype else None
    records = []
    for index, datum in enumerate(data):
        followed_by_address = any(_ip_family(d) for d in data[index + 1 :])
        kind = _short_kind(datum, query_type, followed_by_address=followed_by_address)
        records.append(DigRecord(name=None, ttl=None, rclass=None, rdtype=kind, data=datum))
    return tuple(records)


def _short_kind(datum: str, query_type: str | None, *, followed_by_address: bool) -> str | None:
    """Infer the record type of one ``+short`` line, or None when the line cannot say.

    CNAME data is a single name ending in '.', so a line of any other shape is never a CNAME,
    and for A/AAAA/TXT/CNAME queries a bare name can only be a CNAME. For NS/PTR and other
    name-valued types a bare name is ambiguous (CNAME or final data), so it stays None.
    """
    family = _ip_family(datum)
    if family is not None:
        return family
    bare_name = datum.endswith(".") and not any(ch.isspace() for ch in datum)
    if bare_name:
        if query_type in ("A", "AAAA", "TXT", "CNAME"):
            return "CNAME"
        if query_type is None and followed_by_address:
            return "CNAME"
        return None
    if query_type is None:
        return "TXT" if datum.startswith('"') else None
    if query_type in ("A", "AAAA", "CNAME"):
        return None  # neither an address nor a name: not something this query returns
    return query_type


def _short_answer_is_final(records: tuple[DigRecord, ...], *, rdtype: str | None) -> bool:
    """Return True when ``+short`` lines prove a NOERROR answer of the queried type.

    An address (or the queried type's data) ends a successful answer; a name alone may be a
    CNAME whose target does not exist (NXDOMAIN with a non-empty answer), so it proves nothing
    unless CNAME was asked for.
    """
    query_type = rdtype.upper() if rdtype else None
    last = records[-1].rdtype
    if last is None:
        return False
    if query_type is None:
        return last in ("A", "AAAA")
    return last == query_type


def _parse_full(output: str, *, rc: int | None, stderr: str) -> DigResult:
    status: str | None = None
    flags: tuple[str, ...] = ()
    query_time_ms: float | None = None
    server: str | None = None
    section: str | None = None
    answers: list[DigRecord] = []
    failures: list[str] = []
    messages: list[str] = []
    for raw in output.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith(";"):
            header = _HEADER_RE.search(line)
            if header is not None:
                if status is not None:
                    # A second response (batch or multi-query output): the first one is ours.
                    break
                status = header.group(2)
                continue
            section_match = _SECTION_RE.match(line)
            if section_match is not None:
                section = section_match.group(1).strip()
                continue
            flags_match = _FLAGS_RE.match(line)
            if flags_match is not None:
                flags = tuple(flags_match.group(1).split())
                continue
            time_match = _QUERY_TIME_RE.match(line)
            if time_match is not None:
                value = int(time_match.group(1))
                query_time_ms = value / 1000.0 if time_match.group(2) == "usec" else float(value)
                continue
            server_match = _SERVER_RE.match(line)
            if server_match is not None:
                server = server_match.group(1)
                continue
            if line.startswith(";;") and not line[2:].lstrip().startswith(_INFORMATIONAL):
                messages.append(line[2:].strip())
                failure = _diagnostic(line)
                if failure is not None:
                    failures.append(failure)
            continue
        if section == "ANSWER" and status is not None:
            record = _parse_record(line)
            if record is not None:
                answers.append(record)
    if status is None:
        return _failure_result(failures, rc=rc, stderr=stderr, messages=tuple(messages))
    return DigResult(
        status=status,
        answers=tuple(answers),
        flags=flags,
        query_time_ms=query_time_ms,
        server=server,
        rc=rc,
        messages=tuple(messages),
    )


def _parse_record(line: str) -> DigRecord | None:
    match = _RECORD_RE.match(line)
    if match is None:
        return None
    ttl = match.group("ttl")
    return DigRecord(
        name=match.group("name"),
        ttl=int(ttl) if ttl is not None else None,
        rclass=match.group("rclass"),
        rdtype=match.group("rdtype"),
        data=match.group("data") or "",
    )


def _ip_family(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return "A" if address.version == 4 else "AAAA"


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""
