# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""A module call's final result as plain data, and the exit of a module process with it.

``final_result(outcome)`` turns the outcome of a module core (``failed`` and the result dict, see
``_module.AzureModule.run_outcome``) into a JSON-serialisable dict: ``failed``, ``result`` (the keyword arguments of
``fail_json``/``exit_json``) and ``warnings``. A persistent worker sends that dict back to the module process;
``exit_with(ansible_module, final)`` ends a module process with it, as ``AzureModule.run`` does with its own.
Needs nothing but ``ansible.module_utils.basic``, so the module process of a persistent worker's call imports this
file and not the module core.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ansible.module_utils.basic import missing_required_lib


def final_result(outcome: Any, warnings: Iterable[str] = ()) -> dict:
    """The outcome of a core (an object with ``failed`` and ``result``) as plain data: ``failed``, ``result`` (with
    ``msg`` and ``exception`` for a traceback or a missing library) and the ``warnings`` to add first."""
    result = dict(outcome.result)
    if outcome.failed and 'missing_library' in result:
        lib = result.pop('missing_library')
        result['msg'] = missing_required_lib(lib.library, url=lib.url)
        result['exception'] = lib.tb or ''
    elif outcome.failed and 'traceback' in result:
        result['exception'] = result.pop('traceback')
    return {'failed': bool(outcome.failed), 'result': result, 'warnings': list(warnings)}


def exit_with(ansible_module: Any, final: Mapping[str, Any]) -> None:
    """End the module process (an ``AnsibleModule``) with ``final``: its warnings, then ``fail_json`` or
    ``exit_json`` (never returns)."""
    for message in final.get('warnings') or ():
        ansible_module.warn(message)
    result = dict(final['result'])
    if final['failed']:
        ansible_module.fail_json(**result)
    ansible_module.exit_json(**result)
