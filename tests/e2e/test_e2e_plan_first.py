# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Issue 13 through ``playbooks/onboard.yml`` and ``playbooks/offboard.yml`` on the sandbox: the role plans every
project before its first write, and a project that failed halfway converges and can be offboarded for good.

* A table of bad role inputs (unknown role name, another tenant's custom role, a subscription, resource group or
  resource that does not exist, scopes outside the operator's rights, Owner without
  ``gitlab_oidc_allow_privileged_roles``, several problems at once): per_host, every host fails with the role
  variable and the fix, and ``GET /_sandbox/state`` is byte for byte what it was before the run (no Graph or ARM
  write at all). Bulk (check mode, then for real), the same projects plus a good one: the good one is onboarded,
  the bad ones fail with the same messages and write nothing.
* ``kill -9`` of the run (every process of it) while its role assignment writes are in flight, two projects: each
  application, service principal and its credentials exist, no role assignment does. A re-run of one project
  converges it to exactly the expected objects; offboarding both with ``gitlab_oidc_purge: true`` (one converged,
  one still half made) leaves the sandbox as it was before the first run (nothing in the directory, nothing in its
  deleted items), and offboarding again writes nothing.

State is read through the sandbox's control API, never through the modules.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from e2e_support import (OFFBOARD, ONBOARD, RG_API, failures, harness, kill_9_run_when, managed_state, orphans, reset_stats,
                         secrets_of, state_of, stats_of)

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
RG = "rg-sandbox"                                       # seeded; the operator is Owner of its subscription
GHOST_SUBSCRIPTION = "0d15ea5e-0000-4000-8000-00000000dead"  # exists nowhere
TEAM_SUBSCRIPTION = "7e3a0c55-1b2d-4c3e-9f40-5a6b7c8d9e01"   # seeded here: the operator is only Contributor there
TEAM_RG = "rg-team"                                     # made by the operator (Contributor) in TEAM_SUBSCRIPTION
FOREIGN_SUBSCRIPTION = "2b7c9d11-3e4f-4a5b-8c6d-7e8f9a0b1c2d"  # seeded here: the operator has no role there at all
FOREIGN_ROLE = "c0ffee00-1234-4abc-8def-0123456789ab"   # a custom role of another tenant: no role definition here
OTHER_TENANT_SUBSCRIPTION = "5ca1ab1e-2222-4333-8444-0123456789ab"  # where that custom role was made
ROLES = "gitlab_oidc_role_assignments"
GOOD_HOST = "plan-first/good"


def _sub(subscription: str) -> str:
    return "/subscriptions/" + subscription


def _rg(subscription: str, group: str) -> str:
    return "{0}/resourceGroups/{1}".format(_sub(subscription), group)


def app_name(host: str) -> str:
    """The uniqueName of a project's own application (derived from its path)."""
    return "gitlab-oidc-" + host.replace("/", "~")


def bad_cases(sandbox: Any) -> dict[str, tuple[list[dict[str, Any]], list[str]]]:
    """host -> (its gitlab_oidc_role_assignments, fragments its failure message must contain).

    Each message must also name the field (checked through the fragments: ``gitlab_oidc_role_assignments[i].role``
    or ``.scope`` followed by ``: ``) and carry a fix (``Fix: ``)."""
    sub = sandbox.subscription_id
    rg = _rg(sub, RG)
    field = ROLES + "[{0}].{1}: "
    return {
        "plan-first/unknown-role": (
            [{"role": "No Such Role"}],
            [field.format(0, "role"), "no role definition named 'No Such Role'", _sub(sub)]),
        "plan-first/foreign-custom-role": (
            [{"role": "/subscriptions/{0}/providers/Microsoft.Authorization/roleDefinitions/{1}".format(
                OTHER_TENANT_SUBSCRIPTION, FOREIGN_ROLE), "resource_group": RG}],
            [field.format(0, "role"), "no role definition with id " + FOREIGN_ROLE, rg]),
        "plan-first/missing-subscription": (
            [{"role": "Reader", "subscription_id": GHOST_SUBSCRIPTION}],
            [field.format(0, "scope"), "subscription {0} does not exist".format(GHOST_SUBSCRIPTION)]),
        "plan-first/missing-resource-group": (
            [{"role": "Reader", "resource_group": "rg-typo"}],
            [field.format(0, "scope"), "resource group 'rg-typo' does not exist in subscription " + sub,
             "az group create --name rg-typo"]),
        "plan-first/missing-resource": (
            [{"role": "AcrPull", "scope": rg + "/providers/Microsoft.ContainerRegistry/registries/acrmissing"}],
            [field.format(0, "scope"), "Microsoft.ContainerRegistry/registries/acrmissing' does not exist"]),
        "plan-first/scope-without-access-rights": (
            [{"role": "Reader", "resource_group": TEAM_RG, "subscription_id": TEAM_SUBSCRIPTION}],
            [field.format(0, "scope"), "may not write role assignments at " + _rg(TEAM_SUBSCRIPTION, TEAM_RG),
             "Owner, User Access Administrator or Role Based Access Control Administrator"]),
        "plan-first/subscription-without-any-role": (
            [{"role": "Reader", "subscription_id": FOREIGN_SUBSCRIPTION}],
            [field.format(0, "scope"), "may not write role assignments at " + _sub(FOREIGN_SUBSCRIPTION)]),
        "plan-first/owner-without-allow": (
            [{"role": "Owner", "resource_group": RG}],
            [field.format(0, "role"), "'Owner' at " + rg, "privileged roles are refused",
             "gitlab_oidc_allow_privileged_roles"]),
        # a good entry first, then two bad ones: nothing is written, both problems are named at once
        "plan-first/two-problems": (
            [{"role": "Reader", "resource_group": RG}, {"role": "Readr", "resource_group": RG},
             {"role": "Contributor", "resource_group": "rg-gone"}],
            ["2 problems found before any write", field.format(1, "role"), "no role definition named 'Readr'",
             field.format(2, "scope"), "resource group 'rg-gone' does not exist"]),
    }


