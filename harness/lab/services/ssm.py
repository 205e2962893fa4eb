"""SSM Run Command on the lab's bastions: the API side (overlay) and the agent's behaviour.

moto keeps its own SSM command store but runs nothing; the lab answers the Run Command
operations itself (``SendCommand``, ``GetCommandInvocation``, ``ListCommands``,
``ListCommandInvocations``, ``CancelCommand``) and ``DescribeInstanceInformation``, and really runs
``AWS-RunShellScript`` in the bastion's shell (:mod:`harness.lab.bastions`). Every other SSM
operation (parameters, documents...) still goes to moto.

What the lab models, after the AWS documentation and the SSM agent's source:

- Statuses: an invocation is ``Pending`` until the agent receives it, ``InProgress`` while it
  runs, then ``Success``, ``Failed`` (non-zero exit; the agent appends ``failed to run commands:
  exit status N`` to stderr), ``TimedOut`` (``Execution Timed Out`` after ``executionTimeout``,
  or ``Delivery Timed Out`` when never delivered before ``ExpiresAfter`` = requested +
  ``TimeoutSeconds`` + ``executionTimeout``, as the Run Command status table says) or
  ``Cancelled``. The agent kills a timed-out or cancelled command's process group and reports
  exit code 137, as it does on Linux.
- Eventual consistency: an invocation is invisible (``InvocationDoesNotExist``, absent from
  ``ListCommandInvocations``) for :data:`VISIBILITY_DELAY` lab seconds after ``SendCommand``, and
  the agent receives it :data:`DELIVERY_DELAY` lab seconds after sending, so ``Pending`` is
  observable. Both are lab seconds, converted through the lab clock, like every timeout here
  (``executionTimeout``, ``TimeoutSeconds``).
- Output limits: ``StandardOutputContent`` is the first 24,000 characters of stdout and
  ``StandardErrorContent`` the first 8,000 of stderr; ``ListCommandInvocations`` with
  ``Details`` gives the plugin ``Output`` as the agent builds it (stdout, ``----------ERROR-------``,
  stderr) truncated to 2,500 characters with the agent's truncation markers. Output appears
  once the invocation has finished (partial output for timed-out or cancelled runs).
- Stopped instances: ``DescribeInstanceInformation`` shows ``ConnectionLost`` (last ping frozen at
  the stop); new invocations stay ``Pending`` and are delivered if the instance starts before
  ``ExpiresAfter``, else end ``Delivery Timed Out``. A command running when its instance stops is
  killed and left ``InProgress`` (the agent cannot report); it ends ``Failed`` when the
  instance is back, or ``Execution Timed Out`` at its deadline.
- SSM is regional: an instance id from another region is an ``InvalidInstanceId``.
- ``MaxConcurrency`` and ``MaxErrors`` are validated and echoed; every target runs at once, and
  ``MaxErrors`` decides the command's final status (more errors than allowed: ``Failed``).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import logging
import re
import signal
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.lab.gateway import Gateway, LabRequest, LabResponse, error_response

if TYPE_CHECKING:
    from harness.lab.bastions import Bastions, ShellHandle, ShellOutcome
    from harness.lab.lab import Lab
    from harness.lab.scheduler import Handle

log = logging.getLogger(__name__)

DOCUMENT = "AWS-RunShellScript"
PLUGIN = "aws:runShellScript"
VISIBILITY_DELAY = 0.5  # lab seconds an invocation stays invisible after SendCommand
DELIVERY_DELAY = 1.0  # lab seconds until the agent receives a command
MAX_STDOUT = 24000  # StandardOutputContent: "the first 24,000 characters"
MAX_STDERR = 8000  # StandardErrorContent: "the first 8,000 characters"
PLUGIN_OUTPUT = 2500  # CommandPlugin.Output maximum length
STOPPED_EXIT = 137  # the agent's CommandStoppedPreemptivelyExitCode on Linux (128 + SIGKILL)
DEFAULT_EXECUTION_TIMEOUT = 3600
MAX_EXECUTION_TIMEOUT = 172800
DEFAULT_DELIVERY_TIMEOUT = 3600
AGENT_VERSION = "3.3.1142.0"
MAX_COMMANDS = 5000  # command history the lab keeps (oldest finished ones are forgotten)
_TERMINAL = frozenset({"Success", "Failed", "TimedOut", "Cancelled"})
_TRUNC_OUT = "\n---Output truncated---"
_TRUNC_ERR = "\n---Error truncated----"
_ERROR_TITLE = "\n----------ERROR-------\n"
_CONCURRENCY_RE = re.compile(r"^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$")
_ERRORS_RE = re.compile(r"^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$")
_COMMAND_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SIGNAL_TEXT: dict[int, str] = {
    signal.SIGKILL: "killed",
    signal.SIGTERM: "terminated",
    signal.SIGINT: "interrupt",
    signal.SIGHUP: "hangup",
    signal.SIGABRT: "aborted",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGPIPE: "broken pipe",
}


class SsmError(Exception):
    """An SSM API error: ``code`` is what botocore reports, HTTP 400."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


