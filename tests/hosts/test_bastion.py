"""Bastions: probes over real tool output, discovery and its readiness check, the fixtures.

- Probes: a replaying executor checks that ``Bastion.dig``/``curl`` send exactly the command the
  capture script ran with the real tools (``tests/probes/fixtures``) and parse what they printed.
- Discovery: Stubber-driven EC2/SSM answers for every way a bastion can be unready, then the
  real thing against the lab with the deployed stack set, over SSM and over SSH (the network
  stacks launched with a key pair from ``ensure_key_pair``), which must agree.
- Fixtures: ``bastions`` and ``bastion_in`` through pytest itself.
"""

from __future__ import annotations

import ipaddress
import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from botocore.stub import Stubber

from harness.aws.session import SessionFactory
from harness.clock import Clock
from harness.errors import CommandError, CommandTimeout, ConfigError
from harness.hosts import EXECUTORS, get_executor, run_many
from harness.hosts.base import CommandResult, Executor, FanOutError, run_expect
from harness.hosts.bastion import Bastion, SshOptions, bastion_in, discover_bastions

pytest_plugins = ["pytester"]

FIXTURES = Path(__file__).resolve().parents[1] / "probes" / "fixtures"
EAST, WEST = "us-east-1", "us-west-2"


class Replay(Executor):
    """Answer one expected command with what the real tool printed when it was captured."""

    NAME: ClassVar[str] = "replay"

    def __init__(self, tool: str, case: str, *, host: str = "i-0123456789abcdef0") -> None:
        meta = json.loads((FIXTURES / tool / f"{case}.json").read_text())
        self.expected = meta["command"]
        self.rc, self.stderr = int(meta["rc"]), meta["stderr"]
        self.stdout = (FIXTURES / tool / f"{case}.stdout").read_bytes().decode()
        self._host = host
        self.timeouts: list[float] = []

    @property
    def host(self) -> str:
        return self._host

    @property
    def target(self) -> str:
        return f"replay://{self._host}"

    def run(
        self, command: str, timeout: float, *, expected_duration: float | None = None
    ) -> CommandResult:
        assert command == self.expected
        self.timeouts.append(timeout)
        return CommandResult(
            self.rc, self.stdout, self.stderr, 0.01, status="Success", host=self._host
        )


class Scripted(Executor):
    """Raise or return what a test scripts (for the default fan-out)."""

    NAME: ClassVar[str] = "scripted"

    def __init__(self, host: str, outcome: CommandResult | Exception) -> None:
        self._host, self.outcome = host, outcome

    @property
    def host(self) -> str:
        return self._host

    @property
    def target(self) -> str:
        return f"scripted://{self._host}"

    def run(
        self, command: str, timeout: float, *, expected_duration: float | None = None
    ) -> CommandResult:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def on(executor: Executor) -> Bastion:
    return Bastion("i-0123456789abcdef0", EAST, "us-east-1a", "10.1.1.4", "vpc-1", executor)


# ---------------------------------------------------------------------- probes


def test_dig_sends_the_built_command_and_parses_the_real_output() -> None:
    replay = Replay("dig", "a_full")
    result = on(replay).dig("api.regiondrill.internal", server="127.0.0.1", port=57477)
    assert (result.status, result.addresses, result.ttl_min) == (
        "NOERROR",
        ("10.1.2.10", "10.1.1.10"),
        60,
    )
    assert replay.timeouts == [5 * 3 + 10]  # dig's own worst case plus slack


def test_dig_reports_nxdomain_and_timeouts_as_data() -> None:
    missing = on(Replay("dig", "nxdomain_full")).dig(
        "missing.regiondrill.internal", server="127.0.0.1", port=57477
    )
    assert missing.status == "NXDOMAIN"
    replay = Replay("dig", "timeout_tries2_short")
    silent = on(replay).dig(
        "api.regiondrill.internal", server="127.0.0.1", port=42199, time=1, tries=2, short=True
    )
    assert (silent.status, silent.rc, silent.responded) == ("TIMEOUT", 9, False)
    assert replay.timeouts == [1 * 2 + 10]


