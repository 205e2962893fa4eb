"""Tests for harness.report.model: building the report from a run, and the verdict rules."""

from __future__ import annotations

import dataclasses

import pytest
import report_factory as f
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.report.model import (
    AT_RISK,
    NOT_READY,
    READY,
    RTO_MARGIN,
    Report,
    SegmentView,
    build_drills,
    build_report,
    error_windows,
    history_record,
    merge_segments,
    phase_status,
    region_of_nodeid,
    worst,
)
from harness.report.recorder import RunRecord


def report_of(record: RunRecord, entries: list | None = None, **config: object) -> Report:
    return build_report(record, f.config(**config), ledger_entries=entries or [])


def codes(report: Report) -> list[tuple[str, str]]:
    return [(r.status, r.code) for r in report.verdict.reasons]


# --- verdict rules ----------------------------------------------------------------------------


def test_every_region_drilled_within_the_objective_is_ready() -> None:
    record, entries = f.healthy_run(failover=60, failback=30)
    report = report_of(record, entries)
    assert report.verdict.status == READY
    assert report.verdict.reasons == ()
    assert "slowest 60 s" in report.verdict.headline
    assert [r.status for r in report.regions] == [READY, READY]
    assert [r.worst("failover").rto for r in report.regions] == [60.0, 60.0]  # type: ignore[union-attr]


def test_a_phase_over_the_objective_is_not_ready_for_that_region() -> None:
    record, entries = f.healthy_run(failover=60, failback=30)
    node = f"{f.FAILOVER_NODE}[us-west-2]"
    record.phases = [(n, p) for n, p in record.phases if n != node]
    down, up = f.drill("us-west-2", at=9000.0, failover=320.0, failback=30.0)
    record.add_phase(node, down)
    record.add_phase(node, up)
    report = report_of(record, entries)
    assert report.verdict.status == NOT_READY
    assert codes(report) == [(NOT_READY, "over_objective")]
    assert report.verdict.reasons[0].regions == ("us-west-2",)
    assert "took 320 s, over the 300 s objective" in report.verdict.reasons[0].message
    assert report.verdict.headline == "The API would not survive losing us-west-2 today."
    assert {r.name: r.status for r in report.regions} == {
        "us-east-1": READY,
        "us-west-2": NOT_READY,
    }


def test_a_client_that_never_recovers_is_not_ready_and_named() -> None:
    record = RunRecord(started=f.STARTED)
    down, up = f.drill("us-east-1", at=1000.0, failover=None, failback=30.0)
    record.add_phase("n", down)
    record.add_phase("n", up)
    report = report_of(record)
    reason = report.verdict.reasons[0]
    assert (reason.status, reason.code) == (NOT_READY, "did_not_converge")
    assert "2 of 4 clients never recovered" in reason.message
    assert "i-0east00000000000a (us-east-1)" in reason.message


@pytest.mark.parametrize(
    ("rto", "status"),
    [
        (0.0, "ok"),
        (300 * (1 - RTO_MARGIN), "ok"),
        (300 * (1 - RTO_MARGIN) + 0.1, "near_objective"),
        (300.0, "near_objective"),
        (300.1, "over_objective"),
        (None, "did_not_converge"),
    ],
)
def test_phase_status_boundaries(rto: float | None, status: str) -> None:
    assert phase_status(rto, 300.0) == status


def test_less_than_twenty_percent_margin_is_at_risk() -> None:
    record, entries = f.healthy_run(failover=250, failback=30)
    report = report_of(record, entries)
    assert report.verdict.status == AT_RISK
    assert set(codes(report)) == {(AT_RISK, "near_objective")}
    assert "less than 20% to spare" in report.verdict.reasons[0].message
    assert (
        report.verdict.headline
        == "It survived losing each region drilled, but 2 risks need attention."
    )


@pytest.mark.parametrize(
    ("severity", "status"), [("high", AT_RISK), ("medium", AT_RISK), ("low", READY)]
)
def test_findings_of_high_or_medium_severity_put_the_run_at_risk(
    severity: str, status: str
) -> None:
    record, entries = f.healthy_run()
    record.add_finding(f.stranded_finding(severity=severity))
    report = report_of(record, entries)
    assert report.verdict.status == status
    assert report.regions[0].findings == 1


