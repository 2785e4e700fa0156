# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""azure_ad_app run in-process against the sandbox (local HTTPS Entra ID + Graph emulator).

State is checked through the sandbox's control API (``/_sandbox/state``, ``/_sandbox/stats``) and raw Graph calls
with the operator's token, never through the module under test.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

pytestmark = pytest.mark.skipif('oidc_sandbox_test_fixtures' not in sys.modules,
                                reason='the sandbox package (sandbox/oidc_sandbox) is not in this checkout')

from ansible_collections.oidc_federation.azure.plugins.modules import azure_ad_app  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._graph import MANAGED_TAG  # noqa: E402
from ansible_collections.oidc_federation.azure.tests.unit.plugins.modules.sandbox_auth import auth_args  # noqa: E402

NAME = 'gitlab-oidc-mygroup-myproject'


# --- helpers ------------------------------------------------------------------------------------------------------


def run_app(run_module, sb, *, check=False, diff=True, **args):
    """Run azure_ad_app with ``args``; returns (exit code, result)."""
    params = dict(auth_args(sb), **args)
    params['_ansible_check_mode'] = check
    params['_ansible_diff'] = diff
    return run_module(azure_ad_app.main, params)


def ok(run_module, sb, **kwargs):
    code, result = run_app(run_module, sb, **kwargs)
    assert code == 0, result
    assert not result.get('failed'), result
    return result


def fail(run_module, sb, **kwargs):
    code, result = run_app(run_module, sb, **kwargs)
    assert code == 1 and result.get('failed'), result
    assert 'Traceback' not in json.dumps(result)
    return result


def state(sb):
    response = sb.control('GET', 'state')
    assert response.status_code == 200, response.text
    return response.json()


def apps_named(sb, unique_name):
    return [a for a in state(sb)['applications'] if (a.get('uniqueName') or '').lower() == unique_name.lower()]


def the_app(sb, unique_name=NAME):
    apps = apps_named(sb, unique_name)
    assert len(apps) == 1, apps
    return apps[0]


def sps_of(sb, app_id):
    return [s for s in state(sb)['service_principals'] if s['appId'] == app_id]


def writes(sb):
    response = sb.control('GET', 'stats')
    assert response.status_code == 200, response.text
    return response.json()['writes']


def reset_stats(sb):
    assert sb.control('POST', 'stats/reset').status_code in (200, 204)


def owners_of(sb, object_id):
    response = sb.graph('GET', '/v1.0/applications/{0}/owners'.format(object_id))
    assert response.status_code == 200, response.text
    return sorted(o['id'] for o in response.json()['value'])


def operator_sp_id(sb):
    return next(s['id'] for s in state(sb)['service_principals'] if s['appId'] == sb.operator.client_id)


def make_app_by_hand(sb, display_name, **extra):
    """What ``az ad app create --display-name x`` does: POST /applications without uniqueName."""
    response = sb.graph('POST', '/v1.0/applications', json=dict({'displayName': display_name}, **extra))
    assert response.status_code == 201, response.text
    return response.json()


