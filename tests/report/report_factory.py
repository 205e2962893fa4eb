"""Synthetic runs for the report tests: probe timelines as the probe loop would print them.

Timelines are analysed with the real ``harness.chaos.timing.analyse``, so measured times in a
synthetic run are computed exactly as in a drill, not asserted by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.chaos.ledger import Entry
from harness.chaos.timing import Expectation, PhaseResult, Segment, Timeline, analyse
from harness.config import HarnessConfig, load_config
from harness.report.recorder import Finding, RunRecord, ScenarioOutcome

REGIONS = ("us-east-1", "us-west-2")
NODES: Mapping[str, tuple[str, ...]] = {
    "us-east-1": ("10.1.1.10", "10.1.2.10"),
    "us-west-2": ("10.2.1.10", "10.2.2.10"),
}
ADDRESS_REGIONS = {a: r for r, addresses in NODES.items() for a in addresses}
BASTIONS: Mapping[str, str] = {
    "i-0east00000000000a": "us-east-1",
    "i-0east00000000000b": "us-east-1",
    "i-0west00000000000a": "us-west-2",
    "i-0west00000000000b": "us-west-2",
}
FAILOVER_NODE = "scenarios/test_failover.py::test_failover_when_the_health_check_is_inverted"
STARTED = 900.0  # the run's wall start; every instant below is after it


def config(report_dir: Path | None = None, **overrides: object) -> HarnessConfig:
    values: dict[str, object] = {"regions": ",".join(REGIONS), **overrides}
    if report_dir is not None:
        values["report_dir"] = str(report_dir)
    return load_config(values, environ={})


def _state(region: str | None, ok: bool) -> tuple[tuple[str, ...], str, str, int]:
    """(DNS answer, answering region, HTTP code, curl exit) of one sample."""
    addresses = NODES[region] if region else ()
    if ok and region:
        return addresses, region, "200", 0
    return addresses, "", "000", 28


def timeline(
    bastion: str, start: float, end: float, changes: Sequence[tuple[float, str | None, bool]]
) -> Timeline:
    """A 1-second probe loop from ``start`` to ``end``; ``changes``: (time, DNS region, API ok)."""
    segments = []
    sample = 1
    for index, (at, region, ok) in enumerate(changes):
        until = changes[index + 1][0] if index + 1 < len(changes) else end + 1
        count = max(int(until - at), 1)
        addresses, api_region, code, curl_exit = _state(region, ok)
        segments.append(
            Segment(at, at + count - 1, sample, count, addresses, api_region, code, curl_exit)
        )
        sample += count
    return Timeline(bastion, BASTIONS[bastion], start, end, sample - 1, tuple(segments), True)


def phase(
    kind: str,
    region: str,
    *,
    event: float,
    recover: float | None,
    objective: float = 300.0,
    fail_for: float = 10.0,
    fault: str = "invert_health_check",
    fault_id: str = "fault0000001",
    model_window: tuple[float, float] | None = None,
    lead: float = 3.0,
    tail: float = 20.0,
) -> PhaseResult:
    """A measured failover (or failback) of ``region``: its clients move ``recover`` s after
    ``event`` (None: never), failing for ``fail_for`` s just before they move; other clients
    stay on their own region throughout."""
    survivor = next(r for r in REGIONS if r != region)
    start = event - lead
    horizon = (recover if recover is not None else 60.0) + tail
    end = event + horizon
    before, after = (region, survivor) if kind == "failover" else (survivor, region)
    timelines, measurements = [], []
    for bastion, home in BASTIONS.items():
        if home != region:
            changes: list[tuple[float, str | None, bool]] = [(start, home, True)]
            expected = Expectation(frozenset({home}), frozenset(NODES[home]))
        else:
            failing_from = event + max(
                (recover if recover is not None else horizon) - fail_for, 0.0
            )
            changes = [(start, before, True), (failing_from, before, False)]
            if recover is not None:
                changes.append((event + recover, after, True))
            expected = Expectation(frozenset({after}), frozenset(NODES[after]))
        line = timeline(bastion, start, end, changes)
        timelines.append(line)
        measurements.append(
            analyse(line, event_time=event, expectation=expected, region_of_address=ADDRESS_REGIONS)
        )
    return PhaseResult(
        phase=kind,
        fault=fault,
        region=region,
        event_time=event,
        measurements=tuple(measurements),
        objective=objective,
        model_window=model_window,
        timelines=tuple(timelines),
        address_regions=tuple(sorted(ADDRESS_REGIONS.items())),
        fault_id=fault_id,
    )


def drill(
    region: str,
    *,
    at: float,
    failover: float | None,
    failback: float | None,
    objective: float = 300.0,
    fault_id: str | None = None,
    model_window: tuple[float, float] | None = None,
) -> tuple[PhaseResult, PhaseResult]:
    fault_id = fault_id or f"f-{region}"
    restore_at = at + (failover if failover is not None else 60.0) + 40.0
    return (
        phase(
            "failover",
            region,
            event=at,
            recover=failover,
            objective=objective,
            fault_id=fault_id,
            model_window=model_window,
        ),
        phase(
            "failback",
            region,
            event=restore_at,
            recover=failback,
            objective=objective,
            fault_id=fault_id,
            model_window=model_window,
        ),
    )


def entry(
    fault_id: str,
    region: str,
    injected: float,
    restored: float | None,
    *,
    kind: str = "invert_health_check",
    run_id: str = "run-1",
    state: str | None = None,
    target: Mapping[str, str] | None = None,
) -> Entry:
    history: list[tuple[str, float, str]] = [
        ("intent", injected - 0.5, ""),
        ("injected", injected, ""),
    ]
    if restored is not None:
        history.append(("restored", restored, ""))
    elif state == "restore_failed":
        history.append(("restore_failed", injected + 50, "health check still inverted"))
    return Entry(
        id=fault_id,
        kind=kind,
        target=dict(target or {"region": region, "health_check_id": f"hc-{region}"}),
        prior={"inverted": False},
        state=state or ("restored" if restored is not None else "injected"),
        run_id=run_id,
        environment={"target": "lab"},
        history=tuple(history),
    )


def outcome(
    nodeid: str,
    result: str = "passed",
    markers: Sequence[str] = ("failover", "gate"),
    message: str = "",
) -> ScenarioOutcome:
    return ScenarioOutcome(nodeid, result, 12.5, tuple(markers), message)


def healthy_run(
    *, failover: float = 60.0, failback: float = 30.0, objective: float = 300.0
) -> tuple[RunRecord, list[Entry]]:
    """Both regions drilled cleanly: a READY run (with the default numbers)."""
    record = RunRecord(started=STARTED)
    entries = []
    at = 1000.0
    for region in REGIONS:
        node = f"{FAILOVER_NODE}[{region}]"
        down, up = drill(region, at=at, failover=failover, failback=failback, objective=objective)
        record.add_phase(node, down)
        record.add_phase(node, up)
        record.add_outcome(outcome(node))
        entries.append(entry(f"f-{region}", region, at, up.event_time))
        at = up.event_time + failback + 100
    record.add_outcome(
        outcome(
            "scenarios/test_smoke.py::test_every_stack_of_the_set_is_complete",
            markers=("gate", "smoke"),
        )
    )
    record.add_outcome(outcome("tests/chaos/test_timing.py::test_unit", markers=()))
    record.ended = at + 50
    return record, entries


def stranded_finding(region: str = "us-east-1", severity: str = "high") -> Finding:
    return Finding(
        kind="stranded_clients",
        severity=severity,
        title=f"clients in {region} are stranded when {region} fails and its peering is down",
        explanation="DNS moved them, the Transit Gateway path did not exist.",
        regions=(region,),
        evidence={"failed_samples": {"i-0east00000000000a": 40}},
        scenario="scenarios/test_hazards.py::test_blackholed_peering_strands_the_clients_of_a_failed_region",
    )
