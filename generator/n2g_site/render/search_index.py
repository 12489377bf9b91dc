"""The token- and pattern-search index: normalised token -> the neurons whose graphs use it, sharded.

Written by the render stage under ``docs/token-search/`` (MkDocs copies it to ``site/token-search/``)::

    token-search/tokens.js                {"schema": ..., "shards": S, "hash": "fnv1a32", "neurons": N, "keys": K,
                                           "info_chunk": C, "layers": {layer: [[first, last], ...]},
                                           "example": a token of this build for the box's placeholder}
    token-search/tokens-{i:03x}.js        one shard: {key: {"t": [token, ...], "a": [...], "c": [...], "e": [...],
                                           "na": n, "nc": n, "ne": n}}
    token-search/neurons-L{l}-{j}.js      one-line summaries: {neuron: [summary, groups, held-out F1 or null,
                                           badge]} for neurons j*C .. (j+1)*C-1 of layer l (badge: a
                                           render/verdict.py state, null without one)

Every file is a classic script that hands its JSON text to the page, ``n2gDeliver("<path without .js>", "{...}");``:
unlike ``fetch``, a ``<script>`` tag also loads from ``file://``, so search works in the unzipped offline
bundle. The JSON text is the call's second argument, a string (:func:`read_script` gets it back in Python).

- ``key`` is :func:`search_key` of a graph token: N2G's :func:`~n2g_site.n2g.graph.normalise`, then lower
  case, then surrounding whitespace stripped unless the token is only whitespace. The browser applies the
  same folding to the query (``toLowerCase`` + ``trim``), so " Paris", "Paris", "PARIS" and "paris " all
  find one key. A key lives in shard ``fnv1a32(utf8(key)) mod S`` (S a power of two), so a query downloads
  ``tokens.js`` once and then exactly one small shard per token it names.
- ``t`` lists the token strings (display form, :func:`~n2g_site.render.tokens.display_token`) seen under
  the key; ``a`` holds ``[layer, neuron, activation, t-index, [context key, ...]]`` for the graphs where the
  key is an activating token (depth 0, the node's normalised activation; the context keys are the search
  keys of every token that the graph's patterns for this activating token require before it, strongest
  first, at most :data:`MAX_CONTEXT_KEYS`), ``c`` holds ``[layer, neuron, importance, t-index]`` where the
  key is a context token. Each list is sorted by value, strongest first, and capped at
  :data:`MAX_PER_KEY`; ``na``/``nc`` give the uncapped counts. The browser ranks exact token matches first.
- ``e`` holds ``[layer, neuron, activation, t-index]`` where the neuron fires on the key in its mined
  examples (some token of its top training or held-out windows at ≥ ``config.FIRE_THRESHOLD`` (0.5) of
  the neuron's max; the activation is that share, the best one) but its graph does not have the key as an
  activating token: the triggers a graph missed (the box lists them apart, "fires on it in its examples").
- ``neurons`` in ``tokens.js`` counts the neurons with at least one entry (graph or examples).
- ``layers`` in ``tokens.js`` lists each layer's neurons of this build as runs of consecutive ids: the jump
  box, the random-neuron link and the 404 page read it.
- ``n`` (only where some are) holds ``[layer, neuron, activation, t-index]`` for the *negative* graphs
  (fit ``--polarity both``) where the key is an activating token: the neuron goes most negative on it
  (``activation`` is its normalised value on that side, activation / the neuron's minimum); ``nn`` its
  uncapped count. The browser lists them apart, labelled as the negative side.
- Pattern queries (``search.md``): "fires on X" reads ``a`` of X; "fires on X when Y comes before it" keeps
  the rows of X's ``a`` whose context keys hold Y's key; "Y anywhere in the context" reads ``c`` of Y.

The browser puts every string into the page with ``textContent``, never as HTML, so a token such as
``<script>`` stays text.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FIRE_THRESHOLD
from ..n2g.graph import Graph, normalise
from .tokens import display_token

SCHEMA = "n2g-site/token-search/3"  # 3: example-token rows ("e"), badges in the summaries, "layers", "example"
MAX_PER_KEY = 200  # neurons kept per key and kind (activating / context), strongest first
TARGET_SHARD_BYTES = 32_000  # shards are sized to about this, so the largest stays well below 100 KB
MAX_SHARDS = 4096
MAX_CONTEXT_KEYS = 16  # context keys kept per activating-token row
INFO_CHUNK = 512  # neurons per summary file (~100 bytes each: ~50 KB)


@functools.lru_cache(maxsize=1 << 17)  # pure; a 50k-neuron build asks it ~2.4 million times for ~10^4 tokens
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
    return f"tokens-{i:03x}.js"


def script(name: str, data_json: str) -> str:
    """A data file the browser loads with a <script> tag: ``n2gDeliver(name, "<the JSON text>");``.

    The JSON travels as a string literal that the page parses with ``JSON.parse``, not as a JavaScript
    object literal: in a literal a key ``"__proto__"`` (a real token in code vocabularies) would set the
    object's prototype instead of adding an entry."""
    return f"n2gDeliver({json.dumps(name)},{json.dumps(data_json, ensure_ascii=False)});\n"


