"""Issue 9 in a real browser (Debian chromium, headless): the JS graph predictor equals the Python one, the
playground highlights a trigger typed by the reader, pattern search finds neurons with known rules, no
request leaves the site, and the offline bundle works from file://."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from n2g_site.n2g.graph import Graph, Node, normalise
from n2g_site.n2g.predict import KeyIndex, Predictor
from n2g_site.render.export import graph_from_record
from n2g_site.render.playground import key_ids, patterns
from n2g_site.resources import builtin_path
from n2g_site.store import WorkDir, read_json, write_json
from render_fixtures import big_graph, make_workdir, small_graph
from sitebuild import run_cli, serve
from synthetic import VOCAB as TOY
from synthetic import SyntheticSource, paris_after_in, paris_after_two, paris_anywhere, task_from_texts
from test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (scripts/setup.sh --test installs it)"
)

PLAYGROUND_JS = (builtin_path("templates") / "assets" / "playground.js").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def tab(browser):
    context = browser.new_context()
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("dialog", lambda dialog: (page.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    yield page
    context.close()


# ------------------------------------------------------------------------- predictor parity (JS = Python)


def _oracle_graphs() -> list[Graph]:
    """Graphs fitted by the real N2G fit on synthetic neurons with known rules (tests/synthetic.py)."""
    from n2g_site.config import FitConfig
    from n2g_site.n2g.phases import fit_neurons

    texts = [
        " He lives in Paris and visited London.",
        " She was born in Paris on Monday.",
        " the city in Paris is beautiful.",
        " He went to Paris from London and lives in Paris.",
    ]
    out = []
    for rule in (paris_after_in, paris_after_two, paris_anywhere):
        source = SyntheticSource({(0, 1): rule})
        [fitted] = fit_neurons([task_from_texts(source, 0, 1, texts)], source, FitConfig(augmenter="none"), TOY, None)
        out.append(fitted.graph)
    return out


def _random_graph(rng: np.random.Generator, words: list[str]) -> Graph:
    """A random trie over ``words`` with ignore nodes, several depths and ties in values."""
    nodes: list[Node] = []
    for _ in range(int(rng.integers(2, 5))):
        word = str(rng.choice(words))
        end = [None, 0.6, 0.75][int(rng.integers(3))]
        root = Node(len(nodes), -1, 0, normalise(word), word, 1.0, 0.9, end, 1)
        if any(n.parent == -1 and n.key == root.key for n in nodes):
            continue
        nodes.append(root)
        frontier = [root]
        for _ in range(int(rng.integers(0, 6))):
            parent = frontier[int(rng.integers(len(frontier)))]
            if parent.depth >= 4:
                continue
            token = "" if rng.random() < 0.25 else str(rng.choice(words))
            key = normalise(token) if token else None
            if any(n.parent == parent.id and n.key == key for n in nodes):
                continue
            node = Node(
                len(nodes),
                parent.id,
                parent.depth + 1,
                key,
                token,
                0.8,
                0.0,
                float(rng.choice([0.55, 0.7, 0.9, 1.0])),
                1,
            )
            nodes.append(node)
            frontier.append(node)
        if all(n.end is None for n in nodes if n.id >= root.id):
            root.end = 0.5
    return Graph(nodes)


def test_js_predictor_equals_python_on_1000_sequences(tab) -> None:
    vocab = TOY.text  # a small vocabulary, so graph tokens occur often in random sequences
    keys = KeyIndex(vocab)
    rng = np.random.default_rng(7)
    graphs = _oracle_graphs() + [
        Graph.from_json({"schema": "n2g-site/graph/1", "nodes": small_graph()}),
        Graph.from_json({"schema": "n2g-site/graph/1", "nodes": big_graph(6)}),
    ]
    graphs += [_random_graph(rng, vocab[2:]) for _ in range(5)]
    tab.set_content(f"<script>{PLAYGROUND_JS}</script>")
    key_table = [normalise(t) for t in vocab]
    compared = hits = packed = 0
    for graph in graphs:
        seqs = [rng.integers(-1, len(vocab) + 2, int(rng.integers(1, 40))).tolist() for _ in range(100)]
        want = [Predictor(graph, keys)(np.array(s)).tolist() for s in seqs]
        as_ids = patterns(graph, ids=key_ids(vocab))
        packed += "p" in as_ids
        for data in (patterns(graph), as_ids):  # keys as text (JSON lists), then as token ids (packed when exact)
            got = tab.evaluate(
                "([g, keys, seqs]) => { const p = window.n2gPlayground.compile(g, keys); return seqs.map(s => p(s)); }",
                [data, key_table, seqs],
            )
            assert got == want  # exact: the same float values, not approximately
        compared += len(seqs)
        hits += sum(v > 0 for w in want for v in w)
    assert compared >= 1000
    assert hits >= 500  # the sequences exercise the patterns: many positions match one
    assert packed >= len(graphs) // 2  # the packed trie (render/playground.py pack_trie) was compared too


# ------------------------------------------------------------------------------------ a built site


@pytest.fixture(scope="module")
def tiny_site(served_tiny_site):
    """(root, url, origin): the tiny random model's site (with its tokenizer, hence a playground), built with
    --zip, served from a sub-path; shared with test_browser.py (conftest.served_tiny_site)."""
    return served_tiny_site.root, served_tiny_site.url, served_tiny_site.origin


def _trigger_case(root: Path, site: str = "sub", work_dir: str = "work") -> tuple[int, int, str, list[str]]:
    """A fitted neuron, a text from its top example, and the tokens its graph predicts to fire there."""
    from n2g_site.models import embedded_tokenizer

    work = WorkDir(root / work_dir)
    vocab = work.load_vocab()
    tok = embedded_tokenizer()
    keys = KeyIndex(vocab)
    records = []
    for path in sorted((root / site / "export").glob("layer_*.jsonl.gz")):  # every neuron's record, per layer
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            records += [json.loads(line) for line in lines]
    for record in records:
        if not record["graph"] or not record["examples"]:
            continue
        example = record["examples"][0]
        text = "".join(vocab[i] for i in example["token_ids"] if i != 0)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        bos = vocab.index("<|endoftext|>")  # the playground reads the text as a document: after doc-start
        graph = Graph.from_json(
            graph_from_record(record["graph"], vocab)
        )  # the record's columns as the fit file's nodes
        pred = Predictor(graph, keys)(np.array([bos, *ids]))[1:]
        firing = [vocab[i] for i, v in zip(ids, pred) if v >= 0.5]
        if firing:
            return record["layer"], record["neuron"], text, firing
    raise AssertionError("no fitted neuron fires on its own top example")


def check_playground(tab, url: str, root: Path, site: str = "sub", work_dir: str = "work") -> None:
    """Type a text with a neuron's trigger into its playground: exactly the tokens the Python predictor says
    fire are highlighted as firing."""
    layer, neuron, text, firing = _trigger_case(root, site, work_dir)
    tab.goto(f"{url}neurons/L{layer}/N{neuron}/")
    tab.locator(".n2g-pg-input").fill(text)
    tab.locator(".n2g-pg-out span").first.wait_for(timeout=60_000)
    highlighted = tab.evaluate("""() => [...document.querySelectorAll('.n2g-pg-out span')]
        .filter(s => Number(s.dataset.value) >= 0.5).map(s => s.textContent)""")
    assert highlighted == [t.replace("\n", "⏎").replace("\t", "⇥").replace("\r", "↵") for t in firing]
    assert "predicts firing" in tab.locator(".n2g-pg-status").inner_text()


def test_playground_highlights_the_trigger_typed_by_the_reader(tiny_site, tab) -> None:
    root, url, _ = tiny_site
    check_playground(tab, url, root)
    box = tab.locator(".n2g-pg-input")
    box.fill("<script>alert(1)</script>")  # the reader's text is text, never markup
    tab.wait_for_function("() => document.querySelector('.n2g-pg-out').textContent.includes('alert')")
    assert tab.locator(".n2g-pg-out script").count() == 0
    assert tab.errors == []


def test_no_request_leaves_the_site(tiny_site, tab) -> None:
    root, url, origin = tiny_site
    layer, neuron, text, _ = _trigger_case(root)
    requests: list[str] = []
    tab.on("request", lambda r: requests.append(r.url))
    for path in ("", "layers/L0/", "patterns/?fires=paris", "reading/", "fidelity/", f"neurons/L{layer}/N{neuron}/"):
        tab.goto(url + path)
        tab.wait_for_load_state("networkidle")
    tab.locator(".n2g-pg-input").fill(text)  # loads the tokenizer and its data
    tab.locator(".n2g-pg-out span").first.wait_for(timeout=30_000)
    tab.locator(".n2g-ts-input").fill("paris")  # token search shards and summaries
    tab.wait_for_load_state("networkidle")
    assert requests and all(r.startswith(origin + "/") for r in requests), [
        r for r in requests if not r.startswith(origin)
    ]
    assert any("playground/tokenizer.js" in r for r in requests) and any("token-search/tokens-" in r for r in requests)


def test_offline_bundle_works_from_file(tiny_site, tab, tmp_path) -> None:
    root, _, _ = tiny_site
    archive = root / "sub.zip"
    assert archive.is_file()
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path)
    site = tmp_path / "sub"
    layer, neuron, text, firing = _trigger_case(root)
    requests: list[str] = []
    tab.on("request", lambda r: requests.append(r.url))
    tab.goto((site / "index.html").as_uri())
    tab.locator("a[href$='layers/L0/']").first.click()  # a directory link, fixed up for file://
    tab.wait_for_url("**/layers/L0/index.html")
    tab.goto((site / "neurons" / f"L{layer}" / f"N{neuron}" / "index.html").as_uri())
    assert tab.locator(".n2g-figure svg").count() == 1
    tab.locator(".n2g-pg-input").fill(text)
    tab.wait_for_function(
        "() => [...document.querySelectorAll('.n2g-pg-out span')].some(s => Number(s.dataset.value) >= 0.5)",
        timeout=30_000,
    )
    tab.locator(".n2g-ts-input").fill(firing[0].strip() or firing[0])
    tab.locator(".n2g-ts-panel a").first.wait_for(timeout=10_000)
    tab.goto((site / "index.html").as_uri())  # Material's prose search: worker shim + search_index.js
    tab.locator("input.md-search__input").click()
    tab.keyboard.type("graph", delay=30)  # Material's search listens to key events
    tab.locator(".md-search-result__item").first.wait_for(timeout=15_000)
    assert all(r.startswith("file://") for r in requests), [r for r in requests if not r.startswith("file://")]
    assert tab.errors == []


# ------------------------------------------------------------------- pattern search on known rules


@pytest.fixture(scope="module")
def rule_site(tmp_path_factory):
    """A site whose graphs were fitted by N2G on synthetic neurons with known rules:
    L0 N0 ' Paris' right after ' in', L0 N3 ' Paris' anywhere, L3 N3 ' Paris' two tokens after ' in' (see
    tests/synthetic.py); L3 N17 keeps the fixture's wide graph (' Paris', ' London', ' France' after many
    other tokens)."""
    from n2g_site.config import FitConfig
    from n2g_site.n2g.phases import fit_neurons

    root = tmp_path_factory.mktemp("rules")
    work = make_workdir(root / "work")
    texts = [
        " He lives in Paris and visited London.",
        " She was born in Paris on Monday.",
        " the city in Paris is beautiful.",
        " He went to Paris from London and lives in Paris.",
    ]
    skipped = [" He lives in a Paris.", " She was in the Paris on Monday.", " born in big Paris and London."]
    rules = {
        (0, 0): (paris_after_in, texts, [["paris", "in"]]),
        (0, 3): (paris_anywhere, texts, [["paris"]]),
        (3, 3): (paris_after_two, skipped, [["paris", None, "in"]]),
    }
    for (layer, neuron), (rule, train, expected) in rules.items():
        source = SyntheticSource({(layer, neuron): rule})
        [fitted] = fit_neurons(
            [task_from_texts(source, layer, neuron, train)], source, FitConfig(augmenter="none"), TOY, None
        )
        assert [keys for keys, _ in fitted.graph.patterns()] == expected
        fit = read_json(work.fitted(layer, neuron))
        fit["graph"] = fitted.graph.to_json()
        write_json(work.fitted(layer, neuron), fit)
    with serve(root) as origin:
        url = f"{origin}/sub/"
        run_cli("render", "--work-dir", str(work.root))
        run_cli("publish", "--work-dir", str(work.root), "--site-dir", str(root / "sub"), "--site-url", url)
        yield url


def _pattern_results(tab, url: str, query: str) -> set[tuple[int, int]]:
    tab.goto(f"{url}patterns/?{query}")
    tab.locator(".n2g-pattern-count").wait_for(timeout=10_000)
    links = tab.evaluate("() => [...document.querySelectorAll('.n2g-pattern-list a')].map(a => a.href)")
    out = set()
    for href in links:
        layer, neuron = href.rstrip("/").split("/")[-2:]
        out.add((int(layer[1:]), int(neuron[1:])))
    return out


def test_pattern_search_finds_neurons_by_rule(rule_site, tab) -> None:
    every_paris = _pattern_results(tab, rule_site, "fires=Paris")
    assert {(0, 0), (0, 3), (3, 3), (3, 17)} <= every_paris
    assert _pattern_results(tab, rule_site, "fires=paris&before=in") == {(0, 0), (3, 3)}
    assert _pattern_results(tab, rule_site, "fires=%20PARIS%20&before=%20In") == {(0, 0), (3, 3)}  # folded
    assert _pattern_results(tab, rule_site, "fires=Paris&before=London") == set()
    in_context = _pattern_results(tab, rule_site, "before=in")
    assert {(0, 0), (3, 3)} <= in_context and (0, 3) not in in_context
    assert "fires on" in tab.locator(".n2g-pattern-list").inner_text()  # summaries next to the results
    assert tab.errors == []


TOKENIZER_TEXTS = [
    "Hello World",
    "In Paris the <script>alert(1)</script> museums open at nine.",
    "Tabs\tand\nnewlines, 中文 and emoji 😀.",
    "  double  spaces   and 12345 numbers 3.14",
    "<|endoftext|> special",
    "Ünïcödé ÀÉÎ façade naïve",
    "def f(x):\n    return x**2\n",
    "'quotes' \"double\" — dashes… ellipsis",
    "don't won't they're I'll",
    "\u202eRTL\u202c مرحبا",
]


def test_browser_tokenizer_gives_the_python_tokenizer_ids(tiny_site, tab) -> None:
    from n2g_site.models import embedded_tokenizer

    _, url, _ = tiny_site
    tab.goto(url)
    got = tab.evaluate(
        "async (texts) => { const tk = await window.n2gPlayground.tokenizer();"
        " return texts.map(t => tk.tokenizer.encode(t, {add_special_tokens: false}).ids); }",
        TOKENIZER_TEXTS,
    )
    tok = embedded_tokenizer()
    assert got == [tok(t, add_special_tokens=False)["input_ids"] for t in TOKENIZER_TEXTS]
    # the doc-start token the playground puts before the reader's text, as mine did before every document
    assert tab.evaluate("async () => (await window.n2gPlayground.tokenizer()).bos") == tok.convert_tokens_to_ids(
        "<|endoftext|>"
    )


def test_a_proto_token_survives_the_data_loader(tab, tmp_path) -> None:
    """Data files hand over JSON text: a token "__proto__" (real in code vocabularies) stays a key."""
    from n2g_site.render.search_index import script

    (tmp_path / "assets").mkdir()
    (tmp_path / "token-search").mkdir()
    (tmp_path / "assets" / "n2g.js").write_text((builtin_path("templates") / "assets" / "n2g.js").read_text())
    (tmp_path / "token-search" / "tokens-000.js").write_text(
        script("token-search/tokens-000", '{"__proto__":{"t":["__proto__"],"a":[],"c":[],"na":0,"nc":0}}')
    )
    (tmp_path / "index.html").write_text('<script src="assets/n2g.js"></script>')
    tab.goto((tmp_path / "index.html").as_uri())
    keys = tab.evaluate("async () => Object.keys(await window.n2gLoad('token-search/tokens-000'))")
    assert keys == ["__proto__"]