def seed_scopes_outside_the_operators_reach(sandbox: Any) -> None:
    """TEAM_SUBSCRIPTION with rg-team where the operator is Contributor (reads and makes groups, cannot grant access),
    and FOREIGN_SUBSCRIPTION where it has no role at all (ARM: AuthorizationFailed even for reads)."""
    operator = next(o["object_id"] for o in state_of(sandbox)["operators"] if o["client_id"] == sandbox.operator.client_id)
    for subscription in (TEAM_SUBSCRIPTION, FOREIGN_SUBSCRIPTION):
        response = sandbox.control("POST", "arm/subscriptions", json={"subscriptionId": subscription,
                                                                      "displayName": "Plan-first " + subscription[:8]})
        assert response.status_code == 201, response.text
    response = sandbox.control("POST", "arm/roleAssignments",
                               json={"scope": _sub(TEAM_SUBSCRIPTION), "role": "Contributor", "principalId": operator})
    assert response.status_code == 201, response.text
    response = sandbox.arm("PUT", "{0}?{1}".format(_rg(TEAM_SUBSCRIPTION, TEAM_RG), RG_API), json={"location": "westeurope"})
    assert response.status_code == 201, response.text


def write_inventory(path: Path, sandbox: Any, hosts: dict[str, dict[str, Any]]) -> Path:
    """An inventory of ``hosts`` (host vars) in group gitlab_projects, on the sandbox's GitLab issuer, branch main."""
    issuer = sandbox.env["SANDBOX_GITLAB_ISSUER"]
    data = {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "gitlab_oidc_issuer": issuer, "gitlab_oidc_gitlab_issuers": [issuer],
                 "gitlab_oidc_branches": ["main"], "gitlab_oidc_ci_snippet": False, "gitlab_oidc_report": False},
        "children": {"gitlab_projects": {"hosts": hosts}}}}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def run(playbook: Path, inventory: Path, env: dict[str, str], workdir: Path, *options: str, **extra: Any) -> harness.PlaybookRun:
    return harness.run_playbook(playbook, inventory, env=env, cwd=workdir, options=options, timeout=600,
                                extra_vars=dict({"gitlab_oidc_report_dir": str(workdir / "report")}, **extra))


def explain(result: harness.PlaybookRun, env: dict[str, str]) -> str:
    return "ansible-playbook exit {0}, recap {1}\n{2}".format(result.returncode, result.recap, result.tail(60, secrets_of(env)))


def expect_ok(result: harness.PlaybookRun, env: dict[str, str]) -> None:
    assert result.returncode == 0 and not result.hosts_with("failed"), explain(result, env)


def expect_no_write(sandbox: Any, result: harness.PlaybookRun, env: dict[str, str]) -> None:
    """The run changed no host and wrote nothing to Graph or ARM (since the last statistics reset)."""
    assert not result.hosts_with("changed"), explain(result, env)
    done = writes(sandbox)
    assert done == {"graph": 0, "arm": 0}, done


