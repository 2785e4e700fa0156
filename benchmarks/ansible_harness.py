"""Run the collection's playbooks as a user would, against a sandbox; shared by benchmarks/ and tests/e2e/.

* :func:`ansible_env`: the environment of an ``ansible-playbook`` subprocess: the sandbox's env file (AZURE_*,
  SANDBOX_*, CA bundles) on top of this process's environment without any Azure/GitLab/Ansible setting that could
  leak in, and the collection made importable from :func:`collections_root` (``make collection``).
* :func:`run_playbook`: runs ``ansible-playbook`` and returns a :class:`PlaybookRun` (exit code, output, wall time,
  parsed ``PLAY RECAP``).
* :func:`parse_recap`: ``PLAY RECAP`` lines -> ``{host: {"ok": n, "changed": n, ...}}``.
* :func:`rss_site_env`: the environment that makes each module process append its peak RSS
  (``getrusage(RUSAGE_SELF).ru_maxrss``) to a log (``rss_site/sitecustomize.py``); :func:`read_rss_log` reads it.

No secret is ever printed: output kept for error messages is passed through :func:`redact`.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping

REPO = Path(__file__).resolve().parents[1]
RSS_SITE_DIR = Path(__file__).resolve().parent / "rss_site"

# Environment variables of the caller that must not reach the playbook (the sandbox's env file sets its own).
_DROPPED_PREFIXES = ("AZURE_", "ARM_", "MSI_", "IDENTITY_", "SANDBOX_", "GITLAB_", "ANSIBLE_", "ACTIONS_ID_TOKEN_")
_DROPPED_NAMES = {"REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "PYTHONPATH"}

_RECAP_LINE = re.compile(r"^(?P<host>\S.*?)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")


class HarnessError(RuntimeError):
    """A precondition of a playbook run is not met (the message says how to fix it)."""


@dataclasses.dataclass
class PlaybookRun:
    """One ``ansible-playbook`` run."""

    args: list[str]
    returncode: int
    output: str
    wall_s: float
    recap: dict[str, dict[str, int]]

    def hosts_with(self, counter: str, *, nonzero: bool = True) -> list[str]:
        """Hosts whose recap ``counter`` is non-zero (or zero with ``nonzero=False``)."""
        return sorted(host for host, counts in self.recap.items() if bool(counts.get(counter, 0)) == nonzero)

    def tail(self, lines: int = 60, secrets: Iterable[str] = ()) -> str:
        """The last ``lines`` lines of the output, secrets redacted (for error messages)."""
        return redact("\n".join(self.output.splitlines()[-lines:]), secrets)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every non-trivial secret replaced by ``<redacted>``."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, "<redacted>")
    return text


@functools.lru_cache(maxsize=None)
def collections_root() -> Path:
    """The collections root (``ANSIBLE_COLLECTIONS_PATH``) of this checkout, its link to the checkout made.

    ``scripts/collection-root.sh`` decides where it is (``.build/collections``, or outside the checkout when the
    checkout sits in an ``ansible_collections`` tree).
    """
    proc = subprocess.run(["bash", str(REPO / "scripts" / "collection-root.sh")], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise HarnessError(f"scripts/collection-root.sh failed: {proc.stderr.strip()}")
    return Path(proc.stdout.strip())


def ensure_collection() -> None:
    """Fail clearly unless the collection is importable as ``oidc_federation.azure`` from this checkout."""
    link = collections_root() / "ansible_collections" / "oidc_federation" / "azure"
    if not link.exists() or link.resolve() != REPO:
        raise HarnessError(f"{link} does not point at {REPO}; run `make collection` first")


def ansible_playbook_bin() -> str:
    """``ansible-playbook`` next to this Python (the dev venv), else the one on PATH."""
    candidate = Path(sys.executable).parent / "ansible-playbook"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("ansible-playbook")
    if not found:
        raise HarnessError("ansible-playbook not found next to this Python nor on PATH; run `make venv`")
    return found


def ansible_env(sandbox_env: Mapping[str, str], workdir: Path, **extra: str) -> dict[str, str]:
    """Environment for ``ansible-playbook`` against the sandbox described by ``sandbox_env`` (its env file)."""
    env = {name: value for name, value in os.environ.items()
           if name not in _DROPPED_NAMES and not name.startswith(_DROPPED_PREFIXES)}
    env.update(sandbox_env)
    local_tmp = workdir / ".ansible-tmp"
    local_tmp.mkdir(parents=True, exist_ok=True)
    env.update({
        "PYTHONPATH": str(collections_root()),
        "ANSIBLE_COLLECTIONS_PATH": str(collections_root()),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_LOCAL_TEMP": str(local_tmp),
        "ANSIBLE_REMOTE_TEMP": str(local_tmp),
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
    })
    env.update(extra)
    return env


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """The ``PLAY RECAP`` of ``output`` as ``{host: {counter: value}}`` (the last recap if there are several)."""
    recap: dict[str, dict[str, int]] = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap, recap = True, {}
            continue
        if not in_recap:
            continue
        match = _RECAP_LINE.match(line.rstrip())
        if match:
            counts = dict(item.split("=") for item in match.group("counts").split())
            recap[match.group("host")] = {name: int(value) for name, value in counts.items()}
        elif line.strip():
            in_recap = False
    return recap


def run_playbook(playbook: Path | str, inventory: Path | str, *, env: Mapping[str, str], cwd: Path,
                 extra_vars: Mapping[str, object] | None = None, forks: int | None = None,
                 timeout: float = 1800, options: Iterable[str] = ()) -> PlaybookRun:
    """Run ``ansible-playbook -i inventory playbook [options]`` and time it (wall clock, including Ansible's start-up)."""
    # absolute paths: the run happens in ``cwd``
    args = [ansible_playbook_bin(), "-i", str(Path(inventory).resolve()), str(Path(playbook).resolve())]
    if forks:
        args += ["--forks", str(forks)]
    if extra_vars:
        args += ["--extra-vars", json.dumps(dict(extra_vars))]
    args += list(options)
    started = time.perf_counter()
    try:
        completed = subprocess.run(args, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return PlaybookRun(args, -1, output + f"\n!! timed out after {timeout} s", time.perf_counter() - started,
                           parse_recap(output))
    wall = time.perf_counter() - started
    return PlaybookRun(args, completed.returncode, completed.stdout, wall, parse_recap(completed.stdout))


def rss_site_env(log: Path) -> dict[str, str]:
    """Environment that makes every module process of an ``ansible-playbook`` run on this machine log its peak RSS
    to ``log``: ``rss_site/sitecustomize.py`` first on ``PYTHONPATH`` (before the collection root), and the log's path
    in ``BENCH_RSS_LOG``. The modules still run under the interpreter Ansible chooses for them.
    """
    return {"PYTHONPATH": os.pathsep.join([str(RSS_SITE_DIR), str(collections_root())]), "BENCH_RSS_LOG": str(log)}


def read_rss_log(log: Path) -> list[dict[str, object]]:
    """The records written by the RSS interpreter (one per module process); empty when there are none."""
    if not log.exists():
        return []
    records = []
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.strip():
            records.append(json.loads(line))
    return records
