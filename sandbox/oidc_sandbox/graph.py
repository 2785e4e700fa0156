"""Microsoft Graph ``/v1.0`` and ``/beta``: applications, servicePrincipals, federatedIdentityCredentials, owners,
appRoleAssignments, directoryObjects, directory/deletedItems and ``$batch``, following Microsoft's documented
behaviour (see the "Microsoft Graph" section of sandbox/README.md).

Entry points:
  * ``handle(ctx, request, path)``: the service handler (see CONTRACT.md).
  * ``install(ctx)`` (alias ``init``): publishes the directory to the other services as ``ctx.directory``.

Stored objects live in ``ctx.state`` (``apps``, ``sps``, ``fics``, ``app_role_assignments``, ``deleted``) in the JSON
shape Graph returns, plus private keys: ``_type`` ("application"/"servicePrincipal"), ``_created`` (monotonic time,
for replication lag), ``_owners`` (owner object ids of an application) and, on deleted objects, ``_fics`` (an app's
credentials) or ``_app_role_assignments`` (a service principal's grants).
"""
from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import datetime as _dt
import inspect
import json
import os
import re
import time
import urllib.parse
import uuid
from typing import Any, Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response

from . import expression
from .errors import ServiceError, graph_error
from .graph_odata import (APP_ROLE_ASSIGNMENT, APPLICATION, FEDERATED_IDENTITY_CREDENTIAL, SERVICE_PRINCIPAL,
                          Field, Query, Resource, bad_request, check_value, directory_error, invalid_value, is_guid,
                          paginate, parse_query, read_body)
from .state import new_guid, public

READ_ROLES = frozenset({"Application.Read.All", "Application.ReadWrite.All", "Application.ReadWrite.OwnedBy",
                        "Directory.Read.All", "Directory.ReadWrite.All"})
WRITE_ALL = "Application.ReadWrite.All"
WRITE_OWNED = "Application.ReadWrite.OwnedBy"
GRANT_ROLES = frozenset({"AppRoleAssignment.ReadWrite.All", "Directory.ReadWrite.All"})
SIGN_IN_AUDIENCES = ("AzureADMyOrg", "AzureADMultipleOrgs", "AzureADandPersonalMicrosoftAccount",
                     "PersonalMicrosoftAccount")
# The application resource page says AzureADMyOrg, the create/upsert examples return this; we follow the examples.
DEFAULT_SIGN_IN_AUDIENCE = "AzureADandPersonalMicrosoftAccount"
DEFAULT_TENANT_DOMAIN = "sandbox.onmicrosoft.com"
ORGANIZATION_NAME = "Sandbox"  # the tenant's display name (also ARM's /tenants), a service principal's publisherName
MAX_FICS_PER_APP = 20
FIC_FIELD_LIMIT = 600
FIC_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,119}")
MAX_GET_BY_IDS = 1000
MAX_BATCH = 20
_BATCH_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
CONTENT_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
DIRECTORY_OBJECT = Resource("directoryObject", "DirectoryObject", (
    Field("id", "Edm.String", nullable=False, read_only=True),
    Field("deletedDateTime", "Edm.DateTimeOffset", read_only=True),
))


# --------------------------------------------------------------------------- small helpers


def _config(ctx: Any, name: str, default: Any = None) -> Any:
    cfg = getattr(ctx, "config", None)
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


def _monotonic(ctx: Any) -> float:
    clock = getattr(ctx, "monotonic", None)
    return float(clock()) if callable(clock) else time.monotonic()


def _lagging(ctx: Any, obj: Mapping[str, Any]) -> bool:
    faults = getattr(ctx, "faults", None)
    return bool(faults is not None and faults.lagging(obj))


def _iso(seconds: float) -> str:
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _same(a: Any, b: Any) -> bool:
    """Case-insensitive equality for directory keys."""
    return isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()


def not_found(key: str) -> ServiceError:
    return graph_error(404, "Request_ResourceNotFound",
                       f"Resource '{key}' does not exist or one of its queried reference-property objects are not "
                       f"present.")


def denied() -> ServiceError:
    return graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def invalid_object_id(value: str) -> ServiceError:
    return directory_error(f"Invalid object identifier '{value}'.")


