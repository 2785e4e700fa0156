# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The persistent worker: its key, its private directory, the protocol, cancellation, idle exit, start-up and the
fall-back of the module process."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import zipfile

import pytest

from ansible_collections.oidc_federation.azure.plugins.module_utils import _worker
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import ValidationError
from ansible_collections.oidc_federation.azure.plugins.module_utils._module import DetachedModule


class _Running:
    """A ``Worker`` serving in a thread of its own (its own event loop)."""

    def __init__(self, path, runner, idle=30.0):
        self.worker = _worker.Worker(str(path), idle, runner=runner)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.worker.serve()), daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 5
        while not os.path.exists(self.worker.socket_path):
            assert time.monotonic() < deadline, 'the worker did not listen'
            time.sleep(0.01)
        return self.worker

    def __exit__(self, *exc):
        self.worker.idle_timeout = 0
        self.worker.last = 0
        self.thread.join(10)


@pytest.fixture
def short_dir():
    """A directory with a short path: a Unix socket's path must stay under about 100 bytes."""
    path = tempfile.mkdtemp(prefix='wk-', dir='/tmp')
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def client(short_dir):
    return _worker.WorkerClient(os.path.join(short_dir, 'workers'))


def _wait_for_idle_exit(socket_path, timeout=15.0):
    """Wait until the worker behind ``socket_path`` has exited (idle) and removed its socket."""
    deadline = time.monotonic() + timeout
    while os.path.exists(socket_path):
        assert time.monotonic() < deadline, 'the worker did not exit when idle'
        time.sleep(0.1)


def test_the_key_ignores_volatile_variables_and_follows_the_rest():
    environ = {'PATH': '/bin', 'HTTPS_PROXY': 'http://proxy:3128', '_': '/usr/bin/python', 'SHLVL': '2'}
    key = _worker.worker_key('digest', ['/a'], environ)
    assert key == _worker.worker_key('digest', ['/a'], dict(environ, _='/other', SHLVL='3', OLDPWD='/x'))
    assert key != _worker.worker_key('digest', ['/a'], dict(environ, HTTPS_PROXY='http://other:3128'))
    assert key != _worker.worker_key('other digest', ['/a'], environ)
    assert key != _worker.worker_key('digest', ['/b'], environ)
    assert len(key) == 24 and 'proxy' not in key


def test_the_payload_digest_leaves_out_the_sitecustomize_ansiballz_adds(tmp_path):
    def payload(name, site):
        path = tmp_path / name
        with zipfile.ZipFile(path, 'w') as archive:
            archive.writestr('ansible_collections/x/module.py', 'print(1)\n')
            archive.writestr('sitecustomize.py', 'import sys\nsys.path.insert(0, "{0}")\n'.format(site))
        return str(path)

    first, second = payload('a.zip', '/tmp/one'), payload('b.zip', '/tmp/two')
    assert _worker._archive_digest(first) == _worker._archive_digest(second)
    with zipfile.ZipFile(second, 'a') as archive:
        archive.writestr('ansible_collections/x/other.py', 'print(2)\n')
    assert _worker._archive_digest(first) != _worker._archive_digest(second)


def test_the_directory_must_be_private(tmp_path):
    created = _worker.private_dir(str(tmp_path / 'a' / 'workers'))
    assert os.stat(created).st_mode & 0o777 == 0o700
    open_dir = tmp_path / 'open'
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o755)
    with pytest.raises(_worker.WorkerError, match='open to group or others'):
        _worker.private_dir(str(open_dir))
    link = tmp_path / 'link'
    link.symlink_to(created)
    with pytest.raises(_worker.WorkerError, match='symbolic link'):
        _worker.private_dir(str(link))


def test_a_request_runs_on_the_worker_and_concurrent_ones_share_its_state(client):
    seen = []

    async def runner(request, shared):
        shared['calls'] = shared.get('calls', 0) + 1
        for _attempt in range(500):  # every request waits until all four run at once: they run side by side
            if shared['calls'] == 4:
                break
            await asyncio.sleep(0.01)
        seen.append((request['params']['n'], shared['calls']))
        return {'failed': False, 'result': {'changed': True, 'n': request['params']['n']}, 'warnings': ['w']}

    with _Running(client.socket_path, runner) as worker:
        answers = [None] * 4
        threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, client.call(
            {'module': 'gitlab_oidc_projects', 'params': {'n': i}}))) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert [a['result']['n'] for a in answers] == [0, 1, 2, 3]
        assert sorted(seen) == [(0, 4), (1, 4), (2, 4), (3, 4)]
        deadline = time.monotonic() + 5
        while worker.served < 4:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert os.stat(client.directory).st_mode & 0o777 == 0o700


