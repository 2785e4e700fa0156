#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: azure_ad_app
short_description: Create, update or delete a Microsoft Entra ID app registration and its service principal
version_added: 0.1.0
description:
  - Creates or updates an app registration (Microsoft Graph C(application)) and its service principal in one task,
    or deletes both.
  - >-
    The application is found by O(unique_name), which is stored in the application's C(uniqueName) property (an
    alternate key that cannot change once set). Creation is an upsert by that key
    (C(PATCH /applications(uniqueName='...')) with C(Prefer: create-if-missing)), so a retried task or a lost
    response never creates a second application. The service principal is created the same way, by C(appId).
  - The module reads first, compares field by field (tags and owners as sets) and writes only the fields that differ.
    Running it again makes no request that changes anything.
  - An application created by hand (for example with C(az ad app create --display-name gitlab-oidc)) has no
    C(uniqueName). With O(adopt_by_display_name=true) the module adopts it when exactly one application without a
    C(uniqueName) has the display name, and sets O(unique_name) on it; it refuses when several do.
  - Applications the module creates carry the tag C(oidc_federation.azure:managed). O(state=absent) deletes only
    applications carrying it, unless O(force_delete=true).
  - Right after a creation, Microsoft Entra ID may take a while to replicate the new objects. Errors caused by that
    delay are retried for up to O(replication_timeout) seconds. Immediately after a creation, a second run may still
    report a change because the new application cannot be read yet; it changes nothing.
author:
  - oidc_federation.azure contributors (@oidc-federation)
