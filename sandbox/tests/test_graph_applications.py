"""Graph applications over raw HTTP: create, read by every key, update, upsert, delete, owners, permissions."""
from __future__ import annotations

import re
import uuid

import pytest

from test_graph_helpers import assert_graph_error, graph_env, new_app  # noqa: F401

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# --------------------------------------------------------------------------- create


def test_create_assigns_server_fields_and_documented_defaults(graph_env):
    client = graph_env.http()
    response = client.post("/v1.0/applications", json={"displayName": "my app"},
                           headers={"client-request-id": "abc-123"})
    assert response.status_code == 201, response.text
    app = response.json()
    assert app["@odata.context"] == f"{graph_env.url}/v1.0/$metadata#applications/$entity"
    assert GUID.match(app["id"]) and GUID.match(app["appId"]) and app["id"] != app["appId"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", app["createdDateTime"])
    assert app["displayName"] == "my app"
    assert app["publisherDomain"] == "sandbox.onmicrosoft.com"
    # the create/upsert examples' default (the resource page says AzureADMyOrg: see README)
    assert app["signInAudience"] == "AzureADandPersonalMicrosoftAccount"
    assert app["tags"] == [] and app["identifierUris"] == [] and app["uniqueName"] is None
    assert app["description"] is None and app["deletedDateTime"] is None
    assert not any(key.startswith("_") for key in app)
    assert response.headers["client-request-id"] == "abc-123"
    assert GUID.match(response.headers["request-id"])
    assert response.headers["content-type"].startswith("application/json;odata.metadata=minimal")


def test_create_with_properties_and_odata_type(graph_env):
    app = new_app(graph_env.http(), **{"@odata.type": "#microsoft.graph.application", "signInAudience": "azureadmyorg",
                                        "tags": ["a", "b"], "notes": "n", "description": "d",
                                        "identifierUris": ["api://my-unique-uri"]})
    assert app["signInAudience"] == "AzureADMyOrg"  # canonical spelling
    assert app["tags"] == ["a", "b"] and app["notes"] == "n" and app["description"] == "d"
    assert app["identifierUris"] == ["api://my-unique-uri"]


@pytest.mark.parametrize("body", [{}, {"displayName": None}, {"displayName": ""}, {"description": "x"}])
def test_create_requires_display_name(graph_env, body):
    response = graph_env.http().post("/v1.0/applications", json=body)
    assert_graph_error(response, 400, "Request_BadRequest",
                       "Invalid value specified for property 'displayName' of resource 'Application'.")


@pytest.mark.parametrize("prop,limit", [("displayName", 256), ("description", 1024)])
def test_create_enforces_length_limits(graph_env, prop, limit):
    client = graph_env.http()
    ok = new_app(client, **{prop: "x" * limit})
    assert len(ok[prop]) == limit
    body = {"displayName": "app", prop: "y" * (limit + 1)}
    response = client.post("/v1.0/applications", json=body)
    assert_graph_error(response, 400, "Request_BadRequest", f"Invalid value specified for property '{prop}'")


def test_create_rejects_unknown_property(graph_env):
    response = graph_env.http().post("/v1.0/applications", json={"displayName": "a", "colour": "blue"})
    assert_graph_error(response, 400, "Request_BadRequest",
                       "Property 'colour' does not exist as a declared property or extension property.")


@pytest.mark.parametrize("body,message", [
    ({"displayName": 5}, "Cannot convert the literal '5' to the expected type 'Edm.String'."),
    ({"displayName": ["a"]}, "An unexpected 'StartArray' node was found"),
    ({"displayName": "a", "tags": "x"}, "A 'StartArray' node was expected."),
    ({"displayName": "a", "tags": [1]}, "Cannot convert the literal '1' to the expected type 'Edm.String'."),
    ({"displayName": "a", "tags": None}, "'Collection(Edm.String)[Nullable=False]' does not allow null values"),
    ({"displayName": "a", "isFallbackPublicClient": "yes"}, "expected type 'Edm.Boolean'"),
    ({"displayName": "a", "web": []}, "A 'StartObject' node was expected."),
    ({"displayName": "a", "tokenEncryptionKeyId": "nope"}, "expected type 'Edm.Guid'"),
    ({"displayName": "a", "@odata.type": "#microsoft.graph.user"}, "A type named 'microsoft.graph.user'"),
])
def test_create_rejects_wrong_types(graph_env, body, message):
    assert_graph_error(graph_env.http().post("/v1.0/applications", json=body), 400, "BadRequest", message)


@pytest.mark.parametrize("prop,value", [("appId", str(uuid.uuid4())), ("id", str(uuid.uuid4())),
                                        ("publisherDomain", "x.com"), ("createdDateTime", "2020-01-01T00:00:00Z")])
def test_create_rejects_read_only_properties(graph_env, prop, value):
    response = graph_env.http().post("/v1.0/applications", json={"displayName": "a", prop: value})
    assert_graph_error(response, 400, "Request_BadRequest", f"Property '{prop}' is read-only and cannot be set.")


def test_create_rejects_bad_sign_in_audience(graph_env):
    response = graph_env.http().post("/v1.0/applications", json={"displayName": "a", "signInAudience": "Everyone"})
    assert_graph_error(response, 400, "Request_BadRequest", "property 'signInAudience' of resource 'Application'")


def test_identifier_uris_must_be_unique_and_absolute(graph_env):
    client = graph_env.http()
    first = new_app(client, identifierUris=["api://shared"])
    response = client.post("/v1.0/applications", json={"displayName": "b", "identifierUris": ["API://Shared"]})
    error = assert_graph_error(response, 400, "Request_BadRequest",
                               "Another object with the same value for property identifierUris already exists.")
    assert error["details"][0] == {"code": "ObjectConflict", "target": "identifierUris",
                                   "message": "Another object with the same value for property identifierUris "
                                              "already exists."}
    assert error["details"][1]["target"] == first["id"]
    response = client.post("/v1.0/applications", json={"displayName": "b", "identifierUris": ["not a uri"]})
    assert_graph_error(response, 400, "Request_BadRequest", "property 'identifierUris'")


@pytest.mark.parametrize("raw,message", [(b"{not json", "Unable to read JSON request payload."),
                                         (b"", "Empty Payload. JSON content expected."),
                                         (b"[1, 2]", "Unable to read JSON request payload.")])
def test_unreadable_bodies_are_bad_request(graph_env, raw, message):
    response = graph_env.http().post("/v1.0/applications", content=raw,
                                     headers={"Content-Type": "application/json"})
    assert_graph_error(response, 400, "BadRequest", message)


# --------------------------------------------------------------------------- read


def test_get_by_id_app_id_and_unique_name(graph_env):
    client = graph_env.http()
    app = new_app(client, uniqueName="my-unique")
    for path in (f"/v1.0/applications/{app['id']}", f"/v1.0/applications('{app['id']}')",
                 f"/v1.0/applications(appId='{app['appId']}')", "/v1.0/applications(uniqueName='my-unique')",
                 "/v1.0/applications(uniqueName='MY-UNIQUE')",
                 f"/v1.0/Applications/{app['id'].upper()}", f"/BETA/APPLICATIONS(APPID='{app['appId']}')"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["id"] == app["id"], path
        assert response.json()["@odata.context"].endswith("#applications/$entity")


def test_get_with_select(graph_env):
    client = graph_env.http()
    app = new_app(client)
    body = client.get(f"/v1.0/applications/{app['id']}?$select=displayName,AppId").json()
    assert body == {"@odata.context": f"{graph_env.url}/v1.0/$metadata#applications(displayName,appId)/$entity",
                    "displayName": app["displayName"], "appId": app["appId"]}


def test_get_unknown_and_malformed_ids(graph_env):
    client = graph_env.http()
    missing = str(uuid.uuid4())
    assert_graph_error(client.get(f"/v1.0/applications/{missing}"), 404, "Request_ResourceNotFound",
                       f"Resource '{missing}' does not exist or one of its queried reference-property objects are "
                       f"not present.")
    assert_graph_error(client.get(f"/v1.0/applications(appId='{missing}')"), 404, "Request_ResourceNotFound")
    assert_graph_error(client.get("/v1.0/applications(uniqueName='nobody')"), 404, "Request_ResourceNotFound")
    assert_graph_error(client.get("/v1.0/applications/not-a-guid"), 400, "Request_BadRequest",
                       "Invalid object identifier 'not-a-guid'.")
    assert_graph_error(client.get("/v1.0/applications(displayName='x')"), 400, "BadRequest")
    assert_graph_error(client.get("/v1.0/applications(appId=unquoted)"), 400, "BadRequest")


def test_unknown_segments_and_methods(graph_env):
    client = graph_env.http()
    app = new_app(client)
    assert_graph_error(client.get("/v1.0/widgets"), 400, "BadRequest", "Resource not found for the segment 'widgets'.")
    assert_graph_error(client.get(f"/v1.0/applications/{app['id']}/gadgets"), 400, "BadRequest",
                       "Resource not found for the segment 'gadgets'.")
    assert_graph_error(client.put(f"/v1.0/applications/{app['id']}", json={}), 405, "Request_BadRequest",
                       "Specified HTTP method is not allowed for the request target.")
    assert_graph_error(client.delete("/v1.0/applications"), 405, "Request_BadRequest")


def test_requests_need_a_valid_graph_token(graph_env):
    no_token = graph_env.http(token="")
    response = no_token.get("/v1.0/applications")
    assert_graph_error(response, 401, "InvalidAuthenticationToken", "Access token is empty.")
    garbage = graph_env.http(token="a.b.c")
    assert_graph_error(garbage.get("/v1.0/applications"), 401, "InvalidAuthenticationToken")


# --------------------------------------------------------------------------- update


def test_patch_updates_and_returns_204(graph_env):
    client = graph_env.http()
    app = new_app(client)
    response = client.patch(f"/v1.0/applications/{app['id']}",
                            json={"displayName": "renamed", "tags": ["x"], "notes": None})
    assert response.status_code == 204 and response.content == b""
    got = client.get(f"/v1.0/applications/{app['id']}").json()
    assert got["displayName"] == "renamed" and got["tags"] == ["x"]


def test_patch_validates(graph_env):
    client = graph_env.http()
    app = new_app(client)
    url = f"/v1.0/applications/{app['id']}"
    assert_graph_error(client.patch(url, json={"displayName": ""}), 400, "Request_BadRequest",
                       "property 'displayName'")
    assert_graph_error(client.patch(url, json={"displayName": "x" * 257}), 400, "Request_BadRequest")
    assert_graph_error(client.patch(url, json={"description": "x" * 1025}), 400, "Request_BadRequest")
    assert_graph_error(client.patch(url, json={"bogus": 1}), 400, "Request_BadRequest",
                       "Property 'bogus' does not exist")
    assert_graph_error(client.patch(url, json={"tags": {"a": 1}}), 400, "BadRequest")
    assert_graph_error(client.patch(url, json={"appId": str(uuid.uuid4())}), 400, "Request_BadRequest",
                       "read-only")
    assert_graph_error(client.patch(f"/v1.0/applications/{uuid.uuid4()}", json={"notes": "x"}), 404,
                       "Request_ResourceNotFound")
    assert client.get(url).json()["displayName"] == app["displayName"]  # nothing applied


def test_rename_propagates_to_service_principal(graph_env):
    client = graph_env.http()
    app = new_app(client)
    sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}).json()
    client.patch(f"/v1.0/applications/{app['id']}", json={"displayName": "new name"})
    got = client.get(f"/v1.0/servicePrincipals/{sp['id']}").json()
    assert got["displayName"] == "new name" and got["appDisplayName"] == "new name"


