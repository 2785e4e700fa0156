# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The gitlab_oidc_play_projects action, run by ansible-playbook: each host's variable resolved in that host's own
context (inventory, role defaults and vars), a host that cannot be resolved reported on that host only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]

INVENTORY = textwrap.dedent('''\
    all:
      vars:
        ansible_connection: local
        ansible_python_interpreter: {python}
      children:
        projects:
          hosts:
            group/one: {{}}
            group/two:
              probe_branch: develop
            group/broken:
              probe_branch: "{{{{ not_defined_anywhere }}}}"
            group/skipped: {{}}
    ''')

ROLE_DEFAULTS = 'probe_path: "{{ inventory_hostname }}"\nprobe_branch: main\n'
ROLE_VARS = '__probe_project: "{{ {\'key\': inventory_hostname, \'project_path\': probe_path, \'branch\': probe_branch} }}"\n'
ROLE_TASKS = textwrap.dedent('''\
    - name: Results directory
      ansible.builtin.tempfile:
        state: directory
      register: results
      run_once: true
      delegate_to: localhost
      check_mode: false

    - name: Describe
      oidc_federation.azure.gitlab_oidc_play_projects:
        variable: __probe_project
        results_dir: "{{ results.path }}"
      register: described
      run_once: true
      delegate_to: localhost

    - name: Keep what it returned
      ansible.builtin.copy:
        content: "{{ described | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
      run_once: true
      delegate_to: localhost
      check_mode: false

    - name: Outcome of the broken host (the only one with an entry)
      oidc_federation.azure.gitlab_oidc_result:
        results_dir: "{{ results.path }}"
      when: inventory_hostname == 'group/broken'
    ''')
PLAYBOOK = textwrap.dedent('''\
    - hosts: projects:!group/skipped
      gather_facts: false
      roles:
        - probe
    ''')


def collections_root():
    return subprocess.run(['bash', str(ROOT / 'scripts' / 'collection-root.sh')], capture_output=True, text=True,
                          check=True).stdout.strip()


def run(tmp_path, *options):
    role = tmp_path / 'roles' / 'probe'
    for sub, text in (('defaults', ROLE_DEFAULTS), ('vars', ROLE_VARS), ('tasks', ROLE_TASKS)):
        (role / sub).mkdir(parents=True, exist_ok=True)
        (role / sub / 'main.yml').write_text(text, encoding='utf-8')
    (tmp_path / 'inventory.yml').write_text(INVENTORY.format(python=sys.executable), encoding='utf-8')
    (tmp_path / 'play.yml').write_text(PLAYBOOK, encoding='utf-8')
    out = tmp_path / 'described.json'
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_root(), ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCALHOST_WARNING='false', ANSIBLE_ROLES_PATH=str(tmp_path / 'roles'))
    completed = subprocess.run([str(Path(sys.executable).parent / 'ansible-playbook'), '-i', str(tmp_path / 'inventory.yml'),
                                str(tmp_path / 'play.yml'), '-e', 'out={0}'.format(out), *options],
                               env=env, capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path)
    return completed, json.loads(out.read_text(encoding='utf-8')) if out.exists() else None


def assert_resolved(completed, described):
    assert described is not None, completed.stdout + completed.stderr
    # each host in its own context: its inventory name, its own override of a role default, the play's hosts only
    assert described['projects'] == [
        {'key': 'group/one', 'project_path': 'group/one', 'branch': 'main'},
        {'key': 'group/two', 'project_path': 'group/two', 'branch': 'develop'},
    ]
    assert list(described['failed_hosts']) == ['group/broken']
    assert 'not_defined_anywhere' in described['failed_hosts']['group/broken']
    assert described['changed'] is False
    # the broken host fails on its own outcome, with its own message; the others are fine
    assert 'group/broken' in completed.stdout and 'not_defined_anywhere' in completed.stdout
    recap = {line.split()[0]: line for line in completed.stdout.splitlines() if ' : ok=' in line}
    assert 'failed=1' in recap['group/broken']
    assert 'failed=0' in recap['group/one'] and 'failed=0' in recap['group/two']
    assert 'group/skipped' not in recap


