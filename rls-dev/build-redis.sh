#!/usr/bin/env bash
# Builds the dev server with Limitador's Redis storage but without its RocksDB storage, and prints the
# binary's path. Usage: bash rls-dev/build-redis.sh [TARGET_DIR] [--release]
#
# Why a script: limitador 0.14.0 (the newest release) does not compile `redis_storage` without
# `disk_storage` (E0433): its Redis storage calls two items gated on `disk_storage`, the module
# `storage::keys::bin` and `Counter::variables_for_key`, plain serde/postcard code that needs nothing
# from RocksDB. Enabling `disk_storage` as well builds RocksDB (C++; clang and libclang-dev needed),
# the bulk of that build's cold time. So this builds against a copy of the locked crate (the one
# Cargo.lock's checksum names, taken from Cargo's registry) with those two attributes widened to
# `any(feature = "disk_storage", feature = "redis_storage")`; nothing else changes, and every other
# package is the locked one (`--locked`). The copy, a generated manifest and the build all live in
# TARGET_DIR (default rls-dev/target/redis); the clone is not written to.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target="${1:-$here/target/redis}"
mkdir -p "$target"
target="$(cd "$target" && pwd)"
profile=debug
release=()
if [ "${2:-}" = "--release" ]; then profile=release; release=(--release); fi
cargo="${CARGO:-cargo}"
# Run Cargo from rls-dev/ so rustup picks the toolchain of the repo's rust-toolchain.toml.
cd "$here"

version=$(awk '/^name = "limitador"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
[ "$version" = 0.14.0 ] || {
  echo "build-redis.sh: written for limitador 0.14.0, Cargo.lock has ${version:-none}; check whether" \
    "the new version builds redis_storage alone and update this script" >&2
  exit 1
}
host=$(rustc -vV | sed -n 's/^host: //p')
# Downloads the crate when missing (and what else metadata needs, for this host only).
registry_src=$("$cargo" metadata --locked --quiet --filter-platform "$host" --format-version 1 |
  grep -o "\"manifest_path\":\"[^\"]*/limitador-$version/Cargo.toml\"" | head -n 1 |
  sed -e 's/^"manifest_path":"//' -e 's#/Cargo.toml"$##')
[ -d "$registry_src" ] || { echo "build-redis.sh: limitador $version not found in Cargo's registry" >&2; exit 1; }

# widen FILE: its one `#[cfg(feature = "disk_storage")]` becomes any(disk_storage, redis_storage).
widen() {
  local n
  n=$(grep -c 'cfg(feature = "disk_storage")' "$1" || true)
  [ "$n" = 1 ] || { echo "build-redis.sh: $1: expected one disk_storage cfg, found $n" >&2; exit 1; }
  sed -i 's/cfg(feature = "disk_storage")/cfg(any(feature = "disk_storage", feature = "redis_storage"))/' "$1"
}
patched="$target/limitador-$version-redis-only"
stamp="two cfgs widened; bin allows dead code"   # change it when the edits change
if [ "$(cat "$patched/.patched" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$patched.tmp" "$patched"
  cp -R "$registry_src" "$patched.tmp"
  widen "$patched.tmp/src/storage/keys.rs"   # mod bin (key_for_counter_v2, ...)
  widen "$patched.tmp/src/counter.rs"        # Counter::variables_for_key
  # A path dependency's warnings are not capped like a registry one's: bin's disk-only functions
  # would warn on every build.
  grep -q '^pub mod bin {$' "$patched.tmp/src/storage/keys.rs"
  sed -i 's/^pub mod bin {$/#[allow(dead_code)]\npub mod bin {/' "$patched.tmp/src/storage/keys.rs"
  echo "$stamp" >"$patched.tmp/.patched"
  mv "$patched.tmp" "$patched"
fi

# The manifest and lock file, pointed at the patched copy (written only when they change, so Cargo
# sees no change on later runs): the bin's source stays in rls-dev/src.
ws="$target/ws"
mkdir -p "$ws"
# put FILE: stdin becomes FILE when it differs.
put() {
  cat >"$1.new"
  if cmp -s "$1.new" "$1"; then rm -f "$1.new"; else mv "$1.new" "$1"; fi
}
grep -q '^path = "src/main.rs"$' Cargo.toml || { echo "build-redis.sh: no bin path in Cargo.toml" >&2; exit 1; }
{
  sed "s#^path = \"src/main.rs\"\$#path = \"$here/src/main.rs\"#" Cargo.toml
  printf '\n[patch.crates-io]\nlimitador = { path = "%s" }\n' "$patched"
} | put "$ws/Cargo.toml"
# A path package has no source or checksum line in Cargo.lock; every other line stays.
awk '/^name = "limitador"$/ { p = 1 } p && /^(source|checksum) = / { next } /^$/ { p = 0 } { print }' \
  Cargo.lock | put "$ws/Cargo.lock"

CARGO_TARGET_DIR="$target" "$cargo" build --locked --quiet --features redis "${release[@]}" \
  --manifest-path "$ws/Cargo.toml"
echo "$target/$profile/edgeward-rls-dev"
