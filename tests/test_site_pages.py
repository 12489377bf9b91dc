"""Neuron pages written from one MkDocs-built shell page (publish/pages.py), and large graphs as graph.svg files."""

from __future__ import annotations

import re
import xml.dom.minidom
from pathlib import Path

import pytest

import n2g_site.publish.pages as site_pages
import n2g_site.render as render
import n2g_site.render.layer as layer_mod
from n2g_site.config import Config
from n2g_site.publish import publish
from render_fixtures import DEAD, LAYERS, make_workdir

NEURONS = [(layer, n) for layer, ns in LAYERS.items() for n in ns]


def _build(root: Path, *, tokenizer: bool = False, **cfg) -> Path:
    work = make_workdir(root / "work")
    if tokenizer:  # the embedded tokenizer: neuron pages get a playground
        from n2g_site.models import embedded_tokenizer, save_tokenizer

        save_tokenizer(embedded_tokenizer(), work.tokenizer.parent)
    config = Config(site_dir=root / "site", **cfg)
    render.render_site(config, work)
    return publish(config, work)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("shell"), site_url="https://example.org/repo/")


def test_every_neuron_page_is_its_own_page(site: Path) -> None:
    for layer, n in NEURONS:
        html = (site / f"neurons/L{layer}/N{n}/index.html").read_text(encoding="utf-8")
        title = f"Layer {layer} · Neuron {n}"
        assert f"<title>{title} - n2g-site</title>" in html
        assert f'<link rel="canonical" href="https://example.org/repo/neurons/L{layer}/N{n}/">' in html
        assert f'<h1 id="layer-{layer}-neuron-{n}">{title}' in html and f'href="#layer-{layer}-neuron-{n}"' in html
        assert 'data-md-component="header"' in html and '<script src="../../frame.js">' in html  # the theme's frame
        assert 'class="md-search__input"' in (site / "neurons" / "frame.js").read_text(encoding="utf-8").replace(
            '\\"', '"'
        )  # its search dialog: written by the shared script
        assert re.search(r'<script src="(\.\./){3}assets/n2g\.js"', html)
        assert f'href="../../../export/layer_{layer:02d}.jsonl.gz" download' in html  # the layer's data
        for marker in (site_pages.TITLE, site_pages.TITLE.lower(), site_pages.BODY, "n2g-shell"):
            assert marker not in html, marker
    assert not (site / "neurons" / "n2g-shell").exists()


def test_sitemap_lists_the_neuron_pages_not_the_shell(site: Path) -> None:
    import gzip

    text = (site / "sitemap.xml").read_text(encoding="utf-8")
    assert "n2g-shell" not in text
    for layer, n in NEURONS:
        assert f"<loc>https://example.org/repo/neurons/L{layer}/N{n}/</loc>" in text
    assert gzip.decompress((site / "sitemap.xml.gz").read_bytes()).decode("utf-8") == text


def test_shell_is_not_in_prose_search(site: Path) -> None:
    import json

    docs = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))["docs"]
    assert not [d for d in docs if "neurons/" in d["location"] or "N2G" in d["title"]]


def test_workers_write_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layer_mod, "PAGE_BODY_BUDGET", 0)  # drawings in graph.svg files too (capped ones are small)
    one = _build(tmp_path / "one")
    before = {p.relative_to(one): p.read_bytes() for p in sorted((one / "neurons").rglob("*")) if p.is_file()}
    monkeypatch.setattr(site_pages, "PARALLEL_MIN_PAGES", 2)
    written = site_pages.write_neuron_pages(one, tmp_path / "one" / "work" / "fragments", lambda t: "x", jobs=2)
    assert written == 0  # the shell was removed by the first build: nothing to redo
    two = _build(tmp_path / "two")
    after = {p.relative_to(two): p.read_bytes() for p in sorted((two / "neurons").rglob("*")) if p.is_file()}
    assert before == after and len(before) > len(NEURONS)  # every page, and a graph.svg


def test_large_graphs_go_into_a_file_next_to_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layer_mod, "PAGE_BODY_BUDGET", 0)  # every graph counts as large
    site = _build(tmp_path)
    html = (site / "neurons/L0/N3/index.html").read_text(encoding="utf-8")
    assert '<svg class="n2g-graph"' not in html
    obj = re.search(r'<object class="n2g-graph[^"]*" type="image/svg\+xml" data="graph\.svg"[^>]*>', html)
    assert obj and 'aria-label="N2G graph of layer 0, neuron 3"' in obj.group(0) and 'role="img"' in obj.group(0)
    svg = (site / "neurons/L0/N3/graph.svg").read_text(encoding="utf-8")
    doc = xml.dom.minidom.parseString(svg.encode("utf-8"))  # a well-formed file of its own
    assert doc.documentElement.tagName == "svg" and "<style>" in svg and "&lt;script&gt;" in svg
    assert not (site / f"neurons/L{DEAD[0]}/N{DEAD[1]}/graph.svg").exists()  # a dead neuron has no graph


