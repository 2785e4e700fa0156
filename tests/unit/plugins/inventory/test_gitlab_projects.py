# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ``gitlab_projects`` inventory plugin against the sandbox's GitLab: through Ansible's InventoryManager (hosts,
variables, groups, keyed groups, compose, filters, errors) and through ``ansible-inventory --list -vvv`` (the token
never shows)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.oidc_federation.azure.plugins.inventory.gitlab_projects import HOST_VARIABLES, InventoryModule

pytestmark = pytest.mark.skipif('oidc_sandbox_test_fixtures' not in sys.modules,
                                reason='the sandbox package (sandbox/oidc_sandbox) is not in this checkout')

PROJECT_ID_SUB = ['project_id', 'ref_type', 'ref']

# Runs InventoryManager in a fresh interpreter: Ansible's collection loader must be installed before anything imports
# ansible_collections, which the test process (PYTHONPATH) already has. Prints hosts, groups and host variables.
RUNNER = r"""
import json, sys
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader()
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
inv = InventoryManager(loader=DataLoader(), sources=[sys.argv[1]])
print(json.dumps({
    'groups': {name: sorted(h.name for h in group.get_hosts()) for name, group in inv.groups.items()},
    'hostvars': {h.name: {k: v for k, v in h.get_vars().items() if k.startswith('gitlab_')} for h in inv.get_hosts()},
}))
"""


class Inventory:
    """What InventoryManager built: ``groups`` (name -> sorted host names) and ``hostvars``; ``output`` (all text)."""

    def __init__(self, proc):
        self.returncode = proc.returncode
        self.output = proc.stdout + proc.stderr
        data = json.loads(proc.stdout) if proc.returncode == 0 else {'groups': {}, 'hostvars': {}}
        self.groups = data['groups']
        self.hostvars = data['hostvars']


def inventory(tmp_path, config, name='org.gitlab_projects.yml', env=None):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(dict({'plugin': 'oidc_federation.azure.gitlab_projects'}, **config)))
    run_env = dict(os.environ, ANSIBLE_INVENTORY_ENABLED='oidc_federation.azure.gitlab_projects', ANSIBLE_NOCOLOR='1',
                   ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED='1', **(env or {}))
    proc = subprocess.run([sys.executable, '-c', RUNNER, str(path)], capture_output=True, text=True, env=run_env,
                          timeout=120, check=False)
    return Inventory(proc)


def org_tree():
    """25 projects in nested subgroups of ``org``: one archived, two with a project_id-led sub claim."""
    projects = []
    for team in ('payments', 'identity'):
        for n in range(5):
            projects.append({'path': 'org/{0}/svc-{1}'.format(team, n), 'topics': ['azure', team]})
        for n in range(4):
            projects.append({'path': 'org/{0}/libs/lib-{1}'.format(team, n), 'topics': ['library']})
    for n in range(6):
        projects.append({'path': 'org/platform/deep/er/tool-{0}'.format(n), 'topics': ['azure', 'platform'],
                         'default_branch': 'trunk'})
    projects[0]['ci_id_token_sub_claim_components'] = PROJECT_ID_SUB
    projects[-1]['ci_id_token_sub_claim_components'] = PROJECT_ID_SUB
    projects.append({'path': 'org/platform/retired', 'archived': True, 'topics': ['azure']})
    projects.append({'path': 'elsewhere/other', 'topics': ['azure']})
    assert len([p for p in projects if p['path'].startswith('org/')]) == 25
    return projects


@pytest.fixture
def org(clean_sandbox, monkeypatch):
    clean_sandbox.gitlab_seed(groups=[{'path': 'org/platform/deep/er'}], projects=org_tree(), tokens=[
        {'token': 'glpat-developer-only-1', 'scopes': ['read_api'], 'namespaces': ['org'], 'access_level': 30}])
    monkeypatch.setenv('GITLAB_TOKEN', clean_sandbox.gitlab_token)
    monkeypatch.setenv('GITLAB_URL', clean_sandbox.gitlab_url)
    monkeypatch.setenv('GITLAB_CA_BUNDLE', clean_sandbox.bundle_file)
    return clean_sandbox


def test_verify_file_accepts_only_gitlab_projects_files(tmp_path):
    plugin = InventoryModule()
    for name, accepted in (('a.gitlab_projects.yml', True), ('gitlab_projects.yaml', True),
                           ('hosts.yml', False), ('gitlab_projects.json', False)):
        (tmp_path / name).write_text('plugin: oidc_federation.azure.gitlab_projects\n')
        assert plugin.verify_file(str(tmp_path / name)) is accepted, name


def test_nested_group_becomes_hosts_with_the_role_variables(org, tmp_path):
    inv = inventory(tmp_path, {'gitlab_groups': ['org']})
    hosts = inv.groups['gitlab_projects']
    assert len(hosts) == 24 and 'org/platform/retired' not in hosts and 'elsewhere/other' not in hosts
    assert 'org/platform/deep/er/tool-5' in hosts
    svc = inv.hostvars['org/payments/svc-0']
    assert svc['gitlab_oidc_project_path'] == 'org/payments/svc-0'
    assert isinstance(svc['gitlab_oidc_project_id'], int)
    assert svc['gitlab_oidc_sub_claim_components'] == PROJECT_ID_SUB
    assert svc['gitlab_oidc_issuer'] == org.gitlab_url == svc['gitlab_project_instance_url']
    assert svc['gitlab_project_topics'] == ['azure', 'payments'] and svc['gitlab_project_archived'] is False
    assert svc['gitlab_project_namespace'] == 'org/payments' and svc['gitlab_project_visibility'] == 'private'
    tool = inv.hostvars['org/platform/deep/er/tool-5']
    assert tool['gitlab_project_default_branch'] == 'trunk'
    assert tool['gitlab_oidc_sub_claim_components'] == PROJECT_ID_SUB
    default = ['project_path', 'ref_type', 'ref']
    assert inv.hostvars['org/identity/svc-1']['gitlab_oidc_sub_claim_components'] == default
    assert set(HOST_VARIABLES) <= set(svc)
    # the project id and path agree with what an ID token minted for the project carries
    claims = org.control('POST', 'gitlab/token', json={'project': 'org/payments/svc-0'}).json()['claims']
    assert claims['sub'] == 'project_id:{0}:ref_type:branch:ref:main'.format(svc['gitlab_oidc_project_id'])


