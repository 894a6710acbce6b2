#!/usr/bin/env bash
# Packages the plugin as an OCI image that both Istio (WasmPlugin `url: oci://...`, or an EnvoyFilter's remote
# code fetched by the Istio agent) and Envoy Gateway (EnvoyExtensionPolicy `code.type: Image`) pull:
#
#   bash scripts/oci-image.sh [IMAGE]        # builds IMAGE (default edgeward-wasm:<version in Cargo.toml>)
#   bash scripts/oci-image.sh IMAGE --push   # and pushes it (IMAGE names your registry: registry.example/edgeward:0.1.0)
#
# The plugin is dist/edgeward.wasm (EDGEWARD_WASM overrides; built when missing). Needs Docker.
#
# The format, the "compat" variant of the Wasm image specification: an image FROM scratch whose single layer
# holds one file, plugin.wasm. Both fetchers take it (Istio pkg/wasm/imagefetcher.go, Envoy Gateway
# internal/wasm/imagefetcher.go, the same code): a manifest of media type
# application/vnd.docker.distribution.manifest.v2+json (what `docker push` of this image sends) must have a
# layer of media type application/vnd.docker.image.rootfs.diff.tar.gzip (Istio: exactly one layer; Envoy
# Gateway: the last one), a gzipped tar with a file named plugin.wasm; an OCI manifest works the same with one
# application/vnd.oci.image.layer.v1.tar+gzip layer. (The other, "oci" variant - a raw
# application/vnd.module.wasm.content.layer.v1+wasm layer beside a config layer - needs an artifact tool such as
# oras, not Docker.) Envoy Gateway's "Build a Wasm image" task gives the same Dockerfile: FROM scratch, one COPY.
# tests/e2e_docker.rs builds this image and checks exactly that, through `docker save` and a local registry.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
image="${1:-edgeward-wasm:$version}"
push="${2:-}"
if [ -n "$push" ] && [ "$push" != "--push" ]; then
  echo "usage: scripts/oci-image.sh [IMAGE] [--push]" >&2
  exit 2
fi

wasm="${EDGEWARD_WASM:-$ROOT/dist/edgeward.wasm}"
if [ ! -s "$wasm" ]; then
  build_wasm
  wasm="$ROOT/dist/edgeward.wasm"
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$wasm" "$ctx/plugin.wasm"
# A fixed file time: the same plugin gives the same layer digest.
touch -d "@${SOURCE_DATE_EPOCH:-0}" "$ctx/plugin.wasm"
chmod 0644 "$ctx/plugin.wasm"
# Exactly one instruction that adds files, so exactly one layer.
printf 'FROM scratch\nCOPY plugin.wasm /plugin.wasm\n' > "$ctx/Dockerfile"

build=(docker build --quiet --tag "$image")
# BuildKit would push an index with a provenance attestation beside the image; the fetchers want the plain image
# manifest (an index is resolved by platform, and a wasm image has none of its own).
if docker buildx version >/dev/null 2>&1 && [ "${DOCKER_BUILDKIT:-1}" != 0 ]; then
  build+=(--provenance=false)
fi
log "building $image from $wasm ($(wc -c < "$wasm") bytes)"
"${build[@]}" "$ctx" >/dev/null
echo "$image"
if [ "$push" = "--push" ]; then
  log "pushing $image"
  docker push --quiet "$image" >&2
  # The reference by digest, to pin in the recipes (Istio: oci://<it>; Envoy Gateway: code.image.url).
  docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$image" | grep -F "${image%:*}@" || true
fi