def wait_until_replicated(sb, unique_name, timeout=15.0):
    """Poll Graph (not the module) until the application can be read by its unique name."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sb.graph('GET', "/v1.0/applications(uniqueName='{0}')".format(unique_name)).status_code == 200:
            return
        time.sleep(0.25)
    raise AssertionError('application {0} still not readable after {1} s'.format(unique_name, timeout))


def no_secret_in(result, sb):
    text = json.dumps(result)
    assert sb.operator.secret not in text
    assert 'eyJ' not in text  # no JWT (access token)


FULL = dict(unique_name=NAME, display_name='GitLab CI mygroup/myproject', description='Deploys myproject',
            notes='owned by team platform', tags=['team-platform', 'prod'], service_management_reference='CMDB-1')


# --- the lifecycle ------------------------------------------------------------------------------------------------

def test_full_lifecycle(run_module, clean_sandbox):
    sb = clean_sandbox
    owner = operator_sp_id(sb)
    args = dict(FULL, owners=[owner])

    # check mode: predicts the creation, writes nothing
    reset_stats(sb)
    result = ok(run_module, sb, check=True, **args)
    assert result['changed'] is True
    assert result['app_id'] is None and result['service_principal_id'] is None
    assert result['tenant_id'] == sb.tenant_id
    assert result['actions'] == ['create application {0}'.format(NAME), 'add owner {0}'.format(owner),
                                 'create service principal']
    assert result['diff']['before'] == {}
    assert result['diff']['after']['tags'] == sorted(['team-platform', 'prod', MANAGED_TAG])
    assert writes(sb) == 0
    assert apps_named(sb, NAME) == []

    # apply
    result = ok(run_module, sb, **args)
    assert result['changed'] is True
    app = the_app(sb)
    assert app['appId'] == result['app_id'] and app['id'] == result['object_id']
    assert app['displayName'] == 'GitLab CI mygroup/myproject'
    assert app['description'] == 'Deploys myproject' and app['notes'] == 'owned by team platform'
    assert app['serviceManagementReference'] == 'CMDB-1'
    assert app['signInAudience'] == 'AzureADMyOrg'
    assert sorted(app['tags']) == sorted(['team-platform', 'prod', MANAGED_TAG])
    sps = sps_of(sb, app['appId'])
    assert [s['id'] for s in sps] == [result['service_principal_id']]
    assert result['tenant_id'] == sb.tenant_id
    assert owners_of(sb, app['id']) == [owner]
    assert result['application'] == result['diff']['after']
    no_secret_in(result, sb)

    # re-run: nothing to do, no write at all
    reset_stats(sb)
    result = ok(run_module, sb, **args)
    assert result['changed'] is False and result['actions'] == []
    assert result['diff']['before'] == result['diff']['after']
    assert writes(sb) == 0
    assert result['app_id'] == app['appId'] and result['service_principal_id'] == sps[0]['id']

    # check mode on the converged state: no change predicted
    result = ok(run_module, sb, check=True, **args)
    assert result['changed'] is False

    # drift behind the module's back: only the drifted fields are written
    response = sb.graph('PATCH', '/v1.0/applications/{0}'.format(app['id']),
                        json={'description': 'changed by hand', 'tags': ['prod', MANAGED_TAG],
                              'signInAudience': 'AzureADMultipleOrgs'})
    assert response.status_code == 204, response.text
    reset_stats(sb)
    result = ok(run_module, sb, check=True, **args)
    assert result['changed'] is True and writes(sb) == 0
    assert result['diff']['before']['description'] == 'changed by hand'
    result = ok(run_module, sb, **args)
    assert result['changed'] is True
    assert result['actions'] == ['update application {0}: description, signInAudience, tags'.format(NAME)]
    assert writes(sb) == 1
    app = the_app(sb)
    assert app['description'] == 'Deploys myproject' and app['signInAudience'] == 'AzureADMyOrg'
    assert sorted(app['tags']) == sorted(['team-platform', 'prod', MANAGED_TAG])
    reset_stats(sb)
    assert ok(run_module, sb, **args)['changed'] is False
    assert writes(sb) == 0

    # a deleted service principal comes back
    response = sb.graph('DELETE', '/v1.0/servicePrincipals/{0}'.format(sps[0]['id']))
    assert response.status_code == 204
    result = ok(run_module, sb, **args)
    assert result['changed'] is True and result['actions'] == ['create service principal']
    assert len(sps_of(sb, app['appId'])) == 1

    # absent in check mode: predicted, nothing deleted
    reset_stats(sb)
    result = ok(run_module, sb, check=True, unique_name=NAME, state='absent')
    assert result['changed'] is True and writes(sb) == 0
    assert result['diff']['after'] == {}
    assert len(apps_named(sb, NAME)) == 1

    # absent: service principal and application soft-deleted
    result = ok(run_module, sb, unique_name=NAME, state='absent')
    assert result['changed'] is True
    assert result['app_id'] == app['appId']
    assert apps_named(sb, NAME) == [] and sps_of(sb, app['appId']) == []
    deleted = {d['id'] for d in state(sb)['deleted_items']}
    assert app['id'] in deleted and result['service_principal_id'] in deleted

    # absent again: no-op, no write
    reset_stats(sb)
    result = ok(run_module, sb, unique_name=NAME, state='absent')
    assert result['changed'] is False and result['app_id'] is None
    assert writes(sb) == 0


def test_defaults_minimal_create_and_display_name_default(run_module, clean_sandbox):
    sb = clean_sandbox
    result = ok(run_module, sb, unique_name='minimal-app')
    app = the_app(sb, 'minimal-app')
    assert app['displayName'] == 'minimal-app' and result['display_name'] == 'minimal-app'
    assert app['signInAudience'] == 'AzureADMyOrg'  # always sent (Graph's own default differs)
    assert app['tags'] == [MANAGED_TAG]
    assert result['service_principal_id']
    # display name given later: renamed, nothing else touched
    reset_stats(sb)
    result = ok(run_module, sb, unique_name='minimal-app', display_name='Minimal')
    assert result['actions'] == ['update application minimal-app: displayName']
    assert writes(sb) == 1
    assert the_app(sb, 'minimal-app')['displayName'] == 'Minimal'


def test_no_service_principal(run_module, clean_sandbox):
    sb = clean_sandbox
    result = ok(run_module, sb, unique_name='no-sp', service_principal=False)
    assert result['service_principal_id'] is None
    assert sps_of(sb, result['app_id']) == []
    assert 'service_principal' not in result['application']
    reset_stats(sb)
    assert ok(run_module, sb, unique_name='no-sp', service_principal=False)['changed'] is False
    assert writes(sb) == 0
    # turned on later: created
    result = ok(run_module, sb, unique_name='no-sp')
    assert result['actions'] == ['create service principal'] and result['service_principal_id']
    # service_principal=false neither creates nor deletes: the existing one is reported
    result = ok(run_module, sb, unique_name='no-sp', service_principal=False)
    assert result['changed'] is False and result['service_principal_id']


def test_clearing_text_fields(run_module, clean_sandbox):
    sb = clean_sandbox
    ok(run_module, sb, unique_name='texts', description='d', notes='n', service_management_reference='r')
    result = ok(run_module, sb, unique_name='texts', description='', notes='', service_management_reference='')
    assert result['changed'] is True
    app = the_app(sb, 'texts')
    assert app['description'] is None and app['notes'] is None and app['serviceManagementReference'] is None
    reset_stats(sb)
    assert ok(run_module, sb, unique_name='texts', description='', notes='')['changed'] is False
    assert writes(sb) == 0


# --- tags ---------------------------------------------------------------------------------------------------------

def test_tags_merge_and_purge(run_module, clean_sandbox):
    sb = clean_sandbox
    ok(run_module, sb, unique_name='tags', tags=['a', 'b'])
    sb.graph('PATCH', '/v1.0/applications/{0}'.format(the_app(sb, 'tags')['id']), json={'tags': ['a', 'b', MANAGED_TAG, 'user']})
    # tags not given: left alone
    reset_stats(sb)
    assert ok(run_module, sb, unique_name='tags')['changed'] is False and writes(sb) == 0
    # merge (default): missing tags added, others kept; order of the list does not matter
    result = ok(run_module, sb, unique_name='tags', tags=['c', 'b', 'a'])
    assert result['changed'] is True
    assert the_app(sb, 'tags')['tags'] == ['a', 'b', MANAGED_TAG, 'user', 'c']
    assert ok(run_module, sb, unique_name='tags', tags=['b', 'a', 'b'])['changed'] is False
    # purge: exactly these plus the managed marker
    result = ok(run_module, sb, unique_name='tags', tags=['b'], purge_tags=True)
    assert result['diff']['after']['tags'] == sorted(['b', MANAGED_TAG])
    assert sorted(the_app(sb, 'tags')['tags']) == sorted(['b', MANAGED_TAG])
    reset_stats(sb)
    assert ok(run_module, sb, unique_name='tags', tags=['b'], purge_tags=True)['changed'] is False
    assert writes(sb) == 0


# --- owners -------------------------------------------------------------------------------------------------------

def test_owners_add_and_purge(run_module, clean_sandbox):
    sb = clean_sandbox
    operator = operator_sp_id(sb)
    other = ok(run_module, sb, unique_name='owner-sp-holder')['service_principal_id']
    result = ok(run_module, sb, unique_name='owned', owners=[operator])
    object_id = result['object_id']
    assert owners_of(sb, object_id) == [operator]
    # an owner added by hand is kept without purge_owners
    response = sb.graph('POST', '/v1.0/applications/{0}/owners/$ref'.format(object_id),
                        json={'@odata.id': '{0}/v1.0/directoryObjects/{1}'.format(sb.url, other)})
    assert response.status_code == 204, response.text
    reset_stats(sb)
    result = ok(run_module, sb, unique_name='owned', owners=[operator.upper()])
    assert result['changed'] is False and writes(sb) == 0
    assert result['application']['owners'] == sorted([operator, other])
    # purge: removed
    result = ok(run_module, sb, unique_name='owned', owners=[operator], purge_owners=True)
    assert result['actions'] == ['remove owner {0}'.format(other)]
    assert owners_of(sb, object_id) == [operator]
    # owners not given: left alone, not even read
    reset_stats(sb)
    result = ok(run_module, sb, unique_name='owned')
    assert result['changed'] is False and 'owners' not in result['application']
    by_route = sb.control('GET', 'stats').json()['by_route']
    assert not any('owners' in route for route in by_route)


# --- adoption -----------------------------------------------------------------------------------------------------

def test_adopt_single_app_by_display_name(run_module, clean_sandbox):
    sb = clean_sandbox
    seeded = make_app_by_hand(sb, 'gitlab-oidc', tags=['byhand'])
    # without adopt_by_display_name: a warning, a new application would be created
    result = ok(run_module, sb, check=True, unique_name='gitlab-oidc')
    assert result['changed'] is True and result['app_id'] is None
    assert 'adopt_by_display_name: true' in json.dumps(result.get('warnings'))
    # adopt: uniqueName set on the existing application, nothing created
    result = ok(run_module, sb, unique_name='gitlab-oidc', adopt_by_display_name=True, tags=['x'])
    assert result['changed'] is True and result['app_id'] == seeded['appId']
    assert result['actions'][0].startswith('adopt application gitlab-oidc')
    apps = [a for a in state(sb)['applications'] if a['displayName'] == 'gitlab-oidc']
    assert len(apps) == 1 and apps[0]['uniqueName'] == 'gitlab-oidc'
    assert sorted(apps[0]['tags']) == ['byhand', 'x']  # adopted: not marked as managed
    assert len(sps_of(sb, seeded['appId'])) == 1
    reset_stats(sb)
    assert ok(run_module, sb, unique_name='gitlab-oidc', adopt_by_display_name=True, tags=['x'])['changed'] is False
    assert writes(sb) == 0
    # an adopted application is not deleted without force_delete
    reset_stats(sb)
    result = fail(run_module, sb, unique_name='gitlab-oidc', state='absent')
    assert 'force_delete' in result['msg'] and MANAGED_TAG in result['msg']
    assert writes(sb) == 0 and len(apps_named(sb, 'gitlab-oidc')) == 1
    result = ok(run_module, sb, unique_name='gitlab-oidc', state='absent', force_delete=True)
    assert result['changed'] is True and apps_named(sb, 'gitlab-oidc') == []


def test_adopt_refuses_when_several_match(run_module, clean_sandbox):
    sb = clean_sandbox
    first = make_app_by_hand(sb, 'gitlab-oidc')
    second = make_app_by_hand(sb, 'gitlab-oidc')
    reset_stats(sb)
    result = fail(run_module, sb, unique_name='gitlab-oidc', adopt_by_display_name=True)
    assert 'adopt_by_display_name' in result['msg'] and '2 applications' in result['msg']
    assert first['appId'] in result['msg'] and second['appId'] in result['msg']
    assert writes(sb) == 0
    assert len([a for a in state(sb)['applications'] if a['displayName'] == 'gitlab-oidc']) == 2


def test_adopt_ignores_apps_with_another_unique_name(run_module, clean_sandbox):
    sb = clean_sandbox
    ok(run_module, sb, unique_name='first-key', display_name='shared-name')
    result = ok(run_module, sb, unique_name='second-key', display_name='shared-name', adopt_by_display_name=True)
    assert result['actions'][0] == 'create application second-key'
    assert len(apps_named(sb, 'first-key')) == 1 and len(apps_named(sb, 'second-key')) == 1


# --- unique name derived from a GitLab project --------------------------------------------------------------------

def test_unique_name_derived_from_gitlab_project_is_collision_free(run_module, clean_sandbox):
    """a/b-c and a-b/c (the same name with '/' -> '-') get two applications; the filter computes the same names."""
    from ansible_collections.oidc_federation.azure.plugins.filter.gitlab_subject import gitlab_app_unique_name
    sb = clean_sandbox
    reset_stats(sb)
    planned = ok(run_module, sb, check=True, gitlab_project_path='a/b-c')
    assert (planned['changed'], planned['unique_name'], writes(sb)) == (True, 'gitlab-oidc-a~b-c', 0)
    first = ok(run_module, sb, gitlab_project_path='a/b-c')
    second = ok(run_module, sb, gitlab_project_path='a-b/c')
    by_id = ok(run_module, sb, gitlab_project_id='57382910')
    assert (first['unique_name'], second['unique_name'], by_id['unique_name']) == \
        ('gitlab-oidc-a~b-c', 'gitlab-oidc-a-b~c', 'gitlab-oidc-id-57382910')
    assert [first['unique_name'], second['unique_name'], by_id['unique_name']] == \
        [gitlab_app_unique_name('a/b-c'), gitlab_app_unique_name('a-b/c'), gitlab_app_unique_name(57382910)]
    assert first['app_id'] != second['app_id']
    for result in (first, second, by_id):
        app = the_app(sb, result['unique_name'])  # stored under the derived key, per the sandbox
        assert app['appId'] == result['app_id'] and app['displayName'] == result['unique_name']
    reset_stats(sb)
    again = ok(run_module, sb, gitlab_project_path='a/b-c')
    assert (again['changed'], again['app_id'], writes(sb)) == (False, first['app_id'], 0)
    # an application created with the same name given explicitly is the same application
    same = ok(run_module, sb, unique_name='gitlab-oidc-a~b-c')
    assert (same['changed'], same['app_id']) == (False, first['app_id'])
    gone = ok(run_module, sb, gitlab_project_path='a/b-c', state='absent')
    assert gone['changed'] is True and apps_named(sb, 'gitlab-oidc-a~b-c') == []
    assert len(apps_named(sb, 'gitlab-oidc-a-b~c')) == 1


def test_long_project_path_gives_a_hashed_name_within_the_limit(run_module, clean_sandbox):
    sb = clean_sandbox
    group = '/'.join('level-{0}-{1}'.format(index, 'x' * 40) for index in range(6))
    names = []
    for project in ('project-one', 'project-two'):
        result = ok(run_module, sb, gitlab_project_path='{0}/{1}'.format(group, project), service_principal=False)
        names.append(result['unique_name'])
        assert len(result['unique_name']) == 256 and '~-' in result['unique_name']
        the_app(sb, result['unique_name'])
    assert names[0] != names[1] and names[0][:200] == names[1][:200]  # same cut prefix, different hash


# --- bad input ----------------------------------------------------------------------------------------------------

BAD_INPUT = [
    ({'unique_name': 'group/project'}, 'unique_name', "'/'"),
    ({'unique_name': '-leading-dash'}, 'unique_name', 'must start with a letter or digit'),
    ({'unique_name': 'a' * 257}, 'unique_name', 'at most 256'),
    ({'unique_name': 'ok-name', 'display_name': ''}, 'display_name', 'must not be empty'),
    ({'unique_name': 'ok-name', 'display_name': 'x' * 257}, 'display_name', 'at most 256'),
    ({'unique_name': 'ok-name', 'description': 'x' * 1025}, 'description', 'at most 1024'),
    ({'unique_name': 'ok-name', 'tags': ['fine', '']}, 'tags[1]', 'non-empty'),
    ({'unique_name': 'ok-name', 'owners': ['not-a-guid']}, 'owners[0]', 'not an object id'),
    ({'unique_name': 'ok-name', 'owners': ['7d0a3a1e-0000-4000-8000-000000000001']}, 'owners', 'no user or service principal'),
    ({'unique_name': 'ok-name', 'sign_in_audience': 'Everyone'}, 'sign_in_audience', 'Everyone'),
    ({'unique_name': 'ok-name', 'state': 'gone'}, 'state', 'gone'),
    ({'gitlab_project_path': 'project-without-namespace'}, 'gitlab_project_path', 'no namespace'),
    ({'gitlab_project_path': 'https://gitlab.com/g/p'}, 'gitlab_project_path', 'is a URL'),
    ({'gitlab_project_path': 'g/-p'}, 'gitlab_project_path', 'not a valid GitLab path segment'),
    ({'gitlab_project_id': '0042'}, 'gitlab_project_id', 'not a GitLab project id'),
    ({'gitlab_project_path': 'g/p', 'unique_name': 'ok-name'}, 'unique_name', 'mutually exclusive'),
    ({'gitlab_project_path': 'g/p', 'gitlab_project_id': '42'}, 'gitlab_project_id', 'mutually exclusive'),
    ({'display_name': 'no-key'}, 'unique_name', 'one of the following is required'),
    ({'unique_name': 'ok-name', 'purge': True}, 'purge', 'only applies to state=absent'),
]


@pytest.mark.parametrize('args,field,text', BAD_INPUT, ids=[c[1] + '-' + c[2][:20] for c in BAD_INPUT])
def test_bad_input_fails_before_any_write(run_module, clean_sandbox, args, field, text):
    sb = clean_sandbox
    reset_stats(sb)
    result = fail(run_module, sb, **args)
    assert field in result['msg'] and text in result['msg'], result['msg']
    assert writes(sb) == 0
    assert apps_named(sb, 'ok-name') == []
    no_secret_in(result, sb)


def test_graph_error_is_clear_and_secret_free(run_module, clean_sandbox):
    sb = clean_sandbox
    args = dict(auth_args(sb), client_id=sb.restricted.client_id, client_secret=sb.restricted.secret,
                unique_name='denied-app', _ansible_diff=False, _ansible_check_mode=False)
    code, result = run_module(azure_ad_app.main, args)
    assert code == 1 and result['failed']
    assert 'Authorization_RequestDenied' in result['msg'] and 'create application' in result['msg']
    assert 'Traceback' not in json.dumps(result)
    assert sb.restricted.secret not in json.dumps(result)


# --- purge: nothing left in deleted items -------------------------------------------------------------------------

def deleted_items(sb, kind='application'):
    """Graph's own list of deleted items of one type (the type cast is required)."""
    response = sb.graph('GET', '/v1.0/directory/deletedItems/microsoft.graph.{0}'.format(kind))
    assert response.status_code == 200, response.text
    return response.json()['value']


