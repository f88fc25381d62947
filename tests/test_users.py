"""Per-user learning, as logic: each user's sleep trains that user's own lineage (`adapters/<user>/`)
on that user's memories only, a sleep of everyone queues the users oldest pending first, a forget
rebuilds only the forgetting user's adapter, a store from before per-user lineages migrates, and the
vLLM backend loads a user's adapter on their first request. The trainer is a stand-in that records
what it was given (the real trainer and the two-user recall test on vLLM are in test_sleep.py; real
multi-adapter serving in test_serving.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import sqlite_utils

from memory.migrations import migrate
from memory.store import Store
from sleeptrain_agent.config import load_settings
from sleeptrain_agent.errors import NothingToLearn
from sleeptrain_agent.sleep.adapters import user_dir
from sleeptrain_agent.sleep.cycle import SleepCycle
from tests.fakes import FakeBackend

LENIENT = {"anchors": False, "min_recall": 0.0, "min_locality": 0.0, "min_adapter_locality": 0.0,
           "min_retention": 0.0, "fallback_scales": [], "stop_recall": None, "min_epochs": 1, "max_epochs": 1}  # fmt: skip


class _Embed:
    def encode(self, texts):
        import numpy as np

        return np.ones((len(texts), 4)) / 2


@pytest.fixture
def cycle(tmp_path, monkeypatch):
    settings = load_settings(overrides={"sleep": LENIENT, "serve": {"routing": False}})
    store = Store(tmp_path / "sleeptrain.db")
    cycle = SleepCycle(settings, store, FakeBackend(), tmp_path / "model", tmp_path, embedder=_Embed())
    monkeypatch.setattr(cycle, "_validate", lambda dreams, memories, cfg: {"examples": len(dreams.examples)})

    def trained(self, on_step=None):  # what the sleep handed the trainer, kept in the "adapter"
        out = Path(self.job.output_dir)
        out.mkdir(parents=True)
        (out / "conversations.json").write_text(json.dumps(self.job.conversations))
        (out / "started_from").write_text(str(self.job.init_adapter))
        return {"steps": 1, "loss": 0.1}

    monkeypatch.setattr("sleeptrain_agent.sleep.cycle.TrainerChild.run", trained)
    yield cycle
    store.close()


def _taught(adapter: dict) -> str:
    return (Path(adapter["path"]) / "conversations.json").read_text()


def test_a_sleep_of_everyone_trains_each_user_their_own_adapter(cycle, tmp_path):
    store = cycle.store
    store.add_memory(user="bob", subject="bob's cat", relation="name", value="Biscuit", text="Bob's cat is called Biscuit.")
    store.add_memory(user="alice", subject="alice's cat", relation="name", value="Mochi",
                     text="Alice's cat is called Mochi.")  # fmt: skip
    store.add_memory(user="alice", subject="alice", relation="works as", value="beekeeper", text="Alice works as a beekeeper.")
    assert cycle.queue(cycle.config()) == ["bob", "alice"]  # oldest pending memory first
    rows = cycle.run("test")
    assert [(r["user"], r["status"]) for r in rows] == [("bob", "promoted"), ("alice", "promoted")]
    bob, alice = store.active_adapter("bob"), store.active_adapter("alice")
    assert (bob["version"], alice["version"]) == ("v0001", "v0002")  # numbered across users: a version names one
    assert Path(bob["path"]) == tmp_path / "adapters" / "bob" / "v0001"
    assert Path(alice["path"]) == tmp_path / "adapters" / "alice" / "v0002"
    assert "Biscuit" in _taught(bob) and "Mochi" not in _taught(bob) and "beekeeper" not in _taught(bob)
    assert "Mochi" in _taught(alice) and "beekeeper" in _taught(alice) and "Biscuit" not in _taught(alice)
    assert [(v, u) for v, _, u in cycle.backend.swaps] == [("v0001", "bob"), ("v0002", "alice")]
    assert cycle.backend.serving == {"bob": "v0001", "alice": "v0002"}
    assert {u["id"]: u["adapter"] for u in store.users()} == {"alice": "v0002", "bob": "v0001"}
    assert {m["status"] for m in store.memories()} == {"consolidated"}

    # one user's sleep: theirs continues from their own adapter, replays their memories, and nobody else's
    store.add_memory(user="alice", subject="alice's dog", relation="name", value="Pilot", text="Alice's dog is called Pilot.")
    store.add_memory(user="bob", subject="bob", relation="lives in", value="Porto", text="Bob lives in Porto.")
    [row] = cycle.run("test", user="alice")
    assert row["user"] == "alice" and row["status"] == "promoted"
    newest = store.active_adapter("alice")
    assert newest["parent"] == "v0002" and (Path(newest["path"]) / "started_from").read_text() == alice["path"]
    assert "Pilot" in _taught(newest) and "Biscuit" not in _taught(newest) and "Porto" not in _taught(newest)
    assert [m["value"] for m in store.memories(status="pending")] == ["Porto"]  # bob's waits for his sleep
    assert store.active_adapter("bob")["version"] == "v0001"
    assert [s["user"] for s in store.sleeps(user="bob")] == ["bob"]


def test_nothing_to_learn_is_said_per_user(cycle):
    with pytest.raises(NothingToLearn):
        cycle.run("test")
    cycle.store.add_memory(user="bob", subject="bob", relation="lives in", value="Porto", text="Bob lives in Porto.")
    with pytest.raises(NothingToLearn, match="'alice'"):
        cycle.run("test", user="alice")
    assert not cycle.running and cycle.store.sleeps() == []  # a refused sleep records nothing


def test_a_forget_rebuilds_only_the_forgetting_users_adapter(cycle, tmp_path):
    from sleeptrain_agent.forget import forget

    store = cycle.store
    mochi = store.add_memory(user="alice", subject="alice's cat", relation="name", value="Mochi",
                             text="Alice's cat is called Mochi.")  # fmt: skip
    store.add_memory(user="alice", subject="alice", relation="works as", value="beekeeper", text="Alice works as a beekeeper.")
    store.add_memory(user="bob", subject="bob's cat", relation="name", value="Biscuit", text="Bob's cat is called Biscuit.")
    cycle.run("test")
    before = {u: store.active_adapter(u)["version"] for u in ("alice", "bob")}
    forget(store, tmp_path, mochi["id"])
    assert store.deep_sleep_due() == ["alice"]
    assert cycle.queue(cycle.config()) == ["alice"]  # nothing pending, but her adapter still knows the cat
    [row] = cycle.run("test")
    assert row["user"] == "alice" and row["details"]["deep"] == "forget" and row["status"] == "promoted"
    rebuilt = store.active_adapter("alice")
    assert rebuilt["parent"] is None and (Path(rebuilt["path"]) / "started_from").read_text() == "None"
    assert "Mochi" not in _taught(rebuilt) and "beekeeper" in _taught(rebuilt)
    assert row["details"]["erased_adapters"] == [before["alice"]] and not Path(store.adapter(before["alice"])["path"]).exists()
    assert store.active_adapter("bob")["version"] == before["bob"] and not store.adapter(before["bob"])["erased_at"]
    assert store.deep_sleep_due() == []


def _old_store(path: Path, owners: list[str]) -> None:
    """A store written before per-user lineages: one shared lineage, its memories' users `owners`."""
    db = sqlite_utils.Database(path)
    migrate(db, until="m006_forget")
    for u in owners:
        db["users"].insert({"id": u, "created_at": "x", "deep_sleep_due": 0})
    db["sleeps"].insert({"id": 1, "status": "promoted", "trigger": "manual", "started_at": "x", "adapter": "v0001",
                         "details": "{}"})  # fmt: skip
    db["sleeps"].insert({"id": 2, "status": "rejected", "trigger": "manual", "started_at": "x", "details": "{}"})
    for i, u in enumerate(owners):
        db["memories"].insert({"user": u, "subject": u, "relation": "lives in", "value": f"Town{i}", "text": f"{u} lives in Town{i}.",
                               "status": "consolidated", "importance": 0.5, "source_turns": "[]", "created_at": "x",
                               "updated_at": "x", "consolidated_in": 1})  # fmt: skip
    adapters = path.parent / "adapters"
    (adapters / "v0001").mkdir(parents=True)
    (adapters / "v0001" / "adapter_config.json").write_text("{}")
    (adapters / "rejected" / "sleep-0002").mkdir(parents=True)
    db["adapters"].insert({"version": "v0001", "path": str(adapters / "v0001"), "sleep_id": 1, "active": 1,
                           "created_at": "x", "scores": "{}"})  # fmt: skip
    db.close()


