"""Mining against an oracle: a direct forward pass over each mined row."""

import numpy as np
import pytest
import torch

from n2g_site.config import Config, MineConfig
from n2g_site.corpus import load_documents, sequences
from n2g_site.mine import mine
from n2g_site.store import MinedLayer, WorkDir, read_json


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


def test_top_k_matches_a_direct_forward_over_every_row(mined, tiny_model):
    cfg, work = mined
    rows, index = rows_of(cfg, tiny_model)
    assert read_json(work.corpus) == index
    for layer in (0, 1):
        ml = MinedLayer.load(work.mined(layer))
        for split, examples in (("train", ml.train), ("heldout", ml.heldout)):
            mine_rows = [r for r in rows if r.split == split]
            maxima = np.stack(
                [  # the doc-start token is never a peak
                    tiny_model.mlp_activations(torch.tensor([r.tokens]), [layer])[layer][0, 1:]
                    .max(dim=0)
                    .values.numpy()
                    for r in mine_rows
                ]
            )  # [rows, d_mlp]
            for row, neuron in enumerate(ml.neurons):
                expected = np.sort(maxima[:, neuron])[::-1][: cfg.mine.top_k]
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
    assert ml.stats.max.shape == (64,) and ml.stats.hist.shape == (64, 50)
    assert (ml.stats.hist.sum(axis=1) == ml.stats.tokens).all()
    best = np.maximum(ml.train.value[:, 0], ml.heldout.value[:, 0])
    np.testing.assert_allclose(ml.stats.max[ml.neurons], best, rtol=1e-6)
    share = ml.stats.firing_share()
    assert ((share > 0) & (share <= 1)).all()


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
