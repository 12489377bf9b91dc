"""The text passes (ood.py: --ood-corpus, --ordinary-eval-tokens) keep the negative side too: values at or below
0.1 x A_min of each negatively fitted neuron, stored with the positive ones and read apart; evaluate scores the
negative graphs and their baselines on them; a pass file of the positive-only format is run again, not misread."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from n2g_site import ood
from n2g_site.config import Config, EvaluateConfig, FitConfig, MineConfig
from n2g_site.corpus import STDLIB_DOCSTRINGS
from n2g_site.evaluate import evaluate, score_flat
from n2g_site.fit import fit
from n2g_site.mine import mine
from n2g_site.n2g.graph import Graph
from n2g_site.n2g.predict import KeyIndex, Sequences, TriePredictor
from n2g_site.store import WorkDir, read_json

OOD_TOKENS = 400
VOCAB = 50


class _TableModel:
    """A model whose neuron j's activation at a token is TABLE[token, j] (uniform in -2..2): what a pass keeps is
    known exactly."""

    name = "table"
    device = "cpu"
    bos_id = None
    table = np.random.default_rng(3).uniform(-2, 2, (VOCAB, 4)).astype(np.float32)

    def encode(self, text: str) -> list[int]:
        return [ord(c) % VOCAB for c in text]

    def mlp_activations(self, tokens: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
        return {layer: torch.from_numpy(self.table[tokens.numpy()]) for layer in layers}


def test_both_sides_round_trip_through_the_sparse_store(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"d{i}.txt").write_text(f"text number {i}: the quick brown fox jumps over the lazy dog. " * 3)
    model = _TableModel()
    text = ood.TextPass("ood", str(corpus), 200)
    wanted = {0: {0: 1.5, 1: 2.0}}  # A_max per neuron
    low = {0: {1: -1.0, 3: -1.8}}  # A_min: neuron 3 has a negative side only
    made = ood.run_pass(model, text, 16, wanted, "key", low)[0]
    made.save(tmp_path / "pass.npz")
    stored = ood.OodLayer.load(tmp_path / "pass.npz")
    assert stored.neurons.tolist() == [0, 1, 3] and int(stored.bounds[-1]) == 200
    dense = model.table[stored.tokens].astype(np.float64)
    for n, a_max in wanted[0].items():
        want = np.where(dense[:, n] >= ood.SPARSE_FLOOR * a_max, dense[:, n], 0.0)
        np.testing.assert_array_equal(stored.acts(n), want.astype(np.float32))
        assert stored.keeps(n, "positive")
    for n, a_min in low[0].items():
        want = np.where(dense[:, n] <= ood.SPARSE_FLOOR * a_min, dense[:, n], 0.0)
        assert (want < 0).any()
        np.testing.assert_array_equal(stored.acts(n, "negative"), want.astype(np.float32))
        assert stored.keeps(n, "negative")
    # a side not asked for keeps nothing, and says so
    assert not stored.keeps(0, "negative") and not stored.acts(0, "negative").any()
    assert not stored.keeps(3, "positive") and not stored.acts(3).any()
    assert not stored.keeps(2, "positive") and not stored.keeps(2, "negative")
    assert stored.covers("key", wanted[0], low[0]) and stored.covers("key", {0: 1.5}, {3: -1.8})
    assert not stored.covers("key", wanted[0], {1: -1.1})  # another A_min: run again
    assert not stored.covers("key", wanted[0], {0: -1.0})  # a negative side it does not keep


def test_a_positive_only_pass_file_is_refused_by_name(tmp_path):
    model = _TableModel()
    corpus = tmp_path / "c.txt"
    corpus.write_text("a small text to run over, twice over. " * 4)
    made = ood.run_pass(model, ood.TextPass("ood", str(corpus), 60), 16, {0: {0: 1.0}}, "key")[0]
    old = tmp_path / "old.npz"
    np.savez_compressed(old, **{k: getattr(made, k) for k in ("key", "neurons", "a_max", "tokens", "bounds")})
    with pytest.raises(ValueError, match=r"old\.npz is a text pass of an older n2g-site"):
        ood.OodLayer.load(old)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_model):
    """mine -> fit --polarity both -> evaluate with --ood-corpus on the tiny model (layer 1, neurons 0-3)."""
    corpus = tmp_path_factory.mktemp("corpus")
    words = ["cats", "rivers", "kings", "music", "maths", "ships", "trees", "coins"]
    for i, w in enumerate(words * 3):
        (corpus / f"d{i:02d}.txt").write_text(f"Some text about {w} and more {w} number {i}. " * 4)
    root = tmp_path_factory.mktemp("w")
    cfg = Config(
        model="random:tiny",
        corpus=str(corpus),
        work_dir=root,
        layers="1",
        neurons="0-3",
        mine=MineConfig(top_k=4, seq_len=24, max_tokens=0, held_out=0.3, batch_tokens=100),
        fit=FitConfig(augmenter="none", train_examples=2, polarity="both"),
        evaluate=EvaluateConfig(ood_corpus=STDLIB_DOCSTRINGS, ood_tokens=OOD_TOKENS),
    ).validate()
    work = WorkDir(root)
    mine(cfg, lambda: tiny_model, work)
    fit(cfg, lambda: tiny_model, work)
    calls = []
    evaluate(cfg, work, jobs=1, load_model=lambda: calls.append(1) or tiny_model)
    assert calls == [1]
    return cfg, work


def _dense(tiny_model, stored: ood.OodLayer, layer: int) -> np.ndarray:
    rows = []
    for a, b in zip(stored.bounds[:-1], stored.bounds[1:]):
        row = torch.tensor(stored.tokens[a:b])[None]
        rows.append(tiny_model.mlp_activations(row, [layer])[layer][0].double().numpy())
    return np.concatenate(rows)  # [N, d_mlp]


def test_evaluate_scores_negative_graphs_and_their_baselines_on_the_ood_text(evaluated, tiny_model):
    """Each side's ood scores equal scoring on the dense activations of a direct forward over the same rows."""
    cfg, work = evaluated
    stored = ood.OodLayer.load(work.ood(1))
    dense = _dense(tiny_model, stored, 1)
    keys = KeyIndex(work.load_vocab())
    seqs = Sequences(stored.tokens, stored.bounds)
    scored = stored.tokens != tiny_model.bos_id
    firing = {"positive": 0, "negative": 0}
    for n in range(4):
        for side, sign in (("positive", 1.0), ("negative", -1.0)):
            fit_file = read_json(work.fitted(1, n, side))
            result = read_json(work.evaluated(1, n, side))
            assert set(result["datasets"]) == {"heldout", "ordinary", "ood"}, (n, side)
            assert stored.keeps(n, side)
            truth = np.where(scored, sign * dense[:, n] / fit_file["max_activation"], np.nan)
            pred = TriePredictor(Graph.from_json(fit_file["graph"]), keys).on(seqs)
            want = score_flat(truth, [pred], cfg.evaluate.fire_threshold)[0]
            got = result["datasets"]["ood"]
            for field in ("tokens", "true_firing", "predicted_firing", "true_positive", "precision", "recall", "f1"):
                assert got["n2g"][field] == getattr(want, field), (n, side, field)
            assert {m: s["true_firing"] for m, s in got.items()} == dict.fromkeys(got, want.true_firing)
            firing[side] += want.true_firing
    assert firing["negative"] > 0 and firing["positive"] > 0  # both sides fire somewhere on the OOD text
    summary = read_json(work.evaluation_summary)
    assert set(summary["negative"]["1"]["ood"]) == {"n2g", "token_lookup", "token_max", "ngram"}


