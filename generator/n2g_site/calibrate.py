"""Calibration (beyond the paper; off with ``--paper``): drop the patterns of a graph that fire where the
neuron does not, judged on training-side text only.

A graph fitted on ten top windows has never seen text where its neuron is quiet, so a pattern such as
``[[,]]`` predicts firing at every comma. Calibration measures, for each pattern, on ordinary text of the
*training* split (``--calibration-tokens``, a model pass kept sparse in ``calibrate/`` like evaluate's
passes, ood.py) and on the neuron's training windows:

- ``wins``: the tokens where it is the pattern the prediction comes from (the longest match, ties: the
  largest value; predict.py), doc-start tokens not counted;
- ``fires``: how many of them truly fire (normalised activation >= ``--fire-threshold``), so
  ``precision = fires / wins``;
- ``mean``: the mean true normalised activation there (activations under ood.SPARSE_FLOOR of A_max read
  as 0, as in evaluate's passes).

A pattern with at least :data:`MIN_WINS` wins whose precision is below the neuron's threshold ``p`` is
*dropped*: it predicts its measured mean activation, capped just under the firing threshold, so it no
longer predicts firing (and still shadows shorter patterns, so nothing else starts firing there). Patterns
with less evidence keep their value.

``p`` is chosen per neuron from :data:`PRECISION_GRID` on a validation split carved from the training
side, never on a test set: the calibration rows alternate between a statistics half (even rows) and a
validation half (odd rows). Statistics from the statistics half and the training windows; each ``p``
scored by the mean of the F1 on the validation half and the F1 on the training windows (the second guards
the top windows the graph explains); the best wins, ties go to the smaller ``p`` (the least change; 0
keeps the paper's graph). The final statistics then use all calibration rows and the windows.

Token patterns (``--token-patterns``, before the judging above). A graph's patterns come from each training
window's peak and the context pruning kept for it; a token that fires wherever it appears in the windows but
was never a peak has no pattern, while the token lookup (baselines.py), which learns from every position of
the same windows, predicts it. So each normalised token key whose mean normalised activation over its
occurrences in the training windows (doc-start tokens left out) reaches the firing threshold, over at least
``--token-patterns`` occurrences, gets a one-token pattern predicting that mean: a new activating token
(appended to the trie as a root) or, where the key is already an activating token that no line stops at (it
fires only in the contexts pruning kept), an ``end`` on that root. Patterns the graph already has keep their
value. The added patterns are then judged like the others, so one that over-fires on the calibration text is
dropped. The record lists them, so :func:`paper_graph` removes them again.

Torch-free: the model pass is ood.py's; this module works on token ids and activations.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .n2g.graph import Graph, Node
from .n2g.predict import ABSENT, KeyIndex, Sequences

PRECISION_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)  # candidate per-neuron thresholds p
MIN_WINS = 2  # a pattern needs this many wins on the calibration text to be judged at all
# fit options that change only this step (fit reuses the fit)
OPTIONS = ("paper", "calibration_tokens", "token_patterns")


@dataclass(frozen=True)
class Text:
    """Sequences laid end to end and their true normalised activations (NaN: not scored)."""

    seqs: Sequences
    truth: np.ndarray  # float64 [len(seqs)]

    @classmethod
    def of(cls, seqs: Sequences, acts: np.ndarray, a_max: float, bos: int | None) -> Text:
        truth = np.asarray(acts, dtype=np.float64) / a_max
        if bos is not None:
            truth = np.where(seqs.tokens == bos, np.nan, truth)
        return cls(seqs, truth)

    @classmethod
    def join(cls, parts: Sequence[Text]) -> Text:
        seqs = Sequences.join([p.seqs for p in parts])
        truth = np.concatenate([p.truth for p in parts]) if parts else np.zeros(0)
        return cls(seqs, truth)

    def rows(self, which: Sequence[int] | np.ndarray) -> Text:
        """The sequences ``which`` (in that order) of this text."""
        b = self.seqs.bounds
        parts = [np.arange(b[i], b[i + 1]) for i in which]
        at = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return Text(Sequences.concat(self.seqs.tokens[p] for p in parts), self.truth[at])


@dataclass(frozen=True)
class Matches:
    """Where a graph's patterns decide the prediction on a text: every (position, node) pair whose pattern
    matches at the position with the greatest depth matched there (the prediction is the largest ``end``
    among them), and each position's winner under the graph's own values (-1: no pattern matches)."""

    positions: np.ndarray  # int64 [M]
    nodes: np.ndarray  # int64 [M]
    winner: np.ndarray  # int64 [N]

    def predict(self, ends: np.ndarray, n: int) -> np.ndarray:
        """float64 [n]: the prediction at each token when node i predicts ``ends[i]``."""
        pred = np.full(n, -np.inf)
        np.maximum.at(pred, self.positions, ends[self.nodes])
        return np.where(np.isfinite(pred), pred, 0.0)


def ends_of(graph: Graph) -> np.ndarray:
    """float64 [nodes]: each node's ``end`` (NaN where no pattern stops)."""
    return np.array([np.nan if n.end is None else float(n.end) for n in graph.nodes], dtype=np.float64)


