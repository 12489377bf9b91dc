"""The fit stage: one N2G graph per selected neuron, from its mined training windows.

Writes ``fit/L{L:02d}/N{N:05d}.json`` per neuron (schema ``n2g-site/neuron-fit/1``, below), atomically, so
a killed run resumes with the neurons it has not written yet. A neuron whose file exists with the same fit
options is not fitted again. Each file also carries a first fidelity score: the graph's predictions on the
neuron's held-out top windows (evaluate.py; the full evaluation against baselines is its own stage).

    {"schema": "n2g-site/neuron-fit/1", "layer", "neuron", "hook", "status": "fitted" | "dead",
     "max_activation": A_max, "augmenter", "config": {fit options}, "dtype": --dtype, "mined": the mined
     layer's content digest (run.json), "device": device type, "bos", "mask",
     "graph": {graph.py schema}, "examples": [{rank, doc, window_start, pivot, prune_start, prune_end,
     prune_passed, scale_factor, variants, positive_variants, lines}],
     "band_share": fit.band_rule (null: top windows only), "training_windows": [{set: "top" | "band", rank,
     doc, window_start, value}] (the windows fitted on),
     "heldout": evaluate.Scores | null,
     "cost": {phase: {"requests", "tokens"}} for phase in prune, saliency, augment, augment_saliency
             (this neuron's activation requests before the engine dedupes them)}

Neurons are fitted in lockstep: a fixed group of neurons of one layer goes through each N2G phase together,
so a phase is one or a few large forward batches. The group size comes from ``--fit-batch-tokens`` (trie
nodes per forward batch): ``fit_batch_tokens // NODES_PER_NEURON`` neurons, about one batch per phase.
Its default depends on ``--device`` as the user gave it (never on the memory or the device found), and the
resolved number is recorded in every fit file's ``config``, so runs, resumes and shards that agree on the
options cut the selection into the same groups and write the same bytes.

Training windows. With ``--paper``, the first ``--train-examples`` top windows, as the paper. Otherwise
those and the windows of the band sample (mine.BandSample) that peak at ``--fire-threshold`` x A_max or
more (``band_rule``): the top windows all sit near the neuron's max, so the contexts where it fires
moderately were never fitted and the graph missed them (low recall). The fit file lists the windows it was
fitted on (``training_windows``).

A neuron is *dead* when its best training window peaks at or below 0: it gets a file (and a page that
says so) but no graph.

Sides (``--polarity``). ``positive`` (the default) fits each neuron's top side, as the paper does. ``both``
also fits its negative side into ``fit/L{L:02d}/N{N:05d}.neg.json``: the same schema with ``"polarity":
"negative"``, fitted by the same N2G phases on -activation (:class:`~n2g_site.n2g.requests.Negated`) from the
neuron's bottom mined windows (``MinedLayer.bottom_train``), so ``max_activation`` is the magnitude of its
most negative training activation (A_min = -max_activation) and a node's value is activation / A_min. That
side is *dead* when no bottom training window goes below 0 (GELU neurons reach about -0.17 at most; gated
MLP neurons are signed and often go further below 0 than above). Each side's file is reused, resumed,
sharded and merged on its own; a file records ``"polarity"`` (files from before the option are positive).
The option is not part of ``config``: the positive files of a ``both`` run are the ones a ``positive`` run
writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from .calibrate import Calibrator, paper_graph, recalibratable
from .config import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, Config, FitConfig
from .engine import BatchedEngine
from .evaluate import score_graph
from .models import LoadedModel
from .n2g.graph import Graph, normalise
from .n2g.phases import Example, NeuronTask, Vocabulary, fit_neurons
from .n2g.predict import KeyIndex
from .n2g.requests import ActivationSource, Negated
from .polarity import SIGN, side_windows
from .progress import advance, bar, say
from .proposers import make_proposer
from .store import MinedLayer, WorkDir, fit_file_settings, read_json, write_json

SCHEMA = "n2g-site/neuron-fit/1"
SIDES_OF = {"positive": ("positive",), "both": ("positive", "negative")}  # --polarity -> the sides fitted
NODES_PER_NEURON = 1024  # trie nodes one neuron sends to a phase, roughly (SmolLM2, self augmenter: 300-1,500)


@dataclass
class FitSummary:
    fitted: int
    skipped: int
    dead: int
    seconds: float
    tokens: int


def _is_current(path, options: dict, dtype: str, mined: str | None = None, device: str = "cpu") -> bool:
    return _reuse(path, options, dtype, mined, device) == "current"


def _reuse(path, options: dict, dtype: str, mined: str | None, device: str) -> str:
    """ "current" (nothing to do), "recalibrate" (the same fit but for the calibration options: calibrate its
    paper graph again, calibrate.recalibratable) or "fit"."""
    if not path.exists():
        return "fit"
    try:
        data = read_json(path)
    except ValueError:  # not JSON: a file we did not write; fit again
        return "fit"
    if data.get("schema") != SCHEMA or data.get("mined") != mined:
        return "fit"
    config, file_dtype, file_device = fit_file_settings(data)
    if (file_dtype, file_device) != (dtype, device):
        return "fit"
    if "band_share" in data:  # another window rule (files from before band samples: top windows, as --paper)
        positive = data.get("polarity", "positive") == "positive"
        wanted = None if not positive or options.get("paper") else options.get("fire_threshold")
        if data["band_share"] != wanted:
            return "windows"  # fit again unless the rule picks the same windows (fit._same_windows)
    if config == options:
        return "current"
    return "recalibrate" if data.get("status") == "fitted" and recalibratable(config, options) else "fit"


def _tasks(
    mined: MinedLayer, neurons: list[int], limit: int, side: str = "positive", band_share: float | None = None
) -> list[NeuronTask]:
    """One task per neuron: its first ``limit`` training windows of ``side``. A negative task's activations
    are sign-flipped (its most negative tokens become peaks), and its A_max is the largest of them.

    ``band_share`` (the positive side, not with --paper: ``band_rule``): also the windows of the training band
    sample (MinedLayer.band_train) that peak at this share of A_max or more and are not among the top windows
    taken, after them, highest first: moderately activating contexts that the top windows, all near the
    neuron's max, leave out. Their ranks continue the top windows' (``training_windows`` names each one's set)."""
    sign = SIGN[side]
    windows_of = side_windows(mined, side, "train")
    bands = mined.band_train if side == "positive" and band_share is not None else None
    tasks = []
    for neuron in neurons:
        windows = windows_of.windows(mined.row(neuron))[:limit]
        tops = len(windows)
        if side == "positive":
            top = windows[0].value if windows else 0.0
        else:
            top = max((sign * w.value for w in windows), default=0.0)
        if bands is not None and band_share is not None and top > 0:
            taken = {(w.doc, w.start) for w in windows}
            windows = windows + [
                w
                for w in bands.windows(mined.row(neuron))
                if w.value >= band_share * top and (w.doc, w.start) not in taken
            ]
        examples = [Example(w.tokens, sign * w.acts, w.pivot, rank, w.doc, w.start) for rank, w in enumerate(windows)]
        tasks.append(NeuronTask(mined.layer, neuron, examples, float(top), top_examples=tops))
    return tasks


def band_rule(cfg: Config) -> float | None:
    """The share of A_max at which a band-sample window joins the training windows: the firing threshold
    (--fire-threshold, 0.5: what evaluate counts as firing, so every added window holds a token the graph is
    scored on); None with --paper (the top windows only, as the paper)."""
    return None if cfg.fit.paper else cfg.evaluate.fire_threshold


def training_windows(task: NeuronTask) -> list[dict]:
    """The fit file's record of the windows a graph was fitted on: each one's set ("top": the mined top
    windows, "band": the band sample), rank among the training windows, document, start and peak."""
    return [
        {
            "set": "top" if ex.rank < task.top_examples else "band",
            "rank": ex.rank,
            "doc": ex.doc,
            "window_start": ex.start,
            "value": round(float(ex.acts[ex.pivot]), 6),
        }
        for ex in task.examples
    ]


def _same_windows(work: WorkDir, reuse: dict[tuple[int, int, str], str], options: dict, cfg: Config) -> None:
    """Resolve ``reuse``'s "windows" entries (a fit file of another band rule, fit._reuse) in place: when the
    options' rule picks the windows the file was fitted on (no band window joins, e.g. none reaches the
    share, or the layer has no band sample), the file is reused as its config allows ("current" or
    "recalibrate"); otherwise it is fitted again."""
    layers = sorted({layer for (layer, _, _), how in reuse.items() if how == "windows"})
    for layer in layers:
        mined = MinedLayer.load(work.mined(layer))
        for (lay, neuron, side), how in list(reuse.items()):
            if lay != layer or how != "windows":
                continue
            data = read_json(work.fitted(layer, neuron, side))
            [task] = _tasks(
                mined, [neuron], cfg.fit.train_examples, side, band_rule(cfg) if side == "positive" else None
            )
            if training_windows(task) != data.get("training_windows"):
                reuse[(lay, neuron, side)] = "fit"
                continue
            config, _, _ = fit_file_settings(data)
            if config == options:
                reuse[(lay, neuron, side)] = "current"
            elif data.get("status") == "fitted" and recalibratable(config, options):
                reuse[(lay, neuron, side)] = "recalibrate"
            else:
                reuse[(lay, neuron, side)] = "fit"


def fit_options(cfg: Config) -> FitConfig:
    """``cfg.fit`` with ``fit_batch_tokens`` resolved from the options (``--device`` as given, not as found)."""
    if cfg.fit.fit_batch_tokens is not None:
        return cfg.fit
    return replace(cfg.fit, fit_batch_tokens=CPU_BATCH_TOKENS if cfg.device == "cpu" else GPU_BATCH_TOKENS)


def resolved_batch_tokens(options: FitConfig) -> int:
    """``fit_batch_tokens`` of options resolved by :func:`fit_options`, where it is never None."""
    if options.fit_batch_tokens is None:
        raise ValueError("fit_batch_tokens is not resolved: pass the options through fit_options(cfg) first")
    return options.fit_batch_tokens


def group_size(options: FitConfig) -> int:
    """Neurons fitted together: enough for about one forward batch of ``fit_batch_tokens`` per phase."""
    return max(1, resolved_batch_tokens(options) // NODES_PER_NEURON)


def plan(cfg: Config, n_layers: int, d_mlp: int) -> list[tuple[int, tuple[int, ...]]]:
    """The fixed groups of neurons fitted together (this shard's share of them).

    Groups are cut from the whole selection, not from what is left to do, so a resumed or sharded run
    batches every neuron with the same companions as an uninterrupted one and writes identical files.
    """
    neurons = cfg.select_neurons(d_mlp)
    size = group_size(fit_options(cfg))
    groups = [
        (layer, tuple(neurons[i : i + size]))
        for layer in cfg.select_layers(n_layers)
        for i in range(0, len(neurons), size)
    ]
    index, count = cfg.shard_index
    return [g for k, g in enumerate(groups) if k % count == index]


def fit(cfg: Config, load_model: Callable[[], LoadedModel], work: WorkDir) -> FitSummary:
    work.load_manifest()
    manifest = work.check_identity({"dtype": cfg.dtype})  # fits use the mined windows' activations
    info = manifest["model_info"]
    resolved = fit_options(cfg)
    options = replace(cfg, fit=resolved).fit_record()
    groups = plan(cfg, info["n_layers"], info["d_mlp"])
    for layer in sorted({layer for layer, _ in groups}):
        work.require(work.mined(layer), "mine")
    digests = {layer: (manifest.get("mined") or {}).get(str(layer)) for layer, _ in groups}  # the mined data
    device = cfg.device.split(":")[0]
    sides = SIDES_OF[cfg.fit.polarity]
    reuse = {
        (layer, n, side): _reuse(work.fitted(layer, n, side), options, cfg.dtype, digests[layer], device)
        for layer, neurons in groups
        for side in sides
        for n in neurons
    }
    _same_windows(work, reuse, options, cfg)
    todo = [
        (layer, neurons, side)
        for layer, neurons in groups
        for side in sides
        if any(reuse[(layer, n, side)] == "fit" for n in neurons)
    ]
    refitted = {(layer, n, side) for layer, neurons, side in todo for n in neurons}
    again = sorted(k for k, how in reuse.items() if how == "recalibrate" and k not in refitted)
    total = sum(len(g[1]) for g in todo)
    skipped = sum(len(g[1]) for g in groups) * len(sides) - total - len(again)
    shard = f" (shard {cfg.shard})" if cfg.shard else ""
    what = "neurons" if sides == ("positive",) else "neuron sides"
    if not total and not again:
        say(f"fit: all {skipped} selected {what}{shard} are already fitted, nothing to do")
        return FitSummary(0, skipped, 0, 0.0, 0)
    model = load_model()
    batch_tokens = resolved_batch_tokens(resolved)
    engine = BatchedEngine(model, batch_tokens)
    sources: dict[str, ActivationSource] = {"positive": engine, "negative": Negated(engine)}
    text = work.load_vocab()
    mask_id = model.mask_id if cfg.fit.mask_token is None else model.token_id(cfg.fit.mask_token)
    vocab = Vocabulary(
        text=text,
        keys=[normalise(t) for t in text],
        bos_id=model.bos_id,
        mask_id=mask_id,
        special=frozenset(int(i) for i in model.tokenizer.all_special_ids),
    )
    keys = KeyIndex(text)
    wanted: dict[int, dict[int, float]] = {}  # the positive sides to calibrate (the negative side is not)
    positive = [(layer, n) for layer, neurons, side in todo if side == "positive" for n in neurons]
    positive += [(layer, n) for layer, n, side in again if side == "positive"]
    for layer in sorted({layer for layer, _ in positive}):
        mined_layer = MinedLayer.load(work.mined(layer))
        chosen = [n for k, n in positive if k == layer]
        # A_max as the fit file records it (and evaluate's passes use it), so the passes' files agree
        wanted[layer] = {n: round(t.max_activation, 6) for n, t in zip(chosen, _tasks(mined_layer, chosen, 1))}
        wanted[layer] = {n: a for n, a in wanted[layer].items() if a > 0}
    calibrator = Calibrator.prepare(cfg, work, lambda: model, wanted, keys, model.bos_id)
    if again:
        _recalibrate(work, again, calibrator, keys, cfg, options, model.bos_id)
        if not total:
            return FitSummary(0, skipped, 0, 0.0, 0)
    proposer = make_proposer(resolved, model, text, batch_tokens)
    augmenter = proposer.name if proposer is not None else "none"
    started = time.perf_counter()
    fitted = dead = 0
    layers = sorted({layer for layer, _, _ in todo})
    say(
        f"fit: {total} {what} in layers {','.join(map(str, layers))}{shard} ({skipped} already done), "
        f"augmenter {augmenter!r}, groups of {group_size(resolved)} neurons, {batch_tokens:,}-node batches"
    )
    mined: MinedLayer | None = None
    noted: set[int] = set()  # layers whose missing band sample was said
    with bar("fit", total, what) as progress:
        for layer, neurons, side in todo:
            if mined is None or mined.layer != layer:
                mined = MinedLayer.load(work.mined(layer))
            if side == "positive" and band_rule(cfg) is not None and mined.band_note and mined.layer not in noted:
                say(f"[yellow]fit: layer {mined.layer} has no band sample ({mined.band_note}): top windows only")
                noted.add(mined.layer)
            group = _tasks(mined, list(neurons), cfg.fit.train_examples, side, band_rule(cfg))
            for result in fit_neurons(group, sources[side], cfg.fit, vocab, proposer):
                task = result.task
                graph, calibration = (
                    (result.graph, None) if result.dead else _calibrated(calibrator, task, result.graph, side)
                )
                heldout = (
                    None
                    if result.dead
                    else _heldout(mined, task, graph, keys, cfg.evaluate.fire_threshold, model.bos_id, side)
                )
                write_json(
                    work.fitted(task.layer, task.neuron, side),
                    {
                        "schema": SCHEMA,
                        "layer": task.layer,
                        "neuron": task.neuron,
                        "polarity": side,
                        "hook": model.hook_name(task.layer),
                        "status": "dead" if result.dead else "fitted",
                        "max_activation": round(task.max_activation, 6),
                        "augmenter": augmenter,
                        "config": options,
                        "dtype": cfg.dtype,
                        "mined": digests[task.layer],
                        "device": device,
                        "bos": info.get("bos"),
                        "mask": text[mask_id],
                        "graph": graph.to_json(),
                        "calibration": calibration,
                        "examples": result.examples,
                        "band_share": band_rule(cfg) if side == "positive" else None,
                        "training_windows": training_windows(task),
                        "heldout": heldout.as_dict() if heldout else None,
                        "cost": result.cost,
                    },
                )
                dead += int(result.dead)
                fitted += int(not result.dead)
                advance(progress)
    seconds = time.perf_counter() - started
    c = engine.counters
    extra = getattr(proposer, "tokens_run", 0)
    say(
        f"fit: {fitted} graphs, {dead} dead {what} in {seconds:.1f} s ({total / seconds:.2f} {what}/s); "
        f"{c.forwards} forward calls, {c.rows:,} rows, {c.tokens:,} tokens "
        f"({c.tokens / max(seconds, 1e-9):,.0f} tokens/s)"
        + (f"; {extra:,} tokens through the {augmenter} proposer" if extra else "")
    )
    return FitSummary(fitted, skipped, dead, seconds, c.tokens)


def _heldout(
    mined: MinedLayer,
    task: NeuronTask,
    graph: Graph,
    keys: KeyIndex,
    threshold: float,
    bos: int | None,
    side: str = "positive",
):
    """A first score on the side's held-out windows (the evaluate stage adds baselines and ordinary text)."""
    sign = SIGN[side]
    windows = [(w.tokens, sign * w.acts) for w in side_windows(mined, side, "heldout").windows(mined.row(task.neuron))]
    if not windows:
        return None
    return score_graph(graph, keys, windows, task.max_activation, threshold, bos)


def _calibrated(calibrator: Calibrator | None, task: NeuronTask, graph: Graph, side: str) -> tuple[Graph, dict | None]:
    """The graph calibrated on the task's training windows and its calibration record; the graph unchanged and
    no record with --paper (no calibrator) and for the negative side, which is not calibrated."""
    if calibrator is None or side != "positive":
        return graph, None
    windows = [(e.tokens, e.acts) for e in task.examples]
    return calibrator(task.layer, task.neuron, graph, windows, task.max_activation)


def _recalibrate(
    work: WorkDir,
    files: list[tuple[int, int, str]],
    calibrator: Calibrator | None,
    keys: KeyIndex,
    cfg: Config,
    options: dict,
    bos: int | None,
) -> None:
    """Rewrite fit files (layer, neuron, side) that differ from ``options`` only in the calibration options:
    their paper graph (restored from the file) calibrated again (or left as the paper's with --paper, and
    always for the negative side, which is not calibrated), no fitting."""
    mined: MinedLayer | None = None
    say(f"fit: {len(files)} fitted neuron sides only need calibrating again")
    for layer, neuron, side in sorted(files):
        if mined is None or mined.layer != layer:
            mined = MinedLayer.load(work.mined(layer))
        path = work.fitted(layer, neuron, side)
        data = read_json(path)
        graph = paper_graph(Graph.from_json(data["graph"]), data.get("calibration"))
        task = _tasks(mined, [neuron], cfg.fit.train_examples, side, band_rule(cfg))[0]
        graph, calibration = _calibrated(calibrator, task, graph, side)
        heldout = _heldout(mined, task, graph, keys, cfg.evaluate.fire_threshold, bos, side)
        new = {
            "config": options,
            "graph": graph.to_json(),
            "heldout": heldout.as_dict() if heldout else None,
            "band_share": band_rule(cfg) if side == "positive" else None,
        }
        out: dict = {}
        for key, value in data.items():  # the key order of a fresh fit file: calibration after graph
            if key != "calibration":
                out[key] = new.get(key, value)
            if key == "graph":
                out["calibration"] = calibration
        write_json(path, out)
