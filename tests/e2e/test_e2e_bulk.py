# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role's bulk strategy, end to end through ``playbooks/onboard.yml`` on the sandbox:

* per_host and bulk leave identical state for the same inventory (the example inventory, shared application
  included), check mode in bulk writes nothing, a bulk re-run writes nothing and changes no host;
* a failing project among good ones fails its host only;
* with the sandbox's 429s, 5xx and replication lag on, a bulk run converges (24 projects in ``make test``;
  ``E2E_FAULT_PROJECTS=200`` runs it at the 200 projects of the bulk onboarding work, about 100 s);
* ``kill -9`` of the run in the middle, then a re-run, converges with no duplicate and no orphan.

State is compared through the sandbox's control API (``e2e_support.managed_state``), never through the modules.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e_support import (INVENTORY, ONBOARD, OFFBOARD, REPO, app_complete, azure_writes, harness, kill_9_run_when, managed_state, orphans,
                         reset_stats, secrets_of, state_of, stats_of)

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_onboard  # noqa: E402  (the benchmark's generated projects)

FAULTS = {
    "seed": 11,
    "replication_lag": 1.0,
    "rules": [
        {"service": "graph", "kind": "throttle", "rate": 0.08, "retry_after": 1},
        {"service": "graph", "kind": "error", "status": 503, "rate": 0.04},
        {"service": "arm", "kind": "throttle", "rate": 0.08, "retry_after": 1},
        {"service": "arm", "kind": "error", "status": 500, "rate": 0.04},
    ],
}


FAULT_PROJECTS = int(os.environ.get("E2E_FAULT_PROJECTS", "24"))


def run(playbook: Path, inventory: Path, env: dict[str, str], workdir: Path, *options: str, **extra: Any) -> harness.PlaybookRun:
    return harness.run_playbook(playbook, inventory, env=env, cwd=workdir, options=options,
                                extra_vars=dict({"gitlab_oidc_report_dir": str(workdir / "report")}, **extra), timeout=900)


def expect_ok(result: harness.PlaybookRun, env: dict[str, str]) -> None:
    assert result.returncode == 0 and not result.hosts_with("failed"), result.tail(80, secrets_of(env))


def generated_inventory(path: Path, projects: int, sandbox: Any) -> list[str]:
    """The benchmark's projects (varied trust, sub claims and roles) as an inventory; returns their paths."""
    bench_onboard.write_inventory(path, projects, sandbox.env, path.parent / "report")
    return sorted(bench_onboard.project_path(i) for i in range(projects))


def expected_unique_names(hosts: list[str]) -> list[str]:
    return sorted("gitlab-oidc-id-%d" % (100000 + int(h[-4:])) if int(h[-4:]) % 4 == 3 else "gitlab-oidc-" + h.replace("/", "~")
                  for h in hosts)


def test_per_host_and_bulk_leave_identical_state(sandbox, tmp_path):
    env = harness.ansible_env(sandbox.env, tmp_path)
    sandbox.reset()
    expect_ok(run(ONBOARD, INVENTORY, env, tmp_path, gitlab_oidc_strategy="per_host"), env)
    per_host = managed_state(state_of(sandbox))
    assert len(per_host) == 6

    sandbox.reset()
    reset_stats(sandbox)
    check = run(ONBOARD, INVENTORY, env, tmp_path, "--check", gitlab_oidc_strategy="bulk")
    expect_ok(check, env)
    assert azure_writes(stats_of(sandbox)) == 0 and managed_state(state_of(sandbox)) == {}

    first = run(ONBOARD, INVENTORY, env, tmp_path, gitlab_oidc_strategy="bulk")
    expect_ok(first, env)
    assert managed_state(state_of(sandbox)) == per_host
    projects = [h for h in first.recap if h != "localhost"]
    assert len(projects) == 7 and first.hosts_with("changed") == sorted(projects), first.recap

    reset_stats(sandbox)
    again = run(ONBOARD, INVENTORY, env, tmp_path, gitlab_oidc_strategy="bulk")
    expect_ok(again, env)
    assert azure_writes(stats_of(sandbox)) == 0
    assert not [h for h in again.hosts_with("changed") if h != "localhost"], again.recap

    gone = run(OFFBOARD, INVENTORY, env, tmp_path, gitlab_oidc_strategy="bulk")
    expect_ok(gone, env)
    assert managed_state(state_of(sandbox)) == {}


MODULE_FILE = re.compile(r"Using module file \S+/gitlab_oidc_projects\.py")


