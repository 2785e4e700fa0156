# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The seed's step 4, end to end: every example project onboarded by ``playbooks/onboard.yml`` logs in to Azure
with a GitLab ID token, gets exactly the rights the role granted, is refused with Entra ID's error codes for what
it does not trust, logs in with the official Azure CLI running the role's ``.gitlab-ci.yml`` snippet, and is
offboarded without a trace.

Expectations are derived from the role's JSON report (trust, audience, issuer, role assignments), never from
what the modules happen to send. The tests run in file order: offboarding comes last.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from azure.core.exceptions import ClientAuthenticationError

from e2e_support import OTHER_RG, RG_API, azcli, azure_writes, example_hosts, exchange, state_of

HOSTS = example_hosts()
# Projects whose generated snippet the Azure CLI runs: an exact credential with a subscription role, and a
# project_id-led sub claim with a resource-group role only.
AZ_HOSTS = [host for host in ("demo/web-app", "demo/payments-api") if host in HOSTS]
# What each built-in role lets a principal do with the checks below (README of the sandbox, "Authorisation").
ROLE_RIGHTS = {
    "Reader": {"read"},
    "Contributor": {"read", "write"},
    "Owner": {"read", "write", "rbac"},
    "User Access Administrator": {"read", "rbac"},
}
AADSTS = re.compile(r"AADSTS(\d+)")
OWNER_ROLE_ID = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
ESCALATION_ID = "7f1b0c9e-4a2d-4e8f-9b3c-0d1e2f3a4b5c"  # name of the role assignment a CI job tries to create
RA_API = "api-version=2022-04-01"


# --- helpers ---------------------------------------------------------------------------------------------------

def sample_ref(pattern: str) -> str:
    """A ref name matched by ``pattern`` (a literal stays itself)."""
    return pattern.replace("*", "e2e.1").replace("?", "x")


def trusted_refs(project: dict[str, Any]) -> list[tuple[str, str]]:
    """(ref_type, ref) pairs the project's trust accepts: one per listed branch/tag, or a branch and a tag."""
    trust = project["trust"]
    if trust["any_ref"]:
        return [("branch", "e2e/any-branch"), ("tag", "e2e-any-tag")]
    return ([("branch", sample_ref(b)) for b in trust["branches"]]
            + [("tag", sample_ref(t)) for t in trust["tags"]])


def untrusted_refs(project: dict[str, Any]) -> list[tuple[str, str]]:
    """A branch and a tag of the project that its trust does not cover (none with any_ref)."""
    trust = project["trust"]
    if trust["any_ref"]:
        return []
    refs = []
    for ref_type, patterns in (("branch", trust["branches"]), ("tag", trust["tags"])):
        if not any(fnmatch.fnmatchcase("e2e-untrusted", pattern) for pattern in patterns):
            refs.append((ref_type, "e2e-untrusted"))
    return refs


def mint(sandbox: Any, project: dict[str, Any], ref_type: str, ref: str, **overrides: Any) -> str:
    """A GitLab CI ID token of the project's job on ``ref`` (issuer, audience, sub components as onboarded)."""
    spec: dict[str, Any] = {"issuer": project["issuer"], "project_path": project["project_path"],
                            "ref_type": ref_type, "ref": ref, "aud": project["audience"],
                            "sub_components": project["trust"]["sub_claim_components"]}
    if project.get("project_id") not in (None, ""):
        spec["project_id"] = str(project["project_id"])
    spec.update(overrides)
    return sandbox.mint_gitlab_token(**spec)


def refused_code(sandbox: Any, client_id: str, gitlab_token: str) -> int:
    """The AADSTS code of a refused exchange (fails the test if the exchange succeeds)."""
    with pytest.raises(ClientAuthenticationError) as info:
        exchange(sandbox, client_id, gitlab_token)
    codes = AADSTS.findall(str(info.value))
    assert codes, f"no AADSTS code in the error: {str(info.value)[:500]}"
    return int(codes[0])


def rights_at(project: dict[str, Any], scope: str) -> set[str]:
    """What the project's role assignments allow at ``scope`` (assignments at the scope or above it)."""
    rights: set[str] = set()
    for assignment in project["role_assignments"]:
        role = assignment.get("role_definition_name") or assignment.get("role")
        assert role in ROLE_RIGHTS, f"the e2e tests know no rights for role {role!r}: add it to ROLE_RIGHTS"
        granted = assignment["scope"].lower().rstrip("/")
        if scope.lower() == granted or scope.lower().startswith(granted + "/"):
            rights |= ROLE_RIGHTS[role]
    return rights


