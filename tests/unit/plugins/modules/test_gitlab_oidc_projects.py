# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""gitlab_oidc_projects run in-process against the sandbox.

State is checked through the sandbox's control API (``/_sandbox/state``, ``/_sandbox/stats``), never through the
module under test.
"""

from __future__ import annotations

import json
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
    assert stats(sb)['writes'] == 0
