# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The shared auth options that point a module at the sandbox, as its operator, for in-process module tests."""

from __future__ import annotations


def auth_args(sb, **overrides):
    """Explicit auth options (the unit tests' autouse fixture clears the environment), plus ``overrides``."""
    args = {'auth_source': 'client_secret', 'tenant_id': sb.tenant_id, 'client_id': sb.operator.client_id,
            'client_secret': sb.operator.secret, 'subscription_id': sb.subscription_id, 'authority_host': sb.url,
            'graph_endpoint': sb.url, 'resource_manager_endpoint': sb.url, 'ca_bundle': sb.ca_file}
    args.update(overrides)
    return args
