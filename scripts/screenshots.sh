#!/usr/bin/env bash
# `npm run screenshots`: regenerates docs/screenshots/ (linked from the README)
# by running the demo's end-to-end test, which drives the demo in headless
# Chromium and photographs it; then once more in Firefox and in WebKit, of
# which one tab's picture each is kept (firefox.png, webkit.png).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build_all.sh
mkdir -p docs/screenshots
FERRYDB_BROWSER=chromium FERRYDB_SCREENSHOTS="$PWD/docs/screenshots" node --test --test-timeout=900000 tests/e2e/demo.test.mjs
# Other engines: one tab of the demo each, as docs/screenshots/ENGINE.png.
for engine in firefox webkit; do
  shots=$(mktemp -d)
  # WebKitGTK has no headless mode: it draws into a virtual X display.
  display=(); [ "$engine" != webkit ] || display=(xvfb-run -a)
  FERRYDB_BROWSER=$engine FERRYDB_SCREENSHOTS=$shots "${display[@]}" node --test --test-timeout=900000 tests/e2e/demo.test.mjs
  cp "$shots/tab-a.png" "docs/screenshots/$engine.png"
  rm -rf "$shots"
done
ls -l docs/screenshots
