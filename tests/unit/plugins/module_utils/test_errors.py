# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""AzureApiError: classification of Graph/ARM/Entra/connection errors (fakes shaped like the SDKs', and the real
SDK classes), rendering, hints, Retry-After parsing and secret redaction."""

from __future__ import annotations

import json
import ssl

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import (
    AzureApiError,
    ValidationError,
    parse_retry_after,
    redact,
    register_secret,
)

JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwcm9qZWN0X3BhdGg6Zm9vIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ'


# --- fakes shaped like the SDK exceptions -------------------------------------------------------------------------

class FakeDetail:
    def __init__(self, code, message=None):
        self.code = code
        self.message = message


class FakeInner:
    def __init__(self, request_id):
        self.request_id = request_id


class FakeMainError:
    def __init__(self, code, message, details=None, request_id=None):
        self.code = code
        self.message = message
        self.details = details
        self.inner_error = FakeInner(request_id) if request_id else None


class FakeODataError(Exception):
    """Like msgraph's ODataError: kiota APIError + ``.error`` (MainError)."""

    def __init__(self, status, code, message, details=None, headers=None, request_id=None):
        super().__init__(message)
        self.response_status_code = status
        self.response_headers = headers or {}
        self.message = None
        self.error = FakeMainError(code, message, details, request_id)


class FakeResponse:
    """Like an azure-core HTTP response."""

    def __init__(self, status, body, headers=None, url='https://management.azure.com/x'):
        self.status_code = status
        self.reason = 'Reason'
        self.headers = headers or {}
        self._body = body if isinstance(body, str) else json.dumps(body)
        self.request = type('Req', (), {'url': url})()
        self.content_type = 'application/json'

    def text(self, encoding=None):
        return self._body


class FakeODataV4:
    def __init__(self, code, message, details=()):
        self.code = code
        self.message = message
        self.details = [FakeODataV4(d, '') for d in details]


class FakeHttpResponseError(Exception):
    """Like azure-core HttpResponseError (ARM)."""

    def __init__(self, status, code, message, headers=None, details=()):
        super().__init__(message)
        self.status_code = status
        self.response = FakeResponse(status, {'error': {'code': code, 'message': message}}, headers)
        self.error = FakeODataV4(code, message, details)
        self.message = message


class ClientAuthenticationError(Exception):
    """Fake with the azure-core class name (classification is by name, not by import)."""

    def __init__(self, message, response=None):
        super().__init__(message)
        self.message = message
        self.response = response
        self.status_code = response.status_code if response is not None else None


ENTRA_BODY = {
    'error': 'invalid_client',
    'error_description': "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client "
                         "secret value, not the client secret ID.\r\nTrace ID: 1111\r\nCorrelation ID: 2222-3333-4444\r\nTimestamp: 2026-01-01",
    'error_codes': [7000215], 'correlation_id': '2222-3333-4444',
}


# --- Graph ----------------------------------------------------------------------------------------------------------

def test_graph_fake_odata_error_renders_operation_target_service_code_and_text():
    exc = FakeODataError(400, 'InvalidFederatedIdentityCredentialValue', 'The combination of issuer and subject must be unique.',
                         request_id='req-1')
    err = AzureApiError.from_exception(exc, operation='create federated identity credential',
                                       target="'gitlab-main' on application 'gitlab-oidc-x'")
    assert str(err) == ("create federated identity credential 'gitlab-main' on application 'gitlab-oidc-x' failed: "
                        "Graph 400 InvalidFederatedIdentityCredentialValue: The combination of issuer and subject must be unique.")
    assert (err.service, err.status, err.code, err.request_id, err.kind) == ('graph', 400, 'InvalidFederatedIdentityCredentialValue', 'req-1', 'http')


def test_graph_detail_codes_and_retry_after_are_kept():
    exc = FakeODataError(400, 'Request_BadRequest', "The appId 'x' of the service principal does not reference a valid application object.",
                         details=[FakeDetail('NoBackingApplicationObject')], headers={'Retry-After': '3'})
    err = AzureApiError.from_exception(exc, operation='create service principal')
    assert err.details == ('NoBackingApplicationObject',)
    assert err.has_code('nobackingapplicationobject')
    assert err.retry_after == 3.0


