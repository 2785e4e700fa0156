"""Shared helpers and the ``graph_env`` fixture for the Graph tests (no tests here).

``graph_env`` wraps the HTTPS ``clean_sandbox`` fixture (a real sandbox process, reset for each test) with:
  * ``env.http(who)``: an httpx client carrying ``who``'s Graph token (the full operator by default);
  * ``env.sdk(who, version)``: an async context manager giving a real msgraph-sdk ``GraphServiceClient`` for
    ``/v1.0`` or ``/beta``;
  * ``env.principal(*roles)``: a new app + service principal granted exactly those Graph application permissions
    (through ``appRoleAssignments``), logged in like a CI job (GitLab ID token -> client assertion);
  * ``env.set_lag(seconds)``: the replication-lag window.
Everything goes over HTTPS; nothing reaches into the sandbox's memory.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
import time
import urllib.parse
import uuid
from typing import Any, AsyncIterator

import httpx
import pytest

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclasses.dataclass(frozen=True)
class Caller:
    """A caller of Graph: its appId, service principal object id (None if not looked up) and access token."""

    app_id: str
    object_id: str | None
    token: str = dataclasses.field(repr=False)


class _StaticCredential:
    """An azure-identity style async credential handing out a token the sandbox's token endpoint issued."""

    def __init__(self, token: str):
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        assert list(scopes) == [GRAPH_SCOPE], scopes  # the SDK must ask for Graph, not for the sandbox host
        return AccessToken(self._token, int(time.time()) + 3000)

    async def close(self) -> None:
        return None


class GraphEnv:
    """Helpers bound to one freshly reset HTTPS sandbox."""

    def __init__(self, sandbox: Any):
        self.sb = sandbox
        self.url = sandbox.url
        self.verify = ssl.create_default_context(cafile=sandbox.ca_file)
        self._clients: list[httpx.Client] = []
        self._operator: Caller | None = None
        self._graph_sp: dict[str, Any] | None = None

    # ---- callers
    @property
    def operator(self) -> Caller:
        """The seeded full operator (Application.ReadWrite.All, AppRoleAssignment.ReadWrite.All, Directory.Read.All)."""
        if self._operator is None:
            token = self.sb.token(GRAPH_SCOPE)
            sp = self._get(f"/v1.0/servicePrincipals(appId='{self.sb.operator.client_id}')", token)
            self._operator = Caller(self.sb.operator.client_id, sp["id"], token)
        return self._operator

    def restricted(self) -> Caller:
        """The seeded restricted operator (Application.Read.All only)."""
        return Caller(self.sb.restricted.client_id, None, self.sb.token(GRAPH_SCOPE, self.sb.restricted))

    def _get(self, path: str, token: str) -> dict[str, Any]:
        response = self.sb.http.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        return response.json()

    @property
    def graph_sp(self) -> dict[str, Any]:
        if self._graph_sp is None:
            self._graph_sp = self._get(f"/v1.0/servicePrincipals(appId='{GRAPH_APP_ID}')", self.operator.token)
        return self._graph_sp

    def grant(self, sp_id: str, role: str) -> dict[str, Any]:
        """Grant a Graph application permission to a service principal (as the operator)."""
        role_id = next(r["id"] for r in self.graph_sp["appRoles"] if r["value"] == role)
        response = self.http().post(f"/v1.0/servicePrincipals/{sp_id}/appRoleAssignments",
                                    json={"principalId": sp_id, "resourceId": self.graph_sp["id"],
                                          "appRoleId": role_id})
        assert response.status_code == 201, response.text
        return response.json()

    def principal(self, *roles: str, name: str | None = None) -> Caller:
        """A new app + service principal holding exactly ``roles`` (Graph application permissions)."""
        name = name or f"graph-test-{uuid.uuid4().hex[:8]}"
        operator = self.http()
        app = operator.post("/v1.0/applications", json={"displayName": name})
        assert app.status_code == 201, app.text
        sp = operator.post("/v1.0/servicePrincipals", json={"appId": app.json()["appId"]})
        assert sp.status_code == 201, sp.text
        project = f"graph-tests/{name}"
        fic = operator.post(f"/v1.0/applications/{app.json()['id']}/federatedIdentityCredentials",
                            json={"name": "login", "issuer": self.sb.gitlab_issuer,
                                  "subject": f"project_path:{project}:ref_type:branch:ref:main",
                                  "audiences": ["api://AzureADTokenExchange"]})
        assert fic.status_code == 201, fic.text
        for role in roles:
            self.grant(sp.json()["id"], role)
        assertion = self.sb.mint_gitlab_token(project_path=project, ref="main")
        token = self.sb.token_request({"grant_type": "client_credentials", "client_id": app.json()["appId"],
                                       "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion,
                                       "scope": GRAPH_SCOPE})
        assert token.status_code == 200, token.text
        return Caller(app.json()["appId"], sp.json()["id"], token.json()["access_token"])

    # ---- clients
    def http(self, who: Caller | None = None, *, token: str | None = None) -> httpx.Client:
        """An httpx client on the sandbox whose requests carry ``who``'s token (the operator's by default)."""
        client = httpx.Client(base_url=self.url, verify=self.verify, timeout=30.0, trust_env=False)
        bearer = token if token is not None else (who or self.operator).token
        if bearer:
            client.headers["Authorization"] = f"Bearer {bearer}"
        self._clients.append(client)
        return client

    @contextlib.asynccontextmanager
    async def sdk(self, who: Caller | None = None, version: str = "v1.0") -> AsyncIterator[Any]:
        """A msgraph-sdk ``GraphServiceClient`` for ``/v1.0`` (or ``/beta``) authenticated as ``who``."""
        from kiota_authentication_azure.azure_identity_authentication_provider import \
            AzureIdentityAuthenticationProvider
        from msgraph import GraphRequestAdapter, GraphServiceClient
        from msgraph_core import GraphClientFactory

        host = urllib.parse.urlsplit(self.url).hostname
        credential = _StaticCredential((who or self.operator).token)
        auth = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE], allowed_hosts=[host])
        client = httpx.AsyncClient(base_url=self.url, verify=self.verify, timeout=30.0, trust_env=False)
        http = GraphClientFactory.create_with_default_middleware(client=client)
        adapter = GraphRequestAdapter(auth, client=http)
        adapter.base_url = f"{self.url}/{version}"
        try:
            yield GraphServiceClient(request_adapter=adapter)
        finally:
            await client.aclose()

    # ---- sandbox knobs
    def set_lag(self, seconds: float) -> None:
        """The replication-lag window in seconds (0 turns it off)."""
        self.sb.faults(replication_lag=seconds)

    def set_config(self, **changes: Any) -> dict[str, Any]:
        """Change runtime settings; returns the previous values of the changed keys."""
        before = self.sb.control("GET", "config").json()
        response = self.sb.control("POST", "config", json=changes)
        assert response.status_code == 200, response.text
        return {key: before[key] for key in changes}

    def close(self) -> None:
        for client in self._clients:
            client.close()


