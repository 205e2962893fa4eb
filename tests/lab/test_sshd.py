"""The lab's SSH servers, tested with a real SSH client (paramiko) through the EC2 API.

Bastions are launched with boto3 into a small VPC (a subnet, a security group admitting SSH from
the VPC, EC2 key pairs) so each test can change one control-plane fact — a key pair, a rule,
the instance state — and see the SSH server follow it. Commands run in the bastions' shells
(``lab.bastions``), which set ``AWS_SSM_INSTANCE_ID`` as the SSM agent does, so each test can
tell where a command ran.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.aws.session import SessionFactory
from harness.lab.addresses import to_loopback
from harness.lab.lab import Lab
from harness.lab.sshd import LOGIN_USER, SHELL_REFUSAL, SshServers
from harness.targets import lab_sessions

REGION = "us-east-1"
CIDR = "10.1.0.0/16"
SSH_RULE = {
    "IpProtocol": "tcp",
    "FromPort": 22,
    "ToPort": 22,
    "IpRanges": [{"CidrIp": CIDR}],
}


COMPONENTS = (
    "harness.lab.network:Network",
    "harness.lab.bastions:Bastions",
    "harness.lab.sshd:SshServers",
)


def new_key() -> tuple[paramiko.PKey, str]:
    """Return a fresh Ed25519 key (for paramiko) and its OpenSSH public line."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem)), public.decode()


@dataclass
class World:
    lab: Lab
    sessions: SessionFactory
    subnet_id: str = ""
    group_id: str = ""
    key: Any = None  # the launch key pair's private key
    bastions: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (id, address)

    @property
    def ec2(self) -> Any:
        return self.sessions.client("ec2", REGION)

    @property
    def ssh(self) -> SshServers:
        return self.lab.ssh  # type: ignore[no-any-return]

    def launch(self, name: str, key_name: str | None) -> tuple[str, str]:
        extra = {"KeyName": key_name} if key_name else {}
        reservation = self.ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            SubnetId=self.subnet_id,
            SecurityGroupIds=[self.group_id],
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": "regiondrill:role", "Value": "bastion"}],
                }
            ],
            **extra,
        )
        instance = reservation["Instances"][0]
        found = (instance["InstanceId"], instance["PrivateIpAddress"])
        self.bastions[name] = found
        wait_for(lambda: found[0] in self.ssh.serving(), f"an SSH listener for {found[0]}")
        return found

    def client(
        self, name: str, *, key: paramiko.PKey | None = None, user: str = LOGIN_USER
    ) -> paramiko.SSHClient:
        instance_id, address = self.bastions[name]
        return connect(self, address, self.ssh.host_key(instance_id), key or self.key, user)


