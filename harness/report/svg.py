"""Small SVG helpers and the report's three charts: drill timeline, RTO vs objective, trend.

Charts are built as element trees (``xml.etree.ElementTree``), so every chart is well-formed XML
by construction and text is escaped once, in one place. They use presentation attributes only
(no CSS classes needed to look right), so the same SVG renders identically inline in the HTML
report and standalone as an allure attachment; hover tooltips are SVG ``<title>`` elements, which
every browser shows without JavaScript.

Colours: regions take the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies); failed requests are a dark-red hatch, which no region colour resembles.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from harness.report.model import RTO_MARGIN

if TYPE_CHECKING:
    from harness.report.history import RunSummary
    from harness.report.model import DrillView, LaneView, PhaseView, RegionView

Scale = Callable[[float], float]

SVG_NS = "http://www.w3.org/2000/svg"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', Arial, sans-serif"
REGION_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9")
UNKNOWN = "#9aa0a6"  # no answer, or an answer from an address no region owns
MIXED = "#5f6368"
NOT_PROBED = "#f1f3f4"
FAIL = "#b71c1c"
INJECT = "#c62828"
RESTORE = "#2e7d32"
OTHER_FAULT = "#6a1b9a"
MODEL = "#1565c0"
INK = "#202124"
MUTED = "#5f6368"
GRID = "#e0e0e0"
STATUS_COLOURS = {"READY": "#1b7f3b", "AT RISK": "#b26a00", "NOT READY": "#b3261e"}
PHASE_COLOURS = {
    "ok": "#1b7f3b",
    "near_objective": "#e37400",
    "over_objective": "#b3261e",
    "did_not_converge": "#b3261e",
}


def fmt(value: float) -> str:
    """Format a coordinate compactly (two decimals at most, no trailing zeros, no ``-0``)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def seconds(value: float, *, signed: bool = False) -> str:
    """Format a duration for a label: ``64 s``, ``1.5 s``, ``+120 s``."""
    text = f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.1f}"
    if signed and value > 0:
        text = "+" + text
    return f"{text} s".replace("-", "\u2212")


