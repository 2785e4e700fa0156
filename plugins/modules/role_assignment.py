#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: role_assignment
short_description: Grant or revoke Azure roles for a service principal at management group, subscription, resource group or resource scope
version_added: 0.1.0
description:
  - Makes sure a principal (typically the service principal of a GitLab CI/CD app registration) holds, or does not
    hold, Azure RBAC roles at the given scopes, through Azure Resource Manager.
  - The principal is given by its object id (O(principal_id)) or by the application (client) id of an app
    registration (O(app_id)), which is resolved to the app's service principal through Microsoft Graph.
  - Roles are given by name (V(Reader)), by role definition GUID, or by full role definition id, and are looked up
    at the assignment scope (custom roles included), once per scope and run.
  - New assignments get a deterministic name, a UUID version 5 of the scope (lower case), the principal id and the
    role definition GUID, so a re-run addresses the same assignment. An equivalent assignment that already exists
    under another name (same principal, role and scope, compared case-insensitively) is adopted, never duplicated.
  - C(principalType) is always sent, so a service principal created moments ago (not yet replicated to Azure
    Resource Manager) can be assigned a role at once. Because Azure Resource Manager accepts a replicating principal
    when C(principalType) is set, a C(PrincipalNotFound) answer means the principal does not exist; the module then
    fails at once instead of waiting O(replication_timeout), naming the option to check.
  - Roles that can grant access are refused unless O(allow_privileged=true). A role is privileged when, in one of its
    permission blocks, its C(actions) minus C(notActions) (wildcards C(*) included, case-insensitive) cover any way to
    grant access - C(Microsoft.Authorization/roleAssignments/write) (assign roles),
    C(Microsoft.Authorization/roleDefinitions/write) (widen a custom role its holder already has),
    C(Microsoft.Authorization/elevateAccess/Action) (elevate to User Access Administrator at the root scope), or the
    Privileged Identity Management requests C(Microsoft.Authorization/roleAssignmentScheduleRequests/write) and
    C(Microsoft.Authorization/roleEligibilityScheduleRequests/write). So Owner, User Access Administrator, Role Based
    Access Control Administrator and custom roles with C(*), C(*/write), C(Microsoft.Authorization/*) or any of those
    actions are privileged; Contributor (C(*) minus C(Microsoft.Authorization/*/Write) and
    C(Microsoft.Authorization/elevateAccess/Action)) and Reader are not. Custom roles are checked by what they grant,
    not by their name. The check runs before anything is written.
  - Everything is validated before the first write, and in check mode too. Beyond the format of every scope and
    role, the duplicates and the privileged-role guard, the module checks against Azure that every scope exists (the
    management group, subscription, resource group or resource), that the identity running the module may write role
    assignments there, and that every role resolves to a role definition (built-in or custom) at its scope. Every
    problem found is reported at once, each naming the option (for example V(assignments[1].scope)) and the fix; the
    failed result also lists them in C(problems) (C(field), C(message), C(fix), C(code), C(scope)).
  - The rights are read from Azure's permissions list of the caller at a resource group or resource, and at a
    subscription or management group (where Azure documents no such list) from the caller's own role assignments
    there (group memberships included) and their role definitions. Deny assignments and role assignment conditions
    are not evaluated; if one of them refuses the write, the task fails with Azure's C(AuthorizationFailed) and a hint.
  - With O(state=absent), a scope that does not exist has nothing to remove (V(absent)), and the right to delete role
    assignments is checked only where something is to be deleted.
author:
  - oidc_federation.azure contributors (@oidc-federation)
extends_documentation_fragment:
  - oidc_federation.azure.auth
  - oidc_federation.azure.attributes
  - oidc_federation.azure.attributes.changes
  - oidc_federation.azure.attributes.action_group
