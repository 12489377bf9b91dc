"""Where a neuron graph's drawn nodes go: a tidy tree layout of drawing.select's forest, in whole points.

The drawing is always a small forest (the trie's chosen patterns: roots are activating tokens, a node's
children are the context tokens one step further left), so it is placed directly, without Graphviz:

- **columns** by depth, right to left: depth 0 (the activating tokens) is the rightmost column, each deeper
  column :data:`RANK_GAP` points further left. A column is as wide as its widest box; every box is centred in
  its column, so the edges between two columns all run across the same gap.
- **rows**: subtrees are stacked top to bottom in select's order (its depth-first walk: roots, and each
  node's children, strongest first), each as high as it fits: in every column it shares with the subtrees
  above, its top box sits :data:`GAP` points below their lowest box. A leaf is a box; a parent sits halfway
  between its first and last child. So in every column the boxes run top to bottom in select's order, no two
  boxes overlap and no edges cross; a drawing of ``r`` leaves is at most ``r`` rows of :data:`ROW` points tall
  (less where a short subtree fits beside a deeper one, e.g. an activating token with no drawn context).
- **boxes**: :data:`HEIGHT` points high (the "any token" node :data:`ANY_HEIGHT`), at least :data:`MIN_WIDTH` wide
  and wide enough for the label's estimated width (:func:`text_width`) plus :data:`MARGIN` on each side.

This is the drawing ``dot`` made of the same trie before issue 15 (``rankdir=RL``, ``ranksep=0.3``,
``nodesep=0.12``, ``height=0.3``, ``margin=0.08``, fixed-size box nodes): dot ranks a tree by depth, makes
each rank as wide as its widest node and centres the nodes in it, and for a tree whose nodes it keeps in
input order its crossing minimisation and coordinate pass come out as the nodes of each rank stacked in that
order, one ``nodesep`` apart, each parent centred over its children and subtrees packed as close as their
ranks allow. The same sizes are used here (0.3 in = 21.6 pt between ranks, 22 pt boxes with 0.12 in = 8.64 pt
between them, a 4 pt border), rounded to whole points.
dot also estimated label widths from built-in font metrics; :func:`text_width` does the same with the
standard Helvetica advance widths. Where dot would have bent an edge or moved a node off its children's
centre to straighten another edge, this layout keeps the rule: every edge is a straight line.
"""

from __future__ import annotations

import functools
import math
import unicodedata
from dataclasses import dataclass

from ..n2g.graph import Graph
from .drawing import Selection

FONT_SIZE = 11  # points: a label's font size
ANY_FONT_SIZE = 8  # points: the "any token" label's
ANY_LABEL = "any token"
HEIGHT = 22  # points: a box's height
ANY_HEIGHT = 14  # points: an "any token" box's height
MIN_WIDTH = 54  # points: the narrowest box (dot's default width, 0.75 in)
MARGIN = 5.8  # points: the space left and right of a label in its box (dot's 0.08 in margin)
GAP = 9  # points between two boxes of a column (dot's nodesep, 0.12 in)
ROW = HEIGHT + GAP  # points from one leaf row to the next
RANK_GAP = 22  # points between two columns
BORDER = 4  # points around the drawing
BASELINE = 0.3  # a label's baseline sits this many ems below its box's centre

# Advance widths of the printable ASCII characters in Helvetica (the widths Arial shares), in 1/1000 em,
# from " " (0x20) to "~" (0x7e).
_ASCII = (
    # space ! " # $ % & ' ( ) * + , - . /
    (278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278)
    # 0-9 : ; < = > ? @
    + (556,) * 10
    + (278, 278, 584, 584, 584, 556, 1015)
    # A-Z
    + (667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833)
    + (722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611)
    # [ \ ] ^ _ `
    + (278, 278, 278, 469, 556, 333)
    # a-z
    + (556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833)
    + (556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500)
    # { | } ~
    + (334, 260, 334, 584)
)
WIDTHS = {chr(0x20 + i): w for i, w in enumerate(_ASCII)}
OTHER = 600  # any other character: a little over Helvetica's average lower-case letter, so labels fit
WIDE = 1000  # an East Asian wide or full-width character (CJK, most emoji): a whole em


@functools.lru_cache(maxsize=1 << 16)
def _char_width(ch: str) -> int:
    width = WIDTHS.get(ch)
    if width is not None:
        return width
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0  # drawn on the character before it, or not drawn
    return WIDE if unicodedata.east_asian_width(ch) in ("W", "F") else OTHER


@functools.lru_cache(maxsize=1 << 16)
def text_width(text: str, size: float = FONT_SIZE) -> float:
    """The estimated width in points of ``text`` set in Helvetica at ``size`` points (no kerning)."""
    return sum(_char_width(ch) for ch in text) * size / 1000


