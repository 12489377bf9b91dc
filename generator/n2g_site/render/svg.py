"""Neuron graphs as SVG, drawn in process: what each node shows, laid out by layout.py, written by svg_compact.py.

Layout follows the original N2G: the activating tokens on the right and their context extending to the
left, arrows pointing from the context toward the token it activates. What is drawn (drawing.py): the trie
itself, so every path from an activating token to an end marker is a pattern, and for a large graph only
its strongest patterns, up to a node budget, with counts of what is left out. Differences from the
original drawing:

- ignore nodes (key ``None``) are drawn as a small dashed "any token" node instead of being hidden;
- nodes where a match may stop (``end`` not null) get a bold outline (class ``end``);
- at most ``max_nodes`` nodes in ``max_rows`` rows are drawn (whole patterns of at most ``max_depth`` tokens,
  strongest first), the rest are counted.

The drawing is compact (svg_compact.py): styles by class (:data:`~.svg_compact.GRAPH_CSS`), whole-point
coordinates, the tooltips kept as ``<title>`` elements. Until issue 15 Graphviz's ``dot`` drew it; the tidy
tree layout of layout.py places the same boxes the same way in a fraction of the time (~0.6 ms a graph
against ~2.7 ms, benchmarks/README.md), so nothing is cached between renders.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..n2g.graph import Graph
from . import layout, svg_compact
from .drawing import MAX_DEPTH, MAX_NODES, MAX_ROWS, select
from .svg_compact import GRAPH_CSS
from .tokens import display_token

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_ROWS",
    "GRAPH_CSS",
    "Drawing",
    "draw",
    "standalone_svg",
    "svg_object",
]

ACT_RGB = (0xE0, 0x31, 0x31)  # activating tokens: white -> red by activation
CTX_RGB = (0x33, 0x70, 0xE0)  # context tokens: white -> blue by importance
FONT = "Helvetica,Arial,sans-serif"
ARROW = 0.6  # the arrowhead's size: 6 pt long, 4.2 pt wide (svg_compact._marker)


@dataclass(frozen=True)
class Drawing:
    """One neuron graph's SVG and what was drawn."""

    svg: str
    nodes: int  # trie nodes
    drawn: int  # drawn nodes (trie nodes of the drawn patterns)
    hidden: int  # trie nodes left out by the cap (nodes - drawn)
    patterns: int = 0  # patterns in the graph (nodes where a match may stop)
    drawn_patterns: int = 0  # patterns drawn: every drawn path from an activating token to an end marker


