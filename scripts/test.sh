#!/usr/bin/env bash
# Every test: formatting and lints, the core's unit tests natively and on wasm32 (Node), and the
# end-to-end tests through a real Envoy (V8) running the built plugin: on the newest tested release, then
# again on the oldest supported one (1.36.x).
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
check_envoy "$ENVOY_BIN"
log "Envoy: $("$ENVOY_BIN" --version | tr -s ' ' | cut -c1-100)"

# tests/e2e_docker.rs runs envoy/docker-compose.yml for real: Docker and compose are installed (apt) and
# dockerd started here when missing and running as root, and the dockerd started here is stopped on exit.
# Where Docker still cannot run, the test fails (EDGEWARD_REQUIRE_DOCKER=1); EDGEWARD_REQUIRE_DOCKER=0 makes
# it skip instead, saying why.
source "$ROOT/scripts/docker.sh"
trap stop_docker EXIT
ensure_docker
export EDGEWARD_REQUIRE_DOCKER="${EDGEWARD_REQUIRE_DOCKER:-1}"

log "the development rate limit service (rls-dev/, its own workspace): fmt, unit tests"
(cd rls-dev && cargo fmt -- --check && CARGO_TARGET_DIR="$CACHE/rls-dev-target" cargo test --quiet --locked 2>&1)

log "native tests: core units, CLI, and end-to-end through Envoy"
cargo test --quiet 2>&1

OLDEST_BIN="$(install_envoy "$ENVOY_OLDEST")"
check_envoy "$OLDEST_BIN"
log "end-to-end tests again on the oldest supported Envoy: $("$OLDEST_BIN" --version | tr -s ' ' | cut -c1-100)"
ENVOY_BIN="$OLDEST_BIN" cargo test --quiet --test 'e2e_*' --test harness_smoke 2>&1

# Each fuzz target briefly from its kept corpus (nightly and cargo-fuzz are installed on first run).
log "fuzz targets, ${FUZZ_SECONDS:-7} s each (scripts/fuzz.sh)"
FUZZ_SECONDS="${FUZZ_SECONDS:-7}" bash scripts/fuzz.sh

log "the core's unit tests on wasm32-unknown-unknown (Node)"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$(find_wasm_bindgen_runner)" \
  cargo test --target wasm32-unknown-unknown --lib 2>&1
log "all tests passed"
