"""Mining against an oracle: a direct forward pass over each mined row."""

import numpy as np
import pytest
import torch

from n2g_site.config import Config, MineConfig
from n2g_site.corpus import load_documents, sequences
from n2g_site.mine import mine
from n2g_site.store import HIST_EDGES, LEGACY_HIST_EDGES, MinedLayer, WorkDir, read_json


@pytest.fixture(scope="module")
def mined(tiny_model, tmp_path_factory, request):
    corpus = tmp_path_factory.mktemp("c")
    texts = [
        f"Document {i} talks about {w} and more {w} in the city of Paris." * (1 + i % 3)
        for i, w in enumerate(["cats", "rivers", "kings", "music", "maths", "ships", "trees", "coins"] * 3)
    ]
    for i, text in enumerate(texts):
        (corpus / f"d{i:02d}.txt").write_text(text)
    cfg = Config(
        model="random:tiny",
        corpus=str(corpus),
        layers="0-1",
        neurons="0-5",
        mine=MineConfig(top_k=4, seq_len=24, max_tokens=0, held_out=0.3, batch_tokens=100),
    ).validate()
    work = WorkDir(tmp_path_factory.mktemp("w"))
    mine(cfg, lambda: tiny_model, work)
    return cfg, work


def rows_of(cfg, model):
    index = []
    rows = list(
        sequences(
            load_documents(cfg.corpus),
            model.encode,
            bos_id=model.bos_id,
            seq_len=cfg.mine.seq_len,
            held_out=cfg.mine.held_out,
            seed=cfg.seed,
            index=index,
        )
    )
    return rows, index


def test_top_k_and_bottom_k_match_a_direct_forward_over_every_row(mined, tiny_model):
    cfg, work = mined
    rows, index = rows_of(cfg, tiny_model)
    assert read_json(work.corpus) == index
    for layer in (0, 1):
        ml = MinedLayer.load(work.mined(layer))
        for name in ("train", "heldout", "bottom_train", "bottom_heldout"):  # band samples: tests/test_bands.py
            examples, split, sign = getattr(ml, name), name.removeprefix("bottom_"), -1 if "bottom" in name else 1
            mine_rows = [r for r in rows if r.split == split]
            peaks = np.stack(
                [  # the doc-start token is never a peak
                    sign
                    * (sign * tiny_model.mlp_activations(torch.tensor([r.tokens]), [layer])[layer][0, 1:])
                    .max(dim=0)
                    .values.numpy()
                    for r in mine_rows
                ]
            )  # [rows, d_mlp]: each row's max (top) or min (bottom)
            if sign < 0:
                assert (peaks < 0).any()  # the tiny model's hook is signed: the bottom set has negative peaks
            for row, neuron in enumerate(ml.neurons):
                expected = np.sort(sign * peaks[:, neuron])[::-1][: cfg.mine.top_k] * sign  # most extreme first
                np.testing.assert_allclose(examples.value[row], expected, rtol=1e-5)
                for w in examples.windows(row):
                    assert w.acts[w.pivot] == pytest.approx(w.value)
                    assert index[w.doc]["split"] == split


def test_windows_hold_the_real_tokens_of_their_document(mined, tiny_model):
    cfg, work = mined
    rows, _ = rows_of(cfg, tiny_model)
    ml = MinedLayer.load(work.mined(1))
    for w in ml.train.windows(0):
        # A row's doc-start token overlaps the previous row's last position, so try each row of the doc.
        assert any(
            tuple(w.tokens) == r.tokens[w.start - r.offset : w.start - r.offset + len(w.tokens)]
            for r in rows
            if r.doc == w.doc and r.offset <= w.start
        )


