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
* ``preflight_scopes`` / ``PreflightCache`` / ``check_assignments``: before any write, does every scope exist, may the
  operator (``operator_identity``) write role assignments there, does every role resolve; each finding a ``Problem``
  (field, message, fix, code), raised together as ``PreflightError``;
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
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import AzureApiError, ValidationError
from ansible_collections.oidc_federation.azure.plugins.module_utils._graph import get_service_principal, is_guid, jwt_claim, odata_string
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
# The action that lets its holder remove role assignments.
REVOKE_ACCESS_ACTION = 'Microsoft.Authorization/roleAssignments/delete'
# Built-in roles that grant GRANT_ACCESS_ACTION, named in problems.
ACCESS_ADMIN_ROLES = 'Owner, User Access Administrator or Role Based Access Control Administrator'
# Microsoft.Resources api-version for resource group reads and resource lists.
RESOURCES_API_VERSION = '2021-04-01'
# ARM codes saying that a scope (or what contains it) does not exist.
SCOPE_NOT_FOUND_CODES = ('SubscriptionNotFound', 'ResourceGroupNotFound', 'ResourceNotFound', 'ManagementGroupNotFound',
                         'ParentResourceNotFound')

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
class Problem:
    """One thing found wrong before any write: the ``field`` to change, what is wrong, the fix, a stable ``code``.

    ``str(problem)`` reads ``{field}: {message}. Fix: {fix}.``. Codes: ``subscription_not_found``,
    ``resource_group_not_found``, ``resource_not_found``, ``management_group_not_found``,
    ``management_group_not_found_or_denied``, ``operator_cannot_write``, ``operator_cannot_delete``,
    ``role_not_found``, ``role_ambiguous``, ``privileged_role``.
    """

    field: str
    message: str
    fix: str
    code: str
    scope: Optional[str] = None

    def __str__(self) -> str:
        return '{0}: {1}. Fix: {2}.'.format(self.field, self.message.rstrip('. '), self.fix.rstrip('. '))

    def as_dict(self) -> dict:
        """JSON-safe form (for module results)."""
        return {'field': self.field, 'message': self.message, 'fix': self.fix, 'code': self.code, 'scope': self.scope,
                'text': str(self)}


