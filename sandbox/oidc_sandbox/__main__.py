"""Command line: ``python -m oidc_sandbox serve|start|stop|status`` (run with ``PYTHONPATH=sandbox``).

* ``serve``: run in the foreground; prints the base URL, writes ``<state-dir>/env``.
* ``start``: run ``serve`` in the background, wait until it is healthy, write ``<state-dir>/pid``.
* ``stop``: stop the background sandbox (SIGTERM, so the state file is written) and remove ``env``/``pid``.
* ``status``: print the base URL when a background sandbox answers its health check.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import uvicorn

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[1]
DEFAULT_STATE_DIR = REPO_ROOT / ".sandbox"
_QUIET_UVICORN = "ASGI callable returned without completing response."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m oidc_sandbox",
                                     description="Local HTTPS stand-in for Entra ID, Graph, ARM and GitLab OIDC.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("serve", "run in the foreground"), ("start", "run in the background")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--host", default="127.0.0.1", help="listen address (127.0.0.1, ::1 or localhost)")
        cmd.add_argument("--port", type=int, default=0, help="port (0 = any free port; default)")
        cmd.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR), help="certificates, env file, log")
        cmd.add_argument("--state-file", default=os.environ.get("SANDBOX_STATE_FILE") or None,
                         help="load the state from this file at start (if it exists); write it on shutdown and on "
                              "POST /_sandbox/save (default: $SANDBOX_STATE_FILE)")
        cmd.add_argument("--tenant-id", default=None)
        cmd.add_argument("--subscription-id", default=None)
        cmd.add_argument("--operator-client-id", default=None)
        cmd.add_argument("--gitlab-issuer", action="append", default=None, metavar="NAME",
                         help="GitLab issuer name, repeatable (default gitlab.com and gitlab.example.com)")
        cmd.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
        cmd.add_argument("--timeout", type=float, default=20.0, help=argparse.SUPPRESS)
    for name, text in (("stop", "stop the background sandbox"), ("status", "is the background sandbox up?")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    return parser


# --- env file ---------------------------------------------------------------------------------------------

def env_values(config) -> dict[str, str]:  # noqa: ANN001 - context.Config (imported lazily)
    """The variables of ``<state-dir>/env`` (see README, "The .sandbox/env contract")."""
    url = config.base_url
    return {
        "SANDBOX_URL": url,
        "SANDBOX_CA_FILE": config.ca_file,
        "SANDBOX_GITLAB_ISSUER": f"{url}/gitlab/{config.gitlab_issuers[0]}",
        "SANDBOX_GITLAB_TOKEN": config.gitlab_token,
        "SANDBOX_STATE_DIR": config.state_dir,
        "SANDBOX_RESTRICTED_CLIENT_ID": config.restricted_client_id,
        "SANDBOX_RESTRICTED_CLIENT_SECRET": config.restricted_secret,
        "AZURE_TENANT_ID": config.tenant_id,
        "AZURE_CLIENT_ID": config.operator_client_id,
        "AZURE_CLIENT_SECRET": config.operator_secret,
        "AZURE_SUBSCRIPTION_ID": config.subscription_id,
        "AZURE_AUTHORITY_HOST": url,
        "AZURE_GRAPH_ENDPOINT": url,
        "AZURE_RESOURCE_MANAGER_ENDPOINT": url,
        "AZURE_CA_BUNDLE": config.bundle_file,
        "REQUESTS_CA_BUNDLE": config.bundle_file,
        "SSL_CERT_FILE": config.bundle_file,
        "AZURE_CORE_INSTANCE_DISCOVERY": "false",
        "AZURE_CORE_COLLECT_TELEMETRY": "false",
        "GITLAB_URL": f"{url}/gitlab/{config.gitlab_issuers[0]}",
        "GITLAB_TOKEN": config.gitlab_token,
    }


def write_env(path: Path, values: dict[str, str]) -> None:
    """``export NAME=value`` lines, shell-quoted, mode 0600, replaced atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# oidc_federation.azure sandbox; source this file (contains a secret)\n")
        for name, value in values.items():
            fh.write(f"export {name}={shlex.quote(value)}\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_env(path: Path) -> dict[str, str]:
    """Parse an env file written by :func:`write_env`."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("export "):
            name, _, raw = line[len("export "):].partition("=")
            parsed = shlex.split(raw)
            values[name] = parsed[0] if parsed else ""
    return values


# --- serve ------------------------------------------------------------------------------------------------

class _DropIntentionalClose(logging.Filter):
    """Hide uvicorn's error line for the connections gitlab.py closes on purpose (unreachable issuer)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _QUIET_UVICORN


class _Server(uvicorn.Server):
    """uvicorn's server, closing the sandbox's own outbound client before waiting for connections to close.

    Entra's fetches of the sandbox's GitLab issuers are connections to itself; an idle pooled one would never
    answer the server's TLS close_notify, and shutdown would wait for it.
    """

    def __init__(self, config: uvicorn.Config, ctx: Any):
        super().__init__(config)
        self.ctx = ctx

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.ctx.aclose()
        await super().shutdown(sockets)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP, and
    # without it every response waits for the client's delayed ACK (~40 ms per request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(args: argparse.Namespace) -> int:
    """Run the sandbox in the foreground until SIGINT/SIGTERM."""
    from . import certs
    from .app import build_app, new_sandbox
    from .context import Config

    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("uvicorn.error").addFilter(_DropIntentionalClose())
    host = "127.0.0.1" if args.host == "localhost" else args.host
    if host not in ("127.0.0.1", "::1"):
        print("error: the sandbox listens on loopback only (127.0.0.1 or ::1)", file=sys.stderr)
        return 2
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    try:
        sock = _bind(host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    files = certs.generate(str(state_dir))
    settings = {"state_dir": str(state_dir), "state_file": args.state_file, "base_url": f"https://{url_host}:{port}",
                "ca_file": files.ca_file, "bundle_file": files.bundle_file}
    for key in ("tenant_id", "subscription_id", "operator_client_id"):
        if getattr(args, key):
            settings[key] = getattr(args, key)
    if os.environ.get("SANDBOX_OPERATOR_SECRET"):
        settings["operator_secret"] = os.environ["SANDBOX_OPERATOR_SECRET"]
    if os.environ.get("SANDBOX_GITLAB_TOKEN"):
        settings["gitlab_token"] = os.environ["SANDBOX_GITLAB_TOKEN"]
    if args.gitlab_issuer:
        settings["gitlab_issuers"] = tuple(args.gitlab_issuer)
    try:
        ctx = new_sandbox(Config(**settings))
        if args.state_file and Path(args.state_file).exists():
            ctx.load(args.state_file)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = build_app(ctx)
    write_env(state_dir / "env", env_values(ctx.config))
    print(ctx.config.base_url, flush=True)
    config = uvicorn.Config(app, ssl_certfile=files.cert_file, ssl_keyfile=files.key_file, loop="asyncio",
                            http="h11", lifespan="on", log_level=args.log_level, access_log=False,
                            timeout_keep_alive=30, timeout_graceful_shutdown=5, server_header=False,
                            date_header=True, log_config=None)
    server = _Server(config, ctx)
    server.run(sockets=[sock])
    return 0


# --- start / stop -----------------------------------------------------------------------------------------

def _health(url: str, ca_file: str, timeout: float = 1.0) -> bool:
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with urllib.request.urlopen(f"{url}/_sandbox/health", timeout=timeout, context=context) as response:
            return response.status == 200 and json.load(response).get("status") == "ok"
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _running_pid(state_dir: Path) -> int | None:
    """The pid in ``pid`` if that process is alive and is a sandbox."""
    try:
        pid = int((state_dir / "pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"oidc_sandbox" in cmdline else None


def _serve_arguments(args: argparse.Namespace, state_dir: Path) -> list[str]:
    """``serve`` options equivalent to the ``start`` options."""
    out = ["--host", args.host, "--port", str(args.port), "--state-dir", str(state_dir),
           "--log-level", args.log_level]
    for key in ("state_file", "tenant_id", "subscription_id", "operator_client_id"):
        value = getattr(args, key)
        if value:
            out += ["--" + key.replace("_", "-"), str(Path(value).resolve()) if key == "state_file" else value]
    for name in args.gitlab_issuer or []:
        out += ["--gitlab-issuer", name]
    return out


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def start(args: argparse.Namespace) -> int:
    """Start ``serve`` as a detached process and wait until it answers its health check."""
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    env_file = state_dir / "env"
    if _running_pid(state_dir) is not None and env_file.exists():
        values = read_env(env_file)
        if _health(values["SANDBOX_URL"], values["SANDBOX_CA_FILE"]):
            print(values["SANDBOX_URL"])
            return 0
    env_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "oidc_sandbox", "serve", *_serve_arguments(args, state_dir)]
    child_env = dict(os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_DIR.parent),
                                                            child_env.get("PYTHONPATH")]))
    log_path = state_dir / "sandbox.log"
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                 env=child_env, start_new_session=True, close_fds=True)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            print(f"error: the sandbox exited with status {child.returncode}; see {log_path}", file=sys.stderr)
            return 1
        if env_file.exists():
            values = read_env(env_file)
            if _health(values["SANDBOX_URL"], values["SANDBOX_CA_FILE"], timeout=0.5):
                (state_dir / "pid").write_text(f"{child.pid}\n")
                print(values["SANDBOX_URL"])
                return 0
        time.sleep(0.05)
    child.terminate()
    print(f"error: the sandbox did not become healthy within {args.timeout:g} s; see {log_path}", file=sys.stderr)
    return 1


def stop(args: argparse.Namespace) -> int:
    """SIGTERM the background sandbox, wait for it, remove ``pid`` and ``env``."""
    state_dir = Path(args.state_dir).resolve()
    pid = _running_pid(state_dir)
    if pid is None:
        print("sandbox is not running")
    else:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        print("sandbox stopped")
    for name in ("pid", "env"):
        (state_dir / name).unlink(missing_ok=True)
    return 0


def status(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).resolve()
    env_file = state_dir / "env"
    if _running_pid(state_dir) is None or not env_file.exists():
        print("sandbox is not running")
        return 1
    values = read_env(env_file)
    if not _health(values["SANDBOX_URL"], values["SANDBOX_CA_FILE"]):
        print("sandbox is not healthy")
        return 1
    print(values["SANDBOX_URL"])
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return {"serve": serve, "start": start, "stop": stop, "status": status}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
