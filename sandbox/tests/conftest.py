"""Fixtures for the sandbox's tests: a real sandbox process over HTTPS.

* ``sandbox`` (session): starts ``python -m oidc_sandbox serve --port 0`` in a temporary state directory and
  returns a :class:`SandboxHandle`.
* ``clean_sandbox`` (function): the same handle after ``POST /_sandbox/reset`` (fresh seeded state, no faults).
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

SANDBOX_DIR = Path(__file__).resolve().parents[1]
if str(SANDBOX_DIR) not in sys.path:  # lets tests import oidc_sandbox for in-process checks
    sys.path.insert(0, str(SANDBOX_DIR))
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
ARM_SCOPE = "https://management.azure.com/.default"


@dataclasses.dataclass(frozen=True)
class Principal:
    """A seeded operator: ``client_id`` and ``secret``."""

    client_id: str
    secret: str = dataclasses.field(repr=False)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse the ``export NAME=value`` lines of ``<state-dir>/env``."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("export "):
            name, _, raw = line[len("export "):].partition("=")
            parsed = shlex.split(raw)
            values[name] = parsed[0] if parsed else ""
    return values


def ssl_context(ca_file: str) -> ssl.SSLContext:
    """A client TLS context trusting ``ca_file``."""
    return ssl.create_default_context(cafile=ca_file)


class SandboxHandle:
    """A running sandbox: URLs, IDs and helpers for its control API and token endpoint."""

    def __init__(self, process: subprocess.Popen[bytes], state_dir: Path, env: dict[str, str]):
        self.process = process
        self.state_dir = state_dir
        self.env = env
        self.url = env["SANDBOX_URL"]
        self.ca_file = env["SANDBOX_CA_FILE"]
        self.bundle_file = env["REQUESTS_CA_BUNDLE"]
        self.tenant_id = env["AZURE_TENANT_ID"]
        self.subscription_id = env["AZURE_SUBSCRIPTION_ID"]
        self.gitlab_issuer = env["SANDBOX_GITLAB_ISSUER"]
        self.operator = Principal(env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"])
        self.restricted = Principal(env["SANDBOX_RESTRICTED_CLIENT_ID"], env["SANDBOX_RESTRICTED_CLIENT_SECRET"])
        self.gitlab_url = env["GITLAB_URL"]  # the first GitLab instance (its API is gitlab_url + "/api/v4")
        self.gitlab_token = env["SANDBOX_GITLAB_TOKEN"]  # its administrator's token (api, Owner everywhere)
        self.http = httpx.Client(base_url=self.url, verify=ssl_context(self.ca_file), timeout=30.0, trust_env=False)

    # --- control API --------------------------------------------------------------------------------------
    def control(self, method: str, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        """Call ``/_sandbox/<path>`` (``path`` with or without the ``/_sandbox/`` prefix)."""
        path = path if path.startswith("/_sandbox") else "/_sandbox/" + path.lstrip("/")
        if json is not None:
            kwargs["json"] = json
        return self.http.request(method, path, **kwargs)

    def reset(self, **body: Any) -> None:
        """Fresh seeded state, no faults (``body`` may carry ``faults``/``config``)."""
        response = self.control("POST", "reset", json=body or None)
        assert response.status_code == 200, response.text

    def mint_gitlab_token(self, **claims: Any) -> str:
        """A GitLab CI ID token from ``POST /_sandbox/gitlab/token`` (keys as documented in the README)."""
        response = self.control("POST", "gitlab/token", json=claims)
        assert response.status_code == 200, response.text
        return response.json()["token"]

    def gitlab_seed(self, **body: Any) -> dict[str, Any]:
        """``POST /_sandbox/gitlab/seed``: groups, projects and tokens of a GitLab instance in one call."""
        response = self.control("POST", "gitlab/seed", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def gitlab(self, method: str, path: str, token: str | None = None, instance: str | None = None,
               **kwargs: Any) -> httpx.Response:
        """A GitLab REST API request (``path`` like ``/projects/1``) with the administrator's token by default
        (``token=""`` sends none)."""
        base = f"/gitlab/{instance}" if instance else self.gitlab_url[len(self.url):]
        headers = dict(kwargs.pop("headers", {}))
        token = self.gitlab_token if token is None else token
        if token:
            headers["PRIVATE-TOKEN"] = token
        return self.http.request(method, f"{base}/api/v4{path}", headers=headers, **kwargs)

    def faults(self, **spec: Any) -> None:
        response = self.control("POST", "faults", json=spec)
        assert response.status_code == 200, response.text

    # --- Entra --------------------------------------------------------------------------------------------
    @property
    def token_url(self) -> str:
        return f"{self.url}/{self.tenant_id}/oauth2/v2.0/token"

    def token_request(self, form: dict[str, str], tenant: str | None = None) -> httpx.Response:
        """POST a raw form to the token endpoint."""
        return self.http.post(f"/{tenant or self.tenant_id}/oauth2/v2.0/token", data=form)

    def token(self, scope: str = GRAPH_SCOPE, principal: Principal | None = None) -> str:
        """An access token for an operator (default: the full operator) via client_credentials."""
        principal = principal or self.operator
        response = self.token_request({"grant_type": "client_credentials", "client_id": principal.client_id,
                                       "client_secret": principal.secret, "scope": scope})
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def graph(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        """A Graph request (``path`` like ``/v1.0/applications``) with the operator's token by default."""
        headers = {"Authorization": f"Bearer {token or self.token(GRAPH_SCOPE)}", **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def arm(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        """An ARM request with the operator's token by default."""
        headers = {"Authorization": f"Bearer {token or self.token(ARM_SCOPE)}", **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def close(self) -> None:
        self.http.close()


def start_sandbox(state_dir: Path, *extra: str, timeout: float = 30.0) -> SandboxHandle:
    """Run ``serve`` on a free port in ``state_dir``; return once it answers its health check."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SANDBOX_DIR), env.get("PYTHONPATH")]))
    env.pop("SANDBOX_OPERATOR_SECRET", None)
    env.pop("SANDBOX_GITLAB_TOKEN", None)
    env.pop("SANDBOX_STATE_FILE", None)
    log = open(state_dir / "sandbox.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen([sys.executable, "-m", "oidc_sandbox", "serve", "--port", "0",
                                "--state-dir", str(state_dir), *extra],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    env_file = state_dir / "env"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sandbox exited ({process.returncode}):\n"
                               + (state_dir / "sandbox.log").read_text(errors="replace")[-3000:])
        if env_file.exists():
            values = read_env_file(env_file)
            try:
                response = httpx.get(values["SANDBOX_URL"] + "/_sandbox/health",
                                     verify=ssl_context(values["SANDBOX_CA_FILE"]),
                                     timeout=1.0, trust_env=False)
                if response.status_code == 200:
                    return SandboxHandle(process, state_dir, values)
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    stop_sandbox(process)
    raise RuntimeError("sandbox did not become healthy in time")


def stop_sandbox(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "azcli: runs the official Azure CLI against the sandbox (slow)")


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    """One sandbox process for the whole test session."""
    state_dir = tmp_path_factory.mktemp("sandbox-state")
    handle = start_sandbox(state_dir)
    try:
        yield handle
    finally:
        handle.close()
        stop_sandbox(handle.process)


@pytest.fixture
def clean_sandbox(sandbox: SandboxHandle) -> SandboxHandle:
    """The session sandbox, reset to its seeded state (no faults, clock unshifted, stats cleared)."""
    sandbox.reset()
    return sandbox
