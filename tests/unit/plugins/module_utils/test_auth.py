# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared auth options: env fallbacks (each name, precedence), ``auth_source: auto`` order, explicit sources and
their error messages, clouds and endpoint overrides, and the doc fragment matching the spec."""

from __future__ import annotations

import pytest
import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.oidc_federation.azure.plugins.doc_fragments.auth import ModuleDocFragment
from ansible_collections.oidc_federation.azure.plugins.module_utils._auth import (
    AUTO_ORDER,
    CLOUDS,
    choose_auth_source,
    normalize_endpoint,
    resolve_auth,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._auth_spec import (
    AUTH_ARGSPEC,
    CLOUD_ALIASES,
    CLOUD_NAMES,
    ENV_VARS,
    with_auth_options,
)
from ansible_collections.oidc_federation.azure.plugins.module_utils._errors import ValidationError, redact

TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47'
CLIENT = '11111111-2222-3333-4444-555555555555'


def validated(params=None):
    """The parameters AnsibleModule would see (env fallbacks and defaults applied)."""
    result = ArgumentSpecValidator(AUTH_ARGSPEC).validate(dict(params or {}))
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


def no_file(path):
    return False


def any_file(path):
    return True


# --- environment fallbacks ------------------------------------------------------------------------------------------

@pytest.mark.parametrize('option, env_name', [(o, n) for o, names in ENV_VARS.items() for n in names])
def test_each_env_name_feeds_its_option(monkeypatch, option, env_name):
    value = {'cloud_environment': 'AzureChinaCloud', 'token_cache': 'false'}.get(option, 'from-' + env_name.lower())
    monkeypatch.setenv(env_name, value)
    assert validated()[option] == {'token_cache': False}.get(option, value)


@pytest.mark.parametrize('option', [o for o, names in ENV_VARS.items() if len(names) > 1])
def test_first_env_name_wins(monkeypatch, option):
    first, second = ENV_VARS[option][:2]
    monkeypatch.setenv(first, '/first')
    monkeypatch.setenv(second, '/second')
    assert validated()[option] == '/first'


def test_documented_env_names():
    assert ENV_VARS['tenant_id'] == ('AZURE_TENANT_ID', 'AZURE_TENANT')
    assert ENV_VARS['client_secret'] == ('AZURE_CLIENT_SECRET', 'AZURE_SECRET')
    assert ENV_VARS['federated_token'] == ('AZURE_FEDERATED_TOKEN', 'GITLAB_OIDC_TOKEN')
    assert ENV_VARS['subscription_id'] == ('AZURE_SUBSCRIPTION_ID',)
    assert ENV_VARS['ca_bundle'] == ('AZURE_CA_BUNDLE', 'REQUESTS_CA_BUNDLE')


def test_option_beats_env(monkeypatch):
    monkeypatch.setenv('AZURE_TENANT_ID', 'env-tenant')
    monkeypatch.setenv('AZURE_CLIENT_SECRET', 'env-secret')
    params = validated({'tenant_id': 'task-tenant', 'client_secret': 'task-secret'})
    assert (params['tenant_id'], params['client_secret']) == ('task-tenant', 'task-secret')


def test_awx_credential_variables_authenticate_with_a_client_secret(monkeypatch):
    for name, value in (('AZURE_TENANT', TENANT), ('AZURE_CLIENT_ID', CLIENT), ('AZURE_SECRET', 'awx-secret-value'),
                        ('AZURE_SUBSCRIPTION_ID', 'sub-1')):
        monkeypatch.setenv(name, value)
    settings = resolve_auth(validated(), environ={})
    assert (settings.auth_source, settings.tenant_id, settings.client_id, settings.client_secret, settings.subscription_id) == (
        'client_secret', TENANT, CLIENT, 'awx-secret-value', 'sub-1')


def test_gitlab_ci_job_token_authenticates_with_a_federated_token(monkeypatch):
    monkeypatch.setenv('AZURE_TENANT_ID', TENANT)
    monkeypatch.setenv('AZURE_CLIENT_ID', CLIENT)
    monkeypatch.setenv('GITLAB_OIDC_TOKEN', 'eyJ.gitlab.token')
    settings = resolve_auth(validated(), environ={})
    assert (settings.auth_source, settings.federated_token) == ('federated_token', 'eyJ.gitlab.token')


def test_defaults():
    params = validated()
    assert (params['auth_source'], params['cloud_environment'], params['replication_timeout']) == ('auto', 'AzurePublicCloud', 120)


def test_invalid_cloud_from_env_is_rejected_by_choices(monkeypatch):
    monkeypatch.setenv('AZURE_CLOUD_ENVIRONMENT', 'AzureGermanCloud')
    result = ArgumentSpecValidator(AUTH_ARGSPEC).validate({})
    assert 'cloud_environment' in ' '.join(result.error_messages)


# --- auth_source: auto ------------------------------------------------------------------------------------------------

SECRET = {'tenant_id': TENANT, 'client_id': CLIENT, 'client_secret': 'pw-123456'}
TOKEN = {'tenant_id': TENANT, 'client_id': CLIENT, 'federated_token': 'eyJ.a.b'}
TOKEN_FILE = {'tenant_id': TENANT, 'client_id': CLIENT, 'federated_token_file': '/var/run/token'}


@pytest.mark.parametrize('params, environ, expected', [
    (SECRET, {}, 'client_secret'),
    (dict(SECRET, federated_token='eyJ.a.b'), {'IDENTITY_ENDPOINT': 'http://x'}, 'client_secret'),
    (TOKEN, {}, 'federated_token'),
    (TOKEN_FILE, {}, 'federated_token'),
    (dict(TOKEN, client_secret=None), {'MSI_ENDPOINT': 'http://x'}, 'federated_token'),
    ({'client_id': CLIENT, 'client_secret': 'pw-123456'}, {'IDENTITY_ENDPOINT': 'http://x'}, 'managed_identity'),
    ({}, {'MSI_ENDPOINT': 'http://169.254.169.254'}, 'managed_identity'),
    ({'tenant_id': TENANT}, {}, 'cli'),
    ({}, {}, 'cli'),
])
def test_auto_order(params, environ, expected):
    source, reason = choose_auth_source(dict(params, auth_source='auto'), environ)
    assert source == expected
    assert reason.startswith('auth_source=auto chose ' + expected)


def test_auto_order_constant():
    assert AUTO_ORDER == ('client_secret', 'federated_token', 'managed_identity', 'cli')


def test_auto_reason_explains_skipped_sources():
    _source, reason = choose_auth_source({'auth_source': 'auto', 'client_id': CLIENT}, {})
    assert reason == (
        'auth_source=auto chose cli after skipping '
        'client_secret: missing tenant_id (or AZURE_TENANT_ID/AZURE_TENANT), client_secret (or AZURE_CLIENT_SECRET/AZURE_SECRET); '
        'federated_token: missing tenant_id (or AZURE_TENANT_ID/AZURE_TENANT), federated_token (or AZURE_FEDERATED_TOKEN/GITLAB_OIDC_TOKEN) '
        'or federated_token_file (or AZURE_FEDERATED_TOKEN_FILE); managed_identity: none of IDENTITY_ENDPOINT/MSI_ENDPOINT is set')


def test_blank_values_count_as_missing():
    source, _reason = choose_auth_source(dict(SECRET, auth_source='auto', client_secret='  '), {})
    assert source == 'cli'


# --- auth_source: env and explicit sources ----------------------------------------------------------------------------

def test_env_source_uses_secret_then_token_and_never_falls_back():
    assert choose_auth_source(dict(SECRET, auth_source='env'), {})[0] == 'client_secret'
    assert choose_auth_source(dict(TOKEN, auth_source='env'), {})[0] == 'federated_token'
    with pytest.raises(ValidationError) as exc_info:
        choose_auth_source({'auth_source': 'env', 'tenant_id': TENANT}, {'IDENTITY_ENDPOINT': 'http://x'})
    msg = str(exc_info.value)
    assert msg.startswith('auth_source=env needs a client secret or a federated token; ')
    assert 'client_id (or AZURE_CLIENT_ID)' in msg and 'client_secret (or AZURE_CLIENT_SECRET/AZURE_SECRET)' in msg


def test_client_secret_source_names_missing_inputs_and_env_vars():
    with pytest.raises(ValidationError) as exc_info:
        resolve_auth({'auth_source': 'client_secret', 'client_id': CLIENT}, environ={})
    assert str(exc_info.value) == ('auth_source=client_secret needs tenant_id (or AZURE_TENANT_ID/AZURE_TENANT), '
                                   'client_secret (or AZURE_CLIENT_SECRET/AZURE_SECRET)')


def test_federated_token_source_names_missing_inputs():
    with pytest.raises(ValidationError) as exc_info:
        resolve_auth({'auth_source': 'federated_token', 'tenant_id': TENANT, 'client_id': CLIENT}, environ={})
    assert str(exc_info.value) == ('auth_source=federated_token needs federated_token (or AZURE_FEDERATED_TOKEN/GITLAB_OIDC_TOKEN) '
                                   'or federated_token_file (or AZURE_FEDERATED_TOKEN_FILE)')


def test_explicit_sources_ignore_other_inputs():
    settings = resolve_auth(dict(SECRET, auth_source='federated_token', federated_token='eyJ.x.y'), environ={})
    assert settings.auth_source == 'federated_token' and settings.client_secret is None
    settings = resolve_auth(dict(SECRET, auth_source='managed_identity'), environ={})
    assert settings.auth_source == 'managed_identity' and settings.client_secret is None and settings.client_id == CLIENT
    assert resolve_auth({'auth_source': 'cli'}, environ={}).auth_source == 'cli'


def test_token_string_wins_over_token_file():
    settings = resolve_auth(dict(TOKEN, auth_source='federated_token', federated_token_file='/missing'), environ={}, file_exists=no_file)
    assert (settings.federated_token, settings.federated_token_file) == ('eyJ.a.b', None)


def test_token_file_must_exist(tmp_path):
    with pytest.raises(ValidationError) as exc_info:
        resolve_auth(dict(TOKEN_FILE, auth_source='federated_token'), environ={})
    assert "federated_token_file '/var/run/token' does not exist" in str(exc_info.value)
    token_file = tmp_path / 'token'
    token_file.write_text('eyJ.x.y')
    settings = resolve_auth(dict(TOKEN_FILE, auth_source='auto', federated_token_file=str(token_file)), environ={})
    assert settings.federated_token_file == str(token_file) and settings.federated_token is None


def test_unknown_auth_source_and_bad_tenant():
    with pytest.raises(ValidationError):
        choose_auth_source({'auth_source': 'password'}, {})
    with pytest.raises(ValidationError) as exc_info:
        resolve_auth(dict(SECRET, tenant_id='contoso/../x'), environ={})
    assert 'tenant_id' in str(exc_info.value)


def test_secrets_are_registered_for_redaction_and_hidden_from_repr():
    settings = resolve_auth(dict(SECRET, client_secret='Very$ecret-Value-42'), environ={})
    assert 'Very$ecret-Value-42' not in repr(settings) and 'Very$ecret-Value-42' not in str(settings.summary())
    assert 'Very$ecret-Value-42' not in redact('echo Very$ecret-Value-42')
    resolve_auth(dict(TOKEN, federated_token='opaque-federated-token-77'), environ={})
    assert 'opaque-federated-token-77' not in redact('token opaque-federated-token-77')


# --- clouds and connection settings ---------------------------------------------------------------------------------

@pytest.mark.parametrize('name, authority, graph, arm, graph_scope, arm_scope', [
    ('AzurePublicCloud', 'https://login.microsoftonline.com', 'https://graph.microsoft.com', 'https://management.azure.com',
     'https://graph.microsoft.com/.default', 'https://management.azure.com/.default'),
    ('AzureChinaCloud', 'https://login.chinacloudapi.cn', 'https://microsoftgraph.chinacloudapi.cn', 'https://management.chinacloudapi.cn',
     'https://microsoftgraph.chinacloudapi.cn/.default', 'https://management.chinacloudapi.cn/.default'),
    ('AzureUSGovernment', 'https://login.microsoftonline.us', 'https://graph.microsoft.us', 'https://management.usgovcloudapi.net',
     'https://graph.microsoft.us/.default', 'https://management.usgovcloudapi.net/.default'),
])
def test_clouds(name, authority, graph, arm, graph_scope, arm_scope):
    cloud = resolve_auth({'auth_source': 'cli', 'cloud_environment': name}, environ={}).cloud
    assert (cloud.name, cloud.authority_host, cloud.graph_endpoint, cloud.resource_manager_endpoint) == (name, authority, graph, arm)
    assert (cloud.graph_scope, cloud.arm_scope) == (graph_scope, arm_scope)
    assert set(CLOUDS) == {'AzurePublicCloud', 'AzureChinaCloud', 'AzureUSGovernment'}


def test_endpoint_overrides_keep_the_cloud_scopes():
    settings = resolve_auth({'auth_source': 'cli', 'authority_host': '127.0.0.1:8443', 'graph_endpoint': 'https://127.0.0.1:8443/v1.0/',
                             'resource_manager_endpoint': 'https://127.0.0.1:8443/'}, environ={})
    cloud = settings.cloud
    assert (cloud.authority_host, cloud.graph_endpoint, cloud.resource_manager_endpoint) == (
        'https://127.0.0.1:8443', 'https://127.0.0.1:8443', 'https://127.0.0.1:8443')
    assert cloud.graph_scope == 'https://graph.microsoft.com/.default'
    assert settings.custom_authority is True
    default = resolve_auth({'auth_source': 'cli', 'authority_host': 'https://login.microsoftonline.com/'}, environ={})
    assert default.custom_authority is False


@pytest.mark.parametrize('value, expected', [
    ('https://HOST.example:8443/', 'https://HOST.example:8443'),
    ('host.example', 'https://host.example'),
    ('https://graph.example/beta', 'https://graph.example'),
    ('https://h/prefix/v1.0', 'https://h/prefix'),
])
def test_normalize_endpoint(value, expected):
    assert normalize_endpoint('graph_endpoint', value, ('/v1.0', '/beta')) == expected


@pytest.mark.parametrize('value', ['http://127.0.0.1:8080', 'https://', 'https://h:notaport', 'https://user:pw@h', 'https://h/?x=1'])
def test_normalize_endpoint_rejects(value):
    with pytest.raises(ValidationError) as exc_info:
        normalize_endpoint('authority_host', value)
    assert 'authority_host' in str(exc_info.value)


def test_ca_bundle_and_replication_timeout_checks(tmp_path):
    with pytest.raises(ValidationError) as exc_info:
        resolve_auth({'auth_source': 'cli', 'ca_bundle': '/nonexistent/ca.pem'}, environ={})
    assert 'ca_bundle' in str(exc_info.value) and 'AZURE_CA_BUNDLE/REQUESTS_CA_BUNDLE' in str(exc_info.value)
    ca = tmp_path / 'ca.pem'
    ca.write_text('x')
    assert resolve_auth({'auth_source': 'cli', 'ca_bundle': str(ca)}, environ={}).ca_bundle == str(ca)
    for bad in (-1, 3601):
        with pytest.raises(ValidationError):
            resolve_auth({'auth_source': 'cli', 'replication_timeout': bad}, environ={})
    assert resolve_auth({'auth_source': 'cli', 'replication_timeout': 0}, environ={}).replication_timeout == 0


# --- the doc fragment documents exactly the spec ----------------------------------------------------------------------

def test_doc_fragment_matches_argspec():
    options = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']
    assert set(options) == set(AUTH_ARGSPEC)
    for name, spec in AUTH_ARGSPEC.items():
        doc = options[name]
        assert doc['type'] == spec['type'], name
        assert doc.get('default') == spec.get('default'), name
        assert doc.get('choices') == spec.get('choices'), name
        description = ' '.join(doc['description'])
        for env_name in ENV_VARS.get(name, ()):
            assert 'E({0})'.format(env_name) in description, (name, env_name)


def test_azurecloud_is_the_public_cloud():
    """AWX's credential and the Azure CLI call the public cloud AzureCloud."""
    from ansible_collections.oidc_federation.azure.plugins.module_utils._auth import CLOUDS, resolve_cloud
    cloud, custom = resolve_cloud({'cloud_environment': 'AzureCloud'})
    assert cloud.name == 'AzurePublicCloud' and cloud.graph_endpoint == CLOUDS['AzurePublicCloud'].graph_endpoint
    assert not custom


