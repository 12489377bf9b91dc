"""Out-of-distribution scoring (--ood-corpus) end to end on the tiny model: mine, fit, evaluate on the
standard library's docstrings, against the model's activations computed directly."""

from dataclasses import replace

import numpy as np
import pytest

from n2g_site import ood
from n2g_site.config import Config, EvaluateConfig, FitConfig, MineConfig, UserError
from n2g_site.corpus import STDLIB_DOCSTRINGS, describe, load_documents, stdlib_docstrings
from n2g_site.evaluate import evaluate, score_flat
from n2g_site.fit import fit
from n2g_site.mine import mine
from n2g_site.n2g.graph import Graph
from n2g_site.n2g.predict import KeyIndex, Sequences, TriePredictor
from n2g_site.store import MinedLayer, WorkDir, read_json

OOD_TOKENS = 400


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_model):
    corpus = tmp_path_factory.mktemp("corpus")
    words = ["cats", "rivers", "kings", "music", "maths", "ships", "trees", "coins"]
    for i, w in enumerate(words * 3):
        (corpus / f"d{i:02d}.txt").write_text(f"Some text about {w} and more {w} number {i}. " * 4)
    root = tmp_path_factory.mktemp("w")
    cfg = Config(
        model="random:tiny",
        corpus=str(corpus),
        work_dir=root,
        layers="0-1",
        neurons="0-3",
        mine=MineConfig(top_k=4, seq_len=24, max_tokens=0, held_out=0.3, batch_tokens=100),
        fit=FitConfig(augmenter="none", train_examples=2),
        evaluate=EvaluateConfig(ood_corpus=STDLIB_DOCSTRINGS, ood_tokens=OOD_TOKENS),
    ).validate()
    work = WorkDir(root)
    mine(cfg, lambda: tiny_model, work)
    fit(cfg, lambda: tiny_model, work)
    calls = []
    evaluate(cfg, work, jobs=1, load_model=lambda: calls.append(1) or tiny_model)
    assert calls == [1]  # one model load for the OOD pass
    return cfg, work


def test_stdlib_docstrings_is_a_built_in_offline_corpus():
    docs = stdlib_docstrings()
    first = next(docs)
    assert first.id.startswith("stdlib:") and first.text.strip()
    assert next(load_documents(STDLIB_DOCSTRINGS)) == first
    assert "PSF" in describe(STDLIB_DOCSTRINGS)["licence"]


def test_ood_is_scored_as_its_own_dataset(fitted):
    cfg, work = fitted
    summary = read_json(work.evaluation_summary)
    assert summary["ood_corpus"] == STDLIB_DOCSTRINGS
    for layer in ("0", "1"):
        s = summary["layers"][layer]
        assert set(s["ood"]) == {"n2g", "token_lookup", "token_max", "ngram"}
        assert {"f1", "f1_interval", "variance_explained"} <= set(s["ood"]["n2g"])
    got = read_json(work.evaluated(0, 0))
    assert got["datasets"]["ood"]["n2g"]["tokens"] > 0
    assert all(m["dataset"] != "ood" for ms in got["misses"].values() for m in ms)


