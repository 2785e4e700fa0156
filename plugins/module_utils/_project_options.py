# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""The options of one project of ``gitlab_oidc_projects`` (an item of its ``projects``): the module's argument spec
for them, and the fields ``gitlab_oidc_play_projects`` takes from a host's variables (``<prefix><field>``). Standard
library only (the action plugin imports it on the controller)."""

from __future__ import annotations

PROJECT_OPTIONS = dict(
    key=dict(type='str', no_log=False),
    state=dict(type='str', choices=['present', 'absent']),
    project_path=dict(type='str', required=True),
    project_id=dict(type='str'),
    sub_claim_components=dict(type='list', elements='str'),
    claim_values=dict(type='dict'),
    issuer=dict(type='str'),
    audience=dict(type='str'),
    gitlab_issuers=dict(type='list', elements='str'),
    branches=dict(type='list', elements='str'),
    tags=dict(type='list', elements='str'),
    any_ref=dict(type='bool'),
    credential_name_prefix=dict(type='str'),
    shared_app=dict(type='str'),
    app_unique_name=dict(type='str'),
    app_display_name=dict(type='str'),
    app_description=dict(type='str'),
    app_tags=dict(type='list', elements='str'),
    app_owners=dict(type='list', elements='str'),
    app_service_management_reference=dict(type='str'),
    role_assignments=dict(type='list', elements='dict', options=dict(
        role=dict(type='str', required=True),
        scope=dict(type='str'),
        subscription_id=dict(type='str'),
        resource_group=dict(type='str'),
        description=dict(type='str'),
    )),
    subscription_id=dict(type='str'),
    tenant_id=dict(type='str'),
    allow_privileged_roles=dict(type='bool'),
    shared_app_cleanup=dict(type='bool'),
    purge=dict(type='bool'),
    gitlab_api=dict(type='bool'),
    gitlab_url=dict(type='str'),
    gitlab_token=dict(type='str', no_log=True),
    gitlab_validate_certs=dict(type='bool'),
    gitlab_ca_bundle=dict(type='path'),
    ci_variables=dict(type='bool'),
    ci_variables_protected=dict(type='bool'),
    ci_variables_masked=dict(type='bool'),
    ci_variables_environment_scope=dict(type='str'),
    ci_variables_extra=dict(type='dict'),
)


def variable_fields() -> tuple:
    """The fields of a project that come from a host's variables: every option but ``key`` (the host's name) and the
    secrets (``no_log``: a described project is registered, and a registered value is shown at ``-vvv``)."""
    return tuple(name for name, spec in PROJECT_OPTIONS.items() if name != 'key' and not spec.get('no_log'))
