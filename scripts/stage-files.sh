#!/usr/bin/env bash
# Copy the files git knows about (tracked, or new and not ignored; deleted ones skipped) to DEST, keeping their
# paths and modes, except those matching one of the shell PATTERNs (e.g. 'sandbox/*' 'Makefile'). What a clean clone
# of the work tree would hold: local clutter (venvs, caches, reports, .build/) never gets copied.
#
#   bash scripts/stage-files.sh DEST [PATTERN...]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bash scripts/stage-files.sh DEST [PATTERN...]" >&2; exit 2; }
mkdir -p "$1"
dest=$(cd "$1" && pwd); shift
cd "$(dirname "$0")/.."
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] || continue                       # deleted in the work tree, not yet in the index
  for pattern in "$@"; do
    # shellcheck disable=SC2254  # the pattern is meant to match as a glob
    case "$f" in $pattern) continue 2 ;; esac
  done
  mkdir -p "$dest/$(dirname "$f")"
  cp -p "$f" "$dest/$f"
done
