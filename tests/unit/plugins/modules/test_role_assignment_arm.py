# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ARM core of role_assignment (``plugins/module_utils/_arm.py``): pure rules (scopes, roles, deterministic
names, the privileged-role decision, custom roles included) and the async planner/applier against the sandbox
(many principals with one role-definition cache, a create racing an equivalent assignment, conditions kept)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils import _arm
from ansible_collections.oidc_federation.azure.plugins.module_utils._auth import resolve_auth
from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import Clients
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import ValidationError
from ansible_collections.oidc_federation.azure.tests.unit.conftest import SANDBOX_AVAILABLE
from ansible_collections.oidc_federation.azure.tests.unit.plugins.modules.test_role_assignment import (
    READER, CONTRIBUTOR, assignments_of, make_sps, rg_scope, reset_stats, seed_assignment, sub_scope, writes)

SUB = '6b2e6c1f-8f5b-4d20-ae3f-40b17c9dae21'
needs_sandbox = pytest.mark.skipif(not SANDBOX_AVAILABLE, reason='the sandbox is not in this checkout')


# --- scopes ------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('text, kind, canonical', [
    ('/subscriptions/' + SUB, 'subscription', '/subscriptions/' + SUB),
    ('/SUBSCRIPTIONS/' + SUB.upper() + '/', 'subscription', '/subscriptions/' + SUB),
    ('subscriptions/{0}/resourcegroups/RG-Web'.format(SUB), 'resource_group', '/subscriptions/{0}/resourceGroups/RG-Web'.format(SUB)),
    ('/subscriptions/{0}/resourceGroups/rg_(x).1'.format(SUB), 'resource_group', '/subscriptions/{0}/resourceGroups/rg_(x).1'.format(SUB)),
    ('/subscriptions/{0}/resourceGroups/rg/PROVIDERS/Microsoft.Storage/storageAccounts/st1'.format(SUB), 'resource',
     '/subscriptions/{0}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1'.format(SUB)),
    ('/subscriptions/{0}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1/blobServices/default/containers/c'.format(SUB),
     'resource', '/subscriptions/{0}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st1/blobServices/default/containers/c'.format(SUB)),
    ('/subscriptions/{0}/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.Insights/diagnosticSettings/d'.format(SUB),
     'resource', '/subscriptions/{0}/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.Insights/diagnosticSettings/d'.format(SUB)),
    ('/providers/microsoft.management/MANAGEMENTGROUPS/Platform', 'management_group',
     '/providers/Microsoft.Management/managementGroups/Platform'),
])
def test_scopes_are_validated_and_canonicalised(text, kind, canonical):
    scope = _arm.parse_scope(text)
    assert (scope.kind, scope.id) == (kind, canonical)
    assert scope.key == canonical.lower()


@pytest.mark.parametrize('text, problem', [
    (None, 'a scope is required'),
    ('', 'a scope is required'),
    ('/', "root scope '/'"),
    ('rg-web', 'starts with /subscriptions/'),
    ('/subscriptions', 'subscription id is missing'),
    ('/subscriptions/not-a-guid', 'not a GUID'),
    ('/subscriptions/{0}/resourceGroups'.format(SUB), '/resourceGroups/{name}'),
    ('/subscriptions/{0}/locations/westeurope'.format(SUB), '/resourceGroups/{name}'),
    ('/subscriptions/{0}/resourceGroups/{1}'.format(SUB, 'x' * 91), 'resource group name'),
    ('/subscriptions/{0}/resourceGroups/rg/providers/Microsoft.Web'.format(SUB), '{namespace}/{type}/{name}'),
    ('/subscriptions/{0}/resourceGroups/rg/providers/web/sites/a'.format(SUB), 'namespace'),
    ('/subscriptions/{0}/resourceGroups/rg/providers/Microsoft.Web/sites/a/slots'.format(SUB), 'has no name'),
    ('/subscriptions/{0}/resourceGroups/rg/sites/a'.format(SUB), '/providers/{namespace}'),
    ('/providers/Microsoft.Management/managementGroups', 'management group scope'),
    ('/providers/Microsoft.Authorization/roleDefinitions/x', 'management group scope'),
    ('/providers/Microsoft.Management/managementGroups/mg?x=1', 'not allowed'),
    ('/subscriptions/{0}//resourceGroups/rg'.format(SUB), 'double slash'),
])
def test_bad_scopes_name_the_field_and_the_formats(text, problem):
    with pytest.raises(ValidationError) as info:
        _arm.parse_scope(text, 'assignments[3].scope')
    message = str(info.value)
    assert message.startswith('assignments[3].scope: ') and problem in message
    for fmt in _arm.SCOPE_FORMATS:
        assert fmt in message


