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

With ``argument_spec_file`` it also validates every host's variables against a role's argument spec, as Ansible's
automatic role validation does (the same options taken from the host's variables and templated, the same
``ArgumentSpecValidator``, the same message), in this one task instead of a forked validation task per host (about
22 s at 1,000 hosts, docs/benchmarks.md).
"""

from __future__ import annotations

from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values

from ansible_collections.oidc_federation.azure.plugins.module_utils._project_options import PROJECT_OPTIONS, variable_fields
from ansible_collections.oidc_federation.azure.plugins.module_utils._results import failed_entry, write_results
from ansible_collections.oidc_federation.azure.plugins.plugin_utils._controller_action import ControllerAction


class ActionModule(ControllerAction):
    """Resolve a variable for every host of the play, each in its own context."""

    ARGUMENT_SPEC = {
        'variable': {'type': 'str'},
        'variable_prefix': {'type': 'str'},
        'hosts': {'type': 'list', 'elements': 'str'},
        'results_dir': {'type': 'path'},
        'argument_spec_file': {'type': 'path'},
        'argument_spec_entry_point': {'type': 'str', 'default': 'main'},
        'describe': {'type': 'bool', 'default': True},
        'calls': {'type': 'str', 'default': 'one', 'choices': ['one', 'per_host']},
    }
    CONSTRAINTS = {'mutually_exclusive': [('variable', 'variable_prefix')],
                   'required_one_of': [('variable', 'variable_prefix')],
                   'required_if': [('describe', False, ('argument_spec_file',))]}

    def _role_spec(self, path, entry_point):
        """The options of one entry point of a role's argument spec file (meta/argument_specs.yml)."""
        try:
            data = self._loader.load_from_file(path)
        except AnsibleError as exc:
            raise AnsibleError('argument_spec_file: cannot read {0}: {1}. Fix: give the role\'s meta/argument_specs.yml, '
                               'for example "{{{{ role_path }}}}/meta/argument_specs.yml".'.format(path, exc)) from exc
        try:
            options = data['argument_specs'][entry_point].get('options') or {}
        except (KeyError, TypeError, AttributeError) as exc:
            raise AnsibleError('argument_spec_file: {0} has no argument_specs.{1}. Fix: give the file of the role and the '
                               'name of its entry point in argument_spec_entry_point.'.format(path, entry_point)) from exc
        if not isinstance(options, dict):
            raise AnsibleError('argument_spec_file: argument_specs.{0}.options of {1} is not a mapping'.format(entry_point, path))
        return options

    @staticmethod
    def _errors(validator, values, secret_names):
        """Ansible's messages for the spec's options among ``values`` (templated), secret values masked; [] if valid."""
        spec = validator.argument_spec
        errors = validator.validate({option: values[option] for option in spec if option in values}).error_messages
        secrets = [str(values[option]) for option in secret_names if values.get(option) not in (None, '')]
        return [remove_values(message, secrets) for message in errors]

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        args = self._args()
        variable, prefix, describe, calls = args.get('variable'), args.get('variable_prefix'), args['describe'], args['calls']
        fields = variable_fields() if prefix is not None else ()
        spec = self._role_spec(args['argument_spec_file'], args['argument_spec_entry_point']) if args.get('argument_spec_file') else {}
        validator = ArgumentSpecValidator(spec) if args.get('argument_spec_file') else None
        # with one call for the play (bulk), the options that are not a project's fields are that call's settings,
        # taken from the host that runs it (this task's host): if they are invalid there, no project can be reconciled.
        # With a call per host (per_host), each host's settings are its own, and fail that host only.
        settings = None
        if validator is not None and describe and prefix is not None and calls == 'one':
            settings = ArgumentSpecValidator({option: spec[option] for option in spec
                                              if not option.startswith(prefix) or option[len(prefix):] not in fields})
        # the variables each host's values are read from: the spec's options, then the project's other fields
        wanted = list(spec) + [prefix + field for field in fields if prefix + field not in spec]
        # the values never shown in a validation message: the spec's no_log options and the project's secrets
        secret_names = {name for name, option in spec.items() if isinstance(option, dict) and option.get('no_log')}
        secret_names.update(prefix + name for name, option in PROJECT_OPTIONS.items() if prefix is not None and option.get('no_log'))
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
        project_index = {}  # host -> position of its project in projects
        failed = {}
        invalid_settings = []
        for name in hosts:
            host = inventory.get_host(name)
            if host is None:
                failed[name] = 'gitlab_oidc_play_projects: {0} is not a host of the inventory'.format(name)
                continue
            try:
                host_vars = manager.get_vars(play=play, host=host, task=self._task, include_hostvars=True,
                                             _hosts=play_hosts, _hosts_all=play_hosts_all)
                templar = self._templar.copy_with_new_env(available_variables=host_vars)
                # the spec's options and the project's fields found in the host's variables, in one template call:
                # each value templated where it is a template (a composite template of every field would be compiled
                # again for every host, about 5 ms each)
                values = templar.template({option: host_vars[option] for option in wanted if option in host_vars})
                if validator is not None:
                    # what the automatic role validation does: those options, templated, validated
                    errors = self._errors(validator, values, secret_names)
                    if errors:
                        failed[name] = 'Validation of arguments failed:\n{0}'.format('\n'.join(errors))
                        if settings is not None and name == task_vars.get('inventory_hostname'):
                            invalid_settings = self._errors(settings, values, secret_names)
                        continue
                if not describe:
                    continue
                if prefix is not None:
                    project = {'key': name}
                    project.update((field, values[prefix + field]) for field in fields if prefix + field in values)
                elif variable not in host_vars:
                    raise AnsibleError('{0} is not defined'.format(variable))
                else:
                    project = templar.template(host_vars[variable])
                project_index[name] = len(projects)
                projects.append(project)
            except AnsibleError as exc:
                failed[name] = 'the variables of project {0} cannot be resolved: {1}'.format(name, exc)
        result['changed'] = False
        result['projects'] = projects
        if describe:
            # where each host's project is, for a task of each host (one call per host): one lookup, no search
            result['project_index'] = project_index
        result['failed_hosts'] = failed
        if invalid_settings:
            result.update(failed=True, msg='The settings of this run, taken from host {0} (the one that makes the call '
                          'for every project), are invalid:\n{1}\nFix: correct them (they are usually set for the whole '
                          'play or group).'.format(task_vars.get('inventory_hostname'), '\n'.join(invalid_settings)))
            return result
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
