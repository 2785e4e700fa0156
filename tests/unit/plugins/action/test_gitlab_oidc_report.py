# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The gitlab_oidc_report action, run by ansible-playbook: every project of the play in one task, each from where its
outcome is (result file, fact of an earlier batch, registered call, else a placeholder), written as JSON and as the
role's Markdown, published as the run's statistics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
TEMPLATE = ROOT / 'roles' / 'gitlab_oidc' / 'templates' / 'report.md.j2'

INVENTORY = textwrap.dedent('''\
    all:
      vars:
        ansible_connection: local
        ansible_python_interpreter: {python}
      hosts:
        grp/a: {{}}
        grp/b: {{}}
        grp/c: {{}}
        grp/d: {{}}
        grp/e:
          proj_path: grp/e-path
    ''')

PLAYBOOK = textwrap.dedent('''\
    - hosts: all
      gather_facts: false
      tasks:
        - name: Results directory
          ansible.builtin.tempfile:
            state: directory
          register: results
          run_once: true
          delegate_to: localhost
          check_mode: false

        - name: Result files of this batch (a changed, b failed)
          ansible.builtin.copy:
            dest: "{{ results.path }}/{{ inventory_hostname | hash('sha256') }}.json"
            content: "{{ entries[inventory_hostname] | to_json }}"
            mode: "0600"
          vars:
            entries:
              grp/a: {key: grp/a, changed: true, result: {project_path: grp/a, status: ok, changed: true, client_id: id-a,
                                              credentials: [{subject: "project_path:grp/a:ref_type:branch:ref:main"}],
                                              role_assignments: [{role: Reader, scope: /subscriptions/s}]}}
              grp/b: {key: grp/b, failed: true, msg: b broke, result: {project_path: grp/b, status: failed, changed: false,
                                                           msg: "b | broke", credentials: [], role_assignments: []}}
          when: inventory_hostname in ['grp/a', 'grp/b']
          check_mode: false

        - name: b fails (it leaves ansible_play_batch; its result file is still read)
          ansible.builtin.fail:
            msg: b left the batch
          when: inventory_hostname == 'grp/b'

        - name: An earlier batch's outcome (c)
          ansible.builtin.set_fact:
            gitlab_oidc_result: {project_path: grp/c, status: ok, changed: false, client_id: id-c}
          when: inventory_hostname == 'grp/c'

        - name: A call that failed before it wrote its files (d)
          ansible.builtin.set_fact:
            call: {projects: {grp/d: {result: {project_path: grp/d, status: failed, changed: false, msg: from the call}}}}
          when: inventory_hostname == 'grp/d'

        - name: Report
          oidc_federation.azure.gitlab_oidc_report:
            results_dir: "{{ results.path }}"
            registered: call
            project_path_variable: proj_path
            report_dir: "{{ report_dir }}"
            report_name: "{{ 'onboarding-check' if ansible_check_mode else 'onboarding' }}"
            markdown_template: "{{ template }}"
          register: reported
          run_once: true
          delegate_to: localhost

        - name: Keep what it returned
          ansible.builtin.copy:
            content: "{{ reported | to_json }}"
            dest: "{{ out }}"
            mode: "0600"
          run_once: true
          delegate_to: localhost
          check_mode: false
    ''')


def collections_root():
    return subprocess.run(['bash', str(ROOT / 'scripts' / 'collection-root.sh')], capture_output=True, text=True,
                          check=True).stdout.strip()


def run(tmp_path, report_dir, *options):
    (tmp_path / 'inventory.yml').write_text(INVENTORY.format(python=sys.executable), encoding='utf-8')
    (tmp_path / 'play.yml').write_text(PLAYBOOK, encoding='utf-8')
    out = tmp_path / 'reported.json'
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_root(), ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCALHOST_WARNING='false', ANSIBLE_SHOW_CUSTOM_STATS='1')
    completed = subprocess.run([str(Path(sys.executable).parent / 'ansible-playbook'), '-i', str(tmp_path / 'inventory.yml'),
                                str(tmp_path / 'play.yml'), '-e', 'out={0}'.format(out), '-e', 'report_dir={0}'.format(report_dir),
                                '-e', 'template={0}'.format(TEMPLATE), *options],
                               env=env, capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path)
    return completed, json.loads(out.read_text(encoding='utf-8')) if out.exists() else None