def match(graph: Graph, keys: KeyIndex, seqs: Sequences) -> Matches:
    """:class:`Matches` of ``graph`` on ``seqs``; ``match(...).predict(ends_of(graph), len(seqs))`` equals
    ``Predictor(graph, keys)`` applied to each sequence (tests/test_calibrate.py checks it)."""
    n = len(seqs)
    codes = keys.of(seqs.tokens)
    offset = seqs.offset
    ends = ends_of(graph)
    found_pos, found_node, found_depth = [], [], []
    for node in graph.nodes:
        if node.end is None:
            continue
        path = graph.path(node.id)
        wanted = [ABSENT if k is None else keys.key_id.get(k, -9) for k in (p.key for p in path)]
        if -9 in wanted:  # a key no vocabulary token has: never matches
            continue
        at = np.flatnonzero(codes == wanted[0])
        depth = len(path) - 1
        at = at[offset[at] >= depth]
        for back, want in enumerate(wanted[1:], start=1):
            if want != ABSENT:  # ABSENT here marks an ignore element (any one token)
                at = at[codes[at - back] == want]
        found_pos.append(at)
        found_node.append(np.full(len(at), node.id, np.int64))
        found_depth.append(np.full(len(at), depth, np.int64))
    pos = np.concatenate(found_pos) if found_pos else np.zeros(0, np.int64)
    nodes = np.concatenate(found_node) if found_node else np.zeros(0, np.int64)
    depths = np.concatenate(found_depth) if found_depth else np.zeros(0, np.int64)
    deepest = np.full(n, -1, np.int64)
    np.maximum.at(deepest, pos, depths)
    keep = depths == deepest[pos]
    pos, nodes = pos[keep], nodes[keep]
    winner = np.full(n, -1, np.int64)
    order = np.lexsort((ends[nodes], pos))  # per position, the largest end last: it is written last
    winner[pos[order]] = nodes[order]
    return Matches(pos, nodes, winner)


