"""How much does ``--dtype`` change the graphs? The same neurons fitted from the same mined windows with the
model in fp32 and in each other dtype (bf16, fp16 on the CPU; tf32 too on a CUDA device).

The mined windows (and each neuron's max activation) come from an fp32 work dir, so this isolates the fit's
own forward passes: prune, saliency and augmentation read every activation at the dtype's precision. For
each dtype it prints the share of graphs identical to fp32's, the mean Jaccard overlap of their patterns,
and the held-out F1 of both. Usage (after mining, e.g. the demo build):

    python benchmarks/dtype_agreement.py --work-dir .n2g/smollm2-135m__wiki --layers 6,23 --neurons 0-1 \
        [--dtypes bf16,fp16] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from n2g_site.config import Config, FitConfig
from n2g_site.engine import BatchedEngine
from n2g_site.evaluate import score_predictor
from n2g_site.fit import _tasks
from n2g_site.models import load_model
from n2g_site.n2g.graph import normalise
from n2g_site.n2g.phases import Vocabulary, fit_neurons
from n2g_site.n2g.predict import KeyIndex, Predictor
from n2g_site.proposers import make_proposer
from n2g_site.store import MinedLayer, WorkDir, read_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path(".n2g/smollm2-135m__wiki"))
    parser.add_argument("--layers", default="6,23")
    parser.add_argument("--neurons", default="0-1")
    parser.add_argument("--dtypes", default="bf16,fp16")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    work = WorkDir(args.work_dir)
    manifest = read_json(work.require(work.manifest, "mine"))
    cfg = Config(model=manifest["model"], layers=args.layers, neurons=args.neurons, fit=FitConfig(augmenter="self"))
    text = work.load_vocab()
    keys = KeyIndex(text)
    results: dict[str, list] = {}
    seconds: dict[str, float] = {}
    for dtype in ["fp32", *args.dtypes.split(",")]:
        model = load_model(cfg.model, device=args.device, dtype=dtype)
        vocab = Vocabulary(
            text, [normalise(t) for t in text], model.bos_id, model.mask_id, frozenset(model.tokenizer.all_special_ids)
        )
        engine = BatchedEngine(model, cfg.mine.batch_tokens)
        proposer = make_proposer(cfg.fit, model, text, cfg.mine.batch_tokens)
        started = time.perf_counter()
        results[dtype] = []
        for layer in cfg.select_layers(model.n_layers):
            mined = MinedLayer.load(work.mined(layer))
            tasks = _tasks(mined, list(cfg.select_neurons(model.d_mlp)), cfg.fit.train_examples)
            for result in fit_neurons(tasks, engine, cfg.fit, vocab, proposer):
                windows = [(w.tokens, w.acts) for w in mined.heldout.windows(mined.row(result.task.neuron))]
                f1 = (
                    score_predictor(
                        Predictor(result.graph, keys),
                        windows,
                        result.task.max_activation,
                        cfg.fit.fire_threshold,
                        model.bos_id,
                    ).f1
                    if windows
                    else None
                )
                results[dtype].append((result.graph.to_json(), f1))
        seconds[dtype] = time.perf_counter() - started
        print(f"{dtype}: {len(results[dtype])} neurons in {seconds[dtype]:.1f} s", flush=True)
        del model, engine, proposer
    base = results["fp32"]
    print("\n| dtype | neurons | graphs identical to fp32 | mean node-set Jaccard | held-out F1 (fp32 -> dtype) | s |")
    print("|---|---|---|---|---|---|")
    for dtype, rows in results.items():
        same = sum(a[0] == b[0] for a, b in zip(base, rows))
        jac = [jaccard(a[0], b[0]) for a, b in zip(base, rows)]
        f1a = np.mean([a[1] for a in base if a[1] is not None])
        f1b = np.mean([b[1] for b in rows if b[1] is not None])
        print(
            f"| {dtype} | {len(rows)} | {same}/{len(rows)} | {np.mean(jac):.3f} | {f1a:.3f} -> {f1b:.3f} | "
            f"{seconds[dtype]:.0f} |"
        )


def jaccard(a: dict, b: dict) -> float:
    """Overlap of two graphs' node sets (each node: its path of keys from the activating token)."""
    x, y = node_paths(a), node_paths(b)
    return len(x & y) / max(len(x | y), 1)


def node_paths(graph: dict) -> set[tuple]:
    """Each node as the tuple of keys from its activating token (the root) down to it."""
    nodes = graph["nodes"]
    paths: list[tuple] = []
    for node in nodes:  # parents come first
        parent = paths[node["parent"]] if node["parent"] >= 0 else ()
        paths.append(parent + (node["key"],))
    return set(paths)


if __name__ == "__main__":
    main()
