"""A real browser (Debian chromium, headless, driven by Playwright) on a site served from a sub-path."""

import json
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (scripts/setup.sh --test installs it)"
)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def www(served_tiny_site):
    """The shared tiny site's folder (sitebuild.served_browser_site): corpus/, work/ and the site in sub/."""
    return served_tiny_site.root


@pytest.fixture(scope="module")
def served_site(served_tiny_site):
    """The tiny model's site built for and served at http://127.0.0.1:PORT/sub/ (its --site-url)."""
    return served_tiny_site.url


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
    tokens = page.locator(".n2g-ex .n2g-tokens[data-v] i")
    assert tokens.count() > 10  # highlighted example tokens
    pivot = page.locator(".n2g-ex .n2g-tokens[data-v] i.pv").first  # its value: the window's data-v, on hover
    assert pivot.get_attribute("title") is None
    pivot.hover()
    box = pivot.locator("xpath=..")
    values = box.get_attribute("data-v").split(" ")
    at = box.evaluate("(b, t) => Array.prototype.indexOf.call(b.getElementsByTagName('i'), t)", pivot.element_handle())
    assert pivot.get_attribute("title") == values[at] and float(values[at]) > 0
    assert page.errors == []


def test_script_tokens_show_as_text_and_never_run(served_site, page):
    texts = []
    for rel in ("neurons/L0/N0/", "neurons/L0/N1/", "neurons/L1/N0/", "neurons/L1/N1/"):
        page.goto(served_site + rel)
        texts.append(page.locator("body").inner_text())
    assert any("<script>" in t or "script>" in t for t in texts)  # the corpus' <script> tag shows as text ...
    assert page.errors == []  # ... and no alert() dialog or script error happened


def test_prose_search_finds_the_reading_guide(served_site, page):
    page.goto(served_site)
    page.locator("input.md-search__input").click()
    page.keyboard.type("ignore", delay=50)
    results = page.locator(".md-search-result__link")
    results.first.wait_for(state="visible", timeout=15000)
    assert any("reading" in (link.get_attribute("href") or "") for link in results.all())


def test_header_search_boxes_work_on_a_neuron_page(served_site, page):
    """A neuron page's frame holds Material's search dialog only through the shared neurons/frame.js: both header
    boxes work there as on any page."""
    page.goto(served_site + "neurons/L0/N0/")
    page.locator("input.md-search__input").click()
    page.keyboard.type("ignore", delay=50)
    results = page.locator(".md-search-result__link")
    results.first.wait_for(state="visible", timeout=15000)
    assert any("reading" in (link.get_attribute("href") or "") for link in results.all())
    page.keyboard.press("Escape")
    assert page.locator("input.n2g-ts-input").count() == 1
    assert page.errors == []


# ------------------------------------------------------------------------------------- token search


def _an_activating_token(www: Path) -> tuple[str, int, int]:
    """A token the graph of L0 N0 (or another) fires on, with that neuron: read from the fit files."""
    for path in sorted((www / "work" / "fit").rglob("N*.json")):
        fit = json.loads(path.read_text(encoding="utf-8"))
        for node in (fit.get("graph") or {}).get("nodes", []):
            if node["depth"] == 0 and node["token"].strip() and node["token"].strip().isalpha():
                return node["token"], fit["layer"], fit["neuron"]
    pytest.skip("no graph of the tiny model has an alphabetic activating token")


def test_token_search_lists_the_neuron_and_opens_its_page(served_site, www, page):
    token, layer, neuron = _an_activating_token(www)
    page.goto(served_site + "reading/")
    box = page.locator("input.n2g-ts-input")
    box.click()
    page.keyboard.type(token.strip().upper() + " ", delay=30)  # case and spaces do not matter
    link = page.locator(f".n2g-ts-panel a[href$='/sub/neurons/L{layer}/N{neuron}/']").first
    link.wait_for(state="visible", timeout=10000)
    assert token.strip() in link.inner_text()
    link.click()
    page.wait_for_url(f"**/sub/neurons/L{layer}/N{neuron}/")
    page.locator("svg.n2g-graph").first.wait_for(state="visible")
    assert page.errors == []