def test_real_odata_error_parsed_by_kiota_from_a_graph_body():
    httpx = pytest.importorskip('httpx')
    json_factory = pytest.importorskip('kiota_serialization_json.json_parse_node_factory')
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError

    body = json.dumps({'error': {'code': 'Request_ResourceNotFound', 'message': "Resource 'abc' does not exist.",
                                 'details': [{'code': 'X1', 'message': 'm', 'target': 't'}],
                                 'innerError': {'request-id': 'rid-9', 'date': '2026-01-01T00:00:00'}}}).encode()
    node = json_factory.JsonParseNodeFactory().get_root_parse_node('application/json', body)
    exc = node.get_object_value(ODataError)
    exc.response_status_code = 404
    exc.response_headers = httpx.Headers({'retry-after': '2'})
    err = AzureApiError.from_exception(exc, operation='get application', target="appId='abc'")
    assert str(err) == "get application appId='abc' failed: Graph 404 Request_ResourceNotFound: Resource 'abc' does not exist."
    assert err.details == ('X1',)
    assert err.request_id == 'rid-9'
    assert err.retry_after == 2.0


def test_real_kiota_api_error_without_error_model():
    from kiota_abstractions.api_error import APIError

    exc = APIError('The server returned an unexpected status code and the error body could not be parsed', 502, {'Retry-After': '1'})
    err = AzureApiError.from_exception(exc, operation='list applications')
    assert (err.service, err.status, err.code) == ('graph', 502, None)
    assert 'could not be parsed' in str(err)
    assert err.retry_after == 1.0


# --- ARM --------------------------------------------------------------------------------------------------------------

def test_arm_fake_http_response_error():
    exc = FakeHttpResponseError(400, 'PrincipalNotFound', 'Principal 0123 does not exist in the directory t.',
                                headers={'x-ms-correlation-request-id': 'corr-1'})
    err = AzureApiError.from_exception(exc, operation='create role assignment', target='Reader on /subscriptions/s')
    assert str(err) == ('create role assignment Reader on /subscriptions/s failed: ARM 400 PrincipalNotFound: '
                        'Principal 0123 does not exist in the directory t.')
    assert err.request_id == 'corr-1'


def test_real_http_response_error_with_arm_error_format():
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
    from azure.mgmt.core.exceptions import ARMErrorFormat

    response = FakeResponse(409, {'error': {'code': 'RoleAssignmentExists', 'message': 'The role assignment already exists.',
                                            'details': [{'code': 'Inner', 'message': 'x'}]}},
                            headers={'x-ms-request-id': 'r-1', 'retry-after-ms': '1500'})
    exc = HttpResponseError(response=response, error_format=ARMErrorFormat)
    err = AzureApiError.from_exception(exc, operation='create role assignment')
    assert (err.service, err.status, err.code, err.details, err.request_id) == ('arm', 409, 'RoleAssignmentExists', ('Inner',), 'r-1')
    assert err.retry_after == 1.5

    missing = ResourceNotFoundError(response=FakeResponse(404, {'error': {'code': 'RoleAssignmentNotFound', 'message': 'not found'}}),
                                    error_format=ARMErrorFormat)
    err = AzureApiError.from_exception(missing, operation='get role assignment')
    assert (err.status, err.code) == (404, 'RoleAssignmentNotFound')


def test_real_http_response_error_with_non_json_body_keeps_text():
    from azure.core.exceptions import HttpResponseError

    exc = HttpResponseError(response=FakeResponse(502, '<html><body>Bad   gateway</body></html>'))
    err = AzureApiError.from_exception(exc, operation='list resource groups')
    assert err.status == 502
    assert 'Bad gateway' in err.message


def test_arm_401_client_authentication_error_is_arm_not_entra():
    from azure.core.exceptions import ClientAuthenticationError as RealCAE
    from azure.mgmt.core.exceptions import ARMErrorFormat

    response = FakeResponse(401, {'error': {'code': 'InvalidAuthenticationToken', 'message': 'The access token is invalid.'}})
    exc = RealCAE(response=response, error_format=ARMErrorFormat)
    err = AzureApiError.from_exception(exc, operation='list role assignments', service='arm')
    assert (err.service, err.status, err.code) == ('arm', 401, 'InvalidAuthenticationToken')


# --- Entra --------------------------------------------------------------------------------------------------------

