#!/usr/bin/env bash
# `make lint`: every check a release of the collection must pass, with the tools of .venv-lint
# (requirements/lint.txt, created or updated by scripts/lint-venv.sh) and ansible-test from .venv.
#
#   changelog       antsibull-changelog lint (the fragments in changelogs/fragments/)
#   ansible-lint    ansible-lint, production profile (.ansible-lint), on the role, playbooks and metadata
#   docs            scripts/docs.sh --check: antsibull-docs lint and docsite build, role argument spec, docs/modules/
#   layout          the docs step again, from a copy of the checkout at <dir>/ansible_collections/oidc_federation/azure
#                   (where collection developers and ansible-test keep checkouts): the tooling must work there too
#   galaxy-importer the tarball `ansible-galaxy collection build` makes, imported by galaxy-importer as Galaxy and
#                   Automation Hub do (ansible-doc, its own ansible-lint run, changelog, EE files), offline and
#                   without containers; any error it logs fails the step (ansible-lint warnings are shown)
#   ee              tests/ee: ansible-builder create on docs/awx/execution-environment.yml with the built
#                   tarball, the EE's generated Python requirements checked; the AWX files checked
#   sanity          scripts/sanity.sh: ansible-test sanity, no ignore file
#
#   bash scripts/lint.sh                  all steps
#   bash scripts/lint.sh ansible-lint ee  only these steps
# Every step runs even if an earlier one failed; the summary lists each step's result and time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
all_steps=(changelog ansible-lint docs layout galaxy-importer ee sanity)
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=("${all_steps[@]}")
for s in "${steps[@]}"; do
  [[ " ${all_steps[*]} " == *" $s "* ]] || { echo "lint: unknown step '$s' (steps: ${all_steps[*]})" >&2; exit 2; }
done

bash scripts/lint-venv.sh
venv=${LINT_VENV:-$root/.venv-lint}
work=$root/.build/lint
mkdir -p "$work/tmp"
# The collection is importable as oidc_federation.azure (as `make collection` does; scripts/collection-root.sh).
coll_root=$(bash scripts/collection-root.sh)
tree_dir=$(bash scripts/collection-root.sh --tree-dir)
export ANSIBLE_COLLECTIONS_PATH=$coll_root ANSIBLE_NOCOLOR=1 NO_COLOR=1 ANSIBLE_LOCAL_TEMP=$work/tmp
# Tools of .venv-lint first; ansible-lint warns when it finds its own bin directory missing from PATH.
lint_path="$venv/bin:$PATH"

step_changelog() {
  (cd "$root" && PATH=$lint_path antsibull-changelog lint)
}

step_ansible-lint() {
  (cd "$root" && PATH=$lint_path ansible-lint --nocolor)
}

step_docs() {
  bash scripts/docs.sh --check
}

step_layout() {
  # A copy of the files git knows about (not the sandbox) in the tree directory, whose path has no other
  # ansible_collections component; it finds its own collections root (scripts/collection-root.sh), and that root
  # is removed afterwards.
  local copy dest rc=0
  copy=$(mktemp -d "$tree_dir/layout.XXXXXX")
  dest=$copy/ansible_collections/oidc_federation/azure
  bash scripts/stage-files.sh "$dest" 'sandbox/*'
  echo "lint: docs step in $dest"
  (cd "$dest" && env -u ANSIBLE_COLLECTIONS_PATH -u PYTHONPATH LINT_VENV="$venv" bash scripts/docs.sh --check) || rc=$?
  rm -rf "$(bash "$dest/scripts/collection-root.sh" --tree-dir)" "$copy"
  return $rc
}

tarball=
build_tarball() {
  [ -n "$tarball" ] && return 0
  tarball=$(PATH=$lint_path bash scripts/build-collection.sh "$work/dist" "$venv/bin/ansible-galaxy")
  echo "lint: built $tarball"
}

step_galaxy-importer() {
  build_tarball
  # The importer extracts the tarball to <tmp_root_dir>/*/ansible_collections/...: in the tree directory.
  local cfg=$work/galaxy-importer.cfg log=$work/galaxy-importer.log importer=$tree_dir/lint-importer rc=0
  rm -rf "$importer" && mkdir -p "$importer"
  # run_ansible_test: its ansible-test run needs containers; `sanity` covers it. Everything else on, as on Galaxy.
  cat > "$cfg" <<CFG
[galaxy-importer]
run_ansible_test = False
run_ansible_doc = True
run_ansible_lint = True
offline_ansible_lint = True
check_changelog = True
run_flake8 = False
log_level_main = INFO
ansible_local_tmp = $importer
tmp_root_dir = $importer
CFG
  # The importer calls ansible-doc, ansible-lint and ansible-galaxy by name: those of .venv-lint. It must see only
  # the extracted tarball, never the work tree: no PYTHONPATH or collections path pointing at the checkout.
  (cd "$work" && env -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH PATH="$lint_path" GALAXY_IMPORTER_CONFIG="$cfg" \
    "$venv/bin/python" -m galaxy_importer.main "$tarball") >"$log" 2>&1 || rc=$?
  grep -v '^Loading ' "$log" || true
  if [ $rc -ne 0 ]; then
    echo "lint: galaxy-importer exited $rc" >&2
    return 1
  fi
  # Errors fail, and so does every warning except the ansible-lint findings that ansible-lint itself rates as
  # warnings (the lines ending in "(warning)"), which Galaxy shows as warnings too.
  if grep -E '^(ERROR|CRITICAL|WARNING)' "$log" | grep -qvE '\(warning\)$'; then
    echo "lint: galaxy-importer reported errors (above)" >&2
    return 1
  fi
}

step_ee() {
  build_tarball
  OIDC_COLLECTION_TARBALL=$tarball LINT_VENV=$venv \
    "$root/.venv/bin/python" -m pytest -q -p no:cacheprovider tests/ee
}

step_sanity() {
  bash scripts/sanity.sh
}

declare -a summary=()
failed=0
for s in "${steps[@]}"; do
  echo
  echo "==> lint: $s"
  start=$SECONDS
  if "step_$s"; then result=passed; else result=FAILED; failed=1; fi
  summary+=("$(printf '%-16s %-7s %4ds' "$s" "$result" $((SECONDS - start)))")
done
echo
echo "lint summary:"
printf '  %s\n' "${summary[@]}"
exit $failed
