# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The AWX / Automation Controller files of docs/awx/ fit the collection they run.

- the built-in "Microsoft Azure Resource Manager" credential injects variables the modules read;
- the custom "GitLab API token" credential type injects the variables the gitlab_projects inventory plugin reads, and
  the dynamic inventory source runs that plugin on a file of the project skeleton;
- job templates run playbooks of the project skeleton, the same plays as the playbooks the collection ships;
- survey questions set role variables of a type a survey can carry (never a boolean or a list);
- sliced job templates keep projects that share an application out (their writes are serialised within one job);
- the inventory of the project skeleton parses and runs tasks with the Execution Environment's Python.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AWX = ROOT / "docs" / "awx"
CONFIG = yaml.safe_load((AWX / "controller-config.yml").read_text())
ROLE_SPEC = yaml.safe_load((ROOT / "roles" / "gitlab_oidc" / "meta" / "argument_specs.yml").read_text())
ROLE_OPTIONS = ROLE_SPEC["argument_specs"]["main"]["options"]

# What AWX's built-in credential type injects for a service principal (awx/main/models/credential/injectors.py,
# azure_rm()): input field -> environment variable. Username/password inputs inject AZURE_AD_USER/AZURE_PASSWORD,
# which Microsoft Entra no longer accepts for app-only access and the collection does not read.
AZURE_RM_INJECTOR = {
    "subscription": "AZURE_SUBSCRIPTION_ID",
    "client": "AZURE_CLIENT_ID",
    "secret": "AZURE_SECRET",
    "tenant": "AZURE_TENANT",
    "cloud_environment": "AZURE_CLOUD_ENVIRONMENT",
}
# Survey question types and the role option types they can set without conversion surprises.
SURVEY_TYPES = {"text": "str", "textarea": "str", "password": "str", "integer": "int", "float": "float",
                "multiplechoice": "str"}