def test_absent_with_purge_leaves_nothing_in_deleted_items(run_module, clean_sandbox):
    sb = clean_sandbox
    created = ok(run_module, sb, **FULL)
    app_id, object_id, sp_id = created['app_id'], created['object_id'], created['service_principal_id']
    args = dict(unique_name=NAME, state='absent', purge=True)

    reset_stats(sb)
    result = ok(run_module, sb, check=True, **args)
    assert result['changed'] is True and writes(sb) == 0
    assert result['actions'] == [
        'delete service principal {0}'.format(sp_id), 'delete application {0} (app id {1})'.format(NAME, app_id),
        'purge service principal {0} (object id {1}, app id {2}) from deleted items'.format(FULL['display_name'], sp_id, app_id),
        'purge application {0} (object id {1}, app id {2}) from deleted items'.format(NAME, object_id, app_id)]
    assert [(p['type'], p['object_id']) for p in result['purged']] == [('servicePrincipal', sp_id), ('application', object_id)]
    assert result['diff']['before']['unique_name'] == NAME and result['diff']['after'] == {}
    assert len(apps_named(sb, NAME)) == 1

    result = ok(run_module, sb, **args)
    assert result['changed'] is True and result['app_id'] == app_id
    assert [p['object_id'] for p in result['purged']] == [sp_id, object_id]
    assert apps_named(sb, NAME) == [] and sps_of(sb, app_id) == []
    assert state(sb)['deleted_items'] == []
    assert deleted_items(sb) == [] and deleted_items(sb, 'servicePrincipal') == []
    for gone in (object_id, sp_id):
        assert sb.graph('GET', '/v1.0/directory/deletedItems/' + gone).status_code == 404
        assert sb.graph('POST', '/v1.0/directory/deletedItems/{0}/restore'.format(gone)).status_code == 404

    reset_stats(sb)
    again = ok(run_module, sb, **args)
    assert again['changed'] is False and again['purged'] == [] and again['actions'] == [] and writes(sb) == 0


