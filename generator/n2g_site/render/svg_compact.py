"""The compact, inlineable SVG of a neuron graph: the format every drawing on the site is written in.

svg.py decides what a drawing shows (labels, fills, tooltips, classes), layout.py where each box goes; this
module writes the document:

- the root ``<svg>`` with the graph's ``<title>`` and ``aria-label``, its size in whole points, and the font
  and text anchor every label inherits; no XML prolog, doctype, comments or ids but the arrow marker's;
- every coordinate a whole point (1 pt = 1/72 in, the drawing's user unit);
- one ``<g class="edges">`` holding every edge as a bare ``<path>`` with relative coordinates, a straight
  line written from the context token's box toward the box of the token it supports, ending on that box:
  one shared arrow ``<marker>`` at the path's end draws every arrowhead;
- per node a ``<g>`` with the tooltip as its ``<title>`` (browsers show it on hover), the box as a short ``<path>``
  with its fill, and the label ``<text>``. The node's classes (``end``, ``any``, ``w``) are the group's class (none
  for an ordinary node): :data:`GRAPH_CSS` styles the outlines and label colours by class instead of repeating them
  on every node. Attributes the drawing cannot do without (a box's fill, the arrows' and edges' paint, the small
  font of "any token") stay on the elements, so the drawing is still legible without the CSS.

The output is written as text, not through an XML serialiser (this runs once per neuron): tags and attribute
names are constants of this module, and every value from the caller (labels, tooltips, the title, colours)
goes through :func:`_text` or :func:`_attribute`, which escape ``&``, ``<``, ``>`` and quotes, so labels stay
literal text whatever the token (tests/test_svg.py, tests/test_render_hostile.py). The output is
deterministic.
"""

from __future__ import annotations

import hashlib
import re

SVG_NS = "http://www.w3.org/2000/svg"

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


def _join(values: list[int]) -> str:
    """Numbers for a path's data with the fewest separators: none before a minus sign."""
    out = []
    for i, v in enumerate(values):
        s = str(v)
        out.append(s if i == 0 or s.startswith("-") else " " + s)
    return "".join(out)


def _marker(marker_id: str, arrow: float) -> str:
    """An arrowhead of size ``arrow`` (10 pt x ``arrow`` long, 0.35 of that each side of the line; the
    shape Graphviz drew before issue 15) as a marker whose tip sits on each edge path's end, along the
    path's last direction."""
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


def box_path(x: int, y: int, width: int, height: int) -> str:
    """Path data of a node's box: ``M x,y h w v h h -w z``."""
    return f"M{x},{y}h{width}v{height}h{-width}z"


def edge_path(x0: int, y0: int, x1: int, y1: int) -> str:
    """Path data of an edge, a straight line from (x0, y0) to (x1, y1) in relative coordinates: ``h dx``
    when level, else ``l dx dy``."""
    return f"M{x0},{y0}h{x1 - x0}" if y1 == y0 else f"M{x0},{y0}l{_join([x1 - x0, y1 - y0])}"


def node(classes: str, tooltip: str, box: str, fill: str, x: int, y: int, label: str, font_size: str = "") -> str:
    """One node's group: tooltip ``<title>``, box ``<path>`` (``box``: :func:`box_path`) and label ``<text>``
    (``font_size``: only where it differs from the root's)."""
    text = [("x", str(x)), ("y", str(y))] + ([("font-size", font_size)] if font_size else [])
    inner = (
        _element("title", [], _text(tooltip))
        + _element("path", [("d", box), ("fill", fill)])
        + _element("text", text, _text(label))
    )
    return _element("g", [("class", classes)] if classes else [], inner)


def document(
    title: str,
    width: int,
    height: int,
    edges: list[str],
    nodes: list[str],
    *,
    font: str,
    font_size: float,
    arrow: float,
) -> str:
    """The whole drawing, titled ``title``: ``edges`` (:func:`edge_path` data), then ``nodes`` (:func:`node`),
    so boxes are painted over the edges' ends. ``font`` and ``font_size`` are what labels inherit from the root,
    ``arrow`` the arrowhead's size (:func:`_marker`)."""
    top = [_element("title", [], _text(title))]
    if edges:
        mid = marker_id(title)
        top.append(_element("defs", [], _marker(mid, arrow)))
        top.append(
            _element(
                "g",
                [("class", "edges"), ("fill", "none"), ("stroke", EDGE_COLOUR), ("marker-end", f"url(#{mid})")],
                "".join(_element("path", [("d", d)]) for d in edges),
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
        "".join(top + nodes),
    )


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
