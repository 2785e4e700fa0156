"""Benchmark helper, not part of the collection: an Ansible callback that records each task's wall time.

``benchmarks/bench_onboard.py`` enables it for its runs (``ANSIBLE_CALLBACK_PLUGINS`` pointing here,
``ANSIBLE_CALLBACKS_ENABLED=bench_task_times``) and reads the JSON it writes at the end of the play to the file named
by ``BENCH_TASK_TIMES_FILE``: ``{"tasks": [{"task": name, "wall_s": seconds, "action": fqcn, "module": bool,
"hosts": n}, ...]}``, in the order the tasks started. A task's time runs from its start to the start of the next
task (or the end of the play), so it covers the task on every host it ran on. ``action`` is the task's resolved
action, ``module`` whether that action is a module with code of its own (a ``main`` in its module file, as
``ansible.builtin.ping``: a module task, whether or not an action plugin ran it without a module process; not a
documentation stub, as ``ansible.builtin.set_fact``), ``hosts`` the number of hosts it ran on (skipped not
counted). Task names, actions and times only: no arguments, results or variables.
"""
from __future__ import annotations

import json
import os
import re
import time

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import module_loader

_MAIN = re.compile(r"^def main\(", re.M)

DOCUMENTATION = r"""
name: bench_task_times
type: aggregate
short_description: wall time of each task, for the onboarding benchmark
description:
  - Writes the wall time of each task of the run to the file named by C(BENCH_TASK_TIMES_FILE), as JSON.
requirements:
  - enabled in callbacks_enabled
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._tasks = []
        self._current = None
        self._started = 0.0
        self._modules = {}  # action -> whether it is a module with code

    def _close_current(self):
        if self._current is not None:
            self._current["wall_s"] = round(time.perf_counter() - self._started, 3)
            self._tasks.append(self._current)
            self._current = None

    def _is_module(self, action, collections):
        if action not in self._modules:
            found = False
            try:
                context = module_loader.find_plugin_with_context(action, collection_list=collections)
                if context.resolved and context.plugin_resolved_path:
                    with open(context.plugin_resolved_path, encoding="utf-8", errors="replace") as handle:
                        found = bool(_MAIN.search(handle.read()))
            except Exception:  # pylint: disable=broad-exception-caught
                found = False
            self._modules[action] = found
        return self._modules[action]

    def _start(self, task):
        self._close_current()
        action = getattr(task, "resolved_action", None) or task.action
        self._current = {"task": task.get_name(), "wall_s": 0.0, "action": action,
                         "module": self._is_module(action, task.collections), "hosts": 0}
        self._started = time.perf_counter()

    def _ran(self, result):
        if self._current is not None:
            self._current["hosts"] += 1

    def v2_runner_on_ok(self, result):
        self._ran(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._ran(result)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._start(task)

    def v2_playbook_on_stats(self, stats):
        self._close_current()
        path = os.environ.get("BENCH_TASK_TIMES_FILE")
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump({"tasks": self._tasks}, handle)
