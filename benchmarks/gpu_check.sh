#!/usr/bin/env bash
# On a GPU machine, from the repository root, with the .whl/ folder from benchmarks/gpu_wheels.sh beside it:
# install the carried wheels into /tmp/site and run the GPU check (under 8 minutes on one H100/H200).
# Extra arguments go to gpu_check.py; results land in $OUT (the device tool's folder) or the current folder.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="$PWD/generator:/tmp/site" N2G_SITE_CACHE="$PWD/.whl/cache" PYTHONUNBUFFERED=1
export TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 benchmarks/gpu_check.py --device cuda --dtype tf32 --budget-s 420 --out "${OUT:-.}/gpu_check.json" "$@" \
  2> >(tee "${OUT:-.}/gpu_check.log" >&2)
