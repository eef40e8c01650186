#!/usr/bin/env bash
# bootstrap.sh: configures a running, unsealed Vault and the private MariaDB for Pizza Joint mesh.
# Idempotent: every step checks or overwrites, so it runs on every `stack.sh start`.
#
#   policies   vault/policies/*.hcl            (order, order-migrate, gateway)
#   auth       approle: roles order, order-migrate, gateway; role_id/secret_id into 0600 files
#   database   mysql-database-plugin, connection "pizza" with its own admin user whose password only Vault knows
#              roles order (SELECT/INSERT/UPDATE) and order-migrate (DDL), DROP USER IF EXISTS on revoke
#   transit    key orders-pii for customer phone/address
#   kv-v2      secret/pizza/staff-tokens: SHA-256 hashes of staff bearer tokens, read by the gateway
#   audit      file device into the logs folder (secrets are HMAC'd there)
#
# Secrets never go on a command line: they are piped on stdin or read by Vault from 0600 files.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
umask 077

STATE_DIR="$(mkdir -p "${STATE_DIR:-$ROOT_DIR/.state}" && cd "${STATE_DIR:-$ROOT_DIR/.state}" && pwd)"
MYSQL_PORT="${MYSQL_PORT:-13306}"
VAULT_PORT="${VAULT_PORT:-8200}"
export VAULT_ADDR="${VAULT_ADDR:-http://127.0.0.1:$VAULT_PORT}"
VAULT_TOKEN_FILE="${VAULT_TOKEN_FILE:-$STATE_DIR/vault/root-token}"
CREDS_DIR="${CREDS_DIR:-$STATE_DIR/credentials}"
MARIADB_DIR="${MARIADB_DIR:-$STATE_DIR/mariadb}"
LOG_DIR="${LOG_DIR:-$STATE_DIR/logs}"

DB_NAME="${DB_NAME:-pizza}"                          # the schema; vault/database/*.sql grant on pizza.*
DB_CONNECTION="${DB_CONNECTION:-pizza}"              # Vault's database/config/<name>
DB_ADMIN_USER="${DB_ADMIN_USER:-vault_admin}"
DB_ADMIN_HOST="${DB_ADMIN_HOST:-127.0.0.1}"          # Vault reaches MariaDB over loopback only
DB_CREDS_TTL="${DB_CREDS_TTL:-1h}"                   # order's MySQL user lease
DB_CREDS_MAX_TTL="${DB_CREDS_MAX_TTL:-24h}"
DB_MIGRATE_CREDS_TTL="${DB_MIGRATE_CREDS_TTL:-5m}"   # DDL user: minutes, revoked right after migrating
DB_MIGRATE_CREDS_MAX_TTL="${DB_MIGRATE_CREDS_MAX_TTL:-15m}"
APPROLE_TOKEN_TTL="${APPROLE_TOKEN_TTL:-20m}"
APPROLE_TOKEN_MAX_TTL="${APPROLE_TOKEN_MAX_TTL:-24h}"
APPROLE_SECRET_ID_TTL="${APPROLE_SECRET_ID_TTL:-720h}"
APPROLE_BOUND_CIDRS="${APPROLE_BOUND_CIDRS:-127.0.0.1/32}" # login and token use only from this machine
TRANSIT_KEY="${TRANSIT_KEY:-orders-pii}"

VAULT="$("$SCRIPTS_DIR/tools.sh" ensure vault)"
JQ="$("$SCRIPTS_DIR/tools.sh" ensure jq)"

vault() { "$VAULT" "$@"; }
root_sql() { "$SCRIPTS_DIR/mariadb.sh" sql "$MARIADB_DIR" "$@"; }

load_token() {
  [[ -s "$VAULT_TOKEN_FILE" ]] || die "no Vault token file at $VAULT_TOKEN_FILE (is Vault initialised by stack.sh?)"
  # The token travels in the environment (not visible in ps), read from a 0600 file.
  VAULT_TOKEN="$(<"$VAULT_TOKEN_FILE")"
  export VAULT_TOKEN
  vault token lookup >/dev/null 2>&1 || die "the token in $VAULT_TOKEN_FILE is not valid at $VAULT_ADDR"
}

