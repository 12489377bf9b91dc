"""End to end: `n2g-site build` through the CLI, on the random tiny model (fast) and the embedded model (slow)."""

import gzip
import json
import re
from html.parser import HTMLParser

import pytest

from n2g_site.schemas import validate
from n2g_site.store import read_json
from sitebuild import TINY, build_tiny, run_cli, serve


class _Spans(HTMLParser):
    """Counts highlighted token spans and example blocks in a neuron page."""

    def __init__(self):
        super().__init__()
        self.svg = 0
        self.tokens = 0

    def handle_starttag(self, tag, attrs):
        if tag == "svg":
            self.svg += 1
        classes = (dict(attrs).get("class") or "").split()
        if tag in ("span", "i") and any(re.fullmatch(r"a\d+", c) for c in classes):
            self.tokens += 1


def test_build_random_tiny_end_to_end_and_resume(tmp_path, text_corpus):
    options = ("--neurons", "0-2", "--top-k", "5")
    work, site = build_tiny(tmp_path, text_corpus, *options)
    assert (site / "index.html").exists()
    for layer in (0, 1):
        assert (site / "layers" / f"L{layer}" / "index.html").exists()
        for neuron in range(3):
            page = (site / "neurons" / f"L{layer}" / f"N{neuron}" / "index.html").read_text()
            fit = read_json(work / "fit" / f"L{layer:02d}" / f"N{neuron:05d}.json")
            validate(fit, "neuron-fit")
            assert fit["augmenter"] == "self"  # auto, offline
            parser = _Spans()
            parser.feed(page)
            if fit["status"] == "fitted":
                assert parser.svg >= 1
            assert parser.tokens > 0
    for layer in (0, 1):  # each neuron's record: a line of its layer's export file
        with gzip.open(site / "export" / f"layer_{layer:02d}.jsonl.gz", "rt", encoding="utf-8") as lines:
            records = [json.loads(line) for line in lines]
        assert [r["neuron"] for r in records] == [0, 1, 2]
        for record in records:
            validate(record, "neuron")
    # the evaluate stage scored every neuron against both baselines on both datasets
    summary = read_json(work / "evaluate" / "summary.json")
    assert set(summary["layers"]) == {"0", "1"}
    for layer in (0, 1):
        assert summary["layers"][str(layer)]["layer_neurons"] == 64
        csv_rows = (work / "evaluate" / f"layer_{layer:02d}.csv").read_text().splitlines()
        assert (
            len(csv_rows) - 1
            == sum(
                read_json(work / "evaluate" / f"L{layer:02d}" / f"N{n:05d}.json")["status"] == "fitted"
                for n in range(3)
            )
            * 2
            * 4
        )  # datasets x methods
    # ... and the site shows it: charts on the home and fidelity pages, scores on each fitted neuron's page
    assert (site / "fidelity" / "index.html").read_text().count('class="n2g-chart"') == 6  # 2 datasets x P/R/F1
    assert (site / "index.html").read_text().count('class="n2g-chart"') == 2  # F1 on both datasets
    for layer in (0, 1):
        for neuron in range(3):
            evaluated = read_json(work / "evaluate" / f"L{layer:02d}" / f"N{neuron:05d}.json")
            page = (site / "neurons" / f"L{layer}" / f"N{neuron}" / "index.html").read_text()
            assert ('class="n2g-scores"' in page) == bool(evaluated["datasets"])
            if evaluated["datasets"]:  # methods in the page's order, not the file's sorted one
                table = page[page.index('class="n2g-scores"') :]
                assert (
                    table.index("<td>N2G</td>")
                    < table.index("<td>token lookup (mean)</td>")
                    < table.index("<td>n-gram</td>")
                )
    # a second build does no compute (resume) and gives the same neuron JSON
    before = {p: p.read_bytes() for p in (work / "fit").rglob("*.json")}
    again = run_cli(
        "build", *TINY, "--corpus", str(text_corpus), *options, "--work-dir", str(work), "--site-dir", str(site)
    )
    assert "nothing to do" in again
    assert before == {p: p.read_bytes() for p in (work / "fit").rglob("*.json")}


@pytest.mark.slow
def test_demo_build_on_the_embedded_model_and_corpus(tmp_path):
    """The demo path, shrunk: SmolLM2-135M on Wikipedia text, 2 layers x 2 neurons, 6k tokens."""
    work, site = tmp_path / "work", tmp_path / "site"
    options = ("--layers", "0,29", "--neurons", "0-1", "--max-tokens", "6000", "--top-k", "8")
    run_cli("build", *options, "--work-dir", str(work), "--site-dir", str(site))  # the default model and corpus
    manifest = read_json(work / "run.json")
    assert manifest["model_info"]["n_layers"] == 30 and manifest["model_info"]["d_mlp"] == 1536
    home = (site / "index.html").read_text()
    assert "SmolLM2" in home and "CC BY-SA" in home
    for layer in (0, 29):
        assert (site / "layers" / f"L{layer}" / "index.html").exists()
        for neuron in (0, 1):
            page = (site / "neurons" / f"L{layer}" / f"N{neuron}" / "index.html").read_text()
            parser = _Spans()
            parser.feed(page)
            assert parser.svg >= 1
            # at least 5 highlighted examples of real corpus text
            assert page.count('<div class="n2g-ex"') >= 5
            fit = read_json(work / "fit" / f"L{layer:02d}" / f"N{neuron:05d}.json")
            assert fit["status"] == "fitted" and fit["graph"]["nodes"]
    _playground_on_the_demo_site(tmp_path, site, work)


def _playground_on_the_demo_site(tmp_path, site, work) -> None:
    """Issue 9 on the demo site: a real SmolLM2 neuron's trigger typed into its playground lights up."""
    from test_browser import CHROMIUM, CHROMIUM_ARGS
    from test_playground import check_playground

    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium for the playground check")
    from playwright.sync_api import sync_playwright

    with serve(site.parent) as origin, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        check_playground(
            tab,
            f"{origin}/{site.name}/",
            tmp_path,
            site.relative_to(tmp_path).as_posix(),
            work.relative_to(tmp_path).as_posix(),
        )
        browser.close()
        assert errors == []
