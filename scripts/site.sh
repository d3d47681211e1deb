#!/usr/bin/env bash
# Builds the demo (demo/, a React app on ferrydb/react) into demo/build with
# Vite, the way an app would bundle the package. Needs scripts/build.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
node_modules/.bin/vite build demo
