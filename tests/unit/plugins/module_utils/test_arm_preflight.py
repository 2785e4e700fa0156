# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ARM preflight (``_arm.preflight_scopes``, ``check_assignments``) against the live sandbox: does every scope
exist (management group, subscription, resource group, resource), may the operator write role assignments there,
how many requests it takes (each scope once per run), and every problem named with its field and fix.

The operator's rights always come from the sandbox's own role assignments and definitions: the full operator holds
Owner on the subscription, the restricted one Reader; tests add roles through the control API."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils import _arm
from ansible_collections.oidc_federation.azure.plugins.module_utils._auth import resolve_auth
from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import Clients
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import ValidationError
from ansible_collections.oidc_federation.azure.tests.unit.conftest import SANDBOX_AVAILABLE

pytestmark = pytest.mark.skipif(not SANDBOX_AVAILABLE, reason='the sandbox is not in this checkout')

READER = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
MG = '/providers/Microsoft.Management/managementGroups/'


def clients_for(sb, restricted=False):
    who = sb.restricted if restricted else sb.operator
    params = {'auth_source': 'client_secret', 'tenant_id': sb.tenant_id, 'client_id': who.client_id,
              'client_secret': who.secret, 'authority_host': sb.url, 'graph_endpoint': sb.url,
              'resource_manager_endpoint': sb.url, 'ca_bundle': sb.ca_file, 'replication_timeout': 10}
    return Clients(resolve_auth(params, environ={}))


def object_id_of(sb, client_id):
    state = sb.control('GET', 'state').json()
    return next(op['object_id'] for op in state['operators'] if op['client_id'] == client_id)


def grant(sb, scope, role, principal_id):
    response = sb.control('POST', 'arm/roleAssignments', json={'scope': scope, 'role': role, 'principalId': principal_id})
    assert response.status_code == 201, response.text


def sub(sb):
    return '/subscriptions/' + sb.subscription_id


def rg(sb, name='rg-sandbox'):
    return '{0}/resourceGroups/{1}'.format(sub(sb), name)


def arm_requests(sb):
    stats = sb.control('GET', 'stats').json()
    return sum(count for route, count in stats['by_route'].items()
               if route.split(' ', 1)[1].startswith(('/subscriptions', '/providers')))


def preflight(sb, scopes, restricted=False):
    async def go():
        async with clients_for(sb, restricted) as clients:
            return await _arm.preflight_scopes(clients, scopes)
    return asyncio.run(go())


def by_scope(checks, scope):
    return checks[_arm.parse_scope(scope).key]


def test_every_scope_kind_exists_or_is_named_with_its_fix(clean_sandbox):
    sb = clean_sandbox
    acr = rg(sb) + '/providers/Microsoft.ContainerRegistry/registries/acr1'
    for resource in (acr, acr + '/replications/westus'):
        assert sb.control('POST', 'arm/resources', json={'id': resource}).status_code == 201
    assert sb.control('POST', 'arm/managementGroups', json={'name': 'mg-owned'}).status_code == 201
    assert sb.control('POST', 'arm/managementGroups', json={'name': 'mg-foreign'}).status_code == 201
    grant(sb, MG + 'mg-owned', 'Owner', object_id_of(sb, sb.operator.client_id))
    ghost_sub = '/subscriptions/' + str(uuid.uuid4())
    scopes = {
        'sub': (sub(sb), True, None),
        'rg': (rg(sb), True, None),
        'resource': (acr, True, None),
        'child resource': (acr + '/replications/westus', True, None),
        'missing child resource': (acr + '/replications/eastus', False, 'resource_not_found'),
        'mg owned': (MG + 'mg-owned', True, None),
        'missing sub': (ghost_sub, False, 'subscription_not_found'),
        'rg in missing sub': (ghost_sub + '/resourceGroups/rg-x', False, 'subscription_not_found'),
        'missing rg': (rg(sb, 'rg-missing'), False, 'resource_group_not_found'),
        'resource in missing rg': (rg(sb, 'rg-missing') + '/providers/Microsoft.Storage/storageAccounts/st1', False,
                                   'resource_group_not_found'),
        'missing resource': (rg(sb) + '/providers/Microsoft.Storage/storageAccounts/stmissing', False, 'resource_not_found'),
        'resource of another type': (rg(sb) + '/providers/Microsoft.Storage/storageAccounts/acr1', False, 'resource_not_found'),
        'mg without a role': (MG + 'mg-foreign', None, 'management_group_not_found_or_denied'),
        'missing mg': (MG + 'mg-nowhere', None, 'management_group_not_found_or_denied'),
    }
    checks = preflight(sb, [s for s, _e, _c in scopes.values()])
    for label, (scope, exists, code) in scopes.items():
        check = by_scope(checks, scope)
        assert check.exists is exists, label
        problems = check.problems('assignments[3].scope')
        assert [p.code for p in problems] == ([code] if code else []), label
        for problem in problems:
            text = str(problem)
            assert text.startswith('assignments[3].scope: ') and '. Fix: ' in text, text
            assert problem.scope == _arm.parse_scope(scope).id
    text = str(by_scope(checks, rg(sb, 'rg-missing')).problems('scope')[0])
    assert "resource group 'rg-missing' does not exist in subscription {0}".format(sb.subscription_id) in text
    assert 'az group create --name rg-missing' in text
    assert 'Microsoft.Storage/storageAccounts/stmissing' in str(by_scope(checks, scopes['missing resource'][0]).problems('s')[0])
    assert "management group 'mg-foreign' does not exist, or the operator (client id {0}".format(
        sb.operator.client_id) in str(by_scope(checks, MG + 'mg-foreign').problems('s')[0])
    for label in ('sub', 'rg', 'resource', 'mg owned'):
        assert by_scope(checks, scopes[label][0]).allows() is True, label
        assert by_scope(checks, scopes[label][0]).allows(_arm.REVOKE_ACCESS_ACTION) is True, label
    assert by_scope(checks, rg(sb)).source == 'permissions api'
    assert by_scope(checks, sub(sb)).source == 'role assignments'


