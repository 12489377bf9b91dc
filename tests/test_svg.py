"""Graph drawings (render/drawing.py, layout.py, svg.py, svg_compact.py): every drawn path is a pattern, the cap keeps
the strongest patterns, the layout is a tidy tree, and the SVG is compact, valid and deterministic.

The paths are read back from the SVG alone (:func:`drawn_paths`): boxes and their labels from the node groups,
edges from the edge paths' geometry (each edge's start touches the context token's box, its arrow tip the
box of the token it supports), so the check does not trust the Python that chose what to draw.
"""

from __future__ import annotations

import math
import os
import random
import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from n2g_site.n2g.graph import Element, Graph, Line, build_graph
from n2g_site.render import layout, svg_compact
from n2g_site.render.drawing import MAX_DEPTH, MAX_NODES, MAX_ROWS, pattern_rank, select
from n2g_site.render.svg import GRAPH_CSS, draw, standalone_svg
from n2g_site.render.svg_compact import marker_id
from n2g_site.render.tokens import display_token
from n2g_site.resources import builtin_path
from render_fixtures import HOSTILE, big_graph, small_graph

NS = "{http://www.w3.org/2000/svg}"
ANY = "any token"
TOUCH = 2.0  # points: how far an edge end may sit from the box it touches (whole-point rounding, outlines)


# ------------------------------------------------------------------------------------ reading an SVG


@dataclass
class Box:
    label: str
    end: bool  # drawn with the end-of-pattern outline (class "end", n2g.css)
    x0: float
    y0: float
    x1: float
    y1: float

    def distance(self, x: float, y: float) -> float:
        dx = max(self.x0 - x, 0.0, x - self.x1)
        dy = max(self.y0 - y, 0.0, y - self.y1)
        return math.hypot(dx, dy)


def _ints(text: str) -> list[int]:
    return [int(v) for v in re.findall(r"-?\d+", text)]


def _boxes(root: ET.Element) -> list[Box]:
    boxes = []
    for g in root.iter(f"{NS}g"):
        classes = (g.get("class") or "").split()
        if "edges" in classes:  # every other group is a node
            continue
        d = g.find(f"{NS}path").get("d")
        m = re.fullmatch(r"M(-?\d+),(-?\d+)h(-?\d+)v(-?\d+)h-?\d+z", d)
        assert m, d
        x, y, w, h = map(int, m.groups())
        label = "".join(g.find(f"{NS}text").itertext())
        boxes.append(Box(label, "end" in classes, x, y, x + w, y + h))
    return boxes


