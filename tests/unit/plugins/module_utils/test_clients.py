# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Clients without a network: credential wiring per auth source, the Graph pipeline (real msgraph/kiota/httpx on an
httpx MockTransport), the ARM pipeline (real azure-mgmt-authorization/azure-core on an in-memory transport), SDK
retries switched off, errors mapped, lazy imports and closing."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

httpx = pytest.importorskip('httpx')
pytest.importorskip('msgraph')
pytest.importorskip('azure.mgmt.authorization')

from azure.core.credentials import AccessToken, AccessTokenInfo  # noqa: E402  pylint: disable=wrong-import-position
from azure.core.pipeline.transport import AsyncHttpTransport  # noqa: E402  pylint: disable=wrong-import-position
from azure.core.rest._http_response_impl_async import AsyncHttpResponseImpl  # noqa: E402  pylint: disable=wrong-import-position
from azure.core.utils import CaseInsensitiveDict  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.oidc_federation.azure.plugins.module_utils import _clients  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._auth import resolve_auth  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import (  # noqa: E402
    Clients,
    quiet_sdk_loggers,
    token_file_reader,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import (  # noqa: E402
    AzureApiError,
    MissingLibraryError,
    ValidationError,
    redact,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._retry import RetryPolicy  # noqa: E402
from ansible_collections.oidc_federation.azure.tests.unit.plugins.module_utils.fake_time import FakeTime  # noqa: E402

TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47'
CLIENT = '11111111-2222-3333-4444-555555555555'
GRAPH = 'https://graph.test'
ARM = 'https://arm.test'
SUB = '00000000-1111-2222-3333-444444444444'


class FakeCredential:
    """An async token credential handing out a fixed token and recording requested scopes."""

    def __init__(self):
        self.scopes = []
        self.closed = False

    async def get_token(self, *scopes, **kwargs):
        self.scopes.extend(scopes)
        return AccessToken('fake-access-token-0123', 4102444800)

    async def get_token_info(self, *scopes, options=None):
        self.scopes.extend(scopes)
        return AccessTokenInfo('fake-access-token-0123', 4102444800)

    async def close(self):
        self.closed = True


class Response(AsyncHttpResponseImpl):
    def __init__(self, request, status, headers, body):
        super().__init__(request=request, internal_response=None, status_code=status, headers=CaseInsensitiveDict(headers),
                         reason='Reason', content_type='application/json', block_size=4096, stream_download_generator=None)
        self._content = b'' if body is None else json.dumps(body).encode()
        self._is_stream_consumed = True

    async def read(self):
        return self._content


class ArmTransport(AsyncHttpTransport):
    """In-memory azure-core transport: ``handler(request) -> (status, headers, body)``."""

    def __init__(self, handler):
        self.handler = handler
        self.requests = []

    async def send(self, request, **kwargs):
        self.requests.append(request)
        status, headers, body = self.handler(request)
        return Response(request, status, headers, body)

    async def open(self):
        pass

    async def close(self):
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        pass


def settings(**params):
    base = {'auth_source': 'cli', 'graph_endpoint': GRAPH, 'resource_manager_endpoint': ARM, 'subscription_id': SUB}
    return resolve_auth(dict(base, **params), environ={})


def fake_policy():
    fake = FakeTime()
    return fake, RetryPolicy(sleep=fake.sleep, clock=fake.clock, rand=lambda: 0.5)


# --- credentials --------------------------------------------------------------------------------------------------

def test_credential_per_auth_source(tmp_path):
    from azure.identity import aio

    async def build(**params):
        async with Clients(settings(**params)) as clients:
            return clients.identity_credential

    secret = asyncio.run(build(auth_source='client_secret', tenant_id=TENANT, client_id=CLIENT, client_secret='pw-1234567',
                               authority_host='https://127.0.0.1:8443'))
    assert isinstance(secret, aio.ClientSecretCredential)
    assert secret._client._authority == 'https://127.0.0.1:8443'  # pylint: disable=protected-access

    assertion = asyncio.run(build(auth_source='federated_token', tenant_id=TENANT, client_id=CLIENT, federated_token='eyJ.a.b',
                                  cloud_environment='AzureChinaCloud', authority_host=None))
    assert isinstance(assertion, aio.ClientAssertionCredential)
    assert assertion._client._authority == 'https://login.chinacloudapi.cn'  # pylint: disable=protected-access
    assert assertion._func() == 'eyJ.a.b'  # pylint: disable=protected-access

    token_file = tmp_path / 'token'
    token_file.write_text('eyJ.from.file\n')
    from_file = asyncio.run(build(auth_source='federated_token', tenant_id=TENANT, client_id=CLIENT, federated_token_file=str(token_file)))
    assert from_file._func() == 'eyJ.from.file'  # pylint: disable=protected-access

    assert isinstance(asyncio.run(build(auth_source='managed_identity', client_id=CLIENT)), aio.ManagedIdentityCredential)
    assert isinstance(asyncio.run(build(auth_source='cli')), aio.AzureCliCredential)


def test_token_file_is_reread_and_registered_as_secret(tmp_path):
    path = tmp_path / 'token'
    read = token_file_reader(str(path))
    with pytest.raises(ValidationError, match='cannot read federated_token_file'):
        read()
    path.write_text('')
    with pytest.raises(ValidationError, match='is empty'):
        read()
    path.write_text('first-token-value\n')
    assert read() == 'first-token-value'
    path.write_text('second-token-value')
    assert read() == 'second-token-value'
    assert 'second-token-value' not in redact('leaked second-token-value')


def test_injected_credential_is_shared_and_closed():
    credential = FakeCredential()

    async def main():
        async with Clients(settings(), credential=credential) as clients:
            assert clients.identity_credential is credential
            assert clients.token_cache is None  # an injected credential never uses the shared token cache
            clients.graph  # pylint: disable=pointless-statement
            clients.authorization()
        return clients

    clients = asyncio.run(main())
    assert credential.closed is True
    with pytest.raises(RuntimeError):
        clients.graph  # pylint: disable=pointless-statement


# --- Microsoft Graph ----------------------------------------------------------------------------------------------

def graph_clients(handler, **kwargs):
    return Clients(settings(), credential=FakeCredential(), graph_transport=httpx.MockTransport(handler), **kwargs)


def test_graph_raw_request_goes_through_the_sdk_pipeline():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={'value': [{'id': '1'}]}, headers={'request-id': 'r'})

    async def main():
        async with graph_clients(handler) as clients:
            response = await clients.graph_request('GET', '/applications', params={'$filter': "uniqueName eq 'it''s'", '$top': 1},
                                                   headers={'ConsistencyLevel': 'eventual'})
            beta = await clients.graph_request('PATCH', "/applications(uniqueName='x')", version='beta',
                                               json_body={'displayName': 'x'}, headers={'Prefer': 'create-if-missing'})
            return response, beta, clients.identity_credential.scopes

    response, beta, scopes = asyncio.run(main())
    assert response.status == 200 and response.data == {'value': [{'id': '1'}]} and response.headers['request-id'] == 'r'
    assert str(seen[0].url) == "https://graph.test/v1.0/applications?$filter=uniqueName%20eq%20'it''s'&$top=1"
    assert seen[0].headers['authorization'] == 'Bearer fake-access-token-0123'
    assert seen[0].headers['consistencylevel'] == 'eventual'
    assert len(seen[0].headers['client-request-id']) == 36 and seen[0].headers['client-request-id'] != seen[1].headers['client-request-id']
    assert seen[1].method == 'PATCH' and str(seen[1].url) == "https://graph.test/beta/applications(uniqueName='x')"
    assert json.loads(seen[1].content) == {'displayName': 'x'} and seen[1].headers['prefer'] == 'create-if-missing'
    assert beta.status == 200
    assert set(scopes) == {'https://graph.microsoft.com/.default'}


def test_graph_list_follows_next_links_and_refuses_foreign_hosts():
    def handler(request):
        if 'skiptoken' in str(request.url):
            return httpx.Response(200, json={'value': [{'id': '2'}]})
        return httpx.Response(200, json={'value': [{'id': '1'}], '@odata.nextLink': GRAPH + '/v1.0/applications?$skiptoken=abc'})

    async def main():
        async with graph_clients(handler) as clients:
            items = await clients.graph_list('/applications', params={'$select': 'id'})
            with pytest.raises(ValidationError, match='refusing to send a token'):
                await clients.graph_request('GET', 'https://evil.test/v1.0/applications')
            return items

    assert asyncio.run(main()) == [{'id': '1'}, {'id': '2'}]


def test_graph_errors_are_mapped_and_sdk_retries_are_off():
    calls = []

    def handler(request):
        calls.append(str(request.url))
        if len(calls) == 1:
            return httpx.Response(429, json={'error': {'code': 'TooManyRequests', 'message': 'slow down'}}, headers={'Retry-After': '3'})
        if 'missing' in str(request.url):
            return httpx.Response(404, json={'error': {'code': 'Request_ResourceNotFound', 'message': "Resource 'missing' does not exist."}})
        return httpx.Response(200, json={'id': 'obj-1', 'appId': 'app-1', 'displayName': 'demo'})

    fake, policy = fake_policy()

    async def main():
        async with graph_clients(handler, retry_policy=policy) as clients:
            app = await clients.call('get application', clients.graph.applications.by_application_id('obj-1').get, target='obj-1')
            assert app.app_id == 'app-1'
            with pytest.raises(AzureApiError) as exc_info:
                await clients.call('get application', clients.graph.applications.by_application_id('missing').get, target='missing')
            return exc_info.value

    err = asyncio.run(main())
    assert len(calls) == 3  # one request per attempt: kiota's RetryHandler is not in the pipeline
    assert fake.sleeps == [3]
    assert str(err) == "get application missing failed: Graph 404 Request_ResourceNotFound: Resource 'missing' does not exist."


def test_graph_middleware_has_no_retry_handler():
    from kiota_http.middleware import RetryHandler

    async def main():
        async with graph_clients(lambda request: httpx.Response(204)) as clients:
            clients.graph  # pylint: disable=pointless-statement
            pipeline = clients._graph_http._transport.pipeline  # pylint: disable=protected-access
            handlers, current = [], pipeline._first_middleware  # pylint: disable=protected-access
            while current is not None:
                handlers.append(current)
                current = getattr(current, 'next', None)
            return handlers, clients.graph_adapter('beta').base_url

    handlers, beta_url = asyncio.run(main())
    names = [type(h).__name__ for h in handlers]
    # kiota's default middleware without its RetryHandler; no msgraph-core (it would import azure-core's pipeline)
    assert names == ['RedirectHandler', 'ParametersNameDecodingHandler', 'UrlReplaceHandler', 'UserAgentHandler',
                     'HeadersInspectionHandler', 'BodyInspectionHandler']
    assert not any(isinstance(h, RetryHandler) for h in handlers)
    assert beta_url == GRAPH + '/beta'


def test_concurrent_graph_calls_share_one_token():
    class SlowCredential(FakeCredential):
        def __init__(self):
            super().__init__()
            self.active = 0
            self.max_active = 0

        async def get_token(self, *scopes, **kwargs):
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            await asyncio.sleep(0.01)
            self.active -= 1
            return await super().get_token(*scopes, **kwargs)

    credential = SlowCredential()

    async def main():
        async with Clients(settings(), credential=credential,
                           graph_transport=httpx.MockTransport(lambda request: httpx.Response(200, json={'value': []}))) as clients:
            await asyncio.gather(*[clients.graph_request('GET', '/applications') for _index in range(6)])

    asyncio.run(main())
    # one at a time, and the first token is kept for the others (kiota asks for a token on every request)
    assert credential.max_active == 1 and credential.scopes == ['https://graph.microsoft.com/.default']


def test_graph_version_is_checked():
    async def main():
        async with graph_clients(lambda request: httpx.Response(204)) as clients:
            clients.graph_adapter('v2.0')

    with pytest.raises(ValidationError, match='Graph version'):
        asyncio.run(main())


# --- Azure Resource Manager -----------------------------------------------------------------------------------------

def test_arm_raw_requests_and_paging():
    def handler(request):
        if 'skiptoken' in request.url:
            return 200, {}, {'value': [{'name': 'rg2'}]}
        if request.method == 'GET':
            return 200, {}, {'value': [{'name': 'rg1'}], 'nextLink': ARM + '/subscriptions/s/resourcegroups?api-version=2021-04-01&$skiptoken=2'}
        return 403, {'x-ms-correlation-request-id': 'corr'}, {'error': {'code': 'AuthorizationFailed', 'message': 'no write'}}

    transport = ArmTransport(handler)

    async def main():
        async with Clients(settings(), credential=FakeCredential(), arm_transport=transport) as clients:
            groups = await clients.arm_list('/subscriptions/s/resourcegroups', api_version='2021-04-01')
            with pytest.raises(AzureApiError) as exc_info:
                await clients.arm_request('PUT', '/subscriptions/s/resourcegroups/rg3', api_version='2021-04-01', json_body={'location': 'x'})
            named = await asyncio.gather(clients.call('create resource group', clients.arm_request, 'PUT', '/subscriptions/s/resourcegroups/rg3',
                                                      api_version='2021-04-01', json_body={}, target='rg3'), return_exceptions=True)
            return groups, exc_info.value, named[0], clients.identity_credential.scopes

    groups, err, named, scopes = asyncio.run(main())
    assert groups == [{'name': 'rg1'}, {'name': 'rg2'}]
    assert [r.url for r in transport.requests[:2]] == [
        ARM + '/subscriptions/s/resourcegroups?api-version=2021-04-01',
        ARM + '/subscriptions/s/resourcegroups?api-version=2021-04-01&$skiptoken=2']
    assert transport.requests[0].headers['Authorization'] == 'Bearer fake-access-token-0123'
    assert str(err) == 'PUT /subscriptions/s/resourcegroups/rg3 failed: ARM 403 AuthorizationFailed: no write'
    assert err.request_id == 'corr'
    assert str(named) == 'create resource group rg3 failed: ARM 403 AuthorizationFailed: no write'
    assert set(scopes) == {'https://management.azure.com/.default'}


def test_authorization_client_retries_principal_not_found_through_the_policy():
    from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

    scope = '/subscriptions/{0}/resourceGroups/rg'.format(SUB)
    name = '5b6a3c2e-0000-4000-8000-000000000001'
    principal = '7d1e2f3a-0000-4000-8000-000000000002'
    role = '/subscriptions/{0}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7'.format(SUB)
    attempts = []

    def handler(request):
        attempts.append((request.method, request.url))
        if request.method == 'GET':
            return 404, {}, {'error': {'code': 'RoleAssignmentNotFound', 'message': 'The role assignment was not found.'}}
        if len(attempts) < 4:
            return 400, {}, {'error': {'code': 'PrincipalNotFound', 'message': 'Principal {0} does not exist in the directory.'.format(principal)}}
        return 201, {}, {'id': scope + '/providers/Microsoft.Authorization/roleAssignments/' + name, 'name': name,
                         'type': 'Microsoft.Authorization/roleAssignments',
                         'properties': {'roleDefinitionId': role, 'principalId': principal, 'principalType': 'ServicePrincipal', 'scope': scope}}

    transport = ArmTransport(handler)
    fake, policy = fake_policy()

    async def main():
        async with Clients(settings(), credential=FakeCredential(), arm_transport=transport, retry_policy=policy) as clients:
            client = clients.authorization()
            with pytest.raises(AzureApiError) as exc_info:
                await clients.call('get role assignment', client.role_assignments.get, scope, name, target=name)
            params = RoleAssignmentCreateParameters(role_definition_id=role, principal_id=principal, principal_type='ServicePrincipal')
            created = await clients.call('create role assignment', client.role_assignments.create, scope, name, params, target=name)
            return exc_info.value, created

    missing, created = asyncio.run(main())
    assert str(missing) == 'get role assignment {0} failed: ARM 404 RoleAssignmentNotFound: The role assignment was not found.'.format(name)
    assert created.principal_id == principal and created.name == name
    assert len(attempts) == 4  # 1 GET + 3 PUTs: azure-core's RetryPolicy is off (retry_total=0)
    assert attempts[1][1].startswith(ARM + scope + '/providers/Microsoft.Authorization/roleAssignments/' + name + '?api-version=2022-04-01')
    assert len(fake.sleeps) == 2 and policy.stats.replication == 2


def test_authorization_needs_a_subscription():
    async def main():
        async with Clients(resolve_auth({'auth_source': 'cli'}, environ={}), credential=FakeCredential()) as clients:
            with pytest.raises(ValidationError, match='AZURE_SUBSCRIPTION_ID'):
                clients.authorization()
            assert clients.authorization('other-sub') is clients.authorization('other-sub')

    asyncio.run(main())


# --- lazy imports and logging -------------------------------------------------------------------------------------

def test_missing_sdk_raises_missing_library_error(monkeypatch):
    real_import = _clients.importlib.import_module

    def fake_import(name, *args):
        if name == 'msgraph':
            raise ImportError('No module named msgraph')
        return real_import(name, *args)

    monkeypatch.setattr(_clients.importlib, 'import_module', fake_import)

    async def main():
        async with Clients(settings(), credential=FakeCredential()) as clients:
            clients.graph  # pylint: disable=pointless-statement

    with pytest.raises(MissingLibraryError) as exc_info:
        asyncio.run(main())
    assert exc_info.value.library == 'msgraph-sdk' and 'No module named msgraph' in exc_info.value.tb


def test_sdk_loggers_get_a_null_handler():
    quiet_sdk_loggers()
    quiet_sdk_loggers()
    for name in ('azure', 'msal', 'httpx', 'kiota_http'):
        handlers = [h for h in logging.getLogger(name).handlers if isinstance(h, logging.NullHandler)]
        assert len(handlers) == 1, name


# --- tokens: kiota's provider and the shared cache ------------------------------------------------------------------

def test_graph_token_provider_guards_host_scheme_and_passes_claims():
    import base64
    from kiota_abstractions.authentication import AllowedHostsValidator

    credential = FakeCredential()
    calls = []

    async def get_token(*scopes, **kwargs):
        calls.append((scopes, kwargs))
        return AccessToken('tok-{0}'.format(len(calls)), 4102444800)

    credential.get_token = get_token
    provider = _clients.GraphTokenProvider(credential, 'https://graph.microsoft.com/.default', AllowedHostsValidator(['graph.test']))

    async def main():
        foreign = await provider.get_authorization_token('https://evil.test/v1.0/me')
        plain = await provider.get_authorization_token(GRAPH + '/v1.0/applications')
        claims = base64.b64encode(b'{"access_token":{"nbf":{"essential":true}}}').decode().rstrip('=')
        challenged = await provider.get_authorization_token(GRAPH + '/v1.0/applications', {'claims': claims})
        with pytest.raises(ValidationError, match='only https'):
            await provider.get_authorization_token('http://graph.test/v1.0/applications')
        return foreign, plain, challenged

    assert asyncio.run(main()) == ('', 'tok-1', 'tok-2')
    assert calls == [(('https://graph.microsoft.com/.default',), {}),
                     (('https://graph.microsoft.com/.default',), {'claims': '{"access_token":{"nbf":{"essential":true}}}', 'enable_cae': True})]
    assert provider.get_allowed_hosts_validator().get_allowed_hosts() == ['graph.test']


def test_a_cached_token_arm_refuses_is_replaced_once(tmp_path, monkeypatch):
    import time

    from ansible_collections.oidc_federation.azure.plugins.module_utils._token_cache import AccessToken as CachedToken
    from ansible_collections.oidc_federation.azure.plugins.module_utils._token_cache import TokenCache, key_for

    secret_settings = settings(auth_source='client_secret', tenant_id=TENANT, client_id=CLIENT, client_secret='pw-1234567',
                               token_cache_dir=str(tmp_path / 'tokens'))
    key = key_for(secret_settings, secret_settings.cloud.arm_scope)
    TokenCache(str(tmp_path / 'tokens')).open().put(key, CachedToken('cached-but-refused', int(time.time()) + 3000))
    refuse = {'Bearer cached-but-refused'}

    def handler(request):
        if request.headers['Authorization'] in refuse:
            return 401, {}, {'error': {'code': 'InvalidAuthenticationToken', 'message': 'The access token is invalid.'}}
        return 200, {}, {'value': [{'name': 'rg1'}]}

    transport = ArmTransport(handler)
    fake = FakeCredential()
    monkeypatch.setattr(Clients, '_build_credential', lambda self: fake)

    async def main():
        async with Clients(secret_settings, arm_transport=transport) as clients:
            groups = await clients.arm_list('/subscriptions/s/resourcegroups', api_version='2021-04-01')
            refuse.add('Bearer fake-access-token-0123')  # refused again: one more try at most, then the error
            with pytest.raises(AzureApiError) as exc_info:
                await clients.arm_request('GET', '/subscriptions/s/resourcegroups', api_version='2021-04-01')
            return groups, exc_info.value

    groups, err = asyncio.run(main())
    assert groups == [{'name': 'rg1'}] and err.status == 401
    assert [r.headers['Authorization'] for r in transport.requests] == [
        'Bearer cached-but-refused', 'Bearer fake-access-token-0123'] + ['Bearer fake-access-token-0123'] * 2
    assert fake.scopes == ['https://management.azure.com/.default']
    assert TokenCache(str(tmp_path / 'tokens')).get(key).token == 'fake-access-token-0123'  # the new token replaced it


def test_one_ssl_context_per_ca_bundle_and_a_new_one_when_the_bundle_changes(tmp_path):
    import os
    import ssl
    import subprocess
    key, cert = tmp_path / 'key.pem', tmp_path / 'ca.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', str(key), '-out', str(cert),
                    '-days', '1', '-subj', '/CN=test-ca'], check=True, capture_output=True)
    first = _clients.shared_ssl_context(str(cert))
    assert isinstance(first, ssl.SSLContext) and first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
    assert _clients.shared_ssl_context(str(cert)) is first
    stamp = os.stat(cert).st_mtime_ns + 10 ** 9
    os.utime(cert, ns=(stamp, stamp))
    assert _clients.shared_ssl_context(str(cert)) is not first
    with pytest.raises(OSError):
        _clients.shared_ssl_context(str(tmp_path / 'missing.pem'))


