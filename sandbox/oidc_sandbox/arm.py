"""Azure Resource Manager as the sandbox serves it.

Routes (path segments case-insensitive, IDs keep their case; ``api-version`` required everywhere):

* ``GET /metadata/endpoints`` (no token): the cloud's endpoints, pointing at the sandbox.
* ``GET /tenants``, ``GET /subscriptions``, ``GET /subscriptions/{id}``: only what the caller can see.
* ``GET|PUT|DELETE|HEAD /subscriptions/{id}/resourceGroups/{name}``, ``GET /subscriptions/{id}/resourceGroups``.
* ``GET /{scope}/providers/Microsoft.Authorization/roleDefinitions[/{guid}]`` with the real built-in roles.
* ``GET /subscriptions/{id}/resourceGroups/{name}/resources`` (``$filter`` name/resourceType/location ``eq``).
* ``GET /{resource group or resource}/providers/Microsoft.Authorization/permissions``: the caller's permissions.
* ``GET|PUT|DELETE /{scope}/providers/Microsoft.Authorization/roleAssignments/{guid}`` (also by id) and
  ``GET /{scope}/providers/Microsoft.Authorization/roleAssignments`` (``$filter``, ``nextLink`` paging).

Every read and write is authorised like ARM does it: the caller's own role assignments at, or above, the target
scope, the role definitions' ``actions``/``notActions`` with ``*`` wildcards.  Where Microsoft publishes nothing
the behaviour chosen is listed in ``sandbox/README.md`` ("knowingly differs").
"""
from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as _dt
import functools
import json
import re
import uuid
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .errors import ServiceError, arm_error, control_error, method_not_allowed
from .state import State, public

if TYPE_CHECKING:
    from .context import Sandbox

# --------------------------------------------------------------------------------------------------------------
# Built-in role definitions (real GUIDs, names, descriptions, permissions; from Microsoft's generated built-in
# role reference, azure-docs articles/role-based-access-control/built-in-roles/*.md).
# --------------------------------------------------------------------------------------------------------------

ROLE_ASSIGNMENTS_TYPE = "Microsoft.Authorization/roleAssignments"
ROLE_DEFINITIONS_TYPE = "Microsoft.Authorization/roleDefinitions"
RESOURCE_GROUPS_TYPE = "Microsoft.Resources/resourceGroups"
MANAGEMENT_GROUPS_TYPE = "Microsoft.Management/managementGroups"

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"

_BLOB = "Microsoft.Storage/storageAccounts/blobServices"
_FIRST_ROLES = "2015-02-02T21:55:09.8806423Z"

# guid: (roleName, description, actions, notActions, dataActions, createdOn, updatedOn)
_BUILT_IN_ROLES: dict[str, tuple[str, str, list[str], list[str], list[str], str | None, str | None]] = {
    OWNER: ("Owner", "Grants full access to manage all resources, including the ability to assign roles in Azure "
                     "RBAC.", ["*"], [], [], _FIRST_ROLES, _FIRST_ROLES),
    CONTRIBUTOR: (
        "Contributor",
        "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, manage "
        "assignments in Azure Blueprints, or share image galleries.",
        ["*"],
        ["Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write",
         "Microsoft.Authorization/elevateAccess/Action", "Microsoft.Blueprint/blueprintAssignments/write",
         "Microsoft.Blueprint/blueprintAssignments/delete", "Microsoft.Compute/galleries/share/action",
         "Microsoft.Purview/consents/write", "Microsoft.Purview/consents/delete",
         "Microsoft.Resources/deploymentStacks/manageDenySetting/action", "Microsoft.Subscription/cancel/action",
         "Microsoft.Subscription/enable/action"],
        [], _FIRST_ROLES, _FIRST_ROLES),
    READER: ("Reader", "View all resources, but does not allow you to make any changes.", ["*/read"], [], [],
             _FIRST_ROLES, "2019-02-05T21:24:35.7424745Z"),
    USER_ACCESS_ADMINISTRATOR: (
        "User Access Administrator", "Lets you manage user access to Azure resources.",
        ["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"], [], [], None, None),
    RBAC_ADMINISTRATOR: (
        "Role Based Access Control Administrator",
        "Manage access to Azure resources by assigning roles using Azure RBAC. This role does not allow you to "
        "manage access using other ways, such as Azure Policy.",
        ["Microsoft.Authorization/roleAssignments/write", "Microsoft.Authorization/roleAssignments/delete",
         "*/read", "Microsoft.Support/*"], [], [], None, None),
    STORAGE_BLOB_DATA_READER: (
        "Storage Blob Data Reader", "Allows for read access to Azure Storage blob containers and data",
        [f"{_BLOB}/containers/read", f"{_BLOB}/generateUserDelegationKey/action"], [],
        [f"{_BLOB}/containers/blobs/read"], "2017-12-21T00:01:24.7972312Z", None),
    STORAGE_BLOB_DATA_CONTRIBUTOR: (
        "Storage Blob Data Contributor",
        "Allows for read, write and delete access to Azure Storage blob containers and data",
        [f"{_BLOB}/containers/delete", f"{_BLOB}/containers/read", f"{_BLOB}/containers/write",
         f"{_BLOB}/generateUserDelegationKey/action"], [],
        [f"{_BLOB}/containers/blobs/delete", f"{_BLOB}/containers/blobs/read", f"{_BLOB}/containers/blobs/write",
         f"{_BLOB}/containers/blobs/move/action", f"{_BLOB}/containers/blobs/add/action"], None, None),
    KEY_VAULT_SECRETS_USER: (
        "Key Vault Secrets User",
        "Read secret contents. Only works for key vaults that use the 'Azure role-based access control' "
        "permission model.",
        [], [], ["Microsoft.KeyVault/vaults/secrets/getSecret/action",
                 "Microsoft.KeyVault/vaults/secrets/readMetadata/action"], None, None),
    ACR_PUSH: ("AcrPush", "acr push", ["Microsoft.ContainerRegistry/registries/pull/read",
                                       "Microsoft.ContainerRegistry/registries/push/write"], [], [], None, None),
    ACR_PULL: ("AcrPull", "acr pull", ["Microsoft.ContainerRegistry/registries/pull/read"], [], [], None, None),
}


def built_in_role_definitions() -> dict[str, dict[str, Any]]:
    """Fresh built-in role definitions keyed by GUID, stored with their tenant-level ``id``."""
    result = {}
    for guid, (name, description, actions, not_actions, data_actions, created, updated) in _BUILT_IN_ROLES.items():
        result[guid] = {
            "id": f"/providers/Microsoft.Authorization/roleDefinitions/{guid}",
            "name": guid,
            "type": ROLE_DEFINITIONS_TYPE,
            "properties": {
                "roleName": name, "type": "BuiltInRole", "description": description, "assignableScopes": ["/"],
                "permissions": [{"actions": list(actions), "notActions": list(not_actions),
                                 "dataActions": list(data_actions), "notDataActions": []}],
                "createdOn": created, "updatedOn": updated, "createdBy": None, "updatedBy": None,
            },
        }
    return result


# --------------------------------------------------------------------------------------------------------------
# API versions
# --------------------------------------------------------------------------------------------------------------

# Microsoft.Resources (subscriptions, tenants, resource groups), as its InvalidApiVersionParameter error lists them.
RESOURCES_API_VERSIONS = (
    "2024-08-01,2024-06-01-preview,2024-03-01,2023-07-01,2023-07-01-preview,2023-03-01-preview,2022-12-01,"
    "2022-11-01-preview,2022-09-01,2022-06-01,2022-05-01,2022-03-01-preview,2022-01-01,2021-04-01,2021-01-01,"
    "2020-10-01,2020-09-01,2020-08-01,2020-07-01,2020-06-01,2020-05-01,2020-01-01,2019-11-01,2019-10-01,"
    "2019-09-01,2019-08-01,2019-07-01,2019-06-01,2019-05-10,2019-05-01,2019-03-01,2018-11-01,2018-09-01,"
    "2018-08-01,2018-07-01,2018-06-01,2018-05-01,2018-02-01,2018-01-01,2017-12-01,2017-08-01,2017-06-01,"
    "2017-05-10,2017-05-01,2017-03-01,2016-09-01,2016-07-01,2016-06-01,2016-02-01,2015-11-01,2015-01-01,"
    "2014-04-01-preview,2014-04-01,2014-01-01,2013-03-01,2014-02-26,2014-04").split(",")
# Microsoft.Authorization roleAssignments / roleDefinitions.
AUTHORIZATION_API_VERSIONS = [
    "2014-04-01-preview", "2014-07-01-preview", "2014-10-01-preview", "2015-05-01-preview", "2015-06-01",
    "2015-07-01", "2016-07-01", "2017-05-01", "2017-09-01", "2017-10-01-preview", "2018-01-01-preview",
    "2018-07-01", "2018-09-01-preview", "2018-12-01-preview", "2019-04-01-preview", "2020-03-01-preview",
    "2020-04-01-preview", "2020-08-01-preview", "2020-10-01-preview", "2021-04-01-preview", "2022-01-01-preview",
    "2022-04-01", "2022-05-01-preview"]
METADATA_API_VERSIONS = ["2015-01-01", "2018-01-01", "2019-05-01", "2020-06-01", "2022-09-01"]
_VERSION_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(-preview|-beta|-privatepreview|-alpha)?$", re.IGNORECASE)

# Azure regions accepted for resource groups (ARM stores them lower-case without spaces).
LOCATIONS = sorted("""australiacentral australiacentral2 australiaeast australiasoutheast austriaeast brazilsouth
brazilsoutheast canadacentral canadaeast centralindia centralus centraluseuap chilecentral eastasia eastus eastus2
eastus2euap francecentral francesouth germanynorth germanywestcentral indonesiacentral israelcentral italynorth
japaneast japanwest jioindiacentral jioindiawest koreacentral koreasouth malaysiawest mexicocentral
newzealandnorth northcentralus northeurope norwayeast norwaywest polandcentral qatarcentral southafricanorth
southafricawest southcentralus southeastasia southindia spaincentral swedencentral switzerlandnorth
switzerlandwest uaecentral uaenorth uksouth ukwest westcentralus westeurope westindia westus westus2
westus3""".split())

