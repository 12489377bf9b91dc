"""Fidelity: does a neuron's graph fire where the neuron fires, on text it was not fitted on?

Token-level scoring. A token *fires* when its normalised activation (activation / A_max, A_max = the
neuron's best training window) is at least ``fire_threshold`` (0.5, as in the paper); a prediction fires
when the predicted normalised activation is. Counts are pooled over all tokens of a dataset; the
doc-start token is never scored. Undefined ratios are ``None`` (shown as "n/a"), never a made-up 0 or 1:
precision needs some predicted firing, recall some true firing, F1 = 2TP / (2TP + FP + FN) either, and the
correlation (Pearson, predicted vs true normalised activation over all tokens, comparable to
simulation-based scoring) needs both sides to vary. ``variance_explained`` is the original code's
"correlation", 1 - MSE / Var(truth) over the same tokens (1: exact; 0: no better than predicting the mean;
negative: worse), defined when the truth varies.

The evaluate stage scores every fitted neuron's graph and the baselines (baselines.py: token lookup by
mean and by max, n-gram), fitted on the same training windows, on two datasets of held-out documents:

- ``heldout``: the neuron's top-activating held-out windows (the paper's test set: same distribution as
  training, so it rewards recall);
- ``ordinary``: the first held-out rows of the corpus, whole, whatever they activate (most tokens do not
  fire, so a graph that fires too often loses precision here);
- ``ood`` (with ``--ood-corpus``): the first ``--ood-tokens`` of a second corpus the work dir was not mined
  from, whole (out of distribution: does the explanation hold on other text?).

With ``--ordinary-eval-tokens`` N > 0 the ``ordinary`` dataset is the first N held-out tokens instead of
mine's sample. Both take a model pass over their text (ood.py, the only one of this stage, run once and
kept sparse in the work dir); without them evaluate needs no model.

Outputs: ``evaluate/L{L:02d}/N{N:05d}.json`` per neuron (schema ``n2g-site/neuron-eval/1``),
``evaluate/layer_{L:02d}.csv`` (one row per neuron x dataset x method) and ``evaluate/summary.json``
(per layer, dataset and method: unweighted means over neurons where the metric is defined, as in P1,
each F1, precision and recall mean with its 95% bootstrap interval over neurons (intervals.py) in
``<metric>_interval``; plus dead and always-on neuron counts of the whole layer).

Speed: each predictor runs once per neuron over both datasets laid end to end (:class:`Sequences`; the
graph through :class:`~n2g_site.n2g.predict.TriePredictor`, the same floats as ``Predictor`` per sequence),
and neurons are scored in worker processes (``jobs``, default one per CPU the process may use) when there
are at least :data:`PARALLEL_MIN_NEURONS`. Every file is the same whatever the number of workers.

Negative sides (fit ``--polarity both``): a neuron's ``fit/L../N.....neg.json`` is scored the same way on
-activation, so its graph *fires* where activation <= ``fire_threshold`` x A_min (A_min < 0, the most negative
training activation; the file's ``max_activation`` is -A_min), against baselines fitted on its bottom training
windows, on its bottom held-out windows (``heldout``) and the ordinary text (``ordinary``: mine's sample, or the
``--ordinary-eval-tokens`` pass), and with ``--ood-corpus`` on the OOD text (``ood``): the text passes keep each
negatively fitted neuron's activations at or below 0.1 x A_min too (ood.py).
Outputs: ``evaluate/L../N.....neg.json`` (``"polarity": "negative"``), ``evaluate/layer_LL.neg.csv`` and
``summary.json``'s ``negative`` (per layer, as ``layers``; its ``dead`` counts neurons never below 0, and
``always_on`` those at or below half their minimum on half the mined tokens). A layer's ``dead`` in
``layers`` counts neurons never above 0, and ``silent`` in both those never away from 0 on either side.

``--shard i/n`` scores every n-th chunk of :data:`CHUNK` neurons and writes only the neuron files (it removes
the layer tables, which it cannot write whole); :func:`rebuild_tables` (run by ``n2g-site merge``) writes the
layer CSVs and ``summary.json`` from every neuron file, the same bytes one unsharded run writes. Each neuron
file records the content digest of the mined layer it was scored on (``mined``).
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .baselines import NGram, TokenLookup
from .config import FIRE_THRESHOLD, Config, UserError
from .intervals import bootstrap_mean_interval
from .n2g.graph import Graph
from .n2g.predict import KeyIndex, Sequences, TriePredictor
from .ood import OodLayer
from .polarity import SIDES, SIGN, side_windows
from .progress import advance, bar, console, say
from .store import ExampleSet, MinedLayer, Window, WorkDir, atomic_write_text, neuron_file, read_json, write_json

SCHEMA = "n2g-site/neuron-eval/1"
METHODS = ("n2g", "token_lookup", "token_max", "ngram")
DATASETS = ("heldout", "ordinary")  # in every evaluation (render/ shows these)
OOD = "ood"  # the dataset of --ood-corpus, only when it was given
ALL_DATASETS = (*DATASETS, OOD)
METRICS = ("precision", "recall", "f1", "correlation", "variance_explained")
INTERVAL_METRICS = ("precision", "recall", "f1")  # summary means that get a bootstrap interval
ALWAYS_ON_SHARE = 0.5  # a neuron is "always on" when it fires on at least half of the mined tokens
MAX_MISSES = 3  # false-positive and false-negative snippets kept per neuron (one per sequence at most)
MISS_BEFORE, MISS_AFTER = 20, 4  # tokens of context kept around a miss
PARALLEL_MIN_NEURONS = 256  # fewer neurons are scored in this process (a spawned worker takes ~1 s to start)
CHUNK = 32  # neurons per worker task
WRITERS = 8  # threads writing a chunk's files: each file is synced, and concurrent syncs share a disk commit


@dataclass(frozen=True)
class Scores:
    tokens: int
    true_firing: int
    predicted_firing: int
    true_positive: int
    precision: float | None
    recall: float | None
    f1: float | None
    correlation: float | None
    variance_explained: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def score(pairs: Iterable[tuple[np.ndarray, np.ndarray]], threshold: float = FIRE_THRESHOLD) -> Scores:
    """``pairs`` of (true normalised activations, predicted) per sequence; NaN truth is not scored.

    >>> s = score([(np.array([1.0, 0.2, 0.7, 0.0]), np.array([0.9, 0.6, 0.0, 0.0]))])
    >>> (s.true_positive, s.precision, s.recall, s.f1)
    (1, 0.5, 0.5, 0.5)
    """
    pairs = [(np.asarray(t, dtype=np.float64), np.asarray(p, dtype=np.float64)) for t, p in pairs]
    return score_flat(
        np.concatenate([t for t, _ in pairs]) if pairs else np.zeros(0),
        [np.concatenate([p for _, p in pairs]) if pairs else np.zeros(0)],
        threshold,
    )[0]


def score_flat(truth: np.ndarray, preds: Sequence[np.ndarray], threshold: float = FIRE_THRESHOLD) -> list[Scores]:
    """:func:`score` of each prediction in ``preds`` against one ``truth``, every sequence's tokens laid end
    to end (the same counts and floats as ``score`` of the sequences one by one)."""
    keep = ~np.isnan(truth)
    truth = truth[keep]
    t = truth >= threshold
    true_fire = int(t.sum())
    truth_varies = truth.size > 1 and truth.std() > 0
    out = []
    for pred in preds:
        pred = pred[keep]
        p = pred >= threshold
        tp, pred_fire = int((t & p).sum()), int(p.sum())
        fp, fn = pred_fire - tp, true_fire - tp
        corr = explained = None
        if truth_varies and pred.std() > 0:
            corr = round(float(np.corrcoef(truth, pred)[0, 1]), 4)
        if truth_varies:
            explained = round(variance_explained(truth, pred), 4)
        out.append(
            Scores(
                tokens=int(truth.size),
                true_firing=true_fire,
                predicted_firing=pred_fire,
                true_positive=tp,
                precision=round(tp / pred_fire, 4) if pred_fire else None,
                recall=round(tp / true_fire, 4) if true_fire else None,
                f1=round(2 * tp / (2 * tp + fp + fn), 4) if (2 * tp + fp + fn) else None,
                correlation=corr,
                variance_explained=explained,
            )
        )
    return out


def variance_explained(truth: np.ndarray, pred: np.ndarray) -> float:
    """1 - MSE / Var(truth): the original N2G code's "correlation" score (truth must vary).

    >>> variance_explained(np.array([0.0, 1.0]), np.array([0.5, 0.5]))
    0.0
    """
    return float(1 - np.mean((truth - pred) ** 2) / np.var(truth))


def score_predictor(
    predict: Callable[[np.ndarray], np.ndarray],
    texts: Sequence[tuple[np.ndarray, np.ndarray]],
    a_max: float,
    threshold: float,
    bos: int | None,
) -> Scores:
    """Score ``predict`` on (tokens, raw activations) sequences; doc-start positions are not scored."""

    def pairs() -> Iterable[tuple[np.ndarray, np.ndarray]]:
        for tokens, acts in texts:
            truth = acts / a_max
            if bos is not None:
                truth = np.where(tokens == bos, np.nan, truth)
            yield truth, predict(tokens)

    return score(pairs(), threshold)


def score_graph(
    graph: Graph,
    keys: KeyIndex,
    texts: Sequence[tuple[np.ndarray, np.ndarray]],
    a_max: float,
    threshold: float,
    bos: int | None,
) -> Scores:
    """``score_predictor(Predictor(graph, keys), texts, ...)`` (the same Scores), all sequences at once."""
    seqs = Sequences.concat(t for t, _ in texts)
    acts = np.concatenate([np.asarray(a, dtype=np.float64) for _, a in texts]) if texts else np.zeros(0)
    data = Dataset.of("", seqs, acts, a_max, bos)
    return score_flat(data.truth, [TriePredictor(graph, keys).on(seqs)], threshold)[0]


@dataclass(frozen=True)
class Dataset:
    """One neuron's sequences of a dataset laid end to end, and the truth they are scored against."""

    name: str
    seqs: Sequences
    truth: np.ndarray  # float64 [N]: normalised activations; NaN where not scored (the doc-start token)

    @classmethod
    def of(cls, name: str, seqs: Sequences, acts: np.ndarray, a_max: float, bos: int | None) -> Dataset:
        truth = np.asarray(acts, dtype=np.float64) / a_max
        if bos is not None:
            truth = np.where(seqs.tokens == bos, np.nan, truth)
        return cls(name, seqs, truth)


