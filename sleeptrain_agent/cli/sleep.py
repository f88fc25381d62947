"""`sleeptrain sleep`, `sleeptrain sleeps`, `sleeptrain adapters ...`: sleep now, its history, adapter versions."""

from __future__ import annotations

import time

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from sleeptrain_agent.cli.client import DaemonClient
from sleeptrain_agent.cli.common import App, console, emit_json, json_option, state_options, table
from sleeptrain_agent.errors import SleepTrainError

SLEEP_COLUMNS = ["id", "user", "status", "trigger", "deep", "started_at", "duration_s", "new", "replay", "examples", "steps", "loss",
                 "recall", "retention", "locality", "adapter_locality", "adapter"]  # fmt: skip


def summarize(row: dict) -> dict:
    """A sleep row flattened for the history table and `--json`."""
    d = row.get("details") or {}
    scores = d.get("scores") or {}
    return {
        "id": row["id"], "user": row.get("user"), "status": row["status"], "trigger": row["trigger"],
        "deep": d.get("deep"),
        "started_at": row["started_at"],
        "finished_at": row["finished_at"], "duration_s": d.get("duration_s"), "new": len(d.get("new") or []),
        "replay": len(d.get("replay") or []), "examples": d.get("examples"), "steps": d.get("train_steps"),
        "loss": d.get("train_loss"), "recall": scores.get("recall"), "retention": scores.get("retention"),
        "locality": scores.get("locality"), "adapter_locality": scores.get("adapter_locality"), "adapter": row.get("adapter"), "error": (row.get("error") or "").split("\n")[0] or None,
        "rejected_because": d.get("rejected_because"), "scale": scores.get("scale"),
    }  # fmt: skip


def outcome(row: dict) -> str:
    """One finished sleep, said in a line (two when its continued candidate failed and it was rebuilt)."""
    s = summarize(row)
    kind = f"deep sleep ({s['deep']})" if s["deep"] else "sleep"
    kind += f" {row['id']} of {row.get('user')}"
    retried = ""
    if s["deep"] == "retry":  # its continued candidate failed the gate first
        why = "; ".join(((row.get("details") or {}).get("continued") or {}).get("rejected_because") or [])
        retried = f"sleep {row['id']} of {row.get('user')}: the continued adapter failed ({why}); rebuilt from the base model\n"
    if row["status"] == "promoted":
        return (retried + f"{kind} promoted {row['adapter']}: recall {s['recall']:.2f}, locality {s['locality']:.2f}"
                + (f" (adapter alone {s['adapter_locality']:.2f})" if s["adapter_locality"] is not None else "")
                + (f", retention {s['retention']:.2f}" if s["retention"] is not None else "")
                + f" ({s['duration_s']} s)")  # fmt: skip
    if row["status"] == "rejected":
        return retried + f"{kind} rejected: {'; '.join(s['rejected_because'] or [])}; their active adapter is unchanged"
    return f"{kind} {row['status']}: {s['error']}"


@click.command("sleep")
@state_options
@click.option("--user", help="Sleep this user only. Default: every user with pending memories, one after another, "
                             "oldest pending first.")  # fmt: skip
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the outcome, showing progress.")
@click.option("--deep", is_flag=True,
              help="Train a new adapter from the base model on the pending memories and a replay sample of the "
                   "consolidated ones, instead of continuing the active adapter (resets drift; runs even with "
                   "nothing pending).")  # fmt: skip
@json_option
def sleep_command(app: App, user: str | None, wait: bool, deep: bool, as_json: bool) -> None:
    """Sleep now: learn each user's pending memories into that user's own adapter, validate it, promote it.

    Uses the running daemon of this state dir; without one, runs the sleeps in
    this process (starting the backend first). After a `memory forget` the
    user's next sleep is deep whether asked or not.

    Example: sleeptrain sleep --user alice   (or: sleeptrain sleep --deep)
    """
    client = DaemonClient.of(app)
    if client is None:
        rows = _sleep_in_process(app, as_json, deep, user)
    else:
        body = {**({"deep": True} if deep else {}), **({"user": user} if user else {})}
        started = client.post("/v1/sleep", json=body or None)
        if not wait:
            emit_json(started) if as_json else click.echo(
                f"sleep {started['id']} of {started['user']} started" + _queued(started["queue"]))
            return
        rows = [_follow(client, started["id"], quiet=as_json)]
        for later in started["queue"][1:]:  # the daemon sleeps them in turn; a user left with nothing is skipped
            row = _next_sleep(client, later, after=rows[-1]["id"])
            if row is not None:
                rows.append(_follow(client, row["id"], quiet=as_json))
    if as_json:
        emit_json(rows)
        return
    failed = None
    for row in rows:
        ended = row["status"] in ("promoted", "rejected")  # else failed: said on stderr, and the command fails
        click.echo(outcome(row), err=not ended)
        if not ended:
            failed = failed or row
    if failed is not None:
        raise SleepTrainError(f"sleep {failed['id']} {failed['status']}: {summarize(failed)['error']}")


