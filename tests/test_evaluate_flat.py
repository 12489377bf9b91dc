"""The evaluate stage's whole-dataset path against the per-sequence rules it replaced, and its workers.

A small work dir (one mined layer, random graphs with ignore nodes and repeated tokens, windows with
padding, empty slots and doc-start tokens, an ordinary-text sample) is scored by ``evaluate``; each
neuron's file must equal what the per-sequence reference gives: ``Predictor`` and the baselines called on
each sequence, ``score``, and the per-sequence misses rule (written out below as it was before the flat
path), and the files must be byte-identical with 1 and 2 worker processes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from n2g_site import evaluate as ev
from n2g_site.baselines import NGram, TokenLookup
from n2g_site.config import Config, EvaluateConfig
from n2g_site.n2g.graph import Graph, Node
from n2g_site.n2g.predict import KeyIndex, Predictor
from n2g_site.store import HIST_EDGES, ExampleSet, LayerStats, MinedLayer, OrdinaryText, WorkDir, read_json, write_json

VOCAB = ["<s>", " a", "a", " A", " b", "b", " c", "c", "\n", " ", ".", " d", " e", " f"]
BOS = 0
NEURONS = 10
K, W = 6, 12


def _graph(rng: np.random.Generator) -> dict:
    keys = ["a", "b", "c", "a", "b", "\n", " ", ".", "d", None]
    nodes: list[Node] = []
    for i in range(int(rng.integers(0, 40))):
        parent = -1 if i == 0 or rng.random() < 0.2 else int(rng.integers(0, i))
        depth = 0 if parent < 0 else nodes[parent].depth + 1
        key = keys[int(rng.integers(len(keys) - (1 if parent < 0 else 0)))]
        end = None if rng.random() < 0.4 else float(rng.choice([0.4, 0.5, 0.8, 1.0, round(rng.uniform(0, 1.2), 3)]))
        nodes.append(Node(i, parent, depth, key, key or "", 1.0, 0.5, end, 1))
    return Graph(nodes).to_json()


def _examples(rng: np.random.Generator, a_max: np.ndarray) -> ExampleSet:
    ex = ExampleSet.empty(NEURONS, K, W)
    ex.tokens[:] = rng.integers(1, 5, (NEURONS, K, W))  # few distinct tokens: repeats, patterns match
    ex.tokens[:, ::2, 0] = BOS  # half the windows start a document
    ex.tokens[:, 1, :4] = -1  # padding before a document start
    ex.tokens[:, 2, 9:] = -1  # padding after a document end
    ex.acts[:] = (rng.uniform(-0.1, 1.0, (NEURONS, K, W)) * a_max[:, None, None]).astype(np.float32)
    ex.acts[ex.tokens < 0] = np.nan
    ex.doc[:] = np.arange(K)[None, :]
    ex.doc[:, K - 1] = -1  # an empty slot
    ex.doc[0, :] = -1  # a neuron without windows
    return ex


def make_workdir(root: Path, seed: int = 0) -> WorkDir:
    rng = np.random.default_rng(seed)
    work = WorkDir(root)
    write_json(work.manifest, {"model_info": {"n_layers": 1, "d_mlp": NEURONS, "bos": VOCAB[BOS]}})
    write_json(work.vocab, VOCAB)
    a_max = rng.uniform(0.5, 3.0, NEURONS)
    tokens = rng.integers(0, len(VOCAB) + 1, (4, 30)).astype(np.int32)  # id len(VOCAB): outside the vocabulary
    tokens[1, 20:] = -1
    tokens[:2, 0] = BOS
    ordinary = OrdinaryText(
        tokens,
        (rng.uniform(-0.1, 1.0, (NEURONS, 4, 30)) * a_max[:, None, None]).astype(np.float16),
        np.arange(4, dtype=np.int32),
    )
    hist = rng.integers(0, 50, (NEURONS, len(HIST_EDGES) + 1))
    stats = LayerStats(
        max=a_max.astype(np.float32),
        min=np.zeros(NEURONS, np.float32),
        mean=np.zeros(NEURONS, np.float32),
        hist=hist,
        tokens=1000,
    )
    MinedLayer(0, np.arange(NEURONS), _examples(rng, a_max), _examples(rng, a_max), stats, ordinary).save(work.mined(0))
    for n in range(NEURONS):
        write_json(
            work.fitted(0, n),
            {
                "layer": 0,
                "neuron": n,
                "status": "dead" if n == 3 else "fitted",
                "max_activation": float(a_max[n]),
                "graph": _graph(rng),
            },
        )
    return work


def _reference_misses(predict, datasets, a_max, threshold, bos, limit=ev.MAX_MISSES):
    """The misses rule one sequence at a time (as evaluate.find_misses was before the whole-dataset path)."""
    found = {"false_positive": [], "false_negative": []}
    order = 0
    for name, texts in datasets.items():
        for index, (tokens, acts) in enumerate(texts):
            truth = np.asarray(acts, dtype=np.float64) / a_max
            if bos is not None:
                truth = np.where(tokens == bos, np.nan, truth)
            pred = np.asarray(predict(tokens), dtype=np.float64)
            scored = ~np.isnan(truth)
            fires, said = scored & (truth >= threshold), scored & (pred >= threshold)
            for kind, wrong, gap in (
                ("false_positive", said & ~fires, pred - truth),
                ("false_negative", fires & ~said, truth - pred),
            ):
                if not wrong.any():
                    continue
                at = int(np.flatnonzero(wrong)[np.argmax(gap[wrong])])
                lo, hi = max(0, at - ev.MISS_BEFORE), min(len(tokens), at + ev.MISS_AFTER + 1)
                found[kind].append(
                    (
                        -float(gap[at]),
                        order,
                        {
                            "dataset": name,
                            "sequence": index,
                            "position": at,
                            "start": lo,
                            "tokens": [int(t) for t in tokens[lo:hi]],
                            "truth": [None if np.isnan(v) else round(float(v), 3) for v in truth[lo:hi]],
                            "predicted": [round(float(v), 3) for v in pred[lo:hi]],
                        },
                    )
                )
                order += 1
    out = {}
    for kind, items in found.items():
        chosen, seen = [], set()
        for _, _, snippet in sorted(items, key=lambda x: x[:2]):
            at = snippet["position"] - snippet["start"]
            context = (
                tuple(snippet["tokens"][at - 4 : at + 1]) if at >= 4 else (snippet["dataset"], snippet["sequence"])
            )
            if context in seen:
                continue
            seen.add(context)
            chosen.append(snippet)
            if len(chosen) == limit:
                break
        out[kind] = chosen
    return out


def _reference(work: WorkDir, neuron: int, n: int, threshold: float = 0.5, train_examples: int = 10) -> dict:
    fit = read_json(work.fitted(0, neuron))
    out = {
        "schema": ev.SCHEMA,
        "layer": 0,
        "neuron": neuron,
        "status": fit["status"],
        "fire_threshold": threshold,
        "ngram": n,
        "datasets": {},
        "mined": None,
    }  # this synthetic work dir's run.json has no digests
    if fit["status"] != "fitted":
        return out
    mined = MinedLayer.load(work.mined(0))
    a_max = fit["max_activation"]
    train = [(w.tokens, w.acts / a_max) for w in mined.train.windows(neuron)[:train_examples]]
    predictors = {
        "n2g": Predictor(Graph.from_json(fit["graph"]), KeyIndex(VOCAB)),
        "token_lookup": TokenLookup(train, len(VOCAB), BOS, "mean"),
        "token_max": TokenLookup(train, len(VOCAB), BOS, "max"),
        "ngram": NGram(train, n, threshold, BOS),
    }
    datasets = {
        "heldout": [(w.tokens, w.acts) for w in mined.heldout.windows(neuron)],
        "ordinary": mined.ordinary.rows(neuron),
    }
    for name, texts in datasets.items():
        out["datasets"][name] = {}
        for method, predict in predictors.items():
            pairs = []
            for tokens, acts in texts:
                truth = np.where(tokens == BOS, np.nan, acts / a_max)
                pairs.append((truth, predict(tokens)))
            out["datasets"][name][method] = ev.score(pairs, threshold).as_dict()
    out["misses"] = _reference_misses(predictors["n2g"], datasets, a_max, threshold, BOS)
    return out


@pytest.mark.parametrize(("seed", "ngram"), [(0, 5), (1, 2), (2, 3)])
def test_each_neuron_file_equals_the_per_sequence_reference(tmp_path, seed, ngram):
    work = make_workdir(tmp_path, seed)
    cfg = Config(work_dir=tmp_path, layers="0", neurons=f"0-{NEURONS - 1}", evaluate=EvaluateConfig(ngram=ngram))
    ev.evaluate(cfg, work, jobs=1)
    for n in range(NEURONS):
        got = json.loads(work.evaluated(0, n).read_text())
        assert got == json.loads(json.dumps(_reference(work, n, ngram))), n
    assert (
        sum(
            len(json.loads(work.evaluated(0, n).read_text()).get("misses", {}).get("false_positive", []))
            for n in range(NEURONS)
        )
        > 0
    )  # the comparison covered some misses


def test_the_work_dir_has_matches_across_sequence_boundaries():
    """Checks the data above: laid end to end with no boundaries, some predictions would change (so the
    comparison would catch a predictor or n-gram matching across a sequence start)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        work = make_workdir(Path(tmp))
        mined = MinedLayer.load(work.mined(0))
        keys = KeyIndex(VOCAB)
        crossing = 0
        for n in range(NEURONS):
            texts = [w.tokens for w in mined.heldout.windows(n)] + [t for t, _ in mined.ordinary.rows(n)]
            joined = np.concatenate(texts)
            predict = Predictor(Graph.from_json(read_json(work.fitted(0, n))["graph"]), keys)
            crossing += int((predict(joined) != np.concatenate([predict(t) for t in texts])).sum())
        assert crossing > 0


