"""A neuron's score badge: does its graph beat the baselines, lose to them, or can it not be scored at all?

Shown beside the neuron page's title, in its layer-table row and in token-search results (the summary files
of search_index.py), so a graph that fails never looks like one that works. The rule, on the held-out top
windows (the evaluate stage's ``heldout`` dataset, the paper's test set):

- ``beats``: N2G's F1 is above the F1 of every baseline that was scored (token lookup by mean and by max,
  n-gram; evaluate.py);
- ``loses`` ("no better than a baseline"): some baseline's F1 is at least N2G's (a tie counts: the graph
  adds nothing over a token lookup);
- ``none`` ("cannot be scored"): no held-out token fires (nothing to find, F1 undefined), or N2G's F1 is
  undefined.

Where the evaluate stage has not run for the neuron, only the fit's own held-out check is there and no
baseline: no firing held-out token is ``none`` as above; an F1 of 0 is ``loses`` (no baseline scores below
0); any other F1 is ``unrated``: the badge shows the F1 and says the baselines were not run. Dead and unfitted
neurons get no badge (there is no graph to score).

A negative graph (fit ``--polarity both``) gets its own badge by the same rule from its own evaluate file
(``evaluate/L../N.....neg.json``: F1 where activation <= fire_threshold x A_min) and its fit's held-out
check: on the page beside the negative side's heading, in the layer table as a second, smaller mark in the
badge cell (:data:`SHORT` labels, the full label in its title) so the column does not widen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BASELINES = ("token_lookup", "token_max", "ngram")  # evaluate.METHODS without n2g
BASELINE_LABELS = {"token_lookup": "token lookup", "token_max": "token lookup by max", "ngram": "n-gram"}
DATASET = "heldout"  # the evaluate dataset the badge reads
STATES = ("beats", "loses", "none", "unrated")
# The layer table's mark of a negative graph's badge: "neg. " + this, under the positive badge, in a smaller
# font: the longest ("neg. unrated") is narrower than the positive badge "beats baselines", so the cell keeps
# its width in a table with any positive badge.
SHORT = {"beats": "beats", "loses": "loses", "none": "n/a", "unrated": "unrated"}
LABELS = {
    "beats": "beats baselines",
    "loses": "no better than a baseline",
    "none": "cannot be scored",
    "unrated": "not compared",
}


@dataclass(frozen=True)
class Verdict:
    state: str  # one of STATES
    f1: float | None  # N2G's held-out F1 (None: undefined)
    baseline: str | None  # the best baseline's label (None: not evaluated)
    baseline_f1: float | None
    why: str  # the numbers behind it, a few words (beside the badge on the page, its title in a layer table)

    @property
    def label(self) -> str:
        return LABELS[self.state]

    @property
    def short(self) -> str:
        """The layer table's short label (:data:`SHORT`)."""
        return SHORT[self.state]


def _f1(scores: Any) -> float | None:
    value = scores.get("f1") if isinstance(scores, dict) else None
    return float(value) if isinstance(value, (int, float)) and value == value else None


def from_evaluation(evaluated: dict[str, Any] | None) -> Verdict | None:
    """The verdict from a neuron's evaluate file, or None when the file has no held-out scores."""
    methods = ((evaluated or {}).get("datasets") or {}).get(DATASET)
    if not isinstance(methods, dict) or "n2g" not in methods:
        return None
    n2g = methods["n2g"]
    firing = int(n2g.get("true_firing") or 0)
    f1 = _f1(n2g)
    if firing == 0 or f1 is None:
        return Verdict("none", f1, None, None, "no held-out token fires")
    scored = [(s, name) for name in BASELINES if (s := _f1(methods.get(name))) is not None]
    if not scored:
        return Verdict("unrated", f1, None, None, f"held-out F1 {f1:.2f}; no baseline was scored")
    best, name = max(scored, key=lambda x: (x[0], -BASELINES.index(x[1])))
    label = BASELINE_LABELS[name]
    state = "beats" if f1 > best else "loses"
    return Verdict(state, f1, label, best, f"held-out F1 {f1:.2f}, {label} {best:.2f}")


def from_fit(heldout: dict[str, Any] | None) -> Verdict | None:
    """The verdict from the fit file's own held-out check (no baselines), or None without one."""
    if not isinstance(heldout, dict):
        return None
    f1 = _f1(heldout)
    if int(heldout.get("true_firing") or 0) == 0 or f1 is None:
        return Verdict("none", f1, None, None, "no held-out token fires")
    if f1 == 0:
        return Verdict("loses", f1, None, None, "held-out F1 0 (fit's check)")
    return Verdict("unrated", f1, None, None, f"held-out F1 {f1:.2f} (fit's check), baselines not run")


def verdict(status: str, evaluated: dict[str, Any] | None, fit_heldout: dict[str, Any] | None) -> Verdict | None:
    """The badge of a neuron (see the module docstring); None for a dead or unfitted neuron."""
    if status != "fitted":
        return None
    return from_evaluation(evaluated) or from_fit(fit_heldout)
