"""Graph servicePrincipals and appRoleAssignments over raw HTTP."""
from __future__ import annotations

import time
import uuid

import pytest

from test_graph_helpers import GRAPH_APP_ID, assert_graph_error, graph_env, new_app  # noqa: F401


def test_create_copies_from_the_application(graph_env):
    client = graph_env.http()
    app = new_app(client, displayName="sp source", tags=["a", "b"], identifierUris=["api://sp-source"])
    response = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]})
    assert response.status_code == 201, response.text
    sp = response.json()
    assert sp["@odata.context"] == f"{graph_env.url}/v1.0/$metadata#servicePrincipals/$entity"
    assert sp["id"] not in (app["id"], app["appId"])
    assert sp["appId"] == app["appId"] and sp["displayName"] == "sp source" and sp["appDisplayName"] == "sp source"
    assert sp["accountEnabled"] is True and sp["servicePrincipalType"] == "Application"
    assert sp["appOwnerOrganizationId"] == graph_env.sb.tenant_id
    assert sp["servicePrincipalNames"] == [app["appId"], "api://sp-source"]
    assert sp["tags"] == ["a", "b"] and sp["signInAudience"] == app["signInAudience"]


def test_create_with_extra_properties(graph_env):
    client = graph_env.http()
    app = new_app(client)
    sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"], "accountEnabled": False,
                                                      "tags": ["WindowsAzureActiveDirectoryIntegratedApp"],
                                                      "notes": "n"}).json()
    assert sp["accountEnabled"] is False and sp["tags"] == ["WindowsAzureActiveDirectoryIntegratedApp"]
    assert sp["notes"] == "n"


def test_second_service_principal_for_an_app_conflicts(graph_env):
    client = graph_env.http()
    app = new_app(client)
    assert client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}).status_code == 201
    response = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"].upper()})
    assert_graph_error(response, 409, "Request_MultipleObjectsWithSameKeyValue",
                       f"The service principal cannot be created, updated, or restored because the service principal "
                       f"name {app['appId'].upper()} is already in use.")


@pytest.mark.parametrize("app_id", [str(uuid.uuid4()), "not-a-guid"])
def test_unknown_application_has_no_backing_object(graph_env, app_id):
    response = graph_env.http().post("/v1.0/servicePrincipals", json={"appId": app_id})
    error = assert_graph_error(response, 400, "Request_BadRequest",
                               f"The appId '{app_id}' of the service principal does not reference a valid "
                               f"application object.")
    assert error["details"] == [{"code": "NoBackingApplicationObject", "message": error["message"],
                                 "target": "appId"}]


def test_new_application_has_no_backing_object_while_replicating(graph_env):
    client = graph_env.http()
    graph_env.set_lag(60)
    app = new_app(client)
    error = assert_graph_error(client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}), 400,
                               "Request_BadRequest", "does not reference a valid application object")
    assert error["details"][0]["code"] == "NoBackingApplicationObject"
    upsert = client.patch(f"/v1.0/servicePrincipals(appId='{app['appId']}')", json={},
                          headers={"Prefer": "create-if-missing"})
    assert_graph_error(upsert, 400, "Request_BadRequest", "does not reference a valid application object")
    graph_env.set_lag(0)  # replicated: the retry succeeds
    assert client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}).status_code == 201


def test_new_service_principal_is_invisible_while_replicating(graph_env):
    client = graph_env.http()
    graph_env.set_lag(1.5)
    app = new_app(client)
    time.sleep(1.6)  # the app has replicated; the service principal made now has not
    sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}).json()
    assert_graph_error(client.get(f"/v1.0/servicePrincipals/{sp['id']}"), 404, "Request_ResourceNotFound")
    assert_graph_error(client.get(f"/v1.0/servicePrincipals(appId='{app['appId']}')"), 404,
                       "Request_ResourceNotFound")
    listed = client.get("/v1.0/servicePrincipals", params={"$filter": f"appId eq '{app['appId']}'"}).json()
    assert listed["value"] == []
    # but the key is taken already: a second create conflicts instead of duplicating
    assert_graph_error(client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}), 409,
                       "Request_MultipleObjectsWithSameKeyValue")
    time.sleep(1.6)
    assert client.get(f"/v1.0/servicePrincipals/{sp['id']}").status_code == 200