def test_the_socket_is_private_and_other_modules_are_refused(client):
    async def runner(request, shared):
        raise AssertionError('not run')

    with _Running(client.socket_path, runner):
        assert os.stat(client.socket_path).st_mode & 0o777 == 0o600
        with pytest.raises(_worker.WorkerError, match='did not take the request') as caught:
            client.call({'module': 'azure_ad_app', 'params': {}})
        assert not caught.value.taken


def test_a_request_whose_module_process_goes_away_is_cancelled(client):
    state = {'started': threading.Event(), 'cancelled': threading.Event()}

    async def runner(request, shared):
        state['started'].set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            state['cancelled'].set()
            raise
        return {}

    with _Running(client.socket_path, runner) as worker:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(client.socket_path)
        _worker._send(sock, {'protocol': _worker.PROTOCOL, 'module': 'gitlab_oidc_projects', 'params': {}})
        assert sock.recv(1) == _worker.ACCEPTED
        assert state['started'].wait(5)
        sock.close()  # as a killed module process would
        assert state['cancelled'].wait(5)
        deadline = time.monotonic() + 5
        while worker.active:
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_an_unexpected_error_in_the_worker_is_a_failure_of_the_request(client):
    async def broken(request, shared):
        raise RuntimeError('boom with secret-value-1234')

    with _Running(client.socket_path, broken):
        answer = client.call({'module': 'gitlab_oidc_projects', 'params': {}})
    assert answer['failed'] is True and 'RuntimeError: boom' in answer['result']['msg']


def test_a_worker_that_stops_after_taking_the_request_is_reported_as_such(client):
    async def crashing(request, shared):
        raise asyncio.CancelledError  # the handler ends without an answer, as when the worker dies

    with _Running(client.socket_path, crashing):
        with pytest.raises(_worker.WorkerError, match='stopped while running the request') as caught:
            client.call({'module': 'gitlab_oidc_projects', 'params': {}})
        assert caught.value.taken


def test_a_socket_path_too_long_for_unix_sockets_means_no_worker(tmp_path):
    with pytest.raises(_worker.WorkerError, match='too long'):
        _worker.WorkerClient(str(tmp_path / ('x' * 80) / 'workers'))


def test_a_worker_that_closes_before_taking_the_request_is_asked_once_more(client, monkeypatch):
    attempts = []
    real = _worker.WorkerClient._call

    def flaky(self, request, timeout):
        attempts.append(1)
        if len(attempts) == 1:
            raise _worker.WorkerError('the worker did not take the request: the worker closed the connection')
        return real(self, request, timeout)

    async def runner(request, shared):
        return {'failed': False, 'result': {'changed': False}, 'warnings': []}

    monkeypatch.setattr(_worker.WorkerClient, '_call', flaky)
    with _Running(client.socket_path, runner):
        assert client.call({'module': 'gitlab_oidc_projects', 'params': {}})['result'] == {'changed': False}
    assert len(attempts) == 2


def test_the_worker_exits_when_idle_and_removes_its_socket(tmp_path):
    async def runner(request, shared):
        return {}

    worker = _worker.Worker(str(tmp_path / 'w.sock'), 0.3, runner=runner)
    started = time.monotonic()
    asyncio.run(worker.serve())
    assert time.monotonic() - started < 5
    assert not (tmp_path / 'w.sock').exists()


def test_the_first_module_process_starts_the_worker_and_the_worker_goes_away(short_dir):
    client = _worker.WorkerClient(os.path.join(short_dir, 'workers'), idle_timeout=1.0)
    with pytest.raises(_worker.WorkerError, match='did not take the request'):
        client.call({'module': 'not_a_module', 'params': {}})  # started, then refused: nothing ran
    assert os.path.exists(client.socket_path)
    again = _worker.WorkerClient(os.path.join(short_dir, 'workers'), idle_timeout=1.0)
    assert again.key == client.key and again._connect() is not None  # the same worker serves the next process
    _wait_for_idle_exit(client.socket_path)


