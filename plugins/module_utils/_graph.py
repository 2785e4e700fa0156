# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""Microsoft Graph operations on applications and their service principals.

One application is described by an ``ApplicationSpec`` (validated before any request). ``plan_application`` reads
the current state (GET by the ``uniqueName`` alternate key, owners, service principal) and computes the changes
field by field; ``apply_application_plan`` writes only what differs; ``ensure_application`` does both and honours
check mode. ``ensure_applications`` runs many specs concurrently under a limit: every function here works on one
spec at a time, shares nothing mutable, and sends every request through ``clients.call`` (the one retry policy).

Every request is built by ONE function per kind returning a ``_batch.GraphCall`` (``application_get_call``,
``application_create_call``, ``owner_add_call``, ``service_principal_create_call``, ...; ``application_write_call``,
``owner_calls`` and ``delete_calls`` for a plan); the functions here send them one at a time (``send_graph_call``),
the bulk engine (``_onboarding.py``) sends the same calls in ``$batch``es, and both read the answers with the same
helpers (``object_of``, ``items_of``, ``upserted_of``, ``written_application``).

Creation is an upsert keyed by ``uniqueName`` (``PATCH /applications(uniqueName='...')`` with
``Prefer: create-if-missing``), and the service principal one keyed by ``appId``, so a retried request or a lost
response never creates a second object. Applications the collection creates carry ``MANAGED_TAG``; ``state=absent``
deletes only those unless ``force_delete`` is set.

``state=absent`` soft-deletes (Entra keeps deleted items for 30 days); with ``purge`` the application and its service
principal are then removed for good from ``/directory/deletedItems``, together with any managed application of the
same ``uniqueName`` still there (``plan_purge``, ``purge_objects``). Only applications carrying ``MANAGED_TAG`` are
ever purged.

Tags: ``tags=None`` leaves user tags alone; a list adds the missing ones (``purge_tags=False``) or makes the user tags
exactly that list (``purge_tags=True``). ``MANAGED_TAG`` is added when the application is created and is never
removed by a purge; listing it in ``tags`` marks an adopted application as managed.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Mapping, Optional, Sequence

from ansible_collections.oidc_federation.azure.plugins.module_utils._batch import GraphCall, not_found, send_graph_call
from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import ApiResponse
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import AzureApiError, ValidationError
from ansible_collections.oidc_federation.azure.plugins.module_utils._gitlab import app_unique_name
from ansible_collections.oidc_federation.azure.plugins.module_utils._module import gather_limited

MANAGED_TAG = 'oidc_federation.azure:managed'
SIGN_IN_AUDIENCES = ('AzureADMyOrg', 'AzureADMultipleOrgs', 'AzureADandPersonalMicrosoftAccount', 'PersonalMicrosoftAccount')
DEFAULT_SIGN_IN_AUDIENCE = 'AzureADMyOrg'
STATES = ('present', 'absent')
# Options that derive ``unique_name`` from a GitLab project when it is not given.
GITLAB_PROJECT_OPTIONS = ('gitlab_project_path', 'gitlab_project_id')

# Properties read for an application (``$select``).
APP_SELECT = ('id', 'appId', 'uniqueName', 'displayName', 'description', 'notes', 'tags', 'signInAudience',
              'serviceManagementReference', 'publisherDomain', 'createdDateTime')
SP_SELECT = ('id', 'appId', 'displayName', 'appOwnerOrganizationId')

# Graph limits (application resource: displayName <= 256, description <= 1024).
MAX_DISPLAY_NAME = 256
MAX_DESCRIPTION = 1024
MAX_UNIQUE_NAME = 256
UNIQUE_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._~-]*$')
GUID_RE = re.compile(r'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')
# ``appId in (...)`` values per request when looking up many service principals.
IN_CHUNK = 15
DEFAULT_CONCURRENCY = 8

# Managed string properties: option name -> Graph property.
TEXT_FIELDS = (('display_name', 'displayName'), ('description', 'description'), ('notes', 'notes'),
               ('service_management_reference', 'serviceManagementReference'))

PREFER_CREATE = {'Prefer': 'create-if-missing'}
OWNER_EXISTS_TEXT = 'already exist'


# --- small helpers (also used by _graph_fic.py) ------------------------------------------------------------------

def is_guid(value: Any) -> bool:
    """True for a GUID string such as ``00000003-0000-0000-c000-000000000000``."""
    return isinstance(value, str) and bool(GUID_RE.match(value))


def odata_string(value: str) -> str:
    """An OData string literal: ``'...'`` with single quotes doubled."""
    return "'{0}'".format(str(value).replace("'", "''"))


def app_path(*, app_id: Optional[str] = None, object_id: Optional[str] = None, unique_name: Optional[str] = None) -> str:
    """The Graph path of one application by exactly one key: object id, ``appId`` or ``uniqueName``."""
    keys = [k for k in (object_id, app_id, unique_name) if k is not None]
    if len(keys) != 1:
        raise ValidationError('name an application by exactly one of object_id, app_id or unique_name')
    if object_id is not None:
        return '/applications/{0}'.format(object_id)
    if app_id is not None:
        return '/applications(appId={0})'.format(odata_string(app_id))
    return '/applications(uniqueName={0})'.format(odata_string(unique_name))


def sp_path(app_id: str) -> str:
    """The Graph path of the service principal of ``app_id`` (``appId`` alternate key)."""
    return '/servicePrincipals(appId={0})'.format(odata_string(app_id))


def _invalid(field_name: str, message: str, fix: str, **extra: Any) -> ValidationError:
    """A ``ValidationError`` worded ``field: message. Fix: fix.`` and carrying ``field``."""
    return ValidationError('{0}: {1}. Fix: {2}.'.format(field_name, message, fix), field=field_name, **extra)


def _select(fields: Iterable[str]) -> dict:
    return {'$select': ','.join(fields)}


def _norm_text(value: Any) -> Optional[str]:
    """Graph text as compared: empty and null are the same."""
    return value if value not in (None, '') else None


# --- requests: ONE builder per kind ------------------------------------------------------------------------------
#
# Each returns a ``_batch.GraphCall`` (path, version, query, body, headers, operation/target labels, retry knobs).
# The functions below send them one by one (``send_graph_call``) for the single-object modules; the bulk engine
# (``_onboarding.py``) sends the very same calls in ``$batch``es (``run_graph_calls``). The ``*_of`` helpers read
# the answers, the same way for both.

def _owner_exists(err: AzureApiError) -> bool:
    return err.status == 400 and OWNER_EXISTS_TEXT in (err.message or '')


def application_get_call(*, app_id: Optional[str] = None, object_id: Optional[str] = None,
                         unique_name: Optional[str] = None, select: Sequence[str] = APP_SELECT,
                         retry_not_found: bool = False) -> GraphCall:
    """GET one application by exactly one key; a 404 is "none" (``object_of`` gives None) unless ``retry_not_found``
    (right after a create: replication lag, retried, then an error)."""
    return GraphCall('GET', app_path(app_id=app_id, object_id=object_id, unique_name=unique_name),
                     params=_select(select) if select else None, operation='get application',
                     target=_app_target(app_id=app_id, object_id=object_id, unique_name=unique_name),
                     retry_not_found=retry_not_found, accept=None if retry_not_found else not_found)


