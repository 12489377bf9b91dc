"""One neuron, gathered once: :meth:`NeuronData.gather` reads its fit and evaluate files and its shown windows
from the mined layer (each window walked once), then yields its page context (:meth:`NeuronData.page`), its
export record (:meth:`NeuronData.record`, schemas/neuron.schema.json) and its layer-table row
(:meth:`NeuronData.row`) from the same data.

The examples' highlighted HTML is built here, not by a template loop (~500 tokens a page: Jinja took ~2 ms
a page). It is the bulk of a neuron page, written once per neuron of a whole-model site, so it is lean:
a token is ``<i class=aN>`` (``i`` is reset to upright text by n2g.css), ``<i class=bN>`` for a negative
activation (a diverging scale: N is its share of the neuron's minimum, shaded blue), ``<i>`` when it is not
highlighted but not quiet either, plain text when it is quiet; the values of a window's ``<i>`` tokens are one
``data-v`` attribute of the window (space-separated, in order), which assets/n2g.js shows as a token's
title on hover or tap. Without JavaScript the colour of a token still reads its level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from markupsafe import Markup, escape

from ..config import FIRE_THRESHOLD, UserError
from ..n2g.graph import Graph, Node
from ..store import BAND_EDGES, HIST_EDGES, MinedLayer, Window, WorkDir, band_of
from . import export, playground
from .contexts import (
    BandView,
    CalibrationView,
    ExampleView,
    GraphView,
    HeldoutView,
    HistBar,
    LayerRow,
    Link,
    NegativeView,
    NeuronPage,
)
from .fidelity import neuron_fidelity
from .inputs import Shared
from .jinja_env import num
from .misses import fire_threshold, misses_view
from .summary import Shape, describe
from .svg import Drawing
from .tokens import display_token, vocab_text
from .verdict import Verdict
from .verdict import verdict as neuron_verdict

MAX_TRAIN_EXAMPLES = 10  # training windows in a neuron's export record (the fit's 10)
MAX_HELDOUT_EXAMPLES = 5  # held-out windows in it
# What the page shows of them, and of its neighbour and logit lists: the strongest, all of them in the layer's
# data. Highlighted examples are most of a neuron page, and a whole model's site pays for every byte 46,080 times.
PAGE_TRAIN_EXAMPLES = 3  # the band list below them shows the rest of the range
PAGE_HELDOUT_EXAMPLES = 2
PAGE_BOTTOM_EXAMPLES = 2  # bottom (most negative) training windows shown, for a neuron with a strong negative side
PAGE_WEAK_BOTTOM_EXAMPLES = 1  # ... and for one that never goes below -FIRE_THRESHOLD x its max, unfitted there
PAGE_NEIGHBOURS = 4  # similar neurons per list
PAGE_LOGITS = 4  # promoted and suppressed tokens each
# Context kept around a window's peak token: in the export record (windows are mined wider), and the part of it
# the page highlights (each highlighted token is ~25 bytes of HTML, paid once per window per neuron page).
DATA_BEFORE = 24  # tokens before the pivot in the record
DATA_AFTER = 8  # tokens after it
SHOW_BEFORE = 12  # tokens before the pivot on the page
SHOW_AFTER = 4  # tokens after it
BAND_BEFORE = 4  # ... of a band window on the page: one per band, narrower (issue 15's size budget)
BAND_AFTER = 1
PAGE_BANDS = 3  # the bands a page shows (the lowest three: its top examples stand for the last, 80%+)
TOP_TOKENS = 5  # activating tokens listed per neuron in a layer table
# Similar neurons below this cosine are noise, not kinship (two unrelated graphs or activation profiles of a
# sparse neuron share a few common tokens by chance: the demo listed neighbours at 0.005): left out, counted.
SIMILAR_FLOOR = 0.1


@dataclass
class ShownWindow:
    """One window of a neuron: ``window.tokens[lo:hi]`` in its export record, the part :attr:`shown` of it on its
    page."""

    split: str  # "train", "heldout" or "bottom" (a bottom training window: the negative side's)
    rank: int
    window: Window
    lo: int
    hi: int
    fitted: bool  # a training window the graph was fitted on
    before: int = SHOW_BEFORE  # tokens the page shows before the pivot, and after it
    after: int = SHOW_AFTER

    @property
    def shown(self) -> tuple[int, int]:
        """The tokens the page highlights, ``window.tokens[lo:hi]`` (within the record's slice)."""
        pivot = self.window.pivot
        return max(self.lo, pivot - self.before), min(self.hi, pivot + self.after + 1)


def shown_windows(mined: MinedLayer, row: int, fitted: set[tuple[int, int]]) -> list[ShownWindow]:
    """The windows a page shows, training first, each read from the mined layer once."""
    out = []
    for split, examples, limit in (
        ("train", mined.train, MAX_TRAIN_EXAMPLES),
        ("heldout", mined.heldout, MAX_HELDOUT_EXAMPLES),
    ):
        for rank, w in enumerate(examples.windows(row, limit)):
            lo, hi = max(0, w.pivot - DATA_BEFORE), min(len(w.tokens), w.pivot + DATA_AFTER + 1)
            out.append(ShownWindow(split, rank, w, lo, hi, split == "train" and (w.doc, w.start) in fitted))
    return out


def example_records(sh: Shared, windows: list[ShownWindow], scale: float) -> list[dict[str, Any]]:
    """The export record's form of shown windows, activations scaled by ``scale`` (A_max, or A_min for the
    negative side: export.scaled)."""
    return [
        export.example_record(
            sw.window,
            split=sw.split,
            rank=sw.rank,
            a_max=scale,
            lo=sw.lo,
            hi=sw.hi,
            n_vocab=len(sh.vocab),
            doc_title=sh.corpus.title(sw.window.doc),
            doc_url=sh.corpus.url(sw.window.doc),
            fitted=sw.fitted,
        )
        for sw in windows
    ]


def bottom_limit(stats_min: float, stats_max: float, has_graph: bool) -> int:
    """How many bottom windows a page shows: two for a strong negative side (a negative graph, or a minimum at
    or below -FIRE_THRESHOLD x the max: it "fires" negatively), one for a weak one (a GELU's dip to -0.17).

    >>> bottom_limit(-0.2, 4.0, False), bottom_limit(-2.0, 4.0, False), bottom_limit(-0.2, 4.0, True)
    (1, 2, 2)
    """
    strong = has_graph or not -stats_min < FIRE_THRESHOLD * max(stats_max, 0.0)
    return PAGE_BOTTOM_EXAMPLES if strong else PAGE_WEAK_BOTTOM_EXAMPLES


def bottom_windows(mined: MinedLayer, row: int, fitted: set[tuple[int, int]]) -> list[ShownWindow]:
    """The bottom (most negative) training windows of the page (at most the first :data:`PAGE_BOTTOM_EXAMPLES`:
    :func:`bottom_limit`) and of the export record (the first :data:`PAGE_BOTTOM_EXAMPLES` and the ones the
    negative graph was fitted on, ``fitted``, among the first :data:`MAX_TRAIN_EXAMPLES`); none in a file mined
    before they existed."""
    bottom = getattr(mined, "bottom_train", None)
    if bottom is None:
        return []
    out = []
    limit = MAX_TRAIN_EXAMPLES if fitted else PAGE_BOTTOM_EXAMPLES
    for rank, w in enumerate(bottom.windows(row, limit)):
        if not w.value < 0:  # the neuron's lowest there is not below 0: nothing negative to show
            continue
        if rank >= PAGE_BOTTOM_EXAMPLES and (w.doc, w.start) not in fitted:
            continue
        lo, hi = max(0, w.pivot - DATA_BEFORE), min(len(w.tokens), w.pivot + DATA_AFTER + 1)
        out.append(ShownWindow("bottom", rank, w, lo, hi, (w.doc, w.start) in fitted))
    return out


def band_windows(
    mined: MinedLayer, row: int, a_max: float, fitted: set[tuple[int, int]], shown: set[tuple[int, int]]
) -> list[ShownWindow]:
    """One window per activation band (store.BAND_EDGES, shares of ``a_max``) from the neuron's band samples,
    training first, then held-out for a band the training sample leaves empty: the middle one (by peak) of the
    band's windows, leaving out the windows in ``shown`` (the page's top examples). ``rank`` is the band's
    index; bands without a window are skipped. None in a layer without a band sample."""
    pools: list[list[list[Window]]] = []
    for sample in (mined.band_train, mined.band_heldout):
        by_band: list[list[Window]] = [[] for _ in BAND_EDGES]
        for w in sample.windows(row) if sample is not None and a_max > 0 else []:
            band = band_of(w.value / a_max)
            if band is not None and (w.doc, w.start) not in shown:
                by_band[band].append(w)
        pools.append(by_band)
    out = []
    for band in range(len(BAND_EDGES)):
        for split, by_band in zip(("train", "heldout"), pools):
            found = by_band[band]
            if found:
                w = found[len(found) // 2]  # highest first: the middle one stands for the band
                lo, hi = max(0, w.pivot - SHOW_BEFORE), min(len(w.tokens), w.pivot + SHOW_AFTER + 1)  # record
                fit = split == "train" and (w.doc, w.start) in fitted
                out.append(ShownWindow("band_" + split, band, w, lo, hi, fit, BAND_BEFORE, BAND_AFTER))
                break
    return out


def band_label(band: int) -> str:
    """A band's label as shares of the max.

    >>> band_label(1), band_label(3)
    ('40–60%', '80%+')
    """
    lower = round(100 * BAND_EDGES[band])
    return f"{lower}%+" if band == len(BAND_EDGES) - 1 else f"{lower}–{round(100 * BAND_EDGES[band + 1])}%"


def fitted_graph(work: WorkDir, layer: int, neuron: int, fit: dict[str, Any], side: str = "positive") -> Graph | None:
    """The graph of a fitted neuron's fit file (``side``), None when it has no nodes; a UserError naming the file
    when the graph does not parse."""
    if not fit.get("graph"):
        return None
    try:
        graph = Graph.from_json(fit["graph"])
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(
            f"{work.fitted(layer, neuron, side)}: bad graph ({exc}); delete it and rerun `n2g-site fit`"
        ) from None
    return graph if graph.nodes else None


def fitted_windows(fit: dict[str, Any]) -> set[tuple[int, int]]:
    """(doc, window start) of the windows the fit file's graph was fitted on."""
    return {(int(e.get("doc", -1)), int(e.get("window_start", -1))) for e in fit.get("examples") or []}


@dataclass
class NegativeSide:
    """A neuron's negative side: its bottom windows and, with fit ``--polarity both``, its negative graph
    (``fit/L../N.....neg.json``, fitted on -activation) and that graph's evaluation."""

    status: str  # "fitted", "dead" (never below 0 in its bottom training windows) or "unfitted" (no file)
    fit: dict[str, Any]  # the negative fit file ({} when unfitted)
    graph: Graph | None
    evaluated: dict[str, Any] | None
    a_min: float  # < 0: what negative values are normalised by (the fit's, else the bottom windows' minimum)
    windows: list[ShownWindow]
    shape: Shape | None
    page_windows: int  # how many of ``windows`` the page shows (:func:`bottom_limit`); the export has them all

    @classmethod
    def gather(
        cls, work: WorkDir, mined: MinedLayer, layer: int, neuron: int, stats_min: float, stats_max: float
    ) -> NegativeSide | None:
        """None when the neuron never goes below 0 and has no negative fit. A weak negative side (never below
        -FIRE_THRESHOLD x the max, and no negative graph) shows one bottom window, a strong one two."""
        fit = work.read_fit(layer, neuron, "negative")
        if fit is None and not stats_min < 0:
            return None
        fit = fit or {}
        status = "unfitted" if not fit else ("dead" if fit.get("status") == "dead" else "fitted")
        graph = fitted_graph(work, layer, neuron, fit, "negative") if status == "fitted" else None
        windows = bottom_windows(mined, mined.row(neuron), fitted_windows(fit))
        magnitude = _float(fit.get("max_activation"), 0.0)
        a_min = -magnitude if magnitude > 0 else min([w.window.value for w in windows] + [min(stats_min, 0.0)])
        return cls(
            status=status,
            fit=fit,
            graph=graph,
            evaluated=work.read_evaluation(layer, neuron, "negative") if fit else None,
            a_min=a_min,
            windows=windows,
            shape=describe(graph) if graph is not None else None,
            page_windows=bottom_limit(stats_min, stats_max, graph is not None),
        )

    @property
    def verdict(self) -> Verdict | None:
        """The negative graph's score badge (render/verdict.py, from its own evaluate file and fit)."""
        return neuron_verdict(self.status, self.evaluated, self.fit.get("heldout"))

    def view(self, sh: Shared, example, drawing: Drawing | None, low_scale: float) -> NegativeView:
        graph_view = graph_view_of(self.graph, drawing)
        return NegativeView(
            status=self.status,
            a_min=self.a_min,
            low_scale=low_scale,
            examples=[example(w) for w in self.windows if w.rank < self.page_windows],
            graph=graph_view,
            summary=negative_summary(self.shape.summary) if self.shape else "",
            heldout=heldout_view(self.fit.get("heldout")),
            fidelity=neuron_fidelity(self.evaluated),
            verdict=self.verdict,
        )

    def record(self, sh: Shared) -> dict[str, Any]:
        """The export record's ``negative`` (schemas/neuron.schema.json): the bottom windows scaled by A_min and,
        when fitted, the negative graph, its fit and its evaluate scores."""
        fitted = self.graph is not None
        return {
            "status": self.status,
            "min_activation": export.number(self.a_min),
            "graph": export.graph_record(self.fit.get("graph"), export.token_ids(sh.vocab)) if fitted else None,
            "fit": export.fit_record(self.fit),
            "examples": example_records(sh, self.windows, self.a_min),
            "evaluation": export.evaluation_record(self.evaluated, misses=False),
            "summary": negative_summary(self.shape.summary) if self.shape else None,
        }


def negative_summary(summary: str) -> str:
    """A negative graph's one-line summary (summary.describe) worded for its side.

    >>> negative_summary("fires on “ Paris” after “ in”")
    'goes negative on “ Paris” after “ in”'
    """
    return "goes negative on " + summary[len("fires on ") :] if summary.startswith("fires on ") else summary


def graph_view_of(graph: Graph | None, drawing: Drawing | None) -> GraphView | None:
    """The drawn graph's page context (None without a graph or a drawing)."""
    if graph is None or drawing is None:
        return None
    return GraphView(
        svg=Markup(drawing.svg) if drawing.svg else None,
        nodes=drawing.nodes,
        drawn=drawing.drawn,
        hidden=drawing.hidden,
        patterns=drawing.patterns,
        drawn_patterns=drawing.drawn_patterns,
        depth=graph.depth,
        activating=activating_tokens(graph),
    )


def calibration_view(record: Any) -> CalibrationView | None:
    """A fit file's ``calibration`` record (calibrate.Calibration.as_dict) for the page; None without one."""
    if not isinstance(record, dict):
        return None
    tokens = record.get("token_patterns") or {}
    added = {int(i) for i in [*tokens.get("added", []), *tokens.get("ended", [])]}
    changed = {int(c[0]) for c in record.get("changed", [])}
    return CalibrationView(
        precision=_float(record.get("precision"), 0.0),
        reweighted=len(changed - added),
        token_patterns=len(added),
        token_patterns_reweighted=len(changed & added),
    )


def heldout_view(ho: Any) -> HeldoutView | None:
    """A fit file's first held-out score."""
    if not isinstance(ho, dict):
        return None
    return HeldoutView(
        precision=_float(ho.get("precision")),
        recall=_float(ho.get("recall")),
        f1=_float(ho.get("f1")),
        tokens=int(ho.get("tokens") or 0),
        true_firing=int(ho.get("true_firing") or 0),
        predicted_firing=int(ho.get("predicted_firing") or 0),
    )


@dataclass
class NeuronData:
    """Everything one neuron's page, export record and layer row are made from."""

    layer: int
    neuron: int
    status: str  # "fitted", "dead" or "unfitted"
    fit: dict[str, Any]  # the fit file ({} when unfitted)
    graph: Graph | None  # None: dead, unfitted, or an empty graph
    evaluated: dict[str, Any] | None  # the evaluate file
    a_max: float  # what highlights are normalised by: the fit's max, else the layer stats' max
    stats_max: float
    stats_min: float
    stats_mean: float
    firing: float
    hist: list[HistBar]
    windows: list[ShownWindow]  # empty for a dead neuron
    shape: Shape | None  # the graph's one-line summary
    negative: NegativeSide | None = None  # None: never below 0, and no negative fit
    bands: list[ShownWindow] | None = None  # one band-sample window per activation band; None: no band sample
    bands_note: str = ""  # why there is no band sample (MinedLayer.band_note)

    @property
    def a_min(self) -> float:
        """The negative side's A_min (< 0), 0.0 when the neuron never goes below 0."""
        return self.negative.a_min if self.negative is not None else 0.0

    @property
    def low_scale(self) -> float:
        """What negative values are shaded by: -max(A_max, |A_min|) (0.0: nothing below 0). A negative token
        never looks stronger than a positive one of the same size (a GELU neuron's dips to -0.17 stay pale),
        and the lowest token of a neuron that goes further below 0 than above is the darkest blue."""
        return -max(self.a_max, -self.a_min) if self.a_min < 0 else 0.0

    @classmethod
    def gather(cls, work: WorkDir, mined: MinedLayer, layer: int, neuron: int, firing: float) -> NeuronData:
        fit = work.read_fit(layer, neuron)
        stats_max = float(mined.stats.max[neuron])
        graph = None
        if fit is None:
            status = "dead" if stats_max <= 0 else "unfitted"
        else:
            status = "dead" if fit.get("status") == "dead" else "fitted"
            if status == "fitted":
                graph = fitted_graph(work, layer, neuron, fit)
        fit = fit or {}
        a_max = _float(fit.get("max_activation"), 0.0)
        if not a_max > 0:
            a_max = stats_max if stats_max > 0 else 1.0
        fitted = fitted_windows(fit)
        windows = shown_windows(mined, mined.row(neuron), fitted) if status != "dead" else []
        bands = None
        if mined.band_train is not None:
            on_page = {(w.window.doc, w.window.start) for w in windows if w.rank < PAGE_TRAIN_EXAMPLES}
            bands = band_windows(mined, mined.row(neuron), a_max, fitted, on_page) if status != "dead" else []
        return cls(
            layer=layer,
            neuron=neuron,
            status=status,
            fit=fit,
            graph=graph,
            evaluated=work.read_evaluation(layer, neuron),
            a_max=a_max,
            stats_max=stats_max,
            stats_min=float(mined.stats.min[neuron]),
            stats_mean=float(mined.stats.mean[neuron]),
            firing=firing,
            hist=hist_view(mined.stats.hist[neuron], mined.stats.edges),
            windows=windows,
            shape=describe(graph) if graph is not None else None,
            negative=NegativeSide.gather(work, mined, layer, neuron, float(mined.stats.min[neuron]), stats_max),
            bands=bands,
            bands_note=mined.band_note,
        )

    @property
    def heldout(self) -> HeldoutView | None:
        return heldout_view(self.fit.get("heldout"))

    @property
    def verdict(self) -> Verdict | None:
        """The score badge (render/verdict.py)."""
        return neuron_verdict(self.status, self.evaluated, self.fit.get("heldout"))

    @property
    def f1(self) -> float | None:
        heldout = self.heldout
        return heldout.f1 if heldout is not None and not math.isnan(heldout.f1) else None

    def page(
        self,
        sh: Shared,
        *,
        drawing: Drawing | None,
        prev: tuple[int, int] | None,
        next: tuple[int, int] | None,
        hook: str,
        line: int,
        negative_drawing: Drawing | None = None,
    ) -> NeuronPage:
        """The page context. ``drawing``: the graph's drawing (``negative_drawing``: the negative side's);
        ``prev``/``next``: the neighbouring neurons of the build as (layer, neuron), across layer boundaries;
        ``line``: this neuron's line (from 1) in its layer's export file."""
        graph_view = graph_view_of(self.graph, drawing)
        shown = self.status != "dead"
        layer, n, related = self.layer, self.neuron, sh.related
        similar = related.similar_views(layer, n)
        similar_activation = related.similar_views(layer, n, by_activation=True)
        hidden = sum(s.similarity < SIMILAR_FLOOR for s in [*similar, *similar_activation])
        return NeuronPage(
            layer=layer,
            neuron=n,
            title=f"Layer {layer} · Neuron {n}",
            hook=str(self.fit.get("hook") or hook),
            status=self.status,
            max_activation=self.a_max,
            stats_max=self.stats_max,
            stats_min=self.stats_min,
            stats_mean=self.stats_mean,
            firing=self.firing,
            hist=self.hist,
            heldout=self.heldout,
            augmenter=self.fit.get("augmenter"),
            calibration=calibration_view(self.fit.get("calibration")),
            graph=graph_view,
            train_examples=[
                self._example_view(sh, w) for w in self.windows if w.split == "train" and w.rank < PAGE_TRAIN_EXAMPLES
            ],
            heldout_examples=[
                self._example_view(sh, w)
                for w in self.windows
                if w.split == "heldout" and w.rank < PAGE_HELDOUT_EXAMPLES
            ],
            examples_in_data=len(self.windows),
            layer_link=Link(f"Layer {layer}", f"../../../layers/L{layer}/"),
            home_url="../../../",
            reading_url="../../../reading/",
            prev=pager_link(layer, prev),
            next=pager_link(layer, next),
            similar=[s for s in similar if s.similarity >= SIMILAR_FLOOR][:PAGE_NEIGHBOURS],
            similar_activation=[s for s in similar_activation if s.similarity >= SIMILAR_FLOOR][:PAGE_NEIGHBOURS],
            similar_activation_tokens=related.activation_tokens,
            logits=related.logit_view(n, PAGE_LOGITS),
            fidelity=neuron_fidelity(self.evaluated),
            fidelity_url="../../../fidelity/",
            data_url=f"../../../{export.EXPORT_DIR}/{export.layer_file(layer)}",
            data_line=line,
            summary=self.shape.summary if self.shape else "",
            groups=self.shape.groups if self.shape else 0,
            misses=misses_view(self.evaluated, sh.shown) if shown else None,
            playground=playground.patterns(self.graph, fire_threshold(self.evaluated), playground.key_ids(sh.vocab))
            if self.graph is not None and sh.playground
            else None,
            verdict=self.verdict,
            triggers=list(self.shape.triggers) if self.shape else [],
            triggers_more=self.shape.more if self.shape else 0,
            triggers_named=self.shape.named if self.shape else 0,
            similar_hidden=hidden,
            similar_floor=SIMILAR_FLOOR,
            negative=self.negative.view(sh, lambda w: self._example_view(sh, w), negative_drawing, self.low_scale)
            if self.negative is not None
            else None,
            bands=[
                BandView(
                    band_label(b.rank),
                    b.window.value,
                    b.fitted,
                    example_html(b, self.a_max, sh.shown, self.low_scale, hover=False),
                )
                for b in self.bands or []
                if b.rank < PAGE_BANDS
            ],
            bands_note=self.bands_note,
        )

    def _example_view(self, sh: Shared, sw: ShownWindow) -> ExampleView:
        w, a_max, a_min = sw.window, self.a_max, self.a_min
        lo, hi = sw.shown
        pivot = w.pivot - lo
        ids = w.tokens[lo:hi]
        if sw.split == "bottom":
            norm = w.value / a_min if a_min < 0 else 0.0
        else:
            norm = w.value / a_max if a_max > 0 else 0.0
        return ExampleView(
            split=sw.split,
            rank=sw.rank,
            value=w.value,
            norm=norm,
            doc_title=sh.corpus.title(w.doc),
            doc_url=sh.corpus.url(w.doc),
            pivot_text=vocab_text(sh.shown, int(ids[pivot])) if 0 <= pivot < len(ids) else None,
            fitted=sw.fitted,
            html=example_html(sw, a_max, sh.shown, self.low_scale),
        )

    def record(self, sh: Shared) -> dict[str, Any]:
        """The export record (schemas/neuron.schema.json): what the page shows, as data."""
        layer, n = self.layer, self.neuron
        logits, norm = sh.related.logit_raw(n)
        return {
            "schema": export.SCHEMA,
            "layer": layer,
            "neuron": n,
            "model": str(sh.manifest.get("model") or "?"),
            "corpus": str(sh.manifest.get("corpus") or "?"),
            "page": f"neurons/L{layer}/N{n}/",
            "hook": str(self.fit.get("hook") or sh.hook_pattern.replace("{layer}", str(layer))),
            "status": self.status,
            "max_activation": export.number(self.a_max),
            "stats": {
                "max": export.number(self.stats_max),
                "min": export.number(self.stats_min),
                "mean": export.number(self.stats_mean),
                "firing_share": export.number(self.firing),
            },
            "graph": export.graph_record(self.fit.get("graph"), export.token_ids(sh.vocab))
            if self.graph is not None
            else None,
            "fit": export.fit_record(self.fit),
            "examples": example_records(sh, self.windows, self.a_max),
            "bands": None
            if self.bands is None
            else [
                export.band_record(
                    b.window,
                    band=b.rank,
                    split=b.split.removeprefix("band_"),
                    a_max=self.a_max,
                    lo=b.lo,
                    hi=b.hi,
                    n_vocab=len(sh.vocab),
                    fitted=b.fitted,
                )
                for b in self.bands
            ],
            "evaluation": export.evaluation_record(self.evaluated),
            "similar": export.similar_records(sh.related.similar_raw(layer, n)),
            "similar_activation": export.similar_records(sh.related.similar_raw(layer, n, by_activation=True)),
            "logit_effects": export.logit_record(logits, norm),
            "summary": self.shape.summary if self.shape else None,
            "trigger_groups": self.shape.groups if self.shape else None,
            "negative": self.negative.record(sh) if self.negative is not None else None,
        }

    def row(self, sh: Shared, page: NeuronPage) -> LayerRow:
        """The neuron's row of its layer table."""
        top = page.graph.activating[:TOP_TOKENS] if page.graph else []
        if not top:
            for ex in page.train_examples:
                if ex.pivot_text is not None and ex.pivot_text not in top:
                    top.append(ex.pivot_text)
            top = top[:TOP_TOKENS]
        return LayerRow(
            neuron=self.neuron,
            url=f"../../neurons/L{self.layer}/N{self.neuron}/",
            status=self.status,
            max_activation=self.stats_max,
            mean=self.stats_mean,
            firing=self.firing,
            f1=self.f1,
            top_tokens=top,
            summary=page.summary,
            groups=page.groups,
            verdict=page.verdict,
            negative_verdict=page.negative.verdict if page.negative is not None else None,
        )


# ------------------------------------------------------------------------------------------ the pieces


def pager_link(layer: int, to: tuple[int, int] | None) -> Link | None:
    """A neuron page's previous / next link: "Neuron 7" in its own layer, "L3 N7" in another one."""
    if to is None:
        return None
    other, n = to
    if other == layer:
        return Link(f"Neuron {n}", f"../N{n}/")
    return Link(f"L{other} N{n}", f"../../L{other}/N{n}/")


def _float(x: Any, default: float = float("nan")) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return default


def hist_view(counts: np.ndarray, edges: np.ndarray = HIST_EDGES) -> list[HistBar]:
    """Bars of one neuron's activation histogram over ``edges`` (LayerStats.edges: store.HIST_EDGES, two-sided,
    or the legacy one-sided edges of older work dirs); empty bins below the lowest filled one and above the
    highest are dropped."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (len(edges) + 1,) or int(counts.sum()) == 0:
        return []
    filled = np.flatnonzero(counts)
    first, last = int(filled[0]), int(filled[-1])
    lower = [None, *edges.tolist()]
    upper = [*edges.tolist(), None]
    top = math.log1p(int(counts.max()))
    return [
        HistBar(
            lo=lower[i],
            hi=upper[i],
            count=int(counts[i]),
            height=round(100 * math.log1p(int(counts[i])) / top) if top > 0 else 0,
        )
        for i in range(first, last + 1)
    ]


def activating_tokens(graph: Graph) -> list[str]:
    """The graph's activating tokens (display form), strongest first, each once."""
    best: dict[str | None, Node] = {}
    for node in graph.activating_tokens:
        if node.key not in best or node.activation > best[node.key].activation:
            best[node.key] = node
    ranked = sorted(best.values(), key=lambda n: (-n.activation, -n.count, n.id))
    return [display_token(n.token) for n in ranked if n.key is not None]


_CUT = "<b>…</b>"  # where the shown tokens cut the window (n2g.css greys it): 23 bytes less than a classed span
_LEVEL = [f"<i class=a{level}>" for level in range(11)]
_PIVOT = [f'<i class="a{level} pv">' for level in range(11)]
_LOW = [f"<i class=b{level}>" for level in range(11)]  # negative values (blue), by their share of the minimum
_LOW_PIVOT = [f'<i class="b{level} pv">' for level in range(11)]
_ESCAPED: tuple[list[str], list[str]] | None = None  # (vocabulary in display form, each entry as HTML)


def _escaped_vocab(shown: list[str]) -> list[str]:
    """Every entry of ``shown`` HTML-escaped, computed once per process (per vocabulary)."""
    global _ESCAPED
    if _ESCAPED is None or _ESCAPED[0] is not shown:
        _ESCAPED = (shown, [str(escape(t)) for t in shown])
    return _ESCAPED[1]


def example_html(sw: ShownWindow, a_max: float, shown: list[str], a_min: float = 0.0, hover: bool = True) -> Markup:
    """The shown tokens of a window, highlighted: a ``<div class="n2g-tokens" data-v="...">``. ``shown`` is the
    vocabulary in inline display form.

    A token's level is ``round(10 * clamp(act / a_max, 0, 1))`` (class ``aN``, red); with ``a_min`` < 0 (the
    scale of negative values, :attr:`NeuronData.low_scale`), a negative token's is
    ``round(10 * clamp(act / a_min, 0, 1))`` (class ``bN``, blue): a diverging scale. A token of level 0
    within 5% of its side's scale is plain text, else an ``<i>``, its value (3 significant digits) the next
    number of the window's ``data-v`` (no ``data-v`` without ``hover``: a band window, whose peak the page
    prints, keeps its bytes); the pivot is underlined (class ``pv``).
    """
    window, (lo, hi) = sw.window, sw.shown
    n_shown = len(shown)
    escaped = _escaped_vocab(shown)
    acts = window.acts[lo:hi].astype(np.float64)  # float64: the same arithmetic as Python floats
    if a_max > 0:
        norms = np.nan_to_num(acts / a_max, nan=0.0)
        levels = np.rint(10 * np.clip(norms, 0.0, 1.0)).astype(np.int64).tolist()  # round() too
    else:
        levels = [0] * len(acts)
    if a_min < 0:
        low = np.nan_to_num(acts / a_min, nan=0.0)
        lows = np.rint(10 * np.clip(low, 0.0, 1.0)).astype(np.int64).tolist()
        loud = np.where(acts < 0, -acts >= 0.05 * -a_min, np.abs(acts) >= 0.05 * a_max).tolist()  # NaN: never
    else:
        lows = [0] * len(acts)
        loud = (np.abs(acts) >= 0.05 * a_max).tolist()  # NaN: never
    values = acts.tolist()
    if np.isfinite(acts).all():  # every title in one formatting call: what num() writes for a finite value
        titles = ("%.3g\0" * len(values) % tuple(values)).split("\0")
    else:
        titles = [num(v) for v in values]
    pivot = window.pivot - lo
    parts = [_CUT] if lo > 0 else []
    kept = []  # the values of the <i> tokens, in order
    tokens = window.tokens[lo:hi].tolist()
    for i, (tid, title, level, low_level, audible) in enumerate(zip(tokens, titles, levels, lows, loud)):
        esc = escaped[tid] if 0 <= tid < n_shown else str(escape(vocab_text(shown, tid)))
        if i == pivot:
            parts.append(f"{_LOW_PIVOT[low_level] if low_level else _PIVOT[level]}{esc}</i>")
        elif level:
            parts.append(f"{_LEVEL[level]}{esc}</i>")
        elif low_level:
            parts.append(f"{_LOW[low_level]}{esc}</i>")
        elif audible:
            parts.append(f"<i>{esc}</i>")
        else:
            parts.append(esc)
            continue
        kept.append(title)
    if hi < len(window.tokens):
        parts.append(_CUT)
    if not hover:
        return Markup(f'<div class="n2g-tokens">{"".join(parts)}</div>')
    return Markup(f'<div class="n2g-tokens" data-v="{" ".join(kept)}">{"".join(parts)}</div>')
