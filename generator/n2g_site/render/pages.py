"""The render stage: work dir -> ``docs/`` (light Markdown + assets) and ``fragments/`` (heavy HTML).

Pages and where their heavy HTML lives::

    docs/index.md                 home (model, corpus + credit, options, layers)
    docs/reading.md               how to read a neuron graph    fragments/reading.html (worked example)
    docs/{method,model,cite,data}.md  prose pages with this build's values (guide.py)
    docs/layers/L{l}.md           layer table                   fragments/layers/L{l}.html
    docs/neurons/n2g-shell/page.md  the one neuron-shaped page MkDocs builds (site_pages.py)
                                  every neuron page's body, neuron.json (export.py) and large graph.svg:
                                                                fragments/neurons/L{l}.jsonl (a pack per layer)
    docs/assets/...               the templates' assets (n2g.css, n2g.js)
    docs/token-search/*.js        the token-search index (search_index.py)
    docs/export/layer_LL.jsonl.gz  every neuron of a layer, one line each; index.json; the schemas (export.py)

Layer and prose Markdown is a title and the placeholder paragraph ``N2G-FRAGMENT``; the MkDocs hook
(``mkdocs_hooks.py``) swaps in the fragment by plain string replacement, so Python-Markdown never parses
the heavy HTML (docs/developer-guide.md, "The site"). Neuron pages are written after the MkDocs build from the
shell page and the packs (``site_pages.py``). All SVGs of a layer are drawn in a few batched ``dot`` runs.

The stage writes into fresh staging folders and swaps them in at the end, so a killed render leaves the
previous ``docs/`` untouched and no stale page of an earlier selection survives.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import numpy as np
import orjson
from markupsafe import Markup, escape

from .. import __version__ as _pkg_version  # fallback when run.json lacks a version
from .. import site_pages
from ..config import Config, UserError
from ..n2g.fit import PHASES
from ..n2g.graph import Graph, Node
from ..resources import builtin_path
from ..store import HIST_EDGES, MinedLayer, WorkDir, Window, atomic_write_bytes, read_json
from .fidelity import fidelity_page, neuron_fidelity, read_evaluation
from .contexts import (
    ExampleView,
    GraphView,
    HeldoutView,
    HistBar,
    HomePage,
    LayerPage,
    LayerRow,
    LayerSummary,
    Link,
    LogitToken,
    LogitView,
    NeuronPage,
    PatternExample,
    PatternPage,
    SimilarView,
    SiteInfo,
)
from . import export, playground
from .misses import fire_threshold, misses_view
from .summary import describe
from .search_index import MAX_CONTEXT_KEYS, MAX_PER_KEY, SearchIndex, graph_entries
from .svg import graph_dot, render_svgs, standalone_svg, svg_object
from .tokens import display_token, vocab_text
from . import guide

PLACEHOLDER = "N2G-FRAGMENT"
SEARCH_DIR = "token-search"  # docs/token-search/: the token-search index (search_index.py)
TEMPLATES = (
    "neuron.md.j2",
    "neuron_body.html.j2",
    "layer.md.j2",
    "layer_body.html.j2",
    "index.md.j2",
    "reading.md.j2",
    "reading_body.html.j2",
    "fidelity.md.j2",
    "fidelity_body.html.j2",
    "home_fidelity.html.j2",
    "neuron_scores.html.j2",
    "fidelity_legend.html.j2",
    "chart.svg.j2",
    "method.md.j2",
    "model.md.j2",
    "cite.md.j2",
    "data.md.j2",
    "patterns.md.j2",
    "patterns_body.html.j2",
)
MAX_TRAIN_EXAMPLES = 10  # training windows shown per neuron
MAX_HELDOUT_EXAMPLES = 5  # held-out windows shown per neuron
# A neuron page is the theme's frame (~12 KB; ~17 KB with 33 layers in the nav; site_pages.py) + its body. A
# body longer than this keeps its graph in graph.svg next to the page (an <object>, tooltips kept) instead of
# inline, so pages stay < 60 KB.
PAGE_BODY_BUDGET = 42_000
GRAPH_FILE = "graph.svg"
SHOW_BEFORE = 24  # tokens shown before the pivot (windows are mined wider)
SHOW_AFTER = 8  # tokens shown after it
TOP_TOKENS = 5  # activating tokens listed per neuron in a layer table
PARALLEL_MIN_NEURONS = 400  # below this, worker start-up costs more than it saves
FIRING_THRESHOLD = 0.5  # "fires" = activation >= this share of the neuron's max (N2G's threshold)


@dataclass
class RenderSummary:
    pages: int  # Markdown pages written
    neurons: int  # neuron pages among them
    seconds: float

    def __str__(self) -> str:
        return f"{self.pages} pages ({self.neurons} neurons) in {self.seconds:.1f} s"


# ----------------------------------------------------------------------------------------------- Jinja


def _num(value: Any, digits: int = 3) -> str:
    """A number for display: '–' for missing/NaN, else ``digits`` significant digits."""
    if value is None:
        return "–"
    value = float(value)
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}g}"


def _sortval(value: Any) -> str:
    """A number for a table cell's ``data-v`` (client-side sort): '' when missing."""
    if value is None:
        return ""
    value = float(value)
    return "" if math.isnan(value) or math.isinf(value) else f"{value:.6g}"


