#!/usr/bin/env bash
# stack.sh start|stop|status|restart-sidecar ID|start-mariadb|start-nats|stop-process NAME|promote-db-replica: the whole Pizza Joint
# mesh as local processes (make run / make stop), each under scripts/supervise.sh.
#
# start: build → certificates → MariaDB → Consul server agent (ACLs, persistent data) → Vault (TLS) →
#        meshctl bootstrap (init/unseal, policies, Consul ACLs through Vault, intentions, Connect CA in Vault) →
#        order migrate (short-lived DDL user) → Jaeger (traces; its own account) → NATS JetStream (its own
#        account; the event stream) → order replicas → gateway → NATS's registration and one Connect sidecar
#        per instance (nats, order, gateway).
# Every phase checks its own pid file and readiness first, so `start` twice is safe. Everything that talks to
# Vault's or Consul's API is meshctl's: provisioning, and the questions this script waits on (`meshctl consul`,
# `meshctl vault`); this script only starts, waits for and stops processes. State,
# logs and pids live under STATE_DIR (git-ignored); secrets only in 0600 files there, never on argv or in a log.
#
# Settings (env): see scripts/settings.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
umask 077

source "$SCRIPTS_DIR/settings.sh"

setup() {
  mkdir -p "$LOG_DIR" "$PID_DIR" "$CREDS_DIR" "$VAULT_DIR" "$STATE_DIR/consul"
  # Service users traverse the state folder to their own credentials folder and the binaries, and list nothing.
  chmod 711 "$STATE_DIR" "$CREDS_DIR"
  chmod 700 "$VAULT_DIR" "$LOG_DIR" "$STATE_DIR/consul"
  # jaeger builds (the first time) alongside consul and vault rather than after them.
  local tools=(consul vault)
  traces_enabled && tools+=(jaeger)
  "$SCRIPTS_DIR/tools.sh" prebuild "${tools[@]}"
  CONSUL="$("$SCRIPTS_DIR/tools.sh" ensure consul)"
  VAULT="$("$SCRIPTS_DIR/tools.sh" ensure vault)"
  CURL="$("$SCRIPTS_DIR/tools.sh" ensure curl)" # our own services' health and GET /menu
  "$SCRIPTS_DIR/tools.sh" ensure mariadb >/dev/null
  if ((SERVICE_USERS)); then
    ensure_user "$ORDER_USER"
    ensure_user "$GATEWAY_USER"
    ensure_user "$MIGRATE_USER"
    ensure_user "$NATS_USER"
    ensure_user "$JAEGER_USER"
  else
    ORDER_USER="$(id -un)" GATEWAY_USER="$(id -un)" MIGRATE_USER="$(id -un)" NATS_USER="$(id -un)" JAEGER_USER="$(id -un)"
  fi
}

# ensure_user NAME: a system user with no login and no home, for one service.
# Stacks starting at once (the bench's, the tests') create the same users on a fresh machine: one at a time,
# and a user another stack has just created is there for this one too.
ensure_user() {
  id -u "$1" >/dev/null 2>&1 && return 0
  {
    flock 9
    if ! id -u "$1" >/dev/null 2>&1; then
      useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$1" ||
        die "could not create the system user $1"
      log "created system user $1"
    fi
  } 9>/run/lock/pizzajoint-users.lock
}

# spawn NAME USER CMD...: CMD as USER under a supervisor (scripts/supervise.sh) that starts it again when it
# dies, as Compose's restart policy does; detached in its own session (survives this script and its Ctrl-C), log
# and pid (the supervisor's; NAME.child is the process's) by NAME. Callers export the process's env in a
# subshell, so nothing secret ever lands on argv.
spawn() {
  local name="$1" user="$2"; shift 2
  if ((SERVICE_USERS)) && [[ "$user" != root ]]; then
    set -- setpriv --reuid="$user" --regid="$user" --clear-groups -- "$@"
  fi
  PID_DIR="$PID_DIR" setsid "$SCRIPTS_DIR/supervise.sh" "$name" -- "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1 &
  echo $! >"$PID_DIR/$name.pid"
}

# run_delivered SERVICE ID USER CONSUL CMD...: the supervised command of a Go service: credentials delivered
# afresh, then CMD as USER. Every (re)start needs a new delivery: the secret_id file holds a response-wrapping
# token, which the previous process already unwrapped.
run_delivered() {
  local svc="$1" id="$2" user="$3" consul="$4"; shift 4
  deliver "$svc" "$id" "$user" "$consul"
  if [[ "$svc" == order ]]; then deliver_nats_key "$svc" "$id" "$user"; fi
  if ((SERVICE_USERS)); then
    exec setpriv --reuid="$user" --regid="$user" --clear-groups -- "$@"
  fi
  exec "$@"
}

# run_vault: the supervised Vault server; after a restart (not the first start, which bootstrap initialises) a
# helper unseals it as soon as it answers. The server is exec'd, so the supervisor's child is Vault itself.
run_vault() {
  VAULT="$("$SCRIPTS_DIR/tools.sh" ensure vault)"
  if ((${SUPERVISE_RESTARTS:-0} > 0)); then
    ( # double fork: the helper is init's child, not a zombie of the exec'd server
      (
        deadline=$((SECONDS + STACK_TIMEOUT))
        until vault_answers >/dev/null 2>&1 || ((SECONDS >= deadline)); do sleep 0.2; done
        if meshctl unseal; then log "Vault unsealed after restart $SUPERVISE_RESTARTS"; else log "Vault unseal failed (see $LOG_DIR/meshctl.log)"; fi
      ) </dev/null &
    )
  fi
  exec "$VAULT" server -config="$ROOT_DIR/vault/server.hcl" -config="$VAULT_DIR/local.hcl"
}

running() { pid_alive "$PID_DIR/$1.pid"; }

# need_port NAME PORT: fail early and clearly when something else holds a port we are about to bind.
need_port() { port_free 127.0.0.1 "$2" || die "port $2 for $1 is already in use; stop that process or override the port (see scripts/settings.sh)"; }

# ---- host filter ---------------------------------------------------------------------------------------------

# Each instance's loopback ports are reachable only by the accounts that use them, enforced by the kernel:
# an nftables table of this stack's own (platform/hostfilter, `meshctl host-filter`) matches the owner of the
# socket that connects (`meta skuid`), as Istio's init container does with `iptables -m owner`. Root (the control
# plane, Consul's health checks, the operator) is always allowed. The README's "Security on one host" says why
# this and not a network namespace per instance.
host_filter_table() { printf 'pizzajoint_%s' "$(printf '%s' "$STATE_DIR" | sha256sum | cut -c1-10)"; }

# loopback_port ADDR: the port of a loopback listen address (127.0.0.1:9464), or nothing for an empty address.
loopback_port() { if [[ -n "$1" ]]; then echo "${1##*:}"; fi; }

