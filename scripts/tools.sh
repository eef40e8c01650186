#!/usr/bin/env bash
# tools.sh prebuild TOOL...: ensure several at once (see prebuild).
# tools.sh ensure consul|vault|nats-server|jaeger|compose|mariadb|jq: prints the path of a usable binary, installing
# or building it when missing. consul/vault/nats-server/jaeger: PATH first, else .cache/bin (pinned version), else
# built once from consul/build, vault/build, nats/build or jaeger/build.
# compose: `docker compose` if it works, else the Compose v2 plugin built once from compose/build and installed as a
# Docker CLI plugin (in $DOCKER_CONFIG/cli-plugins, default ~/.docker/cli-plugins).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SCRIPTS_DIR/versions.env"

CACHE_BIN="${CACHE_BIN:-$ROOT_DIR/.cache/bin}"
# TOOLS_STRICT=1 refuses a PATH binary whose version differs from the pin (default: use it, with a warning).
TOOLS_STRICT="${TOOLS_STRICT:-0}"

# tool_version BIN: the bare version ("1.22.3") from the first line of `BIN version`. The whole output is read
# before the first line is taken: a reader that stops early (head) kills the tool with SIGPIPE, and under
# pipefail that fails the caller at random.
# jaeger prints JSON instead ({"gitCommit":"","gitVersion":"v1.75.0",...}).
tool_version() {
  local out
  out="$("$1" version 2>/dev/null)" || true
  sed -nE -e '1s/^[A-Za-z -]+ v([0-9]+\.[0-9]+\.[0-9]+[^ ,]*).*/\1/p' \
    -e '1s/^\{.*"gitVersion":"v([0-9]+\.[0-9]+\.[0-9]+[^"]*)".*/\1/p' <<<"$out"
}

pinned_version() {
  case "$1" in
    consul) echo "$CONSUL_VERSION" ;;
    vault) echo "$VAULT_VERSION" ;;
    nats-server) echo "$NATS_SERVER_VERSION" ;;
    jaeger) echo "$JAEGER_VERSION" ;;
    compose) echo "$COMPOSE_VERSION" ;;
  esac
}

# build_tool NAME: go-builds NAME from its pinned module into the cache; a lock keeps parallel callers from racing.
build_tool() {
  local name="$1" src="$ROOT_DIR/${1%-server}/build" out="$CACHE_BIN/$1"
  command -v go >/dev/null || die "go is needed to build $name (no $name on PATH)"
  mkdir -p "$CACHE_BIN"
  exec 9>"$CACHE_BIN/.$name.lock"
  flock 9
  # Another caller may have finished the build while we waited for the lock.
  [[ "$name" == compose ]] && out="$CACHE_BIN/docker-compose"
  if [[ -x "$out" && "$(tool_version "$out")" == "$(pinned_version "$name")" ]]; then
    exec 9>&-; return 0
  fi
  log "building $name v$(pinned_version "$name") from $src (takes 5-10 minutes on 2 cores, once)"
  # GOWORK=off: the build module must never be mixed with the product's module.
  local pkg=. ldflags="-s -w"
  if [[ "$name" == compose ]]; then
    # compose/build names the plugin's main package as a tool; its version string is set at link time.
    out="$CACHE_BIN/docker-compose" pkg=github.com/docker/compose/v2/cmd
    ldflags+=" -X github.com/docker/compose/v2/internal.Version=v$COMPOSE_VERSION"
  elif [[ "$name" == jaeger ]]; then
    # jaeger/build names jaeger's v2 (OpenTelemetry Collector based) main as a tool; `jaeger version` reports the
    # module version set here, which is how a cached binary is matched against the pin.
    pkg=github.com/jaegertracing/jaeger/cmd/jaeger
    ldflags+=" -X github.com/jaegertracing/jaeger/internal/version.latestVersion=v$JAEGER_VERSION"
  fi
  (cd "$src" && GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 \
    go build -trimpath -ldflags="$ldflags" -o "$out.tmp" "$pkg") >&2 || die "building $name failed"
  # Mode 755 whatever the caller's umask (stack.sh runs with 077): the images' non-root users and the service
  # users run these binaries too.
  chmod 755 "$out.tmp" "$CACHE_BIN"
  mv -f "$out.tmp" "$out"
  exec 9>&-
  log "built $out"
}