DEFAULT_PAGE_SIZE = 100
_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_RG_NAME_BAD = re.compile(r"[^\w\-.()]", re.UNICODE)
_ROLE_DEFINITION_ID_RE = re.compile(r"^(?P<scope>(/[^/]+)*)/providers/Microsoft\.Authorization/roleDefinitions/"
                                    r"(?P<guid>[^/]+)$", re.IGNORECASE)
PRINCIPAL_TYPES = {t.lower(): t for t in ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")}

ACTION_SUBSCRIPTION_READ = "Microsoft.Resources/subscriptions/read"
ACTION_RG_READ = "Microsoft.Resources/subscriptions/resourceGroups/read"
ACTION_RG_WRITE = "Microsoft.Resources/subscriptions/resourceGroups/write"
ACTION_RG_DELETE = "Microsoft.Resources/subscriptions/resourceGroups/delete"
ACTION_RA_READ = "Microsoft.Authorization/roleAssignments/read"
ACTION_RA_WRITE = "Microsoft.Authorization/roleAssignments/write"
ACTION_RA_DELETE = "Microsoft.Authorization/roleAssignments/delete"
ACTION_RD_READ = "Microsoft.Authorization/roleDefinitions/read"
ACTION_RD_WRITE = "Microsoft.Authorization/roleDefinitions/write"
ACTION_RD_DELETE = "Microsoft.Authorization/roleDefinitions/delete"
MAX_CUSTOM_ROLES = 5000  # per tenant (custom-roles.md, "Custom role limits")
MAX_ASSIGNABLE_SCOPES = 2000
MAX_ROLE_NAME = 512
MAX_ROLE_DESCRIPTION = 2048
ACTION_RESOURCES_READ = "Microsoft.Resources/subscriptions/resourceGroups/resources/read"


# --------------------------------------------------------------------------------------------------------------
# Scopes
# --------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Scope:
    """A parsed ARM scope. ``text`` is canonical (keywords in ARM's casing, names as given); ``key`` is lower."""

    kind: str  # "root" | "managementGroup" | "subscription" | "resourceGroup" | "resource"
    text: str
    subscription: str | None = None
    resource_group: str | None = None
    management_group: str | None = None
    provider_path: str | None = None  # for resources: "{namespace}/{type}/{name}[/{type}/{name}...]"

    @property
    def key(self) -> str:
        return self.text.lower()

    def prefix(self) -> str:
        """The scope as a path prefix ("" for the root scope)."""
        return "" if self.kind == "root" else self.text


ROOT = Scope("root", "/")


def parse_scope(segments: list[str]) -> Scope | None:
    """The scope named by ``segments`` (path split on "/"), or None when it is not an ARM scope."""
    low = [s.lower() for s in segments]
    n = len(segments)
    if n == 0:
        return ROOT
    if n == 4 and low[:3] == ["providers", "microsoft.management", "managementgroups"]:
        return Scope("managementGroup", f"/providers/Microsoft.Management/managementGroups/{segments[3]}",
                     management_group=segments[3])
    if low[0] != "subscriptions" or n < 2:
        return None
    sub = segments[1]
    if n == 2:
        return Scope("subscription", f"/subscriptions/{sub}", subscription=sub)
    if low[2] != "resourcegroups" or n < 4:
        return None
    rg = segments[3]
    rg_text = f"/subscriptions/{sub}/resourceGroups/{rg}"
    if n == 4:
        return Scope("resourceGroup", rg_text, subscription=sub, resource_group=rg)
    rest = segments[5:]
    if low[4] != "providers" or len(rest) < 3 or len(rest) % 2 == 0 or "." not in rest[0]:
        return None
    provider_path = "/".join(rest)
    return Scope("resource", f"{rg_text}/providers/{provider_path}", subscription=sub, resource_group=rg,
                 provider_path=provider_path)


def scope_from_text(text: str) -> Scope | None:
    """Parse a scope string such as ``/subscriptions/x/resourceGroups/y`` (None if it is not one)."""
    stripped = (text or "").strip("/")
    segments = stripped.split("/") if stripped else []
    if any(not s for s in segments):
        return None
    return parse_scope(segments)


def _mg_key(name: str) -> str:
    return f"/providers/microsoft.management/managementgroups/{name}".lower()


def _mg_parent(state: State, mg: dict[str, Any]) -> str | None:
    """Name of ``mg``'s parent management group (the tenant root group when none is recorded)."""
    parent = ((mg.get("properties") or {}).get("details") or {}).get("parent") or {}
    parent_id = parent.get("id") or parent.get("name")
    if parent_id:
        return str(parent_id).rstrip("/").rsplit("/", 1)[-1]
    root = state.tenant_id.lower()
    if mg.get("name", "").lower() != root and root in state.management_groups:
        return root
    return None


def _mg_chain(state: State, name: str | None) -> list[str]:
    """Keys of management group ``name`` and its ancestors, outermost first."""
    chain: list[str] = []
    seen: set[str] = set()
    while name and name.lower() not in seen:
        seen.add(name.lower())
        chain.append(_mg_key(name))
        mg = state.management_groups.get(name.lower())
        name = _mg_parent(state, mg) if mg else None
    return list(reversed(chain))


def _mg_of_subscription(state: State, subscription: str) -> str | None:
    sub = subscription.lower()
    for name, mg in state.management_groups.items():
        if sub in [s.lower() for s in mg.get("_subscriptions", [])]:
            return name
    root = state.tenant_id.lower()
    return root if root in state.management_groups else None


def scope_chain(state: State, scope: Scope) -> list[str]:
    """Keys of every scope at or above ``scope``, the root scope first and ``scope`` itself last."""
    chain = ["/"]
    if scope.kind == "root":
        return chain
    if scope.kind == "managementGroup":
        return chain + _mg_chain(state, scope.management_group)
    chain += _mg_chain(state, _mg_of_subscription(state, scope.subscription or ""))
    sub_text = f"/subscriptions/{scope.subscription}"
    chain.append(sub_text.lower())
    if scope.kind == "subscription":
        return chain
    rg_text = f"{sub_text}/resourceGroups/{scope.resource_group}"
    chain.append(rg_text.lower())
    if scope.kind == "resourceGroup":
        return chain
    parts = (scope.provider_path or "").split("/")
    for end in range(3, len(parts) + 1, 2):
        chain.append(f"{rg_text}/providers/{'/'.join(parts[:end])}".lower())
    return chain


def _scope_key(text: Any) -> str:
    return str(text or "/").lower().rstrip("/") or "/"


# --------------------------------------------------------------------------------------------------------------
# RBAC evaluation
# --------------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=512)
def _action_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$", re.IGNORECASE)


def action_matches(pattern: str, action: str) -> bool:
    """ARM's action matching: case-insensitive, ``*`` matches any run of characters (``/`` included)."""
    return bool(_action_pattern(pattern).match(action))


def role_grants(definition: dict[str, Any] | None, action: str) -> bool:
    """True when one permission block of ``definition`` allows ``action`` (in ``actions``, not in ``notActions``)."""
    if not definition:
        return False
    for permission in (definition.get("properties") or {}).get("permissions") or []:
        if any(action_matches(p, action) for p in permission.get("actions") or []) and \
                not any(action_matches(p, action) for p in permission.get("notActions") or []):
            return True
    return False


def _guid_of(role_definition_id: Any) -> str:
    return str(role_definition_id or "").rstrip("/").rsplit("/", 1)[-1].lower()


def _effective_assignments(ctx: "Sandbox", principal_id: str) -> Iterable[dict[str, Any]]:
    """The principal's role assignments that are in effect (a fresh one is not, inside the replication lag)."""
    pid = principal_id.lower()
    for assignment in ctx.state.role_assignments.values():
        props = assignment.get("properties") or {}
        if str(props.get("principalId", "")).lower() == pid and not ctx.faults.lagging(assignment):
            yield assignment


def is_allowed(ctx: "Sandbox", principal_id: str, action: str, scope: Scope) -> bool:
    """Whether ``principal_id`` may perform ``action`` at ``scope`` through assignments at or above it."""
    chain = set(scope_chain(ctx.state, scope))
    for assignment in _effective_assignments(ctx, principal_id):
        props = assignment["properties"]
        if _scope_key(props.get("scope")) in chain and \
                role_grants(ctx.state.role_definitions.get(_guid_of(props.get("roleDefinitionId"))), action):
            return True
    return False


def has_any_access(ctx: "Sandbox", principal_id: str, scope: Scope) -> bool:
    """Whether the principal holds any role assignment at, above or below ``scope``."""
    chain = set(scope_chain(ctx.state, scope))
    for assignment in _effective_assignments(ctx, principal_id):
        key = _scope_key(assignment["properties"].get("scope"))
        if key in chain:
            return True
        parsed = scope_from_text(key)
        if parsed is not None and scope.key in scope_chain(ctx.state, parsed):
            return True
    return False


def _authorization_failed(caller: Any, action: str, scope_text: str) -> ServiceError:
    oid = caller.object_id
    return arm_error(403, "AuthorizationFailed",
                     f"The client '{oid}' with object id '{oid}' does not have authorization to perform action "
                     f"'{action}' over scope '{scope_text}' or the scope is invalid. If access was recently "
                     f"granted, please refresh your credentials.")


def _authorize(ctx: "Sandbox", caller: Any, action: str, scope: Scope, scope_text: str) -> None:
    if not is_allowed(ctx, caller.object_id, action, scope):
        raise _authorization_failed(caller, action, scope_text)


# --------------------------------------------------------------------------------------------------------------
# State helpers (also used by the control API / seeding)
# --------------------------------------------------------------------------------------------------------------

def seed(ctx: "Sandbox") -> None:
    """Reset hook: make sure the built-in role definitions are present (custom ones are kept)."""
    for guid, definition in built_in_role_definitions().items():
        ctx.state.role_definitions.setdefault(guid, definition)


def _timestamp(ctx: "Sandbox") -> str:
    stamp = _dt.datetime.fromtimestamp(ctx.clock(), _dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def add_subscription(state: State, subscription_id: str, display_name: str = "Sandbox Subscription",
                     *, management_group: str | None = None) -> dict[str, Any]:
    """Create (or return) a subscription of the tenant, optionally placed in a management group."""
    if not _GUID_RE.match(subscription_id):
        raise ValueError("subscription_id must be a GUID")
    sub = state.subscriptions.get(subscription_id.lower())
    if sub is None:
        sub = {
            "id": f"/subscriptions/{subscription_id}", "authorizationSource": "RoleBased", "managedByTenants": [],
            "subscriptionId": subscription_id, "tenantId": state.tenant_id, "displayName": display_name,
            "state": "Enabled",
            "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                     "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
        }
        state.subscriptions[subscription_id.lower()] = sub
    if management_group:
        for mg in state.management_groups.values():
            mg["_subscriptions"] = [s for s in mg.get("_subscriptions", []) if s.lower() != subscription_id.lower()]
        mg = state.management_groups.get(management_group.lower())
        if mg is None:
            raise ValueError(f"unknown management group {management_group!r}")
        mg.setdefault("_subscriptions", []).append(subscription_id.lower())
    return sub


def add_management_group(state: State, name: str, display_name: str | None = None,
                         parent: str | None = None) -> dict[str, Any]:
    """Create (or return) a management group; ``name == tenant id`` is the tenant root group."""
    if not name or "/" in name:
        raise ValueError("a management group name must be non-empty and contain no '/'")
    if parent and parent.lower() not in state.management_groups:
        raise ValueError(f"unknown parent management group {parent!r}")
    mg = state.management_groups.get(name.lower())
    if mg is None:
        mg = {"id": f"/providers/Microsoft.Management/managementGroups/{name}", "name": name,
              "type": MANAGEMENT_GROUPS_TYPE,
              "properties": {"displayName": display_name or name, "tenantId": state.tenant_id,
                             "details": {"parent": None}},
              "_subscriptions": []}
        state.management_groups[name.lower()] = mg
    if parent:
        mg["properties"]["details"]["parent"] = {
            "id": f"/providers/Microsoft.Management/managementGroups/{parent}", "name": parent}
    return mg


def _rg_key(subscription: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourcegroups/{name}".lower()


def add_resource_group(state: State, subscription_id: str, name: str, location: str = "westeurope",
                       tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Create (or return) a resource group in an existing subscription."""
    sub = state.subscriptions.get(subscription_id.lower())
    if sub is None:
        raise ValueError(f"unknown subscription {subscription_id!r}")
    key = _rg_key(subscription_id, name)
    group = state.resource_groups.get(key)
    if group is None:
        group = {"id": f"/subscriptions/{sub['subscriptionId']}/resourceGroups/{name}", "name": name,
                 "type": RESOURCE_GROUPS_TYPE, "location": _normalise_location(location),
                 "properties": {"provisioningState": "Succeeded"}, "tags": dict(tags or {})}
        state.resource_groups[key] = group
    return group


def add_resource(state: State, resource_id: str) -> dict[str, Any]:
    """Register a resource (e.g. a storage account) inside an existing resource group, so it can be a scope."""
    scope = scope_from_text(resource_id)
    if scope is None or scope.kind != "resource":
        raise ValueError("resource_id must look like /subscriptions/{s}/resourceGroups/{g}/providers/{ns}/{type}/"
                         "{name}")
    group = state.resource_groups.get(_rg_key(scope.subscription or "", scope.resource_group or ""))
    if group is None:
        raise ValueError(f"unknown resource group in {resource_id!r}")
    parts = (scope.provider_path or "").split("/")
    resource = {"id": scope.text, "name": "/".join(parts[2::2]),
                "type": "/".join([parts[0]] + parts[1::2])}
    group.setdefault("_resources", {})[scope.key] = resource
    return resource


def assign_role(state: State, scope_text: str, role: str, principal_id: str,
                principal_type: str = "ServicePrincipal", *, name: str | None = None,
                created_on: str | None = None) -> dict[str, Any]:
    """Seed a role assignment without any authorisation check (``role`` is a GUID or a built-in role name)."""
    scope = scope_from_text(scope_text)
    if scope is None:
        raise ValueError(f"not an ARM scope: {scope_text!r}")
    definition = _find_definition(state, role)
    if definition is None:
        raise ValueError(f"unknown role {role!r}")
    name = name or str(uuid.uuid4())
    assignment = _new_assignment(state, scope, name, definition["name"], principal_id, principal_type,
                                 created_on or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                 created_by=None, extra={})
    state.role_assignments[assignment["id"].lower()] = assignment
    return assignment


def _find_definition(state: State, role: str) -> dict[str, Any] | None:
    if _GUID_RE.match(role or ""):
        return state.role_definitions.get(role.lower())
    for definition in state.role_definitions.values():
        if definition["properties"]["roleName"].lower() == (role or "").lower():
            return definition
    return None


def definition_id(state: State, scope: Scope, guid: str) -> str:
    """A role definition's ``id`` as ARM writes it for ``scope``: subscription-level inside a subscription."""
    if scope.subscription:
        sub = state.subscriptions.get(scope.subscription.lower())
        sub_id = sub["subscriptionId"] if sub else scope.subscription
        return f"/subscriptions/{sub_id}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    return f"/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def _new_assignment(state: State, scope: Scope, name: str, role_guid: str, principal_id: str,
                    principal_type: str, now: str, *, created_by: str | None,
                    extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{scope.prefix()}/providers/Microsoft.Authorization/roleAssignments/{name}",
        "name": name,
        "type": ROLE_ASSIGNMENTS_TYPE,
        "properties": {
            "roleDefinitionId": definition_id(state, scope, role_guid),
            "principalId": principal_id,
            "principalType": principal_type,
            "scope": scope.text,
            "condition": extra.get("condition"),
            "conditionVersion": extra.get("conditionVersion"),
            "createdOn": now, "updatedOn": now, "createdBy": created_by, "updatedBy": created_by,
            "delegatedManagedIdentityResourceId": extra.get("delegatedManagedIdentityResourceId"),
            "description": extra.get("description"),
        },
    }


def _normalise_location(location: str) -> str:
    return re.sub(r"\s+", "", location).lower()


# --------------------------------------------------------------------------------------------------------------
# Request plumbing
# --------------------------------------------------------------------------------------------------------------

def _query(request: Request, name: str) -> str | None:
    """A query parameter, its name matched case-insensitively (ARM does)."""
    for key, value in request.query_params.multi_items():
        if key.lower() == name.lower():
            return value
    return None


def _version_ok(version: str, known: list[str], today: _dt.date) -> bool:
    """Known versions, plus any well-formed newer one up to today (services keep adding versions)."""
    if version.lower() in (v.lower() for v in known):
        return True
    match = _VERSION_RE.match(version)
    if not match:
        return False
    try:
        stamp = _dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return False
    newest = max(_dt.date.fromisoformat(v[:10]) for v in known if _VERSION_RE.match(v))
    return newest < stamp <= today


def _require_api_version(ctx: "Sandbox", request: Request, family: str, resource_type: str = "",
                         location: str = "global") -> str:
    version = _query(request, "api-version")
    if version is None or version == "":
        raise arm_error(400, "MissingApiVersionParameter",
                        "The api-version query parameter (?api-version=) is required for all requests.")
    today = _dt.datetime.fromtimestamp(ctx.clock(), _dt.timezone.utc).date()
    if family == "authorization":
        if not _version_ok(version, AUTHORIZATION_API_VERSIONS, today):
            raise arm_error(400, "NoRegisteredProviderFound",
                            f"No registered resource provider found for location '{location}' and API version "
                            f"'{version}' for type '{resource_type}'. The supported api-versions are "
                            f"'{', '.join(AUTHORIZATION_API_VERSIONS)}'. The supported locations are ''.")
        return version
    known = METADATA_API_VERSIONS if family == "metadata" else RESOURCES_API_VERSIONS
    if not _version_ok(version, known, today):
        raise arm_error(400, "InvalidApiVersionParameter",
                        f"The api-version '{version}' is invalid. The supported versions are "
                        f"'{','.join(known)}'.")
    return version


def _caller(ctx: "Sandbox", request: Request) -> Any:
    """The verified caller (``Caller.object_id``), or the 401 ``ServiceError`` the auth layer raises."""
    return ctx.auth.require(request, "arm")


def _deserialize_error(detail: str) -> ServiceError:
    return arm_error(400, "InvalidRequestContent",
                     f"The request content was invalid and could not be deserialized: '{detail}'.")


async def _json_object(request: Request, type_name: str) -> dict[str, Any]:
    """The request body as a JSON object, or ARM's 400 ``InvalidRequestContent``."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _deserialize_error("The request body is not valid UTF-8.") from None
    if not text.strip():
        raise arm_error(400, "InvalidRequestContent", "The request content was invalid and could not be "
                                                      "deserialized: 'The request content is empty.'.")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            detail = f"Unexpected end when reading JSON. Path '', line {exc.lineno}, position {exc.colno}."
        else:
            detail = (f"Unexpected character encountered while parsing value: {text[exc.pos]}. Path '', "
                      f"line {exc.lineno}, position {exc.colno}.")
        raise _deserialize_error(detail) from None
    if not isinstance(body, dict):
        raise _deserialize_error(f"Cannot deserialize the current JSON {_token(body).lower()} into type "
                                 f"'{type_name}' because the type requires a JSON object. Path ''.")
    return body


def _token(value: Any) -> str:
    """Json.NET's token name for a JSON value (used in deserialisation messages)."""
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, dict):
        return "StartObject"
    if isinstance(value, list):
        return "StartArray"
    if value is None:
        return "Null"
    return "String"


def _check_members(obj: dict[str, Any], allowed: Iterable[str], type_name: str, path: str) -> None:
    allowed_lower = {a.lower() for a in allowed}
    for key in obj:
        if key.lower() not in allowed_lower:
            where = f"{path}.{key}" if path else key
            raise _deserialize_error(f"Could not find member '{key}' on object of type '{type_name}'. "
                                     f"Path '{where}'.")


def _optional_string(obj: dict[str, Any], key: str, path: str) -> str | None:
    value = _get_ci(obj, key)
    if value is None or isinstance(value, str):
        return value
    raise _deserialize_error(f"Error reading string. Unexpected token: {_token(value)}. Path '{path}.{key}'.")


def _get_ci(obj: dict[str, Any], key: str) -> Any:
    """Json.NET binds members case-insensitively."""
    for name, value in obj.items():
        if name.lower() == key.lower():
            return value
    return None


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def _page(request: Request, items: list[dict[str, Any]], page_size: int) -> dict[str, Any]:
    """One page of ``items`` (sorted by lower-case id) with an absolute ``nextLink`` when more remain."""
    items = sorted(items, key=lambda item: str(item.get("id", "")).lower())
    token = _query(request, "$skiptoken")
    start = 0
    if token:
        last = _read_skip_token(token)
        start = next((i for i, item in enumerate(items) if str(item.get("id", "")).lower() > last), len(items))
    chunk = items[start:start + page_size]
    result: dict[str, Any] = {"value": chunk}
    if start + page_size < len(items):
        last_key = str(chunk[-1].get("id", "")).lower()
        next_token = base64.urlsafe_b64encode(json.dumps({"after": last_key}).encode("utf-8")).decode("ascii")
        result["nextLink"] = _next_link(request, next_token.rstrip("="))
    return result


def _read_skip_token(token: str) -> str:
    """The id after which the next page starts (400 ``InvalidSkipToken`` for anything this sandbox did not issue)."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4)))
    except (ValueError, UnicodeError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("after"), str):
        raise arm_error(400, "InvalidSkipToken", f"The skip token '{token[:100]}' is not valid.")
    return data["after"]


def _next_link(request: Request, token: str) -> str:
    url = request.url
    pairs = [(k, v) for k, v in request.query_params.multi_items() if k.lower() != "$skiptoken"]
    pairs.append(("$skiptoken", token))
    query = "&".join(f"{quote(k, safe='$-')}={quote(v, safe=chr(39) + '()$,:@!*-._~')}" for k, v in pairs)
    path = quote(request.scope.get("path", url.path), safe="/()$'.,-_~:@!*+;=")
    return f"{url.scheme}://{url.netloc}{path}?{query}"


def _page_size(ctx: "Sandbox") -> int:
    size = getattr(ctx.config, "arm_page_size", None)
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    return DEFAULT_PAGE_SIZE


def _request_scope_text(path: str) -> str:
    """The request path as the client wrote it (ARM quotes it in AuthorizationFailed messages)."""
    return path.rstrip("/") or "/"


# --------------------------------------------------------------------------------------------------------------
# Scope existence
# --------------------------------------------------------------------------------------------------------------

def _subscription_of(ctx: "Sandbox", scope: Scope) -> dict[str, Any] | None:
    """The subscription of ``scope`` (404 when it does not exist; None for scopes outside subscriptions)."""
    if not scope.subscription:
        return None
    if not _GUID_RE.match(scope.subscription):
        raise arm_error(400, "InvalidSubscriptionId",
                        f"The provided subscription identifier '{scope.subscription}' is malformed or invalid.")
    sub = ctx.state.subscriptions.get(scope.subscription.lower())
    if sub is None:
        raise arm_error(404, "SubscriptionNotFound", f"The subscription '{scope.subscription}' could not be found.")
    return sub


def _check_rg_name(name: str) -> None:
    bad = sorted(set(_RG_NAME_BAD.findall(name)))
    if bad:
        raise arm_error(400, "InvalidResourceGroup",
                        f"The provided resource group name '{name}' has these invalid characters: '{''.join(bad)}'. "
                        f"The name can only be a letter, digit, '-', '.', '(', ')' or '_'.")
    if not 1 <= len(name) <= 90 or name.endswith("."):
        raise arm_error(400, "InvalidResourceGroup",
                        f"The provided resource group name '{name}' is invalid. It must be 1 to 90 characters long "
                        f"and must not end with a period.")


def _resource_group(ctx: "Sandbox", scope: Scope) -> dict[str, Any] | None:
    return ctx.state.resource_groups.get(_rg_key(scope.subscription or "", scope.resource_group or ""))


def _require_scope_exists(ctx: "Sandbox", scope: Scope) -> None:
    """404 in ARM's words when the scope's management group, resource group or resource does not exist."""
    if scope.kind == "managementGroup":
        if (scope.management_group or "").lower() not in ctx.state.management_groups:
            raise arm_error(404, "ManagementGroupNotFound",
                            f"The management group '{scope.management_group}' could not be found.")
        return
    if scope.kind in ("resourceGroup", "resource"):
        group = _resource_group(ctx, scope)
        if group is None:
            raise arm_error(404, "ResourceGroupNotFound", f"Resource group '{scope.resource_group}' could not be "
                                                           f"found.")
        if scope.kind == "resource":
            resources = group.get("_resources") or {}
            if not any(key == scope.key or key.startswith(scope.key + "/") for key in resources):
                raise arm_error(404, "ResourceNotFound",
                                f"The Resource '{scope.provider_path}' under resource group '{scope.resource_group}' "
                                f"was not found. For more details please go to "
                                f"https://aka.ms/ARMResourceNotFoundFix")


def _prepare_scope(ctx: "Sandbox", scope: Scope) -> None:
    """Checks ARM makes before authorisation: a well-formed, existing subscription and resource group name."""
    _subscription_of(ctx, scope)
    if scope.resource_group is not None:
        _check_rg_name(scope.resource_group)


# --------------------------------------------------------------------------------------------------------------
# Handlers: metadata, tenants, subscriptions
# --------------------------------------------------------------------------------------------------------------

def _base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def cloud_metadata(base_url: str, name: str = "Sandbox") -> dict[str, Any]:
    """The ``/metadata/endpoints`` document of a cloud whose every endpoint is the sandbox."""
    return {
        "name": name,
        "portal": base_url,
        "resourceManager": f"{base_url}/",
        "authentication": {"loginEndpoint": base_url,
                           "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
                           "tenant": "common", "identityProvider": "AAD"},
        "microsoftGraphResourceId": f"{base_url}/",
        "graph": "https://graph.windows.net/",
        "graphAudience": "https://graph.windows.net/",
        "suffixes": {},
    }


async def _metadata(ctx: "Sandbox", request: Request) -> Response:
    version = _require_api_version(ctx, request, "metadata")
    document = cloud_metadata(_base_url(request))
    # 2019-05-01 answers with the list of every cloud (here: one); other versions with the current cloud.
    return _json([document] if version == "2019-05-01" else document)


async def _tenants(ctx: "Sandbox", request: Request) -> Response:
    _require_api_version(ctx, request, "resources")
    caller = _caller(ctx, request)
    tenant = ctx.state.tenant_id
    domain = getattr(ctx.config, "tenant_domain", None) or "sandbox.onmicrosoft.com"
    entry = {"id": f"/tenants/{tenant}", "tenantId": tenant, "countryCode": "US", "displayName": "Sandbox",
             "domains": [domain], "tenantCategory": "Home", "defaultDomain": domain, "tenantType": "AAD"}
    visible = str(getattr(caller, "tenant_id", tenant)).lower() == tenant.lower()
    return _json({"value": [entry] if visible else []})


async def _list_subscriptions(ctx: "Sandbox", request: Request) -> Response:
    _require_api_version(ctx, request, "resources")
    caller = _caller(ctx, request)
    visible = [public(sub) for sub in ctx.state.subscriptions.values()
               if has_any_access(ctx, caller.object_id, Scope("subscription", sub["id"],
                                                              subscription=sub["subscriptionId"]))]
    visible.sort(key=lambda s: s["subscriptionId"].lower())
    return _json({"value": visible, "count": {"type": "Total", "value": len(visible)}})


async def _get_subscription(ctx: "Sandbox", request: Request, scope: Scope, path: str) -> Response:
    _require_api_version(ctx, request, "resources")
    caller = _caller(ctx, request)
    sub = _subscription_of(ctx, scope)
    assert sub is not None
    if not has_any_access(ctx, caller.object_id, scope):
        raise _authorization_failed(caller, ACTION_SUBSCRIPTION_READ, _request_scope_text(path))
    return _json(public(sub))


# --------------------------------------------------------------------------------------------------------------
# Handlers: resource groups
# --------------------------------------------------------------------------------------------------------------

def _rg_view(group: dict[str, Any]) -> dict[str, Any]:
    view = copy.deepcopy(public(group))
    if not view.get("tags"):
        view.pop("tags", None)
    return view


async def _list_resource_groups(ctx: "Sandbox", request: Request, scope: Scope, path: str) -> Response:
    _require_api_version(ctx, request, "resources")
    caller = _caller(ctx, request)
    sub = _subscription_of(ctx, scope)
    assert sub is not None
    if not has_any_access(ctx, caller.object_id, scope):
        raise _authorization_failed(caller, ACTION_RG_READ, _request_scope_text(path))
    prefix = f"/subscriptions/{sub['subscriptionId']}/resourcegroups/".lower()
    readable = []
    for key, group in ctx.state.resource_groups.items():
        if key.startswith(prefix):
            rg_scope = Scope("resourceGroup", group["id"], subscription=sub["subscriptionId"],
                             resource_group=group["name"])
            if is_allowed(ctx, caller.object_id, ACTION_RG_READ, rg_scope):
                readable.append(_rg_view(group))
    top = _query(request, "$top")
    size = _page_size(ctx)
    if top is not None:
        if not top.isdigit() or int(top) < 1:
            raise arm_error(400, "InvalidQueryParameterValue",
                            f"The value '{top}' of query parameter '$top' is not valid. It must be a positive "
                            f"integer.")
        size = min(int(top), 1000)
    return _json(_page(request, readable, size))


async def _resource_group_item(ctx: "Sandbox", request: Request, scope: Scope, path: str) -> Response:
    method = request.method
    if method not in ("GET", "HEAD", "PUT", "DELETE"):
        raise method_not_allowed("arm", method, "GET, HEAD, PUT, DELETE")
    _require_api_version(ctx, request, "resources")
    caller = _caller(ctx, request)
    _prepare_scope(ctx, scope)
    scope_text = _request_scope_text(path)
    action = {"GET": ACTION_RG_READ, "HEAD": ACTION_RG_READ, "PUT": ACTION_RG_WRITE,
              "DELETE": ACTION_RG_DELETE}[method]
    _authorize(ctx, caller, action, scope, scope_text)
    group = _resource_group(ctx, scope)
    if method == "HEAD":
        return Response(status_code=204 if group else 404)
    if method == "PUT":
        return await _put_resource_group(ctx, request, scope, group)
    if group is None:
        raise arm_error(404, "ResourceGroupNotFound", f"Resource group '{scope.resource_group}' could not be found.")
    if method == "GET":
        return _json(_rg_view(group))
    _delete_resource_group(ctx, group)
    return Response(status_code=200)


async def _put_resource_group(ctx: "Sandbox", request: Request, scope: Scope,
                              group: dict[str, Any] | None) -> Response:
    body = await _json_object(request, "ResourceGroup")
    _check_members(body, ("location", "tags", "managedBy", "properties", "id", "name", "type"), "ResourceGroup", "")
    location = _optional_string(body, "location", "")
    if not location:
        raise arm_error(400, "LocationRequired", "The location property is required for this definition.")
    normalised = _normalise_location(location)
    if normalised not in LOCATIONS:
        raise arm_error(400, "LocationNotAvailableForResourceGroup",
                        f"The provided location '{location}' is not available for resource group. List of "
                        f"available regions is '{','.join(LOCATIONS)}'.")
    tags = _get_ci(body, "tags")
    if tags is not None and not isinstance(tags, dict):
        raise _deserialize_error(f"Unexpected token {_token(tags)} when reading 'Dictionary'. Path 'tags'.")
    for key, value in (tags or {}).items():
        if not isinstance(value, str):
            raise _deserialize_error(f"Error reading string. Unexpected token: {_token(value)}. Path 'tags.{key}'.")
    managed_by = _optional_string(body, "managedBy", "")
    if group is not None:
        if group.get("location") != normalised:
            raise arm_error(409, "InvalidResourceGroupLocation",
                            f"Invalid resource group location '{location}'. The Resource group already exists in "
                            f"location '{group.get('location')}'.")
        group["tags"] = dict(tags or {})
        if managed_by is not None:
            group["managedBy"] = managed_by
        return _json(_rg_view(group), 200)
    group = add_resource_group(ctx.state, scope.subscription or "", scope.resource_group or "", normalised, tags)
    if managed_by is not None:
        group["managedBy"] = managed_by
    return _json(_rg_view(group), 201)


def _delete_resource_group(ctx: "Sandbox", group: dict[str, Any]) -> None:
    """Remove the group, its resources and every role assignment at or below it."""
    key = group["id"].lower()
    ctx.state.resource_groups.pop(key, None)
    for ra_key, assignment in list(ctx.state.role_assignments.items()):
        scope_key = _scope_key(assignment.get("properties", {}).get("scope"))
        if scope_key == key or scope_key.startswith(key + "/"):
            del ctx.state.role_assignments[ra_key]


# --------------------------------------------------------------------------------------------------------------
# Handlers: role definitions
# --------------------------------------------------------------------------------------------------------------

def _definition_view(ctx: "Sandbox", definition: dict[str, Any], scope: Scope) -> dict[str, Any]:
    view = copy.deepcopy(public(definition))
    view["id"] = definition_id(ctx.state, scope, definition["name"])
    return view


_RD_FILTER_CLAUSE = re.compile(
    r"\s*(?:(?P<field>roleName|type)\s+eq\s+'(?P<value>(?:[^']|'')*)'|(?P<below>atScopeAndBelow\(\s*\)))\s*",
    re.IGNORECASE)
_AND = re.compile(r"and\b", re.IGNORECASE)


def _unsupported_definition_filter(text: str) -> ServiceError:
    return arm_error(400, "UnsupportedQuery",
                     f"The filter '{text}' is not supported. Supported filters are 'roleName eq '{{value}}'', "
                     f"'type eq 'BuiltInRole|CustomRole'' and 'atScopeAndBelow()'.")


def _eq_clauses(text: str | None, clause: re.Pattern[str], refuse: Any) -> list[tuple[str, str]]:
    """(field, value) equality clauses of a ``$filter`` made of ``clause`` matches joined by ``and`` (quotes respected;
    a clause without a field, such as ``atScopeAndBelow()``, adds nothing); ``refuse(text)`` is the error otherwise."""
    if not text or not text.strip():
        return []
    clauses: list[tuple[str, str]] = []
    pos = 0
    while True:
        match = clause.match(text, pos)
        if match is None:
            raise refuse(text)
        if match.group("field"):
            clauses.append((match.group("field").lower(), match.group("value").replace("''", "'")))
        pos = match.end()
        if pos >= len(text):
            return clauses
        joiner = _AND.match(text, pos)
        if joiner is None:
            raise refuse(text)
        pos = joiner.end()


def _definition_filter(text: str | None) -> list[tuple[str, str]]:
    """(field, value) equality clauses of a role-definition ``$filter`` joined by ``and`` (quotes respected)."""
    return _eq_clauses(text, _RD_FILTER_CLAUSE, _unsupported_definition_filter)


def _definition_matches(definition: dict[str, Any], clauses: list[tuple[str, str]]) -> bool:
    props = definition.get("properties") or {}
    for field, value in clauses:
        actual = props.get("roleName") if field == "rolename" else props.get("type")
        if str(actual or "").lower() != value.lower():
            return False
    return True


def assignable_at(state: State, definition: dict[str, Any], scope: Scope) -> bool:
    """Whether ``definition`` is available for assignment at ``scope``: one of its ``assignableScopes`` is at or
    above it (built-in roles: ``/``).  Custom roles with ``dataActions`` are not assignable at a management group."""
    props = definition.get("properties") or {}
    if scope.kind == "managementGroup" and props.get("type") == "CustomRole" and \
            any(block.get("dataActions") for block in props.get("permissions") or []):
        return False
    chain = set(scope_chain(state, scope))
    return any(_scope_key(item) in chain for item in props.get("assignableScopes") or [])


def _below(state: State, definition: dict[str, Any], scope: Scope) -> bool:
    """Whether one of the definition's assignable scopes lies below ``scope`` (``atScopeAndBelow()``)."""
    for item in (definition.get("properties") or {}).get("assignableScopes") or []:
        parsed = scope_from_text(str(item))
        if parsed is not None and scope.key in scope_chain(state, parsed):
            return True
    return False


def _definition_not_found(name: str) -> ServiceError:
    return arm_error(404, "RoleDefinitionDoesNotExist",
                     f"The specified role definition with ID '{_hex(name)}' does not exist.")


async def _role_definitions(ctx: "Sandbox", request: Request, scope: Scope, name: str | None,
                            path: str) -> Response:
    method = request.method
    allowed = ("GET",) if name is None else ("GET", "PUT", "DELETE")
    if method not in allowed:
        raise method_not_allowed("arm", method, ", ".join(allowed))
    _require_api_version(ctx, request, "authorization", "roleDefinitions", _location_of(ctx, scope))
    caller = _caller(ctx, request)
    _prepare_scope(ctx, scope)
    if method == "PUT":
        assert name is not None
        return await _put_role_definition(ctx, request, caller, scope, name, path)
    if method == "DELETE":
        assert name is not None
        return _delete_role_definition(ctx, caller, scope, name, path)
    if scope.kind != "root":  # tenant-level built-in definitions are readable by every caller of the tenant
        _authorize(ctx, caller, ACTION_RD_READ, scope, _request_scope_text(path))
    _require_scope_exists(ctx, scope)
    if name is not None:
        definition = ctx.state.role_definitions.get(name.lower())
        if definition is None or not assignable_at(ctx.state, definition, scope):
            raise _definition_not_found(name)
        return _json(_definition_view(ctx, definition, scope))
    raw_filter = _query(request, "$filter")
    clauses = _definition_filter(raw_filter)
    below = bool(raw_filter) and re.search(r"atScopeAndBelow\(\s*\)", raw_filter, re.IGNORECASE) is not None
    result = [_definition_view(ctx, definition, scope) for definition in ctx.state.role_definitions.values()
              if _definition_matches(definition, clauses)
              and (assignable_at(ctx.state, definition, scope) or (below and _below(ctx.state, definition, scope)))]
    result.sort(key=lambda d: d["name"])
    return _json({"value": result})


# ---- custom role definitions (Role Definitions - Create Or Update / Delete, custom-roles.md)

_RD_MEMBERS = ("roleName", "description", "type", "permissions", "assignableScopes",
               # read-only members a client may echo back (ignored)
               "createdOn", "updatedOn", "createdBy", "updatedBy")
_PERMISSION_MEMBERS = ("actions", "notActions", "dataActions", "notDataActions", "condition", "conditionVersion")


def _invalid_definition(code: str, message: str) -> ServiceError:
    return arm_error(400, code, message)


def _string_array(value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _deserialize_error(f"Cannot deserialize the current JSON {_token(value).lower()} into type "
                                 f"'System.Collections.Generic.IList`1[System.String]' because the type requires a "
                                 f"JSON array. Path '{path}'.")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise _deserialize_error(f"Error reading string. Unexpected token: {_token(item)}. "
                                     f"Path '{path}[{index}]'.")
    return list(value)


def _check_action(action: str, member: str) -> None:
    """The documented format limits: a non-empty action string with at most one wildcard and no spaces."""
    if not action.strip() or any(ch.isspace() for ch in action) or action.count("*") > 1:
        raise _invalid_definition("InvalidActionOrNotAction",
                                  f"'{action}' does not match any of the actions supported by the providers "
                                  f"(property '{member}'). An action string can contain only one wildcard (*).")


def _validate_permissions(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _deserialize_error(f"Cannot deserialize the current JSON {_token(value).lower()} into type "
                                 f"'System.Collections.Generic.IList`1[Permission]' because the type requires a JSON "
                                 f"array. Path 'properties.permissions'.")
    blocks = []
    for index, block in enumerate(value):
        path = f"properties.permissions[{index}]"
        if not isinstance(block, dict):
            raise _deserialize_error(f"Unexpected token {_token(block)} when reading 'Permission'. Path '{path}'.")
        _check_members(block, _PERMISSION_MEMBERS, "Permission", path)
        clean: dict[str, Any] = {}
        for member in ("actions", "notActions", "dataActions", "notDataActions"):
            clean[member] = _string_array(_get_ci(block, member), f"{path}.{member}")
            for action in clean[member]:
                _check_action(action, member)
        blocks.append(clean)
    return blocks


def _validate_assignable_scopes(ctx: "Sandbox", value: Any) -> list[str]:
    scopes = _string_array(value, "properties.assignableScopes")
    if not scopes:
        raise _invalid_definition("InvalidAssignableScopes",
                                  "The role definition must have at least one assignable scope.")
    if len(scopes) > MAX_ASSIGNABLE_SCOPES:
        raise _invalid_definition("InvalidAssignableScopes",
                                  f"A role definition can have at most {MAX_ASSIGNABLE_SCOPES} assignable scopes.")
    management_groups = 0
    result = []
    for text in scopes:
        parsed = scope_from_text(text)
        if "*" in text or parsed is None or parsed.kind == "root":
            raise _invalid_definition("InvalidAssignableScopes",
                                      f"The assignable scope '{text}' is not valid. A custom role's assignable scopes "
                                      f"are management groups, subscriptions, resource groups or resources; the "
                                      f"root scope ('/') and wildcards are not allowed.")
        if parsed.kind == "managementGroup":
            management_groups += 1
        result.append(parsed.text)
    if management_groups > 1:
        raise _invalid_definition("InvalidAssignableScopes",
                                  "You can define only one management group in AssignableScopes of a custom role.")
    return result


def _validate_definition_body(ctx: "Sandbox", body: dict[str, Any], name: str) -> dict[str, Any]:
    """The writable properties of a role-definition PUT body, validated like ARM (400 otherwise)."""
    _check_members(body, ("properties", "id", "name", "type"), "RoleDefinition", "")
    body_name = _get_ci(body, "name")
    if body_name is not None and (not isinstance(body_name, str) or body_name.lower() != name.lower()):
        raise _invalid_definition("RoleDefinitionIdMismatch",
                                  f"The role definition ID '{body_name}' in the request body does not match the ID "
                                  f"'{name}' in the request URI.")
    props = _get_ci(body, "properties")
    if props is None:
        raise _deserialize_error("Required property 'properties' not found in JSON. Path ''.")
    if not isinstance(props, dict):
        raise _deserialize_error(f"Unexpected token {_token(props)} when reading 'RoleDefinitionProperties'. "
                                 f"Path 'properties'.")
    _check_members(props, _RD_MEMBERS, "RoleDefinitionProperties", "properties")
    role_name = _optional_string(props, "roleName", "properties")
    description = _optional_string(props, "description", "properties")
    role_type = _optional_string(props, "type", "properties")
    if not role_name or not role_name.strip():
        raise _invalid_definition("RoleDefinitionNameNullOrEmpty", "The role definition name cannot be null or empty.")
    if len(role_name) > MAX_ROLE_NAME:
        raise _invalid_definition("InvalidRoleDefinitionName",
                                  f"The role definition name can have at most {MAX_ROLE_NAME} characters.")
    if description is not None and len(description) > MAX_ROLE_DESCRIPTION:
        raise _invalid_definition("InvalidRoleDefinitionDescription",
                                  f"The role definition description can have at most {MAX_ROLE_DESCRIPTION} "
                                  f"characters.")
    if role_type is not None and role_type.lower() != "customrole":
        raise _invalid_definition("InvalidRoleDefinitionType",
                                  f"The role definition type '{role_type}' is not valid. Only 'CustomRole' role "
                                  f"definitions can be created or updated.")
    permissions = _validate_permissions(_get_ci(props, "permissions"))
    assignable = _validate_assignable_scopes(ctx, _get_ci(props, "assignableScopes"))
    if any(scope_from_text(s).kind == "managementGroup" for s in assignable) and \
            any(block["dataActions"] for block in permissions):
        raise _invalid_definition("InvalidRoleDefinitionDataActions",
                                  "You cannot add data action permissions when you have a management group as an "
                                  "assignable scope")
    return {"roleName": role_name, "description": description, "permissions": permissions,
            "assignableScopes": assignable}


def _linked_authorization(ctx: "Sandbox", caller: Any, action: str, scope_text: str, scopes: Iterable[str]) -> None:
    """``action`` on every assignable scope (documented LinkedAuthorizationFailed otherwise; a scope that does not
    exist counts as one the caller has no permission on)."""
    failing = []
    for text in scopes:
        parsed = scope_from_text(text)
        ok = parsed is not None
        if ok and parsed.subscription:
            sub = ctx.state.subscriptions.get(parsed.subscription.lower())
            ok = sub is not None and (parsed.resource_group is None or _resource_group(ctx, parsed) is not None)
        if not ok or not is_allowed(ctx, caller.object_id, action, parsed):
            failing.append(text)
    if failing:
        oid = caller.object_id
        raise arm_error(403, "LinkedAuthorizationFailed",
                        f"The client '{oid}' with object id '{oid}' has permission to perform action '{action}' on "
                        f"scope '{scope_text}'; however, it does not have permission to perform action '{action}' "
                        f"on the linked scope(s)'{','.join(failing)}' or the linked scope(s)are invalid")


def _custom_role_count(state: State) -> int:
    return sum(1 for d in state.role_definitions.values() if (d.get("properties") or {}).get("type") == "CustomRole")


async def _put_role_definition(ctx: "Sandbox", request: Request, caller: Any, scope: Scope, name: str,
                               path: str) -> Response:
    scope_text = _request_scope_text(path)
    _authorize(ctx, caller, ACTION_RD_WRITE, scope, scope_text)
    _require_scope_exists(ctx, scope)
    if not _GUID_RE.match(name):
        raise _invalid_definition("InvalidRoleDefinitionId",
                                  f"The role definition ID '{name}' is not valid. The role definition ID must be a "
                                  f"GUID.")
    values = _validate_definition_body(ctx, await _json_object(request, "RoleDefinition"), name)
    existing = ctx.state.role_definitions.get(name.lower())
    if existing is not None and existing["properties"].get("type") != "CustomRole":
        raise arm_error(403, "RoleDefinitionUpdateNotPermitted",
                        f"The role definition '{name}' is a built-in role and cannot be updated.")
    parsed = [p for p in (scope_from_text(s) for s in values["assignableScopes"]) if p is not None]
    if not any(scope.key in scope_chain(ctx.state, p) for p in parsed):
        raise _invalid_definition("InvalidRoleDefinitionScope",
                                  f"The scope '{scope.text}' of the request is not one of the role definition's "
                                  f"assignable scopes (or above one of them). Send the request to the first "
                                  f"assignable scope.")
    linked = list(values["assignableScopes"])
    if existing is not None:
        linked += [s for s in existing["properties"].get("assignableScopes") or [] if s not in linked]
    _linked_authorization(ctx, caller, ACTION_RD_WRITE, scope.text, linked)
    for other in ctx.state.role_definitions.values():
        if other["name"].lower() != name.lower() and \
                str(other["properties"].get("roleName", "")).lower() == values["roleName"].lower():
            raise arm_error(409, "RoleDefinitionWithSameNameExists",
                            "A role definition cannot be updated with a name that already exists.")
    if existing is None and _custom_role_count(ctx.state) >= MAX_CUSTOM_ROLES:
        raise arm_error(409, "RoleDefinitionLimitExceeded",
                        "Role definition limit exceeded. No more role definitions can be created.")
    now = _timestamp(ctx)
    subscription = scope.subscription or next((p.subscription for p in parsed if p.subscription), None)
    guid = name.lower()
    definition = existing or {
        "id": definition_id(ctx.state, scope_from_text(f"/subscriptions/{subscription}") if subscription else ROOT,
                            guid),
        "name": guid, "type": ROLE_DEFINITIONS_TYPE,
        "properties": {"createdOn": now, "createdBy": caller.object_id},
    }
    props = definition["properties"]
    props.update({"roleName": values["roleName"], "type": "CustomRole", "description": values["description"],
                  "assignableScopes": values["assignableScopes"], "permissions": values["permissions"],
                  "updatedOn": now, "updatedBy": caller.object_id})
    definition["properties"] = {key: props.get(key) for key in (
        "roleName", "type", "description", "assignableScopes", "permissions", "createdOn", "updatedOn", "createdBy",
        "updatedBy")}
    ctx.state.role_definitions[guid] = definition
    return _json(_definition_view(ctx, definition, scope), 201)


def _delete_role_definition(ctx: "Sandbox", caller: Any, scope: Scope, name: str, path: str) -> Response:
    scope_text = _request_scope_text(path)
    _authorize(ctx, caller, ACTION_RD_DELETE, scope, scope_text)
    _require_scope_exists(ctx, scope)
    definition = ctx.state.role_definitions.get(name.lower())
    if definition is None or not (assignable_at(ctx.state, definition, scope) or _below(ctx.state, definition, scope)):
        return Response(status_code=204)
    props = definition["properties"]
    if props.get("type") != "CustomRole":
        raise arm_error(403, "RoleDefinitionDeleteNotPermitted",
                        f"The role definition '{name}' is a built-in role and cannot be deleted.")
    _linked_authorization(ctx, caller, ACTION_RD_DELETE, scope.text, props.get("assignableScopes") or [])
    if any(_guid_of((a.get("properties") or {}).get("roleDefinitionId")) == definition["name"]
           for a in ctx.state.role_assignments.values()):
        raise arm_error(409, "RoleDefinitionHasAssignments", "There are existing role assignments referencing role")
    view = _definition_view(ctx, definition, scope)
    del ctx.state.role_definitions[definition["name"]]
    return _json(view, 200)


# --------------------------------------------------------------------------------------------------------------
# Handlers: role assignments
# --------------------------------------------------------------------------------------------------------------

def _location_of(ctx: "Sandbox", scope: Scope) -> str:
    group = _resource_group(ctx, scope) if scope.resource_group else None
    return group.get("location", "global") if group else "global"


def _assignment_view(assignment: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(public(assignment))


def _hex(guid: str) -> str:
    return guid.replace("-", "").lower()


_RA_FILTERS = [
    (re.compile(r"^\s*atScope\(\s*\)\s*$", re.IGNORECASE), "atScope"),
    (re.compile(r"^\s*principalId\s+eq\s+'(?P<id>[^']*)'\s*$", re.IGNORECASE), "principal"),
    (re.compile(r"^\s*assignedTo\(\s*'(?P<id>[^']*)'\s*\)\s*$", re.IGNORECASE), "principal"),
    (re.compile(r"^\s*atScope\(\s*\)\s+and\s+assignedTo\(\s*'(?P<id>[^']*)'\s*\)\s*$", re.IGNORECASE),
     "atScopePrincipal"),
]


def _assignment_filter(text: str | None) -> tuple[bool, str | None]:
    """(at-or-above only, principal id or None) for a role-assignment ``$filter``."""
    if text is None or not text.strip():
        return False, None
    for pattern, kind in _RA_FILTERS:
        match = pattern.match(text)
        if match:
            if kind == "atScope":
                return True, None
            principal = match.group("id")
            return kind == "atScopePrincipal", principal
    raise arm_error(400, "UnsupportedQuery",
                    f"The filter '{text}' is not supported. Supported filters are either 'atScope()' or "
                    f"'principalId eq '{{value}}' or assignedTo('{{value}}')'.")


async def _list_role_assignments(ctx: "Sandbox", request: Request, scope: Scope, path: str) -> Response:
    _only_get(request)
    _require_api_version(ctx, request, "authorization", "roleAssignments", _location_of(ctx, scope))
    caller = _caller(ctx, request)
    _prepare_scope(ctx, scope)
    raw_filter = _query(request, "$filter")
    at_or_above_only, principal = _assignment_filter(raw_filter)
    if scope.kind == "root" and raw_filter is None:
        raise arm_error(400, "UnsupportedQuery",
                        "The role assignments query at '/' scope is not allowed without any filters.")
    _authorize(ctx, caller, ACTION_RA_READ, scope, _request_scope_text(path))
    _require_scope_exists(ctx, scope)
    chain = set(scope_chain(ctx.state, scope))
    result = []
    for assignment in ctx.state.role_assignments.values():
        props = assignment.get("properties") or {}
        if principal is not None and str(props.get("principalId", "")).lower() != principal.lower():
            continue
        key = _scope_key(props.get("scope"))
        if key not in chain:
            if at_or_above_only:
                continue
            parsed = scope_from_text(key)
            if parsed is None or scope.key not in scope_chain(ctx.state, parsed):
                continue
        result.append(_assignment_view(assignment))
    return _json(_page(request, result, _page_size(ctx)))


def _find_by_name(ctx: "Sandbox", name: str) -> dict[str, Any] | None:
    for assignment in ctx.state.role_assignments.values():
        if assignment.get("name", "").lower() == name.lower():
            return assignment
    return None


async def _role_assignment_item(ctx: "Sandbox", request: Request, scope: Scope, name: str,
                                path: str) -> Response:
    method = request.method
    if method not in ("GET", "PUT", "DELETE"):
        raise method_not_allowed("arm", method, "GET, PUT, DELETE")
    _require_api_version(ctx, request, "authorization", "roleAssignments", _location_of(ctx, scope))
    caller = _caller(ctx, request)
    _prepare_scope(ctx, scope)
    action = {"GET": ACTION_RA_READ, "PUT": ACTION_RA_WRITE, "DELETE": ACTION_RA_DELETE}[method]
    _authorize(ctx, caller, action, scope, _request_scope_text(path))
    _require_scope_exists(ctx, scope)
    if not _GUID_RE.match(name):
        raise arm_error(400, "InvalidRoleAssignmentId",
                        f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.")
    key = f"{scope.prefix()}/providers/Microsoft.Authorization/roleAssignments/{name}".lower()
    existing = ctx.state.role_assignments.get(key)
    if method == "GET":
        if existing is None:
            raise arm_error(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")
        return _json(_assignment_view(existing))
    if method == "DELETE":
        if existing is None:
            return Response(status_code=204)
        del ctx.state.role_assignments[key]
        return _json(_assignment_view(existing))
    return await _put_role_assignment(ctx, request, caller, scope, name, key, existing)


_RA_MEMBERS = ("roleDefinitionId", "principalId", "principalType", "description", "condition", "conditionVersion",
               "delegatedManagedIdentityResourceId",
               # read-only members a client may echo back (ignored)
               "scope", "createdOn", "updatedOn", "createdBy", "updatedBy")


def _validate_assignment_body(body: dict[str, Any]) -> dict[str, Any]:
    """The writable role-assignment properties of a PUT body, validated like ARM (400 otherwise)."""
    _check_members(body, ("properties", "id", "name", "type"), "RoleAssignmentCreateParameters", "")
    props = _get_ci(body, "properties")
    if props is None:
        raise _deserialize_error("Required property 'properties' not found in JSON. Path ''.")
    if not isinstance(props, dict):
        raise _deserialize_error(f"Unexpected token {_token(props)} when reading 'RoleAssignmentProperties'. "
                                 f"Path 'properties'.")
    _check_members(props, _RA_MEMBERS, "RoleAssignmentProperties", "properties")
    values = {member: _optional_string(props, member, "properties") for member in _RA_MEMBERS}
    for required in ("roleDefinitionId", "principalId"):
        if values[required] is None:
            raise _deserialize_error(f"Required property '{required}' not found in JSON. Path 'properties'.")
    if not _GUID_RE.match(values["principalId"] or ""):
        raise arm_error(400, "InvalidPrincipalId", "A valid principal ID must be provided for role assignment.")
    if values["principalType"] is not None:
        canonical = PRINCIPAL_TYPES.get(values["principalType"].lower())
        if canonical is None:
            raise _deserialize_error(f"Error converting value \"{values['principalType']}\" to type "
                                     f"'Microsoft.Azure.Management.Authorization.Models.PrincipalType'. "
                                     f"Path 'properties.principalType'.")
        values["principalType"] = canonical
    if values["conditionVersion"] is not None and values["conditionVersion"] != "2.0":
        raise arm_error(400, "InvalidConditionVersion",
                        f"The condition version '{values['conditionVersion']}' is not supported. The supported "
                        f"condition version is '2.0'.")
    if values["condition"] is not None and not values["condition"].strip():
        values["condition"] = None
    if values["condition"] is not None and values["conditionVersion"] is None:
        values["conditionVersion"] = "2.0"
    return values


def _role_guid(ctx: "Sandbox", role_definition_id: str) -> str:
    match = _ROLE_DEFINITION_ID_RE.match(role_definition_id.strip())
    guid = match.group("guid") if match else None
    if match is None or (match.group("scope") and scope_from_text(match.group("scope")) is None):
        raise arm_error(400, "InvalidRoleDefinitionId",
                        f"The role definition ID '{role_definition_id}' is not valid.")
    if not _GUID_RE.match(guid or "") or (guid or "").lower() not in ctx.state.role_definitions:
        raise arm_error(400, "RoleDefinitionDoesNotExist",
                        f"The specified role definition with ID '{_hex(guid or '')}' does not exist.")
    return (guid or "").lower()


def _principal_type_of(ctx: "Sandbox", principal_id: str) -> str | None:
    """The type of a replicated principal ("ServicePrincipal", ...), None when not (yet) visible."""
    resolver = getattr(ctx.directory, "principal_type_of", None)
    if callable(resolver):
        return resolver(principal_id)
    if not ctx.directory.principal_exists(principal_id):
        return None
    return "ServicePrincipal" if ctx.directory.sp_by_id(principal_id) is not None else "User"


def _replicating(ctx: "Sandbox", principal_id: str) -> bool:
    """True for a principal that exists but is still inside the replication lag (ARM cannot see it yet)."""
    raw = getattr(ctx.directory, "raw_sp_by_id", None)
    sp = raw(principal_id) if callable(raw) else None
    return sp is not None and ctx.faults.lagging(sp)


def _check_principal(ctx: "Sandbox", principal_id: str, principal_type: str | None) -> str:
    """Resolve the principal like ARM; returns the type to store.

    ARM looks the principal up in the directory.  A principal still replicating is only accepted when the caller
    states ``principalType`` (ARM then trusts it, as Microsoft documents for freshly created principals).
    """
    found = _principal_type_of(ctx, principal_id)
    if found is not None:
        if principal_type is not None and principal_type != found:
            raise arm_error(400, "UnmatchedPrincipalType",
                            f"The PrincipalId '{_hex(principal_id)}' has type '{found}' , which is different from "
                            f"specified PrinciaplType '{principal_type}'.")
        return found
    if principal_type is not None and _replicating(ctx, principal_id):
        return principal_type
    raise arm_error(400, "PrincipalNotFound",
                    f"Principal {_hex(principal_id)} does not exist in the directory {ctx.state.tenant_id}. "
                    f"Check that you have the correct principal ID. If you are creating this principal and "
                    f"then immediately assigning a role, this error might be related to a replication delay. "
                    f"In this case, set the role assignment principalType property to a value, such as "
                    f"ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype")


async def _put_role_assignment(ctx: "Sandbox", request: Request, caller: Any, scope: Scope, name: str, key: str,
                               existing: dict[str, Any] | None) -> Response:
    values = _validate_assignment_body(await _json_object(request, "RoleAssignmentCreateParameters"))
    role_guid = _role_guid(ctx, values["roleDefinitionId"] or "")
    if not assignable_at(ctx.state, ctx.state.role_definitions[role_guid], scope):
        raise arm_error(400, "RoleDefinitionDoesNotExist",
                        f"The specified role definition with ID '{_hex(role_guid)}' does not exist.")
    principal_id = values["principalId"] or ""
    same_name = existing or _find_by_name(ctx, name)
    if same_name is not None:
        props = same_name["properties"]
        if _scope_key(props.get("scope")) != scope.key or _guid_of(props.get("roleDefinitionId")) != role_guid \
                or str(props.get("principalId", "")).lower() != principal_id.lower():
            raise arm_error(400, "RoleAssignmentUpdateNotPermitted",
                            "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.")
    principal_type = _check_principal(ctx, principal_id, values["principalType"])
    now = _timestamp(ctx)
    if existing is not None:
        props = existing["properties"]
        for member in ("description", "condition", "conditionVersion", "delegatedManagedIdentityResourceId"):
            props[member] = values[member]
        props["updatedOn"] = now
        props["updatedBy"] = caller.object_id
        return _json(_assignment_view(existing), 200)
    for other in ctx.state.role_assignments.values():
        props = other.get("properties") or {}
        if _scope_key(props.get("scope")) == scope.key and _guid_of(props.get("roleDefinitionId")) == role_guid \
                and str(props.get("principalId", "")).lower() == principal_id.lower():
            raise arm_error(409, "RoleAssignmentExists",
                            f"The role assignment already exists. The ID of the existing role assignment is "
                            f"{_hex(other.get('name', ''))}.")
    assignment = _new_assignment(ctx.state, scope, name, role_guid, principal_id, principal_type, now,
                                 created_by=caller.object_id, extra=values)
    assignment["_created"] = ctx.monotonic()
    ctx.state.role_assignments[key] = assignment
    return _json(_assignment_view(assignment), 201)


# --------------------------------------------------------------------------------------------------------------
# Handlers: the caller's permissions, resources of a group
# --------------------------------------------------------------------------------------------------------------

_PERMISSION_KEYS = ("actions", "notActions", "dataActions", "notDataActions")


async def _permissions(ctx: "Sandbox", request: Request, scope: Scope, path: str) -> Response:
    """``Permissions_ListForResourceGroup`` / ``Permissions_ListForResource``: the permission blocks of every role
    the caller holds (in effect) at or above the scope, one per assignment. Any caller may ask about itself."""
    _only_get(request)
    _require_api_version(ctx, request, "authorization", "permissions", _location_of(ctx, scope))
    caller = _caller(ctx, request)
    _prepare_scope(ctx, scope)
    _require_scope_exists(ctx, scope)
    chain = set(scope_chain(ctx.state, scope))
    blocks = []
    for assignment in _effective_assignments(ctx, caller.object_id):
        props = assignment["properties"]
        if _scope_key(props.get("scope")) not in chain:
            continue
        definition = ctx.state.role_definitions.get(_guid_of(props.get("roleDefinitionId"))) or {}
        for permission in (definition.get("properties") or {}).get("permissions") or []:
            blocks.append({key: list(permission.get(key) or []) for key in _PERMISSION_KEYS})
    return _json({"value": blocks})


_RESOURCE_FILTER_CLAUSE = re.compile(r"\s*(?P<field>name|resourceType|location)\s+eq\s+'(?P<value>(?:[^']|'')*)'\s*",
                                     re.IGNORECASE)


def _unsupported_resource_filter(text: str) -> ServiceError:
    # Azure documents more for this operation (ne, other properties, tagName/tagValue, substringof); the sandbox models
    # the equality filters only and says so rather than posing as ARM (README, "knowingly differs").
    return arm_error(400, "InvalidFilterInQueryString",
                     f"The filter '{text}' is not modelled by this sandbox, which supports only 'name eq', "
                     f"'resourceType eq' and 'location eq', joined with 'and' (Azure also documents 'ne', more "
                     f"properties, tagName/tagValue and substringof for this operation).")


def _resource_filter(text: str | None) -> list[tuple[str, str]]:
    """(field, value) equality clauses of a resources ``$filter`` joined by ``and``."""
    return _eq_clauses(text, _RESOURCE_FILTER_CLAUSE, _unsupported_resource_filter)


async def _list_resources(ctx: "Sandbox", request: Request, scope: Scope, path: str) -> Response:
    """``Resources_ListByResourceGroup``: the group's (registered) resources the caller can read."""
    _only_get(request)
    _require_api_version(ctx, request, "resources")
    caller = _caller(ctx, request)
    _prepare_scope(ctx, scope)
    if not has_any_access(ctx, caller.object_id, scope):
        raise _authorization_failed(caller, ACTION_RESOURCES_READ, _request_scope_text(path))
    _require_scope_exists(ctx, scope)
    clauses = _resource_filter(_query(request, "$filter"))
    group = _resource_group(ctx, scope) or {}
    found = []
    for resource in (group.get("_resources") or {}).values():
        item = {"id": resource["id"], "name": resource["name"], "type": resource["type"],
                "location": group.get("location")}
        if not all(str(item[{"resourcetype": "type"}.get(f, f)] or "").lower() == v.lower() for f, v in clauses):
            continue
        parsed = scope_from_text(resource["id"])
        if parsed is not None and is_allowed(ctx, caller.object_id, f"{resource['type']}/read", parsed):
            found.append(item)
    return _json(_page(request, found, _page_size(ctx)))


# --------------------------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------------------------

def _only_get(request: Request) -> None:
    if request.method != "GET":
        raise method_not_allowed("arm", request.method, "GET")


def _authorization_route(segments: list[str]) -> tuple[Scope | None, str, str | None] | None:
    """(scope, "roleAssignments"|"roleDefinitions", name or None) for Microsoft.Authorization paths."""
    low = [s.lower() for s in segments]
    kinds = {"roleassignments": "roleAssignments", "roledefinitions": "roleDefinitions", "permissions": "permissions"}
    if len(low) >= 3 and low[-3:-1] == ["providers", "microsoft.authorization"] and low[-1] in kinds:
        return parse_scope(segments[:-3]), kinds[low[-1]], None
    if len(low) >= 4 and low[-4:-2] == ["providers", "microsoft.authorization"] and low[-2] in kinds:
        return parse_scope(segments[:-4]), kinds[low[-2]], segments[-1]
    return None


async def handle(ctx: "Sandbox", request: Request, path: str) -> Response | None:
    """Serve one ARM request (``None`` when the path is not an ARM route this sandbox knows)."""
    stripped = path.strip("/")
    segments = stripped.split("/") if stripped else []
    if any(not s for s in segments):
        return None
    low = [s.lower() for s in segments]
    if low == ["metadata", "endpoints"]:
        _only_get(request)
        return await _metadata(ctx, request)
    if low == ["tenants"]:
        _only_get(request)
        return await _tenants(ctx, request)
    route = _authorization_route(segments)
    if route is not None:
        scope, kind, name = route
        if scope is None:
            return None
        if kind == "permissions":
            # documented for resource groups and resources only (Permissions_ListForResourceGroup/ListForResource)
            if name is not None or scope.kind not in ("resourceGroup", "resource"):
                return None
            return await _permissions(ctx, request, scope, path)
        if kind == "roleDefinitions":
            return await _role_definitions(ctx, request, scope, name, path)
        if name is None:
            return await _list_role_assignments(ctx, request, scope, path)
        return await _role_assignment_item(ctx, request, scope, name, path)
    if not low or low[0] != "subscriptions":
        return None
    if len(low) == 1:
        _only_get(request)
        return await _list_subscriptions(ctx, request)
    scope = parse_scope(segments[:2])
    assert scope is not None
    if len(low) == 2:
        _only_get(request)
        return await _get_subscription(ctx, request, scope, path)
    if low[2] != "resourcegroups":
        return None
    if len(low) == 3:
        _only_get(request)
        return await _list_resource_groups(ctx, request, scope, path)
    if len(low) == 4:
        rg_scope = parse_scope(segments)
        assert rg_scope is not None
        return await _resource_group_item(ctx, request, rg_scope, path)
    if len(low) == 5 and low[4] == "resources":
        rg_scope = parse_scope(segments[:4])
        assert rg_scope is not None
        return await _list_resources(ctx, request, rg_scope, path)
    return None


# --------------------------------------------------------------------------------------------------------------
# Control API extension: /_sandbox/arm/* (seeding what ARM has no public API for in this sandbox)
# --------------------------------------------------------------------------------------------------------------

def _control_fields(body: Any, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise control_error(400, "The body must be a JSON object.")
    unknown = set(body) - set(required) - set(optional)
    if unknown:
        raise control_error(400, f"Unknown keys: {', '.join(sorted(unknown))}.")
    missing = [key for key in required if not body.get(key)]
    if missing:
        raise control_error(400, f"Missing keys: {', '.join(missing)}.")
    for key, value in body.items():
        if value is not None and not isinstance(value, str):
            raise control_error(400, f"{key} must be a string.")
    return body


def _control_subscription(ctx: "Sandbox", body: dict[str, Any]) -> dict[str, Any]:
    fields = _control_fields(body, ("subscriptionId",), ("displayName", "managementGroup"))
    return public(add_subscription(ctx.state, fields["subscriptionId"], fields.get("displayName") or
                                   "Sandbox Subscription", management_group=fields.get("managementGroup")))


def _control_management_group(ctx: "Sandbox", body: dict[str, Any]) -> dict[str, Any]:
    fields = _control_fields(body, ("name",), ("displayName", "parent"))
    mg = add_management_group(ctx.state, fields["name"], fields.get("displayName"), fields.get("parent"))
    return {**public(mg), "subscriptions": list(mg.get("_subscriptions", []))}


def _control_resource(ctx: "Sandbox", body: dict[str, Any]) -> dict[str, Any]:
    return add_resource(ctx.state, _control_fields(body, ("id",), ())["id"])


def _control_role_assignment(ctx: "Sandbox", body: dict[str, Any]) -> dict[str, Any]:
    fields = _control_fields(body, ("scope", "role", "principalId"), ("principalType", "name"))
    if fields.get("name") and not _GUID_RE.match(fields["name"]):
        raise control_error(400, "name must be a GUID.")
    principal_type = PRINCIPAL_TYPES.get((fields.get("principalType") or "ServicePrincipal").lower())
    if principal_type is None:
        raise control_error(400, f"principalType must be one of {', '.join(PRINCIPAL_TYPES.values())}.")
    return public(assign_role(ctx.state, fields["scope"], fields["role"], fields["principalId"], principal_type,
                              name=fields.get("name"), created_on=_timestamp(ctx)))


_CONTROL_ROUTES = {
    "/_sandbox/arm/subscriptions": _control_subscription,
    "/_sandbox/arm/managementgroups": _control_management_group,
    "/_sandbox/arm/resources": _control_resource,
    "/_sandbox/arm/roleassignments": _control_role_assignment,
}


async def control(ctx: "Sandbox", request: Request, path: str) -> Response | None:
    """``POST /_sandbox/arm/{subscriptions|managementGroups|resources|roleAssignments}`` (see README)."""
    endpoint = _CONTROL_ROUTES.get(path.rstrip("/").lower())
    if endpoint is None:
        return None
    if request.method != "POST":
        raise method_not_allowed("control", request.method, "POST")
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        raise control_error(400, "The request body is not valid JSON.") from None
    try:
        return JSONResponse(endpoint(ctx, body), status_code=201)
    except ValueError as exc:
        raise control_error(400, str(exc)) from None