def test_entra_error_from_token_endpoint_body_has_code_hint_and_no_trailer():
    exc = ClientAuthenticationError("Microsoft Entra ID error '(invalid_client) AADSTS7000215: ...'",
                                    response=FakeResponse(401, ENTRA_BODY, url='https://login.microsoftonline.com/t/oauth2/v2.0/token'))
    err = AzureApiError.from_exception(exc, operation='list applications', service='graph')
    assert (err.service, err.status, err.code, err.details) == ('entra', 401, 'AADSTS7000215', ('invalid_client',))
    assert err.request_id == '2222-3333-4444'
    text = str(err)
    assert text.startswith('list applications failed: Entra ID 401 AADSTS7000215: Invalid client secret provided.')
    assert 'Trace ID' not in text and 'AZURE_CLIENT_SECRET' in text


def test_real_client_authentication_error_message_only():
    from azure.core.exceptions import ClientAuthenticationError as RealCAE

    exc = RealCAE(message="Authentication failed: AADSTS700016: Application with identifier 'abc' was not found in the directory "
                          "'contoso'. Trace ID: 1 Correlation ID: 0b1c2d3e-aaaa Timestamp: 2026")
    err = AzureApiError.from_exception(exc, operation='get token')
    assert err.service == 'entra' and err.code == 'AADSTS700016'
    assert err.message == "Application with identifier 'abc' was not found in the directory 'contoso'."
    assert 'client_id' in err.hint and err.request_id == '0b1c2d3e-aaaa'


@pytest.mark.parametrize('number, words', [
    (7000215, 'client_secret'),
    (700016, 'client_id'),
    (90002, 'tenant_id'),
    (501661, 'reachable'),
    (700213, 'subject'),
    (700024, 'expired'),
])
def test_aadsts_hints(number, words):
    exc = ClientAuthenticationError('AADSTS{0}: something went wrong.'.format(number))
    err = AzureApiError.from_exception(exc)
    assert err.code == 'AADSTS{0}'.format(number)
    assert words in err.hint
    assert words in str(err)


def test_credential_unavailable_errors_get_hints():
    from azure.identity import CredentialUnavailableError

    err = AzureApiError.from_exception(CredentialUnavailableError(message='Azure CLI not found on path'), operation='get token')
    assert err.service == 'entra' and 'az login' in err.hint
    unavailable = CredentialUnavailableError(message='ManagedIdentityCredential authentication unavailable, no response from the IMDS endpoint.')
    err = AzureApiError.from_exception(unavailable)
    assert 'managed identity' in err.hint


# --- connection errors --------------------------------------------------------------------------------------------

def chained(outer, inner):
    """``outer`` raised from ``inner`` (so ``__cause__`` is set as the SDKs do)."""
    try:
        try:
            raise inner
        except BaseException as exc:  # pylint: disable=broad-exception-caught
            raise outer from exc
    except BaseException as exc:  # pylint: disable=broad-exception-caught
        return exc


def test_connection_errors_from_httpx_azure_core_and_builtins():
    httpx = pytest.importorskip('httpx')
    from azure.core.exceptions import ServiceRequestError

    for exc in (httpx.ConnectError('All connection attempts failed'), ServiceRequestError('Cannot connect to host 127.0.0.1:1'),
                ConnectionRefusedError(111, 'Connection refused'), TimeoutError()):
        err = AzureApiError.from_exception(exc, operation='list applications', service='graph')
        assert err.kind == 'connection', exc
        assert str(err).startswith('list applications failed: connection to Graph failed: ')


