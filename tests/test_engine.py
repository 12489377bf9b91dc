from dataclasses import replace

import numpy as np
import pytest
import torch

from n2g_site.config import FitConfig
from n2g_site.engine import BatchedEngine, segments
from n2g_site.n2g import saliency
from n2g_site.n2g.fit import Example, NeuronTask, Vocabulary, fit_neurons
from n2g_site.n2g.graph import normalise
from n2g_site.n2g.requests import Request


def test_batched_engine_equals_one_request_at_a_time(tiny_model):
    texts = ["The cat sat.", "In Paris the museums open at nine.", "Rivers flow into the sea and on.", "A"]
    seqs = [tuple([tiny_model.bos_id] + tiny_model.encode(t)) for t in texts]
    requests = [Request(layer, neuron, s) for s in seqs for layer in (0, 1) for neuron in (3, 17, 40)]
    requests.append(requests[0])  # a duplicate is answered too
    engine = BatchedEngine(tiny_model, batch_tokens=20)
    batched = engine(requests)
    for req, got in zip(requests, batched):
        ref = tiny_model.mlp_activations(torch.tensor([req.tokens]), [req.layer])[req.layer][0, :, req.neuron]
        np.testing.assert_allclose(got, ref.numpy(), rtol=1e-5, atol=1e-6)
    # one row per distinct (layer, sequence), however many neurons asked
    assert engine.counters.rows == len(seqs) * 2
    assert engine.counters.requests == len(requests)


# --- shared prefixes: tries of sequences packed as rows (a tree attention mask) ----------------------


def _families(model):
    """What the fit sends: pruned prompts, their occlusion rows and one-token variants (shared prefixes)."""
    prompts = [tuple([model.bos_id] + model.encode(t)) for t in (
        " In Paris the museums open at nine and close at six.", " She moved to London in 1999.", " A")]
    rows = list(prompts)
    for p in prompts:
        rows += saliency.masked_rows(p, len(p) - 1, model.mask_id, 1)
        rows += [p[:k] + (model.encode(" the")[0],) + p[k + 1:] for k in range(1, len(p))]
    return rows


def test_segments_are_tries_that_rebuild_every_row():
    rows = [(0, 5, 6, 7), (0, 5, 6, 8, 9), (0, 5, 6), (0, 9), (1, 2), (0, 5, 7, 7, 7, 7, 7)]
    segs = segments(rows, limit=8)
    assert sorted(r for s in segs for r in s.paths) == sorted(rows)
    for seg in segs:
        assert len(seg) <= 8 or len(seg.paths) == 1
        for row, path in seg.paths.items():
            assert [seg.tokens[i] for i in path] == list(row)
            assert [seg.positions[i] for i in path] == list(range(len(row)))
            assert [seg.parents[i] for i in path] == [-1] + path[:-1]
        allowed = seg.ancestors()
        for row, path in seg.paths.items():  # the last node sees exactly its path
            assert set(np.flatnonzero(allowed[path[-1]])) == set(path)
    one = segments(rows, limit=1000)
    assert len(one) == 1
    assert len(one[0]) == len({r[:i] for r in rows for i in range(1, len(r) + 1)})  # one node per prefix


@pytest.mark.parametrize("segment_tokens", [256, 24, 3])  # one trie a batch; split tries; every row alone
def test_shared_prefixes_give_the_plain_activations(tiny_model, segment_tokens):
    rows = _families(tiny_model)
    requests = [Request(layer, neuron, r) for r in rows for layer in (0, 1) for neuron in (3, 40)]
    plain = BatchedEngine(tiny_model, batch_tokens=64, share_prefixes=False)
    tree = BatchedEngine(tiny_model, batch_tokens=64, segment_tokens=segment_tokens)
    for a, b in zip(plain(requests), tree(requests)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    assert tree._tree_ok
    assert tree.counters.rows == plain.counters.rows == 2 * len(set(rows))
    assert tree.counters.tokens == plain.counters.tokens == plain.counters.computed
    if segment_tokens >= 24:  # the occlusion rows and variants reuse their prefixes
        assert tree.counters.computed < 0.75 * plain.counters.computed


def test_a_model_without_custom_masks_runs_the_plain_way(tiny_model, monkeypatch):
    rows = _families(tiny_model)[:12]
    requests = [Request(1, 5, r) for r in rows]
    want = BatchedEngine(tiny_model, share_prefixes=False)(requests)
    engine = BatchedEngine(tiny_model)

    def refuse(*args, **kwargs):
        raise TypeError("this model takes no attention_mask")

    monkeypatch.setattr(engine, "_tree_activations", refuse)
    for a, b in zip(want, engine(requests)):
        np.testing.assert_array_equal(a, b)
    assert engine._tree_ok is False and engine.counters.computed == engine.counters.tokens


def test_fit_with_shared_prefixes_gives_the_same_graphs(tiny_model):
    text = tiny_model.token_strings()
    vocab = Vocabulary(text, [normalise(t) for t in text], tiny_model.bos_id, tiny_model.mask_id,
                       frozenset(tiny_model.tokenizer.all_special_ids))
    tasks = []
    for neuron in (3, 17, 40):
        examples = []
        for rank, t in enumerate((" In Paris the museums open at nine and close at six in the evening.",
                                  " She moved to London in 1999 and worked as a teacher.")):
            tokens = np.array([tiny_model.bos_id] + tiny_model.encode(t))
            acts = tiny_model.mlp_activations(torch.from_numpy(tokens)[None], [1])[1][0, :, neuron].numpy().astype(float)
            examples.append(Example(tokens, acts, int(np.argmax(acts[1:])) + 1, rank))
        tasks.append(NeuronTask(1, neuron, examples, max(float(e.acts[1:].max()) for e in examples)))

    def propose(prompts, positions):  # two fixed replacements per position: variants share prefixes
        return [[[(tiny_model.encode(" the")[0], 0.5), (tiny_model.encode(" city")[0], 0.4)] for _ in where]
                for where in positions]

    propose.name = "fixed"
    cfg = replace(FitConfig(), augment_importance_threshold=-1.0)
    plain = fit_neurons(tasks, BatchedEngine(tiny_model, share_prefixes=False), cfg, vocab, propose)
    tree_engine = BatchedEngine(tiny_model, segment_tokens=64)
    tree = fit_neurons(tasks, tree_engine, cfg, vocab, propose)
    assert tree_engine.counters.computed < tree_engine.counters.tokens
    for a, b in zip(plain, tree):
        assert [(n.key, n.parent, n.depth) for n in a.graph.nodes] == [(n.key, n.parent, n.depth) for n in b.graph.nodes]
        assert a.examples == b.examples
        assert a.cost == b.cost
    assert sum(len(f.graph.nodes) for f in tree) > 0 and sum(f.cost["augment_saliency"]["requests"] for f in tree) > 0
