"""The `sleeptrain` CLI through click's runner, on a real temporary store:
exact output, JSON shapes parsed back, and the rows each command writes."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from memory.store import Store
from sleeptrain_agent.cli import cli


@pytest.fixture
def state(tmp_path):
    """A state directory with two users, a few turns and memories."""
    path = tmp_path / "st"
    store = Store(path / "sleeptrain.db")
    ca = store.start_conversation("alice", conversation_id="conv-a")
    t1 = store.log_turn(ca, "user", "My dog is called Pilsner.")
    store.log_turn(ca, "assistant", "Nice name!", adapter="v0001")
    cb = store.start_conversation("bob", conversation_id="conv-b")
    t3 = store.log_turn(cb, "user", "I live in Bergen.")
    m1 = store.add_memory(user="alice", subject="alice's dog", relation="name", value="Pilsner",
                          text="Alice's dog is called Pilsner", importance=0.9, source_turns=[t1["id"]])  # fmt: skip
    store.log_decision(turn_id=t1["id"], decision="STORE", judge="rules", memory_id=m1["id"], importance=0.9,
                       reasons=["personal fact"])  # fmt: skip
    store.add_memory(user="bob", subject="bob", relation="lives in", value="Bergen", text="Bob lives in Bergen",
                     importance=0.7, source_turns=[t3["id"]], status="consolidated")  # fmt: skip
    store.close()
    return path


def run(*args, ok=True, input=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False, input=input)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_memory_list_json_shape(state):
    rows = json.loads(run("memory", "list", "--state-dir", state, "--json").output)
    assert [r["value"] for r in rows] == ["Pilsner", "Bergen"]
    required = {"id", "user", "subject", "relation", "value", "text", "status", "importance", "created_at"}
    assert all(required <= set(r) for r in rows)
    rows = json.loads(run("memory", "list", "--state-dir", state, "--status", "consolidated", "--json").output)
    assert [r["user"] for r in rows] == ["bob"]
    rows = json.loads(run("memory", "list", "--state-dir", state, "--user", "alice", "--json").output)
    assert [r["value"] for r in rows] == ["Pilsner"]


def test_memory_list_table(state):
    out = run("memory", "list", "--state-dir", state).output
    assert "Pilsner" in out and "Bergen" in out and "consolidated" in out


def test_state_dir_from_env(state, monkeypatch):
    monkeypatch.setenv("SLEEPTRAIN_HOME", str(state))
    assert len(json.loads(run("memory", "list", "--json").output)) == 2


def test_memory_show_has_decisions_and_source_turns(state):
    data = json.loads(run("memory", "show", "1", "--state-dir", state, "--json").output)
    assert data["value"] == "Pilsner"
    assert [d["decision"] for d in data["decisions"]] == ["STORE"]
    assert [t["content"] for t in data["source_turns"]] == ["My dog is called Pilsner."]
    out = run("memory", "show", "1", "--state-dir", state).output
    assert "STORE" in out and "My dog is called Pilsner." in out


def test_memory_search(state):
    rows = json.loads(run("memory", "search", "Bergen", "--state-dir", state, "--json").output)
    assert [r["user"] for r in rows] == ["bob"]
    assert json.loads(run("memory", "search", "Bergen", "--user", "alice", "--state-dir", state, "--json").output) == []


def test_memory_forget_erases_the_words(state):
    result = run("memory", "forget", "1", "--state-dir", state)
    assert result.output == ("erased memory 1; 1 turn(s) redacted, 0 old adapter(s) deleted; "
                             "alice's next sleep is a deep sleep\n")  # fmt: skip
    store = Store(state / "sleeptrain.db")
    assert store.memory(1)["status"] == "forgotten" and "Pilsner" not in json.dumps(store.memory(1))
    assert [m["id"] for m in store.memories(status="pending")] == []
    assert store.deep_sleep_due() == ["alice"]
    assert store.turns(conversation_id="conv-a")[1]["content"] == "Nice name!"  # the rest of the conversation stays
    store.close()
    for command in (("memory", "search", "Pilsner"), ("turns", "--search", "Pilsner"), ("memory", "list")):
        assert "Pilsner" not in run(*command, "--state-dir", state, "--json").output
    assert b"Pilsner" not in b"".join(p.read_bytes() for p in state.glob("sleeptrain.db*"))
    assert run("memory", "forget", "1", "--state-dir", state).output == "memory 1 was already erased\n"


def test_users_list_and_forget(state):
    rows = json.loads(run("users", "list", "--state-dir", state, "--json").output)
    assert [(u["id"], u["memories"], u["turns"]) for u in rows] == [("alice", 1, 2), ("bob", 1, 1)]
    result = run("users", "forget", "bob", "--state-dir", state, input="n\n", ok=False)
    assert result.exit_code == 1 and "Aborted" in result.output
    assert len(json.loads(run("users", "list", "--state-dir", state, "--json").output)) == 2  # nothing changed
    out = run("users", "forget", "bob", "--yes", "--state-dir", state).output
    assert out == "deleted user bob: 1 memories, 1 turns, 0 decisions, 0 sleeps; 0 adapter(s) deleted\n"
    assert [u["id"] for u in json.loads(run("users", "list", "--state-dir", state, "--json").output)] == ["alice"]
    assert "Bergen" not in run("turns", "--state-dir", state, "--json").output
    result = run("users", "forget", "bob", "--yes", "--state-dir", state, ok=False)
    assert result.exit_code == 1 and result.output == "Error: no user 'bob'\n"


def test_missing_memory_is_a_clean_error(state):
    result = run("memory", "show", "99", "--state-dir", state, ok=False)
    assert result.exit_code == 1
    assert result.output == "Error: no memory 99\n"


def test_memory_stats(state):
    stats = json.loads(run("memory", "stats", "--state-dir", state, "--json").output)
    assert stats["memories"] == 2 and stats["turns"] == 3 and stats["conversations"] == 2
    assert stats["by_status"]["pending"] == 1 and stats["by_status"]["consolidated"] == 1
    assert "memories pending" in run("memory", "stats", "--state-dir", state).output


def test_conversations_and_turns(state):
    convs = json.loads(run("conversations", "--state-dir", state, "--json").output)
    assert {c["id"]: c["turns"] for c in convs} == {"conv-a": 2, "conv-b": 1}
    rows = json.loads(run("turns", "--state-dir", state, "--conversation", "conv-a", "--json").output)
    required = {"id", "conversation_id", "user", "role", "content", "adapter", "created_at"}
    assert all(required <= set(r) for r in rows)
    assert [(r["role"], r["adapter"]) for r in rows] == [("user", None), ("assistant", "v0001")]
    rows = json.loads(run("turns", "--state-dir", state, "--search", "Bergen", "--json").output)
    assert [r["conversation_id"] for r in rows] == ["conv-b"]
    result = run("turns", "--state-dir", state, "--conversation", "nope", ok=False)
    assert result.output == "Error: no conversation 'nope'\n"


def test_bad_config_is_a_clean_error(state, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("store:\n  busy_timeout_ms: soon\n")
    result = run("memory", "list", "--state-dir", state, "--config", cfg, ok=False)
    assert result.exit_code == 1
    assert "store.busy_timeout_ms" in result.output and "'soon'" in result.output


def test_config_command_shows_resolved_values(state, monkeypatch):
    monkeypatch.setenv("SLEEPTRAIN_STORE__BUSY_TIMEOUT_MS", "1234")
    data = json.loads(run("config", "--state-dir", state, "--json").output)
    assert data["store"]["busy_timeout_ms"] == 1234
    assert data["state_dir"] == str(state.resolve())


def _all_commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _all_commands(command, (*prefix, name))


@pytest.mark.parametrize("path", list(_all_commands(cli)), ids=" ".join)
def test_every_command_has_help(path):
    result = run(*path, "--help")
    assert "Usage:" in result.output
    command = cli
    for part in path:
        command = command.commands[part]
    assert command.help and command.help.strip(), f"{' '.join(path)} has no help text"
    if not isinstance(command, click.Group):
        assert "Example:" in command.help, f"{' '.join(path)} help has no example"
        assert "--state-dir" in result.output


def test_sleeps_and_adapters_commands(state, tmp_path):
    store = Store(state / "sleeptrain.db")
    s = store.start_sleep("manual", {"new": [1], "deep": "forget"})
    store.finish_sleep(s["id"], "promoted", adapter="v0001",
                       details={"examples": 20, "train_steps": 12, "train_loss": 0.2, "duration_s": 99.5,
                                "scores": {"recall": 0.9, "retention": None, "locality": 1.0}})  # fmt: skip
    store.add_adapter("v0001", tmp_path / "v0001", sleep_id=s["id"])
    store.add_adapter("v0002", tmp_path / "v0002", parent="v0001")
    store.add_adapter("v0003", tmp_path / "v0003", user="bob")
    store.activate_adapter("v0002")
    store.activate_adapter("v0003")
    store.start_sleep("manual", {"new": [2]}, user="bob")
    store.close()
    rows = json.loads(run("sleeps", "--state-dir", state, "--json", "--user", "default").output)
    [row] = rows
    assert (row["status"], row["new"], row["steps"], row["recall"], row["adapter"]) == ("promoted", 1, 12, 0.9, "v0001")
    assert row["deep"] == "forget" and row["user"] == "default"
    assert [r["user"] for r in json.loads(run("sleeps", "--state-dir", state, "--json").output)] == ["bob", "default"]
    assert "promoted" in run("sleeps", "--state-dir", state).output
    listed = json.loads(run("adapters", "list", "--state-dir", state, "--json").output)
    assert [(a["version"], a["user"], a["active"]) for a in listed] == [("v0001", "default", 0), ("v0002", "default", 1),
                                                                         ("v0003", "bob", 1)]  # fmt: skip
    bobs = json.loads(run("adapters", "list", "--state-dir", state, "--json", "--user", "bob").output)
    assert [a["version"] for a in bobs] == ["v0003"]
    result = run("adapters", "activate", "v0001", "--state-dir", state)
    assert result.output == "user default: v0001 is active; the daemon loads it when it starts\n"
    assert Store(state / "sleeptrain.db").active_adapter("default")["version"] == "v0001"
    assert Store(state / "sleeptrain.db").active_adapter("bob")["version"] == "v0003"  # another lineage: untouched
    assert "needs --user" in run("adapters", "activate", "base", "--state-dir", state, ok=False).output
    run("adapters", "activate", "base", "--user", "bob", "--state-dir", state)
    assert Store(state / "sleeptrain.db").active_adapter("bob") is None
    assert run("adapters", "activate", "v0042", "--state-dir", state, ok=False).output == "Error: no adapter 'v0042'\n"


def test_memory_show_and_decisions_show_the_statement_its_structure_and_why(tmp_path):
    """A memory made by the real hippocampus: `memory show` prints the statement, its structure (subject,
    relation, value, what it is about, the second-person form) and the decision's reasons."""
    from memory.embeddings import Embedder
    from memory.extractor import ExtractorJudge
    from memory.hippocampus import Hippocampus

    path = tmp_path / "st"
    store = Store(path / "sleeptrain.db")
    embedder = Embedder()
    hippo = Hippocampus(store, ExtractorJudge(embed=embedder.encode), embedder)
    conv = store.start_conversation("alice", conversation_id="c1")
    hippo.process(store.log_turn(conv, "user", "My cousin Leif lives in Narvik."))
    store.close()
    out = run("memory", "show", "1", "--state-dir", path).output
    assert "The user's cousin Leif lives in Narvik." in out and "third_party" in out
    assert "lives in" in out and "Narvik" in out and "Your cousin Leif lives in Narvik." in out
    assert "a fact about someone or something in the user's life" in out  # why it was stored
    rows = json.loads(run("memory", "decisions", "--state-dir", path, "--json").output)
    assert rows[0]["statement"] == "The user's cousin Leif lives in Narvik." and rows[0]["judge"] == "extractor"
    listed = run("memory", "list", "--state-dir", path).output
    assert "The user's cousin Leif lives in" in listed


