#!/usr/bin/env bash
# Integration tests: every target under tests/integration/targets runs with ansible-test against a sandbox
# started for this run. ansible-test passes only a few environment variables to the playbooks, so the sandbox's
# endpoints and operator credentials reach the targets through tests/integration/integration_config.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
PY=$root/.venv/bin/python
state=$root/.build/integration-sandbox
envfile=$state/env
mkdir -p "$state"
"$PY" -m oidc_sandbox start --state-dir "$state" >/dev/null
trap '"$PY" -m oidc_sandbox stop --state-dir "$state" >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1090
source "$envfile"

dest=$root/.build/integration/ansible_collections/oidc_federation/azure
rm -rf "$dest"
mkdir -p "$dest"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] || continue
  case "$f" in sandbox/*|.ci/*) continue ;; esac
  mkdir -p "$dest/$(dirname "$f")"
  cp -p "$f" "$dest/$f"
done
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
PATH="$root/.venv/bin:$PATH" ansible-test integration --local --python 3.11 --color no "$@"
