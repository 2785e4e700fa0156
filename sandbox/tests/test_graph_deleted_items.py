"""Graph ``directory/deletedItems`` as Microsoft documents it (directory-deleteditems-list/get/restore/delete): the
type cast is required to list, query options of the cast type, restore, permanent delete, the permissions each
needs, and a deleted item replicating like a new object. Through HTTP and msgraph-sdk."""
from __future__ import annotations

import time
import uuid

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.directory.deleted_items.graph_application.graph_application_request_builder import \
    GraphApplicationRequestBuilder
from msgraph.generated.directory.deleted_items.graph_service_principal.graph_service_principal_request_builder import \
    GraphServicePrincipalRequestBuilder
from msgraph.generated.models.application import Application
from msgraph.generated.models.service_principal import ServicePrincipal

from test_graph_helpers import assert_graph_error, graph_env, new_app, run, sdk_error  # noqa: F401

DELETED = "/v1.0/directory/deletedItems"
MANAGED = "oidc_federation.azure:managed"


def app_with_sp(client, **props):
    app = new_app(client, **props)
    sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]})
    assert sp.status_code == 201, sp.text
    return app, sp.json()


def listed(client, kind="application", query=""):
    response = client.get(f"{DELETED}/microsoft.graph.{kind}{query}")
    assert response.status_code == 200, response.text
    return response.json()["value"]


def test_deleted_items_are_queried_with_the_options_of_the_cast_type(graph_env):
    client = graph_env.http()
    tagged, tagged_sp = app_with_sp(client, uniqueName="purge-me", tags=[MANAGED])
    plain, plain_sp = app_with_sp(client, uniqueName="keep-me")
    for app in (tagged, plain):
        assert client.delete(f"/v1.0/applications/{app['id']}").status_code == 204
    # deleting an application deletes its service principal too; both are deleted items
    assert {d["id"] for d in listed(client)} == {tagged["id"], plain["id"]}
    assert {d["id"] for d in listed(client, "servicePrincipal")} == {tagged_sp["id"], plain_sp["id"]}
    assert [d["id"] for d in listed(client, query="?$filter=uniqueName eq 'PURGE-ME'")] == [tagged["id"]]
    assert [d["id"] for d in listed(client, query=f"?$filter=tags/any(t:t eq '{MANAGED}')")] == [tagged["id"]]
    assert [d["id"] for d in listed(client, "servicePrincipal", f"?$filter=appId eq '{plain['appId']}'")] == [plain_sp["id"]]
    selected = listed(client, query="?$filter=uniqueName eq 'purge-me'&$select=id,uniqueName,deletedDateTime,tags")
    assert set(selected[0]) - {"@odata.type"} == {"id", "uniqueName", "deletedDateTime", "tags"}
    assert selected[0]["deletedDateTime"]
    assert_graph_error(client.get(f"{DELETED}/microsoft.graph.application?$filter=nonsense eq 1"), 400, "BadRequest")


def test_permanent_delete_restore_and_their_permissions(graph_env):
    client = graph_env.http()
    app, sp = app_with_sp(client, uniqueName="gone-for-good")
    assert client.delete(f"/v1.0/applications/{app['id']}").status_code == 204
    reader = graph_env.http(graph_env.restricted())  # Application.Read.All: may list and read, not purge or restore
    assert [d["id"] for d in listed(reader)] == [app["id"]]
    assert reader.get(f"{DELETED}/{app['id']}").status_code == 200
    assert_graph_error(reader.delete(f"{DELETED}/{app['id']}"), 403, "Authorization_RequestDenied")
    assert_graph_error(reader.post(f"{DELETED}/{app['id']}/restore"), 403, "Authorization_RequestDenied")
    # the service principal first, then the application: both gone for good, 404 everywhere afterwards
    assert client.delete(f"{DELETED}/{sp['id']}").status_code == 204
    assert client.delete(f"{DELETED}/{app['id']}").status_code == 204
    for gone in (app["id"], sp["id"]):
        assert_graph_error(client.get(f"{DELETED}/{gone}"), 404, "Request_ResourceNotFound")
        assert_graph_error(client.delete(f"{DELETED}/{gone}"), 404, "Request_ResourceNotFound")
        assert_graph_error(client.post(f"{DELETED}/{gone}/restore"), 404, "Request_ResourceNotFound")
    assert listed(client) == [] and listed(client, "servicePrincipal") == []