def _pct(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * float(value):.{digits}f}%"


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()#+!|"})


def _md(value: Any) -> str:
    """Backslash-escape Markdown syntax in a value placed in a Markdown template (autoescape does HTML)."""
    return str(value).translate(_MD_SPECIAL)


def make_env(cfg: Config) -> jinja2.Environment:
    """Jinja environment: user templates (``cfg.templates``) over the built-in ones, autoescaped."""
    loaders: list[jinja2.BaseLoader] = []
    if cfg.templates is not None:
        if not Path(cfg.templates).is_dir():
            raise UserError(f"--templates {str(cfg.templates)!r} is not a folder: pass a folder of templates")
        loaders.append(jinja2.FileSystemLoader(str(cfg.templates)))
    loaders.append(jinja2.FileSystemLoader(str(builtin_path("templates"))))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,  # every template, Markdown included
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        num=_num, pct=_pct, md=_md, sortval=_sortval, token=lambda v: display_token(v) if isinstance(v, str) else str(v)
    )
    return env


def _template_file(env: jinja2.Environment, name: str) -> str:
    try:
        _, filename, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        return filename or name
    except jinja2.TemplateNotFound:
        return name


def load_templates(env: jinja2.Environment) -> dict[str, jinja2.Template]:
    """Compile every template up front so a broken one fails before any page is written."""
    out = {}
    for name in TEMPLATES:
        try:
            out[name] = env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            where = exc.filename or _template_file(env, exc.name or name)
            raise UserError(
                f"template {where}, line {exc.lineno}: {exc.message}; fix the template "
                f"(or remove it from --templates to use the built-in one)"
            ) from None
        except jinja2.TemplateNotFound as exc:
            raise UserError(f"template {exc.name!r} not found in --templates or the built-in templates") from None
    return out


def _render(env: jinja2.Environment, template: jinja2.Template, **context: Any) -> str:
    try:
        return template.render(**context)
    except jinja2.TemplateError as exc:
        where = _template_file(env, template.name or "?")
        line = ""
        if getattr(exc, "lineno", None):
            line = f", line {exc.lineno}"
        raise UserError(f"template {where}{line} does not render: {exc}") from None


# -------------------------------------------------------------------------------------------- helpers


def layer_md_path(layer: int) -> str:
    return f"layers/L{layer}.md"


def _float(x: Any, default: float = float("nan")) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return default
    return value


