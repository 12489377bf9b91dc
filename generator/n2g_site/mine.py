"""The mine stage: one streaming pass over the corpus for every selected neuron of every chosen layer.

For each neuron it keeps, per split (train / held-out), the top-k windows: the token where the neuron
peaked in a mined sequence, with ``context_before`` tokens before and ``context_after`` after, and the
neuron's activation at each. Each sequence contributes at most one window per neuron. For *every* neuron
of the chosen layers it also accumulates max, min, mean and a histogram of activations, and it keeps the
first ``ordinary_tokens`` of held-out text whole with the selected neurons' activations ("ordinary text":
scored by the evaluate stage, where a graph that fires everywhere is caught). Memory is bounded:
O(neurons x k x window) for the examples and O(d_mlp x bins) for the stats, whatever the corpus size.

Output: ``mine/layer_{L:02d}.npz`` (store.MinedLayer), ``corpus.json``, ``vocab.json``, and the run
manifest ``run.json``, each written atomically. A layer whose file already holds every selected neuron is
not mined again.

``--shard i/n`` (mine_merge.py) runs the same corpus pass, reading the same documents, but puts through the
model only every n-th batch (batch number modulo n = i), and writes its running state to
``mine/shard_{i}of{n}.npz`` instead of layer files; ``n2g-site merge`` combines the n shards into the
layer files one process would have written.
"""

from __future__ import annotations

import io
import json
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


class TopK:
    """Running top-k windows of n neurons (torch tensors, updated batch by batch)."""

    def __init__(self, n: int, k: int, before: int, after: int) -> None:
        self.k, self.before, self.after = k, before, after
        empty = ExampleSet.empty(n, k, before + 1 + after)
        self.value = torch.from_numpy(empty.value)
        self.tokens = torch.from_numpy(empty.tokens)
        self.acts = torch.from_numpy(empty.acts)
        self.doc = torch.from_numpy(empty.doc)
        self.start = torch.from_numpy(empty.start)

    def update(self, acts: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, valid: torch.Tensor,
               docs: torch.Tensor, offsets: torch.Tensor) -> None:
        """Merge a batch: ``acts`` [B, T, n] of the selected neurons, ``tokens`` [B, T] right-padded,
        ``valid`` [B, T] the positions that may be a peak (text tokens, not padding or doc-start)."""
        batch, width = tokens.shape
        seq_max, seq_arg = acts.masked_fill(~valid[:, :, None], -torch.inf).max(dim=1)  # [B, n]
        top_val, top_idx = torch.cat([self.value, seq_max.T], dim=1).topk(self.k, dim=1)
        is_new = top_idx >= self.k
        if not bool(is_new.any()):
            return
        old = top_idx.clamp(max=self.k - 1)
        window = self.tokens.shape[2]
        self.tokens = self.tokens.gather(1, old[:, :, None].expand(-1, -1, window)).clone()
        self.acts = self.acts.gather(1, old[:, :, None].expand(-1, -1, window)).clone()
        self.doc = self.doc.gather(1, old).clone()
        self.start = self.start.gather(1, old).clone()
        self.doc[~torch.isfinite(top_val)] = -1  # slots still empty (fewer candidate rows than k so far)
        rows, slots = (is_new & torch.isfinite(top_val)).nonzero(as_tuple=True)
        b = top_idx[rows, slots] - self.k
        peak = seq_arg[b, rows]
        pos = peak[:, None] + torch.arange(-self.before, self.after + 1)[None, :]
        inside = (pos >= 0) & (pos < lengths[b][:, None])
        pos = pos.clamp(0, width - 1)
        self.tokens[rows, slots] = tokens[b[:, None], pos].masked_fill(~inside, -1).to(torch.int32)
        self.acts[rows, slots] = acts[b[:, None], pos, rows[:, None]].float().masked_fill(~inside, torch.nan)
        self.doc[rows, slots] = docs[b].to(torch.int32)
        self.start[rows, slots] = (offsets[b] + peak - self.before).to(torch.int32)
        self.value = top_val

    FIELDS = ("value", "tokens", "acts", "doc", "start")

    def state(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).numpy() for name in self.FIELDS}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        for name in self.FIELDS:
            setattr(self, name, torch.from_numpy(state[name].copy()))

    def result(self) -> ExampleSet:
        n, k = self.value.shape
        return ExampleSet(
            tokens=self.tokens.numpy(),
            acts=self.acts.numpy(),
            doc=self.doc.numpy(),
            start=self.start.numpy(),
            pivot=np.where(self.doc.numpy() >= 0, self.before, 0).astype(np.int32),
            value=self.value.numpy().astype(np.float32),
        )


