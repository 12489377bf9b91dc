"""The mine stage: one streaming pass over the corpus for every selected neuron of every chosen layer.

For each neuron it keeps, per split (train / held-out), the top-k windows: the token where the neuron peaked
in a mined sequence, with ``context_before`` tokens before and ``context_after`` after, and the neuron's
activation at each; and the bottom-k windows alike, cut around each sequence's lowest activation and ranked by
the most negative peak first (a gated MLP's hook is signed: half a neuron can be below 0). Besides them, with
``--band-windows m`` > 0, a band sample per split: m windows drawn over the whole activation range, weighted
towards higher peaks (``BandSample``; grouped into the activation bands of store.BAND_EDGES afterwards). Each
sequence contributes at most one window per neuron and set. Equal peaks are ranked by document, then position
(``TopK.order``), so the kept windows do not depend on the batch order. For *every* neuron of the chosen
layers it also accumulates max, min, mean and a two-sided histogram of activations (store.HIST_EDGES), and it
keeps the first ``ordinary_tokens`` of held-out text whole with the selected neurons' activations ("ordinary
text": scored by the evaluate stage, where a graph that fires everywhere is caught). Memory is bounded:
O(neurons x k x window) for the examples and O(d_mlp x codes) for the stats, whatever the corpus size.

The running windows and statistics are tensors on the model's device (``TopK``, ``StatsAccumulator``).
Each batch is merged into them with torch ops only: a sort over the kept windows and the batch's
candidates, gathers, the histogram by float32 code (bits, not a search) with a scatter_add. Nothing is
read back per batch (no ``nonzero``, ``any`` or ``item`` on the data), so on a GPU the activations never
leave it. Which positions are text is known from the rows before the forward. The state is copied to the
host only for a checkpoint and at the end.

Output: ``mine/layer_{L:02d}.npz`` (store.MinedLayer, format store.MINED_FORMAT), ``corpus.json``,
``vocab.json``, and the run manifest ``run.json``, each written atomically. A layer whose file already
holds every selected neuron is not mined again.

``--shard i/n`` (mine_shards.py) runs the same corpus pass, reading the same documents, but puts through the
model only every n-th batch (batch number modulo n = i), and writes its running state to
``mine/shard_{i}of{n}.npz`` instead of layer files; ``n2g-site merge`` combines the n shards into the
layer files one process would have written.
"""

from __future__ import annotations

import io
import json
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from . import __version__, mine_kernels
from .config import Config, UserError
from .corpus import TokenRow, describe, load_documents, sequences
from .mine_kernels import merge_windows, row_stats
from .models import LoadedModel
from .progress import advance, bar, say
from .store import (
    HIST_EDGES,
    HIST_MAGNITUDES,
    HIST_ZERO_BIN,
    MINED_FORMAT,
    ExampleSet,
    LayerStats,
    MinedLayer,
    OrdinaryText,
    WorkDir,
    atomic_write_bytes,
    content_digest,
    write_json,
)

POOL_ROWS = 512  # rows read ahead and sorted by length, so batches carry little padding


@dataclass
class MineSummary:
    layers: list[int]
    tokens: int
    documents: int
    seconds: float
    skipped: bool

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class BatchRows:
    """One batch's host-known facts, moved to the accumulators' device once: all an update needs but the
    activations. Built from the rows alone (no activation is read), so it costs the device no sync."""

    tokens: torch.Tensor  # long [B, T], right-padded with 0
    lengths: torch.Tensor  # long [B]
    docs: torch.Tensor  # long [B]
    offsets: torch.Tensor  # long [B]
    invalid: torch.Tensor  # long [M]: flat positions (row * T + pos) that are no text (padding, doc-start)
    text: torch.Tensor  # long [B * T - M]: the other flat positions, in order
    splits: dict[str, torch.Tensor]  # split -> its rows (batch indices); only the splits the batch has
    heldout: list[tuple[int, int, int]]  # (row, length, doc) of each held-out row, for the ordinary sample

    @classmethod
    def build(cls, batch: list[TokenRow], bos_id: int | None, device: torch.device) -> BatchRows:
        lengths = torch.tensor([len(r.tokens) for r in batch])
        tokens = torch.zeros((len(batch), int(lengths.max())), dtype=torch.long)
        for i, row in enumerate(batch):
            tokens[i, : len(row.tokens)] = torch.tensor(row.tokens)
        valid = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
        if bos_id is not None:  # the doc-start token is no text: its (often huge) activation is skipped
            valid &= tokens != bos_id
        invalid = (~valid).flatten().nonzero().flatten()
        text = valid.flatten().nonzero().flatten()
        split = np.array([r.split for r in batch])
        splits = {
            name: torch.from_numpy(np.flatnonzero(split == name)).to(device)
            for name in ("train", "heldout")
            if (split == name).any()
        }
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return cls(
            tokens=move(tokens),
            lengths=move(lengths),
            docs=move(torch.tensor([r.doc for r in batch])),
            offsets=move(torch.tensor([r.offset for r in batch])),
            invalid=move(invalid),
            text=move(text),
            splits=splits,
            heldout=[(i, len(r.tokens), r.doc) for i, r in enumerate(batch) if r.split == "heldout"],
        )


