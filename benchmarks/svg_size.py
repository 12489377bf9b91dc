"""Graph drawings before and after, side by side in one run: SVG bytes and drawing time per graph.

    .venv/bin/python benchmarks/svg_size.py --work-dir .n2g/smollm2-135m__wiki      # every fitted graph there
    .venv/bin/python benchmarks/svg_size.py --synthetic 60                           # random tries, 10-1,700 nodes

"Before" is ``render/svg.py`` and ``render/svg_compact.py`` as of ``--before`` (a git revision of this
repository, default the last commit that drew with Graphviz's ``dot``), loaded from git into modules of their
own; it needs ``dot`` on PATH. "After" is the code on the path (svg.draw: in-process layout, no ``dot``).
Both draw the same graphs. Per graph: the inline SVG's bytes (what a page carries; gzip-9 bytes beside it),
the drawn nodes, and per graph the wall seconds of drawing the whole set as render draws a layer (before: DOT
text, one ``render_svgs`` call with dot in batches of 200 on one job and the compaction; after: one
``svg.draw`` per graph), the best of ``--repeat``, before and after interleaved. Prints a Markdown table.
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
BEFORE = "af1f22c"  # main before issue 15: DOT text, dot -Tsvg, svg_compact's parser


def _load(rev: str, path: str, name: str, replace: tuple[tuple[str, str], ...] = ()) -> types.ModuleType:
    """``path`` at ``rev`` as the module ``n2g_site.render.<name>`` (``replace``: source edits, old -> new)."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:{path}"], capture_output=True, check=True, text=True
    ).stdout
    for old, new in replace:
        source = source.replace(old, new)
    spec = importlib.util.spec_from_loader(f"n2g_site.render.{name}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "n2g_site.render"
    module.__file__ = f"<{rev}:{path}>"
    sys.modules[spec.name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own file, from git
    return module


def load_before(rev: str) -> types.ModuleType:
    """``render/svg.py`` at ``rev``, reading the ``render/svg_compact.py`` of the same revision."""
    _load(rev, "generator/n2g_site/render/svg_compact.py", "_svg_compact_before")
    return _load(
        rev,
        "generator/n2g_site/render/svg.py",
        "_svg_before",
        (
            ("from . import svg_compact", "from . import _svg_compact_before as svg_compact"),
            ("from .svg_compact import", "from ._svg_compact_before import"),
        ),
    )


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


def size(svg: str, drawn: int) -> dict:
    data = svg.encode("utf-8")
    return {"bytes": len(data), "gzip": len(gzip.compress(data, 9)), "drawn": drawn}


def measure_before(module: types.ModuleType, graph: Graph, title: str) -> dict:
    drawing = module.graph_dot(graph)
    svg = module.render_svgs({0: drawing.source}, {0: title}, jobs=1)[0]
    return size(svg, drawing.drawn)


def measure_after(graph: Graph, title: str) -> dict:
    drawing = after.draw(graph, title)
    return size(drawing.svg, drawing.drawn)


def batched_before(module: types.ModuleType, graphs: list[tuple[str, Graph]]) -> float:
    """Seconds of drawing every graph as render did before issue 15: DOT text, one ``render_svgs`` call (dot
    in batches, one job, no cache), the compaction."""
    t = time.perf_counter()
    sources = {key: module.graph_dot(graph).source for key, graph in graphs}
    module.render_svgs(sources, {key: f"N2G graph of {key}" for key in sources}, jobs=1)
    return time.perf_counter() - t


def batched_after(graphs: list[tuple[str, Graph]]) -> float:
    t = time.perf_counter()
    for key, graph in graphs:
        after.draw(graph, f"N2G graph of {key}")
    return time.perf_counter() - t


def summary(name: str, rows: list[dict], batch: float) -> str:
    def col(key: str) -> list[float]:
        return [r[key] for r in rows]

    b, g, n = col("bytes"), col("gzip"), col("drawn")
    return (
        f"| {name} | {statistics.median(n):.0f} / {max(n):.0f} | {statistics.median(b) / 1e3:.1f} KB | "
        f"{max(b) / 1e3:.1f} KB | {sum(b) / 1e3:.0f} KB | {sum(b) / sum(n):.0f} B | {sum(g) / 1e3:.0f} KB | "
        f"{batch * 1e3 / len(rows):.2f} ms |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, help="a work dir with fit files: draw every fitted graph")
    parser.add_argument("--synthetic", type=int, default=0, help="also draw this many synthetic tries")
    parser.add_argument("--before", default=BEFORE, help=f"git revision of the old drawing code (default {BEFORE})")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per version (best kept)")
    args = parser.parse_args()
    before = load_before(args.before)
    sets: list[tuple[str, list[tuple[str, Graph]]]] = []
    if args.work_dir:
        sets.append((f"{args.work_dir.name} ({{n}} graphs)", work_graphs(args.work_dir)))
    if args.synthetic:
        sets.append(("synthetic ({n} tries)", synthetic_graphs(args.synthetic)))
    if not sets:
        parser.error("give --work-dir or --synthetic")
    print(
        "| graphs | drawn nodes (median / max) | SVG median | SVG max | SVG total | bytes per drawn node | "
        "total gzip-9 | drawing per graph (wall) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, graphs in sets:
        rows: dict[str, list[dict]] = {
            "before": [measure_before(before, graph, f"N2G graph of {key}") for key, graph in graphs],
            "after": [measure_after(graph, f"N2G graph of {key}") for key, graph in graphs],
        }
        batch: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.repeat):  # interleaved: the same load for both
            batch["before"].append(batched_before(before, graphs))
            batch["after"].append(batched_after(graphs))
        sizes = sorted(len(g.nodes) for _, g in graphs)
        print(
            f"| **{label.format(n=len(graphs))}**, trie nodes median {statistics.median(sizes):.0f}, "
            f"max {sizes[-1]} | | | | | | | |"
        )
        for name in ("before", "after"):
            print(summary(name, rows[name], min(batch[name])))
        ratio = sum(r["bytes"] for r in rows["after"]) / sum(r["bytes"] for r in rows["before"])
        print(f"| after / before | | | | {ratio:.2f} | | | {min(batch['after']) / min(batch['before']):.3f} |")


if __name__ == "__main__":
    main()
