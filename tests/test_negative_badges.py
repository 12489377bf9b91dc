"""The negative graph's own score badge (render/verdict.py on evaluate/L../N.....neg.json): beside the negative
side's heading on the neuron page, and as a second small mark in the layer table's badge cell."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from n2g_site.config import Config
from n2g_site.publish import publish
from n2g_site.render import render_site
from n2g_site.store import WorkDir, read_json, write_json
from render_fixtures import fit_json, make_workdir, small_graph


def _evaluation(layer: int, neuron: int, n2g: float | None, lookup: float | None, firing: int = 4) -> dict:
    scores = {"tokens": 100, "true_firing": firing, "predicted_firing": 3, "true_positive": 2}
    scores |= {"precision": 0.5, "recall": 0.5, "correlation": 0.3}
    return {
        "schema": "n2g-site/neuron-eval/1",
        "layer": layer,
        "neuron": neuron,
        "status": "fitted",
        "polarity": "negative",
        "fire_threshold": 0.5,
        "ngram": 5,
        "datasets": {
            "heldout": {
                "n2g": scores | {"f1": n2g},
                "token_lookup": scores | {"f1": lookup},
                "token_max": scores | {"f1": None if lookup is None else lookup / 2},
                "ngram": scores | {"f1": None},
            }
        },
    }


# (layer, neuron) -> the negative graph's evaluate scores (n2g F1, token lookup F1, firing), None: not evaluated
NEGATIVE = {(0, 0): (0.4, 0.7, 4), (0, 3): (0.8, 0.3, 4), (3, 3): (None, None, 0), (3, 17): None}
WANT = {(0, 0): "loses", (0, 3): "beats", (3, 3): "none", (3, 17): "unrated"}  # (3, 17): the fit's F1 0.69
POSITIVE = {(0, 0): (0.7, 0.6)}  # the positive side beats its baselines where its negative side loses


def build_site(root: Path) -> tuple[Path, WorkDir]:
    """The render fixtures' work dir with the negative fits and evaluate files above, rendered and published."""
    work = make_workdir(root / "work")
    for (layer, neuron), scores in NEGATIVE.items():
        a_max = float(read_json(work.fitted(layer, neuron))["max_activation"]) / 5
        write_json(work.fitted(layer, neuron, "negative"), fit_json(layer, neuron, small_graph(), a_max=a_max))
        if scores is not None:
            write_json(work.evaluated(layer, neuron, "negative"), _evaluation(layer, neuron, *scores))
    for (layer, neuron), (n2g, lookup) in POSITIVE.items():
        positive = _evaluation(layer, neuron, n2g, lookup)
        del positive["polarity"]
        write_json(work.evaluated(layer, neuron), positive)
    cfg = Config(site_dir=root / "site")
    render_site(cfg, work)
    return publish(cfg, work), work


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WorkDir]:
    return build_site(tmp_path_factory.mktemp("negbadges"))


def _page(site: Path, rel: str) -> str:
    return (site / rel / "index.html").read_text(encoding="utf-8")


def _negative_state(html: str) -> str | None:
    side = html[html.index('id="negative"') :]
    found = re.search(r'class="n2g-neg-verdict"><a class="n2g-v n2g-v-(\w+)"', side)
    return found.group(1) if found else None


def test_the_negative_graph_has_its_own_badge_from_its_evaluate_file(built) -> None:
    site, _ = built
    for (layer, neuron), state in WANT.items():
        html = _page(site, f"neurons/L{layer}/N{neuron}")
        assert _negative_state(html) == state, (layer, neuron)
    page = _page(site, "neurons/L0/N0")
    assert re.search(r'class="n2g-verdict"><a class="n2g-v n2g-v-beats"', page)  # the positive badge is its own
    assert "negative graph: held-out F1 0.40, token lookup 0.70" in page
    assert _negative_state(_page(site, "neurons/L0/N1")) is None  # no negative fit: no badge


def test_the_layer_table_marks_the_negative_badge_in_the_same_cell(built) -> None:
    site, _ = built
    for layer in (0, 3):
        table = _page(site, f"layers/L{layer}")
        header = re.search(r"<thead><tr>(.*?)</tr></thead>", table, re.S).group(1)
        assert header.count("<th") == 8  # no column added
        for (at, neuron), state in WANT.items():
            if at != layer:
                continue
            row = re.search(rf'<tr class="n2g-\w+"><td data-v="{neuron}">.*?</tr>', table, re.S).group(0)
            cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
            assert len(cells) == 8
            marks = re.findall(
                r'class="n2g-v n2g-vn n2g-v-(\w+)" title="negative graph: ([^"]*)">neg\. ([^<]+)<', cells[5]
            )
            assert [m[0] for m in marks] == [state], (layer, neuron, cells[5])
            assert marks[0][2] == {"beats": "beats", "loses": "loses", "none": "n/a", "unrated": "unrated"}[state]
    row = re.search(r'<tr class="n2g-\w+"><td data-v="1">.*?</tr>', _page(site, "layers/L0"), re.S).group(0)
    assert "n2g-vn" not in row  # no negative fit, no mark