def _cut(source: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """``source.view(-1).take(where)`` for a contiguous ``source`` and [E, W] flat positions ``where``."""
    return source.view(1, -1).gather(1, where.view(1, -1)).view(where.shape)


NO_ARRIVAL = torch.iinfo(torch.int64).max  # an empty slot's arrival: after every window
ROW_BITS = 20  # a window's arrival = batch number << ROW_BITS | row in the batch


class TopK:
    """Running top-k windows of n neurons (or bottom-k: ``lowest``, ranked by the most negative peak): tensors
    on one device, merged batch by batch with torch ops only (no value is read back to the host until
    ``state`` or ``result``; on the CPU, where reading back costs nothing, only the windows that enter are
    cut, the same windows a device cuts for every candidate).

    Windows are kept in a total order: by peak value, equal peaks by arrival (batch number, then row in the
    batch: the earlier window of the pass first). So the kept set does not depend on how the batches are
    split between shards (mine_shards._top_k merges in the same order), ties included (a GELU's many
    windows at its minimum, -0.17). The ranks' small arrays (value, doc, start, arrival) are re-sorted per
    batch; the windows themselves stay where they were written (``slot``: each rank's storage row), so a
    batch writes only its entering windows, in the storage rows of the windows they push out.
    """

    FIELDS = ("value", "tokens", "acts", "doc", "start", "arrival")

    value: torch.Tensor  # [n, k] the kept windows' peaks, by rank (and below: doc, start, arrival)
    doc: torch.Tensor
    start: torch.Tensor
    arrival: torch.Tensor
    slot: torch.Tensor  # [n, k] long: each rank's row in the storage below
    store_tokens: torch.Tensor  # [n, k + 1, W] the windows' tokens; row k takes the writes of no window
    store_acts: torch.Tensor  # [n, k + 1, W] their activations

    def __init__(
        self, n: int, k: int, before: int, after: int, device: torch.device | str = "cpu", *, lowest: bool = False
    ) -> None:
        self.n, self.k, self.before, self.after, self.lowest = n, k, before, after, lowest
        self.width = before + 1 + after
        self.device = torch.device(device)
        self.compact = self.device.type == "cpu"  # cut only the entering windows (reads their count back)
        self.compiled = self.device.type == "cpu" and mine_kernels.AVAILABLE  # float32 batches: merge_windows
        self.restore(self.empty_state())

    def empty_state(self) -> dict[str, np.ndarray]:
        empty = ExampleSet.empty(self.n, self.k, self.width, lowest=self.lowest)
        return {
            **{name: getattr(empty, name) for name in self.FIELDS if name != "arrival"},
            "arrival": np.full((self.n, self.k), NO_ARRIVAL, np.int64),
        }

    def update(
        self,
        acts: torch.Tensor,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        valid: torch.Tensor,
        docs: torch.Tensor,
        offsets: torch.Tensor,
        number: int = 0,
    ) -> None:
        """Merge batch ``number``: ``acts`` [B, T, n] of the n neurons, ``tokens`` [B, T] right-padded,
        ``valid`` [B, T] the positions that may be a peak (text tokens, not padding or doc-start)."""
        if self.lowest:
            seq_peak, seq_arg = acts.masked_fill(~valid[:, :, None], torch.inf).min(dim=1)  # [B, n]
        else:
            seq_peak, seq_arg = acts.masked_fill(~valid[:, :, None], -torch.inf).max(dim=1)
        rows = torch.arange(acts.shape[0], device=acts.device)
        self.merge(
            seq_peak,
            seq_arg,
            rows,
            (number << ROW_BITS) + rows,
            acts.contiguous(),
            torch.arange(acts.shape[2], device=acts.device),
            tokens,
            lengths,
            docs,
            offsets,
        )

    def merge(
        self,
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
        """Merge R candidate rows: ``seq_peak``/``seq_arg`` [R, n] each row's peak value and position per
        neuron (its max, or its min when ``lowest``, over its valid positions), ``rows`` [R] their index in
        the batch and ``arrival`` [R] their place in the pass (increasing over the pass); ``acts`` [B, T, D]
        a layer's activations (contiguous), ``columns`` [n] the neurons' columns in it; ``tokens`` [B, T],
        the rest [B]."""
        if self.compiled and acts.dtype == torch.float32:
            merge_windows(self, seq_peak, seq_arg, rows, arrival, acts, columns, tokens, lengths, docs, offsets)
            return
        k = self.k
        value = seq_peak.T  # [n, R]
        finite = torch.isfinite(value)  # a row without text offers nothing: it ranks with the empty slots
        cand_arrival = torch.where(finite, arrival[None, :], NO_ARRIVAL)
        cand_doc = torch.where(finite, docs[rows].to(torch.int32)[None, :], -1)
        cand_start = torch.where(finite, (offsets[rows][None, :] + seq_arg.T - self.before).to(torch.int32), 0)
        # The kept ranks come before the candidates, which come in arrival order: a stable sort by value alone
        # ranks equal peaks by arrival.
        values = torch.cat([self.value, value], dim=1)  # [n, k + R]
        order = values.argsort(dim=1, stable=True, descending=not self.lowest)[:, :k]
        self.value = values.gather(1, order)
        self.arrival = torch.cat([self.arrival, cand_arrival], dim=1).gather(1, order)
        self.doc = torch.cat([self.doc, cand_doc], dim=1).gather(1, order)
        self.start = torch.cat([self.start, cand_start], dim=1).gather(1, order)
        # Storage: the m-th kept rank pushed out (in rank order) gives its row to the m-th entering candidate.
        kept = torch.zeros(values.shape, dtype=torch.bool, device=self.device).scatter_(1, order, True)
        enter, dropped = kept[:, k:], ~kept[:, :k]
        freed = torch.full((self.n, k + 1), k, dtype=torch.long, device=self.device)
        freed.scatter_(1, torch.where(dropped, dropped.cumsum(1) - 1, k), self.slot)
        dest = torch.where(enter, freed.gather(1, (enter.cumsum(1) - 1).clamp_(min=0)), k)  # [n, R]; k: none
        self.slot = torch.cat([self.slot, dest], dim=1).gather(1, order)
        if self.compact:
            neuron, cand = enter.nonzero(as_tuple=True)
        else:  # every candidate, the ones that do not enter written to row k: no sync
            neuron = torch.arange(self.n, device=self.device).repeat_interleave(value.shape[1])
            cand = torch.arange(value.shape[1], device=self.device).repeat(self.n)
        self._write(neuron, dest[neuron, cand], rows[cand], seq_arg.T[neuron, cand], acts, columns, tokens, lengths)

    def _write(
        self,
        neuron: torch.Tensor,
        dest: torch.Tensor,
        row: torch.Tensor,
        peak: torch.Tensor,
        acts: torch.Tensor,
        columns: torch.Tensor,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
    ) -> None:
        """Cut E windows (``neuron``, batch ``row``, ``peak`` position; [E] each) and write them to storage rows
        ``dest``. Positions outside the row's text get token -1 and activation NaN."""
        width = tokens.shape[1]
        padded = torch.full(
            (tokens.shape[0], self.before + width + self.after), -1, dtype=torch.int32, device=tokens.device
        )
        padded[:, self.before : self.before + width] = torch.where(
            torch.arange(width, device=tokens.device) < lengths[:, None], tokens, -1
        )
        steps = torch.arange(self.width, device=tokens.device)
        # gather on a [1, numel] view, not take: the same elements, 2-5x faster on the CPU
        cut_tokens = _cut(padded, (row * padded.shape[1] + peak)[:, None] + steps)  # [E, W]
        # Activations of positions outside the row are read from a neighbour (or clamped into the tensor), then
        # masked by their -1 token.
        base = (row * width + peak - self.before) * acts.shape[2] + columns[neuron]
        where = (base[:, None] + steps * acts.shape[2]).clamp_(0, acts.numel() - 1)
        cut_acts = _cut(acts, where).float()
        cut_acts.masked_fill_(cut_tokens < 0, torch.nan)
        self.store_tokens[neuron, dest] = cut_tokens
        self.store_acts[neuron, dest] = cut_acts

    def state(self) -> dict[str, np.ndarray]:
        """The kept windows by rank, on the host (what checkpoints and shard files hold)."""
        rank = self.slot[:, :, None].expand(-1, -1, self.width)
        return {
            "value": self.value.cpu().numpy(),
            "tokens": self.store_tokens.gather(1, rank).cpu().numpy(),
            "acts": self.store_acts.gather(1, rank).cpu().numpy(),
            "doc": self.doc.cpu().numpy(),
            "start": self.start.cpu().numpy(),
            "arrival": self.arrival.cpu().numpy(),
        }

    def restore(self, state: dict[str, np.ndarray]) -> None:
        move = lambda a: torch.from_numpy(np.array(a)).to(self.device)  # noqa: E731
        self.value, self.doc, self.start, self.arrival = (move(state[n]) for n in ("value", "doc", "start", "arrival"))
        self.slot = torch.arange(self.k, device=self.device).repeat(self.n, 1)
        empty = ExampleSet.empty(self.n, 1, self.width)
        self.store_tokens = move(np.concatenate([state["tokens"], empty.tokens], axis=1))
        self.store_acts = move(np.concatenate([state["acts"], empty.acts], axis=1))

    def result(self) -> ExampleSet:
        host = self.state()
        return ExampleSet(
            tokens=host["tokens"],
            acts=host["acts"],
            doc=host["doc"],
            start=host["start"],
            pivot=np.where(host["doc"] >= 0, self.before, 0).astype(np.int32),
            value=host["value"].astype(np.float32),
        )


BAND_GAMMA = 2.0  # a band sample's weight is peak ** BAND_GAMMA (BandSample)
_MASK32 = 0xFFFFFFFF
_MIX = 0x45D9F3B  # the multiplier of a 32-bit integer hash (x ^= x >> 16; x *= _MIX, twice; x ^= x >> 16)
_SALT = 0x9E3779B9


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash of int64 ``x`` in [0, 2**32): products stay below 2**59, so no op overflows and
    every device computes the same bits."""
    x = ((x >> 16) ^ x) * _MIX & _MASK32
    x = ((x >> 16) ^ x) * _MIX & _MASK32
    return (x >> 16) ^ x


def band_uniform(doc: torch.Tensor, start: torch.Tensor, neuron: torch.Tensor) -> torch.Tensor:
    """A fixed pseudo-random number in (0, 1), float32, for each window (document, window start, neuron; int
    tensors that broadcast together): the same whichever batch, shard or run the window is seen in."""
    h = _mix32((doc.long() ^ _SALT) & _MASK32)
    h = _mix32(h ^ (start.long() & _MASK32))
    h = _mix32(h ^ (neuron.long() & _MASK32))
    return ((h >> 9).float() + 0.5) * 2.0**-23  # 23 bits and a half: exact in float32, never 0 or 1


def band_key(peak: torch.Tensor, doc: torch.Tensor, start: torch.Tensor, neuron: torch.Tensor) -> torch.Tensor:
    """Efraimidis-Spirakis keys of windows peaking at ``peak``: log(u) / peak ** BAND_GAMMA, with u =
    band_uniform; -inf where the peak is not above 0 (never sampled)."""
    weight = peak.clamp(min=0).pow(BAND_GAMMA)
    key = torch.log(band_uniform(doc, start, neuron)) / weight
    return torch.where(weight > 0, key, -torch.inf)


class BandSample(TopK):
    """A running weighted sample without replacement of m windows per neuron, spread over the activation range:
    each sequence's peak window (as TopK cuts it) has the key ``band_key`` and the m highest keys are kept.

    Why this design. Sampling by Efraimidis-Spirakis keys, log(u) / w with u uniform and weight w =
    peak ** BAND_GAMMA, draws m windows without replacement with probability growing with the weight, so the
    sample leans towards higher peaks (the moderately activating contexts the fit and pages want: most
    sequences barely move a sparse neuron) and still covers the range. Keeping the top m keys is a top-k, so
    the sample reuses TopK's device-side merge (one sort of [neurons, m + rows] keys a batch, only torch ops,
    no host sync) and its order (equal keys by arrival), and merging shards is mine_shards._top_k on the keys:
    the same windows one process keeps. u is a hash of (document, window start, neuron) computed with integer
    ops, not a random stream, so a window's key does not depend on the batch order, the batch it came in or
    the shard. The weights are the raw peaks: the ranking of log(u) / w does not change when every w is
    scaled, so the neuron's final max (unknown until the end) is not needed; the bands (store.BAND_EDGES,
    shares of that max) are formed from the sample afterwards.

    The running state holds the keys where TopK holds peak values; ``result`` puts the peaks back (the
    window's activation at its pivot, which is the peak exactly) and orders the windows by them, highest
    first (equal peaks: by key rank).
    """

    def __init__(self, n: int, m: int, before: int, after: int, device: torch.device | str = "cpu") -> None:
        super().__init__(n, m, before, after, device)

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("a band sample is merged with merge(), which needs the neurons' columns")

    def merge(
        self,
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
        """As TopK.merge, ``columns`` [n] being the neurons' ids (they seed the keys)."""
        start = offsets[rows][:, None] + seq_arg - self.before  # [R, n], as TopK computes it
        key = band_key(seq_peak, docs[rows][:, None], start, columns[None, :])
        super().merge(key, seq_arg, rows, arrival, acts, columns, tokens, lengths, docs, offsets)

    def result(self) -> ExampleSet:
        ex = super().result()
        filled = ex.doc >= 0
        ex.value = np.where(filled, ex.acts[:, :, self.before], -np.inf).astype(np.float32)
        order = np.argsort(-ex.value.astype(np.float64), axis=1, kind="stable")
        for name in ("tokens", "acts", "doc", "start", "pivot", "value"):
            array = getattr(ex, name)
            setattr(ex, name, np.take_along_axis(array, order if array.ndim == 2 else order[:, :, None], axis=1))
        return ex


class OrdinarySampler:
    """Keeps the first held-out rows whole, up to a token budget, with the selected neurons' activations."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.tokens: list[torch.Tensor] = []
        self.acts: list[torch.Tensor] = []  # [n, len] each, on the host
        self.docs: list[int] = []

    def wants(self) -> bool:
        return self.used < self.budget

    def add(self, tokens: torch.Tensor, acts: torch.Tensor, length: int, doc: int) -> None:
        """One row: ``tokens`` [T], ``acts`` [T, n] of the selected neurons (any device; copied to the host)."""
        self.tokens.append(tokens[:length].to("cpu", copy=True))
        self.acts.append(acts[:length].T.to("cpu", torch.float16, copy=True))
        self.docs.append(doc)
        self.used += length

    def state(self) -> dict[str, np.ndarray]:
        n = self.acts[0].shape[0] if self.acts else 0
        return {
            "tokens": torch.cat(self.tokens).numpy() if self.tokens else np.zeros(0, np.int64),
            "lengths": np.array([len(t) for t in self.tokens], dtype=np.int64),
            "acts": torch.cat(self.acts, dim=1).numpy() if self.acts else np.zeros((n, 0), np.float16),
            "docs": np.array(self.docs, dtype=np.int64),
        }

    def restore(self, state: dict[str, np.ndarray]) -> None:
        bounds = np.cumsum(np.concatenate([[0], state["lengths"]]))
        self.tokens = [torch.from_numpy(state["tokens"][a:b].copy()) for a, b in zip(bounds, bounds[1:])]
        self.acts = [torch.from_numpy(state["acts"][:, a:b].copy()) for a, b in zip(bounds, bounds[1:])]
        self.docs = [int(d) for d in state["docs"]]
        self.used = int(state["lengths"].sum())

    def result(self, n: int) -> OrdinaryText:
        width = max((len(t) for t in self.tokens), default=0)
        tokens = np.full((len(self.tokens), width), -1, np.int32)
        acts = np.full((n, len(self.tokens), width), np.nan, np.float16)
        for r, (t, a) in enumerate(zip(self.tokens, self.acts)):
            tokens[r, : len(t)] = t.numpy()
            acts[:, r, : len(t)] = a.numpy()
        return OrdinaryText(tokens=tokens, acts=acts, doc=np.array(self.docs, dtype=np.int32))


def _code_bins() -> np.ndarray:
    """The histogram bin (store.HIST_EDGES) of each of the 1,024 float32 codes ``bits >> 22``: sign, exponent
    and first mantissa bit, so a code's values lie between two consecutive half-octave edges."""
    codes = np.arange(1024)
    sign, mag = codes >> 9, codes & 511  # mag = 2 * biased exponent + first mantissa bit
    low = 2 * (127 - 10)  # the code of 2**-10, HIST_MAGNITUDES[0]
    step = np.clip(mag - low, -1, len(HIST_MAGNITUDES) - 1)  # -1: below 2**-10; 40: 2**10 and above
    bins = np.where(sign == 0, HIST_ZERO_BIN + 1 + step, HIST_ZERO_BIN - 1 - step)
    bins = np.where(step < 0, HIST_ZERO_BIN, bins)
    bins[mag == 511] = len(HIST_EDGES)  # NaN (quiet, either sign): the last bin, with +inf
    return bins.astype(np.int64)


CODE_BINS = _code_bins()
_CODE_BUFFERS: dict[torch.device, torch.Tensor] = {}  # a batch's codes, kept between batches and layers
INF_CODE = 255 << 1  # +inf: biased exponent 255, mantissa 0, sign 0
FLUSH_TOKENS = 1 << 30  # the int32 code counts are added into the int64 histogram before they could overflow


class StatsAccumulator:
    """Max, min, mean and the two-sided histogram of every neuron of a layer: tensors on one device, updated
    with torch ops only, except on the CPU, where one compiled loop (mine_kernels.row_stats) computes the same
    and counts into the bins directly (``compiled``; the tests run both ways).

    The histogram is counted by float32 code (``bits >> 22``, 1,024 codes, store.HIST_EDGES are code
    boundaries) in int32 tensors [1024, d_mlp] (bin-major: a batch adds to it with one scatter_add), and
    folded into the int64 histogram of store.HIST_EDGES' bins by ``flush`` (at every checkpoint, at the end,
    and before a count could pass 2**31). With an even ``d_mlp`` and a little-endian device the codes of two
    neighbouring columns are read from one int64 word, so no int32 -> int64 conversion pass is needed.
    """

    def __init__(self, d_mlp: int, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.d_mlp = d_mlp
        self.max = torch.full((d_mlp,), -torch.inf, device=self.device)
        self.min = torch.full((d_mlp,), torch.inf, device=self.device)
        self.sum = torch.zeros(d_mlp, dtype=torch.float64, device=self.device)
        self.hist = torch.zeros((len(HIST_EDGES) + 1, d_mlp), dtype=torch.int64, device=self.device)
        self.paired = d_mlp % 2 == 0 and sys.byteorder == "little"
        self._code_shape = (2, len(CODE_BINS), d_mlp // 2) if self.paired else (1, len(CODE_BINS), d_mlp)
        self._codes: torch.Tensor | None = None  # made by the torch ops' first count (the compiled loop needs none)
        self.code_bins = torch.from_numpy(CODE_BINS).to(self.device)
        self.one = torch.ones((), dtype=torch.int32, device=self.device)
        # On the CPU one compiled loop computes the statistics (mine_kernels.row_stats); elsewhere torch ops, no sync
        self.compiled = self.device.type == "cpu" and mine_kernels.AVAILABLE
        self.masked = 0  # no-text positions counted in the +inf code since the last flush (all set to +inf)
        self.pending = 0  # positions counted in ``codes`` since the last flush
        self.count = 0

    def update(self, acts: torch.Tensor, invalid: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Add a batch: ``acts`` [B, T, d_mlp]; ``invalid`` the flat positions (row * T + pos) that are no
        text (host-known, so selecting them costs the device no sync). Returns each row's peaks per neuron
        over its text positions, [B, d_mlp] each: (max, its position, min, its position); a row without text
        has max -inf, min +inf (the top-k and bottom-k candidates).

        With torch ops (a device), the positions that are no text are set in place to -inf for the max, +inf
        for the min and the histogram (the +inf code's count is corrected by how many there were), 0 for the
        sum, and restored after; so call this under ``torch.inference_mode()`` when ``acts`` is an inference
        tensor. The sum is then each batch's float32 sum (torch's cascade summation) added into a float64
        total; the compiled loop (the CPU) skips those positions and adds every value in float64."""
        x = acts if acts.dtype == torch.float32 and acts.is_contiguous() else acts.float().contiguous()
        if self.compiled:
            return self._update_compiled(x, invalid)
        flat = x.view(-1, x.shape[-1])
        kept = flat[invalid]  # index_put_ touches only these rows (index_fill_ would walk the whole tensor)
        flat[invalid] = -torch.inf
        seq_max, seq_arg = x.max(dim=1)
        flat[invalid] = torch.inf
        seq_min, seq_argmin = x.min(dim=1)
        self._count(flat)
        flat[invalid] = 0.0
        self.sum += flat.sum(dim=0).double()
        flat[invalid] = kept
        self.max = torch.maximum(self.max, seq_max.amax(dim=0))
        self.min = torch.minimum(self.min, seq_min.amin(dim=0))
        self.masked += invalid.numel()
        self.pending += flat.shape[0]
        self.count += flat.shape[0] - invalid.numel()
        if self.pending >= FLUSH_TOKENS:
            self.flush()
        return seq_max, seq_arg, seq_min, seq_argmin

    def _update_compiled(self, x: torch.Tensor, invalid: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``update`` on the CPU: mine_kernels.row_stats adds into the float64 sum and the bins directly."""
        valid = np.ones(x.shape[0] * x.shape[1], dtype=bool)
        valid[invalid.numpy()] = False
        seq_max, seq_arg, seq_min, seq_argmin = row_stats(x, valid.reshape(x.shape[:2]), CODE_BINS, self.sum, self.hist)
        self.max = torch.maximum(self.max, seq_max.amax(dim=0))
        self.min = torch.minimum(self.min, seq_min.amin(dim=0))
        self.count += int(valid.sum())
        return seq_max, seq_arg, seq_min, seq_argmin

    @property
    def codes(self) -> torch.Tensor:
        """The int32 code counts [parts, code, column] of the torch ops (4 KiB per neuron: made when first
        counted into, so the CPU's compiled loop, which counts into the bins directly, never holds them)."""
        if self._codes is None:
            with torch.inference_mode(False):  # a normal tensor: flushed and restored outside inference mode too
                self._codes = torch.zeros(self._code_shape, dtype=torch.int32, device=self.device)
        return self._codes

    def _count(self, flat: torch.Tensor) -> None:
        """Count each value of ``flat`` [N, d_mlp] (float32, contiguous) under its code. The codes go to a
        buffer kept between batches: a fresh one would be as big as the activations, and first touching
        its pages costs more than the shifts."""
        mask = len(CODE_BINS) - 1
        if self.paired:
            words = flat.view(torch.int64)  # [N, d_mlp / 2]: column 2j in the low 32 bits, 2j + 1 in the high
            code = self._buffer(words.shape)
            for part, shift in enumerate((22, 54)):
                torch.bitwise_right_shift(words, shift, out=code).bitwise_and_(mask)
                self.codes[part].scatter_add_(0, code, self.one.expand(code.shape))
        else:
            code = self._buffer(flat.shape)
            code.copy_(torch.bitwise_right_shift(flat.view(torch.int32), 22)).bitwise_and_(mask)
            self.codes[0].scatter_add_(0, code, self.one.expand(code.shape))

    def _buffer(self, shape: torch.Size) -> torch.Tensor:
        """An int64 tensor of ``shape`` ([N, columns]) in the buffer this device's accumulators share (the
        layers are updated one after another), grown when a batch is bigger."""
        buffer = _CODE_BUFFERS.get(self.device)
        if buffer is None or buffer.numel() < shape.numel():
            with torch.inference_mode(False):  # a normal tensor: writable in and out of inference mode
                buffer = torch.empty(shape.numel(), dtype=torch.int64, device=self.device)
            _CODE_BUFFERS[self.device] = buffer
        return buffer[: shape.numel()].view(shape)

    def flush(self) -> None:
        """Fold the code counts into the histogram's bins."""
        if not self.pending:
            return
        codes = self.codes.permute(1, 2, 0).reshape(len(CODE_BINS), self.d_mlp).long()  # columns interleaved back
        codes[INF_CODE] -= self.masked
        self.hist.index_add_(0, self.code_bins, codes)
        self.codes.zero_()
        self.masked = self.pending = 0

    def state(self) -> dict[str, np.ndarray]:  # the histogram neuron-major and flat, as before
        self.flush()
        return {
            "max": self.max.cpu().numpy(),
            "min": self.min.cpu().numpy(),
            "sum": self.sum.cpu().numpy(),
            "hist": self.hist.T.contiguous().flatten().cpu().numpy(),
            "count": np.array(self.count),
        }

    def restore(self, state: dict[str, np.ndarray]) -> None:
        for name in ("max", "min", "sum"):
            setattr(self, name, torch.from_numpy(np.array(state[name])).to(self.device))
        self.hist = torch.from_numpy(np.array(state["hist"]).reshape(self.d_mlp, -1).T.copy()).to(self.device)
        if self.hist.shape[0] != len(HIST_EDGES) + 1:
            raise ValueError(f"a histogram of {self.hist.shape[0]} bins is not mine format {MINED_FORMAT}'s")
        if self._codes is not None:
            self._codes.zero_()
        self.masked = self.pending = 0
        self.count = int(state["count"])

    def result(self) -> LayerStats:
        host = self.state()
        return LayerStats(
            max=host["max"].astype(np.float32),
            min=host["min"].astype(np.float32),
            mean=(host["sum"] / max(self.count, 1)).astype(np.float32),
            hist=host["hist"].reshape(self.d_mlp, -1),
            tokens=self.count,
        )


class Checkpoint:
    """``mine/checkpoint.npz``: the running state of an unfinished pass, saved atomically now and then.

    The batch stream is deterministic (same corpus order, pools and batches), so a rerun with the same
    options skips the batches the checkpoint covers and continues; the final files equal those of an
    uninterrupted pass. A checkpoint for another plan (other layers or neurons), or of another format
    (store.MINED_FORMAT: written by an older n2g-site), is ignored.
    """

    def __init__(self, work: WorkDir, plan: dict[int, tuple[int, ...]], name: str = "checkpoint.npz") -> None:
        self.path = work.root / "mine" / name
        self.key = json.dumps({str(k): list(v) for k, v in sorted(plan.items())})

    def save(self, batches: int, tokens: int, parts: dict[str, Any]) -> None:
        arrays: dict[str, Any] = {
            "_format": np.array(MINED_FORMAT),
            "_key": np.array(self.key),
            "_batches": np.array(batches),
            "_tokens": np.array(tokens),
        }
        for part, obj in parts.items():
            arrays.update({f"{part}/{name}": value for name, value in obj.state().items()})
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.path, buf.getvalue())

    def load(self, parts: dict[str, Any]) -> tuple[int, int]:
        """Restore ``parts`` in place; returns (batches, tokens) done, (0, 0) if there is nothing to resume."""
        if not self.path.exists():
            return 0, 0
        try:
            with np.load(self.path) as z:
                if str(z["_key"]) != self.key or int(z["_format"]) != MINED_FORMAT:  # KeyError: older format
                    return 0, 0
                for part, obj in parts.items():
                    prefix = f"{part}/"
                    obj.restore({k[len(prefix) :]: z[k] for k in z.files if k.startswith(prefix)})
                return int(z["_batches"]), int(z["_tokens"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # not ours or unreadable: start over
            return 0, 0

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def identity(cfg: Config, model: LoadedModel | None) -> dict:
    """What must match for two runs to share a work dir."""
    return {
        "model": cfg.model,
        "corpus": cfg.corpus,
        "seed": cfg.seed,
        "hook": model.hook_template if model is not None else cfg.hook,
        "mine": asdict(cfg.mine),
        "dtype": cfg.dtype,  # activations in bf16 differ from fp32 ones by a few % of a neuron's max
        "device_type": cfg.device.split(":")[0],  # another device's kernels round differently
    }


def plan(cfg: Config, n_layers: int, d_mlp: int, work: WorkDir) -> dict[int, tuple[int, ...]]:
    """Layers that need mining, each with the neurons to keep (old ones kept, new ones added)."""
    todo = {}
    neurons = cfg.select_neurons(d_mlp)
    for layer in cfg.select_layers(n_layers):
        have: tuple[int, ...] = ()
        if work.mined(layer).exists():
            have = tuple(int(n) for n in MinedLayer.load(work.mined(layer)).neurons)
            if set(neurons) <= set(have):
                continue
        todo[layer] = tuple(sorted(set(have) | set(neurons)))
    return todo


def _batches(rows: Iterable[TokenRow], batch_tokens: int) -> Iterator[list[TokenRow]]:
    """Group rows into batches of at most ``batch_tokens`` padded tokens, similar lengths together."""
    pool: list[TokenRow] = []

    def flush() -> Iterator[list[TokenRow]]:
        pool.sort(key=lambda r: len(r.tokens))
        batch: list[TokenRow] = []
        for row in pool:
            if batch and (len(batch) + 1) * len(row.tokens) > batch_tokens:
                yield batch
                batch = []
            batch.append(row)
        if batch:
            yield batch
        pool.clear()

    for row in rows:
        pool.append(row)
        if len(pool) >= POOL_ROWS:
            yield from flush()
    yield from flush()


def _budget(rows: Iterable[TokenRow], max_tokens: int) -> Iterator[TokenRow]:
    used = 0
    for row in rows:
        if max_tokens and used >= max_tokens:
            return
        used += len(row.tokens)
        yield row


@contextmanager
def host_threads(device: torch.device) -> Iterator[None]:
    """On the CPU, the bookkeeping in one intra-op thread (then the thread count before). Its ops are either
    small (the [neurons, k + rows] ranks, the entering windows) or one memory-bound pass over a batch; on
    2 shared cores (benchmarks/README.md, "Mining") two threads made them 2-5x slower, in wall and CPU time,
    than one. One thread also makes the float32 batch sums the same whatever the thread count. Other
    devices: nothing changes."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


SPLITS = ("train", "heldout")
SETS = MinedLayer.SETS[:4]  # the top sets of SPLITS, then their bottom sets ("bottom_" + split)
BAND_SETS = MinedLayer.SETS[4:]  # their band samples ("band_" + split)


def example_sets(
    n: int, k: int, before: int, after: int, device: torch.device | str = "cpu", band: int = 0
) -> dict[str, TopK]:
    """A layer's running example sets, by MinedLayer's names: top-k and bottom-k windows of each split, and
    with ``band`` > 0 a band sample of that many windows per split (BandSample)."""
    sets = {name: TopK(n, k, before, after, device, lowest=name.startswith("bottom_")) for name in SETS}
    if band > 0:
        sets.update({name: BandSample(n, band, before, after, device) for name in BAND_SETS})
    return sets


def example_results(sets: dict[str, TopK]) -> dict[str, Any]:
    """The example sets' final windows by MinedLayer field name (ExampleSet each), to build a MinedLayer."""
    return {name: top.result() for name, top in sets.items()}


def _accumulate(
    acts: dict[int, torch.Tensor],
    rows: BatchRows,
    layers: list[int],
    picks: dict[int, torch.Tensor],
    stats: dict[int, StatsAccumulator],
    tops: dict[tuple[int, str], TopK],
    ordinary: dict[int, OrdinarySampler],
    ordinary_batches: list[int] | None = None,
    number: int = 0,
) -> None:
    """Fold batch ``number``'s activations into every layer's accumulators, on the activations' device;
    ``tops`` holds each layer's four example sets (SETS) and its band samples (BAND_SETS) if any;
    ``ordinary_batches`` gets the batch number of each ordinary-text row taken (merging shards orders by it)."""
    with torch.inference_mode(), host_threads(next(iter(stats.values())).device):  # in place: inference tensors
        for layer in layers:
            layer_acts = acts[layer].to(stats[layer].device).contiguous()
            seq_max, seq_arg, seq_min, seq_argmin = stats[layer].update(layer_acts, rows.invalid)
            columns = picks[layer]
            every = columns.numel() == layer_acts.shape[2]  # --all: the picks are every column, in order
            for name, sel in rows.splits.items():
                arrival = (number << ROW_BITS) + sel
                for prefix, peak, arg in (
                    ("", seq_max, seq_arg),
                    ("bottom_", seq_min, seq_argmin),
                    ("band_", seq_max, seq_arg),
                ):
                    if (layer, prefix + name) not in tops:  # no band sample: --band-windows 0
                        continue
                    tops[(layer, prefix + name)].merge(
                        peak[sel] if every else peak[sel[:, None], columns],
                        arg[sel] if every else arg[sel[:, None], columns],
                        sel,
                        arrival,
                        layer_acts,
                        columns,
                        rows.tokens,
                        rows.lengths,
                        rows.docs,
                        rows.offsets,
                    )
            for i, length, doc in rows.heldout:
                if not ordinary[layer].wants():
                    break
                ordinary[layer].add(rows.tokens[i], layer_acts[i] if every else layer_acts[i][:, columns], length, doc)
                if layer == layers[0] and ordinary_batches is not None:
                    ordinary_batches.append(number)


def mine(cfg: Config, load_model: Callable[[], LoadedModel], work: WorkDir) -> MineSummary:  # noqa: C901 - one streaming pass; its shard and checkpoint branches are short
    """Mine what the selection needs; the model is loaded only if something is missing."""
    if work.manifest.exists():
        old = work.load_manifest()
        if "model_info" in old and all(old.get(k) == v for k, v in identity(cfg, None).items() if k != "hook"):
            info = old["model_info"]
            if not plan(cfg, info["n_layers"], info["d_mlp"], work):
                say("mine: every selected neuron is already mined, nothing to do")
                return MineSummary(list(cfg.select_layers(info["n_layers"])), 0, 0, 0.0, True)
    model = load_model()
    manifest = work.check_identity(identity(cfg, model))
    todo = plan(cfg, model.n_layers, model.d_mlp, work)
    if not todo:
        say("mine: every selected neuron is already mined, nothing to do")
        return MineSummary(list(cfg.select_layers(model.n_layers)), 0, 0, 0.0, True)
    m = cfg.mine
    seq_len = min(m.seq_len, model.n_ctx)
    shard, shards = cfg.shard_index
    from . import mine_shards  # it builds on this module's accumulators

    if shards > 1 and mine_shards.shard_done(work, shard, shards, todo):
        say(f"mine: shard {cfg.shard} is already mined; `n2g-site merge` combines the shards")
        return MineSummary(sorted(todo), 0, 0, 0.0, True)

    def stream(index: list[dict[str, str]]) -> Iterator[TokenRow]:
        docs = load_documents(cfg.corpus, seed=cfg.seed, bad_utf8=cfg.bad_utf8)
        rows = sequences(
            docs, model.encode, bos_id=model.bos_id, seq_len=seq_len, held_out=m.held_out, seed=cfg.seed, index=index
        )
        return _budget(rows, m.max_tokens)

    if not cfg.corpus.startswith("hf:"):  # local text: tokenizing it once more costs ~1 s per 1M tokens
        train_rows = sum(row.split == "train" for row in stream([]))
        if train_rows < m.top_k:
            raise UserError(
                f"--top-k {m.top_k} is more than the {train_rows} training sequences {cfg.corpus!r} gives "
                f"(--max-tokens {m.max_tokens or 'all'}): lower --top-k, raise --max-tokens, or add text"
            )
    index: list[dict[str, str]] = []
    rows = stream(index)
    layers = sorted(todo)
    device = torch.device(model.device)  # the accumulators live where the activations are made
    picks = {layer: torch.tensor(todo[layer], device=device) for layer in layers}
    tops = {
        (layer, name): top
        for layer in layers
        for name, top in example_sets(
            len(todo[layer]), m.top_k, m.context_before, m.context_after, device, m.band_windows
        ).items()
    }
    names = [name for name in MinedLayer.SETS if (layers[0], name) in tops]
    stats = {layer: StatsAccumulator(model.d_mlp, device) for layer in layers}
    ordinary = {layer: OrdinarySampler(m.ordinary_tokens) for layer in layers}
    parts: dict[str, Any] = {}
    for layer in layers:
        parts.update(
            {
                **{f"{layer}/{name}": tops[(layer, name)] for name in names},
                f"{layer}/stats": stats[layer],
                f"{layer}/ordinary": ordinary[layer],
            }
        )
    ordinary_batches = mine_shards.BatchList()  # the batch of each ordinary-text row: merge orders shards' by it
    parts["ordinary_batches"] = ordinary_batches
    checkpoint = Checkpoint(work, todo, "checkpoint.npz" if shards == 1 else f"checkpoint_{shard}of{shards}.npz")
    resume_batches, tokens_done = checkpoint.load(parts)
    started = time.perf_counter()
    last_save = time.monotonic()
    say(
        f"mine: layers {','.join(map(str, layers))} of {cfg.model}, {sum(map(len, todo.values()))} neurons, "
        f"corpus {cfg.corpus!r}, budget {m.max_tokens or 'all'} tokens"
        + (f"; resuming after {tokens_done:,} tokens" if resume_batches else "")
    )
    mined_now = 0
    with bar("mine", m.max_tokens or None, "tokens") as progress:
        for number, batch in enumerate(_batches(rows, m.batch_tokens)):
            if number < resume_batches or number % shards != shard:  # covered by the checkpoint, or another
                advance(progress, sum(len(r.tokens) for r in batch))  # shard's: only its documents are read
                continue
            rows_on = BatchRows.build(batch, model.bos_id, device)
            acts = model.mlp_activations(rows_on.tokens, layers)
            _accumulate(acts, rows_on, layers, picks, stats, tops, ordinary, ordinary_batches.numbers, number)
            done = sum(len(r.tokens) for r in batch)
            tokens_done += done
            mined_now += done
            advance(progress, done)
            if time.monotonic() - last_save >= cfg.checkpoint_seconds:
                checkpoint.save(number + 1, tokens_done, parts)
                last_save = time.monotonic()
    seconds = time.perf_counter() - started
    if shards > 1:  # the running state goes to the shard file; merge writes the layers and run.json
        mine_shards.save_shard(work, shard, shards, todo, tokens_done, parts, ordinary_batches)
        write_json(work.corpus, index)
        write_json(work.vocab, model.token_strings())
        model.save_tokenizer(work.tokenizer.parent)
        work.write_manifest(
            {
                **manifest,
                "n2g_site_version": __version__,
                "model_info": model.info(),
                "corpus_info": {**describe(cfg.corpus), "documents": len(index)},
            }
        )
        checkpoint.remove()
        say(
            f"mine: shard {cfg.shard}: {tokens_done:,} of the pass's tokens in {seconds:.1f} s; "
            f"when every shard is done, `n2g-site merge --work-dir {work.root}` writes the layer files"
        )
        return MineSummary(layers, tokens_done, len(index), seconds, False)
    if tokens_done == 0:
        raise UserError(f"--corpus {cfg.corpus!r} produced no tokens to mine")
    for layer in layers:
        MinedLayer(
            layer=layer,
            neurons=np.array(todo[layer], dtype=np.int64),
            **example_results({name: tops[(layer, name)] for name in names}),
            stats=stats[layer].result(),
            ordinary=ordinary[layer].result(len(todo[layer])),
        ).save(work.mined(layer))
        short = int((tops[(layer, "train")].result().doc < 0).sum())
        if short:
            say(
                f"[yellow]mine: layer {layer}: {short} top-k slots stayed empty; the corpus budget is small "
                f"for --top-k {m.top_k} (raise --max-tokens)"
            )
    write_json(work.corpus, index)
    write_json(work.vocab, model.token_strings())
    if not model.save_tokenizer(work.tokenizer.parent):
        say("[yellow]mine: the model's tokenizer is not a fast tokenizer; the site's playground will be off")
    mined = {int(k): v for k, v in (manifest.get("neurons") or {}).items()}
    mined.update(todo)
    work.write_manifest(
        {
            **manifest,
            "n2g_site_version": __version__,
            "model_info": model.info(),
            "corpus_info": {**describe(cfg.corpus), "documents": len(index)},
            "layers": sorted(mined),
            "neurons": {str(layer): list(mined[layer]) for layer in sorted(mined)},
            "mined": {
                **(manifest.get("mined") or {}),
                **{str(layer): content_digest(work.mined(layer)) for layer in layers},
            },
        }
    )
    checkpoint.remove()
    say(
        f"mine: {tokens_done:,} tokens from {len(index):,} documents in {seconds:.1f} s "
        f"({mined_now / max(seconds, 1e-9):,.0f} tokens/s)"
    )
    return MineSummary(layers, tokens_done, len(index), seconds, False)
