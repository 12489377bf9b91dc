"""Neuron pages without one MkDocs page each: one built *shell* page, every neuron poured into it.

MkDocs (Python-Markdown + the Material theme) costs ~3.5 ms per page, serially: 3 minutes for 50,000
neuron pages. Every neuron page has the same frame (header, search box, palette toggle, navigation,
footer, scripts), and all of them sit at the same depth (``neurons/L{l}/N{n}/``), so their relative URLs
are the same. So render writes a single shell page, ``docs/neurons/n2g-shell/page.md``, at that depth
(from ``neuron.md.j2``, with :data:`TITLE` as its title and :data:`BODY` as its body), plus each neuron's
body HTML in ``fragments/`` and the list of pages (:data:`MANIFEST`). MkDocs builds the shell like any
page (the neuron folder is out of the nav and the shell is excluded from the search index by its front
matter); then :func:`write_neuron_pages` (the MkDocs hook's ``on_post_build``, so ``mkdocs serve`` gets
the pages too) splits the built shell around its body marker and writes every neuron page as
prefix + body + suffix, with what is page-specific substituted: the title (``<title>``, header, heading),
the heading's anchor, and the page's own URL (canonical link). It also copies each neuron's data files
(``neuron.json``, a separate ``graph.svg`` for large graphs) from the fragments folder next to its page,
puts the pages in ``sitemap.xml`` (and ``.gz``) in place of the shell, and removes the shell's folder.

Pages are written by worker processes, each a contiguous run of the page list of equal length (so the
work is balanced by neuron count whatever the layers' sizes). Output bytes do not depend on the number
of workers. Standard library only: the workers import nothing heavy.
"""

from __future__ import annotations

import gzip
import html
import json
import multiprocessing
import os
import re
import shutil
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

SHELL_MD = "neurons/n2g-shell/page.md"  # the shell's source, relative to docs/
SHELL_URL = "neurons/n2g-shell/page/"  # its URL (directory URLs), relative to the site root
TITLE = "N2G-SHELL-TITLE"  # the shell's title: replaced by each page's title (HTML-escaped)
BODY = "N2G-NEURON-BODY"  # the shell's body paragraph: replaced by each page's body HTML
BODY_HTML = f"<p>{BODY}</p>"
MANIFEST = "neuron-pages.json"  # in fragments/: {"schema", "shell", "pages": [[url, fragment, title, [files]]]}
SCHEMA = "n2g-site/neuron-pages/1"
PARALLEL_MIN_PAGES = 1000  # below this, one process writes every page


def write_manifest(fragments: Path, pages: Sequence[tuple[str, str, str, Sequence[str]]]) -> None:
    """Render's side: the neuron pages to write, in order: (url, fragment path, title, data files), the
    fragment and data-file paths relative to ``fragments``, the data files copied next to the page."""
    fragments.mkdir(parents=True, exist_ok=True)
    data = {"schema": SCHEMA, "shell": SHELL_URL, "pages": [[u, f, t, list(x)] for u, f, t, x in pages]}
    (fragments / MANIFEST).write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n",
                                      encoding="utf-8")


def _split_shell(shell: str) -> tuple[str, str]:
    if shell.count(BODY_HTML) != 1:
        raise ValueError(f"the built shell page has {shell.count(BODY_HTML)} body markers {BODY_HTML!r}, not 1: "
                         f"neuron.md.j2 must keep its placeholder paragraph on a line of its own")
    prefix, suffix = shell.split(BODY_HTML)
    return _squeeze(prefix), _squeeze(suffix)


_BLANKS = re.compile(r"[ \t\r]*\n\s*")


def _squeeze(part: str) -> str:
    """The theme's frame without its indentation and blank lines (1-5 KB less a page): every run of
    white space that holds a line break becomes one line break, which HTML renders the same (and scripts
    read the same: line breaks are kept). Left alone where white space matters (``<pre>``, ``<textarea>``)."""
    if "<pre" in part or "<textarea" in part:
        return part
    return _BLANKS.sub("\n", part)


