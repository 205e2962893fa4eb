"""Collect what a run measured and found, as it happens, for the summary and the report.

Scenarios add measured phases (failover/failback timings) and findings (hazards the run
uncovered, explained in plain language); the plugin records each scenario's outcome. At session
end the terminal summary prints the RTO table and the report writer turns the record into
JSON + HTML.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.chaos.timing import PhaseResult

RECORD_KEY = pytest.StashKey["RunRecord"]()


@dataclass(frozen=True)
class Finding:
    """A hazard the run uncovered (not a crash: an expected consequence worth knowing)."""

    kind: str  # blind_spot | stranded_clients | fail_open | slow_convergence | ...
    severity: str  # "high" | "medium" | "low"
    title: str
    explanation: str
    regions: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    scenario: str = ""


@dataclass
class ScenarioOutcome:
    nodeid: str
    outcome: str  # passed | failed | skipped | error
    duration: float
    markers: tuple[str, ...]
    message: str = ""


@dataclass
class RunRecord:
    """Everything the report needs about one run; filled in while the run goes."""

    started: float = field(default_factory=time.time)
    ended: float | None = None
    phases: list[tuple[str, PhaseResult]] = field(default_factory=list)  # (scenario nodeid, phase)
    findings: list[Finding] = field(default_factory=list)
    scenarios: list[ScenarioOutcome] = field(default_factory=list)
    samples: dict[str, Any] = field(default_factory=dict)  # raw timelines per phase, for charts
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_phase(self, scenario: str, phase: PhaseResult) -> None:
        with self._lock:
            self.phases.append((scenario, phase))

    def add_finding(self, finding: Finding) -> None:
        with self._lock:
            self.findings.append(finding)

    def add_outcome(self, outcome: ScenarioOutcome) -> None:
        with self._lock:
            self.scenarios.append(outcome)


def rto_table(record: RunRecord) -> list[str]:
    """Render measured phases as a fixed-width table (the end-of-run summary)."""
    if not record.phases:
        return []
    header = f"{'phase':<9} {'region':<15} {'fault':<24} {'RTO (s)':>8} {'DNS flip':>9} {'model':>13} {'objective':>9}  verdict"
    lines = [header, "-" * len(header)]
    for _, phase in record.phases:
        rto = "—" if phase.rto is None else f"{phase.rto:.1f}"
        flip = "—" if phase.dns_flip is None else f"{phase.dns_flip:.1f}"
        model = (
            "—"
            if phase.model_window is None
            else f"{phase.model_window[0]:.0f}..{phase.model_window[1]:.0f}"
        )
        verdict = (
            "ok"
            if phase.within_objective
            else ("DID NOT CONVERGE" if phase.rto is None else "OVER OBJECTIVE")
        )
        lines.append(
            f"{phase.phase:<9} {phase.region:<15} {phase.fault:<24} {rto:>8} {flip:>9} {model:>13} "
            f"{phase.objective:>9g}  {verdict}"
        )
    return lines
