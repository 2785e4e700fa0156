#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: gitlab_oidc_play_projects
short_description: Validate and resolve every GitLab project of the play, each in its own host's context, in one task
version_added: 0.2.0
description:
  - Resolves the GitLab project of every host of the play (one variable, or field by field from the host's
    C(<prefix><field>) variables, as the P(oidc_federation.azure.gitlab_oidc#role) role does), each with that host's
    variables as one of its own tasks would see them (inventory, play, role defaults and vars, facts), and returns
    them as a list for one
    M(oidc_federation.azure.gitlab_oidc_projects) call, or, with O(calls=per_host), for a call per host that takes its
    own project from the list (RV(project_index)).
  - The role's two strategies both take their projects from here (C(bulk) all of them, C(per_host) each host its own),
    so a project is built by one piece of code whichever the strategy. Each task of a host that reads its project from
    the registered result costs about what templating the project field by field in that task would (measured at
    1,000 hosts; docs/benchmarks.md).
  - Run it once for the play (C(run_once)). It replaces a C(set_fact) on every host followed by
    C(hostvars) lookups - at 1,000 hosts that is 1,000 forked worker processes, about 20 seconds, against a few seconds here
    (docs/benchmarks.md). The role's C(bulk) strategy uses it.
  - An action that runs on the controller without a module process. It reads the variables through the play's
    variable manager, the way Ansible's strategy does for every task.
  - With O(argument_spec_file) it first validates every host's variables against a role's argument spec, as Ansible's
    automatic validation of a role's arguments does (the options of the spec found in the host's variables, templated,
    checked by the same validator, failing with the same message), but in this one task instead of a forked task per
    host - about 22 seconds at 1,000 hosts. The P(oidc_federation.azure.gitlab_oidc#role) role validates its hosts with
    it, so that a play can import the role with C(rolespec_validate=false) (the sample playbooks do). An invalid host is
    left out of the projects and fails on its own. Values of C(no_log) options (and the projects' secrets) are masked in
    the messages.
  - A host whose variables cannot be resolved (an undefined variable, a failing lookup) or are invalid does not stop
    the others. With O(results_dir) its failure is written there as that project's result, for
    M(oidc_federation.azure.gitlab_oidc_result) to report on its host; without it the task fails and names the hosts.
  - 'One exception: with O(variable_prefix), O(argument_spec_file), O(describe=true) and O(calls=one), the options of
    the spec that are not a project''s fields are the settings of the one M(oidc_federation.azure.gitlab_oidc_projects)
    call that follows (concurrency, pacing, report, ...), taken from the host the task runs on (the first of the batch
    with C(run_once)). If that host''s settings are invalid, the task fails, and so every host: no project could be
    reconciled with them. With O(calls=per_host), every host''s settings are its own, and invalid ones fail that host
    only.'
options:
  variable:
    description:
      - Name of the variable that holds a host's project (one item of the C(projects) option of
        M(oidc_federation.azure.gitlab_oidc_projects)), templated for each host.
      - Exactly one of O(variable) and O(variable_prefix) is required.
      - With O(argument_spec_file), the variables that O(variable) uses are templated as usual; the options of the spec
        are validated on their own.
    type: str
  variable_prefix:
    description:
      - Build each host's project field by field instead, from the host's variables named O(variable_prefix)
        followed by the field (C(gitlab_oidc_branches) for C(branches) with V(gitlab_oidc_)), with C(key) the host's
        name. Every field of a project is taken (those whose variable is undefined are left out, so the module's
        default applies) except the secrets (C(gitlab_token)), because a described project is registered and a registered
        value is shown at C(-vvv).
      - Cheaper than O(variable) with a template that lists every field, which is compiled again for every host
        (about 5 ms each); the role's C(bulk) strategy uses V(gitlab_oidc_).
    type: str
  hosts:
    description:
      - The hosts to resolve, in this order. Defaults to the hosts of the current batch that are still running
        (C(ansible_play_batch)) - without C(serial), every host of the play still running; with C(serial), the hosts
        of this batch only, so that each batch makes its own call.
    type: list
    elements: str
  results_dir:
    description:
      - The C(results_dir) of the M(oidc_federation.azure.gitlab_oidc_projects) call that follows, on the controller.
        The hosts that cannot be resolved or are invalid get a failed entry there, so that
        M(oidc_federation.azure.gitlab_oidc_result) fails each of them with its own message.
    type: path
  argument_spec_file:
    description:
      - A role's argument spec file (its C(meta/argument_specs.yml); in a task of the role, C(role_path) followed by
        C(/meta/argument_specs.yml)) to validate every host's variables against.
      - The file is read once for the task. An error names the file or entry point that cannot be read.
    type: path
  argument_spec_entry_point:
    description:
      - The entry point of O(argument_spec_file) whose options are validated.
    type: str
    default: main
  describe:
    description:
      - Return the projects (V(true)), or only validate the hosts and return no project (V(false), for a play whose
        tasks of each host build their own project). V(false) requires O(argument_spec_file).
    type: bool
    default: true
  calls:
    description:
      - How the projects are reconciled after this task. V(one) - one M(oidc_federation.azure.gitlab_oidc_projects) call
        for the play, with every project (the role's C(bulk) strategy). V(per_host) - a call per host, each with its own
        project, C(projects[project_index[inventory_hostname]]) of the registered result (the role's C(per_host)
        strategy).
      - It decides whose settings the validation holds the run to (see the description).
    type: str
    choices: [one, per_host]
    default: one
author:
  - oidc_federation.azure contributors (@oidc-federation)
attributes:
  check_mode:
    support: full
    details:
      - Reads only; it runs the same in check mode.
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
  - It never reports a change.
  - The variables are those of the task's play and role as the strategy gives them to a task (C(get_vars) of the
    play's variable manager); the connection variables of a delegated task play no part.
'''

EXAMPLES = r'''
- name: Describe every project of the play
  oidc_federation.azure.gitlab_oidc_play_projects:
    variable: my_project          # for example defined in the play's vars or group_vars, templated per host
    results_dir: "{{ results.path }}"
  register: described
  run_once: true
  delegate_to: localhost

- name: Reconcile them in one call
  oidc_federation.azure.gitlab_oidc_projects:
    projects: "{{ described.projects }}"
    continue_on_error: true
    results_dir: "{{ results.path }}"
  run_once: true
  delegate_to: localhost

- name: Every project from the hosts' gitlab_oidc_* variables (what the role does)
  oidc_federation.azure.gitlab_oidc_play_projects:
    variable_prefix: gitlab_oidc_
  register: described_by_fields
  run_once: true

- name: In a role - validate every host against the role's argument spec, describe the valid ones (as the role does)
  oidc_federation.azure.gitlab_oidc_play_projects:
    argument_spec_file: "{{ role_path }}/meta/argument_specs.yml"
    variable_prefix: gitlab_oidc_
    results_dir: "{{ results.path }}"
  register: validated
  run_once: true

- name: Validate only (one call per host follows); the spec of another entry point of the role
  oidc_federation.azure.gitlab_oidc_play_projects:
    argument_spec_file: "{{ role_path }}/meta/argument_specs.yml"
    argument_spec_entry_point: offboard
    variable_prefix: gitlab_oidc_
    describe: false
    results_dir: "{{ results.path }}"
  register: checked
  run_once: true

- name: In a role - validate and describe every host for a call per host (the role's per_host strategy)
  oidc_federation.azure.gitlab_oidc_play_projects:
    argument_spec_file: "{{ role_path }}/meta/argument_specs.yml"
    variable_prefix: gitlab_oidc_
    calls: per_host
    results_dir: "{{ results.path }}"
  register: each
  run_once: true

- name: Reconcile each host's own project
  oidc_federation.azure.gitlab_oidc_projects:
    projects: "{{ [each.projects[each.project_index[inventory_hostname]]] }}"
    continue_on_error: true
    results_dir: "{{ results.path }}"
  delegate_to: localhost
  when: inventory_hostname not in each.failed_hosts

- name: Only the hosts of one group, in the group's order
  oidc_federation.azure.gitlab_oidc_play_projects:
    variable: my_project
    hosts: "{{ groups['team_a'] | intersect(ansible_play_hosts) }}"
  register: team_a
  run_once: true
'''

RETURN = r'''
projects:
  description: The project of each host that could be resolved, in the order of O(hosts).
  returned: always
  type: list
  elements: raw
project_index:
  description:
    - The position of each host's project in RV(projects), by host name. A task of each host takes its own project as
      C(described.projects[described.project_index[inventory_hostname]]) - one lookup, where a search of the list
      would cost every host a pass over every project.
    - The hosts of RV(failed_hosts) have none.
  returned: when O(describe=true)
  type: dict
  sample: {"mygroup/web-app": 0, "mygroup/api": 1}
failed_hosts:
  description: The hosts that could not be resolved or whose variables are invalid, with the reason.
  returned: always
  type: dict
  sample: {"mygroup/web-app": "the variables of project mygroup/web-app cannot be resolved: 'x' is undefined",
           "mygroup/api": "Validation of arguments failed:\nvalue of gitlab_oidc_state must be one of: present, absent, got: gone"}
'''
