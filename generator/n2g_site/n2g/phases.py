"""Fit N2G graphs for a group of neurons, in batched rounds over an ActivationSource.

1. prune: every candidate context of every pivot of every example of every neuron, in one request list;
2. saliency: every occlusion row of every pruned prompt;
3. augment: variants of each pruned prompt with one important token replaced (when a proposer is given),
   all measured in one request list;
4. saliency of the variants that activate.
Then lines -> one trie per neuron. Each neuron's requests are counted per phase (``FittedNeuron.cost``).
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ..config import FitConfig
from . import prune, saliency
from .augment import Proposer, make_variants
from .graph import Graph, Line, build_graph, make_lines
from .requests import ActivationSource, Request

PHASES = ("prune", "saliency", "augment", "augment_saliency")


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
    top_examples: int = -1  # how many of ``examples`` (the first ones) are top windows; -1: all of them

    def __post_init__(self) -> None:
        if self.top_examples < 0:
            self.top_examples = len(self.examples)


@dataclass
class FittedNeuron:
    task: NeuronTask
    graph: Graph
    examples: list[dict] = field(default_factory=list)  # per pivot: how it was pruned and augmented
    cost: dict[str, dict[str, int]] = field(default_factory=dict)  # phase -> {"requests", "tokens"}

    @property
    def dead(self) -> bool:
        """Never activated above 0 in its training windows: nothing to explain, the graph is empty."""
        return not self.task.max_activation > 0 or not self.task.examples


@dataclass(frozen=True)
class Vocabulary:
    """Token id -> text and trie key (normalised text); plus the special ids the fit needs."""

    text: Sequence[str]
    keys: Sequence[str]
    bos_id: int | None
    mask_id: int
    special: frozenset[int] = frozenset()


@dataclass
class _Sample:
    """A prompt measured once (row 0) and, if it activates, by occlusion."""

    task: NeuronTask
    tokens: tuple[int, ...]
    acts: np.ndarray
    norm: np.ndarray
    active: list[int]
    record: dict  # the pruned example's record (variants share their base's)
    scale: float  # full-context / pruned-context peak (a variant keeps its base's)
    peak: int  # index of the pivot in tokens
    base: _Sample | None = None  # the pruned prompt a variant was made from
    importance: np.ndarray | None = None


class _Counted:
    """Sends requests to the source and charges each one to its neuron and phase."""

    def __init__(self, source: ActivationSource) -> None:
        self.source = source
        self.cost: dict[tuple[int, int], dict[str, dict[str, int]]] = defaultdict(
            lambda: {phase: {"requests": 0, "tokens": 0} for phase in PHASES}
        )

    def __call__(self, phase: str, requests: list[Request]) -> list[np.ndarray]:
        for r in requests:
            entry = self.cost[(r.layer, r.neuron)][phase]
            entry["requests"] += 1
            entry["tokens"] += len(r.tokens)
        return self.source(requests) if requests else []


def _pivots(ex: Example, threshold: float, first: int) -> list[int]:
    acts = ex.acts[first:]
    if acts.size == 0:
        return []
    top = float(np.max(acts))
    if threshold >= 1:
        return [ex.pivot]
    return [int(i) + first for i in np.flatnonzero(acts >= threshold * top)] if top > 0 else [ex.pivot]


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """A group's fit allocates 10^5-10^6 small tuples and arrays that reference counting frees (they form no
    cycles); Python's cyclic collector would walk all the live ones again at every generation-2 pass, which
    made the per-neuron host time of a 256-neuron group grow several-fold. Paused for the group."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def fit_neurons(
    tasks: Sequence[NeuronTask],
    source: ActivationSource,
    cfg: FitConfig,
    vocab: Vocabulary,
    proposer: Proposer | None = None,
) -> list[FittedNeuron]:
    """Fit every task's graph (all neurons in lockstep, one request list per phase)."""
    with _no_cyclic_gc():
        return _fit_neurons(tasks, source, cfg, vocab, proposer)


