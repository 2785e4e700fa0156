# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
name: gitlab_projects
short_description: GitLab projects of one or more groups, as hosts for the gitlab_oidc role
version_added: 0.2.0
description:
  - Lists the projects of one or more GitLab groups (subgroups included) through the GitLab REST API and adds each
    project as a host named by its full path (C(mygroup/subgroup/project)), with the variables the
    R(oidc_federation.azure.gitlab_oidc,ansible_collections.oidc_federation.azure.gitlab_oidc_role) role reads,
    so bulk onboarding starts from a group name instead of a hand-written inventory.
  - Host variables. C(gitlab_oidc_project_path) (full path), C(gitlab_oidc_project_id) (numeric id),
    C(gitlab_oidc_issuer) (O(oidc_issuer), by default the instance URL O(url)), and
    C(gitlab_oidc_sub_claim_components) (the project's C(ci_id_token_sub_claim_components) setting, only when GitLab
    reports it, see below); plus C(gitlab_project_default_branch), C(gitlab_project_topics),
    C(gitlab_project_archived), C(gitlab_project_visibility), C(gitlab_project_namespace) (full path of the group the
    project is in), C(gitlab_project_web_url), C(gitlab_project_instance_url) (O(url)) and
    C(gitlab_project_sub_claim_components_known).
  - GitLab shows a project's C(ci_id_token_sub_claim_components) only to users with the Maintainer role (and only from
    GitLab 17.10). When the token's user cannot see it, C(gitlab_oidc_sub_claim_components) is not set (the role then
    uses its default or what C(group_vars) say) and C(gitlab_project_sub_claim_components_known) is V(false).
  - Every project is put in the group O(inventory_group); O(keyed_groups), O(groups) and O(compose) build more, for
    example one group per topic.
  - Archived projects are left out unless O(include_archived); projects shared into a group from another namespace
    are never listed. Pagination is followed to the end (keyset where GitLab supports it, else offset).
  - The token is never written to the inventory, to logs or to error messages, also with C(-vvv).
  - Configuration file names must end with C(gitlab_projects.yml) or C(gitlab_projects.yaml).
