"""The HTML report of real runs, opened in real headless Chromium with the network off.

No console error, no uncaught exception, no request but the file itself; the plots are there as
inline SVG; and a full-page screenshot shows the timeline plot with the fault window (its shading
colour over a wide band of every panel) and the data lines.
"""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chaosmesh_qa.report.plots import FAULT_COLOUR
from tests.support.browser import visit
from tests.support.runs import Run

pytestmark = pytest.mark.processes

COUNT_PLOTS = "JSON.stringify({svg: document.querySelectorAll('.plot svg').length, text: document.body.innerText})"


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.found += [value or "" for name, value in attrs if name in ("src", "href", "xlink:href", "action")]


def test_self_contained(passing_run: Run, broken_run: Run) -> None:
    for report in (passing_run.html, broken_run.html):
        text = report.read_text()
        parser = _References()
        parser.feed(text)
        assert all(ref.startswith("#") for ref in parser.found), parser.found  # in-page links only
        assert not parser.tags & {"script", "link", "img", "iframe", "object", "embed"}
        assert not re.search(r"url\((?!#)|@import", text)  # only in-document clip paths
        assert 20_000 < len(text.encode()) < 400_000, len(text.encode())


def _colour(png: bytes, hex_colour: str) -> np.ndarray:
    """A boolean mask of the screenshot's pixels that have exactly ``hex_colour``."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return np.all(pixels == [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], axis=2)


def _fault_band(png: bytes) -> tuple[int, int, int]:
    """(pixels in the fault colour, widest run of them on one row, rows having a run of >= 50 px)."""
    mask = _colour(png, FAULT_COLOUR)
    widest_per_row = []
    for row in mask:
        padded = np.concatenate(([0], row.astype(np.int8), [0]))
        edges = np.flatnonzero(np.diff(padded))
        widest_per_row.append(int((edges[1::2] - edges[::2]).max()) if len(edges) else 0)
    return int(mask.sum()), max(widest_per_row), sum(w >= 50 for w in widest_per_row)


def test_opens_in_chromium_without_errors_and_shows_the_plots(broken_run: Run, tmp_path: Path) -> None:
    page = visit(broken_run.html.resolve().as_uri(), COUNT_PLOTS)
    assert page.network_off, "CI runs as root: the browser must run without a network"
    assert page.errors == [], page.errors
    assert page.requests == [broken_run.html.resolve().as_uri()], page.requests
    dom = json.loads(page.evaluated)
    assert dom["svg"] == 1
    assert "deviated" in dom["text"] and "recovered-within-1s" in dom["text"] and "fault window" in dom["text"]
    (tmp_path / "report.png").write_bytes(page.screenshot)
    total, widest, rows = _fault_band(page.screenshot)
    # the fault window is shaded in each of the three panels: hundreds of rows, each a wide band
    assert total > 30_000 and widest > 100 and rows > 300, (total, widest, rows)
    assert _colour(page.screenshot, "#1f4e79").sum() > 500  # the throughput and p99 lines


def test_passing_report_in_chromium(passing_run: Run) -> None:
    page = visit(passing_run.html.resolve().as_uri(), COUNT_PLOTS)
    assert page.errors == [] and len(page.requests) == 1
    assert "passed" in page.evaluated
    assert _fault_band(page.screenshot)[2] > 300
