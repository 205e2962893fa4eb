"""The executor interface: run one shell command on one host and report what happened.

Every transport (SSM, SSH) implements :class:`Executor`; scenarios and probes only ever see
:class:`CommandResult`. Timeouts are given in the target's modelled seconds (on AWS, wall
seconds; in the lab, lab seconds) so a scenario means the same thing on both targets; each
executor converts through its :class:`~harness.clock.Clock`. ``CommandResult.duration`` is what
the harness measured on its own wall clock.

Errors (see :mod:`harness.errors`): a command that ran and exited non-zero is a result, not an
exception. :class:`~harness.errors.CommandError` means the command could not be run (host
unknown, not delivered, transport failure) and names the host; :class:`~harness.errors.
CommandTimeout` means it did not finish in time. :class:`FanOutError` is a CommandError raised
by ``run_many`` when some hosts failed, carrying the results of the others.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

from harness.errors import CommandError, ConfigError

__all__ = [
    "CommandResult",
    "Executor",
    "FanOutError",
    "run_expect",
    "tail",
]

_TAIL_CHARS = 2000  # how much of stdout/stderr an error message quotes


@dataclass(frozen=True)
class CommandResult:
    """What one command did on one host.

    ``rc`` is the exit status (-1 when the transport has none, e.g. SSM TimedOut). ``status`` is
    the transport's final status (SSM ``Success``/``Failed``/``TimedOut``...; SSH ``Success``
    or ``Failed`` by exit status). ``duration`` is wall seconds from sending to the final status.
    ``truncated`` is True when the transport cut the output (SSM keeps the first 24,000
    characters of stdout and 8,000 of stderr), so parsers must not trust its end.
    """

    rc: int
    stdout: str
    stderr: str
    duration: float
    truncated: bool = False
    status: str = ""
    host: str = ""

    @property
    def ok(self) -> bool:
        """Return True when the command exited 0."""
        return self.rc == 0


class FanOutError(CommandError):
    """Some hosts of a fan-out could not run the command; ``results`` holds the other hosts'.

    ``failures`` maps each failed host to the reason (also in the message).
    """

    def __init__(
        self,
        message: str,
        *,
        results: Mapping[str, CommandResult],
        failures: Mapping[str, str],
    ) -> None:
        super().__init__(message)
        self.results = dict(results)
        self.failures = dict(failures)


class Executor(abc.ABC):
    """Run shell commands on one host over one transport (SSM, SSH)."""

    NAME: ClassVar[str]

    @property
    @abc.abstractmethod
    def host(self) -> str:
        """Return the host's identity in results and errors (instance id, address)."""

    @property
    @abc.abstractmethod
    def target(self) -> str:
        """Return the target string that selects this executor (``ssm://...``, ``ssh://...``)."""

    @abc.abstractmethod
    def run(
        self, command: str, timeout: float, *, expected_duration: float | None = None
    ) -> CommandResult:
        """Run ``command`` through ``sh`` and wait at most ``timeout`` modelled seconds.

        ``expected_duration`` (modelled seconds) is a hint for transports that poll: a
        long-running command (a probe loop) is not checked before then, which keeps API
        calls proportional to the number of hosts rather than to the command's length.

        Raises:
            CommandTimeout: the command did not finish within ``timeout``.
            CommandError: the command could not be run (names the host).
        """

    def close(self) -> None:
        """Release connections (nothing to do for stateless transports)."""
        return None

    @classmethod
    def run_many(
        cls, executors: Sequence[Executor], command: str, timeout: float
    ) -> dict[str, CommandResult]:
        """Run ``command`` on every executor concurrently; return results keyed by host.

        The default runs each ``run`` in a thread; transports that can fan one request out (SSM)
        override it. A timed-out host gets a result with status ``TimedOut`` and rc -1 so the
        caller sees every other host's output.

        Raises:
            FanOutError: some hosts could not run the command (their reasons in the message,
                the other hosts' results in ``results``).
        """
        from harness.errors import CommandTimeout

        started = time.monotonic()
        _check_unique(executors)
        if not executors:
            return {}
        results: dict[str, CommandResult] = {}
        failures: dict[str, str] = {}
        with ThreadPoolExecutor(
            max_workers=min(len(executors), 16), thread_name_prefix=f"{cls.NAME}-fanout"
        ) as pool:
            futures = {e.host: pool.submit(e.run, command, timeout) for e in executors}
            for host, future in futures.items():
                try:
                    results[host] = future.result()
                except CommandTimeout:
                    results[host] = CommandResult(
                        rc=-1,
                        stdout="",
                        stderr="",
                        duration=time.monotonic() - started,
                        status="TimedOut",
                        host=host,
                    )
                except CommandError as exc:
                    failures[host] = str(exc)
        return fan_out_result(results, failures, total=len(executors))


def fan_out_result(
    results: dict[str, CommandResult],
    failures: dict[str, str],
    *,
    total: int,
    what: str = "host(s) could not run the command",
) -> dict[str, CommandResult]:
    """Return a fan-out's results, or raise FanOutError naming every host that failed."""
    if failures:
        raise FanOutError(
            f"{len(failures)} of {total} {what}: " + "; ".join(failures.values()),
            results=results,
            failures=failures,
        )
    return results


def gather(
    runs: Iterable[Callable[[], dict[str, CommandResult]]],
    *,
    total: int,
    what: str = "host(s) could not run the command",
) -> dict[str, CommandResult]:
    """Run several partial fan-outs and merge them: results kept, failures reported together."""
    results: dict[str, CommandResult] = {}
    failures: dict[str, str] = {}
    for run in runs:
        try:
            results.update(run())
        except FanOutError as exc:
            results.update(exc.results)
            failures.update(exc.failures)
    return fan_out_result(results, failures, total=total, what=what)


def _check_unique(executors: Sequence[Executor]) -> None:
    seen: set[str] = set()
    for executor in executors:
        if executor.host in seen:
            raise ConfigError(f"host {executor.host} appears twice in one fan-out")
        seen.add(executor.host)


def tail(text: str, limit: int = _TAIL_CHARS) -> str:
    """Return the end of ``text`` (where errors are printed), marked when cut."""
    if len(text) <= limit:
        return text
    return "[...]" + text[-limit:]


def run_expect(
    executor: Executor,
    command: str,
    *,
    rc: int | Collection[int] = 0,
    timeout: float = 60.0,
) -> CommandResult:
    """Run ``command`` and fail unless it exits with one of ``rc``.

    The error quotes the command, host, exit status and the end of stdout/stderr so a failed
    test says what happened on the bastion without a second look. This frame is hidden from
    pytest tracebacks, so the failure points at the caller.

    Raises:
        CommandError: the exit status is not in ``rc`` (or the command could not run).
    """
    __tracebackhide__ = True
    expected = {rc} if isinstance(rc, int) else set(rc)
    result = executor.run(command, timeout)
    if result.rc not in expected:
        wanted = ", ".join(str(code) for code in sorted(expected))
        raise CommandError(
            f"{command!r} on {executor.host} exited {result.rc} ({result.status or 'no status'}), "
            f"expected {wanted}\n--- stdout ---\n{tail(result.stdout)}\n"
            f"--- stderr ---\n{tail(result.stderr)}"
        )
    return result