def applications_list_call(filter_expr: Optional[str], *, select: Sequence[str] = APP_SELECT) -> GraphCall:
    """GET the applications matching an OData ``$filter`` (None: all of them), every page."""
    params: dict = {'$filter': filter_expr} if filter_expr is not None else {}
    params['$top'] = 999
    if select:
        params.update(_select(select))
    return GraphCall('GET', '/applications', params=params, operation='list applications',
                     target=filter_expr if filter_expr is not None else 'all', all_pages=True)


def owners_list_call(object_id: str, *, retry_not_found: bool = False) -> GraphCall:
    """GET the owners (object ids) of the application ``object_id``, every page."""
    return GraphCall('GET', '/applications/{0}/owners'.format(object_id), params=_select(('id',)),
                     operation='list application owners', target='id={0}'.format(object_id),
                     retry_not_found=retry_not_found, all_pages=True)


def service_principal_get_call(app_id: str, *, select: Sequence[str] = SP_SELECT,
                               retry_not_found: bool = False) -> GraphCall:
    """GET the service principal of ``app_id`` (``appId`` alternate key); a 404 is "none" unless ``retry_not_found``."""
    return GraphCall('GET', sp_path(app_id), params=_select(select), operation='get service principal',
                     target='appId={0}'.format(app_id), retry_not_found=retry_not_found,
                     accept=None if retry_not_found else not_found)


def chunks(values: Sequence[str], size: int = IN_CHUNK) -> List[List[str]]:
    """``values`` in slices of at most ``size`` (for ``in (...)`` filters)."""
    return [list(values[i:i + size]) for i in range(0, len(values), size)]


def in_filter(prop: str, values: Sequence[str]) -> str:
    """The OData ``$filter`` ``prop in ('a','b',...)`` (quotes doubled)."""
    return '{0} in ({1})'.format(prop, ','.join(odata_string(v) for v in values))


def service_principals_list_call(app_ids: Sequence[str], *, select: Sequence[str] = SP_SELECT) -> GraphCall:
    """GET the service principals of ``app_ids`` (``appId in (...)``, at most ``IN_CHUNK``), every page."""
    expr = in_filter('appId', app_ids)
    return GraphCall('GET', '/servicePrincipals', params=dict(_select(select), **{'$filter': expr}),
                     operation='list service principals', target=expr, all_pages=True)


def directory_object_get_call(object_id: str) -> GraphCall:
    """GET a directory object's id (does it exist?); a 404 is "none"."""
    return GraphCall('GET', '/directoryObjects/{0}'.format(object_id), params=_select(('id',)),
                     operation='get directory object', target='id={0}'.format(object_id), accept=not_found)


def application_create_call(unique_name: str, body: Mapping[str, Any]) -> GraphCall:
    """Upsert by ``uniqueName`` (``PATCH /applications(uniqueName='...')`` with ``Prefer: create-if-missing``):
    201 with the new application, or 204 when it already existed (``upserted_of`` gives None: GET it)."""
    return GraphCall('PATCH', app_path(unique_name=unique_name), body=dict(body), headers=PREFER_CREATE,
                     operation='create application', target='uniqueName={0}'.format(unique_name))


def application_update_call(object_id: str, unique_name: str, body: Mapping[str, Any], *, adopt: bool = False) -> GraphCall:
    """PATCH the given properties of the application ``object_id`` (``adopt``: it gets its ``uniqueName`` now)."""
    return GraphCall('PATCH', app_path(object_id=object_id), body=dict(body),
                     operation='adopt application' if adopt else 'update application',
                     target='uniqueName={0}'.format(unique_name))


def application_delete_call(object_id: str, unique_name: str) -> GraphCall:
    """DELETE the application (soft delete); already gone (404) counts as done."""
    return GraphCall('DELETE', app_path(object_id=object_id), operation='delete application',
                     target='uniqueName={0}'.format(unique_name), accept=not_found)


def owner_add_call(graph_endpoint: str, app_object_id: str, owner_id: str, *, just_created: bool = False) -> GraphCall:
    """POST an owner reference; an owner already there counts as added (``just_created``: a 404 is replication lag)."""
    body = {'@odata.id': '{0}/v1.0/directoryObjects/{1}'.format(graph_endpoint, owner_id)}
    return GraphCall('POST', '/applications/{0}/owners/$ref'.format(app_object_id), body=body,
                     operation='add application owner', target='owner {0}'.format(owner_id),
                     retry_not_found=just_created, accept=_owner_exists)


def owner_remove_call(app_object_id: str, owner_id: str) -> GraphCall:
    """DELETE an owner reference; one already gone counts as removed."""
    return GraphCall('DELETE', '/applications/{0}/owners/{1}/$ref'.format(app_object_id, owner_id),
                     operation='remove application owner', target='owner {0}'.format(owner_id), accept=not_found)


def service_principal_create_call(app_id: str, display_name: str) -> GraphCall:
    """Upsert the service principal of ``app_id`` (``Prefer: create-if-missing``): 201 with it, or 204 when it
    existed (GET it). ``NoBackingApplicationObject`` (the application not replicated yet) is retried as lag."""
    return GraphCall('PATCH', sp_path(app_id), body={'displayName': display_name}, headers=PREFER_CREATE,
                     operation='create service principal', target='appId={0}'.format(app_id))


def service_principal_delete_call(sp_object_id: str, app_id: str) -> GraphCall:
    """DELETE a service principal (soft delete); already gone counts as done."""
    return GraphCall('DELETE', '/servicePrincipals/{0}'.format(sp_object_id), operation='delete service principal',
                     target='appId={0}'.format(app_id), accept=not_found)


def object_of(response: ApiResponse) -> Optional[dict]:
    """The object a GET returned; None when it was not found (an accepted 404)."""
    if response.status >= 400:
        return None
    return response.data if isinstance(response.data, dict) else None


def items_of(response: ApiResponse) -> list:
    """The items of a collection GET (``all_pages``: every page)."""
    data = response.data if isinstance(response.data, dict) else {}
    return [item for item in data.get('value') or () if isinstance(item, dict)]


def upserted_of(response: ApiResponse, key: str) -> Optional[dict]:
    """The object an upsert created (201 carrying ``key``); None when it already existed (204): GET it."""
    if response.status == 201 and isinstance(response.data, dict) and response.data.get(key):
        return response.data
    return None


# --- reads (one object or collection per call) ---------------------------------------------------------------

async def resolve_application(clients: Any, *, app_id: Optional[str] = None, object_id: Optional[str] = None,
                              unique_name: Optional[str] = None, select: Sequence[str] = APP_SELECT,
                              retry_not_found: bool = False) -> Optional[dict]:
    """The application named by exactly one key (object id, ``appId`` or ``uniqueName``) as Graph's JSON, or None.

    ``retry_not_found=True`` treats a 404 as replication lag (right after a create) and raises once it gives up.
    """
    return object_of(await send_graph_call(clients, application_get_call(
        app_id=app_id, object_id=object_id, unique_name=unique_name, select=select, retry_not_found=retry_not_found)))


def _app_target(*, app_id: Optional[str] = None, object_id: Optional[str] = None, unique_name: Optional[str] = None) -> str:
    if unique_name is not None:
        return 'uniqueName={0}'.format(unique_name)
    if app_id is not None:
        return 'appId={0}'.format(app_id)
    return 'id={0}'.format(object_id)


