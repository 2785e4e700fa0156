# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Issue 11, "Done when" 2: renames and sub-claim switches made in GitLab keep exactly one application per project.

Role level, with the ``gitlab_projects`` inventory plugin as the only inventory and the GitLab API on. Four projects
are onboarded (per_host), then changed in GitLab (control API) twice, each time followed by an onboarding run from
the refreshed inventory - the first with the bulk strategy, the second per_host - and finally offboarded (bulk):

========  ==========================================  ===========================================
project   first change (then a bulk run)              second change (then a per_host run)
========  ==========================================  ===========================================
alpha     renamed                                     sub claim switched to project_id-led
beta      sub claim switched to project_id-led        renamed
gamma     both: moved to a subgroup and switched      both: renamed and switched back to path-led
delta     (project_id-led from the start) renamed     sub claim switched to path-led
========  ==========================================  ===========================================

After every run each GitLab project id has exactly one application (found by its marker tag), with the client id
it got at the start; its CI/CD variables still hold that client id; a token minted for the project as it is now
logs in (azure-identity); a token issued before the change whose ``sub`` changed is refused (AADSTS700213), one
whose ``sub`` did not change (delta's project_id-led rename) still logs in. Offboarding leaves nothing: no
application, service principal, federated credential, role assignment, or variable the collection set. The bulk run
sets the variables unmasked in the environment scope ``deploy/*``, which moves the managed variables there.
"""
from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError

from e2e_support import (OFFBOARD, ONBOARD, AZURE_VARIABLES, apps_by_marker, gitlab_secrets, gitlab_variables, harness,
                         login_with_azure_identity, managed_state, orphans, plugin_inventory, run_role,
                         state_of)

GROUP = "moves"
PATH_LED = ["project_path", "ref_type", "ref"]
ID_LED = ["project_id", "ref_type", "ref"]
START = {"alpha": ("moves/alpha", PATH_LED), "beta": ("moves/beta", PATH_LED), "gamma": ("moves/gamma", PATH_LED),
         "delta": ("moves/delta", ID_LED)}
# (strategy of the run after the change, its extra variables, project -> (path, sub claim components) after it)
STEPS = [
    ("bulk", {"gitlab_oidc_ci_variables_masked": False, "gitlab_oidc_ci_variables_environment_scope": "deploy/*"}, {
        "alpha": ("moves/alpha-renamed", PATH_LED), "beta": ("moves/beta", ID_LED),
        "gamma": ("moves/team/gamma-moved", ID_LED), "delta": ("moves/delta-renamed", ID_LED)}),
    ("per_host", {}, {
        "alpha": ("moves/alpha-renamed", ID_LED), "beta": ("moves/beta-renamed", ID_LED),
        "gamma": ("moves/team/gamma-again", PATH_LED), "delta": ("moves/delta-renamed", PATH_LED)}),
]


def _token(sandbox: Any, path: str, **extra: Any) -> str:
    """An ID token of the project's job on main, as GitLab issues it now (current path and id, the project's sub),
    for the role's default audience (the issuer)."""
    return sandbox.mint_gitlab_token(project_path=path, ref_type="branch", ref="main", aud=sandbox.gitlab_issuer,
                                     **extra)


def _paths(projects: dict[str, tuple[str, list[str]]]) -> list[str]:
    return sorted(path for path, _components in projects.values())


class Moves:
    """The projects, their GitLab ids and the client id each got at the start."""

    def __init__(self, sandbox: Any, workdir: Any) -> None:
        self.sandbox = sandbox
        self.workdir = workdir
        seeded = sandbox.gitlab_seed(projects=[{"path": path, "ci_id_token_sub_claim_components": components}
                                               for path, components in START.values()])
        by_path = {p["path_with_namespace"]: p["id"] for p in seeded["projects"]}
        self.ids = {name: by_path[path] for name, (path, _components) in START.items()}
        self.env = harness.ansible_env(sandbox.env, workdir)
        self.secrets = gitlab_secrets(self.env)
        self.inventory = plugin_inventory(workdir / "inventory", [GROUP], compose={
            "gitlab_oidc_gitlab_api": "true", "gitlab_oidc_branches": "['main']"})
        self.clients: dict[str, str] = {}
        self.runs: list[harness.PlaybookRun] = []

    def run(self, playbook: Any, strategy: str, **extra: Any) -> harness.PlaybookRun:
        # the state, the variables and the logins are checked, not the role's report (its tasks cost time)
        result = run_role(playbook, self.inventory, self.env, self.workdir, gitlab_oidc_strategy=strategy,
                          gitlab_oidc_role_assignments=[{"role": "Reader"}], gitlab_oidc_report=False,
                          gitlab_oidc_ci_snippet=False, **extra)
        self.runs.append(result)
        assert result.returncode == 0 and not result.hosts_with("failed"), result.tail(60, self.secrets)
        return result

    def one_app_per_project(self) -> dict[str, str]:
        """name -> client id; fails unless every project has exactly one application and there are no others."""
        state = state_of(self.sandbox)
        apps = apps_by_marker(state, self.sandbox.gitlab_issuer)
        assert sorted(apps) == sorted(str(i) for i in self.ids.values()), sorted(apps)
        assert all(len(found) == 1 for found in apps.values()), {k: [a["appId"] for a in v] for k, v in apps.items()}
        assert len(managed_state(state)) == len(self.ids), sorted(managed_state(state))
        return {name: apps[str(project_id)][0]["appId"] for name, project_id in self.ids.items()}

    def check(self, projects: dict[str, tuple[str, list[str]]], settings: dict[str, Any]) -> None:
        """The variables and a login of every project as it is in GitLab now (its path, its sub claim)."""
        scope = settings.get("gitlab_oidc_ci_variables_environment_scope", "*")
        masked = settings.get("gitlab_oidc_ci_variables_masked", True)
        for name, (path, _components) in projects.items():
            client_id = self.clients[name]
            found = gitlab_variables(self.sandbox, self.ids[name])
            # all in the configured scope: none left behind in a scope the collection used before
            assert sorted((v["key"], v["environment_scope"], v["masked"]) for v in found) == sorted(
                (key, scope, masked) for key in AZURE_VARIABLES), (name, found)
            variables = {v["key"]: v for v in found}
            assert variables["AZURE_CLIENT_ID"]["value"] == client_id
            token = _token(self.sandbox, path)
            claims = login_with_azure_identity(self.sandbox, variables["AZURE_TENANT_ID"]["value"], client_id, token)
            assert claims["appid"] == client_id, path


def test_rename_and_sub_claim_switch_keep_one_application(sandbox, tmp_path):
    harness.ensure_collection()
    sandbox.reset()
    moves = Moves(sandbox, tmp_path)
    baseline = state_of(sandbox)

    first = moves.run(ONBOARD, "per_host")
    assert first.hosts_with("changed") == _paths(START), first.recap
    moves.clients = moves.one_app_per_project()
    moves.check(START, {})
    current = dict(START)

    for strategy, settings, after in STEPS:
        # tokens GitLab issues before the change (still unexpired when used after it)
        old_tokens = {name: _token(sandbox, path, lifetime=3600) for name, (path, _components) in current.items()}
        for name, (path, components) in after.items():
            change: dict[str, Any] = {"ci_id_token_sub_claim_components": components}
            if path != current[name][0]:
                change["path"] = path
            response = sandbox.control("PATCH", f"gitlab/projects/{moves.ids[name]}", json=change)
            assert response.status_code == 200, response.text
        result = moves.run(ONBOARD, strategy, **settings)
        assert sorted(result.recap) == _paths(after), result.recap
        assert moves.one_app_per_project() == moves.clients, f"a project got another application ({strategy} run)"
        moves.check(after, settings)
        for name, (path, components) in after.items():
            unchanged_sub = components == ID_LED == current[name][1]  # a project_id-led sub names no path
            if unchanged_sub:
                claims = login_with_azure_identity(sandbox, sandbox.tenant_id, moves.clients[name], old_tokens[name])
                assert claims["appid"] == moves.clients[name], name
                continue
            with pytest.raises(ClientAuthenticationError) as refused:
                login_with_azure_identity(sandbox, sandbox.tenant_id, moves.clients[name], old_tokens[name])
            assert "AADSTS700213" in str(refused.value), (name, strategy, str(refused.value)[:300])
        current = dict(after)

    gone = moves.run(OFFBOARD, "bulk")
    assert gone.hosts_with("changed") == _paths(current), gone.recap
    state = state_of(sandbox)
    assert managed_state(state) == {} and not apps_by_marker(state, sandbox.gitlab_issuer)
    assert not orphans(state, baseline)
    assert not any(state["federated_identity_credentials"].values())
    for collection in ("applications", "service_principals", "role_assignments"):
        assert len(state[collection]) == len(baseline[collection]), collection
    assert {item.get("appId") for item in state["deleted_items"]} == set(moves.clients.values())
    for name, project_id in moves.ids.items():
        assert gitlab_variables(sandbox, project_id) == [], name
    for result in moves.runs:
        assert not [s for s in moves.secrets if s in result.output], "a GitLab token or secret is in the output"
