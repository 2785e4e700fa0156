# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_doctor.py without a network: token parsing and verification, comparisons, the verdict's order, issuer and tenant
discovery over an httpx mock transport."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ansible_collections.oidc_federation.azure.plugins.module_utils import _doctor as d
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import ValidationError, redact

ISS = 'https://gitlab.example.com'
AUD = 'api://AzureADTokenExchange'
SUB = 'project_path:g/p:ref_type:branch:ref:main'


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode('ascii')


def b64_json(obj) -> str:
    return b64(json.dumps(obj).encode())


@pytest.fixture(scope='module')
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk_of(key, kid='k1', **extra):
    numbers = key.public_key().public_numbers()
    return dict({'kty': 'RSA', 'kid': kid, 'n': b64(numbers.n.to_bytes(256, 'big')), 'e': b64(numbers.e.to_bytes(3, 'big')),
                 'use': 'sig', 'alg': 'RS256'}, **extra)


def sign(key, claims, header=None):
    header = header or {'alg': 'RS256', 'kid': 'k1', 'typ': 'JWT'}
    signing_input = b64_json(header) + '.' + b64_json(claims)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + '.' + b64(signature)


def fic(name='c', issuer=ISS, audience=AUD, subject=SUB, expression=None):
    out = {'id': name, 'name': name, 'issuer': issuer, 'audiences': [audience], 'description': None, 'subject': subject,
           'claimsMatchingExpression': None}
    if expression is not None:
        out.update(subject=None, claimsMatchingExpression={'value': expression, 'languageVersion': 1})
    return out


def presented(**claims):
    return d.Presented('claims', dict({'iss': ISS, 'sub': SUB, 'aud': AUD}, **claims))


# --- the token ----------------------------------------------------------------------------------------------------

def test_parse_jwt_and_redaction(key):
    token = sign(key, {'iss': ISS, 'sub': SUB, 'aud': AUD, 'exp': 2})
    jwt = d.parse_jwt(token)
    assert jwt.header['kid'] == 'k1' and jwt.claims['sub'] == SUB and len(jwt.signature) == 256
    assert token not in redact('the token was ' + token)  # registered as a secret


@pytest.mark.parametrize('token, text', [
    ('', 'empty'), ('abc', '1 dot-separated parts'), ('a.b', '2 dot-separated parts'), ('a..c', '3 dot-separated parts'),
    ('!!.e30.c2ln', 'base64url'), (b64(b'[1]') + '.' + b64(b'{}') + '.c2ln', 'JSON object'), (None, 'empty'),
])
def test_parse_jwt_rejects_non_tokens(token, text):
    with pytest.raises(ValidationError) as info:
        d.parse_jwt(token)
    assert str(info.value).startswith('id_token: ') and text in str(info.value) and 'Fix:' in str(info.value)


def test_signature(key):
    keys = {'k1': jwk_of(key)}
    token = sign(key, {'sub': SUB})
    assert d.check_signature(d.parse_jwt(token), keys) == ('valid', None)
    assert d.check_signature(d.parse_jwt(token), None) == ('not_checked', None)
    tampered = d.parse_jwt(token[:-6] + ('AAAAAA' if not token.endswith('AAAAAA') else 'BBBBBB'))
    assert d.check_signature(tampered, keys)[0] == 'invalid'
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert d.check_signature(d.parse_jwt(sign(other, {'sub': SUB})), keys)[0] == 'invalid'
    assert d.check_signature(d.parse_jwt(sign(key, {}, {'alg': 'RS256', 'kid': 'k9'})), keys)[0] == 'unknown_key'
    hs = b64_json({'alg': 'HS256', 'kid': 'k1'}) + '.' + b64_json({}) + '.c2ln'
    status, problem = d.check_signature(d.parse_jwt(hs), keys)
    assert status == 'unsupported_alg' and 'RS256 only' in problem


@pytest.mark.parametrize('claims, offset, problem', [
    ({'exp': 1000, 'nbf': 900}, 950, None),
    ({'exp': 1000, 'nbf': 900}, 1300, None),             # inside the 300 s clock skew
    ({'exp': 1000, 'nbf': 900}, 1301, 'expired at'),
    ({'exp': 1000, 'nbf': 900}, 600, None),
    ({'exp': 1000, 'nbf': 900}, 599, 'not valid before'),
    ({'exp': 1000, 'iat': 900}, 599, 'not valid before'),  # without nbf, iat counts
    ({'nbf': 900}, 950, 'no numeric exp'),
    ({'exp': True}, 950, 'no numeric exp'),
    ({'exp': 1000, 'nbf': 'soon'}, 950, 'nbf claim is not a number'),
])
def test_lifetime(claims, offset, problem):
    found = d.check_lifetime(claims, offset)
    assert (found is None) if problem is None else (problem in found)


