#!/usr/bin/env bash
# make demo: start the sandbox, run the sample onboarding against it, print what was created, stop the sandbox.
# The sandbox's state is saved to .sandbox/state.json so it can be inspected after the demo ends.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
PY=$root/.venv/bin/python
mkdir -p .sandbox
"$PY" -m oidc_sandbox start --state-dir .sandbox --state-file .sandbox/state.json
trap '"$PY" -m oidc_sandbox stop --state-dir .sandbox >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
source .sandbox/env
echo "sandbox: $SANDBOX_URL (env in .sandbox/env)"

if [ ! -f playbooks/onboard.yml ]; then
  echo "playbooks/onboard.yml is not there yet (it comes with the gitlab_oidc role); showing the sandbox only."
else
  export ANSIBLE_STDOUT_CALLBACK=${ANSIBLE_STDOUT_CALLBACK:-default}
  for run in first second; do
    echo "== onboarding, $run run =="
    "$root/.venv/bin/ansible-playbook" -i playbooks/inventory/example.yml playbooks/onboard.yml \
      -e report_dir="$root/.sandbox/report" | tee ".sandbox/onboard-$run.log" | tail -n 25
  done
  [ -f .sandbox/report/onboarding.md ] && cat .sandbox/report/onboarding.md
fi
echo "== what the sandbox holds now =="
"$PY" - <<'PYEOF'
import json, os, ssl, urllib.request
ctx = ssl.create_default_context(cafile=os.environ["SANDBOX_CA_FILE"])
with urllib.request.urlopen(os.environ["SANDBOX_URL"] + "/_sandbox/state", context=ctx) as r:
    s = json.load(r)
apps = s.get("applications") or s.get("apps") or []
apps = list(apps.values()) if isinstance(apps, dict) else apps
print(f"applications: {len(apps)}")
for a in apps:
    print(f"  {a.get('displayName')!s:40} appId={a.get('appId')} uniqueName={a.get('uniqueName')}")
for key in ("servicePrincipals", "federatedIdentityCredentials", "roleAssignments"):
    v = s.get(key)
    if v is not None:
        print(f"{key}: {len(v)}")
PYEOF
