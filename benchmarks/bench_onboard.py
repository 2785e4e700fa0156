#!/usr/bin/env python3
"""Benchmark: onboard N generated GitLab projects with the gitlab_oidc role on the sandbox.  Prints JSON.

Usage (``make bench`` runs it with ``--projects ${BENCH_PROJECTS:-100} --strategy ${BENCH_STRATEGY:-per_host}
--quotas ${BENCH_QUOTAS:-off}``)::

    .venv/bin/python benchmarks/bench_onboard.py --projects 100 [--strategy per_host|bulk] [--quotas on|off]
        [--forks 5] [--repeat 1] [--keep] [--output FILE]

In a temporary directory it starts its own sandbox (``python -m oidc_sandbox start``), writes an inventory of N
projects with varied trust and roles, then measures, in one go:

1. ``first_run``: ``playbooks/onboard.yml`` on the empty tenant;
2. ``rerun``: the same again (must write nothing: checked through ``/_sandbox/stats``);
3. ``floor``: Ansible's own floor, the same inventory and forks running per host as many module tasks as the
   onboarding ran module processes per host (``ansible.builtin.ping``) and as many controller-only tasks
   (``ansible.builtin.set_fact``) as its other tasks, so ``ratio_*_to_floor`` is the cost of our modules over
   Ansible's fixed cost per task;
4. ``floor_role_validation``: the same floor with its per-host tasks inside a role that has the gitlab_oidc role's
   argument spec, defaults and vars, applied with ``roles:``, so Ansible's automatic role argument validation is one
   of them (it costs a host far more than a ``set_fact``): what a play that keeps the automatic validation pays
   Ansible at least. The sample playbooks import the role with ``rolespec_validate: false`` (the role validates
   every host in one task of its own), so the runs above have no such task.
5. ``floor_task_list``: the floor of the task list as written, each task whose action is a module with code a
   ``ping`` (per host or once), also one that an action plugin ran without a module process (``per_host``'s calls
   from the controller, which ``floor`` counts as the ``set_fact`` they cost), so ``ratio_*_to_floor_task_list`` is
   the run against what Ansible needs to run those module tasks as modules. Run only when its shape differs from
   ``floor``'s (else ``same_as: floor``).

``--repeat K`` measures the runs K times in turn, the sandbox reset to its empty tenant (and a new token cache
directory) before each round, so each first run is paired with floors measured a minute later, not ten: the
top-level figures are then medians over the rounds (each ratio the median of the rounds' own ratios) and
``repeats`` lists every round's; the detailed figures of each run (``first_run``, ``rerun``, ...) are those of the
first round. On a machine whose speed drifts from one minute to the next (shared CPUs), one round's ratio moves by
+-0.2; the rounds show by how much.

``--strategy`` sets the role's ``gitlab_oidc_strategy``. ``--quotas on`` makes the sandbox enforce Graph's published
identity and access limits (token buckets: 3,000 writes per 150 s per app and tenant, resource units per 10 s for a
small tenant, ...), so a run that writes faster than the quota gets 429s; ``quota_floor_s`` is the least time the
sustained write quota (20 writes/s) allows for the Graph writes made, ``quota_floor_burst_s`` the same when the
bucket's initial 3,000 writes are spent at once.

A persistent worker (the role's ``gitlab_oidc_persistent_worker`` with ``per_host``) lives under the run's own token
cache directory; its CPU time and peak RSS are sampled from /proc every second during each run (``workers``; its
peak counts in ``peak_module_rss_mib``), and it is stopped after the run, so every run starts its own.

For each run: wall time, CPU time (``cpu_s``: ansible-playbook's tree, the workers, the sandbox; each round also
gives its CPU ratios to the floor, which the drifting speed of a shared machine moves much less than the wall-time
ratios), Graph/ARM requests per project split into reads and writes, access tokens issued, and the
peak RSS of a module process (``benchmarks/rss_site/sitecustomize.py``, first on the run's ``PYTHONPATH``, records
``getrusage(RUSAGE_SELF).ru_maxrss`` as each module process exits), and the wall time of each task (``task_wall_s``, from the callback in
``benchmarks/callback_plugins/``).  Timings are printed, never asserted; the exit code is 1 only when
a run fails, or when the re-run changes or writes anything.  See docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ansible_harness as harness  # noqa: E402  (benchmarks/ is not a package)

REPO = harness.REPO
ONBOARD = REPO / "playbooks" / "onboard.yml"
SANDBOX_DIR = REPO / "sandbox"
DEFAULT_FORKS = 5  # Ansible's own default; see docs/benchmarks.md for other values
STRATEGIES = ("per_host", "bulk")
# Graph's identity write quota per app and tenant (api-facts §8, https://learn.microsoft.com/graph/throttling-limits):
# a token bucket of 3,000 writes refilled over 150 s.
GRAPH_WRITE_QUOTA = 3000
GRAPH_WRITE_WINDOW_S = 150.0
QUOTA_FAULTS = {"graph_quotas": {"tenant_size": "S", "scale": 1.0}}
RESOURCE_GROUP = "rg-sandbox"  # seeded by the sandbox
# Ansible callback that records each task's wall time (task_wall_s in each run's figures)
TASK_TIMES_PLUGIN_DIR = Path(__file__).resolve().parent / "callback_plugins"
TASK_TIMES_CALLBACK = "bench_task_times"

# Trust patterns cycled through the generated projects: exact and flexible credentials, branches and tags.
TRUST_PATTERNS: tuple[dict[str, Any], ...] = (
    {"gitlab_oidc_branches": ["main"]},
    {"gitlab_oidc_branches": ["*"]},
    {"gitlab_oidc_branches": ["main"], "gitlab_oidc_tags": ["v*"]},
    {"gitlab_oidc_branches": ["main", "develop", "release/*"]},
    {"gitlab_oidc_tags": ["*"]},
    {"gitlab_oidc_any_ref": True},
)


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the JSON result)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- the sandbox ------------------------------------------------------------------------------------------------

def read_env_file(path: Path) -> dict[str, str]:
    """The ``export NAME=value`` lines of the sandbox's env file."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("export "):
            name, _, raw = line[len("export "):].partition("=")
            parsed = shlex.split(raw)
            values[name] = parsed[0] if parsed else ""
    return values


