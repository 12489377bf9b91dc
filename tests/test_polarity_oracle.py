"""Oracles for the negative side: synthetic neurons whose negative rule is known. The negative graph, fitted by
the unchanged N2G phases on -activation (``Negated``), must be the rule, predict it on new text, and be
scored by evaluate as firing where activation <= fire_threshold x A_min."""

import numpy as np

from n2g_site.config import FitConfig
from n2g_site.evaluate import score_graph
from n2g_site.n2g.phases import Example, NeuronTask, fit_neurons
from n2g_site.n2g.predict import KeyIndex, Predictor
from n2g_site.n2g.requests import Negated, Request
from synthetic import ID, VOCAB, SyntheticSource, TableProposer, encode

KEYS = KeyIndex(VOCAB.text)
TRAIN = [
    " He went to London from Paris.",
    " She was born in Paris and went to London on Monday.",
    " the city near London is beautiful.",
    " He visited London and lives in Paris.",
]
NEW_TEXT = " She went to London and lives in London near the big city at London to Paris in London."


def signed(tokens, t):
    """Positive side: 1.0 on ' Paris' after ' in'. Negative side: -2.0 on ' London' after ' to', -0.4 on other
    ' London' (below the firing cut, as a gated neuron's weak negative values)."""
    if tokens[t] == ID[" Paris"]:
        return 1.0 if t > 0 and tokens[t - 1] == ID[" in"] else 0.1
    if tokens[t] == ID[" London"]:
        return -2.0 if t > 0 and tokens[t - 1] == ID[" to"] else -0.4
    return 0.0


def london_after_place_word(tokens, t):
    """Negative only: -1.0 on ' London' after ' to', ' near' or ' at'; -0.2 on other ' London'."""
    if tokens[t] != ID[" London"]:
        return 0.0
    return -1.0 if t > 0 and tokens[t - 1] in (ID[" to"], ID[" near"], ID[" at"]) else -0.2


def bottom_task(source, texts, layer=0, neuron=7):
    """The negative side's task as fit.py builds it from bottom windows: acts sign-flipped, pivot the minimum."""
    examples = []
    for rank, text in enumerate(texts):
        tokens = np.array([VOCAB.bos_id] + encode(text), dtype=np.int64)
        acts = -source.activations(layer, neuron, tokens)
        examples.append(Example(tokens=tokens, acts=acts, pivot=int(np.argmax(acts)), rank=rank))
    return NeuronTask(layer, neuron, examples, max_activation=max(float(ex.acts.max()) for ex in examples))


def fit_negative(rule, texts=TRAIN, proposer=None):
    source = SyntheticSource({(0, 7): rule})
    task = bottom_task(source, texts)
    [fitted] = fit_neurons([task], Negated(source), FitConfig(), VOCAB, proposer)
    return fitted, task


def truth_of(rule, tokens, a_min):
    """The negative side's normalised truth: activation / A_min (A_min < 0)."""
    return np.array([rule(tokens, t) for t in range(len(tokens))]) / a_min


def test_negated_source_flips_every_answer():
    source = SyntheticSource({(0, 7): signed})
    tokens = tuple([0] + encode(" to London in Paris"))
    [plain] = source([Request(0, 7, tokens)])
    [flipped] = Negated(source)([Request(0, 7, tokens)])
    np.testing.assert_array_equal(flipped, -plain)
    assert plain.min() == -2.0 and flipped.max() == 2.0


def test_negative_graph_recovers_the_negative_rule_and_not_the_positive_one():
    fitted, task = fit_negative(signed)
    assert task.max_activation == 2.0  # A_min = -2.0
    assert [k for k, _ in fitted.graph.patterns()] == [["london", "to"]]
    assert [n.key for n in fitted.graph.activating_tokens] == ["london"]
    tokens = [0] + encode(NEW_TEXT)
    truth = truth_of(signed, tokens, -task.max_activation)
    pred = Predictor(fitted.graph, KEYS)(tokens)
    np.testing.assert_array_equal(pred >= 0.5, truth >= 0.5)
    np.testing.assert_allclose(pred[truth >= 0.5], truth[truth >= 0.5], atol=1e-3)
    assert not (pred[np.array(tokens) == ID[" Paris"]] > 0).any()  # the positive side is not in it


def test_negative_graph_learns_a_set_through_augmentation():
    proposer = TableProposer([" near", " at", " on", " from"])
    fitted, task = fit_negative(london_after_place_word, proposer=proposer)
    assert sorted(k for k, _ in fitted.graph.patterns()) == [["london", "at"], ["london", "near"], ["london", "to"]]


def test_evaluate_scores_the_negative_graph_where_activation_is_at_most_half_the_minimum():
    """fires = activation <= 0.5 x A_min: on ' London' after ' to' (-2.0), not on other ' London' (-0.4)."""
    fitted, task = fit_negative(signed)
    a_min = -task.max_activation
    tokens = np.array([0] + encode(NEW_TEXT), dtype=np.int64)
    raw = np.array([signed(tokens, t) for t in range(len(tokens))])
    scores = score_graph(fitted.graph, KEYS, [(tokens, -raw)], -a_min, 0.5, VOCAB.bos_id)
    fires = int((raw[1:] <= 0.5 * a_min).sum())
    assert fires == 1 and scores.true_firing == fires
    assert (scores.precision, scores.recall, scores.f1) == (1.0, 1.0, 1.0)
    # A graph of the wrong side scores 0: the positive rule fires where the negative side does not.
    source = SyntheticSource({(0, 7): signed})
    examples = []
    for rank, text in enumerate(TRAIN):
        toks = np.array([0] + encode(text), dtype=np.int64)
        acts = source.activations(0, 7, toks)
        examples.append(Example(toks, acts, int(np.argmax(acts)), rank))
    [positive] = fit_neurons([NeuronTask(0, 7, examples, 1.0)], source, FitConfig(), VOCAB)
    wrong = score_graph(positive.graph, KEYS, [(tokens, -raw)], -a_min, 0.5, VOCAB.bos_id)
    assert wrong.true_positive == 0 and wrong.recall == 0.0


def test_a_neuron_that_never_goes_below_zero_has_a_dead_negative_side():
    fitted, task = fit_negative(lambda tokens, t: 1.0 if tokens[t] == ID[" Paris"] else 0.0)
    assert task.max_activation == 0.0 and fitted.dead and fitted.graph.nodes == []
    assert sum(c["requests"] for c in fitted.cost.values()) == 0
