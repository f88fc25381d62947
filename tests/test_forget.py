"""Forget erases: the words leave the SQLite files (real file, WAL mode), the state directory's sleep
files and older adapters trained on the memory are deleted, the next sleep is deep, and the deep
sleep's reasons (`SleepCycle.deep_reason`). The whole loop with a real sleep is in test_sleep.py."""

from __future__ import annotations

import json

import pytest

from memory.erasure import REDACTED
from memory.store import Store
from sleeptrain_agent.config import load_settings
from sleeptrain_agent.forget import erase_superseded, forget
from sleeptrain_agent.sleep.cycle import SleepCycle
from tests.fakes import FakeBackend

WORDS = [b"Quillfeather", b"Zanzibar", b"marmalade"]


@pytest.fixture
def state(tmp_path):
    store = Store(tmp_path / "sleeptrain.db")
    filler = store.start_conversation("alice", conversation_id="c0")
    for i in range(150):  # enough pages that a rewritten turn frees some (without secure_delete they keep the words)
        store.log_turn(filler, "user", f"filler turn {i} about the weather and tea " * 5)
    cid = store.start_conversation("alice", conversation_id="c1")
    t1 = store.log_turn(cid, "user", "My parrot is called Quillfeather and he loves marmalade. " * 20)
    store.log_turn(cid, "assistant", "Quillfeather is a lovely name for a parrot!")
    t3 = store.log_turn(cid, "user", "Actually, we renamed him Zanzibar.")
    store.log_turn(cid, "user", "What's the weather like?")
    for i in range(150):
        store.log_turn(filler, "user", f"more filler {i} " * 10)
    later = store.start_conversation("alice", conversation_id="c2")
    store.log_turn(later, "user", "What is my parrot called? Alice's sister asked.")
    store.log_turn(later, "assistant", "Your parrot is called zanzibar.")
    old = store.add_memory(user="alice", subject="alice's parrot", relation="name", value="Quillfeather",
                           text="Alice's parrot is called Quillfeather.", source_turns=[t1["id"]],
                           embedding=[0.1, 0.2], meta={"you": "Your parrot is called Quillfeather."})  # fmt: skip
    new = store.add_memory(user="alice", subject="alice's parrot", relation="name", value="Zanzibar",
                           text="Alice's parrot is called Zanzibar.", source_turns=[t3["id"]], status="consolidated")  # fmt: skip
    store.update_memory(old["id"], status="superseded", superseded_by=new["id"])
    store.log_decision(turn_id=t1["id"], decision="STORE", judge="extractor", memory_id=old["id"],
                       reasons=["a name: Quillfeather"])  # fmt: skip
    store.log_decision(turn_id=t3["id"], decision="CORRECT", judge="extractor", memory_id=new["id"],
                       supersedes=old["id"], reasons=["Quillfeather -> Zanzibar"])  # fmt: skip
    other = store.add_memory(user="bob", subject="bob", relation="lives in", value="Bergen", text="Bob lives in Bergen.",
                             status="consolidated")  # fmt: skip
    # two of alice's sleeps rehearsed the parrot (v0001, v0002, and a refused candidate); her v0000 predates
    # it; bob's own lineage (v0003) never saw it
    adapters = tmp_path / "adapters"
    for version, user, sleep_new, replay in (("v0000", "alice", [], []), ("v0001", "alice", [new["id"]], []),
                                             ("v0002", "alice", [], [new["id"]]), ("v0003", "bob", [other["id"]], [])):
        row = store.start_sleep("manual", {"new": sleep_new, "replay": replay}, user=user)
        (tmp_path / "sleeps" / f"{row['id']:04d}").mkdir(parents=True)
        (tmp_path / "sleeps" / f"{row['id']:04d}" / "job.json").write_text(json.dumps({"text": "Zanzibar"}))
        (adapters / user / version).mkdir(parents=True)
        store.add_adapter(version, adapters / user / version, user=user, sleep_id=row["id"])
        store.finish_sleep(row["id"], "promoted", adapter=version, details={"step": "promoted"})
    (adapters / "alice" / "rejected" / "sleep-0002").mkdir(parents=True)
    store.activate_adapter("v0002")
    store.activate_adapter("v0003")
    store.close()
    return tmp_path


