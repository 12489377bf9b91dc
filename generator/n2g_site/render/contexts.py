"""Typed contexts: one dataclass per template, so a template never reaches into raw work-dir data.

Every template receives exactly one of these as ``page`` (plus ``site``, a :class:`SiteInfo`). All
strings are plain text: Jinja's autoescape escapes them. The only pre-built HTML is
:attr:`GraphView.svg`, written by render/svg_compact.py (which XML-escapes labels) and wrapped in ``Markup``.

URLs are relative to the page that shows them, so the site works under any sub-path; Markdown pages
(``*.md.j2``) link to ``.md`` sources (MkDocs rewrites those), HTML fragments link to final directory URLs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from ..config import FIRE_THRESHOLD


@dataclass
class SiteInfo:
    """Facts shared by every page."""

    version: str  # n2g-site version that rendered the site
    model: str  # the model's display name
    corpus: str  # the corpus's display name
    build_date: str  # ISO date (UTC) of the render


@dataclass
class Link:
    """A link with its text."""

    label: str
    url: str


@dataclass
class ExampleView:
    """One top-activating window (training or held-out)."""

    split: str  # "train", "heldout" or "bottom" (a bottom training window: the lowest activations)
    rank: int  # 0-based rank within its split (by peak activation; bottom: by the lowest)
    value: float  # peak activation (at the pivot; bottom: the window's minimum)
    norm: float  # value / max_activation (bottom: value / the neuron's minimum)
    doc_title: str
    doc_url: str | None  # link to the source document when the corpus has one (Wikipedia)
    pivot_text: str | None  # display form (tokens.display_token, inline) of the token where the neuron peaked
    fitted: bool  # this training window was one the graph was fitted on
    html: Markup  # the shown tokens as a highlighted <div class="n2g-tokens">, cut marks included (render/neuron.py)


@dataclass
class GraphView:
    """The drawn N2G graph of a neuron."""

    svg: Markup | None  # inline <svg> (no XML prolog; render/svg.py), None where there is no drawing
    nodes: int  # nodes in the fitted trie
    drawn: int  # trie nodes drawn (the strongest patterns, up to render/drawing.py's budget)
    hidden: int  # trie nodes left out of the drawing
    patterns: int  # complete matches (nodes where a match may stop)
    # patterns drawn: fewer than ``patterns`` when the drawing shows only the strongest of a huge graph; the
    # caption then says "showing the N strongest of M patterns" (all of them in the data)
    drawn_patterns: int
    depth: int  # longest pattern, in tokens
    activating: list[str]  # activating tokens (display form), strongest first


@dataclass
class HeldoutView:
    """Held-out fidelity of the graph as a predictor of firing tokens."""

    precision: float
    recall: float
    f1: float
    tokens: int
    true_firing: int
    predicted_firing: int


@dataclass
class CalibrationView:
    """What the calibration step (beyond the paper, calibrate.py) did to this neuron's graph."""

    precision: float  # the precision cut p chosen on the validation half (0: no pattern judged imprecise)
    reweighted: int  # patterns that predicted firing and now predict their measured mean, under the threshold
    token_patterns: int  # one-token patterns added from the training windows' token statistics
    token_patterns_reweighted: int  # of those, how many calibration then re-weighted


@dataclass
class HistBar:
    """One bar of a neuron's activation histogram (raw activation, the bins of LayerStats.edges)."""

    lo: float | None  # lower bin edge (None: the first bin, everything below edges[0])
    hi: float | None  # upper bin edge (None: the last bin, unbounded)
    count: int
    height: int  # 0..100, log-scaled bar height in percent


@dataclass
class SimilarView:
    """A neighbouring neuron by graph content (relate stage)."""

    label: str  # "L3 N17"
    url: str  # relative to the neuron page
    similarity: float  # cosine of the two graphs' token vectors, 0..1
    tokens: list[str]  # its activating tokens (display form), strongest first


@dataclass
class LogitToken:
    text: str  # display form
    value: float  # direct effect on the token's logit per unit of activation


@dataclass
class LogitView:
    """Tokens the neuron's output weights promote and suppress most (relate stage)."""

    promoted: list[LogitToken]
    suppressed: list[LogitToken]
    norm: str  # what was folded in (final norm scale, centring)


