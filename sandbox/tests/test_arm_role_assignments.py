"""ARM role definitions and role assignments over HTTPS: shapes, validation, errors, RBAC, scopes, filters."""
from __future__ import annotations

import uuid

import pytest

from test_arm_helpers import (  # noqa: F401 - arm is a fixture
    ACR_PUSH, CONTRIBUTOR, KEY_VAULT_SECRETS_USER, OWNER, RA_VERSION, RBAC_ADMINISTRATOR, RD_VERSION, READER,
    STORAGE_BLOB_DATA_CONTRIBUTOR, STORAGE_BLOB_DATA_READER, USER_ACCESS_ADMINISTRATOR, arm, error_of)

RA = "providers/Microsoft.Authorization/roleAssignments"
RD = "providers/Microsoft.Authorization/roleDefinitions"
BUILT_IN = {
    "Reader": READER, "Contributor": CONTRIBUTOR, "Owner": OWNER,
    "User Access Administrator": USER_ACCESS_ADMINISTRATOR,
    "Role Based Access Control Administrator": RBAC_ADMINISTRATOR, "Storage Blob Data Reader": STORAGE_BLOB_DATA_READER,
    "Storage Blob Data Contributor": STORAGE_BLOB_DATA_CONTRIBUTOR, "Key Vault Secrets User": KEY_VAULT_SECRETS_USER,
    "AcrPush": ACR_PUSH,
}


def _list(arm, scope, query="", who=None):
    response = arm.call("GET", f"{scope}/{RA}?{RA_VERSION}{query}", who)
    assert response.status_code == 200, response.text
    return response.json()["value"]


# --- role definitions ---------------------------------------------------------------------------------------

def test_built_in_role_definitions_are_real(arm):
    response = arm.call("GET", f"{arm.sub_scope}/{RD}?{RD_VERSION}&$filter=type eq 'BuiltInRole'")
    assert response.status_code == 200, response.text
    by_name = {d["properties"]["roleName"]: d for d in response.json()["value"]}
    for name, guid in BUILT_IN.items():
        definition = by_name[name]
        assert definition["name"] == guid
        assert definition["id"] == f"{arm.sub_scope}/{RD}/{guid}"
        assert definition["type"] == "Microsoft.Authorization/roleDefinitions"
        assert definition["properties"]["type"] == "BuiltInRole"
        assert definition["properties"]["assignableScopes"] == ["/"]
    assert by_name["Reader"]["properties"]["permissions"][0]["actions"] == ["*/read"]
    contributor = by_name["Contributor"]["properties"]["permissions"][0]
    assert contributor["actions"] == ["*"] and "Microsoft.Authorization/*/Write" in contributor["notActions"]
    assert by_name["Key Vault Secrets User"]["properties"]["permissions"][0]["dataActions"] == [
        "Microsoft.KeyVault/vaults/secrets/getSecret/action", "Microsoft.KeyVault/vaults/secrets/readMetadata/action"]


def test_role_definition_filters_and_lookup(arm):
    response = arm.call("GET", f"{arm.rg_scope}/{RD}?{RD_VERSION}&$filter=roleName eq 'reader'")
    (reader,) = response.json()["value"]
    assert reader["name"] == READER and reader["id"] == f"{arm.sub_scope}/{RD}/{READER}"  # subscription-level id
    assert arm.call("GET", f"{arm.sub_scope}/{RD}?{RD_VERSION}&$filter=type eq 'CustomRole'").json()["value"] == []
    assert arm.call("GET", f"{arm.sub_scope}/{RD}?{RD_VERSION}&$filter=roleName eq 'Nope'").json()["value"] == []
    error_of(arm.call("GET", f"{arm.sub_scope}/{RD}?{RD_VERSION}&$filter=description eq 'x'"), 400, "UnsupportedQuery")
    got = arm.call("GET", f"{arm.sub_scope}/{RD}/{OWNER}?{RD_VERSION}")
    assert got.status_code == 200 and got.json()["properties"]["roleName"] == "Owner"
    tenant_level = arm.call("GET", f"/{RD}/{OWNER}?{RD_VERSION}")
    assert tenant_level.status_code == 200 and tenant_level.json()["id"] == f"/{RD}/{OWNER}"
    error_of(arm.call("GET", f"{arm.sub_scope}/{RD}/{uuid.uuid4()}?{RD_VERSION}"), 404, "RoleDefinitionDoesNotExist")


