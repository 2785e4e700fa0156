# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""The collection's error types.

``AzureApiError`` is the one error every Graph, ARM and Entra call ends up as. It is built from the SDKs'
exceptions by duck-typing (no SDK is imported here), carries the operation, the target object, the service,
the HTTP status, the service's error code and text, and renders them in one message. Secrets and bearer
tokens never reach that message: ``redact`` scrubs JWTs, bearer tokens, OAuth form fields and every value
registered with ``register_secret``.

``GitLabApiError`` (a subclass) is a failed GitLab REST API call. ``ValidationError`` is bad input, raised before any
I/O. ``MissingLibraryError`` is a missing Python SDK.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Iterable, Mapping, Optional

SERVICE_NAMES = {'graph': 'Graph', 'arm': 'ARM', 'entra': 'Entra ID', 'gitlab': 'GitLab'}

# Exception class names (anywhere in the MRO or the cause chain) that mean "the request never got an HTTP answer".
_CONNECTION_CLASS_NAMES = frozenset((
    'ServiceRequestError', 'ServiceResponseError', 'ServiceRequestTimeoutError', 'ServiceResponseTimeoutError',
    'TransportError', 'ConnectError', 'ConnectTimeout', 'ReadTimeout', 'WriteTimeout', 'PoolTimeout', 'ReadError',
    'WriteError', 'RemoteProtocolError', 'ClientConnectionError', 'ClientConnectorError', 'ServerDisconnectedError',
    'ClientOSError', 'ServerTimeoutError', 'ConnectionError', 'TimeoutError', 'gaierror', 'herror', 'SSLError',
))
_TLS_CLASS_NAMES = frozenset(('SSLCertVerificationError', 'ClientConnectorCertificateError', 'CertificateError'))
_CREDENTIAL_CLASS_NAMES = frozenset(('ClientAuthenticationError', 'CredentialUnavailableError'))

# Compiled on first use (re's cache does not outlive a process, and a module process that hands its call to the
# persistent worker never needs them): 5 ms of every module process's start otherwise.
_AADSTS_RE = r'AADSTS(\d+)'
_HOST_RE = r'(?i)connect to host ([A-Za-z0-9.:\[\]_-]+)'
_SECRET_PATTERNS = (
    # JSON Web Tokens (access tokens, GitLab ID tokens, client assertions)
    (r'eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*', '<redacted-jwt>'),
    (r'(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}', r'\1<redacted>'),
    # GitLab tokens (personal, OAuth application, deploy, runner, CI job, pipeline trigger, feed, SCIM... prefixes)
    (r'\b(?:glpat|gloas|gldt|glrt|glrtr|glcbt|glptt|glft|glimt|glagent|glsoat|glffct|glwt|gltst)-[A-Za-z0-9_.-]{8,}',
     '<redacted-gitlab-token>'),
    (r'(?i)(private[-_]token["\']?\s*[:=]\s*["\']?)[^\s&\'",]+', r'\1<redacted>'),
    (r'(?i)((?:client_secret|client_assertion|access_token|refresh_token|assertion|password)=)[^&\s\'"]+', r'\1<redacted>'),
    (r'(?i)("(?:client_secret|client_assertion|access_token|refresh_token|secretText|password)"\s*:\s*")[^"]*(")',
     r'\1<redacted>\2'),
)
_REGISTERED_SECRETS: set = set()
_MIN_SECRET_LENGTH = 4