def test_unique_name_is_settable_only_while_null(graph_env):
    client = graph_env.http()
    app = new_app(client)
    url = f"/v1.0/applications/{app['id']}"
    assert client.patch(url, json={"uniqueName": "first"}).status_code == 204
    assert client.patch(url, json={"uniqueName": "first"}).status_code == 204  # same value: no change
    assert_graph_error(client.patch(url, json={"uniqueName": "second"}), 400, "Request_BadRequest",
                       "Property 'uniqueName' can be set only while it is null and is immutable once set.")
    assert_graph_error(client.patch(url, json={"uniqueName": None}), 400, "Request_BadRequest", "immutable")
    assert client.get("/v1.0/applications(uniqueName='first')").json()["id"] == app["id"]


def test_unique_name_is_unique(graph_env):
    client = graph_env.http()
    first = new_app(client, uniqueName="taken")
    response = client.post("/v1.0/applications", json={"displayName": "b", "uniqueName": "TAKEN"})
    error = assert_graph_error(response, 400, "Request_BadRequest",
                               "Another object with the same value for property uniqueName already exists.")
    assert error["details"][0]["code"] == "ObjectConflict" and error["details"][1]["target"] == first["id"]
    other = new_app(client)
    assert_graph_error(client.patch(f"/v1.0/applications/{other['id']}", json={"uniqueName": "taken"}), 400,
                       "Request_BadRequest", "uniqueName")