@dataclass
class MissToken:
    """One token of a miss snippet: highlighted by the neuron's true activation, the graph's value on hover."""

    text: str  # display form
    truth: float | None  # the neuron's normalised activation (None: doc-start token, not scored)
    predicted: float  # the graph's predicted normalised activation
    level: int  # highlight level 0..10 of the true activation
    missed: bool  # the token the graph got wrong


@dataclass
class MissView:
    """A snippet of held-out text around a token the graph got wrong."""

    dataset: str  # "heldout" (top windows) or "ordinary" (ordinary held-out text)
    tokens: list[MissToken]
    truth: float  # the neuron's normalised activation at the missed token
    predicted: float  # the graph's prediction there


@dataclass
class MissesView:
    """False positives (graph fires, neuron does not) and false negatives (the reverse)."""

    false_positive: list[MissView]
    false_negative: list[MissView]
    threshold: float = FIRE_THRESHOLD  # firing = normalised activation >= this (the evaluation's --fire-threshold)


@dataclass
class NeuronPage:
    """``neuron.md.j2`` (light Markdown) and ``neuron_body.html.j2`` (the heavy fragment)."""

    layer: int
    neuron: int
    title: str  # "Layer l · Neuron n"
    hook: str  # e.g. blocks.3.mlp.hook_post
    status: str  # "fitted", "dead" (never fired in the mined text) or "unfitted" (no fit file)
    max_activation: float  # A_max used to normalise highlights (fit file, else the layer stats)
    stats_max: float  # max / min / mean over every mined token (both splits)
    stats_min: float
    stats_mean: float
    firing: float | None  # share of mined tokens where it reached half its max (store.firing_share)
    hist: list[HistBar]
    heldout: HeldoutView | None
    augmenter: str | None
    graph: GraphView | None  # None when dead, unfitted or the graph is empty
    train_examples: list[ExampleView]
    heldout_examples: list[ExampleView]
    layer_link: Link  # back to the layer page
    home_url: str
    reading_url: str  # the "how to read a graph" page
    prev: Link | None = None
    next: Link | None = None
    similar: list[SimilarView] = field(default_factory=list)  # empty: not related (or no neighbour)
    similar_activation: list[SimilarView] = field(default_factory=list)  # by activation on ordinary text
    similar_activation_tokens: int = 0  # tokens of ordinary held-out text those cosines compare
    logits: LogitView | None = None
    fidelity: Any = None  # render.fidelity.NeuronFidelity: the evaluate stage's scores (None: not evaluated)
    fidelity_url: str = "../../../fidelity/"  # the page explaining the scores
    data_url: str | None = None  # the layer's export file (render/export.py), relative to the page
    data_line: int = 0  # this neuron's line in it, from 1
    examples_in_data: int = 0  # windows in the neuron's export record (the page shows the first few of each split)
    summary: str = ""  # one-line description read off the graph (render/summary.py); "" without a graph
    groups: int = 0  # separate activating-token groups of the graph (polysemanticity signal)
    misses: MissesView | None = None  # where the graph is wrong on held-out text (evaluate stage)
    playground: dict | None = None  # the graph's patterns for the in-browser predictor (render/playground.py)
    # issue 18: the score badge, the full trigger list, similar neurons below the noise floor
    verdict: Any = None  # render.verdict.Verdict: beats / no better than its baselines / cannot be scored
    triggers: list[str] = field(default_factory=list)  # every activating token's phrase (summary.Shape.triggers)
    triggers_more: int = 0  # activating tokens beyond ``triggers``
    triggers_named: int = 0  # the first ``triggers`` the one line names (the page lists the others)
    similar_hidden: int = 0  # neighbours below render/neuron.py SIMILAR_FLOOR left out of both lists
    similar_floor: float = 0.0
    negative: NegativeView | None = None  # the neuron's negative side; None when it never goes below 0
    bands: list[BandView] = field(default_factory=list)  # one sampled window per activation band (issue 19)
    bands_note: str = ""  # why there are none: the layer has no band sample ("" when it has one)
    calibration: CalibrationView | None = None  # None: --paper (or a fit from before calibration)


