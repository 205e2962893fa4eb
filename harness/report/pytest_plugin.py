"""The report's pytest plugin: allure labels and attachments while scenarios run, and at session
end the DR-readiness report (JSON + HTML), the history line, and the verdict's exit code.

Loaded by :mod:`harness.plugin`. What it adds to a run:

- allure results by default: a session that runs DR scenarios without ``--alluredir`` writes
  them to ``<report-dir>/allure-results``, cleaned first (they are per run, like the report);
  unit-test sessions leave that directory alone. ``-p no:allure_pytest`` turns allure off.
- each DR scenario is labelled (epic/feature/story/severity, region parameter, a link to the HTML
  report); a failover scenario gets its drills' timelines attached (JSON and SVG), and every
  scenario the fault-ledger lines of the faults it injected.
- at session end, if a DR scenario ran against a target (or anything recorded measurements):
  ``dr-readiness.json``, ``dr-readiness.html`` and a ``history.jsonl`` line in the report
  directory; the verdict and the paths are printed last. Every DR-marked outcome of the session
  is in the report, the template lint (marked ``gate``) included.

Exit code: a NOT READY verdict makes pytest exit 1 (TESTS_FAILED), but only when scenarios that
gate a change (marked ``failover`` or ``gate``) actually ran — a ``-m smoke`` run measures no
failover, so its verdict is at best AT RISK ("unproven") and it keeps pytest's own exit code. An
exit code that is already non-zero is never changed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from allure_commons.types import AttachmentType

from harness.report import allure_support, history, svg
from harness.report.html import render_html
from harness.report.model import (
    DR_MARKERS,
    NOT_READY,
    Report,
    build_drills,
    build_report,
    drill_dict,
    history_record,
)
from harness.report.recorder import RECORD_KEY, RunRecord

REPORT_JSON = "dr-readiness.json"
REPORT_HTML = "dr-readiness.html"
ALLURE_DIR = "allure-results"


@dataclass
class Captured:
    """Session fixtures the report needs after they are torn down (values stay valid)."""

    deployment: Any = None
    clock: Any = None
    allure_default: Path | None = None
    written: dict[str, Path] = field(default_factory=dict)
    report: Report | None = None
    problems: list[str] = field(default_factory=list)
    exit_forced: bool = False  # the verdict turned a passing run's exit code to 1
    targeted: bool = False  # a DR scenario ran against a target (the lab or AWS)


CAPTURED_KEY = pytest.StashKey[Captured]()


def _report_dir(config: pytest.Config) -> Path:
    from harness.plugin import harness_config_of

    return Path(harness_config_of(config).report_dir)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[CAPTURED_KEY] = Captured()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Collect allure results by default, for sessions that run DR scenarios.

    Started here rather than through ``--alluredir`` at configure time so that a session of
    unit tests neither writes allure results nor wipes those of the last DR run.
    """
    config = session.config
    option = config.option
    if (
        not any(_against_target(item) for item in session.items)
        or option.collectonly
        # --alluredir given, or allure-pytest not loaded (then the option does not exist)
        or getattr(option, "allure_report_dir", "unavailable")
        or not config.pluginmanager.has_plugin("allure_pytest")
        or allure_support.active()  # another session in this process collects (pytester)
    ):
        return
    target = _report_dir(config) / ALLURE_DIR
    captured = config.stash[CAPTURED_KEY]
    try:
        _start_allure(config, target)
    except OSError as exc:
        captured.problems.append(f"allure results not collected: cannot use {target}: {exc}")
        return
    captured.allure_default = target


def _start_allure(config: pytest.Config, results: Path) -> None:
    """Start allure-pytest's listener and file writer as ``--alluredir --clean-alluredir`` does."""
    import allure_commons
    from allure_commons.logger import AllureFileLogger
    from allure_pytest.listener import AllureListener

    writer = AllureFileLogger(str(results.resolve()), clean=True)  # first: it may fail
    config.option.allure_report_dir = str(results)
    listener = AllureListener(config)
    config.pluginmanager.register(listener, "allure_listener")
    allure_commons.plugin_manager.register(listener)
    allure_commons.plugin_manager.register(writer)

    def stop() -> None:
        allure_commons.plugin_manager.unregister(listener)
        allure_commons.plugin_manager.unregister(writer)

    config.add_cleanup(stop)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Iterator[None]:
    """Keep the deployment and the target's clock for the report (built after teardown)."""
    outcome: Any = yield
    # Only harness.plugin's own fixtures: a test module may define fixtures of the same names.
    if fixturedef.argname not in ("deployment", "target") or (
        getattr(fixturedef.func, "__module__", "") != "harness.plugin"
    ):
        return
    captured = request.config.stash.get(CAPTURED_KEY, None)
    if captured is None or outcome.excinfo is not None:
        return
    value = outcome.get_result()
    if fixturedef.argname == "deployment":
        captured.deployment = value
    else:
        captured.clock = getattr(value, "clock", None)