@dataclass(frozen=True)
class PatternStats:
    """Per node (index = node id): wins, true firing among them, mean true normalised activation there."""

    wins: np.ndarray  # int64 [nodes]
    fires: np.ndarray  # int64 [nodes]
    mean: np.ndarray  # float64 [nodes], NaN without wins

    @classmethod
    def of(cls, found: Matches, truth: np.ndarray, size: int, threshold: float) -> PatternStats:
        valid = (found.winner >= 0) & ~np.isnan(truth)
        who, t = found.winner[valid], truth[valid]
        wins = np.bincount(who, minlength=size)
        fires = np.bincount(who[t >= threshold], minlength=size)
        total = np.bincount(who, weights=t, minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(wins > 0, total / np.maximum(wins, 1), np.nan)
        return cls(wins.astype(np.int64), fires.astype(np.int64), mean)

    @property
    def precision(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.wins > 0, self.fires / np.maximum(self.wins, 1), np.nan)


def below(threshold: float) -> float:
    """The largest float under the firing threshold (a value there does not fire)."""
    return float(np.nextafter(threshold, -np.inf))


def calibrated_ends(ends: np.ndarray, stats: PatternStats, p: float, threshold: float) -> np.ndarray:
    """``ends`` with every judged pattern (>= MIN_WINS wins) that fires but whose precision is below ``p``
    re-weighted to its measured mean, capped under ``threshold``; others unchanged."""
    drop = ~np.isnan(ends) & (ends >= threshold) & (stats.wins >= MIN_WINS) & (stats.fires < p * stats.wins)
    out = ends.copy()
    out[drop] = np.clip(np.nan_to_num(stats.mean[drop]), 0.0, below(threshold))
    return out


def f1_score(truth: np.ndarray, pred: np.ndarray, threshold: float) -> float:
    """F1 of firing, doc-start (NaN) tokens left out; 1.0 when neither side fires (nothing to miss)."""
    keep = ~np.isnan(truth)
    t, p = truth[keep] >= threshold, pred[keep] >= threshold
    tp = int((t & p).sum())
    wrong = int(t.sum() + p.sum() - 2 * tp)
    return 1.0 if tp + wrong == 0 else 2 * tp / (2 * tp + wrong)


@dataclass(frozen=True)
class TokenPatterns:
    """The one-token patterns added to a graph (module docstring, "Token patterns"): node ids appended as
    new activating tokens (``added``, in id order, at the end of the trie) and activating tokens that got an
    ``end`` (``ended``)."""

    min_count: int
    added: list[int]
    ended: list[int]

    def as_dict(self) -> dict:
        return {"min_count": self.min_count, "added": self.added, "ended": self.ended}


def add_token_patterns(
    graph: Graph, keys: KeyIndex, windows: Text, threshold: float, min_count: int
) -> tuple[Graph, TokenPatterns]:
    """A copy of ``graph`` with a one-token pattern for every key whose mean normalised activation over at
    least ``min_count`` occurrences in ``windows`` reaches ``threshold`` (module docstring); keys in order of
    that mean, highest first (ties: key id). ``min_count`` 0 adds none."""
    out = copy.deepcopy(graph)
    record = TokenPatterns(min_count, [], [])
    if min_count <= 0:
        return out, record
    valid = ~np.isnan(windows.truth)
    tokens, truth = windows.seqs.tokens[valid], windows.truth[valid]
    codes = keys.of(tokens)
    inside = codes != ABSENT
    if not inside.any():
        return out, record
    tokens, truth, codes = tokens[inside], truth[inside], codes[inside]
    seen, first, where, counts = np.unique(codes, return_index=True, return_inverse=True, return_counts=True)
    mean = np.bincount(where, weights=truth, minlength=len(seen)) / counts
    peak = np.full(len(seen), -np.inf)
    np.maximum.at(peak, where, truth)
    chosen = np.flatnonzero((counts >= min_count) & (mean >= threshold))
    roots = {n.key: n.id for n in out.activating_tokens}
    for i in sorted(chosen.tolist(), key=lambda i: (-mean[i], int(seen[i]))):
        key, value = keys.names[int(seen[i])], round(float(mean[i]), 6)
        if key in roots:
            node = out.nodes[roots[key]]
            if node.end is None:  # fires only in the contexts pruning kept: now on its own too
                node.end = value
                record.ended.append(node.id)
            continue
        node_id = len(out.nodes)
        token = keys.text[int(tokens[first[i]])]
        out.nodes.append(Node(node_id, -1, 0, key, token, 1.0, round(float(peak[i]), 6), value, int(counts[i])))
        record.added.append(node_id)
    return out, record


@dataclass(frozen=True)
class Calibration:
    """What calibration did to one graph: the chosen ``p``, each candidate's validation score, and the
    re-weighted patterns as ``[node, paper end, new end, wins, fires]``, and the token patterns added first
    (enough to restore the paper's graph, :func:`paper_graph`)."""

    precision: float
    validation: dict[str, float]
    changed: list[list[float]]
    tokens: int  # calibration tokens scored (without the windows)
    token_patterns: TokenPatterns

    def as_dict(self) -> dict:
        return {
            "precision": self.precision,
            "validation": self.validation,
            "changed": self.changed,
            "tokens": self.tokens,
            "min_wins": MIN_WINS,
            "token_patterns": self.token_patterns.as_dict(),
        }


def calibrate(
    graph: Graph, keys: KeyIndex, text: Text, windows: Text, threshold: float, min_count: int = 0
) -> tuple[Graph, Calibration]:
    """The calibrated copy of ``graph`` and what changed. ``text``: the training-split calibration rows (even
    rows: statistics, odd rows: validation); ``windows``: the neuron's training windows; ``min_count``:
    ``--token-patterns`` (0: none added)."""
    graph, added = add_token_patterns(graph, keys, windows, threshold, min_count)  # a copy: ours to change
    size = len(graph.nodes)
    ends = ends_of(graph)
    half = [text.rows(range(start, text.seqs.count, 2)) for start in (0, 1)]
    fit_text, check = Text.join([half[0], windows]), half[1]
    found_fit = match(graph, keys, fit_text.seqs)
    found_check = match(graph, keys, check.seqs)
    found_win = match(graph, keys, windows.seqs)
    stats = PatternStats.of(found_fit, fit_text.truth, size, threshold)
    scores: dict[str, float] = {}
    best_p, best = 0.0, -1.0
    for p in PRECISION_GRID:
        new = calibrated_ends(ends, stats, p, threshold)
        value = 0.5 * (
            f1_score(check.truth, found_check.predict(new, len(check.seqs)), threshold)
            + f1_score(windows.truth, found_win.predict(new, len(windows.seqs)), threshold)
        )
        scores[f"{p:g}"] = round(value, 4)
        if value > best + 1e-12:
            best_p, best = p, value
    everything = Text.join([text, windows])
    final = PatternStats.of(match(graph, keys, everything.seqs), everything.truth, size, threshold)
    new = calibrated_ends(ends, final, best_p, threshold)
    out = graph  # add_token_patterns' copy, not the caller's graph
    changed: list[list[float]] = []
    for i in np.flatnonzero(~np.isnan(ends) & (new != ends)).tolist():
        value = math.floor(float(new[i]) * 1e6) / 1e6  # rounded down: stays under the threshold
        out.nodes[i].end = value
        changed.append([i, float(ends[i]), value, int(final.wins[i]), int(final.fires[i])])
    scored = int((~np.isnan(text.truth)).sum())
    return out, Calibration(best_p, scores, changed, scored, added)


def paper_graph(graph: Graph, calibration: dict | None) -> Graph:
    """The graph before calibration, from a fit file's calibrated ``graph`` and its ``calibration`` record:
    re-weighted patterns get their values back, token patterns go (records from before token patterns
    have none)."""
    out = copy.deepcopy(graph)
    record = calibration or {}
    for node, paper_end, *_ in record.get("changed", []):
        out.nodes[int(node)].end = float(paper_end)
    tokens = record.get("token_patterns") or {}
    for node in tokens.get("ended", []):
        out.nodes[int(node)].end = None
    if tokens.get("added"):
        del out.nodes[min(int(i) for i in tokens["added"]) :]
    return out


class Calibrator:
    """The fit stage's calibration: the calibration pass's activations of every neuron to fit, by layer."""

    def __init__(self, passes: dict, keys: KeyIndex, threshold: float, bos: int | None, min_count: int = 0) -> None:
        self.passes = passes  # layer -> ood.OodLayer of the "calibrate" pass
        self.keys = keys
        self.threshold = threshold
        self.bos = bos
        self.min_count = min_count  # --token-patterns

    @classmethod
    def prepare(
        cls, cfg, work, load_model, wanted: dict[int, dict[int, float]], keys: KeyIndex, bos: int | None
    ) -> Calibrator | None:
        """None with ``--paper`` or ``--calibration-tokens 0``; else run (or reuse) the model pass over the
        first ``--calibration-tokens`` training-split tokens for the ``wanted`` neurons (layer -> {neuron: A_max})."""
        from . import ood

        if cfg.fit.paper or not cfg.fit.calibration_tokens or not wanted:
            return None
        manifest = work.load_manifest()
        mined = manifest.get("mine", {})
        text = ood.TextPass(
            "calibrate",
            manifest.get("corpus", cfg.corpus),
            cfg.fit.calibration_tokens,
            "train",
            float(mined.get("held_out", cfg.mine.held_out)),
            int(manifest.get("seed", cfg.seed)),
        )
        passes = ood.prepare(cfg, work, wanted, load_model, text)
        return cls(passes, keys, cfg.evaluate.fire_threshold, bos, cfg.fit.token_patterns)

    def __call__(
        self, layer: int, neuron: int, graph: Graph, windows: Sequence[tuple[np.ndarray, np.ndarray]], a_max: float
    ) -> tuple[Graph, dict]:
        scored = self.passes[layer]
        seqs = Sequences(scored.tokens, scored.bounds)
        text = Text.of(seqs, scored.acts(neuron), a_max, self.bos)
        train = Text.of(
            Sequences.concat(t for t, _ in windows),
            np.concatenate([a for _, a in windows]) if windows else np.zeros(0),
            a_max,
            self.bos,
        )
        out, record = calibrate(graph, self.keys, text, train, self.threshold, self.min_count)
        return out, record.as_dict()


def recalibratable(config: dict | None, options: dict) -> bool:
    """Whether a fit file's ``config`` (store.fit_file_settings) equals ``options`` but for the calibration
    options (:data:`OPTIONS`), so fit may restore its paper graph (:func:`paper_graph`) and calibrate again
    instead of fitting again. The caller checks the schema, status, dtype, device and mined data."""
    if not isinstance(config, dict):
        return False
    return {k: v for k, v in config.items() if k not in OPTIONS} == {
        k: v for k, v in options.items() if k not in OPTIONS
    }
