# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""The one client factory: credential, Graph (v1.0 and beta), ARM authorization, raw Graph/ARM JSON helpers.

Every SDK is imported lazily, by need, and a missing one raises ``MissingLibraryError`` (``AzureModule`` turns it
into ``missing_required_lib``):

* raw Graph requests load httpx and kiota (abstractions + http) only: the request adapter, the middleware and a
  bearer-token provider of kiota's own, not msgraph-sdk's ``GraphServiceClient`` or msgraph-core (which pull in
  azure-core's pipeline); ``graph``/``graph_beta`` load msgraph-sdk when the typed client is asked for;
* raw ARM requests load azure-core, azure-mgmt-core's ARM policy and aiohttp; never httpx or kiota;
* azure-identity (and MSAL) only when a token must come from Entra: ``credential`` is a ``CachedCredential``
  (``_token_cache.py``) that serves tokens from an in-process memo and from the token cache shared by the user's
  module processes first.

One credential is shared by all clients; ``Clients`` is an async context manager that closes everything. The SDKs'
own retries are switched off (kiota's RetryHandler is left out of the Graph middleware, azure-core gets
``retry_total=0``): retries live only in ``_retry.py``. The one exception is authentication: a token from the
shared cache that Graph or ARM refuses with 401 is dropped and the request is sent once more with a new token.

``SharedClients``: in a persistent worker, the calls with the same settings that start within a minute of each other
share one ``Clients`` (connections, tokens, what is read once per run), each with its own warnings.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import hashlib
import importlib
import json
import logging
import os
import ssl
import sys
import time
import traceback
import uuid
from typing import Any, Awaitable, Callable, Iterable, Iterator, Mapping, Optional
from urllib.parse import quote, urlencode, urlsplit

from ansible_collections.oidc_federation.azure.plugins.module_utils._auth import AuthSettings
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import (
    AzureApiError,
    exception_chain as _chain,
    MissingLibraryError,
    ValidationError,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._retry import RetryPolicy, run_with_retry
from ansible_collections.oidc_federation.azure.plugins.module_utils._private_files import default_cache_dir
from ansible_collections.oidc_federation.azure.plugins.module_utils._token_cache import (
    CACHEABLE_SOURCES,
    CachedCredential,
    TokenCache,
    key_for,
    read_token_file,
)

USER_AGENT = 'oidc_federation.azure'
GRAPH_VERSIONS = ('v1.0', 'beta')
REQUEST_TIMEOUT = 100.0
CONNECT_TIMEOUT = 30.0
MAX_PAGES = 1000
_CLIENT_PACER = object()  # graph_request's default: the client's own graph_pacer
SHARED_CLIENTS_MAX_AGE = 60.0  # seconds during which new calls of a persistent worker reuse one Clients (SharedClients)
# The warnings of the call running in this context, when its Clients serve other calls too (SharedClients.lease).
_CALL_WARNINGS: 'contextvars.ContextVar[Optional[list]]' = contextvars.ContextVar('oidc_call_warnings', default=None)

# Python module -> pip package, for ``missing_required_lib``.
PACKAGES = {
    'azure.identity.aio': 'azure-identity',
    'azure.core': 'azure-core',
    'azure.core.rest': 'azure-core',
    'azure.core.pipeline.policies': 'azure-core',
    'azure.core.pipeline.transport': 'azure-core',
    'azure.mgmt.core.policies': 'azure-mgmt-core',
    'azure.mgmt.authorization.aio': 'azure-mgmt-authorization',
    'aiohttp': 'aiohttp',
    'httpx': 'httpx',
    'msgraph': 'msgraph-sdk',
    'kiota_abstractions.authentication': 'msgraph-sdk',
    'kiota_abstractions.request_information': 'msgraph-sdk',
    'kiota_abstractions.method': 'msgraph-sdk',
    'kiota_abstractions.native_response_handler': 'msgraph-sdk',
    'kiota_http.httpx_request_adapter': 'msgraph-sdk',
    'kiota_http.kiota_client_factory': 'msgraph-sdk',
    'kiota_http.middleware': 'msgraph-sdk',
    'kiota_http.middleware.options': 'msgraph-sdk',
}

# Loggers of the SDKs. A NullHandler keeps Python's last-resort handler from printing their warnings (which may
# quote service answers) to the module's stderr.
SDK_LOGGERS = ('azure', 'msal', 'httpx', 'httpcore', 'kiota_abstractions', 'kiota_http', 'kiota_authentication_azure',
               'msgraph', 'msgraph_core', 'aiohttp', 'urllib3')


def load_sdk(module_name: str) -> Any:
    """Import ``module_name`` or raise ``MissingLibraryError`` naming its pip package, with the traceback."""
    if 'httpx' not in sys.modules:
        # httpx (imported by kiota-http too) imports its command-line client in its package __init__: click, rich
        # and pygments when they are installed, about half of httpx's import time, for a CLI a module never runs. A
        # None entry in sys.modules makes that one import fail, and httpx then defines a stub ``main`` (its own
        # fallback for when click is missing).
        sys.modules.setdefault('httpx._main', None)
    try:
        return importlib.import_module(module_name)
    except ImportError:
        raise MissingLibraryError(PACKAGES.get(module_name, module_name.split('.')[0]), traceback.format_exc()) from None


def preload_sdks() -> None:
    """Import the SDK modules that the clients of a run load as they are first used (every one in ``PACKAGES`` but
    ``msgraph``, whose ``GraphServiceClient`` no module run uses), for a process that serves runs later (the persistent
    worker). A missing one is left to the run that needs it, which reports it (``MissingLibraryError``)."""
    for name in PACKAGES:
        if name != 'msgraph':
            try:
                load_sdk(name)
            except MissingLibraryError:
                pass


def quiet_sdk_loggers() -> None:
    """Attach a NullHandler to the SDK loggers (idempotent)."""
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())


class GraphTokenProvider:
    """kiota's ``AccessTokenProvider`` over the shared credential (what kiota-authentication-azure does, without
    importing azure-core): a token only for the Graph host and only over https; a claims challenge (CAE) asks Entra
    for a new token with those claims, bypassing every cache."""

    def __init__(self, credential: Any, scope: str, allowed_hosts_validator: Any) -> None:
        self._credential = credential
        self._scope = scope
        self._validator = allowed_hosts_validator

    async def get_authorization_token(self, uri: str, additional_authentication_context: Optional[Mapping[str, Any]] = None) -> str:
        """The bearer token for ``uri`` ('' for a host that is not Graph's: kiota then sends no Authorization)."""
        if not self._validator.is_url_host_valid(uri):
            return ''
        scheme = urlsplit(uri).scheme.lower()
        if scheme != 'https':
            raise ValidationError('refusing to send a Graph token over {0}: only https is allowed'.format(scheme or 'a URL without scheme'))
        claims = (additional_authentication_context or {}).get('claims')
        if isinstance(claims, str) and claims:
            decoded = base64.b64decode(claims + '=' * (-len(claims) % 4)).decode('utf-8')
            token = await self._credential.get_token(self._scope, claims=decoded, enable_cae=True)
        else:
            token = await self._credential.get_token(self._scope)
        return token.token

    def get_allowed_hosts_validator(self) -> Any:
        """kiota's validator of the hosts that get a token."""
        return self._validator


class ApiResponse:
    """A raw Graph/ARM answer: ``status``, ``headers`` (lower-case keys) and ``data`` (parsed JSON or None)."""

    def __init__(self, status: int, headers: Mapping[str, str], data: Any) -> None:
        self.status = status
        self.headers = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
        self.data = data

    def __repr__(self) -> str:
        return 'ApiResponse(status={0}, data={1!r})'.format(self.status, self.data)


def token_file_reader(path: str) -> Callable[[], str]:
    """A callable returning the federated token in ``path``, re-read on every call (the file may be rotated)."""
    def read() -> str:
        return read_token_file(path)
    return read


def build_query(params: Optional[Mapping[str, Any]]) -> str:
    """The query string of ``params`` (None values left out; OData's ``$'(),:/@`` kept as they are)."""
    if not params:
        return ''
    return urlencode([(k, v) for k, v in params.items() if v is not None], quote_via=quote, safe="$'(),:/@")


def _decode(content: Any) -> Any:
    if not content:
        return None
    if isinstance(content, bytes):
        content = content.decode('utf-8', 'replace')
    try:
        return json.loads(content)
    except ValueError:
        return content


_SSL_CONTEXTS: dict = {}


def shared_ssl_context(cafile: str) -> ssl.SSLContext:
    """One verifying ``SSLContext`` per CA bundle for the process (its file's size and mtime in the key, so a
    replaced bundle gets a new one): building one reads and parses the bundle (tens of milliseconds), and every
    ``Clients`` of a persistent worker would pay that twice (Graph and ARM) per call."""
    try:
        st = os.stat(cafile)
        key = (cafile, st.st_size, st.st_mtime_ns)
    except OSError:
        return ssl.create_default_context(cafile=cafile)  # let ssl report the problem
    context = _SSL_CONTEXTS.get(key)
    if context is None:
        context = _SSL_CONTEXTS[key] = ssl.create_default_context(cafile=cafile)
    return context


class Clients:
    """Lazily built SDK clients for one module run, sharing one credential. Use ``async with Clients(settings)``.

    ``credential``: the async token credential every client uses (a ``CachedCredential``: memo, shared token cache,
    then ``identity_credential``, the azure-identity credential, built only when Entra must be asked);
    ``graph``/``graph_beta``: msgraph ``GraphServiceClient`` on ``/v1.0`` and ``/beta``;
    ``authorization(subscription_id)``: ARM ``AuthorizationManagementClient``; ``graph_request``/``graph_list`` and
    ``arm_request``/``arm_list``: raw JSON on the same pipelines; ``call(...)``: ``run_with_retry`` with this run's
    ``retry_policy``; ``warnings``: what the module should report (e.g. a token cache it could not use).
    """

    def __init__(self, settings: AuthSettings, *, retry_policy: Optional[RetryPolicy] = None,
                 user_agent: str = USER_AGENT, credential: Any = None, graph_transport: Any = None,
                 arm_transport: Any = None, graph_pacer: Any = None) -> None:
        """``credential``: an async token credential to use instead of building one from ``settings`` (it is closed
        with the clients, and never uses the shared token cache). ``graph_transport``: an httpx async transport for
        Graph; ``arm_transport``: an azure-core async transport for ARM (the SDK client and the raw pipeline). Both
        default to the network. ``graph_pacer``: a ``_pacing.GraphPacer`` that ``graph_request`` (and so
        ``graph_list`` and the ``$batch`` executor of ``_batch.py``) waits on before every request and feeds every
        answer to; None: no pacing."""
        self.settings = settings
        self.retry_policy = retry_policy or RetryPolicy(replication_timeout=settings.replication_timeout)
        self.graph_pacer = graph_pacer
        self.user_agent = user_agent
        self._warnings: list = []
        self._graph_transport = graph_transport
        self._arm_transport = arm_transport
        self._injected_credential = credential
        self._credential = None
        self._graph_http = None
        self._graph_auth = None
        self._graph_adapters = {}
        self._graph_clients = {}
        self._authorization = {}
        self._arm_pipeline = None
        self._retired = []
        self._closed = False
        quiet_sdk_loggers()

    @property
    def warnings(self) -> list:
        """What the module should report: with ``SharedClients``, those of the call running in this context only."""
        call = _CALL_WARNINGS.get()
        return self._warnings if call is None else call

    async def __aenter__(self) -> 'Clients':
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every client that was built, then the credential. Errors while closing are ignored."""
        if self._closed:
            return
        self._closed = True
        closers = [c.close for c in self._authorization.values()]
        closers.extend(p.close for p in self._retired)
        if self._arm_pipeline is not None:
            closers.append(self._arm_pipeline.close)
        if self._graph_http is not None:
            closers.append(self._graph_http.aclose)
        if self._injected_credential is not None:
            closers.append(self._injected_credential.close)
        elif self._credential is not None:
            closers.append(self._credential.close)
        for closer in closers:
            try:
                await closer()
            except Exception:  # pylint: disable=broad-exception-caught
                pass

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError('Clients is closed')

    # --- credential ---------------------------------------------------------------------------------------------

    @property
    def credential(self) -> Any:
        """The async token credential shared by every client (``get_token(*scopes)``): a ``CachedCredential`` over
        ``identity_credential``, with the shared token cache when ``settings.token_cache`` is on and the auth source
        is cached. Building it imports nothing."""
        self._check_open()
        if self._credential is None:
            if self._injected_credential is not None:
                self._credential = CachedCredential(lambda: self._injected_credential)
            else:
                self._credential = CachedCredential(self._build_credential, cache=self._shared_cache(),
                                                    key_of=lambda scope: key_for(self.settings, scope), warn=self._warn)
        return self._credential

    @property
    def identity_credential(self) -> Any:
        """The azure-identity async credential for ``settings.auth_source`` (or the injected one), built now if it
        was not yet (this imports azure-identity)."""
        return self.credential.inner

    @property
    def token_cache(self) -> Optional[TokenCache]:
        """The shared token cache this run uses (None when off or not applicable to the auth source)."""
        return self._shared_cache()

    def _shared_cache(self) -> Optional[TokenCache]:
        s = self.settings
        if self._injected_credential is not None or not getattr(s, 'token_cache', False) or s.auth_source not in CACHEABLE_SOURCES:
            return None
        return TokenCache(getattr(s, 'token_cache_dir', None) or default_cache_dir())

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def _transport_kwargs(self) -> dict:
        return {'connection_verify': self.settings.ca_bundle} if self.settings.ca_bundle else {}

    def _arm_transport_kwargs(self) -> dict:
        return {'transport': self._arm_transport} if self._arm_transport is not None else self._transport_kwargs()

    def _build_credential(self) -> Any:
        identity = load_sdk('azure.identity.aio')
        s = self.settings
        if s.auth_source != 'cli':
            load_sdk('aiohttp')  # azure-identity's async transport; imported by the SDK only at the first request
        common = dict(self._transport_kwargs(), retry_total=0)
        if s.auth_source == 'client_secret':
            return identity.ClientSecretCredential(
                s.tenant_id, s.client_id, s.client_secret, authority=s.cloud.authority_host,
                disable_instance_discovery=s.custom_authority, **common)
        if s.auth_source == 'federated_token':
            token = s.federated_token
            func = (lambda: token) if token else token_file_reader(s.federated_token_file)
            return identity.ClientAssertionCredential(s.tenant_id, s.client_id, func, authority=s.cloud.authority_host, **common)
        if s.auth_source == 'managed_identity':
            return identity.ManagedIdentityCredential(client_id=s.client_id, **self._transport_kwargs())
        if s.auth_source == 'cli':
            return identity.AzureCliCredential(tenant_id=s.tenant_id or '')
        raise ValidationError('unsupported auth_source {0!r}'.format(s.auth_source))

    # --- Microsoft Graph ----------------------------------------------------------------------------------------

    @property
    def graph(self) -> Any:
        """msgraph-sdk ``GraphServiceClient`` on ``{graph_endpoint}/v1.0``."""
        return self._graph_client('v1.0')

    @property
    def graph_beta(self) -> Any:
        """msgraph-sdk ``GraphServiceClient`` on ``{graph_endpoint}/beta`` (v1.0 models; beta-only properties
        such as ``claimsMatchingExpression`` travel in ``additional_data``)."""
        return self._graph_client('beta')

    def _graph_client(self, version: str) -> Any:
        self._check_open()
        if version not in self._graph_clients:
            msgraph = load_sdk('msgraph')
            self._graph_clients[version] = msgraph.GraphServiceClient(request_adapter=self.graph_adapter(version))
        return self._graph_clients[version]

    def graph_adapter(self, version: str = 'v1.0') -> Any:
        """The kiota request adapter (``HttpxRequestAdapter``) of ``version`` (``v1.0`` or ``beta``), shared by the
        typed client and raw calls."""
        self._check_open()
        if version not in GRAPH_VERSIONS:
            raise ValidationError('Graph version must be one of {0}, got {1!r}'.format(', '.join(GRAPH_VERSIONS), version))
        if version not in self._graph_adapters:
            kiota_http = load_sdk('kiota_http.httpx_request_adapter')
            adapter = kiota_http.HttpxRequestAdapter(self._graph_auth_provider(), http_client=self._graph_http_client())
            adapter.base_url = '{0}/{1}'.format(self.settings.cloud.graph_endpoint, version)
            self._graph_adapters[version] = adapter
        return self._graph_adapters[version]

    def _graph_auth_provider(self) -> Any:
        """kiota's bearer-token authentication provider with ``GraphTokenProvider`` (tokens for the Graph host only)."""
        if self._graph_auth is None:
            auth = load_sdk('kiota_abstractions.authentication')
            host = urlsplit(self.settings.cloud.graph_endpoint).hostname
            provider = GraphTokenProvider(self.credential, self.settings.cloud.graph_scope, auth.AllowedHostsValidator([host]))
            self._graph_auth = auth.BaseBearerTokenAuthenticationProvider(provider)
        return self._graph_auth

    def _graph_http_client(self) -> Any:
        """httpx client with kiota's default middleware minus its RetryHandler."""
        if self._graph_http is None:
            httpx = load_sdk('httpx')
            factory = load_sdk('kiota_http.kiota_client_factory').KiotaClientFactory
            retry_handler = load_sdk('kiota_http.middleware').RetryHandler
            verify = shared_ssl_context(self.settings.ca_bundle) if self.settings.ca_bundle else True
            extra = {'transport': self._graph_transport} if self._graph_transport is not None else {}
            client = httpx.AsyncClient(timeout=httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT), verify=verify,
                                       headers={'User-Agent': self.user_agent}, **extra)
            middleware = [m for m in factory.get_default_middleware(None) if not isinstance(m, retry_handler)]
            self._graph_http = factory.create_with_custom_middleware(middleware, client=client)
        return self._graph_http

    def graph_url(self, path: str, version: str = 'v1.0', params: Optional[Mapping[str, Any]] = None) -> str:
        """Absolute Graph URL for ``path`` (relative to ``/{version}``, or an absolute ``@odata.nextLink`` on the Graph host)."""
        return self._url(path, '{0}/{1}'.format(self.settings.cloud.graph_endpoint, version), 'graph_endpoint', params)

    async def graph_request(self, method: str, path: str, *, version: str = 'v1.0', params: Optional[Mapping[str, Any]] = None,
                            json_body: Any = None, headers: Optional[Mapping[str, str]] = None,
                            pacer: Any = _CLIENT_PACER) -> ApiResponse:
        """One raw Graph request through the SDK's pipeline (same auth, TLS and middleware).

        ``path`` is relative to ``/{version}`` (e.g. ``/applications(uniqueName='x')``) or an absolute nextLink.
        Returns an ``ApiResponse``; raises ``AzureApiError`` (service ``graph``) for non-2xx answers. No retry here:
        wrap the call in ``Clients.call``/``run_with_retry`` (only a 401 answer to a token from the shared token
        cache is sent once more, with a new token). ``pacer`` (default: ``graph_pacer``; None: none) is waited on
        before each send and told each answer.
        """
        pacer = self.graph_pacer if pacer is _CLIENT_PACER else pacer
        abstractions = load_sdk('kiota_abstractions.request_information')
        methods = load_sdk('kiota_abstractions.method').Method
        native = load_sdk('kiota_abstractions.native_response_handler').NativeResponseHandler
        option = load_sdk('kiota_http.middleware.options').ResponseHandlerOption
        url = self.graph_url(path, version, params)
        label = '{0} {1}'.format(method.upper(), _path_only(url))
        for attempt in (1, 2):
            info = abstractions.RequestInformation()
            info.http_method = methods[method.upper()]
            info.url = url
            info.headers.try_add('Accept', 'application/json')
            # Graph echoes it in its answer and Microsoft support can trace it (msgraph-core's telemetry sends one too).
            info.headers.try_add('client-request-id', str(uuid.uuid4()))
            for name, value in (headers or {}).items():
                info.headers.add(name, value)
            if json_body is not None:
                info.content = json.dumps(json_body).encode('utf-8')
                info.headers.try_add('Content-Type', 'application/json')
            info.add_request_options([option(native())])
            cost = await pacer.acquire(method, url) if pacer is not None else None
            try:
                with _labelled_errors('graph', label, self._graph_token_side):
                    response = await self.graph_adapter(version).send_primitive_async(info, 'bytes', None)
            except BaseException:
                if pacer is not None:
                    pacer.release(cost)
                raise
            if pacer is not None:
                pacer.observe(method, url, response.status_code, response.headers, cost)
            if not (response.status_code == 401 and attempt == 1 and self.credential.refused(self.settings.cloud.graph_scope)):
                break
        if response.status_code >= 400:
            raise AzureApiError.from_response('graph', response.status_code, response.headers, response.content, request=label)
        return ApiResponse(response.status_code, response.headers, _decode(response.content))

    async def graph_list(self, path: str, *, version: str = 'v1.0', params: Optional[Mapping[str, Any]] = None,
                         headers: Optional[Mapping[str, str]] = None) -> list:
        """GET a Graph collection and follow ``@odata.nextLink``; return all ``value`` items."""
        return await self._list(lambda url, first: self.graph_request(
            'GET', url, version=version, params=params if first else None, headers=headers), path, '@odata.nextLink')

    # --- Azure Resource Manager ---------------------------------------------------------------------------------

    def authorization(self, subscription_id: Optional[str] = None) -> Any:
        """``azure.mgmt.authorization.aio.AuthorizationManagementClient`` for ``subscription_id`` (default: the option).

        Operations addressed by ``scope`` do not use the subscription, but the SDK requires one.
        """
        self._check_open()
        sub = subscription_id or self.settings.subscription_id
        if not sub:
            raise ValidationError('this operation needs subscription_id (or AZURE_SUBSCRIPTION_ID)')
        if sub not in self._authorization:
            mod = load_sdk('azure.mgmt.authorization.aio')
            load_sdk('aiohttp')
            s = self.settings
            self._authorization[sub] = mod.AuthorizationManagementClient(
                self.credential, sub, base_url=s.cloud.resource_manager_endpoint, credential_scopes=[s.cloud.arm_scope],
                retry_total=0, user_agent=self.user_agent, **self._arm_transport_kwargs())
        return self._authorization[sub]

    def _arm_client(self) -> Any:
        if self._arm_pipeline is None:
            core = load_sdk('azure.core')
            policies = load_sdk('azure.core.pipeline.policies')
            transport = load_sdk('azure.core.pipeline.transport')
            load_sdk('aiohttp')
            arm_policies = load_sdk('azure.mgmt.core.policies')
            s = self.settings
            self._arm_pipeline = core.AsyncPipelineClient(
                base_url=s.cloud.resource_manager_endpoint,
                policies=[
                    policies.RequestIdPolicy(),
                    policies.HeadersPolicy(),
                    policies.UserAgentPolicy(user_agent=self.user_agent),
                    policies.ProxyPolicy(),
                    arm_policies.AsyncARMChallengeAuthenticationPolicy(self.credential, s.cloud.arm_scope),
                ],
                transport=self._arm_transport or self._arm_aiohttp_transport(transport),
            )
        return self._arm_pipeline

    def _arm_aiohttp_transport(self, transport: Any) -> Any:
        """azure-core's aiohttp transport for the raw ARM pipeline. With ``ca_bundle``, ONE SSL context on the
        connector: given the bundle's path (``connection_verify``), azure-core builds a new ``SSLContext`` for every
        request, so aiohttp never reuses a connection (its pool key holds the context) - every request would pay a
        TLS handshake and a read of the bundle, and the idle connections would pile up (memory growing with the
        number of requests)."""
        if not self.settings.ca_bundle:
            return transport.AioHttpTransport()
        aiohttp = load_sdk('aiohttp')
        context = shared_ssl_context(self.settings.ca_bundle)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context), trust_env=True,
                                        cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        return transport.AioHttpTransport(session=session, session_owner=True)

    def arm_url(self, path: str, params: Optional[Mapping[str, Any]] = None) -> str:
        """Absolute ARM URL for ``path`` (``/subscriptions/...``, or an absolute ``nextLink`` on the ARM host)."""
        return self._url(path, self.settings.cloud.resource_manager_endpoint, 'resource_manager_endpoint', params)

    async def arm_request(self, method: str, path: str, *, api_version: Optional[str], params: Optional[Mapping[str, Any]] = None,
                          json_body: Any = None, headers: Optional[Mapping[str, str]] = None) -> ApiResponse:
        """One raw ARM request on an azure-core async pipeline sharing the credential (e.g. resource groups).

        ``api_version`` is added as ``api-version`` (pass None for a nextLink that already has it). Raises
        ``AzureApiError`` (service ``arm``) for non-2xx answers. No retry here: wrap in ``Clients.call`` (only a 401
        answer to a token from the shared token cache is sent once more, with a new token).
        """
        rest = load_sdk('azure.core.rest')
        query = dict(params or {})
        if api_version:
            query['api-version'] = api_version
        url = self.arm_url(path, query)
        label = '{0} {1}'.format(method.upper(), _path_only(url))
        for attempt in (1, 2):
            request = rest.HttpRequest(method.upper(), url, json=json_body, headers=dict(headers or {}))
            with _labelled_errors('arm', label, self._arm_token_side):
                response = await self._arm_client().send_request(request)
                await response.read()
            if not (response.status_code == 401 and attempt == 1 and self.credential.refused(self.settings.cloud.arm_scope)):
                break
            # The pipeline's bearer policy holds the refused token: requests from now on use a new pipeline (the old
            # one may still be in use by concurrent requests; it is closed with the clients).
            self._retired.append(self._arm_pipeline)
            self._arm_pipeline = None
        if response.status_code >= 400:
            raise AzureApiError.from_response('arm', response.status_code, response.headers, response.text(), request=label)
        return ApiResponse(response.status_code, response.headers, _decode(response.text()))

    async def arm_list(self, path: str, *, api_version: str, params: Optional[Mapping[str, Any]] = None) -> list:
        """GET an ARM collection and follow ``nextLink``; return all ``value`` items."""
        return await self._list(lambda url, first: self.arm_request(
            'GET', url, api_version=api_version if first else None, params=params if first else None), path, 'nextLink')

    # --- shared helpers ---------------------------------------------------------------------------------------------

    def _graph_token_side(self, exc: BaseException) -> bool:
        """Graph itself goes through httpx: an azure-core/aiohttp transport failure comes from the credential."""
        modules = {type(e).__module__.split('.')[0] for e in _chain(exc)}
        return bool(modules & {'azure', 'aiohttp'}) and 'httpx' not in modules and 'httpcore' not in modules

    def _arm_token_side(self, exc: BaseException) -> bool:
        """ARM and the credential share aiohttp: tell them apart by the host, when the endpoints differ."""
        authority = urlsplit(self.settings.cloud.authority_host).netloc.lower()
        arm = urlsplit(self.settings.cloud.resource_manager_endpoint).netloc.lower()
        text = ' '.join(str(e) for e in _chain(exc)).lower()
        return authority != arm and authority in text and arm not in text

    async def call(self, operation: str, fn: Callable[..., Awaitable[Any]], *args: Any, target: Optional[str] = None,
                   service: Optional[str] = None, retry_not_found: bool = False, idempotent: bool = True,
                   lag_codes: Iterable[str] = (), **kwargs: Any) -> Any:
        """``run_with_retry(self.retry_policy, operation, fn, *args, ...)``: the way modules call Graph/ARM."""
        return await run_with_retry(self.retry_policy, operation, fn, *args, target=target, service=service,
                                    retry_not_found=retry_not_found, idempotent=idempotent, lag_codes=lag_codes, **kwargs)

    def _url(self, path: str, base: str, option: str, params: Optional[Mapping[str, Any]]) -> str:
        if '://' in path:
            want, got = urlsplit(base), urlsplit(path)
            if (got.scheme, got.netloc.lower()) != (want.scheme, want.netloc.lower()):
                raise ValidationError('refusing to send a token to {0}: it is not the configured {1} {2}'.format(
                    got.netloc, option, want.netloc))
            url = path
        else:
            url = base + ('' if path.startswith('/') else '/') + path
        query = build_query(params)
        if query:
            url += ('&' if '?' in url else '?') + query
        return url

    async def _list(self, fetch: Callable[[str, bool], Awaitable[ApiResponse]], path: str, next_key: str) -> list:
        items, url, first = [], path, True
        for _page in range(MAX_PAGES):
            response = await fetch(url, first)
            data = response.data if isinstance(response.data, dict) else {}
            items.extend(data.get('value') or [])
            url, first = data.get(next_key), False
            if not url:
                return items
        raise AzureApiError('more than {0} pages'.format(MAX_PAGES), operation='list {0}'.format(path), kind='http')