def expect(response: Any, allowed: bool, ok: tuple[int, ...], what: str) -> None:
    """``ok`` status when ``allowed``, else ARM's 403 ``AuthorizationFailed``."""
    if allowed:
        assert response.status_code in ok, f"{what}: expected {ok}, got {response.status_code} {response.text[:300]}"
    else:
        assert response.status_code == 403, f"{what}: expected 403, got {response.status_code} {response.text[:300]}"
        assert response.json()["error"]["code"] == "AuthorizationFailed", f"{what}: {response.text[:300]}"


# --- onboarding and idempotence ----------------------------------------------------------------------------------

def test_onboarding_covers_every_example_project(deployment):
    assert sorted(deployment.first.recap) == sorted(HOSTS), deployment.explain(deployment.first)
    report = deployment.report
    assert report["state"] == "present" and report["check_mode"] is False
    assert report["summary"]["projects"] == len(HOSTS) and report["summary"]["failed"] == 0, report["summary"]
    for host in HOSTS:
        project = deployment.project(host)
        assert project["status"] == "onboarded" and project["pending"] is False, project
        assert project["client_id"] and project["tenant_id"] == deployment.sandbox.tenant_id, project
        assert project["credentials"], f"{host}: no federated credential in the report"
        assert project["role_assignments"], f"{host}: no role assignment in the report"
        assert Path(project["ci_snippet"]).is_file(), f"{host}: no snippet at {project['ci_snippet']}"


def test_second_run_changes_nothing_and_writes_nothing(deployment):
    second = deployment.second
    assert second.returncode == 0, deployment.explain(second)
    assert sorted(second.recap) == sorted(HOSTS), deployment.explain(second)
    changed = {host: counts["changed"] for host, counts in second.recap.items() if counts["changed"]}
    failed = second.hosts_with("failed")
    assert not changed and not failed, f"changed={changed} failed={failed}\n" + deployment.explain(second)
    stats = deployment.second_stats
    assert azure_writes(stats) == 0, f"the second run wrote: {stats['by_route']} {stats['batch_by_route']}"
    assert stats["reads"] > 0, "the second run read nothing: did it talk to the sandbox at all?"
    report = json.loads((deployment.report_dir / "onboarding.json").read_text(encoding="utf-8"))
    assert report["summary"]["changed"] == 0, report["summary"]


# --- what a CI job can do with its token ------------------------------------------------------------------------

@pytest.mark.parametrize("host", HOSTS)
def test_trusted_ref_gets_exactly_the_granted_rights(deployment, host):
    sandbox = deployment.sandbox
    project = deployment.project(host)
    sub_scope = f"/subscriptions/{sandbox.subscription_id}"
    groups = {name: f"{sub_scope}/resourceGroups/{name}" for name in ("rg-sandbox", OTHER_RG)}
    refs = trusted_refs(project)
    assert refs, f"{host}: the report lists no trusted ref"
    tokens = []
    for ref_type, ref in refs:  # every trusted ref logs in as the project's service principal
        tokens.append(exchange(sandbox, project["client_id"], mint(sandbox, project, ref_type, ref)))
        claims = jwt.decode(tokens[-1], options={"verify_signature": False})
        assert claims["appid"] == project["client_id"], (ref_type, ref)
        assert claims["oid"] == project["application"]["service_principal_id"], (ref_type, ref)
    token = tokens[0]  # same principal for all: check its rights once

    listed = sandbox.arm("GET", f"{sub_scope}/resourcegroups?{RG_API}", token=token)
    assert listed.status_code == 200, listed.text
    readable = {name for name, scope in groups.items() if "read" in rights_at(project, scope)}
    assert {g["name"] for g in listed.json()["value"]} == readable

    for name, scope in groups.items():
        rights = rights_at(project, scope)
        expect(sandbox.arm("GET", f"{scope}?{RG_API}", token=token), "read" in rights, (200,), f"GET {name}")
        current = sandbox.arm("GET", f"{scope}?{RG_API}").json()  # the operator's view, to write it back unchanged
        body = {"location": current["location"], "tags": current.get("tags") or {}}
        expect(sandbox.arm("PUT", f"{scope}?{RG_API}", token=token, json=body), "write" in rights, (200,),
               f"PUT {name} (unchanged)")
        assignment = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{ESCALATION_ID}?{RA_API}"
        owner = f"{sub_scope}/providers/Microsoft.Authorization/roleDefinitions/{OWNER_ROLE_ID}"
        escalate = sandbox.arm("PUT", assignment, token=token, json={"properties": {
            "roleDefinitionId": owner, "principalId": project["application"]["service_principal_id"],
            "principalType": "ServicePrincipal"}})
        expect(escalate, "rbac" in rights, (200, 201), f"make itself Owner of {name}")
        if escalate.status_code in (200, 201):
            sandbox.arm("DELETE", assignment)

    new_group = f"{sub_scope}/resourceGroups/rg-e2e-created-by-ci?{RG_API}"
    created = sandbox.arm("PUT", new_group, token=token, json={"location": "westeurope"})
    expect(created, "write" in rights_at(project, f"{sub_scope}/resourceGroups/rg-e2e-created-by-ci"), (201,),
           "create a resource group")
    if created.status_code == 201:
        sandbox.arm("DELETE", new_group)