def test_files_are_byte_identical_with_one_and_two_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "CHUNK", 3)  # 4 chunks of this layer's 10 neurons
    files = []
    for jobs in (1, 2):
        root = tmp_path / f"jobs{jobs}"
        work = make_workdir(root)
        ev.evaluate(Config(work_dir=root, layers="0", neurons=f"0-{NEURONS - 1}"), work, jobs=jobs)
        files.append(
            {p.relative_to(root): p.read_bytes() for p in sorted((root / "evaluate").rglob("*")) if p.is_file()}
        )
    assert len(files[0]) == NEURONS + 2 and files[0] == files[1]  # every neuron, the layer CSV, the summary


def test_jobs_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="jobs=0"):
        ev.evaluate(Config(work_dir=tmp_path, layers="0", neurons="0-1"), make_workdir(tmp_path), jobs=0)


def test_misses_break_ties_by_the_earliest_position_then_dataset_then_sequence():
    predict = lambda t: np.where(np.asarray(t) == 5, 0.9, 0.0)  # noqa: E731
    seq = (np.array([1, 5, 2, 5, 5, 3, 4, 1, 5]), np.zeros(9))  # equal gaps everywhere: 0.9
    datasets = {"heldout": [seq, seq], "ordinary": [(np.array([7, 5]), np.zeros(2)), seq]}
    got = ev.find_misses(predict, datasets, a_max=1.0, threshold=0.5, bos=None, limit=5)
    assert got == _reference_misses(predict, datasets, 1.0, 0.5, None, limit=5)
    assert [(m["dataset"], m["sequence"], m["position"]) for m in got["false_positive"]] == [
        ("heldout", 0, 1),
        ("heldout", 1, 1),
        ("ordinary", 0, 1),
        ("ordinary", 1, 1),
    ]


@pytest.mark.parametrize("seed", [0, 1])
def test_score_graph_equals_score_predictor_with_the_reference_predictor(tmp_path, seed):
    """fit.py's held-out score can use score_graph: the same Scores as score_predictor(Predictor(...))."""
    work = make_workdir(tmp_path, seed)
    mined, keys = MinedLayer.load(work.mined(0)), KeyIndex(VOCAB)
    for n in range(NEURONS):
        fit = read_json(work.fitted(0, n))
        graph = Graph.from_json(fit["graph"])
        texts = [(w.tokens, w.acts) for w in mined.heldout.windows(n)]
        want = ev.score_predictor(Predictor(graph, keys), texts, fit["max_activation"], 0.5, BOS)
        assert ev.score_graph(graph, keys, texts, fit["max_activation"], 0.5, BOS) == want