def test_restoring_an_application_does_not_restore_its_service_principal(graph_env):
    client = graph_env.http()
    app, sp = app_with_sp(client)
    assert client.delete(f"/v1.0/applications/{app['id']}").status_code == 204
    restored = client.post(f"{DELETED}/{app['id']}/restore")
    assert restored.status_code == 200 and restored.json()["@odata.type"] == "#microsoft.graph.application"
    assert [d["id"] for d in listed(client, "servicePrincipal")] == [sp["id"]]
    assert client.post(f"{DELETED}/{sp['id']}/restore").status_code == 200
    assert client.get(f"/v1.0/servicePrincipals/{sp['id']}").status_code == 200


def test_a_deleted_application_releases_its_unique_name_and_restoring_it_then_conflicts(graph_env):
    client = graph_env.http()
    old = new_app(client, uniqueName="taken-twice")
    assert client.delete(f"/v1.0/applications/{old['id']}").status_code == 204
    upsert = client.patch("/v1.0/applications(uniqueName='taken-twice')", json={"displayName": "new"},
                          headers={"Prefer": "create-if-missing"})
    assert upsert.status_code == 201, upsert.text
    error = assert_graph_error(client.post(f"{DELETED}/{old['id']}/restore"), 400, "Request_BadRequest",
                               "Another object with the same value for property uniqueName already exists.")
    assert [d["target"] for d in error["details"]] == ["uniqueName", upsert.json()["id"]]
    assert [d["id"] for d in listed(client)] == [old["id"]]  # still restorable once the name is free again


def test_a_deleted_item_replicates_like_a_new_object(graph_env):
    client = graph_env.http()
    app = new_app(client)
    graph_env.set_lag(1.0)
    time.sleep(1.1)  # the application itself has replicated
    assert client.delete(f"/v1.0/applications/{app['id']}").status_code == 204
    assert listed(client) == []
    assert_graph_error(client.get(f"{DELETED}/{app['id']}"), 404, "Request_ResourceNotFound")
    assert_graph_error(client.delete(f"{DELETED}/{app['id']}"), 404, "Request_ResourceNotFound")
    time.sleep(1.1)
    assert [d["id"] for d in listed(client)] == [app["id"]]
    assert client.delete(f"{DELETED}/{app['id']}").status_code == 204


def test_sdk_lists_filters_and_purges_deleted_items(graph_env):
    async def scenario():
        async with graph_env.sdk() as g:
            app = await g.applications.post(Application(display_name="sdk-deleted", unique_name="sdk-deleted",
                                                        tags=[MANAGED]))
            sp = await g.service_principals.post(ServicePrincipal(app_id=app.app_id))
            await g.applications.by_application_id(app.id).delete()
            query = GraphApplicationRequestBuilder.GraphApplicationRequestBuilderGetQueryParameters(
                filter="uniqueName eq 'sdk-deleted'", select=["id", "uniqueName", "tags", "deletedDateTime"])
            found = await g.directory.deleted_items.graph_application.get(RequestConfiguration(query_parameters=query))
            assert [(a.id, a.unique_name, a.tags) for a in found.value] == [(app.id, "sdk-deleted", [MANAGED])]
            assert found.value[0].deleted_date_time is not None
            sp_query = GraphServicePrincipalRequestBuilder.GraphServicePrincipalRequestBuilderGetQueryParameters(
                filter=f"appId eq '{app.app_id}'")
            sps = await g.directory.deleted_items.graph_service_principal.get(RequestConfiguration(query_parameters=sp_query))
            assert [s.id for s in sps.value] == [sp.id]
            await g.directory.deleted_items.by_directory_object_id(sp.id).delete()
            await g.directory.deleted_items.by_directory_object_id(app.id).delete()
            error = await sdk_error(g.directory.deleted_items.by_directory_object_id(app.id).get())
            assert error.response_status_code == 404 and error.error.code == "Request_ResourceNotFound"
            assert (await g.directory.deleted_items.graph_application.get()).value == []
            assert (await g.directory.deleted_items.graph_service_principal.get()).value == []
            error = await sdk_error(g.directory.deleted_items.by_directory_object_id(str(uuid.uuid4())).delete())
            assert error.response_status_code == 404
    run(scenario())
