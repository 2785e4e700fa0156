"""The ASGI application: one catch-all route that applies faults, dispatches by path, records stats and turns
every error into the owning service's JSON envelope (never a stack trace).

The top of the one-way import graph: it wires the services (entra, gitlab, control and the optional graph/arm
modules) into the core ``context.Sandbox`` (``new_sandbox``) and routes requests to them (``build_app``).  Nothing
in the package imports this module."""
from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import re
import types
import uuid
from typing import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import control, entra, gitlab, gitlab_api
from .context import Config, Sandbox
from .errors import (ServiceError, arm_error, control_error, graph_error, internal_error, json_body_error,
                     not_found, read_json)

__all__ = ["build_app", "collapse_slashes", "error_response", "json_body_error", "new_sandbox", "read_json",
           "service_for", "service_modules", "wire"]

log = logging.getLogger("oidc_sandbox")

Handler = Callable[[Sandbox, Request, str], Awaitable[Response | None]]
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_ARM_PREFIXES = ("/subscriptions", "/providers", "/metadata", "/tenants", "/resourcegroups")
_OPTIONAL = {"graph": "graph", "arm": "arm"}
_loaded: dict[str, types.ModuleType | None] = {}
# A run of slashes outside single-quoted key values (Graph's ``(uniqueName='a//b')`` keeps its value).
_REPEATED_SLASHES = re.compile(r"('[^']*')|/{2,}")


def collapse_slashes(path: str) -> str:
    """``path`` with every run of ``/`` outside single quotes replaced by one ``/``.

    ``az cloud register --endpoint-resource-manager https://host:port/`` asks for ``//metadata/endpoints``; the
    real front doors treat repeated slashes like one, so the sandbox does too, before it picks the service.
    """
    if "//" not in path:
        return path
    return _REPEATED_SLASHES.sub(lambda match: match.group(1) or "/", path)


def service_for(path: str) -> str:
    """Which service owns ``path`` (see CONTRACT.md, "Dispatch order")."""
    lower = path.lower()
    if lower.startswith("/_sandbox"):
        return "control"
    if lower.startswith("/gitlab/"):
        return "gitlab"
    if lower.startswith(("/v1.0/", "/beta/")) or lower in ("/v1.0", "/beta"):
        return "graph"
    if any(lower == p or lower.startswith(p + "/") or lower.startswith(p + "?") for p in _ARM_PREFIXES):
        return "arm"
    return "entra"


def _optional_module(service: str) -> types.ModuleType | None:
    """Import ``graph``/``arm`` on first use; ``None`` (logged once) while a module is missing or broken."""
    if service not in _loaded:
        name = f"{__package__}.{_OPTIONAL[service]}"
        try:
            _loaded[service] = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            log.warning("service module %s is missing; its requests get 501", service)
            _loaded[service] = None
        except Exception:  # noqa: BLE001 - a half-written service must not take the sandbox down
            log.exception("service module %s could not be imported; its requests get 501", service)
            _loaded[service] = None
    return _loaded[service]


def service_modules() -> dict[str, types.ModuleType]:
    """The optional service modules that imported successfully."""
    modules = {}
    for service in _OPTIONAL:
        module = _optional_module(service)
        if module is not None:
            modules[service] = module
    return modules


def wire(ctx: Sandbox) -> None:
    """Attach the services to a new ``Sandbox`` (its constructor calls this before the first reset)."""
    ctx.entra = entra.Entra(ctx)
    ctx.auth = entra.Auth(ctx)
    ctx.gitlab = gitlab.GitLab(ctx)
    ctx.modules = {**service_modules(), "gitlab": gitlab_api}  # gitlab_api: seed, control (/_sandbox/gitlab/...)
    ctx.reset_hooks = [ctx.gitlab.seed, ctx.auth.clear_cache, ctx.entra.clear_cache]


def new_sandbox(config: Config) -> Sandbox:
    """A seeded sandbox with every service wired in: what ``build_app`` serves."""
    return Sandbox(config, wire)