@dataclass
class Invocation:
    """One command on one instance."""

    command: Command
    instance_id: str
    status: str = "Pending"
    details: str = "Pending"
    response_code: int = -1
    started: float | None = None  # lab times
    ended: float | None = None
    stdout: str = ""
    stderr: str = ""
    reported: bool = False  # the agent sent output (finished runs)
    lost: bool = False  # the instance stopped while the command ran
    handle: ShellHandle | None = field(default=None, repr=False)
    timers: list[Handle] = field(default_factory=list, repr=False)

    @property
    def visible_at(self) -> float:
        return self.command.requested + VISIBILITY_DELAY

    @property
    def terminal(self) -> bool:
        return self.status in _TERMINAL


@dataclass
class Command:
    """One SendCommand: parameters, targets and its invocations."""

    id: str
    region: str
    document_name: str
    document_version: str
    parameters: dict[str, list[str]]
    comment: str
    instance_ids: list[str]
    targets: list[dict[str, Any]]
    requested: float
    timeout_seconds: int
    execution_timeout: int
    max_concurrency: str
    max_errors: str
    invocations: dict[str, Invocation] = field(default_factory=dict)
    cancelled: bool = False
    timers: list[Handle] = field(default_factory=list, repr=False)

    @property
    def expires_after(self) -> float:
        return self.requested + self.timeout_seconds + self.execution_timeout

    @property
    def script(self) -> str:
        # The agent writes the commands one per line into _script.sh.
        return "\n".join(self.parameters["commands"]) + "\n"


