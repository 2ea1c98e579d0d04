#!/usr/bin/env bash
# Framework load benchmark (BENCHMARKS.md, "Under load"):
# each framework's hello-world route bare, with the sqreen middleware
# installed and the handler untouched (`installed`), with the handler taking
# the Sqreen handle and tracking nothing (`middleware`), and with one
# track_event per request (`track`), driven by wrk.
#
# The server (sqreen-loadbench's `loadbench-server`, release build, with
# its agent thread) is pinned to one core and wrk to the other; modes are
# interleaved, their order rotating each round; every measured run follows
# a discarded warm-up run on the same server process. Prints a markdown
# table of medians and writes every raw run to a CSV under target/loadbench/.
# All traffic stays on 127.0.0.1. Not run by CI (it takes ~12 minutes).
#
#   scripts/loadbench.sh
#   ROUNDS=5 DURATION=8 WARMUP=2 CONNECTIONS=32 PORT=18080 \
#   FRAMEWORKS="axum actix rocket warp" MODES="bare installed middleware track" \
#   SERVER_CPU=0 CLIENT_CPU=1 MAX_LOAD=1.0 scripts/loadbench.sh
#
# Before the first run it waits (at most 10 minutes) for the 1-minute load
# average to fall below MAX_LOAD, so that a build running on the machine
# does not land in the figures; runs that other work competed with anyway
# (CPU pressure above 5 % of the run) are flagged.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${PORT:-18080}
FRAMEWORKS=${FRAMEWORKS:-"axum actix rocket warp"}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
MAX_LOAD=${MAX_LOAD:-1.0}
read -r -a MODES <<<"${MODES:-bare installed middleware track}"
NMODES=${#MODES[@]}
# Fixed, not a knob: the generated traffic never leaves the loopback interface.
HOST=127.0.0.1
URL="http://$HOST:$PORT/"

for knob in ROUNDS DURATION WARMUP CONNECTIONS PORT SERVER_CPU CLIENT_CPU; do
  if ! [[ ${!knob} =~ ^[0-9]+$ ]]; then echo "$knob must be a whole number" >&2; exit 2; fi
done
if (( ROUNDS < 1 || ROUNDS > 50 || DURATION < 1 || DURATION > 120 || WARMUP > 60 )); then
  echo "ROUNDS must be 1-50, DURATION 1-120 s, WARMUP 0-60 s" >&2; exit 2
fi
if ! [[ $MAX_LOAD =~ ^[0-9]+(\.[0-9]+)?$ ]]; then echo "MAX_LOAD must be a number" >&2; exit 2; fi
for fw in $FRAMEWORKS; do
  case $fw in axum|actix|rocket|warp) ;; *) echo "unknown framework: $fw" >&2; exit 2 ;; esac
done
for mode in "${MODES[@]}"; do
  case $mode in bare|installed|middleware|track) ;; *) echo "unknown mode: $mode" >&2; exit 2 ;; esac
done
[[ " ${MODES[*]} " == *" bare "* ]] || { echo "MODES must include bare (the reference)" >&2; exit 2; }
for tool in wrk taskset curl; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (Debian: apt-get install wrk util-linux curl)" >&2; exit 1; }
done
if curl -s -o /dev/null --max-time 1 "$URL"; then
  echo "something already answers on $URL: choose another PORT" >&2; exit 1
fi

echo "building loadbench-server (release)…" >&2
cargo build --release -q -p sqreen-loadbench
BIN=${CARGO_TARGET_DIR:-target}/release/loadbench-server

OUT=target/loadbench
mkdir -p "$OUT/logs"
STAMP=$(date +%Y%m%dT%H%M%S)
CSV="$OUT/runs-$STAMP.csv"
echo "round,framework,mode,position,rps,requests,latency_avg_us,latency_p50_us,latency_p99_us,socket_errors,non_2xx,records_queued,events_sent,dropped_queue_full,backend_batch_bytes,load1_before,server_cpu_us_per_req,server_core_busy_pct,client_core_busy_pct,cpu_pressure_ms" >"$CSV"
CLK_TCK=$(getconf CLK_TCK)

server=""
cleanup() { if [[ -n $server ]]; then kill -TERM "$server" 2>/dev/null || true; fi; }
trap cleanup EXIT

# wrk's "245.00us" / "1.20ms" / "1.02s" in microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "ms") n *= 1000; else if (u == "s") n *= 1000000; else if (u == "m") n *= 60000000
    printf "%.1f", n }'
}

# "busy total" jiffies of one CPU, from /proc/stat.
cpu_jiffies() {
  awk -v c="cpu$1" '$1 == c { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat
}
# 100 × Δbusy / Δtotal between two cpu_jiffies readings.
busy_pct() { awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ")
  printf "%.1f", (y[2] > x[2]) ? 100 * (y[1] - x[1]) / (y[2] - x[2]) : 0 }'; }
