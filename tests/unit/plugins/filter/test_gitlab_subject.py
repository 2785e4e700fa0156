# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The gitlab_sub / gitlab_sub_match filters."""

from __future__ import annotations

import pytest

from ansible.module_utils import _internal as module_utils_internal

_WAS_CONTROLLER = module_utils_internal.is_controller
from ansible.errors import AnsibleFilterError  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.oidc_federation.azure.plugins.filter.gitlab_subject import (  # noqa: E402  pylint: disable=wrong-import-position
    FilterModule,
    gitlab_app_unique_name,
    gitlab_sub,
    gitlab_sub_match,
)

# Importing controller code (ansible.errors) marks the whole test process as "the controller", which makes
# AnsibleModule.warn() print instead of returning warnings in module results; undo that for the module tests that
# share this process.
module_utils_internal.is_controller = _WAS_CONTROLLER


@pytest.mark.parametrize('args,kwargs,want', [
    (('mygroup/sub/my.project-x',), {}, 'project_path:mygroup/sub/my.project-x:ref_type:branch:ref:main'),
    (('g/p',), {'ref': 'release/1.0', 'ref_type': 'tag'}, 'project_path:g/p:ref_type:tag:ref:release/1.0'),
    (('g/p',), {'ref': "it's"}, "project_path:g/p:ref_type:branch:ref:it's"),
    ((57382910,), {}, 'project_id:57382910:ref_type:branch:ref:main'),
    (('42',), {'ref': 'v1', 'ref_type': 'tag'}, 'project_id:42:ref_type:tag:ref:v1'),
    (('g/p',), {'components': ['project_path', 'ref_type', 'ref', 'ref_protected'], 'claim_values': {'ref_protected': True}},
     'project_path:g/p:ref_type:branch:ref:main:ref_protected:true'),
])
def test_gitlab_sub(args, kwargs, want):
    assert gitlab_sub(*args, **kwargs) == want


@pytest.mark.parametrize('args,kwargs,want', [
    (('g/p',), {}, "claims['sub'] matches 'project_path:g/p:ref_type:branch:ref:*'"),
    (('g/p',), {'ref': "v1's*", 'ref_type': 'tag'}, "claims['sub'] matches 'project_path:g/p:ref_type:tag:ref:v1''s*'"),
    ((42,), {'any_ref': True}, "claims['sub'] matches 'project_id:42:*'"),
    (('g/p',), {'ref': 'main'}, 'project_path:g/p:ref_type:branch:ref:main'),  # no wildcard: exact subject
])
def test_gitlab_sub_match(args, kwargs, want):
    assert gitlab_sub_match(*args, **kwargs) == want


@pytest.mark.parametrize('call,text', [
    (lambda: gitlab_sub('project'), 'no namespace'),
    (lambda: gitlab_sub('g/p', ref='a:b'), "contains ':'"),
    (lambda: gitlab_sub('g/p', ref_type='commit'), "not 'branch' or 'tag'"),
    (lambda: gitlab_sub_match('g/p', ref='refs/heads/*'), 'full ref'),
])
def test_errors_are_filter_errors(call, text):
    with pytest.raises(AnsibleFilterError, match=text):
        call()


@pytest.mark.parametrize('args,kwargs,want', [
    (('mygroup/sub/my.project-x',), {}, 'gitlab-oidc-mygroup~sub~my.project-x'),
    (('a/b-c',), {}, 'gitlab-oidc-a~b-c'),
    (('a-b/c',), {}, 'gitlab-oidc-a-b~c'),
    ((57382910,), {}, 'gitlab-oidc-id-57382910'),
    (('42',), {'prefix': 'deploy-'}, 'deploy-id-42'),
])
def test_gitlab_app_unique_name(args, kwargs, want):
    assert gitlab_app_unique_name(*args, **kwargs) == want


@pytest.mark.parametrize('args,kwargs,text', [
    (('project',), {}, 'no namespace'),
    ((None,), {}, 'exactly one'),
    ((True,), {}, 'exactly one'),
    (('g/p',), {'prefix': ''}, 'prefix'),
])
def test_gitlab_app_unique_name_errors(args, kwargs, text):
    with pytest.raises(AnsibleFilterError, match='gitlab_app_unique_name: .*' + text):
        gitlab_app_unique_name(*args, **kwargs)


def test_filter_names():
    assert sorted(FilterModule().filters()) == ['gitlab_app_unique_name', 'gitlab_sub', 'gitlab_sub_match']
