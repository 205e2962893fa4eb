"""The report plugin as users meet it: what a session writes, prints and exits with.

The lab sessions (``lab_runs``, see conftest.py) run the real scenarios; the in-process
sessions below use synthetic phases to reach the verdict's edges without a lab.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from lab_sessions import LabRun, isolated_environment

from harness.report import model

pytest_plugins = ["pytester"]
SCHEMA = json.loads(Path(model.__file__).with_name("schema.json").read_text())
HERE = Path(__file__).parent


def report_json(run: LabRun | Path) -> dict[str, Any]:
    reports = run.snapshot if isinstance(run, LabRun) else run
    document = json.loads((reports / "dr-readiness.json").read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    return document


def allure_results(directory: Path) -> dict[str, dict[str, Any]]:
    results = {}
    for path in directory.glob("*-result.json"):
        data = json.loads(path.read_text())
        results[data["name"]] = data
    return results


def steps(result: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    pending = list(result.get("steps", []))
    while pending:
        step = pending.pop(0)
        found.append(step)
        pending[:0] = step.get("steps", [])
    return found


def labels(result: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for label in result["labels"]:
        out.setdefault(label["name"], []).append(label["value"])
    return out


# --- real sessions on the lab ------------------------------------------------------------------


def test_a_smoke_and_routing_run_reports_but_is_never_ready(lab_runs: dict[str, LabRun]) -> None:
    run = lab_runs["smoke"]
    assert run.returncode == 0, run.output[-3000:]
    document = report_json(run)
    assert document["verdict"]["status"] == "AT RISK"
    assert [r["code"] for r in document["verdict"]["reasons"]] == ["not_measured"]
    assert {s["outcome"] for s in document["scenarios"]} == {"passed"}
    assert {m for s in document["scenarios"] for m in s["markers"]} == {"gate", "routing", "smoke"}
    assert document["run"]["run_id"]
    assert document["run"]["target"] == "lab"
    assert len(document["stacks"]) == 8  # network, routes and api per region, peering, dns
    assert document["run"]["template_digest"]
    assert document["observations"]["routing_matrix"]["us-east-1"]
    assert "regiondrill: DR readiness: AT RISK" in run.output
    assert f"html: {run.reports.resolve() / 'dr-readiness.html'}" in run.output


def test_a_failover_over_the_objective_is_not_ready_and_fails_the_run(
    lab_runs: dict[str, LabRun],
) -> None:
    run = lab_runs["failover"]
    assert run.returncode == 1, run.output[-3000:]
    document = report_json(run)
    verdict = document["verdict"]
    assert verdict["status"] == "NOT READY"
    assert verdict["headline"] == "The API would not survive losing us-east-1 today."
    assert [r["code"] for r in verdict["reasons"]][:3] == [
        "scenario_failed",
        "over_objective",
        "over_objective",
    ]
    (drill,) = document["drills"]
    assert (drill["region"], drill["fault"], drill["compound"]) == (
        "us-east-1",
        "invert_health_check",
        False,
    )
    assert [p["phase"] for p in drill["phases"]] == ["failover", "failback"]
    assert len({t["bastion"] for t in drill["timelines"]}) == 4
    assert all(p["status"] == "over_objective" for p in drill["phases"])
    (fault,) = document["faults"]
    assert (fault["kind"], fault["state"], fault["this_run"]) == (
        "invert_health_check",
        "restored",
        True,
    )
    assert {p["fault_id"] for p in drill["phases"]} == {fault["id"]}
    assert [(m["kind"], m["own"]) for m in drill["markers"]] == [
        ("inject", True),
        ("restore", True),
    ]
    injected = next(m["at_s"] for m in drill["markers"] if m["kind"] == "inject")
    assert abs(injected) < 2.0  # the ledger's injection and the drill's origin agree
    assert "regiondrill: DR readiness: NOT READY" in run.output


def test_history_grows_by_one_line_per_run_and_the_trend_shows_both(
    lab_runs: dict[str, LabRun],
) -> None:
    run = lab_runs["failover"]
    lines = (run.reports / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["verdict"] for line in lines] == ["AT RISK", "NOT READY"]
    html = (run.snapshot / "dr-readiness.html").read_text()
    assert html.count('class="verdict-cell') == 2
    assert 'id="timeline-drill-1"' in html
    assert 'id="rto-bars"' in html
    assert 'id="trend"' in html


def test_allure_results_have_labels_steps_and_attachments(lab_runs: dict[str, LabRun]) -> None:
    smoke = allure_results(lab_runs["smoke"].reports / "allure-results")  # the default place
    routing = smoke["test_each_vpc_resolves_the_api_to_its_own_region"]
    assert labels(routing)["feature"] == ["Latency routing"]
    dig_steps = [s for s in steps(routing) if s["name"].startswith("dig on i-")]
    assert len(dig_steps) == 4
    assert dig_steps[0]["attachments"][0]["name"] == "dig (exit 0)"

    failover_dir = lab_runs["failover"].project / "allure-gate"
    (result,) = allure_results(failover_dir).values()
    assert result["status"] == "failed"
    found = labels(result)
    assert found["epic"] == ["DR readiness"]
    assert found["feature"] == ["Region failover"]
    assert found["severity"] == ["critical"]
    assert found["story"] == ["Failover when the health check is inverted"]
    assert {"name": "region", "value": "'us-east-1'"} in result["parameters"]
    assert result["links"][0]["url"].endswith("/reports/dr-readiness.html")
    names = [s["name"] for s in steps(result)]
    assert names[:2] == ["failover of us-east-1 via invert_health_check", f"inject {names[1][7:]}"]
    assert names[1].startswith("inject invert_health_check(")
    assert "failback of us-east-1 via invert_health_check" in names
    attachments = {(a["name"], a["type"]) for a in result["attachments"]}
    assert {
        ("timeline: us-east-1 via invert_health_check", "image/svg+xml"),
        ("timeline: us-east-1 via invert_health_check", "application/json"),
        ("fault ledger", "application/json"),
    } <= attachments
    svg = next(a for a in result["attachments"] if a["type"] == "image/svg+xml")
    assert (failover_dir / svg["source"]).read_text().startswith("<?xml")
    assert "verdict=NOT READY" in (failover_dir / "environment.properties").read_text()
    assert (failover_dir / "categories.json").exists()
    # An explicit --alluredir leaves the default results of the earlier run alone.
    assert (lab_runs["smoke"].reports / "allure-results").is_dir()


# --- in-process sessions with synthetic phases --------------------------------------------------


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\nmarkers =\n    gate: g\n    smoke: s\n    failover: f\n")
    pytester.syspathinsert(HERE)
    return pytester


def drills_test(failover: float, *, marker: str = "gate") -> str:
    return f"""
