"""Calibration (calibrate.py): pattern statistics on training-side text, per-neuron precision cut chosen on
a validation half, and the fit stage's calibrated and --paper modes on the tiny model."""

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from n2g_site import calibrate
from n2g_site.calibrate import Text, match, paper_graph, recalibratable
from n2g_site.calibrate import calibrate as calibrate_graph
from n2g_site.config import Config, FitConfig, MineConfig
from n2g_site.fit import fit
from n2g_site.mine import mine
from n2g_site.n2g.graph import Element, Graph, Line, build_graph, normalise
from n2g_site.n2g.predict import KeyIndex, Predictor, Sequences
from n2g_site.render import render_site
from n2g_site.render.jinja_env import num
from n2g_site.store import WorkDir, read_json
from synthetic import ID, WORDS, encode, paris_after_in

KEYS = KeyIndex(WORDS)
BOS = ID["<|endoftext|>"]


def line(words, end):
    return Line([Element(None if w is None else normalise(w), w or "", 1.0, 0.0) for w in words], end)


def text_of(sentences, rule=paris_after_in):
    rows = [np.array([BOS] + encode(s), dtype=np.int64) for s in sentences]
    acts = [np.array([rule(r, t) for t in range(len(r))]) for r in rows]
    return Text.of(Sequences.concat(rows), np.concatenate(acts), 1.0, BOS)


def random_graph(rng, n_lines):
    words = WORDS[2:12]
    lines = []
    for _ in range(n_lines):
        depth = int(rng.integers(1, 4))
        keys = [words[rng.integers(len(words))]] + [
            None if rng.random() < 0.3 else words[rng.integers(len(words))] for _ in range(depth - 1)
        ]
        while keys[-1] is None:
            keys.pop()
        lines.append(line(keys, round(float(rng.uniform(0.5, 1.0)), 3)))
    return build_graph(lines)


def test_matches_predict_what_the_predictor_predicts():
    rng = np.random.default_rng(0)
    for _ in range(30):
        graph = random_graph(rng, int(rng.integers(1, 12)))
        rows = [rng.integers(0, len(WORDS), size=int(rng.integers(1, 30))) for _ in range(5)]
        seqs = Sequences.concat(rows)
        found = match(graph, KEYS, seqs)
        expected = np.concatenate([Predictor(graph, KEYS)(r) for r in rows])
        np.testing.assert_array_equal(found.predict(calibrate.ends_of(graph), len(seqs)), expected)
        hit = found.winner >= 0  # the winner is a pattern that predicts exactly that value
        np.testing.assert_array_equal(calibrate.ends_of(graph)[found.winner[hit]], expected[hit])
        assert np.all(expected[~hit] == 0)


# The neuron fires on ' Paris' after ' in' only. The graph, as fitted on top windows that never showed
# the neuron quiet, also predicts firing on every ' the' and on every ' Paris'.
OVER_FIRING = [" the"]
PRECISE = [" Paris", " in"]
GRAPH = build_graph([line(OVER_FIRING, 0.9), line(PRECISE, 1.0), line([" Paris"], 0.8)])
WINDOWS = [" He lives in Paris.", " She was born in Paris and visited the city."]
ORDINARY = [
    " He went to the city of London on Monday.",
    " She visited the big city and the city of London.",
    " He lives in Paris near the city.",
    " She went to Paris on Monday.",
] * 4


def node_of(graph, words):
    keys = [normalise(w) for w in words]
    for node in graph.nodes:
        if node.end is not None and [n.key for n in graph.path(node.id)] == keys:
            return node
    raise KeyError(words)


