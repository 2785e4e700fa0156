"""Full resource shapes: applications and service principals carry every documented property of their v1.0 / beta
resource type (unset ones null or empty) in every way Graph returns them (create, get, list, upsert, getByIds,
directoryObjects, deletedItems), and the "Returned only on $select" properties only when selected.

The expected property lists are written out here from Microsoft's published metadata (msgraph-metadata
``schemas/type-mappings`` and the v1.0 CSDL) and the resource pages, independently of the sandbox's schema, so a
drift on either side fails.
"""
from __future__ import annotations

import pytest

from test_graph_helpers import graph_env, new_app, run  # noqa: F401

# application (learn.microsoft.com/graph/api/resources/application), without the Stream property `logo`
APP_V1 = {
    "id", "deletedDateTime", "addIns", "api", "appId", "applicationTemplateId", "appRoles", "certification",
    "createdByAppId", "createdDateTime", "defaultRedirectUri", "description", "disabledByMicrosoftStatus",
    "displayName", "groupMembershipClaims", "identifierUris", "info", "isDeviceOnlyAuthSupported", "isDisabled",
    "isFallbackPublicClient", "keyCredentials", "nativeAuthenticationApisEnabled", "notes",
    "oauth2RequirePostResponse", "optionalClaims", "parentalControlSettings", "passwordCredentials", "publicClient",
    "publisherDomain", "requestSignatureVerification", "requiredResourceAccess", "samlMetadataUrl",
    "serviceManagementReference", "servicePrincipalLockConfiguration", "signInAudience", "spa", "tags",
    "tokenEncryptionKeyId", "uniqueName", "verifiedPublisher", "web",
}
APP_BETA = APP_V1 | {"signInAudienceRestrictions", "windows"}
APP_SELECT_ONLY = {"v1.0": {"authenticationBehaviors", "managerApplications"},
                   "beta": {"authenticationBehaviors", "managerApplications", "onPremisesPublishing"}}
# servicePrincipal (learn.microsoft.com/graph/api/resources/serviceprincipal)
SP_V1 = {
    "id", "deletedDateTime", "accountEnabled", "addIns", "alternativeNames", "appDescription", "appDisplayName",
    "appId", "applicationTemplateId", "appOwnerOrganizationId", "appRoleAssignmentRequired", "appRoles",
    "createdByAppId", "description", "disabledByMicrosoftStatus", "displayName", "homepage", "info", "isDisabled",
    "keyCredentials", "loginUrl", "logoutUrl", "notes", "notificationEmailAddresses", "oauth2PermissionScopes",
    "passwordCredentials", "preferredSingleSignOnMode", "preferredTokenSigningKeyThumbprint", "replyUrls",
    "resourceSpecificApplicationPermissions", "samlSingleSignOnSettings", "servicePrincipalNames",
    "servicePrincipalType", "signInAudience", "tags", "tokenEncryptionKeyId", "verifiedPublisher",
}
SP_BETA = (SP_V1 - {"oauth2PermissionScopes", "resourceSpecificApplicationPermissions"}) | {
    "errorUrl", "preferredTokenSigningKeyEndDateTime", "publishedPermissionScopes", "publisherName",
    "samlMetadataUrl"}
SP_SELECT_ONLY = {"v1.0": {"customSecurityAttributes"},
                  "beta": {"customSecurityAttributes", "passwordSingleSignOnSettings"}}
SHAPES = {"v1.0": (APP_V1, SP_V1), "beta": (APP_BETA, SP_BETA)}


def _props(body: dict) -> set[str]:
    return {key for key in body if not key.startswith("@")}


