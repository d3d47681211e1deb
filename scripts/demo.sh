#!/usr/bin/env bash
# `npm run demo`: installs what is missing, builds the package and the demo
# app, and serves it from the reference server in demo mode. Set PORT to
# change the port (default 8787), DEMO_DB to keep the data elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build_all.sh
echo "Open the demo in several tabs, and in a second browser, to watch sync across tabs and devices."
# Demo mode: the bearer token is the user id, the /demo/* switches are on,
# and the data lives in an embedded SQLite file under target/.
exec target/release/ferrydb-server --listen "127.0.0.1:${PORT:-8787}" --static demo/build \
  --app demo/app.json --store "sqlite:${DEMO_DB:-target/demo.db}" --dev-auth --demo
