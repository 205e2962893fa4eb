"""The on-bastion probe loop and the timing maths, on real bash runs and synthetic timelines."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.chaos.timing import (
    Expectation,
    PhaseResult,
    ProbeOutputError,
    ProbePlan,
    Segment,
    Timeline,
    analyse,
    build_probe_script,
    parse_probe_output,
    region_map,
)
from harness.clock import Clock

EAST = ("10.1.1.9", "10.1.2.9")
WEST = ("10.2.1.9", "10.2.2.9")
REGIONS = region_map({"us-east-1": EAST, "us-west-2": WEST})


def fake_tools(directory: Path, flip_after: float) -> dict[str, str]:
    """dig/curl stand-ins that answer us-east-1 for ``flip_after`` samples, then us-west-2
    with two failed requests in between (a failover as a client sees it)."""
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    counter = directory / "n"
    counter.write_text("0")
    (bin_dir / "dig").write_text(
        f"""#!/bin/bash
n=$(<{counter})
if [ "$n" -lt {int(flip_after)} ]; then printf '%s\\n%s\\n' {EAST[0]} {EAST[1]}; else printf '%s\\n%s\\n' {WEST[0]} {WEST[1]}; fi
"""
    )
    (bin_dir / "curl").write_text(
        f"""#!/bin/bash
