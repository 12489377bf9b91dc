"""The fit's training windows with a band sample (fit._tasks, fit.band_rule): a synthetic neuron with a strong
and a moderate trigger, whose top windows all hold the strong one; and --paper's graphs unchanged by a band
sample in the mined file."""

from dataclasses import replace

import numpy as np

from n2g_site.config import Config, FitConfig, MineConfig
from n2g_site.fit import _tasks, band_rule, fit, training_windows
from n2g_site.mine import mine
from n2g_site.n2g.phases import fit_neurons
from n2g_site.store import ExampleSet, LayerStats, MinedLayer, WorkDir, read_json
from synthetic import ID, VOCAB, SyntheticSource, encode

NEURON = 7


def strong_and_moderate(tokens, t: int) -> float:
    """1.0 on ' Paris' after ' in' (strong), 0.6 on ' London' (moderate: above half the max), else 0."""
    if tokens[t] == ID[" Paris"] and t > 0 and tokens[t - 1] == ID[" in"]:
        return 1.0
    return 0.6 if tokens[t] == ID[" London"] else 0.0


STRONG = [" He lives in Paris.", " She was born in Paris on Monday.", " the city in Paris is big.", " a city in Paris."]
MODERATE = [" He visited London.", " She went to London on Monday.", " the big London."]
WEAK = [" He lives near the city."]


def example_set(texts: list[str], docs: list[int], width: int = 12) -> ExampleSet:
    """One neuron's windows of ``texts`` (documents ``docs``), highest peak first."""
    source = SyntheticSource({(0, NEURON): strong_and_moderate})
    ex = ExampleSet.empty(1, len(texts), width)
    rows = []
    for doc, text in zip(docs, texts, strict=True):
        tokens = np.array([VOCAB.bos_id] + encode(text))
        acts = source.activations(0, NEURON, tokens)
        rows.append((float(acts[1:].max()), doc, tokens, acts, 1 + int(np.argmax(acts[1:]))))
    rows.sort(key=lambda r: -r[0])
    for slot, (value, doc, tokens, acts, pivot) in enumerate(rows):
        n = min(len(tokens), width)
        ex.tokens[0, slot, :n], ex.acts[0, slot, :n] = tokens[:n], acts[:n]
        ex.doc[0, slot], ex.pivot[0, slot], ex.value[0, slot] = doc, pivot, value
    return ex


def layer(band: bool) -> MinedLayer:
    stats = LayerStats(
        max=np.ones(8, np.float32),
        min=np.zeros(8, np.float32),
        mean=np.zeros(8, np.float32),
        hist=np.zeros((8, 83), np.int64),
        tokens=100,
    )
    top = example_set(STRONG, [0, 1, 2, 3])
    sample = example_set(STRONG[:1] + MODERATE + WEAK, [0, 11, 12, 13, 14])  # its strong window is a top one
    return MinedLayer(0, np.array([NEURON]), top, top, stats, band_train=sample if band else None)


def fitted_patterns(mined: MinedLayer, share: float | None) -> tuple[list, list]:
    source = SyntheticSource({(0, NEURON): strong_and_moderate})
    [task] = _tasks(mined, [NEURON], 10, "positive", share)
    [result] = fit_neurons([task], source, FitConfig(augmenter="none"), VOCAB, None)
    return [k for k, _ in result.graph.patterns()], training_windows(task)


def test_the_moderate_trigger_is_learnt_from_the_band_sample_and_paper_keeps_the_top_windows():
    default, used = fitted_patterns(layer(band=True), band_rule(Config()))
    paper, paper_used = fitted_patterns(layer(band=True), band_rule(Config(fit=FitConfig(paper=True))))
    assert band_rule(Config()) == 0.5 and band_rule(Config(fit=FitConfig(paper=True))) is None
    assert ["london"] in default and ["paris", "in"] in default  # patterns read from the activating token back
    assert ["london"] not in paper and ["paris", "in"] in paper
    # the band windows that joined: the three moderate ones (0.6 >= 0.5 x 1.0); not the weak one, not the strong
    # one the top windows already hold
    assert [w["set"] for w in used] == ["top"] * 4 + ["band"] * 3
    assert [w["value"] for w in used if w["set"] == "band"] == [0.6] * 3
    assert all(w["set"] == "top" for w in paper_used) and len(paper_used) == 4
    assert fitted_patterns(layer(band=False), 0.5)[0] == paper  # no band sample: the top windows only


