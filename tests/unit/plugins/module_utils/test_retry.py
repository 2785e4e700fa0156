# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The retry policy: Retry-After honoured and clamped, jittered backoff bounds, replication-lag deadline,
non-retryable errors raised at once. Time is simulated: the injected sleep advances the injected clock."""

from __future__ import annotations

import asyncio
import random
import ssl

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import AzureApiError, ValidationError
from ansible_collections.oidc_federation.azure.plugins.module_utils._retry import RetryPolicy, retried, run_with_retry
from ansible_collections.oidc_federation.azure.tests.unit.plugins.module_utils.fake_time import FakeTime


def make_policy(fake, **kwargs):
    kwargs.setdefault('rand', lambda: 0.5)
    return RetryPolicy(sleep=fake.sleep, clock=fake.clock, **kwargs)


class Flaky:
    """An async callable failing with the given errors (in order), then returning 'ok'."""

    def __init__(self, *errors, forever=None):
        self.errors = list(errors)
        self.forever = forever
        self.calls = 0

    async def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        if self.forever is not None:
            raise self.forever
        return 'ok'


def graph_error(status, code=None, retry_after=None, details=(), message='m'):
    return AzureApiError(message, service='graph', status=status, code=code, retry_after=retry_after, details=details)


def arm_error(status, code, message='m'):
    return AzureApiError(message, service='arm', status=status, code=code)


def run(coro):
    return asyncio.run(coro)


# --- throttling -----------------------------------------------------------------------------------------------------

def test_retry_after_is_honoured():
    fake = FakeTime(1000.0)
    policy = make_policy(fake)
    fn = Flaky(graph_error(429, 'TooManyRequests', retry_after=7), graph_error(503, retry_after=2))
    assert run(run_with_retry(policy, 'list applications', fn)) == 'ok'
    assert fake.sleeps == [7, 2]
    assert fn.calls == 3
    assert policy.stats.as_dict() == {'calls': 1, 'retries': 2, 'throttled': 2, 'transient': 0, 'replication': 0, 'slept': 9}


def test_retry_after_is_clamped():
    fake = FakeTime(1000.0)
    policy = make_policy(fake, max_retry_after=60)
    fn = Flaky(graph_error(429, retry_after=3600))
    run(run_with_retry(policy, 'op', fn))
    assert fake.sleeps == [60]


def test_429_without_retry_after_backs_off():
    fake = FakeTime(1000.0)
    policy = make_policy(fake, base_delay=1.0, rand=lambda: 0.0)
    run(run_with_retry(policy, 'op', Flaky(graph_error(429), graph_error(429))))
    assert fake.sleeps == [0.5, 1.0]


# --- transient failures -----------------------------------------------------------------------------------------------

def test_backoff_bounds_with_jitter():
    policy = RetryPolicy(base_delay=1.0, max_delay=30.0, rand=random.Random(7).random)
    for attempt in range(1, 12):
        cap = min(30.0, 2.0 ** (attempt - 1))
        values = [policy.backoff(attempt) for _sample in range(200)]
        assert all(cap / 2 <= v <= cap for v in values), attempt
        assert max(values) - min(values) > cap / 4  # jitter actually varies
    assert RetryPolicy(rand=lambda: 0.0).backoff(3) == 2.0
    assert RetryPolicy(rand=lambda: 0.999999).backoff(3) == pytest.approx(4.0, abs=1e-5)


def test_5xx_retried_until_max_attempts_then_raised_with_note():
    fake = FakeTime(1000.0)
    policy = make_policy(fake, max_attempts=4, rand=lambda: 1.0)
    fn = Flaky(forever=graph_error(500, 'UnknownError'))
    with pytest.raises(AzureApiError) as exc_info:
        run(run_with_retry(policy, 'create application', fn, target='uniqueName=x'))
    assert fn.calls == 4
    assert fake.sleeps == [1.0, 2.0, 4.0]
    assert str(exc_info.value) == 'create application uniqueName=x failed: Graph 500 UnknownError: m (gave up after 4 attempts)'
    assert policy.stats.transient == 3


def test_connection_errors_are_retried_and_tls_errors_are_not():
    fake = FakeTime(1000.0)
    policy = make_policy(fake)
    fn = Flaky(ConnectionResetError(104, 'Connection reset by peer'))
    assert run(run_with_retry(policy, 'op', fn, service='graph')) == 'ok'
    assert fn.calls == 2

    tls = Flaky(forever=ssl.SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed'))
    with pytest.raises(AzureApiError) as exc_info:
        run(run_with_retry(policy, 'op', tls, service='arm'))
    assert tls.calls == 1 and exc_info.value.kind == 'tls'


def test_non_idempotent_calls_retry_only_throttling():
    fake = FakeTime(1000.0)
    policy = make_policy(fake)
    fn = Flaky(graph_error(500))
    with pytest.raises(AzureApiError):
        run(run_with_retry(policy, 'create service principal', fn, idempotent=False))
    assert fn.calls == 1
    fn = Flaky(graph_error(429, retry_after=1))
    assert run(run_with_retry(policy, 'create service principal', fn, idempotent=False)) == 'ok'
    fn = Flaky(ConnectionRefusedError(111, 'refused'))
    with pytest.raises(AzureApiError):
        run(run_with_retry(policy, 'create service principal', fn, idempotent=False))
    assert fn.calls == 1


# --- replication lag --------------------------------------------------------------------------------------------------

def test_principal_not_found_retried_until_deadline():
    fake = FakeTime(1000.0)
    policy = make_policy(fake, replication_timeout=30, replication_delay=2, replication_max_delay=8)
    fn = Flaky(forever=arm_error(400, 'PrincipalNotFound'))
    with pytest.raises(AzureApiError) as exc_info:
        run(run_with_retry(policy, 'create role assignment', fn))
    assert sum(fake.sleeps) == pytest.approx(30)
    assert max(fake.sleeps) <= 8
    assert fn.calls == len(fake.sleeps) + 1 > 3
    assert 'replication_timeout' in str(exc_info.value)
    assert policy.stats.replication == len(fake.sleeps)


def test_replication_lag_clears_before_deadline():
    fake = FakeTime(1000.0)
    policy = make_policy(fake, replication_timeout=120)
    fn = Flaky(arm_error(400, 'PrincipalNotFound'), graph_error(400, 'Request_BadRequest', details=('NoBackingApplicationObject',)))
    assert run(run_with_retry(policy, 'op', fn)) == 'ok'
    assert fn.calls == 3


def test_replication_lag_does_not_use_up_transient_attempts():
    fake = FakeTime(1000.0)
    policy = make_policy(fake, max_attempts=2)
    fn = Flaky(arm_error(400, 'PrincipalNotFound'), arm_error(400, 'PrincipalNotFound'), arm_error(503, 'ServiceUnavailable'))
    assert run(run_with_retry(policy, 'op', fn)) == 'ok'


def test_no_backing_application_object_message_without_detail_code():
    fake = FakeTime(1000.0)
    policy = make_policy(fake)
    err = graph_error(400, 'Request_BadRequest', message="The appId 'x' of the service principal does not reference a valid application object.")
    assert run(run_with_retry(policy, 'op', Flaky(err))) == 'ok'


def test_graph_404_retried_only_when_the_caller_says_so():
    fake = FakeTime(1000.0)
    policy = make_policy(fake)
    fn = Flaky(graph_error(404, 'Request_ResourceNotFound'))
    with pytest.raises(AzureApiError):
        run(run_with_retry(policy, 'get application', fn))
    assert fn.calls == 1
    fn = Flaky(graph_error(404, 'Request_ResourceNotFound'))
    assert run(run_with_retry(policy, 'get application', fn, retry_not_found=True)) == 'ok'
    assert fn.calls == 2


def test_extra_lag_codes():
    fake = FakeTime(1000.0)
    policy = make_policy(fake)
    fn = Flaky(arm_error(400, 'RoleDefinitionDoesNotExist'))
    assert run(run_with_retry(policy, 'op', fn, lag_codes=('RoleDefinitionDoesNotExist',))) == 'ok'


def test_zero_replication_timeout_fails_at_once():
    fake = FakeTime(1000.0)
    policy = make_policy(fake, replication_timeout=0)
    fn = Flaky(forever=arm_error(400, 'PrincipalNotFound'))
    with pytest.raises(AzureApiError):
        run(run_with_retry(policy, 'op', fn))
    assert fn.calls == 1 and fake.sleeps == []


# --- not retried ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('err', [
    graph_error(400, 'Request_BadRequest'),
    graph_error(403, 'Authorization_RequestDenied'),
    graph_error(409, 'Request_MultipleObjectsWithSameKeyValue'),
    arm_error(409, 'RoleAssignmentExists'),
    AzureApiError('Invalid client secret', service='entra', status=401, code='AADSTS7000215'),
    AzureApiError('AADSTS70021 no match', service='entra', status=400, code='AADSTS70021'),
])
def test_non_retryable_errors_raise_at_once(err):
    fake = FakeTime(1000.0)
    policy = make_policy(fake)
    fn = Flaky(forever=err)
    with pytest.raises(AzureApiError) as exc_info:
        run(run_with_retry(policy, 'op', fn))
    assert fn.calls == 1 and fake.sleeps == []
    assert exc_info.value.code == err.code


def test_entra_throttling_is_retried():
    fake = FakeTime(1000.0)
    policy = make_policy(fake)
    fn = Flaky(AzureApiError('busy', service='entra', status=503, retry_after=1))
    assert run(run_with_retry(policy, 'get token', fn)) == 'ok'


def test_unclassified_exceptions_and_validation_errors_propagate_unchanged():
    fake = FakeTime(1000.0)
    policy = make_policy(fake)
    bug = ValueError('a bug')
    fn = Flaky(forever=bug)
    with pytest.raises(ValueError) as exc_info:
        run(run_with_retry(policy, 'op', fn))
    assert exc_info.value is bug and fn.calls == 1
    fn = Flaky(forever=ValidationError('bad input'))
    with pytest.raises(ValidationError):
        run(run_with_retry(policy, 'op', fn))
    assert fn.calls == 1


# --- hooks, arguments, decorator ------------------------------------------------------------------------------------

def test_on_retry_hook_and_arguments_are_passed():
    fake = FakeTime(1000.0)
    events = []
    policy = make_policy(fake, on_retry=events.append)
    seen = []

    async def fn(a, b=None):
        seen.append((a, b))
        if len(seen) == 1:
            raise graph_error(429, retry_after=3)
        return a + b

    assert run(run_with_retry(policy, 'add', fn, 1, b=2, target='t')) == 3
    assert seen == [(1, 2), (1, 2)]
    assert [(e.operation, e.target, e.reason, e.attempt, e.delay, e.error.status) for e in events] == [('add', 't', 'throttle', 1, 3, 429)]


def test_retried_decorator_takes_policy_from_owner_and_names_target():
    fake = FakeTime(1000.0)

    class Owner:
        retry_policy = make_policy(fake)

        def __init__(self):
            self.calls = 0

    @retried('delete application', target=lambda owner, app_id: 'appId=' + app_id)
    async def delete(owner, app_id):
        owner.calls += 1
        raise graph_error(400, 'Request_BadRequest', message='nope')

    owner = Owner()
    with pytest.raises(AzureApiError) as exc_info:
        run(delete(owner, 'abc'))
    assert str(exc_info.value) == 'delete application appId=abc failed: Graph 400 Request_BadRequest: nope'
    assert owner.calls == 1


def test_policy_rejects_bad_bounds():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(max_delay=-1)
