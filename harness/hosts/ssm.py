"""Run commands on instances through SSM Run Command (``AWS-RunShellScript``).

One ``SendCommand`` per region (per 50 instances, the API's limit) carries the command to every
instance of a fan-out; each instance's invocation is then polled with ``GetCommandInvocation``
and exponential backoff. The same code runs against AWS and the lab, which answers these calls
with AWS's semantics on its own clock.

Semantics followed (AWS Systems Manager API reference, Run Command statuses):

- ``executionTimeout`` is ``ceil(timeout)`` in the target's modelled seconds (1..172800): the
  agent kills the command and the invocation ends ``TimedOut`` (``ExecutionTimedOut``).
  ``TimeoutSeconds`` (delivery) is the API minimum, 30: an instance that does not pick the
  command up in time ends ``DeliveryTimedOut``.
- An invocation is not visible at once: ``GetCommandInvocation`` answers
  ``InvocationDoesNotExist`` for the first moments after ``SendCommand``. Within a grace period
  that means "not yet"; after it, the instance is reported as not running the command.
- Throttling errors left after botocore's own retries back the poller off instead of failing.
- ``StandardOutputContent`` holds the first 24,000 characters of stdout and
  ``StandardErrorContent`` the first 8,000 of stderr. Output at or beyond those lengths is marked
  ``truncated``; the full output needs ``OutputS3BucketName``, which the harness does not use
  (its probes print compact lines well under the limit).
- ``Pending``/``InProgress``/``Delayed``/``Cancelling`` are transient. ``Success`` and
  ``Failed`` (the command ran; rc is ``ResponseCode``) are results. ``TimedOut`` is a result
  with rc -1 in a fan-out and :class:`~harness.errors.CommandTimeout` from ``run``.
  ``Undeliverable``, ``DeliveryTimedOut``, ``Terminated``, ``InvalidPlatform``, ``AccessDenied``
  and ``Cancelled`` mean the command did not run (to completion) on that instance:
  :class:`~harness.errors.CommandError` naming the instance and region.
- Ctrl-C while waiting cancels the command (``CancelCommand``) before re-raising, so nothing
  keeps running on the bastions.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar
from urllib.parse import parse_qs, urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from harness.aws.session import SessionFactory, error_code
from harness.clock import REAL_TIME, Clock
from harness.errors import CommandError, CommandTimeout, ConfigError
from harness.hosts.base import CommandResult, Executor, FanOutError, gather, tail

__all__ = [
    "DOCUMENT",
    "MAX_EXECUTION_TIMEOUT",
    "STDERR_LIMIT",
    "STDOUT_LIMIT",
    "PollPolicy",
    "SsmExecutor",
    "SsmFleet",
    "parse_ssm_target",
]

T = TypeVar("T")

DOCUMENT = "AWS-RunShellScript"
STDOUT_LIMIT = 24_000  # characters of stdout GetCommandInvocation returns
STDERR_LIMIT = 8_000  # characters of stderr GetCommandInvocation returns
MAX_EXECUTION_TIMEOUT = 172_800  # AWS-RunShellScript's executionTimeout maximum (48 h)
DELIVERY_TIMEOUT = 30  # SendCommand TimeoutSeconds: the API minimum
MAX_INSTANCES_PER_CALL = 50  # SendCommand InstanceIds limit
THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)
TRANSIENT_STATUSES = frozenset({"Pending", "InProgress", "Delayed", "Cancelling"})
# Final statuses (Status or StatusDetails) meaning the command did not run to completion.
NOT_RUN = {
    "Undeliverable": "the command could not be delivered (instance stopped, terminated or not "
    "managed by SSM)",
    "DeliveryTimedOut": f"the command was not delivered within {DELIVERY_TIMEOUT} s (SSM agent "
    "offline?)",
    "Terminated": "SSM terminated the invocation (the command exceeded its MaxErrors limit)",
    "InvalidPlatform": f"{DOCUMENT} cannot run on this instance's platform",
    "AccessDenied": "the instance or caller is not allowed to run the command",
    "Cancelled": "the command was cancelled",
    "Canceled": "the command was cancelled",
}
_INSTANCE_ID = re.compile(r"(?:i|mi)-[0-9a-f]{8,17}\Z")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]\Z")


def parse_ssm_target(target: str) -> tuple[str, str]:
    """Return ``(instance_id, region)`` from ``ssm://INSTANCE_ID?region=REGION``.

    Raises:
        ConfigError: the string is not such a target (the bad part is named).
    """
    parts = urlsplit(target)
    if parts.scheme != "ssm":
        raise ConfigError(f"SSM target {target!r} must start with ssm://")
    instance_id = parts.netloc
    if not _INSTANCE_ID.match(instance_id):
        raise ConfigError(
            f"SSM target {target!r}: {instance_id!r} is not an instance id (i-0123456789abcdef0)"
        )
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigError(f"SSM target {target!r} must be ssm://INSTANCE_ID?region=REGION")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"region"})
    if unknown:
        raise ConfigError(f"SSM target {target!r}: unknown parameter(s) {', '.join(unknown)}")
    regions = query.get("region", [])
    if len(regions) != 1 or not _REGION.match(regions[0]):
        raise ConfigError(f"SSM target {target!r} needs exactly one ?region=REGION (us-east-1)")
    return instance_id, regions[0]


@dataclass(frozen=True)
class PollPolicy:
    """How to wait for invocations, in wall seconds.

    The lab answers in milliseconds, so it is polled from 20 ms; AWS from 0.5 s (its API rate
    limits are per account, and an invocation rarely finishes under a second).
    """

    initial: float
    maximum: float
    factor: float = 1.6
    grace: float = 10.0  # InvocationDoesNotExist within this time means "not visible yet"
    margin: float = 30.0  # added to the command's own time budget before giving up

    @classmethod
    def for_sessions(cls, sessions: SessionFactory) -> PollPolicy:
        if sessions.is_lab:
            return cls(initial=0.02, maximum=0.25, grace=2.0, margin=3.0)
        return cls(initial=0.5, maximum=5.0, grace=15.0, margin=60.0)


@dataclass
class _Invocation:
    instance_id: str
    region: str
    command_id: str
    sent_at: float  # monotonic


@dataclass
class _Outcome:
    results: dict[str, CommandResult] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    timeouts: dict[str, str] = field(default_factory=dict)  # instance -> why (for messages)


class SsmFleet:
    """Run one command on many instances with one ``SendCommand`` per region."""

    def __init__(
        self,
        sessions: SessionFactory,
        *,
        clock: Clock = REAL_TIME,
        poll: PollPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.poll = poll or PollPolicy.for_sessions(sessions)
        self._sleep = sleep

    def run(
        self, targets: Sequence[tuple[str, str]], command: str, timeout: float
    ) -> dict[str, CommandResult]:
        """Run ``command`` on every ``(instance_id, region)``; return results by instance id.

        An instance whose command timed out gets status ``TimedOut`` and rc -1.

        Raises:
            ConfigError: the command or timeout is invalid.
            FanOutError: some instances did not run the command (each named with its region
                and reason); the other instances' results are attached.
        """
        outcome = self._run(targets, command, timeout)
        if outcome.failures:
            raise FanOutError(
                f"{len(outcome.failures)} of {len(targets)} instance(s) did not run the "
                "command: " + "; ".join(outcome.failures.values()),
                results=outcome.results,
                failures=outcome.failures,
            )
        return outcome.results

    def run_one(
        self,
        instance_id: str,
        region: str,
        command: str,
        timeout: float,
        *,
        expected_duration: float | None = None,
    ) -> CommandResult:
        """Run ``command`` on one instance.

        Raises:
            CommandTimeout: the command exceeded ``timeout`` (or SSM gave no final status).
            CommandError: the command did not run on the instance (named with its region).
        """
        outcome = self._run(
            [(instance_id, region)], command, timeout, expected_duration=expected_duration
        )
        if instance_id in outcome.failures:
            raise CommandError(outcome.failures[instance_id])
        result = outcome.results[instance_id]
        if result.status == "TimedOut":
            why = outcome.timeouts.get(instance_id, f"exceeded its {timeout:g} s timeout")
            raise CommandTimeout(
                f"command {_short(command)!r} on instance {instance_id} in {region} {why}"
                f"\n--- stdout ---\n{tail(result.stdout)}\n--- stderr ---\n{tail(result.stderr)}"
            )
        return result

    # ------------------------------------------------------------------ internals

    def _run(
        self,
        targets: Sequence[tuple[str, str]],
        command: str,
        timeout: float,
        *,
        expected_duration: float | None = None,
    ) -> _Outcome:
        lines = _command_lines(command)
        execution_timeout = _execution_timeout(timeout)
        seen: set[str] = set()
        for instance_id, _region in targets:
            if instance_id in seen:
                raise ConfigError(f"instance {instance_id} appears twice in one SSM fan-out")
            seen.add(instance_id)
        outcome = _Outcome()
        if not targets:
            return outcome
        budget = self.clock.wall_duration(DELIVERY_TIMEOUT + execution_timeout)
        deadline = time.monotonic() + budget + self.poll.margin
        by_region: dict[str, list[str]] = {}
        for instance_id, region in targets:
            by_region.setdefault(region, []).append(instance_id)
        pending: list[_Invocation] = []
        try:
            for region, instance_ids in by_region.items():
                for batch in _chunks(instance_ids, MAX_INSTANCES_PER_CALL):
                    pending += self._send(
                        region, batch, lines, execution_timeout, deadline, outcome
                    )
            first = self.clock.wall_duration(expected_duration) if expected_duration else None
            self._wait(pending, deadline, execution_timeout, outcome, first_poll=first)
        except KeyboardInterrupt:
            self._cancel(pending, outcome)
            raise
        return outcome

    def _send(
        self,
        region: str,
        instance_ids: list[str],
        lines: list[str],
        execution_timeout: int,
        deadline: float,
        outcome: _Outcome,
    ) -> list[_Invocation]:
        ssm = self.sessions.client("ssm", region)
        parameters = {"commands": lines, "executionTimeout": [str(execution_timeout)]}
        ids = list(instance_ids)
        for _attempt in range(2):  # the second attempt drops instances SSM refused
            try:
                sent_at = time.monotonic()
                response = self._call(
                    functools.partial(
                        ssm.send_command,
                        InstanceIds=ids,
                        DocumentName=DOCUMENT,
                        Parameters=parameters,
                        TimeoutSeconds=DELIVERY_TIMEOUT,
                        Comment="regiondrill",
                    ),
                    deadline,
                )
            except ClientError as exc:
                code = error_code(exc)
                if code == "InvalidInstanceId":
                    refused = self._explain_refused(region, ids)
                    for instance_id, reason in refused.items():
                        outcome.failures[instance_id] = (
                            f"instance {instance_id} in {region}: {reason}"
                        )
                    ids = [i for i in ids if i not in refused]
                    if ids:
                        continue
                    return []
                for instance_id in ids:
                    outcome.failures[instance_id] = (
                        f"instance {instance_id} in {region}: SendCommand failed: "
                        f"{code}: {_message(exc)}"
                    )
                return []
            except BotoCoreError as exc:
                for instance_id in ids:
                    outcome.failures[instance_id] = (
                        f"instance {instance_id} in {region}: SendCommand failed: {exc}"
                    )
                return []
            command_id = response["Command"]["CommandId"]
            return [_Invocation(i, region, command_id, sent_at) for i in ids]
        return []

    def _explain_refused(self, region: str, instance_ids: list[str]) -> dict[str, str]:
        """Say why SendCommand refused some of ``instance_ids`` (InvalidInstanceId).

        AWS refuses the whole call without naming the instance, so ask SSM which of them it
        manages and whether their agents are online.
        """
        ssm = self.sessions.client("ssm", region)
        try:
            response = ssm.describe_instance_information(
                Filters=[{"Key": "InstanceIds", "Values": list(instance_ids)}]
            )
        except (ClientError, BotoCoreError) as exc:
            reason = (
                f"SSM refused the command (InvalidInstanceId) and DescribeInstanceInformation "
                f"failed ({exc}): unknown instance, stopped, or not managed by SSM"
            )
            return dict.fromkeys(instance_ids, reason)
        known = {
            info["InstanceId"]: info.get("PingStatus", "unknown")
            for info in response.get("InstanceInformationList", [])
        }
        refused: dict[str, str] = {}
        for instance_id in instance_ids:
            status = known.get(instance_id)
            if status is None:
                refused[instance_id] = (
                    "not a managed instance in this region (unknown instance id, wrong region, "
                    "or no SSM agent / instance profile)"
                )
            elif status != "Online":
                refused[instance_id] = f"SSM agent is {status}, not Online"
        if not refused:  # SSM disagrees with itself; report every instance rather than loop
            refused = dict.fromkeys(
                instance_ids,
                "SSM refused the command (InvalidInstanceId) although the instance is Online",
            )
        return refused

    def _wait(
        self,
        pending: list[_Invocation],
        deadline: float,
        execution_timeout: int,
        outcome: _Outcome,
        *,
        first_poll: float | None = None,
    ) -> None:
        delay = self.poll.initial
        if first_poll is not None and first_poll > delay:
            # Nothing to see before the command can have finished: sleep until then.
            self._sleep(min(first_poll - delay, max(deadline - time.monotonic(), 0.0)))
        waiting = list(pending)
        while waiting:
            self._sleep(delay)
            throttled = False
            still: list[_Invocation] = []
            for invocation in waiting:
                try:
                    finished = self._check(invocation, outcome)
                except _Throttled:
                    throttled = True
                    finished = False
                if not finished:
                    still.append(invocation)
            waiting = still
            if not waiting:
                return
            if time.monotonic() >= deadline:
                self._give_up(waiting, execution_timeout, outcome)
                return
            growth = self.poll.factor * (2 if throttled else 1)
            delay = min(delay * growth, self.poll.maximum, max(deadline - time.monotonic(), 0.0))

    def _check(self, invocation: _Invocation, outcome: _Outcome) -> bool:
        """Poll one invocation; record its outcome and return True once it is final."""
        ssm = self.sessions.client("ssm", invocation.region)
        where = f"instance {invocation.instance_id} in {invocation.region}"
        try:
            response = ssm.get_command_invocation(
                CommandId=invocation.command_id, InstanceId=invocation.instance_id
            )
        except ClientError as exc:
            code = error_code(exc)
            if code in THROTTLING_CODES:
                raise _Throttled from exc
            if code == "InvocationDoesNotExist":
                if time.monotonic() - invocation.sent_at < self.poll.grace:
                    return False
                outcome.failures[invocation.instance_id] = (
                    f"{where}: SSM has no invocation of command {invocation.command_id} "
                    f"{self.poll.grace:g} s after sending it (instance not managed by SSM?)"
                )
                return True
            outcome.failures[invocation.instance_id] = (
                f"{where}: GetCommandInvocation failed: {code}: {_message(exc)}"
            )
            return True
        except BotoCoreError as exc:
            outcome.failures[invocation.instance_id] = (
                f"{where}: GetCommandInvocation failed: {exc}"
            )
            return True
        status = str(response.get("Status", ""))
        details = str(response.get("StatusDetails", "") or status)
        if status in TRANSIENT_STATUSES:
            return False
        duration = time.monotonic() - invocation.sent_at
        stdout = str(response.get("StandardOutputContent", "") or "")
        stderr = str(response.get("StandardErrorContent", "") or "")
        # The API reference spells details both ways ("Delivery Timed Out", "DeliveryTimedOut").
        reason = NOT_RUN.get(details.replace(" ", "")) or NOT_RUN.get(status)
        if reason is not None:
            outcome.failures[invocation.instance_id] = (
                f"{where}: {reason} (SSM status {status}/{details}, command "
                f"{invocation.command_id})"
            )
            return True
        if status not in ("Success", "Failed", "TimedOut"):
            outcome.failures[invocation.instance_id] = (
                f"{where}: unexpected SSM status {status!r}/{details!r} for command "
                f"{invocation.command_id}"
            )
            return True
        rc = int(response.get("ResponseCode", -1))
        if status == "TimedOut":
            rc = -1
        outcome.results[invocation.instance_id] = CommandResult(
            rc=rc,
            stdout=stdout,
            stderr=stderr,
            duration=duration,
            truncated=len(stdout) >= STDOUT_LIMIT or len(stderr) >= STDERR_LIMIT,
            status=status,
            host=invocation.instance_id,
        )
        return True

    def _give_up(
        self, waiting: list[_Invocation], execution_timeout: int, outcome: _Outcome
    ) -> None:
        """Cancel invocations SSM never finished and report them as timed out."""
        self._cancel(waiting, outcome)
        for invocation in waiting:
            outcome.results[invocation.instance_id] = CommandResult(
                rc=-1,
                stdout="",
                stderr="",
                duration=time.monotonic() - invocation.sent_at,
                status="TimedOut",
                host=invocation.instance_id,
            )
            outcome.timeouts[invocation.instance_id] = (
                f"got no final status from SSM within {execution_timeout} s (+ delivery and "
                f"{self.poll.margin:g} s margin); cancelled command {invocation.command_id}"
            )

    def _cancel(self, invocations: list[_Invocation], outcome: _Outcome) -> None:
        """Cancel what is still running (best effort: the caller is already failing)."""
        by_command: dict[tuple[str, str], list[str]] = {}
        for invocation in invocations:
            if invocation.instance_id in outcome.results:
                continue
            if invocation.instance_id in outcome.failures:
                continue
            key = (invocation.region, invocation.command_id)
            by_command.setdefault(key, []).append(invocation.instance_id)
        for (region, command_id), instance_ids in by_command.items():
            try:
                self.sessions.client("ssm", region).cancel_command(
                    CommandId=command_id, InstanceIds=instance_ids
                )
            except (ClientError, BotoCoreError):
                pass  # it will still end at its executionTimeout on the instance

    def _call(self, call: Callable[[], T], deadline: float) -> T:
        """Make an API call, backing off on throttling until ``deadline``."""
        delay = self.poll.initial
        while True:
            try:
                return call()
            except ClientError as exc:
                if error_code(exc) not in THROTTLING_CODES or time.monotonic() + delay > deadline:
                    raise
            self._sleep(delay)
            delay = min(delay * 2, self.poll.maximum)


class _Throttled(Exception):
    """A poll was throttled; the caller backs off."""


class SsmExecutor(Executor):
    """Run commands on one instance through SSM Run Command."""

    NAME: ClassVar[str] = "ssm"

    def __init__(
        self,
        instance_id: str,
        region: str,
        sessions: SessionFactory,
        *,
        clock: Clock = REAL_TIME,
        poll: PollPolicy | None = None,
    ) -> None:
        if not isinstance(instance_id, str) or not _INSTANCE_ID.match(instance_id):
            raise ConfigError(f"{instance_id!r} is not an instance id (i-0123456789abcdef0)")
        if not isinstance(region, str) or not _REGION.match(region):
            raise ConfigError(f"{region!r} is not an AWS region name (us-east-1)")
        self.instance_id = instance_id
        self.region = region
        self.sessions = sessions
        self.clock = clock
        self.poll = poll
        self._fleet = SsmFleet(sessions, clock=clock, poll=poll)

    @classmethod
    def from_target(
        cls,
        target: str,
        *,
        sessions: SessionFactory | None = None,
        clock: Clock = REAL_TIME,
        poll: PollPolicy | None = None,
    ) -> SsmExecutor:
        instance_id, region = parse_ssm_target(target)
        if sessions is None:
            raise ConfigError(f"{target}: the ssm executor needs the target's AWS sessions")
        return cls(instance_id, region, sessions, clock=clock, poll=poll)

    @property
    def host(self) -> str:
        return self.instance_id

    @property
    def target(self) -> str:
        return f"ssm://{self.instance_id}?region={self.region}"

    def __repr__(self) -> str:
        return f"SsmExecutor({self.target!r})"

    def run(
        self, command: str, timeout: float, *, expected_duration: float | None = None
    ) -> CommandResult:
        return self._fleet.run_one(
            self.instance_id, self.region, command, timeout, expected_duration=expected_duration
        )

    @classmethod
    def run_many(
        cls, executors: Sequence[Executor], command: str, timeout: float
    ) -> dict[str, CommandResult]:
        """Send one ``SendCommand`` per region (and target) to every executor's instance.

        Raises:
            ConfigError: an executor of another transport, or an instance given twice.
            FanOutError: some instances did not run the command (see :meth:`SsmFleet.run`).
        """
        members = [e for e in executors if isinstance(e, SsmExecutor)]
        if len(members) != len(executors):
            raise ConfigError("SsmExecutor.run_many got executors of another transport")
        # Executors opened on different session factories (targets) cannot share a command.
        groups: dict[tuple[int, Clock, PollPolicy | None], list[SsmExecutor]] = {}
        for member in members:
            groups.setdefault((id(member.sessions), member.clock, member.poll), []).append(member)
        if len(groups) == 1 or not groups:
            return cls._run_group(members, command, timeout)
        seen: set[str] = set()
        for member in members:
            if member.instance_id in seen:
                raise ConfigError(f"instance {member.instance_id} appears twice in one SSM fan-out")
            seen.add(member.instance_id)
        return gather(
            (
                functools.partial(cls._run_group, group, command, timeout)
                for group in groups.values()
            ),
            total=len(members),
            what="instance(s) did not run the command",
        )

    @staticmethod
    def _run_group(
        members: list[SsmExecutor], command: str, timeout: float
    ) -> dict[str, CommandResult]:
        if not members:
            return {}
        first = members[0]
        fleet = SsmFleet(first.sessions, clock=first.clock, poll=first.poll)
        return fleet.run([(m.instance_id, m.region) for m in members], command, timeout)


def _command_lines(command: str) -> list[str]:
    if not isinstance(command, str) or not command.strip():
        raise ConfigError(f"command must be a non-empty string, got {command!r}")
    # AWS-RunShellScript writes the lines of "commands" into one script, so a multi-line command
    # (heredoc, function) keeps its meaning.
    return command.split("\n")


def _execution_timeout(timeout: float) -> int:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ConfigError(f"command timeout must be a positive number of seconds, got {timeout!r}")
    seconds = max(1, math.ceil(timeout))
    if seconds > MAX_EXECUTION_TIMEOUT:
        raise ConfigError(
            f"command timeout {timeout:g} s exceeds SSM's executionTimeout maximum "
            f"{MAX_EXECUTION_TIMEOUT} s"
        )
    return seconds


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", exc))


def _short(command: str, limit: int = 80) -> str:
    first = command.strip().splitlines()[0] if command.strip() else command
    return first if len(first) <= limit else first[: limit - 3] + "..."
