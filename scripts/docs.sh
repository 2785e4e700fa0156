#!/usr/bin/env bash
# Build and check the collection's documentation from what it ships (the tools come from .venv-lint):
#   1. antsibull-docs lint-collection-docs: schema and markup of every module, filter and role argument spec,
#      references (M(), O(), RV(), ...) resolved, rstcheck on the generated pages;
#   2. antsibull-docs collection: the docsite (RST) build Galaxy / docs.ansible.com would do, into .build/docs/rst,
#      failing on any error;
#   3. ansible-doc -t role: the role's argument spec is what `ansible-doc` shows;
#   4. scripts/docs_md.py: the Markdown reference in docs/modules/ (every option typed, EXAMPLES in FQCN form).
#
#   bash scripts/docs.sh           regenerate docs/modules/ (commit the result)
#   bash scripts/docs.sh --check   fail if docs/modules/ is out of date (what `make lint` runs)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
check=
[ "${1:-}" = "--check" ] && check=--check
bash scripts/lint-venv.sh
venv=${LINT_VENV:-$root/.venv-lint}
# The collection, importable as oidc_federation.azure (scripts/collection-root.sh: where, and why there).
coll_root=$(bash scripts/collection-root.sh)
export PATH="$venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH=$coll_root PYTHONPATH=$coll_root ANSIBLE_NOCOLOR=1
export ANSIBLE_LOCAL_TEMP=$root/.build/docs/tmp
mkdir -p "$ANSIBLE_LOCAL_TEMP"

failed=()
step() {  # step NAME COMMAND...: run one check, remember a failure, go on with the next
  local name=$1; shift
  echo "docs: $name"
  "$@" || failed+=("$name")
}
lint_refs() {
  antsibull-docs lint-collection-docs --plugin-docs --validate-collection-refs all \
    --disallow-unknown-collection-refs "$coll_root/ansible_collections/oidc_federation/azure"
}
docsite() {
  rm -rf .build/docs/rst && mkdir -p .build/docs/rst
  antsibull-docs collection --use-current --squash-hierarchy --fail-on-error --no-add-antsibull-docs-version \
    --output-format simplified-rst --dest-dir .build/docs/rst oidc_federation.azure || return 1
  # antsibull-docs leaves out, without an error, a role that ansible-doc does not list
  local role missing=0
  for role in roles/*/; do
    role=$(basename "$role")
    [ -f ".build/docs/rst/${role}_role.rst" ] || { echo "docs: the docsite build has no page for role $role" >&2; missing=1; }
  done
  return $missing
}
role_spec() {
  # The spec stays in JSON syntax: ansible-core 2.19 then tags its values without a line and column each, and every
  # host's automatic argument validation carries the whole spec (docs/dev/architecture.md, "The role's argument spec")
  python - roles/*/meta/argument_specs.yml <<'PY' || return 1
import json, sys
for path in sys.argv[1:]:
    try:
        with open(path, encoding="utf-8") as handle:
            json.load(handle)
    except ValueError as exc:
        sys.exit("docs: {0} is not JSON ({1}). Fix: keep the role's argument spec in JSON syntax (valid YAML too); "
                 "the role validates it on every host, and JSON loads with fewer data tags".format(path, exc))
PY
  ansible-doc -t role oidc_federation.azure.gitlab_oidc >/dev/null || return 1
  ansible-doc -t role --json oidc_federation.azure.gitlab_oidc | python -c '
import json, sys
docs = json.load(sys.stdin)
if "oidc_federation.azure.gitlab_oidc" not in docs:
    sys.exit("docs: ansible-doc -t role does not find oidc_federation.azure.gitlab_oidc (scripts/collection-root.sh)")
spec = docs["oidc_federation.azure.gitlab_oidc"]["entry_points"].get("main", {})
sys.exit(0 if spec.get("options") else "docs: ansible-doc shows no argument spec (options) for the role entry point main")'

}

step "antsibull-docs lint-collection-docs" lint_refs
step "antsibull-docs collection (docsite RST build into .build/docs/rst)" docsite
step "ansible-doc -t role oidc_federation.azure.gitlab_oidc" role_spec
step "Markdown reference in docs/modules/${check:+ (check)}" python scripts/docs_md.py $check docs/modules
if [ ${#failed[@]} -gt 0 ]; then
  printf 'docs: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "docs: OK"
