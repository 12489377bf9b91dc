"""Mining throughput against a bare forward pass over the same tokens (embedded model, all 30 layers).

(a) bare: the model's plain forward over the batches the miner builds, nothing kept: once to the logits
    (the whole model) and once stopped after the deepest chosen layer's MLP (what mining must compute);
(b) mine: the mine stage itself (hooks on the chosen layers, top-k windows, stats of every neuron,
    the ordinary-text sample), on the same corpus slice.
Prints tokens/s of each and the ratios (target: mine >= 0.8 x the bare forward it needs). Usage:

    .venv/bin/python benchmarks/mine_throughput.py [--tokens 20000] [--layers 0,6,12,17,23,29] [--neurons 0-7]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from n2g_site.config import Config
from n2g_site.corpus import load_documents, sequences
from n2g_site.mine import _batches, _budget, mine
from n2g_site.models import load_model
from n2g_site.store import WorkDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=20000)
    parser.add_argument("--layers", default="0,6,12,17,23,29")
    parser.add_argument("--neurons", default="0-7")
    args = parser.parse_args()
    cfg = Config(layers=args.layers, neurons=args.neurons)
    cfg = replace(cfg, mine=replace(cfg.mine, max_tokens=args.tokens))
    model = load_model(cfg.model)
    rows = sequences(load_documents(cfg.corpus, seed=cfg.seed), model.encode, bos_id=model.bos_id,
                     seq_len=cfg.mine.seq_len, held_out=cfg.mine.held_out, seed=cfg.seed, index=[])
    batches = list(_batches(_budget(rows, args.tokens), cfg.mine.batch_tokens))
    tokens = sum(len(r.tokens) for b in batches for r in b)
    deepest = max(cfg.select_layers(model.n_layers))

    def bare(run) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            for batch in batches:
                ids = torch.zeros((len(batch), max(len(r.tokens) for r in batch)), dtype=torch.long)
                for i, r in enumerate(batch):
                    ids[i, : len(r.tokens)] = torch.tensor(r.tokens)
                run(ids)
        return time.perf_counter() - started

    logits = bare(model.bridge)
    needed = bare(lambda ids: model.mlp_activations(ids, [deepest]))
    with tempfile.TemporaryDirectory() as tmp:
        summary = mine(replace(cfg, work_dir=Path(tmp)), lambda: model, WorkDir(Path(tmp)))
    rate = tokens / needed
    print("\n| pass | tokens | seconds | tokens/s | vs bare forward to layer %d |" % deepest)
    print("|---|---|---|---|---|")
    print(f"| bare forward, whole model to the logits | {tokens} | {logits:.1f} | {tokens / logits:.0f} | {needed / logits:.2f} |")
    print(f"| bare forward, stopped after layer {deepest}'s MLP | {tokens} | {needed:.1f} | {rate:.0f} | 1.00 |")
    print(f"| mine ({len(cfg.select_layers(model.n_layers))} layers, {args.neurons} neurons) | {summary.tokens} "
          f"| {summary.seconds:.1f} | {summary.tokens_per_second:.0f} | {summary.tokens_per_second / rate:.2f} |")


if __name__ == "__main__":
    main()
