#!/usr/bin/env bash
# stack.sh start|stop|status: the whole Pizza Joint mesh as local processes (used by `make run` / `make stop`).
#
# start: MariaDB → Consul dev agent (+ intentions) → Vault server (init once, unseal every start) → bootstrap →
#        order migrate (short-lived DDL user) → order → gateway → one Connect sidecar per service instance.
# Every phase checks its own pid file and readiness first, so `start` twice is safe. State, logs and pids live
# under STATE_DIR (git-ignored); secrets only in 0600 files there, never on a command line or in a log.
#
# Settings (env): STATE_DIR BIN_DIR CERTS_DIR MYSQL_PORT CONSUL_HTTP_PORT CONSUL_GRPC_PORT CONSUL_HTTP_BIND VAULT_PORT
#   GATEWAY_ADDR ORDER_ADDR ORDER_REPLICAS ORDER_UPSTREAM_PORT ORDER_SERVICE_ID GATEWAY_SERVICE_ID STACK_SERVICES STACK_MESH
#   STACK_TIMEOUT (seconds per readiness wait) DB_REPLICAS MYSQL_REPLICA_PORT; see the defaults (settings.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
umask 077

source "$SCRIPTS_DIR/settings.sh"

setup() {
  mkdir -p "$LOG_DIR" "$PID_DIR" "$CREDS_DIR" "$VAULT_DIR"
  chmod 700 "$STATE_DIR" "$CREDS_DIR" "$VAULT_DIR"
  CONSUL="$("$SCRIPTS_DIR/tools.sh" ensure consul)"
  VAULT="$("$SCRIPTS_DIR/tools.sh" ensure vault)"
  JQ="$("$SCRIPTS_DIR/tools.sh" ensure jq)"
  CURL="$("$SCRIPTS_DIR/tools.sh" ensure curl)"
}

vault() { "$VAULT" "$@"; }

# spawn NAME CMD...: CMD detached in its own session (survives this script and its Ctrl-C), log and pid by NAME.
# Callers export the process's env in a subshell, so nothing secret ever lands on argv.
spawn() {
  local name="$1"; shift
  setsid "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1 &
  echo $! >"$PID_DIR/$name.pid"
}

running() { pid_alive "$PID_DIR/$1.pid"; }

# need_port NAME PORT: fail early and clearly when something else holds a port we are about to bind.
need_port() { port_free 127.0.0.1 "$2" || die "port $2 for $1 is already in use; stop that process or override the port (see $0 header)"; }

# ---- MariaDB -------------------------------------------------------------------------------------------------

start_mariadb() {
  MARIADB_LOG="$LOG_DIR/mariadb.log" "$SCRIPTS_DIR/mariadb.sh" start "$STATE_DIR/mariadb" "$MYSQL_PORT"
  if [[ "$DB_REPLICAS" != 0 ]]; then
    MARIADB_LOG="$LOG_DIR/mariadb-replica.log" "$SCRIPTS_DIR/mariadb.sh" start-replica "$STATE_DIR/mariadb-replica" \
      "$MYSQL_REPLICA_PORT" "$STATE_DIR/mariadb" "$MYSQL_PORT"
  fi
}

# ---- Consul --------------------------------------------------------------------------------------------------