def read_script(text: str) -> Any:
    """The data inside a file written by :func:`script`."""
    start = text.index(",") + 1
    end = text.rindex(");")
    return json.loads(json.loads(text[start:end]))


@dataclass
class _Key:
    tokens: dict[str, int] = field(default_factory=dict)  # display token -> index in "t"
    act: list[tuple[float, int, int, int, tuple[str, ...]]] = field(default_factory=list)  # + context keys
    ctx: list[tuple[float, int, int, int, tuple[str, ...]]] = field(default_factory=list)
    ex: list[tuple[float, int, int, int, tuple[str, ...]]] = field(default_factory=list)
    neg: list[tuple[float, int, int, int, tuple[str, ...]]] = field(default_factory=list)  # negative graphs


Entry = tuple[str, str, str, float, tuple[str, ...]]  # (kind "a"/"c"/"e"/"n", key, display token, value, context keys)


def graph_entries(graph: Graph) -> list[Entry]:
    """The index entries of one graph: the best value per (kind, key), and the context keys of each
    activating key (every keyed node below it in the trie, by importance)."""
    best: dict[tuple[str, str], tuple[str, float]] = {}
    context: dict[str, dict[str, float]] = defaultdict(dict)
    root_of: dict[int, int] = {}
    for node in graph.nodes:  # parents come first
        root_of[node.id] = node.id if node.parent < 0 else root_of[node.parent]
        root = graph.nodes[root_of[node.id]]
        if node.depth > 0 and node.key is not None and node.token and root.key is not None and root.token:
            ctx = context[search_key(root.token)]
            key = search_key(node.token)
            ctx[key] = max(ctx.get(key, 0.0), float(node.importance))
        if node.key is None or not node.token:
            continue
        kind = "a" if node.depth == 0 else "c"
        value = float(node.activation if kind == "a" else node.importance)
        k = (kind, search_key(node.token))
        if k not in best or value > best[k][1]:
            best[k] = (display_token(node.token), value)
    out: list[Entry] = []
    for (kind, key), (tok, value) in best.items():
        keys: tuple[str, ...] = ()
        if kind == "a":
            ranked = sorted(context.get(key, {}).items(), key=lambda kv: (-kv[1], kv[0]))
            keys = tuple(k for k, _ in ranked[:MAX_CONTEXT_KEYS])
        out.append((kind, key, tok, value, keys))
    return out


