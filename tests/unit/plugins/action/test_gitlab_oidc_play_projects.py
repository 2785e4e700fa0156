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

from ansible_collections.oidc_federation.azure.plugins.module_utils._project_options import PROJECT_OPTIONS

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
    - name: Field by field, for one call (bulk)
      oidc_federation.azure.gitlab_oidc_play_projects:
        variable_prefix: gitlab_oidc_
      register: one
      run_once: true

    - name: Field by field, for a call per host (per_host)
      oidc_federation.azure.gitlab_oidc_play_projects:
        variable_prefix: gitlab_oidc_
        calls: per_host
      register: each
      run_once: true

    - name: Each host takes its own project, as the role's per_host task does
      ansible.builtin.set_fact:
        own: "{{ each.projects[each.project_index[inventory_hostname]] }}"

    - name: Keep them
      ansible.builtin.copy:
        content: "{{ {'one': one.projects, 'each': each.projects, 'index': each.project_index,
                      'own': ansible_play_hosts | map('extract', hostvars, 'own') | list} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
      run_once: true
      delegate_to: localhost
    ''')


def _real_role(tmp_path, name, tasks, spec_text=None):
    """A role ``name`` with the gitlab_oidc role's defaults and vars, ``tasks``, and (with ``spec_text``) that argument
    spec."""
    role = tmp_path / 'roles' / name
    files = {'defaults/main.yml': (ROOT / 'roles' / 'gitlab_oidc' / 'defaults' / 'main.yml').read_text(encoding='utf-8'),
             'vars/main.yml': (ROOT / 'roles' / 'gitlab_oidc' / 'vars' / 'main.yml').read_text(encoding='utf-8'),
             'tasks/main.yml': tasks}
    if spec_text is not None:
        files['meta/argument_specs.yml'] = spec_text
    for relative, text in files.items():
        (role / relative).parent.mkdir(parents=True, exist_ok=True)
        (role / relative).write_text(text, encoding='utf-8')


def test_both_strategies_get_every_field_of_the_project(tmp_path):
    """bulk (calls=one) and per_host (calls=per_host, each host its own project through project_index) get the same
    projects, from the real role's defaults and vars, with overrides, templates and a lookup: every field of the
    module's projects option but the secrets (the GitLab token is in none)."""
    _real_role(tmp_path, 'agree', AGREE_TASKS)
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
    assert both['each'] == both['one'] == both['own']
    assert both['index'] == {'group/plain': 0, 'group/tuned': 1}
    plain, tuned = both['one']
    # every field the module takes, but the secrets, from the role's defaults (so the module's defaults never apply)
    expected_fields = {'key'} | {name for name, spec in PROJECT_OPTIONS.items() if not spec.get('no_log')}
    assert set(plain) == set(tuned) == expected_fields
    assert plain['project_path'] == 'group/plain' and plain['state'] == 'present' and plain['issuer'] == 'https://gitlab.com'
    assert tuned['key'] == 'group/tuned' and tuned['project_path'] == 'group/tuned' and tuned['project_id'] == 42
    assert tuned['branches'] == ['main', 'develop'] and tuned['subscription_id'] == 'sub-from-env'
    assert tuned['any_ref'] == 'yes'  # as the variable holds it: the module converts the types
    assert tuned['role_assignments'] == [{'role': 'Reader', 'scope': '/subscriptions/s/resourceGroups/rg'}]
    assert 'a-secret-token' not in out.read_text(encoding='utf-8')


VALIDATE_INVENTORY = textwrap.dedent('''\
    all:
      vars:
        ansible_connection: local
        ansible_python_interpreter: {python}
      hosts:
        group/good:
          gitlab_oidc_branches: [main, develop]
        group/bad-bool:
          gitlab_oidc_any_ref: maybe
        group/bad-list:
          gitlab_oidc_branches: {{not: a list}}
        group/bad-choice:
          gitlab_oidc_sub_claim_components: [project_path, nope]
        group/bad-setting:
          gitlab_oidc_concurrency: lots
    ''')
VALIDATE_TASKS = textwrap.dedent('''\
    - name: Results directory
      ansible.builtin.tempfile:
        state: directory
      register: results
      run_once: true
      check_mode: false

    - name: Validate and describe, as the role does
      oidc_federation.azure.gitlab_oidc_play_projects:
        argument_spec_file: "{{ role_path }}/meta/argument_specs.yml"
        variable_prefix: gitlab_oidc_
        describe: "{{ describe | default(false) }}"
        calls: "{{ calls | default('one') }}"
        results_dir: "{{ results.path }}"
      register: described
      run_once: true

    - name: Keep what it returned, with the result files
      ansible.builtin.copy:
        content: "{{ {'described': described, 'files': query('ansible.builtin.file', *query('ansible.builtin.fileglob',
                     results.path ~ '/*.json')) | map('from_json') | list} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
      run_once: true
      check_mode: false
    ''')


def _validation_role(tmp_path, spec_text=None):
    """The real role's defaults, vars and argument spec, with tasks that validate (and describe) every host."""
    _real_role(tmp_path, 'checked', VALIDATE_TASKS,
               spec_text or (ROOT / 'roles' / 'gitlab_oidc' / 'meta' / 'argument_specs.yml').read_text(encoding='utf-8'))


def _play(tmp_path, play, inventory_text, *options):
    (tmp_path / 'inventory.yml').write_text(inventory_text.format(python=sys.executable), encoding='utf-8')
    (tmp_path / 'play.yml').write_text(play, encoding='utf-8')
    out = tmp_path / 'out.json'
    out.unlink(missing_ok=True)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_root(), ANSIBLE_NOCOLOR='1', AZURE_SUBSCRIPTION_ID='sub-from-env',
               ANSIBLE_LOCALHOST_WARNING='false', ANSIBLE_ROLES_PATH=str(tmp_path / 'roles'), ANSIBLE_CALLBACK_RESULT_FORMAT='json',
               ANSIBLE_CALLBACK_FORMAT_PRETTY='false', PYTHONHASHSEED='0')  # the same order of a set in a message
    completed = subprocess.run([str(Path(sys.executable).parent / 'ansible-playbook'), '-i', str(tmp_path / 'inventory.yml'),
                                str(tmp_path / 'play.yml'), '-e', 'out={0}'.format(out), *options],
                               env=env, capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path)
    return completed, json.loads(out.read_text(encoding='utf-8')) if out.exists() else None


IMPORTED = textwrap.dedent('''\
    - hosts: all
      gather_facts: false
      tasks:
        - name: The role, without Ansible's automatic validation
          ansible.builtin.import_role:
            name: checked
            rolespec_validate: false
          vars:
            gitlab_oidc_state: present
    ''')


def test_validation_agrees_with_ansibles_automatic_role_validation(tmp_path):
    """Every host validated against the real role's spec in one task: the same hosts fail with the same messages as
    Ansible's own validation of the role (roles:, one validation task per host); each invalid host gets its failed
    result file and is left out of the projects; the others are described."""
    _validation_role(tmp_path)
    automatic_play = IMPORTED.replace('rolespec_validate: false', 'rolespec_validate: true')
    automatic = _play(tmp_path, automatic_play, VALIDATE_INVENTORY)[0]
    assert automatic.returncode == 2 and 'Validating arguments against arg spec' in automatic.stdout, automatic.stdout
    expected = {}  # "fatal: [host]: FAILED! => {...}", one line each (result format json, not pretty)
    for line in automatic.stdout.splitlines():
        if line.startswith('fatal: ['):
            expected[line[len('fatal: ['):line.index(']')]] = json.loads(line[line.index(' => ') + 4:])['msg']
    assert sorted(expected) == ['group/bad-bool', 'group/bad-choice', 'group/bad-list', 'group/bad-setting'], expected

    for options in ((), ('-e', 'describe=true'), ('-e', 'describe=true', '-e', 'calls=per_host')):
        completed, kept = _play(tmp_path, IMPORTED, VALIDATE_INVENTORY, *options)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert 'Validating arguments against arg spec' not in completed.stdout
        described = kept['described']
        assert described['failed_hosts'] == expected
        files = {entry['key']: entry for entry in kept['files']}
        assert sorted(files) == sorted(expected)
        assert all(files[h]['failed'] and files[h]['result']['msg'] == expected[h] for h in expected)
        if options:  # described field by field, the invalid hosts left out
            assert [p['key'] for p in described['projects']] == ['group/good']
            assert described['projects'][0]['branches'] == ['main', 'develop']
            assert described['projects'][0]['subscription_id'] == 'sub-from-env'
            assert described['project_index'] == {'group/good': 0}
        else:  # validation only
            assert described['projects'] == [] and 'project_index' not in described


def test_invalid_settings_of_the_host_that_runs_the_call_fail_the_run(tmp_path):
    """bulk: the call's own settings (not a project's fields) come from the host that runs it; if they are invalid
    no project can be reconciled, so the task fails with them (on a later host they fail that host only)."""
    _validation_role(tmp_path)
    inventory = VALIDATE_INVENTORY.replace('    group/good:\n', '    group/first:\n      gitlab_oidc_graph_pacing: often\n'
                                           '    group/good:\n', 1)
    assert 'group/first' in inventory
    completed, kept = _play(tmp_path, IMPORTED, inventory, '-e', 'describe=true')
    assert completed.returncode == 2 and kept is None, completed.stdout + completed.stderr
    fatal = [line for line in completed.stdout.splitlines() if line.startswith('fatal: [group/first]')]
    message = json.loads(fatal[0][fatal[0].index(' => ') + 4:])['msg']
    assert message.startswith('The settings of this run, taken from host group/first'), message
    assert 'gitlab_oidc_graph_pacing' in message and 'gitlab_oidc_concurrency' not in message and 'Fix:' in message
    recap = {line.split()[0]: line for line in completed.stdout.splitlines() if ' : ok=' in line}
    assert all('failed=1' in line for line in recap.values()), recap
    # a call per host (per_host), or validation only: each host runs its own call, so the same host fails alone
    for options in (('-e', 'describe=true', '-e', 'calls=per_host'), ()):
        completed, kept = _play(tmp_path, IMPORTED, inventory, *options)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        assert 'gitlab_oidc_graph_pacing' in kept['described']['failed_hosts']['group/first']
        if options:
            assert [p['key'] for p in kept['described']['projects']] == ['group/good']


def test_a_no_log_value_never_reaches_a_validation_message(tmp_path):
    """Ansible's validator puts a value that cannot be converted in its message; a no_log option's value is masked."""
    spec = json.dumps({'argument_specs': {'main': {'options': {
        'probe_secret': {'type': 'int', 'no_log': True, 'description': 'a secret'},
        'gitlab_oidc_gitlab_token': {'type': 'int', 'description': 'the project secret, no_log in the module'}}}}})
    _validation_role(tmp_path, spec)
    inventory = VALIDATE_INVENTORY.replace('gitlab_oidc_branches: [main, develop]',
                                           'probe_secret: s3cret-value\n      gitlab_oidc_gitlab_token: t0ken-value', 1)
    assert 't0ken-value' in inventory
    completed, kept = _play(tmp_path, IMPORTED, inventory)  # validation only: the host fails alone
    assert completed.returncode == 0, completed.stdout + completed.stderr
    message = kept['described']['failed_hosts']['group/good']
    assert 'probe_secret' in message and 'gitlab_oidc_gitlab_token' in message, message
    assert 's3cret-value' not in json.dumps(kept) and 't0ken-value' not in json.dumps(kept)
