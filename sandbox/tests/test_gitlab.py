"""GitLab issuers: discovery, keys and CI/CD ID tokens as GitLab serves and issues them."""
from __future__ import annotations

import base64
import hashlib
import json
import uuid

import httpx
import jwt
import pytest

DISCOVERY = "/.well-known/openid-configuration"


def issuer_path(sb, name: str = "gitlab.com") -> str:
    return f"/gitlab/{name}"


def thumbprint(jwk: dict) -> str:
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def mint(sb, **spec):
    response = sb.control("POST", "gitlab/token", json=spec)
    assert response.status_code == 200, response.text
    return response.json()


def test_discovery_document(sandbox):
    response = sandbox.http.get(issuer_path(sandbox) + DISCOVERY)
    assert response.status_code == 200
    doc = response.json()
    assert doc["issuer"] == sandbox.gitlab_issuer == sandbox.env["SANDBOX_GITLAB_ISSUER"]
    assert not doc["issuer"].endswith("/")
    assert doc["jwks_uri"] == f"{sandbox.gitlab_issuer}/oauth/discovery/keys"
    assert doc["authorization_endpoint"] == f"{sandbox.gitlab_issuer}/oauth/authorize"
    assert doc["userinfo_endpoint"] == f"{sandbox.gitlab_issuer}/oauth/userinfo"
    assert doc["subject_types_supported"] == ["public"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]
    assert {"iss", "sub", "aud", "exp", "iat", "project_path", "ci_config_ref_uri", "ref_path", "sha",
            "environment", "jti"} <= set(doc["claims_supported"])
    assert None not in doc.values()


def test_keys_are_rsa_with_thumbprint_kids_and_long_cache(sandbox):
    for path in ("/oauth/discovery/keys", "/-/jwks"):
        response = sandbox.http.get(issuer_path(sandbox) + path)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "max-age=86400, public, must-revalidate, no-transform"
        keys = response.json()["keys"]
        assert len(keys) == 2  # the OIDC signing key and the CI JWT signing key
        for key in keys:
            assert key["kty"] == "RSA" and key["use"] == "sig" and key["alg"] == "RS256"
            assert key["kid"] == thumbprint(key)


def test_id_token_header_timing_and_claims(clean_sandbox):
    sb = clean_sandbox
    minted = mint(sb, project_path="mygroup/sub/myproject", ref="main")
    token = minted["token"]
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": header["kid"], "typ": "JWT"}
    keys = {k["kid"]: k for k in sb.http.get(issuer_path(sb) + "/oauth/discovery/keys").json()["keys"]}
    key = jwt.algorithms.RSAAlgorithm.from_jwk(keys[header["kid"]])
    claims = jwt.decode(token, key, algorithms=["RS256"], audience="api://AzureADTokenExchange",
                        issuer=sb.gitlab_issuer)
    assert claims == minted["claims"]
    assert claims["nbf"] == claims["iat"] - 5 and claims["exp"] == claims["iat"] + 300
    assert claims["sub"] == "project_path:mygroup/sub/myproject:ref_type:branch:ref:main"
    assert claims["namespace_path"] == "mygroup/sub" and claims["ref_path"] == "refs/heads/main"
    assert claims["ref_protected"] == "true"
    for name in ("project_id", "namespace_id", "user_id", "pipeline_id", "job_id"):
        assert isinstance(claims[name], str) and claims[name].isdigit()
    assert isinstance(claims["runner_id"], int)
    uuid.UUID(claims["jti"])
    assert claims["ci_config_ref_uri"].endswith("/mygroup/sub/myproject//.gitlab-ci.yml@refs/heads/main")
    for name in ("user_login", "user_email", "user_access_level", "pipeline_source", "runner_environment", "sha",
                 "ci_config_sha", "project_visibility", "job_project_id", "job_project_path"):
        assert claims[name]


@pytest.mark.parametrize("components, expected", [
    (["project_id", "ref_type", "ref"], "project_id:777:ref_type:tag:ref:v1"),
    (["project_path"], "project_path:g/p"),
    (["project_path", "ref_type", "ref", "ref_protected"], "project_path:g/p:ref_type:tag:ref:v1:ref_protected:true"),
    (["project_path", "environment_protected", "ref"], "project_path:g/p:ref:v1"),  # no environment: skipped
])
def test_sub_claim_components(sandbox, components, expected):
    claims = mint(sandbox, project_path="g/p", project_id=777, ref_type="tag", ref="v1",
                  sub_components=components)["claims"]
    assert claims["sub"] == expected
    assert claims["project_id"] == "777"


def test_environment_claims(sandbox):
    claims = mint(sandbox, environment="production", environment_protected=True)["claims"]
    assert claims["environment"] == "production" and claims["environment_protected"] == "true"
    assert claims["deployment_tier"] == "production" and claims["environment_action"] == "start"


def test_audience_list_and_extra_claims(sandbox):
    claims = mint(sandbox, aud=["a", "b"], claims={"custom": "x", "user_login": "alice"})["claims"]
    assert claims["aud"] == ["a", "b"] and claims["custom"] == "x" and claims["user_login"] == "alice"


