"""The core every handler shares: the ``Sandbox`` context (state, configuration, statistics, faults, clock) and
the ``Caller`` of a request.

Dependencies run one way: this module knows no service.  The app (``app.new_sandbox``) wires the services in:
``ctx.entra``, ``ctx.auth``, ``ctx.gitlab``, the optional service modules (``ctx.modules``) and their reset hooks.
"""
from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import logging
import re
import ssl
import sys
import time
import types
from typing import TYPE_CHECKING, Any, Callable, Protocol

from . import seed
from .config import Config
from .faults import Faults
from .state import State
from .stats import Stats

if TYPE_CHECKING:
    import httpx

__all__ = ["Caller", "Config", "Directory", "PERSISTED", "Sandbox", "StateDirectory"]

log = logging.getLogger("oidc_sandbox")


@dataclasses.dataclass(frozen=True)
class Caller:
    """The verified caller of a Graph or ARM request (from its Entra access token)."""

    object_id: str
    app_id: str
    tenant_id: str
    roles: tuple[str, ...]
    claims: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)


class Directory(Protocol):
    """What entra.py and arm.py need from the Graph directory (graph.py may install its own)."""

    def app_by_app_id(self, app_id: str) -> dict[str, Any] | None: ...
    def sp_by_app_id(self, app_id: str) -> dict[str, Any] | None: ...
    def sp_by_id(self, object_id: str) -> dict[str, Any] | None: ...
    def fics_of(self, app_object_id: str) -> list[dict[str, Any]]: ...
    def principal_exists(self, object_id: str, *, principal_type: str | None = None) -> bool: ...


class StateDirectory:
    """Fallback ``ctx.directory`` while graph.py cannot be imported (graph.py's ``install(ctx)`` replaces it).

    Reads ``ctx.state`` directly, so operators can still get tokens and ARM still works without Graph.
    """

    def __init__(self, ctx: "Sandbox"):
        self.ctx = ctx

    def _visible(self, obj: dict[str, Any] | None) -> dict[str, Any] | None:
        if obj is None or obj.get("deletedDateTime") or self.ctx.faults.lagging(obj):
            return None
        return obj

    def app_by_app_id(self, app_id: str) -> dict[str, Any] | None:
        for app in self.ctx.state.apps.values():
            if app.get("appId", "").lower() == app_id.lower():
                return self._visible(app)
        return None

    def sp_by_app_id(self, app_id: str) -> dict[str, Any] | None:
        for sp in self.ctx.state.sps.values():
            if sp.get("appId", "").lower() == app_id.lower():
                return self._visible(sp)
        return None

    def sp_by_id(self, object_id: str) -> dict[str, Any] | None:
        return self._visible(self.ctx.state.sps.get(object_id.lower()) or self.ctx.state.sps.get(object_id))

    def fics_of(self, app_object_id: str) -> list[dict[str, Any]]:
        fics = self.ctx.state.fics.get(app_object_id, {})
        return [fic for fic in fics.values() if not self.ctx.faults.lagging(fic)]

    def principal_exists(self, object_id: str, *, principal_type: str | None = None) -> bool:
        if principal_type in (None, "ServicePrincipal"):
            return self.sp_by_id(object_id) is not None
        return False


