"""The work directory: every stage's on-disk output, written atomically.

Layout of a work dir (default ``.n2g/<run-name>/``)::

    run.json                 manifest: model, corpus, mining options (a work dir never mixes two runs)
    vocab.json               token id -> display string (so render never needs the model)
    tokenizer/               the model's tokenizer.json + tokenizer_config.json, when it has a fast
                             tokenizer (the site's in-browser playground tokenizes with it)
    corpus.json              the mined documents: id, title, split ("train" or "heldout")
    mine/layer_{L:02d}.npz   MinedLayer: top-k and bottom-k windows of the selected neurons, a sample of
                             windows over their activation range (the band sample) + stats of
                             every neuron (two-sided histogram) + the selected neurons' activations on a
                             sample of ordinary held-out text
    mine/shard_{i}of{n}.npz  one mining shard's running state (mine --shard i/n), until merge combines
                             the n of them into the layer files (mine_shards.py)
    fit/L{L:02d}/N{N:05d}.json   one fitted N2G graph per neuron (see n2g/graph.py for the schema)
    fit/L{L:02d}/N{N:05d}.neg.json   its negative side's graph, fitted on -activation (fit --polarity both)
    evaluate/L{L:02d}/N{N:05d}.json  N2G and baselines scored on held-out text (evaluate.py)
    evaluate/L{L:02d}/N{N:05d}.neg.json  the same for the negative side's graph
    evaluate/layer_{L:02d}.csv   the same, one row per neuron x dataset x method (.neg.csv: negative sides)
    evaluate/summary.json        per-layer means, dead and always-on counts
    relate/similar.json      nearest neurons by graph content (relate stage, see relate.py)
    relate/logit_{L:02d}.json  tokens each neuron's output weights promote / suppress (relate stage)
    docs/                    rendered Markdown + assets for MkDocs (render stage)
    fragments/               heavy HTML put into pages after Markdown (render stage)
    mkdocs.yml               the derived MkDocs config (publish stage)

Every file is written to a temporary name in the same folder and renamed into place, so a killed run
never leaves a half-written file that a later stage would trust.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson

from .config import CPU_BATCH_TOKENS, UserError

MANIFEST = "run.json"
LEGACY_DTYPE = "fp32"  # the dtype of work dirs whose run.json predates --dtype (everything ran in fp32)


SIDES = ("positive", "negative")  # a neuron's sides: its fit and evaluate files are N.json and N.neg.json
_SUFFIX = {"positive": ".json", "negative": ".neg.json"}
_NEURON_FILE = re.compile(r"N(\d+)(\.neg)?\.json")


def neuron_file(name: str) -> tuple[int, str] | None:
    """(neuron, side) of a fit or evaluate file name (``N00012.json``, ``N00012.neg.json``); None otherwise."""
    match = _NEURON_FILE.fullmatch(name)
    if match is None:
        return None
    return int(match.group(1)), "negative" if match.group(2) else "positive"


def _side_file(folder: Path, neuron: int, side: str) -> Path:
    if side not in _SUFFIX:
        raise ValueError(f"side {side!r} is not one of {SIDES}")
    return folder / f"N{neuron:05d}{_SUFFIX[side]}"


def fit_file_settings(data: dict[str, Any]) -> tuple[dict[str, Any] | None, str, str]:
    """A fit file's (config, dtype, device), with what files from before each key meant: fp32, the CPU, and
    ``fit_batch_tokens`` 4096 (they were fitted in groups of 4). Fit's reuse check and merge's shard check
    both read fit files through this."""
    config = data.get("config")
    if isinstance(config, dict):
        config = {**config, "fit_batch_tokens": config.get("fit_batch_tokens", CPU_BATCH_TOKENS)}
    else:
        config = None
    return config, data.get("dtype", LEGACY_DTYPE), data.get("device", "cpu")


_UMASK = os.umask(0)
os.umask(_UMASK)
VOCAB = "vocab.json"
CORPUS = "corpus.json"


def ensure_writable(folder: Path, flag: str) -> None:
    """Create ``folder`` if needed and check a file can be written there, else a UserError naming ``flag``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".n2g-write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(
            f"{flag} {str(folder)!r} is not a writable folder ({exc.strerror or type(exc).__name__}): "
            f"pass another {flag}"
        ) from None


@contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces ``path`` only when the ``with`` block ends without an
    error: written to a temporary file in the same folder, synced, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; published files must be world-readable
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any, *, indent: int | None = None) -> None:
    """Deterministic JSON (sorted keys) written atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


def read_json(path: Path) -> Any:
    """A JSON file (orjson: a 50k-neuron render reads ~100,000 fit and evaluation files)."""
    return orjson.loads(path.read_bytes())


def read_stage_file(path: Path, stage: str) -> dict[str, Any] | None:
    """A stage's JSON object at ``path``; None when the file does not exist. A file that is not valid JSON,
    or not an object, raises a UserError that names it and the command that rewrites it (``n2g-site
    {stage}``: a stage skips what is done, so the damaged file must go first)."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}): delete it and rerun `n2g-site {stage}`") from None
    if not isinstance(data, dict):
        raise UserError(
            f"{path} holds a JSON {type(data).__name__}, not an object: delete it and rerun `n2g-site {stage}`"
        )
    return data


@dataclass
class ExampleSet:
    """The k most extreme windows for n neurons, k slots each, W tokens per window.

    Windows are cut around the token where the neuron peaked in one mined sequence ("the pivot"),
    so each slot is one sequence: no sequence appears twice in a neuron's set. A top set (``train``,
    ``heldout``) peaks at each sequence's highest activation, slots sorted by value highest first; a
    bottom set (``bottom_train``, ``bottom_heldout``) at each sequence's lowest, sorted lowest (most
    negative) first, with the raw activations (negative where the neuron went below zero). Equal peaks: the
    window mined earlier in the pass first (batch number, then row in the batch). Empty slots
    (a corpus too small for k) have ``doc == -1`` and ``value == -inf`` in a top set, ``+inf`` in a
    bottom set.
    """

    tokens: np.ndarray  # int32 [n, k, W]; -1 = padding (window ran past a document edge)
    acts: np.ndarray  # float32 [n, k, W]; activation of the neuron at each token; NaN at padding
    doc: np.ndarray  # int32 [n, k]; index into corpus.json, -1 = empty slot
    start: np.ndarray  # int32 [n, k]; position in the document of the window's first token
    pivot: np.ndarray  # int32 [n, k]; index in the window of the peak token
    value: np.ndarray  # float32 [n, k]; the peak activation (= acts at pivot)

    @classmethod
    def empty(cls, n: int, k: int, width: int, *, lowest: bool = False) -> ExampleSet:
        """``n`` neurons' empty slots: of a top set, or of a bottom set (``lowest``: value +inf)."""
        return cls(
            tokens=np.full((n, k, width), -1, np.int32),
            acts=np.full((n, k, width), np.nan, np.float32),
            doc=np.full((n, k), -1, np.int32),
            start=np.zeros((n, k), np.int32),
            pivot=np.zeros((n, k), np.int32),
            value=np.full((n, k), np.inf if lowest else -np.inf, np.float32),
        )

    def windows(self, row: int, limit: int | None = None) -> list[Window]:
        """The filled windows of one neuron (row), padding trimmed, best first (the first ``limit`` of them)."""
        out: list[Window] = []
        for slot in range(self.doc.shape[1]):
            if limit is not None and len(out) >= limit:
                break
            if self.doc[row, slot] < 0:
                continue
            keep = self.tokens[row, slot] >= 0
            lead = int(np.argmax(keep))  # padding before the document start
            out.append(
                Window(
                    tokens=self.tokens[row, slot][keep].astype(np.int64),
                    acts=self.acts[row, slot][keep].astype(np.float64),
                    doc=int(self.doc[row, slot]),
                    start=int(self.start[row, slot]) + lead,
                    pivot=int(self.pivot[row, slot]) - lead,
                    value=float(self.value[row, slot]),
                )
            )
        return out


@dataclass
class Window:
    """One top- (or bottom-) activating example: token ids and the neuron's activation at each."""

    tokens: np.ndarray  # int64 [W]
    acts: np.ndarray  # float64 [W]
    doc: int
    start: int
    pivot: int  # index into tokens of the peak
    value: float


