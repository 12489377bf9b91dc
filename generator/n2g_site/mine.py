"""The mine stage: one streaming pass over the corpus for every selected neuron of every chosen layer.

For each neuron it keeps, per split (train / held-out), the top-k windows: the token where the neuron
peaked in a mined sequence, with ``context_before`` tokens before and ``context_after`` after, and the
neuron's activation at each; and the bottom-k windows alike, cut around each sequence's lowest activation
and ranked by the most negative peak first (a gated MLP's hook is signed: half a neuron can be below 0).
Each sequence contributes at most one window per neuron and set. Equal peaks are ranked by document, then
position (``TopK.order``), so the kept windows do not depend on the batch order. For *every* neuron of the
chosen layers it also accumulates max, min, mean and a two-sided histogram of activations (store.HIST_EDGES),
and it keeps the first ``ordinary_tokens`` of held-out text whole with the selected neurons' activations
("ordinary text": scored by the evaluate stage, where a graph that fires everywhere is caught). Memory is
bounded: O(neurons x k x window) for the examples and O(d_mlp x codes) for the stats, whatever the corpus
size.

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
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from . import __version__
from .config import Config, UserError
from .corpus import TokenRow, describe, load_documents, sequences
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


class TopK:
    """Running top-k windows of n neurons (or bottom-k: ``lowest``, ranked by the most negative peak): tensors
    on one device, merged batch by batch with torch ops only (no value is read back to the host until
    ``state`` or ``result``)."""

    FIELDS = ("value", "tokens", "acts", "doc", "start")

    value: torch.Tensor  # [n, k] the kept windows' peaks (and below: their tokens, activations, doc, start)
    tokens: torch.Tensor
    acts: torch.Tensor
    doc: torch.Tensor
    start: torch.Tensor

    def __init__(
        self, n: int, k: int, before: int, after: int, device: torch.device | str = "cpu", *, lowest: bool = False
    ) -> None:
        self.k, self.before, self.after, self.lowest = k, before, after, lowest
        self.device = torch.device(device)
        self.restore(asdict_arrays(ExampleSet.empty(n, k, before + 1 + after, lowest=lowest)))
        self.around = torch.arange(-before, after + 1, device=self.device)  # window positions around a peak

    def update(
        self,
        acts: torch.Tensor,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        valid: torch.Tensor,
        docs: torch.Tensor,
        offsets: torch.Tensor,
    ) -> None:
        """Merge a batch: ``acts`` [B, T, n] of the n neurons, ``tokens`` [B, T] right-padded,
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
            acts,
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
        acts: torch.Tensor,
        columns: torch.Tensor,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        docs: torch.Tensor,
        offsets: torch.Tensor,
    ) -> None:
        """Merge R candidate rows: ``seq_peak``/``seq_arg`` [R, n] each row's peak value and position per
        neuron (its max, or its min when ``lowest``, over its valid positions), ``rows`` [R] their index in
        the batch; ``acts`` [B, T, D] a layer's activations, ``columns`` [n] the neurons' columns in it;
        ``tokens`` [B, T], the rest [B]."""
        width, span = tokens.shape[1], self.around.numel()
        value, peak = seq_peak.T, seq_arg.T  # [n, R]
        finite = torch.isfinite(value)  # a row without text offers nothing: its window stays empty
        # Token windows come from the batch's rows padded with -1 on both sides (and one all -1 row for the
        # rows without text), so a window never leaves its row and -1 marks every position outside the text.
        padded = torch.full(
            (tokens.shape[0] + 1, self.before + width + self.after), -1, dtype=torch.int32, device=tokens.device
        )
        padded[:-1, self.before : self.before + width] = torch.where(
            torch.arange(width, device=tokens.device) < lengths[:, None], tokens, -1
        )
        source = torch.where(finite, rows[None, :], tokens.shape[0])
        cand_tokens = padded.reshape(-1).take(
            (source * padded.shape[1] + peak)[:, :, None] + torch.arange(span, device=tokens.device)
        )
        row_start = (rows * width)[None, :, None]
        flat = (row_start + peak[:, :, None] + self.around).clamp_(row_start, row_start + width - 1)
        cand_acts = acts.reshape(-1).take(torch.add(columns[:, None, None], flat, alpha=acts.shape[2])).float()
        cand_acts.masked_fill_(cand_tokens < 0, torch.nan)
        cand_doc = torch.where(finite, docs[rows].to(torch.int32)[None, :], -1)
        cand_start = torch.where(finite, (offsets[rows][None, :] + peak - self.before).to(torch.int32), 0)
        order = self.order(
            torch.cat([self.value, value], dim=1),
            torch.cat([self.doc, cand_doc], dim=1),
            torch.cat([self.start, cand_start], dim=1),
        )[:, : self.k]
        idx3 = order[:, :, None].expand(-1, -1, self.tokens.shape[2])
        self.value = torch.cat([self.value, value], dim=1).gather(1, order)
        self.tokens = torch.cat([self.tokens, cand_tokens], dim=1).gather(1, idx3)
        self.acts = torch.cat([self.acts, cand_acts], dim=1).gather(1, idx3)
        self.doc = torch.cat([self.doc, cand_doc], dim=1).gather(1, order)
        self.start = torch.cat([self.start, cand_start], dim=1).gather(1, order)

    def order(self, value: torch.Tensor, doc: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """Each neuron's windows [n, m] best first, in a total order: by peak value (highest first, or lowest
        when ``lowest``), equal peaks by document, then by start (empty slots last). A total order makes the
        kept set independent of the order the batches come in, so the shards' merge (mine_shards._top_k, the
        same order) gives what one process keeps, ties included (a GELU's many windows at its minimum, -0.17)."""
        tie = torch.where(doc >= 0, doc, torch.iinfo(torch.int32).max).long() * 2**32 + start.long()
        first = tie.argsort(dim=1, stable=True)
        second = value.gather(1, first).argsort(dim=1, stable=True, descending=not self.lowest)
        return first.gather(1, second)

    def state(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).cpu().numpy() for name in self.FIELDS}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        for name in self.FIELDS:
            setattr(self, name, torch.from_numpy(np.array(state[name])).to(self.device))

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


