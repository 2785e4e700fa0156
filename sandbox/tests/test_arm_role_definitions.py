"""Custom role definitions in ARM (Role Definitions - Create Or Update / Get / List / Delete, 2022-04-01; Azure docs
"Azure custom roles", "Create or update Azure custom roles using the REST API", "Troubleshoot Azure RBAC"): at
subscription and resource-group scopes, assignable scopes, permissions, tenant-unique role names, the RBAC checks
on every assignable scope, deletion guarded by assignments, and assignments of a deleted or out-of-scope role.
Over HTTP and through azure-mgmt-authorization."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from test_arm_helpers import (OWNER, RD_VERSION, READER, USER_ACCESS_ADMINISTRATOR, arm, error_of)  # noqa: F401
from test_arm_sdk import _client

RD = "providers/Microsoft.Authorization/roleDefinitions"


def body(name: str, scopes: list[str], actions: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    props = {"roleName": name, "description": f"{name} role", "type": "CustomRole",
             "assignableScopes": scopes,
             "permissions": [{"actions": actions if actions is not None else ["Microsoft.Storage/*/read"],
                              "notActions": [], "dataActions": [], "notDataActions": []}]}
    props.update(extra)
    return {"properties": props}


def put(arm, scope: str, guid: str, payload: dict[str, Any], who=None):
    return arm.call("PUT", f"{scope}/{RD}/{guid}?{RD_VERSION}", who, json=payload)


def test_create_get_list_update_delete_at_subscription(arm):
    guid = str(uuid.uuid4())
    created = put(arm, arm.sub_scope, guid, body("Storage Reader Plus", [arm.sub_scope]))
    assert created.status_code == 201, created.text
    role = created.json()
    assert role["id"] == f"{arm.sub_scope}/{RD}/{guid}" and role["name"] == guid
    assert role["type"] == "Microsoft.Authorization/roleDefinitions"
    props = role["properties"]
    assert props["type"] == "CustomRole" and props["assignableScopes"] == [arm.sub_scope]
    assert props["permissions"] == [{"actions": ["Microsoft.Storage/*/read"], "notActions": [], "dataActions": [],
                                     "notDataActions": []}]
    assert props["createdOn"] and props["updatedOn"] and props["createdBy"] == props["updatedBy"]
    got = arm.call("GET", f"{arm.sub_scope}/{RD}/{guid}?{RD_VERSION}")
    assert got.status_code == 200 and got.json() == role
    # applicable at the scope and below: the resource group sees it (with the id ARM writes there)
    in_rg = arm.call("GET", f"{arm.rg_scope}/{RD}/{guid}?{RD_VERSION}").json()
    assert in_rg["id"] == f"{arm.sub_scope}/{RD}/{guid}"
    custom = arm.call("GET", f"{arm.sub_scope}/{RD}?{RD_VERSION}&$filter=type eq 'CustomRole'").json()["value"]
    assert [d["name"] for d in custom] == [guid]
    named = arm.call("GET", f"{arm.rg_scope}/{RD}?{RD_VERSION}&$filter=roleName eq 'storage reader plus'").json()
    assert [d["name"] for d in named["value"]] == [guid]
    # update: PUT again (201 as documented), the name may change
    updated = put(arm, arm.sub_scope, guid, body("Storage Reader Max", [arm.sub_scope],
                                                 ["Microsoft.Storage/*/read", "Microsoft.Compute/*/read"]))
    assert updated.status_code == 201 and updated.json()["properties"]["roleName"] == "Storage Reader Max"
    assert updated.json()["properties"]["createdOn"] == props["createdOn"]
    deleted = arm.call("DELETE", f"{arm.sub_scope}/{RD}/{guid}?{RD_VERSION}")
    assert deleted.status_code == 200 and deleted.json()["properties"]["roleName"] == "Storage Reader Max"
    assert arm.call("DELETE", f"{arm.sub_scope}/{RD}/{guid}?{RD_VERSION}").status_code == 204
    error_of(arm.call("GET", f"{arm.sub_scope}/{RD}/{guid}?{RD_VERSION}"), 404, "RoleDefinitionDoesNotExist")


def test_resource_group_scoped_role(arm):
    guid = str(uuid.uuid4())
    created = put(arm, arm.rg_scope, guid, body("RG Operator", [arm.rg_scope]))
    assert created.status_code == 201, created.text
    assert created.json()["id"] == f"{arm.sub_scope}/{RD}/{guid}"
    # not applicable at the subscription: not listed there unless atScopeAndBelow(), not assignable there
    listed = arm.call("GET", f"{arm.sub_scope}/{RD}?{RD_VERSION}&$filter=type eq 'CustomRole'").json()["value"]
    assert listed == []
    below = arm.call("GET", f"{arm.sub_scope}/{RD}?{RD_VERSION}&$filter=atScopeAndBelow()").json()["value"]
    assert guid in [d["name"] for d in below]
    error_of(arm.call("GET", f"{arm.sub_scope}/{RD}/{guid}?{RD_VERSION}"), 404, "RoleDefinitionDoesNotExist")
    member = arm.principal()
    error_of(arm.assign(member, guid, arm.sub_scope), 400, "RoleDefinitionDoesNotExist")
    assert arm.assign(member, guid, arm.rg_scope).status_code == 201


@pytest.mark.parametrize("scopes,actions,extra,code", [
    (["/"], None, {}, "InvalidAssignableScopes"),
    ([], None, {}, "InvalidAssignableScopes"),
    (["/subscriptions/*"], None, {}, "InvalidAssignableScopes"),
    (["/providers/Microsoft.Management/managementGroups/a", "/providers/Microsoft.Management/managementGroups/b"],
     None, {}, "InvalidAssignableScopes"),
    (None, ["Microsoft.Storage/*/*"], {}, "InvalidActionOrNotAction"),
    (None, ["not an action"], {}, "InvalidActionOrNotAction"),
    (None, None, {"roleName": ""}, "RoleDefinitionNameNullOrEmpty"),
    (None, None, {"type": "BuiltInRole"}, "InvalidRoleDefinitionType"),
    (None, None, {"roleName": "x" * 513}, "InvalidRoleDefinitionName"),
])
def test_invalid_definitions(arm, scopes, actions, extra, code):
    payload = body("Bad Role", scopes if scopes is not None else [arm.sub_scope], actions, **extra)
    error_of(put(arm, arm.sub_scope, str(uuid.uuid4()), payload), 400, code)


def test_data_actions_and_management_groups(arm):
    arm.seed("managementGroups", {"name": "mg-data"})
    mg = "/providers/Microsoft.Management/managementGroups/mg-data"
    payload = body("Data Role", [arm.sub_scope, mg])
    payload["properties"]["permissions"][0]["dataActions"] = ["Microsoft.Storage/storageAccounts/blobServices/"
                                                              "containers/blobs/read"]
    message = error_of(put(arm, arm.sub_scope, str(uuid.uuid4()), payload), 400, "InvalidRoleDefinitionDataActions")
    assert message == "You cannot add data action permissions when you have a management group as an assignable scope"


def test_role_names_are_unique_in_the_tenant(arm):
    assert put(arm, arm.sub_scope, str(uuid.uuid4()), body("Unique Role", [arm.sub_scope])).status_code == 201
    for name in ("unique role", "Reader"):  # case-insensitive, built-in names included
        message = error_of(put(arm, arm.rg_scope, str(uuid.uuid4()), body(name, [arm.rg_scope])), 409,
                           "RoleDefinitionWithSameNameExists")
        assert message == "A role definition cannot be updated with a name that already exists."
    error_of(put(arm, arm.sub_scope, READER, body("My Reader", [arm.sub_scope])), 403,
             "RoleDefinitionUpdateNotPermitted")
    error_of(put(arm, arm.sub_scope, "not-a-guid", body("G", [arm.sub_scope])), 400, "InvalidRoleDefinitionId")
    # the request goes to an assignable scope (documented: the first one) or above one
    error_of(put(arm, arm.rg_scope, str(uuid.uuid4()), body("Elsewhere", [arm.sub_scope])), 400,
             "InvalidRoleDefinitionScope")


def test_rbac_on_every_assignable_scope(arm):
    """roleDefinitions/write at the request scope (AuthorizationFailed) and on every assignable scope
    (LinkedAuthorizationFailed, the documented message); delete needs roleDefinitions/delete."""
    admin = arm.principal()
    arm.grant(admin, USER_ACCESS_ADMINISTRATOR, arm.rg_scope)
    other_rg = f"{arm.sub_scope}/resourceGroups/rg-other"
    arm.create_rg("rg-other")
    guid = str(uuid.uuid4())
    message = error_of(put(arm, arm.sub_scope, guid, body("Admin Role", [arm.sub_scope]), who=admin), 403,
                       "AuthorizationFailed")
    assert "Microsoft.Authorization/roleDefinitions/write" in message
    message = error_of(put(arm, arm.rg_scope, guid, body("Admin Role", [arm.rg_scope, other_rg]), who=admin), 403,
                       "LinkedAuthorizationFailed")
    assert message == (f"The client '{admin.sp_id}' with object id '{admin.sp_id}' has permission to perform action "
                       f"'Microsoft.Authorization/roleDefinitions/write' on scope '{arm.rg_scope}'; however, it does "
                       f"not have permission to perform action 'Microsoft.Authorization/roleDefinitions/write' on "
                       f"the linked scope(s)'{other_rg}' or the linked scope(s)are invalid")
    missing = f"/subscriptions/{uuid.uuid4()}"
    error_of(put(arm, arm.sub_scope, guid, body("Ghost Role", [arm.sub_scope, missing])), 403,
             "LinkedAuthorizationFailed")
    assert put(arm, arm.rg_scope, guid, body("Admin Role", [arm.rg_scope]), who=admin).status_code == 201
    reader = arm.principal()
    arm.grant(reader, READER, arm.sub_scope)
    error_of(arm.call("DELETE", f"{arm.rg_scope}/{RD}/{guid}?{RD_VERSION}", reader), 403, "AuthorizationFailed")
    assert arm.call("DELETE", f"{arm.rg_scope}/{RD}/{guid}?{RD_VERSION}", admin).status_code == 200


def test_assigned_roles_cannot_be_deleted_and_deleted_roles_cannot_be_assigned(arm):
    guid = str(uuid.uuid4())
    assert put(arm, arm.sub_scope, guid, body("Assigned Role", [arm.sub_scope])).status_code == 201
    member = arm.principal()
    assignment = arm.grant(member, guid, arm.rg_scope)
    message = error_of(arm.call("DELETE", f"{arm.sub_scope}/{RD}/{guid}?{RD_VERSION}"), 409,
                       "RoleDefinitionHasAssignments")
    assert message == "There are existing role assignments referencing role"
    assert arm.call("DELETE", f"{assignment['id']}?api-version=2022-04-01").status_code == 200
    assert arm.call("DELETE", f"{arm.sub_scope}/{RD}/{guid}?{RD_VERSION}").status_code == 200
    message = error_of(arm.assign(member, guid, arm.rg_scope), 400, "RoleDefinitionDoesNotExist")
    assert message == f"The specified role definition with ID '{guid.replace('-', '')}' does not exist."
    error_of(arm.call("DELETE", f"{arm.sub_scope}/{RD}/{READER}?{RD_VERSION}"), 403,
             "RoleDefinitionDeleteNotPermitted")


def test_custom_roles_grant_what_they_say(arm):
    """A custom role's actions minus notActions decide what its holder may do (here: grant access)."""
    guid = str(uuid.uuid4())
    payload = body("Assignment Writer", [arm.sub_scope], ["Microsoft.Authorization/*", "*/read"],
                   permissions=[{"actions": ["Microsoft.Authorization/*", "*/read"],
                                 "notActions": ["Microsoft.Authorization/roleAssignments/delete"]}])
    assert put(arm, arm.sub_scope, guid, payload).status_code == 201
    holder = arm.principal()
    arm.grant(holder, guid, arm.sub_scope)
    target = arm.principal()
    granted = arm.assign(target, READER, arm.rg_scope, who=holder)
    assert granted.status_code == 201, granted.text
    error_of(arm.call("DELETE", f"{granted.json()['id']}?api-version=2022-04-01", holder), 403, "AuthorizationFailed")


