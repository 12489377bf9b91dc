"""Data for the in-browser playground: a graph's patterns per page, the tokenizer once per site.

The playground (``assets/playground.js``) tokenizes the reader's text with the model's own tokenizer
(Hugging Face tokenizers.js, vendored in ``assets/vendor/``) and runs the neuron's graph on the token ids
with the same longest-match rule as :class:`~n2g_site.n2g.predict.Predictor`, so it shows exactly the values
the Python predictor gives (tests/test_playground.py runs both on the same sequences).

- Per neuron page: :func:`patterns` -> the graph's trie, ``{"d": [distance, ...], "k": [key, ...], "e": [end, ...],
  "s": 1000, "t": 0.5}``, one entry per node in the graph's node order: how many nodes back its parent is (its index
  minus its parent's; 0 for an activating token: short numbers, where parent indices of a large graph have 3-4
  digits), its key (null for the ignore node; else a token id whose normalised text is the key, read through the
  site's ``keys`` table below, or the key itself when no token of the vocabulary has it) and the value a match
  ending there predicts (null, or 0 with ``s``: no match ends there), times ``s`` when every end value is a non-zero
  multiple of 1/1000 (fitted graphs store 3 decimals: ``773`` for 0.773, and ``773 / 1000`` in JavaScript is the
  same double as Python's ``0.773``), as is without ``s``; ``t`` is the firing threshold. The playground reads every
  complete match off it (the path from an activating token to a node with an end), the patterns of
  ``Graph.patterns``; the trie is written once per node, where the list of patterns repeats every shared prefix (a
  1,712-node graph: ~40 KB as patterns, ~15 KB as a trie). Embedded in the page as JSON. When every key is a
  token id and every end value exact thousandths (almost every fitted graph), the three lists travel packed instead,
  ``{"p": "<base64>", "t": 0.5}`` (:func:`pack_trie`): per node three unsigned LEB128 varints, its distance, its key
  + 1 (0: the ignore node) and its end in thousandths (0: no end), ~45% of the JSON lists' bytes.
- Per site: ``playground/tokenizer.js`` (``n2gDeliver("playground/tokenizer", {"gz": "<base64>"})``), loaded
  only when a reader first enters a playground. Inside the gzip (:func:`pack`): the tokenizer
  (``tokenizer.json`` + ``tokenizer_config.json`` that mine saved in the work dir), ``vocab`` (token id ->
  its text), ``keys`` (token id -> :func:`~n2g_site.n2g.graph.normalise` of its text) and ``bos``, the
  doc-start token id that mine put before every document (null if none): the playground puts it before the
  reader's text too, so a pattern that needs the start of a document matches as it did in the corpus. Shipping the keys
  rather than re-implementing ``normalise`` in JavaScript keeps the two predictors on one definition.
  A BPE tokenizer's vocabulary travels as a list of pieces and its merges as two small numbers each, texts
  and keys as 0 where they repeat what the playground can derive. Measured: Gemma 3's 262,144-token tokenizer
  (514,906 merges) ships as 3,243,325 bytes instead of 23,673,095 as plain JSON (2.4 MB instead of 7.5 MB over
  a gzip-serving host), SmolLM2's as 680,909 instead of 2,987,353. The browser unpacks it with
  ``DecompressionStream``; for Gemma that and tokenizers.js' setup take ~3 s in headless chromium on 2
  shared cores (tokenizers.js' own ~2 s of it), so the playground starts loading when the reader enters it.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

from ..config import EvaluateConfig
from ..n2g.graph import Graph, normalise
from ..store import WorkDir
from .search_index import script

DATA_PATH = "playground/tokenizer.js"
END_SCALE = 1000  # end values are written in thousandths when that is exact (:func:`patterns`)


_KEY_IDS: tuple[list[str], dict[str, int]] | None = None  # (vocabulary, normalised key -> its first token id)


def key_ids(vocab: list[str]) -> dict[str, int]:
    """Normalised key -> the first token id with that key (``keys[id]`` in the site's tokenizer data gives it
    back), computed once per process (per vocabulary)."""
    global _KEY_IDS
    if _KEY_IDS is None or _KEY_IDS[0] is not vocab:
        ids: dict[str, int] = {}
        for i, text in enumerate(vocab):
            ids.setdefault(normalise(text), i)
        _KEY_IDS = (vocab, ids)
    return _KEY_IDS[1]


def patterns(
    graph: Graph, fire_threshold: float = EvaluateConfig.fire_threshold, ids: dict[str, int] | None = None
) -> dict[str, Any]:
    """The graph's trie for the playground (module docstring): per node the distance back to its parent (``"d"``), its
    key (``"k"``) and end value or null (``"e"``, in thousandths with ``"s": 1000`` when that is exact), and
    ``"t"``, the share of the max at which a token counts as firing (as in the evaluation). ``ids``
    (:func:`key_ids`): write a key as a token id with that key, a few bytes instead of its text; without it (or for
    a key no token has) the key is written as text."""
    index = {node.id: i for i, node in enumerate(graph.nodes)}
    ids = ids or {}
    ends = [float(n.end) if n.end is not None else None for n in graph.nodes]
    scaled = [None if e is None else round(e * END_SCALE) for e in ends]
    # Thousandths when exact and never 0, so that 0 can stand for "no end" (one byte where null is four).
    exact = all(e is None or (s and s / END_SCALE == e) for e, s in zip(ends, scaled, strict=True))
    thousandths = [0 if s is None else s for s in scaled]
    data: dict[str, Any] = {
        "d": [i - index[n.parent] if n.parent != -1 else 0 for i, n in enumerate(graph.nodes)],
        "k": [n.key if n.key is None else ids.get(n.key, n.key) for n in graph.nodes],
        "e": thousandths if exact else ends,
        "t": float(fire_threshold),
    }
    if exact:
        data["s"] = END_SCALE
        if all(k is None or isinstance(k, int) for k in data["k"]) and all(e >= 0 for e in thousandths):
            return {"p": pack_trie(data["d"], data["k"], thousandths), "t": data["t"]}
    return data


def _varint(value: int, out: bytearray) -> None:
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def pack_trie(distances: list[int], keys: list[int | None], ends: list[int]) -> str:
    """The trie's three lists as base64 of unsigned LEB128 varints, node by node: distance, key + 1 (0 for the
    ignore node), end in thousandths (0: no end); ``playground.js`` ``unpackTrie`` reads it back.

    >>> pack_trie([0, 1], [5, None], [700, 0])
    'AAa8BQEAAA=='
    """
    out = bytearray()
    for d, k, e in zip(distances, keys, ends, strict=True):
        _varint(d, out)
        _varint(0 if k is None else k + 1, out)
        _varint(e, out)
    return base64.b64encode(bytes(out)).decode("ascii")


def write_tokenizer_data(work: WorkDir, vocab: list[str], bos: str | None, docs: Path) -> bool:
    """Write ``docs/playground/tokenizer.js``; False (and nothing written) when mine saved no tokenizer.
    ``bos`` is the doc-start token's text (the manifest's ``model_info.bos``)."""
    if not work.tokenizer.is_file():
        return False
    tokenizer = json.loads(work.tokenizer.read_text(encoding="utf-8"))
    config = json.loads(work.tokenizer_config.read_text(encoding="utf-8")) if work.tokenizer_config.is_file() else {}
    data = pack(tokenizer, config, vocab, vocab.index(bos) if isinstance(bos, str) and bos in vocab else None)
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
    packed = base64.b64encode(gzip.compress(body, compresslevel=9, mtime=0)).decode("ascii")
    path = docs / DATA_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script(DATA_PATH[: -len(".js")], json.dumps({"gz": packed})), encoding="utf-8")
    return True


def pack(tokenizer: dict[str, Any], config: dict[str, Any], vocab: list[str], bos: int | None) -> dict[str, Any]:
    """The playground's tokenizer data, small (playground.js ``unpack`` restores it).

    - A BPE model whose vocabulary numbers its pieces 0..n-1 and whose every merge joins two pieces into a
      third: ``"pieces"`` lists the pieces by id, and ``"merges"`` gives each merge (in rank order) as two
      numbers, the id of the piece it makes minus the previous merge's (merges come roughly in id order, so
      mostly 0 or 1) and the length of its left part in UTF-16 code units (JavaScript string indices). The
      tokenizer keeps null in their place. Any other tokenizer ships whole.
    - ``"vocab"``: a token's text, or 0 where it is its piece with the SentencePiece space mark ``▁`` read as
      a space (almost every Gemma token); ``"keys"``: a token's key, or 0 where it equals its text.
    """
    model = tokenizer.get("model") or {}
    pieces, merges = _bpe_parts(model)
    if pieces is not None:
        tokenizer = {**tokenizer, "model": {**model, "vocab": None, "merges": None}}
    else:
        pieces, merges = [], None
    texts: list[str | int] = [
        0 if i < len(pieces) and text == pieces[i].replace("\u2581", " ") else text for i, text in enumerate(vocab)
    ]
    keys: list[str | int] = []
    for text in vocab:
        key = normalise(text)
        keys.append(0 if key == text else key)
    return {
        "bos": bos,
        "config": config,
        "tokenizer": tokenizer,
        "pieces": pieces,
        "merges": merges,
        "vocab": texts,
        "keys": keys,
    }


def _bpe_parts(model: dict[str, Any]) -> tuple[list[str] | None, list[int] | None]:
    """(pieces by id, merges as numbers) for :func:`pack`, or (None, None) when the model is not such a BPE."""
    vocab, merges = model.get("vocab"), model.get("merges")
    if model.get("type") != "BPE" or not isinstance(vocab, dict) or not isinstance(merges, list):
        return None, None
    pieces: list[str | None] = [None] * len(vocab)
    for piece, i in vocab.items():
        if not isinstance(i, int) or not 0 <= i < len(pieces) or pieces[i] is not None:
            return None, None
        pieces[i] = piece
    codes: list[int] = []
    previous = 0
    for merge in merges:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        made = vocab.get(left + right)
        if made is None:
            return None, None
        codes += [made - previous, len(left.encode("utf-16-le")) // 2]
        previous = made
    return [p for p in pieces if p is not None], codes