consul_leader() { [[ "$("$CURL" -fsS "$CONSUL_HTTP_ADDR/v1/status/leader")" == \"*:*\" ]]; }
consul_ca_ready() { "$CURL" -fsS "$CONSUL_HTTP_ADDR/v1/connect/ca/roots" | "$JQ" -e '.Roots | length > 0'; }

start_consul() {
  if running consul; then
    log "Consul already running (pid $(cat "$PID_DIR/consul.pid"))"
  else
    need_port consul-http "$CONSUL_HTTP_PORT"
    need_port consul-grpc "$CONSUL_GRPC_PORT"
    log "starting Consul dev agent (log: $LOG_DIR/consul.log)"
    spawn consul "$CONSUL" agent -dev -node=pizza-dev \
      -config-file="$ROOT_DIR/consul/agent-dev.hcl" \
      -bind=127.0.0.1 -client=127.0.0.1 \
      -http-port="$CONSUL_HTTP_PORT" -grpc-port="$CONSUL_GRPC_PORT" \
      -server-port="$CONSUL_SERVER_PORT" -serf-lan-port="$CONSUL_SERF_LAN_PORT" -serf-wan-port="$CONSUL_SERF_WAN_PORT" \
      -hcl="addresses { http = \"$CONSUL_HTTP_BIND\" }" \
      -hcl="ports { grpc_tls = -1, sidecar_min_port = $CONSUL_SIDECAR_MIN_PORT, sidecar_max_port = $CONSUL_SIDECAR_MAX_PORT }"
  fi
  wait_for "Consul leader" "$STACK_TIMEOUT" "$LOG_DIR/consul.log" consul_leader
  wait_for "Consul Connect CA" "$STACK_TIMEOUT" "$LOG_DIR/consul.log" consul_ca_ready
  local f
  for f in "$ROOT_DIR"/consul/intentions-*.hcl; do
    "$CONSUL" config write "$f" >/dev/null || die "consul config write $f failed"
  done
  log "Consul ready at $CONSUL_HTTP_ADDR; intentions applied: default deny, gateway → order allow"
}

# ---- Vault ---------------------------------------------------------------------------------------------------

# vault_status_code: 0 unsealed, 2 sealed, 1 not answering (vault status's own exit codes).
vault_status_code() { local rc=0; vault status >/dev/null 2>&1 || rc=$?; echo "$rc"; }
vault_answers() { [[ "$(vault_status_code)" != 1 ]]; }
vault_unsealed() { [[ "$(vault_status_code)" == 0 ]]; }

write_vault_config() {
  # Paths and ports depend on STATE_DIR/VAULT_PORT; the static settings stay in vault/server.hcl.
  cat >"$VAULT_DIR/local.hcl" <<EOF
storage "file" {
  path = "$VAULT_DIR/data"
}
listener "tcp" {
  address     = "127.0.0.1:$VAULT_PORT"
  tls_disable = true # loopback only; put TLS here before binding anything else
}
api_addr = "$VAULT_ADDR"
EOF
}

vault_init() {
  local init="$VAULT_DIR/init.json.tmp"
  log "initialising Vault (1 key share; unseal key and root token go to 0600 files in $VAULT_DIR)"
  vault operator init -key-shares=1 -key-threshold=1 -format=json >"$init"
  "$JQ" -j '.unseal_keys_b64[0]' "$init" >"$UNSEAL_KEY_FILE"
  "$JQ" -j '.root_token' "$init" >"$ROOT_TOKEN_FILE"
  rm -f "$init"
}

vault_unseal() {
  [[ -s "$UNSEAL_KEY_FILE" ]] || die "Vault is sealed and $UNSEAL_KEY_FILE is missing; the data in $VAULT_DIR/data cannot be opened"
  # sys/unseal through the generic write: the key is read from the 0600 file, never from argv
  # (`vault operator unseal` only takes the key as an argument or from a terminal).
  vault write sys/unseal key=@"$UNSEAL_KEY_FILE" >/dev/null
}

start_vault() {
  if running vault; then
    log "Vault already running (pid $(cat "$PID_DIR/vault.pid"))"
  else
    need_port vault "$VAULT_PORT"
    write_vault_config
    log "starting Vault server (log: $LOG_DIR/vault.log)"
    spawn vault "$VAULT" server -config="$ROOT_DIR/vault/server.hcl" -config="$VAULT_DIR/local.hcl"
  fi
  wait_for "Vault API" "$STACK_TIMEOUT" "$LOG_DIR/vault.log" vault_answers
  if [[ "$(vault status -format=json 2>/dev/null | "$JQ" -r .initialized)" != true ]]; then
    vault_init
  fi
  vault_unsealed || vault_unseal
  wait_for "Vault unsealed and active" "$STACK_TIMEOUT" "$LOG_DIR/vault.log" vault_unsealed
  log "Vault ready at $VAULT_ADDR"
}

bootstrap() {
  VAULT_TOKEN_FILE="$ROOT_TOKEN_FILE" "$SCRIPTS_DIR/bootstrap.sh"
}

# ---- Go services ---------------------------------------------------------------------------------------------

# build_services: go build when a binary is missing or any Go source is newer (cheap with the build cache).
build_services() {
  local cmds=(./cmd/order ./cmd/gateway) stale=0 b
  [[ -d "$ROOT_DIR/cmd/devcerts" ]] && cmds+=(./cmd/devcerts)
  for b in "${cmds[@]}"; do
    [[ -x "$BIN_DIR/$(basename "$b")" ]] || stale=1
  done
  if ((stale == 0)) && [[ -n "$(find "$ROOT_DIR" -path "$ROOT_DIR/.*" -prune -o \( -name '*.go' -o -name go.mod -o -name '*.sql' \) \
    -newer "$BIN_DIR/order" -print -quit)" ]]; then
    stale=1
  fi
  ((stale)) || return 0
  log "building ${cmds[*]} into $BIN_DIR"
  mkdir -p "$BIN_DIR"
  (cd "$ROOT_DIR" && go build -o "$BIN_DIR/" "${cmds[@]}") >>"$LOG_DIR/build.log" 2>&1 ||
    { tail -n 20 "$LOG_DIR/build.log" >&2; die "go build failed (see $LOG_DIR/build.log)"; }
}

# supports BIN WORD: the binary's --help (env names, ardanlabs/conf) mentions WORD, e.g. VAULT or CONSUL.
# The help text is captured first: `... | grep -q` under pipefail fails when grep's early exit SIGPIPEs the writer.
supports() {
  local help
  help="$(timeout 10 "$BIN_DIR/$1" --help 2>&1 || true)"
  [[ "$help" == *"$2"* ]]
}

mesh_enabled() {
  case "$STACK_MESH" in
    on) return 0 ;;
    off) return 1 ;;
    *) supports order CONSUL && supports gateway CONSUL ;;
  esac
}

