#!/usr/bin/env bash
# fuzz.sh [--keep-corpus] FUZZTIME PKG:TARGET...: runs each fuzz target for FUZZTIME beyond its seeds.
# FUZZTIME is go test's -fuzztime: a duration (30s) or a count of executions (1000x). make test uses a count,
# which cannot hit the coordinator's deadline race of Go 1.26 (see FUZZ_SMOKE_TIME in the Makefile).
#
# `go test` alone runs only a target's seeds: its f.Add inputs and the files in <pkg>/testdata/fuzz/<Target>/.
# With --keep-corpus (make fuzz), the inputs the fuzzer found interesting (kept in Go's cache, GOCACHE/fuzz)
# are copied into testdata/fuzz/<Target>/, at most FUZZ_CORPUS_MAX of the smallest per target, to be
# committed: every later `go test` then runs them as seeds. Without it (make fuzz-smoke, in make test) nothing
# in the tree changes unless the fuzzer finds a failure, which Go writes to testdata/fuzz/<Target>/ itself.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT_DIR"

keep=0
if [[ "${1:-}" == --keep-corpus ]]; then keep=1; shift; fi
fuzztime="${1:?usage: $0 [--keep-corpus] FUZZTIME PKG:TARGET...}"; shift
GO="${GO:-go}"
max="${FUZZ_CORPUS_MAX:-24}"
cache="$("$GO" env GOCACHE)/fuzz"

for t in "$@"; do
  pkg="${t%%:*}" name="${t#*:}"
  log "fuzz $name in $pkg for $fuzztime"
  "$GO" test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" "$pkg"
  ((keep)) || continue
  src="$cache/$("$GO" list "$pkg")/$name" dst="$pkg/testdata/fuzz/$name"
  if [[ ! -d "$src" ]] || [[ -z "$(ls -A "$src")" ]]; then
    log "$name found nothing beyond its seeds in $fuzztime: nothing to keep (try a longer FUZZTIME)"
    continue
  fi
  mkdir -p "$dst"
  # The smallest entries: each was new coverage when found, and small ones keep the seed run fast. (awk reads
  # to the end: no early exit that could kill sort with SIGPIPE.)
  mapfile -t files < <(find "$src" -maxdepth 1 -type f -printf '%s %f\n' | sort -n | awk -v max="$max" 'NR <= max { print $2 }')
  for f in "${files[@]}"; do cp -f "$src/$f" "$dst/$f"; done
  log "kept ${#files[@]} inputs of $name in $dst"
done
