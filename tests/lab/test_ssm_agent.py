"""SSM Run Command on the lab's bastions, through boto3, against the deployed stack set.

The commands really run in each bastion's shell; dig and curl inside it are the lab's shims and
reach the lab's resolvers and NLB listeners from the bastion's VPC address. Lab speed 20: one lab
second is 50 ms of wall time, so executionTimeout and TimeoutSeconds (lab seconds) pass quickly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from harness.aws.session import SessionFactory
from harness.aws.stacks import Deployment, StackSetDeployer
from harness.config import HarnessConfig, load_config
from harness.errors import CommandTimeout, LabError
from harness.lab.lab import Lab
from harness.lab.services import ssm as ssm_service
from harness.targets import lab_sessions

REGIONS = ("us-east-1", "us-west-2")
TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled"}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(REGIONS, speed=20.0) as running:
        yield running


@pytest.fixture(scope="module")
def config() -> HarnessConfig:
    return load_config({"regions": ",".join(REGIONS)}, environ={})


@pytest.fixture(scope="module")
def sessions(lab: Lab) -> SessionFactory:
    return lab_sessions(lab.info)


@pytest.fixture(scope="module")
def deployment(lab: Lab, config: HarnessConfig, sessions: SessionFactory) -> Iterator[Deployment]:
    deployer = StackSetDeployer(config, sessions)
    deployed = deployer.deploy()
    wait_for(lambda: len(lab.bastions.all()) == 4, "four bastion environments")
    yield deployed
    deployer.teardown()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def bastion_ids(lab: Lab, region: str) -> list[str]:
    return [b.instance_id for b in lab.bastions.all() if b.region == region]


def ssm(sessions: SessionFactory, region: str) -> Any:
    return sessions.client("ssm", region)


def send(client: Any, instance_ids: list[str], *commands: str, **extra: Any) -> str:
    parameters = {"commands": list(commands), **extra.pop("parameters", {})}
    response = client.send_command(
        InstanceIds=instance_ids, DocumentName="AWS-RunShellScript", Parameters=parameters, **extra
    )
    return response["Command"]["CommandId"]


def invocation(client: Any, command_id: str, instance_id: str) -> dict[str, Any] | None:
    try:
        return client.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "InvocationDoesNotExist":
            return None
        raise


def finished(
    client: Any, command_id: str, instance_id: str, timeout: float = 10.0
) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (r := invocation(client, command_id, instance_id)) and r["Status"] in TERMINAL and r
        ),
        f"command {command_id} on {instance_id} to finish",
        timeout,
    )


# ------------------------------------------------------------------------------------- agents


def test_every_bastion_has_an_online_agent(
    lab: Lab, deployment: Deployment, sessions: SessionFactory
) -> None:
    for region in REGIONS:
        listed = ssm(sessions, region).describe_instance_information()["InstanceInformationList"]
        by_id = {item["InstanceId"]: item for item in listed}
        assert sorted(by_id) == sorted(bastion_ids(lab, region))
        for instance_id, item in by_id.items():
            bastion = lab.bastions.bastion(instance_id)
            assert item["PingStatus"] == "Online"
            assert item["IPAddress"] == bastion.address
            assert item["PlatformType"] == "Linux"
            assert item["ResourceType"] == "EC2Instance"
    filtered = ssm(sessions, "us-east-1").describe_instance_information(
        Filters=[{"Key": "PingStatus", "Values": ["ConnectionLost"]}]
    )
    assert filtered["InstanceInformationList"] == []


# ------------------------------------------------------------------------------------- SendCommand


def test_one_call_fans_out_to_every_bastion_of_a_region(
    lab: Lab, deployment: Deployment, sessions: SessionFactory
) -> None:
    """SSM is regional: one call per region reaches all of that region's bastions at once."""
    started = time.monotonic()
    sent = {}
    for region in REGIONS:
        client = ssm(sessions, region)
        sent[region] = (
            client,
            send(
                client,
                bastion_ids(lab, region),
                "sleep 0.5",
                'echo "$AWS_SSM_INSTANCE_ID $AWS_SSM_REGION_NAME"',
            ),
        )
    for region, (client, command_id) in sent.items():
        for instance_id in bastion_ids(lab, region):
            result = finished(client, command_id, instance_id)
            assert result["Status"] == "Success"
            assert result["ResponseCode"] == 0
            assert result["StandardOutputContent"] == f"{instance_id} {region}\n"
            assert result["PluginName"] == "aws:runShellScript"
            assert result["ExecutionElapsedTime"].startswith("PT")
    # Four half-second commands in well under two seconds: they ran concurrently.
    assert time.monotonic() - started < 1.9
    listing = sent["us-east-1"][0].list_commands(CommandId=sent["us-east-1"][1])["Commands"][0]
    assert listing["Status"] == "Success"
    assert (listing["TargetCount"], listing["CompletedCount"], listing["ErrorCount"]) == (2, 2, 0)


