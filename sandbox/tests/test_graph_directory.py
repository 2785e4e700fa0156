"""directoryObjects (getByIds, by id) over HTTP, and the ``ctx.directory`` interface other services use."""
from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest

from test_graph_helpers import assert_graph_error, fic_body, graph_env, new_app  # noqa: F401


def test_get_by_ids_returns_typed_objects(graph_env):
    client = graph_env.http()
    app = new_app(client)
    sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}).json()
    body = {"ids": [sp["id"], app["id"], str(uuid.uuid4()), sp["id"].upper()],
            "types": ["user", "group", "servicePrincipal", "directoryObjectPartnerReference"]}
    response = client.post("/v1.0/directoryObjects/getByIds", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["@odata.context"] == f"{graph_env.url}/v1.0/$metadata#directoryObjects"
    assert [(o["@odata.type"], o["id"]) for o in result["value"]] == [("#microsoft.graph.servicePrincipal", sp["id"])]
    assert result["value"][0]["servicePrincipalNames"] == [app["appId"]]  # what az reads
    both = client.post("/v1.0/directoryObjects/microsoft.graph.getByIds", json={"ids": [app["id"], sp["id"]]})
    assert [(o["@odata.type"], o["id"]) for o in both.json()["value"]] == [
        ("#microsoft.graph.application", app["id"]), ("#microsoft.graph.servicePrincipal", sp["id"])]
    apps_only = client.post("/v1.0/directoryObjects/getByIds", json={"ids": [app["id"], sp["id"]],
                                                                     "types": ["Application"]})
    assert [o["id"] for o in apps_only.json()["value"]] == [app["id"]]


@pytest.mark.parametrize("body,status,code,message", [
    ({"ids": ["nope"]}, 400, "Request_BadRequest", "Invalid object identifier 'nope'."),
    ({}, 400, "Request_BadRequest", "property 'ids'"),
    ({"ids": []}, 400, "Request_BadRequest", "property 'ids'"),
    ({"ids": "x"}, 400, "BadRequest", "A 'StartArray' node was expected."),
    ({"ids": [str(uuid.uuid4())], "types": [1]}, 400, "BadRequest", "Cannot convert the literal '1'"),
    ({"ids": [str(uuid.uuid4())], "other": 1}, 400, "BadRequest", "The parameter 'other' in the request payload"),
    ({"ids": [str(uuid.uuid4()) for _ in range(1001)]}, 400, "Request_BadRequest", "must not exceed 1000"),
])
def test_get_by_ids_validation(graph_env, body, status, code, message):
    response = graph_env.http().post("/v1.0/directoryObjects/getByIds", json=body)
    assert_graph_error(response, status, code, message)


def test_get_by_ids_method_and_permissions(graph_env):
    assert_graph_error(graph_env.http().get("/v1.0/directoryObjects/getByIds"), 405, "Request_BadRequest")
    reader = graph_env.http(graph_env.restricted())
    assert reader.post("/v1.0/directoryObjects/getByIds", json={"ids": [str(uuid.uuid4())]}).status_code == 200


def test_directory_object_by_id(graph_env):
    client = graph_env.http()
    app = new_app(client)
    sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}).json()
    got = client.get(f"/v1.0/directoryObjects/{sp['id']}").json()
    assert got["@odata.type"] == "#microsoft.graph.servicePrincipal" and got["appId"] == app["appId"]
    assert got["@odata.context"].endswith("#directoryObjects/$entity")
    assert client.get(f"/beta/directoryObjects/{app['id']}").json()["@odata.type"] == "#microsoft.graph.application"
    assert_graph_error(client.get(f"/v1.0/directoryObjects/{uuid.uuid4()}"), 404, "Request_ResourceNotFound")
    assert_graph_error(client.get("/v1.0/directoryObjects/abc"), 400, "Request_BadRequest",
                       "Invalid object identifier 'abc'.")


def test_objects_still_replicating_are_not_returned(graph_env):
    client = graph_env.http()
    graph_env.set_lag(60)
    app = new_app(client)
    result = client.post("/v1.0/directoryObjects/getByIds", json={"ids": [app["id"]]}).json()
    assert result["value"] == []
    assert_graph_error(client.get(f"/v1.0/directoryObjects/{app['id']}"), 404, "Request_ResourceNotFound")


# --------------------------------------------------------------------------- ctx.directory (in-process)


@pytest.fixture
def local(tmp_path):
    """An in-process sandbox (the real app) to look at ``ctx.directory`` directly."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from starlette.testclient import TestClient

    from oidc_sandbox import graph
    from oidc_sandbox.app import build_app, new_sandbox
    from oidc_sandbox.context import Config

    ctx = new_sandbox(Config(state_dir=str(tmp_path), base_url="https://127.0.0.1:1"))
    app = build_app(ctx)
    operator = ctx.state.operators[ctx.config.operator_client_id]
    token, _ = ctx.entra.mint_access_token(app_id=operator["client_id"], sp_object_id=operator["object_id"],
                                           resource="https://graph.microsoft.com", service="graph", appidacr="1")
    client = TestClient(app, base_url="https://127.0.0.1:1", headers={"Authorization": f"Bearer {token}"})
    assert isinstance(ctx.directory, graph.Directory)
    yield ctx, client
    client.close()


def test_directory_interface(local):
    ctx, client = local
    app = client.post("/v1.0/applications", json={"displayName": "dir"}).json()
    sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}).json()
    fic = client.post(f"/v1.0/applications/{app['id']}/federatedIdentityCredentials", json=fic_body()).json()
    directory = ctx.directory
    assert directory.app_by_app_id(app["appId"].upper())["id"] == app["id"]
    assert directory.sp_by_app_id(app["appId"])["id"] == sp["id"]
    assert directory.sp_by_id(sp["id"].upper())["appId"] == app["appId"]
    [stored] = directory.fics_of(app["id"])
    assert stored["id"] == fic["id"] and stored["claimsMatchingExpression"] is None and "_created" in stored
    assert directory.principal_exists(sp["id"]) and directory.principal_exists(sp["id"],
                                                                               principal_type="ServicePrincipal")
    assert not directory.principal_exists(sp["id"], principal_type="User")
    assert not directory.principal_exists(app["id"])  # an application object is not a principal
    assert not directory.principal_exists(str(uuid.uuid4()))
    assert directory.app_by_app_id(str(uuid.uuid4())) is None and directory.sp_by_id(str(uuid.uuid4())) is None
    client.delete(f"/v1.0/applications/{app['id']}")
    assert directory.app_by_app_id(app["appId"]) is None and not directory.principal_exists(sp["id"])
    assert directory.fics_of(app["id"]) == []


def test_directory_honours_replication_lag(local):
    ctx, client = local
    ctx.faults.configure({"replication_lag": 0.5})
    app = client.post("/v1.0/applications", json={"displayName": "lag"}).json()
    assert ctx.directory.app_by_app_id(app["appId"]) is None
    time.sleep(0.6)
    assert ctx.directory.app_by_app_id(app["appId"])["id"] == app["id"]
    sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}).json()
    fic = client.post(f"/v1.0/applications/{app['id']}/federatedIdentityCredentials", json=fic_body())
    assert fic.status_code == 201
    assert ctx.directory.sp_by_app_id(app["appId"]) is None and not ctx.directory.principal_exists(sp["id"])
    assert ctx.directory.fics_of(app["id"]) == []
    time.sleep(0.6)
    assert ctx.directory.principal_exists(sp["id"], principal_type="ServicePrincipal")
    assert len(ctx.directory.fics_of(app["id"])) == 1
