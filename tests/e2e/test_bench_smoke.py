# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The onboarding benchmark runs (3 projects, two rounds) and prints its JSON; the re-run writes nothing. No timing asserts."""
from __future__ import annotations

import json
import subprocess
import sys

from e2e_support import REPO

BENCH = REPO / "benchmarks" / "bench_onboard.py"
RUN_KEYS = {"wall_s", "returncode", "hosts", "changed_hosts", "failed_hosts", "module_processes",
            "peak_module_rss_mib", "median_module_rss_mib", "by_module"}
SANDBOX_RUN_KEYS = RUN_KEYS | {"requests", "per_project", "tokens_issued"}
COLLECTION_MODULE = "ansible_collections.oidc_federation.azure.plugins.modules."


def test_bench_prints_figures_and_the_rerun_writes_nothing(tmp_path):
    output = tmp_path / "bench.json"
    completed = subprocess.run([sys.executable, str(BENCH), "--projects", "3", "--repeat", "2", "--output", str(output)],
                               capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, cwd=tmp_path,
                               check=False)
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(completed.stdout)
    assert json.loads(output.read_text(encoding="utf-8")) == result

    assert result["projects"] == 3 and result["forks"] >= 1 and result["ok"] is True
    assert SANDBOX_RUN_KEYS <= set(result["first_run"]) and SANDBOX_RUN_KEYS <= set(result["rerun"])
    assert RUN_KEYS | {"tasks_per_host"} <= set(result["floor"])
    for name in ("first_run", "rerun", "floor"):
        run = result[name]
        assert run["returncode"] == 0 and run["hosts"] == 3 and run["failed_hosts"] == 0, (name, run)
        assert run["wall_s"] > 0 and run["module_processes"] > 0 and run["peak_module_rss_mib"] > 0, (name, run)

    first, rerun = result["first_run"], result["rerun"]
    assert first["requests"]["writes"] > 0 and first["changed_hosts"] == 3, first
    assert rerun["requests"]["writes"] == 0 and rerun["per_project"]["writes"] == 0, rerun
    assert rerun["changed_hosts"] == 0 and rerun["requests"]["reads"] > 0, rerun
    assert result["rerun_writes"] == 0 and result["rerun_zero_writes"] is True
    assert first["tokens_issued"] > 0 and first["per_project"]["tokens"] > 0, first
    # per_host on the controller: each project's call goes from its action to the persistent worker, without a
    # module process (those left are the run-once tasks': the results directory and its clean-up)
    assert not any(name.startswith(COLLECTION_MODULE) for name in first["by_module"]), first["by_module"]
    assert set(first["by_module"]) == {"ansible.modules.tempfile", "ansible.modules.file"}, first["by_module"]
    assert result["floor"]["tasks_per_host"]["module"] == 0, result["floor"]["tasks_per_host"]
    assert set(result["floor"]["by_module"]) == {"ansible.modules.ping"}, result["floor"]["by_module"]
    for name in ("first_run", "rerun", "floor"):
        tasks = result[name]["task_wall_s"]
        assert tasks and all(set(t) == {"task", "wall_s", "action", "module", "hosts"} and t["wall_s"] >= 0
                             for t in tasks), (name, tasks)
    reconcile = [t for t in first["task_wall_s"] if "Reconcile the project" in t["task"]]
    assert len(reconcile) == 1, first["task_wall_s"]
    # the task list: the reconciliation is a module task on every host (run from the controller, no module process),
    # the outcome a controller action; the worker's start, the results directory and its clean-up modules run once
    assert reconcile[0]["action"] == "oidc_federation.azure.gitlab_oidc_projects" and reconcile[0]["module"] is True
    assert reconcile[0]["hosts"] == 3, reconcile
    outcome = [t for t in first["task_wall_s"] if t["action"] == "oidc_federation.azure.gitlab_oidc_result"]
    assert len(outcome) == 1 and outcome[0]["module"] is False and outcome[0]["hosts"] == 3, outcome
    # so the task list's floor has a ping per host for it (the process floor has none) and three pings once
    listed = result["floor_task_list"]
    assert listed["returncode"] == 0 and listed["hosts"] == 3 and "same_as" not in listed, listed
    assert listed["tasks_per_host"]["module"] == 1 and listed["tasks_per_host"]["module_once_per_play"] == 3, listed
    assert listed["tasks_per_host"]["controller"] < result["floor"]["tasks_per_host"]["controller"], listed
    assert listed["module_processes"] == 3 * 1 + 3, listed
    assert result["ratio_first_run_to_floor_task_list"] > 0 and result["ratio_rerun_to_floor_task_list"] > 0
    for figures in result["repeats"]:
        assert figures["ratio_first_run_to_floor_task_list"] == round(figures["first_run_s"] / figures["floor_task_list_s"], 2)
    assert result["ratio_first_run_to_floor"] > 0 and result["ratio_rerun_to_floor"] > 0
    # per_host hands its calls to one persistent worker per run, sampled and stopped by the benchmark
    for name in ("first_run", "rerun"):
        workers = result[name]["workers"]
        assert len(workers) == 1 and workers[0]["cpu_s"] > 0 and workers[0]["peak_rss_mib"] > 0, (name, workers)
        assert result[name]["peak_module_rss_mib"] >= workers[0]["peak_rss_mib"]
    assert result["floor"]["workers"] == []
    # the floor with the role's automatic argument validation: the same task count, the validation one of them
    role_floor = result["floor_role_validation"]
    assert role_floor["returncode"] == 0 and role_floor["hosts"] == 3 and role_floor["failed_hosts"] == 0, role_floor
    role_floor_tasks = [t["task"] for t in role_floor["task_wall_s"]]
    assert any("Validating arguments against arg spec 'main'" in t for t in role_floor_tasks), role_floor_tasks
    assert len(role_floor_tasks) == len(result["floor"]["task_wall_s"]), (role_floor_tasks, result["floor"]["task_wall_s"])
    assert result["ratio_first_run_to_floor_role_validation"] > 0 and result["ratio_rerun_to_floor_role_validation"] > 0
    # --repeat 2: two rounds on a sandbox reset in between (each first run writes again), medians at the top level
    assert result["repeat"] == 2 and len(result["repeats"]) == 2, result["repeats"]
    for figures in result["repeats"]:
        assert figures["graph_writes"] == result["writes"] > 0, figures
        assert figures["ratio_first_run_to_floor"] == round(figures["first_run_s"] / figures["floor_s"], 2), figures
    ratios = sorted(r["ratio_first_run_to_floor"] for r in result["repeats"])
    assert result["ratio_first_run_to_floor"] == round((ratios[0] + ratios[1]) / 2, 2)
    assert 0 <= result["rerun_no_slower_rounds"] <= 2
    # CPU of each run: ansible-playbook's tree, the workers and the sandbox; the floor has no worker, and writes
    # nothing to the sandbox beyond its (few) control requests
    for name in ("first_run", "rerun", "floor"):
        cpu = result[name]["cpu_s"]
        assert cpu["ansible"] > 0 and cpu["total"] == round(cpu["ansible"] + cpu["workers"] + cpu["sandbox"], 2), (name, cpu)
    assert result["first_run"]["cpu_s"]["workers"] > 0 and result["first_run"]["cpu_s"]["sandbox"] > 0
    assert result["floor"]["cpu_s"]["workers"] == 0
    for figures in result["repeats"]:
        assert figures["cpu_ratio_first_run_to_floor"] == round(figures["cpu_first_run_s"] / figures["cpu_floor_s"], 2), figures
    assert result["cpu_ratio_first_run_to_floor"] > 0 and 0 <= result["rerun_no_more_cpu_rounds"] <= 2
    # the sandbox's secrets never reach the output
    assert "SECRET" not in completed.stdout and "client_secret" not in completed.stdout


