# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Shared authentication and connection options (plugins/module_utils/_auth_spec.py AUTH_ARGSPEC)."""

    DOCUMENTATION = r'''
options:
  auth_source:
    description:
      - How to authenticate to Microsoft Entra ID.
      - V(auto) uses the first source whose inputs are complete, in this order.
        V(client_secret) when O(tenant_id), O(client_id) and O(client_secret) are set (the environment credential);
        V(federated_token) when O(tenant_id), O(client_id) and O(federated_token) or O(federated_token_file) are set;
        V(managed_identity) when the environment exposes a managed identity endpoint (E(IDENTITY_ENDPOINT) or
        E(MSI_ENDPOINT) is set, as on App Service, Functions, Container Apps and Azure Arc);
        otherwise V(cli). When V(auto) chose a source that then fails, the error says which inputs the earlier
        sources were missing.
      - V(env) uses the environment credential only, a client secret, else a federated token.
        It fails if neither set of inputs is complete; it never falls back to a managed identity or the Azure CLI.
      - V(client_secret) uses O(tenant_id), O(client_id) and O(client_secret).
      - V(federated_token) exchanges an external OpenID Connect token for an Entra token (workload identity
        federation). It uses O(tenant_id), O(client_id) and O(federated_token) or O(federated_token_file).
        A playbook running in a GitLab CI job can log in with the job's own ID token through E(GITLAB_OIDC_TOKEN).
      - V(managed_identity) uses the managed identity of the Azure host; O(client_id) selects a user-assigned identity.
        On a virtual machine with only the instance metadata service, select it explicitly, because V(auto) cannot detect it.
      - V(cli) uses the account of the Azure CLI (C(az login)); O(tenant_id) selects the tenant when set.
      - Values from options and from their environment variables count the same.
      - 'Example: C(auth_source: federated_token) in a GitLab CI job, C(auth_source: cli) on a workstation after C(az login).'
    type: str
    default: auto
    choices: [auto, env, client_secret, federated_token, managed_identity, cli]
  tenant_id:
    description:
      - The Microsoft Entra tenant (directory) ID or domain.
      - If not set, the environment variable E(AZURE_TENANT_ID) is used, then E(AZURE_TENANT) (set by AWX/AAP).
      - 'Example: C(tenant_id: 5a1d5b0e-7c2f-4d3a-8e9b-0f1a2b3c4d5e) or C(tenant_id: contoso.onmicrosoft.com).'
    type: str
  client_id:
    description:
      - The application (client) ID to authenticate as.
      - With O(auth_source=managed_identity), the client ID of a user-assigned managed identity.
      - If not set, the environment variable E(AZURE_CLIENT_ID) is used.
      - 'Example: C(client_id: 3c2e4a1f-8b7d-4e6a-9f10-2b3c4d5e6f70).'
    type: str
  client_secret:
    description:
      - A client secret of the application O(client_id), for O(auth_source=client_secret).
      - If not set, the environment variable E(AZURE_CLIENT_SECRET) is used, then E(AZURE_SECRET) (set by AWX/AAP).
      - 'Example: C(client_secret: "{{ vault_azure_client_secret }}"), kept in Ansible Vault.'
    type: str
  federated_token:
    description:
      - An OpenID Connect ID token (JWT) from an identity provider that the application O(client_id) trusts through
        a federated identity credential, for O(auth_source=federated_token).
      - If not set, the environment variable E(AZURE_FEDERATED_TOKEN) is used, then E(GITLAB_OIDC_TOKEN).
      - Takes precedence over O(federated_token_file) when both are set.
      - 'Example: C(federated_token: "{{ gitlab_id_token }}"), a variable that holds the ID token of the CI job.'
    type: str
  federated_token_file:
    description:
      - Path of a file holding the federated token, for O(auth_source=federated_token).
      - The file is read again whenever a new Entra token is needed, so a rotated token is picked up.
      - If not set, the environment variable E(AZURE_FEDERATED_TOKEN_FILE) is used.
      - 'Example: C(federated_token_file: /var/run/secrets/azure/tokens/azure-identity-token), the file AKS workload identity mounts.'
    type: path
  subscription_id:
    description:
      - The Azure subscription ID, for modules that work with Azure Resource Manager and need one.
      - If not set, the environment variable E(AZURE_SUBSCRIPTION_ID) is used.
      - 'Example: C(subscription_id: 6b2e6c1f-0d4a-4b8e-9c3f-1a2b3c4d5e6f).'
    type: str
  cloud_environment:
    description:
      - The Azure cloud. It sets the Entra authority, the Microsoft Graph and Azure Resource Manager endpoints,
        and the token scopes.
      - V(AzurePublicCloud) uses C(https://login.microsoftonline.com), C(https://graph.microsoft.com) and
        C(https://management.azure.com). V(AzureCloud), the Azure CLI's and AWX's name for it, is accepted too.
      - V(AzureChinaCloud) uses C(https://login.chinacloudapi.cn), C(https://microsoftgraph.chinacloudapi.cn) and
        C(https://management.chinacloudapi.cn).
      - V(AzureUSGovernment) uses C(https://login.microsoftonline.us), C(https://graph.microsoft.us) and
        C(https://management.usgovcloudapi.net).
      - If not set, the environment variable E(AZURE_CLOUD_ENVIRONMENT) is used.
      - 'Example: C(cloud_environment: AzureUSGovernment).'
    type: str
    default: AzurePublicCloud
    choices: [AzurePublicCloud, AzureChinaCloud, AzureUSGovernment, AzureCloud]
  authority_host:
    description:
      - Overrides the Entra authority (login endpoint) of O(cloud_environment), for example C(https://login.example.test:8443).
        Instance discovery is disabled for a non-default authority.
      - Must use https. A host without a scheme gets C(https://).
      - If not set, the environment variable E(AZURE_AUTHORITY_HOST) is used.
      - 'Example: C(authority_host: https://127.0.0.1:8443), a local test endpoint such as the collection''s sandbox.'
    type: str
  graph_endpoint:
    description:
      - Overrides the Microsoft Graph endpoint of O(cloud_environment), without the API version
        (a trailing C(/v1.0) or C(/beta) is removed). Tokens keep the cloud's Graph scope.
      - Must use https. A host without a scheme gets C(https://).
      - If not set, the environment variable E(AZURE_GRAPH_ENDPOINT) is used.
      - 'Example: C(graph_endpoint: https://127.0.0.1:8443).'
    type: str
  resource_manager_endpoint:
    description:
      - Overrides the Azure Resource Manager endpoint of O(cloud_environment). Tokens keep the cloud's ARM scope.
      - Must use https. A host without a scheme gets C(https://).
      - If not set, the environment variable E(AZURE_RESOURCE_MANAGER_ENDPOINT) is used.
      - 'Example: C(resource_manager_endpoint: https://127.0.0.1:8443).'
    type: str
  ca_bundle:
    description:
      - Path of a PEM file with the certificate authorities to trust for the Entra, Graph and Resource Manager
        connections, instead of the default trust store.
      - If not set, the environment variable E(AZURE_CA_BUNDLE) is used, then E(REQUESTS_CA_BUNDLE).
      - 'Example: C(ca_bundle: /etc/pki/ca-trust/source/anchors/corporate-root-ca.pem).'
    type: path
  replication_timeout:
    description:
      - How many seconds to keep retrying errors caused by directory replication delay, such as a service principal
        not yet visible to Azure Resource Manager (C(PrincipalNotFound)) or to Microsoft Graph
        (C(NoBackingApplicationObject)) right after it was created.
      - Throttling (HTTP 429, with its C(Retry-After)) and transient server or connection errors are retried
        separately, a bounded number of times.
      - Between 0 and 3600.
      - 'Example: C(replication_timeout: 300) for a tenant that replicates slowly.'
    type: int
    default: 120
  token_cache:
    description:
      - Share Microsoft Entra access tokens between the module processes of the same user. Every task runs a new
        module process; with the cache, the first one that needs a token for Microsoft Graph or Azure Resource
        Manager asks Entra and stores it, and the tasks after it (in this run and in the next runs, while the token
        lasts) reuse it instead of asking Entra again. A token is used while it has more than 5 minutes of validity
        left (Entra's access tokens last 60 to 90 minutes by default).
      - Applies to O(auth_source=client_secret) and O(auth_source=federated_token) (also when V(auto) or V(env)
        chose them). A managed identity and the Azure CLI keep their own token caches and are never cached here.
      - Each token is stored under a hash of the authority, tenant, client ID, auth source, scope and a fingerprint
        of the client secret or federated token, so a changed secret or a new federated token never reuses an old
        token, and the file names reveal none of them. Secrets and federated tokens themselves are never stored.
      - 'Security: while a token is valid, anyone who can read the files of the user that runs the modules (that
        user, and root) can use it to act as O(client_id) in Microsoft Graph or Azure Resource Manager, as they could
        with the credentials those processes receive. The files are created with mode 0600 in a directory with mode
        0700 (see O(token_cache_dir)); a directory that is a symbolic link, belongs to another user or is open to
        group or others is not used (the module warns and asks Entra for its own tokens). Tokens never appear in
        module results, logs or errors.'
      - Set to V(false) where the account that runs the modules is shared with people or jobs that must not act as
        this identity, or where no token may be written to a file. Every module process then asks Entra for its own
        tokens, as before.
      - If not set, the environment variable E(AZURE_TOKEN_CACHE) is used.
      - 'Example: C(token_cache: false) on a shared automation account.'
    type: bool
    default: true
  token_cache_dir:
    description:
      - The directory of the shared token cache (O(token_cache)); an absolute path. It is created with mode 0700 when
        it does not exist.
      - By default C($XDG_RUNTIME_DIR/oidc_federation_azure/tokens) when E(XDG_RUNTIME_DIR) is a directory of the user
        (on most Linux hosts a memory file system that is removed at logout), otherwise
        C(~/.cache/oidc_federation_azure/tokens) (C($XDG_CACHE_HOME/oidc_federation_azure/tokens) when
        E(XDG_CACHE_HOME) is set).
      - Expired tokens are removed when a new token is stored.
      - If not set, the environment variable E(AZURE_TOKEN_CACHE_DIR) is used.
      - 'Example: C(token_cache_dir: /run/user/1000/ansible-azure-tokens).'
    type: path
'''