@dataclass
class EvaluateSummary:
    neurons: int
    seconds: float


def find_misses(
    predict: Callable[[np.ndarray], np.ndarray],
    datasets: dict[str, Sequence[tuple[np.ndarray, np.ndarray]]],
    a_max: float,
    threshold: float,
    bos: int | None,
    limit: int = MAX_MISSES,
) -> dict[str, list[dict]]:
    """:func:`misses` of ``predict`` (one sequence at a time) on (tokens, raw activations) sequences."""
    flat, preds = [], []
    for name, texts in datasets.items():
        seqs = Sequences.concat(t for t, _ in texts)
        acts = np.concatenate([np.asarray(a, dtype=np.float64) for _, a in texts]) if texts else np.zeros(0)
        flat.append(Dataset.of(name, seqs, acts, a_max, bos))
        preds.append(
            np.concatenate([np.asarray(predict(np.asarray(t)), dtype=np.float64) for t, _ in texts])
            if texts
            else np.zeros(0)
        )
    return misses(flat, preds, threshold, limit)


def misses(
    datasets: Sequence[Dataset], preds: Sequence[np.ndarray], threshold: float, limit: int = MAX_MISSES
) -> dict[str, list[dict]]:
    """Where the graph is wrong: snippets around its worst false positive and false negative per sequence.

    A false positive is a token the graph predicts to fire (predicted >= ``threshold``) where the neuron
    does not; a false negative the reverse. Per sequence the miss with the largest gap between predicted
    and true normalised activation is kept (the first of equal gaps); across sequences the ``limit``
    largest gaps, datasets in the order given then sequences breaking ties, and a miss with the same 4
    tokens before it counted once (held-out windows and the ordinary text can hold the same passage). Each
    snippet: ``dataset``, ``sequence`` (index in it), ``position`` (of the miss in the sequence), ``start``
    (of the snippet), ``tokens`` (ids), ``truth`` and ``predicted`` (normalised activations of the snippet's
    tokens, 3 decimals; null at doc-start tokens). ``preds[i]`` is the prediction on ``datasets[i]``.
    """
    out: dict[str, list[dict]] = {}
    for kind in ("false_positive", "false_negative"):
        candidates = []  # per dataset: (gap, dataset index, sequence, flat position) of each sequence's worst
        for index, (data, pred) in enumerate(zip(datasets, preds)):
            scored = ~np.isnan(data.truth)
            fires, said = scored & (data.truth >= threshold), scored & (pred >= threshold)
            wrong = np.flatnonzero(said & ~fires if kind == "false_positive" else fires & ~said)
            if not wrong.size:
                continue
            gap = (pred - data.truth if kind == "false_positive" else data.truth - pred)[wrong]
            seq = data.seqs.sequence[wrong]
            order = np.lexsort((wrong, -gap, seq))  # per sequence: largest gap first, then the earliest
            first = order[np.unique(seq[order], return_index=True)[1]]
            candidates.append((gap[first], np.full(first.size, index), seq[first], wrong[first]))
        if not candidates:
            out[kind] = []
            continue
        gap, which, seq, at = (np.concatenate(c) for c in zip(*candidates))
        order = np.lexsort((seq, which, -gap)).tolist()
        which, seq, at = which.tolist(), seq.tolist(), at.tolist()
        chosen, seen = [], set()
        for i in order:
            data, pred = datasets[which[i]], preds[which[i]]
            start, stop = int(data.seqs.bounds[seq[i]]), int(data.seqs.bounds[seq[i] + 1])
            position = at[i] - start
            # held-out windows and the ordinary text can hold the same passage: show it once
            context = tuple(data.seqs.tokens[at[i] - 4 : at[i] + 1].tolist()) if position >= 4 else (data.name, seq[i])
            if context in seen:
                continue
            seen.add(context)
            lo, hi = max(start, at[i] - MISS_BEFORE), min(stop, at[i] + MISS_AFTER + 1)
            chosen.append(
                {
                    "dataset": data.name,
                    "sequence": seq[i],
                    "position": position,
                    "start": lo - start,
                    "tokens": data.seqs.tokens[lo:hi].tolist(),
                    "truth": [None if v != v else round(v, 3) for v in data.truth[lo:hi].tolist()],  # NaN: not scored
                    "predicted": [round(v, 3) for v in pred[lo:hi].tolist()],
                }
            )
            if len(chosen) == limit:
                break
        out[kind] = chosen
    return out