# --------------------------------------------------------------------------- upsert


def test_upsert_creates_then_updates(graph_env):
    client = graph_env.http()
    url = "/v1.0/applications(uniqueName='gitlab-oidc-demo')"
    created = client.patch(url, json={"displayName": "demo", "signInAudience": "AzureADMyOrg"},
                           headers={"Prefer": "create-if-missing"})
    assert created.status_code == 201, created.text
    app = created.json()
    assert app["uniqueName"] == "gitlab-oidc-demo" and app["displayName"] == "demo"
    assert app["@odata.context"].endswith("#applications/$entity") and GUID.match(app["appId"])
    updated = client.patch(url, json={"displayName": "demo 2"}, headers={"Prefer": "create-if-missing"})
    assert updated.status_code == 204 and updated.content == b""
    assert client.patch(url, json={"notes": "n"}).status_code == 204  # existing: header not needed
    got = client.get(url).json()
    assert got["id"] == app["id"] and got["displayName"] == "demo 2" and got["notes"] == "n"
    same = client.get("/v1.0/applications?$filter=uniqueName eq 'gitlab-oidc-demo'").json()["value"]
    assert [a["id"] for a in same] == [app["id"]]


def test_upsert_errors(graph_env):
    client = graph_env.http()
    url = "/v1.0/applications(uniqueName='missing-one')"
    assert_graph_error(client.patch(url, json={"displayName": "x"}), 404, "Request_ResourceNotFound",
                       "Resource 'missing-one' does not exist")
    assert_graph_error(client.patch(url, json={"displayName": "x"}, headers={"Prefer": "return=minimal"}), 404,
                       "Request_ResourceNotFound")
    assert_graph_error(client.patch(url, json={"notes": "no name"}, headers={"Prefer": "create-if-missing"}), 400,
                       "Request_BadRequest", "property 'displayName'")
    assert_graph_error(client.patch(url, json={"displayName": "x", "uniqueName": "other"},
                                    headers={"Prefer": "create-if-missing"}), 400, "Request_BadRequest",
                       "does not match")
    assert_graph_error(client.patch(f"/v1.0/applications(appId='{uuid.uuid4()}')", json={"displayName": "x"},
                                    headers={"Prefer": "create-if-missing"}), 404, "Request_ResourceNotFound")
    assert client.get("/v1.0/applications?$filter=uniqueName eq 'missing-one'").json()["value"] == []


