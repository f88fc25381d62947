"""Schema migrations: from a blank file, and from an older schema with data in it."""

from __future__ import annotations

import sqlite_utils

from memory.migrations import MIGRATIONS, applied, migrate
from memory.store import Store


def test_blank_file_gets_every_migration(tmp_path):
    store = Store(tmp_path / "new.db")
    assert store.schema_version() == [fn.__name__ for fn in MIGRATIONS]
    tables = set(store.db.table_names())
    assert {"users", "conversations", "turns", "memories", "decisions", "sleeps", "adapters", "turns_fts"} <= tables
    assert store.integrity_check() == "ok"


def test_reopening_applies_nothing_twice(tmp_path):
    Store(tmp_path / "x.db").close()
    db = sqlite_utils.Database(tmp_path / "x.db")
    assert migrate(db) == []
    assert len(applied(db)) == len(MIGRATIONS)


def test_upgrade_from_first_schema_keeps_data(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    assert migrate(db, until="m001_initial") == ["m001_initial"]
    # data written by the old version, straight into its tables
    db["users"].insert({"id": "alice", "created_at": "2026-01-01T00:00:00+00:00"})
    db["conversations"].insert({"id": "c1", "user": "alice", "created_at": "2026-01-01T00:00:00+00:00"})
    db["turns"].insert({"conversation_id": "c1", "user": "alice", "role": "user", "content": "my cat is Miso",
                        "created_at": "2026-01-01T00:00:01+00:00"})  # fmt: skip
    db["memories"].insert({"user": "alice", "subject": "alice's cat", "relation": "name", "value": "Miso",
                           "text": "Alice's cat is Miso", "status": "pending", "importance": 0.7,
                           "source_turns": "[1]", "created_at": "x", "updated_at": "x"})  # fmt: skip
    db.close()

    store = Store(path)
    assert store.schema_version() == [fn.__name__ for fn in MIGRATIONS]
    # old rows are searchable (FTS populated on upgrade) and have the new columns' defaults
    assert [t["content"] for t in store.search_turns("Miso")] == ["my cat is Miso"]
    mem = store.search_memories("Miso")[0]
    assert mem["times_replayed"] == 0 and mem["last_recall"] is None and mem["source_turns"] == [1]
    # and the upgraded file works as a current one
    store.log_turn("c1", "assistant", "Miso is a sweet name")
    assert [t["content"] for t in store.search_turns("sweet")] == ["Miso is a sweet name"]
    assert store.integrity_check() == "ok"
