# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""Access tokens shared by the module processes of one user, and the token source every client uses.

Every task of a play starts a new module process. Without sharing, each one asks Entra for its own access token
(and imports azure-identity and MSAL to do so). ``TokenCache`` keeps Entra access tokens in a private directory so
the other module processes of the run (and of the next runs, while the tokens last) reuse them:

* directory ``$XDG_RUNTIME_DIR/oidc_federation_azure/tokens`` when ``XDG_RUNTIME_DIR`` is a directory of the user
  (a tmpfs on systemd hosts: never written to disk, removed at logout), else
  ``${XDG_CACHE_HOME:-~/.cache}/oidc_federation_azure/tokens``; the ``token_cache_dir`` option overrides it;
* the directory is created with mode 0700 and must be a real directory (not a symbolic link) owned by the user and
  closed to group and others, or the cache is not used; entry files are created with ``O_EXCL``/``O_NOFOLLOW`` and
  mode 0600, then renamed into place, so readers never see a partial file and concurrent writers never clash;
  a file that is a link, owned by someone else, open to others or unreadable is ignored;
* one entry per key: ``sha256`` over the authority, tenant, client id, auth source, scope and a ``sha256``
  fingerprint of the credential material (the client secret, or the federated token as it is now: a rotated
  token file or a changed secret gives a new key). The key reveals none of them;
* an entry is used only while its token has more than ``MIN_REMAINING`` (5 minutes) of validity left; a file's
  mtime is the end of its usable time, so expired entries are removed by ``stat`` alone when a new token is stored;
* a process that has to ask Entra holds an advisory lock (``flock`` on ``.lock``) while it does, so the processes
  started at the same moment wait for its token instead of each asking for one (waiting at most ``LOCK_WAIT``).

Only the ``client_secret`` and ``federated_token`` sources are cached: a managed identity's endpoint is local and
caches tokens itself, and the Azure CLI keeps its own token cache and may change accounts (``az login``,
``az account set``) in ways a key could not see.

``CachedCredential`` is the async token credential ``Clients`` hands to the Graph and ARM pipelines: an in-process
memo, then the shared cache, then the real credential, which it builds (importing azure-identity) only when a token
must really come from Entra. Tokens never appear in a ``repr``, an exception or a warning, and each one is
registered with ``register_secret`` so ``redact`` removes it from any text.

Imports only the standard library.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from typing import Any, Callable, NamedTuple, Optional, Tuple

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system: no cross-process lock, writes stay atomic
    fcntl = None

from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import ValidationError, register_secret
from ansible_collections.oidc_federation.azure.plugins.module_utils._private_files import (
    make_private_dir,
    private_dir_problem,
    try_flock,
)

CACHEABLE_SOURCES = ('client_secret', 'federated_token')
MIN_REMAINING = 300          # seconds of validity a token must still have to be used
LOCK_WAIT = 30.0             # seconds a process waits for another one fetching the same kind of token
LOCK_POLL = 0.02
STALE_TEMP = 600             # temporary files older than this are leftovers of a killed process
MAX_ENTRY_BYTES = 64 * 1024
LOCK_NAME = '.lock'
ENTRY_SUFFIX = '.json'
KEY_VERSION = 1

_O_NOFOLLOW = getattr(os, 'O_NOFOLLOW', 0)
_O_CLOEXEC = getattr(os, 'O_CLOEXEC', 0)
_O_DIRECTORY = getattr(os, 'O_DIRECTORY', 0)
# Operations relative to a directory handle (Linux, macOS, the BSDs); elsewhere full paths are used.
_DIR_FD = all(f in os.supports_dir_fd for f in (os.open, os.stat, os.unlink, os.rename)) and os.listdir in os.supports_fd \
    and os.utime in os.supports_fd


class AccessToken(NamedTuple):
    """An access token and its expiry (epoch seconds), shaped like azure-core's ``AccessToken``. Its ``repr`` hides
    the token."""

    token: str
    expires_on: int

    def __repr__(self) -> str:
        return 'AccessToken(token=<redacted>, expires_on={0})'.format(self.expires_on)


class TokenCacheError(Exception):
    """The cache directory cannot be used (the message says why and names no secret)."""


