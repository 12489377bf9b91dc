"""Bootstrap confidence intervals for a mean over neurons (evaluate's per-layer summaries).

A per-layer score is the unweighted mean of one metric over the layer's neurons where it is defined. Its
95% interval here is the percentile bootstrap over neurons: resample the neurons with replacement
``resamples`` times, take each resample's mean, and report the 2.5th and 97.5th percentiles of those
means. The generator is seeded, so the same values always give the same interval. It says how much the
mean would move with another draw of neurons from the same layer; it does not cover the noise of each
neuron's own score (a neuron with three firing tokens has a very uncertain F1 of its own).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0
CHUNK = 250_000  # resampled values drawn at a time (memory: 8 bytes each)


def bootstrap_mean_interval(
    values: Iterable[float | None], *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED
) -> tuple[float, float] | None:
    """The percentile-bootstrap ``level`` interval of the mean of the defined ``values`` (None and NaN are
    left out, as in the means themselves); None when no value is defined.

    >>> bootstrap_mean_interval([0.5, 0.5, 0.5])
    (0.5, 0.5)
    >>> bootstrap_mean_interval([None]) is None
    True
    """
    if not 0 < level < 1:
        raise ValueError(f"bootstrap level {level} must be between 0 and 1 (0.95 for a 95% interval)")
    if resamples < 1:
        raise ValueError(f"bootstrap resamples={resamples} must be 1 or more")
    x = np.array([v for v in values if v is not None and v == v], dtype=np.float64)
    if not x.size:
        return None
    rng = np.random.default_rng(seed)
    per_chunk = max(1, CHUNK // x.size)
    means = np.concatenate(
        [
            x[rng.integers(0, x.size, size=(min(per_chunk, resamples - done), x.size))].mean(axis=1)
            for done in range(0, resamples, per_chunk)
        ]
    )
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return round(float(lo), 4), round(float(hi), 4)