# Entra (AADSTS) codes with a hint naming the option to fix.
AADSTS_HINTS = {
    7000215: 'the client secret is wrong: check client_secret (AZURE_CLIENT_SECRET/AZURE_SECRET); pass the secret VALUE, not its ID',
    7000222: 'the client secret has expired: create a new one and update client_secret (AZURE_CLIENT_SECRET/AZURE_SECRET)',
    700016: 'no application with this client_id exists in the tenant: check client_id (AZURE_CLIENT_ID) and tenant_id (AZURE_TENANT_ID/AZURE_TENANT)',
    700011: 'no application with this client_id exists in the tenant: check client_id (AZURE_CLIENT_ID) and tenant_id (AZURE_TENANT_ID/AZURE_TENANT)',
    7000229: 'the application has no service principal in this tenant: create one (oidc_federation.azure.azure_ad_app does)',
    90002: 'the tenant does not exist: check tenant_id (AZURE_TENANT_ID/AZURE_TENANT) and cloud_environment',
    900023: 'the tenant id is malformed: check tenant_id (AZURE_TENANT_ID/AZURE_TENANT)',
    501661: "Entra could not fetch the token issuer's OpenID configuration or keys: the issuer must be reachable over HTTPS from the internet",
    70021: "no federated identity credential matches the token's issuer, subject and audience: compare them with the app's credentials",
    700211: "no federated identity credential matches the token's issuer (iss): issuers are compared exactly, trailing slash included",
    700212: "no federated identity credential matches the token's audience (aud): it must equal the credential's single audience",
    700213: "no federated identity credential matches the token's subject (sub): check the project path, ref type and ref",
    7002138: "the token's subject matches a federated identity credential only case-insensitively: subjects are case-sensitive",
    7002131: "no federated identity credential subject or claims-matching expression matches the token's claims",
    700024: 'the federated token has expired or is not yet valid: request a fresh token (GitLab ID tokens are short-lived)',
    700027: "the federated token's signature could not be validated against the issuer's published keys",
    700222: 'tokens issued by Entra ID cannot be used as federated tokens: pass the external (e.g. GitLab) ID token',
    1002012: 'the requested scope must be a single resource ending in /.default',
    7000112: 'the application is disabled',
}


