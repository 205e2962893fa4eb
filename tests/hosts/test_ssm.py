"""The SSM executor: SendCommand fan-out, polling, statuses, truncation, timeouts and errors.

Most tests drive the executor with botocore's Stubber and AWS-shaped responses (statuses and
error codes as documented for Run Command), so every branch is exercised deterministically.
The lab tests at the end run the same executor through boto3 against the lab's SSM service
and real bastion shells.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from hypothesis import given
from hypothesis import strategies as st

from harness.aws.session import SessionFactory
from harness.clock import Clock
from harness.errors import CommandError, CommandTimeout, ConfigError
from harness.hosts import get_executor, run_many
from harness.hosts.base import FanOutError
from harness.hosts.ssm import (
    DELIVERY_TIMEOUT,
    DOCUMENT,
    STDERR_LIMIT,
    STDOUT_LIMIT,
    PollPolicy,
    SsmExecutor,
    SsmFleet,
    parse_ssm_target,
)

I1 = "i-0123456789abcdef0"
I2 = "i-0fedcba9876543210"
I3 = "i-00000000000000aaa"
EAST, WEST = "us-east-1", "us-west-2"
C1, C2, CE, CW = (f"{n:08d}-1111-4222-8333-444455556666" for n in range(1, 5))
FAST = PollPolicy(initial=0.001, maximum=0.004, grace=1.0, margin=2.0)


@pytest.fixture(scope="module")
def sessions() -> SessionFactory:
    # An endpoint nothing listens on: every call must be answered by a Stubber.
    return SessionFactory(endpoint_url="http://127.0.0.1:9", access_key="AKIAX", secret_key="s")


@pytest.fixture
def stub(sessions: SessionFactory) -> Iterator[Callable[[str], Stubber]]:
    stubbers: dict[str, Stubber] = {}

    def get(region: str) -> Stubber:
        if region not in stubbers:
            stubbers[region] = Stubber(sessions.client("ssm", region))
            stubbers[region].activate()
        return stubbers[region]

    yield get
    for stubber in stubbers.values():
        stubber.assert_no_pending_responses()
        stubber.deactivate()


def expect_send(
    stubber: Stubber,
    instance_ids: list[str],
    command_id: str,
    *,
    commands: list[str] | None = None,
    execution_timeout: str | None = None,
) -> None:
    parameters: Any = ANY
    if commands is not None:
        parameters = {"commands": commands, "executionTimeout": [execution_timeout]}
    stubber.add_response(
        "send_command",
        {"Command": {"CommandId": command_id, "InstanceIds": instance_ids, "Status": "Pending"}},
        {
            "InstanceIds": instance_ids,
            "DocumentName": DOCUMENT,
            "Parameters": parameters,
            "TimeoutSeconds": DELIVERY_TIMEOUT,
            "Comment": ANY,
        },
    )


def invocation(
    instance_id: str,
    command_id: str,
    status: str,
    *,
    details: str | None = None,
    rc: int = -1,
    stdout: str = "",
    stderr: str = "",
) -> dict[str, Any]:
    return {
        "CommandId": command_id,
        "InstanceId": instance_id,
        "DocumentName": DOCUMENT,
        "PluginName": "aws:runShellScript",
        "ResponseCode": rc,
        "Status": status,
        "StatusDetails": details or status,
        "StandardOutputContent": stdout,
        "StandardErrorContent": stderr,
    }


def expect_poll(
    stubber: Stubber, instance_id: str, command_id: str, status: str, **kw: Any
) -> None:
    stubber.add_response(
        "get_command_invocation",
        invocation(instance_id, command_id, status, **kw),
        {"CommandId": command_id, "InstanceId": instance_id},
    )


def expect_poll_error(stubber: Stubber, instance_id: str, command_id: str, code: str) -> None:
    stubber.add_client_error(
        "get_command_invocation",
        service_error_code=code,
        service_message=f"{code} for {instance_id}",
        http_status_code=400,
        expected_params={"CommandId": command_id, "InstanceId": instance_id},
    )


def executor(sessions: SessionFactory, instance_id: str = I1, region: str = EAST) -> SsmExecutor:
    return SsmExecutor(instance_id, region, sessions, poll=FAST)


# ---------------------------------------------------------------------- one instance


def test_success_after_transient_statuses(sessions: SessionFactory, stub: Any) -> None:
    ssm = stub(EAST)
    expect_send(ssm, [I1], C1, commands=["echo a", "echo b >&2"], execution_timeout="3")
    expect_poll_error(ssm, I1, C1, "InvocationDoesNotExist")  # not visible yet: keep polling
    for status in ("Pending", "InProgress", "Delayed"):
        expect_poll(ssm, I1, C1, status)
    expect_poll(ssm, I1, C1, "Success", rc=0, stdout="a\n", stderr="b\n")

    result = executor(sessions).run("echo a\necho b >&2", timeout=2.5)

    assert (result.rc, result.stdout, result.stderr, result.status) == (0, "a\n", "b\n", "Success")
    assert result.host == I1
    assert not result.truncated
    assert result.duration > 0


def test_nonzero_exit_is_a_result_not_an_error(sessions: SessionFactory, stub: Any) -> None:
    ssm = stub(EAST)
    expect_send(ssm, [I1], C1)
    expect_poll(ssm, I1, C1, "Failed", rc=3, stderr="boom\n")

    result = executor(sessions).run("exit 3", timeout=5)

    assert (result.rc, result.status, result.stderr) == (3, "Failed", "boom\n")
    assert not result.ok


def test_execution_timeout_raises_command_timeout_with_partial_output(
    sessions: SessionFactory, stub: Any
) -> None:
    ssm = stub(EAST)
    expect_send(ssm, [I1], C1, commands=["sleep 60"], execution_timeout="1")
    expect_poll(ssm, I1, C1, "InProgress")
    expect_poll(ssm, I1, C1, "TimedOut", details="ExecutionTimedOut", stdout="started\n")

    with pytest.raises(CommandTimeout) as caught:
        executor(sessions).run("sleep 60", timeout=0.3)

    message = str(caught.value)
    assert I1 in message
    assert EAST in message
    assert "started" in message


@pytest.mark.parametrize(
    ("status", "details", "reason"),
    [
        ("Failed", "Undeliverable", "could not be delivered"),
        ("TimedOut", "DeliveryTimedOut", "not delivered within 30 s"),
        ("TimedOut", "Delivery Timed Out", "not delivered within 30 s"),
        ("Failed", "Terminated", "MaxErrors"),
        ("Failed", "InvalidPlatform", "platform"),
        ("Failed", "AccessDenied", "not allowed"),
        ("Cancelled", "Cancelled", "cancelled"),
    ],
)
def test_statuses_where_nothing_ran_raise_command_error(
    sessions: SessionFactory, stub: Any, status: str, details: str, reason: str
) -> None:
    ssm = stub(EAST)
    expect_send(ssm, [I1], C1)
    expect_poll(ssm, I1, C1, status, details=details)

    with pytest.raises(CommandError) as caught:
        executor(sessions).run("true", timeout=5)

    assert not isinstance(caught.value, CommandTimeout)
    message = str(caught.value)
    assert f"instance {I1} in {EAST}" in message
    assert reason in message
    assert details in message


def test_throttling_backs_off_instead_of_failing(sessions: SessionFactory, stub: Any) -> None:
    ssm = stub(EAST)
    ssm.add_client_error("send_command", "ThrottlingException", "Rate exceeded", 400)
    expect_send(ssm, [I1], C1)
    expect_poll_error(ssm, I1, C1, "ThrottlingException")
    expect_poll_error(ssm, I1, C1, "ThrottlingException")
    expect_poll(ssm, I1, C1, "Success", rc=0, stdout="ok\n")

    assert executor(sessions).run("echo ok", timeout=5).stdout == "ok\n"


def test_invocation_never_visible_is_an_error_after_the_grace(
    sessions: SessionFactory, stub: Any
) -> None:
    ssm = stub(EAST)
    expect_send(ssm, [I1], C1)
    expect_poll_error(ssm, I1, C1, "InvocationDoesNotExist")
    ex = SsmExecutor(I1, EAST, sessions, poll=PollPolicy(0.001, 0.004, grace=0.0, margin=2.0))

    with pytest.raises(CommandError, match=rf"instance {I1} in {EAST}: SSM has no invocation"):
        ex.run("true", timeout=5)


def test_unknown_instance_is_named_with_its_region(sessions: SessionFactory, stub: Any) -> None:
    ssm = stub(EAST)
    ssm.add_client_error(
        "send_command",
        "InvalidInstanceId",
        "Instances [[i-0123456789abcdef0]] not in a valid state for account 123456789012",
        400,
    )
    ssm.add_response(
        "describe_instance_information",
        {"InstanceInformationList": []},
        {"Filters": [{"Key": "InstanceIds", "Values": [I1]}]},
    )

    with pytest.raises(CommandError) as caught:
        executor(sessions).run("true", timeout=5)

    assert str(caught.value).startswith(f"instance {I1} in {EAST}: not a managed instance")


def test_offline_agent_is_named_with_its_ping_status(sessions: SessionFactory, stub: Any) -> None:
    ssm = stub(EAST)
    ssm.add_client_error("send_command", "InvalidInstanceId", "not in a valid state", 400)
    ssm.add_response(
        "describe_instance_information",
        {"InstanceInformationList": [{"InstanceId": I1, "PingStatus": "ConnectionLost"}]},
    )

    with pytest.raises(CommandError, match=f"{I1} in {EAST}: SSM agent is ConnectionLost"):
        executor(sessions).run("true", timeout=5)


@pytest.mark.parametrize(
    ("stdout_len", "stderr_len", "truncated"),
    [
        (STDOUT_LIMIT - 1, 0, False),
        (STDOUT_LIMIT, 0, True),
        (0, STDERR_LIMIT - 1, False),
        (0, STDERR_LIMIT, True),
    ],
)
def test_truncation_is_detected_at_the_ssm_limits(
    sessions: SessionFactory, stub: Any, stdout_len: int, stderr_len: int, truncated: bool
) -> None:
    ssm = stub(EAST)
    expect_send(ssm, [I1], C1)
    expect_poll(ssm, I1, C1, "Success", rc=0, stdout="x" * stdout_len, stderr="e" * stderr_len)

    assert executor(sessions).run("yes | head", timeout=5).truncated is truncated


def test_no_final_status_before_the_deadline_cancels_and_times_out(
    sessions: SessionFactory, stub: Any
) -> None:
    ssm = stub(EAST)
    expect_send(ssm, [I1], C1)
    expect_poll(ssm, I1, C1, "InProgress")
    ssm.add_response("cancel_command", {}, {"CommandId": C1, "InstanceIds": [I1]})
    # A clock a million times faster than wall time leaves only the margin as wall budget;
    # each poll sleeps longer than that margin, so exactly one poll happens before giving up.
    fleet = SsmFleet(
        sessions,
        clock=Clock(speed=1e6),
        poll=PollPolicy(initial=0.001, maximum=0.004, grace=1.0, margin=0.02),
        sleep=lambda _delay: time.sleep(0.03),
    )

    with pytest.raises(CommandTimeout, match=rf"no final status from SSM.*cancelled command {C1}"):
        fleet.run_one(I1, EAST, "sleep 1", timeout=1)


def test_ctrl_c_cancels_the_command_before_propagating(sessions: SessionFactory, stub: Any) -> None:
    ssm = stub(EAST)
    expect_send(ssm, [I1, I2], C1)
    ssm.add_response("cancel_command", {}, {"CommandId": C1, "InstanceIds": [I1, I2]})

    def interrupted(_delay: float) -> None:
        raise KeyboardInterrupt

    fleet = SsmFleet(sessions, poll=FAST, sleep=interrupted)
    with pytest.raises(KeyboardInterrupt):
        fleet.run([(I1, EAST), (I2, EAST)], "sleep 30", timeout=60)


# ---------------------------------------------------------------------- fan-out


def test_fan_out_sends_one_command_per_region(sessions: SessionFactory, stub: Any) -> None:
    east, west = stub(EAST), stub(WEST)
    expect_send(east, [I1, I2], CE, commands=["hostname"], execution_timeout="10")
    expect_send(west, [I3], CW, commands=["hostname"], execution_timeout="10")
    expect_poll(east, I1, CE, "Success", rc=0, stdout="one\n")
    expect_poll(east, I2, CE, "InProgress")
    expect_poll(west, I3, CW, "Success", rc=0, stdout="three\n")
    expect_poll(east, I2, CE, "TimedOut", details="ExecutionTimedOut")

    results = run_many(
        [executor(sessions, I1), executor(sessions, I2), executor(sessions, I3, WEST)],
        "hostname",
        timeout=10,
    )

    assert {h: (r.rc, r.status, r.stdout) for h, r in results.items()} == {
        I1: (0, "Success", "one\n"),
        I2: (-1, "TimedOut", ""),  # a fan-out reports timeouts as results
        I3: (0, "Success", "three\n"),
    }


def test_fan_out_with_an_unknown_instance_still_runs_on_the_others(
    sessions: SessionFactory, stub: Any
) -> None:
    ssm = stub(EAST)
    ssm.add_client_error("send_command", "InvalidInstanceId", "not in a valid state", 400)
    ssm.add_response(
        "describe_instance_information",
        {"InstanceInformationList": [{"InstanceId": I1, "PingStatus": "Online"}]},
        {"Filters": [{"Key": "InstanceIds", "Values": [I1, I2]}]},
    )
    expect_send(ssm, [I1], C2)  # resent without the instance SSM refused
    expect_poll(ssm, I1, C2, "Success", rc=0, stdout="fine\n")

    with pytest.raises(FanOutError) as caught:
        SsmExecutor.run_many([executor(sessions, I1), executor(sessions, I2)], "true", 5)

    assert caught.value.results[I1].stdout == "fine\n"
    assert set(caught.value.failures) == {I2}
    assert f"instance {I2} in {EAST}: not a managed instance" in str(caught.value)


def test_fan_out_rejects_a_duplicate_instance(sessions: SessionFactory) -> None:
    with pytest.raises(ConfigError, match=f"{I1} appears twice"):
        SsmExecutor.run_many([executor(sessions), executor(sessions)], "true", 5)


# ---------------------------------------------------------------------- validation and targets


@pytest.mark.parametrize(
    ("timeout", "expected"), [(0.01, "1"), (1, "1"), (1.2, "2"), (172_800, "172800")]
)
def test_execution_timeout_is_the_ceiling_in_model_seconds(
    sessions: SessionFactory, stub: Any, timeout: float, expected: str
) -> None:
    ssm = stub(EAST)
    expect_send(ssm, [I1], C1, commands=["true"], execution_timeout=expected)
    expect_poll(ssm, I1, C1, "Success", rc=0)
    executor(sessions).run("true", timeout=timeout)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), 172_801, True])
def test_bad_timeouts_are_refused_before_any_call(sessions: SessionFactory, timeout: Any) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        executor(sessions).run("true", timeout=timeout)


@pytest.mark.parametrize("command", ["", "   ", None])
def test_empty_commands_are_refused(sessions: SessionFactory, command: Any) -> None:
    with pytest.raises(ConfigError, match="command must be a non-empty string"):
        executor(sessions).run(command, timeout=5)


@given(
    instance_id=st.from_regex(r"\Ai-[0-9a-f]{17}\Z"),
    region=st.sampled_from(["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1"]),
)
def test_target_strings_round_trip(instance_id: str, region: str) -> None:
    sessions = SessionFactory(endpoint_url="http://127.0.0.1:9", access_key="a", secret_key="b")
    opened = get_executor(f"ssm://{instance_id}?region={region}", sessions=sessions)
    assert isinstance(opened, SsmExecutor)
    assert (opened.instance_id, opened.region) == (instance_id, region)
    assert parse_ssm_target(opened.target) == (instance_id, region)


@pytest.mark.parametrize(
    ("target", "named"),
    [
        ("ssm://i-0123456789abcdef0", "region"),
        ("ssm://i-0123456789abcdef0?region=us-east-1&region=us-west-2", "region"),
        ("ssm://i-0123456789abcdef0?region=mars", "region"),
        ("ssm://i-0123456789abcdef0?region=us-east-1&profile=x", "profile"),
        ("ssm://bastion-a?region=us-east-1", "'bastion-a'"),
        ("ssm://i-0123456789abcdef0/x?region=us-east-1", "ssm://INSTANCE_ID"),
    ],
)
def test_bad_targets_name_the_bad_part(target: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        parse_ssm_target(target)


def test_ssm_target_needs_sessions() -> None:
    with pytest.raises(ConfigError, match="needs the target's AWS sessions"):
        get_executor(f"ssm://{I1}?region={EAST}")


# ---------------------------------------------------------------------- against the lab


@pytest.fixture(scope="module")
def deployed() -> Iterator[tuple[Any, Any, SessionFactory]]:
    from harness.aws.stacks import StackSetDeployer
    from harness.config import load_config
    from harness.lab.lab import Lab
    from harness.targets import lab_sessions

    with Lab([EAST, WEST]) as lab:
        sessions = lab_sessions(lab.info)
        config = load_config({"regions": f"{EAST},{WEST}"}, environ={})
        deployment = StackSetDeployer(config, sessions).deploy()
        yield lab, deployment, sessions


def lab_executor(deployed: Any, region: str = EAST, index: int = 0) -> SsmExecutor:
    lab, deployment, sessions = deployed
    instance_id = deployment.region(region).bastion_ids[index]
    return SsmExecutor(instance_id, region, sessions, clock=lab.clock)


def test_lab_runs_a_command_with_exit_status_and_both_streams(deployed: Any) -> None:
    result = lab_executor(deployed).run("echo out; echo err >&2; exit 3", timeout=30)
    assert (result.rc, result.status, result.stdout) == (3, "Failed", "out\n")
    # As on AWS, the agent appends its own line to stderr for a failed command.
    assert result.stderr == "err\nfailed to run commands: exit status 3"


def test_lab_command_exceeding_its_timeout_reports_timed_out(deployed: Any) -> None:
    ex = lab_executor(deployed)
    with pytest.raises(CommandTimeout, match=ex.instance_id):
        ex.run("sleep 5", timeout=2)  # 2 lab seconds: 100 ms of wall time at x20
    result = SsmExecutor.run_many([ex], "sleep 5", timeout=2)[ex.instance_id]
    assert (result.status, result.rc) == ("TimedOut", -1)


def test_lab_output_truncation_is_detected(deployed: Any) -> None:
    result = lab_executor(deployed).run("head -c 30000 /dev/zero | tr '\\0' x", timeout=30)
    assert result.truncated
    assert len(result.stdout) == STDOUT_LIMIT


def test_lab_unknown_instance_is_a_clear_error(deployed: Any) -> None:
    lab, _deployment, sessions = deployed
    ghost = SsmExecutor("i-0000000000000dead", WEST, sessions, clock=lab.clock)
    with pytest.raises(CommandError, match=f"instance i-0000000000000dead in {WEST}"):
        ghost.run("true", timeout=10)


def test_lab_fan_out_reaches_every_bastion(deployed: Any) -> None:
    _lab, deployment, _sessions = deployed
    executors = [lab_executor(deployed, r.name, i) for r in deployment.regions for i in (0, 1)]
    results = run_many(executors, "echo alive", timeout=30)
    assert {h: r.stdout for h, r in results.items()} == {e.host: "alive\n" for e in executors}
