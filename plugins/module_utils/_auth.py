# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""Shared authentication/connection options: their pure resolution.

The options themselves (``AUTH_ARGSPEC``, documented by the ``oidc_federation.azure.auth`` doc fragment) are in
``_auth_spec``; ``AUTH_CONSTRAINTS`` here are the checks that travel with them (``_module.AUTH_SPEC``). ``resolve_auth(params)`` turns validated
parameters into an ``AuthSettings``: the concrete credential to build, the cloud's endpoints and token scopes.
It imports no SDK and touches no network, so bad options fail before anything heavy is loaded; its errors name
the missing inputs together with the environment variables that could supply them.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.oidc_federation.azure.plugins.module_utils._auth_spec import (
    AUTH_SOURCES,
    CLOUD_ALIASES,
    CLOUD_NAMES,
    DEFAULT_CLOUD,
    DEFAULT_REPLICATION_TIMEOUT,
    ENV_VARS,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import ValidationError, register_secret

# What ``auth_source: auto`` tries, in order. ``env`` means azure-identity's EnvironmentCredential: a client secret.
AUTO_ORDER = ('client_secret', 'federated_token', 'managed_identity', 'cli')

# Environment variables that reveal a managed identity endpoint (App Service, Functions, Container Apps, Arc,
# Service Fabric, Cloud Shell). A plain VM only has IMDS, which cannot be detected without a request: use
# ``auth_source: managed_identity`` there.
MANAGED_IDENTITY_ENV_VARS = ('IDENTITY_ENDPOINT', 'MSI_ENDPOINT')

MAX_REPLICATION_TIMEOUT = 3600


class CloudEnvironment:
    """Endpoints and token scopes of one Azure cloud. Endpoints have no trailing slash."""

    def __init__(self, name: str, authority_host: str, graph_endpoint: str, resource_manager_endpoint: str,
                 graph_scope: str, arm_scope: str) -> None:
        self.name = name
        self.authority_host = authority_host
        self.graph_endpoint = graph_endpoint
        self.resource_manager_endpoint = resource_manager_endpoint
        self.graph_scope = graph_scope
        self.arm_scope = arm_scope

    def __repr__(self) -> str:
        return 'CloudEnvironment({0!r}, authority_host={1!r}, graph_endpoint={2!r}, resource_manager_endpoint={3!r})'.format(
            self.name, self.authority_host, self.graph_endpoint, self.resource_manager_endpoint)


CLOUDS = {
    'AzurePublicCloud': CloudEnvironment(
        'AzurePublicCloud', 'https://login.microsoftonline.com', 'https://graph.microsoft.com', 'https://management.azure.com',
        'https://graph.microsoft.com/.default', 'https://management.azure.com/.default'),
    'AzureChinaCloud': CloudEnvironment(
        'AzureChinaCloud', 'https://login.chinacloudapi.cn', 'https://microsoftgraph.chinacloudapi.cn',
        'https://management.chinacloudapi.cn',
        'https://microsoftgraph.chinacloudapi.cn/.default', 'https://management.chinacloudapi.cn/.default'),
    'AzureUSGovernment': CloudEnvironment(
        'AzureUSGovernment', 'https://login.microsoftonline.us', 'https://graph.microsoft.us', 'https://management.usgovcloudapi.net',
        'https://graph.microsoft.us/.default', 'https://management.usgovcloudapi.net/.default'),
}


class AuthSettings:
    """Resolved authentication and connection settings (the input of ``Clients``).

    ``auth_source`` is concrete (``client_secret``, ``federated_token``, ``managed_identity`` or ``cli``);
    ``requested_source`` is what the user asked for; ``reason`` explains how ``auto``/``env`` chose.
    ``federated_token_file`` is re-read whenever a new token is needed (``federated_token`` wins when both are set).
    ``cloud`` carries the endpoints after overrides; ``custom_authority`` is True when ``authority_host`` is not the
    cloud's own (instance discovery is then disabled). ``token_cache`` says whether access tokens are shared with the
    user's other module processes (``_token_cache.py``), in ``token_cache_dir`` (None: the default directory).
    """

    def __init__(self, *, auth_source: str, requested_source: str, reason: str, cloud: CloudEnvironment,
                 custom_authority: bool, tenant_id: Optional[str] = None, client_id: Optional[str] = None,
                 client_secret: Optional[str] = None, federated_token: Optional[str] = None,
                 federated_token_file: Optional[str] = None, subscription_id: Optional[str] = None,
                 ca_bundle: Optional[str] = None, replication_timeout: float = DEFAULT_REPLICATION_TIMEOUT,
                 token_cache: bool = True, token_cache_dir: Optional[str] = None) -> None:
        self.auth_source = auth_source
        self.requested_source = requested_source
        self.reason = reason
        self.cloud = cloud
        self.custom_authority = custom_authority
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.federated_token = federated_token
        self.federated_token_file = federated_token_file
        self.subscription_id = subscription_id
        self.ca_bundle = ca_bundle
        self.replication_timeout = replication_timeout
        self.token_cache = token_cache
        self.token_cache_dir = token_cache_dir

    def __repr__(self) -> str:  # never shows secrets
        return 'AuthSettings(auth_source={0!r}, tenant_id={1!r}, client_id={2!r}, cloud={3!r}, reason={4!r})'.format(
            self.auth_source, self.tenant_id, self.client_id, self.cloud.name, self.reason)

    def summary(self) -> dict:
        """JSON-safe description without secrets (for results and debugging)."""
        return {
            'auth_source': self.auth_source, 'requested_source': self.requested_source, 'reason': self.reason,
            'tenant_id': self.tenant_id, 'client_id': self.client_id, 'subscription_id': self.subscription_id,
            'cloud_environment': self.cloud.name, 'authority_host': self.cloud.authority_host,
            'graph_endpoint': self.cloud.graph_endpoint, 'resource_manager_endpoint': self.cloud.resource_manager_endpoint,
            'federated_token_file': self.federated_token_file, 'ca_bundle': self.ca_bundle,
            'token_cache': self.token_cache, 'token_cache_dir': self.token_cache_dir,
        }


def describe_option(option: str) -> str:
    """``"tenant_id (or AZURE_TENANT_ID/AZURE_TENANT)"``."""
    names = ENV_VARS.get(option)
    return '{0} (or {1})'.format(option, '/'.join(names)) if names else option


def _given(params: Mapping[str, Any], option: str) -> bool:
    value = params.get(option)
    return value is not None and str(value).strip() != ''


def _missing_for(source: str, params: Mapping[str, Any]) -> list:
    """Descriptions of the inputs ``source`` needs but does not have ([] when complete)."""
    missing = []
    if source in ('client_secret', 'federated_token'):
        missing += [describe_option(o) for o in ('tenant_id', 'client_id') if not _given(params, o)]
    if source == 'client_secret' and not _given(params, 'client_secret'):
        missing.append(describe_option('client_secret'))
    if source == 'federated_token' and not (_given(params, 'federated_token') or _given(params, 'federated_token_file')):
        missing.append('{0} or {1}'.format(describe_option('federated_token'), describe_option('federated_token_file')))
    return missing


def _managed_identity_detected(environ: Mapping[str, str]) -> Optional[str]:
    for name in MANAGED_IDENTITY_ENV_VARS:
        if environ.get(name):
            return name
    return None


def choose_auth_source(params: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None) -> Tuple[str, str]:
    """Pick the concrete auth source for ``params['auth_source']``; return ``(source, reason)``.

    ``auto`` tries, in order: a client secret (tenant_id, client_id, client_secret: azure-identity's environment
    credential), a federated token (tenant_id, client_id, federated_token or federated_token_file), a managed
    identity (only when the environment exposes its endpoint), then the Azure CLI login. ``env`` is the first two
    only. Raises ``ValidationError`` naming what is missing when an explicit source is incomplete.
    """
    environ = os.environ if environ is None else environ
    requested = params.get('auth_source') or 'auto'
    if requested not in AUTH_SOURCES:
        raise ValidationError('auth_source must be one of {0}, got {1!r}'.format(', '.join(AUTH_SOURCES), requested))
    if requested in ('client_secret', 'federated_token'):
        missing = _missing_for(requested, params)
        if missing:
            raise ValidationError('auth_source={0} needs {1}'.format(requested, ', '.join(missing)))
        return requested, 'auth_source={0}'.format(requested)
    if requested in ('managed_identity', 'cli'):
        return requested, 'auth_source={0}'.format(requested)

    skipped = []
    candidates = AUTO_ORDER if requested == 'auto' else AUTO_ORDER[:2]
    for source in candidates:
        if source in ('client_secret', 'federated_token'):
            missing = _missing_for(source, params)
            if not missing:
                return source, _reason(requested, source, skipped)
            skipped.append('{0}: missing {1}'.format(source, ', '.join(missing)))
        elif source == 'managed_identity':
            marker = _managed_identity_detected(environ)
            if marker:
                return source, _reason(requested, source, skipped, detail='{0} is set'.format(marker))
            skipped.append('managed_identity: none of {0} is set'.format('/'.join(MANAGED_IDENTITY_ENV_VARS)))
        else:
            return source, _reason(requested, source, skipped)
    raise ValidationError('auth_source=env needs a client secret or a federated token; {0}'.format('; '.join(skipped)))


def _reason(requested: str, source: str, skipped: list, detail: Optional[str] = None) -> str:
    text = 'auth_source={0} chose {1}'.format(requested, source)
    if detail:
        text += ' ({0})'.format(detail)
    if skipped:
        text += ' after skipping ' + '; '.join(skipped)
    return text


def normalize_endpoint(option: str, value: str, strip_suffixes: Tuple[str, ...] = ()) -> str:
    """``https://host[:port][/path]`` without trailing slash; a bare ``host[:port]`` gets ``https://``; http is refused."""
    text = value.strip()
    if '://' not in text:
        text = 'https://' + text
    parts = urlsplit(text)
    if parts.scheme.lower() != 'https':
        raise ValidationError('{0} must be an https URL (the SDKs refuse to send tokens over {1}), got {2!r}'.format(
            option, parts.scheme, value))
    if not parts.hostname or parts.query or parts.fragment or parts.username or parts.password:
        raise ValidationError('{0} must look like https://host[:port][/path], got {1!r}'.format(option, value))
    try:
        parts.port  # pylint: disable=pointless-statement
    except ValueError:
        raise ValidationError('{0} has an invalid port: {1!r}'.format(option, value)) from None
    path = parts.path.rstrip('/')
    for suffix in strip_suffixes:
        if path.lower().endswith(suffix):
            path = path[:-len(suffix)].rstrip('/')
    return '{0}://{1}{2}'.format('https', parts.netloc, path)


def resolve_cloud(params: Mapping[str, Any]) -> Tuple[CloudEnvironment, bool]:
    """The cloud's endpoints with ``authority_host``/``graph_endpoint``/``resource_manager_endpoint`` overrides.

    Token scopes stay the cloud's resource identifiers: an endpoint override moves where requests go, not which
    resource the tokens are for. Returns ``(cloud, custom_authority)``.
    """
    name = params.get('cloud_environment') or DEFAULT_CLOUD
    name = CLOUD_ALIASES.get(name, name)
    if name not in CLOUDS:
        raise ValidationError('cloud_environment must be one of {0}, got {1!r}'.format(', '.join(list(CLOUD_NAMES) + list(CLOUD_ALIASES)), name))
    base = CLOUDS[name]
    authority = base.authority_host
    if _given(params, 'authority_host'):
        authority = normalize_endpoint('authority_host', params['authority_host'])
    graph = base.graph_endpoint
    if _given(params, 'graph_endpoint'):
        graph = normalize_endpoint('graph_endpoint', params['graph_endpoint'], ('/v1.0', '/beta'))
    arm = base.resource_manager_endpoint
    if _given(params, 'resource_manager_endpoint'):
        arm = normalize_endpoint('resource_manager_endpoint', params['resource_manager_endpoint'])
    cloud = CloudEnvironment(name, authority, graph, arm, base.graph_scope, base.arm_scope)
    return cloud, authority.lower() != base.authority_host.lower()


_TENANT_RE = re.compile(r'^[A-Za-z0-9.-]+$')


def resolve_auth(params: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None,
                 file_exists: Callable[[str], bool] = os.path.isfile) -> AuthSettings:
    """Validate the shared options and resolve them into ``AuthSettings``. Pure: no SDK import, no network.

    ``params`` are the module's validated parameters (env fallbacks already applied by ``AnsibleModule``).
    ``environ`` is only consulted to detect a managed identity endpoint. Raises ``ValidationError``.
    """
    source, reason = choose_auth_source(params, environ)
    tenant_id = _stripped(params.get('tenant_id'))
    if tenant_id and not _TENANT_RE.match(tenant_id):
        raise ValidationError('tenant_id may only contain letters, digits, "-" and ".", got {0!r}'.format(tenant_id))
    cloud, custom_authority = resolve_cloud(params)

    token = _stripped(params.get('federated_token')) if source == 'federated_token' else None
    token_file = _stripped(params.get('federated_token_file')) if source == 'federated_token' and not token else None
    if token_file and not file_exists(token_file):
        raise ValidationError('federated_token_file {0!r} does not exist or is not a file ({1})'.format(
            token_file, describe_option('federated_token_file')))
    ca_bundle = _stripped(params.get('ca_bundle'))
    if ca_bundle and not file_exists(ca_bundle):
        raise ValidationError('ca_bundle {0!r} does not exist or is not a file ({1})'.format(ca_bundle, describe_option('ca_bundle')))

    timeout = params.get('replication_timeout')
    timeout = DEFAULT_REPLICATION_TIMEOUT if timeout is None else timeout
    if not 0 <= int(timeout) <= MAX_REPLICATION_TIMEOUT:
        raise ValidationError('replication_timeout must be between 0 and {0} seconds, got {1}'.format(MAX_REPLICATION_TIMEOUT, timeout))

    token_cache = params.get('token_cache')
    try:
        token_cache = True if token_cache is None else boolean(token_cache, strict=True)
    except TypeError:
        raise ValidationError('token_cache must be a boolean, got {0!r} ({1})'.format(
            params.get('token_cache'), describe_option('token_cache'))) from None
    cache_dir = _stripped(params.get('token_cache_dir'))
    if cache_dir:
        cache_dir = os.path.expanduser(cache_dir)
        if not os.path.isabs(cache_dir):
            raise ValidationError('token_cache_dir must be an absolute path, got {0!r} ({1})'.format(
                params.get('token_cache_dir'), describe_option('token_cache_dir')))

    secret = params.get('client_secret') if source == 'client_secret' else None
    register_secret(secret)
    register_secret(token)
    return AuthSettings(
        auth_source=source, requested_source=params.get('auth_source') or 'auto', reason=reason, cloud=cloud,
        custom_authority=custom_authority, tenant_id=tenant_id, client_id=_stripped(params.get('client_id')),
        client_secret=secret, federated_token=token, federated_token_file=token_file,
        subscription_id=_stripped(params.get('subscription_id')), ca_bundle=ca_bundle, replication_timeout=int(timeout),
        token_cache=token_cache, token_cache_dir=cache_dir)


def check_auth_options(params: Mapping[str, Any]) -> None:
    """Constraint check that travels with ``AUTH_SPEC``: raises ``ValidationError`` when the options cannot resolve."""
    resolve_auth(params)


# The constraints that travel with AUTH_ARGSPEC (see ``_module.ArgumentSpec``). They are checks rather than
# ``required_if``/``mutually_exclusive`` entries on purpose: env fallbacks run before Ansible's constraint checks,
# so an AWX- or GitLab-injected variable would otherwise clash with an option set in the task, and these checks name
# the environment variables that can supply a missing input.
AUTH_CONSTRAINTS = {'checks': (check_auth_options,)}


def _stripped(value: Any) -> Optional[str]:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
