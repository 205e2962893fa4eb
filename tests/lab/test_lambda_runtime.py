"""Tests for the lab Lambda runtime: real handler code in warm, isolated worker processes."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from harness.errors import LabError
from harness.lab.lambda_runtime import FunctionSpec, Invocation, LambdaRuntime, inline_code_sha256

ECHO = (
    "import json, os\n"
    "def handler(event, context):\n"
    '    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, '
    '"body": json.dumps({"region": os.environ["AWS_REGION"], "event": event})}'
)

PID = """\
import os, time
def handler(event, context):
    if event.get("sleep"):
        print("going to sleep", flush=True)
        time.sleep(event["sleep"])
    return os.getpid()
"""


def make_spec(code: str | None = PID, **overrides: Any) -> FunctionSpec:
    fields: dict[str, Any] = {
        "name": "demo-fn",
        "arn": "arn:aws:lambda:eu-west-1:123456789012:function:demo-fn",
        "region": "eu-west-1",
        "runtime": "python3.12",
        "handler": "index.handler",
        "files": {} if code is None else {"index.py": code},
        "timeout": 3.0,
    }
    fields.update(overrides)
    return FunctionSpec(**fields)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LambdaRuntime]:
    with LambdaRuntime(tmp_path / "lambda") as rt:
        yield rt


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_echo_handler_returns_its_region_and_the_event(runtime: LambdaRuntime) -> None:
    event = {"path": "/demo", "headers": {"Host": "api.example.com"}, "body": None, "n": [1, 2.5]}
    result = runtime.invoke(make_spec(ECHO), event, request_id="req-1")
    assert result.status == "success", result.error
    assert result.request_id == "req-1"
    assert result.payload["statusCode"] == 200
    assert result.payload["headers"] == {"Content-Type": "application/json"}
    assert json.loads(result.payload["body"]) == {"region": "eu-west-1", "event": event}
    assert result.error is None
    assert result.cold_start
    assert "START RequestId: req-1 Version: $LATEST" in result.logs
    assert re.search(r"REPORT RequestId: req-1\tDuration: [\d.]+ ms\t", result.logs)


def test_payload_is_json_round_tripped(runtime: LambdaRuntime) -> None:
    code = "def handler(event, context):\n    return {'t': (1, 2), 1: 'int key', 'u': 'é'}\n"
    result = runtime.invoke(make_spec(code), {})
    assert result.payload == {"t": [1, 2], "1": "int key", "u": "é"}


def test_warm_worker_is_reused(runtime: LambdaRuntime) -> None:
    spec = make_spec()
    first = runtime.invoke(spec, {})
    second = runtime.invoke(spec, {})
    assert first.cold_start
    assert not second.cold_start
    assert first.payload == second.payload
    assert runtime.worker_pids() == {first.payload}
    assert "Init Duration" in first.logs
    assert "Init Duration" not in second.logs


def test_environment_is_minimal(runtime: LambdaRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIALABLEAK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "lab-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "lab-token")
    monkeypatch.setenv("REGIONDRILL_LAB_SECRET", "do-not-leak")
    monkeypatch.setenv("PYTHONPATH", "/nowhere")
    code = "import os\ndef handler(event, context):\n    return dict(os.environ)\n"
    spec = make_spec(code, environment={"STAGE": "demo"}, memory_mb=256)
    env = runtime.invoke(spec, {}).payload
    code_dir = env["LAMBDA_TASK_ROOT"]
    assert set(env) == {
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_EXECUTION_ENV",
        "_HANDLER",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "TZ",
        "LANG",
        "PATH",
        "STAGE",
    }
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "demo-fn"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["_HANDLER"] == "index.handler"
    assert env["TZ"] == ":UTC"
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert env["STAGE"] == "demo"
    assert Path(code_dir, "index.py").read_text() == code
    assert re.fullmatch(
        r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", env["AWS_LAMBDA_LOG_STREAM_NAME"]
    )
    leaked = {"AKIALABLEAK", "lab-secret", "lab-token", "do-not-leak", "/nowhere"}
    assert not leaked & set(env.values())


def test_handler_sees_task_root_first_on_sys_path(runtime: LambdaRuntime) -> None:
    code = (
        "import os, sys\n"
        "def handler(event, context):\n"
        "    return {'cwd': os.getcwd(), 'path': sys.path,\n"
        "            'runtime_dir': os.environ['LAMBDA_RUNTIME_DIR']}\n"
    )
    result = runtime.invoke(make_spec(code), {})
    assert result.payload["path"][0] == result.payload["cwd"]
    # Isolated mode: neither the worker's directory nor the working directory is added again.
    assert result.payload["runtime_dir"] not in result.payload["path"]
    assert "" not in result.payload["path"]
    assert result.payload["path"].count(result.payload["cwd"]) == 1


def test_context_object(runtime: LambdaRuntime) -> None:
    code = (
        "def handler(event, context):\n"
        "    return {k: getattr(context, k) for k in ('function_name', 'function_version',\n"
        "            'invoked_function_arn', 'memory_limit_in_mb', 'aws_request_id',\n"
        "            'log_group_name', 'log_stream_name')} | {\n"
        "            'remaining': context.get_remaining_time_in_millis()}\n"
    )
    spec = make_spec(code, timeout=2.0)
    result = runtime.invoke(spec, {}, request_id="abc-123")
    context = result.payload
    assert context["function_name"] == "demo-fn"
    assert context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"] == spec.arn
    assert context["memory_limit_in_mb"] == "128"
    assert context["aws_request_id"] == "abc-123"
    assert context["log_group_name"] == "/aws/lambda/demo-fn"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", context["log_stream_name"])
    assert 1000 < context["remaining"] <= 2000


def test_handler_exception_is_a_function_error_and_keeps_the_worker(
    runtime: LambdaRuntime,
) -> None:
    code = (
        "import os\n"
        "def inner(event):\n"
        "    raise ValueError(f\"bad order {event['id']}\")\n"
        "def handler(event, context):\n"
        "    if event.get('ok'):\n"
        "        return os.getpid()\n"
        "    inner(event)\n"
    )
    spec = make_spec(code)
    failed = runtime.invoke(spec, {"id": 7}, request_id="r-err")
    assert failed.status == "function_error"
    assert failed.payload is None
    assert failed.error is not None
    assert failed.error["errorType"] == "ValueError"
    assert failed.error["errorMessage"] == "bad order 7"
    assert failed.error["requestId"] == "r-err"
    trace = failed.error["stackTrace"]
    assert len(trace) == 2
    assert "index.py" in trace[0]
    assert "in handler" in trace[0]
    assert "in inner" in trace[1]
    assert not any("_lambda_worker" in line for line in trace)
    assert "[ERROR] ValueError: bad order 7" in failed.logs
    after = runtime.invoke(spec, {"ok": True})
    assert after.status == "success"
    assert not after.cold_start


def test_missing_handler_file_is_an_import_error(runtime: LambdaRuntime) -> None:
    result = runtime.invoke(make_spec(None, files={"other.py": "x = 1\n"}), {})
    assert result.status == "runtime_error"
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.ImportModuleError"
    assert (
        result.error["errorMessage"] == "Unable to import module 'index': No module named 'index'"
    )
    assert "[ERROR] Runtime.ImportModuleError" in result.logs
    assert runtime.worker_pids() == set()


def test_failing_import_inside_the_module_is_an_import_error(runtime: LambdaRuntime) -> None:
    code = "import not_a_real_module\ndef handler(event, context):\n    return 1\n"
    result = runtime.invoke(make_spec(code), {})
    assert result.status == "runtime_error"
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.ImportModuleError"
    assert result.error["errorMessage"] == (
        "Unable to import module 'index': No module named 'not_a_real_module'"
    )


def test_missing_handler_function_is_handler_not_found(runtime: LambdaRuntime) -> None:
    result = runtime.invoke(make_spec(PID, handler="index.main"), {})
    assert result.status == "runtime_error"
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.HandlerNotFound"
    assert result.error["errorMessage"] == "Handler 'main' missing on module 'index'"


def test_syntax_error_and_malformed_handler(runtime: LambdaRuntime) -> None:
    result = runtime.invoke(make_spec("def handler(event, context)\n    return 1\n"), {})
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.UserCodeSyntaxError"
    assert result.error["errorMessage"].startswith("Syntax error in module 'index': ")
    result = runtime.invoke(make_spec(PID, handler="handler"), {})
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.MalformedHandlerName"
    assert result.error["errorMessage"].startswith("Bad handler 'handler': ")


def test_module_level_exception_reports_its_own_type(runtime: LambdaRuntime) -> None:
    code = "raise RuntimeError('no config')\ndef handler(event, context):\n    return 1\n"
    result = runtime.invoke(make_spec(code), {})
    assert result.status == "runtime_error"
    assert result.error is not None
    assert result.error["errorType"] == "RuntimeError"
    assert result.error["errorMessage"] == "no config"


def test_timeout_kills_the_worker_and_the_next_invoke_is_cold(runtime: LambdaRuntime) -> None:
    spec = make_spec(timeout=0.4)
    warm = runtime.invoke(spec, {})
    assert warm.status == "success"
    started = time.monotonic()
    timed_out = runtime.invoke(spec, {"sleep": 30}, request_id="slow-1")
    elapsed = time.monotonic() - started
    assert timed_out.status == "timeout"
    assert 0.35 < elapsed < 2.0
    assert timed_out.error is not None
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z slow-1 Task timed out after 0\.40 seconds",
        timed_out.error["errorMessage"],
    )
    assert "going to sleep" in timed_out.logs
    assert timed_out.logs.rstrip().endswith("Task timed out after 0.40 seconds")
    assert _gone(warm.payload)
    recovered = runtime.invoke(spec, {})
    assert recovered.status == "success"
    assert recovered.cold_start
    assert recovered.payload != warm.payload


def test_reserved_concurrency_zero_throttles_every_invoke(runtime: LambdaRuntime) -> None:
    result = runtime.invoke(make_spec(reserved_concurrency=0), {}, request_id="t-1")
    assert result.status == "throttled"
    assert result.request_id == "t-1"
    assert result.error is not None
    assert result.error["errorType"] == "TooManyRequestsException"
    assert result.error["errorMessage"] == "Rate Exceeded."
    assert not result.cold_start
    assert runtime.worker_pids() == set()


def _invoke_all(runtime: LambdaRuntime, spec: FunctionSpec, count: int) -> list[Invocation]:
    barrier = threading.Barrier(count)

    def call(_: int) -> Invocation:
        barrier.wait()
        return runtime.invoke(spec, {"sleep": 1.0})

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(call, range(count)))


def test_reserved_concurrency_limits_parallel_invokes(runtime: LambdaRuntime) -> None:
    started = time.monotonic()
    results = _invoke_all(runtime, make_spec(reserved_concurrency=2), 4)
    elapsed = time.monotonic() - started
    statuses = sorted(result.status for result in results)
    assert statuses == ["success", "success", "throttled", "throttled"]
    # The two that ran did so in parallel, in two different workers.
    assert elapsed < 1.9
    assert len({result.payload for result in results if result.status == "success"}) == 2
    throttled = next(result for result in results if result.status == "throttled")
    assert throttled.error is not None
    assert throttled.error["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"


def test_max_workers_caps_unreserved_functions(tmp_path: Path) -> None:
    with LambdaRuntime(tmp_path, max_workers_per_function=2) as runtime:
        results = _invoke_all(runtime, make_spec(), 3)
    assert sorted(result.status for result in results) == ["success", "success", "throttled"]


def test_code_change_starts_new_workers_and_retires_old_ones(runtime: LambdaRuntime) -> None:
    old = runtime.invoke(make_spec(), {})
    new_spec = make_spec(PID + "# v2\n")
    assert new_spec.code_sha256 != make_spec().code_sha256
    new = runtime.invoke(new_spec, {})
    assert new.cold_start
    assert new.payload != old.payload
    assert _gone(old.payload)
    assert runtime.worker_pids() == {new.payload}


def test_configuration_change_starts_new_workers(runtime: LambdaRuntime) -> None:
    code = "import os\ndef handler(event, context):\n    return os.environ['STAGE']\n"
    assert runtime.invoke(make_spec(code, environment={"STAGE": "a"}), {}).payload == "a"
    changed = runtime.invoke(make_spec(code, environment={"STAGE": "b"}), {})
    assert changed.payload == "b"
    assert changed.cold_start


def test_handler_output_does_not_corrupt_the_channel(runtime: LambdaRuntime) -> None:
    code = (
        "import logging, os, subprocess, sys\n"
        "def handler(event, context):\n"
        "    print('plain print')\n"
        '    sys.stdout.write(\'\\x00\\x00\\x00\\x10{"type": "result"}\')\n'
        "    print()\n"
        "    print('to stderr', file=sys.stderr)\n"
        "    os.write(1, b'raw fd one\\n')\n"
        "    os.write(2, b'raw fd two\\n')\n"
        "    subprocess.run(['echo', 'from a child'], check=True)\n"
        "    logging.getLogger().warning('a warning')\n"
        "    return {'ok': True}\n"
    )
    spec = make_spec(code)
    for _ in range(2):
        result = runtime.invoke(spec, {}, request_id="req-print")
        assert result.status == "success", result.error
        assert result.payload == {"ok": True}
        for text in ("plain print", "to stderr", "raw fd one", "raw fd two", "from a child"):
            assert text in result.logs
        assert re.search(r"\[WARNING\]\t\S+Z\treq-print\ta warning", result.logs)


def test_module_level_output_is_logged_before_start(runtime: LambdaRuntime) -> None:
    code = "print('initialising')\n" + PID
    logs = runtime.invoke(make_spec(code), {}).logs
    assert logs.index("initialising") < logs.index("START RequestId")


def test_logs_are_truncated_to_the_last_4_kb(runtime: LambdaRuntime) -> None:
    code = "def handler(event, context):\n    print('x' * 10000)\n    print('THE END')\n"
    result = runtime.invoke(make_spec(code), {})
    assert len(result.logs.encode()) <= 4096
    assert "THE END" in result.logs
    assert "REPORT RequestId" in result.logs


def test_exit_in_handler_is_a_runtime_exit_error(runtime: LambdaRuntime) -> None:
    code = "import sys\ndef handler(event, context):\n    sys.exit(3)\n"
    result = runtime.invoke(make_spec(code), {}, request_id="r-exit")
    assert result.status == "runtime_error"
    assert result.error == {
        "errorType": "Runtime.ExitError",
        "errorMessage": "RequestId: r-exit Error: Runtime exited with error: exit status 3",
    }
    assert runtime.worker_pids() == set()


def test_unserialisable_response_is_a_marshal_error(runtime: LambdaRuntime) -> None:
    code = "def handler(event, context):\n    return {1, 2}\n"
    result = runtime.invoke(make_spec(code), {})
    assert result.status == "runtime_error"
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.MarshalError"
    assert result.error["errorMessage"].startswith("Unable to marshal response: ")


def test_unsupported_runtime_is_refused_by_name(runtime: LambdaRuntime) -> None:
    with pytest.raises(
        LabError,
        match=r"^runtime nodejs20\.x of function demo-fn is not supported by the lab; "
        r"only python3\.x inline code runs$",
    ):
        runtime.invoke(make_spec(runtime="nodejs20.x"), {})


def test_event_must_be_json(runtime: LambdaRuntime) -> None:
    with pytest.raises(LabError, match="event for function demo-fn is not JSON"):
        runtime.invoke(make_spec(), {"when": object()})


def test_close_leaves_no_child_processes(tmp_path: Path) -> None:
    runtime = LambdaRuntime(tmp_path)
    pids = {runtime.invoke(make_spec(name=f"fn-{i}"), {}).payload for i in range(3)}
    assert runtime.worker_pids() == pids
    runtime.close()
    assert all(_gone(pid) for pid in pids)
    assert runtime.worker_pids() == set()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(LabError, match="closed"):
        runtime.invoke(make_spec(), {})


def test_close_during_an_invoke_ends_it_as_an_exit_error(tmp_path: Path) -> None:
    runtime = LambdaRuntime(tmp_path)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(runtime.invoke, make_spec(), {"sleep": 30})
        deadline = time.monotonic() + 5
        while not runtime.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.01)
        (pid,) = runtime.worker_pids()
        time.sleep(0.1)
        runtime.close()
        result = future.result(timeout=5)
    assert result.status == "runtime_error"
    assert result.error is not None
    assert result.error["errorMessage"].endswith("Runtime exited with error: signal: killed")
    assert _gone(pid)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "bad name"}, "function name 'bad name'"),
        ({"files": {"../escape.py": ""}}, "file name '../escape.py'"),
        ({"files": {"/etc/passwd": ""}}, "file name '/etc/passwd'"),
        ({"environment": {"AWS_REGION": "x"}}, "AWS_REGION of function demo-fn is reserved"),
        ({"environment": {"AWS_SECRET_ACCESS_KEY": "x"}}, "AWS_SECRET_ACCESS_KEY"),
        ({"environment": {"1BAD": "x"}}, "'1BAD'"),
        ({"environment": {"NUM": 1}}, "NUM of function demo-fn is not a string"),
        ({"timeout": 0}, "timeout 0"),
        ({"timeout": 901}, "timeout 901"),
        ({"memory_mb": 64}, "memory size 64"),
        ({"reserved_concurrency": -1}, "reserved concurrency -1"),
    ],
)
def test_bad_function_specs_are_rejected(overrides: Mapping[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make_spec(**overrides)


def test_spec_is_immutable_and_hashes_its_code() -> None:
    files = {"index.py": PID}
    spec = make_spec(files=files)
    files["index.py"] = "changed"
    assert spec.files["index.py"] == PID
    assert spec.code_sha256 == inline_code_sha256({"index.py": PID})
    with pytest.raises(TypeError):
        spec.files["index.py"] = "x"  # type: ignore[index]
    assert make_spec(code_sha256="explicit").code_sha256 == "explicit"


def _dead_or_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in {"Z", "X"}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_timeout_also_kills_what_the_handler_started(runtime: LambdaRuntime) -> None:
    code = (
        "import subprocess, time\n"
        "def handler(event, context):\n"
        "    child = subprocess.Popen(['sleep', '30'])\n"
        "    print('child', child.pid, flush=True)\n"
        "    time.sleep(30)\n"
    )
    result = runtime.invoke(make_spec(code, timeout=0.3), {})
    assert result.status == "timeout"
    match = re.search(r"child (\d+)", result.logs)
    assert match is not None
    child = int(match.group(1))
    deadline = time.monotonic() + 2
    while not _dead_or_zombie(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _dead_or_zombie(child)


def test_peak_memory_over_the_function_size_is_out_of_memory(runtime: LambdaRuntime) -> None:
    code = (
        "def handler(event, context):\n"
        "    block = bytearray(event['mb'] * 1024 * 1024)\n"
        "    return len(block)\n"
    )
    spec = make_spec(code, memory_mb=128)
    assert runtime.invoke(spec, {"mb": 1}).status == "success"
    result = runtime.invoke(spec, {"mb": 200}, request_id="r-oom")
    assert result.status == "runtime_error"
    assert result.error is not None
    assert result.error["errorType"] == "Runtime.OutOfMemory"
    assert re.search(r"Max Memory Used: 2\d\d MB", result.logs)
    assert runtime.worker_pids() == set()


def test_payload_limits(runtime: LambdaRuntime) -> None:
    code = "def handler(event, context):\n    return 'x' * event['n']\n"
    result = runtime.invoke(make_spec(code), {"n": 6291556})
    assert result.status == "function_error"
    assert result.error is not None
    assert result.error["errorType"] == "Function.ResponseSizeTooLarge"
    assert result.error["errorMessage"] == (
        "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
    )
    with pytest.raises(LabError, match="6 MB"):
        runtime.invoke(make_spec(code), {"n": 1, "pad": "y" * (6 * 1024 * 1024)})


def test_a_handler_forging_frames_on_the_channel_is_a_lab_error(runtime: LambdaRuntime) -> None:
    # Only deliberate sabotage reaches the channel's private descriptor; it must fail loudly.
    code = (
        "import fcntl, os, stat\n"
        "def handler(event, context):\n"
        "    for fd in range(3, 32):\n"
        "        try:\n"
        "            mode = os.fstat(fd).st_mode\n"
        "        except OSError:\n"
        "            continue\n"
        "        if stat.S_ISFIFO(mode) and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_WRONLY:\n"
        "            os.write(fd, b'\\x00\\x00\\x00\\x05hello')\n"
        "    return 1\n"
    )
    with pytest.raises(LabError, match="demo-fn broke the channel protocol"):
        runtime.invoke(make_spec(code), {})
    assert runtime.worker_pids() == set()
