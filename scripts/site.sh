#!/usr/bin/env bash
# Assembles the demo site in demo/build: the page plus the built package under
# ferrydb/ (dist/ and pkg/), as an app would ship it. Needs scripts/build.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf demo/build
mkdir -p demo/build/ferrydb
cp demo/index.html demo/app.js demo/style.css demo/build/
cp -r dist pkg demo/build/ferrydb/