def test_a_reader_operator_may_not_write_anywhere_and_is_told_which_roles_it_needs(clean_sandbox):
    sb = clean_sandbox
    checks = preflight(sb, [sub(sb), rg(sb)], restricted=True)
    oid = object_id_of(sb, sb.restricted.client_id)
    for scope in (sub(sb), rg(sb)):
        check = by_scope(checks, scope)
        assert check.exists is True and check.allows() is False
        [problem] = check.problems('scope')
        assert problem.code == 'operator_cannot_write'
        assert str(problem).startswith('scope: the operator (client id {0}, object id {1}) may not write role assignments '
                                       'at {2}: it needs Owner, User Access Administrator or Role Based Access Control '
                                       'Administrator there'.format(sb.restricted.client_id, oid, scope))
        assert 'Microsoft.Authorization/roleAssignments/write' in str(problem)


@pytest.mark.parametrize('role', ['User Access Administrator', 'Role Based Access Control Administrator', 'Owner'])
def test_an_access_admin_role_at_a_resource_group_is_enough_there_and_only_there(clean_sandbox, role):
    sb = clean_sandbox
    grant(sb, rg(sb), role, object_id_of(sb, sb.restricted.client_id))
    checks = preflight(sb, [sub(sb), rg(sb), rg(sb) + '/providers/Microsoft.Storage/storageAccounts/st1'], restricted=True)
    assert by_scope(checks, rg(sb)).allows() is True and by_scope(checks, rg(sb)).problems('scope') == []
    assert by_scope(checks, sub(sb)).allows() is False
    assert [p.code for p in by_scope(checks, rg(sb) + '/providers/Microsoft.Storage/storageAccounts/st1').problems('s')] == [
        'resource_not_found']


def test_an_operator_without_any_role_at_a_subscription_cannot_even_read_it(clean_sandbox):
    sb = clean_sandbox
    other = str(uuid.uuid4())
    assert sb.control('POST', 'arm/subscriptions', json={'subscriptionId': other}).status_code == 201
    check = by_scope(preflight(sb, ['/subscriptions/' + other]), '/subscriptions/' + other)
    assert check.exists is None and check.allows() is False
    [problem] = check.problems('scope')
    assert problem.code == 'operator_cannot_write' and 'even read role assignments' in problem.message


def test_each_scope_is_checked_once_per_run(clean_sandbox):
    sb = clean_sandbox
    scopes = [sub(sb), rg(sb), rg(sb, 'rg-missing')]

    async def go():
        async with clients_for(sb) as clients:
            await _arm.preflight_scopes(clients, scopes)
            first = arm_requests(sb)
            again = await asyncio.gather(*[_arm.preflight_scopes(clients, scopes + [s.upper()]) for s in scopes])
            return first, arm_requests(sb), again

    sb.control('POST', 'stats/reset')
    first, after, again = asyncio.run(go())
    # subscription: role assignments + the Owner definition; each resource group: GET + permissions
    assert first == 6, sb.control('GET', 'stats').json()['by_route']
    assert after == first, 'a second check of the same scopes (any case) must not ask ARM again'
    assert all(set(a) == set(again[0]) for a in again)


def desired(scope, role, index):
    return _arm.DesiredAssignment(_arm.parse_scope(scope), _arm.parse_role(role), field='assignments[{0}]'.format(index))


