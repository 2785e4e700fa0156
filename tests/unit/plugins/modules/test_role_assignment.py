# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role_assignment module, run in-process against the HTTPS sandbox (ARM role assignments, Graph lookups).

Every flow checks the sandbox's own view (``/_sandbox/state``) and its write counter (``/_sandbox/stats``), never
the module's word for it.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from ansible_collections.oidc_federation.azure.plugins.modules import role_assignment
from ansible_collections.oidc_federation.azure.tests.unit.conftest import SANDBOX_AVAILABLE
from ansible_collections.oidc_federation.azure.tests.unit.plugins.modules.sandbox_auth import auth_args as sandbox_auth_args  # noqa: E402

pytestmark = pytest.mark.skipif(not SANDBOX_AVAILABLE, reason='the sandbox is not in this checkout')

READER = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
CONTRIBUTOR = 'b24988ac-6180-42a0-ab88-20f7382dd24c'
OWNER = '8e3af657-a8ff-443c-a75c-2fe8c4bcb635'
ACR_PULL = '7f951dda-4ed3-4680-a7ca-43fe172d538d'
RA_PATH = '/providers/Microsoft.Authorization/roleAssignments'


# --- helpers ---------------------------------------------------------------------------------------------------------------

def auth_args(sandbox):
    """The shared auth options, with a shorter replication wait."""
    return sandbox_auth_args(sandbox, replication_timeout=30)


def sub_scope(sandbox):
    return '/subscriptions/' + sandbox.subscription_id


def rg_scope(sandbox, name='rg-sandbox'):
    return '{0}/resourceGroups/{1}'.format(sub_scope(sandbox), name)


def _setup_request(send, expected=201, attempts=40):
    """A test-setup request, repeated while the sandbox throttles it or the app is still replicating (bounded)."""
    for _attempt in range(attempts):
        response = send()
        if response.status_code == 429 or 'NoBackingApplicationObject' in response.text:
            time.sleep(0.25)
            continue
        assert response.status_code == expected, response.text
        return response.json()
    raise AssertionError('setup request kept failing: ' + response.text)


def make_sps(sandbox, count):
    """New applications and their service principals (over Graph, as the operator); returns the SPs' JSON.

    All applications are created first, then the service principals, so that under a replication-lag fault the
    service principals are all still replicating when this returns.
    """
    apps = [_setup_request(lambda: sandbox.graph('POST', '/v1.0/applications', json={
        'displayName': 'ra-test-' + uuid.uuid4().hex[:8]})) for _index in range(count)]
    return [_setup_request(lambda app=app: sandbox.graph('POST', '/v1.0/servicePrincipals', json={'appId': app['appId']}))
            for app in apps]


def make_sp(sandbox):
    """A new application and its service principal; returns the SP JSON."""
    return make_sps(sandbox, 1)[0]


def add_resource_group(sandbox, name):
    _setup_request(lambda: sandbox.arm('PUT', '{0}?api-version=2021-04-01'.format(rg_scope(sandbox, name)),
                                       json={'location': 'westeurope'}))


