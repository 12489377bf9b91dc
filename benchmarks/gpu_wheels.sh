#!/usr/bin/env bash
# Fetch, here (where PyPI is reachable), the wheels that benchmarks/gpu_check.py needs on a GPU machine whose
# image has torch, transformers, numpy, scipy, click, rich and jinja2 but not TransformerLens and a few small
# libraries (Python 3.12, x86-64 Linux). They go to .whl/ (git-ignored); copy the tokenizer the random models
# use next to them, then run benchmarks/gpu_check.sh there. TransformerLens also names wandb and
# transformers-stream-generator, which it does not import for what n2g-site uses: they are left out. numba is
# left out too (llvmlite's wheel alone is 57 MB of the 64 MiB a run may carry): without it mine runs its
# torch ops on the CPU as well (mine_kernels.AVAILABLE), which is what the GPU runs anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  -d .whl transformer-lens==4.3.0 beartype==0.23.1 fancy-einsum==0.0.3 typeguard==4.4.4 \
  orjson==3.13.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 \
  referencing==0.37.0 rpds-py==0.30.0 platformdirs==4.5.1 datasets==5.2.0 dill==0.4.0 \
  multiprocess==0.70.18
cache="${N2G_SITE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/n2g-site}"  # models.cache_dir() on Linux
if [[ -f "$cache/smollm2-tokenizer/tokenizer.json" ]]; then
  rm -rf .whl/cache && mkdir -p .whl/cache && cp -r "$cache/smollm2-tokenizer" .whl/cache/
else
  echo "gpu_wheels: no cached SmolLM2 tokenizer in $cache: run any n2g-site command with the embedded model first" >&2
  exit 1
fi
du -sh .whl
