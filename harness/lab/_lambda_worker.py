"""Run one lab Lambda execution environment: import the handler once, then serve invocations.

``harness.lab.lambda_runtime`` starts this file by path as ``python -I -u -B -X utf8 <file>``, with
the function's code directory as working directory and a minimal environment. It must stay
stdlib-only: isolated mode puts neither the lab's sources nor PYTHONPATH on ``sys.path``, exactly
as the handler would see on Lambda (plus the interpreter's own site-packages).

Channel: frames of a 4-byte big-endian length and UTF-8 JSON. The runtime's pipes arrive on fds 0
and 1 and the invocation log file on fd 2. The pipes are moved to private descriptors before fd 0
is pointed at /dev/null and fd 1 at the log file, so nothing the handler writes (print, sys.stdout,
``os.write(1, ...)``, a child process) can reach the channel.

Error shapes and wording follow the AWS Lambda Python runtime interface client (awslambdaric).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import struct
import sys
import time
import traceback
from typing import Any

_HEADER = struct.Struct(">I")
# Lambda's synchronous response payload limit, as its error message states it.
_MAX_RESPONSE_BYTES = 6291556
_THIS_FILE = os.path.abspath(__file__)
_current_request_id = ""


class _Fault(Exception):
    """A runtime-detected problem reported with one of Lambda's ``Runtime.*`` error types."""

    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


def _make_error(message: str, error_type: str, trace: list[str], request_id: str) -> dict[str, Any]:
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": trace,
    }


def _error_from_exception(exc: BaseException, request_id: str) -> dict[str, Any]:
    frames = list(traceback.extract_tb(exc.__traceback__))
    # Hide this file's frames, as Lambda hides bootstrap.py: the trace starts in user code.
    for index, frame in enumerate(frames):
        if os.path.abspath(frame.filename) != _THIS_FILE:
            frames = frames[index:]
            break
    return _make_error(str(exc), type(exc).__name__, traceback.format_list(frames), request_id)


def _log_error(error: dict[str, Any]) -> None:
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}"]
    if error["stackTrace"]:
        lines.append("Traceback (most recent call last):")
        lines.extend(line.rstrip("\n") for line in error["stackTrace"])
    sys.stdout.write("\n".join(lines) + "\n")


class LambdaContext:
    """The context object Lambda passes to a Python handler (same attribute names and types)."""

    def __init__(self, request_id: str, deadline_epoch_ms: int, invoked_function_arn: str) -> None:
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        # A string, as the real runtime reads it from the environment.
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.client_context = None
        self.identity = None
        self._deadline_epoch_ms = deadline_epoch_ms

    def get_remaining_time_in_millis(self) -> int:
        """Return the milliseconds left before the runtime kills this invocation."""
        return max(self._deadline_epoch_ms - int(time.time() * 1000), 0)

    def log(self, msg: object) -> None:
        """Write ``msg`` to the invocation log, as ``context.log`` does on Lambda."""
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"function_name={self.function_name},function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn}])"
        )


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _current_request_id
        return True


class _StdoutHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        # Looked up per record: the handler may replace sys.stdout, and Lambda follows it too.
        sys.stdout.write(self.format(record))


def _setup_logging() -> None:
    """Give the root logger Lambda's text format; the level stays WARNING, as on Lambda."""
    logging.Formatter.converter = time.gmtime
    handler = _StdoutHandler()
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.addFilter(_RequestIdFilter())
    logging.getLogger().addHandler(handler)


def _load_handler(spec: str) -> Any:
    """Import the handler module and return the handler, with Lambda's fault types and wording."""
    try:
        module_name, function_name = spec.rsplit(".", 1)
    except ValueError as exc:
        raise _Fault("Runtime.MalformedHandlerName", f"Bad handler '{spec}': {exc}") from None
    try:
        if module_name.split(".")[0] in sys.builtin_module_names:
            raise _Fault(
                "Runtime.BuiltInModuleConflict",
                f"Cannot use built-in module {module_name} as a handler module",
            )
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise _Fault(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from None
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise _Fault(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}", trace
        ) from None
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise _Fault(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        ) from None


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> dict[str, Any] | None:
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    body = _read_exact(fd, _HEADER.unpack(header)[0])
    if body is None:
        return None
    message: dict[str, Any] = json.loads(body)
    return message