options:
  principal_id:
    description:
      - Object id of the principal to assign roles to. For an app registration this is the object id of its service
        principal (enterprise application), not the application (client) id and not the app registration's object id.
      - Exactly one of O(principal_id) and O(app_id) is required.
    type: str
  app_id:
    description:
      - Application (client) id of an app registration; the role is assigned to its service principal.
      - Resolving it reads Microsoft Graph (C(GET /servicePrincipals(appId='...'))), which needs the Graph
        application permission C(Application.Read.All) or C(Directory.Read.All).
      - A service principal that is not found is looked up again until O(replication_timeout) expires, because a
        service principal created moments ago may not be readable yet. For a principal created in the same play,
        pass its object id as O(principal_id) instead, which needs no lookup.
      - Requires O(principal_type=ServicePrincipal).
    type: str
  principal_type:
    description:
      - The type of the principal, sent to Azure Resource Manager as C(principalType) with every new assignment.
      - Azure Resource Manager refuses a type that contradicts the directory (C(UnmatchedPrincipalType)).
    type: str
    default: ServicePrincipal
    choices: [ServicePrincipal, User, Group, ForeignGroup, Device]
  role:
    description:
      - The role to assign at O(scope), by name (for example V(Reader) or V(Storage Blob Data Contributor)), by role
        definition GUID, or by role definition id
        (C(/subscriptions/{subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/{GUID}), compared by its GUID).
      - Names are matched exactly (case-insensitively) among the role definitions available at O(scope).
      - Required together with O(scope); mutually exclusive with O(assignments).
    type: str
  scope:
    description:
      - Where the role applies. One of
        C(/providers/Microsoft.Management/managementGroups/{managementGroupId}),
        C(/subscriptions/{subscriptionId}),
        C(/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}) or
        C(/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/{namespace}/{type}/{name}).
      - Keywords are case-insensitive and rewritten in Azure's casing; a trailing slash is ignored. The root scope
        C(/) is not supported.
      - Required together with O(role); mutually exclusive with O(assignments).
    type: str
  description:
    description:
      - Description of the assignment(s). With O(assignments), the default for items without their own.
      - When set, an existing assignment with another description is updated in place (Azure allows changing only
        the description of an assignment). When not set, existing descriptions are left alone.
      - Ignored with O(state=absent).
    type: str
  assignments:
    description:
      - Several assignments for the same principal, instead of O(role) and O(scope).
      - Each (scope, role) pair may appear once.
      - An empty list does nothing (with O(exclusive=true) it removes nothing either, as it lists no scope).
    type: list
    elements: dict
    suboptions:
      role:
        description:
          - Role name, role definition GUID or role definition id, as for the top-level O(role).
        type: str
        required: true
      scope:
        description:
          - Scope, in the formats of the top-level O(scope).
        type: str
        required: true
      description:
        description:
          - Description of this assignment; overrides the top-level O(description).
        type: str
  exclusive:
    description:
      - With O(state=present), also remove this principal's role assignments AT the listed scopes whose role is not
        listed for that scope.
      - Never touches assignments of other principals, assignments inherited from a scope above a listed one (for
        example a subscription assignment when a resource group is listed), or assignments below a listed scope.
      - Removals happen after the new assignments are in place.
      - Not allowed with O(state=absent).
    type: bool
    default: false
  allow_privileged:
    description:
      - Allow roles that can grant access (see the description above; role assignment or role definition writes,
        elevate access, Privileged Identity Management requests). Without it such a role fails the task before
        anything is written, naming the role and the action it grants.
    type: bool
    default: false
  state:
    description:
      - V(present) assigns the roles; V(absent) removes this principal's assignments of exactly these roles at
        exactly these scopes (under any assignment name), and nothing else.
    type: str
    default: present
    choices: [present, absent]
notes:
  - Needs C(Microsoft.Authorization/roleAssignments/write) (and C(/delete) for removals) at the scope, for example
    through Owner, User Access Administrator or Role Based Access Control Administrator, and
    C(Microsoft.Authorization/roleDefinitions/read) and C(Microsoft.Authorization/roleAssignments/read) there. The
    checks before writing also read the resource group (C(Microsoft.Resources/subscriptions/resourceGroups/read)) or
    list its resources; all three roles include these reads.
  - Role assignment conditions (ABAC) are not managed. An adopted assignment keeps its condition, which is sent back
    unchanged when its description is updated, and is shown in RV(assignments[].condition).
  - Azure takes a few minutes to apply a new role assignment everywhere; a CI job that starts right after may still
    be refused for a short time.
seealso:
  - name: Assign Azure roles using the REST API
    description: How Azure Resource Manager creates role assignments, including principalType.
    link: https://learn.microsoft.com/azure/role-based-access-control/role-assignments-rest
  - name: Azure built-in roles
    description: Names, GUIDs and permissions of the built-in roles.
    link: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
'''

EXAMPLES = r'''
- name: Let the GitLab deploy identity read one resource group
  oidc_federation.azure.role_assignment:
    app_id: "{{ gitlab_app_client_id }}"
    role: Reader
    scope: "/subscriptions/{{ subscription_id }}/resourceGroups/rg-web"
    description: GitLab CI/CD group/web deploys (managed by Ansible)

- name: Several roles, shared auth options through the action group
  module_defaults:
    group/oidc_federation.azure.azure:
      tenant_id: "{{ azure_tenant_id }}"
      client_id: "{{ azure_client_id }}"
      client_secret: "{{ azure_client_secret }}"
  block:
    - name: Exactly these roles at these scopes for the deploy service principal
      oidc_federation.azure.role_assignment:
        principal_id: "{{ deploy_sp_object_id }}"
        assignments:
          - role: Contributor
            scope: "/subscriptions/{{ subscription_id }}/resourceGroups/rg-web"
          - role: Storage Blob Data Contributor
            scope: "/subscriptions/{{ subscription_id }}/resourceGroups/rg-web/providers/Microsoft.Storage/storageAccounts/stweb"
            description: artifact uploads
        exclusive: true   # remove its other roles at exactly these two scopes

    - name: A role by GUID at a management group
      oidc_federation.azure.role_assignment:
        principal_id: "{{ deploy_sp_object_id }}"
        role: acdd72a7-3385-48ef-bd42-f606fba81ae7   # Reader
        scope: /providers/Microsoft.Management/managementGroups/platform

