# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action of ``oidc_federation.azure.gitlab_oidc_play_projects`` (documented in plugins/modules/gitlab_oidc_play_projects.py).

Runs once on the controller, without a module process: resolves one variable (the project of a host, as the role
describes it) in the context of every given host of the play, as a task of that host would see it (inventory, play,
role defaults and vars, facts), so that a play of 1,000 projects does not pay 1,000 forked ``set_fact`` tasks to
hand every project to one ``gitlab_oidc_projects`` call.

It uses the variable manager of the running play (``Task.get_variable_manager``, ``VariableManager.get_vars``: what
the strategy itself calls for every host and task) and the task's templar. A host whose variable cannot be resolved
is not lost: its failure goes to ``results_dir``, where ``gitlab_oidc_result`` reports it on that host.
"""

from __future__ import annotations

from ansible.errors import AnsibleError

from ansible_collections.oidc_federation.azure.plugins.module_utils._project_options import variable_fields
from ansible_collections.oidc_federation.azure.plugins.module_utils._results import failed_entry, write_results
from ansible_collections.oidc_federation.azure.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    """Resolve a variable for every host of the play, each in its own context."""

    ARGUMENT_SPEC = {
        'variable': {'type': 'str'},
        'variable_prefix': {'type': 'str'},
        'hosts': {'type': 'list', 'elements': 'str'},
        'results_dir': {'type': 'path'},
    }
    CONSTRAINTS = {'mutually_exclusive': [('variable', 'variable_prefix')], 'required_one_of': [('variable', 'variable_prefix')]}

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        args = self._args()
        variable, prefix = args.get('variable'), args.get('variable_prefix')
        fields = variable_fields() if prefix is not None else ()
        # ansible_play_batch: the hosts of this batch still running (with serial, the others are not due yet);
        # without serial, every host of the play still running
        batch = list(task_vars.get('ansible_play_batch') or [])
        hosts = args['hosts'] if args.get('hosts') is not None else batch
        try:
            manager = self._task.get_variable_manager()
            play = self._task.get_play()
            inventory = manager._inventory  # pylint: disable=protected-access
        except AttributeError as exc:
            raise AnsibleError('gitlab_oidc_play_projects: this ansible-core gives an action no access to the play\'s '
                               'variables ({0}). Fix: use the role\'s per_host strategy.'.format(exc)) from exc
        play_hosts = batch or hosts
        play_hosts_all = list(task_vars.get('ansible_play_hosts_all') or play_hosts)
        projects = []
        failed = {}
        for name in hosts:
            host = inventory.get_host(name)
            if host is None:
                failed[name] = 'gitlab_oidc_play_projects: {0} is not a host of the inventory'.format(name)
                continue
            try:
                host_vars = manager.get_vars(play=play, host=host, task=self._task, include_hostvars=True,
                                             _hosts=play_hosts, _hosts_all=play_hosts_all)
                if prefix is not None:
                    # each field's own value, templated where it is a template: a composite template of every field
                    # would be compiled again for every host (about 5 ms each)
                    raw = {'key': name}
                    raw.update((field, host_vars[prefix + field]) for field in fields if prefix + field in host_vars)
                elif variable not in host_vars:
                    raise AnsibleError('{0} is not defined'.format(variable))
                else:
                    raw = host_vars[variable]
                templar = self._templar.copy_with_new_env(available_variables=host_vars)
                projects.append(templar.template(raw))
            except AnsibleError as exc:
                failed[name] = 'the variables of project {0} cannot be resolved: {1}'.format(name, exc)
        result['changed'] = False
        result['projects'] = projects
        result['failed_hosts'] = failed
        if failed:
            if args.get('results_dir'):
                try:
                    write_results(args['results_dir'], {name: failed_entry(name, msg) for name, msg in failed.items()})
                except OSError as exc:
                    result.update(failed=True, msg='results_dir: cannot write to {0}: {1}. Fix: give an existing, '
                                  'writable directory.'.format(args['results_dir'], exc.strerror or exc))
            else:
                result.update(failed=True, msg='{0} of {1} host(s) cannot be described: {2}'.format(
                    len(failed), len(hosts), ' | '.join(failed.values())))
        return result