class PreflightError(ValidationError):
    """Every ``Problem`` found while planning, raised before the first write (a ``ValidationError``).

    The module result carries them as ``problems`` (list of ``Problem.as_dict()``).
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = str(self.problems[0])
        else:
            text = '{0} problems found before any write: {1}'.format(
                len(self.problems), ' '.join('({0}) {1}'.format(i + 1, p) for i, p in enumerate(self.problems)))
        super().__init__(text, problems=[p.as_dict() for p in self.problems])


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

async def _shared(entries: Any, key: Any, start: Callable[[], Awaitable[Any]]) -> Any:
    """The result of ``entries[key]``, a future started with ``start()`` by the first caller and awaited by every
    concurrent one; a failed future is dropped, so that a later call tries again."""
    entry = entries.get(key)
    if entry is None:
        entry = entries[key] = asyncio.ensure_future(start())
    try:
        return await asyncio.shield(entry)
    except Exception:
        if entries.get(key) is entry:
            del entries[key]
        raise


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
        definition = await _shared(self._entries, key, lambda: self._lookup(clients, scope, role, field))
        if role.name:  # a later lookup by GUID at the same scope needs no request
            guid_key = (scope.key, 'guid', definition.guid)
            if guid_key not in self._entries:
                self._entries[guid_key] = self._entries[key]
        return definition

    async def _lookup(self, clients: Any, scope: Scope, role: RoleRef, field: str) -> RoleDefinition:
        self.lookups += 1
        if role.guid:
            return await _definition_by_guid(clients, scope, role, field)
        return await _definition_by_name(clients, scope, role, field)


_CACHES: 'weakref.WeakKeyDictionary[Any, RoleDefinitionCache]' = weakref.WeakKeyDictionary()


def _run_cache(registry: 'weakref.WeakKeyDictionary[Any, Any]', clients: Any, factory: Any) -> Any:
    """The cache of ``registry`` for this run (one per ``Clients`` object), made by ``factory`` the first time."""
    cache = registry.get(clients)
    if cache is None:
        cache = registry[clients] = factory()
    return cache


def role_definition_cache(clients: Any) -> RoleDefinitionCache:
    """The role-definition cache of this run (one per ``Clients`` object)."""
    return _run_cache(_CACHES, clients, RoleDefinitionCache)


async def _definition_by_guid(clients: Any, scope: Scope, role: RoleRef, field: str) -> RoleDefinition:
    try:
        response = await clients.call('read role definition', clients.arm_request, 'GET', scope.path('roleDefinitions', role.guid),
                                      api_version=API_VERSION, target='{0} at {1}'.format(role.guid, scope.id), service='arm')
    except AzureApiError as err:
        if err.has_code('RoleDefinitionDoesNotExist') or (err.status == 404 and not err.has_code(*SCOPE_NOT_FOUND_CODES)):
            raise PreflightError([Problem(
                field, 'no role definition with id {0} exists at scope {1} (ARM: {2}); a custom role of another tenant, '
                'or one not assignable at this scope, is not available here'.format(role.guid, scope.id, err.code or err.status),
                'use the name or GUID of a role that exists in this tenant and is assignable at this scope '
                '(az role definition list --scope {0} --query "[].{{name:roleName, id:name}}")'.format(scope.id),
                'role_not_found', scope.id)]) from None
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
        raise PreflightError([Problem(
            field, 'no role definition named {0!r} is available at scope {1}'.format(role.name, scope.id),
            'use the exact role name (e.g. Reader, Contributor, Storage Blob Data Reader) or its GUID; '
            'az role definition list --scope {0} --query "[].roleName" lists them'.format(scope.id),
            'role_not_found', scope.id)])
    if len(found) > 1:
        raise PreflightError([Problem(
            field, 'the role name {0!r} is ambiguous at scope {1} ({2})'.format(role.name, scope.id, ', '.join(sorted(found))),
            'give the role definition GUID instead', 'role_ambiguous', scope.id)])
    return next(iter(found.values()))


# --- preflight: does every scope exist, may the operator grant access there? --------------------------------------

@dataclass(frozen=True)
class Operator:
    """The identity running the collection, from its ARM access token (``oid``, ``appid``/``azp``)."""

    object_id: Optional[str] = None
    app_id: Optional[str] = None

    def describe(self) -> str:
        """``the operator (client id ..., object id ...)``."""
        parts = ['client id {0}'.format(self.app_id)] if self.app_id else []
        parts += ['object id {0}'.format(self.object_id)] if self.object_id else []
        return 'the operator ({0})'.format(', '.join(parts)) if parts else 'the operator'


_OPERATORS: 'weakref.WeakKeyDictionary[Any, asyncio.Future]' = weakref.WeakKeyDictionary()


async def operator_identity(clients: Any) -> Operator:
    """Who the collection runs as: read from the claims of its own ARM access token (no extra request: the credential
    caches the token ARM calls use). Cached per ``Clients``."""
    return await _shared(_OPERATORS, clients, lambda: _read_operator(clients))


async def _read_operator(clients: Any) -> Operator:
    token = await clients.call('get access token', clients.credential.get_token, clients.settings.cloud.arm_scope,
                               service='entra')
    oid = jwt_claim(token.token, 'oid')
    app_id = jwt_claim(token.token, 'appid') or jwt_claim(token.token, 'azp') or getattr(clients.settings, 'client_id', None)
    return Operator(oid.lower() if is_guid(oid) else None, app_id)


@dataclass(frozen=True)
class ScopeCheck:
    """What the preflight found about one scope.

    ``exists``: True, False (``missing`` holds the problem's code, message and fix) or None (the operator may not
    read the scope, so its existence is unknown). ``permissions``: the operator's effective permission blocks at the
    scope (``actions``/``notActions``, as ARM returns them), None when they could not be determined. ``source`` says
    how they were found (``permissions api`` or ``role assignments``); ``denied`` explains a 403 while reading.
    """

    scope: Scope
    operator: Operator
    exists: Optional[bool] = True
    missing: Optional[Tuple[str, str, str]] = None
    permissions: Optional[Tuple[Mapping[str, Any], ...]] = None
    source: str = ''
    denied: Optional[str] = None

    def allows(self, action: str = GRANT_ACCESS_ACTION) -> Optional[bool]:
        """Whether the operator's permissions at the scope cover ``action`` (None when unknown)."""
        if self.permissions is None:
            return None
        return access_granting_action(self.permissions, action) is not None

    def problems(self, field: str, actions: Iterable[str] = (GRANT_ACCESS_ACTION,)) -> List[Problem]:
        """The problems of this scope for an entry named ``field`` that needs ``actions`` there."""
        if self.exists is False and self.missing is not None:
            code, message, fix = self.missing
            return [Problem(field, message, fix, code, self.scope.id)]
        out = []
        for action in actions:
            if self.allows(action) is False:
                out.append(self._rights_problem(field, action))
                break
        return out

    def _rights_problem(self, field: str, action: str) -> Problem:
        who = self.operator.describe()
        if self.scope.kind == 'management_group' and self.exists is None:
            return Problem(
                field, "management group '{0}' does not exist, or {1} has no role there (Azure answers both with "
                'AuthorizationFailed)'.format(self.scope.management_group, who),
                'check the management group id (az account management-group list), and give the operator {0} at '
                'that management group'.format(ACCESS_ADMIN_ROLES), 'management_group_not_found_or_denied', self.scope.id)
        verb = 'write' if action == GRANT_ACCESS_ACTION else 'delete'
        why = ' ({0})'.format(self.denied) if self.denied else \
            " (its roles there do not grant {0})".format(action)
        return Problem(
            field, '{0} may not {1} role assignments at {2}: it needs {3} there{4}'.format(
                who, verb, self.scope.id, ACCESS_ADMIN_ROLES, why),
            'assign one of these roles to the operator at this scope or above, or choose a scope inside its reach',
            'operator_cannot_' + verb, self.scope.id)


