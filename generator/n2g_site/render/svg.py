"""Neuron graphs as SVG: DOT source per graph (written as text, every label quoted), drawn in batches.

Layout follows the original N2G: ``rankdir=RL`` puts the activating tokens on the right and their context
extending to the left; edges are declared activating -> context and drawn with ``dir=back``, so arrows
point from the context toward the token it activates. What is drawn (drawing.py): the trie itself, so every
path from an activating token to an end marker is a pattern, and for a large graph only its strongest
patterns, up to a node budget, with counts of what is left out. Differences from the original drawing:

- ignore nodes (key ``None``) are drawn as a small dashed "any token" node instead of being hidden;
- nodes where a match may stop (``end`` not null) get a bold outline (DOT class ``end``);
- at most ``max_nodes`` nodes in ``max_rows`` rows are drawn (whole patterns of at most ``max_depth`` tokens,
  strongest first), the rest are counted.

``dot``'s SVG is then rewritten compactly (svg_compact.py): about half the bytes, styles by class
(:data:`~.svg_compact.GRAPH_CSS`), whole-point coordinates, the tooltips kept as ``<title>`` elements.

Drawing runs one ``dot`` process per chunk of ~200 graphs (the graphs concatenated on its stdin, the SVG
documents it writes split apart), chunks in parallel, never one process per neuron and no temporary files.
Render keeps each layer's drawings by :func:`drawing_key` in the work dir (``cache/svg_LL.json``), so a
rerun of render (new templates, a new evaluation) draws only the graphs that changed: ``dot`` is about a
third of render's CPU time.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import UserError
from ..n2g.graph import Graph
from . import svg_compact
from .drawing import MAX_DEPTH, MAX_NODES, MAX_ROWS, select
from .svg_compact import GRAPH_CSS
from .tokens import display_token

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_ROWS",
    "GRAPH_CSS",
    "DotGraph",
    "graph_dot",
    "render_svgs",
    "standalone_svg",
    "svg_object",
]

log = logging.getLogger(__name__)

CHUNK = 200
ACT_RGB = (0xE0, 0x31, 0x31)  # activating tokens: white -> red by activation
CTX_RGB = (0x33, 0x70, 0xE0)  # context tokens: white -> blue by importance
FONT = "Helvetica,Arial,sans-serif"
FONT_SIZE = 11  # points, the node labels' (an "any token" label is 8)
ARROW = 0.6  # dot's arrowsize


@dataclass
class DotGraph:
    """DOT source of one neuron graph and what was drawn."""

    source: str
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


def _dq(text: str, *, tooltip: bool = False) -> str:
    """``text`` as a literal DOT string, never an HTML label: double-quoted, quotes escaped, ``&`` written
    ``&amp;`` (dot reads ``&name;`` entities) and backslashes doubled so that no escape sequence (``\\N``,
    ``\\l``) reaches dot. A tooltip is unescaped twice by dot (once more than a label): its backslashes
    are doubled twice (tests/test_render_related.py sends tokens like ``\\N`` through dot)."""
    slash = "\\\\\\\\" if tooltip else "\\\\"
    return '"' + text.replace("&", "&amp;").replace("\\", slash).replace('"', '\\"') + '"'


@functools.lru_cache(maxsize=1 << 16)
def _label(token: str) -> tuple[str, str]:
    """A token's drawn label and its DOT string (tokens recur across a layer's graphs: computed once)."""
    shown = display_token(token)
    return shown, _dq(shown)


_GRAPH_HEAD = (
    "digraph {name} {{\n"
    f'\tgraph [bgcolor=transparent fontname="{FONT}" nodesep=0.12 rankdir=RL ranksep=0.3]\n'
    f'\tnode [color="#555555" fontname="{FONT}" fontsize={FONT_SIZE} height=0.3 margin="0.08,0.03" penwidth=1 '
    "shape=box style=filled]\n"
    f'\tedge [arrowsize={ARROW} color="#888888" dir=back]\n'
)
_ANY_NODE = ' [label="any token" color="#999999" fontcolor="#777777" fontsize=8 height=0.2 style=dashed'
_ENDS = ' color="#000000" penwidth=2.6'


def _declaration_order(graph: Graph, order: tuple[int, ...]) -> list[int]:
    """The order to declare the drawn nodes in so that dot draws ``order`` (select's) top to bottom: with
    ``rankdir=RL``, dot stacks a tree's root subtrees in the reverse of their declaration order and each
    node's children in their declaration order (tests/test_svg.py checks the result)."""
    subtrees: list[list[int]] = []
    for node_id in order:
        if graph.nodes[node_id].parent < 0:
            subtrees.append([])
        subtrees[-1].append(node_id)
    return [node_id for subtree in reversed(subtrees) for node_id in subtree]


def graph_dot(
    graph: Graph, *, name: str = "n2g", max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH, max_rows: int = MAX_ROWS
) -> DotGraph:
    """DOT source for one N2G graph (see module docstring for the layout): the trie nodes that
    :func:`drawing.select` picks, in its order, written as text: every label and tooltip goes through
    :func:`_dq`, every other value is generated here. A node's DOT ``class`` (``end``: a match may stop
    here; ``any``: an ignore node; ``w``: white label text) reaches the SVG, where n2g.css styles it."""
    chosen = select(graph, max_nodes=max_nodes, max_depth=max_depth, max_rows=max_rows)
    lines = [_GRAPH_HEAD.format(name=name)]
    for node_id in _declaration_order(graph, chosen.nodes):
        node = graph.nodes[node_id]
        ends = node.end is not None
        classes = ["end"] if ends else []
        if node.key is None:
            head = f"\tn{node_id}{_ANY_NODE}"
            tip = "any one token"
            classes.append("any")
        else:
            _, quoted = _label(node.token)
            # Tooltips are short (~30 bytes a node less than "<label>: activating token, activation 0.57; a
            # match may stop here (predicts 0.62)", on every node of every neuron page): the label is drawn
            # beside it and the fill (red: activating, blue: context) says which kind of node it is.
            if node.depth == 0:
                fill = _mix(ACT_RGB, node.activation)
                tip = f"activation {node.activation:.2f}"
            else:
                fill = _mix(CTX_RGB, node.importance)
                tip = f"importance {node.importance:.2f}"
            colour = text_colour(fill)
            if colour != "#000000":
                classes.append("w")
            head = f'\tn{node_id} [label={quoted} fillcolor="{fill}" fontcolor="{colour}"'
        if ends:
            tip += f", end {node.end:.2f}"  # the predicted activation of a match ending here
            head += _ENDS
        if classes:
            head += f' class="{" ".join(classes)}"'
        lines.append(f"{head} tooltip={_dq(tip, tooltip=True)}]\n")
    for node_id in chosen.nodes:
        parent = graph.nodes[node_id].parent
        if parent >= 0:
            lines.append(f"\tn{parent} -> n{node_id}\n")  # ids are n<number>: no quoting needed
    lines.append("}\n")
    return DotGraph(
        source="".join(lines),
        nodes=chosen.total,
        drawn=chosen.drawn,
        hidden=chosen.hidden,
        patterns=chosen.patterns,
        drawn_patterns=chosen.drawn_patterns,
    )


def clean_svg(svg: str, title: str) -> str:
    """Make ``dot``'s SVG inlineable and compact (svg_compact.compact), with a <title> and aria-label
    from ``title``."""
    return svg_compact.compact(svg, title, font=FONT, font_size=FONT_SIZE, arrow=ARROW)


def dot_binary() -> str:
    path = shutil.which("dot")
    if path is None:
        raise UserError(
            "Graphviz's `dot` program is not on PATH: install Graphviz (e.g. `apt-get install graphviz` "
            "or `brew install graphviz`) to draw the neuron graphs"
        )
    return path


_SVG_START = re.compile(r"<\?xml\b")


def _run(dot: str, source: str) -> list[str]:
    """Run ``dot -Tsvg`` on concatenated graphs; return one SVG document per graph it drew."""
    proc = subprocess.run([dot, "-Tsvg"], input=source.encode("utf-8"), capture_output=True, check=False)
    if proc.returncode != 0:
        log.warning("dot failed: %s", proc.stderr.decode("utf-8", "replace").strip()[:500])
    text = proc.stdout.decode("utf-8", "replace")
    starts = [m.start() for m in _SVG_START.finditer(text)]
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=False)]


