"""Bootstrap intervals of per-layer means, on cases whose answer is known by hand."""

import math

import numpy as np
import pytest

from n2g_site.intervals import bootstrap_mean_interval


def test_constant_values_and_a_single_neuron_have_no_spread():
    assert bootstrap_mean_interval([0.3] * 7) == (0.3, 0.3)
    assert bootstrap_mean_interval([0.8]) == (0.8, 0.8)


def test_undefined_values_are_left_out_and_none_defined_gives_none():
    assert bootstrap_mean_interval([None, float("nan")]) is None
    assert bootstrap_mean_interval([]) is None
    assert bootstrap_mean_interval([None, 0.2, float("nan"), 0.2]) == (0.2, 0.2)


def test_two_neurons_zero_and_one():
    """Resample means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: with 1000 resamples the 2.5% and
    97.5% quantiles are 0 and 1 (each tail holds ~250 resamples, far more than 25)."""
    assert bootstrap_mean_interval([0.0, 1.0]) == (0.0, 1.0)


def test_many_neurons_match_the_normal_approximation():
    """100 neurons, half 0 and half 1: the mean is 0.5 with standard error sqrt(0.25 / 100) = 0.05, so the
    interval is about 0.5 +- 1.96 * 0.05 = [0.402, 0.598]."""
    lo, hi = bootstrap_mean_interval([0.0, 1.0] * 50, resamples=4000)
    half = 1.96 * math.sqrt(0.25 / 100)
    assert lo == pytest.approx(0.5 - half, abs=0.015) and hi == pytest.approx(0.5 + half, abs=0.015)


def test_seeded_deterministic_and_chunking_does_not_change_the_draws(monkeypatch):
    values = list(np.linspace(0, 1, 37) ** 2)
    first = bootstrap_mean_interval(values)
    assert bootstrap_mean_interval(values) == first
    assert bootstrap_mean_interval(values, seed=1) != first
    import n2g_site.intervals as intervals

    monkeypatch.setattr(intervals, "CHUNK", 37 * 3)  # 3 resamples a draw instead of all at once
    # a different chunking draws the same integers in the same order (one stream), so the same interval
    assert bootstrap_mean_interval(values) == first
    lo, hi = first
    assert lo < float(np.mean(values)) < hi


def test_bad_level_is_refused():
    with pytest.raises(ValueError, match="level 95"):
        bootstrap_mean_interval([0.1], level=95)


def test_evaluate_summary_carries_the_intervals_of_its_means():
    from n2g_site.evaluate import _method_summary

    rows = [
        {"precision": 1.0, "recall": 0.0, "f1": 0.0, "correlation": None, "variance_explained": -1.0},
        {"precision": None, "recall": 1.0, "f1": 1.0, "correlation": 0.5, "variance_explained": 0.5},
    ]
    out = _method_summary(rows)
    assert out["f1"] == 0.5 and out["f1_interval"] == [0.0, 1.0] and out["f1_neurons"] == 2
    assert out["precision_interval"] == [1.0, 1.0] and out["precision_neurons"] == 1
    assert out["correlation"] == 0.5 and out["variance_explained"] == -0.25


def test_variance_explained_is_the_originals_one_minus_mse_over_variance():
    from n2g_site.evaluate import score_flat

    truth = np.array([0.0, 1.0, 0.0, 1.0])
    exact, mean, shifted = score_flat(truth, [truth.copy(), np.full(4, 0.5), truth + 0.5])
    assert exact.variance_explained == 1.0 and exact.correlation == 1.0
    assert mean.variance_explained == 0.0 and mean.correlation is None
    # MSE 0.25, Var 0.25: 0 explained, while Pearson says the shifted prediction is perfect
    assert shifted.variance_explained == 0.0 and shifted.correlation == 1.0
    assert score_flat(np.zeros(3), [np.ones(3)])[0].variance_explained is None  # truth does not vary