def test_role_definitions_need_read_access(arm):
    nobody = arm.principal()
    error_of(arm.call("GET", f"{arm.sub_scope}/{RD}?{RD_VERSION}", nobody), 403, "AuthorizationFailed")
    assert arm.call("GET", f"/{RD}/{READER}?{RD_VERSION}", nobody).status_code == 200  # tenant level: anyone


# --- create / read / delete ---------------------------------------------------------------------------------

def test_create_get_delete_role_assignment(arm):
    member = arm.principal()
    name = str(uuid.uuid4())
    path = arm.assignment_path(arm.rg_scope, name)
    created = arm.call("PUT", path, json={"properties": {"roleDefinitionId": arm.role_id(READER),
                                                         "principalId": member.sp_id, "description": "ci"}})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"] == f"{arm.rg_scope}/{RA}/{name}" and body["name"] == name
    assert body["type"] == "Microsoft.Authorization/roleAssignments"
    props = body["properties"]
    assert props["scope"] == arm.rg_scope and props["principalId"] == member.sp_id
    assert props["principalType"] == "ServicePrincipal"  # resolved from the directory
    assert props["roleDefinitionId"] == f"{arm.sub_scope}/{RD}/{READER}"
    assert props["description"] == "ci" and props["condition"] is None and props["conditionVersion"] is None
    assert props["createdOn"] and props["createdBy"]
    # the roleDefinitionId is string-identical to the id of a definition listed at the subscription (az relies on it)
    definitions = arm.call("GET", f"{arm.sub_scope}/{RD}?{RD_VERSION}").json()["value"]
    assert props["roleDefinitionId"] in [d["id"] for d in definitions]
    assert arm.call("GET", path).json() == body
    by_id = arm.call("GET", f"{body['id']}?{RA_VERSION}")
    assert by_id.status_code == 200 and by_id.json()["id"] == body["id"]
    same = arm.call("PUT", path, json={"properties": {"roleDefinitionId": f"/{RD}/{READER}",
                                                      "principalId": member.sp_id, "description": "changed"}})
    assert same.status_code == 200 and same.json()["properties"]["description"] == "changed"
    deleted = arm.call("DELETE", path)
    assert deleted.status_code == 200 and deleted.json()["id"] == body["id"]
    assert arm.call("DELETE", path).status_code == 204
    assert name in error_of(arm.call("GET", path), 404, "RoleAssignmentNotFound")


def test_scope_is_returned_as_requested(arm):
    member = arm.principal()
    scope = f"/subscriptions/{arm.sub}/resourcegroups/RG-SANDBOX"
    response = arm.assign(member, READER, scope)
    assert response.status_code == 201, response.text
    assert response.json()["properties"]["scope"].lower() == scope.lower()
    assert response.json()["id"].lower().startswith(scope.lower() + "/providers/")


def test_duplicate_assignment_conflicts_with_existing_id(arm):
    member = arm.principal()
    first = arm.grant(member, READER, arm.rg_scope)
    message = error_of(arm.assign(member, READER, arm.rg_scope), 409, "RoleAssignmentExists")
    assert message.startswith("The role assignment already exists.")
    assert first["name"].replace("-", "") in message


def test_same_name_cannot_change_principal_role_or_scope(arm):
    member, other = arm.principal(), arm.principal()
    name = arm.grant(member, READER, arm.rg_scope)["name"]
    for who, role, scope in ((other, READER, arm.rg_scope), (member, CONTRIBUTOR, arm.rg_scope),
                             (member, READER, arm.sub_scope)):
        error_of(arm.assign(who, role, scope, name=name), 400, "RoleAssignmentUpdateNotPermitted")


