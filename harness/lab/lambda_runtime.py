"""Run a Lambda function's real inline Python code in warm, isolated worker processes.

The lab's API Gateway twin forwards requests to the Lambda proxy integration, and the handler the
deployed template carries must really run: a broken handler, a slow one, or one throttled to zero
must show up to a scenario exactly as on AWS. Each execution environment is a subprocess holding
the function's code (``Code.ZipFile`` becomes ``index.py``, as CloudFormation names it) with a
minimal environment (no lab credentials, no lab secrets), reused warm between invocations so a
request costs milliseconds; a code or configuration change starts fresh environments.

Timeouts are enforced in real seconds, not on the lab clock: the handler runs at real speed, so
scaling its limit by the lab speed would time out fast handlers spuriously.

What is modelled and what is not:

- Synchronous invocation: no queueing; beyond the concurrency limit an invoke is throttled.
- ``memory_mb`` is passed to the handler and checked against the worker's peak resident memory
  after each invocation (reported as ``Runtime.OutOfMemory``); it is not a hard cap during it.
- Any ``python3.N`` runtime runs on the lab's interpreter (``AWS_EXECUTION_ENV`` still names the
  declared runtime); other runtimes are refused with :class:`~harness.errors.LabError`.
- No execution-role credentials are provided, so a handler calling AWS APIs fails for want of
  credentials rather than reaching anything.
- Raw ``bytes`` responses are refused (``Runtime.MarshalError``) rather than passed through.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import json
import math
import os
import re
import secrets
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType, TracebackType
from typing import Any, Literal

from harness.errors import LabError

__all__ = ["FunctionSpec", "Invocation", "InvocationStatus", "LambdaRuntime", "inline_code_sha256"]

InvocationStatus = Literal["success", "function_error", "timeout", "throttled", "runtime_error"]

_WORKER_SCRIPT = Path(__file__).with_name("_lambda_worker.py")
_RUNTIME_RE = re.compile(r"python3\.\d+")
_FUNCTION_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENV_KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]+")
# Keys Lambda refuses in a function's Environment.Variables (it sets them itself).
_RESERVED_ENV_KEYS = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_REGION",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_TASK_ROOT",
    }
)
_MAX_TIMEOUT_S = 900.0
_MIN_MEMORY_MB, _MAX_MEMORY_MB = 128, 10240
# Lambda's synchronous invocation request limit (6 MB).
_MAX_EVENT_BYTES = 6 * 1024 * 1024
# Lambda gives on-demand initialisation (importing the handler module) 10 seconds.
_INIT_TIMEOUT_S = 10.0
# Invoke's LogResult carries the last 4 KB of the execution log.
_LOG_TAIL_BYTES = 4096
# A worker's log file is emptied once it grows past this, so chatty handlers cannot fill the disk.
_LOG_FILE_ROTATE_BYTES = 1 << 20
_HEADER = struct.Struct(">I")
_MAX_FRAME_BYTES = 16 * 1024 * 1024
_SIGNAL_WORDING = {
    signal.SIGKILL: "killed",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGTERM: "terminated",
}


def inline_code_sha256(files: Mapping[str, str]) -> str:
    """Return a base64 SHA-256 digest identifying ``files`` (file name → source).

    Lambda's ``CodeSha256`` hashes the deployment zip, which inline code never has in the lab; this
    digest has the same shape and changes exactly when a file name or content changes.
    """
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode("utf-8") + b"\0" + files[name].encode("utf-8") + b"\0")
    return base64.b64encode(digest.digest()).decode("ascii")


@dataclass(frozen=True)
class FunctionSpec:
    """One deployed function as the lab runs it: its code, handler and configuration.

    ``files`` maps relative file names to source; inline ``Code.ZipFile`` code is ``index.py``.
    ``code_sha256`` defaults to :func:`inline_code_sha256` of ``files``.

    Raises:
        ValueError: on a bad name, file path, reserved or malformed environment key, or a
            timeout, memory size or reserved concurrency outside Lambda's limits.
    """

    name: str
    arn: str
    region: str
    runtime: str
    handler: str
    files: Mapping[str, str] = field(hash=False)
    environment: Mapping[str, str] = field(default_factory=dict, hash=False)
    timeout: float = 3.0
    memory_mb: int = 128
    reserved_concurrency: int | None = None
    code_sha256: str = ""

    def __post_init__(self) -> None:
        if not _FUNCTION_NAME_RE.fullmatch(self.name):
            raise ValueError(
                f"function name {self.name!r} must be 1 to 64 letters, digits, '-' or '_'"
            )
        if not self.region:
            raise ValueError(f"function {self.name} has no region")
        if not self.handler:
            raise ValueError(f"function {self.name} has no handler")
        for path, source in self.files.items():
            parts = PurePosixPath(path).parts
            if not path or path.startswith("/") or "\\" in path or ".." in parts:
                raise ValueError(
                    f"file name {path!r} of function {self.name} must be a relative path "
                    "inside the code directory"
                )
            if not isinstance(source, str):
                raise ValueError(f"file {path!r} of function {self.name} is not text")
        for key, value in self.environment.items():
            if not _ENV_KEY_RE.fullmatch(key):
                raise ValueError(
                    f"environment variable name {key!r} of function {self.name} must match "
                    "[a-zA-Z][a-zA-Z0-9_]+"
                )
            if key in _RESERVED_ENV_KEYS:
                raise ValueError(
                    f"environment variable {key} of function {self.name} is reserved by Lambda"
                )
            if not isinstance(value, str):
                raise ValueError(
                    f"environment variable {key} of function {self.name} is not a string: {value!r}"
                )
        if not 0 < self.timeout <= _MAX_TIMEOUT_S:
            raise ValueError(
                f"timeout {self.timeout!r} of function {self.name} must be in (0, 900] seconds"
            )
        if not _MIN_MEMORY_MB <= self.memory_mb <= _MAX_MEMORY_MB:
            raise ValueError(
                f"memory size {self.memory_mb!r} MB of function {self.name} must be in "
                f"[{_MIN_MEMORY_MB}, {_MAX_MEMORY_MB}]"
            )
        if self.reserved_concurrency is not None and self.reserved_concurrency < 0:
            raise ValueError(
                f"reserved concurrency {self.reserved_concurrency} of function {self.name} "
                "must be >= 0"
            )
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))
        object.__setattr__(self, "environment", MappingProxyType(dict(self.environment)))
        if not self.code_sha256:
            object.__setattr__(self, "code_sha256", inline_code_sha256(self.files))

    def _environment_key(self) -> tuple[object, ...]:
        """Return what, when changed, needs new execution environments (code or configuration)."""
        return (
            self.code_sha256,
            self.arn,
            self.region,
            self.runtime,
            self.handler,
            tuple(sorted(self.environment.items())),
            self.timeout,
            self.memory_mb,
        )


@dataclass(frozen=True)
class Invocation:
    """The outcome of one synchronous invoke, in the terms Lambda's Invoke API reports it.

    ``payload`` is the handler's return value after a JSON round trip (``None`` unless
    ``status == "success"``); ``error`` is Lambda's error document otherwise. ``logs`` is the tail
    (at most 4 KB) of the execution log: START, the handler's output, END and REPORT lines.
    """

    status: InvocationStatus
    payload: Any
    error: Mapping[str, Any] | None
    duration_ms: float
    request_id: str
    logs: str
    cold_start: bool


class _Timeout(Exception):
    pass


class _WorkerGone(Exception):
    pass


class _Worker:
    """One execution environment: a worker process, its channel pipes and its log file."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path, pool: _Pool) -> None:
        self.process = process
        self.log_path = log_path
        self.pool = pool
        self._log_offset = 0
        self._killed = False
        self._kill_lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, message: Mapping[str, Any]) -> None:
        body = json.dumps(message).encode("utf-8")
        stdin = self.process.stdin
        assert stdin is not None
        view = memoryview(_HEADER.pack(len(body)) + body)
        try:
            while view:
                view = view[os.write(stdin.fileno(), view) :]
        except (BrokenPipeError, ValueError, OSError) as exc:
            raise _WorkerGone from exc

    def receive(self, deadline: float) -> dict[str, Any]:
        header = self._read_exact(_HEADER.size, deadline)
        (size,) = _HEADER.unpack(header)
        if size > _MAX_FRAME_BYTES:
            raise ValueError(f"frame of {size} bytes exceeds {_MAX_FRAME_BYTES}")
        message: dict[str, Any] = json.loads(self._read_exact(size, deadline))
        return message

    def _read_exact(self, size: int, deadline: float) -> bytes:
        stdout = self.process.stdout
        assert stdout is not None
        fd = stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        buffer = bytearray()
        while len(buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(math.ceil(remaining * 1000)):
                raise _Timeout
            try:
                chunk = os.read(fd, size - len(buffer))
            except OSError as exc:
                raise _WorkerGone from exc
            if not chunk:
                raise _WorkerGone
            buffer += chunk
        return bytes(buffer)

    def read_log(self) -> str:
        """Return what the worker wrote since the last call."""
        try:
            with self.log_path.open("rb") as handle:
                end = handle.seek(0, os.SEEK_END)
                start = max(self._log_offset, end - _LOG_TAIL_BYTES)
                handle.seek(start)
                data = handle.read(end - start)
        except FileNotFoundError:
            return ""
        self._log_offset = end
        if end > _LOG_FILE_ROTATE_BYTES:
            # The worker's descriptor is O_APPEND, so it keeps writing at the new end.
            os.truncate(self.log_path, 0)
            self._log_offset = 0
        return data.decode("utf-8", errors="replace")

    def exit_description(self) -> str:
        """Describe how the worker ended, in the words Lambda uses for Runtime.ExitError.

        The status is read without reaping (``WNOWAIT``) so that :meth:`kill` can still signal
        the worker's process group, whose id stays reserved until the worker is reaped.
        """
        deadline = time.monotonic() + 2
        info = None
        while info is None and time.monotonic() < deadline:
            try:
                info = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            except ChildProcessError:
                break  # close() reaped it concurrently; Popen has the status.
            if info is None:
                time.sleep(0.005)
        # Kills what the handler left behind, or the worker itself if it closed its pipes but
        # lives on.
        self.kill()
        if info is not None and info.si_code == os.CLD_EXITED:
            return f"exit status {info.si_status}"
        number = info.si_status if info is not None else -(self.process.returncode or 0)
        if number <= 0:
            return f"exit status {self.process.returncode}"
        try:
            wording = _SIGNAL_WORDING.get(signal.Signals(number), signal.Signals(number).name)
        except ValueError:
            wording = f"signal {number}"
        return f"signal: {wording}"

    def kill(self) -> None:
        """Kill the worker and anything it started (its own process group), then reap it.

        Safe from any thread: the pipes stay open, so a thread blocked reading them sees end of
        file rather than a descriptor that may already be reused. The group is signalled only
        while the worker is unreaped, since only then can its id not belong to someone else.
        """
        with self._kill_lock:
            if not self._killed:
                self._killed = True
                if self.process.returncode is None:
                    try:
                        os.killpg(self.process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self.process.wait()

    def dispose(self) -> None:
        """Kill the worker, close its pipes and remove its log; only for the worker's owner."""
        self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self.log_path.unlink(missing_ok=True)


@dataclass
class _Pool:
    """The execution environments of one code and configuration version of a function."""

    function_name: str
    key: tuple[object, ...]
    directory: Path
    environment: dict[str, str]
    idle: list[_Worker] = field(default_factory=list)


@dataclass
class _FunctionState:
    pool: _Pool
    in_flight: int = 0


class LambdaRuntime:
    """Invoke lab functions in warm worker processes, up to a concurrency limit per function.

    Thread-safe: concurrent :meth:`invoke` calls run in parallel in separate workers. Call
    :meth:`close` (or use it as a context manager) to kill every worker.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        python: str = sys.executable,
        max_workers_per_function: int = 4,
    ) -> None:
        if max_workers_per_function < 1:
            raise ValueError(
                f"max_workers_per_function must be at least 1, not {max_workers_per_function}"
            )
        self._workdir = Path(workdir)
        self._code_root = self._workdir / "functions"
        self._log_root = self._workdir / "logs"
        self._python = python
        self._max_workers = max_workers_per_function
        self._lock = threading.Lock()
        self._functions: dict[str, _FunctionState] = {}
        self._workers: set[_Worker] = set()
        self._sequence = itertools.count(1)
        self._closed = False

    def __enter__(self) -> LambdaRuntime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def worker_pids(self) -> frozenset[int]:
        """Return the process ids of the live workers (idle and busy), e.g. for lab status."""
        with self._lock:
            return frozenset(worker.pid for worker in self._workers)

    def invoke(
        self, spec: FunctionSpec, event: Any, *, request_id: str | None = None
    ) -> Invocation:
        """Invoke ``spec`` synchronously with ``event`` and report the outcome as Lambda would.

        A warm idle worker of the same code and configuration is reused; otherwise a new one is
        started (``cold_start``). With ``reserved_concurrency == 0`` every invoke is throttled, as
        after ``PutFunctionConcurrency`` 0; otherwise at most
        ``min(reserved_concurrency, max_workers_per_function)`` run at once and the rest are
        throttled, since Lambda does not queue synchronous invokes.

        Raises:
            LabError: if the runtime is not ``python3.N``, the event is not JSON or is over 6 MB,
                a worker process cannot be started, or the runtime is closed.
        """
        if not _RUNTIME_RE.fullmatch(spec.runtime):
            raise LabError(
                f"runtime {spec.runtime} of function {spec.name} is not supported by the lab; "
                "only python3.x inline code runs"
            )
        request_id = request_id or str(uuid.uuid4())
        try:
            event_json = json.dumps(event)
        except (TypeError, ValueError) as exc:
            raise LabError(f"event for function {spec.name} is not JSON: {exc}") from exc
        if len(event_json.encode("utf-8")) > _MAX_EVENT_BYTES:
            raise LabError(
                f"event for function {spec.name} exceeds Lambda's 6 MB synchronous payload limit"
            )
        if spec.reserved_concurrency == 0:
            return _throttled(request_id, "ReservedFunctionConcurrentInvocationLimitExceeded")
        if spec.reserved_concurrency is not None and spec.reserved_concurrency <= self._max_workers:
            limit = spec.reserved_concurrency
            reason = "ReservedFunctionConcurrentInvocationLimitExceeded"
        else:
            limit, reason = self._max_workers, "ConcurrentInvocationLimitExceeded"

        retired: list[_Worker] = []
        with self._lock:
            if self._closed:
                raise LabError(f"cannot invoke {spec.name}: the lab Lambda runtime is closed")
            state = self._state_for(spec, retired)
            if state.in_flight >= limit:
                throttled = True
            else:
                throttled = False
                state.in_flight += 1
                pool = state.pool
                worker = self._take_idle(pool, retired)
        for old in retired:
            old.dispose()
        if throttled:
            return _throttled(request_id, reason)
        try:
            return self._run(spec, pool, worker, event_json, request_id)
        finally:
            with self._lock:
                state.in_flight -= 1

    def close(self) -> None:
        """Kill every worker (and its children) and remove the code and log directories."""
        with self._lock:
            self._closed = True
            idle = [worker for state in self._functions.values() for worker in state.pool.idle]
            busy = self._workers.difference(idle)
            self._workers.clear()
            self._functions.clear()
        for worker in idle:
            worker.dispose()
        # A busy worker's invoking thread sees it die and disposes of it (Runtime.ExitError).
        for worker in busy:
            worker.kill()
        shutil.rmtree(self._code_root, ignore_errors=True)
        shutil.rmtree(self._log_root, ignore_errors=True)

    # -- internals -------------------------------------------------------------------------

    def _state_for(self, spec: FunctionSpec, retired: list[_Worker]) -> _FunctionState:
        """Return the function's state, retiring its environments if code or config changed."""
        key = spec._environment_key()
        state = self._functions.get(spec.name)
        if state is not None and state.pool.key == key:
            return state
        pool = self._new_pool(spec, key)
        if state is None:
            state = _FunctionState(pool)
            self._functions[spec.name] = state
        else:
            # Busy workers of the old version finish their invocation and are killed on return.
            retired.extend(state.pool.idle)
            self._workers.difference_update(state.pool.idle)
            state.pool.idle.clear()
            state.pool = pool
        return state

    def _new_pool(self, spec: FunctionSpec, key: tuple[object, ...]) -> _Pool:
        directory = self._code_root / f"{spec.name}-{next(self._sequence)}"
        for name, source in spec.files.items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source, encoding="utf-8")
        directory.mkdir(parents=True, exist_ok=True)
        environment = {
            "AWS_REGION": spec.region,
            "AWS_DEFAULT_REGION": spec.region,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "_HANDLER": spec.handler,
            "LAMBDA_TASK_ROOT": str(directory),
            "LAMBDA_RUNTIME_DIR": str(_WORKER_SCRIPT.parent),
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            **spec.environment,
        }
        return _Pool(function_name=spec.name, key=key, directory=directory, environment=environment)

    def _take_idle(self, pool: _Pool, retired: list[_Worker]) -> _Worker | None:
        while pool.idle:
            worker = pool.idle.pop()
            if worker.alive():
                return worker
            # Died while idle (a background thread exited the process, say): reap and move on.
            self._workers.discard(worker)
            retired.append(worker)
        return None

    def _spawn(self, spec: FunctionSpec, pool: _Pool) -> _Worker:
        self._log_root.mkdir(parents=True, exist_ok=True)
        log_path = self._log_root / f"{spec.name}-{next(self._sequence)}.log"
        today = dt.datetime.now(dt.UTC).strftime("%Y/%m/%d")
        environment = {
            **pool.environment,
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{today}/[$LATEST]{secrets.token_hex(16)}",
        }
        try:
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    [*self._worker_command, *self._worker_flags(spec)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    cwd=pool.directory,
                    env=environment,
                    start_new_session=True,
                    bufsize=0,
                )
        except OSError as exc:
            raise LabError(
                f"cannot start a Lambda worker for function {spec.name} with {self._python}: {exc}"
            ) from exc
        worker = _Worker(process, log_path, pool)
        with self._lock:
            closed = self._closed
            if not closed:
                self._workers.add(worker)
        if closed:
            worker.dispose()
            raise LabError(f"cannot invoke {spec.name}: the lab Lambda runtime is closed")
        return worker

    @property
    def _worker_command(self) -> list[str]:
        return [self._python, "-I", "-u", "-B", "-X", "utf8", str(_WORKER_SCRIPT)]

    @staticmethod
    def _worker_flags(spec: FunctionSpec) -> list[str]:
        # Where LANG names a locale the host lacks, Python coerces the C locale and exports
        # LC_CTYPE (PEP 538); Lambda has no such variable, so the worker removes it again unless
        # the function itself set it.
        return [] if "LC_CTYPE" in spec.environment else ["--unset-coerced-lc-ctype"]

    def _release(self, worker: _Worker, *, reusable: bool) -> None:
        with self._lock:
            state = self._functions.get(worker.pool.function_name)
            keep = (
                reusable
                and not self._closed
                and state is not None
                and state.pool is worker.pool
                and worker.alive()
            )
            if keep:
                worker.pool.idle.append(worker)
            else:
                self._workers.discard(worker)
        if not keep:
            worker.dispose()

    def _run(
        self,
        spec: FunctionSpec,
        pool: _Pool,
        worker: _Worker | None,
        event_json: str,
        request_id: str,
    ) -> Invocation:
        cold_start = worker is None
        if worker is None:
            worker = self._spawn(spec, pool)
        try:
            return self._drive(spec, worker, event_json, request_id, cold_start=cold_start)
        except (KeyError, TypeError, ValueError) as exc:
            # Only a handler writing to the channel's private descriptors can get here.
            self._release(worker, reusable=False)
            raise LabError(
                f"the lab Lambda worker of function {spec.name} broke the channel protocol: {exc!r}"
            ) from exc

    def _drive(
        self,
        spec: FunctionSpec,
        worker: _Worker,
        event_json: str,
        request_id: str,
        *,
        cold_start: bool,
    ) -> Invocation:
        log = _LogBuilder(request_id, spec.memory_mb)
        if cold_start:
            try:
                ready = worker.receive(time.monotonic() + _INIT_TIMEOUT_S)
            except _Timeout:
                log.init_output = worker.read_log()
                self._release(worker, reusable=False)
                return _timed_out(request_id, _INIT_TIMEOUT_S, _INIT_TIMEOUT_S * 1000, log)
            except _WorkerGone:
                return self._exited(worker, request_id, 0.0, log, cold_start=True)
            log.init_ms = float(ready["init_ms"])
            if ready["error"] is not None:
                log.init_output = worker.read_log()
                self._release(worker, reusable=False)
                error = {**ready["error"], "requestId": request_id}
                return Invocation(
                    "runtime_error", None, error, 0.0, request_id, log.render(), cold_start=True
                )
            # Output of module-level code belongs to the init phase, logged before START.
            log.init_output = worker.read_log()
        else:
            # Output a background thread wrote between invocations is kept, not lost.
            log.add(worker.read_log())

        started = time.monotonic()
        message = {
            "type": "invoke",
            "request_id": request_id,
            "event_json": event_json,
            "deadline_epoch_ms": int(time.time() * 1000 + spec.timeout * 1000),
            "invoked_function_arn": spec.arn,
        }
        try:
            worker.send(message)
            reply = worker.receive(started + spec.timeout)
        except _Timeout:
            duration_ms = (time.monotonic() - started) * 1000
            log.add(worker.read_log())
            self._release(worker, reusable=False)
            return _timed_out(request_id, spec.timeout, duration_ms, log, cold_start=cold_start)
        except _WorkerGone:
            duration_ms = (time.monotonic() - started) * 1000
            return self._exited(worker, request_id, duration_ms, log, cold_start=cold_start)
        duration_ms = (time.monotonic() - started) * 1000
        log.add(worker.read_log())
        log.duration_ms = duration_ms
        log.max_memory_mb = math.ceil(int(reply["max_rss_kb"]) / 1024)

        if log.max_memory_mb > spec.memory_mb:
            self._release(worker, reusable=False)
            error = {
                "errorType": "Runtime.OutOfMemory",
                "errorMessage": (
                    f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"
                ),
            }
            return Invocation(
                "runtime_error", None, error, duration_ms, request_id, log.render(), cold_start
            )
        self._release(worker, reusable=True)
        if reply["status"] == "success":
            return Invocation(
                "success",
                json.loads(reply["payload_json"]),
                None,
                duration_ms,
                request_id,
                log.render(),
                cold_start,
            )
        status: InvocationStatus = (
            "runtime_error" if reply["status"] == "runtime_error" else "function_error"
        )
        return Invocation(
            status, None, reply["error"], duration_ms, request_id, log.render(), cold_start
        )

    def _exited(
        self,
        worker: _Worker,
        request_id: str,
        duration_ms: float,
        log: _LogBuilder,
        *,
        cold_start: bool,
    ) -> Invocation:
        description = worker.exit_description()
        log.add(worker.read_log())
        log.duration_ms = duration_ms
        self._release(worker, reusable=False)
        error = {
            "errorType": "Runtime.ExitError",
            "errorMessage": (
                f"RequestId: {request_id} Error: Runtime exited with error: {description}"
            ),
        }
        return Invocation(
            "runtime_error", None, error, duration_ms, request_id, log.render(), cold_start
        )


class _LogBuilder:
    """Assemble an invocation's execution log the way Lambda writes it to CloudWatch."""

    def __init__(self, request_id: str, memory_mb: int) -> None:
        self.request_id = request_id
        self.memory_mb = memory_mb
        self.init_output = ""
        self.output: list[str] = []
        self.duration_ms = 0.0
        self.init_ms: float | None = None
        self.max_memory_mb: int | None = None
        self.trailer = ""

    def add(self, text: str) -> None:
        self.output.append(text)

    def render(self) -> str:
        report = (
            f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {math.ceil(self.duration_ms)} ms\tMemory Size: {self.memory_mb} MB\t"
        )
        if self.max_memory_mb is not None:
            report += f"Max Memory Used: {self.max_memory_mb} MB\t"
        if self.init_ms is not None:
            report += f"Init Duration: {self.init_ms:.2f} ms\t"
        body = "".join(self.output)
        if body and not body.endswith("\n"):
            body += "\n"
        text = (
            f"{self.init_output}START RequestId: {self.request_id} Version: $LATEST\n"
            f"{body}END RequestId: {self.request_id}\n{report}\n{self.trailer}"
        )
        encoded = text.encode("utf-8")
        if len(encoded) <= _LOG_TAIL_BYTES:
            return text
        return encoded[-_LOG_TAIL_BYTES:].decode("utf-8", errors="ignore")


def _throttled(request_id: str, reason: str) -> Invocation:
    error = {
        "errorType": "TooManyRequestsException",
        "errorMessage": "Rate Exceeded.",
        "Reason": reason,
    }
    return Invocation("throttled", None, error, 0.0, request_id, "", cold_start=False)


def _timed_out(
    request_id: str,
    limit_s: float,
    duration_ms: float,
    log: _LogBuilder,
    *,
    cold_start: bool = True,
) -> Invocation:
    now = dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    message = f"{stamp} {request_id} Task timed out after {limit_s:.2f} seconds"
    log.duration_ms = duration_ms
    log.trailer = message + "\n"
    error = {"errorMessage": message, "errorType": "Sandbox.Timedout"}
    return Invocation("timeout", None, error, duration_ms, request_id, log.render(), cold_start)