class Sandbox:
    """Everything a handler needs. One instance per running sandbox; ``reset()`` replaces the state."""

    # Set by the app's wiring (``app.wire``): typed loosely so the core does not import the services.
    entra: Any  # entra.Entra: token issuance and OIDC metadata
    auth: Any  # entra.Auth: ``require(request, "graph"|"arm") -> Caller``, ``peek_app_id(request)``
    gitlab: Any  # gitlab.GitLab: the GitLab issuers

    def __init__(self, config: Config, wire: Callable[["Sandbox"], None]):
        """A seeded sandbox; ``wire(ctx)`` attaches the services first (use ``app.new_sandbox(config)``)."""
        self.config = config
        self.stats = Stats()
        self.faults = Faults()
        self.clock_offset = 0.0
        self.lock = asyncio.Lock()
        self.directory: Directory = StateDirectory(self)
        self.modules: dict[str, types.ModuleType] = {}  # optional service modules (graph, arm) by name
        self.reset_hooks: list[Callable[[], None]] = []  # run by reset() after the core seed, before seed(ctx)
        self._http: httpx.AsyncClient | None = None
        self.state: State = State(tenant_id=config.tenant_id)
        wire(self)
        self.reset()

    # --- time -------------------------------------------------------------------------------------------
    def clock(self) -> float:
        """Wall-clock seconds (shifted by ``POST /_sandbox/clock``); use it for every expiry check."""
        return time.time() + self.clock_offset

    @staticmethod
    def monotonic() -> float:
        """Monotonic seconds, for ``_created`` stamps used by the replication-lag model."""
        return time.monotonic()

    # --- lifecycle --------------------------------------------------------------------------------------
    def reset(self, options: dict[str, Any] | None = None) -> None:
        """Fresh seeded state, no faults, clock unshifted, stats cleared; ``options`` may carry ``faults``."""
        options = options or {}
        faults = options.get("faults", {})
        self.faults.configure(faults)  # validates before anything is replaced
        self.state = seed.seed_state(self.config, self.clock())
        self.clock_offset = 0.0
        self.stats.reset()
        for reset_hook in self.reset_hooks:
            reset_hook()
        for hook in self.service_hooks("seed"):
            hook(self)

    def service_hooks(self, name: str) -> list[Any]:
        """``name`` functions of the wired service modules that define one (e.g. ``seed(ctx)``)."""
        hooks = []
        for module in self.modules.values():
            hook = getattr(module, name, None)
            if callable(hook):
                hooks.append(hook)
        return hooks

    def load(self, path: str) -> None:
        """Replace the seeded directory and Azure data with those a previous run saved to ``path``.

        Loaded objects count as replicated (their ``_created`` stamps are dropped).  The operators' own
        application and service principal, the GitLab issuers (keys and URLs are new at every start) and the
        secrets come from this start.  ``ValueError`` (nothing changed) when the file is unusable.
        """
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as exc:
            raise ValueError(f"cannot read the state file {path}: {exc.strerror}") from None
        except ValueError:
            raise ValueError(f"the state file {path} is not valid JSON") from None
        if not isinstance(data, dict) or not all(isinstance(data.get(name, {}), dict) for name in PERSISTED):
            raise ValueError(f"the state file {path} is not a sandbox state")
        if str(data.get("tenant_id", "")).lower() != self.config.tenant_id.lower():
            raise ValueError(f"the state file {path} belongs to tenant {data.get('tenant_id')!r}, not "
                             f"{self.config.tenant_id!r} (see --tenant-id)")
        seeded = self.state  # this start's seed: operators (with their objects) and issuers stay
        own = [(seeded.apps[op["app_object_id"]], seeded.sps[op["object_id"]]) for op in seeded.operators.values()]
        for name in PERSISTED:
            setattr(seeded, name, _without_created(data.get(name, {})))
        for app, sp in own:
            seeded.apps[app["id"]] = app
            seeded.sps[sp["id"]] = sp
        for hook in self.service_hooks("seed"):
            hook(self)

    def save(self) -> str | None:
        """Write the redacted state to ``config.state_file`` (if set); return the path."""
        if not self.config.state_file:
            return None
        self.state.dump(self.config.state_file)
        return self.config.state_file

    # --- outbound HTTP (Entra fetching issuer discovery documents and keys) --------------------------------
    def http(self) -> "httpx.AsyncClient":
        """A shared async HTTP client that trusts public roots and the sandbox CA."""
        if self._http is None:
            import httpx

            _remember_missing_sniffio()

            context = ssl.create_default_context(cafile=self.config.bundle_file or None)
            self._http = httpx.AsyncClient(verify=context, follow_redirects=False, trust_env=False,
                                           headers={"User-Agent": "oidc-sandbox-entra/1.0"},
                                           limits=httpx.Limits(max_connections=20, max_keepalive_connections=10))
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- helpers shared by services -----------------------------------------------------------------------
    def is_local_issuer(self, issuer: str) -> bool:
        """True when ``issuer`` is one of the GitLab issuers this sandbox serves."""
        return any(entry.get("issuer") == issuer for entry in self.state.issuers.values())

    def flexible_issuer_platform(self, issuer: str) -> str | None:
        """Which platform allow-list (``gitlab``, ``github``, ``terraform``) admits ``issuer`` for flexible FICs.

        Local sandbox issuers count as GitLab while ``local_issuers_are_gitlab`` is true.  Patterns use
        ``*``/``?`` wildcards and compare case-sensitively; ``None`` means not allowed.
        """
        if self.config.local_issuers_are_gitlab and self.is_local_issuer(issuer):
            return "gitlab"
        for platform, patterns in self.config.flexible_issuers.items():
            if any(_issuer_pattern_match(pattern, issuer) for pattern in patterns):
                return platform
        return None


def _remember_missing_sniffio() -> None:
    """httpcore tries ``import sniffio`` (optional) on every request; when it is not installed, each attempt
    searches ``sys.path`` again (about a tenth of a millisecond).  Recording the absence makes it fail at once."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


# State members a state file restores (operators and issuers are always this start's).
PERSISTED = ("apps", "sps", "fics", "deleted", "app_role_assignments", "subscriptions", "resource_groups",
             "management_groups", "role_assignments", "role_definitions")


def _without_created(value: Any) -> Any:
    """A copy of ``value`` without ``_created`` stamps at any depth (a loaded object has replicated long ago)."""
    if isinstance(value, dict):
        return {k: _without_created(v) for k, v in value.items() if k != "_created"}
    if isinstance(value, list):
        return [_without_created(v) for v in value]
    return value


def _issuer_pattern_match(pattern: str, issuer: str) -> bool:
    """``*`` matches within one host label or path segment (never ``/`` or ``.``), ``?`` one character."""
    regex = "".join("[^/.]+" if ch == "*" else "[^/.]" if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, issuer) is not None
