# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""``_gitlab_api.py``: settings, projects of groups, one project and CI/CD variables, through python-gitlab against
the sandbox's GitLab REST API (pagination of both kinds, subgroups, archived, topics, 401/403/404/429), plus the pure
parts (settings resolution, variable validation and planning) without it."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils import _gitlab_api as api
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import (
    GitLabApiError,
    MissingLibraryError,
    ValidationError,
    redact,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._retry import RetryPolicy

needs_sandbox = pytest.mark.skipif('oidc_sandbox_test_fixtures' not in sys.modules,
                                   reason='the sandbox package (sandbox/oidc_sandbox) is not in this checkout')

SECRET_VALUE = 'Sup3r-Secret-Value_42'


# --- settings (pure) --------------------------------------------------------------------------------------------------

def test_settings_env_fallbacks_in_order():
    env = {'GITLAB_PRIVATE_TOKEN': 'glpat-second-choice-xx', 'GITLAB_TOKEN': 'glpat-first-choice-xxx',
           'CI_SERVER_URL': 'https://ci.example.com', 'GITLAB_URL': 'https://gitlab.example.com/api/v4/'}
    settings = api.resolve_settings(env=env)
    assert settings.url == 'https://gitlab.example.com'
    assert settings.token == 'glpat-first-choice-xxx'
    settings = api.resolve_settings(env={'GITLAB_PRIVATE_TOKEN': 'glpat-second-choice-xx',
                                         'CI_SERVER_URL': 'https://ci.example.com/'})
    assert (settings.url, settings.token) == ('https://ci.example.com', 'glpat-second-choice-xx')
    assert api.resolve_settings(token='t0ken-explicit', env={}).url == 'https://gitlab.com'
    assert 'glpat' not in repr(settings) and '<set>' in repr(settings)
    assert redact('failed with glpat-second-choice-xx') == 'failed with <redacted>'  # registered
    assert redact('and glpat-never-registered-1') == 'and <redacted-gitlab-token>'


@pytest.mark.parametrize('kwargs, message', [
    (dict(url='ftp://gitlab.example.com', token='x' * 10), 'is not an http(s) URL'),
    (dict(url='https://gitlab.example.com?x=1', token='x' * 10), 'is not an http(s) URL'),
    (dict(url='https://gitlab.example.com'), 'no GitLab token: set token (or the environment variable GITLAB_TOKEN or '
                                             'GITLAB_PRIVATE_TOKEN)'),
    (dict(token='two words'), 'one GitLab access token'),
    (dict(token='x' * 10, timeout=0), 'timeout must be'),
    (dict(token='x' * 10, ca_bundle='/nonexistent/ca.pem'), 'is not a file'),
])
def test_settings_refuse_bad_input(kwargs, message):
    with pytest.raises(ValidationError) as exc:
        api.resolve_settings(env={}, **kwargs)
    assert message in str(exc.value)


def test_settings_from_module_params_name_the_prefixed_options():
    with pytest.raises(ValidationError, match='set gitlab_token'):
        api.settings_from_params({'gitlab_url': 'https://gitlab.example.com', 'gitlab_token': None})
    assert set(api.GITLAB_ARGSPEC) == {'gitlab_url', 'gitlab_token', 'gitlab_validate_certs', 'gitlab_ca_bundle',
                                       'gitlab_timeout'}
    assert api.GITLAB_ARGSPEC['gitlab_token']['no_log'] is True


def test_missing_python_gitlab_is_a_missing_library(monkeypatch):
    monkeypatch.setitem(sys.modules, 'gitlab', None)
    client = api.GitLabClient(api.resolve_settings(token='x' * 10, env={}))
    with pytest.raises(MissingLibraryError) as exc:
        client.gl  # pylint: disable=pointless-statement
    assert exc.value.library == 'python-gitlab'


# --- variables (pure) -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('item, message', [
    ({'key': 'AZURE-CLIENT', 'value': 'x'}, "only letters, digits and '_'"),
    ({'key': 'K' * 256, 'value': 'x'}, 'at most 255'),
    ({'key': 'K', 'value': 'short', 'masked': True}, 'at least 8 characters'),
    ({'key': 'K', 'value': 'has spaces in it', 'masked': True}, 'or raw to true'),
    ({'key': 'K', 'value': 'two\nlines!', 'masked': True, 'raw': True}, 'except spaces and line breaks'),
    ({'key': 'K', 'value': None}, 'value must be a string'),
    ({'key': 'K', 'value': 'x', 'masked': 'yes'}, 'masked must be true or false'),
    ({'key': 'K', 'value': 'x', 'variable_type': 'secret'}, 'variable_type must be one of'),
    ({'key': 'K', 'value': 'x', 'description': 'd' * 250}, 'too long'),
    ({'key': 'K', 'value': 'x', 'colour': 'red'}, 'unknown fields: colour'),
    ({'key': 'K', 'value': 'x', 'environment_scope': 'prod|staging'}, "can contain only letters, digits, '-', '_'"),
    ({'key': 'K', 'value': 'x', 'environment_scope': 'prod\n'}, "is not one GitLab accepts"),
])
def test_variable_specs_refuse_what_gitlab_refuses(item, message):
    with pytest.raises(ValidationError) as exc:
        api.variable_specs([item])
    assert message in str(exc.value)