# --- roles -------------------------------------------------------------------------------------------------------------------

def test_roles_by_name_guid_and_id():
    assert _arm.parse_role(' Storage Blob Data Reader ').name == 'Storage Blob Data Reader'
    assert _arm.parse_role(READER.upper()).guid == READER
    for prefix in ('', '/subscriptions/' + SUB, '/providers/Microsoft.Management/managementGroups/mg'):
        ref = _arm.parse_role(prefix + '/providers/microsoft.authorization/roleDefinitions/' + READER)
        assert ref.guid == READER and ref.name is None
    for bad in ('', '  ', None, '/providers/Microsoft.Authorization/roleDefinitions/xyz', 'a/b', 'x' * 513):
        with pytest.raises(ValidationError) as info:
            _arm.parse_role(bad, 'role')
        assert str(info.value).startswith('role: ')


def test_deterministic_names_ignore_case_and_depend_on_every_part():
    scope = _arm.parse_scope('/subscriptions/{0}/resourceGroups/RG'.format(SUB))
    same = _arm.parse_scope('/subscriptions/{0}/resourcegroups/rg'.format(SUB.upper()))
    principal = '11111111-2222-4333-8444-555555555555'
    name = _arm.assignment_name(scope, principal, READER)
    assert uuid.UUID(name).version == 5
    assert name == _arm.assignment_name(same, principal.upper(), READER.upper())
    assert name == str(uuid.uuid5(_arm.ASSIGNMENT_NAMESPACE, '{0}|{1}|{2}'.format(scope.key, principal, READER)))
    assert name != _arm.assignment_name(scope, principal, CONTRIBUTOR)
    assert name != _arm.assignment_name(_arm.parse_scope('/subscriptions/' + SUB), principal, READER)
    assert name != _arm.assignment_name(scope, '11111111-2222-4333-8444-555555555556', READER)


# --- the privileged-role decision ----------------------------------------------------------------------------------------------

def block(actions, not_actions=()):
    return {'actions': list(actions), 'notActions': list(not_actions), 'dataActions': [], 'notDataActions': []}