def test_stats_cover_every_neuron_and_agree_with_top_k(mined):
    _, work = mined
    ml = MinedLayer.load(work.mined(0))
    assert ml.stats.max.shape == (64,) and ml.stats.hist.shape == (64, len(HIST_EDGES) + 1) and ml.stats.two_sided
    np.testing.assert_array_equal(ml.stats.edges, HIST_EDGES)
    assert (ml.stats.hist.sum(axis=1) == ml.stats.tokens).all()
    best = np.maximum(ml.train.value[:, 0], ml.heldout.value[:, 0])
    np.testing.assert_allclose(ml.stats.max[ml.neurons], best, rtol=1e-6)
    worst = np.minimum(ml.bottom_train.value[:, 0], ml.bottom_heldout.value[:, 0])
    np.testing.assert_allclose(ml.stats.min[ml.neurons], worst, rtol=1e-6)
    share, below = ml.stats.firing_share(), ml.stats.negative_share()
    assert ((share > 0) & (share <= 1)).all()
    signed = ml.stats.min < 0
    assert signed.any() and ((below[signed] > 0) & (below[signed] <= 1)).all() and (below[~signed] == 0).all()
    assert (ml.stats.dead_negative == ~signed).all() and (ml.stats.dead_positive == (ml.stats.max <= 0)).all()


def test_shares_count_the_bins_beyond_the_cut_on_each_side():
    """A neuron with known values: the positive and negative shares from the histogram, to one bin."""
    from n2g_site.mine import StatsAccumulator

    values = torch.tensor([-8.0, -3.0, -1.0, -0.01, 0.0, 0.0, 0.5, 2.0, 4.0, 4.0])
    acc = StatsAccumulator(2)
    acc.update(torch.stack([values, -values], dim=1)[None], torch.zeros(0, dtype=torch.long))
    stats = acc.result()
    assert stats.max.tolist() == [4.0, 8.0] and stats.min.tolist() == [-8.0, -4.0]
    # at or above half the max: 2, 4, 4 (3 of 10) for neuron 0; only 8 for neuron 1 (the negated values)
    np.testing.assert_allclose(stats.firing_share(0.5), [0.3, 0.1])
    # at or below half the min: -8 for neuron 0; -2, -4, -4 for neuron 1
    np.testing.assert_allclose(stats.negative_share(0.5), [0.1, 0.3])
    np.testing.assert_allclose(stats.negative_share(0.1), [0.3, 0.4])  # -1 <= -0.8; -0.5 <= -0.4
    # a cut inside a filled bin ([2, 3) holds the 2) counts that bin by its log-scale overlap
    assert 0.2 < stats.firing_share(0.6)[0] < 0.3 and 0.2 < stats.negative_share(0.6)[1] < 0.3


def test_rerun_skips_and_new_neurons_extend_the_layer(mined, tiny_model):
    cfg, work = mined
    before = work.mined(0).stat().st_mtime_ns
    summary = mine(cfg, lambda: pytest.fail("model must not load when nothing is missing"), work)
    assert summary.skipped and work.mined(0).stat().st_mtime_ns == before
    from dataclasses import replace

    summary = mine(replace(cfg, layers="0", neurons="6-7"), lambda: tiny_model, work)
    assert not summary.skipped
    assert list(MinedLayer.load(work.mined(0)).neurons) == list(range(8))
    assert read_json(work.manifest)["neurons"]["0"] == list(range(8))


def test_work_dir_from_other_options_is_refused(mined, tiny_model):
    from dataclasses import replace

    from n2g_site.config import UserError

    cfg, work = mined
    with pytest.raises(UserError, match="was made with.*top_k"):
        mine(replace(cfg, mine=replace(cfg.mine, top_k=9)), lambda: tiny_model, work)