def test_variable_specs_accept_gitlab_maskable_values_and_refuse_duplicates():
    specs = api.variable_specs([
        {'key': 'AZURE_CLIENT_ID', 'value': '0c7f1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b', 'masked': True},
        {'key': 'AZURE_CLIENT_ID', 'value': 'with spaces? no: raw!', 'masked': False, 'environment_scope': 'prod'},
        {'key': 'RAW', 'value': 'a$b%c&d*e(f)', 'masked': True, 'raw': True},
        {'key': 'SCOPED', 'value': 'x', 'environment_scope': 'review/${CI_COMMIT_REF_SLUG} *.x-1_'},
    ])
    assert [s.environment_scope for s in specs] == ['*', 'prod', '*', 'review/${CI_COMMIT_REF_SLUG} *.x-1_']
    assert specs[0].stored_description == api.VARIABLE_MARKER
    with pytest.raises(ValidationError, match="listed twice for environment scope '\\*'"):
        api.variable_specs([{'key': 'A', 'value': '1'}, {'key': 'A', 'value': '2', 'environment_scope': '*'}])


def test_diff_variables_only_touches_what_the_collection_set():
    marker = api.VARIABLE_MARKER
    current = [
        {'key': 'MINE', 'value': 'old', 'environment_scope': '*', 'description': marker, 'protected': False,
         'masked': False, 'raw': False, 'variable_type': 'env_var'},
        {'key': 'THEIRS', 'value': 'v', 'environment_scope': '*', 'description': 'set by hand'},
        {'key': 'STALE', 'value': 'v', 'environment_scope': 'prod', 'description': 'x ' + marker},
        {'key': 'HAND', 'value': 'v', 'environment_scope': '*', 'description': None},
    ]
    desired = api.variable_specs([{'key': 'MINE', 'value': 'new'}, {'key': 'THEIRS', 'value': 'v'},
                                  {'key': 'NEW', 'value': 'n', 'protected': True}])
    plan = api.diff_variables(current, desired, absent=['HAND'], purge=True)
    actions = {(i['key'], i['action']) for i in plan.as_list()}
    assert actions == {('MINE', 'update'), ('THEIRS', 'conflict'), ('NEW', 'create'), ('STALE', 'delete'),
                       ('HAND', 'skip')}
    assert plan.changed and len(plan.conflicts) == 1
    assert [i for i in plan.as_list() if i['key'] == 'MINE'][0]['changes'] == ['value']
    adopted = api.diff_variables(current, desired, adopt=True)
    assert {(i['key'], i['action']) for i in adopted.as_list()} >= {('THEIRS', 'update')}
    assert 'new' not in json.dumps(plan.as_list()) and 'old' not in json.dumps(plan.as_list())


# --- against the sandbox ----------------------------------------------------------------------------------------------

TREE = {
    'groups': [{'path': 'acme', 'visibility': 'private'}, {'path': 'other'}],
    'projects': [
        {'path': 'acme/web', 'topics': ['azure', 'frontend']},
        {'path': 'acme/api', 'topics': ['azure'], 'ci_id_token_sub_claim_components': ['project_id', 'ref_type', 'ref']},
        {'path': 'acme/platform/infra', 'topics': ['azure', 'infra'], 'default_branch': 'trunk'},
        {'path': 'acme/platform/net', 'topics': ['infra']},
        {'path': 'acme/platform/deep/er/tool', 'topics': ['azure']},
        {'path': 'acme/platform/old', 'topics': ['azure'], 'archived': True},
        {'path': 'acme/sandbox-x'},
        {'path': 'other/thing', 'topics': ['azure']},
    ],
    'tokens': [
        {'token': 'glpat-readonly-token-1', 'scopes': ['read_api'], 'namespaces': ['acme']},
        {'token': 'glpat-developer-token1', 'scopes': ['api'], 'namespaces': ['acme'], 'access_level': 30},
        {'token': 'glpat-platform-only-1', 'scopes': ['api'], 'namespaces': ['acme/platform']},
        {'token': 'glpat-repo-scope-only1', 'scopes': ['read_repository'], 'namespaces': ['acme']},
        {'token': 'glpat-expired-token-1', 'scopes': ['api'], 'namespaces': ['*'], 'expired': True},
    ],
}