@pytest.mark.parametrize('permissions, expected', [
    ([block(['*'])], '*'),                                                                          # Owner
    ([block(['*'], ['Microsoft.Authorization/*/Delete', 'Microsoft.Authorization/*/Write'])], '*'),   # elevateAccess left
    ([block(['*/read'])], None),                                                                    # Reader
    ([block(['*/read', 'Microsoft.Authorization/*', 'Microsoft.Support/*'])], 'Microsoft.Authorization/*'),  # UAA
    ([block(['Microsoft.Authorization/roleAssignments/write', '*/read'])], 'Microsoft.Authorization/roleAssignments/write'),
    ([block(['microsoft.authorization/ROLEASSIGNMENTS/*'])], 'microsoft.authorization/ROLEASSIGNMENTS/*'),   # custom, case
    ([block(['*/write'])], '*/write'),                                                              # custom, broad
    ([block(['Microsoft.Authorization/*'], ['Microsoft.Authorization/roleAssignments/*'])],
     'Microsoft.Authorization/*'),                                                                  # roleDefinitions/write left
    ([block(['Microsoft.Authorization/*'], ['Microsoft.Authorization/*/write', 'Microsoft.Authorization/elevateAccess/*'])],
     None),                                                                                         # excluded again
    ([block(['*'], ['*'])], None),
    ([block(['Microsoft.Authorization/roleAssignments/read', 'Microsoft.Authorization/roleAssignments/delete'])], None),
    ([block(['Microsoft.Authorization/roleDefinitions/write'])],
     'Microsoft.Authorization/roleDefinitions/write'),                                              # can widen its own role
    ([block(['Microsoft.Authorization/roleDefinitions/*'])], 'Microsoft.Authorization/roleDefinitions/*'),
    ([block(['Microsoft.Authorization/elevateAccess/Action'])], 'Microsoft.Authorization/elevateAccess/Action'),
    ([block(['microsoft.authorization/ELEVATEACCESS/action'])], 'microsoft.authorization/ELEVATEACCESS/action'),
    ([block(['Microsoft.Authorization/roleAssignmentScheduleRequests/write'])],
     'Microsoft.Authorization/roleAssignmentScheduleRequests/write'),                               # PIM
    ([block(['Microsoft.Authorization/roleEligibilityScheduleRequests/*'])],
     'Microsoft.Authorization/roleEligibilityScheduleRequests/*'),
    ([block(['*'], ['Microsoft.Authorization/*/Delete', 'Microsoft.Authorization/*/Write',
                    'Microsoft.Authorization/elevateAccess/Action'])], None),                      # Contributor, in full
    ([block(['*'], ['Microsoft.Authorization/*/Write'])], '*'),                                     # elevateAccess remains
    ([block(['*/write'], ['Microsoft.Authorization/roleAssignments/write'])], '*/write'),          # roleDefinitions/write remains
    ([block(['Microsoft.Authorization/*/read', 'Microsoft.Authorization/roleDefinitions/read'])], None),
    ([block(['Microsoft.Authorization/roleDefinitions/write'], ['Microsoft.Authorization/roleDefinitions/*'])], None),
    ([block([], []), block(['Microsoft.Authorization/*'])], 'Microsoft.Authorization/*'),            # blocks add up
    ([block(['*'], ['Microsoft.Authorization/*']), block(['Microsoft.Authorization/roleAssignments/write'])],
     'Microsoft.Authorization/roleAssignments/write'),                                              # notActions are per block
    ([block(['Microsoft.Storage/*'])], None),
    ([], None),
    (None, None),
])
def test_privileged_means_actions_minus_not_actions_cover_an_access_granting_action(permissions, expected):
    assert _arm.access_granting_action(permissions) == expected
    definition = _arm.RoleDefinition('id', READER, 'Custom', 'CustomRole', tuple(permissions or ()))
    assert definition.privileged is (expected is not None)


def test_check_privileged_lists_every_offender_with_its_field():
    scope = _arm.parse_scope('/subscriptions/' + SUB)
    desired = [_arm.DesiredAssignment(scope, _arm.parse_role('Reader'), field='assignments[0]'),
               _arm.DesiredAssignment(scope, _arm.parse_role('Deployer'), field='assignments[1]')]
    definitions = [_arm.RoleDefinition('r', READER, 'Reader', 'BuiltInRole', (block(['*/read']),)),
                   _arm.RoleDefinition('d', CONTRIBUTOR, 'Deployer', 'CustomRole', (block(['Microsoft.Authorization/*/write']),))]
    with pytest.raises(ValidationError) as info:
        _arm.check_privileged(desired, definitions, allow_privileged=False)
    assert 'assignments[1].role' in str(info.value) and "'Deployer'" in str(info.value)
    assert 'assignments[0]' not in str(info.value)
    _arm.check_privileged(desired, definitions, allow_privileged=True)


