#!/usr/bin/env bash
# mariadb.sh: the one place that knows how to initialise a MariaDB data folder and start mariadbd with our options.
# The local stack runs `run` under its supervisor (scripts/stack.sh); the Go tests' private servers
# (internal/mysqltest) run `init` and `run` the same way, with a folder and port of their own.
#
#   init DIR         initialise DIR/data on first use (later calls change nothing). Root may log in only through
#                    the unix socket, as the OS user running this (unix_socket auth): no password exists, so none
#                    can leak into the environment, a file or a log. No anonymous users, no test database.
#   run DIR PORT primary|replica [-- MARIADBD_OPTION...]
#                    init if needed, then mariadbd in the foreground (exec: the caller's child is mariadbd itself,
#                    TERM shuts it down cleanly) on 127.0.0.1:PORT, logging to stderr. primary: binary log with
#                    GTIDs, server id 1; replica: read_only, relay log, no binary log, server id 2 (writable
#                    once DIR/promoted exists: it was promoted to primary).
#   ready DIR        succeeds when the server of DIR answers root over its socket
#   replicate DIR PRIMARY_DIR PRIMARY_PORT
#                    make the running server of DIR a GTID replica of the one in PRIMARY_DIR: on first use seeded from
#                    a consistent dump of the primary (so an existing primary keeps its orders), then replicating
#                    from that position; waits until both replication threads run
#   sql DIR          run the SQL on stdin as root over the unix socket (the only way root can log in)
# Layout under DIR: data/ (with the binary or relay log), tmp/, mariadbd.sock, mariadbd.pid; a replica keeps its
# replication password in DIR/replication-password (0600; MariaDB keeps it in master.info too).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MARIADB_START_TIMEOUT="${MARIADB_START_TIMEOUT:-60}"

paths() {
  DIR="$(mkdir -p "$1" && cd "$1" && pwd)"
  DATA="$DIR/data"
  TMP="$DIR/tmp"
  SOCK="$DIR/mariadbd.sock"
  PIDFILE="$DIR/mariadbd.pid"
  MARKER="$DATA/.pizza-initialised"
  # A unix socket path longer than 107 bytes fails at bind time with an obscure error; say it plainly.
  ((${#SOCK} < 108)) || die "socket path too long (${#SOCK} bytes): $SOCK; use a shorter folder"
}

# bin NAME: a MariaDB program (Debian puts the server in /usr/sbin, often not on PATH), or how to get it.
bin() { find_bin "$1" || die "$1 not found: install mariadb-server and mariadb-client (make deps, or scripts/tools.sh ensure mariadb)"; }

# Root on the server is the OS user running the scripts (root for the stack). mariadbd and mariadb-install-db
# refuse to run as root unless told so; as another user the flag is not needed.
OS_USER="$(id -un)"
USER_OPT=()
[[ "$(id -u)" == 0 ]] && USER_OPT=(--user=root)

# client: the mariadb client as root over the socket; --no-defaults keeps /etc/mysql/*.cnf out of it.
client() { "$(bin mariadb)" --no-defaults --socket="$SOCK" --user="$OS_USER" "$@"; }

cmd_init() {
  [[ -f "$MARKER" ]] && return 0
  local installdb out
  installdb="$(bin mariadb-install-db)"
  log "initialising MariaDB data folder $DATA"
  rm -rf "$DATA"
  mkdir -p "$DATA" "$TMP"
  # --no-defaults: Debian's /etc/mysql/my.cnf sets user=mysql, which makes install-db fail for a private datadir.
  # A private tmpdir: two instances initialising at once in /tmp can delete each other's temporary tables.
  # socket: root@localhost (and OS_USER@localhost) log in through the unix socket only, and no other root account
  # is made; --skip-test-db also leaves out the anonymous users, which would shadow 'x'@'%' logins over 127.0.0.1.
  if ! out="$("$installdb" --no-defaults --datadir="$DATA" --tmpdir="$TMP" "${USER_OPT[@]}" \
    --auth-root-authentication-method=socket --auth-root-socket-user="$OS_USER" --skip-test-db 2>&1)"; then
    printf '%s\n' "$out" | tail -n 20 >&2
    die "mariadb-install-db failed"
  fi
  touch "$MARKER"
}

# cmd_run PORT ROLE [-- OPTION...]: the options of every server of ours, then the role's, then the caller's.
cmd_run() {
  local port="$1" role="$2" mariadbd role_opts
  shift 2
  [[ "${1:-}" == -- ]] && shift
  mariadbd="$(bin mariadbd)"
  cmd_init
  mkdir -p "$TMP"
  case "$role" in
    # Binary log with GTIDs (row format): what replicas follow. A week of it lets a replica that was away catch up.
    primary) role_opts=(--server-id=1 --log-bin=mariadb-bin --binlog-format=ROW --expire-logs-days=7) ;;
    # read_only: only replication (and root) may write; the order role never can. Its own relay log, no binlog.
    replica) role_opts=(--server-id=2 --read-only --skip-log-bin --relay-log=relay-bin) ;;
    *) die "role must be primary or replica, not $role" ;;
  esac
  # A replica promoted to primary (DIR/promoted, stack.sh promote-db-replica) takes writes from then on, also
  # after a restart; it has no binary log, so a new replica is seeded from a fresh primary, not from it.
  if [[ "$role" == replica && -f "$DIR/promoted" ]]; then role_opts=(--server-id=2 --skip-log-bin --relay-log=relay-bin); fi
  local opts=(
    --no-defaults --datadir="$DATA" --tmpdir="$TMP" --socket="$SOCK" --pid-file="$PIDFILE"
    --port="$port" --bind-address=127.0.0.1 --skip-name-resolve "${USER_OPT[@]}"
    --max-connections=500 --innodb-buffer-pool-size=64M
    # MariaDB defaults to latin1; MySQL 8 (Compose, production) to utf8mb4. Everything here must see the latter.
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci
    # DATETIME values round-trip with the driver's loc=UTC (platform/mysqlconn) only if the session zone is UTC.
    --default-time-zone=+00:00
    "${role_opts[@]}" "$@"
  )
  # No --log-error: the log goes to stderr, which the supervisor (or the test) writes to the process's log.
  exec "$mariadbd" "${opts[@]}"
}

