"""In a real browser (Debian chromium, headless): the negative graph's mark in a layer table's badge cell does
not widen the table (the Score column and the table are as wide without the marks), on a desktop and a phone."""

from __future__ import annotations

import os
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from test_negative_badges import build_site

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (scripts/setup.sh --test installs it)"
)
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    site, _ = build_site(tmp_path_factory.mktemp("negbadges-www"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


WIDTHS = """() => {
  const table = document.querySelector("table.n2g-layer-table, .n2g-table-wrap table, table");
  const score = [...table.querySelectorAll("thead th")].find(th => th.textContent.trim() === "Score");
  return [score.getBoundingClientRect().width, table.getBoundingClientRect().width];
}"""


@pytest.mark.parametrize("viewport", [{"width": 1400, "height": 900}, {"width": 390, "height": 844}])
@pytest.mark.parametrize("layer", [0, 3])
def test_the_negative_mark_does_not_widen_the_layer_table(served, browser, viewport, layer, tmp_path):
    """A screenshot of each table goes to pytest's tmp folder, and to $N2G_ARTIFACTS when it is set."""
    context = browser.new_context(viewport=viewport)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        tab.goto(f"{served}layers/L{layer}/")
        marks = tab.locator(".n2g-vn")
        assert marks.count() == 2
        assert marks.first.is_visible()
        mark, badge = marks.first.bounding_box(), tab.locator("td > .n2g-v:not(.n2g-vn)").first.bounding_box()
        assert mark["y"] >= badge["y"] + badge["height"] - 1  # under the positive badge, not beside it
        shot = tmp_path / f"layer-L{layer}-negative-marks-{viewport['width']}.png"
        tab.screenshot(path=str(shot), full_page=True)
        if folder := os.environ.get("N2G_ARTIFACTS"):
            Path(folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(folder) / shot.name)
        with_marks = tab.evaluate(WIDTHS)
        tab.evaluate("() => document.querySelectorAll('.n2g-vn').forEach(e => e.remove())")
        without = tab.evaluate(WIDTHS)
        assert with_marks[0] <= without[0] + 0.5 and with_marks[1] <= without[1] + 0.5, (with_marks, without)
        assert errors == []
    finally:
        context.close()
