"""The "misses" section of a neuron page: where the graph's prediction disagrees with the neuron.

Reads the snippets the evaluate stage stored (:func:`n2g_site.evaluate.find_misses`) and turns them into
:class:`~.contexts.MissesView` for ``neuron_body.html.j2``.
"""

from __future__ import annotations

from typing import Any

from ..config import EvaluateConfig
from .contexts import MissesView, MissToken, MissView
from .tokens import vocab_text


def fire_threshold(evaluated: dict[str, Any] | None) -> float:
    """The share of its max at which the evaluate stage counted a neuron as firing (the default when the
    neuron was not evaluated): the misses view and the playground both use it."""
    return float((evaluated or {}).get("fire_threshold") or EvaluateConfig().fire_threshold)


def _level(value: float | None) -> int:
    return 0 if value is None else round(10 * min(max(value, 0.0), 1.0))


def _snippet(raw: dict[str, Any], shown: list[str]) -> MissView:
    at = int(raw["position"]) - int(raw["start"])
    tokens = []
    for i, (tid, truth, pred) in enumerate(zip(raw["tokens"], raw["truth"], raw["predicted"])):
        tokens.append(
            MissToken(
                text=vocab_text(shown, tid),
                truth=None if truth is None else float(truth),
                predicted=float(pred),
                level=_level(truth),
                missed=i == at,
            )
        )
    missed = tokens[at]
    return MissView(dataset=str(raw["dataset"]), tokens=tokens, truth=missed.truth or 0.0, predicted=missed.predicted)


def _once(raws: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The snippets, each passage once: the same held-out window can be stored twice (top held-out windows that
    overlap, or that are also in the ordinary text; evaluate files written before the evaluate stage left
    those out). Two snippets are one passage when the missed token and the tokens up to
    :data:`SAME_BEFORE` before it (as far as both snippets reach) are the same."""
    out, seen = [], set()
    for raw in raws:
        at = int(raw["position"]) - int(raw["start"])
        key = tuple(raw["tokens"][max(0, at - SAME_BEFORE) : at + 1])
        if key in seen:
            continue
        seen.add(key)
        out.append(raw)
    return out


SAME_BEFORE = 4  # tokens before a miss that make two snippets one passage (evaluate.misses uses 4 too)


def misses_view(evaluated: dict[str, Any] | None, shown: list[str]) -> MissesView | None:
    """The page's misses, or None when the neuron was not evaluated (or evaluated before misses existed)."""
    misses = (evaluated or {}).get("misses")
    if not isinstance(misses, dict):
        return None
    return MissesView(
        false_positive=[_snippet(m, shown) for m in _once(misses.get("false_positive") or [])],
        false_negative=[_snippet(m, shown) for m in _once(misses.get("false_negative") or [])],
        threshold=fire_threshold(evaluated),
    )
