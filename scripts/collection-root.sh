#!/usr/bin/env bash
# Where this checkout's collection trees live: the one place that decides it (Makefile, scripts/, the playbook
# harness of benchmarks/ and tests/ all ask here).
#
# The tools find the collection as oidc_federation.azure below a directory named `ansible_collections`:
# ANSIBLE_COLLECTIONS_PATH/ansible_collections/oidc_federation/azure, a symlink to this checkout; ansible-test,
# ansible-galaxy and galaxy-importer work in staged copies under <dir>/ansible_collections/oidc_federation/azure.
# ansible-core ignores every path with more than one `ansible_collections` component
# (_get_collection_name_from_path): `ansible-doc -t role` lists no role there, and playbooks there are not
# recognised as collection content. So these trees live under a "tree directory" whose path has no
# `ansible_collections` component:
#   - `.build/` of the checkout when the checkout's path has none (a clone anywhere else);
#   - otherwise (a checkout at <anything>/ansible_collections/oidc_federation/azure, where collection developers
#     and ansible-test keep them) a directory of its own outside the checkout, one per checkout:
#     ${XDG_CACHE_HOME:-~/.cache}/oidc_federation_azure/trees/<hash of the checkout's path> (`make clean` removes it;
#     its CHECKOUT file names the checkout).
# Every make target then sees the same layout wherever the checkout is.
#
#   bash scripts/collection-root.sh              link the checkout into the collections root; print that root
#   bash scripts/collection-root.sh --print      print the collections root (ANSIBLE_COLLECTIONS_PATH), change nothing
#   bash scripts/collection-root.sh --tree-dir   print the tree directory, change nothing
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
physical=$(pwd -P)

has_ac() {  # has_ac PATH: does PATH have an `ansible_collections` component?
  case "/$1/" in */ansible_collections/*) return 0 ;; esac
  return 1
}

if ! has_ac "$root" && ! has_ac "$physical"; then
  tree_dir=$root/.build
else
  key=$(printf '%s' "$physical" | sha256sum | cut -c1-16)
  tree_dir=${XDG_CACHE_HOME:-$HOME/.cache}/oidc_federation_azure/trees/$key
  if has_ac "$tree_dir" || has_ac "$(cd / && realpath -m "$tree_dir")"; then
    echo "collection-root: $tree_dir has an 'ansible_collections' component, and so does this checkout's path" \
      "($root); set XDG_CACHE_HOME to a directory without one" >&2
    exit 2
  fi
fi
coll_root=$tree_dir/collections

case "${1:-}" in
  --print) echo "$coll_root" ;;
  --tree-dir) echo "$tree_dir" ;;
  "")
    mkdir -p "$coll_root/ansible_collections/oidc_federation"
    ln -sfn "$root" "$coll_root/ansible_collections/oidc_federation/azure"
    [ "$tree_dir" = "$root/.build" ] || printf '%s\n' "$root" > "$tree_dir/CHECKOUT"
    echo "$coll_root"
    ;;
  *) echo "usage: bash scripts/collection-root.sh [--print|--tree-dir]" >&2; exit 2 ;;
esac