# host_filter_ports: NAME:PORT/PROTO:OWNER:CLIENTS, one per line, for each guarded listener of this stack.
host_filter_ports() {
  local n order_clients="$ORDER_USER" port
  # Without the mesh (the bench's "direct" setup) the gateway calls order's port itself.
  mesh_enabled || order_clients+=",$GATEWAY_USER"
  for ((n = 1; n <= ORDER_REPLICAS; n++)); do
    echo "$(order_id "$n"):$(order_addr "$n" | sed 's/.*://')/tcp:$ORDER_USER:$order_clients"
  done
  if mesh_enabled; then echo "$GATEWAY_SERVICE_ID upstream to order:$ORDER_UPSTREAM_PORT/tcp:$GATEWAY_USER:$GATEWAY_USER"; fi
  # Metrics and profiles are the operator's (root's): no other account reads them.
  port="$(loopback_port "$GATEWAY_METRICS_ADDR")"
  if [[ -n "$port" ]]; then echo "gateway metrics:$port/tcp:$GATEWAY_USER:"; fi
  port="$(loopback_port "${GATEWAY_DEBUG_ADDR:-}")"
  if [[ -n "$port" ]]; then echo "gateway pprof:$port/tcp:$GATEWAY_USER:"; fi
  port="$(loopback_port "${ORDER_DEBUG_ADDR:-}")"
  if [[ -n "$port" ]]; then echo "order pprof:$port/tcp:$ORDER_USER:"; fi
  # NATS takes only its own sidecar (and root: meshctl); without the mesh, order's instances connect directly.
  local nats_clients="$NATS_USER"
  mesh_enabled || nats_clients+=",$ORDER_USER"
  echo "nats:$NATS_PORT/tcp:$NATS_USER:$nats_clients"
  echo "nats monitoring:$NATS_MONITOR_PORT/tcp:$NATS_USER:"
  if mesh_enabled; then
    for ((n = 1; n <= ORDER_REPLICAS; n++)); do
      echo "$(order_id "$n") upstream to nats:$((NATS_UPSTREAM_PORT + n - 1))/tcp:$ORDER_USER:$ORDER_USER"
    done
  fi
  # Spans come from the services' accounts only; the UI and its API, like the metrics, are root's.
  if traces_enabled; then
    echo "jaeger otlp:$JAEGER_OTLP_PORT/tcp:$JAEGER_USER:$ORDER_USER,$GATEWAY_USER"
    echo "jaeger ui:$JAEGER_UI_PORT/tcp:$JAEGER_USER:"
    echo "jaeger query grpc:$JAEGER_QUERY_GRPC_PORT/tcp:$JAEGER_USER:"
  fi
  echo "$(db_primary):$(db_primary_port)/tcp:root:$ORDER_USER,$MIGRATE_USER"
  db_replica_serves && echo "mariadb-replica:$MYSQL_REPLICA_PORT/tcp:root:$ORDER_USER"
  echo "vault:$VAULT_PORT/tcp:root:$ORDER_USER,$GATEWAY_USER,$MIGRATE_USER"
  echo "vault cluster:$((VAULT_PORT + 1))/tcp:root:"
  echo "consul server rpc:$CONSUL_SERVER_PORT/tcp:root:"
  local proto
  for proto in tcp udp; do
    echo "consul serf lan:$CONSUL_SERF_LAN_PORT/$proto:root:"
    echo "consul serf wan:$CONSUL_SERF_WAN_PORT/$proto:root:"
  done
}

# host_filter_enforced: only root can put the filter in place (as root with SERVICE_USERS=0, every process is
# root's and the filter lets root alone in).
host_filter_enforced() { [[ "$(id -u)" == 0 ]]; }

start_host_filter() {
  if ! host_filter_enforced; then
    log "WARNING: not root, so no host filter: ANY local account reaches order's plain port, the gateway's" \
      "upstream to order, the metrics, MariaDB, Vault and Consul's server ports on loopback"
    return 0
  fi
  local ports=()
  mapfile -t ports < <(host_filter_ports)
  NFT="$("$SCRIPTS_DIR/tools.sh" ensure nft)"
  "$BIN_DIR/meshctl" host-filter -nft "$NFT" apply "$(host_filter_table)" "${ports[@]}" 2>>"$LOG_DIR/meshctl.log" ||
    { tail -n 5 "$LOG_DIR/meshctl.log" >&2; die "the host filter could not be put in place (see $LOG_DIR/meshctl.log)"; }
  log "host filter on: nft table inet $(host_filter_table) guards ${#ports[@]} loopback ports by account"
}

stop_host_filter() {
  host_filter_enforced && [[ -x "$BIN_DIR/meshctl" ]] && NFT="$(find_bin nft)" || return 0
  "$BIN_DIR/meshctl" host-filter -nft "$NFT" remove "$(host_filter_table)" 2>>"$LOG_DIR/meshctl.log" ||
    die "could not remove the host filter (nft table inet $(host_filter_table); see $LOG_DIR/meshctl.log)"
}

# host_filter_state: one line for `status`; fails when root's stack has no filter.
host_filter_state() {
  if ! host_filter_enforced; then echo "not enforced (not root): any local account reaches the loopback ports"; return 0; fi
  NFT="$(find_bin nft)" && [[ -x "$BIN_DIR/meshctl" ]] &&
    "$BIN_DIR/meshctl" host-filter -nft "$NFT" show "$(host_filter_table)" >/dev/null 2>&1 || { echo "off"; return 3; }
  echo "on (nft table inet $(host_filter_table))"
}

# ---- build and certificates ------------------------------------------------------------------------------------

# build_services: go build when a binary is missing or any Go source is newer (cheap with the build cache).
build_services() {
  local cmds=(./cmd/order ./cmd/gateway ./cmd/devcerts ./cmd/meshctl) stale=0 b
  for b in "${cmds[@]}"; do
    [[ -x "$BIN_DIR/$(basename "$b")" ]] || stale=1
  done
  if ((stale == 0)) && [[ -n "$(find "$ROOT_DIR" -path "$ROOT_DIR/.*" -prune -o \( -name '*.go' -o -name go.mod -o -name '*.sql' \) \
    -newer "$BIN_DIR/order" -print -quit)" ]]; then
    stale=1
  fi
  ((stale)) || return 0
  log "building ${cmds[*]} into $BIN_DIR"
  mkdir -p "$BIN_DIR" && chmod 755 "$BIN_DIR"
  # STACK_GOFLAGS=-race builds the services with the race detector (the tests do).
  # shellcheck disable=SC2086 # word splitting of the flags is intended
  (cd "$ROOT_DIR" && go build ${STACK_GOFLAGS:-} -o "$BIN_DIR/" "${cmds[@]}") >>"$LOG_DIR/build.log" 2>&1 ||
    { tail -n 20 "$LOG_DIR/build.log" >&2; die "go build failed (see $LOG_DIR/build.log)"; }
}

# ensure_certs: the project's CA, and a listener certificate each for the gateway, Vault and Consul (devcerts keeps
# the CA and re-issues a certificate only when needed). Consul's HTTPS listener is reached from elsewhere too,
# so its certificate names this machine's host name and addresses.
ensure_certs() {
  mkdir -p "$CERTS_DIR" && chmod 755 "$CERTS_DIR"
  local lan
  lan="$(hostname -I 2>/dev/null | tr ' ' ',' || true),$(hostname 2>/dev/null || true)"
  if [[ -z "${GATEWAY_TLS_CERT_FILE:-}" ]]; then
    "$BIN_DIR/devcerts" -out "$CERTS_DIR" >>"$LOG_DIR/devcerts.log" 2>&1 || die "devcerts failed (see $LOG_DIR/devcerts.log)"
    GATEWAY_TLS_CERT_FILE="$CERTS_DIR/server.pem"
    GATEWAY_TLS_KEY_FILE="$CERTS_DIR/server-key.pem"
  fi
  "$BIN_DIR/devcerts" -out "$CERTS_DIR" -name vault >>"$LOG_DIR/devcerts.log" 2>&1 || die "devcerts (vault) failed"
  "$BIN_DIR/devcerts" -out "$CERTS_DIR" -name consul -hosts "$lan" >>"$LOG_DIR/devcerts.log" 2>&1 || die "devcerts (consul) failed"
  # The Consul server's RPC certificate: the name agents check with verify_server_hostname, and good as a client
  # certificate too (the server presents it when it dials). Root's alone, like the key.
  "$BIN_DIR/devcerts" -out "$CERTS_DIR" -name consul-rpc -hosts server.dc1.consul -client-auth >>"$LOG_DIR/devcerts.log" 2>&1 ||
    die "devcerts (consul-rpc) failed"
  chmod 600 "$CERTS_DIR/consul-rpc.pem"
  chmod 644 "$CERTS_DIR/ca.pem"
}

