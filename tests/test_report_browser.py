"""The HTML report in headless Chromium (Debian's, driven by Playwright): no network request, no
console error, and every chart's plot area really has something drawn in it (screenshot pixels).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from riskloop.store.db import transaction
from tests.test_govern_support import rich_model

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
CHARTS = ("heatmap", "robustness", "roc", "fairness", "extraction")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed (/usr/bin/chromium)"),
]


def decode_png(data: bytes) -> np.ndarray:
    """8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) to an (h, w, channels) array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, bytearray()
    width = height = channels = 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
            assert body[8] == 8 and body[12] == 0, "only 8-bit non-interlaced"
            channels = {2: 3, 6: 4}[body[9]]
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    out = np.zeros((height, stride), dtype=np.int64)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=start + 1).astype(np.int64)
        if kind == 0:
            cur = line
        elif kind == 1:  # Sub: a running sum per channel
            cur = np.cumsum(line.reshape(width, channels), axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            cur = (line + prev) % 256
        else:  # Average (3) or Paeth (4): sequential
            cur = line.copy()
            for i in range(stride):
                a = int(cur[i - channels]) if i >= channels else 0
                b = int(prev[i])
                if kind == 3:
                    cur[i] = (cur[i] + (a + b) // 2) % 256
                else:
                    c = int(prev[i - channels]) if i >= channels else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    cur[i] = (cur[i] + pred) % 256
        out[y] = cur
        prev = cur
    return out.reshape(height, width, channels)[:, :, :3].astype(np.uint8)


def test_decode_png_matches_a_known_image(tmp_path):
    """The decoder against zlib-built PNGs with every filter type (so a chart check can trust it)."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    for ftype in range(5):
        rows, prev = [], np.zeros(21, dtype=np.int64)
        for row in img.reshape(5, 21).astype(np.int64):
            left = np.r_[np.zeros(3, np.int64), row[:-3]]
            up_left = np.r_[np.zeros(3, np.int64), prev[:-3]]
            if ftype == 0:
                filt = row
            elif ftype == 1:
                filt = row - left
            elif ftype == 2:
                filt = row - prev
            elif ftype == 3:
                filt = row - (left + prev) // 2
            else:
                p = left + prev - up_left
                pa, pb, pc = abs(p - left), abs(p - prev), abs(p - up_left)
                pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, up_left))
                filt = row - pred
            rows.append(bytes([ftype]) + bytes((filt % 256).astype(np.uint8)))
            prev = row
        ihdr = (7).to_bytes(4, "big") + (5).to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
        png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
               + chunk(b"IEND", b""))
        assert np.array_equal(decode_png(png), img), ftype


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


def test_report_renders_offline_without_errors(ready_sqlite, tmp_path, browser):
    ws = ready_sqlite
    with transaction(ws.settings) as s:
        ref = rich_model(s, ws.path.parent).ref
    out = tmp_path / "report.html"
    res = ws.invoke("report", ref, "-o", str(out))
    assert res.exit_code == 0, res.output

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(out.as_uri(), wait_until="load")
    page.wait_for_function(
        f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {2 * len(CHARTS)}", timeout=30_000)

    assert requests and all(u == out.as_uri() for u in requests), requests
    assert problems == [], problems
    assert page.text_content("#decision") == "NO-GO"

    for key in CHARTS:
        div = page.locator(f"#chart-{key}")
        # DOM: plotly drew traces of the right kind inside the plot.
        drawn = div.evaluate(
            "e => e.querySelectorAll('.heatmaplayer image, .scatterlayer .trace path, "
            ".barlayer .point path').length")
        assert drawn > 0, key
        # Pixels: the plot area is not blank (many pixels differ from the background).
        area = div.locator(".nsewdrag").first
        box = area.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 100, (key, box)
        pixels = decode_png(area.screenshot()).reshape(-1, 3).astype(int)
        background = np.array([0xFA, 0xFA, 0xFA])
        differ = np.abs(pixels - background).sum(axis=1) > 30
        colours = len({tuple(p) for p in pixels[differ][:: max(1, differ.sum() // 5000)]})
        assert differ.mean() > 0.01 and colours >= 3, (key, differ.mean(), colours)
    page.close()
