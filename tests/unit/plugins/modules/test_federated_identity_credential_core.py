# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The core of federated_identity_credential (plugins/module_utils/_graph_fic.py): option specs and plans (pure),
and reconciling many applications at once against the sandbox (plans everything before the first write)."""

from __future__ import annotations

import asyncio
import sys
import uuid

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils._fic import FicValidationError, credential_differences
from ansible_collections.oidc_federation.azure.plugins.module_utils._graph_fic import (
    ApplicationRequest,
    CredentialDefaults,
    ExclusiveScope,
    ProjectTarget,
    credential_result,
    exclusive_scope_for,
    item_results,
    plan_application,
    plan_without_application,
    reconcile_application,
    reconcile_applications,
    spec_from_options,
    specs_from_item,
    specs_from_options,
)

SUB_MAIN = 'project_path:g/p:ref_type:branch:ref:main'


def existing(name, subject=None, expression=None, **extra):
    item = {'id': str(uuid.uuid4()), 'name': name, 'issuer': 'https://gitlab.com', 'audiences': ['https://gitlab.com'],
            'description': None, 'subject': subject,
            'claimsMatchingExpression': {'value': expression, 'languageVersion': 1} if expression else None}
    item.update(extra)
    return item


# --- specs ---------------------------------------------------------------------------------------------------------

def test_defaults_issuer_and_audience_follow_gitlab_tutorial():
    spec = spec_from_options({'name': 'one', 'subject': SUB_MAIN})
    assert spec.credential == {'name': 'one', 'issuer': 'https://gitlab.com', 'audiences': ['https://gitlab.com'], 'subject': SUB_MAIN}
    spec = spec_from_options({'name': 'one', 'subject': SUB_MAIN}, defaults=CredentialDefaults(issuer='https://gitlab.example.com'))
    assert spec.credential['audiences'] == ['https://gitlab.example.com']
    spec = spec_from_options({'name': 'one', 'subject': SUB_MAIN, 'issuer': 'https://gitlab.example.com'},
                             defaults=CredentialDefaults(audiences=['api://AzureADTokenExchange']))
    assert (spec.credential['issuer'], spec.credential['audiences']) == ('https://gitlab.example.com', ['api://AzureADTokenExchange'])


def test_item_values_override_defaults_and_inherit_the_rest():
    defaults = CredentialDefaults(state='absent', allow_broad_trust=True)
    spec = spec_from_options({'name': 'grp', 'claims_matching_expression': "claims['sub'] matches 'project_path:g/*'", 'state': 'present'},
                             defaults=defaults)
    assert spec.state == 'present'  # item state wins; broad trust inherited
    with pytest.raises(FicValidationError) as caught:
        spec_from_options({'name': 'grp', 'claims_matching_expression': "claims['sub'] matches 'project_path:g/*'",
                           'allow_broad_trust': False})
    assert caught.value.field == 'claims_matching_expression'


def test_absent_spec_needs_no_trust_check():
    """Deleting a credential that trusts too much must stay possible."""
    spec = spec_from_options({'claims_matching_expression': "claims['sub'] matches 'project_path:*'", 'state': 'absent'})
    assert spec.state == 'absent' and spec.credential['name'] is None


@pytest.mark.parametrize('item,field', [
    ({'gitlab': {'project_path': 'g/p', 'ref': 'main', 'claim_values': {'deployment_tier': 'prod'}},
      }, 'credentials[0].gitlab.claim_values.deployment_tier'),
    ({'gitlab': {'project_path': 'g/p', 'ref': 'main'}, 'audiences': []}, 'credentials[0].audiences'),
    ({'name': 'x-y', 'claims_matching_expression': "claims['sub'] matches 'project_path:g/p:*'", 'gitlab': {'ref_type': 'tag'}},
     'credentials[0].gitlab.ref_type'),
    ({'name': 'x-y', 'subject': SUB_MAIN, 'gitlab': {'sub_claim_components': ['project_path']}}, 'credentials[0].gitlab'),
    ({'name': 'x-y', 'subject': SUB_MAIN, 'gitlab': {'project_id': '012'}}, 'credentials[0].gitlab.project_id'),
])
def test_option_paths_in_errors(item, field):
    with pytest.raises(FicValidationError) as caught:
        specs_from_options([item])
    assert caught.value.field == field, str(caught.value)
    assert caught.value.fix


def test_intended_project_by_id_confines_expression():
    defaults = CredentialDefaults(project_id='42')
    spec_from_options({'name': 'ok-id', 'claims_matching_expression': "claims['sub'] matches 'project_id:42:*'"}, defaults=defaults)
    with pytest.raises(FicValidationError, match='not the intended project id 42'):
        spec_from_options({'name': 'bad-id', 'claims_matching_expression': "claims['sub'] matches 'project_id:43:*'"}, defaults=defaults)
    with pytest.raises(FicValidationError, match="wildcard inside the project id"):
        spec_from_options({'name': 'bad-id', 'claims_matching_expression': "claims['sub'] matches 'project_id:4*'"},
                          defaults=CredentialDefaults(allow_broad_trust=True))


def test_non_gitlab_issuer_skips_gitlab_trust_checks():
    spec = spec_from_options({'name': 'github', 'issuer': 'https://token.actions.githubusercontent.com',
                              'claims_matching_expression': "claims['sub'] matches 'repo:o/r:*' and claims['repository_owner_id'] eq '1'"})
    assert spec.credential['claimsMatchingExpression']['value'].startswith("claims['sub']")


# --- plans ---------------------------------------------------------------------------------------------------------

def test_plan_adopts_name_of_existing_credential_with_same_target():
    spec = spec_from_options({'gitlab': {'project_path': 'g/p', 'ref': 'main'}})
    plan = plan_application([existing('by-hand', subject=SUB_MAIN)], [spec])
    assert plan.names == ['by-hand']
    assert [new['name'] for _old, new in plan.changes.update] == ['by-hand']  # description is generated: updated, not duplicated
    assert plan.changes.create == []


def test_plan_given_name_with_existing_target_is_a_rename_and_refused():
    spec = spec_from_options({'name': 'new-name', 'subject': SUB_MAIN})
    with pytest.raises(FicValidationError, match='names are immutable'):
        plan_application([existing('by-hand', subject=SUB_MAIN)], [spec])


def test_plan_absent_by_target_without_name():
    spec = spec_from_options({'subject': SUB_MAIN, 'state': 'absent'})
    plan = plan_application([existing('by-hand', subject=SUB_MAIN), existing('other', subject=SUB_MAIN + 'x')], [spec])
    assert [item['name'] for item in plan.changes.delete] == ['by-hand']


def test_plan_capacity_counts_existing_and_suggests_flexible():
    current = [existing('e%02d' % i, subject='project_path:g/p:ref_type:branch:ref:b%02d' % i) for i in range(18)]
    specs = specs_from_options([{'gitlab': {'project_path': 'g/q', 'ref_type': 'tag', 'ref': 'v%d' % i}} for i in range(3)])
    with pytest.raises(FicValidationError) as caught:
        plan_application(current, specs)
    assert '21 federated identity credentials would exist' in caught.value.message
    assert '(3 requested, 18 others kept)' in caught.value.message
    assert 'g/q has 3 exact tag credentials' in caught.value.fix and 'all_tags: true' in caught.value.fix
    assert plan_application(current, specs, exclusive=True).changes.final.__len__() == 3


def test_plan_audiences_order_insensitive_and_description_compared_only_when_given():
    spec = spec_from_options({'name': 'one', 'subject': SUB_MAIN, 'audiences': ['a']})
    plan = plan_application([existing('one', subject=SUB_MAIN, audiences=['a'], description='kept as is')], [spec])
    assert not plan.changed
    # Graph allows one audience, but a credential read back with several must not look drifted by order alone.
    assert credential_differences(existing('x-y', subject=SUB_MAIN, audiences=['a', 'b']),
                                  {'name': 'x-y', 'audiences': ['b', 'a']}) == []
    assert credential_differences(existing('x-y', subject=SUB_MAIN, audiences=['a']), {'name': 'x-y', 'audiences': ['b']}) == ['audiences']


# --- exclusivity scopes ----------------------------------------------------------------------------------------------

def flex(name, value, **extra):
    return existing(name, expression=value, **extra)


PROJECT_A = ProjectTarget('https://gitlab.com', 'g/a', None)
PROJECT_A_BOTH = ProjectTarget('https://gitlab.com', 'g/a', '42')
COVERS = [
    # (credential, target, covered?)
    (existing('exact', subject='project_path:g/a:ref_type:branch:ref:main'), PROJECT_A, True),
    (flex('any-ref', "claims['sub'] matches 'project_path:g/a:*'"), PROJECT_A, True),
    (flex('narrowed', "claims['sub'] matches 'project_path:g/a:*' and claims['sub'] matches '*:ref_protected:true'"), PROJECT_A, True),
    (existing('no-ref', subject='project_path:g/a'), PROJECT_A, True),
    (existing('other', subject='project_path:g/b:ref_type:branch:ref:main'), PROJECT_A, False),
    (existing('lookalike', subject='project_path:g/ab:ref_type:branch:ref:main'), PROJECT_A, False),
    (existing('subgroup', subject='project_path:g/a/sub:ref_type:branch:ref:main'), PROJECT_A, False),
    (existing('case', subject='project_path:G/A:ref_type:branch:ref:main'), PROJECT_A, False),
    (flex('group', "claims['sub'] matches 'project_path:g/*'"), PROJECT_A, False),
    (flex('everything', "claims['sub'] matches '*'"), PROJECT_A, False),
    (existing('by-id', subject='project_id:42:ref_type:branch:ref:main'), PROJECT_A, False),
    (existing('by-id', subject='project_id:42:ref_type:branch:ref:main'), PROJECT_A_BOTH, True),
    (existing('by-other-id', subject='project_id:43:ref_type:branch:ref:main'), PROJECT_A_BOTH, False),
    (flex('id-prefix', "claims['sub'] matches 'project_id:4*'"), PROJECT_A_BOTH, False),
    (existing('other-issuer', subject='project_path:g/a:ref_type:branch:ref:main', issuer='https://gitlab.example.com'), PROJECT_A, False),
    (flex('unparsable', "claims['sub'] matches \"project_path:g/a:*\""), PROJECT_A, False),
    (existing('nothing'), PROJECT_A, False),
]


@pytest.mark.parametrize('credential,target,covered', COVERS, ids=['%s-%d' % (case[0]['name'], index) for index, case in enumerate(COVERS)])
def test_gitlab_project_scope_covers_only_credentials_confined_to_the_project(credential, target, covered):
    assert ExclusiveScope('gitlab_project', (target,)).covers(credential) is covered
    assert ExclusiveScope('application').covers(credential) is True


def test_managed_scope_reads_the_marker():
    scope = ExclusiveScope('managed')
    assert scope.covers(existing('x-y', subject=SUB_MAIN, description='GitLab CI/CD of g/p: branch main (managed by oidc_federation.azure)'))
    assert not scope.covers(existing('x-y', subject=SUB_MAIN, description='made by hand'))
    assert not scope.covers(existing('x-y', subject=SUB_MAIN))


def test_scope_projects_come_from_items_and_defaults():
    specs = specs_from_options([
        {'gitlab': {'project_path': 'g/a', 'ref': 'main'}},
        {'gitlab': {'project_id': '7', 'sub_claim_components': ['project_id', 'ref_type', 'ref'], 'ref': 'main'},
         'issuer': 'https://gitlab.example.com'},
        {'name': 'hand', 'subject': 'project_path:g/c:ref_type:branch:ref:main', 'gitlab': {'project_path': 'g/c'}},
        {'name': 'unnamed-project', 'subject': 'project_path:g/d:ref_type:branch:ref:main'}])
    scope = exclusive_scope_for('gitlab_project', specs, defaults=CredentialDefaults(project_id='99'))
    assert scope.projects == (ProjectTarget('https://gitlab.com', 'g/a', None), ProjectTarget('https://gitlab.example.com', None, '7'),
                              ProjectTarget('https://gitlab.com', 'g/c', None), ProjectTarget('https://gitlab.com', None, '99'))
    assert exclusive_scope_for('managed', specs) == ExclusiveScope('managed')
    with pytest.raises(FicValidationError) as caught:
        exclusive_scope_for('gitlab_project', specs[3:])
    assert caught.value.field == 'exclusive_scope' and 'gitlab_project_path' in caught.value.fix
    with pytest.raises(FicValidationError, match='not one of'):
        exclusive_scope_for('everything', specs)


def test_plan_with_project_scope_deletes_only_the_projects_unlisted_credentials():
    current = [existing('a-main', subject='project_path:g/a:ref_type:branch:ref:main'),
               existing('a-stale', subject='project_path:g/a:ref_type:branch:ref:stale'),
               existing('b-main', subject='project_path:g/b:ref_type:branch:ref:main')]
    specs = specs_from_options([{'name': 'a-main', 'subject': 'project_path:g/a:ref_type:branch:ref:main', 'gitlab': {'project_path': 'g/a'}}])
    scope = exclusive_scope_for('gitlab_project', specs)
    plan = plan_application(current, specs, exclusive=True, exclusive_scope=scope)
    assert [item['name'] for item in plan.changes.delete] == ['a-stale']
    assert sorted(item['name'] for item in plan.changes.final) == ['a-main', 'b-main']
    assert not plan_application(current, specs, exclusive=False, exclusive_scope=scope).changed  # scope alone deletes nothing
    assert [item['name'] for item in plan_application(current, specs, exclusive=True).changes.delete] == ['a-stale', 'b-main']


def test_offboarding_plan_deletes_the_whole_project():
    current = [existing('a-main', subject='project_path:g/a:ref_type:branch:ref:main'),
               flex('a-tags', "claims['sub'] matches 'project_path:g/a:ref_type:tag:ref:*'"),
               existing('b-main', subject='project_path:g/b:ref_type:branch:ref:main')]
    scope = exclusive_scope_for('gitlab_project', [], defaults=CredentialDefaults(project_path='g/a'))
    plan = plan_application(current, [], exclusive=True, exclusive_scope=scope)
    assert sorted(item['name'] for item in plan.changes.delete) == ['a-main', 'a-tags'] and plan.changes.create == []


# --- project requests --------------------------------------------------------------------------------------------------

def test_project_request_expands_into_sorted_specs_with_the_item_index():
    specs = specs_from_options([
        {'name': 'first', 'subject': SUB_MAIN.replace('main', 'first')},
        {'gitlab': {'project_path': 'g/p', 'branches': ['release/1.0', 'main', 'release/*'], 'tags': ['v1', 'v1']}, 'description': 'same'}])
    assert [spec.index for spec in specs] == [0, 1, 1, 1]  # release/1.0 covered, v1 once
    built = specs[1:]
    assert [spec.credential.get('subject') or spec.credential['claimsMatchingExpression']['value'] for spec in built] == [
        "claims['sub'] matches 'project_path:g/p:ref_type:branch:ref:release/*'", 'project_path:g/p:ref_type:branch:ref:main',
        'project_path:g/p:ref_type:tag:ref:v1']
    assert {spec.credential['description'] for spec in built} == {'same'}
    assert {spec.request for spec in built} == {built[0].request} and built[0].request.size == 3
    assert [spec.name_given for spec in built] == [False] * 3 and specs[1].ref_type == 'branch' and specs[3].ref_type == 'tag'


def test_project_request_with_any_ref_keeps_one_credential():
    specs = specs_from_item({'gitlab': {'project_id': 5, 'sub_claim_components': ['project_id', 'ref_type', 'ref'], 'any_ref': True,
                                        'branches': ['main'], 'tags': ['v*']}})
    assert [spec.credential['claimsMatchingExpression']['value'] for spec in specs] == ["claims['sub'] matches 'project_id:5:*'"]
    assert specs[0].project_id == '5' and specs[0].request.size == 1
    spec_from_options({'gitlab': {'project_path': 'g/p', 'branches': ['main']}})  # one credential: fine
    with pytest.raises(FicValidationError, match='describes 2 credentials'):
        spec_from_options({'gitlab': {'project_path': 'g/p', 'branches': ['main', 'dev']}})


def test_project_request_budget_counts_only_what_it_does_not_manage():
    others = [existing('o%02d' % i, subject='project_path:o/p:ref_type:branch:ref:b%02d' % i) for i in range(16)]
    specs = specs_from_options([{'gitlab': {'project_path': 'g/p', 'branches': ['release/a', 'release/b', 'release/c', 'main']}}])
    plan = plan_application(others, specs)  # 16 + 4 = 20
    assert len(plan.changes.create) == 4
    again = plan_application(others + plan.changes.create, specs)  # its own credentials do not count against it
    assert not again.changed
    with pytest.raises(FicValidationError) as caught:
        plan_application(others + [existing('extra', subject='project_path:o/p:ref_type:tag:ref:x')], specs)
    assert caught.value.field == 'credentials[0].gitlab.branches'
    assert 'needs 4 credentials but only 3 are available' in caught.value.message and 'branch release/*' in caught.value.fix


def test_plan_without_application_and_item_results():
    specs = specs_from_options([{'gitlab': {'project_path': 'g/p', 'branches': ['main'], 'tags': ['v*']}},
                                {'name': 'gone', 'state': 'absent'}])
    report = plan_without_application(specs)
    assert report.application == {} and report.before == [] and len(report.created) == 2 and report.changed
    results = item_results(report, specs)
    assert [(item['index'], item['action'], item['state'], item['id']) for item in results] == [
        (0, 'created', 'present', None), (0, 'created', 'present', None), (1, 'absent', 'absent', None)]
    assert results[0]['subject'] == 'project_path:g/p:ref_type:branch:ref:main'
    assert results[1]['claims_matching_expression'] == "claims['sub'] matches 'project_path:g/p:ref_type:tag:ref:v*'"


def test_credential_result_shape():
    result = credential_result(existing('flex', expression="claims['sub'] matches 'project_path:g/p:*'"))
    assert set(result) == {'id', 'name', 'issuer', 'audiences', 'description', 'subject', 'claims_matching_expression'}
    assert result['claims_matching_expression'] == "claims['sub'] matches 'project_path:g/p:*'" and result['subject'] is None


# --- many applications against the sandbox ----------------------------------------------------------------------

sandbox_only = pytest.mark.skipif('oidc_sandbox_test_fixtures' not in sys.modules,
                                  reason='the sandbox package (sandbox/oidc_sandbox) is not in this checkout')


def _clients(sb):
    from ansible_collections.oidc_federation.azure.plugins.module_utils._auth import resolve_auth
    from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import Clients
    params = {'auth_source': 'client_secret', 'tenant_id': sb.tenant_id, 'client_id': sb.operator.client_id,
              'client_secret': sb.operator.secret, 'authority_host': sb.url, 'graph_endpoint': sb.url,
              'resource_manager_endpoint': sb.url, 'ca_bundle': sb.ca_file, 'cloud_environment': 'AzurePublicCloud',
              'replication_timeout': 30}
    return Clients(resolve_auth(params, environ={}))


def _apps(sb, count):
    token = sb.token()
    apps = []
    for _index in range(count):
        response = sb.graph('POST', '/v1.0/applications', token=token, json={'displayName': 'many-' + uuid.uuid4().hex[:8]})
        assert response.status_code == 201, response.text
        apps.append(response.json())
    return apps


def _stored(sb):
    return sb.control('GET', 'state').json()['federated_identity_credentials']


@sandbox_only
def test_reconcile_many_applications(clean_sandbox):
    sb = clean_sandbox
    apps = _apps(sb, 4)
    requests = [ApplicationRequest(application=app, specs=specs_from_options([
        {'gitlab': {'project_path': 'g/p%d' % index, 'ref': 'main'}},
        {'gitlab': {'project_path': 'g/p%d' % index, 'all_tags': True}}])) for index, app in enumerate(apps)]

    async def go(check_mode):
        async with _clients(sb) as clients:
            return await reconcile_applications(clients, requests, check_mode=check_mode, limit=3)

    reports = asyncio.run(go(True))
    assert all(report.changed for report in reports) and _stored(sb) == {}
    reports = asyncio.run(go(False))
    assert [len(report.created) for report in reports] == [2, 2, 2, 2]
    stored = _stored(sb)
    for index, app in enumerate(apps):
        assert sorted(fic['subject'] or fic['claimsMatchingExpression']['value'] for fic in stored[app['id']]) == [
            "claims['sub'] matches 'project_path:g/p%d:ref_type:tag:ref:*'" % index, 'project_path:g/p%d:ref_type:branch:ref:main' % index]
    assert not any(report.changed for report in asyncio.run(go(False)))


@sandbox_only
def test_reconcile_many_validates_every_application_before_the_first_write(clean_sandbox):
    sb = clean_sandbox
    good, full = _apps(sb, 2)
    token = sb.token()
    for index in range(20):
        response = sb.graph('POST', '/v1.0/applications/{0}/federatedIdentityCredentials'.format(full['id']), token=token,
                            json={'name': 'f%02d' % index, 'issuer': 'https://gitlab.com', 'audiences': ['https://gitlab.com'],
                                  'subject': 'project_path:g/p:ref_type:branch:ref:b%02d' % index})
        assert response.status_code == 201, response.text
    sb.control('POST', 'stats/reset')
    requests = [ApplicationRequest(application=good, specs=specs_from_options([{'name': 'fine', 'subject': SUB_MAIN}])),
                ApplicationRequest(application=full, specs=specs_from_options([{'name': 'one-too-many', 'subject': SUB_MAIN}]),
                                   field='applications[1].credentials')]

    async def go():
        async with _clients(sb) as clients:
            return await reconcile_applications(clients, requests)

    with pytest.raises(FicValidationError) as caught:
        asyncio.run(go())
    assert caught.value.field == 'applications[1].credentials'
    assert sb.control('GET', 'stats').json()['writes'] == 0
    assert good['id'] not in _stored(sb)


@sandbox_only
def test_reconcile_application_reports_check_mode_exactly(clean_sandbox):
    sb = clean_sandbox
    app, = _apps(sb, 1)
    specs = specs_from_options([{'name': 'a-one', 'subject': SUB_MAIN}])

    async def go(check_mode):
        async with _clients(sb) as clients:
            return await reconcile_application(clients, app, specs, check_mode=check_mode)

    predicted = asyncio.run(go(True))
    done = asyncio.run(go(False))
    assert (predicted.created, predicted.changed) == (done.created, done.changed) == (['a-one'], True)
    assert [dict(item, id=None) for item in done.after] == predicted.after
