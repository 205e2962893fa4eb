"""Tests for harness.probes.curl: builder, and parser on real curl outputs and synthesised ones.

Fixtures under fixtures/curl were produced by fixtures/capture.py (real /usr/bin/curl against
loopback HTTPS/HTTP servers); each ``.json`` sidecar records the exact command, exit status and
stderr.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.probes.curl import (
    CURL_EXIT_CODES,
    DEFAULT_WRITE_OUT,
    TRAILER_MARKER,
    CurlRequest,
    CurlResult,
    build_curl_command,
    exit_code_meaning,
    parse_curl,
)

FIXTURES = Path(__file__).parent / "fixtures" / "curl"


@dataclass(frozen=True)
class Capture:
    """One captured curl run: stdout, stderr, exit status and the argv that produced them."""

    name: str
    stdout: str
    stderr: str
    rc: int
    argv: tuple[str, ...]

    @property
    def write_out(self) -> str | None:
        return self.argv[self.argv.index("-w") + 1] if "-w" in self.argv else None

    @property
    def port(self) -> int | None:
        return urlsplit(self.argv[-1]).port

    def parse(self) -> CurlResult:
        return parse_curl(self.stdout, self.stderr, self.rc, write_out=self.write_out)


def load(name: str) -> Capture:
    meta = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return Capture(
        name=name,
        stdout=(FIXTURES / f"{name}.stdout").read_text(encoding="utf-8"),
        stderr=meta["stderr"],
        rc=meta["rc"],
        argv=tuple(shlex.split(meta["command"])),
    )


ALL_CAPTURES = sorted(p.stem for p in FIXTURES.glob("*.json"))
FIXTURE_LINES = sorted(
    {line for name in ALL_CAPTURES for line in load(name).stdout.splitlines() if line}
)


@dataclass(frozen=True)
class Expect:
    exit_code: int
    http_code: int | None
    ok: bool = False
    region: str | None = None
    json: object = None
    stderr: str | None = None  # prefix of stderr_message
    ssl_verify_result: int | None = 0
    connected: bool = True


EXPECTED: dict[str, Expect] = {
    "ok_200_json": Expect(0, 200, ok=True, region="us-east-1"),
    "post_with_headers": Expect(0, 200, ok=True, region="us-east-1"),
    "plain_http_200": Expect(0, 200, ok=True, region="us-east-1"),
    "tls_insecure": Expect(0, 200, ok=True, region="us-east-1", ssl_verify_result=20),
    "output_devnull": Expect(0, 200, ok=True),
    "forbidden_403": Expect(0, 403, json={"message": "Forbidden"}),
    "bad_gateway_502": Expect(0, 502, json={"message": "Internal server error"}),
    "fail_403_exit22": Expect(22, 403, stderr="curl: (22) The requested URL returned error: 403"),
    "tls_untrusted_ca": Expect(
        60,
        None,
        stderr="curl: (60) SSL certificate problem: unable to get local issuer certificate",
        ssl_verify_result=20,
    ),
    "tls_self_signed": Expect(
        60,
        None,
        stderr="curl: (60) SSL certificate problem: self-signed certificate",
        ssl_verify_result=18,
    ),
    "tls_wrong_host": Expect(
        60,
        None,
        stderr="curl: (60) SSL: no alternative certificate subject name matches target host name "
        "'wrong.regiondrill.internal'",
        ssl_verify_result=1,
    ),
    "tls_to_plain_http": Expect(35, None, stderr="curl: (35) ", ssl_verify_result=1),
    "cacert_missing": Expect(
        77,
        None,
        stderr="curl: (77) error setting certificate file: /nonexistent/",
        ssl_verify_result=1,
    ),
    "connection_refused": Expect(
        7, None, stderr="curl: (7) Failed to connect to 127.0.0.1 port", connected=False
    ),
    "timeout_https": Expect(
        28, None, stderr="curl: (28) Connection timed out after", ssl_verify_result=1
    ),
    "timeout_http": Expect(28, None, stderr="curl: (28) Operation timed out after"),
    "empty_reply": Expect(52, None, stderr="curl: (52) Empty reply from server"),
    "partial_body": Expect(18, 200, stderr="curl: (18) transfer closed with 85 bytes remaining"),
    "reset_mid_body": Expect(56, 200, stderr="curl: (56) Recv failure: Connection reset by peer"),
    "unresolvable_host": Expect(
        6, None, stderr="curl: (6) Could not resolve host: nonexistent.invalid", connected=False
    ),
}
# Captures whose stdout has no trailer, checked by their own tests below.
SPECIAL = {"no_write_out", "malformed_url"}


def test_every_fixture_has_an_expectation() -> None:
    assert ALL_CAPTURES, f"no fixtures in {FIXTURES}"
    assert set(ALL_CAPTURES) == set(EXPECTED) | SPECIAL


def test_fixtures_come_from_real_curl_without_leaving_loopback() -> None:
    for name in ALL_CAPTURES:
        meta = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
        assert meta["tool_version"].startswith("curl "), name
        argv = shlex.split(meta["command"])
        url = argv[-1]
        pinned = [argv[i + 1] for i, a in enumerate(argv) if a == "--resolve"]
        pinned_to_loopback = bool(pinned) and all(p.endswith(":127.0.0.1") for p in pinned)
        # nonexistent.invalid: looked up inside capture.py's loopback-only network namespace.
        assert (
            "//127.0.0.1:" in url
            or pinned_to_loopback
            or url == "http://nonexistent.invalid/"
            or url.startswith("http://[::1")
        ), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_captured_output(name: str) -> None:
    capture = load(name)
    expect = EXPECTED[name]

    result = capture.parse()

    assert result.exit_code == capture.rc == expect.exit_code
    assert result.exit_meaning == CURL_EXIT_CODES[expect.exit_code]
    assert result.trailer_exit_code == capture.rc
    assert result.http_code == expect.http_code
    assert result.ok is expect.ok
    assert result.region == expect.region
    if expect.json is not None:
        assert result.json == expect.json
    assert result.ssl_verify_result == expect.ssl_verify_result
    assert result.parse_error is None
    if expect.stderr is None:
        assert result.stderr_message is None
    else:
        assert result.stderr_message is not None
        assert result.stderr_message.startswith(expect.stderr)
    if expect.connected:
        assert result.remote_ip == "127.0.0.1"
        assert result.remote_port == capture.port
    else:
        assert (result.remote_ip, result.remote_port) == (None, None)
    timings = [
        result.time_namelookup,
        result.time_connect,
        result.time_appconnect,
        result.time_starttransfer,
        result.time_total,
    ]
    assert all(isinstance(t, float) and t >= 0 for t in timings)
    assert result.time_total == max(t for t in timings if t is not None)


def test_ok_body_is_the_echo_lambda_event() -> None:
    result = load("ok_200_json").parse()
    assert isinstance(result.json, dict)
    assert result.json["region"] == "us-east-1"
    assert result.json["event"]["httpMethod"] == "GET"
    assert result.json["event"]["path"] == "/demo/"
    assert result.body == load("ok_200_json").stdout.partition("\n" + TRAILER_MARKER)[0]


def test_post_headers_reach_the_server() -> None:
    event = load("post_with_headers").parse().json["event"]
    assert event["httpMethod"] == "POST"
    assert event["headers"]["x-regiondrill-probe"] == "capture"
    assert event["queryStringParameters"] == {"probe": "1"}


def test_tls_phase_timings() -> None:
    https, http = load("ok_200_json").parse(), load("plain_http_200").parse()
    assert https.time_appconnect is not None
    assert https.time_appconnect > 0
    assert http.time_appconnect == 0.0  # no TLS: curl reports 0 for a phase it never ran


@pytest.mark.parametrize(("name", "body"), [("output_devnull", ""), ("fail_403_exit22", "")])
def test_empty_body(name: str, body: str) -> None:
    result = load(name).parse()
    assert (result.body, result.json) == (body, None)


def test_partial_body_is_kept_but_not_json() -> None:
    result = load("partial_body").parse()
    assert result.body == '{"region": "us-'
    assert (result.json, result.region, result.ok) == (None, None, False)


def test_no_write_out_capture_is_just_the_body() -> None:
    capture = load("no_write_out")
    assert capture.write_out is None

    result = capture.parse()

    assert result.body == capture.stdout
    assert result.region == "us-east-1"
    assert (result.http_code, result.parse_error, result.ok) == (None, None, False)


def test_malformed_url_prints_no_trailer() -> None:
    result = load("malformed_url").parse()
    assert result.exit_code == 3
    assert result.exit_meaning == "URL malformed"
    assert result.http_code is None
    assert result.stderr_message == "curl: (3) bad range specification in URL position 9:"
    assert result.parse_error is not None
    assert "stdout is empty" in result.parse_error


# --- other curl versions and transports (synthesised from the captured layout) ------------


def _trailer(**values: str) -> str:
    defaults = {
        "http_code": "200",
        "time_namelookup": "0.000015",
        "time_connect": "0.000365",
        "time_appconnect": "0.003952",
        "time_starttransfer": "0.045670",
        "time_total": "0.045729",
        "remote_ip": "10.1.1.10",
        "remote_port": "443",
        "exitcode": "0",
        "ssl_verify_result": "0",
    }
    defaults.update(values)
    return render_trailer(DEFAULT_WRITE_OUT, defaults)


def test_curl_768_without_exitcode_variable() -> None:
    """curl 7.68 (Ubuntu 20.04) prints nothing for exitcode and warns on stderr."""
    stderr = "curl: unknown --write-out variable: 'exitcode'\n"
    ok = parse_curl('{"region": "eu-west-1"}' + _trailer(exitcode=""), stderr, 0)
    assert (ok.ok, ok.region, ok.trailer_exit_code, ok.stderr_message) == (
        True,
        "eu-west-1",
        None,
        None,
    )

    failed = parse_curl(
        _trailer(http_code="000", remote_ip="", remote_port="0", exitcode=""),
        stderr + "curl: (7) Failed to connect to 10.2.1.10 port 443: Connection timed out\n",
        7,
    )
    assert failed.stderr_message == (
        "curl: (7) Failed to connect to 10.2.1.10 port 443: Connection timed out"
    )
    assert (failed.exit_meaning, failed.remote_ip, failed.http_code) == (
        "Failed to connect to host",
        None,
        None,
    )


def test_literal_and_garbled_values_are_unknown() -> None:
    result = parse_curl(
        _trailer(exitcode="%{exitcode}", time_total="abc", remote_ip="not-an-ip"), "", 0
    )
    assert (result.trailer_exit_code, result.time_total, result.remote_ip) == (None, None, None)
    assert result.http_code == 200


def test_decimal_comma_from_old_locale_builds() -> None:
    assert parse_curl(_trailer(time_total="0,045729"), "", 0).time_total == 0.045729


def test_ipv6_remote_ip() -> None:
    assert parse_curl(_trailer(remote_ip="fd00:1:1::10"), "", 0).remote_ip == "fd00:1:1::10"


def test_body_that_mentions_the_marker_uses_the_last_trailer() -> None:
    body = f"line\n{TRAILER_MARKER} http_code=999 exitcode=5\nmore"
    result = parse_curl(body + _trailer(http_code="201"), "", 0)
    assert (result.body, result.http_code, result.trailer_exit_code) == (body, 201, 0)


def test_stderr_merged_after_trailer_still_gives_the_message() -> None:
    stdout = _trailer(http_code="000", exitcode="28") + "curl: (28) Connection timed out\n"
    result = parse_curl(stdout, "", 28)
    assert result.stderr_message == "curl: (28) Connection timed out"


def test_truncated_output_reports_missing_trailer() -> None:
    stdout = load("ok_200_json").stdout[:100]  # what an SSM output limit leaves
    result = parse_curl(stdout, "", 0)
    assert result.body == stdout
    assert (result.http_code, result.json, result.ok) == (None, None, False)
    assert result.parse_error is not None
    assert "truncated" in result.parse_error


def test_crlf_body_is_kept_verbatim() -> None:
    result = parse_curl('{"region": "us-west-2"}\r\n' + _trailer(), "", 0)
    assert result.body == '{"region": "us-west-2"}\r\n'
    assert result.region == "us-west-2"


@pytest.mark.parametrize(
    ("body", "expected_json"),
    [
        ("[1, 2]", [1, 2]),
        ('{"message": "Forbidden"}', {"message": "Forbidden"}),
        ('{"region": 5}', {"region": 5}),
        ("not json", None),
        ("{broken", None),
        ("[" * 100_000 + "]" * 100_000, None),
    ],
)
def test_json_body(body: str, expected_json: object) -> None:
    result = parse_curl(body + _trailer(), "", 0)
    assert result.json == expected_json
    assert result.region is None


def test_custom_write_out() -> None:
    write_out = "\\n__PROBE__ code=%{http_code} total=%{time_total}\\n"
    result = parse_curl("body\n__PROBE__ code=204 total=0.5\n", "", 0, write_out=write_out)
    assert (result.body, result.http_code, result.time_total, result.ok) == ("body", 204, 0.5, True)


@pytest.mark.parametrize(
    "write_out",
    [
        "%{http_code}",
        "\\n%{http_code}\\n",
        "\\nMARK code=%{http_code} total\\n",
        "\\nMARK code=%{http_code}%{time_total}\\n",
    ],
)
def test_write_out_that_is_not_a_trailer_is_rejected(write_out: str) -> None:
    with pytest.raises(ConfigError, match="write_out"):
        parse_curl("", "", 0, write_out=write_out)
    with pytest.raises(ConfigError, match="write_out"):
        build_curl_command("https://api.example.com/", write_out=write_out)


# --- exit codes ---------------------------------------------------------------------------


def test_exit_code_meanings_from_the_manual() -> None:
    assert {code: exit_code_meaning(code) for code in (0, 3, 6, 7, 22, 28, 35, 47)} == {
        0: "Success",
        3: "URL malformed",
        6: "Could not resolve host",
        7: "Failed to connect to host",
        22: "HTTP page not retrieved",
        28: "Operation timeout",
        35: "SSL connect error",
        47: "Too many redirects",
    }
    assert {code: exit_code_meaning(code) for code in (51, 52, 56, 58, 60, 77)} == {
        51: "The peer's SSL certificate or SSH md5 fingerprint was not OK",
        52: "The server did not reply anything, which here is considered an error",
        56: "Failure in receiving network data",
        58: "Problem with the local certificate",
        60: "Peer certificate cannot be authenticated with known CA certificates",
        77: "Problem reading the SSL CA cert (path? access rights?)",
    }


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (20, "exit status 20 is not defined by curl"),
        (-1, "exit status -1 is not defined by curl"),
        (126, "curl not executable (shell exit status 126)"),
        (127, "curl not found (shell exit status 127)"),
        (137, "curl killed by signal 9 (shell exit status 137)"),
    ],
)
def test_exit_codes_curl_does_not_define(code: int, meaning: str) -> None:
    assert exit_code_meaning(code) == meaning


# --- builder ------------------------------------------------------------------------------


def test_default_write_out_is_one_trailer_line() -> None:
    assert DEFAULT_WRITE_OUT.startswith("\\n" + TRAILER_MARKER + " ")
    assert DEFAULT_WRITE_OUT.endswith("\\n")
    for variable in ("http_code", "time_total", "remote_ip", "exitcode", "ssl_verify_result"):
        assert f"{variable}=%{{{variable}}}" in DEFAULT_WRITE_OUT
    assert "\n" not in DEFAULT_WRITE_OUT  # curl expands its own "\n"


def test_build_probe_command() -> None:
    command = build_curl_command(
        "https://api.regiondrill.internal/demo/",
        headers=["x-regiondrill-probe: 1"],
        max_time=5,
        connect_timeout=2.5,
        resolve=["api.regiondrill.internal:443:10.2.1.10"],
        cacert="/etc/regiondrill/ca.pem",
    )
    assert command == (
        "curl -q -s -S --noproxy '*' -H 'x-regiondrill-probe: 1' --max-time 5 "
        "--connect-timeout 2.5 --resolve api.regiondrill.internal:443:10.2.1.10 "
        f"--cacert /etc/regiondrill/ca.pem -w {shlex.quote(DEFAULT_WRITE_OUT)} "
        "https://api.regiondrill.internal/demo/"
    )


def test_build_flags_can_be_turned_off() -> None:
    argv = CurlRequest(
        url="http://127.0.0.1:8080/",
        method="HEAD",
        insecure=True,
        write_out=None,
        output="/dev/null",
        silent=False,
        show_error=False,
        noproxy=False,
    ).argv()
    assert argv == ["curl", "-q", "-X", "HEAD", "-k", "-o", "/dev/null", "http://127.0.0.1:8080/"]


def test_built_command_reaches_curl_with_exact_argv(tmp_path: Path) -> None:
    """Run the command through /bin/sh with a fake curl; shell metacharacters stay inert."""
    fake = tmp_path / "curl"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    fake.chmod(0o755)
    canary = tmp_path / "pwned"
    request = CurlRequest(
        url=f"https://api.example.com/demo/$(touch%20{canary})/`id`?q=a;b&c='d'",
        method="GET",
        headers=(
            f"X-Probe: ; rm -rf / ; $(touch {canary}) `touch {canary}` 'q' \"dq\" \\",
            "Accept: */*",
        ),
        resolve=("api.example.com:443:10.2.1.10",),
    )

    proc = subprocess.run(
        ["/bin/sh", "-c", request.command()],
        capture_output=True,
        text=True,
        env={"PATH": f"{tmp_path}:{os.defpath}"},
        check=True,
        cwd=tmp_path,
    )

    assert json.loads(proc.stdout) == request.argv()[1:]
    assert not canary.exists()


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"url": "ftp://api.example.com/"}, "'ftp://api.example.com/'"),
        ({"url": "-o/etc/passwd"}, "'-o/etc/passwd'"),
        ({"url": "https://api.example.com/a b"}, "'https://api.example.com/a b'"),
        (
            {"url": "https://api.example.com/\n; rm -rf /"},
            "'https://api.example.com/\\n; rm -rf /'",
        ),
        ({"url": "https:///path"}, "'https:///path'"),
        ({"url": "http://[::1/"}, "'http://[::1/'"),
        ({"url": "https://api.example.com:99999/"}, "'https://api.example.com:99999/'"),
        ({"url": ""}, "''"),
        ({"method": "get; rm -rf /"}, "'get; rm -rf /'"),
        ({"headers": ["X-Test: a\r\nInjected: b"]}, "'X-Test: a\\r\\nInjected: b'"),
        ({"headers": ["no colon here"]}, "'no colon here'"),
        ({"headers": ["Bad Name: x"]}, "'Bad Name: x'"),
        ({"headers": "X-Test: 1"}, "'X-Test: 1'"),
        ({"resolve": ["api.example.com:443"]}, "'api.example.com:443'"),
        ({"resolve": ["api.example.com:443:not-an-ip"]}, "'not-an-ip'"),
        ({"resolve": ["api.example.com:0:10.0.0.1"]}, "'api.example.com:0:10.0.0.1'"),
        ({"resolve": ["api.example.com:443:10.0.0.1; rm -rf /"]}, "443:10.0.0.1; rm -rf /'"),
        ({"max_time": 0}, "0"),
        ({"max_time": -1}, "-1"),
        ({"max_time": float("nan")}, "nan"),
        ({"max_time": True}, "True"),
        ({"connect_timeout": "5"}, "'5'"),
        ({"cacert": "-k"}, "'-k'"),
        ({"cacert": ""}, "''"),
        ({"output": "out\nfile"}, "'out\\nfile'"),
    ],
)
def test_invalid_values_are_rejected_naming_them(kwargs: dict, bad: str) -> None:
    kwargs = {"url": "https://api.example.com/", **kwargs}
    with pytest.raises(ConfigError) as excinfo:
        build_curl_command(**kwargs)
    assert bad in str(excinfo.value)


def test_request_is_a_frozen_value() -> None:
    request = CurlRequest(url="https://api.example.com/", headers=["A: b"])  # type: ignore[arg-type]
    assert request.headers == ("A: b",)
    with pytest.raises(AttributeError):
        request.url = "https://other.example.com/"  # type: ignore[misc]


# --- properties ---------------------------------------------------------------------------


def render_trailer(write_out: str, values: dict[str, str]) -> str:
    """Expand a trailer format the way curl does: its "\\n" escapes and %{variable}s."""
    text = write_out.replace("\\n", "\n")
    for variable, value in values.items():
        text = text.replace(f"%{{{variable}}}", value)
    return text


def _variables_as_printed(result: CurlResult) -> dict[str, str]:
    """Return what curl printed for each variable, rebuilt from a parsed result."""

    def seconds(value: float | None) -> str:
        return f"{value:.6f}" if value is not None else ""

    return {
        "http_code": f"{result.http_code:03d}" if result.http_code else "000",
        "time_namelookup": seconds(result.time_namelookup),
        "time_connect": seconds(result.time_connect),
        "time_appconnect": seconds(result.time_appconnect),
        "time_starttransfer": seconds(result.time_starttransfer),
        "time_total": seconds(result.time_total),
        "remote_ip": result.remote_ip or "",
        "remote_port": str(result.remote_port or 0),
        "exitcode": str(result.trailer_exit_code),
        "ssl_verify_result": str(result.ssl_verify_result),
    }


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_trailer_renderer_reproduces_captured_output(name: str) -> None:
    capture = load(name)
    result = capture.parse()
    rendered = result.body + render_trailer(DEFAULT_WRITE_OUT, _variables_as_printed(result))
    assert rendered == capture.stdout


seconds_text = st.integers(min_value=0, max_value=10**8).map(lambda us: f"{us / 1e6:.6f}")
bodies = st.one_of(
    st.text(),
    st.builds(
        lambda region, event: json.dumps({"region": region, "event": event}),
        st.sampled_from(["us-east-1", "us-west-2", "eu-central-1"]),
        st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4),
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    body=bodies,
    http_code=st.one_of(st.just(0), st.integers(min_value=100, max_value=599)),
    timings=st.lists(seconds_text, min_size=5, max_size=5),
    remote_ip=st.one_of(st.just(""), st.ip_addresses().map(str)),
    remote_port=st.integers(min_value=0, max_value=65535),
    exitcode=st.sampled_from(sorted(CURL_EXIT_CODES)),
    ssl_verify_result=st.integers(min_value=0, max_value=100),
)
def test_default_trailer_round_trips(
    body: str,
    http_code: int,
    timings: list[str],
    remote_ip: str,
    remote_port: int,
    exitcode: int,
    ssl_verify_result: int,
) -> None:
    values = {
        "http_code": f"{http_code:03d}",
        "time_namelookup": timings[0],
        "time_connect": timings[1],
        "time_appconnect": timings[2],
        "time_starttransfer": timings[3],
        "time_total": timings[4],
        "remote_ip": remote_ip,
        "remote_port": str(remote_port),
        "exitcode": str(exitcode),
        "ssl_verify_result": str(ssl_verify_result),
    }

    result = parse_curl(body + render_trailer(DEFAULT_WRITE_OUT, values), "", exitcode)

    assert result.body == body
    assert _variables_as_printed(result) == values
    assert result.exit_code == result.trailer_exit_code == exitcode
    assert result.parse_error is None
    parsed = json.loads(body) if body.startswith('{"region"') else None
    assert result.region == (parsed["region"] if parsed else None)
    assert result.ok is (exitcode == 0 and 200 <= http_code < 300)


@st.composite
def mutated_fixture_line(draw: st.DrawFn) -> str:
    """Draw a captured stdout line with one word or trailer value replaced by arbitrary text."""
    pieces = re.split(r"(\s+|=)", draw(st.sampled_from(FIXTURE_LINES)))
    index = draw(st.integers(min_value=0, max_value=len(pieces) - 1))
    pieces[index] = draw(st.text(max_size=12))
    return "".join(pieces)


text_with_curl_lines = st.lists(
    st.one_of(st.sampled_from(FIXTURE_LINES), mutated_fixture_line(), st.text(max_size=80)),
    max_size=20,
).map("\n".join)


@settings(max_examples=300, deadline=None)
@given(
    stdout=st.one_of(st.text(), text_with_curl_lines),
    stderr=st.one_of(st.text(), st.sampled_from([load(n).stderr for n in ALL_CAPTURES])),
    rc=st.integers(min_value=-(2**40), max_value=2**40),
)
def test_parse_curl_never_raises(stdout: str, stderr: str, rc: int) -> None:
    result = parse_curl(stdout, stderr, rc)

    assert isinstance(result, CurlResult)
    assert result.exit_code == rc
    assert result.exit_meaning
    assert stdout.startswith(result.body)
    if result.ok:
        assert rc == 0
        assert result.http_code is not None
        assert 200 <= result.http_code < 300
    if result.parse_error is not None:
        assert result.body == stdout
