#!/usr/bin/env bash
# Build the collection tarball exactly as a clean clone would: stage the files git knows about (tracked, or new and
# not ignored) under <out>/stage/ansible_collections/oidc_federation/azure, then `ansible-galaxy collection build`
# there, so local clutter (virtualenvs, caches, reports) can never end up in the artifact. galaxy.yml's
# build_ignore then decides what ships. Prints the tarball's path.
#
#   bash scripts/build-collection.sh [OUT_DIR] [ANSIBLE_GALAXY]      (default .build/dist, ansible-galaxy of .venv-lint)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.build/dist}
galaxy=${2:-${LINT_VENV:-$PWD/.venv-lint}/bin/ansible-galaxy}
[ -x "$galaxy" ] || galaxy=$PWD/.venv/bin/ansible-galaxy
mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$out/stage/ansible_collections/oidc_federation/azure
rm -rf "$out/stage" "$out"/oidc_federation-azure-*.tar.gz
mkdir -p "$stage"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] || continue                       # deleted in the work tree, not yet in the index
  mkdir -p "$stage/$(dirname "$f")"
  cp -p "$f" "$stage/$f"
done
(cd "$stage" && "$galaxy" collection build --force --output-path "$out" >/dev/null)
ls "$out"/oidc_federation-azure-*.tar.gz
