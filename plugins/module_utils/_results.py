# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""Per-project result files: ``gitlab_oidc_projects`` writes one per project, the ``gitlab_oidc_result`` action reads
the one of its host. Standard library only (the action plugin imports it on the controller)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any, Mapping, Optional, Union


def result_file(directory: str, key: str) -> str:
    """Where the entry of ``key`` lives: ``<directory>/<sha256 of key>.json``."""
    return os.path.join(directory, hashlib.sha256(key.encode('utf-8')).hexdigest() + '.json')


def atomic_write(path: str, text: Union[str, bytes], *, prefix: str, mode: Optional[int] = None) -> None:
    """Write ``text`` (str: as UTF-8; or bytes) to ``path`` through a temporary file in the same directory
    (``mkstemp``: mode 0600, or ``mode``), renamed over ``path``; the temporary file is removed when anything fails."""
    handle, temp = tempfile.mkstemp(dir=os.path.dirname(path) or '.', prefix=prefix)
    try:
        with (os.fdopen(handle, 'wb') if isinstance(text, bytes) else os.fdopen(handle, 'w', encoding='utf-8')) as out:
            out.write(text)
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def failed_entry(project_path: Optional[str], msg: str) -> dict:
    """The entry of a project that failed before its reconciliation (its input could not be parsed or resolved)."""
    return {'failed': True, 'changed': False, 'msg': msg, 'warnings': [],
            'result': {'project_path': project_path, 'status': 'failed', 'changed': False, 'msg': msg,
                       'credentials': [], 'role_assignments': []}}


def write_results(directory: str, results: Mapping[str, Any]) -> None:
    """One JSON file per project entry (mode 0600), each replaced atomically."""
    if not os.path.isdir(directory):
        raise OSError('{0} is not a directory'.format(directory))
    for key, entry in results.items():
        atomic_write(result_file(directory, key), json.dumps(dict(entry, key=key)), prefix='.result-')


def read_result(directory: str, key: str) -> dict:
    """The entry of ``key`` (``OSError`` when there is none, ``ValueError`` when it is not one)."""
    with open(result_file(directory, key), encoding='utf-8') as handle:
        entry = json.load(handle)
    if not isinstance(entry, dict) or entry.get('key') != key:
        raise ValueError('{0} does not hold the result of {1}'.format(result_file(directory, key), key))
    return entry
