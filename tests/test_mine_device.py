"""The miner's accumulators (top-k and bottom-k windows, statistics, the two-sided histogram) against a plain
numpy reference, and across a checkpoint; on every device this machine has (the CPU always, CUDA when
present), for an even d_mlp (two columns' codes read from one int64 word) and an odd one."""

import io

import numpy as np
import pytest
import torch

from n2g_site.corpus import TokenRow
from n2g_site.mine import BatchRows, OrdinarySampler, StatsAccumulator, _accumulate, example_sets
from n2g_site.store import HIST_EDGES, HIST_MAGNITUDES, MinedLayer

BOS, K, BEFORE, AFTER = 1, 4, 2, 3
NEURONS = np.array([0, 3, 4, 10])
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
WIDTHS = (12, 11)  # d_mlp: even (paired codes) and odd
SETS = MinedLayer.SETS  # with the band samples (BAND, tests/test_bands.py checks what they keep)
BAND = 3


def stream(seed: int, batches: int = 7, d_mlp: int = 12) -> list[tuple[list[TokenRow], np.ndarray]]:
    """Batches of rows (some only a doc-start token, so without text) and activations with many ties,
    negative values, zeros, tiny and huge values, and values exactly on histogram edges (either sign)
    and one float32 step either side of them."""
    rng = np.random.default_rng(seed)
    edges = HIST_EDGES.astype(np.float32)
    edges = np.concatenate(
        [edges, np.nextafter(edges, np.float32(np.inf)), np.nextafter(edges, np.float32(-np.inf)), [0.0, -0.0, 1e-30]]
    ).astype(np.float32)
    out, doc = [], 0
    for _ in range(batches):
        rows = []
        for _ in range(int(rng.integers(2, 7))):
            length = int(rng.integers(1, 10))
            body = rng.integers(2, 30, length - 1).tolist()
            rows.append(TokenRow(doc, int(rng.integers(-1, 50)), tuple([BOS] + body), rng.choice(["train", "heldout"])))
            doc += 1
        width = max(len(r.tokens) for r in rows)
        acts = rng.choice([-1.5, -0.25, 0.0, 0.5, 0.5, 1.0, 2.0, 2.0, 3.0], size=(len(rows), width, d_mlp))
        on_edge = rng.random(acts.shape) < 0.2
        acts[on_edge] = rng.choice(edges, size=int(on_edge.sum()))
        acts[:, 0] += 100.0  # the doc-start token's huge activation must never count
        acts[:, 0, ::2] -= 300.0  # nor, for the bottom, a hugely negative one
        out.append((rows, acts.astype(np.float32)))
    return out


def accumulators(device: str, d_mlp: int = 12) -> dict:
    return {
        "stats": StatsAccumulator(d_mlp, device),
        **example_sets(len(NEURONS), K, BEFORE, AFTER, device, BAND),
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
            {(0, name): parts[name] for name in SETS},
            {0: parts["ordinary"]},
        )


def reference_bins(values: np.ndarray) -> np.ndarray:
    """store.HIST_EDGES' documented rule, in float64: by magnitude, each bin holding its edge nearer zero."""
    magnitude = np.searchsorted(HIST_MAGNITUDES, np.abs(values.astype(np.float64)), side="right")  # 0: zero bin
    zero = len(HIST_MAGNITUDES)
    return np.where(magnitude == 0, zero, np.where(values > 0, zero + magnitude, zero - magnitude))


def test_the_reference_rule_is_the_documented_one():
    edges = HIST_EDGES
    assert len(edges) == 82 and (np.diff(edges) > 0).all() and (edges[:41] == -edges[::-1][:41]).all()
    assert edges[41] == 2.0**-10 and edges[-1] == 1024.0
    probe = np.array(
        [-2000.0, -1024.0, -1000.0, -0.0012, -(2.0**-10), -1e-4, 0.0, 1e-4, 2.0**-10, 1.0, 1.4, 1.5, 1024.0]
    )
    assert reference_bins(probe).tolist() == [0, 0, 1, 40, 40, 41, 41, 41, 42, 62, 62, 63, 82]


def reference_stats(batches):
    values = np.concatenate([acts[i, 1 : len(r.tokens)] for rows, acts in batches for i, r in enumerate(rows)])
    bins = reference_bins(values)  # [tokens, d_mlp]
    hist = np.stack([np.bincount(bins[:, j], minlength=len(HIST_EDGES) + 1) for j in range(values.shape[1])])
    return values, hist