def test_a_compound_drill_is_shown_but_not_judged() -> None:
    record, entries = f.healthy_run()
    hazard = "scenarios/test_hazards.py::test_stranded"
    down, up = f.drill("us-east-1", at=20_000.0, failover=None, failback=25.0, fault_id="f-hazard")
    record.add_phase(hazard, down)
    record.add_phase(hazard, up)
    entries.append(
        f.entry(
            "f-peering",
            "us-east-1",
            19_990.0,
            20_300.0,
            kind="blackhole_peering",
            target={"region_a": "us-east-1", "region_b": "us-west-2"},
        )
    )
    entries.append(f.entry("f-hazard", "us-east-1", 20_000.0, up.event_time))
    report = report_of(record, entries)
    assert report.verdict.status == READY
    hazard_drill = report.drills[-1]
    assert hazard_drill.compound
    assert hazard_drill.concurrent_faults == ("blackhole_peering(us-east-1, us-west-2)",)
    assert [(s.label, s.own) for s in hazard_drill.spans] == [
        ("blackhole_peering(us-east-1, us-west-2)", False),
        ("invert_health_check(us-east-1)", True),
    ]
    assert all(p.fault_id != "f-hazard" for r in report.regions for p in r.phases)


def test_a_fault_left_injected_is_not_ready() -> None:
    record, entries = f.healthy_run()
    entries[0] = f.entry("f-us-east-1", "us-east-1", 1000.0, None, state="restore_failed")
    report = report_of(record, entries)
    assert codes(report)[0] == (NOT_READY, "fault_not_restored")
    assert "still restore failed (health check still inverted)" in report.verdict.reasons[0].message
    assert "regiondrill restore" in report.verdict.reasons[0].message


def test_an_unreadable_ledger_is_at_risk() -> None:
    record, _entries = f.healthy_run()
    report = build_report(
        record, f.config(), ledger_entries=None, ledger_problem="fault ledger unreadable"
    )
    assert codes(report) == [(AT_RISK, "restore_status_unknown")]


def test_a_smoke_only_run_is_unproven_in_one_reason_and_never_ready() -> None:
    record = RunRecord(started=f.STARTED)
    record.add_outcome(f.outcome("scenarios/test_smoke.py::test_a", markers=("gate", "smoke")))
    record.add_outcome(f.outcome("scenarios/test_routing.py::test_b", markers=("gate", "routing")))
    report = report_of(record)
    assert report.verdict.status == AT_RISK
    assert codes(report) == [(AT_RISK, "not_measured")]
    assert (
        "no failover was measured in this run (this run: gate, routing, smoke)"
        in report.verdict.reasons[0].message
    )
    assert report.verdict.reasons[0].regions == f.REGIONS
    assert report.verdict.headline == (
        "No failover was measured in this run: readiness to lose a region is unproven."
    )


@pytest.mark.parametrize(
    ("markers", "outcome", "gated"),
    [
        (("smoke",), "passed", False),
        (("routing", "cross_region"), "failed", False),
        (("failover",), "skipped", False),
        (("failover",), "passed", True),
        (("gate", "smoke"), "passed", True),
        (("chaos",), "failed", False),
    ],
)
def test_only_failover_or_gate_scenarios_that_ran_gate_the_exit_code(
    markers: tuple[str, ...], outcome: str, gated: bool
) -> None:
    record = RunRecord(started=f.STARTED)
    record.add_outcome(f.outcome("scenarios/test_x.py::test_x", outcome, markers=markers))
    assert report_of(record).gated is gated


def test_one_region_missing_is_named() -> None:
    record, entries = f.healthy_run()
    record.phases = [(n, p) for n, p in record.phases if p.region == "us-east-1"]
    report = report_of(record, entries)
    assert codes(report) == [(AT_RISK, "not_measured")]
    assert report.verdict.reasons[0].regions == ("us-west-2",)


