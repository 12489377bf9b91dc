"""Compact, inlineable SVG from ``dot -Tsvg`` output: the same drawing in about half the bytes.

``dot`` writes every element with its own id, a ``<title>`` naming the DOT node ("n3", "n3->n7"), an XML
comment, a tooltip link wrapper, every style attribute repeated (fonts, strokes, colours) and coordinates
with two decimals. :func:`compact` parses that output with :mod:`xml.etree.ElementTree` and writes a new
document:

- the root ``<svg>`` with the graph's ``<title>`` and ``aria-label``, its size in whole points, and the font
  and text anchor every label inherits; no XML prolog, doctype, comments or ids;
- every coordinate a whole point (1 pt = 1/72 in, the drawing's user unit), dot's ``translate`` folded
  into them;
- one ``<g class="edges">`` holding every edge as a bare ``<path>`` with relative coordinates (a straight
  line where dot's curve is one to within a point): the curve is reversed (written from the context token
  toward the token it supports) and carried on to the arrowhead's tip, so that one shared arrow
  ``<marker>`` at its end replaces dot's per-edge arrowhead polygon;
- per node a ``<g>`` with the tooltip as its ``<title>`` (browsers show it on hover), the box as a short ``<path>``
  with its fill, and the label ``<text>``. The node's DOT ``class`` (``end``, ``any``, ``w``) is kept as the group's
  class (none for an ordinary node: dot's ``node`` class is implied): :data:`GRAPH_CSS` styles the outlines and
  label colours by class instead of repeating them on every node. Attributes the drawing cannot do without (a box's
  fill, the arrows' and edges' paint, the small font of "any token") stay on the elements, so the drawing is still
  legible without the CSS.

The output is written as text, not through ElementTree's serialiser (pure Python, 3x slower here, and this
runs once per neuron): tags and attribute names are constants of this module, and every value taken from
dot's output or the caller (labels, tooltips, the title, colours) goes through :func:`_text` or
:func:`_attribute`, which escape ``&``, ``<``, ``>`` and quotes, so labels stay literal text whatever the
token (tests/test_svg.py, tests/test_render_hostile.py). The output is deterministic.
"""

from __future__ import annotations

import hashlib
import math
import re
import xml.etree.ElementTree as ET

SVG_NS = "http://www.w3.org/2000/svg"
_S = "{" + SVG_NS + "}"
_XLINK_TITLE = "{http://www.w3.org/1999/xlink}title"

# What the classes mean; n2g.css carries these rules for inline graphs (tests/test_svg.py checks it does),
# a graph in a file of its own carries them in a <style> (svg.standalone_svg).
# A node is a ``<g>`` of its own (no class: an ordinary node), the edges one ``<g class="edges">``.
GRAPH_CSS = (
    ".n2g-graph g:not(.edges)>path{stroke:#555}"
    ".n2g-graph g.end>path{stroke:#000;stroke-width:2.6}"
    ".n2g-graph g.any>path{stroke:#999;stroke-dasharray:5,2}"
    ".n2g-graph .any text{fill:#777}"
    ".n2g-graph .w text{fill:#fff}"
)
EDGE_COLOUR = "#888"

_NUMBER = re.compile(r"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|-?\.\d+(?:[eE][-+]?\d+)?")
_TRANSFORM = re.compile(
    r"^\s*scale\(\s*1(?:\.0*)?\s+1(?:\.0*)?\s*\)\s*rotate\(\s*0\s*\)\s*translate\(\s*([-\d.]+)\s+([-\d.]+)\s*\)\s*$"
)
_SIZE = re.compile(r"^\s*([\d.]+)\s*(pt|px)?\s*$")


def _r(value: float) -> int:
    """Round half up to a whole point (``round`` would round half to even)."""
    return math.floor(value + 0.5)


def _join(values: list[int]) -> str:
    """Numbers for a path's data with the fewest separators: none before a minus sign."""
    out = []
    for i, v in enumerate(values):
        s = str(v)
        out.append(s if i == 0 or s.startswith("-") else " " + s)
    return "".join(out)


def _numbers(text: str) -> list[float]:
    return [float(m) for m in _NUMBER.findall(text)]


class _Frame:
    """dot's coordinate frame: points are translated by (dx, dy) and rounded."""

    def __init__(self, dx: float, dy: float) -> None:
        self.dx, self.dy = dx, dy

    def point(self, x: float, y: float) -> tuple[int, int]:
        return _r(x + self.dx), _r(y + self.dy)