def _mean(values: Iterable[float | None]) -> float | None:
    defined = [v for v in values if v is not None and not math.isnan(v)]
    return round(float(np.mean(defined)), 4) if defined else None


def evaluate(
    cfg: Config, work: WorkDir, *, jobs: int | None = None, load_model: Callable[[], Any] | None = None
) -> EvaluateSummary:
    """Score every fitted neuron of the selection in ``jobs`` worker processes (1: this process; default:
    one per CPU this process may run on when there are at least :data:`PARALLEL_MIN_NEURONS` neurons).
    ``load_model`` is called only when a text pass must run (--ood-corpus, --ordinary-eval-tokens; default:
    the work dir's model)."""
    manifest = work.load_manifest()
    info = manifest["model_info"]
    text = work.load_vocab()
    bos = text.index(info["bos"]) if info.get("bos") in text else None
    threshold, n = cfg.evaluate.fire_threshold, cfg.evaluate.ngram
    layers = [layer for layer in cfg.select_layers(info["n_layers"]) if work.mined(layer).exists()]
    neurons = cfg.select_neurons(info["d_mlp"])
    todo = [
        (layer, neuron, side)
        for layer in layers
        for neuron in neurons
        for side in SIDES
        if work.fitted(layer, neuron, side).exists()
    ]
    if not todo:
        work.require(work.fitted(layers[0] if layers else 0, neurons[0]), "fit")
    digests = {layer: (manifest.get("mined") or {}).get(str(layer)) for layer in layers}
    passes = _prepare_passes(cfg, work, todo, load_model)
    ood = "ood" in passes
    settings = _Settings(str(work.root), threshold, n, cfg.fit.train_examples, bos, digests, passes)
    chunks = [
        (layer, part[i : i + CHUNK])
        for layer in layers
        for part in [[(nn, side) for ll, nn, side in todo if ll == layer]]
        for i in range(0, len(part), CHUNK)
    ]
    shard, shards = cfg.shard_index
    if shards > 1:
        chunks = [c for k, c in enumerate(chunks) if k % shards == shard]
        todo = [(layer, neuron, side) for layer, part in chunks for neuron, side in part]
        stale = [work.evaluated_layer(layer, side) for layer in layers for side in SIDES]
        for path in [work.evaluation_summary, *stale]:
            path.unlink(missing_ok=True)  # stale once any neuron is rescored; merge writes them again
    started = time.perf_counter()
    rows: dict[str, dict[int, list[dict]]] = {side: {layer: [] for layer in layers} for side in SIDES}
    counts: dict[int, dict] = {}
    with bar("evaluate", len(todo), "neurons") as progress, _scoring(settings, jobs, len(todo)) as score_chunks:
        for (layer, part), (chunk_rows, layer_counts) in zip(chunks, score_chunks(chunks)):
            for side in SIDES:
                rows[side][layer].extend(chunk_rows[side])
            counts[layer] = layer_counts
            advance(progress, len(part))
    if shards > 1:
        say(
            f"evaluate: shard {cfg.shard}: {len(todo)} neurons in {time.perf_counter() - started:.1f} s; when every "
            f"shard is done, `n2g-site merge --work-dir {work.root}` writes the layer tables and summary"
        )
        return EvaluateSummary(len(todo), time.perf_counter() - started)
    summary: dict[str, dict] = {}
    negative: dict[str, dict] = {}
    for layer in layers:
        if layer not in counts:  # no fitted neuron: the layer's CSV has only its header, its counts still count
            counts[layer] = _Layer.load(work.mined(layer)).counts
        _write_csv(work, layer, rows["positive"][layer])
        summary[str(layer)] = _layer_summary(rows["positive"][layer], counts[layer]["positive"])
        if rows["negative"][layer]:
            _write_csv(work, layer, rows["negative"][layer], "negative")
            negative[str(layer)] = _layer_summary(rows["negative"][layer], counts[layer]["negative"])
        else:
            work.evaluated_layer(layer, "negative").unlink(missing_ok=True)
    extra: dict[str, Any] = (
        {"ood_corpus": cfg.evaluate.ood_corpus, "ood_tokens": cfg.evaluate.ood_tokens} if ood else {}
    )
    if "ordinary" in passes:
        extra["ordinary_eval_tokens"] = cfg.evaluate.ordinary_eval_tokens
    if negative:
        extra["negative"] = negative
    write_json(work.evaluation_summary, {"fire_threshold": threshold, "ngram": n, **extra, "layers": summary}, indent=1)
    seconds = time.perf_counter() - started
    print_table(summary)
    say(f"evaluate: {len(todo)} neurons in {seconds:.1f} s")
    return EvaluateSummary(len(todo), seconds)


