"""The seeded tenant: first-party service principals, two operators, one subscription and one resource group.

IDs are stable (derived with uuid5 from the configured tenant/client ids), so demos are reproducible.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

from .state import State

if TYPE_CHECKING:
    from .config import Config

_NS = uuid.UUID("6f1d3a52-0b7e-4c55-9a42-5d0c1a8e7b31")

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
ARM_APP_ID = "797f4846-ba00-4fd7-ba43-dac1f8f63013"

# Microsoft Graph application permissions (appRole id -> value), as published in the Graph permissions reference.
GRAPH_APP_ROLES = {
    "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9": "Application.ReadWrite.All",
    "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30": "Application.Read.All",
    "18a4783c-866b-4cc7-a460-3d5e5662c884": "Application.ReadWrite.OwnedBy",
    "06b708a9-e830-4db3-a914-8e69da51d44f": "AppRoleAssignment.ReadWrite.All",
    "7ab1d382-f21e-4acd-a863-ba3e13f7da61": "Directory.Read.All",
    "19dbc75e-c2e2-444c-a770-ec69d8559fc7": "Directory.ReadWrite.All",
}
GRAPH_ROLE_IDS = {value: key for key, value in GRAPH_APP_ROLES.items()}

OWNER_ROLE = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
READER_ROLE = "acdd72a7-3385-48ef-bd42-f606fba81ae7"

RESOURCE_GROUP = "rg-sandbox"
LOCATION = "westeurope"


def stable_id(*parts: str) -> str:
    """A reproducible GUID for a seeded object."""
    return str(uuid.uuid5(_NS, "/".join(parts)))


def iso(stamp: float) -> str:
    """Graph/ARM timestamp format (UTC, ``Z``)."""
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_party_sp(state: State, app_id: str, name: str, now: float,
                    app_roles: dict[str, str] | None = None) -> dict[str, Any]:
    sp = {
        "id": stable_id(state.tenant_id, "sp", app_id),
        "appId": app_id,
        "displayName": name,
        "accountEnabled": True,
        "appOwnerOrganizationId": "f8cdef31-a31e-4b4a-93e4-5f571e91255a",  # Microsoft's first-party tenant
        "publisherName": "Microsoft Services",
        "servicePrincipalNames": [app_id],
        "servicePrincipalType": "Application",
        "signInAudience": "AzureADMultipleOrgs",
        "tags": [],
        "appRoles": [
            {"id": role_id, "value": value, "displayName": value, "description": value, "isEnabled": True,
             "allowedMemberTypes": ["Application"], "origin": "Application"}
            for role_id, value in (app_roles or {}).items()
        ],
        "createdDateTime": iso(now),
        "deletedDateTime": None,
        "_type": "servicePrincipal",
    }
    state.sps[sp["id"]] = sp
    return sp


def _operator(state: State, config: "Config", *, client_id: str, secret: str, name: str,
              graph_roles: list[str], arm_role: str, graph_sp: dict[str, Any], now: float) -> None:
    app_object_id = stable_id(state.tenant_id, "app", client_id)
    sp_object_id = stable_id(state.tenant_id, "sp", client_id)
    created = iso(now)
    state.apps[app_object_id] = {
        "id": app_object_id, "appId": client_id, "displayName": name, "description": None,
        "signInAudience": "AzureADMyOrg", "tags": [], "notes": None, "serviceManagementReference": None,
        "uniqueName": None, "identifierUris": [], "publisherDomain": config.tenant_domain,
        "createdDateTime": created, "deletedDateTime": None,
        "passwordCredentials": [{
            "customKeyIdentifier": None, "displayName": "sandbox operator secret",
            "endDateTime": iso(now + 365 * 86400), "hint": secret[:3],
            "keyId": stable_id(client_id, "secret"), "secretText": None, "startDateTime": created,
        }],
        "keyCredentials": [], "requiredResourceAccess": [], "_type": "application", "_owners": [],
    }
    state.sps[sp_object_id] = {
        "id": sp_object_id, "appId": client_id, "displayName": name, "accountEnabled": True,
        "appOwnerOrganizationId": state.tenant_id, "servicePrincipalNames": [client_id],
        "servicePrincipalType": "Application", "signInAudience": "AzureADMyOrg", "tags": [], "appRoles": [],
        "appDisplayName": name, "createdDateTime": created, "deletedDateTime": None, "publisherName": "Sandbox",
        "_type": "servicePrincipal",
    }
    state.operators[client_id] = {"client_id": client_id, "display_name": name, "secret": secret,
                                  "app_object_id": app_object_id, "object_id": sp_object_id}
    for role in graph_roles:
        assignment_id = stable_id(sp_object_id, "appRoleAssignment", role)
        state.app_role_assignments[assignment_id] = {
            "id": assignment_id, "appRoleId": GRAPH_ROLE_IDS[role], "createdDateTime": created,
            "deletedDateTime": None, "principalDisplayName": name, "principalId": sp_object_id,
            "principalType": "ServicePrincipal", "resourceDisplayName": graph_sp["displayName"],
            "resourceId": graph_sp["id"],
        }
    scope = f"/subscriptions/{config.subscription_id}"
    name_guid = stable_id(sp_object_id, "roleAssignment", scope, arm_role)
    ra_id = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name_guid}"
    state.role_assignments[ra_id.lower()] = {
        "id": ra_id, "name": name_guid, "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{arm_role}",
            "principalId": sp_object_id, "principalType": "ServicePrincipal", "scope": scope,
            "condition": None, "conditionVersion": None, "description": "sandbox seed",
            "createdOn": created, "updatedOn": created, "createdBy": None, "updatedBy": None,
            "delegatedManagedIdentityResourceId": None,
        },
    }


def seed_state(config: "Config", now: float) -> State:
    """A fresh ``State`` holding the seeded tenant (not yet the GitLab issuers: gitlab.py adds those)."""
    state = State(tenant_id=config.tenant_id)
    graph_sp = _first_party_sp(state, GRAPH_APP_ID, "Microsoft Graph", now, GRAPH_APP_ROLES)
    _first_party_sp(state, ARM_APP_ID, "Windows Azure Service Management API", now)
    _operator(state, config, client_id=config.operator_client_id, secret=config.operator_secret,
              name="sandbox-operator", graph_roles=["Application.ReadWrite.All", "AppRoleAssignment.ReadWrite.All",
                                                    "Directory.Read.All"],
              arm_role=OWNER_ROLE, graph_sp=graph_sp, now=now)
    _operator(state, config, client_id=config.restricted_client_id, secret=config.restricted_secret,
              name="sandbox-restricted-operator", graph_roles=["Application.Read.All"], arm_role=READER_ROLE,
              graph_sp=graph_sp, now=now)
    sub = config.subscription_id
    state.subscriptions[sub.lower()] = {
        "id": f"/subscriptions/{sub}", "authorizationSource": "RoleBased", "managedByTenants": [],
        "subscriptionId": sub, "tenantId": config.tenant_id, "displayName": "Sandbox Subscription",
        "state": "Enabled",
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01",
                                 "spendingLimit": "Off"},
    }
    rg_id = f"/subscriptions/{sub}/resourceGroups/{RESOURCE_GROUP}"
    state.resource_groups[rg_id.lower()] = {
        "id": rg_id, "name": RESOURCE_GROUP, "type": "Microsoft.Resources/resourceGroups", "location": LOCATION,
        "properties": {"provisioningState": "Succeeded"}, "tags": {},
    }
    return state