def test_a_huge_graphs_playground_patterns_go_into_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the body budget even without its drawing, a page keeps only a pointer to its playground patterns:
    patterns.js next to it, the same data as the inline JSON of a page under the budget."""
    import json

    from n2g_site.render.search_index import read_script

    inline = _build(tmp_path / "inline", tokenizer=True)
    page = (inline / "neurons/L0/N3/index.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script type="application/json" class="n2g-pg-graph">(.*?)</script>', page).group(1))
    assert (data.get("p") or data["e"]) and not (inline / "neurons/L0/N3/patterns.js").exists()
    monkeypatch.setattr(layer_mod, "PAGE_BODY_BUDGET", 0)
    site = _build(tmp_path / "file", tokenizer=True)
    page = (site / "neurons/L0/N3/index.html").read_text(encoding="utf-8")
    pointer = re.search(r'<script type="application/json" class="n2g-pg-graph">(.*?)</script>', page).group(1)
    assert json.loads(pointer) == {"src": "neurons/L0/N3/patterns"}
    assert read_script((site / "neurons/L0/N3/patterns.js").read_text(encoding="utf-8")) == data
    assert 'data="graph.svg"' in page  # the drawing went first


def test_pages_stay_small(site: Path) -> None:
    sizes = [(site / f"neurons/L{layer}/N{n}/index.html").stat().st_size for layer, n in NEURONS]
    assert max(sizes) < 40_000


CHROMIUM = __import__("shutil").which("chromium") or __import__("shutil").which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/setup.sh --test installs it)")
def test_a_graph_from_its_file_is_visible_in_a_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Served from a sub-path: the <object> shows graph.svg, with its nodes and their tooltips."""
    from playwright.sync_api import sync_playwright

    from sitebuild import serve

    monkeypatch.setattr(layer_mod, "PAGE_BODY_BUDGET", 0)
    work = make_workdir(tmp_path / "work")
    from n2g_site.models import embedded_tokenizer, save_tokenizer

    save_tokenizer(embedded_tokenizer(), work.tokenizer.parent)  # a playground, its patterns in patterns.js
    config = Config(site_dir=tmp_path / "www" / "sub", site_url="https://example.org/sub/")
    render.render_site(config, work)
    publish(config, work)
    with serve(tmp_path / "www") as origin, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        tab = browser.new_page()
        tab.goto(f"{origin}/sub/neurons/L0/N3/")
        graph = tab.locator("object.n2g-graph").first
        graph.wait_for(state="visible")
        box = graph.bounding_box()
        assert box and box["width"] > 20 and box["height"] > 20
        tab.wait_for_function(
            "() => document.querySelector('object.n2g-graph').contentDocument"
            "?.querySelectorAll('g:not(.edges) > title').length > 0"
        )
        tips = tab.evaluate(
            "() => [...document.querySelector('object.n2g-graph').contentDocument"
            ".querySelectorAll('g:not(.edges) > text')].map(t => t.textContent)"
        )
        assert any("<script>alert(1)</script>" in t for t in tips)  # as text, in a label (hover: a tooltip)
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.locator(".n2g-pg-input").fill("in Paris")  # the playground loads patterns.js on first use
        tab.wait_for_function(
            "() => /tokens? ·/.test(document.querySelector('.n2g-pg-status').textContent)", timeout=20000
        )
        assert tab.locator(".n2g-pg-out span").count() > 0 and errors == []
        browser.close()


def test_a_missing_or_stale_pack_is_a_clear_error(tmp_path: Path) -> None:
    """The hook names what is wrong and the fix (rerun render): a pack that is missing, shorter or longer
    than the manifest, or out of order, and a manifest of another version."""
    import orjson

    site = _build(tmp_path)
    frag = tmp_path / "work" / "fragments"
    shell = site / site_pages.SHELL_URL
    shell.mkdir(parents=True)
    (shell / "index.html").write_text(
        f"<html><title>{site_pages.TITLE}</title>{site_pages.BODY_HTML}</html>", encoding="utf-8"
    )
    manifest = orjson.loads((frag / site_pages.MANIFEST).read_bytes())
    pack = frag / manifest["packs"][0]["file"]
    lines = pack.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 2
    for broken, why in (
        (lines[:-1], "it ends before"),
        (lines + lines[-1:], "more than the"),
        (lines[1:] + lines[:1], "where"),
    ):
        pack.write_bytes(b"".join(broken))
        with pytest.raises(ValueError, match=f"does not match .*{why}.*rerun `n2g-site render`"):
            site_pages.write_neuron_pages(site, frag, lambda t: "x", jobs=1)
    pack.unlink()
    with pytest.raises(ValueError, match="is missing: rerun `n2g-site render`"):
        site_pages.write_neuron_pages(site, frag, lambda t: "x", jobs=1)
    (frag / site_pages.MANIFEST).write_bytes(orjson.dumps({**manifest, "schema": "n2g-site/neuron-pages/1"}))
    with pytest.raises(ValueError, match="rerun `n2g-site render`"):
        site_pages.write_neuron_pages(site, frag, lambda t: "x", jobs=1)