def test_ood_scores_equal_scoring_on_the_dense_activations(fitted, tiny_model):
    """The sparse store changes no precision, recall or F1: rescore from a direct forward of the same rows."""
    import torch

    cfg, work = fitted
    stored = ood.OodLayer.load(work.ood(1))
    assert int(stored.bounds[-1]) == OOD_TOKENS
    keys = KeyIndex(work.load_vocab())
    seqs = Sequences(stored.tokens, stored.bounds)
    checked = 0
    for neuron in stored.neurons.tolist():
        fit_file = read_json(work.fitted(1, neuron))
        a_max = fit_file["max_activation"]
        dense = []
        for a, b in zip(stored.bounds[:-1], stored.bounds[1:]):
            row = torch.tensor(stored.tokens[a:b])[None]
            dense.append(tiny_model.mlp_activations(row, [1])[1][0, :, neuron].double().numpy())
        dense = np.concatenate(dense)
        sparse = stored.acts(neuron)
        kept = sparse != 0
        np.testing.assert_allclose(sparse[kept], dense[kept], rtol=1e-5)
        scored = stored.tokens != tiny_model.bos_id
        assert (dense[scored & ~kept] < ood.SPARSE_FLOOR * a_max).all()  # only small values were dropped
        truth = np.where(scored, dense / a_max, np.nan)
        pred = TriePredictor(Graph.from_json(fit_file["graph"]), keys).on(seqs)
        want = score_flat(truth, [pred], cfg.evaluate.fire_threshold)[0]
        got = read_json(work.evaluated(1, neuron))["datasets"]["ood"]["n2g"]
        for field in ("tokens", "true_firing", "predicted_firing", "true_positive", "precision", "recall", "f1"):
            assert got[field] == getattr(want, field), (neuron, field)
        checked += int(want.true_firing > 0)
    assert checked > 0  # some neuron fires on the OOD text


def test_a_second_evaluate_reuses_the_pass_and_a_new_budget_reruns_it(fitted, tiny_model):
    cfg, work = fitted
    before = work.ood(0).read_bytes()

    def no_model():
        raise AssertionError("the OOD pass ran again")

    evaluate(cfg, work, jobs=1, load_model=no_model)
    assert work.ood(0).read_bytes() == before
    more = replace(cfg, evaluate=replace(cfg.evaluate, ood_tokens=OOD_TOKENS + 50))
    calls = []
    evaluate(more, work, jobs=1, load_model=lambda: calls.append(1) or tiny_model)
    assert calls == [1] and int(ood.OodLayer.load(work.ood(0)).bounds[-1]) == OOD_TOKENS + 50
    evaluate(cfg, work, jobs=1, load_model=lambda: tiny_model)  # back to the module's state


def test_the_mined_corpus_is_refused_as_ood(fitted):
    cfg, work = fitted
    same = replace(cfg, evaluate=replace(cfg.evaluate, ood_corpus=cfg.corpus))
    with pytest.raises(UserError, match="is the corpus this work dir was mined from"):
        evaluate(same, work, jobs=1, load_model=lambda: None)
    with pytest.raises(UserError, match="names no corpus"):
        EvaluateConfig(ood_corpus=" ").validate()


def test_ordinary_text_from_a_pass_scores_as_mines_sample_when_it_covers_the_same_rows(fitted, tiny_model):
    """With a budget above the whole held-out split, the ordinary pass runs over the same rows as mine's
    sample (which held all of it): every method's counts and F1 are the same, read from the sparse pass."""
    cfg, work = fitted
    mined_rows = [t.tolist() for t, _ in MinedLayer.load(work.mined(0)).ordinary.rows(0)]
    before = {n: read_json(work.evaluated(0, n))["datasets"]["ordinary"] for n in range(4)}
    more = replace(cfg, evaluate=replace(cfg.evaluate, ordinary_eval_tokens=100_000))
    calls = []
    evaluate(more, work, jobs=1, load_model=lambda: calls.append(1) or tiny_model)
    assert calls == [1]  # one load for both passes (the OOD one is reused)
    scored = ood.OodLayer.load(work.scored_text("ordinary", 0))
    rows = [scored.tokens[a:b].tolist() for a, b in zip(scored.bounds[:-1], scored.bounds[1:])]
    assert sorted(rows) == sorted(mined_rows)
    assert read_json(work.evaluation_summary)["ordinary_eval_tokens"] == 100_000
    compared = 0
    for n in range(4):
        after = read_json(work.evaluated(0, n))["datasets"]["ordinary"]
        for method, s in before[n].items():
            for field in ("tokens", "true_firing", "predicted_firing", "true_positive", "f1"):
                assert after[method][field] == s[field], (n, method, field)
            compared += int(s["true_firing"] > 0)
    assert compared > 0
    evaluate(cfg, work, jobs=1, load_model=lambda: tiny_model)  # back to the module's state
