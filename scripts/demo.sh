#!/usr/bin/env bash
# The main job in one command: the axum example app with the sqreen agent,
# against the embedded development backend, both on 127.0.0.1. Sends a few
# requests with curl, stops the app with SIGTERM (the agent flushes), and
# prints what the backend received.
#
#   scripts/demo.sh                 # APP_ADDR / BACKEND_ADDR to change ports
set -euo pipefail
cd "$(dirname "$0")/.."

APP_ADDR=${APP_ADDR:-127.0.0.1:8000}
BACKEND_ADDR=${BACKEND_ADDR:-127.0.0.1:8700}
OUT=target/demo
mkdir -p "$OUT"

if ! command -v curl >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing curl (Debian package)…"
    apt-get update -qq && apt-get install -y -qq curl >/dev/null
  else
    echo "curl is needed: sudo apt-get install -y curl" >&2; exit 1
  fi
fi

echo "building the example app and the development backend…"
cargo build -q -p example-axum -p sqreen-test-backend

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

target/debug/sqreen-dev-backend --addr "$BACKEND_ADDR" >"$OUT/backend.jsonl" 2>"$OUT/backend.log" &
pids+=($!)

SQREEN_TOKEN=demo-token SQREEN_APP_NAME=demo SQREEN_URL="http://$BACKEND_ADDR" \
  SQREEN_MAX_STALENESS=1 ADDR="$APP_ADDR" RUST_LOG="${RUST_LOG:-info}" \
  target/debug/example-axum 2>"$OUT/app.log" &
app=$!
pids+=("$app")

# Wait (bounded) for the app to answer and the agent to log in.
for _ in $(seq 1 100); do
  if curl -sf "http://$APP_ADDR/" >/dev/null && grep -q '"app-login"' "$OUT/backend.jsonl"; then break; fi
  sleep 0.1
done
sleep 0.3 # the agent applies the login answer right after the backend sent it

run() { printf '\n$ %s\n' "$*"; "$@"; echo; }
run curl -s "http://$APP_ADDR/"
run curl -s -X POST "http://$APP_ADDR/track" -H 'X-Forwarded-For: 81.2.69.160' \
  -H 'Content-Type: application/json' \
  -d '{"event":"checkout.completed","properties":{"amount":42,"card":"4111 1111 1111 1111"},"user_identifiers":{"uid":"u-1"}}'
run curl -s -X POST "http://$APP_ADDR/login" -H 'X-Forwarded-For: 81.2.69.161' \
  -d 'username=bob&password=wrong'
run curl -s -X POST "http://$APP_ADDR/login" -d 'username=alice&password=open-sesame'
run curl -s -X POST "http://$APP_ADDR/signup" -d 'username=carol&password=secret-pw'

kill -TERM "$app"
wait "$app" && echo "example app stopped with status 0 (agent flushed)"
sleep 0.3

printf '\nwhat the backend received (%s):\n' "$OUT/backend.jsonl"
cat "$OUT/backend.jsonl"