class Svg:
    """A tiny SVG document builder: shapes with tooltips, attributes from keyword arguments.

    Keyword names map to SVG attributes: ``stroke_width`` -> ``stroke-width``, ``class_`` ->
    ``class``; floats are formatted with :func:`fmt`.
    """

    def __init__(
        self, width: float, height: float, *, id: str, css_class: str, title: str, desc: str = ""
    ) -> None:
        self.width = width
        self.height = height
        self.id = id
        self.root = ET.Element(
            "svg",
            {
                "id": id,
                "class": css_class,
                "viewBox": f"0 0 {fmt(width)} {fmt(height)}",
                "width": fmt(width),
                "height": fmt(height),
                "role": "img",
                "aria-labelledby": f"{id}-title",
                "font-family": FONT,
                "font-size": "12",
            },
        )
        heading = ET.SubElement(self.root, "title", {"id": f"{id}-title"})
        heading.text = title
        if desc:
            ET.SubElement(self.root, "desc").text = desc
        self.defs = ET.SubElement(self.root, "defs")

    @staticmethod
    def _attrs(attrs: Mapping[str, object]) -> dict[str, str]:
        out = {}
        for key, value in attrs.items():
            if value is None:
                continue
            name = key.rstrip("_").replace("_", "-")
            out[name] = fmt(value) if isinstance(value, float) else str(value)
        return out

    def add(self, tag: str, parent: ET.Element | None = None, **attrs: object) -> ET.Element:
        """Add an element; ``text=`` sets its text, ``tooltip=`` adds a hover ``<title>``."""
        text = attrs.pop("text", None)
        tooltip = attrs.pop("tooltip", None)
        element = ET.SubElement(self.root if parent is None else parent, tag, self._attrs(attrs))
        if tooltip:
            ET.SubElement(element, "title").text = str(tooltip)
        if text is not None:
            element.text = str(text)
        return element

    def group(self, parent: ET.Element | None = None, **attrs: object) -> ET.Element:
        return self.add("g", parent, **attrs)

    def rect(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        parent: ET.Element | None = None,
        **attrs: object,
    ) -> ET.Element:
        return self.add(
            "rect",
            parent,
            x=float(x),
            y=float(y),
            width=float(max(w, 0.0)),
            height=float(max(h, 0.0)),
            **attrs,
        )

    def line(
        self,
        x1: float,
        y1: float,
        x2: float,
        y2: float,
        parent: ET.Element | None = None,
        **attrs: object,
    ) -> ET.Element:
        return self.add(
            "line", parent, x1=float(x1), y1=float(y1), x2=float(x2), y2=float(y2), **attrs
        )

    def text(
        self, x: float, y: float, content: str, parent: ET.Element | None = None, **attrs: object
    ) -> ET.Element:
        return self.add("text", parent, text=content, x=float(x), y=float(y), **attrs)

    def caption(
        self,
        x: float,
        y: float,
        content: str,
        parent: ET.Element | None = None,
        *,
        anchor: str | None = "middle",
    ) -> ET.Element:
        """Add secondary text (tick labels, axis titles, legend notes): muted, 11 px.

        ``anchor`` is the SVG text-anchor; None leaves SVG's default (start).
        """
        attrs: dict[str, object] = {"fill": MUTED, "font_size": "11"}
        if anchor is not None:
            attrs["text_anchor"] = anchor
        return self.text(x, y, content, parent, **attrs)

    def polyline(
        self,
        points: Sequence[tuple[float, float]],
        parent: ET.Element | None = None,
        **attrs: object,
    ) -> ET.Element:
        coords = " ".join(f"{fmt(x)},{fmt(y)}" for x, y in points)
        return self.add("polyline", parent, points=coords, fill="none", **attrs)

    def hatch(self, name: str, colour: str, background: str = "#ffffff") -> str:
        """Define a diagonal hatch pattern once; return its ``url(#...)`` reference."""
        pattern_id = f"{self.id}-{name}"
        if self.defs.find(f"pattern[@id='{pattern_id}']") is None:
            pattern = self.add(
                "pattern",
                self.defs,
                id=pattern_id,
                width="6",
                height="6",
                patternUnits="userSpaceOnUse",
                patternTransform="rotate(45)",
            )
            self.rect(0, 0, 6, 6, pattern, fill=background)
            self.rect(0, 0, 3, 6, pattern, fill=colour)
        return f"url(#{pattern_id})"

    def to_string(self, *, standalone: bool = False) -> str:
        """Serialise; ``standalone`` adds the namespace a separate ``.svg`` file needs.

        Inline in HTML5 the parser puts ``<svg>`` in the SVG namespace by itself.
        """
        root = self.root
        if standalone:
            root = ET.fromstring(ET.tostring(self.root, encoding="unicode"))
            root.set("xmlns", SVG_NS)
        text = ET.tostring(root, encoding="unicode", short_empty_elements=True)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + text if standalone else text


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Return round tick positions covering ``low..high`` (steps of 1, 2, 2.5 or 5 x 10^k).

    A range too narrow for floating point to step through has one tick.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"tick range must be finite, got {low!r}..{high!r}")
    if high < low:
        low, high = high, low
    span = high - low
    # Also keeps raw steps far above the subnormal floats, where the arithmetic breaks down.
    if span <= max(abs(low), abs(high), 1e-290) * 1e-9:
        return [low]
    raw = span / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    number = math.floor((high - first) / step + 1e-9) + 1
    digits = 3 - math.floor(math.log10(step))  # rounds away float noise, never a whole step
    return [round(first + index * step, digits) for index in range(max(number, 0))]


def region_colours(regions: Iterable[str]) -> dict[str, str]:
    """Map regions (in configuration order) to palette colours."""
    return {region: REGION_COLOURS[i % len(REGION_COLOURS)] for i, region in enumerate(regions)}


def _colour(region: str, colours: Mapping[str, str]) -> str:
    if not region or region == "?":
        return UNKNOWN
    if "," in region:
        return MIXED
    return colours.get(region, UNKNOWN)


def _legend(
    svg: Svg, x: float, y: float, items: Sequence[tuple[str, dict[str, object], str]], width: float
) -> float:
    """Draw legend items (kind, attributes, label) left to right, wrapping; return the bottom."""
    group = svg.group(class_="legend")
    cursor, row = x, y
    for kind, attrs, label in items:
        needed = 22 + 6.5 * len(label) + 18
        if cursor + needed > x + width:
            cursor, row = x, row + 18
        if kind == "line":
            svg.line(cursor, row + 5, cursor + 18, row + 5, group, **attrs)
        else:
            svg.rect(cursor, row, 18, 10, group, **attrs)
        svg.text(cursor + 23, row + 9.5, label, group, fill=INK, font_size="11")
        cursor += needed
    return row + 14


