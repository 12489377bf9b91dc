"""The export record's negative side (schema n2g-site/neuron/4) on the tiny model: the bottom windows the page
shows and those the negative graph was fitted on, scaled by A_min; the negative graph in columns, its fit and
its evaluate scores; only what the work dir has."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from n2g_site.cli import app
from n2g_site.render import export
from n2g_site.render.neuron import DATA_AFTER, DATA_BEFORE, PAGE_BOTTOM_EXAMPLES
from n2g_site.schemas import validate
from n2g_site.store import MinedLayer, WorkDir, read_json

NEURONS = range(4)
RUN = ["--model", "random:tiny", "--layers", "0", "--neurons", "0-3"]
TEXTS = [
    "The cat sat on the mat in Paris. It was a sunny day in the city.",
    "She moved to London in 1999 and worked as a teacher at a school.",
    "Rivers flow into the sea; the sea is salty and deep.",
    "In Paris the museums open at nine. Tourists queue in Paris every day.",
    "Numbers: 1, 2, 3 and 42. Rome is in Italy; Paris is in France.",
    "The king of the north rode a horse across the frozen river at dawn.",
    "Music and maths share patterns: scales, rhythms, ratios and proofs.",
    "Ships sail from the harbour when the tide turns, loaded with coins.",
    "Trees grow slowly in the cold; their rings count the years of winter.",
]


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, Path]:
    """mine (top-k 5) -> fit --polarity both -> evaluate -> render; the work dir and its corpus."""
    root = tmp_path_factory.mktemp("negexport")
    corpus = root / "corpus"
    corpus.mkdir()
    for i, text in enumerate(TEXTS):
        (corpus / f"doc{i}.txt").write_text((text + " ") * 4, encoding="utf-8")
    work = root / "work"
    common = [*RUN, "--corpus", str(corpus), "--work-dir", str(work)]
    cli("mine", *common, "--top-k", "5")
    cli("fit", *common, "--augmenter", "none", "--polarity", "both")
    cli("evaluate", *common)
    cli("render", *RUN[:2], "--corpus", str(corpus), "--work-dir", str(work))
    return work, corpus


def _records(work: Path) -> list[dict]:
    data = gzip.decompress((work / "docs" / "export" / "layer_00.jsonl.gz").read_bytes())
    return [orjson.loads(line) for line in data.splitlines()]


def test_the_record_holds_the_negative_side_the_work_dir_has(rendered):
    work = WorkDir(rendered[0])
    mined = MinedLayer.load(work.mined(0))
    vocab = work.load_vocab()
    records = _records(rendered[0])
    assert [r["neuron"] for r in records] == list(NEURONS)
    more_than_the_page = 0
    for record in records:
        validate(record, "neuron")
        assert record["schema"] == "n2g-site/neuron/4"
        n = record["neuron"]
        neg, fit, evaluated = (
            record["negative"],
            read_json(work.fitted(0, n, "negative")),
            read_json(work.evaluated(0, n, "negative")),
        )
        assert neg["status"] == "fitted" and neg["summary"].startswith("goes negative on")
        a_min = -fit["max_activation"]
        assert neg["min_activation"] == pytest.approx(a_min, rel=1e-5)
        assert neg["graph"] == export.graph_record(fit["graph"], export.token_ids(vocab))
        assert neg["fit"] == export.fit_record(fit)
        assert neg["evaluation"] == {
            "fire_threshold": evaluated["fire_threshold"],
            "ngram": evaluated["ngram"],
            "datasets": evaluated["datasets"],
        }  # no misses: no page shows them for this side
        # the bottom windows: the page's first two and every one the negative graph was fitted on, no others
        fitted = {(e["doc"], e["window_start"]) for e in fit["examples"]}
        windows = mined.bottom_train.windows(mined.row(n))
        want = [
            r for r, w in enumerate(windows) if w.value < 0 and (r < PAGE_BOTTOM_EXAMPLES or (w.doc, w.start) in fitted)
        ]
        assert [e["rank"] for e in neg["examples"]] == want
        more_than_the_page += len(want) > PAGE_BOTTOM_EXAMPLES
        for ex in neg["examples"]:
            w = windows[ex["rank"]]
            lo, hi = max(0, w.pivot - DATA_BEFORE), min(len(w.tokens), w.pivot + DATA_AFTER + 1)
            assert ex["split"] == "bottom" and ex["fitted"] == ((w.doc, w.start) in fitted)
            assert ex["token_ids"] == w.tokens[lo:hi].tolist()
            assert ex["activations"] == export.scaled(w.acts[lo:hi].tolist(), a_min)
            assert ex["activations"][ex["pivot"]] == round(255 * w.value / a_min)
            assert ex["normalised"] == pytest.approx(w.value / a_min, rel=1e-5)
        lowest = neg["examples"][0]  # A_min is the fitted windows' lowest activation: 255 there
        assert max(max(e["activations"]) for e in neg["examples"]) == 255, lowest
        # the positive side is as before
        assert record["graph"] == export.graph_record(read_json(work.fitted(0, n))["graph"], export.token_ids(vocab))
    assert more_than_the_page > 0  # the fit used more windows than the page shows: those are in the data too


def test_the_page_still_shows_two_bottom_windows(rendered):
    pack = [
        orjson.loads(line) for line in (rendered[0] / "fragments" / "neurons" / "L0.jsonl").read_bytes().splitlines()
    ]
    bodies = [entry["body"] for entry in pack if "url" in entry]
    # fitted with --polarity both: every neuron's negative side is strong (it has a graph), two windows
    assert bodies and all(len(re.findall(r'<div class="n2g-ex" id=b\d', b)) == PAGE_BOTTOM_EXAMPLES for b in bodies)


def test_without_a_negative_fit_only_the_pages_bottom_windows_are_exported(rendered, tmp_path):
    work_dir, corpus = rendered
    copy = tmp_path / "work"
    shutil.copytree(work_dir, copy)
    for path in [*copy.glob("fit/L00/*.neg.json"), *copy.glob("evaluate/L00/*.neg.json")]:
        path.unlink()
    cli("render", *RUN[:2], "--corpus", str(corpus), "--work-dir", str(copy))
    for record in _records(copy):
        validate(record, "neuron")
        neg = record["negative"]
        assert neg["status"] == "unfitted" and neg["graph"] is None and neg["fit"] is None
        assert neg["evaluation"] is None and neg["summary"] is None
        assert [e["rank"] for e in neg["examples"]] == list(range(PAGE_BOTTOM_EXAMPLES))
        assert not any(e["fitted"] for e in neg["examples"])


def _gzip_bytes(records: list[dict]) -> int:
    lines = "".join(export.dumps(r) + "\n" for r in records).encode("utf-8")
    return len(gzip.compress(lines, compresslevel=6, mtime=0))


def test_what_the_negative_side_adds_to_the_layer_file(rendered):
    """The added gzip bytes a neuron (printed; run with -s): the layer file with and without ``negative``."""
    records = _records(rendered[0])
    layer_file = rendered[0] / "docs" / "export" / "layer_00.jsonl.gz"
    assert _gzip_bytes(records) == layer_file.stat().st_size  # the same gzip settings as render's
    without = _gzip_bytes([r | {"negative": None} for r in records])
    windows = _gzip_bytes(
        [r | {"negative": r["negative"] | {"graph": None, "fit": None, "evaluation": None}} for r in records]
    )
    added = (_gzip_bytes(records) - without) / len(records)
    print(f"negative side: +{added:.0f} B gzip a neuron ({(windows - without) / len(records):.0f} B of it windows)")
    assert 0 < added < 3000
