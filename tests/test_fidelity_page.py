"""The fidelity page context and charts, from a hand-made evaluation summary."""

from pathlib import Path

from n2g_site.config import Config
from n2g_site.render.fidelity import fidelity_page
from n2g_site.render.jinja_env import make_env
from n2g_site.store import WorkDir, write_json


def scores(p, r, f):
    return {"precision": p, "recall": r, "f1": f, "correlation": None}


def layer(n2g, lookup, ngram):
    per = {"n2g": scores(*n2g), "token_lookup": scores(*lookup), "token_max": scores(*lookup), "ngram": scores(*ngram)}
    return {"neurons": 4, "dead": 1, "always_on": 0, "layer_neurons": 64, "heldout": per, "ordinary": per}


def test_charts_table_and_the_papers_trend_stated_from_the_numbers(tmp_path: Path):
    work = WorkDir(tmp_path)
    write_json(
        work.evaluation_summary,
        {
            "fire_threshold": 0.5,
            "ngram": 5,
            "layers": {
                "0": layer((0.6, 0.8, 0.7), (0.4, 0.9, 0.5), (0.9, 0.1, 0.2)),
                "1": layer((0.5, 0.7, 0.6), (0.3, 0.8, 0.4), (0.95, 0.2, 0.3)),
            },
        },
    )
    page = fidelity_page(make_env(Config()), work)
    assert page.evaluated and [row.layer for row in page.layers] == [0, 1]
    held = page.datasets[0]
    assert len(held.charts) == 3 and all(str(c).startswith("<svg") for c in held.charts)
    assert "layer 1 0.60" in str(held.charts[2])  # the F1 chart's description carries the numbers
    assert "precision 0.55 is between token lookup by max (0.35) and n-gram (0.93)" in held.trend
    assert "recall 0.75 is between" in held.trend and "F1 0.65 is above both" in held.trend


def test_a_run_without_evaluation_says_so(tmp_path: Path):
    assert not fidelity_page(make_env(Config()), WorkDir(tmp_path)).evaluated