class Sandbox:
    """A sandbox process started with the CLI in ``state_dir``; its control API over HTTPS."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.env: dict[str, str] = {}
        self.http: httpx.Client | None = None

    def _cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(SANDBOX_DIR)}
        env.pop("SANDBOX_STATE_FILE", None)
        return subprocess.run([sys.executable, "-m", "oidc_sandbox", *args, "--state-dir", str(self.state_dir)],
                              capture_output=True, text=True, env=env, timeout=120, check=False,
                              stdin=subprocess.DEVNULL)

    def start(self) -> None:
        result = self._cli("start")
        if result.returncode != 0:
            raise harness.HarnessError(f"sandbox did not start: {result.stderr.strip()[-1500:]}")
        self.env = read_env_file(self.state_dir / "env")
        self.http = httpx.Client(base_url=self.env["SANDBOX_URL"], verify=self.env["SANDBOX_CA_FILE"],
                                 timeout=60.0, trust_env=False)

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
        self._cli("stop")

    def control(self, method: str, path: str) -> dict[str, Any]:
        assert self.http is not None
        response = self.http.request(method, f"/_sandbox/{path}")
        response.raise_for_status()
        return response.json()

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the sandbox process has used so far, from /proc; 0.0 where it cannot be read."""
        try:
            return process_cpu_s(Path("/proc") / (self.state_dir / "pid").read_text().strip())
        except (OSError, ValueError, IndexError):
            return 0.0

    def reset_stats(self) -> None:
        self.control("POST", "stats/reset")

    def stats(self) -> dict[str, Any]:
        return self.control("GET", "stats")

    def set_faults(self, spec: dict[str, Any]) -> None:
        assert self.http is not None
        response = self.http.post("/_sandbox/faults", json=spec)
        response.raise_for_status()


# --- the generated inventory ---------------------------------------------------------------------------------

