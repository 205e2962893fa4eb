"""Build ``curl`` command lines and parse their output into a CurlResult.

The command appends one machine-readable trailer line after the body with ``-w``
(:data:`DEFAULT_WRITE_OUT`), so one stdout carries the body, the HTTP status and the timings::

    {"region": "us-east-1", "event": {...}}
    __REGIONDRILL__ http_code=200 time_namelookup=0.000021 ... exitcode=0 ssl_verify_result=0

curl prints the ``-w`` output even when the transfer fails (``http_code=000``), and with ``-sS``
its one error line (``curl: (28) Operation timed out after ...``) goes to stderr.

Variables differ between curl versions: ``exitcode`` needs 7.75; older curl (7.68 on Ubuntu
20.04) prints nothing for it and warns ``curl: unknown --write-out variable: 'exitcode'`` on
stderr. The parser treats an empty or literally printed (``%{...}``) value as unknown, and the
process exit status (``rc``), not the trailer, is the authority on how curl ended.

Parsers never raise on arbitrary stdout/stderr/rc: what cannot be read is None, with the reason
in ``parse_error``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from harness.errors import ConfigError

__all__ = [
    "CURL_EXIT_CODES",
    "DEFAULT_WRITE_OUT",
    "TRAILER_MARKER",
    "CurlRequest",
    "CurlResult",
    "build_curl_command",
    "exit_code_meaning",
    "parse_curl",
]

TRAILER_MARKER = "__REGIONDRILL__"

# Every variable here exists in curl 7.68 except exitcode (7.75); see the module docstring.
_DEFAULT_VARIABLES = (
    "http_code",
    "time_namelookup",
    "time_connect",
    "time_appconnect",
    "time_starttransfer",
    "time_total",
    "remote_ip",
    "remote_port",
    "exitcode",
    "ssl_verify_result",
)
# The -w format exactly as curl receives it: "\n" here is curl's own escape, not a newline.
DEFAULT_WRITE_OUT = (
    "\\n" + TRAILER_MARKER + " " + " ".join(f"{v}=%{{{v}}}" for v in _DEFAULT_VARIABLES) + "\\n"
)

# From curl(1) "EXIT CODES" (curl 7.88), first sentence of each entry. 51 is gone from current
# manuals: curl < 7.62 used it for certificate/host-name verification failures, now 60.
CURL_EXIT_CODES: Mapping[int, str] = MappingProxyType(
    {
        0: "Success",
        1: "Unsupported protocol",
        2: "Failed to initialize",
        3: "URL malformed",
        4: "A feature or option that was needed to perform the desired request was not enabled "
        "or was explicitly disabled at build-time",
        5: "Could not resolve proxy",
        6: "Could not resolve host",
        7: "Failed to connect to host",
        8: "Weird server reply",
        9: "FTP access denied",
        10: "FTP accept failed",
        11: "FTP weird PASS reply",
        12: "During an active FTP session while waiting for the server to connect back to curl, "
        "the timeout expired",
        13: "FTP weird PASV reply, Curl could not parse the reply sent to the PASV request",
        14: "FTP weird 227 format",
        15: "FTP cannot use host",
        16: "HTTP/2 error",
        17: "FTP could not set binary",
        18: "Partial file",
        19: "FTP could not download/access the given file, the RETR (or similar) command failed",
        21: "FTP quote error",
        22: "HTTP page not retrieved",
        23: "Write error",
        25: "FTP could not STOR file",
        26: "Read error",
        27: "Out of memory",
        28: "Operation timeout",
        30: "FTP PORT failed",
        31: "FTP could not use REST",
        33: "HTTP range error",
        34: "HTTP post error",
        35: "SSL connect error",
        36: "Bad download resume",
        37: "FILE could not read file",
        38: "LDAP cannot bind",
        39: "LDAP search failed",
        41: "Function not found",
        42: "Aborted by callback",
        43: "Internal error",
        45: "Interface error",
        47: "Too many redirects",
        48: "Unknown option specified to libcurl",
        49: "Malformed telnet option",
        51: "The peer's SSL certificate or SSH md5 fingerprint was not OK",
        52: "The server did not reply anything, which here is considered an error",
        53: "SSL crypto engine not found",
        54: "Cannot set SSL crypto engine as default",
        55: "Failed sending network data",
        56: "Failure in receiving network data",
        58: "Problem with the local certificate",
        59: "Could not use specified SSL cipher",
        60: "Peer certificate cannot be authenticated with known CA certificates",
        61: "Unrecognized transfer encoding",
        63: "Maximum file size exceeded",
        64: "Requested FTP SSL level failed",
        65: "Sending the data requires a rewind that failed",
        66: "Failed to initialise SSL Engine",
        67: "The user name, password, or similar was not accepted and curl failed to log in",
        68: "File not found on TFTP server",
        69: "Permission problem on TFTP server",
        70: "Out of disk space on TFTP server",
        71: "Illegal TFTP operation",
        72: "Unknown TFTP transfer ID",
        73: "File already exists (TFTP)",
        74: "No such user (TFTP)",
        77: "Problem reading the SSL CA cert (path? access rights?)",
        78: "The resource referenced in the URL does not exist",
        79: "An unspecified error occurred during the SSH session",
        80: "Failed to shut down the SSL connection",
        82: "Could not load CRL file, missing or wrong format",
        83: "Issuer check failed",
        84: "The FTP PRET command failed",
        85: "Mismatch of RTSP CSeq numbers",
        86: "Mismatch of RTSP Session Identifiers",
        87: "Unable to parse FTP file list",
        88: "FTP chunk callback reported error",
        89: "No connection available, the session will be queued",
        90: "SSL public key does not matched pinned public key",
        91: "Invalid SSL certificate status",
        92: "Stream error in HTTP/2 framing layer",
        93: "An API function was called from inside a callback",
        94: "An authentication function returned an error",
        95: "A problem was detected in the HTTP/3 layer",
        96: "QUIC connection error",
    }
)

_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_METHOD_RE = re.compile(r"^[A-Z]+\Z")
_RESOLVE_RE = re.compile(
    r"^(?P<host>[A-Za-z0-9._-]+):(?P<port>[0-9]{1,5}):(?P<address>[^\s,]+(?:,[^\s,]+)*)\Z"
)
_FORMAT_PAIR_RE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)=%\{(?P<var>[a-z_]+)\}\Z")
_INT_RE = re.compile(r"^[0-9]{1,9}\Z")
_FLOAT_RE = re.compile(r"^[0-9]{1,9}(?:[.,][0-9]{1,9})?\Z")
_STDERR_ERROR_RE = re.compile(r"^curl: \((?P<code>\d+)\) ?(?P<text>.*)$")


@dataclass(frozen=True)
class CurlRequest:
    """Describe one ``curl`` invocation; validated on construction so a bad value fails early.

    Raises:
        ConfigError: a value curl would reject or that could change the command's meaning,
            named in the message.
    """

    url: str
    method: str | None = None
    headers: tuple[str, ...] = ()
    max_time: float | None = None
    connect_timeout: float | None = None
    insecure: bool = False
    resolve: tuple[str, ...] = ()
    cacert: str | None = None
    write_out: str | None = DEFAULT_WRITE_OUT
    output: str | None = None
    show_error: bool = True
    silent: bool = True
    noproxy: bool = True

    def __post_init__(self) -> None:
        _check_url(self.url)
        if self.method is not None and (
            not isinstance(self.method, str) or not _METHOD_RE.match(self.method)
        ):
            raise ConfigError(f"curl method {self.method!r} is not an upper-case HTTP method")
        object.__setattr__(self, "headers", _as_tuple(self.headers, what="headers"))
        for header in self.headers:
            _check_header(header)
        object.__setattr__(self, "resolve", _as_tuple(self.resolve, what="resolve"))
        for entry in self.resolve:
            _check_resolve(entry)
        for what, value in (("max_time", self.max_time), ("connect_timeout", self.connect_timeout)):
            if value is not None:
                _check_seconds(value, what=what)
        for what, path in (("cacert", self.cacert), ("output", self.output)):
            if path is not None:
                _check_path(path, what=what)
        if self.write_out:
            _trailer_layout(self.write_out)

    def argv(self) -> list[str]:
        """Return the argument vector for this request."""
        # -q (first!) ignores ~/.curlrc so a bastion user's defaults cannot change the output.
        args = ["curl", "-q"]
        if self.silent:
            args.append("-s")
        if self.show_error:
            args.append("-S")
        if self.noproxy:
            # A private API is reached directly through the VPC endpoint; an inherited
            # https_proxy would send the probe somewhere else and measure the wrong path.
            args += ["--noproxy", "*"]
        if self.method is not None:
            args += ["-X", self.method]
        for header in self.headers:
            args += ["-H", header]
        if self.max_time is not None:
            args += ["--max-time", _seconds_text(self.max_time)]
        if self.connect_timeout is not None:
            args += ["--connect-timeout", _seconds_text(self.connect_timeout)]
        if self.insecure:
            args.append("-k")
        for entry in self.resolve:
            args += ["--resolve", entry]
        if self.cacert is not None:
            args += ["--cacert", self.cacert]
        if self.output is not None:
            args += ["-o", self.output]
        if self.write_out:
            args += ["-w", self.write_out]
        # _check_url demands an http(s) scheme, so the URL can never be read as an option.
        args.append(self.url)
        return args

    def command(self) -> str:
        """Return the shell-safe command line (every value quoted)."""
        return " ".join(shlex.quote(arg) for arg in self.argv())


@dataclass(frozen=True)
class CurlResult:
    """What one ``curl`` run tells about a request: how it ended, the response, the timings.

    ``exit_code`` is the process exit status (authoritative). Timings are seconds from the start
    of the transfer as curl reports them; curl prints 0 for a phase it never reached, so a failed
    connect has ``time_connect == 0.0``. ``remote_ip``/``remote_port`` are None when no
    connection was made. ``parse_error`` says what could not be read (e.g. no trailer because
    the output was truncated by SSM).
    """

    exit_code: int
    exit_meaning: str
    http_code: int | None
    time_namelookup: float | None
    time_connect: float | None
    time_appconnect: float | None
    time_starttransfer: float | None
    time_total: float | None
    remote_ip: str | None
    remote_port: int | None
    ssl_verify_result: int | None
    trailer_exit_code: int | None
    body: str
    json: Any
    region: str | None
    stderr_message: str | None
    parse_error: str | None = None

    @property
    def ok(self) -> bool:
        """Return True when curl succeeded and the server answered 2xx."""
        return self.exit_code == 0 and self.http_code is not None and 200 <= self.http_code < 300


def build_curl_command(
    url: str,
    *,
    method: str | None = None,
    headers: Iterable[str] = (),
    max_time: float | None = None,
    connect_timeout: float | None = None,
    insecure: bool = False,
    resolve: Iterable[str] = (),
    cacert: str | None = None,
    write_out: str | None = DEFAULT_WRITE_OUT,
    output: str | None = None,
    show_error: bool = True,
    silent: bool = True,
    noproxy: bool = True,
) -> str:
    """Return a shell-safe ``curl`` command line for one request.

    ``resolve`` entries use curl's ``HOST:PORT:ADDRESS`` syntax, pinning the name to an address
    as the lab and cross-region probes need. ``write_out=None`` drops the trailer.

    Raises:
        ConfigError: a value is invalid (named in the message).
    """
    request = CurlRequest(
        url=url,
        method=method,
        headers=_as_tuple(headers, what="headers"),
        max_time=max_time,
        connect_timeout=connect_timeout,
        insecure=insecure,
        resolve=_as_tuple(resolve, what="resolve"),
        cacert=cacert,
        write_out=write_out,
        output=output,
        show_error=show_error,
        silent=silent,
        noproxy=noproxy,
    )
    return request.command()


def exit_code_meaning(code: int) -> str:
    """Return curl(1)'s meaning of an exit status, or say that curl does not define it."""
    meaning = CURL_EXIT_CODES.get(code)
    if meaning is not None:
        return meaning
    if code == 127:
        return "curl not found (shell exit status 127)"
    if code == 126:
        return "curl not executable (shell exit status 126)"
    if 128 < code <= 255:
        return f"curl killed by signal {code - 128} (shell exit status {code})"
    return f"exit status {code} is not defined by curl"


