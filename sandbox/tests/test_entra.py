"""Entra token endpoint, metadata and access-token checks, over HTTPS against a real sandbox process.

Every AADSTS code the sandbox models is produced by sending what really triggers it.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest

from conftest import ARM_SCOPE, GRAPH_SCOPE, SandboxHandle

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AUDIENCE = "api://AzureADTokenExchange"
SUBJECT = "project_path:group/project:ref_type:branch:ref:main"


# --- helpers ------------------------------------------------------------------------------------------------

def create_app(sb: SandboxHandle, *, sp: bool = True, fics: list[dict[str, Any]] | None = None,
               version: str = "v1.0") -> dict[str, Any]:
    """An app registration (+ service principal) with ``fics``, made through Graph as a module would."""
    token = sb.token()
    response = sb.graph("POST", "/v1.0/applications", token=token,
                        json={"displayName": f"test-{uuid.uuid4().hex[:8]}", "signInAudience": "AzureADMyOrg"})
    assert response.status_code == 201, response.text
    app = response.json()
    if sp:
        response = sb.graph("POST", "/v1.0/servicePrincipals", token=token, json={"appId": app["appId"]})
        assert response.status_code == 201, response.text
        app["_sp"] = response.json()
    for index, fic in enumerate(fics or []):
        body = {"name": f"fic-{index}", "audiences": [AUDIENCE], "issuer": sb.gitlab_issuer, **fic}
        response = sb.graph("POST", f"/{version}/applications/{app['id']}/federatedIdentityCredentials",
                            token=token, json=body)
        assert response.status_code == 201, response.text
    return app


def exchange(sb: SandboxHandle, client_id: str, assertion: str, scope: str = ARM_SCOPE, **extra: str):
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion, "scope": scope, **extra}
    return sb.token_request(form)


def assert_aadsts(response, code: int, status: int = 400, error: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_codes"] == [code], body
    assert body["error_description"].startswith(f"AADSTS{code}: "), body
    for key in ("timestamp", "trace_id", "correlation_id", "error_uri"):
        assert key in body
    if error:
        assert body["error"] == error
    return body


def sandbox_keys(sb: SandboxHandle) -> dict[str, Any]:
    keys = sb.http.get(f"/{sb.tenant_id}/discovery/v2.0/keys").json()["keys"]
    return {key["kid"]: jwt.algorithms.RSAAlgorithm.from_jwk(key) for key in keys}


def decode_access_token(sb: SandboxHandle, token: str) -> dict[str, Any]:
    """Verify an access token with the tenant's published keys."""
    kid = jwt.get_unverified_header(token)["kid"]
    return jwt.decode(token, sandbox_keys(sb)[kid], algorithms=["RS256"], options={"verify_aud": False})


@pytest.fixture
def fed_app(clean_sandbox: SandboxHandle) -> dict[str, Any]:
    """An app with one exact-subject FIC for the default GitLab issuer."""
    return create_app(clean_sandbox, fics=[{"subject": SUBJECT}])


# --- client secret ------------------------------------------------------------------------------------------

def test_client_secret_graph_token_carries_roles_and_ids(clean_sandbox):
    sb = clean_sandbox
    response = sb.token_request({"grant_type": "client_credentials", "client_id": sb.operator.client_id,
                                 "client_secret": sb.operator.secret, "scope": GRAPH_SCOPE})
    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("no-store")
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599 and body["ext_expires_in"] == 3599
    claims = decode_access_token(sb, body["access_token"])
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["tid"] == sb.tenant_id and claims["appid"] == sb.operator.client_id
    assert claims["appidacr"] == "1" and claims["idtyp"] == "app"
    assert set(claims["roles"]) == {"Application.ReadWrite.All", "AppRoleAssignment.ReadWrite.All",
                                    "Directory.Read.All"}
    state = sb.control("GET", "state").json()
    operator = next(op for op in state["operators"] if op["client_id"] == sb.operator.client_id)
    assert claims["oid"] == operator["object_id"] == claims["sub"]
    assert claims["exp"] - claims["iat"] == 3599


