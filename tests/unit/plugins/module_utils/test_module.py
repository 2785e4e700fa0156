# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""AzureModule and ArgumentSpec: option/constraint merging, failing before any SDK import, the async run loop,
error mapping to fail_json, diff/check mode, redaction, and gather_limited."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils import _module as module_utils
from ansible_collections.oidc_federation.azure.plugins.module_utils._auth_spec import AUTH_ARGSPEC
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import (
    AzureApiError,
    MissingLibraryError,
    ValidationError,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._module import (
    AUTH_SPEC,
    ArgumentSpec,
    AzureModule,
    gather_limited,
)

COLLECTIONS_ROOT = Path(module_utils.__file__).parents[5]
SDK_TOP_LEVEL = ('azure', 'msgraph', 'msgraph_core', 'kiota_abstractions', 'kiota_http', 'kiota_authentication_azure',
                 'kiota_serialization_json', 'httpx', 'aiohttp', 'msal')
JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwcm9qZWN0In0.c2lnbmF0dXJlLXZhbHVl'


class FakeClients:
    """Stands in for Clients: records settings and closing."""

    instances = []

    def __init__(self, settings):
        self.settings = settings
        self.closed = False
        FakeClients.instances.append(self)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        self.closed = True


def make_main(core, argument_spec=None, **kwargs):
    def main():
        module = AzureModule(argument_spec=argument_spec or {'name': {'type': 'str', 'required': True}}, **kwargs)
        module.run(core, clients_factory=FakeClients)
    return main


# --- ArgumentSpec -------------------------------------------------------------------------------------------------

def check_a(params):
    if params.get('a') == 'bad':
        raise ValidationError('a is bad')


def check_b(params):
    raise ValidationError('b always fails')


def test_argument_spec_merge_keeps_options_constraints_and_checks():
    one = ArgumentSpec({'a': {'type': 'str'}, 'b': {'type': 'str'}}, mutually_exclusive=[('a', 'b')],
                       required_by={'a': 'b'}, checks=[check_a])
    two = ArgumentSpec({'c': {'type': 'str'}}, required_if=[('c', 'x', ('a',))], required_by={'a': ['c']},
                       required_one_of=[('a', 'c')], required_together=[('b', 'c')], checks=[check_b])
    merged = one.merge(two)
    kwargs = merged.ansible_kwargs()
    assert set(kwargs['argument_spec']) == {'a', 'b', 'c'}
    assert kwargs['mutually_exclusive'] == [['a', 'b']]
    assert kwargs['required_if'] == [['c', 'x', ('a',)]]
    assert kwargs['required_one_of'] == [['a', 'c']] and kwargs['required_together'] == [['b', 'c']]
    assert kwargs['required_by'] == {'a': ['b', 'c']}
    assert merged.checks == [check_a, check_b]
    with pytest.raises(ValidationError, match='a is bad'):
        merged.run_checks({'a': 'bad'})
    with pytest.raises(ValidationError, match='b always fails'):
        merged.run_checks({'a': 'good'})
    assert one.ansible_kwargs()['argument_spec'] is not one.argument_spec  # callers cannot mutate the spec


def test_argument_spec_merge_refuses_duplicate_options():
    with pytest.raises(ValueError, match='tenant_id'):
        AUTH_SPEC.merge(ArgumentSpec({'tenant_id': {'type': 'str'}}))


def test_auth_spec_carries_the_auth_check():
    assert set(AUTH_SPEC.argument_spec) == set(AUTH_ARGSPEC)
    with pytest.raises(ValidationError, match='auth_source=client_secret needs'):
        AUTH_SPEC.run_checks({'auth_source': 'client_secret'})


# --- failing before any SDK import (fresh interpreters) -------------------------------------------------------------

PROBE = textwrap.dedent('''
    import json, sys
    from ansible.module_utils.testing import patch_module_args
    from ansible_collections.oidc_federation.azure.plugins.module_utils._module import AzureModule

    async def core(module, clients):
        clients.identity_credential  # builds the azure-identity credential (imports the SDK), no network
        return module.result(False)

    args, top_level = json.loads(sys.argv[1]), tuple(json.loads(sys.argv[2]))
    try:
        with patch_module_args(args):
            AzureModule(argument_spec={'name': {'type': 'str', 'required': True}, 'other': {'type': 'str'}},
                        mutually_exclusive=[('name', 'other')]).run(core)
    except SystemExit:
        pass
    sys.stderr.write(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in top_level)))
''')


def probe(args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(COLLECTIONS_ROOT), os.environ.get('PYTHONPATH')) if p))
    proc = subprocess.run([sys.executable, '-c', PROBE, json.dumps(args), json.dumps(SDK_TOP_LEVEL)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    return json.loads(proc.stdout), json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize('args, message', [
    ({'name': 'x', 'auth_source': 'client_secret', 'client_id': 'c'}, 'auth_source=client_secret needs tenant_id'),
    ({'auth_source': 'cli'}, 'missing required arguments: name'),
    ({'name': 'x', 'other': 'y', 'auth_source': 'cli'}, 'mutually exclusive'),
    ({'name': 'x', 'auth_source': 'cli', 'cloud_environment': 'Mars'}, 'cloud_environment'),
    ({'name': 'x', 'auth_source': 'cli', 'graph_endpoint': 'http://127.0.0.1:1'}, 'graph_endpoint must be an https URL'),
    ({'name': 'x', 'auth_source': 'federated_token', 'tenant_id': 't', 'client_id': 'c', 'federated_token_file': '/nope'},
     "federated_token_file '/nope' does not exist"),
    ({'name': 'x', 'auth_source': 'cli', 'token_cache_dir': 'relative/tokens'}, 'token_cache_dir must be an absolute path'),
])
def test_bad_options_fail_before_any_sdk_import(args, message):
    result, loaded = probe(args)
    assert result['failed'] is True and message in result['msg']
    assert 'exception' not in result
    assert loaded == []


def test_probe_sees_sdk_imports_when_options_are_good():
    """Positive control: the same probe does report SDK modules once a client is built."""
    result, loaded = probe({'name': 'x', 'auth_source': 'cli'})
    assert result.get('failed') is not True, result
    assert 'azure.identity.aio' in loaded


# --- run: results ---------------------------------------------------------------------------------------------------

def test_run_returns_result_and_closes_clients(run_module):
    FakeClients.instances.clear()

    async def core(module, clients):
        assert clients.settings is module.auth
        return module.result(True, diff=({'a': 1}, {'a': 2}), object={'name': module.params['name']})

    code, result = run_module(make_main(core), {'name': 'x', 'auth_source': 'cli'})
    assert code == 0 and result['changed'] is True and result['object'] == {'name': 'x'}
    assert 'diff' not in result
    assert FakeClients.instances[-1].closed is True


def test_diff_only_in_diff_mode_and_check_mode_visible(run_module):
    async def core(module, clients):
        return module.result(False, diff=(None, {'a': 2}), check_mode=module.check_mode)

    code, result = run_module(make_main(core), {'name': 'x', 'auth_source': 'cli', '_ansible_diff': True, '_ansible_check_mode': True})
    assert code == 0 and result['diff'] == {'before': {}, 'after': {'a': 2}}
    assert result['check_mode'] is True and result['changed'] is False


def test_module_exit_inside_core_closes_clients_before_printing(run_module):
    seen = {}

    async def core(module, clients):
        original = module.ansible.exit_json

        def exit_json(**kwargs):
            seen['closed_when_printing'] = clients.closed
            original(**kwargs)

        module.ansible.exit_json = exit_json
        try:
            module.exit(True, diff={'before': 'x', 'after': 'y'}, value=1)
        except Exception:  # a module's broad except must not swallow the exit
            seen['swallowed'] = True
        return module.result(False)

    code, result = run_module(make_main(core), {'name': 'x', 'auth_source': 'cli'})
    assert code == 0 and result['changed'] is True and result['value'] == 1
    assert seen == {'closed_when_printing': True}


# --- run: failures ------------------------------------------------------------------------------------------------

def test_azure_api_error_fails_without_traceback(run_module):
    async def core(module, clients):
        raise AzureApiError('Another object with the same value for property uniqueName already exists.',
                            operation='create application', target='uniqueName=x', service='graph', status=400,
                            code='Request_BadRequest', details=('ObjectConflict',))

    code, result = run_module(make_main(core), {'name': 'x', 'auth_source': 'cli'})
    assert code == 1 and result['failed'] is True
    assert result['msg'] == ('create application uniqueName=x failed: Graph 400 Request_BadRequest: '
                             'Another object with the same value for property uniqueName already exists.')
    assert result['error']['details'] == ['ObjectConflict']
    assert 'exception' not in result


def test_unwrapped_sdk_error_is_still_mapped(run_module):
    class ODataError(Exception):
        response_status_code = 403
        response_headers = {}
        error = type('E', (), {'code': 'Authorization_RequestDenied', 'message': 'Insufficient privileges.', 'details': None,
                               'inner_error': None})()

    async def core(module, clients):
        raise ODataError()

    code, result = run_module(make_main(core), {'name': 'x', 'auth_source': 'cli'})
    assert code == 1 and result['msg'] == 'Azure request failed: Graph 403 Authorization_RequestDenied: Insufficient privileges.'


def test_validation_error_in_core_carries_extra(run_module):
    async def core(module, clients):
        raise ValidationError('subject and claims_matching_expression are mutually exclusive', field='subject')

    code, result = run_module(make_main(core), {'name': 'x', 'auth_source': 'cli'})
    assert code == 1 and result['msg'].startswith('subject and claims') and result['field'] == 'subject'


def test_missing_library_uses_missing_required_lib(run_module):
    async def core(module, clients):
        raise MissingLibraryError('msgraph-sdk', 'Traceback: ImportError: No module named msgraph')

    code, result = run_module(make_main(core), {'name': 'x', 'auth_source': 'cli'})
    assert code == 1 and 'Failed to import the required Python library (msgraph-sdk)' in result['msg']


def test_unexpected_error_is_reported_and_redacted(run_module):
    async def core(module, clients):
        raise KeyError('token ' + JWT)

    code, result = run_module(make_main(core), {'name': 'x', 'auth_source': 'cli'})
    assert code == 1 and result['msg'].startswith('unexpected error: KeyError')
    assert JWT not in json.dumps(result)


def test_core_must_return_a_result(run_module):
    async def core(module, clients):
        return None

    code, result = run_module(make_main(core), {'name': 'x', 'auth_source': 'cli'})
    assert code == 1 and 'instead of a result dict' in result['msg']


def test_secrets_never_appear_in_failures(run_module):
    secret = 'Sup3r-Secret-Value!'

    async def core(module, clients):
        raise AzureApiError('echo {0} and {1}'.format(secret, JWT), operation='op', service='graph', status=400)

    args = {'name': 'x', 'auth_source': 'client_secret', 'tenant_id': 't', 'client_id': 'c', 'client_secret': secret}
    code, result = run_module(make_main(core), args)
    text = json.dumps(result)
    assert code == 1 and secret not in text and JWT not in text


def test_fail_before_run_is_immediate(run_module):
    def main():
        module = AzureModule(argument_spec={}, auth=False)
        module.fail('nope ' + JWT, hint='x')

    code, result = run_module(main, {})
    assert code == 1 and result['msg'] == 'nope <redacted-jwt>' and result['hint'] == 'x'


def test_auth_false_has_no_auth_options(run_module):
    async def core(module, clients):
        return module.result(False, options=sorted(module.params), clients=clients)

    def main():
        AzureModule(argument_spec={'name': {'type': 'str'}}, auth=False).run(core)

    code, result = run_module(main, {'name': 'x'})
    assert code == 0 and result['options'] == ['name'] and result['clients'] is None


def test_module_checks_run_after_ansible_validation(run_module):
    def no_dots(params):
        if '.' in (params.get('name') or ''):
            raise ValidationError('name must not contain dots', name=params['name'])

    code, result = run_module(make_main(None, checks=[no_dots]), {'name': 'a.b', 'auth_source': 'cli'})
    assert code == 1 and result['msg'] == 'name must not contain dots' and result['name'] == 'a.b'


def test_an_ansible_module_built_with_the_same_options_is_adopted_and_another_refused(run_module):
    """gitlab_oidc_projects builds its AnsibleModule first (to offer the call to a persistent worker) and hands it to
    AzureModule, which must use it (one parse, one invocation log) and refuse one built with other options."""
    from ansible.module_utils.basic import AnsibleModule
    from ansible_collections.oidc_federation.azure.plugins.module_utils._auth_spec import with_auth_options

    spec = {'name': {'type': 'str', 'required': True}}

    async def core(module, clients):
        return module.result(False, same=module.ansible is built[0], name=module.params['name'])

    built = []

    def main():
        built.append(AnsibleModule(argument_spec=with_auth_options(spec), supports_check_mode=True))
        AzureModule(spec, ansible_module=built[0]).run(core, clients_factory=FakeClients)

    code, result = run_module(main, {'name': 'x', 'auth_source': 'cli'})
    assert code == 0 and result['same'] is True and result['name'] == 'x', result

    def other():
        module = AnsibleModule(argument_spec=with_auth_options(dict(spec, extra={'type': 'str'})))
        AzureModule(spec, ansible_module=module)

    def constrained():
        module = AnsibleModule(argument_spec=with_auth_options(spec))
        AzureModule(spec, ansible_module=module, mutually_exclusive=[('name', 'tenant_id')])

    for wrong in (other, constrained):
        with pytest.raises(ValueError, match='other options or constraints'):
            run_module(wrong, {'name': 'x', 'auth_source': 'cli'})


# --- gather_limited -------------------------------------------------------------------------------------------------

def test_gather_limited_bounds_concurrency_and_keeps_order():
    running = {'now': 0, 'max': 0}

    async def work(i):
        running['now'] += 1
        running['max'] = max(running['max'], running['now'])
        await asyncio.sleep(0.001 * (10 - i))
        running['now'] -= 1
        return i * i

    results = asyncio.run(gather_limited([work(i) for i in range(10)], limit=3))
    assert results == [i * i for i in range(10)]
    assert running['max'] == 3


def test_gather_limited_starts_factories_lazily():
    started = []

    def factory(i):
        async def go():
            started.append(i)
            await asyncio.sleep(0)
            return i
        return go

    assert asyncio.run(gather_limited([factory(i) for i in range(5)], limit=2)) == [0, 1, 2, 3, 4]
    assert started == [0, 1, 2, 3, 4]


def test_gather_limited_first_failure_cancels_the_rest():
    finished = []

    async def ok(i):
        await asyncio.sleep(0.05)
        finished.append(i)

    async def boom():
        raise AzureApiError('x', service='graph', status=400)

    async def main():
        with pytest.raises(AzureApiError):
            await gather_limited([boom()] + [ok(i) for i in range(4)], limit=2)
        await asyncio.sleep(0.1)

    asyncio.run(main())
    assert finished == []


def test_gather_limited_return_exceptions():
    async def fail():
        raise ValueError('x')

    async def ok():
        return 1

    results = asyncio.run(gather_limited([ok(), fail(), ok()], limit=1, return_exceptions=True))
    assert results[0] == 1 and isinstance(results[1], ValueError) and results[2] == 1
    with pytest.raises(ValueError):
        asyncio.run(gather_limited([], limit=0))