def test_a_failed_dr_scenario_is_not_ready_with_its_region_and_message() -> None:
    record, entries = f.healthy_run()
    record.add_outcome(
        f.outcome(
            "scenarios/test_api.py::test_tls[us-west-2]",
            "failed",
            markers=("api",),
            message="AssertionError: i-1: curl failed: exit 60\nassert False",
        )
    )
    report = report_of(record, entries)
    reason = report.verdict.reasons[0]
    assert (reason.status, reason.code, reason.regions) == (
        NOT_READY,
        "scenario_failed",
        ("us-west-2",),
    )
    assert (
        reason.message
        == "scenarios/test_api.py::test_tls[us-west-2] failed: i-1: curl failed: exit 60"
    )


def test_a_failed_chaos_scenario_is_at_risk_and_unit_tests_do_not_count() -> None:
    record, entries = f.healthy_run()
    record.add_outcome(
        f.outcome("scenarios/test_chaos.py::test_machine", "failed", markers=("chaos",))
    )
    record.add_outcome(f.outcome("tests/test_x.py::test_unit", "failed", markers=()))
    report = report_of(record, entries)
    assert codes(report) == [(AT_RISK, "chaos_failed")]
    assert report.other_tests == {"passed": 1, "failed": 1, "skipped": 0, "error": 0}
    assert "tests/test_x.py::test_unit" not in {s.nodeid for s in report.scenarios}


def test_the_lab_model_disagreeing_is_at_risk_on_the_lab_only() -> None:
    record, entries = f.healthy_run()
    node = f"{f.FAILOVER_NODE}[us-east-1]"
    record.phases = [
        (n, dataclasses.replace(p, model_window=(10.0, 20.0)) if n == node else p)
        for n, p in record.phases
    ]
    report = report_of(record, entries)
    assert (AT_RISK, "model_disagrees") in codes(report)
    assert "outside the lab model's window 10..20 s" in report.verdict.reasons[0].message
    on_aws = build_report(
        record,
        f.config(
            target="aws",
            certificate_arns="us-east-1=arn:aws:acm:us-east-1:111122223333:certificate/a,"
            "us-west-2=arn:aws:acm:us-west-2:111122223333:certificate/b",
        ),
        ledger_entries=entries,
    )
    assert on_aws.verdict.status == READY


def test_reasons_are_ordered_most_severe_first() -> None:
    record, entries = f.healthy_run(failover=250)
    record.add_outcome(f.outcome("scenarios/test_smoke.py::test_x", "error", markers=("smoke",)))
    report = report_of(record, entries)
    statuses = [r.status for r in report.verdict.reasons]
    assert statuses == sorted(statuses, key=[NOT_READY, AT_RISK].index)
    assert report.verdict.status == NOT_READY


@settings(max_examples=60, deadline=None)
@given(
    rtos=st.lists(st.one_of(st.none(), st.floats(0, 600)), min_size=4, max_size=4),
    bump=st.integers(0, 3),
    extra=st.floats(0, 300),
)
def test_a_slower_phase_never_improves_the_verdict(
    rtos: list[float | None], bump: int, extra: float
) -> None:
    def verdict(values: list[float | None]) -> str:
        record = RunRecord(started=f.STARTED)
        for index, region in enumerate(f.REGIONS):
            down, up = f.drill(
                region,
                at=1000.0 + index * 5000,
                failover=values[2 * index],
                failback=values[2 * index + 1],
            )
            record.add_phase(region, down)
            record.add_phase(region, up)
        return report_of(record).verdict.status

    slower = list(rtos)
    if slower[bump] is not None:
        slower[bump] = slower[bump] + extra  # type: ignore[operator]
    assert worst([verdict(rtos), verdict(slower)]) == verdict(slower)


# --- building ---------------------------------------------------------------------------------


def test_phases_pair_into_drills_by_scenario_and_fault() -> None:
    a_down, a_up = f.drill("us-east-1", at=1000.0, failover=50, failback=20, fault_id="a")
    b_down, b_up = f.drill("us-west-2", at=5000.0, failover=50, failback=20, fault_id="b")
    drills = build_drills(
        [("s1", a_down), ("s2", b_down), ("s2", b_up), ("s1", a_up)], (), interval=1.0, is_lab=True
    )
    assert [(d.scenario, d.region, [p.phase for p in d.phases]) for d in drills] == [
        ("s1", "us-east-1", ["failover", "failback"]),
        ("s2", "us-west-2", ["failover", "failback"]),
    ]
    assert drills[0].phases[1].at == pytest.approx(a_up.event_time - a_down.event_time)
    # Without ledger facts the phases' own events mark the inject and restore.
    assert [(m.kind, m.own) for m in drills[0].markers] == [("inject", True), ("restore", True)]