# ---------------------------------------------------------------------- timeline


def timeline_chart(drill: DrillView, regions: Sequence[str], *, width: float = 1100.0) -> Svg:
    """Draw a drill: one row per bastion (DNS answer above, API answer below), markers, RTO lines."""
    colours = region_colours(regions)
    rows = _rows(drill, regions)
    left, right = 210.0, 24.0
    top = 58.0  # two rows of marker labels and the model strip
    row_h = 32.0
    lanes_bottom = top + row_h * max(len(rows), 1)
    height = lanes_bottom + 34 + 44
    svg = Svg(
        width,
        height,
        id=f"timeline-{drill.id}",
        css_class="chart timeline",
        title=f"Timeline of {drill.region} via {drill.fault}",
        desc=(
            "Per bastion: which region answered DNS (thin strip) and the API (thick strip), "
            "failed requests hatched, fault and restore markers, RTO lines. Time is relative to "
            "the fault injection."
        ),
    )
    start, end = drill.span
    start = min(start, 0.0)
    end = max(end, max((m.at for m in drill.markers), default=0.0)) + drill.probe_interval
    plot_w = width - left - right
    scale = plot_w / max(end - start, 1e-9)

    def x(t: float) -> float:
        return left + (min(max(t, start), end) - start) * scale

    fail = svg.hatch("fail", FAIL, "#ffcdd2")
    grid = svg.group(class_="grid")
    for tick in nice_ticks(start, end, 10):
        svg.line(x(tick), top - 4, x(tick), lanes_bottom, grid, stroke=GRID, stroke_width="1")
        svg.caption(x(tick), lanes_bottom + 16, seconds(tick, signed=True), grid)
    svg.caption(
        left + plot_w / 2, lanes_bottom + 30, "time since the fault was injected (modelled seconds)"
    )

    # Faults' active periods, behind everything: the drill's own as a tinted band, concurrent
    # ones (a compound drill) as a strip above the lanes.
    for span in drill.spans:
        since = max(span.start, start)
        until = min(span.end if span.end is not None else end, end)
        if until <= since:
            continue
        tip = f"{span.label} active {seconds(span.start, signed=True)} .. " + (
            seconds(span.end, signed=True) if span.end is not None else "not restored"
        )
        if span.own:
            svg.rect(
                x(since),
                top - 4,
                x(until) - x(since),
                lanes_bottom - top + 4,
                fill=INJECT,
                fill_opacity="0.06",
                class_="fault-active",
                tooltip=tip,
            )
        else:
            svg.rect(
                x(since),
                top - 4,
                x(until) - x(since),
                4,
                fill=OTHER_FAULT,
                fill_opacity="0.8",
                class_="other-fault",
                tooltip=tip,
            )

    lanes_group = svg.group(class_="lanes")
    for index, (bastion, region, lanes) in enumerate(rows):
        y = top + index * row_h
        label = svg.group(lanes_group, class_="lane-label")
        svg.rect(8, y + 6, 10, 18, label, fill=colours.get(region, UNKNOWN), rx="2")
        svg.text(24, y + 14, bastion, label, fill=INK, font_size="12", font_weight="600")
        svg.text(24, y + 27, region, label, fill=MUTED, font_size="10.5")
        svg.rect(left, y + 3, plot_w, row_h - 8, lanes_group, fill=NOT_PROBED, tooltip="not probed")
        for lane in lanes:
            _draw_lane(svg, lanes_group, lane, y, x, drill.probe_interval, colours, fail)

    _draw_model_windows(svg, drill, x, top)
    _draw_markers(svg, drill, x, top, lanes_bottom)

    items: list[tuple[str, dict[str, object], str]] = [
        ("box", {"fill": colours[r]}, r) for r in regions if r in colours
    ]
    items += [
        ("box", {"fill": fail}, "failed request"),
        ("box", {"fill": UNKNOWN}, "no DNS answer / unknown"),
        ("box", {"fill": NOT_PROBED, "stroke": GRID}, "not probed"),
        ("line", {"stroke": INJECT, "stroke_width": "2"}, "fault injected"),
        ("line", {"stroke": RESTORE, "stroke_width": "2"}, "fault restored"),
        ("line", {"stroke": INK, "stroke_width": "2", "stroke_dasharray": "5 3"}, "RTO"),
    ]
    if any(p.model_window for p in drill.phases):
        items.append(("box", {"fill": MODEL, "fill_opacity": "0.35"}, "lab model window"))
    if drill.compound:
        items.append(("box", {"fill": OTHER_FAULT}, "other fault active"))
    bottom = _legend(svg, left, lanes_bottom + 40, items, plot_w)
    _resize(svg, bottom + 6)
    return svg


