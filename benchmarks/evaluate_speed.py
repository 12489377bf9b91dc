"""Evaluate stage speed: the code before the vectorised predictor against today's, on the same fitted
neurons in one run, and the files both write compared byte for byte.

    PYTHONPATH=generator .venv/bin/python benchmarks/evaluate_speed.py --work-dir .n2g/smollm2-135m__wiki
    PYTHONPATH=generator .venv/bin/python benchmarks/evaluate_speed.py --synthetic 1536 --before-neurons 256

    PYTHONPATH=generator .venv/bin/python benchmarks/evaluate_speed.py --work-dir .n2g/smollm2-135m__wiki \
        --replicate 1536 --before-neurons 256

The work dir (a real one; a real one's fitted neurons cycled to ``--replicate`` neurons, real graphs and
windows; or a synthetic one shaped like SmolLM2-135M from render_scale.py: 1,536 neurons
per layer, 20 + 20 windows of 53 tokens, 4,096 tokens of ordinary text, graphs of 20-150 nodes) is copied
to a temporary folder first: evaluate writes into it, and a source work dir is never touched. "before" is
the whole ``n2g_site`` package at commit BEFORE (``git archive``; the last commit with the serial
per-sequence evaluate), "after" this checkout; each runs ``evaluate()`` in its own Python process, in turn
(before, after x1, after x2, repeated ``--repeat`` times), timed around the call (model-free: manifest,
vocabulary, mined layers and fit files are read, every evaluate file written). Per run: wall seconds,
CPU seconds (the process and its workers), ms per neuron, and a hash of every file under ``evaluate/``.
Other agents share these cores: compare the rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BEFORE = "89af56858d9bf7f8ffa4853c762c5a81476c609d"  # n2g_site with Predictor looped per sequence and pattern
REPO = Path(__file__).resolve().parents[1]


def _tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _stage(work: str, layers: str | None, neurons: str | None, jobs: int | None) -> None:
    """Runs in a child process (PYTHONPATH chooses before or after): evaluate, timed; prints one JSON line."""
    import inspect
    import resource
    import time

    from n2g_site.config import Config
    from n2g_site.evaluate import evaluate
    from n2g_site.store import WorkDir

    def cpu() -> float:
        return sum(
            r.ru_utime + r.ru_stime
            for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
        )

    cfg = Config(work_dir=Path(work), layers=layers, neurons=neurons)
    kwargs = {"jobs": jobs} if "jobs" in inspect.signature(evaluate).parameters else {}
    wall, used = time.perf_counter(), cpu()
    summary = evaluate(cfg, WorkDir(Path(work)), **kwargs)
    print(json.dumps({"neurons": summary.neurons, "wall": time.perf_counter() - wall, "cpu": cpu() - used}))


def _run(pythonpath: Path, work: Path, layers: str | None, neurons: str | None, jobs: int | None) -> dict:
    shutil.rmtree(work / "evaluate", ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    args = [
        sys.executable,
        __file__,
        "--stage",
        str(work),
        "--layers",
        layers or "",
        "--neurons",
        neurons or "",
        "--jobs",
        str(jobs or 0),
    ]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"evaluate run failed ({pythonpath}):\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["files"] = _tree_hash(work / "evaluate")
    return out


def _before_package(into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", BEFORE, "generator/n2g_site"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "generator"


def _synthetic(root: Path, neurons: int) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import render_scale

    render_scale._add_tokenizer = lambda work: None  # pages are not built here
    render_scale.make_workdir(root, neurons, jobs=1)


def _replicated(source: Path, root: Path, neurons: int) -> None:
    """A work dir of ``neurons`` neurons in layers 0, 1, ... (1,536 each) that cycle through the source's
    fitted neurons: their real graphs, windows, ordinary-text activations and vocabulary."""
    import numpy as np

    from n2g_site.store import ExampleSet, MinedLayer, WorkDir, read_json, write_json

    src, work = WorkDir(source), WorkDir(root)
    manifest = read_json(src.manifest)
    per_layer = int(manifest["model_info"]["d_mlp"])
    root.mkdir(parents=True)
    shutil.copy(src.manifest, work.manifest)
    shutil.copy(src.vocab, work.vocab)
    mined = {int(p.stem.split("_")[1]): MinedLayer.load(p) for p in sorted((source / "mine").glob("layer_*.npz"))}
    pool = [
        (layer, int(n))
        for layer, m in mined.items()
        for n in m.neurons
        if src.fitted(layer, int(n)).exists() and read_json(src.fitted(layer, int(n)))["status"] == "fitted"
    ]
    for layer in range(-(-neurons // per_layer)):
        count = min(per_layer, neurons - layer * per_layer)
        picks = [pool[(layer * per_layer + i) % len(pool)] for i in range(count)]

        def gather(split: str) -> ExampleSet:
            return ExampleSet(
                **{
                    f: np.stack([getattr(getattr(mined[ll], split), f)[mined[ll].row(nn)] for ll, nn in picks])
                    for f in ExampleSet.__dataclass_fields__
                }
            )

        first = mined[picks[0][0]]
        ordinary = type(first.ordinary)(
            first.ordinary.tokens,
            np.stack([mined[ll].ordinary.acts[mined[ll].row(nn)] for ll, nn in picks]),
            first.ordinary.doc,
        )
        MinedLayer(layer, np.arange(count), gather("train"), gather("heldout"), first.stats, ordinary).save(
            work.mined(layer)
        )
        for i, (ll, nn) in enumerate(picks):
            write_json(work.fitted(layer, i), {**read_json(src.fitted(ll, nn)), "layer": layer, "neuron": i})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, help="a fitted work dir (copied; never written)")
    parser.add_argument("--synthetic", type=int, help="or: this many synthetic neurons (layer 0 first)")
    parser.add_argument(
        "--replicate",
        type=int,
        help="with --work-dir: this many neurons (layer 0 first) cycling through its fitted ones",
    )
    parser.add_argument("--layers", help="selection (default: the work dir's defaults, or all synthetic layers)")
    parser.add_argument("--neurons", help="selection for 'after' (default as --layers)")
    parser.add_argument(
        "--before-neurons",
        type=int,
        help="'before' only on the first N neurons of layer 0 (it is ~20x slower); the "
        "'after' runs are repeated on that selection for the byte comparison",
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        _stage(args.stage, args.layers or None, args.neurons or None, args.jobs or None)
        return
    if (args.work_dir is None) == (args.synthetic is None):
        parser.error("pass one of --work-dir and --synthetic")
    tmp = Path(tempfile.mkdtemp(prefix="n2g-evaluate-speed-"))
    try:
        work = tmp / "work"
        if args.work_dir is not None and args.replicate:
            _replicated(args.work_dir, work, args.replicate)
            args.layers = args.layers or f"0-{(args.replicate - 1) // 1536}"
            args.neurons = args.neurons or f"0-{min(args.replicate, 1536) - 1}"
        elif args.work_dir is not None:
            shutil.copytree(args.work_dir, work, ignore=shutil.ignore_patterns("evaluate", "site*"))
        else:
            _synthetic(work, args.synthetic)
            args.layers = args.layers or f"0-{(args.synthetic - 1) // 1536}"
            args.neurons = args.neurons or f"0-{min(args.synthetic, 1536) - 1}"
        before = _before_package(tmp)
        after = REPO / "generator"
        small = None if args.before_neurons is None else ("0", f"0-{args.before_neurons - 1}")
        runs: list[tuple[str, dict]] = []
        for _ in range(args.repeat):
            if small is None:
                runs.append(("before (1 process)", _run(before, work, args.layers, args.neurons, None)))
                runs.append(("after, jobs=1", _run(after, work, args.layers, args.neurons, 1)))
                runs.append(("after, jobs=2", _run(after, work, args.layers, args.neurons, 2)))
            else:
                runs.append((f"before (1 process), {args.before_neurons} neurons", _run(before, work, *small, None)))
                runs.append((f"after, jobs=1, {args.before_neurons} neurons", _run(after, work, *small, 1)))
                runs.append((f"after, jobs=2, {args.before_neurons} neurons", _run(after, work, *small, 2)))
                runs.append(("after, jobs=1, all", _run(after, work, args.layers, args.neurons, 1)))
                runs.append(("after, jobs=2, all", _run(after, work, args.layers, args.neurons, 2)))
        print(f"load average before/after: {os.getloadavg()[0]:.2f} (1 min, at the end)")
        print("| run | neurons | wall s | CPU s | ms/neuron (wall) | vs before | evaluate/ files (sha256) |")
        print("|---|---|---|---|---|---|---|")
        base = {}
        for name, r in runs:
            ms = 1000 * r["wall"] / max(r["neurons"], 1)
            if name.startswith("before"):
                base[r["neurons"]] = ms
            ratio = f"{base[r['neurons']] / ms:.1f}x" if r["neurons"] in base and not name.startswith("before") else ""
            print(f"| {name} | {r['neurons']} | {r['wall']:.2f} | {r['cpu']:.2f} | {ms:.2f} | {ratio} | {r['files']} |")
        same = {}
        for _, r in runs:
            same.setdefault(r["neurons"], set()).add(r["files"])
        for count, hashes in same.items():
            print(f"{count} neurons: evaluate/ files {'identical in every run' if len(hashes) == 1 else 'DIFFER'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