def _edge_ends(d: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """An edge path's start (at the context box) and end (the arrow's tip, at the box of the token the edge
    supports). Paths: ``M x,y`` then ``h dx``, ``l dx dy``, or ``c`` with relative Bezier triples and an
    optional closing ``l dx dy``."""
    m = re.fullmatch(r"M(-?\d+),(-?\d+)(?:h(-?\d+)|l(-?\d+)(-?\d+)|l(-?\d+) (\d+)|c([-\d ]+?)(?:l([-\d ]+))?)", d)
    assert m, d
    x, y = int(m.group(1)), int(m.group(2))
    start = (float(x), float(y))
    if m.group(3) is not None:
        return start, (x + int(m.group(3)), float(y))
    if m.group(4) is not None or m.group(6) is not None:
        dx, dy = (int(m.group(4)), int(m.group(5))) if m.group(4) is not None else (int(m.group(6)), int(m.group(7)))
        return start, (x + dx, y + dy)
    rel = _ints(m.group(8))
    assert rel and len(rel) % 6 == 0, d
    for i in range(0, len(rel), 6):
        x, y = x + rel[i + 4], y + rel[i + 5]
    if m.group(9):
        dx, dy = _ints(m.group(9))
        x, y = x + dx, y + dy
    return start, (float(x), float(y))


def _nearest(boxes: list[Box], point: tuple[float, float]) -> int:
    dist = [b.distance(*point) for b in boxes]
    best = min(range(len(boxes)), key=dist.__getitem__)
    assert dist[best] <= TOUCH, (point, dist[best], boxes[best].label)
    assert sorted(dist)[1:2] != [dist[best]] or len(boxes) == 1, ("ambiguous edge end", point)
    return best


def drawn_paths(svg: str) -> tuple[list[tuple[str, ...]], list[Box], dict[int, list[int]]]:
    """Every path the drawing shows from an activating token (a box that is no edge's context) to a box with
    the end outline, as label tuples from the activating token backwards; the boxes; and each box's drawn
    parents (the boxes its edges point to)."""
    root = ET.fromstring(svg)
    boxes = _boxes(root)
    parents: dict[int, list[int]] = {i: [] for i in range(len(boxes))}
    edges = root.find(f"{NS}g[@class='edges']")
    for path in [] if edges is None else edges.findall(f"{NS}path"):
        start, tip = _edge_ends(path.get("d"))
        child, parent = _nearest(boxes, start), _nearest(boxes, tip)
        assert child != parent
        parents[child].append(parent)

    def up(i: int, seen: tuple[int, ...]) -> list[list[int]]:
        assert i not in seen, "a cycle in the drawing"
        if not parents[i]:
            return [[i]]
        return [[*chain, i] for p in parents[i] for chain in up(p, (*seen, i))]

    paths = [tuple(boxes[j].label for j in chain) for i, b in enumerate(boxes) if b.end for chain in up(i, ())]
    return paths, boxes, parents


def pattern_labels(graph: Graph) -> set[tuple[str, ...]]:
    """The graph's patterns as the labels a drawing shows for them."""
    return {
        tuple(ANY if n.key is None else display_token(n.token) for n in graph.path(node.id))
        for node in graph.nodes
        if node.end is not None
    }


def assert_drawing_tells_the_truth(graph: Graph, svg: str) -> list[tuple[str, ...]]:
    """Every drawn activating-token-to-end path is a pattern; every drawn leaf is an end; no box has two
    parents (the drawing is a forest, as the trie)."""
    paths, boxes, parents = drawn_paths(svg)
    patterns = pattern_labels(graph)
    wrong = [p for p in paths if p not in patterns]
    assert not wrong, f"{len(wrong)} of {len(paths)} drawn paths are not patterns, e.g. {wrong[:3]}"
    has_child = {p for ps in parents.values() for p in ps}
    assert all(b.end for i, b in enumerate(boxes) if i not in has_child), "a drawn leaf without an end"
    assert all(len(ps) <= 1 for ps in parents.values())
    return paths


def assert_tidy_layout(graph: Graph, svg: str, **limits: int) -> None:
    """The layout (layout.py), read back from the SVG: no two boxes overlap; every edge runs right to left
    from a child's box (its right side) to its parent's box (its left side), the parent one column to the
    right; every label's estimated width fits its box; the viewBox holds every box; in every column the
    boxes run top to bottom in select's order; and the drawing is at most one row per leaf tall."""
    root = ET.fromstring(svg)
    boxes = _boxes(root)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            apart = a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0
            assert apart, ("overlapping boxes", a, b)
    _, _, w, h = map(int, root.get("viewBox").split())
    assert root.get("width") == f"{w}pt" and root.get("height") == f"{h}pt"
    assert all(0 <= b.x0 < b.x1 <= w and 0 <= b.y0 < b.y1 <= h for b in boxes)
    for g in root.iter(f"{NS}g"):
        if g.get("class") != "edges":
            size = float(g.find(f"{NS}text").get("font-size") or root.get("font-size"))
            x0, _, width = _ints(g.find(f"{NS}path").get("d"))[:3]
            label = "".join(g.find(f"{NS}text").itertext())
            assert layout.text_width(label, size) + 2 * layout.MARGIN <= width, label
            assert int(g.find(f"{NS}text").get("x")) == x0 + width // 2  # centred
    edges = root.find(f"{NS}g[@class='edges']")
    has_child = set()
    for path in [] if edges is None else edges.findall(f"{NS}path"):
        start, tip = _edge_ends(path.get("d"))
        child = next(b for b in boxes if b.x1 == start[0] and b.y0 < start[1] < b.y1)
        parent = next(b for b in boxes if b.x0 == tip[0] and b.y0 < tip[1] < b.y1)
        assert child.x1 < parent.x0, "edges run right to left"
        assert not [b for b in boxes if child.x1 <= b.x0 and b.x1 <= parent.x0], "the parent is the next column"
        has_child.add(id(parent))
    chosen = select(graph, **limits)
    drawn = set(chosen.nodes)
    parents = {graph.nodes[i].parent for i in drawn}
    assert len(boxes) == len(drawn) and len(has_child) == len(parents & drawn)
    leaves = sum(1 for i in drawn if i not in parents)
    assert h <= 2 * layout.BORDER + (leaves - 1) * layout.ROW + layout.HEIGHT
    columns: dict[float, list[Box]] = {}  # a column: the boxes centred on one x (to within rounding)
    for b in sorted(boxes, key=lambda b: b.x0 + b.x1):
        x = (b.x0 + b.x1) / 2
        near = [c for c in columns if abs(c - x) <= 1]
        columns.setdefault(near[0] if near else x, []).append(b)
    depths = sorted({graph.nodes[i].depth for i in drawn})
    assert len(columns) == len(depths)
    for depth, x in zip(depths, sorted(columns, reverse=True), strict=True):  # depth 0 rightmost
        ids = [i for i in chosen.nodes if graph.nodes[i].depth == depth]
        labels = [ANY if graph.nodes[i].key is None else display_token(graph.nodes[i].token) for i in ids]
        assert [b.label for b in sorted(columns[x], key=lambda b: b.y0)] == labels, depth


# ------------------------------------------------------------------------------------------- graphs


def _graph(nodes: list[dict]) -> Graph:
    return Graph.from_json({"schema": "n2g-site/graph/1", "nodes": nodes})


def _draw(graph: Graph, *, max_nodes: int = MAX_NODES, title: str = "N2G graph") -> str:
    return draw(graph, title, max_nodes=max_nodes).svg


def _lines(rng: random.Random, vocab: list[str], n: int, max_len: int) -> list[Line]:
    """Lines over a small vocabulary (Zipf-like), so that equal tokens at equal depths recur across patterns."""
    weights = [1 / (i + 1) for i in range(len(vocab))]
    lines = []
    for _ in range(n):
        length = rng.randint(1, max_len)
        elements = []
        for d in range(length):
            ignore = 0 < d < length - 1 and rng.random() < 0.15
            tok = rng.choices(vocab, weights)[0]
            elements.append(
                Element(
                    None if ignore else tok.strip().lower() or tok,
                    "" if ignore else tok,
                    1.0 if d == 0 else rng.uniform(0.75, 1.0),
                    rng.random(),
                )
            )
        lines.append(Line(elements, round(rng.uniform(0.5, 1.0), 2)))
    return lines


def synthetic_graph(seed: int, lines: int = 400, max_len: int = 6) -> Graph:
    vocab = [" the", " of", " in", " borders", " India", " Nepal", " it", ",", ".", *HOSTILE]
    return build_graph(_lines(random.Random(seed), vocab, lines, max_len))


MERGED = [  # two activating tokens with the same context " in": the old drawing merged the two " in" nodes
    {
        "id": 0,
        "parent": -1,
        "depth": 0,
        "key": "paris",
        "token": " Paris",
        "importance": 1.0,
        "activation": 0.9,
        "end": None,
        "count": 2,
    },
    {
        "id": 1,
        "parent": 0,
        "depth": 1,
        "key": "in",
        "token": " in",
        "importance": 0.9,
        "activation": 0.0,
        "end": 0.9,
        "count": 1,
    },
    {
        "id": 2,
        "parent": -1,
        "depth": 0,
        "key": "france",
        "token": " France",
        "importance": 1.0,
        "activation": 0.6,
        "end": 0.6,
        "count": 2,
    },
    {
        "id": 3,
        "parent": 2,
        "depth": 1,
        "key": "in",
        "token": " in",
        "importance": 0.8,
        "activation": 0.0,
        "end": None,
        "count": 1,
    },
    {
        "id": 4,
        "parent": 0,
        "depth": 1,
        "key": None,
        "token": "",
        "importance": 0.1,
        "activation": 0.0,
        "end": None,
        "count": 1,
    },
    {
        "id": 5,
        "parent": 4,
        "depth": 2,
        "key": "of",
        "token": " of",
        "importance": 0.8,
        "activation": 0.0,
        "end": 0.8,
        "count": 1,
    },
    {
        "id": 6,
        "parent": 3,
        "depth": 2,
        "key": "born",
        "token": " born",
        "importance": 0.8,
        "activation": 0.0,
        "end": 0.5,
        "count": 1,
    },
]


# -------------------------------------------------------------------------------- the trie, drawn


def test_the_trie_is_drawn_unmerged() -> None:
    graph = _graph(MERGED)
    drawing = draw(graph)
    assert (drawing.nodes, drawing.drawn, drawing.hidden, drawing.patterns, drawing.drawn_patterns) == (7, 7, 0, 4, 4)
    svg = drawing.svg
    assert len(ET.fromstring(svg).find(f"{NS}g[@class='edges']")) == 5
    paths = assert_drawing_tells_the_truth(graph, svg)
    assert sorted(paths) == sorted(pattern_labels(graph))
    assert [b.label for b in drawn_paths(svg)[1]].count(" in") == 2  # one " in" per pattern prefix


def test_the_path_reader_catches_a_merged_drawing() -> None:
    """The old drawing (equal token at equal depth drawn once) shows " France <- in <- of", not a pattern."""
    graph = _graph(MERGED)
    chosen = select(graph)
    labels = {i: ANY if graph.nodes[i].key is None else display_token(graph.nodes[i].token) for i in chosen.nodes}
    placed = layout.place(graph, chosen, labels)
    box = placed.boxes
    # n3 (" in" after " France") drawn as n1 (" in" after " Paris"): France's and born's edges go to n1.
    merge = {3: 1}
    edges = [(merge.get(c, c), merge.get(p, p)) for c, p in placed.edges]
    paths = [svg_compact.edge_path(box[c].right, box[c].cy, box[p].x, box[p].cy) for c, p in edges]
    nodes = [
        svg_compact.node(
            "end" if graph.nodes[i].end is not None else "",
            "",
            svg_compact.box_path(box[i].x, box[i].y, box[i].width, box[i].height),
            "none",
            box[i].cx,
            box[i].baseline,
            labels[i],
        )
        for i in chosen.nodes
        if i not in merge
    ]
    svg = svg_compact.document("t", placed.width, placed.height, paths, nodes, font="f", font_size=11, arrow=0.6)
    with pytest.raises(AssertionError, match="are not patterns"):
        assert_drawing_tells_the_truth(graph, svg)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10**6),
    lines=st.integers(1, 60),
    budget=st.sampled_from([1, 5, 20, MAX_NODES]),
    vocab=st.lists(
        st.text(min_size=1, max_size=6) | st.sampled_from(HOSTILE + ["\\", "\\N", "&lt;", "]]>"]),
        min_size=2,
        max_size=8,
    ),
)
def test_every_drawn_path_is_a_pattern(seed: int, lines: int, budget: int, vocab: list[str]) -> None:
    graph = build_graph(_lines(random.Random(seed), vocab, lines, 5))
    drawing = draw(graph, max_nodes=budget)
    paths = assert_drawing_tells_the_truth(graph, drawing.svg)
    assert len(paths) == drawing.drawn_patterns and len(drawn_paths(drawing.svg)[1]) == drawing.drawn
    assert_tidy_layout(graph, drawing.svg, max_nodes=budget)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_large_graph_is_drawn_truthfully_up_to_the_budget(seed: int) -> None:
    graph = synthetic_graph(seed)
    assert len(graph.nodes) > 5 * MAX_NODES
    drawing = draw(graph)
    assert drawing.drawn <= MAX_NODES and drawing.hidden == len(graph.nodes) - drawing.drawn
    assert drawing.patterns == len(graph.patterns()) and 0 < drawing.drawn_patterns < drawing.patterns
    paths = assert_drawing_tells_the_truth(graph, drawing.svg)
    assert len(paths) == drawing.drawn_patterns
    assert_tidy_layout(graph, drawing.svg)


