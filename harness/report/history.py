"""The run history behind the trend chart: ``<report-dir>/history.jsonl``, one line per run.

Each run appends one compact JSON record (:func:`harness.report.model.history_record`). The
file is only ever appended to, never rewritten: a crash mid-write can at worst leave a partial
last line, which the next append steps over (it starts on a fresh line) and readers skip. Lines
that are not JSON, or are JSON but not a regiondrill history record of a version this code
reads (another tool's, or a newer regiondrill's), are skipped with a warning naming the line —
the file is kept as it is, so nothing a newer version or a human wrote is ever lost.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.report.model import HISTORY_SCHEMA

HISTORY_FILE = "history.jsonl"
DEFAULT_TREND_RUNS = 20

Warn = Callable[[str], None]


class HistoryWarning(UserWarning):
    """A history line was skipped (corrupt, foreign or from a newer regiondrill)."""


def _warn(message: str) -> None:
    warnings.warn(message, HistoryWarning, stacklevel=3)


@dataclass(frozen=True)
class RunSummary:
    """One run as the trend chart sees it."""

    run_id: str
    started: str  # ISO 8601 UTC
    target: str
    verdict: str
    objective: float
    rto: Mapping[str, Mapping[str, float | None]]  # region -> phase -> seconds (None: stuck)
    reasons: tuple[str, ...]
    scenarios: Mapping[str, int]


def append(path: Path, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one line, durably (fsync), never touching existing lines.

    Raises:
        OSError: the file could not be written (the caller decides whether that fails the run).
    """
    line = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if "\n" in line:
        raise ValueError("a history record must serialise to a single line")
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        # A crash mid-append can leave a partial last line: start ours on a fresh one, so the
        # partial line stays one skippable line instead of swallowing this record.
        prefix = b""
        if size and os.pread(fd, 1, size - 1) != b"\n":
            prefix = b"\n"
        os.write(fd, prefix + line.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_last(
    path: Path, count: int = DEFAULT_TREND_RUNS, *, warn: Warn | None = None
) -> list[RunSummary]:
    """Return the last ``count`` readable runs, oldest first; warn about every skipped line."""
    if count < 1:
        raise ValueError(f"history count must be at least 1, got {count!r}")
    say = warn or _warn
    if not path.exists():
        return []
    runs: deque[RunSummary] = deque(maxlen=count)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            summary, problem = parse_line(raw)
            if problem is not None:
                say(f"{path}:{number}: skipped ({problem})")
                continue
            assert summary is not None
            runs.append(summary)
    return list(runs)


def parse_line(raw: bytes) -> tuple[RunSummary | None, str | None]:
    """Parse one history line; return (summary, None) or (None, why it is skipped)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"not JSON: {exc.__class__.__name__}"
    if not isinstance(data, dict):
        return None, f"a JSON {type(data).__name__}, not a history record"
    schema = data.get("schema")
    if schema != HISTORY_SCHEMA:
        if isinstance(schema, str) and schema.startswith("regiondrill.history/"):
            return None, f"record version {schema!r}, this regiondrill reads {HISTORY_SCHEMA!r}"
        return None, "not a regiondrill history record"
    try:
        return _summary(data), None
    except (KeyError, TypeError, ValueError) as exc:
        return None, f"malformed record: {exc}"


def _summary(data: Mapping[str, Any]) -> RunSummary:
    rto: dict[str, dict[str, float | None]] = {}
    for region, phases in dict(data["rto_s"]).items():
        rto[str(region)] = {}
        for phase, value in dict(phases).items():
            if value is not None and not isinstance(value, int | float):
                raise TypeError(f"rto of {region} {phase} is {value!r}")
            rto[str(region)][str(phase)] = None if value is None else float(value)
    verdict = data["verdict"]
    if verdict not in ("READY", "AT RISK", "NOT READY"):
        raise ValueError(f"unknown verdict {verdict!r}")
    objective = data["objective_s"]
    if not isinstance(objective, int | float) or isinstance(objective, bool):
        raise TypeError(f"objective_s is {objective!r}")
    return RunSummary(
        run_id=str(data["run_id"]),
        started=str(data["started"]),
        target=str(data["target"]),
        verdict=verdict,
        objective=float(objective),
        rto=rto,
        reasons=tuple(str(r) for r in data.get("reasons", ())),
        scenarios={str(k): int(v) for k, v in dict(data.get("scenarios", {})).items()},
    )
