#!/usr/bin/env bash
# rotate.sh WHAT [INSTANCE]: one operator rotation on the running local stack, while orders keep flowing.
#
#   db-creds      revoke every MySQL credential Vault gave the order service (it fetches new ones)
#   db-root       rotate the password of the MySQL admin Vault uses (nobody ever learns it)
#   secret-id     deliver a new wrapped AppRole secret_id to every order replica and destroy the old ones
#   logins        revoke every AppRole login token: each service logs in again with the secret_id it holds
#   transit-key   rotate the PII transit key, then rewrap stored data keys
#   rewrap-pii    rewrap stored PII data keys to the newest transit key version (safe to run any time)
#   gateway-cert  issue a new gateway certificate (the gateway reloads it, no restart)
#   connect-ca    move the Connect CA to a new root in Vault's PKI (cross-signed by the old one)
#   consul-token  a new Consul token for INSTANCE (default order-1): the service picks it up, its sidecar restarts
#                 with it, then the old token is deleted
#   nats-creds    a new NATS key for every order replica (or INSTANCE): both keys admitted while the replica moves
#                 to a connection with the new one, then the previous key is dropped
#
# Vault and Consul are changed by meshctl with the operator token; this script only adds the process steps. Files
# in a service's folder are written by meshctl alone, each owned by the folder's owner, never through a link.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SCRIPTS_DIR/settings.sh"
umask 077

[[ -s "$OPERATOR_TOKEN_FILE" ]] || die "no operator token at $OPERATOR_TOKEN_FILE: is the stack running (make run)?"
stack() { "$SCRIPTS_DIR/stack.sh" "$@"; }
meshctl() { stack meshctl "$@" || { tail -n 5 "$LOG_DIR/meshctl.log" >&2; die "meshctl $* failed (see $LOG_DIR/meshctl.log)"; }; }

# order_instances: the IDs of the running order replicas (from their credentials folders).
order_instances() {
  local d
  for d in "$CREDS_DIR/${ORDER_SERVICE_ID%-*}"-[0-9]*; do [[ -d "$d" ]] && basename "$d"; done
}

# as_instance SERVICE ID: MESHCTL_INSTANCE_* for meshctl's per-instance commands.
as_instance() {
  export MESHCTL_INSTANCE_SERVICE="$1" MESHCTL_INSTANCE_ID="$2" MESHCTL_INSTANCE_DIR="$CREDS_DIR/$2"
}

rotate_secret_id() {
  local id
  for id in $(order_instances); do
    (as_instance order "$id" && meshctl rotate secret-id)
    log "new wrapped secret_id delivered to $id; the previous one is destroyed"
  done
}

rewrap_pii() {
  local dir="$CREDS_DIR/order-rewrap" rc=0
  [[ -x "$BIN_DIR/order" ]] || die "no order binary in $BIN_DIR"
  # A one-shot instance with credentials of its own: the replicas' secret_ids are theirs alone.
  (as_instance order order-rewrap && export MESHCTL_INSTANCE_CONSUL=false MESHCTL_INSTANCE_OWNER="$(owner_of "$ORDER_USER")" && meshctl deliver)
  (
    export ORDER_DB_ADDR="127.0.0.1:$MYSQL_PORT" ORDER_VAULT_ADDR="$VAULT_ADDR" ORDER_VAULT_CA_CERT="$VAULT_CACERT" \
      ORDER_VAULT_ROLE=order ORDER_VAULT_ROLE_ID_FILE="$dir/role-id" ORDER_VAULT_SECRET_ID_FILE="$dir/secret-id"
    if ((SERVICE_USERS)); then
      setpriv --reuid="$ORDER_USER" --regid="$ORDER_USER" --clear-groups -- "$BIN_DIR/order" rewrap-pii
    else
      "$BIN_DIR/order" rewrap-pii
    fi
  ) >>"$LOG_DIR/order-rewrap.log" 2>&1 || rc=$?
  ((rc == 0)) || { tail -n 5 "$LOG_DIR/order-rewrap.log" >&2; die "rewrap failed (see $LOG_DIR/order-rewrap.log)"; }
  log "stored PII data keys rewrapped ($(grep -F 'data keys rewrapped' "$LOG_DIR/order-rewrap.log" | tail -n 1 | sed -nE 's/.*"changed":([0-9]+).*/\1/p') changed)"
}

rotate_gateway_cert() {
  [[ -x "$BIN_DIR/devcerts" ]] || die "no devcerts binary in $BIN_DIR"
  "$BIN_DIR/devcerts" -out "$CERTS_DIR" -renew >>"$LOG_DIR/devcerts.log" 2>&1 || die "devcerts failed (see $LOG_DIR/devcerts.log)"
  stack deliver-gateway-cert
  log "new gateway certificate delivered (same CA); the gateway picks it up within a second"
}

rotate_consul_token() {
  local id="${1:-$ORDER_SERVICE_ID}" service=order
  [[ "$id" == gateway* ]] && service=gateway
  [[ -d "$CREDS_DIR/$id" ]] || die "no instance $id (no folder $CREDS_DIR/$id)"
  as_instance "$service" "$id"
  meshctl rotate consul-token
  # The service reads its token file before every registration check and registers again with the new token;
  # the built-in proxy reads its token once, so the sidecar restarts (the gateway retries meanwhile).
  stack restart-sidecar "$id"
  # Deletes the old token once the agent holds the instance under the new one (it waits for that).
  meshctl rotate consul-token-retire
  log "consul token of $id rotated; the previous one is deleted"
}

# reload_nats OUT: the NATS server rereads its authorization when meshctl said it changed ("reload").
reload_nats() { if [[ "$1" == reload ]]; then stack reload-nats; fi; }

rotate_nats_creds() {
  local id out ids
  ids="${1:-$(order_instances)}"
  for id in $ids; do
    [[ -d "$CREDS_DIR/$id" ]] || die "no instance $id (no folder $CREDS_DIR/$id)"
    # The seed belongs to the instance's account, like the one its first delivery wrote.
    out="$(as_instance order "$id" && export MESHCTL_INSTANCE_OWNER="$(owner_of "$ORDER_USER")" && meshctl nats-key rotate)"
    reload_nats "$out"
    log "new NATS key delivered to $id; its previous key stays admitted while it moves to a connection with the new one"
    # Waits (MESHCTL_NATS_RETIRE_WAIT, 30 s) until no connection uses the previous key; meshctl.log says if it ran out.
    out="$(as_instance order "$id" && meshctl nats-key retire)"
    reload_nats "$out"
    log "NATS key of $id rotated; the previous one is no longer admitted"
  done
}

case "${1:-}" in
  db-creds | db-root | connect-ca | logins) meshctl rotate "$1" ;;
  secret-id) rotate_secret_id ;;
  transit-key) meshctl rotate transit-key && rewrap_pii ;;
  rewrap-pii) rewrap_pii ;;
  gateway-cert) rotate_gateway_cert ;;
  consul-token) rotate_consul_token "${2:-}" ;;
  nats-creds) rotate_nats_creds "${2:-}" ;;
  *) die "usage: $0 db-creds|db-root|secret-id|logins|transit-key|rewrap-pii|gateway-cert|connect-ca|consul-token|nats-creds [INSTANCE]" ;;
esac
