# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""azure_ad_app_info run in-process against the sandbox; the applications are made with raw Graph calls."""

from __future__ import annotations

import json
import sys

import pytest

pytestmark = pytest.mark.skipif('oidc_sandbox_test_fixtures' not in sys.modules,
                                reason='the sandbox package (sandbox/oidc_sandbox) is not in this checkout')

from ansible_collections.oidc_federation.azure.plugins.modules import azure_ad_app_info  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._graph import MANAGED_TAG  # noqa: E402


def run_info(run_module, sb, *, check=False, **args):
    params = {'auth_source': 'client_secret', 'tenant_id': sb.tenant_id, 'client_id': sb.operator.client_id,
              'client_secret': sb.operator.secret, 'authority_host': sb.url, 'graph_endpoint': sb.url,
              'resource_manager_endpoint': sb.url, 'ca_bundle': sb.ca_file, '_ansible_check_mode': check}
    params.update(args)
    return run_module(azure_ad_app_info.main, params)


def found(run_module, sb, **args):
    code, result = run_info(run_module, sb, **args)
    assert code == 0 and not result.get('failed'), result
    assert result['changed'] is False
    assert sb.operator.secret not in json.dumps(result)
    return result['applications']


def upsert(sb, token, unique_name, display_name, tags=(), with_sp=True):
    response = sb.graph('PATCH', "/v1.0/applications(uniqueName='{0}')".format(unique_name), token=token,
                        headers={'Prefer': 'create-if-missing'},
                        json={'displayName': display_name, 'tags': list(tags), 'signInAudience': 'AzureADMyOrg'})
    assert response.status_code == 201, response.text
    app = response.json()
    sp = None
    if with_sp:
        response = sb.graph('POST', '/v1.0/servicePrincipals', token=token, json={'appId': app['appId']})
        assert response.status_code == 201, response.text
        sp = response.json()
    return app, sp


@pytest.fixture
def apps(clean_sandbox):
    sb = clean_sandbox
    token = sb.token()
    made = {
        'alpha': upsert(sb, token, 'alpha', 'Shared Name', tags=[MANAGED_TAG, 'team-a']),
        'beta': upsert(sb, token, 'beta', 'Shared Name', tags=[MANAGED_TAG], with_sp=False),
        'gamma': upsert(sb, token, 'gamma', "O'Brien's app", tags=['team-a']),
    }
    response = sb.graph('POST', '/v1.0/applications', token=token, json={'displayName': 'gitlab-oidc'})
    assert response.status_code == 201
    made['byhand'] = (response.json(), None)
    sb.control('POST', 'stats/reset')
    return sb, made


def ids(applications):
    return sorted(a['app_id'] for a in applications)


def test_by_unique_name_with_service_principal(run_module, apps):
    sb, made = apps
    app, sp = made['alpha']
    result = found(run_module, sb, unique_name='alpha')
    assert len(result) == 1
    item = result[0]
    assert item['app_id'] == app['appId'] and item['object_id'] == app['id'] and item['unique_name'] == 'alpha'
    assert item['service_principal_id'] == sp['id'] and item['managed'] is True
    assert item['tags'] == [MANAGED_TAG, 'team-a'] and item['sign_in_audience'] == 'AzureADMyOrg'
    assert found(run_module, sb, unique_name='BETA')[0]['service_principal_id'] is None  # keys compare case-insensitively
    assert found(run_module, sb, unique_name='missing') == []


def test_by_app_id_display_name_tag_and_combinations(run_module, apps):
    sb, made = apps
    assert ids(found(run_module, sb, app_id=made['gamma'][0]['appId'])) == [made['gamma'][0]['appId']]
    assert found(run_module, sb, app_id='3f2504e0-4f89-41d3-9a0c-0305e82c3301') == []
    assert ids(found(run_module, sb, display_name='Shared Name')) == sorted([made['alpha'][0]['appId'], made['beta'][0]['appId']])
    assert ids(found(run_module, sb, display_name="O'Brien's app")) == [made['gamma'][0]['appId']]  # quote doubled
    assert ids(found(run_module, sb, tag=MANAGED_TAG)) == sorted([made['alpha'][0]['appId'], made['beta'][0]['appId']])
    assert ids(found(run_module, sb, tag='team-a', display_name='Shared Name')) == [made['alpha'][0]['appId']]
    assert ids(found(run_module, sb, unique_name='alpha', tag='team-a')) == [made['alpha'][0]['appId']]
    hand = found(run_module, sb, display_name='gitlab-oidc')
    assert hand[0]['unique_name'] is None and hand[0]['managed'] is False


def test_all_in_check_mode_without_writes(run_module, apps):
    sb, made = apps
    everything = found(run_module, sb, check=True)
    assert {a['app_id'] for a in everything} >= {m[0]['appId'] for m in made.values()}
    assert [a['display_name'].lower() for a in everything] == sorted(a['display_name'].lower() for a in everything)
    spids = {a['app_id']: a['service_principal_id'] for a in everything}
    assert spids[made['alpha'][0]['appId']] == made['alpha'][1]['id'] and spids[made['gamma'][0]['appId']] == made['gamma'][1]['id']
    assert spids[sb.operator.client_id]  # the seeded operator has one too
    assert sb.control('GET', 'stats').json()['writes'] == 0


@pytest.mark.parametrize('args,field', [({'app_id': 'not-a-guid'}, 'app_id'), ({'unique_name': ''}, 'unique_name'),
                                        ({'tag': ''}, 'tag')])
def test_bad_input(run_module, apps, args, field):
    sb, _made = apps
    code, result = run_info(run_module, sb, **args)
    assert code == 1 and result['msg'].startswith(field + ':'), result
    stats = sb.control('GET', 'stats').json()
    assert stats['reads'] == stats['writes'] == stats['tokens_issued'] == 0  # refused before any request
