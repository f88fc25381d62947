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


def test_upgrade_to_statements_keeps_triples_and_history(tmp_path):
    """m005_statements: memories written before it keep their subject/relation/value and decisions, get a
    kind from their subject, and new statement memories may have no relation or value."""
    path = tmp_path / "m004.db"
    db = sqlite_utils.Database(path)
    migrate(db, until="m004_hippocampus")
    db["users"].insert({"id": "bob", "created_at": "x"})
    for subject, relation, value in [("user", "lives in", "Oslo"), ("user's dog", "name", "Rex"), ("user", "likes", "jazz")]:
        db["memories"].insert({"user": "bob", "subject": subject, "relation": relation, "value": value,
                               "text": f"{subject} {relation} {value}", "status": "consolidated", "importance": 0.5,
                               "source_turns": "[]", "created_at": "x", "updated_at": "x"})  # fmt: skip
    db["decisions"].insert({"turn_id": None, "memory_id": 1, "decision": "STORE", "reasons": '["old"]', "scores": "{}",
                            "judge": "rules", "created_at": "x"})  # fmt: skip
    db.close()
    store = Store(path)
    kinds = [(m["subject"], m["relation"], m["value"], m["kind"]) for m in store.memories()]
    assert kinds == [("user", "lives in", "Oslo", "personal"), ("user's dog", "name", "Rex", "third_party"),
                     ("user", "likes", "jazz", "preference")]  # fmt: skip
    assert store.decisions(memory_id=1)[0]["judge"] == "rules"
    m = store.add_memory(user="bob", text="The user's uncle Rolf restores old motorbikes.", subject="user's uncle Rolf")
    assert (m["relation"], m["value"], m["kind"]) == (None, None, "third_party")
    assert store.search_memories("motorbikes")[0]["id"] == m["id"]
