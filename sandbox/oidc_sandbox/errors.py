"""Error envelopes of the services the sandbox stands for."""
from __future__ import annotations

import datetime as _dt
import json
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request


class ServiceError(Exception):
    """Raised by a handler; the app turns it into a JSON response (a ``str`` body is sent as text/plain).

    ``source`` is set on injected faults: ``"rule"`` (a fault rule) or ``"quota"`` (a Graph quota bucket).
    """

    source: str | None = None

    def __init__(self, status: int, body: dict[str, Any] | str | None, headers: dict[str, str] | None = None):
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def graph_error(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
                client_request_id: str | None = None, headers: dict[str, str] | None = None) -> ServiceError:
    request_id = str(uuid.uuid4())
    err: dict[str, Any] = {
        "code": code,
        "message": message,
        "innerError": {
            "date": _now().strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": request_id,
            "client-request-id": client_request_id or request_id,
        },
    }
    if details:
        err["details"] = details
    return ServiceError(status, {"error": err}, headers)


def arm_error(status: int, code: str, message: str, target: str | None = None,
              details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> ServiceError:
    err: dict[str, Any] = {"code": code, "message": message}
    if target:
        err["target"] = target
    if details:
        err["details"] = details
    return ServiceError(status, {"error": err}, headers)


def entra_error(status: int, error: str, aadsts_code: int, description: str,
                headers: dict[str, str] | None = None) -> ServiceError:
    now = _now()
    trace_id = str(uuid.uuid4())
    correlation_id = str(uuid.uuid4())
    stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    text = (f"AADSTS{aadsts_code}: {description}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\n"
            f"Timestamp: {stamp}")
    body = {
        "error": error,
        "error_description": text,
        "error_codes": [aadsts_code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={aadsts_code}",
    }
    return ServiceError(status, body, headers)


# --- per-service envelopes used by the app and the fault injector -------------------------------------------

SERVICES = ("graph", "arm", "entra", "gitlab", "control")


def gitlab_error(status: int, message: str, headers: dict[str, str] | None = None) -> ServiceError:
    """GitLab's API error shape ``{"message": "..."}``."""
    return ServiceError(status, {"message": message}, headers)


def control_error(status: int, message: str, headers: dict[str, str] | None = None) -> ServiceError:
    """Error of the sandbox's own control API: ``{"error": {"code", "message"}}``."""
    code = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 409: "Conflict"}.get(status, "Error")
    return ServiceError(status, {"error": {"code": code, "message": message}}, headers)


def not_found(service: str, path: str) -> ServiceError:
    """The answer of ``service`` to a path it does not serve."""
    if service == "graph":
        segment = path.rstrip("/").rsplit("/", 1)[-1] or path
        return graph_error(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
    if service == "arm":
        return arm_error(404, "InvalidResourceType",
                         f"The resource type could not be found for the request path '{path}'.")
    if service == "entra":
        return entra_error(404, "invalid_request", 90100,
                           f"The request path '{path}' is not a known endpoint of this authority.")
    if service == "gitlab":
        return gitlab_error(404, "404 Not Found")
    return control_error(404, f"No control endpoint {path}.")


def method_not_allowed(service: str, method: str, allowed: str) -> ServiceError:
    """405 in the service's envelope (Entra's own wording for its POST-only token endpoint)."""
    headers = {"Allow": allowed}
    if service == "graph":
        return graph_error(405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed here.",
                           headers=headers)
    if service == "arm":
        return arm_error(405, "MethodNotAllowed", f"The HTTP method '{method}' is not supported.", headers=headers)
    if service == "entra":
        return entra_error(405, "invalid_request", 900561,
                           f"The endpoint only accepts {allowed} requests. Received a {method} request.",
                           headers=headers)
    if service == "gitlab":
        return gitlab_error(405, "405 Method Not Allowed", headers)
    return control_error(405, f"Method {method} not allowed; use {allowed}.", headers)


def internal_error(service: str) -> ServiceError:
    """What the app answers for an unexpected exception (logged, never shown)."""
    return unavailable(service, 500)


def unavailable(service: str, status: int, retry_after: int | None = None) -> ServiceError:
    """A 5xx in the service's envelope (used for injected faults and unexpected errors)."""
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    if service == "graph":
        code, message = {
            500: ("generalException", "An unspecified error has occurred."),
            502: ("UnknownError", "Bad gateway."),
            503: ("serviceNotAvailable", "The service is temporarily unavailable for maintenance or is "
                                         "overloaded. You may repeat the request after a delay, which may be "
                                         "specified in a Retry-After header."),
            504: ("gatewayTimeout", "The server, while acting as a proxy, did not receive a timely response "
                                    "from the upstream server it needed to access in attempting to complete "
                                    "the request."),
        }.get(status, ("UnknownError", "An unknown error has occurred."))
        return graph_error(status, code, message, headers=headers)
    if service == "arm":
        code, message = {
            500: ("InternalServerError", "Encountered internal server error. Please try again."),
            502: ("BadGateway", "The gateway did not receive a response from the service."),
            503: ("ServiceUnavailable", "The server (leader) is currently unable to receive requests. "
                                        "Please retry your request."),
            504: ("GatewayTimeout", "The gateway did not receive a response from 'Microsoft.Authorization' "
                                    "within the specified time period."),
        }.get(status, ("InternalServerError", "Encountered internal server error. Please try again."))
        return arm_error(status, code, message, headers=headers)
    if service == "entra":
        return entra_error(status, "temporarily_unavailable", 90033,
                           "A transient error has occurred. Please try again.", headers=headers)
    if service == "gitlab":
        return gitlab_error(status, f"{status} Service Unavailable" if status == 503 else f"{status} Error",
                            headers)
    return control_error(status, "Internal error of the sandbox (see its log).", headers)


def throttled(service: str, retry_after: int, *, tenant_id: str = "", app_id: str = "",
              scope: str | None = None, information: str | None = None, write: bool = False) -> ServiceError:
    """A 429 with ``Retry-After`` in the service's envelope (Graph adds its ``x-ms-throttle-*`` headers)."""
    headers = {"Retry-After": str(retry_after)}
    if service == "graph":
        headers["x-ms-throttle-scope"] = scope or f"Tenant_Application/ReadWrite/{app_id}/{tenant_id}"
        headers["x-ms-throttle-information"] = information or (
            "WriteLimitExceeded" if write else "ResourceUnitLimitExceeded")
        return graph_error(429, "Request_ThrottledTemporarily",
                           f"Your request is throttled temporarily. Please try after {retry_after} seconds.",
                           headers=headers)
    if service == "arm":
        kind = "Write" if write else "Read"
        return arm_error(429, "TooManyRequests",
                         f"The request is being throttled as the limit has been reached for operation type - "
                         f"{kind}. For more information, see - https://aka.ms/armthrottling", headers=headers)
    if service == "entra":
        return entra_error(429, "temporarily_unavailable", 90055,
                           "TenantThrottlingError - There are too many incoming requests.", headers=headers)
    if service == "gitlab":
        # Rack::Attack's throttled response as GitLab configures it (doc/security/rate_limits.md,
        # doc/administration/settings/user_and_ip_rate_limits.md "Response headers"): plain text and RateLimit-*.
        reset = int(_now().timestamp()) + retry_after
        headers.update({
            "RateLimit-Name": "throttle_authenticated_api", "RateLimit-Limit": "60", "RateLimit-Observed": "61",
            "RateLimit-Remaining": "0", "RateLimit-Reset": str(reset),
            "RateLimit-ResetTime": _dt.datetime.fromtimestamp(reset, _dt.timezone.utc).strftime(
                "%a, %d %b %Y %H:%M:%S GMT"),
            "Content-Type": "text/plain"})
        return ServiceError(429, "Retry later\n", headers)
    return control_error(429, "Throttled.", headers)


def json_body_error(service: str, message: str) -> ServiceError:
    """400 for an unreadable JSON body, in the service's envelope (helper for handlers)."""
    if service == "graph":
        return graph_error(400, "BadRequest", message)
    if service == "arm":
        return arm_error(400, "InvalidRequestContent", message)
    return control_error(400, message)


async def read_json(request: "Request", service: str) -> Any:
    """The request's JSON body, or a 400 ``ServiceError`` in ``service``'s envelope."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise json_body_error(service, f"The request body is not valid JSON: {exc}.") from None
