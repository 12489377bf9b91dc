"""The tiny-model site that the integration and browser tests build: a small corpus, ``n2g-site`` run through
the CLI (CliRunner, in-process) on the seeded ``random:tiny`` model, and a local static server.

Each test keeps its own options (sub-path, ``--site-url``, ``--polarity both``, ``--zip``...) and passes them
to :func:`build_tiny`. The browser site shared by test_browser.py and test_playground.py is the session
fixture ``served_tiny_site`` in conftest.py, built once per run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from click.testing import CliRunner

from n2g_site.cli import app

TINY = ("--model", "random:tiny")


def run_cli(*args: str) -> str:
    """``n2g-site ARGS`` in-process; fails the test with the command's output unless it exits 0."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def write_corpus(folder: Path, texts: Iterable[str] | Mapping[str, str], *, repeat: int = 1) -> Path:
    """A folder corpus: ``c{i}.txt`` per text (or the mapping's file names), each text + " " repeated
    ``repeat`` times (``repeat=1``: the text as given), in UTF-8."""
    folder.mkdir(parents=True)
    named = texts.items() if isinstance(texts, Mapping) else ((f"c{i}.txt", t) for i, t in enumerate(texts))
    for name, text in named:
        (folder / name).write_text(text if repeat == 1 else (text + " ") * repeat, encoding="utf-8")
    return folder


def build_tiny(root: Path, corpus: Path, *options: str, site: str = "site") -> tuple[Path, Path]:
    """``n2g-site build --model random:tiny --corpus CORPUS OPTIONS`` into ``root/work`` and ``root/SITE``;
    returns (work dir, site dir)."""
    work, out = root / "work", root / site
    run_cli("build", *TINY, "--corpus", str(corpus), *options, "--work-dir", str(work), "--site-dir", str(out))
    return work, out


class QuietHandler(SimpleHTTPRequestHandler):
    """A static file server that does not log each request."""

    def log_message(self, *args):
        pass


@contextmanager
def serve(root: Path, handler: type[SimpleHTTPRequestHandler] = QuietHandler) -> Iterator[str]:
    """Serve ``root`` at http://127.0.0.1:PORT (a free port) while the block runs; yields that origin. The
    port is known before a site is built, so a build can take its URL as ``--site-url``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class ServedSite:
    root: Path  # holds corpus/, work/ and the site in sub/ (and sub.zip)
    url: str  # the site's URL, http://127.0.0.1:PORT/sub/ (also its --site-url)
    origin: str  # http://127.0.0.1:PORT

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def site(self) -> Path:
        return self.root / "sub"


# The shared browser site's text: markup, quotes, tabs and newlines, CJK and emoji, numbers, place names.
BROWSER_TEXTS = {
    "a.txt": "In Paris the <script>alert(1)</script> museums open at nine. " * 8,
    "b.txt": "Rivers flow into the sea & the sea is deep. " * 8,
    **{
        f"c{i}.txt": (text + " ") * 6
        for i, text in enumerate(
            [
                "The cat sat on the mat in Paris.",
                "She moved to London in 1999.",
                'He said "hello" & left.',
                "Tabs\tand\nnewlines, 中文 and emoji 😀.",
                "Numbers: 1, 2, 3 and 42.",
                "Rome is in Italy; Paris is in France.",
            ]
        )
    },
}


@contextmanager
def served_browser_site(root: Path) -> Iterator[ServedSite]:
    """The tiny model's site, 2 layers x neurons 0-1, top 2 examples, built for and served at
    http://127.0.0.1:PORT/sub/ (``--site-url``), with its offline bundle (``--zip``: sub.zip)."""
    corpus = write_corpus(root / "corpus", BROWSER_TEXTS)
    with serve(root) as origin:
        url = f"{origin}/sub/"
        build_tiny(root, corpus, "--neurons", "0-1", "--top-k", "2", "--site-url", url, "--zip", site="sub")
        yield ServedSite(root, url, origin)
