"""The token-search index: normalised token -> the neurons whose graphs fire on it, sharded for the browser.

Written by the render stage under ``docs/token-search/`` (MkDocs copies it to ``site/token-search/``)::

    token-search/tokens.json              {"schema": ..., "shards": S, "hash": "fnv1a32", "neurons": N, "keys": K}
    token-search/tokens-{i:03x}.json      one shard: {key: {"t": [token, ...], "a": [...], "c": [...], "na": n, "nc": n}}

- ``key`` is :func:`search_key` of a graph token: N2G's :func:`~n2g_site.n2g.graph.normalise`, then lower
  case, then surrounding whitespace stripped unless the token is only whitespace. The browser applies the
  same folding to the query (``toLowerCase`` + ``trim``), so " Paris", "Paris", "PARIS" and "paris " all
  find one key. A key lives in shard ``fnv1a32(utf8(key)) mod S`` (S a power of two), so a query downloads
  ``tokens.json`` once and then exactly one small shard.
- ``t`` lists the token strings (display form, :func:`~n2g_site.render.tokens.display_token`) seen under
  the key; ``a`` holds ``[layer, neuron, activation, t-index]`` for the graphs where the key is an
  activating token (depth 0, the node's normalised activation), ``c`` the same for context tokens (the
  node's importance). Each list is sorted by value, strongest first, and capped at :data:`MAX_PER_KEY`;
  ``na``/``nc`` give the uncapped counts. The browser ranks exact token matches first (see ``n2g.js``).

The files are plain JSON read with ``fetch``: the browser puts every string into the page with
``textContent``, never as HTML, so a token such as ``<script>`` stays text.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..n2g.graph import Graph, normalise
from .tokens import display_token

SCHEMA = "n2g-site/token-search/1"
MAX_PER_KEY = 200  # neurons kept per key and kind (activating / context), strongest first
TARGET_SHARD_BYTES = 32_000  # shards are sized to about this, so the largest stays well below 100 KB
MAX_SHARDS = 4096


def search_key(token: str) -> str:
    """The folded form a query and a graph token are compared in (see module docstring).

    >>> [search_key(t) for t in (" Paris", "PARIS", "paris ", " the", " 1999", " ", "\\n")]
    ['paris', 'paris', 'paris', 'the', '1999', ' ', '\\n']
    """
    key = normalise(token).lower()
    stripped = key.strip()
    return stripped if stripped else key


def fnv1a32(text: str) -> int:
    """32-bit FNV-1a over the UTF-8 bytes of ``text`` (the browser computes the same with Math.imul)."""
    h = 0x811C9DC5
    for byte in text.encode("utf-8"):
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def shard_of(key: str, shards: int) -> int:
    return fnv1a32(key) & (shards - 1)


def shard_name(i: int) -> str:
    return f"tokens-{i:03x}.json"


@dataclass
class _Key:
    tokens: dict[str, int] = field(default_factory=dict)  # display token -> index in "t"
    act: list[tuple[float, int, int, int]] = field(default_factory=list)  # (value, layer, neuron, t-index)
    ctx: list[tuple[float, int, int, int]] = field(default_factory=list)


def graph_entries(graph: Graph) -> list[tuple[str, str, str, float]]:
    """(kind "a"/"c", key, display token, value) of one graph: the best value per (kind, key)."""
    best: dict[tuple[str, str], tuple[str, float]] = {}
    for node in graph.nodes:
        if node.key is None or not node.token:
            continue
        kind = "a" if node.depth == 0 else "c"
        value = float(node.activation if kind == "a" else node.importance)
        k = (kind, search_key(node.token))
        if k not in best or value > best[k][1]:
            best[k] = (display_token(node.token), value)
    return [(kind, key, tok, value) for (kind, key), (tok, value) in best.items()]


class SearchIndex:
    """Collects graph entries neuron by neuron, then writes the sharded index."""

    def __init__(self) -> None:
        self._keys: dict[str, _Key] = defaultdict(_Key)
        self.neurons = 0

    def add(self, layer: int, neuron: int, entries: Iterable[tuple[str, str, str, float]]) -> None:
        self.neurons += 1
        for kind, key, token, value in entries:
            slot = self._keys[key]
            ti = slot.tokens.setdefault(token, len(slot.tokens))
            (slot.act if kind == "a" else slot.ctx).append((value, layer, neuron, ti))

    def add_graph(self, layer: int, neuron: int, graph: Graph) -> None:
        self.add(layer, neuron, graph_entries(graph))

    def _payload(self, key: str) -> dict:
        slot = self._keys[key]
        out: dict = {"t": list(slot.tokens)}
        for kind, rows in (("a", slot.act), ("c", slot.ctx)):
            rows = sorted(rows, key=lambda r: (-r[0], r[1], r[2]))
            out[kind] = [[layer, neuron, round(value, 2), ti] for value, layer, neuron, ti in rows[:MAX_PER_KEY]]
            out["n" + kind] = len(rows)
        return out

    def write(self, folder: Path) -> dict:
        """Write ``tokens.json`` and the shards into ``folder`` (a staging folder: plain writes)."""
        folder.mkdir(parents=True, exist_ok=True)
        payloads = {key: json.dumps(self._payload(key), ensure_ascii=False, separators=(",", ":"))
                    for key in sorted(self._keys)}
        total = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) + 4 for k, v in payloads.items())
        shards = 1
        while shards < MAX_SHARDS and total / shards > TARGET_SHARD_BYTES:
            shards *= 2
        buckets: list[list[str]] = [[] for _ in range(shards)]
        for key in payloads:
            buckets[shard_of(key, shards)].append(key)
        largest = 0
        for i, keys in enumerate(buckets):
            body = "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{payloads[k]}" for k in keys) + "}\n"
            data = body.encode("utf-8")
            largest = max(largest, len(data))
            (folder / shard_name(i)).write_bytes(data)
        meta = {"schema": SCHEMA, "hash": "fnv1a32", "shards": shards, "neurons": self.neurons,
                "keys": len(payloads), "largest_shard_bytes": largest}
        (folder / "tokens.json").write_text(json.dumps(meta, sort_keys=True) + "\n", encoding="utf-8")
        return meta