@pytest.mark.parametrize("body, code, fragment", [
    ({"properties": {"principalId": "{sp}"}}, "InvalidRequestContent", "'roleDefinitionId'"),
    ({"properties": {"roleDefinitionId": "{role}"}}, "InvalidRequestContent", "'principalId'"),
    ({}, "InvalidRequestContent", "'properties'"),
    ({"properties": "x"}, "InvalidRequestContent", "properties"),
    ({"properties": {"roleDefinitionId": "{role}", "principalId": "{sp}", "colour": "red"}},
     "InvalidRequestContent", "'colour'"),
    ({"properties": {"roleDefinitionId": "{role}", "principalId": "{sp}"}, "extra": 1},
     "InvalidRequestContent", "'extra'"),
    ({"properties": {"roleDefinitionId": "{role}", "principalId": 42}}, "InvalidRequestContent", "Integer"),
    ({"properties": {"roleDefinitionId": "{role}", "principalId": "{sp}", "principalType": "Robot"}},
     "InvalidRequestContent", "Robot"),
    ({"properties": {"roleDefinitionId": "{role}", "principalId": "{sp}", "condition": "x",
                     "conditionVersion": "1.0"}}, "InvalidConditionVersion", "'1.0'"),
    ({"properties": {"roleDefinitionId": "{role}", "principalId": "not-a-guid"}}, "InvalidPrincipalId", "principal"),
    ({"properties": {"roleDefinitionId": "Reader", "principalId": "{sp}"}}, "InvalidRoleDefinitionId", "'Reader'"),
])
def test_body_validation(arm, body, code, fragment):
    member = arm.principal()

    def fill(value):
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, str):
            return value.replace("{sp}", member.sp_id).replace("{role}", arm.role_id(READER))
        return value

    message = error_of(arm.call("PUT", arm.assignment_path(arm.rg_scope), json=fill(body)), 400, code)
    assert fragment in message


def test_unreadable_json_and_non_guid_name(arm):
    message = error_of(arm.call("PUT", arm.assignment_path(arm.rg_scope), content=b'{"properties": {'), 400,
                       "InvalidRequestContent")
    assert message.startswith("The request content was invalid and could not be deserialized")
    message = error_of(arm.assign(arm.principal(), READER, arm.rg_scope, name="my-assignment"), 400,
                       "InvalidRoleAssignmentId")
    assert "'my-assignment'" in message


def test_unknown_role_and_principal(arm):
    member = arm.principal()
    missing_role = str(uuid.uuid4())
    message = error_of(arm.assign(member, missing_role, arm.rg_scope), 400, "RoleDefinitionDoesNotExist")
    assert missing_role.replace("-", "") in message
    ghost = str(uuid.uuid4())
    message = error_of(arm.assign(ghost, READER, arm.rg_scope, principal_type=None), 400, "PrincipalNotFound")
    assert message.startswith(f"Principal {ghost.replace('-', '')} does not exist in the directory "
                              f"{arm.sb.tenant_id}.")
    error_of(arm.assign(ghost, READER, arm.rg_scope), 400, "PrincipalNotFound")
    message = error_of(arm.assign(member, READER, arm.rg_scope, principal_type="User"), 400, "UnmatchedPrincipalType")
    assert "has type 'ServicePrincipal'" in message


def test_fresh_principal_needs_principal_type_during_replication(arm):
    fresh = arm.principal()
    arm.sb.faults(replication_lag=30)  # the new service principal is now inside the replication window
    error_of(arm.assign(fresh, READER, arm.rg_scope, principal_type=None), 400, "PrincipalNotFound")
    created = arm.assign(fresh, READER, arm.rg_scope, principal_type="ServicePrincipal")
    assert created.status_code == 201, created.text
    assert created.json()["properties"]["principalType"] == "ServicePrincipal"


# --- authorisation ------------------------------------------------------------------------------------------

