"""OData query options on Graph lists: $filter, $select, $top/@odata.nextLink, $count, and their errors."""
from __future__ import annotations

import urllib.parse

import pytest

from test_graph_helpers import assert_graph_error, graph_env, new_app  # noqa: F401


def _ids(response) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()["value"]}


@pytest.fixture
def apps(graph_env):
    """Three apps with distinguishing properties."""
    client = graph_env.http()
    return {
        "quote": new_app(client, displayName="O'Brien app", tags=["team:a", "env:prod"],
                         identifierUris=["api://obrien"], uniqueName="obrien"),
        "plain": new_app(client, displayName="Plain App", tags=["team:b"], uniqueName="plain"),
        "other": new_app(client, displayName="Other", tags=["team:a"]),
    }


@pytest.mark.parametrize("expr,expected", [
    ("displayName eq 'O''Brien app'", {"quote"}),
    ("displayName eq 'plain app'", {"plain"}),  # the directory compares strings case-insensitively
    ("uniqueName eq 'obrien'", {"quote"}),
    ("tags/any(t:t eq 'team:a')", {"quote", "other"}),
    ("tags/any(x: x eq 'TEAM:B')", {"plain"}),
    ("identifierUris/any(s:s eq 'api://obrien')", {"quote"}),
    ("startswith(displayName,'o')", {"quote", "other"}),
    ("displayName in ('Plain App', 'Other')", {"plain", "other"}),
    ("tags/any(t:t eq 'team:a') and startswith(displayName, 'Oth')", {"other"}),
    ("(uniqueName eq 'obrien' or uniqueName eq 'plain')", {"quote", "plain"}),
    ("displayName eq 'nobody'", set()),
])
def test_filters_on_applications(graph_env, apps, expr, expected):
    response = graph_env.http().get("/v1.0/applications", params={"$filter": expr})
    wanted = {apps[key]["id"] for key in expected}
    assert _ids(response) & {a["id"] for a in apps.values()} == wanted


def test_filter_by_app_id_and_id(graph_env, apps):
    client = graph_env.http()
    app = apps["plain"]
    assert _ids(client.get("/v1.0/applications", params={"$filter": f"appId eq '{app['appId']}'"})) == {app["id"]}
    assert _ids(client.get("/v1.0/applications", params={"$filter": f"id eq '{app['id']}'"})) == {app["id"]}
    # $filter option names are case-insensitive, unknown non-$ parameters (az sends api-version) are ignored
    assert _ids(client.get("/v1.0/applications", params={"$FILTER": f"appId eq '{app['appId']}'",
                                                         "api-version": "1.6"})) == {app["id"]}


@pytest.mark.parametrize("expr,message", [
    ("notes eq 'x'", "Unsupported or invalid query filter clause specified for property 'notes' of resource "
                     "'Application'."),
    ("tags/all(t:t eq 'x')", "property 'tags'"),
    ("createdDateTime eq '2020-01-01'", "property 'createdDateTime'"),
    # the documented response (graph/aad-advanced-queries, "Error handling for advanced queries")
    ("endswith(displayName,'x')", "Operator 'endsWith' is not supported because the required parameters might be "
                                  "missing. Try adding $count=true query parameter and ConsistencyLevel:eventual "
                                  "header. Refer to https://aka.ms/graph-docs/advanced-queries for more information"),
    ("displayName ne 'x'", "Operator 'ne' is not supported"),
    ("not(displayName eq 'x')", "Operator 'not' is not supported"),
])
def test_unsupported_filters(graph_env, expr, message):
    response = graph_env.http().get("/v1.0/applications", params={"$filter": expr})
    assert_graph_error(response, 400, "Request_UnsupportedQuery", message)


@pytest.mark.parametrize("expr,message", [
    ("displayName eq", "Invalid filter clause: Syntax error at position 14 in 'displayName eq'."),
    ("displayName eq 'x", "Invalid filter clause: There is an unterminated string literal at position 15"),
    ("displayName eq 'x' and", "Invalid filter clause: Syntax error"),
    ("displayName == 'x'", "Invalid filter clause: Syntax error: character '=' is not valid at position 12"),
    ("colour eq 'blue'", "Invalid filter clause: Could not find a property named 'colour' on type "
                         "'microsoft.graph.application'."),
    ("displayName eq 5", "Invalid filter clause: A binary operator with incompatible types was detected. Found "
                         "operand types 'Edm.String' and 'Edm.Int32' for operator kind 'Equal'."),
    ("tags eq 'x'", "Invalid filter clause: A binary operator with incompatible types"),
    ("displayName eq 'a' eq 'b'", "Invalid filter clause: Syntax error"),
])
def test_malformed_filters(graph_env, expr, message):
    response = graph_env.http().get("/v1.0/applications", params={"$filter": expr})
    assert_graph_error(response, 400, "BadRequest", message)


