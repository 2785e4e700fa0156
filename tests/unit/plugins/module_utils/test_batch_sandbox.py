# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Graph $batch executor and the pacer against the sandbox: every call ends with the right result under
replication lag, inner 429s and 5xx; a request that succeeded is never sent again; dependsOn order holds; with
Graph's quotas on (scaled down) the pacer keeps every request out of the quota buckets' 429s. Skipped when the
sandbox package is not part of this checkout."""

from __future__ import annotations

import asyncio
import sys
import uuid

import pytest

pytestmark = pytest.mark.skipif('oidc_sandbox_test_fixtures' not in sys.modules,
                                reason='the sandbox package (sandbox/oidc_sandbox) is not in this checkout')

from ansible_collections.oidc_federation.azure.plugins.module_utils._batch import BatchStats, GraphCall, run_graph_calls  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import ApiResponse  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import AzureApiError  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._pacing import GraphPacer  # noqa: E402
from ansible_collections.oidc_federation.azure.plugins.module_utils._retry import RetryPolicy  # noqa: E402
from ansible_collections.oidc_federation.azure.tests.unit.plugins.module_utils.test_clients_sandbox import clients_for  # noqa: E402

AUDIENCE = 'api://AzureADTokenExchange'
CREATE = {'Prefer': 'create-if-missing'}
# Scaled like the sandbox's graph_quotas below: buckets 100 times smaller, the real refill rates (20 writes/s).
QUOTAS = {'tenant_size': 'S', 'scale': 0.01, 'window_scale': 0.01}


def quick_policy(max_attempts=8):
    """Real (short) waits: the sandbox's lag and buckets run on real time (Retry-After clamped to 0.3 s)."""
    return RetryPolicy(max_attempts=max_attempts, base_delay=0.05, max_delay=0.2, max_retry_after=0.3, replication_timeout=15,
                       replication_delay=0.1, replication_max_delay=0.3)


class Recorder:
    """Wraps ``clients.graph_request`` to record every inner request sent and the status it got."""

    def __init__(self, clients):
        self.sent = []        # (batch id, request dict, status)
        self.batches = 0
        self._send = clients.graph_request
        clients.graph_request = self

    async def __call__(self, method, path, **kwargs):
        self.batches += 1
        batch = self.batches
        requests = kwargs['json_body']['requests']
        try:
            response = await self._send(method, path, **kwargs)
        except AzureApiError:
            self.sent.extend((batch, r, None) for r in requests)
            raise
        statuses = {r['id']: r['status'] for r in response.data['responses']}
        self.sent.extend((batch, r, statuses.get(r['id'])) for r in requests)
        return response

    def successes(self):
        """How many times each call (by its position) was answered 2xx."""
        counts = {}
        for _batch, request, status in self.sent:
            if status is not None and status < 400:
                counts[int(request['id'])] = counts.get(int(request['id']), 0) + 1
        return counts


def app_upsert(name, **kwargs):
    return GraphCall('PATCH', "/applications(uniqueName='{0}')".format(name), headers=CREATE,
                     body={'displayName': name, 'signInAudience': 'AzureADMyOrg'}, operation='upsert application',
                     target=name, **kwargs)


def fic_upsert(sb, app, name, description, **kwargs):
    url = "/applications(uniqueName='{0}')/federatedIdentityCredentials(name='{1}')".format(app, name)
    body = {'name': name, 'issuer': sb.gitlab_issuer, 'subject': 'project_path:g/{0}:ref_type:branch:ref:{1}'.format(app, name),
            'audiences': [AUDIENCE], 'description': description}
    return GraphCall('PATCH', url, version='beta', headers=CREATE, body=body, operation='upsert federated identity credential',
                     target='{0}/{1}'.format(app, name), retry_not_found=True, **kwargs)


def onboarding_calls(sb, prefix, apps):
    """Per application: an upsert, then three writes of one credential (v1, v2, v3) that must land in order."""
    calls, names = [], []
    for n in range(apps):
        name = '{0}-{1}-{2}'.format(prefix, n, uuid.uuid4().hex[:6])
        names.append(name)
        calls.append(app_upsert(name, id=name))
        previous = name
        for version in ('v1', 'v2', 'v3'):
            call_id = '{0}/{1}'.format(name, version)
            calls.append(fic_upsert(sb, name, 'main', version, id=call_id, depends_on=[previous]))
            previous = call_id
    return calls, names


