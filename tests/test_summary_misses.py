"""One-line graph summaries, trigger groups (polysemanticity signal) and the misses the evaluate stage keeps."""

from __future__ import annotations

import numpy as np

from n2g_site.evaluate import find_misses
from n2g_site.n2g.graph import Graph, Node, normalise
from n2g_site.render.summary import describe


def _graph(rows: list[tuple[int, str, float | None, float]]) -> Graph:
    """(parent, token or "" for ignore, end, importance) rows, parents first."""
    nodes: list[Node] = []
    for i, (parent, token, end, importance) in enumerate(rows):
        depth = 0 if parent < 0 else nodes[parent].depth + 1
        nodes.append(
            Node(
                i,
                parent,
                depth,
                normalise(token) if token else None,
                token,
                importance,
                0.9 if depth == 0 else 0.0,
                end,
                1,
            )
        )
    return Graph(nodes)


def test_single_token_graph() -> None:
    shape = describe(_graph([(-1, " Paris", 0.9, 1.0)]))
    assert shape.summary == "fires on “ Paris”" and shape.groups == 1


def test_context_right_before_and_further_back() -> None:
    g = _graph([(-1, " Paris", None, 1.0), (0, " in", 0.95, 0.9), (0, "", None, 0.1), (2, " to", 0.7, 0.8)])
    assert describe(g).summary == "fires on “ Paris” after “ in” or “ to” ‹any›"


def test_a_pattern_needing_several_tokens_says_so_and_never_names_a_non_pattern() -> None:
    # One pattern ' to' ' in' ' Paris' (all needed): not "in or to".
    g = _graph([(-1, " Paris", None, 1.0), (0, " in", None, 0.9), (1, " to", 0.9, 0.8)])
    assert describe(g).summary == "fires on “ Paris” after “ to” “ in”"
    # a <- b (enough) and a <- c <- b: ' c' alone never fires, so it is only named with ' b'.
    g = _graph([(-1, " a", None, 1.0), (0, " b", 0.9, 0.9), (0, " c", None, 0.5), (2, " b", 0.8, 0.9)])
    assert describe(g).summary == "fires on “ a” after “ b” or “ b” “ c”"


def test_strongest_trigger_first_and_the_rest_counted() -> None:
    g = _graph(
        [(-1, " a", 0.6, 1.0), (-1, " b", 0.9, 1.0), (-1, " c", 0.7, 1.0), (-1, " d", 0.8, 1.0), (-1, " e", 0.55, 1.0)]
    )
    assert describe(g).summary == "fires on “ b”; “ d”; “ c” (+2 more tokens)"


def test_triggers_sharing_a_context_token_are_one_group() -> None:
    # ' Paris' and ' London' both after ' in': one idea ("a city after in").
    g = _graph([(-1, " Paris", None, 1.0), (0, " in", 0.9, 0.9), (-1, " London", None, 1.0), (2, " in", 0.8, 0.9)])
    assert describe(g).groups == 1


def test_unrelated_triggers_count_separately_but_digits_are_one_kind() -> None:
    g = _graph(
        [
            (-1, " except", 0.9, 1.0),
            (-1, " Paris", None, 1.0),
            (1, " in", 0.8, 0.9),
            (-1, "1", 0.7, 1.0),
            (-1, "7", 0.7, 1.0),
            (-1, " 42", 0.6, 1.0),
            (-1, ",", 0.6, 1.0),
        ]
    )
    # except | Paris-after-in | digits (1, 7, 42) | punctuation
    assert describe(g).groups == 4


def test_symbols_are_not_punctuation() -> None:
    assert describe(_graph([(-1, ",", 0.9, 1.0), (-1, ".", 0.8, 1.0)])).groups == 1
    assert describe(_graph([(-1, ",", 0.9, 1.0), (-1, "😀", 0.8, 1.0), (-1, "$", 0.7, 1.0)])).groups == 2


def test_empty_graph() -> None:
    assert describe(Graph([])) == describe(Graph([])) and describe(Graph([])).groups == 0


def test_hostile_tokens_stay_plain_text_in_the_summary() -> None:
    shape = describe(_graph([(-1, "<script>", 0.9, 1.0), (0, "\n", 0.9, 0.9)]))
    assert shape.summary == "fires on “<script>”"  # alone wins: the token fires by itself
    assert "⏎" in describe(_graph([(-1, "<b>", None, 1.0), (0, "\n", 0.9, 0.9)])).summary


# --------------------------------------------------------------------------------------------- misses


def _predict_on(token: int):
    return lambda tokens: np.where(np.asarray(tokens) == token, 0.9, 0.0)


def test_misses_find_false_positives_and_negatives_with_their_context() -> None:
    # The "graph" fires on token 5; the neuron fires on token 7 and on the second 5 only.
    tokens = np.array([0, 1, 5, 2, 3, 5, 4, 7, 1])
    acts = np.array([0.0, 0.0, 0.1, 0.0, 0.0, 2.0, 0.0, 1.6, 0.0])  # a_max = 2
    misses = find_misses(_predict_on(5), {"heldout": [(tokens, acts)]}, a_max=2.0, threshold=0.5, bos=0)
    (fp,), (fn,) = misses["false_positive"], misses["false_negative"]
    assert fp["position"] == 2 and fp["tokens"][fp["position"] - fp["start"]] == 5
    assert fp["predicted"][2] == 0.9 and fp["truth"][2] == 0.05
    assert fn["position"] == 7 and fn["truth"][7 - fn["start"]] == 0.8 and fn["predicted"][7 - fn["start"]] == 0.0
    assert fp["truth"][0] is None  # the doc-start token is not scored


