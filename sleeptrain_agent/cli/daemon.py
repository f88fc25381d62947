"""`sleeptrain daemon [run|status|stop]`: run the agent's HTTP daemon and control it."""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import time
from pathlib import Path

import click
from click_default_group import DefaultGroup

from sleeptrain_agent.cli.client import DaemonClient, daemon_url
from sleeptrain_agent.cli.common import App, emit_json, json_option, state_options, table
from sleeptrain_agent.config import load_settings
from sleeptrain_agent.daemon import pid_alive, read_daemon_file
from sleeptrain_agent.errors import ConfigError, SleepTrainError

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group("daemon", cls=DefaultGroup, default="run", default_if_no_args=True)
def daemon_group() -> None:
    """Run the agent's HTTP daemon (default: `run`), or check or stop it."""


@daemon_group.command("run")
@state_options
@click.option("--host", help="Bind address (config serve.host; default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="HTTP port (config serve.port; default 8765).")
@click.option("--backend", type=click.Choice(["auto", "vllm", "embedded"]), help="Inference backend (serve.backend).")
def daemon_run(app: App, host: str | None, port: int | None, backend: str | None) -> None:
    """Run the daemon in the foreground until Ctrl-C or `sleeptrain daemon stop`.

    Example: sleeptrain daemon --state-dir state --port 8765
    """
    import uvicorn

    from sleeptrain_agent.api import create_app
    from sleeptrain_agent.daemon import Daemon, remove_daemon_file, write_daemon_file

    serve = {k: v for k, v in {"host": host, "port": port, "backend": backend}.items() if v is not None}
    settings = load_settings(app.config_file, overrides={"serve": serve} if serve else None)
    cfg = settings.serve
    if not is_loopback(cfg.host) and cfg.token is None:
        raise ConfigError(
            f"refusing to bind to {cfg.host} without a token: set SLEEPTRAIN_SERVE__TOKEN (every /v1 request "
            "must then send it as a bearer token), or bind to 127.0.0.1"
        )
    running = read_daemon_file(app.state_dir)
    if running is not None:
        raise SleepTrainError(
            f"a daemon is already running for {app.state_dir} (pid {running['pid']}, port {running['port']}); "
            "stop it with `sleeptrain daemon stop`"
        )
    with socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a crash's TIME-WAIT is no obstacle
        try:
            s.bind((cfg.host, cfg.port))
        except OSError as e:
            raise SleepTrainError(f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror}") from None

    log_dir = app.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_dir / "daemon.log")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in ("httpx", "openai", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    log.info("config (%s): %s", app.config_file or "defaults", settings.model_dump_json())  # SecretStr stays masked

    daemon = Daemon(settings, app.state_dir)
    click.echo(f"sleeptrain daemon: http://{cfg.host}:{cfg.port}  state: {app.state_dir}  backend: {daemon.backend.name}")
    write_daemon_file(app.state_dir, cfg.host, cfg.port)
    atexit.register(remove_daemon_file, app.state_dir)

    def exit_cleanly(signum, frame):  # uvicorn shuts down, then re-raises the signal to this handler
        remove_daemon_file(app.state_dir)
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, exit_cleanly)
    try:
        uvicorn.run(create_app(daemon), host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
    finally:
        remove_daemon_file(app.state_dir)


@daemon_group.command("status")
@state_options
@json_option
def daemon_status(app: App, as_json: bool) -> None:
    """Show whether a daemon runs for this state directory, and its health.

    Example: sleeptrain daemon status --json
    """
    info = read_daemon_file(app.state_dir)
    if info is None:
        if as_json:
            emit_json({"running": False})
            return
        raise SleepTrainError(f"no daemon is running for {app.state_dir}")
    client = DaemonClient.of(app)
    health = client.health() if client else {"status": "unreachable"}
    data = {"running": True, "pid": info["pid"], "url": daemon_url(info), **health}
    if as_json:
        emit_json(data)
    else:
        rows = [{"key": k, "value": v} for k, v in data.items() if v is not None]
        table(rows, ["key", "value"], title="daemon")


@daemon_group.command("stop")
@state_options
@click.option("--timeout", type=float, default=60, show_default=True, help="Seconds to wait before SIGKILL.")
def daemon_stop(app: App, timeout: float) -> None:
    """Stop the daemon of this state directory (and its vLLM server).

    Example: sleeptrain daemon stop
    """
    info = read_daemon_file(app.state_dir)
    if info is None:
        click.echo(f"no daemon is running for {app.state_dir}")
        return
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):  # gone, or a zombie: stopped either way
            (Path(app.state_dir) / "daemon.json").unlink(missing_ok=True)
            click.echo(f"stopped daemon {pid}")
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    (Path(app.state_dir) / "daemon.json").unlink(missing_ok=True)
    click.echo(f"daemon {pid} did not stop within {timeout:.0f} s; killed it")


COMMANDS = [daemon_group]
