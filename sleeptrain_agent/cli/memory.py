"""`sleeptrain memory ...`, `sleeptrain conversations`, `sleeptrain turns`: inspect the episodic store."""

from __future__ import annotations

import click
from rich.markup import escape

from memory.store import MEMORY_STATUSES
from sleeptrain_agent.cli.common import App, console, emit_json, json_option, state_options, table
from sleeptrain_agent.forget import forget

MEMORY_COLUMNS = ["id", "user", "kind", "text", "subject", "relation", "value", "status", "importance", "created_at"]
TURN_COLUMNS = ["id", "conversation_id", "user", "role", "content", "adapter", "created_at"]


@click.group("memory")
def memory_group() -> None:
    """Inspect, search and forget what the agent remembers."""


@memory_group.command("list")
@state_options
@click.option("--status", type=click.Choice(MEMORY_STATUSES), multiple=True, help="Only these statuses (repeatable).")
@click.option("--user", help="Only this user's memories.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many.")
@json_option
def memory_list(app: App, status: tuple[str, ...], user: str | None, limit: int | None, as_json: bool) -> None:
    """List memories, oldest first.

    Example: sleeptrain memory list --status pending --user alice --json
    """
    rows = app.store.memories(status=status or None, user=user, limit=limit)
    if as_json:
        emit_json(rows)
    else:
        table(rows, MEMORY_COLUMNS, title="memories")


@memory_group.command("show")
@state_options
@click.argument("memory_id", type=int)
@json_option
def memory_show(app: App, memory_id: int, as_json: bool) -> None:
    """Show one memory with its decision trail and the turns it came from.

    Example: sleeptrain memory show 12
    """
    store = app.store
    mem = store.memory(memory_id)
    decisions = store.decisions(memory_id=memory_id)
    sources = []
    for tid in mem.get("source_turns") or []:
        try:
            sources.append(store.turn(int(tid)))
        except Exception:  # noqa: BLE001 - a dangling id in a hand-edited row is shown, not fatal
            sources.append({"id": tid, "content": "(missing turn)"})
    if as_json:
        emit_json({**mem, "decisions": decisions, "source_turns": sources})
        return
    out = console()
    out.print(f"[bold]memory {mem['id']}[/bold]  {mem['status']}  {mem.get('kind') or ''}  user={escape(mem['user'])}")
    out.print(f"  {escape(mem['text'])}")
    meta = mem.get("meta") or {}
    structure = {"subject": mem["subject"], "relation": mem.get("relation"), "value": mem.get("value"),
                 "value type": meta.get("value_type"), "time": meta.get("time"), "about": ", ".join(meta.get("entities") or []),
                 "said to the user as": meta.get("you")}  # fmt: skip
    for key in ("importance", "superseded_by", "consolidated_in", "times_replayed", "last_recall", "created_at", "updated_at"):
        structure[key] = mem.get(key)
    for key, value in structure.items():
        if value not in (None, ""):
            out.print(f"  {key:>19}: {escape(str(value))}")
    table(decisions, ["id", "turn_id", "decision", "memory_id", "supersedes", "importance", "judge", "reasons"],
          title="decisions")  # fmt: skip
    table(sources, ["id", "conversation_id", "role", "content", "created_at"], title="source turns")


