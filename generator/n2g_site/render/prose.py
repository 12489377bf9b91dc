"""The site's own pages, around the neuron and layer pages: home, how to read a graph (with a worked example
from this build), method, model and corpus, citation, data, pattern search and fidelity."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from ..config import Config
from ..n2g.graph import Graph, Node
from . import export, guide
from .contexts import HomePage, LayerSummary, PatternExample, PatternPage
from .fidelity import fidelity_page
from .inputs import Shared
from .jinja_env import render
from .search_index import MAX_CONTEXT_KEYS, MAX_PER_KEY, SearchIndex
from .svg import draw
from .tokens import display_token
from .writer import PLACEHOLDER, Writer


def _page(sh: Shared, out: Writer, md_path: str, page: Any, body: str | None) -> None:
    """A Markdown page from ``md_path + '.j2'`` and, when ``body`` names a template, its fragment."""
    if body is None:
        out.page(md_path, render(sh.env, sh.tpl[md_path + ".j2"], page=page, site=sh.site))
        return
    out.page(md_path, render(sh.env, sh.tpl[md_path + ".j2"], page=page, site=sh.site, placeholder=PLACEHOLDER))
    out.fragment(md_path, render(sh.env, sh.tpl[body], page=page, site=sh.site))


def _reading_svg() -> Markup:
    """A toy graph for the reading page: ' Paris' after ' in' (one token apart) or right after ' to'."""
    nodes = [
        Node(0, -1, 0, "paris", " Paris", 1.0, 0.95, None, 3),
        Node(1, 0, 1, "in", " in", 0.92, 0.05, 0.95, 2),
        Node(2, 0, 1, None, "", 0.2, 0.0, None, 1),
        Node(3, 2, 2, "to", " to", 0.81, 0.0, 0.7, 1),
        Node(4, -1, 0, "france", " France", 1.0, 0.62, None, 1),
        Node(5, 4, 1, "in", " in", 0.88, 0.04, 0.62, 1),
    ]
    return Markup(draw(Graph(nodes), "Example N2G graph").svg)


def prose_pages(
    cfg: Config,
    sh: Shared,
    out: Writer,
    fit_options: dict[str, Any],
    tokens_mined: int | None,
    export_index: dict[str, Any],
) -> None:
    """How to read a graph (with a worked example from this build), method, model and corpus, citation, data."""
    build = sh.build
    picked = guide.pick_example(sh.work, sh.layers, sh.selected)
    example = None
    if picked is not None:
        layer, neuron, f1, source, graph, candidates = picked
        svg = draw(graph, f"N2G graph of layer {layer}, neuron {neuron}").svg
        example = guide.worked_example(layer, neuron, f1, source, graph, candidates, svg)
    reading = guide.ReadingPage(
        example=example,
        toy_svg=_reading_svg() if example is None else None,
        options=fit_options or dict(build["options"]["fit"]),
    )
    _page(sh, out, "reading.md", reading, "reading_body.html.j2")
    mask = (sh.manifest.get("model_info") or {}).get("mask")
    pages = {
        "method.md": guide.method_page(build, display_token(mask) if isinstance(mask, str) else None),
        "model.md": guide.model_page(build, sh.manifest, tokens_mined),
        "cite.md": guide.cite_page(build, cfg.site_url),
        "data.md": guide.data_page(build, export_index),
    }
    for md_path, page in pages.items():
        _page(sh, out, md_path, page, None)


def pattern_search_page(sh: Shared, out: Writer, search: SearchIndex) -> None:
    """Pattern search over the token index (the browser does the searching)."""
    page = PatternPage(
        examples=[PatternExample(f, b) for f, b in search.examples()],
        max_per_key=MAX_PER_KEY,
        max_context=MAX_CONTEXT_KEYS,
    )
    _page(sh, out, "patterns.md", page, "patterns_body.html.j2")


def fidelity_and_home(
    sh: Shared,
    out: Writer,
    layers: list[LayerSummary],
    neurons: int,
    fit_options: dict[str, Any],
    tokens_mined: int | None,
) -> None:
    """The fidelity page (per-layer charts and table of the evaluate stage) and the home page with its summary."""
    fidelity = fidelity_page(sh.env, sh.work)
    _page(sh, out, "fidelity.md", fidelity, "fidelity_body.html.j2")
    manifest, site = sh.manifest, sh.site
    model_info = manifest.get("model_info") or {}
    corpus_info = manifest.get("corpus_info") or {}
    licence = corpus_info.get("licence")
    credit = None
    if sh.corpus.wiki:
        credit = f"Example text from Wikipedia, licensed {licence or 'CC BY-SA 4.0'}."
    elif licence:
        credit = f"Example text from {site.corpus}, licensed {licence}."
    home = HomePage(
        model_key=str(manifest.get("model") or "?"),
        model_name=site.model,
        architecture=model_info.get("architecture"),
        n_layers=model_info.get("n_layers"),
        d_mlp=model_info.get("d_mlp"),
        hook=model_info.get("hook"),
        corpus_key=str(manifest.get("corpus") or "?"),
        corpus_name=site.corpus,
        documents=corpus_info.get("documents"),
        corpus_url=corpus_info.get("url"),
        licence=licence,
        credit=credit,
        tokens_mined=tokens_mined,
        version=site.version,
        build_date=site.build_date,
        mine_options=dict(manifest.get("mine") or {}),
        fit_options=fit_options,
        layers=layers,
        neurons=neurons,
        reading_md="reading.md",
        export_index=export.index_path(),
        build=sh.build,
    )
    out.page("index.md", render(sh.env, sh.tpl["index.md.j2"], page=home, site=site, placeholder=PLACEHOLDER))
    out.fragment("index.md", render(sh.env, sh.tpl["home_fidelity.html.j2"], page=fidelity, site=site))
