# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""A persistent worker: one process that runs the module core for the module processes of a run.

Every task of a play starts a new module process, which pays for an interpreter, AnsiballZ and the SDK imports
(about 0.5 s of CPU) before it does anything. With ``persistent_worker``, the module process parses its options
(Ansible's own validation, with ``_auth_spec``) and hands them to a worker that already has the module core loaded;
the worker runs the module's checks (the auth checks included) and its core, and the module process exits with the
worker's result (``_final.exit_with``). So the module process imports this file, ``_auth_spec``, ``_final`` and
``_private_files``, not the core (``_module``, ``_auth``, ``_errors``, ``_token_cache``...): about 30 ms of CPU less
per process. The worker runs the requests of concurrent module processes side by side in one event loop, with one
Graph pacer for all of them.

* One worker per user, module payload, Python, working directory, umask and environment (all hashed into its key):
  a module of another collection version, another interpreter or other environment variables (proxies, CA bundles,
  ``AZURE_*``) gets a worker of its own. It lives in ``<token cache dir>/workers`` (``token_cache_dir``, else
  ``$XDG_RUNTIME_DIR/oidc_federation_azure/tokens`` or ``~/.cache/...``), a directory of mode 0700 owned by the user
  (as the token cache requires), as a Unix socket of mode 0600; it accepts only connections of its own user
  (``SO_PEERCRED`` where the system has it).
* The first module process that finds no worker starts one (under a lock, so concurrent processes start one),
  from a private copy of its own module payload; the worker exits after ``IDLE_TIMEOUT`` seconds without requests.
  As soon as its socket takes connections it imports the module core and the SDKs (about a second), so a worker
  started ahead of its calls (``prestart``: the module's ``prestart_worker``) has them ready when they come.
* A request whose module process goes away (killed, timed out) is cancelled in the worker, as the module process
  would have been. A module process that cannot reach a worker, or loses it before the worker took its request,
  runs the core itself; one that loses it after that runs it again itself (every write is keyed, so this converges)
  and says so in a warning.
* The worker writes nothing to logs or files besides the socket and the payload copy; secrets travel only over
  the private socket, and every message is redacted as in the module process.
* The module's action plugin (``plugins/action/gitlab_oidc_projects.py``) can ask too, with no module process, when
  the task runs on the controller in ansible-playbook's own Python: it imports this file from the installed
  collection (no payload: the worker gets the collection's root, ``source_root()``, on its path) and calls
  ``ask_worker`` and ``prestart`` as a module process would.

Imports only the standard library and ``_private_files`` (the module core is imported by the worker when a request
arrives).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import socket
import struct
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system: no worker
    fcntl = None

from ansible_collections.oidc_federation.azure.plugins.module_utils._private_files import (
    cache_subdir,
    make_private_dir,
    private_dir_problem,
    try_flock,
)

if TYPE_CHECKING:  # asyncio is imported where the worker serves: a module process that only asks does not need it
    import asyncio

PROTOCOL = 1
IDLE_TIMEOUT = 20.0          # seconds a worker waits for a request before it exits
START_WAIT = 15.0            # seconds a module process waits for the worker it started
LOCK_WAIT = 20.0             # seconds a module process waits for another one starting the worker
MAX_MESSAGE = 256 * 1024 * 1024
STALE_AGE = 3600.0           # seconds after which the files of a worker that is gone without cleaning up are removed
WORKERS_DIR = 'workers'
# Environment variables that differ between the module processes of one run without changing what they do.
_VOLATILE_ENV = frozenset(('_', 'OLDPWD', 'SHLVL', 'PS1', 'TERM'))
_HEADER = struct.Struct('>Q')
ACCEPTED = b'A'

_BOOTSTRAP = ('import sys; sys.path[0:0] = sys.argv[3:]; '
              'from ansible_collections.oidc_federation.azure.plugins.module_utils._worker import serve_forever; '
              'serve_forever(sys.argv[1], float(sys.argv[2]))')


class WorkerError(Exception):
    """The worker could not be reached or did not answer (``taken``: it had accepted the request)."""

    def __init__(self, msg: str, taken: bool = False) -> None:
        super().__init__(msg)
        self.taken = taken


# --- where and which worker ---------------------------------------------------------------------------------------

def workers_dir(token_cache_dir: Optional[str] = None) -> str:
    """``<token cache dir>/workers``."""
    return cache_subdir(token_cache_dir, WORKERS_DIR)


def private_dir(path: str) -> str:
    """Create ``path`` (mode 0700, parents as needed) or check it: a real directory of this user closed to others
    (``WorkerError`` otherwise). Returns ``path``."""
    try:
        problem = private_dir_problem(make_private_dir(path))
    except OSError as exc:
        raise WorkerError('cannot create {0}: {1}'.format(path, exc.strerror or exc)) from None
    if problem is not None:
        raise WorkerError('{0} {1}'.format(path, problem))
    return path


def payload_archive() -> Optional[str]:
    """The zip this code was imported from (AnsiballZ's payload), or None when it comes from a directory."""
    archive = getattr(globals().get('__loader__'), 'archive', None)
    return archive if isinstance(archive, str) and os.path.isfile(archive) else None


def source_root() -> Optional[str]:
    """The directory that holds ``ansible_collections`` when this code is imported from an installed collection (a
    controller action imports it so, through Ansible's collection loader rather than ``sys.path``), else None."""
    here = os.path.abspath(globals().get('__file__') or '')
    parts = here.split(os.sep)
    if parts[-6:-1] != ['ansible_collections', 'oidc_federation', 'azure', 'plugins', 'module_utils']:
        return None
    return os.sep.join(parts[:-6]) or os.sep


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def worker_key(archive_digest: str, search_path: list, environ: Optional[dict] = None) -> str:
    """The worker's name: a hash of everything that makes two module processes run the core the same way."""
    environ = os.environ if environ is None else environ
    digest = hashlib.sha256()
    for part in (str(PROTOCOL), archive_digest, sys.executable, str(os.geteuid()), os.getcwd(), str(_umask()),
                 json.dumps(search_path),
                 json.dumps(sorted((k, v) for k, v in environ.items() if k not in _VOLATILE_ENV))):
        digest.update(part.encode('utf-8', 'surrogateescape'))
        digest.update(b'\0')
    return digest.hexdigest()[:24]


def _archive_digest(path: str) -> str:
    """A hash of the payload's members (names, sizes, CRCs), leaving out the ``sitecustomize.py`` AnsiballZ adds
    to it, which names the process's own temporary path."""
    import zipfile
    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            if info.filename != 'sitecustomize.py':
                digest.update('{0}\0{1}\0{2}\n'.format(info.filename, info.file_size, info.CRC).encode('utf-8'))
    return digest.hexdigest()


def _lock(directory: str, key: str, wait: float) -> Optional[int]:
    """Take the exclusive ``flock`` of worker ``key`` (``<key>.lock``), waiting at most ``wait`` seconds: its file
    descriptor, or None when it stayed taken. Whoever starts a worker, or removes a dead worker's files, holds it."""
    if fcntl is None:  # pragma: no cover
        raise WorkerError('no file locks on this system')
    lock_path = os.path.join(directory, key + '.lock')
    deadline = time.monotonic() + wait
    while True:
        try:
            fd = try_flock(lock_path)
        except OSError as exc:
            raise WorkerError('cannot lock {0}: {1}'.format(lock_path, exc.strerror or exc)) from None
        if fd is not None or time.monotonic() >= deadline:
            return fd
        time.sleep(0.02)


def _unlink_socket(socket_path: str, socket_inode: Optional[int] = None) -> None:
    """Remove the socket at ``socket_path`` (only the one with ``socket_inode`` when given: not a successor's)."""
    try:
        if socket_inode is None or os.stat(socket_path).st_ino == socket_inode:
            os.unlink(socket_path)
    except OSError:
        pass


def _remove_files_of(directory: str, key: str, socket_inode: Optional[int] = None) -> None:
    """Remove worker ``key``'s socket (``_unlink_socket``) and payload copies; the caller holds its lock. The lock
    file stays (a process may be waiting on it)."""
    _unlink_socket(os.path.join(directory, key + '.sock'), socket_inode)
    for name in os.listdir(directory):
        if name.startswith(key + '-') and name.endswith('.zip'):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def sweep(directory: str, own_key: str, min_age: float = STALE_AGE, now: Optional[float] = None) -> list:
    """Remove the files of workers that are gone: a socket nobody answers on, a payload copy without a socket (a
    killed worker's) and the lock file of a worker gone long ago, when all of them are older than ``min_age`` seconds
    and the lock is free (nobody is starting that worker). Returns the keys cleaned."""
    now = time.time() if now is None else now
    files: dict = {}  # key -> the paths of its socket, lock file and payload copies (one listing for all keys)
    for name in os.listdir(directory):
        if name.endswith('.sock') or name.endswith('.lock'):
            key = name[:-5]
        elif name.endswith('.zip') and '-' in name:
            key = name.split('-', 1)[0]
        else:
            continue
        files.setdefault(key, []).append(os.path.join(directory, name))
    cleaned = []
    for key in sorted(set(files) - {own_key}):
        paths = files[key]
        try:
            if any(now - os.lstat(path).st_mtime < min_age for path in paths):
                continue
        except OSError:
            continue
        fd = _lock(directory, key, 0)
        if fd is None:
            continue
        try:
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(os.path.join(directory, key + '.sock'))
                continue  # alive
            except OSError:
                pass
            finally:
                probe.close()
            _remove_files_of(directory, key)
            try:
                os.unlink(os.path.join(directory, key + '.lock'))  # held by us: nobody is starting this worker
            except OSError:
                pass
            cleaned.append(key)
        finally:
            os.close(fd)
    return cleaned


# --- framing ------------------------------------------------------------------------------------------------------

def _frame(payload: dict) -> bytes:
    """One message as it travels, either way: its length, then its JSON."""
    data = json.dumps(payload).encode('utf-8')
    return _HEADER.pack(len(data)) + data


def _send(sock: socket.socket, payload: dict) -> None:
    sock.sendall(_frame(payload))


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError('the worker closed the connection')
        chunks.append(chunk)
        size -= len(chunk)
    return b''.join(chunks)


def _recv(sock: socket.socket) -> dict:
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if size > MAX_MESSAGE:
        raise ValueError('message of {0} bytes'.format(size))
    value = json.loads(_recv_exact(sock, size).decode('utf-8'))
    if not isinstance(value, dict):
        raise ValueError('not a message')
    return value


# --- the module process's side ------------------------------------------------------------------------------------

class WorkerClient:
    """Finds or starts the worker of this module process and runs requests on it."""

    def __init__(self, directory: str, *, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.directory = private_dir(directory)
        self.idle_timeout = idle_timeout
        archive = payload_archive()
        self._archive = archive
        self._digest = _archive_digest(archive) if archive else 'source'
        if archive:
            self._search_path = [p for p in sys.path if p != archive]
        else:  # from the installed collection: the worker needs its root on its path to import the same code
            root = source_root()
            self._search_path = ([root] if root and root not in sys.path else []) + list(sys.path)
        self.key = worker_key(self._digest, self._search_path)
        self.socket_path = os.path.join(self.directory, self.key + '.sock')
        if len(self.socket_path.encode('utf-8', 'surrogateescape')) > 100:
            raise WorkerError('the socket path {0} is too long for a Unix socket'.format(self.socket_path))

    def call(self, request: dict, timeout: Optional[float] = None) -> dict:
        """Run ``request`` on the worker (starting it when needed) and return its answer. A worker that closes the
        connection before it takes the request (it was exiting, idle, as the request came) is asked once more,
        through a worker started anew if need be."""
        try:
            return self._call(request, timeout)
        except WorkerError as exc:
            if exc.taken:
                raise
        return self._call(request, timeout)

    def _call(self, request: dict, timeout: Optional[float]) -> dict:
        sock = self._connect()
        if sock is None:
            sock = self._start_and_connect()
        with sock:
            sock.settimeout(timeout)
            try:
                _send(sock, dict(request, protocol=PROTOCOL))
                if _recv_exact(sock, 1) != ACCEPTED:
                    raise WorkerError('the worker refused the request')
            except (OSError, EOFError, ValueError) as exc:
                raise WorkerError('the worker did not take the request: {0}'.format(exc)) from None
            try:
                return _recv(sock)
            except (OSError, EOFError, ValueError) as exc:
                raise WorkerError('the worker stopped while running the request: {0}'.format(exc), taken=True) from None

    def start(self) -> str:
        """Start the worker ahead of its first request: ``'running'`` when one already takes connections, ``'started'``
        when this call started one. It waits for the worker's socket (a fraction of a second, so that no other module process
        starts a second worker meanwhile), not for its imports, which the worker makes on its own at once (``preload``
        of the modules it runs) while the caller goes on."""
        sock = self._connect()
        state = 'running'
        if sock is None:
            sock, state = self._start_and_connect(), 'started'
        sock.close()  # a connection closed before any request: the worker drops it
        return state

    def _connect(self) -> Optional[socket.socket]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            return None
        return sock

    def _start_and_connect(self) -> socket.socket:
        fd = _lock(self.directory, self.key, LOCK_WAIT)
        if fd is None:
            raise WorkerError('another process holds the lock of the worker for more than {0:.0f} s'.format(LOCK_WAIT))
        try:
            sock = self._connect()  # started by the process that held the lock
            if sock is not None:
                return sock
            try:
                sweep(self.directory, self.key)
            except (OSError, WorkerError):
                pass
            self._spawn()
            deadline = time.monotonic() + START_WAIT
            while time.monotonic() < deadline:
                sock = self._connect()
                if sock is not None:
                    return sock
                time.sleep(0.02)
            raise WorkerError('the worker did not start within {0:.0f} s'.format(START_WAIT))
        finally:
            os.close(fd)

    def _spawn(self) -> None:
        try:
            os.unlink(self.socket_path)  # a dead worker's socket (we hold the lock: no live worker owns it)
        except FileNotFoundError:
            pass
        search_path = list(self._search_path)
        if self._archive:
            copy = os.path.join(self.directory, '{0}-{1}.zip'.format(self.key, self._digest[:16]))
            if not os.path.isfile(copy):
                from ansible_collections.oidc_federation.azure.plugins.module_utils._results import atomic_write
                with open(self._archive, 'rb') as handle:
                    atomic_write(copy, handle.read(), prefix='.payload-')
            search_path.insert(0, copy)
        import subprocess

        with open(os.devnull, 'rb') as devnull_in, open(os.devnull, 'wb') as devnull_out:
            # The worker outlives this process: no context manager, no wait.
            subprocess.Popen(  # pylint: disable=consider-using-with
                [sys.executable, '-c', _BOOTSTRAP, self.socket_path, str(self.idle_timeout)] + search_path,
                stdin=devnull_in, stdout=devnull_out, stderr=devnull_out, close_fds=True, start_new_session=True,
                cwd=os.getcwd())


def prestart(token_cache_dir: Optional[str]) -> dict:
    """Start the worker of this module process ahead of the calls that will use it: ``{'worker': 'running' | 'started'}``,
    or ``{'worker': 'unavailable', 'reason': ...}`` when none can be used (those calls will run in their own module
    processes, as they would anyway)."""
    try:
        return {'worker': WorkerClient(workers_dir(token_cache_dir)).start()}
    except WorkerError as exc:
        return {'worker': 'unavailable', 'reason': str(exc)}


def ask_worker(module_name: str, params: dict, check_mode: bool, diff_mode: bool,
               token_cache_dir: Optional[str]) -> tuple:
    """Run a call of ``module_name`` with its parsed ``params`` on the worker, which runs the module's checks and its
    core: ``(final, None)`` with the final result (``_final.final_result``: ``failed``, ``result``, ``warnings``), or
    ``(None, warning)`` when the caller must run the call another way (no worker could take the request; ``warning``
    is None then, or says that the worker stopped after it took the request)."""
    try:
        client = WorkerClient(workers_dir(token_cache_dir))
        return client.call({'module': module_name, 'params': params, 'check_mode': bool(check_mode),
                            'diff_mode': bool(diff_mode)}), None
    except WorkerError as exc:
        if exc.taken:
            return None, ('persistent_worker: {0}; the module ran the request itself (writes are keyed, so this '
                          'converges)'.format(exc))
        return None, None


def run_in_worker(module: Any, module_name: str, token_cache_dir: Optional[str]) -> Optional[dict]:
    """Run the call of ``module`` (the module process's ``AnsibleModule``: its options parsed, nothing else done)
    on the worker (``ask_worker``): the final result, or None when the module process must run the call itself (a
    warning says so when the worker stopped after it took the request)."""
    final, warning = ask_worker(module_name, module.params, bool(module.check_mode), bool(getattr(module, '_diff', False)),
                                token_cache_dir)
    if warning:
        module.warn(warning)
    return final


# --- the worker's side --------------------------------------------------------------------------------------------

# The modules a worker runs, and where their core is (each module's file defines ``CHECKS``, ``core`` and
# ``clients_factory``, and may define ``preload``: import now what its calls will need).
MODULES = {'gitlab_oidc_projects': 'ansible_collections.oidc_federation.azure.plugins.modules.gitlab_oidc_projects'}


def preload_modules() -> None:
    """Import what the first request would (each module's core and its SDKs: the module's ``preload``) as soon as the
    socket takes connections, so that a worker started ahead of its calls (``prestart``) has them ready; requests that
    come meanwhile wait in the socket's backlog. An import that fails here is left to the request, which reports it."""
    for name in MODULES.values():
        try:
            preload = getattr(importlib.import_module(name), 'preload', None)
            if preload is not None:
                preload()
        except Exception:  # pylint: disable=broad-exception-caught
            pass


def _peer_uid(sock: socket.socket) -> Optional[int]:
    option = getattr(socket, 'SO_PEERCRED', None)
    if option is None:  # pragma: no cover - not Linux: the private directory is the only guard
        return None
    _pid, uid, _gid = struct.unpack('3i', sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize('3i')))
    return uid


class Worker:
    """Serves requests on ``socket_path`` until ``idle_timeout`` seconds pass without one."""

    def __init__(self, socket_path: str, idle_timeout: float, *,
                 runner: Optional[Callable[[dict, dict], Any]] = None) -> None:
        self.preload = runner is None  # a stand-in runner (tests) needs nothing imported
        self.socket_path = socket_path
        self.idle_timeout = idle_timeout
        self.active = 0
        self.served = 0
        self.last = time.monotonic()
        self._runner = runner or self._run_module
        self._shared: dict = {}   # state the requests of this worker share (Graph pacers, SharedClients)

    async def serve(self) -> None:
        import asyncio

        server = await asyncio.start_unix_server(self._handle, path=self.socket_path)
        os.chmod(self.socket_path, 0o600)
        inode = os.stat(self.socket_path).st_ino
        try:
            if self.preload:
                preload_modules()
            while self.active or time.monotonic() - self.last < self.idle_timeout:
                await asyncio.sleep(min(1.0, self.idle_timeout / 4))
        finally:
            server.close()
            self._remove_own_files(inode)
            await server.wait_closed()
            await self._close_shared()

    async def _close_shared(self) -> None:
        """Close what the requests shared and can be closed (``aclose``: the clients' connections)."""
        for value in list(self._shared.values()):
            aclose = getattr(value, 'aclose', None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # pylint: disable=broad-exception-caught
                    pass  # the worker is exiting; nothing left to report to

    def _remove_own_files(self, inode: int) -> None:
        """Remove the socket (if it is still this worker's, not a successor's) and, unless a module process is
        starting a successor right now (it holds the lock and will need them), the payload copies of this key."""
        directory, name = os.path.split(self.socket_path)
        key = name[:-len('.sock')] if name.endswith('.sock') else name
        fd = None
        try:
            fd = _lock(directory, key, 2.0)
        except WorkerError:
            pass
        try:
            if fd is not None:
                _remove_files_of(directory, key, socket_inode=inode)
            else:
                _unlink_socket(self.socket_path, inode)
        finally:
            if fd is not None:
                os.close(fd)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import asyncio

        self.active += 1
        try:
            sock = writer.get_extra_info('socket')
            uid = _peer_uid(sock) if sock is not None else None
            if uid is not None and uid != os.geteuid():
                return
            header = await reader.readexactly(_HEADER.size)
            (size,) = _HEADER.unpack(header)
            if size > MAX_MESSAGE:
                return
            request = json.loads((await reader.readexactly(size)).decode('utf-8'))
            if not isinstance(request, dict) or request.get('protocol') != PROTOCOL or request.get('module') not in MODULES:
                return
            writer.write(ACCEPTED)
            await writer.drain()
            task = asyncio.ensure_future(self._runner(request, self._shared))
            gone = asyncio.ensure_future(reader.read(1))  # the module process closes its side only when it goes away
            done, _pending = await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
            if task not in done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return
            gone.cancel()
            try:
                answer = task.result()
            except Exception as exc:  # pylint: disable=broad-exception-caught
                from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import redact
                answer = {'failed': True, 'warnings': [],
                          'result': {'msg': redact('persistent worker: unexpected error: {0}: {1}'.format(type(exc).__name__, exc))}}
            writer.write(_frame(answer))
            await writer.drain()
            self.served += 1
        except (OSError, EOFError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            self.active -= 1
            self.last = time.monotonic()
            writer.close()

    @staticmethod
    async def _run_module(request: dict, shared: dict) -> dict:
        module = importlib.import_module(MODULES[request['module']])
        from ansible_collections.oidc_federation.azure.plugins.module_utils._module import DetachedModule
        detached = DetachedModule(request['params'], check_mode=bool(request.get('check_mode')),
                                  diff_mode=bool(request.get('diff_mode')), checks=module.CHECKS)
        if detached.outcome is None:
            await detached.run_async(module.core, module.clients_factory(request['params'], shared))
        return detached.answer()


def serve_forever(socket_path: str, idle_timeout: float) -> None:
    """The worker process's entry point (see ``_BOOTSTRAP``)."""
    import asyncio

    asyncio.run(Worker(socket_path, idle_timeout).serve())