def parse_curl(
    stdout: str, stderr: str, rc: int, *, write_out: str | None = DEFAULT_WRITE_OUT
) -> CurlResult:
    """Parse one ``curl`` run (stdout with the ``-w`` trailer, stderr, exit status).

    Never raises on stdout/stderr/rc; ``write_out`` must be the format the command was built
    with (it tells which variables the trailer holds).

    Raises:
        ConfigError: ``write_out`` itself is not a trailer format (a programming error).
    """
    layout = _trailer_layout(write_out) if write_out else None
    return _parse(stdout, stderr, rc, layout)


@dataclass(frozen=True)
class _TrailerLayout:
    marker: str
    keys: Mapping[str, str]  # key printed in the trailer -> curl variable


def _trailer_layout(write_out: str) -> _TrailerLayout:
    """Return the marker and key->variable map of a trailer format, or raise ConfigError."""
    if not isinstance(write_out, str):
        raise ConfigError(f"curl write_out must be a string, got {write_out!r}")
    body = write_out
    if not body.startswith("\\n"):
        raise ConfigError(
            f"curl write_out {write_out!r} must start with '\\n' so the trailer is its own line"
        )
    body = body[2:]
    body = body.removesuffix("\\n")
    words = body.split(" ")
    marker, pairs = words[0], words[1:]
    if not _TOKEN_RE.match(marker) or "%" in marker:
        raise ConfigError(f"curl write_out {write_out!r} must start with a marker word")
    keys: dict[str, str] = {}
    for pair in pairs:
        match = _FORMAT_PAIR_RE.match(pair)
        if match is None:
            raise ConfigError(f"curl write_out item {pair!r} is not of the form key=%{{variable}}")
        keys[match.group("key")] = match.group("var")
    return _TrailerLayout(marker=marker, keys=MappingProxyType(keys))