def test_timeline_times_are_relative_to_the_injection_and_errors_are_windows() -> None:
    down, _ = f.drill("us-east-1", at=1000.0, failover=40.0, failback=20.0)
    drill = build_drills([("s", down)], (), interval=1.0, is_lab=True)[0]
    lane = next(lane for lane in drill.lanes if lane.bastion == "i-0east00000000000a")
    assert lane.started == -3.0
    assert [(s.start, s.dns_region, s.ok) for s in lane.segments] == [
        (-3.0, "us-east-1", True),
        (30.0, "us-east-1", False),
        (40.0, "us-west-2", True),
    ]
    east = next(b for b in drill.phases[0].bastions if b.bastion == "i-0east00000000000a")
    assert east.error_windows == ((30.0, 40.0),)
    west = next(b for b in drill.phases[0].bastions if b.bastion == "i-0west00000000000a")
    assert west.error_windows == ()


def test_error_windows_merge_and_ignore_failures_before_the_event() -> None:
    line = f.timeline(
        "i-0east00000000000a",
        0.0,
        30.0,
        [
            (0.0, "us-east-1", False),
            (3.0, "us-east-1", True),
            (10.0, "us-east-1", False),
            (12.0, None, False),
            (15.0, "us-west-2", True),
            (20.0, "us-west-2", False),
        ],
    )
    assert error_windows(line, 5.0, 1.0) == ((5.0, 10.0), (15.0, 26.0))


def test_identical_neighbouring_segments_merge() -> None:
    def seg(start: float, end: float, addresses: tuple[str, ...], code: str = "200") -> SegmentView:
        return SegmentView(start, end, 2, addresses, "us-east-1", "us-east-1", code, 0)

    merged = merge_segments(
        [
            seg(0, 1, ("a", "b")),
            seg(2, 3, ("a", "b")),
            seg(4, 5, ("a", "b"), "502"),
            seg(6, 7, ("a", "b")),
        ]
    )
    assert [(s.start, s.end, s.samples, s.http_code) for s in merged] == [
        (0, 3, 4, "200"),
        (4, 5, 2, "502"),
        (6, 7, 2, "200"),
    ]


@pytest.mark.parametrize(
    ("nodeid", "region"),
    [
        ("scenarios/test_failover.py::test_x[us-east-1]", "us-east-1"),
        ("scenarios/test_failover.py::test_x[us-west-2-fail_targets]", "us-west-2"),
        ("scenarios/test_failover.py::test_x[fail_targets-us-west-2]", "us-west-2"),
        ("scenarios/test_failover.py::test_x[eu-west-1]", None),
        ("scenarios/test_failover.py::test_x", None),
    ],
)
def test_region_of_a_parametrised_scenario(nodeid: str, region: str | None) -> None:
    assert region_of_nodeid(nodeid, f.REGIONS) == region


def test_faults_of_earlier_runs_appear_only_when_this_run_touched_them() -> None:
    record, entries = f.healthy_run()
    old_untouched = f.entry("old-1", "us-east-1", 100.0, 200.0, run_id="run-0")
    old_repaired = f.entry("old-2", "us-east-1", 100.0, 950.0, run_id="run-0")
    report = build_report(
        record, f.config(), ledger_entries=[*entries, old_untouched, old_repaired]
    )
    assert [fault.id for fault in report.faults] == ["f-us-east-1", "f-us-west-2", "old-2"]


def test_history_record_is_compact_and_keeps_stuck_as_null() -> None:
    record = RunRecord(started=f.STARTED)
    down, up = f.drill("us-east-1", at=1000.0, failover=None, failback=31.27)
    record.add_phase("s", down)
    record.add_phase("s", up)
    line = history_record(report_of(record))
    assert line["rto_s"] == {"us-east-1": {"failover": None, "failback": 31.3}}
    assert line["verdict"] == NOT_READY
    assert line["reasons"] == ["did_not_converge", "not_measured"]
    assert line["schema"] == "regiondrill.history/1"