def example_entries(
    windows: Iterable[tuple[np.ndarray, np.ndarray]], a_max: float, vocab: list[str], graph: Iterable[Entry] = ()
) -> list[Entry]:
    """The ``e`` entries of one neuron: each key its mined windows (``(token ids, activations)`` pairs) fire
    on, at ≥ ``FIRE_THRESHOLD`` of ``a_max``, with the best share; keys its ``graph`` entries already
    have as activating tokens are left out."""
    if not a_max > 0:
        return []
    have = {key for kind, key, *_ in graph if kind == "a"}
    best: dict[str, tuple[str, float]] = {}
    for tokens, acts in windows:
        share = np.asarray(acts, dtype=np.float64) / a_max
        for i in np.flatnonzero(share >= FIRE_THRESHOLD).tolist():
            tid = int(tokens[i])
            if not 0 <= tid < len(vocab) or not vocab[tid]:
                continue
            key = search_key(vocab[tid])
            value = min(float(share[i]), 1.0)
            if key in have or not math.isfinite(value):
                continue
            if key not in best or value > best[key][1]:
                best[key] = (display_token(vocab[tid]), value)
    return [("e", key, tok, value, ()) for key, (tok, value) in best.items()]


def runs(ids: Iterable[int]) -> list[list[int]]:
    """Sorted ids as runs ``[first, last]`` of consecutive ones.

    >>> runs([5, 0, 1, 2, 7, 8])
    [[0, 2], [5, 5], [7, 8]]
    """
    out: list[list[int]] = []
    for n in sorted(set(ids)):
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return out


def negative_entries(graph: Graph) -> list[Entry]:
    """The index entries of a negative graph: its activating tokens only, as kind ``n``."""
    return [("n", key, tok, value, ()) for kind, key, tok, value, _ in graph_entries(graph) if kind == "a"]