def _prepare_passes(
    cfg: Config, work: WorkDir, todo: Sequence[tuple[int, int, str]], load_model: Callable[[], Any] | None
) -> tuple[str, ...]:
    """Run (or reuse) the text passes the options ask for (ood.py) for the fitted sides of ``todo`` ((layer,
    neuron, side)); their names, ready in the work dir. The model is loaded at most once for both."""
    from . import ood

    texts = []
    if cfg.evaluate.ood_corpus is not None:
        texts.append(ood.TextPass.ood(cfg))
    if cfg.evaluate.ordinary_eval_tokens > 0:
        texts.append(ood.TextPass.ordinary(cfg, work.load_manifest()))
    if not texts:
        return ()
    wanted: dict[int, dict[int, float]] = {}  # layer -> {neuron: A_max}
    low: dict[int, dict[int, float]] = {}  # layer -> {neuron: A_min}: the negative sides
    for layer, neuron, side in todo:
        fit = read_json(work.fitted(layer, neuron, side))
        if fit["status"] == "fitted":
            (wanted if side == "positive" else low).setdefault(layer, {})[neuron] = SIGN[side] * float(
                fit["max_activation"]
            )
    if not wanted and not low:
        return ()
    manifest = work.load_manifest()
    make = load_model or (lambda: ood.work_dir_model(cfg, manifest))
    loaded: list[Any] = []

    def once() -> Any:
        if not loaded:
            loaded.append(make())
        return loaded[0]

    for text in texts:
        ood.prepare(cfg, work, wanted, once, text, low)
    return tuple(t.name for t in texts)


