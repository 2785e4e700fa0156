"""Benchmark of the sandbox: start time, reset time and requests per second.  Prints figures, asserts nothing.

Usage: ``.venv/bin/python sandbox/bench.py [--requests N] [--clients C] [--json]``.
Targets (from the sandbox's brief): start < 3 s, reset < 3 s, >= 200 requests/s.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import httpx

SANDBOX_DIR = Path(__file__).resolve().parent
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _read_env(path: Path) -> dict[str, str]:
    import shlex

    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            name, _, raw = line[7:].partition("=")
            values[name] = shlex.split(raw)[0] if raw else ""
    return values


def _cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SANDBOX_DIR)}
    env.pop("SANDBOX_STATE_FILE", None)
    return subprocess.run([sys.executable, "-m", "oidc_sandbox", *args, "--state-dir", str(state_dir)],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


def _rate(name: str, total: int, clients: int, call: Callable[[httpx.Client], int], make_client) -> dict[str, Any]:
    per_client = max(1, total // clients)

    def worker() -> list[int]:
        with make_client() as client:
            return [call(client) for _ in range(per_client)]

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = [status for future in [pool.submit(worker) for _ in range(clients)] for status in future.result()]
    elapsed = time.perf_counter() - started
    bad = sum(1 for status in results if status >= 400)
    return {"workload": name, "requests": len(results), "clients": clients, "seconds": round(elapsed, 3),
            "req_per_s": round(len(results) / elapsed, 1), "errors": bad}


def run(requests: int, clients: int) -> dict[str, Any]:
    state_dir = Path(tempfile.mkdtemp(prefix="sandbox-bench-"))
    report: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        result = _cli(state_dir, "start")
        report["start_seconds"] = round(time.perf_counter() - started, 3)
        if result.returncode != 0:
            raise SystemExit(f"sandbox did not start: {result.stderr}")
        env = _read_env(state_dir / "env")
        url, tenant = env["SANDBOX_URL"], env["AZURE_TENANT_ID"]
        context = ssl.create_default_context(cafile=env["SANDBOX_CA_FILE"])

        def make_client() -> httpx.Client:
            return httpx.Client(base_url=url, verify=context, trust_env=False, timeout=30)

        with make_client() as client:
            resets = []
            for _ in range(5):
                began = time.perf_counter()
                client.post("/_sandbox/reset").raise_for_status()
                resets.append(time.perf_counter() - began)
            report["reset_seconds_median"] = round(statistics.median(resets), 4)
            report["reset_seconds_max"] = round(max(resets), 4)

            def token(scope: str) -> str:
                response = client.post(f"/{tenant}/oauth2/v2.0/token", data={
                    "grant_type": "client_credentials", "client_id": env["AZURE_CLIENT_ID"],
                    "client_secret": env["AZURE_CLIENT_SECRET"], "scope": scope})
                response.raise_for_status()
                return response.json()["access_token"]

            graph = {"Authorization": "Bearer " + token("https://graph.microsoft.com/.default")}
            arm = {"Authorization": "Bearer " + token("https://management.azure.com/.default")}
            app = client.post("/v1.0/applications", headers=graph,
                              json={"displayName": "bench", "signInAudience": "AzureADMyOrg"}).json()
            client.post("/v1.0/servicePrincipals", headers=graph, json={"appId": app["appId"]}).raise_for_status()
            subject = "project_path:bench/project:ref_type:branch:ref:main"
            client.post(f"/v1.0/applications/{app['id']}/federatedIdentityCredentials", headers=graph,
                        json={"name": "bench", "issuer": env["SANDBOX_GITLAB_ISSUER"], "subject": subject,
                              "audiences": ["api://AzureADTokenExchange"]}).raise_for_status()
            assertion = client.post("/_sandbox/gitlab/token",
                                    json={"project_path": "bench/project", "lifetime": 3600}).json()["token"]

        sub = env["AZURE_SUBSCRIPTION_ID"]
        workloads: list[tuple[str, Callable[[httpx.Client], int]]] = [
            ("graph GET /v1.0/applications", lambda c: c.get("/v1.0/applications", headers=graph).status_code),
            ("graph GET application by appId",
             lambda c: c.get(f"/v1.0/applications(appId='{app['appId']}')", headers=graph).status_code),
            ("arm GET role assignments",
             lambda c: c.get(f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments",
                             params={"api-version": "2022-04-01"}, headers=arm).status_code),
            ("entra client_secret token", lambda c: c.post(f"/{tenant}/oauth2/v2.0/token", data={
                "grant_type": "client_credentials", "client_id": env["AZURE_CLIENT_ID"],
                "client_secret": env["AZURE_CLIENT_SECRET"],
                "scope": "https://management.azure.com/.default"}).status_code),
            ("entra federated token (issuer discovery each time)",
             lambda c: c.post(f"/{tenant}/oauth2/v2.0/token", data={
                 "grant_type": "client_credentials", "client_id": app["appId"], "client_assertion_type": JWT_BEARER,
                 "client_assertion": assertion, "scope": "https://management.azure.com/.default"}).status_code),
        ]
        report["workloads"] = [_rate(name, requests, clients, call, make_client) for name, call in workloads]
        with make_client() as client:
            report["stats_total"] = client.get("/_sandbox/stats").json()["total"]
    finally:
        _cli(state_dir, "stop")
        shutil.rmtree(state_dir, ignore_errors=True)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per workload (default 400)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive clients (default 4)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    report = run(args.requests, args.clients)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"start (CLI 'start' until healthy): {report['start_seconds']:.3f} s   (target < 3 s)")
    print(f"reset: median {report['reset_seconds_median'] * 1000:.1f} ms, max {report['reset_seconds_max'] * 1000:.1f} ms"
          "   (target < 3 s)")
    for workload in report["workloads"]:
        print(f"{workload['workload']:<52} {workload['req_per_s']:>8.1f} req/s  ({workload['requests']} requests, "
              f"{workload['clients']} clients, {workload['errors']} errors)   (target >= 200)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
