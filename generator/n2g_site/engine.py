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

Host work is vectorised over a whole layer's rows (numpy on padded ``[rows, length]`` matrices: the sort,
the shared prefixes, every node's id); only the cut into segments and the packing loop over segments and
rows in Python. On the model's device: the tree mask (from the parent pointers: nodes are numbered in
depth-first order, so node j is an ancestor of node i when j <= i <= last(j), the last node of j's
subtree), and a gather of just the requested ``(node, neuron)`` activations, so only ``[nodes]`` floats come
back per batch (into pinned memory, without blocking, on CUDA; the next batch is launched before the
previous one is read).

Whether a model honours a custom mask and positions is checked once, on a small trie against plain rows;
a model that does not (or raises) is run the plain way, sequences sorted by length in right-padded batches,
with a warning that names the exception (a CUDA out-of-memory error is raised, not taken for "no support").
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain

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
        return {
            "requests": self.requests,
            "rows": self.rows,
            "tokens": self.tokens,
            "forwards": self.forwards,
            "computed": self.computed,
        }


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


def _padded(rows: Sequence[Row]) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` as an int64 ``[len(rows), longest]`` matrix right-padded with -1, and their lengths."""
    lens = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    total = int(lens.sum())
    flat = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=total)
    out = np.full((len(rows), int(lens.max(initial=0))), -1, dtype=np.int64)
    starts = np.cumsum(lens) - lens
    out[np.repeat(np.arange(len(rows)), lens), np.arange(total) - np.repeat(starts, lens)] = flat
    return out, lens


@dataclass
class _Trie:
    """Distinct rows, sorted, cut into segments (see the module docstring); all arrays are numpy.

    Row r (in sorted order) is segment ``seg[r]``'s sequence along nodes ``nodes[r, :lens[r]]`` (ids local to
    the segment). Node arrays (``token``, ``position``, ``parent`` (local, -1 for a root), ``node_seg``) list
    every node of every segment, segment after segment, each segment's nodes in id order.
    """

    order: np.ndarray  # sorted position -> index in the caller's rows
    lens: np.ndarray
    seg: np.ndarray
    nodes: np.ndarray
    token: np.ndarray
    position: np.ndarray
    parent: np.ndarray
    node_seg: np.ndarray
    sizes: np.ndarray  # nodes per segment

    @classmethod
    def build(cls, rows: Sequence[Row], limit: int) -> _Trie:
        matrix, lens = _padded(rows)
        count, width = matrix.shape
        order = np.lexsort(matrix[:, ::-1].T) if width else np.arange(count)  # tuple order (-1 pads sort first)
        matrix, lens = matrix[order], lens[order]
        shared = np.zeros(count, dtype=np.int64)
        if count > 1:
            eq = (matrix[1:] == matrix[:-1]) & (matrix[1:] >= 0)
            first_diff = np.where(eq.all(axis=1), width, eq.argmin(axis=1))
            shared[1:] = np.minimum(first_diff, np.minimum(lens[1:], lens[:-1]))
        # Cut greedily into segments of at most ``limit`` nodes (a row too long for one gets its own).
        seg = np.empty(count, dtype=np.int64)
        sid, size = -1, 0
        new_nodes = (lens - shared).tolist()
        row_lens = lens.tolist()
        starts = []
        for r in range(count):
            new = new_nodes[r]
            if sid < 0 or (size + new > limit and size > 0):
                sid += 1
                size, new = 0, row_lens[r]
                starts.append(r)
            seg[r] = sid
            size += new
        shared[starts] = 0
        new = lens - shared
        first_new = np.cumsum(new) - new  # global id of row r's first new node
        seg_base = first_new[starts] if starts else np.zeros(0, dtype=np.int64)
        cols = np.arange(width)
        valid = cols < lens[:, None]
        fresh = valid & (cols >= shared[:, None])
        creator = np.maximum.accumulate(np.where(fresh, np.arange(count)[:, None], -1), axis=0)
        creator = np.maximum(creator, 0)
        nodes = first_new[creator] + cols - shared[creator] - seg_base[seg][:, None]
        nodes[~valid] = 0
        parents = np.concatenate([np.full((count, 1), -1, dtype=np.int64), nodes[:, :-1]], axis=1)
        node_seg = np.repeat(seg, new)
        return cls(
            order,
            lens,
            seg,
            nodes,
            matrix[fresh],
            np.broadcast_to(cols, matrix.shape)[fresh],
            parents[fresh],
            node_seg,
            np.bincount(seg, weights=new, minlength=sid + 1).astype(np.int64),
        )

    def segments(self, rows_sorted: Sequence[Row]) -> list[Segment]:
        """As :class:`Segment` objects (tests and the model check; the engine uses the arrays)."""
        out = []
        bounds = np.concatenate([[0], np.cumsum(self.sizes)])
        for s in range(len(self.sizes)):
            a, b = int(bounds[s]), int(bounds[s + 1])
            out.append(Segment(self.token[a:b].tolist(), self.position[a:b].tolist(), self.parent[a:b].tolist()))
        for r, row in enumerate(rows_sorted):
            out[int(self.seg[r])].paths[row] = self.nodes[r, : self.lens[r]].tolist()
        return out


def segments(rows: Sequence[Row], limit: int) -> list[Segment]:
    """Cut the distinct ``rows`` into tries of at most ``limit`` nodes (a longer row gets one of its own).

    Rows are taken in lexicographic order, so each shares with its predecessor the longest prefix it shares
    with any earlier row: adding it costs only the nodes after that prefix.
    """
    rows = list(rows)
    if not rows:
        return []
    trie = _Trie.build(rows, limit)
    return trie.segments([rows[i] for i in trie.order])


def tree_mask(positions: torch.Tensor, parents: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive ``[B, 1, W, W]`` attention mask of packed tries, built where ``parents`` is.

    ``parents`` ``[B, W]``: each node's parent index in its row, -1 for roots and padding; nodes are in
    depth-first order (the order segments() numbers them), so node j's subtree is the run j..last(j).
    ``last`` is found by pushing each node's index up to its parent once per depth level. Padding (depth 0,
    no parent) attends only to itself, so no row of the mask is empty.
    """
    batch, width = parents.shape
    index = torch.arange(width, device=parents.device).expand(batch, width)
    target = torch.where(parents >= 0, parents, index)
    last = index.clone()
    for _ in range(int(positions.max()) if positions.numel() else 0):
        last = last.scatter_reduce(1, target, last, reduce="amax", include_self=True)
    i, j = index[:, None, :, None], index[:, None, None, :]
    allowed = (j <= i) & (i <= last[:, None, None, :])
    zero = torch.zeros((), dtype=dtype, device=parents.device)
    return torch.where(allowed, zero, torch.full((), torch.finfo(dtype).min, dtype=dtype, device=parents.device))


def gather_values(acts: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """fp32 values of ``acts`` (any shape) at the flat ``index``es, where ``acts`` is (on the device)."""
    return acts.reshape(-1).index_select(0, index).float()


def _answered(value: np.ndarray | None) -> np.ndarray:
    if value is None:  # every pair is filled by _collect; a hole would be a bug here, not a user error
        raise RuntimeError("engine: a request was left without an answer")
    return value


@dataclass
class _Batch:
    """One forward's inputs (host) and where each answered (row, neuron) pair's values lie in its output."""

    tokens: torch.Tensor  # [B, W]
    positions: torch.Tensor | None  # [B, W] (tree batches)
    parents: torch.Tensor | None
    gather: torch.Tensor  # flat indexes into the [B, W, d_mlp] activations, pair after pair
    pairs: np.ndarray  # pair ids, in gather order
    rows: int
    tokens_answered: int
    computed: int


class BatchedEngine:
    """An :class:`~n2g_site.n2g.requests.ActivationSource` over a loaded model.

    ``share_prefixes=False`` (or a model that fails the mask check) runs every distinct sequence whole.
    """

    def __init__(
        self, model: LoadedModel, batch_tokens: int = 4096, *, share_prefixes: bool = True, segment_tokens: int = 256
    ) -> None:
        self.model = model
        self.batch_tokens = batch_tokens
        self.segment_tokens = segment_tokens
        self.share_prefixes = share_prefixes
        self._tree_ok: bool | None = None
        self.counters = EngineCounters()

    def __call__(self, requests: Sequence[Request]) -> list[np.ndarray]:
        rows: dict[int, dict[Row, int]] = {}
        pairs: dict[tuple[int, int, int], int] = {}
        pair_layer: list[int] = []
        pair_row: list[int] = []
        pair_neuron: list[int] = []
        answer: list[int] = []
        for req in requests:
            layer_rows = rows.get(req.layer)
            if layer_rows is None:
                layer_rows = rows[req.layer] = {}
            row = layer_rows.setdefault(req.tokens, len(layer_rows))
            key = (req.layer, row, req.neuron)
            pair = pairs.get(key)
            if pair is None:
                pair = pairs[key] = len(pair_row)
                pair_layer.append(req.layer)
                pair_row.append(row)
                pair_neuron.append(req.neuron)
            answer.append(pair)
        values: list[np.ndarray | None] = [None] * len(pair_row)
        layers = np.array(pair_layer, dtype=np.int64)
        row_of, neuron_of = np.array(pair_row, dtype=np.int64), np.array(pair_neuron, dtype=np.int64)
        for layer, layer_rows in rows.items():
            ids = np.flatnonzero(layers == layer)
            self._run(layer, list(layer_rows), ids, row_of[ids], neuron_of[ids], values)
        self.counters.requests += len(requests)
        return [_answered(values[p]) for p in answer]

    # --- one layer ---------------------------------------------------------------------------------

    def _run(
        self,
        layer: int,
        rows: list[Row],
        pair_ids: np.ndarray,
        pair_rows: np.ndarray,
        pair_neurons: np.ndarray,
        values: list,
    ) -> None:
        """Set ``values[pair id]`` to the activations along its row, for every pair; rows in first-request order."""
        if not rows:
            return
        if self.share_prefixes and self._tree_works():
            batches = self._tree_batches(rows, pair_ids, pair_rows, pair_neurons)
        else:
            batches = self._plain_batches(rows, pair_ids, pair_rows, pair_neurons)
        lens = np.zeros(int(pair_ids.max()) + 1 if len(pair_ids) else 0, dtype=np.int64)
        lens[pair_ids] = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))[pair_rows]
        self._execute(layer, batches, lens, values)

    def _pack(self, sizes: Sequence[int]) -> list[list[int]]:
        """Indexes of consecutive items (sorted by size, so the last one sets the padded width) in batches of
        at most ``batch_tokens`` padded tokens (an item larger than that alone)."""
        batches: list[list[int]] = []
        batch: list[int] = []
        for i, size in enumerate(sizes):
            if batch and (len(batch) + 1) * size > self.batch_tokens:
                batches.append(batch)
                batch = []
            batch.append(i)
        if batch:
            batches.append(batch)
        return batches

    def _gather_index(
        self, slot: np.ndarray, nodes: np.ndarray, lens: np.ndarray, neurons: np.ndarray, width: int
    ) -> torch.Tensor:
        """Flat indexes into ``[B, width, d_mlp]`` of each pair's row (slot, nodes[:len]) and neuron."""
        d_mlp = self.model.d_mlp
        flat = (slot[:, None] * width + nodes) * d_mlp + neurons[:, None]
        return torch.from_numpy(flat[np.arange(nodes.shape[1]) < lens[:, None]])

    def _plain_batches(self, rows: list[Row], pair_ids, pair_rows, pair_neurons) -> Iterator[_Batch]:
        lens = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        order = np.argsort(lens, kind="stable")
        packed = self._pack(lens[order].tolist())
        row_batch = np.empty(len(rows), dtype=np.int64)
        slot = np.empty(len(rows), dtype=np.int64)
        for b, batch in enumerate(packed):
            row_batch[order[batch]] = b
            slot[order[batch]] = np.arange(len(batch))
        chosen_of = _group(row_batch[pair_rows], len(packed))
        for b, batch in enumerate(packed):
            members = order[batch]
            matrix, _ = _padded([rows[i] for i in members])
            chosen = chosen_of[b]
            width = matrix.shape[1]
            nodes = np.broadcast_to(np.arange(width), (len(chosen), width))
            gather = self._gather_index(
                slot[pair_rows[chosen]], nodes, lens[pair_rows[chosen]], pair_neurons[chosen], width
            )
            answered = int(lens[members].sum())
            yield _Batch(
                torch.from_numpy(np.maximum(matrix, 0)),
                None,
                None,
                gather,
                pair_ids[chosen],
                len(members),
                answered,
                answered,
            )

    def _tree_batches(self, rows: list[Row], pair_ids, pair_rows, pair_neurons) -> Iterator[_Batch]:
        trie = _Trie.build(rows, self.segment_tokens)
        sorted_of = np.empty(len(rows), dtype=np.int64)
        sorted_of[trie.order] = np.arange(len(rows))  # caller's row -> sorted position
        seg_order = np.argsort(trie.sizes, kind="stable")
        packed = self._pack(trie.sizes[seg_order].tolist())
        seg_batch = np.empty(len(trie.sizes), dtype=np.int64)
        seg_slot = np.empty(len(trie.sizes), dtype=np.int64)
        for b, batch in enumerate(packed):
            seg_batch[seg_order[batch]] = b
            seg_slot[seg_order[batch]] = np.arange(len(batch))
        node_start = np.cumsum(trie.sizes) - trie.sizes
        local = np.arange(len(trie.token)) - node_start[trie.node_seg]
        nodes_of = _group(seg_batch[trie.node_seg], len(packed))
        row_batch = seg_batch[trie.seg]
        rows_per_batch = np.bincount(row_batch, minlength=len(packed))
        tokens_per_batch = np.bincount(row_batch, weights=trie.lens, minlength=len(packed))
        pair_srow = sorted_of[pair_rows]
        chosen_of = _group(row_batch[pair_srow], len(packed))
        for b, batch in enumerate(packed):
            segs = seg_order[batch]
            width = int(trie.sizes[segs[-1]])
            ids = nodes_of[b]
            slots, at = seg_slot[trie.node_seg[ids]], local[ids]
            tokens = np.zeros((len(segs), width), dtype=np.int64)
            positions = np.zeros((len(segs), width), dtype=np.int64)
            parents = np.full((len(segs), width), -1, dtype=np.int64)
            tokens[slots, at] = trie.token[ids]
            positions[slots, at] = trie.position[ids]
            parents[slots, at] = trie.parent[ids]
            chosen = chosen_of[b]
            srow = pair_srow[chosen]
            gather = self._gather_index(
                seg_slot[trie.seg[srow]], trie.nodes[srow], trie.lens[srow], pair_neurons[chosen], width
            )
            yield _Batch(
                torch.from_numpy(tokens),
                torch.from_numpy(positions),
                torch.from_numpy(parents),
                gather,
                pair_ids[chosen],
                int(rows_per_batch[b]),
                int(tokens_per_batch[b]),
                int(trie.sizes[segs].sum()),
            )

    # --- the device side ---------------------------------------------------------------------------

    def _execute(self, layer: int, batches: Iterator[_Batch], lens: np.ndarray, values: list) -> None:
        """Run the batches, each built and launched before the previous one's values are read back (on a GPU
        the host builds batch k+1 while batch k runs)."""
        pending = None
        for batch in chain(batches, [None]):
            launched = self._launch(batch, layer) if batch is not None else None
            if pending is not None:
                host, done, pairs = pending
                self._collect(host, done, pairs, lens, values)
            pending = launched

    def _launch(self, batch: _Batch, layer: int):
        device = self.model.device
        cuda = device.type == "cuda"
        tokens = batch.tokens.to(device, non_blocking=cuda)
        gather = batch.gather.to(device, non_blocking=cuda)
        if batch.positions is None or batch.parents is None:
            acts = self.model.mlp_activations(tokens, [layer])[layer]
        else:
            acts = self._tree_activations(
                tokens,
                batch.positions.to(device, non_blocking=cuda),
                batch.parents.to(device, non_blocking=cuda),
                layer,
            )
        values = gather_values(acts, gather)
        if cuda:
            host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            host.copy_(values, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        else:
            host, done = values, None
        c = self.counters
        c.rows += batch.rows
        c.tokens += batch.tokens_answered
        c.computed += batch.computed
        c.forwards += 1
        return host, done, batch.pairs

    @staticmethod
    def _collect(host: torch.Tensor, done, pairs: np.ndarray, lens: np.ndarray, values: list) -> None:
        if done is not None:
            done.synchronize()
        flat = host.numpy().astype(np.float64)
        flat.flags.writeable = False  # the answers are views of it, shared between requests
        ends = np.cumsum(lens[pairs]).tolist()
        start = 0
        for pair, end in zip(pairs.tolist(), ends):
            values[pair] = flat[start:end]
            start = end

    def _tree_activations(
        self, tokens: torch.Tensor, positions: torch.Tensor, parents: torch.Tensor, layer: int
    ) -> torch.Tensor:
        dtype = next(iter(self.model.bridge.parameters()), torch.empty(0)).dtype
        if not dtype.is_floating_point:
            dtype = torch.float32
        mask = tree_mask(positions, parents, dtype)
        return self.model.mlp_activations(tokens, [layer], attention_mask=mask, position_ids=positions)[layer]

    def _tree_works(self) -> bool:
        """Once per engine: does the model honour a custom mask and positions? (A small trie vs plain rows.)"""
        if self._tree_ok is None:
            self._tree_ok = False
            rows: list[Row] = [(11, 12, 13, 14, 15, 16), (11, 12, 13, 20, 15, 16, 17), (11, 12, 21, 14), (30, 31)]
            rows = [tuple(t % max(self.model.d_vocab, 1) for t in row) for row in rows]
            try:
                (seg,) = segments(rows, limit=len(rows) * 8)
                device = self.model.device
                as_row = lambda x: torch.tensor([x], device=device)  # noqa: E731
                tree = self._tree_activations(as_row(seg.tokens), as_row(seg.positions), as_row(seg.parents), 0)
                tree = tree[0].float().cpu()
                for row, path in seg.paths.items():
                    plain = self.model.mlp_activations(torch.tensor([row]), [0])[0][0].float().cpu()
                    scale = float(plain.abs().max()) + 1e-6
                    if not torch.allclose(tree[path], plain, rtol=1e-3, atol=1e-4 * scale):
                        warnings.warn(
                            "engine: this model gives other activations with a tree attention mask than "
                            "without: shared prefixes are off, every sequence runs whole (about 2.3x the "
                            "tokens)",
                            RuntimeWarning,
                            stacklevel=2,
                        )
                        return False
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure means: not supported; say which
                warnings.warn(
                    f"engine: the prefix-sharing check failed ({type(exc).__name__}: {exc}); every "
                    "sequence runs whole (about 2.3x the tokens)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return False
            self._tree_ok = True
        return self._tree_ok


def _group(keys: np.ndarray, count: int) -> list[np.ndarray]:
    """``out[k]``: the indexes i with ``keys[i] == k``, ascending."""
    order = np.argsort(keys, kind="stable")
    return np.split(order, np.cumsum(np.bincount(keys, minlength=count))[:-1])


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
                    torch.tensor([req.tokens], device=self.model.device), names_filter=[name]
                )
            out.append(cache[name][0, :, req.neuron].float().cpu().numpy().astype(np.float64))
            self.counters.rows += 1
            self.counters.tokens += len(req.tokens)
            self.counters.computed += len(req.tokens)
            self.counters.forwards += 1
        self.counters.requests += len(requests)
        return out
