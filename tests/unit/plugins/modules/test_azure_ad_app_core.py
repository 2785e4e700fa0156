# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The core behind azure_ad_app (plugins/module_utils/_graph.py): pure planning helpers, spec validation, and the
concurrent many-applications path against the sandbox."""

from __future__ import annotations

import asyncio
import sys

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils._auth import resolve_auth
from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import Clients
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import ValidationError
from ansible_collections.oidc_federation.azure.plugins.module_utils._graph import (
    MANAGED_TAG,
    ApplicationSpec,
    app_path,
    application_changes,
    desired_tags,
    ensure_application,
    ensure_applications,
    odata_string,
    resolve_application,
    specs_from_params,
)

needs_sandbox = pytest.mark.skipif('oidc_sandbox_test_fixtures' not in sys.modules,
                                   reason='the sandbox package (sandbox/oidc_sandbox) is not in this checkout')


def spec(**kwargs):
    return ApplicationSpec.from_params(dict({'unique_name': 'app-x'}, **kwargs))


# --- pure helpers -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('current,kwargs,creating,expected', [
    (None, {}, True, [MANAGED_TAG]),
    (None, {'tags': ['a', 'b']}, True, ['a', 'b', MANAGED_TAG]),
    (['u', MANAGED_TAG], {}, False, ['u', MANAGED_TAG]),                                   # tags not managed
    (['u', MANAGED_TAG], {'tags': ['a']}, False, ['u', MANAGED_TAG, 'a']),                 # merge keeps user tags
    (['u', MANAGED_TAG], {'tags': ['a'], 'purge_tags': True}, False, [MANAGED_TAG, 'a']),  # purge keeps the marker
    (['u'], {'tags': ['a'], 'purge_tags': True}, False, ['a']),                            # ...but never adds it
    (['u'], {'tags': ['u', MANAGED_TAG]}, False, ['u', MANAGED_TAG]),                      # listing it marks the app
    (['b', 'a'], {'tags': ['a', 'b', 'a']}, False, ['b', 'a']),                            # set semantics, order kept
])
def test_desired_tags(current, kwargs, creating, expected):
    assert desired_tags(current, spec(**kwargs), creating=creating) == expected


def test_application_changes_only_what_differs():
    current = {'displayName': 'X', 'description': None, 'notes': 'n', 'serviceManagementReference': '',
               'signInAudience': 'AzureADMyOrg', 'tags': ['t', MANAGED_TAG]}
    assert application_changes(current, spec()) == {}
    assert application_changes(current, spec(display_name='X', description='', notes='n', tags=['t'])) == {}
    assert application_changes(current, spec(description='', notes='')) == {'notes': None}
    assert application_changes(current, spec(display_name='Y', sign_in_audience='azureadmultipleorgs')) == {
        'displayName': 'Y', 'signInAudience': 'AzureADMultipleOrgs'}


def test_application_changes_on_creation_sends_everything_given():
    body = application_changes(None, spec(description='d', notes='', tags=['t']), creating=True)
    assert body == {'displayName': 'app-x', 'signInAudience': 'AzureADMyOrg', 'tags': ['t', MANAGED_TAG],
                    'description': 'd'}


def test_paths_and_quoting():
    assert odata_string("O'Brien") == "'O''Brien'"
    assert app_path(unique_name='a.b') == "/applications(uniqueName='a.b')"
    assert app_path(app_id='x') == "/applications(appId='x')"
    assert app_path(object_id='1') == '/applications/1'
    with pytest.raises(ValidationError):
        app_path(app_id='x', unique_name='y')


def test_specs_from_params_names_the_item():
    with pytest.raises(ValidationError) as info:
        specs_from_params([{'unique_name': 'a'}, {'unique_name': 'b', 'owners': ['nope']}])
    assert str(info.value).startswith('applications[1].owners[0]:')
    with pytest.raises(ValidationError) as info:
        specs_from_params([{'unique_name': 'a'}, {'unique_name': 'A'}])
    assert 'applications[1].unique_name' in str(info.value) and 'applications[0]' in str(info.value)
    specs = specs_from_params([{'unique_name': 'a'}, {'unique_name': 'b'}], defaults={'tags': ['team']})
    assert [s.tags for s in specs] == [('team',), ('team',)]


# --- many applications against the sandbox ------------------------------------------------------------------------

def clients_for(sb):
    params = {'auth_source': 'client_secret', 'tenant_id': sb.tenant_id, 'client_id': sb.operator.client_id,
              'client_secret': sb.operator.secret, 'authority_host': sb.url, 'graph_endpoint': sb.url,
              'resource_manager_endpoint': sb.url, 'ca_bundle': sb.ca_file}
    return Clients(resolve_auth(params, environ={}))


def writes(sb):
    return sb.control('GET', 'stats').json()['writes']


def managed_apps(sb):
    return [a for a in sb.control('GET', 'state').json()['applications'] if MANAGED_TAG in (a.get('tags') or ())]


@needs_sandbox
def test_many_applications_concurrently(clean_sandbox):
    sb = clean_sandbox
    specs = specs_from_params([{'unique_name': 'bulk-{0:02d}'.format(i), 'description': 'project {0}'.format(i)}
                               for i in range(12)], defaults={'tags': ['bulk']})

    async def scenario():
        async with clients_for(sb) as clients:
            planned = await ensure_applications(clients, specs, check_mode=True, limit=4)
            assert [r.changed for r in planned] == [True] * 12 and writes(sb) == 0
            applied = await ensure_applications(clients, specs, limit=4)
            sb.control('POST', 'stats/reset')
            again = await ensure_applications(clients, specs, limit=4)
            return applied, again

    applied, again = asyncio.run(scenario())
    assert [r.unique_name for r in applied] == [s.unique_name for s in specs]  # input order kept
    assert all(r.changed and r.app_id and r.service_principal_id for r in applied)
    assert len({r.app_id for r in applied}) == 12
    assert not any(r.changed for r in again) and writes(sb) == 0
    apps = managed_apps(sb)
    assert sorted(a['uniqueName'] for a in apps) == [s.unique_name for s in specs]
    sps = sb.control('GET', 'state').json()['service_principals']
    assert sorted(s['appId'] for s in sps if s['appId'] in {a['appId'] for a in apps}) == sorted(a['appId'] for a in apps)


@needs_sandbox
def test_racing_creators_make_one_application(clean_sandbox):
    """Two runs for the same unique name at once (two playbooks, or a retry racing the first try): one app, one SP."""
    sb = clean_sandbox
    one = spec(unique_name='raced')

    async def scenario():
        async with clients_for(sb) as clients:
            return await asyncio.gather(*(ensure_application(clients, one) for _attempt in range(4)))

    results = asyncio.run(scenario())
    assert len({r.app_id for r in results}) == 1 and len({r.service_principal_id for r in results}) == 1
    apps = [a for a in sb.control('GET', 'state').json()['applications'] if a.get('uniqueName') == 'raced']
    assert len(apps) == 1
    sps = [s for s in sb.control('GET', 'state').json()['service_principals'] if s['appId'] == apps[0]['appId']]
    assert len(sps) == 1


@needs_sandbox
def test_one_failure_does_not_stop_the_others(clean_sandbox):
    sb = clean_sandbox
    token = sb.token()
    response = sb.graph('PATCH', "/v1.0/applications(uniqueName='foreign')", token=token,
                        headers={'Prefer': 'create-if-missing'}, json={'displayName': 'foreign'})
    assert response.status_code == 201
    specs = [spec(unique_name='fine-1'), spec(unique_name='foreign', state='absent'), spec(unique_name='fine-2')]

    async def scenario():
        async with clients_for(sb) as clients:
            return await ensure_applications(clients, specs, return_exceptions=True)

    results = asyncio.run(scenario())
    assert results[0].changed and results[2].changed
    assert isinstance(results[1], ValidationError) and 'force_delete' in str(results[1])


@needs_sandbox
def test_resolve_application_by_each_key(clean_sandbox):
    sb = clean_sandbox

    async def scenario():
        async with clients_for(sb) as clients:
            created = await ensure_application(clients, spec(unique_name='keyed'))
            by_name = await resolve_application(clients, unique_name='keyed')
            by_app_id = await resolve_application(clients, app_id=created.app_id)
            by_id = await resolve_application(clients, object_id=created.object_id)
            missing = await resolve_application(clients, unique_name='nothing-here')
            return created, by_name, by_app_id, by_id, missing

    created, by_name, by_app_id, by_id, missing = asyncio.run(scenario())
    assert by_name['id'] == by_app_id['id'] == by_id['id'] == created.object_id
    assert by_name['uniqueName'] == 'keyed' and missing is None


@needs_sandbox
def test_tenant_id_from_the_token_when_the_option_is_a_domain(clean_sandbox):
    sb = clean_sandbox
    params = {'auth_source': 'client_secret', 'tenant_id': 'sandbox.onmicrosoft.com', 'client_id': sb.operator.client_id,
              'client_secret': sb.operator.secret, 'authority_host': sb.url, 'graph_endpoint': sb.url,
              'resource_manager_endpoint': sb.url, 'ca_bundle': sb.ca_file}

    async def scenario():
        async with Clients(resolve_auth(params, environ={})) as clients:
            return await ensure_application(clients, spec(unique_name='no-sp-tenant', service_principal=False))

    result = asyncio.run(scenario())
    assert result.service_principal_id is None and result.tenant_id == sb.tenant_id


# --- a unique name still held by deleted items ------------------------------------------------------------------

class _ConflictClients:
    """Answers the creation with Graph's uniqueName conflict and lists one application in deleted items."""

    graph_request = graph_list = None  # only passed through to ``call``

    def __init__(self, deleted):
        self.deleted = deleted
        self.calls = []

    async def call(self, operation, fn, *args, **kwargs):
        from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import AzureApiError
        self.calls.append((operation, kwargs.get('params')))
        if operation == 'create application':
            raise AzureApiError('Another object with the same value for property uniqueName already exists.',
                                operation=operation, target='uniqueName=app-x', service='graph', status=400,
                                code='Request_BadRequest', details=('ObjectConflict', 'ConflictingObjects'))
        if operation == 'list deleted applications':
            return self.deleted
        raise AssertionError('unexpected call ' + operation)


@pytest.mark.parametrize('deleted, hinted', [
    ([{'id': '9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a', 'appId': '3c2e4a1f-5b6d-4e7f-8a9b-0c1d2e3f4a5b',
       'deletedDateTime': '2026-01-02T03:04:05Z', 'tags': [MANAGED_TAG]}], True),
    ([], False),
])
def test_a_unique_name_held_by_deleted_items_says_how_to_free_it(deleted, hinted):
    from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import AzureApiError
    from ansible_collections.oidc_federation.azure.plugins.module_utils._graph import CREATE, ApplicationPlan, apply_application_plan
    clients = _ConflictClients(deleted)
    plan = ApplicationPlan(spec(), CREATE, body={'displayName': 'app-x'})
    with pytest.raises(AzureApiError) as info:
        asyncio.run(apply_application_plan(clients, plan))
    message = str(info.value)
    assert message.startswith('create application uniqueName=app-x failed: Graph 400 Request_BadRequest')
    assert ('deleted items' in message and 'purge=true' in message and
            '/directory/deletedItems/9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a/restore' in message) is hinted, message
    assert clients.calls[1] == ('list deleted applications', {
        '$select': 'id,appId,deletedDateTime,tags', '$filter': "uniqueName eq 'app-x'", '$top': 999})
