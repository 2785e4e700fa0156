#!/usr/bin/env python3
"""Benchmark: what one module process of the collection costs, outside Ansible.  Prints JSON.

Usage::

    .venv/bin/python benchmarks/bench_module_process.py [--rounds 8] [--collections DIR ...] [--output FILE]

It starts its own sandbox and runs ``azure_ad_app`` and ``federated_identity_credential`` (Microsoft Graph),
``role_assignment`` (Graph and ARM) and ``ansible.builtin.ping`` (the floor of any module), each in a fresh
interpreter as Ansible does (``python <module>.py <args file>``), ``--rounds`` times, the variants alternating:
every collections directory given with ``--collections`` (default: this checkout's ``.build/collections``; give an
older checkout's to compare), with the token cache on (in a temporary directory that starts empty) and off. For each
module and variant: mean and median wall time, mean CPU time (user + system, which the load of the machine changes
much less than wall time), access tokens the sandbox issued per process, and the SDK packages the process imported
(from a ``-X importtime`` run). Timings are printed, never asserted. See docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ansible_harness as harness  # noqa: E402  (benchmarks/ is not a package)
from bench_onboard import Sandbox, log  # noqa: E402

SDK_PACKAGES = ('httpx', 'kiota_abstractions', 'kiota_http', 'msgraph_core', 'msgraph', 'azure.core', 'azure.mgmt',
                'azure.identity', 'msal', 'aiohttp', 'requests', 'cryptography', 'rich')
MODULES_DIR = Path('ansible_collections/oidc_federation/azure/plugins/modules')


def run_process(command: list[str], env: dict[str, str], args: dict[str, Any], workdir: Path) -> tuple[float, float, dict, str]:
    """Run one module process; returns (wall s, CPU s, result, stderr)."""
    args_file = workdir / 'args.json'
    args_file.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': args}), encoding='utf-8')
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(command + [str(args_file)], env=env, capture_output=True, text=True, cwd=workdir, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise harness.HarnessError(f'{command[-1]} printed no JSON: {harness.redact(proc.stderr[-1500:])}') from None
    if result.get('failed'):
        raise harness.HarnessError(f"{command[-1]} failed: {harness.redact(result.get('msg', ''))}")
    return wall, cpu, result, proc.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=8, help='runs of each module per variant (default 8)')
    parser.add_argument('--collections', type=Path, action='append',
                        help='a collections directory holding ansible_collections/oidc_federation/azure (repeatable)')
    parser.add_argument('--output', type=Path, help='also write the JSON result to this file')
    options = parser.parse_args()
    try:
        harness.ensure_collection()
    except harness.HarnessError as exc:
        log(str(exc))
        return 2
    roots = [root.resolve() for root in options.collections or [harness.collections_root()]]
    with tempfile.TemporaryDirectory(prefix='bench-module-') as tmp:
        workdir = Path(tmp)
        sandbox = Sandbox(workdir / 'sandbox')
        sandbox.start()
        try:
            result = measure(sandbox, roots, options.rounds, workdir)
        finally:
            sandbox.stop()
    text = json.dumps(result, indent=1)
    print(text)
    if options.output:
        options.output.write_text(text + '\n', encoding='utf-8')
    return 0


def measure(sandbox: Sandbox, roots: list[Path], rounds: int, workdir: Path) -> dict[str, Any]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(('AZURE_', 'SANDBOX_'))}
    base_env.update({k: v for k, v in sandbox.env.items() if k.startswith('AZURE_') or k in ('REQUESTS_CA_BUNDLE', 'SSL_CERT_FILE')})
    variants = []
    for index, root in enumerate(roots):
        name = 'collections[{0}]'.format(index) if len(roots) > 1 else 'current'
        cache_dir = workdir / 'tokens-{0}'.format(index)
        for cache in (True, False):
            env = dict(base_env, PYTHONPATH=str(root.resolve()), AZURE_TOKEN_CACHE=str(cache).lower(),
                       AZURE_TOKEN_CACHE_DIR=str(cache_dir))
            variants.append({'variant': '{0}, token_cache={1}'.format(name, str(cache).lower()), 'root': str(root), 'env': env})
    env0 = variants[0]['env']
    module = lambda root, name: [sys.executable, str(Path(root) / MODULES_DIR / (name + '.py'))]  # noqa: E731
    app = run_process(module(roots[0], 'azure_ad_app'), env0, {'unique_name': 'bench-module-process'}, workdir)[2]
    cases = {
        'azure_ad_app': {'unique_name': 'bench-module-process'},
        'federated_identity_credential': {'app_unique_name': 'bench-module-process', 'issuer': sandbox.env['SANDBOX_GITLAB_ISSUER'],
                                          'gitlab': {'project_path': 'bench/module', 'ref_type': 'branch', 'ref': 'main'}},
        'role_assignment': {'app_id': app['app_id'], 'role': 'Reader', 'scope': '/subscriptions/' + sandbox.env['AZURE_SUBSCRIPTION_ID']},
    }
    for variant in variants:  # converge, and fill each cache once
        for name, args in cases.items():
            run_process(module(variant['root'], name), variant['env'], args, workdir)
    samples: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    ping = [sys.executable, '-m', 'ansible.modules.ping']
    load_start = os.getloadavg()[0]
    log(f'{rounds} rounds of {len(cases)} modules x {len(variants)} variants, and ping')
    for _round in range(rounds):
        for name, args in cases.items():
            for variant in variants:
                tokens = sandbox.stats()['tokens_issued']
                wall, cpu, _result, _err = run_process(module(variant['root'], name), variant['env'], args, workdir)
                samples.setdefault((variant['variant'], name), []).append((wall, cpu, sandbox.stats()['tokens_issued'] - tokens))
        wall, cpu, _result, _err = run_process(ping, env0, {}, workdir)
        samples.setdefault(('ansible.builtin', 'ping'), []).append((wall, cpu, 0))
    rows = []
    for (variant_name, name), values in samples.items():
        row = {'variant': variant_name, 'module': name, 'processes': len(values),
               'mean_wall_s': round(statistics.mean(v[0] for v in values), 3),
               'median_wall_s': round(statistics.median(v[0] for v in values), 3),
               'mean_cpu_s': round(statistics.mean(v[1] for v in values), 3),
               'tokens_per_process': round(statistics.mean(v[2] for v in values), 2)}
        if name in cases:
            variant = next(v for v in variants if v['variant'] == variant_name)
            stderr = run_process(module(variant['root'], name)[:1] + ['-X', 'importtime'] + module(variant['root'], name)[1:],
                                 variant['env'], cases[name], workdir)[3]
            names = set(re.findall(r'\|\s*(\S+)\s*$', stderr, re.M))
            row['sdk_imported'] = [p for p in SDK_PACKAGES if any(n == p or n.startswith(p + '.') for n in names)]
        rows.append(row)
    return {'benchmark': 'one module process on the sandbox', 'rounds': rounds, 'results': rows,
            'machine': {'cpus': os.cpu_count(), 'python': sys.version.split()[0],
                        'load_avg_1m': [round(load_start, 2), round(os.getloadavg()[0], 2)]}}


if __name__ == '__main__':
    sys.exit(main())
