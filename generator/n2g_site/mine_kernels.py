"""Mining's two per-batch loops on the CPU, compiled: the statistics and the top-k window merge.

On the CPU, a mining batch's bookkeeping with torch ops was ~20 small ops a layer, each a pass over its
tensor: the statistics (each row's max and min with their positions, the sum, the two-sided histogram) seven
passes over the layer's activations (~25 MB per 4,096-token batch of 1,536 neurons: ~64 ms a layer-batch on
one thread), and each example set's merge a sort, gathers, scatters and cumulative sums over [neurons,
k + rows] arrays. Here ``row_stats`` reads each row of activations once, while it sits in the first-level
cache, and ``merge_windows`` inserts each candidate into its neuron's ranks and cuts the window of the ones
that enter (benchmarks/README.md, "Mining", has the times). They are compiled by numba: torch has no fused
reduction with positions on the CPU, and ``torch.compile`` costs ~50 s a process there. On a GPU,
mine.StatsAccumulator and mine.TopK keep their torch ops, which run there without host syncs; the tests run
both ways on the CPU and compare them.

The results equal the torch ops' exactly: ``max(dim=1)``'s rule (the first position of the peak; a NaN is
the peak, its first position), the histogram's float32 codes (mine.CODE_BINS), TopK's order of the kept
windows (by peak, equal peaks by arrival). The sum is accumulated in float64 per neuron, at least as exact
as torch's float32 batch sum. One difference: a candidate whose peak is NaN or infinite never enters a kept set here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

try:  # a dependency; missing only where a source checkout runs without it (e.g. the GPU check's machine,
    # which cannot take llvmlite's 57 MB wheel): there mine keeps the torch ops on the CPU too (``AVAILABLE``)
    import numba

    AVAILABLE = True
except ImportError:  # tests/test_mine_device.py hides it
    AVAILABLE = False


def _compiled(function: Callable[..., None]) -> Callable[..., None]:
    return numba.njit(cache=True, nogil=True, boundscheck=False)(function) if AVAILABLE else function


@_compiled
def _row_stats(x, valid, code_bins, seq_max, seq_arg, seq_min, seq_argmin, total, hist):
    rows, positions, columns = x.shape
    bits = x.view(np.uint32)
    for b in range(rows):
        peak, at, low, low_at = seq_max[b], seq_arg[b], seq_min[b], seq_argmin[b]
        for d in range(columns):
            peak[d], low[d], at[d], low_at[d] = -np.inf, np.inf, 0, 0
        for t in range(positions):
            if not valid[b, t]:
                continue
            row, code = x[b, t], bits[b, t]
            for d in range(columns):  # branch-free, so the compiler vectorises it
                v = row[d]
                nan = v != v
                up = (v > peak[d]) | (nan & (peak[d] == peak[d]))
                peak[d] = v if up else peak[d]
                at[d] = t if up else at[d]
                down = (v < low[d]) | (nan & (low[d] == low[d]))
                low[d] = v if down else low[d]
                low_at[d] = t if down else low_at[d]
                total[d] += v
            for d in range(columns):
                hist[code_bins[(code[d] >> 22) & 1023], d] += 1


def row_stats(
    x: torch.Tensor, valid: np.ndarray, code_bins: np.ndarray, total: torch.Tensor, hist: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer-batch: ``x`` [B, T, D] float32 contiguous on the CPU, ``valid`` [B, T] bool (the positions
    that are text). Adds each text position's value into ``total`` [D] (float64) and its count into ``hist``
    [bins, D] (int64, bin-major, bins by ``code_bins``), both in place; returns each row's (max, its
    position, min, its position) over its text positions, [B, D] each (a row without text: -inf, 0, +inf, 0)."""
    rows, _, columns = x.shape
    peaks = [np.empty((rows, columns), dtype) for dtype in (np.float32, np.int64, np.float32, np.int64)]
    _row_stats(x.numpy(), valid, code_bins, *peaks, total.numpy(), hist.numpy())
    seq_max, seq_arg, seq_min, seq_argmin = (torch.from_numpy(a) for a in peaks)
    return seq_max, seq_arg, seq_min, seq_argmin


@_compiled
def _merge_windows(
    lowest,
    before,
    seq_peak,
    seq_arg,
    rows,
    arrival,
    acts,
    columns,
    tokens,
    lengths,
    docs,
    offsets,
    value,
    kept_arrival,
    kept_doc,
    kept_start,
    slot,
    store_tokens,
    store_acts,
):
    # Each candidate, in arrival order, is inserted after the kept peaks it does not beat (TopK's order), takes
    # the storage row of the last rank, which it pushes out, and has its window cut there. A window that enters
    # and is pushed out by a later row of the same batch is cut for nothing; that is rare after the first
    # batches, and cutting at once reads the row's activations while they are in cache. (Cutting afterwards,
    # by position, was tried: the indirection cost more than the strided reads it saved.)
    n, k = value.shape
    width = store_tokens.shape[2]
    positions = tokens.shape[1]
    for c in range(seq_peak.shape[0]):  # candidates in arrival order
        row = rows[c]
        for i in range(n):
            v = seq_peak[c, i]
            if not np.isfinite(v) or not (v < value[i, k - 1] if lowest else v > value[i, k - 1]):
                continue
            p = k - 1  # the rank it takes: the first it beats
            while p > 0 and (v < value[i, p - 1] if lowest else v > value[i, p - 1]):
                p -= 1
            free = slot[i, k - 1]
            for r in range(k - 1, p, -1):
                value[i, r], kept_arrival[i, r] = value[i, r - 1], kept_arrival[i, r - 1]
                kept_doc[i, r], kept_start[i, r], slot[i, r] = kept_doc[i, r - 1], kept_start[i, r - 1], slot[i, r - 1]
            peak = seq_arg[c, i]
            value[i, p], kept_arrival[i, p], slot[i, p] = v, arrival[c], free
            kept_doc[i, p], kept_start[i, p] = docs[row], offsets[row] + peak - before
            column = columns[i]
            for s in range(width):
                t = peak - before + s
                if 0 <= t < lengths[row] and t < positions:
                    store_tokens[i, free, s] = tokens[row, t]
                    store_acts[i, free, s] = acts[row, t, column]
                else:
                    store_tokens[i, free, s] = -1
                    store_acts[i, free, s] = np.nan


def merge_windows(
    top: Any,
    seq_peak: torch.Tensor,
    seq_arg: torch.Tensor,
    rows: torch.Tensor,
    arrival: torch.Tensor,
    acts: torch.Tensor,
    columns: torch.Tensor,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    docs: torch.Tensor,
    offsets: torch.Tensor,
) -> None:
    """mine.TopK.merge on the CPU (its arguments; ``acts`` float32), in place on ``top``'s tensors."""
    host = lambda t: t.contiguous().numpy()  # noqa: E731
    _merge_windows(
        top.lowest,
        top.before,
        host(seq_peak),
        host(seq_arg),
        host(rows),
        host(arrival),
        host(acts),
        host(columns),
        host(tokens.to(torch.int32)),
        host(lengths),
        host(docs.to(torch.int32)),
        host(offsets.to(torch.int32)),
        top.value.numpy(),
        top.arrival.numpy(),
        top.doc.numpy(),
        top.start.numpy(),
        top.slot.numpy(),
        top.store_tokens.numpy(),
        top.store_acts.numpy(),
    )
