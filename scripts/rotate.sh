#!/usr/bin/env bash
# rotate.sh WHAT: one operator rotation on the running local stack, while orders keep flowing.
#
#   db-creds      revoke every MySQL credential Vault gave the order service (it fetches new ones)
#   db-root       rotate the password of the MySQL admin Vault uses (nobody ever learns it)
#   secret-id     deliver a new AppRole secret_id to order by file and destroy the old one
#   transit-key   rotate the PII transit key, then rewrap stored data keys to the new version
#   rewrap-pii    rewrap stored PII data keys to the newest transit key version (safe to run any time)
#   gateway-cert  issue a new gateway certificate (the gateway reloads it, no restart)
#   connect-ca    rotate the Consul Connect CA root (sidecars get new leaves, cross-signed meanwhile)
#
# Uses the operator token from the state folder; secrets travel on stdin or in 0600 files, never on argv.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SCRIPTS_DIR/settings.sh"
umask 077

VAULT="$("$SCRIPTS_DIR/tools.sh" ensure vault)"
JQ="$("$SCRIPTS_DIR/tools.sh" ensure jq)"
vault() { "$VAULT" "$@"; }

operator_token() {
  [[ -s "$ROOT_TOKEN_FILE" ]] || die "no operator token at $ROOT_TOKEN_FILE: is the stack running (make run)?"
  VAULT_TOKEN="$(<"$ROOT_TOKEN_FILE")"
  export VAULT_TOKEN
}

rotate_db_creds() {
  vault lease revoke -prefix database/creds/order >/dev/null
  log "revoked every database/creds/order lease; MySQL users dropped, order fetches new ones on its next connection"
}

rotate_db_root() {
  vault write -f database/rotate-root/pizza >/dev/null
  log "rotated the password of Vault's MySQL admin (connection pizza)"
}

rotate_secret_id() {
  local file="$CREDS_DIR/order-secret-id" accessor=""
  if [[ -s "$file" ]]; then
    accessor="$("$JQ" -n --rawfile s "$file" '{secret_id: ($s | rtrimstr("\n"))}' |
      vault write -format=json auth/approle/role/order/secret-id/lookup - | "$JQ" -r '.data.secret_id_accessor // empty')" || true
  fi
  vault write -f -field=secret_id auth/approle/role/order/secret-id >"$file.new"
  mv "$file.new" "$file" # atomic: the service never reads half a file
  log "new secret_id for order in $file (read at its next login)"
  if [[ -n "$accessor" ]]; then
    vault write auth/approle/role/order/secret-id-accessor/destroy secret_id_accessor="$accessor" >/dev/null
    log "destroyed the previous secret_id (accessor $accessor)"
  fi
}

rotate_transit_key() {
  vault write -f transit/keys/orders-pii/rotate >/dev/null
  log "transit key orders-pii rotated to version $(vault read -field=latest_version transit/keys/orders-pii)"
  rewrap_pii
  log "order seals new orders with a data key of the new version once its current one ends (ORDER_PII_KEY_LIFETIME);" \
    "run 'scripts/rotate.sh rewrap-pii' after that to rewrap the last ones"
}

rewrap_pii() {
  [[ -x "$BIN_DIR/order" ]] || die "no order binary in $BIN_DIR"
  ORDER_DB_ADDR="127.0.0.1:$MYSQL_PORT" ORDER_VAULT_ADDR="$VAULT_ADDR" \
    ORDER_VAULT_ROLE_ID_FILE="$CREDS_DIR/order-role-id" ORDER_VAULT_SECRET_ID_FILE="$CREDS_DIR/order-secret-id" \
    "$BIN_DIR/order" rewrap-pii >>"$LOG_DIR/order-rewrap.log" 2>&1 ||
    { tail -n 5 "$LOG_DIR/order-rewrap.log" >&2; die "rewrap failed (see $LOG_DIR/order-rewrap.log)"; }
  log "stored PII data keys rewrapped ($(grep -F 'data keys rewrapped' "$LOG_DIR/order-rewrap.log" | tail -n 1 | "$JQ" -r '.changed') changed)"
}

rotate_gateway_cert() {
  [[ -x "$BIN_DIR/devcerts" ]] || die "no devcerts binary in $BIN_DIR"
  "$BIN_DIR/devcerts" -out "$CERTS_DIR" -renew >>"$LOG_DIR/devcerts.log" 2>&1 || die "devcerts failed (see $LOG_DIR/devcerts.log)"
  log "new gateway certificate in $CERTS_DIR (same CA); the gateway picks it up within a second"
}

rotate_connect_ca() {
  local consul curl cfg
  consul="$("$SCRIPTS_DIR/tools.sh" ensure consul)"
  curl="$("$SCRIPTS_DIR/tools.sh" ensure curl)"
  cfg="$(mktemp)"
  trap 'rm -f "$cfg"' RETURN
  # A new root key starts Consul's rotation: new root, cross-signed by the old one until every sidecar has
  # the new leaves. Flipping the key size makes the built-in CA generate the new key itself.
  "$curl" -fsS "$CONSUL_HTTP_ADDR/v1/connect/ca/configuration" |
    "$JQ" '.Config.PrivateKeyType = "ec" | .Config.PrivateKeyBits = (if .Config.PrivateKeyBits == 384 then 256 else 384 end)
           | {Provider, Config, ForceWithoutCrossSigning: false}' >"$cfg"
  "$consul" connect ca set-config -config-file "$cfg" >/dev/null
  log "Connect CA root rotated; active root: $("$curl" -fsS "$CONSUL_HTTP_ADDR/v1/connect/ca/roots" | "$JQ" -r '.ActiveRootID')"
}

operator_token
case "${1:-}" in
  db-creds) rotate_db_creds ;;
  db-root) rotate_db_root ;;
  secret-id) rotate_secret_id ;;
  transit-key) rotate_transit_key ;;
  rewrap-pii) rewrap_pii ;;
  gateway-cert) rotate_gateway_cert ;;
  connect-ca) rotate_connect_ca ;;
  *) die "usage: $0 db-creds|db-root|secret-id|transit-key|rewrap-pii|gateway-cert|connect-ca" ;;
esac