# --- SharedClients (the persistent worker's calls) ------------------------------------------------------------------

def test_shared_clients_one_per_settings_for_a_while_then_a_new_one_and_the_old_one_closed_when_its_last_call_leaves():
    clock = [0.0]
    made = []

    def make(s):
        made.append(Clients(s))
        return made[-1]

    shared = _clients.SharedClients(make, max_age=60.0, clock=lambda: clock[0])

    async def scenario():
        async with shared.lease(settings()) as first:
            async with shared.lease(settings()) as second:      # the same settings (another AuthSettings object)
                assert second is first
            async with shared.lease(settings(client_id='00000000-0000-0000-0000-00000000abcd')) as other:
                assert other is not first                       # other settings, other clients
            clock[0] = 61.0
            async with shared.lease(settings()) as later:       # a call that starts later gets new clients
                assert later is not first
            assert not first._closed                            # ... while the old ones still serve a call
        assert first._closed                                    # closed when their last call left
        assert not later._closed and not other._closed
        async with shared.lease(settings()) as again:
            assert again is later
        clock[0] = 200.0
        async with shared.lease(settings()) as newest:          # too old and idle: closed when replaced
            assert newest is not later and later._closed
        await shared.aclose()
        assert newest._closed and other._closed

    asyncio.run(scenario())
    assert len(made) == 4


