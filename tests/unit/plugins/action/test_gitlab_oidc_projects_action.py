# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The gitlab_oidc_projects action: when a call goes from the controller to the persistent worker (and when it runs
the module instead), and what it returns then: the module's validation and messages, no_log values masked, warnings
kept, the module as the fall-back when no worker takes the call. End to end (both ways on the sandbox, the same
state): tests/e2e/test_e2e_bulk.py."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from ansible.plugins.action.normal import ActionModule as NormalAction

from ansible_collections.oidc_federation.azure.plugins.action import gitlab_oidc_projects as action_file
from ansible_collections.oidc_federation.azure.plugins.action.gitlab_oidc_projects import ActionModule
from ansible_collections.oidc_federation.azure.plugins.module_utils import _worker

PROJECT = {'project_path': 'group/app', 'branches': ['main']}
TOKEN = 'glpat-secret-value-1234'


class _Templar:
    def template(self, value):
        return value


def _action(args=None, *, environment=(), become=False, transport='local', async_val=0, delegate_to='localhost',
            check_mode=False, diff=False):
    task = SimpleNamespace(args=dict({'projects': [PROJECT], 'persistent_worker': True} if args is None else args),
                           environment=list(environment), async_val=async_val, delegate_to=delegate_to,
                           check_mode=check_mode, diff=diff, action='oidc_federation.azure.gitlab_oidc_projects')
    connection = SimpleNamespace(transport=transport, _shell=SimpleNamespace(env_prefix=lambda **kw: ''))
    play_context = SimpleNamespace(become=become)
    return ActionModule(task, connection, play_context, loader=None, templar=_Templar(), shared_loader_obj=None)


def _vars(interpreter=sys.executable, delegated=True):
    host = {} if interpreter is None else {'ansible_python_interpreter': interpreter}
    if delegated:
        return {'ansible_playbook_python': sys.executable, 'ansible_delegated_vars': {'localhost': host}}
    return dict(host, ansible_playbook_python=sys.executable)


@pytest.fixture
def installed(monkeypatch):
    """As if imported from an installed collection (the unit tests import it from the checkout's symlink)."""
    monkeypatch.setattr(action_file, 'source_root', lambda: '/collections')


def test_a_local_call_of_this_python_with_the_worker_goes_from_the_controller(installed):
    assert _action()._on_controller(_vars()) is True
    assert _action(delegate_to=None)._on_controller(_vars(delegated=False)) is True
    # ansible_python_interpreter: "{{ ansible_playbook_python }}" (templated) or that value itself
    assert _action()._on_controller(_vars(interpreter='/other/bin/python') | {'ansible_playbook_python': '/other/bin/python'})
    assert _action(args={'projects': [], 'persistent_worker': 'yes', 'prestart_worker': True})._on_controller(_vars())


@pytest.mark.parametrize('change', [
    {'args': {'projects': [PROJECT]}},                               # no persistent worker: the call is the module's
    {'args': {'projects': [PROJECT], 'persistent_worker': False}},
    {'args': {'projects': [PROJECT], 'persistent_worker': 'perhaps'}},  # the module reports the bad value
    {'environment': [{'HTTPS_PROXY': 'http://proxy:3128'}]},           # the module's process would see it
    {'become': True},
    {'transport': 'ssh'},
    {'async_val': 30},
])
def test_any_other_call_runs_the_module(installed, change):
    assert _action(**change)._on_controller(_vars()) is False


@pytest.mark.parametrize('interpreter', [None, '/usr/bin/python3', 'auto'])
def test_another_or_a_discovered_python_runs_the_module(installed, interpreter):
    assert _action()._on_controller(_vars(interpreter=interpreter)) is False


def test_code_not_from_an_installed_collection_runs_the_module(monkeypatch):
    monkeypatch.setattr(action_file, 'source_root', lambda: None)
    assert _action()._on_controller(_vars()) is False


def _asked(monkeypatch, answer):
    calls = []

    def ask(module, params, check_mode, diff_mode, token_cache_dir):
        calls.append({'module': module, 'params': params, 'check_mode': check_mode, 'diff_mode': diff_mode,
                      'token_cache_dir': token_cache_dir})
        return answer

    monkeypatch.setattr(action_file, 'ask_worker', ask)
    return calls