def test_search_hash_and_folding_match_python(served_site, page):
    from n2g_site.render.search_index import fnv1a32, search_key

    page.goto(served_site)
    samples = ["paris", "<script>alert(1)</script>", '"', "&amp;", "中文", "😀", "é", "a b"]
    assert page.evaluate("s => s.map(n2gSearch.hash)", samples) == [fnv1a32(x) for x in samples]
    queries = [" Paris", "PARIS ", "<Script>", " ", "É"]
    assert page.evaluate("s => s.map(n2gSearch.key)", queries) == [search_key(q) for q in queries]
    assert page.evaluate("n2gSearch.root").endswith("/sub/")


def test_exact_token_ranks_first(served_site, page):
    page.goto(served_site)
    entry = {"t": ["PARIS", " Paris", "paris"], "a": [[3, 7, 0.95, 0], [2, 5, 0.9, 1], [4, 1, 0.5, 2]]}
    order = page.evaluate("e => n2gSearch.ranked(e, e.a, 'paris').map(r => r.layer)", entry)
    assert order == [4, 3, 2]  # exact spelling first, then by activation
    order = page.evaluate("e => n2gSearch.ranked(e, e.a, 'Paris').map(r => r.layer)", entry)
    assert order == [2, 3, 4]  # ' Paris' equals 'Paris' up to spaces


def test_hostile_query_and_results_stay_text(served_site, page):
    page.goto(served_site)
    page.locator("input.n2g-ts-input").click()
    page.keyboard.type("<script>alert(1)</script>", delay=10)
    page.locator(".n2g-ts-panel").wait_for(state="visible", timeout=10000)
    panel = page.locator(".n2g-ts-panel")
    assert "<script>" in panel.inner_text() or panel.locator("a").count() > 0
    assert panel.locator("script, img").count() == 0
    page.locator("input.n2g-ts-input").fill("")
    page.keyboard.type("<", delay=10)
    page.wait_for_timeout(500)
    assert page.errors == []


# ------------------------------------------------------------------------------------ layer table


def test_layer_table_sorts_and_filters(served_site, page):
    page.goto(served_site + "layers/L0/")
    rows = page.locator("table.n2g-sortable tbody tr")
    assert rows.count() == 2
    page.locator("input.n2g-filter").fill("N1")
    assert page.locator("table.n2g-sortable tbody tr:not([hidden])").count() == 1
    page.locator("input.n2g-filter").fill("")
    header = page.locator("table.n2g-sortable th", has_text="Max act.")
    header.click()
    values = page.locator("table.n2g-sortable tbody tr td:nth-child(2)").evaluate_all(
        "cells => cells.map(c => Number(c.dataset.v))"
    )
    assert values == sorted(values, reverse=True) and header.get_attribute("aria-sort") == "descending"
    header.click()
    values = page.locator("table.n2g-sortable tbody tr td:nth-child(2)").evaluate_all(
        "cells => cells.map(c => Number(c.dataset.v))"
    )
    assert values == sorted(values)
    assert page.errors == []


