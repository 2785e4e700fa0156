# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action of ``oidc_federation.azure.gitlab_oidc_result`` (documented in plugins/modules/gitlab_oidc_result.py).

Runs on the controller, without a module process: reads this host's entry written by ``gitlab_oidc_projects``
(``results_dir``) or takes it from ``outcome``, sets it as a fact, and reports the project's changed/failed.
"""

from __future__ import annotations


from ansible_collections.oidc_federation.azure.plugins.module_utils._results import read_result
from ansible_collections.oidc_federation.azure.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    """Set one project's outcome as a fact, with its changed and failed status."""

    ARGUMENT_SPEC = {
        'results_dir': {'type': 'path'},
        'outcome': {'type': 'dict'},
        'key': {'type': 'str'},
        'fact': {'type': 'str', 'default': 'gitlab_oidc_result'},
    }
    CONSTRAINTS = {'mutually_exclusive': [('results_dir', 'outcome')], 'required_one_of': [('results_dir', 'outcome')]}

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = self._args()
        key = args.get('key') or (task_vars or {}).get('inventory_hostname')
        outcome = args.get('outcome')
        if outcome is None:
            try:
                outcome = read_result(args['results_dir'], key)
            except (OSError, ValueError) as exc:
                result.update(failed=True, msg='gitlab_oidc_result: no result of project {0} in {1} ({2}). Fix: run '
                              'oidc_federation.azure.gitlab_oidc_projects with results_dir first, for this project.'.format(
                                  key, args['results_dir'], exc))
                return result
        if not isinstance(outcome.get('result'), dict):
            result.update(failed=True, msg='gitlab_oidc_result: the outcome of project {0} has no result'.format(key))
            return result
        result['ansible_facts'] = {args['fact']: outcome['result']}
        result['changed'] = bool(outcome.get('changed'))
        if outcome.get('diff') and self._task.diff:
            result['diff'] = outcome['diff']
        if outcome.get('failed'):
            result['failed'] = True
            result['msg'] = outcome.get('msg') or 'project {0} failed'.format(key)
        return result
