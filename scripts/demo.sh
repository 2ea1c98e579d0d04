#!/usr/bin/env bash
# The main job in one command: sqreen-server on its embedded SQLite store,
# the axum example app with the sqreen agent connected to it, and a few
# requests whose events then appear in the Event Explorer. Prints the
# dashboard URL, the admin key and curl lines to try, then runs until Ctrl-C.
#
#   scripts/demo.sh                 # SERVER_ADDR / APP_ADDR to change ports
#   DEMO_ONCE=1 scripts/demo.sh     # check the events arrived, then stop (for CI)
#
# Everything stays on 127.0.0.1; the store is target/demo/sqreen.db, made
# afresh on each run (so the admin key is generated and shown each time).
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER_ADDR=${SERVER_ADDR:-127.0.0.1:8700}
APP_ADDR=${APP_ADDR:-127.0.0.1:8000}
OUT=target/demo
DB="$OUT/sqreen.db"
mkdir -p "$OUT"

if ! command -v curl >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing curl (Debian package)…"
    apt-get update -qq && apt-get install -y -qq curl >/dev/null
  else
    echo "curl is needed: sudo apt-get install -y curl" >&2; exit 1
  fi
fi
for addr in "$SERVER_ADDR" "$APP_ADDR"; do
  if curl -s -o /dev/null --max-time 1 "http://$addr/"; then
    echo "something already answers on $addr: set SERVER_ADDR / APP_ADDR" >&2; exit 1
  fi
done

echo "building sqreen-server and the axum example app…"
cargo build -q -p sqreen-server -p example-axum

pids=()
# The app first (its agent flushes to the server), then the server.
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -f "$DB" "$DB-wal" "$DB-shm"
target/debug/sqreen-server serve --addr "$SERVER_ADDR" --database "sqlite://$DB" \
  --heartbeat-delay 5 >"$OUT/server.out" 2>"$OUT/server.log" &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q '^listening on' "$OUT/server.out" 2>/dev/null && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
  sleep 0.1
done
ADMIN_KEY=$(sed -n 's/^admin key[^:]*: //p' "$OUT/server.out")
[ -n "$ADMIN_KEY" ] || { echo "the server printed no admin key (see $OUT/server.log)" >&2; exit 1; }

# The app's agent token: the last line of `app create`.
TOKEN=$(target/debug/sqreen-server app create demo --database "sqlite://$DB" 2>>"$OUT/server.log" | tail -n 1)

SQREEN_URL="http://$SERVER_ADDR" SQREEN_TOKEN="$TOKEN" SQREEN_APP_NAME=demo \
  SQREEN_MAX_STALENESS=1 ADDR="$APP_ADDR" RUST_LOG="${RUST_LOG:-info}" \
  target/debug/example-axum >"$OUT/app.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -sf "http://$APP_ADDR/" >/dev/null && break
  sleep 0.1
done
sleep 0.5 # the agent's first login

run() { printf '$ %s\n' "$*"; "$@"; echo; }
echo
echo "── requests to the app (http://$APP_ADDR), the agent sends their events ──"
run curl -s -X POST "http://$APP_ADDR/track" -H 'Content-Type: application/json' \
  -H 'X-Forwarded-For: 81.2.69.160' \
  -d '{"event": "demo.checkout", "properties": {"amount": 42, "card": "4111 1111 1111 1111"}, "for_user": {"username": "alice"}}'
run curl -s -X POST "http://$APP_ADDR/signup" -d 'username=bob&password=hunter2'
for _ in 1 2 3; do
  run curl -s -X POST "http://$APP_ADDR/login" -H 'X-Forwarded-For: 81.2.69.161' -d 'username=bob&password=guess'
done
run curl -s -X POST "http://$APP_ADDR/login" -d 'username=bob&password=open-sesame'

# Wait (bounded) for the batch to reach the server.
events=""
for _ in $(seq 1 50); do
  events=$(curl -s -H "Authorization: Bearer $ADMIN_KEY" "http://$SERVER_ADDR/api/events?event=demo.checkout")
  case $events in *'"demo.checkout"'*) break ;; esac
  sleep 0.2
done

cat <<EOF

── sqreen-server ──
dashboard:  http://$SERVER_ADDR/   (log in with the admin key)
admin key:  $ADMIN_KEY
app token:  $TOKEN

The events above are in the Event Explorer; the admin API answers too:
  curl -s -H 'Authorization: Bearer $ADMIN_KEY' 'http://$SERVER_ADDR/api/events?event=demo.checkout'
Track more:
  curl -s -X POST http://$APP_ADDR/track -H 'Content-Type: application/json' -d '{"event": "my.event", "properties": {"plan": "pro"}}'
Logs: $OUT/server.log, $OUT/app.log
EOF

case $events in
  *'4111 1111'*) echo "✗ the card number reached the server unscrubbed: $events" >&2; exit 1 ;;
  *'"demo.checkout"'*'Redacted by Sqreen'*|*'Redacted by Sqreen'*'"demo.checkout"'*)
    echo "✓ the server stored the tracked event, its card number scrubbed by the agent" ;;
  *) echo "✗ the event did not reach the server in 10 s (see $OUT/*.log): $events" >&2; exit 1 ;;
esac

if [ -n "${DEMO_ONCE:-}" ]; then exit 0; fi
echo
echo "Running; Ctrl-C stops the app (its agent flushes) and the server."
wait