def test_check_assignments_collects_every_problem_before_any_write(clean_sandbox):
    sb = clean_sandbox
    entries = [desired(rg(sb), 'Reader', 0), desired(rg(sb), 'Readr', 1), desired(rg(sb, 'rg-missing'), 'Reader', 2),
               desired(rg(sb, 'rg-missing'), 'Contributor', 3), desired(sub(sb), 'Owner', 4),
               desired(sub(sb), str(uuid.uuid4()), 5)]

    async def go(state):
        async with clients_for(sb) as clients:
            return await _arm.check_assignments(clients, entries, state=state)

    sb.control('POST', 'stats/reset')
    check = asyncio.run(go('present'))
    assert sb.control('GET', 'stats').json()['writes'] == 0
    assert [(p.field, p.code) for p in check.problems] == [
        ('assignments[2].scope', 'resource_group_not_found'),   # once, for the first entry using the scope
        ('assignments[1].role', 'role_not_found'),
        ('assignments[5].role', 'role_not_found'),
        ('assignments[4].role', 'privileged_role')]
    assert check.definitions[0].guid == READER and check.definitions[2] is None and check.definitions[3] is None
    with pytest.raises(_arm.PreflightError) as info:
        check.raise_for_problems()
    assert isinstance(info.value, ValidationError)
    message = str(info.value)
    assert message.startswith('4 problems found before any write: (1) assignments[2].scope: ')
    assert "no role definition named 'Readr'" in message and 'allow_privileged: true' in message
    assert message.count('Fix: ') == 4
    assert [p['code'] for p in info.value.extra['problems']] == [p.code for p in check.problems]
    # state=absent: a scope that does not exist has nothing to remove, and privileged roles may be removed
    absent = asyncio.run(go('absent'))
    assert [(p.field, p.code) for p in absent.problems] == [('assignments[1].role', 'role_not_found'),
                                                            ('assignments[5].role', 'role_not_found')]


def test_absent_at_a_missing_scope_plans_nothing_and_deleting_needs_the_right(clean_sandbox):
    sb = clean_sandbox
    response = sb.graph('POST', '/v1.0/applications', json={'displayName': 'preflight-' + uuid.uuid4().hex[:6]})
    assert response.status_code == 201, response.text
    sp = sb.graph('POST', '/v1.0/servicePrincipals', json={'appId': response.json()['appId']})
    assert sp.status_code == 201, sp.text
    principal = sp.json()['id']
    grant(sb, rg(sb), 'Reader', principal)

    async def plan(entries, restricted=False):
        async with clients_for(sb, restricted) as clients:
            return await _arm.plan_principal_assignments(clients, principal, entries, state='absent')

    result = asyncio.run(plan([desired(rg(sb, 'rg-gone'), 'Reader', 0), desired(rg(sb), 'Reader', 1)]))
    assert [c.action for c in result.changes] == ['absent', 'delete']
    with pytest.raises(_arm.PreflightError) as info:
        asyncio.run(plan([desired(rg(sb), 'Reader', 0)], restricted=True))
    [problem] = info.value.problems
    assert problem.field == 'assignments[0].scope' and problem.code == 'operator_cannot_delete'
    assert 'may not delete role assignments at ' + rg(sb) in str(problem)


def custom_role(sb, name, actions, not_actions=(), scopes=None):
    """A custom role made through the sandbox's ARM (Role Definitions - Create Or Update) by the operator."""
    guid = str(uuid.uuid4())
    scopes = scopes or [sub(sb)]
    response = sb.arm('PUT', '{0}/providers/Microsoft.Authorization/roleDefinitions/{1}?api-version=2022-04-01'.format(
        scopes[0], guid), json={'properties': {
            'roleName': name, 'type': 'CustomRole', 'assignableScopes': scopes,
            'permissions': [{'actions': list(actions), 'notActions': list(not_actions)}]}})
    assert response.status_code == 201, response.text
    return guid


def test_custom_roles_of_the_operator_count_by_what_they_grant(clean_sandbox):
    sb = clean_sandbox
    restricted = object_id_of(sb, sb.restricted.client_id)
    delegate = custom_role(sb, 'Access Delegate', ['Microsoft.Authorization/roleAssignments/*', '*/read'], scopes=[rg(sb)])
    lookalike = custom_role(sb, 'Contributor Lookalike', ['*'], ['Microsoft.Authorization/*/Write'])
    grant(sb, rg(sb), delegate, restricted)
    grant(sb, sub(sb), lookalike, restricted)
    checks = preflight(sb, [sub(sb), rg(sb)], restricted=True)
    assert by_scope(checks, rg(sb)).allows() is True                  # through the custom role at the group
    assert by_scope(checks, sub(sb)).allows() is False                # '*' minus Microsoft.Authorization/*/Write
    assert by_scope(checks, sub(sb)).allows(_arm.REVOKE_ACCESS_ACTION) is True  # ... which leaves /delete


def test_a_custom_role_resolves_only_where_it_is_assignable(clean_sandbox):
    sb = clean_sandbox
    assert sb.arm('PUT', rg(sb, 'rg-two') + '?api-version=2021-04-01', json={'location': 'westeurope'}).status_code == 201
    guid = custom_role(sb, 'Deployer Two', ['Microsoft.Web/sites/*'], scopes=[rg(sb, 'rg-two')])

    async def go():
        async with clients_for(sb) as clients:
            return await _arm.check_assignments(clients, [desired(rg(sb, 'rg-two'), 'Deployer Two', 0),
                                                          desired(rg(sb), 'Deployer Two', 1),
                                                          desired(rg(sb), guid, 2)])

    check = asyncio.run(go())
    assert check.definitions[0].guid == guid and check.definitions[0].role_type == 'CustomRole'
    assert [(p.field, p.code) for p in check.problems] == [('assignments[1].role', 'role_not_found'),
                                                           ('assignments[2].role', 'role_not_found')]
    assert 'RoleDefinitionDoesNotExist' in str(check.problems[1])
