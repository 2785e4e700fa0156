# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shared fixtures of the unit tests.

* ``clean_azure_env`` (autouse): removes every environment variable the shared auth options or managed identity
  detection read, so a developer's or CI job's Azure/GitLab variables never leak into a test, and points
  ``XDG_RUNTIME_DIR`` at a new directory, so every test starts with an empty token cache of its own.
* ``run_module``: run a module's ``main()`` with given module args; returns ``(exit_code, result_dict)``.
* ``sandbox`` / ``clean_sandbox``: re-exported from ``sandbox/tests/conftest.py`` (a real sandbox process over
  HTTPS, see sandbox/CONTRACT.md) when the sandbox package is in this checkout; ``SANDBOX_AVAILABLE`` says whether.
  Tests using them should be marked ``pytest.mark.skipif(not SANDBOX_AVAILABLE, ...)``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from ansible.module_utils import _internal as _module_utils_internal

from ansible.module_utils.testing import patch_module_args

from ansible_collections.oidc_federation.azure.plugins.module_utils._auth import MANAGED_IDENTITY_ENV_VARS
from ansible_collections.oidc_federation.azure.plugins.module_utils._auth_spec import ENV_VARS
from ansible_collections.oidc_federation.azure.plugins.module_utils._gitlab_api import ENV_CA_BUNDLE, ENV_TOKEN, ENV_URL

AZURE_ENV_NAMES = sorted({name for names in ENV_VARS.values() for name in names} | set(MANAGED_IDENTITY_ENV_VARS)
                         | {'IDENTITY_HEADER', 'AZURE_USERNAME', 'AZURE_PASSWORD', 'AZURE_CLIENT_CERTIFICATE_PATH',
                            'SSL_CERT_FILE', 'SSL_CERT_DIR', 'CURL_CA_BUNDLE', 'GITLAB_VALIDATE_CERTS'}
                         | set(ENV_TOKEN) | set(ENV_URL) | set(ENV_CA_BUNDLE))

SANDBOX_CONFTEST = Path(__file__).resolve().parents[2] / 'sandbox' / 'tests' / 'conftest.py'
SANDBOX_AVAILABLE = SANDBOX_CONFTEST.is_file() and (SANDBOX_CONFTEST.parents[1] / 'oidc_sandbox' / '__init__.py').is_file()

if SANDBOX_AVAILABLE:
    _spec = importlib.util.spec_from_file_location('oidc_sandbox_test_fixtures', SANDBOX_CONFTEST)
    _fixtures = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _fixtures
    _spec.loader.exec_module(_fixtures)
    sandbox = _fixtures.sandbox
    clean_sandbox = _fixtures.clean_sandbox


@pytest.fixture(autouse=True)
def clean_azure_env(monkeypatch, tmp_path_factory):
    """Unset the Azure/GitLab variables read by the collection (tests set what they need), and give every test its
    own runtime directory, so the shared token cache (``_token_cache.py``) starts empty and stays out of ``~``."""
    for name in AZURE_ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    runtime = tmp_path_factory.mktemp('xdg-runtime')
    runtime.chmod(0o700)
    monkeypatch.setenv('XDG_RUNTIME_DIR', str(runtime))
    monkeypatch.delenv('XDG_CACHE_HOME', raising=False)


@pytest.fixture
def run_module(capsys):
    """``run_module(main, args) -> (exit_code, result)``: run a module entry point and parse its JSON result."""
    def run(main, args):
        # A module runs on the target, never "in the controller": once any controller code (ansible.errors, a
        # filter plugin...) is imported into the test process, ansible-core marks the process as the controller and
        # AnsibleModule.warn() then prints instead of returning warnings in the result. Run modules as modules.
        was_controller = _module_utils_internal.is_controller
        _module_utils_internal.is_controller = False
        try:
            with patch_module_args(args):
                with pytest.raises(SystemExit) as exc_info:
                    main()
        finally:
            _module_utils_internal.is_controller = was_controller
        out = capsys.readouterr().out
        return exc_info.value.code, json.loads(out)
    return run
