# Benchmark helper, not part of the collection: the module processes' peak RSS, for benchmarks/bench_onboard.py.
#
# ansible_harness.rss_site_env() puts this directory first on the PYTHONPATH of ansible-playbook and names a log in
# BENCH_RSS_LOG; the module processes Ansible starts on the controller (local connection) inherit both, so Python
# imports this file as it starts every one of them. In a module process (``<python> .../AnsiballZ_<module>.py``)
# it registers an exit hook that appends one JSON line to the log: the module's import name (read from the AnsiballZ
# file: ``module_fqn='...'`` in ansible-core 2.19, ``runpy.run_module(mod_name='...'`` in 2.17 and 2.18; "unknown"
# with pipelining, where the payload comes on stdin), the process's peak resident set size (ru_maxrss of
# RUSAGE_SELF, and of RUSAGE_CHILDREN for anything it spawned) and its wall time. In any other process (the
# controller, a persistent worker) it does nothing. Nothing else (no module arguments: they may hold secrets) is
# recorded. The module runs unchanged, under the interpreter Ansible chose.
from __future__ import annotations

import atexit
import json
import os
import re
import resource
import sys
import time

_RSS_LOG = os.environ.get("BENCH_RSS_LOG")
_FQN = re.compile(r"""^module_fqn=['"]([\w.]+)['"],?$|runpy\.run_module\(mod_name=['"]([\w.]+)['"]""", re.M)


def _module_name(script: str) -> str:
    try:
        with open(script, encoding="utf-8") as handle:
            match = _FQN.search(handle.read())
    except OSError:
        return "unknown"
    return (match.group(1) or match.group(2)) if match else "unknown"


def _record(module: str, started: float) -> None:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    line = json.dumps({"module": module, "maxrss_kb": own, "children_maxrss_kb": children,
                       "wall_s": round(time.monotonic() - started, 4), "pid": os.getpid()})
    fd = os.open(_RSS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _watch() -> None:
    script = sys.argv[0] if sys.argv else ""
    name = os.path.basename(script)
    if name.startswith("AnsiballZ_") and name.endswith(".py"):
        module = _module_name(script)
    elif script == "" and not sys.stdin.isatty():  # pipelining: ``<python>`` reads the payload from stdin
        module = "unknown"
    else:
        return
    atexit.register(_record, module, time.monotonic())


if _RSS_LOG:
    _watch()