@pytest.mark.asyncio
async def test_sdk_role_definitions(arm):
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
    from azure.mgmt.authorization.models import Permission, RoleDefinition

    guid = str(uuid.uuid4())
    definition = RoleDefinition(role_name="SDK Custom Role", description="made by the SDK", role_type="CustomRole",
                                permissions=[Permission(actions=["Microsoft.Compute/*/read"], not_actions=[])],
                                assignable_scopes=[arm.sub_scope])
    async with _client(arm) as client:
        created = await client.role_definitions.create_or_update(arm.sub_scope, guid, definition)
        assert created.name == guid and created.role_type == "CustomRole"
        assert created.permissions[0].actions == ["Microsoft.Compute/*/read"]
        got = await client.role_definitions.get(arm.sub_scope, guid)
        assert got.role_name == "SDK Custom Role" and got.assignable_scopes == [arm.sub_scope]
        by_id = await client.role_definitions.get_by_id(got.id)
        assert by_id.name == guid
        listed = [d.name async for d in client.role_definitions.list(arm.sub_scope, filter="type eq 'CustomRole'")]
        assert listed == [guid]
        with pytest.raises(HttpResponseError) as conflict:
            await client.role_definitions.create_or_update(arm.sub_scope, str(uuid.uuid4()), definition)
        assert conflict.value.status_code == 409 and conflict.value.error.code == "RoleDefinitionWithSameNameExists"
        deleted = await client.role_definitions.delete(arm.sub_scope, guid)
        assert deleted is not None and deleted.name == guid
        assert await client.role_definitions.delete(arm.sub_scope, guid) is None  # 204
        with pytest.raises(ResourceNotFoundError):
            await client.role_definitions.get(arm.sub_scope, guid)
