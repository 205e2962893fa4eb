"""The fault ledger: durable intent before injection, fold to the latest state, corruption loud."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.chaos.ledger import Ledger
from harness.errors import FaultError

ENV = {"target": "lab", "endpoint": "http://127.0.0.1:1"}


def test_intent_is_on_disk_before_anything_else(tmp_path: Path) -> None:
    ledger = Ledger.in_dir(tmp_path)
    fault_id = ledger.intent(
        "invert_health_check",
        {"region": "us-east-1"},
        {"inverted": False},
        run_id="r",
        environment=ENV,
    )
    lines = (tmp_path / "fault-ledger.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["id"] == fault_id
    assert json.loads(lines[0])["prior"] == {"inverted": False}
    [entry] = ledger.outstanding()
    assert entry.state == "intent"
    assert entry.outstanding


def test_fold_follows_state_changes(tmp_path: Path) -> None:
    ledger = Ledger.in_dir(tmp_path)
    a = ledger.intent(
        "fail_targets",
        {"region": "us-east-1"},
        {"health_check_port": "traffic-port"},
        run_id="r",
        environment=ENV,
    )
    b = ledger.intent(
        "throttle_api",
        {"region": "us-west-2"},
        {"reserved_concurrency": None},
        run_id="r",
        environment=ENV,
    )
    ledger.mark(a, "injected")
    ledger.mark(b, "injected")
    ledger.mark(a, "restored")
    assert [e.id for e in ledger.outstanding()] == [b]
    entry = ledger.get(a)
    assert [h[0] for h in entry.history] == ["intent", "injected", "restored"]
    assert entry.injected_at is not None
    assert entry.restored_at is not None
    ledger.mark(b, "restore_failed", "throttled")
    assert ledger.get(b).outstanding


def test_corrupt_line_is_reported_with_its_number(tmp_path: Path) -> None:
    ledger = Ledger.in_dir(tmp_path)
    ledger.intent(
        "invert_health_check",
        {"region": "us-east-1"},
        {"inverted": False},
        run_id="r",
        environment=ENV,
    )
    with (tmp_path / "fault-ledger.jsonl").open("a") as handle:
        handle.write("{not json\n")
    with pytest.raises(FaultError, match="line 2 is corrupt"):
        ledger.entries()


def test_unknown_state_is_refused(tmp_path: Path) -> None:
    ledger = Ledger.in_dir(tmp_path)
    fault_id = ledger.intent("x", {}, {}, run_id="r", environment=ENV)
    with pytest.raises(FaultError, match="unknown ledger state"):
        ledger.mark(fault_id, "fixed")


@given(
    st.lists(st.sampled_from(["injected", "restored", "restore_failed", "abandoned"]), max_size=6)
)
def test_latest_state_wins(states: list[str]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        ledger = Ledger.in_dir(Path(directory))
        fault_id = ledger.intent("x", {}, {}, run_id="r", environment=ENV)
        for state in states:
            ledger.mark(fault_id, state)
        expected = states[-1] if states else "intent"
        assert ledger.get(fault_id).state == expected
        assert ledger.get(fault_id).outstanding == (
            expected in ("intent", "injected", "restore_failed")
        )