def _curl_case(case: str) -> tuple[Replay, dict[str, Any]]:
    replay = Replay("curl", case)
    words = replay.expected.split()
    options = {
        "max_time": float(words[words.index("--max-time") + 1]),
        "resolve": [words[words.index("--resolve") + 1]],
        "cacert": words[words.index("--cacert") + 1],
    }
    return replay, options


def test_curl_sends_the_built_command_and_parses_the_real_output() -> None:
    replay, options = _curl_case("ok_200_json")
    url = replay.expected.split()[-1]
    result = on(replay).curl(url, **options)
    assert result.ok
    assert result.http_code == 200
    assert replay.timeouts == [options["max_time"] + 10]


def test_a_failed_transfer_is_data_not_an_exception() -> None:
    replay, options = _curl_case("timeout_https")
    result = on(replay).curl(replay.expected.split()[-1], **options)
    assert (result.exit_code, result.http_code, result.ok) == (28, None, False)
    assert result.stderr_message == "curl: (28) Connection timed out after 1000 milliseconds"


def test_run_expect_quotes_the_output_of_an_unexpected_exit() -> None:
    failing = Scripted("h1", CommandResult(2, "partial\n", "no such file\n", 0.1, status="Failed"))
    with pytest.raises(CommandError) as caught:
        on(failing).run_expect("cat /nope", rc=(0, 1))
    message = str(caught.value)
    assert "'cat /nope' on h1 exited 2 (Failed), expected 0, 1" in message
    assert "partial" in message
    assert "no such file" in message
    assert run_expect(failing, "cat /nope", rc=2).rc == 2


# ---------------------------------------------------------------------- executors and registry


def test_default_fan_out_keeps_every_host_result() -> None:
    ok = CommandResult(0, "up\n", "", 0.1, status="Success", host="h1")
    with pytest.raises(FanOutError) as caught:
        Scripted.run_many(
            [
                Scripted("h1", ok),
                Scripted("h2", CommandTimeout("h2 too slow")),
                Scripted("h3", CommandError("h3 unreachable")),
            ],
            "uptime",
            5,
        )
    assert caught.value.results["h1"] is ok
    assert (caught.value.results["h2"].status, caught.value.results["h2"].rc) == ("TimedOut", -1)
    assert caught.value.failures == {"h3": "h3 unreachable"}
    assert "h3 unreachable" in str(caught.value)


def test_run_many_groups_hosts_by_transport() -> None:
    ok = CommandResult(0, "", "", 0.1, status="Success")
    replay = Replay("dig", "a_full", host="h9")
    command = replay.expected
    results = run_many([Scripted("h1", ok), replay], command, 30)
    assert set(results) == {"h1", "h9"}


@pytest.mark.parametrize("target", ["ftp://host", "docker://container", "local://"])
def test_an_unknown_scheme_is_named_with_the_known_ones(target: str) -> None:
    scheme = target.split("://")[0].lower()
    with pytest.raises(ConfigError) as caught:
        get_executor(target)
    assert f"unknown executor scheme {scheme!r}" in str(caught.value)
    assert "known schemes: ssh://, ssm://" in str(caught.value)


@pytest.mark.parametrize("target", ["i-0123456789abcdef0", "", "10.1.1.4:22"])
def test_a_target_without_a_scheme_is_refused(target: str) -> None:
    with pytest.raises(ConfigError, match="must look like SCHEME://"):
        get_executor(target)


def test_every_registered_executor_imports_lazily_to_an_executor() -> None:
    from harness.hosts import executor_class

    for scheme in EXECUTORS:
        assert issubclass(executor_class(scheme), Executor)
        assert scheme == executor_class(scheme).NAME


# ---------------------------------------------------------------------- discovery (stubbed)


def _deployment(*regions: tuple[str, tuple[str, str]]) -> Any:
    return types.SimpleNamespace(
        regions=tuple(types.SimpleNamespace(name=n, bastion_ids=ids) for n, ids in regions)
    )


def _instance(instance_id: str, state: str, az: str, key: str | None = "k") -> dict[str, Any]:
    found: dict[str, Any] = {
        "InstanceId": instance_id,
        "State": {"Code": 16 if state == "running" else 80, "Name": state},
        "PrivateIpAddress": "10.1.1.9",
        "Placement": {"AvailabilityZone": az},
        "VpcId": "vpc-1",
    }
    if key:
        found["KeyName"] = key
    return found


