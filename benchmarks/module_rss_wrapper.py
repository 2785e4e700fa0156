# Body of the ``ansible_python_interpreter`` written by ansible_harness.write_rss_interpreter(), which prepends a
# shebang and fills in _RSS_LOG. Ansible runs ``<interpreter> .../AnsiballZ_<module>.py`` (or pipes the
# module into it with pipelining). The wrapper runs the AnsiballZ payload in its own process (AnsiballZ itself
# runs the module in-process), then appends one JSON line to _RSS_LOG: the module's FQCN, the process's peak
# resident set size (ru_maxrss of RUSAGE_SELF, and of RUSAGE_CHILDREN for anything it spawned), its wall time and
# exit code. Nothing else (no module arguments: they may hold secrets) is recorded.
from __future__ import annotations

import json
import os
import re
import resource
import runpy
import sys
import time

_RSS_LOG = "@RSS_LOG@"
_CURRENT = {"module": "unknown"}
# The module's import name, as AnsiballZ writes it: ``module_fqn='...'`` (ansible-core 2.19) or
# ``runpy.run_module(mod_name='...'`` (2.17 and 2.18).
_FQN = re.compile(r"""^module_fqn=['"]([\w.]+)['"],?$|runpy\.run_module\(mod_name=['"]([\w.]+)['"]""", re.M)


def _module_name(source: str) -> str:
    match = _FQN.search(source)
    return (match.group(1) or match.group(2)) if match else "unknown"


def _record(module: str, started: float, code: object) -> None:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    line = json.dumps({"module": module, "maxrss_kb": own, "children_maxrss_kb": children,
                       "wall_s": round(time.monotonic() - started, 4), "pid": os.getpid(),
                       "rc": code if isinstance(code, int) else (0 if code is None else 1)})
    fd = os.open(_RSS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _run_payload() -> None:
    """Run the AnsiballZ payload (a file argument, or stdin with pipelining) as ``__main__``."""
    if len(sys.argv) > 1:
        script = sys.argv[1]
        with open(script, encoding="utf-8") as handle:
            _CURRENT["module"] = _module_name(handle.read())
        sys.argv = sys.argv[1:]
        runpy.run_path(script, run_name="__main__")
    else:
        source = sys.stdin.read()
        _CURRENT["module"] = _module_name(source)
        exec(compile(source, "<stdin>", "exec"), {"__name__": "__main__"})  # noqa: S102 - that is the payload


def _main() -> None:
    started = time.monotonic()
    code: object = 0
    try:
        _run_payload()
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        code = 1
        raise
    finally:
        _record(_CURRENT["module"], started, code)
    sys.exit(code)


_main()
