"""Machine-readable exports of the rendered neurons (schema ``schemas/neuron.schema.json``).

::

    docs/export/layer_LL.jsonl.gz        every neuron of layer LL, one line each, in neuron order (gzip): the
                                         site's data download (each neuron page links its layer's file and line)
    docs/export/index.json               the build metadata and the list of layer files (export-index schema)
    docs/export/vocab.json               the model's vocabulary, token id -> raw string (one JSON list): the
                                         records name tokens by id only

A neuron's record is written once, in its layer's file: not also as a file next to its page (at 46,080
neurons that copy alone was ~1.2 GB, more than GitHub Pages serves).

Each record is the neuron's graph (in columns, :func:`graph_record`), its top windows (token ids and the neuron's
activation at each token as an integer, 255 x activation / max_activation, rounded: :data:`ACTIVATION_SCALE`;
the page highlights a narrower slice of each), the fit's options, cost and first held-out
score, the evaluate stage's scores, its similar neurons and logit effects, whichever of them the work dir has.
Its ``negative`` (schema 4; null for a neuron that never goes below 0 and has no negative fit) is the negative
side: the bottom training windows the page shows and those the negative graph was fitted on (no others: each
window is ~100 bytes of gzip a neuron), their activations as integers scaled by the most negative activation
(255 x activation / min_activation, so the lowest token is 255), and with ``fit --polarity both`` the negative
graph in the same columns, its fit's options, cost and first held-out score, and its evaluate scores (without
misses: the page shows none for that side).
Nothing is written once per neuron that one file serves: the token strings are in ``vocab.json``, the site's
build metadata (render/guide.py: n2g-site version, model, corpus, options, build date) in ``index.json``
(at 46,080 neurons the two were ~70 MB of the layer files). The JSON is deterministic
(sorted keys, compact) and the gzip streams carry no time stamp or file name, so an unchanged neuron gives
byte-identical files across rebuilds with the same build date (``SOURCE_DATE_EPOCH`` fixes it).

One file per layer, not one for the model: a whole-model JSON Lines file of SmolLM2-135M (46,080 neurons)
would be about 1 GB; a layer's gzip file is a few percent of its 1,536 records' size and loads alone.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from ..store import BAND_EDGES, Window

SCHEMA = "n2g-site/neuron/4"  # 4: the negative side ("negative") and band windows ("bands"); 3: graph in columns
GRAPH_SCHEMA = "n2g-site/graph-columns/1"  # the record's graph: columns (:func:`graph_record`)
EXPORT_DIR = "export"  # docs/export/
INDEX_NAME = "index.json"
VOCAB_NAME = "vocab.json"
INDEX_SCHEMA = "n2g-site/export-index/1"
SCHEMA_FILES = ("neuron.schema.json", "graph.schema.json", "build.schema.json", "export-index.schema.json")
# Line breaks that JSON leaves raw inside strings but Python's str.splitlines() splits on.
_RAW_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def index_path() -> str:
    """The export index (build metadata + one entry per layer file), relative to docs/."""
    return f"{EXPORT_DIR}/{INDEX_NAME}"


def layer_file(layer: int) -> str:
    """A layer's JSON Lines file (gzip), relative to ``export/``."""
    return f"layer_{layer:02d}.jsonl.gz"


