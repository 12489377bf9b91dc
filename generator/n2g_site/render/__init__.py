"""The render stage: work dir -> ``docs/`` (light Markdown + assets) and ``fragments/`` (heavy HTML).

Pages and where their heavy HTML lives::

    docs/index.md                 home (model, corpus + credit, options, layers)
    docs/reading.md               how to read a neuron graph    fragments/reading.html (worked example)
    docs/{method,model,cite,data}.md  prose pages with this build's values (guide.py, prose.py)
    docs/layers/L{l}.md           layer table                   fragments/layers/L{l}.html
    docs/neurons/n2g-shell/page.md  the one neuron-shaped page MkDocs builds (publish/pages.py)
                                  every neuron page's body and large graph.svg:
                                                                fragments/neurons/L{l}.jsonl (a pack per layer)
    docs/assets/...               the templates' assets (n2g.css, n2g.js)
    docs/token-search/*.js        the token-search index (search_index.py)
    docs/export/layer_LL.jsonl.gz  every neuron of a layer, one line each: the site's data download;
                                  index.json; the schemas (export.py)

Layer and prose Markdown is a title and the placeholder paragraph ``N2G-FRAGMENT``; the MkDocs hook
(``publish/hooks.py``) swaps in the fragment by plain string replacement, so Python-Markdown never parses
the heavy HTML. Neuron pages are written after the MkDocs build from the shell page and the packs
(``publish/pages.py``).

Modules: ``inputs`` (what every layer reads once), ``neuron`` (one neuron gathered once -> its page context,
export record and layer row), ``layer`` (one layer, its graphs drawn by ``svg``), ``prose`` (home,
reading, method, ..., pattern search, fidelity), ``jinja_env``, ``writer`` (staging folders).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..publish import pages as site_pages
from ..store import WorkDir
from . import export, guide, playground
from .inputs import Shared, load_shared
from .layer import LayerResult, render_layer
from .prose import fidelity_and_home, pattern_search_page, prose_pages
from .search_index import SearchIndex
from .writer import Writer, copy_assets, swap

SEARCH_DIR = "token-search"  # docs/token-search/: the token-search index (search_index.py)
PARALLEL_MIN_NEURONS = 400  # below this, worker start-up costs more than it saves


@dataclass
class RenderSummary:
    pages: int  # Markdown pages written
    neurons: int  # neuron pages among them
    seconds: float

    def __str__(self) -> str:
        return f"{self.pages} pages ({self.neurons} neurons) in {self.seconds:.1f} s"


def render_site(cfg: Config, work: WorkDir, *, jobs: int | None = None) -> RenderSummary:
    """Render every page of the run in ``work`` into ``work.docs`` and ``work.fragments``, with one build
    date throughout (guide.py).

    Layers render in ``jobs`` worker processes (default: the CPU count) when there are at least
    :data:`PARALLEL_MIN_NEURONS` neurons; the output does not depend on ``jobs``. Everything is written
    into staging folders, swapped in at the end.
    """
    with guide.pinned_build_date():
        t0 = time.perf_counter()
        staged_docs, staged_frag = work.root / ".docs.staging", work.root / ".fragments.staging"
        for path in (staged_docs, staged_frag):
            if path.exists():
                shutil.rmtree(path)
        sh = load_shared(cfg, work, staged_docs, staged_frag)
        out = Writer(staged_docs, staged_frag)

        # Every layer: neuron pages (packed), the layer's export file and its layer page.
        results = _render_layers(cfg, sh, jobs)
        neurons = sum(r.neurons for r in results)
        out.pages += sum(r.pages for r in results)
        fit_options = next((r.fit_options for r in results if r.fit_options), {})
        tokens_mined = results[-1].tokens_mined if results else None

        # The neuron pages' shell and the list of packs (publish/pages.py writes the pages after MkDocs).
        shell = next((r.shell for r in results if r.shell is not None), None)
        if shell is not None:
            out.data(site_pages.SHELL_MD, shell)
        site_pages.write_manifest(staged_frag, [r.pack for r in results])

        # The data: export/index.json over the layer files, and the schemas.
        export_index = export.write_index(staged_docs, [r.export for r in results if r.export], sh.build, sh.vocab)
        export.copy_schemas(staged_docs)

        # The token index (header search box and pattern search).
        search = SearchIndex()
        for r in results:
            for layer, neuron, entries in r.entries:
                search.add(layer, neuron, entries)
            for layer, neuron, summary, groups, f1, badge in r.summaries:
                search.add_summary(layer, neuron, summary, groups, f1, badge)
            if r.neuron_ids:
                search.add_neurons(r.summary.layer, r.neuron_ids)

        # The site's own pages.
        prose_pages(cfg, sh, out, fit_options, tokens_mined, export_index)
        pattern_search_page(sh, out, search)
        fidelity_and_home(sh, out, [r.summary for r in results], neurons, fit_options, tokens_mined)

        copy_assets(cfg, staged_docs)
        search.write(staged_docs / SEARCH_DIR)
        playground.write_tokenizer_data(work, sh.vocab, (sh.manifest.get("model_info") or {}).get("bos"), staged_docs)
        swap(staged_docs, work.docs)
        swap(staged_frag, work.fragments)
        _remove_old_drawing_cache(work)
        return RenderSummary(pages=out.pages, neurons=neurons, seconds=time.perf_counter() - t0)


def _remove_old_drawing_cache(work: WorkDir) -> None:
    """Delete the Graphviz drawings that render kept in ``cache/svg_LL.json`` until issue 15 (~3-20 KB a
    graph, never read again), and ``cache/`` if nothing else is in it."""
    cache = work.root / "cache"
    for path in cache.glob("svg_*.json"):
        path.unlink(missing_ok=True)
    if cache.is_dir() and not any(cache.iterdir()):
        cache.rmdir()


_WORKER: Shared | None = None


def _init_worker(cfg: Config, root: Path, staged_docs: Path, staged_frag: Path) -> None:
    global _WORKER
    _WORKER = load_shared(cfg, WorkDir(root), staged_docs, staged_frag)


def _layer_task(li: int) -> LayerResult:
    assert _WORKER is not None
    return render_layer(_WORKER, li)


def _render_layers(cfg: Config, sh: Shared, jobs: int | None) -> list[LayerResult]:
    """Every layer, in worker processes when there is enough work (results in layer order)."""
    n_neurons = sum(len(sh.selected.get(layer, [])) for layer in sh.layers)
    jobs = jobs if jobs is not None else (os.cpu_count() or 1)
    jobs = min(jobs, len(sh.layers))
    if jobs <= 1 or n_neurons < PARALLEL_MIN_NEURONS:
        return [render_layer(sh, li) for li in range(len(sh.layers))]
    # spawn: no fork of a process that may hold torch threads; each worker loads the shared inputs once.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        jobs, mp_context=ctx, initializer=_init_worker, initargs=(cfg, sh.work.root, sh.staged_docs, sh.staged_frag)
    ) as pool:
        return list(pool.map(_layer_task, range(len(sh.layers))))