def asdict_arrays(examples: ExampleSet) -> dict[str, np.ndarray]:
    return {name: getattr(examples, name) for name in TopK.FIELDS}


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
INF_CODE = 255 << 1  # +inf: biased exponent 255, mantissa 0, sign 0
FLUSH_TOKENS = 1 << 30  # the int32 code counts are added into the int64 histogram before they could overflow


class StatsAccumulator:
    """Max, min, mean and the two-sided histogram of every neuron of a layer: tensors on one device, updated
    with torch ops only.

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
        shape = (2, len(CODE_BINS), d_mlp // 2) if self.paired else (1, len(CODE_BINS), d_mlp)
        self.codes = torch.zeros(shape, dtype=torch.int32, device=self.device)  # [parts, code, column]
        self.code_bins = torch.from_numpy(CODE_BINS).to(self.device)
        self.one = torch.ones((), dtype=torch.int32, device=self.device)
        self.masked = 0  # no-text positions counted in the +inf code since the last flush (all set to +inf)
        self.pending = 0  # positions counted in ``codes`` since the last flush
        self.count = 0

    def update(self, acts: torch.Tensor, invalid: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Add a batch: ``acts`` [B, T, d_mlp]; ``invalid`` the flat positions (row * T + pos) that are no
        text (host-known, so selecting them costs the device no sync). Returns each row's peaks per neuron
        over its text positions, [B, d_mlp] each: (max, its position, min, its position); a row without text
        has max -inf, min +inf (the top-k and bottom-k candidates).

        The positions that are no text are set in place to -inf for the max, +inf for the min and the
        histogram (the +inf code's count is corrected by how many there were), 0 for the sum, and restored
        after; so call this under ``torch.inference_mode()`` when ``acts`` is an inference tensor. The sum
        is each batch's float32 sum (torch's cascade summation) added into a float64 total."""
        x = acts if acts.dtype == torch.float32 and acts.is_contiguous() else acts.float().contiguous()
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

    def _count(self, flat: torch.Tensor) -> None:
        """Count each value of ``flat`` [N, d_mlp] (float32, contiguous) under its code."""
        if self.paired:
            words = flat.view(torch.int64)  # [N, d_mlp / 2]: column 2j in the low 32 bits, 2j + 1 in the high
            for part, shift in enumerate((22, 54)):
                code = (words >> shift).bitwise_and_(len(CODE_BINS) - 1)
                self.codes[part].scatter_add_(0, code, self.one.expand(code.shape))
        else:
            code = (flat.view(torch.int32) >> 22).bitwise_and_(len(CODE_BINS) - 1).long()
            self.codes[0].scatter_add_(0, code, self.one.expand(code.shape))

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
        self.codes.zero_()
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


SPLITS = ("train", "heldout")
SETS = MinedLayer.SETS  # the top sets of SPLITS, then their bottom sets ("bottom_" + split)


def example_sets(n: int, k: int, before: int, after: int, device: torch.device | str = "cpu") -> dict[str, TopK]:
    """A layer's running example sets, by MinedLayer's names: top-k and bottom-k windows of each split."""
    return {name: TopK(n, k, before, after, device, lowest=name.startswith("bottom_")) for name in SETS}


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
    ``tops`` holds each layer's four example sets (SETS); ``ordinary_batches`` gets the batch number of each
    ordinary-text row taken (merging shards orders by it)."""
    with torch.inference_mode():  # the activations are inference tensors, updated in place
        for layer in layers:
            layer_acts = acts[layer].to(stats[layer].device)
            seq_max, seq_arg, seq_min, seq_argmin = stats[layer].update(layer_acts, rows.invalid)
            columns = picks[layer]
            for name, sel in rows.splits.items():
                for prefix, peak, arg in (("", seq_max, seq_arg), ("bottom_", seq_min, seq_argmin)):
                    tops[(layer, prefix + name)].merge(
                        peak[sel[:, None], columns],
                        arg[sel[:, None], columns],
                        sel,
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
                ordinary[layer].add(rows.tokens[i], layer_acts[i][:, columns], length, doc)
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
        for name, top in example_sets(len(todo[layer]), m.top_k, m.context_before, m.context_after, device).items()
    }
    stats = {layer: StatsAccumulator(model.d_mlp, device) for layer in layers}
    ordinary = {layer: OrdinarySampler(m.ordinary_tokens) for layer in layers}
    parts: dict[str, Any] = {}
    for layer in layers:
        parts.update(
            {
                **{f"{layer}/{name}": tops[(layer, name)] for name in SETS},
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
            **{name: tops[(layer, name)].result() for name in SETS},
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
