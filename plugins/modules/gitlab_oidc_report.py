#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: gitlab_oidc_report
short_description: Report every GitLab project of a gitlab_oidc_projects run in one task
version_added: 0.2.0
description:
  - Gathers the outcome of every project of the play after M(oidc_federation.azure.gitlab_oidc_projects) ran with
    C(results_dir), summarises them (projects, changed, failed), and returns the report as RV(report). With
    O(report_dir) it also writes it there as C(<report_name>.json) and, with O(markdown_template), as
    C(<report_name>.md); with O(stats) it publishes it as a custom statistic of the run (what
    M(ansible.builtin.set_stats) does; AWX and AAP keep it as the job's artifacts).
  - Run it once for the play (C(run_once)). It replaces a chain of run-once tasks (read the outcomes, collect, summarise,
    publish, write twice) - each run-once task costs about a second at 1,000 hosts. The
    P(oidc_federation.azure.gitlab_oidc#role) role writes its report with it.
  - An action that runs on the controller without a module process; the files are written on the controller.
  - 'Where each host''s project comes from, in this order: its entry in O(results_dir) (a host of this batch that reached
    the module, or whose variables M(oidc_federation.azure.gitlab_oidc_play_projects) found invalid, failed ones
    included); the fact O(fact) of a host of an earlier batch (with C(serial)) still in the play; the entry for the
    host in the result it registered as O(registered); else a failed placeholder named after the host''s
    O(project_path_variable) (a host that never reached the module, for example one that failed an earlier task).'
options:
  results_dir:
    description:
      - The C(results_dir) given to M(oidc_federation.azure.gitlab_oidc_projects) in this run, on the controller.
    type: path
    required: true
  hosts:
    description:
      - The hosts to report, in this order (one project each, the host name being the project's key).
      - Defaults to every host of the play (C(ansible_play_hosts_all)), failed ones included.
    type: list
    elements: str
  state:
    description:
      - Whether the run onboarded (V(present)) or offboarded (V(absent)); the Markdown report differs.
    type: str
    choices: [present, absent]
    default: present
  fact:
    description:
      - The fact that holds a host's outcome (set by M(oidc_federation.azure.gitlab_oidc_result)).
    type: str
    default: gitlab_oidc_result
  registered:
    description:
      - Name of the variable in which each host registered its M(oidc_federation.azure.gitlab_oidc_projects) call;
        its C(projects) entry for the host is used when the host has neither a result file nor the fact.
    type: str
  project_path_variable:
    description:
      - Name of the host variable that holds the project's path, to name a host that never reached the module.
        Without it, or when it is undefined, the host name is used.
    type: str
  report_dir:
    description:
      - Write the report into this directory (created with mode 0755 if missing) on the controller. The files are
        rewritten at every run, in check mode too (name them apart with O(report_name)), and never count as a change.
    type: path
  report_name:
    description:
      - File name of the report without its extension.
    type: str
    default: report
  markdown_template:
    description:
      - Jinja2 template of the Markdown report, found like the template of M(ansible.builtin.template) (the role's
        C(templates) directory first). It gets the variables C(report) (RV(report)) and C(report_name).
      - Requires O(report_dir).
    type: path
  stats:
    description:
      - Publish the report as the custom statistic of this name (not per host, not aggregated). An empty string
        publishes nothing.
    type: str
    default: gitlab_oidc_report
  generator:
    description:
      - The name written into the report as its C(generator).
    type: str
    default: oidc_federation.azure.gitlab_oidc
author:
  - oidc_federation.azure contributors (@oidc-federation)
attributes:
  check_mode:
    support: full
    details:
      - Writes the report in check mode too (the outcomes are then predictions; the report says so in C(check_mode)).
  diff_mode:
    support: none
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  platform:
    platforms: all
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
notes:
  - It never reports a change. It fails when a result file cannot be read or the report cannot be written.
'''

EXAMPLES = r'''
- name: Reconcile every project of the play in one call
  oidc_federation.azure.gitlab_oidc_projects:
    projects: "{{ my_projects }}"
    continue_on_error: true
    results_dir: "{{ results.path }}"
  run_once: true
  delegate_to: localhost

- name: Give each host its project's outcome
  oidc_federation.azure.gitlab_oidc_result:
    results_dir: "{{ results.path }}"

- name: Report every project once, as files and as the run's statistics
  oidc_federation.azure.gitlab_oidc_report:
    results_dir: "{{ results.path }}"
    report_dir: /var/tmp/gitlab-oidc
    report_name: onboarding
  register: onboarding
  run_once: true
  delegate_to: localhost

- name: With serial, a host that failed before the module, and the Markdown of a template of its own
  oidc_federation.azure.gitlab_oidc_report:
    results_dir: "{{ results.path }}"
    hosts: "{{ ansible_play_hosts_all }}"
    state: absent
    fact: gitlab_oidc_result
    registered: my_call
    project_path_variable: my_project_path
    report_dir: /var/tmp/gitlab-oidc
    report_name: offboarding
    markdown_template: my_report.md.j2
    stats: offboarding_report
    generator: my_team.platform.offboard
  run_once: true
  delegate_to: localhost

- name: Say how it went
  ansible.builtin.debug:
    msg: "{{ onboarding.report.summary.failed }} of {{ onboarding.report.summary.projects }} project(s) failed"
  run_once: true
'''

RETURN = r'''
report:
  description: The report.
  returned: success
  type: dict
  contains:
    generated_at:
      description: When, in UTC (C(YYYY-MM-DDThh:mm:ssZ)).
      type: str
    generator:
      description: O(generator).
      type: str
    state:
      description: O(state).
      type: str
    check_mode:
      description: Whether the run was in check mode.
      type: bool
    summary:
      description: C(projects), C(changed) and C(failed), counts.
      type: dict
    projects:
      description:
        - One entry per host of O(hosts), in that order - the project's result as
          M(oidc_federation.azure.gitlab_oidc_projects) returns it, with C(host) added.
      type: list
      elements: dict
files:
  description: The files written, Markdown first.
  returned: success
  type: list
  elements: str
'''
