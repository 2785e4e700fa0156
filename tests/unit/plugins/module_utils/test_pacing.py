# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Graph pacer: documented request costs, buckets starting full (no wait under the quota), the refill rate
after the burst, Retry-After pauses, estimate corrections from Graph's headers, scaling, off. Time is simulated:
the injected sleep advances the injected clock."""

from __future__ import annotations

import asyncio

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils._pacing import (
    APP_TENANT_RU,
    APP_TENANT_W,
    GraphPacer,
    RequestCost,
    request_cost,
)
from ansible_collections.oidc_federation.azure.tests.unit.plugins.module_utils.fake_time import FakeTime

FIC_UPSERT = "/applications(uniqueName='x')/federatedIdentityCredentials(name='main')"


def pacer(fake, **kwargs):
    kwargs.setdefault('headroom', 0.0)
    kwargs.setdefault('latency', 0.0)
    return GraphPacer(clock=fake.clock, sleep=fake.sleep, **kwargs)


def run(coro):
    return asyncio.run(coro)


async def acquire_many(p, n, method='PATCH', url=FIC_UPSERT):
    """``n`` requests, each answered at once (its cost settled)."""
    for _request in range(n):
        cost = await p.acquire(method, url)
        p.observe(method, url, 200, {}, cost)


@pytest.mark.parametrize('method,url,cost', [
    ('GET', '/applications', (2, 0)),
    ('GET', '/applications?$select=id,appId', (1, 0)),
    ('GET', 'applications?$top=5', (1, 0)),
    ('GET', '/applications?$top=20', (2, 0)),
    ('GET', '/applications?$select=id&$top=5', (1, 0)),
    ('GET', '/applications?$expand=owners', (3, 0)),
    ('GET', "/applications(uniqueName='x')", (1, 0)),
    ('GET', '/applications/4f6c/federatedIdentityCredentials', (1, 0)),
    ('GET', 'https://graph.microsoft.com/v1.0/applications?$skiptoken=abc', (2, 0)),
    ('GET', '/servicePrincipals/1/appRoleAssignments', (2, 0)),
    ('GET', '/users/u/memberOf', (2, 0)),
    ('POST', '/directoryObjects/getByIds', (5, 0)),
    ('POST', '/directoryObjects/getByIds?$select=id', (2, 0)),
    ('PATCH', FIC_UPSERT, (1, 1)),
    ('DELETE', '/applications/1', (1, 1)),
    ('POST', '/$batch', (0, 0)),
    ('POST', 'https://graph.microsoft.com/beta/$batch', (0, 0)),
])
def test_request_costs_follow_the_documented_table(method, url, cost):
    assert request_cost(method, url) == cost


def test_never_waits_under_the_quota():
    fake = FakeTime(500.0)
    p = pacer(fake)
    run(acquire_many(p, 3000))                       # the whole 150 s write bucket, at once
    run(acquire_many(p, 500, 'GET', '/applications/1/federatedIdentityCredentials'))  # reads: 3,500 units in all
    assert fake.sleeps == [] and p.stats.writes == 3000 and p.stats.units == 3500


def test_paces_to_twenty_writes_a_second_after_the_burst():
    fake = FakeTime(500.0)
    p = pacer(fake)
    stamps = []

    async def main():
        for _request in range(3200):
            cost = await p.acquire('PATCH', FIC_UPSERT)
            p.observe('PATCH', FIC_UPSERT, 204, {}, cost)
            stamps.append(fake.now)

    run(main())
    start = stamps[0]
    assert stamps[2999] == start                      # the burst: no wait
    assert stamps[-1] - start == pytest.approx(200 / 20.0)   # then the refill rate: 200 writes in 10 s
    paced = stamps[3000:]
    for i in range(20, len(paced)):                   # never more than 20 writes in any second after the burst
        assert paced[i] - paced[i - 20] >= 1.0 - 1e-9


def test_headroom_keeps_a_reserve():
    fake = FakeTime(500.0)
    p = pacer(fake, headroom=0.02)
    run(acquire_many(p, 2940))
    assert fake.sleeps == []
    run(acquire_many(p, 1))
    assert sum(fake.sleeps) == pytest.approx(1 / 20.0)


def test_retry_after_pauses_everything_and_drains():
    fake = FakeTime(500.0)
    p = pacer(fake)
    p.observe('PATCH', FIC_UPSERT, 429, {'Retry-After': '7', 'x-ms-throttle-scope': 'Tenant_Application/Write/a/t',
                                         'x-ms-throttle-information': 'WriteLimitExceeded'})
    started = fake.now
    run(p.acquire('POST', '/$batch'))                 # even a free request waits out the pause
    assert fake.now - started == pytest.approx(7)
    # the write bucket was drained when the 429 came: after 7 s it holds 140 writes, the 141st waits 1/20 s
    run(acquire_many(p, 140))
    assert fake.now - started == pytest.approx(7)
    run(acquire_many(p, 1))
    assert fake.now - started == pytest.approx(7.05)
    assert p.stats.throttled == 1 and p.stats.paused == pytest.approx(7)


def test_a_write_limit_429_leaves_reads_alone_after_the_pause():
    fake = FakeTime(500.0)
    p = pacer(fake)
    p.observe('PATCH', FIC_UPSERT, 429, {'Retry-After': '2', 'x-ms-throttle-information': 'WriteLimitExceeded',
                                         'x-ms-throttle-scope': 'Tenant_Application/ReadWrite/a/t'})
    assert p.buckets[APP_TENANT_W].tokens == 0 and p.buckets[APP_TENANT_RU].tokens == 3500
    run(acquire_many(p, 3000, 'GET', '/applications/1'))
    assert fake.now - 500.0 == pytest.approx(2)


def test_a_429_without_details_drains_what_the_request_counts_against_and_clamps_the_pause():
    fake = FakeTime(500.0)
    p = pacer(fake, max_pause=30)
    p.observe('POST', '/$batch', 429, {'Retry-After': '600'})
    assert all(b.tokens == 0 for b in p.buckets.values())
    assert p.paused_until == pytest.approx(fake.now + 30)


def test_throttle_limit_percentage_lowers_the_estimate():
    fake = FakeTime(500.0)
    p = pacer(fake)
    run(acquire_many(p, 10))
    # Graph says 90 % of the (write) limit is used, we thought 10 of 3,000: at most 15 % (rounding) is left
    p.observe('PATCH', FIC_UPSERT, 204, {'x-ms-throttle-limit-percentage': '0.9', 'x-ms-resource-unit': '1'})
    assert p.buckets[APP_TENANT_W].tokens == pytest.approx(0.15 * 3000)
    assert p.stats.corrections == 1
    # a value at or under our own estimate changes nothing
    p.observe('PATCH', FIC_UPSERT, 204, {'x-ms-throttle-limit-percentage': '0.8'})
    assert p.buckets[APP_TENANT_W].tokens == pytest.approx(0.15 * 3000) and p.stats.corrections == 1


def test_resource_unit_header_corrects_the_charge():
    fake = FakeTime(500.0)
    p = pacer(fake)
    cost = run(p.acquire('GET', '/applications/1'))
    p.observe('GET', '/applications/1', 200, {'x-ms-resource-unit': '3'}, cost)
    assert p.buckets[APP_TENANT_RU].tokens == pytest.approx(3500 - 3)


def test_refund_gives_back_what_graph_did_not_run():
    fake = FakeTime(500.0)
    p = pacer(fake)
    cost = run(p.acquire('PATCH', FIC_UPSERT))
    p.refund(cost)
    assert p.buckets[APP_TENANT_W].tokens == 3000 and p.stats.writes == 0


def test_scale_and_window_scale():
    fake = FakeTime(500.0)
    p = pacer(fake, scale=0.01)                        # 30 writes per 150 s: 0.2 writes/s
    run(acquire_many(p, 31))
    assert sum(fake.sleeps) == pytest.approx(5.0)
    fake = FakeTime(500.0)
    p = pacer(fake, scale=0.01, window_scale=0.01)     # 30 writes per 1.5 s: the real rate, 20 writes/s
    run(acquire_many(p, 50))
    assert sum(fake.sleeps) == pytest.approx(1.0)
    assert p.rates()[APP_TENANT_W] == pytest.approx(20.0)


def test_tenant_size_sets_the_resource_unit_quota():
    for size, units in (('S', 3500), ('M', 5000), ('L', 8000)):
        fake = FakeTime(500.0)
        p = pacer(fake, tenant_size=size)
        run(acquire_many(p, units, 'GET', '/applications/1'))
        assert fake.sleeps == []
        run(acquire_many(p, 1, 'GET', '/applications/1'))
        assert sum(fake.sleeps) == pytest.approx(10.0 / units)


def test_off_never_waits():
    fake = FakeTime(500.0)
    p = GraphPacer.from_spec(None, clock=fake.clock, sleep=fake.sleep)
    p.observe('PATCH', FIC_UPSERT, 429, {'Retry-After': '9'})
    run(acquire_many(p, 5000))
    assert fake.sleeps == [] and not p.enabled


def test_waiting_requests_are_served_in_order():
    fake = FakeTime(500.0)
    p = pacer(fake, scale=1 / 3000)                   # one write per 150 s
    order = []

    async def one(n):
        cost = await p.acquire('PATCH', FIC_UPSERT)
        p.observe('PATCH', FIC_UPSERT, 204, {}, cost)
        order.append(n)

    async def main():
        await asyncio.gather(*(one(n) for n in range(4)))

    run(main())
    assert order == [0, 1, 2, 3] and fake.now - 500.0 == pytest.approx(450)


def test_from_spec_mirrors_the_sandbox_graph_quotas():
    p = GraphPacer.from_spec({'tenant_size': 'M', 'scale': 0.5, 'window_scale': 0.1})
    assert p.enabled and p.buckets[APP_TENANT_RU].limit == 2500 and p.rates()[APP_TENANT_RU] == pytest.approx(2500)
    with pytest.raises(ValueError, match='unknown pacing keys: seed'):
        GraphPacer.from_spec({'seed': 1})
    with pytest.raises(ValueError, match='tenant_size'):
        GraphPacer(tenant_size='XL')
    assert request_cost('PATCH', FIC_UPSERT) == RequestCost(1, 1)


def test_refill_waits_for_answers_while_graph_may_still_sit_full():
    """Graph charges a request when it runs it; until the answer comes, our copy may not refill past what Graph's
    bucket could hold: limit minus the costs still in flight."""
    fake = FakeTime(500.0)
    p = pacer(fake, scale=10 / 3000)                  # 10 writes, 1 write per 15 s
    costs = [run(p.acquire('PATCH', FIC_UPSERT)) for _request in range(6)]
    fake.now += 600                                   # long enough to refill completely, were nothing in flight
    bucket = p.buckets[APP_TENANT_W]
    bucket.refill(fake.now)
    assert bucket.tokens == pytest.approx(4) and bucket.inflight == 6
    p.observe('PATCH', FIC_UPSERT, 204, {}, costs[0])
    p.release(costs[1])                               # no answer: settled, nothing given back
    p.refund(costs[2])                                # not run (424): given back
    assert bucket.inflight == 3 and bucket.tokens == pytest.approx(5)
    fake.now += 600
    bucket.refill(fake.now)
    assert bucket.tokens == pytest.approx(7)
    for cost in costs[3:]:
        p.observe('PATCH', FIC_UPSERT, 204, {}, cost)
    fake.now += 600
    bucket.refill(fake.now)
    assert bucket.tokens == pytest.approx(10) and bucket.inflight == 0
