"""The command line: start/status/stop in the background, the env file contract, the state file."""
from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import SANDBOX_DIR, read_env_file

ENV_NAMES = {"SANDBOX_URL", "SANDBOX_CA_FILE", "SANDBOX_GITLAB_ISSUER", "AZURE_TENANT_ID", "AZURE_CLIENT_ID",
             "AZURE_CLIENT_SECRET", "AZURE_SUBSCRIPTION_ID", "AZURE_AUTHORITY_HOST", "AZURE_GRAPH_ENDPOINT",
             "AZURE_RESOURCE_MANAGER_ENDPOINT", "AZURE_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE",
             "AZURE_CORE_INSTANCE_DISCOVERY", "AZURE_CORE_COLLECT_TELEMETRY"}


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(SANDBOX_DIR)
    full_env.pop("SANDBOX_OPERATOR_SECRET", None)
    full_env.pop("SANDBOX_STATE_FILE", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "oidc_sandbox", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, check=False)


@pytest.fixture
def state_dir(tmp_path: Path):
    directory = tmp_path / "state"
    yield directory
    cli("stop", "--state-dir", str(directory))


def test_start_status_stop(state_dir: Path):
    started = cli("start", "--state-dir", str(state_dir), "--state-file", str(state_dir / "state.json"))
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    assert url.startswith("https://127.0.0.1:")
    env_file = state_dir / "env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = read_env_file(env_file)
    assert ENV_NAMES <= set(values)
    assert values["SANDBOX_URL"] == values["AZURE_AUTHORITY_HOST"] == values["AZURE_GRAPH_ENDPOINT"] == url
    assert values["AZURE_RESOURCE_MANAGER_ENDPOINT"] == url
    assert values["SANDBOX_GITLAB_ISSUER"] == url + "/gitlab/gitlab.com"
    assert values["AZURE_CORE_INSTANCE_DISCOVERY"] == "false" and values["AZURE_CORE_COLLECT_TELEMETRY"] == "false"
    assert values["REQUESTS_CA_BUNDLE"] == values["SSL_CERT_FILE"] == values["AZURE_CA_BUNDLE"]
    bundle = Path(values["REQUESTS_CA_BUNDLE"]).read_text()
    assert Path(values["SANDBOX_CA_FILE"]).read_text() in bundle and bundle.count("BEGIN CERTIFICATE") > 10
    secret = values["AZURE_CLIENT_SECRET"]
    assert len(secret) >= 32

    # every listed name works as a real client setting: the bundle alone verifies the server
    context = ssl.create_default_context(cafile=values["REQUESTS_CA_BUNDLE"])
    for host_url in (url, url.replace("127.0.0.1", "localhost")):
        assert httpx.get(host_url + "/_sandbox/health", verify=context).status_code == 200

    again = cli("start", "--state-dir", str(state_dir))
    assert again.returncode == 0 and again.stdout.strip() == url
    status = cli("status", "--state-dir", str(state_dir))
    assert status.returncode == 0 and status.stdout.strip() == url

    stopped = cli("stop", "--state-dir", str(state_dir))
    assert stopped.returncode == 0
    assert not env_file.exists() and not (state_dir / "pid").exists()
    saved = json.loads((state_dir / "state.json").read_text())
    assert {app["appId"] for app in saved["apps"].values()} >= {values["AZURE_CLIENT_ID"]}
    assert stat.S_IMODE((state_dir / "state.json").stat().st_mode) == 0o600
    assert cli("status", "--state-dir", str(state_dir)).returncode == 1
    assert "not running" in cli("stop", "--state-dir", str(state_dir)).stdout

    for output in (started.stdout, started.stderr, stopped.stdout, (state_dir / "sandbox.log").read_text(),
                   (state_dir / "state.json").read_text()):
        assert secret not in output


def test_given_secret_and_save_on_demand(state_dir: Path):
    secret = "given-secret-for-the-test-0123456789"
    started = cli("start", "--state-dir", str(state_dir), "--state-file", str(state_dir / "s.json"),
                  env={"SANDBOX_OPERATOR_SECRET": secret})
    assert started.returncode == 0, started.stderr
    values = read_env_file(state_dir / "env")
    assert values["AZURE_CLIENT_SECRET"] == secret
    context = ssl.create_default_context(cafile=values["SANDBOX_CA_FILE"])
    with httpx.Client(base_url=values["SANDBOX_URL"], verify=context) as client:
        token = client.post(f"/{values['AZURE_TENANT_ID']}/oauth2/v2.0/token",
                            data={"grant_type": "client_credentials", "client_id": values["AZURE_CLIENT_ID"],
                                  "client_secret": secret, "scope": "https://graph.microsoft.com/.default"})
        assert token.status_code == 200
        saved = client.post("/_sandbox/save")
        assert saved.status_code == 200 and Path(saved.json()["saved"]).exists()
    assert secret not in (state_dir / "s.json").read_text()


def _client(values: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=values["SANDBOX_URL"], verify=ssl.create_default_context(
        cafile=values["SANDBOX_CA_FILE"]), timeout=30)


