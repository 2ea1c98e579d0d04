#!/usr/bin/env bash
# The interoperability test (issue 16): the real historical Sqreen agents,
# installed from PyPI and npm, against a real sqreen-server process.
#
#   bash scripts/interop.sh [python|node|all]    (default: all)
#
# Installs, once, into $SQREEN_INTEROP_AGENTS (default target/interop-agents):
#   - Python: a venv of CPython 3.9 (sqreen 1.27.4 refuses >= 3.10), found
#     as $SQREEN_INTEROP_PYTHON, pyenv's 3.9.*, or python3.9 on PATH, with
#     sqreen==1.27.4 and Flask 1.1.4 and the pins it works with;
#   - Node.js: sqreen@2.0.2 and express@4 (npm skips sq-native's install
#     script: it is run by hand, it unpacks prebuilt N-API bindings).
# Then builds sqreen-server and runs scripts/interop/run.py for each agent.
# A missing interpreter or package is a failure that says why, never a skip.
# Traffic stays on 127.0.0.1 once the packages are installed.
set -euo pipefail
cd "$(dirname "$0")/.."

which_agents="${1:-all}"
agents_dir="${SQREEN_INTEROP_AGENTS:-$PWD/target/interop-agents}"
work_dir="${SQREEN_INTEROP_WORK:-$PWD/target/interop-work}"
mkdir -p "$agents_dir" "$work_dir"

fail() { echo "interop: FAIL: $*" >&2; exit 1; }

setup_python() {
    local py="${SQREEN_INTEROP_PYTHON:-}"
    if [ -z "$py" ]; then
        for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.9*/bin/python "$(command -v python3.9 || true)"; do
            if [ -n "$candidate" ] && [ -x "$candidate" ] \
                && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 9))' 2>/dev/null; then
                py="$candidate"
                break
            fi
        done
    fi
    [ -n "$py" ] || fail "no CPython 3.9 found (sqreen==1.27.4 refuses >= 3.10): install one (pyenv install 3.9) or set SQREEN_INTEROP_PYTHON"
    "$py" -c 'import sys; assert sys.version_info[:2] == (3, 9), sys.version' \
        || fail "$py is not CPython 3.9"
    if ! "$agents_dir/py/bin/python" -c 'import sqreen, flask' 2>/dev/null; then
        "$py" -m venv "$agents_dir/py" || fail "cannot create a venv with $py"
        "$agents_dir/py/bin/pip" install -q sqreen==1.27.4 Flask==1.1.4 Werkzeug==1.0.1 \
            Jinja2==2.11.3 itsdangerous==1.1.0 MarkupSafe==1.1.1 click==7.1.2 \
            || fail "pip could not install sqreen==1.27.4 and the Flask 1.1.4 pins"
    fi
    "$agents_dir/py/bin/python" -c 'import sqreen, flask; assert sqreen.__version__ == "1.27.4"' \
        || fail "the venv does not hold sqreen 1.27.4 and Flask"
}

setup_node() {
    command -v node >/dev/null || fail "node is not installed (Node.js 20 is needed)"
    command -v npm >/dev/null || fail "npm is not installed"
    local node_dir="$agents_dir/node"
    mkdir -p "$node_dir"
    if ! [ -f "$node_dir/node_modules/sqreen/package.json" ]; then
        (cd "$node_dir" && { [ -f package.json ] || npm init -y >/dev/null; } \
            && npm install --no-audit --no-fund sqreen@2.0.2 express@4 >/dev/null) \
            || fail "npm could not install sqreen@2.0.2 and express@4"
    fi
    (cd "$node_dir/node_modules/sq-native" && node install.js >/dev/null) \
        || fail "sq-native's install.js failed"
    cp scripts/interop/node_app.js "$node_dir/node_app.js"
    (cd "$node_dir" && node -e 'require("sqreen/package.json").version === "2.0.2" || process.exit(1)') \
        || fail "node_modules does not hold sqreen 2.0.2"
}

case "$which_agents" in
    python) setup_python ;;
    node) setup_node ;;
    all) setup_python; setup_node ;;
    *) fail "unknown agent $which_agents (python, node or all)" ;;
esac

cargo build -q -p sqreen-server --bin sqreen-server
server_bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/sqreen-server"

status=0
for agent in python node; do
    if [ "$which_agents" = all ] || [ "$which_agents" = "$agent" ]; then
        echo "=== interop: $agent agent"
        rm -rf "${work_dir:?}/$agent"
        python3 scripts/interop/run.py --agent "$agent" --server "$server_bin" \
            --agents "$agents_dir" --work "$work_dir/$agent" || status=1
    fi
done
exit $status