# --- the shared token cache options ---------------------------------------------------------------------------------

def test_token_cache_is_on_by_default_and_can_be_turned_off(monkeypatch):
    base = {'auth_source': 'cli'}
    assert validated(base)['token_cache'] is True
    assert resolve_auth(validated(base), environ={}).token_cache is True
    assert resolve_auth(base, environ={}).token_cache is True  # pure callers (no AnsibleModule defaults) get the default
    assert resolve_auth(dict(base, token_cache='no'), environ={}).token_cache is False
    monkeypatch.setenv('AZURE_TOKEN_CACHE', '0')
    settings = resolve_auth(validated(base), environ={})
    assert settings.token_cache is False and settings.summary()['token_cache'] is False


def test_token_cache_options_are_checked():
    with pytest.raises(ValidationError, match=r'token_cache must be a boolean.*AZURE_TOKEN_CACHE'):
        resolve_auth({'auth_source': 'cli', 'token_cache': 'sometimes'}, environ={})
    with pytest.raises(ValidationError, match=r'token_cache_dir must be an absolute path.*AZURE_TOKEN_CACHE_DIR'):
        resolve_auth({'auth_source': 'cli', 'token_cache_dir': 'relative/tokens'}, environ={})
    settings = resolve_auth({'auth_source': 'cli', 'token_cache_dir': '/run/user/1000/tokens'}, environ={})
    assert settings.token_cache_dir == '/run/user/1000/tokens'


def test_the_option_spec_names_the_clouds_resolve_auth_knows():
    # _auth_spec is data only (the module process of a persistent worker's call imports it, not _auth): its list of
    # clouds and aliases must be the one resolve_auth resolves.
    assert CLOUD_NAMES == tuple(CLOUDS)
    assert AUTH_ARGSPEC['cloud_environment']['choices'] == list(CLOUDS) + list(CLOUD_ALIASES)
    assert all(CLOUD_ALIASES[alias] in CLOUDS for alias in CLOUD_ALIASES)


def test_with_auth_options_adds_the_shared_options_and_refuses_a_clash():
    spec = with_auth_options({'name': {'type': 'str'}})
    assert set(spec) == set(AUTH_ARGSPEC) | {'name'} and 'name' not in AUTH_ARGSPEC
    with pytest.raises(ValueError, match='options defined twice: tenant_id'):
        with_auth_options({'tenant_id': {'type': 'str'}})