# --------------------------------------------------------------------------- delete and deleted items


def test_delete_soft_deletes_app_and_its_service_principal(graph_env):
    client = graph_env.http()
    app = new_app(client, uniqueName="to-delete")
    sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}).json()
    assert client.delete(f"/v1.0/applications(uniqueName='to-delete')").status_code == 204
    assert_graph_error(client.get(f"/v1.0/applications/{app['id']}"), 404, "Request_ResourceNotFound")
    assert_graph_error(client.get(f"/v1.0/servicePrincipals/{sp['id']}"), 404, "Request_ResourceNotFound")
    assert_graph_error(client.delete(f"/v1.0/applications/{app['id']}"), 404, "Request_ResourceNotFound")
    deleted = client.get(f"/v1.0/directory/deletedItems/{app['id']}").json()
    assert deleted["@odata.type"] == "#microsoft.graph.application" and deleted["deletedDateTime"]
    listed = client.get("/v1.0/directory/deletedItems/microsoft.graph.application").json()
    assert [d["id"] for d in listed["value"]] == [app["id"]]
    assert listed["@odata.context"].endswith("#directory/deletedItems/microsoft.graph.application")
    sps = client.get("/v1.0/directory/deletedItems/microsoft.graph.servicePrincipal").json()["value"]
    assert [d["id"] for d in sps] == [sp["id"]]
    assert client.get(f"/v1.0/directory/deletedItems/{uuid.uuid4()}").status_code == 404


