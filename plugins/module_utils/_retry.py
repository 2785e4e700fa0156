# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""The one retry policy of the collection.

Every Graph/ARM call goes through ``run_with_retry`` (or ``Clients.call``, or the ``retried`` decorator, or the
``$batch`` executor). The SDKs' own retries are switched off, so this is the only place where the collection decides
to wait and try again:

* throttling (HTTP 429, and 503): wait ``Retry-After`` (clamped to ``max_retry_after``), else back off;
* transient failures (500, 502, 504, 408, connection errors): jittered exponential backoff, ``max_attempts`` in all;
  only for idempotent calls (``idempotent=False`` limits retries to throttling);
* directory replication lag (Graph 404 ``Request_ResourceNotFound`` right after a create when the caller passes
  ``retry_not_found=True``; Graph 400 ``NoBackingApplicationObject``; ARM ``PrincipalNotFound``; plus any
  ``lag_codes`` the caller names): retried until ``replication_timeout`` seconds after the first such failure.

The decision for one logical call lives in ``RetryState`` (attempt counters, replication deadline, the delay before
the next attempt or the note to give up with); ``run_with_retry`` drives one around a direct call, the Graph
``$batch`` executor (``_batch.py``) one per inner request, so a request in a batch is retried exactly as the same
request sent on its own, and ``run_with_retry_sync`` one for blocking libraries (python-gitlab in ``_gitlab_api.py``),
run in worker threads. Sleep, clock and randomness are injectable for tests; ``RetryStats`` counts what happened.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from typing import Any, Awaitable, Callable, Iterable, Optional

from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import AzureApiError, ValidationError

THROTTLE = 'throttle'
TRANSIENT = 'transient'
REPLICATION = 'replication'

THROTTLE_STATUSES = frozenset((429, 503))
TRANSIENT_STATUSES = frozenset((408, 500, 502, 504))
REPLICATION_CODES = frozenset(('NoBackingApplicationObject', 'PrincipalNotFound'))
NOT_FOUND_CODES = frozenset(('Request_ResourceNotFound', 'ResourceNotFound'))


class RetryStats:
    """Counters of one policy: calls, retries by reason, and seconds slept."""

    def __init__(self) -> None:
        self.calls = 0
        self.retries = 0
        self.throttled = 0
        self.transient = 0
        self.replication = 0
        self.slept = 0.0

    def record(self, reason: str, delay: float) -> None:
        """Count one retry for ``reason`` that waits ``delay`` seconds."""
        self.retries += 1
        self.slept += delay
        if reason == THROTTLE:
            self.throttled += 1
        elif reason == TRANSIENT:
            self.transient += 1
        elif reason == REPLICATION:
            self.replication += 1

    def as_dict(self) -> dict:
        """JSON-safe snapshot."""
        return {'calls': self.calls, 'retries': self.retries, 'throttled': self.throttled, 'transient': self.transient,
                'replication': self.replication, 'slept': round(self.slept, 3)}


class RetryEvent:
    """What ``on_retry`` receives before each wait."""

    def __init__(self, operation: str, target: Optional[str], reason: str, attempt: int, delay: float,
                 error: AzureApiError) -> None:
        self.operation = operation
        self.target = target
        self.reason = reason
        self.attempt = attempt
        self.delay = delay
        self.error = error