def _missing_subscription(scope: Scope) -> Tuple[str, str, str]:
    return ('subscription_not_found',
            'subscription {0} does not exist, or is not in the operator\'s tenant (ARM: SubscriptionNotFound)'.format(
                scope.subscription_id),
            'correct the subscription id in the scope (az account list shows the subscriptions the operator can use)')


def _missing_resource_group(scope: Scope) -> Tuple[str, str, str]:
    return ('resource_group_not_found',
            "resource group '{0}' does not exist in subscription {1} (ARM: ResourceGroupNotFound)".format(
                scope.resource_group, scope.subscription_id),
            "create it first (az group create --name {0} --location <region> --subscription {1}), or correct the "
            "resource group name in the scope".format(scope.resource_group, scope.subscription_id))


def _missing_resource(scope: Scope) -> Tuple[str, str, str]:
    return ('resource_not_found',
            "resource '{0}' does not exist in resource group '{1}' of subscription {2} (ARM: ResourceNotFound)".format(
                scope.id.split('/providers/', 1)[1], scope.resource_group, scope.subscription_id),
            'create the resource first, or correct the provider namespace, type and name in the scope')


def _missing_management_group(scope: Scope) -> Tuple[str, str, str]:
    return ('management_group_not_found',
            "management group '{0}' does not exist".format(scope.management_group),
            'correct the management group id in the scope (az account management-group list)')


def _missing_for(scope: Scope, err: AzureApiError) -> Optional[Tuple[str, str, str]]:
    """The not-found problem an ARM error names for ``scope`` (or the subscription/group containing it), else None."""
    if err.status != 404:
        return None
    if err.has_code('SubscriptionNotFound'):
        return _missing_subscription(scope)
    if scope.kind == 'management_group':
        return _missing_management_group(scope)
    if err.has_code('ResourceGroupNotFound') or scope.kind == 'resource_group':
        return _missing_resource_group(scope)
    if scope.kind == 'resource' and err.has_code('ResourceNotFound', 'ParentResourceNotFound'):
        return _missing_resource(scope)
    return None


def _top_resource(scope: Scope) -> Tuple[str, str, str]:
    """(namespace, type, name) of the top-level resource of a resource scope."""
    rest = scope.id.split('/providers/', 1)[1].split('/')
    return rest[0], rest[1], rest[2]


