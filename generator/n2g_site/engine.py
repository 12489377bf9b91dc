"""The batched forward engine: N2G activation requests in, per-token activations out.

Requests from many examples and many neurons of a layer are pooled: identical token sequences are run once
(one row serves every neuron asked about it), rows are sorted by length and packed into right-padded
batches of at most ``batch_tokens`` tokens, and each forward stops right after the layer's MLP hook.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .models import LoadedModel
from .n2g.requests import Request


@dataclass
class EngineCounters:
    requests: int = 0  # requests answered
    rows: int = 0  # distinct sequences run
    tokens: int = 0  # real (unpadded) tokens run
    forwards: int = 0  # batched forward calls

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "rows": self.rows, "tokens": self.tokens, "forwards": self.forwards}


class BatchedEngine:
    """An :class:`~n2g_site.n2g.requests.ActivationSource` over a loaded model."""

    def __init__(self, model: LoadedModel, batch_tokens: int = 4096) -> None:
        self.model = model
        self.batch_tokens = batch_tokens
        self.counters = EngineCounters()

    def __call__(self, requests: Sequence[Request]) -> list[np.ndarray]:
        wanted: dict[tuple[int, tuple[int, ...]], set[int]] = defaultdict(set)
        for req in requests:
            wanted[(req.layer, req.tokens)].add(req.neuron)
        results: dict[tuple[int, tuple[int, ...], int], np.ndarray] = {}
        by_layer: dict[int, list[tuple[int, ...]]] = defaultdict(list)
        for layer, tokens in wanted:
            by_layer[layer].append(tokens)
        for layer, rows in by_layer.items():
            rows.sort(key=len)
            for batch in self._pack(rows):
                acts = self._forward(batch, layer)
                for i, tokens in enumerate(batch):
                    neurons = sorted(wanted[(layer, tokens)])
                    values = acts[i, : len(tokens)][:, neurons].T.astype(np.float64)
                    for neuron, vector in zip(neurons, values):
                        results[(layer, tokens, neuron)] = vector
        self.counters.requests += len(requests)
        return [results[(r.layer, r.tokens, r.neuron)] for r in requests]

    def _pack(self, rows: list[tuple[int, ...]]) -> list[list[tuple[int, ...]]]:
        batches: list[list[tuple[int, ...]]] = []
        batch: list[tuple[int, ...]] = []
        for row in rows:  # sorted by length, so the last row sets the padded width
            if batch and (len(batch) + 1) * len(row) > self.batch_tokens:
                batches.append(batch)
                batch = []
            batch.append(row)
        if batch:
            batches.append(batch)
        return batches

    def _forward(self, batch: list[tuple[int, ...]], layer: int) -> np.ndarray:
        width = max(len(row) for row in batch)
        tokens = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            tokens[i, : len(row)] = torch.tensor(row)
        acts = self.model.mlp_activations(tokens, [layer])[layer]
        self.counters.rows += len(batch)
        self.counters.tokens += sum(len(row) for row in batch)
        self.counters.forwards += 1
        return acts.float().cpu().numpy()


class ReferenceEngine:
    """The original code's call pattern, for benchmarks and parity checks: one request at a time, each a
    full-model ``run_with_cache`` of a single sequence (no batching, no early stop, no dedupe)."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.counters = EngineCounters()

    def __call__(self, requests: Sequence[Request]) -> list[np.ndarray]:
        out = []
        for req in requests:
            name = self.model.hook_name(req.layer)
            with torch.inference_mode():
                _, cache = self.model.bridge.run_with_cache(
                    torch.tensor([req.tokens], device=self.model.device), names_filter=[name])
            out.append(cache[name][0, :, req.neuron].float().cpu().numpy().astype(np.float64))
            self.counters.rows += 1
            self.counters.tokens += len(req.tokens)
            self.counters.forwards += 1
        self.counters.requests += len(requests)
        return out
