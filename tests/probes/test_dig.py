"""Tests for harness.probes.dig: builder, and parser on real BIND 9.18 outputs and synthesised ones.

Fixtures under fixtures/dig were produced by fixtures/capture.py (real /usr/bin/dig against a
loopback DNS server); each ``.json`` sidecar records the exact command, exit status and stderr.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.probes.dig import (
    DIG_EXIT_CODES,
    NO_RESPONSE_STATUSES,
    DigQuery,
    DigResult,
    build_dig_command,
    dig_exit_code_meaning,
    parse_dig,
)

FIXTURES = Path(__file__).parent / "fixtures" / "dig"
API = "api.regiondrill.internal."
NLB = "api-nlb-0a1b2c3d4e5f6a7b.elb.us-east-1.amazonaws.com."


@dataclass(frozen=True)
class Capture:
    """One captured dig run: stdout, stderr, exit status and the argv that produced them."""

    name: str
    stdout: str
    stderr: str
    rc: int
    argv: tuple[str, ...]

    @property
    def short(self) -> bool:
        return "+short" in self.argv

    @property
    def rdtype(self) -> str:
        return self.argv[self.argv.index("-t") + 1]

    @property
    def port(self) -> int:
        return int(self.argv[self.argv.index("-p") + 1])

    def parse(self, *, with_rdtype: bool = True) -> DigResult:
        return parse_dig(
            self.stdout,
            short=self.short,
            rc=self.rc,
            rdtype=self.rdtype if with_rdtype else None,
            stderr=self.stderr,
        )


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
    status: str
    addresses: frozenset[str] = frozenset()
    others: tuple[tuple[str | None, str], ...] = ()  # (rdtype, data) of non-address answers
    ttl_min: int | None = None
    error: str | None = None  # substring of error_message


A_ADDRS = frozenset({"10.1.1.10", "10.1.2.10"})
NLB_ADDRS = frozenset({"10.1.1.20", "10.1.2.20"})
V6_ADDRS = frozenset({"fd00:1:1::10", "fd00:1:2::10"})
TXT_DATA = (
    ("TXT", '"region=us-east-1"'),
    ("TXT", '"owner=regiondrill probe" "second string"'),
    ("TXT", '"quote\\"inside"'),
)

EXPECTED: dict[str, Expect] = {
    "a_full": Expect("NOERROR", A_ADDRS, ttl_min=60),
    "a_tcp_full": Expect("NOERROR", A_ADDRS, ttl_min=60),
    "aaaa_full": Expect("NOERROR", V6_ADDRS, ttl_min=60),
    "txt_full": Expect("NOERROR", others=TXT_DATA, ttl_min=300),
    "cname_full": Expect("NOERROR", others=(("CNAME", NLB),), ttl_min=300),
    "cname_chain_full": Expect("NOERROR", NLB_ADDRS, others=(("CNAME", NLB),), ttl_min=60),
    "dangling_cname_full": Expect(
        "NXDOMAIN", others=(("CNAME", "gone.regiondrill.internal."),), ttl_min=300
    ),
    "nxdomain_full": Expect("NXDOMAIN"),
    "nodata_full": Expect("NOERROR"),
    "servfail_full": Expect("SERVFAIL"),
    "refused_full": Expect("REFUSED"),
    "timeout_full": Expect("TIMEOUT", error="timed out"),
    "timeout_tcp_full": Expect("TIMEOUT", error="timed out"),
    "port_closed_full": Expect("ERROR", error="connection refused"),
    "port_closed_tcp_full": Expect("ERROR", error="connection refused"),
    "a_short": Expect("NOERROR", A_ADDRS),
    "a_tcp_short": Expect("NOERROR", A_ADDRS),
    "aaaa_short": Expect("NOERROR", V6_ADDRS),
    "txt_short": Expect("NOERROR", others=TXT_DATA),
    "cname_short": Expect("NOERROR", others=(("CNAME", NLB),)),
    "cname_chain_short": Expect("NOERROR", NLB_ADDRS, others=(("CNAME", NLB),)),
    # +short prints the CNAME but not the NXDOMAIN that follows it: the code stays unknown.
    "dangling_cname_short": Expect("UNKNOWN", others=(("CNAME", "gone.regiondrill.internal."),)),
    "nxdomain_short": Expect("UNKNOWN"),
    "nodata_short": Expect("UNKNOWN"),
    "servfail_short": Expect("UNKNOWN"),
    "refused_short": Expect("UNKNOWN"),
    "timeout_short": Expect("TIMEOUT", error="timed out"),
    "timeout_tcp_short": Expect("TIMEOUT", error="timed out"),
    "timeout_tries2_short": Expect("TIMEOUT", error="communications error to 127.0.0.1#"),
    "port_closed_short": Expect("ERROR", error="connection refused"),
    "port_closed_tcp_short": Expect("ERROR", error="connection refused"),
    "usage_error": Expect("ERROR", error="Usage error: Invalid option: +no-such-option"),
}


def test_every_fixture_has_an_expectation() -> None:
    assert ALL_CAPTURES, f"no fixtures in {FIXTURES}"
    assert set(ALL_CAPTURES) == set(EXPECTED)


def test_fixtures_come_from_real_dig_on_loopback() -> None:
    for name in ALL_CAPTURES:
        meta = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
        assert meta["tool_version"].startswith("DiG 9.18"), name
        assert "@127.0.0.1" in shlex.split(meta["command"]), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_captured_output(name: str) -> None:
    capture = load(name)
    expect = EXPECTED[name]

    result = capture.parse()

    assert result.status == expect.status
    assert result.rc == capture.rc
    assert sorted(result.addresses) == sorted(expect.addresses)
    others = tuple((r.rdtype, r.data) for r in result.answers if r.rdtype not in ("A", "AAAA"))
    assert sorted(others, key=str) == sorted(expect.others, key=str)
    assert result.ttl_min == expect.ttl_min
    assert result.responded is (expect.status not in NO_RESPONSE_STATUSES)
    if expect.error is None:
        assert result.error_message is None
    else:
        assert result.error_message is not None
        assert expect.error in result.error_message


@pytest.mark.parametrize("name", [n for n in sorted(EXPECTED) if n.endswith("_full")])
def test_full_output_metadata(name: str) -> None:
    capture = load(name)
    result = capture.parse()
    if not result.responded:
        assert (result.server, result.query_time_ms, result.flags) == (None, None, ())
        return
    transport = "TCP" if "+tcp" in capture.argv else "UDP"
    assert result.server == f"127.0.0.1#{capture.port}(127.0.0.1) ({transport})"
    printed = re.search(r"Query time: (\d+) msec", capture.stdout)
    assert printed is not None
    assert result.query_time_ms == float(printed.group(1))
    expected_flags = ("qr", "rd") if name.startswith("refused") else ("qr", "rd", "ra")
    assert result.flags == expected_flags
    for record in result.answers:
        assert record.rclass == "IN"
        assert record.name is not None
        assert record.name.endswith(".regiondrill.internal.") or record.name == NLB


def test_full_answers_keep_names_ttls_and_order() -> None:
    result = load("cname_chain_full").parse()

    assert [(r.name, r.ttl, r.rdtype) for r in result.answers] == [
        ("alias.regiondrill.internal.", 300, "CNAME"),
        (NLB, 60, "A"),
        (NLB, 60, "A"),
    ]
    raw = load("cname_chain_full").stdout
    assert list(result.addresses) == sorted(result.addresses, key=raw.index)


def test_short_addresses_keep_printed_order() -> None:
    capture = load("a_short")
    assert list(capture.parse().addresses) == capture.stdout.split()


def test_refused_keeps_dig_warning() -> None:
    result = load("refused_full").parse()
    assert "WARNING: recursion requested but not available" in result.messages
    # Lines printed on every run are not diagnostics.
    assert not any(m.startswith(("global options", "WHEN", "MSG SIZE")) for m in result.messages)


@pytest.mark.parametrize(
    ("full", "short"),
    [
        ("a_full", "a_short"),
        ("aaaa_full", "aaaa_short"),
        ("txt_full", "txt_short"),
        ("cname_full", "cname_short"),
        ("cname_chain_full", "cname_chain_short"),
        ("dangling_cname_full", "dangling_cname_short"),
    ],
)
def test_short_and_full_agree_on_answer_data(full: str, short: str) -> None:
    full_result, short_result = load(full).parse(), load(short).parse()

    # Separate queries: the server may rotate records, so compare as multisets.
    assert sorted(r.data for r in full_result.answers) == sorted(
        r.data for r in short_result.answers
    )
    assert sorted((r.rdtype, r.data) for r in full_result.answers) == sorted(
        (r.rdtype, r.data) for r in short_result.answers
    )


def test_short_cannot_tell_nxdomain_from_nodata_and_says_so() -> None:
    nxdomain, nodata = load("nxdomain_short").parse(), load("nodata_short").parse()
    assert nxdomain == nodata
    assert nxdomain.status == "UNKNOWN"
    assert nxdomain.responded


def test_short_without_rdtype_infers_cname_before_addresses() -> None:
    result = load("cname_chain_short").parse(with_rdtype=False)
    assert result.status == "NOERROR"
    assert [r.rdtype for r in result.answers] == ["CNAME", "A", "A"]
    # A lone name may be a CNAME to nowhere or NS/PTR data: without the query type, unknown.
    lone = load("cname_short").parse(with_rdtype=False)
    assert (lone.status, lone.answers[0].rdtype) == ("UNKNOWN", None)


def test_timeout_counts_tries_once_in_message() -> None:
    result = load("timeout_tries2_short").parse()
    assert load("timeout_tries2_short").stdout.count("timed out") == 2
    assert result.error_message is not None
    assert result.error_message.count("timed out") == 1
    assert result.error_message.endswith("no servers could be reached")


# --- outputs in other versions' layouts (hand-written from public dig 9.16 outputs) ----------

DIG_916_ANSWER = """
; <<>> DiG 9.16.1-Ubuntu <<>> @10.1.0.2 api.regiondrill.internal
; (1 server found)
;; global options: +cmd
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 2315
;; flags: qr rd ra; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 4096
;; QUESTION SECTION:
;api.regiondrill.internal.\tIN\tA

