#!/usr/bin/env bash
# mariadb.sh: a private MariaDB instance for the local stack (never the system service).
#   start DIR PORT   initialise DIR on first use, start mariadbd on 127.0.0.1:PORT, wait until it answers
#   start-replica DIR PORT PRIMARY_DIR PRIMARY_PORT
#                    a read_only GTID replica of the instance in PRIMARY_DIR: on first use seeded from a consistent
#                    dump of the primary (so an existing primary keeps its orders), then replicating from there
#   stop DIR         stop the instance started from DIR (primary or replica)
#   sql DIR          run the SQL on stdin as root over the unix socket (the only way root can log in)
# Layout under DIR: data/, mariadbd.sock, mariadbd.pid; log at $MARIADB_LOG (default DIR/mariadb.log). The primary
# writes a binary log with GTIDs (server id 1); the replica has server id 2 and keeps its replication password in
# DIR/replication-password (0600; MariaDB keeps it in master.info too).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MARIADB_START_TIMEOUT="${MARIADB_START_TIMEOUT:-60}"
MARIADB_STOP_TIMEOUT="${MARIADB_STOP_TIMEOUT:-60}"

paths() {
  DIR="$(mkdir -p "$1" && cd "$1" && pwd)"
  DATA="$DIR/data"
  TMP="$DIR/tmp"
  SOCK="$DIR/mariadbd.sock"
  PIDFILE="$DIR/mariadbd.pid"
  MARKER="$DATA/.pizza-initialised"
  LOGFILE="${MARIADB_LOG:-$DIR/mariadb.log}"
  # A unix socket path longer than 107 bytes fails at bind time with an obscure error; say it plainly.
  ((${#SOCK} < 108)) || die "socket path too long (${#SOCK} bytes): $SOCK; use a shorter state dir"
}

# client: the mariadb client as root over the socket; --no-defaults keeps /etc/mysql/*.cnf out of it.
client() { mariadb --no-defaults --socket="$SOCK" --user=root "$@"; }

initialise() {
  log "initialising MariaDB data dir $DATA"
  rm -rf "$DATA"
  mkdir -p "$DATA" "$TMP"
  # --no-defaults: Debian's /etc/mysql/my.cnf sets user=mysql, which makes install-db fail for a private datadir.
  # A private tmpdir: two instances initialising at once in /tmp can delete each other's temporary tables.
  mariadb-install-db --no-defaults --datadir="$DATA" --tmpdir="$TMP" --user=root \
    --auth-root-authentication-method=normal --skip-test-db >>"$LOGFILE" 2>&1 ||
    die "mariadb-install-db failed (see $LOGFILE)"
}

# lock_down: no anonymous users (they shadow 'x'@'%' logins over 127.0.0.1) and root only via the unix socket.
lock_down() {
  local drops
  drops="$(client -N -e "SELECT CONCAT('DROP USER ''', User, '''@''', Host, ''';') FROM mysql.user
                           WHERE User = '' OR (User = 'root' AND Host <> 'localhost')")"
  client <<SQL
$drops
ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket;
FLUSH PRIVILEGES;
SQL
  touch "$MARKER"
  log "MariaDB locked down: anonymous users dropped, root via unix socket only"
}

wait_ready() {
  local pid deadline=$((SECONDS + MARIADB_START_TIMEOUT))
  pid="$(cat "$PIDFILE")"
  until client -e 'SELECT 1' >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$LOGFILE" >&2; die "mariadbd exited during start-up (see $LOGFILE)"; }
    ((SECONDS < deadline)) || { tail -n 20 "$LOGFILE" >&2; die "MariaDB not ready after ${MARIADB_START_TIMEOUT}s (see $LOGFILE)"; }
    sleep 0.2
  done
}

# launch PORT ARGS...: mariadbd on DIR's data in its own session, options shared by primary and replica.
launch() {
  local port="$1"; shift
  # setsid: the server outlives this script and is not hit by the caller's Ctrl-C.
  setsid "$(command -v mariadbd || echo /usr/sbin/mariadbd)" --no-defaults \
    --datadir="$DATA" --tmpdir="$TMP" --socket="$SOCK" --pid-file="$PIDFILE" --log-error="$LOGFILE" \
    --port="$port" --bind-address=127.0.0.1 --skip-name-resolve --user=root \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci "$@" \
    </dev/null >>"$LOGFILE" 2>&1 &
  echo $! >"$PIDFILE"
}

cmd_start() {
  local port="$2"
  [[ "$port" =~ ^[0-9]+$ ]] || die "usage: $0 start DIR PORT"
  paths "$1"
  "$SCRIPTS_DIR/tools.sh" ensure mariadb >/dev/null
  if pid_alive "$PIDFILE"; then
    wait_ready
    log "MariaDB already running (pid $(cat "$PIDFILE"), socket $SOCK)"
    return 0
  fi
  rm -f "$PIDFILE" "$SOCK"
  [[ -f "$MARKER" ]] || initialise
  mkdir -p "$TMP"
  port_free 127.0.0.1 "$port" || die "port $port is in use; set MYSQL_PORT to a free port"
  log "starting MariaDB on 127.0.0.1:$port (log: $LOGFILE)"
  # Binary log with GTIDs (row format): what replicas follow. A week of it lets a replica that was away catch up.
  launch "$port" --server-id=1 --log-bin=mariadb-bin --binlog-format=ROW --expire-logs-days=7
  wait_ready
  [[ -f "$MARKER" ]] || lock_down
  log "MariaDB ready on 127.0.0.1:$port"
}

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
  mariadb --no-defaults --socket="$psock" --user=root <<SQL
CREATE USER IF NOT EXISTS 'replicator'@'127.0.0.1' IDENTIFIED BY '$pw';
ALTER USER 'replicator'@'127.0.0.1' IDENTIFIED BY '$pw';
GRANT REPLICATION SLAVE ON *.* TO 'replicator'@'127.0.0.1';
SQL
  # --gtid --master-data=1: the dump sets gtid_slave_pos to the snapshot's position. The replica's own
  # gtid_slave_pos table is left out of the copy, or it would overwrite that position.
  mariadb-dump --no-defaults --socket="$psock" --user=root --all-databases --single-transaction --gtid \
    --master-data=1 --routines --events --triggers --ignore-table=mysql.gtid_slave_pos >"$TMP/seed.sql" 2>>"$LOGFILE" ||
    die "dump of the primary failed (see $LOGFILE)"
  client <"$TMP/seed.sql" || die "loading the primary's dump into the replica failed"
  rm -f "$TMP/seed.sql"
  client <<SQL
FLUSH PRIVILEGES;
CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$pport, MASTER_USER='replicator', MASTER_PASSWORD='$pw',
  MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;
START SLAVE;
SQL
  touch "$MARKER"
}

cmd_start_replica() {
  local port="$2" pdir pport="$4"
  [[ "$port" =~ ^[0-9]+$ && "$pport" =~ ^[0-9]+$ ]] || die "usage: $0 start-replica DIR PORT PRIMARY_DIR PRIMARY_PORT"
  pdir="$(cd "$3" && pwd)"
  pid_alive "$pdir/mariadbd.pid" || die "the primary in $pdir is not running"
  paths "$1"
  "$SCRIPTS_DIR/tools.sh" ensure mariadb >/dev/null
  if ! pid_alive "$PIDFILE"; then
    rm -f "$PIDFILE" "$SOCK"
    [[ -f "$MARKER" ]] || initialise
    mkdir -p "$TMP"
    port_free 127.0.0.1 "$port" || die "port $port is in use; set MYSQL_REPLICA_PORT to a free port"
    log "starting the MariaDB replica on 127.0.0.1:$port (log: $LOGFILE)"
    # read_only: only replication (and root) may write; the order role never can. Its own relay log, no binlog.
    launch "$port" --server-id=2 --read-only --skip-log-bin --relay-log=relay-bin
    wait_ready
    [[ -f "$MARKER" ]] || seed_replica "$pdir/mariadbd.sock" "$pport"
  fi
  local deadline=$((SECONDS + MARIADB_START_TIMEOUT))
  until replicating; do
    ((SECONDS < deadline)) || { client -e 'SHOW SLAVE STATUS\G' | grep -E 'Running|Error' >&2; die "replica is not replicating (see $LOGFILE)"; }
    sleep 0.2
  done
  log "MariaDB replica ready on 127.0.0.1:$port, replicating from 127.0.0.1:$pport"
}

cmd_stop() {
  paths "$1"
  stop_pidfile mariadbd "$PIDFILE" "$MARIADB_STOP_TIMEOUT"
  rm -f "$SOCK"
}

cmd_sql() {
  paths "$1"
  pid_alive "$PIDFILE" || die "MariaDB in $DIR is not running"
  client --batch "${@:2}"
}

case "${1:-}" in
  start) [[ $# -eq 3 ]] || die "usage: $0 start DIR PORT"; cmd_start "$2" "$3" ;;
  start-replica) [[ $# -eq 5 ]] || die "usage: $0 start-replica DIR PORT PRIMARY_DIR PRIMARY_PORT"; cmd_start_replica "${@:2}" ;;
  stop) [[ $# -eq 2 ]] || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
  sql) [[ $# -ge 2 ]] || die "usage: $0 sql DIR [client args] < file.sql"; cmd_sql "${@:2}" ;;
  *) die "usage: $0 start DIR PORT | start-replica DIR PORT PRIMARY_DIR PRIMARY_PORT | stop DIR | sql DIR" ;;
esac
