"""``--polarity both`` through the stages on the tiny model: negative fit files next to the positive ones (which
stay byte-identical), resumed, sharded and merged like them; evaluate scores the negative graph where
activation <= fire_threshold x A_min; render shows the bottom examples, negative shading and the negative
graph, and indexes it for search as the negative side."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from n2g_site.cli import app
from n2g_site.schemas import validate
from n2g_site.store import MinedLayer, WorkDir, read_json

NEURONS = range(4)
RUN = ["--model", "random:tiny", "--layers", "0", "--neurons", "0-3"]
FIT = ["--augmenter", "none", "--fit-batch-tokens", "2048"]  # groups of 2 neurons: two groups, so two shards


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def mined(tmp_path_factory) -> tuple[Path, Path]:
    """A mined work dir (layer 0, neurons 0-3) and its corpus."""
    root = tmp_path_factory.mktemp("polarity")
    corpus = root / "corpus"
    corpus.mkdir()
    for i, text in enumerate(
        [
            "The cat sat on the mat in Paris. It was a sunny day in the city.",
            "She moved to London in 1999 and worked as a teacher at a school.",
            "Rivers flow into the sea; the sea is salty and deep.",
            "In Paris the museums open at nine. Tourists queue in Paris every day.",
            "Numbers: 1, 2, 3 and 42. Rome is in Italy; Paris is in France.",
        ]
    ):
        (corpus / f"doc{i}.txt").write_text((text + " ") * 4, encoding="utf-8")
    work = root / "mined"
    cli("mine", *RUN, "--corpus", str(corpus), "--top-k", "4", "--work-dir", str(work))
    return work, corpus


def _copy(mined: tuple[Path, Path], dest: Path) -> Path:
    shutil.copytree(mined[0], dest)
    return dest


def _fit(work: Path, corpus: Path, *more: str) -> str:
    return cli("fit", *RUN, "--corpus", str(corpus), *FIT, "--work-dir", str(work), *more)


@pytest.fixture(scope="module")
def both(mined, tmp_path_factory) -> Path:
    work = _copy(mined, tmp_path_factory.mktemp("both") / "work")
    _fit(work, mined[1], "--polarity", "both")
    return work


def test_negative_fit_files_beside_unchanged_positive_ones(mined, both, tmp_path):
    positive = _copy(mined, tmp_path / "positive")
    _fit(positive, mined[1])
    layer = MinedLayer.load(WorkDir(both).mined(0))
    assert layer.bottom_train is not None
    for n in NEURONS:
        pos = WorkDir(both).fitted(0, n)
        assert pos.read_bytes() == WorkDir(positive).fitted(0, n).read_bytes()  # --polarity adds, never changes
        assert not WorkDir(positive).fitted(0, n, "negative").exists()
        neg = read_json(WorkDir(both).fitted(0, n, "negative"))
        validate(neg, "neuron-fit")
        assert neg["polarity"] == "negative" and read_json(pos)["polarity"] == "positive"
        # A_min: the most negative activation of the bottom training windows (GELU: about -0.17, never lower)
        windows = layer.bottom_train.windows(layer.row(n))[:10]
        a_min = min(float(w.acts[w.pivot]) for w in windows)
        assert -0.18 < a_min < 0
        assert neg["max_activation"] == pytest.approx(-a_min, abs=1e-6)
        assert neg["status"] == "fitted" and neg["graph"]["nodes"]
        # the negative graph's pivots are the bottom windows' lowest tokens
        assert {e["pivot"] for e in neg["examples"]} <= {w.pivot for w in windows}
        assert {(e["doc"], e["window_start"]) for e in neg["examples"]} <= {(w.doc, w.start) for w in windows}


def test_both_sides_resume_and_a_positive_run_keeps_the_negative_files(mined, both, tmp_path):
    work = _copy((both, mined[1]), tmp_path / "work")
    out = _fit(work, mined[1], "--polarity", "both")
    assert "already fitted" in out
    WorkDir(work).fitted(0, 3, "negative").unlink()  # a lost negative file is fitted again, alone
    out = _fit(work, mined[1], "--polarity", "both")
    assert "2 neuron sides" in out and "(6 already done)" in out
    assert WorkDir(work).fitted(0, 3, "negative").read_bytes() == WorkDir(both).fitted(0, 3, "negative").read_bytes()
    assert "already fitted" in _fit(work, mined[1])  # --polarity positive: nothing to do, nothing removed
    assert WorkDir(work).fitted(0, 3, "negative").exists()


def test_shards_and_merge_give_the_files_of_one_run(mined, both, tmp_path):
    parts = [_copy(mined, tmp_path / f"shard{i}") for i in range(2)]
    for i, part in enumerate(parts):
        _fit(part, mined[1], "--polarity", "both", "--shard", f"{i}/2")
    assert {p.name for p in (parts[0] / "fit" / "L00").iterdir()} == {
        "N00000.json",
        "N00000.neg.json",
        "N00001.json",
        "N00001.neg.json",
    }
    merged = _copy(mined, tmp_path / "merged")
    cli("merge", "--work-dir", str(merged), *map(str, parts))
    names = sorted(p.name for p in (both / "fit" / "L00").iterdir())
    assert names == sorted(p.name for p in (merged / "fit" / "L00").iterdir()) and len(names) == 8
    for name in names:
        assert (merged / "fit" / "L00" / name).read_bytes() == (both / "fit" / "L00" / name).read_bytes(), name


@pytest.fixture(scope="module")
def evaluated(mined, both, tmp_path_factory) -> Path:
    work = _copy((both, mined[1]), tmp_path_factory.mktemp("evaluated") / "work")
    cli("evaluate", *RUN, "--corpus", str(mined[1]), "--work-dir", str(work))
    return work


def test_evaluate_scores_the_negative_graph_where_activation_is_at_most_half_the_minimum(evaluated):
    work = WorkDir(evaluated)
    layer = MinedLayer.load(work.mined(0))
    vocab = work.load_vocab()
    bos = vocab.index(work.load_manifest()["model_info"]["bos"])
    summary = read_json(work.evaluation_summary)
    for n in NEURONS:
        fit = read_json(work.fitted(0, n, "negative"))
        result = read_json(work.evaluated(0, n, "negative"))
        assert result["polarity"] == "negative" and set(result["datasets"]) == {"heldout", "ordinary"}
        a_min = -fit["max_activation"]
        held = layer.bottom_heldout.windows(layer.row(n))
        firing = sum(int(((w.acts <= 0.5 * a_min) & (w.tokens != bos)).sum()) for w in held)
        assert result["datasets"]["heldout"]["n2g"]["true_firing"] == firing > 0
        ordinary = [acts for tokens, acts in layer.ordinary.rows(layer.row(n))]
        tokens = [tokens for tokens, _ in layer.ordinary.rows(layer.row(n))]
        fires = sum(int(((a <= 0.5 * a_min) & (t != bos)).sum()) for t, a in zip(tokens, ordinary))
        assert result["datasets"]["ordinary"]["token_lookup"]["true_firing"] == fires
        positive = read_json(work.evaluated(0, n))
        assert "polarity" not in positive  # the positive file is as before
    csv = (evaluated / "evaluate" / "layer_00.neg.csv").read_text().splitlines()
    assert len(csv) == 1 + len(NEURONS) * 2 * 4  # header + neuron x dataset x method
    negative = summary["negative"]["0"]
    assert negative["neurons"] == len(NEURONS) and negative["heldout"]["n2g"]["f1_neurons"] >= 1
    assert negative["dead"] == 0 and summary["layers"]["0"]["neurons"] == len(NEURONS)
    # merge rebuilds the same tables from the neuron files
    before = {p: p.read_bytes() for p in (evaluated / "evaluate").glob("*.*")}
    cli("merge", "--work-dir", str(evaluated))
    from n2g_site.evaluate import rebuild_tables

    rebuild_tables(work, [0])
    assert {p: p.read_bytes() for p in (evaluated / "evaluate").glob("*.*")} == before


def test_render_shows_bottom_examples_negative_shading_and_the_negative_graph(evaluated, mined, tmp_path):
    work = _copy((evaluated, mined[1]), tmp_path / "work")
    cli("render", *RUN[:2], "--corpus", str(mined[1]), "--work-dir", str(work))
    pack = [orjson.loads(line) for line in (work / "fragments" / "neurons" / "L0.jsonl").read_bytes().splitlines()]
    bodies = {entry["url"]: entry["body"] for entry in pack if "url" in entry}
    body = bodies["neurons/L0/N0/"]
    assert 'id="negative"' in body and "Bottom training examples" in body
    assert len(re.findall(r'<div class="n2g-ex" id=b\d', body)) == 2  # a negative graph: two bottom windows
    assert "<i class=b" in body or '<i class="b' in body  # negative tokens shaded on the diverging scale
    assert "n2g-neg-graph" in body and "goes negative on" in body
    # the token search lists the negative graphs' tokens apart, as kind "n"
    from n2g_site.render.search_index import read_script

    shards = [read_script(p.read_text(encoding="utf-8")) for p in (work / "docs" / "token-search").glob("tokens-*.js")]
    negative = [row for shard in shards for entry in shard.values() for row in entry.get("n", [])]
    graphs = {n: read_json(WorkDir(work).fitted(0, n, "negative"))["graph"] for n in NEURONS}
    assert {row[1] for row in negative} == {n for n, g in graphs.items() if g["nodes"]}
    assert all(row[0] == 0 and row[2] > 0 for row in negative), negative


def test_fit_both_on_a_work_dir_mined_before_bottom_windows_says_what_to_do(mined, tmp_path):
    work = _copy(mined, tmp_path / "old")
    path = WorkDir(work).mined(0)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if not k.startswith("bottom_") and k not in ("format",)}
    np.savez_compressed(path, **arrays)
    result = CliRunner().invoke(
        app, ["fit", *RUN, "--corpus", str(mined[1]), *FIT, "--work-dir", str(work), "--polarity", "both"]
    )
    assert result.exit_code == 2
    assert "no bottom windows" in result.output and "--polarity positive" in result.output