def _queued(queue: list[str]) -> str:
    return f"; then {', '.join(queue[1:])}" if len(queue) > 1 else ""


def _next_sleep(client: DaemonClient, user: str, after: int) -> dict | None:
    """The sleep of `user` the daemon starts after sleep `after` (None: it skipped them, or stopped)."""
    while True:
        rows = client.get("/v1/sleeps", params={"user": user, "limit": 1})
        if rows and rows[0]["id"] > after:
            return rows[0]
        if not client.health().get("sleeping"):
            rows = client.get("/v1/sleeps", params={"user": user, "limit": 1})
            return rows[0] if rows and rows[0]["id"] > after else None
        time.sleep(0.5)


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


def _sleep_in_process(app: App, quiet: bool, deep: bool = False, user: str | None = None) -> list[dict]:
    from sleeptrain_agent.daemon import Daemon
    from sleeptrain_agent.errors import NothingToLearn

    daemon = Daemon(app.settings, app.state_dir)
    overrides = {"deep": True} if deep else None
    try:
        cfg = daemon.sleep.config(overrides)
        if user is not None:
            daemon.sleep.check_work(cfg, user)  # before starting a backend for nothing
        elif not daemon.sleep.queue(cfg):
            raise NothingToLearn("no pending memories: nothing to learn")
        if not quiet:
            click.echo(f"no daemon runs for {app.state_dir}: starting the {daemon.backend.name} backend here...",
                       err=True)  # fmt: skip
        daemon.start(wait=True, schedule=False)
        first = daemon.sleep.start("cli", overrides, user)
        rows, seen = [], set()
        while True:
            current = daemon.sleep.current
            if current is not None and current not in seen:
                seen.add(current)

                def poll(sid=current) -> tuple[dict, dict]:
                    return daemon.store.sleep(sid), daemon.sleep.progress

                rows.append(_progress(current, poll, quiet, interval=0.5))
            elif not daemon.sleep.running:
                break
            else:
                time.sleep(0.2)
        done = {r["id"] for r in rows}
        rows += [r for r in reversed(daemon.store.sleeps()) if r["id"] >= first["id"] and r["id"] not in done
                 and r["user"] in first["queue"]]  # fmt: skip
        return sorted(rows, key=lambda r: r["id"])
    finally:
        daemon.stop()


@click.command("sleeps")
@state_options
@click.option("--limit", type=click.IntRange(min=1), help="Only the last N sleeps.")
@click.option("--user", help="Only this user's sleeps.")
@json_option
def sleeps_command(app: App, limit: int | None, user: str | None, as_json: bool) -> None:
    """Sleep history: whose, memories in, examples, steps, loss, validation scores, outcome, duration.

    Example: sleeptrain sleeps --limit 5 --user alice
    """
    rows = [summarize(r) for r in app.store.sleeps(limit=limit, user=user)]
    if as_json:
        emit_json(rows)
    else:
        table(rows, SLEEP_COLUMNS, title="sleeps")


@click.group("adapters")
def adapters_group() -> None:
    """List adapter versions and roll back or forward."""


@adapters_group.command("list")
@state_options
@click.option("--user", help="Only this user's lineage.")
@json_option
def adapters_list(app: App, user: str | None, as_json: bool) -> None:
    """List adapter versions, oldest first, each in its user's lineage; each user's active one is marked,
    erased ones (trained on a forgotten memory) show when.

    Example: sleeptrain adapters list --user alice --json
    """
    rows = app.store.adapters(user=user)
    if as_json:
        emit_json(rows)
    else:
        table([{**r, "active": "*" if r["active"] else ""} for r in rows],
              ["version", "user", "active", "sleep_id", "parent", "created_at", "erased_at", "path"],
              title="adapters")  # fmt: skip


@adapters_group.command("activate")
@state_options
@click.argument("version")
@click.option("--user", help="Whose lineage: needed with `base`; with a version, checked against its owner.")
def adapters_activate(app: App, version: str, user: str | None) -> None:
    """Make VERSION the active adapter of its user (`base --user U`: U is answered by the base model),
    hot-swapped if the daemon runs.

    Example: sleeptrain adapters activate v0003   (or: sleeptrain adapters activate base --user alice)
    """
    target = None if version == "base" else version
    if target is None and user is None:
        raise click.UsageError("`base` needs --user: whose adapter to stop serving")
    client = DaemonClient.of(app)
    if client is not None:
        result = client.post(f"/v1/adapters/{version}/activate", json={"user": user} if user else None)
        click.echo(f"user {result['user']}: now serving {result['adapter'] or 'the base model'} "
                   f"(swap took {result['swap_seconds']} s)")  # fmt: skip
        return
    if target is not None:
        app.store.adapter(target)
    row = app.store.activate_adapter(target, user=user)
    who = row["user"] if row else user
    click.echo(f"user {who}: {target or 'the base model'} is active; the daemon loads it when it starts")


COMMANDS = [sleep_command, sleeps_command, adapters_group]