# ---- MariaDB -------------------------------------------------------------------------------------------------

# The primary is `mariadb` until an operator promotes the replica (make promote-db-replica): from then on it is
# `mariadb-replica`, for good (its folder holds the mark), and the lost primary is never started again.
DB_PRIMARY_ADDR_FILE="$STATE_DIR/db-primary-addr" # what order's pools dial: ORDER_DB_ADDR_FILE
db_promoted() { [[ -f "$STATE_DIR/mariadb-replica/promoted" ]]; }
db_primary() { if db_promoted; then echo mariadb-replica; else echo mariadb; fi; }
db_primary_port() { if db_promoted; then echo "$MYSQL_REPLICA_PORT"; else echo "$MYSQL_PORT"; fi; }
db_replica_serves() { [[ "$DB_REPLICAS" != 0 ]] && ! db_promoted; }

# semi_sync_opts ROLE: mariadbd's options for semi-synchronous replication (DB_SEMI_SYNC=1), none otherwise.
semi_sync_opts() {
  [[ "$DB_SEMI_SYNC" == 1 && "$DB_REPLICAS" != 0 ]] || return 0
  case "$1" in
    primary) echo --rpl-semi-sync-master-enabled=ON --rpl-semi-sync-master-wait-point=AFTER_SYNC \
      --rpl-semi-sync-master-timeout="$DB_SEMI_SYNC_TIMEOUT_MS" ;;
    replica) echo --rpl-semi-sync-slave-enabled=ON ;;
  esac
}

# start_mariadb_server NAME PORT ROLE: scripts/mariadb.sh run, supervised like every other process (it initialises
# the data folder STATE_DIR/NAME on first use), then waits until root answers over the socket.
start_mariadb_server() {
  local name="$1" port="$2" role="$3"
  if running "$name"; then
    log "$name already running (pid $(cat "$PID_DIR/$name.pid"))"
  else
    need_port "$name" "$port"
    log "starting $name ($role) on 127.0.0.1:$port (log: $LOG_DIR/$name.log)"
    local opts=()
    read -ra opts <<<"$(semi_sync_opts "$role")"
    spawn "$name" root "$SCRIPTS_DIR/mariadb.sh" run "$STATE_DIR/$name" "$port" "$role" -- "${opts[@]}"
  fi
  wait_for "$name" "$MARIADB_START_TIMEOUT" "$LOG_DIR/$name.log" "$SCRIPTS_DIR/mariadb.sh" ready "$STATE_DIR/$name"
}

# start_mariadb: the primary and (DB_REPLICAS=1) its GTID replica, each started only if not running.
start_mariadb() {
  if db_promoted; then
    # The replica was promoted (mariadb.sh starts it writable); the lost primary's data stays as it was left.
    start_mariadb_server mariadb-replica "$MYSQL_REPLICA_PORT" replica
    log "MariaDB ready on 127.0.0.1:$MYSQL_REPLICA_PORT: the promoted replica is the primary (no replica now)"
  else
    start_mariadb_server mariadb "$MYSQL_PORT" primary
    log "MariaDB ready on 127.0.0.1:$MYSQL_PORT"
  fi
  printf '127.0.0.1:%s\n' "$(db_primary_port)" >"$DB_PRIMARY_ADDR_FILE"
  chmod 644 "$DB_PRIMARY_ADDR_FILE"
  if db_replica_serves; then
    start_mariadb_server mariadb-replica "$MYSQL_REPLICA_PORT" replica
    "$SCRIPTS_DIR/mariadb.sh" replicate "$STATE_DIR/mariadb-replica" "$STATE_DIR/mariadb" "$MYSQL_PORT" 2>>"$LOG_DIR/mariadb-replica.log" ||
      { tail -n 20 "$LOG_DIR/mariadb-replica.log" >&2; die "the MariaDB replica does not replicate (see $LOG_DIR/mariadb-replica.log)"; }
    log "MariaDB replica ready on 127.0.0.1:$MYSQL_REPLICA_PORT, replicating from 127.0.0.1:$MYSQL_PORT"
  fi
}

# cmd_start_mariadb: only the MariaDB phase of start (after stop-process mariadb, or for the supervision tests).
cmd_start_mariadb() {
  mkdir -p "$LOG_DIR" "$PID_DIR"
  chmod 711 "$STATE_DIR"
  chmod 700 "$LOG_DIR"
  "$SCRIPTS_DIR/tools.sh" ensure mariadb >/dev/null
  start_mariadb
}

# ---- Consul --------------------------------------------------------------------------------------------------

# consul_ask [-addr A] [-cacert F] QUESTION...: exit 0 when the agent (default: its socket) says so; the
# questions and their timeouts are meshctl's (platform/consulagent).
consul_ask() { "$BIN_DIR/meshctl" consul -addr "$CONSUL_HTTP_ADDR" "$@"; }
consul_leader() { consul_ask leader; }

CONSUL_GOSSIP_FILE="$STATE_DIR/consul-gossip.hcl" # encrypt = "…", 0600 root

write_consul_config() {
  # Paths and ports depend on STATE_DIR and the settings; the static settings stay in consul/agent.hcl.
  cat >"$STATE_DIR/consul.hcl" <<EOF
node_name   = "$CONSUL_NODE"
data_dir    = "$STATE_DIR/consul"
bind_addr   = "127.0.0.1"
client_addr = "127.0.0.1"
addresses {
  http = "unix://$CONSUL_SOCKET"
}
unix_sockets {
  user  = "$(id -u)"
  group = "$(id -g)"
  mode  = "600"
}
ports {
  server           = $CONSUL_SERVER_PORT
  serf_lan         = $CONSUL_SERF_LAN_PORT
  serf_wan         = $CONSUL_SERF_WAN_PORT
  sidecar_min_port = $CONSUL_SIDECAR_MIN_PORT
  sidecar_max_port = $CONSUL_SIDECAR_MAX_PORT
}
# Server RPC takes only TLS with a certificate from the project's CA, and an agent dialing a server checks that it
# is one (server.dc1.consul): the host filter keeps other accounts off the port, this keeps off anyone without a
# certificate. The agent has no HTTPS listener (its API is the unix socket), so browsers never meet this.
tls {
  defaults {
    ca_file         = "$CERTS_DIR/ca.pem"
    cert_file       = "$CERTS_DIR/consul-rpc.pem"
    key_file        = "$CERTS_DIR/consul-rpc-key.pem"
    verify_outgoing = true
  }
  internal_rpc {
    verify_incoming        = true
    verify_server_hostname = true
  }
}
EOF
  # The gossip key: made once and kept, since the data folder's keyring holds it from the first start on; in a
  # root-only file (never on argv) that the agent reads with -config-file.
  "$BIN_DIR/meshctl" gossip-key "$CONSUL_GOSSIP_FILE" 2>>"$LOG_DIR/meshctl.log" ||
    { tail -n 5 "$LOG_DIR/meshctl.log" >&2; die "meshctl gossip-key failed (see $LOG_DIR/meshctl.log)"; }
}

start_consul() {
  if running consul; then
    log "Consul already running (pid $(cat "$PID_DIR/consul.pid"))"
  else
    need_port consul-server "$CONSUL_SERVER_PORT"
    write_consul_config
    log "starting Consul server agent (ACLs on, data in $STATE_DIR/consul; log: $LOG_DIR/consul.log)"
    spawn consul root "$CONSUL" agent -config-file="$ROOT_DIR/consul/agent.hcl" -config-file="$STATE_DIR/consul.hcl" \
      -config-file="$CONSUL_GOSSIP_FILE"
  fi
  wait_for "Consul leader" "$STACK_TIMEOUT" "$LOG_DIR/consul.log" consul_leader
  log "Consul ready at $CONSUL_HTTP_ADDR"
}

