# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Helpers of the end-to-end tests (imported by conftest.py and the tests; a unique module name on purpose).

* ``fixtures``: ``sandbox/tests/conftest.py`` (the sandbox's own fixtures), ``azcli``: ``sandbox/tests/test_azcli.py``
  (Azure CLI helpers ``make_az``, ``Az`` and the ``az_bin`` fixture), both loaded once under private names.
* :func:`example_hosts`, :func:`run_example`, :func:`state_of`, :class:`Deployment`.
* :func:`kill_9_everything`: ``kill -9`` of an ``ansible-playbook`` process and every process it started (Ansible's
  workers call ``setsid()``, so killing the playbook's process group leaves them and their modules running);
  :func:`kill_9_run_when` starts a run and does that once a condition holds; :func:`failures` reads the hosts' failure
  messages from a run's output.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import yaml

REPO = Path(__file__).resolve().parents[2]
SANDBOX_TESTS = REPO / "sandbox" / "tests"
INVENTORY = REPO / "playbooks" / "inventory" / "example.yml"
ONBOARD = REPO / "playbooks" / "onboard.yml"
OFFBOARD = REPO / "playbooks" / "offboard.yml"
OTHER_RG = "rg-e2e-other"  # a second resource group, which no example project is granted anything on
RG_API = "api-version=2021-04-01"

sys.path.insert(0, str(REPO / "benchmarks"))
import ansible_harness as harness  # noqa: E402  (shared with the benchmark)


def _load(name: str, path: Path) -> Any:
    """Import ``path`` as module ``name`` once per process (the unit tests load the same sandbox fixtures)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fixtures = _load("oidc_sandbox_test_fixtures", SANDBOX_TESTS / "conftest.py")
if str(SANDBOX_TESTS) not in sys.path:  # test_azcli imports its sibling test_arm_helpers
    sys.path.append(str(SANDBOX_TESTS))
azcli = _load("oidc_sandbox_test_azcli", SANDBOX_TESTS / "test_azcli.py")


def example_hosts() -> list[str]:
    """Host names (GitLab project paths) of the example inventory, in file order (read at collection time)."""
    hosts: list[str] = []

    def walk(group: dict[str, Any] | None) -> None:
        group = group or {}
        for host in group.get("hosts") or {}:
            if host not in hosts:
                hosts.append(host)
        for child in (group.get("children") or {}).values():
            walk(child)

    for group in (yaml.safe_load(INVENTORY.read_text(encoding="utf-8")) or {}).values():
        walk(group)
    return hosts


@dataclasses.dataclass
class Deployment:
    """The example inventory onboarded on ``sandbox`` (see the module docstring)."""

    sandbox: Any
    workdir: Path
    env: dict[str, str]
    baseline: dict[str, Any]
    first: harness.PlaybookRun
    second: harness.PlaybookRun
    second_stats: dict[str, Any]
    report: dict[str, Any]
    offboarding: harness.PlaybookRun | None = None

    @property
    def report_dir(self) -> Path:
        return self.workdir / "report"

    @property
    def secrets(self) -> list[str]:
        return secrets_of(self.env)

    def project(self, host: str) -> dict[str, Any]:
        """The role's report entry of ``host`` (fails if the report has none, or after offboarding)."""
        assert self.offboarding is None, "the projects were offboarded already (test order changed?)"
        entries = [p for p in self.report["projects"] if p.get("host") == host]
        assert len(entries) == 1, f"the onboarding report has {len(entries)} entries for {host}"
        return entries[0]

    def offboard(self) -> harness.PlaybookRun:
        """Run playbooks/offboard.yml (once)."""
        if self.offboarding is None:
            self.offboarding = run_example(OFFBOARD, self.env, self.workdir)
        return self.offboarding

    def explain(self, run: harness.PlaybookRun) -> str:
        return f"ansible-playbook exit {run.returncode}, recap {run.recap}\n{run.tail(80, self.secrets)}"


def run_example(playbook: Path, env: dict[str, str], workdir: Path) -> harness.PlaybookRun:
    """``ansible-playbook -i playbooks/inventory/example.yml <playbook>`` in ``workdir``, report in workdir/report."""
    return harness.run_playbook(playbook, INVENTORY, env=env, cwd=workdir,
                                extra_vars={"gitlab_oidc_report_dir": str(workdir / "report")}, timeout=600)


def secrets_of(env: dict[str, str]) -> list[str]:
    """The secret values of an environment (to redact them from messages)."""
    return [value for name, value in env.items() if "SECRET" in name]


def state_of(sandbox: Any) -> dict[str, Any]:
    response = sandbox.control("GET", "state")
    assert response.status_code == 200, response.text
    return response.json()


def add_resource_group(sandbox: Any, name: str) -> None:
    response = sandbox.arm("PUT", f"/subscriptions/{sandbox.subscription_id}/resourceGroups/{name}?{RG_API}",
                           json={"location": "westeurope"})
    assert response.status_code in (200, 201), response.text


def managed_state(state: dict[str, Any]) -> dict[str, Any]:
    """What the collection made, without ids, secrets or timestamps: applications by uniqueName with their display
    name, description, tags, service principal, credentials and role assignments (comparable between two runs)."""
    apps = [a for a in state["applications"] if (a.get("uniqueName") or "").startswith("gitlab-oidc")]
    sps = {s["appId"]: s for s in state["service_principals"]}
    out = {}
    for app in apps:
        sp = sps.get(app["appId"])
        fics = sorted((f["name"], f.get("subject"), (f.get("claimsMatchingExpression") or {}).get("value"),
                       tuple(f["audiences"]), f.get("description"))
                      for f in state["federated_identity_credentials"].get(app["id"], []))
        # Names are uuid5 of scope, principal and role: they differ between two sandboxes (new principal ids).
        roles = sorted((r["properties"]["scope"].lower(), r["properties"]["roleDefinitionId"].rsplit("/", 1)[-1].lower(),
                        r["properties"].get("description"), r["properties"].get("principalType"))
                       for r in state["role_assignments"] if sp and r["properties"]["principalId"] == sp["id"])
        out[app["uniqueName"]] = {"displayName": app["displayName"], "description": app.get("description"),
                                  "tags": sorted(app.get("tags") or []), "service_principal": sp is not None,
                                  "credentials": fics, "roles": roles}
    return out


def app_complete(app: dict[str, Any]) -> bool:
    """Whether an application of ``managed_state`` has all it needs: its service principal, credentials and roles."""
    return bool(app["service_principal"] and app["credentials"] and app["roles"])


def orphans(state: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """What runs could have left behind half-made, compared with the ``baseline`` state: service principals without
    their application, credentials of missing applications, role assignments of missing principals."""
    app_ids = {a["appId"] for a in state["applications"]}
    app_object_ids = {a["id"] for a in state["applications"]}
    seeded = {s["id"] for s in baseline["service_principals"]}
    principals = {s["id"] for s in state["service_principals"]}
    found = [f"service principal {s['id']} of missing application {s['appId']}" for s in state["service_principals"]
             if s["id"] not in seeded and s.get("appId") not in app_ids]
    found += [f"credentials of missing application {oid}" for oid, fics in state["federated_identity_credentials"].items()
              if fics and oid not in app_object_ids]
    found += [f"role assignment {r['name']} of missing principal {r['properties']['principalId']}"
              for r in state["role_assignments"] if r["properties"]["principalId"] not in principals]
    return found


# --- GitLab (projects from the gitlab_projects inventory plugin, CI/CD variables) --------------------------------------

ARM_SCOPE = fixtures.ARM_SCOPE
AZURE_VARIABLES = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID")


def plugin_inventory(directory: Path, groups: list[str], **options: Any) -> Path:
    """A ``<dir>/e2e.gitlab_projects.yml`` inventory plugin configuration (URL and token from the environment)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "e2e.gitlab_projects.yml"
    config = {"plugin": "oidc_federation.azure.gitlab_projects", "gitlab_groups": groups, **options}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run_role(playbook: Path, inventory: Path, env: dict[str, str], workdir: Path, *options: str,
             **extra: Any) -> harness.PlaybookRun:
    """``ansible-playbook -i inventory playbook`` with the report in workdir/report and this Python for the modules."""
    extra_vars = {"gitlab_oidc_report_dir": str(workdir / "report"), "ansible_python_interpreter": sys.executable}
    extra_vars.update(extra)
    return harness.run_playbook(playbook, inventory, env=env, cwd=workdir, options=options, extra_vars=extra_vars,
                                timeout=600)


def report_of(workdir: Path, name: str = "onboarding") -> dict[str, Any]:
    """The role's JSON report ``name`` of the last run in ``workdir``, by host."""
    report = json.loads((workdir / "report" / f"{name}.json").read_text(encoding="utf-8"))
    return {p["host"]: p for p in report["projects"]}


def gitlab_secrets(env: dict[str, str], *tokens: str) -> list[str]:
    """Secrets of an environment plus GitLab tokens (to redact them from messages and to scan output for them)."""
    return secrets_of(env) + [value for name, value in env.items() if "TOKEN" in name and value] + list(tokens)


def gitlab_variables(sandbox: Any, project_id: int | str) -> list[dict[str, Any]]:
    """A project's CI/CD variables with their values (the GitLab API, as the administrator)."""
    response = sandbox.gitlab("GET", f"/projects/{project_id}/variables", params={"per_page": 100})
    assert response.status_code == 200, response.text
    return response.json()


def gitlab_project(sandbox: Any, project: int | str) -> dict[str, Any]:
    """A project as GitLab shows it to its administrator (id or full path)."""
    response = sandbox.gitlab("GET", "/projects/" + quote(str(project), safe=""))
    assert response.status_code == 200, response.text
    return response.json()


def stats_of(sandbox: Any) -> dict[str, Any]:
    response = sandbox.control("GET", "stats")
    assert response.status_code == 200, response.text
    return response.json()


def azure_writes(stats: dict[str, Any]) -> int:
    """Graph and ARM writes as their quotas count them (each request inside a ``$batch``, not the envelope, which
    is a POST even when it only reads)."""
    return stats["graph"]["writes"] + stats["arm"]["writes"]


def reset_stats(sandbox: Any) -> None:
    assert sandbox.control("POST", "stats/reset").status_code == 200


def apps_by_marker(state: dict[str, Any], issuer: str) -> dict[str, list[dict[str, Any]]]:
    """The applications carrying a GitLab project marker tag of ``issuer``, by project id (a list: duplicates show)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for app in state["applications"]:
        for tag in app.get("tags") or []:
            prefix, separator, rest = tag.partition(":gitlab-project:")
            if prefix and separator and rest.endswith("@" + issuer):
                found.setdefault(rest[:-len(issuer) - 1], []).append(app)
    return found


def exchange(sandbox: Any, client_id: str, gitlab_token: str, *, tenant_id: str | None = None) -> str:
    """The GitLab ID token exchanged for an ARM access token by azure-identity, as a CI job's SDK would (its
    ``ClientAuthenticationError`` when Entra refuses). ``tenant_id``: the sandbox's own by default."""
    from azure.identity import ClientAssertionCredential  # noqa: PLC0415 - only the e2e tests need it

    credential = ClientAssertionCredential(tenant_id or sandbox.tenant_id, client_id, lambda: gitlab_token,
                                           authority=sandbox.url, connection_verify=sandbox.ca_file)
    try:
        return credential.get_token(ARM_SCOPE).token
    finally:
        credential.close()


def login_with_azure_identity(sandbox: Any, tenant_id: str, client_id: str, gitlab_token: str) -> dict[str, Any]:
    """``exchange`` in ``tenant_id``; the ARM token's claims (and the token as ``_token``)."""
    token = exchange(sandbox, client_id, gitlab_token, tenant_id=tenant_id)
    return jwt.decode(token, options={"verify_signature": False}) | {"_token": token}


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (from /proc). Ansible's workers call setsid(), so the playbook's process
    group does not hold them (nor the module processes they start)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="utf-8")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def signal_all(pids: list[int], signum: int) -> None:
    """Send ``signum`` to each of ``pids`` that still exists."""
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def kill_9_everything(process: subprocess.Popen, timeout: float = 10.0) -> tuple[list[int], list[int]]:
    """``kill -9`` of ansible-playbook and every process it started, at once, as a crash of the controller would:
    the tree is frozen first (SIGSTOP: nothing forks any more), then killed. Returns (the killed pids, those still
    alive after ``timeout`` seconds)."""
    frozen: list[int] = []
    while True:
        new = [pid for pid in process_tree(process.pid) if pid not in frozen]
        if not new:
            break
        signal_all(new, signal.SIGSTOP)
        frozen += new
    signal_all(frozen, signal.SIGKILL)
    process.wait(timeout=60)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in frozen):
        time.sleep(0.05)
    return frozen, [pid for pid in frozen if alive(pid)]