DEMO = os.environ.get("N2G_DEMO_WORK")  # a built work dir (e.g. a copy of .n2g/smollm2-135m__wiki)


@pytest.mark.skipif(not DEMO, reason="set N2G_DEMO_WORK to a fitted work dir to check its largest graphs")
def test_the_demo_largest_graphs_are_drawn_truthfully() -> None:
    import orjson

    fits = sorted(Path(DEMO, "fit").rglob("N*.json"))
    graphs = [(p, orjson.loads(p.read_bytes()).get("graph")) for p in fits]
    graphs = sorted(
        ((p, Graph.from_json(g)) for p, g in graphs if g and g.get("nodes")), key=lambda pg: -len(pg[1].nodes)
    )[:6]
    assert graphs
    for path, graph in graphs:
        paths = assert_drawing_tells_the_truth(graph, _draw(graph))
        assert len(paths) == draw(graph).drawn_patterns, path


# ---------------------------------------------------------------------------------------- the cap


def test_the_cap_keeps_the_strongest_patterns_whole() -> None:
    graph = synthetic_graph(3)
    chosen = select(graph, max_nodes=MAX_NODES, max_rows=10**6)  # the node budget alone
    drawn = set(chosen.nodes)
    assert len(drawn) == chosen.drawn <= MAX_NODES
    assert all(graph.nodes[i].parent in drawn for i in drawn if graph.nodes[i].parent >= 0)  # whole paths
    ranked = sorted((n for n in graph.nodes if n.end is not None), key=pattern_rank)
    assert ranked[0].id in drawn and ranked[1].id in drawn
    # A pattern was left out only because its missing nodes did not fit when its turn came.
    taken: set[int] = set()
    for end in ranked:
        path = {n.id for n in graph.path(end.id)}
        if path <= drawn and not path <= taken and len(taken | path) <= MAX_NODES:
            taken |= path
        elif not path <= drawn:
            assert len(taken | path) > MAX_NODES, end
    assert taken == drawn
    assert chosen.drawn_patterns == sum(1 for i in drawn if graph.nodes[i].end is not None)
    assert chosen.hidden_patterns == chosen.patterns - chosen.drawn_patterns > 0