def test_targets_select_bastions_by_tag(
    lab: Lab, deployment: Deployment, sessions: SessionFactory
) -> None:
    client = ssm(sessions, "us-west-2")
    response = client.send_command(
        Targets=[{"Key": "tag:regiondrill:az", "Values": ["b"]}],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["hostname >/dev/null; echo ok"]},
    )
    command_id = response["Command"]["CommandId"]
    wanted = [
        i for i in bastion_ids(lab, "us-west-2") if lab.bastions.tags(i)["regiondrill:az"] == "b"
    ]
    assert len(wanted) == 1
    result = finished(client, command_id, wanted[0])
    assert result["StandardOutputContent"] == "ok\n"
    invocations = client.list_command_invocations(CommandId=command_id)["CommandInvocations"]
    assert [i["InstanceId"] for i in invocations] == wanted


def test_bad_requests_are_refused_with_aws_errors(
    lab: Lab, deployment: Deployment, sessions: SessionFactory
) -> None:
    client = ssm(sessions, "us-east-1")
    other_region = bastion_ids(lab, "us-west-2")[0]
    for instance_id in ("i-0123456789abcdef0", other_region):
        with pytest.raises(ClientError) as caught:
            send(client, [instance_id], "true")
        assert caught.value.response["Error"]["Code"] == "InvalidInstanceId"
        assert instance_id in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        client.send_command(
            InstanceIds=bastion_ids(lab, "us-east-1"),
            DocumentName="AWS-RunPowerShellScript",
            Parameters={"commands": ["dir"]},
        )
    assert caught.value.response["Error"]["Code"] == "InvalidDocument"
    assert "AWS-RunPowerShellScript" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        send(client, bastion_ids(lab, "us-east-1"), "true", parameters={"executionTimeout": ["0"]})
    assert caught.value.response["Error"]["Code"] == "InvalidParameters"
    instance_id = bastion_ids(lab, "us-east-1")[0]
    with pytest.raises(ClientError) as caught:
        client.get_command_invocation(CommandId="x" * 36, InstanceId=instance_id)
    assert caught.value.response["Error"]["Code"] == "InvalidCommandId"
    unknown = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(ClientError) as caught:
        client.get_command_invocation(CommandId=unknown, InstanceId=instance_id)
    assert caught.value.response["Error"]["Code"] == "InvocationDoesNotExist"


# ------------------------------------------------------------------------------------- statuses


