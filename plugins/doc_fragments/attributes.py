# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Module attributes (check mode, diff mode, action group).

    Use ``oidc_federation.azure.attributes`` (descriptions) with one of ``.changes`` or ``.info_module``, plus
    ``.action_group``. A module overrides ``support``/``details`` in its own ``attributes:`` when they differ.
    """

    # Descriptions of the attributes; the variants below set their support.
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return the changed status it predicts without modifying Azure.
  diff_mode:
    description: Returns the object before and after the change (or as it would be changed in check mode) in diff mode.
'''

    # A module that writes to Entra ID or Azure and predicts its changes locally from what it reads first.
    CHANGES = r'''
options: {}
attributes:
  check_mode:
    support: full
    details:
      - The module reads the current state and reports what it would change, without writing anything.
  diff_mode:
    support: full
'''

    # A read-only (``*_info``) module.
    INFO_MODULE = r'''
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This module only reads, and works the same in check mode.
  diff_mode:
    support: N/A
    details:
      - This module only reads.
'''

    ACTION_GROUP = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/oidc_federation.azure.azure) in C(module_defaults) to set the shared options of all modules at once.
    support: full
    membership:
      - oidc_federation.azure.azure
'''