n=$(<{counter}); echo $((n + 1)) > {counter}
if [ "$n" -lt {int(flip_after)} ]; then printf '{{"region": "us-east-1"}}\\n200'; exit 0
elif [ "$n" -lt {int(flip_after) + 2} ]; then printf '\\n000'; exit 28
else printf '{{"region": "us-west-2", "event": {{}}}}\\n200'; fi
"""
    )
    for tool in ("dig", "curl"):
        path = bin_dir / tool
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def plan(**overrides: object) -> ProbePlan:
    values: dict[str, object] = {
        "domain": "private.internal.example.com",
        "url": "https://private.internal.example.com/demo",
        "interval": 0.02,
        "max_window": 5.0,
        "min_window": 0.1,
        "settle": 0.1,
        "expected_addresses": frozenset(WEST),
        "expected_regions": frozenset({"us-west-2"}),
    }
    values.update(overrides)
    return ProbePlan(**values)  # type: ignore[arg-type]


def test_probe_loop_records_state_changes_and_stops_once_settled(tmp_path: Path) -> None:
    script = tmp_path / "probe.sh"
    script.write_text(build_probe_script(plan()))
    env = fake_tools(tmp_path, flip_after=10)
    result = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env=env, timeout=30, check=True
    )
    clock = Clock(origin=0.0, speed=1.0)
    timeline = parse_probe_output(result.stdout, bastion="i-1", region="us-east-1", clock=clock)
    assert timeline.complete
    states = [(s.addresses, s.api_region, s.http_code, s.curl_exit) for s in timeline.segments]
    assert states == [
        (EAST, "us-east-1", "200", 0),
        (WEST, "", "000", 28),
        (WEST, "us-west-2", "200", 0),
    ]
    assert [s.samples for s in timeline.segments[:2]] == [10, 2]
    assert len(result.stdout) < 400, "only changes are printed"
    # It stopped by itself once us-west-2 had been stable for the settle time.
    assert timeline.ended - timeline.started < 2.0
    event = timeline.segments[0].start
    measured = analyse(
        timeline,
        event_time=event,
        expectation=Expectation(frozenset({"us-west-2"}), frozenset(WEST)),
        region_of_address=REGIONS,
    )
    assert measured.converged
    assert measured.failed_samples == 2
    assert measured.dns_flip == pytest.approx(timeline.segments[1].start - event)
    assert measured.api_recovery == pytest.approx(timeline.segments[2].start - event)
    assert measured.recovery == measured.api_recovery
    assert measured.flaps == 1
    assert measured.regions_seen == ("us-east-1", "us-west-2")


def test_probe_loop_output_stays_small_for_long_windows(tmp_path: Path) -> None:
    script = tmp_path / "probe.sh"
    # Never reaches the expected state: runs the whole window, printing one state.
    script.write_text(
        build_probe_script(plan(max_window=1.0, expected_regions=frozenset({"eu-west-1"})))
    )
    env = fake_tools(tmp_path, flip_after=10_000)
    result = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env=env, timeout=30, check=True
    )
    timeline = parse_probe_output(result.stdout, bastion="i-1", region="us-east-1", clock=Clock())
    assert timeline.samples > 20
    assert len(timeline.segments) == 1
    assert len(result.stdout) < 200


def seg(
    start: float,
    end: float,
    region: str,
    code: str = "200",
    rc: int = 0,
    first: int = 1,
    n: int = 1,
) -> Segment:
    addresses = EAST if region == "us-east-1" else WEST if region == "us-west-2" else ()
    return Segment(start, end, first, n, addresses, region if code == "200" else "", code, rc)


def test_flapping_is_counted_and_delays_the_flip() -> None:
    timeline = Timeline(
        "i-1",
        "us-east-1",
        0.0,
        50.0,
        50,
        (
            seg(0, 9, "us-east-1"),
            seg(10, 14, "us-west-2"),
            seg(15, 19, "us-east-1"),
            seg(20, 50, "us-west-2"),
        ),
        True,
    )
    measured = analyse(
        timeline,
        event_time=5.0,
        expectation=Expectation(frozenset({"us-west-2"}), frozenset(WEST)),
        region_of_address=REGIONS,
    )
    assert measured.flaps == 3
    assert measured.dns_flip == 15.0
    assert measured.api_recovery == 15.0


def test_never_converging_has_no_rto() -> None:
    timeline = Timeline("i-1", "us-east-1", 0.0, 50.0, 50, (seg(0, 50, "us-east-1"),), True)
    measured = analyse(
        timeline,
        event_time=5.0,
        expectation=Expectation(frozenset({"us-west-2"}), frozenset(WEST)),
        region_of_address=REGIONS,
    )
    assert not measured.converged
    assert measured.recovery is None
    phase = PhaseResult(
        "failover", "invert_health_check", "us-east-1", 5.0, (measured,), objective=300
    )
    assert phase.rto is None
    assert not phase.within_objective


def test_phase_rto_is_the_slowest_bastion() -> None:
    fast = Timeline("i-1", "us-west-2", 0, 30, 30, (seg(0, 30, "us-west-2"),), True)
    slow = Timeline(
        "i-2", "us-east-1", 0, 30, 30, (seg(0, 19, "us-east-1"), seg(20, 30, "us-west-2")), True
    )
    expectation = Expectation(frozenset({"us-west-2"}), frozenset(WEST))
    measurements = tuple(
        analyse(t, event_time=2.0, expectation=expectation, region_of_address=REGIONS)
        for t in (fast, slow)
    )
    phase = PhaseResult(
        "failover", "invert_health_check", "us-east-1", 2.0, measurements, objective=15.0
    )
    assert phase.rto == 18.0
    assert not phase.within_objective
    assert measurements[0].recovery == 0.0


def test_timestamps_go_through_the_clock() -> None:
    output = "B 100.0\nS 100.0 1 10.2.1.9|us-west-2|200|0\nL 101.0\nE 101.5 3\n"
    timeline = parse_probe_output(
        output, bastion="i", region="us-west-2", clock=Clock(origin=100.0, speed=20.0)
    )
    assert timeline.segments[0].end == pytest.approx(120.0)
    assert timeline.ended == pytest.approx(130.0)


@pytest.mark.parametrize("bad", ["", "B 1\n", "S x 1 a|b|c|0\n", "B 1\nS 1 1 nope\n", "Q 1\n"])
def test_malformed_output_is_reported(bad: str) -> None:
    with pytest.raises(ProbeOutputError):
        parse_probe_output(bad, bastion="i-9", region="r", clock=Clock())


@given(st.text(max_size=300))
def test_parser_never_fails_with_anything_but_its_own_error(text: str) -> None:
    try:
        parse_probe_output(text, bastion="i", region="r", clock=Clock())
    except ProbeOutputError:
        pass


def test_plan_validation_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match="interval"):
        plan(interval=0)
    with pytest.raises(ValueError, match="min_window"):
        plan(min_window=10.0, max_window=1.0)
