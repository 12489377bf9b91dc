"""Augmentation: variants of a pruned prompt with some tokens replaced (n2g-algorithm.md sec 4).

An augmenter proposes variant prompts; the fit then measures each variant's activation and saliency and
feeds the ones that still fire (and the ones that do not) into the graph. This release ships ``none``;
``self`` (replacements from the analysed model) and ``mlm`` (the paper's DistilBERT) plug in here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Augmenter(Protocol):
    name: str

    def __call__(self, prompts: Sequence[tuple[int, ...]], important: Sequence[Sequence[int]]) -> list[list[tuple[int, ...]]]:
        """For each prompt and its important positions, the variant prompts to try."""
        ...


class NoAugmenter:
    """Ablation / this release's default: no variants."""

    name = "none"

    def __call__(self, prompts: Sequence[tuple[int, ...]], important: Sequence[Sequence[int]]) -> list[list[tuple[int, ...]]]:
        return [[] for _ in prompts]


def make_augmenter(name: str) -> Augmenter:
    if name == "none":
        return NoAugmenter()
    raise ValueError(f"unknown augmenter {name!r}")