@pytest.fixture
def graph_env(clean_sandbox: Any) -> Any:
    env = GraphEnv(clean_sandbox)
    try:
        yield env
    finally:
        env.close()


def run(coro: Any) -> Any:
    """Run one SDK coroutine to completion."""
    return asyncio.run(coro)


def assert_graph_error(response: httpx.Response, status: int, code: str, message: str | None = None) -> dict:
    """The response is Graph's error envelope with ``code`` (and ``message`` contained in its message)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    if message is not None:
        assert message in error["message"], error["message"]
    inner = error["innerError"]
    assert inner["request-id"] == response.headers["request-id"]
    assert inner["client-request-id"] == response.headers["client-request-id"]
    assert set(inner) >= {"date", "request-id", "client-request-id"}
    return error


async def sdk_error(coro: Any) -> Any:
    """Await an SDK call that must fail; return the ``ODataError`` it raised."""
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError

    try:
        await coro
    except ODataError as exc:
        return exc
    raise AssertionError("the SDK call succeeded but an ODataError was expected")


def new_app(client: httpx.Client, version: str = "v1.0", **props: Any) -> dict:
    """POST an application (displayName defaults to a random name) and return it."""
    body = {"displayName": f"app-{uuid.uuid4().hex[:8]}", **props}
    response = client.post(f"/{version}/applications", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def fic_body(name: str = "gitlab-main", **over: Any) -> dict:
    """A valid exact-subject FIC payload for gitlab.com."""
    body = {"name": name, "issuer": "https://gitlab.com",
            "subject": "project_path:group/project:ref_type:branch:ref:main",
            "audiences": ["api://AzureADTokenExchange"], "description": None}
    body.update(over)
    return body