;; ANSWER SECTION:
api.regiondrill.internal. 60\tIN\tA\t10.1.1.10

;; Query time: 3 msec
;; SERVER: 10.1.0.2#53(10.1.0.2)
;; WHEN: Sat Apr 24 03:10:14 UTC 2021
;; MSG SIZE  rcvd: 69
"""

DIG_916_TIMEOUT = """
; <<>> DiG 9.16.1-Ubuntu <<>> @10.1.0.2 api.regiondrill.internal
; (1 server found)
;; global options: +cmd
;; connection timed out; no servers could be reached
"""


def test_parse_916_layout_without_transport_suffix() -> None:
    result = parse_dig(DIG_916_ANSWER, short=False, rc=0)
    assert (result.status, result.addresses, result.ttl_min) == ("NOERROR", ("10.1.1.10",), 60)
    assert result.server == "10.1.0.2#53(10.1.0.2)"
    assert result.query_time_ms == 3.0


@pytest.mark.parametrize(
    ("text", "short"),
    [
        (DIG_916_TIMEOUT, False),
        (";; connection timed out; no servers could be reached\n", True),
    ],
)
def test_parse_916_timeout(text: str, short: bool) -> None:
    result = parse_dig(text, short=short, rc=9)
    assert result.status == "TIMEOUT"
    assert result.error_message == "connection timed out; no servers could be reached"


def test_retry_then_answer_keeps_status_and_notes_the_timeout() -> None:
    capture = load("a_full")
    text = ";; communications error to 10.1.0.2#53: timed out\n" + capture.stdout

    result = parse_dig(text, short=False, rc=0)

    assert (result.status, result.error_message) == ("NOERROR", None)
    assert "communications error to 10.1.0.2#53: timed out" in result.messages


def test_crlf_output_parses_like_lf() -> None:
    capture = load("cname_chain_full")
    crlf = capture.stdout.replace("\n", "\r\n")
    assert parse_dig(crlf, short=False, rc=0) == parse_dig(capture.stdout, short=False, rc=0)


def test_second_response_in_output_is_ignored() -> None:
    first, second = load("nxdomain_full").stdout, load("a_full").stdout
    result = parse_dig(first + second, short=False, rc=0)
    assert (result.status, result.answers) == ("NXDOMAIN", ())


def test_usec_query_time() -> None:
    text = re.sub(r";; Query time: \d+ msec", ";; Query time: 1520 usec", load("a_full").stdout)
    assert parse_dig(text, short=False, rc=0).query_time_ms == pytest.approx(1.52)


@pytest.mark.parametrize(
    ("output", "short", "rc", "expected"),
    [
        ("", False, 0, "printed no ->>HEADER<<- line"),
        ("", False, None, "no DNS response"),
        ("", True, None, "cannot tell a reply from none"),
        ("", True, 10, "dig exit 10: Internal error"),
        ("", False, 8, "dig exit 8: Couldn't open batch file"),
        ("garbage\n", False, 9, "dig exit 9: No reply from server"),
    ],
)
def test_failures_without_diagnostics_name_the_exit_code(
    output: str, short: bool, rc: int | None, expected: str
) -> None:
    result = parse_dig(output, short=short, rc=rc)
    assert result.status == "ERROR"
    assert result.error_message is not None
    assert expected in result.error_message


def test_exit_code_table() -> None:
    assert DIG_EXIT_CODES == {
        0: "DNS response received, including NXDOMAIN status",
        1: "Usage error",
        8: "Couldn't open batch file",
        9: "No reply from server",
        10: "Internal error",
    }
    assert dig_exit_code_meaning(9) == "No reply from server"
    assert dig_exit_code_meaning(127) == "dig not found (shell exit status 127)"
    assert dig_exit_code_meaning(137) == "dig killed by signal 9 (shell exit status 137)"
    assert dig_exit_code_meaning(4) == "exit status 4 is not defined by dig"


# --- builder ------------------------------------------------------------------------------


def test_build_full_command() -> None:
    command = build_dig_command(
        "api.regiondrill.internal",
        rdtype="aaaa",
        server="10.1.0.2",
        port=53,
        tcp=True,
        time=2,
        tries=1,
    )
    assert command == (
        "dig -r @10.1.0.2 -p 53 +tcp +time=2 +tries=1 -q api.regiondrill.internal -t AAAA"
    )


def test_build_minimal_short_command() -> None:
    assert build_dig_command("api.example.com.", short=True) == (
        "dig -r +short -q api.example.com. -t A"
    )


def test_name_that_looks_like_a_type_stays_a_name() -> None:
    assert DigQuery(name="A", rdtype="TXT").argv()[-4:] == ["-q", "A", "-t", "TXT"]


def test_built_command_reaches_dig_with_exact_argv(tmp_path: Path) -> None:
    """Run the command through /bin/sh with a fake dig that reports the argv it received."""
    fake = tmp_path / "dig"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    fake.chmod(0o755)
    query = DigQuery(
        name="_probe-1.api.regiondrill.internal", rdtype="TXT", server="::1", port=5353
    )

    proc = subprocess.run(
        ["/bin/sh", "-c", query.command()],
        capture_output=True,
        text=True,
        env={"PATH": f"{tmp_path}:{os.defpath}"},
        check=True,
    )

    assert json.loads(proc.stdout) == query.argv()[1:]


HOSTILE_NAMES = [
    "; rm -rf /",
    "api.example.com; rm -rf /",
    "$(reboot)",
    "`id`",
    "-x",
    "+short",
    "@10.0.0.1",
    "name with space",
    "api.example.com\n",
    "a\nb",
    "",
    "a..b",
    "-leading.example.com",
    "trailing-.example.com",
    "x" * 64 + ".com",
    ".".join(["abcdefghi"] * 26),
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_or_invalid_name_is_rejected_naming_it(name: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        build_dig_command(name)
    assert repr(name) in str(excinfo.value)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"rdtype": "A; rm -rf /"}, "'A; rm -rf /'"),
        ({"rdtype": "BOGUS"}, "'BOGUS'"),
        ({"rdtype": ""}, "''"),
        ({"server": "127.0.0.1; rm -rf /"}, "'127.0.0.1; rm -rf /'"),
        ({"server": "-p"}, "'-p'"),
        ({"server": ""}, "''"),
        ({"port": 0}, "0"),
        ({"port": 65536}, "65536"),
        ({"port": True}, "True"),
        ({"port": "53"}, "'53'"),
        ({"time": 0}, "0"),
        ({"tries": -1}, "-1"),
        ({"time": 1.5}, "1.5"),
    ],
)
def test_invalid_options_are_rejected_naming_the_value(kwargs: dict, bad: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        build_dig_command("api.regiondrill.internal", **kwargs)
    assert bad in str(excinfo.value)


def test_query_is_a_frozen_value() -> None:
    query = DigQuery(name="api.regiondrill.internal")
    with pytest.raises(AttributeError):
        query.name = "other"  # type: ignore[misc]
    assert query == DigQuery(name="api.regiondrill.internal", rdtype="a")


# --- properties ---------------------------------------------------------------------------


@st.composite
def mutated_fixture_line(draw: st.DrawFn) -> str:
    """Draw a captured stdout line with one word replaced by arbitrary text."""
    pieces = re.split(r"(\s+|[:,;=#()])", draw(st.sampled_from(FIXTURE_LINES)))
    index = draw(st.integers(min_value=0, max_value=len(pieces) - 1))
    pieces[index] = draw(
        st.one_of(st.text(max_size=12), st.from_regex(r"[0-9]{1,12}", fullmatch=True))
    )
    return "".join(pieces)


text_with_dig_lines = st.lists(
    st.one_of(st.sampled_from(FIXTURE_LINES), mutated_fixture_line(), st.text(max_size=80)),
    max_size=30,
).map("\n".join)
any_rc = st.one_of(st.none(), st.integers(min_value=-(2**40), max_value=2**40))
any_rdtype = st.one_of(st.none(), st.sampled_from(["A", "AAAA", "TXT", "CNAME", "NS"]), st.text())


@settings(max_examples=300, deadline=None)
@given(
    output=st.one_of(st.text(), text_with_dig_lines),
    short=st.booleans(),
    rc=any_rc,
    rdtype=any_rdtype,
    stderr=st.text(max_size=200),
)
def test_parse_dig_never_raises(
    output: str, short: bool, rc: int | None, rdtype: str | None, stderr: str
) -> None:
    result = parse_dig(output, short=short, rc=rc, rdtype=rdtype, stderr=stderr)

    assert isinstance(result, DigResult)
    assert result.status
    assert result.rc == rc
    if short and rc not in (None, 0):
        assert result.status in NO_RESPONSE_STATUSES
    if result.status in NO_RESPONSE_STATUSES:
        assert result.error_message
        assert result.answers == ()
    assert set(result.addresses) <= {r.data for r in result.answers}


# A renderer of dig 9.18's full output, in the layout of the captured fixtures. Its record lines
# are checked against every captured ANSWER line below, so round-trips test the real format.
def _pad(text: str, stop: int) -> str:
    column = len(text.expandtabs())
    if column >= stop:
        return text + " "
    while column < stop:
        text += "\t"
        column = (column // 8 + 1) * 8
    return text


def render_record(name: str, ttl: int, rclass: str, rdtype: str, data: str) -> str:
    line = name
    for value, stop in ((str(ttl), 24), (rclass, 32), (rdtype, 40)):
        line = _pad(line, stop) + value
    return _pad(line, 48) + data


def render_full(
    *,
    qname: str,
    qtype: str,
    status: str,
    flags: tuple[str, ...],
    answers: list[tuple[str, int, str, str, str]],
    query_time: int,
    server: str,
) -> str:
    lines = [
        "",
        f"; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> -r @10.1.0.2 -q {qname} -t {qtype}",
        "; (1 server found)",
        ";; global options: +cmd",
        ";; Got answer:",
        f";; ->>HEADER<<- opcode: QUERY, status: {status}, id: 4242",
        f";; flags: {' '.join(flags)}; QUERY: 1, ANSWER: {len(answers)}, AUTHORITY: 0, "
        "ADDITIONAL: 1",
        "",
        ";; OPT PSEUDOSECTION:",
        "; EDNS: version: 0, flags:; udp: 1232",
        ";; QUESTION SECTION:",
        _pad(_pad(f";{qname}", 32) + "IN", 40) + qtype,
        "",
    ]
    if answers:
        lines += [";; ANSWER SECTION:", *(render_record(*a) for a in answers), ""]
    lines += [
        f";; Query time: {query_time} msec",
        f";; SERVER: {server}",
        ";; WHEN: Thu Nov 26 10:11:26 UTC 2026",
        ";; MSG SIZE  rcvd: 85",
        "",
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", [n for n in ALL_CAPTURES if n.endswith("_full")])
def test_renderer_reproduces_captured_answer_lines(name: str) -> None:
    capture = load(name)
    result = capture.parse()
    rendered = [
        render_record(r.name or "", r.ttl or 0, r.rclass or "", r.rdtype or "", r.data)
        for r in result.answers
    ]
    section = capture.stdout.partition(";; ANSWER SECTION:\n")[2].partition("\n\n")[0]
    assert rendered == (section.splitlines() if section else [])


label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
dns_names = st.lists(label, min_size=1, max_size=4).map(lambda ls: ".".join(ls) + ".internal.")
ttls = st.integers(min_value=0, max_value=2**31 - 1)
txt_strings = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=30
)


def _txt(strings: list[str]) -> str:
    return " ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in strings)


@st.composite
def answer_sets(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, int, str, str, str]]]:
    """Draw (qname, qtype, answers): a CNAME chain, then records of the queried type."""
    qtype = draw(st.sampled_from(["A", "AAAA", "TXT"]))
    owner = draw(dns_names)
    qname = owner
    answers = []
    for target in draw(st.lists(dns_names, max_size=3)):
        answers.append((owner, draw(ttls), "IN", "CNAME", target))
        owner = target
    data = {
        "A": st.ip_addresses(v=4).map(str),
        "AAAA": st.ip_addresses(v=6).map(str),
        "TXT": st.lists(txt_strings, min_size=1, max_size=3).map(_txt),
    }[qtype]
    final_ttl = draw(ttls)
    for datum in draw(st.lists(data, max_size=4)):
        answers.append((owner, final_ttl, "IN", qtype, datum))
    return qname, qtype, answers


flag_sets = st.sets(st.sampled_from(["qr", "aa", "tc", "rd", "ra", "ad", "cd"])).map(
    lambda s: tuple(f for f in ("qr", "aa", "tc", "rd", "ra", "ad", "cd") if f in s)
)


@settings(max_examples=200, deadline=None)
@given(
    answer_set=answer_sets(),
    status=st.sampled_from(["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "NOTIMP", "FORMERR"]),
    flags=flag_sets,
    query_time=st.integers(min_value=0, max_value=10**6),
    server=st.sampled_from(["10.1.0.2#53(10.1.0.2) (UDP)", "10.2.0.2#53(10.2.0.2) (TCP)"]),
)
def test_full_output_round_trips(
    answer_set: tuple[str, str, list[tuple[str, int, str, str, str]]],
    status: str,
    flags: tuple[str, ...],
    query_time: int,
    server: str,
) -> None:
    qname, qtype, answers = answer_set
    text = render_full(
        qname=qname,
        qtype=qtype,
        status=status,
        flags=flags,
        answers=answers,
        query_time=query_time,
        server=server,
    )

    result = parse_dig(text, short=False, rc=0)

    assert result.status == status
    assert [(r.name, r.ttl, r.rclass, r.rdtype, r.data) for r in result.answers] == answers
    assert result.flags == flags
    assert result.query_time_ms == float(query_time)
    assert result.server == server
    assert result.addresses == tuple(a[4] for a in answers if a[3] in ("A", "AAAA"))
    assert result.ttl_min == (min(a[1] for a in answers) if answers else None)


@settings(max_examples=200, deadline=None)
@given(answer_set=answer_sets())
def test_short_output_round_trips(
    answer_set: tuple[str, str, list[tuple[str, int, str, str, str]]],
) -> None:
    _, qtype, answers = answer_set
    text = "".join(f"{a[4]}\n" for a in answers)

    result = parse_dig(text, short=True, rc=0, rdtype=qtype)

    assert [(r.rdtype, r.data) for r in result.answers] == [(a[3], a[4]) for a in answers]
    has_final = any(a[3] == qtype for a in answers)
    assert result.status == ("NOERROR" if has_final else "UNKNOWN")
    for address in result.addresses:
        ipaddress.ip_address(address)
