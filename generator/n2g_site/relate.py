"""The relate stage: similar neurons (by graph content) and logit effects (by output weights).

Writes, in the work dir::

    relate/similar.json        {"schema", "k", "features", "neurons": {"L/N": [[layer, neuron, cosine], ...]},
                                "tokens": {"L/N": [top activating tokens, display form]},
                                "activation": {"L/N": [[layer, neuron, cosine], ...]}, "activation_features",
                                "activation_tokens": N}
    relate/logit_{L:02d}.json  {"schema", "layer", "norm", "k", "neurons": {"N": {"up": [[token_id, value], ...],
                                                                           "down": [...]}}}

**Similar neurons.** Each fitted graph becomes a sparse vector over features of its tokens (normalised as
N2G matches them, :func:`~n2g_site.render.search_index.search_key`): ``a:<key>`` for an activating token
(weight: its normalised activation), ``c:<key>`` for a context token and ``p:<activating>|<context>`` for
a token right before an activating one (weight: half its importance). Weights are multiplied by an inverse
document frequency (so a context token shared by half the graphs counts little) and rows L2-normalised;
the cosine of every pair is one sparse product, taken in blocks of rows with a vectorised top-k per block
(:func:`nearest`), never a Python loop over pairs; above :data:`EXACT_MAX_PAIRS` pairs the candidates come
from a low-rank projection, as for activations below, and from the graphs heaviest on each graph's two
heaviest features (typically its rare activating tokens), then are scored exactly. The neighbours span all
layers. Recomputed on every run (it needs only the fit files and takes seconds).

**Similar neurons by activation pattern.** Mine keeps every selected neuron's activations on the same
sample of ordinary held-out text (``MinedLayer.ordinary``, the first ~4,096 held-out tokens, for every
layer alike). Each neuron's activations on those tokens are one vector; neighbours are the largest cosines
between the vectors (all layers together), so two neurons that fire on the same tokens are neighbours
whatever their graphs. :func:`activation_neighbours` takes blocks of rows times all rows (a dense matmul)
with a ``torch.topk`` per block; when ``n² x tokens`` is large (50,000 neurons: 10^13) it first finds
:data:`ACT_CANDIDATES` x k candidates per neuron in the vectors' projection on their top
:data:`SEARCH_DIMS` singular directions (:func:`low_rank_rows`), then scores those candidates exactly, so
the cosines shown are exact and only the candidate search is approximate (benchmarks/README.md measures
how often it misses a true neighbour). Neurons whose vectors are all zero (dead on that text) get none.

**Logit effects.** The direct effect of a neuron on the logits is its output direction (``W_out[n]``:
GELU MLPs' output matrix row; for SwiGLU, the down projection's column for that neuron) projected through
the unembedding: ``W_out[n] @ W_U``, for all selected neurons of a layer in one matmul. The final norm's
elementwise scale (LayerNorm/RMSNorm weight) is folded in, and for LayerNorm the direction is mean-centred
first, as the norm would do; the division by the residual stream's norm is a positive per-position scalar
and is left out (it does not change the ranking), as are the norm's bias and the unembedding bias, which
do not depend on the neuron. Weights come from TransformerLens' ``TransformerBridge``
(``bridge.blocks[l].mlp.W_out`` [d_mlp, d_model], ``bridge.W_U`` [d_model, d_vocab], ``bridge.ln_final``),
unprocessed (the bridge does not fold the norm in by itself). A layer's file is computed only when it is
missing or lacks a selected neuron, so the model is loaded only then.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config, UserError
from .n2g.graph import Graph
from .progress import say
from .store import WorkDir, read_json, write_json

SIMILAR_SCHEMA = "n2g-site/similar/1"
LOGIT_SCHEMA = "n2g-site/logit-effects/1"
SIMILAR_K = 10  # neighbours kept per neuron
LOGIT_K = 10  # promoted / suppressed tokens kept per neuron
BLOCK = 512  # rows per block of the similarity product
EXACT_MAX_PAIRS = 15_000**2  # graph similarity: every pair up to this many (n * n), candidates above
ACT_BLOCK = 1024  # rows per block of the activation similarity product
ACT_EXACT_MAX = 2e11  # n * n * tokens up to which every activation cosine is computed
SEARCH_DIMS = 128  # else: candidates from the rows' projection on their top singular directions ...
ACT_CANDIDATES = 4  # ... keeping this many x k candidates per neuron, rescored exactly
CONTEXT_WEIGHT = 0.5
PARALLEL_MIN_GRAPHS = 4000  # below this, one process reads every fit file


# -------------------------------------------------------------------------------------- similarity


def graph_features(graph: Graph) -> dict[str, float]:
    """Weighted features of one graph (see module docstring); the largest weight per feature."""
    from .render.search_index import search_key

    out: dict[str, float] = {}

    def put(name: str, value: float) -> None:
        if value > out.get(name, 0.0):
            out[name] = value

    keys = {n.id: (search_key(n.token) if n.key is not None and n.token else None) for n in graph.nodes}
    for node in graph.nodes:
        key = keys[node.id]
        if key is None:
            continue
        if node.depth == 0:
            put("a:" + key, max(float(node.activation), 1e-3))
        else:
            weight = CONTEXT_WEIGHT * max(float(node.importance), 1e-3)
            put("c:" + key, weight)
            if node.depth == 1 and keys.get(node.parent) is not None:
                put(f"p:{keys[node.parent]}|{key}", weight)
    return out


def feature_matrix(features: Sequence[dict[str, float]]) -> Any:
    """CSR matrix [n, F] of IDF-weighted, L2-normalised feature rows (float32)."""
    from scipy import sparse

    vocab: dict[str, int] = {}
    indptr, indices, data = [0], [], []
    for row in features:
        for name, value in row.items():
            indices.append(vocab.setdefault(name, len(vocab)))
            data.append(value)
        indptr.append(len(indices))
    x = sparse.csr_matrix(
        (np.asarray(data, np.float32), np.asarray(indices, np.int64), np.asarray(indptr, np.int64)),
        shape=(len(features), max(len(vocab), 1)),
    )
    df = np.bincount(x.indices, minlength=x.shape[1]).astype(np.float32)
    idf = np.log((1.0 + x.shape[0]) / (1.0 + df)) + 1.0
    x = (x @ sparse.diags(idf.astype(np.float32))).tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return (sparse.diags((1.0 / norms).astype(np.float32)) @ x).tocsr()


def low_rank_rows(x: Any, dims: int, *, seed: int = 0, power: int = 2) -> np.ndarray:
    """The rows of ``x`` [n, d] (numpy or scipy sparse) projected on its top ``dims`` right singular directions,
    scaled by the singular values (float32 [n, dims]): inner products of these rows approximate those of the
    rows of ``x`` as well as any ``dims``-dimensional projection can. Randomized SVD (Halko, Martinsson and
    Tropp 2011: a seeded Gaussian sketch, ``power`` power iterations); deterministic for a given ``seed``."""
    rng = np.random.default_rng(seed)
    dims = max(1, min(dims, min(x.shape)))
    y = np.asarray(x @ rng.standard_normal((x.shape[1], dims + 10), dtype=np.float32))
    for _ in range(power):
        y = np.asarray(x @ np.asarray(x.T @ np.linalg.qr(y)[0]))
    q = np.linalg.qr(y)[0]
    u, sv, _ = np.linalg.svd(np.asarray(x.T @ q).T, full_matrices=False)
    return np.ascontiguousarray((q @ u[:, :dims]) * sv[:dims], dtype=np.float32)


def shared_feature_candidates(x: Any, per_feature: int, features: int = 2) -> np.ndarray:
    """For every row of the CSR ``x`` [n, F]: the ``per_feature`` rows with the largest weight on each of its
    ``features`` largest-weight features (int64 [n, features * per_feature], -1 where fewer; the row itself
    may be among them). Rows sharing a rare, heavy feature (an activating token) are the likeliest
    neighbours, and a low-rank projection blurs exactly those rare features."""
    n, f = x.shape
    out = np.full((n, features * per_feature), -1, np.int64)
    if x.nnz == 0:
        return out

    def best(csr: Any, limit: int) -> np.ndarray:
        """[rows of csr, limit]: column indices of each row's ``limit`` largest entries (-1 where fewer)."""
        row = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
        order = np.lexsort((csr.indices, -csr.data, row))  # by row, then weight (largest first), then column
        rank = np.arange(order.size) - csr.indptr[row[order]]
        table = np.full((csr.shape[0], limit), -1, np.int64)
        keep = rank < limit
        table[row[order][keep], rank[keep]] = csr.indices[order][keep]
        return table

    by_feature = best(x.T.tocsr(), per_feature)  # [F, per_feature]: the rows heaviest on each feature
    heavy = best(x, features)  # [n, features]: each row's heaviest features
    found = np.where(heavy[:, :, None] >= 0, by_feature[np.maximum(heavy, 0)], -1)
    return found.reshape(n, -1)


