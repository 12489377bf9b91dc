"""Fidelity: does a neuron's graph fire where the neuron fires, on text it was not fitted on?

Token-level scoring. A token *fires* when its normalised activation (activation / A_max, A_max = the
neuron's best training window) is at least ``fire_threshold`` (0.5, as in the paper); a prediction fires
when the predicted normalised activation is. Counts are pooled over all tokens of a dataset; the
doc-start token is never scored. Undefined ratios are ``None`` (shown as "n/a"), never a made-up 0 or 1:
precision needs some predicted firing, recall some true firing, F1 = 2TP / (2TP + FP + FN) either, and the
correlation (Pearson, predicted vs true normalised activation over all tokens, comparable to
simulation-based scoring) needs both sides to vary.

The evaluate stage scores every fitted neuron's graph and the baselines (baselines.py: token lookup by
mean and by max, n-gram), fitted on the same training windows, on two datasets of held-out documents:

- ``heldout``: the neuron's top-activating held-out windows (the paper's test set: same distribution as
  training, so it rewards recall);
- ``ordinary``: the first held-out rows of the corpus, whole, whatever they activate (most tokens do not
  fire, so a graph that fires too often loses precision here).

Outputs: ``evaluate/L{L:02d}/N{N:05d}.json`` per neuron (schema ``n2g-site/neuron-eval/1``),
``evaluate/layer_{L:02d}.csv`` (one row per neuron x dataset x method) and ``evaluate/summary.json``
(per layer, dataset and method: unweighted means over neurons where the metric is defined, as in P1;
plus dead and always-on neuron counts of the whole layer).
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .baselines import NGram, TokenLookup
from .config import Config
from .n2g.graph import Graph
from .n2g.predict import KeyIndex, Predictor
from .progress import advance, bar, console, say
from .store import MinedLayer, WorkDir, atomic_write_text, read_json, write_json

SCHEMA = "n2g-site/neuron-eval/1"
METHODS = ("n2g", "token_lookup", "token_max", "ngram")
DATASETS = ("heldout", "ordinary")
METRICS = ("precision", "recall", "f1", "correlation")
ALWAYS_ON_SHARE = 0.5  # a neuron is "always on" when it fires on at least half of the mined tokens
MAX_MISSES = 3  # false-positive and false-negative snippets kept per neuron (one per sequence at most)
MISS_BEFORE, MISS_AFTER = 20, 4  # tokens of context kept around a miss


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

    def as_dict(self) -> dict:
        return asdict(self)


def score(pairs: Iterable[tuple[np.ndarray, np.ndarray]], threshold: float = 0.5) -> Scores:
    """``pairs`` of (true normalised activations, predicted) per sequence; NaN truth is not scored.

    >>> s = score([(np.array([1.0, 0.2, 0.7, 0.0]), np.array([0.9, 0.6, 0.0, 0.0]))])
    >>> (s.true_positive, s.precision, s.recall, s.f1)
    (1, 0.5, 0.5, 0.5)
    """
    truths, preds = [], []
    for truth, pred in pairs:
        truth = np.asarray(truth, dtype=np.float64)
        keep = ~np.isnan(truth)
        truths.append(truth[keep])
        preds.append(np.asarray(pred, dtype=np.float64)[keep])
    truth = np.concatenate(truths) if truths else np.zeros(0)
    pred = np.concatenate(preds) if preds else np.zeros(0)
    t, p = truth >= threshold, pred >= threshold
    tp, true_fire, pred_fire = int((t & p).sum()), int(t.sum()), int(p.sum())
    fp, fn = pred_fire - tp, true_fire - tp
    corr = None
    if truth.size > 1 and truth.std() > 0 and pred.std() > 0:
        corr = round(float(np.corrcoef(truth, pred)[0, 1]), 4)
    return Scores(
        tokens=int(truth.size),
        true_firing=true_fire,
        predicted_firing=pred_fire,
        true_positive=tp,
        precision=round(tp / pred_fire, 4) if pred_fire else None,
        recall=round(tp / true_fire, 4) if true_fire else None,
        f1=round(2 * tp / (2 * tp + fp + fn), 4) if (2 * tp + fp + fn) else None,
        correlation=corr,
    )


def score_predictor(predict: Callable[[np.ndarray], np.ndarray], texts: Sequence[tuple[np.ndarray, np.ndarray]],
                    a_max: float, threshold: float, bos: int | None) -> Scores:
    """Score ``predict`` on (tokens, raw activations) sequences; doc-start positions are not scored."""
    def pairs() -> Iterable[tuple[np.ndarray, np.ndarray]]:
        for tokens, acts in texts:
            truth = acts / a_max
            if bos is not None:
                truth = np.where(tokens == bos, np.nan, truth)
            yield truth, predict(tokens)

    return score(pairs(), threshold)


@dataclass
class EvaluateSummary:
    neurons: int
    seconds: float


def find_misses(predict: Callable[[np.ndarray], np.ndarray], datasets: dict[str, Sequence[tuple[np.ndarray, np.ndarray]]],
                a_max: float, threshold: float, bos: int | None, limit: int = MAX_MISSES) -> dict[str, list[dict]]:
    """Where the graph is wrong: snippets around its worst false positive and false negative per sequence.

    A false positive is a token the graph predicts to fire (predicted >= ``threshold``) where the neuron
    does not; a false negative the reverse. Per sequence the miss with the largest gap between predicted
    and true normalised activation is kept; across sequences the ``limit`` largest gaps, datasets in the
    order given breaking ties, and a miss with the same 4 tokens before it counted once (held-out windows
    and the ordinary text can hold the same passage). Each snippet: ``dataset``, ``sequence`` (index in it),
    ``position`` (of the miss in the sequence), ``start`` (of the snippet), ``tokens`` (ids), ``truth`` and
    ``predicted`` (normalised activations of the snippet's tokens, 3 decimals; null at doc-start tokens).
    """
    found: dict[str, list[tuple[float, int, dict]]] = {"false_positive": [], "false_negative": []}
    order = 0
    for name, texts in datasets.items():
        for index, (tokens, acts) in enumerate(texts):
            tokens = np.asarray(tokens)
            truth = np.asarray(acts, dtype=np.float64) / a_max
            if bos is not None:
                truth = np.where(tokens == bos, np.nan, truth)
            pred = np.asarray(predict(tokens), dtype=np.float64)
            scored = ~np.isnan(truth)
            fires, said = scored & (truth >= threshold), scored & (pred >= threshold)
            for kind, wrong, gap in (("false_positive", said & ~fires, pred - truth),
                                     ("false_negative", fires & ~said, truth - pred)):
                if not wrong.any():
                    continue
                at = int(np.flatnonzero(wrong)[np.argmax(gap[wrong])])
                lo, hi = max(0, at - MISS_BEFORE), min(len(tokens), at + MISS_AFTER + 1)
                snippet = {
                    "dataset": name, "sequence": index, "position": at, "start": lo,
                    "tokens": [int(t) for t in tokens[lo:hi]],
                    "truth": [None if np.isnan(v) else round(float(v), 3) for v in truth[lo:hi]],
                    "predicted": [round(float(v), 3) for v in pred[lo:hi]],
                }
                found[kind].append((-float(gap[at]), order, snippet))
                order += 1
    out: dict[str, list[dict]] = {}
    for kind, items in found.items():
        chosen, seen = [], set()
        for _, _, snippet in sorted(items, key=lambda x: x[:2]):
            at = snippet["position"] - snippet["start"]
            # held-out windows and the ordinary text can hold the same passage: show it once
            context = tuple(snippet["tokens"][at - 4 : at + 1]) if at >= 4 else (snippet["dataset"], snippet["sequence"])
            if context in seen:
                continue
            seen.add(context)
            chosen.append(snippet)
            if len(chosen) == limit:
                break
        out[kind] = chosen
    return out


def _mean(values: Iterable[float | None]) -> float | None:
    defined = [v for v in values if v is not None and not math.isnan(v)]
    return round(float(np.mean(defined)), 4) if defined else None


def evaluate(cfg: Config, work: WorkDir) -> EvaluateSummary:
    manifest = work.load_manifest()
    info = manifest["model_info"]
    text = work.load_vocab()
    bos = text.index(info["bos"]) if info.get("bos") in text else None
    keys = KeyIndex(text)
    threshold, n = cfg.evaluate.fire_threshold, cfg.evaluate.ngram
    layers = [layer for layer in cfg.select_layers(info["n_layers"]) if work.mined(layer).exists()]
    neurons = cfg.select_neurons(info["d_mlp"])
    todo = [(layer, neuron) for layer in layers for neuron in neurons if work.fitted(layer, neuron).exists()]
    if not todo:
        work.require(work.fitted(layers[0] if layers else 0, neurons[0]), "fit")
    started = time.perf_counter()
    summary: dict[str, dict] = {}
    with bar("evaluate", len(todo), "neurons") as progress:
        for layer in layers:
            mined = MinedLayer.load(work.mined(layer))
            rows: list[dict] = []
            for neuron in (nn for ll, nn in todo if ll == layer):
                fit = read_json(work.fitted(layer, neuron))
                result = _evaluate_neuron(fit, mined, keys, len(text), threshold, n, cfg.fit.train_examples, bos)
                write_json(work.evaluated(layer, neuron), result)
                for dataset, methods in result["datasets"].items():
                    for method, s in methods.items():
                        rows.append({"layer": layer, "neuron": neuron, "dataset": dataset, "method": method, **s})
                advance(progress)
            _write_csv(work, layer, rows)
            summary[str(layer)] = _layer_summary(rows, mined)
    write_json(work.evaluation_summary, {"fire_threshold": threshold, "ngram": n, "layers": summary}, indent=1)
    seconds = time.perf_counter() - started
    print_table(summary)
    say(f"evaluate: {len(todo)} neurons in {seconds:.1f} s")
    return EvaluateSummary(len(todo), seconds)


def _evaluate_neuron(fit: dict, mined: MinedLayer, keys: KeyIndex, vocab_size: int, threshold: float, n: int,
                     train_examples: int, bos: int | None) -> dict:
    layer, neuron = fit["layer"], fit["neuron"]
    out = {"schema": SCHEMA, "layer": layer, "neuron": neuron, "status": fit["status"], "fire_threshold": threshold,
           "ngram": n, "datasets": {}}
    if fit["status"] != "fitted":
        return out
    row = mined.row(neuron)
    a_max = float(fit["max_activation"])
    train = [(w.tokens, w.acts / a_max) for w in mined.train.windows(row)[:train_examples]]
    predictors = {
        "n2g": Predictor(Graph.from_json(fit["graph"]), keys),
        "token_lookup": TokenLookup(train, vocab_size, bos, "mean"),
        "token_max": TokenLookup(train, vocab_size, bos, "max"),
        "ngram": NGram(train, n, threshold, bos),
    }
    datasets = {
        "heldout": [(w.tokens, w.acts) for w in mined.heldout.windows(row)],
        "ordinary": mined.ordinary.rows(row),
    }
    for name, texts in datasets.items():
        out["datasets"][name] = {
            method: score_predictor(predict, texts, a_max, threshold, bos).as_dict()
            for method, predict in predictors.items()
        }
    out["misses"] = find_misses(predictors["n2g"], datasets, a_max, threshold, bos)
    return out


def _layer_summary(rows: list[dict], mined: MinedLayer) -> dict:
    out: dict = {
        "neurons": len({r["neuron"] for r in rows}),
        "dead": int((mined.stats.max <= 0).sum()),
        "always_on": int((mined.stats.firing_share(0.5) >= ALWAYS_ON_SHARE).sum()),
        "layer_neurons": int(mined.stats.max.shape[0]),
    }
    for dataset in DATASETS:
        for method in METHODS:
            chosen = [r for r in rows if r["dataset"] == dataset and r["method"] == method]
            out.setdefault(dataset, {})[method] = {m: _mean(r[m] for r in chosen) for m in METRICS}
    return out


def _write_csv(work: WorkDir, layer: int, rows: list[dict]) -> None:
    fields = ["layer", "neuron", "dataset", "method", "tokens", "true_firing", "predicted_firing",
              "true_positive", *METRICS]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(work.evaluated_layer(layer), buf.getvalue())


def print_table(summary: dict) -> None:
    from rich.table import Table

    def cell(d: dict) -> str:
        return " / ".join("–" if d[m] is None else f"{d[m]:.2f}" for m in ("precision", "recall", "f1"))

    table = Table(title="Fidelity per layer: precision / recall / F1 (means over neurons)")
    for column in ("layer", "neurons", "dataset", "N2G", "token mean", "token max", "n-gram"):
        table.add_column(column)
    for layer, s in summary.items():
        for dataset in DATASETS:
            table.add_row(layer, str(s["neurons"]), dataset, *(cell(s[dataset][m]) for m in METHODS))
    console.print(table)