ui_answers() { consul_ask -addr "https://localhost:$CONSUL_HTTPS_PORT" -cacert "$CERTS_DIR/ca.pem" leader; }
front_answers() { consul_ask -addr "unix://$1" leader; }

# Fronts of the agent's API (meshctl serve-front; consul/agent.hcl and platform/consulfront say why): one unix
# socket per service user, passing that service's leaf certificate only, and the operators' HTTPS UI.
consul_addr_of() { echo "unix://$STATE_DIR/consul-$1.sock"; }

start_front() {
  local name="$1"; shift
  if running "$name"; then log "$name already running (pid $(cat "$PID_DIR/$name.pid"))"; return 0; fi
  (
    meshctl_env
    export "$@"
    spawn "$name" root "$BIN_DIR/meshctl" serve-front
  )
}

start_consul_fronts() {
  local svc user
  local services=(order gateway nats)
  for svc in "${services[@]}"; do
    user="$(user_of "$svc")"
    start_front "consul-front-$svc" MESHCTL_FRONT_LISTEN="$(consul_addr_of "$svc")" MESHCTL_FRONT_OWNER="$user" MESHCTL_FRONT_LEAF_FOR="$svc"
    wait_for "consul front for $svc" "$STACK_TIMEOUT" "$LOG_DIR/consul-front-$svc.log" front_answers "$STATE_DIR/consul-$svc.sock"
  done
  running consul-ui || need_port consul-https "$CONSUL_HTTPS_PORT"
  start_front consul-ui MESHCTL_FRONT_LISTEN="$CONSUL_HTTPS_BIND:$CONSUL_HTTPS_PORT" \
    MESHCTL_FRONT_CERT_FILE="$CERTS_DIR/consul.pem" MESHCTL_FRONT_KEY_FILE="$CERTS_DIR/consul-key.pem"
  wait_for "Consul UI on https://localhost:$CONSUL_HTTPS_PORT" "$STACK_TIMEOUT" "$LOG_DIR/consul-ui.log" ui_answers
}

# ---- Vault ---------------------------------------------------------------------------------------------------

# vault_answers: the TLS listener answers (any status: sealed and uninitialised are answers too).
vault_answers() { "$BIN_DIR/meshctl" vault -addr "$VAULT_ADDR" -cacert "$VAULT_CACERT" answers; }

write_vault_config() {
  cat >"$VAULT_DIR/local.hcl" <<EOF
storage "file" {
  path = "$VAULT_DIR/data"
}
listener "tcp" {
  address         = "127.0.0.1:$VAULT_PORT"
  tls_cert_file   = "$CERTS_DIR/vault.pem"
  tls_key_file    = "$CERTS_DIR/vault-key.pem"
  tls_min_version = "tls12"
}
api_addr = "$VAULT_ADDR"
EOF
}

start_vault() {
  if running vault; then
    log "Vault already running (pid $(cat "$PID_DIR/vault.pid"))"
  else
    need_port vault "$VAULT_PORT"
    write_vault_config
    log "starting Vault server over TLS (log: $LOG_DIR/vault.log)"
    spawn vault root "$SCRIPTS_DIR/stack.sh" run-vault
  fi
  wait_for "Vault API" "$STACK_TIMEOUT" "$LOG_DIR/vault.log" vault_answers
}

# meshctl_env: the provisioning program's settings for this stack (the tests' short TTLs included).
meshctl_env() {
  export MESHCTL_VAULT_ADDR="$VAULT_ADDR" MESHCTL_VAULT_CA_CERT="$VAULT_CACERT" MESHCTL_VAULT_STATE_DIR="$VAULT_DIR" \
    MESHCTL_VAULT_AUDIT_LOG="$LOG_DIR/vault-audit.log" MESHCTL_CONSUL_ADDR="$CONSUL_HTTP_ADDR" \
    MESHCTL_CONSUL_NODE="$CONSUL_NODE" MESHCTL_REPO="$ROOT_DIR" \
    MESHCTL_DB_ADDR="127.0.0.1:$(db_primary_port)" MESHCTL_DB_SOCKET="$STATE_DIR/$(db_primary)/mariadbd.sock" \
    MESHCTL_DB_PROMOTE_SOCKET="$STATE_DIR/mariadb-replica/mariadbd.sock" MESHCTL_DB_PROMOTE_ADDR="127.0.0.1:$MYSQL_REPLICA_PORT" \
    MESHCTL_DB_PROMOTE_ADDR_FILE="$DB_PRIMARY_ADDR_FILE" \
    MESHCTL_NATS_USERS_DIR="$NATS_DIR/users" MESHCTL_NATS_AUTH_FILE="$NATS_DIR/auth.conf" \
    MESHCTL_NATS_URL="nats://127.0.0.1:$NATS_PORT" MESHCTL_NATS_REPLICAS=1 MESHCTL_NATS_MONITOR="http://127.0.0.1:$NATS_MONITOR_PORT"
  if [[ -n "${DB_CREDS_TTL:-}" ]]; then export MESHCTL_DB_CREDS_TTL="$DB_CREDS_TTL"; fi
  if [[ -n "${DB_CREDS_MAX_TTL:-}" ]]; then export MESHCTL_DB_CREDS_MAX="$DB_CREDS_MAX_TTL"; fi
}

# meshctl ARGS...: the provisioning program; its log goes to meshctl.log, its output (tokens) to stdout.
meshctl() { (meshctl_env && "$BIN_DIR/meshctl" "$@") 2>>"$LOG_DIR/meshctl.log"; }

bootstrap() {
  log "meshctl bootstrap (log: $LOG_DIR/meshctl.log)"
  meshctl bootstrap || { tail -n 20 "$LOG_DIR/meshctl.log" >&2; die "meshctl bootstrap failed (see $LOG_DIR/meshctl.log)"; }
}

# ---- Jaeger (traces) ------------------------------------------------------------------------------------------

traces_enabled() { [[ "$STACK_TRACES" != 0 ]]; }
jaeger_ready() { "$CURL" -fsS -o /dev/null "http://127.0.0.1:$JAEGER_UI_PORT/api/services"; }

# start_jaeger: Jaeger v2 all-in-one as its own account, spans in memory, every port on loopback.
# The services export to it over loopback, not through the mesh: traces are most needed when the mesh is what
# fails (a sidecar down, a CA or token rotation), so their path must not depend on it; the host filter keeps
# the port to the services' accounts instead of an intention.
start_jaeger() {
  traces_enabled || return 0
  if running jaeger; then
    log "jaeger already running (pid $(cat "$PID_DIR/jaeger.pid"))"
  else
    need_port "jaeger otlp" "$JAEGER_OTLP_PORT"
    need_port "jaeger ui" "$JAEGER_UI_PORT"
    need_port "jaeger query grpc" "$JAEGER_QUERY_GRPC_PORT"
    JAEGER="$("$SCRIPTS_DIR/tools.sh" ensure jaeger)"
    log "starting Jaeger (OTLP/HTTP on 127.0.0.1:$JAEGER_OTLP_PORT, UI on 127.0.0.1:$JAEGER_UI_PORT; log: $LOG_DIR/jaeger.log)"
    (
      export JAEGER_OTLP_PORT JAEGER_UI_PORT JAEGER_QUERY_GRPC_PORT JAEGER_MAX_TRACES
      # A copy the Jaeger account can read whatever the checkout's modes; root's, so that account cannot change it.
      install -m 644 "$ROOT_DIR/jaeger/config.yaml" "$STATE_DIR/jaeger.yaml"
      spawn jaeger "$JAEGER_USER" "$JAEGER" --config "file:$STATE_DIR/jaeger.yaml"
    )
  fi
  wait_for "Jaeger" "$STACK_TIMEOUT" "$LOG_DIR/jaeger.log" jaeger_ready
}