@pytest.fixture
def gl_sandbox(clean_sandbox):
    clean_sandbox.gitlab_seed(**TREE)
    return clean_sandbox


def client_for(sb, token=None, per_page=100, waits=None, **policy):
    settings = api.resolve_settings(sb.gitlab_url, token or sb.gitlab_token, ca_bundle=sb.bundle_file, env={},
                                    per_page=per_page)
    policy.setdefault('max_attempts', 3)
    return api.GitLabClient(settings, RetryPolicy(sync_sleep=(waits.append if waits is not None else (lambda s: None)),
                                                  **policy))


def paths(projects):
    return [p['path_with_namespace'] for p in projects]


def get_count(sb, route_part):
    stats = sb.control('GET', 'stats').json()
    return sum(n for route, n in stats['by_route'].items() if route_part in route)


@needs_sandbox
@pytest.mark.parametrize('pagination', ['keyset', 'offset'])
def test_list_group_projects_nested_groups_both_paginations(gl_sandbox, pagination):
    client = client_for(gl_sandbox, per_page=2)
    gl_sandbox.control('POST', 'stats/reset')
    projects = api.list_group_projects(client, ['acme'], pagination=pagination)
    assert paths(projects) == ['acme/api', 'acme/platform/deep/er/tool', 'acme/platform/infra', 'acme/platform/net',
                               'acme/sandbox-x', 'acme/web']
    assert get_count(gl_sandbox, '/projects') == 3  # 6 projects, 2 per page
    infra = [p for p in projects if p['path'] == 'infra'][0]
    assert infra['default_branch'] == 'trunk' and infra['topics'] == ['azure', 'infra']
    assert infra['namespace_full_path'] == 'acme/platform' and infra['archived'] is False
    api_project = [p for p in projects if p['path'] == 'api'][0]
    assert api_project['ci_id_token_sub_claim_components'] == ['project_id', 'ref_type', 'ref']
    assert api_project['ci_id_token_sub_claim_components_known'] is True


@needs_sandbox
def test_list_group_projects_filters_and_deduplicates(gl_sandbox):
    client = client_for(gl_sandbox)
    assert paths(api.list_group_projects(client, 'acme', include_subgroups=False)) == [
        'acme/api', 'acme/sandbox-x', 'acme/web']
    assert 'acme/platform/old' in paths(api.list_group_projects(client, ['acme'], include_archived=True))
    assert paths(api.list_group_projects(client, ['acme'], topics=['azure', 'infra'])) == ['acme/platform/infra']
    assert paths(api.list_group_projects(client, ['acme'], path_patterns=['acme/platform/*'],
                                         exclude_path_patterns=['*/net'])) == [
        'acme/platform/deep/er/tool', 'acme/platform/infra']
    assert paths(api.list_group_projects(client, ['acme'], path_regex=r'^acme/[^/]+$')) == [
        'acme/api', 'acme/sandbox-x', 'acme/web']
    both = api.list_group_projects(client, ['acme/platform', 'acme', 'other'], topics=['azure'])
    assert paths(both) == ['acme/api', 'acme/platform/deep/er/tool', 'acme/platform/infra', 'acme/web', 'other/thing']
    group_id = api.get_group(client, 'acme/platform')['id']
    assert paths(api.list_group_projects(client, [group_id], search='inf')) == ['acme/platform/infra']


