# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action of ``oidc_federation.azure.gitlab_oidc_report`` (documented in plugins/modules/gitlab_oidc_report.py).

Runs once on the controller, without a module process: gathers the outcome of every project of the play (from the
run's result files, else from the host's fact or registered call, else a placeholder for a host that never reached
the module), summarises them, writes the report (Markdown from a template, JSON) and publishes it as statistics of
the run. One task instead of a task per step: each run-once task costs about a second at 1,000 hosts.
"""

from __future__ import annotations

import datetime
import json
import os

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.oidc_federation.azure.plugins.module_utils._results import atomic_write, read_result
from ansible_collections.oidc_federation.azure.plugins.plugin_utils._controller_action import ControllerAction

try:  # ansible-core >= 2.19: a template read from a file must be trusted explicitly
    from ansible.template import trust_as_template
except ImportError:  # pragma: no cover - older ansible-core trusts every string
    def trust_as_template(value):
        return value


class ActionModule(ControllerAction):
    """Report every project of the play at once."""

    ARGUMENT_SPEC = {
        'results_dir': {'type': 'path', 'required': True},
        'hosts': {'type': 'list', 'elements': 'str'},
        'state': {'type': 'str', 'choices': ['present', 'absent'], 'default': 'present'},
        'fact': {'type': 'str', 'default': 'gitlab_oidc_result'},
        'registered': {'type': 'str'},
        'project_path_variable': {'type': 'str'},
        'report_dir': {'type': 'path'},
        'report_name': {'type': 'str', 'default': 'report'},
        'markdown_template': {'type': 'path'},
        'stats': {'type': 'str', 'default': 'gitlab_oidc_report'},
        'generator': {'type': 'str', 'default': 'oidc_federation.azure.gitlab_oidc'},
    }
    CONSTRAINTS = {'required_by': {'markdown_template': 'report_dir'}}

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        args = self._args()
        batch = list(task_vars.get('ansible_play_batch') or [])
        hosts = args['hosts'] if args.get('hosts') is not None else list(task_vars.get('ansible_play_hosts_all') or batch)
        try:
            projects = self._projects(args, hosts, set(task_vars.get('ansible_play_hosts') or batch), task_vars)
        except (OSError, ValueError) as exc:
            result.update(failed=True, msg='gitlab_oidc_report: cannot read the results in {0} ({1}).'.format(
                args['results_dir'], exc))
            return result
        report = {
            'generated_at': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
            'generator': args['generator'],
            'state': args['state'],
            'check_mode': bool(task_vars.get('ansible_check_mode', self._play_context.check_mode)),
            'summary': {
                'projects': len(projects),
                'changed': sum(1 for p in projects if p.get('changed')),
                'failed': sum(1 for p in projects if p.get('status') == 'failed'),
            },
            'projects': projects,
        }
        result.update(changed=False, report=report, files=[])
        if args.get('report_dir'):
            try:
                result['files'] = self._write(report, args)
            except OSError as exc:
                result.update(failed=True, msg='report_dir: cannot write the report to {0}: {1}. Fix: give a writable '
                              'directory, or do not write a report.'.format(args['report_dir'], exc.strerror or exc))
                return result
        if args['stats']:
            result['ansible_stats'] = {'data': {args['stats']: report}, 'per_host': False, 'aggregate': False}
        return result

    def _projects(self, args, hosts, active, task_vars):
        """Every host's project, in the order of ``hosts``: its entry in the result files (the hosts of this batch that
        reached the module or failed the validation before it, failed ones included), else its fact (hosts of earlier
        batches still in the play), else its registered call's entry, else a placeholder naming its project."""
        hostvars = task_vars.get('hostvars') or {}
        projects = []
        for host in hosts:
            try:
                entry = read_result(args['results_dir'], host).get('result')
            except FileNotFoundError:
                entry = None
            if not isinstance(entry, dict):
                entry = self._from_hostvars(hostvars, host, args, host in active)
            projects.append(dict(entry, host=host))
        return projects

    def _from_hostvars(self, hostvars, host, args, active):
        """The project of a host without a result file in this run's directory (looked up: a few ms per host)."""
        try:
            host_vars = hostvars[host]
        except (KeyError, AnsibleError):
            host_vars = {}
        fact = self._lookup(host_vars, args['fact']) if active else None
        if isinstance(fact, dict):
            return fact
        if args.get('registered'):
            call = self._lookup(host_vars, args['registered'])
            entry = ((call or {}).get('projects') or {}).get(host) if isinstance(call, dict) else None
            if isinstance(entry, dict) and isinstance(entry.get('result'), dict):
                return entry['result']
        path = self._lookup(host_vars, args['project_path_variable']) if args.get('project_path_variable') else None
        return {'project_path': path or host, 'status': 'failed', 'changed': False, 'credentials': [],
                'role_assignments': []}

    @staticmethod
    def _lookup(host_vars, name):
        """A host's variable, templated; None when it is undefined or cannot be resolved."""
        try:
            return host_vars.get(name)
        except AnsibleError:
            return None

    def _write(self, report, args):
        """Write ``<report_name>.json`` and, with a template, ``<report_name>.md`` into ``report_dir``; the paths."""
        directory = args['report_dir']
        os.makedirs(directory, mode=0o755, exist_ok=True)
        written = []
        if args.get('markdown_template'):
            source = self._find_needle('templates', args['markdown_template'])
            with open(source, 'rb') as handle:
                template = to_text(handle.read(), errors='surrogate_or_strict')
            templar = self._templar.copy_with_new_env(available_variables={'report': report,
                                                                           'report_name': args['report_name']})
            text = templar.template(trust_as_template(template), preserve_trailing_newlines=True,
                                    escape_backslashes=False)
            path = os.path.join(directory, args['report_name'] + '.md')
            atomic_write(path, to_text(text), prefix='.report-', mode=0o644)
            written.append(path)
        path = os.path.join(directory, args['report_name'] + '.json')
        atomic_write(path, json.dumps(report, indent=2, sort_keys=True) + '\n', prefix='.report-', mode=0o644)
        written.append(path)
        return written