cmd_ready() { client -e 'SELECT 1' >/dev/null 2>&1; }

replicating() {
  local status
  status="$(client -e 'SHOW SLAVE STATUS\G')"
  grep -q 'Slave_IO_Running: Yes' <<<"$status" && grep -q 'Slave_SQL_Running: Yes' <<<"$status"
}

# seed_replica PRIMARY_SOCK PRIMARY_PORT: copies the primary (one consistent snapshot, with its GTID position)
# into the fresh replica and starts replication from that position.
seed_replica() {
  local psock="$1" pport="$2" pwfile="$DIR/replication-password" pw
  [[ -s "$pwfile" ]] || (umask 077 && new_secret >"$pwfile")
  pw="$(<"$pwfile")"
  log "seeding the replica from the primary (consistent dump with its GTID position)"
  # Secrets go on stdin, never on argv. The replication user may only read the binary log.
  "$(bin mariadb)" --no-defaults --socket="$psock" --user="$OS_USER" <<SQL
CREATE USER IF NOT EXISTS 'replicator'@'127.0.0.1' IDENTIFIED BY '$pw';
ALTER USER 'replicator'@'127.0.0.1' IDENTIFIED BY '$pw';
GRANT REPLICATION SLAVE ON *.* TO 'replicator'@'127.0.0.1';
SQL
  # --gtid --master-data=1: the dump sets gtid_slave_pos to the snapshot's position. The replica's own
  # gtid_slave_pos table is left out of the copy, or it would overwrite that position.
  "$(bin mariadb-dump)" --no-defaults --socket="$psock" --user="$OS_USER" --all-databases --single-transaction --gtid \
    --master-data=1 --routines --events --triggers --ignore-table=mysql.gtid_slave_pos >"$TMP/seed.sql" ||
    die "dump of the primary failed"
  client <"$TMP/seed.sql" || die "loading the primary's dump into the replica failed"
  rm -f "$TMP/seed.sql"
  client <<SQL
FLUSH PRIVILEGES;
CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$pport, MASTER_USER='replicator', MASTER_PASSWORD='$pw',
  MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;
START SLAVE;
SQL
}

cmd_replicate() {
  local pdir="$1" pport="$2"
  [[ "$pport" =~ ^[0-9]+$ ]] || die "usage: $0 replicate DIR PRIMARY_DIR PRIMARY_PORT"
  pdir="$(cd "$pdir" && pwd)"
  cmd_ready || die "the replica in $DIR is not running"
  (paths "$pdir" && cmd_ready) || die "the primary in $pdir is not running"
  # Seeded once: a server that has a primary configured (CHANGE MASTER is the seeding's last step) only resumes.
  [[ -n "$(client -N -e 'SHOW SLAVE STATUS')" ]] || seed_replica "$pdir/mariadbd.sock" "$pport"
  local deadline=$((SECONDS + MARIADB_START_TIMEOUT))
  until replicating; do
    ((SECONDS < deadline)) || { client -e 'SHOW SLAVE STATUS\G' | grep -E 'Running|Error' >&2; die "replica is not replicating"; }
    sleep 0.2
  done
}

cmd_sql() {
  cmd_ready || die "MariaDB in $DIR is not running"
  client --batch "$@"
}

usage="usage: $0 init DIR | run DIR PORT primary|replica [-- OPTION...] | ready DIR | replicate DIR PRIMARY_DIR PRIMARY_PORT | sql DIR"
case "${1:-}" in
  init) [[ $# -eq 2 ]] || die "$usage"; paths "$2"; cmd_init ;;
  run)
    [[ $# -ge 4 && "$3" =~ ^[0-9]+$ ]] || die "$usage"
    paths "$2"; cmd_run "${@:3}" ;;
  ready) [[ $# -eq 2 ]] || die "$usage"; paths "$2"; cmd_ready ;;
  replicate) [[ $# -eq 4 ]] || die "$usage"; paths "$2"; cmd_replicate "$3" "$4" ;;
  sql) [[ $# -ge 2 ]] || die "$usage"; paths "$2"; cmd_sql "${@:3}" ;;
  *) die "$usage" ;;
esac
