# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""The GitLab stage of an onboarding run (``_onboarding.Run``), for projects with ``gitlab_api``.

Before anything is written, per project (python-gitlab in worker threads, ``_gitlab_api``):

1. ``lookup``: the project by id (when the inventory gives one) or by path, and the access token itself. The project's
   id and ``ci_id_token_sub_claim_components`` come from GitLab; the project fails, and nothing is written for it,
   when the inventory contradicts GitLab (another id for the path, another path for the id, other sub claim
   components than the inventory sets explicitly).
2. ``preplan``: with ``ci_variables``, the token must have the ``api`` scope and the Maintainer role on the project,
   the variables must be values GitLab accepts, and no variable of the same key and environment scope may exist
   that the collection did not set (a conflict); the project's variables are read once here.

After the Azure writes: ``apply`` sets ``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID`` and (when known)
``AZURE_SUBSCRIPTION_ID`` plus the extra variables, marked as set by the collection; offboarding deletes every
variable the collection set on the project and nothing else. Results never carry a variable's value.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import GitLabApiError, ValidationError
from ansible_collections.oidc_federation.azure.plugins.module_utils._gitlab_api import (
    MASKABLE_RE,
    GitLabClient,
    diff_variables,
    get_project,
    list_variables,
    resolve_settings,
    token_info,
    variable_specs,
    apply_variable_plan,
)

MAINTAINER = 40
AZURE_VARIABLES = ('AZURE_CLIENT_ID', 'AZURE_TENANT_ID', 'AZURE_SUBSCRIPTION_ID')
VARIABLE_DESCRIPTION = 'Azure login with OpenID Connect'
# Stands for a value Azure has not given yet (check mode, an application still to create); never written.
PENDING = 'pending-00000000'


@dataclass(frozen=True)
class GitLabOptions:
    """One project's GitLab settings as given (the token is resolved from the environment when not given)."""

    url: Optional[str]
    token: Optional[str]
    validate_certs: bool
    ca_bundle: Optional[str]
    variables: bool
    protected: bool
    masked: bool
    environment_scope: str
    extra: Tuple[Tuple[str, str], ...]

    def __repr__(self) -> str:
        return 'GitLabOptions(url={0!r}, token={1}, variables={2!r})'.format(self.url, '<set>' if self.token else None,
                                                                             self.variables)


def parse_gitlab_options(merged: Mapping[str, Any], namer: Any) -> Optional[GitLabOptions]:
    """The project's GitLab settings, or None without ``gitlab_api``. Pure; ``ValidationError`` naming the option."""
    if not merged.get('gitlab_api'):
        return None
    extra_items = merged.get('ci_variables_extra') or {}
    if not isinstance(extra_items, Mapping):
        raise namer.error('ci_variables_extra', 'must be a dictionary of variable names and values',
                          'write ci_variables_extra: {AZURE_RESOURCE_GROUP: rg-web}')
    clash = sorted(set(extra_items) & set(AZURE_VARIABLES))
    if clash:
        raise namer.error('ci_variables_extra', '{0} is set by the collection itself'.format(', '.join(clash)),
                          'remove it from {0}'.format(namer('ci_variables_extra')))
    scope = merged.get('ci_variables_environment_scope') or '*'
    options = GitLabOptions(
        url=merged.get('gitlab_url') or None, token=merged.get('gitlab_token') or None,
        validate_certs=True if merged.get('gitlab_validate_certs') is None else bool(merged.get('gitlab_validate_certs')),
        ca_bundle=merged.get('gitlab_ca_bundle') or None,
        variables=True if merged.get('ci_variables') is None else bool(merged.get('ci_variables')),
        protected=bool(merged.get('ci_variables_protected')),
        masked=True if merged.get('ci_variables_masked') is None else bool(merged.get('ci_variables_masked')),
        environment_scope=str(scope), extra=tuple(sorted((str(k), '' if v is None else str(v)) for k, v in extra_items.items())))
    try:
        variable_specs(_desired(options, {'AZURE_CLIENT_ID': PENDING, 'AZURE_TENANT_ID': PENDING}), field='ci_variables')
    except ValidationError as err:
        if 'environment_scope' in str(err):
            raise namer.error('ci_variables_environment_scope', str(err),
                              "give an environment name or pattern GitLab accepts, such as '*', 'production' or 'review/*'") from None
        raise namer.error('ci_variables_extra', str(err), 'give names and values GitLab accepts (see the message), or set '
                          '{0}: false'.format(namer('ci_variables_masked'))) from None
    return options