@pytest.mark.parametrize("seed", [0, 4])
def test_the_drawing_is_at_most_max_rows_tall(seed: int) -> None:
    graph = synthetic_graph(seed, lines=1500, max_len=2)  # bushy: many short patterns, few nodes each
    budget = 2 * MAX_ROWS + 20  # more nodes than rows can hold
    chosen = select(graph, max_nodes=budget)
    assert chosen.drawn < budget  # the rows, not the nodes, stopped it
    svg = _draw(graph, max_nodes=budget)
    paths, boxes, parents = drawn_paths(svg)
    has_child = {p for ps in parents.values() for p in ps}
    assert sum(1 for i in range(len(boxes)) if i not in has_child) == MAX_ROWS  # leaves
    height = int(ET.fromstring(svg).get("height").removesuffix("pt"))
    assert height <= 2 * layout.BORDER + (MAX_ROWS - 1) * layout.ROW + layout.HEIGHT


def test_the_strongest_pattern_is_drawn_even_beyond_the_budget() -> None:
    graph = _graph(MERGED)
    chosen = select(graph, max_nodes=1)  # its strongest pattern, " Paris <- in" (0.9), has 2 nodes
    assert chosen.nodes == (0, 1) and chosen.drawn_patterns == 1
    with pytest.raises(ValueError, match="max_nodes=0"):
        select(graph, max_nodes=0)