def test_purge_removes_a_managed_application_deleted_earlier_and_only_that(run_module, clean_sandbox):
    sb = clean_sandbox
    created = ok(run_module, sb, **FULL)
    other = ok(run_module, sb, unique_name='another-app')
    ok(run_module, sb, unique_name=NAME, state='absent')           # deleted without purge: restorable
    ok(run_module, sb, unique_name='another-app', state='absent')
    assert {d['id'] for d in deleted_items(sb)} == {created['object_id'], other['object_id']}

    reset_stats(sb)
    result = ok(run_module, sb, check=True, unique_name=NAME, state='absent', purge=True)
    assert result['changed'] is True and writes(sb) == 0
    assert result['diff']['before']['in_deleted_items'] is True and result['diff']['after'] == {}
    assert [a.split(' (')[0] for a in result['actions']] == [
        'purge service principal ' + FULL['display_name'], 'purge application ' + NAME]
    assert result['app_id'] == created['app_id']

    result = ok(run_module, sb, unique_name=NAME, state='absent', purge=True)
    assert result['changed'] is True
    assert [d['id'] for d in deleted_items(sb)] == [other['object_id']]       # the other one is left alone
    assert [d['appId'] for d in deleted_items(sb, 'servicePrincipal')] == [other['app_id']]
    reset_stats(sb)
    assert ok(run_module, sb, unique_name=NAME, state='absent', purge=True)['changed'] is False
    assert writes(sb) == 0
    # the unique name is free again: a new application (new app id) can take it
    reborn = ok(run_module, sb, unique_name=NAME)
    assert reborn['changed'] is True and reborn['app_id'] != created['app_id']