def seed_assignment(sandbox, scope, role, principal_id, name=None, description=None):
    """An assignment created behind the module's back (control API, no RBAC)."""
    body = {'scope': scope, 'role': role, 'principalId': principal_id, 'principalType': 'ServicePrincipal'}
    if name:
        body['name'] = name
    response = sandbox.control('POST', 'arm/roleAssignments', json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    if description is not None:
        put = sandbox.arm('PUT', created['id'] + '?api-version=2022-04-01', json={'properties': {
            'roleDefinitionId': created['properties']['roleDefinitionId'], 'principalId': principal_id,
            'principalType': 'ServicePrincipal', 'description': description}})
        assert put.status_code in (200, 201), put.text
    return created


def assignments_of(sandbox, principal_id):
    """The sandbox's role assignments of one principal: {(scope lower, role guid): assignment}."""
    state = sandbox.control('GET', 'state').json()
    out = {}
    for item in state['role_assignments']:
        props = item['properties']
        if props['principalId'].lower() == principal_id.lower():
            out[(props['scope'].lower(), props['roleDefinitionId'].rsplit('/', 1)[-1].lower())] = item
    return out


def writes(sandbox):
    return sandbox.control('GET', 'stats').json()['writes']


def reset_stats(sandbox):
    assert sandbox.control('POST', 'stats/reset').status_code == 200


@pytest.fixture
def run(run_module, clean_sandbox):
    """``run(args, check=False, diff=False) -> (rc, result, writes during the run)``."""
    def call(args, check=False, diff=False):
        full = dict(auth_args(clean_sandbox), **args)
        if check:
            full['_ansible_check_mode'] = True
        if diff:
            full['_ansible_diff'] = True
        reset_stats(clean_sandbox)
        rc, result = run_module(role_assignment.main, full)
        return rc, result, writes(clean_sandbox)
    return call


def assert_no_secret(sandbox, result):
    text = json.dumps(result)
    assert sandbox.operator.secret not in text
    assert 'eyJ' not in text  # no JWT


# --- the main flow -------------------------------------------------------------------------------------------------------------

def test_single_assignment_lifecycle(run, clean_sandbox):
    sandbox = clean_sandbox
    sp = make_sp(sandbox)
    args = dict(principal_id=sp['id'], role='Reader', scope=rg_scope(sandbox), description='ci deploys')

    rc, result, n = run(args, check=True, diff=True)
    assert rc == 0, result
    assert result['changed'] is True and n == 0
    assert assignments_of(sandbox, sp['id']) == {}
    predicted = result['assignments'][0]
    assert predicted['action'] == 'created' and predicted['role_definition_name'] == 'Reader'
    assert result['diff']['before'] == {'assignments': []}
    assert [a['role'] for a in result['diff']['after']['assignments']] == ['Reader']

    rc, result, n = run(args)
    assert rc == 0, result
    assert result['changed'] is True and n == 1
    created = result['assignments'][0]
    assert created['name'] == predicted['name'] and created['id'] == predicted['id']  # deterministic
    state = assignments_of(sandbox, sp['id'])
    assert list(state) == [(rg_scope(sandbox).lower(), READER)]
    stored = state[(rg_scope(sandbox).lower(), READER)]
    assert stored['name'] == created['name']
    assert stored['properties']['principalType'] == 'ServicePrincipal'
    assert stored['properties']['description'] == 'ci deploys'
    assert_no_secret(sandbox, result)

    rc, result, n = run(args)
    assert rc == 0 and result['changed'] is False and n == 0
    assert result['assignments'][0]['action'] == 'unchanged'

    # drift: the description changed behind the module's back -> updated in place, same name
    seed_put = sandbox.arm('PUT', stored['id'] + '?api-version=2022-04-01', json={'properties': {
        'roleDefinitionId': stored['properties']['roleDefinitionId'], 'principalId': sp['id'],
        'principalType': 'ServicePrincipal', 'description': 'edited by hand'}})
    assert seed_put.status_code in (200, 201)
    rc, result, n = run(args, check=True)
    assert rc == 0 and result['changed'] is True and n == 0
    assert result['assignments'][0]['action'] == 'updated'
    rc, result, n = run(args, diff=True)
    assert rc == 0 and result['changed'] is True and n == 1
    assert result['diff']['before']['assignments'][0]['description'] == 'edited by hand'
    assert result['diff']['after']['assignments'][0]['description'] == 'ci deploys'
    state = assignments_of(sandbox, sp['id'])
    assert state[(rg_scope(sandbox).lower(), READER)]['properties']['description'] == 'ci deploys'
    assert state[(rg_scope(sandbox).lower(), READER)]['name'] == created['name']

    # drift: the assignment was deleted behind the module's back -> recreated
    assert sandbox.arm('DELETE', stored['id'] + '?api-version=2022-04-01').status_code == 200
    rc, result, n = run(args)
    assert rc == 0 and result['changed'] is True and n == 1
    assert (rg_scope(sandbox).lower(), READER) in assignments_of(sandbox, sp['id'])

    absent = dict(args, state='absent')
    rc, result, n = run(absent, check=True)
    assert rc == 0 and result['changed'] is True and n == 0
    assert (rg_scope(sandbox).lower(), READER) in assignments_of(sandbox, sp['id'])
    rc, result, n = run(absent)
    assert rc == 0 and result['changed'] is True and n == 1
    assert result['assignments'][0]['action'] == 'deleted'
    assert assignments_of(sandbox, sp['id']) == {}
    rc, result, n = run(absent)
    assert rc == 0 and result['changed'] is False and n == 0
    assert result['assignments'][0]['action'] == 'absent'


def operator_object_id(sandbox):
    state = sandbox.control('GET', 'state').json()
    return next(op['object_id'] for op in state['operators'] if op['client_id'] == sandbox.operator.client_id)


def test_many_assignments_exclusive_touches_only_this_principal_at_listed_scopes(run, clean_sandbox):
    sandbox = clean_sandbox
    add_resource_group(sandbox, 'rg-two')
    sp, other = make_sp(sandbox), make_sp(sandbox)
    rg1, rg2, sub = rg_scope(sandbox), rg_scope(sandbox, 'rg-two'), sub_scope(sandbox)
    resource = rg1 + '/providers/Microsoft.ContainerRegistry/registries/acr1'
    assert sandbox.control('POST', 'arm/resources', json={'id': resource}).status_code == 201
    seed_assignment(sandbox, rg1, 'Contributor', sp['id'])          # at a listed scope, not listed -> removed
    seed_assignment(sandbox, sub, 'Reader', sp['id'])               # inherited from above -> kept
    seed_assignment(sandbox, resource, 'AcrPull', sp['id'])         # below a listed scope -> kept
    seed_assignment(sandbox, rg1, 'Contributor', other['id'])       # another principal -> kept
    args = dict(principal_id=sp['id'], exclusive=True, description='default text', assignments=[
        dict(role='Reader', scope=rg1),
        dict(role=CONTRIBUTOR, scope=rg2, description='own text'),
    ])

    rc, result, n = run(args, check=True, diff=True)
    assert rc == 0, result
    assert result['changed'] is True and n == 0
    assert [r['role_definition_name'] for r in result['removed']] == ['Contributor']
    assert len(assignments_of(sandbox, sp['id'])) == 3

    rc, result, n = run(args)
    assert rc == 0, result
    assert result['changed'] is True and n == 3  # two creates, one delete
    assert [a['action'] for a in result['assignments']] == ['created', 'created']
    assert [a['description'] for a in result['assignments']] == ['default text', 'own text']
    assert [(r['action'], r['scope']) for r in result['removed']] == [('deleted', rg1)]
    assert set(assignments_of(sandbox, sp['id'])) == {
        (rg1.lower(), READER), (rg2.lower(), CONTRIBUTOR), (sub.lower(), READER), (resource.lower(), ACR_PULL)}
    assert set(assignments_of(sandbox, other['id'])) == {(rg1.lower(), CONTRIBUTOR)}

    rc, result, n = run(args)
    assert rc == 0 and result['changed'] is False and n == 0 and result['removed'] == []


def test_equivalent_assignment_under_another_name_is_adopted(run, clean_sandbox):
    sandbox = clean_sandbox
    sp = make_sp(sandbox)
    legacy = str(uuid.uuid4())
    seed_assignment(sandbox, rg_scope(sandbox), 'Reader', sp['id'], name=legacy, description='legacy')
    # same scope written in another case, role by full id: still the same assignment
    scope = rg_scope(sandbox).upper().replace('SUBSCRIPTIONS', 'subscriptions')
    role_id = '/subscriptions/{0}/providers/Microsoft.Authorization/roleDefinitions/{1}'.format(sandbox.subscription_id, READER)
    rc, result, n = run(dict(principal_id=sp['id'], role=role_id, scope=scope))
    assert rc == 0, result
    assert result['changed'] is False and n == 0
    entry = result['assignments'][0]
    assert entry['name'] == legacy and entry['adopted'] is True and entry['description'] == 'legacy'

    rc, result, n = run(dict(principal_id=sp['id'], role=READER, scope=rg_scope(sandbox), description='now managed'))
    assert rc == 0 and result['changed'] is True and n == 1
    state = assignments_of(sandbox, sp['id'])
    assert len(state) == 1
    assert state[(rg_scope(sandbox).lower(), READER)]['name'] == legacy
    assert state[(rg_scope(sandbox).lower(), READER)]['properties']['description'] == 'now managed'

    rc, result, n = run(dict(principal_id=sp['id'], role='reader', scope=rg_scope(sandbox), state='absent'))
    assert rc == 0 and result['changed'] is True and n == 1
    assert assignments_of(sandbox, sp['id']) == {}


def test_app_id_is_resolved_to_its_service_principal(run, clean_sandbox):
    sandbox = clean_sandbox
    sp = make_sp(sandbox)
    args = dict(app_id=sp['appId'].upper(), role='Reader', scope=sub_scope(sandbox))
    rc, result, n = run(args)
    assert rc == 0, result
    assert result['changed'] is True and n == 1 and result['principal_id'] == sp['id']
    assert (sub_scope(sandbox).lower(), READER) in assignments_of(sandbox, sp['id'])
    rc, result, n = run(args)
    assert rc == 0 and result['changed'] is False and n == 0


def test_management_group_and_resource_scopes(run, clean_sandbox):
    sandbox = clean_sandbox
    sp = make_sp(sandbox)
    assert sandbox.control('POST', 'arm/managementGroups', json={'name': 'mg-platform'}).status_code == 201
    mg = '/providers/Microsoft.Management/managementGroups/mg-platform'
    assert sandbox.control('POST', 'arm/roleAssignments', json={
        'scope': mg, 'role': 'Owner', 'principalId': operator_object_id(sandbox)}).status_code == 201
    resource = rg_scope(sandbox) + '/providers/Microsoft.ContainerRegistry/registries/acr1'
    assert sandbox.control('POST', 'arm/resources', json={'id': resource}).status_code == 201
    args = dict(principal_id=sp['id'], assignments=[
        dict(role='Reader', scope=mg.lower()), dict(role='AcrPull', scope=resource + '/')])
    rc, result, n = run(args)
    assert rc == 0, result
    assert n == 2 and [a['scope'] for a in result['assignments']] == [mg, resource]
    assert set(assignments_of(sandbox, sp['id'])) == {(mg.lower(), READER), (resource.lower(), ACR_PULL)}
    rc, result, n = run(args)
    assert rc == 0 and result['changed'] is False and n == 0


@pytest.mark.parametrize('role', ['Owner', 'User Access Administrator', 'Role Based Access Control Administrator', OWNER])
def test_privileged_roles_are_refused_before_any_write(run, clean_sandbox, role):
    sandbox = clean_sandbox
    sp = make_sp(sandbox)
    args = dict(principal_id=sp['id'], assignments=[
        dict(role='Reader', scope=sub_scope(sandbox)), dict(role=role, scope=rg_scope(sandbox))])
    rc, result, n = run(args)
    assert rc == 1 and n == 0
    assert 'assignments[1].role' in result['msg'] and 'allow_privileged' in result['msg']
    assert 'Microsoft.Authorization/roleAssignments/write' in result['msg']
    assert assignments_of(sandbox, sp['id']) == {}
    rc, result, n = run(dict(args, allow_privileged=True))
    assert rc == 0 and n == 2, result
    assert [a['privileged'] for a in result['assignments']] == [False, True]


def make_custom_role(sandbox, name, actions, not_actions=(), scopes=None):
    """A custom role created through the sandbox's ARM (Role Definitions - Create Or Update) as the operator."""
    guid = str(uuid.uuid4())
    scopes = scopes or [sub_scope(sandbox)]
    body = {'properties': {'roleName': name, 'description': 'test role', 'type': 'CustomRole', 'assignableScopes': scopes,
                           'permissions': [{'actions': list(actions), 'notActions': list(not_actions)}]}}
    created = _setup_request(lambda: sandbox.arm('PUT', '{0}/providers/Microsoft.Authorization/roleDefinitions/{1}'
                                                        '?api-version=2022-04-01'.format(scopes[0], guid), json=body))
    assert created['properties']['type'] == 'CustomRole'
    return guid


# custom role -> (actions, notActions, the access-granting action the module must name)
PRIVILEGED_CUSTOM_ROLES = {
    'Authorization Admin': (['Microsoft.Authorization/*', '*/read'], [], 'Microsoft.Authorization/roleAssignments/write'),
    'Writes Everything': (['*/write'], [], 'Microsoft.Authorization/roleAssignments/write'),
    'Does Everything': (['*'], ['Microsoft.Authorization/*/Delete'], 'Microsoft.Authorization/roleAssignments/write'),
    'Assignment Writer': (['Microsoft.Authorization/roleAssignments/write'], [], 'Microsoft.Authorization/roleAssignments/write'),
    'Role Editor': (['Microsoft.Authorization/roleDefinitions/write', '*/read'], [], 'Microsoft.Authorization/roleDefinitions/write'),
    'Elevator': (['Microsoft.Authorization/elevateAccess/Action'], [], 'Microsoft.Authorization/elevateAccess/Action'),
    'Almost Contributor': (['*'], ['Microsoft.Authorization/*/Write'], 'Microsoft.Authorization/elevateAccess/Action'),
}


def test_custom_roles_that_can_grant_access_are_refused(run, clean_sandbox):
    """End to end: custom roles made in the sandbox's ARM, judged by what they grant (any path, notActions honoured)."""
    sandbox = clean_sandbox
    for name, (actions, not_actions, _action) in PRIVILEGED_CUSTOM_ROLES.items():
        make_custom_role(sandbox, name, actions, not_actions)
    harmless = make_custom_role(sandbox, 'Contributor Lookalike', ['*'], [
        'Microsoft.Authorization/*/Delete', 'Microsoft.Authorization/*/Write', 'Microsoft.Authorization/elevateAccess/Action'])
    sp = make_sp(sandbox)
    names = list(PRIVILEGED_CUSTOM_ROLES)
    args = dict(principal_id=sp['id'], assignments=[dict(role='Contributor Lookalike', scope=rg_scope(sandbox))] + [
        dict(role=name, scope=rg_scope(sandbox)) for name in names])
    rc, result, n = run(args)
    assert rc == 1 and n == 0, result
    for index, name in enumerate(names, start=1):
        action = PRIVILEGED_CUSTOM_ROLES[name][2]
        assert "assignments[{0}].role: {1!r}".format(index, name) in result['msg'], (name, result['msg'])
        assert 'which covers {0}'.format(action) in result['msg'].split("assignments[{0}].role".format(index))[1].split(';')[0]
    assert 'assignments[0]' not in result['msg']
    assert assignments_of(sandbox, sp['id']) == {}
    rc, result, n = run(dict(args, allow_privileged=True))
    assert rc == 0 and n == len(names) + 1, result
    assert [a['privileged'] for a in result['assignments']] == [False] + [True] * len(names)
    assert (rg_scope(sandbox).lower(), harmless) in assignments_of(sandbox, sp['id'])


def test_a_deleted_custom_role_cannot_be_assigned(run, clean_sandbox):
    sandbox = clean_sandbox
    guid = make_custom_role(sandbox, 'Short Lived', ['Microsoft.Storage/*/read'])
    path = '{0}/providers/Microsoft.Authorization/roleDefinitions/{1}?api-version=2022-04-01'.format(sub_scope(sandbox), guid)
    assert sandbox.arm('DELETE', path).status_code == 200
    sp = make_sp(sandbox)
    for role in (guid, 'Short Lived'):
        rc, result, n = run(dict(principal_id=sp['id'], role=role, scope=rg_scope(sandbox)))
        assert rc == 1 and n == 0 and 'role:' in result['msg'] and 'no role definition' in result['msg'], result


def test_contributor_is_not_privileged(run, clean_sandbox):
    sp = make_sp(clean_sandbox)
    rc, result, n = run(dict(principal_id=sp['id'], role='Contributor', scope=rg_scope(clean_sandbox)))
    assert rc == 0 and n == 1, result
    assert result['assignments'][0]['privileged'] is False


def test_unknown_principal_fails_fast_with_a_clear_error(run, clean_sandbox):
    ghost = str(uuid.uuid4())
    started = time.monotonic()
    rc, result, n = run(dict(principal_id=ghost, role='Reader', scope=rg_scope(clean_sandbox)))
    elapsed = time.monotonic() - started
    assert rc == 1
    assert elapsed < 10, 'PrincipalNotFound must not be retried as replication lag when principalType was sent'
    assert 'PrincipalNotFound' in result['msg'] and 'principal_id' in result['msg']
    assert 'object id of the service principal' in result['msg']
    assert result['error']['code'] == 'PrincipalNotFound'
    assert n == 1  # the one PUT that found out; nothing was created
    assert assignments_of(clean_sandbox, ghost) == {}


def test_unmatched_principal_type_is_explained(run, clean_sandbox):
    sp = make_sp(clean_sandbox)
    rc, result, n = run(dict(principal_id=sp['id'], principal_type='User', role='Reader', scope=rg_scope(clean_sandbox)))
    assert rc == 1 and 'UnmatchedPrincipalType' in result['msg'] and 'principal_type' in result['msg']
    assert assignments_of(clean_sandbox, sp['id']) == {}


def test_missing_rights_is_explained(run, clean_sandbox):
    sandbox = clean_sandbox
    sp = make_sp(sandbox)
    args = dict(principal_id=sp['id'], role='Reader', scope=rg_scope(sandbox),
                client_id=sandbox.restricted.client_id, client_secret=sandbox.restricted.secret)
    for check in (True, False):  # the preflight finds it before any write, in check mode too
        rc, result, n = run(args, check=check)
        assert rc == 1 and n == 0, result
        assert result['msg'].startswith('scope: the operator (client id {0}'.format(sandbox.restricted.client_id))
        assert 'may not write role assignments at ' + rg_scope(sandbox) in result['msg']
        assert 'Microsoft.Authorization/roleAssignments/write' in result['msg'] and 'Fix: ' in result['msg']
        assert [p['code'] for p in result['problems']] == ['operator_cannot_write']
        assert sandbox.restricted.secret not in json.dumps(result)


GOOD_SP = '11111111-2222-4333-8444-555555555555'

BAD_INPUT = [
    # (case id, args without auth, fragments the message must contain)
    ('scope-garbage', dict(role='Reader', scope='rg-sandbox'), ['scope:', '/subscriptions/{subscriptionId}/resourceGroups/']),
    ('scope-sub-not-guid', dict(role='Reader', scope='/subscriptions/my-sub'), ['scope:', 'not a GUID']),
    ('scope-double-slash', dict(role='Reader', scope='/subscriptions//resourceGroups/x'), ['scope:', 'double slash']),
    ('scope-root', dict(role='Reader', scope='/'), ['scope:', "root scope '/'"]),
    ('scope-rg-keyword', dict(role='Reader', scope='/subscriptions/{sub}/groups/x'), ['scope:', '/resourceGroups/{name}']),
    ('scope-rg-name', dict(role='Reader', scope='/subscriptions/{sub}/resourceGroups/bad.'), ['scope:', 'resource group name']),
    ('scope-resource-incomplete', dict(role='Reader', scope='/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Web/sites'),
     ['scope:', '{namespace}/{type}/{name}']),
    ('scope-mg-extra', dict(role='Reader', scope='/providers/Microsoft.Management/managementGroups/a/b'), ['scope:', 'management group']),
    ('scope-space', dict(role='Reader', scope='/subscriptions/{sub}/resourceGroups/my rg'), ['scope:', 'whitespace']),
    ('role-bad-id', dict(role='/subscriptions/x/providers/Microsoft.Authorization/roleDefinitions/not-a-guid', scope='{rg}'),
     ['role:', 'role definition id']),
    ('role-unknown-name', dict(role='Readr', scope='{rg}'), ['role:', "no role definition named 'Readr'"]),
    ('role-unknown-guid', dict(role='00000000-0000-4000-8000-000000000000', scope='{rg}'), ['role:', 'no role definition with id']),
    ('principal-not-guid', dict(principal_id='my-app', role='Reader', scope='{rg}'), ['principal_id:', 'GUID']),
    ('app-id-not-guid', dict(principal_id=None, app_id='my-app', role='Reader', scope='{rg}'), ['app_id:', 'GUID']),
    ('app-id-user', dict(principal_id=None, app_id=GOOD_SP, principal_type='User', role='Reader', scope='{rg}'), ['principal_type:']),
    ('both-principals', dict(app_id=GOOD_SP, role='Reader', scope='{rg}'), ['mutually exclusive', 'principal_id', 'app_id']),
    ('no-principal', dict(principal_id=None, role='Reader', scope='{rg}'), ['one of the following is required', 'principal_id']),
    ('role-without-scope', dict(role='Reader'), ['scope']),
    ('role-and-assignments', dict(role='Reader', scope='{rg}', assignments=[dict(role='Reader', scope='{rg}')]),
     ['mutually exclusive', 'assignments']),
    ('item-missing-scope', dict(assignments=[dict(role='Reader')]), ['scope', 'assignments']),
    ('item-bad-scope', dict(assignments=[dict(role='Reader', scope='{rg}'), dict(role='Reader', scope='/subscriptions/x')]),
     ['assignments[1].scope:']),
    ('duplicate', dict(assignments=[dict(role='Reader', scope='{rg}'), dict(role='reader', scope='{rg_upper}')]),
     ['assignments[1].role:', 'assignments[0].role']),
    ('duplicate-after-resolution', dict(assignments=[dict(role='Reader', scope='{rg}'), dict(role=READER, scope='{rg}')]),
     ['assignments[1].role:', 'already requested']),
    ('exclusive-absent', dict(role='Reader', scope='{rg}', exclusive=True, state='absent'), ['exclusive:']),
    ('privileged', dict(role='Owner', scope='{rg}'), ['role:', 'allow_privileged']),
    ('bad-state', dict(role='Reader', scope='{rg}', state='gone'), ['state']),
]


def _fill(value, sandbox):
    if isinstance(value, str):
        return value.format(sub=sandbox.subscription_id, rg=rg_scope(sandbox), rg_upper=rg_scope(sandbox).upper(),
                            subscriptionId='{subscriptionId}', name='{name}', namespace='{namespace}', type='{type}')
    if isinstance(value, list):
        return [_fill(v, sandbox) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, sandbox) for k, v in value.items()}
    return value