# trace_env PREFIX: a service's tracing settings (ORDER_TRACE_ENDPOINT, …); nothing when traces are off.
trace_env() {
  traces_enabled || return 0
  export "$1_TRACE_ENDPOINT=http://127.0.0.1:$JAEGER_OTLP_PORT" "$1_TRACE_SAMPLE=$TRACE_SAMPLE"
}

# ---- NATS (the event stream) ---------------------------------------------------------------------------------

NATS_DIR="$STATE_DIR/nats"
nats_ready() { "$CURL" -fsS -o /dev/null "http://127.0.0.1:$NATS_MONITOR_PORT/healthz?js-enabled-only=true"; }

write_nats_config() {
  # The authorization (auth.conf, beside it) is meshctl's: nkey public keys and each role's permissions.
  cat >"$NATS_DIR/nats.conf" <<CONF
server_name: "$NATS_SERVICE_ID"
listen: 127.0.0.1:$NATS_PORT
http: 127.0.0.1:$NATS_MONITOR_PORT
jetstream {
  store_dir: "$NATS_DIR/store"
  # An acknowledged event is on disk: fsync every write. Jepsen's 2025 analysis of NATS 2.12.1 lost
  # acknowledged writes on coordinated crashes with the default (2 minutes).
  sync_interval: always
}
include "auth.conf"
CONF
  chmod 644 "$NATS_DIR/nats.conf"
}

# start_nats: the NATS server as its own account, with JetStream in a store only that account reaches, then the
# event stream (meshctl, with its own NATS identity).
start_nats() {
  if running nats; then
    log "nats already running (pid $(cat "$PID_DIR/nats.pid"))"
  else
    need_port nats "$NATS_PORT"
    need_port "nats monitoring" "$NATS_MONITOR_PORT"
    NATS_SERVER="$("$SCRIPTS_DIR/tools.sh" ensure nats-server)"
    mkdir -p "$NATS_DIR"
    chmod 755 "$NATS_DIR"
    # The store belongs to the NATS account; root makes it once and never reaches into it (a link there is refused).
    [[ ! -L "$NATS_DIR/store" ]] || die "$NATS_DIR/store is a link; refusing to use it"
    [[ -d "$NATS_DIR/store" ]] || install -d -m 700 -o "$NATS_USER" -g "$NATS_USER" "$NATS_DIR/store"
    write_nats_config
    meshctl nats-auth >/dev/null || { tail -n 5 "$LOG_DIR/meshctl.log" >&2; die "meshctl nats-auth failed (see $LOG_DIR/meshctl.log)"; }
    log "starting NATS (JetStream) on 127.0.0.1:$NATS_PORT (log: $LOG_DIR/nats.log)"
    spawn nats "$NATS_USER" "$NATS_SERVER" -c "$NATS_DIR/nats.conf"
  fi
  wait_for "NATS with JetStream" "$STACK_TIMEOUT" "$LOG_DIR/nats.log" nats_ready
  meshctl nats-stream || { tail -n 5 "$LOG_DIR/meshctl.log" >&2; die "meshctl nats-stream failed (see $LOG_DIR/meshctl.log)"; }
}

# deliver_nats_key SERVICE ID USER: the instance's NATS identity (its nkey seed) into its credentials folder;
# the server rereads its authorization when a new key was added.
deliver_nats_key() {
  local out
  out="$(
    export MESHCTL_INSTANCE_SERVICE="$1" MESHCTL_INSTANCE_ID="$2" MESHCTL_INSTANCE_DIR="$CREDS_DIR/$2" \
      MESHCTL_INSTANCE_OWNER="$(owner_of "$3")"
    meshctl nats-key
  )" || { tail -n 5 "$LOG_DIR/meshctl.log" >&2; die "meshctl nats-key $2 failed (see $LOG_DIR/meshctl.log)"; }
  if [[ "$out" == reload ]]; then reload_nats; fi
}

# reload_nats: the running NATS server rereads its config (its authorization among it); NATS closes every
# connection whose key is no longer admitted.
reload_nats() {
  if [[ -s "$PID_DIR/nats.child" ]]; then kill -HUP "$(cat "$PID_DIR/nats.child")" 2>/dev/null || true; fi
}

# start_nats_mesh: NATS's registration in Consul (meshctl register, as NATS's account with its own token: the
# server cannot register itself) and its sidecar.
start_nats_mesh() {
  local dir="$CREDS_DIR/$NATS_SERVICE_ID"
  if ! running nats-registration; then
    (
      export MESHCTL_CONSUL_ADDR="$(consul_addr_of nats)" MESHCTL_REGISTER_ID="$NATS_SERVICE_ID" MESHCTL_REGISTER_NAME=nats \
        MESHCTL_REGISTER_PORT="$NATS_PORT" MESHCTL_REGISTER_TOKEN_FILE="$dir/consul-token" \
        MESHCTL_REGISTER_CHECK_URL="http://127.0.0.1:$NATS_MONITOR_PORT/healthz?js-enabled-only=true"
      log "registering NATS in Consul as $NATS_SERVICE_ID (log: $LOG_DIR/nats-registration.log)"
      spawn nats-registration root "$SCRIPTS_DIR/stack.sh" run-delivered nats "$NATS_SERVICE_ID" "$NATS_USER" consul "$BIN_DIR/meshctl" register
    )
  fi
  start_sidecar "$NATS_SERVICE_ID"
  wait_for "$NATS_SERVICE_ID passing in Consul" "$STACK_TIMEOUT" "$LOG_DIR/consul.log" passing_in_consul "$NATS_SERVICE_ID"
}

# cmd_start_nats: NATS back after stop-process nats (the server and its stream, from its store on disk), and in
# the mesh its registration and sidecar if they were stopped too; what still runs is left as it is.
cmd_start_nats() {
  setup
  start_nats
  if mesh_enabled; then start_nats_mesh; fi
  log "NATS ready on 127.0.0.1:$NATS_PORT"
}

# ---- Go services ---------------------------------------------------------------------------------------------

# deliver SERVICE ID USER [consul]: credentials for one instance into its own folder, readable by USER only.
# meshctl makes the folder and gives it and each file to USER by descriptor, never following a link that USER
# planted in it (platform/servicedir); a planted link fails the delivery.
deliver() {
  local dir="$CREDS_DIR/$2"
  (
    export MESHCTL_INSTANCE_SERVICE="$1" MESHCTL_INSTANCE_ID="$2" MESHCTL_INSTANCE_DIR="$dir" \
      MESHCTL_INSTANCE_CONSUL="$([[ "${4:-}" == consul ]] && echo true || echo false)" MESHCTL_INSTANCE_OWNER="$(owner_of "$3")"
    meshctl deliver
  ) || { tail -n 20 "$LOG_DIR/meshctl.log" >&2; die "meshctl deliver $2 failed (see $LOG_DIR/meshctl.log)"; }
}

# run_migrations: `order migrate` as MIGRATE_USER, an account of its own, with a DDL user from Vault. Its
# credentials folder belongs to that account alone from the first byte (deliver writes into a root-only folder,
# then hands it over), so the running order's account never reads them, and it is removed after the run.
run_migrations() {
  local dir="$CREDS_DIR/order-migrate" rc=0
  rm -rf "$dir"
  deliver order-migrate order-migrate "$MIGRATE_USER"
  log "running migrations as $MIGRATE_USER with a short-lived order-migrate database user (log: $LOG_DIR/order-migrate.log)"
  (
    export ORDER_DB_ADDR="127.0.0.1:$(db_primary_port)" ORDER_DB_NAME="${ORDER_DB_NAME:-pizza}" \
      ORDER_VAULT_ADDR="$VAULT_ADDR" ORDER_VAULT_CA_CERT="$VAULT_CACERT" ORDER_VAULT_ROLE=order-migrate \
      ORDER_VAULT_DB_ROLE=order-migrate ORDER_VAULT_ROLE_ID_FILE="$dir/role-id" ORDER_VAULT_SECRET_ID_FILE="$dir/secret-id"
    if ((SERVICE_USERS)); then
      setpriv --reuid="$MIGRATE_USER" --regid="$MIGRATE_USER" --clear-groups -- "$BIN_DIR/order" migrate
    else
      "$BIN_DIR/order" migrate
    fi
  ) >>"$LOG_DIR/order-migrate.log" 2>&1 || rc=$?
  rm -rf "$dir"
  ((rc == 0)) || { tail -n 20 "$LOG_DIR/order-migrate.log" >&2; die "order migrate failed (see $LOG_DIR/order-migrate.log)"; }
}