def _box(points: list[float], frame: _Frame) -> str:
    """Path data of a node's outline: a rectangle as ``M x,y h w v h h -w z``, any other polygon as is."""
    pts = [frame.point(points[i], points[i + 1]) for i in range(0, len(points) - 1, 2)]
    xs, ys = {p[0] for p in pts}, {p[1] for p in pts}
    if len(xs) == 2 and len(ys) == 2:
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        return f"M{x0},{y0}h{x1 - x0}v{y1 - y0}h{x0 - x1}z"
    if len(pts) > 1 and pts[0] == pts[-1]:
        pts = pts[:-1]
    return "M" + " ".join(f"{x},{y}" for x, y in pts) + "z"


def _edge(d: str, arrowhead: list[float], frame: _Frame) -> str:
    """An edge's cubic Bezier chain (``M p0 C p1 p2 p3 ...``, ``p0`` where dot's arrowhead starts), reversed
    and written with relative coordinates (``M p3 c ...``), then a line on to the arrowhead's tip (the
    ``arrowhead`` polygon's point farthest from ``p0``, touching the box of the token the edge supports).
    The arrow marker sits on that last line: its direction is dot's own arrow axis, not a tangent of
    rounded control points (which a short last segment would skew by degrees). A curve that is a straight
    line to within a point is written as one line to the tip (most edges: a child level with its parent)."""
    values = _numbers(d)
    if not d.lstrip().startswith("M") or len(values) < 8 or (len(values) - 2) % 6:
        raise ValueError(f"dot drew an edge that is not a cubic Bezier chain: {d[:80]!r}")
    pts = [frame.point(values[i], values[i + 1]) for i in range(0, len(values), 2)][::-1]
    corners = [(arrowhead[i], arrowhead[i + 1]) for i in range(0, len(arrowhead) - 1, 2)]
    if corners:
        far = max(corners, key=lambda c: (c[0] - values[0]) ** 2 + (c[1] - values[1]) ** 2)
        tip = frame.point(*far)
    else:
        tip = pts[-1]
    (x0, y0), end = pts[0], pts[-1]
    if len(pts) == 4 and _straight(pts) and (tip == end or _straight([pts[0], end, end, tip])):
        step = f"h{tip[0] - x0}" if tip[1] == y0 else f"l{_join([tip[0] - x0, tip[1] - y0])}"
        return f"M{x0},{y0}{step}"
    rel: list[int] = []
    for seg in range(0, len(pts) - 1, 3):
        sx, sy = pts[seg]
        for x, y in pts[seg + 1 : seg + 4]:
            rel += [x - sx, y - sy]
    last = "" if tip == end else f"l{_join([tip[0] - end[0], tip[1] - end[1]])}"
    return f"M{x0},{y0}c{_join(rel)}{last}"


def _straight(pts: list[tuple[int, int]], tolerance: float = 1.0) -> bool:
    """Whether a one-segment Bezier is a straight line to within ``tolerance`` points: both control points
    near the chord and between its ends (most edges of a trie drawing: a child level with its parent)."""
    (x0, y0), (x3, y3) = pts[0], pts[3]
    dx, dy = x3 - x0, y3 - y0
    length2 = dx * dx + dy * dy
    if length2 == 0:
        return False
    for x, y in pts[1:3]:
        t = ((x - x0) * dx + (y - y0) * dy) / length2
        if not 0 <= t <= 1 or abs((x - x0) * dy - (y - y0) * dx) / math.sqrt(length2) > tolerance:
            return False
    return True


def _marker(marker_id: str, arrow: float) -> str:
    """dot's "normal" arrowhead of ``arrowsize=arrow`` (10 pt x ``arrow`` long, 0.35 of that each side of
    the line) as a marker whose tip sits on each edge path's end, along the path's last direction."""
    length, half = 10 * arrow, 3.5 * arrow
    return _element(
        "marker",
        [
            ("id", marker_id),
            ("markerWidth", f"{length:g}"),
            ("markerHeight", f"{2 * half:g}"),
            ("refX", f"{length:g}"),
            ("refY", f"{half:g}"),
            ("orient", "auto"),  # markerUnits: the default, the edges' stroke width, which is 1
        ],
        _element("path", [("d", f"M0,0 {length:g},{half:g} 0,{2 * half:g}z"), ("fill", EDGE_COLOUR)]),
    )


def marker_id(title: str) -> str:
    """The arrow marker's id: from the graph's title, so two graphs on one page do not share an id."""
    return "n2g-a" + hashlib.sha1(title.encode("utf-8")).hexdigest()[:8]


def _size(value: str | None, what: str) -> int:
    m = _SIZE.match(value or "")
    if m is None or m.group(2) == "px":
        raise ValueError(f"dot wrote an SVG {what} of {value!r}, expected points")
    return math.ceil(float(m.group(1)) - 1e-6)