class PreflightCache:
    """Scope checks of one run, one per scope (shared by concurrent callers); failed checks are not cached.

    ``requests`` counts the ARM requests made, for tests and benchmarks.
    """

    def __init__(self) -> None:
        self._entries: Dict[str, 'asyncio.Future[ScopeCheck]'] = {}
        self.requests = 0

    async def check(self, clients: Any, scope: Scope, *, definitions: Optional[RoleDefinitionCache] = None) -> ScopeCheck:
        """The ``ScopeCheck`` of ``scope`` (made once per run)."""
        return await _shared(self._entries, scope.key, lambda: self._check(
            clients, scope, definitions if definitions is not None else role_definition_cache(clients)))

    async def _check(self, clients: Any, scope: Scope, definitions: RoleDefinitionCache) -> ScopeCheck:
        operator = await operator_identity(clients)
        if scope.kind in ('management_group', 'subscription'):
            return await self._by_assignments(clients, scope, operator, definitions)
        exists, permissions = await asyncio.gather(
            self._existence(clients, scope), self._permissions(clients, scope), return_exceptions=True)
        if isinstance(exists, BaseException):
            raise exists
        if isinstance(exists, tuple):  # a not-found problem
            return ScopeCheck(scope, operator, exists=False, missing=exists)
        if isinstance(permissions, AzureApiError):
            missing = _missing_for(scope, permissions)
            if missing is not None:
                return ScopeCheck(scope, operator, exists=False, missing=missing)
            raise permissions
        if isinstance(permissions, BaseException):
            raise permissions
        return ScopeCheck(scope, operator, exists=exists, permissions=tuple(permissions), source='permissions api')

    async def _existence(self, clients: Any, scope: Scope) -> Any:
        """True, None (no read access) or a not-found problem tuple, for a resource group or resource scope."""
        self.requests += 1
        try:
            if scope.kind == 'resource_group':
                await clients.call('read resource group', clients.arm_request, 'GET', scope.id,
                                   api_version=RESOURCES_API_VERSION, target=scope.id, service='arm')
                return True
            top = _top_resource(scope)
            group = '/subscriptions/{0}/resourceGroups/{1}'.format(scope.subscription_id, scope.resource_group)
            items = await clients.call('list resources', clients.arm_list, group + '/resources', api_version=RESOURCES_API_VERSION,
                                       params={'$filter': 'name eq {0}'.format(odata_string(top[2]))},
                                       target='{0}/providers/{1}/{2}/{3}'.format(group, *top), service='arm')
        except AzureApiError as err:
            if err.status == 403:
                return None
            missing = _missing_for(scope, err)
            if missing is None:
                raise
            return missing
        wanted_type = '{0}/{1}'.format(top[0], top[1]).lower()
        if any(isinstance(i, Mapping) and str(i.get('type') or '').lower() == wanted_type
               and str(i.get('name') or '').lower() == top[2].lower() for i in items):
            return True
        return _missing_resource(scope)

    async def _permissions(self, clients: Any, scope: Scope) -> List[Mapping[str, Any]]:
        """``Permissions_ListForResourceGroup`` / ``Permissions_ListForResource``: the caller's permission blocks."""
        self.requests += 1
        items = await clients.call('list permissions', clients.arm_list, scope.path('permissions'), api_version=API_VERSION,
                                   target=scope.id, service='arm')
        return [i for i in items if isinstance(i, Mapping)]

    async def _by_assignments(self, clients: Any, scope: Scope, operator: Operator,
                              definitions: RoleDefinitionCache) -> ScopeCheck:
        """Subscriptions and management groups: ARM documents no permissions list there, so the operator's role
        assignments at or above the scope (``atScope() and assignedTo('{oid}')``, group memberships included) are
        read, and their role definitions' permission blocks evaluated."""
        if operator.object_id is None:
            return ScopeCheck(scope, operator, exists=None, source='unknown operator')
        self.requests += 1
        try:
            items = await clients.call(
                'list role assignments', clients.arm_list, scope.path('roleAssignments'), api_version=API_VERSION,
                params={'$filter': "atScope() and assignedTo('{0}')".format(operator.object_id)},
                target='assignedTo={0} at {1}'.format(operator.object_id, scope.id), service='arm')
        except AzureApiError as err:
            missing = _missing_for(scope, err)
            if missing is not None:
                return ScopeCheck(scope, operator, exists=False, missing=missing)
            if err.status == 403:
                return ScopeCheck(scope, operator, exists=None, permissions=(), source='role assignments',
                                  denied='it holds no role there that lets it even read role assignments')
            raise
        guids = sorted({role_guid_of((i.get('properties') or {}).get('roleDefinitionId')) for i in items
                        if isinstance(i, Mapping)} - {''})
        roles = await gather_limited([_definition_factory(clients, definitions, scope, g) for g in guids], DEFAULT_LIMIT)
        blocks = tuple(block for role in roles if role is not None for block in role.permissions)
        return ScopeCheck(scope, operator, exists=True, permissions=blocks, source='role assignments')