# Replica N of order: its process name (pid and log file), address and Consul instance ID. Replica 1 keeps
# the unnumbered names, so a single-instance stack looks as it always did.
order_name() { if (($1 == 1)); then echo order; else echo "order-$1"; fi; }
order_addr() { echo "${ORDER_ADDR%:*}:$((${ORDER_ADDR##*:} + $1 - 1))"; }
order_id() { if (($1 == 1)); then echo "$ORDER_SERVICE_ID"; else echo "${ORDER_SERVICE_ID%-*}-$1"; fi; }
order_ready() { "$CURL" -fsS -o /dev/null "http://$1/health/readyz"; }

start_order() {
  local n
  for ((n = 1; n <= ORDER_REPLICAS; n++)); do start_order_replica "$n"; done
}

start_order_replica() {
  local name addr id dir
  name="$(order_name "$1")" addr="$(order_addr "$1")" id="$(order_id "$1")"
  dir="$CREDS_DIR/$id"
  if running "$name"; then log "$name already running (pid $(cat "$PID_DIR/$name.pid"))"; return 0; fi
  need_port "$name" "${addr##*:}"
  local db_addr_of="ORDER_DB_ADDR_$1" # ORDER_DB_ADDR_2=host:port: replica 2 reaches MySQL there (the fault tests' proxy)
  # ORDER_TEST_HOLD_COMMIT_FILE_3=FILE: replica 3 only gets order's test-only hold-before-COMMIT hook (the fault
  # test that kills order mid-transaction starts such an instance of its own); no other instance ever has it.
  local hold_of="ORDER_TEST_HOLD_COMMIT_FILE_$1"
  (
    unset ORDER_TEST_HOLD_COMMIT_FILE
    if [[ -n "${!hold_of:-}" ]]; then export ORDER_TEST_HOLD_COMMIT_FILE="${!hold_of}"; fi
    # The primary's address from its file, read again for every new connection: a promotion moves the running
    # instances with no restart. An instance given an address of its own (the fault tests' proxy) keeps it.
    unset ORDER_DB_ADDR_FILE
    if [[ -z "${!db_addr_of:-}" ]]; then export ORDER_DB_ADDR_FILE="$DB_PRIMARY_ADDR_FILE"; fi
    export ORDER_HTTP_ADDR="$addr" ORDER_DB_ADDR="${!db_addr_of:-127.0.0.1:$(db_primary_port)}" ORDER_DB_NAME="${ORDER_DB_NAME:-pizza}" \
      ORDER_VAULT_ADDR="$VAULT_ADDR" ORDER_VAULT_CA_CERT="$VAULT_CACERT" ORDER_VAULT_ROLE=order ORDER_VAULT_DB_ROLE=order \
      ORDER_VAULT_ROLE_ID_FILE="$dir/role-id" ORDER_VAULT_SECRET_ID_FILE="$dir/secret-id"
    if db_replica_serves; then export ORDER_DB_REPLICA_ADDR="127.0.0.1:$MYSQL_REPLICA_PORT"; fi
    trace_env ORDER
    local nats_port="$NATS_PORT"
    mesh_enabled && nats_port="$((NATS_UPSTREAM_PORT + $1 - 1))"
    export ORDER_EVENTS_NATS_URL="nats://127.0.0.1:$nats_port" ORDER_EVENTS_NATS_SEED_FILE="$dir/nats-seed" \
      ORDER_EVENTS_NATS_NAME="$id"
    if mesh_enabled; then
      export ORDER_CONSUL_ADDR="$(consul_addr_of order)" ORDER_CONSUL_TOKEN_FILE="$dir/consul-token" ORDER_SERVICE_ID="$id"
    fi
    log "starting $name on $addr (log: $LOG_DIR/$name.log)"
    spawn "$name" root "$SCRIPTS_DIR/stack.sh" run-delivered order "$id" "$ORDER_USER" "$(mesh_enabled && echo consul)" "$BIN_DIR/order" serve
  )
  wait_for "$name" "$STACK_TIMEOUT" "$LOG_DIR/$name.log" order_ready "$addr"
}

gateway_live() { "$CURL" -fsSk -o /dev/null "https://127.0.0.1:$GATEWAY_PORT/health/livez"; }
gateway_ready() { "$CURL" -fsSk -o /dev/null "https://127.0.0.1:$GATEWAY_PORT/health/readyz"; }
# menu_end_to_end: GET /menu answered by order through the gateway and both sidecars. The gateway's own
# readiness does not depend on order, so only this says customers can order.
menu_end_to_end() {
  local trust=(-k) # an operator's own certificate: its CA is theirs, this only checks the path answers
  [[ -f "$CERTS_DIR/ca.pem" && "$GATEWAY_TLS_CERT_FILE" == "$CERTS_DIR/server.pem" ]] && trust=(--cacert "$CERTS_DIR/ca.pem")
  "$CURL" -fsS "${trust[@]}" -o /dev/null "https://localhost:$GATEWAY_PORT/menu"
}

# deliver_gateway_cert: the gateway's certificate and key, copied into its own folder (the key is its alone).
# The gateway re-reads them when they change, so a rotation is a new copy.
# `meshctl install`, not cp/mv: the folder is the gateway account's, which must not aim root's copy elsewhere.
deliver_gateway_cert() {
  local owner
  owner="$(owner_of "$GATEWAY_USER")"
  "$BIN_DIR/meshctl" install ${owner:+-owner "$owner"} "$CREDS_DIR/$GATEWAY_SERVICE_ID" \
    "$GATEWAY_TLS_KEY_FILE" tls/server-key.pem "$GATEWAY_TLS_CERT_FILE" tls/server.pem 2>>"$LOG_DIR/meshctl.log" ||
    { tail -n 5 "$LOG_DIR/meshctl.log" >&2; die "the gateway's certificate was not delivered (see $LOG_DIR/meshctl.log)"; }
}

start_gateway() {
  local dir="$CREDS_DIR/$GATEWAY_SERVICE_ID"
  if running gateway; then log "gateway already running (pid $(cat "$PID_DIR/gateway.pid"))"; return 0; fi
  need_port gateway "$GATEWAY_PORT"
  deliver_gateway_cert
  (
    export GATEWAY_HTTP_ADDR="$GATEWAY_ADDR" GATEWAY_TLS_CERT_FILE="$dir/tls/server.pem" GATEWAY_TLS_KEY_FILE="$dir/tls/server-key.pem" \
      GATEWAY_VAULT_ADDR="$VAULT_ADDR" GATEWAY_VAULT_CA_CERT="$VAULT_CACERT" GATEWAY_VAULT_ROLE=gateway \
      GATEWAY_VAULT_ROLE_ID_FILE="$dir/role-id" GATEWAY_VAULT_SECRET_ID_FILE="$dir/secret-id"
    trace_env GATEWAY
    if mesh_enabled; then
      export GATEWAY_ORDER_URL="http://127.0.0.1:$ORDER_UPSTREAM_PORT" \
        GATEWAY_CONSUL_ADDR="$(consul_addr_of gateway)" GATEWAY_CONSUL_TOKEN_FILE="$dir/consul-token" GATEWAY_SERVICE_ID="$GATEWAY_SERVICE_ID"
    else
      export GATEWAY_ORDER_URL="$ORDER_URL" # no mesh (the bench's "direct" setup): straight to order on loopback
    fi
    log "starting gateway on $GATEWAY_ADDR (log: $LOG_DIR/gateway.log)"
    spawn gateway root "$SCRIPTS_DIR/stack.sh" run-delivered gateway "$GATEWAY_SERVICE_ID" "$GATEWAY_USER" "$(mesh_enabled && echo consul)" "$BIN_DIR/gateway"
  )
  wait_for "gateway" "$STACK_TIMEOUT" "$LOG_DIR/gateway.log" gateway_live
}