import pytest
import report_factory as f

@pytest.mark.{marker}
def test_records_drills(run_record):
    at = 1000.0
    for region in f.REGIONS:
        down, up = f.drill(region, at=at, failover={failover}, failback=30.0)
        run_record.add_phase("x", down)
        run_record.add_phase("x", up)
        at += 1000.0
"""


def run_in_process(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest("-p", "harness.plugin", "-p", "no:cacheprovider", *args)


def test_a_passing_gate_run_with_a_not_ready_verdict_exits_1(project: pytest.Pytester) -> None:
    project.makepyfile(drills_test(400.0))
    result = run_in_process(project)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*DR readiness: NOT READY*",
            "*exit code 1: every test passed, but the verdict is NOT READY*",
        ]
    )
    document = report_json(project.path / "reports")
    assert document["run"]["exit_status"] == 1


def test_a_not_ready_verdict_does_not_fail_a_run_without_gating_scenarios(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(drills_test(400.0, marker="smoke"))
    result = run_in_process(project)
    assert result.ret == pytest.ExitCode.OK
    assert report_json(project.path / "reports")["verdict"]["status"] == "NOT READY"


def test_unit_tests_alone_write_no_report_and_no_history(project: pytest.Pytester) -> None:
    # Marked gate like the template lint, but runs against no target and measures nothing.
    project.makepyfile(
        "import pytest\n\n@pytest.mark.gate\ndef test_lint():\n    assert 1 + 1 == 2\n"
    )
    result = run_in_process(project)
    assert result.ret == pytest.ExitCode.OK
    assert not (project.path / "reports" / "dr-readiness.json").exists()
    assert not (project.path / "reports" / "history.jsonl").exists()


def test_corrupt_history_is_reported_and_kept(project: pytest.Pytester) -> None:
    project.makepyfile(drills_test(60.0))
    history = project.path / "reports" / "history.jsonl"
    history.parent.mkdir()
    history.write_text("garbage\n")
    result = run_in_process(project)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*regiondrill: warning: *history.jsonl:1: skipped (not JSON*"])
    lines = history.read_text().splitlines()
    assert lines[0] == "garbage"
    assert json.loads(lines[1])["verdict"] == "READY"


def test_a_report_that_cannot_be_written_fails_the_run_loudly(project: pytest.Pytester) -> None:
    project.makepyfile(drills_test(60.0))
    (project.path / "blocked").write_text("a file where the report directory should be")
    result = run_in_process(project, "--report-dir", "blocked")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(
        ["*regiondrill: warning: could not write the DR-readiness report to */blocked: *"]
    )


def test_a_bug_in_the_report_keeps_pytests_summary_and_fails_the_run(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(drills_test(60.0))
    project.makeconftest(
        """
        import harness.report.pytest_plugin as plugin

        original = plugin.render_html

        def broken(report, runs):
            raise KeyError("no such thing")

        def pytest_configure(config):
            plugin.render_html = broken

        def pytest_unconfigure(config):
            plugin.render_html = original
        """
    )
    result = run_in_process(project)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(
        [
            "*regiondrill: warning: building the DR-readiness report failed (a regiondrill bug*",
            "*KeyError: 'no such thing'",
            "*1 passed*",
        ]
    )


# --- regiondrill gate -----------------------------------------------------------------------------


def gate(project: pytest.Pytester, *args: str) -> subprocess.CompletedProcess[str]:
    env = isolated_environment()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "gate",
            "-p",
            "harness.plugin",
            "-p",
            "no:cacheprovider",
            "--report-dir",
            "out",
            *args,
        ],
        cwd=project.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_regiondrill_gate_prints_a_one_screen_summary(project: pytest.Pytester) -> None:
    project.makepyfile(drills_test(60.0))
    completed = gate(project)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = completed.stdout[completed.stdout.index("regiondrill gate: READY") - 80 :]
    assert len(summary.splitlines()) <= 24
    assert " us-east-1       60 s / 300 s          30 s / 300 s          READY" in summary
    assert "scenarios: 1 passed, 0 failed, 0 error, 0 skipped" in summary
    assert f"report: {(project.path / 'out' / 'dr-readiness.html').resolve()}" in summary


def test_regiondrill_gate_fails_when_nothing_was_gated(project: pytest.Pytester) -> None:
    project.makepyfile(drills_test(60.0))
    completed = gate(project, "-k", "no_such_test")
    assert completed.returncode == 2
    assert "no DR-readiness report was written" in completed.stdout