def test_purge_never_touches_an_application_the_collection_did_not_create(run_module, clean_sandbox):
    sb = clean_sandbox
    live = make_app_by_hand(sb, 'made by hand', uniqueName='hand-made')
    reset_stats(sb)
    result = fail(run_module, sb, unique_name='hand-made', state='absent', force_delete=True, purge=True)
    assert result['msg'].startswith('purge: application ') and MANAGED_TAG in result['msg'] and 'Fix: ' in result['msg']
    assert writes(sb) == 0 and len(apps_named(sb, 'hand-made')) == 1
    # the same application deleted by hand, then purged by the module: refused, it stays restorable
    assert sb.graph('DELETE', '/v1.0/applications/' + live['id']).status_code == 204
    reset_stats(sb)
    result = fail(run_module, sb, unique_name='hand-made', state='absent', purge=True)
    assert 'in deleted items does not carry the tag' in result['msg']
    assert writes(sb) == 0 and [d['id'] for d in deleted_items(sb)] == [live['id']]
    # without purge, there is nothing live to delete: unchanged
    assert ok(run_module, sb, unique_name='hand-made', state='absent')['changed'] is False


def test_purge_waits_for_the_deleted_items_to_replicate(run_module, clean_sandbox):
    sb = clean_sandbox
    created = ok(run_module, sb, **FULL)
    wait_until_replicated(sb, NAME)
    sb.faults(seed=3, replication_lag=1.5)
    time.sleep(1.5)  # the application and service principal themselves are replicated
    reset_stats(sb)
    result = ok(run_module, sb, unique_name=NAME, state='absent', purge=True, replication_timeout=30)
    assert result['changed'] is True
    by_route = sb.control('GET', 'stats').json()['by_route']
    assert by_route['DELETE /v1.0/directory/deletedItems/{id}'] > 2, by_route  # the 404s of the lag were retried
    sb.faults()
    assert state(sb)['deleted_items'] == [] and apps_named(sb, NAME) == []
    assert sb.graph('GET', '/v1.0/directory/deletedItems/' + created['object_id']).status_code == 404