def nearest(
    x: Any, k: int, *, block: int = BLOCK, exact_max: float = EXACT_MAX_PAIRS, dims: int = SEARCH_DIMS
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows by cosine for every row of the row-normalised CSR ``x`` (itself excluded).

    Returns (index [n, k], similarity [n, k]); missing neighbours (similarity 0) have index -1. Every
    cosine is computed up to ``n * n <= exact_max``; above, the sparse products grow too dense (~100 s at
    50,000 graphs on 2 cores), so candidates (:data:`ACT_CANDIDATES` x k) come from the rows' low-rank
    projection (:func:`low_rank_rows`, ``dims`` dimensions), plus the rows heaviest on each row's two heaviest
    features (:func:`shared_feature_candidates`), and are rescored exactly (row-wise sparse products).
    """
    n = x.shape[0]
    k_eff = min(k, max(n - 1, 0))
    idx = np.full((n, k), -1, np.int64)
    sim = np.zeros((n, k), np.float32)
    if k_eff == 0:
        return idx, sim
    import torch

    exact = n * n <= exact_max
    if exact:
        xt = x.T.tocsc()
    else:
        search = torch.from_numpy(low_rank_rows(x, dims))
        search_t = search.T.contiguous()
        cand = min(n - 1, ACT_CANDIDATES * k_eff)
        shared = shared_feature_candidates(x, 2 * k_eff)
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        if exact:
            s = (x[lo:hi] @ xt).toarray()
            s[np.arange(hi - lo), np.arange(lo, hi)] = -1.0  # not its own neighbour
            top = torch.topk(torch.from_numpy(s), k_eff, dim=1).indices.numpy()  # ~5x numpy's argpartition
            vals = np.take_along_axis(s, top, axis=1)
        else:
            approx = search[lo:hi] @ search_t
            approx[torch.arange(hi - lo), torch.arange(lo, hi)] = -float("inf")
            top = np.sort(np.concatenate([torch.topk(approx, cand, dim=1).indices.numpy(), shared[lo:hi]], 1), 1)
            unusable = (top < 0) | (top == np.arange(lo, hi)[:, None])  # padding, the row itself ...
            unusable[:, 1:] |= top[:, 1:] == top[:, :-1]  # ... and repeats
            top = np.where(unusable, 0, top)
            rows = np.repeat(np.arange(lo, hi), top.shape[1])
            vals = np.asarray(x[rows].multiply(x[top.ravel()]).sum(axis=1), np.float32).reshape(top.shape)
            vals = np.where(unusable, -1.0, vals)
        _keep_best(idx, sim, lo, top, vals, k_eff)
    return idx, sim


def _keep_best(
    idx: np.ndarray, sim: np.ndarray, lo: int, top: np.ndarray, vals: np.ndarray, k: int, live: np.ndarray | None = None
) -> None:
    """Store the ``k`` best of a block's scored candidates (``top``, ``vals`` [b, c]) as rows ``lo:lo+b`` of
    ``idx``/``sim``: strongest first, ties by row index (deterministic); cosines <= 1e-6, and rows not
    ``live``, get index -1 and cosine 0."""
    order = np.lexsort((top, -vals), axis=1)[:, :k]
    top, vals = np.take_along_axis(top, order, axis=1), np.take_along_axis(vals, order, axis=1)
    keep = vals > 1e-6
    if live is not None:
        keep &= live[lo : lo + len(top), None]
    idx[lo : lo + len(top), :k] = np.where(keep, top, -1)
    sim[lo : lo + len(top), :k] = np.where(keep, vals, 0.0)


def _neighbour_lists(keys: Sequence[tuple[int, int]], idx: np.ndarray, sim: np.ndarray) -> dict[str, list[list]]:
    """``{"L/N": [[layer, neuron, cosine], ...]}`` from :func:`nearest`-style index and cosine arrays."""
    return {
        f"{layer}/{neuron}": [
            [keys[j][0], keys[j][1], round(float(s), 3)] for j, s in zip(idx[row], sim[row], strict=True) if j >= 0
        ]
        for row, (layer, neuron) in enumerate(keys)
    }


def similar_neurons(graphs: Sequence[tuple[int, int, Graph]], k: int = SIMILAR_K) -> dict[str, list[list]]:
    """``{"L/N": [[layer, neuron, cosine], ...]}`` for every (layer, neuron, graph), strongest first (the
    relate stage itself reads features in worker processes: :func:`read_graph_rows`)."""
    return similar_by_features(
        [(layer, neuron) for layer, neuron, _ in graphs], [graph_features(g) for _, _, g in graphs], k
    )


def similar_by_features(
    keys: Sequence[tuple[int, int]], features: Sequence[dict[str, float]], k: int = SIMILAR_K
) -> dict[str, list[list]]:
    """:func:`similar_neurons` from the graphs' :func:`graph_features`, one per (layer, neuron) of ``keys``."""
    if not keys:
        return {}
    return _neighbour_lists(keys, *nearest(feature_matrix(features), k))


def activation_matrix(work: WorkDir, selection: dict[int, list[int]]) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Every selected neuron's activations on the ordinary-text sample: (keys, float32 [n, tokens]).

    Only layers whose sample holds the same tokens as the first layer's are used (one mining pass writes
    the same sample for every layer); NaN (padding) positions are dropped, other NaNs count as 0.
    """
    keys: list[tuple[int, int]] = []
    rows: list[np.ndarray] = []
    reference: np.ndarray | None = None
    for layer in sorted(selection):
        path = work.mined(layer)
        if not path.exists():
            continue
        with np.load(path) as z:  # only the members needed (np.load reads an npz lazily)
            if "ordinary.tokens" not in z.files:
                continue
            tokens, mined = z["ordinary.tokens"], z["neurons"]
            if tokens.size == 0:
                continue
            if reference is None:
                reference = tokens
            elif tokens.shape != reference.shape or not np.array_equal(tokens, reference):
                continue
            acts = z["ordinary.acts"]
        valid = (tokens >= 0).ravel()
        where = {int(n): i for i, n in enumerate(mined)}
        wanted = [n for n in selection[layer] if n in where]
        if not wanted:
            continue
        block = acts[[where[n] for n in wanted]].reshape(len(wanted), -1)[:, valid].astype(np.float32)
        rows.append(np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0))
        keys.extend((layer, n) for n in wanted)
    if not rows:
        return [], np.zeros((0, 0), np.float32)
    return keys, np.concatenate(rows)


def activation_neighbours(
    x: np.ndarray, k: int, *, exact_max: float = ACT_EXACT_MAX, dims: int = SEARCH_DIMS, block: int = ACT_BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows of ``x`` [n, d] by cosine for every row (itself excluded), strongest first.

    Returns (index [n, k], cosine [n, k]); missing neighbours (zero rows, fewer than k others, cosine <= 0)
    have index -1 and cosine 0. Exact when ``n * n * d <= exact_max``, else candidates from the rows' low-rank
    projection (:func:`low_rank_rows`, ``dims`` dimensions), rescored exactly (see the module docstring).
    """
    import torch

    n = x.shape[0]
    idx = np.full((n, k), -1, np.int64)
    sim = np.zeros((n, k), np.float32)
    if n < 2 or k == 0 or x.shape[1] == 0:
        return idx, sim
    norms = np.linalg.norm(x, axis=1)
    live = norms > 0
    # C order: the matrix is gathered by rows below; activation_matrix's column selection leaves it in Fortran
    # order, where each row gather strides over the whole matrix (~15x slower at 50,000 x 4,096).
    xn = torch.from_numpy(
        np.ascontiguousarray(np.where(live[:, None], x / np.where(live, norms, 1.0)[:, None], 0.0), dtype=np.float32)
    )
    exact = n * n * x.shape[1] <= exact_max
    search = xn if exact else torch.from_numpy(low_rank_rows(xn.numpy(), dims))
    search_t = search.T.contiguous()
    k_eff = min(k, n - 1)
    cand = min(n - 1, k_eff if exact else ACT_CANDIDATES * k_eff)
    with torch.no_grad():
        for lo in range(0, n, block):
            hi = min(lo + block, n)
            s = search[lo:hi] @ search_t
            s[torch.arange(hi - lo), torch.arange(lo, hi)] = -float("inf")  # not its own neighbour
            top = torch.topk(s, cand, dim=1).indices
            if exact:
                vals = torch.gather(s, 1, top)
            else:  # rescore the candidates exactly
                top = torch.sort(top, dim=1).values
                vals = _rescore(xn, lo, top)
            _keep_best(idx, sim, lo, top.numpy(), vals.numpy(), k_eff, live)
    return idx, sim