def _definition_factory(clients: Any, definitions: RoleDefinitionCache, scope: Scope, guid: str) -> Any:
    async def lookup() -> Optional[RoleDefinition]:
        if not is_guid(guid):
            return None
        try:
            return await definitions.get(clients, scope, RoleRef(guid, guid=guid))
        except ValidationError:
            return None  # a definition that is gone grants nothing
    return lookup


_PREFLIGHTS: 'weakref.WeakKeyDictionary[Any, PreflightCache]' = weakref.WeakKeyDictionary()


def preflight_cache(clients: Any) -> PreflightCache:
    """The preflight cache of this run (one per ``Clients`` object)."""
    return _run_cache(_PREFLIGHTS, clients, PreflightCache)


async def preflight_scopes(clients: Any, scopes: Iterable[Any], *, cache: Optional[PreflightCache] = None,
                           limit: int = DEFAULT_LIMIT) -> Dict[str, ScopeCheck]:
    """Check many scopes (``Scope`` objects or scope strings) concurrently; ``{scope.key: ScopeCheck}``.

    Reads only. Per scope (each at most once per run, see ``PreflightCache``):

    * resource group: ``GET`` the group (404 ``SubscriptionNotFound``/``ResourceGroupNotFound``) and
      ``Permissions_ListForResourceGroup``;
    * resource: ``GET .../resourceGroups/{rg}/resources?$filter=name eq '{name}'`` (the top-level resource, matched
      by type) and ``Permissions_ListForResource``;
    * subscription, management group: the operator's role assignments at or above the scope
      (``$filter=atScope() and assignedTo('{oid}')``; 404 ``SubscriptionNotFound``/``ManagementGroupNotFound``,
      403 when it holds no role there) and their role definitions (cached).

    A 403 while reading a resource group or resource leaves ``exists`` unknown (None); the permissions decide.
    Deny assignments and role assignment conditions are not evaluated.
    """
    cache = cache if cache is not None else preflight_cache(clients)
    unique: Dict[str, Scope] = {}
    for item in scopes:
        scope = item if isinstance(item, Scope) else parse_scope(item)
        unique.setdefault(scope.key, scope)
    await operator_identity(clients)  # one token read before the concurrent checks
    checks = await gather_limited([_check_factory(clients, cache, s) for s in unique.values()], limit)
    return dict(zip(unique, checks))


def _check_factory(clients: Any, cache: PreflightCache, scope: Scope) -> Any:
    return lambda: cache.check(clients, scope)


@dataclass
class AssignmentCheck:
    """The outcome of ``check_assignments``: a role definition per desired entry (None when its scope is missing or
    its role has a problem), the scope checks, and every problem found."""

    definitions: List[Optional[RoleDefinition]]
    scopes: Dict[str, ScopeCheck]
    problems: List[Problem] = dc_field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def raise_for_problems(self) -> None:
        """``PreflightError`` listing every problem, if any."""
        if self.problems:
            raise PreflightError(self.problems)