def test_start_starts_the_worker_once_without_a_request(short_dir):
    """``start`` (prestart_worker) starts the worker and returns once its socket takes connections; the next process
    finds it running, and the requests go to it."""
    client = _worker.WorkerClient(os.path.join(short_dir, 'workers'), idle_timeout=2.0)
    assert client.start() == 'started' and os.path.exists(client.socket_path)
    inode = os.stat(client.socket_path).st_ino
    assert _worker.WorkerClient(os.path.join(short_dir, 'workers'), idle_timeout=2.0).start() == 'running'
    assert os.stat(client.socket_path).st_ino == inode  # no second worker
    with pytest.raises(_worker.WorkerError, match='did not take the request'):
        client.call({'module': 'not_a_module', 'params': {}})  # refused by that worker: it did not restart
    assert os.stat(client.socket_path).st_ino == inode
    _wait_for_idle_exit(client.socket_path)


def test_a_worker_started_from_the_installed_collection_imports_it_from_there(short_dir, monkeypatch):
    """A controller action imports the collection through Ansible's loader, not ``sys.path``: the worker it starts
    gets the collection's root (the directory holding ``ansible_collections``) on its path, and runs the module core
    from it."""
    root = _worker.source_root()
    assert root and os.path.isfile(os.path.join(root, 'ansible_collections', 'oidc_federation', 'azure', 'plugins',
                                                'module_utils', '_worker.py'))
    monkeypatch.setattr(sys, 'path', [p for p in sys.path if os.path.abspath(p or '.') != root])
    monkeypatch.delenv('PYTHONPATH', raising=False)
    client = _worker.WorkerClient(os.path.join(short_dir, 'workers'), idle_timeout=2.0)
    assert client._search_path[0] == root
    assert client.start() == 'started'
    answer = client.call({'module': 'gitlab_oidc_projects', 'params': {}}, timeout=30)
    assert answer['failed'] is True and answer['result']['msg'], answer  # the module's own checks ran (and refused)
    _wait_for_idle_exit(client.socket_path)


def test_prestart_says_when_no_worker_can_be_used(tmp_path):
    answer = _worker.prestart(str(tmp_path / ('x' * 80)))
    assert answer['worker'] == 'unavailable' and 'too long for a Unix socket' in answer['reason'], answer


def test_a_worker_imports_its_modules_as_soon_as_it_listens(monkeypatch, tmp_path):
    """A real worker (no stand-in runner) preloads the modules it runs when its socket is up, before any request;
    one with a stand-in runner (tests) does not."""
    seen = []
    monkeypatch.setattr(_worker, 'preload_modules', lambda: seen.append(os.path.exists(str(tmp_path / 'w.sock'))))
    asyncio.run(_worker.Worker(str(tmp_path / 'w.sock'), 0.2).serve())
    assert seen == [True]

    async def runner(request, shared):
        return {}

    asyncio.run(_worker.Worker(str(tmp_path / 'w.sock'), 0.2, runner=runner).serve())
    assert seen == [True]


def test_preloading_calls_each_modules_preload_and_leaves_failures_to_the_requests(monkeypatch):
    import sys
    import types
    calls = []
    fine = types.ModuleType('oidc_test_fine_module')
    fine.preload = lambda: calls.append('fine')
    broken = types.ModuleType('oidc_test_broken_module')

    def fail():
        calls.append('broken')
        raise ImportError('no such SDK')

    broken.preload = fail
    monkeypatch.setitem(sys.modules, fine.__name__, fine)
    monkeypatch.setitem(sys.modules, broken.__name__, broken)
    monkeypatch.setattr(_worker, 'MODULES', {'a': broken.__name__, 'b': 'oidc_test_module_that_does_not_exist',
                                             'c': fine.__name__})
    _worker.preload_modules()
    assert calls == ['broken', 'fine']


def test_the_module_process_runs_the_core_itself_when_no_worker_can_take_it(monkeypatch, tmp_path):
    class Module:
        params = {'x': 1}
        check_mode = _diff = False

        def __init__(self):
            self.warnings = []

        def warn(self, msg):
            self.warnings.append(msg)

    def refusing(self, request, timeout=None):
        raise _worker.WorkerError('no worker')

    def stopping(self, request, timeout=None):
        raise _worker.WorkerError('the worker stopped while running the request: gone', taken=True)

    module = Module()
    monkeypatch.setattr(_worker.WorkerClient, 'call', refusing)
    assert _worker.run_in_worker(module, 'gitlab_oidc_projects', str(tmp_path)) is None and module.warnings == []
    monkeypatch.setattr(_worker.WorkerClient, 'call', stopping)
    assert _worker.run_in_worker(module, 'gitlab_oidc_projects', str(tmp_path)) is None
    assert len(module.warnings) == 1 and 'ran the request itself' in module.warnings[0]


