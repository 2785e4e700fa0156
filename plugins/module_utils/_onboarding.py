# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""Onboarding of GitLab projects, one or many in one call: the engine of ``gitlab_oidc_projects`` and the role.

A project (``ProjectInput``, built and validated by ``parse_projects`` before any request) asks for an application
(its own, or one shared with other projects), federated identity credentials that trust its CI/CD jobs and Azure
role assignments of the application's service principal; or, ``state=absent``, for their removal.

``reconcile(clients, projects, ...)`` works in three steps, for every project of the call at once:

1. **Read in bulk.** Applications by the project marker tag, then by ``uniqueName`` (with few projects one request
   per key; with many, one paged listing of the applications the collection manages plus ``uniqueName in (...)``
   queries for the rest), service principals by ``appId in (...)``, owners and credentials per application, role
   definitions once per scope and name, role assignments once per scope (or per principal when there are few),
   scope checks once per scope. Every Graph read but the paged listing is a ``GraphCall`` of the core sent in JSON
   ``$batch``es (``_batch.run_graph_calls``, paced by ``clients.graph_pacer``).
2. **Plan every project before its first write** (``_graph.decide_application``, ``_graph_fic.plan_application``,
   ``_arm.plan_principal_assignments`` over what was read): bad input, a role that does not resolve, a privileged
   role, a scope that does not exist or that the operator cannot write to, a shared application configured
   differently by its projects: the project fails here and nothing is written for it.
3. **Write**, unless in check mode, Graph's writes through ``$batch``: projects with their own application in
   phases across all of them (``Run._own_present``: applications, then service principals, then per application one
   ``dependsOn`` lane of owners and credentials while the ARM role assignments run under a limit), the projects of a
   shared application one after the other (each planned against what the previous one left, as the role's
   ``throttle: 1`` did); per project application + service principal, then credentials, then role assignments.
   A failure fails that project only; the next run converges it (every write is keyed: ``uniqueName`` upserts,
   credential names, deterministic role assignment names).

