# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""Azure RBAC through Azure Resource Manager: scopes, role definitions and role assignments.

Pure parts (no I/O): ``parse_scope``, ``parse_role``, ``parse_guid``, ``assignment_name`` (deterministic uuid5),
``access_granting_permission`` / ``access_granting_action`` (does a role's permission set let its holder grant
access, by any of ``ACCESS_GRANTING_ACTIONS``?).

Async parts (every remote call through ``clients.call``, so retries live in ``_retry``):

* ``RoleDefinitionCache`` / ``role_definition_cache(clients)``: role definitions by name or id, looked up once per
  scope and run, shared by concurrent callers;
* ``list_principal_assignments``, ``put_role_assignment``, ``delete_role_assignment``: raw ARM calls;
* ``service_principal_id_for_app``: an app (client) id to its service principal's object id (``_graph``);
* ``plan_principal_assignments`` (reads only, validates everything, including the privileged-role guard) and
  ``apply_principal_plan`` (writes): one principal's desired list; ``reconcile_principals`` plans many principals
  concurrently, then writes only when every plan is valid.

Decisions, documented in the module too:

* Assignment names are ``uuid5(ASSIGNMENT_NAMESPACE, "<scope lower>|<principal id lower>|<role GUID lower>")``, so a
  re-run (or a retried PUT) addresses the same assignment. An equivalent assignment (same principal, role GUID and
  scope, compared case-insensitively) that exists under another name is adopted, never duplicated.
* ``principalType`` is always sent. ARM then accepts a principal that is still replicating, so ``PrincipalNotFound``
  can only mean that the principal does not exist: it fails at once (no replication retry) with a hint.
* ``description`` can change on an existing assignment (PUT with the same name); ``condition`` and
  ``conditionVersion`` of an adopted assignment are sent back unchanged.
