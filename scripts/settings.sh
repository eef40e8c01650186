# shellcheck shell=bash
# Settings of the local stack, shared by stack.sh and rotate.sh; sourced after lib.sh. Every one can be
# overridden from the environment (the tests run a private stack on free ports this way).

STATE_DIR="$(mkdir -p "${STATE_DIR:-$ROOT_DIR/.state}" && cd "${STATE_DIR:-$ROOT_DIR/.state}" && pwd)"
export STATE_DIR
BIN_DIR="${BIN_DIR:-$STATE_DIR/bin}"
CERTS_DIR="${CERTS_DIR:-$ROOT_DIR/certs}"
LOG_DIR="$STATE_DIR/logs"
PID_DIR="$STATE_DIR/pids"
CREDS_DIR="$STATE_DIR/credentials"
export LOG_DIR CREDS_DIR

export MYSQL_PORT="${MYSQL_PORT:-13306}"
# DB_REPLICAS=1: a read_only GTID replica of MariaDB beside the primary, where order sends its reads; 0: none.
DB_REPLICAS="${DB_REPLICAS:-1}"
MYSQL_REPLICA_PORT="${MYSQL_REPLICA_PORT:-$((MYSQL_PORT + 1))}"
# DB_SEMI_SYNC=1: the primary acknowledges a commit only once the replica has it (semi-synchronous replication,
# lossless: rpl_semi_sync_master_wait_point=AFTER_SYNC), so promoting the replica loses no acknowledged order.
# If the replica does not answer within DB_SEMI_SYNC_TIMEOUT_MS, the primary goes on asynchronously until it
# is back. 0: asynchronous. The README's "Losing the database primary" has the measurements behind the default.
DB_SEMI_SYNC="${DB_SEMI_SYNC:-1}"
DB_SEMI_SYNC_TIMEOUT_MS="${DB_SEMI_SYNC_TIMEOUT_MS:-1000}"
CONSUL_SERVER_PORT="${CONSUL_SERVER_PORT:-8300}"
CONSUL_SERF_LAN_PORT="${CONSUL_SERF_LAN_PORT:-8301}"
CONSUL_SERF_WAN_PORT="${CONSUL_SERF_WAN_PORT:-8302}"
CONSUL_SIDECAR_MIN_PORT="${CONSUL_SIDECAR_MIN_PORT:-21000}"
CONSUL_SIDECAR_MAX_PORT="${CONSUL_SIDECAR_MAX_PORT:-21255}"
# The agent's HTTP API is a unix socket only root may open; each service user reaches it through a front of its
# own (consul-<service>.sock), see consul/agent.hcl for why. The UI and API for operators are served over HTTPS with the
# project's CA on CONSUL_HTTPS_BIND by `meshctl serve-ui`; ACLs (default deny) refuse anything without a token.
# The server and serf ports stay on loopback; DNS and gRPC are off.
CONSUL_HTTPS_PORT="${CONSUL_HTTPS_PORT:-8501}"
CONSUL_HTTPS_BIND="${CONSUL_HTTPS_BIND:-0.0.0.0}"
CONSUL_NODE="${CONSUL_NODE:-pizza-1}"
export VAULT_PORT="${VAULT_PORT:-8200}"
GATEWAY_ADDR="${GATEWAY_ADDR:-:8443}"
# The gateway's Prometheus /metrics, on loopback; only root may read it (the host filter). Empty: not served.
export GATEWAY_METRICS_ADDR="${GATEWAY_METRICS_ADDR-127.0.0.1:9464}"
ORDER_ADDR="${ORDER_ADDR:-127.0.0.1:9090}"
# Horizontal scaling: replica N (from 2) listens on ORDER_ADDR's port + N-1 as service instance order-N.
ORDER_REPLICAS="${ORDER_REPLICAS:-1}"
ORDER_UPSTREAM_PORT="${ORDER_UPSTREAM_PORT:-9191}"
ORDER_SERVICE_ID="${ORDER_SERVICE_ID:-order-1}"
GATEWAY_SERVICE_ID="${GATEWAY_SERVICE_ID:-gateway-1}"
# The event stream: NATS JetStream on loopback, reached by order only through its sidecar's upstream (replica N
# on NATS_UPSTREAM_PORT + N-1); its monitoring port is root's (make status).
NATS_PORT="${NATS_PORT:-4222}"
NATS_MONITOR_PORT="${NATS_MONITOR_PORT:-8222}"
NATS_UPSTREAM_PORT="${NATS_UPSTREAM_PORT:-9292}"
NATS_SERVICE_ID="${NATS_SERVICE_ID:-nats-1}"
# Traces: Jaeger v2 all-in-one (jaeger/config.yaml), spans kept in memory. The services export OTLP/HTTP to
# JAEGER_OTLP_PORT on loopback; the UI and its API are on JAEGER_UI_PORT. STACK_TRACES=0: no Jaeger, no spans
# exported. TRACE_SAMPLE: the share of new traces the gateway records (order follows the gateway's decision).
STACK_TRACES="${STACK_TRACES:-1}"
JAEGER_OTLP_PORT="${JAEGER_OTLP_PORT:-4318}"
JAEGER_UI_PORT="${JAEGER_UI_PORT:-16686}"
JAEGER_QUERY_GRPC_PORT="${JAEGER_QUERY_GRPC_PORT:-16685}"
JAEGER_MAX_TRACES="${JAEGER_MAX_TRACES:-20000}"
TRACE_SAMPLE="${TRACE_SAMPLE:-1}"
STACK_SERVICES="${STACK_SERVICES:-1}" # 0: infrastructure only (MariaDB, Consul, Vault, bootstrap)
STACK_MESH="${STACK_MESH:-auto}"      # auto: sidecars when the services register with Consul; on; off
STACK_TIMEOUT="${STACK_TIMEOUT:-60}"
# How long MariaDB may take to answer after it was started (the first start initialises its data folder too),
# and how long a stopping mariadbd may take to finish its shutdown before it is killed.
export MARIADB_START_TIMEOUT="${MARIADB_START_TIMEOUT:-120}"
MARIADB_STOP_TIMEOUT="${MARIADB_STOP_TIMEOUT:-60}"

CONSUL_SOCKET="$STATE_DIR/consul.sock"
export CONSUL_HTTP_ADDR="unix://$CONSUL_SOCKET"
export VAULT_ADDR="https://127.0.0.1:$VAULT_PORT"
export VAULT_CACERT="$CERTS_DIR/ca.pem"
VAULT_DIR="$STATE_DIR/vault"
OPERATOR_TOKEN_FILE="$VAULT_DIR/operator-token"
# One OS user per service when the stack runs as root (it does when it installs packages): each reads only its
# own credentials folder. SERVICE_USERS=0 runs everything as the calling user.
if [[ "$(id -u)" == 0 ]]; then SERVICE_USERS="${SERVICE_USERS:-1}"; else SERVICE_USERS=0; fi
ORDER_USER="${ORDER_USER:-pizza-order}"
GATEWAY_USER="${GATEWAY_USER:-pizza-gateway}"
NATS_USER="${NATS_USER:-pizza-nats}"
JAEGER_USER="${JAEGER_USER:-pizza-jaeger}"
# order migrate runs as an account of its own: the running order's account never sees the DDL user's credentials.
MIGRATE_USER="${MIGRATE_USER:-pizza-migrate}"
GATEWAY_PORT="${GATEWAY_ADDR##*:}"
ORDER_URL="http://$ORDER_ADDR"
