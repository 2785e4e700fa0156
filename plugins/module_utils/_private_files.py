# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""The user's private directories and lock files: where the token cache (``_token_cache``), the persistent workers
(``_worker``) and the shared-application locks (``_onboarding``) live.

* ``default_cache_dir()``: ``$XDG_RUNTIME_DIR/oidc_federation_azure/tokens`` when ``XDG_RUNTIME_DIR`` is a directory
  of the user, else ``${XDG_CACHE_HOME:-~/.cache}/oidc_federation_azure/tokens``; ``cache_subdir`` a directory beside it.
* ``make_private_dir`` creates a directory with mode 0700; ``private_dir_problem`` says what makes one unfit to hold
  secrets or sockets (a symbolic link, another owner, open to group or others).
* ``try_flock`` takes an exclusive advisory lock without waiting.

Imports only the standard library, and little of it: a module process that hands its call to a persistent worker
imports this file, not the token cache.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Optional

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system: no cross-process lock
    fcntl = None

DIR_NAME = 'oidc_federation_azure'

_O_NOFOLLOW = getattr(os, 'O_NOFOLLOW', 0)
_O_CLOEXEC = getattr(os, 'O_CLOEXEC', 0)


def default_cache_dir(environ: Optional[dict] = None) -> str:
    """``$XDG_RUNTIME_DIR/oidc_federation_azure/tokens`` when that is the user's own directory, else
    ``${XDG_CACHE_HOME:-~/.cache}/oidc_federation_azure/tokens``."""
    environ = os.environ if environ is None else environ
    runtime = environ.get('XDG_RUNTIME_DIR') or ''
    if os.path.isabs(runtime):
        try:
            st = os.stat(runtime)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
                return os.path.join(runtime, DIR_NAME, 'tokens')
        except OSError:
            pass
    cache_home = environ.get('XDG_CACHE_HOME') or ''
    if not os.path.isabs(cache_home):
        cache_home = os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(cache_home, DIR_NAME, 'tokens')


def cache_subdir(token_cache_dir: Optional[str], name: str) -> str:
    """``<token cache dir>/<name>`` (``token_cache_dir``, else the default): where the persistent workers and the
    shared-application locks live, beside the tokens."""
    return os.path.join(token_cache_dir or default_cache_dir(), name)


def make_private_dir(path: str) -> os.stat_result:
    """Create ``path`` with mode 0700 (its missing parents too) unless it exists; the ``lstat`` of what is there,
    for ``private_dir_problem``. Raises ``OSError``."""
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    return os.lstat(path)


def try_flock(path: str, dir_fd: Optional[int] = None) -> Optional[int]:
    """Take the exclusive ``flock`` of lock file ``path`` (created with mode 0600, never through a symbolic link;
    relative to ``dir_fd`` when given) without waiting: its file descriptor, or None when another process holds it.
    Raises ``OSError`` when the file cannot be opened or locked."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600,
                 **({'dir_fd': dir_fd} if dir_fd is not None else {}))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    return fd


def private_dir_problem(st: os.stat_result) -> Optional[str]:
    """What makes the directory of ``st`` (an ``lstat``) unfit to hold secrets or sockets, or None."""
    if stat.S_ISLNK(st.st_mode):
        return 'is a symbolic link'
    if not stat.S_ISDIR(st.st_mode):
        return 'is not a directory'
    if st.st_uid != os.geteuid():
        return 'is owned by user id {0}, not by this user ({1})'.format(st.st_uid, os.geteuid())
    if st.st_mode & 0o077:
        return 'is open to group or others (mode {0:04o}); make it private with chmod 700'.format(stat.S_IMODE(st.st_mode))
    return None
