# -*- coding: utf-8 -*-
# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters for GitLab projects: ID token ``sub`` claims, flexible expressions and application unique names.

Documented in gitlab_sub.yml, gitlab_sub_match.yml and gitlab_app_unique_name.yml; the logic lives in
``module_utils/_gitlab.py``, shared with the modules.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import ValidationError
from ansible_collections.oidc_federation.azure.plugins.module_utils._gitlab import (
    APP_UNIQUE_NAME_PREFIX,
    REF_TYPE_BRANCH,
    SubjectBuilder,
    app_unique_name,
)


def _builder(project, components, claim_values):
    """A SubjectBuilder for a project path (text with '/') or a numeric project id."""
    text = str(project) if project is not None else ''
    by_id = text.isdigit()
    if components is None and by_id:
        components = ['project_id', 'ref_type', 'ref']
    return SubjectBuilder(project_path=None if by_id else text, project_id=text if by_id else None, components=components,
                          claim_values=claim_values)


def gitlab_sub(project, ref='main', ref_type=REF_TYPE_BRANCH, components=None, claim_values=None):
    """The exact ``sub`` of a GitLab CI job's ID token for ``project`` (path or id) and one branch or tag."""
    try:
        return _builder(project, components, claim_values).sub(ref_type, ref)
    except ValidationError as exc:
        raise AnsibleFilterError('gitlab_sub: {0}'.format(exc)) from None


def gitlab_sub_match(project, ref='*', ref_type=REF_TYPE_BRANCH, any_ref=False, components=None, claim_values=None):
    """The flexible expression (or exact subject) trusting refs matching ``ref`` of ``ref_type`` (or any ref) of ``project``."""
    try:
        builder = _builder(project, components, claim_values)
        match = builder.any_ref() if any_ref else builder.ref_pattern(ref_type, ref)
    except ValidationError as exc:
        raise AnsibleFilterError('gitlab_sub_match: {0}'.format(exc)) from None
    return match.expression if match.expression is not None else match.subject


def gitlab_app_unique_name(project, prefix=APP_UNIQUE_NAME_PREFIX):
    """The application uniqueName for ``project`` (path or numeric id), as azure_ad_app derives it from gitlab_project_path/_id."""
    text = str(project) if project is not None and not isinstance(project, bool) else ''
    by_id = text.isdigit()
    try:
        return app_unique_name(project_path=None if by_id else text, project_id=text if by_id else None, prefix=prefix, field='project')
    except ValidationError as exc:
        raise AnsibleFilterError('gitlab_app_unique_name: {0}'.format(exc)) from None


class FilterModule:
    """GitLab subject builders and application unique names."""

    def filters(self):
        """Filter name -> function."""
        return {'gitlab_sub': gitlab_sub, 'gitlab_sub_match': gitlab_sub_match, 'gitlab_app_unique_name': gitlab_app_unique_name}
