#!/usr/bin/env bash
# `npm test`: installs what is missing, runs the lint gates, the native tests,
# builds the package and the demo, and runs the browser end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# `section NAME` prints the heading `== NAME`, and how long the section before took.
section_name=""
section_start=$SECONDS
section() {
  [ -z "$section_name" ] || echo "-- $section_name: $((SECONDS - section_start)) s"
  section_name=$1
  section_start=$SECONDS
  [ -z "$1" ] || echo "== $1"
}

section "setup"
# The server's tests run against Postgres too: install it here, start it below.
FERRYDB_NEED_POSTGRES=1 bash scripts/setup.sh
section "build"
bash scripts/build.sh
node scripts/size.mjs --check >/dev/null
bash scripts/site.sh
cargo build -q --release -p ferrydb-server
section "lint"
bash scripts/lint.sh
section "native tests (server stores: SQLite, and Postgres on throwaway clusters: plain, and TLS-only)"
read -r pgdir pgurl < <(bash scripts/postgres.sh start)
read -r tlsdir tlsurl < <(bash scripts/postgres.sh start --tls)
trap 'bash scripts/postgres.sh stop "$pgdir"; bash scripts/postgres.sh stop "$tlsdir"' EXIT
# The crash simulation and the fuzz tests run in the next step instead,
# where what they checked shows.
FERRYDB_TEST_POSTGRES_URL=$pgurl FERRYDB_TEST_POSTGRES_TLS_URL=$tlsurl cargo test -q --workspace -- \
  --skip fuzz --skip recovery_after_any_crash
section "crash simulation and fuzz tests (each prints what it checked)"
cargo test -q -p ferrydb --lib -- --nocapture recovery_after_any_crash tests::fuzz::
cargo test -q -p ferrydb-protocol --test fuzz -- --nocapture
FERRYDB_TEST_POSTGRES_URL=$pgurl cargo test -q -p ferrydb-server --test fuzz -- --nocapture
section "benchmark smoke run (one quick pass of each ferrydb scenario; figures not checked)"
node bench/run.mjs --quick --only ferrydb
# The browser suite once per engine (tests/e2e/harness.mjs, FERRYDB_BROWSER).
# A hung browser step fails its test (each has its own 120 s limit, see
# tests/e2e/harness.mjs) instead of stalling CI; a whole file gets 15 min.
browser_tests() { # heading, FERRYDB_BROWSER, then what to run node under (if anything)
  section "browser tests: $1"
  local browser=$2
  shift 2
  FERRYDB_BROWSER=$browser "$@" node --test --test-timeout=900000 --test-reporter=spec tests/e2e/
}
browser_tests chromium chromium
browser_tests firefox firefox
# WebKitGTK has no headless mode: it draws into a virtual X display.
browser_tests webkit webkit xvfb-run -a
# Where SharedWorker is missing, ferrydb elects a leader tab (docs/architecture.md, "Topology").
browser_tests 'chromium, no SharedWorker' chromium-no-sharedworker
section "browser sync tests again, server on Postgres (a new database per server; chromium)"
# The cluster started above; a missing one fails here, it is never skipped.
FERRYDB_BROWSER=chromium FERRYDB_E2E_STORE=$pgurl node --test --test-timeout=900000 --test-reporter=spec \
  tests/e2e/sync.test.mjs tests/e2e/sync_*.test.mjs tests/e2e/subscriptions.test.mjs tests/e2e/demo.test.mjs
section ""