def _rescore(xn: Any, lo: int, top: Any) -> Any:
    """Exact dot products of rows ``lo:lo+len(top)`` of ``xn`` with their candidate rows ``top`` [b, c]
    (sorted per row): a sampled matmul (no copy of the candidates' rows; ~5x faster than gathering them),
    else gathered rows a few at a time."""
    import warnings

    import torch

    b, c = top.shape
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch: sparse CSR is "beta"
            mask = torch.sparse_csr_tensor(
                torch.arange(0, b * c + 1, c), top.reshape(-1), torch.zeros(b * c), size=(b, xn.shape[0])
            )
            out = torch.sparse.sampled_addmm(mask, xn[lo : lo + b], xn.T, beta=0.0)
        return out.values().reshape(b, c)
    except (RuntimeError, NotImplementedError, AttributeError):
        return torch.cat(
            [torch.einsum("bd,bcd->bc", xn[lo + a : lo + a + 64], xn[top[a : a + 64]]) for a in range(0, b, 64)]
        )


def similar_by_activation(
    work: WorkDir, selection: dict[int, list[int]], k: int = SIMILAR_K
) -> tuple[dict[str, list[list]], int]:
    """``({"L/N": [[layer, neuron, cosine], ...]}, tokens compared)`` from the ordinary-text activations."""
    keys, x = activation_matrix(work, selection)
    if len(keys) < 2:
        return {}, int(x.shape[1]) if x.ndim == 2 else 0
    return _neighbour_lists(keys, *activation_neighbours(x, k)), int(x.shape[1])


