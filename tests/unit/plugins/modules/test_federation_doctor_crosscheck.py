# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""federation_doctor against the sandbox's real token endpoint: the doctor's prediction must be Entra's answer.

Each case sets up an application (credentials, service principal, issuer switches) over raw HTTP, mints a GitLab ID
token through the sandbox's control API, POSTs it as ``client_assertion`` to ``{sandbox.url}/{tenant}/oauth2/v2.0/token``
and runs the real module in-process with the same token (and, where the token's own properties play no part, with the
claims the job would present instead). The doctor's matching code (``_fic.py``, ``_doctor.py``) shares nothing with
the sandbox's ``entra.py``; both must give the code the case is documented to give.
"""

from __future__ import annotations

import sys
import uuid

import pytest

pytestmark = pytest.mark.skipif('oidc_sandbox_test_fixtures' not in sys.modules,
                                reason='the sandbox package (sandbox/oidc_sandbox) is not in this checkout')

from ansible_collections.oidc_federation.azure.plugins.modules.federation_doctor import main  # noqa: E402
from ansible_collections.oidc_federation.azure.tests.unit.plugins.modules.sandbox_auth import auth_args  # noqa: E402

AUD = 'api://AzureADTokenExchange'
PROJECT = 'mygroup/myproject'
SUB_MAIN = 'project_path:mygroup/myproject:ref_type:branch:ref:main'
ARM_SCOPE = 'https://management.azure.com/.default'
JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'


# --- helpers ------------------------------------------------------------------------------------------------------


def issuer_url(sb, name='gitlab.com'):
    """The URL of one of the sandbox's GitLab issuers."""
    return '{0}/gitlab/{1}'.format(sb.url, name)


def create_app(sb, *, service_principal=True):
    """An application (and its service principal), over raw HTTP with the operator's token."""
    token = sb.token()
    response = sb.graph('POST', '/v1.0/applications', token=token,
                        json={'displayName': 'doctor-' + uuid.uuid4().hex[:8], 'signInAudience': 'AzureADMyOrg'})
    assert response.status_code == 201, response.text
    app = response.json()
    if service_principal:
        response = sb.graph('POST', '/v1.0/servicePrincipals', token=token, json={'appId': app['appId']})
        assert response.status_code == 201, response.text
    return app


def add_fic(sb, app, **body):
    """A federated identity credential, over raw HTTP (/beta, so flexible ones work too)."""
    body.setdefault('name', 'fic-' + uuid.uuid4().hex[:8])
    body.setdefault('audiences', [AUD])
    response = sb.graph('POST', '/beta/applications/{0}/federatedIdentityCredentials'.format(app['id']), json=body)
    assert response.status_code == 201, response.text
    return response.json()


def exchange(sb, client_id, assertion, tenant=None):
    """Entra's real answer (the sandbox's token endpoint): None on success, else the first AADSTS code."""
    response = sb.token_request({'grant_type': 'client_credentials', 'client_id': client_id, 'scope': ARM_SCOPE,
                                 'client_assertion_type': JWT_BEARER, 'client_assertion': assertion}, tenant=tenant)
    if response.status_code == 200:
        return None
    codes = response.json().get('error_codes') or [None]
    return codes[0]


def doctor(run_module, sb, client_id, **args):
    """Run the module; return its result (it must never fail nor change anything)."""
    params = dict(auth_args(sb), app_id=client_id,
                  gitlab_issuers=[issuer_url(sb), issuer_url(sb, 'gitlab.example.com')], **args)
    rc, result = run_module(main, params)
    assert rc == 0, result
    assert result['changed'] is False
    return result


def writes(sb):
    return sb.control('GET', 'stats').json()['writes']


# --- the corpus ---------------------------------------------------------------------------------------------------
# Each case: credentials (issuer given as an issuer name, or a callable of the sandbox), whether the app has a
# service principal, the token to mint, issuer switches, and the code Entra documents for it.

def _fic(subject=SUB_MAIN, issuer='gitlab.com', audience=AUD, expression=None):
    fic = {'issuer': issuer, 'audiences': [audience]}
    if expression is not None:
        fic['claimsMatchingExpression'] = {'value': expression, 'languageVersion': 1}
    else:
        fic['subject'] = subject
    return fic