@pytest.fixture(scope="module")
def stub_sessions() -> SessionFactory:
    # An endpoint nothing listens on: every call must be answered by a Stubber.
    return SessionFactory(endpoint_url="http://127.0.0.1:9", access_key="a", secret_key="b")


@pytest.fixture
def stubbed(
    stub_sessions: SessionFactory,
) -> Iterator[tuple[SessionFactory, dict[tuple[str, str], Stubber]]]:
    sessions = stub_sessions
    stubbers = {
        (service, region): Stubber(sessions.client(service, region))
        for service in ("ec2", "ssm")
        for region in (EAST, WEST)
    }
    for stubber in stubbers.values():
        stubber.activate()
    yield sessions, stubbers
    for stubber in stubbers.values():
        stubber.assert_no_pending_responses()
        stubber.deactivate()


def _expect(
    stubbers: dict[tuple[str, str], Stubber],
    region: str,
    instances: list[dict[str, Any]],
    ping: dict[str, str] | None,
) -> None:
    ids = [i["InstanceId"] for i in instances]
    stubbers[("ec2", region)].add_response(
        "describe_instances",
        {"Reservations": [{"ReservationId": "r-1", "Instances": instances}]},
        {"InstanceIds": ids},
    )
    if ping is not None:
        stubbers[("ssm", region)].add_response(
            "describe_instance_information",
            {
                "InstanceInformationList": [
                    {"InstanceId": i, "PingStatus": status} for i, status in ping.items()
                ]
            },
            {"Filters": [{"Key": "InstanceIds", "Values": ids}]},
        )


def test_every_unready_bastion_is_named_with_its_region_and_reason(stubbed: Any) -> None:
    sessions, stubbers = stubbed
    ia, ib, ic, i_d = (f"i-000000000000000a{n}" for n in range(4))
    _expect(
        stubbers,
        EAST,
        [_instance(ia, "running", "us-east-1a"), _instance(ib, "stopped", "us-east-1b")],
        {ia: "Online", ib: "ConnectionLost"},
    )
    _expect(
        stubbers,
        WEST,
        [_instance(ic, "running", "us-west-2a"), _instance(i_d, "running", "us-west-2b")],
        {ic: "ConnectionLost"},
    )
    with pytest.raises(CommandError) as caught:
        discover_bastions(_deployment((EAST, (ia, ib)), (WEST, (ic, i_d))), sessions)
    message = str(caught.value)
    assert message.startswith("3 bastion(s) cannot take commands over SSM: ")
    assert f"bastion {ib} in {EAST} is stopped, not running" in message
    assert f"bastion {ic} in {WEST}: SSM agent is ConnectionLost, not Online" in message
    assert f"bastion {i_d} in {WEST} is not registered with SSM" in message
    assert ia not in message


def test_discovery_waits_for_agents_to_come_online(stubbed: Any) -> None:
    sessions, stubbers = stubbed
    ia, ib = "i-000000000000000a1", "i-000000000000000b1"
    for ping in ({ia: "Online"}, {ia: "Online", ib: "Online"}):  # b registers late
        _expect(
            stubbers,
            EAST,
            [_instance(ia, "running", "us-east-1a"), _instance(ib, "running", "us-east-1b")],
            ping,
        )
    found = discover_bastions(
        _deployment((EAST, (ia, ib))), sessions, clock=Clock.scaled(1000.0), wait=60
    )
    assert [(b.instance_id, b.availability_zone) for b in found] == [
        (ia, "us-east-1a"),
        (ib, "us-east-1b"),
    ]
    assert all(b.executor.target == f"ssm://{b.instance_id}?region={EAST}" for b in found)


def test_ssh_discovery_needs_a_launch_key_pair(stubbed: Any, tmp_path: Path) -> None:
    sessions, stubbers = stubbed
    ia = "i-000000000000000a1"
    _expect(stubbers, EAST, [_instance(ia, "running", "us-east-1a", key=None)], None)
    with pytest.raises(CommandError, match=f"{ia} in {EAST} was launched without a key pair"):
        discover_bastions(
            _deployment((EAST, (ia,))), sessions, via="ssh", ssh=SshOptions(key=tmp_path / "k")
        )


