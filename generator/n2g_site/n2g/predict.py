"""Predict a neuron's per-token activations from its graph.

A graph pattern (a root-to-``end`` path of the trie: activating token, then earlier tokens, ``None`` =
any one token) matches at position t when every key equals the normalised token at t, t-1, ... within the
same sequence. The prediction at t is the ``end`` value of the longest matching pattern (ties: the largest
value), else 0. This is the original's longest-match rule (docs/algorithm.md, "Prediction") with full
backtracking: every pattern is tried, so no ``merge_ignores`` rewrite of the trie is needed and an
exact-match branch never hides an ignore branch.

Two implementations of that one rule:

- :class:`Predictor` (the reference; the playground's JavaScript is tested against it): one sequence at
  a time, one numpy comparison per pattern element over the sequence.
- :class:`TriePredictor` (the evaluate stage): many sequences laid end to end (:class:`Sequences`), the
  trie walked breadth first over all of them at once: level d holds every (node, position) pair whose
  path of d + 1 keys matches backwards from that position, so the cost is a few numpy operations per
  trie level plus the size of the matches, not per pattern and sequence. Its floats are exactly the
  reference's (the same values picked by the same max; tests/test_predict.py checks this on random
  graphs and sequences).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .graph import Graph, normalise

ANY = -2  # code of an ignore element
ABSENT = -1  # code of a token whose key is not in the graph
DEAD = -3  # TriePredictor: a graph node below a key that no token has (it can never match)


class KeyIndex:
    """Token id -> integer id of its normalised key, computed once per vocabulary."""

    def __init__(self, token_text: Sequence[str]) -> None:
        keys = [normalise(t) for t in token_text]
        self.text = token_text  # token id -> raw token string
        self.key_id: dict[str, int] = {}
        self.of_token = np.array([self.key_id.setdefault(k, len(self.key_id)) for k in keys], dtype=np.int64)
        self.names = list(self.key_id)  # key id -> key (the dict keeps insertion order)

    def codes(self, graph_keys: dict[str, int]) -> np.ndarray:
        """Token id -> the graph's code for its key (ABSENT if the graph has no such key)."""
        table = np.full(len(self.key_id) + 1, ABSENT, dtype=np.int64)
        for key, code in graph_keys.items():
            kid = self.key_id.get(key)
            if kid is not None:
                table[kid] = code
        return table[self.of_token]

    def of(self, tokens: np.ndarray) -> np.ndarray:
        """Token ids -> key ids; ABSENT for ids outside the vocabulary."""
        tokens = np.asarray(tokens, dtype=np.int64)
        inside = (tokens >= 0) & (tokens < len(self.of_token))
        if not len(self.of_token):
            return np.full(tokens.shape, ABSENT, dtype=np.int64)
        return np.where(inside, self.of_token[np.where(inside, tokens, 0)], ABSENT)


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