def method_not_allowed() -> ServiceError:
    return graph_error(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")


def segment_not_found(raw: str) -> ServiceError:
    return bad_request(f"Resource not found for the segment '{raw}'.")


def fic_error(message: str) -> ServiceError:
    return graph_error(400, "InvalidFederatedIdentityCredentialValue", message)


def _conflict(prop: str, other_id: str) -> ServiceError:
    return directory_error(
        f"Another object with the same value for property {prop} already exists.",
        [{"code": "ObjectConflict", "message": f"Another object with the same value for property {prop} already "
                                               f"exists.", "target": prop},
         {"code": "ConflictingObjects", "message": f"Conflicting object(s): {other_id}", "target": other_id}])


# --------------------------------------------------------------------------- the directory (for other services)


class Directory:
    """The tenant's directory over ``ctx.state`` (read on every call, so a state reset needs no re-install).

    ``raw_*`` lookups (graph.py) see every live object.  The accessors for entra.py and arm.py
    (``app_by_app_id``, ``sp_by_app_id``, ``sp_by_id``, ``fics_of``, ``principal_exists``) hide objects that are
    still inside the replication-lag window, like the context's default ``StateDirectory``.  They return the
    stored objects: do not mutate them.
    """

    def __init__(self, ctx: Any):
        self._ctx = ctx

    @property
    def _state(self) -> Any:
        return self._ctx.state

    def _visible(self, obj: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if obj is None or _lagging(self._ctx, obj) else obj

    # ---- raw lookups (ignore replication lag); tag objects with their type
    def raw_app_by_id(self, object_id: str) -> dict[str, Any] | None:
        return _tag(self._state.apps.get(str(object_id).lower()), "application")

    def raw_app_by_app_id(self, app_id: str) -> dict[str, Any] | None:
        return _tag(next((a for a in self._state.apps.values() if _same(a.get("appId"), app_id)), None),
                    "application")

    def raw_app_by_unique_name(self, unique_name: str) -> dict[str, Any] | None:
        return _tag(next((a for a in self._state.apps.values() if _same(a.get("uniqueName"), unique_name)), None),
                    "application")

    def raw_sp_by_id(self, object_id: str) -> dict[str, Any] | None:
        return _tag(self._state.sps.get(str(object_id).lower()), "servicePrincipal")

    def raw_sp_by_app_id(self, app_id: str) -> dict[str, Any] | None:
        return _tag(next((s for s in self._state.sps.values() if _same(s.get("appId"), app_id)), None),
                    "servicePrincipal")

    def raw_object_by_id(self, object_id: str) -> dict[str, Any] | None:
        """Any live directory object (application or service principal) by object id."""
        return self.raw_app_by_id(object_id) or self.raw_sp_by_id(object_id)

    # ---- for the other services (replication lag honoured)
    def app_by_app_id(self, app_id: str) -> dict[str, Any] | None:
        return self._visible(self.raw_app_by_app_id(app_id))

    def sp_by_app_id(self, app_id: str) -> dict[str, Any] | None:
        return self._visible(self.raw_sp_by_app_id(app_id))

    def sp_by_id(self, object_id: str) -> dict[str, Any] | None:
        return self._visible(self.raw_sp_by_id(object_id))

    def fics_of(self, app_object_id: str) -> list[dict[str, Any]]:
        """The application's credentials (``subject`` and ``claimsMatchingExpression`` keys always present)."""
        fics = self._state.fics.get(str(app_object_id).lower(), {})
        return [f for f in fics.values() if not _lagging(self._ctx, f)]

    def principal_type_of(self, object_id: str) -> str | None:
        """"ServicePrincipal" for a replicated service principal, else None (the sandbox has no users/groups)."""
        return "ServicePrincipal" if self.sp_by_id(object_id) is not None else None

    def principal_exists(self, object_id: str, *, principal_type: str | None = None) -> bool:
        """True when ``object_id`` is a (replicated) principal, of ``principal_type`` if given (ARM's names)."""
        found = self.principal_type_of(object_id)
        return found is not None and (principal_type is None or principal_type.lower() == found.lower())


def _tag(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    """Record the object's type (seeded objects may lack it) for ``@odata.type`` and deletedItems."""
    if obj is not None:
        obj.setdefault("_type", kind)
    return obj


def install(ctx: Any) -> Directory:
    """Attach the directory to the context as ``ctx.directory``."""
    directory = Directory(ctx)
    ctx.directory = directory
    return directory


init = install  # app.build_app calls ``init(ctx)`` of the service modules


def _directory(ctx: Any) -> Directory:
    directory = getattr(ctx, "directory", None)
    return directory if isinstance(directory, Directory) else install(ctx)


# --------------------------------------------------------------------------- URL path parsing


@dataclasses.dataclass(frozen=True)
class Segment:
    """One path segment: ``name`` (lower-cased), the raw text and an optional key predicate.

    ``key`` is ``{"": value}`` for ``name('value')`` and ``{"appid": value}`` for ``name(appId='value')``.
    """

    raw: str
    name: str
    key: dict[str, str] | None = None


def _split_segments(path: str) -> list[str]:
    """Split on ``/`` outside single-quoted key values."""
    parts, current, quoted = [], [], False
    for char in path:
        if char == "'":
            quoted = not quoted
        if char == "/" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p]


_SEGMENT_RE = re.compile(r"(?P<name>[^()]+)(\((?P<key>.*)\))?", re.DOTALL)
_KEY_RE = re.compile(r"\s*(?:(?P<prop>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*)?'(?P<value>(?:[^']|'')*)'\s*", re.DOTALL)


def _parse_segment(raw: str) -> Segment:
    match = _SEGMENT_RE.fullmatch(raw)
    if not match:
        raise bad_request(f"Bad Request - Error in query syntax: the segment '{raw}' is not valid.")
    name = match.group("name")
    lowered = name.lower()
    if lowered.startswith("graph."):  # the SDKs' short form of type casts and bound operations
        lowered = "microsoft." + lowered
    key_text = match.group("key")
    if key_text is None:
        return Segment(raw, lowered)
    key = _KEY_RE.fullmatch(key_text)
    if not key:
        raise bad_request(f"The key value '({key_text})' of segment '{name}' is not valid: key values must be "
                          f"single-quoted strings such as {name}(appId='...').")
    value = key.group("value").replace("''", "'")
    return Segment(raw, lowered, {(key.group("prop") or "").lower(): value})


def parse_path(path: str) -> tuple[str, list[str]] | None:
    """``(version, raw segments)`` for a Graph path, or None when the path is not Graph's."""
    parts = _split_segments(path)
    if not parts or parts[0].lower() not in ("v1.0", "beta"):
        return None
    return parts[0].lower(), parts[1:]


# --------------------------------------------------------------------------- one request


class Call:
    """Everything a handler needs about the current request."""

    def __init__(self, ctx: Any, request: Request, version: str, caller: Any, request_id: str):
        self.ctx = ctx
        self.request = request
        self.version = version
        self.caller = caller
        self.request_id = request_id
        self.method = request.method.upper()
        self.directory = _directory(ctx)
        url = request.url
        self.root = f"{url.scheme}://{url.netloc}"
        self.base = f"{self.root}/{version}"

    @property
    def state(self) -> Any:
        return self.ctx.state

    @property
    def roles(self) -> set[str]:
        return set(getattr(self.caller, "roles", None) or ())

    @property
    def caller_id(self) -> str | None:
        return getattr(self.caller, "object_id", None)

    def prefers(self, token: str) -> bool:
        values = ",".join(self.request.headers.getlist("prefer"))
        return any(part.strip().lower() == token for part in values.split(","))

    def query(self, resource: Resource, *, collection: bool, count_segment: bool = False) -> Query:
        return parse_query(self.request.query_params, self.request.headers, resource, self.version,
                           collection=collection, count_segment=count_segment)

    async def body(self) -> Any:
        raw = await self.request.body()
        if not raw.strip():
            raise bad_request("Empty Payload. JSON content expected.")
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise bad_request("Unable to read JSON request payload. Please ensure Content-Type header is set and "
                              "payload is of valid JSON format.") from None

    def context_url(self, fragment: str) -> str:
        return f"{self.base}/$metadata#{fragment}"

    def next_link(self, token: str) -> str:
        params = [(k, v) for k, v in self.request.query_params.multi_items() if k.lower() != "$skiptoken"]
        params.append(("$skiptoken", token))
        query = urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="$',()=:")
        return f"{self.root}{self.request.url.path}?{query}"

    def mono(self) -> float:
        return _monotonic(self.ctx)

    def now_iso(self) -> str:
        clock = getattr(self.ctx, "clock", None)
        return _iso(float(clock()) if callable(clock) else time.time())

    def lagging(self, obj: Mapping[str, Any]) -> bool:
        return _lagging(self.ctx, obj)

    # ---- permissions
    def require_read(self) -> None:
        if not self.roles & READ_ROLES:
            raise denied()

    def require_some_write(self) -> None:
        if not self.roles & {WRITE_ALL, WRITE_OWNED}:
            raise denied()

    def require_app_write(self, app: Mapping[str, Any] | None) -> None:
        """Application.ReadWrite.All, or Application.ReadWrite.OwnedBy on an app the caller owns (or creates)."""
        roles = self.roles
        if WRITE_ALL in roles:
            return
        if WRITE_OWNED in roles and (app is None or self.caller_id in app.get("_owners", ())):
            return
        raise denied()


def _json_response(status: int, body: Any) -> Response:
    return Response(json.dumps(body, ensure_ascii=False).encode("utf-8"), status_code=status, media_type=CONTENT_TYPE)


def _entity(call: Call, fragment: str, view: dict[str, Any], status: int = 200,
            query: Query | None = None) -> Response:
    if query is not None and query.select is not None and fragment.endswith("/$entity"):
        fragment = f"{fragment[:-len('/$entity')]}({','.join(query.select)})/$entity"
    body = {"@odata.context": call.context_url(fragment)}
    body.update(query.project(view) if query else view)
    return _json_response(status, body)


def _collection(call: Call, fragment: str, items: list[dict[str, Any]], query: Query,
                view: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
    matched = [o for o in items if query.matches(o)]
    page, token = paginate(matched, query)
    fragment = fragment if query.select is None else f"{fragment}({','.join(query.select)})"
    body: dict[str, Any] = {"@odata.context": call.context_url(fragment)}
    if query.count:
        body["@odata.count"] = len(matched)
    if token:
        body["@odata.nextLink"] = call.next_link(token)
    values: list[dict[str, Any]] = []
    for obj in page:
        try:
            values.append(query.project(view(obj)))
        except InStreamFailure as failure:
            return _in_stream_error(call, body, values, failure)
    body["value"] = values
    return _json_response(200, body)


class InStreamFailure(Exception):
    """Serialising ``obj`` failed after Graph had already sent part of the response (see ``_in_stream_error``)."""

    def __init__(self, obj: Mapping[str, Any], written: tuple[str, ...], error: ServiceError):
        super().__init__(error.status)
        self.obj, self.written, self.error = obj, written, error


class InStreamErrorResponse(Response):
    """A 200 whose JSON payload stops in the middle of an object, followed by the error (``.error``)."""

    def __init__(self, content: bytes, error: ServiceError):
        super().__init__(content, status_code=200, media_type=CONTENT_TYPE)
        self.error = error


def _in_stream_error(call: Call, head: dict[str, Any], done: list[dict[str, Any]] | None,
                     failure: InStreamFailure) -> Response:
    """What Graph sends when serialisation fails mid-payload (OData "in-stream error"): the success status and
    the payload so far (``head``, the ``done`` items of a collection, then the properties of the failing object
    written before the failure) with the error object appended and nothing closed, i.e. malformed JSON
    (msgraph-sdk-python#1359)."""
    _stamp(failure.error, call.request_id, call.request.headers.get("client-request-id") or call.request_id)
    compact = {"separators": (",", ":"), "ensure_ascii": False}
    parts = [json.dumps(head, **compact)[:-1]]
    if done is not None:
        parts.append(',"value":[' + "".join(json.dumps(item, **compact) + "," for item in done))
    else:
        parts.append(",")
    partial = {name: failure.obj.get(name) for name in failure.written}
    parts.append(json.dumps(partial, **compact)[:-1])
    parts.append(json.dumps(failure.error.body, **compact))
    return InStreamErrorResponse("".join(parts).encode("utf-8"), failure.error)


def _no_content() -> Response:
    return Response(status_code=204)


def _typed(view: dict[str, Any], obj: Mapping[str, Any]) -> dict[str, Any]:
    return {"@odata.type": f"#microsoft.graph.{obj['_type']}", **view}


_RESOURCES = {"application": APPLICATION, "servicePrincipal": SERVICE_PRINCIPAL}


def _render(call: Call, obj: Mapping[str, Any], select: list[str] | None = None) -> dict[str, Any]:
    """An application or service principal as Graph returns it in this version: every documented property (unset
    ones null or empty, ``$select``-only ones only when selected); other objects in their stored shape."""
    resource = _RESOURCES.get(str(obj.get("_type")))
    return public(obj) if resource is None else resource.render(obj, call.version, select)


Handler = Callable[[], Awaitable[Response]]


async def _dispatch(call: Call, handlers: Mapping[str, Handler]) -> Response:
    handler = handlers.get(call.method)
    if handler is None:
        raise method_not_allowed()
    return await handler()


# --------------------------------------------------------------------------- entry point


async def handle(ctx: Any, request: Request, path: str) -> Response | None:
    """Serve one Graph request; None when ``path`` is not a Graph path."""
    parsed = parse_path(path)
    if parsed is None:
        return None
    version, raw_segments = parsed
    request_id = str(uuid.uuid4())
    client_request_id = request.headers.get("client-request-id") or request_id
    try:
        caller = ctx.auth.require(request, "graph")
        if inspect.isawaitable(caller):
            caller = await caller
        segments = [_parse_segment(raw) for raw in raw_segments]
        response = await _route(Call(ctx, request, version, caller, request_id), segments)
    except ServiceError as exc:
        _stamp(exc, request_id, client_request_id)
        raise
    response.headers["request-id"] = request_id
    response.headers["client-request-id"] = client_request_id
    return response


def _stamp(exc: ServiceError, request_id: str, client_request_id: str) -> None:
    """Put this request's ids into a Graph error envelope and its headers."""
    err = exc.body.get("error") if isinstance(exc.body, dict) else None
    if isinstance(err, dict):
        inner = err.setdefault("innerError", {})
        if isinstance(inner, dict):
            inner["request-id"] = request_id
            inner["client-request-id"] = client_request_id
    exc.headers.setdefault("request-id", request_id)
    exc.headers.setdefault("client-request-id", client_request_id)


async def _route(call: Call, segments: list[Segment]) -> Response:
    if not segments:
        raise bad_request("Invalid request: the request URL has no resource segment.")
    head, rest = segments[0], segments[1:]
    routes = {"applications": _route_applications, "serviceprincipals": _route_service_principals,
              "directoryobjects": _route_directory_objects, "directory": _route_directory, "$batch": _route_batch}
    route = routes.get(head.name)
    if route is None:
        raise segment_not_found(head.raw)
    return await route(call, head, rest)


def _is_count(rest: list[Segment]) -> bool:
    return len(rest) == 1 and rest[0].key is None and rest[0].name == "$count"


async def _count(call: Call, resource: Resource, objects: Mapping[str, dict[str, Any]]) -> Response:
    """``GET /applications/$count`` (and service principals): the number of matching objects as ``text/plain``;
    advanced queries only (``ConsistencyLevel: eventual``), with ``$filter`` and ``$search``."""
    call.require_read()
    query = call.query(resource, collection=True, count_segment=True)
    total = sum(1 for o in objects.values() if not call.lagging(o) and query.matches(o))
    return Response(str(total).encode(), status_code=200, media_type="text/plain;charset=utf-8")


def _key_of(head: Segment, rest: list[Segment]) -> tuple[dict[str, str] | None, list[Segment]]:
    """The entity key, either from ``name(key)`` or from the next segment (``name/{id}``)."""
    if head.key is not None:
        return head.key, rest
    if rest and rest[0].key is None and not rest[0].raw.startswith("$"):
        return {"": rest[0].raw}, rest[1:]
    return None, rest


# --------------------------------------------------------------------------- applications


def _find_app(call: Call, key: Mapping[str, str]) -> dict[str, Any] | None:
    """The stored application a key names (ignoring replication lag); validates GUID ids."""
    (prop, value), = key.items()
    if prop in ("", "id"):
        if not is_guid(value):
            raise invalid_object_id(value)
        return call.directory.raw_app_by_id(value)
    if prop == "appid":
        return call.directory.raw_app_by_app_id(value)
    if prop == "uniquename":
        return call.directory.raw_app_by_unique_name(value)
    raise bad_request(f"The key property '{prop}' is not an alternate key of 'microsoft.graph.application'.")


def _visible_app(call: Call, key: Mapping[str, str]) -> dict[str, Any]:
    app = _find_app(call, key)
    if app is None or call.lagging(app):
        raise not_found(next(iter(key.values())))
    return app


async def _route_applications(call: Call, head: Segment, rest: list[Segment]) -> Response:
    key, rest = _key_of(head, rest)
    if key is None and _is_count(rest):
        return await _dispatch(call, {"GET": lambda: _count(call, APPLICATION, call.state.apps)})
    if key is None:
        if rest:
            raise segment_not_found(rest[0].raw)
        return await _dispatch(call, {"GET": lambda: _list_apps(call), "POST": lambda: _create_app(call)})
    if not rest:
        return await _dispatch(call, {"GET": lambda: _get_app(call, key),
                                      "PATCH": lambda: _patch_app(call, key),
                                      "DELETE": lambda: _delete_app(call, key)})
    app = _visible_app(call, key)
    sub, tail = rest[0], rest[1:]
    if sub.name == "federatedidentitycredentials":
        return await _route_fics(call, app, sub, tail)
    if sub.name == "owners":
        return await _route_owners(call, app, tail)
    raise segment_not_found(sub.raw)


async def _list_apps(call: Call) -> Response:
    call.require_read()
    query = call.query(APPLICATION, collection=True)
    items = [a for a in call.state.apps.values() if not call.lagging(a)]
    return _collection(call, "applications", items, query, lambda o: _render(call, o, query.select))


async def _get_app(call: Call, key: Mapping[str, str]) -> Response:
    call.require_read()
    query = call.query(APPLICATION, collection=False)
    app = _visible_app(call, key)
    return _entity(call, "applications/$entity", _render(call, app, query.select), query=query)


async def _create_app(call: Call) -> Response:
    call.require_some_write()
    call.require_app_write(None)
    props = read_body(APPLICATION, await call.body(), call.version)
    app = _new_app(call, props)
    return _entity(call, "applications/$entity", _render(call, app), status=201)


def _new_app(call: Call, props: dict[str, Any]) -> dict[str, Any]:
    """Validate a create payload, store the new application and return it."""
    if props.get("displayName") in (None, ""):
        raise invalid_value(APPLICATION, "displayName")
    app = _app_template(call)
    _validate_app_update(call, app, props)
    app.update(props)
    if WRITE_ALL not in call.roles and call.caller_id:
        app["_owners"] = [call.caller_id]
    call.state.apps[app["id"]] = app
    return app


def _app_template(call: Call) -> dict[str, Any]:
    """A new application with the defaults Graph's create example shows."""
    return {
        "id": new_guid(), "deletedDateTime": None, "appId": new_guid(), "applicationTemplateId": None,
        "createdByAppId": getattr(call.caller, "app_id", None),
        "disabledByMicrosoftStatus": None, "createdDateTime": call.now_iso(), "displayName": None,
        "description": None, "groupMembershipClaims": None, "identifierUris": [], "isDeviceOnlyAuthSupported": None,
        "isFallbackPublicClient": None, "nativeAuthenticationApisEnabled": "none", "notes": None,
        "publisherDomain": _config(call.ctx, "tenant_domain") or DEFAULT_TENANT_DOMAIN,
        "serviceManagementReference": None, "signInAudience": DEFAULT_SIGN_IN_AUDIENCE, "tags": [],
        "tokenEncryptionKeyId": None, "uniqueName": None, "samlMetadataUrl": None, "defaultRedirectUri": None,
        "certification": None, "optionalClaims": None, "requestSignatureVerification": None,
        "servicePrincipalLockConfiguration": None, "addIns": [],
        "api": {"acceptMappedClaims": None, "knownClientApplications": [], "requestedAccessTokenVersion": 2,
                "oauth2PermissionScopes": [], "preAuthorizedApplications": []},
        "appRoles": [],
        "info": {"logoUrl": None, "marketingUrl": None, "privacyStatementUrl": None, "supportUrl": None,
                 "termsOfServiceUrl": None},
        "keyCredentials": [], "oauth2RequirePostResponse": False,
        "parentalControlSettings": {"countriesBlockedForMinors": [], "legalAgeGroupRule": "Allow"},
        "passwordCredentials": [], "publicClient": {"redirectUris": []}, "requiredResourceAccess": [],
        "verifiedPublisher": {"displayName": None, "verifiedPublisherId": None, "addedDateTime": None},
        "web": {"homePageUrl": None, "logoutUrl": None, "redirectUris": [], "redirectUriSettings": [],
                "implicitGrantSettings": {"enableAccessTokenIssuance": False, "enableIdTokenIssuance": False}},
        "spa": {"redirectUris": []},
        "_type": "application", "_created": call.mono(), "_owners": [],
    }


def _validate_app_update(call: Call, app: dict[str, Any], props: dict[str, Any]) -> None:
    """Directory rules for application properties (before anything is changed)."""
    if "displayName" in props and props["displayName"] in (None, ""):
        raise invalid_value(APPLICATION, "displayName")
    if "signInAudience" in props:
        wanted = next((a for a in SIGN_IN_AUDIENCES if _same(a, props["signInAudience"])), None)
        if wanted is None:
            raise invalid_value(APPLICATION, "signInAudience")
        props["signInAudience"] = wanted
    if "uniqueName" in props:
        _validate_unique_name(call, app, props["uniqueName"])
    for uri in props.get("identifierUris") or ():
        if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:\S+$", uri):
            raise invalid_value(APPLICATION, "identifierUris")
        other = next((a for a in call.state.apps.values() if a["id"] != app["id"]
                      and any(_same(uri, u) for u in a.get("identifierUris") or ())), None)
        if other is not None:
            raise _conflict("identifierUris", other["id"])


def _validate_unique_name(call: Call, app: dict[str, Any], value: Any) -> None:
    current = app.get("uniqueName")
    if current is not None:
        if not _same(current, value):
            raise directory_error("Property 'uniqueName' can be set only while it is null and is immutable once "
                                  "set.")
        return
    if value in (None, ""):
        if value == "":
            raise invalid_value(APPLICATION, "uniqueName")
        return
    other = call.directory.raw_app_by_unique_name(value)
    if other is not None and other["id"] != app["id"]:
        raise _conflict("uniqueName", other["id"])


def _update_app(call: Call, app: dict[str, Any], props: dict[str, Any]) -> None:
    _validate_app_update(call, app, props)
    app.update(props)
    if "displayName" in props:
        for sp in call.state.sps.values():
            if _same(sp["appId"], app["appId"]):
                sp["displayName"] = sp["appDisplayName"] = app["displayName"]


async def _patch_app(call: Call, key: Mapping[str, str]) -> Response:
    call.require_some_write()
    body = await call.body()  # read first: no await between the lookup and the change
    if next(iter(key)) == "uniquename":
        return _upsert_app(call, key["uniquename"], body)
    app = _visible_app(call, key)
    call.require_app_write(app)
    _update_app(call, app, read_body(APPLICATION, body, call.version))
    return _no_content()


def _upsert_app(call: Call, unique_name: str, body: Any) -> Response:
    """``PATCH /applications(uniqueName='x')``: 204 update, 201 create with ``Prefer: create-if-missing``."""
    props = read_body(APPLICATION, body, call.version)
    app = call.directory.raw_app_by_unique_name(unique_name)
    if app is None and not call.prefers("create-if-missing"):
        raise not_found(unique_name)
    call.require_app_write(app)
    if app is not None:
        _update_app(call, app, props)
        return _no_content()
    if "uniqueName" in props and not _same(props["uniqueName"], unique_name):
        raise directory_error(f"The uniqueName '{props['uniqueName']}' in the request body does not match the "
                              f"uniqueName '{unique_name}' in the request URL.")
    props["uniqueName"] = unique_name
    app = _new_app(call, props)
    return _entity(call, "applications/$entity", _render(call, app), status=201)


async def _delete_app(call: Call, key: Mapping[str, str]) -> Response:
    call.require_some_write()
    app = _visible_app(call, key)
    call.require_app_write(app)
    stamp = call.now_iso()
    del call.state.apps[app["id"]]
    app["deletedDateTime"] = stamp
    app["_type"] = "application"
    app["_created"] = call.mono()  # the deleted item replicates like a new object (see README, replication lag)
    app["_fics"] = call.state.fics.pop(app["id"], {})
    call.state.deleted[app["id"]] = app
    # "Deleting an application also deletes its service principal object in the application's home directory."
    for sp in [s for s in call.state.sps.values() if _same(s["appId"], app["appId"])]:
        _soft_delete_sp(call, sp, stamp)
    return _no_content()


# --------------------------------------------------------------------------- owners


def _ref_target(value: Any) -> str:
    """The object id at the end of an ``@odata.id`` reference URL."""
    if not isinstance(value, str) or not value:
        raise bad_request("The request body must contain an '@odata.id' reference to a directory object.")
    try:
        path = urllib.parse.urlsplit(value).path
    except ValueError:
        raise bad_request(f"The '@odata.id' value '{value}' is not a valid URL.") from None
    last = path.rstrip("/").rsplit("/", 1)[-1]
    match = re.fullmatch(r"(?:[A-Za-z.]+\(')?([^'()]+)(?:'\))?", last)
    object_id = match.group(1) if match else last
    if not is_guid(object_id):
        raise invalid_object_id(object_id)
    return object_id.lower()


async def _route_owners(call: Call, app: dict[str, Any], rest: list[Segment]) -> Response:
    names = [s.name for s in rest]
    if not names:
        return await _dispatch(call, {"GET": lambda: _list_owners(call, app, refs=False)})
    if names in (["microsoft.graph.serviceprincipal"], ["microsoft.graph.user"]):
        kind = "servicePrincipal" if names[0].endswith("serviceprincipal") else "user"
        return await _dispatch(call, {"GET": lambda: _list_owners(call, app, refs=False, kind=kind)})
    if names == ["$ref"]:
        return await _dispatch(call, {"GET": lambda: _list_owners(call, app, refs=True),
                                      "POST": lambda: _add_owner(call, app)})
    if len(rest) == 2 and names[1] == "$ref" and rest[0].key is None:
        return await _dispatch(call, {"DELETE": lambda: _remove_owner(call, app, rest[0].raw)})
    raise segment_not_found(rest[0].raw if rest[0].name != "$ref" else rest[-1].raw)


async def _list_owners(call: Call, app: dict[str, Any], *, refs: bool, kind: str | None = None) -> Response:
    call.require_read()
    query = call.query(DIRECTORY_OBJECT, collection=True)
    owners = [o for o in (call.directory.raw_object_by_id(i) for i in app.get("_owners", ()))
              if o is not None and kind in (None, o["_type"])]
    if kind is not None:
        return _collection(call, f"{kind}s", owners, query, lambda o: _render(call, o))
    if refs:
        return _collection(call, "directoryObjects", owners, query,
                           lambda o: {"@odata.id": f"{call.base}/directoryObjects/{o['id']}"})
    return _collection(call, "directoryObjects", owners, query, lambda o: _typed(_render(call, o), o))


async def _add_owner(call: Call, app: dict[str, Any]) -> Response:
    call.require_app_write(app)
    body = await call.body()
    if not isinstance(body, dict):
        raise bad_request("The request body must contain an '@odata.id' reference to a directory object.")
    object_id = _ref_target(body.get("@odata.id"))
    target = call.directory.raw_object_by_id(object_id)
    if target is None or call.lagging(target):
        raise not_found(object_id)
    if target["_type"] != "servicePrincipal":
        raise directory_error(f"An object of type '{target['_type']}' cannot be an owner of an application.")
    owners = app.setdefault("_owners", [])
    if any(_same(o, object_id) for o in owners):
        raise directory_error("One or more added object references already exist for the following modified "
                              "properties: 'owners'.")
    owners.append(target["id"])
    return _no_content()


async def _remove_owner(call: Call, app: dict[str, Any], raw_id: str) -> Response:
    call.require_app_write(app)
    if not is_guid(raw_id):
        raise invalid_object_id(raw_id)
    owners = app.get("_owners", [])
    match = next((o for o in owners if _same(o, raw_id)), None)
    if match is None:
        raise not_found(raw_id)
    owners.remove(match)
    return _no_content()


# --------------------------------------------------------------------------- service principals


def _find_sp(call: Call, key: Mapping[str, str]) -> dict[str, Any] | None:
    (prop, value), = key.items()
    if prop in ("", "id"):
        if not is_guid(value):
            raise invalid_object_id(value)
        return call.directory.raw_sp_by_id(value)
    if prop == "appid":
        return call.directory.raw_sp_by_app_id(value)
    raise bad_request(f"The key property '{prop}' is not an alternate key of 'microsoft.graph.servicePrincipal'.")


def _visible_sp(call: Call, key: Mapping[str, str]) -> dict[str, Any]:
    sp = _find_sp(call, key)
    if sp is None or call.lagging(sp):
        raise not_found(next(iter(key.values())))
    return sp


async def _route_service_principals(call: Call, head: Segment, rest: list[Segment]) -> Response:
    key, rest = _key_of(head, rest)
    if key is None and _is_count(rest):
        return await _dispatch(call, {"GET": lambda: _count(call, SERVICE_PRINCIPAL, call.state.sps)})
    if rest and key is not None:
        return await _route_app_role_assignments(call, _visible_sp(call, key), rest)
    if rest:
        raise segment_not_found(rest[0].raw)
    if key is None:
        return await _dispatch(call, {"GET": lambda: _list_sps(call), "POST": lambda: _create_sp(call)})
    return await _dispatch(call, {"GET": lambda: _get_sp(call, key),
                                  "PATCH": lambda: _patch_sp(call, key),
                                  "DELETE": lambda: _delete_sp(call, key)})


async def _list_sps(call: Call) -> Response:
    call.require_read()
    query = call.query(SERVICE_PRINCIPAL, collection=True)
    items = [s for s in call.state.sps.values() if not call.lagging(s)]
    return _collection(call, "servicePrincipals", items, query, lambda o: _render(call, o, query.select))


async def _get_sp(call: Call, key: Mapping[str, str]) -> Response:
    call.require_read()
    query = call.query(SERVICE_PRINCIPAL, collection=False)
    sp = _visible_sp(call, key)
    return _entity(call, "servicePrincipals/$entity", _render(call, sp, query.select), query=query)


async def _create_sp(call: Call) -> Response:
    call.require_some_write()
    props = read_body(SERVICE_PRINCIPAL, await call.body(), call.version)
    sp = _new_sp(call, props)
    return _entity(call, "servicePrincipals/$entity", _render(call, sp), status=201)


def _backing_app(call: Call, app_id: Any) -> dict[str, Any]:
    """The replicated application behind a new service principal, or the documented 400."""
    app = call.directory.raw_app_by_app_id(app_id) if isinstance(app_id, str) else None
    if app is None or call.lagging(app):
        message = (f"The appId '{app_id}' of the service principal does not reference a valid application "
                   f"object.")
        raise directory_error(message, [{"code": "NoBackingApplicationObject", "message": message,
                                         "target": "appId"}])
    return app


def _new_sp(call: Call, props: dict[str, Any]) -> dict[str, Any]:
    app_id = props.get("appId")
    if app_id in (None, ""):
        raise invalid_value(SERVICE_PRINCIPAL, "appId")
    if call.directory.raw_sp_by_app_id(app_id) is not None:
        raise graph_error(409, "Request_MultipleObjectsWithSameKeyValue",
                          f"The service principal cannot be created, updated, or restored because the service "
                          f"principal name {app_id} is already in use.")
    app = _backing_app(call, app_id)
    call.require_app_write(app)
    if props.get("displayName") == "":
        raise invalid_value(SERVICE_PRINCIPAL, "displayName")
    sp = _sp_template(call, app)
    props.pop("appId")
    sp.update(props)
    call.state.sps[sp["id"]] = sp
    return sp


def _sp_template(call: Call, app: Mapping[str, Any]) -> dict[str, Any]:
    scopes = list(((app.get("api") or {}).get("oauth2PermissionScopes")) or [])
    return {
        "id": new_guid(), "deletedDateTime": None, "accountEnabled": True, "alternativeNames": [],
        "createdByAppId": getattr(call.caller, "app_id", None), "publisherName": ORGANIZATION_NAME,
        "oauth2PermissionScopes": copy.deepcopy(scopes), "publishedPermissionScopes": copy.deepcopy(scopes),
        "appDisplayName": app["displayName"], "appDescription": app.get("description"), "appId": app["appId"],
        "applicationTemplateId": None, "appOwnerOrganizationId": call.state.tenant_id,
        "appRoleAssignmentRequired": False, "description": None, "disabledByMicrosoftStatus": None,
        "displayName": app["displayName"], "homepage": None, "loginUrl": None, "logoutUrl": None, "notes": None,
        "notificationEmailAddresses": [], "preferredSingleSignOnMode": None,
        "preferredTokenSigningKeyThumbprint": None, "replyUrls": [], "samlSingleSignOnSettings": None,
        "servicePrincipalNames": [app["appId"], *app.get("identifierUris", [])],
        "servicePrincipalType": "Application", "signInAudience": app.get("signInAudience"),
        "tags": list(app.get("tags") or []), "tokenEncryptionKeyId": None, "addIns": [], "appRoles": [],
        "info": copy.deepcopy(app.get("info")), "keyCredentials": [],
        "passwordCredentials": [], "resourceSpecificApplicationPermissions": [],
        "verifiedPublisher": {"displayName": None, "verifiedPublisherId": None, "addedDateTime": None},
        "_type": "servicePrincipal", "_created": call.mono(),
    }


def _require_sp_write(call: Call, sp: Mapping[str, Any]) -> None:
    call.require_app_write(call.directory.raw_app_by_app_id(sp["appId"]) or {})


def _update_sp(sp: dict[str, Any], props: dict[str, Any]) -> None:
    if "appId" in props and not _same(props["appId"], sp["appId"]):
        raise directory_error("Property 'appId' is read-only and cannot be set.")
    if props.get("displayName") == "":
        raise invalid_value(SERVICE_PRINCIPAL, "displayName")
    props.pop("appId", None)
    sp.update(props)


async def _patch_sp(call: Call, key: Mapping[str, str]) -> Response:
    call.require_some_write()
    props = read_body(SERVICE_PRINCIPAL, await call.body(), call.version)
    if next(iter(key)) == "appid":
        return _upsert_sp(call, key["appid"], props)
    sp = _visible_sp(call, key)
    _require_sp_write(call, sp)
    _update_sp(sp, props)
    return _no_content()


def _upsert_sp(call: Call, app_id: str, props: dict[str, Any]) -> Response:
    """``PATCH /servicePrincipals(appId='x')``: 204 update, 201 create with ``Prefer: create-if-missing``."""
    sp = call.directory.raw_sp_by_app_id(app_id)
    if sp is None and not call.prefers("create-if-missing"):
        raise not_found(app_id)
    if sp is not None:
        _require_sp_write(call, sp)
        _update_sp(sp, props)
        return _no_content()
    if "appId" in props and not _same(props["appId"], app_id):
        raise directory_error(f"The appId '{props['appId']}' in the request body does not match the appId "
                              f"'{app_id}' in the request URL.")
    props["appId"] = app_id
    sp = _new_sp(call, props)
    return _entity(call, "servicePrincipals/$entity", _render(call, sp), status=201)


async def _delete_sp(call: Call, key: Mapping[str, str]) -> Response:
    call.require_some_write()
    sp = _visible_sp(call, key)
    _require_sp_write(call, sp)
    _soft_delete_sp(call, sp, call.now_iso())
    return _no_content()


def _soft_delete_sp(call: Call, sp: dict[str, Any], stamp: str) -> None:
    """Move a service principal (and the app role assignments it holds) to deletedItems."""
    del call.state.sps[sp["id"]]
    sp["deletedDateTime"] = stamp
    sp["_type"] = "servicePrincipal"
    sp["_created"] = call.mono()
    held = {k: a for k, a in call.state.app_role_assignments.items() if _same(a.get("principalId"), sp["id"])}
    for key in held:
        del call.state.app_role_assignments[key]
    sp["_app_role_assignments"] = held
    call.state.deleted[sp["id"]] = sp


# --------------------------------------------------------------------------- app role assignments


async def _route_app_role_assignments(call: Call, sp: dict[str, Any], rest: list[Segment]) -> Response:
    """``/servicePrincipals/{id}/appRoleAssignments`` (sp is the principal) and ``.../appRoleAssignedTo``
    (sp is the resource)."""
    sub, tail = rest[0], rest[1:]
    if sub.name not in ("approleassignments", "approleassignedto") or len(tail) > 1 or \
            (sub.key is not None and tail):
        raise segment_not_found((tail or [sub])[-1].raw)
    side = "principalId" if sub.name == "approleassignments" else "resourceId"
    navigation = "appRoleAssignments" if side == "principalId" else "appRoleAssignedTo"
    fragment = f"servicePrincipals('{sp['id']}')/{navigation}"
    key = next(iter(sub.key.values())) if sub.key else (tail[0].raw if tail else None)
    if key is None:
        return await _dispatch(call, {"GET": lambda: _list_assignments(call, sp, side, fragment),
                                      "POST": lambda: _create_assignment(call, sp, side, fragment)})
    return await _dispatch(call, {"GET": lambda: _get_assignment(call, sp, side, key, fragment),
                                  "DELETE": lambda: _delete_assignment(call, sp, side, key)})


def _assignments_of(call: Call, sp: Mapping[str, Any], side: str) -> list[dict[str, Any]]:
    return [a for a in call.state.app_role_assignments.values()
            if _same(a.get(side), sp["id"]) and not a.get("deletedDateTime")]


def _find_assignment(call: Call, sp: Mapping[str, Any], side: str, key: str) -> dict[str, Any]:
    found = next((a for a in _assignments_of(call, sp, side) if a["id"] == key), None)
    if found is None:
        raise not_found(key)
    return found


def _require_grant(call: Call) -> None:
    if not call.roles & GRANT_ROLES:
        raise denied()


async def _list_assignments(call: Call, sp: dict[str, Any], side: str, fragment: str) -> Response:
    call.require_read()
    query = call.query(APP_ROLE_ASSIGNMENT, collection=True)
    return _collection(call, fragment, _assignments_of(call, sp, side), query, public)


async def _get_assignment(call: Call, sp: dict[str, Any], side: str, key: str, fragment: str) -> Response:
    call.require_read()
    query = call.query(APP_ROLE_ASSIGNMENT, collection=False)
    return _entity(call, f"{fragment}/$entity", public(_find_assignment(call, sp, side, key)), query=query)


async def _create_assignment(call: Call, sp: dict[str, Any], side: str, fragment: str) -> Response:
    _require_grant(call)
    props = read_body(APP_ROLE_ASSIGNMENT, await call.body(), call.version)
    for prop in ("principalId", "resourceId", "appRoleId"):
        if props.get(prop) is None:
            raise invalid_value(APP_ROLE_ASSIGNMENT, prop)
    if not _same(props[side], sp["id"]):
        raise directory_error(f"The {side} in the request body must be the service principal in the request URL "
                              f"('{sp['id']}').")
    principal = call.directory.raw_sp_by_id(props["principalId"])
    resource = call.directory.raw_sp_by_id(props["resourceId"])
    for obj, object_id in ((principal, props["principalId"]), (resource, props["resourceId"])):
        if obj is None or call.lagging(obj):
            raise not_found(object_id)
    assert principal is not None and resource is not None
    roles = [r for r in resource.get("appRoles") or () if _same(r.get("id"), props["appRoleId"])
             and "Application" in (r.get("allowedMemberTypes") or ["Application"])]
    if not roles:
        raise directory_error(f"Permission being assigned was not found on application '{resource['appId']}'.")
    if any(_same(a.get("resourceId"), resource["id"]) and _same(a.get("appRoleId"), props["appRoleId"])
           for a in _assignments_of(call, principal, "principalId")):
        raise directory_error("Permission being assigned already exists on the object.")
    assignment = {
        "id": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode(), "deletedDateTime": None,
        "appRoleId": props["appRoleId"].lower(), "createdDateTime": call.now_iso(),
        "principalDisplayName": principal.get("displayName"), "principalId": principal["id"],
        "principalType": "ServicePrincipal", "resourceDisplayName": resource.get("displayName"),
        "resourceId": resource["id"], "_created": call.mono(),
    }
    call.state.app_role_assignments[assignment["id"]] = assignment
    return _entity(call, f"{fragment}/$entity", public(assignment), status=201)


async def _delete_assignment(call: Call, sp: dict[str, Any], side: str, key: str) -> Response:
    _require_grant(call)
    assignment = _find_assignment(call, sp, side, key)
    stored_key = next(k for k, a in call.state.app_role_assignments.items() if a is assignment)
    del call.state.app_role_assignments[stored_key]
    return _no_content()


# --------------------------------------------------------------------------- federated identity credentials


# v1.0 writes these before ``subject`` (the failing property), as the payload in msgraph-sdk-python#1359 shows.
_FIC_WRITTEN_BEFORE_SUBJECT = ("id", "name", "issuer")


def _fic_view(call: Call, fic: Mapping[str, Any], select: list[str] | None = None) -> dict[str, Any]:
    """The credential as ``call.version`` returns it.  v1.0 declares ``subject`` non-nullable and has no
    ``claimsMatchingExpression``: serialising a flexible credential's ``subject`` fails mid-payload
    (``InStreamFailure``), unless ``$select`` leaves ``subject`` out."""
    view = public(fic)
    if call.version == "v1.0":
        view.pop("claimsMatchingExpression", None)
        if view.get("subject") is None and (select is None or "subject" in select):
            error = graph_error(500, "InternalServerError", "The property 'subject[Nullable=False]' of type "
                                                            "'Edm.String' has a null value, which is not allowed.")
            written = tuple(name for name in _FIC_WRITTEN_BEFORE_SUBJECT if select is None or name in select)
            raise InStreamFailure(view, written, error)
    return view


def _fics(call: Call, app: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return call.state.fics.get(app["id"], {})


def _find_fic(call: Call, app: Mapping[str, Any], key: str, *, by_name_only: bool) -> dict[str, Any] | None:
    fics = _fics(call, app)
    if not by_name_only and is_guid(key) and key.lower() in fics:
        return fics[key.lower()]
    return next((f for f in fics.values() if _same(f["name"], key)), None)


async def _route_fics(call: Call, app: dict[str, Any], seg: Segment, rest: list[Segment]) -> Response:
    fic_context = f"applications('{app['id']}')/federatedIdentityCredentials"
    if seg.key is None and not rest:
        return await _dispatch(call, {"GET": lambda: _list_fics(call, app, fic_context),
                                      "POST": lambda: _create_fic(call, app, fic_context)})
    if rest and len(rest) > (0 if seg.key is not None else 1):
        raise segment_not_found(rest[-1].raw)
    if seg.key is not None:
        (prop, key), = seg.key.items()
        if prop not in ("", "name", "id"):
            raise bad_request(f"The key property '{prop}' is not an alternate key of "
                              f"'microsoft.graph.federatedIdentityCredential'.")
        by_name = prop == "name"
    else:
        key, by_name = rest[0].raw, False
    return await _dispatch(call, {
        "GET": lambda: _get_fic(call, app, key, by_name, fic_context),
        "PATCH": lambda: _patch_fic(call, app, key, by_name, upsert=by_name and seg.key is not None,
                                    fragment=fic_context),
        "DELETE": lambda: _delete_fic(call, app, key, by_name),
    })


async def _list_fics(call: Call, app: dict[str, Any], fragment: str) -> Response:
    call.require_read()
    query = call.query(FEDERATED_IDENTITY_CREDENTIAL, collection=True)
    return _collection(call, fragment, list(_fics(call, app).values()), query,
                       lambda f: _fic_view(call, f, query.select))


async def _get_fic(call: Call, app: dict[str, Any], key: str, by_name: bool, fragment: str) -> Response:
    call.require_read()
    query = call.query(FEDERATED_IDENTITY_CREDENTIAL, collection=False)
    fic = _find_fic(call, app, key, by_name_only=by_name)
    if fic is None:
        raise not_found(key)
    try:
        view = _fic_view(call, fic, query.select)
    except InStreamFailure as failure:
        select = f"({','.join(query.select)})" if query.select is not None else ""
        return _in_stream_error(call, {"@odata.context": call.context_url(f"{fragment}{select}/$entity")}, None,
                                failure)
    return _entity(call, f"{fragment}/$entity", view, query=query)


async def _create_fic(call: Call, app: dict[str, Any], fragment: str) -> Response:
    call.require_app_write(app)
    props = read_body(FEDERATED_IDENTITY_CREDENTIAL, await call.body(), call.version)
    fic = _new_fic(call, app, props)
    return _entity(call, f"{fragment}/$entity", _fic_view(call, fic), status=201)


def _new_fic(call: Call, app: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    if call.state.apps.get(app["id"]) is not app:  # deleted while the body was being read
        raise not_found(app["id"])
    fics = call.state.fics.setdefault(app["id"], {})
    if len(fics) >= MAX_FICS_PER_APP:
        raise fic_error(f"The application already has the maximum of {MAX_FICS_PER_APP} federated identity "
                        f"credentials; delete one before adding another. paramName: FederatedIdentityCredential, "
                        f"objectType: Microsoft.Online.DirectoryServices.Application")
    fic = {"id": new_guid(), "name": None, "issuer": None, "subject": None, "claimsMatchingExpression": None,
           "description": None, "audiences": None, **props}
    _validate_fic(call, app, fic)
    fic["_created"] = call.mono()
    fics[fic["id"]] = fic
    return fic


async def _patch_fic(call: Call, app: dict[str, Any], key: str, by_name: bool, *, upsert: bool,
                     fragment: str) -> Response:
    call.require_app_write(app)
    props = read_body(FEDERATED_IDENTITY_CREDENTIAL, await call.body(), call.version)
    fic = _find_fic(call, app, key, by_name_only=by_name)
    if fic is None and not (upsert and call.prefers("create-if-missing")):
        raise not_found(key)
    if fic is None:
        if "name" in props and props["name"] != key:
            raise fic_error(f"The name '{props['name']}' in the request body does not match the name '{key}' in the "
                            f"request URL. paramName: FederatedIdentityCredential.Name, paramValue: "
                            f"{props['name']}, objectType: Microsoft.Online.DirectoryServices.Application")
        props["name"] = key
        created = _new_fic(call, app, props)
        return _entity(call, f"{fragment}/$entity", _fic_view(call, created), status=201)
    if "name" in props and props["name"] != fic["name"]:
        raise fic_error(f"The name of a federated identity credential is immutable: it cannot be changed from "
                        f"'{fic['name']}' to '{props['name']}'. paramName: FederatedIdentityCredential.Name, "
                        f"paramValue: {props['name']}, objectType: Microsoft.Online.DirectoryServices.Application")
    merged = {**fic, **props}
    _validate_fic(call, app, merged)
    fic.update(props)
    return _no_content()


async def _delete_fic(call: Call, app: dict[str, Any], key: str, by_name: bool) -> Response:
    call.require_app_write(app)
    fic = _find_fic(call, app, key, by_name_only=by_name)
    if fic is None:
        raise not_found(key)
    del _fics(call, app)[fic["id"]]
    return _no_content()


def _param(prop: str, value: Any) -> str:
    return (f"paramName: FederatedIdentityCredential.{prop[:1].upper()}{prop[1:]}, paramValue: {value}, "
            f"objectType: Microsoft.Online.DirectoryServices.Application")


def _validate_fic(call: Call, app: Mapping[str, Any], fic: Mapping[str, Any]) -> None:
    """Every documented rule for one credential (``fic`` is the would-be stored state)."""
    for prop in ("name", "issuer", "audiences"):
        if fic.get(prop) in (None, ""):
            raise invalid_value(FEDERATED_IDENTITY_CREDENTIAL, prop)
    name = fic["name"]
    if not FIC_NAME_RE.fullmatch(name):
        raise fic_error(f"Federated Identity Credential name '{name}' is invalid. The name must be 3 to 120 "
                        f"characters long, start with a letter or digit and contain only letters, digits, '-' and "
                        f"'_'. {_param('name', name)}")
    audiences = fic["audiences"]
    if len(audiences) != 1:
        raise fic_error(f"Federated identity credentials must have exactly one audience. "
                        f"{_param('audiences', audiences)}")
    for prop, value in (("issuer", fic["issuer"]), ("audiences", audiences[0]), ("subject", fic.get("subject")),
                        ("description", fic.get("description"))):
        if isinstance(value, str) and len(value) > FIC_FIELD_LIMIT:
            raise fic_error(f"The value of '{prop}' must be at most {FIC_FIELD_LIMIT} characters long. "
                            f"{_param(prop, value[:40] + '...')}")
    if audiences[0] == "":
        raise fic_error(f"The audience must not be empty. {_param('audiences', audiences)}")
    _validate_subject_or_expression(call, fic)
    _validate_fic_uniqueness(call, app, fic)


def _validate_subject_or_expression(call: Call, fic: Mapping[str, Any]) -> None:
    subject, expr = fic.get("subject"), fic.get("claimsMatchingExpression")
    if subject is not None and expr is not None:
        raise fic_error("'subject' and 'claimsMatchingExpression' are mutually exclusive: set exactly one of them "
                        f"and the other to null. {_param('subject', subject)}")
    if subject is None and expr is None:
        raise fic_error("Either 'subject' or 'claimsMatchingExpression' must be set. "
                        f"{_param('subject', None)}")
    if subject is not None:
        if subject == "":
            raise fic_error(f"The subject must not be empty. {_param('subject', subject)}")
        return
    _validate_expression(call, fic["issuer"], expr)


def _validate_expression(call: Call, issuer: str, expr: Mapping[str, Any]) -> None:
    """Directory rules of a ``claimsMatchingExpression`` (its members were type-checked by ``read_body``)."""
    values = {k.lower(): v for k, v in expr.items() if not k.startswith("@")}
    if "value" not in values or "languageversion" not in values:
        raise invalid_value(FEDERATED_IDENTITY_CREDENTIAL, "claimsMatchingExpression")
    if values["languageversion"] != expression.LANGUAGE_VERSION:
        raise fic_error(f"Unsupported languageVersion {values['languageversion']} in claimsMatchingExpression; the "
                        f"only supported languageVersion is {expression.LANGUAGE_VERSION}. "
                        f"{_param('claimsMatchingExpression', values['languageversion'])}")
    platform_of = getattr(call.ctx, "flexible_issuer_platform", None)
    try:
        parsed = expression.parse(values["value"])
        expression.check_allowed(parsed, issuer, platform_of(issuer) if callable(platform_of) else None)
    except expression.ExpressionError as exc:
        raise fic_error(f"{exc} {_param('claimsMatchingExpression', values['value'])}") from None


def _validate_fic_uniqueness(call: Call, app: Mapping[str, Any], fic: Mapping[str, Any]) -> None:
    for other in _fics(call, app).values():
        if other["id"] == fic["id"]:
            continue
        if _same(other["name"], fic["name"]):
            message = f"FederatedIdentityCredential with name '{fic['name']}' already exists."
            raise directory_error(message, [{"code": "ObjectConflict", "message": message, "target": "name"}])
        if fic.get("subject") is not None and other["issuer"] == fic["issuer"] and \
                other.get("subject") == fic["subject"]:
            raise fic_error(f"The combination of issuer and subject must be unique for the application. Issuer "
                            f"{fic['issuer']} and Subject: {fic['subject']} already exist. "
                            f"{_param('subject', fic['subject'])}")


# --------------------------------------------------------------------------- directoryObjects and deletedItems


async def _route_directory_objects(call: Call, head: Segment, rest: list[Segment]) -> Response:
    if head.key is None and len(rest) == 1 and rest[0].name in ("getbyids", "microsoft.graph.getbyids"):
        return await _dispatch(call, {"POST": lambda: _get_by_ids(call)})
    key, rest = _key_of(head, rest)
    if key is None or rest or set(key) - {"", "id"}:
        raise segment_not_found((rest or [head])[0].raw)
    return await _dispatch(call, {"GET": lambda: _get_directory_object(call, next(iter(key.values())))})


async def _get_directory_object(call: Call, object_id: str) -> Response:
    call.require_read()
    query = call.query(DIRECTORY_OBJECT, collection=False)
    if not is_guid(object_id):
        raise invalid_object_id(object_id)
    obj = call.directory.raw_object_by_id(object_id)
    if obj is None or call.lagging(obj):
        raise not_found(object_id)
    return _entity(call, "directoryObjects/$entity", _typed(_render(call, obj), obj), query=query)


def _string_list(body: Mapping[str, Any], prop: str, *, required: bool) -> list[str]:
    value = body.get(prop)
    if required and (prop not in body or value == []):
        raise directory_error(f"Invalid value specified for property '{prop}' of resource 'getByIds'.")
    check_value(Field(prop, "Collection(Edm.String)", nullable=not required), value)
    return list(value or [])


async def _get_by_ids(call: Call) -> Response:
    call.require_read()
    body = await call.body()
    if not isinstance(body, dict):
        raise bad_request("Unable to read JSON request payload. Please ensure Content-Type header is set and payload "
                          "is of valid JSON format.")
    for key in body:
        if key.lower() not in ("ids", "types") and not key.startswith("@"):
            raise bad_request(f"The parameter '{key}' in the request payload is not a valid parameter for the "
                              f"operation 'getByIds'.")
    lowered = {k.lower(): v for k, v in body.items()}
    ids = _string_list(lowered, "ids", required=True)
    types = {t.lower() for t in _string_list(lowered, "types", required=False)}
    if len(ids) > MAX_GET_BY_IDS:
        raise directory_error(f"The number of ids must not exceed {MAX_GET_BY_IDS}.")
    found, seen = [], set()
    for object_id in ids:
        if not is_guid(object_id):
            raise invalid_object_id(object_id)
        obj = call.directory.raw_object_by_id(object_id)
        if obj is None or obj["id"] in seen or call.lagging(obj) or (types and obj["_type"].lower() not in types):
            continue
        seen.add(obj["id"])
        found.append(_typed(_render(call, obj), obj))
    return _json_response(200, {"@odata.context": call.context_url("directoryObjects"), "value": found})


_DELETED_TYPES = {"microsoft.graph.application": ("application", APPLICATION),
                  "microsoft.graph.serviceprincipal": ("servicePrincipal", SERVICE_PRINCIPAL)}


async def _route_directory(call: Call, head: Segment, rest: list[Segment]) -> Response:
    if head.key is not None or not rest or rest[0].name != "deleteditems" or rest[0].key is not None:
        raise segment_not_found((rest or [head])[0].raw)
    tail = rest[1:]
    if not tail:
        raise directory_error("A type cast is required to list deleted items, for example "
                              "/directory/deletedItems/microsoft.graph.application.")
    if len(tail) == 1 and tail[0].name in _DELETED_TYPES:
        kind, resource = _DELETED_TYPES[tail[0].name]
        return await _dispatch(call, {"GET": lambda: _list_deleted(call, kind, resource)})
    if len(tail) == 1:
        return await _dispatch(call, {"GET": lambda: _get_deleted(call, tail[0].raw),
                                      "DELETE": lambda: _purge_deleted(call, tail[0].raw)})
    if len(tail) == 2 and tail[1].name in ("restore", "microsoft.graph.restore"):
        return await _dispatch(call, {"POST": lambda: _restore_deleted(call, tail[0].raw)})
    raise segment_not_found(tail[-1].raw)


async def _list_deleted(call: Call, kind: str, resource: Resource) -> Response:
    call.require_read()
    query = call.query(resource, collection=True)
    items = [o for o in call.state.deleted.values() if o.get("_type") == kind and not call.lagging(o)]
    return _collection(call, f"directory/deletedItems/{resource.type_name}", items, query,
                       lambda o: _render(call, o, query.select))


def _deleted(call: Call, object_id: str) -> dict[str, Any]:
    if not is_guid(object_id):
        raise invalid_object_id(object_id)
    obj = call.state.deleted.get(object_id.lower())
    if obj is None or call.lagging(obj):  # a deleted item still replicating is not found yet
        raise not_found(object_id)
    return obj


async def _get_deleted(call: Call, object_id: str) -> Response:
    call.require_read()
    obj = _deleted(call, object_id)
    return _entity(call, "directory/deletedItems/$entity", _typed(_render(call, obj), obj))


async def _purge_deleted(call: Call, object_id: str) -> Response:
    call.require_some_write()
    obj = _deleted(call, object_id)
    call.require_app_write(obj if obj["_type"] == "application"
                           else call.directory.raw_app_by_app_id(obj["appId"]) or {})
    del call.state.deleted[obj["id"]]
    return _no_content()


async def _restore_deleted(call: Call, object_id: str) -> Response:
    call.require_some_write()
    obj = _deleted(call, object_id)
    if obj["_type"] == "application":
        call.require_app_write(obj)
        if obj.get("uniqueName"):
            other = call.directory.raw_app_by_unique_name(obj["uniqueName"])
            if other is not None:
                raise _conflict("uniqueName", other["id"])
        call.state.fics[obj["id"]] = obj.pop("_fics", {})
        target = call.state.apps
    else:
        app = _backing_app(call, obj["appId"])
        call.require_app_write(app)
        if call.directory.raw_sp_by_app_id(obj["appId"]) is not None:
            raise graph_error(409, "Request_MultipleObjectsWithSameKeyValue",
                              f"The service principal cannot be created, updated, or restored because the service "
                              f"principal name {obj['appId']} is already in use.")
        call.state.app_role_assignments.update(obj.pop("_app_role_assignments", {}))
        target = call.state.sps
    del call.state.deleted[obj["id"]]
    obj["deletedDateTime"] = None
    target[obj["id"]] = obj
    return _entity(call, "directoryObjects/$entity", _typed(_render(call, obj), obj))


__all__ = ["Directory", "handle", "init", "install", "parse_path"]


# --------------------------------------------------------------------------- $batch


@dataclasses.dataclass
class _BatchItem:
    id: str
    method: str
    url: str
    headers: dict[str, str]
    body: Any
    depends_on: list[str]


async def _route_batch(call: Call, head: Segment, rest: list[Segment]) -> Response:
    if head.key is not None or rest:
        raise segment_not_found((rest or [head])[0].raw)
    return await _dispatch(call, {"POST": lambda: _batch(call)})


def _batch_items(body: Any) -> list[_BatchItem]:
    """Validate a JSON batch payload (a malformed batch fails as a whole with 400 BadRequest)."""
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise bad_request("Invalid batch payload format: the body must be an object with a non-empty "
                          "'requests' array.")
    if len(requests) > MAX_BATCH:
        raise bad_request(f"The number of requests in a batch is limited to {MAX_BATCH}; this batch has "
                          f"{len(requests)}.")
    items: list[_BatchItem] = []
    for raw in requests:
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"] \
                or not isinstance(raw.get("url"), str) or not isinstance(raw.get("method"), str):
            raise bad_request("Invalid batch payload format: every request needs string 'id', 'method' and "
                              "'url'.")
        headers = raw.get("headers") or {}
        depends_on = raw.get("dependsOn") or []
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()) or \
                not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
            raise bad_request(f"Invalid batch payload format in request id : {raw['id']}: 'headers' must be an "
                              f"object of strings and 'dependsOn' an array of request ids.")
        item = _BatchItem(raw["id"], raw["method"].upper(), raw["url"], {k.lower(): v for k, v in headers.items()},
                          raw.get("body"), depends_on)
        if item.id in {i.id for i in items}:
            raise bad_request(f"Request id : {item.id} is duplicated; ids must be unique within a batch.")
        if item.method in ("POST", "PATCH", "PUT") and (item.body is None or "content-type" not in item.headers):
            raise bad_request(f"Write request id : {item.id} does not contain Content-Type header or body.")
        items.append(item)
    known = {i.id for i in items}
    for item in items:
        unknown = [d for d in item.depends_on if d not in known or d == item.id]
        if unknown:
            raise bad_request(f"Request id : {item.id} depends on unknown request id(s): {', '.join(unknown)}.")
    return items


def _batch_order(items: list[_BatchItem]) -> list[_BatchItem]:
    """Requests in an order that honours dependsOn (400 on a cycle)."""
    done: set[str] = set()
    ordered: list[_BatchItem] = []
    while len(ordered) < len(items):
        ready = [i for i in items if i.id not in done and all(d in done for d in i.depends_on)]
        if not ready:
            raise bad_request("Invalid batch payload format: the dependsOn references form a cycle.")
        ordered.append(ready[0])
        done.add(ready[0].id)
    return ordered


async def _batch(call: Call) -> Response:
    """``POST /$batch``: up to 20 requests run one by one (dependsOn honoured, 424 after a failed dependency),
    each authorised and throttled on its own."""
    items = _batch_order(_batch_items(await call.body()))
    results: dict[str, dict[str, Any]] = {}
    stats = getattr(call.ctx, "stats", None)
    for item in items:
        failed = [d for d in item.depends_on if results[d]["status"] >= 400]
        if failed:
            results[item.id] = _batch_result(item.id, graph_error(
                424, "FailedDependency", f"The request depends on request id(s) {', '.join(failed)}, which "
                                         f"failed."))
            if stats is not None:
                stats.record_batch_item(item.method, _batch_path(call, item), 424, not_attempted=True)
        else:
            results[item.id] = await _batch_run(call, item)
    return _json_response(200, {"responses": [results[item.id] for item in items]})


def _batch_result(item_id: str, error: ServiceError) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    headers.update({k: v for k, v in error.headers.items()
                    if k.lower() == "retry-after" or k.lower().startswith("x-ms")})
    return {"id": item_id, "status": error.status, "headers": headers, "body": error.body}


def _batch_path(call: Call, item: _BatchItem) -> str:
    return f"/{call.version}/{urllib.parse.unquote(item.url.partition('?')[0].lstrip('/'))}"


async def _batch_run(call: Call, item: _BatchItem) -> dict[str, Any]:
    """One inner request through ``handle`` (with the batch's token and the faults/quotas of a real request),
    counted in the stats as a request of its own."""
    result, injected = await _batch_answer(call, item)
    stats = getattr(call.ctx, "stats", None)
    if stats is not None:
        stats.record_batch_item(item.method, _batch_path(call, item), result["status"], injected=injected)
    return result


async def _batch_answer(call: Call, item: _BatchItem) -> tuple[dict[str, Any], str | None]:
    if item.method not in _BATCH_METHODS:
        return _batch_result(item.id, method_not_allowed()), None
    query = item.url.partition("?")[2]
    path = _batch_path(call, item)
    if urllib.parse.urlsplit(item.url).scheme or path.lower().rstrip("/").endswith("/$batch"):
        return _batch_result(item.id, bad_request("Batch requests must use URLs relative to the version, and "
                                                  "cannot contain another $batch.")), None
    request = _inner_request(call, item, path, query)
    fault, quota_headers = await _batch_faults(call, item, path, query, request)
    if fault is not None:
        return _batch_result(item.id, fault), fault.source or "rule"
    try:
        response = await handle(call.ctx, request, path)
    except ServiceError as error:
        result = _batch_result(item.id, error)
        result["headers"].update(quota_headers)
        return result, None
    if isinstance(response, InStreamErrorResponse):  # a batch cannot carry a malformed body: the error instead
        result = _batch_result(item.id, response.error)
        result["headers"].update(quota_headers)
        return result, None
    result: dict[str, Any] = {"id": item.id, "status": response.status_code, "headers": dict(quota_headers)}
    if response.body:
        result["headers"]["Content-Type"] = "application/json"
        result["body"] = json.loads(response.body)
    return result, None


async def _batch_faults(call: Call, item: _BatchItem, path: str, query: str,
                        request: Request) -> tuple[ServiceError | None, dict[str, str]]:
    """The fault rules (latency, 429, 5xx) and the Graph quotas (``ctx.faults.graph_charge``) of one inner request:
    each item is throttled on its own, as Graph documents for JSON batching. Returns (the error to answer instead,
    the quota headers of an allowed request: ``x-ms-resource-unit``, ``x-ms-throttle-limit-percentage``)."""
    faults = getattr(call.ctx, "faults", None)
    if faults is None:
        return None, {}
    peek = getattr(call.ctx.auth, "peek_app_id", None)
    app_id = peek(request) if peek else None
    tenant_id = call.state.tenant_id
    delay, fault, _ = faults.before("graph", item.method, path, app_id=app_id, tenant_id=tenant_id, quotas=False,
                                    query=query)
    if delay:
        await asyncio.sleep(delay)
    if fault is None and app_id is not None:
        return faults.graph_charge(app_id, tenant_id, item.method, path, query)
    return fault, {}


def _inner_request(call: Call, item: _BatchItem, path: str, query: str) -> Request:
    body = b"" if item.body is None else json.dumps(item.body).encode()
    headers = {**item.headers, "authorization": call.request.headers.get("authorization", "")}
    if "client-request-id" not in headers and "client-request-id" in call.request.headers:
        headers["client-request-id"] = call.request.headers["client-request-id"]
    outer = call.request.scope
    scope = {"type": "http", "method": item.method, "path": path, "raw_path": path.encode(),
             "query_string": query.encode(), "root_path": "", "scheme": outer.get("scheme", "https"),
             "server": outer.get("server"), "client": outer.get("client"), "http_version": "1.1",
             "headers": [(k.encode("latin-1", "replace"), v.encode("latin-1", "replace"))
                         for k, v in headers.items() if v]}
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)