def test_per_host_calls_from_the_controller_and_from_module_processes_leave_identical_state(sandbox, tmp_path):
    """per_host's calls go from the controller straight to the persistent worker when localhost's Python is
    ansible-playbook's own (the example inventory: ``{{ ansible_playbook_python }}``): no module process per project.
    Given another interpreter (here a script that runs the same Python), each call runs in a module process, which
    hands it to a worker of its own: the same projects, the same state, and a re-run that writes nothing either way."""
    env = harness.ansible_env(sandbox.env, tmp_path)
    sandbox.reset()
    controller = run(ONBOARD, INVENTORY, env, tmp_path, "-vvv", gitlab_oidc_strategy="per_host")
    expect_ok(controller, env)
    assert not MODULE_FILE.search(controller.output), "a module process ran a call"
    assert "Using module file" in controller.output  # -vvv shows the modules that ran (the results directory's)
    from_controller = managed_state(state_of(sandbox))
    assert len(from_controller) == 6

    other_python = tmp_path / "python-via-script"
    other_python.write_text('#!/bin/sh\nexec "%s" "$@"\n' % sys.executable, encoding="utf-8")
    other_python.chmod(0o755)
    sandbox.reset()
    modules = run(ONBOARD, INVENTORY, env, tmp_path, "-vvv", gitlab_oidc_strategy="per_host",
                  ansible_python_interpreter=str(other_python))
    expect_ok(modules, env)
    assert len(MODULE_FILE.findall(modules.output)) == 1 + 7  # the worker's start, then one call per project
    assert managed_state(state_of(sandbox)) == from_controller
    assert modules.hosts_with("changed") == controller.hosts_with("changed"), (modules.recap, controller.recap)

    reset_stats(sandbox)
    again = run(ONBOARD, INVENTORY, env, tmp_path, gitlab_oidc_strategy="per_host")
    expect_ok(again, env)
    assert azure_writes(stats_of(sandbox)) == 0 and not [h for h in again.hosts_with("changed") if h != "localhost"]
    for result in (controller, modules):
        for secret in secrets_of(env):
            assert secret not in result.output


@pytest.mark.parametrize("strategy", ["bulk", "per_host"])
def test_a_failing_project_fails_its_host_only(sandbox, tmp_path, strategy):
    """Three bad projects among good ones, each failing its own host only: one refused by the module, one whose
    variables cannot be resolved, one that fails the role's argument spec (validated by the role itself in one task:
    the sample playbook turns Ansible's automatic per-host validation off)."""
    env = harness.ansible_env(sandbox.env, tmp_path)
    sandbox.reset()
    baseline = state_of(sandbox)
    inventory = tmp_path / "inventory.yml"
    hosts = generated_inventory(inventory, 6, sandbox)
    data = yaml.safe_load(inventory.read_text(encoding="utf-8"))
    bad, unresolved, invalid = hosts[2], hosts[4], hosts[5]
    data["all"]["children"]["gitlab_projects"]["hosts"][bad]["gitlab_oidc_role_assignments"] = [{"role": "No Such Role"}]
    data["all"]["children"]["gitlab_projects"]["hosts"][unresolved]["gitlab_oidc_branches"] = "{{ no_such_variable }}"
    data["all"]["children"]["gitlab_projects"]["hosts"][invalid]["gitlab_oidc_any_ref"] = "maybe"
    inventory.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = run(ONBOARD, inventory, env, tmp_path, gitlab_oidc_strategy=strategy)
    assert result.returncode != 0 and result.hosts_with("failed") == sorted([bad, unresolved, invalid]), result.recap
    assert "No Such Role" in result.output and "gitlab_oidc_role_assignments[0].role" in result.output
    assert "no_such_variable" in result.output
    assert "Validation of arguments failed" in result.output and "gitlab_oidc_any_ref" in result.output
    assert "Validating arguments against arg spec" not in result.output  # the sample playbook's rolespec_validate: false
    made = managed_state(state_of(sandbox))
    assert sorted(made) == sorted(n for n in expected_unique_names(hosts)
                                  if not n.endswith(tuple(h.replace("/", "~") for h in (bad, unresolved, invalid))))
    # the report has every project: the failed ones (one with the module's reason; two that never reached it)
    report = json.loads((tmp_path / "report" / "onboarding.json").read_text(encoding="utf-8"))
    assert report["summary"] == {"projects": 6, "changed": 3, "failed": 3}, report["summary"]
    by_host = {p["host"]: p for p in report["projects"]}
    assert by_host[bad]["status"] == "failed" and "No Such Role" in by_host[bad]["msg"]
    assert by_host[unresolved]["status"] == "failed" and by_host[unresolved]["project_path"] == unresolved
    assert by_host[invalid]["status"] == "failed" and "gitlab_oidc_any_ref" in by_host[invalid]["msg"]
    assert all(by_host[h]["status"] != "failed" and by_host[h]["client_id"] for h in hosts if h not in (bad, unresolved, invalid))
    assert not orphans(state_of(sandbox), baseline)


