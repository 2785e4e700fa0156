# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""Many Graph requests through JSON ``$batch``, each retried as if it had been sent on its own.

``await run_graph_calls(clients, calls)`` takes ``GraphCall`` objects and returns, in input order, one result per
call: the ``ApiResponse`` of its success, or the ``AzureApiError`` it finally failed with. One call's failure never
raises; only systemic failures do (the token cannot be had, TLS is not trusted, Graph answers the batch itself with
401/403), as do programming errors (bad ``GraphCall`` fields, unknown or cyclic ``depends_on``), which are checked
before any request. ``await send_graph_call(clients, call)`` sends ONE ``GraphCall`` directly (no batch) with the
same retry decisions and the same answer (or raises its ``AzureApiError``): the core builds every request once, as
a ``GraphCall`` (``_graph.py``, ``_graph_fic.py``), and sends it either way.

How calls travel (https://learn.microsoft.com/graph/json-batching):

* up to 20 requests per ``POST /{version}/$batch``; calls of different versions never share a batch;
* Graph asks for batches that are "either fully sequential or fully parallel". Calls linked by ``depends_on``
  (directly or not) form a *lane*, sent in dependency order as sequential batches (each request ``dependsOn`` the
  one before it); calls on their own share parallel batches (no ``dependsOn``);
* a request answered 424 (Failed Dependency) was not attempted: it is sent again once its prerequisites succeed, or
  fails with its prerequisite's error when one of them failed for good (every call depending on it, directly or
  not, fails the same way);
* ``limit`` batches are in flight at once.

Retries: every inner request has its own ``_retry.RetryState``, the same decision logic ``run_with_retry`` uses
for a direct request (429/503 with ``Retry-After``, backoff on 5xx and connection errors for idempotent calls, the
documented replication-lag errors for a bounded time, ``retry_not_found``/``lag_codes``/``idempotent`` per call).
A failure of the whole batch (429, 5xx, connection) counts as a failure of each call in it. Waits use the retry
policy's ``sleep``.

Pacing: with a ``_pacing.GraphPacer`` (``pacer=`` or ``clients.graph_pacer``), every inner request acquires its
quota cost before its batch is sent, and every answer (outer and inner) is fed back to it; the cost of a request
Graph did not run (424) is refunded, that of a request without an answer of its own (the batch failed whole) is
released without refund.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence, Union
from urllib.parse import urlsplit

