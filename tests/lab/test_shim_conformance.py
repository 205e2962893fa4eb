"""The lab's dig and curl against the real tools: same servers, same options, same output.

Each case runs the real ``/usr/bin/dig`` (BIND 9.18, Debian ``bind9-dnsutils``) or
``/usr/bin/curl`` (7.88) against the loopback servers of ``lab_tool_servers`` and the lab's shim
against the same servers through their VPC addresses, then compares exit status, stdout and stderr
after normalising what legitimately differs: the loopback twin of each address (127.77.x.y for
10.77.x.y), message ids, cookies, clocks, durations and the tools' version strings.

The real tools are installed by ``.ci/run``; without them the tests skip, saying so. Only
loopback is ever contacted: every real command names its server or pins its address.
"""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import lab_tool_servers as servers
import pytest

from harness.lab.addresses import to_loopback
from harness.probes.curl import DEFAULT_WRITE_OUT

REAL_DIG = "/usr/bin/dig"
REAL_CURL = "/usr/bin/curl"
needs_dig = pytest.mark.skipif(
    shutil.which(REAL_DIG) is None, reason=f"{REAL_DIG} (Debian bind9-dnsutils) is not installed"
)
needs_curl = pytest.mark.skipif(
    shutil.which(REAL_CURL) is None, reason=f"{REAL_CURL} is not installed"
)
ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "TZ": "UTC"}


@dataclass(frozen=True)
class Run:
    rc: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.ToolWorld]:
    yield from servers.build_world(tmp_path_factory.mktemp("conformance"))


@pytest.fixture(scope="module")
def extra(world: servers.ToolWorld) -> Iterator[dict[str, int]]:
    """Misbehaving servers both tools meet: silent, refusing, stalling, cut short."""
    silent_udp = __import__("socket").socket(2, 2)
    silent_udp.bind(("127.77.0.3", 0))
    silent_tcp = __import__("socket").socket(2, 1)
    silent_tcp.bind(("127.77.0.3", silent_udp.getsockname()[1]))
    silent_tcp.listen(16)
    syn_port, held = servers.syn_drop_listener(to_loopback("10.77.1.23"))
    node = to_loopback(servers.PLAIN_NODE)
    behaviours = {
        "stall": servers.tcp_server(node, servers.stall),
        "empty": servers.tcp_server(node, servers.close_after_request),
        "partial": servers.tcp_server(node, servers.close_mid_body),
        "reset": servers.tcp_server(node, servers.reset_mid_body),
    }
    ports = {name: server.server_address[1] for name, server in behaviours.items()}
    ports.update(
        silent=silent_udp.getsockname()[1],
        closed=servers.unused_port("127.77.0.4"),
        syn=syn_port,
    )
    yield ports
    for server in behaviours.values():
        server.shutdown()
        server.server_close()
    for sock in (silent_udp, silent_tcp, *held):
        sock.close()


def run_pair(world: servers.ToolWorld, real: str, shim: str) -> tuple[Run, Run]:
    """Run the real command and the shim command at the same time (timeouts overlap)."""

    def real_run() -> Run:
        done = subprocess.run(
            ["/bin/sh", "-c", real],
            env=ENV,
            capture_output=True,
            timeout=30,
            check=False,
            cwd=world.root,
        )
        return Run(done.returncode, done.stdout.decode(), done.stderr.decode())

    def shim_run() -> Run:
        done = world.shell(shim, timeout=30)
        return Run(done.returncode, done.stdout.decode(), done.stderr.decode())

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.submit(real_run), pool.submit(shim_run)
        return first.result(), second.result()


def vpc_view(text: str) -> str:
    """Show the real tool's loopback addresses as the VPC addresses the shim uses."""
    return re.sub(r"\b127\.77\.(\d+)\.(\d+)\b", r"10.77.\1.\2", text)