def wait_for(condition: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def connect(
    world: World,
    address: str,
    host_key: paramiko.PKey,
    key: paramiko.PKey,
    user: str = LOGIN_USER,
    *,
    sock: Any = None,
    timeout: float = 3.0,
) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.get_host_keys().add(address, host_key.get_name(), host_key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if sock is None:
        sock = socket.create_connection(
            (to_loopback(address), world.lab.ports.lab_port(22)), timeout=timeout
        )
    client.connect(
        address,
        username=user,
        pkey=key,
        sock=sock,
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
        allow_agent=False,
        look_for_keys=False,
    )
    return client


def execute(client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
    _stdin, stdout, stderr = client.exec_command(command, timeout=5)
    out, err = stdout.read().decode(), stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with Lab([REGION], components=COMPONENTS) as lab:
        state = World(lab=lab, sessions=lab_sessions(lab.info))
        ec2 = state.ec2
        vpc_id = ec2.create_vpc(CidrBlock=CIDR)["Vpc"]["VpcId"]
        state.subnet_id = ec2.create_subnet(
            VpcId=vpc_id, CidrBlock="10.1.1.0/24", AvailabilityZone=f"{REGION}a"
        )["Subnet"]["SubnetId"]
        state.group_id = ec2.create_security_group(
            GroupName="bastions", Description="SSH from the VPC", VpcId=vpc_id
        )["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=state.group_id, IpPermissions=[SSH_RULE])
        state.key, public = new_key()
        ec2.import_key_pair(KeyName="launch-key", PublicKeyMaterial=public.encode())
        state.launch("a", "launch-key")
        state.launch("b", "launch-key")
        yield state


# ---------------------------------------------------------------------- serving


def test_each_bastion_is_served_on_its_vpc_address_at_the_lab_ssh_port(world: World) -> None:
    _instance_id, address = world.bastions["a"]
    assert address.startswith("10.1.1.")
    with socket.create_connection(
        (to_loopback(address), world.lab.ports.lab_port(22)), timeout=3
    ) as sock:
        banner = sock.recv(256)
    assert banner.startswith(b"SSH-2.0-OpenSSH_8.7")


def test_exec_runs_on_that_bastion_and_returns_streams_and_exit_status(world: World) -> None:
    client = world.client("a")
    try:
        rc, out, err = execute(client, "echo to-stdout; echo $AWS_SSM_INSTANCE_ID >&2; exit 7")
    finally:
        client.close()
    assert (rc, out, err) == (7, "to-stdout\n", world.bastions["a"][0] + "\n")


def test_stdin_is_streamed_to_the_command(world: World) -> None:
    client = world.client("a")
    try:
        stdin, stdout, _stderr = client.exec_command("tr a-z A-Z", timeout=5)
        stdin.write(b"quiet please\n")
        stdin.channel.shutdown_write()
        assert stdout.read() == b"QUIET PLEASE\n"
        assert stdout.channel.recv_exit_status() == 0
    finally:
        client.close()


def test_a_command_killed_by_a_signal_exits_128_plus_the_signal(world: World) -> None:
    client = world.client("a")
    try:
        assert execute(client, "kill -9 $$")[0] == 137
    finally:
        client.close()


def test_a_command_whose_client_went_away_is_killed(world: World, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    client = world.client("a")
    try:
        channel = client.get_transport().open_session(timeout=3)  # type: ignore[union-attr]
        channel.exec_command(f"echo $$ > {pid_file}; exec sleep 30")
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the command's pid")
        pid = int(pid_file.read_text())
        assert Path(f"/proc/{pid}").exists()
        channel.close()
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), f"process {pid} to be killed")
    finally:
        client.close()


def test_large_output_arrives_whole(world: World) -> None:
    client = world.client("a")
    try:
        rc, out, _err = execute(client, "head -c 300000 /dev/zero | tr '\\0' y")
    finally:
        client.close()
    assert rc == 0
    assert out == "y" * 300_000


def test_host_keys_differ_per_bastion_and_a_mismatch_is_detected(world: World) -> None:
    (id_a, address_a), (id_b, _address_b) = world.bastions["a"], world.bastions["b"]
    key_a, key_b = world.ssh.host_key(id_a), world.ssh.host_key(id_b)
    assert key_a.get_name() == "ssh-ed25519"
    assert key_a.asbytes() != key_b.asbytes()
    assert world.ssh.host_keys()[address_a].asbytes() == key_a.asbytes()
    with pytest.raises(paramiko.BadHostKeyException):
        connect(world, address_a, key_b, world.key)


# ---------------------------------------------------------------------- authentication


def test_a_key_other_than_the_launch_key_pair_is_rejected(world: World) -> None:
    stranger, _public = new_key()
    with pytest.raises(paramiko.AuthenticationException):
        world.client("a", key=stranger)


@pytest.mark.parametrize("user", ["root", "ubuntu", "admin"])
def test_only_ec2_user_can_log_in(world: World, user: str) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        world.client("a", user=user)


def test_password_authentication_is_not_offered(world: World) -> None:
    _instance_id, address = world.bastions["a"]
    sock = socket.create_connection((to_loopback(address), world.lab.ports.lab_port(22)), 3)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=3)
        with pytest.raises(paramiko.BadAuthenticationType) as caught:
            transport.auth_password(LOGIN_USER, "hunter2")
        assert caught.value.allowed_types == ["publickey"]
    finally:
        transport.close()


def test_a_bastion_launched_without_a_key_pair_accepts_nobody(world: World) -> None:
    world.launch("keyless", None)
    with pytest.raises(paramiko.AuthenticationException):
        world.client("keyless")


def test_the_launch_key_still_works_after_its_key_pair_is_deleted(world: World) -> None:
    key, public = new_key()
    world.ec2.import_key_pair(KeyName="short-lived", PublicKeyMaterial=public.encode())
    world.launch("orphan", "short-lived")
    world.ec2.delete_key_pair(KeyName="short-lived")
    world.lab.notify_changed()
    client = world.client("orphan", key=key)  # cloud-init installed it at first boot
    try:
        assert execute(client, "echo still-in")[1] == "still-in\n"
    finally:
        client.close()


# ---------------------------------------------------------------------- reachability


def assert_dropped(world: World, address: str) -> None:
    """The connection is accepted by the kernel but nothing ever answers (a silent drop)."""
    with socket.create_connection(
        (to_loopback(address), world.lab.ports.lab_port(22)), timeout=3
    ) as sock:
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(256)


def test_revoking_ssh_from_the_vpc_cuts_the_harness_off(world: World) -> None:
    _instance_id, address = world.bastions["a"]
    world.ec2.revoke_security_group_ingress(GroupId=world.group_id, IpPermissions=[SSH_RULE])
    try:
        assert_dropped(world, address)
    finally:
        world.ec2.authorize_security_group_ingress(GroupId=world.group_id, IpPermissions=[SSH_RULE])
    world.client("a").close()  # restored


def test_a_stopped_or_terminated_bastion_drops_connections(world: World) -> None:
    instance_id, address = world.launch("doomed", "launch-key")
    world.ec2.stop_instances(InstanceIds=[instance_id])
    assert_dropped(world, address)
    world.ec2.terminate_instances(InstanceIds=[instance_id])
    assert_dropped(world, address)


# ---------------------------------------------------------------------- sessions and channels


def test_an_interactive_shell_gets_a_message_and_exit_status_1(world: World) -> None:
    client = world.client("a")
    try:
        channel = client.get_transport().open_session(timeout=3)  # type: ignore[union-attr]
        channel.invoke_shell()
        channel.settimeout(3)
        assert channel.recv_exit_status() == 1
        assert channel.makefile_stderr("rb").read().decode() == SHELL_REFUSAL
    finally:
        client.close()


def test_a_pty_request_is_refused(world: World) -> None:
    client = world.client("a")
    try:
        channel = client.get_transport().open_session(timeout=3)  # type: ignore[union-attr]
        with pytest.raises(paramiko.SSHException):
            channel.get_pty()
    finally:
        client.close()


def test_without_the_bastions_component_exec_fails_loudly(world: World) -> None:
    bastions, world.lab.bastions = world.lab.bastions, None
    client = world.client("a")
    try:
        rc, _out, err = execute(client, "true")
    finally:
        world.lab.bastions = bastions
        client.close()
    assert rc == 255
    assert "bastions component is not running" in err


def test_a_jump_through_one_bastion_reaches_another_from_inside_the_vpc(world: World) -> None:
    (_id_a, _address_a), (id_b, address_b) = world.bastions["a"], world.bastions["b"]
    jump = world.client("a")
    try:
        transport = jump.get_transport()
        assert transport is not None
        tunnel = transport.open_channel("direct-tcpip", (address_b, 22), ("127.0.0.1", 0))
        inner = connect(world, address_b, world.ssh.host_key(id_b), world.key, sock=tunnel)
        try:
            assert execute(inner, "echo $AWS_SSM_INSTANCE_ID")[1] == id_b + "\n"
        finally:
            inner.close()
    finally:
        jump.close()


def test_a_forward_the_network_drops_stays_silent(world: World) -> None:
    _id_b, address_b = world.bastions["b"]
    jump = world.client("a")
    try:
        transport = jump.get_transport()
        assert transport is not None
        # The bastion group admits only 22: port 443 on b is dropped, so nothing ever answers.
        tunnel = transport.open_channel("direct-tcpip", (address_b, 443), ("127.0.0.1", 0))
        tunnel.settimeout(0.3)
        tunnel.sendall(b"hello?")
        with pytest.raises(TimeoutError):
            tunnel.recv(10)
    finally:
        jump.close()


@pytest.mark.parametrize("destination", ["example.com", "192.168.1.1"])
def test_forwarding_goes_to_vpc_addresses_only(world: World, destination: str) -> None:
    jump = world.client("a")
    try:
        transport = jump.get_transport()
        assert transport is not None
        with pytest.raises(paramiko.ChannelException):
            transport.open_channel("direct-tcpip", (destination, 22), ("127.0.0.1", 0))
    finally:
        jump.close()