def test_invocation_is_invisible_right_after_sending(
    lab: Lab, deployment: Deployment, sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One lab second = 50 ms: widen the window so the check does not race the clock.
    monkeypatch.setattr(ssm_service, "VISIBILITY_DELAY", 10.0)
    client = ssm(sessions, "us-east-1")
    instance_id = bastion_ids(lab, "us-east-1")[0]
    command_id = send(client, [instance_id], "echo hi")
    with pytest.raises(ClientError) as caught:
        client.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    assert caught.value.response["Error"]["Code"] == "InvocationDoesNotExist"
    assert client.list_command_invocations(CommandId=command_id)["CommandInvocations"] == []
    assert client.list_commands(CommandId=command_id)["Commands"][0]["CommandId"] == command_id
    result = finished(client, command_id, instance_id)
    assert (result["Status"], result["StandardOutputContent"]) == ("Success", "hi\n")


def test_status_goes_in_progress_then_success(
    lab: Lab, deployment: Deployment, sessions: SessionFactory
) -> None:
    client = ssm(sessions, "us-west-2")
    instance_id = bastion_ids(lab, "us-west-2")[0]
    command_id = send(client, [instance_id], "sleep 0.4", "echo done")
    seen: list[str] = []
    while not seen or seen[-1] not in TERMINAL:
        current = invocation(client, command_id, instance_id)
        if current is not None and (not seen or seen[-1] != current["Status"]):
            seen.append(current["Status"])
            if current["Status"] == "InProgress":
                assert current["StandardOutputContent"] == ""  # no output before the end
                assert current["ExecutionEndDateTime"] == ""
        time.sleep(0.005)
    assert seen[-2:] == ["InProgress", "Success"]
    assert set(seen) <= {"Pending", "InProgress", "Success"}


def test_failed_command_reports_exit_status_like_the_agent(
    lab: Lab, deployment: Deployment, sessions: SessionFactory
) -> None:
    client = ssm(sessions, "us-east-1")
    instance_id = bastion_ids(lab, "us-east-1")[1]
    command_id = send(client, [instance_id], "echo out", "echo err >&2", "exit 3")
    result = finished(client, command_id, instance_id)
    assert (result["Status"], result["StatusDetails"], result["ResponseCode"]) == (
        "Failed",
        "Failed",
        3,
    )
    assert result["StandardOutputContent"] == "out\n"
    assert result["StandardErrorContent"] == "err\nfailed to run commands: exit status 3"
    listing = client.list_commands(CommandId=command_id)["Commands"][0]
    assert (listing["Status"], listing["ErrorCount"]) == ("Failed", 1)


def test_working_directory_parameter(
    lab: Lab, deployment: Deployment, sessions: SessionFactory, tmp_path: Any
) -> None:
    client = ssm(sessions, "us-west-2")
    instance_id = bastion_ids(lab, "us-west-2")[0]
    ran = send(client, [instance_id], "pwd", parameters={"workingDirectory": [str(tmp_path)]})
    assert finished(client, ran, instance_id)["StandardOutputContent"] == f"{tmp_path}\n"
    missing = send(client, [instance_id], "pwd", parameters={"workingDirectory": ["no/such/dir"]})
    result = finished(client, missing, instance_id)
    assert (result["Status"], result["ResponseCode"]) == ("Failed", 1)
    assert result["StandardErrorContent"] == (
        "failed to run commands: chdir no/such/dir: no such file or directory"
    )


def test_output_is_truncated_as_aws_documents(
    lab: Lab, deployment: Deployment, sessions: SessionFactory
) -> None:
    client = ssm(sessions, "us-east-1")
    instance_id = bastion_ids(lab, "us-east-1")[0]
    command_id = send(
        client,
        [instance_id],
        "head -c 30000 /dev/zero | tr '\\0' a",
        "head -c 9000 /dev/zero | tr '\\0' e >&2",
    )
    result = finished(client, command_id, instance_id)
    assert result["Status"] == "Success"
    assert result["StandardOutputContent"] == "a" * 24000
    assert result["StandardErrorContent"] == "e" * 8000
    detailed = client.list_command_invocations(CommandId=command_id, Details=True)[
        "CommandInvocations"
    ][0]
    output = detailed["CommandPlugins"][0]["Output"]
    assert len(output) <= 2500
    assert output.startswith("a" * 1000)
    assert "\n---Output truncated---\n----------ERROR-------\ne" in output
    assert output.endswith("\n---Error truncated----")


def test_execution_timeout_kills_the_command(
    lab: Lab, deployment: Deployment, sessions: SessionFactory
) -> None:
    client = ssm(sessions, "us-west-2")
    instance_id = bastion_ids(lab, "us-west-2")[1]
    marker = lab.bastions.bastion(instance_id).scratch / "timeout.pid"
    command_id = send(
        client,
        [instance_id],
        "echo started",
        f"sleep 30 & echo $! > {marker}; wait",
        parameters={"executionTimeout": ["2"]},  # lab seconds: 100 ms
    )
    result = finished(client, command_id, instance_id)
    assert (result["Status"], result["StatusDetails"]) == ("TimedOut", "Execution Timed Out")
    assert result["ResponseCode"] == 137
    assert result["StandardOutputContent"] == "started\n"
    pid = int(marker.read_text())
    wait_for(lambda: not _alive(pid), "the timed-out command's process group to die", 3)


def test_cancel_command_stops_a_running_command(
    lab: Lab, deployment: Deployment, sessions: SessionFactory
) -> None:
    client = ssm(sessions, "us-east-1")
    instance_id = bastion_ids(lab, "us-east-1")[1]
    command_id = send(client, [instance_id], "echo begin", "sleep 30")
    wait_for(
        lambda: (r := invocation(client, command_id, instance_id)) and r["Status"] == "InProgress",
        "the command to start",
    )
    client.cancel_command(CommandId=command_id)
    result = finished(client, command_id, instance_id, timeout=5)
    assert (result["Status"], result["StatusDetails"], result["ResponseCode"]) == (
        "Cancelled",
        "Cancelled",
        137,
    )
    assert client.list_commands(CommandId=command_id)["Commands"][0]["Status"] == "Cancelled"


# ------------------------------------------------------------------------------------- the shell


def test_environment_is_minimal_and_holds_no_lab_secret(
    lab: Lab, deployment: Deployment, sessions: SessionFactory
) -> None:
    client = ssm(sessions, "us-east-1")
    instance_id = bastion_ids(lab, "us-east-1")[0]
    command_id = send(
        client, [instance_id], "env", "echo ---", "pwd", "tr '\\0' '\\n' < /proc/$$/environ"
    )
    result = finished(client, command_id, instance_id)
    bastion = lab.bastions.bastion(instance_id)
    output = result["StandardOutputContent"]
    head, rest = output.split("---\n", 1)
    assert rest.startswith(f"{bastion.scratch}\n")
    env_lines = head.splitlines()
    names = {line.split("=", 1)[0] for line in env_lines}
    assert names == {
        "PATH",
        "HOME",
        "LANG",
        "AWS_SSM_INSTANCE_ID",
        "AWS_SSM_REGION_NAME",
        "PWD",
        "SHLVL",
        "_",
    }
    assert f"PATH={bastion.bin_dir}:/usr/local/bin:/usr/bin:/bin" in env_lines
    assert f"HOME={bastion.scratch}" in env_lines
    for secret in (
        lab.access_key,
        lab.secret_key,
        "REGIONDRILL_",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET",
    ):
        assert secret not in output


def test_dig_and_curl_on_a_bastion_see_its_vpc(
    lab: Lab, deployment: Deployment, sessions: SessionFactory, config: HarnessConfig
) -> None:
    topology = lab.topology()
    for region in REGIONS:
        client = ssm(sessions, region)
        instance_id = bastion_ids(lab, region)[0]
        bastion = lab.bastions.bastion(instance_id)
        own_nodes = {
            address
            for lb in topology.load_balancers.values()
            if lb.region == region
            for address in lb.nodes.values()
        }
        command_id = send(
            client,
            [instance_id],
            f"dig {config.domain}",
            f"curl -sS -m 5 -w '\\n%{{http_code}} %{{remote_ip}}\\n' https://{config.domain}/demo/",
        )
        result = finished(client, command_id, instance_id)
        assert result["Status"] == "Success", result["StandardErrorContent"]
        output = result["StandardOutputContent"]
        assert (
            f";; SERVER: {bastion.resolver_address}#53({bastion.resolver_address}) (UDP)" in output
        )
        answers = {
            line.split()[-1]
            for line in output.split(";; ANSWER SECTION:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        }
        assert answers
        assert answers <= own_nodes  # latency routing: the bastion's own region
        body, status = output.rsplit("\n", 2)[-3:-1]
        code, remote_ip = status.split()
        assert code == "200"
        assert remote_ip in own_nodes
        assert f'"region": "{region}"' in body


def test_curl_crosses_the_transit_gateway_to_the_other_region(
    lab: Lab, deployment: Deployment, sessions: SessionFactory, config: HarnessConfig
) -> None:
    topology = lab.topology()
    west_node = next(
        address
        for lb in topology.load_balancers.values()
        if lb.region == "us-west-2"
        for address in lb.nodes.values()
    )
    client = ssm(sessions, "us-east-1")
    instance_id = bastion_ids(lab, "us-east-1")[0]
    command_id = send(
        client,
        [instance_id],
        f"curl -sS -m 5 --resolve {config.domain}:443:{west_node} https://{config.domain}/demo/",
    )
    result = finished(client, command_id, instance_id)
    assert result["Status"] == "Success", result["StandardErrorContent"]
    assert '"region": "us-west-2"' in result["StandardOutputContent"]


def test_in_process_run_for_tests_and_sshd(lab: Lab, deployment: Deployment) -> None:
    instance_id = bastion_ids(lab, "us-east-1")[0]
    assert lab.bastions.run(instance_id, "echo hi; echo oops >&2; exit 4") == (4, "hi\n", "oops\n")
    with pytest.raises(CommandTimeout, match=instance_id):
        lab.bastions.run(instance_id, "sleep 30", timeout=4)  # lab seconds: 200 ms
    with pytest.raises(LabError, match="no bastion 'i-nope'"):
        lab.bastions.run("i-nope", "true")


# ------------------------------------------------------------------------------------- stop/start


def test_stopped_bastion_loses_its_agent_and_commands_wait(
    lab: Lab, deployment: Deployment, sessions: SessionFactory
) -> None:
    client = ssm(sessions, "us-west-2")
    ec2 = sessions.client("ec2", "us-west-2")
    instance_id = bastion_ids(lab, "us-west-2")[0]
    ec2.stop_instances(InstanceIds=[instance_id])
    try:
        wait_for(
            lambda: (
                client.describe_instance_information(
                    Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
                )["InstanceInformationList"][0]["PingStatus"]
                == "ConnectionLost"
            ),
            "the agent to lose its connection",
        )
        # Never delivered: Pending until ExpiresAfter (30 + 1 lab seconds = 1.55 s), then timed out.
        expiring = send(
            client,
            [instance_id],
            "echo never",
            TimeoutSeconds=30,
            parameters={"executionTimeout": ["1"]},
        )
        pending = send(client, [instance_id], "echo later", TimeoutSeconds=600)
        time.sleep(0.2)
        assert invocation(client, expiring, instance_id)["Status"] == "Pending"
        result = finished(client, expiring, instance_id, timeout=5)
        assert (result["Status"], result["StatusDetails"], result["ResponseCode"]) == (
            "TimedOut",
            "Delivery Timed Out",
            -1,
        )
        assert client.list_commands(CommandId=expiring)["Commands"][0]["DeliveryTimedOutCount"] == 1
        assert invocation(client, pending, instance_id)["Status"] == "Pending"
    finally:
        ec2.start_instances(InstanceIds=[instance_id])
    # Started again: the waiting command is delivered and runs.
    result = finished(client, pending, instance_id, timeout=10)
    assert (result["Status"], result["StandardOutputContent"]) == ("Success", "later\n")
    listed = client.describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
    )
    assert listed["InstanceInformationList"][0]["PingStatus"] == "Online"


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("stdout", "stderr", "expected"),
    [
        ("", "", ""),
        ("out", "", "out"),
        ("", "err", "\n----------ERROR-------\nerr"),
        ("out", "err", "out\n----------ERROR-------\nerr"),
        # Output long, error short: the output is cut to make room.
        ("o" * 100, "e", "o" * 52 + "\n---Output truncated---" + "\n----------ERROR-------\ne"),
        # Output short, error long: the error is cut.
        ("o", "e" * 100, "o\n----------ERROR-------\n" + "e" * 52 + "\n---Error truncated----"),
        # Both long: each gets half of what is left.
        (
            "o" * 100,
            "e" * 100,
            "o" * 15
            + "\n---Output truncated---\n----------ERROR-------\n"
            + "e" * 15
            + "\n---Error truncated----",
        ),
    ],
)
def test_plugin_output_truncates_like_the_agent(stdout: str, stderr: str, expected: str) -> None:
    result = ssm_service.truncate_output(stdout, stderr, capacity=100)
    assert result == expected
    assert len(result) <= 100


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.541, "PT0.541S"), (8, "PT8S"), (65.2, "PT1M5.2S"), (3600.001, "PT1H0.001S"), (0, "PT0S")],
)
def test_elapsed_time_is_an_iso_duration(seconds: float, text: str) -> None:
    assert ssm_service._duration(seconds) == text
