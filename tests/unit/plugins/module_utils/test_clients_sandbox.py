# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The real clients against the sandbox (local HTTPS emulator of Entra, Graph, ARM and GitLab issuers): credential
acquisition for every network auth source, Graph v1.0/beta and ARM through the SDKs and the raw helpers, error
mapping of real service answers, throttling and replication lag through the one retry policy, TLS trust.

Skipped only when the sandbox package is not part of this checkout (``tests/unit/conftest.py``)."""

from __future__ import annotations

import asyncio
import sys
import uuid

import pytest

pytestmark = pytest.mark.skipif('oidc_sandbox_test_fixtures' not in sys.modules,
                                reason='the sandbox package (sandbox/oidc_sandbox) is not in this checkout')

from ansible_collections.oidc_federation.azure.plugins.module_utils._auth import resolve_auth  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import Clients  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import AzureApiError  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._module import AzureModule  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._retry import RetryPolicy  # noqa: E402

AUDIENCE = 'api://AzureADTokenExchange'
GRAPH_SCOPE = 'https://graph.microsoft.com/.default'
ARM_SCOPE = 'https://management.azure.com/.default'


def params_for(sb, **overrides):
    """Module parameters pointing at the sandbox, authenticating as its operator with a client secret."""
    params = {'auth_source': 'client_secret', 'tenant_id': sb.tenant_id, 'client_id': sb.operator.client_id,
              'client_secret': sb.operator.secret, 'subscription_id': sb.subscription_id, 'authority_host': sb.url,
              'graph_endpoint': sb.url, 'resource_manager_endpoint': sb.url, 'ca_bundle': sb.bundle_file}
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def clients_for(sb, policy=None, **overrides):
    return Clients(resolve_auth(params_for(sb, **overrides), environ={}), retry_policy=policy)


def fast_policy(**kwargs):
    """A policy that records waits instead of sleeping (the sandbox's answers do not depend on time)."""
    waits = []

    async def no_sleep(seconds):
        waits.append(seconds)

    kwargs.setdefault('max_attempts', 4)
    return RetryPolicy(sleep=no_sleep, **kwargs), waits


def requests_seen(sb):
    response = sb.control('GET', 'stats')
    assert response.status_code == 200, response.text
    return response.json()


def new_app_with_fic(sb, subject):
    """An application + service principal + FIC trusting the sandbox's GitLab issuer for ``subject``."""
    token = sb.token()
    response = sb.graph('POST', '/v1.0/applications', token=token,
                        json={'displayName': 'core-test-' + uuid.uuid4().hex[:8], 'signInAudience': 'AzureADMyOrg'})
    assert response.status_code == 201, response.text
    app = response.json()
    response = sb.graph('POST', '/v1.0/servicePrincipals', token=token, json={'appId': app['appId']})
    assert response.status_code == 201, response.text
    response = sb.graph('POST', '/v1.0/applications/{0}/federatedIdentityCredentials'.format(app['id']), token=token,
                        json={'name': 'gitlab-main', 'issuer': sb.gitlab_issuer, 'subject': subject, 'audiences': [AUDIENCE]})
    assert response.status_code == 201, response.text
    return app


# --- credentials ----------------------------------------------------------------------------------------------------

def test_client_secret_login_graph_and_arm(clean_sandbox):
    sb = clean_sandbox

    async def main():
        async with clients_for(sb) as clients:
            graph_token = await clients.credential.get_token(GRAPH_SCOPE)
            apps = await clients.call('list applications', clients.graph_list, '/applications', params={'$select': 'id,appId'})
            sdk_apps = await clients.call('list applications', clients.graph.applications.get)
            beta = await clients.call('list applications', clients.graph_beta.applications.get)
            subscriptions = await clients.call('list subscriptions', clients.arm_list, '/subscriptions', api_version='2022-12-01')
            scope = '/subscriptions/' + sb.subscription_id
            assignments = [a async for a in clients.authorization().role_assignments.list_for_scope(scope)]
            return graph_token.token, apps, sdk_apps, beta, subscriptions, assignments

    token, apps, sdk_apps, beta, subscriptions, assignments = asyncio.run(main())
    assert token.count('.') == 2
    assert sb.operator.client_id in {a['appId'] for a in apps}
    assert {a.app_id for a in sdk_apps.value} == {a['appId'] for a in apps}
    assert {a.app_id for a in beta.value} == {a['appId'] for a in apps}
    assert [s['id'] for s in subscriptions] == ['/subscriptions/' + sb.subscription_id]
    assert any(a.role_definition_id.lower().endswith('8e3af657-a8ff-443c-a75c-2fe8c4bcb635') for a in assignments)


def test_raw_arm_requests_reuse_connections_with_a_ca_bundle(clean_sandbox, monkeypatch):
    """azure-core builds a new SSL context per request from a CA bundle path, which keeps aiohttp from reusing any
    connection: the raw ARM pipeline puts one context on its connector instead (one handshake, not one per request)."""
    import aiohttp
    sb = clean_sandbox
    opened = []
    create = aiohttp.TCPConnector._create_connection

    async def counting(self, *args, **kwargs):
        opened.append(1)
        return await create(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.TCPConnector, '_create_connection', counting)

    async def main():
        async with clients_for(sb) as clients:
            for attempt in range(12):
                await clients.call('list subscriptions', clients.arm_list, '/subscriptions', api_version='2022-12-01',
                                   target='attempt {0}'.format(attempt))
            await asyncio.gather(*[clients.arm_request('GET', '/subscriptions', api_version='2022-12-01', params={'n': n})
                                   for n in range(6)])

    asyncio.run(main())
    assert 1 <= len(opened) <= 7, len(opened)   # the token request, then ARM; 18 requests otherwise open 18+


def test_federated_token_string_and_file_login(clean_sandbox, tmp_path):
    sb = clean_sandbox
    subject = 'project_path:core-group/core-project:ref_type:branch:ref:main'
    app = new_app_with_fic(sb, subject)
    token = sb.mint_gitlab_token(project_path='core-group/core-project', ref='main', aud=AUDIENCE)
    token_file = tmp_path / 'gitlab-token'
    token_file.write_text(token + '\n')

    async def get(**overrides):
        async with clients_for(sb, auth_source='federated_token', client_id=app['appId'], client_secret=None, **overrides) as clients:
            return await clients.credential.get_token(ARM_SCOPE)

    assert asyncio.run(get(federated_token=token)).token.count('.') == 2
    assert asyncio.run(get(federated_token_file=str(token_file))).token.count('.') == 2


def test_federated_token_subject_mismatch_is_explained(clean_sandbox):
    sb = clean_sandbox
    app = new_app_with_fic(sb, 'project_path:core-group/core-project:ref_type:branch:ref:main')
    token = sb.mint_gitlab_token(project_path='core-group/core-project', ref='feature', aud=AUDIENCE)

    async def main():
        async with clients_for(sb, auth_source='federated_token', client_id=app['appId'], client_secret=None,
                               federated_token=token) as clients:
            await clients.call('list applications', clients.graph_list, '/applications')

    with pytest.raises(AzureApiError) as exc_info:
        asyncio.run(main())
    err = exc_info.value
    assert (err.service, err.code) == ('entra', 'AADSTS700213')
    assert str(err).startswith('list applications failed: Entra ID 400 AADSTS700213: ')
    assert 'subject' in err.hint and token not in str(err)


def test_wrong_client_secret_is_explained_without_the_secret(clean_sandbox):
    sb = clean_sandbox
    policy, waits = fast_policy()

    async def main():
        async with clients_for(sb, policy, client_secret='Wrong-Secret-Value-1') as clients:
            await clients.call('list applications', clients.graph_list, '/applications')

    with pytest.raises(AzureApiError) as exc_info:
        asyncio.run(main())
    err = exc_info.value
    assert (err.service, err.code) == ('entra', 'AADSTS7000215') and 'client_secret' in err.hint
    assert 'Wrong-Secret-Value-1' not in str(err) and waits == []


def test_unknown_tenant_is_explained(clean_sandbox):
    sb = clean_sandbox

    async def main():
        async with clients_for(sb, tenant_id='00000000-0000-0000-0000-00000000dead') as clients:
            await clients.credential.get_token(ARM_SCOPE)

    with pytest.raises(Exception) as exc_info:
        asyncio.run(main())
    err = AzureApiError.from_exception(exc_info.value, operation='get token')
    assert err.service == 'entra' and err.code == 'AADSTS90002' and 'tenant_id' in err.hint


# --- errors, retries and replication lag ------------------------------------------------------------------------------

def test_graph_not_found_maps_real_odata_error(clean_sandbox):
    sb = clean_sandbox

    async def main():
        async with clients_for(sb) as clients:
            await clients.call('get application', clients.graph.applications.by_application_id(str(uuid.uuid4())).get, target='x')

    with pytest.raises(AzureApiError) as exc_info:
        asyncio.run(main())
    assert (exc_info.value.service, exc_info.value.status, exc_info.value.code) == ('graph', 404, 'Request_ResourceNotFound')


def test_throttling_is_retried_once_per_answer_by_the_policy_only(clean_sandbox):
    sb = clean_sandbox
    sb.faults(rules=[{'service': 'graph', 'kind': 'throttle', 'rate': 1.0, 'times': 2, 'retry_after': 7,
                      'methods': ['GET'], 'path': '/v1.0/applications'}])
    policy, waits = fast_policy()

    async def main():
        async with clients_for(sb, policy) as clients:
            await clients.credential.get_token(GRAPH_SCOPE)
            sb.control('POST', 'stats/reset')
            return await clients.call('list applications', clients.graph.applications.get)

    apps = asyncio.run(main())
    assert apps.value
    assert waits == [7, 7] and policy.stats.throttled == 2
    stats = requests_seen(sb)
    # three requests reached Graph (two throttled): no SDK-level retries on top of the policy
    assert stats['by_route'].get('GET /v1.0/applications') == 3 and stats['throttled'] == 2


def test_replication_lag_is_waited_out(clean_sandbox):
    sb = clean_sandbox
    sb.faults(replication_lag=1.0)

    async def main():
        async with clients_for(sb, RetryPolicy(replication_timeout=20, replication_delay=0.4, replication_max_delay=0.8)) as clients:
            created = await clients.call('create application', clients.graph_request, 'POST', '/applications',
                                         json_body={'displayName': 'lag-' + uuid.uuid4().hex[:6], 'signInAudience': 'AzureADMyOrg'},
                                         idempotent=False)
            app = created.data
            sp = await clients.call('create service principal', clients.graph_request, 'POST', '/servicePrincipals',
                                    json_body={'appId': app['appId']}, idempotent=False)
            read = await clients.call('get application', clients.graph_request, 'GET', '/applications/' + app['id'],
                                      retry_not_found=True)
            return sp, read, clients.retry_policy.stats

    sp, read, stats = asyncio.run(main())
    assert sp.status == 201 and read.status == 200
    assert stats.replication >= 1


def test_principal_not_found_until_replicated(clean_sandbox):
    sb = clean_sandbox
    sb.faults(replication_lag=1.0)
    scope = '/subscriptions/{0}/resourceGroups/rg-sandbox'.format(sb.subscription_id)
    role = '/subscriptions/{0}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7'.format(sb.subscription_id)
    name = str(uuid.uuid4())

    async def main():
        from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

        policy = RetryPolicy(replication_timeout=20, replication_delay=0.4, replication_max_delay=0.8)
        async with clients_for(sb, policy) as clients:
            app = (await clients.call('create application', clients.graph_request, 'POST', '/applications',
                                      json_body={'displayName': 'ra-' + uuid.uuid4().hex[:6]}, idempotent=False)).data
            sp = (await clients.call('create service principal', clients.graph_request, 'POST', '/servicePrincipals',
                                     json_body={'appId': app['appId']}, idempotent=False)).data
            lag_before = policy.stats.replication
            # principal_type=None: the SDK model defaults to "User", which ARM trusts during replication
            params = RoleAssignmentCreateParameters(role_definition_id=role, principal_id=sp['id'], principal_type=None)
            created = await clients.call('create role assignment', clients.authorization().role_assignments.create,
                                         scope, name, params, target=name)
            return sp, created, policy.stats.replication - lag_before

    sp, created, lag_retries = asyncio.run(main())
    assert created.principal_id == sp['id'] and created.name == name
    assert lag_retries >= 1


def test_untrusted_certificate_is_a_tls_error_with_hint(clean_sandbox):
    sb = clean_sandbox
    policy, waits = fast_policy()

    async def main():
        async with clients_for(sb, policy, ca_bundle=None) as clients:
            await clients.call('list applications', clients.graph_list, '/applications')

    with pytest.raises(AzureApiError) as exc_info:
        asyncio.run(main())
    assert exc_info.value.kind == 'tls' and 'ca_bundle' in str(exc_info.value) and waits == []
    assert exc_info.value.service == 'entra'  # the token request is the first connection made


def test_connection_refused_is_retried_then_reported(clean_sandbox):
    sb = clean_sandbox
    policy, waits = fast_policy(max_attempts=3)
    dead = 'https://127.0.0.1:9'

    async def main():
        async with clients_for(sb, policy, resource_manager_endpoint=dead) as clients:
            await clients.call('list subscriptions', clients.arm_list, '/subscriptions', api_version='2022-12-01', service='arm')

    with pytest.raises(AzureApiError) as exc_info:
        asyncio.run(main())
    assert exc_info.value.kind == 'connection' and len(waits) == 2
    assert str(exc_info.value).startswith('list subscriptions failed: connection to ARM failed: ')


# --- a module run configured only through the sandbox's environment ---------------------------------------------------

def test_azure_module_with_sandbox_environment(clean_sandbox, monkeypatch, run_module):
    sb = clean_sandbox
    for name in ('AZURE_TENANT_ID', 'AZURE_CLIENT_ID', 'AZURE_CLIENT_SECRET', 'AZURE_SUBSCRIPTION_ID', 'AZURE_AUTHORITY_HOST',
                 'AZURE_GRAPH_ENDPOINT', 'AZURE_RESOURCE_MANAGER_ENDPOINT', 'AZURE_CA_BUNDLE'):
        monkeypatch.setenv(name, sb.env[name])

    async def core(module, clients):
        apps = await clients.call('list applications', clients.graph_list, '/applications')
        groups = await clients.call('list resource groups', clients.arm_list,
                                    '/subscriptions/{0}/resourcegroups'.format(module.auth.subscription_id), api_version='2021-04-01')
        return module.result(False, source=module.auth.auth_source, apps=len(apps), groups=sorted(g['name'] for g in groups))

    def main():
        AzureModule(argument_spec={}).run(core)

    code, result = run_module(main, {})
    assert code == 0, result
    assert result['source'] == 'client_secret' and result['apps'] >= 2 and 'rg-sandbox' in result['groups']
    assert sb.env['AZURE_CLIENT_SECRET'] not in str(result)