class RetryPolicy:
    """Bounds and clocks of the retry loop. One instance is shared by all calls of a module run.

    ``max_attempts``: attempts in all for throttled/transient failures (the first try included).
    ``base_delay``/``max_delay``: exponential backoff ``base_delay * 2**(n-1)`` capped at ``max_delay``, then
    "equal jitter": the wait is uniformly drawn from ``[cap/2, cap]``.
    ``max_retry_after``: clamp for a server's ``Retry-After``.
    ``replication_timeout``: how long (seconds, from the first replication-lag failure) lag errors are retried;
    waits grow from ``replication_delay`` to ``replication_max_delay``.
    ``sleep`` (async), ``sync_sleep`` (for ``run_with_retry_sync``), ``clock`` (monotonic seconds) and ``rand``
    (float in [0, 1)) are injectable.
    ``on_retry`` is called with a ``RetryEvent`` before every wait (never with secrets: errors are redacted).
    """

    def __init__(self, *, max_attempts: int = 5, base_delay: float = 1.0, max_delay: float = 30.0,
                 max_retry_after: float = 60.0, replication_timeout: float = 120.0, replication_delay: float = 2.0,
                 replication_max_delay: float = 15.0, sleep: Optional[Callable[[float], Awaitable[Any]]] = None,
                 clock: Optional[Callable[[], float]] = None, rand: Optional[Callable[[], float]] = None,
                 on_retry: Optional[Callable[[RetryEvent], Any]] = None,
                 sync_sleep: Optional[Callable[[float], Any]] = None) -> None:
        if max_attempts < 1:
            raise ValueError('max_attempts must be at least 1')
        if min(base_delay, max_delay, max_retry_after, replication_timeout, replication_delay, replication_max_delay) < 0:
            raise ValueError('retry delays and timeouts must not be negative')
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after
        self.replication_timeout = replication_timeout
        self.replication_delay = replication_delay
        self.replication_max_delay = replication_max_delay
        self.sleep = sleep or asyncio.sleep
        self.sync_sleep = sync_sleep or time.sleep
        self.clock = clock or time.monotonic
        self.rand = rand or random.random
        self.on_retry = on_retry
        self.stats = RetryStats()

    # --- decisions (pure) -------------------------------------------------------------------------------------------

    def classify(self, err: AzureApiError, *, retry_not_found: bool = False, idempotent: bool = True,
                 lag_codes: Iterable[str] = ()) -> Optional[str]:
        """Why ``err`` is worth retrying (``throttle``, ``transient``, ``replication``), or None to fail at once."""
        if err.kind == 'tls':
            return None
        if err.kind == 'connection':
            return TRANSIENT if idempotent else None
        if err.status in THROTTLE_STATUSES:
            return THROTTLE
        if err.status in TRANSIENT_STATUSES:
            return TRANSIENT if idempotent else None
        if err.service == 'entra':
            return None
        if err.has_code(*REPLICATION_CODES) or (lag_codes and err.has_code(*lag_codes)):
            return REPLICATION
        if 'does not reference a valid application object' in (err.message or ''):
            return REPLICATION
        if retry_not_found and err.status == 404 and (err.code is None or err.has_code(*NOT_FOUND_CODES)):
            return REPLICATION
        return None

    def backoff(self, attempt: int) -> float:
        """Jittered exponential wait before retry number ``attempt`` (1-based): within ``[cap/2, cap]``."""
        cap = min(self.max_delay, self.base_delay * (2 ** max(0, attempt - 1)))
        return cap / 2.0 + self.rand() * cap / 2.0

    def throttle_delay(self, err: AzureApiError, attempt: int) -> float:
        """``Retry-After`` clamped to ``[0, max_retry_after]`` when the service sent one, else ``backoff``."""
        if err.retry_after is not None:
            return min(max(0.0, float(err.retry_after)), self.max_retry_after)
        return self.backoff(attempt)

    def lag_delay(self, attempt: int) -> float:
        """Wait before replication retry number ``attempt``: grows from ``replication_delay``, jittered, capped."""
        cap = min(self.replication_max_delay, self.replication_delay * (1.5 ** max(0, attempt - 1)))
        return cap / 2.0 + self.rand() * cap / 2.0


class RetryState:
    """The retry bookkeeping of ONE logical call under a policy: the decision logic every caller shares.

    ``run_with_retry`` (and ``run_with_retry_sync``) use one per direct call; the ``$batch`` executor (``_batch.py``)
    uses one per inner request, so an inner request is retried exactly as the same request sent on its own would be.
    Feed every failure to
    ``failed(err)``: it returns the seconds to wait before the next attempt (after counting the retry in the
    policy's stats and calling ``on_retry``), or None to give up, in which case ``final_error(err)`` is the error to
    report (with a note saying why retrying stopped).
    """

    def __init__(self, policy: RetryPolicy, operation: str, *, target: Optional[str] = None,
                 retry_not_found: bool = False, idempotent: bool = True, lag_codes: Iterable[str] = (),
                 replication: bool = True) -> None:
        """``replication=False``: replication lag is not retried (an Azure notion; the GitLab API has none)."""
        self.policy = policy
        self.replication = replication
        self.operation = operation
        self.target = target
        self.retry_not_found = retry_not_found
        self.idempotent = idempotent
        self.lag_codes = tuple(lag_codes or ())
        self.attempt = 0          # throttled/transient retries so far
        self.lag_attempt = 0      # replication retries so far
        self.lag_deadline = None
        self.note = None
        policy.stats.calls += 1

    def failed(self, err: AzureApiError) -> Optional[float]:
        """Seconds to wait before retrying after ``err``, or None to give up (see ``final_error``)."""
        policy = self.policy
        reason = policy.classify(err, retry_not_found=self.retry_not_found, idempotent=self.idempotent,
                                 lag_codes=self.lag_codes)
        if reason == REPLICATION and not self.replication:
            reason = None
        delay, self.note = _next_delay(policy, err, reason, self.attempt, self.lag_attempt, self.lag_deadline)
        if delay is None:
            return None
        if reason == REPLICATION:
            if self.lag_deadline is None:
                self.lag_deadline = policy.clock() + policy.replication_timeout
            self.lag_attempt += 1
        else:
            self.attempt += 1
        policy.stats.record(reason, delay)
        if policy.on_retry is not None:
            policy.on_retry(RetryEvent(self.operation, self.target, reason, self.attempt + self.lag_attempt, delay, err))
        return delay

    def final_error(self, err: AzureApiError) -> AzureApiError:
        """``err`` as reported when ``failed(err)`` returned None: with the note saying why retrying stopped."""
        return err.with_context(note=self.note) if self.note else err