def test_readers_cannot_write_or_delete_assignments(arm):
    target = arm.principal()
    path = arm.assignment_path(arm.rg_scope)
    body = {"properties": {"roleDefinitionId": arm.role_id(READER), "principalId": target.sp_id}}
    message = error_of(arm.call("PUT", path, arm.restricted_token(), json=body), 403, "AuthorizationFailed")
    assert "'Microsoft.Authorization/roleAssignments/write'" in message
    assert f"over scope '{path.split('?')[0]}'" in message
    existing = arm.grant(target, READER, arm.rg_scope)
    error_of(arm.call("DELETE", f"{existing['id']}?{RA_VERSION}", arm.restricted_token()), 403,
             "AuthorizationFailed")
    assert arm.call("GET", f"{existing['id']}?{RA_VERSION}", arm.restricted_token()).status_code == 200


def test_rbac_administrator_assigns_only_within_its_scope(arm):
    admin, target = arm.principal(), arm.principal()
    arm.grant(admin, RBAC_ADMINISTRATOR, arm.rg_scope)
    created = arm.assign(target, STORAGE_BLOB_DATA_READER, arm.rg_scope, who=admin)
    assert created.status_code == 201, created.text
    assert created.json()["properties"]["createdBy"] == admin.sp_id
    error_of(arm.assign(target, READER, arm.sub_scope, who=admin), 403, "AuthorizationFailed")
    assert arm.call("DELETE", f"{created.json()['id']}?{RA_VERSION}", admin).status_code == 200


def test_user_access_administrator_can_assign(arm):
    admin, target = arm.principal(), arm.principal()
    arm.grant(admin, USER_ACCESS_ADMINISTRATOR, arm.sub_scope)
    assert arm.assign(target, CONTRIBUTOR, arm.sub_scope, who=admin).status_code == 201


def test_principal_without_roles_cannot_list(arm):
    nobody = arm.principal()
    error_of(arm.call("GET", f"{arm.sub_scope}/{RA}?{RA_VERSION}", nobody), 403, "AuthorizationFailed")


# --- scopes -------------------------------------------------------------------------------------------------

def test_scope_must_exist(arm):
    member = arm.principal()
    missing_rg = f"{arm.sub_scope}/resourceGroups/rg-missing"
    assert "'rg-missing'" in error_of(arm.assign(member, READER, missing_rg), 404, "ResourceGroupNotFound")
    other_sub = f"/subscriptions/{uuid.uuid4()}"
    error_of(arm.assign(member, READER, other_sub), 404, "SubscriptionNotFound")
    error_of(arm.call("GET", f"{missing_rg}/{RA}?{RA_VERSION}"), 404, "ResourceGroupNotFound")
    resource = f"{arm.rg_scope}/providers/Microsoft.Storage/storageAccounts/nosuchaccount"
    error_of(arm.assign(member, STORAGE_BLOB_DATA_READER, resource), 404, "ResourceNotFound")


def test_resource_scope(arm):
    member = arm.principal()
    account = f"{arm.rg_scope}/providers/Microsoft.Storage/storageAccounts/sandboxdata"
    arm.seed("resources", {"id": account})
    created = arm.assign(member, STORAGE_BLOB_DATA_CONTRIBUTOR, account)
    assert created.status_code == 201, created.text
    assert created.json()["properties"]["scope"] == account
    assert created.json()["properties"]["roleDefinitionId"] == f"{arm.sub_scope}/{RD}/{STORAGE_BLOB_DATA_CONTRIBUTOR}"
    assert [a["id"] for a in _list(arm, account, "&$filter=atScope()")].count(created.json()["id"]) == 1