def test_filters_keyed_groups_and_compose(org, tmp_path):
    inv = inventory(tmp_path, {
        'gitlab_groups': ['org/payments', 'org'], 'include_archived': True, 'topics': ['azure'],
        'exclude_path_patterns': ['*/svc-4'], 'inventory_group': 'azure_projects',
        'keyed_groups': [{'key': 'gitlab_project_topics', 'prefix': 'topic'}],
        'groups': {'project_id_sub': "gitlab_oidc_sub_claim_components[0] == 'project_id'"},
        'compose': {'gitlab_oidc_branches': "[gitlab_project_default_branch | default('main', true)]"}})
    hosts = inv.groups['azure_projects']
    assert 'org/platform/retired' in hosts and 'org/payments/svc-4' not in hosts
    assert not [h for h in hosts if '/libs/' in h]
    assert inv.groups['topic_payments'] == [
        'org/payments/svc-{0}'.format(n) for n in range(4)]
    assert inv.groups['project_id_sub'] == [
        'org/payments/svc-0', 'org/platform/deep/er/tool-5']
    assert inv.hostvars['org/platform/deep/er/tool-0']['gitlab_oidc_branches'] == ['trunk']
    only_subgroup = inventory(tmp_path, {'gitlab_groups': ['org/payments'], 'include_subgroups': False,
                                         'path_regex': r'svc-[0-2]$'}, name='b.gitlab_projects.yml')
    assert only_subgroup.groups['gitlab_projects'] == [
        'org/payments/svc-0', 'org/payments/svc-1', 'org/payments/svc-2']


def test_a_developer_token_leaves_the_sub_claim_to_the_role(org, tmp_path, monkeypatch):
    monkeypatch.setenv('GITLAB_TOKEN', 'glpat-developer-only-1')
    inv = inventory(tmp_path, {'gitlab_groups': ['org'], 'path_patterns': ['org/payments/svc-0']})
    svc = inv.hostvars['org/payments/svc-0']
    assert 'gitlab_oidc_sub_claim_components' not in svc
    assert svc['gitlab_project_sub_claim_components_known'] is False


def test_errors_fail_the_source_with_the_reason(org, tmp_path):
    cases = {
        'a': ({'gitlab_groups': ['no-such-group']}, 'group no-such-group does not exist'),
        'b': ({'gitlab_groups': ['org'], 'token': 'glpat-not-a-real-token'}, 'GitLab 401 unauthorized'),
        'c': ({'gitlab_groups': ['org'], 'path_regex': '(unclosed'}, 'path_regex is not a valid regular expression'),
        'd': ({'gitlab_groups': ['org'], 'url': 'gitlab.example.com'}, 'is not an http(s) URL'),
    }
    sources = []
    for name, (config, _message) in cases.items():
        path = tmp_path / '{0}.gitlab_projects.yml'.format(name)
        path.write_text(yaml.safe_dump(dict({'plugin': 'oidc_federation.azure.gitlab_projects'}, **config)))
        sources.append(str(path))
    env = dict(os.environ, ANSIBLE_INVENTORY_ENABLED='oidc_federation.azure.gitlab_projects', ANSIBLE_NOCOLOR='1')
    proc = subprocess.run([sys.executable, '-c', RUNNER.replace('[sys.argv[1]]', 'sys.argv[1:]'), *sources],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    output = ' '.join((proc.stdout + proc.stderr).split())
    for name, (_config, message) in cases.items():
        assert '{0}.gitlab_projects.yml: '.format(name) in output and message in output, (name, output)
    assert json.loads(proc.stdout)['hostvars'] == {}
    assert org.gitlab_token not in output and 'glpat-not-a-real-token' not in output


def test_ansible_inventory_list_never_shows_the_token(org, tmp_path):
    path = tmp_path / 'cli.gitlab_projects.yml'
    path.write_text(yaml.safe_dump({'plugin': 'oidc_federation.azure.gitlab_projects', 'gitlab_groups': ['org'],
                                    'keyed_groups': [{'key': 'gitlab_project_topics', 'prefix': 'topic'}]}))
    env = dict(os.environ, ANSIBLE_INVENTORY_ENABLED='oidc_federation.azure.gitlab_projects',
               ANSIBLE_NOCOLOR='1', ANSIBLE_INVENTORY_UNPARSED_FAILED='1')
    tool = Path(sys.executable).with_name('ansible-inventory')
    proc = subprocess.run([str(tool), '-i', str(path), '--list', '-vvv'], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout[proc.stdout.index('{'):])
    assert len(data['gitlab_projects']['hosts']) == 24
    assert sorted(data['topic_identity']['hosts']) == ['org/identity/svc-{0}'.format(n) for n in range(5)]
    assert org.gitlab_token not in proc.stdout + proc.stderr
