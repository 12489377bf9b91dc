"""The fit stage: one N2G graph per selected neuron, from its mined training windows.

Writes ``fit/L{L:02d}/N{N:05d}.json`` per neuron (schema ``n2g-site/neuron-fit/1``, below), atomically, so
a killed run resumes with the neurons it has not written yet. A neuron whose file exists with the same fit
options is not fitted again. Each file also carries a first fidelity score: the graph's predictions on the
neuron's held-out top windows (evaluate.py; the full evaluation against baselines is its own stage).

    {"schema": "n2g-site/neuron-fit/1", "layer", "neuron", "hook", "status": "fitted" | "dead",
     "max_activation": A_max, "augmenter", "config": {fit options}, "dtype": --dtype, "mined": the mined
     layer's content digest (run.json), "device": device type, "bos", "mask",
     "graph": {graph.py schema}, "examples": [{rank, doc, window_start, pivot, prune_start, prune_end,
     prune_passed, scale_factor, variants, positive_variants, lines}], "heldout": evaluate.Scores | null,
     "cost": {phase: {"requests", "tokens"}} for phase in prune, saliency, augment, augment_saliency
             (this neuron's activation requests before the engine dedupes them)}

Neurons are fitted in lockstep: a fixed group of neurons of one layer goes through each N2G phase together,
so a phase is one or a few large forward batches. The group size comes from ``--fit-batch-tokens`` (trie
nodes per forward batch): ``fit_batch_tokens // NODES_PER_NEURON`` neurons, about one batch per phase.
Its default depends on ``--device`` as the user gave it (never on the memory or the device found), and the
resolved number is recorded in every fit file's ``config``, so runs, resumes and shards that agree on the
options cut the selection into the same groups and write the same bytes.

A neuron is *dead* when its best training window peaks at or below 0: it gets a file (and a page that
says so) but no graph.
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
from .progress import advance, bar, say
from .proposers import make_proposer
from .store import MinedLayer, WorkDir, fit_file_settings, read_json, write_json

SCHEMA = "n2g-site/neuron-fit/1"
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
    if config == options:
        return "current"
    return "recalibrate" if data.get("status") == "fitted" and recalibratable(config, options) else "fit"


def _tasks(mined: MinedLayer, neurons: list[int], limit: int) -> list[NeuronTask]:
    tasks = []
    for neuron in neurons:
        windows = mined.train.windows(mined.row(neuron))[:limit]
        examples = [Example(w.tokens, w.acts, w.pivot, rank, w.doc, w.start) for rank, w in enumerate(windows)]
        top = windows[0].value if windows else 0.0
        tasks.append(NeuronTask(mined.layer, neuron, examples, float(top)))
    return tasks


def fit_options(cfg: Config) -> FitConfig:
    """``cfg.fit`` with ``fit_batch_tokens`` resolved from the options (``--device`` as given, not as found)."""
    if cfg.fit.fit_batch_tokens is not None:
        return cfg.fit
    return replace(cfg.fit, fit_batch_tokens=CPU_BATCH_TOKENS if cfg.device == "cpu" else GPU_BATCH_TOKENS)


def group_size(options: FitConfig) -> int:
    """Neurons fitted together: enough for about one forward batch of ``fit_batch_tokens`` per phase."""
    return max(1, int(options.fit_batch_tokens or CPU_BATCH_TOKENS) // NODES_PER_NEURON)


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
    reuse = {
        (g[0], n): _reuse(work.fitted(g[0], n), options, cfg.dtype, digests[g[0]], device) for g in groups for n in g[1]
    }
    todo = [g for g in groups if any(reuse[(g[0], n)] == "fit" for n in g[1])]
    again = [
        k for k, how in reuse.items() if how == "recalibrate" and not any(k[0] == g[0] and k[1] in g[1] for g in todo)
    ]
    total = sum(len(g[1]) for g in todo)
    skipped = sum(len(g[1]) for g in groups) - total - len(again)
    shard = f" (shard {cfg.shard})" if cfg.shard else ""
    if not total and not again:
        say(f"fit: all {skipped} selected neurons{shard} are already fitted, nothing to do")
        return FitSummary(0, skipped, 0, 0.0, 0)
    model = load_model()
    batch_tokens = int(resolved.fit_batch_tokens or CPU_BATCH_TOKENS)
    engine = BatchedEngine(model, batch_tokens)
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
    wanted: dict[int, dict[int, float]] = {}
    for layer in sorted({g[0] for g in todo} | {k[0] for k in again}):
        mined_layer = MinedLayer.load(work.mined(layer))
        chosen = [n for g in todo if g[0] == layer for n in g[1]] + [n for k, n in again if k == layer]
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
    layers = sorted({layer for layer, _ in todo})
    say(
        f"fit: {total} neurons in layers {','.join(map(str, layers))}{shard} ({skipped} already done), "
        f"augmenter {augmenter!r}, groups of {group_size(resolved)} neurons, {batch_tokens:,}-node batches"
    )
    mined: MinedLayer | None = None
    with bar("fit", total, "neurons") as progress:
        for layer, neurons in todo:
            if mined is None or mined.layer != layer:
                mined = MinedLayer.load(work.mined(layer))
            group = _tasks(mined, list(neurons), cfg.fit.train_examples)
            for result in fit_neurons(group, engine, cfg.fit, vocab, proposer):
                task = result.task
                graph, calibration = result.graph, None
                if calibrator is not None and not result.dead:
                    windows = [(e.tokens, e.acts) for e in task.examples]
                    graph, calibration = calibrator(task.layer, task.neuron, graph, windows, task.max_activation)
                heldout = (
                    None
                    if result.dead
                    else _heldout(mined, task, graph, keys, cfg.evaluate.fire_threshold, model.bos_id)
                )
                write_json(
                    work.fitted(task.layer, task.neuron),
                    {
                        "schema": SCHEMA,
                        "layer": task.layer,
                        "neuron": task.neuron,
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
        f"fit: {fitted} graphs, {dead} dead neurons in {seconds:.1f} s ({total / seconds:.2f} neurons/s); "
        f"{c.forwards} forward calls, {c.rows:,} rows, {c.tokens:,} tokens "
        f"({c.tokens / max(seconds, 1e-9):,.0f} tokens/s)"
        + (f"; {extra:,} tokens through the {augmenter} proposer" if extra else "")
    )
    return FitSummary(fitted, skipped, dead, seconds, c.tokens)


def _heldout(mined: MinedLayer, task: NeuronTask, graph: Graph, keys: KeyIndex, threshold: float, bos: int | None):
    """A first score on the held-out top windows (the evaluate stage adds baselines and ordinary text)."""
    windows = [(w.tokens, w.acts) for w in mined.heldout.windows(mined.row(task.neuron))]
    if not windows:
        return None
    return score_graph(graph, keys, windows, task.max_activation, threshold, bos)


def _recalibrate(
    work: WorkDir,
    neurons: list[tuple[int, int]],
    calibrator: Calibrator | None,
    keys: KeyIndex,
    cfg: Config,
    options: dict,
    bos: int | None,
) -> None:
    """Rewrite fit files that differ from ``options`` only in the calibration options: their paper graph
    (restored from the file) calibrated again (or left as the paper's with --paper), no fitting."""
    mined: MinedLayer | None = None
    say(f"fit: {len(neurons)} fitted neurons only need calibrating again")
    for layer, neuron in sorted(neurons):
        if mined is None or mined.layer != layer:
            mined = MinedLayer.load(work.mined(layer))
        path = work.fitted(layer, neuron)
        data = read_json(path)
        graph = paper_graph(Graph.from_json(data["graph"]), data.get("calibration"))
        task = _tasks(mined, [neuron], cfg.fit.train_examples)[0]
        calibration = None
        if calibrator is not None:
            windows = [(e.tokens, e.acts) for e in task.examples]
            graph, calibration = calibrator(layer, neuron, graph, windows, task.max_activation)
        heldout = _heldout(mined, task, graph, keys, cfg.evaluate.fire_threshold, bos)
        new = {"config": options, "graph": graph.to_json(), "heldout": heldout.as_dict() if heldout else None}
        out: dict = {}
        for key, value in data.items():  # the key order of a fresh fit file: calibration after graph
            if key != "calibration":
                out[key] = new.get(key, value)
            if key == "graph":
                out["calibration"] = calibration
        write_json(path, out)
