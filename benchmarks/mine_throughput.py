"""Mining's host overhead against the bare forward, today's accumulators and the previous ones side by side.

The previous mine.py (``--before``, a git revision; default 89af568, whose top-k and statistics ran on the
host with data-dependent syncs) is loaded from git into a module of its own. Two measurements, one run:

(a) per batch, interleaved so a change in load hits all three alike: the bare forward stopped after the
    deepest chosen layer's MLP (what mining must compute), then the previous code's per-batch bookkeeping
    (top-k windows of both splits, stats and histogram of every neuron, the ordinary-text sample) on those
    activations, then today's (``mine._accumulate``) on the same activations. Host overhead = bookkeeping
    seconds / bare-forward seconds. Choose contiguous layers (e.g. 0-5) to get the per-layer ratio of a
    whole-model ``--all`` run: every layer the forward runs then has its statistics kept.
(b) end to end: the previous ``mine()`` and today's on the same corpus slice, in fresh work dirs, and
    whether their ``mine/layer_LL.npz`` arrays are equal (each differing array is named).

Usage (``--all`` is every neuron of the layers; otherwise ``--neurons``):

    .venv/bin/python benchmarks/mine_throughput.py [--tokens 12000] [--layers 0-5] [--all | --neurons 0-7]
        [--threads 2] [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from n2g_site import mine as today
from n2g_site.config import Config
from n2g_site.corpus import load_documents, sequences
from n2g_site.models import load_model
from n2g_site.store import WorkDir

REPO = Path(__file__).resolve().parents[1]


def previous(revision: str) -> ModuleType:
    """generator/n2g_site/mine.py at ``revision``, as the module ``n2g_site._mine_before``."""
    source = subprocess.run(
        ["git", "show", f"{revision}:generator/n2g_site/mine.py"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("n2g_site._mine_before", loader=None))
    module.__package__ = "n2g_site"
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{revision}:mine.py", "exec"), module.__dict__)
    return module


def previous_accumulate(old: ModuleType, batch, tokens, acts, layers, picks, parts, bos_id) -> None:
    """The previous miner's per-batch loop body, verbatim but for the names."""
    lengths = torch.tensor([len(r.tokens) for r in batch])
    docs = torch.tensor([r.doc for r in batch])
    offsets = torch.tensor([r.offset for r in batch])
    split = np.array([r.split for r in batch])
    valid = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
    if bos_id is not None:
        valid &= tokens != bos_id
    for layer in layers:
        layer_acts = acts[layer].cpu()
        parts["stats", layer].update(layer_acts[valid])
        chosen = layer_acts[:, :, picks[layer]]
        for name in ("train", "heldout"):
            sel = torch.from_numpy(np.flatnonzero(split == name))
            if len(sel):
                parts[name, layer].update(chosen[sel], tokens[sel], lengths[sel], valid[sel], docs[sel], offsets[sel])
        for i in np.flatnonzero(split == "heldout"):
            if parts["ordinary", layer].wants():
                parts["ordinary", layer].add(tokens[i], chosen[i], int(lengths[i]), int(docs[i]))


def accumulators(module: ModuleType, layers, picks, d_mlp: int, cfg: Config) -> dict:
    m = cfg.mine
    parts: dict = {}
    for layer in layers:
        for name in ("train", "heldout"):
            parts[name, layer] = module.TopK(len(picks[layer]), m.top_k, m.context_before, m.context_after)
        parts["stats", layer] = module.StatsAccumulator(d_mlp)
        parts["ordinary", layer] = module.OrdinarySampler(m.ordinary_tokens)
    return parts