@dataclass
class BandView:
    """One window of a neuron's band sample on its page: the activation band it stands for."""

    label: str  # the band as shares of the page's max, e.g. "40–60%" ("80%+" for the last)
    value: float  # its peak activation
    fitted: bool  # the graph was fitted on this window
    html: Markup  # its narrow slice, highlighted as the examples are (render/neuron.py example_html)


@dataclass
class NegativeView:
    """A neuron's negative side on its page: bottom examples and (fit --polarity both) its negative graph."""

    status: str  # "fitted", "dead" (never below 0 in its bottom windows) or "unfitted" (no negative fit)
    a_min: float  # < 0: the negative side's minimum (the negative fit's A_min, else the bottom windows')
    low_scale: float  # < 0: what negative tokens are shaded by, -max(A_max, |A_min|) (NeuronData.low_scale)
    examples: list[ExampleView]  # the most negative training windows (split "bottom")
    graph: GraphView | None  # the negative graph (fitted on -activation): None when dead, unfitted or empty
    summary: str = ""  # its one-line description ("goes negative on ...")
    heldout: HeldoutView | None = None  # its first held-out score (the fit's, on the bottom held-out windows)
    fidelity: Any = None  # render.fidelity.NeuronFidelity of its evaluate file (None: not evaluated)
    verdict: Any = None  # render.verdict.Verdict of the negative graph (None: no negative graph to score)


@dataclass
class LayerRow:
    """One neuron in a layer table."""

    neuron: int
    url: str  # relative to the layer page
    status: str
    max_activation: float
    mean: float
    firing: float | None  # as NeuronPage.firing
    f1: float | None
    top_tokens: list[str]  # activating tokens from the graph, else the examples' peak tokens
    summary: str = ""  # NeuronPage.summary
    groups: int = 0  # NeuronPage.groups
    verdict: Any = None  # NeuronPage.verdict
    negative_verdict: Any = None  # the negative graph's badge (NegativeView.verdict), a second mark in its cell


@dataclass
class LayerPage:
    """``layer.md.j2`` and ``layer_body.html.j2``."""

    layer: int
    title: str  # "Layer l"
    hook: str
    d_mlp: int
    rows: list[LayerRow]
    fitted: int
    dead: int
    unfitted: int
    mean_f1: float | None
    prev: Link | None = None  # links to the neighbouring layer pages (final URLs)
    next: Link | None = None


@dataclass
class LayerSummary:
    """A layer as listed on the home page."""

    layer: int
    md_link: str  # "layers/L3.md"
    neurons: int
    fitted: int
    dead: int
    mean_f1: float | None


@dataclass
class HomePage:
    """``index.md.j2``."""

    model_key: str  # the --model value
    model_name: str
    architecture: str | None
    n_layers: int | None
    d_mlp: int | None
    hook: str | None
    corpus_key: str
    corpus_name: str
    documents: int | None
    corpus_url: str | None
    licence: str | None
    credit: str | None  # attribution line for the example text
    tokens_mined: int | None
    version: str
    build_date: str
    mine_options: dict[str, object]
    fit_options: dict[str, object]
    layers: list[LayerSummary]
    neurons: int
    reading_md: str  # "reading.md"
    export_index: str | None = None  # the data export's index.json (render/export.py), relative to docs/
    build: dict[str, Any] = field(default_factory=dict)  # render/guide.py build_info(): version, date, options


# The prose pages' contexts (ReadingPage, MethodPage, ModelPage, CitePage, DataPage) live in guide.py with the
# code that builds them from the work dir.


@dataclass
class PatternExample:
    """A ready-made pattern query from this build's graphs."""

    fires: str  # activating token (search key)
    before: str  # a context token before it ("" for none)


@dataclass
class PatternPage:
    """``patterns.md.j2`` and ``patterns_body.html.j2`` (the in-browser pattern search)."""

    examples: list[PatternExample]
    max_per_key: int  # neurons kept per token and kind in the index (search_index.MAX_PER_KEY)
    max_context: int  # context tokens kept per activating-token row (search_index.MAX_CONTEXT_KEYS)
