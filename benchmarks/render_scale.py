"""Render + publish at scale: a synthetic N-neuron work dir (no model), then the relate (similar neurons),
render and publish stages, timed, with page, site and search-shard sizes.

    .venv/bin/python benchmarks/render_scale.py --neurons 50000            # the issue's target size
    .venv/bin/python benchmarks/render_scale.py --neurons 5000 --keep /tmp/bench5k

The work dir mimics SmolLM2-135M (1,536 neurons per layer, layers filled in order): per neuron 20 training
and 20 held-out windows of 53 tokens (the mine defaults; activations as sparse as the demo's), a fitted graph shaped
like a real one (below; a trie over a
Zipf-distributed 8,000-token vocabulary, hostile tokens included), held-out scores, fit cost; per layer
stats of every neuron, activations on a 4,096-token ordinary-text sample and logit effects (10 promoted and
10 suppressed tokens per neuron); the embedded tokenizer, so every neuron page carries its playground data.
Graph shapes (node count, activating tokens, depth, patterns) are drawn from the real fitted graphs of the demo
build (graph_sizes.json, long tail included: one of its 24 graphs has 1,712 nodes). Targets (2 cores): render +
build under 5 minutes, the whole site at most 20 KB a neuron, no neuron page over 40 KB, largest search shard
under 100 KB.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from n2g_site.config import Config
from n2g_site.n2g.graph import normalise
from n2g_site.store import HIST_EDGES, ExampleSet, LayerStats, MinedLayer, WorkDir, write_json

PER_LAYER = 1536
K = 20
BEFORE, AFTER = 40, 12
W = BEFORE + 1 + AFTER
VOCAB_SIZE = 8000
ORDINARY_ROWS, ORDINARY_LEN = 16, 256  # the ordinary held-out sample: 4,096 tokens (mine's default)
HOSTILE = ["<script>alert(1)</script>", '"', "'", "&amp;", "\n", "\t", " ", "\x07", "中文", "😀"]
TARGETS = {
    "render + build (s)": 300.0,
    "site per neuron (KB)": 20.0,
    "largest page (KB)": 40.0,
    "largest shard (KB)": 100.0,
}  # the issue's; relate (similar neurons) runs before render, timed too
RELATE = "relate: similar neurons (graphs, activations)"


def _vocab() -> list[str]:
    rng = np.random.default_rng(7)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["<|endoftext|>", *HOSTILE]
    seen = set(words)
    while len(words) < VOCAB_SIZE:
        w = "".join(rng.choice(letters, rng.integers(2, 9)))
        w = (" " if rng.random() < 0.7 else "") + (w.title() if rng.random() < 0.2 else w)
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def _zipf(rng: np.random.Generator, n: int) -> np.ndarray:
    """Token ids with a Zipf-like frequency (id 1.. so the doc token 0 is rare)."""
    return np.minimum(rng.zipf(1.15, n), VOCAB_SIZE - 1).astype(np.int32)


GRAPH_SIZES = Path(__file__).with_name("graph_sizes.json")  # real fitted graphs: nodes, roots, depth, patterns


def _real_shapes() -> np.ndarray:
    """[nodes, activating tokens, depth, patterns] of every real fitted graph in graph_sizes.json."""
    return np.array(json.loads(GRAPH_SIZES.read_text(encoding="utf-8"))["graphs"], dtype=np.float64)


def _shape(rng: np.random.Generator, shapes: np.ndarray) -> tuple[int, int, int, float]:
    """A graph shape drawn from the real ones, long tail included: one real graph at random, its node count
    jittered (x lognormal, sigma 0.25); (nodes, activating tokens, depth, share of nodes ending a pattern)."""
    nodes, roots, depth, patterns = shapes[int(rng.integers(len(shapes)))]
    size = max(int(roots), int(round(nodes * rng.lognormal(0.0, 0.25))))
    return size, int(roots), int(depth), float(patterns / nodes)


def _graph(
    rng: np.random.Generator, vocab: list[str], size: int, roots: int = 0, depth_cap: int = 7, ends: float = 0.4
) -> list[dict]:
    """A random trie of about ``size`` nodes: ``roots`` activating tokens (1-6 when 0), context up to depth
    ``depth_cap - 1``, ignore nodes; a node ends a pattern with probability ``ends`` (every leaf does)."""
    nodes: list[dict] = []
    n_roots = roots or int(rng.integers(1, 7))
    frontier: list[int] = []
    for _ in range(n_roots):
        tok = vocab[int(_zipf(rng, 1)[0])]
        nodes.append(
            {
                "id": len(nodes),
                "parent": -1,
                "depth": 0,
                "key": normalise(tok),
                "token": tok,
                "importance": 1.0,
                "activation": round(float(rng.uniform(0.5, 1.0)), 3),
                "end": round(float(rng.uniform(0.5, 1.0)), 3) if rng.random() < ends else None,
                "count": int(rng.integers(1, 10)),
            }
        )
        frontier.append(len(nodes) - 1)
    while len(nodes) < size and frontier:
        parent = frontier[int(rng.integers(len(frontier)))]
        depth = nodes[parent]["depth"] + 1
        if depth >= depth_cap:
            frontier.remove(parent)
            continue
        ignore = rng.random() < 0.1
        tok = "" if ignore else vocab[int(_zipf(rng, 1)[0])]
        nodes.append(
            {
                "id": len(nodes),
                "parent": parent,
                "depth": depth,
                "key": None if ignore else normalise(tok),
                "token": tok,
                "importance": round(float(rng.uniform(0.2 if ignore else 0.75, 1.0)), 3),
                "activation": round(float(rng.uniform(0, 0.4)), 3),
                "end": None if ignore or rng.random() >= ends else round(float(rng.uniform(0.5, 1.0)), 3),
                "count": int(rng.integers(1, 5)),
            }
        )
        frontier.append(len(nodes) - 1)
    has_child = {n["parent"] for n in nodes}
    for n in nodes:  # a leaf is the end of a pattern (a trie is built from whole lines)
        if n["id"] not in has_child and n["end"] is None and n["key"] is not None:
            n["end"] = round(float(rng.uniform(0.5, 1.0)), 3)
    return nodes


def _examples(rng: np.random.Generator, n: int, peak: np.ndarray, docs: int, k: int = K) -> ExampleSet:
    ex = ExampleSet.empty(n, k, W)
    ex.tokens[:] = _zipf(rng, n * k * W).reshape(n, k, W)
    # Like the demo's SmolLM2 windows (measured: 12-31% of shown tokens at >= 5% of the max, ~40% negative):
    # 40% slightly negative, 40% near zero, 20% between 5% and 50% of the peak.
    kind = rng.random((n, k, W))
    acts = np.where(
        kind < 0.4,
        rng.uniform(-0.1, 0, (n, k, W)),
        np.where(kind < 0.8, rng.uniform(0, 0.04, (n, k, W)), rng.uniform(0.05, 0.5, (n, k, W))),
    )
    ex.acts[:] = acts.astype(np.float32) * peak[:, None, None]
    value = peak[:, None] * np.linspace(1.0, 0.4, k, dtype=np.float32)[None, :]
    ex.acts[:, :, BEFORE] = value
    ex.value[:] = value
    ex.pivot[:] = BEFORE
    ex.doc[:] = rng.integers(0, docs, (n, k))
    ex.start[:] = rng.integers(0, 200, (n, k))
    return ex


def _bottom(rng: np.random.Generator, n: int, depth: np.ndarray, docs: int) -> ExampleSet:
    """Bottom windows: the top windows' shape mirrored, each reaching down to -``depth`` (the stats' min)."""
    ex = _examples(rng, n, depth, docs)
    ex.acts[:] = -ex.acts
    ex.value[:] = -ex.value
    return ex


def _band(rng: np.random.Generator, n: int, peak: np.ndarray, docs: int, m: int = 16) -> ExampleSet:
    """A band sample (mine.BandSample, --band-windows 16): the top windows' shape, peaks spread over the range
    and leaning high, as the peak ** 2 weights draw them (shares u ** 0.6 of the peak, u uniform in
    [0.02, 1]), highest first."""
    ex = _examples(rng, n, peak, docs, m)
    share = np.sort(rng.uniform(0.02, 1.0, (n, m)) ** 0.6, axis=1)[:, ::-1].astype(np.float32)
    ex.acts[:] = ex.acts * np.minimum(share, 0.5)[:, :, None] * 2  # quieter context in a quieter window
    value = peak[:, None] * share
    ex.acts[:, :, BEFORE] = value
    ex.value[:] = value
    return ex


def _ordinary(rng: np.random.Generator, peak: np.ndarray):
    """The ordinary held-out sample (the same 16 x 256 tokens in every layer, as mine writes it): each
    neuron fires (10-100% of its peak) on the tokens of its 3-8 Zipf-drawn triggers, else noise of +-2%."""
    from n2g_site.store import OrdinaryText

    tokens = _zipf(np.random.default_rng(99), ORDINARY_ROWS * ORDINARY_LEN).reshape(ORDINARY_ROWS, ORDINARY_LEN)
    n = len(peak)
    triggers = _zipf(rng, n * 8).reshape(n, 8)
    triggers[np.arange(8)[None, :] >= rng.integers(3, 9, n)[:, None]] = -1
    fires = (tokens.reshape(-1)[None, :, None] == triggers[:, None, :]).any(axis=2)  # [n, tokens]
    acts = np.where(fires, rng.uniform(0.1, 1.0, fires.shape), rng.uniform(-0.02, 0.02, fires.shape))
    acts = (acts * peak[:, None]).reshape(n, ORDINARY_ROWS, ORDINARY_LEN).astype(np.float16)
    return OrdinaryText(tokens=tokens, acts=acts, doc=np.arange(ORDINARY_ROWS, dtype=np.int32))


def _make_layer(args: tuple[str, int, list[int], int]) -> int:
    root, layer, neurons, docs = args
    work = WorkDir(Path(root))
    rng = np.random.default_rng(layer)
    vocab = _vocab()
    stats_max = rng.uniform(0.5, 8.0, PER_LAYER).astype(np.float32)
    hist = np.zeros((PER_LAYER, len(HIST_EDGES) + 1), np.int64)
    top = np.searchsorted(HIST_EDGES, stats_max, side="right")  # bins up to each neuron's max
    hist[:, 1:50] = rng.integers(0, 500, (PER_LAYER, 49)) * (np.arange(1, 50)[None, :] <= top[:, None])
    hist[:, 0] = 1_000_000 - hist.sum(axis=1)
    stats = LayerStats(max=stats_max, min=-stats_max / 5, mean=stats_max / 20, hist=hist, tokens=1_000_000)
    peak = stats_max[neurons]
    extra = {}
    if "ordinary" in {f.name for f in dataclasses.fields(MinedLayer)}:  # held-out text rows (newer work dirs)
        extra["ordinary"] = _ordinary(rng, peak)
    if "bottom_train" in {f.name for f in dataclasses.fields(MinedLayer)}:  # bottom windows (mine format 2)
        extra["bottom_train"] = _bottom(rng, len(neurons), peak / 5, docs)
        extra["bottom_heldout"] = _bottom(rng, len(neurons), peak / 5, docs)
    if "band_train" in {f.name for f in dataclasses.fields(MinedLayer)}:  # band samples (mine format 3)
        band_rng = np.random.default_rng(1000 + layer)  # its own stream: the other windows stay as they were
        extra["band_train"] = _band(band_rng, len(neurons), peak, docs)
        extra["band_heldout"] = _band(band_rng, len(neurons), peak, docs)
    MinedLayer(
        layer=layer,
        neurons=np.array(neurons, np.int64),
        train=_examples(rng, len(neurons), peak, docs),
        heldout=_examples(rng, len(neurons), peak, docs),
        stats=stats,
        **extra,
    ).save(work.mined(layer))
    logits = {}
    shapes = _real_shapes()
    for n in neurons:
        size, roots, depth_cap, ends = _shape(rng, shapes)
        f1 = float(rng.uniform(0, 1))
        write_json(
            work.fitted(layer, n),
            {
                "schema": "n2g-site/neuron-fit/1",
                "layer": layer,
                "neuron": n,
                "hook": f"blocks.{layer}.mlp.hook_post",
                "status": "fitted",
                "max_activation": float(stats_max[n]),
                "augmenter": "self",
                "config": {"train_examples": 10, "activation_threshold": 0.5},
                "graph": {"schema": "n2g-site/graph/1", "nodes": _graph(rng, vocab, size, roots, depth_cap, ends)},
                "examples": [{"rank": r, "doc": 0, "window_start": 0} for r in range(10)],
                "heldout": {
                    "precision": f1,
                    "recall": f1,
                    "f1": f1,
                    "tokens": 1000,
                    "true_firing": 20,
                    "predicted_firing": 18,
                },
                "cost": {"prune": {"requests": 60, "tokens": 1200}, "saliency": {"requests": 63, "tokens": 7800}},
            },
        )
        ids = rng.integers(0, VOCAB_SIZE, 20)
        vals = np.sort(rng.normal(0, 0.1, 20))[::-1]
        logits[str(n)] = {
            "up": [[int(t), round(float(v), 4)] for t, v in zip(ids[:10], vals[:10])],
            "down": [[int(t), round(float(v), 4)] for t, v in zip(ids[10:], vals[::-1][:10])],
        }
    write_json(
        work.logit_effects(layer),
        {
            "schema": "n2g-site/logit-effects/1",
            "layer": layer,
            "norm": "final RMSNorm scale folded in",
            "neurons": logits,
        },
    )
    return len(neurons)


def make_workdir(root: Path, neurons: int, jobs: int) -> WorkDir:
    work = WorkDir(root)
    layers = math.ceil(neurons / PER_LAYER)
    selection = {layer: list(range(min(PER_LAYER, neurons - layer * PER_LAYER))) for layer in range(layers)}
    docs = 2000
    write_json(
        work.manifest,
        {
            "n2g_site_version": "bench",
            "model": "synthetic",
            "corpus": "synthetic",
            "model_info": {
                "name": "synthetic",
                "n_layers": layers,
                "d_mlp": PER_LAYER,
                "hook": "blocks.{layer}.mlp.hook_post",
            },
            "corpus_info": {"name": "synthetic", "documents": docs},
            "mine": {"top_k": K, "context_before": BEFORE, "context_after": AFTER},
            "layers": sorted(selection),
            "neurons": {str(k): v for k, v in selection.items()},
        },
        indent=2,
    )
    write_json(work.vocab, _vocab())
    _add_tokenizer(work)
    write_json(work.corpus, [{"id": f"d{i}", "title": f"Document {i} <&>", "split": "train"} for i in range(docs)])
    with ProcessPoolExecutor(jobs) as pool:
        list(pool.map(_make_layer, [(str(root), layer, ns, docs) for layer, ns in selection.items()]))
    return work


def _add_tokenizer(work: WorkDir) -> None:
    """The embedded SmolLM2 tokenizer, so neuron pages carry the playground's graph data as real pages do
    (the synthetic vocabulary's ids do not match it: the playground itself is not exercised here)."""
    from n2g_site.models import embedded_tokenizer, save_tokenizer

    try:
        tokenizer = embedded_tokenizer()
    except Exception as exc:  # noqa: BLE001 - benchmark: say why and go on without it
        print(f"no tokenizer ({exc}): pages are measured without the playground", file=sys.stderr)
        return
    save_tokenizer(tokenizer, work.tokenizer.parent)


def _cpu() -> float:
    import resource

    return sum(
        r.ru_utime + r.ru_stime
        for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


_PARTS = {  # a part of a neuron page's body -> its markup (render's templates), matched on the built page
    "drawing (inline SVG or <object>)": re.compile(
        r'<svg class="n2g-graph".*?</svg>|<object class="n2g-graph.*?</object>', re.S
    ),
    "examples": re.compile(r'<div class="n2g-ex"[^>]*>.*?</div>\n</div>', re.S),
    "activation bands": re.compile(r'<h2 id="bands">.*?</ul>', re.S),
    "playground data": re.compile(
        r'<div class="n2g-playground">.*?</div>|<h2 id="playground">.*?</script>\s*</div>', re.S
    ),
    "stats table": re.compile(r'<div class="n2g-side n2g-stats">.*?</table>', re.S),
    "histogram": re.compile(r'<svg class="n2g-hist".*?</svg>|<div class="n2g-hist".*?</div>', re.S),
    "similar neurons and logit effects": re.compile(
        r'<div class="n2g-related">.*?(?=<h2 id="fidelity"|<h2 id="misses"|\Z)', re.S
    ),
}


def page_parts(site: Path, every: int = 8) -> dict[str, float]:
    """Mean bytes of each part of a neuron page over every ``every``-th page: the frame (everything outside
    the body ``<div class="n2g-neuron">``), the body's parts (:data:`_PARTS`) and the rest of the body."""
    sums: dict[str, int] = {}
    pages = sorted((site / "neurons").rglob("index.html"))[::every]
    for path in pages:
        html = path.read_text(encoding="utf-8")
        total = len(html.encode("utf-8"))
        start, end = html.find('<div class="n2g-neuron">'), html.rfind("</article>")
        body = html[start:end] if start >= 0 else ""
        parts = {"page": total, "frame": total - len(body.encode("utf-8"))}
        for name, pattern in _PARTS.items():
            parts[name] = sum(len(m.group(0).encode("utf-8")) for m in pattern.finditer(body))
        parts["rest of the body (pager, summary, headings, notes)"] = total - sum(
            v for k, v in parts.items() if k != "page"
        )
        for name, value in parts.items():
            sums[name] = sums.get(name, 0) + value
    return {name: value / max(len(pages), 1) for name, value in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neurons", type=int, default=50_000)
    parser.add_argument("--keep", type=Path, help="build here and keep it (default: a temporary folder)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--rerender",
        action="store_true",
        help="then time render again, on the same work dir (not against targets)",
    )
    args = parser.parse_args()

    from n2g_site.publish import publish
    from n2g_site.relate import relate
    from n2g_site.render import render_site

    root = args.keep or Path(tempfile.mkdtemp(prefix="n2g-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}  # CPU seconds of this process and its (finished) workers
    try:
        work_root = root / "work"
        if not (work_root / "run.json").exists():
            t = time.perf_counter()
            make_workdir(work_root, args.neurons, args.jobs)
            times["synthesise work dir (not timed against targets)"] = time.perf_counter() - t
        work = WorkDir(work_root)
        cfg = Config(site_dir=root / "site", work_dir=work_root)
        shutil.rmtree(root / "site", ignore_errors=True)  # a fresh build (removing 50k old pages is not timed)
        shutil.rmtree(work_root / "cache", ignore_errors=True)  # no drawing cache from an older n2g-site
        load = [os.getloadavg()[0]]
        t, c = time.perf_counter(), _cpu()
        relate(cfg, lambda: sys.exit("the benchmark has logit files: no model may load"), work)
        times[RELATE] = time.perf_counter() - t
        cpu[RELATE] = _cpu() - c
        t, c = time.perf_counter(), _cpu()
        render_site(cfg, work)
        times["render"] = time.perf_counter() - t
        cpu["render"] = _cpu() - c
        t, c = time.perf_counter(), _cpu()
        publish(cfg, work)
        times["mkdocs build (publish)"] = time.perf_counter() - t
        cpu["mkdocs build (publish)"] = _cpu() - c
        load.append(os.getloadavg()[0])
        if args.rerender:
            t, c = time.perf_counter(), _cpu()
            render_site(cfg, work)
            times["render again (not timed against targets)"] = time.perf_counter() - t
            cpu["render again (not timed against targets)"] = _cpu() - c

        site = root / "site"
        pages = [p.stat().st_size for p in (site / "neurons").rglob("index.html")]
        shards = [p.stat().st_size for p in (site / "token-search").glob("tokens-*.js")]
        total = times["render"] + times["mkdocs build (publish)"]
        site_bytes = _dir_bytes(site)
        measured = {
            "render + build (s)": total,
            "relate + render + build (s)": total + times[RELATE],
            "site per neuron (KB)": site_bytes / args.neurons / 1000,
            "median page (KB)": statistics.median(pages) / 1000,
            "largest page (KB)": max(pages) / 1000,
            "largest shard (KB)": max(shards) / 1000,
        }
        print(f"\n{len(pages)} neuron pages, {args.neurons} neurons, {os.cpu_count()} CPUs\n")
        print(f"load average (1 min) before / after: {load[0]:.1f} / {load[1]:.1f}\n")
        print("| step | seconds | per neuron | CPU seconds | per neuron |\n|---|---|---|---|---|")
        for name, sec in times.items():
            c = f"{cpu[name]:.1f} | {1000 * cpu[name] / args.neurons:.2f} ms" if name in cpu else "|"
            print(f"| {name} | {sec:.1f} | {1000 * sec / args.neurons:.2f} ms | {c} |")
        print("\n| measure | value | target | ratio to target |\n|---|---|---|---|")
        for name, value in measured.items():
            target = TARGETS.get(name)
            print(
                f"| {name} | {value:.1f} | {target:.0f} | {value / target:.2f} |"
                if target
                else f"| {name} | {value:.1f} | | |"
            )
        print(f"| total site size (MB) | {site_bytes / 1e6:.0f} | | |")
        print(f"| search shards | {len(shards)} (median {statistics.median(shards) / 1000:.1f} KB) | | |")
        graphs = sorted(p.stat().st_size for p in (site / "neurons").rglob("graph.svg"))
        print(f"| graph.svg files | {len(graphs)} ({sum(graphs) / args.neurons / 1000:.1f} KB a neuron) | | |")
        inline = sum(
            len(m.group(0).encode("utf-8"))
            for p in (site / "neurons").rglob("index.html")
            for m in re.finditer(r'<svg class="n2g-graph".*?</svg>', p.read_text(encoding="utf-8"), re.S)
        )
        drawings = (inline + sum(graphs)) / args.neurons / 1000
        print(
            f"| drawings (inline SVG + graph.svg) | {drawings:.1f} KB a neuron; the site without them "
            f"{site_bytes / args.neurons / 1000 - drawings:.1f} KB a neuron | | |"
        )
        print("\n| neuron page part (every 8th page) | KB |\n|---|---|")
        for name, value in page_parts(site).items():
            print(f"| {name} | {value / 1000:.2f} |")
        try:  # the site's parts, as `n2g-site publish` prints them (newer n2g-site)
            from n2g_site.publish import measure_site
        except ImportError:
            return
        size = measure_site(site)
        print("\n| part | MB | KB a neuron |\n|---|---|---|")
        for name, value in size.parts.items():
            print(f"| {name} | {value / 1e6:.1f} | {value / args.neurons / 1000:.2f} |")
        print(f"\n{size.projection(46_080)} (46,080: SmolLM2-135M)")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