@needs_sandbox
def test_visibility_follows_the_token(gl_sandbox):
    platform = client_for(gl_sandbox, token='glpat-platform-only-1')
    assert paths(api.list_group_projects(platform, ['acme'])) == [
        'acme/platform/deep/er/tool', 'acme/platform/infra', 'acme/platform/net']
    with pytest.raises(GitLabApiError) as exc:
        api.get_project(platform, 'acme/web')
    err = exc.value
    assert (err.status, err.code, err.message) == (404, 'not_found', '404 Project Not Found')
    assert "project acme/web does not exist on {0}, or the token cannot see it".format(gl_sandbox.gitlab_url) in str(err)
    # A developer sees the project but not its ID token settings: GitLab's default is assumed, and said so.
    developer = client_for(gl_sandbox, token='glpat-developer-token1')
    info = api.get_project(developer, 'acme/api')
    assert info['ci_id_token_sub_claim_components'] == ['project_path', 'ref_type', 'ref']
    assert info['ci_id_token_sub_claim_components_known'] is False
    by_id = api.get_project(client_for(gl_sandbox), info['id'])
    assert by_id['path_with_namespace'] == 'acme/api' and by_id['ci_id_token_sub_claim_components_known']


@needs_sandbox
@pytest.mark.parametrize('token, call, status, code, hint', [
    ('glpat-wrong-token-xyz', 'list', 401, 'unauthorized', 'the GitLab token is missing, wrong, expired or revoked'),
    ('glpat-expired-token-1', 'list', 401, 'invalid_token', 'the GitLab token is missing, wrong, expired or revoked'),
    ('glpat-repo-scope-only1', 'list', 403, 'insufficient_scope', 'the token lacks the scope this needs (api read_api)'),
    ('glpat-readonly-token-1', 'write', 403, 'insufficient_scope', 'the token lacks the scope this needs (api)'),
    ('glpat-developer-token1', 'variables', 403, 'forbidden', 'need the Maintainer role'),
    (None, 'unknown_group', 404, 'not_found', 'group no/such/group does not exist'),
])
def test_errors_name_what_was_asked_and_the_fix(gl_sandbox, token, call, status, code, hint):
    client = client_for(gl_sandbox, token=token)
    with pytest.raises(GitLabApiError) as exc:
        if call == 'list':
            api.list_group_projects(client, ['acme'])
        elif call == 'write':
            plan = api.plan_variables(client, 'acme/web', [{'key': 'AZURE_CLIENT_ID', 'value': 'x'}])
            api.apply_variable_plan(client, 'acme/web', plan)
        elif call == 'variables':
            api.list_variables(client, 'acme/web')
        else:
            api.list_group_projects(client, ['no/such/group'])
    err = exc.value
    assert (err.status, err.code, err.service) == (status, code, 'gitlab')
    assert hint in str(err)
    assert 'glpat-' not in str(err)


@needs_sandbox
def test_rate_limits_are_retried_with_retry_after_then_reported(gl_sandbox):
    waits = []
    client = client_for(gl_sandbox, waits=waits)
    gl_sandbox.faults(rules=[{'service': 'gitlab', 'kind': 'throttle', 'retry_after': 7, 'times': 2,
                              'path': '/api/v4/groups/'}])
    assert len(api.list_group_projects(client, ['acme'])) == 6
    assert waits == [7.0, 7.0]
    gl_sandbox.faults(rules=[{'service': 'gitlab', 'kind': 'throttle', 'retry_after': 3}])
    with pytest.raises(GitLabApiError) as exc:
        api.get_project(client, 'acme/web')
    assert (exc.value.status, exc.value.code, exc.value.retry_after) == (429, 'rate_limited', 3.0)
    assert 'gave up after 3 attempts' in str(exc.value)


@needs_sandbox
def test_throttled_page_is_retried_alone(gl_sandbox):
    waits = []
    client = client_for(gl_sandbox, per_page=2, waits=waits)
    gl_sandbox.faults(rules=[{'service': 'gitlab', 'kind': 'throttle', 'retry_after': 1, 'times': 1, 'after': 1}])
    gl_sandbox.control('POST', 'stats/reset')
    assert len(api.list_group_projects(client, ['acme'])) == 6
    assert waits == [1.0] and get_count(gl_sandbox, '/projects') == 4  # 3 pages + the throttled second one


