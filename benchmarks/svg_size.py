"""Graph drawings before and after, side by side in one run: SVG bytes and ``dot`` time per graph.

    .venv/bin/python benchmarks/svg_size.py --work-dir .n2g/smollm2-135m__wiki      # every fitted graph there
    .venv/bin/python benchmarks/svg_size.py --synthetic 60                           # random tries, 10-1,700 nodes

"Before" is ``render/svg.py`` as of ``--before`` (a git revision of this repository, default the commit before
the compact drawing), loaded from git into its own module; "after" is the code on the path. Both draw the
same graphs with the same ``dot``. Per graph: the inline SVG's bytes (what a page carries; gzip-9 bytes
beside it), the drawn nodes, the seconds of one ``dot -Tsvg`` process drawing that graph alone (before
and after interleaved, each the best of ``--repeat`` runs; mostly dot's start-up), the seconds svg.py spends
turning dot's output into the page's SVG, and per graph the seconds of one ``render_svgs`` call drawing the
whole set as render draws a layer (DOT text, dot in batches of 200 on one job, post-processing). Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import random
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import orjson

from n2g_site.n2g.graph import Element, Graph, Line, build_graph
from n2g_site.render import svg as after

REPO = Path(__file__).resolve().parents[1]
BEFORE = "89af568"  # main before the compact drawing (render: trie drawing, svg_compact)


def load_before(rev: str) -> types.ModuleType:
    """``generator/n2g_site/render/svg.py`` at ``rev``, as the module ``n2g_site.render._svg_before``."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:generator/n2g_site/render/svg.py"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("n2g_site.render._svg_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "n2g_site.render"
    module.__file__ = f"<{rev}:svg.py>"
    sys.modules[spec.name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own file, from git
    return module


def work_graphs(work: Path) -> list[tuple[str, Graph]]:
    out = []
    for path in sorted(work.joinpath("fit").rglob("N*.json")):
        data = orjson.loads(path.read_bytes()).get("graph")
        if data and data.get("nodes"):
            out.append((f"{path.parent.name}/{path.stem}", Graph.from_json(data)))
    return out


def synthetic_graphs(count: int, seed: int = 0) -> list[tuple[str, Graph]]:
    """Tries built from random lines like fitting builds them (every leaf a pattern end): tokens from a
    Zipf-like 300-token vocabulary, lines 1-8 tokens long with ignore positions, sizes log-spread."""
    rng = random.Random(seed)
    vocab = [f" w{i}" for i in range(300)] + ["<b>&amp;</b>", '"', "\\", "\n", " ", "中文"]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    out = []
    for i in range(count):
        target = int(10 * 170 ** (i / max(count - 1, 1)))  # 10 .. 1,700 nodes
        lines: list[Line] = []
        graph = Graph()
        while len(graph.nodes) < target:
            length = rng.randint(1, 8)
            elements = []
            for d in range(length):
                ignore = 0 < d < length - 1 and rng.random() < 0.15
                tok = rng.choices(vocab, weights)[0]
                elements.append(
                    Element(
                        None if ignore else tok.strip() or tok,
                        "" if ignore else tok,
                        1.0 if d == 0 else rng.uniform(0.75, 1.0),
                        rng.uniform(0, 1),
                    )
                )
            lines.append(Line(elements, round(rng.uniform(0.5, 1.0), 3)))
            graph = build_graph(lines)
        out.append((f"synthetic/{i}", graph))
    return out


def dot_seconds(dot: str, source: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([dot, "-Tsvg"], input=source.encode("utf-8"), capture_output=True, check=True)
        best = min(best, time.perf_counter() - t)
    return best


def measure(module: types.ModuleType, graph: Graph, title: str, dot: str, repeat: int) -> dict:
    drawing = module.graph_dot(graph)
    seconds = dot_seconds(dot, drawing.source, repeat)
    raw = module._run(dot, drawing.source)[0]
    t = time.perf_counter()
    svg = module.clean_svg(raw, title)
    clean = time.perf_counter() - t
    data = svg.encode("utf-8")
    return {
        "bytes": len(data),
        "gzip": len(gzip.compress(data, 9)),
        "drawn": drawing.drawn,
        "dot": seconds,
        "clean": clean,
    }


def batched(module: types.ModuleType, graphs: list[tuple[str, Graph]], repeat: int) -> float:
    """Seconds of one ``render_svgs`` call drawing every graph (dot in batches, one job, no cache: as
    render draws a layer), DOT sources included; the best of ``repeat``."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        sources = {key: module.graph_dot(graph).source for key, graph in graphs}
        module.render_svgs(sources, {key: f"N2G graph of {key}" for key in sources}, jobs=1)
        best = min(best, time.perf_counter() - t)
    return best


def summary(name: str, rows: list[dict], batch: float) -> str:
    def col(key: str) -> list[float]:
        return [r[key] for r in rows]

    b, g, n, d, c = col("bytes"), col("gzip"), col("drawn"), col("dot"), col("clean")
    return (
        f"| {name} | {statistics.median(n):.0f} / {max(n):.0f} | {statistics.median(b) / 1e3:.1f} KB | "
        f"{max(b) / 1e3:.1f} KB | {sum(b) / 1e3:.0f} KB | {sum(b) / sum(n):.0f} B | {sum(g) / 1e3:.0f} KB | "
        f"{statistics.median(d) * 1e3:.0f} ms | {max(d) * 1e3:.0f} ms | {sum(c) * 1e3 / len(c):.1f} ms | "
        f"{batch * 1e3 / len(rows):.1f} ms |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, help="a work dir with fit files: draw every fitted graph")
    parser.add_argument("--synthetic", type=int, default=0, help="also draw this many synthetic tries")
    parser.add_argument("--before", default=BEFORE, help=f"git revision of the old svg.py (default {BEFORE})")
    parser.add_argument("--repeat", type=int, default=3, help="dot runs per graph and version (best kept)")
    args = parser.parse_args()
    before = load_before(args.before)
    dot = after.dot_binary()
    sets: list[tuple[str, list[tuple[str, Graph]]]] = []
    if args.work_dir:
        sets.append((f"{args.work_dir.name} ({{n}} graphs)", work_graphs(args.work_dir)))
    if args.synthetic:
        sets.append(("synthetic ({n} tries)", synthetic_graphs(args.synthetic)))
    if not sets:
        parser.error("give --work-dir or --synthetic")
    print(
        "| graphs | drawn nodes (median / max) | SVG median | SVG max | SVG total | bytes per drawn node | "
        "total gzip-9 | dot alone median | dot alone max | post-processing per graph | batched per graph |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, graphs in sets:
        rows: dict[str, list[dict]] = {"before": [], "after": []}
        for key, graph in graphs:
            title = f"N2G graph of {key}"
            for name, module in (("before", before), ("after", after)):  # interleaved: same load for both
                rows[name].append(measure(module, graph, title, dot, args.repeat))
        batch = {"before": [], "after": []}
        for _ in range(args.repeat):  # interleaved as well
            for name, module in (("before", before), ("after", after)):
                batch[name].append(batched(module, graphs, 1))
        sizes = sorted(len(g.nodes) for _, g in graphs)
        print(
            f"| **{label.format(n=len(graphs))}**, trie nodes median {statistics.median(sizes):.0f}, "
            f"max {sizes[-1]} | | | | | | | | | | |"
        )
        for name in ("before", "after"):
            print(summary(name, rows[name], min(batch[name])))
        ratio = sum(r["bytes"] for r in rows["after"]) / sum(r["bytes"] for r in rows["before"])
        print(f"| after / before | | | | {ratio:.2f} | | | | | | {min(batch['after']) / min(batch['before']):.2f} |")


if __name__ == "__main__":
    main()
