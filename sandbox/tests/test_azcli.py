"""The official Azure CLI (azure-cli 2.91.0) against the sandbox, the way a GitLab CI job uses it.

Settings follow /work/shared/reference/azcli-against-sandbox.md: a fresh AZURE_CONFIG_DIR per test, a custom cloud
discovered through the sandbox's ``/metadata/endpoints``, MSAL instance discovery and HTTP cache off, telemetry off,
the sandbox CA through REQUESTS_CA_BUNDLE.  The tenant is seeded over HTTP only (control API, Graph and ARM with the
operator's token).  The CLI venv comes from sandbox/scripts/azcli-venv.sh (``make azcli``); the tests are skipped
only when that script cannot produce it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from test_arm_helpers import OWNER, READER, ArmEnv, Principal, arm  # noqa: F401 - arm is a fixture

pytestmark = pytest.mark.azcli

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "azcli-venv.sh"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_ROLES = {"Application.Read.All": "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
               "Directory.Read.All": "7ab1d382-f21e-4acd-a863-ba3e13f7da61"}


@pytest.fixture(scope="module")
def az_bin() -> Path:
    """The ``az`` of the CLI venv, created by the venv script when missing (skip when that fails)."""
    try:
        result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=1800,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"Azure CLI venv script could not run: {exc}")
    if result.returncode != 0 or not result.stdout.strip():
        pytest.skip("Azure CLI venv unavailable (sandbox/scripts/azcli-venv.sh failed): "
                    + result.stderr.strip()[-400:])
    az = Path(result.stdout.strip().splitlines()[-1]) / "bin" / "az"
    if not os.access(az, os.X_OK):
        pytest.skip(f"Azure CLI venv at {az.parent.parent} has no az executable")
    return az


@dataclasses.dataclass
class Az:
    """Runs ``az`` with one private configuration directory against one sandbox."""

    binary: Path
    env: dict[str, str]
    secrets: tuple[str, ...] = ()

    def run(self, *args: str, secret: str | None = None) -> subprocess.CompletedProcess[str]:
        if secret:
            self.secrets += (secret,)
        return subprocess.run([str(self.binary), *args, "--only-show-errors"], env=self.env, capture_output=True,
                              text=True, timeout=180, stdin=subprocess.DEVNULL)

    def explain(self, result: subprocess.CompletedProcess[str]) -> str:
        """exit code and output for an assertion message, with tokens redacted."""
        text = f"exit {result.returncode}\nstdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
        for secret in self.secrets:
            text = text.replace(secret, "<redacted>")
        return text

    def json(self, *args: str, secret: str | None = None) -> Any:
        result = self.run(*args, "--output", "json", secret=secret)
        assert result.returncode == 0, self.explain(result)
        return json.loads(result.stdout)


def make_az(binary: Path, sandbox: Any, home: Path, endpoint: str | None = None) -> Az:
    """``az`` with a fresh config dir and the Sandbox cloud registered through endpoint discovery at ``endpoint``
    (default: the sandbox URL, no trailing slash)."""
    config_dir = home / "azure-config"
    config_dir.mkdir(parents=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
        "AZURE_CONFIG_DIR": str(config_dir),
        "REQUESTS_CA_BUNDLE": sandbox.bundle_file,
        "AZURE_CORE_COLLECT_TELEMETRY": "false",
        "AZURE_CORE_INSTANCE_DISCOVERY": "false",
        "AZURE_CORE_USE_MSAL_HTTP_CACHE": "false",
        "AZURE_CORE_NO_COLOR": "true",
        "AZURE_CORE_SURVEY_MESSAGE": "false",
    }
    az = Az(binary, env)
    # Endpoint discovery reads the sandbox's /metadata/endpoints ('//metadata/endpoints' when the endpoint ends
    # with a slash: the sandbox collapses repeated slashes).
    for args in (("cloud", "register", "--name", "Sandbox", "--endpoint-resource-manager", endpoint or sandbox.url),
                 ("cloud", "set", "--name", "Sandbox"),
                 ("config", "set", "core.instance_discovery=false", "core.use_msal_http_cache=false")):
        result = az.run(*args)
        assert result.returncode == 0, az.explain(result)
    return az


def _graph_sp_id(arm: ArmEnv) -> str:
    response = arm.graph("GET", f"/v1.0/servicePrincipals?$filter=appId eq '{GRAPH_APP_ID}'")
    assert response.status_code == 200, response.text
    return response.json()["value"][0]["id"]


def seed_ci_identity(arm: ArmEnv) -> Principal:
    """App + SP + exact FIC for arm-tests/<name> on main, Reader on the subscription, Graph read permissions."""
    principal = arm.principal()
    arm.grant(principal, READER, arm.sub_scope)
    graph_sp = _graph_sp_id(arm)
    for role_id in GRAPH_ROLES.values():
        response = arm.graph("POST", f"/v1.0/servicePrincipals/{principal.sp_id}/appRoleAssignments",
                             json={"principalId": principal.sp_id, "resourceId": graph_sp, "appRoleId": role_id})
        assert response.status_code == 201, response.text
    return principal


def login(az: Az, arm: ArmEnv, principal: Principal, token: str) -> subprocess.CompletedProcess[str]:
    return az.run("login", "--service-principal", "--username", principal.app_id, "--tenant", arm.sb.tenant_id,
                  "--federated-token", token, "--output", "json", secret=token)


def test_cloud_discovery_uses_sandbox_metadata(az_bin, arm, tmp_path):
    az = make_az(az_bin, arm.sb, tmp_path)
    cloud = az.json("cloud", "show", "--name", "Sandbox")
    assert cloud["endpoints"]["activeDirectory"] == arm.sb.url
    assert cloud["endpoints"]["microsoftGraphResourceId"] == f"{arm.sb.url}/"
    assert cloud["endpoints"]["activeDirectoryResourceId"] == "https://management.core.windows.net/"


def test_cloud_discovery_with_a_trailing_slash(az_bin, arm, tmp_path):
    az = make_az(az_bin, arm.sb, tmp_path, endpoint=f"{arm.sb.url}/")
    cloud = az.json("cloud", "show", "--name", "Sandbox")
    assert cloud["endpoints"]["activeDirectory"] == arm.sb.url
    assert cloud["endpoints"]["resourceManager"] == f"{arm.sb.url}/"
    routes = arm.sb.control("GET", "stats").json()["by_route"]
    assert routes.get("GET /metadata/endpoints", 0) >= 1, routes


def test_federated_login_and_reads(az_bin, arm, tmp_path):
    principal = seed_ci_identity(arm)
    az = make_az(az_bin, arm.sb, tmp_path)
    token = arm.sb.mint_gitlab_token(project_path=principal.project_path, ref="main")

    result = login(az, arm, principal, token)
    assert result.returncode == 0, az.explain(result)
    (subscription,) = json.loads(result.stdout)
    assert subscription["id"] == arm.sub and subscription["tenantId"] == arm.sb.tenant_id
    assert subscription["user"] == {"name": principal.app_id, "type": "servicePrincipal"}

    account = az.json("account", "show")
    assert account["id"] == arm.sub and account["isDefault"] is True
    assert account["user"]["name"] == principal.app_id

    (fic,) = az.json("ad", "app", "federated-credential", "list", "--id", principal.app_id)
    assert fic["issuer"] == arm.sb.gitlab_issuer
    assert fic["subject"] == f"project_path:{principal.project_path}:ref_type:branch:ref:main"
    assert fic["audiences"] == ["api://AzureADTokenExchange"]

    sp = az.json("ad", "sp", "show", "--id", principal.app_id)
    assert sp["id"] == principal.sp_id and sp["appId"] == principal.app_id

    (assignment,) = az.json("role", "assignment", "list", "--assignee", principal.app_id, "--all")
    assert assignment["roleDefinitionName"] == "Reader"
    assert assignment["scope"] == arm.sub_scope
    assert assignment["principalId"] == principal.sp_id
    assert assignment["principalType"] == "ServicePrincipal"
    assert assignment["principalName"] == principal.app_id

    # what the login can do in ARM is what its role allows: reads yes, writes no
    groups = az.json("group", "list")
    assert "rg-sandbox" in [g["name"] for g in groups]
    denied = az.run("group", "create", "--name", "rg-from-ci", "--location", "westeurope")
    assert denied.returncode != 0 and "AuthorizationFailed" in denied.stderr, az.explain(denied)


def test_token_of_another_branch_is_rejected(az_bin, arm, tmp_path):
    principal = seed_ci_identity(arm)
    az = make_az(az_bin, arm.sb, tmp_path)
    token = arm.sb.mint_gitlab_token(project_path=principal.project_path, ref="feature/x")
    assert arm.sb.control("POST", "stats/reset").status_code == 200
    result = login(az, arm, principal, token)
    assert result.returncode != 0, az.explain(result)
    output = result.stdout + result.stderr
    assert "AADSTS700213" in output or "AADSTS70021" in output, az.explain(result)
    assert "No matching federated identity record found" in output, az.explain(result)
    # the sandbox refused the exchange and az never got as far as ARM; nothing was stored in the profile
    stats = arm.sb.control("GET", "stats").json()
    assert set(stats["token_failures"]) & {"AADSTS700213", "AADSTS70021"}, stats["token_failures"]
    assert stats["by_service"].get("arm", 0) == 0, stats["by_service"]
    assert az.run("account", "show").returncode != 0


def test_directory_lists_and_custom_roles(az_bin, arm, tmp_path):
    """``az ad app list`` / ``az ad sp list --display-name`` (startswith filters, no advanced query needed) and
    ``az role definition create/list/delete`` (Role Definitions Create Or Update / List / Delete) as a CI login
    with Owner on the subscription."""
    principal = seed_ci_identity(arm)
    arm.grant(principal, OWNER, arm.sub_scope)
    prefix = f"az-list-{uuid.uuid4().hex[:6]}"
    for suffix in ("one", "two"):
        app = arm.graph("POST", "/v1.0/applications", json={"displayName": f"{prefix}-{suffix}"}).json()
        assert arm.graph("POST", "/v1.0/servicePrincipals", json={"appId": app["appId"]}).status_code == 201
    az = make_az(az_bin, arm.sb, tmp_path)
    token = arm.sb.mint_gitlab_token(project_path=principal.project_path, ref="main")
    result = login(az, arm, principal, token)
    assert result.returncode == 0, az.explain(result)

    apps = az.json("ad", "app", "list", "--display-name", prefix)
    assert sorted(a["displayName"] for a in apps) == [f"{prefix}-one", f"{prefix}-two"]
    assert all("windows" not in a and "createdByAppId" in a for a in apps)  # the v1.0 shape
    sps = az.json("ad", "sp", "list", "--display-name", f"{prefix}-tw")
    assert [s["displayName"] for s in sps] == [f"{prefix}-two"]

    role_name = f"CI Custom Reader {prefix}"
    definition = tmp_path / "role.json"
    definition.write_text(json.dumps({"Name": role_name, "IsCustom": True, "Description": "made by az",
                                      "Actions": ["Microsoft.Storage/*/read"], "NotActions": [],
                                      "AssignableScopes": [arm.sub_scope]}))
    created = az.json("role", "definition", "create", "--role-definition", f"@{definition}")
    assert created["roleName"] == role_name and created["roleType"] == "CustomRole"
    assert created["assignableScopes"] == [arm.sub_scope]
    (listed,) = az.json("role", "definition", "list", "--name", role_name, "--custom-role-only", "true")
    assert listed["name"] == created["name"]
    deleted = az.run("role", "definition", "delete", "--name", role_name)
    assert deleted.returncode == 0, az.explain(deleted)
    assert az.json("role", "definition", "list", "--name", role_name, "--custom-role-only", "true") == []