@pytest.mark.parametrize("body,code,message", [
    ({}, "Request_BadRequest", "Invalid value specified for property 'appId' of resource 'ServicePrincipal'."),
    ({"appId": None}, "Request_BadRequest", "property 'appId'"),
    ({"appId": 12}, "BadRequest", "Cannot convert the literal '12' to the expected type 'Edm.String'."),
    ({"appId": "x", "colour": 1}, "Request_BadRequest", "Property 'colour' does not exist"),
    ({"appId": "x", "appDisplayName": "y"}, "Request_BadRequest", "Property 'appDisplayName' is read-only"),
    ({"appId": "x", "accountEnabled": "yes"}, "BadRequest", "Edm.Boolean"),
])
def test_create_validation(graph_env, body, code, message):
    assert_graph_error(graph_env.http().post("/v1.0/servicePrincipals", json=body), 400, code, message)


def test_get_by_id_and_app_id(graph_env):
    client = graph_env.http()
    app = new_app(client)
    sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}).json()
    for path in (f"/v1.0/servicePrincipals/{sp['id']}", f"/v1.0/servicePrincipals(appId='{app['appId']}')",
                 f"/beta/SERVICEPRINCIPALS/{sp['id'].upper()}", f"/v1.0/servicePrincipals('{sp['id']}')"):
        response = client.get(path)
        assert response.status_code == 200 and response.json()["id"] == sp["id"], (path, response.text)
    assert_graph_error(client.get(f"/v1.0/servicePrincipals/{uuid.uuid4()}"), 404, "Request_ResourceNotFound")
    assert_graph_error(client.get(f"/v1.0/servicePrincipals(appId='{uuid.uuid4()}')"), 404,
                       "Request_ResourceNotFound")
    assert_graph_error(client.get("/v1.0/servicePrincipals/xyz"), 400, "Request_BadRequest",
                       "Invalid object identifier 'xyz'.")
    selected = client.get(f"/v1.0/servicePrincipals/{sp['id']}", params={"$select": "appId"}).json()
    assert selected == {"@odata.context": f"{graph_env.url}/v1.0/$metadata#servicePrincipals(appId)/$entity",
                        "appId": app["appId"]}


def test_upsert_by_app_id(graph_env):
    client = graph_env.http()
    app = new_app(client, tags=["x"])
    url = f"/v1.0/servicePrincipals(appId='{app['appId']}')"
    assert_graph_error(client.patch(url, json={"notes": "n"}), 404, "Request_ResourceNotFound")
    created = client.patch(url, json={"notes": "n"}, headers={"Prefer": "create-if-missing"})
    assert created.status_code == 201, created.text
    sp = created.json()
    assert sp["appId"] == app["appId"] and sp["notes"] == "n" and sp["tags"] == ["x"]
    assert sp["@odata.context"].endswith("#servicePrincipals/$entity")
    updated = client.patch(url, json={"accountEnabled": False}, headers={"Prefer": "create-if-missing"})
    assert updated.status_code == 204
    assert client.get(url).json()["accountEnabled"] is False
    mismatch = client.patch(f"/v1.0/servicePrincipals(appId='{uuid.uuid4()}')",
                            json={"appId": app["appId"]}, headers={"Prefer": "create-if-missing"})
    assert_graph_error(mismatch, 400, "Request_BadRequest", "does not match")


def test_patch_and_delete(graph_env):
    client = graph_env.http()
    app = new_app(client)
    sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}).json()
    url = f"/v1.0/servicePrincipals/{sp['id']}"
    assert client.patch(url, json={"description": "d", "tags": ["t"]}).status_code == 204
    assert client.get(url).json()["tags"] == ["t"]
    assert_graph_error(client.patch(url, json={"appId": str(uuid.uuid4())}), 400, "Request_BadRequest",
                       "Property 'appId' is read-only")
    assert client.patch(url, json={"appId": app["appId"]}).status_code == 204  # same value is fine
    assert_graph_error(client.patch(url, json={"description": "x" * 1025}), 400, "Request_BadRequest",
                       "property 'description' of resource 'ServicePrincipal'")
    assert_graph_error(client.patch(url, json={"displayName": ""}), 400, "Request_BadRequest")
    assert client.delete(url).status_code == 204
    assert_graph_error(client.get(url), 404, "Request_ResourceNotFound")
    assert_graph_error(client.delete(url), 404, "Request_ResourceNotFound")
    deleted = client.get(f"/v1.0/directory/deletedItems/{sp['id']}").json()
    assert deleted["@odata.type"] == "#microsoft.graph.servicePrincipal" and deleted["deletedDateTime"]
    # the app is still there, so a new service principal can be made; restoring the old one then conflicts
    assert client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}).status_code == 201
    assert_graph_error(client.post(f"/v1.0/directory/deletedItems/{sp['id']}/restore"), 409,
                       "Request_MultipleObjectsWithSameKeyValue")


