#!/usr/bin/env bash
# ansible-test bootstraps pip in every venv it creates by downloading get-pip-<ver>.py from a host that this
# project's machines cannot reach. Put a local stand-in in its cache: a script that installs pip from a wheel
# downloaded from the package index with the ordinary pip client. Idempotent.
set -euo pipefail
PY=${1:-python3}
ver=$("$PY" - <<'PYEOF'
import ansible_test._internal.python_requirements as r
import inspect, re
src = inspect.getsource(r.get_venv_packages)
print(re.search(r"pip='([0-9.]+)'", src).group(1))
PYEOF
)
cache="$HOME/.ansible/test/cache"
shim="$cache/get_pip_${ver//./_}.py"
wheeldir="$cache/pip-wheels"
mkdir -p "$cache" "$wheeldir"
whl=$(ls "$wheeldir"/pip-"$ver"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$whl" ]; then
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$wheeldir" "pip==$ver"
  whl=$(ls "$wheeldir"/pip-"$ver"-*.whl | head -n1)
fi
cat > "$shim.tmp" <<PYEOF
# Local stand-in for get-pip-${ver}.py written by oidc_federation.azure's scripts/ansible-test-pip-shim.sh.
import sys
sys.path.insert(0, "${whl}")
from pip._internal.cli.main import main
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall", "${whl}"] + [a for a in args if not a.startswith("pip==")]))
PYEOF
mv "$shim.tmp" "$shim"
echo "ansible-test pip bootstrap shim: $shim"