Identity of a project's own application (rename-safe): when the project id is known, the application carries the
marker tag ``project_marker(issuer, project_id)`` and is found by it first, whatever its ``uniqueName``; else (and
for applications made before markers) by the ``uniqueName`` derived from the project (``_gitlab.app_unique_name``,
from the id when the sub claim leads with ``project_id``, else from the path), then by the other derivation. A
``uniqueName`` is immutable, so a renamed project keeps its application (and its name); display name, description,
marker and credentials follow the project.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass, field as dc_field, replace as dataclass_replace
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.oidc_federation.azure.plugins.module_utils._arm import (
    DesiredAssignment,
    PrincipalPlan,
    apply_principal_plan,
    assignment_scope_key,
    change_result,
    list_scope_assignments,
    parse_role,
    parse_scope,
    plan_principal_assignments,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._batch import BatchStats, chain, run_graph_calls
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import AzureApiError, ValidationError
from ansible_collections.oidc_federation.azure.plugins.module_utils._fic import FicValidationError
from ansible_collections.oidc_federation.azure.plugins.module_utils._gitlab import (
    DEFAULT_SUB_CLAIM_COMPONENTS,
    app_unique_name,
    validate_project_id,
    validate_project_path,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._graph import (
    CREATE,
    DELETE,
    MANAGED_TAG,
    SP_SELECT,
    ApplicationRead,
    ApplicationSpec,
    application_filter,
    application_get_call,
    application_write_call,
    applications_list_call,
    apply_application_plan,
    chunks,
    plan_purge_of,
    decide_application,
    explain_name_conflict,
    in_filter,
    items_of,
    list_applications,
    object_of,
    owner_calls,
    owner_ids_of,
    owners_list_call,
    service_principal_create_call,
    service_principal_display_name,
    service_principal_get_call,
    service_principals_list_call,
    tenant_id_of,
    upserted_of,
    written_application,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._graph_fic import (
    SCOPE_GITLAB_PROJECT,
    CredentialDefaults,
    _report as credential_report,
    applied_credentials,
    credentials_list_call,
    credentials_of,
    exclusive_scope_for,
    item_results,
    plan_application as plan_credentials,
    plan_calls as plan_credential_calls,
    specs_from_item,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._module import gather_limited
from ansible_collections.oidc_federation.azure.plugins.module_utils._onboarding_gitlab import (
    GitLabOptions,
    GitLabStage,
    check_write_access,
    parse_gitlab_options,
    plan as plan_variables,
    plan_items,
    reconcile_identity,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._private_files import cache_subdir
from ansible_collections.oidc_federation.azure.plugins.module_utils._results import atomic_write
from ansible_collections.oidc_federation.azure.plugins.module_utils._token_cache import NamedLocks

PROJECT_MARKER_PREFIX = 'oidc_federation.azure:gitlab-project:'
MAX_TAG_LENGTH = 256
ROLE_LABEL = 'managed by the oidc_federation.azure gitlab_oidc role'
DEFAULT_ISSUER = 'https://gitlab.com'
DEFAULT_NAME_PREFIX = 'gitlab'
STATES = ('present', 'absent')
# With at least this many applications to find, read the collection's applications in one paged listing instead of
# one request per key; the same for role assignments per scope.
BULK_READ_THRESHOLD = 25
DEFAULT_CONCURRENCY = 16
# Calls on one shared application run one at a time (Run._shared_app_locks): lock files in <token cache dir>/locks; a
# call waits at most this long for another run to finish with it.
SHARED_APP_LOCKS_DIR = 'locks'
SHARED_APP_LOCK_TIMEOUT_S = 900.0
# Graph $batch requests in flight at once (each carries up to 20 requests); at most the run's concurrency.
DEFAULT_BATCH_LIMIT = 4
# Stand-in principal when planning role assignments for a service principal that does not exist yet (check mode).
NO_PRINCIPAL = '00000000-0000-0000-0000-000000000000'

STATUS_FAILED = 'failed'
STATUS_PLANNED = 'planned'
STATUS_ONBOARDED = 'onboarded'
STATUS_OFFBOARDED = 'offboarded'


def project_marker(issuer: str, project_id: str) -> str:
    """The tag that marks the application of GitLab project ``project_id`` of ``issuer``.

    ``oidc_federation.azure:gitlab-project:<id>@<issuer>``; an issuer too long for a tag (256 characters) is
    replaced by ``sha256:`` and 32 hex digits of its SHA-256.
    """
    text = '{0}{1}@{2}'.format(PROJECT_MARKER_PREFIX, project_id, issuer)
    if len(text) <= MAX_TAG_LENGTH:
        return text
    digest = hashlib.sha256(issuer.encode('utf-8')).hexdigest()[:32]
    return '{0}{1}@sha256:{2}'.format(PROJECT_MARKER_PREFIX, project_id, digest)


# --------------------------------------------------------------------------------------------------------------------
# Input: one project as the module (or the role) describes it, validated before any request
# --------------------------------------------------------------------------------------------------------------------

# Option names of the module's project items whose errors from the core carry other names.
_FIC_FIELDS = {
    'gitlab.branches': 'branches', 'gitlab.tags': 'tags', 'gitlab.ref': 'branches', 'gitlab.any_ref': 'any_ref',
    'gitlab.project_path': 'project_path', 'gitlab.project_id': 'project_id',
    'gitlab.sub_claim_components': 'sub_claim_components', 'gitlab.name_prefix': 'credential_name_prefix',
    'issuer': 'issuer', 'audiences': 'audience', 'credentials': 'branches', 'project_path': 'project_path',
    'project_id': 'project_id', 'ci_id_token_sub_claim_components': 'sub_claim_components',
    'name_prefix': 'credential_name_prefix', 'branches': 'branches', 'tags': 'tags', 'any_ref': 'any_ref',
}
_APP_FIELDS = {
    'unique_name': 'app_unique_name', 'display_name': 'app_display_name', 'description': 'app_description',
    'tags': 'app_tags', 'owners': 'app_owners', 'service_management_reference': 'app_service_management_reference',
    'force_delete': 'app_unique_name', 'adopt_by_display_name': 'app_unique_name',
}


class Namer:
    """Names the options of one project in messages: ``projects[3].branches`` (module) or ``gitlab_oidc_branches``
    (the role passes ``variable_prefix``), prefixed by the project's key."""

    def __init__(self, key: str, index: int, variable_prefix: Optional[str]) -> None:
        self.key = key
        self.index = index
        self.variable_prefix = variable_prefix

    def __call__(self, option: str) -> str:
        if self.variable_prefix is not None:
            return self.variable_prefix + option
        return 'projects[{0}].{1}'.format(self.index, option)

    def error(self, option: str, message: str, fix: str) -> ValidationError:
        """A ``ValidationError`` ``<key>: <field>: <message>. Fix: <fix>.``"""
        field = self(option)
        return ValidationError('{0}: {1}: {2}. Fix: {3}.'.format(self.key, field, message.rstrip('.'), fix.rstrip('.')),
                               field=field, project=self.key)

    def rename(self, err: ValidationError, mapping: Mapping[str, str], default: str) -> ValidationError:
        """``err`` from the core, re-worded with this project's option names (its ``field`` mapped through ``mapping``)."""
        field = err.extra.get('field') if isinstance(err.extra, dict) else None
        text = str(err)
        option = default
        if isinstance(field, str):
            bare = field.split('.', 1)[1] if field.startswith('projects[') else field
            option = mapping.get(bare, mapping.get(bare.split('[', 1)[0], default))
            if text.startswith(field + ': '):
                text = text[len(field) + 2:]
        name = self(option)
        if not text.startswith(name + ': '):
            text = '{0}: {1}'.format(name, text)
        return ValidationError('{0}: {1}'.format(self.key, text), field=name, project=self.key)


@dataclass(frozen=True)
class AssignmentInput:
    """One role assignment of a project: the parsed scope and role, the description, its index in the list."""

    desired: DesiredAssignment
    index: int


@dataclass
class ProjectInput:
    """One project, validated. ``unique_name`` is the key of its application (its own: explicit or derived; shared:
    the shared name); ``alternate_names`` are other derivations an existing application may carry (adopted)."""

    key: str
    index: int
    namer: Namer
    state: str
    project_path: str
    project_id: Optional[str]
    sub_claim_components: Tuple[str, ...]
    claim_values: Dict[str, Any]
    issuer: str
    audience: str
    gitlab_issuers: Tuple[str, ...]
    branches: Tuple[str, ...]
    tags: Tuple[str, ...]
    any_ref: bool
    name_prefix: str
    shared: bool
    unique_name: str
    explicit_name: bool
    alternate_names: Tuple[str, ...]
    marker: Optional[str]
    app_spec: ApplicationSpec
    credential_specs: list
    credential_defaults: CredentialDefaults
    assignments: Tuple[AssignmentInput, ...]
    subscription_id: Optional[str]
    tenant_id: Optional[str]
    allow_privileged: bool
    shared_app_cleanup: bool
    purge: bool
    raw: Dict[str, Any] = dc_field(default_factory=dict)
    gitlab: Optional[GitLabOptions] = None
    components_given: bool = False

    @property
    def trust(self) -> dict:
        """The trust as requested (for the report)."""
        return {'branches': [] if self.any_ref else list(self.branches), 'tags': [] if self.any_ref else list(self.tags),
                'any_ref': self.any_ref, 'sub_claim_components': list(self.sub_claim_components)}


def _text(value: Any) -> Optional[str]:
    """A string option: None or empty means not given."""
    if value is None:
        return None
    text = str(value)
    return text if text.strip() else None


def _list(value: Any, namer: Namer, option: str) -> Tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise namer.error(option, 'must be a list', 'write {0}: [item, ...]'.format(namer(option)))
    out: List[str] = []
    for item in value:
        text = str(item)
        if text not in out:
            out.append(text)
    return tuple(out)


def derived_unique_names(project_path: str, project_id: Optional[str], components: Sequence[str]) -> Tuple[str, Tuple[str, ...]]:
    """(primary, alternates): the ``uniqueName`` a new application of the project gets, and the other derivation an
    existing one may carry (from the id when the sub claim leads with ``project_id``, else from the path)."""
    by_path = app_unique_name(project_path=project_path)
    if project_id is None:
        return by_path, ()
    by_id = app_unique_name(project_id=project_id)
    if components and components[0] == 'project_id':
        return by_id, (by_path,)
    return by_path, (by_id,)


def _display_name(item: Mapping[str, Any], path: str, shared_name: Optional[str]) -> str:
    return _text(item.get('app_display_name')) or (shared_name if shared_name else 'GitLab CI/CD ' + path)


def _description(item: Mapping[str, Any], path: str, shared_name: Optional[str]) -> str:
    given = _text(item.get('app_description'))
    if given:
        return given
    if shared_name:
        return 'GitLab CI/CD of several projects logs in to Azure with OpenID Connect ({0})'.format(ROLE_LABEL)
    return 'GitLab CI/CD of {0} logs in to Azure with OpenID Connect ({1})'.format(path, ROLE_LABEL)


def parse_project(item: Mapping[str, Any], index: int, *, variable_prefix: Optional[str] = None,
                  defaults: Optional[Mapping[str, Any]] = None) -> ProjectInput:
    """Validate one project item (module option names; ``defaults`` fill what the item leaves out). Pure.

    Raises ``ValidationError`` naming the project (its key) and the option, with the fix.
    """
    merged = dict(defaults or {})
    merged.update({k: v for k, v in item.items() if v is not None})
    key = str(merged.get('key') or merged.get('project_path') or 'projects[{0}]'.format(index))
    namer = Namer(key, index, variable_prefix)
    state = merged.get('state') or 'present'
    if state not in STATES:
        raise namer.error('state', 'must be present or absent, got {0!r}'.format(state), 'use present or absent')
    try:
        path = validate_project_path(merged.get('project_path'), field='project_path')
        project_id = _text(merged.get('project_id'))
        if project_id is not None:
            project_id = validate_project_id(project_id, field='project_id')
    except FicValidationError as err:
        raise namer.rename(err, _FIC_FIELDS, 'project_path') from None
    given_components = _list(merged.get('sub_claim_components'), namer, 'sub_claim_components')
    components = given_components or DEFAULT_SUB_CLAIM_COMPONENTS
    issuer = _text(merged.get('issuer')) or DEFAULT_ISSUER
    audience = _text(merged.get('audience')) or issuer
    gitlab_issuers = _list(merged.get('gitlab_issuers'), namer, 'gitlab_issuers')
    any_ref = bool(merged.get('any_ref'))
    branches = () if any_ref else _list(merged.get('branches'), namer, 'branches')
    tags = () if any_ref else _list(merged.get('tags'), namer, 'tags')
    name_prefix = _text(merged.get('credential_name_prefix')) or DEFAULT_NAME_PREFIX
    claim_values = merged.get('claim_values') or {}
    if not isinstance(claim_values, Mapping):
        raise namer.error('claim_values', 'must be a dictionary', 'write claim_values: {ref_protected: true}')
    if state == 'present' and not (any_ref or branches or tags):
        raise namer.error('branches', '{0}, {1} and {2} are all empty, so no CI/CD job of {3} could log in'.format(
            namer('branches'), namer('tags'), namer('any_ref'), path),
            'list branches (e.g. [main]) and/or tags (e.g. [\'v*\']), use \'*\' for all branches or tags, or set {0}: true'.format(
                namer('any_ref')))
    shared_name = _text(merged.get('shared_app'))
    explicit = _text(merged.get('app_unique_name'))
    try:
        if shared_name:
            unique_name, alternates, explicit_name = shared_name, (), True
        elif explicit:
            unique_name, alternates, explicit_name = explicit, (), True
        else:
            unique_name, alternates = derived_unique_names(path, project_id, components)
            explicit_name = False
    except FicValidationError as err:
        raise namer.rename(err, _FIC_FIELDS, 'project_path') from None
    marker = project_marker(issuer, project_id) if (project_id is not None and not shared_name) else None
    user_tags = list(_list(merged.get('app_tags'), namer, 'app_tags'))
    if marker is not None and marker not in user_tags:
        user_tags.append(marker)
    app_params = {
        'unique_name': unique_name, 'state': state, 'display_name': _display_name(merged, path, shared_name),
        'description': _description(merged, path, shared_name), 'tags': user_tags or None,
        'owners': list(merged['app_owners']) if merged.get('app_owners') else None,
        'service_management_reference': _text(merged.get('app_service_management_reference')),
        'service_principal': True,
        'purge': bool(merged.get('purge')) if state == 'absent' else None,
    }
    try:
        app_spec = ApplicationSpec.from_params(app_params)
    except ValidationError as err:
        raise namer.rename(err, _APP_FIELDS, 'app_unique_name') from None
    defaults_fic = CredentialDefaults(issuer=issuer, gitlab_issuers=gitlab_issuers, project_path=path, project_id=project_id)
    specs: list = []
    # With the GitLab API and no id yet, the id (and perhaps the sub claim) comes from GitLab: the credentials are
    # planned once they are known (Run._lookup parses the project again).
    deferred = bool(merged.get('gitlab_api')) and project_id is None
    if state == 'present' and not deferred:
        request = {'project_path': path, 'sub_claim_components': list(components), 'claim_values': dict(claim_values) or None,
                   'name_prefix': name_prefix, 'any_ref': any_ref or None, 'branches': list(branches) or None,
                   'tags': list(tags) or None}
        if project_id is not None:
            request['project_id'] = project_id
        try:
            specs = specs_from_item({'issuer': issuer, 'audiences': [audience], 'gitlab': request}, defaults=defaults_fic)
        except ValidationError as err:
            raise namer.rename(err, _FIC_FIELDS, 'branches') from None
    gitlab = parse_gitlab_options(merged, namer)
    subscription_id = _text(merged.get('subscription_id'))
    owner_label = shared_name or path
    assignments = _parse_assignments(merged.get('role_assignments'), namer, subscription_id, owner_label)
    return ProjectInput(
        key=key, index=index, namer=namer, state=state, project_path=path, project_id=project_id,
        sub_claim_components=tuple(components), claim_values=dict(claim_values), issuer=issuer, audience=audience,
        gitlab_issuers=gitlab_issuers, branches=branches, tags=tags, any_ref=any_ref, name_prefix=name_prefix,
        shared=bool(shared_name), unique_name=unique_name, explicit_name=explicit_name, alternate_names=alternates,
        marker=marker, app_spec=app_spec, credential_specs=specs, credential_defaults=defaults_fic,
        assignments=assignments, subscription_id=subscription_id, tenant_id=_text(merged.get('tenant_id')),
        allow_privileged=bool(merged.get('allow_privileged_roles')),
        shared_app_cleanup=True if merged.get('shared_app_cleanup') is None else bool(merged.get('shared_app_cleanup')),
        purge=bool(merged.get('purge')), raw=merged, gitlab=gitlab, components_given=bool(given_components))


def _parse_assignments(items: Any, namer: Namer, subscription_id: Optional[str], owner_label: str) -> Tuple[AssignmentInput, ...]:
    if items is None:
        return ()
    if not isinstance(items, (list, tuple)):
        raise namer.error('role_assignments', 'must be a list', 'write role_assignments: [{role: Reader}, ...]')
    out = []
    seen: Dict[Tuple[str, Tuple[str, str]], int] = {}
    for index, item in enumerate(items):
        label = '{0}[{1}]'.format(namer('role_assignments'), index)
        if not isinstance(item, Mapping):
            raise namer.error('role_assignments', 'entry {0} must be a dictionary with role and scope (or resource_group / '
                              'subscription_id)'.format(index), 'write - role: Reader')
        role_text = item.get('role')
        scope_text = _text(item.get('scope'))
        if scope_text is None:
            sub = _text(item.get('subscription_id')) or subscription_id
            if sub is None:
                raise ValidationError(
                    '{0}: {1} (role {2}) has no scope and no subscription. Fix: set its scope, or its subscription_id, or {3} '
                    '(default: the AZURE_SUBSCRIPTION_ID environment variable).'.format(
                        namer.key, label, role_text, namer('subscription_id')), field=label + '.scope', project=namer.key)
            group = _text(item.get('resource_group'))
            scope_text = '/subscriptions/{0}'.format(sub) + ('/resourceGroups/{0}'.format(group) if group else '')
        try:
            scope = parse_scope(scope_text, label + '.scope')
            role = parse_role(role_text, label + '.role')
        except ValidationError as err:
            raise ValidationError('{0}: {1}'.format(namer.key, err), field=label, project=namer.key) from None
        description = _text(item.get('description')) or 'GitLab CI/CD of {0} ({1})'.format(owner_label, ROLE_LABEL)
        key = (scope.key, role.key)
        if key in seen:
            raise ValidationError('{0}: {1}.role: role {2!r} at scope {3} is already requested by {4}[{5}]. Fix: list each '
                                  '(scope, role) once.'.format(namer.key, label, role.value, scope.id, namer('role_assignments'),
                                                               seen[key]), field=label + '.role', project=namer.key)
        seen[key] = index
        out.append(AssignmentInput(DesiredAssignment(scope, role, description, field=label), index))
    return tuple(out)


def parse_projects(items: Sequence[Mapping[str, Any]], *, variable_prefix: Optional[str] = None,
                   defaults: Optional[Mapping[str, Any]] = None) -> Tuple[List[ProjectInput], Dict[str, ValidationError]]:
    """Validate every item: (valid projects, {key: error} for the others). Keys must be unique."""
    projects: List[ProjectInput] = []
    errors: Dict[str, ValidationError] = {}
    seen: Dict[str, int] = {}
    for index, item in enumerate(items):
        key = str(item.get('key') or item.get('project_path') or 'projects[{0}]'.format(index))
        if key in seen:
            errors[key] = ValidationError('{0}: projects[{1}] has the same key as projects[{2}]. Fix: give every project its own '
                                          'key (default: its project path).'.format(key, index, seen[key]), field='key', project=key)
            continue
        seen[key] = index
        try:
            projects.append(parse_project(item, index, variable_prefix=variable_prefix, defaults=defaults))
        except ValidationError as err:
            errors[key] = err
    return projects, errors


# --------------------------------------------------------------------------------------------------------------------
# Application groups: the projects of one application (own: one project; shared: several)
# --------------------------------------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What happened to one project (or why it failed)."""

    project: ProjectInput
    failed: bool = False
    msg: Optional[str] = None
    error: Optional[dict] = None
    changed: bool = False
    application: Optional[dict] = None
    credentials: list = dc_field(default_factory=list)
    credentials_deleted: list = dc_field(default_factory=list)
    credential_changes: bool = False
    assignments: list = dc_field(default_factory=list)
    assignments_removed: list = dc_field(default_factory=list)
    app_actions: list = dc_field(default_factory=list)
    warnings: list = dc_field(default_factory=list)
    diff: Optional[dict] = None
    found: bool = False
    removed: bool = False
    kept_because: str = ''
    gitlab: Any = None
    ci_variables: Optional[list] = None
    purged: list = dc_field(default_factory=list)

    def fail(self, exc: BaseException) -> None:
        """Record ``exc`` as this project's failure (a message naming the project)."""
        self.failed = True
        if isinstance(exc, ValidationError):
            text = str(exc)
            self.msg = text if text.startswith(self.project.key + ':') else '{0}: {1}'.format(self.project.key, text)
            return
        err = exc if isinstance(exc, AzureApiError) else AzureApiError.from_exception(exc)
        if err is None:
            self.msg = '{0}: unexpected error: {1}: {2}'.format(self.project.key, type(exc).__name__, exc)
            return
        self.msg = '{0}: {1}'.format(self.project.key, err)
        self.error = err.to_dict()


@dataclass
class AppGroup:
    """The projects that share one application (a project with its own application is a group of one)."""

    unique_name: str
    shared: bool
    projects: List[ProjectInput]
    spec: Optional[ApplicationSpec] = None
    current: Optional[dict] = None
    found_by: Optional[str] = None
    service_principal: Optional[dict] = None
    owners: Optional[list] = None
    display_matches: Optional[list] = None
    credentials: Optional[list] = None

    @property
    def key(self) -> str:
        return self.unique_name.lower()


@dataclass
class _Work:
    """One application's writes in flight (``Run._own_present``: a project's own application; a shared application's
    write, or one project's credentials on it): the plans, what was written, the first error."""

    group: Optional[AppGroup]
    project: Optional[ProjectInput] = None
    outcome: Optional[Outcome] = None
    app_plan: Any = None
    credential_plan: Any = None
    role_plan: Optional[PrincipalPlan] = None
    app: Optional[dict] = None
    sp: Optional[dict] = None
    report: Any = None
    after: Optional[list] = None
    lane: Optional[list] = None
    error: Optional[BaseException] = None

    @property
    def live(self) -> bool:
        """Nothing failed yet: the next phases run for it."""
        return self.error is None and (self.outcome is None or not self.outcome.failed)

    def fail(self, exc: BaseException) -> None:
        """Record the first failure (and fail the project, if it has one): later phases skip this work."""
        if self.error is None:
            self.error = exc
        if self.outcome is not None and not self.outcome.failed:
            self.outcome.fail(exc)


_SHARED_APP_FIELDS = (('display_name', 'app_display_name'), ('description', 'app_description'), ('tags', 'app_tags'),
                      ('owners', 'app_owners'), ('service_management_reference', 'app_service_management_reference'))


def group_projects(projects: Sequence[ProjectInput], outcomes: Mapping[str, Outcome]) -> List[AppGroup]:
    """Group projects by application. The projects of a shared application must agree on its settings; the ones that
    differ from the first project fail (with both values named). Two projects claiming one own application fail."""
    groups: Dict[str, AppGroup] = {}
    order: List[str] = []
    for project in projects:
        key = project.unique_name.lower()
        group = groups.get(key)
        if group is None:
            groups[key] = AppGroup(project.unique_name, project.shared, [project], spec=project.app_spec)
            order.append(key)
            continue
        first = group.projects[0]
        if not (project.shared and group.shared):
            outcomes[project.key].fail(project.namer.error(
                'app_unique_name', 'application {0!r} is also the application of {1}'.format(project.unique_name, first.key),
                'give each project its own application, or set shared_app on every project that shares it'))
            continue
        for attr, option in _SHARED_APP_FIELDS:
            mine, theirs = getattr(project.app_spec, attr), getattr(first.app_spec, attr)
            if attr == 'tags':
                mine, theirs = sorted(mine or ()), sorted(theirs or ())
            if mine != theirs:
                outcomes[project.key].fail(project.namer.error(
                    option, 'the shared application {0!r} gets {1!r} from {2} but {3!r} from this project'.format(
                        project.unique_name, theirs, first.key, mine),
                    'set the same {0} on every project of the shared application (group_vars)'.format(project.namer(option))))
                break
        else:
            group.projects.append(project)
    for group in groups.values():
        present = [p for p in group.projects if p.state == 'present']
        group.spec = (present or group.projects)[0].app_spec
    return [groups[k] for k in order]


# --------------------------------------------------------------------------------------------------------------------
# Reads
# --------------------------------------------------------------------------------------------------------------------

def _raise(group: 'AppGroup', err: BaseException) -> None:
    raise err


class Reader:
    """Reads everything the plan needs, in bulk, into the groups (no writes).

    Every per-key read is a ``GraphCall`` built by the core (``_graph``/``_graph_fic``) and sent in ``$batch``es
    (``run_graph_calls``): marker filters, ``uniqueName`` (one GET per key, or ``uniqueName in (...)`` chunks),
    display names, service principals (by ``appId``, or ``appId in (...)``), owners and credentials per
    application. The paged listing of the applications the collection manages stays a paged GET. A read that fails
    (after the retries) calls ``on_error(group, err)`` for each group it was for (default: raise).
    """

    def __init__(self, clients: Any, *, bulk_threshold: int = BULK_READ_THRESHOLD,
                 batch_limit: int = DEFAULT_BATCH_LIMIT, stats: Optional[BatchStats] = None,
                 on_error: Optional[Callable[['AppGroup', BaseException], None]] = None) -> None:
        self.clients = clients
        self.bulk_threshold = bulk_threshold
        self.batch_limit = batch_limit
        self.stats = stats if stats is not None else BatchStats()
        self.on_error = on_error or _raise

    async def _send(self, calls: Sequence[Any], owners: Sequence[Sequence['AppGroup']]) -> List[Any]:
        """Send ``calls`` (``owners[i]``: the groups ``calls[i]`` reads for); the answers of the calls that succeeded,
        None for the others (whose groups went to ``on_error``)."""
        if not calls:
            return []
        results = await run_graph_calls(self.clients, calls, limit=self.batch_limit, stats=self.stats)
        out = []
        for groups, result in zip(owners, results):
            if isinstance(result, AzureApiError):
                for group in groups:
                    self.on_error(group, result)
                out.append(None)
            else:
                out.append(result)
        return out

    async def applications(self, groups: Sequence[AppGroup]) -> None:
        """Find each group's application: by marker tag, then by its ``uniqueName``, then by alternate names."""
        if not groups:
            return
        by_name: Dict[str, dict] = {}
        by_marker: Dict[str, List[dict]] = {}
        bulk = len(groups) >= self.bulk_threshold
        if bulk:
            for app in await list_applications(self.clients, application_filter(tag=MANAGED_TAG)):
                self._index(app, by_name, by_marker)
        else:
            markers: Dict[str, List[AppGroup]] = {}
            for group in groups:
                for project in group.projects:
                    if project.marker:
                        markers.setdefault(project.marker, []).append(group)
            keys = sorted(markers)
            found = await self._send([applications_list_call(application_filter(tag=m)) for m in keys], [markers[m] for m in keys])
            for response in found:
                for app in items_of(response) if response is not None else ():
                    self._index(app, by_name, by_marker)
        wanted: Dict[str, List[AppGroup]] = {}
        for group in groups:
            if not group.projects:
                continue
            for name in self._names(group):
                if name.lower() not in by_name:
                    wanted.setdefault(name, []).append(group)
        names = list(wanted)
        if bulk:
            slices = chunks(names)
            found = await self._send([applications_list_call(in_filter('uniqueName', c)) for c in slices],
                                     [[g for n in c for g in wanted[n]] for c in slices])
            for response in found:
                for app in items_of(response) if response is not None else ():
                    self._index(app, by_name, by_marker)
        else:
            found = await self._send([application_get_call(unique_name=n) for n in names], [wanted[n] for n in names])
            for response in found:
                app = object_of(response) if response is not None else None
                if app is not None:
                    self._index(app, by_name, by_marker)
        for group in groups:
            if not group.projects:
                continue
            try:
                self._resolve(group, by_name, by_marker)
            except ValidationError as err:
                self.on_error(group, err)

    def _index(self, app: Mapping[str, Any], by_name: Dict[str, dict], by_marker: Dict[str, List[dict]]) -> None:
        app = dict(app)
        if app.get('uniqueName'):
            by_name[app['uniqueName'].lower()] = app
        for tag in app.get('tags') or ():
            if isinstance(tag, str) and tag.startswith(PROJECT_MARKER_PREFIX):
                entries = by_marker.setdefault(tag, [])
                if all(e.get('id') != app.get('id') for e in entries):
                    entries.append(app)

    @staticmethod
    def _names(group: AppGroup) -> List[str]:
        names = [group.unique_name]
        for project in group.projects:
            names.extend(n for n in project.alternate_names if n not in names)
        return names

    def _resolve(self, group: AppGroup, by_name: Mapping[str, dict], by_marker: Mapping[str, List[dict]]) -> None:
        project = group.projects[0]
        if not group.shared and project.marker:
            marked = by_marker.get(project.marker, [])
            if len(marked) > 1:
                raise project.namer.error(
                    'project_id', 'several applications carry the marker {0!r} of project {1}: app ids {2}'.format(
                        project.marker, project.project_id, ', '.join(sorted(a.get('appId') or '?' for a in marked))),
                    'keep one application per project: offboard or delete the others (or remove the tag from them)')
            if marked:
                group.current, group.found_by = marked[0], 'marker'
                return
        for name in self._names(group):
            app = by_name.get(name.lower())
            if app is not None:
                group.current = app
                group.found_by = 'unique_name' if name == group.unique_name else 'alternate_name'
                return

    async def display_matches(self, groups: Sequence[AppGroup]) -> None:
        """For groups whose application is to be created: the applications that already have its display name."""
        todo = [g for g in groups if g.projects and g.current is None and g.spec.state == 'present']
        if not todo:
            return
        by_display: Dict[str, List[AppGroup]] = {}
        for group in todo:
            by_display.setdefault(group.spec.creation_display_name, []).append(group)
        names = sorted(by_display)
        found: Dict[str, list] = {n: [] for n in names}
        if len(todo) >= self.bulk_threshold:
            slices = chunks(names)
            results = await self._send([applications_list_call(in_filter('displayName', c)) for c in slices],
                                       [[g for n in c for g in by_display[n]] for c in slices])
        else:
            results = await self._send([applications_list_call(application_filter(display_name=n)) for n in names],
                                       [by_display[n] for n in names])
        for response in results:
            for app in items_of(response) if response is not None else ():
                found.setdefault(app.get('displayName'), []).append(app)
        for group in todo:
            group.display_matches = found.get(group.spec.creation_display_name, [])

    async def service_principals(self, groups: Sequence[AppGroup]) -> None:
        """The service principals of the groups' applications (``appId in (...)``, or one GET per application)."""
        by_app: Dict[str, List[AppGroup]] = {}
        for group in groups:
            if group.projects and group.current is not None and group.current.get('appId'):
                by_app.setdefault(group.current['appId'], []).append(group)
        apps = sorted(by_app)
        if not apps:
            return
        found: Dict[str, dict] = {}
        if len(apps) >= self.bulk_threshold:
            slices = chunks(apps)
            results = await self._send([service_principals_list_call(c, select=SP_SELECT) for c in slices],
                                       [[g for a in c for g in by_app[a]] for c in slices])
            for response in results:
                for sp in items_of(response) if response is not None else ():
                    found[str(sp.get('appId')).lower()] = sp
        else:
            results = await self._send([service_principal_get_call(a) for a in apps], [by_app[a] for a in apps])
            for app_id, response in zip(apps, results):
                sp = object_of(response) if response is not None else None
                if sp is not None:
                    found[app_id.lower()] = sp
        for group in groups:
            if group.projects and group.current is not None:
                group.service_principal = found.get(str(group.current.get('appId')).lower())

    async def owners(self, groups: Sequence[AppGroup]) -> None:
        """Owners of the applications whose owners are managed."""
        todo = [g for g in groups if g.projects and g.current is not None and g.spec.owners is not None
                and g.spec.state == 'present']
        results = await self._send([owners_list_call(g.current['id']) for g in todo], [[g] for g in todo])
        for group, response in zip(todo, results):
            if response is not None:
                group.owners = [o.lower() for o in owner_ids_of(response)]

    async def credentials(self, groups: Sequence[AppGroup]) -> None:
        """The federated identity credentials of each found application that needs them (read through /beta)."""
        todo = [g for g in groups if g.projects and g.current is not None
                and (g.shared or any(p.state == 'present' for p in g.projects))]
        results = await self._send([credentials_list_call(g.current['id']) for g in todo], [[g] for g in todo])
        for group, response in zip(todo, results):
            if response is not None:
                group.credentials = credentials_of(response)


# --------------------------------------------------------------------------------------------------------------------
# Role assignments: listed once per scope when many principals share it
# --------------------------------------------------------------------------------------------------------------------

class AssignmentIndex:
    """Role assignments AT each scope, per principal, from one listing per scope (bulk) or none (per principal)."""

    def __init__(self) -> None:
        self.by_scope: Dict[str, Dict[str, List[dict]]] = {}

    async def load(self, clients: Any, scopes: Iterable[Any], limit: int) -> None:
        scopes = {s.key: s for s in scopes}
        listed = await gather_limited([self._factory(clients, s) for s in scopes.values()], limit)
        for key, items in zip(scopes, listed):
            per: Dict[str, List[dict]] = {}
            for item in items:
                if assignment_scope_key(item) != key:
                    continue
                principal = str((item.get('properties') or {}).get('principalId') or '').lower()
                per.setdefault(principal, []).append(item)
            self.by_scope[key] = per

    @staticmethod
    def _factory(clients: Any, scope: Any) -> Callable[[], Any]:
        return lambda: list_scope_assignments(clients, scope)

    def existing_for(self, principal_id: str, scope_keys: Iterable[str]) -> Optional[Dict[str, List[dict]]]:
        """This principal's assignments at each scope; None when a scope was not listed."""
        out = {}
        for key in scope_keys:
            if key not in self.by_scope:
                return None
            out[key] = list(self.by_scope[key].get(principal_id.lower(), []))
        return out

    def record(self, plan: PrincipalPlan) -> None:
        """Fold a plan's outcome back in (a later project of a shared application plans against it)."""
        for change in plan.changes + plan.removals:
            per = self.by_scope.get(change.scope.key)
            if per is None:
                continue
            items = per.setdefault(plan.principal_id.lower(), [])
            if change.before is not None:
                items[:] = [a for a in items if str(a.get('id') or '').lower() != str(change.before.get('id') or '').lower()]
            if change.after is not None:
                items.append(change.after)


# --------------------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------------------

@dataclass
class RunOptions:
    """Options of one reconciliation."""

    check_mode: bool = False
    diff: bool = False
    limit: int = DEFAULT_CONCURRENCY
    bulk_threshold: int = BULK_READ_THRESHOLD
    ci_snippet_dir: Optional[str] = None


class Run:
    """One reconciliation of many projects (see the module docstring)."""

    def __init__(self, clients: Any, projects: Sequence[ProjectInput], options: RunOptions) -> None:
        self.clients = clients
        self.projects = list(projects)
        self.options = options
        self.outcomes: Dict[str, Outcome] = {p.key: Outcome(p) for p in self.projects}
        self.batch_stats = BatchStats()
        self.batch_limit = max(1, min(DEFAULT_BATCH_LIMIT, options.limit))
        self.reader = Reader(clients, bulk_threshold=options.bulk_threshold,
                             batch_limit=self.batch_limit, stats=self.batch_stats, on_error=self._read_failed)
        self.assignments = AssignmentIndex()
        self.tenant_id: Optional[str] = None
        self.gitlab: Optional[GitLabStage] = None

    # --- orchestration ---------------------------------------------------------------------------------------------

    async def execute(self) -> Dict[str, Outcome]:
        await self._gitlab_lookup()
        groups = group_projects([p for p in self.projects if not self.outcomes[p.key].failed], self.outcomes)
        groups = [self._live(g) for g in groups]
        groups = [g for g in groups if g.projects]
        async with self._shared_app_locks(groups):
            groups = [g for g in groups if g.projects]
            await self._execute(groups)
        return self.outcomes

    def _shared_app_locks(self, groups: List[AppGroup]) -> Any:
        """Runs that touch one shared application, read it and write it one at a time, across processes: each call
        reads the application's credentials before it writes, so two concurrent calls (the per_host projects of one
        shared application, or two runs) would each plan against what the other is about to change (offboarding:
        each would keep the application for the other's credential). A lock per shared application (tenant and
        uniqueName) in ``<token cache dir>/locks``, held from the reads to the last write of the call."""
        settings = getattr(self.clients, 'settings', None)
        shared = [g for g in groups if g.shared]
        names = ['{0}|{1}'.format(getattr(settings, 'tenant_id', '') or '', g.unique_name.lower()) for g in shared]
        directory = cache_subdir(getattr(settings, 'token_cache_dir', None), SHARED_APP_LOCKS_DIR)
        return _GroupLocks(NamedLocks(directory, names, timeout=SHARED_APP_LOCK_TIMEOUT_S), shared, self.outcomes)

    async def _execute(self, groups: List[AppGroup]) -> None:
        await self._read(groups)
        await self._gitlab_preplan(groups)
        groups = [g for g in (self._live(g) for g in groups) if g.projects]
        own = [g for g in groups if not g.shared]
        present = [g for g in own if g.projects[0].state == 'present']
        await asyncio.gather(self._own_present_groups(present),
                             gather_limited([self._group_factory(g) for g in own if g.projects[0].state != 'present'],
                                            self.options.limit))
        await gather_limited([self._group_factory(g) for g in groups if g.shared], self.options.limit)
        await self._gitlab_variables()

    # --- GitLab (projects with gitlab_api) ---------------------------------------------------------------------------

    async def _gitlab_lookup(self) -> None:
        """Take each project's id and sub claim components from GitLab (the project fails when the inventory
        contradicts GitLab) and plan it again with them."""
        todo = [p for p in self.projects if p.gitlab is not None and not self.outcomes[p.key].failed]
        if not todo:
            return
        self.gitlab = GitLabStage(self.options.limit)
        updated = dict(zip((p.key for p in todo), await gather_limited([self._lookup_factory(p) for p in todo], self.options.limit)))
        self.projects = [updated.get(p.key, p) for p in self.projects]

    def _lookup_factory(self, project: ProjectInput) -> Callable[[], Any]:
        return lambda: self._lookup(project)

    async def _lookup(self, project: ProjectInput) -> ProjectInput:
        outcome = self.outcomes[project.key]
        try:
            target = await self.gitlab.lookup(project.gitlab, project.issuer, project.project_path, project.project_id, project.namer)
            update = reconcile_identity(target.info, project_path=project.project_path, project_id=project.project_id,
                                        components=project.sub_claim_components if project.components_given else None,
                                        namer=project.namer)
            raw = dict(project.raw, project_id=update['project_id'], sub_claim_components=update['sub_claim_components'])
            fresh = parse_project(raw, project.index, variable_prefix=project.namer.variable_prefix)
        except ValidationError as err:
            if project.state == 'absent' and err.extra.get('gitlab_missing'):
                # Offboarding a project GitLab no longer has (deleted, or moved out of the token's reach): what was made
                # for it in Azure still goes; there are no CI/CD variables left to remove.
                outcome.warnings.append('{0}; offboarding it in Azure only'.format(str(err).split(' Fix:', maxsplit=1)[0]))
                return dataclass_replace(project, gitlab=None)
            outcome.fail(err)
            return project
        except Exception as exc:  # pylint: disable=broad-exception-caught
            outcome.fail(exc)
            return project
        if target.info.get('archived'):
            outcome.warnings.append('GitLab project {0} is archived'.format(target.info.get('path_with_namespace')))
        outcome.project, outcome.gitlab = fresh, target
        return fresh

    def _variable_values(self, project: ProjectInput, app: Optional[Mapping[str, Any]], tenant: Optional[str]) -> dict:
        from ansible_collections.oidc_federation.azure.plugins.module_utils._onboarding_gitlab import PENDING
        return {'AZURE_CLIENT_ID': (app or {}).get('appId') or (app or {}).get('app_id') or PENDING,
                'AZURE_TENANT_ID': project.tenant_id or tenant or PENDING, 'AZURE_SUBSCRIPTION_ID': project.subscription_id}

    async def _gitlab_preplan(self, groups: Sequence[AppGroup]) -> None:
        """Before any write: the token may write the project's variables, and no variable is in the way."""
        todo = [(p, g) for g in groups for p in g.projects if p.gitlab is not None and p.gitlab.variables]
        await gather_limited([self._preplan_factory(p, g) for p, g in todo], self.options.limit)

    def _preplan_factory(self, project: ProjectInput, group: AppGroup) -> Callable[[], Any]:
        return lambda: self._preplan(project, group)

    async def _preplan(self, project: ProjectInput, group: AppGroup) -> None:
        outcome = self.outcomes[project.key]
        target = outcome.gitlab
        try:
            check_write_access(target, project.namer)
            await self.gitlab.read_variables(target)
            variable_plan = plan_variables(target, project.gitlab, self._variable_values(project, group.current, self.tenant_id),
                                           state=project.state)
            if variable_plan.conflicts:
                blocking = '; '.join('{0} (environment scope {1}) exists and was not set by oidc_federation.azure'.format(
                    i.key, i.environment_scope) for i in variable_plan.conflicts)
                raise project.namer.error('ci_variables', 'CI/CD variables of {0} are in the way: {1}'.format(
                    target.info.get('path_with_namespace'), blocking),
                    'delete them in GitLab (Settings > CI/CD > Variables), or set {0}: false'.format(project.namer('ci_variables')))
        except Exception as exc:  # pylint: disable=broad-exception-caught
            outcome.fail(exc)

    async def _gitlab_variables(self) -> None:
        """After the Azure writes: set (or, offboarding, remove) the variables of the projects that went through."""
        todo = [o for o in self.outcomes.values() if not o.failed and o.gitlab is not None and o.project.gitlab.variables
                and o.gitlab.variables is not None]
        await gather_limited([self._variables_factory(o) for o in todo], self.options.limit)

    def _variables_factory(self, outcome: Outcome) -> Callable[[], Any]:
        return lambda: self._variables(outcome)

    async def _variables(self, outcome: Outcome) -> None:
        project = outcome.project
        try:
            values = self._variable_values(project, outcome.application, self.tenant_id)
            variable_plan = plan_variables(outcome.gitlab, project.gitlab, values, state=project.state)
            if variable_plan.changed and not self.options.check_mode:
                await self.gitlab.apply(outcome.gitlab, variable_plan)
            outcome.ci_variables = plan_items(variable_plan)
            outcome.changed = outcome.changed or variable_plan.changed
        except Exception as exc:  # pylint: disable=broad-exception-caught
            outcome.fail(exc)

    def _live(self, group: AppGroup) -> AppGroup:
        group.projects = [p for p in group.projects if not self.outcomes[p.key].failed]
        return group

    def _group_factory(self, group: AppGroup) -> Callable[[], Any]:
        return lambda: self._group(group)

    async def _read(self, groups: List[AppGroup]) -> None:
        """Everything the plans need, in bulk. A read that fails for one group fails that group's projects."""
        await self.reader.applications(groups)
        groups[:] = [g for g in groups if g.projects]
        for group in groups:
            # Found under another name (its marker, or the other derivation): a uniqueName never changes, so plans,
            # messages and purges name the application by the one it has.
            name = (group.current or {}).get('uniqueName')
            if name and name.lower() != group.spec.unique_name.lower():
                group.spec = dataclass_replace(group.spec, unique_name=name)
        for step in (self.reader.display_matches, self.reader.service_principals, self.reader.owners,
                     self.reader.credentials):
            await step(groups)
            groups[:] = [g for g in groups if g.projects]
        principals = [g for g in groups if g.service_principal is not None]
        scopes = {a.desired.scope.key: a.desired.scope for g in principals for p in g.projects for a in p.assignments}
        if len(principals) >= self.options.bulk_threshold and scopes:
            await self.assignments.load(self.clients, scopes.values(), self.options.limit)
        self.tenant_id = await self._tenant_id(groups)

    def _read_failed(self, group: AppGroup, err: BaseException) -> None:
        """A read for ``group`` failed: its projects fail (once), the others go on."""
        for project in group.projects:
            outcome = self.outcomes[project.key]
            if not outcome.failed:
                outcome.fail(err)
        group.projects = []

    async def _send(self, calls: Sequence[Any]) -> list:
        """``run_graph_calls`` with this run's batch limit and stats (nothing to send: nothing sent)."""
        if not calls:
            return []
        return await run_graph_calls(self.clients, calls, limit=self.batch_limit, stats=self.batch_stats)

    async def _tenant_id(self, groups: Sequence[AppGroup]) -> Optional[str]:
        sp = next((g.service_principal for g in groups if g.service_principal and g.service_principal.get('appOwnerOrganizationId')),
                  None)
        try:
            return await tenant_id_of(self.clients, sp)
        except AzureApiError:
            return None

    async def _group(self, group: AppGroup) -> None:
        try:
            if group.shared:
                await self._shared_group(group)
            else:  # execute() sends only offboarded projects with their own application here (the others go in phases)
                await self._offboard_own(group, group.projects[0], self.outcomes[group.projects[0].key])
        except Exception as exc:  # pylint: disable=broad-exception-caught
            for project in group.projects:
                outcome = self.outcomes[project.key]
                if not outcome.failed and outcome.msg is None:
                    outcome.fail(exc)
        finally:
            for project in group.projects:
                self._write_snippet(self.outcomes[project.key])

    # --- projects with their own application: in phases across all of them --------------------------------------------

    async def _own_present_groups(self, groups: Sequence[AppGroup]) -> None:
        try:
            await self._own_present(groups)
        finally:
            for group in groups:
                for project in group.projects:
                    self._write_snippet(self.outcomes[project.key])

    async def _own_present(self, groups: Sequence[AppGroup]) -> None:
        """Onboard projects with their own application, all of them phase by phase (a project that fails in one phase
        fails alone and skips the later ones):

        P plan every project (application, credentials, roles); then, unless in check mode,
        W1 application creates (``uniqueName`` upserts) and updates in ``$batch``es;
        W2 the GET of each application whose create was answered 204, then the service principal upserts (and the GET
        of each one answered 204);
        W3 per application one ``dependsOn`` lane: owners, then credential deletes, updates, creates;
        W4 ARM role assignments (bounded concurrency), started with W3 (they need only the service principal id).
        """
        works = [_Work(g, g.projects[0], self.outcomes[g.projects[0].key]) for g in groups]
        try:
            await gather_limited([self._plan_factory(w) for w in works], self.options.limit)
            if not self.options.check_mode:
                await self._write_applications(works)
            for work in works:
                if work.live:
                    work.outcome.application = self._app_view(work.project, work.group, work.app_plan, work.app, work.sp)
            done = await asyncio.gather(self._own_credentials(works), self._own_roles(works), return_exceptions=True)
            problem = next((d for d in done if isinstance(d, BaseException)), None)
            if problem is not None:
                raise problem
            for work in works:
                if work.live and self.options.diff:
                    work.outcome.diff = self._diff(work.project, work.app_plan, work.report, work.role_plan)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # A systemic failure (token, TLS, 401/403 on a batch) or a bug: every project not failed yet fails with it.
            for work in works:
                if work.live:
                    work.fail(exc)

    def _plan_factory(self, work: '_Work') -> Callable[[], Any]:
        return lambda: self._plan_own(work)

    async def _plan_own(self, work: '_Work') -> None:
        group, project, outcome = work.group, work.project, work.outcome
        try:
            work.app_plan = decide_application(group.spec, self._app_read(group))
            work.credential_plan = plan_credentials(group.credentials or [], project.credential_specs, exclusive=True,
                                                    gitlab_issuers=project.gitlab_issuers, field='credentials')
            principal = self._principal(group)
            work.role_plan = await self._plan_roles(project, principal, exclusive=True) if project.assignments else None
        except ValidationError as err:
            outcome.fail(self._project_error(project, err))
            return
        except Exception as exc:  # pylint: disable=broad-exception-caught
            outcome.fail(exc)
            return
        outcome.warnings.extend(work.app_plan.warnings)
        outcome.found = group.current is not None
        work.app, work.sp = group.current, group.service_principal
        outcome.changed = outcome.changed or work.app_plan.changed
        outcome.app_actions = work.app_plan.actions

    async def _own_credentials(self, works: Sequence['_Work']) -> None:
        if not self.options.check_mode:
            await self._write_lanes(works)
        for work in works:
            if not work.live:
                continue
            project, outcome = work.project, work.outcome
            work.report = self._credential_report(work.app, work.credential_plan, work.after)
            outcome.credentials = item_results(work.report, project.credential_specs)
            outcome.credential_changes = work.report.changed
            outcome.credentials_deleted = list(work.report.deleted)
            outcome.changed = outcome.changed or work.report.changed

    async def _own_roles(self, works: Sequence['_Work']) -> None:
        await gather_limited([self._roles_factory(w) for w in works if w.live and w.project.assignments], self.options.limit)

    def _roles_factory(self, work: '_Work') -> Callable[[], Any]:
        return lambda: self._own_role_assignments(work)

    async def _own_role_assignments(self, work: '_Work') -> None:
        project, sp = work.project, work.sp
        try:
            role_plan = work.role_plan
            if role_plan is None or (role_plan.principal_id == NO_PRINCIPAL and sp is not None):
                role_plan = await self._plan_roles(project, sp['id'] if sp else NO_PRINCIPAL, exclusive=True,
                                                   fresh=work.group.service_principal is None)
            work.role_plan = role_plan
            await self._apply_roles(role_plan, work.outcome)
        except Exception as exc:  # pylint: disable=broad-exception-caught
            work.fail(exc)

    # --- Graph writes through $batch (own applications in phases; a shared application alone) -------------------------

    async def _write_applications(self, works: Sequence['_Work']) -> None:
        """W1 and W2 for the works whose application plan writes: sets ``work.app`` and ``work.sp``."""
        todo = [w for w in works if w.live and w.app_plan is not None and w.app_plan.changed]
        sent = []
        for work in todo:
            call = application_write_call(work.app_plan)
            if call is None:
                work.app = written_application(work.app_plan, None)
            else:
                sent.append((work, call))
        for (work, _call), result in zip(sent, await self._send([c for _w, c in sent])):
            if isinstance(result, AzureApiError) and work.app_plan.action == CREATE:
                # e.g. the uniqueName still held by deleted items: say how to get out (as the direct path does)
                result = await explain_name_conflict(self.clients, work.app_plan.spec.unique_name, result)
            if self._ok(work, result):
                work.app = written_application(work.app_plan, result)
        # A create answered 204: the application existed (a lost answer, or replicating when read): GET it.
        again = [w for w in todo if w.live and w.app is None]
        results = await self._send([application_get_call(unique_name=w.app_plan.spec.unique_name, retry_not_found=True)
                                    for w in again])
        for work, result in zip(again, results):
            if self._ok(work, result):
                work.app = self._required(work, object_of(result), 'get application',
                                          'uniqueName={0}'.format(work.app_plan.spec.unique_name))
        todo = [w for w in todo if w.live and w.app_plan.create_service_principal]
        results = await self._send([service_principal_create_call(w.app['appId'], service_principal_display_name(w.app_plan, w.app))
                                    for w in todo])
        again = []
        for work, result in zip(todo, results):
            if self._ok(work, result):
                work.sp = upserted_of(result, 'id')
                if work.sp is None:
                    again.append(work)
        results = await self._send([service_principal_get_call(w.app['appId'], retry_not_found=True) for w in again])
        for work, result in zip(again, results):
            if self._ok(work, result):
                work.sp = self._required(work, object_of(result), 'get service principal',
                                         'appId={0}'.format(work.app['appId']))

    async def _write_lanes(self, works: Sequence['_Work']) -> None:
        """W3: per application one lane (``dependsOn``): owners of its plan (additions, removals), then the credential
        writes (deletes, updates, creates). Sets ``work.after`` (the credentials once written)."""
        endpoint = self.clients.settings.cloud.graph_endpoint
        lanes = []
        for index, work in enumerate(works):
            if not work.live or work.app is None:
                continue
            calls = []
            if work.app_plan is not None and work.app_plan.changed:
                calls += owner_calls(endpoint, work.app['id'], work.app_plan)
            credential_calls = []
            if work.credential_plan is not None and work.credential_plan.changed:
                credential_calls = plan_credential_calls(work.app['id'], work.credential_plan)
            if calls or credential_calls:
                lanes.append((work, len(calls) + len(credential_calls), len(credential_calls)))
                calls += credential_calls
                chain(calls, str(index))
                work.lane = calls
        flat = [call for work, _n, _c in lanes for call in work.lane]
        results = await self._send(flat)
        position = 0
        for work, count, credentials in lanes:
            mine = results[position:position + count]
            position += count
            work.lane = None
            failure = next((r for r in mine if isinstance(r, AzureApiError)), None)
            if failure is not None:
                work.fail(failure)
            elif credentials:
                work.after = applied_credentials(work.credential_plan, mine[count - credentials:])

    @staticmethod
    def _ok(work: '_Work', result: Any) -> bool:
        if isinstance(result, AzureApiError):
            work.fail(result)
            return False
        return True

    @staticmethod
    def _required(work: '_Work', obj: Optional[dict], operation: str, target: str) -> Optional[dict]:
        if obj is None:
            work.fail(AzureApiError('Graph answered without the object', service='graph', operation=operation, target=target))
        return obj

    def _credential_report(self, app: Optional[dict], plan: Any, after: Optional[list]) -> Any:
        """The credential report of ``plan`` on ``app``: what was written (``after``), or what would be (check mode,
        no application yet, nothing to change)."""
        if app is None or self.options.check_mode or not plan.changed:
            return credential_report(app or {}, plan, plan.changes.final)
        return credential_report(app, plan, after)

    async def _write_application(self, group: AppGroup, plan: Any, sp: Optional[dict]) -> Tuple[dict, Optional[dict]]:
        """A shared application's plan through ``$batch`` (W1, W2, its owners); (application, service principal).
        Raises the first error."""
        work = _Work(group, app_plan=plan, app=group.current, sp=sp)
        await self._write_applications([work])
        if work.live:
            await self._write_lanes([work])
        if work.error is not None:
            raise work.error
        return work.app, work.sp

    async def _write_credentials(self, app: Optional[dict], plan: Any) -> Any:
        """One project's credentials on a shared application, as one lane through ``$batch``; its report."""
        if app is None or self.options.check_mode or not plan.changed:
            return self._credential_report(app, plan, None)
        work = _Work(None, app=app, credential_plan=plan)
        await self._write_lanes([work])
        if work.error is not None:
            raise work.error
        return self._credential_report(app, plan, work.after)

    # --- the projects of a shared application, one after the other ---------------------------------------------------

    async def _shared_group(self, group: AppGroup) -> None:
        present = [p for p in group.projects if p.state == 'present']
        absent = [p for p in group.projects if p.state == 'absent']
        app, sp = group.current, group.service_principal
        credentials = list(group.credentials or [])
        app_plan = None
        if present:
            try:
                app_plan = decide_application(group.spec, self._app_read(group))
            except ValidationError as err:
                for project in present:
                    self.outcomes[project.key].fail(self._project_error(project, err))
                present = []
        # Plan every project against what was read before the application is written: a project whose trust or roles
        # cannot be planned fails here, and the application is written only for projects that can use it.
        simulated = list(credentials)
        valid = []
        for project in present:
            try:
                plan = self._shared_credential_plan(project, simulated)
                if project.assignments:
                    # Validation only (the plan is made again below, after the writes of the projects before it): for
                    # a present, non-exclusive plan what already exists changes nothing that is checked, so it is not
                    # listed here (fresh).
                    await self._plan_roles(project, sp['id'] if sp else NO_PRINCIPAL, exclusive=False, fresh=True)
            except ValidationError as err:
                self.outcomes[project.key].fail(self._project_error(project, err))
                continue
            simulated = list(plan.changes.final)
            valid.append(project)
        present = valid
        if present and app_plan.changed and not self.options.check_mode:
            app, sp = await self._write_application(group, app_plan, sp)
        for index, project in enumerate(present):
            outcome = self.outcomes[project.key]
            outcome.found = group.current is not None
            # The application's own changes count for the first project only (it makes them).
            outcome.changed = bool(app_plan.changed) and index == 0
            outcome.app_actions = app_plan.actions if index == 0 else []
            outcome.warnings.extend(app_plan.warnings if index == 0 else [])
            outcome.application = self._app_view(project, group, app_plan, app, sp)
            try:
                credential_plan = self._shared_credential_plan(project, credentials)
                role_plan = None
                if project.assignments:
                    role_plan = await self._plan_roles(project, sp['id'] if sp else NO_PRINCIPAL, exclusive=False,
                                                       fresh=group.service_principal is None and index == 0)
                report = await self._write_credentials(app, credential_plan)
                credentials = list(report.after)
                outcome.credentials = item_results(report, project.credential_specs)
                outcome.credentials_deleted = list(report.deleted)
                outcome.credential_changes = report.changed
                outcome.changed = outcome.changed or report.changed
                if role_plan is not None:
                    await self._apply_roles(role_plan, outcome)
                if self.options.diff:
                    outcome.diff = self._diff(project, app_plan if index == 0 else None, report, role_plan)
            except Exception as exc:  # pylint: disable=broad-exception-caught
                outcome.fail(self._project_error(project, exc) if isinstance(exc, ValidationError) else exc)
        for project in absent:
            outcome = self.outcomes[project.key]
            try:
                credentials = await self._offboard_shared(group, project, outcome, app, sp, credentials,
                                                          last=project is absent[-1] and not present)
            except Exception as exc:  # pylint: disable=broad-exception-caught
                outcome.fail(exc)

    @staticmethod
    def _shared_credential_plan(project: ProjectInput, credentials: Sequence[Mapping[str, Any]]) -> Any:
        """The project's credentials on a shared application: its own trust exactly, the others' left alone."""
        scope = exclusive_scope_for(SCOPE_GITLAB_PROJECT, project.credential_specs, defaults=project.credential_defaults)
        return plan_credentials(credentials, project.credential_specs, exclusive=True, gitlab_issuers=project.gitlab_issuers,
                                field='credentials', exclusive_scope=scope)

    # --- offboarding ---------------------------------------------------------------------------------------------------

    async def _offboard_own(self, group: AppGroup, project: ProjectInput, outcome: Outcome) -> None:
        outcome.found = group.current is not None
        if group.current is None and not project.purge:
            outcome.application = self._absent_view(project, group)
            return
        try:
            app_plan = await plan_purge_of(self.clients, decide_application(group.spec, self._app_read(group)))
            role_plan = None
            if project.assignments and group.service_principal is not None:
                role_plan = await self._plan_roles(project, group.service_principal['id'], exclusive=False, state='absent')
        except ValidationError as err:
            outcome.fail(self._project_error(project, err))
            return
        if role_plan is not None:
            await self._apply_roles(role_plan, outcome)
        outcome.app_actions = app_plan.actions
        await self._remove_application(app_plan, outcome)
        outcome.application = self._absent_view(project, group)
        if self.options.diff:
            outcome.diff = {'before_header': project.key, 'after_header': project.key,
                            'before': {'application': app_plan.before}, 'after': {'application': None}}

    async def _remove_application(self, app_plan: Any, outcome: Outcome) -> None:
        """Carry out an offboarding plan of the application (delete, purge; not in check mode) and record it."""
        if app_plan.changed and not self.options.check_mode:
            await apply_application_plan(self.clients, app_plan)
        outcome.changed = outcome.changed or app_plan.changed
        outcome.removed = app_plan.action == DELETE
        outcome.purged = [t.as_dict() for t in app_plan.purge]

    async def _offboard_shared(self, group: AppGroup, project: ProjectInput, outcome: Outcome, app: Optional[dict],
                               sp: Optional[dict], credentials: list, *, last: bool) -> list:
        outcome.found = app is not None
        if app is None:
            outcome.application = self._absent_view(project, group)
            return credentials
        # An offboarded project asks for no credential (parse_project gives it none): its own ones go.
        report = await self._write_credentials(app, self._shared_credential_plan(project, credentials))
        remaining = list(report.after)
        outcome.credentials_deleted = list(report.deleted)
        outcome.changed = report.changed
        remove_app = last and project.shared_app_cleanup and not remaining
        if remove_app:
            if project.assignments and sp is not None:
                role_plan = await self._plan_roles(project, sp['id'], exclusive=False, state='absent')
                await self._apply_roles(role_plan, outcome)
            await self._remove_application(await plan_purge_of(self.clients, decide_application(group.spec, self._app_read(group))),
                                           outcome)
        elif remaining:
            outcome.kept_because = 'other projects still have credentials on it'
        outcome.application = self._absent_view(project, group)
        return remaining

    # --- pieces -----------------------------------------------------------------------------------------------------

    @staticmethod
    def _app_read(group: AppGroup) -> ApplicationRead:
        return ApplicationRead(current=group.current, display_matches=group.display_matches, owners=group.owners,
                               service_principal=group.service_principal, service_principal_read=True)

    @staticmethod
    def _principal(group: AppGroup) -> str:
        return group.service_principal['id'] if group.service_principal else NO_PRINCIPAL

    async def _plan_roles(self, project: ProjectInput, principal_id: str, *, exclusive: bool, state: str = 'present',
                          fresh: bool = False) -> PrincipalPlan:
        """Plan the project's role assignments for ``principal_id`` (``fresh``: created by this run, so it holds none)."""
        desired = [a.desired for a in project.assignments]
        scope_keys = {d.scope.key for d in desired}
        existing = self.assignments.existing_for(principal_id, scope_keys)
        if principal_id == NO_PRINCIPAL or fresh:
            existing = {key: [] for key in scope_keys}
        plan = await plan_principal_assignments(
            self.clients, principal_id, desired, principal_type='ServicePrincipal', state=state, exclusive=exclusive,
            allow_privileged=project.allow_privileged, limit=self.options.limit, existing=existing,
            allow_option=project.namer('allow_privileged_roles'))
        return plan

    async def _apply_roles(self, plan: PrincipalPlan, outcome: Outcome) -> None:
        if plan.changed and not self.options.check_mode and plan.principal_id != NO_PRINCIPAL:
            await apply_principal_plan(self.clients, plan, limit=self.options.limit)
        self.assignments.record(plan)
        outcome.assignments = [_assignment_result(c, plan) for c in plan.changes]
        outcome.assignments_removed = [_assignment_result(c, plan) for c in plan.removals]
        outcome.changed = outcome.changed or plan.changed

    def _project_error(self, project: ProjectInput, err: ValidationError) -> ValidationError:
        """A core error re-worded with the project's option names (credentials and applications)."""
        field = err.extra.get('field') if isinstance(err.extra, dict) else None
        if isinstance(field, str) and field.startswith(project.namer('')) and project.namer.variable_prefix is not None:
            return err
        if isinstance(field, str) and (field in _APP_FIELDS):
            return project.namer.rename(err, _APP_FIELDS, 'app_unique_name')
        if isinstance(field, str) and (field.split('.')[0] in _FIC_FIELDS or field.startswith('credentials')):
            return project.namer.rename(err, _FIC_FIELDS, 'branches')
        text = str(err)
        return ValidationError(text if text.startswith(project.key + ':') else '{0}: {1}'.format(project.key, text),
                               **dict(err.extra, project=project.key))

    def _app_view(self, project: ProjectInput, group: AppGroup, plan: Any, app: Optional[dict], sp: Optional[dict]) -> dict:
        after = plan.after if plan is not None and plan.after else {}
        return {
            'unique_name': (app or {}).get('uniqueName') or group.unique_name,
            'display_name': after.get('display_name') or (app or {}).get('displayName') or group.spec.creation_display_name,
            'object_id': (app or {}).get('id'),
            'app_id': (app or {}).get('appId'),
            'service_principal_id': (sp or {}).get('id'),
            'shared': group.shared,
            'found_by': group.found_by,
            'marker': project.marker,
        }

    @staticmethod
    def _absent_view(project: ProjectInput, group: AppGroup) -> dict:
        return {'unique_name': (group.current or {}).get('uniqueName') or group.unique_name, 'shared': group.shared,
                'app_id': (group.current or {}).get('appId'), 'found_by': group.found_by}

    @staticmethod
    def _diff(project: ProjectInput, app_plan: Any, report: Any, role_plan: Optional[PrincipalPlan]) -> dict:
        before: Dict[str, Any] = {}
        after: Dict[str, Any] = {}
        if app_plan is not None:
            before['application'], after['application'] = app_plan.before, app_plan.after
        before['credentials'], after['credentials'] = report.before, report.after
        if role_plan is not None:
            before['role_assignments'], after['role_assignments'] = role_plan.before(), role_plan.after()
        return {'before_header': project.key, 'after_header': project.key, 'before': before, 'after': after}

    # --- outputs ----------------------------------------------------------------------------------------------------

    def _write_snippet(self, outcome: Outcome) -> None:
        directory = self.options.ci_snippet_dir
        if not directory or outcome.failed:
            return
        project = outcome.project
        path = snippet_path(directory, project.project_path)
        if project.state == 'absent':
            if os.path.exists(path) and not self.options.check_mode:
                os.unlink(path)
            return
        app_id = (outcome.application or {}).get('app_id')
        if not app_id:
            return
        content = render_snippet(self.result(outcome))
        try:
            with open(path, encoding='utf-8') as handle:
                if handle.read() == content:
                    return
        except OSError:
            pass
        if not self.options.check_mode:
            write_file(path, content)

    def result(self, outcome: Outcome) -> dict:
        """The project's ``gitlab_oidc_result`` (the role's per-project fact and report row)."""
        project = outcome.project
        app = outcome.application or {}
        status = STATUS_FAILED if outcome.failed else (
            STATUS_PLANNED if self.options.check_mode else (STATUS_ONBOARDED if project.state == 'present' else STATUS_OFFBOARDED))
        out = {
            'project_path': project.project_path, 'project_id': project.project_id, 'state': project.state, 'status': status,
            'check_mode': self.options.check_mode, 'changed': outcome.changed and not outcome.failed,
            'client_id': app.get('app_id'), 'tenant_id': project.tenant_id or self.tenant_id,
            'subscription_id': project.subscription_id, 'issuer': project.issuer, 'audience': project.audience,
        }
        if outcome.failed:
            out.update(msg=outcome.msg, credentials=[], role_assignments=[])
            return out
        if project.state == 'present':
            out.update(
                application=dict(app, actions=list(outcome.app_actions)), trust=project.trust, credentials=outcome.credentials,
                credentials_deleted=outcome.credentials_deleted, role_assignments=outcome.assignments,
                role_assignments_removed=outcome.assignments_removed, pending=app.get('app_id') is None)
        else:
            out.update(
                application=dict(app, found=outcome.found, removed=outcome.removed, kept_because=outcome.kept_because,
                                 purged=outcome.purged),
                credentials=[], credentials_deleted=outcome.credentials_deleted, role_assignments=outcome.assignments,
                pending=False)
        if project.gitlab is not None:
            out['gitlab_project_id'] = outcome.gitlab.info.get('id') if outcome.gitlab else None
            out['ci_variables'] = outcome.ci_variables
        if self.options.ci_snippet_dir:
            out['ci_snippet'] = snippet_path(self.options.ci_snippet_dir, project.project_path) if (
                project.state == 'present' and app.get('app_id')) else None
        return out


def _assignment_result(change: Any, plan: PrincipalPlan) -> dict:
    """``change_result``; for a service principal that does not exist yet (check mode) without the placeholder's id."""
    out = change_result(change)
    if plan.principal_id == NO_PRINCIPAL:
        out.update(principal_id=None, id=None, name=None)
    return out


class _GroupLocks:
    """``NamedLocks`` for the shared applications of a call. A lock that cannot be had in time fails the projects of
    every shared application of the call (the others go on); a lock directory that cannot be used is a warning on
    them, and the call goes on unlocked."""

    def __init__(self, locks: Any, shared: List[AppGroup], outcomes: Dict[str, Outcome]) -> None:
        self.locks = locks
        self.shared = shared
        self.outcomes = outcomes
        self.held = False

    async def __aenter__(self) -> '_GroupLocks':
        try:
            await self.locks.__aenter__()
            self.held = True
        except TimeoutError as exc:
            for group in self.shared:
                for project in group.projects:
                    self.outcomes[project.key].fail(ValidationError(
                        'shared application {0}: another run is working on it ({1}). Fix: run again when it has '
                        'finished.'.format(group.unique_name, exc), field='shared_app'))
                group.projects = []
        except OSError as exc:
            for group in self.shared:
                for project in group.projects:
                    self.outcomes[project.key].warnings.append(
                        'shared application {0}: runs on it are not serialised (lock directory: {1})'.format(group.unique_name, exc))
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self.held:
            await self.locks.__aexit__(*exc_info)


async def reconcile(clients: Any, projects: Sequence[ProjectInput], options: RunOptions) -> Tuple[Run, Dict[str, Outcome]]:
    """Read, plan and (unless ``options.check_mode``) write every project; per-project outcomes, never raising for one."""
    run = Run(clients, projects, options)
    return run, await run.execute()


# --------------------------------------------------------------------------------------------------------------------
# .gitlab-ci.yml snippet
# --------------------------------------------------------------------------------------------------------------------

def snippet_path(directory: str, project_path: str) -> str:
    """``<directory>/<project path>.gitlab-ci.yml`` (directories mirror the project path)."""
    return os.path.join(directory, *project_path.split('/')) + '.gitlab-ci.yml'


def _yaml_string(value: Any) -> str:
    text = '' if value is None else str(value)
    return '"{0}"'.format(text.replace('\\', '\\\\').replace('"', '\\"'))


def render_snippet(result: Mapping[str, Any]) -> str:
    """A ready ``.gitlab-ci.yml`` snippet for one onboarded project: the ID token, the two variables, ``az login``."""
    lines = [
        '# GitLab CI/CD -> Azure with OpenID Connect for {0}'.format(result['project_path']),
        '# Generated by the oidc_federation.azure gitlab_oidc role; include it in the project\'s .gitlab-ci.yml',
        '# (or copy the job). No secret is needed: the job\'s ID token is exchanged for an Azure token.',
        '#',
        '# Trusted refs (a job on any other ref cannot log in):',
    ]
    for credential in result.get('credentials') or ():
        lines.append('#   - {0}'.format(credential.get('subject') or credential.get('claims_matching_expression')))
    roles = result.get('role_assignments') or []
    if roles:
        lines.append('# Azure roles of the service principal:')
        for assignment in roles:
            lines.append('#   - {0} at {1}'.format(assignment.get('role_definition_name') or assignment.get('role'), assignment.get('scope')))
    login = '    - az login --service-principal -u $AZURE_CLIENT_ID -t $AZURE_TENANT_ID --federated-token $GITLAB_OIDC_TOKEN'
    lines += [
        'variables:',
        '  AZURE_CLIENT_ID: {0}'.format(_yaml_string(result.get('client_id'))),
        '  AZURE_TENANT_ID: {0}'.format(_yaml_string(result.get('tenant_id'))),
        '',
        'azure-oidc-login:',
        '  image: mcr.microsoft.com/azure-cli:latest',
        '  id_tokens:',
        '    GITLAB_OIDC_TOKEN:',
        '      aud: {0}'.format(_yaml_string(result.get('audience'))),
        '  script:',
    ]
    if roles:
        lines.append(login)
    else:
        lines.append('    # The service principal has no Azure role yet, so there is no subscription to select.')
        lines.append(login + ' --allow-no-subscriptions')
    lines.append('    - az account show')
    return '\n'.join(lines) + '\n'


def write_file(path: str, content: str) -> None:
    """Write ``content`` to ``path`` atomically (mode 0644), creating the directories."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, content, prefix='.snippet-', mode=0o644)


__all__ = ['PROJECT_MARKER_PREFIX', 'project_marker', 'ProjectInput', 'parse_project', 'parse_projects', 'derived_unique_names',
           'RunOptions', 'Run', 'Outcome', 'reconcile', 'render_snippet', 'snippet_path', 'group_projects']
