#!/usr/bin/env bash
# Build the collection tarball exactly as a clean clone would: stage the files git knows about (tracked, or new and
# not ignored; scripts/stage-files.sh) under <tree dir>/stage.*/ansible_collections/oidc_federation/azure (the tree
# directory of scripts/collection-root.sh), then `ansible-galaxy collection build` there, so local clutter
# (virtualenvs, caches, reports) can never end up in the artifact. galaxy.yml's build_ignore then decides what
# ships. Prints the tarball's path.
#
#   bash scripts/build-collection.sh [OUT_DIR] [ANSIBLE_GALAXY]      (default .build/dist, ansible-galaxy of .venv-lint)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.build/dist}
galaxy=${2:-${LINT_VENV:-$PWD/.venv-lint}/bin/ansible-galaxy}
[ -x "$galaxy" ] || galaxy=$PWD/.venv/bin/ansible-galaxy
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/stage" "$out"/oidc_federation-azure-*.tar.gz
tree_dir=$(bash scripts/collection-root.sh --tree-dir)
mkdir -p "$tree_dir"
work=$(mktemp -d "$tree_dir/stage.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/ansible_collections/oidc_federation/azure
bash scripts/stage-files.sh "$stage"
(cd "$stage" && "$galaxy" collection build --force --output-path "$out" >/dev/null)
ls "$out"/oidc_federation-azure-*.tar.gz