@pytest.mark.parametrize("version", ["v1.0", "beta"])
def test_every_way_an_application_is_returned_carries_the_documented_properties(graph_env, version):
    app_shape, _ = SHAPES[version]
    client = graph_env.http()
    created = client.post(f"/{version}/applications", json={"displayName": "shape app"})
    assert created.status_code == 201 and _props(created.json()) == app_shape, \
        sorted(_props(created.json()) ^ app_shape)
    app = created.json()
    upserted = client.patch(f"/{version}/applications(uniqueName='shape-upsert')", json={"displayName": "upserted"},
                            headers={"Prefer": "create-if-missing"})
    assert upserted.status_code == 201 and _props(upserted.json()) == app_shape
    got = client.get(f"/{version}/applications/{app['id']}").json()
    listed = client.get(f"/{version}/applications", params={"$filter": f"id eq '{app['id']}'"}).json()["value"]
    by_ids = client.post(f"/{version}/directoryObjects/getByIds", json={"ids": [app["id"]]}).json()["value"]
    as_object = client.get(f"/{version}/directoryObjects/{app['id']}").json()
    for body in (got, listed[0], by_ids[0], as_object):
        assert _props(body) == app_shape, sorted(_props(body) ^ app_shape)
    assert client.delete(f"/{version}/applications/{app['id']}").status_code == 204
    deleted = client.get(f"/{version}/directory/deletedItems/{app['id']}").json()
    assert _props(deleted) == app_shape and deleted["deletedDateTime"]
    # unset properties are null or empty; documented defaults are filled in
    assert got["createdByAppId"] == graph_env.sb.operator.client_id
    assert got["isDisabled"] is None and got["certification"] is None and got["addIns"] == []
    assert got["nativeAuthenticationApisEnabled"] == "none" and got["oauth2RequirePostResponse"] is False
    assert got["verifiedPublisher"] == {"displayName": None, "verifiedPublisherId": None, "addedDateTime": None}
    if version == "beta":
        assert upserted.json()["windows"] is None  # as in the beta upsert example
        assert got["signInAudienceRestrictions"] == {"@odata.type": "#microsoft.graph.unrestrictedAudience",
                                                     "kind": "unrestricted"}


@pytest.mark.parametrize("version", ["v1.0", "beta"])
def test_every_way_a_service_principal_is_returned_carries_the_documented_properties(graph_env, version):
    _, sp_shape = SHAPES[version]
    client = graph_env.http()
    app = new_app(client, version, displayName="shape sp app")
    other = new_app(client, version, displayName="shape sp upsert")
    created = client.post(f"/{version}/servicePrincipals", json={"appId": app["appId"]})
    assert created.status_code == 201 and _props(created.json()) == sp_shape, \
        sorted(_props(created.json()) ^ sp_shape)
    upserted = client.patch(f"/{version}/servicePrincipals(appId='{other['appId']}')", json={},
                            headers={"Prefer": "create-if-missing"})
    assert upserted.status_code == 201 and _props(upserted.json()) == sp_shape
    sp = created.json()
    got = client.get(f"/{version}/servicePrincipals/{sp['id']}").json()
    listed = client.get(f"/{version}/servicePrincipals", params={"$filter": f"appId eq '{app['appId']}'"})
    by_ids = client.post(f"/{version}/directoryObjects/getByIds", json={"ids": [sp["id"]]}).json()["value"]
    for body in (got, listed.json()["value"][0], by_ids[0]):
        assert _props(body) == sp_shape, sorted(_props(body) ^ sp_shape)
    # the seeded first-party and operator principals have the full shape too
    seeded = client.get(f"/{version}/servicePrincipals", params={"$top": "999"}).json()["value"]
    assert all(_props(item) == sp_shape for item in seeded)
    assert got["createdByAppId"] == graph_env.sb.operator.client_id
    assert got["appRoleAssignmentRequired"] is False and got["isDisabled"] is None
    if version == "beta":
        assert got["publisherName"] == "Sandbox" and got["errorUrl"] is None
        assert got["samlMetadataUrl"] is None and got["preferredTokenSigningKeyEndDateTime"] is None
        assert got["publishedPermissionScopes"] == []
        graph = client.get("/beta/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')").json()
        assert graph["publisherName"] == "Microsoft Services"
    else:
        assert got["oauth2PermissionScopes"] == [] and got["resourceSpecificApplicationPermissions"] == []


