"""Cost of the main job: `pytest -m failover` on the lab, 2 regions, measured in one run.

Prints:
- the suite's wall time (target <= 90 s on 2 cores);
- the inherent modelled waits — for each phase, the baseline lead, the time until convergence
  is certain (the analytic model's latest bound on the lab, else the slowest client's
  recovery) and the settle period — converted to wall time, and the ratio wall / inherent
  (target <= 1.5);
- SSM API calls per failover measurement (SendCommand + GetCommandInvocation): O(bastions),
  independent of how many samples the probe loops take;
- measured minus modelled RTO for each phase the lab's analytic model covers.

    python benchmarks/failover.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.report.recorder import RECORD_KEY

REPO = Path(__file__).resolve().parents[1]
captured: dict[str, Any] = {}


# This module is passed to pytest as a plugin: the fixture and hook below capture the run.


@pytest.fixture(scope="session", autouse=True)
def _lab_calls(target: Any) -> Iterator[None]:
    yield
    if target.lab is not None:
        captured["calls"] = dict(target.lab.gateway.calls)
        captured["speed"] = target.clock.speed


def pytest_sessionfinish(session: pytest.Session) -> None:
    captured["record"] = session.config.stash[RECORD_KEY]
    captured["config"] = session.config


def main() -> None:
    os.chdir(REPO)  # the repository's conftest and pytest configuration apply
    with tempfile.TemporaryDirectory() as reports:
        started = time.perf_counter()
        code = pytest.main(
            [
                "-m",
                "failover",
                "-q",
                "-p",
                "no:cacheprovider",
                "--report-dir",
                reports,
                "--regions",
                "us-east-1,us-west-2",
                "scenarios",
            ],
            plugins=[sys.modules[__name__]],
        )
        wall = time.perf_counter() - started
    record = captured["record"]
    from harness.plugin import harness_config_of

    config = harness_config_of(captured["config"])
    speed = captured.get("speed", config.lab_speed)
    interval = config.probe_interval
    lead, settle = 3 * interval, max(5 * interval, 5.0)
    inherent = 0.0
    for _, phase in record.phases:
        measured = phase.rto
        if measured is None:  # a hazard phase that must not converge: DNS still moved
            measured = max((m.dns_flip or 0.0) for m in phase.measurements)
        certain = max(measured, phase.model_window[1]) if phase.model_window else measured
        inherent += lead + certain + settle
    inherent_wall = inherent / speed
    calls = captured.get("calls", {})
    ssm = sum(
        count
        for (service, op), count in calls.items()
        if service == "ssm" and op in ("SendCommand", "GetCommandInvocation")
    )
    sends = sum(
        count for (service, op), count in calls.items() if service == "ssm" and op == "SendCommand"
    )
    phases = len(record.phases)
    print(f"pytest -m failover exit code: {code}")
    print(f"suite wall time:               {wall:8.1f} s   (target <= 90 s)")
    print(
        f"inherent modelled waits:       {inherent:8.1f} s modelled = {inherent_wall:.1f} s wall at x{speed:g}"
    )
    if inherent_wall:
        print(f"ratio wall / inherent:         {wall / inherent_wall:8.2f}     (target <= 1.5)")
    if phases:
        print(
            f"SSM calls per measured phase:  {ssm / phases:8.1f}     ({sends / phases:.1f} SendCommand; 4 bastions)"
        )
    print("measured minus modelled RTO (s):")
    for _, phase in record.phases:
        if phase.model_window is None or phase.rto is None:
            continue
        earliest, latest = phase.model_window
        print(
            f"  {phase.phase:<9} {phase.region:<10} {phase.fault:<20} measured {phase.rto:6.1f}  "
            f"model {earliest:.0f}..{latest:.0f}  -> {phase.rto - latest:+6.1f} vs latest"
        )


if __name__ == "__main__":
    main()
