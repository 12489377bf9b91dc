"""The two baselines N2G is compared with (P1 Table 1), fitted on the same training windows as the graph.

Both predict *normalised* activations (activation / A_max), like a graph.

- :class:`TokenLookup`: each token id predicts the mean (``stat="mean"``) or the maximum (``stat="max"``,
  the original code's ``TokenPredictor``) normalised activation it had over its occurrences in the
  training windows; unseen tokens predict 0. The max variant is recall-oriented (a token that fired once
  is predicted to fire everywhere); the mean variant fires only on tokens that fire on average.
- :class:`NGram`: the exact run of ``n`` tokens ending at a training token whose normalised activation was
  at least the firing threshold predicts the mean normalised activation seen there; anything else
  predicts 0. Precision-oriented. (The original compared the *raw* activation with 0.5, which almost no
  layer-0 neuron reaches; here the normalised one is compared.)

Both ignore the doc-start token: it never fires and never starts an n-gram match. Both predict a whole
dataset at once with ``on`` (sequences laid end to end, n-grams never crossing a sequence start), the same
floats as calling them on each sequence.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .n2g.predict import Sequences

_BASE = np.uint64(1_000_003)


def _ngram_hashes(tokens: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hash (mod 2^64, wrapping) of the n tokens ending at each position, as int64 >= 0;
    positions with fewer than n tokens get -1."""
    tokens = np.asarray(tokens, dtype=np.int64)
    out = np.full(len(tokens), -1, dtype=np.int64)
    if len(tokens) < n:
        return out
    h = np.zeros(len(tokens) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(n):
            h = h * _BASE + (tokens[offset : len(tokens) - n + 1 + offset] + 1).astype(np.uint64)
    out[n - 1 :] = (h >> np.uint64(1)).astype(np.int64)  # drop one bit: non-negative int64
    return out


class TokenLookup:
    """Statistics over the token ids seen in the training windows only, then one vocabulary-sized table."""

    def __init__(
        self, windows: Iterable[tuple[np.ndarray, np.ndarray]], vocab_size: int, skip: int | None, stat: str = "mean"
    ) -> None:
        tokens, norm = [], []
        for t, v in windows:
            t = np.asarray(t, dtype=np.int64)
            keep = (t >= 0) & (t < vocab_size) & (t != (-1 if skip is None else skip))
            tokens.append(t[keep])
            norm.append(np.asarray(v, dtype=np.float64)[keep])
        tokens_all = np.concatenate(tokens) if tokens else np.zeros(0, np.int64)
        norm_all = np.concatenate(norm) if norm else np.zeros(0)
        seen, where = np.unique(tokens_all, return_inverse=True)
        if stat == "max":
            values = np.full(len(seen), -np.inf)
            np.maximum.at(values, where, norm_all)
        else:
            sums = np.zeros(len(seen))
            np.add.at(sums, where, norm_all)  # in window order: the same sums as per token id
            values = sums / np.bincount(where, minlength=len(seen))
        self.table = np.zeros(vocab_size)  # unseen tokens predict 0
        self.table[seen] = values

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64)
        inside = (tokens >= 0) & (tokens < len(self.table))
        return np.where(inside, self.table[np.clip(tokens, 0, len(self.table) - 1)], 0.0)

    def on(self, seqs: Sequences) -> np.ndarray:
        return self(seqs.tokens)


class NGram:
    def __init__(
        self, windows: Iterable[tuple[np.ndarray, np.ndarray]], n: int, threshold: float, skip: int | None
    ) -> None:
        windows = list(windows)
        self._fit(
            Sequences.concat(t for t, _ in windows),
            np.concatenate([np.asarray(v, dtype=np.float64) for _, v in windows]) if windows else np.zeros(0),
            n,
            threshold,
            skip,
        )

    @classmethod
    def of(cls, seqs: Sequences, norm: np.ndarray, n: int, threshold: float, skip: int | None) -> NGram:
        """Fitted on sequences laid end to end, ``norm`` their normalised activations (same as ``NGram``
        of the sequences one by one)."""
        out = cls.__new__(cls)
        out._fit(seqs, np.asarray(norm, dtype=np.float64), n, threshold, skip)
        return out

    def _fit(self, seqs: Sequences, norm: np.ndarray, n: int, threshold: float, skip: int | None) -> None:
        self.n = n
        self.skip = skip
        hashes = self._hashes(seqs)
        values: dict[int, list[float]] = {}
        for t in np.flatnonzero((norm >= threshold) & (hashes >= 0)):
            values.setdefault(int(hashes[t]), []).append(float(norm[t]))
        self.keys = np.array(sorted(values), dtype=np.int64)
        self.values = np.array([np.mean(values[k]) for k in self.keys], dtype=np.float64)

    def _hashes(self, seqs: Sequences) -> np.ndarray:
        hashes = _ngram_hashes(seqs.tokens, self.n)
        hashes[seqs.offset < self.n - 1] = -1  # fewer than n tokens of this sequence end here
        if self.skip is not None:
            hashes[seqs.tokens == self.skip] = -1  # the doc-start token never fires
        return hashes

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        return self.on(Sequences.concat([tokens]))

    def on(self, seqs: Sequences) -> np.ndarray:
        hashes = self._hashes(seqs)
        pred = np.zeros(len(hashes), dtype=np.float64)
        if not len(self.keys):
            return pred
        at = np.clip(np.searchsorted(self.keys, hashes), 0, len(self.keys) - 1)
        hit = (self.keys[at] == hashes) & (hashes >= 0)
        pred[hit] = self.values[at[hit]]
        return pred
