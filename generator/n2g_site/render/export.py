"""Machine-readable exports of the rendered neurons (schema ``schemas/neuron.schema.json``).

::

    docs/neurons/L{l}/N{n}/neuron.json   one neuron (MkDocs copies it next to the neuron's page)
    docs/export/neurons.jsonl            every neuron, one line each, in layer then neuron order

Each record is the neuron's graph, the examples its page shows (raw token strings, token ids and the
neuron's activation at each token), the fit's options, cost and first held-out score, the evaluate stage's
scores, its similar neurons and logit effects, whichever of them the work dir has. The JSON is deterministic
(sorted keys, compact, no build date), so an unchanged neuron gives byte-identical files across rebuilds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

from ..store import Window

SCHEMA = "n2g-site/neuron/1"
EXPORT_DIR = "export"  # docs/export/
JSONL_NAME = "neurons.jsonl"
JSON_NAME = "neuron.json"
# Line breaks that JSON leaves raw inside strings but Python's str.splitlines() splits on.
_RAW_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def neuron_json_path(layer: int, neuron: int) -> str:
    """Path of a neuron's JSON, relative to docs/ (and to the site root)."""
    return f"neurons/L{layer}/N{neuron}/{JSON_NAME}"


def jsonl_path() -> str:
    return f"{EXPORT_DIR}/{JSONL_NAME}"


def dumps(record: dict[str, Any]) -> str:
    """One line of deterministic JSON (no raw line break of any kind inside)."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if "\x85" in text or "\u2028" in text or "\u2029" in text:  # rare; translate() costs ~1 ms a record
        text = text.translate(_RAW_BREAKS)
    return text


def number(value: Any) -> float | None:
    """A float with 6 significant digits (what float32 activations carry); None for NaN/inf/missing."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return None
    return float(f"{value:.6g}")


def example_record(
    window: Window,
    *,
    split: str,
    rank: int,
    a_max: float,
    lo: int,
    hi: int,
    vocab: list[str],
    doc_title: str,
    doc_url: str | None,
    fitted: bool,
) -> dict[str, Any]:
    """Tokens ``lo:hi`` of ``window`` (the slice the page shows), padding past a document edge left out."""
    keep = [i for i in range(lo, hi) if 0 <= int(window.tokens[i]) < len(vocab)]
    ids = [int(window.tokens[i]) for i in keep]
    return {
        "split": split,
        "rank": rank,
        "doc": int(window.doc),
        "doc_title": doc_title,
        "doc_url": doc_url,
        "window_start": int(window.start),
        "fitted": fitted,
        "value": number(window.value),
        "normalised": number(window.value / a_max) if a_max > 0 else None,
        "pivot": keep.index(window.pivot) if window.pivot in keep else None,
        "token_ids": ids,
        "tokens": [vocab[t] for t in ids],
        "activations": [number(window.acts[i]) for i in keep],
    }


def fit_record(fit: dict[str, Any] | None) -> dict[str, Any] | None:
    if not fit:
        return None
    heldout = fit.get("heldout") if isinstance(fit.get("heldout"), dict) else None
    return {
        "augmenter": fit.get("augmenter"),
        "config": fit.get("config") if isinstance(fit.get("config"), dict) else {},
        "cost": fit.get("cost") if isinstance(fit.get("cost"), dict) else None,
        "heldout": heldout,
    }


def evaluation_record(evaluated: dict[str, Any] | None) -> dict[str, Any] | None:
    """The evaluate stage's scores (``evaluate/L../N....json``) without its bookkeeping fields."""
    if not isinstance(evaluated, dict) or not evaluated.get("datasets"):
        return None
    return {
        "fire_threshold": evaluated.get("fire_threshold"),
        "ngram": evaluated.get("ngram"),
        "datasets": evaluated["datasets"],
    }


def similar_records(similar: Iterable[Any]) -> list[dict[str, Any]]:
    return [{"layer": int(l2), "neuron": int(n2), "similarity": number(sim)} for l2, n2, sim in similar]


def logit_record(entry: dict[str, Any] | None, norm: str, vocab: list[str]) -> dict[str, Any] | None:
    if not entry:
        return None

    def side(pairs: Any) -> list[dict[str, Any]]:
        return [
            {"token_id": int(t), "token": vocab[int(t)] if 0 <= int(t) < len(vocab) else None, "value": number(v)}
            for t, v in pairs or []
        ]

    return {"norm": norm, "promoted": side(entry.get("up")), "suppressed": side(entry.get("down"))}


def write_jsonl(docs: Path, neurons: Iterable[tuple[int, int]]) -> int:
    """Join the neurons' JSON files (already one line each) into ``docs/export/neurons.jsonl``; return lines."""
    out = docs / jsonl_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with out.open("w", encoding="utf-8", newline="\n") as handle:
        for layer, neuron in neurons:
            path = docs / neuron_json_path(layer, neuron)
            if path.exists():
                handle.write(path.read_text(encoding="utf-8"))
                count += 1
    return count


def copy_schemas(docs: Path) -> None:
    """Publish the record's JSON Schemas next to the JSONL (``export/neuron.schema.json``, ``graph.schema.json``)."""
    from ..schemas import HERE

    out = docs / EXPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    for name in ("neuron.schema.json", "graph.schema.json"):
        (out / name).write_bytes((HERE / name).read_bytes())
