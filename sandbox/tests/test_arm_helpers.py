"""Shared helpers and the ``arm`` fixture for the ARM tests (no tests here).

``arm`` wraps the HTTPS ``clean_sandbox`` fixture (see conftest.py) with:
  * ``env.call(method, path, who=None, **kwargs)``: an ARM request with ``who``'s token (the operator by default);
  * ``env.principal()``: a new app + service principal (through Graph) with an exact FIC for a GitLab branch;
  * ``env.login(principal)``: its ARM access token, obtained like a CI job (GitLab ID token -> client assertion);
  * ``env.grant(principal_or_sp_id, role, scope)``: a role assignment made through ARM by the operator;
  * ``env.seed(kind, body)``: ``POST /_sandbox/arm/<kind>`` (subscriptions, managementGroups, resources, ...).
Everything goes over HTTP; nothing reaches into the sandbox's memory.
"""
from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import httpx
import pytest


ARM_SCOPE = "https://management.azure.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
RA_VERSION = "api-version=2022-04-01"
RD_VERSION = "api-version=2022-05-01-preview"
RG_VERSION = "api-version=2021-04-01"
SUB_VERSION = "api-version=2022-12-01"

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"

SEEDED_RG = "rg-sandbox"


@dataclasses.dataclass(frozen=True)
class Principal:
    """An app registration with its service principal and the GitLab project/branch its FIC trusts."""

    app_id: str
    app_object_id: str
    sp_id: str
    project_path: str
    ref: str


class ArmEnv:
    """Helpers bound to one freshly reset sandbox."""

    def __init__(self, sandbox: Any):
        self.sb = sandbox
        self.sub = sandbox.subscription_id
        self.sub_scope = f"/subscriptions/{self.sub}"
        self.rg_scope = f"{self.sub_scope}/resourceGroups/{SEEDED_RG}"
        self._tokens: dict[Any, str] = {}

    # --- tokens -------------------------------------------------------------------------------------------
    def operator_token(self, scope: str = ARM_SCOPE) -> str:
        key = ("operator", scope)
        if key not in self._tokens:
            self._tokens[key] = self.sb.token(scope)
        return self._tokens[key]

    def restricted_token(self) -> str:
        key = ("restricted", ARM_SCOPE)
        if key not in self._tokens:
            self._tokens[key] = self.sb.token(ARM_SCOPE, self.sb.restricted)
        return self._tokens[key]

    def login(self, principal: Principal, scope: str = ARM_SCOPE) -> str:
        """The principal's access token, exchanged for a GitLab ID token of its project/branch."""
        key = (principal.app_id, scope)
        if key not in self._tokens:
            assertion = self.sb.mint_gitlab_token(project_path=principal.project_path, ref=principal.ref)
            response = self.sb.token_request({"grant_type": "client_credentials", "client_id": principal.app_id,
                                              "client_assertion_type": ASSERTION_TYPE,
                                              "client_assertion": assertion, "scope": scope})
            assert response.status_code == 200, response.text
            self._tokens[key] = response.json()["access_token"]
        return self._tokens[key]

    # --- requests -----------------------------------------------------------------------------------------
    def call(self, method: str, path: str, who: Principal | str | None = None, **kwargs: Any) -> httpx.Response:
        """An ARM request as ``who`` (a Principal, a raw bearer token, or None for the operator)."""
        if isinstance(who, Principal):
            token = self.login(who)
        elif isinstance(who, str):
            token = who
        else:
            token = self.operator_token()
        return self.sb.arm(method, path, token=token, **kwargs)

    def graph(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.sb.graph(method, path, token=self.operator_token(GRAPH_SCOPE), **kwargs)

    def seed(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.sb.control("POST", f"arm/{kind}", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    # --- directory and role assignments -------------------------------------------------------------------
    def principal(self, name: str | None = None, *, ref: str = "main") -> Principal:
        """A new app + service principal with an exact FIC for ``group/<name>`` on branch ``ref``."""
        name = name or f"arm-test-{uuid.uuid4().hex[:8]}"
        app = self.graph("POST", "/v1.0/applications", json={"displayName": name})
        assert app.status_code == 201, app.text
        sp = self.graph("POST", "/v1.0/servicePrincipals", json={"appId": app.json()["appId"]})
        assert sp.status_code == 201, sp.text
        project_path = f"arm-tests/{name}"
        fic = self.graph("POST", f"/v1.0/applications/{app.json()['id']}/federatedIdentityCredentials",
                         json={"name": "gitlab-main", "issuer": self.sb.gitlab_issuer,
                               "subject": f"project_path:{project_path}:ref_type:branch:ref:{ref}",
                               "audiences": ["api://AzureADTokenExchange"]})
        assert fic.status_code == 201, fic.text
        return Principal(app.json()["appId"], app.json()["id"], sp.json()["id"], project_path, ref)

    def assignment_path(self, scope: str, name: str | None = None) -> str:
        return f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name or uuid.uuid4()}?{RA_VERSION}"

    def role_id(self, role_guid: str, scope: str | None = None) -> str:
        return f"{scope or self.sub_scope}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"

    def assign(self, principal: Principal | str, role_guid: str, scope: str, *, who: Principal | str | None = None,
               name: str | None = None, principal_type: str | None = "ServicePrincipal") -> httpx.Response:
        """PUT a role assignment (raw response)."""
        sp_id = principal.sp_id if isinstance(principal, Principal) else principal
        props: dict[str, Any] = {"roleDefinitionId": self.role_id(role_guid), "principalId": sp_id}
        if principal_type:
            props["principalType"] = principal_type
        return self.call("PUT", self.assignment_path(scope, name), who, json={"properties": props})

    def grant(self, principal: Principal | str, role_guid: str, scope: str) -> dict[str, Any]:
        """A role assignment the operator makes (asserted to succeed)."""
        response = self.assign(principal, role_guid, scope)
        assert response.status_code == 201, response.text
        return response.json()

    def create_rg(self, name: str, location: str = "westeurope") -> dict[str, Any]:
        response = self.call("PUT", f"{self.sub_scope}/resourcegroups/{name}?{RG_VERSION}",
                             json={"location": location})
        assert response.status_code == 201, response.text
        return response.json()


def error_of(response: httpx.Response, status: int, code: str) -> str:
    """Assert ARM's error envelope with ``status``/``code``; return the message."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]


@pytest.fixture
def arm(clean_sandbox: Any) -> ArmEnv:
    """A freshly reset HTTPS sandbox with ARM helpers."""
    return ArmEnv(clean_sandbox)
