#!/usr/bin/env bash
# Property-based tests of the admin API against its own OpenAPI description
# (GET /api/openapi.json), with schemathesis.
#
#   bash scripts/schemathesis.sh [extra `schemathesis run` arguments]
#
# 1. Installs schemathesis from PyPI, once, into a venv under target/
#    ($SQREEN_SCHEMATHESIS_VENV, default target/schemathesis-venv), with
#    python3.11 (or python3 >= 3.9).
# 2. Builds sqreen-server and starts it on 127.0.0.1 (a free port) with a
#    throwaway SQLite database and a known admin key.
# 3. Seeds an app, a few events (through the agent protocol: login, batch),
#    a playbook and the alert and action it fires, so that lists are not all
#    empty.
# 4. Runs `schemathesis run` on every operation (phases examples, coverage,
#    fuzzing, stateful), with the admin key, checking `not_a_server_error`
#    (no 5xx, no dropped connection), `response_schema_conformance` (every
#    answer matches its documented schema), `status_code_conformance` (no
#    undocumented status) and `content_type_conformance`, with
#    $SQREEN_SCHEMATHESIS_EXAMPLES (default 100) examples per operation and
#    phase and a fixed seed ($SQREEN_SCHEMATHESIS_SEED, default 1818) so
#    that a run can be replayed. Takes about half a minute once built.
# Exits non-zero on any failure, on a missing interpreter or package, or when
# the server does not start: it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "schemathesis: FAIL: $*" >&2; exit 1; }

venv="${SQREEN_SCHEMATHESIS_VENV:-$PWD/target/schemathesis-venv}"
examples="${SQREEN_SCHEMATHESIS_EXAMPLES:-100}"
seed="${SQREEN_SCHEMATHESIS_SEED:-1818}"

if ! "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
    py="$(command -v python3.11 || command -v python3 || true)"
    [ -n "$py" ] || fail "no python3 found: install Python 3.9 or later"
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
        || fail "$py is older than 3.9 (schemathesis needs 3.9 or later)"
    echo "schemathesis: installing schemathesis into $venv"
    rm -rf "$venv"
    "$py" -m venv "$venv" || fail "could not create a venv with $py"
    "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis>=4.32,<5" \
        || fail "could not install schemathesis from PyPI"
fi
"$venv/bin/schemathesis" --version

cargo build -q -p sqreen-server --bin sqreen-server
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/sqreen-server"
[ -x "$bin" ] || fail "no sqreen-server binary at $bin"

work="$(mktemp -d "${TMPDIR:-/tmp}/sqreen-schemathesis.XXXXXX")"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
key="schemathesis-admin-key-0123456789abcdef"
SQREEN_SERVER_ADMIN_KEY="$key" "$bin" serve --addr "127.0.0.1:$port" \
    --database "sqlite://$work/schemathesis.db" \
    --session-secret-file "$work/session-key" \
    --heartbeat-delay 1 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    curl -fsS "$base/healthz" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; fail "sqreen-server exited"; }
    sleep 0.1
done
curl -fsS "$base/healthz" >/dev/null || fail "sqreen-server did not answer on $base"

# Seeding: an app, an agent session, a playbook, events that fire it.
json() { "$venv/bin/python" -c "import json, sys; print(json.load(sys.stdin)$1)"; }
admin() { curl -fsS -H "Authorization: Bearer $key" -H 'Content-Type: application/json' "$@"; }
token="$(admin -X POST "$base/api/apps" -d '{"name": "shop"}' | json '["token"]')"
admin -X POST "$base/api/playbooks" -d '{"name": "brute force",
    "trigger": {"event": "login.failed", "threshold": 3, "period_s": 600, "actor": "ip"},
    "responses": [{"type": "block", "duration_s": 3600}]}' >/dev/null
session="$(curl -fsS -X POST "$base/sqreen/v1/app-login" -H "X-Api-Key: $token" \
    -H 'Content-Type: application/json' -d '{"agent_type": "rust", "agent_version": "0.1.0"}' \
    | json '["session_id"]')"
batch="$("$venv/bin/python" - <<'EOF'
import datetime, json
now = datetime.datetime.now(datetime.timezone.utc).isoformat()
def record(i, ip, event):
    return {"event_type": "request_record", "version": "20171208", "rid": f"r{i}",
            "client_ip": ip, "start": now, "end": now,
            "request": {"verb": "POST", "path": "/login", "host": "example.com",
                        "user_agent": "schemathesis-seed", "headers": [], "parameters": {}},
            "response": {"status": 200},
            "observed": {"sdk": [{"time": now, "name": "track",
                                  "args": [event, {"properties": {"n": i},
                                                   "user_identifiers": {"uid": f"u{i % 3}"}}]}]}}
events = [record(i, "81.2.69.%d" % (i % 4), ["login.failed", "page.view"][i % 2]) for i in range(24)]
print(json.dumps({"batch": events}))
EOF
)"
curl -fsS -X POST "$base/sqreen/v0/batch" -H "X-Session-Key: $session" \
    -H 'Content-Type: application/json' -d "$batch" >/dev/null
alerts="$(admin "$base/api/alerts" | json '["alerts"].__len__()')"
[ "$alerts" -gt 0 ] || fail "seeding fired no alert"

echo "schemathesis: $base/api/openapi.json, $examples examples per operation, seed $seed"
started=$(date +%s)
status=0
"$venv/bin/schemathesis" run "$base/api/openapi.json" \
    --header "Authorization: Bearer $key" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
    --max-examples "$examples" \
    --seed "$seed" \
    --workers 2 \
    --request-timeout 30 \
    --no-color \
    "$@" || status=$?
echo "schemathesis: finished in $(( $(date +%s) - started )) s, exit status $status"
if [ "$status" -ne 0 ]; then
    echo "schemathesis: last lines of the server's log:" >&2
    tail -n 20 "$work/server.log" >&2
fi
exit "$status"