def _hist_view(counts: np.ndarray) -> list[HistBar]:
    """Bars of one neuron's activation histogram (store.HIST_EDGES: bin 0 is everything below 1e-3,
    then log-spaced bins); empty bins above the highest filled one are dropped."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (len(HIST_EDGES) + 1,) or int(counts.sum()) == 0:
        return []
    last = int(np.flatnonzero(counts)[-1])
    lower = [None, *HIST_EDGES.tolist()]
    upper = [*HIST_EDGES.tolist(), None]
    top = math.log1p(int(counts.max()))
    return [
        HistBar(
            lo=lower[i],
            hi=upper[i],
            count=int(counts[i]),
            height=round(100 * math.log1p(int(counts[i])) / top) if top > 0 else 0,
        )
        for i in range(last + 1)
    ]


class _Corpus:
    def __init__(self, index: list[dict[str, str]], manifest: dict[str, Any]):
        self.index = index
        info = manifest.get("corpus_info") or {}
        base = info.get("url")
        self.wiki = bool(base) and "wikipedia.org" in str(base)
        self.base = str(base).rstrip("/") if base else None

    def title(self, doc: int) -> str:
        if 0 <= doc < len(self.index):
            return str(self.index[doc].get("title") or self.index[doc].get("id") or f"document {doc}")
        return f"document {doc}"

    def url(self, doc: int) -> str | None:
        if not self.wiki or not (0 <= doc < len(self.index)):
            return None
        title = self.index[doc].get("title")
        if not title:
            return None
        return f"{self.base}/wiki/{quote(str(title).replace(' ', '_'), safe='')}"


def _shown_range(window: Window) -> tuple[int, int]:
    """The tokens of a window that a page shows (and the JSON export holds): ``window.tokens[lo:hi]``."""
    return max(0, window.pivot - SHOW_BEFORE), min(len(window.tokens), window.pivot + SHOW_AFTER + 1)


def _example(
    window: Window,
    *,
    split: str,
    rank: int,
    a_max: float,
    shown: list[str],
    corpus: _Corpus,
    fitted: bool,
) -> ExampleView:
    """``shown`` is the vocabulary in inline display form (display_token of every entry, computed once).

    The highlighted tokens' HTML is built here, not by a template loop (~500 tokens a page: Jinja took ~2 ms a
    page): a token's highlight level is ``round(10 * clamp(act / a_max, 0, 1))``; a token of level 0 within 5%
    of ``a_max`` (either sign) is plain text, else a span with its value as title; the pivot is underlined.
    """
    lo, hi = _shown_range(window)
    n_shown = len(shown)
    escaped = _escaped_vocab(shown)
    acts = window.acts[lo:hi].astype(np.float64)  # float64: the same arithmetic as Python floats
    if a_max > 0:
        norms = np.nan_to_num(acts / a_max, nan=0.0)
        levels = np.rint(10 * np.clip(norms, 0.0, 1.0)).astype(np.int64).tolist()  # round() too
    else:
        levels = [0] * len(acts)
    loud = (np.abs(acts) >= 0.05 * a_max).tolist()  # NaN: never
    values = acts.tolist()
    if np.isfinite(acts).all():  # every title in one formatting call: what _num writes for a finite value
        titles = ("%.3g\0" * len(values) % tuple(values)).split("\0")
    else:
        titles = [_num(v) for v in values]
    pivot = window.pivot - lo
    ids = window.tokens[lo:hi].tolist()
    parts = ['<span class="n2g-cut">…</span>'] if lo > 0 else []
    for i, (tid, title, level, audible) in enumerate(zip(ids, titles, levels, loud)):
        esc = escaped[tid] if 0 <= tid < n_shown else str(escape(vocab_text(shown, tid)))
        if level or i == pivot:
            parts.append(f'<span class="{_LEVEL_CLASS[level] if i != pivot else _PIVOT_CLASS[level]}" '
                         f'title="{title}">{esc}</span>')
        elif audible:
            parts.append(f'<span title="{title}">{esc}</span>')
        else:
            parts.append(esc)
    if hi < len(window.tokens):
        parts.append('<span class="n2g-cut">…</span>')
    return ExampleView(
        split=split,
        rank=rank,
        value=window.value,
        norm=window.value / a_max if a_max > 0 else 0.0,
        doc_title=corpus.title(window.doc),
        doc_url=corpus.url(window.doc),
        pivot_text=vocab_text(shown, ids[pivot]) if 0 <= pivot < len(ids) else None,
        fitted=fitted,
        html=Markup("".join(parts)),
    )


_LEVEL_CLASS = [f"a{level}" for level in range(11)]
_PIVOT_CLASS = [f"a{level} pv" for level in range(11)]
_ESCAPED: tuple[list[str], list[str]] | None = None  # (vocabulary in display form, each entry as HTML)


def _escaped_vocab(shown: list[str]) -> list[str]:
    """Every entry of ``shown`` HTML-escaped, computed once per process (per vocabulary)."""
    global _ESCAPED
    if _ESCAPED is None or _ESCAPED[0] is not shown:
        _ESCAPED = (shown, [str(escape(t)) for t in shown])
    return _ESCAPED[1]


def _activating(graph: Graph) -> list[str]:
    best: dict[str | None, Node] = {}
    for node in graph.activating_tokens:
        if node.key not in best or node.activation > best[node.key].activation:
            best[node.key] = node
    ranked = sorted(best.values(), key=lambda n: (-n.activation, -n.count, n.id))
    return [display_token(n.token) for n in ranked if n.key is not None]


# ----------------------------------------------------------------------------------------- the stage


class _Related:
    """The relate stage's outputs, when present (a site renders without them)."""

    def __init__(self, work: WorkDir, shown: list[str]):
        self.work, self.shown = work, shown
        self.similar: dict[str, list] = {}
        self.tokens: dict[str, list[str]] = {}
        self.by_activation: dict[str, list] = {}  # neighbours by activation on ordinary text (relate.py)
        self.activation_tokens = 0  # how many tokens of ordinary text those cosines compare
        if work.similar.exists():
            try:
                data = read_json(work.similar)
                self.similar = data.get("neurons") or {}
                self.tokens = data.get("tokens") or {}
                self.by_activation = data.get("activation") or {}
                self.activation_tokens = int(data.get("activation_tokens") or 0)
            except ValueError:
                pass
        self._logits: dict[str, Any] = {}
        self._norm = ""

    def load_layer(self, layer: int) -> None:
        self._logits, self._norm = {}, ""
        path = self.work.logit_effects(layer)
        if path.exists():
            try:
                data = read_json(path)
            except ValueError:
                return
            self._logits = data.get("neurons") or {}
            self._norm = str(data.get("norm") or "")

    def similar_raw(self, layer: int, neuron: int, *, by_activation: bool = False) -> list:
        source = self.by_activation if by_activation else self.similar
        return list(source.get(f"{layer}/{neuron}") or [])

    def logit_raw(self, neuron: int) -> tuple[dict[str, Any] | None, str]:
        return self._logits.get(str(neuron)) or None, self._norm

    def similar_views(self, layer: int, neuron: int, *, by_activation: bool = False) -> list[SimilarView]:
        source = self.by_activation if by_activation else self.similar
        return [
            SimilarView(label=f"L{l2} N{n2}", url=f"../../L{l2}/N{n2}/", similarity=float(sim),
                        tokens=list(self.tokens.get(f"{l2}/{n2}") or []))
            for l2, n2, sim in source.get(f"{layer}/{neuron}") or []
        ]

    def _tok(self, tid: int) -> str:
        return display_token(vocab_text(self.shown, tid))

    def logit_view(self, neuron: int) -> LogitView | None:
        entry = self._logits.get(str(neuron))
        if not entry:
            return None
        return LogitView(
            promoted=[LogitToken(self._tok(int(t)), float(v)) for t, v in entry.get("up") or []],
            suppressed=[LogitToken(self._tok(int(t)), float(v)) for t, v in entry.get("down") or []],
            norm=self._norm,
        )