ensure_certs() {
  if [[ -n "${GATEWAY_TLS_CERT_FILE:-}" ]]; then return 0; fi
  [[ -x "$BIN_DIR/devcerts" ]] || die "no GATEWAY_TLS_CERT_FILE and no devcerts binary to make one"
  # devcerts keeps the CA and re-issues the server certificate only when needed.
  "$BIN_DIR/devcerts" -out "$CERTS_DIR" >>"$LOG_DIR/devcerts.log" 2>&1 || die "devcerts failed (see $LOG_DIR/devcerts.log)"
  GATEWAY_TLS_CERT_FILE="$CERTS_DIR/server.pem"
  GATEWAY_TLS_KEY_FILE="$CERTS_DIR/server-key.pem"
}

# approle_token NAME: logs in as AppRole NAME and prints the token (role_id/secret_id go in as JSON on stdin).
approle_token() {
  "$JQ" -n --rawfile r "$CREDS_DIR/$1-role-id" --rawfile s "$CREDS_DIR/$1-secret-id" '{role_id: $r, secret_id: $s}' |
    vault write -field=token auth/approle/login -
}

# db_creds_file ROLE FILE: reads database/creds/ROLE with $VAULT_TOKEN, writes user:password to FILE, prints lease_id.
db_creds_file() {
  local json
  json="$(vault read -format=json "database/creds/$1")"
  "$JQ" -j '.data.username + ":" + .data.password' <<<"$json" >"$2"
  "$JQ" -r '.lease_id' <<<"$json"
}

