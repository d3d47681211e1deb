#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on loopback for tests and prints
# "DIR URL" on stdout; `scripts/postgres.sh stop DIR` stops it and removes DIR.
#   read -r pgdir pgurl < <(bash scripts/postgres.sh start)
# Installs Debian's postgresql if it is missing. initdb refuses to run as root,
# so the cluster runs as the `postgres` user in a directory it owns.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ]; then
  FERRYDB_NEED_POSTGRES=1 bash scripts/setup.sh >&2
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "${1:-start}" in
  start)
    dir=$(mktemp -d /tmp/ferrydb-pg-XXXXXX)
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    port=${PGPORT_FOR_TESTS:-$((20000 + RANDOM % 20000))}
    as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off -c max_connections=300" start >&2
    echo "$dir postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    dir=$2
    as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >&2 || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: scripts/postgres.sh start | stop DIR" >&2
    exit 2
    ;;
esac