# ---------------------------------------------------------------------------------- logit effects


@dataclass
class Unembed:
    """What the logit-effect projection needs from a model, as float32 torch tensors on the CPU."""

    w_out: Callable[[int], Any]  # layer -> [d_mlp, d_model]
    w_u: Any  # [d_model, d_vocab]
    norm_scale: Any | None  # [d_model] final-norm weight, None if the model has none
    centre: bool  # LayerNorm: mean-centre directions first
    norm: str  # human description of what was folded in


def unembed_of(bridge: Any) -> Unembed:
    """Read the weights from a TransformerLens 4 ``TransformerBridge`` (native, HF and TL-legacy boots)."""
    import torch

    with torch.no_grad():
        w_u = bridge.W_U.detach().float().cpu()
        scale = None
        ln = getattr(bridge, "ln_final", None)
        if ln is not None:
            params = dict(ln.named_parameters())
            weight = next((p for name, p in params.items() if name.endswith("weight")), None)
            if weight is not None and weight.ndim == 1 and weight.shape[0] == w_u.shape[0]:
                scale = weight.detach().float().cpu()
    kind = str(getattr(bridge.cfg, "normalization_type", "") or "")
    centre = kind.upper().startswith("LN")
    if scale is not None:
        name = "LayerNorm" if centre else "RMSNorm" if kind.upper().startswith("RMS") else "norm"
        norm = f"final {name} scale folded in"
    else:
        norm = "no final-norm scale found (not folded)"
    if centre:
        norm += "; directions mean-centred as LayerNorm does"

    def w_out(layer: int) -> Any:
        with torch.no_grad():
            return bridge.blocks[layer].mlp.W_out.detach().float().cpu()

    return Unembed(w_out=w_out, w_u=w_u, norm_scale=scale, centre=centre, norm=norm)


