"""Render + publish with the relate stage's outputs: similar neurons, logit effects, token search, layer tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from n2g_site.config import Config
from n2g_site.publish import publish
from n2g_site.relate import relate
from n2g_site.render import render_site
from n2g_site.render.search_index import read_script, shard_name, shard_of
from n2g_site.store import write_json
from render_fixtures import ID, LAYERS, make_workdir


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("related")
    work = make_workdir(root / "work")
    script, quote, amp = ID["<script>alert(1)</script>"], ID['"'], ID["&amp;"]
    for layer, neurons in LAYERS.items():
        write_json(
            work.logit_effects(layer),
            {
                "norm": "final RMSNorm scale folded in",
                "neurons": {str(n): {"up": [[script, 0.91], [amp, 0.5]], "down": [[quote, -0.7]]} for n in neurons},
            },
        )
    relate(None, lambda: pytest.fail("no model needed"), work)
    cfg = Config(site_dir=root / "site", site_url="https://example.org/repo/")
    render_site(cfg, work)
    return publish(cfg, work)


def _page(site: Path, rel: str) -> str:
    return (site / rel / "index.html").read_text(encoding="utf-8")


def test_similar_neurons_are_listed_with_their_similarity(site: Path) -> None:
    html = _page(site, "neurons/L0/N0")
    block = html[html.index('id="similar"') : html.index('id="logits"')]
    assert '<a href="../N3/">' not in block  # links go through the layer folder, from any layer
    assert re.search(r'<a href="\.\./\.\./L0/N3/">L0 N3</a> · 1\b', block)  # the same graph: cosine 1
    assert '<a href="../../L3/N3/">L3 N3</a>' in block
    # each neighbour named with its strongest activating token, as escaped text
    assert "<code> Paris</code>" in block and "<script>" not in block


def test_logit_effects_are_escaped_text(site: Path) -> None:
    html = _page(site, "neurons/L3/N3")
    block = html[html.index('id="logits"') : html.index("</div>", html.index('id="logits"'))]
    assert "<strong>Promotes</strong> <code>&lt;script&gt;alert(1)&lt;/script&gt;</code> 0.91" in block
    assert "<code>&amp;amp;</code>" in block
    assert "<code>&#34;</code>" in block or "<code>&quot;</code>" in block
    assert "final RMSNorm scale folded in" in block
    assert "each token's Δ logit after it" in block  # the values are named, and each follows its own token
    promotes, suppresses = block.index("<strong>Promotes</strong>"), block.index("<strong>Suppresses</strong>")
    assert promotes < block.index("</p>", promotes) < suppresses  # one line a side
    assert "<script>alert" not in html


def test_token_search_index_is_published(site: Path) -> None:
    folder = site / "token-search"
    meta = read_script((folder / "tokens.js").read_text())
    assert meta["neurons"] == 5  # 4 fitted graphs + 1 unfitted neuron found by the tokens of its mined examples
    shard = read_script((folder / shard_name(shard_of("paris", meta["shards"]))).read_text(encoding="utf-8"))
    assert {(r[0], r[1]) for r in shard["paris"]["a"]} == {(0, 0), (0, 3), (3, 3), (3, 17)}
    assert (site / "assets" / "n2g.js").is_file()
    assert re.search(r'<script src="(\.\./)*assets/n2g\.js"', _page(site, "neurons/L0/N0"))
    assert re.search(r'<script src="assets/n2g\.js"', _page(site, ""))


def test_layer_table_is_sortable(site: Path) -> None:
    html = _page(site, "layers/L0")
    assert '<table class="n2g-sortable"' in html
    assert re.search(r'<td data-v="\d+"><a href="\.\./\.\./neurons/L0/N0/">N0</a>', html)
    assert '<td data-v="0.69">0.69</td>' in html  # F1
    assert '<td data-v="">–</td>' in html  # missing F1 (unfitted) sorts last


def test_parallel_render_writes_the_same_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import n2g_site.render as render

    monkeypatch.setattr(render, "PARALLEL_MIN_NEURONS", 0)
    trees = []
    for jobs in (1, 2):
        work = make_workdir(tmp_path / f"w{jobs}")
        render_site(Config(site_dir=tmp_path / "s"), work, jobs=jobs)
        trees.append(
            {
                str(p.relative_to(work.root)): p.read_bytes()
                for folder in (work.docs, work.fragments)
                for p in sorted(folder.rglob("*"))
                if p.is_file()
            }
        )
    assert trees[0].keys() == trees[1].keys() and len(trees[0]) > 10
    assert [k for k in trees[0] if trees[0][k] != trees[1][k]] == []


def test_labels_and_tooltips_are_literal_text() -> None:
    """svg.py writes the SVG itself: every label and tooltip, of activating and context nodes, must reach it
    as the exact text, whatever the token holds (backslash escapes, entities, quotes, markup)."""
    import xml.etree.ElementTree as ET

    from n2g_site.n2g.graph import Graph
    from n2g_site.render.svg import draw
    from n2g_site.render.tokens import display_token
    from render_fixtures import HOSTILE

    tokens = [
        *HOSTILE,
        "\\",
        '\\"',
        "a\\lb",
        "\\N",
        "\\G",
        "\\L",
        "&#45;",
        "&lt;",
        "<b>x</b>",
        "<x>",
        "a b",
        "1.5",
        "]",
        ";",
        "{",
    ]
    nodes = []
    for i, t in enumerate(tokens):  # each token as an activating token, and as the context of "x"
        nodes.append(
            {
                "id": 2 * i,
                "parent": -1,
                "depth": 0,
                "key": f"x{i}",
                "token": "x",
                "importance": 1.0,
                "activation": 0.5,
                "end": None,
                "count": 1,
            }
        )
        nodes.append(
            {
                "id": 2 * i + 1,
                "parent": 2 * i,
                "depth": 1,
                "key": t,
                "token": t,
                "importance": 0.8,
                "activation": 0.0,
                "end": 0.5,
                "count": 1,
            }
        )
    nodes += [
        {
            "id": 2 * len(tokens) + i,
            "parent": -1,
            "depth": 0,
            "key": t,
            "token": t,
            "importance": 1.0,
            "activation": 0.5,
            "end": 0.5,
            "count": 1,
        }
        for i, t in enumerate(tokens)
    ]
    graph = Graph.from_json({"schema": "n2g-site/graph/1", "nodes": nodes})
    svg = draw(graph, max_nodes=1000, max_rows=1000).svg
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    titles = {el.text for el in root.iter(f"{ns}title")}
    texts = ["".join(el.itertext()).replace("\xa0", " ") for el in root.iter(f"{ns}text")]
    assert "activation 0.50, end 0.50" in titles
    assert "importance 0.80, end 0.50" in titles
    for t in tokens:
        shown = display_token(t)
        assert texts.count(shown) == 2, t  # drawn as an activating and as a context node


def test_a_rerender_writes_the_same_pages_and_no_drawing_cache(tmp_path) -> None:
    """Graphs are drawn in process on every render (svg.draw; the Graphviz drawings were cached in
    cache/svg_LL.json until issue 15): a second render of an unchanged work dir writes the same pages, a
    changed graph's page changes, no drawing cache is written and an old one is removed."""
    from n2g_site.config import Config
    from n2g_site.publish.pages import rendered_pages
    from n2g_site.render import render_site
    from n2g_site.store import read_json, write_json
    from render_fixtures import make_workdir

    work = make_workdir(tmp_path / "work")
    cfg = Config(site_dir=tmp_path / "site")
    (work.root / "cache").mkdir()
    (work.root / "cache" / "svg_00.json").write_text("{}", encoding="utf-8")  # an older render's drawings
    fits = [
        p
        for p in sorted((work.root / "fit").rglob("N*.json"))
        if read_json(p).get("status") == "fitted" and read_json(p)["graph"]["nodes"]
    ]
    render_site(cfg, work, jobs=1)
    first = {url: (body, files) for url, body, files in rendered_pages(work.fragments)}
    render_site(cfg, work, jobs=1)
    assert {url: (body, files) for url, body, files in rendered_pages(work.fragments)} == first
    assert not (work.root / "cache").exists()  # the old cache was removed, no new one written
    fit = read_json(fits[0])
    fit["graph"]["nodes"][0]["activation"] = 0.123  # one graph changes
    write_json(fits[0], fit)
    render_site(cfg, work, jobs=1)
    changed = [url for url, body, files in rendered_pages(work.fragments) if first.get(url) != (body, files)]
    assert changed == [f"neurons/L{int(fits[0].parent.name[1:])}/N{int(fits[0].stem[1:])}/"], changed