def dumps(record: dict[str, Any]) -> str:
    """One line of deterministic JSON (no raw line break of any kind inside)."""
    # orjson: ~14x faster than json.dumps(sort_keys=True, separators=(",", ":")); deterministic too (sorted
    # keys, UTF-8 unescaped, shortest float repr, though small floats read 1e-7, not 1e-07). NaN and inf are
    # written as null on purpose: numbers() passes them through.
    text = orjson.dumps(record, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode("utf-8")
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


def numbers(values: list[float], digits: int = 6) -> list[float]:
    """:func:`number` of every value (``digits`` significant digits), in one formatting call (~3x faster for a
    window); NaN and inf stay NaN and inf, which :func:`dumps` writes as null, like :func:`number`'s None."""
    return list(map(float, (f"%.{digits}g " * len(values) % tuple(values)).split()))


# An example's per-token activations are integers: round(ACTIVATION_SCALE x activation / max_activation), so a
# token at the neuron's max is 255 (a held-out peak may pass it), a negative activation is negative; the page's
# highlight has 11 levels, this 1/255 of the max. As integers the layer files are ~30% smaller than with 3
# significant digits (2.1 -> 1.5 KB a neuron of gzip on the synthetic benchmark's windows).
ACTIVATION_SCALE = 255


def scaled(values: list[float], a_max: float) -> list[int | None]:
    """``round(ACTIVATION_SCALE * v / a_max)`` of each value (half away from zero); None for NaN/inf. ``a_max`` is
    A_max (> 0) for top windows, A_min (< 0) for bottom ones (their lowest token is then 255, a positive one
    negative); 0 scales every value to 0."""
    k = ACTIVATION_SCALE / a_max if a_max != 0 and math.isfinite(a_max) else 0.0
    return [int(math.copysign(math.floor(abs(v * k) + 0.5), v * k)) if math.isfinite(v) else None for v in values]


def graph_record(graph: dict[str, Any] | None, token_ids: dict[str, int]) -> dict[str, Any] | None:
    """A fit file's graph (``{"nodes": [{...}, ...]}``, graph.schema.json) as columns, one list per field in node
    order: ``parent``, ``token`` (its id in vocab.json, from ``token_ids``, or the raw string where the vocabulary
    has none; null for an ignore node), ``importance``, ``activation``, ``end``, ``count``. What the node objects
    carry besides is implied: a node's id is its index, its depth 0 for a parent of -1 and its parent's + 1
    otherwise, its key :func:`n2g_site.n2g.graph.normalise` of its token (null for an ignore node). A third of
    the bytes of the node objects once gzipped (3.0 -> 1.3 KB a neuron on the synthetic benchmark)."""
    if not graph or not graph.get("nodes"):
        return None
    nodes = graph["nodes"]
    return {
        "schema": GRAPH_SCHEMA,
        "parent": [n["parent"] for n in nodes],
        "token": [token_ids.get(n["token"], n["token"]) if n["key"] is not None else None for n in nodes],
        "importance": [n["importance"] for n in nodes],
        "activation": [n["activation"] for n in nodes],
        "end": [n["end"] for n in nodes],
        "count": [n["count"] for n in nodes],
    }


_TOKEN_IDS: tuple[list[str], dict[str, int]] | None = None  # (vocabulary, raw string -> its first id)


def token_ids(vocab: list[str]) -> dict[str, int]:
    """Raw token string -> its first id in ``vocab`` (for :func:`graph_record`), computed once per process (per
    vocabulary)."""
    global _TOKEN_IDS
    if _TOKEN_IDS is None or _TOKEN_IDS[0] is not vocab:
        ids: dict[str, int] = {}
        for i, text in enumerate(vocab):
            ids.setdefault(text, i)
        _TOKEN_IDS = (vocab, ids)
    return _TOKEN_IDS[1]


def graph_from_record(columns: dict[str, Any], vocab: list[str]) -> dict[str, Any]:
    """The graph.schema.json form of a record's :func:`graph_record` columns (node objects, as in the fit file);
    ``vocab`` is export/vocab.json."""
    from ..n2g.graph import SCHEMA as NODES_SCHEMA
    from ..n2g.graph import normalise

    nodes: list[dict[str, Any]] = []
    for i, parent in enumerate(columns["parent"]):
        token = columns["token"][i]
        if isinstance(token, int):
            token = vocab[token]
        nodes.append(
            {
                "id": i,
                "parent": parent,
                "depth": 0 if parent < 0 else nodes[parent]["depth"] + 1,
                "key": None if token is None else normalise(token),
                "token": "" if token is None else token,
                "importance": columns["importance"][i],
                "activation": columns["activation"][i],
                "end": columns["end"][i],
                "count": columns["count"][i],
            }
        )
    return {"schema": NODES_SCHEMA, "nodes": nodes}


def example_record(
    window: Window,
    *,
    split: str,
    rank: int,
    a_max: float,
    lo: int,
    hi: int,
    n_vocab: int,
    doc_title: str,
    doc_url: str | None,
    fitted: bool,
) -> dict[str, Any]:
    """Tokens ``lo:hi`` of ``window`` (the slice the page shows), padding past a document edge left out. ``a_max``:
    what its activations are normalised and scaled by (A_max; A_min, < 0, for a bottom window)."""
    normalise = a_max != 0 and math.isfinite(a_max)
    shown = window.tokens[lo:hi].tolist()  # plain ints/floats once: indexing numpy per token is slow
    keep = [i for i, t in enumerate(shown, start=lo) if 0 <= t < n_vocab]
    ids = [shown[i - lo] for i in keep]
    acts = window.acts[keep].tolist()
    return {
        "split": split,
        "rank": rank,
        "doc": int(window.doc),
        "doc_title": doc_title,
        "doc_url": doc_url,
        "window_start": int(window.start),
        "fitted": fitted,
        "value": number(window.value),
        "normalised": number(window.value / a_max) if normalise else None,
        "pivot": keep.index(window.pivot) if window.pivot in keep else None,
        "token_ids": ids,
        "activations": scaled(acts, a_max),
    }


def band_record(
    window: Window, *, band: int, split: str, a_max: float, lo: int, hi: int, n_vocab: int, fitted: bool
) -> dict[str, Any]:
    """One window of the band sample standing for activation band ``band`` (store.BAND_EDGES): tokens
    ``lo:hi`` as :func:`example_record` writes them, with the band's lower edge (a share of ``a_max``)."""
    shown = window.tokens[lo:hi].tolist()
    keep = [i for i, t in enumerate(shown, start=lo) if 0 <= t < n_vocab]
    return {
        "band": BAND_EDGES[band],
        "split": split,
        "doc": int(window.doc),
        "window_start": int(window.start),
        "fitted": fitted,
        "value": number(window.value),
        "pivot": keep.index(window.pivot) if window.pivot in keep else None,
        "token_ids": [shown[i - lo] for i in keep],
        "activations": scaled(window.acts[keep].tolist(), a_max),
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


def evaluation_record(evaluated: dict[str, Any] | None, *, misses: bool = True) -> dict[str, Any] | None:
    """The evaluate stage's scores (``evaluate/L../N....json``) without its bookkeeping fields; ``misses=False``
    leaves the misses out (the negative side's: no page shows them)."""
    if not isinstance(evaluated, dict) or not evaluated.get("datasets"):
        return None
    out = {
        "fire_threshold": evaluated.get("fire_threshold"),
        "ngram": evaluated.get("ngram"),
        "datasets": evaluated["datasets"],
    }
    if misses:
        out["misses"] = evaluated.get("misses") or {"false_positive": [], "false_negative": []}
    return out


def similar_records(similar: Iterable[Any]) -> list[dict[str, Any]]:
    return [{"layer": int(l2), "neuron": int(n2), "similarity": number(sim)} for l2, n2, sim in similar]


def logit_record(entry: dict[str, Any] | None, norm: str) -> dict[str, Any] | None:
    """The relate stage's logit effects of one neuron: tokens by id (their strings are in vocab.json)."""
    if not entry:
        return None

    def side(pairs: Any) -> list[dict[str, Any]]:
        return [{"token_id": int(t), "value": number(v)} for t, v in pairs or []]

    return {"norm": norm, "promoted": side(entry.get("up")), "suppressed": side(entry.get("down"))}


class LayerExport:
    """One layer's ``export/layer_LL.jsonl.gz``, filled as render writes the layer's neuron records (the
    records are in memory then: nothing is read back)."""

    def __init__(self, layer: int):
        self.layer = layer
        self.neurons = 0
        self._buf = io.BytesIO()
        # No file name and mtime 0 in the gzip header: the same records give the same bytes. Level 6 (zlib's
        # default): 11% smaller than level 3 (4.29 -> 3.83 KB a neuron on the synthetic benchmark's records) for
        # ~0.4 s more CPU a 1,536-neuron layer; level 9 saves 1.5% more for twice level 6's time.
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._buf, compresslevel=6, mtime=0)

    def add(self, line: str) -> None:
        """One neuron's record, as :func:`dumps` wrote it plus its line break."""
        self._gzip.write(line.encode("utf-8"))
        self.neurons += 1

    def write(self, docs: Path) -> dict[str, Any]:
        """Write the file under ``docs``; its entry of ``export/index.json``."""
        self._gzip.close()
        data = self._buf.getvalue()
        name = layer_file(self.layer)
        (docs / EXPORT_DIR).mkdir(parents=True, exist_ok=True)
        (docs / EXPORT_DIR / name).write_bytes(data)
        return {
            "layer": self.layer,
            "file": name,
            "neurons": self.neurons,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }


def write_index(
    docs: Path, layers: Iterable[dict[str, Any]], build: dict[str, Any], vocab: list[str]
) -> dict[str, Any]:
    """Write ``export/index.json`` listing the layer files (:meth:`LayerExport.write` entries) and
    ``export/vocab.json`` (``vocab``: token id -> raw string); return the index."""
    entries = sorted(layers, key=lambda e: e["layer"])
    (docs / EXPORT_DIR).mkdir(parents=True, exist_ok=True)
    (docs / EXPORT_DIR / VOCAB_NAME).write_text(
        json.dumps(vocab, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8"
    )
    index = {
        "schema": INDEX_SCHEMA,
        "build": build,
        "record_schema": "neuron.schema.json",
        "vocabulary": VOCAB_NAME,
        "neurons": sum(e["neurons"] for e in entries),
        "layers": entries,
    }
    (docs / EXPORT_DIR).mkdir(parents=True, exist_ok=True)
    (docs / index_path()).write_text(
        json.dumps(index, sort_keys=True, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    return index


def copy_schemas(docs: Path) -> None:
    """Publish the JSON Schemas next to the exports (``export/neuron.schema.json`` and the ones it uses)."""
    from ..schemas import HERE

    out = docs / EXPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    for name in SCHEMA_FILES:
        (out / name).write_bytes((HERE / name).read_bytes())
