"""One layer: every neuron gathered once (:class:`~.neuron.NeuronData`), its graphs drawn (svg.draw), its neuron
pages packed for publish/pages.py, its export file, and its layer page."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import FIRE_THRESHOLD
from ..publish import pages as site_pages
from ..store import MinedLayer
from . import export
from .contexts import LayerPage, LayerSummary, Link, NeuronPage
from .inputs import Shared
from .jinja_env import render
from .neuron import NeuronData
from .search_index import example_entries, graph_entries, negative_entries, script
from .svg import Drawing, draw, standalone_svg, svg_object
from .writer import PLACEHOLDER, Writer, layer_md_path

# A neuron page is the lean frame (~7 KB, templates/overrides/neuron.html) + its body. A body longer than this
# keeps its graph in graph.svg next to the page (an <object>, tooltips kept) instead of inline, so no page
# passes 40 KB.
PAGE_BODY_BUDGET = 32_000
GRAPH_FILE = "graph.svg"
PATTERNS_FILE = "patterns.js"  # a huge graph's playground patterns (n2gDeliver data script), next to its page


@dataclass
class LayerResult:
    summary: LayerSummary
    entries: list[tuple[int, int, list]]  # (layer, neuron, search_index graph + example entries) per neuron
    fit_options: dict[str, Any]
    tokens_mined: int
    pages: int
    neurons: int
    export: dict[str, Any] | None  # the layer's export/index.json entry (export.LayerExport.write); None: no neurons
    pack: dict[str, Any]  # the layer's neuron-page pack (site_pages.PackWriter.close)
    shell: str | None  # neuron.md.j2 rendered as the shell page (publish/pages.py); None without neurons
    # (layer, neuron, summary, groups, F1, badge state) per fitted neuron
    summaries: list[tuple[int, int, str, int, float | None, str | None]]
    neuron_ids: list[int]  # the layer's neurons in this build


def _neuron_body(sh: Shared, page: NeuronPage, url: str) -> tuple[str, dict[str, str]]:
    """A neuron page's body and the files next to it. A body over :data:`PAGE_BODY_BUDGET` moves its graph into
    graph.svg (an <object>, tooltips kept), then, if still over, its playground patterns into patterns.js (a
    data script the playground loads on first use), so no page passes ~40 KB."""
    body = render(sh.env, sh.tpl["neuron_body.html.j2"], page=page, site=sh.site)
    files: dict[str, str] = {}
    svg = str(page.graph.svg) if page.graph is not None and page.graph.svg else None
    if svg and len(body.encode("utf-8")) > PAGE_BODY_BUDGET and svg in body:
        # A large graph goes into graph.svg next to the page (written there by publish/pages.py).
        files[GRAPH_FILE] = standalone_svg(svg)
        body = body.replace(svg, svg_object(svg, GRAPH_FILE), 1)
    if page.playground and len(body.encode("utf-8")) > PAGE_BODY_BUDGET:
        name = url + PATTERNS_FILE[: -len(".js")]  # n2gLoad names a data script relative to the site root
        files[PATTERNS_FILE] = script(name, export.dumps(page.playground))
        lean = render(
            sh.env,
            sh.tpl["neuron_body.html.j2"],
            page=dataclasses.replace(page, playground={"src": name}),
            site=sh.site,
        )
        body = lean.replace(svg, svg_object(svg, GRAPH_FILE), 1) if GRAPH_FILE in files and svg else lean
    return body, files


def layer_neurons(sh: Shared, layer: int, mined: MinedLayer | np.ndarray) -> list[int]:
    """The selected neurons of the layer that were mined, in order (``mined``: the mined layer, or only its
    ``neurons`` array)."""
    ids = mined.neurons if isinstance(mined, MinedLayer) else mined
    mined_set = {int(n) for n in ids}
    return [n for n in sh.selected.get(layer) or [int(n) for n in ids] if n in mined_set]


def neighbour_ends(sh: Shared, li: int) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """(layer, neuron) of the last neuron of the nearest earlier layer with neurons in this build, and of the
    first neuron of the nearest later one: where a layer's first page's "previous" and last page's "next"
    lead. Only the mined files' ``neurons`` arrays are read."""

    def ends(lj: int) -> list[int]:
        path = sh.work.mined(sh.layers[lj])
        if not path.is_file():
            return []
        with np.load(path) as z:
            return layer_neurons(sh, sh.layers[lj], z["neurons"])

    before = next(((sh.layers[lj], ns[-1]) for lj in range(li - 1, -1, -1) if (ns := ends(lj))), None)
    after = next(((sh.layers[lj], ns[0]) for lj in range(li + 1, len(sh.layers)) if (ns := ends(lj))), None)
    return before, after


