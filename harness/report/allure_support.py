"""Allure integration: steps, attachments and labels for scenarios, and rendering the results.

The harness reports to allure through these helpers only, so scenarios and library code never
depend on whether allure is collecting. Without an allure listener (no ``--alluredir`` and no
default results directory, see :mod:`harness.report.pytest_plugin`) every helper is a cheap no-op.

Allure's reporter keeps "the current test or step" per thread and copies the main thread's
context into a new thread on first use, which fails when the main thread has none; so steps
and attachments are only reported from the main thread, and run silently elsewhere (the probe
loops of a drill run on worker threads).

Labels: epic ``DR readiness``; feature from the scenario's marker (``failover`` -> ``Region
failover``...); story from the scenario's docstring or name; severity by how much the verdict
depends on it (smoke is a blocker: nothing else means anything without it); the region as a
parameter; a link to the HTML DR-readiness report.

``python -m harness.report.allure_support`` (what ``tox -e report`` runs) renders
``reports/allure-results`` into an Allure HTML report with the ``allure`` command line when it
is installed, and otherwise says how to get it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import allure
import allure_commons
from allure_commons.types import AttachmentType, LinkType, Severity

EPIC = "DR readiness"
# Marker -> (feature, severity), most specific first: a scenario gets the first that matches.
FEATURES: tuple[tuple[str, str, Severity], ...] = (
    ("failover", "Region failover", Severity.CRITICAL),
    ("chaos", "Randomised chaos", Severity.NORMAL),
    ("cross_region", "Cross-region path", Severity.NORMAL),
    ("api", "Private API over TLS", Severity.CRITICAL),
    ("routing", "Latency routing", Severity.CRITICAL),
    ("smoke", "Stack and bastions", Severity.BLOCKER),
    ("gate", "CI gate", Severity.CRITICAL),
)
SCENARIO_MARKERS: frozenset[str] = frozenset(marker for marker, _, _ in FEATURES)

# Allure's own failure categories, matched against messages the scenarios and the verdict use.
CATEGORIES: tuple[Mapping[str, Any], ...] = (
    {
        "name": "RTO over objective",
        "matchedStatuses": ["failed"],
        "messageRegex": r".*over the [0-9.]+s objective.*",
    },
    {
        "name": "Did not converge",
        "matchedStatuses": ["failed"],
        "messageRegex": r".*never converged.*",
    },
    {
        "name": "Outside the lab model's window",
        "matchedStatuses": ["failed"],
        "messageRegex": r".*outside the model's window.*",
    },
    {"name": "Fault not restored", "messageRegex": r".*could not be restored.*"},
    {"name": "Harness or environment broken", "matchedStatuses": ["broken"]},
)


def active() -> bool:
    """Return whether an allure listener collects results in this process (steps are recorded)."""
    from allure_pytest.listener import AllureListener

    return any(
        isinstance(plugin, AllureListener) for plugin in allure_commons.plugin_manager.get_plugins()
    )


def _reportable() -> bool:
    return threading.current_thread() is threading.main_thread() and active()


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """Report the enclosed block as an allure step (a no-op off the main thread or without allure)."""
    if not _reportable():
        yield
        return
    with allure.step(title):
        yield


def attach_text(name: str, text: str) -> None:
    """Attach plain text (a command's output) to the current step or test."""
    if _reportable():
        allure.attach(text, name=name, attachment_type=AttachmentType.TEXT)


def attach_json(name: str, data: Any) -> None:
    """Attach JSON-serialisable data, pretty-printed."""
    if _reportable():
        allure.attach(
            json.dumps(data, indent=2, sort_keys=True, default=str),
            name=name,
            attachment_type=AttachmentType.JSON,
        )


def attach_svg(name: str, svg: str) -> None:
    """Attach a standalone SVG document (a chart)."""
    if _reportable():
        allure.attach(svg, name=name, attachment_type=AttachmentType.SVG)


def attach_command(name: str, command: str, stdout: str, stderr: str, rc: int) -> None:
    """Attach what a command on a bastion printed, as a terminal would show it."""
    if _reportable():
        text = f"$ {command}\n{stdout}"
        if stderr:
            text += f"\n[stderr]\n{stderr}"
        attach_text(f"{name} (exit {rc})", text + f"\n[exit {rc}]\n")


def global_attach_file(path: Path, name: str, attachment_type: AttachmentType) -> None:
    """Attach a file to the whole run (not to one test), e.g. the DR-readiness report."""
    if active() and path.exists():
        allure.global_attach.file(str(path), name=name, attachment_type=attachment_type)


# ---------------------------------------------------------------------- labels


def feature_of(markers: Sequence[str]) -> tuple[str, Severity] | None:
    """Return the allure feature and severity of a scenario with these markers (None: not one)."""
    names = set(markers)
    for marker, feature, severity in FEATURES:
        if marker in names:
            return feature, severity
    return None


def story_of(name: str, doc: str | None) -> str:
    """Return a scenario's story: its docstring's first line, else its name in words."""
    if doc and doc.strip():
        return doc.strip().splitlines()[0].rstrip(".")
    words = re.sub(r"\[.*\]$", "", name).removeprefix("test_").replace("_", " ")
    return words[:1].upper() + words[1:]


def label_scenario(
    *,
    name: str,
    doc: str | None,
    markers: Sequence[str],
    region: str | None,
    report_html: Path | None,
) -> None:
    """Label the running scenario (call while it runs: allure labels the current test)."""
    found = feature_of(markers)
    if found is None or not _reportable():
        return
    feature, severity = found
    allure.dynamic.epic(EPIC)
    allure.dynamic.feature(feature)
    allure.dynamic.story(story_of(name, doc))
    allure.dynamic.severity(severity)
    if region:
        allure.dynamic.parameter("region", region)
    if report_html is not None:
        allure.dynamic.link(
            report_html.resolve().as_uri(), link_type=LinkType.LINK, name="DR-readiness report"
        )


def write_run_files(results: Path, environment: Mapping[str, str]) -> None:
    """Write allure's per-run files: ``environment.properties`` and ``categories.json``."""
    results.mkdir(parents=True, exist_ok=True)
    lines = [f"{_property(key)}={_property(str(value))}" for key, value in environment.items()]
    (results / "environment.properties").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (results / "categories.json").write_text(json.dumps(list(CATEGORIES), indent=2) + "\n")


def _property(text: str) -> str:
    # Java properties: escape the separators and backslashes, keep it on one line.
    return text.replace("\\", "\\\\").replace("=", "\\=").replace(":", "\\:").replace("\n", " ")


# ---------------------------------------------------------------------- rendering

INSTALL_HELP = """\
The allure command line is not installed. Either:
  - Allure 3 (Node.js 20 or newer; works offline once installed):
        npm install -g allure
    or, without a global install:
        npm install --prefix ~/.local/allure allure && export PATH=~/.local/allure/node_modules/.bin:$PATH
  - Allure 2 (Java 8 or newer): https://allurereport.org/docs/install/ (e.g. `brew install allure`,
    `scoop install allure`, or the zip from the GitHub releases)
Then run `tox -e report` again. The raw results stay usable in {results}.
"""


def allure_command() -> list[str] | None:
    """Return how to run the allure command line (PATH, then ./node_modules/.bin), or None."""
    found = shutil.which("allure")
    if found:
        return [found]
    local = Path("node_modules/.bin/allure")
    return [str(local.resolve())] if local.exists() else None


def allure_major_version(command: Sequence[str]) -> int:
    """Return the major version of an allure command line (2 and 3 take different options)."""
    result = subprocess.run(
        [*command, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    match = re.search(r"(\d+)\.\d+", result.stdout + result.stderr)
    if result.returncode != 0 or match is None:
        raise RuntimeError(
            f"`{' '.join(command)} --version` failed (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[:300]}"
        )
    return int(match.group(1))


def render_command(command: Sequence[str], major: int, results: Path, out: Path) -> list[str]:
    """Return the command that renders ``results`` into the HTML report ``out``."""
    if major >= 3:
        return [*command, "generate", str(results), "--output", str(out)]
    return [*command, "generate", str(results), "-o", str(out), "--clean"]


def render(results: Path, out: Path) -> int:
    """Render allure results to HTML; return an exit code (1 with instructions if impossible)."""
    if not results.is_dir() or not any(results.glob("*-result.json")):
        print(
            f"regiondrill: no allure results in {results}: run the scenarios first "
            "(`pytest -m failover` writes them to reports/allure-results by default)",
            file=sys.stderr,
        )
        return 1
    command = allure_command()
    if command is None:
        print(INSTALL_HELP.format(results=results), file=sys.stderr)
        return 1
    try:
        major = allure_major_version(command)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"regiondrill: cannot run the allure command line: {exc}", file=sys.stderr)
        return 1
    if major >= 3 and out.exists():
        # Allure 3 has no --clean and leaves stale files of an earlier report in place; only
        # ever delete a directory that holds an allure report.
        if not (out / "index.html").exists() and any(out.iterdir()):
            print(
                f"regiondrill: {out} exists and is not an allure report; pick another --out",
                file=sys.stderr,
            )
            return 1
        shutil.rmtree(out)
    completed = subprocess.run(render_command(command, major, results, out), check=False)
    if completed.returncode != 0:
        print(f"regiondrill: allure exited {completed.returncode}", file=sys.stderr)
        return completed.returncode
    print(f"allure report: {(out / 'index.html').resolve()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.report.allure_support",
        description="Render regiondrill's allure results as an Allure HTML report.",
    )
    parser.add_argument("--results", default="reports/allure-results", type=Path)
    parser.add_argument("--out", default="reports/allure-report", type=Path)
    args = parser.parse_args(argv)
    return render(args.results, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
