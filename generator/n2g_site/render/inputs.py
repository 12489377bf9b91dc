"""What rendering any layer reads once per process: the run's manifest, vocabulary, corpus index, the
relate stage's outputs, the Jinja templates and the site's build metadata (:class:`Shared`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from .. import __version__ as _pkg_version  # fallback when run.json lacks a version
from ..config import Config
from ..store import WorkDir, read_json
from . import guide
from .contexts import LogitToken, LogitView, SimilarView, SiteInfo
from .jinja_env import load_templates, make_env
from .tokens import display_token, vocab_text


class Corpus:
    """Document titles and (for Wikipedia) links, from the corpus index mine wrote."""

    def __init__(self, index: list[dict[str, str]], manifest: dict[str, Any]):
        self.index = index
        info = manifest.get("corpus_info") or {}
        base = info.get("url")
        self.wiki = bool(base) and "wikipedia.org" in str(base)
        self.base = str(base).rstrip("/") if base else None

    def title(self, doc: int) -> str:
        if 0 <= doc < len(self.index):
            return str(self.index[doc].get("title") or self.index[doc].get("id") or f"document {doc}")
        return f"document {doc}"

    def url(self, doc: int) -> str | None:
        if not self.wiki or not (0 <= doc < len(self.index)):
            return None
        title = self.index[doc].get("title")
        if not title:
            return None
        return f"{self.base}/wiki/{quote(str(title).replace(' ', '_'), safe='')}"


class Related:
    """The relate stage's outputs, when present (a site renders without them; a damaged file is a UserError,
    store.read_stage_file)."""

    def __init__(self, work: WorkDir, vocab: list[str]):
        self.work, self.vocab = work, vocab
        data = work.read_similar() or {}
        self.similar: dict[str, list] = data.get("neurons") or {}
        self.tokens: dict[str, list[str]] = data.get("tokens") or {}
        self.by_activation: dict[str, list] = data.get("activation") or {}  # neighbours on ordinary text
        self.activation_tokens = int(data.get("activation_tokens") or 0)  # tokens those cosines compare
        self._logits: dict[str, Any] = {}
        self._norm = ""

    def load_layer(self, layer: int) -> None:
        data = self.work.read_logit_effects(layer) or {}
        self._logits = data.get("neurons") or {}
        self._norm = str(data.get("norm") or "")

    def similar_raw(self, layer: int, neuron: int, *, by_activation: bool = False) -> list:
        source = self.by_activation if by_activation else self.similar
        return list(source.get(f"{layer}/{neuron}") or [])

    def logit_raw(self, neuron: int) -> tuple[dict[str, Any] | None, str]:
        return self._logits.get(str(neuron)) or None, self._norm

    def similar_views(self, layer: int, neuron: int, *, by_activation: bool = False) -> list[SimilarView]:
        return [
            SimilarView(
                label=f"L{l2} N{n2}",
                url=f"../../L{l2}/N{n2}/",
                similarity=float(sim),
                tokens=list(self.tokens.get(f"{l2}/{n2}") or []),
            )
            for l2, n2, sim in self.similar_raw(layer, neuron, by_activation=by_activation)
        ]

    def _tok(self, tid: int) -> str:
        return display_token(vocab_text(self.vocab, tid))

    def logit_view(self, neuron: int, limit: int | None = None) -> LogitView | None:
        """The neuron's strongest promoted and suppressed tokens (the first ``limit`` of each)."""
        entry = self._logits.get(str(neuron))
        if not entry:
            return None
        return LogitView(
            promoted=[LogitToken(self._tok(int(t)), float(v)) for t, v in (entry.get("up") or [])[:limit]],
            suppressed=[LogitToken(self._tok(int(t)), float(v)) for t, v in (entry.get("down") or [])[:limit]],
            norm=self._norm,
        )


@dataclass
class Shared:
    """What rendering any layer needs (built once per process)."""

    work: WorkDir
    manifest: dict[str, Any]
    vocab: list[str]  # raw token strings (the JSON export)
    shown: list[str]  # vocabulary, inline display form
    corpus: Corpus
    related: Related
    env: jinja2.Environment
    tpl: dict[str, jinja2.Template]
    site: SiteInfo
    layers: list[int]
    selected: dict[int, list[int]]
    hook_pattern: str
    staged_docs: Path
    staged_frag: Path
    playground: bool  # the work dir has the model's tokenizer: neuron pages get a playground
    build: dict[str, Any]  # guide.build_info(): in every export record, export/index.json, the home page


def load_shared(cfg: Config, work: WorkDir, staged_docs: Path, staged_frag: Path) -> Shared:
    manifest = read_json(work.require(work.manifest, "mine"))
    vocab = work.load_vocab()
    env = make_env(cfg)
    model_info = manifest.get("model_info") or {}
    corpus_info = manifest.get("corpus_info") or {}
    layers = sorted(int(layer) for layer in manifest.get("layers", []))
    selected = {int(k): [int(n) for n in v] for k, v in (manifest.get("neurons") or {}).items()}
    version = str(manifest.get("n2g_site_version") or _pkg_version)
    return Shared(
        work=work,
        manifest=manifest,
        vocab=vocab,
        shown=[display_token(t, inline=True) for t in vocab],
        corpus=Corpus(work.load_corpus_index(), manifest),
        related=Related(work, vocab),
        env=env,
        tpl=load_templates(env),
        site=SiteInfo(
            version=version,
            model=str(model_info.get("name") or manifest.get("model") or "?"),
            corpus=str(corpus_info.get("name") or manifest.get("corpus") or "?"),
            build_date=guide.build_date(),
        ),
        layers=layers,
        selected=selected,
        hook_pattern=str(model_info.get("hook") or "blocks.{layer}.mlp.hook_post"),
        staged_docs=staged_docs,
        staged_frag=staged_frag,
        playground=work.tokenizer.is_file(),
        build=guide.build_info(
            manifest,
            version=version,
            date=guide.build_date(),
            fit=guide.first_fit(work, layers, selected),
            evaluate=guide.evaluate_options(work),
        ),
    )
