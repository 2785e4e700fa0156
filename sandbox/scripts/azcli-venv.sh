#!/usr/bin/env bash
# Create (or reuse) the Azure CLI virtualenv used by sandbox/tests/test_azcli.py and print its path.
#
#   AZCLI_VENV     where the venv lives (default: ~/.cache/oidc_federation_azure/azcli-venv)
#   AZCLI_VERSION  azure-cli version to install (default: 2.91.0)
#   PYTHON         interpreter for a new venv (default: python3; azure-cli needs 3.10 or later)
#
# The first install takes several minutes and about 750 MB. A venv is reused when its azure-cli has the wanted
# version; a concurrent run waits for the other one (flock). The pip log goes to "$AZCLI_VENV.install.log".
# Exit status: 0 and the venv path on stdout, or non-zero with the reason on stderr.
set -euo pipefail

venv="${AZCLI_VENV:-$HOME/.cache/oidc_federation_azure/azcli-venv}"
version="${AZCLI_VERSION:-2.91.0}"
python="${PYTHON:-python3}"
log="$venv.install.log"
stamp="$venv/.azure-cli-$version.ok"

say() { printf 'azcli-venv: %s\n' "$*" >&2; }

installed_version() {
    [ -x "$venv/bin/python" ] && [ -x "$venv/bin/az" ] || return 1
    "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("azure-cli"))' 2>/dev/null
}

usable() {
    [ -f "$stamp" ] && return 0
    # A venv made by hand (or before this script stamped it) counts once its azure-cli version matches.
    [ "$(installed_version || true)" = "$version" ] && : > "$stamp"
}

mkdir -p "$(dirname "$venv")"
if usable; then
    printf '%s\n' "$venv"
    exit 0
fi

exec 9>"$venv.lock"
if ! flock -n 9; then
    say "another run is installing into $venv; waiting for it (up to 30 min)"
    flock -w 1800 9 || { say "gave up waiting for the lock on $venv.lock"; exit 1; }
fi
if usable; then  # the other run finished it
    printf '%s\n' "$venv"
    exit 0
fi

if pgrep -f "$venv/bin/pip" >/dev/null 2>&1 || pgrep -f "$venv/bin/python -m pip" >/dev/null 2>&1; then
    say "a pip started outside this script is still installing into $venv; run this again when it is done"
    exit 1
fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    say "$python is missing or older than 3.10 (azure-cli $version needs 3.10+); set PYTHON"
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv"
    "$python" -m venv "$venv"
fi
say "installing azure-cli==$version into $venv (several minutes; log: $log)"
if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input "azure-cli==$version" >"$log" 2>&1; then
    say "pip failed; last lines of $log:"
    tail -n 15 "$log" >&2
    exit 1
fi
if [ "$(installed_version || true)" != "$version" ]; then
    say "azure-cli $version is not importable in $venv after the install (see $log)"
    exit 1
fi
: > "$stamp"
printf '%s\n' "$venv"