@dataclass(frozen=True)
class Sequences:
    """Token sequences laid end to end: sequence i is ``tokens[bounds[i]:bounds[i + 1]]``."""

    tokens: np.ndarray  # int64 [N]
    bounds: np.ndarray  # int64 [S + 1], bounds[0] == 0, bounds[-1] == N, non-decreasing

    @classmethod
    def concat(cls, sequences: Iterable[Sequence[int] | np.ndarray]) -> Sequences:
        parts = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
        bounds = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in parts], out=bounds[1:])
        return cls(np.concatenate(parts) if parts else np.zeros(0, np.int64), bounds)

    @classmethod
    def padded(cls, tokens: np.ndarray) -> Sequences:
        """Rows of a 2-d array, tokens < 0 (padding) dropped: the same as ``concat`` of each row's
        ``row[row >= 0]``. Take the matching values of a same-shaped array with ``values[tokens >= 0]``."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2:
            raise ValueError(f"Sequences.padded needs a 2-d array of rows, got shape {tokens.shape}")
        keep = tokens >= 0
        bounds = np.zeros(len(tokens) + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=bounds[1:])
        return cls(tokens[keep].astype(np.int64), bounds)

    @classmethod
    def join(cls, parts: Sequence[Sequences]) -> Sequences:
        """All sequences of ``parts``, in order (part i's tokens start at ``sum(len(p) for p in parts[:i])``)."""
        starts = np.cumsum([0] + [len(p) for p in parts])
        bounds = np.concatenate([[0]] + [p.bounds[1:] + start for p, start in zip(parts, starts)])
        tokens = np.concatenate([p.tokens for p in parts]) if parts else np.zeros(0, np.int64)
        return cls(tokens, bounds.astype(np.int64))

    def __len__(self) -> int:
        """Tokens, all sequences together."""
        return len(self.tokens)

    @property
    def count(self) -> int:
        """Sequences."""
        return len(self.bounds) - 1

    @cached_property
    def offset(self) -> np.ndarray:
        """int64 [N]: each token's position in its own sequence."""
        lengths = np.diff(self.bounds)
        return np.arange(len(self.tokens), dtype=np.int64) - np.repeat(self.bounds[:-1], lengths)

    @cached_property
    def sequence(self) -> np.ndarray:
        """int64 [N]: the index of each token's sequence."""
        return np.repeat(np.arange(self.count, dtype=np.int64), np.diff(self.bounds))

    def split(self, values: np.ndarray) -> list[np.ndarray]:
        """Per-token ``values`` cut back into one array per sequence."""
        return [values[a:b] for a, b in zip(self.bounds[:-1], self.bounds[1:])]


class TriePredictor:
    """A graph compiled for :class:`Sequences`: ``predictor.on(seqs)`` equals ``Predictor(graph, keys)`` applied
    to each sequence, concatenated.

    The graph's patterns are first re-inserted into a trie of key ids (so siblings with the same key, which
    a hand-made graph may have, become one node whose ``end`` is their max: the same longest-then-largest
    pick; a key no vocabulary token has drops its subtree, which can never match). Then level by level:
    the (node, position) pairs of depth d whose node ends a pattern set the prediction at those positions
    (resetting any shallower pick, since longer wins; equal depths take the max), and each pair steps to
    the children of its node keyed by the token d + 1 before its position, and to its ignore child.
    """

    def __init__(self, graph: Graph, keys: KeyIndex) -> None:
        self.keys = keys
        width = len(keys.key_id) + 1  # child lookup key: parent * width + key id (key ids < width - 1)
        parent: list[int] = []
        code: list[int] = []
        end: list[float | None] = []
        canon: dict[tuple[int, int], int] = {}  # (parent, key id or ANY) -> node of the new trie
        mapped: dict[int, int] = {-1: -1}  # graph node index -> new node, DEAD below a key no token has
        for i in range(len(graph.nodes)):
            chain = []  # i and its ancestors not mapped yet, nearest first (nodes are usually parents first)
            while i not in mapped:
                chain.append(i)
                i = graph.nodes[i].parent
            for j in reversed(chain):
                node = graph.nodes[j]
                up = mapped[node.parent]
                c = ANY if node.key is None else keys.key_id.get(node.key, ABSENT)
                if up == DEAD or c == ABSENT:
                    mapped[j] = DEAD
                    continue
                child = canon.get((up, c))
                if child is None:
                    child = canon[(up, c)] = len(parent)
                    parent.append(up)
                    code.append(c)
                    end.append(None)
                mapped[j] = child
                if node.end is not None:
                    old, value = end[child], float(node.end)
                    end[child] = value if old is None else float(np.maximum(old, value))
        self.n_nodes = len(parent)
        self.has_end = np.array([e is not None for e in end], dtype=bool)
        self.end = np.array([0.0 if e is None else e for e in end], dtype=np.float64)
        parents, codes = np.array(parent, dtype=np.int64), np.array(code, dtype=np.int64)
        exact = codes != ANY
        link = parents[exact] * width + codes[exact]  # roots: parent -1 -> negative links, kept apart below
        order = np.argsort(link, kind="stable")
        self._link, self._child = link[order], np.flatnonzero(exact)[order]
        self._width = width
        self.any_child = np.full(self.n_nodes + 1, -1, dtype=np.int64)  # index n_nodes: the virtual root
        self.any_child[np.where(parents[~exact] < 0, self.n_nodes, parents[~exact])] = np.flatnonzero(~exact)
        has_child = np.zeros(self.n_nodes + 1, dtype=bool)
        has_child[np.where(parents < 0, self.n_nodes, parents)] = True
        self.has_child = has_child

    def _step(self, nodes: np.ndarray, codes: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(node, position) pairs -> their children matching the code at each pair (exact keys, then ignore)."""
        link = np.where(nodes == self.n_nodes, -1, nodes) * self._width + codes
        at = np.minimum(np.searchsorted(self._link, link), len(self._link) - 1)
        hit = (codes >= 0) & (self._link[at] == link) if len(self._link) else np.zeros(len(nodes), bool)
        wild = self.any_child[nodes]
        has_wild = wild >= 0
        return (np.concatenate([self._child[at[hit]], wild[has_wild]]), np.concatenate([pos[hit], pos[has_wild]]))

    def on(self, seqs: Sequences) -> np.ndarray:
        """float64 [len(seqs)]: the prediction at every token of every sequence."""
        n = len(seqs)
        pred = np.zeros(n, dtype=np.float64)
        if n == 0 or not self.has_end.any():
            return pred
        codes = self.keys.of(seqs.tokens)
        offset = seqs.offset
        pos = np.arange(n, dtype=np.int64)
        nodes, pos = self._step(np.full(n, self.n_nodes, dtype=np.int64), codes, pos)
        depth = 0
        while len(nodes):
            ends = self.has_end[nodes]
            if ends.any():
                where = pos[ends]
                pred[where] = -np.inf  # longer wins: forget the shallower pick
                np.maximum.at(pred, where, self.end[nodes[ends]])
            depth += 1
            go = self.has_child[nodes] & (offset[pos] >= depth)
            nodes, pos = nodes[go], pos[go]
            if not len(nodes):
                break
            nodes, pos = self._step(nodes, codes[pos - depth], pos)
        return pred
