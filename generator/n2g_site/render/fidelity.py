"""The fidelity page: per-layer charts and table of N2G against its baselines (evaluate stage output).

Reads ``evaluate/summary.json``; when the run was not evaluated the page says so instead. It also states,
from the numbers, whether the paper's trend holds here: N2G's precision and recall between those of the
recall-oriented token lookup and the precision-oriented n-gram baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jinja2
from markupsafe import Markup

from ..evaluate import ALL_DATASETS, METHODS
from ..store import WorkDir
from .plots import METHOD_STYLE, chart, render_chart

DATASET_LABELS = {
    "heldout": "held-out top windows",
    "ordinary": "ordinary held-out text",
    "ood": "out-of-distribution text",  # only where evaluate ran with --ood-corpus
}
METRIC_LABELS = {"precision": "precision", "recall": "recall", "f1": "F1"}


@dataclass
class MethodScores:
    method: str  # label: N2G, token lookup, n-gram
    precision: float | None
    recall: float | None
    f1: float | None
    f1_interval: list[float] | None = None  # 95% bootstrap interval over the layer's neurons (intervals.py)


@dataclass
class LayerFidelity:
    layer: int
    neurons: int  # evaluated neurons
    layer_neurons: int  # all neurons of the layer (for dead / always-on)
    dead: int  # never above 0 on the mined text
    always_on: int  # fire (>= half their max) on at least half the mined tokens
    scores: dict[str, list[MethodScores]]  # dataset -> one entry per method


@dataclass
class DatasetView:
    key: str
    label: str
    charts: list[Markup]  # precision, recall, F1 charts (inline SVG)
    trend: str  # one sentence: does the paper's ordering hold on this dataset?


@dataclass
class LegendItem:
    label: str
    colour: str
    marker: str


LEGEND = [LegendItem(*METHOD_STYLE[m]) for m in METHODS]


@dataclass
class FidelityPage:
    """``fidelity.md.j2``, ``fidelity_body.html.j2`` and the home page's ``home_fidelity.html.j2``."""

    evaluated: bool
    legend: list[LegendItem] = field(default_factory=lambda: list(LEGEND))
    fire_threshold: float | None = None
    ngram: int | None = None
    datasets: list[DatasetView] = field(default_factory=list)
    layers: list[LayerFidelity] = field(default_factory=list)


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def _trend(summary: dict, dataset: str) -> str:
    """Compare layer-averaged precision, recall and F1 of N2G with the paper's two baselines (token lookup
    by max, as the original code, and n-gram): the paper found N2G between them on precision and recall,
    and above both on F1."""
    parts = []
    for metric in ("precision", "recall", "f1"):
        avg = {m: _mean([s[dataset][m][metric] for s in summary.values()]) for m in METHODS}
        if avg["n2g"] is None or avg["token_max"] is None or avg["ngram"] is None:
            parts.append(f"{METRIC_LABELS[metric]}: not enough firing to compare")
            continue
        low, high = sorted((avg["token_max"], avg["ngram"]))
        if metric == "f1":
            verdict = "above both" if avg["n2g"] > high else "not above both"
        else:
            verdict = "between" if low <= avg["n2g"] <= high else "outside"
        parts.append(
            f"N2G's mean {METRIC_LABELS[metric]} {avg['n2g']:.2f} is {verdict} token lookup by max "
            f"({avg['token_max']:.2f}) and n-gram ({avg['ngram']:.2f})"
        )
    return "; ".join(parts) + "."


def fidelity_page(env: jinja2.Environment, work: WorkDir) -> FidelityPage:
    data = work.read_evaluation_summary()
    if data is None:
        return FidelityPage(evaluated=False)
    summary = dict(sorted(data["layers"].items(), key=lambda kv: int(kv[0])))
    layers = [int(k) for k in summary]
    present = [d for d in ALL_DATASETS if all(d in s for s in summary.values())]  # ood: with --ood-corpus
    datasets = []
    for dataset in present:
        charts = [
            Markup(
                render_chart(
                    env,
                    chart(
                        f"{METRIC_LABELS[metric]}, {DATASET_LABELS[dataset]}",
                        layers,
                        {m: [summary[str(layer)][dataset][m][metric] for layer in layers] for m in METHODS},
                    ),
                )
            )
            for metric in ("precision", "recall", "f1")
        ]
        datasets.append(DatasetView(dataset, DATASET_LABELS[dataset], charts, _trend(summary, dataset)))
    rows = [
        LayerFidelity(
            layer=int(layer),
            neurons=s["neurons"],
            layer_neurons=s["layer_neurons"],
            dead=s["dead"],
            always_on=s["always_on"],
            scores={
                d: [
                    MethodScores(
                        METHOD_STYLE[m][0],
                        **{k: s[d][m][k] for k in ("precision", "recall", "f1")},
                        f1_interval=s[d][m].get("f1_interval"),
                    )
                    for m in METHODS
                ]
                for d in present
            },
        )
        for layer, s in summary.items()
    ]
    return FidelityPage(
        True, fire_threshold=data["fire_threshold"], ngram=data["ngram"], datasets=datasets, layers=rows
    )


@dataclass
class NeuronScoreRow:
    method: str  # N2G, token lookup, n-gram
    precision: float | None
    recall: float | None
    f1: float | None
    correlation: float | None
    predicted_firing: int


@dataclass
class NeuronFidelity:
    """A neuron's evaluate output, for its page (``neuron_scores.html.j2``)."""

    fire_threshold: float
    ngram: int
    datasets: list[tuple[str, int, int, list[NeuronScoreRow]]]  # (label, tokens, true firing, rows)


def neuron_fidelity(data: dict | None) -> NeuronFidelity | None:
    """From the neuron's evaluate file (WorkDir.read_evaluation); None when not evaluated (or dead: nothing to
    score)."""
    if not data or not data.get("datasets"):
        return None
    datasets = []
    for key in ALL_DATASETS:
        methods = data["datasets"].get(key)
        if not methods:
            continue
        first = methods["n2g"]
        rows = [
            NeuronScoreRow(
                METHOD_STYLE[m][0],
                methods[m]["precision"],
                methods[m]["recall"],
                methods[m]["f1"],
                methods[m]["correlation"],
                methods[m]["predicted_firing"],
            )
            for m in METHODS
            if m in methods
        ]  # the page's order, not the file's (sorted) one
        datasets.append((DATASET_LABELS[key], first["tokens"], first["true_firing"], rows))
    return NeuronFidelity(data["fire_threshold"], data["ngram"], datasets)