def project_vars(index: int) -> dict[str, Any]:
    """Host variables of generated project ``index``: trust pattern, sub claim and roles vary with the index."""
    host_vars: dict[str, Any] = dict(TRUST_PATTERNS[index % len(TRUST_PATTERNS)])
    if index % 4 == 3:  # a quarter use GitLab 18's project_id-led sub claim
        host_vars["gitlab_oidc_project_id"] = 100000 + index
        host_vars["gitlab_oidc_sub_claim_components"] = ["project_id", "ref_type", "ref"]
    if index % 5 == 1:  # Reader on a resource group instead of the subscription
        host_vars["gitlab_oidc_role_assignments"] = [{"role": "Reader", "resource_group": RESOURCE_GROUP}]
    elif index % 5 == 2:  # two roles
        host_vars["gitlab_oidc_role_assignments"] = [{"role": "Reader"},
                                                     {"role": "Contributor", "resource_group": RESOURCE_GROUP}]
    return host_vars


def project_path(index: int) -> str:
    return f"bench/group-{index // 10:03d}/project-{index:04d}"


def write_inventory(path: Path, projects: int, sandbox_env: dict[str, str], report_dir: Path,
                    strategy: str = "per_host") -> None:
    """An inventory of ``projects`` GitLab projects on the sandbox's gitlab.com stand-in (group gitlab_projects)."""
    issuer = sandbox_env["SANDBOX_GITLAB_ISSUER"]
    inventory = {"all": {
        "vars": {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "gitlab_oidc_issuer": issuer,
            "gitlab_oidc_gitlab_issuers": [issuer],
            "gitlab_oidc_role_assignments": [{"role": "Reader"}],
            "gitlab_oidc_report_dir": str(report_dir),
            "gitlab_oidc_strategy": strategy,
        },
        "hosts": {
            # The role delegates its tasks to localhost: its modules run in ansible-playbook's own Python, as with the
            # implicit localhost (and as the controller-side calls of gitlab_oidc_projects require).
            "localhost": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        },
        "children": {"gitlab_projects": {"hosts": {project_path(i): project_vars(i) for i in range(projects)}}},
    }}
    path.write_text(yaml.safe_dump(inventory, sort_keys=False), encoding="utf-8")


def floor_tasks(shape: dict[str, Any], controller_tasks: int) -> list[dict[str, Any]]:
    """The tasks of a floor of ``shape`` (``floor_shape``): per host ``module`` x ping and ``controller_tasks`` x
    set_fact, then ``module_once_per_play`` x ping once for the play (as the role's report and bulk tasks run)."""
    tasks: list[dict[str, Any]] = [{"name": f"Module task {i + 1}", "ansible.builtin.ping": {}}
                                   for i in range(shape["module"])]
    tasks += [{"name": f"Controller task {i + 1}", "ansible.builtin.set_fact": {f"bench_floor_{i}": i}}
              for i in range(max(0, controller_tasks))]
    tasks += [{"name": f"Once-per-play module task {i + 1}", "ansible.builtin.ping": {}, "run_once": True}
              for i in range(shape["module_once_per_play"])]
    return tasks


def write_floor_playbook(path: Path, shape: dict[str, Any]) -> None:
    """Ansible's floor: the tasks of ``shape`` (``floor_tasks``) in a play on every project, nothing else."""
    play = [{"name": "Ansible's floor for the same inventory and task count", "hosts": "gitlab_projects",
             "gather_facts": False, "tasks": floor_tasks(shape, shape["controller"])}]
    path.write_text(yaml.safe_dump(play, sort_keys=False), encoding="utf-8")


def write_role_floor(workdir: Path, shape: dict[str, Any]) -> Path:
    """The floor again, its per-host tasks inside a role that carries the gitlab_oidc role's argument spec, defaults
    and vars, so Ansible prepends the same automatic argument validation to them (it replaces one ``set_fact``: the
    recap counts it as one of the controller tasks). Returns the playbook."""
    role = workdir / "roles" / "floor_role"  # found next to the playbook
    source = REPO / "roles" / "gitlab_oidc"
    for part in ("meta/argument_specs.yml", "defaults/main.yml", "vars/main.yml"):
        (role / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / part, role / part)
    tasks = floor_tasks(shape, shape["controller"] - 1)
    (role / "tasks").mkdir(parents=True, exist_ok=True)
    (role / "tasks" / "main.yml").write_text(yaml.safe_dump(tasks, sort_keys=False), encoding="utf-8")
    play = [{"name": "Ansible's floor with the role's argument validation", "hosts": "gitlab_projects",
             "gather_facts": False, "roles": ["floor_role"]}]
    path = workdir / "floor_role.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False), encoding="utf-8")
    return path


