#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: azure_ad_app_info
short_description: Read Microsoft Entra ID app registrations and their service principal ids
version_added: 0.1.0
description:
  - Lists app registrations (Microsoft Graph C(application)) by unique name, application (client) id, display name
    or tag, each with the object id of its service principal.
  - Every given criterion must match. Without any criterion, every application of the tenant is listed.
  - Never writes anything.
author:
  - oidc_federation.azure contributors (@oidc-federation)
options:
  unique_name:
    description:
      - The C(uniqueName) of the application (see M(oidc_federation.azure.azure_ad_app)).
    type: str
  app_id:
    description:
      - The application (client) id.
    type: str
  display_name:
    description:
      - The display name. Display names are not unique, so several applications may match.
      - Compared without regard to case, as Microsoft Graph does.
    type: str
  tag:
    description:
      - A tag the applications carry, for example C(oidc_federation.azure:managed) for every application created by
        M(oidc_federation.azure.azure_ad_app).
    type: str
extends_documentation_fragment:
  - oidc_federation.azure.auth
  - oidc_federation.azure.attributes
  - oidc_federation.azure.attributes.info_module
  - oidc_federation.azure.attributes.action_group
notes:
  - Needs the Microsoft Graph application permission C(Application.Read.All) (or any permission that includes it).
  - Right after an application is created, Microsoft Entra ID may take a while before it can be read.
seealso:
  - module: oidc_federation.azure.azure_ad_app
'''

EXAMPLES = r'''
- name: Find the application of a project
  oidc_federation.azure.azure_ad_app_info:
    unique_name: gitlab-oidc-mygroup~myproject
  register: found

- name: Its client id and service principal
  ansible.builtin.debug:
    msg: "{{ found.applications[0].app_id }} / {{ found.applications[0].service_principal_id }}"
  when: found.applications | length == 1

- name: Every application managed by this collection
  oidc_federation.azure.azure_ad_app_info:
    tag: oidc_federation.azure:managed
  register: managed

- name: Applications created by hand with a given display name
  oidc_federation.azure.azure_ad_app_info:
    display_name: gitlab-oidc
  register: by_name

- name: Which application does a CI job log in as? (its AZURE_CLIENT_ID)
  oidc_federation.azure.azure_ad_app_info:
    app_id: 3c2e4a1f-8b7d-4e6a-9f10-2b3c4d5e6f70
  register: by_client_id
'''

RETURN = r'''
applications:
  description: The matching applications, ordered by display name, then application id. Empty when none match.
  returned: always
  type: list
  elements: dict
  contains:
    object_id:
      description: The object id of the application.
      type: str
      sample: 9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a
    app_id:
      description: The application (client) id.
      type: str
      sample: 3c2e4a1f-5b6d-4e7f-8a9b-0c1d2e3f4a5b
    unique_name:
      description: The C(uniqueName) (null when not set).
      type: str
      sample: gitlab-oidc-mygroup-myproject
    display_name:
      description: The display name.
      type: str
      sample: GitLab CI mygroup/myproject
    description:
      description: The description.
      type: str
      sample: Deploys mygroup/myproject from GitLab CI
    notes:
      description: The notes.
      type: str
      sample: null
    tags:
      description: The tags.
      type: list
      elements: str
      sample: [oidc_federation.azure:managed]
    sign_in_audience:
      description: Which accounts may sign in.
      type: str
      sample: AzureADMyOrg
    service_management_reference:
      description: The service management reference.
      type: str
      sample: CMDB-4711
    publisher_domain:
      description: The verified publisher domain.
      type: str
      sample: contoso.onmicrosoft.com
    created_date_time:
      description: When the application was created (ISO 8601, UTC).
      type: str
      sample: '2026-01-01T12:00:00Z'
    managed:
      description: Whether the application carries the tag C(oidc_federation.azure:managed).
      type: bool
      sample: true
    service_principal_id:
      description: The object id of the service principal, null when there is none.
      type: str
      sample: 1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d
'''

from ansible_collections.oidc_federation.azure.plugins.module_utils._graph import (  # noqa: E402
    check_app_query,
    find_applications,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._module import AzureModule  # noqa: E402

ARGUMENT_SPEC = dict(
    unique_name=dict(type='str'),
    app_id=dict(type='str'),
    display_name=dict(type='str'),
    tag=dict(type='str'),
)
CRITERIA = tuple(ARGUMENT_SPEC)


def _criteria(params) -> dict:
    return {name: params.get(name) for name in CRITERIA}


async def core(module: AzureModule, clients) -> dict:
    """List the applications matching the options."""
    applications = await find_applications(clients, **_criteria(module.params))
    return module.result(False, applications=applications)


def main() -> None:
    """Module entry point."""
    module = AzureModule(ARGUMENT_SPEC, supports_check_mode=True,
                         checks=[lambda params: check_app_query(**_criteria(params))])
    module.run(core)


if __name__ == '__main__':
    main()
