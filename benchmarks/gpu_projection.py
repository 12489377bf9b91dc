"""A projection, from counts measured on the CPU, of what a whole model would cost on one GPU: not a GPU
measurement (issue 14 asks for this where no GPU was lent; `gpu_check.py` is the measurement).

What is counted, and from where:
- fit: the tokens each neuron's fit asked the model for, by phase (the fit files' ``cost``: requested tokens,
  an upper bound on the tokens computed, since the engine shares prefixes), averaged per layer of a fitted work
  dir and spread over the target model's depth by relative position. A token of the prune and saliency
  phases runs the model up to the neuron's layer (the engine stops there); a token of the augment phase runs
  the whole model (the `self` proposer reads logits). FLOPs per token and layer = 2 x the layer's weights
  (attention over the short prompts and the unembedding at the few proposer positions are left out: ~1%).
  Device time = FLOPs / an assumed sustained rate (``--tflops``); host time = neurons x ``--host-ms`` (the
  fit's Python outside the forward: 2.5 ms with the stand-in forward's requests, 10-30 ms with real ones on
  these loaded cores; benchmarks/README.md, "Fit host time"). No overlap of the two is assumed.
- mining: ``--mine-tokens`` through the whole model (its bookkeeping stays on the device, no host syncs).
- evaluate: neurons x ``--evaluate-ms`` CPU time, spread over ``--cores`` worker processes.

Usage:

    python benchmarks/gpu_projection.py --work-dir <a fitted SmolLM2 work dir> [--tflops 50,200]
        [--host-ms 2.5,10,30] [--evaluate-ms 4.2] [--cores 16] [--mine-tokens 1000000]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson


@dataclass(frozen=True)
class Shape:
    name: str
    layers: int
    d_model: int
    d_mlp: int
    gated: bool  # three MLP matrices (SwiGLU) instead of two
    kv_share: float  # key and value width / d_model (grouped-query attention)

    def layer_weights(self) -> int:
        attention = 2 * self.d_model**2 + 2 * self.d_model * round(self.d_model * self.kv_share)
        return attention + (3 if self.gated else 2) * self.d_model * self.d_mlp

    @property
    def neurons(self) -> int:
        return self.layers * self.d_mlp


SHAPES = (
    Shape("SoLU-6L", 6, 768, 3072, False, 1.0),
    Shape("GPT-2 small", 12, 768, 3072, False, 1.0),
    Shape("SmolLM2-135M", 30, 576, 1536, True, 1 / 3),
)
TARGETS = {"SoLU-6L": ("fit", 5.0), "SmolLM2-135M": ("mine + fit + evaluate", 20.0)}


def tokens_by_depth(work_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per fitted layer: relative depth (0 = first layer, 1 = last), mean requested tokens per neuron that stop
    at the layer (prune, saliency, augment saliency) and that run the whole model (augment); and the count."""
    n_layers = orjson.loads((work_dir / "run.json").read_bytes())["model_info"]["n_layers"]
    per_layer: dict[int, list[tuple[int, int]]] = {}
    for path in sorted((work_dir / "fit").glob("L*/N*.json")):
        if path.name.endswith(".neg.json"):
            continue
        fit = orjson.loads(path.read_bytes())
        augment = fit["cost"].get("augment", {}).get("tokens", 0)
        total = sum(phase["tokens"] for phase in fit["cost"].values())
        per_layer.setdefault(fit["layer"], []).append((total - augment, augment))
    if not per_layer:
        raise SystemExit(f"{work_dir}: no fit files under fit/ (run `n2g-site fit` first)")
    layers = sorted(per_layer)
    depth = np.array([layer / max(n_layers - 1, 1) for layer in layers])
    stop = np.array([np.mean([t for t, _ in per_layer[layer]]) for layer in layers])
    whole = np.array([np.mean([a for _, a in per_layer[layer]]) for layer in layers])
    return depth, stop, whole, sum(len(v) for v in per_layer.values())


def fit_flops(shape: Shape, depth: np.ndarray, stop: np.ndarray, whole: np.ndarray) -> float:
    weights = shape.layer_weights()
    total = 0.0
    for layer in range(shape.layers):
        where = layer / max(shape.layers - 1, 1)
        t_stop, t_whole = np.interp(where, depth, stop), np.interp(where, depth, whole)
        total += shape.d_mlp * 2 * weights * (t_stop * (layer + 1) + t_whole * shape.layers)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, required=True, help="a fitted work dir (its fit files' cost)")
    parser.add_argument("--tflops", default="50,200", help="assumed sustained TFLOP/s of the forwards")
    parser.add_argument("--host-ms", default="2.5,10,30", help="the fit's host ms per neuron outside the forward")
    parser.add_argument("--evaluate-ms", type=float, default=4.2, help="evaluate's CPU ms per neuron")
    parser.add_argument("--cores", type=int, default=16, help="CPU cores for evaluate's worker processes")
    parser.add_argument("--mine-tokens", type=int, default=1_000_000)
    args = parser.parse_args()
    rates = [float(x) * 1e12 for x in args.tflops.split(",")]
    hosts = [float(x) for x in args.host_ms.split(",")]
    depth, stop, whole, fitted = tokens_by_depth(args.work_dir)
    print(f"PROJECTION from CPU counts, not a GPU measurement. Counts: {fitted} fit files of {args.work_dir}")
    print(
        "requested tokens per neuron by relative depth: "
        + ", ".join(f"{d:.2f}: {s + w:,.0f} ({w:,.0f} whole-model)" for d, s, w in zip(depth, stop, whole))
    )
    print(
        f"assumed: forwards at {args.tflops} TFLOP/s; fit host {args.host_ms} ms/neuron; evaluate "
        f"{args.evaluate_ms} CPU ms/neuron over {args.cores} cores; mining {args.mine_tokens:,} tokens\n"
    )
    print("| model | neurons | fit device min | fit host min | mine min | evaluate min | total min | target |")
    print("|---|---|---|---|---|---|---|---|")
    for shape in SHAPES:
        device = [fit_flops(shape, depth, stop, whole) / r / 60 for r in rates]
        host = [shape.neurons * ms / 1000 / 60 for ms in hosts]
        mine = [args.mine_tokens * 2 * shape.layer_weights() * shape.layers / r / 60 for r in rates]
        evaluate = shape.neurons * args.evaluate_ms / 1000 / args.cores / 60
        span = lambda xs: f"{min(xs):.1f}-{max(xs):.1f}"  # noqa: E731
        low, high = min(device) + min(host) + min(mine) + evaluate, max(device) + max(host) + max(mine) + evaluate
        what, minutes = TARGETS.get(shape.name, ("", 0.0))
        if what == "fit":
            verdict = f"fit <= {minutes:.0f} min: {min(device) + min(host):.1f}-{max(device) + max(host):.1f}"
        elif what:
            verdict = f"{what} <= {minutes:.0f} min: {low:.1f}-{high:.1f}"
        else:
            verdict = "-"
        print(
            f"| {shape.name} | {shape.neurons:,} | {span(device)} | {span(host)} | {span(mine)} | {evaluate:.1f} "
            f"| {low:.1f}-{high:.1f} | {verdict} |"
        )


if __name__ == "__main__":
    main()
