"""Graph's advanced queries on applications and service principals (learn.microsoft.com/graph/aad-advanced-queries,
/graph/search-query-parameter): ``/$count``, ``$count=true`` with ``@odata.count``, ``$search``, ``$orderby``,
``startswith``/``endswith``/``in``, each refused without ``ConsistencyLevel: eventual`` exactly where Graph refuses it,
with the documented error; through HTTP and through msgraph-sdk."""
from __future__ import annotations

import pytest

from test_graph_helpers import assert_graph_error, graph_env, new_app, run  # noqa: F401

EVENTUAL = {"ConsistencyLevel": "eventual"}


@pytest.fixture
def named(graph_env):
    """Applications (and service principals) with names chosen for tokenized search and sorting."""
    client = graph_env.http()
    apps = {
        "hello": new_app(client, displayName="HelloWorld Portal", description="billing team",
                         tags=["aq"]),
        "dotted": new_app(client, displayName="hello.world tools", description="Ops", tags=["aq"]),
        "numbers": new_app(client, displayName="app123service", tags=["aq"]),
        "upper": new_app(client, displayName="HELLOworld", tags=["aq"]),
        "zeta": new_app(client, displayName="zeta deploy", description="Billing and more", tags=["aq"]),
    }
    for app in apps.values():
        assert client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}).status_code == 201
    return apps


def _names(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["displayName"] for item in response.json()["value"]]


def test_count_segment(graph_env, named):
    client = graph_env.http()
    total = client.get("/v1.0/applications/$count", headers=EVENTUAL)
    assert total.status_code == 200 and total.headers["content-type"].startswith("text/plain")
    all_apps = client.get("/v1.0/applications", params={"$top": "999"}).json()["value"]
    assert int(total.text) == len(all_apps)
    tagged = client.get("/v1.0/applications/$count", params={"$filter": "tags/any(t:t eq 'aq')"}, headers=EVENTUAL)
    assert tagged.text == "5"
    ends = client.get("/v1.0/applications/$count", params={"$filter": "endswith(displayName,'deploy')"},
                      headers=EVENTUAL)
    assert ends.text == "1"  # the /$count segment is itself an advanced query
    searched = client.get("/beta/servicePrincipals/$count", params={"$search": '"displayName:hello"'},
                          headers=EVENTUAL)
    assert searched.text == "3"
    # without the header: the documented error
    assert_graph_error(client.get("/v1.0/applications/$count"), 400, "Request_BadRequest",
                       "$count is not currently supported.")
    assert_graph_error(client.get("/v1.0/servicePrincipals/$count"), 400, "Request_BadRequest",
                       "$count is not currently supported.")
    assert client.post("/v1.0/applications/$count", headers=EVENTUAL, json={}).status_code == 405


def test_count_parameter(graph_env, named):
    client = graph_env.http()
    params = {"$filter": "tags/any(t:t eq 'aq')", "$count": "true", "$top": "2"}
    counted = client.get("/v1.0/applications", params=params, headers=EVENTUAL).json()
    assert counted["@odata.count"] == 5 and len(counted["value"]) == 2 and "@odata.nextLink" in counted
    # documented: without ConsistencyLevel the $count query parameter is silently ignored
    ignored = client.get("/v1.0/applications", params=params)
    assert ignored.status_code == 200 and "@odata.count" not in ignored.json()
    assert_graph_error(client.get("/v1.0/applications", params={"$count": "yes"}, headers=EVENTUAL), 400,
                       "BadRequest", "Invalid value 'yes' for $count query option")


@pytest.mark.parametrize("search,expected", [
    ('"displayName:hello"', {"HelloWorld Portal", "hello.world tools", "HELLOworld"}),
    ('"displayName:world"', {"HelloWorld Portal", "hello.world tools"}),  # HELLOworld is one token
    ('"displayName:helloworld"', {"hello.world tools", "HELLOworld"}),  # words joined only by symbols combine
    ('"displayName:123"', {"app123service"}),
    ('"displayName:serv"', {"app123service"}),  # tokens match by prefix
    ('"displayName:World Hello"', {"HelloWorld Portal", "hello.world tools"}),  # any order
    ('"displayName:ortal"', set()),  # no "contains" logic
    ('"description:billing"', {"HelloWorld Portal", "zeta deploy"}),
    ('"displayName:zeta" OR "description:ops"', {"zeta deploy", "hello.world tools"}),
    ('"description:billing" AND ("displayName:zeta" OR "displayName:portal")', {"zeta deploy", "HelloWorld Portal"}),
    ('"displayName:hello" AND "description:team"', {"HelloWorld Portal"}),
])
def test_search_tokenizes_display_name_and_description(graph_env, named, search, expected):
    response = graph_env.http().get("/v1.0/applications", params={"$search": search}, headers=EVENTUAL)
    assert set(_names(response)) == expected