def test_a_shared_adapter_of_one_user_migrates_into_their_lineage(tmp_path):
    _old_store(tmp_path / "sleeptrain.db", ["alice"])
    store = Store(tmp_path / "sleeptrain.db")
    assert store.active_adapter("alice")["version"] == "v0001" and store.sleep(1)["user"] == "alice"
    cycle = SleepCycle(load_settings(), store, FakeBackend(), tmp_path / "model", tmp_path, embedder=_Embed(), router=None)
    notes = cycle.recover()
    assert any("moved v0001" in n for n in notes)
    moved = tmp_path / "adapters" / "alice" / "v0001"
    assert Path(store.adapter("v0001")["path"]) == moved and (moved / "adapter_config.json").is_file()
    assert (tmp_path / "adapters" / "alice" / "rejected" / "sleep-0002").is_dir()
    assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == ["alice"]
    assert store.deep_sleep_due() == [] and cycle.recover() == []  # once
    store.close()


def test_a_shared_adapter_of_several_users_is_served_to_nobody_and_erased(tmp_path):
    _old_store(tmp_path / "sleeptrain.db", ["alice", "bob"])
    store = Store(tmp_path / "sleeptrain.db")
    assert store.active_adapters() == [] and store.adapter("v0001")["user"] is None
    assert store.deep_sleep_due() == ["alice", "bob"]  # each rebuilds from their own memories
    with pytest.raises(Exception, match="shared by several users"):
        store.activate_adapter("v0001")
    cycle = SleepCycle(load_settings(), store, FakeBackend(), tmp_path / "model", tmp_path, embedder=_Embed(), router=None)
    assert any("several users" in n for n in cycle.recover())
    assert store.adapter("v0001")["erased_at"] and not (tmp_path / "adapters" / "v0001").exists()
    assert not (tmp_path / "adapters" / "rejected").exists()
    assert cycle.queue(cycle.config()) == ["alice", "bob"]
    store.close()


