"""Oracles: synthetic neurons with known rules. The fitted graph must have the expected shape and predict
the rule on new text.

Tolerance, everywhere: the prediction fires (>= 0.5) exactly on the tokens where the rule's normalised
activation is >= 0.5, and where it fires its value equals the rule's normalised value within 1e-3 (values
are rounded to 3 decimals, as in the original).
"""

import numpy as np
import pytest

from n2g_site.config import FitConfig
from n2g_site.n2g.phases import fit_neurons
from n2g_site.n2g.predict import KeyIndex, Predictor
from synthetic import (
    ID,
    VOCAB,
    SyntheticSource,
    TableProposer,
    almost_everything,
    encode,
    never,
    paris_after_in,
    paris_after_place_word,
    paris_after_two,
    paris_anywhere,
    task_from_texts,
)

TRAIN = [
    " He lives in Paris and visited London.",
    " She was born in Paris on Monday.",
    " the city in Paris is beautiful.",
    " He went to Paris from London and lives in Paris.",
]
NEW_TEXT = " She went to Paris and lives in Paris near the big city in a Paris at Paris near Paris in London."
KEYS = KeyIndex(VOCAB.text)


def fit_one(rule, texts=TRAIN, proposer=None, **options):
    source = SyntheticSource({(0, 7): rule})
    task = task_from_texts(source, 0, 7, texts)
    [fitted] = fit_neurons([task], source, FitConfig(**options), VOCAB, proposer)
    return fitted, task


def assert_predicts(fitted, task, rule, text=NEW_TEXT):
    tokens = [0] + encode(text)
    truth = np.array([rule(tokens, t) for t in range(len(tokens))]) / task.max_activation
    pred = Predictor(fitted.graph, KEYS)(tokens)
    np.testing.assert_array_equal(pred >= 0.5, truth >= 0.5)
    np.testing.assert_allclose(pred[truth >= 0.5], truth[truth >= 0.5], atol=1e-3)


def test_single_token_trigger():
    fitted, task = fit_one(paris_anywhere)
    assert [k for k, _ in fitted.graph.patterns()] == [["paris"]]
    assert_predicts(fitted, task, paris_anywhere)


def test_token_after_a_specific_context_token():
    fitted, task = fit_one(paris_after_in)
    assert [n.key for n in fitted.graph.activating_tokens] == ["paris"]
    assert [k for k, _ in fitted.graph.patterns()] == [["paris", "in"]]
    assert_predicts(fitted, task, paris_after_in)


def test_token_after_any_of_a_set_is_learned_through_augmentation():
    """Training text only shows ' in Paris'; the proposer offers other words for ' in', and the ones
    that keep the neuron firing (' at', ' near') join the graph; ' on' and ' to' do not."""
    without, task = fit_one(paris_after_place_word)
    assert sorted(k[1] for k, _ in without.graph.patterns()) == ["in"]
    proposer = TableProposer([" at", " near", " on", " to"])
    fitted, task = fit_one(paris_after_place_word, proposer=proposer)
    assert proposer.asked > 0
    assert sorted(k for k, _ in fitted.graph.patterns()) == [["paris", "at"], ["paris", "in"], ["paris", "near"]]
    assert_predicts(fitted, task, paris_after_place_word)
    record = fitted.examples[0]
    assert record["variants"] > 0 and 0 < record["positive_variants"] < record["variants"]
    assert fitted.cost["augment"]["requests"] > 0 and fitted.cost["augment_saliency"]["requests"] > 0


def test_trigger_with_a_skipped_position_in_between():
    texts = [" He lives in a Paris.", " She was in the Paris on Monday.", " born in big Paris and London."]
    fitted, task = fit_one(paris_after_two, texts)
    assert [k for k, _ in fitted.graph.patterns()] == [["paris", None, "in"]]
    ignore = [n for n in fitted.graph.nodes if n.key is None]
    assert len(ignore) == 1 and ignore[0].depth == 1
    assert_predicts(
        fitted, task, paris_after_two, " She went in a Paris and in Paris near in the Paris at big Paris in London."
    )


