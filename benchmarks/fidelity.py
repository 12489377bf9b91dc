"""Fidelity table of evaluated work dirs: per layer and test set, F1 with its 95% bootstrap interval for
N2G and each baseline, N2G's precision and recall, and N2G's margin over the best baseline; with
``--paper-work-dir``, the same neurons fitted with ``--paper`` side by side (issue 19's two modes).

Usage (after `n2g-site fit` and `n2g-site evaluate`, e.g. with `--ood-corpus stdlib-docstrings
--ordinary-eval-tokens 32768`, in each work dir):

    python benchmarks/fidelity.py --work-dir <default mode> [--paper-work-dir <--paper copy>]

The two work dirs must share their mined data (one mined, then copied): the script checks their run.json
mined-data digests. The baselines are fitted on the windows the graph was fitted on, so in the default mode,
which adds band-sample windows (fit.band_rule), they may score otherwise than in --paper's dir; the table's
baseline columns are the default mode's. Prints a Markdown
table read from evaluate/summary.json (intervals: intervals.py, over neurons), the means of the layer
means, and the cells that miss issue 19's targets (the default mode above the best baseline in every
layer and test set; its ordinary-text mean F1 at least twice --paper's), with the gap.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

BASELINES = {"token_lookup": "token mean", "token_max": "token max", "ngram": "n-gram"}
DATASETS = {"heldout": "held-out top", "ordinary": "ordinary", "ood": "OOD"}


def cell(m: dict) -> str:
    if m.get("f1") is None:
        return "n/a"
    interval = m.get("f1_interval")
    text = f"{m['f1']:.2f}"
    return text + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def best_baseline(methods: dict) -> float | None:
    return max((methods[m]["f1"] for m in BASELINES if methods[m]["f1"] is not None), default=None)


def table(summary: dict, paper: dict | None = None) -> tuple[list[str], list[str]]:
    """Rows per layer and dataset; ``paper``: the --paper work dir's summary (same layers and neurons)."""
    modes = ["N2G"] + (["N2G --paper"] if paper else [])
    head = ["layer", "neurons", "text", *modes, *BASELINES.values(), "N2G P", "N2G R"]
    head += ["--paper P", "--paper R"] if paper else []
    head += ["N2G - best baseline"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    misses = []
    for layer, s in sorted(summary["layers"].items(), key=lambda kv: int(kv[0])):
        for key, name in DATASETS.items():
            if key not in s:
                continue
            methods = s[key]
            theirs = paper["layers"][layer][key] if paper else None
            best = best_baseline(methods)
            ours = methods["n2g"]["f1"]
            gap = None if ours is None or best is None else ours - best
            row = [layer, str(methods["n2g"].get("f1_neurons", s["neurons"])), name, cell(methods["n2g"])]
            row += [cell(theirs["n2g"])] if theirs else []
            row += [cell(methods[m]) for m in BASELINES]
            row += [num(methods["n2g"]["precision"]), num(methods["n2g"]["recall"])]
            row += [num(theirs["n2g"]["precision"]), num(theirs["n2g"]["recall"])] if theirs else []
            row += ["n/a" if gap is None else f"{gap:+.2f}"]
            lines.append("| " + " | ".join(row) + " |")
            if gap is not None and gap <= 0:
                misses.append(f"layer {layer}, {name}: N2G {ours:.2f} vs best baseline {best:.2f} ({gap:+.2f})")
    return lines, misses


def layer_means(summary: dict, dataset: str, method: str) -> float | None:
    values = [
        s[dataset][method]["f1"]
        for s in summary["layers"].values()
        if dataset in s and s[dataset][method]["f1"] is not None
    ]
    return sum(values) / len(values) if values else None


def check_same_mined(work: Path, paper: Path) -> list[str]:
    """Layers whose mined data differ between the two work dirs (run.json "mined" digests)."""
    ours = json.loads((work / "run.json").read_text()).get("mined") or {}
    theirs = json.loads((paper / "run.json").read_text()).get("mined") or {}
    return [f"layer {layer}" for layer in sorted(set(ours) | set(theirs)) if ours.get(layer) != theirs.get(layer)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, required=True, help="the default (calibrated) mode's work dir")
    parser.add_argument("--paper-work-dir", type=Path, help="the same neurons fitted with --paper")
    args = parser.parse_args()
    summary = json.loads((args.work_dir / "evaluate" / "summary.json").read_text())
    paper = None
    if args.paper_work_dir:
        paper = json.loads((args.paper_work_dir / "evaluate" / "summary.json").read_text())
        differ = check_same_mined(args.work_dir, args.paper_work_dir)
        if differ:
            raise SystemExit(f"the work dirs' mined data differ: {', '.join(differ)} (mine once, then copy)")
    lines, misses = table(summary, paper)
    extra = {k: summary[k] for k in ("ood_corpus", "ood_tokens", "ordinary_eval_tokens") if k in summary}
    print(f"fire threshold {summary['fire_threshold']}, n-gram n = {summary['ngram']}, {extra}")
    print("\n".join(lines))
    print("\nMeans of the layer means (F1):")
    for key, name in DATASETS.items():
        if not any(key in s for s in summary["layers"].values()):
            continue
        parts = [f"N2G {num(layer_means(summary, key, 'n2g'))}"]
        if paper:
            parts.append(f"--paper {num(layer_means(paper, key, 'n2g'))}")
        parts += [f"{label} {num(layer_means(summary, key, m))}" for m, label in BASELINES.items()]
        print(f"- {name}: " + ", ".join(parts))
    if paper:
        ours, theirs = layer_means(summary, "ordinary", "n2g"), layer_means(paper, "ordinary", "n2g")
        if ours is not None and theirs:
            verdict = "met" if ours >= 2 * theirs else f"missed by {2 * theirs - ours:.2f}"
            print(
                f"\nOrdinary-text mean F1: N2G {ours:.3f} vs --paper {theirs:.3f} ({ours / theirs:.2f}x; 2x {verdict})"
            )
    print(f"\nN2G at or below the best baseline in {len(misses)} cells:")
    for line in misses:
        print("-", line)


if __name__ == "__main__":
    main()
