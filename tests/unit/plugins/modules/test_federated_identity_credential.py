# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""federated_identity_credential: the real module, in-process, against the sandbox (Graph over HTTPS).

Flows: check mode writes nothing, apply, idempotent re-run with zero writes, drift corrected, absent, absent again;
exclusive, also scoped to a GitLab project (shared applications) or to managed credentials, and offboarding with
state=absent; check mode with an application that does not exist yet; project requests (gitlab.branches/tags);
per-item results; subject builders used through the module (and a real GitLab token exchange against what they
built); the 21st credential and every other bad input refused before any write; replication lag + throttling; no secrets.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import pytest

pytestmark = pytest.mark.skipif('oidc_sandbox_test_fixtures' not in sys.modules,
                                reason='the sandbox package (sandbox/oidc_sandbox) is not in this checkout')

from ansible_collections.oidc_federation.azure.plugins.modules.federated_identity_credential import main  # noqa: E402
from ansible_collections.oidc_federation.azure.tests.unit.plugins.modules.sandbox_auth import auth_args  # noqa: E402

GITLAB = 'https://gitlab.com'
SUB_MAIN = 'project_path:mygroup/myproject:ref_type:branch:ref:main'
EXPR_ALL_BRANCHES = "claims['sub'] matches 'project_path:mygroup/myproject:ref_type:branch:ref:*'"


# --- helpers ------------------------------------------------------------------------------------------------------


def new_app(sb, *, service_principal=False, token=None):
    """An application (and optionally its service principal), created over raw HTTP."""
    token = token or sb.token()
    response = sb.graph('POST', '/v1.0/applications', token=token,
                        json={'displayName': 'fic-test-' + uuid.uuid4().hex[:8], 'signInAudience': 'AzureADMyOrg'})
    assert response.status_code == 201, response.text
    app = response.json()
    if service_principal:
        response = sb.graph('POST', '/v1.0/servicePrincipals', token=token, json={'appId': app['appId']})
        assert response.status_code == 201, response.text
    return app