def file_bytes(state) -> bytes:
    return b"".join(p.read_bytes() for p in state.glob("sleeptrain.db*"))


def test_forget_erases_the_fact_and_its_history_from_the_file(state):
    assert all(w in file_bytes(state) for w in WORDS)
    store = Store(state / "sleeptrain.db")
    # freed pages are zeroed (this machine's SQLite is built with it on; the store asks for it everywhere)
    assert store.db.execute("pragma secure_delete").fetchone()[0] == 1
    row = forget(store, state, 2)
    assert row["status"] == "forgotten" and row["value"] is None and row["text"] == "(forgotten)"
    assert sorted(row["erased"]["memories"]) == [1, 2] and row["erased"]["turns"] == [151, 153]
    assert store.memory(1)["status"] == "forgotten" and not store.memory(1)["has_embedding"]
    turns = store.turns(conversation_id="c1")
    assert [t["content"] for t in turns] == [REDACTED, f"{REDACTED} is a lovely name for a parrot!", REDACTED,
                                             "What's the weather like?"]  # fmt: skip
    assert turns[0]["meta"]["redacted"] and "redacted" not in (turns[1]["meta"] or {})
    # a later conversation: the value is redacted wherever the user's turns quote it; a name only where it came from
    assert [t["content"] for t in store.turns(conversation_id="c2")] == [
        "What is my parrot called? Alice's sister asked.", f"Your parrot is called {REDACTED}."]
    assert all("Quillfeather" not in json.dumps(d) for d in store.decisions())
    assert store.search_memories("Zanzibar") == [] and store.search_turns("Quillfeather") == []
    assert store.memory(3)["value"] == "Bergen"  # another user's memory is untouched
    assert store.deep_sleep_due() == ["alice"]
    store.close()
    assert not any(w in file_bytes(state) for w in WORDS)


def test_forget_deletes_sleep_files_and_older_adapters_trained_on_it(state):
    store = Store(state / "sleeptrain.db")
    erased = forget(store, state, 2)["erased"]
    assert erased["adapters"] == ["v0001"]  # v0002 is served (kept until a deep sleep); v0000 predates the memory
    alice = state / "adapters" / "alice"
    assert not (alice / "v0001").exists() and (alice / "v0000").exists()
    assert not (state / "sleeps" / "0002").exists() and not (state / "sleeps" / "0003").exists()
    assert (state / "sleeps" / "0001").exists() and (state / "sleeps" / "0004").exists()  # bob's sleep: his
    assert not (alice / "rejected" / "sleep-0002").exists()
    assert store.adapter("v0001")["erased_at"] and not store.adapter("v0002")["erased_at"]
    with pytest.raises(Exception, match="was erased"):
        store.activate_adapter("v0001")
    assert store.active_adapter("alice")["version"] == "v0002"
    # her deep sleep's new adapter replaces her whole lineage; bob's is another lineage, untouched
    (alice / "v0005").mkdir()
    store.add_adapter("v0005", alice / "v0005", user="alice")
    assert erase_superseded(store, state, keep="v0005", user="alice") == ["v0000", "v0002"]
    assert [p.name for p in alice.iterdir()] == ["v0005"]
    assert (state / "adapters" / "bob" / "v0003").exists() and not store.adapter("v0003")["erased_at"]
    store.close()


def test_forgetting_twice_erases_nothing_more(state):
    store = Store(state / "sleeptrain.db")
    forget(store, state, 2)
    store.clear_deep_sleep()
    again = forget(store, state, 2)
    assert again["erased"]["memories"] == [] and store.deep_sleep_due() == []
    store.close()


