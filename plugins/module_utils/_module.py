# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""``AzureModule``: the module wrapper every module of the collection uses.

It merges the shared auth options and their constraints (``AUTH_SPEC``) into the module's own ``ArgumentSpec``,
validates everything and resolves the auth settings before any SDK is imported, then runs the module's async core
``async def core(module, clients)`` with ``asyncio.run`` inside an ``async with Clients(...)``. Expected failures
(``ValidationError``, ``AzureApiError``, a missing SDK) become ``fail_json`` without a traceback; secrets are
redacted from every message.

Typical module::

    async def core(module, clients):
        before = await read(clients, ...)
        ...
        return module.result(changed, diff=(before, after), application=after)

    def main():
        module = AzureModule(argument_spec=dict(name=dict(type='str', required=True)), supports_check_mode=True)
        module.run(core)
"""

from __future__ import annotations

import copy
import traceback
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Mapping, Optional, Union

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.oidc_federation.azure.plugins.module_utils._auth import AUTH_CONSTRAINTS, resolve_auth
from ansible_collections.oidc_federation.azure.plugins.module_utils._auth_spec import AUTH_ARGSPEC
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import (
    AzureApiError,
    MissingLibraryError,
    ValidationError,
    redact,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._final import exit_with, final_result

if TYPE_CHECKING:  # pragma: no cover - a module process that hands its call to a persistent worker never needs it
    from ansible_collections.oidc_federation.azure.plugins.module_utils._auth import AuthSettings
    from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import Clients

_LIST_CONSTRAINTS = ('mutually_exclusive', 'required_together', 'required_one_of', 'required_if')


class ArgumentSpec:
    """An argument spec bundled with its constraints, mergeable (after community.crypto's ``_argspec.ArgumentSpec``).

    ``mutually_exclusive``, ``required_together``, ``required_one_of``, ``required_if`` and ``required_by`` are passed
    to ``AnsibleModule``. ``checks`` are callables ``check(params)`` raising ``ValidationError``; they run right after
    Ansible's validation, before any SDK import, for constraints Ansible cannot express (or cannot explain well).
    """

    def __init__(self, argument_spec: Optional[Mapping[str, dict]] = None, *, mutually_exclusive: Iterable = (),
                 required_together: Iterable = (), required_one_of: Iterable = (), required_if: Iterable = (),
                 required_by: Optional[Mapping[str, Any]] = None, checks: Iterable[Callable[[Mapping[str, Any]], None]] = ()) -> None:
        self.argument_spec = copy.deepcopy(dict(argument_spec or {}))
        self.mutually_exclusive = [list(x) for x in mutually_exclusive]
        self.required_together = [list(x) for x in required_together]
        self.required_one_of = [list(x) for x in required_one_of]
        self.required_if = [list(x) for x in required_if]
        self.required_by = {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in (required_by or {}).items()}
        self.checks = list(checks)

    def merge(self, other: 'ArgumentSpec') -> 'ArgumentSpec':
        """A new spec with both specs' options and constraints; an option defined twice is a programming error."""
        clash = sorted(set(self.argument_spec) & set(other.argument_spec))
        if clash:
            raise ValueError('options defined twice: {0}'.format(', '.join(clash)))
        required_by = copy.deepcopy(self.required_by)
        for key, values in other.required_by.items():
            required_by[key] = required_by.get(key, []) + [v for v in values if v not in required_by.get(key, [])]
        merged = ArgumentSpec(dict(self.argument_spec, **other.argument_spec), required_by=required_by,
                              checks=self.checks + other.checks)
        for name in _LIST_CONSTRAINTS:
            setattr(merged, name, copy.deepcopy(getattr(self, name)) + copy.deepcopy(getattr(other, name)))
        return merged

    def ansible_kwargs(self) -> dict:
        """Keyword arguments for ``AnsibleModule`` (spec and constraints)."""
        kwargs = {'argument_spec': copy.deepcopy(self.argument_spec)}
        for name in _LIST_CONSTRAINTS:
            if getattr(self, name):
                kwargs[name] = copy.deepcopy(getattr(self, name))
        if self.required_by:
            kwargs['required_by'] = copy.deepcopy(self.required_by)
        return kwargs

    def run_checks(self, params: Mapping[str, Any]) -> None:
        """Run every check; the first ``ValidationError`` propagates."""
        for check in self.checks:
            check(params)

    def create_ansible_module(self, **kwargs: Any) -> AnsibleModule:
        """``AnsibleModule(**self.ansible_kwargs(), **kwargs)`` (e.g. ``supports_check_mode=True``)."""
        return AnsibleModule(**dict(self.ansible_kwargs(), **kwargs))


AUTH_SPEC = ArgumentSpec(AUTH_ARGSPEC, **AUTH_CONSTRAINTS)


def _spec_of(ansible_module: AnsibleModule) -> ArgumentSpec:
    """The options and constraints an ``AnsibleModule`` was built with, as an ``ArgumentSpec`` (so normalised alike)."""
    constraints = {name: getattr(ansible_module, name, None) or () for name in _LIST_CONSTRAINTS}
    return ArgumentSpec(ansible_module.argument_spec, required_by=getattr(ansible_module, 'required_by', None),
                        **constraints)


def _with_auth(spec: ArgumentSpec, auth: bool) -> ArgumentSpec:
    """``spec`` with the shared auth options and their checks first (``auth``), else ``spec``."""
    return AUTH_SPEC.merge(spec) if auth else spec


def _checked_auth(spec: ArgumentSpec, params: Mapping[str, Any], auth: bool,
                  environ: Optional[Mapping[str, str]]) -> Optional['AuthSettings']:
    """Run ``spec``'s checks on the parsed ``params``, then resolve the auth settings (None without ``auth``);
    ``ValidationError`` for the first problem. What ``AzureModule`` and ``DetachedModule`` do before any request."""
    spec.run_checks(params)
    return resolve_auth(params, environ) if auth else None


class _Finish(BaseException):
    """Raised by ``exit``/``fail`` while ``run`` is active, so clients close before the result is printed.

    A BaseException, so a module's ``except Exception`` cannot swallow it.
    """

    def __init__(self, failed: bool, result: dict) -> None:
        super().__init__('module finished')
        self.failed = failed
        self.result = result


class AzureModule:
    """Wraps ``AnsibleModule`` with the shared auth options, their checks and the async run loop.

    ``argument_spec`` is a dict or an ``ArgumentSpec``; the constraint keywords and ``checks`` add to it.
    ``auth=False`` leaves out the shared auth options (for modules that never call Azure).
    ``environ`` (tests) replaces ``os.environ`` for managed identity detection.
    ``ansible_module``: an ``AnsibleModule`` the module process already built with the same options
    (``_auth_spec.with_auth_options``), used instead of a new one (a module that first offered its call to a
    persistent worker); its options must be this spec's.
    After construction: ``params``, ``auth`` (``AuthSettings``), ``check_mode``, ``diff_mode``, ``ansible``.
    """

    def __init__(self, argument_spec: Union[Mapping[str, dict], ArgumentSpec, None] = None, *,
                 supports_check_mode: bool = True, auth: bool = True, mutually_exclusive: Iterable = (),
                 required_together: Iterable = (), required_one_of: Iterable = (), required_if: Iterable = (),
                 required_by: Optional[Mapping[str, Any]] = None, checks: Iterable[Callable[[Mapping[str, Any]], None]] = (),
                 environ: Optional[Mapping[str, str]] = None, ansible_module: Optional[AnsibleModule] = None) -> None:
        spec = argument_spec if isinstance(argument_spec, ArgumentSpec) else ArgumentSpec(argument_spec)
        spec = spec.merge(ArgumentSpec(mutually_exclusive=mutually_exclusive, required_together=required_together,
                                       required_one_of=required_one_of, required_if=required_if,
                                       required_by=required_by, checks=checks))
        spec = _with_auth(spec, auth)
        self.spec = spec
        if ansible_module is None:
            ansible_module = spec.create_ansible_module(supports_check_mode=supports_check_mode)
        elif spec.ansible_kwargs() != _spec_of(ansible_module).ansible_kwargs():
            raise ValueError('the AnsibleModule given was built with other options or constraints than this spec')
        self.ansible = ansible_module
        self.params = self.ansible.params
        self.auth = None
        self.clients = None
        self._running = False
        problem = None
        try:
            self.auth = _checked_auth(spec, self.params, auth, environ)
        except ValidationError as exc:
            problem = exc
        if problem is not None:
            self.fail(str(problem), **problem.extra)

    @property
    def check_mode(self) -> bool:
        """True when running with ``--check``."""
        return bool(self.ansible.check_mode)

    @property
    def diff_mode(self) -> bool:
        """True when running with ``--diff``."""
        return bool(getattr(self.ansible, '_diff', False))

    def warn(self, msg: str) -> None:
        """Add a warning to the task result (redacted)."""
        self.ansible.warn(redact(msg))

    # --- results ------------------------------------------------------------------------------------------------

    def result(self, changed: bool, *, diff: Any = None, **result: Any) -> dict:
        """The result dict: ``changed``, ``diff`` only in diff mode (``diff`` is ``(before, after)`` or a dict), extras."""
        out = dict(result, changed=bool(changed))
        if diff is not None and self.diff_mode:
            if isinstance(diff, (tuple, list)):
                before, after = diff
                diff = {'before': {} if before is None else before, 'after': {} if after is None else after}
            out['diff'] = diff
        return out

    def exit(self, changed: bool = False, *, diff: Any = None, **result: Any) -> None:
        """Finish successfully with ``result(changed, diff=diff, **result)`` (never returns)."""
        self._finish(False, self.result(changed, diff=diff, **result))

    def fail(self, msg: str, **extra: Any) -> None:
        """Finish with a failure: redacted ``msg`` plus ``extra`` keys, no traceback (never returns)."""
        self._finish(True, dict(extra, msg=redact(msg)))

    def _finish(self, failed: bool, result: dict) -> None:
        if self._running:
            raise _Finish(failed, result)
        if failed:
            msg = result.pop('msg')
            self.ansible.fail_json(msg=msg, **result)
        self.ansible.exit_json(**result)

    # --- running the async core ----------------------------------------------------------------------------------

    def run(self, core: Callable[['AzureModule', Clients], Awaitable[Optional[dict]]],
            clients_factory: Optional[Callable[..., Clients]] = None) -> None:
        """Run ``await core(self, clients)`` in ``asyncio.run`` inside ``async with Clients(self.auth)``, then exit.

        With ``auth=False`` the core receives ``clients=None``.

        ``core`` returns the result dict (``module.result(...)``) or calls ``module.exit``/``module.fail``.
        ``ValidationError``/``AzureApiError`` become failures carrying ``error`` details and no traceback; a missing
        SDK becomes ``missing_required_lib``; anything else is an unexpected error with a (redacted) traceback.
        """
        import asyncio  # here: a module process that hands its call to the persistent worker never needs it

        self.finish(final_result(asyncio.run(self.run_outcome(core, clients_factory))))

    async def run_outcome(self, core: Callable[['AzureModule', Clients], Awaitable[Optional[dict]]],
                          clients_factory: Optional[Callable[..., Clients]] = None) -> '_Finish':
        """``run`` without the exit: the outcome of the core (never raises but for cancellation)."""
        factory = clients_factory
        if factory is None:
            from ansible_collections.oidc_federation.azure.plugins.module_utils._clients import Clients
            factory = Clients
        self._running = True
        try:
            result = await self._main(core, factory)
            if not isinstance(result, dict):
                raise TypeError('the module core returned {0!r} instead of a result dict'.format(type(result).__name__))
            return _Finish(False, result)
        except _Finish as finish:
            return finish
        except Exception as exc:  # pylint: disable=broad-exception-caught
            return _failure_for(exc)
        finally:
            self._running = False

    def finish(self, final: Mapping[str, Any]) -> None:
        """Exit with a final result (``final_result``): its warnings, then ``exit_json``/``fail_json``."""
        exit_with(self.ansible, final)

    async def _main(self, core: Callable, factory: Callable[..., Clients]) -> Any:
        if self.auth is None:  # auth=False: nothing to connect to
            return await core(self, None)
        async with factory(self.auth) as clients:
            self.clients = clients
            try:
                return await core(self, clients)
            finally:
                for message in getattr(clients, 'warnings', None) or ():
                    self.warn(message)


class DetachedModule(AzureModule):
    """An ``AzureModule`` for options already parsed by a module process's ``AnsibleModule`` (the persistent worker
    runs the core with it): no ``AnsibleModule`` here; the module's ``checks`` and the auth checks run as
    ``AzureModule`` runs them (a failure is the outcome, the core does not run); warnings are collected; ``answer()``
    is the final result as plain data."""

    def __init__(self, params: Mapping[str, Any], *, check_mode: bool, diff_mode: bool, auth: bool = True,
                 checks: Iterable[Callable[[Mapping[str, Any]], None]] = (),
                 environ: Optional[Mapping[str, str]] = None) -> None:  # pylint: disable=super-init-not-called
        spec = _with_auth(ArgumentSpec(checks=checks), auth)
        self.spec = spec
        self.ansible = None
        self.params = dict(params)
        self.auth = None
        self.clients = None
        self.warnings: list = []
        self.outcome: Optional[_Finish] = None
        self._check_mode = bool(check_mode)
        self._diff_mode = bool(diff_mode)
        self._running = False
        try:
            self.auth = _checked_auth(spec, self.params, auth, environ)
        except ValidationError as exc:
            self.outcome = _Finish(True, dict(exc.extra, msg=redact(str(exc))))

    @property
    def check_mode(self) -> bool:
        return self._check_mode

    @property
    def diff_mode(self) -> bool:
        return self._diff_mode

    def warn(self, msg: str) -> None:
        self.warnings.append(redact(msg))

    def _finish(self, failed: bool, result: dict) -> None:
        raise _Finish(failed, result)

    async def run_async(self, core: Callable[['AzureModule', Clients], Awaitable[Optional[dict]]],
                        clients_factory: Optional[Callable[..., Clients]] = None) -> None:
        """Run the core; its outcome is kept for ``answer()``."""
        self.outcome = await self.run_outcome(core, clients_factory)

    def answer(self) -> dict:
        """The final result (``final_result``) with the warnings collected."""
        return final_result(self.outcome or _Finish(True, {'msg': 'the core did not run'}), self.warnings)


def _failure_for(exc: BaseException) -> _Finish:
    """Map an exception escaping the module core to a failure result."""
    if isinstance(exc, MissingLibraryError):
        return _Finish(True, {'msg': missing_required_lib(exc.library, url=exc.url), 'missing_library': exc})
    if isinstance(exc, ValidationError):
        return _Finish(True, dict(exc.extra, msg=str(exc)))
    err = AzureApiError.from_exception(exc)
    if err is not None:
        return _Finish(True, {'msg': str(err), 'error': err.to_dict()})
    return _Finish(True, {'msg': redact('unexpected error: {0}: {1}'.format(type(exc).__name__, exc)),
                          'traceback': redact(traceback.format_exc())})


async def gather_limited(aws: Iterable[Union[Awaitable[Any], Callable[[], Awaitable[Any]]]], limit: int = 8, *,
                         return_exceptions: bool = False) -> list:
    """Like ``asyncio.gather`` with at most ``limit`` awaitables running at once; results keep the input order.

    Items are awaitables or zero-argument callables returning one (started only when a slot is free). Without
    ``return_exceptions``, the first failure cancels the others and is raised.
    """
    import asyncio

    if limit < 1:
        raise ValueError('limit must be at least 1')
    semaphore = asyncio.Semaphore(limit)

    async def one(item: Any) -> Any:
        started = False
        try:
            async with semaphore:
                awaitable = item() if callable(item) else item
                started = True
                return await awaitable
        finally:
            if not started and asyncio.iscoroutine(item):
                item.close()

    tasks = [asyncio.ensure_future(one(item)) for item in aws]
    if return_exceptions:
        return list(await asyncio.gather(*tasks, return_exceptions=True))
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