def test_bulk_with_serial_makes_one_call_per_batch(sandbox, tmp_path):
    """serial: each batch describes and reconciles its own hosts only; the last report has every project."""
    env = harness.ansible_env(sandbox.env, tmp_path)
    sandbox.reset()
    inventory = tmp_path / "inventory.yml"
    hosts = generated_inventory(inventory, 5, sandbox)
    playbook = tmp_path / "serial.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Onboard in batches", "hosts": "gitlab_projects", "connection": "local", "gather_facts": False,
        "serial": 2, "roles": [{"role": "oidc_federation.azure.gitlab_oidc", "vars": {"gitlab_oidc_state": "present"}}],
    }]), encoding="utf-8")
    result = run(playbook, inventory, env, tmp_path, "-v", gitlab_oidc_strategy="bulk")
    expect_ok(result, env)
    assert sorted(managed_state(state_of(sandbox))) == expected_unique_names(hosts)
    # one call per batch (2 + 2 + 1 projects), each with its own batch's projects only
    calls = []
    for task in result.output.split("TASK [")[1:]:
        if task.startswith("oidc_federation.azure.gitlab_oidc : Reconcile"):
            found = re.search(r'"summary": (\{[^}]*\})', task)
            assert found, task[:2000]
            calls.append(json.loads(found.group(1)))
    assert [c["projects"] for c in calls] == [2, 2, 1], calls
    report = json.loads((tmp_path / "report" / "onboarding.json").read_text(encoding="utf-8"))
    assert report["summary"] == {"projects": 5, "changed": 5, "failed": 0}, report["summary"]
    assert all(p["client_id"] for p in report["projects"])


def test_bulk_with_throttling_errors_and_replication_lag_converges(sandbox, tmp_path):
    env = harness.ansible_env(sandbox.env, tmp_path)
    sandbox.reset()
    baseline = state_of(sandbox)
    inventory = tmp_path / "inventory.yml"
    hosts = generated_inventory(inventory, FAULT_PROJECTS, sandbox)
    sandbox.faults(**FAULTS)
    first = run(ONBOARD, inventory, env, tmp_path, gitlab_oidc_strategy="bulk")
    stats = stats_of(sandbox)
    sandbox.faults()
    expect_ok(first, env)
    assert stats["throttled"] > 0 and stats["errors_5xx"] > 0, stats
    made = managed_state(state_of(sandbox))
    assert sorted(made) == expected_unique_names(hosts)
    assert all(map(app_complete, made.values())), made
    assert not orphans(state_of(sandbox), baseline)
    reset_stats(sandbox)
    again = run(ONBOARD, inventory, env, tmp_path, gitlab_oidc_strategy="bulk")
    expect_ok(again, env)
    assert azure_writes(stats_of(sandbox)) == 0 and managed_state(state_of(sandbox)) == made


@pytest.mark.parametrize("strategy,projects", [("bulk", 24), ("per_host", 12)])
def test_kill_9_in_the_middle_then_rerun_converges(sandbox, tmp_path, strategy, projects):
    """per_host runs its calls in the persistent worker, which is not part of the killed process tree: the calls of
    the killed module processes are cancelled there, and the re-run (served by the same worker or a new one)
    converges all the same."""
    env = harness.ansible_env(sandbox.env, tmp_path)
    sandbox.reset()
    baseline = state_of(sandbox)
    inventory = tmp_path / "inventory.yml"
    hosts = generated_inventory(inventory, projects, sandbox)
    # Slow every write down, so that the run is surely killed halfway.
    sandbox.faults(rules=[{"service": "*", "kind": "latency", "ms": 120, "methods": ["PATCH", "PUT", "POST", "DELETE"]}])
    killed, survivors = kill_9_run_when(
        ONBOARD, inventory, env, tmp_path, {"gitlab_oidc_strategy": strategy, "gitlab_oidc_report_dir": str(tmp_path / "report")},
        lambda: len(managed_state(state_of(sandbox))) >= 3, interval=0.2, ended="the run ended before it could be killed")
    assert killed and not survivors, survivors
    sandbox.faults()
    halfway = managed_state(state_of(sandbox))
    # Killed halfway: something was written and something was not. Counting applications alone is not enough: a bulk
    # call creates them in $batch requests of 20, and a batch the killed process had already sent may still complete in
    # the service, so every application may exist while service principals, credentials or roles do not yet.
    complete = len(halfway) == len(hosts) and all(map(app_complete, halfway.values()))
    assert halfway and not complete, "not killed halfway: %d of %d applications, all complete" % (len(halfway), len(hosts))
    again = run(ONBOARD, inventory, env, tmp_path, gitlab_oidc_strategy=strategy)
    expect_ok(again, env)
    made = managed_state(state_of(sandbox))
    assert sorted(made) == expected_unique_names(hosts)
    assert all(map(app_complete, made.values())), made
    assert not orphans(state_of(sandbox), baseline)
    names = [a["uniqueName"] for a in state_of(sandbox)["applications"] if a.get("uniqueName")]
    assert len(names) == len(set(names))
    gone = run(OFFBOARD, inventory, env, tmp_path, gitlab_oidc_strategy=strategy)
    expect_ok(gone, env)
    assert managed_state(state_of(sandbox)) == {} and not orphans(state_of(sandbox), baseline)
