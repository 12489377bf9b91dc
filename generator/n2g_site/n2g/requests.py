"""What the N2G algorithm asks of a model: activations of one neuron along a token sequence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Request:
    """Activations of neuron ``(layer, neuron)`` at every position of ``tokens``."""

    layer: int
    neuron: int
    tokens: tuple[int, ...]


class ActivationSource(Protocol):
    """Answers requests in order; an implementation may batch, dedupe and reorder internally."""

    def __call__(self, requests: Sequence[Request]) -> list[np.ndarray]: ...
