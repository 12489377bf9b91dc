"""Shared by the shard and Ray tests: the tiny run's options and a file-by-file comparison of work dirs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from n2g_site.config import Config, MineConfig

# Small enough for seconds on 2 cores, big enough for 3 mining shards of several batches each.
BASE = Config(
    model="random:tiny",
    corpus="wiki",
    layers="0-1",
    neurons="0-7",
    checkpoint_seconds=1e9,
    mine=MineConfig(top_k=4, max_tokens=12_000, batch_tokens=256, ordinary_tokens=1024),
)


def _scratch(path: Path) -> bool:
    """A temporary file of store.atomic_writer, left by a process killed mid-write (SIGKILL, a force-cancelled
    Ray task: no cleanup runs). No stage reads one: each reads its files by name."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def files(root: Path, *stages: str) -> list[Path]:
    """The files of ``stages`` (folders or file names of the work dir), relative to ``root``, scratch files
    of killed writers left out."""
    out = []
    for stage in stages:
        path = root / stage
        out += [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not _scratch(p)]
    return sorted(p.relative_to(root) for p in out)


def assert_same(a: Path, b: Path, *stages: str) -> int:
    """Every file of ``stages`` is in both work dirs with the same content (``.npz``: the same arrays, dtypes
    and bytes: the zip itself holds write times); returns how many files were compared."""
    left, right = files(a, *stages), files(b, *stages)
    assert left and left == right, (left, right)
    for rel in left:
        if rel.suffix == ".npz":
            with np.load(a / rel) as x, np.load(b / rel) as y:
                assert x.files == y.files, rel
                for key in x.files:
                    assert x[key].dtype == y[key].dtype and x[key].shape == y[key].shape, f"{rel}:{key}"
                    assert x[key].tobytes() == y[key].tobytes(), f"{rel}:{key} differs"
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs"
    return len(left)
