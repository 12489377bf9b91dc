"""Replacement proposers for N2G augmentation (the torch side of ``n2g/augment.py``).

- ``self`` (:class:`SelfProposer`): the analysed model's own next-token distribution at the position before
  the replaced token, i.e. the tokens this model finds plausible in that context. Needs no second model,
  so it works offline; one forward pass per prompt, stopped at the unembedding, whose input is unembedded
  only at the positions asked about; softmax and top-k run on the model's device, so only ``[positions,
  32]`` ids and probabilities come back.
- ``mlm`` (:class:`MlmProposer`): a masked LM fills the replaced token's slot, as in the paper
  (``distilbert-base-uncased``). Candidates are words of the masked LM, kept when the analysed model's
  tokenizer encodes them (with the replaced token's leading space and casing) as a single token.
- ``auto``: ``mlm`` when its model loads from the local Hugging Face cache or a folder, else ``self``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .config import FitConfig, UserError
from .models import LoadedModel

CANDIDATES = 32  # candidates fetched per position before filtering (per_position of them are kept)
UNEMBED_CHUNK = 1024  # positions unembedded (and soft-maxed) at a time: [1024, d_vocab] floats


def top_candidates(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and probabilities of the ``CANDIDATES`` most likely next tokens, per row of ``logits``
    (where the logits are: on the model's device)."""
    top = logits.float().softmax(dim=-1).topk(min(CANDIDATES, logits.shape[-1]), dim=-1)
    return top.indices, top.values