def test_when_a_sleep_is_deep(tmp_path, model_path):
    store = Store(tmp_path / "s.db")
    cycle = SleepCycle(load_settings(), store, FakeBackend(), model_path, tmp_path, embedder=object(), router=None)
    cfg, me = cycle.config(), "default"
    assert cycle.deep_reason(cfg, me) is None
    assert cycle.deep_reason(cycle.config({"deep": True}), me) == "asked"
    for deep in (True, False, False):
        row = store.start_sleep("manual", {"deep": "asked" if deep else None})
        store.finish_sleep(row["id"], "promoted")
    assert cycle.deep_reason(cycle.config({"deep_every": 3}), me) is None  # two continued sleeps since the deep one
    row = store.start_sleep("manual", {})
    store.finish_sleep(row["id"], "rejected")  # a rejected sleep does not count
    assert cycle.deep_reason(cycle.config({"deep_every": 3}), me) is None
    for _ in range(3):  # another user's sleeps do not count
        store.finish_sleep(store.start_sleep("manual", {}, user="v")["id"], "promoted")
    assert cycle.deep_reason(cycle.config({"deep_every": 3}), me) is None
    row = store.start_sleep("manual", {})
    store.finish_sleep(row["id"], "promoted")
    assert cycle.deep_reason(cycle.config({"deep_every": 3}), me) == "deep_every"
    m = store.add_memory(user="u", subject="u", relation="lives in", value="Oslo", text="U lives in Oslo.")
    store.forget(m["id"])
    assert cycle.deep_reason(cfg, "u") == "forget" and cycle.deep_reason(cfg, me) is None  # only u's adapter knew it
    store.close()


def test_sleep_logs_carry_figures_not_memories():
    from sleeptrain_agent.sleep.cycle import _figures

    details = {"step": "validated", "new": [1, 2], "scores": {"recall": 0.9, "probes": 10, "examples": [
        {"q": "What is my dog called?", "a": "Pilsner", "ok": True}], "locality_lost": [], "note": "Pilsner"}}
    assert _figures(details) == {"step": "validated", "new": [1, 2],
                                 "scores": {"recall": 0.9, "probes": 10, "examples": 1, "locality_lost": []}}


def test_forgetting_a_user_deletes_everything_of_theirs(state):
    from memory.errors import NotFound
    from sleeptrain_agent.forget import forget_user

    store = Store(state / "sleeptrain.db")
    store.cache("k", "gemini", '{"facts": ["What is the weather like in Tromsø today?"]}')  # quotes no memory
    result = forget_user(store, state, "alice")
    assert result["memories"] == 2 and result["turns"] == 306 and result["deactivate"]
    assert result["adapters_erased"] == ["v0000", "v0001", "v0002"] and result["sleeps_deleted"] == 3
    assert [u["id"] for u in store.users()] == ["bob"] and not store.users()[0]["deep_sleep_due"]  # his adapter: his
    assert store.memories(user="alice") == [] and store.turns(user="alice") == [] and store.conversations(user="alice") == []
    assert store.adapters(user="alice") == [] and store.sleeps(user="alice") == []
    assert not (state / "adapters" / "alice").exists() and not (state / "sleeps" / "0001").exists()
    assert store.cached("k") is None  # the judge cache is emptied
    assert store.active_adapter("bob")["version"] == "v0003" and (state / "adapters" / "bob" / "v0003").exists()
    with pytest.raises(NotFound):
        forget_user(store, state, "alice")
    store.close()
    data = file_bytes(state)
    assert not any(w in data for w in WORDS + [b"filler turn", b"Alice's sister"])
    store = Store(state / "sleeptrain.db")
    last = forget_user(store, state, "bob")
    assert last["deactivate"] and store.active_adapters() == [] and store.adapters() == []
    assert not any((state / "adapters").glob("*/v*"))
    store.close()


def test_after_forgetting_the_only_memory_the_base_model_answers(tmp_path, model_path):
    from memory.embeddings import Embedder
    from sleeptrain_agent.routing import make_router, routes

    store = Store(tmp_path / "s.db")
    m = store.add_memory(user="u", subject="u's dog", relation="name", value="Pilsner", text="U's dog is called Pilsner.",
                         status="consolidated")  # fmt: skip
    backend = FakeBackend()
    backend.swap("v0001", None, user="u")
    router = make_router(load_settings(), Embedder())
    ask = [[{"role": "user", "content": "What is my dog called?"}]]
    assert routes(router, store, backend, ask, user="u")[0].adapter
    store.forget(m["id"])  # no consolidated memory left, but the adapter still knows it
    assert routes(router, store, backend, ask, user="u")[0].adapter is False
    store.clear_deep_sleep()  # after the deep sleep (or an adapter activated by hand): no keys, the adapter answers
    assert routes(router, store, backend, ask, user="u") == [None]
    store.close()
