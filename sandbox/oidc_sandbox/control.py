"""``/_sandbox/*``: the sandbox's own control API (no authentication; it listens on 127.0.0.1 only).

Errors are ``{"error": {"code", "message"}}`` with 400 for bad input, 404 for unknown paths, 405 for a wrong
method; never a stack trace.  See README "Control API" for the reference.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import __version__
from .errors import control_error, method_not_allowed, read_json
from .faults import Faults
from .state import public

if TYPE_CHECKING:
    from .context import Sandbox

Endpoint = Callable[["Sandbox", Request], Awaitable[Response]]


async def _body(request: Request, *, required: bool = False) -> dict[str, Any]:
    data = await read_json(request, "control")
    if data is None:
        if required:
            raise control_error(400, "A JSON object body is required.")
        return {}
    if not isinstance(data, dict):
        raise control_error(400, "The body must be a JSON object.")
    return data


def _bad(exc: ValueError) -> Exception:
    return control_error(400, str(exc))


async def health(ctx: "Sandbox", request: Request) -> Response:
    cfg = ctx.config
    return JSONResponse({"status": "ok", "version": __version__, "base_url": cfg.base_url,
                         "tenant_id": cfg.tenant_id, "subscription_id": cfg.subscription_id,
                         "gitlab_issuer": ctx.gitlab.default_issuer(), "time": ctx.clock()})


async def reset(ctx: "Sandbox", request: Request) -> Response:
    """Body (optional): ``{"seed": n, "faults": {...}, "config": {...}}``; config changes persist across resets.

    ``seed`` is shorthand for ``faults.seed`` (it drives fault decisions and the ids of minted GitLab tokens).
    """
    body = await _body(request)
    unknown = set(body) - {"seed", "faults", "config"}
    if unknown:
        raise control_error(400, f"Unknown reset keys: {', '.join(sorted(unknown))}.")
    faults = body.get("faults", {})
    if "seed" in body:
        if not isinstance(faults, dict):
            raise control_error(400, "faults must be a JSON object.")
        faults = {**faults, "seed": body["seed"]}
    try:
        Faults().configure(faults)  # validate first: a bad body changes nothing
        if "config" in body:
            ctx.config.update(body["config"])
        ctx.reset({"faults": faults})
    except ValueError as exc:
        raise _bad(exc) from None
    return JSONResponse({"status": "reset", "faults": ctx.faults.describe()})


def state_view(ctx: "Sandbox") -> dict[str, Any]:
    """The state without secrets or private keys, objects in their public JSON shape."""
    st = ctx.state
    return {
        "config": ctx.config.public(),
        "clock_offset": ctx.clock_offset,
        "applications": [public(o) for o in st.apps.values()],
        "service_principals": [public(o) for o in st.sps.values()],
        "federated_identity_credentials": {app: [public(f) for f in fics.values()]
                                           for app, fics in st.fics.items()},
        "app_role_assignments": [public(o) for o in st.app_role_assignments.values()],
        "deleted_items": [public(o) for o in st.deleted.values()],
        "subscriptions": [public(o) for o in st.subscriptions.values()],
        "resource_groups": [public(o) for o in st.resource_groups.values()],
        "management_groups": [public(o) for o in st.management_groups.values()],
        "role_assignments": [public(o) for o in st.role_assignments.values()],
        "role_definitions": len(st.role_definitions),
        "operators": [{k: v for k, v in op.items() if k != "secret"} for op in st.operators.values()],
        "issuers": [public(o) for o in st.issuers.values()],
        "gitlab": ctx.modules["gitlab"].state_view(ctx) if "gitlab" in ctx.modules else {},
    }


async def state(ctx: "Sandbox", request: Request) -> Response:
    return JSONResponse(state_view(ctx))


async def stats(ctx: "Sandbox", request: Request) -> Response:
    return JSONResponse(ctx.stats.to_json())


async def stats_reset(ctx: "Sandbox", request: Request) -> Response:
    ctx.stats.reset()
    return JSONResponse(ctx.stats.to_json())


async def faults(ctx: "Sandbox", request: Request) -> Response:
    """GET: current fault configuration and counters. POST: replace it (``{}`` clears all faults)."""
    if request.method == "POST":
        try:
            ctx.faults.configure(await _body(request, required=True))
        except ValueError as exc:
            raise _bad(exc) from None
        ctx.gitlab.rng.seed(f"gitlab:{ctx.faults.seed}")
    return JSONResponse(ctx.faults.describe())


async def gitlab_token(ctx: "Sandbox", request: Request) -> Response:
    try:
        return JSONResponse(ctx.gitlab.mint(await _body(request)))
    except ValueError as exc:
        raise _bad(exc) from None


async def issuers(ctx: "Sandbox", request: Request) -> Response:
    """GET: the issuers. POST ``{"name", "unreachable", "broken", "rotate_keys"}``: add or alter one."""
    if request.method == "POST":
        try:
            entry = ctx.gitlab.configure_issuer(await _body(request, required=True))
        except ValueError as exc:
            raise _bad(exc) from None
        return JSONResponse(public(entry))
    return JSONResponse({"value": [public(o) for o in ctx.state.issuers.values()]})


async def config(ctx: "Sandbox", request: Request) -> Response:
    """GET: runtime settings. POST: change some (see ``Config.RUNTIME_KEYS``)."""
    if request.method == "POST":
        try:
            ctx.config.update(await _body(request, required=True))
        except ValueError as exc:
            raise _bad(exc) from None
        ctx.entra.clear_cache()
    return JSONResponse(ctx.config.public())


async def clock(ctx: "Sandbox", request: Request) -> Response:
    """GET: the sandbox time. POST ``{"advance": seconds}`` or ``{"offset": seconds}``: shift it."""
    if request.method == "POST":
        body = await _body(request, required=True)
        if set(body) - {"advance", "offset"} or len(body) != 1:
            raise control_error(400, "Send exactly one of 'advance' or 'offset' (seconds).")
        key, value = next(iter(body.items()))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) > 10 * 365 * 86400:
            raise control_error(400, f"{key} must be a number of seconds.")
        ctx.clock_offset = ctx.clock_offset + value if key == "advance" else float(value)
    return JSONResponse({"time": ctx.clock(), "offset": ctx.clock_offset, "real_time": time.time()})


async def save(ctx: "Sandbox", request: Request) -> Response:
    if not ctx.config.state_file:
        raise control_error(409, "The sandbox was started without --state-file.")
    try:
        path = ctx.save()
    except OSError as exc:
        raise control_error(500, f"Could not write the state file: {exc.strerror}.") from None
    return JSONResponse({"saved": path})


# path -> (allowed methods, endpoint)
ROUTES: dict[str, tuple[tuple[str, ...], Endpoint]] = {
    "/_sandbox/health": (("GET", "HEAD"), health),
    "/_sandbox/reset": (("POST",), reset),
    "/_sandbox/state": (("GET",), state),
    "/_sandbox/stats": (("GET",), stats),
    "/_sandbox/stats/reset": (("POST",), stats_reset),
    "/_sandbox/faults": (("GET", "POST"), faults),
    "/_sandbox/gitlab/token": (("POST",), gitlab_token),
    "/_sandbox/issuers": (("GET", "POST"), issuers),
    "/_sandbox/config": (("GET", "POST"), config),
    "/_sandbox/clock": (("GET", "POST"), clock),
    "/_sandbox/save": (("POST",), save),
}


async def _delegate(ctx: "Sandbox", request: Request, path: str) -> Response | None:
    """``/_sandbox/arm/...`` and ``/_sandbox/graph/...``: the service module's ``control(ctx, request, path)``."""
    parts = path.split("/")
    module = ctx.modules.get(parts[2].lower()) if len(parts) > 3 else None
    hook = getattr(module, "control", None)
    if hook is None:
        return None
    async with ctx.lock:
        return await hook(ctx, request, path)


async def handle(ctx: "Sandbox", request: Request, path: str) -> Response | None:
    route = ROUTES.get(path.rstrip("/") or path)
    if route is None:
        return await _delegate(ctx, request, path)
    methods, endpoint = route
    if request.method not in methods:
        raise method_not_allowed("control", request.method, ", ".join(methods))
    if request.method == "GET" or endpoint in (health,):
        return await endpoint(ctx, request)
    async with ctx.lock:
        return await endpoint(ctx, request)