class ValidationError(Exception):
    """Bad input, detected before any network I/O. ``extra`` is added to the module's failure result."""

    def __init__(self, msg: str, **extra: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.extra = extra

    def __str__(self) -> str:
        return redact(self.msg)


class MissingLibraryError(Exception):
    """A Python library the collection needs is not installed. ``tb`` is the import traceback."""

    def __init__(self, library: str, tb: Optional[str] = None, url: Optional[str] = None) -> None:
        super().__init__('the Python library {0} is required'.format(library))
        self.library = library
        self.tb = tb
        self.url = url


def register_secret(value: Optional[str]) -> None:
    """Remember a secret value (client secret, federated token...) so ``redact`` removes it from any text."""
    if isinstance(value, str) and len(value.strip()) >= _MIN_SECRET_LENGTH:
        _REGISTERED_SECRETS.add(value.strip())


def redact(text: Any) -> str:
    """Return ``text`` as a string without registered secrets, JWTs, bearer tokens or OAuth secret fields."""
    if text is None:
        return ''
    result = str(text)
    for secret in sorted(_REGISTERED_SECRETS, key=len, reverse=True):
        if secret in result:
            result = result.replace(secret, '<redacted>')
    for pattern, replacement in _SECRET_PATTERNS:  # re.sub compiles each once per process (re's cache)
        result = re.sub(pattern, replacement, result)
    return result


class AzureApiError(Exception):
    """One failed Graph, ARM or Entra call (or a connection failure on the way to one).

    Attributes: ``operation`` ("create application"), ``target`` ("uniqueName=gitlab-oidc-foo"), ``service``
    (``graph``/``arm``/``entra`` or None when unknown), ``status`` (HTTP status or None), ``code`` (the service's
    error code, ``AADSTS...`` for Entra), ``message`` (the service's text), ``details`` (codes of nested error
    details, e.g. ``NoBackingApplicationObject``; the OAuth ``error`` string for Entra), ``retry_after``
    (seconds, from the response headers), ``request_id`` (for support requests), ``kind`` (``http``,
    ``connection``, ``tls``) and ``hint``.
    """

    def __init__(self, message: str, *, operation: Optional[str] = None, target: Optional[str] = None,
                 service: Optional[str] = None, status: Optional[int] = None, code: Optional[str] = None,
                 details: Iterable[str] = (), retry_after: Optional[float] = None, request_id: Optional[str] = None,
                 kind: str = 'http', hint: Optional[str] = None, note: Optional[str] = None,
                 request: Optional[str] = None) -> None:
        self.message = redact(message).strip()
        self.operation = operation
        self.request = request
        self.target = target
        self.service = service
        self.status = status
        self.code = code
        self.details = tuple(d for d in details if d)
        self.retry_after = retry_after
        self.request_id = request_id
        self.kind = kind
        self.hint = hint
        self.note = note
        super().__init__(self.render())

    def render(self) -> str:
        """The one-line message: "<operation> <target> failed: <Service> <status> <code>: <text> (<hint>)"."""
        what = ' '.join(p for p in (self.operation or self.request or 'Azure request', self.target) if p)
        if self.kind in ('connection', 'tls'):
            head = 'connection to {0} failed'.format(SERVICE_NAMES.get(self.service, self.service)) if self.service else 'connection failed'
        else:
            head = ' '.join(str(p) for p in (SERVICE_NAMES.get(self.service, self.service), self.status, self.code) if p)
        text = '{0} failed: {1}: {2}'.format(what, head or 'error', self.message or 'no error text returned')
        if self.hint:
            text += ' (hint: {0})'.format(self.hint)
        if self.note:
            text += ' ({0})'.format(self.note)
        return redact(text)

    def __str__(self) -> str:
        return self.render()

    def with_context(self, operation: Optional[str] = None, target: Optional[str] = None,
                     service: Optional[str] = None, note: Optional[str] = None,
                     hint: Optional[str] = None) -> 'AzureApiError':
        """Return a copy (of the same class) naming ``operation``/``target`` (kept when already set), the service if
        unknown, and ``note`` and ``hint`` (when given)."""
        return type(self)(
            self.message, operation=self.operation or operation, target=self.target or target,
            service=self.service or service, status=self.status, code=self.code, details=self.details,
            retry_after=self.retry_after, request_id=self.request_id, kind=self.kind,
            hint=hint if hint is not None else self.hint,
            note=note if note is not None else self.note, request=self.request)

    def has_code(self, *codes: str) -> bool:
        """True when the error code or one of the detail codes is in ``codes`` (case-insensitive)."""
        wanted = {c.lower() for c in codes}
        return any(c and c.lower() in wanted for c in (self.code,) + self.details)

    def to_dict(self) -> dict:
        """JSON-safe description for module results (``error`` key)."""
        return {
            'operation': self.operation, 'target': self.target, 'service': self.service, 'status': self.status,
            'code': self.code, 'details': list(self.details), 'message': self.message, 'request_id': self.request_id,
            'kind': self.kind, 'request': self.request,
        }

    # --- construction -------------------------------------------------------------------------------------------

    @classmethod
    def from_response(cls, service: str, status: Optional[int], headers: Any = None, body: Any = None, *,
                      operation: Optional[str] = None, target: Optional[str] = None,
                      request: Optional[str] = None) -> 'AzureApiError':
        """Build from a raw HTTP answer: Graph/ARM ``{"error": {...}}`` envelopes and Entra OAuth errors.

        ``request`` ("GET /v1.0/applications") names the call when no ``operation`` is given.
        """
        data = _json_body(body)
        code, message, details, request_id = None, None, [], None
        if isinstance(data, dict) and isinstance(data.get('error'), str):
            return cls._from_oauth(data, status, headers, operation=operation, target=target)
        if isinstance(data, dict):
            err = data.get('error') if isinstance(data.get('error'), dict) else data
            code = err.get('code') if isinstance(err.get('code'), str) else None
            message = err.get('message') if isinstance(err.get('message'), str) else None
            details = [d.get('code') for d in err.get('details') or () if isinstance(d, dict) and isinstance(d.get('code'), str)]
            inner = err.get('innerError') or err.get('innererror') or {}
            if isinstance(inner, dict):
                request_id = inner.get('request-id') or inner.get('requestId')
        if message is None and body:
            message = _shorten(body if isinstance(body, str) else _text(body))
        request_id = request_id or _header(headers, 'request-id') or _header(headers, 'x-ms-request-id') \
            or _header(headers, 'x-ms-correlation-request-id')
        return cls(message or 'HTTP {0}'.format(status), operation=operation, target=target, service=service,
                   status=status, code=code, details=details, retry_after=parse_retry_after(headers),
                   request_id=request_id, request=request)

    @classmethod
    def _from_oauth(cls, data: Mapping, status: Optional[int], headers: Any, *, operation: Optional[str],
                    target: Optional[str]) -> 'AzureApiError':
        description = data.get('error_description') or ''
        codes = data.get('error_codes') or []
        number = codes[0] if codes and isinstance(codes[0], int) else _aadsts_number(description)
        return cls(_clean_aadsts_text(description) or str(data.get('error')), operation=operation, target=target,
                   service='entra', status=status, code='AADSTS{0}'.format(number) if number else None,
                   details=[str(data.get('error'))], retry_after=parse_retry_after(headers),
                   request_id=data.get('correlation_id') or _correlation_id(description), hint=AADSTS_HINTS.get(number or -1))

    @classmethod
    def from_exception(cls, exc: BaseException, *, operation: Optional[str] = None, target: Optional[str] = None,
                       service: Optional[str] = None) -> Optional['AzureApiError']:
        """Classify an SDK/transport exception; return None when ``exc`` is not an API or connection error.

        ``service`` is the service the caller was talking to (used when the exception does not say).
        """
        if isinstance(exc, AzureApiError):
            return exc.with_context(operation, target, service)
        for builder in (_from_credential_error, _from_kiota_error, _from_azure_core_error, _from_connection_error):
            err = builder(exc, service)
            if err is not None:
                return err.with_context(operation, target, service)
        return None


class GitLabApiError(AzureApiError):
    """One failed GitLab REST API call (or a connection failure on the way to one); ``service`` is ``gitlab``.

    Same attributes and rendering as ``AzureApiError`` (so modules, ``_retry.py`` and ``AzureModule`` treat both
    alike); ``code`` is GitLab's OAuth error (``insufficient_scope``, ``invalid_token``) when it sent one, else a word
    naming the failure (``unauthorized``, ``forbidden``, ``not_found``, ``invalid``, ``conflict``, ``rate_limited``).
    Built by ``_gitlab_api.py``.
    """

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault('service', 'gitlab')
        super().__init__(message, **kwargs)


# --- exception classifiers (duck-typed; the SDKs are never imported here) ----------------------------------------

def _class_names(exc: BaseException) -> set:
    return {c.__name__ for c in type(exc).__mro__}


def exception_chain(exc: BaseException, limit: int = 10) -> list:
    """``exc`` and its causes/contexts, outermost first."""
    seen, out, cur = set(), [], exc
    while cur is not None and id(cur) not in seen and len(out) < limit:
        seen.add(id(cur))
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _from_kiota_error(exc: BaseException, service: Optional[str]) -> Optional[AzureApiError]:
    """kiota ``APIError`` and msgraph's ``ODataError`` (``.error`` is a MainError with code/message/details)."""
    if not hasattr(exc, 'response_status_code'):
        return None
    status = getattr(exc, 'response_status_code', None)
    headers = getattr(exc, 'response_headers', None)
    main = getattr(exc, 'error', None)
    code = getattr(main, 'code', None) if main is not None else None
    message = getattr(main, 'message', None) if main is not None else None
    details = [getattr(d, 'code', None) for d in (getattr(main, 'details', None) or ())] if main is not None else []
    inner = getattr(main, 'inner_error', None) if main is not None else None
    request_id = getattr(inner, 'request_id', None) or _header(headers, 'request-id')
    if not message:
        message = getattr(exc, 'message', None) or str(exc)
    return AzureApiError(message, service=service or 'graph', status=status, code=code, details=details,
                         retry_after=parse_retry_after(headers), request_id=request_id)


def _from_azure_core_error(exc: BaseException, service: Optional[str]) -> Optional[AzureApiError]:
    """azure-core ``HttpResponseError`` (ARM): ``status_code``, ``error`` (ODataV4Format) and ``response``."""
    if not hasattr(exc, 'status_code') or not hasattr(exc, 'response'):
        return None
    response = getattr(exc, 'response', None)
    headers = getattr(response, 'headers', None)
    status = getattr(exc, 'status_code', None)
    odata = getattr(exc, 'error', None)
    code = getattr(odata, 'code', None)
    if code:
        message = getattr(odata, 'message', None) or ''
        details = [getattr(d, 'code', None) for d in (getattr(odata, 'details', None) or ())]
        request_id = _header(headers, 'x-ms-correlation-request-id') or _header(headers, 'x-ms-request-id')
        return AzureApiError(message, service=service or 'arm', status=status, code=code, details=details,
                             retry_after=parse_retry_after(headers), request_id=request_id)
    body = _response_text(response)
    if body:
        return AzureApiError.from_response(service or 'arm', status, headers, body)
    return AzureApiError(getattr(exc, 'message', None) or str(exc), service=service or 'arm', status=status,
                         retry_after=parse_retry_after(headers))


def _from_credential_error(exc: BaseException, service: Optional[str]) -> Optional[AzureApiError]:
    """azure-identity ``ClientAuthenticationError``/``CredentialUnavailableError`` (token acquisition).

    ARM also raises ``ClientAuthenticationError`` for its own 401s; those carry an ARM JSON body and no AADSTS code.
    """
    names = _class_names(exc)
    if not names & _CREDENTIAL_CLASS_NAMES:
        return None
    response = getattr(exc, 'response', None)
    message = getattr(exc, 'message', None) or str(exc)
    body = _response_text(response)
    data = _json_body(body)
    if isinstance(data, dict) and isinstance(data.get('error'), str):
        return AzureApiError.from_response('entra', getattr(exc, 'status_code', None), getattr(response, 'headers', None), data)
    url = str(getattr(getattr(response, 'request', None), 'url', '') or '')
    is_token_request = response is None or '/oauth2/' in url or 'CredentialUnavailableError' in names or re.search(_AADSTS_RE, message)
    if not is_token_request:
        return _from_azure_core_error(exc, service)
    connection = _from_connection_error(exc.__cause__ or exc.__context__, 'entra') if (exc.__cause__ or exc.__context__) else None
    if connection is not None:
        return connection
    number = _aadsts_number(message)
    hint = AADSTS_HINTS.get(number or -1)
    if hint is None and 'CredentialUnavailableError' in names:
        hint = _unavailable_hint(message)
    return AzureApiError(_clean_aadsts_text(message), service='entra', status=getattr(exc, 'status_code', None),
                         code='AADSTS{0}'.format(number) if number else None, request_id=_correlation_id(message), hint=hint)


def _from_connection_error(exc: Optional[BaseException], service: Optional[str]) -> Optional[AzureApiError]:
    """Connection failures (azure-core ServiceRequestError, httpx/aiohttp transport errors, OSError...)."""
    if exc is None:
        return None
    chain = exception_chain(exc)
    names = set()
    for item in chain:
        names |= _class_names(item)
    text = ' | '.join(str(item) for item in chain if str(item))
    if names & _TLS_CLASS_NAMES or 'CERTIFICATE_VERIFY_FAILED' in text:
        return AzureApiError(_shorten(_connection_text(chain)), service=service, kind='tls',
                             hint='the server certificate is not trusted: set ca_bundle (AZURE_CA_BUNDLE/REQUESTS_CA_BUNDLE) to the CA file')
    if names & _CONNECTION_CLASS_NAMES:
        return AzureApiError(_shorten(_connection_text(chain)), service=service, kind='connection')
    return None


def _unavailable_hint(message: str) -> Optional[str]:
    lower = message.lower()
    if 'azure cli' in lower or "'az login'" in lower or 'az login' in lower:
        return "log in with 'az login' first, or choose another auth_source"
    if 'managed identity' in lower or 'imds' in lower:
        return 'no managed identity is available here: choose another auth_source'
    return None


# --- helpers ------------------------------------------------------------------------------------------------------

def _header(headers: Any, name: str) -> Optional[str]:
    """Case-insensitive header lookup on dicts, httpx.Headers and azure-core's case-insensitive dicts."""
    if not headers:
        return None
    try:
        value = headers.get(name)
        if value is None:
            value = headers.get(name.lower())
        if value is not None:
            return str(value)
        items = headers.items()
    except (AttributeError, TypeError):
        return None
    lname = name.lower()
    for key, value in items:
        if str(key).lower() == lname:
            return str(value)
    return None


def parse_retry_after(headers: Any, now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from ``retry-after-ms``, ``x-ms-retry-after-ms`` or ``Retry-After`` (seconds or HTTP date)."""
    for name in ('retry-after-ms', 'x-ms-retry-after-ms'):
        value = _header(headers, name)
        if value:
            try:
                return max(0.0, float(value) / 1000.0)
            except ValueError:
                pass
    value = _header(headers, 'retry-after')
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils  # only for an HTTP-date Retry-After (rare); a module process rarely needs it

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _json_body(body: Any) -> Any:
    if isinstance(body, (dict, list)):
        return body
    if isinstance(body, bytes):
        body = body.decode('utf-8', 'replace')
    if isinstance(body, str) and body.strip().startswith(('{', '[')):
        try:
            return json.loads(body)
        except ValueError:
            return None
    return None


def _text(body: Any) -> str:
    if isinstance(body, bytes):
        return body.decode('utf-8', 'replace')
    return str(body)


def _response_text(response: Any) -> Optional[str]:
    if response is None:
        return None
    try:
        text = response.text()
    except Exception:  # pylint: disable=broad-exception-caught
        return None
    return text if isinstance(text, str) else None


def _shorten(text: str, limit: int = 500) -> str:
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _innermost_text(chain: list) -> str:
    """Most specific message in an exception chain, with its class name."""
    for item in reversed(chain):
        if str(item):
            return '{0}: {1}'.format(type(item).__name__, item)
    return type(chain[0]).__name__


def _connection_text(chain: list) -> str:
    """The innermost message, prefixed with the host when only an outer exception names it."""
    inner = _innermost_text(chain)
    for item in chain:
        match = re.search(_HOST_RE, str(item))
        if match and match.group(1) not in inner:
            return 'host {0}: {1}'.format(match.group(1), inner)
    return inner


def _aadsts_number(text: str) -> Optional[int]:
    match = re.search(_AADSTS_RE, text or '')
    return int(match.group(1)) if match else None


def _correlation_id(text: str) -> Optional[str]:
    match = re.search(r'Correlation ID:\s*([0-9a-fA-F-]{8,})', text or '')
    return match.group(1) if match else None


def _clean_aadsts_text(text: str) -> str:
    """Strip SDK prefixes, the AADSTS code, and the trace/correlation/timestamp trailer from an Entra description."""
    text = text or ''
    match = re.search(_AADSTS_RE, text)
    if match:
        text = text[match.end():].lstrip(': ')
    text = re.split(r'\s*Trace ID:', text)[0]
    text = text.rstrip("' \r\n")
    return _shorten(text)