def _chain(tokens: list[str], end: float, first_id: int = 0) -> list[dict]:
    return [
        {
            "id": first_id + d,
            "parent": first_id + d - 1 if d else -1,
            "depth": d,
            "key": t.strip(),
            "token": t,
            "importance": 1.0 if d == 0 else 0.9,
            "activation": 0.5,
            "end": end if d == len(tokens) - 1 else None,
            "count": 1,
        }
        for d, t in enumerate(tokens)
    ]


def test_patterns_longer_than_the_depth_limit_are_counted_not_drawn() -> None:
    long = _chain([f" w{i}" for i in range(MAX_DEPTH + 2)], 0.99)  # the strongest, but a sentence long
    graph = _graph(long + _chain([" Paris", " in"], 0.7, len(long)))
    chosen = select(graph)
    assert [graph.nodes[i].token for i in chosen.nodes] == [" Paris", " in"]
    assert (chosen.patterns, chosen.drawn_patterns, chosen.hidden) == (2, 1, MAX_DEPTH + 2)
    only_long = _graph(long)  # nothing fits: the strongest pattern is drawn anyway
    assert select(only_long).nodes == tuple(range(MAX_DEPTH + 2))
    assert_drawing_tells_the_truth(graph, _draw(graph))
    with pytest.raises(ValueError, match="max_depth=0"):
        select(graph, max_depth=0)


