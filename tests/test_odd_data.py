"""Odd text through the whole pipeline: one-token documents, whitespace and control characters, right-to-left
scripts, emoji, markup, documents longer than the model's context. The build finishes and shows the text."""

import html
import json

from n2g_site.store import read_json
from sitebuild import build_tiny, write_corpus


def test_odd_documents_build_and_render_as_text(tmp_path):
    docs = {
        "one-token.txt": "A",
        "whitespace.txt": " \t \n  ",  # only whitespace: not a document
        "control.txt": "bell\x07 and escape\x1b[31m red \x00 nul, tab\tand\r\nnewlines\n\n",
        "rtl.txt": "שלום עולם, مرحبا بالعالم. " * 20,
        "emoji.txt": "😀 party 🎉 time, 👩‍👩‍👧 family; flags 🇫🇷 🇬🇧. " * 20,
        "markup.txt": "<script>alert(1)</script> & \"quotes\" 'single' <b>bold</b> &amp; " * 20,
        "long.txt": "A very long document about rivers and seas that goes on and on. " * 120,  # > n_ctx 256
    }
    corpus = write_corpus(tmp_path / "corpus", docs)
    (corpus / "lines.jsonl").write_text(
        "\n".join(
            json.dumps({"id": f"j{i}", "title": f"<i>title {i}</i>", "text": f"Line {i}: Paris in spring."})
            for i in range(12)
        )
        + "\n",
        encoding="utf-8",
    )
    work, site = build_tiny(tmp_path, corpus, "--neurons", "0-3", "--top-k", "3", "--seq-len", "64")
    index = read_json(work / "corpus.json")
    assert "whitespace.txt" not in {d["id"] for d in index} and "one-token.txt" in {d["id"] for d in index}
    pages = [p.read_text(encoding="utf-8") for p in (site / "neurons").rglob("index.html")]
    assert len(pages) == 8
    text = html.unescape(" ".join(pages))
    assert "<script>alert" not in " ".join(pages)  # markup in the corpus never reaches the page as markup
    seen = [s for s in ("שלום", "مرحبا", "😀", "script", "Paris", "rivers") if s in text]
    assert len(seen) >= 2, seen  # random neurons peak somewhere in this text; it shows as text
