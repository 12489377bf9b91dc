"""The offline bundle: the built site as one zip that works from disk after unzipping.

``n2g-site build --zip`` (or ``publish --zip``) writes ``<site dir>.zip`` holding the site under one folder
named like the site dir. Opened from ``file://`` the site makes no request outside itself: no web fonts
(``theme.font: false``), no CDN script, its data files load as scripts (fetch is refused on file://),
Material's prose search reads ``search/search_index.js`` through the vendored Web Worker shim, and
``assets/n2g.js`` appends ``index.html`` to directory links. The archive is deterministic: entries sorted,
timestamps fixed (``SOURCE_DATE_EPOCH`` when set, else 1980-01-01), so two builds give the same bytes.
"""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

from ..store import atomic_writer

_EPOCH_1980 = (1980, 1, 1, 0, 0, 0)


def _timestamp() -> tuple[int, int, int, int, int, int]:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit() and int(epoch) >= 315532800:  # zip cannot store dates before 1980
        return time.gmtime(int(epoch))[:6]
    return _EPOCH_1980


def zip_site(site: Path) -> Path:
    """Write ``<site>.zip`` next to ``site`` and return its path. The archive is streamed to a temporary file
    in the same folder, one site file in memory at a time, and renamed into place when complete."""
    site = site.resolve()
    target = site.with_name(site.name + ".zip")
    stamp = _timestamp()
    with (
        atomic_writer(target) as handle,
        zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive,
    ):
        for path in sorted(p for p in site.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(f"{site.name}/{path.relative_to(site).as_posix()}", date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return target
