"""Find files that ship with n2g-site: the built-in ``templates/`` folder and the base ``mkdocs.yml``.

A wheel carries them inside the package (``n2g_site/templates``, ``n2g_site/mkdocs.yml``, see
pyproject.toml's force-include); an editable install finds them at the repository root instead.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parents[1]  # generator/n2g_site -> repo root


def builtin_path(name: str) -> Path:
    """Path of a built-in resource (``"templates"`` or ``"mkdocs.yml"``): packaged copy first, then the repo's."""
    packaged = _PACKAGE / name
    if packaged.exists():
        return packaged
    repo = _REPO / name
    if repo.exists():
        return repo
    raise FileNotFoundError(f"built-in {name!r} not found in {_PACKAGE} or {_REPO}: reinstall n2g-site")