class SearchIndex:
    """Collects graph entries and summaries neuron by neuron, then writes the sharded index."""

    def __init__(self) -> None:
        self._keys: dict[str, _Key] = defaultdict(_Key)
        self._info: dict[tuple[int, int], dict[int, list]] = defaultdict(dict)
        self._layers: dict[int, set[int]] = defaultdict(set)  # every neuron of the build, by layer
        self._neurons: set[tuple[int, int]] = set()

    @property
    def neurons(self) -> int:
        """Neurons with at least one entry (graph, examples or negative graph; a neuron counts once)."""
        return len(self._neurons)

    def add(self, layer: int, neuron: int, entries: Iterable[Entry]) -> None:
        self._neurons.add((layer, neuron))
        for kind, key, token, value, context in entries:
            slot = self._keys[key]
            ti = slot.tokens.setdefault(token, len(slot.tokens))
            rows = slot.act if kind == "a" else slot.ex if kind == "e" else slot.neg if kind == "n" else slot.ctx
            rows.append((value, layer, neuron, ti, context))

    def add_neurons(self, layer: int, neurons: Iterable[int]) -> None:
        """Neurons of the build (``layers`` of tokens.js: jump box, random neuron, 404 page)."""
        self._layers[layer].update(int(n) for n in neurons)

    def add_graph(self, layer: int, neuron: int, graph: Graph) -> None:
        self.add(layer, neuron, graph_entries(graph))

    def add_summary(
        self, layer: int, neuron: int, summary: str, groups: int, f1: float | None, badge: str | None = None
    ) -> None:
        """A neuron's one-line summary, trigger groups, held-out F1 and score badge (render/verdict.py state),
        shown next to search results."""
        self._info[(layer, neuron // INFO_CHUNK)][neuron] = [
            summary,
            groups,
            None if f1 is None else round(f1, 2),
            badge,
        ]

    def examples(self, limit: int = 3) -> list[tuple[str, str]]:
        """Ready-made pattern queries ``(fires, before)``: the activating keys most neurons share, with the
        context key most of those neurons need before it ("" when none does); most common first."""
        ranked = sorted(
            ((len(slot.act), key) for key, slot in self._keys.items() if slot.act and key.strip()),
            key=lambda x: (-x[0], x[1]),
        )
        out = []
        for _, key in ranked[:limit]:
            counts: dict[str, int] = defaultdict(int)
            for *_, context in self._keys[key].act:
                for c in context:
                    if c.strip():
                        counts[c] += 1
            before = min(counts, key=lambda c: (-counts[c], c)) if counts else ""
            out.append((key, before))
        return out

    def placeholder(self) -> str | None:
        """A token of this build for the search box's placeholder: the display form of the activating key
        most graphs share (a word of at least 3 letters when there is one), None for an empty index."""
        ranked = sorted(
            ((len(slot.act), key) for key, slot in self._keys.items() if slot.act and key.strip()),
            key=lambda x: (-x[0], x[1]),
        )
        keys = [key for _, key in ranked if len(key) >= 3 and key.isalpha()] or [key for _, key in ranked]
        if not keys:
            return None
        tokens = self._keys[keys[0]].tokens
        return next(iter(tokens)).strip() or next(iter(tokens))

    def _payload(self, key: str) -> dict:
        slot = self._keys[key]
        out: dict = {"t": list(slot.tokens)}
        for kind, rows in (("a", slot.act), ("c", slot.ctx), ("e", slot.ex)):
            if kind == "e" and not rows:
                continue  # most keys: no example-only row (the browser reads a missing "e" as empty)
            rows = sorted(rows, key=lambda r: (-r[0], r[1], r[2]))
            if kind == "a":
                out[kind] = [
                    [layer, neuron, round(value, 2), ti, list(context)]
                    for value, layer, neuron, ti, context in rows[:MAX_PER_KEY]
                ]
            else:
                out[kind] = [[layer, neuron, round(value, 2), ti] for value, layer, neuron, ti, _ in rows[:MAX_PER_KEY]]
            out["n" + kind] = len(rows)
        if slot.neg:
            rows = sorted(slot.neg, key=lambda r: (-r[0], r[1], r[2]))
            out["n"] = [[layer, neuron, round(value, 2), ti] for value, layer, neuron, ti, _ in rows[:MAX_PER_KEY]]
            out["nn"] = len(rows)
        return out

    def write(self, folder: Path) -> dict:
        """Write ``tokens.js``, the shards and the summaries into ``folder`` (a staging folder: plain writes)."""
        folder.mkdir(parents=True, exist_ok=True)
        payloads = {
            key: json.dumps(self._payload(key), ensure_ascii=False, separators=(",", ":")) for key in sorted(self._keys)
        }
        total = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) + 4 for k, v in payloads.items())
        shards = 1
        while shards < MAX_SHARDS and total / shards > TARGET_SHARD_BYTES:
            shards *= 2
        buckets: list[list[str]] = [[] for _ in range(shards)]
        for key in payloads:
            buckets[shard_of(key, shards)].append(key)
        largest = 0
        for i, keys in enumerate(buckets):
            body = "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{payloads[k]}" for k in keys) + "}"
            name = shard_name(i)
            data = script(f"token-search/{name[:-3]}", body).encode("utf-8")
            largest = max(largest, len(data))
            (folder / name).write_bytes(data)
        for (layer, chunk), info in sorted(self._info.items()):
            name = f"neurons-L{layer}-{chunk}"
            body = json.dumps({str(n): info[n] for n in sorted(info)}, ensure_ascii=False, separators=(",", ":"))
            (folder / f"{name}.js").write_text(script(f"token-search/{name}", body), encoding="utf-8")
        meta = {
            "schema": SCHEMA,
            "hash": "fnv1a32",
            "shards": shards,
            "neurons": self.neurons,
            "keys": len(payloads),
            "largest_shard_bytes": largest,
            "info_chunk": INFO_CHUNK,
            "layers": {str(layer): runs(ids) for layer, ids in sorted(self._layers.items())},
            "example": self.placeholder(),
        }
        (folder / "tokens.js").write_text(
            script("token-search/tokens", json.dumps(meta, sort_keys=True)), encoding="utf-8"
        )
        return meta
