"""Tests for harness.report.svg: every chart is well-formed SVG with what a reader needs in it."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
import report_factory as f
from hypothesis import example, given
from hypothesis import strategies as st

from harness.report.history import RunSummary
from harness.report.model import build_drills, build_report
from harness.report.svg import Svg, fmt, nice_ticks, rto_chart, seconds, timeline_chart, trend_chart

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: Svg, *, standalone: bool = True) -> ET.Element:
    return ET.fromstring(svg.to_string(standalone=standalone).split("?>", 1)[-1])


def by_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in root.iter() if name in (e.get("class") or "").split()]


def tooltips(root: ET.Element) -> list[str]:
    return [e.text or "" for e in root.iter() if e.tag.endswith("title")]


def run(n: int, verdict: str = "READY", **rto: dict[str, float | None]) -> RunSummary:
    return RunSummary(
        f"r{n}",
        f"2026-11-{n + 1:02d}T03:17:00.000Z",
        "lab",
        verdict,
        300.0,
        rto or {"us-east-1": {"failover": 50.0 + n, "failback": 20.0}},
        (),
        {},
    )


def test_the_timeline_has_a_lane_per_bastion_markers_and_rto_lines() -> None:
    down, up = f.drill("us-east-1", at=1000.0, failover=40.0, failback=20.0)
    drill = build_drills([("s", down), ("s", up)], (), interval=1.0, is_lab=True)[0]
    root = parse(timeline_chart(drill, f.REGIONS))
    assert root.tag == f"{NS}svg"
    assert root.get("id") == "timeline-drill-1"
    assert "timeline" in root.get("class", "").split()
    labels = [e.text for e in by_class(root, "lane-label")[0].iter() if e.tag.endswith("text")]
    assert labels == ["i-0east00000000000a", "us-east-1"]
    assert len(by_class(root, "lane-label")) == len(f.BASTIONS)
    assert len(by_class(root, "rto-line")) == 2
    assert {m.get("class") for m in by_class(root, "marker")} == {"marker inject", "marker restore"}
    failed = by_class(root, "failed")
    assert len(failed) == 4  # each east bastion fails before moving, in both phases
    assert all("FAILED: HTTP 000, curl exit 28" in t for e in failed for t in tooltips(e))
    ok_fills = {e.get("fill") for e in by_class(root, "ok")}
    assert ok_fills == {"#0072B2", "#E69F00"}  # answered by us-east-1 and by us-west-2
    texts = " ".join(e.text or "" for e in root.iter() if e.tag.endswith("text"))
    assert "failover RTO 40 s" in texts
    assert "failback RTO 20 s" in texts


def test_a_stuck_phase_and_a_concurrent_fault_are_drawn() -> None:
    down, up = f.drill("us-east-1", at=1000.0, failover=None, failback=20.0, fault_id="own")
    faults = build_report(
        f.healthy_run()[0],
        f.config(),
        ledger_entries=[
            f.entry(
                "other",
                "us-east-1",
                990.0,
                None,
                kind="blackhole_peering",
                target={"region_a": "us-east-1", "region_b": "us-west-2"},
            )
        ],
    ).faults
    drill = build_drills([("s", down), ("s", up)], faults, interval=1.0, is_lab=True)[0]
    root = parse(timeline_chart(drill, f.REGIONS))
    texts = [e.text or "" for e in root.iter() if e.tag.endswith("text")]
    assert "failover: did not converge" in texts
    assert len(by_class(root, "rto-line")) == 1
    assert any("blackhole_peering(us-east-1, us-west-2) active" in t for t in tooltips(root))
    assert by_class(root, "other-fault")


def test_model_windows_are_shown_on_the_lab() -> None:
    down, up = f.drill(
        "us-east-1", at=1000.0, failover=40.0, failback=20.0, model_window=(10.0, 70.0)
    )
    drill = build_drills([("s", down), ("s", up)], (), interval=1.0, is_lab=True)[0]
    root = parse(timeline_chart(drill, f.REGIONS))
    assert len(by_class(root, "model-window")) == 2


def test_rto_bars_per_phase_coloured_by_status_with_the_objective() -> None:
    record, entries = f.healthy_run(failover=250, failback=30)
    report = build_report(record, f.config(), ledger_entries=entries)
    root = parse(rto_chart(report.regions, 300.0))
    assert root.get("id") == "rto-bars"
    bars = by_class(root, "bar")
    assert [b.get("class") for b in bars] == [
        "bar near_objective",
        "bar ok",
        "bar near_objective",
        "bar ok",
    ]
    assert by_class(root, "objective-line")
    assert any(e.text == "objective 300 s" for e in root.iter())


def test_rto_bars_without_measurements_say_so() -> None:
    root = parse(rto_chart((), 300.0))
    assert [e.text for e in by_class(root, "empty")] == [
        "No clean failover was measured in this run."
    ]


@pytest.mark.parametrize("count", [0, 1, 2, 25])
def test_the_trend_draws_any_number_of_runs(count: int) -> None:
    runs = [run(n, "NOT READY" if n == 1 else "READY") for n in range(count)]
    root = parse(trend_chart(runs, f.REGIONS))
    assert root.get("id") == "trend"
    cells = by_class(root, "verdict-cell")
    assert len(cells) == count
    if count > 1:
        assert cells[1].get("fill") == "#b3261e"
        assert any(e.text == "this run" for e in root.iter())


def test_the_trend_marks_a_run_that_did_not_converge() -> None:
    runs = [run(0), run(1, **{"us-east-1": {"failover": None}}), run(2)]
    root = parse(trend_chart(runs, f.REGIONS))
    assert any("us-east-1 failover: did not converge" in t for t in tooltips(root))


def test_text_is_escaped_and_the_namespace_only_standalone() -> None:
    svg = Svg(100, 50, id="x", css_class="chart", title="a <b> & 'c'")
    svg.text(1, 2, "</svg><script>alert(1)</script>", tooltip="<&>")
    inline = svg.to_string()
    assert "<script>" not in inline
    assert "&lt;script&gt;" in inline
    assert "xmlns" not in inline
    assert not inline.startswith("<?xml")
    standalone = svg.to_string(standalone=True)
    assert standalone.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert parse(svg).tag == f"{NS}svg"


def test_ids_stay_unique_within_a_page() -> None:
    down, up = f.drill("us-east-1", at=1000.0, failover=40.0, failback=20.0)
    drills = build_drills(
        [("a", down), ("a", up), ("b", down), ("b", up)], (), interval=1.0, is_lab=True
    )
    ids = [
        e.get("id")
        for drill in drills
        for e in parse(timeline_chart(drill, f.REGIONS)).iter()
        if e.get("id")
    ]
    assert len(ids) == len(set(ids))


@given(low=st.floats(-1e6, 1e6), span=st.floats(0, 1e6), count=st.integers(1, 12))
@example(low=0.0, span=5e-324, count=1)  # a subnormal span
@example(low=1.663916335137932e-06, span=1001.0, count=1)
def test_nice_ticks_cover_the_range_with_round_steps(low: float, span: float, count: int) -> None:
    ticks = nice_ticks(low, low + span, count)
    assert ticks == sorted(ticks)
    slack = 1e-6 * max(1.0, abs(low), abs(low + span))  # float noise at the range's scale
    assert all(low - slack <= t <= low + span + slack for t in ticks)
    if len(ticks) > 1:
        step = ticks[1] - ticks[0]
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 2.5, 5, 10))
        assert len(ticks) <= 2 * count + 2


def test_nice_ticks_rejects_infinite_ranges() -> None:
    with pytest.raises(ValueError, match="finite"):
        nice_ticks(0, math.inf)


@pytest.mark.parametrize(
    ("value", "text"), [(1.0, "1"), (0.125, "0.12"), (-0.001, "0"), (1200.5, "1200.5")]
)
def test_fmt(value: float, text: str) -> None:
    assert fmt(value) == text


def test_seconds_labels() -> None:
    assert seconds(64.04) == "64 s"
    assert seconds(1.5) == "1.5 s"
    assert seconds(120, signed=True) == "+120 s"
    assert seconds(-5, signed=True) == "\u22125 s"