async def run_with_retry(policy: RetryPolicy, operation: str, fn: Callable[..., Awaitable[Any]], *args: Any,
                         target: Optional[str] = None, service: Optional[str] = None, retry_not_found: bool = False,
                         idempotent: bool = True, lag_codes: Iterable[str] = (), **kwargs: Any) -> Any:
    """Await ``fn(*args, **kwargs)`` under ``policy``; return its result or raise ``AzureApiError``.

    ``operation``/``target`` name the call in errors ("create application", "uniqueName=gitlab-oidc-x").
    ``service`` (graph/arm) labels errors that do not say where they came from.
    ``retry_not_found``: treat a Graph 404 as replication lag (use right after creating the object).
    ``idempotent=False``: only throttling is retried (for a POST that must not run twice).
    ``lag_codes``: more error codes to treat as replication lag.
    Exceptions that are neither API nor connection errors (bugs, ``ValidationError``) propagate unchanged.
    """
    state = RetryState(policy, operation, target=target, retry_not_found=retry_not_found, idempotent=idempotent,
                       lag_codes=lag_codes)
    while True:
        try:
            return await fn(*args, **kwargs)
        except (ValidationError, asyncio.CancelledError):
            raise
        except Exception as exc:  # pylint: disable=broad-exception-caught
            err = AzureApiError.from_exception(exc, operation=operation, target=target, service=service)
            if err is None:
                raise
            delay = state.failed(err)
            if delay is None:
                raise state.final_error(err) from exc
            await policy.sleep(delay)


def run_with_retry_sync(policy: RetryPolicy, operation: str, fn: Callable[..., Any], *args: Any,
                        target: Optional[str] = None, service: Optional[str] = None, idempotent: bool = True,
                        classify_error: Optional[Callable[[BaseException], Optional[AzureApiError]]] = None,
                        **kwargs: Any) -> Any:
    """``run_with_retry`` for a blocking call (python-gitlab): ``fn(*args, **kwargs)`` under ``policy``.

    Waits with ``policy.sync_sleep``, so it is meant for a worker thread (``asyncio.to_thread``), never for the event
    loop. ``classify_error(exc)`` turns a library exception into an ``AzureApiError`` (or a subclass such as
    ``GitLabApiError``), None for "not an API error"; the default is ``AzureApiError.from_exception``. Throttling
    (429/503 with ``Retry-After``) and, for idempotent calls, transient errors are retried; replication lag is an
    Azure notion and is not retried here.
    """
    state = RetryState(policy, operation, target=target, idempotent=idempotent, replication=False)
    while True:
        try:
            return fn(*args, **kwargs)
        except ValidationError:
            raise
        except Exception as exc:  # pylint: disable=broad-exception-caught
            err = classify_error(exc) if classify_error is not None else AzureApiError.from_exception(exc)
            if err is None:
                raise
            err = err.with_context(operation, target, service)
            delay = state.failed(err)
            if delay is None:
                raise state.final_error(err) from exc
            policy.sync_sleep(delay)


def _next_delay(policy: RetryPolicy, err: AzureApiError, reason: Optional[str], attempt: int, lag_attempt: int,
                lag_deadline: Optional[float]) -> tuple:
    """(seconds to wait, None) to retry, or (None, note for the final error) to give up."""
    if reason is None:
        return None, None
    if reason == REPLICATION:
        now = policy.clock()
        deadline = lag_deadline if lag_deadline is not None else now + policy.replication_timeout
        remaining = deadline - now
        if remaining <= 0:
            return None, 'still failing after waiting {0:g} s for directory replication; raise replication_timeout to wait longer'.format(
                policy.replication_timeout)
        return min(policy.lag_delay(lag_attempt + 1), remaining), None
    if attempt + 1 >= policy.max_attempts:
        return None, 'gave up after {0} attempts'.format(attempt + 1)
    if reason == THROTTLE:
        return policy.throttle_delay(err, attempt + 1), None
    return policy.backoff(attempt + 1), None


def retried(operation: str, *, target: Any = None, service: Optional[str] = None, retry_not_found: bool = False,
            idempotent: bool = True, lag_codes: Iterable[str] = ()) -> Callable:
    """Decorator form of ``run_with_retry`` for ``async def f(clients, ...)``.

    The policy is taken from the first argument's ``retry_policy`` attribute (a ``Clients``). ``target`` is a string,
    or a callable receiving the call's arguments and returning one.
    """
    def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(owner: Any, *args: Any, **kwargs: Any) -> Any:
            name = target(owner, *args, **kwargs) if callable(target) else target
            return await run_with_retry(owner.retry_policy, operation, fn, owner, *args, target=name, service=service,
                                        retry_not_found=retry_not_found, idempotent=idempotent, lag_codes=lag_codes,
                                        **kwargs)
        return wrapper
    return decorate