async def get_service_principal(clients: Any, app_id: str, *, retry_not_found: bool = False,
                                select: Sequence[str] = SP_SELECT) -> Optional[dict]:
    """The service principal of ``app_id`` (the ``select``ed fields, by default ``SP_SELECT``) or None."""
    return object_of(await send_graph_call(clients, service_principal_get_call(
        app_id, select=select, retry_not_found=retry_not_found)))


async def list_applications(clients: Any, filter_expr: str, *, select: Sequence[str] = APP_SELECT) -> list:
    """Applications matching an OData ``$filter`` (all pages)."""
    return items_of(await send_graph_call(clients, applications_list_call(filter_expr, select=select)))


def owner_ids_of(response: ApiResponse) -> list:
    """Object ids of the owners an ``owners_list_call`` returned."""
    return [o['id'] for o in items_of(response) if o.get('id')]


async def list_owner_ids(clients: Any, object_id: str, *, retry_not_found: bool = False) -> list:
    """Object ids of the owners of the application ``object_id``."""
    return owner_ids_of(await send_graph_call(clients, owners_list_call(object_id, retry_not_found=retry_not_found)))


async def service_principal_ids(clients: Any, app_ids: Iterable[str], *, limit: int = DEFAULT_CONCURRENCY) -> dict:
    """``{appId: service principal object id}`` for the given app ids (missing ones are left out)."""
    ids = sorted({a for a in app_ids if a})
    calls = [service_principals_list_call(chunk, select=('id', 'appId')) for chunk in chunks(ids)]
    found = {}
    for response in await gather_limited([lambda c=c: send_graph_call(clients, c) for c in calls], limit):
        for sp in items_of(response):
            found[sp['appId'].lower()] = sp['id']
    return {a: found[a.lower()] for a in ids if a.lower() in found}


async def tenant_id_of(clients: Any, service_principal: Optional[Mapping] = None) -> Optional[str]:
    """The directory (tenant) id: the service principal's ``appOwnerOrganizationId``, the ``tenant_id`` option when
    it is a GUID, else the ``tid`` claim of the Graph access token."""
    if service_principal and is_guid(service_principal.get('appOwnerOrganizationId')):
        return service_principal['appOwnerOrganizationId']
    configured = getattr(clients.settings, 'tenant_id', None)
    if is_guid(configured):
        return configured
    token = await clients.call('get access token', clients.credential.get_token, clients.settings.cloud.graph_scope,
                               service='entra')
    return jwt_claim(token.token, 'tid')


def jwt_claim(token: str, claim: str) -> Optional[str]:
    """One claim of a JWT's payload (not verified: only to read claims such as ``tid`` or ``oid`` of our own token)."""
    try:
        payload = token.split('.')[1]
        data = json.loads(base64.urlsafe_b64decode(payload + '=' * (-len(payload) % 4)))
    except (IndexError, ValueError, TypeError):
        return None
    value = data.get(claim) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


# --- the spec ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ApplicationSpec:
    """What one application (and its service principal) should look like. Build it with ``from_params``.

    ``None`` for ``display_name``, ``description``, ``notes``, ``service_management_reference``, ``tags`` and ``owners``
    means "not managed" (left as it is; ``display_name`` defaults to ``unique_name`` on creation). An empty string
    clears a text property.
    """

    unique_name: str
    state: str = 'present'
    display_name: Optional[str] = None
    description: Optional[str] = None
    notes: Optional[str] = None
    service_management_reference: Optional[str] = None
    tags: Optional[tuple] = None
    purge_tags: bool = False
    sign_in_audience: str = DEFAULT_SIGN_IN_AUDIENCE
    owners: Optional[tuple] = None
    purge_owners: bool = False
    service_principal: bool = True
    adopt_by_display_name: bool = False
    force_delete: bool = False
    purge: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any], *, field_prefix: str = '') -> 'ApplicationSpec':
        """Validate module-style parameters (option names) and build a spec; raises ``ValidationError`` naming the
        field (prefixed with ``field_prefix``, e.g. ``applications[3].``) before any request is made."""
        p = dict(params)

        def name(option: str) -> str:
            return field_prefix + option

        unique_name = _check_unique_name(_unique_name_param(p, name), name('unique_name'))
        state = p.get('state') or 'present'
        if state not in STATES:
            raise _invalid(name('state'), 'must be one of {0}, got {1!r}'.format(', '.join(STATES), state),
                           'use present or absent')
        audience = p.get('sign_in_audience') or DEFAULT_SIGN_IN_AUDIENCE
        canonical = next((a for a in SIGN_IN_AUDIENCES if a.lower() == str(audience).lower()), None)
        if canonical is None:
            raise _invalid(name('sign_in_audience'), 'unknown value {0!r}'.format(audience),
                           'use one of {0}'.format(', '.join(SIGN_IN_AUDIENCES)))
        display_name = _check_text(p.get('display_name'), name('display_name'), MAX_DISPLAY_NAME, required=True)
        description = _check_text(p.get('description'), name('description'), MAX_DESCRIPTION)
        return cls(
            unique_name=unique_name, state=state, display_name=display_name, description=description,
            notes=_check_text(p.get('notes'), name('notes'), None),
            service_management_reference=_check_text(
                p.get('service_management_reference'), name('service_management_reference'), None),
            tags=_check_tags(p.get('tags'), name('tags')), purge_tags=bool(p.get('purge_tags')),
            sign_in_audience=canonical, owners=_check_owners(p.get('owners'), name('owners')),
            purge_owners=bool(p.get('purge_owners')),
            service_principal=True if p.get('service_principal') is None else bool(p.get('service_principal')),
            adopt_by_display_name=bool(p.get('adopt_by_display_name')), force_delete=bool(p.get('force_delete')),
            purge=_check_purge(p.get('purge'), state, name('purge')))

    @property
    def creation_display_name(self) -> str:
        """The display name of a new (or adopted) application: ``display_name``, else ``unique_name``."""
        return self.display_name or self.unique_name


def _unique_name_param(p: Mapping[str, Any], name: Any) -> Any:
    """``unique_name``, or the name derived from ``gitlab_project_path``/``gitlab_project_id`` (``_gitlab.app_unique_name``)."""
    given = [option for option in GITLAB_PROJECT_OPTIONS if p.get(option) not in (None, '')]
    if p.get('unique_name') not in (None, '') and given:
        raise _invalid(name(given[0]), 'unique_name and {0} are mutually exclusive'.format(given[0]),
                       'give unique_name, or let {0} derive it (see the gitlab_app_unique_name filter), not both'.format(given[0]))
    if len(given) > 1:
        raise _invalid(name('gitlab_project_id'), 'gitlab_project_path and gitlab_project_id are mutually exclusive',
                       'derive the unique name from the path (readable) or from the id (survives renames and transfers), not both')
    if not given:
        return p.get('unique_name')
    option = given[0]
    value = p[option]
    # A bad path or id raises FicValidationError (a ValidationError) naming the option and the fix.
    if option == 'gitlab_project_path':
        return app_unique_name(project_path=value, field=name(option))
    return app_unique_name(project_id=value, field=name(option))


def _check_purge(value: Any, state: str, field_name: str) -> bool:
    if value and state != 'absent':
        raise _invalid(field_name, 'only applies to state=absent', 'remove purge, or set state: absent')
    return bool(value)


