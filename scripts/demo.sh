#!/usr/bin/env bash
# make demo: start the sandbox, onboard the example inventory's GitLab projects against it twice (the second run
# must change nothing), print the report and what the sandbox holds, stop the sandbox.
# The sandbox's state is saved to .sandbox/state.json and the logs, report and .gitlab-ci.yml snippets stay in
# .sandbox/ so they can be inspected after the demo ends.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
PY=$root/.venv/bin/python
# The collection must be importable as oidc_federation.azure (what `make collection` does).
coll_root=$(bash scripts/collection-root.sh)
export PYTHONPATH=$coll_root:$root/sandbox${PYTHONPATH:+:$PYTHONPATH}
export ANSIBLE_COLLECTIONS_PATH=$coll_root
export ANSIBLE_NOCOLOR=1 ANSIBLE_STDOUT_CALLBACK=${ANSIBLE_STDOUT_CALLBACK:-default}

mkdir -p .sandbox
# Start from the sandbox's seed: the state file of an earlier demo would otherwise be loaded (with credentials for the
# issuer URLs of an earlier port), and the first run would not show a fresh onboarding.
rm -f .sandbox/state.json
"$PY" -m oidc_sandbox start --state-dir .sandbox --state-file .sandbox/state.json
trap '"$PY" -m oidc_sandbox stop --state-dir .sandbox >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
source .sandbox/env
echo "sandbox: $SANDBOX_URL (env in .sandbox/env)"

report_dir=$root/.sandbox/report
rm -rf "$report_dir"

# Prints the play recap of a log; fails unless every host has failed=0 (and changed=0 when $2 is "unchanged").
check_recap() {
  local log=$1 expect=${2:-any} hosts=0 bad=0 line changed failed unreachable
  sed -n '/^PLAY RECAP/,$p' "$log"
  while read -r line; do
    hosts=$((hosts + 1))
    changed=$(sed -E 's/.* changed=([0-9]+).*/\1/' <<<"$line")
    failed=$(sed -E 's/.* failed=([0-9]+).*/\1/' <<<"$line")
    unreachable=$(sed -E 's/.* unreachable=([0-9]+).*/\1/' <<<"$line")
    if [ "$failed" != 0 ] || [ "$unreachable" != 0 ] || { [ "$expect" = unchanged ] && [ "$changed" != 0 ]; }; then
      bad=$((bad + 1))
    fi
  done < <(sed -n '/^PLAY RECAP/,$p' "$log" | grep -E '^[^ ]+ +: ok=')
  if [ "$hosts" = 0 ] || [ "$bad" != 0 ]; then
    echo "!! $bad of $hosts host(s) did not end as expected ($expect); see $log" >&2
    return 1
  fi
  if [ "$expect" = unchanged ]; then
    echo "== second run: changed=0 and failed=0 for all $hosts projects (idempotent, nothing written) =="
  fi
}

for run in first second; do
  echo "== onboarding, $run run =="
  log=.sandbox/onboard-$run.log
  status=0
  "$root/.venv/bin/ansible-playbook" -i playbooks/inventory/example.yml playbooks/onboard.yml \
    -e gitlab_oidc_report_dir="$report_dir" >"$log" 2>&1 || status=$?
  if [ "$status" != 0 ]; then
    tail -n 40 "$log"
    echo "!! ansible-playbook failed (exit $status); full log: $log" >&2
    exit 1
  fi
  if [ "$run" = first ]; then check_recap "$log"; else check_recap "$log" unchanged; fi
done

echo "== the report ($report_dir/onboarding.md; JSON: onboarding.json) =="
cat "$report_dir/onboarding.md"
echo
echo "== a .gitlab-ci.yml snippet ($report_dir/gitlab-ci/demo/web-app.gitlab-ci.yml) =="
cat "$report_dir/gitlab-ci/demo/web-app.gitlab-ci.yml"
echo
echo "== what the sandbox holds now =="
"$PY" - <<'PYEOF'
import json, os, ssl, urllib.request
ctx = ssl.create_default_context(cafile=os.environ["SANDBOX_CA_FILE"])
with urllib.request.urlopen(os.environ["SANDBOX_URL"] + "/_sandbox/state", context=ctx) as r:
    s = json.load(r)
def items(value):
    return list(value.values()) if isinstance(value, dict) else list(value or [])
apps = [a for a in items(s.get("applications")) if a.get("uniqueName")]
fics = s.get("federated_identity_credentials") or {}
sps = {sp.get("appId"): sp.get("id") for sp in items(s.get("service_principals"))}
roles = items(s.get("role_assignments"))
print(f"applications made by the role: {len(apps)}")
for a in sorted(apps, key=lambda a: a["uniqueName"]):
    creds = items(fics.get(a.get("id"))) if isinstance(fics, dict) else []
    sp = sps.get(a.get("appId"))
    granted = [r["properties"]["scope"] for r in roles if r["properties"].get("principalId") == sp]
    print(f"  {a['uniqueName']:36} appId={a.get('appId')} credentials={len(creds)} role assignments={len(granted)}")
print(f"federated identity credentials: {sum(len(items(v)) for v in fics.values()) if isinstance(fics, dict) else len(fics)}")
print(f"role assignments (incl. the sandbox's 2 seeded ones): {len(roles)}")
PYEOF
