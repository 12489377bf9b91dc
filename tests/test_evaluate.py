"""Fidelity metrics and baselines on small hand-checked cases."""

import numpy as np
import pytest

from n2g_site.baselines import NGram, TokenLookup
from n2g_site.evaluate import score, score_predictor


def test_counts_and_ratios_by_hand():
    truth = np.array([1.0, 0.6, 0.5, 0.49, 0.0, 0.0])  # fires at 0, 1, 2 (0.5 counts: >=)
    pred = np.array([0.9, 0.0, 0.7, 0.8, 0.1, 0.5])  # fires at 0, 2, 3, 5
    s = score([(truth, pred)])
    assert (s.tokens, s.true_firing, s.predicted_firing, s.true_positive) == (6, 3, 4, 2)
    assert (s.precision, s.recall, s.f1) == (0.5, round(2 / 3, 4), round(4 / 7, 4))
    assert s.correlation == pytest.approx(np.corrcoef(truth, pred)[0, 1], abs=1e-4)


def test_pooled_over_sequences():
    s = score([(np.array([1.0, 0.0]), np.array([1.0, 0.0])), (np.array([0.0, 1.0]), np.array([1.0, 0.0]))])
    assert (s.true_positive, s.precision, s.recall, s.f1) == (1, 0.5, 0.5, 0.5)


def test_no_firing_anywhere_gives_defined_values_not_division_by_zero():
    s = score([(np.zeros(5), np.zeros(5))])
    assert (s.precision, s.recall, s.f1, s.correlation) == (None, None, None, None)
    # the neuron fires but the graph predicts nothing: recall 0, F1 0, precision undefined
    s = score([(np.array([0.0, 0.9]), np.zeros(2))])
    assert (s.precision, s.recall, s.f1) == (None, 0.0, 0.0)
    # the graph fires on text where the neuron never does: precision 0, recall undefined
    s = score([(np.zeros(2), np.array([0.0, 0.9]))])
    assert (s.precision, s.recall, s.f1) == (0.0, None, 0.0)


def test_nan_truth_and_the_doc_start_token_are_not_scored():
    s = score_predictor(
        lambda t: np.where(t == 0, 1.0, 0.0),
        [(np.array([0, 5, 6]), np.array([9.0, 1.0, 0.0]))],
        a_max=1.0,
        threshold=0.5,
        bos=0,
    )
    assert (s.tokens, s.true_firing, s.predicted_firing) == (2, 1, 0)


def test_token_lookup_predicts_the_mean_or_max_seen_for_each_token():
    windows = [(np.array([0, 3, 4, 3]), np.array([0.9, 1.0, 0.2, 0.4]))]
    lookup = TokenLookup(windows, vocab_size=10, skip=0)
    np.testing.assert_allclose(lookup(np.array([3, 4, 5, 0, -1, 99])), [0.7, 0.2, 0, 0, 0, 0])
    biggest = TokenLookup(windows, vocab_size=10, skip=0, stat="max")  # the original code's TokenPredictor
    np.testing.assert_allclose(biggest(np.array([3, 4, 5, 0])), [1.0, 0.2, 0, 0])


def test_ngram_predicts_only_the_exact_firing_context():
    tokens = np.array([0, 1, 2, 3, 7, 1, 2, 4])
    norm = np.array([0, 0, 0, 0.8, 0, 0, 0, 0.3])  # fires once: 3 after (1, 2)
    ngram = NGram([(tokens, norm)], n=3, threshold=0.5, skip=0)
    pred = ngram(np.array([5, 1, 2, 3, 2, 3, 1, 2, 3]))
    np.testing.assert_allclose(pred, [0, 0, 0, 0.8, 0, 0, 0, 0, 0.8])
    assert not NGram([(tokens, np.zeros(8))], n=3, threshold=0.5, skip=0)(tokens).any()
    # n=1: the token alone, whatever precedes it
    np.testing.assert_allclose(NGram([(tokens, norm)], n=1, threshold=0.5, skip=0)(np.array([3, 9, 3])), [0.8, 0, 0.8])


def test_ngram_never_matches_across_the_doc_start_token():
    tokens = np.array([0, 5])
    ngram = NGram([(tokens, np.array([1.0, 1.0]))], n=1, threshold=0.5, skip=0)
    np.testing.assert_allclose(ngram(np.array([0, 5])), [0.0, 1.0])
