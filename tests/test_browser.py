"""A real browser (Debian chromium, headless, driven by Playwright) on a site served from a sub-path."""

import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from n2g_site.cli import app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/setup.sh --test installs it)")

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served_site(tmp_path_factory):
    """The tiny model's site built for https://example/sub/ and served at http://127.0.0.1:PORT/sub/."""
    root = tmp_path_factory.mktemp("www")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    url = f"http://127.0.0.1:{server.server_address[1]}/sub/"
    corpus = tmp_path_factory.mktemp("corpus")
    (corpus / "a.txt").write_text("In Paris the <script>alert(1)</script> museums open at nine. " * 8)
    (corpus / "b.txt").write_text("Rivers flow into the sea & the sea is deep. " * 8)
    result = CliRunner().invoke(app, ["build", "--model", "random:tiny", "--corpus", str(corpus), "--neurons", "0-1",
                                      "--top-k", "3", "--site-url", url, "--work-dir", str(root / "work"),
                                      "--site-dir", str(root / "sub")])
    assert result.exit_code == 0, result.output
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page()
        errors = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        tab.errors = errors
        yield tab
        browser.close()


def test_home_to_layer_to_neuron_with_a_visible_graph(served_site, page):
    page.goto(served_site)
    assert "random-init tiny" in page.content()
    page.get_by_role("link", name="Layer 1").first.click()
    page.wait_for_url("**/sub/layers/L1/")
    page.locator("a[href*='neurons/L1/N0']").first.click()
    page.wait_for_url("**/sub/neurons/L1/N0/")
    svg = page.locator(".n2g-graph svg, svg[aria-label]").first
    svg.wait_for(state="visible")
    box = svg.bounding_box()
    assert box and box["width"] > 20 and box["height"] > 20
    assert page.locator("span[title]").count() > 10  # highlighted example tokens
    assert page.errors == []


def test_script_tokens_show_as_text_and_never_run(served_site, page):
    page.goto(served_site + "neurons/L0/N1/")
    text = page.locator("body").inner_text()
    assert "script" in text  # the corpus' <script> tag is shown as tokens ...
    assert page.errors == []  # ... and no alert() dialog or script error happened


def test_prose_search_finds_the_reading_guide(served_site, page):
    page.goto(served_site)
    page.locator("input.md-search__input").click()
    page.keyboard.type("ignore", delay=50)
    result = page.locator(".md-search-result__link").first
    result.wait_for(state="visible", timeout=15000)
    assert "reading" in result.get_attribute("href")