def _fit_neurons(  # noqa: C901 - the four N2G phases in order, each a few lines over the group
    tasks: Sequence[NeuronTask], source: ActivationSource, cfg: FitConfig, vocab: Vocabulary, proposer: Proposer | None
) -> list[FittedNeuron]:
    lead = vocab.bos_id is not None
    first = 1 if lead else 0
    send = _Counted(source)

    def active_of(norm: np.ndarray) -> list[int]:
        return (np.flatnonzero(norm[first:] > cfg.activation_threshold) + first).tolist()

    # Round 1: prune every pivot of every example (of the neurons that ever activate).
    plans = []
    requests: list[Request] = []
    for task in tasks:
        if not task.max_activation > 0:
            continue
        for ex in task.examples:
            text = [vocab.text[t] for t in ex.tokens.tolist()]
            for pivot in _pivots(ex, cfg.pivot_threshold, first):
                end = prune.right_end(text, pivot, cfg.post_context, cfg.sentence_ends)
                cands = prune.candidates(
                    ex.tokens,
                    pivot,
                    bos_id=vocab.bos_id,
                    step=cfg.prune_step,
                    max_context=cfg.prune_max_context,
                    end=end,
                )
                if cands:
                    plans.append((task, ex, pivot, cands, len(requests)))
                    requests += [Request(task.layer, task.neuron, c.tokens) for c in cands]
    answers = send("prune", requests)
    samples: list[_Sample] = []
    for task, ex, pivot, cands, at in plans:
        choice = prune.choose(
            cands, answers[at : at + len(cands)], float(ex.acts[pivot]), cfg.prune_threshold, skip_lead=lead
        )
        norm = np.round(choice.acts * choice.scale_factor / task.max_activation, 3)
        record = {
            "rank": ex.rank,
            "doc": ex.doc,
            "window_start": ex.start,
            "pivot": pivot,
            "prune_start": choice.candidate.start,
            "prune_end": choice.candidate.end,
            "prune_passed": choice.passed,
            "scale_factor": round(choice.scale_factor, 6),
            "variants": 0,
            "positive_variants": 0,
            "lines": 0,
        }
        samples.append(
            _Sample(
                task,
                choice.candidate.tokens,
                choice.acts,
                norm,
                active_of(norm),
                record,
                choice.scale_factor,
                choice.candidate.pivot,
            )
        )

    # Round 2: saliency of the pruned prompts, up to the last active position (and the peak, whose
    # important tokens augmentation replaces).
    augmenting = proposer is not None and cfg.augment_per_position > 0
    _measure_importance(
        send,
        "saliency",
        [s for s in samples if s.active or augmenting],
        vocab.mask_id,
        first,
        last=lambda s: max(s.active + [s.peak]),
    )

    # Round 3: augmentation.
    variants: list[_Sample] = []
    if augmenting:
        assert proposer is not None  # augmenting says so
        positions = [
            [k for k in range(first, s.peak + 1) if _importance(s)[k, s.peak] >= cfg.augment_importance_threshold]
            for s in samples
        ]
        prompts = [s.tokens for s in samples]
        proposals = proposer(prompts, positions)
        made = make_variants(
            prompts,
            positions,
            proposals,
            text=vocab.text,
            keys=vocab.keys,
            special=vocab.special,
            per_position=cfg.augment_per_position,
            min_prob=cfg.augment_min_prob,
        )
        requests = [Request(s.task.layer, s.task.neuron, v.tokens) for s, vs in zip(samples, made) for v in vs]
        variant_acts = iter(send("augment", requests))
        for s, vs in zip(samples, made):
            peak = float(s.acts[first:].max())
            for v in vs:
                acts = next(variant_acts)
                norm = np.round(acts * s.scale / s.task.max_activation, 3)
                positive = float(acts[first:].max()) >= cfg.augment_keep_threshold * peak
                s.record["variants"] += 1
                s.record["positive_variants"] += int(positive)
                sample = _Sample(s.task, v.tokens, acts, norm, active_of(norm), s.record, s.scale, s.peak, base=s)
                if sample.active:
                    variants.append(sample)
        # Round 4: saliency of the variants that activate.
        _measure_importance(send, "augment_saliency", variants, vocab.mask_id, first, last=lambda s: max(s.active))

    # Lines -> graphs.
    lines: dict[tuple[int, int], list[Line]] = {(t.layer, t.neuron): [] for t in tasks}
    for s in samples + variants:
        if not s.active:
            continue
        toks = s.tokens
        also = None
        if s.base is not None and s.base.importance is not None:
            also = inherited_importance(s.base.importance, s.base.active, cfg.importance_threshold)
        made_lines = make_lines(
            [vocab.text[t] for t in toks],
            [vocab.keys[t] for t in toks],
            s.norm,
            _importance(s),
            activation_threshold=cfg.activation_threshold,
            importance_threshold=cfg.importance_threshold,
            skip=[lead and i == 0 for i in range(len(toks))],
            positions=s.active,
            also_important=also,
        )
        s.record["lines"] += len(made_lines)
        lines[(s.task.layer, s.task.neuron)] += made_lines
    records: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for s in samples:
        records[(s.task.layer, s.task.neuron)].append(s.record)
    return [
        FittedNeuron(
            t, build_graph(lines[(t.layer, t.neuron)]), records[(t.layer, t.neuron)], send.cost[(t.layer, t.neuron)]
        )
        for t in tasks
    ]


def _importance(sample: _Sample) -> np.ndarray:
    if sample.importance is None:  # set by the saliency round before anything reads it
        raise RuntimeError("n2g: a sample's importance was read before the saliency round")
    return sample.importance


def inherited_importance(base_importance: np.ndarray, base_active: Sequence[int], threshold: float) -> np.ndarray:
    """What a variant's lines inherit from its base (``also_important`` of ``make_lines``): ``[k, i]`` is True
    where position k was important (above ``threshold``) for position i in the base *and* position i fired
    in the base. At a column that did not fire in the base (e.g. the replaced token, which fires only in the
    variant) nothing is inherited, so its line keeps only what is important in the variant itself. This is
    the original script's rule (docs/algorithm.md, "Augment")."""
    fired = np.zeros(base_importance.shape[1], dtype=bool)
    fired[list(base_active)] = True
    return (base_importance > threshold) & fired[None, :]


def _measure_importance(send: _Counted, phase: str, samples: Sequence[_Sample], mask_id: int, first: int, last) -> None:
    """Fill ``sample.importance`` (a full square matrix; zero where not measured) by occlusion."""
    requests: list[Request] = []
    spans = []
    for s in samples:
        rows = saliency.masked_rows(s.tokens, last(s), mask_id, first)
        spans.append((len(requests), len(rows)))
        requests += [Request(s.task.layer, s.task.neuron, row) for row in rows]
    answers = send(phase, requests)
    for s, (at, count) in zip(samples, spans):
        s.importance = saliency.importance(s.acts, answers[at : at + count], first)
