# shellcheck shell=bash
# Shared helpers for the stack scripts; sourced, never executed.

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this file
SCRIPTS_DIR="$ROOT_DIR/scripts"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# wait_for DESCRIPTION TIMEOUT_S LOGFILE CMD...: polls CMD until it succeeds; on timeout points at the log.
wait_for() {
  local what="$1" timeout="$2" logfile="$3"; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for $what"
      [[ -n "$logfile" && -f "$logfile" ]] && { log "last lines of $logfile:"; tail -n 20 "$logfile" >&2; }
      die "$what not ready (see ${logfile:-the output above})"
    fi
    sleep 0.2
  done
}

# pid_alive PIDFILE: true when the pid file names a running process.
pid_alive() {
  local pid
  [[ -s "$1" ]] || return 1
  pid="$(cat "$1")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# stop_pidfile NAME PIDFILE [TIMEOUT_S]: TERM, wait, then KILL; removes the pid file (and NAME.child's, if any).
stop_pidfile() {
  local name="$1" pidfile="$2" timeout="${3:-20}" pid deadline
  if ! pid_alive "$pidfile"; then rm -f "$pidfile"; return 0; fi
  pid="$(cat "$pidfile")"
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "$name did not exit after ${timeout}s; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && die "$name (pid $pid) is still running"
  rm -f "$pidfile"
  # A supervised process (scripts/supervise.sh): its supervisor stops the child, unless it was killed first.
  if [[ "$pidfile" == *.pid && -e "${pidfile%.pid}.child" ]]; then stop_pidfile "$name's child" "${pidfile%.pid}.child" "$timeout"; fi
  return 0
}

# find_bin NAME: the path of a program on PATH, or in the sbin folders a user's PATH may lack (Debian's mariadbd).
find_bin() {
  command -v "$1" 2>/dev/null && return 0
  local d
  for d in /usr/sbin /usr/local/sbin /sbin; do [[ -x "$d/$1" ]] && { echo "$d/$1"; return 0; }; done
  return 1
}

# port_free HOST PORT: true when nothing listens there (bash's /dev/tcp, no extra tools).
port_free() { ! (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# new_secret: a random 32-byte hex string, printed to stdout only (callers pipe it, never put it on argv).
new_secret() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

# owner_of USER: "uid:gid" of USER for meshctl's deliveries, or nothing when every process runs as the caller.
owner_of() { if ((SERVICE_USERS)); then echo "$(id -u "$1"):$(id -g "$1")"; fi; }
