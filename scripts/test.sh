#!/usr/bin/env bash
# Every test: formatting and lints, the core's unit tests natively and on wasm32 (Node), and the
# end-to-end tests through a real Envoy (>= 1.40, V8) running the built plugin.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
command -v node >/dev/null 2>&1 || { echo "node is needed for the wasm32 test tier" >&2; exit 1; }
ensure_redis_server

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy (native, all targets; wasm32-wasip1 plugin, also with host-call-count)"
cargo clippy --quiet --all-targets -- -D warnings
cargo clippy --quiet --release --target wasm32-wasip1 --lib -- -D warnings
# The benchmark's host-call-counting build (scripts/bench.sh) must keep compiling too.
cargo clippy --quiet --release --target wasm32-wasip1 --lib --features host-call-count -- -D warnings

build_wasm
export ENVOY_BIN="$(find_envoy)"
export EDGEWARD_WASM="$ROOT/dist/edgeward.wasm"
log "Envoy: $("$ENVOY_BIN" --version | tr -s ' ' | cut -c1-100)"

log "the development rate limit service (rls-dev/, its own workspace): fmt, unit tests"
(cd rls-dev && cargo fmt -- --check && CARGO_TARGET_DIR="$CACHE/rls-dev-target" cargo test --quiet --locked 2>&1)

log "native tests: core units, CLI, and end-to-end through Envoy"
cargo test --quiet 2>&1

log "the core's unit tests on wasm32-unknown-unknown (Node)"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$(find_wasm_bindgen_runner)" \
  cargo test --target wasm32-unknown-unknown --lib 2>&1
log "all tests passed"