async def check_assignments(clients: Any, desired: Sequence['DesiredAssignment'], *, state: str = 'present',
                            allow_privileged: bool = False, cache: Optional[RoleDefinitionCache] = None,
                            preflight: Optional[PreflightCache] = None, limit: int = DEFAULT_LIMIT,
                            allow_option: str = 'allow_privileged') -> AssignmentCheck:
    """Everything that can be known before writing ``desired``, collected rather than raised (reads only).

    ``state=present``: every scope exists and the operator may write role assignments there; every role resolves
    at its scope; no privileged role without ``allow_privileged``. ``state=absent``: a missing scope is fine (there
    is nothing to remove); roles are resolved where the scope exists. Problems name the entry's field
    (``DesiredAssignment.label``), scope problems once per scope (the first entry that uses it).
    """
    cache = cache if cache is not None else role_definition_cache(clients)
    preflight = preflight if preflight is not None else preflight_cache(clients)
    checks = await preflight_scopes(clients, [d.scope for d in desired], cache=preflight, limit=limit)
    problems: List[Problem] = []
    if state == 'present':
        seen = set()
        for entry in desired:
            if entry.scope.key not in seen:
                seen.add(entry.scope.key)
                problems.extend(checks[entry.scope.key].problems(entry.label('scope')))
    # Roles are looked up where the scope exists and, to write there, the operator may: elsewhere the scope's own
    # problem says what to fix (a role lookup there would only fail with a less helpful 403).
    usable = [checks[d.scope.key].exists is not False
              and (state != 'present' or not checks[d.scope.key].problems(d.label('scope'))) for d in desired]
    found = await gather_limited([_role_lookup(cache, clients, d) if ok else _none for d, ok in zip(desired, usable)],
                                 limit, return_exceptions=True)
    definitions: List[Optional[RoleDefinition]] = []
    for result in found:
        if isinstance(result, PreflightError):
            problems.extend(result.problems)
            definitions.append(None)
        elif isinstance(result, BaseException):
            raise result
        else:
            definitions.append(result)
    if state == 'present':
        problems.extend(privileged_problems(desired, definitions, allow_privileged, allow_option=allow_option))
    return AssignmentCheck(definitions, checks, problems)


async def _none() -> None:
    return None


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


def privileged_problems(desired: Sequence[DesiredAssignment], definitions: Sequence[Optional[RoleDefinition]],
                        allow_privileged: bool, *, allow_option: str = 'allow_privileged') -> List[Problem]:
    """A ``Problem`` per role that can grant access (see ``access_granting_permission``) unless ``allow_privileged``;
    no I/O. ``allow_option`` is the caller's name of the option that allows them (in the fix)."""
    if allow_privileged:
        return []
    problems = []
    for entry, definition in zip(desired, definitions):
        found = definition.granting_permission if definition is not None else None
        if found is not None:
            problems.append(Problem(
                entry.label('role'), '{0!r} at {1} can grant access to others (its actions include {2!r}, which covers {3}); '
                'privileged roles are refused'.format(definition.name, entry.scope.id, found[0], found[1]),
                'assign a narrower role, or set {0}: true if this principal really must manage access'.format(allow_option),
                'privileged_role', entry.scope.id))
    return problems


def check_privileged(desired: Sequence[DesiredAssignment], definitions: Sequence[RoleDefinition], allow_privileged: bool) -> None:
    """Refuse roles that can grant access unless ``allow_privileged`` (``PreflightError``); no I/O."""
    problems = privileged_problems(desired, definitions, allow_privileged)
    if problems:
        raise PreflightError(problems)


async def plan_principal_assignments(clients: Any, principal_id: str, desired: Sequence[DesiredAssignment], *,
                                     principal_type: str = DEFAULT_PRINCIPAL_TYPE, state: str = 'present',
                                     exclusive: bool = False, allow_privileged: bool = False,
                                     cache: Optional[RoleDefinitionCache] = None, preflight: Optional[PreflightCache] = None,
                                     limit: int = DEFAULT_LIMIT, existing: Optional[Mapping[str, List[dict]]] = None,
                                     allow_option: str = 'allow_privileged') -> PrincipalPlan:
    """Read and decide, never write: preflight the scopes (exist? may the operator write role assignments there?),
    resolve roles (cached), guard privileged roles, list this principal's assignments at each listed scope, and
    match them.

    ``state=present``: missing -> ``create`` (deterministic name), equivalent existing (any name) -> ``unchanged`` or
    ``update`` (description differs and was given); with ``exclusive``, this principal's other assignments AT the
    listed scopes -> ``removals``. ``state=absent``: every equivalent existing -> ``delete``, none (or a scope that
    does not exist) -> ``absent``.
    Raises ``ValidationError`` (duplicates) or ``PreflightError`` (every problem of ``check_assignments``, and an
    operator that may not delete where deletions are planned) before any write.
    ``existing`` (scope key -> this principal's assignments AT that scope, e.g. from one listing of a scope shared by
    many principals) replaces the per-scope listing; a listed scope missing from it is listed as usual.
    ``allow_option`` names the caller's option that allows privileged roles, in the fix of a refusal.
    """
    if state not in ('present', 'absent'):
        raise ValidationError("state: expected 'present' or 'absent', got {0!r}".format(state))
    if principal_type not in PRINCIPAL_TYPES:
        raise ValidationError('principal_type: expected one of {0}, got {1!r}'.format(', '.join(PRINCIPAL_TYPES), principal_type))
    principal_id = parse_guid(principal_id, 'principal_id')
    cache = cache if cache is not None else role_definition_cache(clients)
    check_duplicates(desired, [(d.scope.key,) + d.role.key for d in desired])
    check = await check_assignments(clients, desired, state=state, allow_privileged=allow_privileged, cache=cache,
                                    preflight=preflight, limit=limit, allow_option=allow_option)
    check.raise_for_problems()
    definitions = check.definitions
    check_duplicates(desired, [(d.scope.key, r.guid) if r is not None else (d.scope.key,) + d.role.key
                               for d, r in zip(desired, definitions)])
    scopes: Dict[str, Scope] = {}
    for entry in desired:
        if check.scopes[entry.scope.key].exists is not False:
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
    _check_deletions(plan, check.scopes)
    return plan


