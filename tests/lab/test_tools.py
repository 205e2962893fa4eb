"""dig and curl as a bastion runs them: through the bash shims, the tool server and real sockets.

The servers (``lab_tool_servers``) stand for a VPC resolver at 10.77.0.2 and an NLB node at
10.77.1.20, served on their 127.77.x.y twins; the "bastion" is 10.77.1.8. Each test runs the
shim in a real bash, so argv, the working directory, stdout/stderr and the exit status all cross
the shim protocol. The harness's own parsers (``harness.probes``) must read what comes out.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import lab_tool_servers as servers
import pytest

from harness.lab.addresses import PortMap, to_loopback
from harness.lab.tools import (
    Cancel,
    HostView,
    Invocation,
    ToolServer,
    render_shim,
    run_curl,
    run_dig,
)
from harness.probes.curl import build_curl_command, parse_curl
from harness.probes.dig import build_dig_command, parse_dig

API_URL = f"https://{servers.API}/demo/"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.ToolWorld]:
    yield from servers.build_world(tmp_path_factory.mktemp("tools"))


@pytest.fixture(autouse=True)
def _open_network(world: servers.ToolWorld) -> Iterator[None]:
    world.reachable.clear()
    yield
    world.reachable.clear()


def sh(world: servers.ToolWorld, command: str) -> tuple[int, str, str]:
    done = world.shell(command)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


# ------------------------------------------------------------------------------------- dig


def test_dig_asks_the_vpc_resolver_from_the_bastion_address(world: servers.ToolWorld) -> None:
    before = len(world.dns.peers)
    rc, out, err = sh(world, f"dig {servers.API}")
    assert (rc, err) == (0, "")
    assert world.dns.peers[before:] == [to_loopback(servers.BASTION)]
    assert ";; SERVER: 10.77.0.2#53(10.77.0.2) (UDP)" in out
    assert "; (1 server found)" not in out  # only printed for an explicit @server
    answer = out.split(";; ANSWER SECTION:\n", 1)[1].split("\n\n", 1)[0]
    # BIND's columns: the 25-character owner pushes the TTL to one space, then tab stops.
    assert answer.splitlines() == [
        f"{servers.API}. 60\tIN\tA\t10.77.1.20",
        f"{servers.API}. 60\tIN\tA\t10.77.2.20",
    ]
    result = parse_dig(out, short=False, rc=rc)
    assert result.status == "NOERROR"
    assert result.addresses == ("10.77.1.20", "10.77.2.20")
    assert result.server == "10.77.0.2#53(10.77.0.2) (UDP)"
    assert result.ttl_min == 60


def test_dig_full_output_has_bind_918_layout(world: servers.ToolWorld) -> None:
    rc, out, _ = sh(world, "dig -r -q missing.regiondrill.internal -t A")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == ""
    assert re.fullmatch(
        r"; <<>> DiG 9\.18\.\S+ <<>> -r -q missing\.regiondrill\.internal -t A", lines[1]
    )
    assert lines[2:4] == [";; global options: +cmd", ";; Got answer:"]
    assert re.fullmatch(r";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: \d+", lines[4])
    assert lines[5] == ";; flags: qr rd ra; QUERY: 1, ANSWER: 0, AUTHORITY: 1, ADDITIONAL: 1"
    assert lines[6:9] == ["", ";; OPT PSEUDOSECTION:", "; EDNS: version: 0, flags:; udp: 8192"]
    assert lines[9:12] == [";; QUESTION SECTION:", ";missing.regiondrill.internal.\tIN\tA", ""]
    assert lines[12] == ";; AUTHORITY SECTION:"
    assert lines[13].startswith("regiondrill.internal.\t300\tIN\tSOA\tns1.regiondrill.internal. ")
    assert re.fullmatch(r";; Query time: \d+ msec", lines[15])
    assert re.fullmatch(r";; WHEN: \w{3} \w{3} \d\d \d\d:\d\d:\d\d UTC \d{4}", lines[17])
    assert re.fullmatch(r";; MSG SIZE  rcvd: \d+", lines[18])
    assert out.endswith("\n\n")
    assert parse_dig(out, short=False, rc=rc).status == "NXDOMAIN"


def test_dig_short_follows_the_answer_in_wire_order(world: servers.ToolWorld) -> None:
    rc, out, _ = sh(world, "dig +short alias.regiondrill.internal")
    assert rc == 0
    assert out == f"{servers.NLB_NAME}.\n10.77.1.20\n10.77.2.20\n"
    parsed = parse_dig(out, short=True, rc=rc, rdtype="A")
    assert parsed.addresses == ("10.77.1.20", "10.77.2.20")
    assert parsed.answers[0].rdtype == "CNAME"


@pytest.mark.parametrize(
    ("query", "expected_status"),
    [
        ({"name": servers.API}, "NOERROR"),
        ({"name": servers.API, "tcp": True}, "NOERROR"),
        ({"name": "missing.regiondrill.internal"}, "NXDOMAIN"),
        ({"name": "servfail.regiondrill.internal"}, "SERVFAIL"),
        ({"name": "outside.example.com"}, "REFUSED"),
        ({"name": "v6.regiondrill.internal", "rdtype": "AAAA"}, "NOERROR"),
        ({"name": "txt.regiondrill.internal", "rdtype": "TXT"}, "NOERROR"),
    ],
)
def test_harness_dig_commands_parse(
    world: servers.ToolWorld, query: dict, expected_status: str
) -> None:
    command = build_dig_command(**query)
    rc, out, err = sh(world, command)
    result = parse_dig(out, short=False, rc=rc, stderr=err)
    assert result.status == expected_status, out
    transport = "TCP" if query.get("tcp") else "UDP"
    assert result.server == f"10.77.0.2#53(10.77.0.2) ({transport})"
    short = sh(world, build_dig_command(**query, short=True))
    parsed = parse_dig(short[1], short=True, rc=short[0], rdtype=query.get("rdtype", "A"))
    assert parsed.responded
    full_data = tuple(r.data for r in result.answers)
    assert tuple(r.data for r in parsed.answers) == (
        full_data if expected_status == "NOERROR" else ()
    )


def test_dig_at_a_silent_server_times_out_per_try(world: servers.ToolWorld) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.77.0.3", 0))
    port = silent.getsockname()[1]
    try:
        started = time.monotonic()
        rc, out, _ = sh(world, f"dig @10.77.0.3 -p {port} +time=1 +tries=2 +short {servers.API}")
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert rc == 9
    assert out == (
        f";; communications error to 10.77.0.3#{port}: timed out\n" * 2
        + ";; no servers could be reached\n"
    )
    assert 1.9 < elapsed < 4
    assert parse_dig(out, short=True, rc=rc).status == "TIMEOUT"


def test_dig_outside_the_vpc_is_dropped_and_the_bastion_loopback_refuses(
    world: servers.ToolWorld,
) -> None:
    started = time.monotonic()
    rc, out, _ = sh(world, "dig @192.0.2.1 +time=1 +tries=1 x.example")  # TEST-NET: never sent
    assert rc == 9
    assert 0.9 < time.monotonic() - started < 3
    assert out.startswith(";; communications error to 192.0.2.1#53: timed out\n\n; <<>> DiG ")
    assert out.endswith(
        "; (1 server found)\n;; global options: +cmd\n;; no servers could be reached\n"
    )
    rc, out, _ = sh(world, "dig +tcp @127.0.0.1 +time=1 +tries=1 x.example")
    assert rc == 9
    assert out == (
        ";; Connection to 127.0.0.1#53(127.0.0.1) for x.example failed: connection refused.\n"
        ";; no servers could be reached\n"
    )
    assert parse_dig(out, short=False, rc=rc).status == "ERROR"


def test_dig_prints_cookie_and_ede_options(world: servers.ToolWorld) -> None:
    rc, out, _ = sh(world, "dig cookie.regiondrill.internal")
    assert rc == 0
    cookie = re.search(
        r"^; COOKIE: ([0-9a-f]{16})000102030405060708090a0b0c0d0e0f \(good\)$", out, re.M
    )
    assert cookie is not None
    rc, out, _ = sh(world, "dig blocked.regiondrill.internal")
    assert "; EDE: 18 (Prohibited)\n" in out
    assert "status: REFUSED" in out


def test_dig_options_select_sections(world: servers.ToolWorld) -> None:
    rc, out, _ = sh(
        world, "dig a-very-long-owner-name-for-column-tests.regiondrill.internal +noall +answer"
    )
    assert (rc, out) == (
        0,
        "a-very-long-owner-name-for-column-tests.regiondrill.internal. 60 IN A 10.77.1.20\n",
    )
    rc, out, _ = sh(world, "dig -x 10.77.1.20 +short")
    assert (rc, out) == (0, f"{servers.NLB_NAME}.\n")
    rc, out, _ = sh(world, "dig mx.regiondrill.internal MX +short")
    assert out == "10 mail.regiondrill.internal.\n"


def test_dig_rejects_bad_and_unsupported_options(world: servers.ToolWorld) -> None:
    rc, out, err = sh(world, f"dig -r +no-such-option -q {servers.API} -t A")
    assert (rc, out) == (1, "")
    assert err.startswith("Invalid option: +no-such-option\nUsage:  dig [@global-server]")
    parsed = parse_dig(out, short=False, rc=rc, stderr=err)
    assert parsed.status == "ERROR"
    rc, out, err = sh(world, f"dig +trace {servers.API}")
    assert rc == 1
    assert err == "dig: dig option +trace is not supported by the regiondrill lab's dig\n"


# ------------------------------------------------------------------------------------- curl


def test_curl_reaches_the_api_by_name_through_the_vpc_resolver(world: servers.ToolWorld) -> None:
    command = build_curl_command(API_URL, max_time=5)
    rc, out, err = sh(world, command)
    result = parse_curl(out, err, rc)
    assert (rc, err) == (0, "")
    assert result.ok
    assert result.http_code == 200
    assert result.region == "us-east-1"
    assert result.remote_ip == "10.77.1.20"
    assert result.remote_port == 443
    assert result.ssl_verify_result == 0
    assert result.trailer_exit_code == 0
    assert result.json["event"]["headers"] == {
        "Host": servers.API,
        "User-Agent": "curl/7.88.1",
        "Accept": "*/*",
    }
    assert 0 < result.time_namelookup <= result.time_connect <= result.time_appconnect
    assert result.time_appconnect <= result.time_starttransfer <= result.time_total


def test_curl_connects_from_the_bastion_address(world: servers.ToolWorld) -> None:
    rc, out, _ = sh(world, f"curl -sS {API_URL}whoami")
    assert rc == 0
    assert json.loads(out) == {"sourceIp": to_loopback(servers.BASTION)}


def test_curl_resolve_overrides_the_resolver(world: servers.ToolWorld) -> None:
    before = len(world.dns.peers)
    command = build_curl_command(
        f"https://pinned.example.com:{world.ports.lab_port(443)}/demo/",
        resolve=[f"pinned.example.com:{world.ports.lab_port(443)}:{servers.NLB_NODE}"],
        insecure=True,
    )
    rc, out, err = sh(world, command)
    result = parse_curl(out, err, rc)
    assert result.http_code == 200
    assert result.remote_ip == servers.NLB_NODE
    assert len(world.dns.peers) == before  # no lookup happened


def test_curl_unresolvable_host_exits_6(world: servers.ToolWorld) -> None:
    rc, out, err = sh(
        world, build_curl_command("https://nope.regiondrill.internal/demo/", max_time=5)
    )
    assert rc == 6
    assert err == "curl: (6) Could not resolve host: nope.regiondrill.internal\n"
    result = parse_curl(out, err, rc)
    assert result.http_code is None
    assert result.remote_ip is None
    assert result.stderr_message == "curl: (6) Could not resolve host: nope.regiondrill.internal"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            "--connect-timeout 0.4 -m 3",
            r"Failed to connect to api\.regiondrill\.internal port 443 after 4\d\d ms: Timeout was reached",
        ),
        ("-m 0.4", r"Connection timed out after 4\d\d milliseconds"),
        ("--connect-timeout 1 -m 0.4", r"Connection timed out after 4\d\d milliseconds"),
    ],
)
def test_curl_to_a_dropped_path_times_out_like_a_lost_syn(
    world: servers.ToolWorld, options: str, message: str
) -> None:
    world.reachable[(servers.NLB_NODE, 443)] = False
    world.reachable[("10.77.2.20", 443)] = False
    write_out = (
        "\\n%{http_code} %{remote_ip} %{remote_port} %{time_connect} %{ssl_verify_result}\\n"
    )
    started = time.monotonic()
    rc, out, err = sh(world, f"curl -sS {options} -w '{write_out}' {API_URL}")
    assert 0.35 < time.monotonic() - started < 1.5
    assert rc == 28
    assert re.fullmatch(rf"curl: \(28\) {message}\n", err), err
    assert out == "\n000  0 0.000000 0\n"  # no connection: no address, no TLS verdict


def test_curl_tls_verification_failures_exit_60(world: servers.ToolWorld) -> None:
    cases = [
        (
            world.self_signed_port,
            servers.API,
            "SSL certificate problem: self-signed certificate",
            18,
        ),
        # The foreign server sends its CA along, so OpenSSL meets an untrusted root in the chain.
        (
            world.foreign_port,
            servers.API,
            "SSL certificate problem: self-signed certificate in certificate chain",
            19,
        ),
        (
            world.ports.lab_port(443),
            "wrong.regiondrill.internal",
            "SSL: no alternative certificate subject name matches target host name 'wrong.regiondrill.internal'",
            1,
        ),
    ]
    for port, name, message, verify in cases:
        node = servers.NLB_NODE if port == world.ports.lab_port(443) else servers.OTHER_NODE
        url = f"https://{name}:{port}/demo/"
        command = build_curl_command(url, resolve=[f"{name}:{port}:{node}"], max_time=5)
        rc, out, err = sh(world, command)
        assert rc == 60, err
        assert err.startswith(
            f"curl: (60) {message}\nMore details here: https://curl.se/docs/sslcerts.html\n"
        )
        result = parse_curl(out, err, rc)
        assert result.ssl_verify_result == verify
        assert result.time_connect == 0.0  # curl 7.88 reports no connect time when TLS fails
        assert result.remote_ip == node
        # -k accepts what verification refused.
        rc, out, _ = sh(
            world, build_curl_command(url, resolve=[f"{name}:{port}:{node}"], insecure=True)
        )
        assert rc == 0
        assert parse_curl(out, "", rc).http_code == 200


def test_curl_cacert_replaces_the_lab_ca(world: servers.ToolWorld) -> None:
    other = world.root / "other-ca.pem"
    other.write_text(world.other_ca.ca_pem)
    url = f"https://{servers.API}:{world.foreign_port}/demo/"
    pin = f"{servers.API}:{world.foreign_port}:{servers.OTHER_NODE}"
    rc, out, _ = sh(world, build_curl_command(url, resolve=[pin], cacert="other-ca.pem"))
    assert (rc, parse_curl(out, "", rc).http_code) == (0, 200)
    rc, out, err = sh(world, build_curl_command(url, resolve=[pin], cacert="/nonexistent/ca.pem"))
    assert rc == 77
    assert err == "curl: (77) error setting certificate file: /nonexistent/ca.pem\n"


def test_curl_tls_to_a_plain_http_port_exits_35(world: servers.ToolWorld) -> None:
    rc, _, err = sh(world, f"curl -sS -m 5 https://{servers.PLAIN_NODE}:{world.plain_port}/demo/")
    assert rc == 35
    assert re.fullmatch(
        r"curl: \(35\) OpenSSL/3\.\d+\.\d+: error:0A00010B:SSL routines::wrong version number\n",
        err,
    ), err


def test_curl_http_failures(world: servers.ToolWorld) -> None:
    cases = [
        (
            servers.stall,
            "-m 0.4",
            28,
            r"Operation timed out after 4\d\d milliseconds with 0 bytes received",
        ),
        (servers.close_after_request, "-m 5", 52, "Empty reply from server"),
        (servers.close_mid_body, "-m 5", 18, "transfer closed with 85 bytes remaining to read"),
        (servers.reset_mid_body, "-m 5", 56, "Recv failure: Connection reset by peer"),
    ]
    for behaviour, options, code, message in cases:
        server = servers.tcp_server(to_loopback(servers.PLAIN_NODE), behaviour)
        try:
            port = server.server_address[1]
            rc, out, err = sh(
                world,
                f"curl -sS {options} -w '\\n%{{http_code}}' http://{servers.PLAIN_NODE}:{port}/",
            )
        finally:
            server.shutdown()
            server.server_close()
        assert rc == code, (behaviour, err)
        assert re.fullmatch(rf"curl: \({code}\) {message}\n", err), err
        if code == 18 or code == 56:
            assert out == '{"region": "us-\n200'
        else:
            assert out == "\n000"


def test_curl_refused_exits_7(world: servers.ToolWorld) -> None:
    port = servers.unused_port(to_loopback(servers.PLAIN_NODE))
    rc, out, err = sh(world, build_curl_command(f"http://{servers.PLAIN_NODE}:{port}/"))
    assert rc == 7
    assert re.fullmatch(
        rf"curl: \(7\) Failed to connect to {servers.PLAIN_NODE} port {port} after \d+ ms: Couldn't connect to server\n",
        err,
    )
    result = parse_curl(out, err, rc)
    assert result.remote_ip is None
    assert result.remote_port is None


def test_curl_request_options(world: servers.ToolWorld) -> None:
    rc, out, _ = sh(
        world,
        f"curl -sS -X PUT -H 'x-probe: 1' -H 'Accept: application/json' -H 'User-Agent:' "
        f"-d a=1 -d b=2 '{API_URL}items?probe=1'",
    )
    event = json.loads(out)["event"]
    assert event["httpMethod"] == "PUT"
    assert event["query"] == "probe=1"
    assert event["body"] == "a=1&b=2"
    assert list(event["headers"].items()) == [
        ("Host", servers.API),
        ("x-probe", "1"),
        ("Accept", "application/json"),
        ("Content-Length", "7"),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ]
    rc, out, err = sh(world, f"curl -sS -f -w '%{{http_code}}' {API_URL}forbidden")
    assert (rc, out, err) == (22, "403", "curl: (22) The requested URL returned error: 403\n")
    rc, out, _ = sh(world, f"curl -sS -i {API_URL}chunked")
    assert (
        out
        == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nhello chunked world\n"
    )


def test_curl_output_file_is_relative_to_the_shell_directory(world: servers.ToolWorld) -> None:
    (world.root / "sub").mkdir(exist_ok=True)
    rc, out, _ = sh(world, f"cd sub && curl -sS -o body.json -w '%{{size_download}}' {API_URL}")
    assert rc == 0
    body = (world.root / "sub" / "body.json").read_text()
    assert out == str(len(body))
    assert json.loads(body)["region"] == "us-east-1"
    rc, out, _ = sh(world, build_curl_command(API_URL, output="/dev/null"))
    assert parse_curl(out, "", rc).body == ""


def test_curl_write_out_escapes_streams_and_unknown_variables(world: servers.ToolWorld) -> None:
    rc, out, err = sh(
        world,
        f"curl -s -w '%{{scheme}} %{{method}} %%\\t|\\\\n|%{{bogus}}%{{stderr}}to-err%{{stdout}} back\\n' "
        f"-o /dev/null {API_URL}",
    )
    assert rc == 0
    assert out == "HTTPS GET %\t|\\\\n| back\n"
    assert err == "curl: unknown --write-out variable: 'bogus'\nto-err"


def test_curl_progress_meter_unless_silent(world: servers.ToolWorld) -> None:
    rc, _out, err = sh(world, f"curl -o /dev/null {API_URL}")
    assert rc == 0
    lines = err.split("\n")
    assert (
        lines[0]
        == "  % Total    % Received % Xferd  Average Speed   Time    Time     Time  Current"
    )
    assert lines[2].startswith("\r  0     0    0     0")
    assert re.search(r"\r100 +\d+  100 +\d+    0     0 ", lines[2])


def test_curl_rejects_unknown_and_unsupported_options(world: servers.ToolWorld) -> None:
    rc, _, err = sh(world, f"curl --no-such-thing {API_URL}")
    assert (rc, err) == (
        2,
        "curl: option --no-such-thing: is unknown\ncurl: try 'curl --help' or 'curl --manual' for more information\n",
    )
    rc, _, err = sh(world, f"curl -sSL {API_URL}")
    assert rc == 2
    assert err.startswith("curl: option -L: is not supported by the regiondrill lab's curl\n")
    rc, _, err = sh(world, "curl -s")
    assert (rc, err.splitlines()[0]) == (2, "curl: no URL specified!")


def test_binary_output_crosses_the_shim_intact(world: servers.ToolWorld) -> None:
    payload = bytes(range(256)) * 4
    blob = servers.tcp_server(
        to_loopback(servers.PLAIN_NODE),
        lambda conn: (
            conn.recv(65536),
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n" + payload),
        ),
    )
    try:
        done = world.shell(
            f"curl -s http://{servers.PLAIN_NODE}:{blob.server_address[1]}/ | od -An -tx1 | tr -d ' \\n'"
        )
    finally:
        blob.shutdown()
        blob.server_close()
    assert done.stdout.decode() == payload.hex()


# ------------------------------------------------------------------------------------- shims and server


def test_the_server_refuses_a_shell_with_an_unknown_token(
    world: servers.ToolWorld, tmp_path: Path
) -> None:
    rogue = tmp_path / "dig"
    rogue.write_text(render_shim("dig", port=world.tools.port, token="00ff", host_label="rogue"))
    rogue.chmod(0o700)
    done = world.shell(f"{rogue} {servers.API}")
    assert done.returncode == 10
    assert done.stderr == b"dig: this shell is not a regiondrill lab bastion (unknown token)\n"


def test_a_shim_without_its_server_says_so(tmp_path: Path) -> None:
    port = servers.unused_port("127.0.0.1")
    for tool, rc in (("dig", 10), ("curl", 2)):
        path = tmp_path / tool
        path.write_text(render_shim(tool, port=port, token="ab", host_label="gone"))
        path.chmod(0o700)
        import subprocess

        done = subprocess.run([str(path), "x"], capture_output=True, check=False)
        assert done.returncode == rc
        assert (
            done.stderr
            == f"{tool}: the regiondrill lab is not reachable (tool server 127.0.0.1:{port})\n".encode()
        )


def test_a_killed_shim_stops_its_tool_run(world: servers.ToolWorld) -> None:
    world.reachable[(servers.NLB_NODE, 443)] = False
    world.reachable[("10.77.2.20", 443)] = False
    started = time.monotonic()
    done = world.shell(f"timeout 0.3 curl -sS -m 20 {API_URL}; echo rc=$?")
    assert done.stdout == b"rc=124\n"
    assert time.monotonic() - started < 2
    deadline = time.monotonic() + 3
    while world.tools._active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not world.tools._active


def test_tools_run_in_process_without_a_shim(world: servers.ToolWorld, tmp_path: Path) -> None:
    result = run_dig(world.host, Invocation("dig", ("+short", servers.API), tmp_path))
    assert (result.rc, result.stdout) == (0, b"10.77.1.20\n10.77.2.20\n")
    harness_host = HostView(
        address=None, resolver=servers.VPC_RESOLVER, ports=world.ports, ca_pem=world.ca.ca_pem
    )
    result = run_curl(
        harness_host, Invocation("curl", ("-s", f"{API_URL}whoami"), tmp_path), Cancel()
    )
    assert json.loads(result.stdout) == {"sourceIp": "127.0.0.1"}


def test_invocations_cost_milliseconds(world: servers.ToolWorld) -> None:
    """Forty dig runs through the shim fit in a second on a loaded two-core box."""
    started = time.monotonic()
    done = world.shell(
        f"for i in $(seq 40); do dig +short {servers.API} >/dev/null || exit 1; done"
    )
    assert done.returncode == 0
    assert time.monotonic() - started < 2.0


def test_tool_server_port_is_loopback_only() -> None:
    server = ToolServer(lambda token: None)
    server.start()
    try:
        assert server._listener is not None
        assert server._listener.getsockname()[0] == "127.0.0.1"
    finally:
        server.stop()


def test_render_shim_validates_its_inputs() -> None:
    with pytest.raises(ValueError, match="unknown lab tool 'ping'"):
        render_shim("ping", port=1, token="ab", host_label="x")
    with pytest.raises(ValueError, match="must be lower-case hexadecimal"):
        render_shim("dig", port=1, token="'; rm -rf /", host_label="x")


def test_port_map_is_what_the_tools_use(world: servers.ToolWorld) -> None:
    assert isinstance(world.ports, PortMap)
    assert world.ports.lab_port(53) == world.dns.port