def _desired(options: GitLabOptions, values: Mapping[str, Optional[str]]) -> list:
    """The variables to set, as ``_gitlab_api.variable_specs`` takes them (masked where GitLab allows the value)."""
    out = []
    items = [(k, values.get(k)) for k in AZURE_VARIABLES if values.get(k)] + list(options.extra)
    for key, value in items:
        masked = options.masked and (key not in dict(options.extra) or bool(MASKABLE_RE.match(value)))
        if key in AZURE_VARIABLES:
            masked = options.masked and bool(MASKABLE_RE.match(value))
        out.append({'key': key, 'value': value, 'protected': options.protected, 'masked': masked,
                    'environment_scope': options.environment_scope, 'description': VARIABLE_DESCRIPTION})
    return out


@dataclass
class GitLabProject:
    """What the GitLab stage knows of one project: the client, GitLab's view of it, its current variables."""

    client: GitLabClient
    info: dict
    token: dict
    variables: Optional[list] = None


class GitLabStage:
    """The GitLab side of one run: clients per (url, token, TLS) shared by the projects, calls in worker threads."""

    def __init__(self, limit: int = 8) -> None:
        self.limit = asyncio.Semaphore(max(1, limit))
        self._clients: Dict[Tuple, GitLabClient] = {}
        self._tokens: Dict[Tuple, 'asyncio.Future[dict]'] = {}

    async def _thread(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        async with self.limit:
            return await asyncio.to_thread(fn, *args, **kwargs)

    def client(self, options: GitLabOptions, issuer: str, namer: Any) -> Tuple[Tuple, GitLabClient]:
        """The shared client for the project's instance (``gitlab_url``, else its issuer) and token."""
        try:
            settings = resolve_settings(options.url or issuer, options.token, validate_certs=options.validate_certs,
                                        ca_bundle=options.ca_bundle, field_prefix='gitlab_')
        except ValidationError as err:
            text = str(err)
            option = 'gitlab_token' if 'token' in text else ('gitlab_ca_bundle' if 'ca_bundle' in text else 'gitlab_url')
            raise namer.error(option, text, 'see the message') from None
        key = (settings.url, settings.token, settings.validate_certs, settings.ca_bundle)
        if key not in self._clients:
            self._clients[key] = GitLabClient(settings)
        return key, self._clients[key]

    async def _token(self, key: Tuple, client: GitLabClient) -> dict:
        future = self._tokens.get(key)
        if future is None:
            future = self._tokens[key] = asyncio.ensure_future(self._thread(token_info, client))
        return await asyncio.shield(future)

    async def lookup(self, options: GitLabOptions, issuer: str, project_path: str, project_id: Optional[str],
                     namer: Any) -> GitLabProject:
        """GitLab's view of the project (by id when given, else by path) and of the token."""
        key, client = self.client(options, issuer, namer)
        try:
            info = await self._thread(get_project, client, int(project_id) if project_id else project_path)
        except GitLabApiError as err:
            if err.status != 404:
                raise
            option, what = ('project_id', 'id {0}'.format(project_id)) if project_id else ('project_path', project_path)
            missing = namer.error(option, 'GitLab ({0}) has no project {1} that the token can see'.format(client.settings.url, what),
                                  'correct {0}, or use a token whose user is a member of the project'.format(namer(option)))
            missing.extra['gitlab_missing'] = True
            raise missing from None
        token = await self._token(key, client)
        return GitLabProject(client, info, token)

    async def read_variables(self, target: GitLabProject) -> list:
        target.variables = await self._thread(list_variables, target.client, target.info['id'], raw=True)
        return target.variables

    async def apply(self, target: GitLabProject, plan: Any) -> list:
        return await self._thread(apply_variable_plan, target.client, target.info['id'], plan)


def reconcile_identity(info: Mapping[str, Any], *, project_path: str, project_id: Optional[str],
                       components: Optional[Sequence[str]], namer: Any) -> Dict[str, Any]:
    """What GitLab says, merged into the project's options; ``ValidationError`` when the inventory contradicts it.

    Returns the options to use: ``project_id`` (GitLab's), ``sub_claim_components`` (the inventory's when it sets them,
    else GitLab's when GitLab reports them, else None for GitLab's default).
    """
    gitlab_id = str(info.get('id'))
    gitlab_path = info.get('path_with_namespace') or ''
    if project_id is not None and project_id != gitlab_id:
        raise namer.error('project_id', 'is {0}, but GitLab\'s project {1} has id {2}'.format(project_id, gitlab_path, gitlab_id),
                          'correct {0} (or remove it: GitLab gives it)'.format(namer('project_id')))
    if gitlab_path.lower() != project_path.lower():
        raise namer.error('project_path', 'is {0}, but GitLab\'s project {1} is at {2} (renamed or transferred?)'.format(
            project_path, gitlab_id, gitlab_path),
            'use the current path {0} (the application follows the project by its id); the gitlab_projects inventory '
            'plugin keeps it current'.format(gitlab_path))
    known = bool(info.get('ci_id_token_sub_claim_components_known'))
    gitlab_components = list(info.get('ci_id_token_sub_claim_components') or [])
    if components:
        if known and list(components) != gitlab_components:
            raise namer.error('sub_claim_components', 'is {0}, but GitLab\'s project {1} issues ID tokens with {2}'.format(
                list(components), gitlab_path, gitlab_components),
                'set {0} to {1}, or leave it empty to take GitLab\'s'.format(namer('sub_claim_components'), gitlab_components))
        chosen = list(components)
    else:
        chosen = gitlab_components if known else None
    return {'project_id': gitlab_id, 'sub_claim_components': chosen}


def check_write_access(target: GitLabProject, namer: Any) -> None:
    """Setting CI/CD variables needs a token with the ``api`` scope and the Maintainer role on the project."""
    scopes = target.token.get('scopes') or []
    path = target.info.get('path_with_namespace')
    if 'api' not in scopes:
        raise namer.error('gitlab_token', 'the token ({0}) has the scopes {1}, but setting the CI/CD variables of {2} needs '
                          'the api scope'.format(target.token.get('name'), scopes, path),
                          'use an access token with the api scope, or set {0}: false'.format(namer('ci_variables')))
    level = target.info.get('access_level')
    if level is not None and level < MAINTAINER:
        raise namer.error('gitlab_token', 'the token\'s user has the role {0} on {1}, but setting CI/CD variables needs the '
                          'Maintainer role (40) or more'.format(level, path),
                          'use a token of a Maintainer of the project, or set {0}: false'.format(namer('ci_variables')))


def plan(target: GitLabProject, options: GitLabOptions, values: Mapping[str, Optional[str]], *, state: str) -> Any:
    """The variable plan against the variables read in ``preplan`` (pure). ``present``: the desired set (a conflict,
    nothing written while there is one); ``absent``: delete every variable the collection set."""
    current = target.variables or []
    if state == 'absent':
        return diff_variables(current, [], purge=True, project=target.info['id'])
    specs = variable_specs(_desired(options, values), field='ci_variables')
    # purge: a variable the collection set earlier that is no longer wanted (another environment scope, an extra
    # removed) goes; purge only ever touches variables carrying the collection's marker.
    return diff_variables(current, specs, purge=True, project=target.info['id'])


def plan_items(variable_plan: Any) -> list:
    """The plan's items for results (no values)."""
    return [dict(item, value=None) if 'value' in item else item for item in variable_plan.as_list()]


__all__ = ['GitLabOptions', 'GitLabProject', 'GitLabStage', 'parse_gitlab_options', 'reconcile_identity', 'check_write_access',
           'plan', 'plan_items', 'AZURE_VARIABLES', 'PENDING']
