# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""Client-side pacing to Microsoft Graph's published identity-and-access quotas, so a bulk run runs AT the quota
rather than INTO it.

Graph throttles identity requests (applications, service principals, federated credentials, directory objects...)
with token buckets (https://learn.microsoft.com/graph/throttling-limits, "Identity and access service limits"):

=========================  =================================================  ==============================
limit                      resource units                                     writes (POST/PATCH/PUT/DELETE)
=========================  =================================================  ==============================
application + tenant pair  S 3,500 / M 5,000 / L 8,000 per 10 s (tenant size)  3,000 per 2 min 30 s
application (all tenants)  150,000 per 20 s                                   35,000 per 5 min
tenant (all applications)  -                                                  18,000 per 5 min
=========================  =================================================  ==============================

``request_cost(method, url)`` is the documented cost of one request (base costs per path, ``$select`` -1,
``$expand`` +1, ``$top`` below 20 -1, never below 1; a write also costs 1 write). ``GraphPacer`` keeps one client-side
bucket per limit for the calling application, starting full like Graph's: ``await pacer.acquire(method, url)``
waits until every bucket the request counts against holds its cost and takes it, so requests leave at the rate the
quota refills once the burst is spent. ``pacer.observe(...)`` is fed every response (inner ``$batch`` responses
included): a 429 with ``Retry-After`` pauses ALL sending until then and drains the buckets named by
``x-ms-throttle-scope`` (or every bucket the request counts against); ``x-ms-throttle-limit-percentage`` (sent
above 80 % use) lowers the local estimate when Graph has used more than we think; ``x-ms-resource-unit`` corrects
the resource-unit charge of the request. A small ``headroom`` (a share of each bucket never used) absorbs clock
skew and other callers of the same quota.

The pacer only ever waits; retrying stays in ``_retry.py``. Clock and sleep are injectable for tests; ``scale``
(capacities) and ``window_scale`` (refill windows) shrink the quotas the way the sandbox's ``graph_quotas`` does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Mapping, NamedTuple, Optional
from urllib.parse import parse_qsl, unquote, urlsplit

from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import parse_retry_after

TENANT_SIZES = ('S', 'M', 'L')
WRITE_METHODS = frozenset(('POST', 'PATCH', 'PUT', 'DELETE'))
GRAPH_VERSIONS = ('v1.0', 'beta')
_EPSILON = 1e-6

# (capacity, window seconds), per the "Identity and access service limits" table.
APP_TENANT_UNITS = {'S': (3500, 10.0), 'M': (5000, 10.0), 'L': (8000, 10.0)}
APP_TENANT_WRITES = (3000, 150.0)
APP_UNITS = (150000, 20.0)
APP_WRITES = (35000, 300.0)
TENANT_WRITES = (18000, 300.0)

# Bucket names; also the values of ``x-ms-throttle-scope`` they answer to (``<Scope>/<Limit>/...``).
APP_TENANT_RU = 'app_tenant_units'
APP_TENANT_W = 'app_tenant_writes'
APP_RU = 'app_units'
APP_W = 'app_writes'
TENANT_W = 'tenant_writes'
UNIT_BUCKETS = (APP_TENANT_RU, APP_RU)
WRITE_BUCKETS = (APP_TENANT_W, APP_W, TENANT_W)

# Base costs that differ from the defaults (GET 1; POST/PATCH/PUT/DELETE 1 unit + 1 write). ``{id}`` matches one
# segment (an id, or an alternate key such as ``(appId='...')``). Paths under ``me/`` also apply to ``users/{id}/``.
# (method, path template) -> (resource units, writes)
BASE_COSTS = {
    ('GET', 'applications'): (2, 0),
    ('GET', 'applications/{id}/extensionproperties'): (2, 0),
    ('GET', 'contracts'): (3, 0),
    ('POST', 'directoryobjects/getbyids'): (5, 0),
    ('GET', 'domains/{id}/domainnamereferences'): (4, 0),
    ('POST', 'getobjectsbyid'): (5, 0),
    ('GET', 'groups/{id}/members'): (3, 0),
    ('GET', 'groups/{id}/transitivemembers'): (5, 0),
    ('POST', 'ismemberof'): (4, 0),
    ('POST', 'me/checkmembergroups'): (4, 0),
    ('POST', 'me/checkmemberobjects'): (4, 0),
    ('POST', 'me/getmembergroups'): (2, 0),
    ('POST', 'me/getmemberobjects'): (2, 0),
    ('GET', 'me/licensedetails'): (2, 0),
    ('GET', 'me/memberof'): (2, 0),
    ('GET', 'me/ownedobjects'): (2, 0),
    ('GET', 'me/transitivememberof'): (2, 0),
    ('GET', 'oauth2permissiongrants'): (2, 0),
    ('GET', 'oauth2permissiongrants/{id}'): (2, 0),
    ('GET', 'serviceprincipals/{id}/approleassignments'): (2, 0),
    ('GET', 'subscribedskus'): (3, 0),
    ('GET', 'users'): (2, 0),
}
# "Using $select for directoryObjects/getByIds and getObjectsById results in 2 ResourceUnits."
SELECT_FIXED = {'directoryobjects/getbyids': 2, 'getobjectsbyid': 2}


class RequestCost(NamedTuple):
    """What one request takes from the quotas: resource ``units`` and ``writes``."""

    units: int
    writes: int


FREE = RequestCost(0, 0)


def _segments(url: str) -> tuple:
    """Lower-cased path segments relative to the version, key predicates split off as their own segment."""
    path = urlsplit(url).path if '://' in url else url.split('?', 1)[0]
    parts = [unquote(p) for p in path.split('/') if p]
    if parts and parts[0].lower() in GRAPH_VERSIONS:
        parts = parts[1:]
    out = []
    for part in parts:
        name, paren, key = part.partition('(')
        if name:
            out.append(name.lower())
        if paren:
            out.append('(' + key)
    return tuple(out)


def _template(segments: tuple) -> str:
    """``applications/<id>/x`` -> ``applications/{id}/x``; ``users/<id>/memberOf`` -> ``me/memberof``."""
    parts = list(segments)
    if len(parts) >= 3 and parts[0] == 'users':
        parts = ['me'] + parts[2:]
    return '/'.join(parts)


def _matches(template: str, pattern: str) -> bool:
    got, want = template.split('/'), pattern.split('/')
    return len(got) == len(want) and all(w == '{id}' or g == w for g, w in zip(got, want))


def request_cost(method: str, url: str) -> RequestCost:
    """The documented quota cost of ``method url`` (``url`` relative to the version, or absolute on the Graph host).

    ``$batch`` itself costs nothing: each inner request is charged on its own.
    """
    method = method.upper()
    segments = _segments(url)
    if segments and segments[-1] == '$batch':
        return FREE
    template = _template(segments)
    units, writes = (1, 1) if method in WRITE_METHODS else (1, 0)
    for (m, pattern), cost in BASE_COSTS.items():
        if m == method and _matches(template, pattern):
            units, writes = cost
            break
    query = {k.lower(): v for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    if '$select' in query and template in SELECT_FIXED:
        units = SELECT_FIXED[template]
    else:
        if '$select' in query:
            units -= 1
        if '$expand' in query:
            units += 1
        top = query.get('$top')
        if top is not None and top.strip().isdigit() and int(top) < 20:
            units -= 1
    return RequestCost(max(1, units), writes)


class Bucket:
    """A token bucket: ``limit`` units refilled evenly over ``window`` seconds, part of it kept in reserve.

    ``limit`` is Graph's capacity; the usable part, ``capacity = limit - reserve``, starts full. The reserve is the
    larger of ``headroom * limit`` and ``latency`` seconds of refill (at most all but one unit). ``tokens`` may go
    negative when a single request costs more than the usable capacity (tiny test scales).
    """

    def __init__(self, name: str, limit: float, window: float, headroom: float, latency: float, now: float) -> None:
        self.name = name
        self.limit = float(limit)
        self.rate = self.limit / window
        self.reserve = min(max(self.limit * headroom, self.rate * latency), max(0.0, self.limit - 1.0))
        self.capacity = self.limit - self.reserve
        self.tokens = self.capacity
        self.inflight = 0.0
        self.stamp = now

    def refill(self, now: float) -> None:
        """Add what refilled since the last call, up to ``capacity`` and up to ``limit - inflight``.

        Graph charges a request only when it runs it; until then its bucket may sit full and waste refill that ours
        would count. Capping ours at ``limit - inflight`` (costs taken here whose answer has not come back) keeps it
        at or below Graph's.
        """
        if now > self.stamp:
            ceiling = min(self.capacity, self.limit - self.inflight)
            if self.tokens < ceiling:
                self.tokens = min(ceiling, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def wait_for(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` can be taken (a cost above the capacity waits for a full bucket)."""
        self.refill(now)
        need = min(cost, self.capacity)
        if self.tokens >= need - _EPSILON:  # float refills land a hair short of a whole unit
            return 0.0
        return (need - self.tokens) / self.rate

    def used_fraction(self) -> float:
        """Graph's view of this bucket if it matched ours: share of ``limit`` in use."""
        return 1.0 - (self.tokens + self.reserve) / self.limit

    def lower_to(self, server_remaining: float) -> bool:
        """Lower the estimate so that no more than ``server_remaining`` (minus the reserve) is left; True if lowered."""
        target = max(0.0, server_remaining - self.reserve)
        if self.tokens > target:
            self.tokens = target
            return True
        return False


class PacerStats:
    """What the pacer did: requests and cost taken, waits, 429s seen, pauses, estimate corrections."""

    def __init__(self) -> None:
        self.requests = 0
        self.writes = 0
        self.units = 0
        self.waits = 0
        self.waited = 0.0
        self.throttled = 0
        self.paused = 0.0
        self.corrections = 0

    def as_dict(self) -> dict:
        """JSON-safe snapshot."""
        return {'requests': self.requests, 'writes': self.writes, 'units': self.units, 'waits': self.waits,
                'waited': round(self.waited, 3), 'throttled': self.throttled, 'paused': round(self.paused, 3),
                'corrections': self.corrections}


class GraphPacer:
    """Client-side copy of Graph's identity quotas for one calling application in one tenant.

    ``tenant_size``: S (<50 users), M (50-500), L (>500): the application+tenant resource-unit quota.
    ``scale``: multiplies every capacity; ``window_scale``: multiplies every refill window (``scale=0.01,
    window_scale=0.01`` keeps the real rates, 20 writes/s, with buckets 100 times smaller; as the sandbox's
    ``graph_quotas``, see ``from_spec``).
    ``headroom``: share of each bucket never used (default 2 %); ``latency``: seconds of refill never used either
    (default 0.25 s; the larger reserve wins, at most all but one unit). The reserve covers what this copy cannot
    see: the time between taking a request's cost here and Graph charging it (Graph's bucket starts refilling
    only then), and other callers of the same quota.
    ``enabled=False``: ``acquire`` never waits and ``observe`` does nothing (pacing off).
    ``max_pause``: clamp for a ``Retry-After`` pause (the retry policy clamps its own waits the same way).
    ``clock`` (monotonic seconds) and ``sleep`` (async) are injectable.
    """

    def __init__(self, *, tenant_size: str = 'S', scale: float = 1.0, window_scale: float = 1.0,
                 headroom: float = 0.02, latency: float = 0.25, enabled: bool = True, max_pause: float = 60.0,
                 clock: Optional[Callable[[], float]] = None,
                 sleep: Optional[Callable[[float], Awaitable[Any]]] = None) -> None:
        if tenant_size not in TENANT_SIZES:
            raise ValueError('tenant_size must be one of {0}, got {1!r}'.format(', '.join(TENANT_SIZES), tenant_size))
        if scale <= 0 or window_scale <= 0:
            raise ValueError('scale and window_scale must be positive')
        if not 0 <= headroom < 1:
            raise ValueError('headroom must be at least 0 and below 1')
        if max_pause < 0 or latency < 0:
            raise ValueError('max_pause and latency must not be negative')
        self.tenant_size = tenant_size
        self.scale = float(scale)
        self.window_scale = float(window_scale)
        self.headroom = float(headroom)
        self.latency = float(latency)
        self.enabled = bool(enabled)
        self.max_pause = float(max_pause)
        self.clock = clock or time.monotonic
        self.sleep = sleep or asyncio.sleep
        self.stats = PacerStats()
        self.paused_until = float('-inf')
        self._lock = None
        now = self.clock()
        limits = {
            APP_TENANT_RU: APP_TENANT_UNITS[tenant_size],
            APP_TENANT_W: APP_TENANT_WRITES,
            APP_RU: APP_UNITS,
            APP_W: APP_WRITES,
            TENANT_W: TENANT_WRITES,
        }
        self.buckets = {name: Bucket(name, cap * self.scale, window * self.window_scale, self.headroom, self.latency, now)
                        for name, (cap, window) in limits.items()}

    @classmethod
    def from_spec(cls, spec: Optional[Mapping[str, Any]], **kwargs: Any) -> 'GraphPacer':
        """Build from a mapping shaped like the sandbox's ``graph_quotas`` (``tenant_size``, ``scale``,
        ``window_scale``) plus ``headroom``/``enabled``; None or ``{'enabled': False}`` turns pacing off."""
        spec = dict(spec or {'enabled': False})
        unknown = set(spec) - {'tenant_size', 'scale', 'window_scale', 'headroom', 'latency', 'enabled', 'max_pause'}
        if unknown:
            raise ValueError('unknown pacing keys: {0}'.format(', '.join(sorted(unknown))))
        spec.update(kwargs)
        return cls(**spec)

    def rates(self) -> dict:
        """Refill rate (units or writes per second) of every bucket."""
        return {name: bucket.rate for name, bucket in self.buckets.items()}

    def _charges(self, cost: RequestCost) -> list:
        charges = []
        if cost.units:
            charges += [(self.buckets[name], cost.units) for name in UNIT_BUCKETS]
        if cost.writes:
            charges += [(self.buckets[name], cost.writes) for name in WRITE_BUCKETS]
        return charges

    async def wait_resumed(self) -> None:
        """Wait while sending is paused by a ``Retry-After``."""
        if not self.enabled:
            return
        while True:
            wait = self.paused_until - self.clock()
            if wait <= 0:
                return
            self.stats.waits += 1
            self.stats.waited += wait
            await self.sleep(wait)

    async def acquire(self, method: str, url: str, cost: Optional[RequestCost] = None) -> RequestCost:
        """Wait until ``method url`` may be sent under every quota it counts against, take its cost, return it.

        Requests queue in arrival order. A free request (``$batch`` itself) only waits out a pause. The cost stays
        "in flight" until it is settled: pass it to ``observe`` with the answer, to ``refund`` when Graph did not
        run the request, or to ``release`` when no answer came.
        """
        cost = cost or request_cost(method, url)
        if not self.enabled:
            return cost
        charges = self._charges(cost)
        if not charges:
            await self.wait_resumed()
            return cost
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            while True:
                now = self.clock()
                wait = max([self.paused_until - now] + [bucket.wait_for(amount, now) for bucket, amount in charges])
                if wait <= 0:
                    break
                self.stats.waits += 1
                self.stats.waited += wait
                await self.sleep(wait)
            for bucket, amount in charges:
                bucket.tokens -= amount
                bucket.inflight += amount
        self.stats.requests += 1
        self.stats.units += cost.units
        self.stats.writes += cost.writes
        return cost

    def refund(self, cost: Optional[RequestCost]) -> None:
        """Settle and give back the cost of a request Graph answered without running it (424 inside a batch)."""
        if not self.enabled or not cost:
            return
        now = self.clock()
        self._settle(cost, now)
        for bucket, amount in self._charges(cost):
            bucket.tokens = min(bucket.capacity, bucket.tokens + amount)
        self.stats.requests -= 1
        self.stats.units -= cost.units
        self.stats.writes -= cost.writes

    def release(self, cost: Optional[RequestCost]) -> None:
        """Settle the cost of a request that got no answer of its own (connection error, a batch that failed
        whole): whether Graph charged it is unknown, so nothing is given back."""
        if self.enabled and cost:
            self._settle(cost, self.clock())

    def _settle(self, cost: RequestCost, now: float) -> None:
        for bucket, amount in self._charges(cost):
            bucket.refill(now)  # refill up to now under the old ceiling
            bucket.inflight = max(0.0, bucket.inflight - amount)

    def observe(self, method: str, url: str, status: Optional[int], headers: Any,
                cost: Optional[RequestCost] = None) -> None:
        """Learn from one Graph response (direct, ``$batch`` outer or inner); ``cost`` (what ``acquire`` returned)
        is settled. Without ``cost`` the request's documented cost is assumed and nothing is settled."""
        if not self.enabled:
            return
        headers = {str(k).lower(): str(v) for k, v in dict(headers or {}).items()}
        now = self.clock()
        if cost is not None:
            self._settle(cost, now)
        else:
            cost = request_cost(method, url)
        if status == 429:
            self.stats.throttled += 1
            after = parse_retry_after(headers)
            if after is not None:
                until = now + min(after, self.max_pause)
                if until > self.paused_until:
                    self.stats.paused += until - max(now, self.paused_until)
                    self.paused_until = until
            for bucket in self._throttled_buckets(headers.get('x-ms-throttle-scope'), headers.get('x-ms-throttle-information'),
                                                  cost):
                bucket.refill(now)
                bucket.tokens = min(bucket.tokens, 0.0)
            return
        if status is None or status >= 400:
            return
        charged = [bucket for bucket, _amount in self._charges(cost)]
        units = _int(headers.get('x-ms-resource-unit'))
        if units is not None and cost.units and units != cost.units:
            for name in UNIT_BUCKETS:
                self.buckets[name].tokens -= units - cost.units
        percentage = headers.get('x-ms-throttle-limit-percentage')
        if percentage and charged:
            self._correct(percentage, charged, now)

    def _correct(self, percentage: str, charged: list, now: float) -> None:
        """Graph says it has used ``percentage`` (0.8-1.8) of the tightest limit: lower our fullest bucket to match.

        The value is rounded (one decimal in practice), so the estimate is only lowered beyond that rounding.
        """
        try:
            used = float(percentage)
        except ValueError:
            return
        decimals = len(percentage.strip().partition('.')[2])
        tolerance = 0.5 * 10 ** (-decimals) if decimals else 0.5
        for bucket in charged:
            bucket.refill(now)
        bucket = max(charged, key=lambda b: b.used_fraction())
        if bucket.lower_to((1.0 - used + tolerance) * bucket.limit):
            self.stats.corrections += 1

    def _throttled_buckets(self, scope: Optional[str], information: Optional[str], cost: RequestCost) -> list:
        """The buckets a 429 names, else every bucket the request counts against (all of them for an unknown one).

        ``x-ms-throttle-scope`` is ``<Scope>/<Limit>/<app>/<tenant>`` (Scope ``Tenant_Application``, ``Application``
        or ``Tenant``; Limit ``Read``, ``Write`` or ``ReadWrite``); ``x-ms-throttle-information`` such as
        ``WriteLimitExceeded``/``ResourceUnitLimitExceeded`` says which quota ran out.
        """
        parts = (scope or '').split('/')
        kind = parts[0].lower()
        limit = parts[1].lower() if len(parts) > 1 else ''
        info = (information or '').lower()
        if 'write' in info:
            writes, units = True, False
        elif 'resourceunit' in info:
            writes, units = False, True
        else:
            writes, units = limit in ('write', 'readwrite'), limit in ('read', 'readwrite', 'resourceunit')
        names = []
        if kind == 'tenant_application':
            names = ([APP_TENANT_W] if writes else []) + ([APP_TENANT_RU] if units else [])
        elif kind == 'application':
            names = ([APP_W] if writes else []) + ([APP_RU] if units else [])
        elif kind == 'tenant':
            names = [TENANT_W]
        if names:
            return [self.buckets[name] for name in names]
        charged = [bucket for bucket, _amount in self._charges(cost)]
        return charged or list(self.buckets.values())


def _int(value: Optional[str]) -> Optional[int]:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
