"""Synthetic neurons with known rules, and a toy vocabulary: oracles for the N2G algorithm."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from n2g_site.n2g.graph import normalise
from n2g_site.n2g.phases import Example, NeuronTask, Vocabulary
from n2g_site.n2g.requests import Request

WORDS = [
    "<|endoftext|>",
    "<mask>",
    " in",
    " Paris",
    " London",
    " the",
    " city",
    " of",
    " lives",
    " He",
    " She",
    " was",
    " born",
    " at",
    ".",
    " and",
    " visited",
    " to",
    " from",
    " near",
    " big",
    " a",
    " on",
    " Monday",
    "\n",
    " went",
    " is",
    " beautiful",
    " France",
]
VOCAB = Vocabulary(text=WORDS, keys=[normalise(w) for w in WORDS], bos_id=0, mask_id=1)
ID = {w: i for i, w in enumerate(WORDS)}

Rule = Callable[[Sequence[int], int], float]


def paris_after_in(tokens: Sequence[int], t: int) -> float:
    """Fires 1.0 on ' Paris' when ' in' is just before it; 0.2 on other ' Paris'."""
    if tokens[t] != ID[" Paris"]:
        return 0.0
    return 1.0 if t > 0 and tokens[t - 1] == ID[" in"] else 0.2


class SyntheticSource:
    """An ActivationSource whose neurons follow hand-written rules; counts what it was asked."""

    def __init__(self, rules: dict[tuple[int, int], Rule]) -> None:
        self.rules = rules
        self.requests = 0

    def activations(self, layer: int, neuron: int, tokens: Sequence[int]) -> np.ndarray:
        rule = self.rules[(layer, neuron)]
        return np.array([rule(tokens, t) for t in range(len(tokens))], dtype=np.float64)

    def __call__(self, requests: Sequence[Request]) -> list[np.ndarray]:
        self.requests += len(requests)
        return [self.activations(r.layer, r.neuron, r.tokens) for r in requests]


def encode(text: str) -> list[int]:
    """Greedy split of text into WORDS (the toy vocabulary has no unknowns in our sentences)."""
    out, rest = [], text
    while rest:
        match = max((w for w in WORDS if rest.startswith(w)), key=len)
        out.append(ID[match])
        rest = rest[len(match) :]
    return out


def task_from_texts(source: SyntheticSource, layer: int, neuron: int, texts: Sequence[str]) -> NeuronTask:
    examples = []
    for rank, text in enumerate(texts):
        tokens = np.array([VOCAB.bos_id] + encode(text), dtype=np.int64)
        acts = source.activations(layer, neuron, tokens)
        examples.append(Example(tokens=tokens, acts=acts, pivot=int(np.argmax(acts)), rank=rank))
    top = max(float(ex.acts.max()) for ex in examples)
    return NeuronTask(layer, neuron, examples, max_activation=top)


def paris_after_two(tokens: Sequence[int], t: int) -> float:
    """Fires 1.0 on ' Paris' when ' in' is two tokens back (anything in between); 0.2 on other ' Paris'."""
    if tokens[t] != ID[" Paris"]:
        return 0.0
    return 1.0 if t > 1 and tokens[t - 2] == ID[" in"] else 0.2


def paris_after_place_word(tokens: Sequence[int], t: int) -> float:
    """Fires 1.0 on ' Paris' after any of ' in', ' at', ' near'; 0.2 on other ' Paris'."""
    if tokens[t] != ID[" Paris"]:
        return 0.0
    return 1.0 if t > 0 and tokens[t - 1] in (ID[" in"], ID[" at"], ID[" near"]) else 0.2


def paris_anywhere(tokens: Sequence[int], t: int) -> float:
    """Fires 0.9 on every ' Paris', whatever comes before."""
    return 0.9 if tokens[t] == ID[" Paris"] else 0.0


def never(tokens: Sequence[int], t: int) -> float:
    """A dead neuron: slightly negative everywhere (as gated MLP neurons are when off)."""
    return -0.01


def almost_everything(tokens: Sequence[int], t: int) -> float:
    """Fires 1.0 on every word; not on the doc-start token, the mask or punctuation."""
    return 0.0 if tokens[t] in (ID["<|endoftext|>"], ID["<mask>"], ID["."], ID["\n"]) else 1.0


class TableProposer:
    """An augmentation proposer with fixed candidates, like a masked LM that knows a few words."""

    name = "table"

    def __init__(self, words: Sequence[str]) -> None:
        self.candidates = [(ID[w], 0.1) for w in words]
        self.asked = 0

    def __call__(self, prompts, positions):
        self.asked += sum(map(len, positions))
        return [[list(self.candidates) for _ in where] for where in positions]