def test_check_privileged_names_the_action_the_role_grants():
    scope = _arm.parse_scope('/subscriptions/' + SUB)
    desired = [_arm.DesiredAssignment(scope, _arm.parse_role('Role Editor'), field='role')]
    editor = _arm.RoleDefinition('e', CONTRIBUTOR, 'Role Editor', 'CustomRole',
                                 (block(['Microsoft.Authorization/roleDefinitions/*', '*/read']),))
    with pytest.raises(ValidationError) as info:
        _arm.check_privileged(desired, [editor], allow_privileged=False)
    assert ("'Role Editor' at /subscriptions/{0} can grant access to others (its actions include "
            "'Microsoft.Authorization/roleDefinitions/*', which covers Microsoft.Authorization/roleDefinitions/write)"
            .format(SUB)) in str(info.value)
    assert editor.granting_permission == ('Microsoft.Authorization/roleDefinitions/*',
                                          'Microsoft.Authorization/roleDefinitions/write')
    assert _arm.access_granting_action(editor.permissions, _arm.GRANT_ACCESS_ACTION) is None


def test_scope_matching_of_listed_assignments():
    scope = _arm.parse_scope('/subscriptions/{0}/resourceGroups/RG'.format(SUB))
    principal = '11111111-2222-4333-8444-555555555555'
    item = {'id': '/subscriptions/{0}/resourcegroups/rg/providers/Microsoft.Authorization/roleAssignments/x'.format(SUB),
            'properties': {'principalId': principal.upper(), 'scope': '/subscriptions/{0}/resourcegroups/rg/'.format(SUB.upper()),
                           'roleDefinitionId': '/providers/Microsoft.Authorization/roleDefinitions/' + READER.upper()}}
    assert _arm.same_assignment(item, scope, principal, READER)
    assert not _arm.same_assignment(item, _arm.parse_scope('/subscriptions/' + SUB), principal, READER)
    assert not _arm.same_assignment(item, scope, principal, CONTRIBUTOR)
    del item['properties']['scope']  # derived from the id when missing
    assert _arm.same_assignment(item, scope, principal, READER)


# --- against the sandbox ------------------------------------------------------------------------------------------------------------

def clients_for(sandbox):
    params = {'auth_source': 'client_secret', 'tenant_id': sandbox.tenant_id, 'client_id': sandbox.operator.client_id,
              'client_secret': sandbox.operator.secret, 'authority_host': sandbox.url, 'graph_endpoint': sandbox.url,
              'resource_manager_endpoint': sandbox.url, 'ca_bundle': sandbox.ca_file, 'replication_timeout': 20}
    return Clients(resolve_auth(params, environ={}))


def desired(scope_text, role, description=None, index=None):
    return _arm.DesiredAssignment(_arm.parse_scope(scope_text), _arm.parse_role(role), description,
                                  field='' if index is None else 'assignments[{0}]'.format(index))


def definition_reads(sandbox):
    routes = sandbox.control('GET', 'stats').json()['by_route']
    return sum(count for route, count in routes.items() if 'roleDefinitions' in route)


@needs_sandbox
def test_many_principals_share_one_role_definition_cache(clean_sandbox):
    sandbox = clean_sandbox
    sps = make_sps(sandbox, 5)
    wanted = (desired(rg_scope(sandbox), 'Reader', 'team', 0), desired(sub_scope(sandbox), 'reader', None, 1),
              desired(rg_scope(sandbox), CONTRIBUTOR, None, 2))
    requests = [_arm.PrincipalRequest(sp['id'], wanted) for sp in sps]

    async def go(check_mode):
        async with clients_for(sandbox) as clients:
            return await _arm.reconcile_principals(clients, requests, check_mode=check_mode, limit=4)

    reset_stats(sandbox)
    plans = asyncio.run(go(True))
    assert writes(sandbox) == 0 and all(p.changed for p in plans)
    # Reader by name at two scopes, Contributor by GUID at one, and the operator's own role (Owner) at the
    # subscription for the preflight: four lookups for five principals
    assert definition_reads(sandbox) == 4
    # the preflight checks each scope once for all five principals: the resource group's permissions once
    routes = sandbox.control('GET', 'stats').json()['by_route']
    assert sum(count for route, count in routes.items() if route.endswith('/permissions')) == 1, routes
    reset_stats(sandbox)
    plans = asyncio.run(go(False))
    assert writes(sandbox) == 15
    for sp in sps:
        assert set(assignments_of(sandbox, sp['id'])) == {
            (rg_scope(sandbox).lower(), READER), (sub_scope(sandbox).lower(), READER), (rg_scope(sandbox).lower(), CONTRIBUTOR)}
    reset_stats(sandbox)
    plans = asyncio.run(go(False))
    assert writes(sandbox) == 0 and not any(p.changed for p in plans)


