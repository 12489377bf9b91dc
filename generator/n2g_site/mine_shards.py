"""Mining split across processes or machines: ``mine --shard i/n`` and the merge of the n shards.

Every shard runs the whole corpus pass of one process: the same documents in the same seeded order, cut
into the same rows and batches, under the same ``--max-tokens`` budget (counted over the rows of the whole
pass, so the budget means the tokens one process would mine). Shard i puts through the model only the
batches whose number modulo n is i; the others are read and tokenized but not run. Each batch is therefore
computed exactly as one process computes it (same rows, same padding), and each shard's running state is
saved to ``mine/shard_{i}of{n}.npz`` (the accumulators' ``state()``, as in the mining checkpoint, plus the
batch number of each ordinary-text row).

:func:`merge_shards` combines the n states into the layer files one process writes:

- top-k windows: the k highest of all shards' windows, by peak value, equal peaks (the same text in two
  sequences, a GELU's many windows at its minimum) by arrival (batch number, then row in the batch): the
  total order one process keeps too (mine.TopK), so the windows and their slots are the same; bottom-k
  windows alike, the k lowest by peak value; band samples (mine.BandSample) alike, the m highest by key (a
  window's key depends on its document, start, neuron and peak only, not on the shard);
- max, min, histograms and token counts: exact;
- the mean: the shards' float64 sums added, divided by the count, cast to float32. One process adds the
  same values in batch order (on a device, per-batch float32 sums; on the CPU, every value in float64), so
  the two differ only where float64 rounding of the reordered sum moves the float32 result: at most 1
  float32 ulp, and identical bytes in every run we made (tests/test_shards.py compares them byte for byte);
- the ordinary-text sample: the held-out rows of all shards in batch order, taken while the budget lasts,
  as one process takes them.

The document index (``corpus.json``) is the same in every shard (each reads the whole pass).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .config import UserError
from .progress import say
from .store import MINED_FORMAT, ExampleSet, MinedLayer, WorkDir, content_digest, read_json

SHARD_GLOB = "shard_*of*.npz"


class BatchList:
    """The batch numbers of the ordinary-text rows a pass kept, saved with the other running state."""

    def __init__(self) -> None:
        self.numbers: list[int] = []

    def state(self) -> dict[str, np.ndarray]:
        return {"number": np.array(self.numbers, dtype=np.int64)}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self.numbers = [int(n) for n in state.get("number", [])]


def _key(plan: dict[int, tuple[int, ...]]) -> str:
    return json.dumps({str(k): list(v) for k, v in sorted(plan.items())})


def save_shard(
    work: WorkDir,
    index: int,
    count: int,
    plan: dict[int, tuple[int, ...]],
    tokens: int,
    parts: dict[str, Any],
    ordinary_batches: BatchList,
) -> None:
    """Write shard ``index`` of ``count``: the running state of every part after its batches."""
    from .mine import Checkpoint

    keeper = Checkpoint(work, plan, work.mine_shard(index, count).name)
    keeper.save(0, tokens, {**parts, "ordinary_batches": ordinary_batches})


def shard_done(work: WorkDir, index: int, count: int, plan: dict[int, tuple[int, ...]]) -> bool:
    """Whether shard ``index`` of ``count`` is mined for ``plan`` in this format (an older one is mined again)."""
    path = work.mine_shard(index, count)
    if not path.exists():
        return False
    with np.load(path) as z:
        return str(z["_key"]) == _key(plan) and _format(z) == MINED_FORMAT


def _format(z: Any) -> int:
    return int(z["_format"]) if "_format" in z.files else 1


@dataclass
class _Shard:
    """One shard file, read one part at a time (a whole-model shard holds ~1 GB of top-k windows)."""

    path: Path
    key: str
    tokens: int
    format: int

    @classmethod
    def open(cls, path: Path) -> _Shard:
        with np.load(path) as z:
            return cls(path, str(z["_key"]), int(z["_tokens"]), _format(z))

    def part(self, name: str) -> dict[str, np.ndarray]:
        prefix = f"{name}/"
        with np.load(self.path) as z:
            return {k[len(prefix) :]: z[k] for k in z.files if k.startswith(prefix)}


def pending(work: WorkDir) -> dict[int, list[Path]]:
    """The shard files in ``work``, by shard count n."""
    out: dict[int, list[Path]] = {}
    for path in sorted((work.root / "mine").glob(SHARD_GLOB)):
        _, _, count = path.stem.removeprefix("shard_").partition("of")
        out.setdefault(int(count), []).append(path)
    return out


def merge_shards(work: WorkDir, count: int) -> list[int]:
    """Combine the ``count`` mining shards of ``work`` into its layer files and run.json; returns the layers.

    Refuses when a shard is missing or two shards mined another plan (layers and neurons)."""
    missing = [i for i in range(count) if not work.mine_shard(i, count).exists()]
    if missing:
        raise UserError(
            f"mining shards {', '.join(f'{i}/{count}' for i in missing)} are missing in {work.root}/mine: "
            f"run `n2g-site mine --shard I/{count}` for them (or merge the work dirs that hold them)"
        )
    shards = [_Shard.open(work.mine_shard(i, count)) for i in range(count)]
    old = [i for i, s in enumerate(shards) if s.format != MINED_FORMAT]
    if old:
        raise UserError(
            f"mining shards {', '.join(f'{i}/{count}' for i in old)} in {work.root}/mine are of mine format "
            f"{shards[old[0]].format}, not {MINED_FORMAT} (an older n2g-site): delete them and rerun "
            f"`n2g-site mine --shard I/{count}` for them"
        )
    keys = {s.key for s in shards}
    if len(keys) > 1:
        raise UserError(
            f"the mining shards of {work.root} cover other layers or neurons "
            f"({', '.join(sorted(keys))}): rerun every shard with the same --layers and --neurons"
        )
    plan = {int(k): tuple(v) for k, v in json.loads(shards[0].key).items()}
    manifest = work.load_manifest()
    m = manifest["mine"]
    from .mine import OrdinarySampler, StatsAccumulator, example_results, example_sets

    batches = [s.part("ordinary_batches")["number"] for s in shards]
    for layer, neurons in sorted(plan.items()):
        # Folded one shard at a time (memory: two shards' parts): each rule is a total order or a sum, so
        # folding gives what combining all shards at once gives.
        tops = example_sets(
            len(neurons), m["top_k"], m["context_before"], m["context_after"], band=m.get("band_windows", 0)
        )
        for name, top in tops.items():
            window = (top.k, m["context_before"], m["context_after"])
            state = shards[0].part(f"{layer}/{name}")
            for shard in shards[1:]:
                state = _top_k([state, shard.part(f"{layer}/{name}")], *window, lowest=top.lowest)
            top.restore(_top_k([state], *window, lowest=top.lowest))
        stats_state = shards[0].part(f"{layer}/stats")
        ordinary_state, ordinary_batches = shards[0].part(f"{layer}/ordinary"), batches[0]
        for shard, numbers in zip(shards[1:], batches[1:], strict=True):
            stats_state = _stats([stats_state, shard.part(f"{layer}/stats")])
            ordinary_state, ordinary_batches = _ordinary(
                [ordinary_state, shard.part(f"{layer}/ordinary")], [ordinary_batches, numbers], m["ordinary_tokens"]
            )
        stats = StatsAccumulator(len(stats_state["max"]))
        stats.restore(stats_state)
        ordinary = OrdinarySampler(m["ordinary_tokens"])
        ordinary.restore(_ordinary([ordinary_state], [ordinary_batches], m["ordinary_tokens"])[0])
        MinedLayer(
            layer=layer,
            neurons=np.array(neurons, dtype=np.int64),
            **example_results(tops),
            stats=stats.result(),
            ordinary=ordinary.result(len(neurons)),
        ).save(work.mined(layer))
    mined = {int(k): v for k, v in (manifest.get("neurons") or {}).items()}
    mined.update(plan)
    work.write_manifest(
        {
            **manifest,
            "n2g_site_version": __version__,
            "layers": sorted(mined),
            "neurons": {str(layer): list(mined[layer]) for layer in sorted(mined)},
            "mined": {
                **(manifest.get("mined") or {}),
                **{str(layer): content_digest(work.mined(layer)) for layer in plan},
            },
        }
    )
    for shard in shards:
        shard.path.unlink()
    tokens = sum(s.tokens for s in shards)
    say(f"merge: {count} mining shards ({tokens:,} tokens) -> layers {', '.join(map(str, sorted(plan)))}")
    return sorted(plan)


def _top_k(
    states: Sequence[dict[str, np.ndarray]], k: int, before: int, after: int, *, lowest: bool = False
) -> dict[str, np.ndarray]:
    """The k best windows of all shards per neuron: by peak value (highest first, or lowest first when
    ``lowest``), equal peaks by arrival (batch number, then row): mine.TopK's order."""
    from .mine import NO_ARRIVAL

    value = np.concatenate([s["value"] for s in states], axis=1)  # [n, k * shards]
    arrival = np.concatenate([s["arrival"] for s in states], axis=1)
    rank = value.astype(np.float64) if lowest else -value.astype(np.float64)
    order = np.lexsort((arrival, rank), axis=1)[:, :k]
    pick = {
        name: np.take_along_axis(
            np.concatenate([s[name] for s in states], axis=1), order if s_dim == 2 else order[:, :, None], axis=1
        )
        for name, s_dim in (("value", 2), ("doc", 2), ("start", 2), ("arrival", 2), ("tokens", 3), ("acts", 3))
    }
    empty = ExampleSet.empty(value.shape[0], k, before + 1 + after, lowest=lowest)
    gone = ~np.isfinite(pick["value"])  # slots no shard filled: as one process leaves them
    for name in ("doc", "start"):
        pick[name] = np.where(gone, getattr(empty, name), pick[name])
    pick["arrival"] = np.where(gone, NO_ARRIVAL, pick["arrival"])
    for name in ("tokens", "acts"):
        pick[name] = np.where(gone[:, :, None], getattr(empty, name), pick[name])
    return {name: np.ascontiguousarray(pick[name].astype(states[0][name].dtype)) for name in pick}


