"""The DR-readiness report of a real failover run, rendered by a real browser (headless Chromium).

Checks what a reader sees: Chromium's DOM has the verdict and every chart as SVG, and its
screenshot is a real picture (not blank) whose banner has the verdict's colour. The PNG stays
next to the report it shows (``<tmp>/lab-project0/after-failover/screenshot.png``) for a human. Needs Debian's ``chromium``
(``.ci/run`` installs it when it can); skipped with the reason where it is missing.
"""

from __future__ import annotations

import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from lab_sessions import LabRun

CHROMIUM = Path("/usr/bin/chromium")
WIDTH, HEIGHT = 1280, 2000
NOT_READY_RGB = (0xB3, 0x26, 0x1E)  # svg.STATUS_COLOURS["NOT READY"], the banner's background

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium is not installed (/usr/bin/chromium; Debian package chromium)",
)


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={profile}", *args,
        ],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip


# --- PNG decoding (stdlib only) -----------------------------------------------------------------


def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """Return (width, height, bytes per pixel, raw unfiltered rows) of an 8-bit RGB/RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks = 8, []
    width = height = channels = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, interlace) == (8, 0), (depth, interlace)
            assert colour in (2, 6), f"PNG colour type {colour}"
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            chunks.append(body)
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    rows, previous = bytearray(), bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        _unfilter(kind, line, previous, channels)
        rows += line
        previous = line
    return width, height, channels, bytes(rows)


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> None:
    if kind == 0:
        return
    if kind == 2:  # Up: whole-row byte-wise addition without carries, as one big integer
        size = len(line)
        a, b = int.from_bytes(line, "big"), int.from_bytes(previous, "big")
        low = int.from_bytes(b"\x7f" * size, "big")
        high = int.from_bytes(b"\x80" * size, "big")
        line[:] = (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(size, "big")
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        if kind == 1:
            predictor = left
        elif kind == 3:
            predictor = (left + up) // 2
        elif kind == 4:
            corner = previous[i - bpp] if i >= bpp else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
        else:
            raise AssertionError(f"unknown PNG filter {kind}")
        line[i] = (line[i] + predictor) & 0xFF


def pixel(image: tuple[int, int, int, bytes], x: int, y: int) -> tuple[int, int, int]:
    width, _, channels, rows = image
    offset = (y * width + x) * channels
    return rows[offset], rows[offset + 1], rows[offset + 2]


# --- DOM ----------------------------------------------------------------------------------------


class Dom(HTMLParser):
    """The SVG charts (id -> class), the verdict element, and the classes drawn in each chart."""

    def __init__(self) -> None:
        super().__init__()
        self.svgs: dict[str, str] = {}
        self.verdict: dict[str, str | None] = {}
        self.drawn: dict[str, list[str]] = {}
        self._chart = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "svg":
            self._chart = found.get("id") or ""
            self.svgs[self._chart] = found.get("class") or ""
            self.drawn[self._chart] = []
        elif self._chart and found.get("class"):
            self.drawn[self._chart] += (found.get("class") or "").split()
        if found.get("id") == "verdict":
            self.verdict = found

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = ""


@pytest.fixture(scope="module")
def rendered(
    lab_runs: dict[str, LabRun], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """The failover run's HTML report, its DOM after Chromium parsed it, and a screenshot."""
    run = lab_runs["failover"]
    html = run.snapshot / "dr-readiness.html"
    profile = tmp_path_factory.mktemp("chromium-profile")
    dom = chromium(profile / "dom", "--dump-dom", html.resolve().as_uri())
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    png = run.snapshot / "screenshot.png"
    shot = chromium(
        profile / "shot",
        f"--screenshot={png}",
        f"--window-size={WIDTH},{HEIGHT}",
        html.resolve().as_uri(),
    )
    assert shot.returncode == 0, shot.stderr.decode(errors="replace")[-2000:]
    return png, dom.stdout.decode()


def test_the_browser_sees_the_verdict_and_every_chart(rendered: tuple[Path, str]) -> None:
    _, dom_text = rendered
    dom = Dom()
    dom.feed(dom_text)
    assert dom.verdict.get("data-verdict") == "NOT READY"
    assert "not-ready" in (dom.verdict.get("class") or "")
    assert ">NOT READY</div>" in dom_text
    assert dom.svgs == {
        "rto-bars": "chart rto-bars",
        "timeline-drill-1": "chart timeline",
        "trend": "chart trend",
    }
    # The charts have content, not just frames: a DNS and an API strip per bastion and phase,
    # markers and RTO lines; a bar per phase; a verdict per run (smoke run, then this one).
    timeline = dom.drawn["timeline-drill-1"]
    assert timeline.count("lane-label") == 4
    assert timeline.count("dns") >= 8
    assert timeline.count("api") >= 8
    assert timeline.count("marker") == 2
    assert timeline.count("rto-line") == 2
    assert dom.drawn["rto-bars"].count("bar") == 2
    assert dom.drawn["trend"].count("verdict-cell") == 2


def test_the_screenshot_is_a_real_picture_with_the_verdict_banner(
    rendered: tuple[Path, str],
) -> None:
    png, _ = rendered
    image = decode_png(png.read_bytes())
    assert image[:2] == (WIDTH, HEIGHT)
    # The banner (top left, outside the verdict box) has the NOT READY colour.
    assert pixel(image, 8, 8) == NOT_READY_RGB
    samples = {pixel(image, x, y) for y in range(0, HEIGHT, 16) for x in range(0, WIDTH, 8)}
    assert len(samples) > 50, "the screenshot is (nearly) blank"
    region_colours = {(0x00, 0x72, 0xB2), (0xE6, 0x9F, 0x00)}  # us-east-1 and us-west-2 lanes
    assert region_colours <= samples, "the timeline's lanes are not on the picture"
