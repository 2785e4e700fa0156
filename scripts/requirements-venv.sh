#!/usr/bin/env bash
# Create or update the virtualenv VENV from the requirements file REQ: pip upgraded, then `pip install -r REQ`.
# Reinstalls only when REQ changed since the last install (a copy of it is kept in the venv as
# .requirements-<name of REQ>). Idempotent; prints nothing when the venv is up to date. Used for .venv-lint
# (scripts/lint-venv.sh) and the venvs of other ansible-core versions (scripts/compat.sh).
#
#   bash scripts/requirements-venv.sh VENV REQ      (PYTHON=python3.11 to choose the interpreter of a new venv)
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: bash scripts/requirements-venv.sh VENV REQUIREMENTS_FILE" >&2; exit 2; }
venv=$1
req=$2
stamp=$venv/.requirements-$(basename "$req")
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
  exit 0
fi
echo "venv: installing $req into $venv" >&2
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
# Keep the venv out of git (and so out of scripts that stage git-visible files), like Python >= 3.13 venvs do.
printf '*\n' > "$venv/.gitignore"
log=$(mktemp)
if ! { "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip &&
       "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"; } >"$log" 2>&1; then
  grep -v "^WARNING: Location .* is ignored" "$log" >&2 || true
  rm -f "$log"
  echo "venv: pip install -r $req into $venv failed" >&2
  exit 1
fi
rm -f "$log"
cp "$req" "$stamp"