def test_the_strongest_pattern_is_drawn_on_top() -> None:
    graph = _graph(MERGED)
    boxes = drawn_paths(_draw(graph))[1]
    by_label = {b.label: b for b in boxes}
    assert by_label[" Paris"].y0 < by_label[" France"].y0  # Paris' best pattern (0.9) beats France's (0.6)
    tops = sorted((b for b in boxes if b.label in (" in", ANY)), key=lambda b: b.y0)
    assert [b.label for b in tops][:2] == [" in", ANY]  # under Paris: " in" (0.9) above "any" (-> of, 0.8)


def test_a_big_fixture_is_capped_and_counted() -> None:
    graph = _graph(big_graph(60))
    drawing = draw(graph)
    assert (
        drawing.nodes == 3 + 2 * 3 * 60
        and drawing.drawn <= MAX_NODES
        and drawing.hidden == drawing.nodes - drawing.drawn
    )
    root = ET.fromstring(drawing.svg)
    assert sum(1 for g in root.iter(f"{NS}g") if g.get("class") != "edges") == drawing.drawn


# ------------------------------------------------------------------------------------- compact SVG


def test_the_svg_is_compact_and_valid() -> None:
    graph = _graph(small_graph())
    svg = _draw(graph, title='L0 "N3" <x>')
    root = ET.fromstring(svg)  # well-formed
    assert root.tag == f"{NS}svg" and root.get("class") == "n2g-graph" and root.get("role") == "img"
    assert root.get("aria-label") == 'L0 "N3" <x>' and root.find(f"{NS}title").text == 'L0 "N3" <x>'
    assert "<!--" not in svg and "<?xml" not in svg and "xlink" not in svg and "\n" not in svg
    ids = [el.get("id") for el in root.iter() if el.get("id") is not None]
    assert ids == [marker_id('L0 "N3" <x>')]  # the arrow marker's, nothing else
    assert marker_id("a") != marker_id("b")
    marker = {id(el) for el in root.find(f"{NS}defs").iter()}
    for el in root.iter():  # whole points everywhere but in the arrow marker's own shape
        for name in ("x", "y", "width", "height", "viewBox", "d"):
            if id(el) not in marker and el.get(name) is not None:
                assert not re.search(r"\d\.\d", el.get(name)), (el.tag, name, el.get(name))
    for g in root.iter(f"{NS}g"):
        if g.get("class") != "edges":
            assert g.get("class") != "" and [c.tag for c in g] == [f"{NS}title", f"{NS}path", f"{NS}text"]
            assert not {"stroke", "stroke-width", "font-family", "text-anchor"} & (set(g[1].attrib) | set(g[2].attrib))
    assert svg == _draw(graph, title='L0 "N3" <x>')  # deterministic


def test_labels_are_literal_text_and_tooltips_stay() -> None:
    tokens = [*HOSTILE, "\\", '\\"', "a\\lb", "\\N", "&#45;", "&lt;", "]]>", " />"]
    nodes = [
        {
            "id": i,
            "parent": -1,
            "depth": 0,
            "key": t,
            "token": t,
            "importance": 1.0,
            "activation": 0.5,
            "end": 0.5,
            "count": 1,
        }
        for i, t in enumerate(tokens)
    ]
    svg = _draw(_graph(nodes))
    root = ET.fromstring(svg)
    texts = sorted("".join(t.itertext()) for t in root.iter(f"{NS}text"))
    assert texts == sorted(display_token(t) for t in tokens)
    titles = {t.text for t in root.iter(f"{NS}title")}
    tip = "activation 0.50, end 0.50"  # the label is beside it
    assert tip in titles and sum(t.text == tip for t in root.iter(f"{NS}title")) == len(tokens)
    assert "<script>" not in svg