@dataclass
class _Neuron:
    """What one neuron's pages need, gathered from the mined layer and its fit file."""

    neuron: int
    fit: dict[str, Any] | None
    graph: Graph | None
    status: str


def _read_fit(work: WorkDir, layer: int, neuron: int) -> dict[str, Any] | None:
    path = work.fitted(layer, neuron)
    if not path.exists():
        return None
    try:
        return read_json(path)
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}): delete it and rerun `n2g-site fit`") from None


class _Writer:
    """Plain writes into the staging folders (the whole tree is swapped in at the end)."""

    def __init__(self, docs: Path, fragments: Path):
        self.docs, self.fragments = docs, fragments
        self.pages = 0
        self._dirs: set[Path] = set()

    def _write(self, path: Path, text: str) -> None:
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        path.write_text(text, encoding="utf-8")

    def page(self, md_path: str, text: str) -> None:
        self._write(self.docs / md_path, text)
        self.pages += 1

    def data(self, rel_path: str, text: str) -> None:
        """A static file under docs/ (MkDocs copies it into the site as is)."""
        self._write(self.docs / rel_path, text)

    def fragment(self, md_path: str, html: str) -> None:
        self._write(self.fragments / (md_path[: -len(".md")] + ".html"), html)


def _swap(staged: Path, final: Path) -> None:
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    staged.rename(final)
    if old.exists():
        shutil.rmtree(old)


def _copy_assets(cfg: Config, docs: Path) -> None:
    """Copy ``assets/`` of the built-in templates, then the user's (which override by file name)."""
    sources = [builtin_path("templates") / "assets"]
    if cfg.templates is not None:
        sources.append(Path(cfg.templates) / "assets")
    for src in sources:
        if src.is_dir():
            shutil.copytree(src, docs / "assets", dirs_exist_ok=True)


@dataclass
class _Shared:
    """What rendering any layer needs (built once per process)."""

    work: WorkDir
    manifest: dict[str, Any]
    vocab: list[str]  # raw token strings (the JSON export)
    shown: list[str]  # vocabulary, inline display form
    corpus: _Corpus
    related: _Related
    env: jinja2.Environment
    tpl: dict[str, jinja2.Template]
    site: SiteInfo
    layers: list[int]
    selected: dict[int, list[int]]
    hook_pattern: str
    staged_docs: Path
    staged_frag: Path
    playground: bool  # the work dir has the model's tokenizer: neuron pages get a playground
    build: dict[str, Any]  # guide.build_info(): in every neuron.json, export/index.json, the home page


@dataclass
class _LayerResult:
    summary: LayerSummary
    entries: list[tuple[int, int, list]]  # (layer, neuron, search_index.graph_entries) per graph
    fit_options: dict[str, Any]
    tokens_mined: int
    pages: int
    neurons: int
    export: dict[str, Any] | None  # the layer's export/index.json entry (export.LayerExport.write); None: no neurons
    pack: dict[str, Any]  # the layer's neuron-page pack (site_pages.PackWriter.close)
    shell: str | None  # neuron.md.j2 rendered as the shell page (site_pages.py); None without neurons
    summaries: list[tuple[int, int, str, int, float | None]]  # (layer, neuron, summary, groups, F1) per graph


def _shared(cfg: Config, work: WorkDir, staged_docs: Path, staged_frag: Path) -> _Shared:
    manifest = read_json(work.require(work.manifest, "mine"))
    vocab = work.load_vocab()
    env = make_env(cfg)
    model_info = manifest.get("model_info") or {}
    corpus_info = manifest.get("corpus_info") or {}
    return _Shared(
        work=work,
        manifest=manifest,
        vocab=vocab,
        shown=[display_token(t, inline=True) for t in vocab],
        corpus=_Corpus(work.load_corpus_index(), manifest),
        related=_Related(work, vocab),
        env=env,
        tpl=load_templates(env),
        site=SiteInfo(
            version=str(manifest.get("n2g_site_version") or _pkg_version),
            model=str(model_info.get("name") or manifest.get("model") or "?"),
            corpus=str(corpus_info.get("name") or manifest.get("corpus") or "?"),
            build_date=guide.build_date(),
        ),
        layers=sorted(int(layer) for layer in manifest.get("layers", [])),
        selected={int(k): [int(n) for n in v] for k, v in (manifest.get("neurons") or {}).items()},
        hook_pattern=str(model_info.get("hook") or "blocks.{layer}.mlp.hook_post"),
        staged_docs=staged_docs,
        staged_frag=staged_frag,
        playground=work.tokenizer.is_file(),
        build=_build_info(work, manifest),
    )


def _build_info(work: WorkDir, manifest: dict[str, Any]) -> dict[str, Any]:
    layers = sorted(int(layer) for layer in manifest.get("layers", []))
    selected = {int(k): [int(n) for n in v] for k, v in (manifest.get("neurons") or {}).items()}
    return guide.build_info(manifest, version=str(manifest.get("n2g_site_version") or _pkg_version),
                            date=guide.build_date(), fit=guide.first_fit(work, layers, selected),
                            evaluate=guide.evaluate_options(work))


_WORKER: _Shared | None = None


def _init_worker(cfg: Config, root: Path, staged_docs: Path, staged_frag: Path) -> None:
    global _WORKER
    _WORKER = _shared(cfg, WorkDir(root), staged_docs, staged_frag)


