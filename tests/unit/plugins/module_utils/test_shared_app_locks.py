# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Calls on one shared application run one at a time (``NamedLocks``, ``Run._shared_app_locks``).

Without it, two concurrent offboarding calls for the two projects of one shared application (per_host: one module
call per project) each read the other's credential before it was deleted, and both kept the application.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils._token_cache import NamedLocks


def test_holders_of_one_name_take_turns_and_other_names_do_not_wait(tmp_path):
    directory = str(tmp_path / 'locks')
    order = []

    async def hold(tag, names, seconds):
        async with NamedLocks(directory, names, timeout=10):
            order.append(tag + '+')
            await asyncio.sleep(seconds)
            order.append(tag + '-')

    async def main():
        first = asyncio.ensure_future(hold('a', ['t|shared'], 0.3))
        await asyncio.sleep(0.05)
        await asyncio.gather(hold('b', ['t|shared', 't|other'], 0), hold('c', ['t|third'], 0), first)

    asyncio.run(main())
    assert order.index('b+') > order.index('a-'), order   # b waited for a
    assert order.index('c+') < order.index('a-'), order   # c did not
    st = os.lstat(directory)
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert all(stat.S_IMODE(os.lstat(os.path.join(directory, f)).st_mode) == 0o600 for f in os.listdir(directory))


def test_a_lock_held_too_long_times_out_and_gives_nothing_back_half_taken(tmp_path):
    directory = str(tmp_path / 'locks')

    async def main():
        async with NamedLocks(directory, ['t|b'], timeout=10):
            with pytest.raises(TimeoutError):
                async with NamedLocks(directory, ['t|a', 't|b'], timeout=0.2):
                    pass
            # 't|a' was taken before the timeout on 't|b': it was given back
            async with NamedLocks(directory, ['t|a'], timeout=0.2):
                pass

    asyncio.run(main())


@pytest.mark.skipif('oidc_sandbox_test_fixtures' not in sys.modules, reason='needs the sandbox')
def test_concurrent_offboarding_of_one_shared_application_removes_it(clean_sandbox, tmp_path):
    from ansible_collections.oidc_federation.azure.plugins.module_utils._auth import resolve_auth
    from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import Clients
    from ansible_collections.oidc_federation.azure.plugins.module_utils._onboarding import RunOptions, parse_projects, reconcile

    sb = clean_sandbox
    iss = sb.env['SANDBOX_GITLAB_ISSUER']
    auth = {'auth_source': 'client_secret', 'tenant_id': sb.tenant_id, 'client_id': sb.operator.client_id,
            'client_secret': sb.operator.secret, 'subscription_id': sb.subscription_id, 'authority_host': sb.url,
            'graph_endpoint': sb.url, 'resource_manager_endpoint': sb.url, 'ca_bundle': sb.bundle_file,
            'token_cache_dir': str(tmp_path / 'tokens')}
    items = [{'project_path': 'demo/services/' + name, 'shared_app': 'gitlab-oidc-lock-test', 'issuer': iss,
              'gitlab_issuers': [iss], 'branches': ['main'], 'subscription_id': sb.subscription_id} for name in ('orders', 'billing')]

    async def call(item, state):
        projects, errors = parse_projects([item], defaults={'state': state})
        assert not errors, errors
        clients = Clients(resolve_auth(auth, environ={}))
        try:
            outcomes = (await reconcile(clients, projects, RunOptions()))[1]
        finally:
            await clients.close()
        assert not any(o.failed for o in outcomes.values()), [o.msg for o in outcomes.values()]

    async def both(state):  # as the persistent worker runs the calls of two forks: side by side in one loop
        await asyncio.gather(*(call(item, state) for item in items))

    def apps():
        return [a for a in sb.control('GET', 'state').json()['applications'] if a.get('uniqueName') == 'gitlab-oidc-lock-test']

    asyncio.run(both('present'))
    assert len(apps()) == 1
    asyncio.run(both('absent'))
    assert apps() == [], 'the shared application was kept although no project trusts it any more'