def _check_deletions(plan: PrincipalPlan, checks: Mapping[str, ScopeCheck]) -> None:
    """``PreflightError`` when a planned deletion is at a scope where the operator may not delete role assignments."""
    problems, seen = [], set()
    for change in plan.changes + plan.removals:
        if change.action != 'delete' or change.scope.key in seen:
            continue
        seen.add(change.scope.key)
        field = change.desired.label('scope') if change.desired is not None else 'exclusive'
        problems.extend(checks[change.scope.key].problems(field, (REVOKE_ACCESS_ACTION,)))
    if problems:
        raise PreflightError(problems)


def _role_lookup(cache: RoleDefinitionCache, clients: Any, entry: DesiredAssignment) -> Any:
    return lambda: cache.get(clients, entry.scope, entry.role, field=entry.label('role'))


def _list_factory(clients: Any, scope: Scope, principal_id: str) -> Any:
    return lambda: list_principal_assignments(clients, scope, principal_id)


def _pick(matches: List[dict], name: str) -> List[dict]:
    """Equivalent assignments, the one with the deterministic name first."""
    return sorted(matches, key=lambda a: str(a.get('name') or '').lower() != name)


def _decide(plan: PrincipalPlan, entry: DesiredAssignment, definition: Optional[RoleDefinition]) -> List[AssignmentChange]:
    if definition is None:  # state=absent at a scope that does not exist: nothing there to remove
        name = assignment_name(entry.scope, plan.principal_id, entry.role.guid) if entry.role.guid else ''
        return [AssignmentChange('absent', entry.scope, name, None, desired=entry)]
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
    """Plan every principal (concurrently, shared role-definition and preflight caches), then, unless ``check_mode``,
    apply them all.

    Any validation failure (missing scope, operator without rights, bad role, privileged role, duplicates) surfaces
    during planning, before the first write; the problems of every principal are raised together (``PreflightError``).
    """
    requests = list(requests)
    cache = role_definition_cache(clients)
    preflight = preflight_cache(clients)
    outcomes = await gather_limited([_plan_factory(clients, r, cache, preflight, limit) for r in requests], limit,
                                    return_exceptions=True)
    problems: List[Problem] = []
    for outcome in outcomes:
        if isinstance(outcome, PreflightError):
            problems.extend(p for p in outcome.problems if p not in problems)
        elif isinstance(outcome, BaseException):
            raise outcome
    if problems:
        raise PreflightError(problems)
    plans = list(outcomes)
    if not check_mode:
        await gather_limited([_apply_factory(clients, p, limit) for p in plans], limit)
    return plans


def _plan_factory(clients: Any, request: PrincipalRequest, cache: RoleDefinitionCache, preflight: PreflightCache,
                  limit: int) -> Any:
    return lambda: plan_principal_assignments(
        clients, request.principal_id, request.desired, principal_type=request.principal_type, state=request.state,
        exclusive=request.exclusive, allow_privileged=request.allow_privileged, cache=cache, preflight=preflight,
        limit=limit)


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
