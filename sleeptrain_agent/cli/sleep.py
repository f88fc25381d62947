"""`sleeptrain sleep`, `sleeptrain sleeps`, `sleeptrain adapters ...`: sleep now, its history, adapter versions."""

from __future__ import annotations

import time

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from sleeptrain_agent.cli.client import DaemonClient
from sleeptrain_agent.cli.common import App, console, emit_json, json_option, state_options, table
from sleeptrain_agent.errors import SleepTrainError

SLEEP_COLUMNS = ["id", "status", "trigger", "deep", "started_at", "duration_s", "new", "replay", "examples", "steps", "loss",
                 "recall", "retention", "locality", "adapter_locality", "adapter"]  # fmt: skip


def summarize(row: dict) -> dict:
    """A sleep row flattened for the history table and `--json`."""
    d = row.get("details") or {}
    scores = d.get("scores") or {}
    return {
        "id": row["id"], "status": row["status"], "trigger": row["trigger"], "deep": d.get("deep"),
        "started_at": row["started_at"],
        "finished_at": row["finished_at"], "duration_s": d.get("duration_s"), "new": len(d.get("new") or []),
        "replay": len(d.get("replay") or []), "examples": d.get("examples"), "steps": d.get("train_steps"),
        "loss": d.get("train_loss"), "recall": scores.get("recall"), "retention": scores.get("retention"),
        "locality": scores.get("locality"), "adapter_locality": scores.get("adapter_locality"), "adapter": row.get("adapter"), "error": (row.get("error") or "").split("\n")[0] or None,
        "rejected_because": d.get("rejected_because"), "scale": scores.get("scale"),
    }  # fmt: skip


@click.command("sleep")
@state_options
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the outcome, showing progress.")
@click.option("--deep", is_flag=True,
              help="Train a new adapter from the base model on the pending memories and a replay sample of the "
                   "consolidated ones, instead of continuing the active adapter (resets drift; runs even with "
                   "nothing pending).")  # fmt: skip
@json_option
def sleep_command(app: App, wait: bool, deep: bool, as_json: bool) -> None:
    """Sleep now: learn the pending memories into a new adapter, validate it, promote it.

    Uses the running daemon of this state dir; without one, runs the sleep in
    this process (starting the backend first). After a `memory forget` the
    next sleep is deep whether asked or not.

    Example: sleeptrain sleep --deep
    """
    client = DaemonClient.of(app)
    if client is None:
        row = _sleep_in_process(app, as_json, deep)
    else:
        started = client.post("/v1/sleep", json={"deep": True} if deep else None)
        if not wait:
            emit_json(started) if as_json else click.echo(f"sleep {started['id']} started")
            return
        row = _follow(client, started["id"], quiet=as_json)
    if as_json:
        emit_json(row)
        return
    s = summarize(row)
    kind = f"deep sleep ({s['deep']})" if s["deep"] else "sleep"
    if row["status"] == "promoted":
        click.echo(f"{kind} {row['id']} promoted {row['adapter']}: recall {s['recall']:.2f}, locality {s['locality']:.2f}"
                   + (f" (adapter alone {s['adapter_locality']:.2f})" if s["adapter_locality"] is not None else "")
                   + (f", retention {s['retention']:.2f}" if s["retention"] is not None else "")
                   + f" ({s['duration_s']} s)")  # fmt: skip
    elif row["status"] == "rejected":
        click.echo(f"{kind} {row['id']} rejected: {'; '.join(s['rejected_because'] or [])}; the active adapter is unchanged")
    else:
        raise SleepTrainError(f"sleep {row['id']} {row['status']}: {s['error']}")


def _follow(client: DaemonClient, sleep_id: int, quiet: bool) -> dict:
    def poll() -> tuple[dict, dict]:
        row = client.get(f"/v1/sleeps/{sleep_id}")
        return row, row.get("progress") or {}

    return _progress(sleep_id, poll, quiet, interval=1.0)


def _progress(sleep_id: int, poll, quiet: bool, interval: float) -> dict:
    """Show a sleep's steps and training progress until it ends; `poll()` -> (row, progress)."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=console(), disable=quiet) as bar:  # fmt: skip
        task = bar.add_task(f"sleep {sleep_id}", total=None, info="")
        while True:
            row, p = poll()
            if row["status"] != "running":
                return row
            if p.get("step") == "train" and p.get("total"):
                bar.update(task, total=p["total"], completed=p.get("train_step", 0))
            bar.update(task, description=f"sleep {sleep_id}: {p.get('step', 'starting')}",
                       info=f"loss {p['loss']:.3f}" if p.get("loss") is not None else "")  # fmt: skip
            time.sleep(interval)


def _sleep_in_process(app: App, quiet: bool, deep: bool = False) -> dict:
    from sleeptrain_agent.daemon import Daemon

    daemon = Daemon(app.settings, app.state_dir)
    overrides = {"deep": True} if deep else None
    try:
        daemon.sleep.check_work(daemon.sleep.config(overrides))  # before starting a backend for nothing
        if not quiet:
            click.echo(f"no daemon runs for {app.state_dir}: starting the {daemon.backend.name} backend here...",
                       err=True)  # fmt: skip
        daemon.start(wait=True, schedule=False)
        row = daemon.sleep.start("cli", overrides)

        def poll() -> tuple[dict, dict]:
            return daemon.store.sleep(row["id"]), daemon.sleep.progress

        return _progress(row["id"], poll, quiet, interval=0.5)
    finally:
        daemon.stop()


@click.command("sleeps")
@state_options
@click.option("--limit", type=click.IntRange(min=1), help="Only the last N sleeps.")
@json_option
def sleeps_command(app: App, limit: int | None, as_json: bool) -> None:
    """Sleep history: memories in, examples, steps, loss, validation scores, outcome, duration.

    Example: sleeptrain sleeps --limit 5
    """
    rows = [summarize(r) for r in app.store.sleeps(limit=limit)]
    if as_json:
        emit_json(rows)
    else:
        table(rows, SLEEP_COLUMNS, title="sleeps")


@click.group("adapters")
def adapters_group() -> None:
    """List adapter versions and roll back or forward."""


@adapters_group.command("list")
@state_options
@json_option
def adapters_list(app: App, as_json: bool) -> None:
    """List adapter versions, oldest first; the active one is marked, erased ones (trained on a forgotten
    memory) show when.

    Example: sleeptrain adapters list --json
    """
    rows = app.store.adapters()
    if as_json:
        emit_json(rows)
    else:
        table([{**r, "active": "*" if r["active"] else ""} for r in rows],
              ["version", "active", "sleep_id", "parent", "created_at", "erased_at", "path"], title="adapters")  # fmt: skip


@adapters_group.command("activate")
@state_options
@click.argument("version")
def adapters_activate(app: App, version: str) -> None:
    """Make VERSION the active adapter (`base`: no adapter), hot-swapped if the daemon runs.

    Example: sleeptrain adapters activate v0003
    """
    target = None if version == "base" else version
    client = DaemonClient.of(app)
    if client is not None:
        result = client.post(f"/v1/adapters/{version}/activate")
        click.echo(f"now serving {result['adapter'] or 'the base model'} (swap took {result['swap_seconds']} s)")
        return
    if target is not None:
        app.store.adapter(target)
    app.store.activate_adapter(target)
    click.echo(f"{target or 'the base model'} is active; the daemon loads it when it starts")


COMMANDS = [sleep_command, sleeps_command, adapters_group]