def module_utils_constant(filename: str, name: str) -> object:
    tree = ast.parse((ROOT / "plugins" / "module_utils" / filename).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("{0} not found in {1}".format(name, filename))


def by_name(kind: str) -> dict[str, dict]:
    return {item["name"]: item for item in CONFIG[kind]}


def inventory_plugin_doc() -> dict:
    text = (ROOT / "plugins" / "inventory" / "gitlab_projects.py").read_text()
    return yaml.safe_load(text.split("DOCUMENTATION = r'''", 1)[1].split("'''", 1)[0])


def test_credential_is_the_builtin_azure_type_and_its_variables_are_read() -> None:
    env_read = {var for names in module_utils_constant("_auth_spec.py", "ENV_VARS").values() for var in names}
    azure = [c for c in CONFIG["controller_credentials"] if c["credential_type"] not in by_name(
        "controller_credential_types")]
    assert azure
    for credential in azure:
        assert credential["credential_type"] == "Microsoft Azure Resource Manager"
        inputs = set(credential["inputs"])
        assert {"client", "secret", "tenant", "subscription"} <= inputs, "a service principal needs all four"
        assert inputs <= set(AZURE_RM_INJECTOR), inputs - set(AZURE_RM_INJECTOR)
        for field in inputs:
            assert AZURE_RM_INJECTOR[field] in env_read, "{0} is injected but not read".format(AZURE_RM_INJECTOR[field])
    # The cloud names the docs tell AWX users to enter are the option's choices.
    text = (AWX / "controller-config.yml").read_text() + (ROOT / "docs" / "awx.md").read_text()
    auth_doc = (ROOT / "plugins" / "doc_fragments" / "auth.py").read_text()
    choices = yaml.safe_load(auth_doc.split("r'''", 1)[1].split("'''", 1)[0])["options"]["cloud_environment"]["choices"]
    clouds = {c for c in choices if c in text}
    assert {"AzureUSGovernment", "AzureChinaCloud"} <= clouds


def test_gitlab_credential_type_injects_what_the_inventory_plugin_reads() -> None:
    options = inventory_plugin_doc()["options"]
    plugin_env = {env["name"]: name for name, spec in options.items() for env in spec.get("env") or ()}
    types = by_name("controller_credential_types")
    assert "GitLab API token" in types
    for credential_type in types.values():
        assert credential_type["kind"] == "cloud", "only cloud credentials can be attached to an inventory source"
        fields = {f["id"]: f for f in credential_type["inputs"]["fields"]}
        assert set(credential_type["inputs"]["required"]) <= set(fields)
        injected = credential_type["injectors"]["env"]
        assert {"GITLAB_TOKEN", "GITLAB_URL"} <= set(injected)
        for var, template in injected.items():
            assert var in plugin_env, "{0} is injected but the inventory plugin does not read it".format(var)
            field = template.strip("{} ")
            assert field in fields, template
        assert fields["token"].get("secret") is True, "the token must be a secret input"
    for credential in CONFIG["controller_credentials"]:
        if credential["credential_type"] in types:
            assert set(credential["inputs"]) <= {f["id"] for f in types[credential["credential_type"]]["inputs"]["fields"]}
            assert "vault_" in credential["inputs"]["token"], "the token belongs in a vault, not in the file"


def test_dynamic_inventory_source_runs_the_plugin_with_the_gitlab_credential() -> None:
    credentials = by_name("controller_credentials")
    types = by_name("controller_credential_types")
    doc = inventory_plugin_doc()
    dynamic = [s for s in CONFIG["controller_inventory_sources"] if s.get("credential")]
    assert dynamic, "no inventory source reads projects from GitLab"
    for source in dynamic:
        assert credentials[source["credential"]]["credential_type"] in types
        assert source["source_path"].endswith(("gitlab_projects.yml", "gitlab_projects.yaml")), "verify_file refuses it"
        config = yaml.safe_load((AWX / "project" / source["source_path"]).read_text())
        assert config["plugin"] == "oidc_federation.azure.gitlab_projects"
        constructed = {"strict", "compose", "groups", "keyed_groups", "use_extra_vars", "leading_separator"}
        assert set(config) <= set(doc["options"]) | constructed, set(config) - set(doc["options"]) - constructed
        assert not {"token", "url"} & set(config), "the credential provides them"
        assert config["gitlab_groups"]
        # the hosts land in the group the job templates' playbooks run on
        assert config.get("inventory_group", doc["options"]["inventory_group"]["default"]) == "gitlab_projects"


def test_templates_reference_defined_objects_and_existing_playbooks() -> None:
    credentials, projects = by_name("controller_credentials"), by_name("controller_projects")
    inventories, environments = by_name("controller_inventories"), by_name("controller_execution_environments")
    states = {"onboard.yml": "present", "offboard.yml": "absent"}
    for template in CONFIG["controller_templates"]:
        assert template["project"] in projects and template["inventory"] in inventories
        assert template["execution_environment"] in environments
        assert set(template["credentials"]) <= set(credentials)
        # The project's playbook runs the collection's role like the collection's own playbook of the same name.
        plays = yaml.safe_load((AWX / "project" / template["playbook"]).read_text())
        shipped = yaml.safe_load((ROOT / "playbooks" / template["playbook"]).read_text())
        assert len(plays) == 1 and len(shipped) == 1, template["playbook"]
        # one task: the role imported without Ansible's per-host validation (the role validates every host itself)
        tasks, shipped_tasks = plays[0]["tasks"], shipped[0]["tasks"]
        assert len(tasks) == len(shipped_tasks) == 1 and "roles" not in plays[0] and "roles" not in shipped[0]
        imported = tasks[0]["ansible.builtin.import_role"]
        expected = {"name": "oidc_federation.azure.gitlab_oidc", "rolespec_validate": False}
        assert imported == shipped_tasks[0]["ansible.builtin.import_role"] == expected
        assert tasks[0]["vars"]["gitlab_oidc_state"] == states[template["playbook"]]
        assert tasks[0]["vars"] == shipped_tasks[0]["vars"]
        assert plays[0]["connection"] == "local" and plays[0]["gather_facts"] is False
    for source in CONFIG["controller_inventory_sources"]:
        assert source["source"] == "scm" and source["source_project"] in projects
        assert source["inventory"] in inventories
        assert (AWX / "project" / source["source_path"]).is_file(), source["source_path"]


def test_survey_file_matches_the_configuration_and_sets_safe_role_variables() -> None:
    survey = json.loads((AWX / "survey-onboard.json").read_text())
    surveyed = [t for t in CONFIG["controller_templates"] if t.get("survey_enabled")]
    assert surveyed
    for template in surveyed:
        assert template["survey_spec"] == survey, template["name"]
    for question in survey["spec"]:
        var = question["variable"]
        assert var in ROLE_OPTIONS, "{0} is not a variable of the gitlab_oidc role".format(var)
        option = ROLE_OPTIONS[var]
        # AWX sends answers as strings (multiselect as a list of strings): a boolean would arrive as "false", which
        # is true in a condition; trust and role lists belong in the reviewed inventory.
        assert question["type"] in SURVEY_TYPES, question["type"]
        assert option["type"] == SURVEY_TYPES[question["type"]], (var, option["type"], question["type"])
        if not question["required"]:
            # An unanswered optional question still sends its default: it must be the role's own default.
            assert question["default"] == option.get("default"), (var, question["default"], option.get("default"))
        if question["type"] == "multiplechoice":
            assert set(question["choices"].split("\n")) <= set(option["choices"]), var


def inventory() -> dict:
    venv = Path(os.environ.get("LINT_VENV", ROOT / ".venv-lint"))
    tool = venv / "bin" / "ansible-inventory"
    if not tool.exists():
        pytest.fail("{0} not found: run `bash scripts/lint-venv.sh` (or `make lint`) first".format(tool))
    proc = subprocess.run([str(tool), "-i", str(AWX / "project" / "inventory" / "gitlab_projects.yml"), "--list"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_sliced_templates_leave_shared_applications_to_one_job() -> None:
    data = inventory()
    hostvars = data["_meta"]["hostvars"]
    shared = {host for host, hv in hostvars.items() if hv.get("gitlab_oidc_shared_app")}
    assert shared, "the example inventory shows no shared application"
    assert shared == set(data["gitlab_shared_apps"]["hosts"])
    for template in CONFIG["controller_templates"]:
        if template.get("job_slice_count", 1) > 1:
            assert "!gitlab_shared_apps" in template.get("limit", ""), template["name"]
        elif template.get("limit") == "gitlab_shared_apps":
            assert template["job_slice_count"] == 1
    for host, hv in hostvars.items():
        assert hv["ansible_connection"] == "local", host
        assert hv["ansible_python_interpreter"] == "{{ ansible_playbook_python }}", host
        assert set(k for k in hv if k.startswith("gitlab_oidc_")) <= set(ROLE_OPTIONS), host