def _mix(rgb: tuple[int, int, int], v: float) -> str:
    v = min(max(float(v), 0.0), 1.0)
    r, g, b = (round(255 - v * (255 - c)) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def _luminance(colour: str) -> float:
    """WCAG relative luminance of ``#rrggbb``."""

    def channel(byte: int) -> float:
        c = byte / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(int(colour[i : i + 2], 16)) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    la, lb = sorted((_luminance(a), _luminance(b)))
    return (lb + 0.05) / (la + 0.05)


@functools.lru_cache(maxsize=1024)
def text_colour(fill: str) -> str:
    """Black or white, whichever contrasts more with ``fill`` (>= 4.5:1 on both fill scales, tests/test_contrast.py)."""
    return "#000000" if contrast(fill, "#000000") >= contrast(fill, "#ffffff") else "#ffffff"


@functools.lru_cache(maxsize=1 << 16)
def _label(token: str) -> str:
    """A token's drawn label (tokens recur across a layer's graphs: computed once)."""
    return display_token(token)


def draw(
    graph: Graph,
    title: str = "N2G graph",
    *,
    max_nodes: int = MAX_NODES,
    max_depth: int = MAX_DEPTH,
    max_rows: int = MAX_ROWS,
) -> Drawing:
    """The drawing of one N2G graph titled ``title`` (module docstring): the trie nodes that
    :func:`drawing.select` picks, placed by :func:`layout.place` (top to bottom in select's order) and written
    by svg_compact.py, every label and tooltip escaped there. A node's classes (``end``: a match may stop
    here; ``any``: an ignore node; ``w``: white label text) are styled by n2g.css (:data:`GRAPH_CSS`)."""
    chosen = select(graph, max_nodes=max_nodes, max_depth=max_depth, max_rows=max_rows)
    nodes = graph.nodes
    labels = {i: layout.ANY_LABEL if nodes[i].key is None else _label(nodes[i].token) for i in chosen.nodes}
    placed = layout.place(graph, chosen, labels)
    boxes = placed.boxes
    edges = [
        svg_compact.edge_path(boxes[child].right, boxes[child].cy, boxes[parent].x, boxes[parent].cy)
        for child, parent in placed.edges
    ]
    parts = []
    for node_id in chosen.nodes:
        node, box = nodes[node_id], boxes[node_id]
        ends = node.end is not None
        classes = ["end"] if ends else []
        font_size = ""
        if node.key is None:
            tip, fill = "any one token", "none"
            classes.append("any")
            font_size = f"{layout.ANY_FONT_SIZE:g}"
        else:
            # Tooltips are short (~30 bytes a node less than "<label>: activating token, activation 0.57; a
            # match may stop here (predicts 0.62)", on every node of every neuron page): the label is drawn
            # beside it and the fill (red: activating, blue: context) says which kind of node it is.
            if node.depth == 0:
                fill = _mix(ACT_RGB, node.activation)
                tip = f"activation {node.activation:.2f}"
            else:
                fill = _mix(CTX_RGB, node.importance)
                tip = f"importance {node.importance:.2f}"
            if text_colour(fill) != "#000000":
                classes.append("w")
        if ends:
            tip += f", end {node.end:.2f}"  # the predicted activation of a match ending here
        parts.append(
            svg_compact.node(
                " ".join(classes),
                tip,
                svg_compact.box_path(box.x, box.y, box.width, box.height),
                fill,
                box.cx,
                box.baseline,
                labels[node_id],
                font_size,
            )
        )
    svg = svg_compact.document(
        title, placed.width, placed.height, edges, parts, font=FONT, font_size=layout.FONT_SIZE, arrow=ARROW
    )
    return Drawing(
        svg=svg,
        nodes=chosen.total,
        drawn=chosen.drawn,
        hidden=chosen.hidden,
        patterns=chosen.patterns,
        drawn_patterns=chosen.drawn_patterns,
    )


# What n2g.css gives an inline graph (the GRAPH_CSS rules), for a graph in a file of its own.
_FILE_STYLE = f"<style>{GRAPH_CSS}</style>"
_SIZE = re.compile(r'<svg\b[^>]*?\swidth="([\d.]+)(pt|px)?"[^>]*?\sheight="([\d.]+)(pt|px)?"')
_LABEL = re.compile(r'<svg\b[^>]*?\saria-label="([^"]*)"')


def standalone_svg(svg: str) -> str:
    """An inline graph (:func:`draw`) as an SVG file of its own: XML declaration, the node styles
    (:data:`GRAPH_CSS`) that n2g.css gives inline graphs."""
    end = svg.index("</title>") + len("</title>") if "</title>" in svg else svg.index(">", svg.index("<svg")) + 1
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{svg[:end]}\n{_FILE_STYLE}{svg[end:]}\n'


def svg_object(svg: str, src: str) -> str:
    """HTML that shows the graph ``svg`` from the file ``src`` (relative URL): an ``<object>`` (node tooltips
    work, unlike in an ``<img>``) of the drawing's size, shrunk to the column like an inline graph, labelled
    like it, with a link to the file as its fallback."""
    label = m.group(1) if (m := _LABEL.search(svg)) else "N2G graph"
    size = ""
    if m := _SIZE.search(svg):
        w, h = (float(m.group(i)) * (4 / 3 if m.group(i + 1) in (None, "pt") else 1) for i in (1, 3))
        size = (
            f' width="{round(w)}" height="{round(h)}"'
            f' style="max-width:100%;height:auto;aspect-ratio:{round(w)}/{round(h)}"'
        )
    return (
        f'<object class="n2g-graph n2g-graph-file" type="image/svg+xml" data="{src}"{size} role="img" '
        f'aria-label="{label}"><a href="{src}">{label} (SVG)</a></object>'
    )