def test_the_worker_gets_the_validated_options_and_its_result_is_returned_with_no_log_values_masked(installed, monkeypatch):
    final = {'failed': False, 'warnings': ['group/app: careful'],
             'result': {'changed': True, 'projects': {'group/app': {'msg': 'token ' + TOKEN}}, 'warnings': ['late']}}
    calls = _asked(monkeypatch, (final, None))
    action = _action({'projects': [PROJECT], 'persistent_worker': True, 'gitlab_token': TOKEN, 'concurrency': '4',
                      'token_cache_dir': '/run/cache'}, check_mode=True, diff=True)
    result = action.run(task_vars=_vars())
    assert result['changed'] is True and 'failed' not in result
    assert result['projects']['group/app']['msg'] == 'token ********'
    assert result['warnings'] == ['group/app: careful', 'late']
    (call,) = calls
    assert call['module'] == 'gitlab_oidc_projects' and call['check_mode'] is True and call['diff_mode'] is True
    assert call['token_cache_dir'] == '/run/cache'
    params = call['params']  # as AnsibleModule parses them: types converted, defaults filled, fallbacks read
    assert params['concurrency'] == 4 and params['state'] == 'present' and params['graph_tenant_size'] == 'S'
    assert params['projects'][0]['project_path'] == 'group/app' and params['auth_source'] == 'auto'


def test_a_failure_of_the_worker_is_the_task_s_failure(installed, monkeypatch):
    _asked(monkeypatch, ({'failed': True, 'warnings': [], 'result': {'msg': 'concurrency: must be at least 1'}}, None))
    result = _action({'projects': [PROJECT], 'persistent_worker': True, 'concurrency': 0}).run(task_vars=_vars())
    assert result == {'failed': True, 'msg': 'concurrency: must be at least 1'}


def test_options_the_module_refuses_fail_as_the_module_would_before_any_call(installed, monkeypatch):
    calls = _asked(monkeypatch, (None, None))
    result = _action({'projects': [PROJECT], 'persistent_worker': True, 'no_such_option': 1}).run(task_vars=_vars())
    assert result['failed'] is True
    assert result['msg'].startswith('Unsupported parameters for (gitlab_oidc_projects) module: no_such_option.')
    result = _action({'projects': [{'branches': ['main']}], 'persistent_worker': True}).run(task_vars=_vars())
    assert result['failed'] is True and 'project_path' in result['msg'], result
    # a refused value that is also a secret is masked, as the module masks it
    result = _action({'projects': [PROJECT], 'persistent_worker': True, 'gitlab_token': TOKEN,
                      'concurrency': TOKEN}).run(task_vars=_vars())
    assert result['failed'] is True and TOKEN not in result['msg'] and '********' in result['msg'], result
    assert calls == []


def test_a_call_no_worker_takes_runs_the_module(installed, monkeypatch):
    ran = []

    def module_run(self, tmp=None, task_vars=None):
        ran.append(task_vars)
        return {'changed': False, 'warnings': ['from the module']}

    monkeypatch.setattr(NormalAction, 'run', module_run)
    _asked(monkeypatch, (None, None))
    assert _action().run(task_vars=_vars()) == {'changed': False, 'warnings': ['from the module']}
    _asked(monkeypatch, (None, 'persistent_worker: the worker stopped; the module ran the request itself'))
    result = _action().run(task_vars=_vars())
    assert result['warnings'] == ['persistent_worker: the worker stopped; the module ran the request itself',
                                  'from the module']
    assert len(ran) == 2
    # and a call that cannot go from the controller never asks a worker from here
    _asked(monkeypatch, AssertionError('asked'))
    assert _action(become=True).run(task_vars=_vars())['changed'] is False and len(ran) == 3


def test_prestart_from_the_controller(installed, monkeypatch):
    started = []
    monkeypatch.setattr(_worker, 'prestart', lambda directory: started.append(directory) or {'worker': 'started'})
    args = {'projects': [], 'persistent_worker': True, 'prestart_worker': True, 'token_cache_dir': '/run/cache'}
    result = _action(args).run(task_vars=_vars())
    assert result == {'changed': False, 'projects': {}, 'summary': {'projects': 0, 'changed': 0, 'failed': 0},
                      'worker': 'started'}
    assert started == ['/run/cache']
    monkeypatch.setattr(_worker, 'prestart', lambda directory: {'worker': 'unavailable', 'reason': 'no locks'})
    result = _action(args).run(task_vars=_vars())
    assert result['worker'] == 'unavailable' and 'no worker could be started (no locks)' in result['warnings'][0]
    result = _action(dict(args, projects=[PROJECT])).run(task_vars=_vars())
    assert result['failed'] is True and result['msg'].startswith('prestart_worker: starts the worker and reconciles nothing')