def test_shared_clients_keep_each_calls_warnings_apart():
    shared = _clients.SharedClients(Clients)

    async def call(name, started, seen):
        async with shared.lease(settings()) as clients:
            clients._warn('warning of ' + name)
            started.append(name)
            while len(started) < 2:                             # both calls hold the same clients now
                await asyncio.sleep(0)
            clients._warn('warning of ' + name)                 # twice: reported once
            seen[name] = (id(clients), list(clients.warnings))

    async def scenario():
        started, seen = [], {}
        await asyncio.gather(call('a', started, seen), call('b', started, seen))
        await shared.aclose()
        return seen

    seen = asyncio.run(scenario())
    assert seen['a'][0] == seen['b'][0]
    assert seen['a'][1] == ['warning of a'] and seen['b'][1] == ['warning of b']
    standalone = Clients(settings())
    standalone._warn('outside a lease')
    assert standalone.warnings == ['outside a lease']


def test_shared_clients_never_share_between_different_secrets():
    shared = _clients.SharedClients(Clients)

    async def scenario():
        base = dict(auth_source='client_secret', tenant_id='00000000-0000-0000-0000-000000000001',
                    client_id='00000000-0000-0000-0000-000000000002')
        async with shared.lease(settings(client_secret='secret-one', **base)) as one:
            async with shared.lease(settings(client_secret='secret-two', **base)) as two:
                assert one is not two
        await shared.aclose()

    asyncio.run(scenario())


def test_shared_clients_two_calls_replacing_old_idle_clients_at_once_close_them_once():
    clock = [0.0]
    closing = []

    class SlowClose(Clients):
        async def close(self):
            closing.append(self)
            await asyncio.sleep(0)       # another call starts while these clients close
            await super().close()

    shared = _clients.SharedClients(SlowClose, max_age=60.0, clock=lambda: clock[0])

    async def call():
        async with shared.lease(settings()) as clients:
            await asyncio.sleep(0)
            return clients

    async def scenario():
        first = await call()
        clock[0] = 100.0
        second, third = await asyncio.gather(call(), call())
        await shared.aclose()
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert second is third and second is not first
    assert closing.count(first) == 1 and first._closed and second._closed
