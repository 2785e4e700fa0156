#!/usr/bin/env bash
# gitlab_oidc role against the sandbox, through the collection's own playbooks (oidc_federation.azure.onboard and
# .offboard) as a user runs them: check mode writes nothing -> apply -> re-run changes nothing -> one project of the
# shared application narrows its trust -> offboard in check mode writes nothing -> offboard removes every object the
# role made -> offboard again changes nothing.
# State is verified through the sandbox control API (/_sandbox/state, /_sandbox/stats), never through the modules.
set -euo pipefail

config=../../integration_config.yml
setting() { sed -n "s/^$1: \"\\(.*\\)\"\$/\\1/p" "$config"; }

# The collection's modules read their connection settings from the environment, as with `source .sandbox/env`.
AZURE_TENANT_ID=$(setting azure_tenant_id)
AZURE_CLIENT_ID=$(setting azure_client_id)
AZURE_CLIENT_SECRET=$(setting azure_client_secret)
AZURE_SUBSCRIPTION_ID=$(setting azure_subscription_id)
SANDBOX_URL=$(setting sandbox_url)
SANDBOX_GITLAB_ISSUER=$(setting sandbox_gitlab_issuer)
AZURE_CA_BUNDLE=$(setting sandbox_ca_file)
export AZURE_TENANT_ID AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_SUBSCRIPTION_ID SANDBOX_URL SANDBOX_GITLAB_ISSUER AZURE_CA_BUNDLE
export AZURE_AUTHORITY_HOST=$SANDBOX_URL AZURE_GRAPH_ENDPOINT=$SANDBOX_URL AZURE_RESOURCE_MANAGER_ENDPOINT=$SANDBOX_URL

out=${OUTPUT_DIR:-$(mktemp -d)}
report_dir=$out/gitlab_oidc_report
rm -rf "$report_dir"
common=(-i inventory.yml -e "@$config" -e "gitlab_oidc_report_dir=$report_dir" "$@")

# run <phase> <playbook> [ansible-playbook options]: runs one phase; its output goes to stdout (ansible-test's log,
# which scripts/integration.sh scans for leaked secrets) and to $out/<phase>.log.
run() {
  local phase=$1
  shift
  echo "=== gitlab_oidc integration: $phase"
  if ! ansible-playbook "${common[@]}" -e "phase=$phase" "$@" 2>&1 | tee "$out/$phase.log"; then
    echo "FAILED: phase $phase" >&2
    exit 1
  fi
}

# unchanged <phase>: every project host of the phase's recap has changed=0.
unchanged() {
  local recap
  recap=$(sed -n '/^PLAY RECAP/,$p' "$out/$1.log" | grep -E '^itest-gitlab-oidc/')
  [ "$(grep -c . <<<"$recap")" = 3 ] || { echo "FAILED: $1: expected 3 projects in the recap" >&2; exit 1; }
  if grep -vE ' changed=0 ' <<<"$recap"; then
    echo "FAILED: $1: a project reported a change" >&2
    exit 1
  fi
}

run onboard-check onboard.yml --check --diff
run onboard onboard.yml
run onboard-again onboard.yml
unchanged onboard-again
# One project of the shared application narrows its trust (all branches -> main): its old credential goes, the
# other project's stays.
run onboard-narrow onboard.yml --limit 'itest-gitlab-oidc/sub/all,localhost' -e '{"gitlab_oidc_branches": ["main"]}'
run offboard-check offboard.yml --check
run offboard offboard.yml
run offboard-again offboard.yml
unchanged offboard-again
echo "=== gitlab_oidc integration: all phases passed"
