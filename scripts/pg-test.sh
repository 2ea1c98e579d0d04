#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for the sqreen-server tests.
#
#   eval "$(scripts/pg-test.sh start)"   # starts it (if needed), prints the export line
#   scripts/pg-test.sh stop              # stops it and removes its files
#
# It needs Debian's `postgresql` package (apt-get install -y postgresql) and
# runs the server as the `postgres` user when started by root. Data lives in
# $SQREEN_PG_DIR (default /tmp/sqreen-pg-test), the port is $SQREEN_PG_PORT
# (default 55432), authentication is `trust` on 127.0.0.1 only, and fsync is
# off: it is for tests, never for data that matters.
set -euo pipefail

PORT=${SQREEN_PG_PORT:-55432}
DIR=${SQREEN_PG_DIR:-/tmp/sqreen-pg-test}
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
    echo "pg-test: PostgreSQL is not installed (apt-get install -y postgresql)" >&2
    exit 1
fi

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case "${1:-start}" in
start)
    if ! as_owner "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
        rm -rf "$DIR"
        mkdir -p "$DIR"
        if [ "$(id -u)" = 0 ]; then chown postgres: "$DIR"; fi
        as_owner "$BIN/initdb" -D "$DIR/data" -U postgres -A trust --no-sync >"$DIR/initdb.log" 2>&1 \
            || { cat "$DIR/initdb.log" >&2; exit 1; }
        as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
            start >/dev/null \
            || { cat "$DIR/server.log" >&2; exit 1; }
    fi
    echo "export SQREEN_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
    ;;
stop)
    as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