# Total time (µs) some task waited for a CPU (pressure stall information), 0 if unavailable.
# Over a bare or middleware run it is time other work competed with ours: interference.
cpu_pressure_us() { awk '$1 == "some" { sub("total=", "", $5); print $5 }' /proc/pressure/cpu 2>/dev/null || echo 0; }
# User + system clock ticks of a process, all its threads (the agent thread included).
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# Stops the server with SIGTERM and waits for it, at most 60 s (then SIGKILL).
stop_server() {
  kill -TERM "$server" 2>/dev/null || true
  for _ in $(seq 600); do
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$server" 2>/dev/null; then
    echo "  server $server did not stop in 60 s: killed" >&2
    kill -KILL "$server" 2>/dev/null || true
  fi
  wait "$server" 2>/dev/null || true
  server=""
}

# One measured run: start, wait until it answers, warm up, measure, stop.
run_one() {
  local round=$1 fw=$2 mode=$3 position=$4
  local log="$OUT/logs/$STAMP-r$round-$fw-$mode.log"
  local load1
  load1=$(cut -d' ' -f1 /proc/loadavg)
  taskset -c "$SERVER_CPU" "$BIN" --framework "$fw" --mode "$mode" --addr "$HOST:$PORT" 2>"$log" &
  server=$!
  local up=""
  for _ in $(seq 100); do
    if curl -s -o /dev/null --max-time 1 "$URL"; then up=1; break; fi
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z $up ]]; then
    echo "  $fw/$mode did not answer within 10 s; its log:" >&2
    cat "$log" >&2
    stop_server
    exit 1
  fi
  if (( WARMUP > 0 )); then
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "$URL" >/dev/null
  fi
  local report ticks0 ticks1 srv0 srv1 cli0 cli1 psi0 psi1
  ticks0=$(proc_ticks "$server"); srv0=$(cpu_jiffies "$SERVER_CPU"); cli0=$(cpu_jiffies "$CLIENT_CPU")
  psi0=$(cpu_pressure_us)
  report=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$URL")
  ticks1=$(proc_ticks "$server"); srv1=$(cpu_jiffies "$SERVER_CPU"); cli1=$(cpu_jiffies "$CLIENT_CPU")
  psi1=$(cpu_pressure_us)
  stop_server
  echo "$report" >>"$log"

  local rps requests lat_avg p50 p99 sock non2xx stats
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$report")
  requests=$(awk '/requests in/ {print $1}' <<<"$report")
  lat_avg=$(to_us "$(awk '$1 == "Latency" {print $2; exit}' <<<"$report")")
  p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$report")")
  p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$report")")
  sock=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$report")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$report")
  stats=$(grep -o 'loadbench-stats .*' "$log" || true)
  if [[ -z $rps || -z $stats ]]; then
    echo "  $fw/$mode: no figures (see $log)" >&2
    exit 1
  fi
  field() { grep -o " $1=[0-9]*" <<<"$stats" | cut -d= -f2 || true; }
  local queued sent dropped received
  queued=$(field records_queued); sent=$(field events_sent)
  dropped=$(field dropped_queue_full); received=$(field backend_batch_bytes)
  local cpu_per_req srv_busy cli_busy
  # Server CPU time (every thread) per request served in the measured run.
  cpu_per_req=$(awk -v t=$((ticks1 - ticks0)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
  srv_busy=$(busy_pct "$srv0" "$srv1"); cli_busy=$(busy_pct "$cli0" "$cli1")
  local psi_ms=$(( (psi1 - psi0) / 1000 ))
  echo "$round,$fw,$mode,$position,$rps,$requests,$lat_avg,$p50,$p99,${sock:-0},${non2xx:-0},$queued,$sent,$dropped,$received,$load1,$cpu_per_req,$srv_busy,$cli_busy,$psi_ms" >>"$CSV"
  printf '  round %d  %-6s %-10s %9.0f req/s  p99 %6.0f µs  %5.2f µs CPU/req  cores %s%%/%s%%  cpu pressure %5d ms  events sent %s dropped %s  (load %s)\n' \
    "$round" "$fw" "$mode" "$rps" "$p99" "$cpu_per_req" "$srv_busy" "$cli_busy" "$psi_ms" "$sent" "$dropped" "$load1" >&2
  # In track mode the agent thread competes with the server for its core by design.
  if [[ $mode != track ]] && (( psi_ms * 20 > DURATION * 1000 )); then
    echo "  WARNING: $fw/$mode: other work competed for the CPU for $psi_ms ms of the ${DURATION} s run" >&2
  fi
  if [[ ${sock:-0} != 0 || ${non2xx:-0} != 0 ]]; then
    echo "  WARNING: $fw/$mode had ${sock:-0} socket errors and ${non2xx:-0} non-2xx answers" >&2
  fi
}

for (( waited = 0; ; waited += 10 )); do
  load1=$(cut -d' ' -f1 /proc/loadavg)
  if awk -v l="$load1" -v m="$MAX_LOAD" 'BEGIN { exit !(l < m) }'; then break; fi
  if (( waited >= 600 )); then
    echo "load average still $load1 after 10 minutes: running anyway (see the pressure column)" >&2; break
  fi
  (( waited % 60 == 0 )) && echo "waiting for the load average ($load1) to fall below $MAX_LOAD…" >&2
  sleep 10
done
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $ROUNDS rounds × $(wc -w <<<"$FRAMEWORKS") frameworks × $NMODES modes, ${WARMUP}+${DURATION} s each" >&2
for (( round = 1; round <= ROUNDS; round++ )); do
  for fw in $FRAMEWORKS; do
    # Rotate the mode order each round (bare first, then middleware first, …).
    for (( i = 0; i < NMODES; i++ )); do
      run_one "$round" "$fw" "${MODES[(round - 1 + i) % NMODES]}" "$i"
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cp "$CSV" "$OUT/runs-latest.csv"

# Medians per framework and mode, from the CSV.
median() { # column, framework, mode
  awk -F, -v c="$1" -v f="$2" -v m="$3" 'NR > 1 && $2 == f && $3 == m {print $c}' "$CSV" |
    sort -g | awk '{v[NR] = $1} END {
      if (NR == 0) { print "nan"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# Per round, (mode − bare) / bare in %, then the median of those with a
# distribution-free ~95 % confidence interval for it: the order statistics
# of ranks k = round((n − 1.96√n)/2) and n + 1 − k (the sign test's
# binomial, normally approximated; for 15 rounds, ranks 4 and 12, 96.5 %).
# With fewer than 9 rounds the interval is the whole range.
paired() { # framework, mode
  awk -F, -v f="$1" -v m="$2" 'NR > 1 && $2 == f { r[$1 "," $3] = $5; rounds[$1] = 1 }
    END { for (k in rounds) if ((k ",bare") in r && (k "," m) in r)
            printf "%.2f\n", (r[k "," m] - r[k ",bare"]) / r[k ",bare"] * 100 }' "$CSV" |
    sort -g | awk '{v[NR] = $1} END {
      if (NR == 0) { print "n/a"; exit }
      med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      lo = int((NR - 1.96 * sqrt(NR)) / 2 + 0.5); if (lo < 1) lo = 1
      hi = NR + 1 - lo
      printf "%+.1f %% (%+.1f … %+.1f)", med, v[lo], v[hi] }'
}
delta() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f %%", (a - b) / b * 100 }'; }

echo
echo "Medians of $ROUNDS runs, wrk -t1 -c$CONNECTIONS -d${DURATION}s; server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU. Raw runs: $CSV"
echo
OTHERS=()
for mode in "${MODES[@]}"; do [[ $mode == bare ]] || OTHERS+=("$mode"); done
header="| framework | bare rps (median) |"; rule="|---|---:|"
for mode in "${OTHERS[@]}"; do header+=" $mode rps (median) | Δ% |"; rule+="---:|---:|"; done
echo "$header events sent/dropped (track, median per run) |"
echo "$rule---:|"
for fw in $FRAMEWORKS; do
  bare=$(median 5 "$fw" bare)
  line=$(printf '| %s | %.0f |' "$fw" "$bare")
  for mode in "${OTHERS[@]}"; do
    m=$(median 5 "$fw" "$mode")
    line+=$(printf ' %.0f | %s |' "$m" "$(delta "$m" "$bare")")
  done
  printf '%s %s / %s |\n' "$line" "$(median 13 "$fw" track)" "$(median 14 "$fw" track)"
done
echo
header="| framework |"; rule="|---|"
for mode in "${OTHERS[@]}"; do header+=" paired Δ% rps $mode (median, ~95 % CI) |"; rule+="---:|"; done
echo "$header server CPU µs/request ${MODES[*]} (medians) | client core busy % (bare, median) | p99 latency µs ${MODES[*]} (medians) |"
echo "$rule---:|---:|---:|"
for fw in $FRAMEWORKS; do
  line="| $fw |"
  for mode in "${OTHERS[@]}"; do line+=" $(paired "$fw" "$mode") |"; done
  cpu=""; p99=""
  for mode in "${MODES[@]}"; do
    cpu+="${cpu:+ / }$(printf '%.2f' "$(median 17 "$fw" "$mode")")"
    p99+="${p99:+ / }$(printf '%.0f' "$(median 9 "$fw" "$mode")")"
  done
  printf '%s %s | %.0f | %s |\n' "$line" "$cpu" "$(median 19 "$fw" bare)" "$p99"
done
