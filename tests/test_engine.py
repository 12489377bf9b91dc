from dataclasses import replace

import numpy as np
import pytest
import torch

from n2g_site.config import FitConfig
from n2g_site.engine import BatchedEngine, Segment, segments, tree_mask
from n2g_site.n2g import saliency
from n2g_site.n2g.graph import normalise
from n2g_site.n2g.phases import Example, NeuronTask, Vocabulary, fit_neurons
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
    prompts = [
        tuple([model.bos_id] + model.encode(t))
        for t in (" In Paris the museums open at nine and close at six.", " She moved to London in 1999.", " A")
    ]
    rows = list(prompts)
    for p in prompts:
        rows += saliency.masked_rows(p, len(p) - 1, model.mask_id, 1)
        rows += [p[:k] + (model.encode(" the")[0],) + p[k + 1 :] for k in range(1, len(p))]
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
        for path in seg.paths.values():  # the last node sees exactly its path
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
    with pytest.warns(RuntimeWarning, match="prefix-sharing check failed"):
        got = engine(requests)
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    assert engine._tree_ok is False and engine.counters.computed == engine.counters.tokens


def test_fit_with_shared_prefixes_gives_the_same_graphs(tiny_model):
    text = tiny_model.token_strings()
    vocab = Vocabulary(
        text,
        [normalise(t) for t in text],
        tiny_model.bos_id,
        tiny_model.mask_id,
        frozenset(tiny_model.tokenizer.all_special_ids),
    )
    tasks = []
    for neuron in (3, 17, 40):
        examples = []
        for rank, t in enumerate(
            (
                " In Paris the museums open at nine and close at six in the evening.",
                " She moved to London in 1999 and worked as a teacher.",
            )
        ):
            tokens = np.array([tiny_model.bos_id] + tiny_model.encode(t))
            acts = (
                tiny_model.mlp_activations(torch.from_numpy(tokens)[None], [1])[1][0, :, neuron].numpy().astype(float)
            )
            examples.append(Example(tokens, acts, int(np.argmax(acts[1:])) + 1, rank))
        tasks.append(NeuronTask(1, neuron, examples, max(float(e.acts[1:].max()) for e in examples)))

    def propose(prompts, positions):  # two fixed replacements per position: variants share prefixes
        return [
            [[(tiny_model.encode(" the")[0], 0.5), (tiny_model.encode(" city")[0], 0.4)] for _ in where]
            for where in positions
        ]

    propose.name = "fixed"
    cfg = replace(FitConfig(), augment_importance_threshold=-1.0)
    plain = fit_neurons(tasks, BatchedEngine(tiny_model, share_prefixes=False), cfg, vocab, propose)
    tree_engine = BatchedEngine(tiny_model, segment_tokens=64)
    tree = fit_neurons(tasks, tree_engine, cfg, vocab, propose)
    assert tree_engine.counters.computed < tree_engine.counters.tokens
    for a, b in zip(plain, tree):
        assert [(n.key, n.parent, n.depth) for n in a.graph.nodes] == [
            (n.key, n.parent, n.depth) for n in b.graph.nodes
        ]
        assert a.examples == b.examples
        assert a.cost == b.cost
    assert sum(len(f.graph.nodes) for f in tree) > 0 and sum(f.cost["augment_saliency"]["requests"] for f in tree) > 0


# --- the device side: tree mask from parent pointers, gathered answers, OOM memory, the model check -----


def _batch_of(segs):
    width = max(len(s) for s in segs)
    positions = torch.zeros((len(segs), width), dtype=torch.long)
    parents = torch.full((len(segs), width), -1, dtype=torch.long)
    for i, s in enumerate(segs):
        positions[i, : len(s)] = torch.tensor(s.positions)
        parents[i, : len(s)] = torch.tensor(s.parents)
    return positions, parents, width


@pytest.mark.parametrize("seed", range(4))
def test_tree_mask_equals_segment_ancestors(seed):
    rng = np.random.default_rng(seed)
    base = [tuple(rng.integers(0, 6, size=rng.integers(1, 12)).tolist()) for _ in range(40)]
    rows = sorted(set(base + [r[:k] + (9,) + r[k + 1 :] for r in base for k in range(len(r))]))
    segs = segments(rows, limit=int(rng.integers(8, 64)))
    positions, parents, width = _batch_of(segs)
    mask = tree_mask(positions, parents, torch.float32)
    assert mask.shape == (len(segs), 1, width, width)
    allowed = (mask[:, 0] == 0).numpy()
    for i, seg in enumerate(segs):
        n = len(seg)
        np.testing.assert_array_equal(allowed[i, :n, :n], seg.ancestors())
        assert not allowed[i, :n, n:].any() and not allowed[i, n:, :n].any()
        np.testing.assert_array_equal(allowed[i, n:, n:], np.eye(width - n, dtype=bool))  # padding: itself
    assert (mask[:, 0][~torch.from_numpy(allowed)] == torch.finfo(torch.float32).min).all()