def test_an_over_firing_pattern_is_dropped_and_a_precise_one_kept():
    out, record = calibrate_graph(GRAPH, KEYS, text_of(ORDINARY), text_of(WINDOWS), 0.5)
    assert record.precision > 0  # a cut was chosen on the validation half
    assert node_of(out, OVER_FIRING).end < 0.5  # ' the' never fires with the neuron: dropped
    assert node_of(out, OVER_FIRING).end == pytest.approx(0.0)  # re-weighted to its measured mean
    assert node_of(out, [" Paris"]).end < 0.5  # bare ' Paris' (truth 0.2) fires only after ' in'
    assert node_of(out, [" Paris"]).end == pytest.approx(0.2, abs=1e-6)
    assert node_of(out, PRECISE).end == 1.0  # kept as fitted
    changed = {c[0] for c in record.changed}
    assert changed == {node_of(GRAPH, OVER_FIRING).id, node_of(GRAPH, [" Paris"]).id}
    # Calibrated, the graph predicts the neuron exactly on the ordinary text; the paper's graph over-fires.
    text = text_of(ORDINARY)
    fires = text.truth >= 0.5
    assert np.array_equal(match(out, KEYS, text.seqs).predict(calibrate.ends_of(out), len(text.seqs)) >= 0.5, fires)
    assert (match(GRAPH, KEYS, text.seqs).predict(calibrate.ends_of(GRAPH), len(text.seqs)) >= 0.5).sum() > fires.sum()


def test_a_precise_graph_is_left_as_fitted_and_the_paper_graph_restores():
    precise = build_graph([line(PRECISE, 1.0)])
    out, record = calibrate_graph(precise, KEYS, text_of(ORDINARY), text_of(WINDOWS), 0.5)
    assert record.precision == 0.0 and record.changed == []  # ties go to the least change
    assert out.to_json() == precise.to_json()
    calibrated, record = calibrate_graph(GRAPH, KEYS, text_of(ORDINARY), text_of(WINDOWS), 0.5)
    assert paper_graph(calibrated, record.as_dict()).to_json() == GRAPH.to_json()


def test_patterns_with_too_little_evidence_keep_their_value():
    # ' the' wins only once on the calibration text and the windows together: not judged.
    out, record = calibrate_graph(GRAPH, KEYS, text_of([" He lives in Paris.", " the"]), text_of(WINDOWS), 0.5)
    assert node_of(out, OVER_FIRING).end == 0.9
    assert calibrate.MIN_WINS == 2


def test_the_cut_is_chosen_on_the_validation_half_only():
    # Statistics rows (even) show ' the' over-firing; the validation rows (odd) and these windows hold no
    # ' the' at all, so no cut does better there than keeping the graph: p stays 0 although ' the' is imprecise.
    rows = []
    for _ in range(4):
        rows += [" She visited the city and the big city.", " He lives in Paris."]
    windows = text_of([" He lives in Paris.", " She was born in Paris."])
    out, record = calibrate_graph(GRAPH, KEYS, text_of(rows), windows, 0.5)
    assert record.precision == 0.0
    assert node_of(out, OVER_FIRING).end == 0.9


def test_recalibratable_compares_everything_but_the_calibration_options():
    base = {"train_examples": 10, "paper": False, "calibration_tokens": 16384}
    assert recalibratable({**base, "paper": True}, base)
    assert recalibratable({"train_examples": 10}, base)  # a file from before calibration
    assert not recalibratable({**base, "train_examples": 5}, base)
    assert not recalibratable(None, base)


def _tiny_workdir(tmp_path, tiny_model):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    words = ["cats", "rivers", "kings", "music", "maths", "ships", "trees", "coins"]
    for i, w in enumerate(words * 3):
        (corpus / f"d{i:02d}.txt").write_text(f"Some text about {w} and more {w} number {i}. " * 4)
    cfg = Config(
        model="random:tiny",
        corpus=str(corpus),
        work_dir=tmp_path / "w",
        layers="0-1",
        neurons="0-3",
        # no band sample: --paper and the default mode fit the same windows, so they differ by calibration only
        # (with band windows the default mode fits again: tests/test_band_fit.py)
        mine=MineConfig(top_k=4, seq_len=24, max_tokens=0, held_out=0.3, batch_tokens=100, band_windows=0),
        fit=FitConfig(augmenter="none", train_examples=2, calibration_tokens=600),
    ).validate()
    work = WorkDir(cfg.work_dir)
    mine(cfg, lambda: tiny_model, work)
    return cfg, work


