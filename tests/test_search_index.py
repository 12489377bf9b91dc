"""The token-search index: folding, hashing, sharding, ranking data and hostile tokens."""

from __future__ import annotations

import numpy as np
import pytest

from n2g_site.n2g.graph import Graph
from n2g_site.render import search_index as si
from n2g_site.render.search_index import SearchIndex, fnv1a32, read_script, search_key, shard_name, shard_of
from render_fixtures import HOSTILE, small_graph


@pytest.mark.parametrize(
    ("token", "key"),
    [
        (" Paris", "paris"),
        ("Paris", "paris"),
        ("PARIS", "paris"),
        (" paris ", "paris"),
        (" The", "the"),
        (" 1999", "1999"),
        (" <", "<"),
        (" ", " "),
        ("\n", "\n"),
        ("<script>", "<script>"),
        ("É", "é"),
    ],
)
def test_search_key_folds_case_and_spaces(token: str, key: str) -> None:
    assert search_key(token) == key


def test_fnv1a32_reference_values() -> None:
    assert fnv1a32("") == 0x811C9DC5
    assert fnv1a32("a") == 0xE40C292C
    assert fnv1a32("foobar") == 0xBF9CF968


def _graph(nodes: list[tuple[int, int, str, float]]) -> Graph:
    """(parent, depth, token, value) rows -> a graph; value is activation at depth 0, else importance."""
    from n2g_site.n2g.graph import normalise

    rows = []
    for i, (parent, depth, token, value) in enumerate(nodes):
        rows.append(
            {
                "id": i,
                "parent": parent,
                "depth": depth,
                "key": normalise(token) if token else None,
                "token": token,
                "importance": 1.0 if depth == 0 else value,
                "activation": value if depth == 0 else 0.1,
                "end": value,
                "count": 1,
            }
        )
    return Graph.from_json({"schema": "n2g-site/graph/1", "nodes": rows})


def _lookup(folder, key: str) -> dict | None:
    meta = read_script((folder / "tokens.js").read_text())
    shard = read_script((folder / shard_name(shard_of(key, meta["shards"]))).read_text(encoding="utf-8"))
    return shard.get(key)


