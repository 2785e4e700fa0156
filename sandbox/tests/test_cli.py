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