# Format of mine/layer_LL.npz (its "format" array; files without one are format 1):
#   1: top windows only; histogram over LEGACY_HIST_EDGES (one-sided).
#   2: bottom windows too (bottom_train.*, bottom_heldout.*); two-sided histogram over HIST_EDGES, whose
#      edges the file holds (stats.edges). The mining checkpoint and shard files carry it too ("_format").
#   3: band samples too (band_train.*, band_heldout.*: mine.BandSample, windows sampled over the whole
#      activation range), unless mined with --band-windows 0. Format-2 files load with none (band_* None).
MINED_FORMAT = 3
# The activation bands a band sample is grouped into: lower edges as shares of the neuron's max (A_max); a
# band runs to the next edge, the last to 1 (and above: a held-out window may peak above the training max).
BAND_EDGES = (0.2, 0.4, 0.6, 0.8)


def band_of(share: float) -> int | None:
    """The band (index into BAND_EDGES) of a peak at ``share`` x A_max; None below the lowest band (or NaN).

    >>> band_of(0.45), band_of(1.3), band_of(0.1)
    (1, 3, None)
    """
    hits = [i for i, edge in enumerate(BAND_EDGES) if share >= edge]
    return hits[-1] if hits else None


# The two-sided histogram (format 2). Bins are by magnitude, two per octave from 2**-10 (~0.001) to
# 2**10 (1024): HIST_MAGNITUDES = 2**-10, 1.5 * 2**-10, 2**-9, 1.5 * 2**-9, ..., 2**10 (41 edges, 40
# bins). The positive side mirrors the negative one around a zero bin:
#   bin 0        x <= -1024 (and -inf)
#   bins 1..40   the negative magnitude bins, from -1024 up towards zero
#   bin 41       the zero bin, |x| < 2**-10 (both zeros, subnormals)
#   bins 42..81  the positive magnitude bins, from 2**-10 up to 1024
#   bin 82       x >= 1024 (+inf and NaN too)
# HIST_EDGES (82 values, increasing) are the bins' boundaries; each bin holds the edge nearer zero:
# positive bin [e, e'), negative bin (-e', -e]. These edges are boundaries of float32 values (sign,
# exponent and the first mantissa bit), so mining bins a value from its bits (mine.StatsAccumulator) and
# the rule above is exact, not subject to rounding.
HIST_MAGNITUDES = np.array([2.0 ** (m // 2 - 10) * (1.5 if m % 2 else 1.0) for m in range(41)])
HIST_EDGES = np.concatenate([-HIST_MAGNITUDES[::-1], HIST_MAGNITUDES])
HIST_ZERO_BIN = len(HIST_MAGNITUDES)  # 41
# The histogram of format-1 files: bin 0 everything below 1e-3 (negatives included), then 8 bins per
# decade up to 1e3, the last bin everything above; bin b holds [LEGACY_HIST_EDGES[b-1], LEGACY_HIST_EDGES[b]).
LEGACY_HIST_EDGES = np.logspace(-3, 3, 49)


@dataclass
class LayerStats:
    """Activation statistics of every neuron of a layer over all mined tokens (both splits).

    "Dead", on each side: a neuron is dead on the positive side (``dead_positive``) when no mined token
    took it above 0 (max <= 0), dead on the negative side (``dead_negative``) when none took it below 0
    (min >= 0). A ReLU neuron is never alive below 0; a GELU neuron always dips a little below (to about
    -0.17), so its negative side is alive but small: how far each side reaches is ``max`` and ``min``.
    """

    max: np.ndarray  # float32 [d_mlp]
    min: np.ndarray  # float32 [d_mlp]
    mean: np.ndarray  # float32 [d_mlp]
    hist: np.ndarray  # int64 [d_mlp, len(edges) + 1]; counts of raw activations in the bins of ``edges``
    tokens: int  # how many tokens were mined
    edges: np.ndarray = field(default_factory=lambda: HIST_EDGES.copy())  # HIST_EDGES, or LEGACY_HIST_EDGES

    @property
    def two_sided(self) -> bool:
        """Whether the histogram has negative bins (format 2); a format-1 one lumps all negatives in bin 0."""
        return bool(self.edges[0] < 0)

    @property
    def dead_positive(self) -> np.ndarray:
        """bool [d_mlp]: never above 0 on a mined token."""
        return self.max <= 0

    @property
    def dead_negative(self) -> np.ndarray:
        """bool [d_mlp]: never below 0 on a mined token."""
        return self.min >= 0

    def _bins(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper edge of each bin (-inf / +inf for the outer two)."""
        edges = self.edges.astype(np.float64)
        return np.concatenate([[-np.inf], edges]), np.concatenate([edges, [np.inf]])

    def firing_share(self, threshold: float = 0.5) -> np.ndarray:
        """Share of mined tokens where each neuron reached ``threshold`` x its max (from the histogram);
        0 where the neuron is dead on the positive side.

        Approximate to one bin (a factor of 1.5 in the two-sided histogram, 1.33 in the legacy one): bins
        are counted whole when their lower edge is at or above the cut, and the bin holding the cut is split
        by its log-scale overlap.
        """
        lower, upper = self._bins()
        return self._share(lower, upper, threshold * self.max.astype(np.float64), self.max > 0)

    def negative_share(self, threshold: float = 0.5) -> np.ndarray:
        """The negative side's counterpart of ``firing_share``: share of mined tokens at or below
        ``threshold`` x the neuron's min; 0 where it is dead on the negative side. NaN for every neuron of a
        legacy (one-sided) histogram, which does not tell the negatives apart."""
        if not self.two_sided:
            return np.full(self.min.shape, np.nan)
        lower, upper = self._bins()  # mirrored: a bin's magnitudes are [-upper, -lower]
        cut = -threshold * self.min.astype(np.float64)
        return self._share(-upper[::-1], -lower[::-1], cut, self.min < 0, flip=True)

    def _share(
        self, lower: np.ndarray, upper: np.ndarray, cut_values: np.ndarray, alive: np.ndarray, flip: bool = False
    ) -> np.ndarray:
        """Share of tokens in the bins at or above ``cut`` (per neuron), for bins ``lower``/``upper`` in
        increasing order; ``flip``: the histogram's columns are in the reverse order of these bins."""
        cut = cut_values[:, None]  # [d_mlp, 1]
        hist = self.hist[:, ::-1] if flip else self.hist
        whole = lower[None, :] >= cut
        part = (lower[None, :] < cut) & (upper[None, :] > cut) & (lower > 0)[None, :] & np.isfinite(upper)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(part, np.log(upper / np.maximum(cut, 1e-12)) / np.log(upper / lower), 0.0)
        counts = (hist * whole).sum(axis=1) + (hist * np.nan_to_num(frac)).sum(axis=1)
        share = counts / max(self.tokens, 1)
        return np.where(alive, share, 0.0)


@dataclass
class OrdinaryText:
    """The first held-out rows of the mining pass, whole (not chosen by activation): where a graph that
    fires too often is caught. Rows are right-padded with -1 tokens and NaN activations."""

    tokens: np.ndarray  # int32 [R, T]
    acts: np.ndarray  # float16 [n, R, T]: activations of the selected neurons (MinedLayer.neurons order)
    doc: np.ndarray  # int32 [R]: index into corpus.json

    @classmethod
    def empty(cls) -> OrdinaryText:
        return cls(np.zeros((0, 0), np.int32), np.zeros((0, 0, 0), np.float16), np.zeros(0, np.int32))

    def rows(self, row: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(tokens, activations) of each text row for one neuron, padding trimmed."""
        out = []
        for r in range(self.tokens.shape[0]):
            keep = self.tokens[r] >= 0
            out.append((self.tokens[r][keep].astype(np.int64), self.acts[row, r][keep].astype(np.float64)))
        return out


@dataclass
class MinedLayer:
    """mine/layer_{L:02d}.npz: one layer's mining output (format MINED_FORMAT; older formats load too)."""

    layer: int
    neurons: np.ndarray  # int64 [n]: the selected neurons, in the row order of the example sets
    train: ExampleSet  # top windows per split
    heldout: ExampleSet
    stats: LayerStats
    ordinary: OrdinaryText = field(default_factory=OrdinaryText.empty)  # empty: mined with --ordinary-tokens 0
    bottom_train: ExampleSet | None = None  # bottom windows per split; None: a format-1 file (mined before)
    bottom_heldout: ExampleSet | None = None
    # Windows sampled over each split's activation range (mine.BandSample), highest peak first; None: a file of
    # format 2 or older, or mined with --band-windows 0 (``version`` tells which).
    band_train: ExampleSet | None = None
    band_heldout: ExampleSet | None = None
    version: int = MINED_FORMAT  # the file's mine format, as loaded (save writes MINED_FORMAT)

    SETS = ("train", "heldout", "bottom_train", "bottom_heldout", "band_train", "band_heldout")

    @property
    def band_note(self) -> str:
        """Why the layer has no band sample ("" when it has one)."""
        if self.band_train is not None:
            return ""
        if self.version < 3:
            return f"mined in format {self.version}, before band samples (mine it again in a fresh work dir for them)"
        return "mined with --band-windows 0"

    def row(self, neuron: int) -> int:
        hits = np.flatnonzero(self.neurons == neuron)
        if hits.size == 0:
            raise KeyError(f"neuron {neuron} of layer {self.layer} was not mined")
        return int(hits[0])

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {
            "format": np.array(MINED_FORMAT),
            "layer": np.array(self.layer),
            "neurons": self.neurons,
        }
        for name in self.SETS:
            ex = getattr(self, name)
            if ex is None:  # no band sample (--band-windows 0), or a layer built by hand (tests, benchmarks)
                continue
            for f in fields(ExampleSet):
                arrays[f"{name}.{f.name}"] = getattr(ex, f.name)
        for f in fields(LayerStats):
            arrays[f"stats.{f.name}"] = np.asarray(getattr(self.stats, f.name))
        for f in fields(OrdinaryText):
            arrays[f"ordinary.{f.name}"] = getattr(self.ordinary, f.name)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> MinedLayer:
        with np.load(path) as z:
            version = int(z["format"]) if "format" in z.files else 1
            if version > MINED_FORMAT:
                raise UserError(
                    f"{path} is mine format {version}, newer than this n2g-site reads ({MINED_FORMAT}): "
                    f"upgrade n2g-site, or delete the file and rerun `n2g-site mine`"
                )
            sets = {
                name: ExampleSet(**{f.name: z[f"{name}.{f.name}"] for f in fields(ExampleSet)})
                for name in cls.SETS
                if f"{name}.value" in z.files  # bottom sets: absent in format 1
            }
            stats = LayerStats(
                **{f.name: z[f"stats.{f.name}"] for f in fields(LayerStats) if f.name != "edges"},
                edges=z["stats.edges"] if "stats.edges" in z.files else LEGACY_HIST_EDGES.copy(),
            )
            stats.tokens = int(stats.tokens)
            ordinary = (  # absent in files mined before the ordinary-text sample existed
                OrdinaryText(**{f.name: z[f"ordinary.{f.name}"] for f in fields(OrdinaryText)})
                if "ordinary.tokens" in z.files
                else OrdinaryText.empty()
            )
            return cls(
                layer=int(z["layer"]), neurons=z["neurons"], stats=stats, ordinary=ordinary, version=version, **sets
            )


@dataclass(frozen=True)
class WorkDir:
    """Paths inside one run's work dir."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def vocab(self) -> Path:
        return self.root / VOCAB

    @property
    def corpus(self) -> Path:
        return self.root / CORPUS

    @property
    def tokenizer(self) -> Path:
        """The model's tokenizer as Hugging Face ``tokenizer.json`` (the playground's tokenizer)."""
        return self.root / "tokenizer" / "tokenizer.json"

    @property
    def tokenizer_config(self) -> Path:
        return self.root / "tokenizer" / "tokenizer_config.json"

    def mined(self, layer: int) -> Path:
        return self.root / "mine" / f"layer_{layer:02d}.npz"

    def mine_shard(self, index: int, count: int) -> Path:
        return self.root / "mine" / f"shard_{index}of{count}.npz"

    def mined_digest(self, layer: int) -> str | None:
        """The content digest of a mined layer as run.json records it (None: mined before digests existed)."""
        if not self.manifest.exists():
            return None
        return (read_json(self.manifest).get("mined") or {}).get(str(layer))

    def fitted(self, layer: int, neuron: int, side: str = "positive") -> Path:
        return _side_file(self.root / "fit" / f"L{layer:02d}", neuron, side)

    @property
    def similar(self) -> Path:
        return self.root / "relate" / "similar.json"

    def logit_effects(self, layer: int) -> Path:
        return self.root / "relate" / f"logit_{layer:02d}.json"

    def scored_text(self, name: str, layer: int) -> Path:
        """The fitted neurons' sparse activations on a text evaluate ran the model over (ood.py):
        ``name`` "ood" (--ood-corpus) or "ordinary" (--ordinary-eval-tokens)."""
        return self.root / name / f"layer_{layer:02d}.npz"

    def ood(self, layer: int) -> Path:
        return self.scored_text("ood", layer)

    def evaluated(self, layer: int, neuron: int, side: str = "positive") -> Path:
        return _side_file(self.root / "evaluate" / f"L{layer:02d}", neuron, side)

    def evaluated_layer(self, layer: int, side: str = "positive") -> Path:
        return self.root / "evaluate" / f"layer_{layer:02d}{'.neg' if side == 'negative' else ''}.csv"

    @property
    def evaluation_summary(self) -> Path:
        return self.root / "evaluate" / "summary.json"

    @property
    def docs(self) -> Path:
        return self.root / "docs"

    @property
    def fragments(self) -> Path:
        return self.root / "fragments"

    @property
    def mkdocs_config(self) -> Path:
        return self.root / "mkdocs.yml"

    def require(self, path: Path, stage: str) -> Path:
        if not path.exists():
            raise UserError(
                f"{path} is missing: run `n2g-site {stage}` with the same options first "
                f"(or `n2g-site build`, which runs every stage)"
            )
        return path

    def check_identity(self, identity: dict[str, Any]) -> dict[str, Any]:
        """Refuse a work dir made for another model, corpus or mining setup; return its manifest.

        ``identity`` holds what makes mined data comparable (model, corpus, seed, hook, mining options).
        Everything else in the manifest (e.g. which layers were mined) may grow between runs.
        """
        old = read_json(self.manifest) if self.manifest.exists() else {}
        if old:
            old.setdefault("dtype", LEGACY_DTYPE)
            if isinstance(old.get("mine"), dict):  # mined before --band-windows: without a band sample
                old["mine"] = {**old["mine"], "band_windows": old["mine"].get("band_windows", 0)}
        diffs = [
            f"{key}={old[key]!r} (now {value!r})" for key, value in identity.items() if key in old and old[key] != value
        ]
        if diffs:
            raise UserError(
                f"work dir {self.root} was made with {'; '.join(diffs)}: pass another --work-dir, "
                f"or delete {self.root} to start fresh"
            )
        return {**old, **identity}

    # One reader per stage file, one policy for all of them: a missing file is None (that stage has not run
    # for it, and the site shows what is there); a file that is there but not a JSON object is a UserError
    # naming it and the command that writes it again. Silently skipping it would publish a site with a hole.

    def read_fit(self, layer: int, neuron: int, side: str = "positive") -> dict[str, Any] | None:
        """``fit/LLL/NNNNN.json`` (``.neg.json``: the negative side; written by ``n2g-site fit``)."""
        return read_stage_file(self.fitted(layer, neuron, side), "fit")

    def read_evaluation(self, layer: int, neuron: int, side: str = "positive") -> dict[str, Any] | None:
        """``evaluate/LLL/NNNNN.json`` (``.neg.json``: the negative side; written by ``n2g-site evaluate``)."""
        return read_stage_file(self.evaluated(layer, neuron, side), "evaluate")

    def read_evaluation_summary(self) -> dict[str, Any] | None:
        """``evaluate/summary.json``."""
        return read_stage_file(self.evaluation_summary, "evaluate")

    def read_similar(self) -> dict[str, Any] | None:
        """``relate/similar.json`` (written by ``n2g-site relate``)."""
        return read_stage_file(self.similar, "relate")

    def read_logit_effects(self, layer: int) -> dict[str, Any] | None:
        """``relate/logit_LL.json``."""
        return read_stage_file(self.logit_effects(layer), "relate")

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json(self.manifest, manifest, indent=2)

    def load_manifest(self) -> dict[str, Any]:
        return read_json(self.require(self.manifest, "mine"))

    def load_vocab(self) -> list[str]:
        return read_json(self.require(self.vocab, "mine"))

    def load_corpus_index(self) -> list[dict[str, str]]:
        return read_json(self.require(self.corpus, "mine"))


def content_digest(path: Path) -> str:
    """A hash of an ``.npz`` file's arrays (names, dtypes, shapes, bytes), not of its zip bytes: the zip holds
    write times, so two writes of the same arrays differ as files but have one digest."""
    import hashlib

    digest = hashlib.sha256()
    with np.load(path) as z:
        for name in sorted(z.files):
            value = np.ascontiguousarray(z[name])
            digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
            digest.update(value.tobytes())
    return "sha256:" + digest.hexdigest()[:32]


def dataclass_dict(obj: Any) -> dict[str, Any]:
    return asdict(obj)