def state_fics(sb):
    state = sb.control('GET', 'state').json()
    apps = {a['id']: a.get('uniqueName') for a in state['applications']}
    return {apps[app_id]: fics for app_id, fics in state['federated_identity_credentials'].items() if app_id in apps}


def test_onboarding_through_batches_under_lag_throttling_and_5xx(clean_sandbox):
    sb = clean_sandbox
    sb.faults(seed=11, replication_lag=0.4, rules=[  # some fire at fixed places (after/times), some at random
        {'service': 'graph', 'kind': 'throttle', 'after': 2, 'times': 6, 'retry_after': 1,
         'path': 'federatedIdentityCredentials'},
        {'service': 'graph', 'kind': 'error', 'status': 500, 'after': 10, 'times': 3, 'methods': ['PATCH']},
        {'service': 'graph', 'kind': 'throttle', 'rate': 0.1, 'retry_after': 1, 'path': 'federatedIdentityCredentials'},
        {'service': 'graph', 'kind': 'error', 'status': 503, 'rate': 0.08, 'path': r'/(applications|\$batch)'},
        {'service': 'graph', 'kind': 'error', 'status': 502, 'rate': 0.05, 'methods': ['PATCH']},
    ])
    calls, names = onboarding_calls(sb, 'bulk', 12)
    stats = BatchStats()

    async def main():
        # The random rules stack up on a credential's PATCH inside a batch (the envelope's 503, then the request's
        # throttle, 503 and 502): about 28 % of its attempts fail. With 8 attempts one of the run's 40-odd writes ran
        # out of them about once in a few hundred runs (seen once); 12 make that about once in 100,000.
        async with clients_for(sb, quick_policy(max_attempts=12)) as clients:
            recorder = Recorder(clients)
            results = await run_graph_calls(clients, calls, stats=stats)
            return results, recorder, clients.retry_policy.stats

    results, recorder, retry_stats = asyncio.run(main())
    assert all(isinstance(r, ApiResponse) for r in results), [r for r in results if not isinstance(r, ApiResponse)]
    for n, (call, result) in enumerate(zip(calls, results)):      # results in input order
        assert result.status in (200, 201, 204), (n, result)
        if call.method == 'PATCH' and 'federatedIdentityCredentials' not in call.url and result.status == 201:
            assert result.data['uniqueName'] == call.target
    assert recorder.successes() == {n: 1 for n in range(len(calls))}   # nothing that succeeded was sent again
    assert retry_stats.throttled and retry_stats.replication and retry_stats.transient  # the faults did happen
    fics = state_fics(sb)
    for name in names:                                            # one credential each, the last write won
        assert [(f['name'], f['description']) for f in fics[name]] == [('main', 'v3')]
    by_batch = {}                                                  # fully parallel or fully sequential batches
    for batch, request, _status in recorder.sent:
        by_batch.setdefault(batch, []).append(request)
    for requests in by_batch.values():
        deps = [r.get('dependsOn') for r in requests]
        assert all(d is None for d in deps) or deps == [None] + [[requests[i - 1]['id']] for i in range(1, len(requests))]
    assert stats.sequential and stats.batches == recorder.batches


def test_a_failed_write_fails_only_what_depends_on_it(clean_sandbox):
    sb = clean_sandbox
    name = 'dep-' + uuid.uuid4().hex[:6]
    bad = fic_upsert(sb, name, 'bad', 'x', id='bad', depends_on=['app'])
    bad.body['audiences'] = [AUDIENCE, 'second-audience']            # Graph takes exactly one audience
    calls = [app_upsert(name, id='app'), bad, fic_upsert(sb, name, 'after', 'x', id='after', depends_on=['bad']),
             fic_upsert(sb, name, 'sibling', 'x', id='sibling', depends_on=['app'])]

    async def main():
        async with clients_for(sb, quick_policy()) as clients:
            recorder = Recorder(clients)
            return await run_graph_calls(clients, calls), recorder

    results, recorder = asyncio.run(main())
    assert results[0].status == 201 and results[3].status == 201
    assert isinstance(results[1], AzureApiError) and results[1].status == 400
    assert str(results[1]).startswith('upsert federated identity credential {0}/bad failed: Graph 400'.format(name))
    assert isinstance(results[2], AzureApiError) and results[2].code == results[1].code
    assert 'not attempted: it depends on upsert federated identity credential {0}/bad'.format(name) in str(results[2])
    assert sorted(f['name'] for f in state_fics(sb)[name]) == ['sibling']
    assert not any(r['id'] == '2' and s is not None and s < 400 for _b, r, s in recorder.sent)


