#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on loopback for tests and prints
# "DIR URL" on stdout; `scripts/postgres.sh stop DIR` stops it and removes DIR.
#   read -r pgdir pgurl < <(bash scripts/postgres.sh start)
# `start --tls`: a cluster that takes only TLS connections, with a certificate
# from a CA made for it; the URL carries `sslmode=require&sslrootcert=DIR/ca.crt`.
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

# A CA and a server certificate for 127.0.0.1 signed by it, in DIR.
make_certificates() {
  local dir=$1
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ferrydb-test-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
  chmod 600 "$dir/server.key"
  [ "$(id -u)" = 0 ] && chown postgres "$dir/server.key" "$dir/server.crt"
  chmod 644 "$dir/ca.crt"
}

case "${1:-start}" in
  start)
    dir=$(mktemp -d /tmp/ferrydb-pg-XXXXXX)
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    port=${PGPORT_FOR_TESTS:-$((20000 + RANDOM % 20000))}
    as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null
    options="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off -c max_connections=300"
    query=
    if [ "${2:-}" = --tls ]; then
      make_certificates "$dir"
      printf 'local all all trust\nhostssl all all 127.0.0.1/32 trust\n' | as_pg tee "$dir/data/pg_hba.conf" >/dev/null
      options="$options -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key"
      query="?sslmode=require&sslrootcert=$dir/ca.crt"
    fi
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "$options" start >&2
    echo "$dir postgres://postgres@127.0.0.1:$port/postgres$query"
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