@contextlib.contextmanager
def _labelled_errors(service: str, label: str, token_side: Callable[[BaseException], bool]) -> Iterator[None]:
    """Turn SDK/transport exceptions of a raw request into ``AzureApiError`` naming the service and the request.

    Token failures are labelled ``entra`` (``token_side(exc)`` tells a connection failure on the way to the
    authority); unclassified exceptions propagate unchanged.
    """
    try:
        yield
    except (AzureApiError, ValidationError, MissingLibraryError):
        raise
    except Exception as exc:  # pylint: disable=broad-exception-caught
        err = AzureApiError.from_exception(exc, service=service)
        if err is None:
            raise
        owner = 'entra' if err.kind in ('connection', 'tls') and token_side(exc) else err.service
        raise AzureApiError(err.message, service=owner, status=err.status, code=err.code, details=err.details,
                            retry_after=err.retry_after, request_id=err.request_id, kind=err.kind, hint=err.hint,
                            request=label) from exc


def _path_only(url: str) -> str:
    parts = urlsplit(url)
    return parts.path


class SharedClients:
    """One ``Clients`` per settings for the calls a persistent worker (``_worker.py``) runs, instead of one per call.

    ``lease(settings)`` is what a module's core enters (``async with``) in place of ``Clients(settings)``: calls
    with the same settings that start within ``max_age`` seconds of the first one get the same ``Clients``, so they
    share its connections, its access tokens and what it has read once per run (role definitions, scope checks and
    the operator's identity, ``_arm.py``; a bulk call shares them for its whole run in the same way; failed reads are
    never kept). A call that starts later gets a new ``Clients``; an old one is closed once its last call has left.
    Each call sees only its own warnings. ``aclose()`` closes everything (the worker's exit).
    """

    def __init__(self, make: Callable[[AuthSettings], 'Clients'], max_age: float = SHARED_CLIENTS_MAX_AGE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._make = make
        self._max_age = max_age
        self._clock = clock
        self._current: dict = {}   # settings key -> _SharedEntry
        self._entries: list = []   # every entry not closed yet, current or retired

    def lease(self, settings: AuthSettings) -> '_Lease':
        return _Lease(self, settings)

    async def take(self, settings: AuthSettings) -> '_SharedEntry':
        """The entry a call starting now uses (``_Lease``; ``give_back`` when it is done)."""
        key = _settings_key(settings)
        entry = old = self._current.get(key)
        if entry is None or self._clock() - entry.born > self._max_age:
            entry = self._current[key] = _SharedEntry(key, self._make(settings), self._clock())
            self._entries.append(entry)
        entry.users += 1
        if old is not None and old is not entry and old.users == 0:  # too old and idle: closed now (else by its
            self._entries.remove(old)                                  # last call); no longer current, so no other
            try:                                                       # call can take it while it closes
                await old.clients.close()
            except BaseException:  # cancelled meanwhile: this call will not use (nor give back) the new entry
                entry.users -= 1
                raise
        return entry

    async def give_back(self, entry: '_SharedEntry') -> None:
        entry.users -= 1
        if entry.users == 0 and self._current.get(entry.key) is not entry:
            self._entries.remove(entry)
            await entry.clients.close()

    async def aclose(self) -> None:
        entries, self._entries, self._current = self._entries, [], {}
        for entry in entries:
            await entry.clients.close()


class _SharedEntry:
    def __init__(self, key: str, clients: 'Clients', born: float) -> None:
        self.key = key
        self.clients = clients
        self.born = born
        self.users = 0


class _Lease:
    """``async with`` one call's use of a ``SharedClients`` entry (its warnings kept apart from other calls')."""

    def __init__(self, owner: SharedClients, settings: AuthSettings) -> None:
        self._owner = owner
        self._settings = settings
        self._entry: Optional[_SharedEntry] = None
        self._token: Any = None

    async def __aenter__(self) -> 'Clients':
        self._entry = await self._owner.take(self._settings)
        self._token = _CALL_WARNINGS.set([])
        return self._entry.clients

    async def __aexit__(self, *exc_info: Any) -> None:
        _CALL_WARNINGS.reset(self._token)
        await self._owner.give_back(self._entry)


def _settings_key(settings: AuthSettings) -> str:
    """A digest of everything in ``settings`` (secrets included, so that other credentials never share clients)."""
    def plain(value: Any) -> Any:
        if hasattr(value, '__dict__'):  # the cloud's endpoints
            return sorted((name, plain(item)) for name, item in vars(value).items())
        return repr(value)
    return hashlib.sha256(repr(plain(settings)).encode('utf-8', 'surrogateescape')).hexdigest()