@dataclass(frozen=True)
class _Settings:
    root: str
    threshold: float
    ngram: int
    train_examples: int
    bos: int | None
    mined: dict[int, str | None] | None = None  # layer -> content digest of its mined data (run.json)
    passes: tuple[str, ...] = ()  # text passes ready in the work dir ("ood", "ordinary"): ood.py


@dataclass
class _Layer:
    """One mined layer as scoring reads it: the ordinary text laid end to end once for all its neurons."""

    mined: MinedLayer
    ordinary: Sequences
    ordinary_keep: np.ndarray  # bool [R, T]: the ordinary text's non-padding tokens
    counts: dict  # dead / always-on / layer neuron counts for the summary
    passes: dict[str, tuple[OodLayer, Sequences]] = field(default_factory=dict)  # name -> pass, its text

    @classmethod
    def load(cls, path: Path, passes: dict[str, Path] | None = None) -> _Layer:
        mined = MinedLayer.load(path)
        loaded = {name: OodLayer.load(p) for name, p in (passes or {}).items() if p.exists()}
        tokens = mined.ordinary.tokens
        return cls(
            mined,
            Sequences.padded(tokens),
            tokens >= 0,
            _counts(mined),
            {name: (p, Sequences(p.tokens, p.bounds)) for name, p in loaded.items()},
        )

    def ordinary_acts(self, row: int) -> np.ndarray:
        if not self.ordinary_keep.shape[0]:  # mined with --ordinary-tokens 0
            return np.zeros(0)
        return self.mined.ordinary.acts[row][self.ordinary_keep].astype(np.float64)


