"""``--executor ray``: mine, fit and evaluate as one Ray task per shard, on a cluster or on this machine.

Each task runs the ordinary stage with ``--shard i/n`` in the work dir, which every node must see at the
same path (a shared filesystem); its files are written there as a local run writes them, atomically. The
driver (the ``n2g-site`` process) then finishes the stage as ``n2g-site merge`` does: it combines the
mining shards into layer files (mine_shards.py) or rewrites the evaluate tables (evaluate.rebuild_tables).
The work dir then equals a one-process run's (tests/test_ray.py).

- Resources: each task declares ``--task-cpus`` CPUs (and uses that many torch threads and evaluate
  workers) and one GPU with ``--device cuda``; Ray places the tasks where those are free.
- Failures: a task whose worker process or node dies is run again, up to ``--retries`` times; it resumes
  from the files (and the mining checkpoint) the dead attempt left. An error of the stage itself (a
  UserError, a bug) is not retried: it ends the run with its message.
- Progress: one bar over the whole cluster, counting finished shards and, for fit and evaluate, the neuron
  files written so far.
- Ctrl-C cancels every task (their finished files are kept); rerunning the command resumes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import Config, UserError
from .progress import bar, say
from .store import WorkDir

STAGES = ("mine", "fit", "evaluate")
POLL_SECONDS = 0.5


def shard_task(stage: str, cfg: Config) -> dict[str, Any]:
    """Run one shard of ``stage`` in this process (the body of a Ray task; ``cfg.shard`` is set)."""
    import torch

    torch.set_num_threads(cfg.task_cpus)
    work = WorkDir(cfg.work_path)
    started = time.perf_counter()
    if stage == "evaluate":
        from .evaluate import evaluate

        evaluate(cfg, work, jobs=cfg.task_cpus)
    else:
        from .models import load_model

        def model() -> Any:
            return load_model(cfg.model, device=cfg.device, dtype=cfg.dtype, seed=cfg.seed, hook=cfg.hook)

        if stage == "mine":
            from .mine import mine

            mine(cfg, model, work)
        else:
            from .fit import fit

            fit(cfg, model, work)
    return {"shard": cfg.shard, "seconds": time.perf_counter() - started, "pid": os.getpid()}


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(
            "--executor ray needs Ray: `pip install 'n2g-site[ray]'` (or `pip install ray`), or pass --executor local"
        ) from None
    return ray


def _connect(ray: Any, cfg: Config) -> None:
    if ray.is_initialized():
        return
    env = {"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}} if os.environ.get("PYTHONPATH") else None
    try:
        ray.init(
            address=cfg.ray_address,
            runtime_env=env,
            log_to_driver=False,
            include_dashboard=False,
            configure_logging=False,
        )
    except ConnectionError as exc:
        raise UserError(
            f"--ray-address {cfg.ray_address!r}: no Ray cluster there ({exc}): start one with "
            "`ray start --head` or leave --ray-address out to start one on this machine"
        ) from None


def _slots(ray: Any, cfg: Config) -> int:
    resources = ray.cluster_resources()
    if cfg.device.startswith("cuda"):
        gpus = int(resources.get("GPU", 0))
        if not gpus:
            raise UserError("--device cuda with --executor ray: the Ray cluster has no GPUs; pass --device cpu")
        return gpus
    return max(1, int(resources.get("CPU", 1)) // cfg.task_cpus)


def _files(cfg: Config, stage: str) -> Callable[[], int]:
    """How many neuron files ``stage`` has written so far (0 for mine)."""
    folder = Path(cfg.work_path) / stage
    if stage == "mine":
        return lambda: 0
    return lambda: sum(1 for _ in folder.glob("L*/N*.json")) if folder.exists() else 0


def _finish(stage: str, cfg: Config, shards: int) -> None:
    work = WorkDir(cfg.work_path)
    if stage == "mine":
        from .mine_shards import merge_shards

        if work.mine_shard(0, shards).exists():  # absent: nothing was left to mine
            merge_shards(work, shards)
    elif stage == "evaluate":
        from .evaluate import print_table, rebuild_tables
        from .store import read_json

        info = work.load_manifest()["model_info"]
        layers = [layer for layer in cfg.select_layers(info["n_layers"]) if work.mined(layer).exists()]
        fitted = cfg.select_neurons(info["d_mlp"])
        rebuild_tables(work, layers, fitted)
        print_table(read_json(work.evaluation_summary)["layers"])


@contextmanager
def _sigint_flag() -> Iterator[list[bool]]:
    """A list that Ctrl-C (SIGINT) appends to while the block runs, instead of a KeyboardInterrupt raised
    wherever the signal lands. Ray's blocking calls run Python's signal handlers from inside their own loops;
    once, under load, a Ctrl-C there did not stop the run (tests/test_ray.py's Ctrl-C case). The polling loop
    reads the flag after each ``ray.wait``, so a Ctrl-C is acted on within POLL_SECONDS whatever Ray does with
    the signal. Off the main thread no handler can be installed, and the list stays empty."""
    hits: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield hits
        return
    previous = signal.signal(signal.SIGINT, lambda *_: hits.append(True))
    try:
        yield hits
    finally:
        signal.signal(signal.SIGINT, previous)


def run_on_ray(stage: str, cfg: Config, task: Callable[[str, Config], dict[str, Any]] = shard_task) -> list[dict]:
    """Run ``stage`` as ``cfg.shards`` Ray tasks of ``task`` (default :func:`shard_task`), then finish it
    (merge the mining shards, rebuild the evaluate tables); returns each task's result."""
    if stage not in STAGES:
        raise ValueError(f"--executor ray runs {', '.join(STAGES)}, not {stage}")
    ray = _ray()
    _connect(ray, cfg)
    shards = cfg.shards or _slots(ray, cfg)
    remote = ray.remote(task).options(
        num_cpus=cfg.task_cpus,
        num_gpus=1 if cfg.device.startswith("cuda") else 0,
        max_retries=cfg.retries,
        retry_exceptions=False,
        name=f"n2g-{stage}",
    )
    corpus = Path(cfg.corpus).expanduser()
    local = replace(
        cfg,
        executor="local",
        work_dir=Path(cfg.work_path).resolve(),  # tasks run in other folders
        corpus=str(corpus.resolve()) if corpus.exists() else cfg.corpus,
        device="cuda" if cfg.device.startswith("cuda") else cfg.device,
    )  # Ray shows a task its GPU only
    refs = {remote.remote(stage, replace(local, shard=f"{i}/{shards}")): i for i in range(shards)}
    say(
        f"{stage}: {shards} Ray tasks ({cfg.task_cpus} CPU{'s' if cfg.task_cpus > 1 else ''}"
        f"{' + 1 GPU' if cfg.device.startswith('cuda') else ''} each) on {ray.cluster_resources().get('CPU', 0):.0f} "
        f"CPUs, {ray.cluster_resources().get('GPU', 0):.0f} GPUs"
    )
    files = _files(cfg, stage)
    start_files = files()
    results: list[dict] = []
    pending = list(refs)
    try:
        with _sigint_flag() as interrupted, bar(f"{stage} on ray", shards, "shards") as progress:
            task_id = progress.task_ids[0]
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
                if interrupted:
                    raise KeyboardInterrupt
                for ref in done:
                    try:
                        results.append(ray.get(ref))
                    except UserError as exc:  # Ray's error for a task that raised one is also a UserError
                        cause = getattr(exc, "cause", None)
                        raise UserError(f"{stage} shard {refs[ref]}/{shards}: {cause or exc}") from None
                written = files() - start_files
                progress.update(
                    task_id,
                    completed=shards - len(pending),
                    description=f"{stage} on ray" + (f" ({written} neuron files)" if written else ""),
                )
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    _finish(stage, cfg, shards)
    return sorted(results, key=lambda r: r["shard"])
