"""The relate stage: graph-content similarity (sparse cosine, blocked top-k) and logit effects."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from n2g_site.n2g.graph import Graph, normalise
from n2g_site.relate import (
    feature_matrix,
    graph_features,
    logit_effects,
    nearest,
    relate,
    similar_neurons,
    unembed_of,
)
from n2g_site.store import read_json, write_json


def _graph(rows: list[tuple[int, int, str, float]]) -> Graph:
    nodes = [
        {
            "id": i,
            "parent": p,
            "depth": d,
            "key": normalise(t) if t else None,
            "token": t,
            "importance": 1.0 if d == 0 else v,
            "activation": v if d == 0 else 0.1,
            "end": v,
            "count": 1,
        }
        for i, (p, d, t, v) in enumerate(rows)
    ]
    return Graph.from_json({"schema": "n2g-site/graph/1", "nodes": nodes})


def test_the_known_nearest_neighbour_wins() -> None:
    paris_in = _graph([(-1, 0, " Paris", 0.9), (0, 1, " in", 0.9), (-1, 0, " London", 0.6)])
    paris_in_too = _graph([(-1, 0, "Paris", 0.8), (0, 1, " In", 0.85)])  # same pattern, other case/space
    london = _graph([(-1, 0, " London", 0.9), (0, 1, " to", 0.8)])
    numbers = _graph([(-1, 0, " 1999", 0.9), (0, 1, " in", 0.8)])
    noise = [_graph([(-1, 0, f" w{i}", 0.9), (0, 1, f" c{i}", 0.8)]) for i in range(20)]
    graphs = [(0, 0, paris_in), (0, 1, paris_in_too), (1, 0, london), (1, 1, numbers)]
    graphs += [(2, i, g) for i, g in enumerate(noise)]
    out = similar_neurons(graphs, k=3)
    assert out["0/0"][0][:2] == [0, 1] and out["0/1"][0][:2] == [0, 0]
    assert out["0/0"][0][2] > out["0/0"][1][2] > 0
    assert out["1/0"][0][:2] == [0, 0]  # shares " London"
    assert out["2/0"] == []  # shares nothing with anyone: no neighbour listed
    assert all(0 < s <= 1.0001 for row in out.values() for _, _, s in row)


def test_blocked_topk_matches_a_dense_cosine() -> None:
    rng = np.random.default_rng(1)
    feats = [
        {f"f{j}": float(rng.uniform(0.1, 1)) for j in rng.choice(40, size=rng.integers(1, 6), replace=False)}
        for _ in range(97)
    ]
    x = feature_matrix(feats)
    dense = x.toarray()
    assert np.allclose(np.linalg.norm(dense, axis=1), 1, atol=1e-5)
    sims = dense @ dense.T
    np.fill_diagonal(sims, -1)
    idx, sim = nearest(x, 5, block=16)  # several blocks
    for row in range(97):
        expected = np.sort(sims[row])[::-1][:5]
        expected = expected[expected > 1e-6]
        assert np.allclose(sim[row, : len(expected)], expected, atol=1e-5)
        assert np.allclose(sims[row, idx[row, : len(expected)]], expected, atol=1e-5)
        assert (idx[row, len(expected) :] == -1).all()


def test_features_fold_tokens_as_n2g_matches_them() -> None:
    f = graph_features(_graph([(-1, 0, " Paris", 0.9), (0, 1, " In", 0.8), (0, 1, "", 0.3)]))
    assert set(f) == {"a:paris", "c:in", "p:paris|in"}


def test_logit_effects_equal_a_direct_matmul(tiny_model) -> None:
    import torch

    bridge = tiny_model.bridge
    u = unembed_of(bridge)
    assert "LayerNorm" in u.norm
    neurons = [0, 5, 63]
    up_i, up_v, down_i, down_v = logit_effects(u, 1, neurons, k=7)
    with torch.no_grad():
        w = bridge.blocks[1].mlp.W_out[neurons].float()
        w = w - w.mean(dim=1, keepdim=True)
        w = w * bridge.ln_final._original_component.weight.float()
        eff = (w @ bridge.W_U.float()).numpy()
    for row in range(len(neurons)):
        order = np.argsort(-eff[row])
        assert list(up_i[row]) == list(order[:7])
        assert np.allclose(up_v[row], eff[row, order[:7]], atol=1e-5)
        assert list(down_i[row]) == list(order[::-1][:7])
        assert np.allclose(down_v[row], eff[row, order[::-1][:7]], atol=1e-5)


def test_relate_stage_loads_the_model_only_for_missing_logits(tmp_path) -> None:
    from render_fixtures import LAYERS, make_workdir

    work = make_workdir(tmp_path / "work")
    for layer, neurons in LAYERS.items():
        write_json(
            work.logit_effects(layer), {"neurons": {str(n): {"up": [[1, 0.5]], "down": [[2, -0.5]]} for n in neurons}}
        )

    def no_model():
        raise AssertionError("the model must not load when every logit file is current")

    relate(None, no_model, work)
    similar = read_json(work.similar)
    assert set(similar["neurons"]) == {"0/0", "0/3", "3/3", "3/17"}  # fitted graphs only (no dead/unfitted)
    assert similar["neurons"]["0/0"][0][2] == pytest.approx(1.0, abs=1e-3)  # the same small graph
    assert similar["tokens"]["0/0"][0] == " Paris"


def test_logit_effects_of_a_swiglu_llama_use_the_down_projection(tmp_path) -> None:
    """A tiny random Llama (SmolLM2's architecture) as a local HF folder: W_out[n] is down_proj's column n,
    W_U is lm_head transposed, and the final RMSNorm weight is folded in (no centring)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from n2g_site.models import embedded_tokenizer, load_model

    tok = embedded_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    reference = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        reference.model.norm.weight.uniform_(0.5, 1.5)  # a non-trivial norm scale to fold in
    reference.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    u = unembed_of(load_model(str(tmp_path)).bridge)
    assert "RMSNorm" in u.norm and not u.centre
    neurons = [0, 47]
    up_i, up_v, down_i, down_v = logit_effects(u, 1, neurons, k=5)
    with torch.no_grad():
        direction = reference.model.layers[1].mlp.down_proj.weight[:, neurons].T * reference.model.norm.weight
        eff = (direction @ reference.lm_head.weight.T).numpy()
    for row in range(len(neurons)):
        order = np.argsort(-eff[row])
        assert list(up_i[row]) == list(order[:5]) and list(down_i[row]) == list(order[::-1][:5])
        assert np.allclose(up_v[row], eff[row, order[:5]], atol=1e-5)


# ------------------------------------------------------------------------- similar by activation pattern


def test_activation_neighbours_find_proportional_neurons_exact_and_projected() -> None:
    from n2g_site.relate import activation_neighbours

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 500)).astype(np.float32)
    x[17] = 3.0 * x[200]  # proportional activations: cosine 1
    x[5] = 0.0  # dead on the sample: no neighbours, nobody's neighbour
    for kwargs in ({}, {"exact_max": 0, "dims": 64}):  # exact, then projected candidates rescored
        idx, sim = activation_neighbours(x, 3, **kwargs)
        assert idx[17, 0] == 200 and idx[200, 0] == 17 and sim[17, 0] == pytest.approx(1.0, abs=1e-5)
        assert (idx[5] == -1).all() and 5 not in idx
        xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        dense = xn @ xn.T
        np.fill_diagonal(dense, -np.inf)
        for row in (0, 42, 299):  # exact cosines (projected: of the candidates found), strongest first
            assert sim[row] == pytest.approx(dense[row, idx[row]], abs=1e-5)
            assert list(sim[row]) == sorted(sim[row], reverse=True)
            if not kwargs:
                assert sim[row, 0] == pytest.approx(dense[row].max(), abs=1e-5)


