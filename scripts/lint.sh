#!/usr/bin/env bash
# The lint gates people and CI both run: formatting, clippy for the host and
# for wasm32 with warnings as errors, strict TypeScript, and the layout rule
# that browser bindings stay in src/wasm/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo clippy -q --workspace --all-targets -- -D warnings
cargo clippy -q --target wasm32-unknown-unknown -p ferrydb -- -D warnings
if [ -d pkg ]; then
  node_modules/.bin/tsc -p tsconfig.json --noEmit
  # Type-level tests of the public API, against the built declarations.
  if [ -d dist ]; then node_modules/.bin/tsc -p tests/types; fi
else
  echo "lint: skipping tsc (pkg/ not built yet; scripts/build.sh runs it)"
fi

# Only src/wasm/ may touch the browser: everything else must build and test natively.
if grep -rnE '\b(wasm_bindgen|web_sys|js_sys|gloo|indexed_db_futures)\b' src protocol server \
  --include='*.rs' | grep -v '^src/wasm/'; then
  echo "lint: browser bindings used outside src/wasm/ (above)" >&2
  exit 1
fi
echo "lint: ok"
