"""Odd and hostile input never produces a 5xx or a stack trace: always a Graph error envelope (4xx)."""
from __future__ import annotations

import uuid

import pytest

from test_graph_helpers import graph_env, new_app  # noqa: F401

ODD_PATHS = [
    "/v1.0", "/v1.0/", "/v1.0/$metadata", "/v1.0/applications/$count",
    "/v1.0/applications()", "/v1.0/applications(')", "/v1.0/applications(appId='x')extra",
    "/v1.0/applications(appId='a''b')", "/v1.0/applications(appId='x',uniqueName='y')",
    "/v1.0/applications(appId='x'/federatedIdentityCredentials", "/v1.0/applications/%00",
    "/v1.0/applications/{id}/federatedIdentityCredentials/a/b", "/v1.0/applications/{id}/owners/x/y/z",
    "/v1.0/applications/{id}/owners/$ref/extra", "/v1.0/applications/{id}/federatedIdentityCredentials(name='a')/x",
    "/v1.0/servicePrincipals/{id}/appRoleAssignments/a/b", "/v1.0/directory", "/v1.0/directory/other",
    "/v1.0/directory/deletedItems/{id}/restore/x", "/v1.0/directoryObjects/getByIds/x",
    "/v1.0/directoryObjects(appId='x')", "/v1.0/applications/ü", "/v1.0/applications/" + "a" * 5000,
]

ODD_QUERIES = [
    {"$filter": ""}, {"$filter": "("}, {"$filter": ")"}, {"$filter": "'"}, {"$filter": "tags/any("},
    {"$filter": "tags/any(t:)"}, {"$filter": "tags/any(t:t/x eq 'a')"},
    {"$filter": "tags/any(t:tags/any(u:u eq 'a'))"},
    {"$filter": "displayName in ()"}, {"$filter": "startswith('x', displayName)"},
    {"$filter": "startswith(displayName)"},
    {"$filter": "displayName eq null"}, {"$filter": "displayName gt 'a'"}, {"$filter": "1 eq 1"},
    {"$filter": "displayName eq 1e5"}, {"$filter": "not"}, {"$filter": "displayName/x eq 'a'"},
    {"$filter": "appId eq 5a1d5b0e-7e4a-4c1f-9d2e-3f0a6b8c9d10"}, {"$filter": "x" * 10000},
    {"$filter": "(" * 50 + "displayName eq 'a'" + ")" * 50},
    {"$filter": "(" * 5000 + "displayName eq 'a'" + ")" * 5000},
    {"$filter": "not " * 5000 + "displayName eq 'a'"}, {"$filter": " and ".join(["displayName eq 'a'"] * 800)},
    {"$filter": " or ".join(["tags/any(t:t eq 'a')"] * 800)},
    {"$select": ""}, {"$select": ",,"}, {"$top": "-1"}, {"$top": "99999999999999999999"}, {"$count": "maybe"},
    {"$skiptoken": "RFNwdAIAAQAAA!!!"}, {"$skiptoken": "RFNwdAIAAQAAAeyJhZnRlciI6MX0"}, {"$expand": "owners"},
]

ODD_BODIES = [b"null", b"1", b"\"x\"", b"[]", b"{\"displayName\": {\"a\": 1}}", b"[" * 100000 + b"]" * 100000,
              b"\xff\xfe", b"{\"displayName\": \"a\", \"web\": 1}", b"{\"displayName\": 1e999}",
              b"{\"displayName\": \"a\", \"@odata.type\": 5}"]


def _assert_graph_4xx(response, *, ok_allowed=False):
    low = 200 if ok_allowed else 400
    assert low <= response.status_code < 500, (response.status_code, response.text[:300])
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"]


def test_odd_paths(graph_env):
    client = graph_env.http()
    app = new_app(client)
    for path in ODD_PATHS:
        response = client.get(path.replace("{id}", app["id"]))
        _assert_graph_4xx(response)
    assert client.get("/beta/applications/").status_code == 200  # a trailing slash is harmless


def test_repeated_slashes_collapse_outside_quoted_keys(graph_env):
    client = graph_env.http()
    url = graph_env.url
    created = client.patch(f"{url}//v1.0//applications(uniqueName='a//b')", json={"displayName": "slashes"},
                           headers={"Prefer": "create-if-missing"})
    assert created.status_code == 201, created.text
    assert created.json()["uniqueName"] == "a//b"  # the key value keeps its slashes
    assert client.get(f"{url}/v1.0/applications(uniqueName='a//b')").json()["id"] == created.json()["id"]
    assert client.get(f"{url}/v1.0/applications(uniqueName='a/b')").status_code == 404
    listed = client.get(f"{url}//v1.0///applications", params={"$filter": "uniqueName eq 'a//b'"})
    assert [a["id"] for a in listed.json()["value"]] == [created.json()["id"]]
    assert listed.json()["@odata.context"] == f"{url}/v1.0/$metadata#applications"


@pytest.mark.parametrize("params", ODD_QUERIES, ids=[str(i) for i in range(len(ODD_QUERIES))])
def test_odd_queries(graph_env, params):
    _assert_graph_4xx(graph_env.http().get("/v1.0/applications", params=params), ok_allowed=True)


def test_odd_bodies(graph_env):
    client = graph_env.http()
    app = new_app(client)
    targets = ["/v1.0/applications", f"/v1.0/applications/{app['id']}/federatedIdentityCredentials",
               "/beta/servicePrincipals", "/v1.0/directoryObjects/getByIds",
               f"/v1.0/applications/{app['id']}/owners/$ref"]
    for url in targets:
        for raw in ODD_BODIES:
            _assert_graph_4xx(client.post(url, content=raw, headers={"Content-Type": "application/json"}))
    for raw in ODD_BODIES:
        _assert_graph_4xx(client.patch(f"/v1.0/applications/{app['id']}", content=raw,
                                       headers={"Content-Type": "application/json"}))


def test_odd_references_and_expressions(graph_env):
    client = graph_env.http()
    app = new_app(client)
    for ref in ("http://[::1", "", 5, None, "https://graph.microsoft.com/v1.0/directoryObjects('"
                                               + str(uuid.uuid4()) + "')"):
        _assert_graph_4xx(client.post(f"/v1.0/applications/{app['id']}/owners/$ref", json={"@odata.id": ref}))
    for value in ("claims['sub'] matches '" + "*" * 5000 + "'", "claims['" + "'" * 50 + "] eq 'x'",
                  "claims['sub'] eq '\u0000'"):
        response = client.post(f"/beta/applications/{app['id']}/federatedIdentityCredentials",
                               json={"name": "odd", "issuer": "https://gitlab.com", "audiences": ["a"],
                                     "claimsMatchingExpression": {"value": value, "languageVersion": 1}})
        assert response.status_code in (201, 400), response.text
        if response.status_code == 201:
            assert client.delete(f"/beta/applications/{app['id']}/federatedIdentityCredentials/odd").status_code \
                == 204
