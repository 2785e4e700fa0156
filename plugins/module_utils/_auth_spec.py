# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file are meant for use within the oidc_federation.azure collection
# and may not remain stable to outside uses. Changes may be made in ANY release, even a bugfix release.

"""The shared authentication/connection options as Ansible takes them: ``AUTH_ARGSPEC`` (documented by the
``oidc_federation.azure.auth`` doc fragment), the environment variables each one falls back to, and
``with_auth_options(spec)``, a module's own options with them.

Data only: what they mean (``resolve_auth``) and the checks that travel with them are in ``_auth``. A module process
that hands its call to a persistent worker parses its options with this file and never imports ``_auth``.
"""

from __future__ import annotations

from typing import Mapping

from ansible.module_utils.basic import env_fallback

AUTH_SOURCES = ('auto', 'env', 'client_secret', 'federated_token', 'managed_identity', 'cli')

# Environment variables read by each option, first found wins (docs/dev/architecture.md).
ENV_VARS = {
    'tenant_id': ('AZURE_TENANT_ID', 'AZURE_TENANT'),
    'client_id': ('AZURE_CLIENT_ID',),
    'client_secret': ('AZURE_CLIENT_SECRET', 'AZURE_SECRET'),
    'federated_token': ('AZURE_FEDERATED_TOKEN', 'GITLAB_OIDC_TOKEN'),
    'federated_token_file': ('AZURE_FEDERATED_TOKEN_FILE',),
    'subscription_id': ('AZURE_SUBSCRIPTION_ID',),
    'cloud_environment': ('AZURE_CLOUD_ENVIRONMENT',),
    'authority_host': ('AZURE_AUTHORITY_HOST',),
    'graph_endpoint': ('AZURE_GRAPH_ENDPOINT',),
    'resource_manager_endpoint': ('AZURE_RESOURCE_MANAGER_ENDPOINT',),
    'ca_bundle': ('AZURE_CA_BUNDLE', 'REQUESTS_CA_BUNDLE'),
    'token_cache': ('AZURE_TOKEN_CACHE',),
    'token_cache_dir': ('AZURE_TOKEN_CACHE_DIR',),
}

DEFAULT_CLOUD = 'AzurePublicCloud'
DEFAULT_REPLICATION_TIMEOUT = 120
# The clouds _auth.CLOUDS describes (a unit test keeps the two in step).
CLOUD_NAMES = ('AzurePublicCloud', 'AzureChinaCloud', 'AzureUSGovernment')
# Other names of the same clouds: the Azure CLI and AWX's Azure credential call the public cloud AzureCloud.
CLOUD_ALIASES = {'AzureCloud': 'AzurePublicCloud'}


def _env(option: str) -> dict:
    return {'fallback': (env_fallback, list(ENV_VARS[option]))}


AUTH_ARGSPEC = {
    'auth_source': {'type': 'str', 'default': 'auto', 'choices': list(AUTH_SOURCES)},
    'tenant_id': dict(type='str', **_env('tenant_id')),
    'client_id': dict(type='str', **_env('client_id')),
    'client_secret': dict(type='str', no_log=True, **_env('client_secret')),
    'federated_token': dict(type='str', no_log=True, **_env('federated_token')),
    'federated_token_file': dict(type='path', **_env('federated_token_file')),
    'subscription_id': dict(type='str', **_env('subscription_id')),
    'cloud_environment': dict(type='str', default=DEFAULT_CLOUD, choices=list(CLOUD_NAMES) + list(CLOUD_ALIASES),
                              **_env('cloud_environment')),
    'authority_host': dict(type='str', **_env('authority_host')),
    'graph_endpoint': dict(type='str', **_env('graph_endpoint')),
    'resource_manager_endpoint': dict(type='str', **_env('resource_manager_endpoint')),
    'ca_bundle': dict(type='path', **_env('ca_bundle')),
    'replication_timeout': {'type': 'int', 'default': DEFAULT_REPLICATION_TIMEOUT},
    'token_cache': dict(type='bool', default=True, **_env('token_cache')),
    'token_cache_dir': dict(type='path', **_env('token_cache_dir')),
}


def with_auth_options(argument_spec: Mapping[str, dict]) -> dict:
    """A module's options and the shared auth options in one spec for ``AnsibleModule`` (the same options
    ``_module.AzureModule`` gives it); an option defined in both is a programming error (``ValueError``)."""
    clash = sorted(set(AUTH_ARGSPEC) & set(argument_spec))
    if clash:
        raise ValueError('options defined twice: {0}'.format(', '.join(clash)))
    return dict(AUTH_ARGSPEC, **argument_spec)
