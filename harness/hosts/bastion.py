"""Bastions: the hosts inside each VPC from which the harness probes DNS and the API.

A :class:`Bastion` is what tests talk to: where it is (region, AZ, VPC address) and how to run
commands there (an executor, SSM by default). ``dig()`` and ``curl()`` build the command with
:mod:`harness.probes`, run it on the bastion and parse the real tool's output, so a probe reads
the same on AWS and in the lab. :func:`discover_bastions` finds a deployment's bastions and
checks, before any test uses them, that each is running and (over SSM) that its agent is
online, naming every bastion that is not.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.aws.session import SessionFactory, aws_call
from harness.clock import REAL_TIME, Clock
from harness.errors import CloudError, CommandError, ConfigError
from harness.hosts.base import CommandResult, Executor, run_expect
from harness.probes.curl import DEFAULT_WRITE_OUT, CurlResult, build_curl_command, parse_curl
from harness.probes.dig import DigQuery, DigResult, parse_dig
from harness.report import allure_support

if TYPE_CHECKING:
    import paramiko

    from harness.aws.stacks import Deployment
    from harness.hosts.ssh import ResolveEndpoint
    from harness.hosts.ssm import PollPolicy

__all__ = [
    "DEFAULT_TIMEOUT",
    "Bastion",
    "SshOptions",
    "bastion_in",
    "discover_bastions",
]

DEFAULT_TIMEOUT = 60.0  # modelled seconds a plain command may take
DEFAULT_CURL_MAX_TIME = 10.0  # curl's --max-time unless the caller sets one: probes are bounded
_DIG_DEFAULT_TIME, _DIG_DEFAULT_TRIES = 5, 3  # dig(1)'s defaults (+time=5, +tries=3)
_PROBE_SLACK = 10.0  # modelled seconds for the shell and the transport around a probe
_DISCOVERY_INTERVAL = 5.0  # modelled seconds between readiness checks while waiting


@dataclass(frozen=True)
class Bastion:
    """One bastion instance and the executor that reaches it."""

    instance_id: str
    region: str
    availability_zone: str
    address: str  # the instance's private (VPC) address
    vpc_id: str
    executor: Executor = field(compare=False, repr=False)

    def run(
        self,
        command: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        expected_duration: float | None = None,
    ) -> CommandResult:
        """Run a shell command on the bastion (see :meth:`Executor.run`)."""
        return self.executor.run(command, timeout, expected_duration=expected_duration)

    def run_expect(
        self, command: str, *, rc: int | Collection[int] = 0, timeout: float = DEFAULT_TIMEOUT
    ) -> CommandResult:
        """Run a command and fail with its output unless it exits with one of ``rc``."""
        __tracebackhide__ = True
        return run_expect(self.executor, command, rc=rc, timeout=timeout)

    def _probe(self, tool: str, command: str, timeout: float) -> CommandResult:
        # Scenario evidence: each probe is an allure step with the tool's raw output attached.
        with allure_support.step(f"{tool} on {self.instance_id} ({self.region})"):
            result = self.run(command, timeout)
            allure_support.attach_command(tool, command, result.stdout, result.stderr, result.rc)
        return result

    def dig(
        self,
        name: str,
        *,
        rdtype: str = "A",
        server: str | None = None,
        port: int | None = None,
        short: bool = False,
        tcp: bool = False,
        time: int | None = None,
        tries: int | None = None,
        timeout: float | None = None,
    ) -> DigResult:
        """Resolve ``name`` from the bastion (its VPC's resolver unless ``server``) with dig.

        ``timeout`` defaults to dig's own worst case (``time`` x ``tries``) plus slack.

        Raises:
            ConfigError: a query value is invalid (named).
            CommandError: dig could not be run (CommandTimeout when it hung).
        """
        query = DigQuery(
            name=name,
            rdtype=rdtype,
            server=server,
            port=port,
            short=short,
            tcp=tcp,
            time=time,
            tries=tries,
        )
        if timeout is None:
            worst = (time or _DIG_DEFAULT_TIME) * (tries or _DIG_DEFAULT_TRIES)
            timeout = worst + _PROBE_SLACK
        result = self._probe("dig", query.command(), timeout)
        return parse_dig(
            result.stdout, short=short, rc=result.rc, rdtype=query.rdtype, stderr=result.stderr
        )

    def curl(
        self,
        url: str,
        *,
        method: str | None = None,
        headers: Iterable[str] = (),
        max_time: float | None = DEFAULT_CURL_MAX_TIME,
        connect_timeout: float | None = None,
        insecure: bool = False,
        resolve: Iterable[str] = (),
        cacert: str | None = None,
        write_out: str | None = DEFAULT_WRITE_OUT,
        timeout: float | None = None,
    ) -> CurlResult:
        """Request ``url`` from the bastion with curl; a failed transfer is data, not an error.

        ``timeout`` (the command's) defaults to ``max_time`` plus slack.

        Raises:
            ConfigError: a request value is invalid (named).
            CommandError: curl could not be run (CommandTimeout when it hung).
        """
        command = build_curl_command(
            url,
            method=method,
            headers=headers,
            max_time=max_time,
            connect_timeout=connect_timeout,
            insecure=insecure,
            resolve=resolve,
            cacert=cacert,
            write_out=write_out,
        )
        if timeout is None:
            timeout = (max_time or DEFAULT_TIMEOUT) + _PROBE_SLACK
        result = self._probe("curl", command, timeout)
        return parse_curl(result.stdout, result.stderr, result.rc, write_out=write_out)


@dataclass(frozen=True)
class SshOptions:
    """How to reach bastions over SSH (``via="ssh"``): key, user, endpoints, host keys."""

    key: paramiko.PKey | str | Path
    user: str = "ec2-user"
    resolve_endpoint: ResolveEndpoint | None = None
    host_keys: Mapping[str, paramiko.PKey] = field(default_factory=dict)  # by VPC address
    known_hosts: str | Path | None = None
    host_key_policy: paramiko.MissingHostKeyPolicy | None = None
    connect_timeout: float = 10.0


def bastion_in(bastions: Sequence[Bastion], region: str) -> Bastion:
    """Return the first bastion in ``region`` (availability-zone order).

    Raises:
        ConfigError: no bastion is in ``region`` (the message lists the regions that have one).
    """
    for bastion in bastions:
        if bastion.region == region:
            return bastion
    regions = ", ".join(dict.fromkeys(b.region for b in bastions)) or "none"
    raise ConfigError(f"no bastion in region {region!r}; bastions are in: {regions}")


def discover_bastions(
    deployment: Deployment,
    sessions: SessionFactory,
    *,
    clock: Clock = REAL_TIME,
    via: str = "ssm",
    ssh: SshOptions | None = None,
    poll: PollPolicy | None = None,
    wait: float = 0.0,
) -> list[Bastion]:
    """Find the deployment's bastions and check each can take commands.

    Every bastion must be ``running``; over SSM its agent must also be registered and
    ``Online`` (``DescribeInstanceInformation``); over SSH it must have been launched with a key
    pair. Agents register some time after a stack completes (minutes on AWS), so the check is
    repeated for up to ``wait`` modelled seconds before giving up. Bastions are returned in
    deployment order (region, then availability zone A, B).

    Raises:
        ConfigError: ``via`` is unknown, or ``via="ssh"`` without ``ssh`` options.
        CommandError: some bastions cannot take commands; every one is named with its region
            and the reason.
        CloudError: an EC2 or SSM call failed.
    """
    if via not in ("ssm", "ssh"):
        raise ConfigError(f"bastion transport {via!r} is unknown; known: ssm, ssh")
    if via == "ssh" and ssh is None:
        raise ConfigError("bastion transport ssh needs SshOptions (the private key at least)")
    deadline = clock.now() + wait
    while True:
        found, problems = _discover_once(deployment, sessions, clock, via, ssh, poll)
        if not problems:
            return found
        if clock.now() >= deadline:
            break
        clock.sleep(min(_DISCOVERY_INTERVAL, max(deadline - clock.now(), 0.0)))
    waited = f" (after waiting {wait:g} s)" if wait > 0 else ""
    raise CommandError(
        f"{len(problems)} bastion(s) cannot take commands over {via.upper()}{waited}: "
        + "; ".join(problems)
    )


def _discover_once(
    deployment: Deployment,
    sessions: SessionFactory,
    clock: Clock,
    via: str,
    ssh: SshOptions | None,
    poll: PollPolicy | None,
) -> tuple[list[Bastion], list[str]]:
    found: list[Bastion] = []
    problems: list[str] = []
    for region in deployment.regions:
        ids = list(region.bastion_ids)
        instances = _describe_instances(sessions, region.name, ids, problems)
        ping = _ping_statuses(sessions, region.name, ids) if via == "ssm" else {}
        for instance_id in ids:
            instance = instances.get(instance_id)
            if instance is None:
                continue  # already reported by _describe_instances
            where = f"bastion {instance_id} in {region.name}"
            state = instance.get("State", {}).get("Name", "unknown")
            if state != "running":
                problems.append(f"{where} is {state}, not running")
                continue
            if via == "ssm" and ping.get(instance_id) != "Online":
                status = ping.get(instance_id)
                problems.append(
                    f"{where}: SSM agent is {status}, not Online"
                    if status
                    else f"{where} is not registered with SSM (agent not running, no instance "
                    "profile, or no route to the SSM endpoints)"
                )
                continue
            if via == "ssh" and not instance.get("KeyName"):
                problems.append(
                    f"{where} was launched without a key pair, so nobody can log in over SSH "
                    "(deploy the network stack with KeyName)"
                )
                continue
            address = instance.get("PrivateIpAddress", "")
            executor = _executor(via, instance_id, region.name, address, sessions, clock, ssh, poll)
            found.append(
                Bastion(
                    instance_id=instance_id,
                    region=region.name,
                    availability_zone=instance.get("Placement", {}).get("AvailabilityZone", ""),
                    address=address,
                    vpc_id=instance.get("VpcId", ""),
                    executor=executor,
                )
            )
    if problems:
        for bastion in found:
            bastion.executor.close()
    return found, problems


def _describe_instances(
    sessions: SessionFactory, region: str, ids: list[str], problems: list[str]
) -> dict[str, Mapping[str, Any]]:
    ec2 = sessions.client("ec2", region)
    try:
        with aws_call(f"DescribeInstances {', '.join(ids)}", region):
            reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    except CloudError as exc:
        if exc.code != "InvalidInstanceID.NotFound":
            raise
        problems.append(f"bastion(s) {', '.join(ids)} in {region}: {exc}")
        return {}
    instances = {i["InstanceId"]: i for r in reservations for i in r.get("Instances", [])}
    for instance_id in ids:
        if instance_id not in instances:
            problems.append(f"bastion {instance_id} in {region} does not exist")
    return instances


def _ping_statuses(sessions: SessionFactory, region: str, ids: list[str]) -> dict[str, str]:
    ssm = sessions.client("ssm", region)
    statuses: dict[str, str] = {}
    with aws_call("DescribeInstanceInformation", region):
        pages = ssm.get_paginator("describe_instance_information").paginate(
            Filters=[{"Key": "InstanceIds", "Values": ids}]
        )
        for page in pages:
            for info in page.get("InstanceInformationList", []):
                statuses[info["InstanceId"]] = str(info.get("PingStatus", ""))
    return statuses


def _executor(
    via: str,
    instance_id: str,
    region: str,
    address: str,
    sessions: SessionFactory,
    clock: Clock,
    ssh: SshOptions | None,
    poll: PollPolicy | None,
) -> Executor:
    if via == "ssm":
        from harness.hosts.ssm import SsmExecutor

        return SsmExecutor(instance_id, region, sessions, clock=clock, poll=poll)
    from harness.hosts.ssh import SshExecutor

    assert ssh is not None
    return SshExecutor(
        ssh.user,
        address,
        key=ssh.key,
        clock=clock,
        resolve_endpoint=ssh.resolve_endpoint,
        host_keys=ssh.host_keys,
        known_hosts=ssh.known_hosts,
        host_key_policy=ssh.host_key_policy,
        connect_timeout=ssh.connect_timeout,
    )