"""

from __future__ import annotations

import asyncio
import re
import uuid
import weakref
from dataclasses import dataclass, field as dc_field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import AzureApiError, ValidationError
from ansible_collections.oidc_federation.azure.plugins.module_utils._graph import get_service_principal, is_guid, odata_string
from ansible_collections.oidc_federation.azure.plugins.module_utils._module import gather_limited

API_VERSION = '2022-04-01'
PROVIDER = '/providers/Microsoft.Authorization'
PRINCIPAL_TYPES = ('User', 'Group', 'ServicePrincipal', 'ForeignGroup', 'Device')
DEFAULT_PRINCIPAL_TYPE = 'ServicePrincipal'
# The action that lets a role's holder grant access to others.
GRANT_ACCESS_ACTION = 'Microsoft.Authorization/roleAssignments/write'
# Every action through which a role's holder can give itself or others access (Azure RBAC docs: custom roles,
# "Elevate access", Privileged Identity Management schedule requests), in the order they are reported.
ACCESS_GRANTING_ACTIONS = (
    GRANT_ACCESS_ACTION,                                               # assign any role
    'Microsoft.Authorization/roleDefinitions/write',                   # widen a custom role the holder already has
    'Microsoft.Authorization/elevateAccess/Action',                    # User Access Administrator at the root scope
    'Microsoft.Authorization/roleAssignmentScheduleRequests/write',    # PIM: create or activate assignments
    'Microsoft.Authorization/roleEligibilityScheduleRequests/write',   # PIM: make principals eligible
)
# uuid5(NAMESPACE_URL, 'oidc_federation.azure:role_assignment'); never change it, names depend on it.
ASSIGNMENT_NAMESPACE = uuid.UUID('54f6c70f-0633-5358-b62d-711822126ab5')
DEFAULT_LIMIT = 8

SCOPE_FORMATS = (
    '/providers/Microsoft.Management/managementGroups/{managementGroupId}',
    '/subscriptions/{subscriptionId}',
    '/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}',
    '/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/{namespace}/{type}/{name}[/{type}/{name}...]',
)

# Management group ids and resource group names: letters (Unicode), digits, '-', '_', '.', '(', ')'; at most 90.
_NAME_RE = re.compile(r'^[\w.()-]{1,90}$', re.UNICODE)
_NAMESPACE_RE = re.compile(r'^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z0-9]+)+$')
_BAD_CHARS_RE = re.compile(r'[\s?#%\\"<>\x00-\x1f\x7f]')
_ROLE_ID_RE = re.compile(r'^(?P<scope>(/[^/]+)*)/providers/Microsoft\.Authorization/roleDefinitions/(?P<guid>[^/]+)/?$',
                         re.IGNORECASE)
_ASSIGNMENT_IN_ID_RE = re.compile(r'/providers/Microsoft\.Authorization/roleAssignments/[^/]+$', re.IGNORECASE)
_ROLE_NAME_MAX = 512


# --- pure helpers -----------------------------------------------------------------------------------------------

def parse_guid(value: Any, field: str) -> str:
    """``value`` as a lower-case GUID, or ``ValidationError`` naming ``field``."""
    text = value.strip() if isinstance(value, str) else value
    if not is_guid(text):
        raise ValidationError('{0}: expected a GUID such as 00000000-0000-0000-0000-000000000000, got {1!r}'.format(
            field, value))
    return text.lower()


def role_guid_of(role_definition_id: Any) -> str:
    """The trailing GUID (lower case) of a ``roleDefinitionId``; ARM writes the id at various scope prefixes."""
    return str(role_definition_id or '').rstrip('/').rsplit('/', 1)[-1].lower()


def normalise_scope_text(text: Any) -> str:
    """A scope string for comparison: no trailing slash, lower case."""
    value = str(text or '').strip()
    return ('/' + value.strip('/')).lower() if value.strip('/') else '/'


@dataclass(frozen=True)
class Scope:
    """A validated ARM scope. ``id`` is canonical (ARM's keyword casing, names as given); ``key`` is ``id`` lowered."""

    kind: str  # management_group | subscription | resource_group | resource
    id: str
    subscription_id: Optional[str] = None
    resource_group: Optional[str] = None
    management_group: Optional[str] = None

    @property
    def key(self) -> str:
        """The case-insensitive identity of the scope."""
        return self.id.lower()

    def path(self, *parts: str) -> str:
        """``{scope}/providers/Microsoft.Authorization/<parts...>``."""
        return '/'.join((self.id + PROVIDER,) + parts)


def _scope_error(field: str, value: Any, problem: str) -> ValidationError:
    return ValidationError('{0}: {1} (got {2!r}). Accepted scope formats: {3}'.format(
        field, problem, value, '; '.join(SCOPE_FORMATS)))


def parse_scope(value: Any, field: str = 'scope') -> Scope:
    """Validate an ARM scope (management group, subscription, resource group or resource) and canonicalise it.

    A missing leading or an extra trailing slash is tolerated; keywords (``subscriptions``, ``resourceGroups``,
    ``providers``, ``Microsoft.Management/managementGroups``) are written in ARM's casing. Raises ``ValidationError``
    naming ``field`` and listing the accepted formats.
    """
    if not isinstance(value, str) or not value.strip():
        raise _scope_error(field, value, 'a scope is required')
    text = value.strip()
    if _BAD_CHARS_RE.search(text):
        raise _scope_error(field, value, 'whitespace, quotes and the characters ? # % \\ < > are not allowed in a scope')
    segments = text.strip('/').split('/')
    if not text.strip('/'):
        raise _scope_error(field, value, "the root scope '/' is not supported")
    if any(not s for s in segments):
        raise _scope_error(field, value, 'empty path segment (double slash)')
    low = [s.lower() for s in segments]
    if low[0] == 'providers':
        return _parse_management_group(segments, low, field, value)
    if low[0] == 'subscriptions':
        return _parse_subscription_scope(segments, low, field, value)
    raise _scope_error(field, value, 'a scope starts with /subscriptions/ or /providers/Microsoft.Management/managementGroups/')


def _parse_management_group(segments: List[str], low: List[str], field: str, value: Any) -> Scope:
    if low[:3] != ['providers', 'microsoft.management', 'managementgroups'] or len(segments) != 4:
        raise _scope_error(field, value, 'a management group scope is /providers/Microsoft.Management/managementGroups/{id}')
    name = segments[3]
    if not _NAME_RE.match(name):
        raise _scope_error(field, value, 'invalid management group id {0!r}: up to 90 letters, digits, '
                                         "'-', '_', '.', '(' or ')'".format(name))
    return Scope('management_group', '/providers/Microsoft.Management/managementGroups/' + name, management_group=name)


def _parse_subscription_scope(segments: List[str], low: List[str], field: str, value: Any) -> Scope:
    if len(segments) < 2:
        raise _scope_error(field, value, 'the subscription id is missing')
    sub = segments[1]
    if not is_guid(sub):
        raise _scope_error(field, value, 'the subscription id {0!r} is not a GUID'.format(sub))
    sub = sub.lower()
    if len(segments) == 2:
        return Scope('subscription', '/subscriptions/' + sub, subscription_id=sub)
    if low[2] != 'resourcegroups' or len(segments) < 4:
        raise _scope_error(field, value, 'below a subscription, a scope continues with /resourceGroups/{name}')
    group = segments[3]
    if not _NAME_RE.match(group) or group.endswith('.'):
        raise _scope_error(field, value, 'invalid resource group name {0!r}: up to 90 letters, digits, '
                                         "'-', '_', '.', '(' or ')', not ending with '.'".format(group))
    base = '/subscriptions/{0}/resourceGroups/{1}'.format(sub, group)
    if len(segments) == 4:
        return Scope('resource_group', base, subscription_id=sub, resource_group=group)
    rest = _parse_provider_path(segments[4:], field, value)
    return Scope('resource', base + rest, subscription_id=sub, resource_group=group)


def _parse_provider_path(rest: List[str], field: str, value: Any) -> str:
    """``providers/{ns}/{type}/{name}[/{type}/{name}...]`` (repeatable for extension resources), canonicalised."""
    out, i = [], 0
    while i < len(rest):
        if rest[i].lower() != 'providers' or i + 3 >= len(rest):
            raise _scope_error(field, value, 'below a resource group, a resource scope is /providers/{namespace}/{type}/{name}')
        namespace = rest[i + 1]
        if not _NAMESPACE_RE.match(namespace):
            raise _scope_error(field, value, 'invalid resource provider namespace {0!r} (e.g. Microsoft.Storage)'.format(namespace))
        out.extend(('providers', namespace))
        i += 2
        pairs = 0
        while i < len(rest) and rest[i].lower() != 'providers':
            if i + 1 >= len(rest):
                raise _scope_error(field, value, 'resource type {0!r} has no name after it'.format(rest[i]))
            out.extend((rest[i], rest[i + 1]))
            i += 2
            pairs += 1
        if not pairs:
            raise _scope_error(field, value, 'a resource scope needs {type}/{name} after the namespace')
    return '/' + '/'.join(out)


@dataclass(frozen=True)
class RoleRef:
    """A role as the user named it: by ``name`` (e.g. Reader) or by ``guid`` (from a GUID or a full id)."""

    value: str
    guid: Optional[str] = None
    name: Optional[str] = None

    @property
    def key(self) -> Tuple[str, str]:
        """Identity before resolution: ('guid', guid) or ('name', lower-case name)."""
        return ('guid', self.guid) if self.guid else ('name', (self.name or '').lower())


def parse_role(value: Any, field: str = 'role') -> RoleRef:
    """A role name, a role definition GUID, or a full ``roleDefinitionId`` (compared by its GUID)."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError('{0}: a role name (e.g. Reader), role definition GUID or role definition id is required'.format(field))
    text = value.strip()
    if is_guid(text):
        return RoleRef(text, guid=text.lower())
    if '/' in text:
        match = _ROLE_ID_RE.match(text)
        if not match or not is_guid(match.group('guid')):
            raise ValidationError('{0}: {1!r} is neither a role name nor a role definition id; a role definition id looks like '
                                  '/subscriptions/{{subscriptionId}}/providers/Microsoft.Authorization/roleDefinitions/{{GUID}} '
                                  'or /providers/Microsoft.Authorization/roleDefinitions/{{GUID}}'.format(field, value))
        return RoleRef(text, guid=match.group('guid').lower())
    if len(text) > _ROLE_NAME_MAX or re.search(r'[\x00-\x1f\x7f]', text):
        raise ValidationError('{0}: {1!r} is not a valid role name'.format(field, value))
    return RoleRef(text, name=text)


def assignment_name(scope: Scope, principal_id: str, role_guid: str) -> str:
    """The deterministic role assignment name: uuid5 of lower-case scope, principal id and role GUID."""
    seed = '{0}|{1}|{2}'.format(scope.key, principal_id.lower(), role_guid.lower())
    return str(uuid.uuid5(ASSIGNMENT_NAMESPACE, seed))


def _action_regex(pattern: str) -> 're.Pattern[str]':
    return re.compile('^' + '.*'.join(re.escape(p) for p in pattern.split('*')) + '$', re.IGNORECASE)


def action_matches(pattern: Any, action: str) -> bool:
    """True when an RBAC action pattern (``*`` wildcards, case-insensitive) covers ``action``."""
    return isinstance(pattern, str) and bool(_action_regex(pattern.strip()).match(action))


def access_granting_permission(permissions: Any, actions: Sequence[str] = ACCESS_GRANTING_ACTIONS) -> Optional[Tuple[str, str]]:
    """``(pattern, action)``: the first of ``actions`` a role's permission blocks grant, and the ``actions`` entry
    that grants it; None when the role grants none of them.

    Per permission block, an action is granted when an ``actions`` pattern covers it and no ``notActions`` pattern
    of the same block does (Azure's "actions minus notActions", ``*`` matching any run of characters, case
    insensitive); blocks add up. So Owner (``*``), User Access Administrator (``Microsoft.Authorization/*``), Role
    Based Access Control Administrator and custom roles with ``*``, ``*/write``, ``Microsoft.Authorization/*``,
    ``.../roleAssignments/write``, ``.../roleDefinitions/write`` or ``.../elevateAccess/Action`` are caught;
    Contributor (``*`` minus ``Microsoft.Authorization/*/Write`` and ``.../elevateAccess/Action``) is not.
    """
    for action in actions:
        for block in permissions or ():
            if not isinstance(block, Mapping):
                continue
            not_actions = block.get('notActions') or ()
            if any(action_matches(p, action) for p in not_actions):
                continue
            for pattern in block.get('actions') or ():
                if action_matches(pattern, action):
                    return pattern, action
    return None


def access_granting_action(permissions: Any, action: Optional[str] = None) -> Optional[str]:
    """The ``actions`` entry through which a role can grant access (``action``, or any of
    ``ACCESS_GRANTING_ACTIONS``), or None; see ``access_granting_permission``."""
    found = access_granting_permission(permissions, (action,) if action else ACCESS_GRANTING_ACTIONS)
    return found[0] if found else None


@dataclass(frozen=True)
class RoleDefinition:
    """A resolved role definition: ``id`` as ARM returned it at the lookup scope, ``guid``, ``name``, permissions."""

    id: str
    guid: str
    name: str
    role_type: Optional[str] = None
    permissions: Tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_arm(cls, data: Mapping[str, Any]) -> 'RoleDefinition':
        """Build from ARM's JSON."""
        props = data.get('properties') or {}
        guid = str(data.get('name') or role_guid_of(data.get('id'))).lower()
        return cls(id=str(data.get('id') or ''), guid=guid, name=str(props.get('roleName') or guid),
                   role_type=props.get('type'), permissions=tuple(props.get('permissions') or ()))

    @property
    def granting_permission(self) -> Optional[Tuple[str, str]]:
        """``(pattern, action)`` through which holders can grant access (None for an unprivileged role)."""
        return access_granting_permission(self.permissions)

    @property
    def granting_action(self) -> Optional[str]:
        """The action pattern that lets holders grant access (None for an unprivileged role)."""
        found = self.granting_permission
        return found[0] if found else None

    @property
    def privileged(self) -> bool:
        """True when holders of this role can grant access to themselves or others (see ``ACCESS_GRANTING_ACTIONS``)."""
        return self.granting_permission is not None


# --- role definitions -----------------------------------------------------------------------------------------------

class RoleDefinitionCache:
    """Role definitions of one run, keyed per scope and role key; concurrent lookups of one key share one request.

    Lookups: a GUID reads ``{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}``; a name lists
    ``{scope}/providers/Microsoft.Authorization/roleDefinitions?$filter=roleName eq '...'`` (the definitions
    assignable at that scope, custom roles included). Failed lookups are not cached.
    """

    def __init__(self) -> None:
        self._entries: Dict[Tuple[str, str, str], 'asyncio.Future[RoleDefinition]'] = {}
        self.lookups = 0

    async def get(self, clients: Any, scope: Scope, role: RoleRef, *, field: str = 'role') -> RoleDefinition:
        """The definition of ``role`` at ``scope``; ``ValidationError`` naming ``field`` when there is none."""
        key = (scope.key,) + role.key
        entry = self._entries.get(key)
        if entry is None:
            entry = asyncio.ensure_future(self._lookup(clients, scope, role, field))
            self._entries[key] = entry
        try:
            definition = await asyncio.shield(entry)
        except Exception:
            if self._entries.get(key) is entry:
                del self._entries[key]
            raise
        if role.name:  # a later lookup by GUID at the same scope needs no request
            guid_key = (scope.key, 'guid', definition.guid)
            if guid_key not in self._entries:
                self._entries[guid_key] = entry
        return definition

    async def _lookup(self, clients: Any, scope: Scope, role: RoleRef, field: str) -> RoleDefinition:
        self.lookups += 1
        if role.guid:
            return await _definition_by_guid(clients, scope, role, field)
        return await _definition_by_name(clients, scope, role, field)


_CACHES: 'weakref.WeakKeyDictionary[Any, RoleDefinitionCache]' = weakref.WeakKeyDictionary()


def role_definition_cache(clients: Any) -> RoleDefinitionCache:
    """The role-definition cache of this run (one per ``Clients`` object)."""
    cache = _CACHES.get(clients)
    if cache is None:
        cache = _CACHES[clients] = RoleDefinitionCache()
    return cache


async def _definition_by_guid(clients: Any, scope: Scope, role: RoleRef, field: str) -> RoleDefinition:
    try:
        response = await clients.call('read role definition', clients.arm_request, 'GET', scope.path('roleDefinitions', role.guid),
                                      api_version=API_VERSION, target='{0} at {1}'.format(role.guid, scope.id), service='arm')
    except AzureApiError as err:
        if err.status == 404 or err.has_code('RoleDefinitionDoesNotExist'):
            raise ValidationError('{0}: no role definition with id {1} is available at scope {2}; check the GUID '
                                  '(az role definition list --name <role> --query [].name)'.format(field, role.guid, scope.id)) from None
        raise
    definition = RoleDefinition.from_arm(response.data or {})
    if definition.guid != role.guid:
        raise AzureApiError('ARM returned role definition {0} for {1}'.format(definition.guid, role.guid),
                            operation='read role definition', target=role.guid, service='arm')
    return definition


async def _definition_by_name(clients: Any, scope: Scope, role: RoleRef, field: str) -> RoleDefinition:
    items = await clients.call('list role definitions', clients.arm_list, scope.path('roleDefinitions'), api_version=API_VERSION,
                               params={'$filter': 'roleName eq {0}'.format(odata_string(role.name))},
                               target='roleName={0} at {1}'.format(role.name, scope.id), service='arm')
    found = {}
    for item in items:
        definition = RoleDefinition.from_arm(item)
        if definition.name.lower() == role.name.lower():
            found.setdefault(definition.guid, definition)
    if not found:
        raise ValidationError('{0}: no role definition named {1!r} is available at scope {2}; use the exact role name '
                              '(e.g. Reader, Contributor, Storage Blob Data Reader) or its GUID'.format(field, role.name, scope.id))
    if len(found) > 1:
        raise ValidationError('{0}: the role name {1!r} is ambiguous at scope {2} ({3}); give the role definition GUID instead'.format(
            field, role.name, scope.id, ', '.join(sorted(found))))
    return next(iter(found.values()))


# --- role assignments (raw calls) ---------------------------------------------------------------------------------------

def assignment_scope_key(assignment: Mapping[str, Any]) -> str:
    """The normalised scope of an ARM role assignment (``properties.scope``, else derived from its ``id``)."""
    props = assignment.get('properties') or {}
    scope = props.get('scope')
    if not scope:
        scope = _ASSIGNMENT_IN_ID_RE.sub('', str(assignment.get('id') or ''))
    return normalise_scope_text(scope)


def same_assignment(assignment: Mapping[str, Any], scope: Scope, principal_id: str, role_guid: str) -> bool:
    """True when ``assignment`` gives ``role_guid`` to ``principal_id`` exactly at ``scope`` (case-insensitive)."""
    props = assignment.get('properties') or {}
    return (assignment_scope_key(assignment) == scope.key
            and str(props.get('principalId') or '').lower() == principal_id.lower()
            and role_guid_of(props.get('roleDefinitionId')) == role_guid.lower())


def _at_or_above(assignment_scope: str, scope: Scope) -> bool:
    """True when an assignment at ``assignment_scope`` (a scope key) applies at ``scope`` (the same, or inherited)."""
    return assignment_scope == '/' or scope.key == assignment_scope or scope.key.startswith(assignment_scope + '/')


async def list_principal_assignments(clients: Any, scope: Scope, principal_id: str, *, inherited: bool = False) -> List[dict]:
    """This principal's role assignments exactly AT ``scope`` (never those below it; with ``inherited``, also those
    above it that apply there).

    Lists ``{scope}/providers/Microsoft.Authorization/roleAssignments?$filter=principalId eq '{id}'`` (which answers
    at, above and below) and keeps those whose scope equals ``scope`` case-insensitively (or contains it).
    """
    items = await clients.call('list role assignments', clients.arm_list, scope.path('roleAssignments'), api_version=API_VERSION,
                               params={'$filter': 'principalId eq {0}'.format(odata_string(principal_id))},
                               target='principalId={0} at {1}'.format(principal_id, scope.id), service='arm')
    return [a for a in items if isinstance(a, Mapping)
            and (_at_or_above(assignment_scope_key(a), scope) if inherited else assignment_scope_key(a) == scope.key)
            and str((a.get('properties') or {}).get('principalId') or '').lower() == principal_id.lower()]


async def list_scope_assignments(clients: Any, scope: Scope) -> List[dict]:
    """Every role assignment exactly AT ``scope``, of any principal (one paged listing for many principals).

    Lists ``{scope}/providers/Microsoft.Authorization/roleAssignments?$filter=atScope()`` (which answers at and above
    the scope) and keeps those whose scope equals ``scope`` case-insensitively.
    """
    items = await clients.call('list role assignments', clients.arm_list, scope.path('roleAssignments'), api_version=API_VERSION,
                               params={'$filter': 'atScope()'}, target='atScope() at {0}'.format(scope.id), service='arm')
    return [a for a in items if isinstance(a, Mapping) and assignment_scope_key(a) == scope.key]


class _PrincipalMissing(Exception):
    """Carries an ARM ``PrincipalNotFound`` out of the retry loop without a replication retry (see module docstring)."""

    def __init__(self, error: AzureApiError) -> None:
        super().__init__(str(error))
        self.error = error


def _with_hint(err: AzureApiError, hint: str) -> AzureApiError:
    return AzureApiError(err.message, operation=err.operation, target=err.target, service=err.service, status=err.status,
                         code=err.code, details=err.details, retry_after=err.retry_after, request_id=err.request_id,
                         kind=err.kind, hint=hint, note=err.note, request=err.request)


def _write_hint(err: AzureApiError, principal_field: str, principal_type: Optional[str]) -> Optional[str]:
    if err.has_code('PrincipalNotFound'):
        return ('principalType {0} was sent, so this is not replication delay: the principal does not exist in this tenant. '
                '{1} must be the object id of the service principal (enterprise application), not the application '
                '(client) id or the app registration\'s object id; or give app_id instead').format(principal_type, principal_field)
    if err.has_code('UnmatchedPrincipalType'):
        return 'principal_type does not match the directory object: set principal_type to its real type'
    if err.status == 403 or err.has_code('AuthorizationFailed'):
        return ('the identity running the module needs Microsoft.Authorization/roleAssignments/write (or /delete) at '
                'this scope, e.g. through Owner, User Access Administrator or Role Based Access Control Administrator')
    return None


async def put_role_assignment(clients: Any, path: str, properties: Mapping[str, Any], *, operation: str = 'create role assignment',
                              principal_field: str = 'principal_id') -> dict:
    """PUT ``{"properties": properties}`` to a role assignment path; returns ARM's assignment JSON.

    A deterministic name makes the PUT idempotent, so transient failures are retried. ``PrincipalNotFound`` while
    ``principalType`` is set fails at once (no replication wait), with a hint naming ``principal_field``.
    """
    body = {'properties': {k: v for k, v in properties.items() if v is not None}}
    principal_type = body['properties'].get('principalType')

    async def put() -> Any:
        try:
            return await clients.arm_request('PUT', path, api_version=API_VERSION, json_body=body)
        except AzureApiError as err:
            if principal_type and err.has_code('PrincipalNotFound'):
                raise _PrincipalMissing(err) from None
            raise

    try:
        response = await clients.call(operation, put, target=path, service='arm')
    except _PrincipalMissing as missing:
        err = missing.error.with_context(operation, path, 'arm')
        raise _with_hint(err, _write_hint(err, principal_field, principal_type)) from None
    except AzureApiError as err:
        hint = _write_hint(err, principal_field, principal_type)
        if hint and not err.hint:
            raise _with_hint(err, hint) from None
        raise
    return response.data if isinstance(response.data, dict) else {}


async def delete_role_assignment(clients: Any, assignment_id: str) -> Optional[dict]:
    """DELETE a role assignment by its full id; None when it was already gone (204 or 404)."""
    try:
        response = await clients.call('delete role assignment', clients.arm_request, 'DELETE', assignment_id,
                                      api_version=API_VERSION, target=assignment_id, service='arm')
    except AzureApiError as err:
        if err.status == 404 and (err.code is None or err.has_code('RoleAssignmentNotFound')):
            return None
        hint = _write_hint(err, 'principal_id', None)
        if hint and not err.hint:
            raise _with_hint(err, hint) from None
        raise
    return response.data if response.status != 204 and isinstance(response.data, dict) else None


# --- principals -----------------------------------------------------------------------------------------------------------

async def service_principal_id_for_app(clients: Any, app_id: str, *, wait: bool = True) -> Optional[str]:
    """The object id of the service principal of application (client) id ``app_id`` (``_graph.get_service_principal``).

    Reads ``/servicePrincipals(appId='...')`` (needs Application.Read.All or Directory.Read.All). With ``wait`` a 404
    is retried as replication lag until ``replication_timeout`` (a service principal created moments ago may not be
    readable yet), then fails with a ``ValidationError`` naming ``app_id``. Without ``wait`` (check mode, where an
    earlier task only *would* have created it) a missing service principal is returned as None at once.
    """
    try:
        found = await get_service_principal(clients, app_id, retry_not_found=wait)
    except AzureApiError as err:
        if err.status == 404:
            raise ValidationError('app_id: no service principal exists for application (client) id {0} in this tenant{1}; '
                                  'create it first (oidc_federation.azure.azure_ad_app does) or pass principal_id'.format(
                                      app_id, ' ({0})'.format(err.note) if err.note else '')) from None
        raise
    if found is None and not wait:
        return None
    if not found or not is_guid(found.get('id')):
        raise AzureApiError('Graph returned no service principal id', operation='get service principal',
                            target='appId={0}'.format(app_id), service='graph')
    return found['id'].lower()


# --- planning -------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DesiredAssignment:
    """One requested (scope, role) pair; ``description`` None leaves the description unmanaged.

    ``field`` prefixes error messages (``assignments[2]``, or '' for the top-level ``role``/``scope`` options).
    """

    scope: Scope
    role: RoleRef
    description: Optional[str] = None
    field: str = ''

    def label(self, option: str) -> str:
        """``assignments[2].role`` or ``role``."""
        return '{0}.{1}'.format(self.field, option) if self.field else option


@dataclass
class AssignmentChange:
    """What happens to one assignment: ``create``, ``update`` (description), ``unchanged``, ``delete``, ``absent``.

    ``before`` is ARM's JSON as read (None when missing); ``after`` is the predicted JSON, replaced by ARM's answer
    once applied (None when deleted or absent). ``requested`` is False for ``exclusive`` removals.
    """

    action: str
    scope: Scope
    name: str
    role: Optional[RoleDefinition] = None
    before: Optional[dict] = None
    after: Optional[dict] = None
    requested: bool = True
    desired: Optional[DesiredAssignment] = None

    @property
    def changed(self) -> bool:
        """True when this change writes."""
        return self.action in ('create', 'update', 'delete')

    @property
    def adopted(self) -> bool:
        """True for an existing equivalent assignment whose name is not the deterministic one."""
        return self.before is not None and self.role is not None and \
            str(self.before.get('name') or '').lower() != assignment_name(
                self.scope, str((self.before.get('properties') or {}).get('principalId') or ''), self.role.guid)


@dataclass
class PrincipalPlan:
    """One principal's reconciliation: requested ``changes`` (input order) and ``removals`` (``exclusive``)."""

    principal_id: str
    principal_type: str
    state: str
    exclusive: bool
    changes: List[AssignmentChange] = dc_field(default_factory=list)
    removals: List[AssignmentChange] = dc_field(default_factory=list)
    existing: Dict[str, List[dict]] = dc_field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """True when applying the plan writes (or wrote) anything."""
        return any(c.changed for c in self.changes + self.removals)

    def before(self) -> List[dict]:
        """This principal's assignments at the listed scopes before the run (compact, sorted), for diffs."""
        roles = {c.role.guid: c.role.name for c in self.changes + self.removals if c.role}
        items = [compact_assignment(a, roles) for assignments in self.existing.values() for a in assignments]
        return sorted(items, key=_compact_sort_key)

    def after(self) -> List[dict]:
        """The same assignments after the run (predicted in check mode), for diffs."""
        roles = {c.role.guid: c.role.name for c in self.changes + self.removals if c.role}
        touched = {}
        for change in self.changes + self.removals:
            if change.before is not None:
                touched[str(change.before.get('id') or '').lower()] = change
        items = []
        for assignments in self.existing.values():
            for assignment in assignments:
                change = touched.get(str(assignment.get('id') or '').lower())
                if change is None:
                    items.append(compact_assignment(assignment, roles))
                elif change.after is not None:
                    items.append(compact_assignment(change.after, roles))
        items.extend(compact_assignment(c.after, roles) for c in self.changes if c.action == 'create' and c.after)
        return sorted(items, key=_compact_sort_key)


def compact_assignment(assignment: Mapping[str, Any], role_names: Optional[Mapping[str, str]] = None) -> dict:
    """A short, stable view of an ARM assignment for diffs: scope, role, name, description."""
    props = assignment.get('properties') or {}
    guid = role_guid_of(props.get('roleDefinitionId'))
    return {'scope': props.get('scope') or assignment_scope_key(assignment), 'role': (role_names or {}).get(guid, guid),
            'role_definition_guid': guid, 'name': assignment.get('name'), 'description': props.get('description')}


def _compact_sort_key(item: Mapping[str, Any]) -> Tuple[str, str, str]:
    return (str(item.get('scope') or '').lower(), str(item.get('role') or '').lower(), str(item.get('name') or ''))


def _same_description(current: Any, desired: Optional[str]) -> bool:
    return desired is None or (current or '') == (desired or '')


def check_duplicates(desired: Sequence[DesiredAssignment], keys: Sequence[Any]) -> None:
    """``ValidationError`` when two entries have the same (scope, role) key (``keys[i]`` belongs to ``desired[i]``)."""
    seen: Dict[Any, DesiredAssignment] = {}
    for entry, key in zip(desired, keys):
        if key in seen:
            first = seen[key]
            raise ValidationError('{0}: role {1!r} at scope {2} is already requested by {3}; list each (scope, role) once'.format(
                entry.label('role'), entry.role.value, entry.scope.id, first.label('role')))
        seen[key] = entry


def check_privileged(desired: Sequence[DesiredAssignment], definitions: Sequence[RoleDefinition], allow_privileged: bool) -> None:
    """Refuse roles that can grant access (see ``access_granting_action``) unless ``allow_privileged``; no I/O."""
    if allow_privileged:
        return
    problems = []
    for entry, definition in zip(desired, definitions):
        found = definition.granting_permission
        if found is not None:
            problems.append('{0}: {1!r} at {2} can grant access to others (its actions include {3!r}, which covers {4})'.format(
                entry.label('role'), definition.name, entry.scope.id, found[0], found[1]))
    if problems:
        raise ValidationError('refusing privileged role assignments: {0}. Assign a narrower role, or set allow_privileged: true '
                              'if this principal really must manage access'.format('; '.join(problems)))


async def plan_principal_assignments(clients: Any, principal_id: str, desired: Sequence[DesiredAssignment], *,
                                     principal_type: str = DEFAULT_PRINCIPAL_TYPE, state: str = 'present',
                                     exclusive: bool = False, allow_privileged: bool = False,
                                     cache: Optional[RoleDefinitionCache] = None, limit: int = DEFAULT_LIMIT,
                                     existing: Optional[Mapping[str, List[dict]]] = None) -> PrincipalPlan:
    """Read and decide, never write: resolve roles (cached), guard privileged roles, list this principal's assignments
    at each listed scope, and match them.

    ``state=present``: missing -> ``create`` (deterministic name), equivalent existing (any name) -> ``unchanged`` or
    ``update`` (description differs and was given); with ``exclusive``, this principal's other assignments AT the
    listed scopes -> ``removals``. ``state=absent``: every equivalent existing -> ``delete``, none -> ``absent``.
    Raises ``ValidationError`` (bad role, duplicates, privileged role without ``allow_privileged``) before any write.
    ``existing`` (scope key -> this principal's assignments AT that scope, e.g. from one listing of a scope shared by
    many principals) replaces the per-scope listing; a listed scope missing from it is listed as usual.
    """
    if state not in ('present', 'absent'):
        raise ValidationError("state: expected 'present' or 'absent', got {0!r}".format(state))
    if principal_type not in PRINCIPAL_TYPES:
        raise ValidationError('principal_type: expected one of {0}, got {1!r}'.format(', '.join(PRINCIPAL_TYPES), principal_type))
    principal_id = parse_guid(principal_id, 'principal_id')
    cache = cache if cache is not None else role_definition_cache(clients)
    check_duplicates(desired, [(d.scope.key,) + d.role.key for d in desired])
    definitions = await gather_limited([_role_lookup(cache, clients, d) for d in desired], limit)
    check_duplicates(desired, [(d.scope.key, r.guid) for d, r in zip(desired, definitions)])
    if state == 'present':
        check_privileged(desired, definitions, allow_privileged)
    scopes: Dict[str, Scope] = {}
    for entry in desired:
        scopes.setdefault(entry.scope.key, entry.scope)
    given = existing or {}
    missing = [s for key, s in scopes.items() if key not in given]
    listed = dict(zip((s.key for s in missing),
                      await gather_limited([_list_factory(clients, s, principal_id) for s in missing], limit)))
    plan = PrincipalPlan(principal_id, principal_type, state, exclusive,
                         existing={key: list(given[key]) if key in given else listed[key] for key in scopes})
    for entry, definition in zip(desired, definitions):
        plan.changes.extend(_decide(plan, entry, definition))
    if state == 'present' and exclusive:
        plan.removals = await _exclusive_removals(clients, cache, plan, desired, definitions, scopes, limit)
    return plan


def _role_lookup(cache: RoleDefinitionCache, clients: Any, entry: DesiredAssignment) -> Any:
    return lambda: cache.get(clients, entry.scope, entry.role, field=entry.label('role'))


def _list_factory(clients: Any, scope: Scope, principal_id: str) -> Any:
    return lambda: list_principal_assignments(clients, scope, principal_id)


def _pick(matches: List[dict], name: str) -> List[dict]:
    """Equivalent assignments, the one with the deterministic name first."""
    return sorted(matches, key=lambda a: str(a.get('name') or '').lower() != name)


def _decide(plan: PrincipalPlan, entry: DesiredAssignment, definition: RoleDefinition) -> List[AssignmentChange]:
    name = assignment_name(entry.scope, plan.principal_id, definition.guid)
    matches = _pick([a for a in plan.existing.get(entry.scope.key, [])
                     if same_assignment(a, entry.scope, plan.principal_id, definition.guid)], name)
    if plan.state == 'absent':
        if not matches:
            return [AssignmentChange('absent', entry.scope, name, definition, desired=entry)]
        return [AssignmentChange('delete', entry.scope, str(m.get('name')), definition, before=m, desired=entry) for m in matches]
    if not matches:
        after = _predicted(entry, plan, definition, name)
        return [AssignmentChange('create', entry.scope, name, definition, after=after, desired=entry)]
    current = matches[0]
    props = current.get('properties') or {}
    if _same_description(props.get('description'), entry.description):
        return [AssignmentChange('unchanged', entry.scope, str(current.get('name')), definition, before=current,
                                 after=current, desired=entry)]
    after = dict(current, properties=dict(props, description=entry.description or None))
    return [AssignmentChange('update', entry.scope, str(current.get('name')), definition, before=current, after=after,
                             desired=entry)]


def _predicted(entry: DesiredAssignment, plan: PrincipalPlan, definition: RoleDefinition, name: str) -> dict:
    return {
        'id': entry.scope.path('roleAssignments', name), 'name': name, 'type': 'Microsoft.Authorization/roleAssignments',
        'properties': {'roleDefinitionId': definition.id, 'principalId': plan.principal_id, 'principalType': plan.principal_type,
                       'scope': entry.scope.id, 'description': entry.description or None, 'condition': None,
                       'conditionVersion': None},
    }


async def _exclusive_removals(clients: Any, cache: RoleDefinitionCache, plan: PrincipalPlan, desired: Sequence[DesiredAssignment],
                              definitions: Sequence[RoleDefinition], scopes: Mapping[str, Scope], limit: int) -> List[AssignmentChange]:
    wanted = {(d.scope.key, r.guid) for d, r in zip(desired, definitions)}
    extra = [(scopes[key], a) for key, assignments in plan.existing.items() for a in assignments
             if (key, role_guid_of((a.get('properties') or {}).get('roleDefinitionId'))) not in wanted]
    names = await gather_limited([_name_factory(clients, cache, s, a) for s, a in extra], limit)
    return [AssignmentChange('delete', s, str(a.get('name')), r, before=a, requested=False) for (s, a), r in zip(extra, names)]


def _name_factory(clients: Any, cache: RoleDefinitionCache, scope: Scope, assignment: Mapping[str, Any]) -> Any:
    async def lookup() -> Optional[RoleDefinition]:
        guid = role_guid_of((assignment.get('properties') or {}).get('roleDefinitionId'))
        if not is_guid(guid):
            return None
        try:
            return await cache.get(clients, scope, RoleRef(guid, guid=guid))
        except (ValidationError, AzureApiError):
            return None  # only a display name: a removal never depends on it
    return lookup


# --- applying -------------------------------------------------------------------------------------------------------------

async def apply_principal_plan(clients: Any, plan: PrincipalPlan, *, limit: int = DEFAULT_LIMIT,
                               principal_field: str = 'principal_id') -> PrincipalPlan:
    """Write a plan: creates and description updates first (gathered), then deletions, so access never lapses.

    ``after`` of each change becomes ARM's answer. A create answered ``RoleAssignmentExists`` (an equivalent
    assignment appeared after the listing) adopts that assignment.
    """
    writes = [c for c in plan.changes if c.action in ('create', 'update')]
    await gather_limited([_write_factory(clients, plan, c, principal_field) for c in writes], limit)
    deletes = [c for c in plan.changes + plan.removals if c.action == 'delete']
    await gather_limited([_delete_factory(clients, c) for c in deletes], limit)
    return plan


def _write_factory(clients: Any, plan: PrincipalPlan, change: AssignmentChange, principal_field: str) -> Any:
    async def write() -> None:
        if change.action == 'update':
            await _update(clients, change, principal_field)
        else:
            await _create(clients, plan, change, principal_field)
    return write


def _delete_factory(clients: Any, change: AssignmentChange) -> Any:
    async def delete() -> None:
        await delete_role_assignment(clients, str(change.before.get('id')))
        change.after = None
    return delete


async def _create(clients: Any, plan: PrincipalPlan, change: AssignmentChange, principal_field: str) -> None:
    desired = change.desired
    properties = {'roleDefinitionId': change.role.id, 'principalId': plan.principal_id, 'principalType': plan.principal_type,
                  'description': desired.description or None}
    try:
        change.after = await put_role_assignment(clients, change.scope.path('roleAssignments', change.name), properties,
                                                 principal_field=principal_field)
    except AzureApiError as err:
        if not err.has_code('RoleAssignmentExists'):
            raise
        await _adopt_after_conflict(clients, plan, change, principal_field, err)


async def _adopt_after_conflict(clients: Any, plan: PrincipalPlan, change: AssignmentChange, principal_field: str,
                                err: AzureApiError) -> None:
    found = [a for a in await list_principal_assignments(clients, change.scope, plan.principal_id)
             if same_assignment(a, change.scope, plan.principal_id, change.role.guid)]
    if not found:
        raise err
    current = found[0]
    change.before, change.name = current, str(current.get('name'))
    if _same_description((current.get('properties') or {}).get('description'), change.desired.description):
        change.action, change.after = 'unchanged', current
        return
    change.action = 'update'
    await _update(clients, change, principal_field)


async def _update(clients: Any, change: AssignmentChange, principal_field: str) -> None:
    """PUT the existing assignment back with the new description; condition and the rest are sent unchanged."""
    current = change.before or {}
    props = current.get('properties') or {}
    properties = {key: props.get(key) for key in ('roleDefinitionId', 'principalId', 'principalType', 'condition',
                                                  'conditionVersion', 'delegatedManagedIdentityResourceId')}
    properties['description'] = change.desired.description  # never None here: unmanaged descriptions are not updated
    change.after = await put_role_assignment(clients, str(current.get('id')), properties, operation='update role assignment',
                                             principal_field=principal_field)


# --- many principals ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PrincipalRequest:
    """The desired role assignments of one principal (the input of ``reconcile_principals``)."""

    principal_id: str
    desired: Tuple[DesiredAssignment, ...]
    principal_type: str = DEFAULT_PRINCIPAL_TYPE
    state: str = 'present'
    exclusive: bool = False
    allow_privileged: bool = False


async def reconcile_principals(clients: Any, requests: Iterable[PrincipalRequest], *, check_mode: bool = False,
                               limit: int = DEFAULT_LIMIT) -> List[PrincipalPlan]:
    """Plan every principal (concurrently, shared role-definition cache), then, unless ``check_mode``, apply them all.

    Any validation failure (bad role, privileged role, duplicates) surfaces during planning, before the first write.
    """
    requests = list(requests)
    cache = role_definition_cache(clients)
    plans = await gather_limited([_plan_factory(clients, r, cache, limit) for r in requests], limit)
    if not check_mode:
        await gather_limited([_apply_factory(clients, p, limit) for p in plans], limit)
    return plans


def _plan_factory(clients: Any, request: PrincipalRequest, cache: RoleDefinitionCache, limit: int) -> Any:
    return lambda: plan_principal_assignments(
        clients, request.principal_id, request.desired, principal_type=request.principal_type, state=request.state,
        exclusive=request.exclusive, allow_privileged=request.allow_privileged, cache=cache, limit=limit)


def _apply_factory(clients: Any, plan: PrincipalPlan, limit: int) -> Any:
    return lambda: apply_principal_plan(clients, plan, limit=limit)


# --- results ----------------------------------------------------------------------------------------------------------------

def change_result(change: AssignmentChange) -> dict:
    """One change as a module result entry (snake_case)."""
    source = change.after if change.after is not None else change.before
    props = (source or {}).get('properties') or {}
    role = change.role
    return {
        'action': {'create': 'created', 'update': 'updated', 'delete': 'deleted'}.get(change.action, change.action),
        'id': (source or {}).get('id') if source else None,
        'name': (source or {}).get('name') if source else None,
        'scope': props.get('scope') or change.scope.id,
        'role_definition_id': props.get('roleDefinitionId') or (role.id if role else None),
        'role_definition_name': role.name if role else None,
        'principal_id': props.get('principalId'),
        'principal_type': props.get('principalType'),
        'description': props.get('description'),
        'condition': props.get('condition'),
        'adopted': change.adopted,
        'privileged': role.privileged if role else None,
    }
