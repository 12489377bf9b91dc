"""Issue 18 in a real browser (Debian chromium, headless, Playwright): what a neuron page says is true.

The tiny model's site is built WITHOUT --site-url and served from a sub-path (/sub/) by a server that answers a
missing file with the site's 404.html and status 404, as GitHub Pages does. Checked: every score badge (neuron
pages, layer tables, token-search results) matches the evaluate files, read here with the rule written out
again; no page scrolls sideways at 390 x 844; the 404 page is styled and says when a neuron URL is not in
this build; "previous" from a layer's first neuron opens the previous layer's last neuron; the jump box and
the random-neuron link; a tapped token shows its value. Screenshots of a neuron page (desktop, phone, dark)
are written to pytest's tmp folder, and copied to $N2G_ARTIFACTS when it is set.
"""

from __future__ import annotations

import json
import os
import shutil
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from sitebuild import build_tiny, serve, write_corpus

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (scripts/setup.sh --test installs it)"
)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
PHONE = {"width": 390, "height": 844}
BASELINES = ("token_lookup", "token_max", "ngram")


class _Pages(SimpleHTTPRequestHandler):
    """A static host like GitHub Pages: a missing file is the site's 404.html with status 404."""

    site: Path

    def log_message(self, *args):
        pass

    def send_error(self, code, message=None, explain=None):
        page = self.site / "404.html"
        if code != 404 or not page.is_file():
            return super().send_error(code, message, explain)
        body = page.read_bytes()
        self.send_response(404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(base URL, work dir, site dir): the tiny model, 2 layers x 3 neurons, no --site-url, served at /sub/."""
    root = tmp_path_factory.mktemp("www18")
    corpus = write_corpus(
        root / "corpus",
        [
            "In Paris the museums open at nine and close at six.",
            "She moved to London in 1999 and then to Rome.",
            "The elbow and the knee are joints of the body.",
            "Numbers: 1, 2, 3 and 42 are small; 1000 is not.",
            "Rivers flow into the sea & the sea is deep.",
            "Rome is in Italy; Paris is in France; Bern is in Switzerland.",
        ],
        repeat=8,
    )
    work, site = build_tiny(root, corpus, "--neurons", "0-2", "--top-k", "3", site="sub")
    with serve(root, type("Pages", (_Pages,), {"site": site})) as origin:
        yield f"{origin}/sub/", work, site


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    tab = context.new_page()
    tab.errors = []
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    yield tab
    context.close()


def _neurons(work: Path) -> list[tuple[int, int]]:
    return sorted(
        (int(p.parent.name[1:]), int(p.stem[1:])) for p in (work / "fit").glob("L*/N*.json") if p.stem.startswith("N")
    )


def _expected_badge(work: Path, layer: int, neuron: int) -> str | None:
    """The badge the evaluate file implies (render/verdict.py's rule, written out again)."""
    fit = json.loads((work / "fit" / f"L{layer:02d}" / f"N{neuron:05d}.json").read_text(encoding="utf-8"))
    if fit.get("status") != "fitted":
        return None
    path = work / "evaluate" / f"L{layer:02d}" / f"N{neuron:05d}.json"
    held = json.loads(path.read_text(encoding="utf-8"))["datasets"]["heldout"]
    if held["n2g"]["true_firing"] == 0 or held["n2g"]["f1"] is None:
        return "none"
    base = [held[m]["f1"] for m in BASELINES if m in held and held[m]["f1"] is not None]
    return "beats" if held["n2g"]["f1"] > max(base) else "loses"


def _state(classes: str | None) -> str | None:
    return next((c[len("n2g-v-") :] for c in (classes or "").split() if c.startswith("n2g-v-")), None)


def test_badges_match_the_evaluate_files(built, page):
    url, work, _ = built
    neurons = _neurons(work)
    assert len(neurons) == 6
    for layer, neuron in neurons:
        want = _expected_badge(work, layer, neuron)
        page.goto(f"{url}neurons/L{layer}/N{neuron}/")
        badges = page.locator(".n2g-verdict .n2g-v")
        if want is None:
            assert badges.count() == 0
            continue
        assert _state(badges.first.get_attribute("class")) == want, (layer, neuron)
        # beside the title: on the heading's line (or right under it where the line is full), above the pager
        title, badge = page.locator("h1").first.bounding_box(), badges.first.bounding_box()
        middle = badge["y"] + badge["height"] / 2
        assert title["y"] <= middle <= title["y"] + title["height"] + 40, (title, badge)
        assert badge["y"] < page.locator(".n2g-pager").first.bounding_box()["y"]
    for layer in sorted({layer for layer, _ in neurons}):
        page.goto(f"{url}layers/L{layer}/")
        for row in page.locator("table.n2g-sortable tbody tr").all():
            neuron = int(row.locator("td").first.get_attribute("data-v"))
            got = _state(row.locator(".n2g-v").first.get_attribute("class")) if row.locator(".n2g-v").count() else None
            assert got == _expected_badge(work, layer, neuron), (layer, neuron)
    assert page.errors == []


def test_search_results_carry_the_same_badges(built, page):
    url, work, site = built
    from n2g_site.render.search_index import read_script

    meta = read_script((site / "token-search" / "tokens.js").read_text(encoding="utf-8"))
    query = meta["example"]  # the box's placeholder token: it finds something in this build
    page.goto(url)
    box = page.locator("input.n2g-ts-input")
    assert query in box.get_attribute("placeholder")
    box.click()
    page.keyboard.type(query, delay=20)
    links = page.locator(".n2g-ts-panel li a")
    links.first.wait_for(state="visible", timeout=10000)
    page.wait_for_function("() => document.querySelectorAll('.n2g-ts-panel .n2g-v').length > 0", timeout=10000)
    for a in links.all():
        layer, neuron = (int(x) for x in a.locator(".n2g-ts-id").inner_text()[1:].split(" N"))
        got = _state(a.locator(".n2g-v").first.get_attribute("class")) if a.locator(".n2g-v").count() else None
        assert got == _expected_badge(work, layer, neuron), (layer, neuron)
    assert page.errors == []


def test_example_tokens_are_found_and_labelled_apart(built, page):
    url, _, site = built
    from n2g_site.render.search_index import read_script, search_key

    found = None
    for shard in sorted((site / "token-search").glob("tokens-*.js")):
        for key, entry in read_script(shard.read_text(encoding="utf-8")).items():
            if entry.get("e") and key.isalpha() and not entry["a"] and not entry["c"]:
                found = (key, entry)
                break
        if found:
            break
    if found is None:
        pytest.skip("every token the tiny model fires on in its examples is also a graph token")
    key, entry = found
    page.goto(url)
    page.locator("input.n2g-ts-input").click()
    page.keyboard.type(key, delay=20)
    group = page.locator(".n2g-ts-group").first
    group.wait_for(state="visible", timeout=10000)
    assert "in its examples" in group.locator(".n2g-ts-title").inner_text()
    assert search_key(entry["t"][0]) == key
    assert page.errors == []


def _pages(url: str, work: Path) -> list[str]:
    neurons = _neurons(work)
    return [
        url,
        url + "reading/",
        url + "fidelity/",
        url + "method/",
        url + "patterns/",
        *(f"{url}layers/L{layer}/" for layer in sorted({layer for layer, _ in neurons})),
        *(f"{url}neurons/L{layer}/N{neuron}/" for layer, neuron in neurons),
        url + "neurons/L1/N999/",
    ]


def test_no_page_scrolls_sideways_at_phone_width(built, page):
    url, work, _ = built
    page.set_viewport_size(PHONE)
    for address in _pages(url, work):
        page.goto(address)
        page.wait_for_load_state("load")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (address, width)
    # the token-search dropdown opens on screen
    page.goto(url + "layers/L0/")
    page.locator("input.n2g-ts-input").click()
    page.keyboard.type("the", delay=20)
    panel = page.locator(".n2g-ts-panel")
    panel.wait_for(state="visible", timeout=10000)
    box = panel.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    assert page.errors == []


def test_404_is_styled_under_a_sub_path_and_names_a_missing_neuron(built, page):
    url, _, _ = built
    failed = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    missing = url + "neurons/L1/N999/"
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 and r.url != missing else None)
    response = page.goto(missing)
    assert response.status == 404
    header = page.locator(".md-header").first
    header.wait_for(state="visible")
    # styled: Material's stylesheet loaded (the header is a coloured bar), and n2g.css too
    assert page.evaluate("() => getComputedStyle(document.querySelector('.md-header')).position") == "sticky"
    assert page.evaluate("() => getComputedStyle(document.documentElement).getPropertyValue('--n2g-hl')").strip()
    note = page.locator(".n2g-404-neuron")
    note.wait_for(state="visible", timeout=10000)
    assert "not in this build" in note.inner_text()
    home = page.get_by_role("link", name="Home").first
    assert home.evaluate("a => a.href") == url
    assert failed == []  # every asset from the site's root, none guessed from the missing address first
    response = page.goto(url + "no/such/deep/page/")
    assert response.status == 404
    page.locator(".n2g-404").wait_for(state="visible")
    assert page.errors == []


def test_prev_from_a_layers_first_neuron_opens_the_previous_layers_last(built, page):
    url, work, _ = built
    neurons = _neurons(work)
    first_of_1 = min(n for layer, n in neurons if layer == 1)
    last_of_0 = max(n for layer, n in neurons if layer == 0)
    page.goto(f"{url}neurons/L1/N{first_of_1}/")
    page.locator(".n2g-pager a", has_text="←").first.click()
    page.wait_for_url(f"**/sub/neurons/L0/N{last_of_0}/")
    page.locator(".n2g-pager a", has_text="→").first.click()
    page.wait_for_url(f"**/sub/neurons/L1/N{first_of_1}/")
    assert page.errors == []


def test_examples_link_to_their_own_anchor(built, page):
    url, work, _ = built
    layer, neuron = _neurons(work)[0]
    page.goto(f"{url}neurons/L{layer}/N{neuron}/")
    link = page.locator(".n2g-ex#t1 .n2g-ex-link").first
    assert link.inner_text() == "#1"
    link.click()
    page.wait_for_url("**#t1")
    assert page.errors == []


def test_jump_box_and_random_neuron(built, page):
    url, work, _ = built
    page.goto(url + "layers/L0/")
    jump = page.locator(".n2g-jump input").first
    jump.fill("l1 n2")
    jump.press("Enter")
    page.wait_for_url("**/sub/neurons/L1/N2/")
    jump = page.locator(".n2g-jump input").first
    jump.fill("L1 N999")
    jump.press("Enter")
    page.locator(".n2g-jump .n2g-note", has_text="not in this build").first.wait_for(timeout=10000)
    page.locator(".n2g-random").first.click()
    page.wait_for_url("**/sub/neurons/L*/N*/")
    assert page.errors == []


def test_a_tapped_token_shows_its_value(built, browser):
    url, work, _ = built
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    tab = context.new_page()
    try:
        layer, neuron = _neurons(work)[0]
        tab.goto(f"{url}neurons/L{layer}/N{neuron}/")
        token = tab.locator(".n2g-ex .n2g-tokens[data-v] i.pv").first
        token.tap()
        tip = tab.locator(".n2g-tip")
        tip.wait_for(state="visible", timeout=5000)
        assert token.get_attribute("title") in tip.inner_text()
        box = tip.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    finally:
        context.close()


def _save(shot: Path) -> None:
    if folder := os.environ.get("N2G_ARTIFACTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / shot.name)


@pytest.mark.parametrize(
    "name, viewport, scheme",
    [("desktop", {"width": 1440, "height": 900}, "light"), ("phone", PHONE, "light"), ("dark", PHONE, "dark")],
)
def test_neuron_page_screenshots(built, browser, tmp_path, name, viewport, scheme):
    url, work, _ = built
    context = browser.new_context(viewport=viewport, color_scheme=scheme)
    tab = context.new_page()
    try:
        layer, neuron = next(n for n in _neurons(work) if _expected_badge(work, *n) is not None)
        if scheme == "dark":  # Material stores the palette the system's scheme picked on a full page (home)
            tab.goto(url)
            tab.wait_for_function("() => document.body.getAttribute('data-md-color-scheme') === 'slate'")
        tab.goto(f"{url}neurons/L{layer}/N{neuron}/")
        tab.locator(".n2g-verdict").wait_for(state="visible")
        if scheme == "dark":
            assert tab.evaluate("() => document.body.getAttribute('data-md-color-scheme')") == "slate"
        shot = tmp_path / f"neuron-18-{name}.png"
        tab.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        _save(shot)
    finally:
        context.close()