from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import GRAPH_VERSIONS, MAX_PAGES, ApiResponse, build_query
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import (
    AzureApiError,
    MissingLibraryError,
    ValidationError,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._retry import RetryPolicy, RetryState

MAX_BATCH = 20
DEFAULT_LIMIT = 4
FAILED_DEPENDENCY = 424
_BATCH_OPERATION = 'send Graph batch'

Result = Union[ApiResponse, AzureApiError]


class GraphCall:
    """One Graph request for ``run_graph_calls``.

    ``method``: GET/POST/PATCH/PUT/DELETE. ``url``: relative to the version (``/applications/{id}/...``,
    ``applications?$select=id``), or an absolute ``@odata.nextLink`` on the configured Graph endpoint.
    ``version``: ``v1.0`` or ``beta``. ``params``: query parameters added to ``url`` (None values dropped).
    ``body``: JSON body (``Content-Type: application/json`` is added). ``headers``: e.g. ``Prefer``.
    ``operation``/``target``: name the call in errors, as for ``Clients.call`` ("create federated identity
    credential", "gitlab-main"). ``id``: how other calls' ``depends_on`` refer to this one (default: its position
    in the input, as a string). ``depends_on``: ids of calls that must succeed before this one is sent.
    ``retry_not_found``/``lag_codes``/``idempotent``: as for ``Clients.call``. ``all_pages``: for a GET of a
    collection, follow ``@odata.nextLink`` and return one response whose ``data['value']`` holds every item.
    ``accept``: a predicate on the final ``AzureApiError`` (after retries) telling an answer that counts as success
    (a DELETE answered 404: already gone); the call's result is then ``ApiResponse(err.status, {}, None)`` and the
    calls depending on it go on.
    """

    __slots__ = ('method', 'url', 'version', 'params', 'body', 'headers', 'operation', 'target', 'id', 'depends_on',
                 'retry_not_found', 'lag_codes', 'idempotent', 'all_pages', 'accept')

    def __init__(self, method: str, url: str, *, version: str = 'v1.0', params: Optional[Mapping[str, Any]] = None,
                 body: Any = None, headers: Optional[Mapping[str, str]] = None, operation: Optional[str] = None,
                 target: Optional[str] = None, id: Optional[str] = None,  # pylint: disable=redefined-builtin
                 depends_on: Iterable[str] = (), retry_not_found: bool = False, lag_codes: Iterable[str] = (),
                 idempotent: bool = True, all_pages: bool = False,
                 accept: Optional[Callable[[AzureApiError], bool]] = None) -> None:
        self.method = str(method).upper()
        self.url = url
        self.version = version
        self.params = dict(params or {})
        self.body = body
        self.headers = dict(headers or {})
        self.operation = operation
        self.target = target
        self.id = None if id is None else str(id)
        self.depends_on = tuple(str(d) for d in (depends_on or ()))
        self.retry_not_found = retry_not_found
        self.lag_codes = tuple(lag_codes or ())
        self.idempotent = idempotent
        self.all_pages = all_pages
        self.accept = accept

    def __repr__(self) -> str:
        return 'GraphCall({0} /{1}{2})'.format(self.method, self.version, _lead(self.url))


class BatchStats:
    """What one or more ``run_graph_calls`` did: batches sent (and how many were sequential), inner requests sent,
    424s answered, batches that failed whole."""

    def __init__(self) -> None:
        self.batches = 0
        self.sequential = 0
        self.requests = 0
        self.not_attempted = 0
        self.batch_failures = 0

    def as_dict(self) -> dict:
        """JSON-safe snapshot."""
        return {'batches': self.batches, 'sequential': self.sequential, 'requests': self.requests,
                'not_attempted': self.not_attempted, 'batch_failures': self.batch_failures}


class _Item:
    """Run-time state of one call."""

    __slots__ = ('index', 'call', 'url', 'state', 'result', 'prereqs', 'dependents', 'pages', 'page_count', 'lane')

    def __init__(self, index: int, call: GraphCall, url: str, state: Optional[RetryState]) -> None:
        self.index = index
        self.call = call
        self.url = url
        self.state = state
        self.result = None
        self.prereqs = []
        self.dependents = []
        self.pages = None
        self.page_count = 0
        self.lane = None


class _Lane:
    """Calls linked by ``depends_on``, in dependency order; ``pending`` shrinks as calls finish."""

    __slots__ = ('pending',)

    def __init__(self, items: List[_Item]) -> None:
        self.pending = collections.deque(items)

    def run(self, limit: int) -> List[_Item]:
        """The calls the next batch of this lane carries: a prefix of one version, at most ``limit``."""
        head = self.pending[0]
        out = []
        for item in self.pending:
            if item.call.version != head.call.version or len(out) >= limit:
                break
            out.append(item)
        return out


async def run_graph_calls(clients: Any, calls: Sequence[GraphCall], *, pacer: Any = None, limit: int = DEFAULT_LIMIT,
                          policy: Optional[RetryPolicy] = None, max_batch: int = MAX_BATCH,
                          stats: Optional[BatchStats] = None) -> List[Result]:
    """Send ``calls`` through Graph ``$batch``; return one ``ApiResponse`` or ``AzureApiError`` per call, in order.

    ``clients``: a ``_clients.Clients``. ``pacer``: a ``_pacing.GraphPacer`` (default ``clients.graph_pacer``;
    pacing off when both are None). ``limit``: batches in flight at once. ``policy``: retry policy (default
    ``clients.retry_policy``). ``max_batch``: requests per batch (Graph allows 20). ``stats``: a ``BatchStats``
    to count into. Raises ``ValueError`` for malformed calls or dependencies (before any request), and
    ``AzureApiError`` only for systemic failures (see the module docstring).
    """
    if limit < 1:
        raise ValueError('limit must be at least 1')
    if not 1 <= max_batch <= MAX_BATCH:
        raise ValueError('max_batch must be between 1 and {0}'.format(MAX_BATCH))
    runner = _Runner(clients, calls, pacer=clients.graph_pacer if pacer is None else pacer, limit=limit,
                     policy=policy or clients.retry_policy, max_batch=max_batch, stats=stats or BatchStats())
    return await runner.run()


class _Runner:  # pylint: disable=too-many-instance-attributes
    def __init__(self, clients: Any, calls: Sequence[GraphCall], *, pacer: Any, limit: int, policy: RetryPolicy,
                 max_batch: int, stats: BatchStats) -> None:
        self.clients = clients
        self.pacer = pacer
        self.limit = limit
        self.policy = policy
        self.max_batch = max_batch
        self.stats = stats
        self.items = self._items(list(calls))
        self.lanes = self._lanes()
        self.ready_single = collections.OrderedDict()   # version -> deque of lanes whose next batch is one call
        self.ready_serial = collections.deque()          # lanes whose next batch is sequential
        self.tasks = set()
        self.in_flight = 0

    # --- preparation (pure; errors before any request) ------------------------------------------------------------

    def _items(self, calls: List[GraphCall]) -> List[_Item]:
        items, by_id = [], {}
        for index, call in enumerate(calls):
            if not isinstance(call, GraphCall):
                raise ValueError('call {0} is not a GraphCall'.format(index))
            if call.version not in GRAPH_VERSIONS:
                raise ValueError('call {0}: Graph version must be one of {1}, got {2!r}'.format(
                    index, ', '.join(GRAPH_VERSIONS), call.version))
            if call.method not in ('GET', 'POST', 'PATCH', 'PUT', 'DELETE'):
                raise ValueError('call {0}: unsupported method {1!r}'.format(index, call.method))
            key = call.id if call.id is not None else str(index)
            if key in by_id:
                raise ValueError('call {0}: id {1!r} is used twice'.format(index, key))
            item = _Item(index, call, self._relative(call.url, call.version, call.params, index), None)
            by_id[key] = item
            items.append(item)
        for item in items:
            for dep in item.call.depends_on:
                prereq = by_id.get(dep)
                if prereq is None:
                    raise ValueError('call {0} depends on unknown id {1!r}'.format(item.index, dep))
                if prereq is item:
                    raise ValueError('call {0} depends on itself'.format(item.index))
                if prereq not in item.prereqs:
                    item.prereqs.append(prereq)
                    prereq.dependents.append(item)
        for item in items:  # the calls are valid: each gets its retry bookkeeping
            item.state = self._retry_state(item)
        return items

    def _retry_state(self, item: _Item) -> RetryState:
        call = item.call
        operation = item.state.operation if item.state is not None else (
            call.operation or _label(call.method, call.version, item.url))
        return RetryState(self.policy, operation, target=call.target, retry_not_found=call.retry_not_found,
                          idempotent=call.idempotent, lag_codes=call.lag_codes)

    def _relative(self, url: str, version: str, params: Mapping[str, Any], index: int) -> str:
        """``url`` relative to ``/{version}``, with ``params`` appended; absolute URLs must be on the Graph host."""
        if '://' in url:
            base = '{0}/{1}'.format(self.clients.settings.cloud.graph_endpoint.rstrip('/'), version)
            if not url.lower().startswith(base.lower() + '/'):
                raise ValueError('call {0}: {1} is not under the configured Graph endpoint {2}'.format(
                    index, urlsplit(url).netloc or url, base))
            url = url[len(base):]
        if not url.startswith('/'):
            url = '/' + url
        if '$batch' in urlsplit(url).path:
            raise ValueError('call {0}: a batch cannot contain another $batch'.format(index))
        query = build_query(params)
        if query:
            url += ('&' if '?' in url else '?') + query
        return url

    def _lanes(self) -> List[_Lane]:
        """Connected components of the dependency graph, each in dependency order (input order among equals)."""
        parent = list(range(len(self.items)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for item in self.items:
            for prereq in item.prereqs:
                parent[find(item.index)] = find(prereq.index)
        groups = collections.OrderedDict()
        for item in self.items:
            groups.setdefault(find(item.index), []).append(item)
        lanes = []
        for members in groups.values():
            lane = _Lane(_topological(members))
            for item in members:
                item.lane = lane
            lanes.append(lane)
        return lanes

    # --- the loop ------------------------------------------------------------------------------------------------

    async def run(self) -> List[Result]:
        for lane in self.lanes:
            self._ready(lane)
        try:
            while self.tasks or self.ready_serial or any(self.ready_single.values()):
                while self.in_flight < self.limit:
                    job = self._next_job()
                    if job is None:
                        break
                    self._start(self._send(job))
                    self.in_flight += 1
                if not self.tasks:
                    break
                done, _pending = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    self.tasks.discard(task)
                    task.result()  # systemic failures and bugs propagate from here
        finally:
            for task in self.tasks:
                task.cancel()
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)
        missing = [item.index for item in self.items if item.result is None]
        if missing:  # cannot happen: every lane runs until empty
            raise RuntimeError('Graph batch calls left without a result: {0}'.format(missing))
        return [item.result for item in self.items]

    def _start(self, coro: Any) -> None:
        self.tasks.add(asyncio.ensure_future(coro))

    def _ready(self, lane: _Lane) -> None:
        """Queue ``lane`` for its next batch (or nothing when it is finished)."""
        if not lane.pending:
            return
        run = lane.run(self.max_batch)
        if len(run) == 1:
            self.ready_single.setdefault(run[0].call.version, collections.deque()).append(lane)
        else:
            self.ready_serial.append(lane)

    def _next_job(self) -> Optional[tuple]:
        """(version, items, sequential) of the next batch: a sequential lane, or up to ``max_batch`` single calls."""
        singles = next(((v, q) for v, q in self.ready_single.items() if q), None)
        if self.ready_serial and (singles is None or len(singles[1]) < self.max_batch):
            lane = self.ready_serial.popleft()
            run = lane.run(self.max_batch)
            return run[0].call.version, run, True
        if singles is None:
            return None
        version, queue = singles
        items = []
        while queue and len(items) < self.max_batch:
            lane = queue.popleft()
            items.append(lane.pending[0])
        return version, items, False

    async def _wake(self, lanes: List[_Lane], delay: float) -> None:
        await self.policy.sleep(delay)
        for lane in lanes:
            self._ready(lane)

    # --- one batch -------------------------------------------------------------------------------------------------

    async def _send(self, job: tuple) -> None:
        version, items, sequential = job
        costs = []      # what the pacer took for each item; every one is settled exactly once
        settled = False
        try:
            if self.pacer is not None:
                for item in items:
                    costs.append(await self.pacer.acquire(item.call.method, item.url))
            requests = [self._request(item, items[n - 1] if sequential and n else None) for n, item in enumerate(items)]
            self.stats.batches += 1
            self.stats.sequential += 1 if sequential else 0
            self.stats.requests += len(items)
            try:
                response = await self.clients.graph_request('POST', '/$batch', version=version,
                                                            json_body={'requests': requests}, pacer=self.pacer)
            except (ValidationError, MissingLibraryError, asyncio.CancelledError):
                raise
            except Exception as exc:  # pylint: disable=broad-exception-caught
                err = AzureApiError.from_exception(exc, service='graph')
                if err is None:
                    raise
                settled = True
                self._release(costs)
                self._batch_failed(items, err)
                return
            settled = True
            self._answered(items, costs, response, sequential)
        finally:
            if not settled:
                self._release(costs)
            self.in_flight -= 1

    def _request(self, item: _Item, previous: Optional[_Item]) -> dict:
        call = item.call
        request = {'id': str(item.index), 'method': call.method, 'url': item.url}
        headers = dict(call.headers)
        if call.body is not None:
            request['body'] = call.body
            if not any(k.lower() == 'content-type' for k in headers):
                headers['Content-Type'] = 'application/json'
        if headers:
            request['headers'] = headers
        if previous is not None:
            request['dependsOn'] = [str(previous.index)]
        return request

    def _release(self, costs: List[Any]) -> None:
        """No answer of their own for these requests (the pacer saw any 429 of the batch itself)."""
        if self.pacer is not None:
            for cost in costs:
                self.pacer.release(cost)

    def _batch_failed(self, items: List[_Item], err: AzureApiError) -> None:
        """The batch itself failed: systemic failures raise, the rest count as a failure of every call in it."""
        if err.service == 'entra' or err.kind == 'tls' or err.status in (401, 403):
            raise err.with_context(operation=_BATCH_OPERATION)
        self.stats.batch_failures += 1
        delays = []
        for item in items:
            delays.append(self._failed(item, err.with_context(operation=item.state.operation, target=item.call.target)))
        self._continue(items, delays)

    def _answered(self, items: List[_Item], costs: List[Any], response: ApiResponse, sequential: bool) -> None:
        data = response.data if isinstance(response.data, dict) else {}
        answers = {}
        for answer in data.get('responses') or ():
            if isinstance(answer, dict) and answer.get('id') is not None:
                answers[str(answer['id'])] = answer
        delays = []
        blocked = False  # an earlier request of this sequential batch did not succeed
        for n, item in enumerate(items):
            call, answer = item.call, answers.get(str(item.index))
            cost = costs[n] if costs else None
            status = answer.get('status') if isinstance(answer, dict) else None
            if not isinstance(status, int) or isinstance(status, bool):
                status, answer = None, None
            headers, body = (answer.get('headers') or {}, answer.get('body')) if answer else ({}, None)
            not_attempted = status == FAILED_DEPENDENCY and sequential and (blocked or item.result is not None)
            self._settle(call, item.url, status, headers, cost, not_attempted)
            if item.result is not None:  # failed with a prerequisite earlier in this batch: never attempted
                delays.append(0.0)
                continue
            if status is not None and status < 400:
                delays.append(self._succeeded(item, ApiResponse(status, headers, body)))
                continue
            if not_attempted:
                self.stats.not_attempted += 1
                delays.append(0.0)
                continue
            blocked = True
            if status is None:
                err = AzureApiError('Graph returned no answer for this request in its $batch response', service='graph',
                                    status=502, code='MissingBatchResponse', operation=item.state.operation,
                                    target=call.target, request=_label(call.method, call.version, item.url))
            else:
                err = AzureApiError.from_response('graph', status, headers, body, operation=item.state.operation,
                                                  target=call.target, request=_label(call.method, call.version, item.url))
            delays.append(self._failed(item, err))
        self._continue(items, delays)

    def _settle(self, call: GraphCall, url: str, status: Optional[int], headers: Any, cost: Any,
                not_attempted: bool) -> None:
        """Tell the pacer how one inner request ended: not run (refund), no answer (release), or its answer."""
        if self.pacer is None:
            return
        if not_attempted:
            self.pacer.refund(cost)
        elif status is None:
            self.pacer.release(cost)
        else:
            self.pacer.observe(call.method, url, status, headers, cost)

    # --- outcomes ----------------------------------------------------------------------------------------------------

    def _succeeded(self, item: _Item, response: ApiResponse) -> float:
        call = item.call
        if call.all_pages and call.method == 'GET' and isinstance(response.data, dict):
            item.pages = (item.pages or []) + list(response.data.get('value') or [])
            link = response.data.get('@odata.nextLink')
            item.page_count += 1
            if link and item.page_count >= MAX_PAGES:
                self._finish(item, AzureApiError('more than {0} pages'.format(MAX_PAGES), operation=item.state.operation,
                                                 target=call.target, service='graph', kind='http'))
                return 0.0
            if link:  # the next page is one more request of this call, with a retry budget of its own
                item.url = self._relative(link, call.version, {}, item.index)
                item.state = self._retry_state(item)
                return 0.0
            data = dict(response.data)
            data.pop('@odata.nextLink', None)
            data['value'] = item.pages
            response = ApiResponse(response.status, response.headers, data)
        self._finish(item, response)
        return 0.0

    def _failed(self, item: _Item, err: AzureApiError) -> float:
        """Retry decision for one failed attempt: the delay before retrying, or finish the call (and its dependents)."""
        delay = item.state.failed(err)
        if delay is None:
            final = item.state.final_error(err)
            self._finish(item, accepted(item.call, final) or final)
            return 0.0
        return delay

    def _finish(self, item: _Item, result: Result) -> None:
        item.result = result
        item.lane.pending.remove(item)
        if isinstance(result, AzureApiError):
            self._fail_dependents(item, result)

    def _fail_dependents(self, root: _Item, err: AzureApiError) -> None:
        """Every call depending on ``root`` (directly or not) fails with ``root``'s error, without being sent."""
        todo = list(root.dependents)
        while todo:
            item = todo.pop()
            if item.result is not None:
                continue
            dep_err = AzureApiError(
                err.message, operation=item.state.operation, target=item.call.target, service=err.service,
                status=err.status, code=err.code, details=err.details, request_id=err.request_id, kind=err.kind,
                hint=err.hint, request=_label(item.call.method, item.call.version, item.url),
                note='not attempted: it depends on {0}, which failed'.format(
                    ' '.join(p for p in (root.state.operation, root.call.target) if p)))
            dep_err.__cause__ = err
            item.result = dep_err
            item.lane.pending.remove(item)
            todo.extend(item.dependents)

    def _continue(self, items: List[_Item], delays: List[float]) -> None:
        """Queue the lanes of a finished batch again: at once, or after the longest retry wait among their calls."""
        waits = collections.OrderedDict()
        for item, delay in zip(items, delays):
            lane = item.lane
            waits[id(lane)] = (lane, max(delay, waits.get(id(lane), (lane, 0.0))[1]))
        sleepers = collections.OrderedDict()  # lanes waiting the same time wake together (and share a batch)
        for lane, delay in waits.values():
            if delay > 0 and lane.pending:
                sleepers.setdefault(delay, []).append(lane)
            else:
                self._ready(lane)
        for delay, lanes in sleepers.items():
            self._start(self._wake(lanes, delay))


def not_found(err: AzureApiError) -> bool:
    """An ``accept`` predicate: a 404 counts as an answer ("none", or "already gone" for a DELETE)."""
    return err.status == 404


def accepted(call: GraphCall, err: AzureApiError) -> Optional[ApiResponse]:
    """The result of ``call`` when its ``accept`` counts ``err`` as success, else None."""
    if call.accept is not None and call.accept(err):
        return ApiResponse(err.status or 0, {}, None)
    return None


async def send_graph_call(clients: Any, call: GraphCall) -> ApiResponse:
    """Send ONE ``GraphCall`` directly (no ``$batch``) through ``clients.call`` (the retry policy) and return its
    ``ApiResponse`` (an ``all_pages`` GET: every item in ``data['value']``; an error ``accept`` counts as success:
    ``ApiResponse(status, {}, None)``). Raises its ``AzureApiError`` otherwise, as ``run_graph_calls`` would report
    it. What the single-object modules use, with the same ``GraphCall`` the bulk engine batches."""
    operation = call.operation or _label(call.method, call.version, call.url)
    knobs = dict(target=call.target, service='graph', retry_not_found=call.retry_not_found, lag_codes=call.lag_codes)
    try:
        if call.all_pages and call.method == 'GET':
            items = await clients.call(operation, clients.graph_list, call.url, version=call.version,
                                       params=call.params or None, headers=call.headers or None, **knobs)
            return ApiResponse(200, {}, {'value': items})
        return await clients.call(operation, clients.graph_request, call.method, call.url, version=call.version,
                                  params=call.params or None, json_body=call.body, headers=call.headers or None,
                                  idempotent=call.idempotent, **knobs)
    except AzureApiError as err:
        result = accepted(call, err)
        if result is None:
            raise
        return result


def chain(calls: Iterable[GraphCall], key: str) -> List[GraphCall]:
    """Link ``calls`` into one lane, in their order: ids ``<key>.<n>``, each call ``depends_on`` the one before
    (the executor sends them in sequential batches; a failure fails the rest without sending them)."""
    out = []
    for n, call in enumerate(calls):
        call.id = '{0}.{1}'.format(key, n)
        call.depends_on = (out[-1].id,) if out else ()
        out.append(call)
    return out


def _topological(members: List[_Item]) -> List[_Item]:
    """``members`` in an order where every call comes after its prerequisites (input order otherwise)."""
    inside = set(id(m) for m in members)
    waiting = {id(m): sum(1 for p in m.prereqs if id(p) in inside) for m in members}
    order, done = [], set()
    while len(order) < len(members):
        ready = [m for m in members if id(m) not in done and waiting[id(m)] == 0]
        if not ready:
            cycle = sorted(m.index for m in members if id(m) not in done)
            raise ValueError('depends_on forms a cycle among calls {0}'.format(cycle))
        for m in ready:
            done.add(id(m))
            order.append(m)
            for d in m.dependents:
                waiting[id(d)] -= 1
    return order


def _lead(url: str) -> str:
    return url if url.startswith('/') else '/' + url


def _label(method: str, version: str, url: str) -> str:
    """``PATCH /v1.0/applications/...`` (path only) for errors."""
    return '{0} /{1}{2}'.format(method, version, urlsplit(_lead(url)).path)


__all__ = ['BatchStats', 'GraphCall', 'MAX_BATCH', 'accepted', 'chain', 'not_found', 'run_graph_calls', 'send_graph_call']