def _resize(svg: Svg, height: float) -> None:
    svg.height = height
    svg.root.set("viewBox", f"0 0 {fmt(svg.width)} {fmt(height)}")
    svg.root.set("height", fmt(height))


def _rows(drill: DrillView, regions: Sequence[str]) -> list[tuple[str, str, list[LaneView]]]:
    order = {r: i for i, r in enumerate(regions)}
    by_bastion: dict[str, tuple[str, list[LaneView]]] = {}
    for lane in drill.lanes:
        by_bastion.setdefault(lane.bastion, (lane.region, []))[1].append(lane)
    return sorted(
        ((b, region, lanes) for b, (region, lanes) in by_bastion.items()),
        key=lambda row: (order.get(row[1], len(order)), row[0]),
    )


def _draw_lane(
    svg: Svg,
    parent: ET.Element,
    lane: LaneView,
    y: float,
    x: Scale,
    interval: float,
    colours: Mapping[str, str],
    fail: str,
) -> None:
    segments = lane.segments
    for index, segment in enumerate(segments):
        # A state lasts until the next one was first seen (the loop samples back to back); the
        # last one until the loop ended, at least one interval.
        if index + 1 < len(segments):
            stop = segments[index + 1].start
        else:
            stop = max(lane.ended, segment.end + interval)
        left, right = x(segment.start), max(x(stop), x(segment.start) + 1.5)
        dns = _colour(segment.dns_region, colours)
        where = ", ".join(segment.addresses) or "no answer"
        dns_tip = f"DNS {seconds(segment.start, signed=True)}..{seconds(segment.end, signed=True)}: {where}"
        if segment.dns_region:
            dns_tip += f" ({segment.dns_region})"
        svg.rect(left, y + 3, right - left, 7, parent, fill=dns, class_="dns", tooltip=dns_tip)
        if segment.ok:
            api = _colour(segment.api_region, colours)
            outcome = f"HTTP {segment.http_code} from {segment.api_region or 'unknown region'}"
            css = "api ok"
        else:
            api = fail
            outcome = f"FAILED: HTTP {segment.http_code or '000'}, curl exit {segment.curl_exit}"
            css = "api failed"
        svg.rect(
            left,
            y + 11,
            right - left,
            13,
            parent,
            fill=api,
            class_=css,
            tooltip=(
                f"{lane.phase} {seconds(segment.start, signed=True)}..{seconds(segment.end, signed=True)}, "
                f"{segment.samples} sample(s): {outcome}"
            ),
        )


def _draw_model_windows(svg: Svg, drill: DrillView, x: Scale, top: float) -> None:
    for phase in drill.phases:
        if not phase.model_window:
            continue
        low, high = phase.model_window
        svg.rect(
            x(phase.at + low),
            top - 12,
            max(x(phase.at + high) - x(phase.at + low), 2.0),
            6,
            fill=MODEL,
            fill_opacity="0.35",
            class_="model-window",
            tooltip=f"lab model: {phase.phase} DNS flip expected {low:.0f}..{high:.0f} s after the event",
        )