requirements:
  - python-gitlab >= 4.4.0 on the controller (in the Execution Environment for AWX)
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description: The name of this plugin; it must be exactly this for the file to be read by it.
    type: str
    required: true
    choices: [oidc_federation.azure.gitlab_projects]
  url:
    description:
      - URL of the GitLab instance, for example V(https://gitlab.com) or V(https://gitlab.example.com) (a trailing
        C(/api/v4) is ignored).
      - Falls back to the environment variables E(GITLAB_URL) (python-gitlab's CLI), then E(CI_SERVER_URL) (set by
        GitLab in every CI/CD job), then V(https://gitlab.com).
    type: str
    env:
      - name: GITLAB_URL
      - name: CI_SERVER_URL
  token:
    description:
      - A personal, group or project access token with the C(read_api) scope (C(api) works too). Its user needs the
        Maintainer role on the projects for GitLab to report their C(ci_id_token_sub_claim_components).
      - Falls back to E(GITLAB_TOKEN) (glab, the Terraform GitLab provider), then E(GITLAB_PRIVATE_TOKEN)
        (python-gitlab's CLI). Prefer the environment (or an AWX credential injecting it) over writing the token into
        the file; an Ansible Vault encrypted value works too.
    type: str
    env:
      - name: GITLAB_TOKEN
      - name: GITLAB_PRIVATE_TOKEN
  gitlab_groups:
    description:
      - Full paths (V(mygroup/subgroup)) or numeric ids of the GitLab groups whose projects become hosts.
      - A project found through several groups is listed once.
    type: list
    elements: raw
    required: true
  include_subgroups:
    description: Include the projects of all subgroups, at any depth.
    type: bool
    default: true
  include_archived:
    description: Include archived projects.
    type: bool
    default: false
  topics:
    description: Only projects that have all these topics.
    type: list
    elements: str
    default: []
  path_patterns:
    description:
      - Only projects whose full path matches one of these shell patterns (V(mygroup/platform/*)). Case-sensitive;
        C(*) also matches C(/).
    type: list
    elements: str
    default: []
  exclude_path_patterns:
    description: Leave out projects whose full path matches one of these shell patterns.
    type: list
    elements: str
    default: []
  path_regex:
    description: Only projects whose full path matches this Python regular expression (searched, not anchored).
    type: str
  inventory_group:
    description:
      - The inventory group every project is added to. V(gitlab_projects) is the group the collection's
        C(onboard.yml) and C(offboard.yml) playbooks run on.
    type: str
    default: gitlab_projects
  oidc_issuer:
    description:
      - The value of C(gitlab_oidc_issuer) for every project, the C(iss) claim of the instance's ID tokens. Defaults
        to O(url), which is right unless the instance's external URL differs from the URL used for its API.
    type: str
  validate_certs:
    description: Verify the TLS certificate of the GitLab instance.
    type: bool
    default: true
    env:
      - name: GITLAB_VALIDATE_CERTS
  ca_bundle:
    description:
      - A PEM file of CA certificates to trust for the GitLab instance, for a self-managed GitLab behind a private CA.
        Without it, E(REQUESTS_CA_BUNDLE) (if set) or the system's trusted roots are used.
    type: path
    env:
      - name: GITLAB_CA_BUNDLE
  timeout:
    description: Seconds to wait for each answer of the GitLab API.
    type: float
    default: 30
notes:
  - Every request is retried on HTTP 429 after the C(Retry-After) GitLab sends, and on 5xx and connection errors
    with backoff, up to 5 attempts.
  - The inventory is read at every run (no cache).
seealso:
  - module: oidc_federation.azure.federated_identity_credential
  - name: GitLab projects inventory guide
    description: Setup, host variables, filters, an AWX/AAP inventory source.
    link: https://gitlab.com/oidc-federation/azure/-/blob/main/docs/inventory-gitlab_projects.md
  - name: GitLab Groups API, list a group's projects
    description: The API call behind the listing.
    link: https://docs.gitlab.com/api/groups/#list-projects
author:
  - oidc_federation.azure contributors (@oidc-federation)
'''

EXAMPLES = r'''
# onboarding.gitlab_projects.yml: every project of a group and its subgroups, token from GITLAB_TOKEN
plugin: oidc_federation.azure.gitlab_projects
url: https://gitlab.com
gitlab_groups:
  - mygroup
---
# platform.gitlab_projects.yml: two groups of a self-managed GitLab, only projects with the topic "azure", one
# inventory group per topic, archived projects included, and group variables derived from the project
plugin: oidc_federation.azure.gitlab_projects
url: https://gitlab.example.com
token: "{{ lookup('ansible.builtin.env', 'MY_GITLAB_TOKEN') }}"
ca_bundle: /etc/pki/tls/certs/internal-ca.pem
validate_certs: true
timeout: 60
gitlab_groups:
  - platform
  - 4242
include_subgroups: true
include_archived: true
topics: [azure]
path_patterns: ["platform/*", "tools/*"]
exclude_path_patterns: ["*/sandbox-*"]
path_regex: "^(platform|tools)/[a-z0-9-]+(/.*)?$"
inventory_group: gitlab_projects
oidc_issuer: https://gitlab.example.com
keyed_groups:
  - key: gitlab_project_topics
    prefix: topic
  - key: gitlab_project_namespace | replace('/', '_')
    prefix: ns
    separator: "__"
groups:
  uses_project_id_sub: "(gitlab_oidc_sub_claim_components | default(['project_path']))[0] == 'project_id'"
compose:
  gitlab_oidc_branches: "[gitlab_project_default_branch | default('main', true)]"
strict: false
use_extra_vars: false
leading_separator: true
---
# Only the direct projects of one subgroup, none of its subgroups
plugin: oidc_federation.azure.gitlab_projects
gitlab_groups: [mygroup/services]
include_subgroups: false
'''


from ansible.errors import AnsibleParserError  # noqa: E402 pylint: disable=wrong-import-position
from ansible.module_utils.basic import missing_required_lib  # noqa: E402 pylint: disable=wrong-import-position
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable  # noqa: E402 pylint: disable=wrong-import-position

from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import (  # noqa: E402 pylint: disable=wrong-import-position
    AzureApiError,
    MissingLibraryError,
    ValidationError,
    redact,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._gitlab_api import (  # noqa: E402 pylint: disable=wrong-import-position
    GitLabClient,
    list_group_projects,
    resolve_settings,
)

HOST_VARIABLES = ('gitlab_oidc_project_path', 'gitlab_oidc_project_id', 'gitlab_oidc_issuer',
                  'gitlab_oidc_sub_claim_components', 'gitlab_project_default_branch', 'gitlab_project_topics',
                  'gitlab_project_archived', 'gitlab_project_visibility', 'gitlab_project_namespace',
                  'gitlab_project_web_url', 'gitlab_project_instance_url', 'gitlab_project_sub_claim_components_known')


def host_variables(project: dict, instance_url: str, issuer: str) -> dict:
    """The host variables of one project (``project_info`` shape of ``_gitlab_api``)."""
    variables = {
        'gitlab_oidc_project_path': project['path_with_namespace'],
        'gitlab_oidc_project_id': project['id'],
        'gitlab_oidc_issuer': issuer,
        'gitlab_project_default_branch': project['default_branch'],
        'gitlab_project_topics': list(project['topics']),
        'gitlab_project_archived': project['archived'],
        'gitlab_project_visibility': project['visibility'],
        'gitlab_project_namespace': project['namespace_full_path'],
        'gitlab_project_web_url': project['web_url'],
        'gitlab_project_instance_url': instance_url,
        'gitlab_project_sub_claim_components_known': project['ci_id_token_sub_claim_components_known'],
    }
    if project['ci_id_token_sub_claim_components_known']:
        variables['gitlab_oidc_sub_claim_components'] = list(project['ci_id_token_sub_claim_components'])
    return variables


class InventoryModule(BaseInventoryPlugin, Constructable):
    """oidc_federation.azure.gitlab_projects"""

    NAME = 'oidc_federation.azure.gitlab_projects'

    def verify_file(self, path):
        """Files named ``*gitlab_projects.yml`` / ``*gitlab_projects.yaml`` only."""
        return super().verify_file(path) and path.endswith(('gitlab_projects.yml', 'gitlab_projects.yaml'))

    def _templated(self, name):
        value = self.get_option(name)
        if isinstance(value, str) and '{{' in value and getattr(self, 'templar', None) is not None:
            value = self.templar.template(value)
        return value

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        try:
            settings = resolve_settings(
                self._templated('url'), self._templated('token'), validate_certs=self.get_option('validate_certs'),
                ca_bundle=self.get_option('ca_bundle'), timeout=self.get_option('timeout'), env={})
            client = GitLabClient(settings)
            try:
                projects = list_group_projects(
                    client, self.get_option('gitlab_groups'), include_subgroups=self.get_option('include_subgroups'),
                    include_archived=self.get_option('include_archived'), topics=self.get_option('topics'),
                    path_patterns=self.get_option('path_patterns'),
                    exclude_path_patterns=self.get_option('exclude_path_patterns'),
                    path_regex=self.get_option('path_regex'))
            finally:
                client.close()
        except MissingLibraryError as exc:
            raise AnsibleParserError(missing_required_lib(exc.library, url=exc.url)) from None
        except (ValidationError, AzureApiError) as exc:
            raise AnsibleParserError('{0}: {1}'.format(path, redact(str(exc)))) from None
        self._populate(projects, settings.url, self._templated('oidc_issuer') or settings.url)

    def _populate(self, projects, instance_url, issuer):
        group = self.inventory.add_group(self.get_option('inventory_group'))
        strict = self.get_option('strict')
        for project in projects:
            host = self.inventory.add_host(project['path_with_namespace'], group=group)
            variables = host_variables(project, instance_url, issuer)
            for key, value in variables.items():
                self.inventory.set_variable(host, key, value)
            variables = self._combined(host, variables)
            self._set_composite_vars(self.get_option('compose'), variables, host, strict=strict)
            variables = self._combined(host, variables)
            self._add_host_to_composed_groups(self.get_option('groups'), variables, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option('keyed_groups'), variables, host, strict=strict)

    def _combined(self, host, variables):
        combined = dict(variables)
        combined.update(self.inventory.get_host(host).get_vars())
        return combined
