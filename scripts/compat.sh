#!/usr/bin/env bash
# `make compat CORE=<version>`: the collection's tests on another ansible-core than the one CI pins (galaxy.yml
# declares requires_ansible >= 2.17; CI runs requirements/dev.txt's 2.19). In .venv-core-<version>, requirements/dev.txt
# with only ansible-core changed, it runs what does not depend on the core's test helpers:
#   ansible-test sanity (no ignore file), ansible-test integration (with its -vvv secret scan), tests/e2e.
# The unit tests are not run: their conftest uses helpers of ansible-core 2.19 (ansible.module_utils.testing).
#
#   bash scripts/compat.sh 2.17.14 [sanity] [integration] [e2e]      (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
core=${1:?usage: bash scripts/compat.sh <ansible-core version, e.g. 2.17.14> [sanity] [integration] [e2e]}
shift
[[ $core =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]] || { echo "compat: '$core' is not an ansible-core version (e.g. 2.17.14)" >&2; exit 2; }
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(sanity integration e2e)
for step in "${steps[@]}"; do
  case $step in sanity|integration|e2e) ;; *) echo "compat: unknown step '$step' (sanity, integration, e2e)" >&2; exit 2 ;; esac
done

venv=$root/.venv-core-$core
mkdir -p "$root/.build"
requirements=$root/.build/dev-ansible-core-$core.txt
sed -E "s/^ansible-core==.*/ansible-core==$core/" requirements/dev.txt > "$requirements"
bash scripts/requirements-venv.sh "$venv" "$requirements"
actual=$("$venv/bin/python" -c 'from ansible.release import __version__; print(__version__)')
[ "$actual" = "$core" ] || { echo "compat: $venv has ansible-core $actual, not $core" >&2; exit 1; }

collections=$(bash scripts/collection-root.sh)
export ANSIBLE_COLLECTIONS_PATH=$collections
export PYTHONPATH=$collections:$root/sandbox${PYTHONPATH:+:$PYTHONPATH}
export TEST_VENV=$venv
declare -A outcome=()
status=0
for step in "${steps[@]}"; do
  echo "== compat $core: $step =="
  case $step in
    sanity) cmd=(bash scripts/sanity.sh) ;;
    integration) cmd=(bash scripts/integration.sh) ;;
    e2e) bash sandbox/scripts/azcli-venv.sh >/dev/null
         cmd=(env "PATH=$venv/bin:$PATH" "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/e2e) ;;
  esac
  if "${cmd[@]}"; then outcome[$step]=passed; else outcome[$step]=FAILED; status=1; fi
done
echo
echo "compat summary (ansible-core $core):"
for step in "${steps[@]}"; do printf '  %-12s %s\n' "$step" "${outcome[$step]}"; done
exit $status