def _write_frame(fd: int, message: dict[str, Any]) -> None:
    body = json.dumps(message).encode("utf-8")
    view = memoryview(_HEADER.pack(len(body)) + body)
    while view:
        view = view[os.write(fd, view) :]


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            # A handler that closed or replaced its streams must not take the runtime down.
            continue


def _max_rss_kb() -> int:
    # Linux: VmHWM belongs to this process's address space. getrusage's ru_maxrss is kept
    # across fork+exec, so a worker started from a large process (pytest with moto loaded)
    # would report its parent's peak and look out of memory.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    return peak // 1024 if sys.platform == "darwin" else peak


def _invoke(handler: Any, message: dict[str, Any]) -> dict[str, Any]:
    global _current_request_id
    request_id: str = message["request_id"]
    _current_request_id = request_id
    context = LambdaContext(
        request_id, message["deadline_epoch_ms"], message["invoked_function_arn"]
    )
    event = json.loads(message["event_json"])
    try:
        response = handler(event, context)
    except Exception as exc:
        # Like Lambda, BaseExceptions (SystemExit, KeyboardInterrupt) end the runtime instead.
        error = _error_from_exception(exc, request_id)
        _log_error(error)
        return {"type": "result", "status": "function_error", "error": error}
    if isinstance(response, bytes | bytearray):
        error = _make_error(
            "Unable to marshal response: the lab does not model raw bytes responses "
            f"(handler returned {type(response).__name__})",
            "Runtime.MarshalError",
            [],
            request_id,
        )
        _log_error(error)
        return {"type": "result", "status": "runtime_error", "error": error}
    try:
        payload_json = json.dumps(response, ensure_ascii=False)
    except Exception as exc:
        error = _make_error(
            f"Unable to marshal response: {exc}", "Runtime.MarshalError", [], request_id
        )
        _log_error(error)
        return {"type": "result", "status": "runtime_error", "error": error}
    if len(payload_json.encode("utf-8")) > _MAX_RESPONSE_BYTES:
        error = _make_error(
            "Response payload size exceeded maximum allowed payload size "
            f"({_MAX_RESPONSE_BYTES} bytes).",
            "Function.ResponseSizeTooLarge",
            [],
            request_id,
        )
        return {"type": "result", "status": "function_error", "error": error}
    return {"type": "result", "status": "success", "payload_json": payload_json}


def main(argv: list[str]) -> int:
    """Serve invocations until the runtime closes the channel; return the exit status."""
    if "--unset-coerced-lc-ctype" in argv:
        os.environ.pop("LC_CTYPE", None)
    channel_in = os.dup(0)
    channel_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)

    sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
    _setup_logging()
    started = time.monotonic()
    handler = None
    error = None
    try:
        handler = _load_handler(os.environ["_HANDLER"])
    except _Fault as fault:
        error = _make_error(fault.message, fault.error_type, fault.trace, "")
    except Exception as exc:
        # Module-level code raised: Lambda reports the exception itself as the init error.
        error = _error_from_exception(exc, "")
    if error is not None:
        _log_error(error)
    _flush_output()
    init_ms = (time.monotonic() - started) * 1000
    _write_frame(channel_out, {"type": "ready", "init_ms": init_ms, "error": error})
    if error is not None:
        return 1

    while True:
        message = _read_frame(channel_in)
        if message is None:
            return 0
        if message.get("type") != "invoke":
            sys.stdout.write(f"lab Lambda worker: unexpected frame type {message.get('type')!r}\n")
            return 2
        result = _invoke(handler, message)
        _flush_output()
        result["max_rss_kb"] = _max_rss_kb()
        _write_frame(channel_out, result)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