def _layer_task(li: int) -> _LayerResult:
    assert _WORKER is not None
    return _render_layer(_WORKER, li)


def _render_layers(cfg: Config, sh: _Shared, jobs: int | None) -> list[_LayerResult]:
    """Every layer, in worker processes when there is enough work (results in layer order)."""
    n_neurons = sum(len(sh.selected.get(layer, [])) for layer in sh.layers)
    jobs = jobs if jobs is not None else (os.cpu_count() or 1)
    jobs = min(jobs, len(sh.layers))
    if jobs <= 1 or n_neurons < PARALLEL_MIN_NEURONS:
        return [_render_layer(sh, li) for li in range(len(sh.layers))]
    # spawn: no fork of a process that may hold torch threads; each worker loads the shared inputs once.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(cfg, sh.work.root, sh.staged_docs, sh.staged_frag)) as pool:
        return list(pool.map(_layer_task, range(len(sh.layers))))


def _neuron_record(sh: _Shared, layer: int, n: int, it: _Neuron, page: NeuronPage, mined: MinedLayer, row: int,
                   a_max: float, fitted_windows: set[tuple[int, int]], evaluated: dict | None) -> dict[str, Any]:
    """One neuron's ``neuron.json`` (schemas/neuron.schema.json): what its page shows, as data."""
    show = it.status != "dead"
    examples = []
    for split, windows, limit in (("train", mined.train, MAX_TRAIN_EXAMPLES),
                                  ("heldout", mined.heldout, MAX_HELDOUT_EXAMPLES)):
        for rank, w in enumerate(windows.windows(row, limit) if show else []):
            lo, hi = _shown_range(w)
            examples.append(export.example_record(
                w, split=split, rank=rank, a_max=a_max, lo=lo, hi=hi, vocab=sh.vocab,
                doc_title=sh.corpus.title(w.doc), doc_url=sh.corpus.url(w.doc),
                fitted=split == "train" and (w.doc, w.start) in fitted_windows,
            ))
    logits, norm = sh.related.logit_raw(n)
    fit = it.fit or {}
    return {
        "schema": export.SCHEMA,
        "layer": layer,
        "neuron": n,
        "model": str(sh.manifest.get("model") or "?"),
        "corpus": str(sh.manifest.get("corpus") or "?"),
        "page": f"neurons/L{layer}/N{n}/",
        "hook": page.hook,
        "status": it.status,
        "max_activation": export.number(a_max),
        "stats": {
            "max": export.number(page.stats_max),
            "min": export.number(page.stats_min),
            "mean": export.number(page.stats_mean),
            "firing_share": export.number(page.firing),
        },
        "graph": fit.get("graph") if it.graph is not None else None,
        "fit": export.fit_record(it.fit),
        "examples": examples,
        "evaluation": export.evaluation_record(evaluated),
        "similar": export.similar_records(sh.related.similar_raw(layer, n)),
        "similar_activation": export.similar_records(sh.related.similar_raw(layer, n, by_activation=True)),
        "logit_effects": export.logit_record(logits, norm, sh.vocab),
        "summary": page.summary or None,
        "trigger_groups": page.groups if page.summary else None,
        "build": sh.build,
    }


def _draw_layer(work: WorkDir, layer: int, sources: dict[int, str], titles: dict[int, str]) -> dict:
    """Every graph of a layer as SVG (svg.render_svgs), reusing and then updating the layer's drawing cache:
    the cache keeps exactly this render's drawings, so it never grows past the layer's graphs."""
    path = work.svg_cache(layer)
    try:
        cache = orjson.loads(path.read_bytes()) if path.is_file() else {}
    except orjson.JSONDecodeError:
        cache = {}  # a damaged cache is only lost time: draw again
    if not isinstance(cache, dict):
        cache = {}
    before = set(cache)
    svgs = render_svgs(sources, titles, cache=cache)
    if set(cache) != before or not path.is_file():
        atomic_write_bytes(path, orjson.dumps(cache))
    return svgs