def test_search_rules(graph_env, named):
    client = graph_env.http()
    # documented error without the header (no $count=true is needed with it)
    assert_graph_error(client.get("/v1.0/applications", params={"$search": '"displayName:hello"'}), 400,
                       "Request_UnsupportedQuery", "Request with $search query parameter only works through MSGraph "
                                                   "with a special request header: 'ConsistencyLevel: eventual'")
    # $search and $filter together: a logical AND
    both = client.get("/v1.0/applications", params={"$search": '"displayName:hello"',
                                                    "$filter": "startswith(displayName,'hello.')"}, headers=EVENTUAL)
    assert _names(both) == ["hello.world tools"]
    # other string properties behave like startswith
    app_id = named["zeta"]["appId"]
    by_app_id = client.get("/v1.0/servicePrincipals", params={"$search": f'"appId:{app_id[:8]}"'}, headers=EVENTUAL)
    assert _names(by_app_id) == ["zeta deploy"]
    for bad in ("hello", '"displayName hello"', '"displayName:x" and "description:y"', '"displayName:x" OR'):
        assert_graph_error(client.get("/v1.0/applications", params={"$search": bad}, headers=EVENTUAL), 400,
                           "BadRequest", "invalid $search expression")
    assert_graph_error(client.get("/v1.0/applications", params={"$search": '"colour:red"'}, headers=EVENTUAL), 400,
                       "Request_UnsupportedQuery", "property 'colour'")


def test_orderby(graph_env, named):
    client = graph_env.http()
    params = {"$filter": "tags/any(t:t eq 'aq')", "$orderby": "displayName", "$count": "true"}
    ascending = _names(client.get("/v1.0/applications", params=params, headers=EVENTUAL))
    assert ascending == sorted(ascending, key=str.lower) and len(ascending) == 5
    descending = _names(client.get("/v1.0/applications", params={**params, "$orderby": "displayName desc"},
                                   headers=EVENTUAL))
    assert descending == ascending[::-1]
    # paging keeps the order across pages
    seen, url = [], None
    page = client.get("/v1.0/servicePrincipals", params={**params, "$top": "2"}, headers=EVENTUAL).json()
    while True:
        seen += [item["displayName"] for item in page["value"]]
        url = page.get("@odata.nextLink")
        if not url:
            break
        page = client.get(url, headers=EVENTUAL).json()
    assert seen == ascending
    # $orderby is advanced-only: without the header or without $count=true Graph refuses it
    for headers, query in (({}, params), (EVENTUAL, {"$orderby": "displayName"}),
                           ({}, {"$orderby": "displayName"})):
        assert_graph_error(client.get("/v1.0/applications", params=query, headers=headers), 400,
                           "Request_UnsupportedQuery", "Sorting not supported for current query.")
    assert_graph_error(client.get("/v1.0/applications", params={**params, "$orderby": "notes"}, headers=EVENTUAL),
                       400, "Request_UnsupportedQuery", "An unsupported property was specified.")
    assert_graph_error(client.get("/v1.0/applications", params={**params, "$orderby": "colour"}, headers=EVENTUAL),
                       400, "BadRequest", "Could not find a property named 'colour'")


@pytest.mark.parametrize("resource", ["applications", "servicePrincipals"])
def test_which_filters_need_advanced_queries(graph_env, named, resource):
    client = graph_env.http()
    # startswith and in are default-supported on displayName: no header needed (what az ad app/sp list sends)
    assert set(_names(client.get(f"/v1.0/{resource}", params={"$filter": "startswith(displayName,'hello')"}))) == \
        {"HelloWorld Portal", "hello.world tools", "HELLOworld"}
    assert set(_names(client.get(f"/v1.0/{resource}",
                                 params={"$filter": "displayName in ('zeta deploy', 'HELLOworld')"}))) == \
        {"zeta deploy", "HELLOworld"}
    # endswith, ne, not and eq null need ConsistencyLevel: eventual plus $count=true
    for expr, op in (("endswith(displayName,'deploy')", "endsWith"), ("displayName ne 'x'", "ne"),
                     ("not(displayName eq 'x')", "not"), ("description eq null", "eq")):
        for headers, params in (({}, {"$filter": expr}), (EVENTUAL, {"$filter": expr}),
                                ({}, {"$filter": expr, "$count": "true"})):
            assert_graph_error(client.get(f"/v1.0/{resource}", params=params, headers=headers), 400,
                               "Request_UnsupportedQuery", f"Operator '{op}' is not supported because the required "
                                                           f"parameters might be missing.")
        advanced = client.get(f"/v1.0/{resource}", params={"$filter": f"tags/any(t:t eq 'aq') and {expr}",
                                                          "$count": "true"}, headers=EVENTUAL)
        assert advanced.status_code == 200, advanced.text
    ends = client.get(f"/v1.0/{resource}", params={"$filter": "endswith(displayName,'deploy')", "$count": "true"},
                      headers=EVENTUAL)
    assert _names(ends) == ["zeta deploy"] and ends.json()["@odata.count"] == 1


def test_advanced_queries_through_the_sdk(graph_env, named):
    """msgraph-sdk: ``applications.count`` (text/plain) and ``$count``/``$search``/``$orderby`` with the header."""
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder
    from msgraph.generated.applications.count.count_request_builder import CountRequestBuilder

    async def call():
        async with graph_env.sdk() as sdk:
            count_config = RequestConfiguration(query_parameters=CountRequestBuilder.CountRequestBuilderGetQueryParameters(
                filter="tags/any(t:t eq 'aq')"))
            count_config.headers.add("ConsistencyLevel", "eventual")
            count = await sdk.applications.count.get(request_configuration=count_config)
            list_config = RequestConfiguration(
                query_parameters=ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
                    search='"displayName:hello"', orderby=["displayName desc"], count=True,
                    select=["id", "displayName"]))
            list_config.headers.add("ConsistencyLevel", "eventual")
            page = await sdk.applications.get(request_configuration=list_config)
            return count, page

    count, page = run(call())
    assert count == 5
    assert page.odata_count == 3
    assert [app.display_name for app in page.value] == ["HelloWorld Portal", "HELLOworld", "hello.world tools"]
