"""The prepared GPU check (benchmarks/gpu_check.py) runs end to end, here on the CPU at toy sizes, so it does
not rot between the sessions that have a GPU to run it on."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_run_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_check.py"),
            "--device",
            "cpu",
            "--smoke",
            "--shapes",
            "tiny",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    agreement = result["agreement"]
    assert agreement["neurons"] == 64 and agreement["identical_graphs"] == 1.0  # cpu vs cpu: the same run
    [row] = result["speed"]
    assert row["neurons"] == 128 and row["fit_neurons"] >= 4 and row["mine_tokens_per_s"] > 0
    assert row["projected_min"]["total"] > 0
    assert "| random tiny (tests of this script) (128) |" in proc.stdout