# --- what the trust refuses ---------------------------------------------------------------------------------------

UNTRUSTED_CASES = {
    # case: (expected AADSTS code, what is wrong)
    "ref": (700213, "a branch or tag outside the trust"),
    "project": (700213, "another project on a trusted ref"),
    "audience": (700212, "an audience the credentials do not list"),
    "issuer": (700211, "another GitLab instance"),
}


def _other_issuer(sandbox: Any, issuer: str) -> str:
    """A GitLab issuer of the sandbox other than ``issuer``."""
    response = sandbox.control("GET", "issuers")
    assert response.status_code == 200, response.text
    others = [item["issuer"] for item in response.json()["value"] if item["issuer"] != issuer]
    assert others, f"the sandbox has no GitLab issuer besides {issuer}"
    return others[0]


@pytest.mark.parametrize("case", sorted(UNTRUSTED_CASES))
@pytest.mark.parametrize("host", HOSTS)
def test_untrusted_token_is_refused_with_entra_code(deployment, host, case):
    sandbox = deployment.sandbox
    project = deployment.project(host)
    code, what = UNTRUSTED_CASES[case]
    ref_type, ref = trusted_refs(project)[0]
    if case == "ref":
        refs = untrusted_refs(project)
        if not refs:
            pytest.skip(f"{host} trusts every ref")
        tokens = [mint(sandbox, project, t, r) for t, r in refs]
    elif case == "project":
        tokens = [mint(sandbox, project, ref_type, ref, project_path="e2e/untrusted-project", project_id="999999")]
    elif case == "audience":
        tokens = [mint(sandbox, project, ref_type, ref, aud="api://e2e-untrusted-audience")]
    else:
        tokens = [mint(sandbox, project, ref_type, ref, issuer=_other_issuer(sandbox, project["issuer"]))]
    for token in tokens:
        assert refused_code(sandbox, project["client_id"], token) == code, f"{host}: {what}"


def test_project_id_led_sub_refuses_the_path_led_subject(deployment):
    """A project whose sub claim leads with project_id does not trust a token whose sub leads with the path."""
    projects = [deployment.project(h) for h in HOSTS]
    by_id = [p for p in projects if p["trust"]["sub_claim_components"][:1] == ["project_id"]]
    if not by_id:
        pytest.skip("no example project uses a project_id-led sub claim")
    sandbox = deployment.sandbox
    for project in by_id:
        ref_type, ref = trusted_refs(project)[0]
        token = mint(sandbox, project, ref_type, ref, sub_components=["project_path", "ref_type", "ref"])
        assert refused_code(sandbox, project["client_id"], token) == 700213, project["host"]


# --- the official Azure CLI runs the generated snippet ------------------------------------------------------------

@pytest.fixture(scope="module")
def az_template(az_bin, sandbox, tmp_path_factory):
    """An Azure CLI configuration with the Sandbox cloud registered (copied for each test)."""
    return azcli.make_az(az_bin, sandbox, tmp_path_factory.mktemp("az-template"))


def _az_for(template: Any, home: Path) -> Any:
    config_dir = home / "azure-config"
    shutil.copytree(template.env["AZURE_CONFIG_DIR"], config_dir)
    env = {**template.env, "HOME": str(home), "AZURE_CONFIG_DIR": str(config_dir),
           "PATH": f"{template.binary.parent}{os.pathsep}{template.env['PATH']}"}
    return azcli.Az(template.binary, env)


def run_snippet(az: Any, snippet_file: Path, token: str) -> list[subprocess.CompletedProcess[str]]:
    """Run the ``script`` lines of the snippet's job with bash, as the GitLab runner would, with its
    ``variables`` and the ID token in ``GITLAB_OIDC_TOKEN``; stops at the first failing line."""
    snippet = yaml.safe_load(snippet_file.read_text(encoding="utf-8"))
    job = snippet["azure-oidc-login"]
    env = {**az.env, **{k: str(v) for k, v in snippet["variables"].items()}, "GITLAB_OIDC_TOKEN": token}
    az.secrets += (token,)
    results = []
    for line in job["script"]:
        result = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=180,
                                stdin=subprocess.DEVNULL, check=False)
        results.append(result)
        if result.returncode != 0:
            break
    return results