# consul_as ID QUESTION ARG: consul_ask with instance ID's own token, piped to meshctl (never on argv). The
# token is read as the instance's account: through a link it planted, root would read what that account may not.
consul_as() { read_as "$(user_of "$1")" "$CREDS_DIR/$1/consul-token" | consul_ask "$2" "$3"; }

# sidecar_port ID: the public port of the Connect proxy registered for service ID (fails until it is registered).
sidecar_port() { consul_as "$1" sidecar-port "$1"; }
sidecar_registered() { sidecar_port "$1" >/dev/null; }
listening() { ! port_free 127.0.0.1 "$1"; }
# passing_in_consul ID: the agent's health of instance ID (and, for ID-sidecar-proxy, of its sidecar) is passing.
passing_in_consul() { consul_as "${1%-sidecar-proxy}" passing "$1"; }

# read_as USER FILE: FILE's content read by USER (bounded: a planted FIFO must not hang the stack).
read_as() {
  if ((SERVICE_USERS)); then timeout 5 setpriv --reuid="$1" --regid="$1" --clear-groups -- cat -- "$2"; else timeout 5 cat -- "$2"; fi
}

# service_of ID, user_of ID: the service and the OS user of an instance (and of its sidecar).
service_of() {
  case "$1" in
    gateway*) echo gateway ;;
    nats*) echo nats ;;
    *) echo order ;;
  esac
}
user_of() {
  case "$1" in
    gateway*) echo "$GATEWAY_USER" ;;
    nats*) echo "$NATS_USER" ;;
    *) echo "$ORDER_USER" ;;
  esac
}

start_sidecar() {
  await_sidecar_registration "$1"
  launch_sidecar "$1"
}

await_sidecar_registration() {
  wait_for "Consul registration of $1's sidecar (the service registers itself; after code changes restart the stack)" "$STACK_TIMEOUT" \
    "$LOG_DIR/${1%%-*}.log" sidecar_registered "$1"
}

launch_sidecar() {
  local id="$1" name="sidecar-$1" port
  if running "$name"; then log "$name already running (pid $(cat "$PID_DIR/$name.pid"))"; return 0; fi
  log "starting Connect sidecar for $id with its token (log: $LOG_DIR/$name.log)"
  (
    export CONSUL_HTTP_TOKEN_FILE="$CREDS_DIR/$id/consul-token"
    spawn "$name" "$(user_of "$id")" "$CONSUL" connect proxy -sidecar-for "$id" -http-addr="$(consul_addr_of "$(service_of "$id")")"
  )
  port="$(sidecar_port "$id")"
  wait_for "$name public listener on :$port" "$STACK_TIMEOUT" "$LOG_DIR/$name.log" listening "$port"
}

start_mesh() {
  local n id
  start_nats_mesh
  for ((n = 1; n <= ORDER_REPLICAS; n++)); do start_sidecar "$(order_id "$n")"; done
  for ((n = 1; n <= ORDER_REPLICAS; n++)); do
    wait_for "$(order_id "$n") upstream to nats on 127.0.0.1:$((NATS_UPSTREAM_PORT + n - 1))" "$STACK_TIMEOUT" \
      "$LOG_DIR/sidecar-$(order_id "$n").log" listening "$((NATS_UPSTREAM_PORT + n - 1))"
  done
  # An instance gets Connect traffic once its own check and its sidecar's pass (the sidecar's TCP check runs
  # every 10 s and starts critical): ready means every replica can take orders.
  for ((n = 1; n <= ORDER_REPLICAS; n++)); do
    id="$(order_id "$n")"
    wait_for "$id passing in Consul" "$STACK_TIMEOUT" "$LOG_DIR/consul.log" passing_in_consul "$id"
    wait_for "$id-sidecar-proxy passing in Consul" "$STACK_TIMEOUT" "$LOG_DIR/consul.log" passing_in_consul "$id-sidecar-proxy"
  done
  start_sidecar "$GATEWAY_SERVICE_ID"
  wait_for "gateway upstream to order on 127.0.0.1:$ORDER_UPSTREAM_PORT" "$STACK_TIMEOUT" \
    "$LOG_DIR/sidecar-$GATEWAY_SERVICE_ID.log" listening "$ORDER_UPSTREAM_PORT"
}

# mesh_enabled: STACK_MESH=off runs the services without Consul and sidecars (the bench's "direct" setup).
mesh_enabled() { [[ "$STACK_MESH" != off ]]; }

start_services() {
  run_migrations
  start_jaeger
  start_nats
  start_order
  start_gateway
  if mesh_enabled; then start_mesh; fi
  # Sidecar health checks take a few seconds before upstream dials find a healthy instance.
  wait_for "gateway ready" "$STACK_TIMEOUT" "$LOG_DIR/gateway.log" gateway_ready
  wait_for "GET /menu end to end (gateway → mesh → order)" "$STACK_TIMEOUT" "$LOG_DIR/gateway.log" menu_end_to_end
}

