#!/usr/bin/env bash
# `npm run demo`: installs what is missing, builds everything, and serves the
# demo from the reference server. Set PORT to change the port (default 8787).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
bash scripts/site.sh
cargo build -q --release -p ferrydb-server
echo "Open the demo in two or more tabs of one browser to watch cross-tab sync."
# Demo mode: the bearer token is the user id, the /demo/* switches are on,
# and the data lives in an embedded SQLite file under target/.
exec target/release/ferrydb-server --listen "127.0.0.1:${PORT:-8787}" --static demo/build \
  --app tests/fixtures/app.json --store "sqlite:target/demo-server.db" --dev-auth --demo
