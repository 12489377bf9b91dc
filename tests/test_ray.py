"""``--executor ray`` on a local Ray cluster of this machine's 2 CPUs: mine + fit + evaluate of the tiny model
in several shards give a work dir equal to a one-process run's, also when a task's worker dies mid-run."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from shard_helpers import BASE, assert_same

ray = pytest.importorskip("ray", reason="Ray is not installed: `pip install 'n2g-site[ray]'`")

from n2g_site import executors  # noqa: E402
from n2g_site.config import Config  # noqa: E402
from n2g_site.evaluate import evaluate  # noqa: E402
from n2g_site.fit import fit  # noqa: E402
from n2g_site.mine import mine  # noqa: E402
from n2g_site.store import WorkDir  # noqa: E402

pytestmark = pytest.mark.slow  # a Ray cluster takes ~10 s to start on 2 shared cores; the whole file ~1-2 min


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def dies_once(stage: str, cfg: Config) -> dict:
    """Shard 1's first attempt: the worker process exits (as if killed) after writing two fit files."""
    marker = Path(cfg.work_path) / "killed-once"
    if cfg.shard and cfg.shard.startswith("1/") and not marker.exists():
        from n2g_site import fit as fit_module

        marker.write_text(str(os.getpid()))
        written = []
        real = fit_module.write_json

        def write_then_die(path, obj, **kwargs):
            real(path, obj, **kwargs)
            written.append(path)
            if len(written) == 2:
                os._exit(1)

        fit_module.write_json = write_then_die
    return executors.shard_task(stage, cfg)


def test_mine_fit_evaluate_on_ray_equal_one_process(cluster, tiny_model, tmp_path):
    from ray import cloudpickle  # Ray vendors its own

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    one, dist = tmp_path / "one", tmp_path / "ray"
    cfg = replace(BASE, work_dir=one)
    mine(cfg, lambda: tiny_model, WorkDir(one))
    fit(cfg, lambda: tiny_model, WorkDir(one))
    evaluate(cfg, WorkDir(one), jobs=1)

    on_ray = replace(BASE, work_dir=dist, executor="ray", shards=3)
    mined = executors.run_on_ray("mine", on_ray)
    assert [r["shard"] for r in mined] == ["0/3", "1/3", "2/3"]
    fitted = executors.run_on_ray("fit", on_ray, task=dies_once)
    assert (dist / "killed-once").exists()  # shard 1 died once after two files, was retried and resumed
    assert int((dist / "killed-once").read_text()) != next(r["pid"] for r in fitted if r["shard"] == "1/3")
    (dist / "killed-once").unlink()
    # evaluate through the command line, joining the running cluster
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "n2g_site.cli",
            "evaluate",
            "--model",
            "random:tiny",
            "--corpus",
            "wiki",
            "--layers",
            "0-1",
            "--neurons",
            "0-7",
            "--work-dir",
            str(dist),
            "--executor",
            "ray",
            "--ray-address",
            "auto",
            "--shards",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        assert_same(one, dist, "mine", "fit", "evaluate", "run.json", "corpus.json", "vocab.json", "tokenizer")
        == 2 + 16 + (16 + 2 + 1) + 3 + 2
    )
    # a rerun resumes: nothing is redone, nothing changes
    before = {p: p.stat().st_mtime_ns for p in (dist / "fit").rglob("*.json")}
    assert all(r["seconds"] < 30 for r in executors.run_on_ray("fit", on_ray))
    assert before == {p: p.stat().st_mtime_ns for p in (dist / "fit").rglob("*.json")}


def test_a_stage_error_is_not_retried_and_names_the_shard(cluster, tmp_path):
    from n2g_site.config import UserError

    with pytest.raises(UserError, match=r"fit shard \d/2: .*run `n2g-site mine`"):
        executors.run_on_ray("fit", replace(BASE, work_dir=tmp_path / "empty", executor="ray", shards=2))


def test_ctrl_c_cancels_the_tasks_and_a_rerun_resumes(cluster, tiny_model, tmp_path):
    import shutil
    import signal
    import time

    work, ref = tmp_path / "work", tmp_path / "ref"
    cfg = replace(BASE, neurons="0-31", work_dir=work)  # 64 neurons: ~15 s of fit on 2 cores
    mine(cfg, lambda: tiny_model, WorkDir(work))
    shutil.copytree(work, ref)
    fit(replace(cfg, work_dir=ref), lambda: tiny_model, WorkDir(ref))
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    argv = [
        sys.executable,
        "-m",
        "n2g_site.cli",
        "fit",
        "--model",
        "random:tiny",
        "--corpus",
        "wiki",
        "--layers",
        "0-1",
        "--neurons",
        "0-31",
        "--work-dir",
        str(work),
        "--executor",
        "ray",
        "--ray-address",
        "auto",
        "--shards",
        "2",
    ]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not any((work / "fit").rglob("N*.json")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in out, out
    time.sleep(2)  # the cancelled workers are gone: no file appears any more
    written = sorted((work / "fit").rglob("N*.json"))
    time.sleep(3)
    assert sorted((work / "fit").rglob("N*.json")) == written and len(written) < 64
    rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert assert_same(ref, work, "fit") == 64