def per_batch(old: ModuleType, model, cfg: Config, batches, layers) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of the bare forward and of each code's bookkeeping over the same batches; the
    two bookkeepings take turns going first, so neither always runs on a warmer cache or a quieter core."""
    neurons = cfg.select_neurons(model.d_mlp)
    picks = {layer: torch.tensor(neurons) for layer in layers}
    before = accumulators(old, layers, picks, model.d_mlp, cfg)
    now = accumulators(today, layers, picks, model.d_mlp, cfg)
    spent = {name: [0.0, 0.0] for name in ("forward", "previous", "today")}

    def timed(name, run) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        spent[name][0] += time.perf_counter() - wall
        spent[name][1] += time.process_time() - cpu

    for number, batch in enumerate(batches):
        rows = today.BatchRows.build(batch, model.bos_id, torch.device("cpu"))
        acts = {}
        timed("forward", lambda: acts.update(model.mlp_activations(rows.tokens, layers)))
        runs = [
            (
                "previous",
                lambda: previous_accumulate(old, batch, rows.tokens, acts, layers, picks, before, model.bos_id),
            ),
            (
                "today",
                lambda: today._accumulate(
                    acts,
                    rows,
                    layers,
                    picks,
                    {layer: now["stats", layer] for layer in layers},
                    {(layer, name): now[name, layer] for layer in layers for name in ("train", "heldout")},
                    {layer: now["ordinary", layer] for layer in layers},
                ),
            ),
        ]
        for name, run in runs[:: 1 if number % 2 == 0 else -1]:
            timed(name, run)
    for key in before:  # the two sets of accumulators must agree exactly
        a, b = before[key].state(), now[key].state()
        for name in a:
            if not np.array_equal(a[name], b[name], equal_nan=True):
                raise SystemExit(f"accumulators differ: {key} {name}")
    return {name: (wall, cpu) for name, (wall, cpu) in spent.items()}


def end_to_end(module: ModuleType, model, cfg: Config, tmp: Path) -> tuple[float, dict[int, dict]]:
    work = WorkDir(tmp)
    summary = module.mine(replace(cfg, work_dir=tmp), lambda: model, work)
    arrays = {}
    for layer in cfg.select_layers(model.n_layers):
        with np.load(work.mined(layer)) as z:
            arrays[layer] = {k: z[k] for k in z.files}
    return summary.seconds, arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=12000)
    parser.add_argument("--layers", default="0-5")
    parser.add_argument("--neurons", default="0-7")
    parser.add_argument("--all", action="store_true", help="every neuron of the layers")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=Config().model)
    parser.add_argument("--before", default="89af568", help="git revision of the previous mine.py")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = Config(
        model=args.model, layers=args.layers, all_neurons=args.all, **({} if args.all else {"neurons": args.neurons})
    )
    cfg = replace(cfg, mine=replace(cfg.mine, max_tokens=args.tokens)).validate()
    old = previous(args.before)
    model = load_model(cfg.model)
    layers = sorted(cfg.select_layers(model.n_layers))
    rows = sequences(
        load_documents(cfg.corpus, seed=cfg.seed),
        model.encode,
        bos_id=model.bos_id,
        seq_len=min(cfg.mine.seq_len, model.n_ctx),
        held_out=cfg.mine.held_out,
        seed=cfg.seed,
        index=[],
    )
    batches = list(today._batches(today._budget(rows, args.tokens), cfg.mine.batch_tokens))
    tokens = sum(len(r.tokens) for b in batches for r in b)
    spent = per_batch(old, model, cfg, batches, layers)
    forward = spent["forward"][0]
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        seconds_before, files_before = end_to_end(old, model, cfg, Path(a))
        seconds_now, files_now = end_to_end(today, model, cfg, Path(b))
    differ = [
        f"layer {layer} {name}"
        for layer in files_before
        for name in files_before[layer]
        if not np.array_equal(files_before[layer][name], files_now[layer][name], equal_nan=True)
    ]
    what = "all neurons" if args.all else f"neurons {args.neurons}"
    print(
        f"\n{cfg.model}, layers {args.layers} ({len(layers)} layers, {what}), {tokens} tokens in "
        f"{len(batches)} batches, {args.threads} threads\n"
    )
    print("| per batch, summed | wall s | CPU s | host overhead vs bare forward (wall / CPU) |")
    print("|---|---|---|---|")
    fw, fc = spent["forward"]
    print(f"| bare forward, stopped after layer {max(layers)}'s MLP | {fw:.2f} | {fc:.2f} | - |")
    for name, label in (("previous", f"bookkeeping, previous ({args.before})"), ("today", "bookkeeping, today")):
        w, c = spent[name]
        print(f"| {label} | {w:.2f} | {c:.2f} | {w / fw:.0%} / {c / fc:.0%} |")
    (pw, pc), (tw, tc) = spent["previous"], spent["today"]
    print(f"\ntoday's bookkeeping: {pw / tw:.2f}x less wall time than the previous code's, {pc / tc:.2f}x less CPU")
    print("\n| end to end (mine()) | seconds | tokens/s |")
    print("|---|---|---|")
    print(f"| bare forward (from (a)) | {forward:.2f} | {tokens / forward:.0f} |")
    print(f"| previous | {seconds_before:.2f} | {tokens / seconds_before:.0f} |")
    print(f"| today | {seconds_now:.2f} | {tokens / seconds_now:.0f} |")
    print(f"\nmined files: {'identical arrays' if not differ else 'DIFFER in ' + ', '.join(differ)}")


if __name__ == "__main__":
    main()
