#!/usr/bin/env bash
# Everything the demo and the browser tests serve: the package (wasm + dist/),
# the demo app in demo/build, and the release ferrydb-server.
# Run scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
bash scripts/site.sh
cargo build -q --release -p ferrydb-server