CASES = [
    # id, credentials, service principal, token spec, issuer switch, expected code, claims mode also?
    ('exact', [_fic()], True, {}, None, None, True),
    ('flexible', [_fic(expression="claims['sub'] matches 'project_path:mygroup/myproject:ref_type:branch:ref:*'")],
     True, {'ref': 'feature/x'}, None, None, True),
    ('flexible-no-match', [_fic(expression="claims['sub'] matches 'project_path:mygroup/myproject:ref_type:branch:ref:*'")],
     True, {'ref_type': 'tag', 'ref': 'v1.0'}, None, 700213, True),
    ('flexible-case-only', [_fic(expression="claims['sub'] matches 'project_path:MyGroup/myproject:*'")],
     True, {}, None, 700213, True),
    ('wrong-issuer', [_fic(issuer='gitlab.example.com')], True, {}, None, 700211, True),
    ('trailing-slash', [_fic(issuer=lambda sb: issuer_url(sb) + '/')], True, {}, None, 700211, True),
    ('issuer-case', [_fic(issuer=lambda sb: issuer_url(sb).replace('/gitlab/', '/GitLab/'))], True, {}, None, 700211, True),
    ('subject-case', [_fic(subject='project_path:MyGroup/myproject:ref_type:branch:ref:main')], True, {}, None, 7002138, True),
    ('wrong-audience', [_fic(audience='https://gitlab.com')], True, {}, None, 700212, True),
    ('audience-trailing-slash', [_fic(audience=AUD + '/')], True, {}, None, 700212, True),
    ('audience-list', [_fic(audience='https://gitlab.com')], True, {'aud': [AUD, 'https://gitlab.com']}, None, None, False),
    ('other-project', [_fic()], True, {'project_path': 'othergroup/otherproject'}, None, 700213, True),
    ('other-ref', [_fic()], True, {'ref': 'develop'}, None, 700213, True),
    ('tag-not-branch', [_fic()], True, {'ref_type': 'tag'}, None, 700213, True),
    ('project-id-led', [_fic(expression="claims['sub'] matches 'project_id:4242:*'")], True,
     {'project_id': '4242', 'sub_components': ['project_id', 'ref_type', 'ref']}, None, None, True),
    ('components-changed', [_fic()], True,
     {'project_id': '4242', 'sub_components': ['project_id', 'ref_type', 'ref']}, None, 700213, True),
    ('expired', [_fic()], True, {'expired': True}, None, 700024, False),
    ('not-yet-valid', [_fic()], True, {'not_yet_valid': True}, None, 700024, False),
    ('foreign-signature', [_fic()], True, {'signing': 'foreign'}, None, 700027, False),
    ('unknown-kid', [_fic()], True, {'signing': 'unknown_kid'}, None, 700027, False),
    ('no-service-principal', [_fic()], False, {}, None, 7000229, True),
    ('no-credentials', [], True, {}, None, 70021, True),
    ('unreachable-issuer', [_fic()], True, {}, {'unreachable': True}, 501661, True),
    ('issuer-503', [_fic()], True, {}, {'unreachable': '503'}, 501661, True),
    ('discovery-issuer-mismatch', [_fic()], True, {}, {'broken': 'issuer'}, 501661, True),
    ('discovery-not-json', [_fic()], True, {}, {'broken': 'document'}, 501661, True),
    ('no-jwks-uri', [_fic()], True, {}, {'broken': 'no_jwks_uri'}, 501661, True),
    ('keys-missing', [_fic()], True, {}, {'broken': 'keys'}, 501661, True),
    ('keys-empty', [_fic()], True, {}, {'broken': 'empty_keys'}, 501661, True),
    ('keys-malformed', [_fic()], True, {}, {'broken': 'malformed_keys'}, 501661, True),
    # Several fields differ: the first failing check in Entra's order decides.
    ('issuer-and-subject', [_fic(issuer=lambda sb: issuer_url(sb) + '/', subject='project_path:a/b:ref_type:branch:ref:x')],
     True, {}, None, 700211, True),
    ('audience-and-subject', [_fic(audience='https://gitlab.com', subject='project_path:a/b:ref_type:branch:ref:x')],
     True, {}, None, 700212, True),
    ('expired-and-audience', [_fic(audience='https://gitlab.com')], True, {'expired': True}, None, 700024, False),
    ('bad-signature-and-subject', [_fic()], True, {'signing': 'foreign', 'ref': 'develop'}, None, 700027, False),
    ('unreachable-and-audience', [_fic(audience='https://gitlab.com')], True, {}, {'unreachable': True}, 501661, True),
    ('unreachable-and-wrong-issuer', [_fic(issuer='gitlab.example.com')], True, {}, {'unreachable': True}, 700211, True),
    ('subject-and-no-service-principal', [_fic()], False, {'ref': 'develop'}, None, 700213, True),
    ('one-of-several', [_fic(issuer='gitlab.example.com'), _fic(audience='https://gitlab.com'), _fic(subject=SUB_MAIN.replace('main', 'dev'))],
     True, {}, None, 700213, True),
    ('match-among-several', [_fic(issuer='gitlab.example.com'), _fic()], True, {}, None, None, True),
]


def _issuer_of(sb, value):
    if callable(value):
        return value(sb)
    return issuer_url(sb, value)


def _setup(sb, credentials, service_principal, switch):
    app = create_app(sb, service_principal=service_principal)
    for fic in credentials:
        add_fic(sb, app, **dict(fic, issuer=_issuer_of(sb, fic['issuer'])))
    if switch:
        response = sb.control('POST', 'issuers', json=dict(switch, name='gitlab.com'))
        assert response.status_code == 200, response.text
    return app


