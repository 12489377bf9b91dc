"""Host time of the fit outside the forward, and the batch shapes of lockstep groups, old code vs new in one run.

The model is a *stand-in* whose forward costs (almost) nothing on the host side we measure: its activations
are a deterministic function of each token and its predecessor (``A[token, n] * B[prev, n]``: sparse,
heavy-tailed, context-dependent, so pruning, saliency and augmentation all do real work), and it honours the
engine's tree mask (a node's predecessor is its nearest ancestor) exactly as it honours plain rows, so both
engines get identical answers. Its logits for the ``self`` proposer are ``H[token] @ U`` over the real
vocabulary size. Every call into the stand-in (forward, logits, unembedding) is timed and subtracted: what is
left is the N2G core, the engine's bookkeeping (dedupe, tries, masks, packing, the gather and the answers)
and the proposer's post-processing. On a GPU the mask, gather, softmax and top-k of the new code would run
on the device; here they run on the CPU and are shown in a column of their own.

Training windows are real: mined SmolLM2 windows (tokens from a work dir's ``mine/``); only their activations
come from the stand-in (recomputed, so the pivot is the stand-in's peak). Times are CPU seconds of this
process (``time.process_time``, one torch thread), which other jobs on the machine inflate less than wall
time. The old code is loaded from git (``--old-ref``, default the commit this branch started from) as a
separate package, in the same process; old and new alternate ``--repeats`` times and the best is kept.

    PYTHONPATH=generator .venv/bin/python benchmarks/fit_host.py --work-dir /tmp/mined --layers 6,23 \\
        --neurons 0-31 [--big-neurons 0-255] [--profile out.prof]
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from n2g_site.models import embedded_tokenizer
from n2g_site.n2g.graph import normalise
from n2g_site.store import MinedLayer, WorkDir

REPO = Path(__file__).resolve().parents[1]
PRIME = 4099  # the stand-in's tables are indexed by token % PRIME (small, yet different per token)


class Clock:
    """Seconds spent inside the stand-in (subtracted from the wall time)."""

    def __init__(self) -> None:
        self.inside = 0.0

    def __call__(self, fn):
        def timed(*args, **kwargs):
            started = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.inside += time.process_time() - started

        return timed


class _Stop(Exception):
    pass


class StandInBridge(torch.nn.Module):
    hook_dict = {"unembed.hook_in": None}

    def __init__(self, d_vocab: int, clock: Clock) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.hidden = torch.nn.Parameter(torch.randn(PRIME, 32, generator=g), requires_grad=False)
        self.out = torch.nn.Parameter(torch.randn(32, d_vocab, generator=g) * 2, requires_grad=False)
        self.clock = clock
        self.forward = clock(self._logits)
        self.run_with_hooks = clock(self._run_with_hooks)
        self.unembed = clock(lambda x: x @ self.out)

    def _logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.hidden[tokens % PRIME] @ self.out

    def _run_with_hooks(self, tokens, fwd_hooks):
        ((_, hook),) = fwd_hooks
        hook(self.hidden[tokens % PRIME], None)
        raise _Stop  # the hook raised: unreachable


class StandIn:
    """Duck-types the parts of LoadedModel that the engines and the ``self`` proposer use."""

    def __init__(self, d_mlp: int, d_vocab: int, bos_id: int, mask_id: int, clock: Clock) -> None:
        g = torch.Generator().manual_seed(0)
        fire = torch.rand(PRIME, d_mlp, generator=g) < 0.05
        self.a = torch.where(
            fire, 1 + 3 * torch.rand(PRIME, d_mlp, generator=g), -0.05 * torch.rand(PRIME, d_mlp, generator=g)
        )
        self.b = torch.rand(PRIME, d_mlp, generator=g)
        self.d_mlp, self.d_vocab, self.n_layers, self.bos_id, self.mask_id = d_mlp, d_vocab, 30, bos_id, mask_id
        self.bridge = StandInBridge(d_vocab, clock)
        self.device = torch.device("cpu")
        self.mlp_activations = clock(self._acts)

    def _acts(self, tokens, layers, *, attention_mask=None, position_ids=None):
        tokens = tokens.long()
        if attention_mask is None:
            prev = torch.cat([torch.zeros_like(tokens[:, :1]), tokens[:, :-1]], dim=1)
        else:  # nearest ancestor = the largest allowed column before the diagonal
            width = tokens.shape[1]
            allowed = (attention_mask[:, 0] == 0) & torch.ones(width, width, dtype=torch.bool).tril(-1)
            parent = (allowed * torch.arange(1, width + 1)).argmax(-1)
            prev = torch.where(allowed.any(-1), tokens.gather(1, parent), torch.zeros_like(tokens))
        layer_scale = {layer: 1.0 + 0.01 * layer for layer in layers}
        acts = self.a[tokens % PRIME] * self.b[prev % PRIME]
        return {layer: acts * layer_scale[layer] for layer in layers}

    def hook_name(self, layer: int) -> str:
        return f"blocks.{layer}.mlp.hook_post"


def old_package(ref: str) -> str:
    """Extract ``generator/n2g_site`` at ``ref`` as the package ``n2g_site_old`` and return its name."""
    folder = Path(tempfile.mkdtemp(prefix="n2g-old-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "generator/n2g_site"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "generator" / "n2g_site").rename(folder / "n2g_site_old")
    sys.path.insert(0, str(folder))
    return "n2g_site_old"


# Modules renamed since the reference commits (89af568 has the old names): the new name first, then the old.
RENAMED = {"n2g.phases": "n2g.fit", "proposers": "augmenters"}


def module(pkg: str, name: str):
    """``pkg.name``, or the module's name before the rename in an older checkout of the package."""
    try:
        return importlib.import_module(f"{pkg}.{name}")
    except ModuleNotFoundError:
        if name not in RENAMED:
            raise
        return importlib.import_module(f"{pkg}.{RENAMED[name]}")


