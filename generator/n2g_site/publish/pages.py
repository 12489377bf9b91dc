"""Neuron pages without one MkDocs page each: one built *shell* page, every neuron poured into it.

MkDocs (Python-Markdown + the Material theme) costs ~3.5 ms per page, serially: 3 minutes for 50,000
neuron pages. Every neuron page has the same frame (the lean one of templates/overrides/neuron.html: header,
search boxes, scripts), and all of them sit at the same depth (``neurons/L{l}/N{n}/``), so their relative URLs
are the same. So render writes a single shell page, ``docs/neurons/n2g-shell/page.md``, at that depth
(from ``neuron.md.j2``, with :data:`TITLE` as its title and :data:`BODY` as its body), plus one *pack* per
layer in ``fragments/`` holding every neuron's body HTML and data files, and the list of packs and pages
(:data:`MANIFEST`). MkDocs builds the shell like any page (the neuron folder is out of the nav and the
shell is excluded from the search index by its front matter); then :func:`write_neuron_pages` (the MkDocs
hook's ``on_post_build``, so ``mkdocs serve`` gets the pages too) splits the built shell around its body
marker and writes every neuron page as prefix + body + suffix, with what is page-specific substituted: the
title (``<title>``, header, heading), the heading's anchor, and the page's own URL (canonical link). It
writes each neuron's files (a separate ``graph.svg`` for a large graph) next to its
page, puts the pages in ``sitemap.xml`` (and ``.gz``) in place of the shell, and removes the shell's folder.

A pack (``fragments/neurons/L{l}.jsonl``, written by :class:`PackWriter`) is JSON Lines, one page per line
in page order: ``{"url": "neurons/L0/N5/", "body": "<div ...>", "files": {"graph.svg": "..."}}``
(``files`` empty for most pages). One file per layer, not three per neuron: on this disk creating a file costs
0.05-0.4 ms, and a 50,000-neuron site would otherwise create 150,000 of them twice (render, then MkDocs
copying the data files).

Packs are written out by worker processes, in runs of pages of one pack per task (so a single large
layer spreads over the workers too). Output bytes do not depend on the number of workers. Standard library and orjson
only: the workers import nothing heavy.
"""

from __future__ import annotations

import gzip
import html
import multiprocessing
import os
import re
import shutil
import struct
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import orjson

SHELL_MD = "neurons/n2g-shell/page.md"  # the shell's source, relative to docs/
SHELL_URL = "neurons/n2g-shell/page/"  # its URL (directory URLs), relative to the site root
TITLE = "N2G-SHELL-TITLE"  # the shell's title: replaced by each page's title (HTML-escaped)
BODY = "N2G-NEURON-BODY"  # the shell's body paragraph: replaced by each page's body HTML
BODY_HTML = f"<p>{BODY}</p>"
# In fragments/: {"schema", "shell", "packs": [{"file": pack path, "pages": [[url, title], ...]}, ...]}
MANIFEST = "neuron-pages.json"
SCHEMA = "n2g-site/neuron-pages/2"
PARALLEL_MIN_PAGES = 1000  # below this, one process writes every page


class PackWriter:
    """Render's side: one pack of neuron pages (see the module docstring), written as they come."""

    def __init__(self, fragments: Path, name: str):
        self.name = name  # relative to ``fragments``
        self.pages: list[list[str]] = []  # [url, title] per page, in order
        path = fragments / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()

    def add(self, url: str, title: str, body: str, files: dict[str, str]) -> None:
        """A page at ``url`` (directory URL relative to the site root) with ``files`` (name -> text) next to it."""
        self._file.write(orjson.dumps({"url": url, "body": body, "files": files}) + b"\n")
        self.pages.append([url, title])

    def close(self) -> dict[str, Any]:
        """Finish the pack; its entry of the manifest."""
        self._file.close()
        return {"file": self.name, "pages": self.pages}