def logit_effects(u: Unembed, layer: int, neurons: Sequence[int], k: int = LOGIT_K) -> tuple[np.ndarray, ...]:
    """Top promoted and suppressed tokens of each neuron: (up_ids, up_vals, down_ids, down_vals), each [n, k].

    One matmul for all ``neurons`` of the layer (in chunks that bound memory to ~256 x d_vocab floats).
    """
    import torch

    with torch.no_grad():
        w = u.w_out(layer)[torch.as_tensor(list(neurons), dtype=torch.long)]
        if u.centre:
            w = w - w.mean(dim=1, keepdim=True)
        if u.norm_scale is not None:
            w = w * u.norm_scale
        k = min(k, u.w_u.shape[1])
        parts: list[list[Any]] = [[], [], [], []]
        for lo in range(0, w.shape[0], 256):
            eff = w[lo : lo + 256] @ u.w_u
            up = torch.topk(eff, k, dim=1)
            down = torch.topk(-eff, k, dim=1)
            for out, t in zip(parts, (up.indices, up.values, down.indices, -down.values), strict=True):
                out.append(t)
        if not parts[0]:
            empty = np.zeros((0, k))
            return empty.astype(np.int64), empty, empty.astype(np.int64), empty
        return tuple(torch.cat(p).numpy() for p in parts)