def test_an_old_pass_file_is_run_again(evaluated, tiny_model):
    cfg, work = evaluated
    path = work.ood(1)
    before = {n: read_json(work.evaluated(1, n, "negative"))["datasets"]["ood"] for n in range(4)}
    made = ood.OodLayer.load(path)
    fields = ("key", "neurons", "a_max", "tokens", "bounds", "indptr", "positions", "values")
    with path.open("wb") as f:  # the positive-only format (what this file held before the negative side)
        np.savez_compressed(f, **{k: getattr(made, k) for k in fields})
    calls = []
    evaluate(cfg, work, jobs=1, load_model=lambda: calls.append(1) or tiny_model)
    assert calls == [1] and ood.OodLayer.load(path).a_min.tolist() == made.a_min.tolist()
    assert {n: read_json(work.evaluated(1, n, "negative"))["datasets"]["ood"] for n in range(4)} == before


def test_the_ordinary_pass_scores_the_negative_side_as_mines_sample_when_it_covers_the_same_rows(evaluated, tiny_model):
    cfg, work = evaluated
    before = {n: read_json(work.evaluated(1, n, "negative"))["datasets"]["ordinary"] for n in range(4)}
    more = replace(cfg, evaluate=replace(cfg.evaluate, ordinary_eval_tokens=100_000))
    evaluate(more, work, jobs=1, load_model=lambda: tiny_model)
    scored = ood.OodLayer.load(work.scored_text("ordinary", 1))
    assert all(scored.keeps(n, "negative") for n in range(4))
    compared = 0
    for n in range(4):
        after = read_json(work.evaluated(1, n, "negative"))["datasets"]["ordinary"]
        for method, s in before[n].items():
            for field in ("tokens", "true_firing", "predicted_firing", "true_positive", "f1"):
                assert after[method][field] == s[field], (n, method, field)
            compared += int(s["true_firing"] > 0)
    assert compared > 0
    fewer = replace(cfg, evaluate=replace(cfg.evaluate, ordinary_eval_tokens=60))  # fewer tokens than mine's sample
    evaluate(fewer, work, jobs=1, load_model=lambda: tiny_model)
    scored = ood.OodLayer.load(work.scored_text("ordinary", 1))
    tokens = int((scored.tokens != tiny_model.bos_id).sum())
    for n in range(4):
        after = read_json(work.evaluated(1, n, "negative"))["datasets"]["ordinary"]
        assert tokens < before[n]["n2g"]["tokens"] and after["n2g"]["tokens"] == tokens  # scored on the pass
    evaluate(cfg, work, jobs=1, load_model=lambda: tiny_model)  # back to the module's state