def _page_parts(prefix: str, suffix: str, url: str, title: str, slug: str) -> tuple[str, str]:
    title_html = html.escape(title, quote=True)
    out = []
    for part in (prefix, suffix):
        part = part.replace(TITLE.lower(), slug).replace(TITLE, title_html).replace(SHELL_URL, url)
        out.append(part)
    return out[0], out[1]


def _write_chunk(args: tuple[str, str, str, str, list[list[Any]], list[str]]) -> int:
    site, fragments, prefix, suffix, pages, slugs = args
    site_dir, frag_dir = Path(site), Path(fragments)
    made: set[Path] = set()
    for (url, fragment, title, files), slug in zip(pages, slugs, strict=True):
        folder = site_dir / url
        if folder not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(folder)
        try:
            body = (frag_dir / fragment).read_text(encoding="utf-8")
        except FileNotFoundError:
            body = "<p><em>This part of the page was not rendered.</em></p>"
        head, tail = _page_parts(prefix, suffix, url, title, slug)
        (folder / "index.html").write_text(head + body + tail, encoding="utf-8")
        for rel in files:
            src = frag_dir / rel
            if src.is_file():
                shutil.copyfile(src, folder / Path(rel).name)
    return len(pages)


def _sitemap(site: Path, urls: Sequence[str]) -> None:
    """Replace the shell's ``<url>`` entry of sitemap.xml (and .gz, same timestamp) by one per page."""
    path = site / "sitemap.xml"
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    match = re.search(r"[ \t]*<url>(?:(?!</url>).)*?" + re.escape(SHELL_URL) + r".*?</url>\n?", text, re.S)
    if match is None:
        return
    entry = match.group(0)
    text = text[: match.start()] + "".join(entry.replace(SHELL_URL, u) for u in urls) + text[match.end():]
    path.write_text(text, encoding="utf-8")
    gz = site / "sitemap.xml.gz"
    if gz.is_file():
        head = gz.read_bytes()[:8]
        mtime = struct.unpack("<I", head[4:8])[0] if len(head) == 8 else 0
        with open(gz, "wb") as f, gzip.GzipFile(fileobj=f, filename=str(gz), mode="wb", mtime=mtime) as buf:
            buf.write(text.encode("utf-8"))


def write_neuron_pages(site_dir: str | Path, fragments: str | Path, slugify: Callable[[str], str],
                       *, jobs: int | None = None) -> int:
    """Write every neuron page listed in ``fragments``/:data:`MANIFEST` into ``site_dir`` from the built
    shell (see the module docstring); return how many. Nothing to do (0) without a manifest or shell."""
    site, frag = Path(site_dir), Path(fragments)
    manifest = frag / MANIFEST
    shell_page = site / SHELL_URL / "index.html"
    if not manifest.is_file() or not shell_page.is_file():
        return 0
    pages = json.loads(manifest.read_text(encoding="utf-8"))["pages"]
    prefix, suffix = _split_shell(shell_page.read_text(encoding="utf-8"))
    slugs = [slugify(title) for _, _, title, _ in pages]
    jobs = jobs if jobs is not None else (os.cpu_count() or 1)
    jobs = max(1, min(jobs, len(pages) // max(PARALLEL_MIN_PAGES // 2, 1)))
    size = -(-len(pages) // jobs) if pages else 1
    chunks = [(str(site), str(frag), prefix, suffix, pages[i : i + size], slugs[i : i + size])
              for i in range(0, len(pages), size)]
    if jobs <= 1 or len(pages) < PARALLEL_MIN_PAGES:
        written = sum(_write_chunk(c) for c in chunks)
    else:  # spawn: the caller may hold torch threads; this module imports only the standard library
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            written = sum(pool.map(_write_chunk, chunks))
    shutil.rmtree(site / SHELL_URL.split("/")[0] / SHELL_URL.split("/")[1], ignore_errors=True)
    _sitemap(site, [url for url, _, _, _ in pages])
    return written