- name: A custom role is judged by what it grants, not by its name (this one only reads and restarts VMs)
  oidc_federation.azure.role_assignment:
    principal_id: "{{ deploy_sp_object_id }}"
    role: Virtual Machine Operator
    scope: "/subscriptions/{{ subscription_id }}/resourceGroups/rg-vms"

- name: A pipeline that manages access itself must be allowed explicitly
  oidc_federation.azure.role_assignment:
    principal_id: "{{ platform_sp_object_id }}"
    role: Role Based Access Control Administrator
    scope: "/subscriptions/{{ subscription_id }}/resourceGroups/rg-shared"
    allow_privileged: true

- name: Let the Entra ID group of the on-call engineers read the resource group
  oidc_federation.azure.role_assignment:
    principal_id: "{{ oncall_group_object_id }}"
    principal_type: Group
    role: Reader
    scope: "/subscriptions/{{ subscription_id }}/resourceGroups/rg-web"

- name: Revoke a role
  oidc_federation.azure.role_assignment:
    app_id: "{{ gitlab_app_client_id }}"
    role: Reader
    scope: "/subscriptions/{{ subscription_id }}/resourceGroups/rg-web"
    state: absent
'''

RETURN = r'''
principal_id:
  description: Object id of the principal (resolved from O(app_id) when that was given).
  returned: always
  type: str
  sample: 3f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b
principal_type:
  description: The principal type sent with new assignments.
  returned: always
  type: str
  sample: ServicePrincipal
assignments:
  description:
    - One entry per requested (scope, role), in the order given.
    - In check mode, what the module would do; new assignments show their future id and name.
  returned: always
  type: list
  elements: dict
  contains:
    action:
      description:
        - V(created), V(updated) (description), V(unchanged), V(deleted) or V(absent) (nothing to delete).
      type: str
      sample: created
    id:
      description: Full id of the assignment; null when V(absent).
      type: str
      sample: "/subscriptions/6b2e6c1f-8f5b-4d20-ae3f-40b17c9dae21/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/\
        0b5c3c1e-4d1a-5e7f-9a2b-3c4d5e6f7a8b"
    name:
      description: Name (GUID) of the assignment; null when V(absent).
      type: str
      sample: 0b5c3c1e-4d1a-5e7f-9a2b-3c4d5e6f7a8b
    scope:
      description: Scope of the assignment.
      type: str
      sample: /subscriptions/6b2e6c1f-8f5b-4d20-ae3f-40b17c9dae21/resourceGroups/rg-web
    role_definition_id:
      description: Role definition id as Azure Resource Manager writes it.
      type: str
      sample: /subscriptions/6b2e6c1f-8f5b-4d20-ae3f-40b17c9dae21/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7
    role_definition_name:
      description: Role name.
      type: str
      sample: Reader
    principal_id:
      description: Object id of the principal; null when V(absent).
      type: str
      sample: 3f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b
    principal_type:
      description: Principal type stored on the assignment; null when V(absent).
      type: str
      sample: ServicePrincipal
    description:
      description: Description of the assignment.
      type: str
      sample: GitLab CI/CD group/web deploys (managed by Ansible)
    condition:
      description: ABAC condition of an adopted assignment (never set by this module).
      type: str
      sample: null
    adopted:
      description: True when the assignment existed under a name other than the deterministic one and was adopted.
      type: bool
      sample: false
    privileged:
      description: True when the role can grant access (role assignment or role definition writes, elevate access, Privileged Identity Management requests).
      type: bool
      sample: false
removed:
  description:
    - Assignments removed by O(exclusive=true) (or that would be, in check mode), with the fields of RV(assignments);
      their C(action) is V(deleted), and C(role_definition_name) is null when the role could not be read.
  returned: always
  type: list
  elements: dict
  sample: []
diff:
  description:
    - In diff mode, this principal's assignments at the listed scopes before and after
      (C(scope), C(role), C(role_definition_guid), C(name), C(description)), sorted.
  returned: when diff mode is on
  type: dict
  contains:
    before:
      description: Before the run.
      type: dict
    after:
      description: After the run (predicted in check mode).
      type: dict