def test_a_detached_module_collects_warnings_and_gives_plain_data():
    async def core(module, clients):
        module.warn('careful with secret-value-1234')
        return module.result(True, diff=({'a': 1}, {'a': 2}), thing=1)

    async def failing(module, clients):
        module.fail('no good', error={'code': 'X'})

    detached = DetachedModule({}, check_mode=True, diff_mode=True, auth=False)
    asyncio.run(detached.run_async(core))
    answer = detached.answer()
    assert answer['failed'] is False and answer['result']['changed'] is True and answer['result']['thing'] == 1
    assert answer['result']['diff'] == {'before': {'a': 1}, 'after': {'a': 2}}
    assert answer['warnings'] == ['careful with secret-value-1234']
    detached = DetachedModule({}, check_mode=False, diff_mode=False, auth=False)
    asyncio.run(detached.run_async(failing))
    assert detached.answer() == {'failed': True, 'result': {'msg': 'no good', 'error': {'code': 'X'}}, 'warnings': []}


def test_a_detached_module_runs_the_module_checks_and_the_auth_checks_before_the_core():
    """The module process of a worker's call only parses the options: the worker's DetachedModule runs the checks
    AzureModule would (the module's and the auth checks); a failure is the outcome and the core never runs."""
    ran = []

    async def core(module, clients):
        ran.append(True)
        return module.result(False)

    def positive(params):
        if params['count'] < 1:
            raise ValidationError('count: must be at least 1. Fix: use 1 or more (not secret-value-1234).', field='count')

    good = {'count': 1, 'auth_source': 'cli', 'cloud_environment': 'AzurePublicCloud'}
    for params, message in ((dict(good, count=0), 'count: must be at least 1'),
                            (dict(good, tenant_id='not a tenant!'), 'tenant_id')):
        detached = DetachedModule(params, check_mode=False, diff_mode=False, checks=[positive])
        assert detached.outcome is not None  # failed at once: run_async is never called
        answer = detached.answer()
        assert answer['failed'] is True and message in answer['result']['msg'], answer
    assert ran == []
    assert DetachedModule(good, check_mode=False, diff_mode=False, checks=[positive]).outcome is None


def _dead_socket(path):
    """A socket file nobody listens on (as a killed worker leaves it)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()


def test_the_files_of_killed_workers_are_swept_and_the_others_kept(short_dir):
    directory = _worker.private_dir(os.path.join(short_dir, 'workers'))
    old = time.time() - 2 * _worker.STALE_AGE

    def touch(name, when=old, dead_socket=False):
        path = os.path.join(directory, name)
        if dead_socket:
            _dead_socket(path)
        else:
            with open(path, 'wb') as handle:
                handle.write(b'zip')
        os.utime(path, (when, when), follow_symlinks=False)
        return path

    touch('deadkey.sock', dead_socket=True)
    touch('deadkey-0123456789abcdef.zip')
    touch('orphankey-0123456789abcdef.zip')               # a payload copy without a socket
    touch('youngkey.sock', when=time.time(), dead_socket=True)
    touch('ownkey-0123456789abcdef.zip')                   # the caller's own: never swept here
    touch('lockedkey.sock', dead_socket=True)
    touch('goneago.lock')                                  # a worker that exited cleanly long ago
    touch('recent.lock', when=time.time())                 # one that exited a moment ago
    held = _worker._lock(directory, 'lockedkey', 0)       # somebody is starting that worker
    try:
        async def runner(request, shared):
            return {}

        with _Running(os.path.join(directory, 'livekey.sock'), runner):
            os.utime(os.path.join(directory, 'livekey.sock'), (old, old), follow_symlinks=False)
            cleaned = _worker.sweep(directory, 'ownkey')
            assert sorted(cleaned) == ['deadkey', 'goneago', 'orphankey']
            left = sorted(os.listdir(directory))
            assert left == ['livekey.lock', 'livekey.sock', 'lockedkey.lock', 'lockedkey.sock',
                            'ownkey-0123456789abcdef.zip', 'recent.lock', 'youngkey.sock'], left
    finally:
        os.close(held)


def test_a_worker_removes_its_socket_and_payload_copy_when_it_exits(short_dir):
    directory = _worker.private_dir(os.path.join(short_dir, 'workers'))
    copy = os.path.join(directory, 'somekey-0123456789abcdef.zip')
    with open(copy, 'wb') as handle:
        handle.write(b'zip')

    async def runner(request, shared):
        return {}

    asyncio.run(_worker.Worker(os.path.join(directory, 'somekey.sock'), 0.2, runner=runner).serve())
    assert sorted(n for n in os.listdir(directory) if not n.endswith('.lock')) == []
