"""The episodic store on real SQLite files."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from memory.errors import InvalidInput, NotFound
from memory.store import Store


def test_turns_round_trip_in_order(store):
    cid = store.start_conversation("alice", title="first")
    a = store.log_turn(cid, "user", "My dog is called Pilsner.")
    b = store.log_turn(cid, "assistant", "What a lovely name!", adapter="v0001", meta={"tokens": 6})
    assert [t["id"] for t in store.turns(conversation_id=cid)] == [a["id"], b["id"]]
    assert b == store.turn(b["id"])
    assert b["user"] == "alice" and b["adapter"] == "v0001" and b["meta"] == {"tokens": 6}
    assert a["adapter"] is None
    assert store.turns(conversation_id=cid, limit=1) == [b]
    assert store.conversations(user="alice")[0]["turns"] == 2


def test_users_are_kept_apart(store):
    ca = store.start_conversation("alice")
    cb = store.start_conversation("bob")
    store.log_turn(ca, "user", "alice speaks")
    store.log_turn(cb, "user", "bob speaks")
    store.add_memory(user="alice", subject="alice", relation="pet", value="dog", text="Alice has a dog")
    assert [t["content"] for t in store.turns(user="bob")] == ["bob speaks"]
    assert store.memories(user="bob") == []
    assert store.stats(user="alice")["turns"] == 1
    with pytest.raises(InvalidInput, match="belongs to another user"):
        store.start_conversation("bob", conversation_id=ca)


def test_unknown_conversation_is_refused(store):
    with pytest.raises(NotFound):
        store.log_turn("nope", "user", "hi")
    assert store.stats()["turns"] == 0


def test_memory_lifecycle_and_forget(store):
    cid = store.start_conversation("alice")
    t = store.log_turn(cid, "user", "my sister lives in Oslo")
    m = store.add_memory(
        user="alice", subject="alice's sister", relation="lives in", value="Oslo",
        text="Alice's sister lives in Oslo", importance=0.8, source_turns=[t["id"]], embedding=[0.5, -0.25],
    )  # fmt: skip
    assert m["status"] == "pending" and m["source_turns"] == [t["id"]] and m["has_embedding"]
    assert store.embedding(m["id"]) == [0.5, -0.25]
    newer = store.add_memory(user="alice", subject="alice's sister", relation="lives in", value="Uppsala",
                             text="Alice's sister lives in Uppsala")  # fmt: skip
    store.update_memory(m["id"], status="superseded", superseded_by=newer["id"])
    store.log_decision(turn_id=t["id"], decision="CORRECT", judge="rules", memory_id=newer["id"],
                       supersedes=m["id"], importance=0.8, reasons=["value changed"], scores={"similarity": 0.9})  # fmt: skip
    assert [d["decision"] for d in store.decisions(memory_id=m["id"])] == ["CORRECT"]
    forgotten = store.forget(newer["id"])
    assert forgotten["status"] == "forgotten"
    assert store.memories(status="pending") == []
    assert [x["id"] for x in store.memories(status=["superseded", "forgotten"])] == [m["id"], newer["id"]]
    with pytest.raises(InvalidInput):
        store.update_memory(m["id"], status="bogus")
    with pytest.raises(InvalidInput):
        store.update_memory(m["id"], importance=3)


def test_fts_search_turns_and_memories(store):
    cid = store.start_conversation("alice")
    for text in ["the weather is nice", "My dog Pilsner loves the beach", "I work as a luthier in Bergen"]:
        store.log_turn(cid, "user", text)
    store.add_memory(user="alice", subject="alice", relation="job", value="luthier", text="Alice is a luthier")
    store.add_memory(user="bob", subject="bob", relation="job", value="baker", text="Bob is a baker")
    assert [t["content"] for t in store.search_turns("pilsner")] == ["My dog Pilsner loves the beach"]
    assert [m["value"] for m in store.search_memories("luthier")] == ["luthier"]
    assert store.search_memories("luthier", user="bob") == []
    # FTS syntax in user text is searched for literally, not parsed
    assert store.search_turns('beach" OR "weather') == []
    assert store.search_turns("AND") == []
    # an updated memory is found by its new value (triggers keep the index current)
    m = store.memories(user="bob")[0]
    store.update_memory(m["id"], value="chef", text="Bob is a chef")
    assert [x["id"] for x in store.search_memories("chef")] == [m["id"]]
    assert store.search_memories("baker") == []


@pytest.mark.parametrize(
    "content",
    ["", "x" * 1_000_000, "nul\x00inside\x00", "emoji 🐕 and ümlaut and 中文", '{"not": json', "line\nbreaks\r\n\ttabs"],
    ids=["empty", "1MB", "nul", "unicode", "json-like", "whitespace"],
)
def test_odd_text_is_stored_faithfully(store, content):
    cid = store.start_conversation("alice")
    t = store.log_turn(cid, "user", content)
    store.close()
    reopened = Store(store.path)
    assert reopened.turn(t["id"])["content"] == content
    assert reopened.integrity_check() == "ok"
    reopened.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"content": "lone \ud800 surrogate"}, "lone surrogate"),
        ({"content": "x" * 1_048_577}, "limit is 1,048,576 bytes"),
        ({"content": "é" * 600_000}, "limit"),  # 1.2 MB in UTF-8
        ({"content": b"bytes"}, "must be text"),
        ({"content": "ok", "meta": "{not json"}, "not valid JSON"),
        ({"content": "ok", "meta": "[1, 2]"}, "JSON object"),
        ({"content": "ok", "meta": {"x": float("nan")}}, "cannot be stored as JSON"),
        ({"content": "ok", "role": "robot"}, "role must be one of"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(store, kwargs, message):
    cid = store.start_conversation("alice")
    store.log_turn(cid, "user", "before")
    args = {"role": "user", **kwargs}
    with pytest.raises(InvalidInput, match=message):
        store.log_turn(cid, args.pop("role"), args.pop("content"), **args)
    assert [t["content"] for t in store.turns()] == ["before"]
    assert store.integrity_check() == "ok"


def test_bad_memory_fields_are_refused(store):
    with pytest.raises(InvalidInput, match="must not be empty"):
        store.add_memory(user="a", subject=" ", relation="r", value="v", text="t")
    with pytest.raises(InvalidInput, match="source_turns"):
        store.add_memory(user="a", subject="s", relation="r", value="v", text="t", source_turns="not json")
    with pytest.raises(InvalidInput, match="user"):
        store.add_memory(user="bad\nuser", subject="s", relation="r", value="v", text="t")
    assert store.memories() == []


def test_hand_edited_invalid_json_is_read_back_raw(store):
    cid = store.start_conversation("alice")
    t = store.log_turn(cid, "user", "hi")
    with sqlite3.connect(store.path) as conn:
        conn.execute("update turns set meta = '{broken' where id = ?", [t["id"]])
    assert store.turn(t["id"])["meta"] == "{broken"


def test_bulk_insert_is_all_or_nothing(store):
    cid = store.start_conversation("alice")
    good = [{"conversation_id": cid, "role": "user", "content": f"turn {i}"} for i in range(10)]
    with pytest.raises(InvalidInput):
        store.log_turns([*good, {"conversation_id": cid, "role": "user", "content": "\udfff"}])
    assert store.stats()["turns"] == 0
    assert store.log_turns(good) == 10
    assert store.stats()["turns"] == 10


def test_two_threads_writing_1000_turns_each_lose_none(store):
    errors = []

    def writer(user):
        try:
            cid = store.start_conversation(user)
            for i in range(1000):
                store.log_turn(cid, "user", f"{user} turn {i}")
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(u,)) for u in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for user in ("alice", "bob"):
        contents = [t["content"] for t in store.turns(user=user)]
        assert contents == [f"{user} turn {i}" for i in range(1000)]
    assert store.integrity_check() == "ok"


def test_another_process_connection_can_write_while_store_is_open(store):
    """The CLI writes from another process while the daemon holds the file: WAL + busy timeout."""
    cid = store.start_conversation("alice")
    store.log_turn(cid, "user", "from the daemon")
    other = Store(store.path)
    other.log_turn(cid, "assistant", "from the CLI")
    other.close()
    assert [t["content"] for t in store.turns()] == ["from the daemon", "from the CLI"]
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sleeps_and_adapters(store, tmp_path):
    s = store.start_sleep("manual")
    assert s["status"] == "running"
    store.add_adapter("v0001", tmp_path / "v0001", sleep_id=s["id"], scores={"recall": 1.0})
    store.finish_sleep(s["id"], "promoted", adapter="v0001", details={"steps": 10})
    assert store.active_adapter("default") is None
    assert store.activate_adapter("v0001")["version"] == "v0001"
    store.add_adapter("v0002", tmp_path / "v0002", parent="v0001")
    store.activate_adapter("v0002")
    assert [a["version"] for a in store.adapters() if a["active"]] == ["v0002"]
    with pytest.raises(NotFound):
        store.activate_adapter("v0099")
    assert store.active_adapter("default")["version"] == "v0002"
    assert store.sleep(s["id"])["details"] == {"steps": 10} and store.sleep(s["id"])["user"] == "default"
    with pytest.raises(InvalidInput):
        store.finish_sleep(s["id"], "weird")


def test_each_user_has_one_active_adapter_of_their_own_lineage(store, tmp_path):
    store.add_adapter("v0001", tmp_path / "a1", user="alice")
    store.add_adapter("v0002", tmp_path / "b1", user="bob")
    store.add_adapter("v0003", tmp_path / "a2", user="alice", parent="v0001")
    store.activate_adapter("v0001")
    store.activate_adapter("v0002")
    store.activate_adapter("v0003")  # alice's newer one: bob's stays active
    assert [(a["user"], a["version"]) for a in store.active_adapters()] == [("alice", "v0003"), ("bob", "v0002")]
    assert [a["version"] for a in store.adapters(user="alice")] == ["v0001", "v0003"]
    with pytest.raises(InvalidInput, match="belongs to user 'bob'"):
        store.activate_adapter("v0002", user="alice")
    with pytest.raises(InvalidInput):
        store.activate_adapter(None)  # whose?
    assert store.activate_adapter(None, user="alice") is None
    assert store.active_adapter("alice") is None and store.active_adapter("bob")["version"] == "v0002"
    store.start_sleep("manual", user="alice")
    store.start_sleep("manual", user="bob")
    assert [row["user"] for row in store.sleeps(user="bob")] == ["bob"] and len(store.sleeps()) == 2


@pytest.mark.parametrize("query", ['"', '("', "tea OR", "NEAR(", "*", "tea AND NOT", "'"])
def test_search_treats_quotes_and_operators_as_text(store, query):
    store.add_memory(text="The user likes green tea.", relation="likes", value="tea")
    assert isinstance(store.search_memories(query), list)  # never an FTS syntax error
    assert [m["value"] for m in store.search_memories("green tea")] == ["tea"]
