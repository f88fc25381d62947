"""The agent loop's logic, with a fake backend and the real tokenizer and store."""

from __future__ import annotations

import pytest

from memory.errors import InvalidInput, TooLarge
from memory.store import Store
from sleeptrain_agent.agent import Agent, ChatRequest
from sleeptrain_agent.backends import GenerationParams
from sleeptrain_agent.config import load_settings
from tests.fakes import FakeBackend


@pytest.fixture
def agent(tmp_path, model_path):
    store = Store(tmp_path / "a.db")
    agent = Agent(load_settings(overrides={"model": {"context_length": 512}}), store, FakeBackend(), model_path)
    agent.queued = []
    agent.on_user_turn = agent.queued.append
    yield agent
    store.close()


def ask(agent, *contents, user="alice", conversation_id=None, max_tokens=32):
    messages = [{"role": ("user", "assistant")[i % 2], "content": c} for i, c in enumerate(contents)]
    return agent.chat(ChatRequest(user=user, messages=messages, params=GenerationParams(max_tokens=max_tokens),
                                  conversation_id=conversation_id))  # fmt: skip


def test_user_turn_is_stored_before_generation_and_reply_after(agent):
    seen = []
    agent.backend.on_generate = lambda messages: seen.append([t["content"] for t in agent.store.turns()])
    agent.backend.enqueue("Hello Alice")
    turn = ask(agent, "hi, I am Alice", conversation_id="c1")
    assert seen == [["hi, I am Alice"]]  # stored before the backend was asked
    assert turn.text() == "Hello Alice"
    rows = agent.store.turns(conversation_id="c1")
    assert [(r["role"], r["content"], r["user"]) for r in rows] == [
        ("user", "hi, I am Alice", "alice"), ("assistant", "Hello Alice", "alice"),
    ]  # fmt: skip
    assert rows[1]["meta"]["finish_reason"] == "stop"
    assert [t["id"] for t in agent.queued] == [rows[0]["id"]]  # handed to the hippocampus


def test_reply_names_the_adapter_that_produced_it(agent):
    agent.backend.swap("v0003", None, user="alice")
    agent.backend.swap("v0004", None, user="bob")
    turn = ask(agent, "hello")
    turn.text()
    assert turn.reply_turn["adapter"] == "v0003"  # alice's own, never bob's
    turn = ask(agent, "hello", user="carol")  # no adapter of hers: the base model
    turn.text()
    assert turn.reply_turn["adapter"] is None and agent.backend.history[-1][1].user == "carol"


def test_system_prompt_is_added_unless_given(agent):
    ask(agent, "hello").text()
    messages, _ = agent.backend.history[-1]
    assert messages[0] == {"role": "system", "content": agent.settings.serve.system_prompt}
    custom = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hello"}]
    agent.chat(ChatRequest(user="a", messages=custom, params=GenerationParams())).text()
    assert agent.backend.history[-1][0][0]["content"] == "Be terse."


def test_old_turns_are_dropped_to_fit_the_context(agent):
    history = [f"message number {i} " + "filler " * 40 for i in range(20)]
    history.append("the latest question")
    ask(agent, *history).text()
    messages, params = agent.backend.history[-1]
    assert messages[-1]["content"] == "the latest question"
    assert messages[1]["role"] == "user"  # the kept history starts with a user turn
    assert len(messages) < len(history) + 1
    assert agent._tokens(messages) <= 512 - params.max_tokens
    assert "message number 0 " not in " ".join(m["content"] for m in messages)


def test_message_too_long_for_context_is_refused_and_nothing_stored(agent):
    with pytest.raises(InvalidInput, match="too long for the model"):
        ask(agent, "word " * 2000)
    assert agent.store.stats()["turns"] == 0


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], "non-empty"),
        ([{"role": "user", "content": "   "}], "empty"),
        ([{"role": "robot", "content": "hi"}], "role"),
        ([{"role": "user", "content": 42}], "must be text"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "last message"),
        ([{"role": "user", "content": "bad \udc80"}], "lone surrogate"),
    ],
)
def test_bad_messages_are_refused(agent, messages, error):
    with pytest.raises(InvalidInput, match=error):
        agent.chat(ChatRequest(user="a", messages=messages, params=GenerationParams()))
    assert agent.store.stats()["turns"] == 0


def test_huge_message_is_too_large(agent):
    with pytest.raises(TooLarge):
        ask(agent, "x" * 2_000_000)
    assert agent.store.stats()["turns"] == 0


def test_interrupted_reply_is_logged_as_far_as_it_got(agent):
    agent.backend.enqueue("one two three four")
    turn = ask(agent, "count")
    it = iter(turn)
    assert next(it) == "one "
    turn.close()
    reply = agent.store.turns()[-1]
    assert reply["content"] == "one " and reply["meta"]["finish_reason"] == "interrupted"


def test_content_parts_are_accepted(agent):
    parts = [{"type": "text", "text": "hello "}, {"type": "text", "text": "there"}]
    agent.chat(ChatRequest(user="a", messages=[{"role": "user", "content": parts}], params=GenerationParams())).text()
    assert agent.store.turns()[0]["content"] == "hello there"


def test_a_question_s_relative_times_reach_the_model_as_dates(agent):
    """Memories keep dates ("Next month I'm running the Oslo marathon" is stored and rehearsed as "In
    January 2027 ..."): a question's "next month" reaches the model (and the router) as the date it means
    when asked; the turn is logged as said, and a statement is passed on as said."""
    import datetime as dt

    agent.clock = lambda: dt.datetime(2026, 12, 5, 9, 30, tzinfo=dt.UTC)
    ask(agent, "What am I doing next month?", conversation_id="c1").text()
    messages, _ = agent.backend.history[-1]
    assert messages[-1]["content"] == "What am I doing in January 2027?"
    assert agent.store.turns(conversation_id="c1")[0]["content"] == "What am I doing next month?"
    ask(agent, "Who did I meet yesterday?").text()
    assert agent.backend.history[-1][0][-1]["content"] == "Who did I meet on 4 December 2026?"
    ask(agent, "I'm running the Oslo marathon next month.").text()  # not a question: the model gets it as said
    assert agent.backend.history[-1][0][-1]["content"] == "I'm running the Oslo marathon next month."