def test_restricted_operator_has_read_role_only(clean_sandbox):
    claims = decode_access_token(clean_sandbox, clean_sandbox.token(GRAPH_SCOPE, clean_sandbox.restricted))
    assert claims["roles"] == ["Application.Read.All"]


@pytest.mark.parametrize("scope, audience", [
    ("https://management.azure.com/.default", "https://management.azure.com"),
    ("https://management.core.windows.net//.default", "https://management.core.windows.net/"),
    ("00000003-0000-0000-c000-000000000000/.default", "00000003-0000-0000-c000-000000000000"),
])
def test_audience_is_the_requested_resource(sandbox, scope, audience):
    claims = decode_access_token(sandbox, sandbox.token(scope))
    assert claims["aud"] == audience
    assert ("roles" in claims) == scope.startswith("0000")


def test_base_url_is_a_graph_resource_like_azure_cli_uses(sandbox):
    token = sandbox.token(sandbox.url + "//.default")
    assert decode_access_token(sandbox, token)["aud"] == sandbox.url + "/"
    assert sandbox.graph("GET", "/v1.0/applications", token=token).status_code == 200


def test_client_secret_basic_authentication(sandbox):
    response = sandbox.http.post(f"/{sandbox.tenant_id}/oauth2/v2.0/token",
                                 data={"grant_type": "client_credentials", "scope": ARM_SCOPE},
                                 auth=(sandbox.operator.client_id, sandbox.operator.secret))
    assert response.status_code == 200, response.text


def test_tenant_domain_is_accepted(sandbox):
    response = sandbox.token_request({"grant_type": "client_credentials", "client_id": sandbox.operator.client_id,
                                      "client_secret": sandbox.operator.secret, "scope": ARM_SCOPE},
                                     tenant="Sandbox.onmicrosoft.com")
    assert response.status_code == 200


def test_bad_secret_is_7000215(sandbox):
    response = sandbox.token_request({"grant_type": "client_credentials", "client_id": sandbox.operator.client_id,
                                      "client_secret": sandbox.operator.secret + "x", "scope": ARM_SCOPE})
    body = assert_aadsts(response, 7000215, 401, "invalid_client")
    assert sandbox.operator.secret not in response.text
    assert "\r\nTrace ID: " in body["error_description"]


def test_secret_of_an_app_without_secrets_is_7000215(clean_sandbox):
    app = create_app(clean_sandbox)
    response = clean_sandbox.token_request({"grant_type": "client_credentials", "client_id": app["appId"],
                                            "client_secret": "guess", "scope": ARM_SCOPE})
    assert_aadsts(response, 7000215, 401)


# --- request validation ---------------------------------------------------------------------------------------

def test_unknown_tenant_is_90002(sandbox):
    response = sandbox.token_request({"grant_type": "client_credentials", "client_id": sandbox.operator.client_id,
                                      "client_secret": sandbox.operator.secret, "scope": ARM_SCOPE},
                                     tenant=str(uuid.uuid4()))
    assert_aadsts(response, 90002, 400, "invalid_request")


@pytest.mark.parametrize("missing", ["grant_type", "client_id", "scope"])
def test_missing_parameter_is_900144(sandbox, missing):
    form = {"grant_type": "client_credentials", "client_id": sandbox.operator.client_id,
            "client_secret": sandbox.operator.secret, "scope": ARM_SCOPE}
    del form[missing]
    body = assert_aadsts(sandbox.token_request(form), 900144, 400, "invalid_request")
    assert f"'{missing}'" in body["error_description"]


def test_missing_assertion_type_is_900144(fed_app, clean_sandbox):
    response = clean_sandbox.token_request({"grant_type": "client_credentials", "client_id": fed_app["appId"],
                                            "client_assertion": clean_sandbox.mint_gitlab_token(),
                                            "scope": ARM_SCOPE})
    assert "'client_assertion_type'" in assert_aadsts(response, 900144)["error_description"]


