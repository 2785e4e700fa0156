#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: federation_doctor
short_description: Explain why a GitLab CI/CD job cannot log in to Azure with its ID token
version_added: 0.1.0
description:
  - Predicts what Microsoft Entra ID answers when a CI job exchanges its GitLab ID token for an Azure token with an
    application's federated identity credentials, and explains it. This replaces comparing issuer, subject and audience
    by eye in the portal (GitLab's troubleshooting for AADSTS70021, AADSTS700212 and AADSTS501661).
  - Give the application (O(app_id) or O(app_unique_name)) and either the job's ID token (O(id_token)) or the claims
    the job would present (O(issuer), O(audiences) and O(project_path) or O(project_id), O(ref_type), O(ref), honouring
    the project's O(sub_claim_components); or the O(subject) itself).
  - Evaluates them as Entra ID does - issuer, audience and subject compared exactly and case-sensitively (a trailing
    slash counts), flexible credentials through their claims matching expression - and returns the AADSTS code Entra ID
    would return (RV(aadsts), null when the login would succeed), the credential that came closest, the fields that
    differ with both values (pointing out a difference only in case or in a trailing slash) and concrete fixes.
  - Checks what Entra ID needs from the issuer (AADSTS501661) - C({issuer}/.well-known/openid-configuration) reachable
    over HTTPS with a trusted certificate (O(ca_bundle) is honoured), its C(issuer) equal to the token's, its
    C(jwks_uri) reachable with RS256 keys; with O(id_token), the token's RS256 signature, C(exp) and C(nbf); that the
    application has a service principal (AADSTS7000229); optionally that the tenant the job logs in to exists
    (O(pipeline_tenant_id), AADSTS90002); and which role assignments the service principal holds at O(scope).
  - The order of the checks decides the code when several fields differ - tenant, application, any credential
    (AADSTS70021), issuer (AADSTS700211), the issuer's discovery document and keys (AADSTS501661), signature
    (AADSTS700027), lifetime (AADSTS700024), audience (AADSTS700212), subject (AADSTS7002138 when only the case
    differs, else AADSTS700213), service principal (AADSTS7000229, or AADSTS7000112 when it is disabled).
  - Never writes anything; C(changed) is always false, also in check mode. The token is never returned or logged.
author:
  - oidc_federation.azure contributors (@oidc-federation)
extends_documentation_fragment:
  - oidc_federation.azure.auth
  - oidc_federation.azure.attributes
  - oidc_federation.azure.attributes.info_module
  - oidc_federation.azure.attributes.action_group
options:
  app_id:
    description:
      - The application (client) ID the job logs in with (its C(AZURE_CLIENT_ID)).
      - Exactly one of O(app_id) and O(app_unique_name) is required.
    type: str
  app_unique_name:
    description:
      - The C(uniqueName) of the application (as set by M(oidc_federation.azure.azure_ad_app)).
    type: str
  id_token:
    description:
      - The GitLab ID token of a job (the variable named under C(id_tokens) in C(.gitlab-ci.yml)). Its claims are
        evaluated, its signature is verified with the issuer's keys and its lifetime is checked.
      - Never returned or logged. Mutually exclusive with the claim options (O(issuer), O(audiences), O(subject),
        O(project_path), O(project_id), O(ref_type), O(ref), O(sub_claim_components), O(claim_values)).
    type: str
  issuer:
    description:
      - Without O(id_token), the issuer the job's token carries (C(iss)), the GitLab instance URL exactly as
        configured, for example C(https://gitlab.example.com). Defaults to C(https://gitlab.com).
    type: str
  audiences:
    description:
      - Without O(id_token), the audience the job requests (C(id_tokens.<NAME>.aud)). Defaults to the issuer, as in
        GitLab's Azure tutorial.
    type: list
    elements: str
    aliases: [audience]
  subject:
    description:
      - Without O(id_token), the token's C(sub) claim as is, instead of building it from O(project_path) or
        O(project_id), O(ref_type) and O(ref).
    type: str
  project_path:
    description:
      - Without O(id_token), the full path of the project the job runs in, for example C(mygroup/myproject).
        Case-sensitive. Required when the sub claim components contain C(project_path) (the default).
    type: str
  project_id:
    description:
      - Without O(id_token), the numeric ID of the project. Required when the sub claim components lead with
        C(project_id).
    type: str
  ref_type:
    description:
      - Without O(id_token), whether O(ref) is a branch or a tag. Defaults to V(branch).
    type: str
    choices: [branch, tag]
  ref:
    description:
      - Without O(id_token), the branch or tag the job runs for (short name, for example C(main)).
    type: str
  sub_claim_components:
    description:
      - The project's C(ci_id_token_sub_claim_components) (GitLab project setting) used to build C(sub). Defaults to
        GitLab's C([project_path, ref_type, ref]).
    type: list
    elements: str
  claim_values:
    description:
      - Values of the extra sub claim components the project includes (C(ref_protected), C(environment_protected),
        C(deployment_tier)).
    type: dict
  gitlab_issuers:
    description:
      - More issuer URLs to treat as GitLab (self-managed instances whose host is not C(gitlab.<name>.<tld>)) when
        deciding whether a flexible credential (claims matching expression) may be used with an issuer.
    type: list
    elements: str
    default: []
  pipeline_tenant_id:
    description:
      - The tenant the job logs in to (its C(AZURE_TENANT_ID)), when it may differ from O(tenant_id). It is looked up
        through the authority's OpenID Connect discovery (AADSTS90002 when it does not exist; AADSTS700016 when the
        application lives in another tenant).
    type: str
  scope:
    description:
      - An Azure scope (subscription, resource group, resource or management group), for example
        C(/subscriptions/<id>/resourceGroups/<name>). The role assignments that apply to the service principal there
        (assigned at the scope or inherited from above) are returned in RV(role_assignments).
      - Needs C(Microsoft.Authorization/roleAssignments/read) at the scope; a failed read is reported in RV(checks).
    type: str
  check_issuer:
    description:
      - Fetch the issuer's discovery document and keys. Set to V(false) when the controller cannot reach the issuer
        (then AADSTS501661 and AADSTS700027 are not predicted and the signature is not verified).
      - The controller's network is not Entra ID's - an issuer reachable from here may still be unreachable from the
        internet.
    type: bool
    default: true
notes:
  - Needs the Microsoft Graph application permission C(Application.Read.All) (or any permission that includes it).
  - Entra ID publishes the checks but not their order when several fields differ; the order used here is the one
    described above. Some tenants report a flexible credential that did not match as AADSTS7002131; the doctor
    reports AADSTS700213, with the same meaning.
  - See the collection's C(docs/troubleshooting.md) for every AADSTS code, what the doctor shows and the fix; the
    playbook C(oidc_federation.azure.doctor) wraps this module.
seealso:
  - module: oidc_federation.azure.federated_identity_credential
  - module: oidc_federation.azure.azure_ad_app
  - module: oidc_federation.azure.role_assignment
  - name: Microsoft Entra workload identity federation
    description: How Entra ID matches federated identity credentials.
    link: https://learn.microsoft.com/entra/workload-id/workload-identity-federation
  - name: GitLab OpenID Connect in Azure
    description: GitLab's tutorial and its troubleshooting section.
    link: https://docs.gitlab.com/ci/cloud_services/azure/
'''

EXAMPLES = r'''
- name: Why can the main branch of mygroup/myproject not log in?
  oidc_federation.azure.federation_doctor:
    app_unique_name: gitlab-oidc-mygroup~myproject
    project_path: mygroup/myproject
    ref: main
    audiences: [https://gitlab.com]
  register: doctor

- name: Show the verdict
  ansible.builtin.debug:
    msg: "{{ 'login works' if doctor.would_succeed else doctor.entra_message ~ ' - ' ~ (doctor.fixes | join('; ')) }}"

- name: Check a real ID token of a job, self-managed GitLab, and the roles at a resource group
  oidc_federation.azure.federation_doctor:
    app_id: 00000000-0000-0000-0000-000000000001
    id_token: "{{ lookup('ansible.builtin.env', 'DOCTOR_ID_TOKEN') }}"
    scope: /subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/rg-deploy
  register: doctor

- name: A project whose sub claim leads with its id, a tag pipeline
  oidc_federation.azure.federation_doctor:
    app_id: 00000000-0000-0000-0000-000000000001
    issuer: https://gitlab.example.com
    project_id: '57382910'
    sub_claim_components: [project_id, ref_type, ref]
    ref_type: tag
    ref: v1.2.0
    audiences: [api://AzureADTokenExchange]

- name: Only protected branches may log in (the project's sub claim includes ref_protected)
  oidc_federation.azure.federation_doctor:
    app_unique_name: gitlab-oidc-mygroup~myproject
    project_path: mygroup/myproject
    ref: main
    sub_claim_components: [project_path, ref_type, ref, ref_protected]
    claim_values:
      ref_protected: true

- name: The sub claim as the failed job printed it, an issuer the controller cannot reach, the job's own tenant
  oidc_federation.azure.federation_doctor:
    app_id: 00000000-0000-0000-0000-000000000001
    issuer: https://code.example.com
    gitlab_issuers: [https://code.example.com]   # a self-managed GitLab whose host is not gitlab.<name>.<tld>
    subject: project_path:platform/deployer:ref_type:branch:ref:main
    audiences: [api://AzureADTokenExchange]
    check_issuer: false   # no discovery document or key checks (AADSTS501661 is not predicted)
    pipeline_tenant_id: 5a1d5b0e-7c2f-4d3a-8e9b-0f1a2b3c4d5e   # the AZURE_TENANT_ID of the job

- name: Shared connection options for every module of the collection
  module_defaults:
    group/oidc_federation.azure.azure:
      tenant_id: "{{ azure_tenant_id }}"
      client_id: "{{ azure_client_id }}"
      client_secret: "{{ azure_client_secret }}"
  block:
    - name: Fail the play when the pipeline could not log in
      oidc_federation.azure.federation_doctor:
        app_unique_name: gitlab-oidc-mygroup~myproject
        project_path: mygroup/myproject
        ref: main
      register: doctor
      failed_when: not doctor.would_succeed
'''

RETURN = r'''
would_succeed:
  description: Whether Entra ID would issue a token for what the job presents.
  returned: always
  type: bool
  sample: false
aadsts:
  description: The AADSTS code Entra ID would return, null when the login would succeed.
  returned: always
  type: int
  sample: 700213
error:
  description: The OAuth C(error) Entra ID would send with the code (C(invalid_client), C(unauthorized_client), C(invalid_request)).
  returned: always
  type: str
  sample: invalid_client
entra_message:
  description: The error description Entra ID gives for the code (without trace and correlation ids), null on success.
  returned: always
  type: str
  sample: "AADSTS700213: No matching federated identity record found for presented assertion subject 'project_path:g/p:ref_type:branch:ref:dev'."
explanation:
  description: Why Entra ID answers this way.
  returned: always
  type: str
  sample: "no credential with the token's issuer and audience accepts its subject 'project_path:g/p:ref_type:branch:ref:dev'"
fixes:
  description: Concrete fixes, the most specific first (for the closest credential, then alternatives).
  returned: always
  type: list
  elements: str
  sample:
    - "credential 'deploy' trusts another ref (ref: credential 'main', token 'dev'): add a credential for this ref (see
      suggested_credential), or run the job on the ref the credential trusts"
matched_credential:
  description: The credential Entra ID would use (same keys as an item of RV(credentials)); null when none matches.
  returned: always
  type: dict
  sample: null
closest_credential:
  description: The credential that came closest to accepting what the job presents (most fields accepted), or null
    when the application has none. Same keys as an item of RV(credentials).
  returned: always
  type: dict
  sample: {name: deploy, issuer: https://gitlab.com, audiences: [https://gitlab.com], subject: 'project_path:g/p:ref_type:branch:ref:main',
           claims_matching_expression: null, description: null, id: 6a9c1e0b-3f7d-4c57-9a3b-2f1e0d9c8b7a, issuer_matches: true,
           audience_matches: true, subject_matches: false}
differences:
  description: The fields of RV(closest_credential) that do not accept what is presented (empty on success).
  returned: always
  type: list
  elements: dict
  contains:
    field:
      description: C(issuer), C(audience), C(subject) or C(claims_matching_expression).
      type: str
    credential:
      description: The credential's value.
      type: raw
    token:
      description: The value the job presents.
      type: raw
    note:
      description: An easy-to-miss kind of difference (only upper/lower case, only a trailing slash, only surrounding
        whitespace), or why an expression can never match; null otherwise.
      type: str
    details:
      description: Which components of a GitLab subject differ, or which conditions of an expression are false.
      type: list
      elements: str
  sample: [{field: subject, credential: 'project_path:g/p:ref_type:branch:ref:main', token: 'project_path:g/p:ref_type:branch:ref:dev',
            note: null, details: ["ref: credential 'main', token 'dev'"]}]
suggested_credential:
  description: A credential (options of M(oidc_federation.azure.federated_identity_credential)) that accepts exactly what
    the job presents, when a credential mismatch is the problem; null otherwise.
  returned: always
  type: dict
  sample: {issuer: https://gitlab.com, audiences: [https://gitlab.com], subject: 'project_path:g/p:ref_type:branch:ref:dev'}
presented:
  description: What the job presents (C(source) is C(id_token) or C(claims)); only the claims relevant to the login
    (never the token, user names or e-mail addresses).
  returned: always
  type: dict
  sample: {source: claims, claims: {iss: https://gitlab.com, sub: 'project_path:g/p:ref_type:branch:ref:dev', aud: https://gitlab.com,
           project_path: g/p, ref: dev, ref_type: branch}}
application:
  description: The application (C(app_id), C(object_id), C(unique_name), C(display_name)), null when it does not exist.
  returned: always
  type: dict
  sample: {app_id: 00000000-0000-0000-0000-000000000001, object_id: 11111111-1111-1111-1111-111111111111,
           unique_name: gitlab-oidc-g~p, display_name: gitlab-oidc-g~p}
service_principal:
  description: The application's service principal (C(id), C(display_name), C(enabled)), null when there is none.
  returned: always
  type: dict
  sample: {id: 22222222-2222-2222-2222-222222222222, display_name: gitlab-oidc-g~p, enabled: true}
credentials:
  description: Every federated identity credential of the application, sorted by name, with what each accepts.
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
      description: The flexible expression, or null.
      type: str
    issuer_matches:
      description: Whether the issuer equals the token's C(iss).
      type: bool
    audience_matches:
      description: Whether the audience is in the token's C(aud).
      type: bool
    subject_matches:
      description: Whether the subject equals the token's C(sub) (or the expression holds).
      type: bool
checks:
  description: Every check in Entra ID's order, with C(status) C(ok), C(fail), C(warn) or C(skipped) and a detail.
  returned: always
  type: list
  elements: dict
  sample: [{name: issuer_discovery, status: ok, detail: '2 usable RS256 key(s) at https://gitlab.com/oauth/discovery/keys'}]
issuer_metadata:
  description: What the issuer serves (C(discovery_url), C(reachable), C(ok), C(problem), C(document_issuer),
    C(jwks_uri), C(keys) (count), C(rsa_keys) (key ids of usable RS256 keys), C(warnings)); null with O(check_issuer=false).
  returned: always
  type: dict
  sample: {issuer: https://gitlab.com, discovery_url: https://gitlab.com/.well-known/openid-configuration, reachable: true, ok: true,
           problem: null, document_issuer: https://gitlab.com, jwks_uri: https://gitlab.com/oauth/discovery/keys, keys: 2,
           rsa_keys: [kewiQq9jiC84CvSsJYOB-N6A8WFLSV20Mb-y7IlWDSQ], warnings: []}
token:
  description: With O(id_token), its header (C(alg), C(kid), C(typ)), C(signature) (C(valid), C(invalid), C(unknown_key),
    C(unsupported_alg) or C(not_checked)), C(signature_problem), C(lifetime_ok), C(lifetime_problem), C(expires_at),
    C(not_before), C(issued_at); null otherwise.
  returned: always
  type: dict
  sample: {alg: RS256, kid: kewiQq9jiC84CvSsJYOB-N6A8WFLSV20Mb-y7IlWDSQ, typ: JWT, signature: valid, signature_problem: null,
           lifetime_ok: false, lifetime_problem: 'the token expired at 2026-01-01T12:05:00Z, 3600 s ago', expires_at: '2026-01-01T12:05:00Z',
           not_before: '2026-01-01T11:59:55Z', issued_at: '2026-01-01T12:00:00Z'}
role_assignments:
  description: With O(scope), the role assignments that apply to the service principal there (C(role), C(role_definition_guid),
    C(scope), C(inherited) (assigned above the scope), C(id), C(condition)); empty without a service principal; null
    without O(scope) or when they could not be read.
  returned: always
  type: list
  elements: dict
  sample: [{role: Reader, role_definition_guid: acdd72a7-3385-48ef-bd42-f606fba81ae7, scope: /subscriptions/00000000-0000-0000-0000-000000000002,
            inherited: true, id: /subscriptions/00000000-0000-0000-0000-000000000002/providers/Microsoft.Authorization/roleAssignments/x,
            condition: null}]
'''

from ansible_collections.oidc_federation.azure.plugins.module_utils._arm import parse_scope  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._doctor import (  # noqa: E402
    DoctorRequest,
    presented_from_claims,
    presented_from_token,
    run_doctor,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import ValidationError  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._fic import FicValidationError  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._graph import is_guid  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._module import ArgumentSpec, AzureModule  # noqa: E402

CLAIM_OPTIONS = ('issuer', 'audiences', 'subject', 'project_path', 'project_id', 'ref_type', 'ref', 'sub_claim_components', 'claim_values')
BUILDER_OPTIONS = ('project_path', 'project_id', 'ref_type', 'ref', 'sub_claim_components', 'claim_values')


def argument_spec():
    """The module's options and constraints (the shared auth options are added by AzureModule)."""
    options = dict(
        app_id=dict(type='str'),
        app_unique_name=dict(type='str'),
        id_token=dict(type='str', no_log=True),
        issuer=dict(type='str'),
        audiences=dict(type='list', elements='str', aliases=['audience']),
        subject=dict(type='str'),
        project_path=dict(type='str'),
        project_id=dict(type='str'),
        ref_type=dict(type='str', choices=['branch', 'tag']),
        ref=dict(type='str'),
        sub_claim_components=dict(type='list', elements='str'),
        claim_values=dict(type='dict'),
        gitlab_issuers=dict(type='list', elements='str', default=[]),
        pipeline_tenant_id=dict(type='str'),
        scope=dict(type='str'),
        check_issuer=dict(type='bool', default=True),
    )
    return ArgumentSpec(
        options,
        mutually_exclusive=[['app_id', 'app_unique_name']] + [['id_token', option] for option in CLAIM_OPTIONS]
        + [['subject', option] for option in BUILDER_OPTIONS],
        required_one_of=[['app_id', 'app_unique_name']],
        checks=[check_options],
    )


def check_options(params):
    """Constraints Ansible cannot explain well (run before any request)."""
    if params.get('app_id') is not None and not is_guid(params['app_id']):
        raise FicValidationError('app_id', '{0!r} is not an application (client) ID'.format(params['app_id']),
                                 'give the GUID shown as "Application (client) ID" (the job\'s AZURE_CLIENT_ID), or app_unique_name')
    if params.get('app_unique_name') is not None and not params['app_unique_name'].strip():
        raise FicValidationError('app_unique_name', 'must not be empty', 'give the uniqueName, or app_id')
    tenant = params.get('pipeline_tenant_id')
    if tenant is not None and not tenant.replace('-', '').replace('.', '').isalnum():
        raise FicValidationError('pipeline_tenant_id', '{0!r} is not a tenant ID or domain'.format(tenant),
                                 'give the directory (tenant) ID the job uses (AZURE_TENANT_ID)')


def build_request(params):
    """Validate the options into a ``DoctorRequest`` (pure, before any request)."""
    if params.get('id_token') is not None:
        presented = presented_from_token(params['id_token'])
    else:
        presented = presented_from_claims(
            issuer=params.get('issuer'), audiences=params.get('audiences'), subject=params.get('subject'),
            project_path=params.get('project_path'), project_id=params.get('project_id'), ref_type=params.get('ref_type'),
            ref=params.get('ref'), sub_claim_components=params.get('sub_claim_components'), claim_values=params.get('claim_values'))
    scope = parse_scope(params['scope']) if params.get('scope') else None
    return DoctorRequest(presented, app_id=params.get('app_id'), app_unique_name=params.get('app_unique_name'),
                         gitlab_issuers=tuple(params.get('gitlab_issuers') or ()), pipeline_tenant=params.get('pipeline_tenant_id'),
                         scope=scope, check_issuer=params['check_issuer'])


def make_core(request):
    """The module's async core: read, diagnose, report (never changed)."""
    async def core(module, clients):
        result = await run_doctor(clients, request)
        return module.result(False, **result)
    return core


def main():
    """Entry point."""
    module = AzureModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        request = build_request(module.params)
    except ValidationError as exc:
        module.fail(str(exc), **exc.extra)
    module.run(make_core(request))


if __name__ == '__main__':
    main()