def floor_shape(first: harness.PlaybookRun, projects: int, module: int, once: int) -> dict[str, Any]:
    """The tasks of a floor for a run (``first``) with ``module`` module tasks per host and ``once`` once per play:
    the rest of each host's tasks (its recap) as controller tasks."""
    controller = max(0, round(tasks_per_host(first) - once / projects) - module)
    return {"module": module, "controller": controller, "module_once_per_play": once,
            "module_used": "ansible.builtin.ping", "controller_task_used": "ansible.builtin.set_fact"}


def module_tasks_listed(tasks: list[dict[str, Any]], projects: int) -> tuple[int, int]:
    """(module tasks per host, module tasks once per play) of a run's task list (``task_wall_s``): the tasks whose
    action is a module with code (``module``), whether or not they ran a module process; a task that ran on every
    project counts per host, one that ran on fewer (``run_once``) once for the play."""
    per_host = sum(1 for t in tasks if t.get("module") and int(t.get("hosts", 0)) >= projects)
    once = sum(1 for t in tasks if t.get("module") and 0 < int(t.get("hosts", 0)) < projects)
    return per_host, once


def module_tasks_of(records: list[dict[str, Any]], projects: int) -> tuple[int, int]:
    """(module processes per host, module processes once per play) of a run: a module that ran for every project
    ran per host (per_host: the collection's module; bulk: none), the others once for the play (report, bulk call)."""
    counts: dict[str, int] = {}
    for record in records:
        counts[str(record["module"])] = counts.get(str(record["module"]), 0) + 1
    per_host = sum(count for count in counts.values() if count >= projects) / projects if projects else 0
    per_host_tasks = round(per_host)
    return per_host_tasks, max(0, len(records) - per_host_tasks * projects)


# --- measuring -----------------------------------------------------------------------------------------------

def rss_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Module processes and their peak RSS (MiB), overall and per module."""
    by_module: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_module.setdefault(str(record["module"]), []).append(record)
    rss = [int(r["maxrss_kb"]) for r in records]
    return {
        "module_processes": len(records),
        "peak_module_rss_mib": round(max(rss, default=0) / 1024, 1),
        "median_module_rss_mib": round(statistics.median(rss) / 1024, 1) if rss else 0.0,
        "by_module": {name: {"processes": len(items),
                             "peak_rss_mib": round(max(int(r["maxrss_kb"]) for r in items) / 1024, 1),
                             "mean_wall_s": round(statistics.mean(float(r["wall_s"]) for r in items), 2)}
                      for name, items in sorted(by_module.items())},
    }


WORKER_MARK = "_worker import serve_forever"


def process_cpu_s(proc_dir: Path) -> float:
    """CPU seconds (user + system) of the process whose /proc directory is ``proc_dir``, from its ``stat``."""
    fields = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_processes(workdir: Path) -> dict[int, dict[str, Any]]:
    """The persistent workers of this benchmark (their socket lies under ``workdir``): pid -> CPU seconds and peak
    RSS so far, read from /proc."""
    found: dict[int, dict[str, Any]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            if WORKER_MARK not in cmdline or str(workdir) not in cmdline:
                continue
            status = dict(line.split(":", 1) for line in (entry / "status").read_text().splitlines() if ":" in line)
            found[int(entry.name)] = {"cpu_s": round(process_cpu_s(entry), 2),
                                      "peak_rss_mib": round(int(status["VmHWM"].split()[0]) / 1024, 1)}
        except (OSError, ValueError, KeyError, IndexError):
            continue
    return found


class WorkerWatch:
    """Samples the persistent workers every ``interval`` seconds while a run goes on (a worker exits 20 s after its
    last call, which can be before the run ends), then stops those still alive. ``figures()``: CPU seconds (as last
    seen, so up to ``interval`` short) and peak RSS of each worker of the run."""

    def __init__(self, workdir: Path, interval: float = 1.0) -> None:
        self.workdir = workdir
        self.interval = interval
        self.seen: dict[int, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "WorkerWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        for pid in worker_processes(self.workdir):
            try:
                os.kill(pid, 15)
            except OSError:
                pass

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        for pid, figures in worker_processes(self.workdir).items():
            self.seen[pid] = figures

    def figures(self) -> list[dict[str, Any]]:
        return [self.seen[pid] for pid in sorted(self.seen)]


def run_summary(run: harness.PlaybookRun, stats: dict[str, Any] | None, projects: int,
                records: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one run."""
    summary: dict[str, Any] = {
        "wall_s": round(run.wall_s, 2),
        "returncode": run.returncode,
        "hosts": len(run.recap),
        "changed_hosts": len(run.hosts_with("changed")),
        "failed_hosts": len(run.hosts_with("failed")) + len(run.hosts_with("unreachable")),
    }
    if stats is not None:
        graph, arm = stats["graph"], stats["arm"]
        # As the services' quotas count them: each inner $batch request is a read or a write, the envelope is not.
        reads, writes = int(graph["reads"]) + int(arm["reads"]), int(graph["writes"]) + int(arm["writes"])
        summary["requests"] = {"reads": reads, "writes": writes, "token": int(stats["by_service"].get("entra", 0)),
                               "throttled": int(stats["throttled"]), "quota_throttled": int(graph["quota_throttled"]),
                               "errors_5xx": int(stats["errors_5xx"]), "http_requests": int(stats["reads"]) + int(stats["writes"]),
                               "graph_batches": int(graph["batches"]), "graph_batch_requests": int(graph["batch_requests"])}
        summary["graph_writes"] = graph_writes(stats)
        summary["per_project"] = {"reads": round(reads / projects, 2), "writes": round(writes / projects, 2),
                                  "tokens": round(int(stats["tokens_issued"]) / projects, 2)}
        summary["tokens_issued"] = int(stats["tokens_issued"])
        summary["routes"] = {route: count for route, count in sorted(stats["by_route"].items())
                             if not route.split(" ", 1)[-1].startswith("/_sandbox")}
    summary.update(rss_summary(records))
    return summary