def test_lifetime_expired_not_yet_valid(sandbox):
    claims = mint(sandbox, lifetime=3600)["claims"]
    assert claims["exp"] - claims["iat"] == 3600
    now = sandbox.control("GET", "clock").json()["time"]
    assert mint(sandbox, expired=True)["claims"]["exp"] < now - 300
    assert mint(sandbox, not_yet_valid=True)["claims"]["nbf"] > now + 300


def test_token_without_typ(sandbox):
    token = mint(sandbox, typ=None)["token"]
    assert "typ" not in jwt.get_unverified_header(token)


@pytest.mark.parametrize("spec, message", [
    ({"sub_components": ["ref", "project_path"]}, "must be the first element"),
    ({"sub_components": ["project_path", "user_email"]}, "is not an allowed sub claim component"),
    ({"sub_components": ["project_path", "project_id"]}, "not both"),
    ({"sub_components": []}, "minimum is 1"),
    ({"issuer": "gitlab.nowhere.org"}, "unknown issuer"),
    ({"ref_type": "merge_request"}, "ref_type"),
    ({"aud": 5}, "aud"),
    ({"lifetime": 0}, "lifetime"),
    ({"signing": "weird"}, "signing"),
    ({"project_path": "noslash"}, "project_path"),
    ({"bogus": 1}, "unknown token keys"),
])
def test_bad_mint_requests_are_400(sandbox, spec, message):
    response = sandbox.control("POST", "gitlab/token", json=spec)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_issuer_by_url(sandbox):
    issuer = sandbox.url + "/gitlab/gitlab.example.com"
    assert mint(sandbox, issuer=issuer)["claims"]["iss"] == issuer


def test_unknown_issuer_and_path_are_404(sandbox):
    assert sandbox.http.get("/gitlab/nope.example.com" + DISCOVERY).status_code == 404
    assert sandbox.http.get("/gitlab/gitlab.com/api/v4/no-such-resource").status_code == 404
    assert sandbox.http.get("/gitlab/nope.example.com/api/v4/projects").status_code == 404
    assert sandbox.http.post("/gitlab/gitlab.com" + DISCOVERY).status_code == 405


def test_unreachable_and_broken_issuers(clean_sandbox):
    sb = clean_sandbox
    base = issuer_path(sb)
    sb.control("POST", "issuers", json={"name": "gitlab.com", "unreachable": True})
    with pytest.raises(httpx.RemoteProtocolError):
        sb.http.get(base + DISCOVERY)
    sb.control("POST", "issuers", json={"name": "gitlab.com", "unreachable": "503"})
    assert sb.http.get(base + DISCOVERY).status_code == 503
    sb.control("POST", "issuers", json={"name": "gitlab.com", "unreachable": False, "broken": "document"})
    response = sb.http.get(base + DISCOVERY)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    sb.control("POST", "issuers", json={"name": "gitlab.com", "broken": "issuer"})
    assert sb.http.get(base + DISCOVERY).json()["issuer"] == sb.gitlab_issuer + "/"
    sb.control("POST", "issuers", json={"name": "gitlab.com", "broken": "no_jwks_uri"})
    assert "jwks_uri" not in sb.http.get(base + DISCOVERY).json()
    sb.control("POST", "issuers", json={"name": "gitlab.com", "broken": "keys"})
    assert sb.http.get(base + "/oauth/discovery/keys").status_code == 404
    sb.control("POST", "issuers", json={"name": "gitlab.com", "broken": "empty_keys"})
    assert sb.http.get(base + "/oauth/discovery/keys").json() == {"keys": []}
    sb.control("POST", "issuers", json={"name": "gitlab.com", "broken": None})
    assert sb.http.get(base + DISCOVERY).json()["issuer"] == sb.gitlab_issuer
    sb.reset()


@pytest.mark.parametrize("body", [
    {"name": "Bad Name"}, {"name": "gitlab.com", "unreachable": "sometimes"}, {"name": "gitlab.com", "broken": 1},
    {"name": "gitlab.com", "rotate_keys": "yes"}, {"unreachable": True}, {"name": "gitlab.com", "x": 1},
])
def test_bad_issuer_requests_are_400(sandbox, body):
    assert sandbox.control("POST", "issuers", json=body).status_code == 400


def test_deterministic_ids_after_reset(clean_sandbox):
    first = mint(clean_sandbox)["claims"]
    clean_sandbox.reset()
    second = mint(clean_sandbox)["claims"]
    assert first["jti"] == second["jti"] and first["job_id"] == second["job_id"]


def test_reset_seed_changes_generated_ids(clean_sandbox):
    clean_sandbox.reset(seed=1)
    first = mint(clean_sandbox)["claims"]["jti"]
    clean_sandbox.reset(seed=2)
    assert mint(clean_sandbox)["claims"]["jti"] != first
    clean_sandbox.reset(seed=1)
    assert mint(clean_sandbox)["claims"]["jti"] == first
    assert clean_sandbox.control("POST", "reset", json={"seed": [1]}).status_code == 400
