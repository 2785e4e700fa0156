"""Runs the benchmark (``sandbox/bench.py``) briefly: it must work and every request must succeed.

The figures are printed (``pytest -s``), not asserted: timing depends on the machine.  For the real numbers run
``.venv/bin/python sandbox/bench.py``.
"""
from __future__ import annotations

import importlib.util

from conftest import SANDBOX_DIR


def test_benchmark_runs_without_errors():
    spec = importlib.util.spec_from_file_location("sandbox_bench", SANDBOX_DIR / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.run(requests=40, clients=2)
    print(report)
    assert report["start_seconds"] > 0 and report["reset_seconds_max"] > 0
    assert len(report["workloads"]) == 5
    for workload in report["workloads"]:
        assert workload["errors"] == 0, workload
        assert workload["requests"] == 40 and workload["req_per_s"] > 0
    assert report["stats_total"] >= 5 * 40
