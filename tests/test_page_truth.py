"""Issue 18 without a browser: badges from the evaluate files, pager links across layers, the one-line
summary and its full list, anchors, the similar-neuron noise floor, the 404 page without --site-url."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from n2g_site.config import Config
from n2g_site.publish import publish
from n2g_site.render import render_site
from n2g_site.render.search_index import read_script
from n2g_site.store import WorkDir, write_json
from render_fixtures import DEAD, UNFITTED, make_workdir


def _evaluation(layer: int, neuron: int, n2g: float, lookup: float, firing: int = 4) -> dict:
    scores = {"tokens": 100, "true_firing": firing, "predicted_firing": 3, "true_positive": 2}
    scores |= {"precision": 0.5, "recall": 0.5, "correlation": 0.3}
    return {
        "schema": "n2g-site/neuron-eval/1",
        "layer": layer,
        "neuron": neuron,
        "status": "fitted",
        "fire_threshold": 0.5,
        "ngram": 5,
        "datasets": {
            "heldout": {
                "n2g": scores | {"f1": n2g},
                "token_lookup": scores | {"f1": lookup},
                "token_max": scores | {"f1": lookup / 2},
                "ngram": scores | {"f1": None},
            }
        },
    }


BADGES = {(0, 0): "beats", (0, 3): "loses", (3, 3): "none"}  # (3, 17): not evaluated, the fit's F1 decides


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WorkDir]:
    root = tmp_path_factory.mktemp("truth")
    work = make_workdir(root / "work")
    write_json(work.evaluated(0, 0), _evaluation(0, 0, 0.7, 0.6))
    write_json(work.evaluated(0, 3), _evaluation(0, 3, 0.62, 0.67))
    write_json(work.evaluated(3, 3), _evaluation(3, 3, 0.0, 0.0, firing=0))
    # neighbours of L0 N0: one kin, two at noise level (the demo listed one at cosine 0.005)
    similar = {"neurons": {"0/0": [[0, 3, 0.8], [3, 3, 0.05], [3, 17, 0.005]]}, "tokens": {}}
    write_json(work.similar, similar)
    cfg = Config(site_dir=root / "site")  # no --site-url
    render_site(cfg, work)
    return publish(cfg, work), work


def _page(site: Path, rel: str) -> str:
    return (site / rel / "index.html").read_text(encoding="utf-8")


def _state(html: str) -> str | None:
    found = re.search(r'class="n2g-verdict"><a class="n2g-v n2g-v-(\w+)"', html)
    return found.group(1) if found else None


def test_badges_come_from_the_evaluate_files(built) -> None:
    site, _ = built
    for (layer, neuron), state in BADGES.items():
        assert _state(_page(site, f"neurons/L{layer}/N{neuron}")) == state, (layer, neuron)
    assert _state(_page(site, "neurons/L3/N17")) in ("unrated", "loses", "none")  # the fit's check: no baselines
    assert _state(_page(site, f"neurons/L{DEAD[0]}/N{DEAD[1]}")) is None  # no graph, no badge
    assert _state(_page(site, f"neurons/L{UNFITTED[0]}/N{UNFITTED[1]}")) is None
    assert "held-out F1 0.62, token lookup 0.67" in _page(site, "neurons/L0/N3")
    table = _page(site, "layers/L0")
    for (layer, neuron), state in BADGES.items():
        if layer == 0:
            row = re.search(rf'<tr class="n2g-\w+"><td data-v="{neuron}">.*?</tr>', table, re.S).group(0)
            assert f'class="n2g-v n2g-v-{state}"' in row, neuron
    info = read_script((site / "token-search" / "neurons-L0-0.js").read_text(encoding="utf-8"))
    assert {n: v[3] for n, v in info.items() if int(n) in (0, 3)} == {"0": "beats", "3": "loses"}


def test_prev_and_next_cross_layer_boundaries(built) -> None:
    site, _ = built
    first_of_3 = _page(site, "neurons/L3/N3")
    assert '<a href="../../L0/N3/">← L0 N3</a>' in first_of_3  # layer 0's last neuron of this build
    assert '<a href="../../L3/N3/">L3 N3 →</a>' in _page(site, "neurons/L0/N3")
    assert '<a href="../N17/">Neuron 17 →</a>' in first_of_3
    assert "→</a>" not in _page(site, "neurons/L3/N17").split("</nav>")[0]  # the build's last neuron


def test_anchors_on_examples_and_activating_tokens(built) -> None:
    site, _ = built
    html = _page(site, "neurons/L0/N0")
    assert '<div class="n2g-ex" id=t1>' in html
    assert '<div class="n2g-ex" id=h1>' in html


def test_token_search_meta_lists_the_builds_neurons(built) -> None:
    site, _ = built
    meta = read_script((site / "token-search" / "tokens.js").read_text(encoding="utf-8"))
    assert meta["layers"] == {"0": [[0, 3]], "3": [[3, 3], [17, 17]]}
    assert meta["example"]  # a token of this build: the search box's placeholder


def test_layer_table_density_reads_as_on_the_page(built) -> None:
    site, _ = built
    table = _page(site, "layers/L0")
    shares = re.findall(r"<td data-v=\"[0-9.e-]*\">(\d+\.\d+)%</td>", table)
    assert shares and all(len(s.split(".")[1]) == 2 for s in shares)  # "0.02%", as on the neuron page


def test_404_links_relative_without_site_url(built) -> None:
    site, _ = built
    html = (site / "404.html").read_text(encoding="utf-8")
    assert '<base id="n2g-base" href="about:blank">' in html
    hrefs = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert hrefs and not [h for h in hrefs if h.startswith("/")], hrefs  # nothing root-absolute
    assert 'class="n2g-404"' in html


def test_similar_neurons_below_the_noise_floor_are_left_out_and_counted(built) -> None:
    site, _ = built
    html = _page(site, "neurons/L0/N0")
    block = html[html.index('id="similar"') :]
    assert '<a href="../../L0/N3/">L0 N3</a>' in block
    assert "L3 N3</a>" not in block and "L3 N17</a>" not in block
    assert "2 neighbours below cosine 0.1 (noise) not listed." in block


def test_the_badge_links_to_its_explanation(built) -> None:
    site, _ = built
    assert 'href="../../../fidelity/#the-score-badge"' in _page(site, "neurons/L0/N0")
    assert 'id="the-score-badge"' in _page(site, "fidelity")