def test_relate_writes_activation_neighbours(tmp_path) -> None:
    from n2g_site.relate import relate
    from n2g_site.store import MinedLayer, OrdinaryText
    from render_fixtures import LAYERS, make_workdir

    work = make_workdir(tmp_path / "work")
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 20, (3, 40)).astype(np.int32)
    tokens[2, 30:] = -1  # padding
    base = rng.normal(size=(3, 40)).astype(np.float32)
    for layer in LAYERS:
        mined = MinedLayer.load(work.mined(layer))
        acts = rng.normal(size=(len(mined.neurons), 3, 40)).astype(np.float32)
        if layer == 0:
            acts[list(mined.neurons).index(0)] = 2.0 * base
        else:
            acts[list(mined.neurons).index(17)] = 0.5 * base  # proportional to L0 N0, in another layer
        acts[:, 2, 30:] = np.nan
        mined.ordinary = OrdinaryText(tokens=tokens, acts=acts.astype(np.float16), doc=np.zeros(3, np.int32))
        mined.save(work.mined(layer))
    for layer, neurons in LAYERS.items():
        write_json(work.logit_effects(layer), {"neurons": {str(n): {"up": [], "down": []} for n in neurons}})
    relate(None, lambda: pytest.fail("no model needed"), work)
    data = read_json(work.similar)
    assert data["activation_tokens"] == 110
    assert data["activation"]["0/0"][0][:2] == [3, 17] and data["activation"]["3/17"][0][:2] == [0, 0]
    assert data["activation"]["0/0"][0][2] == pytest.approx(1.0, abs=2e-3)
    assert set(data["activation"]) == {f"{layer}/{n}" for layer, ns in LAYERS.items() for n in ns}
    # ... and each neuron page lists them, with their cosine, under the graph-content neighbours
    from n2g_site.config import Config
    from n2g_site.render import render_site

    render_site(Config(site_dir=tmp_path / "site"), work)
    from n2g_site.publish.pages import rendered_pages

    body, files = next((body, files) for url, body, files in rendered_pages(work.fragments) if url == "neurons/L0/N0/")
    graph_list = body[body.index('<ol class="n2g-similar-graph">') :]
    act_list = body[body.index('<ol class="n2g-similar-act">') :]
    assert body.index("n2g-similar-graph") < body.index("n2g-similar-act")
    assert "over 110 tokens of ordinary held-out text" in body
    assert re.match(r'<ol class="n2g-similar-act">\n<li><a href="\.\./\.\./L3/N17/">L3 N17</a> · 1\b', act_list)
    assert graph_list.index("</ol>") > 0
    import gzip  # and the data has them too: L0 N0 is the first line of layer 0's export

    record = json.loads(gzip.decompress((work.docs / "export" / "layer_00.jsonl.gz").read_bytes()).splitlines()[0])
    assert [(r["layer"], r["neuron"]) for r in record["similar_activation"]][0] == (3, 17)