def _draw_markers(svg: Svg, drill: DrillView, x: Scale, top: float, bottom: float) -> None:
    group = svg.group(class_="markers")
    labels: list[tuple[float, str, str, str]] = []  # (x, text, colour, tooltip)
    for marker in drill.markers:
        if marker.own:
            colour = INJECT if marker.kind == "inject" else RESTORE
            dash = None
            text = "fault injected" if marker.kind == "inject" else "fault restored"
        else:
            colour, dash, text = OTHER_FAULT, "2 2", marker.label
        svg.line(
            x(marker.at),
            top - 14,
            x(marker.at),
            bottom,
            group,
            stroke=colour,
            stroke_width="2",
            stroke_dasharray=dash,
            class_=f"marker {marker.kind}",
            tooltip=f"{marker.label} at {seconds(marker.at, signed=True)}",
        )
        labels.append((x(marker.at), text, colour, marker.label))
    for phase in drill.phases:
        if phase.rto is not None:
            at = phase.at + phase.rto
            svg.line(
                x(at),
                top - 14,
                x(at),
                bottom,
                group,
                stroke=INK,
                stroke_width="2",
                stroke_dasharray="5 3",
                class_="rto-line",
                tooltip=f"{phase.phase} RTO {phase.rto:.1f} s (objective {phase.objective:g} s)",
            )
            colour = PHASE_COLOURS.get(phase.status, INK)
            labels.append((x(at), f"{phase.phase} RTO {seconds(phase.rto)}", colour, ""))
        else:
            labels.append(
                (
                    x(phase.at) + 4,
                    f"{phase.phase}: did not converge",
                    PHASE_COLOURS["did_not_converge"],
                    "",
                )
            )
        deadline = phase.at + phase.objective
        start, end = drill.span
        if start <= deadline <= end:
            svg.line(
                x(deadline),
                top - 14,
                x(deadline),
                bottom,
                group,
                stroke=PHASE_COLOURS["over_objective"],
                stroke_width="1.5",
                stroke_dasharray="1 3",
                class_="objective-line",
                tooltip=f"{phase.phase} objective: {phase.objective:g} s",
            )
    # Two label rows; a label goes to the first row where it does not overlap its neighbour.
    # Near the right edge a label ends at its line instead of starting there.
    ends = [-math.inf, -math.inf]
    for position, text, colour, tip in sorted(labels):
        estimate = 6.4 * len(text)
        flip = position + 3 + estimate > svg.width - 4
        begin = position - 3 - estimate if flip else position + 3
        row = 0 if begin >= ends[0] + 6 else (1 if begin >= ends[1] + 6 else 0)
        ends[row] = begin + estimate
        svg.text(
            position - 3 if flip else position + 3,
            12 + row * 14,
            text,
            group,
            fill=colour,
            font_size="11",
            font_weight="600",
            text_anchor="end" if flip else None,
            tooltip=tip or None,
        )


# ---------------------------------------------------------------------- RTO bars