def _claims_args(sb, spec):
    """The module's claim options for the token ``spec`` (what the job would present)."""
    args = {'issuer': issuer_url(sb), 'audiences': spec.get('aud', AUD) if isinstance(spec.get('aud', AUD), list) else [spec.get('aud', AUD)],
            'ref_type': spec.get('ref_type', 'branch'), 'ref': spec.get('ref', 'main')}
    components = spec.get('sub_components')
    if components:
        args['sub_claim_components'] = components
    if components and components[0] == 'project_id':
        args['project_id'] = spec['project_id']
    else:
        args['project_path'] = spec.get('project_path', PROJECT)
    return args


@pytest.mark.parametrize('case', CASES, ids=[case[0] for case in CASES])
def test_doctor_predicts_entra(clean_sandbox, run_module, case):
    """The doctor's code equals the code the sandbox's token endpoint returns, and the documented one."""
    sb = clean_sandbox
    _name, credentials, service_principal, spec, switch, expected, claims_mode = case
    app = _setup(sb, credentials, service_principal, switch)
    token_spec = dict({'project_path': PROJECT, 'ref': 'main', 'aud': AUD}, **spec)
    assertion = sb.mint_gitlab_token(**token_spec)
    actual = exchange(sb, app['appId'], assertion)
    before = writes(sb)
    predicted = doctor(run_module, sb, app['appId'], id_token=assertion)
    assert (predicted['aadsts'], actual) == (expected, expected), predicted['explanation']
    assert predicted['would_succeed'] is (expected is None)
    if claims_mode:
        from_claims = doctor(run_module, sb, app['appId'], **_claims_args(sb, token_spec))
        assert from_claims['aadsts'] == expected, from_claims['explanation']
    assert writes(sb) == before, 'the doctor must not write'


def test_unknown_application(clean_sandbox, run_module):
    """A client id that names no application: 700016 from both."""
    sb = clean_sandbox
    client_id = str(uuid.uuid4())
    assertion = sb.mint_gitlab_token(project_path=PROJECT, ref='main')
    assert exchange(sb, client_id, assertion) == 700016
    result = doctor(run_module, sb, client_id, id_token=assertion)
    assert result['aadsts'] == 700016 and result['application'] is None


def test_unknown_tenant(clean_sandbox, run_module):
    """The job logs in to a tenant that does not exist: 90002 from both."""
    sb = clean_sandbox
    app = _setup(sb, [_fic()], True, None)
    assertion = sb.mint_gitlab_token(project_path=PROJECT, ref='main')
    tenant = str(uuid.uuid4())
    assert exchange(sb, app['appId'], assertion, tenant=tenant) == 90002
    result = doctor(run_module, sb, app['appId'], id_token=assertion, pipeline_tenant_id=tenant)
    assert result['aadsts'] == 90002
    assert exchange(sb, app['appId'], assertion, tenant='sandbox.onmicrosoft.com') is None
    assert doctor(run_module, sb, app['appId'], id_token=assertion, pipeline_tenant_id='sandbox.onmicrosoft.com')['aadsts'] is None


def test_entra_issued_assertion(clean_sandbox, run_module):
    """An Entra access token passed as the assertion: 700222 from both."""
    sb = clean_sandbox
    app = _setup(sb, [_fic()], True, None)
    assertion = sb.token(ARM_SCOPE)
    assert exchange(sb, app['appId'], assertion) == 700222
    assert doctor(run_module, sb, app['appId'], id_token=assertion, check_issuer=False)['aadsts'] == 700222


def test_fresh_application_under_replication_lag(clean_sandbox, run_module):
    """Right after creation, neither Graph nor the token endpoint sees the application yet: 700016 from both."""
    sb = clean_sandbox
    app = _setup(sb, [_fic()], True, None)
    sb.faults(replication_lag=60)  # every object created above is now younger than the lag window
    assertion = sb.mint_gitlab_token(project_path=PROJECT, ref='main')
    assert exchange(sb, app['appId'], assertion) == 700016
    assert doctor(run_module, sb, app['appId'], id_token=assertion, replication_timeout=0)['aadsts'] == 700016


def _disable_service_principal(sb, app):
    response = sb.graph('PATCH', "/v1.0/servicePrincipals(appId='{0}')".format(app['appId']), json={'accountEnabled': False})
    assert response.status_code == 204, response.text


def test_disabled_service_principal(clean_sandbox, run_module):
    """A disabled service principal: Entra answers AADSTS7000112 (unauthorized_client, "Application '<id>'(<name>) is disabled.")."""
    sb = clean_sandbox
    app = _setup(sb, [_fic()], True, None)
    _disable_service_principal(sb, app)
    assertion = sb.mint_gitlab_token(project_path=PROJECT, ref='main')
    assert exchange(sb, app['appId'], assertion) == 7000112
    result = doctor(run_module, sb, app['appId'], id_token=assertion)
    assert (result['aadsts'], result['error']) == (7000112, 'unauthorized_client')
    assert result['service_principal']['enabled'] is False
    assert 'accountEnabled=true' in result['fixes'][0]
