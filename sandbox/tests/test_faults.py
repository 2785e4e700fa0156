"""Fault injection: throttling (rules and Graph's token buckets), 5xx, latency, determinism, validation."""
from __future__ import annotations

import time

import pytest

from conftest import ARM_SCOPE, GRAPH_SCOPE

ARM_LIST = "/subscriptions?api-version=2022-12-01"


def statuses(sb, n: int, token: str, path: str = "/v1.0/applications") -> list[int]:
    return [sb.http.get(path, headers={"Authorization": f"Bearer {token}"}).status_code for _ in range(n)]


def test_graph_throttle_rule(clean_sandbox):
    sb = clean_sandbox
    token = sb.token(GRAPH_SCOPE)
    sb.faults(rules=[{"service": "graph", "kind": "throttle", "times": 2, "retry_after": 3,
                      "methods": ["GET"], "path": "/applications"}])
    first = sb.graph("GET", "/v1.0/applications", token=token)
    assert first.status_code == 429
    assert first.headers["retry-after"] == "3"
    assert first.headers["x-ms-throttle-scope"] == (f"Tenant_Application/ReadWrite/{sb.operator.client_id}/"
                                                    f"{sb.tenant_id}")
    assert first.headers["x-ms-throttle-information"]
    error = first.json()["error"]
    assert error["code"] == "Request_ThrottledTemporarily" and "innerError" in error
    assert statuses(sb, 3, token) == [429, 200, 200]
    stats = sb.control("GET", "stats").json()
    assert stats["throttled"] == 2 and stats["faults_injected"] == 2
    described = sb.control("GET", "faults").json()["rules"][0]
    assert described["fired"] == 2 and described["matched"] == 4


def test_arm_and_entra_envelopes(clean_sandbox):
    sb = clean_sandbox
    token = sb.token(ARM_SCOPE)
    sb.faults(rules=[{"service": "arm", "kind": "throttle", "times": 1, "retry_after": 2},
                     {"service": "entra", "kind": "throttle", "times": 1},
                     {"service": "arm", "kind": "error", "status": 503, "after": 1, "times": 1}])
    throttled = sb.arm("GET", ARM_LIST, token=token)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "2"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    unavailable = sb.arm("GET", ARM_LIST, token=token)
    assert unavailable.status_code == 503 and unavailable.json()["error"]["code"] == "ServiceUnavailable"
    assert sb.arm("GET", ARM_LIST, token=token).status_code == 200
    entra = sb.token_request({"grant_type": "client_credentials", "client_id": sb.operator.client_id,
                              "client_secret": sb.operator.secret, "scope": ARM_SCOPE})
    assert entra.status_code == 429 and entra.json()["error"] == "temporarily_unavailable"
    assert entra.json()["error_codes"] == [90055] and "retry-after" in entra.headers


@pytest.mark.parametrize("status, code", [(500, "generalException"), (503, "serviceNotAvailable"),
                                          (504, "gatewayTimeout")])
def test_graph_5xx_envelopes(clean_sandbox, status, code):
    sb = clean_sandbox
    token = sb.token(GRAPH_SCOPE)
    sb.faults(rules=[{"service": "graph", "kind": "error", "status": status, "times": 1}])
    response = sb.graph("GET", "/v1.0/applications", token=token)
    assert response.status_code == status and response.json()["error"]["code"] == code


def test_rate_faults_are_deterministic_for_a_seed(clean_sandbox):
    sb = clean_sandbox
    token = sb.token(GRAPH_SCOPE)
    spec = {"seed": 42, "rules": [{"service": "graph", "kind": "error", "status": 503, "rate": 0.5}]}
    sb.faults(**spec)
    first = statuses(sb, 30, token)
    sb.faults(**spec)
    second = statuses(sb, 30, token)
    assert first == second
    assert 0 < first.count(503) < 30
    sb.faults(**{**spec, "seed": 7})
    assert statuses(sb, 30, token) != first