def read_task_times(path: Path) -> list[dict[str, Any]]:
    """The wall time of each task of a run (``callback_plugins/bench_task_times.py``), in the order they started."""
    try:
        return list(json.loads(path.read_text(encoding="utf-8"))["tasks"])
    except (OSError, ValueError, KeyError):
        return []


def graph_writes(stats: dict[str, Any]) -> int:
    """Graph writes as Graph's quota counts them (the sandbox's ``graph.writes``): every write Graph ran, each inner
    request of a ``$batch`` included, the envelope not."""
    return int(stats["graph"]["writes"])


def quota_floor(writes: int) -> tuple[float, float]:
    """(sustained, with the initial burst): the least seconds Graph's write quota allows for ``writes``."""
    rate = GRAPH_WRITE_QUOTA / GRAPH_WRITE_WINDOW_S
    return round(writes / rate, 2), round(max(0, writes - GRAPH_WRITE_QUOTA) / rate, 2)


def tasks_per_host(run: harness.PlaybookRun) -> float:
    """Mean number of tasks a host went through (ran or skipped) in ``run``."""
    counts = [c.get("ok", 0) + c.get("skipped", 0) + c.get("failed", 0) for c in run.recap.values()]
    return statistics.mean(counts) if counts else 0.0


def measure(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], list[str]]:
    """Run the three measurements; returns (result, problems)."""
    harness.ensure_collection()
    sandbox = Sandbox(workdir / "sandbox")
    sandbox.state_dir.mkdir()
    started = time.perf_counter()
    sandbox.start()
    log(f"sandbox up at {sandbox.env['SANDBOX_URL']} in {time.perf_counter() - started:.1f} s")
    problems: list[str] = []
    secrets = [value for name, value in sandbox.env.items() if "SECRET" in name]
    try:
        inventory = workdir / "inventory.yml"
        write_inventory(inventory, args.projects, sandbox.env, workdir / "report", args.strategy)
        env = harness.ansible_env(sandbox.env, workdir, ANSIBLE_CALLBACK_PLUGINS=str(TASK_TIMES_PLUGIN_DIR),
                                  ANSIBLE_CALLBACKS_ENABLED=TASK_TIMES_CALLBACK, **harness.rss_site_env(workdir / "rss.log"))
        timeout = 600 + 30 * args.projects

        round_env = dict(env)

        def run(name: str, playbook: Path, with_stats: bool) -> tuple[harness.PlaybookRun, dict[str, Any], list[dict[str, Any]]]:
            """One measured run: (its result, its figures, the RSS records of its module processes)."""
            rss_log = workdir / "rss.log"
            rss_log.unlink(missing_ok=True)
            if with_stats:
                sandbox.reset_stats()
            log(f"{name}: {args.projects} project(s), forks {args.forks} ...")
            times_file = workdir / f"{name}.task-times.json"
            children, sandbox_cpu = resource.getrusage(resource.RUSAGE_CHILDREN), sandbox.cpu_s()
            with WorkerWatch(workdir) as workers:
                result = harness.run_playbook(playbook, inventory, env=dict(round_env, BENCH_TASK_TIMES_FILE=str(times_file)),
                                              cwd=workdir, forks=args.forks, timeout=timeout)
            children_after, sandbox_cpu = resource.getrusage(resource.RUSAGE_CHILDREN), sandbox.cpu_s() - sandbox_cpu
            (workdir / f"{name}.log").write_text(harness.redact(result.output, secrets), encoding="utf-8")
            stats = sandbox.stats() if with_stats else None
            records = harness.read_rss_log(rss_log)
            summary = run_summary(result, stats, args.projects, records)
            summary["workers"] = workers.figures()
            # CPU of the whole run on this machine: ansible-playbook with its forks and module processes, the
            # persistent workers, and the sandbox (the services' side, which a real tenant would not run here)
            ansible_cpu = (children_after.ru_utime - children.ru_utime) + (children_after.ru_stime - children.ru_stime)
            workers_cpu = sum(w["cpu_s"] for w in summary["workers"])
            summary["cpu_s"] = {"ansible": round(ansible_cpu, 2), "workers": round(workers_cpu, 2),
                                "sandbox": round(sandbox_cpu, 2), "total": round(ansible_cpu + workers_cpu + sandbox_cpu, 2)}
            if summary["workers"]:
                summary["peak_module_rss_mib"] = max([summary["peak_module_rss_mib"]]
                                                     + [w["peak_rss_mib"] for w in summary["workers"]])
            summary["task_wall_s"] = read_task_times(times_file)
            if rss_log.exists():
                rss_log.rename(workdir / f"{name}.rss.log")
            log(f"{name}: {summary['wall_s']} s, rc {result.returncode}")
            if result.returncode != 0 or summary["failed_hosts"] or len(result.recap) != args.projects:
                problems.append(f"{name} failed (rc {result.returncode}, {summary['failed_hosts']} failed host(s), "
                                f"{len(result.recap)} of {args.projects} in the recap):\n"
                                + result.tail(40, secrets))
            return result, summary, records

        def one_round(index: int) -> dict[str, dict[str, Any]]:
            """The runs of round ``index`` (0: the sandbox as started; later rounds reset it first)."""
            if index:
                log(f"round {index + 1} of {args.repeat}: the sandbox reset to its empty tenant")
                sandbox.control("POST", "reset")
            if args.quotas == "on":
                sandbox.set_faults(QUOTA_FAULTS)
            round_env["AZURE_TOKEN_CACHE_DIR"] = str(workdir / f"token-cache-{index + 1}")
            first, first_summary, first_records = run("first_run", ONBOARD, True)
            _, rerun_summary, _ = run("rerun", ONBOARD, True)
            rerun_writes = rerun_summary.get("requests", {}).get("writes")
            if rerun_writes != 0:
                problems.append(f"the re-run made {rerun_writes} write(s); it must make none")
            if rerun_summary["changed_hosts"]:
                problems.append(f"the re-run reported changes on {rerun_summary['changed_hosts']} host(s)")

            shape = floor_shape(first, args.projects, *module_tasks_of(first_records, args.projects))
            floor_playbook = workdir / "floor.yml"
            write_floor_playbook(floor_playbook, shape)
            _, floor_summary, _ = run("floor", floor_playbook, False)
            floor_summary["tasks_per_host"] = shape
            role_floor_playbook = write_role_floor(workdir, shape)
            _, role_floor_summary, _ = run("floor_role", role_floor_playbook, False)
            # The floor of the task list: each module task as a module task (ping), also one whose action plugin ran
            # it without a module process (per_host's calls from the controller); the same as `floor` otherwise.
            listed = floor_shape(first, args.projects, *module_tasks_listed(first_summary["task_wall_s"], args.projects))
            if listed == shape:
                list_summary = dict(floor_summary, same_as="floor")
            else:
                list_playbook = workdir / "floor_task_list.yml"
                write_floor_playbook(list_playbook, listed)
                _, list_summary, _ = run("floor_task_list", list_playbook, False)
                list_summary["tasks_per_host"] = listed
            return {"first_run": first_summary, "rerun": rerun_summary, "floor": floor_summary,
                    "floor_role_validation": role_floor_summary, "floor_task_list": list_summary}

        rounds = [one_round(index) for index in range(args.repeat)]
    finally:
        sandbox.stop()

    first_summary, rerun_summary = rounds[0]["first_run"], rounds[0]["rerun"]
    floor_summary, role_floor_summary = rounds[0]["floor"], rounds[0]["floor_role_validation"]
    rerun_writes = max(int(r["rerun"].get("requests", {}).get("writes") or 0) for r in rounds)
    repeats = [round_figures(r) for r in rounds]
    writes = int(first_summary.get("graph_writes", 0))
    floor_sustained, floor_burst = quota_floor(writes)
    result = {
        "benchmark": "gitlab_oidc onboarding on the sandbox",
        "strategy": args.strategy,
        "quotas": args.quotas,
        "projects": args.projects,
        "forks": args.forks,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "ansible_core": ansible_core_version(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "repeat": args.repeat,
        "first_run": first_summary,
        "rerun": rerun_summary,
        "floor": floor_summary,
        "ratio_first_run_to_floor": median_of(repeats, "ratio_first_run_to_floor"),
        "ratio_rerun_to_floor": median_of(repeats, "ratio_rerun_to_floor"),
        # The same floor with the role's automatic argument validation as one of its controller tasks: what a play
        # that applies the role with roles: (Ansible validating every host in a task of its own) pays at least.
        "floor_role_validation": role_floor_summary,
        "ratio_first_run_to_floor_role_validation": median_of(repeats, "ratio_first_run_to_floor_role_validation"),
        "ratio_rerun_to_floor_role_validation": median_of(repeats, "ratio_rerun_to_floor_role_validation"),
        # The floor of the task list as written: every module task a ping, also those an action plugin ran without a
        # module process (per_host's calls from the controller), which `floor` counts as the set_fact they cost.
        "floor_task_list": rounds[0]["floor_task_list"],
        "ratio_first_run_to_floor_task_list": median_of(repeats, "ratio_first_run_to_floor_task_list"),
        "ratio_rerun_to_floor_task_list": median_of(repeats, "ratio_rerun_to_floor_task_list"),
        "first_run_s": median_of(repeats, "first_run_s"),
        "rerun_s": median_of(repeats, "rerun_s"),
        "writes": writes,
        "quota_floor_s": floor_sustained,
        "quota_floor_burst_s": floor_burst,
        "ratio_first_run_to_quota_floor": (median_of(repeats, "first_run_s", floor_sustained) if floor_sustained else None),
        "ratio_first_run_to_quota_floor_burst": (median_of(repeats, "first_run_s", floor_burst) if floor_burst else None),
        "throttled_first_run": first_summary.get("requests", {}).get("throttled"),
        "throttled": max(int(r["first_run"].get("requests", {}).get("throttled") or 0) for r in rounds),
        "module_peak_rss_mb": max(max(r["first_run"]["peak_module_rss_mib"], r["rerun"]["peak_module_rss_mib"]) for r in rounds),
        "rerun_writes": rerun_writes,
        "rerun_zero_writes": rerun_writes == 0,
        # every round's own figures (one round without --repeat), and in how many the re-run took no longer
        "repeats": repeats,
        "rerun_no_slower_rounds": sum(1 for r in repeats if r["rerun_s"] <= r["first_run_s"]),
        # the medians of the CPU figures, and in how many rounds the re-run used no more CPU than the first run
        "cpu_ratio_first_run_to_floor": median_of(repeats, "cpu_ratio_first_run_to_floor"),
        "cpu_ratio_rerun_to_floor": median_of(repeats, "cpu_ratio_rerun_to_floor"),
        "rerun_no_more_cpu_rounds": sum(1 for r in repeats if r["cpu_rerun_s"] <= r["cpu_first_run_s"]),
        "ok": not problems,
    }
    return result, problems


def round_figures(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The headline figures of one round: wall times and each run's ratio to that round's floors."""
    first, rerun = float(runs["first_run"]["wall_s"]), float(runs["rerun"]["wall_s"])
    floor = max(float(runs["floor"]["wall_s"]), 1e-9)
    role_floor = max(float(runs["floor_role_validation"]["wall_s"]), 1e-9)
    list_floor = max(float(runs["floor_task_list"]["wall_s"]), 1e-9)
    cpu_first, cpu_rerun, cpu_floor = (cpu_total(runs[name]) for name in ("first_run", "rerun", "floor"))
    return {"first_run_s": first, "rerun_s": rerun, "floor_s": round(floor, 2), "floor_role_validation_s": round(role_floor, 2),
            "ratio_first_run_to_floor": round(first / floor, 2), "ratio_rerun_to_floor": round(rerun / floor, 2),
            "ratio_first_run_to_floor_role_validation": round(first / role_floor, 2),
            "ratio_rerun_to_floor_role_validation": round(rerun / role_floor, 2),
            "floor_task_list_s": round(list_floor, 2),
            "ratio_first_run_to_floor_task_list": round(first / list_floor, 2),
            "ratio_rerun_to_floor_task_list": round(rerun / list_floor, 2),
            "graph_writes": int(runs["first_run"].get("graph_writes", 0)),
            # the same ratios in CPU seconds (every process of the run, the sandbox's included)
            "cpu_first_run_s": cpu_first, "cpu_rerun_s": cpu_rerun, "cpu_floor_s": cpu_floor,
            "cpu_ratio_first_run_to_floor": round(cpu_first / max(cpu_floor, 1e-9), 2),
            "cpu_ratio_rerun_to_floor": round(cpu_rerun / max(cpu_floor, 1e-9), 2)}


def cpu_total(summary: dict[str, Any]) -> float:
    """A run's CPU seconds, every process included (0.0 when not measured)."""
    return float(summary.get("cpu_s", {}).get("total", 0.0))


def median_of(repeats: list[dict[str, Any]], key: str, divisor: float = 1.0) -> float:
    """The median over the rounds of ``key`` (divided by ``divisor``), rounded to 2 places."""
    return round(statistics.median(float(r[key]) for r in repeats) / divisor, 2)


def ansible_core_version() -> str:
    try:
        from ansible.release import __version__
    except ImportError:  # pragma: no cover - the dev venv has ansible-core
        return "unknown"
    return __version__


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=100, help="number of generated projects (default 100)")
    parser.add_argument("--forks", type=int, default=DEFAULT_FORKS,
                        help=f"ansible-playbook --forks for every run (default {DEFAULT_FORKS}, Ansible's default)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="per_host",
                        help="the role's gitlab_oidc_strategy (default per_host)")
    parser.add_argument("--quotas", choices=("on", "off"), default="off",
                        help="on: the sandbox enforces Graph's published identity write quotas (default off)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure the runs this many times in turn, the sandbox reset before each round; "
                             "the top-level figures are then medians over the rounds (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, inventory, report)")
    parser.add_argument("--output", type=Path, help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    if args.projects < 1:
        parser.error("--projects must be at least 1")
    if args.forks < 1:
        parser.error("--forks must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-onboard-"))
    problems: list[str] = ["interrupted"]
    try:
        result, problems = measure(args, workdir)
        text = json.dumps(result, indent=2)
        print(text, flush=True)
        if args.output:
            args.output.write_text(text + "\n", encoding="utf-8")
        for problem in problems:
            log(f"PROBLEM: {problem}")
    except harness.HarnessError as exc:
        log(f"error: {exc}")
        return 2
    finally:
        if args.keep or problems:
            log(f"logs, inventory and report kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