def write_manifest(fragments: Path, packs: Sequence[dict[str, Any]]) -> None:
    """The neuron pages to write: every :meth:`PackWriter.close` entry, in page order."""
    fragments.mkdir(parents=True, exist_ok=True)
    data = {"schema": SCHEMA, "shell": SHELL_URL, "packs": list(packs)}
    (fragments / MANIFEST).write_bytes(orjson.dumps(data) + b"\n")


def read_pack(path: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(url, body, files) of every page of a pack, in order."""
    with open(path, "rb") as f:
        for line in f:
            page = orjson.loads(line)
            yield page["url"], page["body"], page["files"]


def rendered_pages(fragments: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(url, body, files) of every neuron page render wrote into ``fragments``, in page order: for tests and
    for looking into a render without building the site."""
    data = orjson.loads((fragments / MANIFEST).read_bytes())
    for pack in data["packs"]:
        yield from read_pack(fragments / pack["file"])


FRAME_JS = "neurons/frame.js"  # the part of the frame only scripts use, written once (:func:`_shared_frame`)
_FRAME_PART = re.compile(r"<!--n2g-frame-->(.*?)<!--/n2g-frame-->", re.S)


def _shared_frame(prefix: str, suffix: str) -> tuple[str, str, str | None]:
    """Move the frame's ``<!--n2g-frame-->`` parts (templates/overrides/neuron.html: the markup and scripts only
    Material's JavaScript uses: its toggles, search dialog, config, palette script, logo, dialog) out of the pages:
    the first becomes ``<script src=".../frame.js">``, which holds every part (``n2gFrame``) and writes the first
    back in place (``document.write``); each later part becomes a short script writing its own. Returns the new
    prefix and suffix and frame.js's text (None: no parts). Every neuron page sits at the same depth, so the parts'
    relative URLs hold for all of them."""
    parts: list[str] = []

    def cut(match: re.Match[str]) -> str:
        text = match.group(1)
        if TITLE in text or TITLE.lower() in text or SHELL_URL in text:
            raise ValueError("a shared part of the neuron frame (<!--n2g-frame-->) holds the page's title or URL")
        parts.append(_squeeze(text).strip())
        if len(parts) == 1:
            return '<script src="../../frame.js"></script>'  # neurons/frame.js from neurons/L<l>/N<n>/
        return f"<script>document.write(n2gFrame[{len(parts) - 1}])</script>"

    prefix = _FRAME_PART.sub(cut, prefix)
    suffix = _FRAME_PART.sub(cut, suffix)
    if not parts:
        return prefix, suffix, None
    data = orjson.dumps(parts).decode("utf-8").replace("</", "<\\/")
    return prefix, suffix, f"var n2gFrame={data};document.write(n2gFrame[0]);\n"


def _split_shell(shell: str) -> tuple[str, str]:
    if shell.count(BODY_HTML) != 1:
        raise ValueError(
            f"the built shell page has {shell.count(BODY_HTML)} body markers {BODY_HTML!r}, not 1: "
            f"neuron.md.j2 must keep its placeholder paragraph on a line of its own"
        )
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


def _write_pages(args: tuple[str, str, str, str, str, int, list[list[str]], list[str], bool]) -> int:
    """Write the pages ``start:start+len(pages)`` of one pack (``pages``: their [url, title] in the manifest;
    ``last``: this range ends the pack, which must then have no more lines)."""
    site, fragments, prefix, suffix, pack_file, start, pages, slugs, last = args
    site_dir = Path(site)
    pack_path = Path(fragments) / pack_file
    if not pack_path.is_file():
        raise ValueError(f"{pack_path} is missing: rerun `n2g-site render`")
    stale = f"{pack_path} does not match {MANIFEST} (%s): rerun `n2g-site render`"
    made: set[Path] = set()
    count = 0
    with open(pack_path, "rb") as lines:
        for _ in range(start):  # earlier ranges are other tasks': skipped unparsed
            if not lines.readline():
                raise ValueError(stale % f"fewer than {start} pages")
        for (want, title), slug in zip(pages, slugs, strict=True):
            line = lines.readline()
            if not line:
                raise ValueError(stale % f"it ends before {want}")
            page = orjson.loads(line)
            url, body, files = page["url"], page["body"], page["files"]
            if url != want:
                raise ValueError(stale % f"{url} where {want} was listed")
            folder = site_dir / url
            if folder.parent not in made:
                folder.parent.mkdir(parents=True, exist_ok=True)
                made.add(folder.parent)
            folder.mkdir(exist_ok=True)
            head, tail = _page_parts(prefix, suffix, url, title, slug)
            (folder / "index.html").write_text(head + body + tail, encoding="utf-8")
            for name, text in files.items():
                (folder / name).write_text(text, encoding="utf-8")
            count += 1
        if last and lines.readline():
            raise ValueError(stale % f"more than the {start + len(pages)} pages listed")
    return count


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
    text = text[: match.start()] + "".join(entry.replace(SHELL_URL, u) for u in urls) + text[match.end() :]
    path.write_text(text, encoding="utf-8")
    gz = site / "sitemap.xml.gz"
    if gz.is_file():
        head = gz.read_bytes()[:8]
        mtime = struct.unpack("<I", head[4:8])[0] if len(head) == 8 else 0
        with open(gz, "wb") as f, gzip.GzipFile(fileobj=f, filename=str(gz), mode="wb", mtime=mtime) as buf:
            buf.write(text.encode("utf-8"))


def write_neuron_pages(
    site_dir: str | Path, fragments: str | Path, slugify: Callable[[str], str], *, jobs: int | None = None
) -> int:
    """Write every neuron page listed in ``fragments``/:data:`MANIFEST` into ``site_dir`` from the built
    shell (see the module docstring); return how many. Nothing to do (0) without a manifest or shell.
    Raises ValueError when the manifest or a pack is missing or of another version (rerun render)."""
    site, frag = Path(site_dir), Path(fragments)
    manifest = frag / MANIFEST
    shell_page = site / SHELL_URL / "index.html"
    if not manifest.is_file() or not shell_page.is_file():
        return 0
    data = orjson.loads(manifest.read_bytes())
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{manifest} is {data.get('schema')!r}, not {SCHEMA!r}: rerun `n2g-site render`")
    packs = data["packs"]
    prefix, suffix = _split_shell(shell_page.read_text(encoding="utf-8"))
    prefix, suffix, frame = _shared_frame(prefix, suffix)
    if frame is not None:
        (site / FRAME_JS).parent.mkdir(parents=True, exist_ok=True)
        (site / FRAME_JS).write_text(frame, encoding="utf-8")
    total = sum(len(pack["pages"]) for pack in packs)
    jobs = jobs if jobs is not None else (os.cpu_count() or 1)
    jobs = max(1, jobs if total >= PARALLEL_MIN_PAGES else 1)
    # Tasks are runs of at most `span` pages of one pack, so one large layer still spreads over the workers.
    span = max(PARALLEL_MIN_PAGES // 2, -(-total // (4 * jobs)))
    tasks = []
    for pack in packs:
        pages = pack["pages"]
        for start in range(0, max(len(pages), 1), span):
            run = pages[start : start + span]
            tasks.append(
                (
                    str(site),
                    str(frag),
                    prefix,
                    suffix,
                    pack["file"],
                    start,
                    run,
                    [slugify(title) for _, title in run],
                    start + span >= len(pages),
                )
            )
    if jobs <= 1:
        written = sum(_write_pages(t) for t in tasks)
    else:  # spawn: the caller may hold torch threads; this module imports only the standard library and orjson
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            written = sum(pool.map(_write_pages, tasks))
    shutil.rmtree(site / SHELL_URL.split("/")[0] / SHELL_URL.split("/")[1], ignore_errors=True)
    _sitemap(site, [url for pack in packs for url, _ in pack["pages"]])
    return written
