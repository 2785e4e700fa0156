# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action of ``oidc_federation.azure.gitlab_oidc_projects`` (documented in plugins/modules/gitlab_oidc_projects.py).

With ``persistent_worker``, the module process of a call only parses its options and hands them to the persistent
worker (``_worker``). When the task runs on the controller itself (the local connection, no become, no ``async``,
no task environment, and the execution host's Python is ansible-playbook's own), this action does the same from the
controller, without a module process: it validates the options against the module's own argument spec (the same
defaults, environment fallbacks and messages), asks the worker of ansible-playbook's Python and returns its result,
with every ``no_log`` value masked as the module would. Every other call, and a call no worker can take, runs the
module as usual (which may still use a worker of its own).
"""

from __future__ import annotations

import sys

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action.normal import ActionModule as NormalAction

from ansible_collections.oidc_federation.azure.plugins.module_utils._auth_spec import with_auth_options
from ansible_collections.oidc_federation.azure.plugins.module_utils._worker import ask_worker, source_root
from ansible_collections.oidc_federation.azure.plugins.modules import gitlab_oidc_projects as module_file

MODULE = 'gitlab_oidc_projects'


class ActionModule(NormalAction):
    """``gitlab_oidc_projects``: on the controller through its persistent worker when it can, else as a module."""

    def run(self, tmp=None, task_vars=None):
        if not self._on_controller(task_vars or {}):
            return super().run(tmp, task_vars)
        # The module's spec has no aliases and no deprecations, so validation gives no warnings of its own.
        validation = ArgumentSpecValidator(with_auth_options(module_file.ARGUMENT_SPEC)).validate(dict(self._task.args))
        if validation.error_messages:
            msg = validation.errors.msg
            if isinstance(validation.errors[0], UnsupportedError):
                msg = 'Unsupported parameters for ({0}) module: {1}'.format(MODULE, msg)
            return remove_values({'failed': True, 'msg': msg}, validation._no_log_values)
        params = validation.validated_parameters
        if params['prestart_worker']:
            final = module_file.prestart_final(params)
        else:
            final, warning = ask_worker(MODULE, params, bool(self._task.check_mode), bool(self._task.diff),
                                        params.get('token_cache_dir'))
            if final is None:  # no worker took the call: the module runs it (with the warning, when it had been taken)
                result = super().run(tmp, task_vars)
                if warning:
                    result['warnings'] = [warning] + list(result.get('warnings') or [])
                return result
        # As _final.exit_with ends a module process: the final's warnings first, then the result's own.
        result = dict(final['result'])
        warnings = list(final.get('warnings') or ()) + list(result.pop('warnings', None) or ())
        if warnings:
            result['warnings'] = warnings
        if final['failed']:
            result['failed'] = True
        return remove_values(result, validation._no_log_values)

    def _on_controller(self, task_vars):
        """Whether this call can go to the worker from here: it asks for the persistent worker, and the module would run
        on this machine, as this user, in this environment and with this Python."""
        try:
            if not boolean(self._task.args.get('persistent_worker', False), strict=True):
                return False
        except TypeError:
            return False  # the module reports the bad value
        if source_root() is None:
            return False  # not an installed collection: a worker could not import this code
        if self._task.async_val or self._play_context.become or getattr(self._connection, 'transport', None) != 'local':
            return False
        environment: dict = {}
        self._compute_environment_string(environment)
        if environment:
            return False
        host_vars = task_vars
        if self._task.delegate_to:
            host_vars = (task_vars.get('ansible_delegated_vars') or {}).get(self._task.delegate_to) or {}
        interpreter = host_vars.get('ansible_python_interpreter')
        if interpreter is None:
            return False  # discovered on the host: not necessarily this Python
        interpreter = self._templar.template(interpreter)
        return interpreter in (sys.executable, task_vars.get('ansible_playbook_python'))