# --- what is presented --------------------------------------------------------------------------------------------

def test_presented_from_claims_builds_the_sub():
    p = d.presented_from_claims(project_path='g/p', ref='main')
    assert (p.issuer, p.subject, p.audiences) == ('https://gitlab.com', 'project_path:g/p:ref_type:branch:ref:main', ['https://gitlab.com'])
    p = d.presented_from_claims(issuer=ISS, audiences=[AUD, 'x'], project_id='42', ref_type='tag', ref='v1',
                                sub_claim_components=['project_id', 'ref_type', 'ref'])
    assert p.subject == 'project_id:42:ref_type:tag:ref:v1' and p.claims['aud'] == [AUD, 'x']
    p = d.presented_from_claims(project_path='g/p', ref='main', sub_claim_components=['project_path', 'ref_type', 'ref', 'ref_protected'],
                                claim_values={'ref_protected': True})
    assert p.subject.endswith(':ref_protected:true')
    assert d.presented_from_claims(subject='anything', audiences=[AUD]).claims == {'iss': 'https://gitlab.com', 'sub': 'anything', 'aud': AUD}


@pytest.mark.parametrize('kwargs, field', [
    ({'project_path': 'g/p'}, 'ref'), ({'ref': 'main'}, 'project_path'), ({'issuer': 'http://x', 'subject': 's'}, 'issuer'),
    ({'project_path': 'g/p', 'ref': 'a..b'}, 'branches'), ({'project_path': 'g', 'ref': 'main'}, 'project_path'),
])
def test_presented_from_claims_errors(kwargs, field):
    with pytest.raises(ValidationError) as info:
        d.presented_from_claims(**kwargs)
    assert str(info.value).startswith(field + ':')


# --- comparisons --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('expected, actual, note', [
    ('a', 'a', None), ('https://x', 'https://x/', d.NOTE_SLASH), ('https://X', 'https://x', d.NOTE_CASE),
    ('https://X/', 'https://x', d.NOTE_CASE_SLASH), (' https://x', 'https://x', d.NOTE_SPACE), ('https://x', 'https://y', None),
    (None, 'x', None),
])
def test_near_miss(expected, actual, note):
    assert d.near_miss(expected, actual) == note


def test_sub_differences():
    assert d.sub_differences(SUB, SUB.replace('main', 'dev')) == ["ref: credential 'main', token 'dev'"]
    assert d.sub_differences(SUB, SUB.replace('g/p', 'G/p')) == [
        "project_path: credential 'g/p', token 'G/p' (differs only in upper/lower case)"]
    assert 'ci_id_token_sub_claim_components' in d.sub_differences(SUB, 'project_id:42:ref_type:branch:ref:main')[0]
    assert d.sub_differences('repo:o/r:ref:refs/heads/main', SUB) == []
    assert d.sub_components('project_path:g/p:ref_type') is None


def test_check_credential_exact_and_near_misses():
    ok = d.check_credential(fic(), presented())
    assert (ok.issuer_ok, ok.audience_ok, ok.subject_ok, ok.differences) == (True, True, True, [])
    bad = d.check_credential(fic(issuer=ISS + '/', audience=AUD.upper(), subject=SUB.upper()), presented())
    assert [(x.field, x.note) for x in bad.differences] == [('issuer', d.NOTE_SLASH), ('audience', d.NOTE_CASE), ('subject', d.NOTE_CASE)]
    assert bad.subject_case_only and not (bad.issuer_ok or bad.audience_ok or bad.subject_ok)
    listed = d.check_credential(fic(audience='b'), presented(aud=['a', 'b']))
    assert listed.audience_ok


def test_check_credential_flexible():
    expression = "claims['sub'] matches 'project_path:g/p:ref_type:branch:ref:*'"
    assert d.check_credential(fic(expression=expression), presented(sub=SUB.replace('main', 'x/y'))).subject_ok
    miss = d.check_credential(fic(expression=expression), presented(sub='project_path:g/p:ref_type:tag:ref:v1'))
    assert not miss.subject_ok and miss.differences[0].field == 'claims_matching_expression'
    assert "is false for 'project_path:g/p:ref_type:tag:ref:v1'" in miss.differences[0].details[0]
    cased = d.check_credential(fic(expression="claims['sub'] matches 'project_path:G/p:*'"), presented())
    assert 'ignoring case' in cased.differences[0].details[0] and not cased.subject_case_only
    # An issuer Entra ID does not allow expressions for: the credential can never match.
    never = d.check_credential(fic(issuer='https://ci.example.org', expression=expression), presented(iss='https://ci.example.org'))
    assert not never.subject_ok and 'can never match' in never.differences[0].note
    allowed = d.check_credential(fic(issuer='https://ci.example.org', expression=expression), presented(iss='https://ci.example.org'),
                                 gitlab_issuers=['https://ci.example.org'])
    assert allowed.subject_ok