def test_management_group_scope(arm):
    tenant_root = arm.sb.tenant_id
    arm.seed("managementGroups", {"name": tenant_root, "displayName": "Tenant Root Group"})
    arm.seed("managementGroups", {"name": "mg-platform", "parent": tenant_root})
    arm.seed("subscriptions", {"subscriptionId": arm.sub, "managementGroup": "mg-platform"})
    mg_scope = "/providers/Microsoft.Management/managementGroups/mg-platform"
    member = arm.principal()
    # the operator is Owner of the subscription only: management groups above it are out of reach
    error_of(arm.assign(member, READER, mg_scope), 403, "AuthorizationFailed")
    operator_sp = arm.call("GET", f"{arm.sub_scope}/{RA}?{RA_VERSION}&$filter=atScope()").json()["value"]
    owner_sp = next(a["properties"]["principalId"] for a in operator_sp if a["name"] and
                    a["properties"]["roleDefinitionId"].endswith(OWNER))
    arm.seed("roleAssignments", {"scope": f"/providers/Microsoft.Management/managementGroups/{tenant_root}",
                                 "role": "Owner", "principalId": owner_sp})
    created = arm.assign(member, READER, mg_scope)
    assert created.status_code == 201, created.text
    assert created.json()["properties"]["roleDefinitionId"] == f"/{RD}/{READER}"  # tenant-level outside subs
    # a management group that does not exist is outside the hierarchy: only root-scope ("/") access reaches it
    unknown = "/providers/Microsoft.Management/managementGroups/mg-none"
    assert "or the scope is invalid" in error_of(arm.assign(member, READER, unknown), 403, "AuthorizationFailed")
    arm.seed("roleAssignments", {"scope": "/", "role": "User Access Administrator", "principalId": owner_sp})
    assert "'mg-none'" in error_of(arm.assign(member, READER, unknown), 404, "ManagementGroupNotFound")
    # inherited: the management-group assignment shows at the subscription (above) and grants access there
    assert created.json()["id"] in [a["id"] for a in _list(arm, arm.sub_scope, "&$filter=atScope()")]
    assert arm.call("GET", f"{arm.rg_scope}?api-version=2021-04-01", member).status_code == 200


# --- list filters and paging --------------------------------------------------------------------------------

def test_list_filters(arm):
    member = arm.principal()
    account = f"{arm.rg_scope}/providers/Microsoft.Storage/storageAccounts/filtered"
    arm.seed("resources", {"id": account})
    at_sub = arm.grant(member, READER, arm.sub_scope)["id"]
    at_rg = arm.grant(member, CONTRIBUTOR, arm.rg_scope)["id"]
    at_res = arm.grant(member, STORAGE_BLOB_DATA_READER, account)["id"]
    mine = {at_sub, at_rg, at_res}

    everything = {a["id"] for a in _list(arm, arm.rg_scope)}  # no filter: at, above and below
    assert mine <= everything
    at_or_above = {a["id"] for a in _list(arm, arm.rg_scope, "&$filter=atScope()")}
    assert {at_sub, at_rg} <= at_or_above and at_res not in at_or_above
    for query in (f"&$filter=principalId eq '{member.sp_id}'", f"&$filter=assignedTo('{member.sp_id}')"):
        assert {a["id"] for a in _list(arm, arm.rg_scope, query)} == mine  # at, above and below, only theirs
    scoped = {a["id"] for a in _list(arm, arm.rg_scope, f"&$filter=atScope() and assignedTo('{member.sp_id}')")}
    assert scoped == {at_sub, at_rg}
    assert {a["id"] for a in _list(arm, account, "&$filter=atScope()")} >= {at_sub, at_rg, at_res}
    message = error_of(arm.call("GET", f"{arm.rg_scope}/{RA}?{RA_VERSION}&$filter=atScope() and principalId eq "
                                       f"'{member.sp_id}'"), 400, "UnsupportedQuery")
    assert "Supported filters are either 'atScope()'" in message
    error_of(arm.call("GET", f"/{RA}?{RA_VERSION}"), 400, "UnsupportedQuery")  # root scope needs a filter


def test_list_paging_with_next_link(arm):
    arm.sb.control("POST", "config", json={"arm_page_size": 2})
    try:
        members = [arm.principal() for _ in range(3)]
        expected = {arm.grant(m, READER, arm.rg_scope)["id"] for m in members}
        first = arm.call("GET", f"{arm.rg_scope}/{RA}?{RA_VERSION}")
        page = first.json()
        assert len(page["value"]) == 2 and page["nextLink"].startswith(arm.sb.url)
        seen = [a["id"] for a in page["value"]]
        while "nextLink" in page:
            response = arm.call("GET", page["nextLink"])
            assert response.status_code == 200, response.text
            page = response.json()
            seen += [a["id"] for a in page["value"]]
        assert len(seen) == len(set(seen)) and expected <= set(seen)
    finally:
        arm.sb.control("POST", "config", json={"arm_page_size": 100})