def test_top_k_larger_than_the_rows_leaves_empty_slots():
    from n2g_site.mine import TopK

    top = TopK(n=2, k=5, before=2, after=1)
    tokens = torch.tensor([[9, 1, 2, 3], [9, 4, 5, 0]])
    acts = torch.tensor(
        [[[0.0, 0.0], [1.0, 5.0], [3.0, 0.0], [2.0, 1.0]], [[0.0, 0.0], [4.0, 2.0], [0.5, 6.0], [9.0, 9.0]]]
    )  # row 1 position 3 is padding
    lengths = torch.tensor([4, 3])
    valid = (torch.arange(4)[None, :] < lengths[:, None]) & (tokens != 9)
    top.update(acts, tokens, lengths, valid, torch.tensor([0, 1]), torch.tensor([-1, -1]))
    result = top.result()
    assert result.doc.tolist() == [[1, 0, -1, -1, -1], [1, 0, -1, -1, -1]]
    assert result.value[0, :2].tolist() == [4.0, 3.0] and result.value[1, :2].tolist() == [6.0, 5.0]
    window = result.windows(1)[0]
    assert window.tokens.tolist() == [9, 4, 5] and window.pivot == 2 and window.value == 6.0
    assert len(result.windows(0)) == 2


def test_ordinary_text_is_whole_held_out_rows_with_true_activations(mined, tiny_model):
    cfg, work = mined
    index = read_json(work.corpus)
    ml = MinedLayer.load(work.mined(1))
    rows = ml.ordinary.rows(2)
    assert rows and sum(len(t) for t, _ in rows) >= min(cfg.mine.ordinary_tokens, 1)
    assert all(index[d]["split"] == "heldout" for d in ml.ordinary.doc)
    for tokens, acts in rows:
        direct = tiny_model.mlp_activations(torch.from_numpy(tokens)[None], [1])[1][0, :, int(ml.neurons[2])]
        np.testing.assert_allclose(acts, direct.numpy(), rtol=2e-3, atol=2e-3)  # stored as float16


def test_files_mined_before_the_ordinary_sample_still_load(mined, tmp_path):
    _, work = mined
    with np.load(work.mined(0)) as z:
        old = {k: z[k] for k in z.files if not k.startswith("ordinary.")}
    np.savez(tmp_path / "old.npz", **old)
    layer = MinedLayer.load(tmp_path / "old.npz")
    assert layer.ordinary.rows(0) == [] and layer.train.value.shape[0] == len(layer.neurons)


def test_format_1_files_load_without_bottom_sets_and_with_their_one_sided_histogram(mined, tmp_path):
    """A layer file as mined before the bottom windows: no "format", no bottom_*, no stats.edges, 50 bins."""
    from n2g_site.render.neuron import hist_view

    _, work = mined
    with np.load(work.mined(0)) as z:
        old = {k: z[k] for k in z.files if not (k == "format" or k.startswith("bottom_") or k == "stats.edges")}
    n = old["stats.max"].shape[0]
    old["stats.hist"] = np.zeros((n, len(LEGACY_HIST_EDGES) + 1), np.int64)
    old["stats.hist"][:, 0], old["stats.hist"][:, 30] = old["stats.tokens"] - 7, 7
    np.savez(tmp_path / "old.npz", **old)
    layer = MinedLayer.load(tmp_path / "old.npz")
    assert layer.bottom_train is None and layer.bottom_heldout is None and not layer.stats.two_sided
    np.testing.assert_array_equal(layer.stats.edges, LEGACY_HIST_EDGES)
    assert np.isnan(layer.stats.negative_share()).all()
    bars = hist_view(layer.stats.hist[0], layer.stats.edges)
    assert len(bars) == 31 and bars[0].lo is None and bars[-1].lo == LEGACY_HIST_EDGES[29]
    new = MinedLayer.load(work.mined(0))
    bars = hist_view(new.stats.hist[0], new.stats.edges)  # from the bin of the neuron's min to that of its max
    assert new.bottom_train is not None and bars[0].lo <= new.stats.min[0] < bars[0].hi < 0
    assert bars[-1].lo <= new.stats.max[0] < bars[-1].hi


def test_a_newer_format_is_refused_clearly(mined, tmp_path):
    from n2g_site.config import UserError

    _, work = mined
    with np.load(work.mined(0)) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["format"] = np.array(99)
    np.savez(tmp_path / "new.npz", **arrays)
    with pytest.raises(UserError, match="format 99, newer than this n2g-site reads"):
        MinedLayer.load(tmp_path / "new.npz")
