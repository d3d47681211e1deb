#!/usr/bin/env bash
# `npm run screenshots`: regenerates docs/screenshots/ (linked from the README)
# by running the demo's end-to-end test, which drives the demo in headless
# Chromium and photographs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build_all.sh
mkdir -p docs/screenshots
FERRYDB_SCREENSHOTS="$PWD/docs/screenshots" node --test --test-timeout=900000 tests/e2e/demo.test.mjs
ls -l docs/screenshots
