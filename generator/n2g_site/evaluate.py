"""Token-level fidelity of a graph: does it fire where the neuron fires?

A token *fires* when its normalised activation (activation / A_max) is at least ``threshold`` (0.5, as
in the paper); the prediction fires when the graph's predicted normalised activation is. Counts are pooled
over all tokens scored. Undefined ratios are ``None`` (shown as "n/a"), never a made-up 0 or 1:
precision needs some predicted firing, recall some true firing, F1 (= 2TP / (2TP + FP + FN)) either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    tokens: int
    true_firing: int
    predicted_firing: int
    true_positive: int
    precision: float | None
    recall: float | None
    f1: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def score(pairs: Iterable[tuple[np.ndarray, np.ndarray]], threshold: float = 0.5) -> Scores:
    """``pairs`` of (true normalised activations, predicted) per sequence."""
    tokens = tp = true_fire = pred_fire = 0
    for truth, pred in pairs:
        t = np.asarray(truth) >= threshold
        p = np.asarray(pred) >= threshold
        tokens += t.size
        tp += int((t & p).sum())
        true_fire += int(t.sum())
        pred_fire += int(p.sum())
    fp, fn = pred_fire - tp, true_fire - tp
    return Scores(
        tokens=tokens,
        true_firing=true_fire,
        predicted_firing=pred_fire,
        true_positive=tp,
        precision=round(tp / pred_fire, 4) if pred_fire else None,
        recall=round(tp / true_fire, 4) if true_fire else None,
        f1=round(2 * tp / (2 * tp + fp + fn), 4) if (2 * tp + fp + fn) else None,
    )
