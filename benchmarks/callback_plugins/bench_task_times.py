# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark helper, not part of the collection: an Ansible callback that records each task's wall time.

``benchmarks/bench_onboard.py`` enables it for its runs (``ANSIBLE_CALLBACK_PLUGINS`` pointing here,
``ANSIBLE_CALLBACKS_ENABLED=bench_task_times``) and reads the JSON it writes at the end of the play to the file named
by ``BENCH_TASK_TIMES_FILE``: ``{"tasks": [{"task": name, "wall_s": seconds}, ...]}``, in the order the tasks
started. A task's time runs from its start to the start of the next task (or the end of the play), so it covers the
task on every host it ran on. Task names and times only: no arguments, results or variables.
"""
from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

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

    def _close_current(self):
        if self._current is not None:
            self._tasks.append({"task": self._current, "wall_s": round(time.perf_counter() - self._started, 3)})
            self._current = None

    def _start(self, task):
        self._close_current()
        self._current = task.get_name()
        self._started = time.perf_counter()

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