def _save_artefact(shot: Path) -> None:
    """Screenshots stay in pytest's tmp folder; with N2G_ARTIFACTS set they are copied there too."""
    if folder := os.environ.get("N2G_ARTIFACTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / shot.name)


def test_neuron_page_screenshot(served_site, page, tmp_path):
    page.goto(served_site + "neurons/L1/N0/")
    page.locator("svg.n2g-graph").first.wait_for(state="visible")
    shot = tmp_path / "neuron-L1-N0.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    _save_artefact(shot)


def _first_fitted_page(www: Path) -> str:
    for path in sorted((www / "work" / "fit").rglob("N*.json")):
        fit = json.loads(path.read_text(encoding="utf-8"))
        if fit.get("status") == "fitted" and (fit.get("graph") or {}).get("nodes"):
            return f"neurons/L{fit['layer']}/N{fit['neuron']}/"
    pytest.skip("no graph in the tiny model's site")


@pytest.mark.parametrize("width, height, name", [(1400, 900, "desktop"), (390, 844, "phone")])
def test_first_screen_shows_summary_graph_and_first_example(served_site, www, page, tmp_path, width, height, name):
    """Without scrolling, at 1400 x 900: the one-line summary, the whole graph and the first top example. At
    phone width (390 px) nothing is wider than the screen but the drawing and the example boxes' own scrollers.
    Screenshots of both are pytest artefacts (tmp folder, or N2G_ARTIFACTS)."""
    rel = _first_fitted_page(www)
    page.set_viewport_size({"width": width, "height": height})
    try:
        page.goto(served_site + rel)
        graph = page.locator("svg.n2g-graph").first
        graph.wait_for(state="visible")
        example = page.locator(".n2g-ex").first
        boxes = {
            "summary": page.locator(".n2g-summary").first.bounding_box(),
            "graph": graph.bounding_box(),
            "example": example.bounding_box(),
        }
        shot = tmp_path / f"neuron-first-screen-{name}.png"
        page.screenshot(path=str(shot))
        _save_artefact(shot)
        if name == "desktop":
            for part, box in boxes.items():
                assert box and box["height"] > 5 and box["y"] >= 0 and box["y"] + box["height"] <= height, (part, box)
        else:
            overflow = page.evaluate("() => document.documentElement.scrollWidth")
            assert overflow <= width + 1, overflow  # no sideways scrolling of the page
            assert boxes["graph"]["width"] <= width and boxes["example"]["width"] <= width
        assert page.errors == []
    finally:
        page.set_viewport_size({"width": 1280, "height": 720})


# ------------------------------------------------------------------------------------- JSON downloads


def test_home_layer_neuron_similar_neuron_then_its_json_validates(served_site, www, page):
    """From the sub-path: home -> layer -> neuron -> a similar neuron; its record, the line of its layer's
    export file that the page's download link and text name, validates against the documented schema (and so
    does every line of every layer file)."""
    from n2g_site.schemas import validate

    similar = json.loads((www / "work" / "relate" / "similar.json").read_text(encoding="utf-8"))["neurons"]
    start = next((key for key in sorted(similar) if similar[key]), None)
    if start is None:
        pytest.skip("no graph of the tiny model has a similar neuron")
    layer, neuron = (int(x) for x in start.split("/"))
    to_layer, to_neuron, _ = similar[start][0]
    page.goto(served_site)
    page.get_by_role("link", name=f"Layer {layer}").first.click()
    page.wait_for_url(f"**/sub/layers/L{layer}/")
    page.locator(f"a[href$='neurons/L{layer}/N{neuron}/']").first.click()
    page.wait_for_url(f"**/sub/neurons/L{layer}/N{neuron}/")
    page.locator("#similar ~ ol a").first.click()  # past any notes under the heading
    page.wait_for_url(f"**/sub/neurons/L{to_layer}/N{to_neuron}/")
    link = page.get_by_role("link", name=f"Download layer {to_layer}'s data")
    assert link.get_attribute("download") is not None
    got = page.evaluate("""async () => {
        const a = document.querySelector('a[download]');
        const response = await fetch(a.href);
        const text = await new Response(response.body.pipeThrough(new DecompressionStream('gzip'))).text();
        const line = Number(a.parentElement.textContent.match(/this neuron is line (\\d+)/)[1]);
        return {href: a.href, status: response.status, record: text.split('\\n')[line - 1]};
    }""")
    assert got["status"] == 200 and got["href"] == f"{served_site}export/layer_{to_layer:02d}.jsonl.gz"
    record = json.loads(got["record"])  # the line the page names is this neuron's record
    validate(record, "neuron")
    assert (record["layer"], record["neuron"]) == (to_layer, to_neuron)
    assert {
        (s["layer"], s["neuron"]) for s in record["similar"]
    }  # it has neighbours too (4 graphs: every pair is listed)
    # the whole-model export, linked from the home page: an index, then one gzip JSON Lines file per layer
    page.goto(served_site)
    got = page.evaluate("""async () => {
        const a = [...document.querySelectorAll('a')].find(a => a.getAttribute('href').endsWith('export/index.json'));
        const index = await (await fetch(a.href)).json();
        const layers = [];
        for (const part of index.layers) {
            const response = await fetch(new URL(part.file, a.href));
            const text = await new Response(response.body.pipeThrough(new DecompressionStream('gzip'))).text();
            layers.push(text.split('\\n').filter(line => line));
        }
        return {index, layers};
    }""")
    validate(got["index"], "export-index")
    records = [json.loads(line) for lines in got["layers"] for line in lines]
    for r in records:
        validate(r, "neuron")
        assert "build" not in r  # once, in the index
    assert (to_layer, to_neuron) in {(r["layer"], r["neuron"]) for r in records} and len(records) == 4
    assert page.errors == []