def rto_chart(
    regions_views: Sequence[RegionView], objective: float, *, width: float = 1100.0
) -> Svg:
    """Draw every clean phase's recovery time against the objective, grouped by region."""
    names = [r.name for r in regions_views]
    colours = region_colours(names)
    rows: list[tuple[str, PhaseView]] = [
        (region.name, phase) for region in regions_views for phase in region.phases
    ]
    left, right, top, row_h = 330.0, 110.0, 34.0, 26.0
    height = top + row_h * max(len(rows), 1) + 40
    svg = Svg(
        width,
        height,
        id="rto-bars",
        css_class="chart rto-bars",
        title="Recovery time vs objective",
        desc="Each clean failover and failback, slowest client, against the RTO objective.",
    )
    if not rows:
        svg.text(
            width / 2,
            top + 20,
            "No clean failover was measured in this run.",
            fill=MUTED,
            font_size="14",
            text_anchor="middle",
            class_="empty",
        )
        _resize(svg, top + 44)
        return svg
    longest = max((p.rto or 0.0) for _, p in rows)
    high = max(objective * 1.1, longest * 1.05, 1.0)
    plot_w = width - left - right
    bottom = top + row_h * len(rows)

    def x(value: float) -> float:
        return left + min(value, high) / high * plot_w

    stuck = svg.hatch("stuck", PHASE_COLOURS["did_not_converge"], "#ffcdd2")
    for tick in nice_ticks(0.0, high, 8):
        svg.line(x(tick), top - 6, x(tick), bottom, stroke=GRID)
        svg.caption(x(tick), bottom + 16, seconds(tick))
    bars = svg.group(class_="bars")
    for index, (region, phase) in enumerate(rows):
        y = top + index * row_h
        if index % 2 == 0:
            svg.rect(0, y, width, row_h, bars, fill="#fafafa")
        svg.rect(10, y + 7, 10, 12, bars, fill=colours.get(region, UNKNOWN), rx="2")
        svg.text(
            26, y + 17, f"{region} · {phase.fault} · {phase.phase}", bars, fill=INK, font_size="12"
        )
        if phase.model_window:
            low, hi = phase.model_window
            svg.rect(
                x(low),
                y + 3,
                max(x(hi) - x(low), 2.0),
                row_h - 6,
                bars,
                fill=MODEL,
                fill_opacity="0.12",
                class_="model-window",
                tooltip=f"lab model: DNS flip expected {low:.0f}..{hi:.0f} s",
            )
        colour = PHASE_COLOURS.get(phase.status, INK)
        if phase.rto is None:
            svg.rect(
                left,
                y + 6,
                plot_w,
                14,
                bars,
                fill=stuck,
                class_=f"bar {phase.status}",
                tooltip=f"{phase.title()}: did not converge",
            )
            svg.text(
                x(high) + 6,
                y + 17,
                "did not converge",
                bars,
                fill=colour,
                font_size="12",
                font_weight="600",
            )
            continue
        svg.rect(
            left,
            y + 6,
            max(x(phase.rto) - left, 2.0),
            14,
            bars,
            fill=colour,
            rx="2",
            class_=f"bar {phase.status}",
            tooltip=(
                f"{phase.title()}: {phase.rto:.1f} s of {phase.objective:g} s"
                + (f" ({phase.margin:.0%} margin)" if phase.margin is not None else "")
            ),
        )
        margin = (
            f" ({phase.margin:.0%} left)" if phase.margin is not None and phase.margin >= 0 else ""
        )
        svg.text(
            x(phase.rto) + 6,
            y + 17,
            f"{seconds(phase.rto)}{margin}",
            bars,
            fill=colour,
            font_size="12",
            font_weight="600",
        )
    limits = svg.group(class_="limits")
    svg.line(
        x(objective),
        top - 10,
        x(objective),
        bottom,
        limits,
        stroke=PHASE_COLOURS["over_objective"],
        stroke_width="2",
        class_="objective-line",
    )
    svg.text(
        x(objective),
        top - 14,
        f"objective {seconds(objective)}",
        limits,
        fill=PHASE_COLOURS["over_objective"],
        font_size="11",
        font_weight="600",
        text_anchor="middle",
    )
    margin_at = objective * (1 - RTO_MARGIN)
    svg.line(
        x(margin_at),
        top - 4,
        x(margin_at),
        bottom,
        limits,
        stroke=PHASE_COLOURS["near_objective"],
        stroke_width="1.5",
        stroke_dasharray="4 3",
    )
    if x(objective) - x(margin_at) > 60:  # else it would sit on the objective's label
        svg.text(
            x(margin_at),
            top - 16,
            f"{1 - RTO_MARGIN:.0%}",
            limits,
            fill=PHASE_COLOURS["near_objective"],
            font_size="10.5",
            text_anchor="middle",
        )
    svg.caption(left + plot_w / 2, bottom + 32, "recovery time, slowest client (modelled seconds)")
    return svg


# ---------------------------------------------------------------------- trend