MODULE_BENCH = REPO / "benchmarks" / "bench_module_process.py"


def test_module_process_bench_prints_figures_and_shares_tokens(tmp_path):
    completed = subprocess.run([sys.executable, str(MODULE_BENCH), "--rounds", "1"], capture_output=True, text=True,
                               timeout=600, stdin=subprocess.DEVNULL, cwd=tmp_path, check=False)
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(completed.stdout)
    rows = {(row["variant"], row["module"]): row for row in result["results"]}
    modules = ("azure_ad_app", "federated_identity_credential", "role_assignment")
    assert set(rows) == {(v, m) for v in ("current, token_cache=true", "current, token_cache=false") for m in modules} \
        | {("ansible.builtin", "ping")}
    for row in rows.values():
        assert row["processes"] == 1 and row["mean_wall_s"] > 0 and row["mean_cpu_s"] > 0, row
    for module in modules:  # the cache was filled while converging: no process of the measured round asks Entra
        cached, uncached = rows[("current, token_cache=true", module)], rows[("current, token_cache=false", module)]
        assert cached["tokens_per_process"] == 0 and uncached["tokens_per_process"] >= 1, (cached, uncached)
        assert "azure.identity" not in cached["sdk_imported"] and "azure.identity" in uncached["sdk_imported"]
    assert "aiohttp" not in rows[("current, token_cache=true", "azure_ad_app")]["sdk_imported"]
    assert "SECRET" not in completed.stdout and "eyJ" not in completed.stdout
