# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The shared token cache and ``CachedCredential`` without a network: permissions, refused directories and files,
the expiry margin, key separation, corrupt entries, concurrent writers and fetchers (real processes), the option
switched off, and no token in any repr, warning or log record."""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import stat
import time

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils import _private_files, _token_cache
from ansible_collections.oidc_federation.azure.plugins.module_utils._auth import resolve_auth
from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import Clients
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import ValidationError, redact
from ansible_collections.oidc_federation.azure.plugins.module_utils._private_files import default_cache_dir
from ansible_collections.oidc_federation.azure.plugins.module_utils._token_cache import (
    MIN_REMAINING,
    AccessToken,
    CachedCredential,
    TokenCache,
    TokenCacheError,
    cache_key,
    fingerprint,
    key_for,
)

TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47'
CLIENT = '11111111-2222-3333-4444-555555555555'
GRAPH_SCOPE = 'https://graph.microsoft.com/.default'
ARM_SCOPE = 'https://management.azure.com/.default'
SECRET = 'client-secret-value-0123456789'
KEY = 'a' * 64
NOW = 1_900_000_000.0


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


class FakeCredential:
    """azure-identity stand-in: hands out numbered tokens valid for ``lifetime`` seconds, records each call."""

    def __init__(self, clock=time.time, lifetime=3600):
        self.calls = []
        self.clock = clock
        self.lifetime = lifetime
        self.closed = False

    async def get_token(self, *scopes, **kwargs):
        self.calls.append((scopes, kwargs))
        return AccessToken('access-token-{0}-for-{1}'.format(len(self.calls), scopes[0]), int(self.clock() + self.lifetime))

    async def close(self):
        self.closed = True


def secret_settings(**params):
    base = {'auth_source': 'client_secret', 'tenant_id': TENANT, 'client_id': CLIENT, 'client_secret': SECRET,
            'authority_host': 'https://login.example.test'}
    return resolve_auth(dict(base, **params), environ={})


def key_of(settings):
    return lambda scope: key_for(settings, scope)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


# --- the directory and its files ----------------------------------------------------------------------------------

def test_directory_and_entries_are_private_whatever_the_umask(tmp_path):
    old_umask = os.umask(0)
    try:
        cache = TokenCache(str(tmp_path / 'a' / 'b' / 'tokens')).open()
        cache.put(KEY, AccessToken('tok-1', int(time.time()) + 3600))
    finally:
        os.umask(old_umask)
    assert mode(cache.directory) == 0o700
    assert mode(os.path.join(cache.directory, KEY + '.json')) == 0o600
    assert sorted(os.listdir(cache.directory)) == [KEY + '.json']  # the temporary file was renamed into place
    assert cache.get(KEY).token == 'tok-1'


def test_entry_mtime_is_the_end_of_its_usable_time(tmp_path):
    cache = TokenCache(str(tmp_path / 'tokens')).open()
    expires = int(time.time()) + 3600
    cache.put(KEY, AccessToken('tok', expires))
    assert os.stat(os.path.join(cache.directory, KEY + '.json')).st_mtime == expires - MIN_REMAINING


@pytest.mark.parametrize('make, problem', [
    (lambda p: (p.mkdir(), p.chmod(0o755)), 'is open to group or others (mode 0755); make it private with chmod 700'),
    (lambda p: (p.mkdir(), p.chmod(0o770)), 'is open to group or others (mode 0770); make it private with chmod 700'),
    (lambda p: p.write_text('x'), 'is not a directory'),
    (lambda p: ((p.parent / 'elsewhere').mkdir(mode=0o700), p.symlink_to(p.parent / 'elsewhere')), 'is a symbolic link'),
])
def test_unsafe_directories_are_refused(tmp_path, make, problem):
    path = tmp_path / 'tokens'
    make(path)
    with pytest.raises(TokenCacheError) as exc_info:
        TokenCache(str(path)).open()
    assert str(exc_info.value) == '{0} {1}'.format(path, problem)


def test_a_directory_of_another_user_is_refused(tmp_path, monkeypatch):
    path = tmp_path / 'tokens'
    path.mkdir(mode=0o700)
    monkeypatch.setattr(os, 'geteuid', lambda: os.stat(path).st_uid + 1)
    with pytest.raises(TokenCacheError, match='is owned by user id'):
        TokenCache(str(path)).open()


def test_entries_that_are_links_open_or_foreign_are_ignored(tmp_path, monkeypatch):
    cache = TokenCache(str(tmp_path / 'tokens')).open()
    entry = os.path.join(cache.directory, KEY + '.json')
    good = tmp_path / 'planted.json'
    good.write_text(json.dumps({'v': 1, 'key': KEY, 'token': 'planted', 'expires_on': int(time.time()) + 3600}))
    good.chmod(0o600)
    os.symlink(str(good), entry)
    assert cache.get(KEY) is None  # O_NOFOLLOW
    os.unlink(entry)
    cache.put(KEY, AccessToken('tok', int(time.time()) + 3600))
    os.chmod(entry, 0o644)
    assert cache.get(KEY) is None
    os.chmod(entry, 0o600)
    assert cache.get(KEY).token == 'tok'
    monkeypatch.setattr(os, 'geteuid', lambda: os.stat(entry).st_uid + 1)
    assert cache.get(KEY) is None


def test_the_checked_directory_is_the_one_written_to(tmp_path):
    """Once opened, the cache works inside the directory it checked, even if the path is swapped afterwards."""
    path = tmp_path / 'tokens'
    cache = TokenCache(str(path)).open()
    path.rename(tmp_path / 'moved')
    (tmp_path / 'attacker').mkdir()
    path.symlink_to(tmp_path / 'attacker')
    cache.put(KEY, AccessToken('tok', int(time.time()) + 3600))
    assert os.listdir(tmp_path / 'attacker') == [] and os.listdir(tmp_path / 'moved') == [KEY + '.json']
    assert cache.get(KEY).token == 'tok'
    cache.close()
    with pytest.raises(TokenCacheError, match='is a symbolic link'):
        cache.open()


def test_without_directory_handles_full_paths_work_too(tmp_path, monkeypatch):
    monkeypatch.setattr(_token_cache, '_DIR_FD', False)
    cache = TokenCache(str(tmp_path / 'tokens')).open()
    cache.put(KEY, AccessToken('tok', int(time.time()) + 3600))
    cache.put('b' * 64, AccessToken('old', int(time.time()) + 10))
    assert cache.get(KEY).token == 'tok' and cache.cleanup() == 1
    lock = cache.try_lock()
    assert lock is not None and cache.try_lock() is None
    cache.unlock(lock)
    cache.remove(KEY)
    assert sorted(os.listdir(cache.directory)) == ['.lock']


def test_default_directory(tmp_path, monkeypatch):
    runtime = tmp_path / 'run'
    runtime.mkdir(mode=0o700)
    assert default_cache_dir({'XDG_RUNTIME_DIR': str(runtime)}) == str(runtime / 'oidc_federation_azure' / 'tokens')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert default_cache_dir({'XDG_RUNTIME_DIR': str(tmp_path / 'missing')}) == str(tmp_path / 'home/.cache/oidc_federation_azure/tokens')
    assert default_cache_dir({'XDG_RUNTIME_DIR': 'relative'}) == str(tmp_path / 'home/.cache/oidc_federation_azure/tokens')
    assert default_cache_dir({'XDG_CACHE_HOME': str(tmp_path / 'c')}) == str(tmp_path / 'c/oidc_federation_azure/tokens')


# --- entries: expiry, corruption, cleanup ------------------------------------------------------------------------

def test_an_entry_is_used_only_with_more_than_five_minutes_left(tmp_path):
    clock = Clock()
    cache = TokenCache(str(tmp_path / 'tokens'), clock=clock).open()
    cache.put(KEY, AccessToken('tok', int(NOW) + 3600))
    assert cache.get(KEY) == AccessToken('tok', int(NOW) + 3600)
    clock.now = NOW + 3600 - MIN_REMAINING - 1
    assert cache.get(KEY) is not None
    clock.now = NOW + 3600 - MIN_REMAINING
    assert cache.get(KEY) is None
    assert MIN_REMAINING == 300


@pytest.mark.parametrize('content', [
    b'', b'{', b'\xff\xfe', b'[]', b'{"v": 1, "key": "%s", "token": 5, "expires_on": 4102444800}' % KEY.encode(),
    b'{"v": 1, "key": "%s", "token": "t", "expires_on": "soon"}' % KEY.encode(),
    b'{"v": 1, "key": "%s", "token": "t", "expires_on": true}' % KEY.encode(),
    b'{"v": 1, "key": "%s", "token": "t", "expires_on": 4102444800}' % ('b' * 64).encode(),  # renamed from another key
    b'{"v": 2, "key": "%s", "token": "t", "expires_on": 4102444800}' % KEY.encode(),
])
def test_corrupt_entries_are_ignored_then_replaced(tmp_path, content):
    cache = TokenCache(str(tmp_path / 'tokens')).open()
    entry = os.path.join(cache.directory, KEY + '.json')
    with open(os.open(entry, os.O_WRONLY | os.O_CREAT, 0o600), 'wb') as handle:
        handle.write(content)
    assert cache.get(KEY) is None
    cache.put(KEY, AccessToken('fresh', int(time.time()) + 3600))
    assert cache.get(KEY).token == 'fresh'


def test_cleanup_removes_expired_entries_and_stale_temporary_files_only(tmp_path):
    now = time.time()
    cache = TokenCache(str(tmp_path / 'tokens')).open()
    cache.put('1' * 64, AccessToken('old', int(now) + 100))       # usable until now - 200: expired
    cache.put('2' * 64, AccessToken('new', int(now) + 3600))      # usable until now + 3300
    temp = '.{0}.123.abcd.tmp'.format('3' * 64)                   # left by a killed writer
    for name in (temp, 'notes.txt'):
        with open(os.path.join(cache.directory, name), 'w', encoding='utf-8'):
            pass
    assert cache.cleanup() == 1
    assert sorted(os.listdir(cache.directory)) == [temp, '2' * 64 + '.json', 'notes.txt']
    cache.clock = lambda: time.time() + _token_cache.STALE_TEMP + 10
    assert cache.cleanup() == 1
    assert sorted(os.listdir(cache.directory)) == ['2' * 64 + '.json', 'notes.txt']
    cache.clock = lambda: time.time() + 3400
    assert cache.cleanup() == 1
    assert os.listdir(cache.directory) == ['notes.txt']


def test_remove_keeps_an_entry_another_process_replaced(tmp_path):
    cache = TokenCache(str(tmp_path / 'tokens')).open()
    cache.put(KEY, AccessToken('newer', int(time.time()) + 3600))
    cache.remove(KEY, 'refused-older-token')
    assert cache.get(KEY).token == 'newer'
    cache.remove(KEY, 'newer')
    assert cache.get(KEY) is None


# --- keys ---------------------------------------------------------------------------------------------------------

def test_keys_separate_every_input_and_reveal_no_secret(tmp_path):
    base = dict(authority='https://login.microsoftonline.com', tenant_id=TENANT, client_id=CLIENT, auth_source='client_secret',
                scope=GRAPH_SCOPE, material=SECRET)
    key = cache_key(**base)
    assert len(key) == 64 and key == cache_key(**base)
    same = dict(base)
    same.update(authority='https://LOGIN.microsoftonline.com/', tenant_id=TENANT.upper())
    assert key == cache_key(**same)
    variants = [dict(base, material=SECRET + 'x'), dict(base, scope=ARM_SCOPE), dict(base, tenant_id=TENANT[:-1] + '8'),
                dict(base, client_id=CLIENT[:-1] + '6'), dict(base, authority='https://login.chinacloudapi.cn'),
                dict(base, auth_source='federated_token')]
    keys = {cache_key(**v) for v in variants}
    assert len(keys) == len(variants) and key not in keys
    assert SECRET not in key and fingerprint(SECRET) not in key


def test_key_follows_the_federated_token_file(tmp_path):
    token_file = tmp_path / 'token'
    token_file.write_text('eyJfirst.token.value\n')
    settings = resolve_auth({'auth_source': 'federated_token', 'tenant_id': TENANT, 'client_id': CLIENT,
                             'federated_token_file': str(token_file)}, environ={})
    first = key_for(settings, GRAPH_SCOPE)
    assert first == key_for(settings, GRAPH_SCOPE) and first != key_for(settings, ARM_SCOPE)
    token_file.write_text('eyJsecond.token.value')
    assert key_for(settings, GRAPH_SCOPE) != first
    token_file.write_text('')
    with pytest.raises(ValidationError, match='is empty'):
        key_for(settings, GRAPH_SCOPE)


def test_only_secret_and_federated_sources_have_keys():
    assert key_for(secret_settings(), GRAPH_SCOPE) is not None
    assert key_for(resolve_auth({'auth_source': 'federated_token', 'tenant_id': TENANT, 'client_id': CLIENT,
                                 'federated_token': 'eyJa.b.c'}, environ={}), GRAPH_SCOPE) is not None
    assert key_for(resolve_auth({'auth_source': 'managed_identity'}, environ={}), GRAPH_SCOPE) is None
    assert key_for(resolve_auth({'auth_source': 'cli'}, environ={}), GRAPH_SCOPE) is None


# --- CachedCredential ------------------------------------------------------------------------------------------------

def test_second_process_is_served_from_the_cache_without_building_the_credential(tmp_path):
    settings = secret_settings()
    cache_dir = str(tmp_path / 'tokens')
    first_inner = FakeCredential()

    async def process(build):
        credential = CachedCredential(build, cache=TokenCache(cache_dir), key_of=key_of(settings))
        tokens = [await credential.get_token(GRAPH_SCOPE) for _index in range(3)]
        await credential.close()
        return credential, tokens

    first, tokens = asyncio.run(process(lambda: first_inner))
    assert len(first_inner.calls) == 1 and first.stats == {'memo': 2, 'cache': 0, 'fetched': 1}
    assert first_inner.calls[0] == ((GRAPH_SCOPE,), {}) and first_inner.closed

    def must_not_build():
        raise AssertionError('the second process asked Entra')

    second, again = asyncio.run(process(must_not_build))
    assert again == tokens and second.stats == {'memo': 2, 'cache': 1, 'fetched': 0} and not second.built


def test_scopes_and_secrets_do_not_share_tokens(tmp_path):
    cache_dir = str(tmp_path / 'tokens')
    inner = FakeCredential()

    async def token(settings, scope):
        credential = CachedCredential(lambda: inner, cache=TokenCache(cache_dir), key_of=key_of(settings))
        return (await credential.get_token(scope)).token

    graph = asyncio.run(token(secret_settings(), GRAPH_SCOPE))
    assert asyncio.run(token(secret_settings(), ARM_SCOPE)) != graph
    assert asyncio.run(token(secret_settings(client_secret=SECRET + '-rotated'), GRAPH_SCOPE)) != graph
    assert asyncio.run(token(secret_settings(tenant_id='contoso.onmicrosoft.com'), GRAPH_SCOPE)) != graph
    assert asyncio.run(token(secret_settings(), GRAPH_SCOPE)) == graph
    assert len(inner.calls) == 4 and len(os.listdir(cache_dir)) == 5  # four entries and the lock file


def test_challenges_bypass_memo_and_cache(tmp_path):
    inner = FakeCredential()
    cache = TokenCache(str(tmp_path / 'tokens'))

    async def main():
        credential = CachedCredential(lambda: inner, cache=cache, key_of=key_of(secret_settings()))
        plain = await credential.get_token(GRAPH_SCOPE)
        claimed = await credential.get_token(GRAPH_SCOPE, claims='{"access_token": {}}', enable_cae=True)
        tenant = await credential.get_token(GRAPH_SCOPE, tenant_id='other')
        again = await credential.get_token(GRAPH_SCOPE)
        return plain, claimed, tenant, again

    plain, claimed, tenant, again = asyncio.run(main())
    assert again == plain and len({plain, claimed, tenant}) == 3
    assert inner.calls[1] == ((GRAPH_SCOPE,), {'claims': '{"access_token": {}}', 'enable_cae': True})
    assert inner.calls[2] == ((GRAPH_SCOPE,), {'tenant_id': 'other'})
    assert cache.get(key_for(secret_settings(), GRAPH_SCOPE)) == plain  # the challenge answers were not stored


def test_a_refused_cached_token_is_dropped_and_replaced(tmp_path):
    settings = secret_settings()
    cache = TokenCache(str(tmp_path / 'tokens'))
    cache.open().put(key_for(settings, GRAPH_SCOPE), AccessToken('stale-but-unexpired', int(time.time()) + 3000))
    inner = FakeCredential()

    async def main():
        credential = CachedCredential(lambda: inner, cache=cache, key_of=key_of(settings))
        served = await credential.get_token(GRAPH_SCOPE)
        assert credential.refused(ARM_SCOPE) is False  # not from the cache: nothing to heal, the 401 stands
        assert credential.refused(GRAPH_SCOPE) is True
        assert credential.refused(GRAPH_SCOPE) is True  # a concurrent request refused with the same token retries too
        fresh = await credential.get_token(GRAPH_SCOPE)
        return served, fresh

    served, fresh = asyncio.run(main())
    assert served.token == 'stale-but-unexpired' and fresh.token == 'access-token-1-for-' + GRAPH_SCOPE
    assert cache.get(key_for(settings, GRAPH_SCOPE)) == fresh  # the other processes get the new token


def test_memo_expires_with_the_margin():
    clock = Clock()
    inner = FakeCredential(clock=clock, lifetime=900)

    async def main():
        credential = CachedCredential(lambda: inner, clock=clock)
        first = await credential.get_token(ARM_SCOPE)
        clock.now += 900 - MIN_REMAINING - 1
        same = await credential.get_token(ARM_SCOPE)
        clock.now += 1
        renewed = await credential.get_token(ARM_SCOPE)
        return first, same, renewed

    first, same, renewed = asyncio.run(main())
    assert first == same and renewed != first and len(inner.calls) == 2


def test_an_unusable_directory_warns_once_and_tokens_still_come(tmp_path):
    path = tmp_path / 'tokens'
    path.mkdir(mode=0o777)
    path.chmod(0o777)
    warnings = []
    inner = FakeCredential()

    async def main():
        credential = CachedCredential(lambda: inner, cache=TokenCache(str(path)), key_of=key_of(secret_settings()), warn=warnings.append)
        return [await credential.get_token(scope) for scope in (GRAPH_SCOPE, ARM_SCOPE)]

    tokens = asyncio.run(main())
    assert len(tokens) == 2 and len(inner.calls) == 2 and os.listdir(path) == []
    assert warnings == ['token_cache: not sharing access tokens between tasks: {0} is open to group or others (mode 0777); make '
                        'it private with chmod 700. Set token_cache_dir to a private directory, or token_cache=false to silence '
                        'this.'.format(path)]


def test_a_read_only_directory_warns_and_tokens_still_come(tmp_path, monkeypatch):
    cache = TokenCache(str(tmp_path / 'tokens')).open()
    warnings = []

    def refuse(*args, **kwargs):
        raise PermissionError(13, 'Permission denied')

    monkeypatch.setattr(cache, 'put', refuse)

    async def main():
        credential = CachedCredential(FakeCredential, cache=cache, key_of=key_of(secret_settings()), warn=warnings.append)
        return await credential.get_token(GRAPH_SCOPE)

    assert asyncio.run(main()).token.startswith('access-token-1')
    assert len(warnings) == 1 and 'cannot write to {0}: Permission denied'.format(cache.directory) in warnings[0]


def test_a_lock_held_too_long_is_given_up(tmp_path):
    cache = TokenCache(str(tmp_path / 'tokens')).open()
    held = cache.try_lock()
    assert held is not None and cache.try_lock() is None
    inner = FakeCredential()

    async def main():
        credential = CachedCredential(lambda: inner, cache=cache, key_of=key_of(secret_settings()), lock_wait=0.1)
        return await credential.get_token(GRAPH_SCOPE)

    try:
        started = time.monotonic()
        token = asyncio.run(main())
        waited = time.monotonic() - started
    finally:
        cache.unlock(held)
    assert token.token.startswith('access-token-1') and 0.1 <= waited < 5
    assert cache.get(key_for(secret_settings(), GRAPH_SCOPE)) == token


# --- processes -------------------------------------------------------------------------------------------------------

def _writer(directory, worker, rounds, errors):
    try:
        cache = TokenCache(directory).open()
        for index in range(rounds):
            cache.put(KEY, AccessToken('token-{0}-{1}-'.format(worker, index) + 'x' * 2000, int(time.time()) + 3600))
            got = cache.get(KEY)
            if got is None or not got.token.startswith('token-') or len(got.token) < 2000:
                errors.put('bad read: {0!r}'.format(got))
    except Exception as exc:  # pylint: disable=broad-exception-caught
        errors.put(repr(exc))


def test_concurrent_writers_never_expose_a_partial_entry(tmp_path):
    directory = str(tmp_path / 'tokens')
    ctx = multiprocessing.get_context('fork')
    errors = ctx.Queue()
    workers = [ctx.Process(target=_writer, args=(directory, w, 40, errors)) for w in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == [] and all(w.exitcode == 0 for w in workers)
    assert sorted(os.listdir(directory)) == [KEY + '.json']


def _fetcher(directory, settings, barrier, results, log_path):
    class SlowCredential(FakeCredential):
        async def get_token(self, *scopes, **kwargs):
            with open(log_path, 'a', encoding='utf-8') as log:
                log.write('fetch\n')
            await asyncio.sleep(0.3)
            return AccessToken('the-one-token-' + 'y' * 40, int(time.time()) + 3600)

    async def main():
        credential = CachedCredential(SlowCredential, cache=TokenCache(directory), key_of=key_of(settings))
        barrier.wait(10)
        return (await credential.get_token(GRAPH_SCOPE)).token

    results.put(asyncio.run(main()))


def test_processes_started_together_ask_entra_once(tmp_path):
    directory = str(tmp_path / 'tokens')
    log_path = str(tmp_path / 'fetches.log')
    ctx = multiprocessing.get_context('fork')
    barrier, results = ctx.Barrier(4), ctx.Queue()
    workers = [ctx.Process(target=_fetcher, args=(directory, secret_settings(), barrier, results, log_path)) for _index in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert all(w.exitcode == 0 for w in workers)
    assert [results.get(timeout=5) for _worker in workers] == ['the-one-token-' + 'y' * 40] * 4
    with open(log_path, encoding='utf-8') as log:
        assert log.read() == 'fetch\n'


# --- the option, through Clients -----------------------------------------------------------------------------------

def test_clients_use_the_cache_only_when_on_and_for_cached_sources(tmp_path):
    directory = str(tmp_path / 'tokens')

    def cache_of(**params):
        return Clients(secret_settings(token_cache_dir=directory, **params)).token_cache

    assert cache_of().directory == directory
    assert cache_of(token_cache=False) is None
    assert Clients(resolve_auth({'auth_source': 'cli', 'token_cache_dir': directory}, environ={})).token_cache is None
    assert Clients(resolve_auth({'auth_source': 'managed_identity'}, environ={})).token_cache is None
    assert Clients(secret_settings()).token_cache.directory == default_cache_dir()


def test_option_off_writes_nothing_and_asks_entra_per_process(tmp_path):
    directory = tmp_path / 'tokens'
    inners = []

    async def process():
        async with Clients(secret_settings(token_cache=False, token_cache_dir=str(directory))) as clients:
            inner = FakeCredential()
            inners.append(inner)
            clients.credential._build = lambda: inner  # pylint: disable=protected-access
            return await clients.credential.get_token(GRAPH_SCOPE)

    asyncio.run(process())
    asyncio.run(process())
    assert [len(i.calls) for i in inners] == [1, 1] and not directory.exists()


# --- never shown ---------------------------------------------------------------------------------------------------

def test_tokens_never_appear_in_reprs_warnings_or_logs(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    cache = TokenCache(str(tmp_path / 'tokens'))
    inner = FakeCredential()
    settings = secret_settings()

    async def main():
        credential = CachedCredential(lambda: inner, cache=cache, key_of=key_of(settings))
        token = await credential.get_token(GRAPH_SCOPE)
        served = await CachedCredential(lambda: None, cache=TokenCache(cache.directory), key_of=key_of(settings)).get_token(GRAPH_SCOPE)
        return credential, token, served

    credential, token, served = asyncio.run(main())
    assert served == token
    shown = ' '.join([repr(token), str(token), repr(credential), repr(cache), repr(settings), str(settings.summary()),
                      caplog.text, json.dumps(credential.stats)])
    assert token.token not in shown and SECRET not in shown and '<redacted>' in repr(token)
    assert token.token not in redact('answer: {0}'.format(token.token))  # registered, although it is not a JWT
    assert os.listdir(cache.directory) == ['.lock', key_for(settings, GRAPH_SCOPE) + '.json']


def test_the_shared_private_directory_and_lock_file_helpers(tmp_path):
    """_private_files: make_private_dir/private_dir_problem/try_flock serve the token cache and the persistent workers alike."""
    made = tmp_path / 'a' / 'b' / 'private'
    st = _private_files.make_private_dir(str(made))
    assert _private_files.private_dir_problem(st) is None and stat.S_IMODE(st.st_mode) == 0o700
    assert stat.S_IMODE(os.stat(made.parent).st_mode) == 0o700          # missing parents are private too
    assert _private_files.make_private_dir(str(made)).st_ino == st.st_ino  # an existing one is kept
    os.chmod(made, 0o750)
    assert 'open to group or others' in _private_files.private_dir_problem(_private_files.make_private_dir(str(made)))
    os.chmod(made, 0o700)
    link = tmp_path / 'link'
    link.symlink_to(made)
    assert _private_files.private_dir_problem(_private_files.make_private_dir(str(link))) == 'is a symbolic link'

    held = _private_files.try_flock(str(made / 'x.lock'))
    assert held is not None and _private_files.try_flock(str(made / 'x.lock')) is None   # taken: no wait, None
    assert stat.S_IMODE(os.stat(made / 'x.lock').st_mode) == 0o600
    dir_fd = os.open(made, os.O_RDONLY)
    try:
        assert _private_files.try_flock('x.lock', dir_fd=dir_fd) is None                  # the same file, by its handle
        os.close(held)
        again = _private_files.try_flock('x.lock', dir_fd=dir_fd)
        assert again is not None
        os.close(again)
    finally:
        os.close(dir_fd)
    (made / 'elsewhere').write_text('')
    (made / 'y.lock').symlink_to(made / 'elsewhere')
    with pytest.raises(OSError):                                                          # never through a link
        _private_files.try_flock(str(made / 'y.lock'))