def test_only_the_requested_activations_come_back(tiny_model, monkeypatch):
    import n2g_site.engine as engine_module

    rows = _families(tiny_model)
    requests = [Request(1, neuron, r) for i, r in enumerate(rows) for neuron in ((3,) if i % 2 else (3, 40))]
    gathered = []
    real = engine_module.gather_values
    monkeypatch.setattr(
        engine_module, "gather_values", lambda acts, index: gathered.append(index.numel()) or real(acts, index)
    )
    engine = BatchedEngine(tiny_model, batch_tokens=128)
    answers = engine(requests)
    pairs = {(r.tokens, r.neuron) for r in requests}
    assert sum(gathered) == sum(len(tokens) for tokens, _ in pairs)  # [answered nodes] floats, no whole columns
    assert engine.counters.forwards == len(gathered)
    for req, got in zip(requests, answers):
        assert got.dtype == np.float64 and not got.flags.writeable
        ref = tiny_model.mlp_activations(torch.tensor([req.tokens]), [1])[1][0, :, req.neuron].numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_an_out_of_memory_split_is_remembered(tiny_model, monkeypatch):
    from n2g_site.models import LoadedModel

    model = LoadedModel(
        **{
            f: getattr(tiny_model, f)
            for f in ("spec", "name", "bridge", "tokenizer", "hook_template", "bos_id", "mask_id", "architecture")
        }
    )
    seen = []
    real = LoadedModel._forward_hooks

    def limited(self, tokens, layers, *args):
        seen.append(int(tokens.shape[0]))
        if tokens.numel() > 40:
            raise torch.OutOfMemoryError("stand-in: more than 40 tokens")
        return real(self, tokens, layers, *args)

    monkeypatch.setattr(LoadedModel, "_forward_hooks", limited)
    tokens = torch.randint(0, 500, (16, 10))
    first = model.mlp_activations(tokens, [0])[0]
    assert seen == [16, 8, 4, 4, 4, 4]  # failed, failed, then four parts of 4 rows x 10
    seen.clear()
    again = model.mlp_activations(tokens, [0])[0]
    assert seen == [4, 4, 4, 4]  # starts at the size that worked
    torch.testing.assert_close(first, again)
    seen.clear()
    model.mlp_activations(torch.randint(0, 500, (16, 20)), [0])
    assert seen == [2] * 8  # 40 tokens a batch: twice the width, half the rows
    np.testing.assert_allclose(first.numpy(), real(tiny_model, tokens, [0])[0].numpy(), rtol=1e-5, atol=1e-6)


def test_a_failed_prefix_check_is_reported_and_out_of_memory_is_raised(tiny_model, monkeypatch):
    engine = BatchedEngine(tiny_model)

    def refuse(*args, **kwargs):
        raise TypeError("this model takes no attention_mask")

    monkeypatch.setattr(engine, "_tree_activations", refuse)
    with pytest.warns(
        RuntimeWarning, match="prefix-sharing check failed .TypeError: this model takes no attention_mask"
    ):
        assert engine._tree_works() is False
    engine = BatchedEngine(tiny_model)

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(engine, "_tree_activations", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        engine._tree_works()


def test_vectorised_tries_match_a_plain_python_trie():
    rng = np.random.default_rng(7)
    rows = list({tuple(rng.integers(0, 4, size=rng.integers(1, 9)).tolist()) for _ in range(300)})
    for limit in (1, 5, 17, 1000):
        segs, seg, prev = [], None, ()
        for row in sorted(rows):  # the engine's original loop, node by node
            shared = next((i for i, (a, b) in enumerate(zip(prev, row)) if a != b), min(len(prev), len(row)))
            if seg is None or (len(seg) + len(row) - shared > limit and seg.paths):
                seg, shared = Segment(), 0
                segs.append(seg)
            path = seg.paths[prev][:shared] if shared else []
            for pos in range(shared, len(row)):
                path.append(len(seg.tokens))
                seg.parents.append(path[-2] if pos else -1)
                seg.tokens.append(row[pos])
                seg.positions.append(pos)
            seg.paths[row] = path
            prev = row
        assert segments(rows, limit) == segs


# --- lockstep groups (fit.plan) ---------------------------------------------------------------------


def test_lockstep_groups_come_from_the_options_and_the_whole_selection():
    from n2g_site.config import Config, UserError
    from n2g_site.fit import fit_options, group_size, plan

    cpu, gpu = Config(neurons="0-999", layers="0-1"), Config(neurons="0-999", layers="0-1", device="cuda")
    assert fit_options(cpu).fit_batch_tokens == 4096 and group_size(fit_options(cpu)) == 4
    assert fit_options(gpu).fit_batch_tokens == 262_144 and group_size(fit_options(gpu)) == 256
    chosen = replace(gpu, fit=replace(gpu.fit, fit_batch_tokens=8192))
    assert fit_options(chosen).fit_batch_tokens == 8192 and group_size(fit_options(chosen)) == 8
    with pytest.raises(ValueError, match="fit_options"):  # unresolved options fail, not a silent CPU default
        group_size(gpu.fit)
    groups = plan(gpu, 2, 1000)
    assert [len(g) for _, g in groups] == [256, 256, 256, 232] * 2
    assert [n for layer, g in groups if layer == 1 for n in g] == list(range(1000))
    assert plan(gpu, 2, 1000) == groups  # the same every time
    shards = [plan(replace(gpu, shard=f"{i}/3"), 2, 1000) for i in range(3)]
    assert sorted(g for part in shards for g in part) == sorted(groups)  # disjoint, together the whole plan
    # the groups depend on the options (device as given, or --fit-batch-tokens), not on what is left to do
    assert plan(replace(cpu, neurons="0-9"), 2, 1000)[:3] == [(0, (0, 1, 2, 3)), (0, (4, 5, 6, 7)), (0, (8, 9))]
    with pytest.raises(UserError, match="--fit-batch-tokens 0 must be 1 or more"):
        replace(cpu, fit=replace(cpu.fit, fit_batch_tokens=0)).validate()
