"""The vectorised predictor against hand-built graphs."""

import numpy as np

from n2g_site.n2g.graph import Element, Graph, Line, build_graph
from n2g_site.n2g.predict import KeyIndex, Predictor

TEXT = ["<s>", " a", " b", " c", " d", " x", " A"]
KEYS = KeyIndex(TEXT)


def line(keys, end):
    return Line([Element(k, "" if k is None else k, 1.0, 0.0) for k in keys], end)


def test_exact_then_wildcard_then_longest_wins():
    graph = build_graph(
        [
            line([" b"], 0.6),  # ' b' anywhere -> 0.6 (key is ' b' as we bypass normalise here)
            line([" b", None, " c"], 0.9),  # ' b' with ' c' two back -> 0.9 (longer wins)
        ]
    )
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
    assert again.patterns() == [(["a", None, "c"], 0.9), (["a"], 0.5)] or sorted(map(str, again.patterns())) == sorted(
        map(str, graph.patterns())
    )


# ------------------------------------------------------------------ TriePredictor == Predictor, exactly

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from n2g_site.n2g.graph import Node  # noqa: E402
from n2g_site.n2g.predict import Sequences, TriePredictor  # noqa: E402

# keys collide after normalise (' a', 'a', ' A' -> 'a'), whitespace keys stay apart, '<s>' is a doc start
VOCAB = ["<s>", " a", "a", " A", " b", "b", " c", "c", "\n", " ", "."]
VOCAB_KEYS = KeyIndex(VOCAB)
GRAPH_KEYS = ["a", "b", "c", "\n", " ", ".", "<s>", "zzz", None]  # 'zzz': no token has it; None: ignore
ENDS = [None, None, 0.5, 0.5, 0.25, 0.9, 1.0, 0.7000000000000001, 0.3]  # ties at equal depth happen


@st.composite
def graphs(draw) -> Graph:
    """Random tries as a fitted graph has them, or not quite: sibling nodes with the same key, deep chains
    (parent = the previous node), ignore roots, keys no token has, nodes listed in any order of depth."""
    size = draw(st.integers(0, 40))
    nodes: list[Node] = []
    for i in range(size):
        chain = draw(st.booleans())
        parent = -1 if i == 0 else (i - 1 if chain else draw(st.integers(-1, i - 1)))
        depth = 0 if parent < 0 else nodes[parent].depth + 1
        key = draw(st.sampled_from(GRAPH_KEYS))
        end = draw(st.one_of(st.sampled_from(ENDS), st.floats(0, 2, allow_nan=False, width=64)))
        nodes.append(Node(i, parent, depth, key, key or "", 1.0, 0.5, end, 1))
    return Graph(nodes)


token_ids = st.one_of(st.integers(0, len(VOCAB) - 1), st.sampled_from([-1, len(VOCAB), len(VOCAB) + 7]))
sequence_lists = st.lists(st.lists(token_ids, max_size=30), max_size=6)  # includes [] and length-1 sequences


def _reference(graph: Graph, seqs: list[list[int]]) -> np.ndarray:
    old = Predictor(graph, VOCAB_KEYS)
    return np.concatenate([old(np.array(s, dtype=np.int64)) for s in seqs]) if seqs else np.zeros(0)


@settings(max_examples=400, deadline=None)
@given(graphs(), sequence_lists)
def test_trie_predictor_equals_the_reference_on_random_graphs_and_sequences(graph, seqs):
    want = _reference(graph, seqs)
    got = TriePredictor(graph, VOCAB_KEYS).on(Sequences.concat(seqs))
    assert got.dtype == want.dtype == np.float64
    assert got.tobytes() == want.tobytes(), (got, want)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.sampled_from(GRAPH_KEYS), min_size=1, max_size=8), st.sampled_from([0.5, 0.6, 0.9, 1.0])),
        max_size=12,
    ),
    sequence_lists,
)
def test_trie_predictor_equals_the_reference_on_built_graphs(lines, seqs):
    """Graphs as build_graph makes them (activating tokens never ignore), with repeated tokens in the text."""
    graph = build_graph(
        [line(["a" if d == 0 and k is None else k for d, k in enumerate(keys)], end) for keys, end in lines]
    )
    got = TriePredictor(graph, VOCAB_KEYS).on(Sequences.concat(seqs))
    assert got.tobytes() == _reference(graph, seqs).tobytes()


def test_trie_predictor_stops_at_sequence_starts_and_takes_the_longest_match():
    graph = build_graph([line(["b"], 0.6), line(["b", None, "c"], 0.9), line(["b", "a"], 0.7)])
    # c x | b b | c x b | (empty) | A b: the first ' b' of sequence 1 has ' c' two back only across a boundary
    seqs = Sequences.concat([[3, 5], [2, 2], [3, 5, 2], [], [6, 2]])
    got = TriePredictor(graph, KEYS).on(seqs)
    np.testing.assert_array_equal(got, [0, 0, 0.6, 0.6, 0, 0, 0.9, 0, 0.7])
    assert [s.tolist() for s in seqs.split(got)] == [[0, 0], [0.6, 0.6], [0, 0, 0.9], [], [0, 0.7]]


def test_sequences_from_padded_rows_and_joined():
    rows = np.array([[-1, 4, 5, -1], [-1, -1, -1, -1], [1, 2, 3, 0]])
    seqs = Sequences.padded(rows)
    assert seqs.tokens.tolist() == [4, 5, 1, 2, 3, 0] and seqs.bounds.tolist() == [0, 2, 2, 6]
    assert seqs.offset.tolist() == [0, 1, 0, 1, 2, 3] and seqs.sequence.tolist() == [0, 0, 2, 2, 2, 2]
    both = Sequences.join([seqs, Sequences.concat([[7], []])])
    assert both.tokens.tolist() == [4, 5, 1, 2, 3, 0, 7] and both.bounds.tolist() == [0, 2, 2, 6, 7, 7]
    assert both.count == 5 and len(both) == 7