def fingerprint(material: str) -> str:
    """``sha256`` of the credential material (the secret or the federated token), for the key only."""
    return hashlib.sha256(material.encode('utf-8')).hexdigest()


def cache_key(*, authority: str, tenant_id: Optional[str], client_id: Optional[str], auth_source: str, scope: str,
              material: str) -> str:
    """The entry name of a token: a hash of everything that decides which token Entra issues, including a
    fingerprint of the credential material, so a changed secret or federated token never reuses an old token."""
    fields = {
        'v': KEY_VERSION, 'authority': (authority or '').rstrip('/').lower(), 'tenant': (tenant_id or '').lower(),
        'client_id': (client_id or '').lower(), 'auth_source': auth_source, 'scope': scope,
        'credential': fingerprint(material),
    }
    text = 'oidc_federation.azure token cache\n' + json.dumps(fields, sort_keys=True)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def read_token_file(path: str) -> str:
    """The federated token in ``path`` (stripped), registered as a secret; ``ValidationError`` if unreadable/empty."""
    try:
        with open(path, encoding='utf-8') as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise ValidationError('cannot read federated_token_file {0!r}: {1}'.format(path, exc.strerror or exc)) from None
    if not token:
        raise ValidationError('federated_token_file {0!r} is empty'.format(path))
    register_secret(token)
    return token


def credential_material(settings: Any) -> Optional[str]:
    """What the token depends on besides the ids: the client secret, or the federated token (the file is read
    now, so a rotated token gives a new key). None for sources that are not cached."""
    if settings.auth_source == 'client_secret':
        return settings.client_secret
    if settings.auth_source == 'federated_token':
        return settings.federated_token or read_token_file(settings.federated_token_file)
    return None


def key_for(settings: Any, scope: str) -> Optional[str]:
    """``cache_key`` for ``settings`` and ``scope``; None when the source is not cached."""
    if settings.auth_source not in CACHEABLE_SOURCES:
        return None
    material = credential_material(settings)
    if not material:
        return None
    return cache_key(authority=settings.cloud.authority_host, tenant_id=settings.tenant_id, client_id=settings.client_id,
                     auth_source=settings.auth_source, scope=scope, material=material)


def _is_key(name: str) -> bool:
    return len(name) == 64 and all(c in '0123456789abcdef' for c in name)