def _draw_chunk(dot: str, sources: list[str]) -> list[str | None]:
    """One ``dot`` process for a whole chunk; if it stops early (a graph it cannot read), the chunk
    is redrawn one graph at a time so only the bad graph is lost."""
    svgs = _run(dot, "\n".join(sources))
    if len(svgs) == len(sources):
        return list(svgs)
    out: list[str | None] = []
    for source in sources:
        one = _run(dot, source)
        out.append(one[0] if len(one) == 1 else None)
    return out


def render_svgs(
    sources: Mapping[Any, str],
    titles: Mapping[Any, str] | None = None,
    *,
    chunk: int = CHUNK,
    jobs: int | None = None,
    cache: dict[str, str] | None = None,
) -> dict[Hashable, str | None]:
    """Draw many DOT sources: the graphs of a chunk are concatenated on one ``dot`` process's stdin and
    its output split per graph; chunks run in parallel (``jobs``, default: the CPU count).

    Returns each key's cleaned SVG (see :func:`clean_svg`), or None where ``dot`` drew nothing. With a
    ``cache`` (:func:`drawing_key` -> SVG), graphs found in it are not drawn again, and afterwards it holds
    exactly this call's drawings (new ones added, those of graphs not asked for removed).
    """
    titles = titles or {}
    out: dict[Hashable, str | None] = {}
    todo = list(sources)
    if cache is not None:
        hashes = {key: drawing_key(sources[key], titles.get(key, "N2G graph")) for key in sources}
        out = {key: cache[h] for key, h in hashes.items() if h in cache}
        todo = [key for key in sources if key not in out]
        current = set(hashes.values())
        for stale in [h for h in cache if h not in current]:
            del cache[stale]
    if not todo:
        return out
    dot = dot_binary()
    jobs = jobs or min(os.cpu_count() or 2, 8)
    chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        drawn = list(pool.map(lambda ks: _draw_chunk(dot, [sources[k] for k in ks]), chunks))
    for ks, svgs in zip(chunks, drawn, strict=True):
        for key, svg in zip(ks, svgs, strict=True):
            clean = out[key] = _clean_or_none(svg, titles.get(key, "N2G graph"))
            if cache is not None and clean is not None:
                cache[hashes[key]] = clean
    return out