@pytest.mark.parametrize("d_mlp", WIDTHS)
@pytest.mark.parametrize("device", DEVICES)
def test_statistics_equal_a_numpy_reference(device, d_mlp):
    batches = stream(0, d_mlp=d_mlp)
    parts = accumulators(device, d_mlp)
    feed(parts, batches, device)
    stats = parts["stats"].result()
    values, hist = reference_stats(batches)
    assert stats.tokens == len(values)
    np.testing.assert_array_equal(stats.max, values.max(axis=0))
    np.testing.assert_array_equal(stats.min, values.min(axis=0))
    np.testing.assert_array_equal(stats.hist, hist)
    assert (stats.hist.sum(axis=1) == stats.tokens).all()
    # each batch summed in float32, the batches added in float64: within 2**-20 of the mean magnitude (float32
    # has 24 bits; the cascade sum loses a few) and the final float32 rounding
    exact = values.astype(np.float64).sum(axis=0) / len(values)
    bound = 2.0**-20 * np.abs(values.astype(np.float64)).mean(axis=0) + np.spacing(np.abs(exact).astype(np.float32))
    assert (np.abs(stats.mean - exact) <= bound).all(), np.abs(stats.mean - exact) / bound


@pytest.mark.parametrize("device", DEVICES)
def test_top_k_and_bottom_k_equal_a_numpy_reference(device):
    batches = stream(1)
    parts = accumulators(device)
    feed(parts, batches, device)
    for name in SETS[:4]:
        split, lowest = name.removeprefix("bottom_"), name.startswith("bottom_")
        sign = -1.0 if lowest else 1.0  # the bottom set is the top set of the negated activations
        got = parts[name].result()
        candidates = {}  # (doc, window start) -> (neuron row -> value, tokens, acts)
        for rows, acts in batches:
            for i, r in enumerate(rows):
                if r.split != split or len(r.tokens) == 1:
                    continue
                for row, neuron in enumerate(NEURONS):
                    text = acts[i, 1 : len(r.tokens), neuron]
                    peak = 1 + int(np.argmax(sign * text))  # the first of tied maxima (minima)
                    pos = np.arange(peak - BEFORE, peak + AFTER + 1)
                    inside = (pos >= 0) & (pos < len(r.tokens))
                    tokens = np.where(inside, np.array(r.tokens + (0,) * 20)[pos.clip(0)], -1)
                    window = np.where(inside, acts[i, pos.clip(0, acts.shape[1] - 1), neuron], np.nan)
                    candidates[(row, r.doc, r.offset + peak - BEFORE)] = (acts[i, peak, neuron], tokens, window)
        for row in range(len(NEURONS)):
            mine = sorted((v for (n, _, _), (v, _, _) in candidates.items() if n == row), key=lambda v: -sign * v)[:K]
            expected = np.array(mine + [-sign * np.inf] * (K - len(mine)), np.float32)
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


@pytest.mark.parametrize("d_mlp", WIDTHS)
@pytest.mark.parametrize("device", DEVICES)
def test_a_checkpoint_round_trip_resumes_exactly(device, d_mlp):
    batches = stream(2, batches=9, d_mlp=d_mlp)
    whole = accumulators(device, d_mlp)
    feed(whole, batches, device)
    first = accumulators(device, d_mlp)
    feed(first, batches[:4], device)
    buf = io.BytesIO()
    np.savez(buf, **{f"{part}/{k}": v for part, obj in first.items() for k, v in obj.state().items()})
    buf.seek(0)
    resumed = accumulators(device, d_mlp)
    with np.load(buf) as z:
        for part, obj in resumed.items():
            obj.restore({k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(f"{part}/")})
    feed(resumed, batches[4:], device)
    for part in whole:
        a, b = whole[part].state(), resumed[part].state()
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{part}/{name}")


def test_cutting_every_candidate_keeps_what_cutting_the_entering_ones_keeps():
    """The CPU cuts only the entering windows (it reads their count back); a device cuts every candidate and
    writes the others to the storage row no rank uses. Both keep the same windows."""
    batches = stream(3, batches=9)
    compact, every = accumulators("cpu"), accumulators("cpu")
    for name in SETS:
        every[name].compact = False
    feed(compact, batches, "cpu")
    feed(every, batches, "cpu")
    for name in SETS:
        a, b = compact[name].state(), every[name].state()
        for field in a:
            np.testing.assert_array_equal(a[field], b[field], err_msg=f"{name}/{field}")
