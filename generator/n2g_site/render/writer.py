"""Where render writes: plain writes into the staging folders (``docs/``, ``fragments/``), swapped in at the end
so a killed render leaves the previous ``docs/`` untouched and no stale page of an earlier selection survives."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..config import Config
from ..resources import builtin_path

PLACEHOLDER = "N2G-FRAGMENT"  # the paragraph of a Markdown page that the MkDocs hook replaces by its fragment


def layer_md_path(layer: int) -> str:
    return f"layers/L{layer}.md"


class Writer:
    """Plain writes into the staging folders (the whole tree is swapped in at the end)."""

    def __init__(self, docs: Path, fragments: Path):
        self.docs, self.fragments = docs, fragments
        self.pages = 0
        self._dirs: set[Path] = set()

    def _write(self, path: Path, text: str) -> None:
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        path.write_text(text, encoding="utf-8")

    def page(self, md_path: str, text: str) -> None:
        self._write(self.docs / md_path, text)
        self.pages += 1

    def data(self, rel_path: str, text: str) -> None:
        """A static file under docs/ (MkDocs copies it into the site as is)."""
        self._write(self.docs / rel_path, text)

    def fragment(self, md_path: str, html: str) -> None:
        self._write(self.fragments / (md_path[: -len(".md")] + ".html"), html)


def swap(staged: Path, final: Path) -> None:
    """Replace ``final`` by ``staged`` (two renames; the old tree is removed after)."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    staged.rename(final)
    if old.exists():
        shutil.rmtree(old)


def copy_assets(cfg: Config, docs: Path) -> None:
    """Copy ``assets/`` of the built-in templates, then the user's (which override by file name)."""
    sources = [builtin_path("templates") / "assets"]
    if cfg.templates is not None:
        sources.append(Path(cfg.templates) / "assets")
    for src in sources:
        if src.is_dir():
            shutil.copytree(src, docs / "assets", dirs_exist_ok=True)