def test_throttle_rate_is_deterministic_for_a_seed(clean_sandbox):
    sb = clean_sandbox
    token = sb.token(GRAPH_SCOPE)
    spec = {"seed": 3, "rules": [{"service": "graph", "kind": "throttle", "rate": 0.3, "retry_after": 2}]}
    sb.faults(**spec)
    first = statuses(sb, 30, token)
    sb.reset(faults=spec)  # a reset with the same faults replays the same decisions
    assert statuses(sb, 30, token) == first
    assert set(first) == {200, 429} and 0 < first.count(429) < 30


def test_latency(clean_sandbox):
    sb = clean_sandbox
    token = sb.token(GRAPH_SCOPE)
    sb.faults(rules=[{"service": "graph", "kind": "latency", "ms": 150}])
    started = time.monotonic()
    assert sb.graph("GET", "/v1.0/applications", token=token).status_code == 200
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    sb.control("GET", "health")  # the control API is never delayed
    assert time.monotonic() - started < 0.15


def test_graph_quota_buckets(clean_sandbox):
    sb = clean_sandbox
    token = sb.token(GRAPH_SCOPE)
    # S tenant: 3,500 resource units per 10 s per app+tenant; scaled to 10 units.  GET applications costs 2.
    sb.faults(graph_quotas={"tenant_size": "S", "scale": 10 / 3500})
    responses = [sb.graph("GET", "/v1.0/applications", token=token) for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert responses[0].headers["x-ms-resource-unit"] == "2"
    assert "x-ms-throttle-limit-percentage" in responses[4].headers
    throttled = responses[5]
    assert throttled.json()["error"]["code"] == "Request_ThrottledTemporarily"
    assert int(throttled.headers["retry-after"]) >= 1
    assert throttled.headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    # another app has its own bucket
    other = sb.token(GRAPH_SCOPE, sb.restricted)
    assert sb.graph("GET", "/v1.0/applications", token=other).status_code == 200


def test_graph_write_quota(clean_sandbox):
    sb = clean_sandbox
    token = sb.token(GRAPH_SCOPE)
    # 3,000 writes per 150 s per app+tenant, scaled to 2 writes
    sb.faults(graph_quotas={"scale": 2 / 3000})
    codes = [sb.graph("POST", "/v1.0/applications", token=token,
                      json={"displayName": f"q{i}", "signInAudience": "AzureADMyOrg"}).status_code
             for i in range(3)]
    assert codes == [201, 201, 429]


@pytest.mark.parametrize("spec", [
    {"rules": [{"kind": "explode"}]},
    {"rules": [{"kind": "throttle", "rate": 2}]},
    {"rules": [{"kind": "error", "status": 404}]},
    {"rules": [{"kind": "error", "service": "dns"}]},
    {"rules": [{"kind": "error", "path": "("}]},
    {"rules": [{"kind": "error", "methods": "GET"}]},
    {"rules": [{"kind": "error", "times": -1}]},
    {"rules": "all"},
    {"replication_lag": -1},
    {"graph_quotas": {"tenant_size": "XL"}},
    {"graph_quotas": {"scale": 0}},
    {"unknown": 1},
    {"seed": [1]},
])
def test_bad_fault_specs_are_400_and_change_nothing(clean_sandbox, spec):
    sb = clean_sandbox
    sb.faults(replication_lag=0.5)
    response = sb.control("POST", "faults", json=spec)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"]
    assert sb.control("GET", "faults").json()["replication_lag"] == 0.5


def test_reset_clears_faults_and_reset_can_set_them(clean_sandbox):
    sb = clean_sandbox
    sb.faults(replication_lag=3)
    sb.reset()
    assert sb.control("GET", "faults").json()["replication_lag"] == 0
    sb.reset(faults={"replication_lag": 2})
    assert sb.control("GET", "faults").json()["replication_lag"] == 2
    assert sb.control("POST", "reset", json={"faults": {"rules": 1}}).status_code == 400


@pytest.mark.parametrize("method,path,query,cost", [
    ("GET", "/v1.0/applications", "", (2, 0)),
    ("GET", "/v1.0/applications", "$select=id,appId", (1, 0)),
    ("GET", "/v1.0/applications", "$top=5", (1, 0)),
    ("GET", "/v1.0/applications", "$top=20", (2, 0)),
    ("GET", "/v1.0/applications", "$select=id&$top=5", (1, 0)),  # never below 1
    ("GET", "/v1.0/applications", "$expand=owners", (3, 0)),
    ("GET", "/v1.0/applications/3f0c2a8e-0000-4000-8000-000000000001", "", (1, 0)),
    ("GET", "/v1.0/applications(uniqueName='x')", "$expand=owners", (2, 0)),
    ("GET", "/beta/applications/3f0c2a8e-0000-4000-8000-000000000001/federatedIdentityCredentials", "", (1, 0)),
    ("GET", "/v1.0/applications(appId='a')/extensionProperties", "", (2, 0)),
    ("GET", "/v1.0/servicePrincipals/3f0c2a8e-0000-4000-8000-000000000001/appRoleAssignments", "", (2, 0)),
    ("GET", "/v1.0/users", "", (2, 0)),
    ("GET", "/v1.0/users/u1/memberOf", "", (2, 0)),
    ("GET", "/v1.0/groups/g1/transitiveMembers", "$select=id", (4, 0)),
    ("POST", "/v1.0/directoryObjects/getByIds", "", (5, 0)),
    ("POST", "/v1.0/directoryObjects/getByIds", "$select=id", (2, 0)),
    ("PATCH", "/v1.0/applications(uniqueName='x')", "", (1, 1)),
    ("POST", "/v1.0/servicePrincipals", "", (1, 1)),
    ("DELETE", "/beta/applications/a/federatedIdentityCredentials/f", "", (1, 1)),
])
def test_graph_request_costs_follow_the_documented_table(method, path, query, cost):
    """Base costs by path, then $select -1, $expand +1, $top below 20 -1, never below 1; writes cost 1 unit + 1
    write (https://learn.microsoft.com/graph/throttling-limits, identity and access service limits)."""
    from oidc_sandbox.faults import GraphQuotas

    assert GraphQuotas.cost(method, path, query) == cost


def test_graph_quota_costs_are_reported_and_window_scale_speeds_refill(clean_sandbox):
    sb = clean_sandbox
    token = sb.token(GRAPH_SCOPE)
    sb.faults(graph_quotas={"tenant_size": "S"})
    assert sb.graph("GET", "/v1.0/applications?$select=id", token=token).headers["x-ms-resource-unit"] == "1"
    assert sb.graph("GET", "/v1.0/applications?$top=50", token=token).headers["x-ms-resource-unit"] == "2"
    # 3,000 writes per 150 s scaled to 2 writes per 1.5 s (window_scale 0.01): the same rate as the real quota
    sb.faults(graph_quotas={"tenant_size": "L", "scale": 2 / 3000, "window_scale": 0.01})
    codes = [sb.graph("POST", "/v1.0/applications", token=token,
                      json={"displayName": f"w{i}", "signInAudience": "AzureADMyOrg"}) for i in range(3)]
    assert [r.status_code for r in codes] == [201, 201, 429]
    assert codes[1].headers["x-ms-throttle-limit-percentage"] == "1.0"
    assert codes[2].headers["x-ms-throttle-scope"].startswith("Tenant_Application/Write/")
    time.sleep(0.8)  # one write refills in 0.75 s
    assert sb.graph("POST", "/v1.0/applications", token=token,
                    json={"displayName": "w3", "signInAudience": "AzureADMyOrg"}).status_code == 201
    assert sb.control("GET", "faults").json()["graph_quotas"] == {"tenant_size": "L", "scale": 2 / 3000,
                                                                 "window_scale": 0.01}
