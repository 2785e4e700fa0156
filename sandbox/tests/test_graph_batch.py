"""JSON batching (``POST /$batch``): up to 20 requests, dependsOn and 424, per-request auth and throttling."""
from __future__ import annotations

import pytest

from conftest import ARM_SCOPE

from test_graph_helpers import assert_graph_error, graph_env  # noqa: F401

JSON = {"Content-Type": "application/json"}


def _upsert(item_id: str, unique_name: str, **extra) -> dict:
    return {"id": item_id, "method": "PATCH", "url": f"/applications(uniqueName='{unique_name}')",
            "headers": {**JSON, "Prefer": "create-if-missing"}, "body": {"displayName": unique_name}, **extra}


def test_batch_runs_requests_and_honours_depends_on(graph_env):
    client = graph_env.http()
    body = {"requests": [
        _upsert("1", "batch-one"),
        {"id": "2", "method": "GET", "url": "/applications(uniqueName='batch-one')?$select=displayName",
         "dependsOn": ["1"]},
        {"id": "3", "method": "GET", "url": "applications/not-a-guid"},
        {"id": "4", "method": "GET", "url": "/applications", "dependsOn": ["3"]},
        {"id": "5", "method": "DELETE", "url": "/applications(uniqueName='nobody')"},
    ]}
    response = client.post("/v1.0/$batch", json=body)
    assert response.status_code == 200, response.text
    results = {r["id"]: r for r in response.json()["responses"]}
    assert results["1"]["status"] == 201 and results["1"]["body"]["uniqueName"] == "batch-one"
    assert results["1"]["headers"]["Content-Type"] == "application/json"
    assert results["2"]["status"] == 200 and results["2"]["body"]["displayName"] == "batch-one"
    assert results["3"]["status"] == 400 and results["3"]["body"]["error"]["code"] == "Request_BadRequest"
    assert results["4"]["status"] == 424 and results["4"]["body"]["error"]["code"] == "FailedDependency"
    assert results["5"]["status"] == 404
    assert client.get("/v1.0/applications(uniqueName='batch-one')").status_code == 200
    again = client.post("/beta/$batch", json={"requests": [_upsert("a", "batch-one")]}).json()["responses"]
    assert again == [{"id": "a", "status": 204, "headers": {}}]


@pytest.mark.parametrize("body,message", [
    ({}, "Invalid batch payload format"),
    ({"requests": []}, "Invalid batch payload format"),
    ({"requests": [{"id": str(i), "method": "GET", "url": "/applications"} for i in range(21)]},
     "limited to 20"),
    ({"requests": [{"id": "1", "method": "GET"}]}, "every request needs string 'id', 'method' and 'url'"),
    ({"requests": [{"id": "1", "method": "POST", "url": "/applications", "body": {"displayName": "x"}}]},
     "Write request id : 1 does not contain Content-Type header or body."),
    ({"requests": [{"id": "1", "method": "POST", "url": "/applications", "headers": JSON}]},
     "Write request id : 1 does not contain Content-Type header or body."),
    ({"requests": [{"id": "1", "method": "GET", "url": "/applications"}] * 2}, "ids must be unique"),
    ({"requests": [{"id": "1", "method": "GET", "url": "/applications", "dependsOn": ["9"]}]},
     "depends on unknown request id(s): 9"),
    ({"requests": [{"id": "1", "method": "GET", "url": "/applications", "dependsOn": ["2"]},
                   {"id": "2", "method": "GET", "url": "/applications", "dependsOn": ["1"]}]}, "cycle"),
    ({"requests": [{"id": "1", "method": "GET", "url": "/applications", "headers": {"x": 1}}]},
     "'headers' must be an object of strings"),
])
def test_malformed_batches_fail_as_a_whole(graph_env, body, message):
    assert_graph_error(graph_env.http().post("/v1.0/$batch", json=body), 400, "BadRequest", message)


def test_batch_needs_post_and_a_token(graph_env):
    assert_graph_error(graph_env.http().get("/v1.0/$batch"), 405, "Request_BadRequest")
    response = graph_env.http(token="").post("/v1.0/$batch", json={"requests": [
        {"id": "1", "method": "GET", "url": "/applications"}]})
    assert_graph_error(response, 401, "InvalidAuthenticationToken")


def test_inner_requests_are_checked_on_their_own(graph_env):
    reader = graph_env.http(graph_env.restricted())
    body = {"requests": [
        {"id": "read", "method": "GET", "url": "/applications?$top=1"},
        {"id": "write", "method": "POST", "url": "/applications", "headers": JSON, "body": {"displayName": "x"}},
        {"id": "nested", "method": "POST", "url": "/$batch", "headers": JSON, "body": {"requests": []}},
        {"id": "absolute", "method": "GET", "url": "https://graph.microsoft.com/v1.0/applications"},
        {"id": "verb", "method": "TRACE", "url": "/applications"},
    ]}
    results = {r["id"]: r for r in reader.post("/v1.0/$batch", json=body).json()["responses"]}
    assert results["read"]["status"] == 200 and len(results["read"]["body"]["value"]) == 1
    assert results["write"]["status"] == 403
    assert results["write"]["body"]["error"]["code"] == "Authorization_RequestDenied"
    assert results["nested"]["status"] == 400 and results["absolute"]["status"] == 400
    assert results["verb"]["status"] == 405


