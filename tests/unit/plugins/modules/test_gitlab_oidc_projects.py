# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""gitlab_oidc_projects run in-process against the sandbox.

State is checked through the sandbox's control API (``/_sandbox/state``, ``/_sandbox/stats``), never through the
module under test.
"""

from __future__ import annotations

import json
import re
import sys

import pytest

pytestmark = pytest.mark.skipif('oidc_sandbox_test_fixtures' not in sys.modules,
                                reason='the sandbox package (sandbox/oidc_sandbox) is not in this checkout')

from ansible_collections.oidc_federation.azure.plugins.modules import gitlab_oidc_projects  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._onboarding import project_marker  # noqa: E402
from ansible_collections.oidc_federation.azure.tests.unit.plugins.modules.sandbox_auth import auth_args  # noqa: E402

RG = 'rg-sandbox'


def run(run_module, sb, *, check=False, diff=False, **args):
    params = dict(auth_args(sb), **args)
    params['_ansible_check_mode'] = check
    params['_ansible_diff'] = diff
    return run_module(gitlab_oidc_projects.main, params)


def ok(run_module, sb, **kwargs):
    code, result = run(run_module, sb, **kwargs)
    assert code == 0, json.dumps(result, indent=1)[:4000]
    assert not result.get('failed'), result
    return result


def state(sb):
    response = sb.control('GET', 'state')
    assert response.status_code == 200, response.text
    return response.json()


def stats(sb):
    return sb.control('GET', 'stats').json()


def writes(sb):
    """Writes Graph and ARM ran (inner $batch requests each counted; the $batch envelope, a POST, is not a write)."""
    data = stats(sb)
    return data['graph']['writes'] + data['arm']['writes']


def role_definition_reads(sb):
    return sum(count for route, count in stats(sb)['by_route'].items() if '/roleDefinitions' in route)


def reset_stats(sb):
    assert sb.control('POST', 'stats/reset').status_code in (200, 204)


def issuer(sb):
    return sb.env['SANDBOX_GITLAB_ISSUER']


def projects(sb):
    iss = issuer(sb)
    common = {'issuer': iss, 'gitlab_issuers': [iss], 'subscription_id': sb.subscription_id}
    return [
        dict(common, project_path='demo/web-app', branches=['main'], role_assignments=[{'role': 'Reader'}]),
        dict(common, project_path='demo/infra', branches=['*'],
             role_assignments=[{'role': 'Reader'}, {'role': 'Contributor', 'resource_group': RG}]),
        dict(common, project_path='demo/payments', project_id='4711', sub_claim_components=['project_id', 'ref_type', 'ref'],
             branches=['main', 'production'], tags=['v*'], role_assignments=[{'role': 'Reader', 'resource_group': RG}]),
        dict(common, project_path='demo/services/orders', shared_app='gitlab-oidc-demo-services', branches=['main'],
             role_assignments=[{'role': 'Reader'}]),
        dict(common, project_path='demo/services/billing', shared_app='gitlab-oidc-demo-services', branches=['main'],
             role_assignments=[{'role': 'Reader'}]),
    ]


def test_onboard_then_rerun_writes_nothing(run_module, clean_sandbox):
    sb = clean_sandbox
    result = ok(run_module, sb, projects=projects(sb))
    assert result['changed'] and result['summary'] == {'projects': 5, 'changed': 5, 'failed': 0}, result['summary']
    apps = state(sb)['applications']
    names = sorted(a['uniqueName'] for a in apps if (a.get('uniqueName') or '').startswith('gitlab-oidc'))
    assert names == ['gitlab-oidc-demo-services', 'gitlab-oidc-demo~infra', 'gitlab-oidc-demo~web-app', 'gitlab-oidc-id-4711'], names
    payments = next(a for a in apps if a.get('uniqueName') == 'gitlab-oidc-id-4711')
    assert project_marker(issuer(sb), '4711') in payments['tags']
    reset_stats(sb)
    again = ok(run_module, sb, projects=projects(sb))
    assert not again['changed'], json.dumps(again['projects'], indent=1)[:3000]
    assert writes(sb) == 0


def app_names(sb):
    return sorted((a.get('uniqueName') or '') for a in state(sb)['applications'] if (a.get('uniqueName') or '').startswith('gitlab-oidc'))


def managed_state(sb):
    """The objects the collection made, without ids and timestamps: comparable between two sandboxes or runs."""
    data = state(sb)
    apps = {a['id']: a for a in data['applications'] if (a.get('uniqueName') or '').startswith('gitlab-oidc')}
    sps = {s['appId']: s for s in data['service_principals']}
    out = {}
    for app in apps.values():
        sp = sps.get(app['appId'])
        fics = sorted((f['name'], f.get('subject'), (f.get('claimsMatchingExpression') or {}).get('value'), tuple(f['audiences']))
                      for f in data['federated_identity_credentials'].get(app['id'], []))
        roles = sorted((r['properties']['scope'].lower(), r['properties']['roleDefinitionId'].rsplit('/', 1)[-1],
                        r['properties'].get('description'))
                       for r in data['role_assignments'] if sp and r['properties']['principalId'] == sp['id'])
        out[app['uniqueName']] = {'displayName': app['displayName'], 'description': app.get('description'),
                                  'tags': sorted(app.get('tags') or []), 'sp': sp is not None, 'fics': fics, 'roles': roles}
    return out


def test_check_mode_writes_nothing_and_predicts(run_module, clean_sandbox):
    sb = clean_sandbox
    reset_stats(sb)
    result = ok(run_module, sb, projects=projects(sb), check=True, diff=True)
    assert writes(sb) == 0 and app_names(sb) == []
    assert result['summary'] == {'projects': 5, 'changed': 5, 'failed': 0}
    web = result['projects']['demo/web-app']['result']
    assert web['status'] == 'planned' and web['pending'] and web['client_id'] is None
    assert [c['action'] for c in web['credentials']] == ['created']
    assert web['role_assignments'][0]['action'] == 'created' and web['role_assignments'][0]['principal_id'] is None
    assert len(result['diff']) == 5 and all(d['before_header'] for d in result['diff'])


def test_one_call_and_one_call_per_project_leave_the_same_state(run_module, clean_sandbox):
    sb = clean_sandbox
    ok(run_module, sb, projects=projects(sb))
    together = managed_state(sb)
    sb.reset()
    for project in projects(sb):
        ok(run_module, sb, projects=[project])
    assert managed_state(sb) == together
    # and with the bulk reads (a threshold of 1 forces the listing paths)
    sb.reset()
    ok(run_module, sb, projects=projects(sb), concurrency=3)
    assert managed_state(sb) == together


def test_a_failing_project_among_good_ones(run_module, clean_sandbox):
    sb = clean_sandbox
    items = projects(sb)
    items[1] = dict(items[1], role_assignments=[{'role': 'No Such Role'}])
    items[2] = dict(items[2], role_assignments=[{'role': 'Owner'}])
    code, result = run(run_module, sb, projects=items, continue_on_error=True)
    assert code == 0 and not result.get('failed')
    assert result['summary'] == {'projects': 5, 'changed': 3, 'failed': 2}
    bad = result['projects']['demo/infra']
    assert bad['failed'] and "projects[1].role_assignments[0].role" in bad['msg'] and 'No Such Role' in bad['msg'], bad['msg']
    owner = result['projects']['demo/payments']
    assert owner['failed'] and 'allow_privileged' in owner['msg'], owner['msg']
    # nothing was written for the failing projects
    assert app_names(sb) == ['gitlab-oidc-demo-services', 'gitlab-oidc-demo~web-app']
    # without continue_on_error the task fails and names both
    code, result = run(run_module, sb, projects=items)
    assert code == 1 and result['failed'] and 'demo/infra' in result['msg'] and 'demo/payments' in result['msg']


def test_bad_input_names_the_role_variable(run_module, clean_sandbox):
    sb = clean_sandbox
    item = dict(projects(sb)[0], branches=[], tags=[], key='g/p')
    code, result = run(run_module, sb, projects=[item], variable_prefix='gitlab_oidc_', continue_on_error=True)
    assert code == 0
    msg = result['projects']['g/p']['msg']
    assert msg.startswith('g/p: gitlab_oidc_branches:') and 'Fix:' in msg, msg
    item = dict(projects(sb)[0], branches=['bad ref name'], key='g/p')
    code, result = run(run_module, sb, projects=[item], variable_prefix='gitlab_oidc_', continue_on_error=True)
    assert result['projects']['g/p']['msg'].startswith('g/p: gitlab_oidc_branches'), result['projects']['g/p']['msg']
    item = dict(projects(sb)[0], role_assignments=[{'role': 'Reader'}], subscription_id=None, key='g/p')
    code, result = run(run_module, sb, projects=[item], variable_prefix='gitlab_oidc_', continue_on_error=True)
    assert 'gitlab_oidc_role_assignments[0]' in result['projects']['g/p']['msg'] and 'gitlab_oidc_subscription_id' in result['projects']['g/p']['msg']
    assert app_names(sb) == []


def test_two_projects_with_one_key_fail_the_call_before_any_write(run_module, clean_sandbox):
    sb = clean_sandbox
    first, second = projects(sb)[:2]
    reset_stats(sb)
    code, result = run(run_module, sb, projects=[first, dict(second, key='demo/web-app')], continue_on_error=True)
    assert code == 1 and result['failed'], result
    assert result['msg'].startswith('projects[1]: has the same key (demo/web-app) as projects[0]') and 'Fix:' in result['msg'], result
    assert app_names(sb) == [] and writes(sb) == 0


def test_shared_application_settings_must_agree(run_module, clean_sandbox):
    sb = clean_sandbox
    items = projects(sb)[3:]
    items[1] = dict(items[1], app_description='another description')
    code, result = run(run_module, sb, projects=items, continue_on_error=True)
    billing = result['projects']['demo/services/billing']
    assert billing['failed'] and 'projects[1].app_description' in billing['msg'] and 'demo/services/orders' in billing['msg']
    assert not result['projects']['demo/services/orders']['failed']


def _payments(sb, **over):
    iss = issuer(sb)
    item = dict(project_path='demo/payments', project_id='4711', branches=['main'], issuer=iss, gitlab_issuers=[iss],
                subscription_id=sb.subscription_id, role_assignments=[{'role': 'Reader', 'resource_group': RG}])
    item.update(over)
    return item


def test_rename_and_sub_claim_switch_keep_one_application(run_module, clean_sandbox):
    sb = clean_sandbox
    first = ok(run_module, sb, projects=[_payments(sb)])['projects']['demo/payments']['result']
    app_id = first['client_id']
    assert app_names(sb) == ['gitlab-oidc-demo~payments']
    # renamed in GitLab: same id, new path -> same application, display name and credentials follow
    renamed = ok(run_module, sb, projects=[_payments(sb, project_path='demo/billing-payments')])
    result = renamed['projects']['demo/billing-payments']['result']
    assert result['client_id'] == app_id and result['application']['found_by'] == 'marker'
    assert app_names(sb) == ['gitlab-oidc-demo~payments']
    app = next(a for a in state(sb)['applications'] if a['appId'] == app_id)
    assert app['displayName'] == 'GitLab CI/CD demo/billing-payments'
    fics = state(sb)['federated_identity_credentials'][app['id']]
    assert [f['subject'] for f in fics] == ['project_path:demo/billing-payments:ref_type:branch:ref:main']
    # the sub claim switches to project_id: still the same application
    switched = ok(run_module, sb, projects=[_payments(sb, project_path='demo/billing-payments',
                                                      sub_claim_components=['project_id', 'ref_type', 'ref'])])
    assert switched['projects']['demo/billing-payments']['result']['client_id'] == app_id
    fics = state(sb)['federated_identity_credentials'][app['id']]
    assert [f['subject'] for f in fics] == ['project_id:4711:ref_type:branch:ref:main']
    assert app_names(sb) == ['gitlab-oidc-demo~payments']
    # again: nothing to do
    reset_stats(sb)
    again = ok(run_module, sb, projects=[_payments(sb, project_path='demo/billing-payments',
                                                   sub_claim_components=['project_id', 'ref_type', 'ref'])])
    assert not again['changed'] and writes(sb) == 0
    # offboarding by id finds it whatever the path is now
    gone = ok(run_module, sb, state='absent', projects=[_payments(sb, project_path='demo/renamed-again')])
    assert gone['projects']['demo/renamed-again']['result']['application']['removed']
    assert app_names(sb) == []
    assert not [r for r in state(sb)['role_assignments'] if r['properties']['principalId'] == first['application']['service_principal_id']]


def test_application_of_an_older_derivation_is_adopted(run_module, clean_sandbox):
    sb = clean_sandbox
    # made before markers existed (0.1.0: no project id given -> path-derived name, no marker)
    ok(run_module, sb, projects=[_payments(sb, project_id=None)])
    assert app_names(sb) == ['gitlab-oidc-demo~payments']
    # now with the id and the project_id-led sub: the path-derived application is adopted and marked
    result = ok(run_module, sb, projects=[_payments(sb, sub_claim_components=['project_id', 'ref_type', 'ref'])])
    assert result['projects']['demo/payments']['result']['application']['found_by'] == 'alternate_name'
    assert app_names(sb) == ['gitlab-oidc-demo~payments']
    app = state(sb)['applications'][-1] if len(state(sb)['applications']) == 1 else next(
        a for a in state(sb)['applications'] if a.get('uniqueName') == 'gitlab-oidc-demo~payments')
    assert project_marker(issuer(sb), '4711') in app['tags']


def test_offboarding_removes_everything(run_module, clean_sandbox):
    sb = clean_sandbox
    before = state(sb)
    ok(run_module, sb, projects=projects(sb))
    result = ok(run_module, sb, state='absent', projects=projects(sb))
    assert result['summary']['failed'] == 0
    after = state(sb)
    assert app_names(sb) == []
    assert len(after['role_assignments']) == len(before['role_assignments'])
    again = ok(run_module, sb, state='absent', projects=projects(sb))
    assert not again['changed']


# --- the GitLab stage ------------------------------------------------------------------------------------------------

def seed_gitlab(sb, projects_spec, tokens=({'token': 'glpat-engine-test-api-1', 'scopes': ['api'], 'namespaces': ['*']},)):
    response = sb.control('POST', 'gitlab/seed', json={'projects': list(projects_spec), 'tokens': list(tokens)})
    assert response.status_code == 201, response.text


def gitlab_variables(sb):
    name = issuer(sb).rsplit('/', 1)[-1]
    data = sb.control('GET', 'gitlab/instances/{0}'.format(name)).json()
    return {p['path_with_namespace']: p for p in data['projects']}, data.get('variables', {})


def gl_project(sb, path, **over):
    item = dict(projects(sb)[0], project_path=path, gitlab_api=True, branches=['main'])
    item.pop('project_id', None)
    item.update(over)
    return item


def test_gitlab_stage_takes_id_and_sub_claim_from_gitlab_and_sets_variables(run_module, clean_sandbox):
    sb = clean_sandbox
    seed_gitlab(sb, [{'path': 'gl/app', 'id': 501}, {'path': 'gl/by-id', 'id': 502,
                                                     'ci_id_token_sub_claim_components': ['project_id', 'ref_type', 'ref']}])
    items = [gl_project(sb, 'gl/app'), gl_project(sb, 'gl/by-id')]
    result = ok(run_module, sb, projects=items, gitlab_token='glpat-engine-test-api-1', gitlab_ca_bundle=sb.ca_file)
    by_id = result['projects']['gl/by-id']['result']
    assert by_id['project_id'] == '502' and by_id['trust']['sub_claim_components'] == ['project_id', 'ref_type', 'ref']
    assert [c['subject'] for c in by_id['credentials']] == ['project_id:502:ref_type:branch:ref:main']
    assert sorted(i['key'] for i in by_id['ci_variables']) == ['AZURE_CLIENT_ID', 'AZURE_SUBSCRIPTION_ID', 'AZURE_TENANT_ID']
    assert all(i['action'] == 'created' or i['action'] == 'create' for i in by_id['ci_variables']), by_id['ci_variables']
    assert by_id['client_id'] and by_id['client_id'] not in json.dumps(by_id['ci_variables'])  # no value in results
    assert app_names(sb) == ['gitlab-oidc-gl~app', 'gitlab-oidc-id-502']
    reset_stats(sb)
    again = ok(run_module, sb, projects=items, gitlab_token='glpat-engine-test-api-1', gitlab_ca_bundle=sb.ca_file)
    assert not again['changed'], json.dumps(again['projects'], indent=1)[:2000]
    assert writes(sb) == 0
    gone = ok(run_module, sb, state='absent', projects=items, gitlab_token='glpat-engine-test-api-1', gitlab_ca_bundle=sb.ca_file)
    assert all(i['action'] == 'delete' for i in gone['projects']['gl/app']['result']['ci_variables'])


def test_gitlab_stage_refuses_contradictions_and_missing_rights_before_any_write(run_module, clean_sandbox):
    sb = clean_sandbox
    seed_gitlab(sb, [{'path': 'gl/app', 'id': 601}, {'path': 'gl/other', 'id': 602}],
                tokens=[{'token': 'glpat-engine-test-api-2', 'scopes': ['api'], 'namespaces': ['*']},
                        {'token': 'glpat-engine-read-only', 'scopes': ['read_api'], 'namespaces': ['*']}])
    before = state(sb)
    cases = [
        (gl_project(sb, 'gl/app', project_id='999'), 'glpat-engine-test-api-2', 'projects[0].project_id'),
        (gl_project(sb, 'gl/app', project_id='602'), 'glpat-engine-test-api-2', 'projects[0].project_path'),
        (gl_project(sb, 'gl/app', sub_claim_components=['project_id', 'ref_type', 'ref']), 'glpat-engine-test-api-2',
         'projects[0].sub_claim_components'),
        (gl_project(sb, 'gl/app'), 'glpat-engine-read-only', 'projects[0].gitlab_token'),
        (gl_project(sb, 'gl/missing'), 'glpat-engine-test-api-2', 'projects[0].project_path: GitLab'),
        (gl_project(sb, 'gl/app', ci_variables_extra={'NOT-A-VALID-KEY': 'value'}), 'glpat-engine-test-api-2',
         'projects[0].ci_variables_extra'),
    ]
    for item, token, expected in cases:
        code, result = run(run_module, sb, projects=[item], gitlab_token=token, gitlab_ca_bundle=sb.ca_file, continue_on_error=True)
        key = item['project_path']
        assert result['projects'][key]['failed'] and expected in result['projects'][key]['msg'], (expected, result['projects'][key])
        assert 'glpat-' not in json.dumps(result)
    assert state(sb) == before


def test_offboarding_with_purge_leaves_nothing_in_deleted_items(run_module, clean_sandbox):
    sb = clean_sandbox
    items = projects(sb)
    ok(run_module, sb, projects=items)
    # one project offboarded earlier without purge: its application waits in deleted items
    ok(run_module, sb, state='absent', projects=[items[0]])
    assert [d for d in state(sb)['deleted_items'] if (d.get('uniqueName') or '') == 'gitlab-oidc-demo~web-app']
    check = ok(run_module, sb, state='absent', projects=[dict(i, purge=True) for i in items], check=True)
    assert check['projects']['demo/web-app']['result']['application']['purged'], check['projects']['demo/web-app']
    gone = ok(run_module, sb, state='absent', projects=[dict(i, purge=True) for i in items])
    assert gone['summary']['failed'] == 0
    assert app_names(sb) == []
    assert [d.get('uniqueName') or d.get('displayName') for d in state(sb)['deleted_items']
            if (d.get('uniqueName') or d.get('displayName') or '').lower().startswith(('gitlab-oidc', 'gitlab ci/cd'))] == []
    again = ok(run_module, sb, state='absent', projects=[dict(i, purge=True) for i in items])
    assert not again['changed']


def test_renamed_project_on_a_shared_application_keeps_no_credential_for_its_old_path(run_module, clean_sandbox):
    sb = clean_sandbox
    iss = issuer(sb)
    common = dict(issuer=iss, gitlab_issuers=[iss], subscription_id=sb.subscription_id, shared_app='gitlab-oidc-team',
                  branches=['main'], role_assignments=[{'role': 'Reader'}])
    ok(run_module, sb, projects=[dict(common, project_path='team/a', project_id='71'), dict(common, project_path='team/b')])
    # team/a is renamed to team/a2 (same id): its credential for the old path goes, team/b's stays
    ok(run_module, sb, projects=[dict(common, project_path='team/a2', project_id='71'), dict(common, project_path='team/b')])
    app = next(a for a in state(sb)['applications'] if a.get('uniqueName') == 'gitlab-oidc-team')
    subjects = sorted(f['subject'] for f in state(sb)['federated_identity_credentials'][app['id']])
    assert subjects == ['project_path:team/a2:ref_type:branch:ref:main', 'project_path:team/b:ref_type:branch:ref:main']
    # offboarding both leaves nothing (no forgotten credential keeps the application alive)
    ok(run_module, sb, state='absent', projects=[dict(common, project_path='team/a2', project_id='71'), dict(common, project_path='team/b')])
    assert app_names(sb) == []


def test_offboarding_a_project_gitlab_no_longer_has(run_module, clean_sandbox):
    sb = clean_sandbox
    seed_gitlab(sb, [{'path': 'gl/gone', 'id': 801}])
    item = gl_project(sb, 'gl/gone')
    ok(run_module, sb, projects=[item], gitlab_token='glpat-engine-test-api-1', gitlab_ca_bundle=sb.ca_file)
    assert app_names(sb) == ['gitlab-oidc-gl~gone']
    sb.reset()  # GitLab forgets the project (and so does Azure; onboard again without GitLab to have an app to remove)
    seed_gitlab(sb, [])
    ok(run_module, sb, projects=[dict(item, gitlab_api=False, project_id='801')])
    result = ok(run_module, sb, state='absent', projects=[dict(item, project_id='801')], gitlab_token='glpat-engine-test-api-1',
                gitlab_ca_bundle=sb.ca_file)
    entry = result['projects']['gl/gone']
    assert entry['result']['application']['removed'] and any('offboarding it in Azure only' in w for w in entry['warnings'])
    assert app_names(sb) == []


# --- many projects: bulk reads and $batch writes ---------------------------------------------------------------------

SHARED = 'gitlab-oidc-bulk-shared'
TRUST = ({'branches': ['main']}, {'branches': ['*']}, {'branches': ['main'], 'tags': ['v*']}, {'tags': ['*']},
         {'any_ref': True}, {'branches': ['main', 'develop', 'release/*']})


def many_projects(sb, count):
    """``count`` projects (at least the engine's BULK_READ_THRESHOLD of 25, so the bulk read paths run): varied trust,
    sub claims (a quarter led by project_id: marker tags), roles, owners on some; the last three share an application."""
    iss = issuer(sb)
    owner = next(s['id'] for s in state(sb)['service_principals'] if s['appId'] == sb.operator.client_id)
    items = []
    for index in range(count):
        item = dict(TRUST[index % len(TRUST)], project_path='bulk/g{0}/p{1:02d}'.format(index // 10, index), issuer=iss,
                    gitlab_issuers=[iss], subscription_id=sb.subscription_id, role_assignments=[{'role': 'Reader'}])
        if index % 4 == 3:
            item.update(project_id=str(9000 + index), sub_claim_components=['project_id', 'ref_type', 'ref'])
        if index % 5 == 1:
            item['role_assignments'] = [{'role': 'Reader', 'resource_group': RG}]
        elif index % 5 == 2:
            item['role_assignments'] = [{'role': 'Reader'}, {'role': 'Contributor', 'resource_group': RG}]
        if index >= count - 3:
            item['shared_app'] = SHARED
        elif index % 7 == 0:
            item['app_owners'] = [owner]
        items.append(item)
    return items


def _graph_routes(routes):
    """Graph routes of a ``by_route`` counter (ARM's and the control API's left out)."""
    return {route: n for route, n in routes.items() if route.split(' ', 1)[1].startswith(('/v1.0/', '/beta/'))}


def _comparable(value):
    """A module result without what differs between two tenants or runs: GUIDs (object, app, principal and
    assignment ids) become a placeholder."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if isinstance(value, str):
        return re.sub(r'[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}', '<guid>', value)
    return value


def _per_project(result, shared):
    out = _comparable(result)
    if shared:  # found in the tenant by the projects run after the first one alone, made in this run together
        out['result']['application'].pop('found_by')
    return out


def test_many_projects_read_and_write_through_batches_and_match_the_per_project_run(run_module, clean_sandbox):
    sb = clean_sandbox
    items = many_projects(sb, 40)
    keys = [i['project_path'] for i in items]

    reset_stats(sb)
    planned = ok(run_module, sb, projects=items, check=True)
    assert writes(sb) == 0 and app_names(sb) == [] and planned['summary'] == {'projects': 40, 'changed': 40, 'failed': 0}

    reset_stats(sb)
    together = ok(run_module, sb, projects=items, token_cache=False)  # without the shared cache: its own tokens
    assert together['summary'] == {'projects': 40, 'changed': 40, 'failed': 0}, together['summary']
    data = stats(sb)
    graph = data['graph']
    # every Graph write went through $batch; the only Graph request outside one is the paged listing of the
    # applications the collection manages (and the batches themselves)
    direct = _graph_routes(data['by_route'])
    assert set(direct) <= {'POST /v1.0/$batch', 'POST /beta/$batch', 'GET /v1.0/applications'}, direct
    assert direct.get('GET /v1.0/applications', 0) == 1, direct
    assert graph['batches'] == sum(n for r, n in direct.items() if r.endswith('$batch')) and graph['batches'] >= 5, graph
    batched = data['batch_by_route']
    batched_writes = sum(n for r, n in batched.items() if not r.startswith('GET '))
    assert graph['writes'] == batched_writes and graph['writes'] >= 38 * 3, (graph, batched)
    # the reads in bulk: uniqueName/displayName in (...), service principals, credentials per application, in batches
    assert batched.get('GET /v1.0/applications', 0) >= 2 and batched.get('GET /beta/applications/{id}/federatedIdentityCredentials', 0) == 0
    # one token per service for the whole call
    assert data['tokens_by_service'] == {'graph': 1, 'arm': 1}, data['tokens_by_service']
    made = managed_state(sb)
    assert len(made) == 38 and all(app['sp'] and app['fics'] and app['roles'] for app in made.values()), made

    # the re-run reads in bulk too and writes nothing
    reset_stats(sb)
    again = ok(run_module, sb, projects=items)
    data = stats(sb)
    assert not again['changed'] and writes(sb) == 0, json.dumps(again['projects'], indent=1)[:2000]
    assert set(_graph_routes(data['by_route'])) <= {'POST /v1.0/$batch', 'POST /beta/$batch', 'GET /v1.0/applications'}
    assert data['batch_by_route'].get('GET /beta/applications/{id}/federatedIdentityCredentials') == 38, data['batch_by_route']

    # the same projects one call each (the role's per_host strategy) leave the same state and the same results
    sb.reset()
    alone = {}
    for item in items:
        alone.update(ok(run_module, sb, projects=[item])['projects'])
    assert managed_state(sb) == made
    for key, item in zip(keys, items):
        shared = bool(item.get('shared_app'))
        assert _per_project(together['projects'][key], shared) == _per_project(alone[key], shared), key


def test_the_persistent_worker_runs_the_call_as_the_module_process_would(run_module, clean_sandbox):
    import pathlib
    import tempfile
    sb = clean_sandbox
    cache = pathlib.Path(tempfile.mkdtemp(prefix='wk-', dir='/tmp'))  # a Unix socket path must stay short
    worker = dict(persistent_worker=True, token_cache_dir=str(cache))
    try:
        planned_here = ok(run_module, sb, projects=projects(sb), check=True, diff=True)
        planned_there = ok(run_module, sb, projects=projects(sb), check=True, diff=True, **worker)
        assert planned_there['summary'] == planned_here['summary'] and len(planned_there['diff']) == 5
        assert writes(sb) == 0 and app_names(sb) == []
        sockets = list((cache / 'workers').glob('*.sock'))
        assert len(sockets) == 1 and (sockets[0].stat().st_mode & 0o777) == 0o600, sockets
        done = ok(run_module, sb, projects=projects(sb), **worker)
        assert done['changed'] and done['summary'] == {'projects': 5, 'changed': 5, 'failed': 0}
        assert list((cache / 'workers').glob('*.sock')) == sockets  # the same worker served both calls
        reset_stats(sb)
        again = ok(run_module, sb, projects=projects(sb))  # in this process: nothing left to do
        assert not again['changed'] and writes(sb) == 0
        definitions_read_here = role_definition_reads(sb)
        assert definitions_read_here > 0
        reset_stats(sb)
        again = ok(run_module, sb, projects=projects(sb), **worker)  # the worker's clients of the last call, shared
        assert not again['changed'] and writes(sb) == 0 and role_definition_reads(sb) == 0, stats(sb)['by_route']
        bad = dict(projects(sb)[0], role_assignments=[{'role': 'Reader', 'resource_group': 'rg-that-does-not-exist'}])
        code, failed = run(run_module, sb, projects=[bad], **worker)
        assert code != 0 and 'rg-that-does-not-exist' in failed['msg'], failed
        # The module's own checks and the auth checks run in the worker now (the module process only parses the
        # options): the same failures, with the same messages, as when the module process runs the call itself.
        twice = [projects(sb)[0], projects(sb)[0]]
        for bad_args in (dict(projects=twice), dict(projects=projects(sb)[:1], concurrency=0),
                         dict(projects=projects(sb)[:1], tenant_id='not a tenant!')):
            reset_stats(sb)
            here, there = run(run_module, sb, **bad_args), run(run_module, sb, **dict(bad_args, **worker))
            assert here[0] == there[0] == 1 and there[1]['failed'] and there[1]['msg'] == here[1]['msg'], (here, there)
            assert writes(sb) == 0
    finally:
        _stop_workers(cache)


def _stop_workers(cache):
    """Stop the workers started under the token cache directory ``cache`` (their command line names it), remove it."""
    import os
    import shutil
    import signal
    for pid in os.listdir('/proc'):
        try:
            with open('/proc/{0}/cmdline'.format(pid), 'rb') as handle:
                if str(cache).encode() in handle.read():
                    os.kill(int(pid), signal.SIGTERM)
        except (OSError, ValueError):
            pass
    shutil.rmtree(cache, ignore_errors=True)


def test_preload_imports_the_core_and_the_sdks_a_run_loads():
    """What a persistent worker imports as it starts (gitlab_oidc_projects.preload), in a fresh interpreter: the module
    core and the SDKs a run's clients load, not msgraph's GraphServiceClient, which no run uses."""
    import subprocess
    code = ('import json, sys\n'
            'from ansible_collections.oidc_federation.azure.plugins.modules import gitlab_oidc_projects\n'
            'gitlab_oidc_projects.preload()\n'
            'print(json.dumps(sorted(sys.modules)))\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(proc.stdout))
    core = 'ansible_collections.oidc_federation.azure.plugins.module_utils.'
    assert {core + name for name in ('_module', '_onboarding', '_clients', '_pacing', '_results')} <= loaded
    assert {'azure.identity.aio', 'aiohttp', 'kiota_http.httpx_request_adapter', 'azure.mgmt.authorization.aio'} <= loaded
    assert 'msgraph.graph_service_client' not in loaded


def untouched(sb):
    """No request to Entra ID, Graph, ARM or GitLab since the last reset (the sandbox's own control API aside)."""
    counts = stats(sb)
    return set(counts['by_service']) <= {'control'} and counts['tokens_issued'] == 0


def test_prestart_worker_starts_the_worker_that_the_calls_then_use(run_module, clean_sandbox):
    """prestart_worker starts the worker and returns, reading and writing nothing; the next prestart finds it
    running, and the calls run on it (one socket); it refuses a call that has projects or no persistent_worker."""
    import pathlib
    import tempfile
    sb = clean_sandbox
    cache = pathlib.Path(tempfile.mkdtemp(prefix='wk-', dir='/tmp'))  # a Unix socket path must stay short
    worker = dict(persistent_worker=True, token_cache_dir=str(cache))
    try:
        reset_stats(sb)
        started = ok(run_module, sb, projects=[], prestart_worker=True, **worker)
        assert started['worker'] == 'started' and not started['changed'] and started['summary']['projects'] == 0, started
        sockets = list((cache / 'workers').glob('*.sock'))
        assert len(sockets) == 1, sockets
        assert ok(run_module, sb, projects=[], prestart_worker=True, check=True, **worker)['worker'] == 'running'
        assert untouched(sb), stats(sb)['by_route']
        done = ok(run_module, sb, projects=projects(sb)[:2], **worker)
        assert done['summary'] == {'projects': 2, 'changed': 2, 'failed': 0}
        assert list((cache / 'workers').glob('*.sock')) == sockets  # the worker it started ran the call
        reset_stats(sb)
        for bad_args, field in ((dict(projects=projects(sb)[:1], **worker), 'projects must be empty'),
                                (dict(projects=[], token_cache_dir=str(cache)), 'needs persistent_worker=true')):
            code, failed = run(run_module, sb, prestart_worker=True, **bad_args)
            assert code == 1 and failed['failed'] and field in failed['msg'] and 'Fix:' in failed['msg'], failed
        assert untouched(sb), stats(sb)['by_route']
    finally:
        _stop_workers(cache)


def test_the_module_process_of_a_worker_call_does_not_import_the_module_core(tmp_path):
    """With persistent_worker, the module process parses its options and hands them over: it must not import the
    module core (_module, _auth, _errors, _token_cache, _onboarding...), which costs every process ~30 ms of CPU."""
    import subprocess
    script = tmp_path / 'run.py'
    script.write_text("""
import json, sys
from ansible.module_utils.testing import patch_module_args
from ansible_collections.oidc_federation.azure.plugins.module_utils import _worker
answered = []
def call(self, request, timeout=None):
    answered.append(request)
    return {'failed': False, 'result': {'changed': True, 'answer': 'from the worker'}, 'warnings': ['worker said so']}
_worker.WorkerClient.call = call
from ansible_collections.oidc_federation.azure.plugins.modules import gitlab_oidc_projects
args = {'persistent_worker': True, 'token_cache_dir': sys.argv[1], 'tenant_id': 'contoso.example',
        'projects': [{'project_path': 'g/p', 'issuer': 'https://gitlab.example.com'}]}
with patch_module_args(args):
    try:
        gitlab_oidc_projects.main()
    except SystemExit:
        pass
loaded = sorted(name.rsplit('.', 1)[-1] for name in sys.modules
                if name.startswith('ansible_collections.oidc_federation.azure.plugins.module'))
sys.stderr.write(json.dumps({'loaded': loaded, 'requests': answered}))
""")
    import shutil
    import tempfile
    cache = tempfile.mkdtemp(prefix='wk-', dir='/tmp')  # a Unix socket path must stay short
    try:
        proc = subprocess.run([sys.executable, str(script), cache], capture_output=True, text=True, check=False)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    result = json.loads(proc.stdout)
    seen = json.loads(proc.stderr.strip().splitlines()[-1])
    assert result.get('answer') == 'from the worker' and result['changed'] is True, (result, seen)
    assert 'worker said so' in json.dumps(result['warnings']), result  # structured in ansible-core 2.19's raw output
    assert seen['requests'][0]['params']['projects'][0]['project_path'] == 'g/p'
    assert seen['loaded'] == ['_auth_spec', '_final', '_private_files', '_project_options', '_worker',
                              'gitlab_oidc_projects', 'module_utils', 'modules'], seen['loaded']
