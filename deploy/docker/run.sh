#!/usr/bin/env bash
# run.sh up|down|token KIND|meshctl ARGS...: the Compose stack (make run-docker, make stop-docker).
#   up     start it (images from make dockerize), wait until POST /pizza works end to end, say where it is
#   down   stop it; the volumes (orders, Vault's and Consul's data) are kept
#   meshctl ARGS  the provisioning program against the stack, with the bootstrap container's settings and volume
#                 (e.g. `token consul-ui`, `rotate db-creds`); tokens go to stdout only
#   rotate-nats-creds  a new NATS key for order-1 under load; the previous one dropped once nothing uses it
#   status  the clusters: Consul's and Vault's raft peers (leader, active node, health) and the event stream's
#   traces-cert  the operators' client certificate for the trace UI, into certs/ beside the CA (key owner-only)
# Settings (env): PIZZA_PROJECT (Compose project, default pizzajoint), PIZZA_TAG (image tag, dev),
# PIZZA_GATEWAY_PORT (8443), PIZZA_CONSUL_UI_PORT (8501, on 127.0.0.1), PIZZA_JAEGER_UI_PORT (16686, on 127.0.0.1),
# PIZZA_MARIADB_IMAGE (default: the
# official mariadb:11.4, or one built from Debian's packages where it cannot be pulled), PIZZA_CA_FILE (where
# the stack's CA certificate is copied, certs/docker-ca.pem), RUN_DOCKER_TIMEOUT (seconds, 300).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

DOCKER="${DOCKER:-docker}"
export PIZZA_TAG="${PIZZA_TAG:-dev}" PIZZA_PROJECT="${PIZZA_PROJECT:-pizzajoint}"
GATEWAY_PORT="${PIZZA_GATEWAY_PORT:-8443}"
UI_PORT="${PIZZA_CONSUL_UI_PORT:-8501}"
TRACES_PORT="${PIZZA_JAEGER_UI_PORT:-16686}"
CA_FILE="${PIZZA_CA_FILE:-$ROOT_DIR/certs/docker-ca.pem}"
TIMEOUT="${RUN_DOCKER_TIMEOUT:-300}"
OFFICIAL_MARIADB=mariadb:11.4

compose() { "$DOCKER" compose --project-directory "$ROOT_DIR" -f "$ROOT_DIR/docker-compose.yml" "$@"; }

engine_check() {
  "$DOCKER" info >/dev/null 2>&1 || die "no Docker engine reachable ('$DOCKER info' failed): start Docker, or point DOCKER_HOST at one"
  "$SCRIPTS_DIR/tools.sh" ensure compose >/dev/null
}

# choose_mariadb: the official image when it is here or can be pulled, else one built from Debian's packages.
choose_mariadb() {
  [[ -n "${PIZZA_MARIADB_IMAGE:-}" ]] && return 0
  if "$DOCKER" image inspect "$OFFICIAL_MARIADB" >/dev/null 2>&1 || "$DOCKER" pull -q "$OFFICIAL_MARIADB" >/dev/null 2>&1; then
    export PIZZA_MARIADB_IMAGE="$OFFICIAL_MARIADB"
  else
    log "$OFFICIAL_MARIADB cannot be pulled here (no registry?): using MariaDB built from Debian's packages"
    PIZZA_MARIADB_IMAGE="$("$ROOT_DIR/deploy/docker/mariadb-image.sh")"
    export PIZZA_MARIADB_IMAGE
  fi
}

# order_works: POST /pizza through the gateway, both sidecars (mTLS) and order, answered 201. The same
# Idempotency-Key every time, so checks after the first replay one order instead of adding more.
order_works() {
  local code
  code="$(curl -sS --cacert "$CA_FILE" -o /dev/null -w '%{http_code}' -X POST "https://localhost:$GATEWAY_PORT/pizza" \
    -H 'Content-Type: application/json' -H 'Idempotency-Key: run-docker-check' \
    -d '{"customer":{"name":"Stack check","phone":"+44 20 7946 0000","address":"make run-docker"},"items":[{"pizza":"margherita","size":"S","quantity":1}]}' 2>/dev/null)" || return 1
  [[ "$code" == 201 ]]
}

cmd_up() {
  engine_check
  choose_mariadb
  log "starting Compose project $PIZZA_PROJECT (MariaDB image: $PIZZA_MARIADB_IMAGE)"
  compose up -d --wait --wait-timeout "$TIMEOUT" ||
    { compose ps -a >&2; die "the stack did not become healthy within ${TIMEOUT}s (docker compose logs SERVICE says why)"; }
  mkdir -p "$(dirname "$CA_FILE")"
  compose cp gateway:/pizza/trust/ca.pem "$CA_FILE" >/dev/null 2>&1 || die "could not copy the stack's CA certificate"
  "$SCRIPTS_DIR/tools.sh" ensure curl >/dev/null
  wait_for "POST /pizza end to end (gateway → mesh → order → MariaDB)" "$TIMEOUT" "" order_works
  local rel="${CA_FILE#"$PWD"/}"
  cat <<MSG

Pizza Joint mesh is running in Docker Compose (project $PIZZA_PROJECT).
  Customers:  https://localhost:$GATEWAY_PORT   (curl --cacert $rel https://localhost:$GATEWAY_PORT/menu)
  Consul UI:  https://localhost:$UI_PORT/ui   (127.0.0.1 only; log in with the token from: make docker-consul-ui-token)
  Traces:     https://localhost:$TRACES_PORT   (Jaeger; 127.0.0.1 only, with the client certificate from: make docker-traces-cert)
  Clusters:   make status-docker   (Consul's and Vault's raft peers, the NATS stream)
  Logs:       docker compose -p $PIZZA_PROJECT logs -f [service]
  Stop:       make stop-docker (data kept)    Wipe:  docker compose -p $PIZZA_PROJECT down -v
  Runbook:    deploy/docker/run.sh meshctl rotate db-creds|db-root|transit-key|connect-ca|logins
              deploy/docker/run.sh rotate-nats-creds
MSG
}

