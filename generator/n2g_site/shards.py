"""Combine the outputs of sharded runs (``--shard i/n``) into one work dir.

Shards ran ``n2g-site mine|fit|evaluate --shard i/n`` with the same options, in this work dir (a shared
filesystem: then ``n2g-site merge`` with no SOURCES finishes the job) or in their own copies on other
machines (SOURCES). ``merge``:

1. checks each source was made from the same model, corpus, seed, dtype, device type and mining options,
   and from the same mined data: the content digest of each layer both sides hold (run.json ``mined``)
   must match, and each fit and evaluate file copied must name the digest of this work dir's layer; fit
   files must share one (dtype, device type, batch tokens), whose floats they were computed with;
2. copies mining shard files, fit files and evaluate neuron files this work dir lacks; a file present on
   both sides must have identical bytes (every stage is deterministic), otherwise it stops and names it;
3. combines a complete set of mining shards into the layer files (mine_shards.py);
4. rewrites the evaluate layer tables and ``summary.json`` from every neuron file, when files were copied
   or the tables are missing (a sharded evaluate removes them).

A destination without run.json (a fresh folder) takes the first source's run.json, corpus.json, vocab.json
and tokenizer.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from .config import CPU_BATCH_TOKENS, UserError
from .progress import say
from .store import LEGACY_DTYPE, WorkDir, atomic_write_bytes, fit_file_settings, read_json

IDENTITY = ("model", "corpus", "seed", "hook", "mine", "dtype", "device_type")
SHARED = ("run.json", "corpus.json", "vocab.json", "tokenizer")  # what a fresh destination takes from a source


def _check(work: WorkDir, mine: dict, source: WorkDir, theirs: dict) -> None:
    for manifest in (mine, theirs):
        manifest.setdefault("dtype", LEGACY_DTYPE)
    diffs = [key for key in IDENTITY if theirs.get(key) != mine.get(key)]
    if diffs:
        detail = (
            "; ".join(f"{key} {theirs.get(key)!r} there, {mine.get(key)!r} here" for key in diffs if key != "mine")
            or "mining options"
        )
        raise UserError(
            f"{source.root} was made with other {', '.join(diffs)} than {work.root} ({detail}): "
            "shards must share the model, corpus, seed, dtype, device type and mining options"
        )
    ours, other = mine.get("mined") or {}, theirs.get("mined") or {}
    for layer in sorted(set(ours) & set(other), key=int):
        if ours[layer] != other[layer]:
            raise UserError(
                f"the mined data of layer {layer} differ: {other[layer]} in {source.root}, {ours[layer]} "
                f"in {work.root} (mined on another machine or copy?): merge only work dirs made from "
                "one mining run, or mine once and copy the mine/ folder to every shard"
            )


def _digest_of(path: Path) -> str | None:
    try:
        return read_json(path).get("mined")
    except ValueError:
        return None


def _settings(path: Path) -> tuple:
    config, dtype, device = fit_file_settings(read_json(path))
    return dtype, device, (config or {}).get("fit_batch_tokens", CPU_BATCH_TOKENS)


def _copy(
    work: WorkDir, source: WorkDir, stage: str, digests: dict[str, str], seen: dict[str, tuple]
) -> tuple[int, int]:
    """Copy ``stage``'s neuron files of ``source`` into ``work``; returns (copied, already present). Fit files
    must all share one (dtype, device, fit batch tokens), the first seen (``seen``) or this work dir's."""
    copied = same = 0
    for path in sorted((source.root / stage).glob("L*/N*.json")):
        dest = work.root / path.relative_to(source.root)
        data = path.read_bytes()
        layer = str(int(path.parent.name[1:]))
        if layer in digests and _digest_of(path) != digests[layer]:
            raise UserError(
                f"{path} was made from other mined data of layer {layer} ({_digest_of(path)}) than "
                f"{work.root} holds ({digests[layer]}): refit or re-evaluate it from this work dir's data"
            )
        if stage == "fit" and (settings := _settings(path)) != seen.setdefault("fit", settings):
            raise UserError(
                f"{path} was fitted with (dtype, device, batch tokens) {settings}, other fit files with "
                f"{seen['fit']}: their floats round differently; refit the shards with one setting"
            )
        if dest.exists():
            if dest.read_bytes() != data:
                raise UserError(
                    f"{dest.relative_to(work.root)} differs between {work.root} and {source.root}: "
                    "were the shards run with other options? Rerun that neuron in one place"
                )
            same += 1
            continue
        atomic_write_bytes(dest, data)
        copied += 1
    return copied, same


def _adopt(work: WorkDir, source: WorkDir) -> None:
    """Give a fresh destination the source's run files (manifest, document index, vocabulary, tokenizer)."""
    for name in SHARED:
        path = source.root / name
        if path.is_dir():
            shutil.copytree(path, work.root / name, dirs_exist_ok=True)
        elif path.exists():
            atomic_write_bytes(work.root / name, path.read_bytes())


def merge(work: WorkDir, sources: Sequence[Path]) -> int:
    """Merge ``sources`` into ``work`` (see the module docstring); returns how many files were copied."""
    from .evaluate import rebuild_tables
    from .mine_shards import copy_shards, merge_shards, mined_layers, pending

    roots = [WorkDir(Path(s)) for s in sources]
    for source in roots:
        if not source.manifest.exists():
            raise UserError(f"{source.root} is not an n2g-site work dir (no run.json): pass the --work-dir of a shard")
    if not work.manifest.exists():
        if not roots:
            work.require(work.manifest, "mine")
        _adopt(work, roots[0])
    copied = {"mine": 0, "fit": 0, "evaluate": 0}
    same = 0
    seen: dict[str, tuple] = {}
    first_fit = next(iter(sorted((work.root / "fit").glob("L*/N*.json"))), None)
    if first_fit is not None:
        seen["fit"] = _settings(first_fit)
    for source in roots:
        mine, theirs = read_json(work.manifest), read_json(source.manifest)
        _check(work, mine, source, theirs)
        copied["mine"] += copy_shards(work, source)
        for stage in ("fit", "evaluate"):
            more, present = _copy(work, source, stage, mine.get("mined") or {}, seen)
            copied[stage] += more
            same += present
    for count in sorted(pending(work)):
        merge_shards(work, count)
    evaluated = any((work.root / "evaluate").glob("L*/N*.json"))
    if evaluated and (copied["evaluate"] or not work.evaluation_summary.exists()):
        layers = [layer for layer in mined_layers(work) if work.mined(layer).exists()]
        neurons = rebuild_tables(work, sorted(layers))
        say(f"merge: evaluate tables and summary rewritten from {neurons} neuron files")
    say(
        f"merge: {copied['fit']} fit files copied, {copied['evaluate']} evaluate files copied, {copied['mine']} "
        f"mining shards copied; {same} already present and identical"
    )
    return sum(copied.values())
