"""ARM: the caller's permissions (``Permissions_ListForResourceGroup`` / ``Permissions_ListForResource``, computed from
the sandbox's role assignments and definitions) and the resources of a group (``Resources_ListByResourceGroup``),
through HTTP and azure-mgmt-authorization."""
from __future__ import annotations

import uuid

import pytest

from test_arm_helpers import RA_VERSION, RBAC_ADMINISTRATOR, RG_VERSION, arm, error_of  # noqa: F401 - arm is a fixture
from test_arm_sdk import _client

PERMISSIONS = "/providers/Microsoft.Authorization/permissions"
ACR = "/providers/Microsoft.ContainerRegistry/registries/acr1"


def permissions(arm, scope, who=None):
    response = arm.call("GET", f"{scope}{PERMISSIONS}?{RA_VERSION}", who)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"value"}
    for block in body["value"]:
        assert set(block) == {"actions", "notActions", "dataActions", "notDataActions"}
    return body["value"]


def test_permissions_are_the_blocks_of_the_callers_roles_at_or_above_the_scope(arm):
    arm.seed("resources", {"id": arm.rg_scope + ACR})
    # the operator: Owner on the subscription, inherited by the group and the resource
    for scope in (arm.rg_scope, arm.rg_scope + ACR):
        assert permissions(arm, scope) == [{"actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": []}]
    # the restricted operator: Reader on the subscription; plus RBAC Administrator on the registry only
    assert [b["actions"] for b in permissions(arm, arm.rg_scope, arm.restricted_token())] == [["*/read"]]
    state = arm.sb.control("GET", "state").json()
    restricted = next(o["object_id"] for o in state["operators"] if o["client_id"] == arm.sb.restricted.client_id)
    arm.seed("roleAssignments", {"scope": arm.rg_scope + ACR, "role": RBAC_ADMINISTRATOR, "principalId": restricted})
    blocks = permissions(arm, arm.rg_scope + ACR, arm.restricted_token())
    assert sorted(tuple(b["actions"]) for b in blocks) == sorted([
        ("*/read",), ("Microsoft.Authorization/roleAssignments/write", "Microsoft.Authorization/roleAssignments/delete",
                      "*/read", "Microsoft.Support/*")])
    assert [b["actions"] for b in permissions(arm, arm.rg_scope, arm.restricted_token())] == [["*/read"]]
    # a principal without any role: an empty list, not an error (every caller may ask about itself)
    nobody = arm.principal()
    assert permissions(arm, arm.rg_scope, nobody) == []
    # Contributor's notActions are returned as they are
    arm.grant(nobody, "b24988ac-6180-42a0-ab88-20f7382dd24c", arm.rg_scope)
    (block,) = permissions(arm, arm.rg_scope, nobody)
    assert block["actions"] == ["*"] and "Microsoft.Authorization/*/Write" in block["notActions"]


def test_permissions_of_missing_scopes_and_where_they_are_not_documented(arm):
    ghost = str(uuid.uuid4())
    error_of(arm.call("GET", f"/subscriptions/{ghost}/resourceGroups/rg{PERMISSIONS}?{RA_VERSION}"), 404,
             "SubscriptionNotFound")
    error_of(arm.call("GET", f"{arm.sub_scope}/resourceGroups/rg-missing{PERMISSIONS}?{RA_VERSION}"), 404,
             "ResourceGroupNotFound")
    error_of(arm.call("GET", f"{arm.rg_scope}{ACR}{PERMISSIONS}?{RA_VERSION}"), 404, "ResourceNotFound")
    error_of(arm.call("GET", f"{arm.rg_scope}{PERMISSIONS}"), 400, "MissingApiVersionParameter")
    error_of(arm.call("GET", f"{arm.rg_scope}{PERMISSIONS}?api-version=1999-01-01"), 400, "NoRegisteredProviderFound")
    error_of(arm.call("GET", f"{arm.rg_scope}{PERMISSIONS}?{RA_VERSION}", "not-a-token"), 401,
             "InvalidAuthenticationToken")
    # Microsoft documents the list for resource groups and resources only
    error_of(arm.call("GET", f"{arm.sub_scope}{PERMISSIONS}?{RA_VERSION}"), 404, "InvalidResourceType")
    error_of(arm.call("GET", f"/providers/Microsoft.Management/managementGroups/mg{PERMISSIONS}?{RA_VERSION}"), 404,
             "InvalidResourceType")
    assert arm.call("DELETE", f"{arm.rg_scope}{PERMISSIONS}?{RA_VERSION}").status_code == 405


@pytest.mark.asyncio
async def test_sdk_permissions_for_resource_group_and_resource(arm):
    arm.seed("resources", {"id": arm.rg_scope + ACR})
    async with _client(arm) as client:
        blocks = [p async for p in client.permissions.list_for_resource_group("rg-sandbox")]
        assert [(b.actions, b.not_actions) for b in blocks] == [(["*"], [])]
        blocks = [p async for p in client.permissions.list_for_resource(
            "rg-sandbox", "Microsoft.ContainerRegistry", "", "registries", "acr1")]
        assert [b.actions for b in blocks] == [["*"]]


def test_resources_of_a_group_with_the_documented_filters(arm):
    for resource in (ACR, "/providers/Microsoft.Storage/storageAccounts/acr1",
                     "/providers/Microsoft.Storage/storageAccounts/st1"):
        arm.seed("resources", {"id": arm.rg_scope + resource})
    url = f"{arm.rg_scope}/resources?{RG_VERSION}"

    def listed(query="", who=None):
        response = arm.call("GET", url + query, who)
        assert response.status_code == 200, response.text
        return sorted((r["type"], r["name"]) for r in response.json()["value"])

    everything = listed()
    assert everything == [("Microsoft.ContainerRegistry/registries", "acr1"), ("Microsoft.Storage/storageAccounts", "acr1"),
                          ("Microsoft.Storage/storageAccounts", "st1")]
    item = arm.call("GET", url).json()["value"][0]
    assert set(item) == {"id", "name", "type", "location"} and item["location"] == "westeurope"
    assert listed("&$filter=name eq 'ACR1'") == everything[:2]
    assert listed("&$filter=resourceType eq 'microsoft.storage/storageaccounts' and name eq 'acr1'") == [
        ("Microsoft.Storage/storageAccounts", "acr1")]
    assert listed("&$filter=location eq 'westeurope'") == everything
    assert listed("", arm.restricted_token()) == everything  # Reader reads them all
    error_of(arm.call("GET", url, arm.principal()), 403, "AuthorizationFailed")  # no role at all
    error_of(arm.call("GET", url + "&$filter=substringof('a', name) or name eq 'x'"), 400, "InvalidFilterInQueryString")
    error_of(arm.call("GET", f"{arm.sub_scope}/resourceGroups/rg-missing/resources?{RG_VERSION}"), 404,
             "ResourceGroupNotFound")
    error_of(arm.call("GET", f"/subscriptions/{uuid.uuid4()}/resourceGroups/rg/resources?{RG_VERSION}"), 404,
             "SubscriptionNotFound")