def assert_same(real: Run, shim: Run, normalise: Callable[[str], str]) -> None:
    expected = Run(real.rc, normalise(vpc_view(real.stdout)), normalise(vpc_view(real.stderr)))
    got = Run(shim.rc, normalise(shim.stdout), normalise(shim.stderr))
    if got != expected:
        report = [f"exit status: real {expected.rc}, shim {got.rc}"]
        for stream in ("stdout", "stderr"):
            diff = difflib.unified_diff(
                getattr(expected, stream).splitlines(keepends=True),
                getattr(got, stream).splitlines(keepends=True),
                f"real {stream}",
                f"shim {stream}",
            )
            report.append("".join(repr(line)[1:-1] + "\n" for line in diff))
        pytest.fail("the shim differs from the real tool:\n" + "\n".join(report))


# ------------------------------------------------------------------------------------- dig


def dig_normal(text: str) -> str:
    text = re.sub(r"DiG \S+", "DiG X", text)
    text = re.sub(r"id: \d+", "id: X", text)
    text = re.sub(r"Query time: \d+ msec", "Query time: X msec", text)
    text = re.sub(r"WHEN: .*", "WHEN: X", text)
    return re.sub(r"COOKIE: [0-9a-f]{16}", "COOKIE: X", text)


DIG_CASES = {
    "a": "-q api.regiondrill.internal -t A",
    "a_tcp": "+tcp -q api.regiondrill.internal -t A",
    "aaaa": "-q v6.regiondrill.internal -t AAAA",
    "txt": "-q txt.regiondrill.internal -t TXT",
    "cname": "-q alias.regiondrill.internal -t CNAME",
    "cname_chain": "-q alias.regiondrill.internal -t A",
    "dangling_cname": "-q dangling.regiondrill.internal -t A",
    "nxdomain": "-q missing.regiondrill.internal -t A",
    "nodata": "-q api.regiondrill.internal -t AAAA",
    "servfail": "-q servfail.regiondrill.internal -t A",
    "refused": "-q outside.example.com -t A",
    "mx": "-q mx.regiondrill.internal -t MX",
    "ptr": "-x 10.77.1.20",
    "long_owner": "a-very-long-owner-name-for-column-tests.regiondrill.internal",
    "positional_type_class": "txt.regiondrill.internal TXT IN",
    "cookie": "cookie.regiondrill.internal",
    "ede": "blocked.regiondrill.internal",
}
DIG_FORMS = {
    "full": "",
    "short": "+short",
    "answer_only": "+noall +answer",
    "no_stats": "+nostats +nocmd",
}


@needs_dig
@pytest.mark.parametrize("form", list(DIG_FORMS))
@pytest.mark.parametrize("case", list(DIG_CASES))
def test_dig_answers(world: servers.ToolWorld, case: str, form: str) -> None:
    args = f"-p {world.dns.port} {DIG_FORMS[form]} {DIG_CASES[case]}"
    real, shim = run_pair(
        world,
        f"{REAL_DIG} -r @{to_loopback(servers.VPC_RESOLVER)} {args}",
        f"dig -r @{servers.VPC_RESOLVER} {args}",
    )
    assert real.rc == 0
    assert_same(real, shim, dig_normal)


@needs_dig
@pytest.mark.parametrize(
    "args",
    [
        "-p {silent} +time=1 +tries=1 -q api.regiondrill.internal -t A",
        "-p {silent} +time=1 +tries=1 +short -q api.regiondrill.internal -t A",
        "-p {silent} +time=1 +tries=2 -q api.regiondrill.internal -t A",
        "-p {silent} +tcp +time=1 +tries=1 -q api.regiondrill.internal -t A",
        "-p {silent} +tcp +time=1 +tries=1 +short -q api.regiondrill.internal -t A",
    ],
    ids=["udp_full", "udp_short", "udp_tries2", "tcp_full", "tcp_short"],
)
def test_dig_timeouts(world: servers.ToolWorld, extra: dict[str, int], args: str) -> None:
    rendered = args.format(**extra)
    real, shim = run_pair(
        world, f"{REAL_DIG} -r @127.77.0.3 {rendered}", f"dig -r @10.77.0.3 {rendered}"
    )
    assert real.rc == 9
    assert_same(real, shim, dig_normal)