def test_reads_of_many_applications_through_beta_batches(clean_sandbox):
    sb = clean_sandbox
    calls, names = onboarding_calls(sb, 'read', 30)

    async def main():
        async with clients_for(sb, quick_policy()) as clients:
            writes = await run_graph_calls(clients, calls)
            assert all(isinstance(r, ApiResponse) for r in writes)
            sb.control('POST', 'stats/reset')
            reads = [GraphCall('GET', "/applications(uniqueName='{0}')/federatedIdentityCredentials".format(name),
                               version='beta', params={'$select': 'name,description'}, all_pages=True,
                               operation='list federated identity credentials', target=name) for name in names]
            reads.append(GraphCall('GET', "/applications(uniqueName='nobody-{0}')".format(uuid.uuid4().hex[:6]),
                                   operation='get application', target='nobody'))
            return await run_graph_calls(clients, reads)

    results = asyncio.run(main())
    for name, result in zip(names, results):
        assert [(f['name'], f['description']) for f in result.data['value']] == [('main', 'v3')], name
    assert isinstance(results[-1], AzureApiError) and (results[-1].status, results[-1].code) == (404, 'Request_ResourceNotFound')
    stats = sb.control('GET', 'stats').json()
    assert stats['graph']['batches'] == 3 and stats['graph']['batch_requests'] == 31  # beta 20 + 10, v1.0 1
    assert stats['graph']['reads'] == 31 and stats['graph']['writes'] == 0


def test_the_pacer_keeps_a_bulk_run_out_of_the_quota_buckets(clean_sandbox):
    """Buckets of 30 writes refilling 20 per second (the real rate): 70 writes run at the quota, none throttled."""
    sb = clean_sandbox
    calls, _names = onboarding_calls(sb, 'paced', 18)   # 72 writes

    async def main():
        async with clients_for(sb, quick_policy()) as clients:
            await clients.credential.get_token('https://graph.microsoft.com/.default')
            sb.faults(graph_quotas=QUOTAS)
            sb.control('POST', 'stats/reset')
            pacer = GraphPacer.from_spec(QUOTAS)
            results = await run_graph_calls(clients, calls, pacer=pacer)
            return results, pacer

    results, pacer = asyncio.run(main())
    assert all(isinstance(r, ApiResponse) for r in results)
    graph = sb.control('GET', 'stats').json()['graph']
    assert graph['quota_throttled'] == 0 and graph['throttled'] == 0
    assert graph['writes'] == len(calls) and graph['batch_requests'] == len(calls)
    assert pacer.stats.waits > 0 and pacer.stats.writes == len(calls)   # it did have to wait for the buckets


def test_without_the_pacer_the_quota_buckets_throttle_and_retries_still_converge(clean_sandbox):
    sb = clean_sandbox
    calls, names = onboarding_calls(sb, 'unpaced', 12)   # 48 writes against buckets of 30

    async def main():
        async with clients_for(sb, quick_policy()) as clients:
            await clients.credential.get_token('https://graph.microsoft.com/.default')
            sb.faults(graph_quotas=QUOTAS)
            sb.control('POST', 'stats/reset')
            return await run_graph_calls(clients, calls)

    results = asyncio.run(main())
    assert all(isinstance(r, ApiResponse) for r in results)
    graph = sb.control('GET', 'stats').json()['graph']
    assert graph['quota_throttled'] > 0 and graph['writes'] == len(calls)
    assert all([(f['name'], f['description']) for f in fics] == [('main', 'v3')]
               for name, fics in state_fics(sb).items() if name in names)
