"""Helpers for the report tests that run pytest sessions in a scratch project."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LabRun:
    args: tuple[str, ...]
    returncode: int
    output: str
    project: Path
    snapshot: Path  # this run's dr-readiness.json and .html, as it wrote them
    seconds: float

    @property
    def reports(self) -> Path:
        """The shared report directory (history, ledger, allure): as the last run left it."""
        return self.project / "reports"


def scenario_ini(repo: Path) -> str:
    """The repository's pytest settings (markers, warnings as errors), as a pytest.ini."""
    options = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    lines = ["[pytest]", "addopts = --strict-markers -p no:cacheprovider", "markers ="]
    lines += [f"    {marker}" for marker in options["markers"]]
    lines += ["filterwarnings ="] + [f"    {rule}" for rule in options["filterwarnings"]]
    return "\n".join(lines) + "\n"


def isolated_environment() -> dict[str, str]:
    """This environment without settings that would change an inner pytest run."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("REGIONDRILL_", "PYTEST_")) and key != "ALLURE_INDENT_OUTPUT"
    }