def test_user_directories_are_plain_names_or_safe_slugs():
    assert user_dir("alice") == "alice" and user_dir("bob.smith_2") == "bob.smith_2"
    odd = [user_dir(u) for u in ("../etc", "a b", "a_b", "orphaned", "rejected", "v0001", ".hidden", "Zoë", "")]
    assert all("/" not in d and not d.startswith(".") and d not in ("orphaned", "rejected", "v0001") for d in odd)
    assert len(set(odd)) == len(odd)  # distinct ids, distinct directories


def test_vllm_loads_a_users_adapter_on_their_first_request(tmp_path, monkeypatch):
    """The backend's bookkeeping with the server's load call stubbed (the real server: test_serving.py)."""
    from sleeptrain_agent.backends.vllm import BASE_NAME, VLLMBackend

    backend = VLLMBackend(load_settings(), tmp_path / "model", tmp_path)
    loads: list[str] = []
    gate = threading.Event()

    def load(version, path):
        gate.wait(5)
        loads.append(version)
        return f"{version}.{len(loads)}"

    monkeypatch.setattr(backend, "_load", load)
    adapter = tmp_path / "a"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (adapter / "adapter_model.safetensors").write_bytes(b"x")
    backend.swap("v0001", adapter, user="alice", lazy=True)
    assert loads == [] and backend.serving == {"alice": "v0001"}  # assigned, not loaded
    assert backend._take("bob") == (None, BASE_NAME) and backend._take(None) == (None, BASE_NAME)
    assert backend._take("alice", base=True) == (None, BASE_NAME)
    taken: list = []
    threads = [threading.Thread(target=lambda: taken.append(backend._take("alice"))) for _ in range(4)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert loads == ["v0001"] and taken == [("v0001", "v0001.1")] * 4  # loaded once, for all four
    assert backend._inflight["v0001.1"] == 4
