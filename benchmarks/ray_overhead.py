"""Ray's overhead against the plain process path, on this machine, in one run (ratios: the cores are shared).

For mine, fit and evaluate of the tiny model, it times (a) the stage in this process, as `n2g-site STAGE`
runs it, and (b) the same stage through ``--executor ray`` as 1 task and as 4 tasks, each task declaring
both CPUs (``--task-cpus 2``), so the tasks run one after another and the extra time is Ray's and the
shards' own (a task starts a worker, imports n2g-site, loads the model, reads the work dir; a mining shard
re-reads the whole corpus pass). Every Ray run writes into a fresh work dir and is checked equal to (a)'s.

    PYTHONPATH=generator python benchmarks/ray_overhead.py [--neurons 0-15]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import ray  # noqa: E402

from n2g_site import executors  # noqa: E402
from n2g_site.evaluate import evaluate  # noqa: E402
from n2g_site.fit import fit  # noqa: E402
from n2g_site.mine import mine  # noqa: E402
from n2g_site.models import load_model  # noqa: E402
from n2g_site.store import WorkDir  # noqa: E402
from shard_helpers import BASE, assert_same  # noqa: E402


def local(stage: str, cfg, work: Path) -> float:
    started = time.perf_counter()
    model = lambda: load_model(cfg.model)  # noqa: E731 - the CLI loads the model per command too
    if stage == "mine":
        mine(cfg, model, WorkDir(work))
    elif stage == "fit":
        fit(cfg, model, WorkDir(work))
    else:
        evaluate(cfg, WorkDir(work), jobs=2)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", default="0-15")
    args = parser.parse_args()
    base = replace(BASE, neurons=args.neurons)
    neurons = 2 * len(base.select_neurons(10**6))
    root = Path(tempfile.mkdtemp(prefix="n2g-ray-bench-"))
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"ray.init(num_cpus=2): {time.perf_counter() - started:.1f} s")
    rows = []
    for round_ in (1, 2):  # each stage: this process, then Ray with 1 and 4 tasks, back to back
        dirs = {variant: root / f"r{round_}-{variant}" for variant in ("local", 1, 4)}
        for stage in ("mine", "fit", "evaluate"):
            plain = local(stage, replace(base, work_dir=dirs["local"]), dirs["local"])
            for shards in (1, 4):
                cfg = replace(base, work_dir=dirs[shards], executor="ray", shards=shards, task_cpus=2)
                started = time.perf_counter()
                executors.run_on_ray(stage, cfg)
                seconds = time.perf_counter() - started
                extra = seconds - plain
                rows.append((round_, stage, shards, plain, seconds, seconds / plain, extra / shards, extra / neurons))
        for shards in (1, 4):
            assert_same(dirs["local"], dirs[shards], "mine", "fit", "evaluate", "run.json", "corpus.json")
    ray.shutdown()
    print(f"{neurons} neurons (2 layers), tiny model; Ray tasks one at a time (--task-cpus 2 on 2 CPUs)")
    print("| round | stage | tasks | this process (s) | Ray (s) | ratio | extra per task (s) | extra per neuron (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for round_, stage, shards, plain, on_ray, ratio, per_task, per_neuron in rows:
        print(
            f"| {round_} | {stage} | {shards} | {plain:.2f} | {on_ray:.2f} | {ratio:.2f} | {per_task:.2f} | "
            f"{per_neuron:.3f} |"
        )
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
