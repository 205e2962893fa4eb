"""Real pytest sessions on the lab, shared by the report's integration and screenshot tests.

Two sessions run the repository's own scenarios (copied into a scratch project) against an
in-process lab, one after the other with the same report directory, as a user would:

1. ``-m "smoke or routing"``: no failover measured, so the verdict is AT RISK and the exit 0;
   allure results go to the default ``reports/allure-results``;
2. the inverted-health-check failover of us-east-1 with ``--rto 5``: the real drill is over that
   objective, so the verdict is NOT READY and pytest exits 1; allure results to ``--alluredir``.

Each runs in its own process (the lab is process-wide) and takes 10-20 s; they run once per
test session, for whichever test needs them first.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lab_sessions import LabRun, isolated_environment, scenario_ini

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = ("test_smoke.py", "test_routing.py", "test_failover.py")
FAILOVER_EAST = (
    "scenarios/test_failover.py::test_failover_when_the_health_check_is_inverted[us-east-1]"
)


@pytest.fixture(scope="session")
def lab_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LabRun]:
    project = tmp_path_factory.mktemp("lab-project")
    (project / "scenarios").mkdir()
    for name in SCENARIOS:
        (project / "scenarios" / name).write_text((REPO / "scenarios" / name).read_text())
    (project / "pytest.ini").write_text(scenario_ini(REPO))

    def run(name: str, *args: str) -> LabRun:
        command = [sys.executable, "-m", "pytest", "-p", "harness.plugin"]
        command += ["--report-dir", "reports", *args]
        started = time.monotonic()
        completed = subprocess.run(
            command,
            cwd=project,
            env=isolated_environment(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        # The next run overwrites the reports: keep this run's as it left them.
        snapshot = project / f"after-{name}"
        snapshot.mkdir()
        for report in ("dr-readiness.json", "dr-readiness.html"):
            if (project / "reports" / report).exists():
                shutil.copy2(project / "reports" / report, snapshot / report)
        return LabRun(
            tuple(args),
            completed.returncode,
            completed.stdout + completed.stderr,
            project,
            snapshot,
            time.monotonic() - started,
        )

    return {
        "smoke": run("smoke", "-m", "smoke or routing", "scenarios"),
        "failover": run(
            "failover", "-m", "gate", "--rto", "5", "--alluredir", "allure-gate", FAILOVER_EAST
        ),
    }