def test_inner_requests_are_throttled_individually(graph_env):
    graph_env.sb.faults(rules=[{"service": "graph", "kind": "throttle", "rate": 1.0, "times": 1, "retry_after": 7,
                                "methods": ["PATCH"], "path": "/applications"}])
    body = {"requests": [_upsert("1", "throttled-one"), _upsert("2", "throttled-two"),
                         {"id": "3", "method": "GET", "url": "/applications?$top=1"}]}
    response = graph_env.http().post("/v1.0/$batch", json=body)
    assert response.status_code == 200
    results = {r["id"]: r for r in response.json()["responses"]}
    assert results["1"]["status"] == 429 and results["1"]["headers"]["Retry-After"] == "7"
    assert results["1"]["body"]["error"]["code"] == "Request_ThrottledTemporarily"
    assert results["2"]["status"] == 201 and results["3"]["status"] == 200


def test_inner_requests_are_charged_against_the_graph_quotas(graph_env):
    """Each inner request costs what it would cost alone (ctx.faults.graph_charge); the outer $batch costs
    nothing.  S tenant: 3,500 resource units per 10 s per app+tenant, scaled to 5; GET applications costs 2
    ($top of 20 or more does not lower it)."""
    client = graph_env.http()  # token issued before the quotas are switched on
    graph_env.sb.faults(graph_quotas={"tenant_size": "S", "scale": 5 / 3500})
    body = {"requests": [{"id": str(i), "method": "GET", "url": "/applications?$top=20"} for i in range(1, 5)]}
    response = client.post("/v1.0/$batch", json=body)
    assert response.status_code == 200, response.text
    assert "x-ms-resource-unit" not in response.headers  # the envelope itself is not charged
    results = {r["id"]: r for r in response.json()["responses"]}
    assert [results[str(i)]["status"] for i in range(1, 5)] == [200, 200, 429, 429]
    throttled = results["3"]
    assert throttled["body"]["error"]["code"] == "Request_ThrottledTemporarily"
    assert int(throttled["headers"]["Retry-After"]) >= 1
    assert throttled["headers"]["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    assert throttled["headers"]["x-ms-throttle-scope"].startswith("Tenant_Application/ReadWrite/")
    assert results["1"]["headers"]["x-ms-resource-unit"] == "2"  # an inner answer carries its own cost
    # the same bucket answers a plain request of the same app: 1 unit left, GET applications needs 2
    alone = client.get("/v1.0/applications?$top=20")
    assert alone.status_code == 429, alone.text
    # another app has its own bucket, in a batch as well
    other = graph_env.http(graph_env.restricted())
    first = other.post("/v1.0/$batch", json={"requests": body["requests"][:1]}).json()["responses"]
    assert first[0]["status"] == 200


def test_inner_writes_are_charged_against_the_write_quota(graph_env):
    """3,000 writes per 150 s per app+tenant, scaled to 2 (L tenant: 8,000 units, 5.3 after scaling): the third
    write of a batch gets 429 for the write limit."""
    client = graph_env.http()
    graph_env.sb.faults(graph_quotas={"tenant_size": "L", "scale": 2 / 3000})
    body = {"requests": [_upsert(str(i), f"quota-{i}") for i in range(1, 4)]}
    results = {r["id"]: r for r in client.post("/v1.0/$batch", json=body).json()["responses"]}
    assert [results[str(i)]["status"] for i in range(1, 4)] == [201, 201, 429]
    assert results["3"]["headers"]["x-ms-throttle-information"] == "WriteLimitExceeded"
    assert client.get("/v1.0/applications(uniqueName='quota-3')").status_code == 404


def test_stats_count_inner_requests_as_the_quotas_do(graph_env):
    """``GET /_sandbox/stats``: the top level counts HTTP requests (one POST per batch); the ``graph`` block counts
    each inner request (the envelope only in ``batches``), writes Graph ran, 429s (quota buckets apart), 424s."""
    client = graph_env.http()
    sb = graph_env.sb
    sb.faults(rules=[{"service": "graph", "kind": "throttle", "times": 1, "retry_after": 1, "methods": ["PATCH"],
                      "path": "stats-throttled"}],
              graph_quotas={"tenant_size": "L", "scale": 3 / 3000})  # 3 writes (L: 8 units)
    sb.control("POST", "stats/reset")
    body = {"requests": [
        _upsert("1", "stats-one"),
        _upsert("2", "stats-two"),
        _upsert("3", "stats-throttled"),                  # fault rule: 429, not run
        {"id": "4", "method": "GET", "url": "/applications(uniqueName='stats-one')", "dependsOn": ["3"]},  # 424
        {"id": "5", "method": "GET", "url": "/applications(uniqueName='stats-one')", "dependsOn": ["4"]},  # 424
        _upsert("6", "stats-three"),                      # third write: fits the quota
        _upsert("7", "stats-four"),                       # fourth write: quota 429
        {"id": "8", "method": "GET", "url": "/applications(uniqueName='stats-two')"},
    ]}
    results = {r["id"]: r["status"] for r in client.post("/v1.0/$batch", json=body).json()["responses"]}
    assert results == {"1": 201, "2": 201, "3": 429, "4": 424, "5": 424, "6": 201, "7": 429, "8": 200}
    arm = sb.arm("GET", "/subscriptions?api-version=2022-12-01", token=sb.token(ARM_SCOPE))
    assert arm.status_code == 200
    stats = sb.control("GET", "stats").json()
    assert stats["graph"] == {"requests": 6, "reads": 1, "writes": 3, "throttled": 2, "quota_throttled": 1,
                              "faulted": 1, "errors_5xx": 0, "batches": 1, "batch_requests": 8, "not_attempted": 2}
    assert stats["arm"]["requests"] == 1 and stats["arm"]["reads"] == 1 and stats["arm"]["throttled"] == 0
    assert stats["writes"] == 1 and stats["throttled"] == 0  # HTTP level: one POST /$batch, answered 200
    assert stats["batch_by_route"]["PATCH /v1.0/applications(uniqueName='{uniqueName}')"] == 5
