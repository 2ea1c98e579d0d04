#!/usr/bin/env bash
# The README's test command: runs every test of the workspace on a machine
# with only the Rust toolchain.
#
#   scripts/test.sh [extra cargo test arguments]
#
# 1. Installs what the tests need from Debian's packages when it is missing
#    (postgresql for the sqreen-server store tests; chromium and
#    chromium-driver for the dashboard's browser test). Without root it
#    prints the exact apt-get line and stops, unless SQREEN_ALLOW_SKIPS=1.
# 2. Starts a throwaway PostgreSQL on 127.0.0.1 (scripts/pg-test.sh) and
#    stops it at the end.
# 3. Runs `cargo test --workspace --all-features`, then the
#    interoperability test with the historical Python and Node.js agents
#    (scripts/interop.sh: CPython 3.9 from pyenv, packages from PyPI and
#    npm; it fails, never skips, when they cannot be had), and the
#    property-based test of the admin API against its OpenAPI description
#    (scripts/schemathesis.sh: schemathesis from PyPI; it fails, never
#    skips).
# 4. Lists every test that skipped itself (tests append to
#    $SQREEN_SKIP_LOG): a skip is never a pass. With CI set, a skip fails
#    the run (the tests themselves also fail rather than skip under CI).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "test.sh: installing ${missing[*]} (Debian packages)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    elif [ "${SQREEN_ALLOW_SKIPS:-}" = 1 ]; then
        echo "test.sh: WARNING: ${missing[*]} missing; the tests that need them will be SKIPPED" >&2
    else
        echo "test.sh: the tests need Debian packages that are not installed: ${missing[*]}" >&2
        echo "test.sh: install them as root:  apt-get install -y --no-install-recommends ${missing[*]}" >&2
        echo "test.sh: (or run with SQREEN_ALLOW_SKIPS=1 to run the rest; skips are listed, never passed)" >&2
        exit 1
    fi
fi

if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    eval "$(bash scripts/pg-test.sh start)"
    trap 'bash scripts/pg-test.sh stop' EXIT
    echo "test.sh: throwaway PostgreSQL at $SQREEN_TEST_POSTGRES_URL"
fi
if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
    export SQREEN_SKIP_BROWSER=1
fi

SQREEN_SKIP_LOG=$(mktemp "${TMPDIR:-/tmp}/sqreen-skips.XXXXXX")
export SQREEN_SKIP_LOG
status=0
cargo test --workspace --all-features "$@" || status=$?
if [ "$#" -eq 0 ]; then
    echo
    echo "test.sh: the historical agents against sqreen-server (scripts/interop.sh)"
    bash scripts/interop.sh || status=$?
    echo
    echo "test.sh: the admin API against its OpenAPI description (scripts/schemathesis.sh)"
    bash scripts/schemathesis.sh || status=$?
fi

skipped=$(sort -u "$SQREEN_SKIP_LOG" | grep -c . || true)
if [ "$skipped" -gt 0 ]; then
    echo
    echo "test.sh: $skipped test(s) SKIPPED (not run, not passed):"
    sort -u "$SQREEN_SKIP_LOG" | sed 's/^/  SKIPPED /'
    if [ -n "${CI:-}" ] && [ "$status" = 0 ]; then
        echo "test.sh: skips are failures in CI" >&2
        status=1
    fi
else
    echo "test.sh: no test skipped"
fi
rm -f "$SQREEN_SKIP_LOG"
exit "$status"