def check_messages(result: harness.PlaybookRun, cases: dict[str, tuple[list, list[str]]], env: dict[str, str]) -> dict[str, str]:
    """Every bad host failed, with its fragments, the field and a fix, no traceback, no secret."""
    assert result.returncode != 0 and sorted(result.hosts_with("failed")) == sorted(cases), explain(result, env)
    messages = failures(result)
    problems = []
    for host, (_roles, fragments) in cases.items():
        text = messages.get(host)
        if text is None:
            problems.append("{0}: no failure message in the output".format(host))
            continue
        missing = [f for f in fragments + ["Fix: "] if f not in text]
        if missing or "Traceback" in text or not text.startswith(host + ": "):
            problems.append("{0}: missing {1} in {2!r}".format(host, missing, text))
    assert not problems, "\n".join(problems)
    leaked = [s for s in secrets_of(env) if len(s) >= 8 and s in result.output]
    assert not leaked, "a secret reached the output"
    return messages


def writes(sandbox: Any) -> dict[str, Any]:
    """Graph and ARM writes since the last statistics reset, with the routes written to when there were any."""
    stats = stats_of(sandbox)
    out: dict[str, Any] = {"graph": stats["graph"]["writes"], "arm": stats["arm"]["writes"]}
    if out["graph"] or out["arm"]:
        out["routes"] = {route: n for route, n in stats["by_route"].items() if not route.startswith(("GET ", "HEAD "))}
    return out


def without_application(state: dict[str, Any], unique_name: str) -> dict[str, Any]:
    """``state`` without the application ``unique_name`` and what hangs on it: its service principal, credentials
    and the service principal's role assignments."""
    state = json.loads(json.dumps(state))
    app = next(a for a in state["applications"] if a.get("uniqueName") == unique_name)
    sp_ids = {s["id"] for s in state["service_principals"] if s["appId"] == app["appId"]}
    state["applications"] = [a for a in state["applications"] if a["id"] != app["id"]]
    state["service_principals"] = [s for s in state["service_principals"] if s["id"] not in sp_ids]
    state["federated_identity_credentials"].pop(app["id"], None)
    state["role_assignments"] = [r for r in state["role_assignments"] if r["properties"]["principalId"] not in sp_ids]
    return state


# --- 1. bad role inputs: the role fails with the field and the fix, and nothing is written ---------------------------

def test_bad_role_inputs_fail_before_any_write(sandbox, tmp_path):
    env = harness.ansible_env(sandbox.env, tmp_path)
    sandbox.reset()
    seed_scopes_outside_the_operators_reach(sandbox)
    cases = bad_cases(sandbox)
    good_roles = [{"role": "Reader", "resource_group": RG}]

    # per_host: one module run per project. Not one Graph or ARM write (so nothing was written and undone either), and
    # the sandbox's state is byte for byte what it was: this holds for each case, all in one run.
    inventory = write_inventory(tmp_path / "bad.yml", sandbox, {h: {ROLES: roles} for h, (roles, _f) in cases.items()})
    before = sandbox.control("GET", "state").content
    reset_stats(sandbox)
    per_host = run(ONBOARD, inventory, env, tmp_path, gitlab_oidc_strategy="per_host")
    assert writes(sandbox) == {"graph": 0, "arm": 0}, explain(per_host, env)
    assert sandbox.control("GET", "state").content == before, "a failed per_host run changed the sandbox's state"
    per_host_messages = check_messages(per_host, cases, env)

    # bulk: the bad projects and a good one in one module call; check mode first (the plan), then for real
    hosts = {h: {ROLES: roles} for h, (roles, _f) in cases.items()}
    hosts[GOOD_HOST] = {ROLES: good_roles}
    inventory = write_inventory(tmp_path / "bulk.yml", sandbox, hosts)
    baseline = state_of(sandbox)
    check = run(ONBOARD, inventory, env, tmp_path, "--check", gitlab_oidc_strategy="bulk")
    assert writes(sandbox) == {"graph": 0, "arm": 0}, explain(check, env)
    assert sandbox.control("GET", "state").content == before, "a check-mode run changed the sandbox's state"
    assert check_messages(check, cases, env) == per_host_messages

    bulk = run(ONBOARD, inventory, env, tmp_path, gitlab_oidc_strategy="bulk")
    assert check_messages(bulk, cases, env) == per_host_messages
    assert GOOD_HOST in bulk.hosts_with("changed"), explain(bulk, env)
    after = state_of(sandbox)
    made = managed_state(after)
    good_name = app_name(GOOD_HOST)
    assert list(made) == [good_name], made
    assert made[good_name]["service_principal"] and len(made[good_name]["credentials"]) == 1
    assert [r[:2] for r in made[good_name]["roles"]] == [(_rg(sandbox.subscription_id, RG).lower(), READER)]
    # the good project's objects are all that changed
    assert without_application(after, good_name) == baseline


# --- 2. a crash between the application and its role assignments, a re-run, offboarding with purge -------------------

RERUN_HOST = "plan-first/crash-then-rerun"          # re-run after the crash, then offboarded
OFFBOARD_HOST = "plan-first/crash-then-offboard"    # offboarded right after the crash, half made