@needs_dig
@pytest.mark.parametrize(
    "args",
    [
        "-p {closed} +time=1 +tries=1 -q api.regiondrill.internal -t A",
        "-p {closed} +time=1 +tries=2 +short -q api.regiondrill.internal -t A",
        "-p {closed} +tcp +time=1 +tries=1 -q api.regiondrill.internal -t A",
        "-p {closed} +tcp +time=1 +tries=2 +short api.regiondrill.internal",
    ],
    ids=["udp_full", "udp_short_tries2", "tcp_full", "tcp_short_tries2"],
)
def test_dig_refused(world: servers.ToolWorld, extra: dict[str, int], args: str) -> None:
    rendered = args.format(**extra)
    real, shim = run_pair(
        world, f"{REAL_DIG} -r @127.77.0.4 {rendered}", f"dig -r @10.77.0.4 {rendered}"
    )
    assert real.rc == 9
    assert_same(real, shim, dig_normal)


@needs_dig
@pytest.mark.parametrize("args", ["+no-such-option api.regiondrill.internal", "-v"])
def test_dig_usage_and_version(world: servers.ToolWorld, args: str) -> None:
    rendered = f"-r @{{server}} -p {world.dns.port} {args}"
    real, shim = run_pair(
        world,
        f"{REAL_DIG} {rendered.format(server=to_loopback(servers.VPC_RESOLVER))}",
        f"dig {rendered.format(server=servers.VPC_RESOLVER)}",
    )
    assert_same(real, shim, dig_normal)


# ------------------------------------------------------------------------------------- curl


WRITE_OUT_VARIABLES = (
    "http_code",
    "response_code",
    "http_version",
    "scheme",
    "method",
    "num_connects",
    "num_redirects",
    "remote_ip",
    "remote_port",
    "size_download",
    "size_header",
    "size_request",
    "size_upload",
    "ssl_verify_result",
    "exitcode",
    "errormsg",
    "content_type",
    "url_effective",
    "redirect_url",
    "time_namelookup",
    "time_connect",
    "time_appconnect",
    "time_pretransfer",
    "time_starttransfer",
    "time_total",
    "time_redirect",
    "speed_download",
    "speed_upload",
)
WRITE_OUT_ALL = "\\n" + " ".join(f"{v}=%{{{v}}}" for v in WRITE_OUT_VARIABLES) + "\\n"


def curl_normal(text: str) -> str:
    text = re.sub(r"(time_\w+=)\d+\.\d{6}", r"\1T", text)
    text = re.sub(r"(speed_\w+=)\d+", r"\1S", text)
    text = re.sub(r"after \d+ ms", "after N ms", text)
    text = re.sub(r"after \d+ milliseconds", "after N milliseconds", text)
    # When a timeout (-m or --connect-timeout) expires during the TCP connect, curl 7.88's
    # connect filter and its transfer timer race at the same instant and either one words the
    # error ("Connection timeout after N ms", "Connection timed out after N milliseconds",
    # "Failed to connect to H port P after N ms: Timeout was reached"); the exit code (28) is
    # compared as is, the wording is one event.
    text = re.sub(
        r"Connection timeout after N ms"
        r"|Connection timed out after N milliseconds"
        r"|Failed to connect to \S+ port \d+ after N ms: Timeout was reached",
        "<connect timed out after N ms>",
        text,
    )
    text = re.sub(r"OpenSSL/\d+\.\d+\.\d+", "OpenSSL/X", text)
    # The progress meter's numbers are speeds and clocks; their widths vary with them.
    text = re.sub(
        r"\r[ 0-9kM.:-]+(?=\r|\n|$)",
        lambda m: re.sub(r" +", " ", re.sub(r"\d+", "#", m.group(0))),
        text,
    )
    # How often the meter is redrawn with the same figures depends on when the bytes arrive
    # (the real curl redraws once more when a response comes in two reads): compare the
    # sequence of distinct states, not the number of redraws.
    return re.sub(r"(\r[^\r\n]*)(?:\1)+(?=\r|\n|$)", r"\1", text)