def _counts(mined: MinedLayer) -> dict[str, dict]:
    """Per side: neurons of the whole layer dead on that side (never above 0; never below 0), always on
    (at half their max, or at or below half their min, on at least ALWAYS_ON_SHARE of the mined tokens; 0 on
    the negative side of a legacy one-sided histogram, which cannot tell), silent (dead on both sides) and
    the layer's neuron count."""
    stats = mined.stats
    silent = int(((stats.max <= 0) & (stats.min >= 0)).sum())
    size = int(stats.max.shape[0])
    return {
        "positive": {
            "dead": int((stats.max <= 0).sum()),
            "always_on": int((stats.firing_share(FIRE_THRESHOLD) >= ALWAYS_ON_SHARE).sum()),
            "silent": silent,
            "layer_neurons": size,
        },
        "negative": {
            "dead": int((stats.min >= 0).sum()),
            "always_on": int((np.nan_to_num(stats.negative_share(FIRE_THRESHOLD)) >= ALWAYS_ON_SHARE).sum()),
            "silent": silent,
            "layer_neurons": size,
        },
    }


def _rows(layer: int, neuron: int, result: dict) -> list[dict]:
    """A neuron's CSV rows, datasets and methods in the order of ALL_DATASETS and METHODS (not the file's: its
    keys are sorted)."""
    scored = result["datasets"]
    return [
        {"layer": layer, "neuron": neuron, "dataset": dataset, "method": method, **scored[dataset][method]}
        for dataset in ALL_DATASETS
        if dataset in scored
        for method in METHODS
        if method in scored[dataset]
    ]


def rebuild_tables(work: WorkDir, layers: Sequence[int], neurons: Sequence[int] | None = None) -> int:
    """Write the layer CSVs and ``summary.json`` of ``layers`` from the neuron files under ``evaluate/`` (of
    ``neurons``, default: every one there), as one unsharded evaluate writes them; returns the neuron count.

    Refuses neuron files scored with another firing threshold or n-gram length than the others."""
    settings: set[tuple[float, int]] = set()
    summary: dict[str, dict] = {}
    negative: dict[str, dict] = {}
    total = 0
    for layer in layers:
        folder = work.evaluated(layer, 0).parent
        found = (
            sorted(filter(None, map(neuron_file, (p.name for p in folder.glob("N*.json"))))) if folder.exists() else []
        )
        wanted = None if neurons is None else set(neurons)
        chosen = [(nn, side) for nn, side in found if wanted is None or nn in wanted]
        rows: dict[str, list[dict]] = {side: [] for side in SIDES}
        for neuron, side in chosen:
            result = read_json(work.evaluated(layer, neuron, side))
            settings.add((result["fire_threshold"], result["ngram"]))
            rows[side].extend(_rows(layer, neuron, result))
        counts = _counts(MinedLayer.load(work.mined(layer)))
        _write_csv(work, layer, rows["positive"])
        summary[str(layer)] = _layer_summary(rows["positive"], counts["positive"])
        if rows["negative"]:
            _write_csv(work, layer, rows["negative"], "negative")
            negative[str(layer)] = _layer_summary(rows["negative"], counts["negative"])
        total += len({nn for nn, _ in chosen})
    if len(settings) > 1:
        raise UserError(
            f"the evaluate files of {work.root} were scored with other (fire threshold, n-gram) pairs "
            f"{sorted(settings)}: rerun `n2g-site evaluate` with one setting"
        )
    if not settings:
        raise UserError(f"{work.root}/evaluate holds no neuron files: run `n2g-site evaluate` first")
    threshold, n = settings.pop()
    extra = {"negative": negative} if negative else {}
    write_json(work.evaluation_summary, {"fire_threshold": threshold, "ngram": n, **extra, "layers": summary}, indent=1)
    return total


