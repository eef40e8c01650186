#!/bin/bash
# MariaDB's entrypoint in Compose, for the official `mariadb` image and for the one built from Debian's packages
# (deploy/docker/mariadb-image.sh) alike. No password anywhere: not in the environment, a file or a log. The
# first start initialises the data folder with root@localhost identified by the unix socket only and no anonymous
# user; meshctl (in the bootstrap container, as root, through the shared socket folder) creates Vault's admin,
# whose password Vault rotates at once. Runs as root only to hand the folders to mysql; mariadbd drops to mysql.
#
# mariadb-entrypoint.sh primary|replica: the primary writes a binary log with GTIDs from its first start, so the
# replica follows it from the beginning with no copy of the data; the replica is read-only (only replication
# and root write). meshctl setup points the replica at the primary, once (provision/replica.go).
set -euo pipefail

ROLE="${1:-primary}"
case "$ROLE" in
  # A week of binary log: a replica that was away that long catches up; one away longer is set up anew.
  primary) role_opts=(--server-id=1 --log-bin=mariadb-bin --binlog-format=ROW --expire-logs-days=7) ;;
  replica) role_opts=(--server-id=2 --read-only --skip-log-bin --relay-log=relay-bin) ;;
  *) echo "pizza: role must be primary or replica, not $ROLE" >&2; exit 2 ;;
esac

DATA=/var/lib/mysql
RUN=/run/mysqld
MARKER="$DATA/.pizza-initialised"

mkdir -p "$DATA" "$RUN"
chown mysql:mysql "$DATA" "$RUN"
# The socket folder is shared with the bootstrap container (root) only; the socket itself is what it opens.
chmod 0755 "$RUN"

if [[ ! -f "$MARKER" ]]; then
  echo "pizza: initialising the data folder (root: unix socket only; no anonymous users)"
  find "$DATA" -mindepth 1 -delete
  mariadb-install-db --no-defaults --datadir="$DATA" --user=mysql --auth-root-authentication-method=socket \
    --skip-test-db >/dev/null
  touch "$MARKER" && chown mysql:mysql "$MARKER"
fi

# --skip-name-resolve: accounts are by address or '%'; no DNS lookup on connect.
exec mariadbd --no-defaults --user=mysql --datadir="$DATA" --socket="$RUN/mysqld.sock" --port=3306 \
  --bind-address=0.0.0.0 --skip-name-resolve --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
  "${role_opts[@]}"