def _render_layer(sh: _Shared, li: int) -> _LayerResult:
    """Render one layer: its neuron pages (graphs drawn in batched ``dot`` runs) and its layer page."""
    layers, selected, env, tpl, site = sh.layers, sh.selected, sh.env, sh.tpl, sh.site
    shown, corpus, related, work = sh.shown, sh.corpus, sh.related, sh.work
    out = _Writer(sh.staged_docs, sh.staged_frag)
    layer = layers[li]
    entries: list[tuple[int, int, list]] = []
    exported = export.LayerExport(layer)
    shell: str | None = None
    summaries: list[tuple[int, int, str, int, float | None]] = []
    fit_options: dict[str, Any] = {}
    neuron_count = 0
    mined = MinedLayer.load(work.require(work.mined(layer), "mine"))
    tokens_mined = int(mined.stats.tokens)
    d_mlp = int(mined.stats.max.shape[0])
    neurons = selected.get(layer) or [int(n) for n in mined.neurons]
    mined_set = {int(n) for n in mined.neurons}
    neurons = [n for n in neurons if n in mined_set]
    hook = sh.hook_pattern.replace("{layer}", str(layer))
    related.load_layer(layer)
    firing_share = mined.stats.firing_share(FIRING_THRESHOLD)
    pack = site_pages.PackWriter(sh.staged_frag, f"neurons/L{layer}.jsonl")

    # Gather fits and draw every graph of the layer in batched dot runs.
    items: list[_Neuron] = []
    for n in neurons:
        fit = _read_fit(work, layer, n)
        graph = None
        if fit is None:
            status = "dead" if float(mined.stats.max[n]) <= 0 else "unfitted"
        else:
            status = "dead" if fit.get("status") == "dead" else "fitted"
            if not fit_options and isinstance(fit.get("config"), dict):
                fit_options = dict(fit["config"])
            if status == "fitted" and fit.get("graph"):
                try:
                    graph = Graph.from_json(fit["graph"])
                except (ValueError, TypeError, KeyError) as exc:
                    raise UserError(
                        f"{work.fitted(layer, n)}: bad graph ({exc}); delete it and rerun `n2g-site fit`"
                    ) from None
                if not graph.nodes:
                    graph = None
        items.append(_Neuron(n, fit, graph, status))
        if graph is not None:
            entries.append((layer, n, graph_entries(graph)))
    dots = {it.neuron: graph_dot(it.graph) for it in items if it.graph is not None}
    svgs = _draw_layer(work, layer, {n: d.source for n, d in dots.items()},
                       {n: f"N2G graph of layer {layer}, neuron {n}" for n in dots})

    rows: list[LayerRow] = []
    f1s: list[float] = []
    layer_link_from_neuron = Link(f"Layer {layer}", f"../../../layers/L{layer}/")
    for i, it in enumerate(items):
        n, fit = it.neuron, it.fit or {}
        row = mined.row(n)
        stats_max = float(mined.stats.max[n])
        a_max = _float(fit.get("max_activation"), 0.0)
        if not a_max > 0:
            a_max = stats_max if stats_max > 0 else 1.0
        hist = _hist_view(mined.stats.hist[n])
        firing = float(firing_share[n])
        fitted_windows = {
            (int(e.get("doc", -1)), int(e.get("window_start", -1))) for e in fit.get("examples") or []
        }
        show = it.status != "dead"
        train = [
            _example(w, split="train", rank=r, a_max=a_max, shown=shown, corpus=corpus,
                     fitted=(w.doc, w.start) in fitted_windows)
            for r, w in enumerate(mined.train.windows(row, MAX_TRAIN_EXAMPLES))
        ] if show else []
        heldout_ex = [
            _example(w, split="heldout", rank=r, a_max=a_max, shown=shown, corpus=corpus, fitted=False)
            for r, w in enumerate(mined.heldout.windows(row, MAX_HELDOUT_EXAMPLES))
        ] if show else []
        ho = fit.get("heldout")
        heldout = None
        if isinstance(ho, dict):
            heldout = HeldoutView(
                precision=_float(ho.get("precision")),
                recall=_float(ho.get("recall")),
                f1=_float(ho.get("f1")),
                tokens=int(ho.get("tokens") or 0),
                true_firing=int(ho.get("true_firing") or 0),
                predicted_firing=int(ho.get("predicted_firing") or 0),
            )
            if not math.isnan(heldout.f1):
                f1s.append(heldout.f1)
        gview = None
        if it.graph is not None:
            d = dots[n]
            svg = svgs.get(n)
            gview = GraphView(
                svg=Markup(svg) if svg else None,
                nodes=d.nodes,
                drawn=d.drawn,
                hidden=d.hidden,
                patterns=sum(1 for node in it.graph.nodes if node.end is not None),
                depth=it.graph.depth,
                activating=_activating(it.graph),
            )
        evaluated = read_evaluation(work, layer, n)  # read once: the page and neuron.json both use it
        shape = describe(it.graph) if it.graph is not None else None
        page = NeuronPage(
            layer=layer,
            neuron=n,
            title=f"Layer {layer} · Neuron {n}",
            hook=str(fit.get("hook") or hook),
            status=it.status,
            max_activation=a_max,
            stats_max=stats_max,
            stats_min=float(mined.stats.min[n]),
            stats_mean=float(mined.stats.mean[n]),
            firing=firing,
            hist=hist,
            heldout=heldout,
            augmenter=fit.get("augmenter"),
            cost=_phase_order(fit.get("cost")),
            graph=gview,
            train_examples=train,
            heldout_examples=heldout_ex,
            layer_link=layer_link_from_neuron,
            home_url="../../../",
            reading_url="../../../reading/",
            prev=Link(f"Neuron {items[i - 1].neuron}", f"../N{items[i - 1].neuron}/") if i > 0 else None,
            next=Link(f"Neuron {items[i + 1].neuron}", f"../N{items[i + 1].neuron}/")
            if i + 1 < len(items) else None,
            similar=related.similar_views(layer, n),
            similar_activation=related.similar_views(layer, n, by_activation=True),
            similar_activation_tokens=related.activation_tokens,
            logits=related.logit_view(n),
            fidelity=neuron_fidelity(evaluated),
            fidelity_url="../../../fidelity/",
            json_url=export.JSON_NAME,
            summary=shape.summary if shape else "",
            groups=shape.groups if shape else 0,
            misses=misses_view(evaluated, shown) if show else None,
            playground=playground.patterns(it.graph, fire_threshold(evaluated))
            if it.graph is not None and sh.playground else None,
        )
        record = export.dumps(_neuron_record(sh, layer, n, it, page, mined, row, a_max, fitted_windows, evaluated)) + "\n"
        exported.add(record)
        files = {export.JSON_NAME: record}
        if shell is None:  # the one neuron page MkDocs builds (site_pages.py): this page's frame, a marker title
            shell = _render(env, tpl["neuron.md.j2"], page=dataclasses.replace(page, title=site_pages.TITLE),
                            site=site, placeholder=site_pages.BODY)
        body = _render(env, tpl["neuron_body.html.j2"], page=page, site=site)
        if gview is not None and gview.svg and len(body.encode("utf-8")) > PAGE_BODY_BUDGET and str(gview.svg) in body:
            # A large graph goes into graph.svg next to the page (written there by site_pages.py).
            files[GRAPH_FILE] = standalone_svg(str(gview.svg))
            body = body.replace(str(gview.svg), svg_object(str(gview.svg), GRAPH_FILE), 1)
        pack.add(f"neurons/L{layer}/N{n}/", page.title, body, files)
        out.pages += 1
        neuron_count += 1
        top = gview.activating[:TOP_TOKENS] if gview else []
        if not top:
            seen: list[str] = []
            for ex in train:
                t = ex.pivot_text
                if t is not None and t not in seen:
                    seen.append(t)
            top = seen[:TOP_TOKENS]
        rows.append(
            LayerRow(
                neuron=n,
                url=f"../../neurons/L{layer}/N{n}/",
                status=it.status,
                max_activation=stats_max,
                mean=page.stats_mean,
                firing=firing,
                f1=heldout.f1 if heldout and not math.isnan(heldout.f1) else None,
                top_tokens=top,
                summary=page.summary,
                groups=page.groups,
            )
        )
        if shape is not None:
            f1 = heldout.f1 if heldout and not math.isnan(heldout.f1) else None
            summaries.append((layer, n, shape.summary, shape.groups, f1))

    mean_f1 = float(np.mean(f1s)) if f1s else None
    lpage = LayerPage(
        layer=layer,
        title=f"Layer {layer}",
        hook=hook,
        d_mlp=d_mlp,
        rows=rows,
        fitted=sum(r.status == "fitted" for r in rows),
        dead=sum(r.status == "dead" for r in rows),
        unfitted=sum(r.status == "unfitted" for r in rows),
        mean_f1=mean_f1,
        prev=Link(f"Layer {layers[li - 1]}", f"../L{layers[li - 1]}/") if li > 0 else None,
        next=Link(f"Layer {layers[li + 1]}", f"../L{layers[li + 1]}/") if li + 1 < len(layers) else None,
    )
    md_path = layer_md_path(layer)
    out.page(md_path, _render(env, tpl["layer.md.j2"], page=lpage, site=site, placeholder=PLACEHOLDER))
    out.fragment(md_path, _render(env, tpl["layer_body.html.j2"], page=lpage, site=site))
    return _LayerResult(
        summary=LayerSummary(layer, md_path, len(rows), lpage.fitted, lpage.dead, mean_f1),
        entries=entries,
        fit_options=fit_options,
        tokens_mined=tokens_mined,
        pages=out.pages,
        neurons=neuron_count,
        export=exported.write(sh.staged_docs) if exported.neurons else None,
        pack=pack.close(),
        shell=shell,
        summaries=summaries,
    )


