"""Render the DR-readiness report as one self-contained HTML file.

Everything is inline: CSS in a ``<style>`` element, charts as inline SVG (:mod:`harness.report.svg`),
no scripts, fonts, images or stylesheets fetched from anywhere, so the file opens the same from a
CI artifact, an e-mail or an air-gapped laptop. Jinja2 autoescapes every value; only the SVG
built by our own element-tree helpers is inserted as markup.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from harness.report import svg
from harness.report.history import RunSummary
from harness.report.model import RTO_MARGIN, SCHEMA_VERSION, Report, iso

TEMPLATES = Path(__file__).parent / "templates"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(("html", "j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["seconds"] = _seconds
    env.filters["duration"] = _duration
    env.filters["css"] = lambda status: str(status).lower().replace(" ", "-").replace("_", "-")
    env.filters["short"] = lambda text, n=12: text if len(text) <= n else text[:n] + "\u2026"
    return env


def _seconds(value: float | None, empty: str = "—") -> str:
    if value is None:
        return empty
    return svg.seconds(value)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {rest:02d} s"
    return f"{rest} s"


def _clock(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_html(report: Report, history: Sequence[RunSummary]) -> str:
    """Return the report page; ``history`` is the trend's runs, oldest first, this run last."""
    regions = list(report.run.regions)
    charts: dict[str, Any] = {
        "rto": Markup(svg.rto_chart(report.regions, report.run.objective).to_string()),
        "trend": Markup(svg.trend_chart(history, regions).to_string()),
        "timelines": {
            drill.id: Markup(svg.timeline_chart(drill, regions).to_string())
            for drill in report.drills
        },
    }
    template = _environment().get_template("report.html.j2")
    return template.render(
        report=report,
        schema_version=SCHEMA_VERSION,
        charts=charts,
        colours=svg.region_colours(regions),
        status_colours=svg.STATUS_COLOURS,
        phase_colours=svg.PHASE_COLOURS,
        started=_clock(report.run.started),
        ended=_clock(report.run.ended),
        generated=iso(report.run.ended),
        margin=RTO_MARGIN,
        history=history,
    )
