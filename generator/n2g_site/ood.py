"""Out-of-distribution text (``--ood-corpus``): the fitted neurons' activations on a corpus the work dir was
not mined from, for the evaluate stage's ``ood`` dataset.

The evaluate stage does not need the model for the mined datasets; this pass is the one place it does.
It reads the first ``--ood-tokens`` tokens of the corpus (documents in the corpus's own order, cut into
rows of the mining pass's length, each led by the doc-start token), runs the model over them once for
every layer that needs it, and keeps each fitted neuron's activations **sparse**: only positions where the
activation is at least :data:`SPARSE_FLOOR` of the neuron's A_max (its best training window) are stored,
the rest read as 0. Precision, recall and F1 are exact (a token fires at ``--fire-threshold`` of A_max or
more, which is never below the floor); the correlation and variance explained treat the unstored small
activations as 0. Storage is O(tokens + stored activations), not tokens x neurons: a neuron fires on a few
% of tokens at most, so 32k tokens x 46k neurons fits in memory and on disk where a dense float16 matrix
(3 GB) would not.

Output: ``ood/layer_{L:02d}.npz`` per layer (:class:`OodLayer`), written atomically. A layer's file is
reused while its key (corpus, token budget, floor, model, dtype, row length) and its neurons and A_max
values match; otherwise the pass runs again for the layers that need it (resumable by layer).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config, UserError
from .corpus import describe, load_documents, sequences
from .progress import advance, bar, say
from .store import WorkDir, atomic_write_bytes

SPARSE_FLOOR = 0.1  # activations below this share of A_max are not stored (read as 0)
BATCH_TOKENS = 4096  # padded tokens per forward


@dataclass
class OodLayer:
    """One layer's OOD text and its neurons' sparse activations (CSR by neuron)."""

    key: str  # what the text and activations depend on (json)
    neurons: np.ndarray  # int64 [n], sorted
    a_max: np.ndarray  # float64 [n]: the A_max each neuron's floor was taken from
    tokens: np.ndarray  # int64 [N]: every row laid end to end
    bounds: np.ndarray  # int64 [R + 1]: row r is tokens[bounds[r]:bounds[r + 1]]
    indptr: np.ndarray  # int64 [n + 1]: neuron i's entries are positions/values[indptr[i]:indptr[i + 1]]
    positions: np.ndarray  # int64 [nnz]: flat positions into tokens, ascending per neuron
    values: np.ndarray  # float32 [nnz]: raw activations there

    def acts(self, neuron: int) -> np.ndarray:
        """float64 [N]: the neuron's raw activations, 0 where not stored."""
        where = np.searchsorted(self.neurons, neuron)
        if where >= len(self.neurons) or self.neurons[where] != neuron:
            raise KeyError(f"neuron {neuron} has no OOD activations in this file")
        out = np.zeros(len(self.tokens), dtype=np.float64)
        lo, hi = self.indptr[where], self.indptr[where + 1]
        out[self.positions[lo:hi]] = self.values[lo:hi]
        return out

    def covers(self, key: str, wanted: dict[int, float]) -> bool:
        """Whether this file holds every wanted neuron with the same A_max, under ``key``."""
        if self.key != key:
            return False
        have = dict(zip(self.neurons.tolist(), self.a_max.tolist()))
        return all(n in have and have[n] == a for n, a in wanted.items())

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **{f.name: np.asarray(getattr(self, f.name)) for f in fields(self)})
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> OodLayer:
        with np.load(path) as z:
            return cls(**{f.name: (str(z[f.name]) if f.name == "key" else z[f.name]) for f in fields(cls)})


def check_spec(spec: str, mined_from: str) -> None:
    """Refuse an OOD corpus that is the corpus the work dir was mined from."""
    if spec == mined_from or (Path(spec).expanduser().resolve() == Path(mined_from).expanduser().resolve()
                              and Path(spec).expanduser().exists()):
        raise UserError(f"--ood-corpus {spec!r} is the corpus this work dir was mined from: pass another "
                        "(e.g. stdlib-docstrings)")


def pass_key(spec: str, tokens: int, manifest: dict[str, Any], seq_len: int) -> str:
    return json.dumps({"corpus": spec, "tokens": tokens, "floor": SPARSE_FLOOR, "model": manifest.get("model"),
                       "dtype": manifest.get("dtype", "fp32"), "hook": manifest.get("hook"), "seq_len": seq_len},
                      sort_keys=True)


def prepare(cfg: Config, work: WorkDir, wanted: dict[int, dict[int, float]],
            load_model: Callable[[], Any] | None = None) -> dict[int, OodLayer]:
    """Each layer's :class:`OodLayer` for ``wanted`` (layer -> {neuron: A_max}), running the model only for
    layers whose file is missing or stale. ``load_model``: default, the work dir's model on ``--device``."""
    spec = cfg.evaluate.ood_corpus
    assert spec is not None
    manifest = work.load_manifest()
    check_spec(spec, manifest.get("corpus", cfg.corpus))
    seq_len = min(int(manifest.get("mine", {}).get("seq_len", cfg.mine.seq_len)),
                  int(manifest["model_info"].get("n_ctx", cfg.mine.seq_len)))
    key = pass_key(spec, cfg.evaluate.ood_tokens, manifest, seq_len)
    out: dict[int, OodLayer] = {}
    todo: dict[int, dict[int, float]] = {}
    for layer, neurons in wanted.items():
        path = work.ood(layer)
        if path.exists():
            try:
                old = OodLayer.load(path)
            except (OSError, ValueError, KeyError):
                old = None
            if old is not None and old.covers(key, neurons):
                out[layer] = old
                continue
        todo[layer] = neurons
    if not todo:
        return out
    if load_model is None:
        load_model = lambda: _work_dir_model(cfg, manifest)  # noqa: E731
    model = load_model()
    say(f"evaluate: running {model.name} over {cfg.evaluate.ood_tokens:,} tokens of --ood-corpus {spec!r} "
        f"({describe(spec)['name']}) for layers {','.join(map(str, sorted(todo)))}")
    for layer, made in run_pass(model, spec, cfg.evaluate.ood_tokens, seq_len, todo, key, seed=cfg.seed).items():
        made.save(work.ood(layer))
        out[layer] = made
    return out


