"""Accessibility: WCAG contrast of highlighted tokens, badges and graph nodes in Material's light and dark
palettes, computed from the colours in templates/assets/n2g.css and render/svg.py; the graph SVG is labelled."""

from __future__ import annotations

import re

import pytest

from n2g_site.render.svg import ACT_RGB, CTX_RGB, _mix, contrast, draw, text_colour
from n2g_site.resources import builtin_path

AA = 4.5  # WCAG 2 level AA, normal text
CSS = (builtin_path("templates") / "assets" / "n2g.css").read_text(encoding="utf-8")
PALETTES = {"light": r":root", "dark": r'\[data-md-color-scheme="slate"\]'}


def _variables(selector: str) -> dict[str, str]:
    block = re.search(selector + r"\s*\{([^}]*)\}", CSS)
    assert block, f"no {selector} block in n2g.css"
    body = re.sub(r"/\*.*?\*/", "", block.group(1), flags=re.S)
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"(--n2g-[\w-]+)\s*:\s*([^;]+);", body)}


def _rgb(value: str) -> tuple[float, float, float]:
    value = value.strip()
    if value.startswith("#"):
        h = value[1:]
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        return tuple(int(h[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    parts = [float(p) for p in value.split(",")]
    assert len(parts) == 3, value
    return tuple(parts)  # type: ignore[return-value]


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(c):02x}" for c in rgb)


def _over(top: tuple[float, ...], alpha: float, bottom: tuple[float, ...]) -> tuple[float, float, float]:
    return tuple(alpha * t + (1 - alpha) * b for t, b in zip(top, bottom, strict=True))  # type: ignore[return-value]


def _levels() -> dict[int, float]:
    """Highlight level -> alpha of --n2g-hl, read from the ``.n2g-tokens .aN`` rules."""
    found = {
        int(m.group(1)): float(m.group(2))
        for m in re.finditer(r"\.n2g-tokens \.a(\d+)\s*\{\s*background:\s*rgba\(var\(--n2g-hl\),\s*([\d.]+)\)", CSS)
    }
    # a rule that sets its own text colour would escape this check: none may
    assert not re.search(r"\.n2g-tokens \.a\d+\s*\{[^}]*\bcolor\s*:", CSS)
    return found


def test_every_highlight_level_has_a_rule() -> None:
    levels = _levels()
    assert sorted(levels) == list(range(1, 11))  # TokenView.level is 0..10; 0 has no background
    alphas = [levels[i] for i in range(1, 11)]
    assert alphas == sorted(alphas) and len(set(alphas)) == 10  # stronger activation, stronger colour


@pytest.mark.parametrize("palette", sorted(PALETTES))
def test_highlighted_tokens_meet_wcag_aa(palette: str) -> None:
    """Token text on its highlight, composited over the example box, at every level (0 = no highlight)."""
    v = _variables(PALETTES[palette])
    base, text, hl = _rgb(v["--n2g-tok-bg"]), _hex(_rgb(v["--n2g-tok-fg"])), _rgb(v["--n2g-hl"])
    ratios = {0: contrast(text, _hex(base))}
    for level, alpha in _levels().items():
        ratios[level] = contrast(text, _hex(_over(hl, alpha, base)))
    low = {level: round(r, 2) for level, r in ratios.items() if r < AA}
    assert not low, f"{palette}: contrast below {AA}:1 at levels {low}"


@pytest.mark.parametrize("palette", sorted(PALETTES))
def test_badges_meet_wcag_aa(palette: str) -> None:
    v = _variables(PALETTES[palette])
    text = _hex(_rgb(v["--n2g-badge-fg"]))
    for name in ("--n2g-badge-train", "--n2g-badge-heldout", "--n2g-badge-fit"):
        assert contrast(text, _hex(_rgb(v[name]))) >= AA, (palette, name)


def test_graph_node_labels_meet_wcag_aa() -> None:
    """Graph nodes are drawn on a light card in both palettes; their text colour follows the fill."""
    for scale in (ACT_RGB, CTX_RGB):
        for step in range(101):
            fill = _mix(scale, step / 100)
            assert contrast(fill, text_colour(fill)) >= AA, (scale, step, fill)


def test_contrast_matches_wcag_reference_values() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


def test_graph_svg_has_a_title_and_an_aria_label() -> None:
    from n2g_site.n2g.graph import Graph
    from render_fixtures import small_graph

    graph = Graph.from_json({"schema": "n2g-site/graph/1", "nodes": small_graph()})
    svg = draw(graph, "N2G graph of layer 2, neuron 7").svg
    head = svg[: svg.index(">") + 1]
    assert 'role="img"' in head and 'aria-label="N2G graph of layer 2, neuron 7"' in head
    assert "<title>N2G graph of layer 2, neuron 7</title>" in svg
