"""Augmentation: variants of a pruned prompt with one important token replaced (docs/algorithm.md, "Augment").

A *proposer* suggests replacement tokens for chosen positions of each prompt, with a probability; this
module turns suggestions into variant prompts. The fit measures each variant and feeds the ones that still
activate into the graph, so context the training windows never showed (" at Paris" next to " in Paris")
and substitutes for the activating token itself are learned too.

Proposers (``--augmenter``): ``self`` asks the analysed model which tokens it expects at the position
(``proposers.SelfProposer``), ``mlm`` asks a masked LM such as the paper's DistilBERT
(``proposers.MlmProposer``), ``none`` proposes nothing.

Differences from the original, on purpose: replacements are single tokens of the analysed model, swapped
in by id (no text round trip, so positions stay aligned); a candidate equal to the *replaced* token after
normalisation is skipped (the original compared with a leftover variable); variants are deduplicated;
digits may be varied as well as letters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol


class Proposer(Protocol):
    name: str

    def __call__(
        self, prompts: Sequence[tuple[int, ...]], positions: Sequence[Sequence[int]]
    ) -> list[list[list[tuple[int, float]]]]:
        """For each prompt and each of its listed positions: (token id, probability), most likely first."""
        ...


@dataclass(frozen=True)
class Variant:
    tokens: tuple[int, ...]
    position: int  # the replaced position
    original: int  # the token id it replaced
    probability: float


@lru_cache(maxsize=1 << 18)
def _wordlike(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def make_variants(
    prompts: Sequence[tuple[int, ...]],
    positions: Sequence[Sequence[int]],
    proposals: Sequence[Sequence[Sequence[tuple[int, float]]]],
    *,
    text: Sequence[str],
    keys: Sequence[str],
    special: frozenset[int],
    per_position: int,
    min_prob: float,
) -> list[list[Variant]]:
    """Filter proposals into at most ``per_position`` distinct variants per replaced position."""
    out = []
    for prompt, where, options in zip(prompts, positions, proposals):
        seen = {prompt}
        variants = []
        for k, candidates in zip(where, options):
            kept = 0
            for token, prob in candidates:
                if kept >= per_position or prob < min_prob:
                    break
                if token in special or not _wordlike(text[token]) or keys[token] == keys[prompt[k]]:
                    continue
                tokens = prompt[:k] + (token,) + prompt[k + 1 :]
                if tokens in seen:
                    continue
                seen.add(tokens)
                variants.append(Variant(tokens, k, prompt[k], float(prob)))
                kept += 1
        out.append(variants)
    return out
