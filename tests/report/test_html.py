"""Tests for harness.report.html: one self-contained page with the verdict and every chart."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
import report_factory as f

from harness.report.history import RunSummary
from harness.report.html import render_html
from harness.report.model import Report, build_report

# Anything a browser would fetch: src/href/action/poster/data attributes or CSS url()/@import
# pointing outside the page. Plain-text mentions of an address are fine.
FETCHES = re.compile(
    r"""(?:\b(?:src|href|action|poster|data|xlink:href|srcset)\s*=\s*["']?\s*(?!#)[a-z][a-z0-9+.-]*:"""
    r"""|\b(?:src|href|action|poster|data|xlink:href|srcset)\s*=\s*["']?\s*//"""
    r"""|url\(\s*["']?\s*(?!#)(?:[a-z][a-z0-9+.-]*:|//)"""
    r"""|@import)""",
    re.IGNORECASE,
)


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(html)
    return parser.tags


def rich_report() -> Report:
    record, entries = f.healthy_run(failover=250, failback=30)
    down, up = f.drill("us-east-1", at=20_000.0, failover=None, failback=25.0, fault_id="f-h")
    record.add_phase("scenarios/test_hazards.py::test_h", down)
    record.add_phase("scenarios/test_hazards.py::test_h", up)
    finding = f.stranded_finding()
    record.add_finding(
        type(finding)(**{**finding.__dict__, "explanation": "<script>alert('x')</script> & more"})
    )
    return build_report(record, f.config(), ledger_entries=entries)


def history(n: int) -> list[RunSummary]:
    return [
        RunSummary(
            f"r{i}",
            f"2026-11-{i + 1:02d}T03:17:00.000Z",
            "lab",
            "READY",
            300.0,
            {"us-east-1": {"failover": 60.0, "failback": 30.0}},
            (),
            {},
        )
        for i in range(n)
    ]


def test_the_page_has_the_verdict_and_every_chart() -> None:
    report = rich_report()
    html = render_html(report, history(5))
    tags = elements(html)
    verdict = [attrs for tag, attrs in tags if attrs.get("id") == "verdict"]
    assert verdict == [{"id": "verdict", "class": "verdict not-ready", "data-verdict": "NOT READY"}]
    svg_ids = [attrs.get("id") for tag, attrs in tags if tag == "svg"]
    assert svg_ids == [
        "rto-bars",
        "timeline-drill-1",
        "timeline-drill-2",
        "timeline-drill-3",
        "trend",
    ]
    cards = [
        attrs.get("data-status")
        for tag, attrs in tags
        if "card" in (attrs.get("class") or "").split()
    ]
    # Without the peering fault in the ledger the hazard drill counts as a clean one.
    assert cards == ["NOT READY", "AT RISK"]
    assert html.count('class="verdict-cell') == 5
    for reason in report.verdict.reasons:
        assert reason.message.replace("'", "&#39;") in html


def test_nothing_is_fetched_from_anywhere() -> None:
    html = render_html(rich_report(), history(3))
    assert not FETCHES.findall(html), FETCHES.findall(html)[:5]
    tags = {tag for tag, _ in elements(html)}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "video", "audio"}


@pytest.mark.parametrize(
    "snippet",
    [
        '<img src="https://example.com/x.png">',
        "<link rel=stylesheet href=//cdn.example.com/a.css>",
        "<div style=\"background: url('http://x/y')\">",
        "<style>@import 'x.css';</style>",
        '<use xlink:href="https://example.com/s.svg#a"/>',
    ],
)
def test_the_fetch_detector_is_not_blind(snippet: str) -> None:
    assert FETCHES.search(snippet)


def test_values_are_escaped() -> None:
    html = render_html(rich_report(), [])
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in html


def test_a_run_without_failovers_still_renders_every_section() -> None:
    record = f.RunRecord(started=f.STARTED)
    record.add_outcome(f.outcome("scenarios/test_smoke.py::test_a", markers=("smoke",)))
    html = render_html(build_report(record, f.config(), ledger_entries=[]), [])
    assert "No failover was run in this session" in html
    assert "No clean failover was measured in this run." in html
    assert "No runs recorded yet." in html
    assert 'data-verdict="AT RISK"' in html