def _parse(stdout: str, stderr: str, rc: int, layout: _TrailerLayout | None) -> CurlResult:
    exit_code = int(rc)
    values: dict[str, str] = {}
    body = stdout
    after = ""
    parse_error: str | None = None
    if layout is not None:
        start = _find_trailer(stdout, layout.marker)
        if start is None and not stdout:
            parse_error = (
                "stdout is empty: curl printed no trailer (it prints none when it fails before "
                "starting the transfer, e.g. exit 3 for a malformed URL)"
            )
        elif start is None:
            parse_error = f"no {layout.marker} trailer line in stdout (output truncated?)"
        else:
            body = stdout[: max(start - 1, 0)] if start > 0 else ""
            line_end = stdout.find("\n", start)
            line = stdout[start:] if line_end < 0 else stdout[start:line_end]
            after = "" if line_end < 0 else stdout[line_end + 1 :]
            values = _trailer_values(line, layout)
    variables = {layout.keys[k]: v for k, v in values.items()} if layout else {}
    parsed_json = _json_or_none(body)
    region = parsed_json.get("region") if isinstance(parsed_json, dict) else None
    http_code = _int_or_none(variables.get("http_code") or variables.get("response_code"))
    if http_code == 0:
        http_code = None  # curl prints 000 when no HTTP response was received.
    remote_port = _int_or_none(variables.get("remote_port"))
    return CurlResult(
        exit_code=exit_code,
        exit_meaning=exit_code_meaning(exit_code),
        http_code=http_code,
        time_namelookup=_float_or_none(variables.get("time_namelookup")),
        time_connect=_float_or_none(variables.get("time_connect")),
        time_appconnect=_float_or_none(variables.get("time_appconnect")),
        time_starttransfer=_float_or_none(variables.get("time_starttransfer")),
        time_total=_float_or_none(variables.get("time_total")),
        remote_ip=_address_or_none(variables.get("remote_ip")),
        remote_port=remote_port or None,
        ssl_verify_result=_int_or_none(variables.get("ssl_verify_result")),
        trailer_exit_code=_int_or_none(variables.get("exitcode")),
        body=body,
        json=parsed_json,
        region=region if isinstance(region, str) else None,
        stderr_message=_stderr_message(stderr) or _stderr_message(after),
        parse_error=parse_error,
    )


