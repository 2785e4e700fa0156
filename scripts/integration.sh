#!/usr/bin/env bash
# Integration tests: every target under tests/integration/targets runs with ansible-test against a sandbox
# started for this run. ansible-test passes only a few environment variables to the playbooks, so the sandbox's
# endpoints and operator credentials reach the targets through tests/integration/integration_config.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# TEST_VENV: the virtualenv whose ansible-test and ansible-core run (default .venv; see scripts/compat.sh).
test_venv=${TEST_VENV:-$root/.venv}
PY=$test_venv/bin/python
export PYTHONPATH="$root/sandbox${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$root/.build"
state=$(mktemp -d "$root/.build/integration-sandbox.XXXXXX")
envfile=$state/env
"$PY" -m oidc_sandbox start --state-dir "$state" >/dev/null
cleanup() { "$PY" -m oidc_sandbox stop --state-dir "$state" >/dev/null 2>&1 || true; rm -rf "${work:-}" "$state"; }
trap cleanup EXIT
# shellcheck disable=SC1090
source "$envfile"

# The copy ansible-test runs in lives in the tree directory of scripts/collection-root.sh (a path with no other
# ansible_collections component), wherever this checkout is.
tree_dir=$(bash scripts/collection-root.sh --tree-dir)
mkdir -p "$tree_dir"
work=$(mktemp -d "$tree_dir/integration.XXXXXX")
dest=$work/ansible_collections/oidc_federation/azure
bash scripts/stage-files.sh "$dest" 'sandbox/*' '.ci/*'
cat > "$dest/tests/integration/integration_config.yml" <<YAML
---
sandbox_url: "$SANDBOX_URL"
sandbox_ca_file: "$SANDBOX_CA_FILE"
sandbox_gitlab_issuer: "$SANDBOX_GITLAB_ISSUER"
azure_tenant_id: "$AZURE_TENANT_ID"
azure_client_id: "$AZURE_CLIENT_ID"
azure_client_secret: "$AZURE_CLIENT_SECRET"
azure_subscription_id: "$AZURE_SUBSCRIPTION_ID"
YAML
cd "$dest"
git init -q . && git add -A >/dev/null && git -c user.email=ci@localhost -c user.name=ci commit -qm integration >/dev/null
log=$work/integration.log
# Run at -vvv and keep the output: no secret or token may appear in it, even at that verbosity.
set +e
PATH="$test_venv/bin:$PATH" ansible-test integration --local --python 3.11 --color no -vvv "$@" >"$log" 2>&1
rc=$?
set -e
grep -E '^(PLAY RECAP|[^ ]+ +: ok=)|Running .* integration test' "$log" || true
if [ $rc -ne 0 ]; then
  echo "ansible-test integration failed (rc=$rc); last lines of the -vvv log:"
  tail -n 60 "$log"
  exit $rc
fi
leaks=0
for secret in "$AZURE_CLIENT_SECRET" "${SANDBOX_RESTRICTED_CLIENT_SECRET:-}"; do
  [ -n "$secret" ] && grep -qF -- "$secret" "$log" && { echo "LEAK: a client secret appears in the -vvv output"; leaks=1; }
done
# JWTs (access tokens, GitLab ID tokens) start with a base64url JSON header: eyJ...
if grep -qE 'eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.' "$log"; then
  echo "LEAK: a JWT appears in the -vvv output:"; grep -noE 'eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{4}' "$log" | head -5
  leaks=1
fi
[ $leaks -eq 0 ] || exit 1
echo "integration: passed; no secret or token in the -vvv output ($(wc -l <"$log") lines checked)"
