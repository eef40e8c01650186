#!/usr/bin/env bash
# build-images.sh: the product's images, pizzajoint/{order,gateway,meshctl,devcerts,consul,vault,nats,jaeger}:$PIZZA_TAG,
# from the static binaries in bin/ (make build). Every image is FROM scratch, so nothing is pulled and no
# registry is needed. Each image gets a build context of its own (hard links to its binaries, a few empty
# folders), so only what it holds is sent to the engine; unchanged binaries reuse the engine's layer cache.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

DOCKER="${DOCKER:-docker}"
TAG="${PIZZA_TAG:-dev}"
BIN="${BIN_DIR:-$ROOT_DIR/bin}"
CTX="$ROOT_DIR/.cache/docker-context"
HERE="$ROOT_DIR/deploy/docker"
IMAGES=(order gateway meshctl devcerts consul vault nats jaeger)

# BuildKit where the engine's CLI has it (Docker Desktop); the classic builder otherwise (both take these files).
if ! "$DOCKER" buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi

binaries_of() {
  case "$1" in
    consul | vault) echo "$1 meshctl" ;;
    nats) echo "nats-server meshctl" ;;
    jaeger) echo "jaeger meshctl" ;;
    *) echo "$1" ;;
  esac
}

for img in "${IMAGES[@]}"; do
  dir="$CTX/$img"
  rm -rf "$dir" && mkdir -p "$dir/tmp"
  chmod 1777 "$dir/tmp"
  for b in $(binaries_of "$img"); do
    [[ -x "$BIN/$b" ]] || die "$BIN/$b is missing: run make build first"
    src="$(readlink -f "$BIN/$b")"
    ln -f "$src" "$dir/$b" 2>/dev/null || cp -f "$src" "$dir/$b"
    # The images run as non-root users, and a container's runtime refuses to exec a binary they cannot read.
    chmod 755 "$dir/$b"
  done
  case "$img" in
    consul) mkdir -p "$dir/consul-home/data" "$dir/consul-home/agent" && chmod 700 "$dir/consul-home/data" ;;
    vault) mkdir -p "$dir/vault-home/data" "$dir/vault-home/logs" "$dir/vault-home/tls" && chmod 700 "$dir/vault-home/data" ;;
    nats) mkdir -p "$dir/nats-home/data" && chmod 700 "$dir/nats-home/data" ;;
  esac
  cp "$HERE/$img.Dockerfile" "$dir/Dockerfile"
  log "building pizzajoint/$img:$TAG"
  "$DOCKER" build -q -t "pizzajoint/$img:$TAG" "$dir" >/dev/null 2>"$CTX/$img.log" ||
    { cat "$CTX/$img.log" >&2; die "docker build of pizzajoint/$img failed"; }
done
