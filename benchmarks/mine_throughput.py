"""Mining's host overhead against the bare forward, today's accumulators and the previous ones side by side.

The previous mine.py (``--before``, a git revision; default 62e2e76: on-device accumulators, top windows
only, the one-sided 50-bin histogram by ``bucketize``, float64 sums) is loaded from git into a module of its
own, with the histogram edges it had. Two measurements, one run:

(a) per batch (today's compiled CPU kernels, mine_kernels.py, are compiled first, untimed; the script prints
    how long that took), interleaved so a change in load hits all three alike: the bare forward stopped after the
    deepest chosen layer's MLP (what mining must compute), then the previous code's per-batch bookkeeping
    (``_accumulate``: top-k windows of both splits, stats and histogram of every neuron, the ordinary-text
    sample) on those activations, then today's (the same plus the bottom-k windows of both splits and the
    two-sided histogram) on the same activations. The two bookkeepings take turns going first. Host
    overhead = bookkeeping seconds / bare-forward seconds. Choose contiguous layers (e.g. 0-5) to get the
    per-layer ratio of a whole-model ``--all`` run: every layer the forward runs then has its statistics
    kept. Today's accumulators are then checked against a numpy reference built from the same activations
    (max, min, histogram, top-k and bottom-k values, documents and starts exactly; the mean to its
    documented bound; every window's activation at its pivot equal to its value).
(b) end to end: the previous ``mine()`` and today's on the same corpus slice, in fresh work dirs; the arrays
    both files have in common are compared (the formats differ on purpose: bottom sets, histogram).

Usage (``--all`` is every neuron of the layers; otherwise ``--neurons``):

    .venv/bin/python benchmarks/mine_throughput.py [--tokens 12000] [--layers 0-5] [--all | --neurons 0-7]
        [--threads 2] [--model smollm2-135m] [--before 62e2e76] [--band-windows 16]

Band samples on against off, in one run: ``--before`` a revision of today's accumulators without them (e.g.
3b910b5) and today's with ``--band-windows`` (default: mine's, 16).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from n2g_site import mine as today
from n2g_site.config import Config
from n2g_site.corpus import load_documents, sequences
from n2g_site.models import load_model
from n2g_site.store import HIST_EDGES, HIST_MAGNITUDES, LEGACY_HIST_EDGES, MinedLayer, WorkDir

REPO = Path(__file__).resolve().parents[1]


def previous(revision: str) -> ModuleType:
    """generator/n2g_site/mine.py at ``revision``, as the module ``n2g_site._mine_before``, with the histogram
    edges of that time (store.LEGACY_HIST_EDGES for a revision before the two-sided histogram)."""
    source = subprocess.run(
        ["git", "show", f"{revision}:generator/n2g_site/mine.py"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("n2g_site._mine_before", loader=None))
    module.__package__ = "n2g_site"
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{revision}:mine.py", "exec"), module.__dict__)
    if "CODE_BINS" not in module.__dict__:  # a mine.py of the one-sided histogram (before mine format 2)
        module.__dict__["HIST_EDGES"] = LEGACY_HIST_EDGES
    return module


def accumulators(module: ModuleType, layers, picks, d_mlp: int, cfg: Config, sets) -> dict:
    m = cfg.mine
    parts: dict = {"stats": {}, "tops": {}, "ordinary": {}}
    for layer in layers:
        parts["stats"][layer] = module.StatsAccumulator(d_mlp)
        parts["ordinary"][layer] = module.OrdinarySampler(m.ordinary_tokens)
        for name in sets:
            lowest = {"lowest": True} if name.startswith("bottom_") else {}
            parts["tops"][layer, name] = module.TopK(
                len(picks[layer]), m.top_k, m.context_before, m.context_after, **lowest
            )
        if hasattr(module, "BandSample") and m.band_windows:  # band samples (mine format 3)
            for name in module.BAND_SETS:
                parts["tops"][layer, name] = module.BandSample(
                    len(picks[layer]), m.band_windows, m.context_before, m.context_after
                )
    return parts


@dataclass
class Reference:
    """A numpy reference of one layer's accumulators, built batch by batch from the same activations."""

    d_mlp: int
    max: np.ndarray = field(init=False)
    min: np.ndarray = field(init=False)
    sum: np.ndarray = field(init=False)
    magnitude: np.ndarray = field(init=False)  # sum of |x| in float64, for the mean's bound
    hist: np.ndarray = field(init=False)
    count: int = 0
    peaks: dict[str, list[tuple[np.ndarray, np.ndarray, int, int, int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.max = np.full(self.d_mlp, -np.inf, np.float32)
        self.min = np.full(self.d_mlp, np.inf, np.float32)
        self.sum = np.zeros(self.d_mlp)
        self.magnitude = np.zeros(self.d_mlp)
        self.hist = np.zeros((self.d_mlp, len(HIST_EDGES) + 1), np.int64)

    def add(self, acts: np.ndarray, batch, number: int, bos_id: int | None) -> None:
        zero = len(HIST_MAGNITUDES)
        for r, row in enumerate(batch):
            text = np.arange(len(row.tokens))
            if bos_id is not None:
                text = text[np.array(row.tokens) != bos_id]
            if not len(text):
                continue
            values = acts[r, text]  # [positions, d_mlp]
            self.max = np.maximum(self.max, values.max(axis=0))
            self.min = np.minimum(self.min, values.min(axis=0))
            self.sum += values.astype(np.float64).sum(axis=0)
            self.magnitude += np.abs(values.astype(np.float64)).sum(axis=0)
            step = np.searchsorted(HIST_MAGNITUDES, np.abs(values.astype(np.float64)), side="right")
            bins = np.where(step == 0, zero, np.where(values > 0, zero + step, zero - step))
            flat = (np.arange(self.d_mlp) * (len(HIST_EDGES) + 1) + bins).ravel()
            self.hist += np.bincount(flat, minlength=self.hist.size).reshape(self.hist.shape)
            self.count += len(text)
            arrival = (number << today.ROW_BITS) + r
            hi, lo = values.argmax(axis=0), values.argmin(axis=0)  # the first of tied extremes
            cols = np.arange(self.d_mlp)
            self.peaks.setdefault(row.split, []).append((values[hi, cols], text[hi], arrival, row.doc, row.offset))
            self.peaks.setdefault("bottom_" + row.split, []).append(
                (values[lo, cols], text[lo], arrival, row.doc, row.offset)
            )

    def check(self, layer: int, stats, tops: dict, picks: np.ndarray, k: int, before: int) -> list[str]:
        """What differs between today's accumulators of ``layer`` and this reference (empty: nothing)."""
        bad = []
        got = stats.result()
        for name in ("max", "min", "hist"):
            if not np.array_equal(getattr(got, name), getattr(self, name)):
                bad.append(f"layer {layer} stats.{name}")
        if got.tokens != self.count:
            bad.append(f"layer {layer} stats.tokens")
        exact = self.sum / self.count
        bound = 2.0**-20 * self.magnitude / self.count + np.spacing(np.abs(exact).astype(np.float32))
        if not (np.abs(got.mean - exact) <= bound).all():
            bad.append(f"layer {layer} stats.mean (beyond 2**-20 of the mean magnitude)")
        for name, rows in self.peaks.items():
            value = np.stack([r[0] for r in rows])[:, picks]  # [rows, n]
            position = np.stack([r[1] for r in rows])[:, picks]
            arrival = np.array([r[2] for r in rows])
            doc = np.array([r[3] for r in rows])
            offset = np.array([r[4] for r in rows])
            sign = -1.0 if name.startswith("bottom_") else 1.0
            ex = tops[layer, name].result()
            for j in range(len(picks)):
                order = np.lexsort((arrival, -sign * value[:, j].astype(np.float64)))[:k]
                want = (value[order, j], doc[order], offset[order] + position[order, j] - before)
                have = (ex.value[j, : len(order)], ex.doc[j, : len(order)], ex.start[j, : len(order)])
                if not all(np.array_equal(a, b) for a, b in zip(want, have)):
                    bad.append(f"layer {layer} {name} neuron row {j}")
                    break
            filled = ex.doc >= 0
            pivots = ex.acts[:, :, before]
            if not np.array_equal(pivots[filled], ex.value[filled]):
                bad.append(f"layer {layer} {name} windows' pivot activations")
        return bad


def warm_kernels() -> float:
    """Compile (or load from numba's disk cache) today's CPU kernels (mine_kernels.py) on a tiny batch, so that
    no timed batch pays for it; returns the seconds it took, once a process."""
    start = time.perf_counter()
    stats, top = today.StatsAccumulator(4), today.TopK(4, 2, 1, 1)
    acts = torch.zeros((1, 3, 4))
    with torch.inference_mode():
        peak, arg, _, _ = stats.update(acts, torch.tensor([0]))
        one = torch.zeros(1, dtype=torch.long)
        top.merge(peak, arg, one, one, acts, torch.arange(4), torch.ones((1, 3), dtype=torch.long), one + 3, one, one)
    return time.perf_counter() - start


def per_batch(old: ModuleType, model, cfg: Config, batches, layers, check: bool) -> tuple[dict, list[str], dict]:
    """(wall, CPU) seconds of the bare forward and of each code's bookkeeping over the same batches, what
    differs from the numpy reference (when ``check``), and the CPU seconds of today's bookkeeping by part."""
    neurons = cfg.select_neurons(model.d_mlp)
    picks = {layer: torch.tensor(neurons) for layer in layers}
    before = accumulators(old, layers, picks, model.d_mlp, cfg, getattr(old, "SETS", ("train", "heldout")))
    now = accumulators(today, layers, picks, model.d_mlp, cfg, today.SETS)
    reference = {layer: Reference(model.d_mlp) for layer in layers}
    spent = {name: [0.0, 0.0] for name in ("forward", "previous", "today")}
    parts = {"statistics (StatsAccumulator.update)": 0.0, "top-k, bottom-k and band merges (TopK.merge)": 0.0}
    parts["ordinary-text sample (OrdinarySampler.add)"] = 0.0
    for (cls, method), label in zip(
        ((today.StatsAccumulator, "update"), (today.TopK, "merge"), (today.OrdinarySampler, "add")), parts
    ):
        setattr(cls, method, _clocked(getattr(cls, method), parts, label))

    def timed(name, run) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        spent[name][0] += time.perf_counter() - wall
        spent[name][1] += time.process_time() - cpu

    for number, batch in enumerate(batches):
        rows = today.BatchRows.build(batch, model.bos_id, torch.device("cpu"))
        old_rows = old.BatchRows.build(batch, model.bos_id, torch.device("cpu"))
        acts = {}
        timed("forward", lambda: acts.update(model.mlp_activations(rows.tokens, layers)))
        runs = [
            (
                "previous",
                lambda: old._accumulate(
                    acts, old_rows, layers, picks, before["stats"], before["tops"], before["ordinary"]
                ),
            ),
            (
                "today",
                lambda: today._accumulate(
                    acts, rows, layers, picks, now["stats"], now["tops"], now["ordinary"], None, number
                ),
            ),
        ]
        for name, run in runs[:: 1 if number % 2 == 0 else -1]:
            timed(name, run)
        if check:
            for layer in layers:
                reference[layer].add(acts[layer].numpy(), batch, number, model.bos_id)
    bad = []
    if check:
        for layer in layers:
            bad += reference[layer].check(
                layer, now["stats"][layer], now["tops"], np.array(neurons), cfg.mine.top_k, cfg.mine.context_before
            )
    for cls, method in ((today.StatsAccumulator, "update"), (today.TopK, "merge"), (today.OrdinarySampler, "add")):
        setattr(cls, method, getattr(cls, method).__wrapped__)
    return {name: (wall, cpu) for name, (wall, cpu) in spent.items()}, bad, parts


def _clocked(function, parts: dict[str, float], label: str):
    """``function``, adding the CPU seconds of each call to ``parts[label]``."""

    def run(*args, **kwargs):
        start = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            parts[label] += time.process_time() - start

    run.__wrapped__ = function  # type: ignore[attr-defined]
    return run


def end_to_end(module: ModuleType, model, cfg: Config, tmp: Path) -> tuple[float, dict[int, dict]]:
    work = WorkDir(tmp)
    summary = module.mine(replace(cfg, work_dir=tmp), lambda: model, work)
    return summary.seconds, {layer: MinedLayer.load(work.mined(layer)) for layer in cfg.select_layers(model.n_layers)}


def compare(before: dict[int, MinedLayer], now: dict[int, MinedLayer]) -> list[str]:
    """The arrays both formats have: top windows' values exactly, their documents as sets above the k-th
    peak (equal peaks were ranked in another order), max and min exactly; the mean to 1e-6 of the largest."""
    out = []
    for layer, a in before.items():
        b = now[layer]
        for split in ("train", "heldout"):
            x, y = getattr(a, split), getattr(b, split)
            if not np.array_equal(x.value, y.value):
                out.append(f"layer {layer} {split}.value")
            above = x.value > x.value[:, -1:]  # windows above the k-th peak: no tie decides whether they are kept
            if any(set(p[m]) != set(q[m]) for p, q, m in zip(x.doc, y.doc, above)):
                out.append(f"layer {layer} {split}.doc (above the k-th peak, as sets)")
        for name in ("max", "min"):
            if not np.array_equal(getattr(a.stats, name), getattr(b.stats, name)):
                out.append(f"layer {layer} stats.{name}")
        gap = np.abs(a.stats.mean - b.stats.mean).max()
        if gap > 1e-6 * max(np.abs(a.stats.mean).max(), 1e-6):
            out.append(f"layer {layer} stats.mean (largest gap {gap:.2e})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=12000)
    parser.add_argument("--layers", default="0-5")
    parser.add_argument("--neurons", default="0-7")
    parser.add_argument("--all", action="store_true", help="every neuron of the layers")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=Config().model)
    parser.add_argument("--before", default="62e2e76", help="git revision of the previous mine.py")
    parser.add_argument("--band-windows", type=int, default=None, help="today's band sample size (default: mine's)")
    parser.add_argument("--no-check", action="store_true", help="skip the numpy reference (saves memory)")
    parser.add_argument("--no-end-to-end", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = Config(
        model=args.model, layers=args.layers, all_neurons=args.all, **({} if args.all else {"neurons": args.neurons})
    )
    bands = cfg.mine.band_windows if args.band_windows is None else args.band_windows
    cfg = replace(cfg, mine=replace(cfg.mine, max_tokens=args.tokens, band_windows=bands)).validate()
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
    print(f"today's CPU kernels compiled or loaded from numba's cache in {warm_kernels():.1f} s (once a process)")
    tokens = sum(len(r.tokens) for b in batches for r in b)
    load_start = os.getloadavg()[0]
    spent, bad, parts = per_batch(old, model, cfg, batches, layers, not args.no_check)
    forward = spent["forward"][0]
    what = "all neurons" if args.all else f"neurons {args.neurons}"
    print(
        f"\n{cfg.model}, layers {args.layers} ({len(layers)} layers, {what}), {tokens} tokens in "
        f"{len(batches)} batches, {args.threads} threads; load average {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} after (a)\n"
    )
    print("| per batch, summed | wall s | CPU s | host overhead vs bare forward (wall / CPU) |")
    print("|---|---|---|---|")
    fw, fc = spent["forward"]
    print(f"| bare forward, stopped after layer {max(layers)}'s MLP | {fw:.2f} | {fc:.2f} | - |")
    for name, label in (
        ("previous", f"bookkeeping, previous ({args.before})"),
        (
            "today",
            "bookkeeping, today: top and bottom windows, two-sided histogram"
            + (f", band samples of {cfg.mine.band_windows}" if cfg.mine.band_windows else ""),
        ),
    ):
        w, c = spent[name]
        print(f"| {label} | {w:.2f} | {c:.2f} | {w / fw:.0%} / {c / fc:.0%} |")
    (pw, pc), (tw, tc) = spent["previous"], spent["today"]
    print(f"\ntoday's bookkeeping: {pw / tw:.2f}x less wall time than the previous code's, {pc / tc:.2f}x less CPU")
    print("\n| today's bookkeeping by part | CPU s | share of the bare forward's CPU |")
    print("|---|---|---|")
    for label, seconds in parts.items():
        print(f"| {label} | {seconds:.2f} | {seconds / fc:.1%} |")
    print(f"| the rest (_accumulate's own indexing, the thread switch) | {tc - sum(parts.values()):.2f} | - |")
    if not args.no_check:
        print(f"\nnumpy reference: {'every accumulator equal' if not bad else 'DIFFERS in ' + ', '.join(bad)}")
    if args.no_end_to_end:
        return
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        seconds_before, files_before = end_to_end(old, model, cfg, Path(a))
        seconds_now, files_now = end_to_end(today, model, cfg, Path(b))
    differ = compare(files_before, files_now)
    print("\n| end to end (mine()) | seconds | tokens/s |")
    print("|---|---|---|")
    print(f"| bare forward (from (a)) | {forward:.2f} | {tokens / forward:.0f} |")
    print(f"| previous | {seconds_before:.2f} | {tokens / seconds_before:.0f} |")
    print(f"| today | {seconds_now:.2f} | {tokens / seconds_now:.0f} |")
    print(f"\nmined files, common arrays: {'equal' if not differ else 'DIFFER in ' + ', '.join(differ)}")


if __name__ == "__main__":
    main()
