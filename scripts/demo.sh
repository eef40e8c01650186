#!/usr/bin/env bash
# demo.sh: a simulated kitchen on the running stack (make run): customers order, the kitchen moves orders
# along. Open https://localhost:8443/staff/ (sign in with a token from `make staff-token NAME=you`) to watch.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SCRIPTS_DIR/settings.sh"

[[ -s "$OPERATOR_TOKEN_FILE" ]] || die "the stack is not running: make run first"
# The kitchen's own staff token, in the environment only (never on a command line).
KITCHEN_STAFF_TOKEN="$("$SCRIPTS_DIR/stack.sh" meshctl token staff kitchen-demo)"
export KITCHEN_STAFF_TOKEN
cd "$ROOT_DIR"
go run ./cmd/kitchen -gateway "https://localhost:$GATEWAY_PORT" -ca "$CERTS_DIR/ca.pem" -for "${DEMO_FOR:-2m}"