def _find_trailer(stdout: str, marker: str) -> int | None:
    """Return the index where the last trailer line starts (the body may mention the marker)."""
    prefix = marker + " "
    index = stdout.rfind("\n" + prefix)
    if index >= 0:
        return index + 1
    if stdout.startswith(prefix):
        return 0
    return None


def _trailer_values(line: str, layout: _TrailerLayout) -> dict[str, str]:
    values: dict[str, str] = {}
    for word in line.split(" ")[1:]:
        key, sep, value = word.partition("=")
        if sep and key in layout.keys:
            values[key] = value.strip()
    return values


def _int_or_none(value: str | None) -> int | None:
    if value is None or not _INT_RE.match(value):
        return None  # empty (variable unknown to this curl), literal "%{...}", or garbage
    return int(value)


def _float_or_none(value: str | None) -> float | None:
    if value is None or not _FLOAT_RE.match(value):
        return None
    # Some old curl builds formatted with the C locale's decimal comma.
    return float(value.replace(",", "."))


def _address_or_none(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _json_or_none(body: str) -> Any:
    text = body.strip()
    if not text or text[0] not in "{[":
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _stderr_message(text: str) -> str | None:
    """Return curl's last ``curl: (N) ...`` line (the one -S prints for the failure)."""
    found: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if _STDERR_ERROR_RE.match(stripped):
            found = stripped
    return found


def _check_url(url: object) -> None:
    if not isinstance(url, str) or not url:
        raise ConfigError(f"curl URL must be a non-empty string, got {url!r}")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ConfigError(f"curl URL {url!r} contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"curl URL {url!r} is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"curl URL {url!r} must use http or https, not {parts.scheme!r}")
    if not parts.hostname:
        raise ConfigError(f"curl URL {url!r} has no host")
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"curl URL {url!r} has port {port} outside 1..65535")