class RunCommandService:
    """The lab's Run Command: command store, delivery, execution deadlines, API views."""

    def __init__(self, lab: Lab, bastions: Bastions) -> None:
        self.lab = lab
        self.bastions = bastions
        self._lock = threading.RLock()
        self._commands: dict[str, Command] = {}
        self._order: list[str] = []
        self._closed = False

    # ------------------------------------------------------------------ timers

    def _now(self) -> float:
        return self.lab.clock.now()

    def _at(
        self, owner: Command | Invocation, when: float, callback: Callable[[], None], name: str
    ) -> None:
        owner.timers.append(self.lab.scheduler.call_at(when, callback, name=name))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for command in self._commands.values():
                for timer in command.timers:
                    timer.cancel()
                for invocation in command.invocations.values():
                    for timer in invocation.timers:
                        timer.cancel()
                    if invocation.handle is not None:
                        invocation.handle.kill("stopped")

    # ------------------------------------------------------------------ SendCommand

    def send_command(self, region: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and record a command, schedule its delivery; return the Command view.

        Raises:
            SsmError: invalid document, parameters, targets or instance ids.
        """
        document = str(body.get("DocumentName") or "")
        if document.rsplit("/", 1)[-1] != DOCUMENT:
            raise SsmError(
                "InvalidDocument",
                f"Document {document or '(none)'} is not supported by the regiondrill lab: it runs "
                f"only {DOCUMENT}",
            )
        version = str(body.get("DocumentVersion") or "")
        if version not in ("", "$DEFAULT", "$LATEST", "1"):
            raise SsmError(
                "InvalidDocumentVersion",
                f"Document version {version} of {DOCUMENT} does not exist.",
            )
        parameters = _parameters(body.get("Parameters") or {})
        execution_timeout = int(
            parameters.get("executionTimeout", [str(DEFAULT_EXECUTION_TIMEOUT)])[0]
        )
        timeout_seconds = int(body.get("TimeoutSeconds") or DEFAULT_DELIVERY_TIMEOUT)
        if not 30 <= timeout_seconds <= 2592000:
            raise SsmError(
                "ValidationException",
                f"1 validation error detected: Value '{timeout_seconds}' at 'timeoutSeconds' failed to "
                "satisfy constraint: Member must have value between 30 and 2592000",
            )
        max_concurrency = str(body.get("MaxConcurrency") or "50")
        max_errors = str(body.get("MaxErrors") or "0")
        if not _CONCURRENCY_RE.match(max_concurrency):
            raise SsmError(
                "ValidationException",
                f"MaxConcurrency {max_concurrency!r} is not a number or percentage",
            )
        if not _ERRORS_RE.match(max_errors):
            raise SsmError(
                "ValidationException", f"MaxErrors {max_errors!r} is not a number or percentage"
            )
        for unsupported in ("OutputS3BucketName", "ServiceRoleArn", "NotificationConfig"):
            if body.get(unsupported):
                raise SsmError(
                    "InvalidParameters", f"{unsupported} is not supported by the regiondrill lab"
                )
        if (body.get("CloudWatchOutputConfig") or {}).get("CloudWatchOutputEnabled"):
            raise SsmError(
                "InvalidParameters",
                "CloudWatchOutputConfig is not supported by the regiondrill lab",
            )
        instance_ids = [str(i) for i in body.get("InstanceIds") or []]
        targets = list(body.get("Targets") or [])
        if bool(instance_ids) == bool(targets):
            raise SsmError(
                "InvalidParameters" if not instance_ids else "ValidationException",
                "Specify either InstanceIds or Targets (exactly one of them).",
            )
        if len(instance_ids) > 50:
            raise SsmError(
                "ValidationException",
                f"{len(instance_ids)} InstanceIds given; at most 50 are allowed",
            )
        chosen = (
            self._check_instances(region, instance_ids)
            if instance_ids
            else self._targets(region, targets)
        )
        now = self._now()
        command = Command(
            id=str(uuid.uuid4()),
            region=region,
            document_name=document,
            document_version=version,
            parameters=parameters,
            comment=str(body.get("Comment") or ""),
            instance_ids=instance_ids,
            targets=targets,
            requested=now,
            timeout_seconds=timeout_seconds,
            execution_timeout=execution_timeout,
            max_concurrency=max_concurrency,
            max_errors=max_errors,
        )
        with self._lock:
            for instance_id in chosen:
                invocation = Invocation(command, instance_id)
                command.invocations[instance_id] = invocation
                self._at(
                    invocation,
                    now + DELIVERY_DELAY,
                    functools.partial(self._deliver, invocation),
                    "ssm-deliver",
                )
            self._at(command, command.expires_after, lambda: self._expire(command), "ssm-expire")
            self._commands[command.id] = command
            self._order.append(command.id)
            self._forget_old()
            return self._command_view(command)

    def _forget_old(self) -> None:
        """Keep the history bounded: drop the oldest finished commands beyond MAX_COMMANDS.

        AWS keeps command history for 30 days; a lab run sends far fewer commands than would
        matter, but probe loops and benchmarks must not grow the lab's memory without end.
        """
        excess = len(self._order) - MAX_COMMANDS
        if excess <= 0:
            return
        kept: list[str] = []
        for command_id in self._order:
            command = self._commands[command_id]
            if excess > 0 and all(i.terminal for i in command.invocations.values()):
                for timer in command.timers:
                    timer.cancel()
                del self._commands[command_id]
                excess -= 1
            else:
                kept.append(command_id)
        self._order = kept

    def _managed(self, region: str) -> list[str]:
        return [
            b.instance_id
            for b in self.bastions.all()
            if b.managed and b.region == region and self.bastions.state(b.instance_id) is not None
        ]

    def _check_instances(self, region: str, instance_ids: Sequence[str]) -> list[str]:
        managed = set(self._managed(region))
        bad = [i for i in instance_ids if i not in managed]
        if bad:
            raise SsmError(
                "InvalidInstanceId",
                f"Instances [[{', '.join(bad)}]] not in a valid state for account {self.lab.account_id}",
            )
        return list(dict.fromkeys(instance_ids))

    def _targets(self, region: str, targets: Sequence[Mapping[str, Any]]) -> list[str]:
        candidates = self._managed(region)
        for target in targets:
            key = str(target.get("Key") or "")
            values = [str(v) for v in target.get("Values") or []]
            if key.lower() == "instanceids":
                self._check_instances(region, values)
                candidates = [i for i in candidates if i in values]
            elif key.startswith("tag:"):
                tag = key[4:]
                candidates = [i for i in candidates if self.bastions.tags(i).get(tag) in values]
            elif key == "tag-key":
                candidates = [
                    i for i in candidates if any(v in self.bastions.tags(i) for v in values)
                ]
            else:
                raise SsmError(
                    "InvalidParameters",
                    f"Target key {key!r} is not supported by the regiondrill lab",
                )
        return candidates

    # ------------------------------------------------------------------ agent side

    def _deliver(self, invocation: Invocation) -> None:
        """The agent picks the command up (scheduler thread: keep it short)."""
        with self._lock:
            if self._closed or invocation.status != "Pending" or invocation.command.cancelled:
                return
            if self.bastions.state(invocation.instance_id) != "running":
                return  # stays Pending; delivered when the instance starts (or times out)
            command = invocation.command
            now = self._now()
            invocation.status, invocation.details = "InProgress", "In Progress"
            invocation.started = now
            try:
                invocation.handle = self._launch(invocation)
            except Exception as exc:  # the instance went away between the check and the launch
                log.warning("cannot run %s on %s: %s", command.id, invocation.instance_id, exc)
                invocation.status, invocation.details = "Pending", "Pending"
                invocation.started = None
                return
            if invocation.handle is None:
                return
            self._at(
                invocation,
                now + command.execution_timeout,
                lambda: self._execution_deadline(invocation),
                "ssm-execution-timeout",
            )

    def _launch(self, invocation: Invocation) -> ShellHandle | None:
        """Start the shell; None when the agent fails before running anything (reported)."""
        from harness.lab.bastions import SHELL

        bastion = self.bastions.bastion(invocation.instance_id)
        command = invocation.command
        working = command.parameters.get("workingDirectory", [""])[0]
        cwd = bastion.scratch
        if working:
            # The bastion's filesystem is the host's: an absolute path is taken as it is.
            cwd = Path(working) if working.startswith("/") else bastion.scratch / working
            if not cwd.is_dir():
                # What the agent reports when it cannot chdir into the working directory.
                invocation.reported = True
                invocation.stderr = (
                    f"failed to run commands: chdir {working}: no such file or directory"
                )
                self._end(invocation, "Failed", "Failed", 1)
                return None
        directory = bastion.scratch / ".ssm" / "orchestration" / command.id
        directory.mkdir(parents=True, exist_ok=True)
        script = directory / "_script.sh"
        script.write_text(command.script)
        script.chmod(0o700)
        # As the agent: "sh -c <script>" runs the file (no shebang) as a shell script; bash here
        # because the bastion's /bin/sh is bash on Amazon Linux.
        return self.bastions.execute(
            invocation.instance_id,
            [SHELL, "-c", str(script)],
            lambda outcome: self._finished(invocation, outcome),
            limits=(MAX_STDOUT * 4, MAX_STDERR * 4),
            cwd=cwd,
        )

    def _finished(self, invocation: Invocation, outcome: ShellOutcome) -> None:
        """The shell ended (pool thread)."""
        stdout = outcome.stdout.decode("utf-8", "replace")
        stderr = outcome.stderr.decode("utf-8", "replace")
        with self._lock:
            invocation.handle = None
            if invocation.terminal:
                return
            now = self._now()
            if outcome.killed == "stopped":
                invocation.lost = True  # the agent died with the instance; nothing is reported
                return
            invocation.ended = now
            invocation.reported = True
            invocation.stdout = stdout[:MAX_STDOUT]
            if outcome.killed == "timeout":
                invocation.status, invocation.details = "TimedOut", "Execution Timed Out"
                invocation.response_code = STOPPED_EXIT
            elif outcome.killed == "expired":
                invocation.status, invocation.details = "TimedOut", "Delivery Timed Out"
                invocation.response_code = STOPPED_EXIT
            elif outcome.killed == "cancel":
                invocation.status, invocation.details = "Cancelled", "Cancelled"
                invocation.response_code = STOPPED_EXIT
            elif outcome.returncode == 0:
                invocation.status, invocation.details = "Success", "Success"
                invocation.response_code = 0
            else:
                if outcome.returncode > 0:
                    reason = f"exit status {outcome.returncode}"
                    invocation.response_code = outcome.returncode
                else:
                    number = -outcome.returncode
                    reason = f"signal: {_SIGNAL_TEXT.get(number, f'signal {number}')}"
                    invocation.response_code = -1
                joiner = "" if not stderr or stderr.endswith("\n") else "\n"
                stderr = f"{stderr}{joiner}failed to run commands: {reason}"
                invocation.status, invocation.details = "Failed", "Failed"
            invocation.stderr = stderr[:MAX_STDERR]
            self._cancel_timers(invocation)
            self._cleanup(invocation)

    def _cleanup(self, invocation: Invocation) -> None:
        import shutil

        try:
            bastion = self.bastions.bastion(invocation.instance_id)
        except Exception:
            return
        shutil.rmtree(
            bastion.scratch / ".ssm" / "orchestration" / invocation.command.id, ignore_errors=True
        )

    @staticmethod
    def _cancel_timers(invocation: Invocation) -> None:
        for timer in invocation.timers:
            timer.cancel()
        invocation.timers.clear()

    def _end(self, invocation: Invocation, status: str, details: str, code: int = -1) -> None:
        invocation.status, invocation.details = status, details
        invocation.response_code = code
        invocation.ended = self._now()
        self._cancel_timers(invocation)

    def _execution_deadline(self, invocation: Invocation) -> None:
        with self._lock:
            if invocation.terminal:
                return
            if invocation.handle is not None:
                invocation.handle.kill("timeout")
            elif invocation.lost:
                self._end(invocation, "TimedOut", "Execution Timed Out")

    def _expire(self, command: Command) -> None:
        """ExpiresAfter: every invocation not finished ends Delivery Timed Out."""
        with self._lock:
            for invocation in command.invocations.values():
                if invocation.terminal:
                    continue
                if invocation.handle is not None:
                    invocation.handle.kill("expired")
                else:
                    self._end(invocation, "TimedOut", "Delivery Timed Out")

    def instance_started(self, instance_id: str) -> None:
        """The instance is running again: deliver what waited, settle what the stop cut off."""
        with self._lock:
            for command in self._commands.values():
                invocation = command.invocations.get(instance_id)
                if invocation is None or invocation.terminal:
                    continue
                if invocation.lost:
                    self._end(invocation, "Failed", "Failed")
                elif invocation.status == "Pending":
                    when = max(self._now() + DELIVERY_DELAY, command.requested + DELIVERY_DELAY)
                    self._at(
                        invocation,
                        when,
                        functools.partial(self._deliver, invocation),
                        "ssm-deliver",
                    )

    def instance_gone(self, instance_id: str) -> None:
        """The instance was terminated: what never ran or never reported times out."""
        with self._lock:
            for command in self._commands.values():
                invocation = command.invocations.get(instance_id)
                if invocation is not None and not invocation.terminal and invocation.handle is None:
                    invocation.lost = invocation.lost or invocation.status == "InProgress"

    # ------------------------------------------------------------------ CancelCommand

    def cancel_command(self, region: str, command_id: str, instance_ids: Sequence[str]) -> None:
        """Cancel a command on all (or the given) instances.

        Raises:
            SsmError: unknown command id, or an instance the command does not target.
        """
        with self._lock:
            command = self._command(region, command_id)
            targets = list(instance_ids) or list(command.invocations)
            unknown = [i for i in targets if i not in command.invocations]
            if unknown:
                raise SsmError(
                    "InvalidInstanceId",
                    f"Instances [[{', '.join(unknown)}]] are not targets of command {command_id}",
                )
            if not instance_ids:
                command.cancelled = True
            for instance_id in targets:
                invocation = command.invocations[instance_id]
                if invocation.terminal:
                    continue
                if invocation.handle is not None:
                    invocation.status, invocation.details = "Cancelling", "Cancelling"
                    invocation.handle.kill("cancel")
                else:
                    self._end(invocation, "Cancelled", "Cancelled")

    def _command(self, region: str, command_id: str) -> Command:
        command = self._commands.get(command_id)
        if command is None or command.region != region:
            raise SsmError("InvalidCommandId", f"Command {command_id} does not exist.")
        return command

    # ------------------------------------------------------------------ views

    def get_invocation(
        self, region: str, command_id: str, instance_id: str, plugin: str | None
    ) -> dict[str, Any]:
        """Return GetCommandInvocation's view.

        Raises:
            SsmError: InvocationDoesNotExist (unknown, or not yet visible), InvalidPluginName.
        """
        with self._lock:
            command = self._commands.get(command_id)
            invocation = (
                command.invocations.get(instance_id)
                if command and command.region == region
                else None
            )
            if invocation is None or self._now() < invocation.visible_at:
                raise SsmError("InvocationDoesNotExist", "")
            if plugin not in (None, "", PLUGIN):
                raise SsmError("InvalidPluginName", f"Plugin {plugin} is not part of {DOCUMENT}.")
            started = invocation.started
            ended = invocation.ended
            elapsed = ""
            if started is not None:
                elapsed = _duration((ended if ended is not None else self._now()) - started)
            output = invocation.reported
            return {
                "CommandId": command_id,
                "InstanceId": instance_id,
                "Comment": invocation.command.comment,
                "DocumentName": invocation.command.document_name,
                "DocumentVersion": invocation.command.document_version or "$DEFAULT",
                "PluginName": PLUGIN,
                "ResponseCode": invocation.response_code,
                "ExecutionStartDateTime": _iso(started),
                "ExecutionElapsedTime": elapsed,
                "ExecutionEndDateTime": _iso(ended),
                "Status": invocation.status,
                "StatusDetails": invocation.details,
                "StandardOutputContent": invocation.stdout if output else "",
                "StandardOutputUrl": "",
                "StandardErrorContent": invocation.stderr if output else "",
                "StandardErrorUrl": "",
                "CloudWatchOutputConfig": {
                    "CloudWatchLogGroupName": "",
                    "CloudWatchOutputEnabled": False,
                },
            }

    def list_invocations(self, region: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Return ListCommandInvocations' page."""
        details = bool(body.get("Details"))
        filters = _command_filters(body.get("Filters") or [])
        with self._lock:
            now = self._now()
            rows = []
            for command in self._select_commands(region, body.get("CommandId")):
                for invocation in command.invocations.values():
                    if now < invocation.visible_at:
                        continue
                    if body.get("InstanceId") and invocation.instance_id != body["InstanceId"]:
                        continue
                    if not _filters_match(filters, command, invocation.status):
                        continue
                    rows.append(self._invocation_view(invocation, details))
        page, token = _page(rows, body, 50)
        result: dict[str, Any] = {"CommandInvocations": page}
        if token:
            result["NextToken"] = token
        return result

    def list_commands(self, region: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Return ListCommands' page."""
        filters = _command_filters(body.get("Filters") or [])
        with self._lock:
            rows = []
            for command in self._select_commands(region, body.get("CommandId")):
                if body.get("InstanceId") and body["InstanceId"] not in command.invocations:
                    continue
                view = self._command_view(command)
                if _filters_match(filters, command, view["Status"]):
                    rows.append(view)
        page, token = _page(rows, body, 50)
        result: dict[str, Any] = {"Commands": page}
        if token:
            result["NextToken"] = token
        return result

    def _select_commands(self, region: str, command_id: str | None) -> list[Command]:
        if command_id:
            return [self._command(region, command_id)]
        commands = [self._commands[c] for c in reversed(self._order)]
        return [c for c in commands if c.region == region]

    def _invocation_view(self, invocation: Invocation, details: bool) -> dict[str, Any]:
        command = invocation.command
        plugins: list[dict[str, Any]] = []
        if details:
            plugins.append(
                {
                    "Name": PLUGIN,
                    "Status": invocation.status,
                    "StatusDetails": invocation.details,
                    "ResponseCode": invocation.response_code,
                    **({"ResponseStartDateTime": invocation.started} if invocation.started else {}),
                    **({"ResponseFinishDateTime": invocation.ended} if invocation.ended else {}),
                    "Output": truncate_output(invocation.stdout, invocation.stderr)
                    if invocation.reported
                    else "",
                    "StandardOutputUrl": "",
                    "StandardErrorUrl": "",
                    "OutputS3Region": command.region,
                    "OutputS3BucketName": "",
                    "OutputS3KeyPrefix": "",
                }
            )
        return {
            "CommandId": command.id,
            "InstanceId": invocation.instance_id,
            "InstanceName": "",
            "Comment": command.comment,
            "DocumentName": command.document_name,
            "DocumentVersion": command.document_version or "$DEFAULT",
            "RequestedDateTime": command.requested,
            "Status": invocation.status,
            "StatusDetails": invocation.details,
            "StandardOutputUrl": "",
            "StandardErrorUrl": "",
            "CommandPlugins": plugins,
            "ServiceRole": "",
            "NotificationConfig": {
                "NotificationArn": "",
                "NotificationEvents": [],
                "NotificationType": "",
            },
            "CloudWatchOutputConfig": {
                "CloudWatchLogGroupName": "",
                "CloudWatchOutputEnabled": False,
            },
        }

    def _command_view(self, command: Command) -> dict[str, Any]:
        status, details = _aggregate(command)
        invocations = list(command.invocations.values())
        return {
            "CommandId": command.id,
            "DocumentName": command.document_name,
            "DocumentVersion": command.document_version,
            "Comment": command.comment,
            "ExpiresAfter": command.expires_after,
            "Parameters": command.parameters,
            "InstanceIds": command.instance_ids,
            "Targets": command.targets,
            "RequestedDateTime": command.requested,
            "Status": status,
            "StatusDetails": details,
            "OutputS3Region": command.region,
            "OutputS3BucketName": "",
            "OutputS3KeyPrefix": "",
            "MaxConcurrency": command.max_concurrency,
            "MaxErrors": command.max_errors,
            "TargetCount": len(invocations),
            "CompletedCount": sum(1 for i in invocations if i.terminal),
            "ErrorCount": sum(1 for i in invocations if _is_error(i)),
            "DeliveryTimedOutCount": sum(
                1 for i in invocations if i.details == "Delivery Timed Out"
            ),
            "ServiceRole": "",
            "NotificationConfig": {
                "NotificationArn": "",
                "NotificationEvents": [],
                "NotificationType": "",
            },
            "CloudWatchOutputConfig": {
                "CloudWatchLogGroupName": "",
                "CloudWatchOutputEnabled": False,
            },
            "TimeoutSeconds": command.timeout_seconds,
        }

    # ------------------------------------------------------------------ DescribeInstanceInformation

    def describe_instances(self, region: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Return DescribeInstanceInformation's page: bastions with an agent in ``region``."""
        rows = []
        for bastion in self.bastions.all():
            state = self.bastions.state(bastion.instance_id)
            if not bastion.managed or bastion.region != region or state is None:
                continue
            online = state == "running"
            last = self.bastions.last_seen(bastion.instance_id) or self._now()
            dotted = bastion.address.replace(".", "-")
            domain = "ec2.internal" if region == "us-east-1" else f"{region}.compute.internal"
            rows.append(
                {
                    "InstanceId": bastion.instance_id,
                    "PingStatus": "Online" if online else "ConnectionLost",
                    "LastPingDateTime": last,
                    "AgentVersion": AGENT_VERSION,
                    "IsLatestVersion": False,
                    "PlatformType": "Linux",
                    "PlatformName": "Amazon Linux",
                    "PlatformVersion": "2023",
                    "ResourceType": "EC2Instance",
                    "IPAddress": bastion.address,
                    "ComputerName": f"ip-{dotted}.{domain}",
                    "SourceId": bastion.instance_id,
                    "SourceType": "AWS::EC2::Instance",
                    "_tags": self.bastions.tags(bastion.instance_id),
                }
            )
        rows = _instance_filters(rows, body)
        for row in rows:
            row.pop("_tags")
        page, token = _page(rows, body, 50)
        result: dict[str, Any] = {"InstanceInformationList": page}
        if token:
            result["NextToken"] = token
        return result


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _parameters(raw: Mapping[str, Any]) -> dict[str, list[str]]:
    """Validate AWS-RunShellScript's parameters as the document declares them."""
    allowed = {"commands", "workingDirectory", "executionTimeout"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise SsmError(
            "InvalidParameters", f'Parameter "{unknown[0]}" is not defined in {DOCUMENT}.'
        )
    values = {
        key: [str(v) for v in (value if isinstance(value, list) else [value])]
        for key, value in raw.items()
    }
    commands = values.get("commands")
    if not commands:
        raise SsmError("InvalidParameters", f'Parameter "commands" of {DOCUMENT} is required.')
    timeout = values.get("executionTimeout")
    if timeout is not None:
        text = timeout[0] if len(timeout) == 1 else ""
        if not text.isdigit() or not 1 <= int(text) <= MAX_EXECUTION_TIMEOUT:
            raise SsmError(
                "InvalidParameters",
                f'Parameter "executionTimeout" value {timeout!r} must be a whole number of seconds '
                f"from 1 to {MAX_EXECUTION_TIMEOUT}.",
            )
    working = values.get("workingDirectory")
    if working is not None and len(working) != 1:
        raise SsmError("InvalidParameters", 'Parameter "workingDirectory" takes one value.')
    return values


def truncate_output(stdout: str, stderr: str, capacity: int = PLUGIN_OUTPUT) -> str:
    """Combine stdout and stderr as the SSM agent does for a plugin's Output (TruncateOutput)."""
    title = _ERROR_TITLE if stderr else ""
    available = capacity - len(title)
    if len(stdout) + len(stderr) < available:
        return f"{stdout}{title}{stderr}"
    if len(stdout) > available // 2 and len(stderr) > available // 2:
        size = available - len(_TRUNC_ERR) - len(_TRUNC_OUT)
        return f"{stdout[: size // 2]}{_TRUNC_OUT}{title}{stderr[: size // 2]}{_TRUNC_ERR}"
    if len(stdout) < available // 2:
        size = available - len(_TRUNC_ERR)
        return f"{stdout}{title}{stderr[: size - len(stdout)]}{_TRUNC_ERR}"
    size = available - len(_TRUNC_OUT)
    return f"{stdout[: size - len(stderr)]}{_TRUNC_OUT}{title}{stderr}"


def _is_error(invocation: Invocation) -> bool:
    return invocation.status == "Failed" or invocation.details == "Execution Timed Out"


def _limit(value: str, total: int) -> int:
    if value.endswith("%"):
        return int(total * int(value[:-1]) / 100)
    return int(value)


def _aggregate(command: Command) -> tuple[str, str]:
    """The command's Status/StatusDetails from its invocations (Run Command's status table)."""
    invocations = list(command.invocations.values())
    if any(i.status == "Cancelling" for i in invocations):
        return "Cancelling", "Cancelling"
    if command.cancelled and all(i.terminal for i in invocations):
        return "Cancelled", "Cancelled"
    if any(not i.terminal for i in invocations):
        if any(i.status != "Pending" for i in invocations):
            return "InProgress", "In Progress"
        return "Pending", "Pending"
    if all(i.status == "Success" for i in invocations):
        return "Success", "Success"
    allowed = _limit(command.max_errors, len(invocations))
    errors = [i for i in invocations if _is_error(i)]
    if len(errors) > allowed:
        if all(i.details == "Execution Timed Out" for i in errors):
            return "TimedOut", "Execution Timed Out"
        return "Failed", "Failed"
    delivery = [i for i in invocations if i.details == "Delivery Timed Out"]
    if delivery and len(delivery) > allowed:
        return "TimedOut", "Delivery Timed Out"
    if any(i.status == "Cancelled" for i in invocations):
        return "Cancelled", "Cancelled"
    return "Failed", "Incomplete"


def _iso(lab_time: float | None) -> str:
    if lab_time is None:
        return ""
    moment = dt.datetime.fromtimestamp(lab_time, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _duration(seconds: float) -> str:
    """ISO 8601 duration as the service prints it (Java's Duration: PT1M5.2S, PT0.541S)."""
    millis = max(round(seconds * 1000), 0)
    hours, millis = divmod(millis, 3600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    text = "PT"
    if hours:
        text += f"{hours}H"
    if minutes:
        text += f"{minutes}M"
    if secs or millis or text == "PT":
        fraction = f".{millis:03d}".rstrip("0") if millis else ""
        text += f"{secs}{fraction.rstrip('.')}S"
    return text


_COMMAND_FILTER_KEYS = {"InvokedAfter", "InvokedBefore", "Status", "DocumentName"}


def _command_filters(raw: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    filters = []
    for item in raw:
        key, value = str(item.get("key") or ""), str(item.get("value") or "")
        if key not in _COMMAND_FILTER_KEYS:
            raise SsmError(
                "InvalidFilterKey", f"Filter key {key!r} is not supported by the regiondrill lab"
            )
        filters.append((key, value))
    return filters


def _filters_match(filters: Sequence[tuple[str, str]], command: Command, status: str) -> bool:
    for key, value in filters:
        if key == "Status" and status != value:
            return False
        if key == "DocumentName" and command.document_name != value:
            return False
        if key in ("InvokedAfter", "InvokedBefore"):
            try:
                moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError as exc:
                raise SsmError(
                    "InvalidFilterValue", f"{key} value {value!r} is not an ISO 8601 time"
                ) from exc
            if key == "InvokedAfter" and command.requested < moment:
                return False
            if key == "InvokedBefore" and command.requested > moment:
                return False
    return True


def _instance_filters(rows: list[dict[str, Any]], body: Mapping[str, Any]) -> list[dict[str, Any]]:
    pairs: list[tuple[str, list[str]]] = []
    for item in body.get("InstanceInformationFilterList") or []:
        pairs.append((str(item.get("key")), [str(v) for v in item.get("valueSet") or []]))
    for item in body.get("Filters") or []:
        pairs.append((str(item.get("Key")), [str(v) for v in item.get("Values") or []]))
    fields = {
        "InstanceIds": "InstanceId",
        "PingStatus": "PingStatus",
        "PlatformTypes": "PlatformType",
        "ResourceType": "ResourceType",
    }
    for key, values in pairs:
        if key in fields:
            rows = [r for r in rows if r[fields[key]] in values]
        elif key.startswith("tag:"):
            rows = [r for r in rows if r["_tags"].get(key[4:]) in values]
        elif key == "tag-key":
            rows = [r for r in rows if any(v in r["_tags"] for v in values)]
        else:
            raise SsmError(
                "InvalidInstanceInformationFilterValue",
                f"Filter key {key!r} is not supported by the regiondrill lab",
            )
    return rows


def _page(
    rows: list[dict[str, Any]], body: Mapping[str, Any], default: int
) -> tuple[list[dict[str, Any]], str | None]:
    size = int(body.get("MaxResults") or default)
    start = 0
    token = body.get("NextToken")
    if token:
        try:
            start = int(base64.b64decode(str(token)).decode())
        except ValueError as exc:
            raise SsmError("InvalidNextToken", "The specified token is not valid.") from exc
    end = start + size
    following = base64.b64encode(str(end).encode()).decode() if end < len(rows) else None
    return rows[start:end], following


# ---------------------------------------------------------------------------------------------
# Overlay
# ---------------------------------------------------------------------------------------------


def install(gateway: Gateway, lab: Lab) -> None:
    """Answer Run Command and DescribeInstanceInformation for the lab's bastions."""

    def service() -> RunCommandService:
        bastions = lab.bastions
        if bastions is None:
            raise SsmError(
                "UnsupportedOperationException",
                "the lab's bastions component is not running, so there are no SSM agents; start "
                "the lab with harness.lab.bastions:Bastions among its components",
            )
        return bastions.ssm

    def operation(
        fn: Callable[[LabRequest, dict[str, Any]], dict[str, Any]],
    ) -> Callable[[LabRequest], LabResponse]:
        def handler(request: LabRequest) -> LabResponse:
            try:
                body = request.json()
            except json.JSONDecodeError:
                return error_response(
                    "json", 400, "SerializationException", "request body is not JSON"
                )
            try:
                return LabResponse.json(fn(request, body))
            except SsmError as exc:
                return error_response("json", 400, exc.code, exc.message)

        return handler

    def send(request: LabRequest, body: dict[str, Any]) -> dict[str, Any]:
        return {"Command": service().send_command(request.region, body)}

    def get(request: LabRequest, body: dict[str, Any]) -> dict[str, Any]:
        command_id = str(body.get("CommandId") or "")
        if not _COMMAND_ID_RE.match(command_id):
            raise SsmError("InvalidCommandId", f"Command ID {command_id!r} is not valid.")
        return service().get_invocation(
            request.region, command_id, str(body.get("InstanceId") or ""), body.get("PluginName")
        )

    def list_invocations(request: LabRequest, body: dict[str, Any]) -> dict[str, Any]:
        return service().list_invocations(request.region, body)

    def list_commands(request: LabRequest, body: dict[str, Any]) -> dict[str, Any]:
        return service().list_commands(request.region, body)

    def cancel(request: LabRequest, body: dict[str, Any]) -> dict[str, Any]:
        service().cancel_command(
            request.region,
            str(body.get("CommandId") or ""),
            [str(i) for i in body.get("InstanceIds") or []],
        )
        return {}

    def describe(request: LabRequest, body: dict[str, Any]) -> dict[str, Any]:
        return service().describe_instances(request.region, body)

    for name, fn in (
        ("SendCommand", send),
        ("GetCommandInvocation", get),
        ("ListCommandInvocations", list_invocations),
        ("ListCommands", list_commands),
        ("CancelCommand", cancel),
        ("DescribeInstanceInformation", describe),
    ):
        gateway.overlay("ssm", name, operation(fn))