# --- faults: replication lag and throttling -----------------------------------------------------------------------

def test_converges_with_replication_lag_and_throttling(run_module, clean_sandbox):
    sb = clean_sandbox
    owner = operator_sp_id(sb)
    lag = 1.5
    sb.faults(seed=11, replication_lag=lag,
              rules=[{'service': 'graph', 'kind': 'throttle', 'rate': 0.1, 'retry_after': 1}])
    args = dict(FULL, owners=[owner], replication_timeout=30)
    reset_stats(sb)
    result = ok(run_module, sb, **args)
    assert sb.control('GET', 'stats').json()['by_status'].get('404', 0) >= 2  # the lag was hit (owners, read-back)
    assert result['changed'] is True and result['service_principal_id']
    wait_until_replicated(sb, NAME)
    app = the_app(sb)
    assert len(sps_of(sb, app['appId'])) == 1
    assert owners_of(sb, app['id']) == [owner]
    # once replicated, a re-run writes nothing, even with throttling still on
    reset_stats(sb)
    result = ok(run_module, sb, **args)
    assert result['changed'] is False and writes(sb) == 0
    # a re-run inside the lag window after a creation never duplicates anything
    reset_stats(sb)
    ok(run_module, sb, unique_name='lagging-app', replication_timeout=30)
    by_route = sb.control('GET', 'stats').json()['by_route']
    assert by_route["PATCH /v1.0/servicePrincipals(appId='{appId}')"] >= 2  # NoBackingApplicationObject retried
    ok(run_module, sb, unique_name='lagging-app', replication_timeout=30)
    time.sleep(lag)
    assert len(apps_named(sb, 'lagging-app')) == 1
    assert len(sps_of(sb, apps_named(sb, 'lagging-app')[0]['appId'])) == 1
    assert sb.control('GET', 'faults').json()['rules'][0]['fired'] >= 1  # throttling did happen
    sb.faults()
    absent = ok(run_module, sb, unique_name=NAME, state='absent')
    assert absent['changed'] is True and apps_named(sb, NAME) == []
