"""The negative side in a real browser (Debian chromium, headless): a neuron that goes below 0 shows its bottom
examples, its negative tokens shaded blue (a diverging scale, light and dark), and its negative graph, which
the token search lists apart. The tiny model's site is built with ``--polarity both`` at ``hook_pre`` (the MLP's
input, before the GELU: its neurons go about as far below 0 as above)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from sitebuild import build_tiny, serve, write_corpus

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (scripts/setup.sh --test installs it)"
)
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    corpus = write_corpus(
        root / "corpus",
        [
            "The cat sat on the mat in Paris. It was a sunny day in the city.",
            "She moved to London in 1999 and worked as a teacher at a school.",
            "Rivers flow into the sea; the sea is salty and deep.",
            "Numbers: 1, 2, 3 and 42. Rome is in Italy; Paris is in France.",
        ],
        repeat=5,
    )
    with serve(root) as origin:
        url = f"{origin}/sub/"
        hook = "blocks.{layer}.mlp.hook_pre"  # before the GELU: signed, as a gated MLP's neurons are
        options = ("--layers", "0", "--neurons", "0-1", "--top-k", "3", "--augmenter", "none", "--polarity", "both")
        build_tiny(root, corpus, *options, "--hook", hook, "--site-url", url, site="sub")
        yield url, root


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        tab.errors = []
        tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
        yield tab
        browser.close()


def _rgb(css: str) -> tuple[float, ...]:
    return tuple(float(x) for x in re.findall(r"[\d.]+", css)[:3])


@pytest.mark.parametrize("scheme", ["default", "slate"])
def test_bottom_examples_and_negative_shading(site, page, scheme, tmp_path):
    url, _ = site
    page.goto(url + "neurons/L0/N0/")
    page.evaluate("s => document.body.setAttribute('data-md-color-scheme', s)", scheme)
    section = page.locator("#negative")
    section.wait_for(state="visible")
    bottom = page.locator("#negative ~ .n2g-ex[id^=b]")
    assert bottom.count() == 2  # a strong negative side (a negative graph): two bottom windows
    badge = bottom.first.locator(".n2g-ex-head").evaluate("e => getComputedStyle(e, '::before').content")
    assert badge == '"bottom"'  # the split's badge, drawn by the CSS from the window's id
    assert "lowest -" in bottom.first.locator(".n2g-ex-head").inner_text()
    # the lowest token is underlined and shaded on the blue side of the diverging scale
    pivot = bottom.first.locator(".n2g-tokens i.pv")
    assert re.fullmatch(r"b(10|[1-9])", pivot.get_attribute("class").split()[0])
    r, g, b = _rgb(pivot.evaluate("e => getComputedStyle(e).backgroundColor"))
    assert b > r + 60, (r, g, b)  # blue, where positive highlights are red
    top = page.locator(".n2g-ex[id^=t] .n2g-tokens i[class^='a']").first
    r, g, b = _rgb(top.evaluate("e => getComputedStyle(e).backgroundColor"))
    assert r > b, (r, g, b)
    # hovering a negative token shows its (negative) value
    pivot.hover()
    assert pivot.get_attribute("title").startswith("-")
    # the histogram's bins below 0 are blue too
    bars = page.locator("svg.n2g-hist path.lo")
    assert bars.count() > 0
    r, g, b = _rgb(bars.first.evaluate("e => getComputedStyle(e).fill"))
    assert b > r, (r, g, b)
    # the negative graph is drawn
    assert page.locator(".n2g-neg-graph svg").first.is_visible()
    page.evaluate("document.getElementById('negative').scrollIntoView()")
    shot = tmp_path / f"negative-side-{scheme}.png"
    page.screenshot(path=str(shot))  # the viewport from the negative side's heading down
    assert shot.stat().st_size > 10_000
    if folder := os.environ.get("N2G_ARTIFACTS"):  # as tests/test_browser.py keeps its screenshots
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / shot.name)
    assert page.errors == []


def test_token_search_lists_negative_graphs_apart(site, page):
    url, root = site
    fit = json.loads((root / "work" / "fit" / "L00" / "N00000.neg.json").read_text(encoding="utf-8"))
    tokens = [n["token"] for n in fit["graph"]["nodes"] if n["depth"] == 0 and n["token"].strip().isalpha()]
    if not tokens:
        pytest.skip("the negative graph has no alphabetic activating token")
    page.goto(url)
    page.locator("input.n2g-ts-input").click()
    page.keyboard.type(tokens[0].strip(), delay=20)
    group = page.locator(".n2g-ts-group", has_text="Goes negative on it")
    group.wait_for(state="visible", timeout=10000)
    link = group.locator("a[href*='/sub/neurons/L0/N0/#negative']").first
    assert link.is_visible()
    link.click()
    page.wait_for_url("**/sub/neurons/L0/N0/#negative")
    assert page.errors == []