def trend_chart(
    runs: Sequence[RunSummary], regions: Sequence[str], *, width: float = 1100.0
) -> Svg:
    """Draw the slowest failover/failback per region over the last runs, with each run's verdict."""
    left, right, top = 62.0, 170.0, 24.0
    plot_h = 190.0
    strip_y = top + plot_h + 36
    height = strip_y + 40
    svg = Svg(
        width,
        height,
        id="trend",
        css_class="chart trend",
        title=f"Trend over the last {len(runs)} run(s)",
        desc="Slowest failover (solid) and failback (dashed) per region per run; objective dashed red; verdict per run below.",
    )
    all_regions = list(dict.fromkeys([*regions, *(r for run in runs for r in run.rto)]))
    colours = region_colours(all_regions)
    values = [
        v for run in runs for phases in run.rto.values() for v in phases.values() if v is not None
    ]
    high = max([run.objective for run in runs] + values + [1.0]) * 1.1
    plot_w = width - left - right
    step = plot_w / max(len(runs) - 1, 1)

    def x(index: int) -> float:
        return left + (index * step if len(runs) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return top + plot_h - min(value, high) / high * plot_h

    for tick in nice_ticks(0.0, high, 5):
        svg.line(left, y(tick), left + plot_w, y(tick), stroke=GRID)
        svg.caption(left - 8, y(tick) + 4, seconds(tick), anchor="end")
    if not runs:
        svg.text(
            left + plot_w / 2,
            top + plot_h / 2,
            "No runs recorded yet.",
            fill=MUTED,
            font_size="14",
            text_anchor="middle",
            class_="empty",
        )
        return svg
    objective = [(x(i), y(run.objective)) for i, run in enumerate(runs)]
    if len(objective) == 1:
        objective = [(left, objective[0][1]), (left + plot_w, objective[0][1])]
    svg.polyline(
        objective,
        stroke=PHASE_COLOURS["over_objective"],
        stroke_width="1.5",
        stroke_dasharray="6 4",
        class_="objective-line",
    )
    lines = svg.group(class_="series")

    def flush(
        points: list[tuple[float, float]], colour: str, dash: str | None
    ) -> list[tuple[float, float]]:
        """Draw a run of consecutive measured points (a gap ends one); return a fresh run."""
        if len(points) > 1:
            svg.polyline(points, lines, stroke=colour, stroke_width="2", stroke_dasharray=dash)
        return []

    for region in all_regions:
        for phase, dash in (("failover", None), ("failback", "5 4")):
            points: list[tuple[float, float]] = []
            for index, run in enumerate(runs):
                measured = run.rto.get(region, {})
                if phase not in measured:
                    points = flush(points, colours[region], dash)
                    continue
                value = measured[phase]
                if value is None:
                    svg.text(
                        x(index),
                        top + 10,
                        "\u00d7",
                        lines,
                        fill=PHASE_COLOURS["did_not_converge"],
                        font_size="16",
                        font_weight="700",
                        text_anchor="middle",
                        tooltip=f"{run.started} {region} {phase}: did not converge",
                    )
                    points = flush(points, colours[region], dash)
                    continue
                points.append((x(index), y(value)))
                svg.add(
                    "circle",
                    lines,
                    cx=x(index),
                    cy=y(value),
                    r="3.5" if phase == "failover" else "2.5",
                    fill=colours[region] if phase == "failover" else "#ffffff",
                    stroke=colours[region],
                    stroke_width="1.5",
                    tooltip=f"{run.started} {region} {phase}: {value:.1f} s (objective {run.objective:g} s)",
                )
            flush(points, colours[region], dash)
    strip = svg.group(class_="verdicts")
    svg.caption(left - 8, strip_y + 12, "verdict", strip, anchor="end")
    cell = min(max(step * 0.7, 8.0), 28.0)
    for index, run in enumerate(runs):
        colour = STATUS_COLOURS.get(run.verdict, UNKNOWN)
        reasons = ", ".join(run.reasons) or "no reasons"
        svg.rect(
            x(index) - cell / 2,
            strip_y,
            cell,
            16,
            strip,
            fill=colour,
            rx="3",
            class_=f"verdict-cell {run.verdict.lower().replace(' ', '-')}",
            tooltip=f"{run.started} run {run.run_id} ({run.target}): {run.verdict} — {reasons}",
        )
    label_every = max(1, math.ceil(len(runs) / 10))
    for index, run in enumerate(runs):
        if index % label_every and index != len(runs) - 1:
            continue
        stamp = run.started[5:16].replace("T", " ")
        label = "this run" if index == len(runs) - 1 else stamp
        svg.text(
            x(index),
            top + plot_h + 18,
            label,
            fill=INK if index == len(runs) - 1 else MUTED,
            font_size="10.5",
            text_anchor="middle",
        )
    legend_x = left + plot_w + 24
    legend = svg.group(class_="legend")
    row = top
    for region in all_regions:
        svg.line(
            legend_x,
            row + 5,
            legend_x + 22,
            row + 5,
            legend,
            stroke=colours[region],
            stroke_width="2",
        )
        svg.text(legend_x + 28, row + 9, f"{region} failover", legend, fill=INK, font_size="11")
        svg.line(
            legend_x,
            row + 21,
            legend_x + 22,
            row + 21,
            legend,
            stroke=colours[region],
            stroke_width="2",
            stroke_dasharray="5 4",
        )
        svg.caption(legend_x + 28, row + 25, "failback", legend, anchor=None)
        row += 36
    svg.line(
        legend_x,
        row + 5,
        legend_x + 22,
        row + 5,
        legend,
        stroke=PHASE_COLOURS["over_objective"],
        stroke_width="1.5",
        stroke_dasharray="6 4",
    )
    svg.text(legend_x + 28, row + 9, "objective", legend, fill=INK, font_size="11")
    if len(runs) == 1:
        svg.text(
            left + plot_w / 2,
            top + plot_h - 8,
            "1 run so far: the trend builds up as runs accumulate",
            fill=MUTED,
            font_size="12",
            text_anchor="middle",
        )
    return svg
