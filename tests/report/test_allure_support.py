"""Tests for harness.report.allure_support: labels, run files, and rendering with the allure CLI."""

from __future__ import annotations

import json
import stat
import sys
import threading
from pathlib import Path

import pytest
from allure_commons.types import Severity

from harness.report import allure_support
from harness.report.allure_support import (
    feature_of,
    render,
    render_command,
    step,
    story_of,
    write_run_files,
)


@pytest.mark.parametrize(
    ("markers", "expected"),
    [
        (("destructive", "failover", "gate"), ("Region failover", Severity.CRITICAL)),
        (("gate", "smoke"), ("Stack and bastions", Severity.BLOCKER)),
        (("gate",), ("CI gate", Severity.CRITICAL)),
        (("cross_region",), ("Cross-region path", Severity.NORMAL)),
        (("destructive",), None),
        ((), None),
    ],
)
def test_feature_and_severity_follow_the_most_specific_marker(markers, expected) -> None:  # type: ignore[no-untyped-def]
    assert feature_of(markers) == expected


def test_story_is_the_docstring_or_the_name_in_words() -> None:
    assert (
        story_of("test_x", "Clients move within the RTO.\n\nMore.") == "Clients move within the RTO"
    )
    assert story_of("test_failover_when_the_health_check_is_inverted[us-east-1]", None) == (
        "Failover when the health check is inverted"
    )


def test_run_files_are_written_for_allure(tmp_path: Path) -> None:
    write_run_files(tmp_path / "results", {"verdict": "NOT READY", "report": "C:\\r=1:x\ny"})
    properties = (tmp_path / "results" / "environment.properties").read_text()
    assert properties == "verdict=NOT READY\nreport=C\\:\\\\r\\=1\\:x y\n"
    categories = json.loads((tmp_path / "results" / "categories.json").read_text())
    assert {c["name"] for c in categories} >= {"RTO over objective", "Did not converge"}


def test_steps_run_their_body_off_the_main_thread_too() -> None:
    seen: list[str] = []

    def worker() -> None:
        with step("off the main thread"):
            seen.append("ran")
        allure_support.attach_text("ignored", "text")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == ["ran"]


# --- rendering ----------------------------------------------------------------------------------


def fake_allure(directory: Path, version: str) -> Path:
    """An ``allure`` on PATH that records its arguments and writes an index.html.

    A Python script run by this interpreter (absolute shebang), so it needs nothing on PATH.
    """
    script = directory / "allure"
    calls = directory / "calls"
    script.write_text(
        f"#!{sys.executable}\n"
        "import pathlib, sys\n"
        "args = sys.argv[1:]\n"
        f"with open({str(calls)!r}, 'a') as log:\n"
        "    log.write(' '.join(args) + '\\n')\n"
        "if args[:1] == ['--version']:\n"
        f"    print({version!r})\n"
        "    sys.exit(0)\n"
        "flag = '-o' if '-o' in args else '--output'\n"
        "out = pathlib.Path(args[args.index(flag) + 1])\n"
        "out.mkdir(parents=True, exist_ok=True)\n"
        "(out / 'index.html').write_text('<html></html>')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return calls


@pytest.fixture
def results(tmp_path: Path) -> Path:
    directory = tmp_path / "allure-results"
    directory.mkdir()
    (directory / "0-result.json").write_text("{}")
    return directory


@pytest.fixture
def isolated_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with nothing but a private bin directory, and a cwd without node_modules.

    So a system-wide allure CLI can never be found, and its absence is always testable.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.chdir(tmp_path)
    return bin_dir


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("3.18.0", ["generate", "{results}", "--output", "{out}"]),
        ("2.30.0", ["generate", "{results}", "-o", "{out}", "--clean"]),
    ],
)
def test_render_runs_the_allure_cli_with_its_version_options(
    isolated_path: Path,
    results: Path,
    tmp_path: Path,
    version: str,
    expected: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls = fake_allure(isolated_path, version)
    out = tmp_path / "allure-report"
    assert render(results, out) == 0
    assert (out / "index.html").exists()
    generate = calls.read_text().splitlines()[-1].split()
    assert generate == [a.format(results=results, out=out) for a in expected]
    assert f"allure report: {out / 'index.html'}" in capsys.readouterr().out


def test_render_replaces_an_old_report_but_never_another_directory(
    isolated_path: Path, results: Path, tmp_path: Path
) -> None:
    fake_allure(isolated_path, "3.18.0")
    out = tmp_path / "allure-report"
    out.mkdir()
    (out / "index.html").write_text("old")
    (out / "stale.js").write_text("old")
    assert render(results, out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep")
    assert render(results, precious) == 1
    assert (precious / "notes.txt").read_text() == "keep"


def test_render_says_how_to_get_the_cli_when_it_is_missing(
    isolated_path: Path, results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert render(results, tmp_path / "out") == 1
    message = capsys.readouterr().err
    assert "npm install -g allure" in message
    assert str(results) in message


def test_render_needs_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert render(tmp_path / "nothing", tmp_path / "out") == 1
    assert "no allure results" in capsys.readouterr().err


def test_render_command_shapes() -> None:
    assert render_command(["allure"], 3, Path("r"), Path("o")) == [
        "allure",
        "generate",
        "r",
        "--output",
        "o",
    ]
    assert render_command(["allure"], 2, Path("r"), Path("o"))[-1] == "--clean"