class _Scorer:
    """Scores chunks of one layer's neurons and writes their files; holds the key index and the last layer.

    Files are written by a few threads while the next neuron is scored, all of a chunk's before it returns:
    each ``write_json`` syncs its file, ~5-10 ms of waiting on these disks one at a time (more than the
    scoring), under 1 ms a file when several are in flight (measured, benchmarks/README.md).
    """

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.work = WorkDir(Path(settings.root))
        text = self.work.load_vocab()
        self.keys = KeyIndex(text)
        self.vocab_size = len(text)
        self.layer: tuple[int, _Layer] | None = None
        self.writer = ThreadPoolExecutor(WRITERS, thread_name_prefix="evaluate-write")

    def close(self) -> None:
        self.writer.shutdown()

    def __call__(self, chunk: tuple[int, list[tuple[int, str]]]) -> tuple[dict[str, list[dict]], dict]:
        layer, neurons = chunk
        if self.layer is None or self.layer[0] != layer:
            passes = {name: self.work.scored_text(name, layer) for name in self.settings.passes}
            self.layer = (layer, _Layer.load(self.work.mined(layer), passes))
        data = self.layer[1]
        rows: dict[str, list[dict]] = {side: [] for side in SIDES}
        written = []
        for neuron, side in neurons:
            result = _evaluate_neuron(
                read_json(self.work.fitted(layer, neuron, side)), data, self.keys, self.vocab_size, self.settings
            )
            if self.settings.mined is not None:
                result["mined"] = self.settings.mined.get(layer)
            written.append(self.writer.submit(write_json, self.work.evaluated(layer, neuron, side), result))
            rows[side].extend(_rows(layer, neuron, result))
        for future in written:
            future.result()  # raises a failed write's error
        return rows, data.counts


_WORKER: _Scorer | None = None


def _init_worker(settings: _Settings) -> None:
    global _WORKER
    _WORKER = _Scorer(settings)


def _worker_chunk(chunk: tuple[int, list[tuple[int, str]]]) -> tuple[dict[str, list[dict]], dict]:
    assert _WORKER is not None
    return _WORKER(chunk)


