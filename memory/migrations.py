"""Schema migrations of the episodic store.

Each migration is a function `mNNN_name(db)`; its name is its identity, is
recorded in `_migrations` when applied, and is never renamed (simonw/llm's
pattern). `migrate()` applies, in order, every migration a file has not seen,
each in its own transaction, so an old file upgrades in place and a crash
mid-migration leaves the file at the previous version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlite_utils

MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = []


def migration(fn: Callable[[sqlite_utils.Database], None]):
    MIGRATIONS.append(fn)
    return fn


def applied(db: sqlite_utils.Database) -> list[str]:
    if "_migrations" not in db.table_names():
        return []
    return [row["name"] for row in db["_migrations"].rows_where(order_by="id")]


def migrate(db: sqlite_utils.Database, until: str | None = None) -> list[str]:
    """Apply pending migrations (up to and including `until`); return the names applied."""
    db["_migrations"].create({"id": int, "name": str, "applied_at": str}, pk="id", if_not_exists=True)
    done = set(applied(db))
    ran = []
    for fn in MIGRATIONS:
        if fn.__name__ not in done:
            with db.conn:  # one transaction per migration
                fn(db)
                db["_migrations"].insert(
                    {"name": fn.__name__, "applied_at": dt.datetime.now(dt.UTC).isoformat()}
                )
            ran.append(fn.__name__)
        if fn.__name__ == until:
            break
    return ran


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    db["users"].create({"id": str, "created_at": str}, pk="id")
    db["conversations"].create(
        {"id": str, "user": str, "title": str, "created_at": str},
        pk="id",
        foreign_keys=[("user", "users", "id")],
    )
    db["turns"].create(
        {
            "id": int,
            "conversation_id": str,
            "user": str,
            "role": str,  # user | assistant | system
            "content": str,
            "adapter": str,  # adapter version that produced an assistant reply; NULL = base model
            "created_at": str,
            "meta": str,  # JSON object
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id"), ("user", "users", "id")],
    )
    db["memories"].create(
        {
            "id": int,
            "user": str,
            "subject": str,
            "relation": str,
            "value": str,
            "text": str,
            "status": str,  # pending | consolidated | superseded | rejected | forgotten
            "importance": float,
            "source_turns": str,  # JSON list of turn ids
            "superseded_by": int,
            "created_at": str,
            "updated_at": str,
            "embedding": bytes,  # float32 vector, little-endian
            "meta": str,  # JSON object
        },
        pk="id",
        foreign_keys=[("user", "users", "id"), ("superseded_by", "memories", "id")],
    )
    db["decisions"].create(
        {
            "id": int,
            "turn_id": int,
            "memory_id": int,
            "decision": str,  # STORE | REJECT | CORRECT | REINFORCE
            "supersedes": int,
            "importance": float,
            "reasons": str,  # JSON list of strings
            "scores": str,  # JSON object
            "judge": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("turn_id", "turns", "id"), ("memory_id", "memories", "id")],
    )
    db["sleeps"].create(
        {
            "id": int,
            "status": str,  # running | promoted | rejected | failed
            "trigger": str,
            "started_at": str,
            "finished_at": str,
            "adapter": str,
            "details": str,  # JSON object: counts, loss, validation scores
            "error": str,
        },
        pk="id",
    )
    db["adapters"].create(
        {
            "version": str,  # v0001, v0002, ...
            "path": str,
            "sleep_id": int,
            "parent": str,
            "active": int,
            "created_at": str,
            "scores": str,  # JSON object
        },
        pk="version",
        foreign_keys=[("sleep_id", "sleeps", "id")],
    )
    db["turns"].create_index(["conversation_id", "id"])
    db["turns"].create_index(["user", "id"])
    db["memories"].create_index(["user", "status"])
    db["decisions"].create_index(["turn_id"])
    db["decisions"].create_index(["memory_id"])


@migration
def m002_fts(db: sqlite_utils.Database) -> None:
    db["turns"].enable_fts(["content"], fts_version="FTS5", create_triggers=True)
    db["memories"].enable_fts(["subject", "relation", "value", "text"], fts_version="FTS5", create_triggers=True)


@migration
def m003_replay(db: sqlite_utils.Database) -> None:
    # Replay bookkeeping: the sleep that consolidated a memory, how often it was
    # rehearsed, and its recall measured at the last validation (NULL = never).
    memories = db["memories"]
    memories.add_column("consolidated_in", int)
    memories.add_column("times_replayed", int, not_null_default=0)
    memories.add_column("last_recall", float)


@migration
def m004_hippocampus(db: sqlite_utils.Database) -> None:
    # Every user turn waits for the hippocampus ('pending' -> 'done', or 'failed'
    # after too many attempts); turns logged before this migration are queued too.
    turns = db["turns"]
    turns.add_column("hippocampus", str)
    turns.add_column("hippocampus_attempts", int, not_null_default=0)
    db.execute("update turns set hippocampus = 'pending' where role = 'user'")
    turns.create_index(["hippocampus"])
    # Persistent cache of LLM-judge answers, keyed by a hash of judge + prompt.
    db["judge_cache"].create({"key": str, "judge": str, "response": str, "created_at": str}, pk="key")


@migration
def m005_statements(db: sqlite_utils.Database) -> None:
    # A memory is a statement; subject/relation/value are an index where found (relation and value may be
    # NULL). `kind`: personal | third_party | preference | plan | world. Existing memories keep their
    # triples and history; their kind follows from their subject.
    db["memories"].add_column("kind", str)
    db.execute(
        "update memories set kind = case when lower(subject) = 'user' then "
        "(case when relation in ('likes', 'dislikes') then 'preference' "
        "when relation = 'plans to' then 'plan' else 'personal' end) else 'third_party' end"
    )


@migration
def m006_forget(db: sqlite_utils.Database) -> None:
    # A forgotten memory is erased from the store; the user's adapter still knows it until a deep sleep
    # rebuilds the adapter from the base model. Adapter versions trained on it are erased then (`erased_at`).
    db["users"].add_column("deep_sleep_due", int, not_null_default=0)
    db["adapters"].add_column("erased_at", str)


@migration
def m007_user_adapters(db: sqlite_utils.Database) -> None:
    # Each user has an adapter lineage (`state/adapters/<user>/vNNNN/`): adapters and sleeps name their user,
    # and each user has at most one active adapter. A shared lineage from before goes to the one user whose
    # memories it consolidated (its files move at the daemon's next start). One that consolidated several
    # users' memories knows all of them, so it is served to nobody: its rows keep `user` NULL (the daemon's
    # next start erases them, files included) and each of those users' next sleep is a deep one.
    db["adapters"].add_column("user", str)
    db["sleeps"].add_column("user", str)
    owners = [r[0] for r in db.execute(
        "select distinct user from memories where consolidated_in is not null and user is not null order by user")]  # fmt: skip
    if len(owners) <= 1:
        owner = owners[0] if owners else "default"
        db.execute("update adapters set user = ?", [owner])
        db.execute("update sleeps set user = ?", [owner])
    else:
        db.execute("update adapters set active = 0")
        db.execute(f"update users set deep_sleep_due = 1 where id in ({', '.join('?' * len(owners))})", owners)
    db["adapters"].create_index(["user", "active"])
    db["sleeps"].create_index(["user", "id"])