def box_width(label: str, size: float = FONT_SIZE) -> int:
    """A box's width in whole points: the label and its margins, at least :data:`MIN_WIDTH`."""
    return max(MIN_WIDTH, -int(-(text_width(label, size) + 2 * MARGIN) // 1))


@dataclass(frozen=True)
class Box:
    """A placed node: its box's top-left corner and size, its centre, and where its label's baseline is."""

    node: int  # trie node id
    x: int
    y: int
    width: int
    height: int
    cx: int  # the centre, where the label is anchored
    baseline: int

    @property
    def cy(self) -> int:
        return self.y + self.height // 2

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height


@dataclass(frozen=True)
class Layout:
    """Every drawn node's box (in select's order), the edges as (child, parent) node ids, the drawing's size."""

    boxes: dict[int, Box]
    edges: list[tuple[int, int]]
    width: int
    height: int


def place(graph: Graph, chosen: Selection, labels: dict[int, str]) -> Layout:
    """Lay out the nodes of ``chosen`` (module docstring); ``labels``: each node's drawn label (the ignore
    nodes' is :data:`ANY_LABEL`, drawn smaller)."""
    nodes = graph.nodes
    order = chosen.nodes
    drawn = set(order)
    children: dict[int, list[int]] = {}
    for node_id in order:  # select's order: each node's children in it, strongest first
        parent = nodes[node_id].parent
        if parent in drawn:
            children.setdefault(parent, []).append(node_id)
    roots = [i for i in order if nodes[i].parent not in drawn]
    depth0 = min((nodes[i].depth for i in roots), default=0)

    # Rows: every subtree stacked below the one before it (siblings, then the roots, in select's order) as
    # high as its boxes allow: in each column it shares with the boxes above, its top box sits GAP below
    # their bottom one. A parent is centred between its first and last child.
    heights = {i: ANY_HEIGHT if nodes[i].key is None else HEIGHT for i in order}
    column_of = {i: nodes[i].depth - depth0 for i in order}
    trees: dict[int, tuple[dict[int, float], dict[int, tuple[float, float]]]] = {}  # centres, column extents
    for node_id in reversed(order):  # select's order is depth first: children come before their parent here
        half = heights[node_id] / 2
        kids = children.get(node_id)
        if not kids:
            trees[node_id] = ({node_id: 0.0}, {column_of[node_id]: (-half, half)})
            continue
        centres, extents = _stack([trees.pop(k) for k in kids])
        centre = (centres[kids[0]] + centres[kids[-1]]) / 2
        centres[node_id] = centre
        extents[column_of[node_id]] = (centre - half, centre + half)
        trees[node_id] = (centres, extents)
    centres, extents = _stack([trees.pop(i) for i in roots]) if roots else ({}, {})
    top = min((t for t, _ in extents.values()), default=0.0)
    bottom = max((b for _, b in extents.values()), default=float(HEIGHT))

    # Columns: depth 0 rightmost, each as wide as its widest box.
    sizes: dict[int, tuple[int, int, int]] = {}  # node -> (width, height, font size)
    columns: dict[int, int] = {}
    for node_id in order:
        node = nodes[node_id]
        size = ANY_FONT_SIZE if node.key is None else FONT_SIZE
        width = box_width(labels[node_id], size)
        sizes[node_id] = (width, ANY_HEIGHT if node.key is None else HEIGHT, size)
        column = node.depth - depth0
        columns[column] = max(columns.get(column, 0), width)
    deepest = max(columns, default=0)
    left: dict[int, int] = {}
    x = BORDER
    for column in range(deepest, -1, -1):
        left[column] = x
        x += columns.get(column, 0) + RANK_GAP
    width = x - RANK_GAP + BORDER
    height = 2 * BORDER + math.ceil(bottom - top - 1e-9)

    boxes: dict[int, Box] = {}
    for node_id in order:
        w, h, size = sizes[node_id]
        column = nodes[node_id].depth - depth0
        cx2 = 2 * left[column] + columns[column]  # twice the column's centre
        bx, by = (cx2 - w) // 2, math.floor(BORDER + centres[node_id] - top - h / 2 + 0.5)
        cx = bx + w // 2
        boxes[node_id] = Box(node_id, bx, by, w, h, cx, by + h // 2 + round(BASELINE * size))
    edges = [(k, p) for p, kids in children.items() for k in kids]
    return Layout(boxes=boxes, edges=edges, width=width, height=height)


def _stack(
    trees: list[tuple[dict[int, float], dict[int, tuple[float, float]]]],
) -> tuple[dict[int, float], dict[int, tuple[float, float]]]:
    """Subtrees (each: its nodes' centres and each column's (top, bottom) extent) stacked top to bottom in
    order, each moved down until, in every column it shares with those above, it starts :data:`GAP` below
    them; the first stays where it is. Siblings (and the roots) share their top column, so their order holds."""
    centres, extents = dict(trees[0][0]), dict(trees[0][1])
    for tree_centres, tree_extents in trees[1:]:
        shared = [extents[c][1] + GAP - t for c, (t, _) in tree_extents.items() if c in extents]
        if not shared:  # no column in common (not a trie's siblings or roots): below all of it
            shared = [max(b for _, b in extents.values()) + GAP - min(t for t, _ in tree_extents.values())]
        shift = max(shared)
        for node_id, y in tree_centres.items():
            centres[node_id] = y + shift
        for c, (t, b) in tree_extents.items():
            extents[c] = (extents[c][0], b + shift) if c in extents else (t + shift, b + shift)
    return centres, extents
