"""Mining and evaluation split into shards, then merged, equal one process's run; merge refuses work dirs
whose mined data differ; fits of other mined data are not reused."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from n2g_site.config import MineConfig, UserError
from n2g_site.evaluate import evaluate
from n2g_site.fit import fit
from n2g_site.mine import mine
from n2g_site.shards import merge
from n2g_site.store import HIST_ZERO_BIN, MinedLayer, WorkDir, read_json
from shard_helpers import BASE, assert_same

MINED = ("mine", "run.json", "corpus.json", "vocab.json", "tokenizer")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model) -> Path:
    """One process: mine, fit, evaluate."""
    root = tmp_path_factory.mktemp("one") / "work"
    cfg = replace(BASE, work_dir=root)
    mine(cfg, lambda: tiny_model, WorkDir(root))
    fit(cfg, lambda: tiny_model, WorkDir(root))
    evaluate(cfg, WorkDir(root), jobs=1)
    return root


def test_three_mining_shards_merged_equal_one_mine(reference, tiny_model, tmp_path):
    """Each shard in its own work dir (as on three machines), merged into a fresh folder."""
    sources = []
    for i in range(3):
        root = tmp_path / f"shard{i}"
        summary = mine(replace(BASE, work_dir=root, shard=f"{i}/3"), lambda: tiny_model, WorkDir(root))
        assert 0 < summary.tokens < 12_000  # a third of the pass each, roughly
        assert not WorkDir(root).mined(0).exists() and WorkDir(root).mine_shard(i, 3).exists()
        sources.append(root)
    dest = tmp_path / "merged"
    merge(WorkDir(dest), sources)
    assert assert_same(reference, dest, *MINED) >= 7
    for layer in (0, 1):  # the byte-identical arrays include the bottom windows and the two-sided histogram
        mined = MinedLayer.load(WorkDir(dest).mined(layer))
        assert mined.bottom_train is not None and mined.bottom_heldout is not None
        assert (mined.bottom_train.value < 0).any() and (mined.bottom_heldout.doc >= 0).all()
        assert mined.stats.two_sided and mined.stats.hist[:, :HIST_ZERO_BIN].sum() > 0
        for band in (mined.band_train, mined.band_heldout):  # and the band samples (mine.BandSample)
            assert band is not None and band.doc.shape[1] == BASE.mine.band_windows and (band.doc >= 0).all()
            assert (np.diff(band.value, axis=1) <= 0).all() and (band.value < mined.train.value[:, :1]).any()
    assert not list((dest / "mine").glob("shard_*"))  # combined, then removed
    digests = read_json(dest / "run.json")["mined"]
    assert set(digests) == {"0", "1"} and all(d.startswith("sha256:") for d in digests.values())


def test_a_mining_shard_is_not_mined_twice_and_an_incomplete_set_is_refused(tiny_model, tmp_path):
    root = tmp_path / "work"
    cfg = replace(BASE, work_dir=root, layers="0", shard="1/2")
    assert not mine(cfg, lambda: tiny_model, WorkDir(root)).skipped
    assert mine(cfg, lambda: tiny_model, WorkDir(root)).skipped
    with pytest.raises(UserError, match=r"mining shards 0/2 are missing"):
        merge(WorkDir(root), [])


def test_a_mining_shard_of_an_older_format_is_mined_again_and_refused_by_merge(tiny_model, tmp_path):
    """A shard file written before the bottom windows (no "_format"): mine does not take it as done, and merge
    names it instead of merging a file without bottom windows."""

    root = tmp_path / "work"
    cfg = replace(BASE, work_dir=root, layers="0", shard="0/2")
    mine(cfg, lambda: tiny_model, WorkDir(root))
    mine(replace(cfg, shard="1/2"), lambda: tiny_model, WorkDir(root))
    path = WorkDir(root).mine_shard(0, 2)
    with np.load(path) as z:
        old = {k: z[k] for k in z.files if k != "_format" and "/bottom_" not in k}
    np.savez(path, **old)
    with pytest.raises(UserError, match=r"mining shards 0/2 .* are of mine format 1, not 3"):
        merge(WorkDir(root), [])
    assert not mine(cfg, lambda: tiny_model, WorkDir(root)).skipped  # mined again, in this format
    merge(WorkDir(root), [])
    assert MinedLayer.load(WorkDir(root).mined(0)).bottom_train is not None


def test_evaluate_shards_merged_equal_one_evaluate(reference, tmp_path):
    """Two evaluate shards, one in the work dir, one on its own copy of it (another machine); merged, the neuron
    files, layer CSVs and summary equal those of one evaluate."""
    shared, other = tmp_path / "shared", tmp_path / "other"
    for root in (shared, other):
        shutil.copytree(reference, root, ignore=shutil.ignore_patterns("evaluate"))
    for i, root in ((0, shared), (1, other)):
        assert evaluate(replace(BASE, work_dir=root, shard=f"{i}/2"), WorkDir(root), jobs=1).neurons == 8
    assert not WorkDir(shared).evaluation_summary.exists()  # a shard cannot write the whole tables
    merge(WorkDir(shared), [other])
    assert assert_same(reference, shared, "evaluate") == 16 + 2 + 1
    assert all(
        read_json(p)["mined"] == read_json(reference / "run.json")["mined"][str(int(p.parent.name[1:]))]
        for p in (shared / "evaluate").glob("L*/N*.json")
    )


def _corpus(folder: Path, words: str) -> None:
    folder.mkdir(exist_ok=True)
    for i in range(12):
        (folder / f"doc{i:02d}.txt").write_text(f"Document {i} says {words} again and again. " * 8, encoding="utf-8")


def test_merge_refuses_work_dirs_whose_mined_data_differ(tiny_model, tmp_path):
    """Same model, corpus name and options, but the corpus folder's text changed between the two mines (another
    copy of it): the mining options match, the mined data do not, and merge says which layer."""
    corpus = tmp_path / "corpus"
    cfg = replace(BASE, corpus=str(corpus), layers="0", neurons="0-3", mine=MineConfig(top_k=2, max_tokens=0))
    _corpus(corpus, "cats and dogs")
    first = tmp_path / "first"
    mine(replace(cfg, work_dir=first), lambda: tiny_model, WorkDir(first))
    fit(replace(cfg, work_dir=first), lambda: tiny_model, WorkDir(first))
    _corpus(corpus, "rivers flow into the sea")
    second = tmp_path / "second"
    mine(replace(cfg, work_dir=second), lambda: tiny_model, WorkDir(second))
    ours, theirs = (read_json(p / "run.json") for p in (first, second))
    assert ours["mine"] == theirs["mine"] and ours["mined"]["0"] != theirs["mined"]["0"]
    with pytest.raises(UserError, match=r"mined data of layer 0 differ"):
        merge(WorkDir(second), [first])
    assert not (second / "fit").exists()
    # fit files made from the other data are not taken as current: all four are fitted again
    shutil.copytree(first / "fit", second / "fit")
    assert fit(replace(cfg, work_dir=second), lambda: tiny_model, WorkDir(second)).fitted == 4
    assert json.loads((second / "fit/L00/N00000.json").read_text())["mined"] == theirs["mined"]["0"]


def test_shard_and_executor_mistakes_are_one_clear_line(tmp_path, monkeypatch):
    import sys

    from click.testing import CliRunner

    from n2g_site import executors
    from n2g_site.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["build", "--shard", "0/2", "--work-dir", str(tmp_path / "w")])
    assert out.exit_code == 2 and "build runs every stage and --shard 0/2 splits one" in " ".join(out.output.split())
    out = runner.invoke(app, ["fit", "--shard", "0/2", "--executor", "ray", "--work-dir", str(tmp_path / "w")])
    assert out.exit_code == 2 and "Ray deals the shards itself; pass --shards N" in " ".join(out.output.split())
    out = runner.invoke(app, ["merge", "--work-dir", str(tmp_path / "none")])
    assert out.exit_code == 2 and "run.json is missing" in " ".join(out.output.split())
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(UserError, match=r"pip install 'n2g-site\[ray\]'"):
        executors.run_on_ray("fit", replace(BASE, work_dir=tmp_path / "w", executor="ray"))


def test_merge_refuses_fits_made_with_other_batches(reference, tiny_model, tmp_path):
    """Fits of other --fit-batch-tokens batch (and round) differently: merge names the setting instead of mixing
    them."""
    other, dest = tmp_path / "other", tmp_path / "dest"
    shutil.copytree(reference, other, ignore=shutil.ignore_patterns("fit", "evaluate"))
    shutil.copytree(reference, dest)
    cfg = replace(BASE, layers="0", neurons="0-3", work_dir=other, fit=replace(BASE.fit, fit_batch_tokens=2048))
    assert fit(cfg, lambda: tiny_model, WorkDir(other)).fitted == 4
    for neuron in range(4):
        WorkDir(dest).fitted(0, neuron).unlink()
    with pytest.raises(UserError, match=r"\('fp32', 'cpu', 2048\), other fit files with \('fp32', 'cpu', 4096\)"):
        merge(WorkDir(dest), [other])
    # and fit does not take them as current either: with the default it fits them again
    assert fit(replace(cfg, fit=BASE.fit), lambda: tiny_model, WorkDir(other)).fitted == 4


class _StopsAfter:
    """The tiny model, interrupted (as by Ctrl-C) after ``calls`` forward batches."""

    def __init__(self, model, calls: int) -> None:
        self.model, self.calls = model, calls

    def __getattr__(self, name):
        return getattr(self.model, name)

    def mlp_activations(self, *args, **kwargs):
        self.calls -= 1
        if self.calls < 0:
            raise KeyboardInterrupt
        return self.model.mlp_activations(*args, **kwargs)


def test_an_interrupted_mining_shard_resumes_from_its_checkpoint(reference, tiny_model, tmp_path, capsys):
    root = tmp_path / "work"
    for i in range(2):
        cfg = replace(BASE, work_dir=root, shard=f"{i}/2", checkpoint_seconds=0)  # a checkpoint after every batch
        if i == 1:
            with pytest.raises(KeyboardInterrupt):
                mine(cfg, lambda: _StopsAfter(tiny_model, 12), WorkDir(root))
            assert (root / "mine" / "checkpoint_1of2.npz").exists() and not WorkDir(root).mine_shard(1, 2).exists()
            capsys.readouterr()
        mine(cfg, lambda: tiny_model, WorkDir(root))
        if i == 1:
            assert "resuming after" in capsys.readouterr().err
    assert not (root / "mine" / "checkpoint_1of2.npz").exists()
    merge(WorkDir(root), [])
    assert_same(reference, root, *MINED)
