"""The vectorised predictor against hand-built graphs."""

import numpy as np

from n2g_site.n2g.graph import Element, Graph, Line, build_graph
from n2g_site.n2g.predict import KeyIndex, Predictor

TEXT = ["<s>", " a", " b", " c", " d", " x", " A"]
KEYS = KeyIndex(TEXT)


def line(keys, end):
    return Line([Element(k, "" if k is None else k, 1.0, 0.0) for k in keys], end)


def test_exact_then_wildcard_then_longest_wins():
    graph = build_graph([
        line([" b"], 0.6),                  # ' b' anywhere -> 0.6 (key is ' b' as we bypass normalise here)
        line([" b", None, " c"], 0.9),      # ' b' with ' c' two back -> 0.9 (longer wins)
    ])
    # keys in the KeyIndex are normalised ('b', 'c', ...); the hand-built graph uses the same normalised keys:
    graph = build_graph([line(["b"], 0.6), line(["b", None, "c"], 0.9)])
    predict = Predictor(graph, KEYS)
    tokens = [0, 3, 5, 2, 2, 1, 2]  # <s> c x b b a b
    np.testing.assert_allclose(predict(tokens), [0, 0, 0, 0.9, 0.6, 0, 0.6])


def test_ties_at_equal_length_take_the_max_and_case_folds():
    graph = build_graph([line(["a", "b"], 0.7), line(["a", None], 0.8)])
    predict = Predictor(graph, KEYS)
    # ' A' is title-case -> key 'a'; both patterns have length 2 and match after ' b'.
    np.testing.assert_allclose(predict([2, 6, 1]), [0, 0.8, 0.8])


def test_empty_graph_and_empty_input():
    assert Predictor(Graph(), KEYS)([1, 2, 3]).tolist() == [0, 0, 0]
    assert Predictor(build_graph([line(["a"], 1.0)]), KEYS)([]).size == 0


def test_graph_json_round_trip_and_validation():
    graph = build_graph([line(["a", None, "c"], 0.9), line(["a"], 0.5)])
    again = Graph.from_json(graph.to_json())
    assert again == graph
    assert again.patterns() == [(["a", None, "c"], 0.9), (["a"], 0.5)] or sorted(map(str, again.patterns())) == sorted(map(str, graph.patterns()))