def _token(client: httpx.Client, values: dict[str, str], scope: str) -> dict[str, str]:
    response = client.post(f"/{values['AZURE_TENANT_ID']}/oauth2/v2.0/token",
                           data={"grant_type": "client_credentials", "client_id": values["AZURE_CLIENT_ID"],
                                 "client_secret": values["AZURE_CLIENT_SECRET"], "scope": scope})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_state_file_survives_a_restart(state_dir: Path):
    """State written on stop is loaded by the next start with the same --state-file; a reset reseeds."""
    state_file = state_dir / "state.json"
    args = ("--state-dir", str(state_dir), "--state-file", str(state_file))
    assert cli("start", *args).returncode == 0
    values = read_env_file(state_dir / "env")
    rg_path = f"/subscriptions/{values['AZURE_SUBSCRIPTION_ID']}/resourceGroups/rg-kept?api-version=2021-04-01"
    with _client(values) as client:
        graph = _token(client, values, "https://graph.microsoft.com/.default")
        app = client.post("/v1.0/applications", headers=graph, json={"displayName": "kept"}).json()
        fic = client.post(f"/v1.0/applications/{app['id']}/federatedIdentityCredentials", headers=graph,
                          json={"name": "kept", "issuer": "https://gitlab.com", "subject": "s",
                                "audiences": ["api://AzureADTokenExchange"]})
        assert fic.status_code == 201, fic.text
        arm = _token(client, values, "https://management.azure.com/.default")
        assert client.put(rg_path, headers=arm, json={"location": "westeurope"}).status_code == 201
    assert cli("stop", "--state-dir", str(state_dir)).returncode == 0

    # the second start names the file through the environment (what `make sandbox-start` passes on)
    restarted = cli("start", "--state-dir", str(state_dir), env={"SANDBOX_STATE_FILE": str(state_file)})
    assert restarted.returncode == 0, restarted.stderr
    values = read_env_file(state_dir / "env")  # new port, new CA, new secret: the seeded operator still works
    with _client(values) as client:
        graph = _token(client, values, "https://graph.microsoft.com/.default")
        got = client.get(f"/v1.0/applications/{app['id']}", headers=graph)
        assert got.status_code == 200 and got.json()["appId"] == app["appId"]
        fics = client.get(f"/v1.0/applications/{app['id']}/federatedIdentityCredentials", headers=graph).json()
        assert [f["name"] for f in fics["value"]] == ["kept"]
        arm = _token(client, values, "https://management.azure.com/.default")
        assert client.get(rg_path, headers=arm).status_code == 200
        assert client.post("/_sandbox/reset").status_code == 200
        assert client.get(f"/v1.0/applications/{app['id']}", headers=graph).status_code == 404
    assert values["AZURE_CLIENT_SECRET"] not in state_file.read_text()


def test_unusable_state_file_stops_the_start(tmp_path: Path):
    state_file = tmp_path / "state.json"
    state_file.write_text("{not json")
    result = cli("serve", "--state-dir", str(tmp_path), "--state-file", str(state_file))
    assert result.returncode == 2 and "is not valid JSON" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_unusable_state_files_change_nothing(tmp_path: Path):
    """In process: every unusable file is refused with a clear ValueError and leaves the seeded state alone."""
    from oidc_sandbox.app import new_sandbox
    from oidc_sandbox.context import Config

    ctx = new_sandbox(Config(state_dir=str(tmp_path), base_url="https://127.0.0.1:1"))
    before = json.dumps(ctx.state.redacted(), sort_keys=True)
    cases = {"missing.json": None, "bad.json": "{not json", "list.json": "[]",
             "other-tenant.json": '{"tenant_id": "11111111-2222-4333-8444-555555555555"}',
             "bad-member.json": json.dumps({"tenant_id": ctx.config.tenant_id, "apps": []})}
    messages = {"missing.json": "cannot read the state file", "bad.json": "is not valid JSON",
                "list.json": "is not a sandbox state", "other-tenant.json": "belongs to tenant",
                "bad-member.json": "is not a sandbox state"}
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_text(content)
        with pytest.raises(ValueError, match=messages[name]):
            ctx.load(str(tmp_path / name))
        assert json.dumps(ctx.state.redacted(), sort_keys=True) == before, name


def test_custom_ids_and_issuers(state_dir: Path):
    tenant = "11111111-2222-4333-8444-555555555555"
    started = cli("start", "--state-dir", str(state_dir), "--tenant-id", tenant, "--gitlab-issuer", "gitlab.acme.io")
    assert started.returncode == 0, started.stderr
    values = read_env_file(state_dir / "env")
    assert values["AZURE_TENANT_ID"] == tenant
    assert values["SANDBOX_GITLAB_ISSUER"].endswith("/gitlab/gitlab.acme.io")


def test_serve_refuses_non_loopback_and_busy_port(tmp_path: Path):
    refused = cli("serve", "--host", "0.0.0.0", "--state-dir", str(tmp_path))
    assert refused.returncode == 2 and "loopback" in refused.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = cli("serve", "--port", str(port), "--state-dir", str(tmp_path))
    assert result.returncode == 1 and "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr
