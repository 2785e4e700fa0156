# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Module processes against the sandbox: the run's processes share one access token per service (counted by the
sandbox's token endpoint), and each process imports only the SDKs it uses (checked in the process's sys.modules).

Every module runs in a fresh interpreter, as Ansible runs it; the unit tests' autouse fixture gives each test its
own ``XDG_RUNTIME_DIR``, so the token cache starts empty."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif('oidc_sandbox_test_fixtures' not in sys.modules,
                                reason='the sandbox package (sandbox/oidc_sandbox) is not in this checkout')

from ansible_collections.oidc_federation.azure.plugins.module_utils import _module  # noqa: E402
from ansible_collections.oidc_federation.azure.tests.unit.plugins.modules.sandbox_auth import auth_args  # noqa: E402

COLLECTIONS_ROOT = Path(_module.__file__).parents[5]
JWT = re.compile(r'eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.')

# The SDK stacks, by the top-level names of their Python packages.
ARM_STACK = ('azure.core', 'azure.mgmt', 'aiohttp')
GRAPH_STACK = ('httpx', 'kiota_abstractions', 'kiota_http')
TYPED_GRAPH_SDK = ('msgraph', 'msgraph_core', 'kiota_authentication_azure')
ENTRA_STACK = ('azure.identity', 'msal')
HTTPX_CLI = ('click', 'rich', 'pygments')

PROBE = textwrap.dedent('''
    import asyncio, importlib, json, sys
    from ansible.module_utils.testing import patch_module_args
    what, args = sys.argv[1], json.loads(sys.argv[2])
    if what == 'arm-only':
        from ansible_collections.oidc_federation.azure.plugins.module_utils._auth import resolve_auth
        from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import Clients

        async def main():
            async with Clients(resolve_auth(args, environ={})) as clients:
                subscriptions = await clients.arm_list('/subscriptions', api_version='2022-12-01')
                return {'subscriptions': [s['subscriptionId'] for s in subscriptions]}

        print(json.dumps(asyncio.run(main())))
    else:
        main = importlib.import_module('ansible_collections.oidc_federation.azure.plugins.modules.' + what).main
        try:
            with patch_module_args(args):
                main()
        except SystemExit:
            pass
    sys.stderr.write('\\nMODULES ' + json.dumps(sorted(name for name, module in sys.modules.items() if module is not None)))
''')


def run(sb, what, **args):
    """Run module ``what`` (or the ARM-only probe) in a new interpreter; returns (result, loaded module names)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(COLLECTIONS_ROOT), os.environ.get('PYTHONPATH')) if p))
    proc = subprocess.run([sys.executable, '-c', PROBE, what, json.dumps(auth_args(sb, **args))], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert not JWT.search(proc.stdout + proc.stderr), 'a token appears in the output of ' + what
    result = json.loads(proc.stdout)
    assert not result.get('failed'), result
    loaded = json.loads(proc.stderr.rsplit('\nMODULES ', 1)[1])
    return result, loaded


def tokens_issued(sb):
    return sb.control('GET', 'stats').json()['tokens_issued']


def imported(loaded, stack):
    """The names of ``stack`` (packages) that the process imported."""
    return sorted({name for name in stack for module in loaded if module == name or module.startswith(name + '.')})


def test_a_run_asks_entra_once_per_service_and_processes_import_only_what_they_use(clean_sandbox):
    sb = clean_sandbox

    # 1. The first Graph process of the run: no token in the cache yet, so azure-identity asks Entra.
    app, loaded = run(sb, 'azure_ad_app', unique_name='token-cache-app')
    assert tokens_issued(sb) == 1
    assert imported(loaded, ENTRA_STACK) == ['azure.identity', 'msal']
    assert imported(loaded, ('azure.mgmt',) + TYPED_GRAPH_SDK + HTTPX_CLI) == []

    # 2. Another Graph process: the token comes from the cache; no azure-identity/MSAL and no ARM stack at all.
    found, loaded = run(sb, 'azure_ad_app_info', unique_name='token-cache-app')
    assert [a['app_id'] for a in found['applications']] == [app['app_id']]
    assert tokens_issued(sb) == 1
    assert imported(loaded, GRAPH_STACK) == sorted(GRAPH_STACK)
    assert imported(loaded, ARM_STACK + ENTRA_STACK + TYPED_GRAPH_SDK + HTTPX_CLI) == []

    # 3. Graph and ARM: the Graph token is shared, the ARM token is new (one more token, the last of the run).
    assignment = dict(app_id=app['app_id'], role='Reader', scope='/subscriptions/' + sb.subscription_id)
    assert run(sb, 'role_assignment', **assignment)[0]['changed'] is True
    assert tokens_issued(sb) == 2
    result, loaded = run(sb, 'role_assignment', **assignment)
    assert result['changed'] is False and tokens_issued(sb) == 2
    assert imported(loaded, ENTRA_STACK + TYPED_GRAPH_SDK) == []

    # 4. A process that only talks to ARM loads nothing of Graph's stack.
    result, loaded = run(sb, 'arm-only')
    assert result['subscriptions'] == [sb.subscription_id] and tokens_issued(sb) == 2
    assert imported(loaded, ('azure.core', 'azure.mgmt')) == ['azure.core', 'azure.mgmt']
    assert imported(loaded, GRAPH_STACK + TYPED_GRAPH_SDK + ENTRA_STACK + HTTPX_CLI) == []


def test_with_the_cache_off_every_process_asks_entra(clean_sandbox, tmp_path):
    sb = clean_sandbox
    for expected in (1, 2):
        run(sb, 'azure_ad_app_info', unique_name='nothing-here', token_cache=False, token_cache_dir=str(tmp_path / 'tokens'))
        assert tokens_issued(sb) == expected
    assert not (tmp_path / 'tokens').exists()


def test_a_cached_token_the_service_refuses_is_replaced(clean_sandbox):
    """A token from the cache that Graph refuses (here: the sandbox's clock moved past its expiry) is dropped, and the
    request is sent again with a new token from Entra."""
    sb = clean_sandbox
    run(sb, 'azure_ad_app_info', unique_name='nothing-here')
    assert sb.control('POST', 'clock', json={'advance': 3700}).status_code == 200
    run(sb, 'azure_ad_app_info', unique_name='nothing-here')
    assert tokens_issued(sb) == 2
    stats = sb.control('GET', 'stats').json()
    assert stats['by_status'].get('401') == 1, stats['by_status']
