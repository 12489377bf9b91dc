"""The miner's accumulators (top-k and bottom-k windows, statistics, the two-sided histogram) against a plain
numpy reference, and across a checkpoint; on every device this machine has (the CPU always, CUDA when
present), for an even d_mlp (two columns' codes read from one int64 word) and an odd one."""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from n2g_site.corpus import TokenRow
from n2g_site.mine import BatchRows, OrdinarySampler, StatsAccumulator, _accumulate, example_sets
from n2g_site.store import HIST_EDGES, HIST_MAGNITUDES, MinedLayer

BOS, K, BEFORE, AFTER = 1, 4, 2, 3
NEURONS = np.array([0, 3, 4, 10])
# "cpu-torch": the CPU with the torch ops a device runs, instead of the CPU's compiled statistics loop
DEVICES = ["cpu", "cpu-torch"] + (["cuda"] if torch.cuda.is_available() else [])
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


def torch_device(device: str) -> str:
    return device.removesuffix("-torch")


def accumulators(device: str, d_mlp: int = 12) -> dict:
    stats = StatsAccumulator(d_mlp, torch_device(device))
    sets = example_sets(len(NEURONS), K, BEFORE, AFTER, torch_device(device), BAND)
    if device == "cpu-torch":
        for part in (stats, *sets.values()):
            part.compiled = False
    return {"stats": stats, **sets, "ordinary": OrdinarySampler(10)}


def feed(parts: dict, batches, device: str) -> None:
    device = torch_device(device)
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


def test_the_three_ways_of_merging_keep_the_same_windows():
    """The CPU's compiled merge (mine_kernels.merge_windows), the torch ops cutting only the entering windows
    (the CPU's way for a dtype other than float32: it reads their count back), and the torch ops cutting every
    candidate into the storage row no rank uses (a device's way: no sync) keep the same windows."""
    batches = stream(3, batches=9)
    ways = {way: accumulators("cpu") for way in ("compiled", "compact", "every")}
    for way, parts in ways.items():
        for name in SETS:
            parts[name].compiled = way == "compiled"
            parts[name].compact = way == "compact"
        feed(parts, batches, "cpu")
    for way in ("compact", "every"):
        for name in SETS:
            a, b = ways["compiled"][name].state(), ways[way][name].state()
            for field in a:
                np.testing.assert_array_equal(a[field], b[field], err_msg=f"{way}: {name}/{field}")


@pytest.mark.parametrize("d_mlp", WIDTHS)
def test_the_compiled_statistics_equal_the_torch_ops(d_mlp):
    """mine_kernels.row_stats against the torch ops a device runs, on one batch with ties, NaNs and rows without
    text: the same peaks, positions (the first, NaN first) and bins; the float64 sum within float32 rounding."""
    rng = np.random.default_rng(4)
    acts = rng.choice([-1.0, 0.0, 0.5, 2.0, 2.0], size=(5, 9, d_mlp)).astype(np.float32)
    acts[rng.random(acts.shape) < 0.05] = np.nan
    acts[4] = np.nan  # a row of NaNs only
    invalid = torch.tensor([0, 9, 27, 36, *range(18, 27)])  # each doc-start, and all of row 2
    got = {}
    for way in ("compiled", "torch"):
        stats = StatsAccumulator(d_mlp, "cpu")
        stats.compiled = way == "compiled"
        with torch.inference_mode():
            peaks = stats.update(torch.from_numpy(acts.copy()), invalid)
        got[way] = ([p.numpy() for p in peaks], stats.state())
    (peaks_a, state_a), (peaks_b, state_b) = got["compiled"], got["torch"]
    for a, b in zip(peaks_a, peaks_b):
        np.testing.assert_array_equal(a, b)
    assert np.isinf(peaks_a[0][2]).all() and (peaks_a[1][2] == 0).all()  # row 2: no text
    for name in ("max", "min", "hist", "count"):
        np.testing.assert_array_equal(state_a[name], state_b[name], err_msg=name)
    np.testing.assert_allclose(state_a["sum"], state_b["sum"], rtol=1e-6, atol=1e-6)


def test_without_numba_the_cpu_keeps_the_torch_ops():
    """Where numba is missing (a source checkout on the GPU check's machine), mine imports and the CPU runs the
    torch ops, which the tests above check as "cpu-torch"."""
    probe = (
        "import sys; sys.modules['numba'] = None\n"
        "from n2g_site import mine, mine_kernels\n"
        "assert not mine_kernels.AVAILABLE\n"
        "assert not mine.StatsAccumulator(4).compiled and not mine.TopK(4, 2, 1, 1).compiled\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "generator")}
    subprocess.run([sys.executable, "-c", probe], check=True, env=env)
