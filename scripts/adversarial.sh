#!/usr/bin/env bash
# The adversarial test of sqreen-server against a release build, with its
# figures printed: ten unauthenticated 30 MiB uploads (time to each 401,
# bytes sent before it, the process's resident memory), then the other
# attacks of sqreen-server/tests/adversarial.rs.
#
#   scripts/adversarial.sh
#   SQREEN_SERVER_BIN=/path/to/older/sqreen-server scripts/adversarial.sh   # measure another build
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -p sqreen-server --test adversarial -- --nocapture