def _fits(work):
    return {p.relative_to(work.root): read_json(p) for p in sorted((work.root / "fit").rglob("N*.json"))}


def test_fit_calibrates_and_paper_mode_keeps_the_papers_graphs(tmp_path, tiny_model):
    cfg, work = _tiny_workdir(tmp_path, tiny_model)
    paper = replace(cfg, fit=replace(cfg.fit, paper=True)).validate()
    fit(paper, lambda: tiny_model, work)
    papers = _fits(work)
    assert all(f["calibration"] is None and f["config"]["paper"] is True for f in papers.values())
    assert not (work.root / "calibrate").exists()  # --paper runs no calibration pass
    loads = []
    summary = fit(cfg, lambda: loads.append(1) or tiny_model, work)  # same fit but for calibration: no refit
    assert summary.fitted == 0 and loads == [1]
    assert (work.root / "calibrate" / "layer_00.npz").exists()
    calibrated = _fits(work)
    for name, data in calibrated.items():
        if data["status"] != "fitted":
            continue
        assert data["config"]["paper"] is False and data["calibration"]["tokens"] > 0
        restored = paper_graph(Graph.from_json(data["graph"]), data["calibration"])
        assert restored.to_json() == papers[name]["graph"]  # calibration changes end values only
        assert data["examples"] == papers[name]["examples"]
    # Back to --paper: the paper's files again, byte for byte the same content.
    fit(paper, lambda: tiny_model, work)
    assert _fits(work) == papers
    # A fresh calibrated fit writes what recalibrating wrote.
    fresh = replace(cfg, work_dir=tmp_path / "w2").validate()
    fresh_work = WorkDir(fresh.work_dir)
    mine(fresh, lambda: tiny_model, fresh_work)
    fit(fresh, lambda: tiny_model, fresh_work)
    mine_digest = {k: v.pop("mined") for k, v in calibrated.items()}
    fresh_fits = _fits(fresh_work)
    assert {k: v.pop("mined") for k, v in fresh_fits.items()} == mine_digest
    for name in calibrated:
        calibrated[name].pop("cost")
        fresh_fits[name].pop("cost")
    assert fresh_fits == calibrated


# Token patterns: the neuron fires on every ' Monday' (and on ' Paris' after ' in'), but the graph was
# fitted on peaks that were all ' Paris', so it has no pattern for ' Monday'; the token lookup has.
def monday_or_paris_after_in(tokens, t):
    return 1.0 if tokens[t] == ID[" Monday"] else paris_after_in(tokens, t)


MONDAY_WINDOWS = [" He lives in Paris on Monday.", " She was born in Paris and went to the city on Monday."]


def test_token_patterns_add_the_tokens_that_fire_on_average():
    graph = build_graph([line(PRECISE, 1.0)])  # ' Paris' is a root no line stops at
    windows = text_of(MONDAY_WINDOWS, monday_or_paris_after_in)
    out, record = calibrate.add_token_patterns(graph, KEYS, windows, 0.5, 1)
    [monday] = [out.nodes[i] for i in record.added]
    assert (monday.key, monday.token, monday.parent, monday.depth) == ("monday", " Monday", -1, 0)
    assert monday.end == 1.0 and monday.count == 2  # its mean over its 2 occurrences
    assert record.ended == [node_of(graph, PRECISE).parent]  # ' Paris' fired at every occurrence: now alone too
    assert out.nodes[record.ended[0]].end == 1.0
    assert node_of(out, PRECISE).end == 1.0  # existing patterns keep their values
    assert all(n.key not in ("the", "city", "in") or n.parent >= 0 for n in out.nodes)  # quiet tokens: none
    assert graph.to_json() == build_graph([line(PRECISE, 1.0)]).to_json()  # the input is not changed
    # Each occurrence counts: with at least 3 wanted, the two ' Monday's and two ' Paris's are not enough.
    _, few = calibrate.add_token_patterns(graph, KEYS, windows, 0.5, 3)
    assert few.added == [] and few.ended == []
    _, off = calibrate.add_token_patterns(graph, KEYS, windows, 0.5, 0)
    assert off.added == [] and off.ended == []


