"""The batched engine against the original code's call pattern, on the same neurons (embedded model).

(a) ReferenceEngine: one request at a time, a full-model run_with_cache each (the original N2G code's way);
(b) BatchedEngine: requests pooled across examples and neurons of a layer, deduped, each forward stopped
    after the layer's MLP hook; shared prefixes computed once (tries of sequences packed as rows with a
    tree attention mask), packed into padded batches;
(c) with --engines ...,plain: the batched engine without prefix sharing (whole sequences, sorted by length);
(d) with --engines old,batched: the batched engine, N2G core and proposer of an earlier commit (``--old-ref``,
    loaded from git as a separate package), to check that the new code gives byte-identical graphs and to
    time both in one run.
All fit the same neurons with the same options; the script checks each engine's graphs agree with the
reference's and prints the speed-up, forwards per neuron and tokens/s. Usage (after mining, e.g. the demo
build, or `n2g-site mine --layers 6,23 --neurons 0-1 --work-dir DIR`):

    .venv/bin/python benchmarks/fit_engine.py [--work-dir .n2g/smollm2-135m__wiki] [--layers 6,23] [--neurons 0-1]
        [--engines batched,plain,reference] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from n2g_site.config import Config
from n2g_site.engine import BatchedEngine, ReferenceEngine
from n2g_site.fit import _tasks
from n2g_site.models import load_model
from n2g_site.n2g.graph import normalise
from n2g_site.n2g.phases import Vocabulary, fit_neurons
from n2g_site.proposers import make_proposer
from n2g_site.store import MinedLayer, WorkDir, read_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path(".n2g/smollm2-135m__wiki"))
    parser.add_argument("--layers", default="6,23")
    parser.add_argument("--neurons", default="0-1")
    parser.add_argument("--augmenter", default="self")
    parser.add_argument(
        "--engines",
        default="batched,reference",
        help="comma-separated, run in this order: batched, plain (batched, no prefix sharing), reference",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--segment-tokens", type=int, default=256)
    parser.add_argument("--old-ref", default="89af568", help="the commit the 'old' engine comes from")
    args = parser.parse_args()
    work = WorkDir(args.work_dir)
    manifest = read_json(work.require(work.manifest, "mine"))
    cfg = Config(model=manifest["model"], layers=args.layers, neurons=args.neurons)
    cfg = replace(cfg, fit=replace(cfg.fit, augmenter=args.augmenter))
    model = load_model(cfg.model, device=args.device)
    text = work.load_vocab()
    vocab = Vocabulary(
        text, [normalise(t) for t in text], model.bos_id, model.mask_id, frozenset(model.tokenizer.all_special_ids)
    )
    layers = cfg.select_layers(model.n_layers)
    neurons = list(cfg.select_neurons(model.d_mlp))
    results, seconds, counters, host, cpu_total = {}, {}, {}, {}, {}
    inside = _time_model_calls(model)
    makers = {
        "batched": lambda: BatchedEngine(model, cfg.mine.batch_tokens, segment_tokens=args.segment_tokens),
        "plain": lambda: BatchedEngine(model, cfg.mine.batch_tokens, share_prefixes=False),
        "reference": lambda: ReferenceEngine(model),
    }
    names = args.engines.split(",")
    fitters = {name: fit_neurons for name in names}
    if "old" in names:
        import importlib
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        from fit_host import module, old_package

        old = old_package(args.old_ref)
        old_engine = importlib.import_module(f"{old}.engine")
        makers["old"] = lambda: old_engine.BatchedEngine(
            model, cfg.mine.batch_tokens, segment_tokens=args.segment_tokens
        )
        fitters["old"] = module(old, "n2g.phases").fit_neurons
    engines = {name: makers[name]() for name in names}
    proposers = {name: make_proposer(cfg.fit, model, text, cfg.mine.batch_tokens) for name in names}
    if "old" in names:
        proposers["old"] = module(old, "proposers").make_proposer(cfg.fit, model, text, cfg.mine.batch_tokens)
    for name in names:
        results[name], seconds[name], counters[name], host[name] = [], 0.0, engines[name].counters, 0.0
        cpu_total[name] = 0.0
    print("load average (1, 5, 15 min) at the start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    # Interleaved layer by layer, so a change in the machine's load hits every engine alike.
    for layer in layers:
        mined = MinedLayer.load(work.mined(layer))
        for name in names:
            started, cpu, inside[0] = time.perf_counter(), time.process_time(), 0.0
            results[name] += fitters[name](
                _tasks(mined, neurons, cfg.fit.train_examples), engines[name], cfg.fit, vocab, proposers[name]
            )
            took = time.perf_counter() - started
            seconds[name] += took
            host[name] += time.process_time() - cpu - inside[0]
            cpu_total[name] += time.process_time() - cpu
            print(f"layer {layer}, {name}: {len(neurons)} neurons in {took:.1f} s", flush=True)
    n = len(results[names[0]])
    base = "reference" if "reference" in names else "old" if "old" in names else names[-1]
    differ = False
    for name in names:
        if name == base:
            continue
        same = sum(_agree(a.graph, b.graph) for a, b in zip(results[name], results[base]))
        exact = sum(
            a.graph.to_json() == b.graph.to_json() and a.examples == b.examples and a.cost == b.cost
            for a, b in zip(results[name], results[base])
        )
        print(f"\n{name} vs {base}: graphs, example records and costs identical (exactly): {exact} of {n}")
        differ |= same < n
        sizes = [len(a.graph.nodes) for a in results[name]]
        print(
            f"\n{name} vs {base}: graphs that agree (same nodes and patterns; values within 1e-3): "
            f"{same} of {n} (node counts {sizes})"
        )
    print(
        "\nhost CPU ms/neuron outside the model's forwards (real requests; on a CPU this includes the new code's "
        "device-side steps: tree mask, gather, unembedding of the chosen positions, softmax + top-k): "
        + ", ".join(f"{name} {1000 * host[name] / n:.1f}" for name in names)
        + "; all CPU s/neuron (every thread, forwards included): "
        + ", ".join(f"{name} {cpu_total[name] / n:.2f}" for name in names)
    )
    print(
        "\n| engine | s/neuron | forward calls/neuron | rows/neuron | tokens/neuron | computed tokens/neuron "
        "| tokens/s | computed tokens/s | neurons/s | speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in sorted(names, key=lambda x: -seconds[x]):
        c, s = counters[name], seconds[name]
        print(
            f"| {name} | {s / n:.2f} | {c.forwards / n:.1f} | {c.rows / n:.0f} | {c.tokens / n:.0f} "
            f"| {c.computed / n:.0f} | {c.tokens / s:.0f} | {c.computed / s:.0f} | {n / s:.3f} "
            f"| {seconds[base] / s:.1f}x |"
        )
    print(
        f"\nlayers {layers}, neurons {neurons}, augmenter {args.augmenter}, device {args.device}; "
        f"requests per neuron (before dedupe): {counters[names[0]].requests / n:.0f}; speed-up vs {base}"
    )
    print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    if differ:
        print("a graph that differs: float noise of batched vs single-row matmuls moved a value across a threshold")


def _time_model_calls(model) -> list[float]:
    """Count the CPU seconds spent inside the model (forwards, the proposer's forward; not the new proposer's
    unembedding of the chosen positions, a device-side step that stays in the host column) in
    ``out[0]``, so the fit's own host time is the rest."""
    out, depth = [0.0], [0]

    def timed(fn):
        def call(*args, **kwargs):
            depth[0] += 1
            started = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if not depth[0]:  # nested calls (run_with_hooks -> forward) are counted once
                    out[0] += time.process_time() - started

        return call

    model._forward_hooks = timed(model._forward_hooks)
    model.bridge.forward = timed(model.bridge.forward)
    model.bridge.run_with_hooks = timed(model.bridge.run_with_hooks)
    return out


def _agree(a, b) -> bool:
    """Same trie (keys, parents, depths) and values within 1e-3 (batched and single-row matmuls round differently)."""
    if [(x.key, x.parent, x.depth) for x in a.nodes] != [(x.key, x.parent, x.depth) for x in b.nodes]:
        return False
    values = lambda g: np.array([[x.importance, x.activation, -1 if x.end is None else x.end] for x in g.nodes])  # noqa: E731
    return bool(np.allclose(values(a), values(b), atol=1e-3)) if a.nodes else True


if __name__ == "__main__":
    main()