@pytest.mark.parametrize(("via", "ssh"), [("telnet", None), ("ssh", None)])
def test_bad_transports_are_refused(via: str, ssh: Any) -> None:
    with pytest.raises(ConfigError, match="bastion transport"):
        discover_bastions(_deployment(), SessionFactory(), via=via, ssh=ssh)


def test_bastion_in_names_the_region_and_the_ones_that_exist() -> None:
    bastions = [
        Bastion("i-1", EAST, "us-east-1a", "10.1.1.4", "vpc-1", Scripted("h", ValueError())),
        Bastion("i-2", WEST, "us-west-2a", "10.2.1.4", "vpc-2", Scripted("h", ValueError())),
    ]
    assert bastion_in(bastions, WEST).instance_id == "i-2"
    with pytest.raises(
        ConfigError, match=r"no bastion in region 'eu-west-1'; .* us-east-1, us-west-2"
    ):
        bastion_in(bastions, "eu-west-1")


# ---------------------------------------------------------------------- against the lab

KEY_NAME = "regiondrill-bastions"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[types.SimpleNamespace]:
    from harness.aws.stacks import StackSetDeployer
    from harness.config import load_config
    from harness.hosts.ssh import lab_endpoint_resolver
    from harness.lab.lab import Lab
    from harness.targets import lab_sessions

    with Lab([EAST, WEST]) as lab:
        sessions = lab_sessions(lab.info)
        # In the lab the deployer creates the bastions' key pair itself and passes KeyName.
        config = load_config(
            {"regions": f"{EAST},{WEST}", "report_dir": str(tmp_path_factory.mktemp("reports"))},
            environ={},
        )
        deployment = StackSetDeployer(config, sessions).deploy()
        assert deployment.key_name.startswith(KEY_NAME)
        key = Path(deployment.ssh_key_path)
        ssh = SshOptions(
            key=key,
            resolve_endpoint=lab_endpoint_resolver(lab.ports),
            host_keys=lab.ssh.host_keys(),
            connect_timeout=3.0,
        )
        yield types.SimpleNamespace(lab=lab, sessions=sessions, deployment=deployment, ssh=ssh)


@pytest.fixture(scope="module")
def over_ssm(deployed: Any) -> list[Bastion]:
    return discover_bastions(
        deployed.deployment, deployed.sessions, clock=deployed.lab.clock, wait=60
    )


@pytest.fixture(scope="module")
def over_ssh(deployed: Any) -> Iterator[list[Bastion]]:
    found = discover_bastions(
        deployed.deployment,
        deployed.sessions,
        clock=deployed.lab.clock,
        via="ssh",
        ssh=deployed.ssh,
    )
    yield found
    for bastion in found:
        bastion.executor.close()


def test_discovery_finds_every_bastion_where_the_stacks_put_it(
    deployed: Any, over_ssm: list[Bastion]
) -> None:
    expected = [(r.name, i) for r in deployed.deployment.regions for i in r.bastion_ids]
    assert [(b.region, b.instance_id) for b in over_ssm] == expected
    for bastion in over_ssm:
        region = deployed.deployment.region(bastion.region)
        assert bastion.vpc_id == region.vpc_id
        assert ipaddress.ip_address(bastion.address) in ipaddress.ip_network(region.vpc_cidr)
        subnets = deployed.sessions.client("ec2", bastion.region).describe_subnets(
            SubnetIds=list(region.subnet_ids)
        )["Subnets"]
        zones = [s["AvailabilityZone"] for s in sorted(subnets, key=lambda s: s["CidrBlock"])]
        # Bastion A sits in subnet A's zone, bastion B in subnet B's.
        assert bastion.availability_zone == zones[region.bastion_ids.index(bastion.instance_id)]


