#!/usr/bin/env bash
# Measures the streamed event export over a large SQLite database: the
# server's memory before, during and after `GET /api/events/export`
# (NDJSON, every event) fetched by curl, and the time to its first byte.
#
#   bash scripts/export-bench.sh
#
# Settings (environment):
#   SQREEN_EXPORT_EVENTS   events stored first (default 1000000)
#   SQREEN_EXPORT_FORMAT   ndjson (default) or csv
#   SQREEN_EXPORT_PROFILE  cargo profile of the server and the seeder
#                          (default release; `dev` builds faster, runs slower)
#   SQREEN_EXPORT_DIR      where the database goes (default a temporary
#                          directory, removed at the end); an existing
#                          database there is reused, not seeded again
#
# Seeding goes straight through the store (the ignored test
# `seed_export_bench_db` in sqreen-server/tests/export_bench.rs, batches of
# 10 000), not the HTTP API, to take minutes rather than an hour. Then the
# `sqreen-server` binary serves that database on 127.0.0.1 with retention
# off, and the script samples its VmRSS and RssAnon (/proc/PID/status)
# every 100 ms while curl downloads the export to /dev/null.
#
# Targets: RSS growth during the export under 50 MB; first byte under 200 ms.
# RssAnon is the process's own heap; VmRSS adds the SQLite file pages it
# maps (up to 2 GiB per reader connection), which the kernel may drop at
# will and which grow with the database read, not with the export.
set -euo pipefail
cd "$(dirname "$0")/.."

events="${SQREEN_EXPORT_EVENTS:-1000000}"
format="${SQREEN_EXPORT_FORMAT:-ndjson}"
profile="${SQREEN_EXPORT_PROFILE:-release}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
case "$profile" in
    release) profile_flag=(--release); profile_dir=release ;;
    dev) profile_flag=(); profile_dir=debug ;;
    *) echo "export-bench: SQREEN_EXPORT_PROFILE must be release or dev" >&2; exit 2 ;;
esac

keep_dir=1
dir="${SQREEN_EXPORT_DIR:-}"
if [ -z "$dir" ]; then
    dir="$(mktemp -d "${TMPDIR:-/tmp}/sqreen-export-bench.XXXXXX")"
    keep_dir=0
fi
mkdir -p "$dir"
db="sqlite://$dir/export.db"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "$keep_dir" = 0 ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT

cargo build -q -p sqreen-server "${profile_flag[@]}" --bin sqreen-server
if [ ! -s "$dir/export.db" ]; then
    echo "export-bench: seeding $events events into $dir/export.db"
    SQREEN_EXPORT_BENCH_DB="$db" SQREEN_EXPORT_BENCH_EVENTS="$events" \
        cargo test -q -p sqreen-server "${profile_flag[@]}" --test export_bench -- \
        --ignored --nocapture seed_export_bench_db
fi
echo "export-bench: database $(du -h "$dir/export.db" | cut -f1)"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
key="export-bench-admin-key-0123456789abcdef"
SQREEN_SERVER_ADMIN_KEY="$key" "$target/$profile_dir/sqreen-server" serve \
    --addr "127.0.0.1:$port" --database "$db" --retention off \
    --session-secret-file "$dir/session-key" >"$dir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
    curl -fsS "$base/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "$base/healthz" >/dev/null || { cat "$dir/server.log" >&2; exit 1; }

# kB of VmRSS, RssAnon and RssFile.
mem() { awk '/^VmRSS/ {r = $2} /^RssAnon/ {a = $2} /^RssFile/ {f = $2} END {print r, a, f}' "/proc/$server_pid/status"; }

# A warm-up request (the first page of the API), as a server in use would have had.
curl -fsS -H "Authorization: Bearer $key" "$base/api/events?limit=10" >/dev/null
read -r rss_before anon_before file_before < <(mem)

curl -sS -o /dev/null -H "Authorization: Bearer $key" \
    -w '%{http_code} %{time_starttransfer} %{time_total} %{size_download}\n' \
    "$base/api/events/export?format=$format" >"$dir/curl.out" &
curl_pid=$!
rss_peak=$rss_before
anon_peak=$anon_before
file_peak=$file_before
while kill -0 "$curl_pid" 2>/dev/null; do
    read -r rss anon file < <(mem)
    [ "$rss" -gt "$rss_peak" ] && rss_peak=$rss
    [ "$anon" -gt "$anon_peak" ] && anon_peak=$anon
    [ "$file" -gt "$file_peak" ] && file_peak=$file
    sleep 0.1
done
wait "$curl_pid"
read -r rss_after anon_after file_after < <(mem)
# curl's first byte is the answer's head, sent before the first page is
# read: the first byte of the body (the first event) is timed apart.
first_event="$(python3 - "$port" "$key" "$format" <<'PY'
import http.client, sys, time
port, key, fmt = sys.argv[1:]
conn = http.client.HTTPConnection("127.0.0.1", int(port))
start = time.perf_counter()
conn.request("GET", f"/api/events/export?format={fmt}", headers={"Authorization": f"Bearer {key}"})
response = conn.getresponse()
head = time.perf_counter()
response.read(1)
body = time.perf_counter()
print(f"{(head - start) * 1000:.1f} {(body - start) * 1000:.1f}")
conn.close()
PY
)"
read -r head_ms body_ms <<<"$first_event"
read -r code ttfb total bytes <"$dir/curl.out"
lines_expected=$events
[ "$format" = csv ] && lines_expected=$((events + 1))

echo "export-bench: $events events, $format, profile $profile"
echo "  status                  $code"
echo "  bytes                   $bytes ($((bytes / 1048576)) MiB)"
echo "  time to first byte      $(python3 -c "print(f'{$ttfb * 1000:.1f} ms')") (curl: the head); again by Python: head $head_ms ms, first event $body_ms ms"
echo "  total time              $(python3 -c "print(f'{$total:.1f} s ({$events / $total:,.0f} events/s)')")"
echo "  VmRSS   before / peak / after   $((rss_before / 1024)) / $((rss_peak / 1024)) / $((rss_after / 1024)) MiB   (growth $(((rss_peak - rss_before) / 1024)) MiB)"
echo "  RssAnon before / peak / after   $((anon_before / 1024)) / $((anon_peak / 1024)) / $((anon_after / 1024)) MiB   (growth $(((anon_peak - anon_before) / 1024)) MiB)"
echo "  RssFile before / peak / after   $((file_before / 1024)) / $((file_peak / 1024)) / $((file_after / 1024)) MiB   (the database file's mapped pages)"
[ "$code" = 200 ] || { echo "export-bench: the export answered $code" >&2; exit 1; }
# Every event came out: count the lines of a second, identical export.
lines="$(curl -fsS -H "Authorization: Bearer $key" "$base/api/events/export?format=$format" | wc -l)"
echo "  lines                   $lines (expected $lines_expected)"
[ "$lines" = "$lines_expected" ] \
    || { echo "export-bench: $lines lines, not $lines_expected" >&2; exit 1; }
