"""The score badge (render/verdict.py): beats its baselines, no better than one, cannot be scored, not compared."""

from __future__ import annotations

from n2g_site.render.verdict import from_evaluation, from_fit, verdict


def _evaluated(n2g: float | None, firing: int = 5, **baselines: float | None) -> dict:
    methods = {"n2g": {"f1": n2g, "true_firing": firing}}
    methods |= {name: {"f1": f1, "true_firing": firing} for name, f1 in baselines.items()}
    return {"datasets": {"heldout": methods, "ordinary": {"n2g": {"f1": 1.0, "true_firing": 9}}}}


def test_beats_only_above_every_scored_baseline() -> None:
    v = from_evaluation(_evaluated(0.62, token_lookup=0.5, token_max=0.4, ngram=None))
    assert v.state == "beats" and v.baseline == "token lookup" and v.baseline_f1 == 0.5
    assert from_evaluation(_evaluated(0.62, token_lookup=0.67, ngram=0.1)).state == "loses"  # the example
    tie = from_evaluation(_evaluated(0.47, token_lookup=0.47))
    assert tie.state == "loses" and tie.label == "no better than a baseline"
    assert tie.why == "held-out F1 0.47, token lookup 0.47"


def test_no_firing_held_out_token_cannot_be_scored() -> None:
    assert from_evaluation(_evaluated(None, firing=0, token_lookup=None)).state == "none"
    assert from_evaluation(_evaluated(0.0, firing=0, token_lookup=0.0)).state == "none"


def test_without_evaluate_the_fits_check_decides_what_it_can() -> None:
    assert from_evaluation(None) is None and from_evaluation({"datasets": {}}) is None
    assert from_fit({"f1": 0.0, "true_firing": 4}).state == "loses"  # no baseline scores below 0
    assert from_fit({"f1": 0.7, "true_firing": 4}).state == "unrated"
    assert from_fit({"f1": None, "true_firing": 0}).state == "none"
    assert from_fit(None) is None
    assert verdict("fitted", None, {"f1": 0.7, "true_firing": 4}).state == "unrated"
    assert verdict("fitted", _evaluated(0.9, token_lookup=0.1), {"f1": 0.0, "true_firing": 4}).state == "beats"


def test_dead_and_unfitted_neurons_get_no_badge() -> None:
    assert verdict("dead", _evaluated(0.9, token_lookup=0.1), None) is None
    assert verdict("unfitted", None, None) is None