# ensure_pinned NAME: prints a usable consul, vault, nats-server or jaeger.
ensure_pinned() {
  local name="$1" want path have
  want="$(pinned_version "$name")"
  if path="$(command -v "$name")"; then
    have="$(tool_version "$path")"
    if [[ "$have" == "$want" ]]; then echo "$path"; return 0; fi
    if [[ "$TOOLS_STRICT" != 1 ]]; then
      log "warning: using $path v${have:-?} from PATH (pinned: v$want)"
      echo "$path"; return 0
    fi
    log "ignoring $path v${have:-?} (pinned: v$want, TOOLS_STRICT=1)"
  fi
  path="$CACHE_BIN/$name"
  if [[ ! -x "$path" || "$(tool_version "$path")" != "$want" ]]; then
    build_tool "$name"
  fi
  # A binary cached under a tighter umask by an earlier version of this script: the service users and the images
  # run it too.
  [[ "$(stat -c %a "$path")" == 755 ]] || chmod 755 "$path"
  echo "$path"
}

# ensure_compose: prints `docker compose` once it works, building and installing the plugin when it is missing.
# A plugin the user installed (Docker Desktop, a distribution package) is always preferred.
ensure_compose() {
  local docker="${DOCKER:-docker}" plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins" bin="$CACHE_BIN/docker-compose"
  command -v "$docker" >/dev/null || die "no docker CLI on PATH"
  if "$docker" compose version >/dev/null 2>&1; then echo "$docker compose"; return 0; fi
  if [[ ! -x "$bin" || "$(tool_version "$bin")" != "$COMPOSE_VERSION" ]]; then
    build_tool compose
  fi
  mkdir -p "$plugins"
  ln -sfn "$bin" "$plugins/docker-compose"
  log "installed the Compose v$COMPOSE_VERSION plugin as $plugins/docker-compose"
  "$docker" compose version >/dev/null 2>&1 || die "docker compose still fails after installing $plugins/docker-compose"
  echo "$docker compose"
}

# apt_install PKG...: Debian packages, without starting any service they ship (policy-rc.d says no).
apt_install() {
  [[ "$(id -u)" == 0 ]] || die "installing $* needs root (apt-get)"
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
  fi
  log "installing $* with apt-get"
  {
    apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
  } >&2 || { ((made_policy)) && rm -f "$policy"; die "apt-get install $* failed"; }
  ((made_policy)) && rm -f "$policy"
  return 0
}

ensure_mariadb() {
  if ! find_bin mariadbd >/dev/null || ! find_bin mariadb-install-db >/dev/null || ! find_bin mariadb >/dev/null; then
    apt_install mariadb-server mariadb-client
  fi
  find_bin mariadbd
}

ensure_apt_tool() {
  find_bin "$1" >/dev/null || apt_install "$1"
  find_bin "$1"
}

# prebuild TOOL...: ensures each tool at once, in the background, and waits for all of them. The first builds of
# consul and vault overlap their module downloads and their single-threaded links with each other's compiles.
prebuild() {
  local pids=() t pid rc=0
  for t in "$@"; do
    main ensure "$t" >/dev/null &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  return "$rc"
}

main() {
  if [[ "${1:-}" == prebuild ]]; then shift; prebuild "$@"; return; fi
  case "${1:-}:${2:-}" in
    ensure:consul | ensure:vault | ensure:nats-server | ensure:jaeger) ensure_pinned "$2" ;;
    ensure:compose) ensure_compose ;;
    ensure:mariadb) ensure_mariadb ;;
    ensure:jq | ensure:curl | ensure:debootstrap) ensure_apt_tool "$2" ;;
    ensure:nft) find_bin nft >/dev/null || apt_install nftables; find_bin nft ;;
    # The staff portal's browser test; fonts come as a recommendation only, and --no-install-recommends skips them.
    ensure:chromium) find_bin chromium >/dev/null || apt_install chromium fonts-liberation; find_bin chromium ;;
    *) die "usage: $0 ensure consul|vault|nats-server|jaeger|compose|mariadb|jq|curl|debootstrap|chromium|nft" ;;
  esac
}

main "$@"
