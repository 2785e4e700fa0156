#!/usr/bin/env bash
# Create or update .venv-lint, the virtualenv of the lint, packaging and docs tools (requirements/lint.txt), apart
# from .venv so that their dependencies never move the pins the collection is tested with. Reinstalls only when
# requirements/lint.txt changed. Idempotent; prints nothing when the venv is up to date (scripts/requirements-venv.sh).
#
#   bash scripts/lint-venv.sh            (LINT_VENV=path to use another location; PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/requirements-venv.sh "${LINT_VENV:-$PWD/.venv-lint}" requirements/lint.txt