class TokenCache:
    """Token files in one private directory. ``open()`` checks (or creates) the directory and keeps it open: every
    later operation is relative to that directory handle, so renaming or replacing the path afterwards (by someone
    who controls a parent directory) cannot redirect tokens elsewhere. ``get``/``put`` never raise for a bad or
    missing entry (a miss); ``put`` raises ``OSError`` when the directory is not writable."""

    def __init__(self, directory: str, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = os.path.abspath(os.path.expanduser(directory))
        self.clock = clock
        self._fd = None

    def __repr__(self) -> str:
        return 'TokenCache({0!r})'.format(self.directory)

    # --- the directory --------------------------------------------------------------------------------------------

    def open(self) -> 'TokenCache':
        """Create the directory (mode 0700, parents as needed) or check the existing one; ``TokenCacheError`` when it
        is a symbolic link, not a directory, owned by another user, or open to group or others."""
        if self._fd is not None:
            return self
        try:
            st = make_private_dir(self.directory)
        except OSError as exc:
            raise TokenCacheError('cannot create {0}: {1}'.format(self.directory, exc.strerror or exc)) from None
        problem = private_dir_problem(st)
        if problem is None:
            try:
                fd = os.open(self.directory, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC)
            except OSError as exc:
                raise TokenCacheError('cannot open {0}: {1}'.format(self.directory, exc.strerror or exc)) from None
            problem = private_dir_problem(os.fstat(fd))  # the directory we hold is the one we checked
            if problem is not None:
                os.close(fd)
        if problem is not None:
            raise TokenCacheError('{0} {1}'.format(self.directory, problem))
        self._fd = fd
        return self

    def close(self) -> None:
        """Release the directory handle (``open`` again to use the cache)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _at(self, name: str) -> Tuple[str, dict]:
        """``(path, kwargs)`` naming ``name`` inside the open directory: relative to its handle where the platform
        allows it, else the full path."""
        if self._fd is None:
            self.open()
        if _DIR_FD:
            return name, {'dir_fd': self._fd}
        return os.path.join(self.directory, name), {}

    # --- entries --------------------------------------------------------------------------------------------------

    def get(self, key: str, min_remaining: float = MIN_REMAINING) -> Optional[AccessToken]:
        """The cached token of ``key`` if it has more than ``min_remaining`` seconds left, else None."""
        data = self._read(key)
        if data is None:
            return None
        token, expires_on = data.get('token'), data.get('expires_on')
        if not isinstance(token, str) or not token or isinstance(expires_on, bool) or not isinstance(expires_on, (int, float)):
            return None
        if expires_on - self.clock() <= min_remaining:
            return None
        register_secret(token)
        return AccessToken(token, int(expires_on))

    def _read(self, key: str) -> Optional[dict]:
        if not _is_key(key):
            return None
        path, at = self._at(key + ENTRY_SUFFIX)
        try:
            fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC, **at)
        except OSError:
            return None  # missing, or a symbolic link (ELOOP)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077 or st.st_size > MAX_ENTRY_BYTES:
                return None
            raw = os.read(fd, MAX_ENTRY_BYTES + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        try:
            data = json.loads(raw.decode('utf-8'))
        except ValueError:
            return None  # corrupt: ignored, replaced by the next put
        if not isinstance(data, dict) or data.get('v') != KEY_VERSION or data.get('key') != key:
            return None
        return data

    def put(self, key: str, token: AccessToken) -> None:
        """Store ``token`` under ``key``: a new 0600 file written next to the entry, then renamed over it."""
        if not _is_key(key):
            raise ValueError('not a cache key')
        body = json.dumps({'v': KEY_VERSION, 'key': key, 'token': token.token, 'expires_on': int(token.expires_on),
                           'stored_on': int(self.clock())}).encode('utf-8')
        usable_until = int(token.expires_on) - MIN_REMAINING
        temp, at = self._at('.{0}.{1}.{2}.tmp'.format(key, os.getpid(), os.urandom(4).hex()))
        final = self._at(key + ENTRY_SUFFIX)[0]
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, 0o600, **at)
        try:
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view):]
                os.utime(fd, (usable_until, usable_until))  # the mtime says until when the entry may be used
            finally:
                os.close(fd)
            if at:
                os.replace(temp, final, src_dir_fd=self._fd, dst_dir_fd=self._fd)
            else:
                os.replace(temp, final)
        except BaseException:
            self._unlink(temp, at)
            raise

    def remove(self, key: str, token: Optional[str] = None) -> None:
        """Delete the entry of ``key`` (only if it still holds ``token``, when given: another process may have
        stored a newer one)."""
        if not _is_key(key):
            return
        if token is not None:
            data = self._read(key)
            if data is None or data.get('token') != token:
                return
        self._unlink(*self._at(key + ENTRY_SUFFIX))

    def cleanup(self) -> int:
        """Remove entries past their usable time (mtime) and temporary files left by killed processes; returns how
        many files were removed. Only our own regular files are touched."""
        removed = 0
        now = self.clock()
        try:
            names = os.listdir(self._fd if _DIR_FD else self.directory)
        except OSError:
            return 0
        for name in names:
            is_entry = name.endswith(ENTRY_SUFFIX) and _is_key(name[:-len(ENTRY_SUFFIX)])
            is_temp = name.startswith('.') and name.endswith('.tmp') and _is_key(name[1:65])
            if not (is_entry or is_temp):
                continue
            path, at = self._at(name)
            try:
                st = os.stat(path, follow_symlinks=False, **at)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                continue
            expired = st.st_mtime <= now if is_entry else st.st_ctime < now - STALE_TEMP
            if expired and self._unlink(path, at):
                removed += 1
        return removed

    @staticmethod
    def _unlink(path: str, at: dict) -> bool:
        try:
            os.unlink(path, **at)
            return True
        except OSError:
            return False

    # --- the lock between processes --------------------------------------------------------------------------------

    def try_lock(self) -> Optional[int]:
        """Take the directory's advisory lock without waiting: a file descriptor to pass to ``unlock``, None when
        another process holds it. Raises ``OSError`` when the lock file cannot be opened."""
        if fcntl is None:  # pragma: no cover
            return -1
        path, at = self._at(LOCK_NAME)
        return try_flock(path, **at)

    @staticmethod
    def unlock(fd: Optional[int]) -> None:
        """Release a lock taken by ``try_lock``."""
        if fd is None or fd < 0:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class NamedLocks:
    """Exclusive locks by name for one async call, across processes: one lock file per name (``try_flock``) in a
    private directory, polled without blocking the event loop (so two calls of one process exclude each other too).
    ``async with NamedLocks(directory, names, timeout=...)`` takes them in sorted order (no deadlock between calls
    that share several names) and gives them back on exit; ``TimeoutError`` after ``timeout`` seconds."""

    POLL_S = 0.05

    def __init__(self, directory: str, names: Any, *, timeout: float) -> None:
        self.directory = directory
        self.names = sorted(set(names))
        self.timeout = timeout
        self._fds: list = []

    def path_of(self, name: str) -> str:
        return os.path.join(self.directory, hashlib.sha256(name.encode('utf-8')).hexdigest() + '.lock')

    async def __aenter__(self) -> 'NamedLocks':
        # Imported here: only the callers that lock pay for it.
        import asyncio  # pylint: disable=import-outside-toplevel
        if self.names:
            problem = private_dir_problem(make_private_dir(self.directory))
            if problem:
                raise OSError('{0} {1}'.format(self.directory, problem))
        deadline = time.monotonic() + self.timeout
        try:
            for name in self.names:
                while True:
                    fd = try_flock(self.path_of(name))
                    if fd is not None:
                        self._fds.append(fd)
                        break
                    if time.monotonic() >= deadline:
                        raise TimeoutError('{0} is held by another run for more than {1:.0f} s'.format(
                            self.path_of(name), self.timeout))
                    await asyncio.sleep(self.POLL_S)
        except BaseException:
            self._release()
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self._release()

    def _release(self) -> None:
        while self._fds:
            os.close(self._fds.pop())  # closing the file gives its flock back


class CachedCredential:
    """The async token credential of one ``Clients``: an in-process memo, then the shared ``TokenCache`` (when one
    is given and the source is cached), then the real credential.

    ``build`` returns the real async credential (azure-identity); it is called only when a token must come from
    Entra, so a process served from the cache never imports azure-identity or MSAL. ``key_of(scope)`` returns the
    cache key of a scope (or None: not cached). Calls run one at a time (kiota asks for a token on every request, the
    first asks Entra and the others get the memo). Requests with ``claims``, ``tenant_id`` or ``enable_cae``
    (a CAE challenge) bypass the memo and the cache. ``warn(msg)`` reports a cache that cannot be used (once).
    """

    def __init__(self, build: Callable[[], Any], *, cache: Optional[TokenCache] = None,
                 key_of: Optional[Callable[[str], Optional[str]]] = None, warn: Optional[Callable[[str], None]] = None,
                 clock: Callable[[], float] = time.time, lock_wait: float = LOCK_WAIT) -> None:
        self._build = build
        self._inner = None
        self._cache = cache
        self._key_of = key_of
        self._warn = warn
        self._clock = clock
        self._lock_wait = lock_wait
        self._lock = None
        self._memo = {}
        self._from_cache = {}     # scope -> (key, token) of a token served from the shared cache
        self._bypass = set()      # scopes whose cached token a service refused: ask Entra from now on
        self.stats = {'memo': 0, 'cache': 0, 'fetched': 0}

    def __repr__(self) -> str:
        return 'CachedCredential(cache={0!r})'.format(self._cache)

    @property
    def inner(self) -> Any:
        """The real credential, built now if it was not yet."""
        if self._inner is None:
            self._inner = self._build()
        return self._inner

    @property
    def built(self) -> bool:
        """True once the real credential exists (azure-identity was needed)."""
        return self._inner is not None

    async def get_token(self, *scopes: str, claims: Optional[str] = None, tenant_id: Optional[str] = None,
                        enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        """An access token for ``scopes`` (azure-core's ``AsyncTokenCredential.get_token``)."""
        if claims or tenant_id or enable_cae or kwargs or len(scopes) != 1:
            extra = dict(kwargs)
            if claims:
                extra['claims'] = claims
            if tenant_id:
                extra['tenant_id'] = tenant_id
            if enable_cae:
                extra['enable_cae'] = True
            return await self._fetch(scopes, **extra)
        scope = scopes[0]
        token = self._fresh(self._memo.get(scope))
        if token is not None:
            self.stats['memo'] += 1
            return token
        import asyncio  # only where tokens are fetched (not in a module process that hands its call over)

        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            token = self._fresh(self._memo.get(scope))
            if token is None:
                token = await self._from_shared_cache_or_entra(scope)
                self._memo[scope] = token
            else:
                self.stats['memo'] += 1
            return token

    def _fresh(self, token: Optional[AccessToken]) -> Optional[AccessToken]:
        if token is not None and token.expires_on - self._clock() > MIN_REMAINING:
            return token
        return None

    async def _from_shared_cache_or_entra(self, scope: str) -> AccessToken:
        cache = self._usable_cache()
        key = self._key_of(scope) if cache is not None and self._key_of is not None else None
        if key is None:
            return await self._fetch((scope,))
        trusted = scope not in self._bypass  # after a refused token: store the new one, but read no more
        token = cache.get(key) if trusted else None
        if token is not None:
            return self._served(scope, key, token)
        lock = await self._take_lock(cache)
        try:
            token = cache.get(key) if trusted else None  # another process may have stored one while we waited
            if token is not None:
                return self._served(scope, key, token)
            token = await self._fetch((scope,))
            try:
                cache.put(key, token)
                cache.cleanup()
            except OSError as exc:
                self._disable('cannot write to {0}: {1}'.format(cache.directory, exc.strerror or exc))
            return token
        finally:
            cache.unlock(lock)

    def _served(self, scope: str, key: str, token: AccessToken) -> AccessToken:
        self.stats['cache'] += 1
        self._from_cache[scope] = (key, token.token)
        return token

    async def _take_lock(self, cache: TokenCache) -> Optional[int]:
        """The cache's lock, polling for at most ``lock_wait`` seconds; None (go on without it) after that."""
        import asyncio

        deadline = self._clock() + self._lock_wait
        while True:
            try:
                fd = cache.try_lock()
            except OSError as exc:
                self._disable('cannot lock {0}: {1}'.format(cache.directory, exc.strerror or exc))
                return None
            if fd is not None or self._clock() >= deadline:
                return fd
            await asyncio.sleep(LOCK_POLL)

    def _usable_cache(self) -> Optional[TokenCache]:
        if self._cache is None:
            return None
        try:
            return self._cache.open()
        except TokenCacheError as exc:
            self._disable(str(exc))
            return None

    def _disable(self, reason: str) -> None:
        self._cache = None
        if self._warn is not None:
            self._warn('token_cache: not sharing access tokens between tasks: {0}. Set token_cache_dir to a private '
                       'directory, or token_cache=false to silence this.'.format(reason))

    async def _fetch(self, scopes: tuple, **kwargs: Any) -> AccessToken:
        result = await self.inner.get_token(*scopes, **kwargs)
        self.stats['fetched'] += 1
        register_secret(result.token)
        return AccessToken(result.token, int(result.expires_on))

    def refused(self, scope: str) -> bool:
        """A service refused (401) the token of ``scope``. If it came from the shared cache, drop it there and in
        the memo, stop reading the cache for this scope (the new token from Entra is still stored for the other
        processes), and return True (worth one more try with a new token). Also True for the other requests that
        were sent concurrently with the refused token, once it was dropped."""
        served = self._from_cache.pop(scope, None)
        if served is None:
            return scope in self._bypass
        key, token = served
        self._bypass.add(scope)
        memo = self._memo.get(scope)
        if memo is not None and memo.token == token:
            del self._memo[scope]
        if self._cache is not None:
            self._cache.remove(key, token)
        return True

    async def close(self) -> None:
        """Close the real credential if it was built, and the cache's directory handle."""
        if self._cache is not None:
            self._cache.close()
        if self._inner is not None:
            await self._inner.close()