@needs_sandbox
def test_one_invalid_principal_request_stops_every_write(clean_sandbox):
    sandbox = clean_sandbox
    good, bad = make_sps(sandbox, 2)
    requests = [_arm.PrincipalRequest(good['id'], (desired(rg_scope(sandbox), 'Reader'),)),
                _arm.PrincipalRequest(bad['id'], (desired(rg_scope(sandbox), 'Owner'),))]

    async def go():
        async with clients_for(sandbox) as clients:
            return await _arm.reconcile_principals(clients, requests)

    reset_stats(sandbox)
    with pytest.raises(ValidationError) as info:
        asyncio.run(go())
    assert 'allow_privileged' in str(info.value)
    assert writes(sandbox) == 0
    assert assignments_of(sandbox, good['id']) == {}


@needs_sandbox
def test_create_racing_an_equivalent_assignment_adopts_it(clean_sandbox):
    sandbox = clean_sandbox
    sp = make_sps(sandbox, 1)[0]
    racer = str(uuid.uuid4())

    async def go():
        async with clients_for(sandbox) as clients:
            plan = await _arm.plan_principal_assignments(clients, sp['id'], [desired(rg_scope(sandbox), 'Reader', 'mine')])
            assert [c.action for c in plan.changes] == ['create']
            seed_assignment(sandbox, rg_scope(sandbox), 'Reader', sp['id'], name=racer)  # appears after the listing
            await _arm.apply_principal_plan(clients, plan)
            return plan

    plan = asyncio.run(go())
    change = plan.changes[0]
    assert change.action == 'update' and change.name == racer and change.adopted
    state = assignments_of(sandbox, sp['id'])
    assert len(state) == 1
    assert state[(rg_scope(sandbox).lower(), READER)]['name'] == racer
    assert state[(rg_scope(sandbox).lower(), READER)]['properties']['description'] == 'mine'


@needs_sandbox
def test_description_update_keeps_the_condition(clean_sandbox):
    sandbox = clean_sandbox
    sp = make_sps(sandbox, 1)[0]
    condition = "((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'})))"
    name = str(uuid.uuid4())
    put = sandbox.arm('PUT', '{0}/providers/Microsoft.Authorization/roleAssignments/{1}?api-version=2022-04-01'.format(
        rg_scope(sandbox), name), json={'properties': {
            'roleDefinitionId': '/providers/Microsoft.Authorization/roleDefinitions/' + READER, 'principalId': sp['id'],
            'principalType': 'ServicePrincipal', 'condition': condition, 'conditionVersion': '2.0', 'description': 'old'}})
    assert put.status_code == 201, put.text

    async def go():
        async with clients_for(sandbox) as clients:
            plan = await _arm.plan_principal_assignments(clients, sp['id'], [desired(rg_scope(sandbox), 'Reader', 'new')])
            await _arm.apply_principal_plan(clients, plan)
            return plan

    plan = asyncio.run(go())
    assert plan.changes[0].action == 'update'
    props = assignments_of(sandbox, sp['id'])[(rg_scope(sandbox).lower(), READER)]['properties']
    assert props['description'] == 'new' and props['condition'] == condition and props['conditionVersion'] == '2.0'
    assert _arm.change_result(plan.changes[0])['condition'] == condition