_FATAL = re.compile(r"^fatal: \[(?P<host>[^\]]+?)(?: -> [^\]]+)?\]: FAILED! => (?P<result>\{.*\})\s*$")


def failures(result: harness.PlaybookRun) -> dict[str, str]:
    """host -> the ``msg`` of its failed task (the default callback's ``fatal: [host]: FAILED! => {...}`` lines)."""
    out: dict[str, str] = {}
    for line in result.output.splitlines():
        match = _FATAL.match(line)
        if match:
            out[match.group("host")] = json.loads(match.group("result")).get("msg") or ""
    return out


def kill_9_run_when(playbook: Path, inventory: Path, env: dict[str, str], workdir: Path, extra_vars: dict[str, Any],
                    ready: Any, *, interval: float, ended: str, deadline: float = 300.0) -> tuple[list[int], list[int]]:
    """Start ``ansible-playbook -i inventory playbook --extra-vars ...`` in its own session (output discarded), call
    ``ready()`` every ``interval`` seconds until it holds, and then ``kill -9`` the whole run (``kill_9_everything``:
    ansible-core's workers call setsid(), so the process group is not enough). Fails with ``ended`` when the run ended
    first. Returns (the killed pids, those still alive)."""
    args = [harness.ansible_playbook_bin(), "-i", str(inventory), str(playbook), "--extra-vars", json.dumps(extra_vars)]
    process = subprocess.Popen(args, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        stop = time.monotonic() + deadline
        while time.monotonic() < stop and process.poll() is None:
            if ready():
                break
            time.sleep(interval)
        assert process.poll() is None, ended
        return kill_9_everything(process)
    finally:
        if process.poll() is None:
            kill_9_everything(process)


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie does not)."""
    try:
        state = Path("/proc/{0}/stat".format(pid)).read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
