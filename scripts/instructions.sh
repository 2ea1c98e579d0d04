#!/usr/bin/env bash
# User-space instructions per request of the load benchmark's server
# (BENCHMARKS.md, "Every adapter"), counted by
# valgrind's callgrind: unlike requests per second, these counts do not
# move with the machine's load, so they show a change of a few hundred
# instructions that a load run cannot.
#
# For each framework and mode: `loadbench-server` (release build) runs under
# `valgrind --tool=callgrind --separate-threads=yes`, is warmed up by wrk,
# has its counters zeroed (callgrind_control -z), serves a measured wrk run,
# and has its counters dumped (callgrind_control -d) before it is stopped.
# Prints, per run, the instructions per request of the request thread (the
# busiest other than the agent's) and of the agent thread (the one running
# `run_blocking`; in `track` mode, one event per request, so per event),
# and writes a CSV under target/instructions/.
# All traffic stays on 127.0.0.1. Not run by CI.
#
#   scripts/instructions.sh
#   DURATION=6 WARMUP=2 CONNECTIONS=4 PORT=18090 \
#   FRAMEWORKS="axum actix rocket warp" MODES="bare installed middleware track" \
#   scripts/instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-6}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-4}
PORT=${PORT:-18090}
FRAMEWORKS=${FRAMEWORKS:-"axum actix rocket warp"}
MODES=${MODES:-"bare installed middleware track"}
HOST=127.0.0.1
URL="http://$HOST:$PORT/"

for knob in DURATION WARMUP CONNECTIONS PORT; do
  if ! [[ ${!knob} =~ ^[0-9]+$ ]]; then echo "$knob must be a whole number" >&2; exit 2; fi
done
for fw in $FRAMEWORKS; do
  case $fw in axum|actix|rocket|warp) ;; *) echo "unknown framework: $fw" >&2; exit 2 ;; esac
done
for mode in $MODES; do
  case $mode in bare|installed|middleware|track) ;; *) echo "unknown mode: $mode" >&2; exit 2 ;; esac
done
for tool in valgrind callgrind_control wrk curl; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (Debian: apt-get install valgrind wrk curl)" >&2; exit 1; }
done
if curl -s -o /dev/null --max-time 1 "$URL"; then
  echo "something already answers on $URL: choose another PORT" >&2; exit 1
fi

echo "building loadbench-server (release)…" >&2
cargo build --release -q -p sqreen-loadbench
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/loadbench-server
OUT=$PWD/target/instructions
mkdir -p "$OUT"
STAMP=$(date +%Y%m%dT%H%M%S)
CSV="$OUT/runs-$STAMP.csv"
echo "framework,mode,requests,events_sent,request_thread_ir_per_request,agent_thread_ir_per_request,threads" >"$CSV"

server=""
cleanup() { if [[ -n $server ]]; then kill -TERM "$server" 2>/dev/null || true; fi; }
trap cleanup EXIT

# The "totals:" (or "summary:") count of one callgrind output file.
ir_of() { awk '$1 == "totals:" || $1 == "summary:" { print $2; exit }' "$1"; }

for fw in $FRAMEWORKS; do
  for mode in $MODES; do
    dir="$OUT/$STAMP-$fw-$mode"
    mkdir -p "$dir"
    (cd "$dir" && exec valgrind --tool=callgrind --separate-threads=yes --dump-instr=no \
      "$BIN" --framework "$fw" --mode "$mode" --addr "$HOST:$PORT" 2>"$dir/server.log") &
    server=$!
    up=""
    for _ in $(seq 600); do
      if curl -s -o /dev/null --max-time 1 "$URL"; then up=1; break; fi
      kill -0 "$server" 2>/dev/null || break
      sleep 0.1
    done
    if [[ -z $up ]]; then echo "$fw/$mode did not answer within 60 s (see $dir/server.log)" >&2; exit 1; fi
    wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "$URL" >/dev/null
    # The valgrind process's pid is the subshell's (exec).
    callgrind_control -z "$server" >/dev/null 2>&1
    report=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$URL")
    callgrind_control -d "$server" >/dev/null 2>&1
    requests=$(awk '/requests in/ {print $1}' <<<"$report")
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
    sent=$(grep -o ' events_sent=[0-9]*' "$dir/server.log" | cut -d= -f2 || true)
    # The zero-then-dump part: files named callgrind.out.PID.1-TID.
    request_ir=0 agent_ir=0 threads=0
    for f in "$dir"/callgrind.out.*.1-*; do
      [[ -e $f ]] || continue
      ir=$(ir_of "$f")
      threads=$((threads + 1))
      if grep -q 'run_blocking' "$f"; then
        agent_ir=$((agent_ir + ir))
      elif (( ir > request_ir )); then
        request_ir=$ir
      fi
    done
    if [[ -z $requests || $requests == 0 || $threads == 0 ]]; then
      echo "$fw/$mode: no figures (see $dir)" >&2; exit 1
    fi
    per_req=$(( request_ir / requests ))
    # In `track` mode each request tracks one event, so this is per event.
    agent_per_req=$(( agent_ir / requests ))
    echo "$fw,$mode,$requests,${sent:-0},$per_req,$agent_per_req,$threads" >>"$CSV"
    printf '%-6s %-10s %8d requests  request thread %6d Ir/request  agent thread %6d Ir/request\n' \
      "$fw" "$mode" "$requests" "$per_req" "$agent_per_req" >&2
  done
done
cp "$CSV" "$OUT/runs-latest.csv"
echo "raw runs: $CSV" >&2