def test_memory_search_with_a_stray_quote_is_no_traceback(state):
    result = run("memory", "search", '"', "--state-dir", state)
    assert result.exit_code == 0 and "no memories" in result.output


def test_a_sleep_outcome_in_a_line():
    from sleeptrain_agent.cli.sleep import outcome

    base = {"id": 3, "user": "alice", "trigger": "manual", "started_at": "t", "finished_at": "t", "adapter": "v0004"}
    scores = {"recall": 0.9, "locality": 1.0, "adapter_locality": 0.71, "retention": None}
    retried = {**base, "status": "promoted", "details": {"deep": "retry", "duration_s": 549.3, "scores": scores,
                                                         "continued": {"rejected_because": ["adapter_locality 0.58 < 0.65"]}}}  # fmt: skip
    assert outcome(retried).splitlines() == [
        "sleep 3 of alice: the continued adapter failed (adapter_locality 0.58 < 0.65); rebuilt from the base model",
        "deep sleep (retry) 3 of alice promoted v0004: recall 0.90, locality 1.00 (adapter alone 0.71) (549.3 s)"]
    rejected = {**base, "status": "rejected", "adapter": None, "details": {"rejected_because": ["recall 0.20 < 0.6"]}}
    assert outcome(rejected) == "sleep 3 of alice rejected: recall 0.20 < 0.6; their active adapter is unchanged"
    failed = {**base, "status": "failed", "error": "RuntimeError: boom\nTraceback ...", "details": {"deep": "forget"}}
    assert outcome(failed) == "deep sleep (forget) 3 of alice failed: RuntimeError: boom"