def _snippet_audience(snippet_file: Path) -> Any:
    snippet = yaml.safe_load(snippet_file.read_text(encoding="utf-8"))
    return snippet["azure-oidc-login"]["id_tokens"]["GITLAB_OIDC_TOKEN"]["aud"]


@pytest.mark.azcli
@pytest.mark.parametrize("host", AZ_HOSTS)
def test_azure_cli_runs_the_generated_snippet(deployment, az_template, tmp_path, host):
    sandbox = deployment.sandbox
    project = deployment.project(host)
    snippet_file = Path(project["ci_snippet"])
    job = yaml.safe_load(snippet_file.read_text(encoding="utf-8"))["azure-oidc-login"]
    assert job["script"][0].startswith("az login --service-principal"), job["script"]
    assert "--federated-token $GITLAB_OIDC_TOKEN" in job["script"][0], job["script"]
    ref_type, ref = trusted_refs(project)[0]
    # the token the job's id_tokens keyword asks GitLab for
    token = mint(sandbox, project, ref_type, ref, aud=_snippet_audience(snippet_file))
    az = _az_for(az_template, tmp_path)
    results = run_snippet(az, snippet_file, token)
    assert len(results) == len(job["script"]) and results[-1].returncode == 0, az.explain(results[-1])
    account = json.loads(results[-1].stdout)  # az account show
    assert account["id"] == sandbox.subscription_id and account["tenantId"] == sandbox.tenant_id, account
    assert account["user"] == {"name": project["client_id"], "type": "servicePrincipal"}, account


@pytest.mark.azcli
def test_azure_cli_snippet_refuses_an_untrusted_ref(deployment, az_template, tmp_path):
    host = next((h for h in AZ_HOSTS if untrusted_refs(deployment.project(h))), None)
    if host is None:
        pytest.skip("no Azure CLI project has an untrusted ref")
    sandbox = deployment.sandbox
    project = deployment.project(host)
    snippet_file = Path(project["ci_snippet"])
    ref_type, ref = untrusted_refs(project)[0]
    token = mint(sandbox, project, ref_type, ref, aud=_snippet_audience(snippet_file))
    az = _az_for(az_template, tmp_path)
    (login,) = run_snippet(az, snippet_file, token)
    assert login.returncode != 0, az.explain(login)
    assert "AADSTS700213" in login.stdout + login.stderr, az.explain(login)


# --- offboarding (last) -----------------------------------------------------------------------------------------

ACTIVE = ("applications", "service_principals", "federated_identity_credentials", "app_role_assignments",
          "role_assignments")


def _ids(state: dict[str, Any], collection: str) -> set[str]:
    value = state[collection]
    if isinstance(value, dict):  # FICs, keyed by application object id
        return {key for key, items in value.items() if items}
    return {item.get("id") for item in value}


def test_offboarding_leaves_none_of_the_roles_objects(deployment):
    report = deployment.report
    off = deployment.offboard()
    assert off.returncode == 0 and not off.hosts_with("failed"), deployment.explain(off)
    assert sorted(off.recap) == sorted(HOSTS), deployment.explain(off)

    state = state_of(deployment.sandbox)
    for collection in ACTIVE:
        left = _ids(state, collection) - _ids(deployment.baseline, collection)
        assert not left, f"offboarding left {collection}: {sorted(left)}"
    role_ids = set()
    for project in report["projects"]:
        role_ids |= {project["client_id"], project["application"]["object_id"],
                     project["application"]["service_principal_id"]}
    role_ids.discard(None)
    active_text = json.dumps({name: state[name] for name in ACTIVE})
    assert not [i for i in role_ids if i in active_text], "an id of the role's objects is still referenced"
    # Graph soft-deletes (restorable for 30 days): the deleted items are the role's objects and nothing else.
    deleted = {item.get("appId") for item in state["deleted_items"]}
    assert deleted <= {p["client_id"] for p in report["projects"]}, deleted

    offboarding = json.loads((deployment.report_dir / "offboarding.json").read_text(encoding="utf-8"))
    assert {p["host"]: p["status"] for p in offboarding["projects"]} == {h: "offboarded" for h in HOSTS}
    for project in report["projects"]:
        assert not Path(project["ci_snippet"]).exists(), f"{project['ci_snippet']} was not removed"


def test_offboarded_projects_cannot_log_in(deployment):
    deployment.offboard()
    sandbox = deployment.sandbox
    for project in deployment.report["projects"]:
        ref_type, ref = trusted_refs(project)[0]
        token = mint(sandbox, project, ref_type, ref)
        assert refused_code(sandbox, project["client_id"], token) == 700016, project["host"]
