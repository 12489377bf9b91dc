"""The pages show what issue 19 measures: the OOD column where evaluate ran with --ood-corpus, and each
layer mean's F1 interval (render/fidelity.py), and the Method page says which mode built the graphs."""

from pathlib import Path

from n2g_site.config import Config
from n2g_site.render.fidelity import fidelity_page, neuron_fidelity
from n2g_site.render.guide import method_page
from n2g_site.render.jinja_env import make_env
from n2g_site.store import WorkDir, write_json


def scores(f1, interval=None):
    out = {"precision": 0.5, "recall": 0.5, "f1": f1, "correlation": None, "predicted_firing": 3, "tokens": 40}
    out["true_firing"] = 4
    return out | ({"f1_interval": interval} if interval else {})


def per(f1, interval=None):
    return {m: scores(f1, interval) for m in ("n2g", "token_lookup", "token_max", "ngram")}


def summary(with_ood: bool) -> dict:
    layer = {"neurons": 4, "dead": 0, "always_on": 0, "layer_neurons": 64}
    layer |= {"heldout": per(0.7, [0.6, 0.8]), "ordinary": per(0.3, [0.1, 0.45])}
    if with_ood:
        layer["ood"] = per(0.2, [0.05, 0.35])
    return {"fire_threshold": 0.5, "ngram": 5, "layers": {"0": layer}}


def test_fidelity_page_shows_ood_and_intervals(tmp_path: Path):
    env = make_env(Config())
    work = WorkDir(tmp_path)
    write_json(work.evaluation_summary, summary(with_ood=True))
    page = fidelity_page(env, work)
    assert [d.key for d in page.datasets] == ["heldout", "ordinary", "ood"]
    html = env.get_template("fidelity_body.html.j2").render(page=page)
    assert 'id="ood"' in html and "out-of-distribution text" in html
    assert "[0.6, 0.8]" in html and "[0.05, 0.35]" in html
    write_json(work.evaluation_summary, summary(with_ood=False))
    assert [d.key for d in fidelity_page(env, work).datasets] == ["heldout", "ordinary"]


def test_neuron_scores_include_ood():
    data = {"fire_threshold": 0.5, "ngram": 5, "datasets": {"heldout": per(0.7), "ood": per(0.2)}}
    labels = [label for label, *_ in neuron_fidelity(data).datasets]
    assert labels == ["held-out top windows", "out-of-distribution text"]


def test_method_page_says_which_mode_built_the_graphs():
    for paper in (True, False):
        build = {"options": {"fit": {"paper": paper, "calibration_tokens": 16384}}}
        rows = {row.flag: row.value for step in method_page(build, None).steps.values() for row in step.options}
        assert rows["--paper"] == str(paper) and rows["--calibration-tokens"] == "16384"


def test_method_page_text_names_the_mode():
    from n2g_site.render import guide
    from render_fixtures import MANIFEST

    env = make_env(Config())
    for paper, says in ((True, "built with `--paper`"), (False, "the graphs are calibrated")):
        fit = {"config": {**Config().fit_record(), "paper": paper}, "augmenter": "self"}
        build = guide.build_info(MANIFEST, version="9.9", date="2026-01-01", fit=fit, evaluate=None)
        text = env.get_template("method.md.j2").render(page=method_page(build, None), site=None)
        predict = text[text.index("## Predict") : text.index("## Evaluate")]
        assert says in predict and "--calibration-tokens" in predict