def tasks_for(pkg, model: StandIn, mined: MinedLayer, neurons: list[int], limit: int):
    fit_mod = module(pkg, "n2g.phases")
    out = []
    for neuron in neurons:
        examples = []
        for rank, w in enumerate(mined.train.windows(mined.row(neuron))[:limit]):
            tokens = np.asarray(w.tokens, dtype=np.int64)
            acts = model._acts(torch.from_numpy(tokens)[None], [mined.layer])[mined.layer][0, :, neuron]
            acts = acts.double().numpy()
            examples.append(fit_mod.Example(tokens, acts, int(np.argmax(acts[1:])) + 1, rank, w.doc, w.start))
        top = max((float(e.acts[1:].max()) for e in examples), default=0.0)
        out.append(fit_mod.NeuronTask(mined.layer, neuron, examples, top))
    return out


device_clock = Clock()  # the new code's device-side steps (tree mask, gather, softmax + top-k), run on the CPU here


def run(
    pkg: str,
    model: StandIn,
    clock: Clock,
    mined: dict,
    layers,
    neurons,
    group: int,
    batch_tokens: int,
    vocab_text,
    profile: cProfile.Profile | None = None,
):
    fit_mod = module(pkg, "n2g.phases")
    engine_mod = importlib.import_module(f"{pkg}.engine")
    aug = module(pkg, "proposers")
    config = importlib.import_module(f"{pkg}.config")
    cfg = replace(config.FitConfig(), augmenter="self")
    vocab = fit_mod.Vocabulary(
        vocab_text, [normalise(t) for t in vocab_text], model.bos_id, model.mask_id, frozenset({model.bos_id})
    )
    engine = engine_mod.BatchedEngine(model, batch_tokens)
    engine._tree_ok = True  # the stand-in honours masks by construction (the check needs a real model)
    proposer = aug.SelfProposer(model, batch_tokens)
    results, wall, shapes = [], 0.0, []
    forward = model.mlp_activations

    def record(tokens, layers, **kw):
        shapes.append(int(tokens.shape[0] * tokens.shape[1]))
        return forward(tokens, layers, **kw)

    model.mlp_activations = record
    clock.inside = device_clock.inside = 0.0
    patched = [(engine_mod, "tree_mask"), (engine_mod, "gather_values"), (aug, "top_candidates")]
    originals = [getattr(m, name) for m, name in patched if hasattr(m, name)]
    for (m, name), fn in zip(patched, originals):
        setattr(m, name, device_clock(fn))
    try:
        for layer in layers:
            for i in range(0, len(neurons), group):
                tasks = tasks_for(pkg, model, mined[layer], neurons[i : i + group], cfg.train_examples)
                started = time.process_time()
                if profile:
                    profile.enable()
                results += fit_mod.fit_neurons(tasks, engine, cfg, vocab, proposer)
                if profile:
                    profile.disable()
                wall += time.process_time() - started
    finally:
        model.mlp_activations = forward
        for (m, name), fn in zip(patched, originals):
            setattr(m, name, fn)
    return results, wall, clock.inside, engine.counters, shapes, device_clock.inside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, required=True, help="a work dir with mine/layer_LL.npz (SmolLM2)")
    parser.add_argument("--layers", default="6,23")
    parser.add_argument("--neurons", default="0-31", help="neurons timed (old vs new, CPU groups)")
    parser.add_argument("--big-neurons", default="0-255", help="neurons of the GPU-default group (new code)")
    parser.add_argument("--old-ref", default="89af568")
    parser.add_argument("--repeats", type=int, default=2, help="old/new alternations (the best of each is kept)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the new code's runs here")
    parser.add_argument("--profile-big", action="store_true", help="profile the GPU-default group instead")
    args = parser.parse_args()
    from n2g_site.config import parse_ranges
    from n2g_site.fit import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, NODES_PER_NEURON

    torch.set_num_threads(1)
    old = old_package(args.old_ref)
    tokenizer = embedded_tokenizer()
    text = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], clean_up_tokenization_spaces=False)
    work = WorkDir(args.work_dir)
    layers = list(parse_ranges(args.layers, what="--layers"))
    mined = {layer: MinedLayer.load(work.mined(layer)) for layer in layers}
    neurons = list(parse_ranges(args.neurons, what="--neurons"))
    big = list(parse_ranges(args.big_neurons, what="--big-neurons")) if args.big_neurons else []
    d_mlp = max(neurons + big) + 1
    clock = Clock()
    bos = int(tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    mask = int(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    model = StandIn(d_mlp, len(text), bos, mask, clock)
    print("load average (1, 5, 15 min) at the start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    cpu_group = CPU_BATCH_TOKENS // NODES_PER_NEURON
    best: dict[str, tuple] = {}
    profile = cProfile.Profile() if args.profile else None
    for _ in range(args.repeats):
        for name, pkg in (("old", old), ("new", "n2g_site")):
            out = run(
                pkg,
                model,
                clock,
                mined,
                layers,
                neurons,
                cpu_group,
                CPU_BATCH_TOKENS,
                text,
                profile if name == "new" and not args.profile_big else None,
            )
            host = out[1] - out[2]
            if name not in best or host < best[name][1] - best[name][2]:
                best[name] = out
    n = len(best["old"][0])
    same = sum(
        a.graph.to_json() == b.graph.to_json() and a.examples == b.examples and a.cost == b.cost
        for a, b in zip(best["old"][0], best["new"][0])
    )
    print(
        f"\nCPU groups ({cpu_group} neurons, {CPU_BATCH_TOKENS}-node batches), layers {layers}, neurons "
        f"{args.neurons}: old and new give the same graphs, records and costs for {same} of {n} neurons"
    )
    print(
        "\n| code | group | batch nodes | neurons | CPU s | inside the stand-in s | host ms/neuron | "
        "of which device-side steps on the CPU | **host ms/neuron without them** | forwards/neuron | "
        "computed nodes/forward | padded tokens/forward |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")

    def row(name, out, group, batch):
        results, wall, inside, c, shapes, device = out
        k = len(results)
        host = 1000 * (wall - inside) / k
        print(
            f"| {name} | {group} | {batch:,} | {k} | {wall:.2f} | {inside:.2f} | {host:.2f} | {1000 * device / k:.2f} "
            f"| **{host - 1000 * device / k:.2f}** | {c.forwards / k:.2f} | {c.computed / max(c.forwards, 1):,.0f} "
            f"| {np.mean(shapes):,.0f} |"
        )

    for name in ("old", "new"):
        row(name, best[name], cpu_group, CPU_BATCH_TOKENS)
    if big:
        gpu_group = GPU_BATCH_TOKENS // NODES_PER_NEURON
        out = run(
            "n2g_site",
            model,
            clock,
            mined,
            layers,
            big,
            gpu_group,
            GPU_BATCH_TOKENS,
            text,
            profile if args.profile_big else None,
        )
        row("new, GPU default", out, gpu_group, GPU_BATCH_TOKENS)
        c = out[3]
        print(
            f"\nGPU default: {c.forwards} forwards, mean {c.computed / c.forwards:,.0f} computed nodes and "
            f"{np.mean(out[4]):,.0f} padded tokens per forward (min {min(out[4]):,}, max {max(out[4]):,})"
        )
        print(
            f"per neuron (stand-in): {c.requests / len(out[0]):.0f} requests, {c.rows / len(out[0]):.0f} rows, "
            f"{c.tokens / len(out[0]):.0f} tokens, {c.computed / len(out[0]):.0f} computed nodes; by phase "
            "(requests / tokens before dedupe): "
            + ", ".join(
                f"{p} {np.mean([r.cost[p]['requests'] for r in out[0]]):.0f} / "
                f"{np.mean([r.cost[p]['tokens'] for r in out[0]]):.0f}"
                for p in out[0][0].cost
            )
        )
    print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    if profile:
        profile.dump_stats(args.profile)
        print(f"profile of the new code's {'GPU-default' if args.profile_big else 'CPU-group'} runs: {args.profile}")


if __name__ == "__main__":
    main()
