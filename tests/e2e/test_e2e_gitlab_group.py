# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Issue 11, "Done when" 1: a GitLab group onboarded from the ``gitlab_projects`` inventory plugin alone.

The sandbox's gitlab.com holds the group ``fleet``: 25 projects in nested subgroups (down to four levels), one of
them archived, two whose ``ci_id_token_sub_claim_components`` lead with ``project_id``, two with another default
branch, and one with variables the collection did not set (``DEPLOY_TARGET``, and ``AZURE_CLIENT_ID`` in the
environment scope ``legacy``). The only inventory is a ``*.gitlab_projects.yml`` file (URL and a Maintainer token of
the group from the environment, ``compose`` turns the GitLab API on and trusts each project's default branch);
``playbooks/onboard.yml`` runs with ``gitlab_oidc_strategy=bulk``, Reader on the subscription and protected variables
given with ``-e``.

Checked: the 24 live projects are onboarded (the archived one is not a host), each with exactly one application
(found by its GitLab project marker), its CI/CD variables hold the application's client id, the tenant and the
subscription (masked, protected, scope ``*``, marked as set by the collection), and an ID token the sandbox mints
for each project (its real ``sub``: path-led or project_id-led as GitLab says) logs in with azure-identity as that
application. The Azure CLI (``az login --service-principal --federated-token``, using only the values read from
the project's GitLab variables) logs in for each of them too, four logins at a time (each with its own Azure CLI
configuration directory). A second run changes nothing and writes nothing (0 Graph/ARM and 0 GitLab writes in
``/_sandbox/stats``); offboarding removes the variables the collection set and only those, and every Azure object.
No GitLab token appears in the output. Tests run in file order (offboarding last).
"""
from __future__ import annotations

import concurrent.futures
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from e2e_support import (AZURE_VARIABLES, OFFBOARD, ONBOARD, apps_by_marker, azcli, azure_writes, gitlab_project,
                         gitlab_secrets, gitlab_variables, harness, login_with_azure_identity, managed_state, orphans,
                         plugin_inventory, report_of, reset_stats, run_role, state_of, stats_of)

TOKEN = "glpat-e2e-fleet-maintainer"
GROUP = "fleet"
PROJECT_ID_LED = ["project_id", "ref_type", "ref"]
# path: extra seed fields
PROJECTS: dict[str, dict[str, Any]] = {
    **{f"fleet/web-{i:02d}": {} for i in range(1, 7)},
    **{f"fleet/platform/infra-{i:02d}": {} for i in range(1, 5)},
    **{f"fleet/platform/core/svc-{i:02d}": {} for i in range(1, 6)},
    **{f"fleet/data/pipe-{i:02d}": {} for i in range(1, 4)},
    "fleet/data/pipe-trunk": {"default_branch": "trunk"},
    **{f"fleet/data/lake/deep/etl-{i:02d}": {} for i in range(1, 3)},
    "fleet/data/lake/deep/etl-develop": {"default_branch": "develop"},
    "fleet/tools/old-tool": {"archived": True},
    "fleet/payments/pay-api": {"ci_id_token_sub_claim_components": PROJECT_ID_LED},
    "fleet/payments/pay-worker": {"ci_id_token_sub_claim_components": PROJECT_ID_LED},
}
ARCHIVED = "fleet/tools/old-tool"
LIVE = sorted(p for p in PROJECTS if p != ARCHIVED)
WITH_OTHERS = "fleet/web-01"  # has variables the collection did not set
UNMANAGED = [{"key": "DEPLOY_TARGET", "value": "staging-eu", "environment_scope": "*"},
             {"key": "AZURE_CLIENT_ID", "value": "legacy-client-id", "environment_scope": "legacy"}]
AZ_LOGINS_AT_ONCE = 4


def _branch(path: str) -> str:
    return PROJECTS[path].get("default_branch", "main")


def _unmanaged(variables: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((v["key"], v["environment_scope"], v["value"]) for v in variables
                  if "oidc_federation.azure" not in (v.get("description") or ""))


class Fleet:
    """The onboarded group: sandbox, run environment, inventory, runs and the first run's report."""

    def __init__(self, sandbox: Any, workdir: Path, env: dict[str, str], inventory: Path) -> None:
        self.sandbox = sandbox
        self.workdir = workdir
        self.env = env
        self.inventory = inventory
        self.secrets = gitlab_secrets(env, TOKEN)
        self.ids: dict[str, int] = {}
        self.baseline: dict[str, Any] = {}
        self.runs: dict[str, harness.PlaybookRun] = {}
        self.report: dict[str, dict[str, Any]] = {}
        self.second_stats: dict[str, Any] = {}

    def run(self, name: str, playbook: Path, **extra: Any) -> harness.PlaybookRun:
        result = run_role(playbook, self.inventory, self.env, self.workdir, gitlab_oidc_strategy="bulk",
                          gitlab_oidc_role_assignments=[{"role": "Reader"}], gitlab_oidc_ci_variables_protected=True,
                          **extra)
        self.runs[name] = result
        return result

    def explain(self, result: harness.PlaybookRun) -> str:
        return f"exit {result.returncode}, recap {result.recap}\n{result.tail(60, self.secrets)}"


@pytest.fixture(scope="module")
def fleet(sandbox, tmp_path_factory):
    """Seed the group, onboard it, then run the onboarding again with the statistics reset before."""
    harness.ensure_collection()
    sandbox.reset()
    seeded = sandbox.gitlab_seed(
        projects=[{"path": path, **extra} for path, extra in PROJECTS.items()],
        tokens=[{"token": TOKEN, "scopes": ["api"], "namespaces": [GROUP], "access_level": 40, "name": "fleet-bot"}])
    ids = {p["path_with_namespace"]: p["id"] for p in seeded["projects"]}
    for variable in UNMANAGED:
        response = sandbox.gitlab("POST", f"/projects/{ids[WITH_OTHERS]}/variables", json=variable)
        assert response.status_code == 201, response.text
    workdir = tmp_path_factory.mktemp("gitlab-group")
    env = harness.ansible_env(sandbox.env, workdir, GITLAB_TOKEN=TOKEN)
    inventory = plugin_inventory(workdir / "inventory", [GROUP], compose={
        "gitlab_oidc_gitlab_api": "true", "gitlab_oidc_branches": "[gitlab_project_default_branch]"})
    state = Fleet(sandbox, workdir, env, inventory)
    state.ids = ids
    state.baseline = state_of(sandbox)
    first = state.run("first", ONBOARD)
    if first.returncode != 0 or first.hosts_with("failed"):
        pytest.fail("onboarding the group failed: " + state.explain(first))
    state.report = report_of(workdir)
    reset_stats(sandbox)
    state.run("second", ONBOARD, gitlab_oidc_report=False, gitlab_oidc_ci_snippet=False)
    state.second_stats = stats_of(sandbox)
    return state


def test_every_live_project_of_the_group_is_onboarded_once(fleet):
    first = fleet.runs["first"]
    assert sorted(first.recap) == LIVE, fleet.explain(first)  # the archived project is no host
    assert first.hosts_with("changed") == LIVE, first.recap
    assert sorted(fleet.report) == LIVE
    issuer = fleet.sandbox.gitlab_issuer
    apps = apps_by_marker(state_of(fleet.sandbox), issuer)
    assert sorted(apps) == sorted(str(fleet.ids[p]) for p in LIVE), "applications by GitLab project marker"
    for path in LIVE:
        project = fleet.report[path]
        assert project["status"] == "onboarded" and project["gitlab_project_id"] == fleet.ids[path], project
        (app,) = apps[str(fleet.ids[path])]
        assert project["client_id"] == app["appId"], path
        expected = PROJECTS[path].get("ci_id_token_sub_claim_components", ["project_path", "ref_type", "ref"])
        assert project["trust"]["sub_claim_components"] == expected, path
        assert project["trust"]["branches"] == [_branch(path)], path
        assert [r.get("role_definition_name") or r.get("role") for r in project["role_assignments"]] == ["Reader"], (
            project["role_assignments"])
    assert len(managed_state(state_of(fleet.sandbox))) == len(LIVE)
    assert not orphans(state_of(fleet.sandbox), fleet.baseline)


def test_ci_variables_hold_the_application_tenant_and_subscription(fleet):
    sandbox = fleet.sandbox
    for path in LIVE:
        project = fleet.report[path]
        variables = gitlab_variables(sandbox, fleet.ids[path])
        managed = {v["key"]: v for v in variables if "oidc_federation.azure" in (v.get("description") or "")}
        assert sorted(managed) == sorted(AZURE_VARIABLES), (path, variables)
        assert managed["AZURE_CLIENT_ID"]["value"] == project["client_id"]
        assert managed["AZURE_TENANT_ID"]["value"] == sandbox.tenant_id
        assert managed["AZURE_SUBSCRIPTION_ID"]["value"] == sandbox.subscription_id
        for variable in managed.values():
            assert (variable["masked"], variable["protected"], variable["environment_scope"], variable["hidden"]) == (
                True, True, "*", False), (path, variable)
        # the role's result lists what it did per variable, never a value
        assert sorted(item["key"] for item in project["ci_variables"]) == sorted(AZURE_VARIABLES), project["ci_variables"]
        assert {item["action"] for item in project["ci_variables"]} == {"create"}, project["ci_variables"]
        assert not [item for item in project["ci_variables"] if item.get("value") is not None]
        assert project["client_id"] not in json.dumps(project["ci_variables"]), "a variable value is in the result"
    assert _unmanaged(gitlab_variables(sandbox, fleet.ids[WITH_OTHERS])) == sorted(
        (v["key"], v["environment_scope"], v["value"]) for v in UNMANAGED)
    assert gitlab_variables(sandbox, fleet.ids[ARCHIVED]) == []


def test_each_project_logs_in_with_azure_identity(fleet):
    """A token minted for each project (its current path and id, its own sub claim) logs in as its application,
    with the client id and tenant the CI job reads from the project's variables."""
    sandbox = fleet.sandbox
    for path in LIVE:
        variables = {v["key"]: v["value"] for v in gitlab_variables(sandbox, fleet.ids[path])
                     if v["environment_scope"] == "*"}
        project = fleet.report[path]
        token = sandbox.mint_gitlab_token(project_path=path, ref_type="branch", ref=_branch(path), aud=project["audience"])
        claims = login_with_azure_identity(sandbox, variables["AZURE_TENANT_ID"], variables["AZURE_CLIENT_ID"], token)
        assert claims["appid"] == project["client_id"], path
        assert claims["oid"] == project["application"]["service_principal_id"], path
        groups = sandbox.arm("GET", f"/subscriptions/{variables['AZURE_SUBSCRIPTION_ID']}/resourcegroups"
                                    "?api-version=2021-04-01", token=claims["_token"])
        assert groups.status_code == 200, (path, groups.text)  # Reader on the subscription


@pytest.fixture(scope="module")
def az_template(az_bin, sandbox, tmp_path_factory):
    return azcli.make_az(az_bin, sandbox, tmp_path_factory.mktemp("az-template"))


@pytest.mark.azcli
def test_azure_cli_logs_in_for_each_project(fleet, az_template, tmp_path):
    sandbox = fleet.sandbox

    def login(path: str) -> None:
        variables = {v["key"]: v["value"] for v in gitlab_variables(sandbox, fleet.ids[path])
                     if v["environment_scope"] == "*"}
        token = sandbox.mint_gitlab_token(project_path=path, ref_type="branch", ref=_branch(path),
                                          aud=fleet.report[path]["audience"])
        home = tmp_path / path.replace("/", "~")
        config_dir = home / "azure-config"
        shutil.copytree(az_template.env["AZURE_CONFIG_DIR"], config_dir)
        az = azcli.Az(az_template.binary, {**az_template.env, "HOME": str(home), "AZURE_CONFIG_DIR": str(config_dir)})
        result = az.run("login", "--service-principal", "-u", variables["AZURE_CLIENT_ID"], "-t",
                        variables["AZURE_TENANT_ID"], "--federated-token", token, "--output", "json", secret=token)
        assert result.returncode == 0, (path, az.explain(result))
        (account,) = json.loads(result.stdout)
        assert account["id"] == variables["AZURE_SUBSCRIPTION_ID"] and account["tenantId"] == sandbox.tenant_id, path
        assert account["user"] == {"name": fleet.report[path]["client_id"], "type": "servicePrincipal"}, (path, account)

    with concurrent.futures.ThreadPoolExecutor(AZ_LOGINS_AT_ONCE) as pool:
        for future in [pool.submit(login, path) for path in LIVE]:
            future.result()


def test_second_run_changes_nothing_in_azure_or_gitlab(fleet):
    second = fleet.runs["second"]
    assert second.returncode == 0 and sorted(second.recap) == LIVE, fleet.explain(second)
    assert not second.hosts_with("changed") and not second.hosts_with("failed"), second.recap
    stats = fleet.second_stats
    assert (azure_writes(stats), stats["gitlab_writes"]) == (0, 0), stats["by_route"]
    assert stats["graph"]["reads"] > 0 and stats["gitlab_reads"] > 0, stats


def test_no_gitlab_token_in_the_output(fleet):
    for name, result in fleet.runs.items():
        for secret in fleet.secrets:
            assert secret not in result.output, f"a secret of the environment is in the output of the {name} run"


def test_offboarding_removes_only_what_the_collection_set(fleet):
    sandbox = fleet.sandbox
    off = fleet.run("offboard", OFFBOARD, gitlab_oidc_report=False)
    assert off.returncode == 0 and sorted(off.recap) == LIVE and not off.hosts_with("failed"), fleet.explain(off)
    assert off.hosts_with("changed") == LIVE, off.recap
    for path in LIVE:
        remaining = gitlab_variables(sandbox, fleet.ids[path])
        expected = UNMANAGED if path == WITH_OTHERS else []
        assert _unmanaged(remaining) == sorted((v["key"], v["environment_scope"], v["value"]) for v in expected), path
        assert len(remaining) == len(expected), (path, remaining)
    state = state_of(sandbox)
    assert managed_state(state) == {} and not apps_by_marker(state, sandbox.gitlab_issuer)
    assert not orphans(state, fleet.baseline)
    for collection in ("service_principals", "role_assignments"):
        assert len(state[collection]) == len(fleet.baseline[collection]), collection
    assert not any(state["federated_identity_credentials"].values())
    assert gitlab_project(sandbox, ARCHIVED)["archived"] is True
    for secret in fleet.secrets:
        assert secret not in off.output