def _handler(service: str) -> Handler:
    if service == "control":
        return control.handle
    if service == "gitlab":
        return _gitlab
    if service == "entra":
        return entra.handle
    module = _optional_module(service)
    handle = getattr(module, "handle", None) if module is not None else None
    if handle is None:
        return _not_implemented
    return handle


async def _gitlab(ctx: Sandbox, request: Request, path: str) -> Response | None:
    """A GitLab instance: its REST API (``/gitlab/<name>/api/v4/...``, gitlab_api.py), else the issuer documents."""
    response = await gitlab_api.handle(ctx, request, path)
    if response is None:
        response = await gitlab.handle(ctx, request, path)
    return response


async def _not_implemented(ctx: Sandbox, request: Request, path: str) -> Response | None:
    if path.lower().startswith(("/v1.0", "/beta")):
        raise graph_error(501, "NotImplemented", "Microsoft Graph is not available in this sandbox build.")
    raise arm_error(501, "NotImplemented", "Azure Resource Manager is not available in this sandbox build.")


def error_response(error: ServiceError) -> Response:
    """The HTTP response for a ``ServiceError``."""
    if isinstance(error.body, str):
        return PlainTextResponse(error.body, status_code=error.status, headers=error.headers)
    if error.body is None:
        return Response(status_code=error.status, headers=error.headers)
    return JSONResponse(error.body, status_code=error.status, headers=error.headers)


def _request_id_headers(service: str, request: Request, response: Response) -> None:
    """Request/correlation id headers the real services send."""
    headers = response.headers
    rid = str(uuid.uuid4())
    if service == "graph":
        headers.setdefault("request-id", rid)
        headers.setdefault("client-request-id", request.headers.get("client-request-id", rid))
    elif service == "arm":
        headers.setdefault("x-ms-request-id", rid)
        headers.setdefault("x-ms-correlation-request-id",
                           request.headers.get("x-ms-correlation-request-id", rid))
    elif service == "entra":
        headers.setdefault("x-ms-request-id", rid)
        if "client-request-id" in request.headers:
            headers.setdefault("client-request-id", request.headers["client-request-id"])


def build_app(ctx: Sandbox) -> Starlette:
    """The sandbox's ASGI app bound to ``ctx``; calls ``install(ctx)`` of the graph/arm modules that have one."""
    for module in service_modules().values():
        install = getattr(module, "install", None)
        if callable(install):
            install(ctx)

    async def endpoint(request: Request) -> Response:
        path = collapse_slashes(request.scope["path"])
        request.scope["path"] = path  # handlers that build links from request.url see the collapsed path
        method = request.method
        service = service_for(path)
        injected: str | None = None  # "rule" or "quota" when a fault answered instead of the service
        extra: dict[str, str] = {}
        try:
            if service != "control":
                app_id = None
                if service == "graph" and (ctx.faults.graph_quotas is not None or ctx.faults.rules):
                    app_id = ctx.auth.peek_app_id(request)  # the quota buckets and the x-ms-throttle-scope
                delay, fault, extra = ctx.faults.before(service, method, path, app_id=app_id,
                                                        tenant_id=ctx.config.tenant_id,
                                                        query=request.url.query)
                if delay:
                    await asyncio.sleep(delay)
                if fault is not None:
                    injected = fault.source or "rule"
                    raise fault
            response = await _handler(service)(ctx, request, path)
            if response is None:
                raise not_found(service, path)
        except ServiceError as error:
            response = error_response(error)
        except Exception:  # noqa: BLE001 - answer in the service's envelope, log the trace
            log.exception("unexpected error serving %s %s", method, path)
            response = error_response(internal_error(service) if service != "control"
                                      else control_error(500, "Internal error of the sandbox (see its log)."))
        for name, value in extra.items():
            response.headers[name] = value
        if service != "control" and service != "gitlab":
            _request_id_headers(service, request, response)
        ctx.stats.record(service, method, path, response.status_code, injected=injected)
        return response

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            try:
                ctx.save()
            except OSError as exc:
                log.error("could not write the state file: %s", exc)
            await ctx.aclose()

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=_METHODS)], lifespan=lifespan)

