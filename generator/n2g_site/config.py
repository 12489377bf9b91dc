"""One validated configuration for a run, built from command-line flags and an optional ``n2g.toml``.

Every error names the bad value and the fix, and is raised as :class:`UserError`, which the CLI turns
into one line on stderr and exit code 2.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


class UserError(Exception):
    """A mistake the user can fix: the message names the bad value and what to do."""


DEFAULT_MODEL = "smollm2-135m"
DEFAULT_CORPUS = "wiki"
# The demo: 4 neurons in each of 6 evenly spaced layers (see README "What the demo covers").
DEFAULT_LAYER_COUNT = 6
DEFAULT_NEURONS = "0-3"


def parse_ranges(text: str, *, what: str) -> tuple[int, ...]:
    """Parse ``"0,3-5"`` into ``(0, 3, 4, 5)``: sorted, without duplicates.

    >>> parse_ranges("0,3-5", what="--layers")
    (0, 3, 4, 5)
    """
    values: set[int] = set()
    for part in text.replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise UserError(
                f"{what} {text!r} is not a list of numbers and ranges: write it like '0,3-5'"
            )
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) else lo
        if hi < lo:
            raise UserError(f"{what} range {part!r} runs backwards: write it as '{hi}-{lo}'")
        values.update(range(lo, hi + 1))
    return tuple(sorted(values))


@dataclass(frozen=True)
class MineConfig:
    """How top-activating examples are mined (one streaming pass over the corpus)."""

    top_k: int = 20  # examples kept per neuron and split (the paper used 20 Neuroscope windows)
    context_before: int = 40  # tokens kept before the peak token (N2G's prune looks back at most 30)
    context_after: int = 12  # tokens kept after it (prune keeps at most 5 of right context)
    seq_len: int = 256  # mined sequence length; longer documents are cut into windows of this size
    max_tokens: int = 100_000  # corpus budget for mining (0 = the whole corpus)
    held_out: float = 0.2  # share of documents held out for evaluation (split by document id hash)
    ordinary_tokens: int = 4096  # held-out text kept whole (any activation) to catch graphs that over-fire
    batch_tokens: int = 4096  # tokens per forward batch while mining

    def validate(self) -> None:
        _positive(self, "top_k", "context_before", "seq_len", "batch_tokens")
        if self.context_after < 0:
            raise UserError(f"--context-after {self.context_after} must be 0 or more")
        if self.ordinary_tokens < 0:
            raise UserError(f"--ordinary-tokens {self.ordinary_tokens} must be 0 or more")
        if self.max_tokens < 0:
            raise UserError(f"--max-tokens {self.max_tokens} must be 0 (whole corpus) or more")
        if not 0 < self.held_out < 1:
            raise UserError(f"--held-out {self.held_out} must be a share between 0 and 1, e.g. 0.2")

    @property
    def width(self) -> int:
        return self.context_before + 1 + self.context_after


AUGMENTERS = ("auto", "self", "mlm", "none")


@dataclass(frozen=True)
class FitConfig:
    """N2G hyperparameters. Defaults are those of the original code's paper runs (n2g-algorithm.md sec 9).

    Each field is a command-line option (``--train-examples`` ...) and a key of ``[fit]`` in n2g.toml; each
    neuron's fit file records the values it was fitted with. README "N2G hyperparameters" maps them to the
    original code's names.
    """

    train_examples: int = 10  # top training windows a graph is fitted on (paper: 10 of 20)
    pivot_threshold: float = 1.0  # pivots: tokens at >= this share of the window's peak (1 = the peak only)
    prune_threshold: float = 0.5  # prune keeps the shortest context where the pivot keeps > this share
    prune_step: int = 5  # prune grows the left context by this many tokens at a time
    prune_max_context: int = 30  # ... up to this many tokens (the longest candidate is taken if none pass)
    post_context: int = 5  # tokens kept after the pivot, within its sentence
    sentence_ends: str = ".!\n"  # characters that end a sentence (prune keeps no right context past them)
    mask_token: str | None = None  # saliency mask (a token string or id); None = the model's pad/unk/eos
    activation_threshold: float = 0.5  # a token "activates" when norm act > this (strict), graph + activator
    importance_threshold: float = 0.75  # a context token is kept when its importance > this (strict)
    fire_threshold: float = 0.5  # scoring: a token fires when its normalised activation >= this
    augmenter: str = "auto"  # auto (mlm if its model is on disk, else self), self, mlm, none
    augment_importance_threshold: float = 0.8  # tokens this important (>=) for the peak get replaced
    augment_per_position: int = 5  # replacements tried per replaced token
    augment_min_prob: float = 1e-5  # replacement candidates below this probability are not tried
    augment_keep_threshold: float = 0.5  # a variant is positive when its peak >= this share of the prompt's
    mlm_model: str = "distilbert-base-uncased"  # the masked LM of the mlm augmenter (Hugging Face name or dir)
    # Trie nodes per fit forward batch; neurons are fitted in lockstep groups of fit_batch_tokens // 1024.
    # None = 4096 with --device cpu, 262144 with cuda/mps (fit.py resolves and records the number).
    fit_batch_tokens: int | None = None

    def validate(self) -> None:
        _positive(self, "train_examples", "prune_step", "prune_max_context")
        if self.fit_batch_tokens is not None and self.fit_batch_tokens < 1:
            raise UserError(f"--fit-batch-tokens {self.fit_batch_tokens} must be 1 or more, e.g. 4096 (CPU) or 262144 (GPU)")
        if self.augment_per_position < 0:
            raise UserError(f"--augment-per-position {self.augment_per_position} must be 0 or more")
        for name in ("activation_threshold", "importance_threshold", "prune_threshold", "pivot_threshold", "fire_threshold",
                     "augment_importance_threshold", "augment_min_prob", "augment_keep_threshold"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise UserError(f"--{name.replace('_', '-')} {value} must lie between 0 and 1")
        if self.pivot_threshold == 0:
            raise UserError("--pivot-threshold 0 would make every token a pivot: use a share above 0, e.g. 0.75")
        if self.post_context < 0:
            raise UserError(f"--post-context {self.post_context} must be 0 or more")
        if self.augmenter not in AUGMENTERS:
            raise UserError(f"--augmenter {self.augmenter!r} is not one of {', '.join(AUGMENTERS)}")


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value < 1:
            raise UserError(f"--{name.replace('_', '-')} {value} must be 1 or more")


@dataclass(frozen=True)
class Config:
    """Everything one run needs. Stages read only this (and the work dir)."""

    model: str = DEFAULT_MODEL
    corpus: str = DEFAULT_CORPUS
    layers: str | None = None  # e.g. "0,3-5"; None = the demo's evenly spaced layers
    neurons: str | None = None  # e.g. "0-15"; None = DEFAULT_NEURONS
    all_neurons: bool = False  # every neuron of the selected layers
    work_dir: Path | None = None  # None = .n2g/<run-name>
    site_dir: Path = Path("site")
    device: str = "cpu"
    seed: int = 0
    hook: str | None = None  # override the neuron hook, e.g. "blocks.{layer}.mlp.hook_pre"
    templates: Path | None = None  # a folder whose templates override the built-in ones
    site_url: str | None = None  # public URL (sets the sub-path on GitHub Pages)
    zip_site: bool = False  # publish: also write <site dir>.zip, the offline bundle (bundle.py)
    ngram: int = 5  # evaluate: the n-gram baseline matches the activating token and its n-1 predecessors
    bad_utf8: str = "fail"  # a corpus file that is not UTF-8: "fail" (name it and stop) or "skip" (count it)
    shard: str | None = None  # "i/n": fit only the i-th of n disjoint parts of the neurons (i from 0)
    checkpoint_seconds: float = 120.0  # mine: save a resumable checkpoint this often
    mine: MineConfig = field(default_factory=MineConfig)
    fit: FitConfig = field(default_factory=FitConfig)

    @property
    def shard_index(self) -> tuple[int, int]:
        """(i, n) of ``--shard i/n``; (0, 1) when not sharded."""
        if self.shard is None:
            return 0, 1
        match = re.fullmatch(r"(\d+)/(\d+)", self.shard.strip())
        if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
            raise UserError(f"--shard {self.shard!r} must be 'i/n' with 0 <= i < n, e.g. '0/3', '1/3', '2/3'")
        return int(match.group(1)), int(match.group(2))

    def validate(self) -> Config:
        self.shard_index  # noqa: B018 - validates
        if self.bad_utf8 not in ("fail", "skip"):
            raise UserError(f"--bad-utf8 {self.bad_utf8!r} must be 'fail' or 'skip'")
        if self.checkpoint_seconds < 0:
            raise UserError(f"--checkpoint-seconds {self.checkpoint_seconds} must be 0 (every batch) or more")
        if self.ngram < 1:
            raise UserError(f"--ngram {self.ngram} must be 1 or more (1 = the token alone)")
        self.mine.validate()
        self.fit.validate()
        if self.layers is not None:
            parse_ranges(self.layers, what="--layers")
        if self.neurons is not None:
            if self.all_neurons:
                raise UserError("--neurons and --all both choose neurons: pass only one of them")
            parse_ranges(self.neurons, what="--neurons")
        if self.device not in ("cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            raise UserError(f"--device {self.device!r} is not one of cpu, cuda, cuda:N, mps")
        return self

    @property
    def run_name(self) -> str:
        def slug(text: str) -> str:
            return re.sub(r"[^A-Za-z0-9_.-]+", "-", text.strip("/")).strip("-").lower() or "run"

        return f"{slug(Path(self.model).name if '/' in self.model else self.model)}__{slug(Path(self.corpus).name)}"

    @property
    def work_path(self) -> Path:
        return self.work_dir if self.work_dir is not None else Path(".n2g") / self.run_name

    def select_layers(self, n_layers: int) -> tuple[int, ...]:
        if self.layers is None:
            count = min(DEFAULT_LAYER_COUNT, n_layers)
            if count == 1:
                return (0,)
            return tuple(sorted({round(i * (n_layers - 1) / (count - 1)) for i in range(count)}))
        layers = parse_ranges(self.layers, what="--layers")
        bad = [layer for layer in layers if layer >= n_layers]
        if bad:
            raise UserError(
                f"--layers {self.layers!r}: layer {bad[0]} is out of range, the model has layers 0-{n_layers - 1}"
            )
        return layers

    def select_neurons(self, d_mlp: int) -> tuple[int, ...]:
        if self.all_neurons:
            return tuple(range(d_mlp))
        text = self.neurons if self.neurons is not None else DEFAULT_NEURONS
        neurons = parse_ranges(text, what="--neurons")
        bad = [n for n in neurons if n >= d_mlp]
        if bad:
            raise UserError(
                f"--neurons {text!r}: neuron {bad[0]} is out of range, each layer has neurons 0-{d_mlp - 1}"
            )
        return neurons


def load_toml(path: Path) -> dict[str, Any]:
    """Read an ``n2g.toml``: top-level keys are Config fields, ``[mine]`` and ``[fit]`` their sections."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--config {str(path)!r} does not exist: pass the path of an n2g.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"--config {str(path)!r} is not valid TOML: {exc}") from None
    return data


def merge(base: Config, overrides: dict[str, Any], *, source: str) -> Config:
    """Apply ``overrides`` (from a TOML file or from flags the user set) onto ``base``, checking key names."""
    top = {f.name for f in fields(Config)}
    sections = {"mine": MineConfig, "fit": FitConfig}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key in sections:
            if not isinstance(value, dict):
                raise UserError(f"{source}: [{key}] must be a table of options")
            known = {f.name for f in fields(sections[key])}
            sub = {k.replace("-", "_"): v for k, v in value.items()}
            unknown = sorted(set(sub) - known)
            if unknown:
                raise UserError(
                    f"{source}: unknown option {unknown[0]!r} in [{key}]; known: {', '.join(sorted(known))}"
                )
            changes[key] = replace(changes.get(key, getattr(base, key)), **sub)
        elif key in top:
            if key in ("work_dir", "site_dir", "templates") and value is not None:
                value = Path(value)
            changes[key] = value
        else:
            raise UserError(f"{source}: unknown option {key!r}; known: {', '.join(sorted(top))}")
    return replace(base, **changes)