class OrdinarySampler:
    """Keeps the first held-out rows whole, up to a token budget, with the selected neurons' activations."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.tokens: list[torch.Tensor] = []
        self.acts: list[torch.Tensor] = []  # [n, len] each
        self.docs: list[int] = []

    def wants(self) -> bool:
        return self.used < self.budget

    def add(self, tokens: torch.Tensor, acts: torch.Tensor, length: int, doc: int) -> None:
        """One row: ``tokens`` [T], ``acts`` [T, n] of the selected neurons."""
        self.tokens.append(tokens[:length].clone())
        self.acts.append(acts[:length].T.to(torch.float16).clone())
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


class StatsAccumulator:
    """Max, min, mean and histogram of every neuron of a layer."""

    def __init__(self, d_mlp: int) -> None:
        self.max = torch.full((d_mlp,), -torch.inf)
        self.min = torch.full((d_mlp,), torch.inf)
        self.sum = torch.zeros(d_mlp, dtype=torch.float64)
        self.hist = torch.zeros(d_mlp * (len(HIST_EDGES) + 1), dtype=torch.int64)
        self.edges = torch.from_numpy(HIST_EDGES).float()
        self.count = 0

    def update(self, flat: torch.Tensor) -> None:
        """``flat`` [tokens, d_mlp]: activations at real (unpadded) positions."""
        flat = flat.float()
        self.max = torch.maximum(self.max, flat.amax(dim=0))
        self.min = torch.minimum(self.min, flat.amin(dim=0))
        self.sum += flat.sum(dim=0, dtype=torch.float64)
        self.count += flat.shape[0]
        bins = len(HIST_EDGES) + 1
        index = torch.bucketize(flat, self.edges, right=True) + torch.arange(flat.shape[1]) * bins
        self.hist += torch.bincount(index.flatten(), minlength=self.hist.numel())

    def state(self) -> dict[str, np.ndarray]:
        return {"max": self.max.numpy(), "min": self.min.numpy(), "sum": self.sum.numpy(),
                "hist": self.hist.numpy(), "count": np.array(self.count)}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        for name in ("max", "min", "sum", "hist"):
            setattr(self, name, torch.from_numpy(state[name].copy()))
        self.count = int(state["count"])

    def result(self) -> LayerStats:
        d_mlp = self.max.shape[0]
        return LayerStats(
            max=self.max.numpy().astype(np.float32),
            min=self.min.numpy().astype(np.float32),
            mean=(self.sum / max(self.count, 1)).numpy().astype(np.float32),
            hist=self.hist.reshape(d_mlp, -1).numpy(),
            tokens=self.count,
        )


class Checkpoint:
    """``mine/checkpoint.npz``: the running state of an unfinished pass, saved atomically now and then.

    The batch stream is deterministic (same corpus order, pools and batches), so a rerun with the same
    options skips the batches the checkpoint covers and continues; the final files equal those of an
    uninterrupted pass. A checkpoint for another plan (other layers or neurons) is ignored.
    """

    def __init__(self, work: WorkDir, plan: dict[int, tuple[int, ...]], name: str = "checkpoint.npz") -> None:
        self.path = work.root / "mine" / name
        self.key = json.dumps({str(k): list(v) for k, v in sorted(plan.items())})

    def save(self, batches: int, tokens: int, parts: dict[str, Any]) -> None:
        arrays = {"_key": np.array(self.key), "_batches": np.array(batches), "_tokens": np.array(tokens)}
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
                if str(z["_key"]) != self.key:
                    return 0, 0
                for part, obj in parts.items():
                    prefix = f"{part}/"
                    obj.restore({k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)})
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


def mine(cfg: Config, load_model: Callable[[], LoadedModel], work: WorkDir) -> MineSummary:
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
    from . import mine_merge  # it builds on this module's accumulators

    if shards > 1 and mine_merge.shard_done(work, shard, shards, todo):
        say(f"mine: shard {cfg.shard} is already mined; `n2g-site merge` combines the shards")
        return MineSummary(sorted(todo), 0, 0, 0.0, True)

    def stream(index: list[dict[str, str]]) -> Iterator[TokenRow]:
        docs = load_documents(cfg.corpus, seed=cfg.seed, bad_utf8=cfg.bad_utf8)
        rows = sequences(docs, model.encode, bos_id=model.bos_id, seq_len=seq_len, held_out=m.held_out,
                         seed=cfg.seed, index=index)
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
    picks = {layer: torch.tensor(todo[layer]) for layer in layers}
    tops = {(layer, split): TopK(len(todo[layer]), m.top_k, m.context_before, m.context_after)
            for layer in layers for split in ("train", "heldout")}
    stats = {layer: StatsAccumulator(model.d_mlp) for layer in layers}
    ordinary = {layer: OrdinarySampler(m.ordinary_tokens) for layer in layers}
    parts: dict[str, Any] = {}
    for layer in layers:
        parts.update({f"{layer}/train": tops[(layer, "train")], f"{layer}/heldout": tops[(layer, "heldout")],
                      f"{layer}/stats": stats[layer], f"{layer}/ordinary": ordinary[layer]})
    ordinary_batches = mine_merge.BatchList()  # the batch of each ordinary-text row: merge orders shards' by it
    parts["ordinary_batches"] = ordinary_batches
    checkpoint = Checkpoint(work, todo, "checkpoint.npz" if shards == 1 else f"checkpoint_{shard}of{shards}.npz")
    resume_batches, tokens_done = checkpoint.load(parts)
    started = time.perf_counter()
    last_save = time.monotonic()
    say(f"mine: layers {','.join(map(str, layers))} of {cfg.model}, {sum(map(len, todo.values()))} neurons, "
        f"corpus {cfg.corpus!r}, budget {m.max_tokens or 'all'} tokens"
        + (f"; resuming after {tokens_done:,} tokens" if resume_batches else ""))
    mined_now = 0
    with bar("mine", m.max_tokens or None, "tokens") as progress:
        for number, batch in enumerate(_batches(rows, m.batch_tokens)):
            if number < resume_batches or number % shards != shard:  # covered by the checkpoint, or another
                advance(progress, sum(len(r.tokens) for r in batch))  # shard's: only its documents are read
                continue
            lengths = torch.tensor([len(r.tokens) for r in batch])
            tokens = torch.zeros((len(batch), int(lengths.max())), dtype=torch.long)
            for i, row in enumerate(batch):
                tokens[i, : len(row.tokens)] = torch.tensor(row.tokens)
            docs = torch.tensor([r.doc for r in batch])
            offsets = torch.tensor([r.offset for r in batch])
            split = np.array([r.split for r in batch])
            acts = model.mlp_activations(tokens, layers)
            valid = torch.arange(tokens.shape[1])[None, :] < lengths[:, None]
            if model.bos_id is not None:  # the doc-start token is no text: its (often huge) activation is skipped
                valid &= tokens != model.bos_id
            for layer in layers:
                layer_acts = acts[layer].cpu()
                stats[layer].update(layer_acts[valid])
                chosen = layer_acts[:, :, picks[layer]]
                for name in ("train", "heldout"):
                    sel = torch.from_numpy(np.flatnonzero(split == name))
                    if len(sel):
                        tops[(layer, name)].update(chosen[sel], tokens[sel], lengths[sel], valid[sel], docs[sel], offsets[sel])
                for i in np.flatnonzero(split == "heldout"):
                    if ordinary[layer].wants():
                        ordinary[layer].add(tokens[i], chosen[i], int(lengths[i]), int(docs[i]))
                        if layer == layers[0]:
                            ordinary_batches.numbers.append(number)
            done = int(lengths.sum())
            tokens_done += done
            mined_now += done
            advance(progress, done)
            if time.monotonic() - last_save >= cfg.checkpoint_seconds:
                checkpoint.save(number + 1, tokens_done, parts)
                last_save = time.monotonic()
    seconds = time.perf_counter() - started
    if shards > 1:  # the running state goes to the shard file; merge writes the layers and run.json
        mine_merge.save_shard(work, shard, shards, todo, tokens_done, parts, ordinary_batches)
        write_json(work.corpus, index)
        write_json(work.vocab, model.token_strings())
        model.save_tokenizer(work.tokenizer.parent)
        work.write_manifest({**manifest, "n2g_site_version": __version__, "model_info": model.info(),
                             "corpus_info": {**describe(cfg.corpus), "documents": len(index)}})
        checkpoint.remove()
        say(f"mine: shard {cfg.shard}: {tokens_done:,} of the pass's tokens in {seconds:.1f} s; "
            f"when every shard is done, `n2g-site merge --work-dir {work.root}` writes the layer files")
        return MineSummary(layers, tokens_done, len(index), seconds, False)
    if tokens_done == 0:
        raise UserError(f"--corpus {cfg.corpus!r} produced no tokens to mine")
    for layer in layers:
        MinedLayer(
            layer=layer,
            neurons=np.array(todo[layer], dtype=np.int64),
            train=tops[(layer, "train")].result(),
            heldout=tops[(layer, "heldout")].result(),
            stats=stats[layer].result(),
            ordinary=ordinary[layer].result(len(todo[layer])),
        ).save(work.mined(layer))
        short = int((tops[(layer, "train")].result().doc < 0).sum())
        if short:
            say(f"[yellow]mine: layer {layer}: {short} top-k slots stayed empty; the corpus budget is small "
                f"for --top-k {m.top_k} (raise --max-tokens)")
    write_json(work.corpus, index)
    write_json(work.vocab, model.token_strings())
    if not model.save_tokenizer(work.tokenizer.parent):
        say("[yellow]mine: the model's tokenizer is not a fast tokenizer; the site's playground will be off")
    mined = {int(k): v for k, v in (manifest.get("neurons") or {}).items()}
    mined.update(todo)
    work.write_manifest({
        **manifest,
        "n2g_site_version": __version__,
        "model_info": model.info(),
        "corpus_info": {**describe(cfg.corpus), "documents": len(index)},
        "layers": sorted(mined),
        "neurons": {str(layer): list(mined[layer]) for layer in sorted(mined)},
        "mined": {**(manifest.get("mined") or {}), **{str(layer): content_digest(work.mined(layer)) for layer in layers}},
    })
    checkpoint.remove()
    say(f"mine: {tokens_done:,} tokens from {len(index):,} documents in {seconds:.1f} s "
        f"({mined_now / max(seconds, 1e-9):,.0f} tokens/s)")
    return MineSummary(layers, tokens_done, len(index), seconds, False)
