"""Prune an example to its key context (``fast_prune`` in the original; docs/algorithm.md, "Prune").

Candidates are the pivot with 5, 10, ... 30 tokens of left context (the whole prefix too when it is shorter
than the cap), each led by the doc-start token and followed by up to 5 tokens of right context that stay in
the pivot's sentence. The shortest candidate whose peak is still at the pivot, with more than half the
original activation there, wins; if none does, the longest is taken.

Differences from the original, on purpose: token ids are sliced, never joined to text and re-tokenized (no
shifted boundaries, no doubled BOS); all candidates of all examples go to the model in one batched round
instead of shortest-first batches of 4 (same choice, one round trip); the doc-start token is ignored when
looking for the peak (it can carry an outlier activation that means nothing); right context is appended to
every candidate, so the winner's activations serve as the unmasked row of the saliency pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Candidate:
    start: int  # index in the window of the first context token
    end: int  # index in the window after the last right-context token
    tokens: tuple[int, ...]  # [bos] + window[start:end]
    pivot: int  # index of the pivot in ``tokens``


@dataclass(frozen=True)
class Pruned:
    candidate: Candidate
    acts: np.ndarray  # activations along candidate.tokens
    scale_factor: float  # full-context pivot activation / pruned-context peak
    passed: bool  # False when no candidate kept the pivot (the longest was taken)


def right_end(token_text: Sequence[str], pivot: int, post_context: int, sentence_ends: str) -> int:
    """Index after the last right-context token: at most ``post_context`` tokens, none past a sentence end.

    A token containing a sentence-end character closes the sentence and is itself kept.
    """
    end = pivot + 1
    if any(ch in token_text[pivot] for ch in sentence_ends):
        return end
    for j in range(pivot + 1, min(len(token_text), pivot + 1 + post_context)):
        end = j + 1
        if any(ch in token_text[j] for ch in sentence_ends):
            break
    return end


def candidates(
    window: Sequence[int] | np.ndarray, pivot: int, *, bos_id: int | None, step: int, max_context: int, end: int
) -> list[Candidate]:
    """Shortest first. ``window[pivot]`` is the peak; left context never includes a leading doc-start token.

    Empty when the pivot is that doc-start token itself (there is no text to explain).
    """
    lead = () if bos_id is None else (bos_id,)
    first = 1 if bos_id is not None and len(window) and window[0] == bos_id else 0
    available = pivot + 1 - first  # tokens from the first real token up to the pivot, inclusive
    if available < 1:
        return []
    lengths = [n for n in range(step, max_context + 1, step) if n <= available]
    if available <= max_context and available not in lengths:
        lengths.append(available)
    out = []
    window = window.tolist() if isinstance(window, np.ndarray) else [int(t) for t in window]
    for n in sorted(lengths):
        start = pivot + 1 - n
        tokens = lead + tuple(window[start:end])
        out.append(Candidate(start, end, tokens, len(lead) + pivot - start))
    return out


def choose(
    cands: Sequence[Candidate], acts: Sequence[np.ndarray], full_value: float, threshold: float, skip_lead: bool
) -> Pruned:
    """The first candidate whose peak (over positions up to the pivot) is the pivot and exceeds
    ``threshold`` x ``full_value``; else the longest."""
    first = 1 if skip_lead else 0
    for cand, a in zip(cands, acts):
        head = a[first : cand.pivot + 1]
        if int(np.argmax(head)) + first == cand.pivot and a[cand.pivot] > threshold * full_value:
            return Pruned(cand, a, _scale(full_value, float(a[cand.pivot])), True)
    cand, a = cands[-1], acts[-1]
    return Pruned(cand, a, _scale(full_value, float(np.max(a[first : cand.pivot + 1]))), False)


def _scale(full_value: float, pruned_value: float) -> float:
    return full_value / pruned_value if pruned_value > 0 else 1.0
