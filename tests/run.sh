#!/usr/bin/env bash
# The whole test suite, from a clean machine: installs what the tests need (idempotently),
# builds, provisions the WASI interpreter, and runs every test. `.ci/run` calls exactly this.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/mcp-server-code-execution-mode"
# A shared target dir outside the clone speeds up repeated runs; it is created if missing.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
mkdir -p "$CARGO_TARGET_DIR"
# The WASI backend must run wherever this suite runs (it provisions itself with pip).
export TEST_REQUIRE_BACKENDS="${TEST_REQUIRE_BACKENDS-wasi}"
# Host backtraces must never reach tool results; run the suite the way these machines are set.
export RUST_BACKTRACE="${RUST_BACKTRACE-1}"

step() { printf '\n==> %s\n' "$*" >&2; }

step "python: a virtual environment with the official MCP SDK"
venv="$cache/venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import mcp' 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'mcp==2.3.0'
fi

step "python: real upstream MCP servers (mcp-server-time, mcp-server-git)"
upstreams="$cache/upstreams-venv"
if [ ! -x "$upstreams/bin/python" ]; then
    python3 -m venv "$upstreams"
fi
if [ ! -x "$upstreams/bin/mcp-server-time" ] || [ ! -x "$upstreams/bin/mcp-server-git" ]; then
    "$upstreams/bin/pip" install --quiet --disable-pip-version-check \
        'mcp-server-time==2026.10.19' 'mcp-server-git==2026.10.19' 'mcp==2.3.0'
fi
# The Rust upstream-client tests use these servers too, and must not skip here.
export TEST_MCP_SERVER_TIME="$upstreams/bin/mcp-server-time"
export TEST_REQUIRE_UPSTREAMS=1

step "node: the MCP Inspector (CLI mode) and real upstream MCP servers"
npm_prefix="$cache/npm"
inspector="$npm_prefix/node_modules/.bin/mcp-inspector"
npm_packages=(
    '@modelcontextprotocol/inspector@2.12.0'
    '@modelcontextprotocol/server-everything@2026.8.31'
    '@modelcontextprotocol/server-memory@2026.8.31'
    '@modelcontextprotocol/server-filesystem@2026.8.31'
    '@modelcontextprotocol/server-github@2025.4.8'
    '@modelcontextprotocol/server-gdrive@2025.1.14'
)
npm_missing=0
for bin in mcp-inspector mcp-server-everything mcp-server-memory mcp-server-filesystem \
    mcp-server-github mcp-server-gdrive; do
    [ -x "$npm_prefix/node_modules/.bin/$bin" ] || npm_missing=1
done
if [ "$npm_missing" = 1 ]; then
    mkdir -p "$npm_prefix"
    npm install --prefix "$npm_prefix" --silent --no-audit --no-fund "${npm_packages[@]}"
fi
export TEST_MCP_NPM_PREFIX="$npm_prefix"

step "build (release)"
cargo build --release --locked --workspace --all-targets
bin="$CARGO_TARGET_DIR/release/mcp-server-code-execution-mode"

step "provision the WASI interpreter (pip download, verify, precompile)"
MCP_BRIDGE_LOG_LEVEL=warn "$bin" provision

step "guest runtime unit tests (host CPython)"
python3 -m unittest discover -s backends/core/guest/tests -t backends/core/guest

step "rust: unit tests and the behaviour suite"
cargo test --release --locked --workspace

step "end to end: the official Python MCP SDK and the MCP Inspector against the bridge"
BRIDGE_BIN="$bin" INSPECTOR="$inspector" UPSTREAMS_VENV="$upstreams" NPM_PREFIX="$npm_prefix" \
    "$venv/bin/python" -m unittest discover -s tests/e2e -p 'test_*.py' -v

step "bench (smoke)"
"$bin" bench --backend wasi --iterations 20 >/dev/null

step "all tests passed"
