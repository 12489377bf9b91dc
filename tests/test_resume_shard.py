"""Nothing lost on a crash, and work split across processes: kill -9 then resume, and 3 shards + merge,
each giving exactly the files of one uninterrupted run. The fit runs in lockstep groups of 6 neurons
(``--fit-batch-tokens 6144``): 4 groups over 2 layers x 12 neurons, so each of 3 shards gets whole groups."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

MINE = [
    "--model",
    "random:tiny",
    "--corpus",
    "wiki",
    "--layers",
    "0-1",
    "--neurons",
    "0-11",
    "--top-k",
    "6",
    "--max-tokens",
    "30000",
    "--batch-tokens",
    "256",
    "--checkpoint-seconds",
    "0",
]
RUN = MINE[:4]  # model and corpus: every command takes them (they name the work dir)
FIT = [*MINE[:8], "--fit-batch-tokens", "6144"]  # fit refuses mine's own options; groups of 6 neurons


def cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "n2g_site.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def run(*args: str) -> str:
    proc = cli(*args)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the run finished before it could be killed: give it more work"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def same_files(a: Path, b: Path, pattern: str) -> None:
    left = sorted(p.relative_to(a) for p in a.rglob(pattern))
    assert left and left == sorted(p.relative_to(b) for p in b.rglob(pattern))
    for rel in left:
        if rel.suffix == ".npz":
            with np.load(a / rel) as x, np.load(b / rel) as y:
                assert x.files == y.files
                for key in x.files:
                    np.testing.assert_array_equal(x[key], y[key], err_msg=f"{rel}:{key}")
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted mine + fit."""
    work = tmp_path_factory.mktemp("reference")
    run("mine", *MINE, "--work-dir", str(work))
    out = run("fit", *FIT, "--work-dir", str(work))
    assert "groups of 6 neurons" in " ".join(out.split())
    return work


def test_mine_killed_midway_resumes_to_the_same_files(reference, tmp_path):
    work = tmp_path / "work"
    checkpoint = work / "mine" / "checkpoint.npz"
    kill_when(
        cli("mine", *MINE, "--work-dir", str(work)), lambda: checkpoint.exists() and checkpoint.stat().st_size > 0
    )
    assert not (work / "mine" / "layer_00.npz").exists()  # killed before the end: no output to trust
    out = run("mine", *MINE, "--work-dir", str(work))
    assert "resuming after" in out
    assert not checkpoint.exists()
    same_files(reference / "mine", work / "mine", "*.npz")
    same_files(reference, work, "corpus.json")


def test_fit_killed_midway_resumes_to_the_same_files(reference, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(reference, work, ignore=shutil.ignore_patterns("fit"))
    kill_when(cli("fit", *FIT, "--work-dir", str(work)), lambda: any((work / "fit").rglob("N*.json")))
    run("fit", *FIT, "--work-dir", str(work))
    same_files(reference / "fit", work / "fit", "N*.json")


def test_three_shards_and_a_merge_equal_one_process(reference, tmp_path):
    shards = []
    for i in range(3):
        shard = tmp_path / f"shard{i}"
        shutil.copytree(reference, shard, ignore=shutil.ignore_patterns("fit"))
        shards.append(shard)
    procs = [cli("fit", *FIT, "--shard", f"{i}/3", "--work-dir", str(s)) for i, s in enumerate(shards)]
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
    counts = [len(list((s / "fit").rglob("N*.json"))) for s in shards]
    assert all(counts) and sum(counts) == 24  # disjoint parts of 2 layers x 12 neurons
    merged = tmp_path / "merged"
    shutil.copytree(reference, merged, ignore=shutil.ignore_patterns("fit"))
    out = run("merge", *map(str, shards), *RUN, "--work-dir", str(merged))
    assert "24 fit files copied" in " ".join(out.split())
    same_files(reference / "fit", merged / "fit", "N*.json")
