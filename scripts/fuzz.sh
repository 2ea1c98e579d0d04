#!/usr/bin/env bash
# Runs every fuzz target of a crate (sqreen-server by default, or
# FUZZ_CRATE=sqreen-core) for a while, then minimises its corpus into
# <crate>/fuzz/corpus/<target> (committed, and replayed by the stable test
# <crate>/tests/fuzz_corpus.rs).
#
#   scripts/fuzz.sh                 # every sqreen-server target, 600 s each
#   SECONDS_PER_TARGET=60 scripts/fuzz.sh batch login
#   FUZZ_CRATE=sqreen-core scripts/fuzz.sh
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# A crash stops the run; its input is in sqreen-server/fuzz/artifacts/<target>/:
# fix the bug, then copy the input into sqreen-server/fuzz/regressions/<target>/.
set -euo pipefail
CRATE=${FUZZ_CRATE:-sqreen-server}
cd "$(dirname "$0")/../$CRATE/fuzz"
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    case "$CRATE" in
        sqreen-server) TARGETS=(batch heartbeat login session_cookie dashboard_forms admin_query) ;;
        sqreen-core) TARGETS=(scrubber client_ip config_file answers) ;;
        *) echo "unknown FUZZ_CRATE $CRATE" >&2; exit 2 ;;
    esac
fi
SECS=${SECONDS_PER_TARGET:-600}
LOG_DIR=${FUZZ_LOG_DIR:-/tmp/sqreen-fuzz-logs}
mkdir -p "$LOG_DIR"
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t"
    work=$(mktemp -d)
    echo "=== $t: ${SECS}s"
    # New inputs go to a scratch directory; seeds and the kept corpus are read.
    cargo +nightly fuzz run -O "$t" "$work" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECS" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 2>&1 | tee "$LOG_DIR/$t.log" | grep -E "^(#[0-9]+.*(DONE|pulse)|stat::|==|SUMMARY)" || true
    if grep -q "SUMMARY\|deadly signal\|panicked" "$LOG_DIR/$t.log"; then
        echo "$t: CRASH, see $LOG_DIR/$t.log and fuzz/artifacts/$t" >&2
        exit 1
    fi
    # Keep a small set of inputs that covers every edge all of them cover
    # (edges, not hit counts: a corpus small enough to commit).
    minimised=$(mktemp -d)
    cargo +nightly fuzz run -O "$t" "$minimised" "$work" "corpus/$t" -- \
        -set_cover_merge=1 -use_counters=0 >/dev/null 2>&1 || true
    rm -rf "corpus/$t" && mv "$minimised" "corpus/$t"
    rm -rf "$work"
    echo "$t: $(ls "corpus/$t" | wc -l) inputs kept"
done