@needs_sandbox
def test_variables_plan_apply_idempotent_and_secret_free(gl_sandbox):
    client = client_for(gl_sandbox)
    desired = [
        {'key': 'AZURE_CLIENT_ID', 'value': '0c7f1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b', 'description': 'app'},
        {'key': 'AZURE_TENANT_ID', 'value': SECRET_VALUE, 'masked': True, 'protected': True},
        {'key': 'AZURE_SUBSCRIPTION_ID', 'value': SECRET_VALUE, 'environment_scope': 'production'},
    ]
    plan = api.plan_variables(client, 'acme/web', desired)
    assert plan.summary() == {'create': 3} and plan.changed
    result = api.apply_variable_plan(client, 'acme/web', plan)
    assert SECRET_VALUE not in json.dumps(result) + json.dumps(plan.as_list())
    again = api.plan_variables(client, 'acme/web', desired)
    assert again.summary() == {'unchanged': 3} and not again.changed
    listed = api.list_variables(client, 'acme/web', include_values=True)
    assert {v['key']: v.get('value') for v in listed} == {
        'AZURE_CLIENT_ID': '0c7f1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b', 'AZURE_TENANT_ID': None,
        'AZURE_SUBSCRIPTION_ID': SECRET_VALUE}  # values of masked variables never come back
    assert all(v['managed'] for v in listed)
    assert [v['key'] for v in api.list_variables(client, 'acme/web', environment_scope='production')] == [
        'AZURE_SUBSCRIPTION_ID']
    # change one field, then offboard: only the collection's variables go
    changed = dict(desired[1], protected=False)
    plan = api.plan_variables(client, 'acme/web', [desired[0], changed, desired[2]])
    assert [(i['key'], i['action'], i['changes']) for i in plan.as_list() if i['action'] != 'unchanged'] == [
        ('AZURE_TENANT_ID', 'update', ['protected'])]
    api.apply_variable_plan(client, 'acme/web', plan)
    gl_sandbox.gitlab('POST', '/projects/acme%2Fweb/variables', json={'key': 'HAND_MADE', 'value': 'keep me'})
    gl_sandbox.gitlab('POST', '/projects/acme%2Fweb/variables',
                      json={'key': 'AZURE_CLIENT_ID', 'value': 'theirs', 'environment_scope': 'staging'})
    offboard = api.plan_variables(client, 'acme/web', [], purge=True)
    assert sorted((i['key'], i['environment_scope'], i['action']) for i in offboard.as_list()) == [
        ('AZURE_CLIENT_ID', '*', 'delete'), ('AZURE_SUBSCRIPTION_ID', 'production', 'delete'),
        ('AZURE_TENANT_ID', '*', 'delete')]
    api.apply_variable_plan(client, 'acme/web', offboard)
    assert sorted((v['key'], v['environment_scope']) for v in api.list_variables(client, 'acme/web')) == [
        ('AZURE_CLIENT_ID', 'staging'), ('HAND_MADE', '*')]


@needs_sandbox
def test_variables_conflicts_write_nothing_and_gitlab_refusals_are_explained(gl_sandbox):
    client = client_for(gl_sandbox)
    gl_sandbox.gitlab('POST', '/projects/acme%2Fapi/variables', json={'key': 'AZURE_CLIENT_ID', 'value': 'hand'})
    plan = api.plan_variables(client, 'acme/api', [{'key': 'AZURE_TENANT_ID', 'value': 't'},
                                                   {'key': 'AZURE_CLIENT_ID', 'value': 'c'}])
    with pytest.raises(ValidationError, match='AZURE_CLIENT_ID .scope \\*.: the variable exists and was not set'):
        api.apply_variable_plan(client, 'acme/api', plan)
    assert [v['key'] for v in api.list_variables(client, 'acme/api')] == ['AZURE_CLIENT_ID']
    adopted = api.plan_variables(client, 'acme/api', [{'key': 'AZURE_CLIENT_ID', 'value': 'c'}], adopt=True)
    api.apply_variable_plan(client, 'acme/api', adopted)
    assert api.list_variables(client, 'acme/api')[0]['managed'] is True
    # A value GitLab refuses (built around the collection's own validation) comes back with GitLab's words.
    bad = api.VariableSpec('MASKED', 'no spaces allowed', masked=True)
    with pytest.raises(GitLabApiError) as exc:
        api.apply_variable_plan(client, 'acme/api', api.diff_variables([], [bad]))
    assert (exc.value.status, exc.value.code) == (400, 'invalid')
    assert 'GitLab refused the request: value is invalid' in str(exc.value)


@needs_sandbox
def test_calls_from_worker_threads_share_one_client(gl_sandbox):
    client = client_for(gl_sandbox)
    names = ['acme/web', 'acme/api', 'acme/platform/infra', 'acme/platform/net', 'acme/sandbox-x', 'other/thing']

    async def run():
        limit = asyncio.Semaphore(3)

        async def one(name):
            async with limit:
                return await asyncio.to_thread(api.get_project, client, name)
        return await asyncio.gather(*(one(n) for n in names * 3))

    results = asyncio.run(run())
    assert [r['path_with_namespace'] for r in results] == names * 3
