#!/usr/bin/env bash
# Re-vendor the browser tokenizer used by the neuron-page playground: Hugging Face's tokenizers.js
# (@huggingface/tokenizers, Apache-2.0, pure JS, no dependencies), bundled by esbuild into one classic
# (non-module) script that sets `window.N2GTokenizers`. A classic script loads from file:// too, where
# browsers refuse ES modules; that is what makes the offline bundle's playground work.
# Needs npm (dev-time only; the built file is committed, so users and CI never run this).
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-0.2.0}"
out=templates/assets/vendor
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm init -y >/dev/null && npm install --silent "@huggingface/tokenizers@$version" esbuild@0.25.5)
"$tmp/node_modules/.bin/esbuild" "$tmp/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs" \
  --bundle --minify --format=iife --global-name=N2GTokenizers --target=es2019 \
  --banner:js="/* @huggingface/tokenizers $version (Apache-2.0, https://github.com/huggingface/tokenizers.js), bundled for n2g-site by scripts/vendor-tokenizers.sh */" \
  --outfile="$out/tokenizers.js"
cp "$tmp/node_modules/@huggingface/tokenizers/LICENSE" "$out/LICENSE-tokenizers.txt"
echo "vendored @huggingface/tokenizers $version into $out"