# --------------------------------------------------------------------------------------- the stage


def _selection(work: WorkDir) -> dict[int, list[int]]:
    manifest = work.load_manifest()
    return {int(k): [int(n) for n in v] for k, v in (manifest.get("neurons") or {}).items()}


def _logit_current(work: WorkDir, layer: int, neurons: Iterable[int]) -> bool:
    path = work.logit_effects(layer)
    if not path.exists():
        return False
    try:
        have = read_json(path).get("neurons") or {}
    except ValueError:
        return False
    return all(str(n) in have for n in neurons)


def _read_graph(work: WorkDir, layer: int, neuron: int) -> Graph | None:
    path = work.fitted(layer, neuron)
    if not path.exists():
        return None
    try:
        fit = read_json(path)
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}): delete it and rerun `n2g-site fit`") from None
    if fit.get("status") != "fitted" or not fit.get("graph"):
        return None
    try:
        graph = Graph.from_json(fit["graph"])
    except (ValueError, TypeError, KeyError):
        return None
    return graph if graph.nodes else None


def _graph_rows(args: tuple[str, int, list[int]]) -> list[tuple[int, int, dict[str, float], list[str]]]:
    """(layer, neuron, graph features, top tokens) of every fitted graph of one layer's ``neurons``."""
    root, layer, neurons = args
    work = WorkDir(Path(root))
    return [
        (layer, n, graph_features(g), top_tokens(g)) for n in neurons if (g := _read_graph(work, layer, n)) is not None
    ]