def test_json_body_is_not_a_form(sandbox):
    response = sandbox.http.post(f"/{sandbox.tenant_id}/oauth2/v2.0/token",
                                 json={"grant_type": "client_credentials"})
    assert_aadsts(response, 900144)


def test_undecodable_form_gives_400_not_500(sandbox):
    response = sandbox.http.post(f"/{sandbox.tenant_id}/oauth2/v2.0/token", content=b"\xff\xfe%zz&&==",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_aadsts(response, 900144)


def test_unsupported_grant_type(sandbox):
    response = sandbox.token_request({"grant_type": "password", "client_id": sandbox.operator.client_id,
                                      "scope": ARM_SCOPE, "username": "u", "password": "p"})
    assert_aadsts(response, 70003, 400, "unsupported_grant_type")


def test_scope_without_default_is_1002012(sandbox):
    response = sandbox.token_request({"grant_type": "client_credentials", "client_id": sandbox.operator.client_id,
                                      "client_secret": sandbox.operator.secret,
                                      "scope": "https://graph.microsoft.com/Application.ReadWrite.All"})
    assert_aadsts(response, 1002012, 400, "invalid_scope")


def test_two_resources_are_70011(sandbox):
    response = sandbox.token_request({"grant_type": "client_credentials", "client_id": sandbox.operator.client_id,
                                      "client_secret": sandbox.operator.secret,
                                      "scope": f"{GRAPH_SCOPE} {ARM_SCOPE}"})
    assert_aadsts(response, 70011, 400, "invalid_scope")


def test_unknown_resource_is_500011(sandbox):
    response = sandbox.token_request({"grant_type": "client_credentials", "client_id": sandbox.operator.client_id,
                                      "client_secret": sandbox.operator.secret,
                                      "scope": "https://vault.azure.net/.default"})
    assert_aadsts(response, 500011, 400, "invalid_resource")


def test_no_credential_is_7000218(sandbox):
    response = sandbox.token_request({"grant_type": "client_credentials", "client_id": sandbox.operator.client_id,
                                      "scope": ARM_SCOPE})
    assert_aadsts(response, 7000218, 401, "invalid_client")


def test_unknown_client_is_700016(sandbox):
    response = sandbox.token_request({"grant_type": "client_credentials", "client_id": str(uuid.uuid4()),
                                      "client_secret": "x", "scope": ARM_SCOPE})
    assert_aadsts(response, 700016, 400, "unauthorized_client")


def test_get_on_token_endpoint_is_405(sandbox):
    response = sandbox.http.get(f"/{sandbox.tenant_id}/oauth2/v2.0/token")
    assert_aadsts(response, 900561, 405)


# --- federated assertions ---------------------------------------------------------------------------------------

def test_gitlab_token_exchange_succeeds(fed_app, clean_sandbox):
    sb = clean_sandbox
    response = exchange(sb, fed_app["appId"], sb.mint_gitlab_token(project_path="group/project"))
    assert response.status_code == 200, response.text
    claims = decode_access_token(sb, response.json()["access_token"])
    assert claims["appid"] == fed_app["appId"] and claims["oid"] == fed_app["_sp"]["id"]
    assert claims["appidacr"] == "2" and claims["aud"] == "https://management.azure.com"
    assert "roles" not in claims


def test_app_without_service_principal_is_7000229(clean_sandbox):
    sb = clean_sandbox
    app = create_app(sb, sp=False, fics=[{"subject": SUBJECT}])
    response = exchange(sb, app["appId"], sb.mint_gitlab_token(project_path="group/project"))
    assert_aadsts(response, 7000229, 400, "invalid_client")


def test_disabled_service_principal_is_7000112(fed_app, clean_sandbox):
    """Microsoft's troubleshooting article: the service principal is disabled in the resource tenant."""
    sb = clean_sandbox
    disabled = sb.graph("PATCH", f"/v1.0/servicePrincipals/{fed_app['_sp']['id']}", json={"accountEnabled": False})
    assert disabled.status_code == 204, disabled.text
    response = exchange(sb, fed_app["appId"], sb.mint_gitlab_token(project_path="group/project"))
    body = assert_aadsts(response, 7000112, 400, "unauthorized_client")
    assert f"Application '{fed_app['appId']}'({fed_app['displayName']}) is disabled." in body["error_description"]
    assert sb.graph("PATCH", f"/v1.0/servicePrincipals/{fed_app['_sp']['id']}",
                    json={"accountEnabled": True}).status_code == 204
    assert exchange(sb, fed_app["appId"], sb.mint_gitlab_token(project_path="group/project")).status_code == 200


def test_app_without_fics_is_70021(clean_sandbox):
    app = create_app(clean_sandbox)
    response = exchange(clean_sandbox, app["appId"], clean_sandbox.mint_gitlab_token())
    assert_aadsts(response, 70021)


def test_malformed_assertion_is_50027(fed_app, clean_sandbox):
    assert_aadsts(exchange(clean_sandbox, fed_app["appId"], "not-a-jwt"), 50027, 400, "invalid_request")


def test_entra_issued_token_as_assertion_is_700222(fed_app, clean_sandbox):
    assert_aadsts(exchange(clean_sandbox, fed_app["appId"], clean_sandbox.token(ARM_SCOPE)), 700222)


def test_other_issuer_is_700211(fed_app, clean_sandbox):
    token = clean_sandbox.mint_gitlab_token(issuer="gitlab.example.com", project_path="group/project")
    body = assert_aadsts(exchange(clean_sandbox, fed_app["appId"], token), 700211, 400, "invalid_client")
    assert "/gitlab/gitlab.example.com'" in body["error_description"]


def test_issuer_trailing_slash_matters(clean_sandbox):
    sb = clean_sandbox
    app = create_app(sb, fics=[{"subject": SUBJECT, "issuer": sb.gitlab_issuer + "/"}])
    assert_aadsts(exchange(sb, app["appId"], sb.mint_gitlab_token(project_path="group/project")), 700211)


def test_issuer_case_matters(clean_sandbox):
    sb = clean_sandbox
    app = create_app(sb, fics=[{"subject": SUBJECT, "issuer": sb.gitlab_issuer.replace("gitlab.com", "GitLab.com")}])
    assert_aadsts(exchange(sb, app["appId"], sb.mint_gitlab_token(project_path="group/project")), 700211)


def test_audience_mismatch_is_700212(fed_app, clean_sandbox):
    token = clean_sandbox.mint_gitlab_token(project_path="group/project", aud="https://gitlab.example.com")
    body = assert_aadsts(exchange(clean_sandbox, fed_app["appId"], token), 700212)
    assert "'https://gitlab.example.com'" in body["error_description"]


def test_audience_list_containing_the_fic_audience_matches(fed_app, clean_sandbox):
    token = clean_sandbox.mint_gitlab_token(project_path="group/project", aud=["https://other", AUDIENCE])
    assert exchange(clean_sandbox, fed_app["appId"], token).status_code == 200


def test_subject_mismatch_is_700213(fed_app, clean_sandbox):
    token = clean_sandbox.mint_gitlab_token(project_path="group/project", ref="develop")
    body = assert_aadsts(exchange(clean_sandbox, fed_app["appId"], token), 700213)
    assert "ref:develop'" in body["error_description"]


def test_subject_case_only_mismatch_is_7002138(fed_app, clean_sandbox):
    token = clean_sandbox.mint_gitlab_token(project_path="Group/Project")
    body = assert_aadsts(exchange(clean_sandbox, fed_app["appId"], token), 7002138)
    assert "case-insensitive" in body["error_description"]


def test_project_id_led_subject(clean_sandbox):
    sb = clean_sandbox
    app = create_app(sb, fics=[{"subject": "project_id:4242:ref_type:tag:ref:v1.0"}])
    token = sb.mint_gitlab_token(project_id="4242", ref_type="tag", ref="v1.0",
                                 sub_components=["project_id", "ref_type", "ref"])
    assert exchange(sb, app["appId"], token).status_code == 200


@pytest.mark.parametrize("signing", ["foreign", "unknown_kid"])
def test_foreign_signature_is_700027(fed_app, clean_sandbox, signing):
    token = clean_sandbox.mint_gitlab_token(project_path="group/project", signing=signing)
    assert_aadsts(exchange(clean_sandbox, fed_app["appId"], token), 700027)


def test_tampered_payload_is_700027(fed_app, clean_sandbox):
    token = clean_sandbox.mint_gitlab_token(project_path="group/project")
    other = clean_sandbox.mint_gitlab_token(project_path="group/other")
    header, _, signature = token.split(".")
    forged = ".".join([header, other.split(".")[1], signature])
    assert_aadsts(exchange(clean_sandbox, fed_app["appId"], forged), 700027)


@pytest.mark.parametrize("flag", ["expired", "not_yet_valid"])
def test_assertion_outside_its_lifetime_is_700024(fed_app, clean_sandbox, flag):
    token = clean_sandbox.mint_gitlab_token(project_path="group/project", **{flag: True})
    body = assert_aadsts(exchange(clean_sandbox, fed_app["appId"], token), 700024)
    assert "Current time: " in body["error_description"]


def test_assertion_expires_when_the_clock_moves(fed_app, clean_sandbox):
    sb = clean_sandbox
    token = sb.mint_gitlab_token(project_path="group/project")
    assert exchange(sb, fed_app["appId"], token).status_code == 200
    sb.control("POST", "clock", json={"advance": 300 + 300 + 10})  # lifetime + Entra's clock skew
    assert_aadsts(exchange(sb, fed_app["appId"], token), 700024)


@pytest.mark.parametrize("switch", [
    {"unreachable": "closed"}, {"unreachable": "503"}, {"broken": "document"}, {"broken": "issuer"},
    {"broken": "no_jwks_uri"}, {"broken": "keys"}, {"broken": "empty_keys"}, {"broken": "malformed_keys"},
])
def test_issuer_discovery_failures_are_501661(fed_app, clean_sandbox, switch):
    sb = clean_sandbox
    token = sb.mint_gitlab_token(project_path="group/project")
    assert sb.control("POST", "issuers", json={"name": "gitlab.com", **switch}).status_code == 200
    assert_aadsts(exchange(sb, fed_app["appId"], token), 501661)


def test_issuer_timeout_is_501661(fed_app, clean_sandbox):
    sb = clean_sandbox
    token = sb.mint_gitlab_token(project_path="group/project")
    sb.control("POST", "config", json={"oidc_fetch_timeout": 0.3})
    sb.control("POST", "issuers", json={"name": "gitlab.com", "unreachable": "timeout"})
    started = time.monotonic()
    assert_aadsts(exchange(sb, fed_app["appId"], token), 501661)
    assert time.monotonic() - started < 3
    sb.control("POST", "config", json={"oidc_fetch_timeout": 5})


def test_rotated_keys_keep_old_tokens_valid(fed_app, clean_sandbox):
    sb = clean_sandbox
    old = sb.mint_gitlab_token(project_path="group/project")
    sb.control("POST", "issuers", json={"name": "gitlab.com", "rotate_keys": True})
    new = sb.mint_gitlab_token(project_path="group/project")
    assert old.split(".")[0] != new.split(".")[0]
    assert exchange(sb, fed_app["appId"], old).status_code == 200
    assert exchange(sb, fed_app["appId"], new).status_code == 200


def test_self_managed_issuer(clean_sandbox):
    sb = clean_sandbox
    issuer = sb.url + "/gitlab/gitlab.example.com"
    app = create_app(sb, fics=[{"subject": SUBJECT, "issuer": issuer, "audiences": ["https://gitlab.example.com"]}])
    token = sb.mint_gitlab_token(issuer=issuer, project_path="group/project", aud="https://gitlab.example.com")
    assert exchange(sb, app["appId"], token).status_code == 200


def test_new_issuer_added_through_control_api(clean_sandbox):
    sb = clean_sandbox
    assert sb.control("POST", "issuers", json={"name": "gitlab.acme.ca"}).status_code == 200
    issuer = sb.url + "/gitlab/gitlab.acme.ca"
    app = create_app(sb, fics=[{"subject": SUBJECT, "issuer": issuer}])
    assert exchange(sb, app["appId"], sb.mint_gitlab_token(issuer="gitlab.acme.ca",
                                                           project_path="group/project")).status_code == 200


# --- flexible FICs ------------------------------------------------------------------------------------------------

def flexible(value: str) -> dict[str, Any]:
    return {"subject": None, "claimsMatchingExpression": {"value": value, "languageVersion": 1}}


@pytest.mark.parametrize("expression, ref, ok", [
    ("claims['sub'] matches 'project_path:group/project:ref_type:branch:ref:*'", "feature/x", True),
    ("claims['sub'] matches 'project_path:group/project:ref_type:branch:ref:*'", "main", True),
    ("claims['sub'] matches 'project_path:group/project:ref_type:tag:ref:*'", "main", False),
    ("claims['sub'] matches 'project_path:group/project:ref_type:branch:ref:v?'", "v1", True),
    ("claims['sub'] matches 'project_path:group/project:ref_type:branch:ref:v?'", "v10", False),
    ("claims['sub'] eq 'project_path:group/project:ref_type:branch:ref:main'", "main", True),
    ("claims['sub'] eq 'project_path:group/project:ref_type:branch:ref:Main'", "main", False),
    ("claims['sub'] matches 'project_path:group/*' and claims['sub'] matches '*:ref:it''s'", "it's", True),
])
def test_flexible_fic_expressions(clean_sandbox, expression, ref, ok):
    sb = clean_sandbox
    app = create_app(sb, fics=[flexible(expression)], version="beta")
    token = sb.mint_gitlab_token(project_path="group/project", ref=ref)
    response = exchange(sb, app["appId"], token)
    if ok:
        assert response.status_code == 200, response.text
    else:
        assert_aadsts(response, 700213)


def test_flexible_fic_stops_matching_when_issuer_leaves_the_allow_list(clean_sandbox):
    sb = clean_sandbox
    app = create_app(sb, fics=[flexible("claims['sub'] matches 'project_path:group/project:*'")], version="beta")
    token = sb.mint_gitlab_token(project_path="group/project")
    assert exchange(sb, app["appId"], token).status_code == 200
    sb.control("POST", "config", json={"local_issuers_are_gitlab": False})
    try:
        assert_aadsts(exchange(sb, app["appId"], token), 700213)
    finally:
        sb.control("POST", "config", json={"local_issuers_are_gitlab": True})


# --- replication lag ------------------------------------------------------------------------------------------------

def test_new_app_and_fic_are_invisible_during_replication_lag(clean_sandbox):
    sb = clean_sandbox
    sb.faults(replication_lag=1.0)
    app = create_app(sb, sp=False)
    token = sb.mint_gitlab_token(project_path="group/project")
    assert_aadsts(exchange(sb, app["appId"], token), 700016)  # the app has not replicated yet
    time.sleep(1.1)
    operator = sb.token()
    assert sb.graph("POST", "/v1.0/servicePrincipals", token=operator, json={"appId": app["appId"]}).status_code == 201
    response = sb.graph("POST", f"/v1.0/applications/{app['id']}/federatedIdentityCredentials", token=operator,
                        json={"name": "gitlab-main", "issuer": sb.gitlab_issuer, "subject": SUBJECT,
                              "audiences": [AUDIENCE]})
    assert response.status_code == 201, response.text
    assert_aadsts(exchange(sb, app["appId"], token), 70021)  # the FIC has not replicated yet
    time.sleep(1.1)
    assert exchange(sb, app["appId"], token).status_code == 200


# --- azure-identity, unmodified ---------------------------------------------------------------------------------------

def test_azure_identity_client_secret_credential(sandbox):
    from azure.identity import ClientSecretCredential

    credential = ClientSecretCredential(sandbox.tenant_id, sandbox.operator.client_id, sandbox.operator.secret,
                                        authority=sandbox.url, disable_instance_discovery=True,
                                        connection_verify=sandbox.ca_file)
    token = credential.get_token(GRAPH_SCOPE)
    assert token.expires_on > time.time() + 3000
    assert decode_access_token(sandbox, token.token)["appid"] == sandbox.operator.client_id


def test_azure_identity_client_assertion_credential(fed_app, clean_sandbox):
    from azure.identity import ClientAssertionCredential

    sb = clean_sandbox
    gitlab_token = sb.mint_gitlab_token(project_path="group/project")
    credential = ClientAssertionCredential(sb.tenant_id, fed_app["appId"], lambda: gitlab_token,
                                           authority=sb.url, connection_verify=sb.ca_file)
    token = credential.get_token(ARM_SCOPE)
    assert decode_access_token(sb, token.token)["oid"] == fed_app["_sp"]["id"]


def test_azure_identity_workload_identity_credential(fed_app, clean_sandbox, tmp_path: Path):
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import WorkloadIdentityCredential

    sb = clean_sandbox
    token_file = tmp_path / "gitlab-token"
    token_file.write_text(sb.mint_gitlab_token(project_path="group/project"))
    credential = WorkloadIdentityCredential(tenant_id=sb.tenant_id, client_id=fed_app["appId"],
                                            token_file_path=str(token_file), authority=sb.url,
                                            connection_verify=sb.ca_file)
    assert credential.get_token(ARM_SCOPE).token
    token_file.write_text(sb.mint_gitlab_token(project_path="group/other"))
    other = WorkloadIdentityCredential(tenant_id=sb.tenant_id, client_id=fed_app["appId"],
                                       token_file_path=str(token_file), authority=sb.url,
                                       connection_verify=sb.ca_file)
    with pytest.raises(ClientAuthenticationError, match="AADSTS700213"):
        other.get_token(ARM_SCOPE)


# --- metadata -----------------------------------------------------------------------------------------------------

def test_openid_configuration_is_complete(sandbox):
    doc = sandbox.http.get(f"/{sandbox.tenant_id}/v2.0/.well-known/openid-configuration").json()
    base = f"{sandbox.url}/{sandbox.tenant_id}"
    assert doc["issuer"] == f"{base}/v2.0"
    assert doc["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
    assert doc["jwks_uri"] == f"{base}/discovery/v2.0/keys"
    assert doc["subject_types_supported"] and doc["id_token_signing_alg_values_supported"] == ["RS256"]
    common = sandbox.http.get("/common/v2.0/.well-known/openid-configuration").json()
    assert common["issuer"] == f"{sandbox.url}/{{tenantid}}/v2.0"


def test_metadata_of_unknown_tenant_is_90002(sandbox):
    assert_aadsts(sandbox.http.get(f"/{uuid.uuid4()}/v2.0/.well-known/openid-configuration"), 90002)


def test_instance_discovery(sandbox):
    endpoint = f"{sandbox.url}/{sandbox.tenant_id}/oauth2/v2.0/authorize"
    body = sandbox.http.get("/common/discovery/instance",
                            params={"api-version": "1.1", "authorization_endpoint": endpoint}).json()
    assert body["tenant_discovery_endpoint"] == (f"{sandbox.url}/{sandbox.tenant_id}/v2.0/"
                                                 ".well-known/openid-configuration")
    assert body["metadata"][0]["aliases"]
    foreign = sandbox.http.get("/common/discovery/instance",
                               params={"authorization_endpoint": "https://evil.example/t/oauth2/v2.0/authorize"})
    assert foreign.status_code == 400 and foreign.json()["error"] == "invalid_instance"


# --- access-token verification by Graph and ARM (ctx.auth.require) ---------------------------------------------------

def test_missing_token(sandbox):
    graph = sandbox.http.get("/v1.0/applications")
    assert graph.status_code == 401 and graph.json()["error"]["code"] == "InvalidAuthenticationToken"
    arm = sandbox.http.get("/subscriptions", params={"api-version": "2022-12-01"})
    assert arm.status_code == 401 and arm.json()["error"]["code"] == "AuthenticationFailed"
    assert "www-authenticate" in arm.headers


def test_token_for_the_wrong_service(sandbox):
    graph = sandbox.graph("GET", "/v1.0/applications", token=sandbox.token(ARM_SCOPE))
    assert graph.status_code == 401 and "audience" in graph.json()["error"]["message"]
    arm = sandbox.arm("GET", "/subscriptions?api-version=2022-12-01", token=sandbox.token(GRAPH_SCOPE))
    assert arm.status_code == 401 and arm.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"


def test_forged_and_garbage_tokens(sandbox):
    forged = sandbox.mint_gitlab_token(aud="https://graph.microsoft.com")  # signed, but not by the tenant key
    for token in (forged, "garbage", "a.b.c"):
        graph = sandbox.graph("GET", "/v1.0/applications", token=token)
        assert graph.status_code == 401 and graph.json()["error"]["code"] == "InvalidAuthenticationToken"
        arm = sandbox.arm("GET", "/subscriptions?api-version=2022-12-01", token=token)
        assert arm.status_code == 401 and arm.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_expired_access_token(clean_sandbox):
    sb = clean_sandbox
    graph_token, arm_token = sb.token(GRAPH_SCOPE), sb.token(ARM_SCOPE)
    sb.control("POST", "clock", json={"advance": 3600})
    graph = sb.graph("GET", "/v1.0/applications", token=graph_token)
    assert graph.status_code == 401 and "expired" in graph.json()["error"]["message"]
    arm = sb.arm("GET", "/subscriptions?api-version=2022-12-01", token=arm_token)
    assert arm.status_code == 401 and arm.json()["error"]["code"] == "ExpiredAuthenticationToken"


def test_access_token_of_another_tenant_is_401(tmp_path):
    """In process (the sandbox has one tenant): a token signed by the tenant's key but naming another ``tid``."""
    import asyncio

    import httpx

    from oidc_sandbox import app as app_module
    from oidc_sandbox.context import Config

    ctx = app_module.new_sandbox(Config(state_dir=str(tmp_path), base_url="https://127.0.0.1:1"))
    operator = ctx.state.operators[ctx.config.operator_client_id]
    tokens = {}
    for service, resource in (("graph", "https://graph.microsoft.com"), ("arm", "https://management.azure.com")):
        token, _ = ctx.entra.mint_access_token(app_id=operator["client_id"], sp_object_id=operator["object_id"],
                                               resource=resource, service=service, appidacr="1")
        claims = jwt.decode(token, options={"verify_signature": False})
        claims["tid"] = str(uuid.uuid4())
        tokens[service] = ctx.entra.signing_key.sign(claims)

    async def call() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app_module.build_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="https://127.0.0.1:1") as client:
            graph = await client.get("/v1.0/applications", headers={"Authorization": f"Bearer {tokens['graph']}"})
            arm = await client.get("/subscriptions?api-version=2022-12-01",
                                   headers={"Authorization": f"Bearer {tokens['arm']}"})
            return graph, arm

    graph, arm = asyncio.run(call())
    assert graph.status_code == 401 and graph.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "Invalid tenant" in graph.json()["error"]["message"]
    assert arm.status_code == 401 and arm.json()["error"]["code"] == "InvalidAuthenticationTokenTenant"
    assert "www-authenticate" in arm.headers


@pytest.mark.parametrize("alg", ["HS256", "none", "RS512"])
def test_only_rs256_assertions_are_accepted(fed_app, clean_sandbox, alg):
    """Entra supports RS256 only: the same claims under another algorithm fail signature validation."""
    minted = clean_sandbox.control("POST", "gitlab/token", json={"project_path": "group/project"}).json()
    if alg == "RS512":
        from cryptography.hazmat.primitives.asymmetric import rsa

        key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = None if alg == "none" else "a-shared-secret-that-is-long-enough-for-hs256"
    token = jwt.encode(minted["claims"], key, algorithm=alg, headers={"kid": minted["header"]["kid"]})
    body = assert_aadsts(exchange(clean_sandbox, fed_app["appId"], token), 700027)
    assert "Client assertion failed signature validation." in body["error_description"]
