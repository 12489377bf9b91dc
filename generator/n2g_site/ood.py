"""Scored text that evaluate runs the model over: the fitted neurons' activations, kept sparse.

Two uses (:class:`TextPass`):

- ``ood`` (``--ood-corpus``): a corpus the work dir was not mined from, the evaluate stage's ``ood`` dataset
  (out of distribution);
- ``ordinary`` (``--ordinary-eval-tokens`` > 0): the held-out split of the work dir's own corpus, more of it
  than mine's dense ``--ordinary-tokens`` sample, scored as the ``ordinary`` dataset instead of that sample;
- ``calibrate`` (the fit stage, calibrate.py): the first ``--calibration-tokens`` of the *training* split,
  never scored as a test set.

The evaluate stage does not need the model for the mined datasets; these passes are the one place it does.
A pass reads the first N tokens of its text (documents in the corpus's own order, for ``ordinary`` only
those of the held-out split, cut into rows of the mining pass's length, each led by the doc-start token:
the rows mine's ordinary sample is taken from), runs the model over them once for
every layer that needs it, and keeps each fitted neuron's activations **sparse**: only positions where the
activation is at least :data:`SPARSE_FLOOR` of the neuron's A_max (its best training window) are stored,
and, for a neuron with a negative fit (``fit --polarity both``), those at or below :data:`SPARSE_FLOOR` of its
A_min (< 0, the most negative training activation) too; the rest read as 0. Each side reads its own entries
(:meth:`OodLayer.acts`: the positive side the values above 0, the negative side those below), so a
positive side's scores are the same whether the negative values are kept or not. Precision, recall and F1
are exact (a token fires at ``--fire-threshold`` of A_max or more, or at or below that share of A_min, never
beyond the floor); the correlation and variance explained treat the unstored small activations as 0.
Storage is O(tokens + stored activations), not tokens x neurons: a neuron fires on a few % of tokens at
most, so 32k tokens x 46k neurons fits in memory and on disk where a dense float16 matrix (3 GB) would not.
A negative side adds its own entries, which need not be few: a GELU neuron sits between about -0.17 and 0
on most tokens, so 0.1 x A_min is a low bar (on the tiny random-init model's 400-token OOD pass in
tests/test_negative_text_passes.py, 22-33% of tokens were kept for the negative side of each of 4 neurons,
49-55% for the positive: a random model is not sparse; not yet measured on a trained model).

Memory, measured on the demo's ordinary sample (SmolLM2-135M, 24 neurons in 6 layers, 4,102 tokens): 2.3%
to 6.5% of tokens (per layer mean over neurons) reach 0.1 of A_max, so a stored entry (int32 position,
float32 value) costs 8 bytes x ~5% = 0.4 bytes per token and neuron, against 2 bytes dense in float16:
32,768 tokens x 46,080 neurons (the whole model) is ~0.6 GB sparse against 3.0 GB dense (before the npz
compression), and the pass moves one batch's entries to the host at a time, never a tokens x neurons
matrix.

Output: ``<name>/layer_{L:02d}.npz`` per layer (:class:`OodLayer`), written atomically. A layer's file is
reused while its key (corpus, split, token budget, floors, model, dtype, row length) and its neurons and
A_max and A_min values match; otherwise the pass runs again for the layers that need it (resumable by layer).
A file written before the negative side was kept (no ``a_min``) is never read as one with nothing negative:
:meth:`OodLayer.load` refuses it, naming the file, and :func:`prepare` runs its pass again.
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

SPARSE_FLOOR = 0.1  # activations below this share of A_max (above it of A_min) are not stored (read as 0)
BATCH_TOKENS = 4096  # padded tokens per forward


@dataclass
class OodLayer:
    """One layer's OOD text and its neurons' sparse activations (CSR by neuron)."""

    key: str  # what the text and activations depend on (json)
    neurons: np.ndarray  # int64 [n], sorted
    a_max: np.ndarray  # float64 [n]: the A_max each neuron's floor was taken from (0: no positive side kept)
    a_min: np.ndarray  # float64 [n]: the A_min (< 0) of its negative floor (0: no negative side kept)
    tokens: np.ndarray  # int64 [N]: every row laid end to end
    bounds: np.ndarray  # int64 [R + 1]: row r is tokens[bounds[r]:bounds[r + 1]]
    indptr: np.ndarray  # int64 [n + 1]: neuron i's entries are positions/values[indptr[i]:indptr[i + 1]]
    positions: np.ndarray  # int32 [nnz]: flat positions into tokens, ascending per neuron
    values: np.ndarray  # float32 [nnz]: raw activations there (both sides: > 0 positive, < 0 negative)

    def acts(self, neuron: int, side: str = "positive") -> np.ndarray:
        """float64 [N]: the neuron's raw activations on ``side`` ("positive": its stored values above 0,
        "negative": those below 0), 0 where not stored (everywhere on a side the file does not keep:
        :meth:`keeps`)."""
        where = np.searchsorted(self.neurons, neuron)
        if where >= len(self.neurons) or self.neurons[where] != neuron:
            raise KeyError(f"neuron {neuron} has no OOD activations in this file")
        out = np.zeros(len(self.tokens), dtype=np.float64)
        lo, hi = self.indptr[where], self.indptr[where + 1]
        values = self.values[lo:hi]
        chosen = values > 0 if side == "positive" else values < 0
        out[self.positions[lo:hi][chosen]] = values[chosen]
        return out

    def keeps(self, neuron: int, side: str) -> bool:
        """Whether the file keeps ``side`` of ``neuron``: a positive A_max or a negative A_min for it."""
        where = np.searchsorted(self.neurons, neuron)
        if where >= len(self.neurons) or self.neurons[where] != neuron:
            return False
        return bool(self.a_max[where] > 0) if side == "positive" else bool(self.a_min[where] < 0)

    def covers(self, key: str, wanted: dict[int, float], low: dict[int, float] | None = None) -> bool:
        """Whether this file holds every wanted neuron with the same A_max, and every ``low`` one with the same
        A_min, under ``key``."""
        if self.key != key:
            return False
        neurons = self.neurons.tolist()
        have_max = dict(zip(neurons, self.a_max.tolist()))
        have_min = dict(zip(neurons, self.a_min.tolist()))
        return all(n in have_max and have_max[n] == a for n, a in wanted.items()) and all(
            n in have_min and have_min[n] == a for n, a in (low or {}).items()
        )

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        arrays: dict[str, Any] = {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> OodLayer:
        """The file at ``path``; a ValueError naming it when it was written before negative values were kept."""
        with np.load(path) as z:
            if "a_min" not in z.files:
                raise ValueError(
                    f"{path} is a text pass of an older n2g-site (positive activations only, no a_min): delete it, "
                    "and evaluate (or fit, for the calibration pass) runs the pass again"
                )
            values: dict[str, Any] = {f.name: (str(z[f.name]) if f.name == "key" else z[f.name]) for f in fields(cls)}
        return cls(**values)


def check_spec(spec: str, mined_from: str) -> None:
    """Refuse an OOD corpus that is the corpus the work dir was mined from."""
    if spec == mined_from or (
        Path(spec).expanduser().resolve() == Path(mined_from).expanduser().resolve()
        and Path(spec).expanduser().exists()
    ):
        raise UserError(
            f"--ood-corpus {spec!r} is the corpus this work dir was mined from: pass another (e.g. stdlib-docstrings)"
        )


@dataclass(frozen=True)
class TextPass:
    """Which text a pass runs over: ``tokens`` of ``spec`` (only its ``split`` documents when set, split as
    mine split them: ``held_out`` share, ``seed``), stored under ``<work dir>/<name>/``."""

    name: str  # "ood" or "ordinary": the dataset it is scored as; "calibrate": fit's training-split text
    spec: str
    tokens: int
    split: str | None = None  # "heldout" or "train": that split's documents only
    held_out: float = 0.0
    seed: int = 0

    @classmethod
    def ood(cls, cfg: Config) -> TextPass:
        assert cfg.evaluate.ood_corpus is not None
        return cls("ood", cfg.evaluate.ood_corpus, cfg.evaluate.ood_tokens, seed=cfg.seed)

    @classmethod
    def ordinary(cls, cfg: Config, manifest: dict[str, Any]) -> TextPass:
        """The held-out split of the corpus the work dir was mined from."""
        mined = manifest.get("mine", {})
        return cls(
            "ordinary",
            manifest.get("corpus", cfg.corpus),
            cfg.evaluate.ordinary_eval_tokens,
            "heldout",
            float(mined.get("held_out", cfg.mine.held_out)),
            int(manifest.get("seed", cfg.seed)),
        )


def pass_key(text: TextPass, manifest: dict[str, Any], seq_len: int) -> str:
    return json.dumps(
        {
            "corpus": text.spec,
            "split": text.split,
            "held_out": text.held_out,
            "seed": text.seed,
            "tokens": text.tokens,
            "floor": SPARSE_FLOOR,
            "low_floor": SPARSE_FLOOR,  # values at or below this share of A_min are kept too
            "model": manifest.get("model"),
            "dtype": manifest.get("dtype", "fp32"),
            "hook": manifest.get("hook"),
            "seq_len": seq_len,
        },
        sort_keys=True,
    )


def prepare(
    cfg: Config,
    work: WorkDir,
    wanted: dict[int, dict[int, float]],
    load_model: Callable[[], Any] | None = None,
    text: TextPass | None = None,
    low: dict[int, dict[int, float]] | None = None,
) -> dict[int, OodLayer]:
    """Each layer's :class:`OodLayer` for ``wanted`` (layer -> {neuron: A_max}) and ``low`` (layer -> {neuron:
    A_min < 0}: the negative sides to keep) on ``text`` (default: the ``--ood-corpus`` pass), running the model
    only for layers whose file is missing or stale. ``load_model``: default, the work dir's model on
    ``--device``."""
    low = low or {}
    manifest = work.load_manifest()
    text = text or TextPass.ood(cfg)
    if text.name == "ood":
        check_spec(text.spec, manifest.get("corpus", cfg.corpus))
    seq_len = min(
        int(manifest.get("mine", {}).get("seq_len", cfg.mine.seq_len)),
        int(manifest["model_info"].get("n_ctx", cfg.mine.seq_len)),
    )
    key = pass_key(text, manifest, seq_len)
    out: dict[int, OodLayer] = {}
    todo: list[int] = []
    for layer in sorted(set(wanted) | set(low)):
        path = work.scored_text(text.name, layer)
        if path.exists():
            try:
                old = OodLayer.load(path)
            except (OSError, ValueError, KeyError):  # unreadable, or an older file (OodLayer.load): run again
                old = None
            if old is not None and old.covers(key, wanted.get(layer, {}), low.get(layer)):
                out[layer] = old
                continue
        todo.append(layer)
    if not todo:
        return out
    if load_model is None:
        load_model = lambda: work_dir_model(cfg, manifest)  # noqa: E731
    model = load_model()
    split = f" ({text.split} documents)" if text.split else ""
    stage = "fit" if text.name == "calibrate" else "evaluate"
    say(
        f"{stage}: running {model.name} over {text.tokens:,} tokens of {text.spec!r}{split} "
        f"({describe(text.spec)['name']}) for the {text.name} text of layers {','.join(map(str, sorted(todo)))}"
    )
    chosen = {layer: wanted.get(layer, {}) for layer in todo}
    for layer, made in run_pass(model, text, seq_len, chosen, key, {k: low[k] for k in todo if k in low}).items():
        made.save(work.scored_text(text.name, layer))
        out[layer] = made
    return out


def work_dir_model(cfg: Config, manifest: dict[str, Any]) -> Any:
    from .models import load_model

    return load_model(
        manifest.get("model", cfg.model),
        device=cfg.device,
        dtype=manifest.get("dtype", "fp32"),
        seed=int(manifest.get("seed", cfg.seed)),
        hook=manifest.get("hook"),
    )


def _rows(model: Any, text: TextPass, seq_len: int) -> Iterator[tuple[int, ...]]:
    """Rows of the first ``text.tokens`` tokens of the text (the last row cut to fit the budget)."""
    used, budget = 0, text.tokens
    docs = load_documents(text.spec, seed=text.seed)
    for row in sequences(
        docs, model.encode, bos_id=model.bos_id, seq_len=seq_len, held_out=text.held_out, seed=text.seed, index=[]
    ):
        if text.split is not None and row.split != text.split:
            continue
        tokens = row.tokens[: budget - used]
        yield tokens
        used += len(tokens)
        if used >= budget:
            return


def run_pass(
    model: Any,
    text: TextPass,
    seq_len: int,
    wanted: dict[int, dict[int, float]],
    key: str,
    low: dict[int, dict[int, float]] | None = None,
) -> dict[int, OodLayer]:
    """One forward pass over the text for every layer of ``wanted`` (layer -> {neuron: A_max}) and ``low``
    (layer -> {neuron: A_min}); sparse activations per neuron, both sides."""
    low = low or {}
    import torch

    rows = list(_rows(model, text, seq_len))
    if not rows:
        raise UserError(
            f"{text.spec!r} produced no tokens for the {text.name} text"
            + (f" ({text.split} documents)" if text.split else "")
        )
    bounds = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
    layers = sorted(set(wanted) | set(low))
    neurons = {
        layer: np.array(sorted(set(wanted.get(layer, {})) | set(low.get(layer, {}))), dtype=np.int64)
        for layer in layers
    }
    a_max = {
        layer: np.array([wanted.get(layer, {}).get(n, 0.0) for n in neurons[layer].tolist()], dtype=np.float64)
        for layer in layers
    }
    a_min = {
        layer: np.array([low.get(layer, {}).get(n, 0.0) for n in neurons[layer].tolist()], dtype=np.float64)
        for layer in layers
    }
    device = torch.device(model.device)
    columns = {layer: torch.from_numpy(neurons[layer]).to(device) for layer in layers}
    # A neuron with A_max <= 0 never fires; keep nothing for it (its cut is +inf).
    cuts = {
        layer: torch.from_numpy(np.where(a_max[layer] > 0, SPARSE_FLOOR * a_max[layer], np.inf)).to(device)
        for layer in layers
    }
    # A neuron with A_min >= 0 (no negative side wanted) keeps nothing below 0 (its cut is -inf).
    low_cuts = {
        layer: torch.from_numpy(np.where(a_min[layer] < 0, SPARSE_FLOOR * a_min[layer], -np.inf)).to(device)
        for layer in layers
    }
    found: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {layer: [] for layer in layers}
    order = sorted(range(len(rows)), key=lambda r: len(rows[r]))  # similar lengths share a batch
    with bar(text.name, int(bounds[-1]), "tokens") as progress, torch.inference_mode():
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
                keep = valid[:, :, None] & ((picked >= cuts[layer]) | (picked <= low_cuts[layer]))
                b, t, j = keep.nonzero(as_tuple=True)
                found[layer].append(
                    ((starts[b] + t).cpu().numpy(), j.cpu().numpy(), picked[b, t, j].cpu().numpy().astype(np.float32))
                )
            advance(progress, sum(len(rows[r]) for r in batch))
    out = {}
    for layer in layers:
        pos = np.concatenate([p for p, _, _ in found[layer]]) if found[layer] else np.zeros(0, np.int64)
        which = np.concatenate([j for _, j, _ in found[layer]]) if found[layer] else np.zeros(0, np.int64)
        vals = np.concatenate([v for _, _, v in found[layer]]) if found[layer] else np.zeros(0, np.float32)
        sort = np.lexsort((pos, which))
        indptr = np.zeros(len(neurons[layer]) + 1, dtype=np.int64)
        np.cumsum(np.bincount(which, minlength=len(neurons[layer])), out=indptr[1:])
        out[layer] = OodLayer(
            key=key,
            neurons=neurons[layer],
            a_max=a_max[layer],
            a_min=a_min[layer],
            tokens=flat,
            bounds=bounds,
            indptr=indptr,
            positions=pos[sort].astype(np.int32),
            values=vals[sort],
        )
    return out