def test_restore_and_purge(graph_env):
    client = graph_env.http()
    app = new_app(client)
    fic = {"name": "kept", "issuer": "https://gitlab.com", "subject": "s", "audiences": ["api://AzureADTokenExchange"]}
    assert client.post(f"/v1.0/applications/{app['id']}/federatedIdentityCredentials", json=fic).status_code == 201
    client.delete(f"/v1.0/applications/{app['id']}")
    restored = client.post(f"/v1.0/directory/deletedItems/{app['id']}/restore")
    assert restored.status_code == 200 and restored.json()["deletedDateTime"] is None
    assert client.get(f"/v1.0/applications/{app['id']}/federatedIdentityCredentials/kept").status_code == 200
    client.delete(f"/v1.0/applications/{app['id']}")
    assert client.delete(f"/v1.0/directory/deletedItems/{app['id']}").status_code == 204
    assert_graph_error(client.get(f"/v1.0/directory/deletedItems/{app['id']}"), 404, "Request_ResourceNotFound")
    assert_graph_error(client.get("/v1.0/directory/deletedItems"), 400, "Request_BadRequest", "type cast")
    assert_graph_error(client.get("/v1.0/directory/deletedItems/xyz"), 400, "Request_BadRequest",
                       "Invalid object identifier 'xyz'.")


# --------------------------------------------------------------------------- owners


def test_owners_add_list_remove(graph_env):
    client = graph_env.http()
    app = new_app(client)
    owner = graph_env.principal()
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{owner.object_id}"}
    url = f"/v1.0/applications/{app['id']}/owners"
    assert client.post(f"{url}/$ref", json=ref).status_code == 204
    listed = client.get(url).json()
    assert listed["@odata.context"].endswith("#directoryObjects")
    assert [(o["@odata.type"], o["id"]) for o in listed["value"]] == [
        ("#microsoft.graph.servicePrincipal", owner.object_id)]
    refs = client.get(f"{url}/$ref").json()["value"]
    assert refs == [{"@odata.id": f"{graph_env.url}/v1.0/directoryObjects/{owner.object_id}"}]
    assert_graph_error(client.post(f"{url}/$ref", json=ref), 400, "Request_BadRequest",
                       "One or more added object references already exist for the following modified properties: "
                       "'owners'.")
    assert client.delete(f"{url}/{owner.object_id}/$ref").status_code == 204
    assert client.get(url).json()["value"] == []
    assert_graph_error(client.delete(f"{url}/{owner.object_id}/$ref"), 404, "Request_ResourceNotFound")


def test_owner_reference_errors(graph_env):
    client = graph_env.http()
    app = new_app(client)
    url = f"/v1.0/applications/{app['id']}/owners/$ref"
    missing = str(uuid.uuid4())
    assert_graph_error(client.post(url, json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/"
                                                           f"{missing}"}), 404, "Request_ResourceNotFound", missing)
    assert_graph_error(client.post(url, json={"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/x"}),
                       400, "Request_BadRequest", "Invalid object identifier 'x'.")
    assert_graph_error(client.post(url, json={}), 400, "BadRequest", "@odata.id")
    assert_graph_error(client.post(url, json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/"
                                                           f"{app['id']}"}), 400, "Request_BadRequest", "owner")
    assert_graph_error(client.delete(f"/v1.0/applications/{app['id']}/owners/nope/$ref"), 400,
                       "Request_BadRequest", "Invalid object identifier 'nope'.")