def test_paper_graphs_are_the_same_bytes_with_or_without_a_band_sample(tiny_model, tmp_path):
    base = Config(
        model="random:tiny",
        corpus="wiki",
        layers="0",
        neurons="0-3",
        checkpoint_seconds=1e9,
        mine=MineConfig(top_k=4, max_tokens=4000, batch_tokens=256, ordinary_tokens=256),
        fit=FitConfig(paper=True, augmenter="none", train_examples=3),
    )
    graphs = []
    for band in (16, 0):
        root = tmp_path / f"band{band}"
        cfg = replace(base, work_dir=root, mine=replace(base.mine, band_windows=band))
        mine(cfg, lambda: tiny_model, WorkDir(root))
        assert (MinedLayer.load(WorkDir(root).mined(0)).band_train is None) == (band == 0)
        fit(cfg, lambda: tiny_model, WorkDir(root))
        files = [read_json(WorkDir(root).fitted(0, n)) for n in range(4)]
        assert all(w["set"] == "top" for f in files for w in f["training_windows"])
        graphs.append([(f["graph"], f["examples"]) for f in files])
    assert graphs[0] == graphs[1]
    default = replace(base, work_dir=tmp_path / "band16", fit=replace(base.fit, paper=False))
    fit(default, lambda: tiny_model, WorkDir(tmp_path / "band16"))  # the default mode takes band windows too
    sets = [
        w["set"] for n in range(4) for w in read_json(WorkDir(tmp_path / "band16").fitted(0, n))["training_windows"]
    ]
    assert "band" in sets


def test_pages_and_records_show_one_band_window_per_band(tiny_model, tmp_path):
    """A default-mode fit of a band-mined layer, rendered: the page lists its bands (lowest first, no JavaScript
    needed: the highlight is classes), and the export record's ``bands`` validate and match the page."""
    import gzip
    import json

    from n2g_site.render import render_site
    from n2g_site.render.neuron import PAGE_BANDS
    from n2g_site.schemas import validate
    from n2g_site.store import BAND_EDGES

    root = tmp_path / "work"
    cfg = Config(
        model="random:tiny",
        corpus="wiki",
        layers="0",
        neurons="0-3",
        work_dir=root,
        checkpoint_seconds=1e9,
        mine=MineConfig(top_k=4, max_tokens=4000, batch_tokens=256, ordinary_tokens=256),
        fit=FitConfig(augmenter="none", train_examples=3, calibration_tokens=0),
    )
    mine(cfg, lambda: tiny_model, WorkDir(root))
    fit(cfg, lambda: tiny_model, WorkDir(root))
    render_site(cfg, WorkDir(root))
    with gzip.open(root / "docs" / "export" / "layer_00.jsonl.gz", "rt") as f:
        records = [json.loads(line) for line in f]
    pages = {
        json.loads(line)["url"]: json.loads(line)["body"]
        for line in (root / "fragments" / "neurons" / "L0.jsonl").open()
    }
    shown = 0
    for record in records:
        validate(record, "neuron")
        assert record["schema"] == "n2g-site/neuron/4" and isinstance(record["bands"], list)
        edges = [b["band"] for b in record["bands"]]
        assert edges == sorted(set(edges)) and set(edges) <= set(BAND_EDGES)
        for b in record["bands"]:
            assert b["band"] <= b["value"] / record["max_activation"] + 1e-6
        body = pages[record["page"]]
        on_page = [e for e in edges if e < BAND_EDGES[PAGE_BANDS]]
        assert body.count("<li><b>") == len(on_page) and (('id="bands"' in body) == bool(on_page))
        shown += len(on_page)
    assert shown > 0


def test_format_2_files_load_without_a_band_sample_and_say_why(tmp_path):
    layer(band=True).save(tmp_path / "new.npz")
    new = MinedLayer.load(tmp_path / "new.npz")
    assert new.version == 3 and new.band_note == "" and new.band_train is not None
    np.testing.assert_array_equal(new.band_train.value, layer(band=True).band_train.value)
    with np.load(tmp_path / "new.npz") as z:
        old = {k: z[k] for k in z.files if not k.startswith("band_")}
    np.savez(tmp_path / "none.npz", **old)  # format 3 mined with --band-windows 0
    assert MinedLayer.load(tmp_path / "none.npz").band_note == "mined with --band-windows 0"
    np.savez(tmp_path / "old.npz", **{**old, "format": np.array(2)})
    two = MinedLayer.load(tmp_path / "old.npz")
    assert two.band_train is None and two.band_heldout is None and "format 2, before band samples" in two.band_note
    assert fitted_patterns(two, 0.5)[0] == fitted_patterns(layer(band=True), None)[0]  # the top windows only