def default_jobs() -> int:
    """CPUs this process may run on (a Slurm or container CPU set, not the whole machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def _scoring(
    settings: _Settings, jobs: int | None, neurons: int
) -> Iterator[Callable[[list[tuple[int, list[tuple[int, str]]]]], Iterator[tuple[dict[str, list[dict]], dict]]]]:
    """A function from chunks to their results, in order: in this process or in worker processes (``jobs``
    of them; None: one per CPU when there are at least PARALLEL_MIN_NEURONS neurons)."""
    if jobs is not None and jobs < 1:
        raise ValueError(f"evaluate: jobs={jobs} must be 1 or more")
    if jobs is None:
        jobs = default_jobs() if neurons >= PARALLEL_MIN_NEURONS else 1
    jobs = min(jobs, math.ceil(neurons / CHUNK))
    if jobs <= 1:
        scorer = _Scorer(settings)
        try:
            yield lambda chunks: map(scorer, chunks)
        finally:
            scorer.close()
        return
    # spawn: evaluate may run in a process that holds torch threads (build runs fit first)
    with ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(settings,)
    ) as pool:
        yield lambda chunks: pool.map(_worker_chunk, chunks)


def _windows(examples: ExampleSet, row: int, limit: int | None = None) -> tuple[Sequences, np.ndarray]:
    """A neuron's filled windows (the first ``limit``) laid end to end, padding dropped, and their raw
    activations: the same tokens and floats as ``examples.windows(row, limit)``."""
    slots = np.flatnonzero(examples.doc[row] >= 0)[:limit]
    tokens = examples.tokens[row, slots]
    return Sequences.padded(tokens), examples.acts[row, slots][tokens >= 0].astype(np.float64)


def _band_windows(mined: MinedLayer, row: int, fit: dict) -> list[Window]:
    """The band-sample windows (MinedLayer.band_train) a positive graph was fitted on besides its top windows,
    as its fit file lists them (``training_windows``, set "band"; none with --paper or in older files)."""
    wanted = {
        (int(w["doc"]), int(w["window_start"])) for w in fit.get("training_windows") or [] if w.get("set") == "band"
    }
    if not wanted or mined.band_train is None:
        return []
    return [w for w in mined.band_train.windows(row) if (w.doc, w.start) in wanted]


def _evaluate_neuron(fit: dict, layer: _Layer, keys: KeyIndex, vocab_size: int, settings: _Settings) -> dict:
    threshold, n, bos = settings.threshold, settings.ngram, settings.bos
    side = fit.get("polarity", "positive")
    out = {
        "schema": SCHEMA,
        "layer": fit["layer"],
        "neuron": fit["neuron"],
        "status": fit["status"],
        "fire_threshold": threshold,
        "ngram": n,
        "datasets": {},
    }
    if side != "positive":
        out["polarity"] = side
    if fit["status"] != "fitted":
        return out
    mined = layer.mined
    row = mined.row(fit["neuron"])
    sign = SIGN[side]  # the negative side is scored on -activation, so "fires" is activation <= 0.5 x A_min
    a_max = float(fit["max_activation"])
    train, train_acts = _windows(side_windows(mined, side, "train"), row, settings.train_examples)
    band = _band_windows(mined, row, fit) if side == "positive" else []
    if band:  # the baselines learn from the windows the graph was fitted on (fit.training_windows)
        train = Sequences.join([train, Sequences.concat([w.tokens for w in band])])
        train_acts = np.concatenate([train_acts, *[w.acts for w in band]])
    norm = sign * train_acts / a_max
    predictors: dict[str, Any] = {  # each has .on(Sequences) -> predictions
        "n2g": TriePredictor(Graph.from_json(fit["graph"]), keys),
        "token_lookup": TokenLookup([(train.tokens, norm)], vocab_size, bos, "mean"),
        "token_max": TokenLookup([(train.tokens, norm)], vocab_size, bos, "max"),
        "ngram": NGram.of(train, norm, n, threshold, bos),
    }
    heldout, heldout_acts = _windows(side_windows(mined, side, "heldout"), row)
    datasets = [Dataset.of("heldout", heldout, sign * heldout_acts, a_max, bos)]
    for name in ("ordinary", "ood"):
        scored = layer.passes.get(name)
        if scored is not None and scored[0].keeps(fit["neuron"], side):  # the pass kept this side of the neuron
            datasets.append(Dataset.of(name, scored[1], sign * scored[0].acts(fit["neuron"], side), a_max, bos))
        elif name == "ordinary":  # mine's dense sample
            datasets.append(Dataset.of(name, layer.ordinary, sign * layer.ordinary_acts(row), a_max, bos))
    both = Sequences.join([d.seqs for d in datasets])  # one pass of each predictor over both datasets
    cuts = np.cumsum([0] + [len(d.seqs) for d in datasets])
    preds = {method: predict.on(both) for method, predict in predictors.items()}
    for data, lo, hi in zip(datasets, cuts[:-1], cuts[1:]):
        scores = score_flat(data.truth, [pred[lo:hi] for pred in preds.values()], threshold)
        out["datasets"][data.name] = {method: s.as_dict() for method, s in zip(preds, scores)}
    mined_sets = [d for d in datasets if d.name != "ood"]  # the pages show misses of the mined text only
    n2g_preds = [preds["n2g"][lo:hi] for lo, hi in zip(cuts[:-1], cuts[1:])]
    out["misses"] = misses(mined_sets, n2g_preds[: len(mined_sets)], threshold)
    return out


def _layer_summary(rows: list[dict], counts: dict) -> dict:
    out: dict = {"neurons": len({r["neuron"] for r in rows}), **counts}
    for dataset in ALL_DATASETS:
        if dataset == OOD and not any(r["dataset"] == OOD for r in rows):
            continue
        for method in METHODS:
            chosen = [r for r in rows if r["dataset"] == dataset and r["method"] == method]
            out.setdefault(dataset, {})[method] = _method_summary(chosen)
    return out


def _method_summary(rows: Sequence[dict]) -> dict:
    """Means over neurons of each metric (where defined) and the 95% bootstrap intervals of
    INTERVAL_METRICS' means (None where no neuron defines the metric)."""
    out: dict = {m: _mean(r.get(m) for r in rows) for m in METRICS}
    for m in INTERVAL_METRICS:
        interval = bootstrap_mean_interval(r.get(m) for r in rows)
        out[f"{m}_interval"] = list(interval) if interval else None
        out[f"{m}_neurons"] = sum(1 for r in rows if r.get(m) is not None)
    return out


def _write_csv(work: WorkDir, layer: int, rows: list[dict], side: str = "positive") -> None:
    fields = [
        "layer",
        "neuron",
        "dataset",
        "method",
        "tokens",
        "true_firing",
        "predicted_firing",
        "true_positive",
        *METRICS,
    ]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(work.evaluated_layer(layer, side), buf.getvalue())


def print_table(summary: dict) -> None:
    from rich.table import Table

    def cell(d: dict) -> str:
        text = " / ".join("–" if d[m] is None else f"{d[m]:.2f}" for m in ("precision", "recall", "f1"))
        interval = d.get("f1_interval")
        return text + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")

    table = Table(
        title="Fidelity per layer: precision / recall / F1 [F1's 95% bootstrap interval] (means over neurons)"
    )
    for column in ("layer", "neurons", "dataset", "N2G", "token mean", "token max", "n-gram"):
        table.add_column(column)
    for layer, s in summary.items():
        for dataset in (d for d in ALL_DATASETS if d in s):
            table.add_row(layer, str(s["neurons"]), dataset, *(cell(s[dataset][m]) for m in METHODS))
    console.print(table)