def add_fic(sb, app, token=None, **body):
    """A credential created behind the module's back (raw HTTP, /beta)."""
    body.setdefault('audiences', [GITLAB])
    body.setdefault('issuer', GITLAB)
    response = sb.graph('POST', '/beta/applications/{0}/federatedIdentityCredentials'.format(app['id']), token=token, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def stored(sb, app):
    """The application's credentials as the sandbox stores them, by name (independent of the module)."""
    state = sb.control('GET', 'state').json()
    return {fic['name']: fic for fic in state['federated_identity_credentials'].get(app['id'], [])}


def reset_stats(sb):
    assert sb.control('POST', 'stats/reset').status_code == 200


def writes(sb):
    return sb.control('GET', 'stats').json()['writes']


def run(run_module, sb, app, check=False, diff=False, **args):
    params = dict(auth_args(sb), app_id=app['appId'])
    params.update(args)
    if check:
        params['_ansible_check_mode'] = True
    if diff:
        params['_ansible_diff'] = True
    return run_module(main, params)


def names(result):
    return sorted(item['name'] for item in result['credentials'])


# --- the standard flow --------------------------------------------------------------------------------------------

FLOW_CREDENTIALS = [
    {'name': 'deploy-main', 'subject': SUB_MAIN, 'description': 'main branch'},
    {'name': 'all-branches', 'claims_matching_expression': EXPR_ALL_BRANCHES},
    {'gitlab': {'project_path': 'mygroup/myproject', 'ref_type': 'tag', 'ref': 'v*'}},
]


def test_flow_check_apply_idempotent_drift_absent(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    args = dict(credentials=FLOW_CREDENTIALS, gitlab_project_path='mygroup/myproject')

    reset_stats(sb)
    code, result = run(run_module, sb, app, check=True, diff=True, **args)
    assert code == 0, result
    assert result['changed'] is True
    assert writes(sb) == 0 and stored(sb, app) == {}
    assert len(result['created']) == 3 and result['deleted'] == [] and result['updated'] == []
    assert all(item['id'] is None for item in result['credentials'])
    assert result['diff']['before'] == {'credentials': []}
    assert len(result['diff']['after']['credentials']) == 3

    code, result = run(run_module, sb, app, **args)
    assert code == 0, result
    assert result['changed'] is True
    fics = stored(sb, app)
    assert fics['deploy-main']['subject'] == SUB_MAIN and fics['deploy-main']['claimsMatchingExpression'] is None
    assert fics['deploy-main']['audiences'] == [GITLAB] and fics['deploy-main']['issuer'] == GITLAB
    assert fics['all-branches']['subject'] is None
    assert fics['all-branches']['claimsMatchingExpression'] == {'value': EXPR_ALL_BRANCHES, 'languageVersion': 1}
    tag_name = next(name for name in fics if name.startswith('gitlab-mygroup-myproject-tags-v'))
    assert fics[tag_name]['claimsMatchingExpression']['value'] == \
        "claims['sub'] matches 'project_path:mygroup/myproject:ref_type:tag:ref:v*'"
    assert all(item['id'] for item in result['credentials'])
    routes = sb.control('GET', 'stats').json()['by_route']
    assert any(route.startswith('PATCH /beta/') for route in routes), routes  # flexible credentials through /beta
    assert any(route.startswith('PATCH /v1.0/') for route in routes), routes  # exact credentials through v1.0

    reset_stats(sb)
    code, result = run(run_module, sb, app, check=True, **args)
    assert (code, result['changed']) == (0, False)
    code, result = run(run_module, sb, app, diff=True, **args)
    assert (code, result['changed']) == (0, False), result
    assert writes(sb) == 0
    assert result['diff']['before'] == result['diff']['after']

    # Drift behind the module's back: subject, expression, audience, issuer, description.
    token = sb.token()
    base = '/beta/applications/{0}/federatedIdentityCredentials/'.format(app['id'])
    for name, body in (('deploy-main', {'subject': 'project_path:mygroup/myproject:ref_type:branch:ref:evil', 'description': 'x'}),
                       ('all-branches', {'claimsMatchingExpression': {'value': "claims['sub'] matches 'project_path:mygroup/myproject:*'",
                                                                      'languageVersion': 1}, 'audiences': ['api://AzureADTokenExchange']}),
                       (tag_name, {'issuer': 'https://gitlab.example.com'})):
        response = sb.graph('PATCH', base + fics[name]['id'], token=token, json=body)
        assert response.status_code == 204, response.text
    reset_stats(sb)
    code, result = run(run_module, sb, app, check=True, **args)
    assert (code, result['changed']) == (0, True) and writes(sb) == 0
    assert {item['name']: sorted(item['fields']) for item in result['updated']} == {
        'deploy-main': ['description', 'subject'], 'all-branches': ['audiences', 'claimsMatchingExpression'], tag_name: ['issuer']}
    code, result = run(run_module, sb, app, **args)
    assert (code, result['changed']) == (0, True), result
    assert writes(sb) == 3  # one PATCH per drifted credential
    assert stored(sb, app) == fics  # exactly as before the drift, ids included (updated in place)

    reset_stats(sb)
    code, result = run(run_module, sb, app, state='absent', **args)
    assert (code, result['changed']) == (0, True), result
    assert sorted(result['deleted']) == sorted(fics) and stored(sb, app) == {} and result['credentials'] == []
    reset_stats(sb)
    code, result = run(run_module, sb, app, state='absent', **args)
    assert (code, result['changed']) == (0, False), result
    assert writes(sb) == 0 and result['deleted'] == []


def test_single_credential_form_returns_it(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    code, result = run(run_module, sb, app, gitlab={'project_path': 'mygroup/myproject', 'ref': 'main'})
    assert (code, result['changed']) == (0, True), result
    credential = result['credential']
    assert credential['subject'] == SUB_MAIN and credential['id']
    assert credential['name'].startswith('gitlab-mygroup-myproject-branch-main-')
    assert result['application']['app_id'] == app['appId'] and result['application']['id'] == app['id']
    code, again = run(run_module, sb, app, gitlab={'project_path': 'mygroup/myproject', 'ref': 'main'})
    assert (code, again['changed'], again['credential']) == (0, False, credential)
    code, gone = run(run_module, sb, app, state='absent', gitlab={'project_path': 'mygroup/myproject', 'ref': 'main'})
    assert (code, gone['changed'], gone['credential'], gone['deleted']) == (0, True, None, [credential['name']])


def test_app_by_object_id_and_unique_name(clean_sandbox, run_module):
    sb = clean_sandbox
    token = sb.token()
    response = sb.graph('PATCH', "/v1.0/applications(uniqueName='fic-unique-app')", token=token,
                        headers={'Prefer': 'create-if-missing'}, json={'displayName': 'fic-unique-app'})
    assert response.status_code == 201, response.text
    app = response.json()
    params = dict(auth_args(sb), app_unique_name='fic-unique-app', name='by-unique', subject=SUB_MAIN)
    code, result = run_module(main, params)
    assert (code, result['changed'], result['application']['unique_name']) == (0, True, 'fic-unique-app'), result
    params = dict(auth_args(sb), app_object_id=app['id'], name='by-unique', subject=SUB_MAIN)
    code, result = run_module(main, params)
    assert (code, result['changed']) == (0, False), result


def test_name_omitted_adopts_existing_credential_with_same_target(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app, name='made-by-hand', subject=SUB_MAIN)
    reset_stats(sb)
    code, result = run(run_module, sb, app, gitlab={'project_path': 'mygroup/myproject', 'ref': 'main'}, description='kept')
    assert code == 0, result
    assert result['credential']['name'] == 'made-by-hand'
    assert result['updated'] == [{'name': 'made-by-hand', 'fields': ['description']}] and result['created'] == []
    assert list(stored(sb, app)) == ['made-by-hand']


def test_audiences_compared_order_insensitively_and_default_to_issuer(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    code, result = run(run_module, sb, app, issuer='https://gitlab.example.com', name='self-managed',
                       subject='project_path:g/p:ref_type:branch:ref:main')
    assert code == 0, result
    assert stored(sb, app)['self-managed']['audiences'] == ['https://gitlab.example.com']
    code, result = run(run_module, sb, app, issuer='https://gitlab.example.com', name='self-managed', audience='https://gitlab.example.com',
                       subject='project_path:g/p:ref_type:branch:ref:main')
    assert (code, result['changed']) == (0, False), result


def test_exclusive_removes_unlisted_and_default_keeps_them(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app, name='foreign', subject='project_path:other/project:ref_type:branch:ref:main')
    code, result = run(run_module, sb, app, name='deploy-main', subject=SUB_MAIN)
    assert code == 0 and result['deleted'] == [] and sorted(stored(sb, app)) == ['deploy-main', 'foreign']
    code, result = run(run_module, sb, app, check=True, exclusive=True, name='deploy-main', subject=SUB_MAIN)
    assert (code, result['changed'], result['deleted']) == (0, True, ['foreign'])
    assert sorted(stored(sb, app)) == ['deploy-main', 'foreign']
    code, result = run(run_module, sb, app, exclusive=True, name='deploy-main', subject=SUB_MAIN)
    assert (code, result['changed'], result['deleted']) == (0, True, ['foreign'])
    assert sorted(stored(sb, app)) == ['deploy-main']
    code, result = run(run_module, sb, app, exclusive=True, credentials=[])
    assert (code, result['deleted']) == (0, ['deploy-main']) and stored(sb, app) == {}


def test_per_item_state_rotates_in_one_run(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app, name='old-one', subject=SUB_MAIN)
    code, result = run(run_module, sb, app, credentials=[
        {'name': 'old-one', 'state': 'absent'},
        {'name': 'new-one', 'subject': SUB_MAIN}])
    assert code == 0, result
    assert (result['deleted'], result['created']) == (['old-one'], ['new-one'])
    assert list(stored(sb, app)) == ['new-one']


def test_subject_to_expression_switch_in_place(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    before = add_fic(sb, app, name='switch', subject=SUB_MAIN)
    code, result = run(run_module, sb, app, name='switch', claims_matching_expression=EXPR_ALL_BRANCHES)
    assert code == 0 and result['updated'] == [{'name': 'switch', 'fields': ['subject', 'claimsMatchingExpression']}], result
    fic = stored(sb, app)['switch']
    assert (fic['id'], fic['subject'], fic['claimsMatchingExpression']['value']) == (before['id'], None, EXPR_ALL_BRANCHES)
    code, result = run(run_module, sb, app, name='switch', subject=SUB_MAIN)
    assert code == 0 and stored(sb, app)['switch']['subject'] == SUB_MAIN
    assert stored(sb, app)['switch']['claimsMatchingExpression'] is None


# --- exclusivity scoped to a GitLab project (shared application) --------------------------------------------------

SUB_A = 'project_path:g/a:ref_type:branch:ref:'
EXAMPLE = 'https://gitlab.example.com'


def shared_app(sb):
    """An application shared by project g/a, project g/b and others, with stale credentials of g/a."""
    app = new_app(sb)
    token = sb.token()
    add_fic(sb, app, token=token, name='a-main', subject=SUB_A + 'main')
    add_fic(sb, app, token=token, name='a-dev-stale', subject=SUB_A + 'dev')
    add_fic(sb, app, token=token, name='a-tags-stale', claimsMatchingExpression={
        'value': "claims['sub'] matches 'project_path:g/a:ref_type:tag:ref:*'", 'languageVersion': 1})
    add_fic(sb, app, token=token, name='a-other-issuer', issuer=EXAMPLE, audiences=[EXAMPLE], subject=SUB_A + 'dev')
    add_fic(sb, app, token=token, name='b-main', subject='project_path:g/b:ref_type:branch:ref:main')
    add_fic(sb, app, token=token, name='ab-lookalike', subject='project_path:g/ab:ref_type:branch:ref:main')
    add_fic(sb, app, token=token, name='a-subproject', subject='project_path:g/a/sub:ref_type:branch:ref:main')
    add_fic(sb, app, token=token, name='group-wide', claimsMatchingExpression={
        'value': "claims['sub'] matches 'project_path:g/*'", 'languageVersion': 1})
    add_fic(sb, app, token=token, name='by-id-42', subject='project_id:42:ref_type:branch:ref:main')
    add_fic(sb, app, token=token, name='github', issuer='https://token.actions.githubusercontent.com',
            audiences=['api://AzureADTokenExchange'], subject='repo:g/a:ref:refs/heads/main')
    return app


KEPT_BY_PROJECT_SCOPE = ['a-other-issuer', 'a-subproject', 'ab-lookalike', 'b-main', 'by-id-42', 'github', 'group-wide']


def test_exclusive_scoped_to_gitlab_project_keeps_other_projects(clean_sandbox, run_module):
    sb = clean_sandbox
    app = shared_app(sb)
    args = dict(exclusive=True, exclusive_scope='gitlab_project', credentials=[{'gitlab': {'project_path': 'g/a', 'ref': 'main'}}])
    reset_stats(sb)
    code, result = run(run_module, sb, app, check=True, **args)
    assert (code, result['changed'], sorted(result['deleted'])) == (0, True, ['a-dev-stale', 'a-tags-stale']), result
    assert writes(sb) == 0 and len(stored(sb, app)) == 10
    assert result['results'] == [{'index': 0, 'name': 'a-main', 'id': stored(sb, app)['a-main']['id'], 'issuer': GITLAB,
                                  'subject': SUB_A + 'main', 'claims_matching_expression': None, 'state': 'present',
                                  'action': 'updated'}]  # adopted by issuer+subject, its description completed
    code, result = run(run_module, sb, app, **args)
    assert (code, sorted(result['deleted']), result['created']) == (0, ['a-dev-stale', 'a-tags-stale'], []), result
    assert sorted(stored(sb, app)) == sorted(KEPT_BY_PROJECT_SCOPE + ['a-main'])
    reset_stats(sb)
    code, result = run(run_module, sb, app, **args)
    assert (code, result['changed'], writes(sb)) == (0, False, 0), result
    # the id-led credential belongs to the project only when its id is named too
    code, result = run(run_module, sb, app, gitlab_project_id='42', **args)
    assert (code, result['deleted']) == (0, ['by-id-42']), result
    # issuer: the items' (and the top-level) issuer, so the other instance's credential goes only when it is named
    code, result = run(run_module, sb, app, issuer=EXAMPLE, exclusive=True, exclusive_scope='gitlab_project', gitlab_project_path='g/a',
                       credentials=[])
    assert (code, result['deleted']) == (0, ['a-other-issuer']), result
    assert sorted(stored(sb, app)) == ['a-main', 'a-subproject', 'ab-lookalike', 'b-main', 'github', 'group-wide']


def test_offboarding_a_project_with_state_absent(clean_sandbox, run_module):
    sb = clean_sandbox
    app = shared_app(sb)
    args = dict(state='absent', exclusive=True, exclusive_scope='gitlab_project', gitlab_project_path='g/a')
    reset_stats(sb)
    code, result = run(run_module, sb, app, check=True, diff=True, **args)
    assert (code, result['changed'], sorted(result['deleted'])) == (0, True, ['a-dev-stale', 'a-main', 'a-tags-stale']), result
    assert writes(sb) == 0 and result['results'] == [] and 'credential' not in result
    assert len(result['diff']['before']['credentials']) == 10 and len(result['diff']['after']['credentials']) == 7
    code, result = run(run_module, sb, app, **args)
    assert (code, result['changed']) == (0, True) and sorted(stored(sb, app)) == KEPT_BY_PROJECT_SCOPE
    reset_stats(sb)
    code, result = run(run_module, sb, app, **args)
    assert (code, result['changed'], result['deleted'], writes(sb)) == (0, False, [], 0), result
    # the role's form: the listed credentials plus every other one of the project, per the items' project
    add_fic(sb, app, name='b-stale', subject='project_path:g/b:ref_type:branch:ref:old')
    code, result = run(run_module, sb, app, state='absent', exclusive=True, exclusive_scope='gitlab_project',
                       credentials=[{'gitlab': {'project_path': 'g/b', 'ref': 'main'}}])
    assert (code, sorted(result['deleted'])) == (0, ['b-main', 'b-stale']), result
    assert result['results'][0]['action'] == 'deleted' and result['results'][0]['name'] == 'b-main'
    # offboarding from an application that is gone is a no-op
    code, result = run_module(main, dict(auth_args(sb), app_id=str(uuid.uuid4()), **args))
    assert (code, result['changed'], result['application']) == (0, False, None), result


def test_exclusive_scope_managed_spares_unmarked_credentials_default_does_not(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app, name='by-hand', subject=SUB_A + 'hand')
    code, result = run(run_module, sb, app, gitlab={'project_path': 'g/a', 'ref': 'stale'})
    stale = result['credential']['name']
    assert code == 0 and 'managed by oidc_federation.azure' in stored(sb, app)[stale]['description']
    keep = {'project_path': 'g/a', 'ref': 'main'}
    code, result = run(run_module, sb, app, check=True, exclusive=True, exclusive_scope='managed', gitlab=keep)
    assert (code, result['deleted']) == (0, [stale]), result
    code, result = run(run_module, sb, app, check=True, exclusive=True, gitlab=keep)  # default scope: the application
    assert (code, sorted(result['deleted'])) == (0, sorted(['by-hand', stale])), result
    code, result = run(run_module, sb, app, exclusive=True, exclusive_scope='managed', gitlab=keep)
    assert code == 0 and sorted(stored(sb, app)) == sorted(['by-hand', result['credential']['name']])


# --- check mode with an application that does not exist yet -------------------------------------------------------

def test_check_mode_plans_against_empty_set_when_application_is_missing(clean_sandbox, run_module, monkeypatch):
    from ansible.module_utils.common import warnings as ansible_warnings
    sb = clean_sandbox
    # In-process runs share ansible-core's warning list: start this test with an empty one.
    monkeypatch.setattr(ansible_warnings, '_global_warnings', {})
    reset_stats(sb)
    params = dict(auth_args(sb), app_unique_name='gitlab-oidc-g~a', replication_timeout=60, _ansible_check_mode=True,
                  credentials=[{'gitlab': {'project_path': 'g/a', 'branches': ['main'], 'tags': ['v*']}},
                               {'name': 'hand-written', 'subject': SUB_A + 'dev'}])
    # expected by the caller: no warning (first, as warnings accumulate in the process)
    code, quiet = run_module(main, dict(params, missing_application='plan'))
    assert (code, quiet['changed'], quiet['application'], len(quiet['created'])) == (0, True, None, 3), quiet
    assert not quiet.get('warnings'), quiet
    started = time.monotonic()
    code, result = run_module(main, params)
    assert time.monotonic() - started < 10  # no wait for replication in check mode
    assert (code, result['changed'], result['application']) == (0, True, None), result
    assert result['created'] == [item['name'] for item in result['results']] and len(result['created']) == 3
    assert [(item['index'], item['action'], item['id']) for item in result['results']] == [
        (0, 'created', None), (0, 'created', None), (1, 'created', None)]
    assert [item['subject'] or item['claims_matching_expression'] for item in result['results']] == [
        SUB_A + 'main', "claims['sub'] matches 'project_path:g/a:ref_type:tag:ref:*'".replace('*', 'v*'), SUB_A + 'dev']
    assert sorted(item['name'] for item in result['credentials']) == sorted(result['created'])
    assert 'planned against an empty set' in json.dumps(result['warnings'])
    assert writes(sb) == 0
    # bad input is still refused in check mode without an application
    params['credentials'] = [{'name': 'x', 'subject': SUB_A + 'dev'}]
    code, result = run_module(main, params)
    assert code == 1 and result['msg'].startswith('credentials[0].name:'), result
    # a real run with a missing application still fails clearly (missing_application only affects check mode)
    params.update(_ansible_check_mode=False, replication_timeout=0, credentials=[{'name': 'hand-written', 'subject': SUB_A + 'dev'}],
                  missing_application='plan')
    code, result = run_module(main, params)
    assert code == 1 and result['msg'].startswith("app_unique_name: no application with uniqueName 'gitlab-oidc-g~a'"), result
    assert writes(sb) == 0


# --- project requests (gitlab.branches / gitlab.tags) --------------------------------------------------------------

def test_project_request_plans_every_credential_of_a_project(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb, service_principal=True)
    project = 'my.group/my-project'
    gitlab = {'project_path': project, 'branches': ['main', 'release/*', 'release/1.0'], 'tags': ['v*']}
    args = dict(issuer=sb.gitlab_issuer, gitlab_issuers=[sb.gitlab_issuer], gitlab=gitlab)
    reset_stats(sb)
    code, result = run(run_module, sb, app, check=True, **args)
    assert (code, result['changed'], len(result['created']), writes(sb)) == (0, True, 3, 0), result
    assert 'credential' not in result
    code, result = run(run_module, sb, app, **args)
    assert code == 0, result
    fics = stored(sb, app)
    assert sorted(fic['subject'] or fic['claimsMatchingExpression']['value'] for fic in fics.values()) == sorted([
        'project_path:%s:ref_type:branch:ref:main' % project,
        "claims['sub'] matches 'project_path:%s:ref_type:branch:ref:release/*'" % project,
        "claims['sub'] matches 'project_path:%s:ref_type:tag:ref:v*'" % project])  # release/1.0 covered by release/*
    assert [(item['index'], item['action']) for item in result['results']] == [(None, 'created')] * 3
    assert sorted(item['name'] for item in result['results']) == sorted(fics)
    for ref_type, ref, accepted in (('branch', 'main', True), ('branch', 'release/1.0', True), ('tag', 'v2.1', True),
                                    ('branch', 'feature', False), ('tag', 'release/1.0', False)):
        token = sb.mint_gitlab_token(issuer=sb.gitlab_issuer, project_path=project, ref_type=ref_type, ref=ref, aud=sb.gitlab_issuer)
        assert (exchange(sb, app, token).status_code == 200) is accepted, (ref_type, ref)
    reset_stats(sb)
    code, result = run(run_module, sb, app, **args)
    assert (code, result['changed'], writes(sb)) == (0, False, 0), result
    assert [item['action'] for item in result['results']] == ['unchanged'] * 3
    # narrowing the request with the project scope removes the dropped credential, and only that one
    add_fic(sb, app, name='other-project', issuer=sb.gitlab_issuer, audiences=[sb.gitlab_issuer],
            subject='project_path:other/p:ref_type:branch:ref:main')
    narrowed = dict(args)
    narrowed.update(gitlab=dict(gitlab, tags=None), exclusive=True, exclusive_scope='gitlab_project')
    code, result = run(run_module, sb, app, **narrowed)
    assert code == 0 and len(result['deleted']) == 1 and result['deleted'][0].startswith('gitlab-my-group-my-project-tags-v'), result
    assert len(stored(sb, app)) == 3
    code, result = run(run_module, sb, app, state='absent', **args)
    assert code == 0 and sorted(stored(sb, app)) == ['other-project']
    assert [item['action'] for item in result['results']] == ['deleted', 'deleted', 'absent']


def test_project_request_fits_in_the_room_left_by_other_credentials(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    token = sb.token()
    for index in range(17):
        add_fic(sb, app, token=token, name='other-%02d' % index, subject='project_path:other/p:ref_type:branch:ref:b%02d' % index)
    add_fic(sb, app, token=token, name='a-stale', subject=SUB_A + 'stale')
    branches = ['release/a', 'release/b', 'release/c']
    reset_stats(sb)
    code, result = run(run_module, sb, app, credentials=[{'name': 'first', 'subject': SUB_A + 'first'},
                                                         {'gitlab': {'project_path': 'g/a', 'branches': branches}}])
    assert code == 1 and result['msg'].startswith('credentials[1].gitlab.branches: g/a needs 3 credentials but only 1 are available'), result
    assert 'branch release/*' in result['msg'] and writes(sb) == 0
    # 17 others + the stale one + 'first' leave room for 1; deleting the project's stale credential in the same task
    # (and not asking for 'first') leaves room for 3
    code, result = run(run_module, sb, app, exclusive=True, exclusive_scope='gitlab_project',
                       credentials=[{'gitlab': {'project_path': 'g/a', 'branches': branches}}])
    assert code == 0 and result['deleted'] == ['a-stale'] and len(result['created']) == 3, result
    assert len(stored(sb, app)) == 20
    assert [item['index'] for item in result['results']] == [0, 0, 0]


# --- per-item results ---------------------------------------------------------------------------------------------

def test_results_tell_which_credential_each_item_became(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    existing = add_fic(sb, app, name='made-by-hand', subject=SUB_A + 'main', description='old')
    add_fic(sb, app, name='to-delete', subject=SUB_A + 'old')
    add_fic(sb, app, name='foreign', subject='project_path:g/b:ref_type:branch:ref:main')
    items = [
        {'gitlab': {'project_path': 'g/a', 'ref': 'main'}, 'description': 'new'},  # adopts made-by-hand, updated
        {'name': 'to-delete', 'state': 'absent'},
        {'name': 'hand-new', 'subject': SUB_A + 'dev'},
        {'gitlab': {'project_path': 'g/a', 'ref': 'gone'}, 'state': 'absent'},
        {'gitlab': {'project_path': 'g/a', 'all_tags': True}},
    ]
    code, result = run(run_module, sb, app, credentials=items)
    assert code == 0, result
    got = [(item['index'], item['name'], item['action'], item['state']) for item in result['results']]
    built_tags = result['results'][4]['name']
    assert got == [(0, 'made-by-hand', 'updated', 'present'), (1, 'to-delete', 'deleted', 'absent'), (2, 'hand-new', 'created', 'present'),
                   (3, result['results'][3]['name'], 'absent', 'absent'), (4, built_tags, 'created', 'present')]
    assert result['results'][0]['id'] == existing['id'] and result['results'][2]['id'] == stored(sb, app)['hand-new']['id']
    assert result['results'][3]['name'].startswith('gitlab-g-a-branch-gone-') and result['results'][3]['id'] is None
    assert result['results'][4]['claims_matching_expression'] == "claims['sub'] matches 'project_path:g/a:ref_type:tag:ref:*'"
    assert 'foreign' not in [item['name'] for item in result['results']]
    assert sorted(stored(sb, app)) == sorted(['made-by-hand', 'hand-new', 'foreign', built_tags])


# --- builders through the module ----------------------------------------------------------------------------------

BUILDER_CASES = [
    # gitlab suboption, expected subject or expression
    ({'project_path': 'top/sub/subsub/my-project', 'ref': 'main'}, 'project_path:top/sub/subsub/my-project:ref_type:branch:ref:main'),
    ({'project_path': 'my.group/my_project.name', 'ref': 'feature/x-1.2'},
     'project_path:my.group/my_project.name:ref_type:branch:ref:feature/x-1.2'),
    ({'project_path': 'g/p', 'ref_type': 'tag', 'ref': 'release/2024/v1.0'}, 'project_path:g/p:ref_type:tag:ref:release/2024/v1.0'),
    ({'project_path': 'g/p', 'ref': "it's-a-branch"}, "project_path:g/p:ref_type:branch:ref:it's-a-branch"),
    ({'project_path': 'g/p', 'ref_type': 'tag', 'ref': "v1's/*"}, "claims['sub'] matches 'project_path:g/p:ref_type:tag:ref:v1''s/*'"),
    ({'project_path': 'g/p', 'all_branches': True}, "claims['sub'] matches 'project_path:g/p:ref_type:branch:ref:*'"),
    ({'project_path': 'g/p', 'all_tags': True}, "claims['sub'] matches 'project_path:g/p:ref_type:tag:ref:*'"),
    ({'project_path': 'g/p', 'any_ref': True}, "claims['sub'] matches 'project_path:g/p:*'"),
    ({'project_id': 4242, 'sub_claim_components': ['project_id', 'ref_type', 'ref'], 'ref': 'main'},
     'project_id:4242:ref_type:branch:ref:main'),
    ({'project_id': '4242', 'sub_claim_components': ['project_id', 'ref_type', 'ref'], 'any_ref': True},
     "claims['sub'] matches 'project_id:4242:*'"),
    ({'project_path': 'g/p', 'sub_claim_components': ['project_path', 'ref_type', 'ref', 'ref_protected'],
      'claim_values': {'ref_protected': True}, 'ref': 'main'}, 'project_path:g/p:ref_type:branch:ref:main:ref_protected:true'),
    ({'project_path': 'g/p', 'sub_claim_components': ['project_path'], 'any_ref': True}, 'project_path:g/p'),
]


def test_builders_through_the_module(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    code, result = run(run_module, sb, app, credentials=[{'gitlab': gitlab} for gitlab, _want in BUILDER_CASES])
    assert code == 0, result
    fics = stored(sb, app)
    got = {fic['subject'] or fic['claimsMatchingExpression']['value'] for fic in fics.values()}
    assert got == {want for _gitlab, want in BUILDER_CASES}
    for fic in fics.values():
        assert fic['name'].startswith('gitlab-') and len(fic['name']) <= 120
        assert 'managed by oidc_federation.azure' in fic['description']
    reset_stats(sb)
    code, result = run(run_module, sb, app, credentials=[{'gitlab': gitlab} for gitlab, _want in BUILDER_CASES])
    assert (code, result['changed'], writes(sb)) == (0, False, 0)


def exchange(sb, app, token):
    return sb.token_request({'grant_type': 'client_credentials', 'client_id': app['appId'],
                             'client_assertion_type': 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
                             'client_assertion': token, 'scope': 'https://graph.microsoft.com/.default'})


def test_built_credentials_accept_real_gitlab_tokens(clean_sandbox, run_module):
    """What the builders write matches what GitLab (the sandbox issuer) puts in ID tokens, and nothing else."""
    sb = clean_sandbox
    app = new_app(sb, service_principal=True)
    project = 'my.group/sub-group/my_project'
    code, result = run(run_module, sb, app, issuer=sb.gitlab_issuer, gitlab_issuers=[sb.gitlab_issuer], credentials=[
        {'gitlab': {'project_path': project, 'ref_type': 'tag', 'ref': "rel/it's-1.0"}},
        {'gitlab': {'project_path': project, 'ref': 'release/*'}},
    ])
    assert code == 0, result
    accepted = [('tag', "rel/it's-1.0"), ('branch', 'release/2.x')]
    refused = [('branch', "rel/it's-1.0"), ('tag', 'release/2.x'), ('branch', 'main')]
    for ref_type, ref in accepted + refused:
        token = sb.mint_gitlab_token(issuer=sb.gitlab_issuer, project_path=project, ref_type=ref_type, ref=ref, aud=sb.gitlab_issuer)
        response = exchange(sb, app, token)
        if (ref_type, ref) in accepted:
            assert response.status_code == 200, (ref_type, ref, response.text)
        else:
            assert response.status_code == 400 and 700213 in response.json()['error_codes'], (ref_type, ref, response.text)
    other = sb.mint_gitlab_token(issuer=sb.gitlab_issuer, project_path='my.group/sub-group/my_project2', ref_type='branch',
                                 ref='release/1', aud=sb.gitlab_issuer)
    assert exchange(sb, app, other).status_code == 400


# --- the 20-credential limit --------------------------------------------------------------------------------------

def test_21st_credential_refused_before_any_write(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    token = sb.token()
    for index in range(20):
        add_fic(sb, app, token=token, name='existing-%02d' % index, subject='project_path:g/p:ref_type:branch:ref:b%02d' % index)
    reset_stats(sb)
    code, result = run(run_module, sb, app, gitlab={'project_path': 'g/p', 'ref': 'one-more'})
    assert code == 1 and result['failed'] is True
    assert result['msg'].startswith('credential: 21 federated identity credentials would exist on the application'), result['msg']
    assert 'at most 20' in result['msg'] and 'Fix:' in result['msg']
    assert writes(sb) == 0 and len(stored(sb, app)) == 20
    # With exclusive, the others go first, so the new one fits (and nothing else is left).
    code, result = run(run_module, sb, app, exclusive=True, gitlab={'project_path': 'g/p', 'ref': 'one-more'})
    assert code == 0 and len(result['deleted']) == 20 and len(stored(sb, app)) == 1


def test_21_listed_refs_refused_with_flexible_suggestion(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    reset_stats(sb)
    items = [{'gitlab': {'project_path': 'mygroup/big', 'ref': 'branch-%02d' % index}} for index in range(21)]
    code, result = run(run_module, sb, app, credentials=items)
    assert code == 1, result
    assert 'credentials: 21 federated identity credentials would exist' in result['msg']
    assert 'mygroup/big has 21 exact branch credentials' in result['msg']
    assert 'all_branches: true' in result['msg'] and result['fix']
    assert writes(sb) == 0 and stored(sb, app) == {}


# --- bad input: refused before any write, naming the field ------------------------------------------------------

LONG = 'x' * 601
BAD_INPUT = [
    # (id, module args, field named first in msg, text in msg)
    ('name-charset', dict(name='bad name!', subject=SUB_MAIN), 'name', 'URL friendly'),
    ('name-short', dict(name='ab', subject=SUB_MAIN), 'name', 'it must have 3 to 120'),
    ('name-long', dict(name='n' * 121, subject=SUB_MAIN), 'name', 'it must have 3 to 120'),
    ('two-audiences', dict(name='two-aud', subject=SUB_MAIN, audiences=['a', 'b']), 'audiences', 'exactly one audience'),
    ('issuer-long', dict(name='long-iss', subject=SUB_MAIN, issuer='https://' + LONG), 'issuer', '600'),
    ('description-long', dict(name='long-desc', subject=SUB_MAIN, description=LONG), 'description', '600'),
    ('subject-long', dict(name='long-sub', subject='project_path:g/p:ref_type:branch:ref:' + LONG), 'subject', '600'),
    ('subject-wildcard', dict(name='wild-sub', subject='project_path:g/p:ref_type:branch:ref:*'), 'subject', 'claimsMatchingExpression'),
    ('subject-and-expression', dict(credentials=[{'name': 'both', 'subject': SUB_MAIN, 'claims_matching_expression': EXPR_ALL_BRANCHES}]),
     'credentials[0].subject', 'mutually exclusive'),
    ('expression-or', dict(name='bad-expr', claims_matching_expression=EXPR_ALL_BRANCHES + " or claims['sub'] eq 'x'"),
     'claims_matching_expression', "no 'or'"),
    ('expression-double-quotes', dict(name='bad-expr', claims_matching_expression='claims["sub"] eq "x"'),
     'claims_matching_expression', 'single quotes'),
    ('expression-other-claim', dict(name='bad-claim', claims_matching_expression="claims['ref'] eq 'main'"),
     'claims_matching_expression', 'not allowed for GitLab'),
    ('expression-issuer-not-allowed', dict(name='bad-iss', issuer='https://ci.example.com', claims_matching_expression=EXPR_ALL_BRANCHES),
     'issuer', 'may not use flexible credentials'),
    ('unsafe-any-namespace', dict(name='unsafe', claims_matching_expression="claims['sub'] matches 'project_path:*'", allow_broad_trust=True),
     'claims_matching_expression', 'unsafe trust'),
    ('unsafe-prefix-namespace', dict(name='unsafe', claims_matching_expression="claims['sub'] matches 'project_path:my*'",
                                     allow_broad_trust=True), 'claims_matching_expression', 'other namespaces'),
    ('broad-group-needs-opt-in', dict(name='broad', claims_matching_expression="claims['sub'] matches 'project_path:mygroup/*'"),
     'claims_matching_expression', 'allow_broad_trust: true'),
    ('other-project', dict(name='other', subject='project_path:other/p:ref_type:branch:ref:main', gitlab_project_path='mygroup/myproject'),
     'subject', 'not the intended project'),
    ('other-project-item', dict(credentials=[{'name': 'other', 'subject': 'project_path:other/p:ref_type:branch:ref:main',
                                              'gitlab': {'project_path': 'mygroup/myproject'}}]),
     'credentials[0].subject', 'not the intended project'),
    ('not-a-gitlab-subject', dict(name='typo', subject='project:mygroup/myproject:ref_type:branch:ref:main'), 'subject', 'never matches'),
    ('hand-written-without-name', dict(subject=SUB_MAIN), 'name', 'needs a name'),
    ('duplicate-names', dict(credentials=[{'name': 'dup', 'subject': SUB_MAIN},
                                          {'name': 'DUP', 'subject': SUB_MAIN.replace('main', 'dev')}]), 'credentials', 'two credentials are named'),
    ('duplicate-subject', dict(credentials=[{'name': 'one', 'subject': SUB_MAIN}, {'name': 'two', 'subject': SUB_MAIN}]),
     'credentials', 'same issuer'),
    ('gitlab-two-selections', dict(gitlab={'project_path': 'g/p', 'ref': 'main', 'all_tags': True}), 'gitlab', 'only one of'),
    ('gitlab-no-namespace', dict(gitlab={'project_path': 'project', 'ref': 'main'}), 'gitlab.project_path', 'no namespace'),
    ('gitlab-bad-ref', dict(gitlab={'project_path': 'g/p', 'ref': 'a..b'}), 'gitlab.ref', "'..'"),
    ('gitlab-full-ref', dict(gitlab={'project_path': 'g/p', 'ref': 'refs/heads/main'}), 'gitlab.ref', 'full ref'),
    ('gitlab-bad-components', dict(gitlab={'project_path': 'g/p', 'ref': 'main', 'sub_claim_components': ['ref', 'project_path']}),
     'gitlab.sub_claim_components', 'must be the first element'),
    ('gitlab-id-missing', dict(gitlab={'project_path': 'g/p', 'ref': 'main', 'sub_claim_components': ['project_id', 'ref_type', 'ref']}),
     'gitlab.project_id', 'project id is required'),
    ('gitlab-flexible-unknown-issuer', dict(issuer='https://ci.example.com', gitlab={'project_path': 'g/p', 'all_branches': True}),
     'issuer', 'gitlab_issuers'),
    ('gitlab-and-subject', dict(credentials=[{'subject': SUB_MAIN, 'gitlab': {'project_path': 'g/p', 'ref': 'main'}}]),
     'credentials[0].subject', 'gitlab ref selection are mutually exclusive'),
    ('gitlab-ref-type-alone', dict(gitlab={'project_path': 'g/p', 'ref_type': 'tag'}), 'gitlab.ref_type', 'ref is not'),
    ('nothing-to-manage', dict(), 'credentials', 'nothing to manage'),
    ('exclusive-needs-explicit-empty-list', dict(exclusive=True), 'credentials', 'credentials: []'),
    ('exclusive-with-absent', dict(state='absent', exclusive=True, name='x-name'), 'exclusive', 'state=present'),
    ('app-id-not-guid', dict(app_id='my-app', name='x-name', subject=SUB_MAIN), 'app_id', 'not a GUID'),
    ('bad-intended-project', dict(name='x-name', subject=SUB_MAIN, gitlab_project_path='https://gitlab.com/g/p'), 'gitlab_project_path', 'URL'),
    ('request-with-ref', dict(gitlab={'project_path': 'g/p', 'ref': 'main', 'branches': ['dev']}), 'gitlab.ref', 'cannot be combined'),
    ('request-with-all-tags', dict(credentials=[{'gitlab': {'project_path': 'g/p', 'all_tags': True, 'tags': ['v1']}}]),
     'credentials[0].gitlab.all_tags', "'*' stands for all"),
    ('request-with-name', dict(credentials=[{'name': 'x-name', 'gitlab': {'project_path': 'g/p', 'branches': ['main']}}]),
     'credentials[0].name', 'one credential, with its subject or expression and name, per listed ref'),
    ('request-empty', dict(gitlab={'project_path': 'g/p', 'branches': [], 'tags': []}), 'gitlab.branches', 'nothing would be trusted'),
    ('request-bad-ref', dict(gitlab={'project_path': 'g/p', 'branches': ['main', 'a..b']}), 'gitlab.branches', "'..'"),
    ('request-21-refs', dict(gitlab={'project_path': 'g/p', 'tags': ['v1.%d' % index for index in range(21)]}),
     'gitlab.tags', 'needs 21 credentials but only 20 are available'),
    ('request-flexible-unknown-issuer', dict(issuer='https://ci.example.com', gitlab={'project_path': 'g/p', 'branches': ['release/*']}),
     'issuer', 'gitlab_issuers'),
    ('request-duplicates-item', dict(credentials=[{'gitlab': {'project_path': 'g/p', 'branches': ['main']}},
                                                  {'gitlab': {'project_path': 'g/p', 'ref': 'main'}}]), 'credentials', 'two credentials are named'),
    ('project-scope-without-project', dict(exclusive=True, exclusive_scope='gitlab_project', name='x-name', subject=SUB_MAIN),
     'exclusive_scope', 'no project is named'),
    ('offboarding-without-project', dict(state='absent', exclusive=True, exclusive_scope='gitlab_project'), 'exclusive_scope',
     'no project is named'),
    ('offboarding-application-scope', dict(state='absent', exclusive=True, credentials=[]), 'exclusive', 'exclusive_scope: gitlab_project'),
    ('absent-scope-without-exclusive', dict(state='absent', exclusive_scope='gitlab_project', gitlab_project_path='g/p'), 'credentials',
     'nothing to manage'),
]


@pytest.mark.parametrize('args,field,text', [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_input_refused_before_any_request(clean_sandbox, run_module, args, field, text):
    sb = clean_sandbox
    app = new_app(sb)
    reset_stats(sb)
    code, result = run(run_module, sb, app, **args)
    assert code == 1 and result['failed'] is True, result
    assert result['msg'].startswith(field + ':'), result['msg']
    assert text in result['msg'], result['msg']
    assert 'Traceback' not in json.dumps(result)
    stats = sb.control('GET', 'stats').json()
    assert stats['writes'] == 0 and stats['reads'] == 0, stats  # refused before any request


def test_rename_refused_before_any_write(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    add_fic(sb, app, name='old-name', subject=SUB_MAIN)
    reset_stats(sb)
    code, result = run(run_module, sb, app, name='new-name', subject=SUB_MAIN)
    assert code == 1 and 'names are immutable' in result['msg'] and 'old-name' in result['msg'], result
    assert writes(sb) == 0


def test_missing_application_is_a_clear_error(clean_sandbox, run_module):
    sb = clean_sandbox
    reset_stats(sb)
    params = dict(auth_args(sb), app_id=str(uuid.uuid4()), name='x-name', subject=SUB_MAIN, replication_timeout=0)
    code, result = run_module(main, params)
    assert code == 1 and result['msg'].startswith('app_id: no application with appId'), result
    assert writes(sb) == 0


def test_absent_from_missing_application_is_a_no_op(clean_sandbox, run_module):
    sb = clean_sandbox
    reset_stats(sb)
    params = dict(auth_args(sb), app_id=str(uuid.uuid4()), name='x-name', state='absent')
    code, result = run_module(main, params)
    assert (code, result['changed'], result['application'], result['credential']) == (0, False, None, None), result
    assert 'does not exist' in json.dumps(result['warnings']) and writes(sb) == 0
    assert [(item['name'], item['action']) for item in result['results']] == [('x-name', 'absent')]


def test_graph_refusal_is_reported_without_traceback(clean_sandbox, run_module):
    """The restricted operator may read but not write: Graph's 403 is reported clearly."""
    sb = clean_sandbox
    app = new_app(sb)
    params = dict(auth_args(sb), client_id=sb.restricted.client_id, client_secret=sb.restricted.secret, app_id=app['appId'],
                  name='denied', subject=SUB_MAIN)
    code, result = run_module(main, params)
    assert code == 1, result
    assert 'Authorization_RequestDenied' in result['msg'] and 'create federated identity credential' in result['msg']
    assert 'exception' not in result and sb.restricted.secret not in json.dumps(result)


# --- faults: replication lag and throttling -----------------------------------------------------------------------

def test_converges_with_replication_lag_and_throttling(clean_sandbox, run_module):
    sb = clean_sandbox
    sb.faults(seed=11, replication_lag=1.5, rules=[
        # one certain throttle on a credential write, then 10 % of all Graph requests
        {'service': 'graph', 'kind': 'throttle', 'methods': ['PATCH'], 'path': 'federatedIdentityCredentials', 'times': 1, 'retry_after': 1},
        {'service': 'graph', 'kind': 'throttle', 'rate': 0.1, 'retry_after': 1}])
    app = new_app(sb)  # still replicating when the module starts
    args = dict(credentials=FLOW_CREDENTIALS, gitlab_project_path='mygroup/myproject')
    code, result = run(run_module, sb, app, **args)
    assert (code, result['changed']) == (0, True), result
    assert len(stored(sb, app)) == 3
    reset_stats(sb)
    code, result = run(run_module, sb, app, **args)
    assert (code, result['changed']) == (0, False), result
    assert writes(sb) == 0
    code, result = run(run_module, sb, app, state='absent', **args)
    assert (code, result['changed']) == (0, True) and stored(sb, app) == {}
    rules = sb.control('GET', 'faults').json()['rules']
    assert rules[0]['fired'] == 1 and rules[1]['matched'] > 10, rules


def test_shared_application_flow_converges_with_replication_lag_and_throttling(clean_sandbox, run_module):
    sb = clean_sandbox
    app = shared_app(sb)
    sb.faults(seed=7, replication_lag=1.5, rules=[{'service': 'graph', 'kind': 'throttle', 'rate': 0.1, 'retry_after': 1}])
    args = dict(exclusive=True, exclusive_scope='gitlab_project',
                credentials=[{'gitlab': {'project_path': 'g/a', 'branches': ['main', 'feature/*'], 'tags': ['v*']}}])
    code, result = run(run_module, sb, app, **args)
    assert code == 0 and sorted(result['deleted']) == ['a-dev-stale', 'a-tags-stale'], result
    assert [item['action'] for item in result['results']] == ['created', 'updated', 'created']  # main adopts a-main
    reset_stats(sb)
    code, result = run(run_module, sb, app, **args)
    assert (code, result['changed'], writes(sb)) == (0, False, 0), result
    code, result = run(run_module, sb, app, state='absent', exclusive=True, exclusive_scope='gitlab_project', gitlab_project_path='g/a')
    assert code == 0 and len(result['deleted']) == 3 and sorted(stored(sb, app)) == KEPT_BY_PROJECT_SCOPE, result
    assert sb.control('GET', 'faults').json()['rules'][0]['matched'] > 3


def test_no_secret_or_token_in_results(clean_sandbox, run_module):
    sb = clean_sandbox
    app = new_app(sb)
    code, result = run(run_module, sb, app, diff=True, name='deploy-main', subject=SUB_MAIN)
    text = json.dumps(result)
    assert code == 0 and sb.operator.secret not in text and 'eyJ' not in text
    code, result = run(run_module, sb, app, name='bad name', subject=SUB_MAIN)
    assert code == 1 and sb.operator.secret not in json.dumps(result)
