#!/usr/bin/env bash
# staff-token.sh NAME: issue a staff bearer token for the gateway's staff API and portal.
# The token is printed once, on stdout; Vault keeps only its SHA-256 (secret/pizza/staff-tokens, field NAME),
# which the gateway reads. Issuing again for NAME replaces (and so revokes) the previous token;
# `vault kv patch -method=rw secret/pizza/staff-tokens NAME=` revokes without a new one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SCRIPTS_DIR/settings.sh"

name="${1:-}"
[[ "$name" =~ ^[a-z][a-z0-9_-]{0,31}$ ]] || die "usage: $0 NAME (lower-case letters, digits, - and _)"
VAULT="$("$SCRIPTS_DIR/tools.sh" ensure vault)"
[[ -s "$ROOT_TOKEN_FILE" ]] || die "no operator token at $ROOT_TOKEN_FILE: is the stack running (make run)?"
VAULT_TOKEN="$(<"$ROOT_TOKEN_FILE")"
export VAULT_TOKEN

token="$(new_secret)"
hash="$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)"
# The hash goes in on stdin (NAME=-); patch keeps the other staff members' entries.
verb=put
"$VAULT" kv get secret/pizza/staff-tokens >/dev/null 2>&1 && verb=patch
printf '%s' "$hash" | "$VAULT" kv "$verb" secret/pizza/staff-tokens "$name=-" >/dev/null
log "staff token for $name issued (on stdout, shown once); Vault keeps only its hash (secret/pizza/staff-tokens)"
printf '%s\n' "$token"
