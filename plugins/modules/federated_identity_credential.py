#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: federated_identity_credential
short_description: Manage the federated identity credentials of a Microsoft Entra application (GitLab CI/CD trust)
version_added: 0.1.0
description:
  - Creates, updates and deletes the federated identity credentials of one Microsoft Entra application registration,
    so that GitLab CI/CD jobs (or another OpenID Connect issuer) can exchange their ID token for an Entra token.
  - Manages one credential (O(name), O(subject) or O(claims_matching_expression) or O(gitlab), ...) or a list
    (O(credentials)). With O(exclusive=true), credentials of the application that are not listed are deleted - all of
    them, or with O(exclusive_scope) only those of the listed GitLab project (for an application shared by several
    projects) or only those this collection made.
  - Exact credentials match the token's C(sub) claim literally (O(subject)). Flexible credentials match it with an
    expression (O(claims_matching_expression), for example C(claims['sub'] matches 'project_path:g/p:ref_type:branch:ref:*'));
    they are a Microsoft Graph C(/beta) feature, written and read through C(/beta).
  - The O(gitlab) suboption builds the subject or expression from a GitLab project and a ref selection (one branch or
    tag, a pattern, all branches, all tags, any ref), honouring the project's C(ci_id_token_sub_claim_components), and
    derives a stable credential name. With O(gitlab.branches) and O(gitlab.tags) it plans every credential a project
    needs at once - literal refs as exact subjects, patterns as flexible expressions, entries covered by another entry
    dropped, and a clear refusal with suggested patterns when they do not fit in the application's 20 credentials.
  - In check mode, an application that does not exist yet (because an earlier task of the same check run only
    predicted its creation) is not waited for; the credentials are planned against an empty set, with a warning
    (see O(missing_application)), so the result shows what would be created. A real run still fails clearly when the
    application does not exist.
  - Every rule Microsoft Graph enforces is checked before anything is written, and the error names the option and the
    fix - at most 20 credentials per application, name characters and length, exactly one audience, 600-character
    limits, issuer and subject unique per application, subject or expression (not both), names immutable, the
    expression grammar (languageVersion 1) and the issuers allowed to use expressions.
  - A GitLab subject or expression that trusts more than one project is refused. A wildcard that can reach into another
    namespace (C(project_path:*), or C(project_path:my*), which matches a group C(my-evil-group) anyone can create on
    gitlab.com) is always refused; trust in every project of one group (C(project_path:mygroup/*)) needs O(allow_broad_trust=true).
  - Drift (issuer, subject, expression, audience, description) is corrected in place. Audiences are compared regardless of order.
author:
  - oidc_federation.azure contributors (@oidc-federation)
extends_documentation_fragment:
  - oidc_federation.azure.auth
  - oidc_federation.azure.attributes
  - oidc_federation.azure.attributes.changes
  - oidc_federation.azure.attributes.action_group
options:
  app_id:
    description:
      - The application (client) ID of the application whose credentials are managed.
      - Exactly one of O(app_id), O(app_object_id) and O(app_unique_name) is required.
    type: str
  app_object_id:
    description:
      - The object ID of the application.
    type: str
  app_unique_name:
    description:
      - The C(uniqueName) of the application (as set by M(oidc_federation.azure.azure_ad_app)).
    type: str
  state:
    description:
      - V(present) creates the credentials or corrects them; V(absent) deletes them.
      - The default of the O(credentials[].state) of list items.
      - An absent credential is identified by its name; without a name, by its issuer and subject or expression
        (or the name and target the O(gitlab) suboption derives).
      - O(state=absent) with O(exclusive=true) and O(exclusive_scope=gitlab_project) deletes every credential that
        trusts the named project and nothing else (offboarding a project, even after its trust settings changed);
        no credential needs to be listed. Likewise with O(exclusive_scope=managed), every credential this collection made.
    type: str
    choices: [present, absent]
    default: present
  exclusive:
    description:
      - Delete the credentials of the application that are not in O(credentials) (or are not the single credential
        described by the top-level options) and that O(exclusive_scope) covers.
      - With the default O(exclusive_scope=application), every such credential is deleted, including credentials this
        collection did not create, so that the application trusts exactly what is listed. O(credentials=[]) and
        O(exclusive=true) then delete every credential of the application.
      - With O(state=absent), only together with O(exclusive_scope=gitlab_project) or O(exclusive_scope=managed) (see O(state)).
    type: bool
    default: false
  exclusive_scope:
    description:
      - Which unlisted credentials O(exclusive=true) deletes. No effect without O(exclusive=true).
      - V(application) - every credential of the application. The default - O(exclusive) is a control over what the
        application trusts, so a credential added by hand (maybe a forgotten or unwanted trust) is deleted too, whoever made it.
      - V(gitlab_project) - only credentials with the issuer of a listed item (or O(issuer)) whose subject or expression
        trusts one of the listed GitLab projects and nothing else, as this module's trust analysis classifies it (exact
        subjects and expressions led by C(project_path:<path>:) or C(project_id:<id>:), any refs). Credentials of other
        projects, group-wide ones (C(project_path:mygroup/*)), those of other issuers and those that cannot be analysed
        are kept. For an application shared by several projects - it removes the stale credentials of a narrowed trust
        without touching the other projects.
      - The listed projects are those named by O(gitlab_project_path), O(gitlab_project_id), O(gitlab.project_path),
        O(gitlab.project_id) and the same suboptions of the items; a project named only by path does not cover
        credentials led by its id, and the other way round. A V(gitlab_project) scope that names no project is refused.
      - V(managed) - only credentials whose description contains C(managed by oidc_federation.azure), which the
        O(gitlab) builders write (unless O(description) replaces it). The description is free text that anyone who can
        edit the application can change, so this is a convention, not a proof of ownership.
    type: str
    choices: [application, gitlab_project, managed]
    default: application
  name:
    description:
      - Name of the single credential (3 to 120 letters, digits, C(-) and C(_), starting with a letter or digit). Names
        are unique per application and immutable; a changed name is a new credential.
      - Required for a hand-written O(subject) or O(claims_matching_expression). With O(gitlab), a stable name is
        derived when omitted (C(gitlab-<project>-<ref>-<hash>)); an existing credential with the same issuer and
        subject or expression keeps its name.
    type: str
  issuer:
    description:
      - The issuer URL of the tokens, exactly as their C(iss) claim (no trailing slash for GitLab).
      - The default of the O(credentials[].issuer) of list items.
      - For a self-managed GitLab, its URL, for example C(https://gitlab.example.com).
    type: str
    default: https://gitlab.com
  audiences:
    description:
      - The audience of the single credential (exactly one value), equal to the C(aud) the CI job requests in its
        C(id_tokens).
      - The default of the O(credentials[].audiences) of list items.
      - When not set, the credential's issuer (GitLab's Azure tutorial uses the GitLab URL, for example
        C(https://gitlab.com), as the audience). Microsoft recommends C(api://AzureADTokenExchange).
    type: list
    elements: str
    aliases: [audience]
  subject:
    description:
      - Exact subject of the single credential (the token's C(sub)), for example
        C(project_path:mygroup/myproject:ref_type:branch:ref:main). No wildcards.
      - Mutually exclusive with O(claims_matching_expression) and a ref selection in O(gitlab).
    type: str
  claims_matching_expression:
    description:
      - Flexible expression of the single credential (languageVersion 1), for example
        C(claims['sub'] matches 'project_path:mygroup/myproject:ref_type:branch:ref:release/*').
      - Conditions C(claims['<claim>'] eq|matches '<value>') joined by C( and ); C(*) and C(?) are wildcards of
        C(matches); C('') is a quote. GitLab issuers may only use C(claims['sub']).
      - Only issuers on Microsoft's allow-list may use expressions (C(https://gitlab.com), C(https://gitlab.<name>.<tld>),
        GitHub Actions, Terraform Cloud) and those in O(gitlab_issuers).
    type: str
  description:
    description:
      - Description of the single credential (at most 600 characters). Not compared when omitted.
      - With O(gitlab), a description naming the project and refs is generated when omitted.
    type: str
  gitlab:
    description:
      - Builds the subject or expression of the single credential from a GitLab project and a ref selection
        (one of O(gitlab.ref), O(gitlab.all_branches), O(gitlab.all_tags), O(gitlab.any_ref)).
      - A literal ref gives an exact subject; a pattern, all branches, all tags and any ref give a flexible credential
        (unless the project's sub claim has no ref component).
      - With O(gitlab.branches) and/or O(gitlab.tags), a project request - every credential the listed refs need
        (one per literal ref or pattern; O(gitlab.any_ref) covers them all), names derived; RV(credential) is then not
        returned, see RV(results).
      - Without a ref selection, names the project that a hand-written O(subject) or O(claims_matching_expression) is
        checked against.
    type: dict
    suboptions: &gitlab_suboptions
      project_path:
        description:
          - Full path of the project, for example C(mygroup/mysubgroup/my-project.name). Case-sensitive.
          - Required when the project's sub claim components contain C(project_path) (the default).
        type: str
      project_id:
        description:
          - Numeric ID of the project. Required when the sub claim components lead with C(project_id).
        type: str
      ref_type:
        description:
          - Whether O(gitlab.ref) is a branch or a tag. Defaults to V(branch) when O(gitlab.ref) is set.
        type: str
        choices: [branch, tag]
      ref:
        description:
          - A branch or tag short name (C(main), C(release/1.0), not C(refs/heads/main)), or a pattern with C(*) (any
            run of characters, also C(/)) and C(?) (one character), for example C(release/*). C(*) alone means every
            branch (tag).
        type: str
      all_branches:
        description:
          - Trust every branch of the project (one flexible credential).
        type: bool
        default: false
      all_tags:
        description:
          - Trust every tag of the project (one flexible credential).
        type: bool
        default: false
      any_ref:
        description:
          - Trust every branch and tag of the project (one flexible credential).
        type: bool
        default: false
      sub_claim_components:
        description:
          - The project's C(ci_id_token_sub_claim_components) (GitLab project setting). Defaults to GitLab's
            C([project_path, ref_type, ref]).
          - C([project_id, ref_type, ref]) makes the subject survive a project rename or transfer.
        type: list
        elements: str
      claim_values:
        description:
          - Values of the extra sub claim components the project includes (C(ref_protected), C(environment_protected),
            C(deployment_tier)), for example V(true) for C(ref_protected) to trust only protected refs.
        type: dict
      name_prefix:
        description:
          - First part of derived credential names.
        type: str
        default: gitlab
      branches:
        description:
          - A project request - the branches to trust, each a literal name (exact subject), a pattern with C(*) and
            C(?) (one flexible credential), or C(*) for every branch.
          - An entry covered by another one is dropped (C(release/1.0) next to C(release/*)); nothing is ever widened
            automatically. The expression language has no C(or), so every remaining entry is one credential. When they
            do not fit in the room the application has (20 minus the credentials this request does not manage, after
            the deletions of the same task) the task fails before any write, suggesting patterns.
          - Not together with O(gitlab.ref), O(gitlab.ref_type), O(gitlab.all_branches) or O(gitlab.all_tags), nor with
            O(name), O(subject) or O(claims_matching_expression) of the same item; O(description) applies to every credential.
        type: list
        elements: str
      tags:
        description:
          - A project request - the tags to trust, like O(gitlab.branches).
        type: list
        elements: str
  credentials:
    description:
      - Several credentials of the application, instead of the single-credential options O(name), O(subject),
        O(claims_matching_expression), O(description) and O(gitlab).
      - Items inherit O(issuer), O(audiences), O(state) and O(allow_broad_trust) from the top level.
      - An item with O(credentials[].gitlab.branches) or O(credentials[].gitlab.tags) stands for every credential of that
        project request. RV(results) tells which credential each item became, in item order.
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - As the top-level O(name).
        type: str
      issuer:
        description:
          - As the top-level O(issuer); defaults to it.
        type: str
      audiences:
        description:
          - As the top-level O(audiences); defaults to it, else to the item's issuer.
        type: list
        elements: str
        aliases: [audience]
      subject:
        description:
          - As the top-level O(subject).
        type: str
      claims_matching_expression:
        description:
          - As the top-level O(claims_matching_expression).
        type: str
      description:
        description:
          - As the top-level O(description).
        type: str
      gitlab:
        description:
          - As the top-level O(gitlab).
        type: dict
        suboptions: *gitlab_suboptions
      state:
        description:
          - V(present) or V(absent) for this item; defaults to the top-level O(state).
        type: str
        choices: [present, absent]
      allow_broad_trust:
        description:
          - As the top-level O(allow_broad_trust), for this item; defaults to it.
        type: bool
  allow_broad_trust:
    description:
      - Allow a hand-written subject or expression to trust every project of one GitLab namespace
        (C(claims['sub'] matches 'project_path:mygroup/*')), subgroups and future projects included.
      - Wildcards reaching into other namespaces (C(project_path:*), C(project_path:my*), C(project_id:12*)) are refused regardless.
    type: bool
    default: false
  gitlab_project_path:
    description:
      - The GitLab project that hand-written subjects and expressions are meant for; a subject or expression trusting
        another project is refused. An item's O(gitlab.project_path) takes precedence.
      - Also a project whose credentials O(exclusive_scope=gitlab_project) covers.
      - When no project is named, the project spelled out in the subject or expression is taken as the intended one,
        so wildcards after C(project_path:<group>/<project>:) are accepted and wider ones need O(allow_broad_trust) or are refused.
    type: str
  gitlab_project_id:
    description:
      - Like O(gitlab_project_path), by project ID (for subjects led by C(project_id:)).
    type: str
  missing_application:
    description:
      - What check mode does when the application does not exist (yet). Either way the credentials are planned against
        an empty set and RV(application) is null; a real run (not check mode) always fails when the application does
        not exist.
      - V(warn) - also warn that the application was not found (it may be a typo, or an application an earlier task
        of the same check run only predicted).
      - V(plan) - no warning, for a task that expects it (for example a plan step that runs in check mode before the
        task that creates the application).
    type: str
    choices: [warn, plan]
    default: warn
  gitlab_issuers:
    description:
      - More issuer URLs to treat as GitLab (self-managed instances whose host is not C(gitlab.<name>.<tld>)) for
        the flexible-credential checks and the trust checks.
      - Microsoft Entra ID itself only lets issuers on its allow-list use expressions; list an issuer here only if
        your tenant accepts it.
    type: list
    elements: str
    default: []
notes:
  - Needs the Microsoft Graph application permission C(Application.ReadWrite.All), or C(Application.ReadWrite.OwnedBy)
    on an application the caller owns.
  - A token exchange right after a change may fail for a short time (AADSTS70021) until the change has replicated.
  - The CI job must request an ID token whose C(aud) equals the credential's audience (C(id_tokens.<NAME>.aud)).
seealso:
  - module: oidc_federation.azure.azure_ad_app
  - name: Flexible federated identity credentials
    description: Microsoft's description of claims matching expressions.
    link: https://learn.microsoft.com/entra/workload-id/workload-identities-flexible-federated-identity-credentials
  - name: GitLab OpenID Connect in Azure
    description: GitLab's tutorial this module automates.
    link: https://docs.gitlab.com/ci/cloud_services/azure/
'''

EXAMPLES = r'''
- name: Trust the main branch of a GitLab project (exact subject, derived name)
  oidc_federation.azure.federated_identity_credential:
    app_unique_name: gitlab-oidc-mygroup~myproject
    gitlab:
      project_path: mygroup/myproject
      ref: main

- name: Several credentials; remove every other credential of the application
  oidc_federation.azure.federated_identity_credential:
    app_id: 00000000-0000-0000-0000-000000000001
    exclusive: true
    credentials:
      - gitlab: {project_path: mygroup/sub/my.project, ref: main}
      - gitlab: {project_path: mygroup/sub/my.project, ref_type: tag, ref: 'v*'}
      - gitlab: {project_path: mygroup/sub/my.project, ref: 'release/*'}

- name: Trust a project's branches and tags in one request (main exact, release/* and v* flexible; release/1.0 is covered)
  oidc_federation.azure.federated_identity_credential:
    app_unique_name: gitlab-oidc-mygroup~myproject
    gitlab:
      project_path: mygroup/myproject
      branches: [main, 'release/*', release/1.0]
      tags: ['v*']
  register: trust

- name: Show the credential each requested ref became
  ansible.builtin.debug:
    msg: "{{ trust.results | map(attribute='name') | list }}"

- name: Application shared by several projects - remove this project's stale credentials, keep the other projects'
  oidc_federation.azure.federated_identity_credential:
    app_unique_name: gitlab-oidc-shared-deployer
    exclusive: true
    exclusive_scope: gitlab_project
    credentials:
      - gitlab: {project_path: mygroup/project-a, branches: [main], tags: ['v*']}

- name: Offboard a project from a shared application - delete every credential that trusts it and nothing else
  oidc_federation.azure.federated_identity_credential:
    app_unique_name: gitlab-oidc-shared-deployer
    gitlab_project_path: mygroup/project-a
    exclusive: true
    exclusive_scope: gitlab_project
    state: absent

- name: Self-managed GitLab, project_id-led subjects, every ref of the project
  oidc_federation.azure.federated_identity_credential:
    app_id: 00000000-0000-0000-0000-000000000001
    issuer: https://gitlab.example.com
    gitlab:
      project_id: '57382910'
      sub_claim_components: [project_id, ref_type, ref]
      any_ref: true

- name: Hand-written credential, audience recommended by Microsoft
  oidc_federation.azure.federated_identity_credential:
    app_object_id: 11111111-1111-1111-1111-111111111111
    name: deploy-production
    subject: project_path:mygroup/myproject:ref_type:branch:ref:production
    audiences: [api://AzureADTokenExchange]
    description: Production deploys of mygroup/myproject (managed by Ansible)
    gitlab_project_path: mygroup/myproject

- name: Release tags of a project on a self-managed GitLab whose host is not gitlab.<name>.<tld>
  oidc_federation.azure.federated_identity_credential:
    app_id: 00000000-0000-0000-0000-000000000001
    issuer: https://code.example.com
    gitlab_issuers: [https://code.example.com]   # only if your tenant accepts expressions from this issuer
    name: releases-57382910
    claims_matching_expression: "claims['sub'] matches 'project_id:57382910:ref_type:tag:ref:v*'"
    gitlab_project_id: '57382910'   # the project the expression must trust, and nothing else

- name: Plan, in check mode, the trust of an application that an earlier task of the same check run would create
  oidc_federation.azure.federated_identity_credential:
    app_unique_name: gitlab-oidc-mygroup~newproject
    gitlab:
      project_path: mygroup/newproject
      branches: [main]
    missing_application: plan   # no warning that the application does not exist yet
  check_mode: true

- name: Every project of one group (broad trust, explicitly allowed)
  oidc_federation.azure.federated_identity_credential:
    app_id: 00000000-0000-0000-0000-000000000001
    name: whole-group
    claims_matching_expression: "claims['sub'] matches 'project_path:mygroup/*'"
    allow_broad_trust: true

- name: Shared options for every module of the collection
  module_defaults:
    group/oidc_federation.azure.azure:
      tenant_id: "{{ azure_tenant_id }}"
      client_id: "{{ azure_client_id }}"
      client_secret: "{{ azure_client_secret }}"
  block:
    - name: Remove one credential
      oidc_federation.azure.federated_identity_credential:
        app_id: 00000000-0000-0000-0000-000000000001
        name: deploy-production
        state: absent
'''

RETURN = r'''
application:
  description:
    - The application whose credentials were managed.
    - Null when deleting from an application that does not exist, and in check mode when the application does not exist
      yet (its credentials are then planned against an empty set).
  returned: always
  type: dict
  contains:
    id:
      description: Object ID.
      type: str
      sample: 11111111-1111-1111-1111-111111111111
    app_id:
      description: Application (client) ID.
      type: str
      sample: 00000000-0000-0000-0000-000000000001
    display_name:
      description: Display name.
      type: str
      sample: gitlab-oidc-mygroup-myproject
    unique_name:
      description: The C(uniqueName), if set.
      type: str
      sample: gitlab-oidc-mygroup-myproject
  sample: {id: 11111111-1111-1111-1111-111111111111, app_id: 00000000-0000-0000-0000-000000000001,
           display_name: gitlab-oidc-mygroup-myproject, unique_name: gitlab-oidc-mygroup-myproject}
credential:
  description:
    - The single credential after the run (same keys as an item of RV(credentials)); null when it is absent.
    - Only when the single-credential options were used (not O(credentials), nor O(gitlab.branches)/O(gitlab.tags)).
  returned: when the single-credential options describe one credential
  type: dict
  sample:
    id: 6a9c1e0b-3f7d-4c57-9a3b-2f1e0d9c8b7a
    name: gitlab-mygroup-myproject-branch-main-1a2b3c4d
    issuer: https://gitlab.com
    audiences: [https://gitlab.com]
    description: "GitLab CI/CD of mygroup/myproject: branch main (managed by oidc_federation.azure)"
    subject: project_path:mygroup/myproject:ref_type:branch:ref:main
    claims_matching_expression: null
credentials:
  description:
    - Every credential of the application after the run (in check mode, as it would be), sorted by name.
    - C(id) is null for a credential that check mode would create.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Credential ID.
      type: str
    name:
      description: Name.
      type: str
    issuer:
      description: Issuer URL.
      type: str
    audiences:
      description: The audience (one value).
      type: list
      elements: str
    description:
      description: Description, or null.
      type: str
    subject:
      description: Exact subject, or null for a flexible credential.
      type: str
    claims_matching_expression:
      description: The flexible expression (languageVersion 1), or null for an exact credential.
      type: str
  sample:
    - id: 6a9c1e0b-3f7d-4c57-9a3b-2f1e0d9c8b7a
      name: gitlab-mygroup-myproject-all-branches-5e6f7a8b
      issuer: https://gitlab.com
      audiences: [https://gitlab.com]
      description: "GitLab CI/CD of mygroup/myproject: all branches (managed by oidc_federation.azure)"
      subject: null
      claims_matching_expression: "claims['sub'] matches 'project_path:mygroup/myproject:ref_type:branch:ref:*'"
results:
  description:
    - One entry per requested credential, in the order of O(credentials) (one entry for the single-credential
      options; a project request with O(gitlab.branches)/O(gitlab.tags) gives one entry per planned credential, all
      with the item's index). Tells which credentials of a shared application are this task's.
    - Credentials deleted by O(exclusive) are not listed here (see RV(deleted)).
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: Position of the item in O(credentials) (from 0); null for the single-credential options.
      type: int
    name:
      description: The name the item resolved to (given, derived, or adopted from an existing credential with the same
        issuer and subject or expression); null for an absent item identified by a target that does not exist.
      type: str
    id:
      description: Credential ID; null when the credential does not exist (yet, in check mode).
      type: str
    issuer:
      description: Issuer URL.
      type: str
    subject:
      description: Exact subject, or null.
      type: str
    claims_matching_expression:
      description: Flexible expression, or null.
      type: str
    state:
      description: The item's state.
      type: str
      choices: [present, absent]
    action:
      description:
        - V(created), V(updated) or V(unchanged) for O(state=present); V(deleted) or V(absent) (there was nothing to
          delete) for O(state=absent). In check mode, what would happen.
      type: str
      choices: [created, updated, unchanged, deleted, absent]
  sample:
    - index: 0
      name: gitlab-mygroup-myproject-branch-main-1a2b3c4d
      id: 6a9c1e0b-3f7d-4c57-9a3b-2f1e0d9c8b7a
      issuer: https://gitlab.com
      subject: project_path:mygroup/myproject:ref_type:branch:ref:main
      claims_matching_expression: null
      state: present
      action: unchanged
    - index: 1
      name: gitlab-mygroup-myproject-tags-v-9f8e7d6c
      id: null
      issuer: https://gitlab.com
      subject: null
      claims_matching_expression: "claims['sub'] matches 'project_path:mygroup/myproject:ref_type:tag:ref:v*'"
      state: present
      action: created
created:
  description: Names of the credentials created (in check mode, that would be created).
  returned: always
  type: list
  elements: str
  sample: [gitlab-mygroup-myproject-branch-main-1a2b3c4d]
updated:
  description: Credentials updated in place, with the fields that differed.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Credential name.
      type: str
    fields:
      description: Graph property names that were corrected (C(issuer), C(audiences), C(description), C(subject), C(claimsMatchingExpression)).
      type: list
      elements: str
  sample: [{name: deploy-production, fields: [description]}]
deleted:
  description: Names of the credentials deleted (in check mode, that would be deleted).
  returned: always
  type: list
  elements: str
  sample: [old-credential]
diff:
  description: The application's credentials before and after (sorted by name, without IDs), in diff mode.
  returned: when diff mode is on
  type: dict
  sample: {before: {credentials: []}, after: {credentials: [{name: deploy-production}]}}
'''

from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import AzureApiError, ValidationError
from ansible_collections.oidc_federation.azure.plugins.module_utils._fic import FicValidationError
from ansible_collections.oidc_federation.azure.plugins.module_utils._gitlab import validate_project_id, validate_project_path
from ansible_collections.oidc_federation.azure.plugins.module_utils._graph import is_guid, resolve_application
from ansible_collections.oidc_federation.azure.plugins.module_utils._graph_fic import (
    EXCLUSIVE_SCOPES,
    SCOPE_APPLICATION,
    STATE_ABSENT,
    CredentialDefaults,
    check_specs,
    credential_result,
    exclusive_scope_for,
    is_project_request,
    item_results,
    plan_without_application,
    reconcile_application,
    specs_from_item,
    specs_from_options,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._module import ArgumentSpec, AzureModule

GITLAB_SUBOPTIONS = dict(
    project_path=dict(type='str'),
    project_id=dict(type='str'),
    ref_type=dict(type='str', choices=['branch', 'tag']),
    ref=dict(type='str'),
    all_branches=dict(type='bool', default=False),
    all_tags=dict(type='bool', default=False),
    any_ref=dict(type='bool', default=False),
    sub_claim_components=dict(type='list', elements='str'),
    claim_values=dict(type='dict'),
    name_prefix=dict(type='str', default='gitlab'),
    branches=dict(type='list', elements='str'),
    tags=dict(type='list', elements='str'),
)

CREDENTIAL_SUBOPTIONS = dict(
    name=dict(type='str'),
    issuer=dict(type='str'),
    audiences=dict(type='list', elements='str', aliases=['audience']),
    subject=dict(type='str'),
    claims_matching_expression=dict(type='str'),
    description=dict(type='str'),
    gitlab=dict(type='dict', options=GITLAB_SUBOPTIONS),
    state=dict(type='str', choices=['present', 'absent']),
    allow_broad_trust=dict(type='bool'),
)

SINGLE_OPTIONS = ('name', 'subject', 'claims_matching_expression', 'description', 'gitlab')
APP_KEYS = ('app_id', 'app_object_id', 'app_unique_name')
APP_SELECT = ('id', 'appId', 'displayName', 'uniqueName')
APP_KEY_LABELS = {'app_id': 'appId', 'app_object_id': 'object ID', 'app_unique_name': 'uniqueName'}


def argument_spec():
    """The module's options and constraints (the shared auth options are added by AzureModule)."""
    options = dict(
        app_id=dict(type='str'),
        app_object_id=dict(type='str'),
        app_unique_name=dict(type='str'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        exclusive=dict(type='bool', default=False),
        exclusive_scope=dict(type='str', choices=list(EXCLUSIVE_SCOPES), default=SCOPE_APPLICATION),
        name=dict(type='str'),
        issuer=dict(type='str', default='https://gitlab.com'),
        audiences=dict(type='list', elements='str', aliases=['audience']),
        subject=dict(type='str'),
        claims_matching_expression=dict(type='str'),
        description=dict(type='str'),
        gitlab=dict(type='dict', options=GITLAB_SUBOPTIONS),
        credentials=dict(type='list', elements='dict', options=CREDENTIAL_SUBOPTIONS),
        allow_broad_trust=dict(type='bool', default=False),
        gitlab_project_path=dict(type='str'),
        gitlab_project_id=dict(type='str'),
        gitlab_issuers=dict(type='list', elements='str', default=[]),
        missing_application=dict(type='str', choices=['warn', 'plan'], default='warn'),
    )
    return ArgumentSpec(
        options,
        mutually_exclusive=[list(APP_KEYS), ['subject', 'claims_matching_expression']]
        + [['credentials', option] for option in SINGLE_OPTIONS],
        required_one_of=[list(APP_KEYS)],
        checks=[check_shape],
    )


def is_purge(params):
    """True for the offboarding form: state=absent with exclusive and a narrower scope than the application (no list needed)."""
    return bool(params.get('exclusive')) and params.get('state') == STATE_ABSENT and params.get('exclusive_scope') != SCOPE_APPLICATION


def check_shape(params):
    """Constraints Ansible cannot explain well: something to manage, and exclusive with state=absent only for a narrow scope."""
    single = any(params.get(option) for option in SINGLE_OPTIONS)
    if params.get('credentials') is None and not single and not is_purge(params):
        raise FicValidationError('credentials', 'nothing to manage: no credential was described',
                                 'describe one credential (name with subject or claims_matching_expression, or gitlab), or list them in '
                                 'credentials (credentials: [] with exclusive: true deletes every credential of the application)')
    for option in ('app_id', 'app_object_id'):
        if params.get(option) and not is_guid(params[option]):
            raise FicValidationError(option, '{0!r} is not a GUID'.format(params[option]),
                                     'use the GUID shown in the application\'s overview, or app_unique_name for its uniqueName')
    if params.get('exclusive') and params.get('state') == STATE_ABSENT and not is_purge(params):
        raise FicValidationError('exclusive', 'exclusive with state=absent would delete every credential of the application',
                                 'use exclusive_scope: gitlab_project (or managed) to delete every credential of the project (or every '
                                 'credential this collection made), state=present with exclusive=true and credentials: [] to delete every '
                                 'credential, or drop exclusive')


class Request:
    """The validated options: credential specs, the exclusivity scope, and the shape of the result."""

    def __init__(self, specs, scope, single, field):
        self.specs = specs
        self.scope = scope
        self.single = single  # the single-credential form: the result has ``credential``
        self.field = field  # option path prefixed to plan errors


def build_specs(params):
    """Validate the options into a ``Request`` (pure, before any request)."""
    defaults = CredentialDefaults(
        issuer=params['issuer'], audiences=params.get('audiences'), state=params['state'],
        allow_broad_trust=params['allow_broad_trust'],
        project_path=validate_project_path(params['gitlab_project_path'], field='gitlab_project_path') if params.get('gitlab_project_path') else None,
        project_id=validate_project_id(params['gitlab_project_id'], field='gitlab_project_id') if params.get('gitlab_project_id') else None,
        gitlab_issuers=tuple(params.get('gitlab_issuers') or ()))
    if params.get('credentials') is not None:
        specs, single, field = specs_from_options(params['credentials'], defaults=defaults, field='credentials'), False, 'credentials'
    elif any(params.get(option) for option in SINGLE_OPTIONS):
        item = {option: params.get(option) for option in SINGLE_OPTIONS}
        specs = specs_from_item(item, defaults=defaults, field='')
        project_request = is_project_request(params.get('gitlab'))
        single, field = not project_request, 'gitlab' if project_request else 'credential'
        check_specs(specs, field=field)
    else:  # the purge form (check_shape allows nothing else)
        specs, single, field = [], False, 'credentials'
    scope = exclusive_scope_for(params['exclusive_scope'], specs, defaults=defaults) if params['exclusive'] else None
    return Request(specs, scope, single, field)


def application_result(app):
    """The application in the module's return shape."""
    return {'id': app.get('id'), 'app_id': app.get('appId'), 'display_name': app.get('displayName'),
            'unique_name': app.get('uniqueName')}


def _app_key(params):
    for option, keyword in (('app_id', 'app_id'), ('app_object_id', 'object_id'), ('app_unique_name', 'unique_name')):
        if params.get(option):
            return option, keyword, params[option]
    raise ValidationError('one of app_id, app_object_id or app_unique_name is required')


async def find_application(clients, params, *, required=True):
    """The application named by the options, waiting out replication lag; a clear error when it does not exist.

    With ``required=False`` a missing application is None at once (nothing to delete).
    """
    option, keyword, value = _app_key(params)
    try:
        app = await resolve_application(clients, retry_not_found=required, select=APP_SELECT, **{keyword: value})
    except AzureApiError as err:
        if err.status != 404:
            raise
        app = None
    if not app and required:
        raise ValidationError(
            '{0}: no application with {1} {2!r} was found in the tenant (waited {3} s for directory replication). Fix: check the value, '
            'create the application first (oidc_federation.azure.azure_ad_app), or raise replication_timeout if it was created moments '
            'ago.'.format(option, APP_KEY_LABELS[option], value, params.get('replication_timeout')), field=option)
    return app


def _diff_view(credentials):
    return {'credentials': [dict((k, v) for k, v in credential_result(item).items() if k != 'id') for item in credentials]}


def _removing(params, specs):
    """True when the task only deletes (a missing application then has nothing to delete)."""
    return all(spec.state == STATE_ABSENT for spec in specs) and (not params['exclusive'] or params['state'] == STATE_ABSENT)


def make_core(request):
    """The module's async core for this validated ``Request``."""
    specs = request.specs

    async def core(module, clients):
        params = module.params
        removing = _removing(params, specs)
        # In check mode a missing application is not waited for: an earlier task of the same check run may only have
        # predicted its creation, and nothing a real run writes can appear while check mode runs.
        app = await find_application(clients, params, required=not removing and not module.check_mode)
        gitlab_issuers = params.get('gitlab_issuers') or ()
        if app is None:
            if removing:
                module.warn('the application does not exist, so it has none of the credentials to delete')
            elif params['missing_application'] == 'warn':
                option, _keyword, value = _app_key(params)
                module.warn('check mode: no application with {0} {1!r} exists yet (an earlier task of this run may create it); the '
                            'credentials are planned against an empty set. A real run fails if the application still does not '
                            'exist.'.format(APP_KEY_LABELS[option], value))
            report = plan_without_application(specs, exclusive=params['exclusive'], gitlab_issuers=gitlab_issuers, field=request.field,
                                              exclusive_scope=request.scope)
        else:
            report = await reconcile_application(
                clients, app, specs, exclusive=params['exclusive'], gitlab_issuers=gitlab_issuers, check_mode=module.check_mode,
                field=request.field, exclusive_scope=request.scope)
        result = dict(
            application=application_result(app) if app is not None else None,
            credentials=[credential_result(item) for item in report.after],
            created=report.created, updated=report.updated, deleted=report.deleted,
            results=item_results(report, specs))
        if request.single:
            name = report.names[0] if report.names else None
            found = [item for item in report.after if name and (item.get('name') or '').casefold() == name.casefold()]
            result['credential'] = credential_result(found[0]) if found else None
        return module.result(report.changed, diff=(_diff_view(report.before), _diff_view(report.after)), **result)
    return core


def main():
    """Entry point."""
    module = AzureModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        request = build_specs(module.params)
    except ValidationError as exc:
        module.fail(str(exc), **exc.extra)
    module.run(make_core(request))


if __name__ == '__main__':
    main()
