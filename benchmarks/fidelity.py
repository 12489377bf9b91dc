"""Fidelity table of an evaluated work dir: per layer and test set, F1 with its 95% bootstrap interval for
N2G and each baseline, N2G's precision and recall, and N2G's margin over the best baseline.

Usage (after `n2g-site fit` and `n2g-site evaluate`, e.g. with `--ood-corpus stdlib-docstrings
--ordinary-eval-tokens 32768`):

    python benchmarks/fidelity.py --work-dir <work dir>

Prints a Markdown table read from evaluate/summary.json (intervals: intervals.py, over neurons), then the
cells where N2G's mean F1 is below the best baseline's, with the gap.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METHODS = {"n2g": "N2G", "token_lookup": "token mean", "token_max": "token max", "ngram": "n-gram"}
DATASETS = {"heldout": "held-out top", "ordinary": "ordinary", "ood": "OOD"}


def cell(m: dict) -> str:
    if m.get("f1") is None:
        return "n/a"
    interval = m.get("f1_interval")
    text = f"{m['f1']:.2f}"
    return text + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def table(summary: dict) -> tuple[list[str], list[str]]:
    head = ["layer", "neurons", "text", *METHODS.values(), "N2G P", "N2G R", "N2G - best baseline"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    misses = []
    for layer, s in sorted(summary["layers"].items(), key=lambda kv: int(kv[0])):
        for key, name in DATASETS.items():
            if key not in s:
                continue
            methods = s[key]
            best = max((methods[m]["f1"] for m in METHODS if m != "n2g" and methods[m]["f1"] is not None), default=None)
            ours = methods["n2g"]["f1"]
            gap = None if ours is None or best is None else ours - best
            lines.append(
                "| "
                + " | ".join(
                    [
                        layer,
                        str(methods["n2g"].get("f1_neurons", s["neurons"])),
                        name,
                        *(cell(methods[m]) for m in METHODS),
                        num(methods["n2g"]["precision"]),
                        num(methods["n2g"]["recall"]),
                        "n/a" if gap is None else f"{gap:+.2f}",
                    ]
                )
                + " |"
            )
            if gap is not None and gap < 0:
                misses.append(f"layer {layer}, {name}: N2G {ours:.2f} vs best baseline {best:.2f} ({gap:+.2f})")
    return lines, misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    args = parser.parse_args()
    summary = json.loads((args.work_dir / "evaluate" / "summary.json").read_text())
    lines, misses = table(summary)
    extra = {k: summary[k] for k in ("ood_corpus", "ood_tokens", "ordinary_eval_tokens") if k in summary}
    print(f"fire threshold {summary['fire_threshold']}, n-gram n = {summary['ngram']}, {extra}")
    print("\n".join(lines))
    print(f"\nN2G below the best baseline in {len(misses)} cells:")
    for line in misses:
        print("-", line)


if __name__ == "__main__":
    main()
