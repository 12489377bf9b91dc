"""Fit N2G graphs for a group of neurons, in batched rounds over an ActivationSource.

Round 1 (prune): every candidate context of every example of every neuron in one request list.
Round 2 (saliency): every occlusion row of every pruned prompt in one request list.
Then lines -> one trie per neuron. Augmentation (a later round between these two) plugs in via augment.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..config import FitConfig
from . import prune, saliency
from .augment import Augmenter, NoAugmenter
from .graph import Graph, Line, build_graph, make_lines
from .requests import ActivationSource, Request


@dataclass(frozen=True)
class Example:
    """One top-activating window of a neuron, as mined."""

    tokens: np.ndarray  # int64 [W]
    acts: np.ndarray  # float64 [W], activations with the full mined context
    pivot: int
    rank: int = 0
    doc: int = -1
    start: int = 0


@dataclass
class NeuronTask:
    layer: int
    neuron: int
    examples: list[Example]
    max_activation: float  # A_max: normalised activation = activation / A_max


@dataclass
class FittedNeuron:
    task: NeuronTask
    graph: Graph
    examples: list[dict] = field(default_factory=list)  # how each example was pruned, and its line count


@dataclass(frozen=True)
class Vocabulary:
    """Token id -> text and trie key (normalised text); plus the special ids the fit needs."""

    text: Sequence[str]
    keys: Sequence[str]
    bos_id: int | None
    mask_id: int


def fit_neurons(tasks: Sequence[NeuronTask], source: ActivationSource, cfg: FitConfig, vocab: Vocabulary,
                augmenter: Augmenter | None = None) -> list[FittedNeuron]:
    augmenter = augmenter or NoAugmenter()
    lead = vocab.bos_id is not None
    first = 1 if lead else 0

    # Round 1: prune.
    plans = []
    requests: list[Request] = []
    for task in tasks:
        for ex in task.examples:
            text = [vocab.text[t] for t in ex.tokens]
            end = prune.right_end(text, ex.pivot, cfg.post_context, cfg.sentence_ends)
            cands = prune.candidates(ex.tokens, ex.pivot, bos_id=vocab.bos_id, step=cfg.prune_step,
                                     max_context=cfg.prune_max_context, end=end)
            if not cands:
                continue
            plans.append((task, ex, cands, len(requests)))
            requests += [Request(task.layer, task.neuron, c.tokens) for c in cands]
    answers = source(requests)
    pruned = []
    for task, ex, cands, at in plans:
        choice = prune.choose(cands, answers[at : at + len(cands)], float(ex.acts[ex.pivot]),
                              cfg.prune_threshold, skip_lead=lead)
        norm = np.round(choice.acts * choice.scale_factor / task.max_activation, 3)
        active = [i for i in range(first, len(norm)) if norm[i] > cfg.activation_threshold]
        pruned.append((task, ex, choice, norm, active))

    # (Augmentation would add variant prompts here; the "none" augmenter adds none.)
    augmenter([p[2].candidate.tokens for p in pruned], [p[4] for p in pruned])

    # Round 2: saliency, only where some position is active.
    requests = []
    spans = []
    for task, _, choice, _, active in pruned:
        rows = saliency.masked_rows(choice.candidate.tokens, max(active), vocab.mask_id, first) if active else []
        spans.append((len(requests), len(rows)))
        requests += [Request(task.layer, task.neuron, row) for row in rows]
    answers = source(requests)

    lines: dict[tuple[int, int], list[Line]] = {(t.layer, t.neuron): [] for t in tasks}
    records: dict[tuple[int, int], list[dict]] = {(t.layer, t.neuron): [] for t in tasks}
    for (task, ex, choice, norm, active), (at, count) in zip(pruned, spans):
        toks = choice.candidate.tokens
        example_lines: list[Line] = []
        if active:
            imp = saliency.importance(choice.acts, answers[at : at + count], first)
            example_lines = make_lines(
                [vocab.text[t] for t in toks], [vocab.keys[t] for t in toks], norm, imp,
                activation_threshold=cfg.activation_threshold, importance_threshold=cfg.importance_threshold,
                skip=[lead and i == 0 for i in range(len(toks))], positions=active,
            )
        lines[(task.layer, task.neuron)] += example_lines
        records[(task.layer, task.neuron)].append({
            "rank": ex.rank, "doc": ex.doc, "window_start": ex.start, "pivot": ex.pivot,
            "prune_start": choice.candidate.start, "prune_end": choice.candidate.end,
            "prune_passed": choice.passed, "scale_factor": round(choice.scale_factor, 6),
            "lines": len(example_lines),
        })
    return [FittedNeuron(t, build_graph(lines[(t.layer, t.neuron)]), records[(t.layer, t.neuron)]) for t in tasks]