def assert_report(completed, reported, report_dir, name, check_mode):
    assert completed.returncode == 2 and reported is not None, completed.stdout + completed.stderr  # grp/b failed
    recap = {line.split()[0]: line for line in completed.stdout.splitlines() if ' : ok=' in line}
    assert 'failed=1' in recap['grp/b'] and all('failed=0' in recap[h] for h in recap if h != 'grp/b'), recap
    report = reported['report']
    assert reported['changed'] is False
    assert report['check_mode'] is check_mode and report['state'] == 'present'
    assert report['summary'] == {'projects': 5, 'changed': 1, 'failed': 3}, report['summary']
    by_host = {p['host']: p for p in report['projects']}
    assert [p['host'] for p in report['projects']] == ['grp/a', 'grp/b', 'grp/c', 'grp/d', 'grp/e']
    assert by_host['grp/a']['client_id'] == 'id-a' and by_host['grp/a']['changed'] is True  # its result file
    assert by_host['grp/b']['status'] == 'failed' and by_host['grp/b']['msg'] == 'b | broke'  # its file, failed host
    assert by_host['grp/c']['client_id'] == 'id-c'                                         # the fact (earlier batch)
    assert by_host['grp/d']['msg'] == 'from the call'                                      # the registered call
    assert by_host['grp/e'] == {'host': 'grp/e', 'project_path': 'grp/e-path', 'status': 'failed', 'changed': False,
                                'credentials': [], 'role_assignments': []}                 # never reached the module
    assert reported['files'] == [str(report_dir / (name + '.md')), str(report_dir / (name + '.json'))]
    assert json.loads((report_dir / (name + '.json')).read_text(encoding='utf-8')) == report
    markdown = (report_dir / (name + '.md')).read_text(encoding='utf-8')
    assert '5 project(s),\n1 changed, 3 failed. Machine-readable: `{0}.json`.'.format(name) in markdown
    assert '| `grp/a` | ok | yes | `id-a` |' in markdown and '`project_path:grp/a:ref_type:branch:ref:main`' in markdown
    assert 'Reader @ `/subscriptions/s`' in markdown
    assert '- `grp/b`: b \\| broke' in markdown  # a failure, its message escaped for the table syntax
    assert ('check mode: nothing was changed' in markdown) is check_mode
    assert 'gitlab_oidc_report' in completed.stdout and '"failed": 3' in completed.stdout  # the run's custom statistics


def test_every_project_reported_once(tmp_path):
    report_dir = tmp_path / 'report' / 'nested'
    completed, reported = run(tmp_path, report_dir)
    assert_report(completed, reported, report_dir, 'onboarding', False)
    assert oct(report_dir.stat().st_mode & 0o777) == '0o755'
    assert oct((report_dir / 'onboarding.json').stat().st_mode & 0o777) == '0o644'


def test_check_mode_writes_its_own_report(tmp_path):
    report_dir = tmp_path / 'report'
    completed, reported = run(tmp_path, report_dir, '--check')
    assert_report(completed, reported, report_dir, 'onboarding-check', True)
    assert not (report_dir / 'onboarding.json').exists()


def test_unwritable_report_dir_fails_with_the_fix(tmp_path):
    blocker = tmp_path / 'a-file'
    blocker.write_text('', encoding='utf-8')
    completed, reported = run(tmp_path, blocker / 'report')
    assert completed.returncode == 2 and reported is None, completed.stdout + completed.stderr
    assert 'report_dir: cannot write the report to {0}'.format(blocker / 'report') in completed.stdout
    assert 'Fix: give a writable directory' in completed.stdout
