"""JSON exports: export/layer_LL.jsonl.gz per layer (the only copy of each neuron's record: no neuron.json
next to the pages) with an export/index.json, valid against their schemas, carrying the build metadata,
deterministic, with hostile tokens kept as plain text; each neuron page links its layer's file and line."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from n2g_site.config import Config
from n2g_site.evaluate import METHODS
from n2g_site.publish import publish
from n2g_site.relate import relate
from n2g_site.render import render_site
from n2g_site.render.export import graph_from_record
from n2g_site.schemas import validate
from n2g_site.store import WorkDir, write_json
from render_fixtures import DEAD, HOSTILE, ID, LAYERS, UNFITTED, make_workdir

EPOCH = "1767225600"  # 2026-01-01 UTC: SOURCE_DATE_EPOCH for the renders of this module
SCORE = {
    "tokens": 100,
    "true_firing": 10,
    "predicted_firing": 8,
    "true_positive": 6,
    "precision": 0.75,
    "recall": 0.6,
    "f1": 0.667,
    "correlation": None,
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Config]:
    root = tmp_path_factory.mktemp("export")
    work = make_workdir(root / "work")
    script = ID["<script>alert(1)</script>"]
    for layer, neurons in LAYERS.items():
        write_json(
            work.logit_effects(layer),
            {
                "norm": "final RMSNorm scale folded in",
                "neurons": {
                    str(n): {"up": [[script, 0.91], [ID["\n"], 0.5]], "down": [[ID['"'], -0.7]]} for n in neurons
                },
            },
        )
    relate(None, lambda: pytest.fail("no model needed"), work)
    write_json(
        work.evaluated(0, 0),
        {
            "schema": "n2g-site/neuron-eval/1",
            "layer": 0,
            "neuron": 0,
            "status": "fitted",
            "fire_threshold": 0.5,
            "ngram": 5,
            "datasets": {d: {m: SCORE for m in METHODS} for d in ("heldout", "ordinary")},
        },
    )
    cfg = Config(site_dir=root / "site", site_url="https://example.org/repo/")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", EPOCH)
        render_site(cfg, work)
    return work.root, publish(cfg, work), cfg


def _neurons() -> list[tuple[int, int]]:
    return [(layer, n) for layer in sorted(LAYERS) for n in LAYERS[layer]]


def _record(site: Path, layer: int, neuron: int) -> dict:
    """The neuron's record: the line of its layer's file that its page names."""
    return json.loads(_raw_record(site, layer, neuron))


def _raw_record(site: Path, layer: int, neuron: int) -> str:
    page = (site / "neurons" / f"L{layer}" / f"N{neuron}" / "index.html").read_text(encoding="utf-8")
    line = int(re.search(r"this neuron is line (\d+)", page).group(1))
    return _layer_lines(site)[layer][line - 1]


def test_every_record_validates_against_the_schema(built) -> None:
    _, site, _ = built
    assert not list(site.rglob("neuron.json"))  # written once: in the layer files only
    for layer, neuron in _neurons():
        record = _record(site, layer, neuron)
        validate(record, "neuron")
        assert (record["layer"], record["neuron"]) == (layer, neuron)
        assert record["page"] == f"neurons/L{layer}/N{neuron}/"
        assert (site / record["page"] / "index.html").is_file()


def test_contents_follow_the_work_dir(built) -> None:
    root, site, _ = built
    fitted = _record(site, 0, 0)
    assert fitted["status"] == "fitted" and fitted["graph"]["schema"] == "n2g-site/graph-columns/1"
    fit_file = json.loads(WorkDir(root).fitted(0, 0).read_text(encoding="utf-8"))
    vocab = json.loads((site / "export" / "vocab.json").read_text(encoding="utf-8"))
    assert graph_from_record(fitted["graph"], vocab) == fit_file["graph"]  # the columns give the fit file's nodes back
    assert fitted["fit"]["config"] and fitted["fit"]["heldout"]["f1"] is not None
    assert fitted["evaluation"]["datasets"]["ordinary"]["n2g"]["precision"] == 0.75
    assert {s["layer"] for s in fitted["similar"]} and all(0 <= s["similarity"] <= 1.0001 for s in fitted["similar"])
    assert fitted["logit_effects"]["promoted"][0] == {"token_id": ID["<script>alert(1)</script>"], "value": 0.91}
    splits = [e["split"] for e in fitted["examples"]]
    assert splits == sorted(splits, key=lambda s: s != "train") and "heldout" in splits and "train" in splits
    for ex in fitted["examples"]:
        assert len(ex["token_ids"]) == len(ex["activations"]) and "tokens" not in ex  # strings: export/vocab.json
        assert all(isinstance(a, int) for a in ex["activations"])  # 255 x activation / max_activation
        peak = ex["activations"][ex["pivot"]] * fitted["max_activation"] / 255
        assert peak == pytest.approx(ex["value"], abs=fitted["max_activation"] / 255)
    assert any(e["fitted"] for e in fitted["examples"])
    assert _record(site, 3, 3)["evaluation"] is None  # not evaluated
    dead = _record(site, *DEAD)
    assert dead["status"] == "dead" and dead["graph"] is None and dead["examples"] == []
    unfitted = _record(site, *UNFITTED)
    assert unfitted["status"] == "unfitted" and unfitted["fit"] is None and unfitted["graph"] is None
    assert unfitted["examples"]  # the page shows its mined examples, so does the JSON


def test_hostile_tokens_survive_as_text(built) -> None:
    _, site, _ = built
    seen: set[str] = set()
    vocab = json.loads((site / "export" / "vocab.json").read_text(encoding="utf-8"))
    for layer, neuron in _neurons():
        raw = _raw_record(site, layer, neuron)
        assert raw.count("\n") == 1 and raw.endswith("\n")  # one line: newline tokens are escaped
        for ex in json.loads(raw)["examples"]:
            seen.update(vocab[t] for t in ex["token_ids"])
    assert set(HOSTILE) <= seen  # "<script>", quotes, "&amp;", "\n", "\x07", emoji ... as the exact strings


def _layer_lines(site: Path) -> dict[int, list[str]]:
    index = json.loads((site / "export" / "index.json").read_text(encoding="utf-8"))
    out = {}
    for entry in index["layers"]:
        data = (site / "export" / entry["file"]).read_bytes()
        assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
        out[entry["layer"]] = gzip.decompress(data).decode("utf-8").splitlines(keepends=True)
        assert len(out[entry["layer"]]) == entry["neurons"]
    return out


def test_layer_files_hold_every_neuron_once(built) -> None:
    _, site, _ = built
    assert not (site / "export" / "neurons.jsonl").exists()  # one file per layer instead (~1 GB for a whole model)
    index = json.loads((site / "export" / "index.json").read_text(encoding="utf-8"))
    validate(index, "export-index")
    assert [e["layer"] for e in index["layers"]] == sorted(LAYERS)
    assert [e["file"] for e in index["layers"]] == ["layer_00.jsonl.gz", "layer_03.jsonl.gz"]
    assert index["neurons"] == len(_neurons())
    lines = _layer_lines(site)
    for layer in sorted(LAYERS):
        # str.splitlines also splits on U+2028 / U+0085: none may be raw in a line
        assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines[layer])
        for line, neuron in zip(lines[layer], LAYERS[layer], strict=True):
            record = json.loads(line)
            validate(record, "neuron")
            assert (record["layer"], record["neuron"]) == (layer, neuron)
    for name in ("neuron.schema.json", "graph.schema.json", "build.schema.json", "export-index.schema.json"):
        assert json.loads((site / "export" / name).read_text(encoding="utf-8"))["$id"].startswith("urn:n2g-site:")


def test_records_and_index_carry_the_build_metadata(built) -> None:
    from n2g_site import __version__
    from render_fixtures import MANIFEST

    _, site, _ = built
    index = json.loads((site / "export" / "index.json").read_text(encoding="utf-8"))
    build = index["build"]
    validate(build, "build")
    assert build["date"] == "2026-01-01"  # SOURCE_DATE_EPOCH
    assert build["n2g_site_version"] in (MANIFEST["n2g_site_version"], __version__)
    assert (build["model"], build["corpus"]) == ("smollm2-135m", "wiki")
    assert build["model_name"] == MANIFEST["model_info"]["name"]
    assert build["options"]["mine"] == MANIFEST["mine"]
    assert build["options"]["fit"]["importance_threshold"] == 0.75 and build["augmenter"] == "none"
    assert build["options"]["evaluate"] is None  # the fixture has no evaluate summary
    assert index["vocabulary"] == "vocab.json"
    for layer, neuron in _neurons():
        assert "build" not in _record(site, layer, neuron)  # once, in index.json
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "2026-01-01" in home and build["n2g_site_version"] in home


def test_pages_link_the_downloads(built) -> None:
    _, site, _ = built
    for layer, neuron in _neurons():
        page = (site / "neurons" / f"L{layer}" / f"N{neuron}" / "index.html").read_text(encoding="utf-8")
        link = re.search(r"<a href=\"([^\"]+)\" download>Download layer (\d+)(?:&#39;|')s data</a>", page)
        assert link and link.group(1) == f"../../../export/layer_{layer:02d}.jsonl.gz" and int(link.group(2)) == layer
        assert (site / "neurons" / f"L{layer}" / f"N{neuron}" / link.group(1)).resolve().is_file()
    home = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="export/index.json"' in home and 'href="export/neuron.schema.json"' in home


def test_exports_are_deterministic(built, tmp_path: Path) -> None:
    """Same work dir and build date (SOURCE_DATE_EPOCH) -> the same bytes, gzip files and index included."""
    work_root, site, cfg = built

    def exported(root: Path) -> dict[Path, bytes]:
        return {
            p.relative_to(root): p.read_bytes()
            for p in root.rglob("*.json*")
            if "neuron" in p.name or p.parent.name == "export"
        }

    before = exported(site)
    assert any(p.suffix == ".gz" for p in before) and Path("export/index.json") in before
    copy = tmp_path / "work"
    shutil.copytree(work_root, copy)
    from n2g_site.store import WorkDir

    cfg2 = Config(site_dir=tmp_path / "site", site_url=cfg.site_url)
    monkeypatch = pytest.MonkeyPatch()
    try:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
        render_site(cfg2, WorkDir(copy), jobs=2)
        publish(cfg2, WorkDir(copy))
    finally:
        monkeypatch.undo()
    after = exported(cfg2.site_dir)
    assert before.keys() == after.keys() and before == after


def test_build_date_follows_source_date_epoch(monkeypatch) -> None:
    from n2g_site.config import UserError
    from n2g_site.render import guide

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert guide.build_date() == "1970-01-01"
    with guide.pinned_build_date() as date:
        assert date == "1970-01-01"
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    with guide.pinned_build_date() as date, monkeypatch.context() as mp:  # one date for the whole render
        mp.setattr(guide, "datetime", None)  # a second call, e.g. in a worker after midnight, asks no clock
        assert guide.build_date() == date
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(UserError, match="SOURCE_DATE_EPOCH"):
        guide.build_date()