run_migrations() {
  local creds="$CREDS_DIR/order-migrate.db" lease rc=0
  # The DDL user exists only for this run: AppRole order-migrate, 5-minute lease, revoked right after.
  (
    VAULT_TOKEN="$(approle_token order-migrate)"
    export VAULT_TOKEN
    trap 'rm -f "$creds"; vault token revoke -self >/dev/null 2>&1 || true' EXIT
    lease="$(db_creds_file order-migrate "$creds")"
    log "running migrations as a short-lived order-migrate user (log: $LOG_DIR/order-migrate.log)"
    (
      export ORDER_DB_ADDR="127.0.0.1:$MYSQL_PORT" ORDER_DB_NAME="${ORDER_DB_NAME:-pizza}" ORDER_DB_CREDENTIALS_FILE="$creds"
      "$BIN_DIR/order" migrate
    ) >>"$LOG_DIR/order-migrate.log" 2>&1 || rc=$?
    vault lease revoke "$lease" >/dev/null 2>&1 || log "warning: could not revoke the migration lease (it expires by itself)"
    ((rc == 0)) || { tail -n 20 "$LOG_DIR/order-migrate.log" >&2; die "order migrate failed (see $LOG_DIR/order-migrate.log)"; }
  )
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
  local name addr
  name="$(order_name "$1")" addr="$(order_addr "$1")"
  if running "$name"; then log "$name already running (pid $(cat "$PID_DIR/$name.pid"))"; return 0; fi
  need_port "$name" "${addr##*:}"
  (
    export ORDER_HTTP_ADDR="$addr" ORDER_DB_ADDR="127.0.0.1:$MYSQL_PORT" ORDER_DB_NAME="${ORDER_DB_NAME:-pizza}"
    if [[ "$DB_REPLICAS" != 0 ]]; then export ORDER_DB_REPLICA_ADDR="127.0.0.1:$MYSQL_REPLICA_PORT"; fi
    if supports order VAULT; then
      export ORDER_VAULT_ADDR="$VAULT_ADDR" ORDER_VAULT_DB_ROLE=order \
        ORDER_VAULT_ROLE_ID_FILE="$CREDS_DIR/order-role-id" ORDER_VAULT_SECRET_ID_FILE="$CREDS_DIR/order-secret-id"
    else
      # Until the service logs in to Vault itself: one lease read with the operator token, written to a 0600 file.
      # Nobody renews it, so the MySQL user lives DB_CREDS_TTL (default 1h).
      log "warning: order has no Vault settings yet; static credentials from database/creds/order (expire with the lease)"
      VAULT_TOKEN="$(<"$ROOT_TOKEN_FILE")" db_creds_file order "$CREDS_DIR/order.db" >"$CREDS_DIR/order.db.lease"
      export ORDER_DB_CREDENTIALS_FILE="$CREDS_DIR/order.db"
    fi
    if mesh_enabled; then
      export ORDER_CONSUL_ADDR="$CONSUL_HTTP_ADDR" ORDER_SERVICE_ID="$(order_id "$1")"
    fi
    log "starting $name on $addr (log: $LOG_DIR/$name.log)"
    spawn "$name" "$BIN_DIR/order" serve
  )
  wait_for "$name" "$STACK_TIMEOUT" "$LOG_DIR/$name.log" order_ready "$addr"
}

gateway_live() { "$CURL" -fsSk -o /dev/null "https://127.0.0.1:$GATEWAY_PORT/health/livez"; }
gateway_ready() { "$CURL" -fsSk -o /dev/null "https://127.0.0.1:$GATEWAY_PORT/health/readyz"; }
# menu_end_to_end: GET /menu answered by order through the gateway (and the sidecars, with the mesh on). The
# gateway's own readiness does not depend on order, so only this says customers can order.
menu_end_to_end() {
  local trust=(-k) # an operator's own certificate: its CA is theirs, this only checks the path answers
  [[ -f "$CERTS_DIR/ca.pem" ]] && trust=(--cacert "$CERTS_DIR/ca.pem")
  "$CURL" -fsS "${trust[@]}" -o /dev/null "https://localhost:$GATEWAY_PORT/menu"
}

start_gateway() {
  if running gateway; then log "gateway already running (pid $(cat "$PID_DIR/gateway.pid"))"; return 0; fi
  need_port gateway "$GATEWAY_PORT"
  ensure_certs
  (
    export GATEWAY_HTTP_ADDR="$GATEWAY_ADDR" GATEWAY_TLS_CERT_FILE GATEWAY_TLS_KEY_FILE
    if supports gateway VAULT; then
      # Staff sign-in: the gateway reads staff token hashes from Vault KV with its own AppRole.
      export GATEWAY_VAULT_ADDR="$VAULT_ADDR" \
        GATEWAY_VAULT_ROLE_ID_FILE="$CREDS_DIR/gateway-role-id" GATEWAY_VAULT_SECRET_ID_FILE="$CREDS_DIR/gateway-secret-id"
    fi
    if mesh_enabled; then
      export GATEWAY_ORDER_URL="http://127.0.0.1:$ORDER_UPSTREAM_PORT" \
        GATEWAY_CONSUL_ADDR="$CONSUL_HTTP_ADDR" GATEWAY_SERVICE_ID="$GATEWAY_SERVICE_ID"
    else
      export GATEWAY_ORDER_URL="$ORDER_URL" # no mesh yet: straight to order on loopback
    fi
    log "starting gateway on $GATEWAY_ADDR (log: $LOG_DIR/gateway.log)"
    spawn gateway "$BIN_DIR/gateway"
  )
  wait_for "gateway" "$STACK_TIMEOUT" "$LOG_DIR/gateway.log" gateway_live
}

