#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: gitlab_oidc_result
short_description: Give an inventory host the outcome of its GitLab project from a gitlab_oidc_projects run
version_added: 0.2.0
description:
  - Sets the outcome of one project of an M(oidc_federation.azure.gitlab_oidc_projects) run as a fact of the host
    (by default C(gitlab_oidc_result)), and reports the project's own C(changed) and C(failed) status, so that the
    recap of a play that reconciled every project in one task (the role's C(bulk) strategy) still shows each project
    on its host.
  - An action that runs on the controller without a module process - as cheap per host as M(ansible.builtin.set_fact).
  - It reads the host's entry from the O(results_dir) the module wrote, or takes it from O(outcome).
options:
  results_dir:
    description:
      - The C(results_dir) given to M(oidc_federation.azure.gitlab_oidc_projects), on the controller.
      - Exactly one of O(results_dir) and O(outcome) is required.
    type: path
  outcome:
    description:
      - One entry of the C(projects) result of M(oidc_federation.azure.gitlab_oidc_projects) (C(result), C(changed),
        C(failed), C(msg)).
    type: dict
  key:
    description:
      - The project's key. Defaults to the inventory host name (the role's keys).
    type: str
  fact:
    description:
      - Name of the fact to set.
    type: str
    default: gitlab_oidc_result
author:
  - oidc_federation.azure contributors (@oidc-federation)
attributes:
  check_mode:
    support: full
    details:
      - Sets the fact in check mode too (the outcome is then the prediction).
  diff_mode:
    support: full
    details:
      - Shows the project's diff (from a module run in diff mode).
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  facts:
    support: full
  platform:
    platforms: all
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - ansible.builtin.action_common_attributes.facts
notes:
  - The task fails, with the project's message, when the project failed.
'''

EXAMPLES = r'''
- name: Reconcile every project of the play in one call
  oidc_federation.azure.gitlab_oidc_projects:
    projects: "{{ ansible_play_hosts | map('extract', hostvars, 'my_project') | list }}"
    continue_on_error: true
    results_dir: "{{ results.path }}"
  run_once: true
  delegate_to: localhost

- name: Give each host its project's outcome (fails the hosts whose project failed)
  oidc_federation.azure.gitlab_oidc_result:
    results_dir: "{{ results.path }}"
    key: "{{ inventory_hostname }}"
    fact: gitlab_oidc_result

- name: From a registered result instead of files
  oidc_federation.azure.gitlab_oidc_result:
    outcome: "{{ onboarding.projects['mygroup/web-app'] }}"
'''

RETURN = r'''
ansible_facts:
  description: The fact named O(fact), holding the project's C(result).
  returned: success
  type: dict
'''
