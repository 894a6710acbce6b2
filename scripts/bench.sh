#!/usr/bin/env bash
# The end-to-end benchmark (issue 9): edgeward in Envoy side by side with bare Envoy (A), Envoy's native
# filters (B), a no-op Rust wasm filter (C), edgeward's allow path (D), D with 100k prefixes, B with the
# same 100k prefixes, D with one limit on a rate limit service (D-rls), D-rls with a fresh nonce per request
# checked through that service (D-rls-nonce), and edgeward's deny paths (E).
# Builds what it measures (also the development rate limit service, rls-dev), installs what it needs
# (wrk, binaryen and util-linux from Debian when missing and root; oha from crates.io into the cache),
# then runs benches/e2e/bench.py and prints the table, also written to bench-results/latest.md and a
# dated copy.
#
# Needs 2 CPUs (Envoy on CPU 0, the load generator and D-rls's rate limit service on CPU 1). Knobs
# (environment): BENCH_ROUNDS (3), BENCH_SECONDS (5, throughput per run), BENCH_LATENCY_SECONDS (4),
# BENCH_WARMUP_SECONDS (2), BENCH_ONLY=A,D,... (a subset of the configurations), BENCH_PARTS=1 (also the P
# configurations: where D's cost goes, check by check, and D's host calls alone), BENCH_EXPERIMENTS=1 (also
# issue 25's document experiments, e.g. Dnohdr), BENCH_ALT_WASM=path (another edgeward build, measured as Dalt
# beside D; A2, bare Envoy again, gives the A/A noise beside it), BENCH_FIXED_RATE (1000: the fixed low rate of
# the latency that users would measure).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
START=$(date +%s)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OHA_VERSION=1.16.0

# Debian tools: wrk, wasm-opt (binaryen), taskset (util-linux), python3; OpenSSL headers for oha.
missing=()
for tool in wrk:wrk wasm-opt:binaryen taskset:util-linux python3:python3 pkg-config:pkg-config; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
[ -x "$CACHE/oha-$OHA_VERSION/bin/oha" ] || pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]} (apt-get)"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  else
    echo "missing tools: please install ${missing[*]}" >&2; exit 1
  fi
fi
OHA="$CACHE/oha-$OHA_VERSION/bin/oha"
if [ ! -x "$OHA" ]; then
  log "installing oha $OHA_VERSION from crates.io into $CACHE (first run only; a few minutes)"
  # native-tls (system OpenSSL) instead of the default rustls/aws-lc: quicker to build; TLS is not used.
  CARGO_TARGET_DIR="$CACHE/oha-build" cargo install --quiet --locked --no-default-features --features native-tls oha \
    --version "=$OHA_VERSION" --root "$CACHE/oha-$OHA_VERSION" >&2
  rm -rf "$CACHE/oha-build"
fi
[ "$(nproc)" -ge 2 ] || { echo "the benchmark needs 2 CPUs (Envoy on one, the load generator on the other)" >&2; exit 1; }

# What is measured: the plugin as shipped (wasm-opt -O3), the host-call-counting build, the no-op filter.
build_wasm
RAW_SIZE=$(stat -c %s "$TARGET/wasm32-wasip1/release/edgeward.wasm")
log "building the host-call-counting plugin (--features host-call-count), the no-op filter and the host-calls filter"
# Its own target directory, so the two feature sets do not relink each other on every run.
CARGO_TARGET_DIR="$TARGET/host-call-count" cargo build --quiet --release --target wasm32-wasip1 --lib \
  --features host-call-count
optimize_wasm "$TARGET/host-call-count/wasm32-wasip1/release/edgeward.wasm" dist/edgeward-host-call-count.wasm
(cd benches/noop-filter && CARGO_TARGET_DIR="$TARGET" cargo build --quiet --release --target wasm32-wasip1)
optimize_wasm "$TARGET/wasm32-wasip1/release/noop_filter.wasm" dist/noop-filter.wasm
(cd benches/host-calls-filter && CARGO_TARGET_DIR="$TARGET" cargo build --quiet --release --target wasm32-wasip1)
optimize_wasm "$TARGET/wasm32-wasip1/release/host_calls_filter.wasm" dist/host-calls-filter.wasm
log "building the edgeward CLI (signs the benchmark's request)"
cargo build --quiet --release --bin edgeward
# D-rls's rate limit service, --release (a debug build's latency would count as edgeward's), into the
# target directory the e2e tests use (tests/support/rls.rs), so both share one build per machine.
RLS_TARGET="${EDGEWARD_RLS_TARGET:-$CACHE/rls-dev-target}"
log "building the development rate limit service (rls-dev, --release; ~4 min of CPU the first time)"
(cd rls-dev && CARGO_TARGET_DIR="$RLS_TARGET" cargo build --quiet --release --locked)
ENVOY="$(find_envoy)"
log "Envoy: $("$ENVOY" --version | sed '/^$/d' | tr -s ' ' | cut -c1-100)"

python3 benches/e2e/bench.py --envoy "$ENVOY" --wasm dist/edgeward.wasm \
  --wasm-hc dist/edgeward-host-call-count.wasm --noop dist/noop-filter.wasm \
  --host-calls dist/host-calls-filter.wasm \
  --cli "$TARGET/release/edgeward" --oha "$OHA" --wasm-raw-size "$RAW_SIZE" \
  --rls-dev "$RLS_TARGET/release/edgeward-rls-dev"
log "scripts/bench.sh took $(( $(date +%s) - START )) s"
