#!/usr/bin/env bash
# ansible-test sanity, offline: ansible-test needs the collection under an ansible_collections/<ns>/<name> tree and
# considers only version-controlled files, so sanity runs on a copy of the files git knows about (tracked, or new
# and not ignored) and the pip bootstrap it would download is replaced by a local shim.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# TEST_VENV: the virtualenv whose ansible-test runs (default .venv; scripts/compat.sh gives another ansible-core).
test_venv=${TEST_VENV:-$root/.venv}
PY=$test_venv/bin/python
bash scripts/ansible-test-pip-shim.sh "$PY" >/dev/null
# ansible-test's shellcheck test silently skips when the command is missing: install it where we can (root + apt).
if ! command -v shellcheck >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck) >/dev/null 2>&1 \
    || echo "sanity: could not install shellcheck; ansible-test will skip that test" >&2
fi
# The copy lives in the tree directory of scripts/collection-root.sh (a path with no other ansible_collections).
tree_dir=$(bash scripts/collection-root.sh --tree-dir)
mkdir -p "$tree_dir"
work=$(mktemp -d "$tree_dir/sanity.XXXXXX")
trap 'rm -rf "$work"' EXIT
dest=$work/ansible_collections/oidc_federation/azure
# Only what ships: the sandbox, dev scripts and tooling are build_ignore'd in galaxy.yml and are not sanity-tested.
bash scripts/stage-files.sh "$dest" 'sandbox/*' 'scripts/*' 'docs/dev/*' 'requirements/*' '.ci/*' 'benchmarks/*' Makefile
cd "$dest"
git init -q . && git add -A >/dev/null && git -c user.email=ci@localhost -c user.name=ci commit -qm sanity >/dev/null
PATH="$test_venv/bin:$PATH" ansible-test sanity --venv --python 3.11 --color no "$@"
