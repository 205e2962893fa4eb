"""How a command reaches a host: executors chosen by a target string.

``ssm://INSTANCE_ID?region=REGION`` runs through SSM Run Command (``AWS-RunShellScript``);
``ssh://USER@HOST[:PORT]`` through SSH (paramiko). Executor classes are registered by name as
``"module:Class"`` and imported only when a target of that scheme is opened, so using SSM never
imports paramiko. Tests and scenarios talk to :class:`~harness.hosts.bastion.Bastion`, which
wraps an executor and adds the dig/curl probes.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from harness.clock import REAL_TIME, Clock
from harness.errors import ConfigError
from harness.hosts.base import CommandResult, Executor, FanOutError, gather, run_expect

__all__ = [
    "EXECUTORS",
    "CommandResult",
    "Executor",
    "FanOutError",
    "executor_class",
    "get_executor",
    "run_expect",
    "run_many",
]

EXECUTORS: dict[str, str] = {
    "ssm": "harness.hosts.ssm:SsmExecutor",
    "ssh": "harness.hosts.ssh:SshExecutor",
}


def executor_class(scheme: str) -> type[Executor]:
    """Return the executor class registered for ``scheme`` (imported on first use).

    Raises:
        ConfigError: no executor is registered for ``scheme`` (the message lists the known ones).
    """
    spec = EXECUTORS.get(scheme)
    if spec is None:
        known = ", ".join(f"{name}://" for name in sorted(EXECUTORS))
        raise ConfigError(f"unknown executor scheme {scheme!r}; known schemes: {known}")
    module_name, class_name = spec.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise ConfigError(f"executor {spec} registered for {scheme!r} is not an Executor")
    return cls


def get_executor(
    target: str, *, sessions: Any = None, clock: Clock = REAL_TIME, **options: Any
) -> Executor:
    """Open the executor a target string names.

    ``sessions`` (a :class:`~harness.aws.session.SessionFactory`) is needed by ``ssm://``;
    ``options`` go to the executor (for ``ssh://``: ``key``, ``host_keys``, ``resolve_endpoint``,
    ``jump``...).

    Raises:
        ConfigError: the target string is malformed or its scheme is unknown (named).
    """
    if not isinstance(target, str) or "://" not in target:
        known = ", ".join(f"{name}://" for name in sorted(EXECUTORS))
        raise ConfigError(f"executor target {target!r} must look like SCHEME://...; known: {known}")
    scheme = urlsplit(target).scheme
    cls = executor_class(scheme)
    from_target = getattr(cls, "from_target", None)
    if from_target is None:
        raise ConfigError(f"executor {cls.__name__} cannot be opened from a target string")
    executor: Executor = from_target(target, sessions=sessions, clock=clock, **options)
    return executor


def run_many(
    executors: Sequence[Executor], command: str, timeout: float
) -> dict[str, CommandResult]:
    """Run one command on many hosts, each transport fanning out its own way.

    Executors are grouped by class so SSM hosts share one ``SendCommand`` per region while SSH
    hosts run in parallel. Results are keyed by host.

    Raises:
        FanOutError: some hosts could not run the command; the others' results are attached.
    """
    groups: dict[type[Executor], list[Executor]] = {}
    for executor in executors:
        groups.setdefault(type(executor), []).append(executor)
    return gather(
        (
            functools.partial(cls.run_many, members, command, timeout)
            for cls, members in groups.items()
        ),
        total=len(executors),
    )