def compact(svg: str, title: str, *, font: str, font_size: float, arrow: float) -> str:
    """The compact form of one ``dot -Tsvg`` document (module docstring), titled ``title``.

    ``font``, ``font_size`` and ``arrow`` are the DOT graph's ``fontname``, node ``fontsize`` and edge
    ``arrowsize``: labels inherit the first two from the root, the arrow marker is drawn from the third.
    Raises ValueError for output this module does not know (another node shape, a transformed graph).
    """
    src = ET.fromstring(svg.encode("utf-8"))
    graph = next((g for g in src.iter(_S + "g") if g.get("class") == "graph"), None)
    if graph is None:
        raise ValueError("dot's SVG has no graph group")
    m = _TRANSFORM.match(graph.get("transform", ""))
    if m is None:
        raise ValueError(f"dot's graph group has an unexpected transform {graph.get('transform')!r}")
    frame = _Frame(float(m.group(1)), float(m.group(2)))
    width, height = _size(src.get("width"), "width"), _size(src.get("height"), "height")

    parts = []
    edges: list[str] = []
    for item in graph.findall(_S + "g"):
        classes = (item.get("class") or "").split()
        if classes[:1] == ["edge"]:
            path, head = item.find(_S + "path"), item.find(_S + "polygon")
            if path is not None:
                arrowhead = _numbers(head.get("points", "")) if head is not None else []
                edges.append(_element("path", [("d", _edge(path.get("d", ""), arrowhead, frame))]))
        elif classes[:1] == ["node"]:
            parts.append(_node(item, classes, frame))
    top = [_element("title", [], _text(title))]
    if edges:
        mid = marker_id(title)
        top.append(_element("defs", [], _marker(mid, arrow)))
        top.append(
            _element(
                "g",
                [("class", "edges"), ("fill", "none"), ("stroke", EDGE_COLOUR), ("marker-end", f"url(#{mid})")],
                "".join(edges),
            )
        )
    return _element(
        "svg",
        [
            ("class", "n2g-graph"),
            ("xmlns", SVG_NS),
            ("role", "img"),
            ("aria-label", title),
            ("width", f"{width}pt"),
            ("height", f"{height}pt"),
            ("viewBox", f"0 0 {width} {height}"),
            ("font-family", font),
            ("font-size", f"{font_size:g}"),
            ("text-anchor", "middle"),
        ],
        "".join(top + parts),
    )  # nodes after the edges: boxes are painted over the edges' ends


def _node(item: ET.Element, classes: list[str], frame: _Frame) -> str:
    inner: list[str] = []
    for el in item.iter():
        tag = el.tag.removeprefix(_S)
        if el.get(_XLINK_TITLE) is not None and not inner:
            inner.append(_element("title", [], _text(el.get(_XLINK_TITLE) or "")))
        if tag == "polygon":
            fill = el.get("fill")
            inner.append(
                _element(
                    "path",
                    [
                        ("d", _box(_numbers(el.get("points", "")), frame)),
                        ("fill", fill if fill and fill != "transparent" else "none"),
                    ],
                )
            )
        elif tag == "text":
            x, y = frame.point(float(el.get("x", 0)), float(el.get("y", 0)))
            attrs = [("x", str(x)), ("y", str(y))]
            size = el.get("font-size")
            if "any" in classes and size:
                attrs.append(("font-size", f"{float(size):g}"))
            inner.append(_element("text", attrs, _text(el.text or "")))
        elif tag in ("ellipse", "path", "polyline", "image"):
            raise ValueError(f"dot drew a node as <{tag}>; svg_compact only knows box nodes (polygons)")
    kept = " ".join(c for c in classes if c != "node")
    return _element("g", [("class", kept)] if kept else [], "".join(inner))


def _text(value: str) -> str:
    """Character data, escaped: the only markup characters left are the ones written here."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _element(tag: str, attrs: list[tuple[str, str]], content: str | None = None) -> str:
    """One element: ``tag`` and attribute names are this module's constants; every attribute value is
    escaped (``&``, ``<``, ``>``, ``"`` and the whitespace XML would normalise); ``content`` is markup built
    by this module (:func:`_text` for character data); None writes an empty element."""
    head = "<" + tag + "".join(f' {name}="{_attribute(value)}"' for name, value in attrs)
    return head + "/>" if content is None else f"{head}>{content}</{tag}>"


_SPECIAL = re.compile(r'[&<>"\n\r\t]')


def _attribute(value: str) -> str:
    if _SPECIAL.search(value) is None:  # coordinates, colours, classes: nothing to escape
        return value
    return _text(value).replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
