"""`sleeptrain chat`: talk to the agent in a terminal.

Connects to the daemon of the state directory, or starts one in the background
and waits for it (vLLM takes about a minute to start on a small CPU). Replies
stream token by token; Ctrl-C stops a reply, not the program; Ctrl-D or /quit
leaves; /route says whether the adapter or the base model answered the last
reply (`serve.routing`). Line editing and history come from prompt_toolkit
when stdin is a terminal.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import click
import openai

from sleeptrain_agent.cli.client import DaemonClient, daemon_url, error_message
from sleeptrain_agent.cli.common import App, console, state_options, table
from sleeptrain_agent.daemon import read_daemon_file
from sleeptrain_agent.errors import DaemonError, SleepTrainError

HELP = """commands:
  /help        this help
  /new         start a new conversation
  /memories    what the agent kept from this conversation
  /forget ID   forget memory ID
  /sleep       sleep now and learn from your recent conversations
  /status      the daemon's health and your adapter
  /route       who answered the last reply: the adapter or the base model, and why
  /quit        leave (Ctrl-D works too); Ctrl-C stops a reply"""


def describe_route(last: dict | None) -> str:
    """One line on who answered a reply (`serve.routing`), from its chunks' `adapter` and `route`."""
    if last is None:
        return "no reply yet"
    route, adapter = last.get("route"), last.get("adapter")
    who = f"the adapter {adapter}" if adapter else "the base model"
    if route is None:
        return f"answered by {who} (not routed: routing is off, you have no adapter yet, or nothing is consolidated)"
    if route.get("similarity") is None:
        return f"answered by {who} (asked for by the request's model)"
    near = f"memory {route['memory']}" if route.get("memory") is not None else "any memory"
    if route.get("personal"):
        return f"answered by {who}: a question about you (similarity {route['similarity']:.2f} to {near})"
    return f"answered by {who}: similarity {route['similarity']:.2f} to {near}"