def test_read_only_caller_cannot_write_service_principals(graph_env):
    client = graph_env.http()
    app = new_app(client)
    reader = graph_env.http(graph_env.restricted())
    assert_graph_error(reader.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}), 403,
                       "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}).json()
    assert reader.get(f"/v1.0/servicePrincipals/{sp['id']}").status_code == 200
    assert_graph_error(reader.patch(f"/v1.0/servicePrincipals/{sp['id']}", json={"notes": "x"}), 403,
                       "Authorization_RequestDenied")
    assert_graph_error(reader.delete(f"/v1.0/servicePrincipals/{sp['id']}"), 403, "Authorization_RequestDenied")


# --------------------------------------------------------------------------- app role assignments


def test_grant_graph_permission_and_use_it(graph_env):
    caller = graph_env.principal("Application.Read.All")
    client = graph_env.http()
    assignments = client.get(f"/v1.0/servicePrincipals/{caller.object_id}/appRoleAssignments").json()
    [assignment] = assignments["value"]
    read_all = next(r for r in graph_env.graph_sp["appRoles"] if r["value"] == "Application.Read.All")
    assert assignment["appRoleId"] == read_all["id"] and assignment["principalId"] == caller.object_id
    assert assignment["resourceId"] == graph_env.graph_sp["id"]
    assert assignment["principalType"] == "ServicePrincipal"
    assert assignment["resourceDisplayName"] == "Microsoft Graph"
    assigned_to = client.get(f"/v1.0/servicePrincipals/{graph_env.graph_sp['id']}/appRoleAssignedTo",
                             params={"$filter": f"principalId eq {caller.object_id}"}).json()["value"]
    assert [a["id"] for a in assigned_to] == [assignment["id"]]
    reader = graph_env.http(caller)
    assert reader.get("/v1.0/applications").status_code == 200
    assert_graph_error(reader.post("/v1.0/applications", json={"displayName": "x"}), 403,
                       "Authorization_RequestDenied")


def test_app_role_assignment_errors(graph_env):
    client = graph_env.http()
    caller = graph_env.principal("Application.Read.All")
    url = f"/v1.0/servicePrincipals/{caller.object_id}/appRoleAssignments"
    graph_sp = graph_env.graph_sp
    read_all = next(r["id"] for r in graph_sp["appRoles"] if r["value"] == "Application.Read.All")
    body = {"principalId": caller.object_id, "resourceId": graph_sp["id"], "appRoleId": read_all}
    assert_graph_error(client.post(url, json=body), 400, "Request_BadRequest",
                       "Permission being assigned already exists on the object.")
    assert_graph_error(client.post(url, json={**body, "appRoleId": str(uuid.uuid4())}), 400, "Request_BadRequest",
                       f"Permission being assigned was not found on application '{GRAPH_APP_ID}'.")
    missing = str(uuid.uuid4())
    assert_graph_error(client.post(url, json={**body, "resourceId": missing}), 404, "Request_ResourceNotFound",
                       missing)
    assert_graph_error(client.post(url, json={**body, "principalId": graph_sp["id"]}), 400, "Request_BadRequest",
                       "must be the service principal in the request URL")
    assert_graph_error(client.post(url, json={"principalId": caller.object_id}), 400, "Request_BadRequest",
                       "property 'resourceId'")
    restricted = graph_env.http(graph_env.restricted())
    assert_graph_error(restricted.post(url, json=body), 403, "Authorization_RequestDenied")
    [assignment] = client.get(url).json()["value"]
    assert client.get(f"{url}/{assignment['id']}").json()["id"] == assignment["id"]
    assert_graph_error(restricted.delete(f"{url}/{assignment['id']}"), 403, "Authorization_RequestDenied")
    assert client.delete(f"{url}/{assignment['id']}").status_code == 204
    assert client.get(url).json()["value"] == []
    assert_graph_error(client.delete(f"{url}/{assignment['id']}"), 404, "Request_ResourceNotFound")
    assert_graph_error(client.get(f"/v1.0/servicePrincipals/{caller.object_id}/appRoleGrants"), 400, "BadRequest",
                       "Resource not found for the segment 'appRoleGrants'.")