def test_closest_prefers_more_fields_then_near_misses():
    p = presented()
    far = d.check_credential(fic('far', issuer='https://other', subject='project_path:x/y:ref_type:tag:ref:v1'), p)
    slash = d.check_credential(fic('slash', issuer=ISS + '/'), p)
    audience = d.check_credential(fic('aud', audience='other', subject=SUB.replace('main', 'dev')), p)
    assert d.closest([far, audience, slash]).name == 'slash'
    assert d.closest([far, audience]).name == 'aud'
    assert d.closest([]) is None


# --- the verdict and its order ------------------------------------------------------------------------------------

def facts(credentials=(fic(),), p=None, **kwargs):
    p = p or presented()
    base = dict(application={'id': 'o', 'appId': 'a', 'displayName': 'app'}, service_principal={'id': 's', 'accountEnabled': True},
                issuer_report=d.IssuerReport(ISS, d.discovery_url(ISS), reachable=True, keys={'k1': {}}))
    base.update(kwargs)
    out = d.Facts(p, 'a', 'tenant', **base)
    out.checks = [d.check_credential(c, p) for c in credentials]
    return out


def report(**kwargs):
    return d.TokenReport('RS256', 'k1', 'JWT', **kwargs)


@pytest.mark.parametrize('make, code', [
    (facts, None),
    (lambda: facts(tenant_report=d.TenantReport('x', 'not_found'), application=None), 90002),
    (lambda: facts(application=None), 700016),
    (lambda: facts(tenant_report=d.TenantReport('x', 'found', 'T2'), app_tenant_id='T1'), 700016),
    (lambda: facts(p=presented(iss='https://sts.windows.net/t/')), 700222),
    (lambda: facts(credentials=()), 70021),
    (lambda: facts(credentials=(fic(issuer=ISS + '/'),)), 700211),
    (lambda: facts(credentials=(fic(issuer=ISS + '/'),), issuer_report=d.IssuerReport(ISS, '', problem='down')), 700211),
    (lambda: facts(issuer_report=d.IssuerReport(ISS, '', problem='down'), token_report=report(signature='invalid')), 501661),
    (lambda: facts(credentials=(fic(audience='x'),), token_report=report(signature='unknown_key', lifetime_problem='old')), 700027),
    (lambda: facts(credentials=(fic(audience='x'),), token_report=report(signature='valid', lifetime_problem='old')), 700024),
    (lambda: facts(credentials=(fic(audience='x'),), token_report=report(signature='not_checked')), 700212),
    (lambda: facts(credentials=(fic(audience='x', subject='y'),), issuer_report=None), 700212),
    (lambda: facts(credentials=(fic(subject=SUB.upper()),)), 7002138),
    (lambda: facts(credentials=(fic(subject=SUB.upper()), fic('b', subject='x'))), 7002138),
    (lambda: facts(credentials=(fic(subject=SUB.upper(), audience='x'), fic('b', subject='x'))), 700213),
    (lambda: facts(credentials=(fic(subject='x'),), service_principal=None), 700213),
    (lambda: facts(service_principal=None), 7000229),
    (lambda: facts(service_principal={'id': 's', 'accountEnabled': False}), 7000112),
    (lambda: facts(credentials=(fic('a', issuer='x'), fic('b', subject='y'), fic('c'))), None),
])
def test_diagnose_order(make, code):
    diagnosis = d.diagnose(make())
    assert diagnosis.code == code
    assert (diagnosis.message is None) == (code is None)
    if code is not None:
        assert diagnosis.message.startswith('AADSTS{0}: '.format(code)) and diagnosis.fixes and diagnosis.error


def test_result_shape_never_holds_the_token(key):
    token = sign(key, {'iss': ISS, 'sub': SUB, 'aud': AUD, 'exp': time.time() + 60, 'user_email': 'me@example.com'})
    p = d.presented_from_token(token)
    f = facts(p=p, credentials=(fic(subject=SUB.replace('main', 'dev')),))
    f.token_report = d.check_token(p.jwt, {'k1': jwk_of(key)}, time.time())
    result = d.doctor_result(f, d.diagnose(f), None)
    text = json.dumps(result)
    assert token not in text and token.split('.')[2] not in text and 'me@example.com' not in text
    assert result['aadsts'] == 700213 and result['token']['signature'] == 'valid'
    assert result['suggested_credential'] == {'issuer': ISS, 'audiences': [AUD], 'subject': SUB}
    assert [c['name'] for c in result['checks']] == ['tenant', 'application', 'credentials', 'issuer', 'issuer_discovery', 'signature',
                                                     'lifetime', 'audience', 'subject', 'service_principal']


