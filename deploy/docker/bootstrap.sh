#!/usr/bin/env bash
# pizza-bootstrap: the Docker Compose counterpart of scripts/stack.sh's Vault phase + scripts/bootstrap.sh +
# run_migrations. Runs on every `docker compose up` (idempotent) in the `vault-bootstrap` one-shot container:
#
#   vault      init once (1 key share, unseal key and root token into the vault-init volume, 0600), unseal
#   policies   /pizza/vault/policies/*.hcl (the repo's vault/policies, baked into the image)
#   approle    roles order, order-migrate, gateway; order's role_id/secret_id into the credentials volume
#   database   connection "pizza" to MySQL as vault_admin, whose first password the MySQL init script
#              (deploy/docker/mysql-init.sh) left in a tmpfs hand-off volume: handed to Vault on stdin,
#              rotated by Vault at once, then deleted; roles from /pizza/vault/database/*.sql
#   transit    key orders-pii
#   kv-v2      secret/ (staff bearer-token hashes the gateway reads; written by operators, not here)
#   migrate    `order migrate` as a short-lived order-migrate user, lease and token revoked right after
#
# It differs from scripts/bootstrap.sh only where a container differs from one machine: MySQL is reached by
# name, the admin is created by MySQL's init script (root is unknown afterwards), AppRoles are bound to the
# compose network addresses of the mesh node instead of 127.0.0.1. Settings, TTLs and files are the same.
# Secrets never go on a command line or to the log: stdin, 0600 files and the environment only.
set -euo pipefail
umask 077

