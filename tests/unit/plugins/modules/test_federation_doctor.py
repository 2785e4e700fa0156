# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""federation_doctor: the real module, in-process, against the sandbox (Graph, ARM, GitLab issuers over HTTPS).

What it shows (closest credential, differences with notes, fixes, suggested credential, issuer metadata, token
report, role assignments at a scope), check mode, never a write, bad input refused before any request, throttling,
and no token or secret in any result. The code predictions themselves are cross-checked against the sandbox's token
endpoint in test_federation_doctor_crosscheck.py.
"""

from __future__ import annotations

import json
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
READER = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'


def new_app(sb, *, service_principal=True, unique_name=None):
    """An application with its service principal, created over raw HTTP."""
    body = {'displayName': 'doctor-' + uuid.uuid4().hex[:8], 'signInAudience': 'AzureADMyOrg'}
    if unique_name:
        body['uniqueName'] = unique_name
    response = sb.graph('POST', '/v1.0/applications', json=body)
    assert response.status_code == 201, response.text
    app = response.json()
    if service_principal:
        response = sb.graph('POST', '/v1.0/servicePrincipals', json={'appId': app['appId']})
        assert response.status_code == 201, response.text
        app['sp'] = response.json()
    return app


def add_fic(sb, app, name='deploy-main', **body):
    body.setdefault('issuer', sb.gitlab_issuer)
    body.setdefault('audiences', [AUD])
    if 'claimsMatchingExpression' not in body:
        body.setdefault('subject', SUB_MAIN)
    response = sb.graph('POST', '/beta/applications/{0}/federatedIdentityCredentials'.format(app['id']), json=dict(body, name=name))
    assert response.status_code == 201, response.text
    return response.json()


def stats(sb):
    return sb.control('GET', 'stats').json()


def run(run_module, sb, app=None, check=False, **args):
    params = dict(auth_args(sb), gitlab_issuers=[sb.gitlab_issuer])
    if app is not None:
        params['app_id'] = app['appId']
    params.update(args)
    if check:
        params['_ansible_check_mode'] = True
    return run_module(main, params)


def claims(sb, ref='main', **extra):
    """The claim options of a job of PROJECT on ``ref``."""
    return dict({'issuer': sb.gitlab_issuer, 'audiences': [AUD], 'project_path': PROJECT, 'ref': ref}, **extra)


# --- what it shows ------------------------------------------------------------------------------------------------

def test_other_ref_shows_the_component_and_a_concrete_fix(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app)
    add_fic(sb, app, name='other-project', subject='project_path:othergroup/other:ref_type:branch:ref:develop')
    rc, result = run(run_module, sb, app, **claims(sb, ref='develop'))
    assert rc == 0 and result['changed'] is False
    assert (result['aadsts'], result['error'], result['would_succeed']) == (700213, 'invalid_client', False)
    assert result['entra_message'].startswith("AADSTS700213: No matching federated identity record found for presented assertion "
                                              "subject 'project_path:mygroup/myproject:ref_type:branch:ref:develop'.")
    assert result['closest_credential']['name'] == 'deploy-main'
    assert result['differences'] == [{'field': 'subject', 'credential': SUB_MAIN, 'token': SUB_MAIN.replace('main', 'develop'),
                                      'note': None, 'details': ["ref: credential 'main', token 'develop'"]}]
    assert 'trusts another ref' in result['fixes'][0] and 'suggested_credential' in result['fixes'][0]
    assert result['suggested_credential'] == {'issuer': sb.gitlab_issuer, 'audiences': [AUD], 'subject': SUB_MAIN.replace('main', 'develop')}
    assert result['presented'] == {'source': 'claims', 'claims': {
        'iss': sb.gitlab_issuer, 'sub': SUB_MAIN.replace('main', 'develop'), 'aud': AUD, 'project_path': PROJECT, 'namespace_path': 'mygroup',
        'ref': 'develop', 'ref_type': 'branch', 'ref_path': 'refs/heads/develop'}}
    assert [c['name'] for c in result['credentials']] == ['deploy-main', 'other-project']
    assert {c['name']: (c['issuer_matches'], c['audience_matches'], c['subject_matches']) for c in result['credentials']} == {
        'deploy-main': (True, True, False), 'other-project': (True, True, False)}
    statuses = {c['name']: c['status'] for c in result['checks']}
    assert statuses['subject'] == 'fail' and statuses['issuer'] == 'ok' and statuses['audience'] == 'ok'
    assert result['token'] is None and result['role_assignments'] is None


def test_trailing_slash_issuer_is_pointed_out(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app, name='slash', issuer=sb.gitlab_issuer + '/')
    add_fic(sb, app, name='far-away', issuer=sb.url + '/gitlab/gitlab.example.com', subject='project_path:x/y:ref_type:tag:ref:v1')
    rc, result = run(run_module, sb, app, **claims(sb))
    assert result['aadsts'] == 700211
    assert result['closest_credential']['name'] == 'slash'
    assert result['differences'] == [{'field': 'issuer', 'credential': sb.gitlab_issuer + '/', 'token': sb.gitlab_issuer,
                                      'note': 'differs only by a trailing slash', 'details': []}]
    assert "set the issuer of credential 'slash' to {0!r} exactly".format(sb.gitlab_issuer) in result['fixes'][0]


def test_case_only_subject_and_audience(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app, name='cased', subject=SUB_MAIN.replace('mygroup', 'MyGroup'), audiences=[AUD.upper()])
    rc, result = run(run_module, sb, app, **claims(sb))
    assert result['aadsts'] == 700212
    by_field = {d['field']: d for d in result['differences']}
    assert by_field['audience']['note'] == 'differs only in upper/lower case'
    assert by_field['subject']['note'] == 'differs only in upper/lower case'
    assert by_field['subject']['details'] == ["project_path: credential 'MyGroup/myproject', token 'mygroup/myproject' "
                                              "(differs only in upper/lower case)"]
    assert any('id_tokens' in fix for fix in result['fixes'])


def test_success_with_token_and_role_assignments(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb, unique_name='gitlab-oidc-mygroup~myproject')
    add_fic(sb, app)
    subscription = '/subscriptions/' + sb.subscription_id
    response = sb.control('POST', 'arm/roleAssignments', json={'scope': subscription, 'role': 'Reader', 'principalId': app['sp']['id']})
    assert response.status_code == 201, response.text
    token = sb.mint_gitlab_token(project_path=PROJECT, ref='main')
    rc, result = run(run_module, sb, app_unique_name='gitlab-oidc-mygroup~myproject', id_token=token,
                     scope=subscription + '/resourceGroups/rg-sandbox')
    assert rc == 0 and result['would_succeed'] is True and result['aadsts'] is None and result['entra_message'] is None
    assert result['matched_credential']['name'] == 'deploy-main' and result['differences'] == [] and result['fixes'] == []
    assert result['application']['unique_name'] == 'gitlab-oidc-mygroup~myproject'
    assert result['service_principal'] == {'id': app['sp']['id'], 'display_name': app['displayName'], 'enabled': True}
    assert result['token']['signature'] == 'valid' and result['token']['lifetime_ok'] is True and result['token']['alg'] == 'RS256'
    assert result['presented']['source'] == 'id_token' and 'user_email' not in result['presented']['claims']
    metadata = result['issuer_metadata']
    assert metadata['ok'] and metadata['document_issuer'] == sb.gitlab_issuer and len(metadata['rsa_keys']) == 2
    assert metadata['jwks_uri'] == sb.gitlab_issuer + '/oauth/discovery/keys'
    # The sandbox CA is trusted through ca_bundle only: Entra ID in the cloud would not trust it.
    assert any('trusted only through ca_bundle' in w for w in metadata['warnings'])
    assert [(r['role'], r['role_definition_guid'], r['scope'], r['inherited']) for r in result['role_assignments']] == [
        ('Reader', READER, subscription, True)]
    assert all(c['status'] in ('ok', 'skipped', 'warn') for c in result['checks'])
    # At the subscription itself the same assignment is not inherited.
    rc, result = run(run_module, sb, app, id_token=token, scope=subscription)
    assert [(r['role'], r['inherited']) for r in result['role_assignments']] == [('Reader', False)]


def test_login_works_but_no_role_at_scope(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app)
    rc, result = run(run_module, sb, app, scope='/subscriptions/{0}/resourceGroups/rg-sandbox'.format(sb.subscription_id), **claims(sb))
    assert result['would_succeed'] is True and result['role_assignments'] == []
    assert 'holds no role' in result['fixes'][0]
    assert {c['name']: c['status'] for c in result['checks']}['role_assignments'] == 'warn'


def test_role_assignments_unreadable_is_reported_not_fatal(clean_sandbox, run_module):
    """A scope the operator cannot read: the diagnosis still comes back, the role check says why it is missing."""
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app)
    args = dict(auth_args(sb), client_id=sb.restricted.client_id, client_secret=sb.restricted.secret)
    root_group = '/providers/Microsoft.Management/managementGroups/' + sb.tenant_id  # the restricted operator reads one subscription
    params = dict(args, app_id=app['appId'], gitlab_issuers=[sb.gitlab_issuer], scope=root_group, **claims(sb))
    rc, result = run_module(main, params)
    assert rc == 0 and result['would_succeed'] is True and result['role_assignments'] is None
    check = {c['name']: c for c in result['checks']}['role_assignments']
    assert check['status'] == 'warn' and 'AuthorizationFailed' in check['detail']


def test_expired_token_report(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app)
    rc, result = run(run_module, sb, app, id_token=sb.mint_gitlab_token(project_path=PROJECT, ref='main', expired=True))
    assert result['aadsts'] == 700024
    assert result['token']['lifetime_ok'] is False and 'expired at' in result['token']['lifetime_problem']
    assert result['entra_message'].startswith('AADSTS700024: Client assertion is not within its valid time range.')
    assert result['closest_credential']['subject_matches'] is True


def test_issuer_problem_is_explained(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app)
    assert sb.control('POST', 'issuers', json={'name': 'gitlab.com', 'broken': 'issuer'}).status_code == 200
    rc, result = run(run_module, sb, app, **claims(sb))
    assert result['aadsts'] == 501661
    assert result['issuer_metadata']['document_issuer'] == sb.gitlab_issuer + '/'
    assert 'differs only by a trailing slash' in result['issuer_metadata']['problem']
    assert "external_url" in result['fixes'][0]


def test_check_issuer_false_skips_the_issuer(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app)
    assert sb.control('POST', 'issuers', json={'name': 'gitlab.com', 'unreachable': True}).status_code == 200
    token = sb.mint_gitlab_token(project_path=PROJECT, ref='main')
    rc, result = run(run_module, sb, app, id_token=token, check_issuer=False)
    assert result['aadsts'] is None and result['issuer_metadata'] is None
    assert result['token']['signature'] == 'not_checked'
    assert {c['name']: c['status'] for c in result['checks']}['issuer_discovery'] == 'skipped'
    rc, result = run(run_module, sb, app, id_token=token)
    assert result['aadsts'] == 501661 and result['issuer_metadata']['reachable'] is False


def test_no_credentials_suggests_one(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    rc, result = run(run_module, sb, app, **claims(sb))
    assert result['aadsts'] == 70021 and result['closest_credential'] is None and result['credentials'] == []
    assert result['suggested_credential']['subject'] == SUB_MAIN
    assert 'add a federated identity credential' in result['fixes'][0]


def test_no_service_principal(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb, service_principal=False)
    add_fic(sb, app)
    rc, result = run(run_module, sb, app, scope='/subscriptions/' + sb.subscription_id, **claims(sb))
    assert result['aadsts'] == 7000229 and result['service_principal'] is None
    assert result['matched_credential']['name'] == 'deploy-main'
    assert 'az ad sp create --id ' + app['appId'] in result['fixes'][0]
    assert result['role_assignments'] == []


# --- read-only, check mode ----------------------------------------------------------------------------------------

def test_check_mode_same_answer_and_never_a_write(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app, claimsMatchingExpression={'value': "claims['sub'] matches 'project_path:mygroup/myproject:ref_type:branch:ref:*'",
                                               'languageVersion': 1}, name='all-branches')
    before = stats(sb)['writes']
    rc, normal = run(run_module, sb, app, **claims(sb, ref='feature/a'))
    rc, checked = run(run_module, sb, app, check=True, **claims(sb, ref='feature/a'))
    assert normal['would_succeed'] is True and normal['matched_credential']['name'] == 'all-branches'
    for result in (normal, checked):
        result.pop('invocation', None)
    assert checked == normal and checked['changed'] is False
    assert stats(sb)['writes'] == before


# --- bad input: refused before any request ------------------------------------------------------------------------

BAD_INPUT = [
    ('app_id not a GUID', {'app_id': 'my-app'}, 'app_id'),
    ('no application', {}, 'app_id'),
    ('both application keys', {'app_id': str(uuid.uuid4()), 'app_unique_name': 'x'}, 'app_id'),
    ('token and claims', {'id_token': 'a.b.c', 'ref': 'main'}, 'id_token'),
    ('subject and project', {'subject': SUB_MAIN, 'project_path': PROJECT}, 'subject'),
    ('token not a JWT', {'id_token': 'not-a-token'}, 'id_token'),
    ('token not JSON', {'id_token': 'eyJhbGciOi.eyJzdWIi.c2ln'}, 'id_token'),
    ('no ref', {'project_path': PROJECT}, 'ref'),
    ('no project', {'ref': 'main'}, 'project_path'),
    ('full ref', {'project_path': PROJECT, 'ref': 'refs/heads/main'}, 'branches'),
    ('bad project path', {'project_path': 'https://gitlab.com/g/p', 'ref': 'main'}, 'project_path'),
    ('bad components', {'project_path': PROJECT, 'ref': 'main', 'sub_claim_components': ['ref', 'project_path']},
     'ci_id_token_sub_claim_components'),
    ('project_id needed', {'project_path': PROJECT, 'ref': 'main', 'sub_claim_components': ['project_id', 'ref_type', 'ref']}, 'project_id'),
    ('claim value not in components', {'project_path': PROJECT, 'ref': 'main', 'claim_values': {'ref_protected': True}},
     'claim_values.ref_protected'),
    ('http issuer', {'issuer': 'http://gitlab.example.com', 'project_path': PROJECT, 'ref': 'main'}, 'issuer'),
    ('bad scope', {'project_path': PROJECT, 'ref': 'main', 'scope': '/subscriptions/not-a-guid'}, 'scope'),
    ('bad tenant', {'project_path': PROJECT, 'ref': 'main', 'pipeline_tenant_id': 'a b'}, 'pipeline_tenant_id'),
    ('bad ref type', {'project_path': PROJECT, 'ref': 'main', 'ref_type': 'commit'}, 'ref_type'),
]


@pytest.mark.parametrize('args,field', [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_input_names_the_field_before_any_request(clean_sandbox, run_module, args, field):
    sb = clean_sandbox
    app_args = {} if 'app_id' in args or 'app_unique_name' in args or not args else {'app_id': str(uuid.uuid4())}
    if not args:
        args = {'project_path': PROJECT, 'ref': 'main'}
    sb.control('POST', 'stats/reset')
    params = dict(auth_args(sb), **app_args)
    params.update(args)
    rc, result = run_module(main, params)
    assert rc == 1 and result['failed'] is True
    assert field in result['msg'], result['msg']
    assert 'Traceback' not in result['msg'] and 'exception' not in result
    served = {service: count for service, count in stats(sb)['by_service'].items() if service != 'control'}
    assert served == {}, 'nothing may be requested before the input is valid'


# --- faults, secrets ----------------------------------------------------------------------------------------------

def test_throttling_and_latency_do_not_change_the_answer(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app)
    response = sb.control('POST', 'arm/roleAssignments', json={'scope': '/subscriptions/' + sb.subscription_id, 'role': 'Reader',
                                                               'principalId': app['sp']['id']})
    assert response.status_code == 201
    token = sb.mint_gitlab_token(project_path=PROJECT, ref='develop')
    scope = '/subscriptions/' + sb.subscription_id
    rc, calm = run(run_module, sb, app, id_token=token, scope=scope)
    sb.faults(seed=11, rules=[{'service': 'graph', 'kind': 'throttle', 'rate': 0.1, 'retry_after': 1},
                              {'service': 'arm', 'kind': 'throttle', 'rate': 0.1, 'retry_after': 1},
                              {'service': 'graph', 'kind': 'throttle', 'times': 1, 'retry_after': 1},
                              {'service': '*', 'kind': 'latency', 'ms': 20, 'jitter_ms': 10}])
    rc, stormy = run(run_module, sb, app, id_token=token, scope=scope)
    assert rc == 0, stormy
    assert stats(sb)['throttled'] >= 1
    for result in (calm, stormy):
        result.pop('invocation', None)
    assert stormy == calm and calm['aadsts'] == 700213 and calm['role_assignments'][0]['role'] == 'Reader'


def test_no_token_or_secret_in_any_result(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app)
    token = sb.mint_gitlab_token(project_path=PROJECT, ref='main', signing='foreign')
    rc, result = run(run_module, sb, app, id_token=token)
    assert result['aadsts'] == 700027
    # A token with a broken payload: the failure message must not quote it either.
    broken = token.split('.')[0] + '.!!!' + token.split('.')[1][3:] + '.' + token.split('.')[2]
    rc, failure = run(run_module, sb, app, id_token=broken)
    assert rc == 1
    for text in (json.dumps(result), json.dumps(failure)):
        for secret in (token, token.split('.')[2], broken, sb.operator.secret):
            assert secret not in text