class SelfProposer:
    name = "self"

    def __init__(self, model: LoadedModel, batch_tokens: int = 4096) -> None:
        self.model = model
        self.batch_tokens = batch_tokens
        self.tokens_run = 0

    def __call__(
        self, prompts: Sequence[tuple[int, ...]], positions: Sequence[Sequence[int]]
    ) -> list[list[list[tuple[int, float]]]]:
        """Candidates for each position of each prompt, most likely first. Position 0 has no left context
        (a model without a doc-start token can be asked about it): it gets none."""
        out: list[list[list[tuple[int, float]]]] = [[[] for _ in where] for where in positions]
        asked = [[(j, k) for j, k in enumerate(where) if k > 0] for where in positions]
        jobs = sorted((i for i, where in enumerate(asked) if where), key=lambda i: max(k for _, k in asked[i]))
        batch: list[int] = []
        for i in jobs + [None]:  # None flushes the last batch
            width = max(k for _, k in asked[i]) if i is not None else 0
            if batch and (i is None or (len(batch) + 1) * width > self.batch_tokens):
                self._run(batch, prompts, asked, out)
                batch = []
            if i is not None:
                batch.append(i)
        return out

    def _run(
        self,
        batch: list[int],
        prompts: Sequence[tuple[int, ...]],
        asked: Sequence[Sequence[tuple[int, int]]],
        out: list[list[list[tuple[int, float]]]],
    ) -> None:
        """``asked[i]``: (slot in ``out[i]``, position >= 1) pairs of prompt i."""
        width = max(k for i in batch for _, k in asked[i])  # logits at k-1 predict position k
        tokens = torch.zeros((len(batch), width), dtype=torch.long)
        rows, cols = [], []
        for row, i in enumerate(batch):
            prefix = prompts[i][: max(k for _, k in asked[i])]
            tokens[row, : len(prefix)] = torch.tensor(prefix)
            self.tokens_run += len(prefix)
            rows += [row] * len(asked[i])
            cols += [k - 1 for _, k in asked[i]]
        device = self.model.device
        ids: list[list[int]] = []
        probs: list[list[float]] = []
        with torch.inference_mode():
            hidden, are_logits = self._final_hidden(tokens.to(device))
            rows_t, cols_t = torch.tensor(rows, device=device), torch.tensor(cols, device=device)
            for a in range(0, len(rows), UNEMBED_CHUNK):  # [chunk, d_vocab] logits at a time
                logits = hidden[rows_t[a : a + UNEMBED_CHUNK], cols_t[a : a + UNEMBED_CHUNK]]
                if not are_logits:  # only the positions asked about are unembedded
                    logits = self.model.bridge.unembed(logits[None])[0]
                top_ids, top_probs = top_candidates(logits)
                ids += top_ids.cpu().tolist()
                probs += top_probs.cpu().tolist()
        at = 0
        for i in batch:
            for j, _ in asked[i]:
                out[i][j] = list(zip(ids[at], probs[at]))
                at += 1

    def _final_hidden(self, tokens: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """The unembedding's input ``[B, W, d_model]`` (the forward stops there) and False; for a model
        without that hook, the full logits ``[B, W, d_vocab]`` and True."""
        bridge = self.model.bridge
        if getattr(bridge, "unembed", None) is None or "unembed.hook_in" not in getattr(bridge, "hook_dict", {}):
            return bridge(tokens), True
        saved: list[torch.Tensor] = []

        def save(x: torch.Tensor, hook: object) -> None:
            saved.append(x)
            raise _Unembedding

        with contextlib.suppress(_Unembedding):
            bridge.run_with_hooks(tokens, fwd_hooks=[("unembed.hook_in", save)])
        return saved[0], False


class _Unembedding(Exception):
    """Raised from the unembedding's input hook: the rest of the forward runs on the chosen positions only."""


class MlmProposer:
    name = "mlm"

    def __init__(
        self,
        tokenizer: Any,
        mlm: Any,
        text: Sequence[str],
        encode: Callable[[str], list[int]],
        first: int,
        device: Any = "cpu",
    ) -> None:
        # The masked LM runs where the analysed model runs (its forwards are a large share of a GPU fit).
        self.device = torch.device(device)
        self.tokenizer, self.mlm = tokenizer, mlm.to(self.device).eval()
        self.text, self.encode, self.first = text, encode, first
        self.tokens_run = 0

    @classmethod
    def load(
        cls,
        name: str,
        text: Sequence[str],
        encode: Callable[[str], list[int]],
        first: int,
        *,
        local_only: bool,
        device: Any = "cpu",
    ) -> MlmProposer:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
            mlm = AutoModelForMaskedLM.from_pretrained(name, local_files_only=local_only)
        except (OSError, ValueError) as exc:
            raise UserError(
                f"--mlm-model {name!r} could not be loaded ({type(exc).__name__}): it needs a network or a local "
                "copy (pass its folder), or use --augmenter self"
            ) from None
        return cls(tokenizer, mlm, text, encode, first, device)

    def __call__(
        self, prompts: Sequence[tuple[int, ...]], positions: Sequence[Sequence[int]]
    ) -> list[list[list[tuple[int, float]]]]:
        out: list[list[list[tuple[int, float]]]] = [[[] for _ in where] for where in positions]
        texts, slots = [], []
        for i, (prompt, where) in enumerate(zip(prompts, positions)):
            for j, k in enumerate(where):
                before = "".join(self.text[t] for t in prompt[self.first : k])
                after = "".join(self.text[t] for t in prompt[k + 1 :])
                word = self.text[prompt[k]]
                space = word[: len(word) - len(word.lstrip())]
                texts.append(f"{before}{space}{self.tokenizer.mask_token}{after}")
                slots.append((i, j, space, word.strip()))
        if not texts:
            return out
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
        self.tokens_run += int(enc["attention_mask"].sum())
        is_mask = enc["input_ids"] == self.tokenizer.mask_token_id
        present = is_mask.any(dim=1).tolist()  # False: the mask was truncated away
        slot = is_mask.int().argmax(dim=1).to(self.device)  # each row's first mask position
        with torch.inference_mode():
            logits = self.mlm(**{k: v.to(self.device) for k, v in enc.items()}).logits
            # Only each row's mask position leaves the device, as its top candidates.
            picked = logits[torch.arange(len(texts), device=self.device), slot].float().softmax(dim=-1)
            top = picked.topk(min(CANDIDATES, picked.shape[-1]), dim=-1)
        indices, values = top.indices.cpu().tolist(), top.values.cpu().tolist()
        for row, (i, j, space, original) in enumerate(slots):
            if not present[row]:
                continue
            for word_id, prob in zip(indices[row], values[row]):
                word = self.tokenizer.convert_ids_to_tokens(word_id)
                if not word or word.startswith("##") or word in self.tokenizer.all_special_tokens:
                    continue
                if original.istitle():
                    word = word.capitalize()
                elif original.isupper() and len(original) > 1:
                    word = word.upper()
                ids = self.encode(space + word)
                if len(ids) == 1:
                    out[i][j].append((ids[0], float(prob)))
        return out


def make_proposer(
    cfg: FitConfig, model: LoadedModel, text: Sequence[str], batch_tokens: int
) -> SelfProposer | MlmProposer | None:
    """The proposer for ``--augmenter`` (None for 'none'); 'auto' never touches the network."""
    first = 0 if model.bos_id is None else 1
    if cfg.augmenter == "none":
        return None
    if cfg.augmenter == "self":
        return SelfProposer(model, batch_tokens)
    if cfg.augmenter == "mlm":
        return MlmProposer.load(cfg.mlm_model, text, model.encode, first, local_only=False, device=model.device)
    try:
        return MlmProposer.load(cfg.mlm_model, text, model.encode, first, local_only=True, device=model.device)
    except UserError:
        return SelfProposer(model, batch_tokens)