def test_a_neuron_that_never_fires_has_no_graph():
    fitted, task = fit_one(never)
    assert fitted.dead and fitted.graph.nodes == [] and fitted.examples == []
    assert sum(c["requests"] for c in fitted.cost.values()) == 0  # no forward pass spent on it
    assert not Predictor(fitted.graph, KEYS)([0] + encode(NEW_TEXT)).any()


def test_a_neuron_that_fires_on_almost_everything():
    fitted, task = fit_one(almost_everything, pivot_threshold=0.9)
    patterns = fitted.graph.patterns()
    assert all(len(keys) == 1 for keys, _ in patterns)  # no context: nothing before a token matters
    seen = {VOCAB.keys[t] for ex in task.examples for t in ex.tokens} - {VOCAB.keys[i] for i in (0, 1)} - {".", "\n"}
    assert {keys[0] for keys, _ in patterns} == seen
    # New text made of words the training text contains: everything fires except punctuation.
    assert_predicts(fitted, task, almost_everything, " He lives in Paris and London. She was born on Monday.")


def test_fit_is_independent_of_example_order():
    source = SyntheticSource({(0, 7): paris_after_in})
    one = task_from_texts(source, 0, 7, TRAIN)
    two = task_from_texts(source, 0, 7, TRAIN[::-1])
    graphs = [fit_neurons([t], source, FitConfig(), VOCAB)[0].graph for t in (one, two)]
    assert sorted(map(str, graphs[0].patterns())) == sorted(map(str, graphs[1].patterns()))


@pytest.mark.parametrize("option", ["importance_threshold", "activation_threshold"])
def test_thresholds_are_honoured(option):
    """At threshold 1.0 nothing passes the strict '>' tests: no context, or no line at all."""
    fitted, _ = fit_one(paris_after_in, **{option: 1.0})
    if option == "importance_threshold":
        assert [k for k, _ in fitted.graph.patterns()] == [["paris"]]
    else:
        assert fitted.graph.nodes == []


def lives_in_paris_or_on(tokens, t):
    """' Paris' fires after ' lives in'; ' on' always fires; ' in' after ' lives' is weakly on (0.3, below
    the firing cut), so ' lives' is important for the ' in' column of the base without it firing there."""
    if tokens[t] == ID[" on"]:
        return 1.0
    if tokens[t] == ID[" in"]:
        return 0.3 if t > 0 and tokens[t - 1] == ID[" lives"] else 0.0
    if tokens[t] == ID[" Paris"]:
        return 1.0 if t > 1 and tokens[t - 1] == ID[" in"] and tokens[t - 2] == ID[" lives"] else 0.0
    return 0.0


def test_a_variant_inherits_importance_only_at_columns_that_fired_in_its_base():
    """Replacing ' in' by ' on' makes ' on' fire where the base did not fire: its line is just (' on'), not
    (' on', ' lives') from the base's importances at the ' in' column (the original script's rule). Replacing
    ' Paris' by ' on' fires at the base's firing column, which inherits ' in' and ' lives'."""
    fitted, task = fit_one(lives_in_paris_or_on, [" He lives in Paris."], proposer=TableProposer([" on"]))
    patterns = sorted(k for k, _ in fitted.graph.patterns())
    assert ["on"] in patterns and ["on", "lives"] not in patterns
    assert ["on", "in", "lives"] in patterns and ["paris", "in", "lives"] in patterns


def test_inherited_importance_is_masked_to_the_columns_that_fired():
    from n2g_site.n2g.phases import inherited_importance

    imp = np.array([[1.0, 0.9, 0.9], [0.0, 1.0, 0.9], [0.0, 0.0, 1.0]])
    got = inherited_importance(imp, [2], 0.75)
    np.testing.assert_array_equal(got, [[False, False, True], [False, False, True], [False, False, True]])
    assert not inherited_importance(imp, [], 0.75).any()
