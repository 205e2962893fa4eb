"""The fault ledger: every injection is written to disk before the API call that makes it.

The ledger is an append-only JSON-lines file (``<report-dir>/fault-ledger.jsonl``). Each fault
gets an ``intent`` line (with everything restore needs: the prior state) that is flushed and
fsync'd BEFORE the fault is injected, then ``injected``, then ``restored`` (or
``restore_failed``). A fault whose last line is not ``restored`` is outstanding: the next session
restores it before running scenarios, and ``regiondrill restore`` does it by hand. Because the
intent is durable before the change, a crash at any point (even ``kill -9`` mid-injection)
leaves enough on disk to put the world back.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import FaultError

LEDGER_FILE = "fault-ledger.jsonl"
STATES = ("intent", "injected", "restored", "restore_failed", "abandoned")
OUTSTANDING = frozenset({"intent", "injected", "restore_failed"})


@dataclass(frozen=True)
class Entry:
    """The latest known state of one fault."""

    id: str
    kind: str
    target: Mapping[str, Any]  # what the fault acts on (region, resource ids)
    prior: Mapping[str, Any]  # the state restore puts back
    state: str
    run_id: str
    environment: Mapping[str, Any]  # where: target kind, lab endpoint, account
    history: tuple[tuple[str, float, str], ...] = field(default=())  # (state, wall time, note)

    @property
    def outstanding(self) -> bool:
        return self.state in OUTSTANDING

    @property
    def injected_at(self) -> float | None:
        return next((t for s, t, _ in self.history if s == "injected"), None)

    @property
    def restored_at(self) -> float | None:
        return next((t for s, t, _ in self.history if s == "restored"), None)

    def describe(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in sorted(self.target.items()))
        return f"{self.kind}({where}) [{self.state}]"


class Ledger:
    """Append-only, fsync'd record of faults; safe for several threads of one process."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @classmethod
    def in_dir(cls, directory: Path) -> Ledger:
        return cls(Path(directory) / LEDGER_FILE)

    # ------------------------------------------------------------------ writing

    def _append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True, default=str)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def intent(
        self,
        kind: str,
        target: Mapping[str, Any],
        prior: Mapping[str, Any],
        *,
        run_id: str,
        environment: Mapping[str, Any],
    ) -> str:
        """Durably record that a fault is about to be injected; return its id."""
        fault_id = uuid.uuid4().hex[:12]
        self._append(
            {
                "id": fault_id,
                "state": "intent",
                "kind": kind,
                "target": dict(target),
                "prior": dict(prior),
                "run_id": run_id,
                "environment": dict(environment),
                "at": time.time(),
            }
        )
        return fault_id

    def mark(self, fault_id: str, state: str, note: str = "") -> None:
        """Record a state change of an existing fault."""
        if state not in STATES:
            raise FaultError(f"unknown ledger state {state!r}")
        self._append({"id": fault_id, "state": state, "note": note, "at": time.time()})

    # ------------------------------------------------------------------ reading

    def entries(self) -> list[Entry]:
        """Fold the file into the latest state of every fault (corrupt lines are reported)."""
        if not self.path.exists():
            return []
        folded: dict[str, dict[str, Any]] = {}
        order: list[str] = []
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                fault_id = record["id"]
                state = record["state"]
            except (ValueError, KeyError, TypeError) as exc:
                raise FaultError(
                    f"fault ledger {self.path} line {number} is corrupt ({exc}); fix or move it "
                    "aside after checking no fault is still injected"
                ) from exc
            if state == "intent":
                folded[fault_id] = {**record, "history": [("intent", record.get("at", 0.0), "")]}
                order.append(fault_id)
            elif fault_id in folded:
                folded[fault_id]["state"] = state
                folded[fault_id]["history"].append(
                    (state, record.get("at", 0.0), record.get("note", ""))
                )
            else:
                raise FaultError(
                    f"fault ledger {self.path} line {number} refers to unknown fault {fault_id}"
                )
        return [
            Entry(
                id=fault_id,
                kind=folded[fault_id]["kind"],
                target=folded[fault_id]["target"],
                prior=folded[fault_id]["prior"],
                state=folded[fault_id]["state"],
                run_id=folded[fault_id].get("run_id", ""),
                environment=folded[fault_id].get("environment", {}),
                history=tuple(tuple(h) for h in folded[fault_id]["history"]),
            )
            for fault_id in order
        ]

    def outstanding(self) -> list[Entry]:
        """Faults that may still be in effect."""
        return [entry for entry in self.entries() if entry.outstanding]

    def get(self, fault_id: str) -> Entry:
        for entry in self.entries():
            if entry.id == fault_id:
                return entry
        raise FaultError(f"no fault {fault_id} in {self.path}")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise a read-modify sequence within this process."""
        with self._lock:
            yield