@pytest.mark.parametrize("version", ["v1.0", "beta"])
def test_select_only_properties_come_back_only_when_selected(graph_env, version):
    client = graph_env.http()
    app = new_app(client, version)
    sp = client.post(f"/{version}/servicePrincipals", json={"appId": app["appId"]}).json()
    for kind, obj, select_only in (("applications", app, APP_SELECT_ONLY[version]),
                                   ("servicePrincipals", sp, SP_SELECT_ONLY[version])):
        assert not select_only & set(obj)
        wanted = ",".join(["id", *sorted(select_only)])
        one = client.get(f"/{version}/{kind}/{obj['id']}", params={"$select": wanted})
        assert one.status_code == 200, one.text
        assert _props(one.json()) == {"id"} | select_only
        assert one.json()["@odata.context"].endswith(f"$metadata#{kind}({wanted})/$entity")
        many = client.get(f"/{version}/{kind}", params={"$select": wanted, "$filter": f"id eq '{obj['id']}'"})
        assert [_props(item) for item in many.json()["value"]] == [{"id"} | select_only]
    selected = client.get(f"/{version}/applications/{app['id']}",
                          params={"$select": "managerApplications,authenticationBehaviors"}).json()
    assert selected["managerApplications"] == [] and selected["authenticationBehaviors"] is None


def test_properties_of_the_other_version_are_unknown(graph_env):
    client = graph_env.http()
    app = new_app(client)
    beta_only = client.get(f"/v1.0/applications/{app['id']}", params={"$select": "windows"})
    assert beta_only.status_code == 400 and "Could not find a property named 'windows'" in beta_only.text
    written = client.patch(f"/beta/applications/{app['id']}",
                           json={"windows": {"packageSid": None, "redirectUris": ["ms-app://s-1-15-2-1/"]}})
    assert written.status_code == 204, written.text
    assert client.get(f"/beta/applications/{app['id']}").json()["windows"]["redirectUris"] == ["ms-app://s-1-15-2-1/"]
    assert "windows" not in client.get(f"/v1.0/applications/{app['id']}").json()
    refused = client.post("/v1.0/applications", json={"displayName": "x", "windows": None})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "Request_BadRequest"


@pytest.mark.parametrize("version", ["v1.0", "beta"])
def test_the_sdk_models_know_every_returned_property(graph_env, version):
    """msgraph-sdk (v1.0 models) parses the bodies without leftovers in ``additional_data`` (a property the SDK does
    not declare would land there); on beta only the beta-only properties may."""
    client = graph_env.http()
    app = new_app(client, version)
    sp = client.post(f"/{version}/servicePrincipals", json={"appId": app["appId"]}).json()

    async def read():
        async with graph_env.sdk(version="v1.0") as sdk:
            got_app = await sdk.applications.by_application_id(app["id"]).get()
            got_sp = await sdk.service_principals.by_service_principal_id(sp["id"]).get()
        return got_app, got_sp

    if version == "beta":  # the v1.0 SDK reading a beta-shaped body through raw JSON parsing
        from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
        from msgraph.generated.models.application import Application
        from msgraph.generated.models.service_principal import ServicePrincipal

        factory = JsonParseNodeFactory()
        parsed_app = factory.get_root_parse_node("application/json", client.get(
            f"/beta/applications/{app['id']}").content).get_object_value(Application)
        parsed_sp = factory.get_root_parse_node("application/json", client.get(
            f"/beta/servicePrincipals/{sp['id']}").content).get_object_value(ServicePrincipal)
        assert _props(parsed_app.additional_data) == APP_BETA - APP_V1
        assert _props(parsed_sp.additional_data) == SP_BETA - SP_V1
        return
    got_app, got_sp = run(read())
    assert _props(got_app.additional_data) == set() and _props(got_sp.additional_data) == set()
    assert got_app.created_by_app_id == graph_env.sb.operator.client_id and got_app.is_disabled is None
    assert [flag.value for flag in got_app.native_authentication_apis_enabled] == ["none"]
    assert got_sp.app_role_assignment_required is False and got_sp.oauth2_permission_scopes == []