def test_ssh_and_ssm_give_identical_results(
    over_ssm: list[Bastion], over_ssh: list[Bastion]
) -> None:
    command = "echo $AWS_SSM_INSTANCE_ID; pwd; seq 1 2000 | tr -d '\\n'; echo; echo warn >&2"
    for via_ssm, via_ssh in zip(over_ssm, over_ssh, strict=True):
        assert via_ssm.instance_id == via_ssh.instance_id
        ssm, ssh = via_ssm.run(command, timeout=30), via_ssh.run(command, timeout=30)
        assert (ssm.rc, ssm.stdout, ssm.stderr, ssm.status) == (
            ssh.rc,
            ssh.stdout,
            ssh.stderr,
            ssh.status,
        )
        assert ssm.stdout.startswith(via_ssm.instance_id + "\n")
        failed_ssm, failed_ssh = via_ssm.run("exit 5", 30), via_ssh.run("exit 5", 30)
        assert (
            (failed_ssm.rc, failed_ssm.status)
            == (failed_ssh.rc, failed_ssh.status)
            == (5, "Failed")
        )


def test_a_command_exceeding_its_timeout_times_out_over_both(
    over_ssm: list[Bastion], over_ssh: list[Bastion]
) -> None:
    for bastion in (over_ssm[0], over_ssh[0]):
        with pytest.raises(CommandTimeout):
            bastion.run("sleep 3", timeout=2)  # 2 lab seconds: 100 ms of wall time at x20


def test_fan_out_over_ssm_reaches_every_bastion(over_ssm: list[Bastion]) -> None:
    results = run_many([b.executor for b in over_ssm], "echo $AWS_SSM_INSTANCE_ID", 30)
    assert {h: r.stdout for h, r in results.items()} == {
        b.instance_id: b.instance_id + "\n" for b in over_ssm
    }


def test_dig_from_a_bastion_asks_its_vpc_resolver(deployed: Any, over_ssm: list[Bastion]) -> None:
    bastion = over_ssm[0]
    answer = bastion.dig(deployed.deployment.domain)
    assert answer.status == "NOERROR", answer
    resolver = str(ipaddress.ip_network(deployed.deployment.region(EAST).vpc_cidr)[2])
    assert answer.server is not None
    assert answer.server.startswith(f"{resolver}#53")
    vpcs = [ipaddress.ip_network(r.vpc_cidr) for r in deployed.deployment.regions]
    assert answer.addresses
    assert all(any(ipaddress.ip_address(a) in v for v in vpcs) for a in answer.addresses)


def test_a_stopped_bastion_is_named_by_discovery(deployed: Any, over_ssm: list[Bastion]) -> None:
    victim = over_ssm[-1]
    ec2 = deployed.sessions.client("ec2", victim.region)
    ec2.stop_instances(InstanceIds=[victim.instance_id])
    try:
        with pytest.raises(CommandError) as caught:
            discover_bastions(deployed.deployment, deployed.sessions, clock=deployed.lab.clock)
        assert f"bastion {victim.instance_id} in {victim.region} is stopped" in str(caught.value)
        assert str(caught.value).startswith("1 bastion(s)")
    finally:
        ec2.start_instances(InstanceIds=[victim.instance_id])
    assert len(discover_bastions(deployed.deployment, deployed.sessions, wait=60)) == 4


# ---------------------------------------------------------------------- the fixtures


def test_bastions_fixtures_through_pytest(
    deployed: Any, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The inner run attaches to this module's lab and stacks (--lab-url, --reuse-stacks), as a
    # user attaching to `regiondrill lab serve` would, so nothing is started or deployed twice.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", deployed.lab.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", deployed.lab.secret_key)
    monkeypatch.delenv("REGIONDRILL_LAB_STATE", raising=False)
    pytester.makepyfile(
        """
        def test_bastions(bastions, bastion_in):
            assert [b.region for b in bastions] == [
                "us-east-1", "us-east-1", "us-west-2", "us-west-2"
            ]
            west = bastion_in("us-west-2")
            assert west is bastions[2]
            assert west.run("echo $AWS_SSM_INSTANCE_ID", 30).stdout == west.instance_id + "\\n"

        def test_unknown_region(bastion_in):
            bastion_in("eu-west-1")
        """
    )
    result = pytester.runpytest(
        "-p",
        "harness.plugin",
        "-p",
        "no:cacheprovider",
        "--lab-url",
        deployed.lab.endpoint,
        "--reuse-stacks",
        "--regions",
        f"{EAST},{WEST}",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*regiondrill: 4 bastion(s) online over SSM: *",
            "*ConfigError: no bastion in region 'eu-west-1'; bastions are in: us-east-1, us-west-2",
        ]
    )