def test_token_patterns_are_judged_by_calibration_and_the_paper_graph_restores():
    graph = build_graph([line(PRECISE, 1.0)])
    windows = text_of(MONDAY_WINDOWS, monday_or_paris_after_in)
    rows = [" She went to Paris on Monday.", " He lives in Paris.", " He went to Paris near the city."] * 4
    text = text_of(rows, monday_or_paris_after_in)  # bare ' Paris' in both halves
    out, record = calibrate_graph(graph, KEYS, text, windows, 0.5, min_count=1)
    # ' Monday' fires on the calibration text too: kept, so the graph now finds it there; bare ' Paris'
    # (0.2 without ' in' before it) over-fires there: dropped.
    assert node_of(out, [" Monday"]).end == 1.0
    assert node_of(out, [" Paris"]).end < 0.5
    predicted = match(out, KEYS, text.seqs).predict(calibrate.ends_of(out), len(text.seqs)) >= 0.5
    assert np.array_equal(predicted, text.truth >= 0.5)
    data = record.as_dict()
    assert data["token_patterns"] == {"min_count": 1, "added": record.token_patterns.added, "ended": [0]}
    assert paper_graph(out, data).to_json() == graph.to_json()


def test_a_token_pattern_that_fires_only_in_the_windows_is_dropped():
    # In the training windows ' city' happened to fire; on ordinary text it never does.
    rows = [np.array([BOS] + encode(s), dtype=np.int64) for s in WINDOWS]
    acts = [np.where(r == ID[" city"], 0.9, [paris_after_in(r, t) for t in range(len(r))]) for r in rows]
    windows = Text.of(Sequences.concat(rows), np.concatenate(acts), 1.0, BOS)
    graph = build_graph([line(PRECISE, 1.0)])
    ordinary = [s for s in ORDINARY[:4] if "went to Paris" not in s] * 4  # ' Paris' only after ' in'
    out, record = calibrate_graph(graph, KEYS, text_of(ordinary), windows, 0.5, min_count=1)
    city = node_of(out, [" city"])
    assert city.id in record.token_patterns.added
    assert city.end < 0.5  # judged on the calibration text: precision 0, re-weighted to its mean there
    assert node_of(out, PRECISE).end == 1.0


def _bodies(cfg, work):
    render_site(cfg, work)
    lines = (work.root / "fragments" / "neurons" / "L0.jsonl").read_text(encoding="utf-8").splitlines()
    return {json.loads(line)["url"]: json.loads(line)["body"] for line in lines}


def test_neuron_pages_say_what_calibration_did(tmp_path, tiny_model):
    cfg, work = _tiny_workdir(tmp_path, tiny_model)
    fit(cfg, lambda: tiny_model, work)
    bodies = _bodies(cfg, work)
    seen = 0
    for neuron in range(4):
        data = read_json(work.fitted(0, neuron))
        body = next(b for url, b in bodies.items() if url.rstrip("/").endswith(f"L0/N{neuron}"))
        if data["status"] != "fitted":
            assert "<th>Calibration</th>" not in body
            continue
        record = data["calibration"]
        tokens = {*record["token_patterns"]["added"], *record["token_patterns"]["ended"]}
        changed = {c[0] for c in record["changed"]}
        row = re.search(r"<th>Calibration</th><td>(.*?)</td>", body).group(1)
        assert f"precision cut {num(record['precision'], 2)} · {len(changed - tokens)} pattern" in row
        assert (f"{len(tokens)} one-token pattern" in row) == bool(tokens)
        seen += 1
    assert seen
    paper = replace(cfg, fit=replace(cfg.fit, paper=True)).validate()
    fit(paper, lambda: tiny_model, work)
    assert all("<th>Calibration</th>" not in b for b in _bodies(paper, work).values())  # --paper: none