def test_each_host_resolved_in_its_own_context(tmp_path):
    completed, described = run(tmp_path)
    assert completed.returncode == 2, completed.stdout + completed.stderr  # one host failed
    assert_resolved(completed, described)


def test_check_mode_resolves_the_same(tmp_path):
    completed, described = run(tmp_path, '--check')
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert_resolved(completed, described)


AGREE_INVENTORY = textwrap.dedent('''\
    all:
      vars:
        ansible_connection: local
        ansible_python_interpreter: {python}
        my_scope: /subscriptions/s/resourceGroups/rg
      hosts:
        group/plain: {{}}
        group/tuned:
          gitlab_oidc_project_id: 42
          gitlab_oidc_branches: [main, develop]
          gitlab_oidc_any_ref: "yes"
          gitlab_oidc_role_assignments:
            - role: Reader
              scope: "{{{{ my_scope }}}}"
          gitlab_oidc_gitlab_token: a-secret-token
    ''')
AGREE_TASKS = textwrap.dedent('''\
    - name: The role's composite (per_host's project)
      oidc_federation.azure.gitlab_oidc_play_projects:
        variable: __gitlab_oidc_project
      register: composite
      run_once: true

    - name: Field by field (bulk's project)
      oidc_federation.azure.gitlab_oidc_play_projects:
        variable_prefix: gitlab_oidc_
      register: fields
      run_once: true

    - name: Keep both
      ansible.builtin.copy:
        content: "{{ {'composite': composite.projects, 'fields': fields.projects} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
      run_once: true
      delegate_to: localhost
    ''')


def test_field_by_field_agrees_with_the_roles_composite(tmp_path):
    """bulk (variable_prefix) and per_host (the role's __gitlab_oidc_project) describe the same project, from the
    real role's defaults and vars, with overrides, templates and a lookup; the GitLab token is in neither."""
    role = tmp_path / 'roles' / 'agree'
    for sub in ('defaults', 'vars'):
        (role / sub).mkdir(parents=True)
        (role / sub / 'main.yml').write_text((ROOT / 'roles' / 'gitlab_oidc' / sub / 'main.yml').read_text(encoding='utf-8'),
                                             encoding='utf-8')
    (role / 'tasks').mkdir()
    (role / 'tasks' / 'main.yml').write_text(AGREE_TASKS, encoding='utf-8')
    (tmp_path / 'inventory.yml').write_text(AGREE_INVENTORY.format(python=sys.executable), encoding='utf-8')
    (tmp_path / 'play.yml').write_text('- hosts: all\n  gather_facts: false\n  roles: [agree]\n', encoding='utf-8')
    out = tmp_path / 'both.json'
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_root(), ANSIBLE_NOCOLOR='1', AZURE_SUBSCRIPTION_ID='sub-from-env',
               ANSIBLE_LOCALHOST_WARNING='false', ANSIBLE_ROLES_PATH=str(tmp_path / 'roles'))
    completed = subprocess.run([str(Path(sys.executable).parent / 'ansible-playbook'), '-i', str(tmp_path / 'inventory.yml'),
                                str(tmp_path / 'play.yml'), '-e', 'out={0}'.format(out)],
                               env=env, capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    both = json.loads(out.read_text(encoding='utf-8'))
    assert both['fields'] == both['composite']
    tuned = both['fields'][1]
    assert tuned['key'] == 'group/tuned' and tuned['project_path'] == 'group/tuned' and tuned['project_id'] == 42
    assert tuned['branches'] == ['main', 'develop'] and tuned['subscription_id'] == 'sub-from-env'
    assert tuned['role_assignments'] == [{'role': 'Reader', 'scope': '/subscriptions/s/resourceGroups/rg'}]
    assert 'a-secret-token' not in out.read_text(encoding='utf-8')