def curl_pair(
    world: servers.ToolWorld, node: str, port: int, args: str, name: str = servers.API
) -> tuple[str, str]:
    """Build real and shim command lines reaching ``node:port`` by ``name`` (pinned)."""
    ca = world.root / "pki" / "ca.pem"
    common = f"--cacert {ca} {args}"
    url_scheme = "http" if "http://" in args else "https"
    url = f"{url_scheme}://{name}:{port}/"
    real = f"{REAL_CURL} -q --resolve {name}:{port}:{to_loopback(node)} {common}".replace(
        "URL", url
    )
    shim = f"curl -q --resolve {name}:{port}:{node} {common}".replace("URL", url)
    return real, shim


def tls(world: servers.ToolWorld) -> int:
    return world.ports.lab_port(443)


CURL_TLS_CASES = {
    "ok_default_trailer": f"-s -S --noproxy '*' --max-time 5 -w '{DEFAULT_WRITE_OUT}' URLdemo/",
    "ok_all_variables": f"-s -S -w '{WRITE_OUT_ALL}' URLdemo/",
    "forbidden": f"-sS -w '{WRITE_OUT_ALL}' URLdemo/forbidden",
    "bad_gateway": f"-sS -w '{WRITE_OUT_ALL}' URLdemo/broken",
    "fail_403": f"-sS -f -w '{WRITE_OUT_ALL}' URLdemo/forbidden",
    "post_headers": "-sS -X POST -H 'x-regiondrill-probe: capture' -H 'Accept: application/json' 'URLdemo/items?probe=1'",
    "post_data": f"-sS -d a=1 -d b=two -w '{WRITE_OUT_ALL}' URLdemo/items",
    "output_devnull": f"-sS -o /dev/null -w '{DEFAULT_WRITE_OUT}' URLdemo/",
    "include": "-sS -i URLdemo/",
    "head": "-sS -I URLdemo/",
    "chunked": f"-sS -w '{WRITE_OUT_ALL}' URLdemo/chunked",
    "no_write_out": "-sS URLdemo/",
    "escapes": "-s -o /dev/null -w '%{http_code}\\t%%|\\\\n|\\r|%{bogus}|%{stderr}err%{stdout}out\\n' URLdemo/",
    "progress_meter": "-o /dev/null URLdemo/",
    "wrong_host": f"-sS -w '{WRITE_OUT_ALL}' URLdemo/",
    "cacert_missing": f"-sS --cacert /nonexistent/ca.pem -w '{WRITE_OUT_ALL}' URLdemo/",
}


@needs_curl
@pytest.mark.parametrize("case", list(CURL_TLS_CASES))
def test_curl_over_tls(world: servers.ToolWorld, case: str) -> None:
    name = "wrong.regiondrill.internal" if case == "wrong_host" else servers.API
    real, shim = run_pair(
        world, *curl_pair(world, servers.NLB_NODE, tls(world), CURL_TLS_CASES[case], name)
    )
    assert_same(real, shim, curl_normal)


@needs_curl
@pytest.mark.parametrize("insecure", [False, True], ids=["verify", "insecure"])
@pytest.mark.parametrize("server", ["self_signed", "foreign"])
def test_curl_untrusted_certificates(world: servers.ToolWorld, server: str, insecure: bool) -> None:
    port = world.self_signed_port if server == "self_signed" else world.foreign_port
    args = f"-sS {'-k ' if insecure else ''}-w '{WRITE_OUT_ALL}' URLdemo/"
    real, shim = run_pair(world, *curl_pair(world, servers.OTHER_NODE, port, args))
    assert_same(real, shim, curl_normal)


