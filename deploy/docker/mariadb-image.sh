#!/usr/bin/env bash
# mariadb-image.sh: prints the tag of a MariaDB image built from Debian's packages, building it when missing.
# For machines with a Docker engine but no registry (nothing can be pulled): debootstrap --variant=minbase, then
# apt-get install mariadb-server inside, then `docker import`. The root filesystem's tarball is cached under
# .cache/mariadb-image/ keyed by a hash of this recipe, so a wiped engine re-imports it without a download.
# Ordinary machines use the official `mariadb` image instead (docker-compose.yml's default); both run
# deploy/docker/mariadb-entrypoint.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

SUITE="${MARIADB_IMAGE_SUITE:-bookworm}"
MIRROR="${MARIADB_IMAGE_MIRROR:-http://deb.debian.org/debian}"
DOCKER="${DOCKER:-docker}"
CACHE="${MARIADB_IMAGE_CACHE:-$ROOT_DIR/.cache/mariadb-image}"
# The recipe: this script; a change to it means a new image.
HASH="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)"
TAG="pizzajoint/mariadb-debian:$SUITE-$HASH"
TARBALL="$CACHE/$SUITE-$HASH.tar"

if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then echo "$TAG"; exit 0; fi

if [[ ! -s "$TARBALL" ]]; then
  [[ "$(id -u)" == 0 ]] || die "building the MariaDB image needs root (debootstrap)"
  "$SCRIPTS_DIR/tools.sh" ensure debootstrap >/dev/null
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock 9
  if [[ ! -s "$TARBALL" ]]; then
    rootfs="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
    trap 'umount "$rootfs/proc" 2>/dev/null || true; rm -rf "$rootfs"' EXIT
    log "building a MariaDB root filesystem from Debian $SUITE (debootstrap; a few minutes, once)"
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
      { tail -n 20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (see $CACHE/debootstrap.log)"; }
    # No service may start inside the chroot while packages install.
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d" && chmod 755 "$rootfs/usr/sbin/policy-rc.d"
    mount -t proc proc "$rootfs/proc"
    chroot "$rootfs" /bin/sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      --no-install-recommends mariadb-server mariadb-client' >>"$CACHE/debootstrap.log" 2>&1 ||
      { tail -n 20 "$CACHE/debootstrap.log" >&2; die "apt-get install mariadb-server in the root filesystem failed"; }
    umount "$rootfs/proc"
    # What an image does not need: package lists, caches, docs, and the data folder the package initialised
    # (the entrypoint initialises its own, without any password).
    chroot "$rootfs" /bin/sh -c 'apt-get clean'
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
      "$rootfs"/var/lib/mysql/* "$rootfs"/usr/sbin/policy-rc.d "$rootfs"/var/log/*.log
    mkdir -p "$rootfs/run/mysqld" && chroot "$rootfs" chown mysql:mysql /run/mysqld /var/lib/mysql
    tar --numeric-owner -C "$rootfs" -cf "$TARBALL.tmp" . && mv -f "$TARBALL.tmp" "$TARBALL"
    rm -rf "$rootfs"
    trap - EXIT
  fi
  exec 9>&-
fi
log "importing $TARBALL as $TAG"
"$DOCKER" import --change 'CMD ["mariadbd"]' --message "MariaDB from Debian $SUITE packages (pizzajoint)" \
  "$TARBALL" "$TAG" >/dev/null
echo "$TAG"