def render_site(cfg: Config, work: WorkDir, *, jobs: int | None = None) -> RenderSummary:
    """Render every page of the run (see :func:`_render_site`), with one build date throughout (guide.py)."""
    with guide.pinned_build_date():
        return _render_site(cfg, work, jobs=jobs)


def _render_site(cfg: Config, work: WorkDir, *, jobs: int | None = None) -> RenderSummary:
    """Render every page of the run in ``work`` into ``work.docs`` and ``work.fragments``.

    Layers render in ``jobs`` worker processes (default: the CPU count) when there are at least
    :data:`PARALLEL_MIN_NEURONS` neurons; the output does not depend on ``jobs``.
    """
    t0 = time.perf_counter()
    staged_docs = work.root / ".docs.staging"
    staged_frag = work.root / ".fragments.staging"
    for path in (staged_docs, staged_frag):
        if path.exists():
            shutil.rmtree(path)
    sh = _shared(cfg, work, staged_docs, staged_frag)
    manifest, env, tpl, site, corpus = sh.manifest, sh.env, sh.tpl, sh.site, sh.corpus
    model_info = manifest.get("model_info") or {}
    corpus_info = manifest.get("corpus_info") or {}
    out = _Writer(staged_docs, staged_frag)
    search = SearchIndex()

    results = _render_layers(cfg, sh, jobs)
    summaries = [r.summary for r in results]
    neuron_count = sum(r.neurons for r in results)
    out.pages += sum(r.pages for r in results)
    fit_options: dict[str, Any] = next((r.fit_options for r in results if r.fit_options), {})
    tokens_mined: int | None = results[-1].tokens_mined if results else None
    for r in results:
        for layer, neuron, entries in r.entries:
            search.add(layer, neuron, entries)
        for layer, neuron, summary, groups, f1 in r.summaries:
            search.add_summary(layer, neuron, summary, groups, f1)
    export_index = export.write_index(staged_docs, [r.export for r in results if r.export], sh.build)
    # Neuron pages are written after MkDocs from one shell page (site_pages.py), not built one by one.
    shell = next((r.shell for r in results if r.shell is not None), None)
    if shell is not None:
        out.data(site_pages.SHELL_MD, shell)
    site_pages.write_manifest(staged_frag, [r.pack for r in results])
    export.copy_schemas(staged_docs)

    _prose_pages(cfg, sh, out, fit_options, tokens_mined, export_index)

    # Pattern search over the token index (the browser does the searching).
    patterns_page = PatternPage(examples=[PatternExample(f, b) for f, b in search.examples()], max_per_key=MAX_PER_KEY,
                                max_context=MAX_CONTEXT_KEYS)
    out.page("patterns.md", _render(env, tpl["patterns.md.j2"], page=patterns_page, site=site, placeholder=PLACEHOLDER))
    out.fragment("patterns.md", _render(env, tpl["patterns_body.html.j2"], page=patterns_page, site=site))

    # Fidelity: per-layer charts and table of the evaluate stage.
    fidelity = fidelity_page(env, work)
    out.page("fidelity.md", _render(env, tpl["fidelity.md.j2"], page=fidelity, site=site, placeholder=PLACEHOLDER))
    out.fragment("fidelity.md", _render(env, tpl["fidelity_body.html.j2"], page=fidelity, site=site))

    # Home.
    licence = corpus_info.get("licence")
    credit = None
    if corpus.wiki:
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
        layers=summaries,
        neurons=neuron_count,
        reading_md="reading.md",
        export_index=export.index_path(),
        build=sh.build,
    )
    out.page("index.md", _render(env, tpl["index.md.j2"], page=home, site=site, placeholder=PLACEHOLDER))
    out.fragment("index.md", _render(env, tpl["home_fidelity.html.j2"], page=fidelity, site=site))
    _copy_assets(cfg, staged_docs)
    search.write(staged_docs / SEARCH_DIR)
    playground.write_tokenizer_data(work, sh.vocab, model_info.get("bos"), staged_docs)

    _swap(staged_docs, work.docs)
    _swap(staged_frag, work.fragments)
    return RenderSummary(pages=out.pages, neurons=neuron_count, seconds=time.perf_counter() - t0)