def _collecting(config: pytest.Config) -> bool:
    """Whether this session's own allure listener collects results.

    Checked per session, not process-wide, so a pytest session run inside another (pytester)
    never labels or attaches to the outer session's tests.
    """
    return config.pluginmanager.has_plugin("allure_listener")


def _markers(item: pytest.Item) -> tuple[str, ...]:
    return tuple(sorted({m.name for m in item.iter_markers()} & DR_MARKERS))


def _against_target(item: pytest.Item) -> bool:
    """A DR scenario that runs against the lab or AWS (the template lint does not)."""
    return bool(_markers(item)) and "target" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    markers = _markers(item)
    if not markers or not _collecting(item.config):
        return
    from harness.plugin import harness_config_of
    from harness.report.model import region_of_nodeid

    regions = harness_config_of(item.config).region_names
    callspec = getattr(item, "callspec", None)
    region = callspec.params.get("region") if callspec is not None else None
    allure_support.label_scenario(
        name=item.name,
        doc=getattr(getattr(item, "function", None), "__doc__", None),
        markers=markers,
        region=region if isinstance(region, str) else region_of_nodeid(item.nodeid, regions),
        report_html=_report_dir(item.config) / REPORT_HTML,
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    yield
    if not _markers(item) or not _collecting(item.config):
        return
    record = item.config.stash.get(RECORD_KEY, None)
    if record is None:
        return
    if call.when == "call":
        _attach_drills(item, record)
    elif call.when == "teardown":
        _attach_faults(item, record)


def _attach_drills(item: pytest.Item, record: RunRecord) -> None:
    from harness.plugin import harness_config_of

    phases = [(nodeid, phase) for nodeid, phase in record.phases if nodeid == item.nodeid]
    if not phases:
        return
    config = harness_config_of(item.config)
    for drill in build_drills(phases, (), interval=config.probe_interval, is_lab=config.is_lab):
        name = f"{drill.region} via {drill.fault}"
        chart = svg.timeline_chart(drill, config.region_names)
        allure_support.attach_svg(f"timeline: {name}", chart.to_string(standalone=True))
        allure_support.attach_json(f"timeline: {name}", drill_dict(drill))


def _attach_faults(item: pytest.Item, record: RunRecord) -> None:
    from harness.chaos.ledger import Ledger
    from harness.errors import FaultError

    started = getattr(item, "_regiondrill_started", None)
    if started is None:
        return
    ledger = Ledger.in_dir(_report_dir(item.config))
    try:
        entries = ledger.entries()
    except FaultError as exc:
        allure_support.attach_text("fault ledger (unreadable)", str(exc))
        return
    touched = [e for e in entries if any(at >= started for _, at, _ in e.history)]
    if touched:
        allure_support.attach_json(
            "fault ledger",
            [
                {
                    "id": e.id,
                    "kind": e.kind,
                    "target": dict(e.target),
                    "state": e.state,
                    "history": [list(h) for h in e.history],
                }
                for e in touched
            ],
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # The wall time a test starts, to find the fault-ledger lines it wrote.
    item._regiondrill_started = time.time()  # type: ignore[attr-defined]
    if _against_target(item):
        item.config.stash[CAPTURED_KEY].targeted = True
    yield


# ---------------------------------------------------------------------- session end


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Build and write the report after every fixture (faults, stacks) has been torn down."""
    config = session.config
    record = config.stash.get(RECORD_KEY, None)
    captured = config.stash.get(CAPTURED_KEY, None)
    if record is None or captured is None or config.option.collectonly:
        return
    try:
        _finish(session, record, captured)
    except Exception as exc:
        # A bug here must not swallow pytest's own summary of the run: say it, fail the run.
        captured.problems.append(
            "building the DR-readiness report failed (a regiondrill bug, please report it): "
            + "".join(traceback.format_exception(exc)).strip()
        )
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


def _finish(session: pytest.Session, record: RunRecord, captured: Captured) -> None:
    config = session.config
    if not (captured.targeted or record.phases):
        # Nothing ran against a stack set (unit tests, or the template lint on its own): no
        # report, and the history keeps only runs that say something about readiness.
        return
    from harness.chaos.ledger import Ledger
    from harness.errors import FaultError
    from harness.plugin import harness_config_of

    harness = harness_config_of(config)
    report_dir = Path(harness.report_dir)
    record.ended = record.ended or time.time()
    ledger_entries = None
    ledger_problem = None
    try:
        ledger_entries = Ledger.in_dir(report_dir).entries()
    except FaultError as exc:
        ledger_problem = f"fault ledger unreadable, restore status unknown: {exc}"
    invocation = "pytest " + shlex.join(str(a) for a in config.invocation_params.args)
    report = build_report(
        record,
        harness,
        deployment=captured.deployment,
        clock=captured.clock,
        ledger_entries=ledger_entries,
        ledger_problem=ledger_problem,
        invocation=invocation,
        exit_status=int(session.exitstatus),
        ended=record.ended,
    )
    if (
        report.verdict.status == NOT_READY
        and report.gated
        and session.exitstatus == pytest.ExitCode.OK
    ):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        captured.exit_forced = True
        report = _with_exit_status(report, int(session.exitstatus))
    captured.report = report
    try:
        write_reports(report, report_dir, captured)
    except OSError as exc:
        # A nightly run whose report is lost has failed, whatever its tests did.
        captured.problems.append(f"could not write the DR-readiness report to {report_dir}: {exc}")
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return
    _allure_run_files(config, report, captured)


def _with_exit_status(report: Report, status: int) -> Report:
    return dataclasses.replace(report, run=dataclasses.replace(report.run, exit_status=status))


def write_reports(report: Report, report_dir: Path, captured: Captured) -> None:
    """Write JSON, then the history line, then HTML (the trend includes this run)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    json_path = report_dir / REPORT_JSON
    _atomic_write(json_path, json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n")
    captured.written["json"] = json_path
    history_path = report_dir / history.HISTORY_FILE
    try:
        history.append(history_path, history_record(report))
        captured.written["history"] = history_path
    except OSError as exc:
        captured.problems.append(f"could not append to {history_path}: {exc}")
    runs = history.read_last(
        history_path, history.DEFAULT_TREND_RUNS, warn=captured.problems.append
    )
    html_path = report_dir / REPORT_HTML
    _atomic_write(html_path, render_html(report, runs))
    captured.written["html"] = html_path


def _atomic_write(path: Path, text: str) -> None:
    # A reader (a CI artifact upload, a browser refresh) never sees a half-written report.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _allure_run_files(config: pytest.Config, report: Report, captured: Captured) -> None:
    results = getattr(config.option, "allure_report_dir", None)
    if not results or not _collecting(config):
        return
    run = report.run
    allure_support.write_run_files(
        Path(results),
        {
            "verdict": report.verdict.status,
            "target": run.target,
            "regions": ", ".join(run.regions),
            "run_id": run.run_id or "-",
            "objective_s": f"{run.objective:g}",
            "regiondrill": run.regiondrill_version,
            "report": str(captured.written["html"].resolve()),
        },
    )
    allure_support.global_attach_file(
        captured.written["json"], "DR-readiness report (JSON)", AttachmentType.JSON
    )
    allure_support.global_attach_file(
        captured.written["html"], "DR-readiness report", AttachmentType.HTML
    )


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    captured = config.stash.get(CAPTURED_KEY, None)
    if captured is None:
        return
    for problem in captured.problems:
        terminalreporter.write_line(f"regiondrill: warning: {problem}", yellow=True)
    report = captured.report
    if report is None or not captured.written:
        return
    verdict = report.verdict
    colour = {"READY": "green", "AT RISK": "yellow", "NOT READY": "red"}[verdict.status]
    terminalreporter.section(
        f"regiondrill: DR readiness: {verdict.status}", **{colour: True, "bold": True}
    )
    terminalreporter.write_line(verdict.headline)
    for reason in verdict.reasons[:10]:
        terminalreporter.write_line(f"  [{reason.status}] {reason.message}")
    if len(verdict.reasons) > 10:
        terminalreporter.write_line(f"  ... and {len(verdict.reasons) - 10} more (see the report)")
    for kind, path in captured.written.items():
        terminalreporter.write_line(f"{kind:>8}: {path.resolve()}")
    if captured.allure_default is not None:
        terminalreporter.write_line(
            f"  allure: {captured.allure_default.resolve()} (`tox -e report` renders it)"
        )
    if captured.exit_forced:
        terminalreporter.write_line(
            "exit code 1: every test passed, but the verdict is NOT READY", red=True, bold=True
        )