def test_projected_graph_neighbours_are_exact_cosines_of_good_candidates() -> None:
    """Above EXACT_MAX_PAIRS the candidates come from a low-rank projection: the values stay exact cosines and
    the clear nearest neighbours are still found."""
    from n2g_site.relate import feature_matrix, nearest

    rng = np.random.default_rng(3)
    feats = [{f"a:{t}": 1.0 for t in rng.choice(3000, 12, replace=False)} for _ in range(400)]
    for i in range(0, 400, 2):  # pairs sharing most features
        feats[i + 1] = dict(list(feats[i].items())[:10]) | {f"c:{i}": 0.5}
    x = feature_matrix(feats)
    exact_idx, exact_sim = nearest(x, 5)
    idx, sim = nearest(x, 5, exact_max=0, dims=64)
    dense = (x @ x.T).toarray()
    for row in range(400):
        assert sim[row][idx[row] >= 0] == pytest.approx(dense[row, idx[row][idx[row] >= 0]], abs=1e-5)
    assert (idx[:, 0] == exact_idx[:, 0]).mean() > 0.95 and (idx[::2, 0] == np.arange(1, 400, 2)).all()


def test_shared_feature_candidates_are_the_heaviest_rows_of_each_rows_heaviest_features() -> None:
    from scipy import sparse

    from n2g_site.relate import shared_feature_candidates

    # rows x features; row 0's heaviest features are 0 (0.9) then 2 (0.5)
    x = sparse.csr_matrix(
        np.array(
            [
                [0.9, 0.1, 0.5, 0.0],
                [0.8, 0.0, 0.0, 0.0],
                [0.2, 0.0, 0.7, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
            np.float32,
        )
    )
    found = shared_feature_candidates(x, per_feature=2)
    assert found.shape == (4, 4)
    assert list(found[0]) == [0, 1, 2, 0]  # feature 0: rows 0 (0.9), 1 (0.8); feature 2: rows 2 (0.7), 0 (0.5)
    assert list(found[1]) == [0, 1, -1, -1]  # one feature only
    assert list(found[3]) == [3, -1, -1, -1]  # feature 3 has one row