options:
  unique_name:
    description:
      - The stable key of the application, stored in its C(uniqueName) property. It cannot be changed once set.
      - Letters, digits, C(.), C(_), C(-) and C(~), starting with a letter or digit, at most 256 characters.
        Compared regardless of case.
      - Exactly one of O(unique_name), O(gitlab_project_path) and O(gitlab_project_id) is required.
    type: str
  gitlab_project_path:
    description:
      - Derive O(unique_name) from the full path of the GitLab project the application is for, for example
        C(mygroup/sub/my-project) gives C(gitlab-oidc-mygroup~sub~my-project).
      - The derivation is collision-free - C(/) becomes C(~), which GitLab paths never contain, so C(a/b-c) and
        C(a-b/c) give different names. A name longer than 256 characters is cut and ends with C(~-) and 32 hexadecimal
        digits of a SHA-256 hash. The filter P(oidc_federation.azure.gitlab_app_unique_name#filter) computes the same
        name in a play (for reports, or to look the application up).
      - The name follows the path, so after a rename or transfer of the project a new application is created; use
        O(gitlab_project_id) for a name that survives them.
      - Mutually exclusive with O(unique_name) and O(gitlab_project_id). RV(unique_name) returns the derived name.
    type: str
  gitlab_project_id:
    description:
      - Derive O(unique_name) from the numeric ID of the GitLab project, for example C(57382910) gives
        C(gitlab-oidc-id-57382910) (names derived from IDs never collide with names derived from paths).
      - Mutually exclusive with O(unique_name) and O(gitlab_project_path).
    type: str
  display_name:
    description:
      - The display name of the application (and of its service principal). At most 256 characters.
      - Defaults to the unique name when the application is created. When not set, an existing display name is kept.
    type: str
  description:
    description:
      - The description of the application. At most 1024 characters.
      - When not set, the current description is kept. An empty string removes it.
    type: str
  notes:
    description:
      - Notes about the management of the application.
      - When not set, the current notes are kept. An empty string removes them.
    type: str
  tags:
    description:
      - Tags of the application, compared as a set.
      - With O(purge_tags=false), tags missing from the application are added and other tags are kept.
        With O(purge_tags=true), the application ends up with exactly these tags plus the tag
        C(oidc_federation.azure:managed) when it already carries it.
      - When not set, the tags are left as they are.
      - The tag C(oidc_federation.azure:managed) is added when the module creates the application and marks it as
        managed by this collection (see O(state)). Never removed by a purge; list it here to mark an adopted
        application as managed.
      - Graph copies the tags of an application to its service principal only when the service principal is created.
    type: list
    elements: str
  purge_tags:
    description:
      - Remove tags not listed in O(tags) (except C(oidc_federation.azure:managed)).
      - Has no effect when O(tags) is not set.
    type: bool
    default: false
  sign_in_audience:
    description:
      - Which accounts may sign in to the application. Always managed, because Graph's own default is not the same
        in every case.
    type: str
    default: AzureADMyOrg
    choices: [AzureADMyOrg, AzureADMultipleOrgs, AzureADandPersonalMicrosoftAccount, PersonalMicrosoftAccount]
  service_management_reference:
    description:
      - A reference to application or service contact information in a service or asset management database
        (C(serviceManagementReference)).
      - When not set, the current value is kept. An empty string removes it.
    type: str
  owners:
    description:
      - Object ids of users or service principals that own the application (not app ids), compared as a set.
      - Missing owners are added. Other owners are removed only with O(purge_owners=true).
      - Every owner to add must exist; the module checks that before it writes anything.
      - When not set, the owners are left as they are.
    type: list
    elements: str
  purge_owners:
    description:
      - Remove owners not listed in O(owners). Has no effect when O(owners) is not set.
    type: bool
    default: false
  service_principal:
    description:
      - Create the service principal of the application when it has none. A GitLab CI job logs in as the service
        principal, so it is needed for federation and role assignments.
      - V(false) neither creates nor deletes a service principal; an existing one is still reported in RV(service_principal_id).
    type: bool
    default: true
  adopt_by_display_name:
    description:
      - When no application has O(unique_name), adopt an existing application instead of creating one, namely the only
        application whose display name is O(display_name) (or O(unique_name) when O(display_name) is not set) and that
        has no C(uniqueName). The module sets O(unique_name) on it and then manages it like any other.
      - Fails, before writing anything, when several such applications exist.
      - An adopted application is not marked as managed (see O(tags) to mark it).
      - With V(false), the module warns when it creates an application while others without C(uniqueName) have the
        same display name.
    type: bool
    default: false
  force_delete:
    description:
      - With O(state=absent), also delete an application that does not carry the tag C(oidc_federation.azure:managed)
        (one created by hand and adopted, for example). Without it such an application is left alone and the task fails.
    type: bool
    default: false
  purge:
    description:
      - With O(state=absent), after deleting the service principal and the application, also remove both for good from
        Microsoft Entra ID's deleted items (C(DELETE /directory/deletedItems/{id})), and any application with the same
        O(unique_name) still in deleted items from an earlier deletion (deleted without O(purge), for example), with
        its service principal.
      - B(This cannot be undone.) A purged application cannot be restored; its application (client) id is gone for
        good, so anything that still refers to it (CI/CD variables, role assignments, Key Vault access policies)
        must be set up again with a new application. Without O(purge), a deleted application can be restored for
        30 days.
      - After a purge nothing in the directory holds the unique name, the identifier URIs or the credentials of the
        application any more (whether Microsoft Entra ID keeps them reserved while the application sits in deleted
        items is not documented), and the objects stop counting against the directory's object quota.
      - Only ever purges applications carrying the tag C(oidc_federation.azure:managed), and their service principals.
        An application without it fails the task before anything is written, also with O(force_delete=true).
      - A just-deleted object can take a moment to appear in deleted items; that delay is retried for up to
        O(replication_timeout) seconds. Running the task again when nothing is left is V(changed=false).
      - Needs the Microsoft Graph application permission C(Application.ReadWrite.All) (or
        C(Application.ReadWrite.OwnedBy) for applications the identity owns); C(Application.Read.All) suffices for
        check mode.
    type: bool
    default: false
  state:
    description:
      - V(present) creates or updates the application and its service principal.
      - V(absent) deletes the service principal and the application. Both are soft-deleted and can be restored from
        the deleted items for 30 days, unless O(purge=true). Only applications carrying the tag
        C(oidc_federation.azure:managed) are deleted, unless O(force_delete=true).
    type: str
    default: present
    choices: [present, absent]
extends_documentation_fragment:
  - oidc_federation.azure.auth
  - oidc_federation.azure.attributes
  - oidc_federation.azure.attributes.changes
  - oidc_federation.azure.attributes.action_group
notes:
  - The identity running the module needs the Microsoft Graph application permission C(Application.ReadWrite.All),
    or C(Application.ReadWrite.OwnedBy) for applications it owns. With C(Directory.Read.All) as well, owners to add
    are checked to exist before anything is written; without it Graph rejects an unknown owner when it is added.
  - The module only reads and writes the properties listed here; everything else on the application (redirect
    URIs, API permissions, federated identity credentials, ...) is left alone.
seealso:
  - module: oidc_federation.azure.azure_ad_app_info
  - name: Upsert application (Microsoft Graph)
    description: Create or update an application by its uniqueName.
    link: https://learn.microsoft.com/graph/api/application-upsert
'''

EXAMPLES = r'''
- name: App registrations for GitLab CI, with the shared connection settings
  module_defaults:
    group/oidc_federation.azure.azure:
      tenant_id: "{{ azure_tenant_id }}"
      client_id: "{{ azure_client_id }}"
      client_secret: "{{ azure_client_secret }}"
  block:
    - name: Create the application and its service principal
      oidc_federation.azure.azure_ad_app:
        unique_name: gitlab-oidc-mygroup~myproject
        display_name: GitLab CI mygroup/myproject
        description: Deploys mygroup/myproject from GitLab CI
        tags: [team-platform]
        service_management_reference: CMDB-4711
      register: app

    - name: Show the ids the CI job needs
      ansible.builtin.debug:
        msg: "AZURE_CLIENT_ID={{ app.app_id }} AZURE_TENANT_ID={{ app.tenant_id }}"

    - name: Adopt the application made by hand with "az ad app create --display-name gitlab-oidc"
      oidc_federation.azure.azure_ad_app:
        unique_name: gitlab-oidc
        display_name: gitlab-oidc
        adopt_by_display_name: true

    - name: Exactly these owners and tags
      oidc_federation.azure.azure_ad_app:
        unique_name: gitlab-oidc-mygroup~myproject
        owners:
          - 6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f
        purge_owners: true
        tags: [team-platform, prod]
        purge_tags: true

    - name: Name the application after its GitLab project (unique_name gitlab-oidc-mygroup~sub~my-project)
      oidc_federation.azure.azure_ad_app:
        gitlab_project_path: mygroup/sub/my-project
        display_name: GitLab CI mygroup/sub/my-project
      register: project_app

    - name: The same name, computed without the module (for example for a report)
      ansible.builtin.assert:
        that:
          - project_app.unique_name == 'mygroup/sub/my-project' | oidc_federation.azure.gitlab_app_unique_name

    - name: Name the application after the GitLab project id, so it survives renames (gitlab-oidc-id-57382910)
      oidc_federation.azure.azure_ad_app:
        gitlab_project_id: '57382910'
        display_name: GitLab CI project 57382910
        notes: Managed by Ansible from the platform-iac repository; do not edit by hand
        sign_in_audience: AzureADMyOrg   # single tenant, the default

    - name: An app registration without a service principal (none is created; an existing one is kept)
      oidc_federation.azure.azure_ad_app:
        unique_name: gitlab-oidc-mygroup~docs
        service_principal: false

    - name: Delete the application and its service principal
      oidc_federation.azure.azure_ad_app:
        unique_name: gitlab-oidc-mygroup~myproject
        state: absent

    - name: Delete the application and remove it for good from deleted items (cannot be restored afterwards)
      oidc_federation.azure.azure_ad_app:
        unique_name: gitlab-oidc-mygroup~oldproject
        state: absent
        purge: true

    - name: Delete the adopted application too (it does not carry the oidc_federation.azure:managed tag)
      oidc_federation.azure.azure_ad_app:
        unique_name: gitlab-oidc
        state: absent
        force_delete: true
'''

RETURN = r'''
app_id:
  description:
    - The application (client) id, for C(AZURE_CLIENT_ID) in the CI job.
    - With O(state=absent), the id of the deleted (or purged) application. Null when there is no application (also
      when it would be created in check mode).
  returned: always
  type: str
  sample: 3c2e4a1f-5b6d-4e7f-8a9b-0c1d2e3f4a5b
object_id:
  description: The object id of the application (null when there is none yet).
  returned: always
  type: str
  sample: 9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a
service_principal_id:
  description:
    - The object id of the service principal, the principal of role assignments.
    - Null when there is none (also when it would be created in check mode).
  returned: always
  type: str
  sample: 1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d
tenant_id:
  description: The directory (tenant) id, for C(AZURE_TENANT_ID) in the CI job.
  returned: always
  type: str
  sample: 5a1d5b0e-7e4a-4c1f-9d2e-3f0a6b8c9d10
unique_name:
  description: The unique name of the application (derived from O(gitlab_project_path) or O(gitlab_project_id) when given).
  returned: always
  type: str
  sample: gitlab-oidc-mygroup~myproject
display_name:
  description: The display name of the application (after the change with O(state=present)).
  returned: always
  type: str
  sample: GitLab CI mygroup/myproject
application:
  description:
    - The managed properties of the application after the task (as predicted in check mode).
      Null with O(state=absent).
    - C(owners) is present only when O(owners) is set; C(service_principal) only when O(service_principal=true).
  returned: always
  type: dict
  sample:
    unique_name: gitlab-oidc-mygroup~myproject
    display_name: GitLab CI mygroup/myproject
    description: Deploys mygroup/myproject from GitLab CI
    notes: null
    service_management_reference: CMDB-4711
    sign_in_audience: AzureADMyOrg
    tags: [oidc_federation.azure:managed, team-platform]
    service_principal: true
actions:
  description: The writes made (or, in check mode, that would be made), in order.
  returned: always
  type: list
  elements: str
  sample:
    - create application gitlab-oidc-mygroup~myproject
    - create service principal
purged:
  description:
    - With O(purge=true), the objects removed for good from deleted items (or that would be, in check mode),
      service principals first. Empty otherwise.
  returned: always
  type: list
  elements: dict
  contains:
    object_id:
      description: Object id of the purged object.
      type: str
      sample: 9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a
    type:
      description: V(application) or V(servicePrincipal).
      type: str
      sample: application
    app_id:
      description: The application (client) id it belonged to.
      type: str
      sample: 3c2e4a1f-5b6d-4e7f-8a9b-0c1d2e3f4a5b
    name:
      description: Unique name of the application, or display name of the service principal.
      type: str
      sample: gitlab-oidc-mygroup~oldproject
'''

from ansible_collections.oidc_federation.azure.plugins.module_utils._graph import (  # noqa: E402
    SIGN_IN_AUDIENCES,
    ApplicationSpec,
    ensure_application,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._module import AzureModule  # noqa: E402

ARGUMENT_SPEC = dict(
    unique_name=dict(type='str'),
    gitlab_project_path=dict(type='str'),
    gitlab_project_id=dict(type='str'),
    display_name=dict(type='str'),
    description=dict(type='str'),
    notes=dict(type='str'),
    tags=dict(type='list', elements='str'),
    purge_tags=dict(type='bool', default=False),
    sign_in_audience=dict(type='str', default='AzureADMyOrg', choices=list(SIGN_IN_AUDIENCES)),
    service_management_reference=dict(type='str'),
    owners=dict(type='list', elements='str'),
    purge_owners=dict(type='bool', default=False),
    service_principal=dict(type='bool', default=True),
    adopt_by_display_name=dict(type='bool', default=False),
    force_delete=dict(type='bool', default=False),
    purge=dict(type='bool', default=False),
    state=dict(type='str', default='present', choices=['present', 'absent']),
)

# The application's key: given, or derived from the GitLab project (exactly one).
NAME_OPTIONS = ['unique_name', 'gitlab_project_path', 'gitlab_project_id']


async def core(module: AzureModule, clients) -> dict:
    """Reconcile the application described by the module's options."""
    spec = ApplicationSpec.from_params(module.params)
    outcome = await ensure_application(clients, spec, check_mode=module.check_mode)
    for warning in outcome.warnings:
        module.warn(warning)
    result = outcome.as_dict()
    for key in ('changed', 'state', 'warnings'):
        result.pop(key)
    return module.result(outcome.changed, diff=(outcome.before, outcome.after), **result)


def main() -> None:
    """Module entry point."""
    module = AzureModule(ARGUMENT_SPEC, supports_check_mode=True, required_one_of=[NAME_OPTIONS], mutually_exclusive=[NAME_OPTIONS],
                         checks=[ApplicationSpec.from_params])
    module.run(core)


if __name__ == '__main__':
    main()