print_summary() {
  local rel="${STATE_DIR#"$PWD"/}" certs="${CERTS_DIR#"$PWD"/}" gateway
  gateway="https://localhost:$GATEWAY_PORT   (trust $certs/ca.pem: curl --cacert $certs/ca.pem https://localhost:$GATEWAY_PORT/menu)"
  [[ "$STACK_SERVICES" == 1 ]] || gateway="not started (STACK_SERVICES=0: infrastructure only)"
  local traces="http://127.0.0.1:$JAEGER_UI_PORT   (Jaeger; an error body's request_id is the trace ID: /trace/<request_id>)"
  if ! traces_enabled || [[ "$STACK_SERVICES" != 1 ]]; then traces="off (STACK_TRACES=0 or infrastructure only)"; fi
  cat <<EOF

Pizza Joint mesh is running.
  Customers:  $gateway
  Consul UI:  https://localhost:$CONSUL_HTTPS_PORT/ui   (log in with the token from: make consul-ui-token)
  Events:     NATS JetStream on 127.0.0.1:$NATS_PORT, in the mesh (make status shows the stream)
  Traces:     $traces
  Logs:       $rel/logs/    Stop: make stop

Operator environment (Vault over TLS; the operator token's policy is vault/policies/operator.hcl):
  export VAULT_ADDR=$VAULT_ADDR VAULT_CACERT=$VAULT_CACERT
  export VAULT_TOKEN="\$(cat $rel/vault/operator-token)"
  export CONSUL_HTTP_ADDR=$CONSUL_HTTP_ADDR CONSUL_HTTP_TOKEN="\$(make -s consul-operator-token)"
EOF
}

cmd_start() {
  setup
  build_services
  start_host_filter
  ensure_certs
  start_mariadb
  start_consul
  start_vault
  bootstrap
  start_consul_fronts
  if [[ "$STACK_SERVICES" == 1 ]]; then start_services; fi
  print_summary
}

# cmd_restart_sidecar ID: a new sidecar process for instance ID (after its Consul token was rotated: the
# built-in proxy reads its token once, at start).
cmd_restart_sidecar() {
  local id="${1:?usage: $0 restart-sidecar ID}" port
  "$SCRIPTS_DIR/tools.sh" prebuild consul vault
  CONSUL="$("$SCRIPTS_DIR/tools.sh" ensure consul)"
  port="$(sidecar_port "$id")"
  # Everything that can be asked beforehand is: between the old proxy's exit and the new one's listener, the
  # gateway's calls to this instance fail and are retried (about 1.5 s of retries), so that gap stays short.
  await_sidecar_registration "$id"
  stop_pidfile "sidecar-$id" "$PID_DIR/sidecar-$id.pid"
  wait_for "sidecar-$id's port $port released" "$STACK_TIMEOUT" "" port_free 127.0.0.1 "$port"
  launch_sidecar "$id"
  wait_for "$id-sidecar-proxy passing in Consul" "$STACK_TIMEOUT" "$LOG_DIR/consul.log" passing_in_consul "$id-sidecar-proxy"
}

# cmd_promote_db_replica: the runbook's answer to a primary lost for good (make promote-db-replica). The lost
# primary is fenced first (its supervisor and server stopped, and the mark keeps every later start from
# starting it), then meshctl promotes the replica and moves Vault and order to it (provision/promote.go).
cmd_promote_db_replica() {
  [[ "$DB_REPLICAS" != 0 ]] || die "no database replica to promote (DB_REPLICAS=0)"
  running mariadb-replica || db_promoted || die "the replica (mariadb-replica) is not running: nothing to promote"
  stop_process mariadb
  stop_pidfile "mariadb (lost primary)" "$PID_DIR/mariadb.child" "$MARIADB_STOP_TIMEOUT"
  touch "$STATE_DIR/mariadb-replica/promoted"
  log "promoting the replica on 127.0.0.1:$MYSQL_REPLICA_PORT to primary (log: $LOG_DIR/meshctl.log)"
  meshctl promote-db || { tail -n 10 "$LOG_DIR/meshctl.log" >&2; die "meshctl promote-db failed (see $LOG_DIR/meshctl.log); run it again"; }
  log "the replica is the primary on 127.0.0.1:$MYSQL_REPLICA_PORT; order follows it without a restart (reads too: no replica now)"
}

# ---- stop / status -------------------------------------------------------------------------------------------

cmd_stop() {
  local f name
  # Services first, while Consul and Vault are still there for deregistration and token revocation.
  for name in gateway "sidecar-$GATEWAY_SERVICE_ID" "sidecar-$ORDER_SERVICE_ID" order; do
    stop_pidfile "$name" "$PID_DIR/$name.pid"
  done
  # Further order replicas, and any other sidecar a previous run left (other service ids).
  for f in "$PID_DIR"/sidecar-*.pid "$PID_DIR"/order-*.pid; do [[ -e "$f" ]] && stop_pidfile "$(basename "$f" .pid)" "$f"; done
  # NATS's registration leaves Consul while the agent is still there; NATS after every client of it.
  stop_pidfile nats-registration "$PID_DIR/nats-registration.pid"
  stop_pidfile nats "$PID_DIR/nats.pid"
  # Jaeger after the services, so their last spans (flushed at shutdown) still land.
  stop_pidfile jaeger "$PID_DIR/jaeger.pid"
  for name in consul-ui consul-front-order consul-front-gateway consul-front-nats; do stop_pidfile "$name" "$PID_DIR/$name.pid"; done
  stop_pidfile vault "$PID_DIR/vault.pid"
  stop_pidfile consul "$PID_DIR/consul.pid"
  stop_process mariadb-replica
  stop_process mariadb
  # A server that a stack.sh from before supervision started as a daemon of its own (its pid file is mariadbd's).
  for name in mariadb-replica mariadb; do
    stop_pidfile "$name (unsupervised)" "$STATE_DIR/$name/mariadbd.pid" "$MARIADB_STOP_TIMEOUT"
  done
  for f in "$PID_DIR"/*.pid; do
    [[ -e "$f" ]] && pid_alive "$f" && die "$(basename "$f" .pid) is still running (pid $(cat "$f"))"
  done
  stop_host_filter
  log "stack stopped"
}

# stop_process NAME: one supervised process, cleanly: TERM to its supervisor, which passes it on and waits.
# mariadbd may need a while to flush and shut down; it is given MARIADB_STOP_TIMEOUT before any KILL.
stop_process() {
  local timeout=20
  [[ "$1" == mariadb* ]] && timeout="$MARIADB_STOP_TIMEOUT"
  stop_pidfile "$1" "$PID_DIR/$1.pid" "$timeout"
}

cmd_status() {
  local f name state n rc=0
  local replicas=()
  for f in "$PID_DIR"/order-*.pid "$PID_DIR"/sidecar-*.pid; do
    name="$(basename "$f" .pid)"
    [[ -e "$f" && "$name" != "sidecar-$ORDER_SERVICE_ID" && "$name" != "sidecar-$GATEWAY_SERVICE_ID" ]] && replicas+=("$name")
  done
  [[ "$DB_REPLICAS" == 0 ]] || db_promoted || replicas=(mariadb-replica "${replicas[@]}")
  replicas+=(nats nats-registration consul-front-nats)
  traces_enabled && replicas+=(jaeger)
  for name in "$(db_primary)" consul consul-front-order consul-front-gateway consul-ui vault order gateway "sidecar-$ORDER_SERVICE_ID" "sidecar-$GATEWAY_SERVICE_ID" "${replicas[@]}"; do
    f="$PID_DIR/$name.pid"
    if pid_alive "$f"; then state="running (pid $(cat "$f"))"; else state="stopped"; rc=3; fi
    [[ -s "$PID_DIR/$name.restarts" ]] && state+=", restarts: $(cat "$PID_DIR/$name.restarts")" # supervise.sh counts them
    printf '%-24s %s\n' "$name" "$state"
  done
  state="$(host_filter_state)" || rc=3
  printf '%-24s %s\n' host-filter "$state"
  CURL="$("$SCRIPTS_DIR/tools.sh" ensure curl)"
  state="$(meshctl nats-stream status)" || { state="unreachable (see $LOG_DIR/meshctl.log)"; rc=3; }
  printf '%-24s %s\n' event-stream "$state"
  # The relay's lag: the age of the oldest event not yet in the stream, from each instance's metrics.
  for ((n = 1; n <= ORDER_REPLICAS; n++)); do
    state="$("$CURL" -fsS --max-time 5 "http://$(order_addr "$n")/metrics" 2>/dev/null | grep '^pizza_order_event_relay_lag_seconds ')" ||
      state="no metrics"
    printf '%-24s %s\n' "$(order_id "$n") relay lag" "${state#pizza_order_event_relay_lag_seconds }s"
  done
  return "$rc"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart-sidecar) cmd_restart_sidecar "${2:-}" ;;
  start-mariadb) cmd_start_mariadb ;;
  promote-db-replica) cmd_promote_db_replica ;;
  start-nats) cmd_start_nats ;;
  stop-process) [[ "${2:-}" =~ ^[a-z0-9-]+$ ]] || die "usage: $0 stop-process NAME (mariadb, order-2, …)"; stop_process "$2" ;;
  meshctl) shift; meshctl "$@" ;;
  reload-nats) reload_nats ;;
  deliver-gateway-cert) GATEWAY_TLS_CERT_FILE="$CERTS_DIR/server.pem" GATEWAY_TLS_KEY_FILE="$CERTS_DIR/server-key.pem" deliver_gateway_cert ;;
  run-delivered) shift; run_delivered "$@" ;; # supervised commands (spawn), not for operators
  run-vault) run_vault ;;
  *) die "usage: $0 start|stop|status|restart-sidecar ID|start-mariadb|start-nats|stop-process NAME|promote-db-replica" ;;
esac