def _stats(states: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    total = np.zeros_like(states[0]["sum"])
    for s in states:  # shard order; one process adds the same batches' sums in batch order
        total = total + s["sum"]
    return {
        "max": np.maximum.reduce([s["max"] for s in states]),
        "min": np.minimum.reduce([s["min"] for s in states]),
        "sum": total,
        "hist": np.sum([s["hist"] for s in states], axis=0).astype(states[0]["hist"].dtype),
        "count": np.array(sum(int(s["count"]) for s in states)),
    }


def _ordinary(
    states: Sequence[dict[str, np.ndarray]], batches: Sequence[np.ndarray], budget: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """All shards' ordinary-text rows in batch order, taken while the budget lasts (as one process does), and
    the batch number of each row taken."""
    rows: list[tuple[int, int, int]] = []  # (batch, shard, row in shard)
    for s, numbers in enumerate(batches):
        rows.extend((int(b), s, r) for r, b in enumerate(numbers))
    rows.sort()
    bounds = [np.cumsum(np.concatenate([[0], st["lengths"]])).astype(np.int64) for st in states]
    tokens, acts, lengths, docs, taken = [], [], [], [], []
    used = 0
    for batch, s, r in rows:
        if used >= budget:
            break
        taken.append(batch)
        a, b = bounds[s][r], bounds[s][r + 1]
        tokens.append(states[s]["tokens"][a:b])
        acts.append(states[s]["acts"][:, a:b])
        lengths.append(b - a)
        docs.append(states[s]["docs"][r])
        used += b - a
    n = max((st["acts"].shape[0] for st in states), default=0)
    return {
        "tokens": np.concatenate(tokens) if tokens else np.zeros(0, np.int64),
        "lengths": np.array(lengths, dtype=np.int64),
        "acts": np.concatenate(acts, axis=1) if acts else np.zeros((n, 0), np.float16),
        "docs": np.array(docs, dtype=np.int64),
    }, np.array(taken, dtype=np.int64)


def copy_shards(work: WorkDir, source: WorkDir) -> int:
    """Copy the mining shard files of ``source`` that ``work`` lacks; returns how many."""
    from .store import atomic_write_bytes

    copied = 0
    for path in sorted((source.root / "mine").glob(SHARD_GLOB)):
        dest = work.root / "mine" / path.name
        if not dest.exists():
            atomic_write_bytes(dest, path.read_bytes())
            copied += 1
    return copied


def mined_layers(work: WorkDir) -> list[int]:
    return [int(k) for k in (read_json(work.manifest).get("neurons") or {})] if work.manifest.exists() else []
