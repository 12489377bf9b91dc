"""The fitted graph of a synthetic neuron with a known rule predicts that rule on new text."""

import numpy as np

from n2g_site.config import FitConfig
from n2g_site.n2g.fit import fit_neurons
from n2g_site.n2g.predict import KeyIndex, Predictor

from synthetic import VOCAB, SyntheticSource, encode, paris_after_in, task_from_texts

TRAIN = [
    " He lives in Paris and visited London.",
    " She was born in Paris on Monday.",
    " the city in Paris is beautiful.",
    " He went to Paris from London and lives in Paris.",
]


def test_paris_after_in_is_recovered():
    source = SyntheticSource({(0, 7): paris_after_in})
    task = task_from_texts(source, 0, 7, TRAIN)
    [fitted] = fit_neurons([task], source, FitConfig(), VOCAB)
    roots = [n.key for n in fitted.graph.activating_tokens]
    assert roots == ["paris"]
    assert [k for k, _ in fitted.graph.patterns()] == [["paris", "in"]]
    predict = Predictor(fitted.graph, KeyIndex(VOCAB.text))
    new = [0] + encode(" She went to Paris and lives in Paris near the big city in London.")
    truth = np.array([paris_after_in(new, t) for t in range(len(new))])
    pred = predict(new)
    # Exact on firing: predicted value >= 0.5 exactly where the rule gives 1.0, and the value itself is 1.0.
    np.testing.assert_array_equal(pred >= 0.5, truth >= 0.5)
    np.testing.assert_allclose(pred[truth >= 0.5], 1.0, atol=1e-3)
