"""Token saliency by occlusion (``fast_measure_importance``; docs/algorithm.md, "Saliency").

Row k of the batch is the pruned prompt with position k replaced by the mask token. The importance of
position k for position j is ``1 - a_k[j] / a[j]``: 1 when masking k kills the activation at j, 0 when it
changes nothing, negative when masking helps. No clipping (as the original); ``a[j] == 0`` gives 0.

Savings over the original (same numbers): the doc-start token is never masked (it is never part of a
graph); rows stop at the last position whose importance is needed (the model is causal, so later tokens
cannot matter), and positions after that are not masked at all; the unmasked row comes from prune.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def masked_rows(tokens: Sequence[int], last: int, mask_id: int, first: int) -> list[tuple[int, ...]]:
    """Rows masking positions ``first..last`` one at a time, each cut after ``last``."""
    base = list(tokens[: last + 1])
    rows = []
    for k in range(first, last + 1):
        row = base.copy()
        row[k] = mask_id
        rows.append(tuple(row))
    return rows


def importance(base: np.ndarray, masked: Sequence[np.ndarray], first: int) -> np.ndarray:
    """Matrix ``I[k, j]`` over the prompt (``len(base)`` square) from the rows of :func:`masked_rows`."""
    n = len(base)
    out = np.zeros((n, n), dtype=np.float64)
    if not len(masked):
        return out
    m = len(masked[0])
    if any(len(row) != m for row in masked):  # not rows of masked_rows: one at a time
        for offset, row in enumerate(masked):
            out[first + offset, first + offset : len(row)] = _effect(base[: len(row)], row)[first + offset :]
        return out
    effect = _effect(base[:m], np.stack(masked))  # [rows, m], the same arithmetic row by row
    ks = first + np.arange(len(masked))
    out[ks, :m] = np.where(np.arange(m) >= ks[:, None], effect, 0.0)
    return out


def _effect(base: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``1 - rows / base`` where ``base`` is not 0, else 0."""
    nonzero = base != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(nonzero, rows / np.where(nonzero, base, 1.0), 1.0)
    return 1.0 - ratio