def read_graph_rows(
    work: WorkDir, selection: dict[int, list[int]], *, jobs: int | None = None
) -> list[tuple[int, int, dict[str, float], list[str]]]:
    """:func:`_graph_rows` of every selected layer, in layer order; layers are read in ``jobs`` worker
    processes (default: the CPU count) when there are at least :data:`PARALLEL_MIN_GRAPHS` neurons (reading
    and parsing 50,000 fit files takes ~20 s on one core)."""
    tasks = [(str(work.root), layer, list(selection[layer])) for layer in sorted(selection)]
    jobs = min(jobs or os.cpu_count() or 1, len(tasks))
    if jobs <= 1 or sum(len(t[2]) for t in tasks) < PARALLEL_MIN_GRAPHS:
        return [row for t in tasks for row in _graph_rows(t)]
    # spawn: relate may run in a process that holds torch threads (the model for logit effects)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return [row for rows in pool.map(_graph_rows, tasks) for row in rows]


def top_tokens(graph: Graph, k: int = 3) -> list[str]:
    """The graph's strongest activating tokens in display form, one per key."""
    from .render.tokens import display_token

    seen: set[str | None] = set()
    out = []
    for node in sorted(graph.activating_tokens, key=lambda n: (-n.activation, -n.count, n.id)):
        if node.key is None or node.key in seen:
            continue
        seen.add(node.key)
        out.append(display_token(node.token))
        if len(out) == k:
            break
    return out


def write_similar(
    work: WorkDir,
    rows: Sequence[tuple[int, int, dict[str, float], list[str]]],
    k: int = SIMILAR_K,
    selection: dict[int, list[int]] | None = None,
) -> int:
    """Write ``relate/similar.json``: neighbours of every graph (``rows`` from :func:`read_graph_rows`), and
    each graph's top tokens to label them; with ``selection``, also every selected neuron's neighbours by
    activation on ordinary text."""
    similar = similar_by_features([(layer, neuron) for layer, neuron, _, _ in rows], [f for _, _, f, _ in rows], k)
    tokens = {f"{layer}/{neuron}": top for layer, neuron, _, top in rows}
    by_act, act_tokens = similar_by_activation(work, selection, k) if selection else ({}, 0)
    write_json(
        work.similar,
        {
            "schema": SIMILAR_SCHEMA,
            "k": k,
            "features": "graph tokens, tf-idf, cosine",
            "neurons": similar,
            "tokens": tokens,
            "activation_features": "activations on ordinary held-out text, cosine",
            "activation_tokens": act_tokens,
            "activation": by_act,
        },
    )
    return len(similar)


def relate(cfg: Config, load_model: Callable[[], Any], work: WorkDir) -> None:
    """Similar neurons from the fitted graphs; logit effects of every layer whose file is missing."""
    del cfg  # every option that matters is in the work dir's manifest
    started = time.perf_counter()
    selection = _selection(work)
    count = write_similar(work, read_graph_rows(work, selection), selection=selection)
    say(f"relate: similar neurons of {count} graphs ({time.perf_counter() - started:.1f} s)")

    todo = [layer for layer in sorted(selection) if not _logit_current(work, layer, selection[layer])]
    if not todo:
        say("relate: logit effects are up to date")
        return
    started = time.perf_counter()
    model = load_model()
    u = unembed_of(model.bridge)
    vocab = work.load_vocab()
    for layer in todo:
        neurons = selection[layer]
        up_i, up_v, down_i, down_v = logit_effects(u, layer, neurons)
        write_json(
            work.logit_effects(layer),
            {
                "schema": LOGIT_SCHEMA,
                "layer": layer,
                "norm": u.norm,
                "k": int(up_i.shape[1]) if up_i.ndim == 2 else 0,
                "vocab": len(vocab),
                "neurons": {
                    str(n): {
                        "up": [[int(t), _r(v)] for t, v in zip(up_i[i], up_v[i], strict=True)],
                        "down": [[int(t), _r(v)] for t, v in zip(down_i[i], down_v[i], strict=True)],
                    }
                    for i, n in enumerate(neurons)
                },
            },
        )
    say(f"relate: logit effects of {len(todo)} layer(s) ({time.perf_counter() - started:.1f} s; {u.norm})")


def _r(v: float) -> float:
    v = float(v)
    return round(v, 4) if math.isfinite(v) else 0.0
