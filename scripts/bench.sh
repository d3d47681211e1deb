#!/usr/bin/env bash
# `npm run bench [-- --quick] [-- --json FILE]`: builds release artifacts and runs
# the side-by-side benchmark in headless Chromium (bench/run.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cargo build -q --release -p ferrydb-server
node bench/run.mjs "$@"
