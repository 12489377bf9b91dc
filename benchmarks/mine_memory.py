"""Peak memory of mining: the demo's corpus size against 10x more text (embedded model).

Runs `n2g-site mine` in a fresh process for each corpus budget and reads the process's peak resident set
size (getrusage of the child). Mining keeps top-k buffers and histograms, never the corpus, so the peak
should not grow with the text. To keep the run short the forward stops at layer 0 (`--layers 0`); the
bookkeeping is for 64 neurons' windows and all 1,536 neurons' statistics. Usage:

    .venv/bin/python benchmarks/mine_memory.py [--budgets 100000,1000000] [--layers 0] [--neurons 0-63]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="100000,1000000")
    parser.add_argument("--layers", default="0")
    parser.add_argument("--neurons", default="0-63")
    args = parser.parse_args()
    rows = []
    for budget in (int(b) for b in args.budgets.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            pid = os.fork()
            if pid == 0:  # child: its own peak RSS, nothing inherited from other runs
                os.execv(
                    sys.executable,
                    [
                        sys.executable,
                        "-m",
                        "n2g_site.cli",
                        "mine",
                        "--layers",
                        args.layers,
                        "--neurons",
                        args.neurons,
                        "--max-tokens",
                        str(budget),
                        "--work-dir",
                        tmp,
                    ],
                )
            _, status, usage = os.wait4(pid, 0)
            seconds = time.perf_counter() - started
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"mine failed for --max-tokens {budget}")
        rows.append((budget, usage.ru_maxrss / 1024, seconds))
    base = rows[0][1]
    print("\n| corpus tokens mined | peak RSS (MiB) | vs first | seconds |")
    print("|---|---|---|---|")
    for budget, rss, seconds in rows:
        print(f"| {budget:,} | {rss:.0f} | {rss / base:.2f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
