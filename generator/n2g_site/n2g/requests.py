"""What the N2G algorithm asks of a model: activations of one neuron along a token sequence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np


class Request(NamedTuple):
    """Activations of neuron ``(layer, neuron)`` at every position of ``tokens`` (a named tuple: a fit
    group makes 10^4-10^5 of them, and one is built in ~40% of a frozen dataclass's time)."""

    layer: int
    neuron: int
    tokens: tuple[int, ...]


class ActivationSource(Protocol):
    """Answers requests in order; an implementation may batch, dedupe and reorder internally."""

    def __call__(self, requests: Sequence[Request]) -> list[np.ndarray]: ...


class Negated:
    """``source`` with every activation sign-flipped: the N2G phases fit a neuron's negative side by running
    unchanged on -activation (its most negative tokens become its peaks). Requests pass through as they are,
    so a model engine batches and dedupes them as usual; each answer is a new array."""

    def __init__(self, source: ActivationSource) -> None:
        self.source = source

    def __call__(self, requests: Sequence[Request]) -> list[np.ndarray]:
        return [-acts for acts in self.source(requests)]