def _clean_or_none(svg: str | None, title: str) -> str | None:
    """:func:`clean_svg`, or None (logged) where dot drew nothing or something svg_compact cannot read."""
    if not svg or "<svg" not in svg:
        return None
    try:
        return clean_svg(svg, title)
    except (ValueError, ET.ParseError) as exc:
        log.warning("cannot read dot's drawing of %r: %s", title, exc)
        return None


@functools.lru_cache(maxsize=1)
def _drawing_version() -> bytes:
    """What else decides a drawing besides its DOT text: the code that turns DOT into the final SVG (this
    module and svg_compact.py) and the ``dot`` version."""
    try:
        dot = subprocess.run([dot_binary(), "-V"], capture_output=True, check=False).stderr
    except (UserError, OSError):
        dot = b""
    code = Path(__file__).read_bytes() + b"\0" + Path(svg_compact.__file__).read_bytes()
    return hashlib.sha256(code + b"\0" + dot).digest()


def drawing_key(source: str, title: str) -> str:
    """The cache key of a drawing: its DOT text and title, the drawing code and the ``dot`` version (so
    editing svg.py or svg_compact.py, or upgrading Graphviz, redraws everything)."""
    return hashlib.sha256(_drawing_version() + title.encode("utf-8") + b"\0" + source.encode("utf-8")).hexdigest()


# What n2g.css gives an inline graph (the GRAPH_CSS rules), for a graph in a file of its own.
_FILE_STYLE = f"<style>{GRAPH_CSS}</style>"
_SIZE = re.compile(r'<svg\b[^>]*?\swidth="([\d.]+)(pt|px)?"[^>]*?\sheight="([\d.]+)(pt|px)?"')
_LABEL = re.compile(r'<svg\b[^>]*?\saria-label="([^"]*)"')


def standalone_svg(svg: str) -> str:
    """An inline graph (:func:`clean_svg`) as an SVG file of its own: XML declaration, the node styles
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