# sidecar_port ID: the public port of the Connect proxy registered for service ID (empty until it is registered).
sidecar_port() {
  "$CURL" -fsS -G "$CONSUL_HTTP_ADDR/v1/agent/services" \
    --data-urlencode "filter=Kind == \"connect-proxy\" and Proxy.DestinationServiceID == \"$1\"" |
    "$JQ" -er 'to_entries | first | .value.Port'
}
sidecar_registered() { sidecar_port "$1" >/dev/null; }
listening() { ! port_free 127.0.0.1 "$1"; }

start_sidecar() {
  local id="$1" name="sidecar-$1" port
  wait_for "Consul registration of $id's sidecar (the service registers itself; after code changes restart the stack)" "$STACK_TIMEOUT" \
    "$LOG_DIR/${id%%-*}.log" sidecar_registered "$id"
  if running "$name"; then log "$name already running (pid $(cat "$PID_DIR/$name.pid"))"; return 0; fi
  log "starting Connect sidecar for $id (log: $LOG_DIR/$name.log)"
  spawn "$name" "$CONSUL" connect proxy -sidecar-for "$id" -http-addr="$CONSUL_HTTP_ADDR"
  port="$(sidecar_port "$id")"
  wait_for "$name public listener on :$port" "$STACK_TIMEOUT" "$LOG_DIR/$name.log" listening "$port"
}

# passing_in_consul ID: the agent's health of service instance ID is passing (a new check starts critical).
passing_in_consul() { "$CURL" -fsS -o /dev/null "$CONSUL_HTTP_ADDR/v1/agent/health/service/id/$1"; }

start_mesh() {
  local n
  for ((n = 1; n <= ORDER_REPLICAS; n++)); do start_sidecar "$(order_id "$n")"; done
  # An instance gets Connect traffic once its own check and its sidecar's pass (the sidecar's TCP check runs
  # every 10 s and starts critical): ready means every replica can take orders.
  local id
  for ((n = 1; n <= ORDER_REPLICAS; n++)); do
    id="$(order_id "$n")"
    wait_for "$id passing in Consul" "$STACK_TIMEOUT" "$LOG_DIR/consul.log" passing_in_consul "$id"
    wait_for "$id-sidecar-proxy passing in Consul" "$STACK_TIMEOUT" "$LOG_DIR/consul.log" passing_in_consul "$id-sidecar-proxy"
  done
  start_sidecar "$GATEWAY_SERVICE_ID"
  wait_for "gateway upstream to order on 127.0.0.1:$ORDER_UPSTREAM_PORT" "$STACK_TIMEOUT" \
    "$LOG_DIR/sidecar-$GATEWAY_SERVICE_ID.log" listening "$ORDER_UPSTREAM_PORT"
}

start_services() {
  build_services
  run_migrations
  start_order
  start_gateway
  if mesh_enabled; then
    start_mesh
  else
    log "warning: services do not register with Consul yet; gateway calls order directly (no sidecars)"
  fi
  # Sidecar health checks take a few seconds before upstream dials find a healthy instance.
  wait_for "gateway ready" "$STACK_TIMEOUT" "$LOG_DIR/gateway.log" gateway_ready
  wait_for "GET /menu end to end (gateway → mesh → order)" "$STACK_TIMEOUT" "$LOG_DIR/gateway.log" menu_end_to_end
}