# --------------------------------------------------------------------------- permissions


def test_read_only_caller_cannot_write(graph_env):
    writer = graph_env.http()
    app = new_app(writer)
    reader = graph_env.http(graph_env.restricted())
    assert reader.get(f"/v1.0/applications/{app['id']}").status_code == 200
    for response in (reader.post("/v1.0/applications", json={"displayName": "x"}),
                     reader.patch(f"/v1.0/applications/{app['id']}", json={"notes": "x"}),
                     reader.patch("/v1.0/applications(uniqueName='u')", json={"displayName": "x"},
                                  headers={"Prefer": "create-if-missing"}),
                     reader.delete(f"/v1.0/applications/{app['id']}")):
        assert_graph_error(response, 403, "Authorization_RequestDenied",
                           "Insufficient privileges to complete the operation.")


def test_caller_without_graph_roles_cannot_read(graph_env):
    nobody = graph_env.http(graph_env.principal())
    assert_graph_error(nobody.get("/v1.0/applications"), 403, "Authorization_RequestDenied")
    assert_graph_error(nobody.post("/v1.0/directoryObjects/getByIds", json={"ids": []}), 403,
                       "Authorization_RequestDenied")


def test_owned_by_caller_manages_only_its_own_apps(graph_env):
    admin = graph_env.http()
    foreign = new_app(admin)
    owned_by = graph_env.principal("Application.ReadWrite.OwnedBy")
    client = graph_env.http(owned_by)
    mine = new_app(client)
    owners = client.get(f"/v1.0/applications/{mine['id']}/owners").json()["value"]
    assert [o["id"] for o in owners] == [owned_by.object_id]  # the creator becomes owner
    assert client.patch(f"/v1.0/applications/{mine['id']}", json={"notes": "mine"}).status_code == 204
    assert client.get(f"/v1.0/applications/{foreign['id']}").status_code == 200  # reading is allowed
    assert_graph_error(client.patch(f"/v1.0/applications/{foreign['id']}", json={"notes": "x"}), 403,
                       "Authorization_RequestDenied")
    assert_graph_error(client.delete(f"/v1.0/applications/{foreign['id']}"), 403, "Authorization_RequestDenied")
    sp = client.post("/v1.0/servicePrincipals", json={"appId": mine["appId"]})
    assert sp.status_code == 201
    assert_graph_error(client.post("/v1.0/servicePrincipals", json={"appId": foreign["appId"]}), 403,
                       "Authorization_RequestDenied")
    assert client.delete(f"/v1.0/applications/{mine['id']}").status_code == 204


# --------------------------------------------------------------------------- replication lag


def test_new_app_is_invisible_while_replicating(graph_env):
    client = graph_env.http()
    graph_env.set_lag(60)
    created = client.patch("/v1.0/applications(uniqueName='lagging')", json={"displayName": "lag"},
                           headers={"Prefer": "create-if-missing"})
    assert created.status_code == 201 and created.json()["displayName"] == "lag"  # no read-back needed
    app = created.json()
    assert_graph_error(client.get(f"/v1.0/applications/{app['id']}"), 404, "Request_ResourceNotFound")
    assert_graph_error(client.get(f"/v1.0/applications(appId='{app['appId']}')"), 404, "Request_ResourceNotFound")
    assert_graph_error(client.patch(f"/v1.0/applications/{app['id']}", json={"notes": "x"}), 404,
                       "Request_ResourceNotFound")
    listed = client.get(f"/v1.0/applications?$filter=appId eq '{app['appId']}'").json()["value"]
    assert listed == []
    # the alternate-key upsert reaches the object (no duplicate is created)
    again = client.patch("/v1.0/applications(uniqueName='lagging')", json={"notes": "n"},
                         headers={"Prefer": "create-if-missing"})
    assert again.status_code == 204
    graph_env.set_lag(0)
    assert client.get(f"/v1.0/applications/{app['id']}").json()["notes"] == "n"
