"""The SSH executor against the lab's SSH servers, and the key pair it logs in with.

Bastions are launched through boto3 with the key pair :func:`ensure_key_pair` imports, so the
whole path is real: key file -> ImportKeyPair -> RunInstances(KeyName) -> lab sshd -> paramiko.
Commands run in the bastions' shells (``lab.bastions``), which set ``AWS_SSM_INSTANCE_ID``, so a
test can tell which bastion ran a command.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.aws.session import SessionFactory
from harness.errors import CommandError, CommandTimeout, ConfigError, ProvisioningError
from harness.hosts import get_executor
from harness.hosts.keys import ensure_key_pair
from harness.hosts.ssh import SshExecutor, lab_endpoint_resolver, parse_ssh_target
from harness.lab.lab import Lab
from harness.targets import lab_sessions

REGIONS = ("us-east-1", "us-west-2")
REGION = REGIONS[0]
CIDR = "10.1.0.0/16"
SSH_RULE = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": CIDR}]}
KEY_NAME = "regiondrill-test"


COMPONENTS = (
    "harness.lab.network:Network",
    "harness.lab.bastions:Bastions",
    "harness.lab.sshd:SshServers",
)


@dataclass
class World:
    lab: Lab
    sessions: SessionFactory
    key_path: Path
    group_id: str = ""
    bastions: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (id, address)

    def executor(self, name: str, **options: Any) -> SshExecutor:
        _instance_id, address = self.bastions[name]
        settings: dict[str, Any] = {
            "key": self.key_path,
            "clock": self.lab.clock,
            "resolve_endpoint": lab_endpoint_resolver(self.lab.ports),
            "host_keys": self.lab.ssh.host_keys(),
            "connect_timeout": 2.0,
        }
        settings.update(options)
        return SshExecutor("ec2-user", address, **settings)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with Lab(REGIONS, components=COMPONENTS) as lab:
        sessions = lab_sessions(lab.info)
        key_path = ensure_key_pair(sessions, REGIONS, KEY_NAME, tmp_path_factory.mktemp("keys"))
        state = World(lab=lab, sessions=sessions, key_path=key_path)
        ec2 = sessions.client("ec2", REGION)
        vpc_id = ec2.create_vpc(CidrBlock=CIDR)["Vpc"]["VpcId"]
        subnet_id = ec2.create_subnet(
            VpcId=vpc_id, CidrBlock="10.1.1.0/24", AvailabilityZone=f"{REGION}a"
        )["Subnet"]["SubnetId"]
        state.group_id = ec2.create_security_group(
            GroupName="bastions", Description="SSH from the VPC", VpcId=vpc_id
        )["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=state.group_id, IpPermissions=[SSH_RULE])
        for name in ("a", "b"):
            instance = ec2.run_instances(
                ImageId="ami-12c6146b",
                MinCount=1,
                MaxCount=1,
                KeyName=KEY_NAME,
                SubnetId=subnet_id,
                SecurityGroupIds=[state.group_id],
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": [{"Key": "regiondrill:role", "Value": "bastion"}],
                    }
                ],
            )["Instances"][0]
            state.bastions[name] = (instance["InstanceId"], instance["PrivateIpAddress"])
        ids = {instance_id for instance_id, _address in state.bastions.values()}
        deadline = lab.clock.now() + 100  # 5 s of wall time at x20
        while not ids <= set(lab.ssh.serving()):
            assert lab.clock.now() < deadline, "the lab never served SSH for the bastions"
            lab.clock.sleep(0.2)
        yield state


@pytest.fixture(scope="module")
def a(world: World) -> Iterator[SshExecutor]:
    executor = world.executor("a")
    yield executor
    executor.close()


# ---------------------------------------------------------------------- running commands


def test_run_returns_exit_status_streams_and_a_transport_status(
    world: World, a: SshExecutor
) -> None:
    result = a.run("echo $AWS_SSM_INSTANCE_ID; echo err >&2; exit 4", timeout=30)
    assert (result.rc, result.stderr) == (4, "err\n")
    assert result.stdout == world.bastions["a"][0] + "\n"  # it ran on that bastion
    assert (result.status, result.host, result.truncated) == ("Failed", a.host, False)
    ok = a.run("printf 'x y'", timeout=30)
    assert (ok.rc, ok.status, ok.stdout) == (0, "Success", "x y")


def test_timeouts_are_modelled_seconds_and_raise_command_timeout(a: SshExecutor) -> None:
    # 2 lab seconds are 100 ms of wall time at x20: a 1 s sleep cannot finish in them.
    with pytest.raises(CommandTimeout, match=r"ssh://ec2-user@10\.1\.1\.\d+.*within 2 s"):
        a.run("echo begun; sleep 1", timeout=2)
    # 40 lab seconds are 2 s of wall time: ample for a 50 ms sleep.
    assert a.run("sleep 0.05; echo done", timeout=40).stdout == "done\n"


def test_concurrent_runs_share_one_connection(a: SshExecutor) -> None:
    a.run("true", timeout=30)
    connection = a._client
    results: dict[int, str] = {}

    def work(n: int) -> None:
        results[n] = a.run(f"echo {n}", timeout=60).stdout

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {n: f"{n}\n" for n in range(8)}
    assert a._client is connection


def test_a_dropped_connection_is_reopened(a: SshExecutor) -> None:
    a.run("true", timeout=30)
    transport = a._client.get_transport() if a._client else None
    assert transport is not None
    transport.close()
    assert a.run("echo again", timeout=30).stdout == "again\n"


def test_output_beyond_the_limit_is_marked_truncated(world: World) -> None:
    executor = world.executor("a", max_output=1000)
    try:
        result = executor.run("head -c 5000 /dev/zero | tr '\\0' z", timeout=30)
    finally:
        executor.close()
    assert result.truncated
    assert result.stdout == "z" * 1000


def test_a_jump_host_reaches_the_other_bastion(world: World) -> None:
    _id_a, address_a = world.bastions["a"]
    id_b, _address_b = world.bastions["b"]
    executor = world.executor("b", jump=f"ssh://ec2-user@{address_a}")
    try:
        assert executor.run("echo $AWS_SSM_INSTANCE_ID", timeout=30).stdout == id_b + "\n"
    finally:
        executor.close()


# ---------------------------------------------------------------------- failures are clear


def test_a_key_the_bastion_was_not_launched_with_is_refused(world: World, tmp_path: Path) -> None:
    other = ensure_key_pair(world.sessions, [REGION], "someone-else", tmp_path)
    executor = world.executor("a", key=other)
    with pytest.raises(CommandError, match="authentication failed for user 'ec2-user'"):
        executor.run("true", timeout=30)


def test_an_unknown_host_key_is_rejected_by_default(world: World) -> None:
    executor = world.executor("a", host_keys={})
    with pytest.raises(CommandError, match=r"SSH connection failed.*not found in known_hosts"):
        executor.run("true", timeout=30)


def test_a_host_key_mismatch_is_refused(world: World) -> None:
    _id_a, address_a = world.bastions["a"]
    id_b, _address_b = world.bastions["b"]
    executor = world.executor("a", host_keys={address_a: world.lab.ssh.host_key(id_b)})
    with pytest.raises(CommandError, match="host key mismatch"):
        executor.run("true", timeout=30)


def test_a_bastion_the_network_drops_fails_within_the_connect_timeout(world: World) -> None:
    ec2 = world.sessions.client("ec2", REGION)
    ec2.revoke_security_group_ingress(GroupId=world.group_id, IpPermissions=[SSH_RULE])
    executor = world.executor("b", connect_timeout=0.3)
    try:
        with pytest.raises(CommandError, match=f"ssh://ec2-user@{executor.host}:22"):
            executor.run("true", timeout=30)
    finally:
        ec2.authorize_security_group_ingress(GroupId=world.group_id, IpPermissions=[SSH_RULE])


def test_the_lab_resolver_refuses_addresses_outside_the_vpc_space(world: World) -> None:
    resolve = lab_endpoint_resolver(world.lab.ports)
    assert resolve("10.1.1.9", 22) == ("127.1.1.9", world.lab.ports.lab_port(22))
    with pytest.raises(CommandError, match=r"cannot serve SSH host '192\.168\.0\.1'"):
        resolve("192.168.0.1", 22)


# ---------------------------------------------------------------------- the key pair


def test_the_key_pair_exists_in_every_region_with_a_private_file_only_we_read(
    world: World,
) -> None:
    assert stat.S_IMODE(os.stat(world.key_path).st_mode) == 0o600
    public = paramiko.PKey.from_path(world.key_path).get_base64()
    for region in REGIONS:
        pair = world.sessions.client("ec2", region).describe_key_pairs(
            KeyNames=[KEY_NAME], IncludePublicKey=True
        )["KeyPairs"][0]
        assert pair["PublicKey"].split()[1] == public


def test_ensure_key_pair_is_idempotent(world: World) -> None:
    again = ensure_key_pair(world.sessions, REGIONS, KEY_NAME, world.key_path.parent)
    assert again == world.key_path


def test_a_key_pair_with_another_public_key_is_never_overwritten(
    world: World, tmp_path: Path
) -> None:
    with pytest.raises(ProvisioningError, match=f"'{KEY_NAME}' in {REGION} already exists"):
        ensure_key_pair(world.sessions, REGIONS, KEY_NAME, tmp_path)


@pytest.mark.parametrize("name", ["", "a/b", "x" * 256])
def test_bad_key_pair_names_are_refused(name: str, tmp_path: Path) -> None:
    sessions = SessionFactory(endpoint_url="http://127.0.0.1:9", access_key="a", secret_key="b")
    with pytest.raises(ConfigError, match="key pair name"):
        ensure_key_pair(sessions, REGIONS, name, tmp_path)


# ---------------------------------------------------------------------- targets


@given(
    user=st.from_regex(r"\A[a-z_][a-z0-9_-]{0,15}\Z"),
    octets=st.tuples(*[st.integers(0, 255)] * 3),
    port=st.one_of(st.none(), st.integers(1, 65535)),
)
def test_target_strings_round_trip(user: str, octets: tuple[int, ...], port: int | None) -> None:
    host = "10." + ".".join(map(str, octets))
    target = f"ssh://{user}@{host}" + (f":{port}" if port else "")
    assert parse_ssh_target(target) == (user, host, port or 22)


@pytest.mark.parametrize(
    ("target", "named"),
    [
        ("ssh://10.1.1.4", "user ''"),
        ("ssh://ec2-user@", "host ''"),
        ("ssh://ec2-user@10.1.1.4:0", "port"),
        ("ssh://ec2-user@10.1.1.4:99999", "10.1.1.4:99999"),
        ("ssh://ec2-user:secret@10.1.1.4", "USER@HOST"),
        ("ssh://ec2-user@10.1.1.4/home", "USER@HOST"),
        ("sftp://ec2-user@10.1.1.4", "must look like"),
    ],
)
def test_bad_targets_name_the_bad_part(target: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        parse_ssh_target(target)


def test_get_executor_opens_ssh_targets(world: World) -> None:
    _id_a, address_a = world.bastions["a"]
    opened = get_executor(
        f"ssh://ec2-user@{address_a}",
        key=world.key_path,
        clock=world.lab.clock,
        resolve_endpoint=lab_endpoint_resolver(world.lab.ports),
        host_keys=world.lab.ssh.host_keys(),
    )
    try:
        assert isinstance(opened, SshExecutor)
        assert opened.target == f"ssh://ec2-user@{address_a}"
        assert opened.run("echo opened", timeout=30).stdout == "opened\n"
    finally:
        opened.close()


def test_ssh_targets_need_a_key() -> None:
    with pytest.raises(ConfigError, match="needs a private key"):
        get_executor("ssh://ec2-user@10.1.1.4")


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nope.pem'} does not exist"):
        SshExecutor("ec2-user", "10.1.1.4", key=tmp_path / "nope.pem")
