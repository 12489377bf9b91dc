"""Render + publish: token display, SVG drawing, and a whole synthetic site built with MkDocs (no model)."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from n2g_site.config import Config, UserError
from n2g_site.n2g.graph import Graph
from n2g_site.publish import derive_config, publish
from n2g_site.render import render_site
from n2g_site.render.neuron import PAGE_TRAIN_EXAMPLES
from n2g_site.render.svg import MAX_NODES, draw
from n2g_site.render.tokens import display_token
from n2g_site.resources import builtin_path
from render_fixtures import BIG, DEAD, HOSTILE, UNFITTED, big_graph, make_workdir

SVG_NS = "{http://www.w3.org/2000/svg}"


# ------------------------------------------------------------------------------------------ tokens


@pytest.mark.parametrize(
    ("token", "shown"),
    [
        ("\n", "⏎"),
        ("\t", "⇥"),
        (" ", "␣"),
        ("   ", "␣␣␣"),
        (" \n", "␣⏎"),
        ("\x07", "\\x07"),
        ("\x00", "\\x00"),
        (" Paris", " Paris"),
        ("a\nb", "a⏎b"),
        ("<script>", "<script>"),  # no HTML escaping here
        ("&amp;", "&amp;"),
        ("中文", "中文"),
        ("😀", "😀"),
        ("", "∅"),
    ],
)
def test_display_token(token: str, shown: str) -> None:
    assert display_token(token) == shown


def test_builtin_resources_exist() -> None:
    assert (builtin_path("templates") / "neuron.md.j2").is_file()
    assert builtin_path("mkdocs.yml").is_file()


# --------------------------------------------------------------------------------------------- svg


def _svg_texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    return [el.text or "" for el in root.iter(f"{SVG_NS}text")]


def test_svg_labels_are_literal_text() -> None:
    tokens = [*HOSTILE, "\\", '\\"', "a\\lb", "\\N", "&#45;", "&lt;"]
    nodes = [
        {
            "id": i,
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
    svg = draw(graph, 'Title <with> "quotes"').svg
    assert svg.startswith("<svg") and "<?xml" not in svg and "<!DOCTYPE" not in svg
    assert sorted(_svg_texts(svg)) == sorted(display_token(t) for t in tokens)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    root = ET.fromstring(svg)
    assert root.get("aria-label") == 'Title <with> "quotes"'
    assert root.find(f"{SVG_NS}title").text == 'Title <with> "quotes"'


def test_graph_cap_counts_hidden_nodes() -> None:
    # The trie is drawn unmerged, whole patterns up to the cap (tests/test_svg.py checks the paths).
    graph = Graph.from_json({"schema": "n2g-site/graph/1", "nodes": big_graph(60)})
    drawing = draw(graph)
    assert 0 < drawing.drawn <= MAX_NODES
    assert drawing.hidden == 3 + 2 * 3 * 60 - drawing.drawn
    assert sum(g.get("class") != "edges" for g in ET.fromstring(drawing.svg).iter(f"{SVG_NS}g")) == drawing.drawn


# ------------------------------------------------------------------------------------ whole site


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.hrefs.append(value)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("n2g")
    work = make_workdir(root / "work")
    cfg = Config(site_dir=root / "site", site_url="https://example.org/repo/")
    summary = render_site(cfg, work)
    # neurons, layers; home, reading, method, model, cite, data, fidelity, patterns
    assert summary.neurons == 6 and summary.pages == 6 + 2 + 8
    out = publish(cfg, work)
    assert out == (root / "site").resolve()
    return out


def _page(site: Path, rel: str) -> str:
    return (site / rel / "index.html").read_text(encoding="utf-8")


def test_site_pages_exist(site: Path) -> None:
    for rel in ("", "reading", "layers/L0", "layers/L3", "neurons/L0/N3", "neurons/L3/N17", "neurons/L0/N2"):
        assert (site / rel / "index.html").is_file(), rel
    assert (site / "assets" / "n2g.css").is_file()
    assert "N2G-FRAGMENT" not in "".join(p.read_text(encoding="utf-8") for p in site.rglob("index.html"))


def test_neuron_page(site: Path) -> None:
    html = _page(site, "neurons/L0/N3")
    assert "Layer 0 · Neuron 3" in html
    assert html.count('<svg class="n2g-graph"') == 1
    assert html.count('<div class="n2g-ex"') >= PAGE_TRAIN_EXAMPLES
    # a window's split is its id's letter (the CSS draws the badge): t1.., then h1..
    assert len(re.findall(r'<div class="n2g-ex" id=t\d', html)) >= PAGE_TRAIN_EXAMPLES
    assert len(re.findall(r'<div class="n2g-ex" id=h\d', html)) >= 1
    assert re.search(r'<i class="a\d+ pv"> Paris</i>', html)  # lean markup: the values in the window's data-v
    windows = re.findall(r'<div class="n2g-tokens" data-v="([^"]*)">(.*?)</div>', html)
    assert windows and all(len(v.split()) == body.count("<i") for v, body in windows)  # one value per <i> token
    assert all(math.isfinite(float(x)) for v, _ in windows for x in v.split())
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html
    assert "F1 0.69" in html
    assert "London &amp; &lt;Co&gt;" in html or "Paris" in html  # doc titles shown, escaped
    assert 'href="../N2/"' in html and 'href="../../../layers/L0/"' in html


def test_neuron_pages_have_the_lean_frame(site: Path) -> None:
    """Neuron pages: no site navigation, table of contents, palette toggle or footer (templates/overrides/
    neuron.html); the header and the pager stay, and what only Material's scripts use (its search dialog, config,
    palette script) is in the one shared neurons/frame.js, loaded in the header. Other pages keep the full frame."""
    neuron, layer = _page(site, "neurons/L0/N3"), _page(site, "layers/L0")
    script = (site / "neurons" / "frame.js").read_text(encoding="utf-8")
    frame_js = "".join(json.loads(script[script.index("[") : script.index(";document.write")]))
    for part in (
        'class="md-nav md-nav--primary"',
        'data-md-component="palette"',
        "<footer",
        '<label class="md-header__button md-icon" for="__drawer">',
    ):
        assert part not in neuron and part not in frame_js and part in layer, part
    for part in ('data-md-component="search"', 'data-md-component="search-query"', '<script id="__config"'):
        assert part not in neuron and part in frame_js and part in layer, part
    assert '__md_get("__palette")' in frame_js
    for part in ('<script src="../../frame.js">', "assets/n2g.js", '<nav class="n2g-pager">', "md-header__topic"):
        assert part in neuron, part
    body = neuron[neuron.index('<div class="n2g-neuron">') : neuron.rindex("</article>")]
    frame = len(neuron.encode()) - len(body.encode())
    assert frame < 2_500, frame  # Material's full frame was ~12.7 KB, the first lean one ~7 KB


def test_links_are_relative(site: Path) -> None:
    for rel in ("", "layers/L0", "neurons/L0/N3", "reading"):
        parser = _Text()
        parser.feed(_page(site, rel))
        local = [h for h in parser.hrefs if not h.startswith(("http://", "https://", "#", "data:", "mailto:"))]
        assert local and not [h for h in local if h.startswith("/")], rel


def test_big_graph_says_how_many_are_hidden(site: Path) -> None:
    html = _page(site, "neurons/L3/N17")
    drawn = draw(Graph.from_json({"schema": "n2g-site/graph/1", "nodes": big_graph()})).drawn
    assert f"{drawn} nodes drawn" in html and "more hidden" in html


def test_dead_and_unfitted_neurons(site: Path) -> None:
    dead = _page(site, f"neurons/L{DEAD[0]}/N{DEAD[1]}")
    assert "never fired in the mined text" in dead and '<svg class="n2g-graph"' not in dead
    unfitted = _page(site, f"neurons/L{UNFITTED[0]}/N{UNFITTED[1]}")
    assert "has not been fitted" in unfitted and unfitted.count('<div class="n2g-ex"') >= 5
    big = _page(site, f"neurons/L{BIG[0]}/N{BIG[1]}")  # capped at MAX_NODES: small enough to inline
    assert big.count('<svg class="n2g-graph"') == 1  # (a graph.svg file: tests/test_site_pages.py)
    assert not (site / f"neurons/L{BIG[0]}/N{BIG[1]}/graph.svg").exists()


def test_layer_and_home_pages(site: Path) -> None:
    layer = _page(site, "layers/L0")
    for n in (0, 1, 2, 3):
        assert f'href="../../neurons/L0/N{n}/"' in layer
    assert "<em>dead</em>" in layer and '<code class="n2g-tok"> Paris</code>' in layer
    home = _page(site, "")
    assert "SmolLM2-135M-Instruct (dequantised Q4_1)" in home
    assert "CC BY-SA 4.0" in home and "Wikipedia" in home
    assert 'href="layers/L0/"' in home and 'href="reading/"' in home


def test_neuron_pages_not_in_search_or_nav(site: Path) -> None:
    index = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))
    locations = [doc["location"] for doc in index["docs"]]
    assert any(loc.startswith("layers/") for loc in locations)
    assert not [loc for loc in locations if loc.startswith("neurons/")]
    nav = re.search(r'<nav class="md-nav md-nav--primary".*?<div class="md-content"', _page(site, ""), re.S)
    assert nav and "layers/L0/" in nav.group(0) and "neurons/" not in nav.group(0)
    assert 'class="md-nav md-nav--primary"' not in _page(site, "neurons/L0/N3")  # the lean frame: no nav at all


def test_derived_config(tmp_path: Path) -> None:
    work = make_workdir(tmp_path / "work")
    cfg = Config(site_dir=tmp_path / "site")
    render_site(cfg, work)
    conf = derive_config(cfg, work)
    assert Path(conf["docs_dir"]).is_absolute() and Path(conf["site_dir"]).is_absolute()
    assert "site_url" not in conf
    assert "search" in conf["plugins"] and conf["not_in_nav"]
    assert conf["hooks"][0].endswith("publish/hooks.py")
    assert conf["extra"]["n2g_fragments"] == str(work.fragments.resolve())
    assert "neurons" not in json.dumps(conf["nav"])
    assert conf["theme"]["font"] is False


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("layer.md.j2", "# ok\n\n{% for x in %}\n", r"layer\.md\.j2.*line 3"),  # syntax error: file and line
        ("index.md.j2", "# {{ page.no_such_field }}\n", r"index\.md\.j2"),  # render error: file
    ],
)
def test_broken_user_template_is_a_user_error(tmp_path: Path, name: str, text: str, match: str) -> None:
    work = make_workdir(tmp_path / "work")
    mine = tmp_path / "tpl"
    mine.mkdir()
    (mine / name).write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=match):
        render_site(Config(templates=mine), work)
    assert not work.docs.exists()  # nothing half-written


def test_user_template_overrides_builtin(tmp_path: Path) -> None:
    work = make_workdir(tmp_path / "work")
    mine = tmp_path / "tpl"
    (mine / "assets").mkdir(parents=True)
    (mine / "index.md.j2").write_text("# Custom {{ page.neurons }} {{ '<b>' }}\n", encoding="utf-8")
    (mine / "assets" / "extra.css").write_text("body{}", encoding="utf-8")
    render_site(replace(Config(), templates=mine), work)
    assert (work.docs / "index.md").read_text(encoding="utf-8") == "# Custom 6 &lt;b&gt;\n"
    assert (work.docs / "assets" / "extra.css").is_file() and (work.docs / "assets" / "n2g.css").is_file()


def test_missing_work_dir_is_user_error(tmp_path: Path) -> None:
    from n2g_site.store import WorkDir

    with pytest.raises(UserError, match="n2g-site mine"):
        render_site(Config(), WorkDir(tmp_path / "nothing"))


@pytest.mark.parametrize(
    "stage, damage",
    [
        ("fit", lambda work: work.fitted(0, 3)),
        ("evaluate", lambda work: work.evaluated(0, 3)),
        ("evaluate", lambda work: work.evaluation_summary),
        ("relate", lambda work: work.similar),
        ("relate", lambda work: work.logit_effects(0)),
    ],
)
def test_a_damaged_stage_file_stops_render_naming_it(tmp_path: Path, stage, damage) -> None:
    """One policy for every stage file render reads (store.read_stage_file): missing is 'not run', damaged
    (not JSON, or not an object) is a UserError naming the file and the command that writes it again."""
    work = make_workdir(tmp_path / "work")
    path = damage(work)
    path.parent.mkdir(parents=True, exist_ok=True)
    for text in ('{"truncated": ', "[1, 2]"):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(UserError) as info:
            render_site(Config(site_dir=tmp_path / "site"), work)
        assert str(path) in str(info.value) and f"n2g-site {stage}" in str(info.value)


def test_caption_says_how_many_patterns_a_capped_drawing_shows(tmp_path: Path) -> None:
    """svg.py may draw only the strongest patterns of a huge graph and say how many (Drawing.drawn_patterns);
    the caption then reads "showing the N strongest of M patterns"; when it drew them all it says so."""
    from n2g_site.render.inputs import load_shared
    from n2g_site.render.jinja_env import render
    from n2g_site.render.neuron import NeuronData
    from n2g_site.render.svg import Drawing
    from n2g_site.store import MinedLayer

    work = make_workdir(tmp_path / "work")
    sh = load_shared(Config(site_dir=tmp_path / "site"), work, tmp_path / "d", tmp_path / "f")
    mined = MinedLayer.load(work.mined(0))
    data = NeuronData.gather(work, mined, 0, 3, 0.1)
    total = sum(1 for node in data.graph.nodes if node.end is not None)
    for drawn, expected in ((1, f"showing the 1 strongest of {total} patterns"), (total, f"{total} patterns, up to")):
        drawing = Drawing(
            svg='<svg class="n2g-graph"></svg>',
            nodes=len(data.graph.nodes),
            drawn=3,
            hidden=0,
            patterns=total,
            drawn_patterns=drawn,
        )
        page = data.page(sh, drawing=drawing, prev=None, next=None, hook="h", line=1)
        body = render(sh.env, sh.tpl["neuron_body.html.j2"], page=page, site=sh.site)
        assert expected in body, body[body.index("<figcaption>") : body.index("</figcaption>")]
