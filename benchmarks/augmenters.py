"""Augmenters side by side on the embedded model: graph size, fit cost by phase, held-out fidelity.

Fits the same neurons with each augmenter (none, self, and mlm when its model is on disk) from one mining
run, and prints one table. Usage (after `n2g-site mine`, e.g. the demo's `n2g-site build`):

    .venv/bin/python benchmarks/augmenters.py [--work-dir .n2g/smollm2-135m__wiki] [--layers 0,12,23] [--neurons 0-3]

Each augmenter fits into its own copy of the work dir (under <work-dir>/bench-augmenters/), so the demo's
own fit files are left alone. Numbers are per neuron: requests (sequences asked of the model, before the
engine dedupes them) and their tokens, by phase.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from n2g_site.config import Config, UserError
from n2g_site.fit import fit
from n2g_site.models import load_model
from n2g_site.n2g.phases import PHASES
from n2g_site.proposers import MlmProposer
from n2g_site.store import WorkDir, read_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=Path(".n2g/smollm2-135m__wiki"))
    parser.add_argument("--layers", default="0,12,23")
    parser.add_argument("--neurons", default="0-3")
    args = parser.parse_args()
    source = WorkDir(args.work_dir)
    manifest = read_json(source.require(source.manifest, "mine"))
    base = Config(model=manifest["model"], corpus=manifest["corpus"], layers=args.layers, neurons=args.neurons)
    model = load_model(base.model)
    augmenters = ["none", "self"]
    try:  # only from disk: a benchmark never downloads
        MlmProposer.load(base.fit.mlm_model, [], model.encode, 1, local_only=True)
        augmenters.append("mlm")
    except UserError:
        print(f"mlm: {base.fit.mlm_model} is not on disk here, so it is left out", file=sys.stderr)
    rows = []
    for name in augmenters:
        work = WorkDir(args.work_dir / "bench-augmenters" / name)
        shutil.rmtree(work.root, ignore_errors=True)
        (work.root / "mine").mkdir(parents=True)
        for f in (source.manifest, source.vocab, source.corpus):
            shutil.copy(f, work.root / f.name)
        for layer in base.select_layers(manifest["model_info"]["n_layers"]):
            shutil.copy(source.mined(layer), work.mined(layer))
        cfg = replace(base, work_dir=work.root, fit=replace(base.fit, augmenter=name))
        started = time.perf_counter()
        fit(cfg, lambda: model, work)
        seconds = time.perf_counter() - started
        files = [read_json(p) for p in sorted((work.root / "fit").rglob("*.json"))]
        live = [f for f in files if f["status"] == "fitted"]
        row = {
            "augmenter": name,
            "neurons": len(files),
            "s/neuron": seconds / max(len(files), 1),
            "nodes": statistics.mean(len(f["graph"]["nodes"]) for f in live) if live else 0.0,
        }
        for phase in PHASES:
            row[f"{phase} req"] = statistics.mean(f["cost"][phase]["requests"] for f in live) if live else 0
            row[f"{phase} tok"] = statistics.mean(f["cost"][phase]["tokens"] for f in live) if live else 0
        for metric in ("precision", "recall", "f1"):
            values = [f["heldout"][metric] for f in live if f["heldout"] and f["heldout"][metric] is not None]
            row[metric] = statistics.mean(values) if values else float("nan")
            row[f"{metric} n"] = len(values)
        rows.append(row)
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    base = rows[0]
    print(
        "\n| augmenter | s/neuron | mean nodes | "
        + " | ".join(f"{p} (req / tok)" for p in PHASES)
        + " | held-out P | R | F1 | tokens vs none |"
    )
    print("|" + "---|" * (8 + len(PHASES)))
    for r in rows:
        tokens = sum(r[f"{p} tok"] for p in PHASES)
        ratio = tokens / max(sum(base[f"{p} tok"] for p in PHASES), 1)
        phases = " | ".join(f"{r[f'{p} req']:.0f} / {r[f'{p} tok']:.0f}" for p in PHASES)
        print(
            f"| {r['augmenter']} | {r['s/neuron']:.2f} | {r['nodes']:.1f} | {phases} | {r['precision']:.3f} "
            f"| {r['recall']:.3f} | {r['f1']:.3f} | {ratio:.2f}x |"
        )
    print(
        f"\n{base['neurons']} neurons per augmenter; P/R/F1 are means over neurons with a defined value "
        f"(recall needs true firing in the held-out windows: n = {', '.join(str(r['recall n']) for r in rows)})."
    )


if __name__ == "__main__":
    main()