@memory_group.command("search")
@state_options
@click.argument("text")
@click.option("--user", help="Only this user's memories.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="At most this many results, best first.")
@json_option
def memory_search(app: App, text: str, user: str | None, limit: int, as_json: bool) -> None:
    """Full-text search over memories, best match first.

    Example: sleeptrain memory search "Pilsner"
    """
    rows = app.store.search_memories(text, user=user, limit=limit)
    if as_json:
        emit_json(rows)
    else:
        table(rows, MEMORY_COLUMNS, title="memories")


@memory_group.command("forget")
@state_options
@click.argument("memory_id", type=int)
@json_option
def memory_forget(app: App, memory_id: int, as_json: bool) -> None:
    """Erase a memory: its words leave the database (and the turns that said them are redacted), the
    sleep files and older adapters trained on it are deleted, and the user's next sleep rebuilds the
    adapter from the base model without it (a deep sleep). Until then the router no longer sends
    questions about it to the adapter.

    Example: sleeptrain memory forget 12
    """
    mem = forget(app.store, app.state_dir, memory_id)
    if as_json:
        emit_json(mem)
        return
    e = mem["erased"]
    if not e["memories"]:
        click.echo(f"memory {memory_id} was already erased")
        return
    older = len(e["memories"]) - 1
    click.echo(
        f"erased memory {memory_id}" + (f" and {older} older value(s) of it" if older else "")
        + f"; {len(e['turns'])} turn(s) redacted, {len(e['adapters'])} old adapter(s) deleted;"
        + f" {e['user']}'s next sleep is a deep sleep"
    )


@memory_group.command("stats")
@state_options
@click.option("--user", help="Only this user.")
@json_option
def memory_stats(app: App, user: str | None, as_json: bool) -> None:
    """Count memories by status, turns, conversations and decisions.

    Example: sleeptrain memory stats --json
    """
    stats = app.store.stats(user=user)
    if as_json:
        emit_json(stats)
        return
    rows = [{"what": f"memories {k}", "count": v} for k, v in stats["by_status"].items()]
    rows += [{"what": k, "count": stats[k]} for k in ("memories", "turns", "conversations", "users", "decisions")]
    rows.append({"what": "database bytes", "count": stats["file_bytes"]})
    table(rows, ["what", "count"], title="store")


@memory_group.command("decisions")
@state_options
@click.option("--turn", "turn_id", type=int, help="Only the decisions about this turn.")
@click.option("--memory", "memory_id", type=int, help="Only the decisions that made or superseded this memory.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the last N decisions.")
@json_option
def memory_decisions(app: App, turn_id: int | None, memory_id: int | None, limit: int | None, as_json: bool) -> None:
    """Show the hippocampus' audit trail: what it decided about each turn, and why.

    Example: sleeptrain memory decisions --turn 42 --json
    """
    rows = app.store.decisions(turn_id=turn_id, memory_id=memory_id)
    if limit:
        rows = rows[-limit:]
    texts = {m["id"]: m["text"] for m in app.store.memories()} if rows else {}
    rows = [{**r, "statement": texts.get(r["memory_id"])} for r in rows]  # what was stored, corrected or reinforced
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["id", "turn_id", "decision", "memory_id", "statement", "supersedes", "importance", "judge", "reasons"],
              title="decisions")  # fmt: skip


@click.command("conversations")
@state_options
@click.option("--user", help="Only this user's conversations.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many, newest first.")
@json_option
def conversations(app: App, user: str | None, limit: int | None, as_json: bool) -> None:
    """List conversations, most recently active first.

    Example: sleeptrain conversations --user alice
    """
    rows = app.store.conversations(user=user, limit=limit)
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["id", "user", "title", "turns", "created_at", "last_turn_at"], title="conversations")


@click.command("turns")
@state_options
@click.option("--conversation", "conversation_id", help="Only this conversation.")
@click.option("--user", help="Only this user's turns.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the last N turns.")
@click.option("--search", "query", help="Full-text search instead of listing.")
@json_option
def turns(app: App, conversation_id: str | None, user: str | None, limit: int | None, query: str | None,
          as_json: bool) -> None:  # fmt: skip
    """List logged turns in order (user and assistant), or search them.

    Example: sleeptrain turns --conversation 3f2a... --json
    """
    if query:
        rows = app.store.search_turns(query, user=user, limit=limit or 20)
        if conversation_id:
            rows = [r for r in rows if r["conversation_id"] == conversation_id]
    else:
        if conversation_id:
            app.store.conversation(conversation_id)  # NotFound for a wrong id, not an empty list
        rows = app.store.turns(conversation_id=conversation_id, user=user, limit=limit)
    if as_json:
        emit_json(rows)
    else:
        table(rows, TURN_COLUMNS, title="turns")


COMMANDS = [memory_group, conversations, turns]