@needs_curl
@pytest.mark.parametrize(
    ("server", "args"),
    [
        ("plain", f"-sS -w '{WRITE_OUT_ALL}' http://URLdemo/"),
        ("plain_tls", f"-sS -m 5 -w '{WRITE_OUT_ALL}' URLdemo/"),
        ("closed_http", f"-sS -w '{WRITE_OUT_ALL}' http://URL"),
        ("closed_https", f"-sS -w '{WRITE_OUT_ALL}' URL"),
        ("syn", f"-sS --connect-timeout 0.5 -m 3 -w '{WRITE_OUT_ALL}' URL"),
        ("syn", f"-sS -m 0.5 -w '{WRITE_OUT_ALL}' URL"),
        ("syn", f"-sS --connect-timeout 2 -m 0.5 -w '{WRITE_OUT_ALL}' http://URL"),
        ("stall", f"-sS -m 0.5 -w '{WRITE_OUT_ALL}' URL"),
        ("stall", f"-sS --connect-timeout 0.5 -m 3 -w '{WRITE_OUT_ALL}' URL"),
        ("stall", f"-sS -m 0.5 -w '{WRITE_OUT_ALL}' http://URL"),
        ("empty", f"-sS -m 5 -w '{WRITE_OUT_ALL}' http://URL"),
        ("partial", f"-sS -m 5 -w '{WRITE_OUT_ALL}' http://URL"),
        ("reset", f"-sS -m 5 -w '{WRITE_OUT_ALL}' http://URL"),
    ],
    ids=[
        "plain_http_200",
        "tls_to_plain_http",
        "refused_http",
        "refused_https",
        "syn_drop_connect_timeout",
        "syn_drop_max_time",
        "syn_drop_max_time_first",
        "tls_stall_max_time",
        "tls_stall_connect_timeout",
        "http_stall",
        "empty_reply",
        "partial_body",
        "reset_mid_body",
    ],
)
def test_curl_failures(
    world: servers.ToolWorld, extra: dict[str, int], server: str, args: str
) -> None:
    if server in ("plain", "plain_tls"):
        node, port = servers.PLAIN_NODE, world.plain_port
    elif server == "syn":
        node, port = "10.77.1.23", extra["syn"]
    elif server.startswith("closed"):
        node, port = servers.PLAIN_NODE, servers.unused_port(to_loopback(servers.PLAIN_NODE))
    else:
        node, port = servers.PLAIN_NODE, extra[server]
    real_cmd, shim_cmd = curl_pair(world, node, port, args.replace("http://URL", "URL"))
    if "http://" in args:
        real_cmd = real_cmd.replace("https://", "http://")
        shim_cmd = shim_cmd.replace("https://", "http://")
    real, shim = run_pair(world, real_cmd, shim_cmd)
    assert real.rc != 0 or server == "plain"
    normalise = curl_normal
    if "--connect-timeout" not in args:
        # -m alone is also the connect deadline: curl's TLS filter and its transfer timer then
        # expire together and either may word the error ("SSL connection timeout" or the
        # transfer's "Connection timed out after N milliseconds", which the shim prints).
        def normalise(text: str) -> str:
            return curl_normal(
                text.replace("SSL connection timeout", "Connection timed out after N milliseconds")
            )

    assert_same(real, shim, normalise)


@needs_curl
@pytest.mark.parametrize("args", ["--no-such-option URL", "-s", "-s --max-time abc URL"])
def test_curl_usage_errors(world: servers.ToolWorld, args: str) -> None:
    real, shim = run_pair(world, *curl_pair(world, servers.NLB_NODE, tls(world), args))
    assert real.rc == 2
    assert_same(real, shim, curl_normal)