cmd_down() {
  engine_check
  compose down --timeout 30
}

# cmd_meshctl ARGS: meshctl in a throw-away bootstrap container (its settings, its volume), nothing else started.
cmd_meshctl() {
  engine_check
  # Without a running stack, `run` would create the project's volumes and network empty.
  [[ -n "$(compose ps -q vault-1 vault-2 vault-3 2>/dev/null)" ]] || die "Compose project $PIZZA_PROJECT is not running (make run-docker)"
  compose run --rm --no-deps -T bootstrap "$@"
}

# cmd_traces_cert: the operators' client certificate for the trace UI (Jaeger asks for one: it has no login of its
# own), copied out of the one-shot container that issued it, next to the stack's CA, readable by the caller alone.
cmd_traces_cert() {
  engine_check
  local id dir stem
  id="$(compose ps -a -q certs-traces-operator 2>/dev/null)"
  [[ -n "$id" ]] || die "Compose project $PIZZA_PROJECT is not running (make run-docker)"
  dir="$(dirname "$CA_FILE")" stem="$(dirname "$CA_FILE")/docker-traces-operator"
  mkdir -p "$dir"
  (
    umask 077
    "$DOCKER" cp "$id:/operator/operator.pem" "$stem.pem" >/dev/null &&
      "$DOCKER" cp "$id:/operator/operator-key.pem" "$stem-key.pem" >/dev/null
  ) || die "could not copy the trace UI's client certificate"
  chmod 600 "$stem.pem" "$stem-key.pem"
  local rel="${stem#"$PWD"/}" ca="${CA_FILE#"$PWD"/}"
  cat <<MSG
The trace UI's client certificate: $rel.pem, its key: $rel-key.pem (yours alone; keep them so).
  API:      curl --cacert $ca --cert $rel.pem --key $rel-key.pem https://localhost:$TRACES_PORT/api/services
  Browser:  openssl pkcs12 -export -in $rel.pem -inkey $rel-key.pem -out $rel.p12, then import the .p12
MSG
}

# cmd_status: who leads each cluster and who is healthy.
cmd_status() {
  cmd_meshctl cluster status
  echo
  compose run --rm --no-deps -T nats-stream nats-stream status
}

# reload_nats: the three NATS servers reread their authorization (SIGHUP; Compose reports a signal as "Killed").
reload_nats() {
  compose kill -s HUP nats-1 nats-2 nats-3 >/dev/null 2>&1 || die "could not signal the NATS servers to reload"
}

# cmd_rotate_nats_creds: order-1's NATS key rotated while orders flow, as `make rotate-nats-creds` does on the
# local stack: a new key beside the previous one, the three servers reload, order moves to a connection with the
# new key and drains the old one; once none of the three servers has a connection on the previous key (each is
# asked on its own pod's loopback: a server sees only its own connections), the key is dropped and they reload.
cmd_rotate_nats_creds() {
  engine_check
  [[ -n "$(compose ps -q nats-1 2>/dev/null)" ]] || die "Compose project $PIZZA_PROJECT is not running (make run-docker)"
  local n pod inst=(-e MESHCTL_INSTANCE_SERVICE=order -e MESHCTL_INSTANCE_ID=order-1 -e MESHCTL_INSTANCE_DIR=/pods/order-1
    -e MESHCTL_INSTANCE_OWNER=10001:10001)
  compose run --rm --no-deps -T "${inst[@]}" bootstrap nats-key rotate >/dev/null
  reload_nats
  log "new NATS key delivered to order-1; its previous key stays admitted while it moves to a connection with the new one"
  for n in 1 2 3; do
    pod="$(compose ps -q "nats-$n-pod")"
    [[ -n "$pod" ]] || die "nats-$n-pod is not running"
    # Root reads the registry (its files are root's, 0600) with no capability, on a read-only mount.
    "$DOCKER" run --rm --network "container:$pod" --user 0:0 --cap-drop ALL --read-only \
      -v "${PIZZA_PROJECT}_nats-users:/nats-users:ro" "${inst[@]}" -e MESHCTL_NATS_USERS_DIR=/nats-users \
      -e MESHCTL_NATS_MONITOR=http://127.0.0.1:8222 "pizzajoint/meshctl:$PIZZA_TAG" nats-key unused ||
      die "could not ask nats-$n for connections on the previous key (it stays admitted; run this again)"
  done
  compose run --rm --no-deps -T "${inst[@]}" -e MESHCTL_NATS_MONITOR= bootstrap nats-key retire >/dev/null
  reload_nats
  log "NATS key of order-1 rotated; the previous one is no longer admitted"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  meshctl) shift; cmd_meshctl "$@" ;;
  rotate-nats-creds) cmd_rotate_nats_creds ;;
  status) cmd_status ;;
  traces-cert) cmd_traces_cert ;;
  *) die "usage: $0 up|down|status|traces-cert|meshctl ARGS...|rotate-nats-creds" ;;
esac