def ensure_daemon(app: App, wait_s: float) -> str:
    """The URL of this state dir's daemon, starting one in the background if none runs."""
    info = read_daemon_file(app.state_dir)
    proc = None
    if info is None:
        log_dir = app.state_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "sleeptrain_agent", "daemon", "run", "--state-dir", str(app.state_dir)]
        if app.config_file:
            cmd += ["--config", str(app.config_file)]
        out = open(log_dir / "daemon.out", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
    deadline = time.monotonic() + wait_s
    with console().status("starting the agent (vLLM needs about a minute on a small CPU)...") as status:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = (app.state_dir / "logs" / "daemon.out").read_text(errors="replace").splitlines()[-15:]
                raise SleepTrainError("the daemon exited while starting:\n" + "\n".join(tail))
            info = info or read_daemon_file(app.state_dir)
            if info is not None:
                health = DaemonClient(daemon_url(info)).health()
                if health.get("status") == "ok":
                    if proc is not None:
                        console().print(f"[dim]started a daemon (pid {info['pid']}); it keeps running after you "
                                        "leave: `sleeptrain daemon stop` stops it[/dim]")  # fmt: skip
                    return daemon_url(info)
                if health.get("status") == "error":
                    raise SleepTrainError(f"the daemon could not start its backend: {health.get('error')}")
                status.update(f"starting the agent: backend {health.get('status')}...")
            time.sleep(0.5)
    raise SleepTrainError(f"the daemon did not become ready within {wait_s:.0f} s; see {app.state_dir / 'logs'}")


class Session:
    def __init__(self, url: str, user: str, token: str | None, state_dir: Path, max_tokens: int | None):
        self.daemon = DaemonClient(url, token, timeout=30)
        self.client = openai.OpenAI(base_url=url + "/v1", api_key=token or "unused", max_retries=0, timeout=600)
        self.user = user
        self.state_dir = state_dir
        self.max_tokens = max_tokens
        self.new()

    def new(self) -> None:
        self.conversation = uuid.uuid4().hex
        self.messages: list[dict] = []
        self.last: dict | None = None  # the last reply's adapter and route, from its first chunk

    def send(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})
        reply: list[str] = []
        stream = None
        self.last = None
        try:
            stream = self.client.chat.completions.create(
                model="sleeptrain", messages=self.messages, stream=True, user=self.user,
                max_tokens=self.max_tokens, extra_headers={"X-Conversation-Id": self.conversation},
            )  # fmt: skip
            for chunk in stream:
                if self.last is None:
                    extra = chunk.model_extra or {}
                    self.last = {"adapter": extra.get("adapter"), "route": extra.get("route")}
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        reply.append(choice.delta.content)
                        sys.stdout.write(choice.delta.content)
                        sys.stdout.flush()
                error = getattr(chunk, "error", None) or (chunk.model_extra or {}).get("error")
                if error:
                    raise SleepTrainError(error.get("message", str(error)))
            sys.stdout.write("\n")
        except KeyboardInterrupt:
            if stream is not None:
                stream.close()
            sys.stdout.write(" [interrupted]\n")
        except openai.APIStatusError as e:
            self.messages.pop()
            console().print(f"[red]error {e.status_code}:[/red] {error_message(e.response)}")
            return
        except openai.APIConnectionError as e:
            self.messages.pop()
            console().print(f"[red]cannot reach the daemon:[/red] {e}")
            return
        self.messages.append({"role": "assistant", "content": "".join(reply)})

    def command(self, line: str) -> bool:
        """Run a slash command; False means leave."""
        name, _, arg = line.partition(" ")
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/help":
            click.echo(HELP)
        elif name == "/new":
            self.new()
            click.echo("new conversation")
        elif name == "/status":
            health = self.daemon.health()
            sleep = health.get("sleep") or {}
            sleeping = f"yes ({sleep.get('step')})" if health.get("sleeping") else "no"
            mine = (health.get("adapters") or {}).get(self.user)
            click.echo(f"status: {health.get('status')}  your adapter: {mine or 'none (the base model answers)'}  "
                       f"sleeping: {sleeping}  hippocampus queue: {health.get('hippocampus_queue')}")  # fmt: skip
        elif name == "/route":
            click.echo(describe_route(self.last))
        elif name == "/memories":
            params = {"user": self.user, "conversation": self.conversation, "status": ["pending", "consolidated"]}
            rows = self._call("GET", "/v1/memories", params=params)
            if rows is not None:
                table(rows, ["id", "subject", "relation", "value", "status"], title="kept from this conversation")
        elif name == "/forget":
            if not arg.strip().isdigit():
                click.echo("usage: /forget ID   (ids are in /memories)")
            else:
                if self._call("POST", f"/v1/memories/{arg.strip()}/forget") is not None:
                    click.echo(f"erased memory {arg.strip()}: from now on I answer about it without my adapter, "
                               "and my next sleep rebuilds the adapter without it")
        elif name == "/sleep":
            started = self._call("POST", "/v1/sleep", prefix="no sleep", json={"user": self.user})
            if started is not None:
                click.echo(f"sleep {started['id']} started: I keep answering meanwhile; /status shows progress")
        else:
            click.echo(f"unknown command {name}; /help lists them")
        return True

    def _call(self, method: str, path: str, prefix: str = "error", **kwargs):
        """The daemon's JSON answer, or None after printing why it refused."""
        try:
            return self.daemon.request(method, path, **kwargs)
        except DaemonError as e:
            click.echo(f"{prefix}: {e}")
            return None


def _reader(state_dir: Path):
    if not sys.stdin.isatty():
        return lambda: input("you> ")
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    state_dir.mkdir(parents=True, exist_ok=True)
    session = PromptSession(history=FileHistory(str(state_dir / "chat_history")))
    return lambda: session.prompt("you> ")


@click.command("chat")
@state_options
@click.option("--user", default="default", show_default=True, help="Who is talking (memories are per user).")
@click.option("--url", help="Daemon URL; default: the daemon of --state-dir, started if needed.")
@click.option("--token", envvar="SLEEPTRAIN_SERVE__TOKEN", help="Bearer token for a non-loopback daemon.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Longest reply in tokens (serve.max_tokens).")
@click.option("--wait", type=float, default=600, show_default=True, help="Seconds to wait for a daemon to start.")
def chat(app: App, user: str, url: str | None, token: str | None, max_tokens: int | None, wait: float) -> None:
    """Chat with the agent in the terminal (starts the daemon if none runs).

    Example: sleeptrain chat --user alice
    """
    url = url or ensure_daemon(app, wait)
    session = Session(url.rstrip("/"), user, token, app.state_dir, max_tokens)
    read = _reader(app.state_dir)
    click.echo(f"SleepTrain chat as {user!r} at {url}. /help for commands, /quit to leave.")
    while True:
        try:
            line = read().strip()
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        if not line:
            continue
        if line.startswith("/"):
            if not session.command(line):
                break
            continue
        click.echo("agent> ", nl=False)
        session.send(line)
    click.echo("bye")


COMMANDS = [chat]
