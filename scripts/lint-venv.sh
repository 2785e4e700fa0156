#!/usr/bin/env bash
# Create or update .venv-lint, the virtualenv of the lint, packaging and docs tools (requirements/lint.txt), apart
# from .venv so that their dependencies never move the pins the collection is tested with. Reinstalls only when
# requirements/lint.txt changed. Idempotent; prints nothing when the venv is up to date.
#
#   bash scripts/lint-venv.sh            (LINT_VENV=path to use another location; PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LINT_VENV:-$PWD/.venv-lint}
req=requirements/lint.txt
stamp=$venv/.requirements-lint.txt
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
  exit 0
fi
echo "lint-venv: installing $req into $venv" >&2
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
# Keep the venv out of git (and so out of scripts that stage git-visible files), like Python >= 3.13 venvs do.
printf '*\n' > "$venv/.gitignore"
log=$(mktemp)
if ! { "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip &&
       "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"; } >"$log" 2>&1; then
  grep -v "^WARNING: Location .* is ignored" "$log" >&2 || true
  rm -f "$log"
  echo "lint-venv: pip install -r $req failed" >&2
  exit 1
fi
rm -f "$log"
cp "$req" "$stamp"