def test_tls_verification_failure_is_tls_with_ca_bundle_hint():
    from azure.core.exceptions import ServiceRequestError

    exc = chained(ServiceRequestError('Cannot connect to host'),
                  ssl.SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate'))
    err = AzureApiError.from_exception(exc, operation='list role assignments', service='arm')
    assert err.kind == 'tls'
    assert 'ca_bundle' in err.hint and 'CERTIFICATE_VERIFY_FAILED' in err.message


def test_connection_error_names_the_host_from_an_outer_exception():
    from azure.core.exceptions import ServiceRequestError

    exc = chained(ServiceRequestError('Cannot connect to host login.example.test:443 ssl:default [Connect call failed]'),
                  ConnectionRefusedError(111, 'Connect call failed'))
    err = AzureApiError.from_exception(exc, operation='get token', service='entra')
    assert err.message == 'host login.example.test:443: ConnectionRefusedError: [Errno 111] Connect call failed'


def test_credential_error_caused_by_connection_failure_is_a_connection_error():
    from azure.core.exceptions import ClientAuthenticationError as RealCAE, ServiceRequestError

    exc = chained(RealCAE(message='Authentication failed: Cannot connect to host'), ServiceRequestError('Cannot connect to host login.example:443'))
    err = AzureApiError.from_exception(exc, operation='get token')
    assert (err.kind, err.service) == ('connection', 'entra')


def test_unrelated_exceptions_are_not_classified():
    assert AzureApiError.from_exception(ValueError('bug')) is None
    assert AzureApiError.from_exception(KeyError('x')) is None
    assert AzureApiError.from_exception(FileNotFoundError(2, 'No such file')) is None


def test_from_exception_on_azure_api_error_keeps_existing_context_and_fills_missing():
    raw = AzureApiError.from_response('graph', 404, {}, {'error': {'code': 'Request_ResourceNotFound', 'message': 'gone'}},
                                      request='GET /v1.0/applications/x')
    assert str(raw) == 'GET /v1.0/applications/x failed: Graph 404 Request_ResourceNotFound: gone'
    named = AzureApiError.from_exception(raw, operation='get application', target='x')
    assert str(named) == 'get application x failed: Graph 404 Request_ResourceNotFound: gone'
    again = AzureApiError.from_exception(named, operation='other operation')
    assert again.operation == 'get application'


# --- raw responses ------------------------------------------------------------------------------------------------

def test_from_response_envelopes():
    graph = AzureApiError.from_response('graph', 403, {'request-id': 'g1'},
                                        b'{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges."}}')
    assert (graph.code, graph.message, graph.request_id) == ('Authorization_RequestDenied', 'Insufficient privileges.', 'g1')
    arm_flat = AzureApiError.from_response('arm', 400, {}, '{"code":"InvalidRoleAssignmentId","message":"bad id"}')
    assert (arm_flat.code, arm_flat.message) == ('InvalidRoleAssignmentId', 'bad id')
    entra = AzureApiError.from_response('graph', 400, {}, ENTRA_BODY)
    assert (entra.service, entra.code) == ('entra', 'AADSTS7000215')
    html = AzureApiError.from_response('arm', 503, {'Retry-After': '5'}, '<html>' + 'x' * 2000 + '</html>')
    assert html.retry_after == 5.0 and len(html.message) <= 500
    empty = AzureApiError.from_response('graph', 500, None, None)
    assert empty.message == 'HTTP 500'


def test_to_dict_is_json_safe():
    err = AzureApiError.from_exception(FakeODataError(429, 'TooManyRequests', 'slow down', headers={'Retry-After': '4'}),
                                       operation='list applications')
    data = json.loads(json.dumps(err.to_dict()))
    assert data['status'] == 429 and data['code'] == 'TooManyRequests' and data['operation'] == 'list applications'


# --- Retry-After --------------------------------------------------------------------------------------------------

def test_parse_retry_after_forms():
    assert parse_retry_after({'Retry-After': '7'}) == 7.0
    assert parse_retry_after({'retry-after': '1.5'}) == 1.5
    assert parse_retry_after({'x-ms-retry-after-ms': '250'}) == 0.25
    assert parse_retry_after({'Retry-After': '-3'}) == 0.0
    assert parse_retry_after({'Retry-After': 'soon'}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None
    date = 'Wed, 21 Oct 2015 07:28:30 GMT'
    assert parse_retry_after({'Retry-After': date}, now=1445412480.0) == 30.0


# --- redaction ----------------------------------------------------------------------------------------------------

def test_redaction_of_tokens_and_secrets():
    register_secret('s3cr3t-Value~x')
    text = redact('Authorization: Bearer abcdefghijklmnop; token {0}; client_secret=hunter22&x=1; '
                  '{{"access_token": "zzz"}}; the secret is s3cr3t-Value~x'.format(JWT))
    for leaked in ('abcdefghijklmnop', JWT, 'hunter22', 'zzz', 's3cr3t-Value~x'):
        assert leaked not in text
    assert 'x=1' in text


def test_errors_never_render_registered_secrets_or_jwts():
    register_secret('another-secret-123')
    err = AzureApiError('service echoed another-secret-123 and ' + JWT, operation='op', service='graph', status=400, code='C')
    assert 'another-secret-123' not in str(err) and JWT not in str(err)
    assert 'another-secret-123' not in err.to_dict()['message']
    assert 'another-secret-123' not in str(ValidationError('bad value another-secret-123'))


def test_short_values_are_not_registered_as_secrets():
    register_secret('ab')
    assert redact('a tab b') == 'a tab b'
