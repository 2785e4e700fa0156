"""The ``/_sandbox`` control API: health, state, stats, config, clock, reset, and its error handling."""
from __future__ import annotations

import pytest

from conftest import ARM_SCOPE, GRAPH_SCOPE

POST_ENDPOINTS = ["reset", "faults", "gitlab/token", "issuers", "config", "clock"]


def test_health(sandbox):
    body = sandbox.control("GET", "health").json()
    assert body["status"] == "ok" and body["base_url"] == sandbox.url
    assert body["tenant_id"] == sandbox.tenant_id and body["gitlab_issuer"] == sandbox.gitlab_issuer


def test_state_lists_seed_without_secrets(clean_sandbox):
    sb = clean_sandbox
    response = sb.control("GET", "state")
    assert response.status_code == 200
    text = response.text
    assert sb.operator.secret not in text and sb.restricted.secret not in text
    assert '"secret"' not in text and "PRIVATE" not in text
    state = response.json()
    app_ids = {app["appId"] for app in state["applications"]}
    assert {sb.operator.client_id, sb.restricted.client_id} <= app_ids
    sp_app_ids = {sp["appId"] for sp in state["service_principals"]}
    assert {"00000003-0000-0000-c000-000000000000", sb.operator.client_id} <= sp_app_ids
    assert [s["subscriptionId"] for s in state["subscriptions"]] == [sb.subscription_id]
    assert [g["name"] for g in state["resource_groups"]] == ["rg-sandbox"]
    owner = [ra for ra in state["role_assignments"]
             if ra["properties"]["roleDefinitionId"].endswith("8e3af657-a8ff-443c-a75c-2fe8c4bcb635")]
    assert len(owner) == 1 and owner[0]["id"].startswith(f"/subscriptions/{sb.subscription_id}/providers/"
                                                         "Microsoft.Authorization/roleAssignments/")
    assert not any(key.startswith("_") for app in state["applications"] for key in app)
    assert {i["name"] for i in state["issuers"]} == {"gitlab.com", "gitlab.example.com"}


def test_seed_ids_are_stable_across_resets(clean_sandbox):
    first = clean_sandbox.control("GET", "state").json()
    clean_sandbox.reset()
    second = clean_sandbox.control("GET", "state").json()
    assert first["applications"] == second["applications"]
    assert first["role_assignments"] == second["role_assignments"]


def test_stats(clean_sandbox):
    sb = clean_sandbox
    graph, arm = sb.token(GRAPH_SCOPE), sb.token(ARM_SCOPE)
    sb.graph("GET", "/v1.0/applications", token=graph)
    sb.graph("GET", f"/v1.0/applications(appId='{sb.operator.client_id}')", token=graph)
    sb.arm("GET", "/subscriptions?api-version=2022-12-01", token=arm)
    sb.token_request({"grant_type": "client_credentials", "client_id": sb.operator.client_id,
                      "client_secret": "wrong", "scope": ARM_SCOPE})
    stats = sb.control("GET", "stats").json()
    assert stats["tokens_issued"] == 2 and stats["tokens_by_service"] == {"graph": 1, "arm": 1}
    assert stats["token_failures"] == {"AADSTS7000215": 1}
    assert stats["by_service"]["graph"] == 2 and stats["by_service"]["arm"] == 1 and stats["by_service"]["entra"] == 3
    routes = stats["by_route"]
    assert routes["POST /{tenant}/oauth2/v2.0/token"] == 3
    assert routes["GET /v1.0/applications"] == 1
    assert routes["GET /v1.0/applications(appId='{appId}')"] == 1
    assert routes["GET /subscriptions"] == 1
    assert stats["reads"] == 3 and stats["writes"] == 0
    assert stats["by_status"]["401"] == 1
    assert sb.control("POST", "stats/reset").json()["total"] == 0
    assert sb.control("GET", "stats").json()["total"] == 1  # the stats/reset call itself


def test_config_get_and_update(clean_sandbox):
    sb = clean_sandbox
    current = sb.control("GET", "config").json()
    assert current["local_issuers_are_gitlab"] is True and "gitlab" in current["flexible_issuers"]
    updated = sb.control("POST", "config", json={"jwks_cache_seconds": 60, "access_token_lifetime": 600}).json()
    assert updated["jwks_cache_seconds"] == 60
    token = sb.token_request({"grant_type": "client_credentials", "client_id": sb.operator.client_id,
                              "client_secret": sb.operator.secret, "scope": ARM_SCOPE}).json()
    assert token["expires_in"] == 600
    sb.control("POST", "config", json={"jwks_cache_seconds": 0, "access_token_lifetime": 3599})


