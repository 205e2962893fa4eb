"""Tests for harness.report.history: append-only, durable, and robust to whatever is in the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.report.history import HistoryWarning, append, parse_line, read_last


def record(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "schema": "regiondrill.history/1",
        "run_id": f"run-{n}",
        "started": f"2026-11-{n % 28 + 1:02d}T03:17:00.000Z",
        "target": "lab",
        "regions": ["us-east-1", "us-west-2"],
        "objective_s": 300,
        "verdict": "READY",
        "reasons": [],
        "rto_s": {"us-east-1": {"failover": 60.0 + n, "failback": None}},
        "scenarios": {"passed": 3, "failed": 0},
        "findings": {"high": 0},
        "template_digest": "0" * 16,
        **extra,
    }


def test_appended_runs_read_back_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "history.jsonl"
    for n in range(5):
        append(path, record(n))
    runs = read_last(path, 3, warn=pytest.fail)
    assert [r.run_id for r in runs] == ["run-2", "run-3", "run-4"]
    assert runs[-1].rto == {"us-east-1": {"failover": 64.0, "failback": None}}
    assert path.read_text().count("\n") == 5


def test_a_missing_file_is_an_empty_history(tmp_path: Path) -> None:
    assert read_last(tmp_path / "none.jsonl", warn=pytest.fail) == []


def test_bad_lines_are_skipped_with_a_warning_naming_them_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    append(path, record(1))
    with path.open("a") as handle:
        handle.write("not json at all\n")
        handle.write('["a", "list"]\n')
        handle.write('{"schema": "someone-else/3", "x": 1}\n')
        handle.write(json.dumps(record(9, schema="regiondrill.history/2")) + "\n")
        handle.write(json.dumps(record(8, verdict="GREAT")) + "\n")
        handle.write(json.dumps(record(7, rto_s={"us-east-1": {"failover": "fast"}})) + "\n")
        handle.write("\n")
    append(path, record(2))
    before = path.read_bytes()
    warnings: list[str] = []
    runs = read_last(path, warn=warnings.append)
    assert [r.run_id for r in runs] == ["run-1", "run-2"]
    assert [w.split(": skipped")[0].rsplit(":", 1)[1] for w in warnings] == [
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
    ]
    assert "not JSON" in warnings[0]
    assert "a JSON list, not a history record" in warnings[1]
    assert "not a regiondrill history record" in warnings[2]
    assert "record version 'regiondrill.history/2'" in warnings[3]
    assert "unknown verdict 'GREAT'" in warnings[4]
    assert "rto of us-east-1 failover is 'fast'" in warnings[5]
    assert path.read_bytes() == before  # reading never rewrites


def test_without_a_callback_skipped_lines_are_python_warnings(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text("{broken\n")
    with pytest.warns(HistoryWarning, match=r"history.jsonl:1: skipped \(not JSON"):
        assert read_last(path) == []


def test_an_append_after_a_torn_last_line_starts_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    append(path, record(1))
    with path.open("ab") as handle:
        handle.write(json.dumps(record(2)).encode()[:40])  # a crash mid-append
    append(path, record(3))
    warnings: list[str] = []
    assert [r.run_id for r in read_last(path, warn=warnings.append)] == ["run-1", "run-3"]
    assert len(warnings) == 1
    assert ":2: skipped" in warnings[0]
    assert path.read_bytes().startswith(
        json.dumps(record(1), sort_keys=True, separators=(",", ":")).encode()
    )


def test_records_must_be_json_on_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"NaN|Out of range"):
        append(tmp_path / "h.jsonl", record(1, objective_s=float("nan")))
    with pytest.raises(ValueError, match="at least 1"):
        read_last(tmp_path / "h.jsonl", 0)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.lists(st.binary(max_size=60), max_size=8), count=st.integers(1, 6))
def test_junk_between_records_never_loses_a_record(
    tmp_path: Path, junk: list[bytes], count: int
) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.unlink(missing_ok=True)
    expected = []
    for index in range(count):
        append(path, record(index))
        expected.append(f"run-{index}")
        if index < len(junk):
            with path.open("ab") as handle:
                handle.write(junk[index].replace(b"\n", b" "))  # torn line, no newline
    runs = read_last(path, 50, warn=lambda message: None)
    assert [r.run_id for r in runs][-count:] == expected


@pytest.mark.parametrize(
    "raw", [b"\xff\xfe", b"{}", b"null", b'{"schema": "regiondrill.history/1"}']
)
def test_parse_line_explains_every_rejection(raw: bytes) -> None:
    summary, problem = parse_line(raw)
    assert summary is None
    assert problem
