"""Predict a neuron's per-token activations from its graph, vectorised over whole sequences.

A graph pattern (a root-to-``end`` path of the trie: activating token, then earlier tokens, ``None`` =
any one token) matches at position t when every key equals the normalised token at t, t-1, ... The
prediction at t is the ``end`` value of the longest matching pattern (ties: the largest value), else 0.
This is the original's longest-match rule (docs/algorithm.md, "Prediction") with full backtracking: every pattern
is tried, so no ``merge_ignores`` rewrite of the trie is needed and an exact-match branch never hides an
ignore branch. Cost: one numpy comparison per pattern element over the whole sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .graph import Graph, normalise

ANY = -2  # code of an ignore element
ABSENT = -1  # code of a token whose key is not in the graph


class KeyIndex:
    """Token id -> integer id of its normalised key, computed once per vocabulary."""

    def __init__(self, token_text: Sequence[str]) -> None:
        keys = [normalise(t) for t in token_text]
        self.key_id: dict[str, int] = {}
        self.of_token = np.array([self.key_id.setdefault(k, len(self.key_id)) for k in keys], dtype=np.int64)

    def codes(self, graph_keys: dict[str, int]) -> np.ndarray:
        """Token id -> the graph's code for its key (ABSENT if the graph has no such key)."""
        table = np.full(len(self.key_id) + 1, ABSENT, dtype=np.int64)
        for key, code in graph_keys.items():
            kid = self.key_id.get(key)
            if kid is not None:
                table[kid] = code
        return table[self.of_token]


class Predictor:
    """A compiled graph: ``predictor(tokens)`` gives the predicted normalised activation at each token."""

    def __init__(self, graph: Graph, keys: KeyIndex) -> None:
        graph_keys: dict[str, int] = {}
        self.patterns: list[tuple[np.ndarray, float]] = []
        for pattern, value in graph.patterns():
            codes = [ANY if k is None else graph_keys.setdefault(k, len(graph_keys)) for k in pattern]
            self.patterns.append((np.array(codes, dtype=np.int64), float(value)))
        self.patterns.sort(key=lambda p: len(p[0]))
        self.token_code = keys.codes(graph_keys)

    def __call__(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64)
        n = len(tokens)
        pred = np.zeros(n, dtype=np.float64)
        best = np.full(n, -1, dtype=np.int64)
        if n == 0 or not self.patterns:
            return pred
        code = self.token_code[np.clip(tokens, 0, len(self.token_code) - 1)]
        code[(tokens < 0) | (tokens >= len(self.token_code))] = ABSENT
        for pattern, value in self.patterns:
            depth = len(pattern) - 1
            if depth >= n:
                continue
            hit = np.ones(n - depth, dtype=bool)
            for back, c in enumerate(pattern):
                if c != ANY:
                    hit &= code[depth - back : n - back] == c
            where = np.flatnonzero(hit) + depth
            if where.size == 0:
                continue
            longer = depth > best[where]
            pred[where] = np.where(longer, value, np.maximum(pred[where], value))
            best[where] = depth
        return pred