write_policies() {
  local f names=()
  for f in "$ROOT_DIR"/vault/policies/*.hcl; do
    names+=("$(basename "$f" .hcl)")
    vault policy write "${names[-1]}" "$f" >/dev/null
  done
  log "policies written: ${names[*]}"
}

# mounted KIND PATH: true when an auth method / secrets engine / audit device is mounted at PATH.
mounted() { vault "$1" list -format=json | "$JQ" -e --arg p "$2/" 'has($p)' >/dev/null; }

enable_mounts() {
  mounted auth approle || vault auth enable approle >/dev/null
  mounted secrets database || vault secrets enable database >/dev/null
  mounted secrets transit || vault secrets enable transit >/dev/null
  # Staff bearer-token hashes for the gateway (scripts/staff-token.sh writes them).
  mounted secrets secret || vault secrets enable -path=secret kv-v2 >/dev/null
  if ! mounted audit file; then
    mkdir -p "$LOG_DIR"
    vault audit enable file file_path="$LOG_DIR/vault-audit.log" >/dev/null
  fi
  log "mounts: approle, database, transit, kv-v2 secret/, audit file ($LOG_DIR/vault-audit.log)"
}

# approle_role NAME POLICY: a role whose tokens carry only POLICY, are short-lived and bound to loopback.
approle_role() {
  vault write "auth/approle/role/$1" \
    token_policies="$2" token_no_default_policy=true \
    token_ttl="$APPROLE_TOKEN_TTL" token_max_ttl="$APPROLE_TOKEN_MAX_TTL" \
    token_bound_cidrs="$APPROLE_BOUND_CIDRS" secret_id_bound_cidrs="$APPROLE_BOUND_CIDRS" \
    secret_id_ttl="$APPROLE_SECRET_ID_TTL" secret_id_num_uses=0 >/dev/null
}

# write_secret_file FILE: stdin to FILE (0600) atomically, without a trailing newline.
write_secret_file() {
  local tmp="$1.tmp.$$"
  tr -d '\n' >"$tmp"
  [[ -s "$tmp" ]] || { rm -f "$tmp"; die "empty value for $1"; }
  chmod 600 "$tmp" && mv -f "$tmp" "$1"
}

# secret_id_valid NAME FILE: Vault still knows the secret_id in FILE (lookup reads it from the file, not argv).
# An unknown or expired secret_id gets an empty 204 answer and exit 0, so the accessor itself is checked.
secret_id_valid() {
  [[ -s "$2" ]] || return 1
  local accessor
  accessor="$(vault write -format=json "auth/approle/role/$1/secret-id/lookup" secret_id=@"$2" 2>/dev/null |
    "$JQ" -r '.data.secret_id_accessor // empty')" || return 1
  [[ -n "$accessor" ]]
}

# approle_credentials NAME: role_id and a valid secret_id for NAME in CREDS_DIR (0600, never printed).
approle_credentials() {
  local name="$1" role_file="$CREDS_DIR/$1-role-id" secret_file="$CREDS_DIR/$1-secret-id"
  vault read -field=role_id "auth/approle/role/$name/role-id" | write_secret_file "$role_file"
  if secret_id_valid "$name" "$secret_file"; then
    return 0
  fi
  vault write -f -field=secret_id "auth/approle/role/$name/secret-id" | write_secret_file "$secret_file"
  log "new secret_id for AppRole $name in $secret_file"
}

approles() {
  mkdir -p "$CREDS_DIR" && chmod 700 "$CREDS_DIR"
  approle_role order order
  approle_role order-migrate order-migrate
  approle_role gateway gateway
  approle_credentials order
  approle_credentials order-migrate
  approle_credentials gateway
  log "AppRoles order, order-migrate, gateway (token ttl $APPROLE_TOKEN_TTL, max $APPROLE_TOKEN_MAX_TTL); ids in $CREDS_DIR"
}

# admin_grants: the least the admin needs to create, grant to and drop the roles' users on DB_NAME only.
admin_grants() {
  cat <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
GRANT CREATE USER ON *.* TO '$DB_ADMIN_USER'@'$DB_ADMIN_HOST';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP, REFERENCES
  ON \`$DB_NAME\`.* TO '$DB_ADMIN_USER'@'$DB_ADMIN_HOST' WITH GRANT OPTION;
SQL
}

db_admin_exists() {
  [[ "$(root_sql -N -e "SELECT COUNT(*) FROM mysql.user WHERE User = '$DB_ADMIN_USER' AND Host = '$DB_ADMIN_HOST'")" == 1 ]]
}

# database_connection: Vault's connection to MariaDB. A new admin password is set, handed to Vault on stdin and
# rotated by Vault at once, so no person and no file ever holds the working one.
database_connection() {
  local cfg=(
    plugin_name=mysql-database-plugin
    connection_url="{{username}}:{{password}}@tcp(127.0.0.1:$MYSQL_PORT)/"
    username="$DB_ADMIN_USER"
    allowed_roles="order,order-migrate"
    root_rotation_statements="ALTER USER '{{username}}'@'$DB_ADMIN_HOST' IDENTIFIED BY '{{password}}';"
    max_open_connections=4
    max_connection_lifetime=5m
  )
  if db_admin_exists && vault read "database/config/$DB_CONNECTION" >/dev/null 2>&1; then
    root_sql <<<"$(admin_grants)"
    # An update merges fields, so the rotated password Vault holds stays in place.
    vault write "database/config/$DB_CONNECTION" "${cfg[@]}" >/dev/null
    log "database connection $DB_CONNECTION up to date (admin password untouched)"
    return 0
  fi
  local password
  password="$(new_secret)"
  root_sql <<SQL
CREATE USER IF NOT EXISTS '$DB_ADMIN_USER'@'$DB_ADMIN_HOST' IDENTIFIED BY '$password';
ALTER USER '$DB_ADMIN_USER'@'$DB_ADMIN_HOST' IDENTIFIED BY '$password';
$(admin_grants)
SQL
  printf '%s' "$password" | vault write "database/config/$DB_CONNECTION" "${cfg[@]}" password=- >/dev/null
  unset password
  vault write -f "database/rotate-root/$DB_CONNECTION" >/dev/null
  log "database connection $DB_CONNECTION configured; admin $DB_ADMIN_USER@$DB_ADMIN_HOST password rotated by Vault"
}

database_roles() {
  vault write database/roles/order db_name="$DB_CONNECTION" \
    creation_statements=@"$ROOT_DIR/vault/database/order-creation.sql" \
    revocation_statements=@"$ROOT_DIR/vault/database/revocation.sql" \
    default_ttl="$DB_CREDS_TTL" max_ttl="$DB_CREDS_MAX_TTL" >/dev/null
  vault write database/roles/order-migrate db_name="$DB_CONNECTION" \
    creation_statements=@"$ROOT_DIR/vault/database/order-migrate-creation.sql" \
    revocation_statements=@"$ROOT_DIR/vault/database/revocation.sql" \
    default_ttl="$DB_MIGRATE_CREDS_TTL" max_ttl="$DB_MIGRATE_CREDS_MAX_TTL" >/dev/null
  log "database roles: order ($DB_CREDS_TTL/$DB_CREDS_MAX_TTL), order-migrate ($DB_MIGRATE_CREDS_TTL/$DB_MIGRATE_CREDS_MAX_TTL)"
}

transit_key() {
  # Created once; rotation (`vault write -f transit/keys/orders-pii/rotate`) is an operator action, not bootstrap's.
  vault read "transit/keys/$TRANSIT_KEY" >/dev/null 2>&1 ||
    vault write -f "transit/keys/$TRANSIT_KEY" type=aes256-gcm96 >/dev/null
  log "transit key $TRANSIT_KEY ready"
}

main() {
  load_token
  write_policies
  enable_mounts
  approles
  database_connection
  database_roles
  transit_key
  log "bootstrap done"
}

main "$@"
