"""Charts as inline SVG, drawn at build time (no plotting library, no JavaScript): per-layer fidelity charts, and
a neuron's activation histogram (:func:`histogram`).

One chart per (dataset, metric): x = layer, y = the metric's mean over the layer's neurons (0..1), one line
per method (N2G, token lookup, n-gram). The geometry is computed here; ``chart.svg.j2`` draws it, so a site
may restyle it with its own template. Colours are the Okabe-Ito palette (distinguishable with colour-blind
vision), and each line also differs by marker shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import jinja2
from markupsafe import Markup, escape

METHOD_STYLE = {  # method -> (label, colour, marker)
    "n2g": ("N2G", "#0072B2", "circle"),
    "token_lookup": ("token lookup (mean)", "#E69F00", "square"),
    "token_max": ("token lookup (max)", "#CC79A7", "triangle"),
    "ngram": ("n-gram", "#009E73", "diamond"),
}
WIDTH, HEIGHT = 300, 190
LEFT, RIGHT, TOP, BOTTOM = 36, 10, 26, 30


@dataclass
class Point:
    x: float
    y: float
    value: float
    layer: int


@dataclass
class Line:
    label: str
    colour: str
    marker: str
    points: list[Point]

    @property
    def path(self) -> str:
        """SVG polyline points, broken where a layer has no value (separate runs)."""
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


@dataclass
class Tick:
    pos: float
    label: str


@dataclass
class ChartView:
    """``chart.svg.j2``."""

    title: str
    description: str  # the SVG's <desc>: the numbers, for screen readers
    width: int
    height: int
    left: int
    right: float
    top: int
    bottom: float
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    lines: list[Line]


def chart(title: str, layers: list[int], values: dict[str, list[float | None]]) -> ChartView:
    """``values``: method -> one value per layer (None = undefined, not drawn)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = max(len(layers) - 1, 1)

    def x(i: int) -> float:
        return LEFT + (plot_w * i / span if len(layers) > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v)

    lines = []
    for method, series in values.items():
        label, colour, marker = METHOD_STYLE[method]
        points = [Point(x(i), y(v), v, layers[i]) for i, v in enumerate(series) if v is not None]
        lines.append(Line(label, colour, marker, points))
    step = max(1, round(len(layers) / 8))
    described = "; ".join(
        f"{line.label}: " + ", ".join(f"layer {p.layer} {p.value:.2f}" for p in line.points) for line in lines
    )
    return ChartView(
        title=title,
        description=f"{title}. {described}",
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=TOP + plot_h,
        x_ticks=[Tick(x(i), str(layer)) for i, layer in enumerate(layers) if i % step == 0 or i == len(layers) - 1],
        y_ticks=[Tick(y(v), f"{v:g}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)],
        lines=lines,
    )


def render_chart(env: jinja2.Environment, view: ChartView) -> str:
    return env.get_template("chart.svg.j2").render(chart=view)


class Bar(Protocol):
    """A histogram bar (contexts.HistBar): its height, 0..100 (percent of the chart's height), and its upper
    bin edge (None: unbounded), which says whether the bin lies below 0."""

    height: int
    hi: float | None


def _bars_path(bars: Sequence[Bar], start: int) -> str:
    steps = "".join(f"V{100 - max(1, min(100, int(bar.height)))}h1" for bar in bars)
    return f"M{start} 100{steps}V100z"


def histogram(bars: Sequence[Bar], label: str = "Activation histogram") -> Markup:
    """The bars as SVG ``<path>``s (a bar a unit wide, heights in percent), stretched to its box by CSS
    (``preserveAspectRatio="none"``): ~6 bytes a bar, where a ``<i>`` a bar with its range and count as a
    title was ~35 (one neuron page a neuron, tens of thousands of them). A bar of height 0 is drawn 1 unit
    tall, as the HTML bars' ``min-height``, so an empty bin still shows where it is. The bins below 0 (upper
    edge <= 0, first in the order) are a second path of class ``lo`` (n2g.css draws it blue). The bins' ranges
    and counts are in the layer's data; ``label`` is the chart's ``<title>``: its accessible name and tooltip."""
    if not bars:
        return Markup("")
    low = 0
    while low < len(bars) and (hi := bars[low].hi) is not None and hi <= 0:
        low += 1
    paths = (f'<path class=lo d="{_bars_path(bars[:low], 0)}"/>' if low else "") + (
        f'<path d="{_bars_path(bars[low:], low)}"/>' if low < len(bars) else ""
    )
    return Markup(
        f'<svg class="n2g-hist" viewBox="0 0 {len(bars)} 100" preserveAspectRatio="none" role="img">'
        f"<title>{escape(label)}</title>{paths}</svg>"
    )