def test_misses_keep_the_largest_gaps_one_per_sequence() -> None:
    seqs = [
        (np.array([5, 5, 1]), np.array([0.0, 0.0, 0.0])),  # two FPs: one snippet
        (np.array([1, 5]), np.array([0.0, 0.9])),  # FP gap 0.9 - 0.45 = 0.45
        (np.array([5]), np.array([0.2])),
    ]  # FP gap 0.8
    misses = find_misses(_predict_on(5), {"ordinary": seqs}, a_max=2.0, threshold=0.5, bos=None, limit=2)
    assert [m["sequence"] for m in misses["false_positive"]] == [0, 2]
    assert misses["false_negative"] == []


def test_a_perfect_graph_has_no_misses() -> None:
    tokens = np.array([1, 5, 2])
    misses = find_misses(_predict_on(5), {"heldout": [(tokens, np.array([0.0, 1.8, 0.0]))]}, 2.0, 0.5, None)
    assert misses == {"false_positive": [], "false_negative": []}


def test_a_passage_in_both_datasets_is_shown_once() -> None:
    tokens = np.array([1, 2, 3, 6, 5, 4])
    acts = np.zeros(6)
    same = {"heldout": [(tokens, acts)], "ordinary": [(np.concatenate([[9, 9], tokens]), np.zeros(8))]}
    misses = find_misses(_predict_on(5), same, a_max=1.0, threshold=0.5, bos=None)
    assert [m["dataset"] for m in misses["false_positive"]] == ["heldout"]


def test_misses_view_marks_the_missed_token_and_keeps_the_threshold() -> None:
    from n2g_site.render.misses import misses_view

    evaluated = {
        "fire_threshold": 0.4,
        "misses": {
            "false_positive": [
                {
                    "dataset": "heldout",
                    "sequence": 0,
                    "position": 5,
                    "start": 3,
                    "tokens": [1, 2, 3],
                    "truth": [None, 0.1, 0.9],
                    "predicted": [0.0, 0.8, 0.9],
                }
            ],
            "false_negative": [],
        },
    }
    view = misses_view(evaluated, ["a", "<b>", "c", "d"])
    (miss,) = view.false_positive
    assert view.threshold == 0.4 and [t.missed for t in miss.tokens] == [False, False, True]
    assert miss.tokens[0].text == "<b>" and miss.tokens[0].truth is None and miss.tokens[2].level == 9
    assert (miss.truth, miss.predicted) == (0.9, 0.9)
    assert misses_view(None, []) is None and misses_view({"datasets": {}}, []) is None


def test_the_one_line_is_capped_and_a_sentence_pattern_elided() -> None:
    """A context of a whole sentence (the demo's L17/N2 had one) is cut to its nearest tokens; long tokens
    are cut; the line stays within MAX_SUMMARY_CHARS; the full list has every activating token."""
    from n2g_site.render import summary as sm

    words = [" the", " Prime", " Minister", " of", " a", " very", " long", " sentence", " copied", " whole"]
    rows: list[tuple[int, str, float | None, float]] = [(-1, " Israel", None, 1.0)]
    for i, w in enumerate(words):
        rows.append((i, w, 0.9 if i == len(words) - 1 else None, 0.9))
    for k in range(12):
        rows.append((-1, " token" + "x" * 40 + str(k), 0.8 - k / 100, 1.0))
    shape = describe(_graph(rows))
    assert len(shape.summary) <= sm.MAX_SUMMARY_CHARS
    # nearest 3 tokens, in reading order (depth 1, " the", sits right before " Israel")
    assert shape.summary.startswith("fires on “ Israel” after … “ Minister” “ Prime” “ the”; “ tokenxxxxxxxxx…”")
    assert "“ sentence”" not in shape.summary and "…" in shape.summary  # elided to its nearest tokens
    assert shape.summary.endswith("more tokens)")
    assert len(shape.triggers) == sm.MAX_LISTED and shape.more == 13 - sm.MAX_LISTED
    assert shape.named == 3  # the page lists triggers[3:] a click away
    assert all(len(t) < 200 for t in shape.triggers)


def test_the_same_held_out_passage_is_listed_once() -> None:
    from n2g_site.render.misses import misses_view

    miss = {"dataset": "heldout", "position": 6, "start": 0, "tokens": [1, 2, 3, 4, 5, 6, 7, 8]}
    miss |= {"truth": [0.0] * 8, "predicted": [0.9] * 8}
    # the same passage, its snippet starting one token earlier (from the ordinary text)
    shifted = dict(miss, position=7, start=0, dataset="ordinary", tokens=[0, *miss["tokens"]])
    shifted |= {"truth": [0.0] * 9, "predicted": [0.9] * 9}
    other = dict(miss, tokens=[9, 9, 9, 9, 9, 9, 9, 9])
    view = misses_view({"misses": {"false_positive": [miss, shifted, other], "false_negative": []}}, ["t"] * 10)
    assert len(view.false_positive) == 2