# --- the issuer and the tenant over a mock transport ------------------------------------------------------------------

def serve(routes):
    def handler(request):
        answer = routes.get(str(request.url))
        if answer is None:
            return httpx.Response(404, json={'error': 'not found'})
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers={'content-type': 'text/html'})
        return httpx.Response(status, json=body)
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def fetch(routes, issuer=ISS):
    async def go():
        async with serve(routes) as http:
            return await d.fetch_issuer(http, issuer)
    return asyncio.run(go())


DISCOVERY = ISS + '/.well-known/openid-configuration'
JWKS = ISS + '/oauth/discovery/keys'


def test_fetch_issuer_ok_and_key_rules(key):
    keys = [jwk_of(key, 'k1'), jwk_of(key, 'k2', alg='RS512'), {'kty': 'EC', 'kid': 'k3'}, {'kty': 'RSA', 'kid': 'k4', 'n': 'AQ'},
            jwk_of(key, 'k5', alg=None)]
    found = fetch({DISCOVERY: (200, {'issuer': ISS, 'jwks_uri': JWKS}), JWKS: (200, {'keys': keys})})
    assert found.ok and sorted(found.keys) == ['k1', 'k5'] and found.key_count == 5
    # Only the first 100 keys count.
    late = [jwk_of(key, 'x%d' % i, kty='oct') for i in range(100)] + [jwk_of(key, 'late')]
    found = fetch({DISCOVERY: (200, {'issuer': ISS, 'jwks_uri': JWKS}), JWKS: (200, {'keys': late})})
    assert not found.ok and 'no usable RS256' in found.problem
    # A trailing slash on the issuer is dropped for the discovery URL, and then the issuers differ.
    found = fetch({DISCOVERY: (200, {'issuer': ISS, 'jwks_uri': JWKS})}, issuer=ISS + '/')
    assert found.discovery_url == DISCOVERY and 'differs only by a trailing slash' in found.problem


@pytest.mark.parametrize('routes, problem', [
    ({}, 'returned HTTP 404'),
    ({DISCOVERY: (200, '<html>')}, 'is not JSON'),
    ({DISCOVERY: (200, [1])}, 'not a JSON object'),
    ({DISCOVERY: (200, {'issuer': ISS + '/', 'jwks_uri': JWKS})}, 'is not the token\'s iss'),
    ({DISCOVERY: (200, {'issuer': ISS})}, 'no https jwks_uri'),
    ({DISCOVERY: (200, {'issuer': ISS, 'jwks_uri': 'http://x/keys'})}, 'no https jwks_uri'),
    ({DISCOVERY: (200, {'issuer': ISS, 'jwks_uri': JWKS})}, 'fetching the signing keys from'),
    ({DISCOVERY: (200, {'issuer': ISS, 'jwks_uri': JWKS}), JWKS: (200, {'keys': []})}, 'has no keys'),
    ({DISCOVERY: httpx.ConnectError('refused')}, 'could not fetch the OpenID configuration'),
])
def test_fetch_issuer_problems(routes, problem):
    found = fetch(routes)
    assert not found.ok and problem in found.problem


def test_fetch_issuer_not_https():
    found = fetch({}, issuer='http://gitlab.example.com')
    assert 'is not https' in found.problem and not found.reachable


@pytest.mark.parametrize('status, body, expected', [
    (200, {'issuer': 'https://login.example/1111/v2.0'}, ('found', '1111')),
    (400, {'error': 'invalid_tenant', 'error_codes': [90002], 'error_description': "AADSTS90002: Tenant 'x' not found.\r\nTrace ID: 1"},
     ('not_found', None)),
    (500, {}, ('unknown', None)),
])
def test_check_tenant(status, body, expected):
    url = 'https://login.example/x/v2.0/.well-known/openid-configuration'

    async def go():
        async with serve({url: (status, body)}) as http:
            return await d.check_tenant(http, 'https://login.example', 'x')
    found = asyncio.run(go())
    assert (found.status, found.tenant_id) == expected
    if found.status == 'not_found':
        assert found.detail == "AADSTS90002: Tenant 'x' not found."
