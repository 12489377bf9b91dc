"""The band sample (mine.BandSample, --band-windows): what it keeps against a numpy reference of its rule, its
keys' hash, and the activation bands it is grouped into (store.BAND_EDGES)."""

import numpy as np
import pytest
import torch

from n2g_site.mine import BAND_GAMMA, band_key, band_uniform
from n2g_site.store import BAND_EDGES, band_of
from test_mine_device import AFTER, BAND, BEFORE, DEVICES, NEURONS, accumulators, feed, stream


@pytest.mark.parametrize("device", DEVICES)
def test_the_band_sample_keeps_the_highest_keys_of_each_rows_peak_window(device):
    batches = stream(4, batches=9)
    parts = accumulators(device)
    feed(parts, batches, device)
    for split in ("train", "heldout"):
        got = parts["band_" + split].result()
        for row, neuron in enumerate(NEURONS):
            candidates = []  # (key, arrival, doc, start, peak value, window acts)
            for number, (rows, acts) in enumerate(batches):
                for i, r in enumerate(rows):
                    if r.split != split or len(r.tokens) == 1:
                        continue
                    text = acts[i, 1 : len(r.tokens), neuron]
                    peak = 1 + int(np.argmax(text))
                    start = r.offset + peak - BEFORE
                    key = band_key(
                        torch.tensor([float(text.max())]),
                        torch.tensor([r.doc]),
                        torch.tensor([start]),
                        torch.tensor([neuron]),
                    ).item()
                    pos = np.arange(peak - BEFORE, peak + AFTER + 1)
                    inside = (pos >= 0) & (pos < len(r.tokens))
                    window = np.where(inside, acts[i, pos.clip(0, acts.shape[1] - 1), neuron], np.nan)
                    if np.isfinite(key):  # a peak at or below 0 is never sampled
                        candidates.append((-key, number, i, r.doc, start, float(text.max()), window))
            kept = sorted(candidates, key=lambda c: c[:3])[:BAND]  # highest key first, ties by arrival
            kept.sort(key=lambda c: -c[5])  # the result: by peak, highest first
            filled = got.doc[row] >= 0
            assert filled.sum() == len(kept)
            assert {(int(d), int(s)) for d, s in zip(got.doc[row][filled], got.start[row][filled])} == {
                (c[3], c[4]) for c in kept
            }
            np.testing.assert_array_equal(got.value[row][filled], np.array([c[5] for c in kept], np.float32))
            for slot in np.flatnonzero(filled):
                assert got.value[row, slot] == got.acts[row, slot, got.pivot[row, slot]]  # the peak, at the pivot
            assert np.isneginf(got.value[row][~filled]).all()


def test_a_windows_uniform_is_fixed_by_its_document_start_and_neuron():
    docs, starts, neurons = (torch.arange(20_000) // 100, torch.arange(20_000) % 100 - 40, torch.tensor(7))
    u = band_uniform(docs, starts, neurons)
    assert u.dtype == torch.float32 and (u > 0).all() and (u < 1).all()
    assert torch.equal(u, band_uniform(docs.flip(0), starts.flip(0), neurons).flip(0))  # not the position
    assert abs(u.mean().item() - 0.5) < 0.01 and abs((u < 0.1).float().mean().item() - 0.1) < 0.01
    assert len(torch.unique(u)) > 19_900  # distinct windows, distinct draws
    other = band_uniform(docs, starts, torch.tensor(8))  # another neuron draws independently
    assert abs(torch.corrcoef(torch.stack([u, other]))[0, 1].item()) < 0.05


def test_keys_weight_higher_peaks_but_every_positive_peak_can_be_drawn():
    """Over many windows with peaks spread uniformly in (0, 1], a sample of 64 by key holds windows of every
    band, and more of the higher ones (inclusion grows like peak ** BAND_GAMMA)."""
    n = 4000
    peaks = torch.linspace(1.0 / n, 1.0, n)
    key = band_key(peaks, torch.arange(n), torch.zeros(n, dtype=torch.long), torch.tensor(0))
    assert torch.isneginf(
        band_key(torch.tensor([0.0, -1.0]), torch.tensor([1, 2]), torch.tensor([0, 0]), torch.tensor(0))
    ).all()
    sample = peaks[key.argsort(descending=True)[:64]].numpy()
    counts = np.bincount([band_of(float(p)) if band_of(float(p)) is not None else len(BAND_EDGES) for p in sample])
    assert (counts[: len(BAND_EDGES)] > 0).all(), counts  # every band drawn
    assert counts[3] > counts[1] > 0 and BAND_GAMMA > 1


def test_bands_are_shares_of_the_max():
    assert [band_of(x) for x in (0.0, 0.19, 0.2, 0.39, 0.4, 0.6, 0.8, 1.0, 1.5, float("nan"))] == [
        None,
        None,
        0,
        0,
        1,
        2,
        3,
        3,
        3,
        None,
    ]


def test_the_band_sample_does_not_depend_on_the_batch_order():
    """The same rows in another batch order keep the same windows (a window's key is fixed by what it is)."""
    batches = stream(5, batches=9)
    forward, backward = accumulators("cpu"), accumulators("cpu")
    feed(forward, batches, "cpu")
    feed(backward, batches[::-1], "cpu")
    for name in ("band_train", "band_heldout"):
        a, b = forward[name].result(), backward[name].result()
        for field in ("doc", "start", "value", "tokens", "acts"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=f"{name}.{field}")
        assert (a.doc >= 0).sum() > 0