def test_advanced_queries_need_consistency_level_and_count(graph_env, apps):
    client = graph_env.http()
    params = {"$filter": "displayName ne 'Other' and tags/any(t:t eq 'team:a')", "$count": "true"}
    response = client.get("/v1.0/applications", params=params, headers={"ConsistencyLevel": "eventual"})
    assert _ids(response) == {apps["quote"]["id"]}
    assert response.json()["@odata.count"] == 1
    ends = client.get("/v1.0/applications", params={"$filter": "endswith(displayName,'app')", "$count": "true"},
                      headers={"ConsistencyLevel": "eventual"})
    assert _ids(ends) == {apps["quote"]["id"], apps["plain"]["id"]}
    # $count=true without the header is silently ignored, as documented
    ignored = client.get("/v1.0/applications", params={"$count": "true"})
    assert ignored.status_code == 200 and "@odata.count" not in ignored.json()
    # the header alone does not unlock ne
    assert_graph_error(client.get("/v1.0/applications", params={"$filter": "displayName ne 'x'"},
                                  headers={"ConsistencyLevel": "eventual"}), 400, "Request_UnsupportedQuery")


def test_select(graph_env, apps):
    client = graph_env.http()
    body = client.get("/v1.0/applications", params={"$select": "id,displayName",
                                                    "$filter": "uniqueName eq 'plain'"}).json()
    assert body["@odata.context"] == f"{graph_env.url}/v1.0/$metadata#applications(id,displayName)"
    assert body["value"] == [{"id": apps["plain"]["id"], "displayName": "Plain App"}]
    assert_graph_error(client.get("/v1.0/applications", params={"$select": "id,colour"}), 400, "BadRequest",
                       "Parsing OData Select and Expand failed: Could not find a property named 'colour' on type "
                       "'microsoft.graph.application'.")


def test_paging_with_top_and_next_link(graph_env):
    client = graph_env.http()
    created = {new_app(client, tags=["paged"])["id"] for _ in range(5)}
    seen: list[str] = []
    url = "/v1.0/applications?$filter=tags/any(t:t eq 'paged')&$top=2&$select=id"
    pages = 0
    while url:
        body = client.get(url).json()
        assert len(body["value"]) <= 2 and all(set(item) == {"id"} for item in body["value"])
        seen += [item["id"] for item in body["value"]]
        url = body.get("@odata.nextLink")
        pages += 1
        if url:
            parsed = urllib.parse.urlsplit(url)
            assert f"{parsed.scheme}://{parsed.netloc}" == graph_env.url
            query = urllib.parse.parse_qs(parsed.query)
            assert query["$top"] == ["2"] and query["$skiptoken"][0]
            assert query["$filter"] == ["tags/any(t:t eq 'paged')"]
    assert pages == 3 and len(seen) == 5 and set(seen) == created


def test_default_page_is_100(graph_env):
    client = graph_env.http()
    for _ in range(101):
        new_app(client, tags=["many"])
    body = client.get("/v1.0/applications", params={"$filter": "tags/any(t:t eq 'many')"}).json()
    assert len(body["value"]) == 100 and "@odata.nextLink" in body
    rest = client.get(body["@odata.nextLink"]).json()
    assert len(rest["value"]) == 1 and "@odata.nextLink" not in rest


@pytest.mark.parametrize("top,status,code,message", [
    ("1000", 400, "Request_BadRequest", "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive."),
    ("0", 400, "Request_BadRequest", "Invalid page size specified: '0'."),
    ("abc", 400, "BadRequest", "Invalid value 'abc' for $top query option found."),
])
def test_top_limits(graph_env, top, status, code, message):
    assert_graph_error(graph_env.http().get("/v1.0/applications", params={"$top": top}), status, code, message)
    assert graph_env.http().get("/v1.0/applications", params={"$top": "999"}).status_code == 200


def test_bad_skiptoken_and_unsupported_options(graph_env):
    client = graph_env.http()
    assert_graph_error(client.get("/v1.0/applications", params={"$skiptoken": "garbage"}), 400,
                       "Directory_ExpiredPageToken", "The specified page token value has expired")
    assert_graph_error(client.get("/v1.0/applications", params={"$expand": "owners"}), 400,
                       "Request_UnsupportedQuery", "'$expand'")
    app = new_app(client)
    assert_graph_error(client.get(f"/v1.0/applications/{app['id']}", params={"$filter": "appId eq 'x'"}), 400,
                       "BadRequest", "only on collections")


def test_service_principal_filters(graph_env):
    client = graph_env.http()
    app = new_app(client, displayName="sp filter app", tags=["t1"])
    sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}).json()
    for expr in (f"appId eq '{app['appId']}'", "displayName eq 'SP FILTER APP'",
                 f"servicePrincipalNames/any(c:c eq '{app['appId']}')", "tags/any(t:t eq 't1')",
                 f"appOwnerOrganizationId eq {graph_env.sb.tenant_id} and tags/any(t:t eq 't1')",
                 f"id eq '{sp['id']}' and accountEnabled eq true"):
        assert _ids(client.get("/v1.0/servicePrincipals", params={"$filter": expr})) == {sp["id"]}, expr
    assert_graph_error(client.get("/v1.0/servicePrincipals", params={"$filter": "notes eq 'x'"}), 400,
                       "Request_UnsupportedQuery", "resource 'ServicePrincipal'")
    assert_graph_error(client.get("/v1.0/servicePrincipals", params={"$filter": "accountEnabled eq 'yes'"}), 400,
                       "BadRequest", "'Edm.Boolean' and 'Edm.String'")