def render_layer(sh: Shared, li: int) -> LayerResult:
    """Render one layer: gather its neurons, draw their graphs, write their pages, data and the layer page."""
    layer = sh.layers[li]
    mined = MinedLayer.load(sh.work.require(sh.work.mined(layer), "mine"))
    sh.related.load_layer(layer)
    firing = mined.stats.firing_share(FIRE_THRESHOLD)
    neurons = [NeuronData.gather(sh.work, mined, layer, n, float(firing[n])) for n in layer_neurons(sh, layer, mined)]

    drawings: dict[Any, Drawing] = {
        d.neuron: draw(d.graph, f"N2G graph of layer {layer}, neuron {d.neuron}")
        for d in neurons
        if d.graph is not None
    }
    for d in neurons:  # negative graphs (fit --polarity both), keyed ("negative", neuron)
        if d.negative is not None and d.negative.graph is not None:
            title = f"N2G graph of the negative side of layer {layer}, neuron {d.neuron}"
            drawings[("negative", d.neuron)] = draw(d.negative.graph, title)

    hook = sh.hook_pattern.replace("{layer}", str(layer))
    out = Writer(sh.staged_docs, sh.staged_frag)
    exported = export.LayerExport(layer)
    pack = site_pages.PackWriter(sh.staged_frag, f"neurons/L{layer}.jsonl")
    shell: str | None = None
    rows = []
    before, after = neighbour_ends(sh, li) if neurons else (None, None)
    for i, data in enumerate(neurons):
        page = data.page(
            sh,
            drawing=drawings.get(data.neuron),
            hook=hook,
            line=i + 1,
            prev=(layer, neurons[i - 1].neuron) if i > 0 else before,
            next=(layer, neurons[i + 1].neuron) if i + 1 < len(neurons) else after,
            negative_drawing=drawings.get(("negative", data.neuron)),
        )
        exported.add(export.dumps(data.record(sh)) + "\n")
        if shell is None:  # the one neuron page MkDocs builds (publish/pages.py): this page's frame, a marker title
            shell = render(
                sh.env,
                sh.tpl["neuron.md.j2"],
                page=dataclasses.replace(page, title=site_pages.TITLE),
                site=sh.site,
                placeholder=site_pages.BODY,
            )
        url = f"neurons/L{layer}/N{data.neuron}/"
        body, files = _neuron_body(sh, page, url)
        pack.add(url, page.title, body, files)
        rows.append(data.row(sh, page))

    f1s = [d.f1 for d in neurons if d.f1 is not None]
    mean_f1 = float(np.mean(f1s)) if f1s else None
    layers = sh.layers
    lpage = LayerPage(
        layer=layer,
        title=f"Layer {layer}",
        hook=hook,
        d_mlp=int(mined.stats.max.shape[0]),
        rows=rows,
        fitted=sum(r.status == "fitted" for r in rows),
        dead=sum(r.status == "dead" for r in rows),
        unfitted=sum(r.status == "unfitted" for r in rows),
        mean_f1=mean_f1,
        prev=Link(f"Layer {layers[li - 1]}", f"../L{layers[li - 1]}/") if li > 0 else None,
        next=Link(f"Layer {layers[li + 1]}", f"../L{layers[li + 1]}/") if li + 1 < len(layers) else None,
    )
    md_path = layer_md_path(layer)
    out.page(md_path, render(sh.env, sh.tpl["layer.md.j2"], page=lpage, site=sh.site, placeholder=PLACEHOLDER))
    out.fragment(md_path, render(sh.env, sh.tpl["layer_body.html.j2"], page=lpage, site=sh.site))
    fit_options = next((dict(d.fit["config"]) for d in neurons if isinstance(d.fit.get("config"), dict)), {})
    return LayerResult(
        summary=LayerSummary(layer, md_path, len(rows), lpage.fitted, lpage.dead, mean_f1),
        entries=[(layer, d.neuron, e) for d in neurons if (e := _search_entries(sh, d))],
        fit_options=fit_options,
        tokens_mined=int(mined.stats.tokens),
        pages=out.pages + len(neurons),
        neurons=len(neurons),
        export=exported.write(sh.staged_docs) if exported.neurons else None,
        pack=pack.close(),
        shell=shell,
        summaries=[
            (
                layer,
                d.neuron,
                d.shape.summary if d.shape else "",
                d.shape.groups if d.shape else 0,
                d.f1,
                v.state if (v := d.verdict) else None,
            )
            for d in neurons
            if d.status == "fitted"
        ],
        neuron_ids=[d.neuron for d in neurons],
    )


def _search_entries(sh: Shared, data: NeuronData) -> list:
    """A neuron's token-search entries: its graph's, then the tokens its mined windows fire on that the graph
    does not name (search_index.example_entries), then its negative graph's (--polarity both)."""
    graph = graph_entries(data.graph) if data.graph is not None else []
    windows = [(sw.window.tokens, sw.window.acts) for sw in data.windows]
    negative = data.negative.graph if data.negative is not None else None
    return (
        graph
        + example_entries(windows, data.a_max, sh.vocab, graph)
        + (negative_entries(negative) if negative is not None else [])
    )
