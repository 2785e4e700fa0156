"""Malformed requests across every service get that service's documented 400, never a 5xx or a stack trace.

One table: bad JSON, wrong JSON types, unknown members, bad GUIDs, missing api-version, unreadable forms and
queries.  Each row names the status and the error code the real service answers (Graph ``error.code``, ARM
``error.code``, Entra's ``error`` plus AADSTS code, the control API's ``BadRequest``).
"""
from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from conftest import ARM_SCOPE, GRAPH_SCOPE

JSON = {"Content-Type": "application/json"}
RA_VERSION = "api-version=2022-04-01"
RG_VERSION = "api-version=2021-04-01"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FIC = {"name": "cred-1", "issuer": "https://gitlab.com", "subject": "s", "audiences": ["api://AzureADTokenExchange"]}


def _ra_body(**props: Any) -> dict[str, Any]:
    base = {"roleDefinitionId": f"/providers/Microsoft.Authorization/roleDefinitions/{READER}",
            "principalId": str(uuid.uuid4())}
    return {"properties": {**base, **props}}


# (id, service, method, path, request kwargs, status, code); {app}, {sub}, {tenant}, {ra} are filled in.
CASES: list[tuple[str, str, str, str, dict[str, Any], int, Any]] = [
    # --- Microsoft Graph
    ("graph-bad-json", "graph", "POST", "/v1.0/applications", {"content": b'{"displayName": ', "headers": JSON},
     400, "BadRequest"),
    ("graph-empty-body", "graph", "POST", "/v1.0/applications", {"content": b"", "headers": JSON}, 400,
     "BadRequest"),
    ("graph-array-body", "graph", "POST", "/v1.0/applications", {"json": []}, 400, "BadRequest"),
    ("graph-wrong-type", "graph", "POST", "/v1.0/applications", {"json": {"displayName": 5}}, 400, "BadRequest"),
    ("graph-null-collection", "graph", "POST", "/v1.0/applications", {"json": {"displayName": "a", "tags": None}},
     400, "BadRequest"),
    ("graph-unknown-key", "graph", "POST", "/v1.0/applications", {"json": {"displayName": "a", "colour": "b"}},
     400, "Request_BadRequest"),
    ("graph-read-only-key", "graph", "PATCH", "/v1.0/applications/{app}", {"json": {"appId": str(uuid.uuid4())}},
     400, "Request_BadRequest"),
    ("graph-bad-guid", "graph", "GET", "/v1.0/applications/not-a-guid", {}, 400, "Request_BadRequest"),
    ("graph-sp-bad-guid", "graph", "DELETE", "/v1.0/servicePrincipals/12345", {}, 400, "Request_BadRequest"),
    ("graph-sp-wrong-type", "graph", "POST", "/v1.0/servicePrincipals", {"json": {"appId": 5}}, 400,
     "BadRequest"),
    ("graph-fic-bad-json", "graph", "POST", "/v1.0/applications/{app}/federatedIdentityCredentials",
     {"content": b"{", "headers": JSON}, 400, "BadRequest"),
    ("graph-fic-wrong-type", "graph", "POST", "/v1.0/applications/{app}/federatedIdentityCredentials",
     {"json": {**FIC, "audiences": "api://AzureADTokenExchange"}}, 400, "BadRequest"),
    ("graph-fic-unknown-key", "graph", "POST", "/v1.0/applications/{app}/federatedIdentityCredentials",
     {"json": {**FIC, "subjects": ["s"]}}, 400, "Request_BadRequest"),
    ("graph-fic-expression-on-v1", "graph", "POST", "/v1.0/applications/{app}/federatedIdentityCredentials",
     {"json": {**FIC, "subject": None,
               "claimsMatchingExpression": {"value": "claims['sub'] eq 's'", "languageVersion": 1}}},
     400, "Request_BadRequest"),
    ("graph-fic-expression-wrong-type", "graph", "POST", "/beta/applications/{app}/federatedIdentityCredentials",
     {"json": {**FIC, "subject": None, "claimsMatchingExpression": {"value": "claims['sub'] eq 's'",
                                                                     "languageVersion": "1"}}},
     400, "BadRequest"),
    ("graph-type-error-before-directory-rules", "graph", "POST", "/beta/applications/{app}/"
     "federatedIdentityCredentials", {"json": {**FIC, "name": "n", "subject": None,
                                               "claimsMatchingExpression": {"value": 1, "languageVersion": 1}}},
     400, "BadRequest"),
    ("graph-get-by-ids-bad-guid", "graph", "POST", "/v1.0/directoryObjects/getByIds", {"json": {"ids": ["x"]}},
     400, "Request_BadRequest"),
    ("graph-get-by-ids-wrong-type", "graph", "POST", "/v1.0/directoryObjects/getByIds", {"json": {"ids": "x"}},
     400, "BadRequest"),
    ("graph-unterminated-filter", "graph", "GET", "/v1.0/applications?$filter=displayName eq 'x", {}, 400,
     "BadRequest"),
    ("graph-bad-top", "graph", "GET", "/v1.0/applications?$top=many", {}, 400, "BadRequest"),
    ("graph-batch-bad-json", "graph", "POST", "/v1.0/$batch", {"content": b"{", "headers": JSON}, 400,
     "BadRequest"),
    ("graph-bad-key-predicate", "graph", "GET", "/v1.0/applications(appId=x)", {}, 400, "BadRequest"),
    # --- Azure Resource Manager
    ("arm-missing-api-version", "arm", "GET", "/subscriptions", {}, 400, "MissingApiVersionParameter"),
    ("arm-ra-missing-api-version", "arm", "PUT", "/subscriptions/{sub}/providers/Microsoft.Authorization/"
     "roleAssignments/{ra}", {"json": _ra_body()}, 400, "MissingApiVersionParameter"),
    ("arm-bad-api-version", "arm", "GET", "/subscriptions?api-version=latest", {}, 400,
     "InvalidApiVersionParameter"),
    ("arm-ra-bad-json", "arm", "PUT", "/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments/"
     "{ra}?" + RA_VERSION, {"content": b'{"properties": ', "headers": JSON}, 400, "InvalidRequestContent"),
    ("arm-ra-empty-body", "arm", "PUT", "/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments/"
     "{ra}?" + RA_VERSION, {"content": b"", "headers": JSON}, 400, "InvalidRequestContent"),
    ("arm-ra-wrong-type", "arm", "PUT", "/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments/"
     "{ra}?" + RA_VERSION, {"json": _ra_body(principalId=5)}, 400, "InvalidRequestContent"),
    ("arm-ra-properties-not-object", "arm", "PUT", "/subscriptions/{sub}/providers/Microsoft.Authorization/"
     "roleAssignments/{ra}?" + RA_VERSION, {"json": {"properties": []}}, 400, "InvalidRequestContent"),
    ("arm-ra-unknown-key", "arm", "PUT", "/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments/"
     "{ra}?" + RA_VERSION, {"json": _ra_body(colour="blue")}, 400, "InvalidRequestContent"),
    ("arm-ra-missing-member", "arm", "PUT", "/subscriptions/{sub}/providers/Microsoft.Authorization/"
     "roleAssignments/{ra}?" + RA_VERSION, {"json": {"properties": {"principalId": str(uuid.uuid4())}}}, 400,
     "InvalidRequestContent"),
    ("arm-ra-bad-name", "arm", "PUT", "/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments/"
     "not-a-guid?" + RA_VERSION, {"json": _ra_body()}, 400, "InvalidRoleAssignmentId"),
    ("arm-ra-bad-principal-guid", "arm", "PUT", "/subscriptions/{sub}/providers/Microsoft.Authorization/"
     "roleAssignments/{ra}?" + RA_VERSION, {"json": _ra_body(principalId="nope")}, 400, "InvalidPrincipalId"),
    ("arm-ra-bad-role-definition-id", "arm", "PUT", "/subscriptions/{sub}/providers/Microsoft.Authorization/"
     "roleAssignments/{ra}?" + RA_VERSION, {"json": _ra_body(roleDefinitionId="Reader")}, 400,
     "InvalidRoleDefinitionId"),
    ("arm-ra-bad-principal-type", "arm", "PUT", "/subscriptions/{sub}/providers/Microsoft.Authorization/"
     "roleAssignments/{ra}?" + RA_VERSION, {"json": _ra_body(principalType="Robot")}, 400,
     "InvalidRequestContent"),
    ("arm-bad-subscription-guid", "arm", "GET", "/subscriptions/not-a-guid?api-version=2022-12-01", {}, 400,
     "InvalidSubscriptionId"),
    ("arm-rg-bad-json", "arm", "PUT", "/subscriptions/{sub}/resourceGroups/rg-x?" + RG_VERSION,
     {"content": b"[", "headers": JSON}, 400, "InvalidRequestContent"),
    ("arm-rg-wrong-type", "arm", "PUT", "/subscriptions/{sub}/resourceGroups/rg-x?" + RG_VERSION,
     {"json": {"location": 5}}, 400, "InvalidRequestContent"),
    ("arm-rg-bad-name", "arm", "PUT", "/subscriptions/{sub}/resourceGroups/rg*x?" + RG_VERSION,
     {"json": {"location": "westeurope"}}, 400, "InvalidResourceGroup"),
    ("arm-ra-bad-filter", "arm", "GET", "/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments?"
     + RA_VERSION + "&$filter=roleName eq 'x'", {}, 400, "UnsupportedQuery"),
    ("arm-ra-bad-skiptoken", "arm", "GET", "/subscriptions/{sub}/providers/Microsoft.Authorization/"
     "roleAssignments?" + RA_VERSION + "&$skiptoken=%25%25", {}, 400, "InvalidSkipToken"),
    # --- Entra token endpoint (OAuth error + AADSTS code)
    ("entra-json-body", "entra", "POST", "/{tenant}/oauth2/v2.0/token",
     {"json": {"grant_type": "client_credentials"}}, 400, ("invalid_request", 900144)),
    ("entra-undecodable-form", "entra", "POST", "/{tenant}/oauth2/v2.0/token",
     {"content": b"\xff\xfe%zz&&==", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 400,
     ("invalid_request", 900144)),
    ("entra-client-id-not-a-guid", "entra", "POST", "/{tenant}/oauth2/v2.0/token",
     {"data": {"grant_type": "client_credentials", "client_id": "not-a-guid", "client_secret": "x",
               "scope": GRAPH_SCOPE}}, 400, ("unauthorized_client", 700016)),
    ("entra-assertion-not-a-jwt", "entra", "POST", "/{tenant}/oauth2/v2.0/token",
     {"data": {"grant_type": "client_credentials", "client_id": "{operator}", "client_assertion": "x.y",
               "client_assertion_type": ASSERTION_TYPE, "scope": GRAPH_SCOPE}}, 400,
     ("invalid_request", 50027)),
    ("entra-wrong-assertion-type", "entra", "POST", "/{tenant}/oauth2/v2.0/token",
     {"data": {"grant_type": "client_credentials", "client_id": "{operator}", "client_assertion": "a.b.c",
               "client_assertion_type": "jwt", "scope": GRAPH_SCOPE}}, 400, ("invalid_request", 50027)),
    ("entra-scope-without-default", "entra", "POST", "/{tenant}/oauth2/v2.0/token",
     {"data": {"grant_type": "client_credentials", "client_id": "{operator}", "client_secret": "x",
               "scope": "https://graph.microsoft.com"}}, 400, ("invalid_scope", 1002012)),
    ("entra-bad-tenant", "entra", "POST", "/not a tenant/oauth2/v2.0/token",
     {"data": {"grant_type": "client_credentials"}}, 400, ("invalid_request", 90002)),
    # --- control API
    ("control-bad-json", "control", "POST", "/_sandbox/faults", {"content": b"{", "headers": JSON}, 400,
     "BadRequest"),
    ("control-not-object", "control", "POST", "/_sandbox/config", {"json": [1]}, 400, "BadRequest"),
    ("control-wrong-type", "control", "POST", "/_sandbox/faults", {"json": {"replication_lag": "long"}}, 400,
     "BadRequest"),
    ("control-unknown-key", "control", "POST", "/_sandbox/config", {"json": {"colour": "blue"}}, 400,
     "BadRequest"),
    ("control-mint-wrong-type", "control", "POST", "/_sandbox/gitlab/token", {"json": {"lifetime": "long"}}, 400,
     "BadRequest"),
    ("control-seed-bad-guid", "control", "POST", "/_sandbox/arm/subscriptions",
     {"json": {"subscriptionId": "nope"}}, 400, "BadRequest"),
]


@pytest.fixture(scope="module")
def target(sandbox) -> dict[str, Any]:
    """A reset sandbox, tokens and one application (the malformed requests change nothing)."""
    sandbox.reset()
    graph = sandbox.token(GRAPH_SCOPE)
    app = sandbox.graph("POST", "/v1.0/applications", token=graph, json={"displayName": "malformed-target"})
    assert app.status_code == 201, app.text
    return {"sb": sandbox, "graph": graph, "arm": sandbox.token(ARM_SCOPE), "app": app.json()["id"]}


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, replacement in names.items():
            value = value.replace("{" + key + "}", replacement)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


def _send(target: dict[str, Any], service: str, method: str, path: str, kwargs: dict[str, Any]) -> httpx.Response:
    sb = target["sb"]
    names = {"app": target["app"], "sub": sb.subscription_id, "tenant": sb.tenant_id, "ra": str(uuid.uuid4()),
             "operator": sb.operator.client_id}
    kwargs = {key: _fill(value, names) if key in ("data",) else value for key, value in kwargs.items()}
    headers = dict(kwargs.pop("headers", {}))
    if service in ("graph", "arm"):
        headers["Authorization"] = f"Bearer {target[service]}"
    return sb.http.request(method, _fill(path, names), headers=headers, **kwargs)


@pytest.mark.parametrize("case_id, service, method, path, kwargs, status, code", CASES, ids=[c[0] for c in CASES])
def test_malformed_request_gets_the_services_400(target, case_id, service, method, path, kwargs, status, code):
    response = _send(target, service, method, path, kwargs)
    assert response.status_code == status, (case_id, response.status_code, response.text[:400])
    assert "Traceback" not in response.text and "File \"" not in response.text
    assert "json" in response.headers.get("content-type", ""), response.headers
    body = response.json()
    if service == "entra":
        error, aadsts = code
        assert body["error"] == error and body["error_codes"] == [aadsts], body
        assert body["error_description"].startswith(f"AADSTS{aadsts}: ")
        return
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    if service == "graph":
        assert {"date", "request-id", "client-request-id"} <= set(body["error"]["innerError"])
        assert response.headers["request-id"] == body["error"]["innerError"]["request-id"]
    if service == "arm":
        assert response.headers["x-ms-request-id"]


def test_malformed_requests_changed_nothing(target):
    """After the table above: no application, credential, role assignment or group was created."""
    sb = target["sb"]
    state = sb.control("GET", "state").json()
    assert [a["displayName"] for a in state["applications"] if a["displayName"] == "malformed-target"] == [
        "malformed-target"]
    assert state["federated_identity_credentials"].get(target["app"], []) == []
    assert [g["name"] for g in state["resource_groups"]] == ["rg-sandbox"]
    assert len(state["role_assignments"]) == 2  # the two seeded operators'
    assert sb.control("GET", "stats").json()["errors_5xx"] == 0
