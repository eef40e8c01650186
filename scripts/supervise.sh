#!/usr/bin/env bash
# supervise.sh NAME -- CMD...: runs CMD and starts it again whenever it exits, as Compose's `restart: always`
# does: after 1 s, doubling to 30 s, back to 1 s once a run lasted 60 s. stack.sh's spawn runs one per process.
#
#   PID_DIR/NAME.pid       this supervisor (written by spawn); TERM stops it: TERM to the child, wait, exit
#   PID_DIR/NAME.child     the running child's pid (what a crash test kills)
#   PID_DIR/NAME.restarts  how many times the child was started again
# The child's output and one line per restart go to stdout (the process's log). The child sees
# SUPERVISE_RESTARTS (0 on the first start), so a command can do on a restart what the first start did not need
# (Vault's unseal, for instance).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

name="${1:?usage: $0 NAME -- CMD...}"
shift
[[ "${1:-}" == -- ]] && shift
(($#)) || die "usage: $0 NAME -- CMD..."
: "${PID_DIR:?PID_DIR must be set}"

SUPERVISE_MIN_BACKOFF="${SUPERVISE_MIN_BACKOFF:-1}"
SUPERVISE_MAX_BACKOFF="${SUPERVISE_MAX_BACKOFF:-30}"
SUPERVISE_RESET_AFTER="${SUPERVISE_RESET_AFTER:-60}"

child_file="$PID_DIR/$name.child"
restarts_file="$PID_DIR/$name.restarts"
child=0 sleeper=0 stopping=0 restarts=0 backoff="$SUPERVISE_MIN_BACKOFF"

on_term() {
  stopping=1
  ((child)) && kill -TERM "$child" 2>/dev/null
  ((sleeper)) && kill -TERM "$sleeper" 2>/dev/null
  return 0
}
trap on_term TERM INT HUP

echo 0 >"$restarts_file"
while :; do
  started=$SECONDS
  SUPERVISE_RESTARTS="$restarts" "$@" &
  child=$!
  echo "$child" >"$child_file"
  ((stopping)) && kill -TERM "$child" 2>/dev/null # a TERM that came before the child's pid was known
  # wait returns early when a trapped signal arrives; the child is only gone once wait reaped it.
  while :; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  child=0
  rm -f "$child_file"
  ((stopping)) && exit "$rc"

  ran=$((SECONDS - started))
  ((ran >= SUPERVISE_RESET_AFTER)) && backoff="$SUPERVISE_MIN_BACKOFF"
  restarts=$((restarts + 1))
  echo "$restarts" >"$restarts_file"
  log "supervise: $name exited with status $rc after ${ran}s; restart $restarts in ${backoff}s"
  sleep "$backoff" &
  sleeper=$!
  wait "$sleeper" # a TERM during the back-off ends it at once
  sleeper=0
  ((stopping)) && exit 0
  backoff=$((backoff * 2 > SUPERVISE_MAX_BACKOFF ? SUPERVISE_MAX_BACKOFF : backoff * 2))
done