def _work_dir_model(cfg: Config, manifest: dict[str, Any]) -> Any:
    from .models import load_model

    return load_model(manifest.get("model", cfg.model), device=cfg.device, dtype=manifest.get("dtype", "fp32"),
                      seed=int(manifest.get("seed", cfg.seed)), hook=manifest.get("hook"))


def _rows(model: Any, spec: str, budget: int, seq_len: int, seed: int) -> Iterator[tuple[int, ...]]:
    """Rows of the first ``budget`` tokens of ``spec`` (the last row cut to fit the budget)."""
    used = 0
    docs = load_documents(spec, seed=seed)
    for row in sequences(docs, model.encode, bos_id=model.bos_id, seq_len=seq_len, held_out=0.0, seed=seed,
                         index=[]):
        tokens = row.tokens[: budget - used]
        yield tokens
        used += len(tokens)
        if used >= budget:
            return


def run_pass(model: Any, spec: str, budget: int, seq_len: int, wanted: dict[int, dict[int, float]], key: str,
             *, seed: int = 0) -> dict[int, OodLayer]:
    """One forward pass over the OOD text for every layer of ``wanted``; sparse activations per neuron."""
    import torch

    rows = list(_rows(model, spec, budget, seq_len, seed))
    if not rows:
        raise UserError(f"--ood-corpus {spec!r} produced no tokens")
    bounds = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
    layers = sorted(wanted)
    neurons = {layer: np.array(sorted(wanted[layer]), dtype=np.int64) for layer in layers}
    a_max = {layer: np.array([wanted[layer][n] for n in neurons[layer].tolist()], dtype=np.float64)
             for layer in layers}
    device = torch.device(model.device)
    columns = {layer: torch.from_numpy(neurons[layer]).to(device) for layer in layers}
    # A neuron with A_max <= 0 never fires; keep nothing for it (its cut is +inf).
    cuts = {layer: torch.from_numpy(np.where(a_max[layer] > 0, SPARSE_FLOOR * a_max[layer], np.inf)).to(device)
            for layer in layers}
    found: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {layer: [] for layer in layers}
    order = sorted(range(len(rows)), key=lambda r: len(rows[r]))  # similar lengths share a batch
    with bar("ood", int(bounds[-1]), "tokens") as progress, torch.inference_mode():
        at = 0
        while at < len(order):
            width = len(rows[order[at]])
            batch = [order[at]]
            at += 1
            while at < len(order) and (len(batch) + 1) * max(width, len(rows[order[at]])) <= BATCH_TOKENS:
                width = max(width, len(rows[order[at]]))
                batch.append(order[at])
                at += 1
            tokens = torch.zeros((len(batch), width), dtype=torch.long)
            valid = torch.zeros((len(batch), width), dtype=torch.bool)
            for i, r in enumerate(batch):
                tokens[i, : len(rows[r])] = torch.tensor(rows[r])
                valid[i, : len(rows[r])] = True
            if model.bos_id is not None:  # the doc-start token is never scored
                valid &= tokens != model.bos_id
            starts = torch.tensor([int(bounds[r]) for r in batch], device=device)
            tokens, valid = tokens.to(device), valid.to(device)
            acts = model.mlp_activations(tokens, layers)
            for layer in layers:
                picked = acts[layer].index_select(-1, columns[layer]).float()  # [B, T, n]
                keep = valid[:, :, None] & (picked >= cuts[layer])
                b, t, j = keep.nonzero(as_tuple=True)
                found[layer].append(((starts[b] + t).cpu().numpy(), j.cpu().numpy(),
                                     picked[b, t, j].cpu().numpy().astype(np.float32)))
            advance(progress, sum(len(rows[r]) for r in batch))
    out = {}
    for layer in layers:
        pos = np.concatenate([p for p, _, _ in found[layer]]) if found[layer] else np.zeros(0, np.int64)
        which = np.concatenate([j for _, j, _ in found[layer]]) if found[layer] else np.zeros(0, np.int64)
        vals = np.concatenate([v for _, _, v in found[layer]]) if found[layer] else np.zeros(0, np.float32)
        sort = np.lexsort((pos, which))
        indptr = np.zeros(len(neurons[layer]) + 1, dtype=np.int64)
        np.cumsum(np.bincount(which, minlength=len(neurons[layer])), out=indptr[1:])
        out[layer] = OodLayer(key=key, neurons=neurons[layer], a_max=a_max[layer], tokens=flat, bounds=bounds,
                              indptr=indptr, positions=pos[sort].astype(np.int64), values=vals[sort])
    return out