def _phase_order(cost: Any) -> dict[str, dict[str, int]] | None:
    """The fit's cost by phase in the order the phases run (the file has them sorted by name)."""
    if not isinstance(cost, dict):
        return None
    return {phase: cost[phase] for phase in PHASES if phase in cost} | {k: v for k, v in cost.items() if k not in PHASES}


def _reading_svg() -> Markup | None:
    """A toy graph for the reading page: ' Paris' after ' in' (one token apart) or right after ' to'."""
    nodes = [
        Node(0, -1, 0, "paris", " Paris", 1.0, 0.95, None, 3),
        Node(1, 0, 1, "in", " in", 0.92, 0.05, 0.95, 2),
        Node(2, 0, 1, None, "", 0.2, 0.0, None, 1),
        Node(3, 2, 2, "to", " to", 0.81, 0.0, 0.7, 1),
        Node(4, -1, 0, "france", " France", 1.0, 0.62, None, 1),
        Node(5, 4, 1, "in", " in", 0.88, 0.04, 0.62, 1),
    ]
    svg = render_svgs({0: graph_dot(Graph(nodes)).source}, {0: "Example N2G graph"}).get(0)
    return Markup(svg) if svg else None


def _prose_pages(cfg: Config, sh: _Shared, out: _Writer, fit_options: dict[str, Any], tokens_mined: int | None,
                 export_index: dict[str, Any]) -> None:
    """How to read a graph (with a worked example from this build), method, model and corpus, citation, data."""
    env, tpl, site, build = sh.env, sh.tpl, sh.site, sh.build
    picked = guide.pick_example(sh.work, sh.layers, sh.selected)
    example = None
    if picked is not None:
        layer, neuron, f1, source, graph, candidates = picked
        svg = render_svgs({0: graph_dot(graph).source}, {0: f"N2G graph of layer {layer}, neuron {neuron}"}).get(0)
        example = guide.worked_example(layer, neuron, f1, source, graph, candidates, svg)
    reading = guide.ReadingPage(example=example, toy_svg=_reading_svg() if example is None else None,
                                options=fit_options or dict(build["options"]["fit"]))
    out.page("reading.md", _render(env, tpl["reading.md.j2"], page=reading, site=site, placeholder=PLACEHOLDER))
    out.fragment("reading.md", _render(env, tpl["reading_body.html.j2"], page=reading, site=site))
    mask = (sh.manifest.get("model_info") or {}).get("mask")
    pages = {
        "method.md": guide.method_page(build, display_token(mask) if isinstance(mask, str) else None),
        "model.md": guide.model_page(build, sh.manifest, tokens_mined),
        "cite.md": guide.cite_page(build, cfg.site_url),
        "data.md": guide.data_page(build, export_index),
    }
    for md_path, page in pages.items():
        out.page(md_path, _render(env, tpl[md_path + ".j2"], page=page, site=site))