@pytest.mark.parametrize("body", [
    {"tenant_id": "x"}, {"jwks_cache_seconds": "1"}, {"jwks_cache_seconds": -1}, {"access_token_lifetime": 5},
    {"local_issuers_are_gitlab": "yes"}, {"flexible_issuers": {"gitlab": "https://gitlab.com"}},
])
def test_bad_config_is_400(sandbox, body):
    before = sandbox.control("GET", "config").json()
    response = sandbox.control("POST", "config", json=body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "BadRequest"
    assert sandbox.control("GET", "config").json() == before


def test_flexible_issuer_allow_list_patterns(clean_sandbox):
    sb = clean_sandbox
    sb.control("POST", "config", json={"flexible_issuers": {"gitlab": ["https://gitlab.*.com"]}})
    config = sb.control("GET", "config").json()
    assert config["flexible_issuers"] == {"gitlab": ["https://gitlab.*.com"]}
    sb.reset(config={"flexible_issuers": {"gitlab": ["https://gitlab.com", "https://gitlab.*.com",
                                                     "https://gitlab.*.ca"],
                                          "github": ["https://token.actions.githubusercontent.com"],
                                          "terraform": ["https://app.terraform.io", "https://app.eu.terraform.io"]}})


def test_clock(clean_sandbox):
    sb = clean_sandbox
    before = sb.control("GET", "clock").json()
    after = sb.control("POST", "clock", json={"advance": 120}).json()
    assert after["offset"] == 120 and after["time"] >= before["time"] + 119
    assert sb.control("POST", "clock", json={"offset": 0}).json()["offset"] == 0
    for body in ({"advance": "1"}, {"advance": 1, "offset": 2}, {"jump": 1}, {"advance": True}):
        assert sb.control("POST", "clock", json=body).status_code == 400


def test_save_without_state_file_is_409(sandbox):
    response = sandbox.control("POST", "save")
    assert response.status_code == 409 and "--state-file" in response.json()["error"]["message"]


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
def test_bad_json_is_400(sandbox, endpoint):
    response = sandbox.control("POST", endpoint, content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
def test_non_object_json_is_400(sandbox, endpoint):
    assert sandbox.control("POST", endpoint, json=[1, 2]).status_code == 400


def test_reset_with_unknown_keys_is_400(sandbox):
    assert sandbox.control("POST", "reset", json={"everything": True}).status_code == 400


def test_unknown_path_and_wrong_method(sandbox):
    assert sandbox.control("GET", "nothing").status_code == 404
    response = sandbox.control("GET", "reset")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert sandbox.control("DELETE", "faults").status_code == 405


def test_unknown_service_paths_answer_in_envelopes(sandbox):
    entra = sandbox.http.get("/nothing/here")
    assert entra.status_code == 404 and "error_codes" in entra.json()
    graph = sandbox.graph("GET", "/v1.0/nothingHere")
    assert graph.status_code in (400, 404) and "code" in graph.json()["error"]


def test_service_control_delegation(clean_sandbox):
    sb = clean_sandbox
    resource = (f"/subscriptions/{sb.subscription_id}/resourceGroups/rg-sandbox/providers/"
                "Microsoft.Storage/storageAccounts/sandboxdelegation")
    assert sb.control("POST", "arm/resources", json={"id": resource}).status_code == 201
    assert sb.control("POST", "arm/unknown", json={}).status_code == 404
    assert sb.control("POST", "nosuchservice/x", json={}).status_code == 404


@pytest.mark.parametrize("path, service_key", [
    ("/v1.0/applications", "graph"), ("/subscriptions", "arm"), ("/tenant/oauth2/v2.0/token", "entra"),
    ("/gitlab/gitlab.com/.well-known/openid-configuration", "gitlab"), ("/_sandbox/health", "control"),
])
def test_unexpected_exception_is_a_500_envelope_without_trace(tmp_path, monkeypatch, path, service_key):
    """In process: a handler bug becomes the owning service's 500 JSON, and the trace goes to the log only."""
    import asyncio

    import httpx

    from oidc_sandbox import app as app_module
    from oidc_sandbox.context import Config

    async def broken(ctx, request, path):
        raise RuntimeError("boom: internal detail")

    monkeypatch.setattr(app_module, "_handler", lambda service: broken)
    ctx = app_module.new_sandbox(Config(state_dir=str(tmp_path), base_url="https://127.0.0.1:1"))
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app_module.build_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="https://127.0.0.1:1") as client:
            return await client.get(path)

    response = asyncio.run(call())
    assert response.status_code == 500
    assert "boom" not in response.text and "Traceback" not in response.text
    body = response.json()
    if service_key == "entra":
        assert body["error"] == "temporarily_unavailable"
    elif service_key == "gitlab":
        assert body["message"]
    else:
        assert body["error"]["code"] and body["error"]["message"]
    assert ctx.stats.to_json()["by_status"] == {"500": 1}
