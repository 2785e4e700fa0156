# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures of the end-to-end tests: the example inventory onboarded on a real sandbox by ansible-playbook.

* ``sandbox``: the sandbox's own session fixture (``sandbox/tests/conftest.py``: a ``serve`` process over HTTPS).
* ``az_bin``: the official Azure CLI, from ``sandbox/tests/test_azcli.py`` (skips when its venv cannot be built).
* ``deployment`` (session): resets the sandbox, adds a second resource group, runs
  ``ansible-playbook -i playbooks/inventory/example.yml playbooks/onboard.yml`` twice (statistics reset before the
  second run) and offers the role's JSON report, the runs, and :meth:`e2e_support.Deployment.offboard`.
"""
from __future__ import annotations

import json
from typing import Iterator

import pytest

from e2e_support import (ONBOARD, OTHER_RG, Deployment, add_resource_group, azcli, fixtures, harness, run_example,
                         secrets_of, state_of)

sandbox = fixtures.sandbox
az_bin = azcli.az_bin


@pytest.fixture(scope="session")
def deployment(sandbox, tmp_path_factory) -> Iterator[Deployment]:
    """Onboard the example inventory twice; the report of the first run is what the tests check."""
    try:
        harness.ensure_collection()
    except harness.HarnessError as exc:
        pytest.fail(str(exc))
    sandbox.reset()
    add_resource_group(sandbox, OTHER_RG)
    baseline = state_of(sandbox)
    workdir = tmp_path_factory.mktemp("e2e")
    env = harness.ansible_env(sandbox.env, workdir)
    secrets = secrets_of(env)

    first = run_example(ONBOARD, env, workdir)
    if first.returncode != 0 or first.hosts_with("failed") or first.hosts_with("unreachable"):
        pytest.fail("first onboarding failed: " + first.tail(80, secrets))
    report_file = workdir / "report" / "onboarding.json"
    if not report_file.is_file():
        pytest.fail(f"the role wrote no JSON report at {report_file}")
    report = json.loads(report_file.read_text(encoding="utf-8"))

    assert sandbox.control("POST", "stats/reset").status_code == 200
    second = run_example(ONBOARD, env, workdir)
    second_stats = sandbox.control("GET", "stats").json()
    yield Deployment(sandbox, workdir, env, baseline, first, second, second_stats, report)