def _check_unique_name(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid(field_name, 'is required', 'give the stable key of the application, e.g. gitlab-oidc-mygroup~myproject, or '
                       'gitlab_project_path / gitlab_project_id to derive it from the GitLab project')
    if len(value) > MAX_UNIQUE_NAME:
        raise _invalid(field_name, 'is {0} characters long, at most {1} are allowed'.format(len(value), MAX_UNIQUE_NAME),
                       'use a shorter name')
    if not UNIQUE_NAME_RE.match(value):
        bad = sorted({c for c in value if not re.match(r'[A-Za-z0-9._~-]', c)})
        reason = ('must start with a letter or digit' if not bad else
                  'contains {0}'.format(', '.join(repr(c) for c in bad)))
        raise _invalid(field_name, '{0!r} {1}'.format(value, reason),
                       "use only letters, digits, '.', '_', '-' and '~' (for a GitLab project, gitlab_project_path derives a collision-free name "
                       "such as gitlab-oidc-group~project)")
    return value


def _check_text(value: Any, field_name: str, limit: Optional[int], *, required: bool = False) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(field_name, 'must be a string', 'quote the value')
    if required and not value.strip():
        raise _invalid(field_name, 'must not be empty', 'give a name, or leave the option out to keep the current one')
    if limit is not None and len(value) > limit:
        raise _invalid(field_name, 'is {0} characters long, Graph allows at most {1}'.format(len(value), limit),
                       'shorten it to {0} characters'.format(limit))
    return value


def _check_tags(value: Any, field_name: str) -> Optional[tuple]:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _invalid(field_name, 'must be a list of strings', 'write tags: [tag1, tag2]')
    out = []
    for index, tag in enumerate(value):
        if not isinstance(tag, str) or not tag.strip():
            raise _invalid('{0}[{1}]'.format(field_name, index), 'a tag must be a non-empty string', 'remove it or give it text')
        if tag not in out:
            out.append(tag)
    return tuple(out)


def _check_owners(value: Any, field_name: str) -> Optional[tuple]:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _invalid(field_name, 'must be a list of object ids', 'write owners: [<object id>, ...]')
    out = []
    for index, owner in enumerate(value):
        if not is_guid(owner):
            raise _invalid('{0}[{1}]'.format(field_name, index), '{0!r} is not an object id (GUID)'.format(owner),
                           'give the object id of a user or service principal, not a name or an app id')
        if owner.lower() not in out:
            out.append(owner.lower())
    return tuple(out)


def specs_from_params(items: Sequence[Mapping[str, Any]], *, field: str = 'applications',
                      defaults: Optional[Mapping[str, Any]] = None) -> List[ApplicationSpec]:
    """Validate many application parameter dicts (each merged over ``defaults``); unique names must not repeat."""
    specs, seen = [], {}
    for index, item in enumerate(items):
        prefix = '{0}[{1}].'.format(field, index)
        spec = ApplicationSpec.from_params(dict(defaults or {}, **item), field_prefix=prefix)
        key = spec.unique_name.lower()
        if key in seen:
            raise _invalid(prefix + 'unique_name', '{0!r} is also used by {1}[{2}]'.format(spec.unique_name, field, seen[key]),
                           'give every application its own unique_name')
        seen[key] = index
        specs.append(spec)
    return specs


# --- plan ---------------------------------------------------------------------------------------------------------

CREATE, ADOPT, UPDATE, DELETE, PURGE, NONE = 'create', 'adopt', 'update', 'delete', 'purge', 'none'


@dataclass
class ApplicationPlan:
    """What ``apply_application_plan`` will do for one spec, computed from a read of the current state.

    ``action``: create, adopt, update (or nothing to do), delete, purge (only deleted items are left to remove),
    none (absent and already gone).
    ``body``: Graph properties to send (create: the whole new application; otherwise only what differs).
    ``purge``: objects to remove for good from deleted items (``PurgeTarget``), with ``spec.purge``.
    """

    spec: ApplicationSpec
    action: str
    current: Optional[dict] = None
    body: dict = field(default_factory=dict)
    owners_current: Optional[list] = None
    owners_add: list = field(default_factory=list)
    owners_remove: list = field(default_factory=list)
    service_principal: Optional[dict] = None
    create_service_principal: bool = False
    delete_service_principal: bool = False
    purge: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    before: Optional[dict] = None
    after: Optional[dict] = None

    @property
    def changed(self) -> bool:
        """True when applying the plan writes anything."""
        return (self.action in (CREATE, ADOPT, DELETE) or bool(self.body) or bool(self.owners_add)
                or bool(self.owners_remove) or self.create_service_principal or self.delete_service_principal
                or bool(self.purge))

    @property
    def actions(self) -> list:
        """Human-readable list of the writes, in order."""
        name = self.spec.unique_name
        out = []
        if self.action == CREATE:
            out.append('create application {0}'.format(name))
        elif self.action == ADOPT:
            out.append('adopt application {0} (app id {1}) and set uniqueName {2}'.format(
                self.current.get('displayName'), self.current.get('appId'), name))
        updated = sorted(k for k in self.body if k != 'uniqueName') if self.action in (UPDATE, ADOPT) else []
        if updated:
            out.append('update application {0}: {1}'.format(name, ', '.join(updated)))
        out.extend('add owner {0}'.format(o) for o in self.owners_add)
        out.extend('remove owner {0}'.format(o) for o in self.owners_remove)
        if self.create_service_principal:
            out.append('create service principal')
        if self.delete_service_principal:
            out.append('delete service principal {0}'.format(self.service_principal.get('id')))
        if self.action == DELETE:
            out.append('delete application {0} (app id {1})'.format(name, self.current.get('appId')))
        out.extend('purge {0} from deleted items'.format(t.describe()) for t in self.purge)
        return out


def desired_tags(current: Optional[Sequence[str]], spec: ApplicationSpec, *, creating: bool) -> list:
    """The tags the application should carry (current order kept, new ones appended in the spec's order).

    ``spec.tags=None``: current tags (plus ``MANAGED_TAG`` on creation). ``purge_tags=False``: current + spec.tags.
    ``purge_tags=True``: spec.tags, plus ``MANAGED_TAG`` when the application has it or is being created.
    """
    current = list(current or ())
    wanted = list(spec.tags or ())
    if creating:
        base = []
        wanted = wanted + [MANAGED_TAG]
    elif spec.tags is None:
        return current
    elif spec.purge_tags:
        keep = set(wanted) | ({MANAGED_TAG} & set(current))
        base = [t for t in current if t in keep]
    else:
        base = current
    out = list(base)
    for tag in wanted:
        if tag not in out:
            out.append(tag)
    return out


def managed_view(app: Optional[Mapping[str, Any]], spec: ApplicationSpec, *, owners: Optional[Iterable[str]] = None,
                 service_principal: Optional[bool] = None) -> Optional[dict]:
    """The managed fields of an application, for ``diff`` (tags and owners sorted; owners only when managed)."""
    if app is None:
        return None
    view = {
        'unique_name': app.get('uniqueName'),
        'display_name': app.get('displayName'),
        'description': _norm_text(app.get('description')),
        'notes': _norm_text(app.get('notes')),
        'service_management_reference': _norm_text(app.get('serviceManagementReference')),
        'sign_in_audience': app.get('signInAudience'),
        'tags': sorted(app.get('tags') or ()),
    }
    if spec.owners is not None:
        view['owners'] = sorted(owners or ())
    if service_principal is not None:
        view['service_principal'] = service_principal
    return view


def application_changes(current: Optional[Mapping[str, Any]], spec: ApplicationSpec, *, creating: bool = False) -> dict:
    """Graph properties to send: the whole new application when ``creating``, else only those that differ."""
    if creating:
        body = {'displayName': spec.creation_display_name, 'signInAudience': spec.sign_in_audience,
                'tags': desired_tags((), spec, creating=True)}
        for option, prop in TEXT_FIELDS:
            value = getattr(spec, option)
            if prop not in body and _norm_text(value) is not None:
                body[prop] = value
        return body
    body = {}
    for option, prop in TEXT_FIELDS:
        value = getattr(spec, option)
        if value is not None and _norm_text(value) != _norm_text(current.get(prop)):
            body[prop] = _norm_text(value)
    if spec.sign_in_audience != current.get('signInAudience'):
        body['signInAudience'] = spec.sign_in_audience
    tags = desired_tags(current.get('tags'), spec, creating=False)
    if set(tags) != set(current.get('tags') or ()):
        body['tags'] = tags
    return body


async def plan_application(clients: Any, spec: ApplicationSpec) -> ApplicationPlan:
    """Read the current state of one application and compute the changes (no writes).

    Reads: the application by its ``uniqueName``; when there is none (``present``), the applications with the display
    name the new one would get (adoption, or a warning); the owners (when managed); the service principal. Then
    ``decide_application`` (pure) plans, and owners to add are checked to exist.
    """
    current = await resolve_application(clients, unique_name=spec.unique_name)
    display_matches = None
    if spec.state == 'present' and current is None:
        display_matches = await list_applications(clients, 'displayName eq {0}'.format(odata_string(spec.creation_display_name)))
    read = ApplicationRead(current=current, display_matches=display_matches)
    plan = decide_application(spec, read, reading=True)
    if plan.current is not None:
        if spec.owners is not None and spec.state == 'present':
            read.owners = [o.lower() for o in await list_owner_ids(clients, plan.current['id'])]
        read.service_principal = await get_service_principal(clients, plan.current['appId'])
        read.service_principal_read = True
    plan = decide_application(spec, read)
    await _check_owners_exist(clients, plan.owners_add)
    return await plan_purge_of(clients, plan)


@dataclass
class ApplicationRead:
    """What was read about one application before planning (see ``decide_application``).

    ``current``: the application found for the spec (by ``uniqueName``, or by any other key the caller uses, e.g. a
    marker tag), None when there is none. ``display_matches``: for a spec to create, the applications that already
    have its display name (None: not read, so no adoption and no warning). ``owners``: its owners' object ids (None:
    not read). ``service_principal``: its service principal (meaningful when ``service_principal_read``).
    """

    current: Optional[dict] = None
    display_matches: Optional[list] = None
    owners: Optional[list] = None
    service_principal: Optional[dict] = None
    service_principal_read: bool = False


def decide_application(spec: ApplicationSpec, read: ApplicationRead, *, reading: bool = False) -> ApplicationPlan:
    """Plan one application from what was read (pure; raises ``ValidationError`` before any write).

    ``present``: create (upsert by ``uniqueName``), adopt the one application with the display name and no
    ``uniqueName`` (``adopt_by_display_name``), or update only what differs; owners and the service principal as
    requested. ``absent``: delete a managed application (and its service principal), refuse an unmanaged one unless
    ``force_delete``. ``reading=True`` only decides which application the plan is about (``plan.current``), for a
    caller that reads owners and the service principal next.
    """
    if spec.state == 'absent':
        return _decide_absent(spec, read)
    plan = ApplicationPlan(spec, UPDATE if read.current is not None else CREATE, current=read.current)
    if read.current is None and read.display_matches is not None:
        _adopt_by_display_name(plan, read.display_matches)
    if reading:
        return plan
    if plan.action == CREATE:
        plan.body = application_changes(None, spec, creating=True)
        after_app = dict(plan.body, uniqueName=spec.unique_name)
    else:
        plan.body = application_changes(plan.current, spec)
        if plan.action == ADOPT:
            plan.body['uniqueName'] = spec.unique_name
        after_app = dict(plan.current, **plan.body)
    if spec.owners is not None:
        current_owners = [] if plan.current is None else list(read.owners or [])
        plan.owners_current = current_owners
        plan.owners_add = [o for o in spec.owners if o not in current_owners]
        plan.owners_remove = [o for o in current_owners if o not in spec.owners] if spec.purge_owners else []
    if plan.current is None:
        plan.create_service_principal = spec.service_principal
    else:
        plan.service_principal = read.service_principal
        plan.create_service_principal = spec.service_principal and read.service_principal is None
    sp_before = None if plan.current is None or not spec.service_principal else plan.service_principal is not None
    plan.before = managed_view(plan.current, spec, owners=plan.owners_current, service_principal=sp_before)
    owners_after = None
    if spec.owners is not None:
        owners_after = [o for o in (plan.owners_current or []) if o not in plan.owners_remove] + plan.owners_add
    plan.after = managed_view(after_app, spec, owners=owners_after,
                              service_principal=True if spec.service_principal else None)
    return plan


def _adopt_by_display_name(plan: ApplicationPlan, matches: Sequence[Mapping[str, Any]]) -> None:
    """No application has the unique name: adopt the one application with the display name (when asked), refuse
    when several match, or warn that a new one will be created next to existing ones."""
    spec = plan.spec
    display = spec.creation_display_name
    candidates = [dict(a) for a in matches if not a.get('uniqueName') and a.get('displayName') == display]
    described = ', '.join(sorted(a.get('appId') or '?' for a in candidates))
    if not spec.adopt_by_display_name:
        if candidates:
            plan.warnings.append(
                '{0} existing application(s) named {1!r} have no uniqueName (app ids {2}); this task creates a new application. '
                'Set adopt_by_display_name: true to adopt an existing one instead.'.format(
                    len(candidates), display, described))
        return
    if len(candidates) > 1:
        raise _invalid('adopt_by_display_name',
                       '{0} applications are named {1!r} and have no uniqueName (app ids {2}); refusing to guess which '
                       'one to adopt'.format(len(candidates), display, described),
                       'delete or rename the extra ones, or set uniqueName {0!r} on the right one, or set '
                       'adopt_by_display_name: false to create a new application'.format(spec.unique_name),
                       candidates=sorted(a.get('appId') for a in candidates))
    if candidates:
        plan.action, plan.current = ADOPT, candidates[0]


async def _check_owners_exist(clients: Any, object_ids: Sequence[str]) -> None:
    """Fail before any write when an owner to add is not a directory object."""
    async def exists(oid: str) -> bool:
        try:
            return object_of(await send_graph_call(clients, directory_object_get_call(oid))) is not None
        except AzureApiError as err:
            if err.status == 403:  # no Directory.Read.All: cannot check here, Graph checks when the owner is added
                return True
            raise
    found = await gather_limited([lambda o=o: exists(o) for o in object_ids], DEFAULT_CONCURRENCY)
    missing = [o for o, ok in zip(object_ids, found) if not ok]
    if missing:
        raise _invalid('owners', 'no user or service principal has the object id(s) {0}'.format(', '.join(missing)),
                       'use the object id of an existing user or service principal (not its app id)', missing=missing)


def _decide_absent(spec: ApplicationSpec, read: ApplicationRead) -> ApplicationPlan:
    current = read.current
    if current is None:
        return ApplicationPlan(spec, NONE)
    if MANAGED_TAG not in (current.get('tags') or ()) and not spec.force_delete:
        raise _invalid('force_delete', 'application {0!r} (app id {1}) was not created by this collection (it has no '
                       'tag {2!r}), so it is not deleted'.format(spec.unique_name, current.get('appId'), MANAGED_TAG),
                       'set force_delete: true to delete it anyway')
    plan = ApplicationPlan(spec, DELETE, current=current)
    plan.service_principal = read.service_principal
    plan.delete_service_principal = read.service_principal is not None
    plan.before = managed_view(current, spec, service_principal=read.service_principal is not None)
    return plan


async def plan_purge_of(clients: Any, plan: ApplicationPlan) -> ApplicationPlan:
    """Add what ``spec.purge`` removes for good to an ``absent`` plan (reads deleted items; no write).

    A plan that deletes the application purges it (and its service principal) with every deleted application of the
    same ``uniqueName``; a plan with nothing to delete becomes a ``purge`` of what deleted items still hold.
    """
    spec = plan.spec
    if spec.state != 'absent' or not spec.purge:
        return plan
    if plan.action == DELETE:
        plan.purge = await plan_purge(clients, spec.unique_name, application=plan.current,
                                      service_principal=plan.service_principal)
        return plan
    targets = await plan_purge(clients, spec.unique_name)
    if not targets:
        return plan
    deleted = next((t.data for t in targets if t.kind == 'application'), None)
    plan = ApplicationPlan(spec, PURGE, current=deleted, purge=targets)
    if deleted is not None:
        plan.before = dict(managed_view(deleted, spec), in_deleted_items=True)
    return plan


# --- deleted items: find and purge --------------------------------------------------------------------------------

DELETED_ITEMS = '/directory/deletedItems'
DELETED_APP_SELECT = APP_SELECT + ('deletedDateTime',)
DELETED_SP_SELECT = ('id', 'appId', 'displayName', 'tags', 'deletedDateTime')


@dataclass(frozen=True)
class PurgeTarget:
    """One object to remove for good from deleted items.

    ``kind``: ``application`` or ``servicePrincipal``; ``deleted_now``: deleted by this run (it may take a moment to
    appear in deleted items: replication lag is retried); ``data``: Graph's JSON as read.
    """

    object_id: str
    kind: str
    app_id: Optional[str]
    name: Optional[str] = None
    deleted_now: bool = False
    data: Optional[dict] = field(default=None, compare=False)

    def describe(self) -> str:
        """``application gitlab-oidc-x (object id ..., app id ...)`` / ``service principal ...``."""
        kind = 'application' if self.kind == 'application' else 'service principal'
        name = '{0} '.format(self.name) if self.name else ''
        return '{0} {1}(object id {2}, app id {3})'.format(kind, name, self.object_id, self.app_id)

    def as_dict(self) -> dict:
        """JSON-safe form for module results."""
        return {'object_id': self.object_id, 'type': self.kind, 'app_id': self.app_id, 'name': self.name}


def application_filter(*, unique_name: Optional[str] = None, app_id: Optional[str] = None,
                       display_name: Optional[str] = None, tag: Optional[str] = None) -> str:
    """The OData ``$filter`` matching every given criterion of an application (``and``), '' when none is given."""
    clauses = []
    if unique_name is not None:
        clauses.append('uniqueName eq {0}'.format(odata_string(unique_name)))
    if app_id is not None:
        clauses.append('appId eq {0}'.format(odata_string(app_id)))
    if display_name is not None:
        clauses.append('displayName eq {0}'.format(odata_string(display_name)))
    if tag is not None:
        clauses.append('tags/any(t:t eq {0})'.format(odata_string(tag)))
    return ' and '.join(clauses)


async def find_deleted_applications(clients: Any, *, unique_name: Optional[str] = None, app_id: Optional[str] = None,
                                    tag: Optional[str] = None, select: Sequence[str] = DELETED_APP_SELECT) -> list:
    """Applications in Entra's deleted items matching every given criterion (at least one), as Graph's JSON.

    ``GET /directory/deletedItems/microsoft.graph.application?$filter=...`` (the type cast is required; needs
    Application.Read.All). Deleted items stay for 30 days unless purged.
    """
    expr = application_filter(unique_name=unique_name, app_id=app_id, tag=tag)
    if not expr:
        raise ValidationError('find_deleted_applications: give unique_name, app_id or tag')
    return await clients.call('list deleted applications', clients.graph_list, DELETED_ITEMS + '/microsoft.graph.application',
                              target=expr, service='graph', params=dict(_select(select), **{'$filter': expr, '$top': 999}))


async def find_deleted_service_principals(clients: Any, app_ids: Iterable[str], *, limit: int = DEFAULT_CONCURRENCY) -> list:
    """Service principals in deleted items whose ``appId`` is one of ``app_ids`` (Graph's JSON)."""
    ids = sorted({a.lower() for a in app_ids if a})

    async def one(app: str) -> list:
        expr = 'appId eq {0}'.format(odata_string(app))
        return await clients.call('list deleted service principals', clients.graph_list,
                                  DELETED_ITEMS + '/microsoft.graph.servicePrincipal', target=expr, service='graph',
                                  params=dict(_select(DELETED_SP_SELECT), **{'$filter': expr}))

    pages = await gather_limited([lambda a=a: one(a) for a in ids], limit)
    return [sp for page in pages for sp in page if isinstance(sp, dict)]


def _unmanaged_purge(app: Mapping[str, Any], where: str, field_name: str) -> ValidationError:
    return _invalid(field_name, 'application {0!r} (object id {1}, app id {2}) {3} does not carry the tag {4!r}: purge only '
                    'ever removes applications this collection created'.format(
                        app.get('uniqueName') or app.get('displayName'), app.get('id'), app.get('appId'), where, MANAGED_TAG),
                    'set purge: false (a deletion alone can be undone from deleted items for 30 days), or remove it by '
                    'hand if you really want it gone for good')


async def plan_purge(clients: Any, unique_name: str, *, application: Optional[Mapping[str, Any]] = None,
                     service_principal: Optional[Mapping[str, Any]] = None, field_name: str = 'purge') -> List[PurgeTarget]:
    """What purging ``unique_name`` removes for good (reads only), service principals first.

    ``application``/``service_principal``: the live objects this run is about to delete (``deleted_now``). Also every
    application in deleted items with that ``uniqueName``, and the deleted service principals of all of them. Any
    application without ``MANAGED_TAG`` fails the plan (``ValidationError`` naming ``field_name``) before any write.
    """
    if application is not None and MANAGED_TAG not in (application.get('tags') or ()):
        raise _unmanaged_purge(application, 'is not managed', field_name)
    deleted = await find_deleted_applications(clients, unique_name=unique_name)
    for app in deleted:
        if MANAGED_TAG not in (app.get('tags') or ()):
            raise _unmanaged_purge(app, 'in deleted items', field_name)
    apps = ([dict(application)] if application is not None else []) + [a for a in deleted if isinstance(a, dict)]
    sps = await find_deleted_service_principals(clients, [a.get('appId') for a in apps]) if apps else []
    targets: List[PurgeTarget] = []
    if service_principal is not None:
        targets.append(PurgeTarget(service_principal['id'], 'servicePrincipal', service_principal.get('appId'),
                                   service_principal.get('displayName'), deleted_now=True, data=dict(service_principal)))
    targets += [PurgeTarget(sp['id'], 'servicePrincipal', sp.get('appId'), sp.get('displayName'), data=sp) for sp in sps]
    if application is not None:
        targets.append(PurgeTarget(application['id'], 'application', application.get('appId'), unique_name,
                                   deleted_now=True, data=dict(application)))
    targets += [PurgeTarget(a['id'], 'application', a.get('appId'), a.get('uniqueName'), data=a) for a in deleted]
    unique: dict = {}
    for target in targets:
        unique.setdefault(target.object_id.lower(), target)
    return list(unique.values())


def purge_deleted_call(target: PurgeTarget) -> GraphCall:
    """``DELETE /directory/deletedItems/{id}``. An object this run deleted (``deleted_now``) may not be in deleted items
    yet: its 404 is retried as replication lag until ``replication_timeout``; any other 404 means already gone."""
    return GraphCall('DELETE', '{0}/{1}'.format(DELETED_ITEMS, target.object_id), operation='purge deleted {0}'.format(target.kind),
                     target='id={0}'.format(target.object_id), retry_not_found=target.deleted_now,
                     accept=None if target.deleted_now else not_found)


async def purge_deleted_object(clients: Any, target: PurgeTarget) -> bool:
    """Purge one deleted object (``purge_deleted_call``): True when purged, False when it was already gone (404)."""
    return (await send_graph_call(clients, purge_deleted_call(target))).status != 404


async def purge_objects(clients: Any, targets: Sequence[PurgeTarget]) -> List[PurgeTarget]:
    """Purge ``targets`` in order (service principals before their applications); returns those purged."""
    purged = []
    for target in targets:
        if await purge_deleted_object(clients, target):
            purged.append(target)
    return purged


# --- apply --------------------------------------------------------------------------------------------------------

@dataclass
class ApplicationResult:
    """The outcome for one spec: ids (None while unknown, e.g. a creation in check mode), diff views, writes."""

    unique_name: str
    state: str
    changed: bool
    app_id: Optional[str] = None
    object_id: Optional[str] = None
    service_principal_id: Optional[str] = None
    tenant_id: Optional[str] = None
    display_name: Optional[str] = None
    before: Optional[dict] = None
    after: Optional[dict] = None
    actions: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    purged: list = field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON-safe result (without the diff views)."""
        return {'unique_name': self.unique_name, 'state': self.state, 'changed': self.changed, 'app_id': self.app_id,
                'object_id': self.object_id, 'service_principal_id': self.service_principal_id,
                'tenant_id': self.tenant_id, 'display_name': self.display_name, 'application': self.after,
                'actions': list(self.actions), 'warnings': list(self.warnings), 'purged': list(self.purged)}


def application_write_call(plan: ApplicationPlan) -> Optional[GraphCall]:
    """The request that creates (upsert by ``uniqueName``), adopts or updates the application of ``plan``; None when
    its properties need no write (only owners or the service principal change)."""
    if plan.action == CREATE:
        return application_create_call(plan.spec.unique_name, plan.body)
    if plan.action in (ADOPT, UPDATE) and plan.body:
        return application_update_call(plan.current['id'], plan.spec.unique_name, plan.body, adopt=plan.action == ADOPT)
    return None


def written_application(plan: ApplicationPlan, response: Optional[ApiResponse]) -> Optional[dict]:
    """The application after ``application_write_call(plan)`` answered ``response`` (None: no call was needed);
    None after a create answered 204 (it already existed: GET it by ``uniqueName`` with ``retry_not_found``)."""
    if plan.action == CREATE:
        return upserted_of(response, 'appId') if response is not None else None
    app = dict(plan.current)
    if response is not None:
        app.update(plan.body)
    return app


def owner_calls(graph_endpoint: str, app_object_id: str, plan: ApplicationPlan) -> List[GraphCall]:
    """The owner writes of ``plan`` in order: additions, then removals."""
    created = plan.action == CREATE
    return ([owner_add_call(graph_endpoint, app_object_id, o, just_created=created) for o in plan.owners_add]
            + [owner_remove_call(app_object_id, o) for o in plan.owners_remove])


def service_principal_display_name(plan: ApplicationPlan, app: Mapping[str, Any]) -> str:
    """The display name a new service principal gets: its application's."""
    return app.get('displayName') or plan.spec.creation_display_name


def delete_calls(plan: ApplicationPlan) -> List[GraphCall]:
    """The deletions of a ``DELETE`` plan in order: the service principal, then the application."""
    app = plan.current
    calls = []
    if plan.service_principal is not None:
        calls.append(service_principal_delete_call(plan.service_principal['id'], app['appId']))
    calls.append(application_delete_call(app['id'], plan.spec.unique_name))
    return calls


async def apply_application_plan(clients: Any, plan: ApplicationPlan) -> dict:
    """Write what ``plan`` says (nothing when it has no change); returns the resulting application and service
    principal as ``{'application': dict|None, 'service_principal': dict|None}``. One request at a time."""
    if plan.action == NONE:
        return {'application': None, 'service_principal': None}
    if plan.action in (DELETE, PURGE):
        if plan.action == DELETE:
            await _delete(clients, plan)
        if plan.purge:
            await purge_objects(clients, plan.purge)
        return {'application': None, 'service_principal': None}
    app = await _write_application(clients, plan)
    for call in owner_calls(clients.settings.cloud.graph_endpoint, app['id'], plan):
        await send_graph_call(clients, call)
    sp = plan.service_principal
    if plan.create_service_principal:
        sp = await ensure_service_principal(clients, app['appId'], service_principal_display_name(plan, app))
    return {'application': app, 'service_principal': sp}


async def _write_application(clients: Any, plan: ApplicationPlan) -> dict:
    """Create (upsert by uniqueName), adopt or update the application; returns it (Graph JSON)."""
    call = application_write_call(plan)
    try:
        response = await send_graph_call(clients, call) if call is not None else None
    except AzureApiError as err:
        if plan.action == CREATE:
            raise await explain_name_conflict(clients, plan.spec.unique_name, err) from None
        raise
    app = written_application(plan, response)
    if app is None:
        # 204: the application already existed (a lost response, or still replicating when it was read).
        return await resolve_application(clients, unique_name=plan.spec.unique_name, retry_not_found=True)
    return app


async def explain_name_conflict(clients: Any, unique_name: str, err: AzureApiError) -> AzureApiError:
    """``err`` with a hint when the upsert met an application in deleted items that still holds ``unique_name``.

    Microsoft does not document whether deleted items keep an application's ``uniqueName`` reserved (reports say it
    does for 30 days); when Graph answers ``ObjectConflict`` on ``uniqueName`` and deleted items hold an application
    of that name, the way out is to restore or to purge it.
    """
    if not (err.status == 400 and 'uniquename' in (err.message or '').lower() and
            (err.has_code('ObjectConflict') or 'already exists' in (err.message or ''))):
        return err
    try:
        deleted = await find_deleted_applications(clients, unique_name=unique_name,
                                                  select=('id', 'appId', 'deletedDateTime', 'tags'))
    except AzureApiError:
        return err
    if not deleted:
        return err
    found = ', '.join('object id {0} (app id {1}, deleted {2})'.format(d.get('id'), d.get('appId'), d.get('deletedDateTime'))
                      for d in deleted)
    hint = ('unique_name {0!r} is still held by an application in Entra\'s deleted items: {1}. Restore it (POST '
            '/directory/deletedItems/{2}/restore), or remove it for good with oidc_federation.azure.azure_ad_app '
            'state=absent purge=true (managed applications only), then run again'.format(unique_name, found, deleted[0].get('id')))
    return err.with_context(hint=hint)


async def ensure_service_principal(clients: Any, app_id: str, display_name: str) -> dict:
    """Create the service principal of ``app_id`` unless it exists (upsert by ``appId``); returns it.

    ``NoBackingApplicationObject`` (the application not replicated yet) is retried up to ``replication_timeout``.
    """
    response = await send_graph_call(clients, service_principal_create_call(app_id, display_name))
    return upserted_of(response, 'id') or await get_service_principal(clients, app_id, retry_not_found=True)


async def _delete(clients: Any, plan: ApplicationPlan) -> None:
    """Delete the service principal, then the application (both soft-deleted, restorable for 30 days)."""
    for call in delete_calls(plan):
        await send_graph_call(clients, call)


# --- one spec, many specs -----------------------------------------------------------------------------------------

async def ensure_application(clients: Any, spec: ApplicationSpec, *, check_mode: bool = False) -> ApplicationResult:
    """Read, compare and (unless ``check_mode`` or nothing differs) write one application and its service principal.

    The result names the application as it is afterwards (``state=present``) or the one deleted (``state=absent``).
    """
    plan = await plan_application(clients, spec)
    app, sp = plan.current, plan.service_principal
    if plan.changed and not check_mode:
        written = await apply_application_plan(clients, plan)
        if spec.state == 'present':
            app, sp = written['application'], written['service_principal']
    result = ApplicationResult(
        unique_name=spec.unique_name, state=spec.state, changed=plan.changed, before=plan.before, after=plan.after,
        actions=plan.actions, warnings=list(plan.warnings), purged=[t.as_dict() for t in plan.purge])
    if app is not None:
        result.app_id, result.object_id, result.display_name = app.get('appId'), app.get('id'), app.get('displayName')
    if plan.after:
        result.display_name = plan.after.get('display_name')
    if sp is not None:
        result.service_principal_id = sp.get('id')
    result.tenant_id = await tenant_id_of(clients, sp)
    return result


async def ensure_applications(clients: Any, specs: Sequence[ApplicationSpec], *, check_mode: bool = False,
                              limit: int = DEFAULT_CONCURRENCY, return_exceptions: bool = False) -> list:
    """``ensure_application`` for many specs concurrently (at most ``limit`` at once), results in input order.

    With ``return_exceptions=True`` a failing spec yields its exception and the others carry on.
    """
    names = [s.unique_name.lower() for s in specs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise _invalid('unique_name', '{0!r} appears more than once'.format(dup), 'give every application its own unique_name')
    return await gather_limited([lambda s=s: ensure_application(clients, s, check_mode=check_mode) for s in specs],
                                limit, return_exceptions=return_exceptions)


# --- reading many (info) ------------------------------------------------------------------------------------------

def application_view(app: Mapping[str, Any], *, service_principal_id: Optional[str] = None) -> dict:
    """An application as the modules return it (snake_case keys)."""
    return {
        'object_id': app.get('id'), 'app_id': app.get('appId'), 'unique_name': app.get('uniqueName'),
        'display_name': app.get('displayName'), 'description': app.get('description'), 'notes': app.get('notes'),
        'tags': list(app.get('tags') or ()), 'sign_in_audience': app.get('signInAudience'),
        'service_management_reference': app.get('serviceManagementReference'),
        'publisher_domain': app.get('publisherDomain'), 'created_date_time': app.get('createdDateTime'),
        'managed': MANAGED_TAG in (app.get('tags') or ()), 'service_principal_id': service_principal_id,
    }


def check_app_query(*, unique_name: Optional[str] = None, app_id: Optional[str] = None,
                    display_name: Optional[str] = None, tag: Optional[str] = None) -> None:
    """Validate the criteria of ``find_applications`` (raises ``ValidationError`` naming the option)."""
    if unique_name is not None and not unique_name:
        raise _invalid('unique_name', 'must not be empty', 'give a unique name or leave the option out')
    if app_id is not None and not is_guid(app_id):
        raise _invalid('app_id', '{0!r} is not an application (client) id'.format(app_id),
                       'give the GUID shown as "Application (client) ID"')
    if display_name is not None and not display_name:
        raise _invalid('display_name', 'must not be empty', 'give a display name or leave the option out')
    if tag is not None and not tag:
        raise _invalid('tag', 'must not be empty', 'give a tag or leave the option out')


async def find_applications(clients: Any, *, unique_name: Optional[str] = None, app_id: Optional[str] = None,
                            display_name: Optional[str] = None, tag: Optional[str] = None,
                            with_service_principals: bool = True) -> list:
    """Applications matching every given criterion (none: all of them), with their service principal ids.

    A lone ``unique_name`` or ``app_id`` is read by its alternate key; other combinations use ``$filter``.
    Returns ``application_view`` dicts ordered by display name, then app id.
    """
    check_app_query(unique_name=unique_name, app_id=app_id, display_name=display_name, tag=tag)
    given = {k: v for k, v in (('unique_name', unique_name), ('app_id', app_id), ('display_name', display_name),
                               ('tag', tag)) if v is not None}
    if set(given) in ({'unique_name'}, {'app_id'}):
        app = await resolve_application(clients, unique_name=unique_name, app_id=app_id)
        apps = [app] if app is not None else []
    else:
        expr = application_filter(unique_name=unique_name, app_id=app_id, display_name=display_name, tag=tag)
        if expr:
            apps = await list_applications(clients, expr)
        else:
            apps = items_of(await send_graph_call(clients, applications_list_call(None)))
    sps = await service_principal_ids(clients, [a.get('appId') for a in apps]) if with_service_principals and apps else {}
    views = [application_view(a, service_principal_id=sps.get(a.get('appId'))) for a in apps]
    return sorted(views, key=lambda v: ((v['display_name'] or '').lower(), v['app_id'] or ''))


__all__ = [
    'MANAGED_TAG', 'SIGN_IN_AUDIENCES', 'APP_SELECT', 'ApplicationSpec', 'ApplicationPlan', 'ApplicationResult',
    'is_guid', 'jwt_claim', 'odata_string', 'chunks', 'in_filter', 'application_filter', 'app_path', 'sp_path', 'resolve_application',
    'get_service_principal',
    'list_applications', 'list_owner_ids', 'service_principal_ids', 'tenant_id_of', 'specs_from_params',
    'desired_tags', 'managed_view', 'application_changes', 'plan_application', 'apply_application_plan',
    'ensure_service_principal', 'ensure_application', 'ensure_applications',
    'application_view', 'check_app_query', 'find_applications', 'PurgeTarget', 'find_deleted_applications',
    'find_deleted_service_principals', 'plan_purge', 'purge_deleted_call', 'purge_deleted_object', 'purge_objects',
    'explain_name_conflict',
    'application_get_call', 'applications_list_call', 'owners_list_call', 'service_principal_get_call',
    'service_principals_list_call', 'directory_object_get_call', 'application_create_call', 'application_update_call',
    'application_delete_call', 'owner_add_call', 'owner_remove_call', 'service_principal_create_call',
    'service_principal_delete_call', 'object_of', 'items_of', 'upserted_of', 'owner_ids_of', 'application_write_call',
    'written_application', 'owner_calls', 'service_principal_display_name', 'delete_calls',
]
