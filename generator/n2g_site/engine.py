"""The batched forward engine: N2G activation requests in, per-token activations out.

Requests from many examples and many neurons of a layer are pooled: identical token sequences are run once
(one row serves every neuron asked about it), and each forward stops right after the layer's MLP hook.

Shared prefixes are computed once. N2G's sequences come in families that differ late: the occlusion rows of
a prompt mask one position each, so the row masking position k repeats the prompt's first k tokens; the
augmentation variants replace one token each. The model is causal, so the activations of a shared prefix
are the same in every sequence that starts with it. The engine therefore sorts a layer's distinct sequences
lexicographically (a sequence then shares its longest prefix with its predecessor) and cuts the sorted list
into *segments*, each a trie of sequences stored as one packed row of trie nodes: every node is a token,
it attends to its ancestors only (a 4D attention mask) and sits at its depth's position (``position_ids``).
A sequence's activations are read along its path of nodes. Segments of at most ``segment_tokens`` nodes
(a longer sequence gets a segment of its own) are sorted by size and packed into right-padded batches of at
most ``batch_tokens`` nodes. Occlusion rows then cost about half the tokens (a k-th row computes only the
positions from k on). Values match the plain path up to float rounding (different matmul shapes).

Whether a model honours a custom mask and positions is checked once, on a small trie against plain rows;
a model that does not (or raises) is run the plain way: sequences sorted by length, right-padded batches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .models import LoadedModel
from .n2g.requests import Request

Row = tuple[int, ...]


@dataclass
class EngineCounters:
    requests: int = 0  # requests answered
    rows: int = 0  # distinct sequences run
    tokens: int = 0  # real (unpadded) tokens of those sequences, answered
    forwards: int = 0  # batched forward calls
    computed: int = 0  # token positions actually computed (shared prefixes once; no padding)

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "rows": self.rows, "tokens": self.tokens, "forwards": self.forwards,
                "computed": self.computed}


@dataclass
class Segment:
    """A trie of sequences as one packed row: node i holds ``tokens[i]`` at position ``positions[i]``,
    under ``parents[i]`` (-1 for a root); parents come before their children."""

    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    paths: dict[Row, list[int]] = field(default_factory=dict)  # sequence -> its nodes, in order

    def __len__(self) -> int:
        return len(self.tokens)

    def ancestors(self) -> np.ndarray:
        """``[n, n]`` bool: node i may attend to node j (j is i or one of its ancestors)."""
        n = len(self.tokens)
        out = np.zeros((n, n), dtype=bool)
        for i, parent in enumerate(self.parents):
            if parent >= 0:
                out[i, : parent + 1] = out[parent, : parent + 1]
            out[i, i] = True
        return out


def _common(a: Row, b: Row) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def segments(rows: Sequence[Row], limit: int) -> list[Segment]:
    """Cut the distinct ``rows`` into tries of at most ``limit`` nodes (a longer row gets one of its own).

    Rows are taken in lexicographic order, so each shares with its predecessor the longest prefix it shares
    with any earlier row: adding it costs only the nodes after that prefix.
    """
    out: list[Segment] = []
    seg: Segment | None = None
    prev: Row = ()
    prev_path: list[int] = []
    for row in sorted(rows):
        shared = _common(prev, row) if seg is not None else 0
        if seg is None or (len(seg) + len(row) - shared > limit and seg.paths):
            seg = Segment()
            out.append(seg)
            shared = 0
        path = prev_path[:shared]
        for pos in range(shared, len(row)):
            path.append(len(seg.tokens))
            seg.parents.append(path[-2] if pos else -1)
            seg.tokens.append(row[pos])
            seg.positions.append(pos)
        seg.paths[row] = path
        prev, prev_path = row, path
    return out


class BatchedEngine:
    """An :class:`~n2g_site.n2g.requests.ActivationSource` over a loaded model.

    ``share_prefixes=False`` (or a model that fails the mask check) runs every distinct sequence whole.
    """

    def __init__(self, model: LoadedModel, batch_tokens: int = 4096, *, share_prefixes: bool = True,
                 segment_tokens: int = 256) -> None:
        self.model = model
        self.batch_tokens = batch_tokens
        self.segment_tokens = segment_tokens
        self.share_prefixes = share_prefixes
        self._tree_ok: bool | None = None
        self.counters = EngineCounters()

    def __call__(self, requests: Sequence[Request]) -> list[np.ndarray]:
        wanted: dict[tuple[int, Row], set[int]] = defaultdict(set)
        for req in requests:
            wanted[(req.layer, req.tokens)].add(req.neuron)
        results: dict[tuple[int, Row, int], np.ndarray] = {}
        by_layer: dict[int, list[Row]] = defaultdict(list)
        for layer, tokens in wanted:
            by_layer[layer].append(tokens)
        for layer, rows in by_layer.items():
            columns = sorted(set().union(*(wanted[(layer, row)] for row in rows)))
            where = {neuron: i for i, neuron in enumerate(columns)}
            for row, acts in self._run(layer, rows, columns):
                neurons = sorted(wanted[(layer, row)])
                values = acts[:, [where[n] for n in neurons]].T.astype(np.float64)
                for neuron, vector in zip(neurons, values):
                    results[(layer, row, neuron)] = vector
        self.counters.requests += len(requests)
        return [results[(r.layer, r.tokens, r.neuron)] for r in requests]

    def _run(self, layer: int, rows: list[Row], columns: list[int]):
        """Yield ``(row, activations [len(row), len(columns)])`` for every distinct row."""
        if self.share_prefixes and self._tree_works():
            segs = sorted(segments(rows, self.segment_tokens), key=len)
            for batch in self._pack(segs, len):
                acts = self._forward_tree(batch, layer, columns)
                for i, seg in enumerate(batch):
                    for row, path in seg.paths.items():
                        yield row, acts[i, path]
            return
        rows = sorted(rows, key=len)
        for batch in self._pack(rows, len):
            acts = self._forward(batch, layer, columns)
            for i, row in enumerate(batch):
                yield row, acts[i, : len(row)]

    def _pack(self, items: list, size) -> list[list]:
        """Consecutive items (sorted by size, so the last one sets the padded width) in batches of at most
        ``batch_tokens`` padded tokens (an item larger than that alone)."""
        batches: list[list] = []
        batch: list = []
        for item in items:
            if batch and (len(batch) + 1) * size(item) > self.batch_tokens:
                batches.append(batch)
                batch = []
            batch.append(item)
        if batch:
            batches.append(batch)
        return batches

    def _forward(self, batch: list[Row], layer: int, columns: list[int]) -> np.ndarray:
        width = max(len(row) for row in batch)
        tokens = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            tokens[i, : len(row)] = torch.tensor(row)
        acts = self.model.mlp_activations(tokens, [layer])[layer]
        self.counters.rows += len(batch)
        self.counters.tokens += sum(len(row) for row in batch)
        self.counters.computed += sum(len(row) for row in batch)
        self.counters.forwards += 1
        return acts[..., columns].float().cpu().numpy()

    def _forward_tree(self, batch: list[Segment], layer: int, columns: list[int]) -> np.ndarray:
        acts = self._tree_activations(batch, layer)
        self.counters.rows += sum(len(seg.paths) for seg in batch)
        self.counters.tokens += sum(len(row) for seg in batch for row in seg.paths)
        self.counters.computed += sum(len(seg) for seg in batch)
        self.counters.forwards += 1
        return acts[..., columns].float().cpu().numpy()

    def _tree_activations(self, batch: list[Segment], layer: int) -> torch.Tensor:
        width = max(len(seg) for seg in batch)
        tokens = torch.zeros((len(batch), width), dtype=torch.long)
        positions = torch.zeros((len(batch), width), dtype=torch.long)
        allowed = np.zeros((len(batch), 1, width, width), dtype=bool)
        allowed[:, 0, np.arange(width), np.arange(width)] = True  # padding attends to itself (no NaN rows)
        for i, seg in enumerate(batch):
            n = len(seg)
            tokens[i, :n] = torch.tensor(seg.tokens)
            positions[i, :n] = torch.tensor(seg.positions)
            allowed[i, 0, :n, :n] = seg.ancestors()
        dtype = next(iter(self.model.bridge.parameters()), torch.empty(0)).dtype
        if not dtype.is_floating_point:
            dtype = torch.float32
        mask = torch.zeros(allowed.shape, dtype=dtype)
        mask.masked_fill_(torch.from_numpy(~allowed), torch.finfo(dtype).min)
        return self.model.mlp_activations(tokens, [layer], attention_mask=mask, position_ids=positions)[layer]

    def _tree_works(self) -> bool:
        """Once per engine: does the model honour a custom mask and positions? (A small trie vs plain rows.)"""
        if self._tree_ok is None:
            self._tree_ok = False
            rows: list[Row] = [(11, 12, 13, 14, 15, 16), (11, 12, 13, 20, 15, 16, 17), (11, 12, 21, 14), (30, 31)]
            rows = [tuple(t % max(self.model.d_vocab, 1) for t in row) for row in rows]
            try:
                segs = segments(rows, limit=len(rows) * 8)
                tree = self._tree_activations(segs, 0)[0].float().cpu()
                for row, path in segs[0].paths.items():
                    plain = self.model.mlp_activations(torch.tensor([row]), [0])[0][0].float().cpu()
                    scale = float(plain.abs().max()) + 1e-6
                    if not torch.allclose(tree[path], plain, rtol=1e-3, atol=1e-4 * scale):
                        return False
            except Exception:  # a model without custom-mask support: the plain way
                return False
            self._tree_ok = True
        return self._tree_ok


class ReferenceEngine:
    """The original code's call pattern, for benchmarks and parity checks: one request at a time, each a
    full-model ``run_with_cache`` of a single sequence (no batching, no early stop, no dedupe)."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.counters = EngineCounters()

    def __call__(self, requests: Sequence[Request]) -> list[np.ndarray]:
        out = []
        for req in requests:
            name = self.model.hook_name(req.layer)
            with torch.inference_mode():
                _, cache = self.model.bridge.run_with_cache(
                    torch.tensor([req.tokens], device=self.model.device), names_filter=[name])
            out.append(cache[name][0, :, req.neuron].float().cpu().numpy().astype(np.float64))
            self.counters.rows += 1
            self.counters.tokens += len(req.tokens)
            self.counters.computed += len(req.tokens)
            self.counters.forwards += 1
        self.counters.requests += len(requests)
        return out
