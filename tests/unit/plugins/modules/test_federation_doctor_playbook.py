# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""playbooks/doctor.yml, run with ansible-playbook against the sandbox (connection settings from the environment)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif('oidc_sandbox_test_fixtures' not in sys.modules,
                                reason='the sandbox package (sandbox/oidc_sandbox) is not in this checkout')

ROOT = Path(__file__).resolve().parents[4]
PLAYBOOK = ROOT / 'playbooks' / 'doctor.yml'
SUB_MAIN = 'project_path:mygroup/myproject:ref_type:branch:ref:main'


def setup_app(sb):
    response = sb.graph('POST', '/v1.0/applications', json={'displayName': 'doctor-pb', 'signInAudience': 'AzureADMyOrg',
                                                            'uniqueName': 'gitlab-oidc-' + uuid.uuid4().hex[:8]})
    assert response.status_code == 201, response.text
    app = response.json()
    assert sb.graph('POST', '/v1.0/servicePrincipals', json={'appId': app['appId']}).status_code == 201
    response = sb.graph('POST', '/v1.0/applications/{0}/federatedIdentityCredentials'.format(app['id']),
                        json={'name': 'deploy-main', 'issuer': sb.gitlab_issuer, 'audiences': [sb.gitlab_issuer], 'subject': SUB_MAIN})
    assert response.status_code == 201, response.text
    return app


def collections_root():
    """Where the collection is importable as oidc_federation.azure (the script links it there and prints the root)."""
    return subprocess.run(['bash', str(ROOT / 'scripts' / 'collection-root.sh')], capture_output=True, text=True,
                          check=True).stdout.strip()


def playbook(sb, *extra_vars, token=None):
    env = {key: value for key, value in os.environ.items() if not key.startswith(('AZURE_', 'GITLAB_', 'DOCTOR_'))}
    env.update({'AZURE_TENANT_ID': sb.tenant_id, 'AZURE_CLIENT_ID': sb.operator.client_id, 'AZURE_CLIENT_SECRET': sb.operator.secret,
                'AZURE_AUTHORITY_HOST': sb.url, 'AZURE_GRAPH_ENDPOINT': sb.url, 'AZURE_RESOURCE_MANAGER_ENDPOINT': sb.url,
                'AZURE_CA_BUNDLE': sb.ca_file, 'ANSIBLE_COLLECTIONS_PATH': collections_root(),
                'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_LOCALHOST_WARNING': 'false', 'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false'})
    if token:
        env['DOCTOR_ID_TOKEN'] = token
    args = [str(Path(sys.executable).parent / 'ansible-playbook'), str(PLAYBOOK), '-v',
            '-e', 'doctor_gitlab_issuers=["{0}"]'.format(sb.gitlab_issuer)]
    for item in extra_vars:
        args += ['-e', item]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=240, check=False)


def test_playbook_reports_and_fails_for_another_ref(clean_sandbox):
    sb = clean_sandbox
    app = setup_app(sb)
    done = playbook(sb, 'doctor_app=' + app['uniqueName'], 'doctor_project_path=mygroup/myproject', 'doctor_ref=develop',
                    'doctor_issuer=' + sb.gitlab_issuer)
    assert done.returncode == 2, done.stdout + done.stderr
    assert 'LOGIN FAILS: AADSTS700213' in done.stdout
    assert "ref: credential 'main', token 'develop'" in done.stdout
    assert 'Closest credential: deploy-main' in done.stdout


def test_playbook_with_a_token_from_the_environment(clean_sandbox):
    sb = clean_sandbox
    app = setup_app(sb)
    token = sb.mint_gitlab_token(project_path='mygroup/myproject', ref='main', aud=sb.gitlab_issuer)
    done = playbook(sb, 'doctor_app=' + app['appId'], token=token)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'LOGIN WORKS with credential deploy-main' in done.stdout
    assert token not in done.stdout + done.stderr and token.split('.')[2] not in done.stdout + done.stderr
    assert sb.operator.secret not in done.stdout + done.stderr


def test_playbook_needs_the_application(clean_sandbox):
    done = playbook(clean_sandbox, 'doctor_ref=main')
    assert done.returncode == 2 and 'Set doctor_app' in done.stdout