def test_white_labels_any_nodes_and_ends_are_classes() -> None:
    nodes = [
        {
            "id": 0,
            "parent": -1,
            "depth": 0,
            "key": "a",
            "token": "a",
            "importance": 1.0,
            "activation": 1.0,
            "end": None,
            "count": 1,
        },
        {
            "id": 1,
            "parent": 0,
            "depth": 1,
            "key": None,
            "token": "",
            "importance": 0.1,
            "activation": 0.0,
            "end": None,
            "count": 1,
        },
        {
            "id": 2,
            "parent": 1,
            "depth": 2,
            "key": "b",
            "token": "b",
            "importance": 1.0,
            "activation": 0.0,
            "end": 0.7,
            "count": 1,
        },
    ]
    root = ET.fromstring(_draw(_graph(nodes)))
    classes = {g.find(f"{NS}text").text: g.get("class") for g in root.iter(f"{NS}g") if g.find(f"{NS}text") is not None}
    assert classes == {"a": None, ANY: "any", "b": "end w"}  # b: full-importance blue -> white
    any_box = next(g for g in root.iter(f"{NS}g") if g.get("class") == "any")
    assert any_box[1].get("fill") == "none" and any_box[2].get("font-size") == "8"


def test_n2g_css_styles_the_classes() -> None:
    css = (builtin_path("templates") / "assets" / "n2g.css").read_text(encoding="utf-8")
    rules = re.findall(r"[^{}]+\{[^}]*\}", GRAPH_CSS)
    assert len(rules) == 5

    def flat(text: str) -> str:
        return re.sub(r"/\*.*?\*/", "", re.sub(r"\s+", "", text)).replace(";}", "}")

    for rule in rules:
        assert flat(rule) in flat(css), rule


def test_a_standalone_file_carries_the_styles() -> None:
    svg = _draw(_graph(small_graph()))
    file = standalone_svg(svg)
    assert file.startswith('<?xml version="1.0" encoding="UTF-8"?>') and f"<style>{GRAPH_CSS}</style>" in file
    ET.fromstring(file.encode("utf-8"))


# ------------------------------------------------------------------------------------------ layout


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_layout_is_a_tidy_tree(seed: int) -> None:
    graph = synthetic_graph(seed, lines=300 if seed < 2 else 1500, max_len=6 if seed < 2 else 2)
    assert_tidy_layout(graph, draw(graph).svg)
    merged = _graph(MERGED)
    assert_tidy_layout(merged, draw(merged).svg)


def test_the_layout_matches_the_old_drawing() -> None:
    """What dot drew for MERGED before issue 15: the same boxes in the same places, the same drawing size."""
    root = ET.fromstring(_draw(_graph(MERGED)))
    assert (root.get("width"), root.get("height")) == ("214pt", "88pt")
    boxes = sorted((b.label, b.x0, b.y0, b.x1, b.y1) for b in _boxes(root))
    assert boxes == [
        (" France", 156, 62, 210, 84),
        (" Paris", 156, 18, 210, 40),
        (" born", 4, 62, 58, 84),
        (" in", 80, 4, 134, 26),
        (" in", 80, 62, 134, 84),
        (" of", 4, 31, 58, 53),
        (ANY, 80, 35, 134, 49),
    ]


def test_label_widths_are_estimated_from_helvetica() -> None:
    assert layout.text_width(" Paris") == pytest.approx((278 + 667 + 556 + 333 + 222 + 500) * 11 / 1000)
    assert layout.text_width("中文") == 22 and unicodedata.east_asian_width("中") == "W"
    assert layout.text_width("e\u0301") == layout.text_width("e")  # a combining accent adds nothing
    assert layout.box_width("a") == layout.MIN_WIDTH
    long = "<script>alert(1)</script>"  # dot drew it 128 pt wide
    assert 126 <= layout.box_width(long) <= 130