'''

from ansible_collections.oidc_federation.azure.plugins.module_utils._arm import (
    DEFAULT_PRINCIPAL_TYPE,
    PRINCIPAL_TYPES,
    DesiredAssignment,
    apply_principal_plan,
    change_result,
    parse_guid,
    parse_role,
    parse_scope,
    plan_principal_assignments,
    service_principal_id_for_app,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import ValidationError
from ansible_collections.oidc_federation.azure.plugins.module_utils._module import ArgumentSpec, AzureModule


def argument_spec() -> ArgumentSpec:
    """The module's options and their constraints (the shared auth options are added by ``AzureModule``)."""
    return ArgumentSpec(
        dict(
            principal_id=dict(type='str'),
            app_id=dict(type='str'),
            principal_type=dict(type='str', default=DEFAULT_PRINCIPAL_TYPE, choices=list(PRINCIPAL_TYPES)),
            role=dict(type='str'),
            scope=dict(type='str'),
            description=dict(type='str'),
            assignments=dict(type='list', elements='dict', options=dict(
                role=dict(type='str', required=True),
                scope=dict(type='str', required=True),
                description=dict(type='str'),
            )),
            exclusive=dict(type='bool', default=False),
            allow_privileged=dict(type='bool', default=False),
            state=dict(type='str', default='present', choices=['present', 'absent']),
        ),
        mutually_exclusive=[('principal_id', 'app_id'), ('role', 'assignments'), ('scope', 'assignments')],
        required_one_of=[('principal_id', 'app_id'), ('role', 'assignments')],
        required_together=[('role', 'scope')],
        checks=[check_params],
    )


def desired_from_params(params: dict) -> list:
    """The requested assignments as ``DesiredAssignment``s; ``ValidationError`` naming the option (no I/O)."""
    if params.get('assignments') is None:
        return [DesiredAssignment(parse_scope(params['scope'], 'scope'), parse_role(params['role'], 'role'),
                                  params.get('description'))]
    desired = []
    for index, item in enumerate(params['assignments']):
        label = 'assignments[{0}]'.format(index)
        description = item.get('description')
        desired.append(DesiredAssignment(parse_scope(item['scope'], label + '.scope'), parse_role(item['role'], label + '.role'),
                                         params.get('description') if description is None else description, field=label))
    return desired


def check_params(params: dict) -> None:
    """Checks Ansible cannot express, before any SDK import or request."""
    if params.get('principal_id') is not None:
        parse_guid(params['principal_id'], 'principal_id')
    if params.get('app_id') is not None:
        parse_guid(params['app_id'], 'app_id')
        if params['principal_type'] != 'ServicePrincipal':
            raise ValidationError('principal_type: app_id always names a service principal; remove principal_type or set it to '
                                  'ServicePrincipal (got {0!r})'.format(params['principal_type']))
    if params.get('exclusive') and params.get('state') == 'absent':
        raise ValidationError('exclusive: only applies to state=present (state=absent removes exactly the listed assignments)')
    desired_from_params(params)


# Stand-in principal for check-mode predictions when app_id has no service principal yet (it holds no assignment).
NO_PRINCIPAL = '00000000-0000-0000-0000-000000000000'


async def core(module: AzureModule, clients) -> dict:
    """Resolve the principal, plan (reads only), apply unless in check mode, report."""
    params = module.params
    desired = desired_from_params(params)
    if params.get('app_id'):
        principal_field = 'app_id'
        app_id = parse_guid(params['app_id'], 'app_id')
        principal_id = await service_principal_id_for_app(clients, app_id, wait=not module.check_mode)
        if principal_id is None:
            # Check mode only: the service principal does not exist (yet): an earlier task in check mode would
            # create it. Nothing can be assigned to it already, so plan against a principal that holds nothing.
            module.warn('check mode: application {0} has no service principal yet (an earlier task would create it); '
                        'the assignments are predicted for a principal that holds none'.format(app_id))
            principal_id = NO_PRINCIPAL
    else:
        principal_field = 'principal_id'
        principal_id = parse_guid(params['principal_id'], 'principal_id')
    plan = await plan_principal_assignments(
        clients, principal_id, desired, principal_type=params['principal_type'], state=params['state'],
        exclusive=params['exclusive'], allow_privileged=params['allow_privileged'])
    if not module.check_mode:
        await apply_principal_plan(clients, plan, principal_field=principal_field)
    return module.result(
        plan.changed,
        diff=({'assignments': plan.before()}, {'assignments': plan.after()}),
        principal_id=None if principal_id == NO_PRINCIPAL else principal_id,
        principal_type=plan.principal_type,
        assignments=[change_result(c) for c in plan.changes],
        removed=[change_result(c) for c in plan.removals],
    )


def main() -> None:
    """Module entry point."""
    module = AzureModule(argument_spec(), supports_check_mode=True)
    module.run(core)


if __name__ == '__main__':
    main()
