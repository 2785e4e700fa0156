# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Graph $batch executor against a scripted Graph: packing (20 per batch, one version per batch, fully parallel
or fully sequential batches), results in input order, each inner request retried exactly as run_with_retry retries
a direct request, 424 handling, whole-batch failures, systemic errors, paging, pacing. The same executor against
the real sandbox is in test_batch_sandbox.py."""

from __future__ import annotations

import asyncio
import types

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils._batch import BatchStats, GraphCall, chain, run_graph_calls, send_graph_call
from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import ApiResponse
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import AzureApiError
from ansible_collections.oidc_federation.azure.plugins.module_utils._pacing import APP_TENANT_W, GraphPacer
from ansible_collections.oidc_federation.azure.plugins.module_utils._retry import RetryPolicy, run_with_retry
from ansible_collections.oidc_federation.azure.tests.unit.plugins.module_utils.fake_time import FakeTime

ENDPOINT = 'https://graph.example'


def graph_error_body(code, message='m'):
    return {'error': {'code': code, 'message': message, 'innerError': {'request-id': 'r'}}}


class FakeGraph:
    """A scripted Graph ``$batch`` endpoint behind a ``Clients``-like object.

    ``script[url]``: a list of answers (status, headers, body) given in turn to the inner requests for ``url``
    (the last one repeats); no script: 200 ``{"url": url}``. ``outer``: exceptions raised by the next outer POSTs.
    ``batches`` records every batch sent: (version, [inner request dicts]).
    """

    def __init__(self, script=None, outer=(), policy=None, pacer=None):
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.outer = list(outer)
        self.batches = []
        self.sent = []   # (url, status) of every inner request Graph ran
        self.settings = types.SimpleNamespace(cloud=types.SimpleNamespace(graph_endpoint=ENDPOINT))
        self.retry_policy = policy or RetryPolicy(sleep=FakeTime(100.0).sleep, rand=lambda: 0.5)
        self.graph_pacer = pacer

    def answer(self, url):
        answers = self.script.get(url)
        if not answers:
            return 200, {}, {'url': url}
        return answers.pop(0) if len(answers) > 1 else answers[0]

    async def graph_request(self, method, path, *, version='v1.0', json_body=None, pacer=None, **_kwargs):
        assert (method, path) == ('POST', '/$batch')
        requests = json_body['requests']
        assert 1 <= len(requests) <= 20
        self.batches.append((version, requests))
        if self.outer:
            raise self.outer.pop(0)
        results = {}
        for request in requests:   # in order: the executor lists prerequisites first
            failed = [d for d in request.get('dependsOn', ()) if results[d]['status'] >= 400]
            if failed:
                results[request['id']] = {'id': request['id'], 'status': 424, 'body': graph_error_body('FailedDependency')}
                continue
            status, headers, body = self.answer(request['url'])
            self.sent.append((request['url'], status))
            results[request['id']] = {'id': request['id'], 'status': status, 'headers': headers, 'body': body}
        return ApiResponse(200, {}, {'responses': list(reversed(list(results.values())))})  # any order


def run(clients, calls, **kwargs):
    return asyncio.run(run_graph_calls(clients, calls, **kwargs))


def get(url, **kwargs):
    return GraphCall('GET', url, **kwargs)


def patch(url, **kwargs):
    return GraphCall('PATCH', url, body={'description': 'x'}, **kwargs)


def test_results_in_input_order_twenty_per_batch_one_version_per_batch():
    graph = FakeGraph()
    calls = [get('/applications/{0}'.format(i), version='beta' if i % 3 == 0 else 'v1.0') for i in range(50)]
    results = run(graph, calls)
    assert [r.data['url'] for r in results] == ['/applications/{0}'.format(i) for i in range(50)]
    assert all(isinstance(r, ApiResponse) and r.status == 200 for r in results)
    sizes = sorted(len(reqs) for _v, reqs in graph.batches)
    assert sizes == [13, 17, 20] and len(graph.sent) == 50  # 33 v1.0 calls in 20 + 13, 17 beta calls
    for version, requests in graph.batches:
        assert {calls[int(r['id'])].version for r in requests} == {version}
        assert not any('dependsOn' in r for r in requests)      # fully parallel


def test_dependent_calls_travel_in_fully_sequential_batches():
    graph = FakeGraph()
    calls = [patch('/applications/a/federatedIdentityCredentials/n{0}'.format(i), id='a{0}'.format(i),
                   depends_on=['a{0}'.format(i - 1)] if i else ()) for i in range(3)]
    calls += [get('/applications/b'), get('/applications/c')]
    calls += [patch('/x/{0}'.format(i), id='x{0}'.format(i), depends_on=['x0'] if i else ()) for i in range(25)]
    results = run(graph, calls)
    assert all(r.status == 200 for r in results)
    sequential = [reqs for _v, reqs in graph.batches if any('dependsOn' in r for r in reqs)]
    for requests in sequential:                              # each depends on the one before it
        assert [r.get('dependsOn') for r in requests] == [None] + [[requests[n - 1]['id']] for n in range(1, len(requests))]
        assert all(r['headers']['Content-Type'] == 'application/json' for r in requests)
    assert sorted(len(r) for r in sequential) == [3, 5, 20]  # the 25-call lane in two batches, in order
    parallel = [reqs for _v, reqs in graph.batches if not any('dependsOn' in r for r in reqs)]
    assert sorted(len(r) for r in parallel) == [2]
    order = [url for url, _status in graph.sent if url.startswith('/x/')]
    assert order[0] == '/x/0' and len(order) == 25


def test_inner_throttling_waits_retry_after_and_succeeds():
    fake = FakeTime(100.0)
    policy = RetryPolicy(sleep=fake.sleep, clock=fake.clock, rand=lambda: 0.5)
    graph = FakeGraph({'/a': [(429, {'Retry-After': '7'}, graph_error_body('Request_ThrottledTemporarily')), (204, {}, None)]},
                      policy=policy)
    results = run(graph, [patch('/a'), get('/b')])
    assert [r.status for r in results] == [204, 200]
    assert fake.sleeps == [7.0] and policy.stats.throttled == 1
    assert [s for u, s in graph.sent if u == '/b'] == [200]  # the sibling that succeeded is not sent again


@pytest.mark.parametrize('answers,kwargs', [
    ([(429, {'Retry-After': '3'}, graph_error_body('Request_ThrottledTemporarily'))] * 2 + [(201, {}, {})], {}),
    ([(503, {}, graph_error_body('serviceNotAvailable'))] * 2 + [(201, {}, {})], {}),
    ([(500, {}, graph_error_body('generalException'))] * 9, {}),
    ([(500, {}, graph_error_body('generalException'))], {'idempotent': False}),
    ([(404, {}, graph_error_body('Request_ResourceNotFound'))] * 3 + [(201, {}, {})], {'retry_not_found': True}),
    ([(404, {}, graph_error_body('Request_ResourceNotFound'))], {}),
    ([(400, {}, {'error': {'code': 'Request_BadRequest', 'message': 'm', 'details': [{'code': 'NoBackingApplicationObject'}]}})] * 2
     + [(201, {}, {})], {}),
    ([(400, {}, graph_error_body('CustomLag'))] * 2 + [(201, {}, {})], {'lag_codes': ['CustomLag']}),
    ([(404, {}, graph_error_body('Request_ResourceNotFound'))] * 400, {'retry_not_found': True}),
])
def test_each_inner_request_is_retried_exactly_like_a_direct_request(answers, kwargs):
    """The same answers, once through run_with_retry and once inside a batch: same waits, same outcome."""
    def outcome(result):
        if isinstance(result, AzureApiError):
            return (result.status, result.code, result.note, result.operation, result.target)
        return result.status

    direct_time, batch_time = FakeTime(100.0), FakeTime(100.0)
    direct_policy = RetryPolicy(sleep=direct_time.sleep, clock=direct_time.clock, rand=lambda: 0.5, replication_timeout=20)
    batch_policy = RetryPolicy(sleep=batch_time.sleep, clock=batch_time.clock, rand=lambda: 0.5, replication_timeout=20)
    queue = list(answers)

    async def direct():
        status, headers, body = queue.pop(0) if len(queue) > 1 else queue[0]
        if status >= 400:
            raise AzureApiError.from_response('graph', status, headers, body)
        return ApiResponse(status, headers, body)

    try:
        expected = asyncio.run(run_with_retry(direct_policy, 'upsert credential', direct, target='main', **kwargs))
    except AzureApiError as err:
        expected = err
    graph = FakeGraph({'/fic': answers}, policy=batch_policy)
    result = run(graph, [patch('/fic', operation='upsert credential', target='main', **kwargs)])[0]
    assert outcome(result) == outcome(expected)
    assert batch_time.sleeps == direct_time.sleeps
    assert batch_policy.stats.as_dict() == direct_policy.stats.as_dict()


def test_a_failed_prerequisite_fails_its_dependents_without_sending_them():
    graph = FakeGraph({'/fic/1': [(400, {}, graph_error_body('InvalidFederatedIdentityCredentialValue', 'bad subject'))]})
    calls = [patch('/fic/{0}'.format(i), id=str(i), depends_on=[str(i - 1)] if i else (), operation='upsert credential',
                   target='n{0}'.format(i)) for i in range(4)]
    calls.append(patch('/other', operation='upsert credential', target='other'))
    results = run(graph, calls)
    assert results[0].status == 200 and results[4].status == 200
    failed = results[1]
    assert isinstance(failed, AzureApiError) and failed.code == 'InvalidFederatedIdentityCredentialValue'
    assert str(failed).startswith('upsert credential n1 failed: Graph 400 InvalidFederatedIdentityCredentialValue: bad subject')
    for dependent, name in ((results[2], 'n2'), (results[3], 'n3')):
        assert isinstance(dependent, AzureApiError) and dependent.target == name
        assert (dependent.status, dependent.code) == (400, 'InvalidFederatedIdentityCredentialValue')
        assert 'not attempted: it depends on upsert credential n1, which failed' in str(dependent)
        assert dependent.__cause__ is failed
    assert [u for u, _s in graph.sent] == ['/fic/0', '/fic/1', '/other']  # 2 and 3 were never run


def test_a_retried_prerequisite_resends_its_dependents_once_it_succeeds():
    fake = FakeTime(100.0)
    policy = RetryPolicy(sleep=fake.sleep, clock=fake.clock, rand=lambda: 0.5)
    graph = FakeGraph({'/fic/0': [(503, {'Retry-After': '2'}, graph_error_body('serviceNotAvailable')), (204, {}, None)]},
                      policy=policy)
    stats = BatchStats()
    calls = [patch('/fic/{0}'.format(i), id=str(i), depends_on=[str(i - 1)] if i else ()) for i in range(3)]
    results = run(graph, calls, stats=stats)
    assert [r.status for r in results] == [204, 200, 200]
    assert [u for u, _s in graph.sent] == ['/fic/0', '/fic/0', '/fic/1', '/fic/2']
    assert fake.sleeps == [2.0] and stats.not_attempted == 2 and stats.batches == 2
    assert policy.stats.retries == 1  # a 424 is not an attempt


def test_only_true_dependents_fail_with_a_prerequisite():
    """A lane holds every call linked by depends_on; a failure fails only the calls that depend on it."""
    graph = FakeGraph({'/b': [(400, {}, graph_error_body('Request_BadRequest'))]})
    calls = [patch('/a', id='a'), patch('/b', id='b', depends_on=['a']), patch('/c', id='c', depends_on=['a']),
             patch('/d', id='d', depends_on=['b', 'c'])]
    results = run(graph, calls)
    assert results[0].status == 200 and results[2].status == 200
    assert results[1].code == 'Request_BadRequest' and results[3].code == 'Request_BadRequest'
    assert 'it depends on' in str(results[3]) and sorted(u for u, _s in graph.sent) == ['/a', '/b', '/c']


def test_a_failed_batch_counts_as_a_failure_of_each_call():
    fake = FakeTime(100.0)
    policy = RetryPolicy(sleep=fake.sleep, clock=fake.clock, rand=lambda: 0.5)
    outage = AzureApiError('down', service='graph', status=503, retry_after=4, request='POST /v1.0/$batch')
    graph = FakeGraph(outer=[outage], policy=policy)
    results = run(graph, [patch('/a'), GraphCall('POST', '/applications', body={}, idempotent=False, operation='create application')])
    assert [r.status for r in results] == [200, 200]  # 503 is throttling: retried even for a POST
    assert fake.sleeps == [4.0] and len(graph.batches) == 2  # both wait Retry-After together, then one batch again
    connection = AzureApiError('reset', service='graph', kind='connection')
    graph = FakeGraph(outer=[connection], policy=RetryPolicy(sleep=FakeTime(100.0).sleep, rand=lambda: 0.5))
    results = run(graph, [patch('/a'), GraphCall('POST', '/applications', body={}, idempotent=False,
                                                 operation='create application', target='app')])
    assert results[0].status == 200
    assert isinstance(results[1], AzureApiError) and results[1].kind == 'connection'
    assert str(results[1]).startswith('create application app failed: connection to Graph failed')


@pytest.mark.parametrize('err', [
    AzureApiError('bad secret', service='entra', status=401, code='AADSTS7000215'),
    AzureApiError('untrusted', service='graph', kind='tls'),
    AzureApiError('token expired', service='graph', status=401, code='InvalidAuthenticationToken'),
])
def test_systemic_failures_raise(err):
    graph = FakeGraph(outer=[err])
    with pytest.raises(AzureApiError) as exc_info:
        run(graph, [get('/a'), get('/b')])
    assert exc_info.value.code == err.code and exc_info.value.operation == 'send Graph batch'


@pytest.mark.parametrize('calls,message', [
    ([get('/a', depends_on=['zz'])], "depends on unknown id 'zz'"),
    ([get('/a', id='x', depends_on=['y']), get('/b', id='y', depends_on=['x'])], 'cycle'),
    ([get('/a', id='x'), get('/b', id='x')], "id 'x' is used twice"),
    ([get('/a', version='v2')], 'Graph version must be one of'),
    ([GraphCall('TRACE', '/a')], 'unsupported method'),
    ([get('/$batch')], 'another $batch'),
    ([get('https://evil.example/v1.0/applications')], 'not under the configured Graph endpoint'),
])
def test_bad_calls_fail_before_any_request(calls, message):
    graph = FakeGraph()
    with pytest.raises(ValueError, match=message.replace('$', r'\$')):
        run(graph, calls)
    assert graph.batches == []


def test_all_pages_follows_next_links_and_params_build_the_url():
    graph = FakeGraph({
        '/applications/a/federatedIdentityCredentials?$top=2': [(200, {}, {'value': [1, 2], '@odata.nextLink': ENDPOINT + '/beta/next?p=2'})],
        '/next?p=2': [(200, {}, {'value': [3], '@odata.nextLink': ENDPOINT + '/beta/next?p=3'})],
        '/next?p=3': [(200, {}, {'value': []})],
    })
    results = run(graph, [get('/applications/a/federatedIdentityCredentials', version='beta', params={'$top': 2, '$filter': None},
                              all_pages=True), get('/other')])
    assert results[0].data == {'value': [1, 2, 3]} and results[1].status == 200


def test_pacer_charges_inner_requests_and_refunds_what_graph_did_not_run():
    fake = FakeTime(100.0)
    p = GraphPacer(scale=1 / 3000 * 10, headroom=0.0, latency=0.0, clock=fake.clock, sleep=fake.sleep)  # 10 writes
    graph = FakeGraph({'/fic/0': [(400, {}, graph_error_body('Request_BadRequest'))]}, pacer=p)
    calls = [patch('/fic/{0}'.format(i), id=str(i), depends_on=[str(i - 1)] if i else ()) for i in range(5)]
    calls += [get('/read')]
    run(graph, calls)
    # five writes were charged before sending, four came back 424 and were refunded
    assert p.stats.writes == 1 and p.buckets[APP_TENANT_W].tokens == pytest.approx(9)
    assert fake.sleeps == []
    # a throttled inner answer pauses every later request
    graph = FakeGraph({'/t': [(429, {'Retry-After': '5'}, graph_error_body('Request_ThrottledTemporarily')), (200, {}, {})]},
                      pacer=p, policy=RetryPolicy(sleep=fake.sleep, clock=fake.clock, rand=lambda: 0.5))
    started = fake.now
    results = run(graph, [get('/t')])
    assert results[0].status == 200 and fake.now - started >= 5.0 and p.stats.throttled == 1


def test_pacer_paces_a_bulk_run_at_the_quota():
    """60 writes with a 20-write bucket refilling 20 per second: 2 s of (simulated) time, never more."""
    fake = FakeTime(100.0)
    p = GraphPacer(scale=20 / 3000, window_scale=1 / 150, headroom=0.0, latency=0.0, clock=fake.clock, sleep=fake.sleep)
    graph = FakeGraph(policy=RetryPolicy(sleep=fake.sleep, clock=fake.clock), pacer=p)
    results = run(graph, [patch('/w/{0}'.format(i)) for i in range(60)])
    assert all(r.status == 200 for r in results)
    assert fake.now - 100.0 == pytest.approx(2.0)


# --- accept, chain, send_graph_call ------------------------------------------------------------------------------

def not_found(err):
    return err.status == 404


def test_an_accepted_error_counts_as_success_and_its_lane_goes_on():
    gone = (404, {}, graph_error_body('Request_ResourceNotFound'))
    graph = FakeGraph(script={'/a/fic/1': [gone], '/a/fic/2': [gone]})
    calls = chain([GraphCall('DELETE', '/a/fic/1', accept=not_found), patch('/a/fic/3'),
                   GraphCall('DELETE', '/a/fic/2'), patch('/a/fic/4')], 'a')
    assert [c.id for c in calls] == ['a.0', 'a.1', 'a.2', 'a.3'] and calls[3].depends_on == ('a.2',)
    results = run(graph, calls)
    assert results[0].status == 404 and results[0].data is None          # accepted: already gone
    assert results[1].status == 200                                      # sent again after Graph's 424
    assert isinstance(results[2], AzureApiError) and results[2].status == 404   # not accepted: fails
    assert isinstance(results[3], AzureApiError) and 'not attempted' in str(results[3])
    assert [u for u, _s in graph.sent] == ['/a/fic/1', '/a/fic/3', '/a/fic/2']


def test_send_graph_call_sends_one_request_directly_with_the_same_retry_and_answer():
    time_ = FakeTime(100.0)

    class Direct:
        retry_policy = RetryPolicy(sleep=time_.sleep, rand=lambda: 0.5)

        def __init__(self):
            self.requests = []
            self.answers = [AzureApiError('busy', service='graph', status=429, retry_after=3),
                            ApiResponse(201, {}, {'id': 'x'})]

        async def call(self, operation, fn, *args, **kwargs):
            return await run_with_retry(self.retry_policy, operation, fn, *args, **kwargs)

        async def graph_request(self, method, path, **kwargs):
            self.requests.append((method, path, kwargs))
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        async def graph_list(self, path, **kwargs):
            self.requests.append(('LIST', path, kwargs))
            return [{'id': 1}, {'id': 2}]

    clients = Direct()
    call = GraphCall('PATCH', "/applications(uniqueName='x')", body={'a': 1}, headers={'Prefer': 'create-if-missing'},
                     operation='create application', target='x')
    response = asyncio.run(send_graph_call(clients, call))
    assert response.status == 201 and time_.sleeps == [3.0] and len(clients.requests) == 2
    method, path, kwargs = clients.requests[-1]
    assert (method, path, kwargs['json_body'], kwargs['headers'], kwargs['version']) == (
        'PATCH', "/applications(uniqueName='x')", {'a': 1}, {'Prefer': 'create-if-missing'}, 'v1.0')
    listed = asyncio.run(send_graph_call(clients, GraphCall('GET', '/x', version='beta', params={'$top': 5}, all_pages=True)))
    assert listed.data == {'value': [{'id': 1}, {'id': 2}]} and clients.requests[-1][2]['params'] == {'$top': 5}
    clients.answers = [AzureApiError('gone', service='graph', status=404)]
    assert asyncio.run(send_graph_call(clients, GraphCall('DELETE', '/y', accept=not_found))).status == 404
    clients.answers = [AzureApiError('gone', service='graph', status=404)]
    with pytest.raises(AzureApiError) as info:
        asyncio.run(send_graph_call(clients, GraphCall('DELETE', '/y', operation='delete y')))
    assert info.value.operation == 'delete y'
