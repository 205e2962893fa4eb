"""Kill -9 while a fault is injected: the ledger brings the world back.

End to end, with real processes: a lab runs on its own (`regiondrill lab serve --deploy`), a
pytest session attached to it (--lab-url, --reuse-stacks) injects a fault and is killed with
SIGKILL — no finalizer, no signal handler runs. Then:
- `regiondrill restore` restores the fault and reports it;
- after a second crash, the next session restores the leftover before running anything;
- when a leftover cannot be restored, the next session refuses to start scenarios.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from harness.chaos.ledger import Ledger

VICTIM = """
import time
from pathlib import Path
from harness.chaos import faults

def test_inject_and_hang(chaos, deployment):
    chaos.inject(faults.invert_health_check(deployment, "us-east-1"))
    Path({ready!r}).write_text("injected")
    time.sleep(600)
"""

SURVIVOR = """
def test_runs_after_recovery(chaos, deployment):
    assert chaos.ledger.outstanding() == []
"""


@pytest.fixture(scope="module")
def lab_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("lab")
    state = directory / "lab.json"
    log = (directory / "lab.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "lab", "serve", "--deploy", "--state-file", str(state)],
        stdout=subprocess.DEVNULL,
        stderr=log,
        cwd=directory,
    )
    try:
        deadline = time.monotonic() + 120
        while not state.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "the lab did not start: " + (directory / "lab.log").read_text()[-2000:]
                )
            time.sleep(0.2)
        info = json.loads(state.read_text())
        yield {"info": info, "state": state, "directory": directory}
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def environment(lab: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REGIONDRILL_"))}
    env["REGIONDRILL_LAB_STATE"] = str(lab["state"])
    return env


def pytest_args(lab: dict[str, Any], report_dir: Path, test_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "harness.plugin",
        "-p",
        "no:cacheprovider",
        "-q",
        "-s",
        "--lab-url",
        lab["info"]["endpoint"],
        "--reuse-stacks",
        "--report-dir",
        str(report_dir),
        str(test_file),
    ]


def health_check_inverted(lab: dict[str, Any], region: str = "us-east-1") -> bool:
    info = lab["info"]
    route53 = boto3.client(
        "route53",
        endpoint_url=info["endpoint"],
        region_name="us-east-1",
        aws_access_key_id=info["aws_access_key_id"],
        aws_secret_access_key=info["aws_secret_access_key"],
    )
    for check in route53.list_health_checks()["HealthChecks"]:
        config = check["HealthCheckConfig"]
        if config.get("AlarmIdentifier", {}).get("Region") == region:
            return bool(config["Inverted"])
    raise AssertionError(f"no health check for {region}")


def crash_while_injected(lab: dict[str, Any], tmp: Path, report_dir: Path) -> None:
    ready = tmp / "ready"
    victim = tmp / "test_victim.py"
    victim.write_text(VICTIM.format(ready=str(ready)))
    process = subprocess.Popen(
        pytest_args(lab, report_dir, victim),
        env=environment(lab),
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert process.poll() is None, "the victim session ended before injecting"
        assert time.monotonic() < deadline, "the victim session never injected its fault"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    ready.unlink()
    [entry] = Ledger.in_dir(report_dir).outstanding()
    assert entry.kind == "invert_health_check"
    assert entry.state == "injected"
    assert health_check_inverted(lab), "the fault outlived its session"


def test_regiondrill_restore_reverts_a_fault_left_by_a_killed_session(
    lab_process: dict[str, Any], tmp_path: Path
) -> None:
    report_dir = tmp_path / "reports"
    crash_while_injected(lab_process, tmp_path, report_dir)
    restore = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "restore",
            "--lab-url",
            lab_process["info"]["endpoint"],
            "--report-dir",
            str(report_dir),
        ],
        env=environment(lab_process),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert restore.returncode == 0, restore.stderr
    assert "restored: invert_health_check" in restore.stdout
    assert not health_check_inverted(lab_process)
    assert Ledger.in_dir(report_dir).outstanding() == []


def test_the_next_session_restores_leftovers_before_running(
    lab_process: dict[str, Any], tmp_path: Path
) -> None:
    report_dir = tmp_path / "reports"
    crash_while_injected(lab_process, tmp_path, report_dir)
    survivor = tmp_path / "test_survivor.py"
    survivor.write_text(SURVIVOR)
    result = subprocess.run(
        pytest_args(lab_process, report_dir, survivor),
        env=environment(lab_process),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "restored invert_health_check" in result.stdout
    assert not health_check_inverted(lab_process)


def test_the_next_session_refuses_to_start_when_a_leftover_cannot_be_restored(
    lab_process: dict[str, Any], tmp_path: Path
) -> None:
    report_dir = tmp_path / "reports"
    crash_while_injected(lab_process, tmp_path, report_dir)
    # Make the restore impossible: the ledger points at a health check id that no longer
    # exists (as if someone had replaced the stack by hand in between).
    ledger_file = report_dir / "fault-ledger.jsonl"
    lines = ledger_file.read_text().splitlines()
    first = json.loads(lines[0])
    real_id = first["target"]["health_check_id"]
    first["target"]["health_check_id"] = "00000000-0000-0000-0000-000000000000"
    ledger_file.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    survivor = tmp_path / "test_survivor.py"
    survivor.write_text(SURVIVOR)
    try:
        result = subprocess.run(
            pytest_args(lab_process, report_dir, survivor),
            env=environment(lab_process),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode != 0
        assert "refusing to start scenarios" in result.stdout
        [entry] = Ledger.in_dir(report_dir).outstanding()
        assert entry.state == "restore_failed"
    finally:
        # Put the lab back for the other tests (the real fault is still injected).
        info = lab_process["info"]
        boto3.client(
            "route53",
            endpoint_url=info["endpoint"],
            region_name="us-east-1",
            aws_access_key_id=info["aws_access_key_id"],
            aws_secret_access_key=info["aws_secret_access_key"],
        ).update_health_check(HealthCheckId=real_id, Inverted=False)
