# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Issue 11, "Done when" 3: bad GitLab input gets a clear error and writes nothing.

* An unknown group in the inventory plugin's configuration: the run (with ``ANSIBLE_INVENTORY_UNPARSED_FAILED``, as
  the inventory guide recommends) fails naming the group and the fix, and touches nothing.
* One per_host run of ``playbooks/onboard.yml`` over projects that are each wrong in one way - a token with only
  ``read_api`` (setting variables needs ``api``), a token of a Developer (needs Maintainer), a project the token
  cannot see, an inventory that contradicts GitLab (an id of another project, sub claim components GitLab does not
  use), an environment scope GitLab refuses, a variable of the same key and scope the collection did not set: every
  project fails with a message naming the role variable and the fix, and the sandbox's whole state (Azure and
  GitLab) is unchanged, with 0 Graph/ARM and 0 GitLab writes.
* A value GitLab refuses only at write time (the instance's ``project_ci_variables`` plan limit is reached, which
  no client can know beforehand): that project fails with GitLab's reason while the other project of the bulk run is
  onboarded; with the limit raised, the next run converges - one application, every variable, nothing duplicated.
"""
from __future__ import annotations

import json
from typing import Any

import yaml

from e2e_support import (AZURE_VARIABLES, ONBOARD, apps_by_marker, azure_writes, failures, gitlab_secrets,
                         gitlab_variables, harness, managed_state, orphans, plugin_inventory, reset_stats, run_role, state_of, stats_of)

MAINTAINER = "glpat-e2e-bad-maintainer"
READ_ONLY = "glpat-e2e-bad-read-only"
DEVELOPER = "glpat-e2e-bad-developer"
TOKENS = [{"token": MAINTAINER, "scopes": ["api"], "namespaces": ["bad"], "access_level": 40},
          {"token": READ_ONLY, "scopes": ["read_api"], "namespaces": ["bad"], "access_level": 40},
          {"token": DEVELOPER, "scopes": ["api"], "namespaces": ["bad"], "access_level": 30}]
PROJECTS = ["bad/read-only", "bad/developer", "bad/one", "bad/two", "bad/scoped", "bad/taken", "bad/limited",
            "bad/fine", "secret/hidden"]


def _seed(sandbox: Any) -> dict[str, int]:
    sandbox.reset()
    seeded = sandbox.gitlab_seed(projects=[{"path": p} for p in PROJECTS], tokens=TOKENS)
    ids = {p["path_with_namespace"]: p["id"] for p in seeded["projects"]}
    for path, variables in {"bad/taken": [("AZURE_CLIENT_ID", "set-by-hand-1")],
                            "bad/limited": [("DEPLOY_TARGET", "staging-eu"), ("REGION", "westeurope")]}.items():
        for key, value in variables:
            response = sandbox.gitlab("POST", f"/projects/{ids[path]}/variables", json={"key": key, "value": value})
            assert response.status_code == 201, response.text
    return ids


def _inventory(path: Any, sandbox: Any, hosts: dict[str, dict[str, Any]]) -> Any:
    """A static inventory of GitLab projects with the GitLab API on."""
    path.write_text(yaml.safe_dump({"gitlab_projects": {
        "vars": {"gitlab_oidc_issuer": sandbox.gitlab_issuer, "gitlab_oidc_gitlab_api": True,
                 "gitlab_oidc_branches": ["main"], "gitlab_oidc_role_assignments": [{"role": "Reader"}]},
        "hosts": hosts}}), encoding="utf-8")
    return path


def _snapshot(sandbox: Any, ids: dict[str, int]) -> str:
    """The sandbox's whole state plus every project's variables with their values, as text."""
    variables = {path: gitlab_variables(sandbox, project_id) for path, project_id in ids.items()}
    return json.dumps({"state": state_of(sandbox), "variables": variables}, sort_keys=True)


def _message(result: harness.PlaybookRun, host: str) -> str:
    """The failure message of ``host`` in the output (``e2e_support.failures``)."""
    found = failures(result)
    if host not in found:
        raise AssertionError(f"no failure of {host} in the output:\n{result.tail(40)}")
    return found[host]


def test_unknown_group_names_the_group_and_onboards_nothing(sandbox, tmp_path):
    ids = _seed(sandbox)
    # as docs/inventory-gitlab_projects.md recommends (else Ansible only warns, and runs on no host)
    env = harness.ansible_env(sandbox.env, tmp_path, GITLAB_TOKEN=MAINTAINER, ANSIBLE_INVENTORY_UNPARSED_FAILED="true")
    inventory = plugin_inventory(tmp_path / "inventory", ["bad", "no-such-group"],
                                 compose={"gitlab_oidc_gitlab_api": "true"})
    before = _snapshot(sandbox, ids)
    reset_stats(sandbox)
    result = run_role(ONBOARD, inventory, env, tmp_path, gitlab_oidc_strategy="bulk")
    stats = stats_of(sandbox)
    assert result.returncode != 0 and not result.recap, result.tail(40)  # not even the projects of "bad" ran
    output = " ".join(result.output.split())
    assert "no-such-group" in output and "does not exist" in output, result.tail(40)
    assert "check the path or id" in output, result.tail(40)
    assert (azure_writes(stats), stats["gitlab_writes"]) == (0, 0) and _snapshot(sandbox, ids) == before
    assert MAINTAINER not in result.output


def test_bad_projects_fail_before_any_write(sandbox, tmp_path):
    ids = _seed(sandbox)
    env = harness.ansible_env(sandbox.env, tmp_path, GITLAB_TOKEN=MAINTAINER)
    hosts = {
        "bad/read-only": {"gitlab_oidc_gitlab_token": READ_ONLY},
        "bad/developer": {"gitlab_oidc_gitlab_token": DEVELOPER},
        "secret/hidden": {},
        "bad/two": {"gitlab_oidc_project_id": ids["bad/one"]},
        "bad/one": {"gitlab_oidc_sub_claim_components": ["project_id", "ref_type", "ref"]},
        "bad/scoped": {"gitlab_oidc_ci_variables_environment_scope": "prod|staging"},
        "bad/taken": {},
    }
    # host: what the message must say (each also names the project and "Fix:")
    expected = {
        "bad/read-only": ["gitlab_oidc_gitlab_token", "read_api", "needs the api scope", "gitlab_oidc_ci_variables: false"],
        "bad/developer": ["gitlab_oidc_gitlab_token", "Maintainer"],
        "secret/hidden": ["gitlab_oidc_project_path", "no project secret/hidden that the token can see"],
        "bad/two": ["gitlab_oidc_project_path", f"GitLab's project {ids['bad/one']} is at bad/one"],
        "bad/one": ["gitlab_oidc_sub_claim_components", "project_path"],
        "bad/scoped": ["gitlab_oidc_ci_variables_environment_scope", "prod|staging", "can contain only letters"],
        "bad/taken": ["gitlab_oidc_ci_variables", "AZURE_CLIENT_ID", "not set by oidc_federation.azure"],
    }
    inventory = _inventory(tmp_path / "inventory.yml", sandbox, hosts)
    before = _snapshot(sandbox, ids)
    reset_stats(sandbox)
    result = run_role(ONBOARD, inventory, env, tmp_path, gitlab_oidc_strategy="per_host", gitlab_oidc_report=False)
    stats = stats_of(sandbox)
    assert result.returncode != 0 and result.hosts_with("failed") == sorted(hosts), result.recap
    problems = {}
    for host, fragments in expected.items():
        message = _message(result, host)
        missing = [f for f in [host, "Fix:"] + fragments if f not in message]
        if missing:
            problems[host] = f"{missing} not in: {message}"
    assert not problems, json.dumps(problems, indent=1)
    assert (azure_writes(stats), stats["gitlab_writes"]) == (0, 0), stats["by_route"]
    assert _snapshot(sandbox, ids) == before, "the failed run changed the sandbox"
    for secret in gitlab_secrets(env, READ_ONLY, DEVELOPER):
        assert secret not in result.output


def test_a_variable_gitlab_refuses_at_write_time_converges_next_run(sandbox, tmp_path):
    ids = _seed(sandbox)
    baseline = state_of(sandbox)
    env = harness.ansible_env(sandbox.env, tmp_path, GITLAB_TOKEN=MAINTAINER)
    limit = sandbox.control("PATCH", "gitlab/instances/gitlab.com", json={"limits": {"project_ci_variables": 3}})
    assert limit.status_code == 200, limit.text
    inventory = plugin_inventory(tmp_path / "inventory", ["bad"], path_patterns=["bad/limited", "bad/fine"],
                                 compose={"gitlab_oidc_gitlab_api": "true", "gitlab_oidc_branches": "['main']"})
    options = {"gitlab_oidc_strategy": "bulk", "gitlab_oidc_role_assignments": [{"role": "Reader"}],
               "gitlab_oidc_report": False, "gitlab_oidc_ci_snippet": False}
    first = run_role(ONBOARD, inventory, env, tmp_path, **options)
    assert first.hosts_with("failed") == ["bad/limited"], first.tail(40)
    message = _message(first, "bad/limited")
    assert "Maximum number of project ci variables (3) exceeded" in message, message
    assert "bad/limited" in message or str(ids["bad/limited"]) in message, message
    assert sorted(v["key"] for v in gitlab_variables(sandbox, ids["bad/fine"])) == sorted(AZURE_VARIABLES)

    sandbox.control("PATCH", "gitlab/instances/gitlab.com", json={"limits": {"project_ci_variables": 0}})
    again = run_role(ONBOARD, inventory, env, tmp_path, **options)
    assert again.returncode == 0 and not again.hosts_with("failed"), again.tail(40)
    assert again.hosts_with("changed") == ["bad/limited"], again.recap
    state = state_of(sandbox)
    apps = apps_by_marker(state, sandbox.gitlab_issuer)
    assert {k: len(v) for k, v in apps.items()} == {str(ids["bad/limited"]): 1, str(ids["bad/fine"]): 1}
    assert len(managed_state(state)) == 2 and not orphans(state, baseline)
    variables = {v["key"]: v["value"] for v in gitlab_variables(sandbox, ids["bad/limited"])}
    assert variables == {"DEPLOY_TARGET": "staging-eu", "REGION": "westeurope",
                         "AZURE_CLIENT_ID": apps[str(ids["bad/limited"])][0]["appId"], "AZURE_TENANT_ID": sandbox.tenant_id,
                         "AZURE_SUBSCRIPTION_ID": sandbox.subscription_id}