log() { printf '[bootstrap %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

: "${VAULT_ADDR:?}" "${DB_ADDR:?}" "${DB_ADMIN_HOST:?}" "${APPROLE_BOUND_CIDRS:?}" "${MIGRATE_BOUND_CIDRS:?}"
export VAULT_ADDR
VAULT_INIT_DIR="${VAULT_INIT_DIR:-/vault-init}"
UNSEAL_KEY_FILE="$VAULT_INIT_DIR/unseal-key"
ROOT_TOKEN_FILE="$VAULT_INIT_DIR/root-token"
CREDS_DIR="${CREDS_DIR:-/credentials}"
SERVICE_UID="${SERVICE_UID:-10001}"                 # the services' uid in deploy/docker/Dockerfile
POLICY_DIR="${POLICY_DIR:-/pizza/vault/policies}"
SQL_DIR="${SQL_DIR:-/pizza/vault/database}"
DB_ADMIN_PASSWORD_FILE="${DB_ADMIN_PASSWORD_FILE:-/handoff/vault-admin-password}"
AUDIT_FILE="${AUDIT_FILE:-/vault/logs/audit.log}"   # a path inside the Vault container
MIGRATE_DIR="${MIGRATE_DIR:-/run/migrate}"          # tmpfs: the DDL user's password never touches a disk
TIMEOUT="${BOOTSTRAP_TIMEOUT:-60}"

DB_NAME="${DB_NAME:-pizza}"
DB_CONNECTION="${DB_CONNECTION:-pizza}"
DB_ADMIN_USER="${DB_ADMIN_USER:-vault_admin}"
DB_CREDS_TTL="${DB_CREDS_TTL:-1h}"
DB_CREDS_MAX_TTL="${DB_CREDS_MAX_TTL:-24h}"
DB_MIGRATE_CREDS_TTL="${DB_MIGRATE_CREDS_TTL:-5m}"
DB_MIGRATE_CREDS_MAX_TTL="${DB_MIGRATE_CREDS_MAX_TTL:-15m}"
APPROLE_TOKEN_TTL="${APPROLE_TOKEN_TTL:-20m}"
APPROLE_TOKEN_MAX_TTL="${APPROLE_TOKEN_MAX_TTL:-24h}"
APPROLE_SECRET_ID_TTL="${APPROLE_SECRET_ID_TTL:-720h}"
TRANSIT_KEY="${TRANSIT_KEY:-orders-pii}"

# ---- Vault server: init once, unseal on every start -------------------------------------------------------

# vault_status_code: 0 unsealed, 2 sealed, 1 not answering (vault status's own exit codes).
vault_status_code() { local rc=0; vault status >/dev/null 2>&1 || rc=$?; echo "$rc"; }

wait_vault() { # wait_vault WANT...: poll until vault status's exit code is one of WANT
  local deadline=$((SECONDS + TIMEOUT)) rc
  while :; do
    rc="$(vault_status_code)"
    for want in "$@"; do [[ "$rc" == "$want" ]] && return 0; done
    ((SECONDS < deadline)) || die "Vault at $VAULT_ADDR: status $rc after ${TIMEOUT}s (docker compose logs vault)"
    sleep 0.5
  done
}

vault_init_unseal() {
  wait_vault 0 2
  mkdir -p "$VAULT_INIT_DIR" && chmod 700 "$VAULT_INIT_DIR"
  if [[ "$(vault status -format=json 2>/dev/null | jq -r .initialized)" != true ]]; then
    log "initialising Vault (1 key share; unseal key and root token stay in the vault-init volume)"
    local init="$VAULT_INIT_DIR/init.json.tmp"
    vault operator init -key-shares=1 -key-threshold=1 -format=json >"$init"
    jq -j '.unseal_keys_b64[0]' "$init" >"$UNSEAL_KEY_FILE"
    jq -j '.root_token' "$init" >"$ROOT_TOKEN_FILE"
    rm -f "$init"
  fi
  if [[ "$(vault_status_code)" == 2 ]]; then
    [[ -s "$UNSEAL_KEY_FILE" ]] || die "Vault is sealed and $UNSEAL_KEY_FILE is missing (was the vault-init volume removed?)"
    # sys/unseal through the generic write: the key is read from the file, never from argv.
    vault write sys/unseal key=@"$UNSEAL_KEY_FILE" >/dev/null
  fi
  wait_vault 0
  VAULT_TOKEN="$(<"$ROOT_TOKEN_FILE")"
  export VAULT_TOKEN
  log "Vault unsealed at $VAULT_ADDR"
}

# ---- the same configuration as scripts/bootstrap.sh ---------------------------------------------------------

write_policies() {
  local f
  for f in "$POLICY_DIR"/*.hcl; do
    vault policy write "$(basename "$f" .hcl)" "$f" >/dev/null
  done
  log "policies written from $POLICY_DIR"
}

mounted() { vault "$1" list -format=json | jq -e --arg p "$2/" 'has($p)' >/dev/null; }

enable_mounts() {
  mounted auth approle || vault auth enable approle >/dev/null
  mounted secrets database || vault secrets enable database >/dev/null
  mounted secrets transit || vault secrets enable transit >/dev/null
  mounted secrets secret || vault secrets enable -path=secret kv-v2 >/dev/null
  mounted audit file || vault audit enable file file_path="$AUDIT_FILE" >/dev/null
  log "mounts: approle, database, transit, kv-v2 secret/, audit file ($AUDIT_FILE in the vault container)"
}

# approle_role NAME POLICY CIDRS: short-lived tokens carrying only POLICY, usable only from CIDRS.
approle_role() {
  vault write "auth/approle/role/$1" \
    token_policies="$2" token_no_default_policy=true \
    token_ttl="$APPROLE_TOKEN_TTL" token_max_ttl="$APPROLE_TOKEN_MAX_TTL" \
    token_bound_cidrs="$3" secret_id_bound_cidrs="$3" \
    secret_id_ttl="$APPROLE_SECRET_ID_TTL" secret_id_num_uses=0 >/dev/null
}

# write_secret_file FILE: stdin to FILE atomically, no trailing newline, readable only by the services' uid.
write_secret_file() {
  local tmp="$1.tmp.$$"
  tr -d '\n' >"$tmp"
  [[ -s "$tmp" ]] || { rm -f "$tmp"; die "empty value for $1"; }
  chown "$SERVICE_UID:$SERVICE_UID" "$tmp" && chmod 400 "$tmp" && mv -f "$tmp" "$1"
}

secret_id_valid() {
  [[ -s "$2" ]] || return 1
  local accessor
  accessor="$(vault write -format=json "auth/approle/role/$1/secret-id/lookup" secret_id=@"$2" 2>/dev/null |
    jq -r '.data.secret_id_accessor // empty')" || return 1
  [[ -n "$accessor" ]]
}

approle_credentials() {
  local name="$1" secret_file="$CREDS_DIR/$1-secret-id"
  vault read -field=role_id "auth/approle/role/$name/role-id" | write_secret_file "$CREDS_DIR/$name-role-id"
  secret_id_valid "$name" "$secret_file" && return 0
  vault write -f -field=secret_id "auth/approle/role/$name/secret-id" | write_secret_file "$secret_file"
  log "new secret_id for AppRole $name"
}

approles() {
  # The directory belongs to the services' uid (they read it through a read-only mount); root still writes.
  install -d -o "$SERVICE_UID" -g "$SERVICE_UID" -m 0500 "$CREDS_DIR"
  approle_role order order "$APPROLE_BOUND_CIDRS"
  approle_role gateway gateway "$APPROLE_BOUND_CIDRS"
  approle_role order-migrate order-migrate "$MIGRATE_BOUND_CIDRS" # only this container migrates
  approle_credentials order
  approle_credentials gateway
  log "AppRoles order, gateway (bound to $APPROLE_BOUND_CIDRS) and order-migrate (bound to $MIGRATE_BOUND_CIDRS)"
}

database_connection() {
  local cfg=(
    plugin_name=mysql-database-plugin
    connection_url="{{username}}:{{password}}@tcp($DB_ADDR)/"
    username="$DB_ADMIN_USER"
    allowed_roles="order,order-migrate"
    root_rotation_statements="ALTER USER '{{username}}'@'$DB_ADMIN_HOST' IDENTIFIED BY '{{password}}';"
    max_open_connections=4
    max_connection_lifetime=5m
  )
  if vault read "database/config/$DB_CONNECTION" >/dev/null 2>&1; then
    # An update merges fields, so the rotated password Vault holds stays in place.
    vault write "database/config/$DB_CONNECTION" "${cfg[@]}" >/dev/null
  else
    [[ -s "$DB_ADMIN_PASSWORD_FILE" ]] || die "Vault has no database connection and $DB_ADMIN_PASSWORD_FILE is gone:" \
      "the MySQL volume was initialised but MySQL restarted before Vault took the admin over." \
      "Start over with: docker compose down -v"
    vault write "database/config/$DB_CONNECTION" "${cfg[@]}" password=- <"$DB_ADMIN_PASSWORD_FILE" >/dev/null
  fi
  # Still there: the first run, or a run that died before rotating. Rotate, then nobody knows the password.
  if [[ -e "$DB_ADMIN_PASSWORD_FILE" ]]; then
    vault write -f "database/rotate-root/$DB_CONNECTION" >/dev/null
    rm -f "$DB_ADMIN_PASSWORD_FILE"
    log "database connection $DB_CONNECTION: admin $DB_ADMIN_USER@$DB_ADMIN_HOST password rotated by Vault"
  fi
  log "database connection $DB_CONNECTION to $DB_ADDR ready"
}

database_roles() {
  vault write database/roles/order db_name="$DB_CONNECTION" \
    creation_statements=@"$SQL_DIR/order-creation.sql" revocation_statements=@"$SQL_DIR/revocation.sql" \
    default_ttl="$DB_CREDS_TTL" max_ttl="$DB_CREDS_MAX_TTL" >/dev/null
  vault write database/roles/order-migrate db_name="$DB_CONNECTION" \
    creation_statements=@"$SQL_DIR/order-migrate-creation.sql" revocation_statements=@"$SQL_DIR/revocation.sql" \
    default_ttl="$DB_MIGRATE_CREDS_TTL" max_ttl="$DB_MIGRATE_CREDS_MAX_TTL" >/dev/null
  log "database roles: order ($DB_CREDS_TTL/$DB_CREDS_MAX_TTL), order-migrate ($DB_MIGRATE_CREDS_TTL/$DB_MIGRATE_CREDS_MAX_TTL)"
}

transit_key() {
  vault read "transit/keys/$TRANSIT_KEY" >/dev/null 2>&1 ||
    vault write -f "transit/keys/$TRANSIT_KEY" type=aes256-gcm96 >/dev/null
  log "transit key $TRANSIT_KEY ready"
}

# ---- migrations, as scripts/stack.sh's run_migrations ---------------------------------------------------

run_migrations() (
  # A subshell: the order-migrate token replaces the root token only here.
  local creds="$MIGRATE_DIR/order-migrate.db" role="$MIGRATE_DIR/role-id" secret="$MIGRATE_DIR/secret-id" json lease rc=0
  mkdir -p "$MIGRATE_DIR"
  trap 'rm -f "$creds" "$role" "$secret"' EXIT
  # A single-use, 5-minute secret_id each run: nothing reusable is left behind.
  vault read -field=role_id auth/approle/role/order-migrate/role-id | tr -d '\n' >"$role"
  vault write -field=secret_id auth/approle/role/order-migrate/secret-id num_uses=1 ttl=5m | tr -d '\n' >"$secret"
  VAULT_TOKEN="$(jq -n --rawfile r "$role" --rawfile s "$secret" '{role_id: $r, secret_id: $s}' |
    vault write -field=token auth/approle/login -)"
  export VAULT_TOKEN
  trap 'rm -f "$creds" "$role" "$secret"; vault token revoke -self >/dev/null 2>&1 || true' EXIT
  json="$(vault read -format=json database/creds/order-migrate)"
  jq -j '.data.username + ":" + .data.password' <<<"$json" >"$creds"
  lease="$(jq -r .lease_id <<<"$json")"
  log "running migrations as a short-lived order-migrate user"
  ORDER_DB_ADDR="$DB_ADDR" ORDER_DB_NAME="$DB_NAME" ORDER_DB_CREDENTIALS_FILE="$creds" order migrate || rc=$?
  vault lease revoke "$lease" >/dev/null 2>&1 || log "warning: could not revoke the migration lease (it expires by itself)"
  ((rc == 0)) || die "order migrate failed (exit $rc)"
)

main() {
  vault_init_unseal
  write_policies
  enable_mounts
  approles
  database_connection
  database_roles
  transit_key
  run_migrations
  log "bootstrap done"
}

main "$@"
