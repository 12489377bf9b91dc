"""Two builds with the same inputs and seed give byte-identical neuron data and neuron pages.

Exports carry the build date (render/guide.py): both builds set SOURCE_DATE_EPOCH, as a reproducible build
would, so they compare byte for byte; the pages that show the date are also compared with it masked."""

import re
from pathlib import Path

import pytest

from sitebuild import build_tiny

pytestmark = pytest.mark.slow
DATE = re.compile(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?( UTC)?)?")


def build(root: Path, corpus: Path) -> tuple[Path, Path]:
    return build_tiny(root, corpus, "--neurons", "0-3", "--top-k", "4")


def test_two_builds_are_byte_identical(tmp_path, text_corpus, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    (work_a, site_a), (work_b, site_b) = build(tmp_path / "a", text_corpus), build(tmp_path / "b", text_corpus)
    compared = 0
    for left, right, patterns in (
        (
            work_a,
            work_b,
            ("fit/**/*.json", "evaluate/**/*.json", "evaluate/*.csv", "mine/*.npz", "corpus.json", "relate/*.json"),
        ),
        (
            site_a,
            site_b,
            ("neurons/**/*.html", "neurons/**/*.json", "layers/**/*.html", "export/*", "token-search/**/*"),
        ),
    ):
        for pattern in patterns:
            files = sorted(p.relative_to(left) for p in left.glob(pattern) if p.is_file())
            assert files == sorted(p.relative_to(right) for p in right.glob(pattern) if p.is_file()), pattern
            for rel in files:
                assert (left / rel).read_bytes() == (right / rel).read_bytes(), rel
                compared += 1
    assert compared > 30
    # pages with the build date: identical once the date is masked
    for page in (
        "index.html",
        "fidelity/index.html",
        "reading/index.html",
        "method/index.html",
        "model/index.html",
        "cite/index.html",
        "data/index.html",
    ):
        left, right = ((site / page).read_text(encoding="utf-8") for site in (site_a, site_b))
        assert DATE.sub("DATE", left) == DATE.sub("DATE", right), page