def crash_while_assigning_roles(sandbox: Any, inventory: Path, env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """Run onboard.yml (per_host) and ``kill -9`` it, every process of the run, once every project's application,
    service principal and credentials exist and a role assignment PUT is in flight. The PUTs are held 30 s and then
    answered 503 (a fault answers before ARM's handler runs), so no role assignment is ever written. Returns
    managed_state at the kill."""
    held = {"service": "arm", "methods": ["PUT"], "path": "/providers/Microsoft.Authorization/roleAssignments/"}
    sandbox.faults(rules=[dict(held, kind="latency", ms=30000), dict(held, kind="error", status=503)])

    def ready() -> bool:
        made = managed_state(state_of(sandbox))
        return (sandbox.control("GET", "faults").json()["rules"][0]["matched"] > 0 and len(made) == 2
                and all(len(app["credentials"]) == 2 for app in made.values()))

    try:
        killed = kill_9_run_when(ONBOARD, inventory, env, workdir, {"gitlab_oidc_report_dir": str(workdir / "report")}, ready,
                                 interval=0.1, ended="the run ended before its role assignment writes")
        at_kill = managed_state(state_of(sandbox))
    finally:
        sandbox.faults()
    pids, survivors = killed
    assert len(pids) > 1 and not survivors, "processes of the run survived kill -9: {0} of {1}".format(survivors, pids)
    return at_kill


def test_crash_before_the_role_assignments_then_rerun_converges_and_offboarding_purges(sandbox, tmp_path):
    env = harness.ansible_env(sandbox.env, tmp_path)
    sandbox.reset()
    baseline = state_of(sandbox)
    project = {"gitlab_oidc_tags": ["v*"], ROLES: [{"role": "Reader"}, {"role": "Contributor", "resource_group": RG}]}
    inventory = write_inventory(tmp_path / "crash.yml", sandbox, {RERUN_HOST: project, OFFBOARD_HOST: project})
    rerun_app, offboard_app = app_name(RERUN_HOST), app_name(OFFBOARD_HOST)

    # the crash: both applications with their service principal and credentials (exact and flexible), no role
    halfway = crash_while_assigning_roles(sandbox, inventory, env, tmp_path)
    assert sorted(halfway) == sorted([rerun_app, offboard_app]), halfway
    assert all(app["service_principal"] and len(app["credentials"]) == 2 and app["roles"] == []
               for app in halfway.values()), halfway
    assert managed_state(state_of(sandbox)) == halfway, "something was written after the kill"

    # a re-run of one project converges it: its application adopted (no second one), its roles added
    again = run(ONBOARD, inventory, env, tmp_path, "--limit", RERUN_HOST)
    expect_ok(again, env)
    assert again.hosts_with("changed") == [RERUN_HOST], explain(again, env)
    state = state_of(sandbox)
    made = managed_state(state)
    assert made[offboard_app] == halfway[offboard_app] and made[rerun_app]["credentials"] == halfway[rerun_app]["credentials"]
    assert [r[:2] for r in made[rerun_app]["roles"]] == sorted([(_sub(sandbox.subscription_id).lower(), READER),
                                                                (_rg(sandbox.subscription_id, RG).lower(), CONTRIBUTOR)])
    for kind in ("applications", "service_principals"):
        assert len(state[kind]) == len(baseline[kind]) + 2, kind
    assert len(state["role_assignments"]) == len(baseline["role_assignments"]) + 2
    assert not orphans(state, baseline)

    # offboarding with purge: the converged project and the half-made one leave nothing, not even deleted items
    gone = run(OFFBOARD, inventory, env, tmp_path, gitlab_oidc_purge=True)
    expect_ok(gone, env)
    assert gone.hosts_with("changed") == sorted([RERUN_HOST, OFFBOARD_HOST]), explain(gone, env)
    after = state_of(sandbox)
    assert after["deleted_items"] == [], "offboarding with purge left deleted items: {0}".format(
        [(i.get("appId"), i.get("displayName")) for i in after["deleted_items"]])
    assert after == baseline, "offboarding with purge left something behind"
    for kind in ("application", "servicePrincipal"):
        deleted = sandbox.graph("GET", "/v1.0/directory/deletedItems/microsoft.graph." + kind)
        assert deleted.status_code == 200 and deleted.json()["value"] == [], deleted.text

    # offboarding again: nothing to do
    before = sandbox.control("GET", "state").content
    reset_stats(sandbox)
    twice = run(OFFBOARD, inventory, env, tmp_path, gitlab_oidc_purge=True)
    expect_ok(twice, env)
    expect_no_write(sandbox, twice, env)
    assert sandbox.control("GET", "state").content == before
