"""Combine the fit outputs of sharded runs (``--shard i/n``) into one work dir.

Each shard ran ``n2g-site fit --shard i/n`` with the same options, in this work dir (then there is nothing
to merge) or in its own copy of it on another machine. ``merge`` copies every neuron fit file of the given
work dirs into this one, after checking they were made from the same model, corpus and mining options.
A neuron present on both sides must have byte-identical files (fitting is deterministic), otherwise the
merge stops and names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .config import UserError
from .progress import say
from .store import LEGACY_DTYPE, WorkDir, atomic_write_bytes, read_json

IDENTITY = ("model", "corpus", "seed", "hook", "mine", "dtype")


def merge(work: WorkDir, sources: Sequence[Path]) -> int:
    """Copy fit files from ``sources`` into ``work``; returns how many files were copied."""
    mine = read_json(work.require(work.manifest, "mine"))
    copied = same = 0
    for source in map(WorkDir, sources):
        if not source.manifest.exists():
            raise UserError(f"{source.root} is not an n2g-site work dir (no run.json): pass the --work-dir of a shard")
        theirs = read_json(source.manifest)
        for manifest in (mine, theirs):
            manifest.setdefault("dtype", LEGACY_DTYPE)
        diffs = [key for key in IDENTITY if theirs.get(key) != mine.get(key)]
        if diffs:
            detail = "; ".join(f"{key} {theirs.get(key)!r} there, {mine.get(key)!r} here" for key in diffs
                               if key != "mine") or "mining options"
            raise UserError(f"{source.root} was made with other {', '.join(diffs)} than {work.root} ({detail}): "
                            "shards must share the model, corpus, seed, dtype and mining options")
        for path in sorted((source.root / "fit").rglob("N*.json")):
            dest = work.root / path.relative_to(source.root)
            data = path.read_bytes()
            if dest.exists():
                if dest.read_bytes() != data:
                    raise UserError(f"{dest.relative_to(work.root)} differs between {work.root} and {source.root}: "
                                    "were the shards fitted with other options? Refit that neuron in one place")
                same += 1
                continue
            atomic_write_bytes(dest, data)
            copied += 1
    say(f"merge: {copied} fit files copied, {same} already present and identical")
    return copied