def test_index_shards_and_finds_every_key(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(si, "TARGET_SHARD_BYTES", 2_000)  # force many shards
    index = SearchIndex()
    for n in range(300):
        index.add_graph(0, n, _graph([(-1, 0, f" word{n % 97}", 0.5 + (n % 5) / 10), (0, 1, " the", 0.8)]))
    meta = index.write(tmp_path)
    assert meta["shards"] >= 8 and meta["shards"] & (meta["shards"] - 1) == 0
    files = sorted(tmp_path.glob("tokens-*.js"))
    assert len(files) == meta["shards"]
    assert max(f.stat().st_size for f in files) == meta["largest_shard_bytes"] < 100_000
    for w in range(97):
        entry = _lookup(tmp_path, search_key(f"Word{w}"))
        assert entry is not None and entry["na"] == len(range(w, 300, 97))
        values = [row[2] for row in entry["a"]]
        assert values == sorted(values, reverse=True)  # strongest first
    the = _lookup(tmp_path, "the")
    assert the["na"] == 0 and the["nc"] == 300 and len(the["c"]) == si.MAX_PER_KEY  # capped, count kept


def test_case_variants_share_a_key_with_their_own_token(tmp_path) -> None:
    index = SearchIndex()
    index.add_graph(2, 5, _graph([(-1, 0, " Paris", 0.9)]))
    index.add_graph(3, 7, _graph([(-1, 0, "PARIS", 0.95)]))
    index.add_graph(4, 1, _graph([(-1, 0, "paris", 0.5)]))
    index.write(tmp_path)
    entry = _lookup(tmp_path, "paris")
    tokens = [entry["t"][row[3]] for row in entry["a"]]
    assert [(row[0], row[1]) for row in entry["a"]] == [(3, 7), (2, 5), (4, 1)]
    assert tokens == ["PARIS", " Paris", "paris"]  # the browser puts the exact spelling first (test_browser)


def test_hostile_tokens_round_trip_as_plain_strings(tmp_path) -> None:
    index = SearchIndex()
    index.add_graph(0, 0, Graph.from_json({"schema": "n2g-site/graph/1", "nodes": small_graph()}))
    index.add_graph(0, 1, _graph([(-1, 0, t, 0.7) for t in HOSTILE if t.strip()][:1]))
    index.write(tmp_path)
    script = _lookup(tmp_path, "<script>alert(1)</script>")
    assert script is not None and script["t"] == ["<script>alert(1)</script>"]
    assert {(r[0], r[1]) for r in script["a"]} == {(0, 0), (0, 1)}
    quote = _lookup(tmp_path, '"')
    assert quote is not None and quote["t"] == ['"'] and quote["c"]  # a context token
    assert _lookup(tmp_path, "\n")["t"] == ["⏎"]  # display form
    assert _lookup(tmp_path, " ")["a"][0][:2] == [0, 0]  # a lone space stays its own key


def test_activating_rows_carry_their_context_keys_for_pattern_queries(tmp_path) -> None:
    """ "fires on X when Y comes before it" = the rows of X whose context keys hold Y (search.md)."""
    index = SearchIndex()
    # L0 N0: ' Paris' after ' in' (and, two before, ' to'); ' London' alone.  L0 N1: ' Paris' alone.
    index.add_graph(
        0, 0, _graph([(-1, 0, " Paris", 0.9), (0, 1, " in", 0.8), (1, 2, " to", 0.6), (-1, 0, " London", 0.7)])
    )
    index.add_graph(0, 1, _graph([(-1, 0, "Paris", 0.95)]))
    index.write(tmp_path)
    paris = {(r[0], r[1]): r[4] for r in _lookup(tmp_path, "paris")["a"]}
    assert paris == {(0, 0): ["in", "to"], (0, 1): []}
    assert {(r[0], r[1]): r[4] for r in _lookup(tmp_path, "london")["a"]} == {(0, 0): []}
    assert [(r[0], r[1]) for r in _lookup(tmp_path, "in")["c"]] == [(0, 0)]  # "in anywhere in the context"


def test_summaries_are_chunked_per_layer(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(si, "INFO_CHUNK", 4)
    index = SearchIndex()
    for n in (0, 3, 4, 9):
        index.add_summary(2, n, f"fires on “ w{n}”", n % 3 + 1, 0.5 if n else None, "beats" if n else None)
    index.write(tmp_path)
    assert read_script((tmp_path / "neurons-L2-0.js").read_text()) == {
        "0": ["fires on “ w0”", 1, None, None],
        "3": ["fires on “ w3”", 1, 0.5, "beats"],
    }
    assert set(read_script((tmp_path / "neurons-L2-2.js").read_text())) == {"9"}
    assert read_script((tmp_path / "tokens.js").read_text())["info_chunk"] == 4
    text = (tmp_path / "neurons-L2-1.js").read_text()
    assert text.startswith('n2gDeliver("token-search/neurons-L2-1",')


def test_example_tokens_are_indexed_apart_from_graph_tokens(tmp_path) -> None:
    """A token the neuron fires on in its windows (>= half its max) is an "e" row unless its graph fires on it."""
    vocab = ["<bos>", " elbow", " Paris", " the", " knee"]
    windows = [(np.array([0, 1, 3, 2]), np.array([0.0, 0.61, 0.2, 0.9])), (np.array([4, 1]), np.array([0.49, 0.8]))]
    graph = [("a", "paris", " Paris", 0.9, ())]
    entries = si.example_entries(windows, 1.0, vocab, graph)
    assert entries == [("e", "elbow", " elbow", 0.8, ())]  # best share; " Paris" is the graph's; " knee" < 0.5
    index = SearchIndex()
    index.add(6, 3, graph + entries)
    index.add_neurons(6, [3, 4, 5, 9])
    meta = index.write(tmp_path)
    shard = read_script((tmp_path / shard_name(shard_of("elbow", meta["shards"]))).read_text())
    assert shard["elbow"]["e"] == [[6, 3, 0.8, 0]] and shard["elbow"]["ne"] == 1 and shard["elbow"]["a"] == []
    assert "e" not in read_script((tmp_path / shard_name(shard_of("paris", meta["shards"]))).read_text())["paris"]
    tokens = read_script((tmp_path / "tokens.js").read_text())
    assert tokens["layers"] == {"6": [[3, 5], [9, 9]]}
    assert tokens["example"] == "Paris"  # the placeholder: a token some graph of this build fires on


def test_no_example_entries_without_a_max() -> None:
    assert si.example_entries([(np.array([1]), np.array([1.0]))], 0.0, ["a", "b"]) == []
