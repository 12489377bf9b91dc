"""The miner's accumulators (top-k windows, statistics) against a plain numpy reference, and across a
checkpoint; on every device this machine has (the CPU always, CUDA when present)."""

import io

import numpy as np
import pytest
import torch

from n2g_site.corpus import TokenRow
from n2g_site.mine import BatchRows, OrdinarySampler, StatsAccumulator, TopK, _accumulate
from n2g_site.store import HIST_EDGES

BOS, K, BEFORE, AFTER, D_MLP = 1, 4, 2, 3, 12
NEURONS = np.array([0, 3, 4, 11])
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def stream(seed: int, batches: int = 7) -> list[tuple[list[TokenRow], np.ndarray]]:
    """Batches of rows (some only a doc-start token, so without text) and activations with many ties,
    negative values and values exactly on histogram edges."""
    rng = np.random.default_rng(seed)
    edges = HIST_EDGES.astype(np.float32)
    out, doc = [], 0
    for _ in range(batches):
        rows = []
        for _ in range(int(rng.integers(2, 7))):
            length = int(rng.integers(1, 10))
            body = rng.integers(2, 30, length - 1).tolist()
            rows.append(TokenRow(doc, int(rng.integers(-1, 50)), tuple([BOS] + body), rng.choice(["train", "heldout"])))
            doc += 1
        width = max(len(r.tokens) for r in rows)
        acts = rng.choice([-1.5, -0.25, 0.0, 0.5, 0.5, 1.0, 2.0, 2.0, 3.0], size=(len(rows), width, D_MLP))
        on_edge = rng.random(acts.shape) < 0.2
        acts[on_edge] = rng.choice(edges, size=int(on_edge.sum()))
        acts[:, 0] += 100.0  # the doc-start token's huge activation must never count
        out.append((rows, acts.astype(np.float32)))
    return out


def accumulators(device: str) -> dict:
    return {
        "stats": StatsAccumulator(D_MLP, device),
        **{split: TopK(len(NEURONS), K, BEFORE, AFTER, device) for split in ("train", "heldout")},
        "ordinary": OrdinarySampler(10),
    }


def feed(parts: dict, batches, device: str) -> None:
    picks = {0: torch.tensor(NEURONS, device=device)}
    for rows, acts in batches:
        batch = BatchRows.build(rows, BOS, torch.device(device))
        _accumulate(
            {0: torch.from_numpy(acts.copy()).to(device)},
            batch,
            [0],
            picks,
            {0: parts["stats"]},
            {(0, split): parts[split] for split in ("train", "heldout")},
            {0: parts["ordinary"]},
        )


def reference_stats(batches):
    values = np.concatenate([acts[i, 1 : len(r.tokens)] for rows, acts in batches for i, r in enumerate(rows)])
    bins = np.searchsorted(HIST_EDGES.astype(np.float32), values, side="right")  # [tokens, d_mlp]
    hist = np.stack([np.bincount(bins[:, j], minlength=len(HIST_EDGES) + 1) for j in range(D_MLP)])
    return values, hist


@pytest.mark.parametrize("device", DEVICES)
def test_statistics_equal_a_numpy_reference(device):
    batches = stream(0)
    parts = accumulators(device)
    feed(parts, batches, device)
    stats = parts["stats"].result()
    values, hist = reference_stats(batches)
    assert stats.tokens == len(values)
    np.testing.assert_array_equal(stats.max, values.max(axis=0))
    np.testing.assert_array_equal(stats.min, values.min(axis=0))
    np.testing.assert_array_equal(stats.hist, hist)
    np.testing.assert_allclose(
        stats.mean, (values.astype(np.float64).sum(axis=0) / len(values)).astype(np.float32), rtol=1e-6
    )


@pytest.mark.parametrize("device", DEVICES)
def test_top_k_equals_a_numpy_reference(device):
    batches = stream(1)
    parts = accumulators(device)
    feed(parts, batches, device)
    for split in ("train", "heldout"):
        got = parts[split].result()
        candidates = {}  # (doc, window start) -> (neuron row -> value, tokens, acts)
        for rows, acts in batches:
            for i, r in enumerate(rows):
                if r.split != split or len(r.tokens) == 1:
                    continue
                for row, neuron in enumerate(NEURONS):
                    text = acts[i, 1 : len(r.tokens), neuron]
                    peak = 1 + int(np.argmax(text))  # the first of tied maxima
                    pos = np.arange(peak - BEFORE, peak + AFTER + 1)
                    inside = (pos >= 0) & (pos < len(r.tokens))
                    tokens = np.where(inside, np.array(r.tokens + (0,) * 20)[pos.clip(0)], -1)
                    window = np.where(inside, acts[i, pos.clip(0, acts.shape[1] - 1), neuron], np.nan)
                    candidates[(row, r.doc, r.offset + peak - BEFORE)] = (text.max(), tokens, window)
        for row in range(len(NEURONS)):
            mine = sorted((v for (n, _, _), (v, _, _) in candidates.items() if n == row), reverse=True)[:K]
            expected = np.array(mine + [-np.inf] * (K - len(mine)), np.float32)
            np.testing.assert_array_equal(got.value[row], expected)  # ties: any of the tied windows may win
            filled = got.doc[row] >= 0
            assert filled.sum() == len(mine)
            assert len({(d, s) for d, s in zip(got.doc[row][filled], got.start[row][filled])}) == len(mine)
            for slot in np.flatnonzero(filled):
                value, tokens, window = candidates[(row, int(got.doc[row, slot]), int(got.start[row, slot]))]
                assert got.value[row, slot] == value
                np.testing.assert_array_equal(got.tokens[row, slot], tokens)
                np.testing.assert_array_equal(got.acts[row, slot], window)
            empty = ~filled
            assert (got.tokens[row][empty] == -1).all() and np.isnan(got.acts[row][empty]).all()
            assert (got.start[row][empty] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_a_checkpoint_round_trip_resumes_exactly(device):
    batches = stream(2, batches=9)
    whole = accumulators(device)
    feed(whole, batches, device)
    first = accumulators(device)
    feed(first, batches[:4], device)
    buf = io.BytesIO()
    np.savez(buf, **{f"{part}/{k}": v for part, obj in first.items() for k, v in obj.state().items()})
    buf.seek(0)
    resumed = accumulators(device)
    with np.load(buf) as z:
        for part, obj in resumed.items():
            obj.restore({k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(f"{part}/")})
    feed(resumed, batches[4:], device)
    for part in whole:
        a, b = whole[part].state(), resumed[part].state()
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{part}/{name}")