@pytest.mark.parametrize('case, args, fragments', BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_fails_clearly_before_any_write(run, clean_sandbox, case, args, fragments):
    full = dict(principal_id=GOOD_SP)
    full.update(_fill(args, clean_sandbox))
    full = {k: v for k, v in full.items() if v is not None}
    rc, result, n = run(full)
    assert rc == 1, result
    for fragment in fragments:
        assert fragment in result['msg'], (case, result['msg'])
    assert n == 0, 'no write may happen on bad input'
    assert 'Traceback' not in json.dumps(result)
    assert_no_secret(clean_sandbox, result)


def test_converges_under_replication_lag_and_throttling(run, clean_sandbox):
    sandbox = clean_sandbox
    add_resource_group(sandbox, 'rg-two')
    sandbox.faults(seed=11, replication_lag=4.0, rules=[
        {'service': 'arm', 'kind': 'throttle', 'rate': 0.1, 'retry_after': 1},
        {'service': 'graph', 'kind': 'throttle', 'rate': 0.1, 'retry_after': 1}])
    # both still replicating: ARM accepts `fresh` only because principalType is sent, and the Graph lookup of
    # `by_app` by appId answers 404 until it is visible (retried as replication lag)
    fresh, by_app = make_sps(sandbox, 2)
    lagging = sandbox.arm('GET', '/subscriptions/{0}{1}?api-version=2022-04-01&$filter=principalId eq \'{2}\''.format(
        sandbox.subscription_id, RA_PATH, fresh['id']))
    probe = sandbox.arm('PUT', '{0}{1}/{2}?api-version=2022-04-01'.format(rg_scope(sandbox), RA_PATH, uuid.uuid4()), json={
        'properties': {'roleDefinitionId': '/providers/Microsoft.Authorization/roleDefinitions/' + READER,
                       'principalId': fresh['id']}})
    assert lagging.status_code in (200, 429)
    assert probe.status_code in (400, 429) and 'PrincipalNotFound' in probe.text or probe.status_code == 429, \
        'the principal must still be replicating (a PUT without principalType fails)'
    args = dict(principal_id=fresh['id'], exclusive=True, assignments=[
        dict(role='Reader', scope=rg_scope(sandbox)), dict(role='Contributor', scope=rg_scope(sandbox, 'rg-two'))])
    rc, result, n = run(args)
    assert rc == 0, result
    assert result['changed'] is True
    assert set(assignments_of(sandbox, fresh['id'])) == {
        (rg_scope(sandbox).lower(), READER), (rg_scope(sandbox, 'rg-two').lower(), CONTRIBUTOR)}
    rc, result, n = run(dict(app_id=by_app['appId'], role='Reader', scope=sub_scope(sandbox), description='lagging'))
    assert rc == 0, result
    lookups = sandbox.control('GET', 'stats').json()['by_route']["GET /v1.0/servicePrincipals(appId='{appId}')"]
    assert lookups >= 2, 'the first lookup should have met the replication lag (404) and been retried'
    assert result['principal_id'] == by_app['id']
    assert (sub_scope(sandbox).lower(), READER) in assignments_of(sandbox, by_app['id'])
    rc, result, n = run(args)
    assert rc == 0 and result['changed'] is False and n == 0, result
    faults = sandbox.control('GET', 'faults').json()
    assert sum(rule.get('fired', 0) for rule in faults['rules']) > 0, 'the 10 % throttling never fired'
    assert_no_secret(sandbox, result)


def test_unknown_app_id_fails_after_the_replication_wait_without_writing(run, clean_sandbox):
    started = time.monotonic()
    rc, result, n = run(dict(app_id=str(uuid.uuid4()), role='Reader', scope=rg_scope(clean_sandbox), replication_timeout=2))
    assert rc == 1 and n == 0
    assert time.monotonic() - started < 15
    assert result['msg'].startswith('app_id: no service principal exists for application (client) id')
    assert 'replication_timeout' in result['msg'] and 'principal_id' in result['msg']


def test_check_mode_with_an_app_whose_service_principal_does_not_exist_yet_predicts_at_once(run, clean_sandbox):
    """In check mode an earlier task only *would* create the service principal: predict, do not wait or fail."""
    started = time.monotonic()
    app_id = str(uuid.uuid4())
    rc, result, n = run(dict(app_id=app_id, role='Reader', scope=rg_scope(clean_sandbox), replication_timeout=30), check=True)
    assert rc == 0 and n == 0
    assert time.monotonic() - started < 10, 'check mode must not wait for replication'
    assert result['changed'] is True
    assert result['principal_id'] is None
    assert [a['action'] for a in result['assignments']] == ['created']
    warnings = json.dumps(result.get('warnings'))  # ansible-core >= 2.19 returns warning summaries, not strings
    assert app_id in warnings and 'check mode' in warnings
    rc, result, n = run(dict(app_id=app_id, role='Reader', scope=rg_scope(clean_sandbox), state='absent',
                             replication_timeout=30), check=True)
    assert rc == 0 and n == 0 and result['changed'] is False


# --- the preflight: bad role inputs fail with the field and the fix, and the sandbox is left byte for byte as it was ---

OTHER_TENANT_CUSTOM_ROLE = 'c0ffee00-1234-4abc-8def-0123456789ab'  # a custom role GUID that exists in another tenant only

PREFLIGHT_CASES = [
    # (case id, module args (principal added), field the message starts with, fragments, problem code)
    ('unknown-role-name', dict(role='Storage Blob Data Raeder', scope='{rg}'), 'role',
     ["no role definition named 'Storage Blob Data Raeder' is available at scope {rg}", 'Fix: use the exact role name'],
     'role_not_found'),
    ('other-tenant-custom-role', dict(role='/subscriptions/{other_sub}/providers/Microsoft.Authorization/roleDefinitions/'
                                           + OTHER_TENANT_CUSTOM_ROLE, scope='{rg}'), 'role',
     ['no role definition with id {0} exists at scope {{rg}}'.format(OTHER_TENANT_CUSTOM_ROLE), 'RoleDefinitionDoesNotExist',
      'Fix: use the name or GUID of a role that exists in this tenant'], 'role_not_found'),
    ('missing-subscription', dict(role='Reader', scope='/subscriptions/{other_sub}/resourceGroups/rg-app'), 'scope',
     ['subscription {other_sub} does not exist', 'Fix: correct the subscription id'], 'subscription_not_found'),
    ('missing-resource-group', dict(role='Reader', scope='/subscriptions/{sub}/resourceGroups/rg-typo'), 'scope',
     ["resource group 'rg-typo' does not exist in subscription {sub}", 'Fix: create it first (az group create --name rg-typo'],
     'resource_group_not_found'),
    ('missing-resource', dict(role='AcrPull', scope='{rg}/providers/Microsoft.ContainerRegistry/registries/acrmissing'), 'scope',
     ["resource 'Microsoft.ContainerRegistry/registries/acrmissing' does not exist in resource group 'rg-sandbox'",
      'Fix: create the resource first'], 'resource_not_found'),
    ('operator-without-rights', dict(role='Reader', scope='{rg}', restricted=True), 'scope',
     ['the operator (client id {restricted}', 'may not write role assignments at {rg}',
      'it needs Owner, User Access Administrator or Role Based Access Control Administrator there',
      'Fix: assign one of these roles to the operator'], 'operator_cannot_write'),
    ('owner-without-allow', dict(role='Owner', scope='{rg}'), 'role',
     ["'Owner' at {rg} can grant access to others (its actions include '*', which covers "
      'Microsoft.Authorization/roleAssignments/write); privileged roles are refused',
      'Fix: assign a narrower role, or set allow_privileged: true'], 'privileged_role'),
]


@pytest.mark.parametrize('check', [True, False], ids=['check-mode', 'apply'])
@pytest.mark.parametrize('case, args, field, fragments, code', PREFLIGHT_CASES, ids=[c[0] for c in PREFLIGHT_CASES])
def test_bad_role_inputs_fail_with_field_and_fix_and_change_nothing(run, clean_sandbox, case, args, field, fragments,
                                                                    code, check):
    sandbox = clean_sandbox
    sp = make_sp(sandbox)
    values = dict(sub=sandbox.subscription_id, rg=rg_scope(sandbox), other_sub=str(uuid.UUID(int=0x5e1f)),
                  restricted=sandbox.restricted.client_id)
    args = {k: v.format(**values) if isinstance(v, str) else v for k, v in args.items()}
    good_scope = sub_scope(sandbox)
    if args.pop('restricted', False):
        # the restricted operator (Reader on the subscription) may grant access in one resource group only
        add_resource_group(sandbox, 'rg-delegated')
        good_scope = rg_scope(sandbox, 'rg-delegated')
        state = sandbox.control('GET', 'state').json()
        restricted_oid = next(o['object_id'] for o in state['operators'] if o['client_id'] == sandbox.restricted.client_id)
        seed_assignment(sandbox, good_scope, 'Role Based Access Control Administrator', restricted_oid)
        args.update(client_id=sandbox.restricted.client_id, client_secret=sandbox.restricted.secret)
    for index, entry_args in enumerate((dict(args, principal_id=sp['id']),
                                        dict(principal_id=sp['id'], assignments=[
                                            dict(role='Reader', scope=good_scope),
                                            dict(role=args['role'], scope=args['scope'])], **{
                                                k: v for k, v in args.items() if k not in ('role', 'scope')}))):
        before = sandbox.control('GET', 'state').content
        rc, result, n = run(entry_args, check=check)
        assert rc == 1, result
        prefix = field if index == 0 else 'assignments[1].' + field
        assert result['msg'].startswith(prefix + ': '), (case, result['msg'])
        for fragment in fragments:
            assert fragment.format(**values) in result['msg'], (case, result['msg'])
        assert [(p['field'], p['code']) for p in result['problems']] == [(prefix, code)]
        assert n == 0
        assert sandbox.control('GET', 'state').content == before, 'the sandbox state changed on bad input'
        assert 'Traceback' not in json.dumps(result)
        assert_no_secret(sandbox, result)