print_summary() {
  local rel="${STATE_DIR#"$PWD"/}" certs="${CERTS_DIR#"$PWD"/}" gateway
  gateway="https://localhost:$GATEWAY_PORT   (trust $certs/ca.pem: curl --cacert $certs/ca.pem https://localhost:$GATEWAY_PORT/menu)"
  [[ "$STACK_SERVICES" == 1 ]] || gateway="not started (STACK_SERVICES=0: infrastructure only)"
  cat <<EOF

Pizza Joint mesh is running.
  Gateway:    $gateway
  Consul UI:  http://localhost:$CONSUL_HTTP_PORT/ui
  Logs:       $rel/logs/    Stop: make stop (scripts/stack.sh stop)

Operator environment:
  export VAULT_ADDR=$VAULT_ADDR
  export CONSUL_HTTP_ADDR=$CONSUL_HTTP_ADDR
  export VAULT_TOKEN="\$(cat $rel/vault/root-token)"   # operator token (root, local stack only; file is 0600)
EOF
}

cmd_start() {
  setup
  start_mariadb
  start_consul
  start_vault
  bootstrap
  if [[ "$STACK_SERVICES" == 1 ]]; then start_services; fi
  print_summary
}

# ---- stop / status -------------------------------------------------------------------------------------------

# revoke_static_order_creds: drops the MySQL user of the interim static mode now rather than at lease expiry.
revoke_static_order_creds() {
  local lease_file="$CREDS_DIR/order.db.lease"
  [[ -s "$lease_file" ]] || return 0
  if running vault && [[ -s "$ROOT_TOKEN_FILE" ]]; then
    VAULT_TOKEN="$(<"$ROOT_TOKEN_FILE")" "$("$SCRIPTS_DIR/tools.sh" ensure vault)" lease revoke "$(<"$lease_file")" >/dev/null 2>&1 ||
      log "warning: could not revoke the static order lease (it expires by itself)"
  fi
  rm -f "$lease_file"
}

cmd_stop() {
  local f name
  # Services first, while Consul and Vault are still there for deregistration and token revocation.
  for name in gateway "sidecar-$GATEWAY_SERVICE_ID" "sidecar-$ORDER_SERVICE_ID" order; do
    stop_pidfile "$name" "$PID_DIR/$name.pid"
  done
  # Further order replicas, and any other sidecar a previous run left (other service ids).
  for f in "$PID_DIR"/sidecar-*.pid "$PID_DIR"/order-*.pid; do [[ -e "$f" ]] && stop_pidfile "$(basename "$f" .pid)" "$f"; done
  revoke_static_order_creds
  stop_pidfile vault "$PID_DIR/vault.pid"
  stop_pidfile consul "$PID_DIR/consul.pid"
  "$SCRIPTS_DIR/mariadb.sh" stop "$STATE_DIR/mariadb-replica"
  "$SCRIPTS_DIR/mariadb.sh" stop "$STATE_DIR/mariadb"
  rm -f "$CREDS_DIR/order.db"
  for f in "$PID_DIR"/*.pid; do
    [[ -e "$f" ]] && pid_alive "$f" && die "$(basename "$f" .pid) is still running (pid $(cat "$f"))"
  done
  log "stack stopped"
}

cmd_status() {
  local f name state rc=0
  local replicas=()
  for f in "$PID_DIR"/order-*.pid "$PID_DIR"/sidecar-*.pid; do
    name="$(basename "$f" .pid)"
    [[ -e "$f" && "$name" != "sidecar-$ORDER_SERVICE_ID" && "$name" != "sidecar-$GATEWAY_SERVICE_ID" ]] && replicas+=("$name")
  done
  [[ "$DB_REPLICAS" == 0 ]] || replicas=(mariadb-replica "${replicas[@]}")
  for name in mariadb consul vault order gateway "sidecar-$ORDER_SERVICE_ID" "sidecar-$GATEWAY_SERVICE_ID" "${replicas[@]}"; do
    f="$PID_DIR/$name.pid"
    [[ "$name" == mariadb ]] && f="$STATE_DIR/mariadb/mariadbd.pid"
    [[ "$name" == mariadb-replica ]] && f="$STATE_DIR/mariadb-replica/mariadbd.pid"
    if pid_alive "$f"; then state="running (pid $(cat "$f"))"; else state="stopped"; rc=3; fi
    printf '%-24s %s\n' "$name" "$state"
  done
  return "$rc"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