def _check_header(header: object) -> None:
    if not isinstance(header, str):
        raise ConfigError(f"curl header must be a string 'Name: value', got {header!r}")
    name, sep, value = header.partition(":")
    if not sep or not _TOKEN_RE.match(name):
        raise ConfigError(f"curl header {header!r} is not of the form 'Name: value'")
    if any(ord(ch) < 0x20 and ch != "\t" for ch in value) or "\x7f" in value:
        raise ConfigError(f"curl header {header!r} contains control characters")


def _check_resolve(entry: object) -> None:
    match = _RESOLVE_RE.match(entry) if isinstance(entry, str) else None
    if match is None:
        raise ConfigError(f"curl resolve entry {entry!r} is not HOST:PORT:ADDRESS")
    assert isinstance(entry, str)
    port = int(match.group("port"))
    if not 1 <= port <= 65535:
        raise ConfigError(f"curl resolve entry {entry!r} has port {port} outside 1..65535")
    for address in match.group("address").split(","):
        try:
            ipaddress.ip_address(address.removeprefix("[").removesuffix("]"))
        except ValueError as exc:
            raise ConfigError(
                f"curl resolve entry {entry!r}: {address!r} is not an IP address"
            ) from exc


def _check_seconds(value: object, *, what: str) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"curl {what} must be a positive number of seconds, got {value!r}")


def _check_path(path: object, *, what: str) -> None:
    if not isinstance(path, str) or not path:
        raise ConfigError(f"curl {what} must be a non-empty path, got {path!r}")
    if path.startswith("-") or any(ord(ch) < 0x20 for ch in path):
        raise ConfigError(f"curl {what} path {path!r} starts with '-' or has control characters")


def _seconds_text(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _as_tuple(values: Iterable[str] | str, *, what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise ConfigError(f"curl {what} must be a list of strings, got the string {values!r}")
    return tuple(values)
