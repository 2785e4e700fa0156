#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: gitlab_oidc_projects
short_description: Onboard or offboard many GitLab projects to Azure with OpenID Connect in one call
version_added: 0.2.0
description:
  - Reconciles, for each GitLab project of O(projects), everything the P(oidc_federation.azure.gitlab_oidc#role) role
    manages - the project's app registration and service principal (its own, or one shared with other projects),
    the federated identity credentials that trust the project's CI/CD ID tokens, and the Azure role assignments of
    the service principal - or, with O(projects[].state=absent), removes them.
  - It is the engine of the role. With the role's C(gitlab_oidc_strategy=per_host) it runs once per project; with
    C(gitlab_oidc_strategy=bulk) once per play for every project. It can also be used on its own.
  - B(Reads in bulk.) With many projects the applications the collection manages are read in one paged listing
    (with C($select)), the rest by C(uniqueName in (...)); service principals by C(appId in (...)); owners and
    credentials per application; role definitions and role assignments once per scope. Every Graph read but the
    paged listing travels in JSON C($batch) requests (20 per batch). One access token per service.
  - B(Writes in batches, in phases.) Graph writes travel in C($batch) requests too - for the projects with their own
    application phase by phase across all of them (the applications, then their service principals, then per
    application one C(dependsOn) lane of owner and credential writes, while the Azure role assignments are written
    with bounded concurrency), paced to Graph's published quotas (O(graph_pacing)). A project that fails in a phase
    fails alone and skips its later phases.
  - B(Plans every project before its first write.) Bad input, a role name or id that does not resolve at its scope,
    a privileged role without O(projects[].allow_privileged_roles), trust beyond the project, a shared application
    configured differently by its projects - the project fails with a message naming the option and the fix, and
    nothing is written for it. The other projects go on.
  - B(Idempotent by key.) Applications are upserted by C(uniqueName), credentials by name, role assignments get
    deterministic names; a second run writes nothing. A run that stops halfway (a crash, a quota, a 403) is
    converged by the next one.
  - B(Rename-safe.) When the project id is known (O(projects[].project_id)), the project's own application carries
    the tag C(oidc_federation.azure:gitlab-project:<id>@<issuer>) and is found by it first, so a renamed project, or
    one whose sub claim switched to C(project_id), keeps its application (whose C(uniqueName) never changes); an
    application found under the other derivation of the name is adopted, never duplicated.
author:
  - oidc_federation.azure contributors (@oidc-federation)
options:
  projects:
    description:
      - The GitLab projects. Options not set on a project come from O(defaults), then from the defaults below.
    type: list
    elements: dict
    required: true
    suboptions:
      key:
        description:
          - The project's key in RV(projects) (the role uses the inventory host name). Defaults to O(projects[].project_path).
          - Keys must be unique; two projects with one key fail the call before any write.
        type: str
      state:
        description:
          - V(present) onboards the project, V(absent) offboards it (removes only what was made for it). Defaults to O(state).
        type: str
        choices: [present, absent]
      project_path:
        description:
          - Full path of the GitLab project, for example C(mygroup/sub/myproject).
        type: str
        required: true
      project_id:
        description:
          - Numeric id of the project. Required when O(projects[].sub_claim_components) lead with C(project_id); when
            given, the project's own application is marked with it and found by it (rename-safe).
        type: str
      sub_claim_components:
        description:
          - The project's C(ci_id_token_sub_claim_components) in GitLab. Default C([project_path, ref_type, ref]).
        type: list
        elements: str
      claim_values:
        description:
          - Values of the extra sub claim components (C(ref_protected), C(environment_protected), C(deployment_tier)).
        type: dict
      issuer:
        description:
          - URL of the GitLab instance, exactly as the C(iss) claim of its ID tokens. Default C(https://gitlab.com).
        type: str
      audience:
        description:
          - Audience of the credentials (the C(aud) the CI job requests). Default - the issuer.
        type: str
      gitlab_issuers:
        description:
          - Extra issuer URLs to treat as GitLab for flexible credentials (self-managed instances whose host name is not
            C(gitlab.<name>.<tld>)).
        type: list
        elements: str
      branches:
        description:
          - Branches whose CI/CD jobs may log in - names (exact credentials), patterns such as C(release/*) or C('*')
            for all branches (flexible credentials).
        type: list
        elements: str
      tags:
        description:
          - Tags whose CI/CD jobs may log in, like O(projects[].branches).
        type: list
        elements: str
      any_ref:
        description:
          - Let the jobs of every branch and tag log in (one flexible credential).
        type: bool
      credential_name_prefix:
        description:
          - Prefix of the credential names. Default C(gitlab).
        type: str
      shared_app:
        description:
          - Unique name of an application shared by several projects. Empty - the project has its own application.
        type: str
      app_unique_name:
        description:
          - Unique name of the project's own application. Default - derived from the project (see
            P(oidc_federation.azure.gitlab_app_unique_name#filter)).
        type: str
      app_display_name:
        description:
          - Display name of the application. Default C(GitLab CI/CD <project path>), or the shared application's name.
        type: str
      app_description:
        description:
          - Description of the application. Default - a sentence naming the project.
        type: str
      app_tags:
        description:
          - Tags added to the application (the collection's own tags are kept).
        type: list
        elements: str
      app_owners:
        description:
          - Object ids of owners added to the application.
        type: list
        elements: str
      app_service_management_reference:
        description:
          - The application's C(serviceManagementReference) (for example a CMDB id).
        type: str
      role_assignments:
        description:
          - Azure roles of the application's service principal. With its own application, exactly these at their scopes
            (others of the service principal at the same scopes are removed).
        type: list
        elements: dict
        suboptions:
          role:
            description:
              - Role name (for example C(Reader)), role definition GUID or full role definition id.
            type: str
            required: true
          scope:
            description:
              - Full scope. Default - the subscription (O(projects[].role_assignments[].subscription_id), else
                O(projects[].subscription_id)) or its O(projects[].role_assignments[].resource_group).
            type: str
          subscription_id:
            description:
              - Subscription of the scope when O(projects[].role_assignments[].scope) is not given.
            type: str
          resource_group:
            description:
              - Resource group of the scope when O(projects[].role_assignments[].scope) is not given.
            type: str
          description:
            description:
              - Description of the role assignment. Default - a sentence naming the project.
            type: str
      subscription_id:
        description:
          - Default subscription of the role assignments; also shown in the results.
        type: str
      tenant_id:
        description:
          - Tenant id shown in the results and snippet. Default - the tenant of the service principal.
        type: str
      allow_privileged_roles:
        description:
          - Allow roles that can grant access to others (Owner, User Access Administrator, custom roles with
            C(Microsoft.Authorization/*) and the like).
        type: bool
      shared_app_cleanup:
        description:
          - When the last project of a shared application is offboarded, also delete the application and the listed role
            assignments. Default V(true).
        type: bool
      purge:
        description:
          - With O(projects[].state=absent), after deleting the project's application and its service principal (or the
            shared application, when it goes), also remove them for good from Entra ID's deleted items, together with
            any deleted application of the same C(uniqueName). Without it Entra keeps deleted applications for 30 days,
            restorable, with their credentials. B(A purged application cannot be restored.)
          - Only applications carrying the collection's managed tag are ever purged; an unmanaged one in the way stops the
            project before any write. Default V(false).
        type: bool
      gitlab_api:
        description:
          - Use the GitLab REST API for this project - read its id and C(ci_id_token_sub_claim_components) from GitLab
            (the project fails, before any write, when O(projects[].project_id), O(projects[].project_path) or an
            explicit O(projects[].sub_claim_components) contradict GitLab), and set its CI/CD variables
            (O(projects[].ci_variables)).
          - Needs C(python-gitlab) and a GitLab token (O(projects[].gitlab_token), O(gitlab_token)); reading needs the
            C(read_api) scope, setting variables the C(api) scope and the Maintainer role on the project.
        type: bool
      gitlab_url:
        description:
          - URL of the project's GitLab instance. Default - O(gitlab_url), else the project's O(projects[].issuer)
            (a GitLab instance issues its ID tokens under its own URL).
        type: str
      gitlab_token:
        description:
          - GitLab access token for this project. Default - O(gitlab_token) (C(GITLAB_TOKEN), C(GITLAB_PRIVATE_TOKEN)).
            Never logged.
        type: str
      gitlab_validate_certs:
        description:
          - Verify the TLS certificate of the GitLab instance. Default V(true).
        type: bool
      gitlab_ca_bundle:
        description:
          - CA certificates to trust for the GitLab instance. Default - O(gitlab_ca_bundle).
        type: path
      ci_variables:
        description:
          - With O(projects[].gitlab_api), set the project's CI/CD variables C(AZURE_CLIENT_ID), C(AZURE_TENANT_ID) and,
            when O(projects[].subscription_id) is known, C(AZURE_SUBSCRIPTION_ID) (plus O(projects[].ci_variables_extra)),
            marked in their description as set by the collection. A variable with the same key and environment scope
            that the collection did not set stops the project before any write. Offboarding deletes every variable the
            collection set on the project, and nothing else. Default V(true).
        type: bool
      ci_variables_protected:
        description:
          - Make the variables protected (only pipelines of protected branches and tags see them). Default V(false).
        type: bool
      ci_variables_masked:
        description:
          - Mask the variables in job logs where GitLab allows it (values of at least 8 characters from
            C([a-zA-Z0-9_+=/@:.~-]), as ids are). Default V(true).
        type: bool
      ci_variables_environment_scope:
        description:
          - Environment scope of the variables. Default C(*).
        type: str
      ci_variables_extra:
        description:
          - More variables to set with the same settings, name to value (for example a resource group name). Not for
            secrets - the point of OpenID Connect is that there are none.
        type: dict
  defaults:
    description:
      - Values for the options of every project in O(projects) (same keys), for example the issuer or the role
        assignments. A project's own value wins.
    type: dict
    default: {}
  state:
    description:
      - Default of O(projects[].state).
    type: str
    choices: [present, absent]
    default: present
  continue_on_error:
    description:
      - Every project is always processed, whatever happens to the others. With V(false) the task fails when any
        project failed (the message lists them); with V(true) the task succeeds and RV(projects) tells which failed
        (the role's bulk strategy fails those hosts).
    type: bool
    default: false
  variable_prefix:
    description:
      - Name the options in error messages with this prefix instead of C(projects[N].), for example
        C(gitlab_oidc_) (the role's variable names).
    type: str
  ci_snippet_dir:
    description:
      - Write a ready C(.gitlab-ci.yml) snippet per onboarded project to C(<ci_snippet_dir>/<project path>.gitlab-ci.yml),
        and remove it for an offboarded project. Not written in check mode.
    type: path
  concurrency:
    description:
      - How many applications and requests are worked on at once.
    type: int
    default: 16
  graph_pacing:
    description:
      - Pace Microsoft Graph requests to Graph's published identity and access quotas, so a big run goes AT the quota
        instead of into it (fewer 429s and their waits). Before every request (each request inside a C($batch) too)
        the module waits until its local copy of the quotas holds the request's documented cost - per application and
        tenant 3,000 writes per 2 minutes 30 seconds and the resource units of O(graph_tenant_size) per 10 seconds;
        per application 150,000 resource units per 20 seconds and 35,000 writes per 5 minutes; per tenant 18,000 writes
        per 5 minutes (U(https://learn.microsoft.com/graph/throttling-limits), "Identity and access service limits").
        Every C(Retry-After) pauses all requests of the call, and Graph's C(x-ms-throttle-limit-percentage) corrects the
        local copy.
      - The buckets start full, as Graph's do, so small runs never wait. They are per module call, or per persistent
        worker with O(persistent_worker) (the concurrent calls it runs share one copy).
      - V(false) sends as fast as O(concurrency) allows; Graph's 429s are still waited out (C(Retry-After)) and retried.
    type: bool
    default: true
  graph_tenant_size:
    description:
      - The size of the tenant as Graph's identity quotas count it, which sets the resource-unit quota per application
        and tenant - V(S) under 50 users (3,500 units per 10 seconds), V(M) 50 to 500 users (5,000), V(L) over 500 users
        (8,000). The write quota (3,000 writes per 2 minutes 30 seconds) is the same for every size.
      - A size too large for the tenant makes reads run into 429s (retried); too small only waits more than needed.
    type: str
    choices: [S, M, L]
    default: S
  gitlab_url:
    description:
      - Default of O(projects[].gitlab_url).
    type: str
  gitlab_token:
    description:
      - Default of O(projects[].gitlab_token). Never logged.
      - Falls back to the environment variables C(GITLAB_TOKEN), then C(GITLAB_PRIVATE_TOKEN).
    type: str
  gitlab_ca_bundle:
    description:
      - Default of O(projects[].gitlab_ca_bundle). Falls back to the environment variable C(GITLAB_CA_BUNDLE).
    type: path
  persistent_worker:
    description:
      - Run the reconciliation in a persistent worker process shared by the module calls of the same user, module
        version, Python, working directory and environment, instead of in this module process. The worker keeps the
        SDKs loaded, runs concurrent calls side by side (one Graph pacer for all of them) and exits after 20 seconds
        without a call. For many calls of one project each (the role's C(per_host) strategy) this saves most of the
        cost of a module process (its SDK imports); one call with many projects gains nothing.
      - The module process only parses the options; the worker checks them as the module would (the same failures
        and messages, before any request) and runs the call.
      - When the task runs on the controller itself - the C(local) connection (as for a task delegated to C(localhost)), no
        C(become), no C(async), no C(environment) for the task, and C(ansible_python_interpreter) of that host is
        ansible-playbook's own Python (C(ansible_playbook_python), as for the implicit localhost and in the role's
        sample inventory) - there is no module process at all. The module's action plugin validates the options
        against this module's argument spec on the controller (the same defaults, environment fallbacks and error
        messages) and hands the call to the worker of ansible-playbook's Python, which then needs the Python
        requirements of this collection. Every other task, and a call no worker can take, runs the module as usual.
      - Calls with the same Azure settings that start within a minute of each other share their clients in the
        worker (connections, access tokens, and the role definitions, scope checks and operator identity read once
        per run, as the projects of one call share them); reads that failed are never kept, and each call reports
        only its own warnings.
      - The worker lives in C(workers) under the token cache directory (O(token_cache_dir)), which must be private to
        the user (mode 0700); its Unix socket (mode 0600) accepts connections of the same user only. It writes no
        logs. A call whose module process goes away is cancelled in the worker.
      - When no worker can be used (no private directory, a socket path over 100 bytes, no worker after 15 seconds)
        the module runs the call itself; when the worker stops after it took the call the module runs it again
        itself, with a warning (every write is keyed, so this converges).
    type: bool
    default: false
  prestart_worker:
    description:
      - Only start the persistent worker of the calls that follow (if none is running for this user, module version,
        Python, working directory and environment) and return at once, without reading or writing anything. The worker
        imports the SDKs (about a second of CPU) while the play goes on, instead of while the first calls wait for it.
        The role's C(per_host) strategy does this a few tasks before its calls. From the controller (see
        O(persistent_worker)) it starts the worker of ansible-playbook's Python, which the calls from the controller use.
      - Requires O(persistent_worker=true) and O(projects=[]); run it with the same O(token_cache_dir) and environment
        as the calls (it starts their worker only then). RV(worker) says what happened; when no worker can be used,
        a warning says why, and the calls run in their own module processes as they would anyway.
      - It changes nothing the module manages, so it runs the same in check mode.
    type: bool
    default: false
  results_dir:
    description:
      - Also write each project's entry of RV(projects) to C(<results_dir>/<sha256 of the key>.json) (mode 0600), and
        leave the projects that did not fail out of RV(projects), which then stays small however many projects there
        are. The role uses it with M(oidc_federation.azure.gitlab_oidc_result), which gives every inventory host its own
        entry without copying the whole result to every host.
      - The directory must exist. The files hold ids, names, subjects and messages, never a secret.
    type: path
extends_documentation_fragment:
  - oidc_federation.azure.auth
  - oidc_federation.azure.attributes
  - oidc_federation.azure.attributes.changes
  - oidc_federation.azure.attributes.action_group
notes:
  - Shared applications are handled inside the call, one project after the other. Calls that touch the same shared
    application (the projects of one shared application in separate calls, or two runs at once) run one at a time -
    each holds a lock per shared application (a file in C(<token cache directory>/locks), mode 0600) from its reads
    to its last write, and waits up to 15 minutes for another call to give it back (then its projects on that
    application fail, and the others go on). Without it, two calls that offboard the last two projects of a shared
    application would each keep the application for the other's credential.
seealso:
  - module: oidc_federation.azure.azure_ad_app
  - module: oidc_federation.azure.federated_identity_credential
  - module: oidc_federation.azure.role_assignment
'''

EXAMPLES = r'''
- name: Onboard two projects, one with a branch and tags, one led by its project id
  oidc_federation.azure.gitlab_oidc_projects:
    defaults:
      issuer: https://gitlab.example.com
      audience: https://gitlab.example.com
      gitlab_issuers: [https://gitlab.example.com]
      subscription_id: 00000000-0000-0000-0000-000000000000
      tenant_id: 11111111-1111-1111-1111-111111111111
      role_assignments:
        - role: Reader
    projects:
      - key: web
        project_path: mygroup/web-app
        branches: [main]
        tags: ['v*']
        credential_name_prefix: gitlab
        app_display_name: GitLab CI/CD web app
        app_description: Deploys the web app
        app_tags: [team-web]
        app_owners: [22222222-2222-2222-2222-222222222222]
        app_service_management_reference: CMDB-4711
      - project_path: mygroup/payments
        project_id: "4711"
        sub_claim_components: [project_id, ref_type, ref]
        branches: [main, production]
        claim_values: {}
        app_unique_name: gitlab-oidc-payments
        role_assignments:
          - role: Contributor
            resource_group: rg-payments
            description: payments deploys its resource group
          - role: Reader
            subscription_id: 00000000-0000-0000-0000-000000000000
          - role: Storage Blob Data Reader
            scope: /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-data
        allow_privileged_roles: false
    ci_snippet_dir: ./gitlab_oidc_report/gitlab-ci
    concurrency: 16
    graph_pacing: true
    graph_tenant_size: M
  register: onboarding

- name: Two projects sharing one application; every ref of the first may log in
  oidc_federation.azure.gitlab_oidc_projects:
    projects:
      - project_path: mygroup/services/orders
        shared_app: gitlab-oidc-services
        any_ref: true
      - project_path: mygroup/services/billing
        shared_app: gitlab-oidc-services
        branches: [main]

- name: Take the projects' ids and sub claims from GitLab and set their CI/CD variables (AZURE_CLIENT_ID, ...)
  oidc_federation.azure.gitlab_oidc_projects:
    gitlab_url: https://gitlab.example.com
    gitlab_token: "{{ lookup('ansible.builtin.env', 'GITLAB_TOKEN') }}"
    gitlab_ca_bundle: /etc/pki/tls/certs/corporate-ca.pem
    projects:
      - project_path: mygroup/web-app
        issuer: https://gitlab.example.com
        branches: [main]
        gitlab_api: true
        gitlab_url: https://gitlab.example.com
        gitlab_token: "{{ vault_gitlab_token_web }}"
        gitlab_validate_certs: true
        gitlab_ca_bundle: /etc/pki/tls/certs/corporate-ca.pem
        ci_variables: true
        ci_variables_protected: true
        ci_variables_masked: true
        ci_variables_environment_scope: production
        ci_variables_extra:
          AZURE_RESOURCE_GROUP: rg-web

- name: Offboard a project of a shared application, keeping the application while others use it
  oidc_federation.azure.gitlab_oidc_projects:
    state: absent
    projects:
      - project_path: mygroup/services/billing
        shared_app: gitlab-oidc-services
        shared_app_cleanup: true
        purge: false
    continue_on_error: true
    variable_prefix: gitlab_oidc_

- name: Offboard a project for good (no restore from Entra's deleted items)
  oidc_federation.azure.gitlab_oidc_projects:
    projects:
      - project_path: mygroup/old-app
        state: absent
        purge: true

- name: Many projects at once, each outcome in its own file for the gitlab_oidc_result action
  oidc_federation.azure.gitlab_oidc_projects:
    projects: "{{ my_projects }}"
    continue_on_error: true
    results_dir: "{{ results_dir.path }}"

- name: Start the persistent worker of the calls below, so that it loads the SDKs while the play goes on
  oidc_federation.azure.gitlab_oidc_projects:
    projects: []
    persistent_worker: true
    prestart_worker: true

- name: Many calls of one project each (a loop, or the role's per_host strategy) share one persistent worker
  oidc_federation.azure.gitlab_oidc_projects:
    projects:
      - project_path: "{{ item }}"
        branches: [main]
        role_assignments:
          - role: Reader
    persistent_worker: true
  loop: [mygroup/api, mygroup/web]
'''

RETURN = r'''
projects:
  description: Per project (by O(projects[].key)) what happened.
  returned: always
  type: dict
  sample:
    mygroup/web-app:
      failed: false
      changed: true
      msg: null
      warnings: []
      result:
        project_path: mygroup/web-app
        project_id: null
        state: present
        status: onboarded
        changed: true
        client_id: 3f1c...
        tenant_id: 5a1d...
        application: {unique_name: gitlab-oidc-mygroup~web-app, object_id: 9c2e..., app_id: 3f1c..., shared: false}
        credentials: [{name: gitlab-mygroup-web-app-branch-main-1a2b3c4d, action: created}]
        role_assignments: [{role_definition_name: Reader, scope: /subscriptions/..., action: created}]
  contains:
    failed:
      description: Whether the project failed (nothing was written for it when it failed before its first write).
      type: bool
    changed:
      description: Whether anything was (or, in check mode, would be) written for the project.
      type: bool
    msg:
      description: Why the project failed, naming the option and the fix.
      type: str
    diff:
      description: In diff mode, the project's before and after (application, credentials, role assignments).
      type: dict
      returned: diff mode, when the project changed
    warnings:
      description: Warnings about the project.
      type: list
      elements: str
    result:
      description:
        - The project's outcome, as the role's C(gitlab_oidc_result) fact - C(status) (C(onboarded), C(offboarded),
          C(planned) in check mode, C(failed)), C(client_id), C(tenant_id), C(application), C(credentials),
          C(role_assignments), C(ci_snippet) and more (see the role's documentation).
      type: dict
summary:
  description: Counts over the projects.
  returned: always
  type: dict
  sample: {projects: 2, changed: 1, failed: 0}
worker:
  description:
    - With O(prestart_worker=true), what happened - V(started) (this call started the worker), V(running) (one was
      running already) or V(unavailable) (none can be used here, see the warning and RV(reason)).
  returned: with O(prestart_worker=true)
  type: str
  sample: started
reason:
  description: Why no worker can be used.
  returned: when RV(worker=unavailable)
  type: str
'''

from typing import TYPE_CHECKING, Optional  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, env_fallback  # noqa: E402

# Only what parsing the options needs: with persistent_worker, the module process hands them to the worker without
# importing the module core (_module, _auth, _errors, ...; see _worker). The core is imported where it runs.
from ansible_collections.oidc_federation.azure.plugins.module_utils._auth_spec import with_auth_options  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._final import exit_with  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._project_options import PROJECT_OPTIONS  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from ansible_collections.oidc_federation.azure.plugins.module_utils._module import AzureModule

ARGUMENT_SPEC = dict(
    projects=dict(type='list', elements='dict', required=True, options=PROJECT_OPTIONS),
    defaults=dict(type='dict', default={}),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    continue_on_error=dict(type='bool', default=False),
    variable_prefix=dict(type='str'),
    ci_snippet_dir=dict(type='path'),
    concurrency=dict(type='int', default=16),
    graph_pacing=dict(type='bool', default=True),
    graph_tenant_size=dict(type='str', default='S', choices=['S', 'M', 'L']),
    persistent_worker=dict(type='bool', default=False),
    prestart_worker=dict(type='bool', default=False),
    results_dir=dict(type='path'),
    gitlab_url=dict(type='str'),
    gitlab_token=dict(type='str', no_log=True, fallback=(env_fallback, ['GITLAB_TOKEN', 'GITLAB_PRIVATE_TOKEN'])),
    gitlab_ca_bundle=dict(type='path', fallback=(env_fallback, ['GITLAB_CA_BUNDLE'])),
)


def check_params(params: dict) -> None:
    """Checks Ansible cannot express, before any SDK import or request."""
    from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import ValidationError
    unknown = sorted(set(params.get('defaults') or {}) - set(PROJECT_OPTIONS) - {'key'})
    if unknown:
        raise ValidationError('defaults: unknown option(s) {0}. Fix: use the options of projects ({1}).'.format(
            ', '.join(unknown), ', '.join(sorted(k for k in PROJECT_OPTIONS if k != 'key'))), field='defaults')
    if 'key' in (params.get('defaults') or {}):
        raise ValidationError('defaults: key cannot have a default. Fix: set key on each project.', field='defaults')
    if 'gitlab_token' in (params.get('defaults') or {}):
        raise ValidationError('defaults: gitlab_token would be logged there. Fix: use the module option gitlab_token (or the '
                              'GITLAB_TOKEN environment variable), or gitlab_token on each project.', field='defaults')
    if params['concurrency'] < 1:
        raise ValidationError('concurrency: must be at least 1. Fix: use a positive number.', field='concurrency')
    seen = {}
    for index, item in enumerate(params['projects']):
        key = _key(item)
        if key in seen:
            # The results are keyed by project: a second project under the same key would be lost, not reported.
            raise ValidationError('projects[{0}]: has the same key ({1}) as projects[{2}]. Fix: give every project its own '
                                  'key (default: its project path).'.format(index, key, seen[key]), field='projects')
        seen[key] = index


def _key(item: dict) -> str:
    """A project's key, as parse_projects derives it (project_path is required)."""
    return str(item.get('key') or item.get('project_path'))


def _defaults(params: dict) -> dict:
    out = dict(params.get('defaults') or {})
    out.setdefault('state', params['state'])
    for option in ('gitlab_url', 'gitlab_token', 'gitlab_ca_bundle'):
        if params.get(option):
            out.setdefault(option, params[option])
    return out


async def core(module: AzureModule, clients) -> dict:
    """Parse every project, reconcile them, report per project."""
    # Imported here: a module process that hands the call to a persistent worker never needs them.
    from ansible_collections.oidc_federation.azure.plugins.module_utils._onboarding import RunOptions, parse_projects, reconcile
    from ansible_collections.oidc_federation.azure.plugins.module_utils._results import failed_entry, write_results
    params = module.params
    projects, errors = parse_projects(params['projects'], variable_prefix=params.get('variable_prefix'), defaults=_defaults(params))
    options = RunOptions(check_mode=module.check_mode, diff=module.diff_mode, limit=params['concurrency'],
                         ci_snippet_dir=params.get('ci_snippet_dir'))
    run, outcomes = await reconcile(clients, projects, options)
    results = {}
    diffs = []
    for item in params['projects']:
        key = _key(item)
        if key in errors and key not in outcomes:
            results[key] = failed_entry(item.get('project_path'), str(errors[key]))
            continue
        outcome = outcomes.get(key)
        if outcome is None:
            continue
        for warning in outcome.warnings:
            module.warn('{0}: {1}'.format(key, warning))
        results[key] = {'failed': outcome.failed, 'changed': bool(outcome.changed and not outcome.failed), 'msg': outcome.msg,
                        'warnings': list(outcome.warnings), 'result': run.result(outcome)}
        if outcome.error:
            results[key]['error'] = outcome.error
        if outcome.diff and outcome.changed and module.diff_mode:
            diffs.append(outcome.diff)
            results[key]['diff'] = outcome.diff
    failed = sorted(k for k, r in results.items() if r['failed'])
    changed = any(r['changed'] for r in results.values())
    summary = {'projects': len(results), 'changed': sum(1 for r in results.values() if r['changed']), 'failed': len(failed)}
    if failed and not params['continue_on_error']:
        module.fail('{0} of {1} project(s) failed: {2}'.format(len(failed), len(results), ' | '.join(
            results[k]['msg'] or k for k in failed)), projects=results, summary=summary, changed=changed)
    if params.get('results_dir'):
        try:
            write_results(params['results_dir'], results)
        except OSError as exc:
            module.fail('results_dir: cannot write the results to {0}: {1}. Fix: give an existing, writable directory.'.format(
                params['results_dir'], exc.strerror or exc), projects=results, summary=summary, changed=changed)
        results = {k: r for k, r in results.items() if r['failed']}
    out = module.result(changed, projects=results, summary=summary)
    if diffs and module.diff_mode:
        out['diff'] = diffs
    return out


def clients_factory(params: dict, shared: Optional[dict] = None):
    """``Clients`` for the run: one credential (so one token per service) and, with ``graph_pacing``, one
    ``GraphPacer`` for every Graph request of the call (direct and inside ``$batch``). Given ``shared`` (the state
    of a persistent worker): one pacer per tenant size for every call the worker runs, and the ``Clients`` of calls
    with the same settings shared for a minute (``SharedClients``)."""
    from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import Clients, SharedClients
    from ansible_collections.oidc_federation.azure.plugins.module_utils._pacing import GraphPacer
    tenant_size = params['graph_tenant_size'] if params['graph_pacing'] else None
    key = ('clients', tenant_size)
    clients = None if shared is None else shared.get(key)
    if clients is None:
        pacer = GraphPacer(tenant_size=tenant_size) if tenant_size else None
        if shared is None:
            return lambda settings: Clients(settings, graph_pacer=pacer)
        clients = shared[key] = SharedClients(lambda settings: Clients(settings, graph_pacer=pacer))
    return clients.lease


# The checks Ansible cannot express, run after its validation by AzureModule here, or by the persistent worker.
CHECKS = (check_params,)


def preload() -> None:
    """What a persistent worker imports as it starts, before its first call (``_worker.preload_modules``): the module
    core that ``core`` and ``clients_factory`` import, and the SDKs their clients load."""
    from ansible_collections.oidc_federation.azure.plugins.module_utils import _clients, _module, _onboarding, _pacing, _results  # noqa: F401
    _clients.preload_sdks()


def prestart_problem(params: dict) -> Optional[str]:
    """Why ``prestart_worker`` cannot be honoured with these options, or None."""
    if not params['persistent_worker']:
        return ('prestart_worker: starts the persistent worker, so it needs persistent_worker=true. Fix: set '
                'persistent_worker: true, or leave out prestart_worker.')
    if params['projects']:
        return ('prestart_worker: starts the worker and reconciles nothing, so projects must be empty. Fix: give '
                'projects: [] in a task of its own, before the calls that use the worker.')
    return None


def prestart_final(params: dict) -> dict:
    """A ``prestart_worker`` call, done: its final result (``_final.final_result``'s form: ``failed``, ``result``,
    ``warnings``), for the module process or the module's action on the controller (each starts its own worker)."""
    problem = prestart_problem(params)
    if problem:
        return {'failed': True, 'result': {'msg': problem}, 'warnings': []}
    from ansible_collections.oidc_federation.azure.plugins.module_utils._worker import prestart
    started = prestart(params.get('token_cache_dir'))
    warnings = []
    if started['worker'] == 'unavailable':
        warnings.append('persistent_worker: no worker could be started ({0}); each call will run in its own module '
                        'process'.format(started['reason']))
    return {'failed': False, 'warnings': warnings,
            'result': dict(changed=False, projects={}, summary={'projects': 0, 'changed': 0, 'failed': 0}, **started)}


def main() -> None:
    """Module entry point."""
    ansible_module = AnsibleModule(argument_spec=with_auth_options(ARGUMENT_SPEC), supports_check_mode=True)
    if ansible_module.params['prestart_worker']:
        exit_with(ansible_module, prestart_final(ansible_module.params))
    if ansible_module.params['persistent_worker']:
        from ansible_collections.oidc_federation.azure.plugins.module_utils._worker import run_in_worker
        final = run_in_worker(ansible_module, 'gitlab_oidc_projects', ansible_module.params.get('token_cache_dir'))
        if final is not None:
            exit_with(ansible_module, final)
    from ansible_collections.oidc_federation.azure.plugins.module_utils import _module
    module = _module.AzureModule(ARGUMENT_SPEC, supports_check_mode=True, checks=CHECKS, ansible_module=ansible_module)
    module.run(core, clients_factory=clients_factory(module.params))


if __name__ == '__main__':
    main()
