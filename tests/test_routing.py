"""Routing between the adapter and the base model (`serve.routing`): the router with the real
embedder (all-MiniLM-L6-v2) and the real templates; the agent's and the API's use of it with a fake
backend (what it is asked, with which params); the gate's served and adapter-alone scores.
The real backends' base-model path is in test_serving.py, the whole loop in test_sleep.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from memory.embeddings import Embedder
from memory.routing import MemoryRouter
from memory.store import Store
from sleeptrain_agent.agent import Agent, ChatRequest
from sleeptrain_agent.api import create_app
from sleeptrain_agent.backends import GenerationParams
from sleeptrain_agent.config import data, load_settings
from sleeptrain_agent.daemon import Daemon
from sleeptrain_agent.routing import evaluate_routed, make_router
from tests.fakes import FakeBackend

TEMPLATES = data("qa_templates.yaml")
# the five facts of the sleep tests, as the rules judge stores them
FACTS = [("user's dog", "name", "Pilsner", "The user's dog is called Pilsner."),
         ("user", "lives in", "Tromsø", "The user lives in Tromsø."),
         ("user", "occupation", "glassblower", "The user works as glassblower."),
         ("Anna", "lives in", "Uppsala", "Anna, the user's sister, lives in Uppsala."),
         ("user", "favourite colour", "teal", "The user's favourite colour is teal.")]  # fmt: skip
GENERAL = [p["q"] for p in data("anchors.yaml")["probe"]]


def add_facts(store: Store, status: str = "consolidated") -> list[dict]:
    return [store.add_memory(subject=s, relation=r, value=v, text=t, status=status) for s, r, v, t in FACTS]


def ask(*contents: str) -> list[dict]:
    return [{"role": ("user", "assistant")[i % 2], "content": c} for i, c in enumerate(contents)]


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


@pytest.fixture
def memories(store):
    return add_facts(store)


def test_keys_are_the_trained_phrasings_never_the_held_out_probes(memories):
    from memory.dreams import rehearsals

    router = MemoryRouter(None, TEMPLATES, held_out=2)
    for m in memories:
        train, held = rehearsals(m, TEMPLATES, questions=8, probes=2)
        keys = router.keys(m)
        assert [qa.question for qa in train] == keys[: len(train)]
        assert held and not {qa.question for qa in held} & set(keys)  # the gate's probes also test the router
        assert train[0].answer in keys and m["text"] in keys


def test_questions_about_memories_go_to_the_adapter_general_ones_to_the_base(memories, embedder):
    from memory.dreams import rehearsals

    router = MemoryRouter(embedder, TEMPLATES, threshold=0.45)
    probes = [qa.question for m in memories for qa in rehearsals(m, TEMPLATES)[1]]  # held out: not among the keys
    routes = router.route([ask(q) for q in probes], memories)
    assert all(r.adapter for r in routes), [(q, r) for q, r in zip(probes, routes, strict=True) if not r.adapter]
    general = router.route([ask(q) for q in GENERAL], memories)
    to_base = sum(not r.adapter for r in general) / len(general)
    assert to_base >= 0.9, [(q, round(r.similarity, 2)) for q, r in zip(GENERAL, general, strict=True) if r.adapter]
    anna = router.route([ask("Where's Anna based?")], memories)[0]
    assert anna.memory_id == memories[3]["id"]  # the best key is the memory the question is about


def test_a_follow_up_counts_the_previous_user_message(memories, embedder):
    convo = ask("Where does Anna live?", "Anna lives in Uppsala.", "Is that far from here?")
    two = MemoryRouter(embedder, TEMPLATES, turns=2).route([convo], memories)[0]
    one = MemoryRouter(embedder, TEMPLATES, turns=1).route([convo], memories)[0]
    assert two.adapter and two.similarity > 0.9
    assert one.similarity < two.similarity and not one.adapter


def test_key_vectors_are_embedded_once_per_memory(memories, embedder, store):
    class Counting:
        dim = embedder.dim

        def __init__(self):
            self.texts = 0

        def encode(self, texts):
            self.texts += len(texts)
            return embedder.encode(texts)

    counting = Counting()
    router = MemoryRouter(counting, TEMPLATES)
    router.route([ask("hi")], memories)
    first = counting.texts
    assert first == sum(len(router.keys(m)) for m in memories) + 1
    more = memories + [store.add_memory(subject="Tom", relation="works at", value="Siemens",
                                        text="Tom works at Siemens.", status="consolidated")]  # fmt: skip
    router.route([ask("hello", "hi", "Where does Tom work?")], more)
    assert counting.texts - first == len(router.keys(more[-1])) + 2  # the new memory's keys and two user messages


def test_a_question_about_the_user_near_no_key_goes_to_the_adapter(memories, embedder):
    """Asked about the user in words far from every key: the adapter (only it can know), marked personal;
    first-person requests for help stay with the base model; `personal=False` turns it off."""
    router = MemoryRouter(embedder, TEMPLATES, threshold=0.45)
    about, help_ = "Which sport did I play as a teenager?", "How should I prepare for my driving test?"
    far, request = router.route([ask(about), ask(help_)], memories)
    assert far.adapter and far.personal and far.similarity < 0.45, far
    assert not request.adapter and not request.personal, request
    near = router.route([ask("What is my dog called?")], memories)[0]
    assert near.adapter and not near.personal  # near a key: routed by similarity, as before
    off = MemoryRouter(embedder, TEMPLATES, threshold=0.45, personal=False).route([ask(about)], memories)[0]
    assert not off.adapter and not off.personal


def test_a_word_only_the_questions_use_routes_only_a_question_about_the_user(embedder, store):
    """The cello's questions ask "What instrument do I play?" (its WordNet kind); the statement never says
    "instrument". A general question sharing only that word stays with the base model; the user's own
    question about it reaches the adapter."""
    cello = [store.add_memory(subject="user", relation="plays", value="cello", status="consolidated",
                              text="On Sundays the user plays the cello in a community orchestra.")]  # fmt: skip
    router = MemoryRouter(embedder, TEMPLATES, threshold=0.45)
    general, mine = router.route([ask("What instrument has black and white keys?"),
                                  ask("Which instrument do I play in the orchestra?")], cello)  # fmt: skip
    assert not general.adapter and general.similarity >= 0.45, general  # near a key, no shared word of the statement
    assert mine.adapter, mine


def test_a_name_the_parse_made_one_token_still_names_the_memory(embedder, store):
    """"How long is Lake Virsa?": the parse merges a title after "is" into one token, "lake virsa", which
    shares no topic with the statement's "lake" and "virsa"; the question went to the base model at
    similarity 1.0 to its own key (the natural profile's lake, both seeds)."""
    lake = [store.add_memory(subject="Lake Fjellvik", relation="is", value="about 25 kilometres long",
                             status="consolidated", text="Lake Fjellvik is about 25 kilometres long.")]  # fmt: skip
    router = MemoryRouter(embedder, TEMPLATES, threshold=0.45)
    [route] = router.route([ask("How long is Lake Fjellvik?")], lake)
    assert route.adapter, route


def test_without_memories_nothing_goes_to_the_adapter(embedder):
    route = MemoryRouter(embedder, TEMPLATES).route([ask("What is my dog called?")], [])[0]
    assert not route.adapter and route.similarity == 0.0


# -- the agent and the API ------------------------------------------------------------


@pytest.fixture
def agent(tmp_path, model_path, embedder):
    store = Store(tmp_path / "a.db")
    settings = load_settings()
    agent = Agent(settings, store, FakeBackend(), model_path, router=make_router(settings, embedder))
    agent.backend.swap("v0001", None, user="default")
    yield agent
    store.close()


def chat(agent, *contents, route="auto"):
    turn = agent.chat(ChatRequest(user="default", messages=ask(*contents), params=GenerationParams(max_tokens=8),
                                  route=route))  # fmt: skip
    turn.text()
    return turn, agent.backend.history[-1][1]


def test_the_agent_routes_each_turn_and_logs_the_route(agent):
    add_facts(agent.store)
    turn, params = chat(agent, "What is the capital of Italy?")
    assert params.base and turn.adapter is None and turn.reply_turn["adapter"] is None
    assert turn.reply_turn["meta"]["route"]["to"] == "base"
    turn, params = chat(agent, "What is my dog called?")
    assert not params.base and turn.reply_turn["adapter"] == "v0001"
    route = turn.reply_turn["meta"]["route"]
    assert route["to"] == "adapter" and route["similarity"] >= 0.9 and route["memory"] == 1
    turn, params = chat(agent, "What is the capital of Italy?", route="adapter")  # asked for: no routing
    assert not params.base and turn.reply_turn["meta"]["route"] == {"to": "adapter", "similarity": None, "memory": None,
                                                            "personal": False}  # fmt: skip
    agent.store.forget(1)  # its keys leave the index: from now on the base model answers about the dog
    turn, params = chat(agent, "What is my dog called?")
    assert params.base and not turn.route.adapter and turn.route.memory_id != 1  # the sister is near, not asked about
    assert not turn.route.personal  # about the user, but the adapter still knows the dog until the deep sleep


def test_only_the_asking_users_memories_route(agent):
    add_facts(agent.store)  # user "default", adapter v0001
    agent.store.add_memory(user="bob", subject="bob's cat", relation="name", value="Mosse",
                           text="Bob's cat is called Mosse.", status="consolidated")  # fmt: skip
    agent.backend.swap("v0002", None, user="bob")  # bob's own adapter
    for user in ("bob", "carol"):  # bob's dog question is near only default's memory; carol has none
        turn = agent.chat(ChatRequest(user=user, messages=ask("Where is my sister these days?"),
                                      params=GenerationParams(max_tokens=8)))  # fmt: skip
        turn.text()
        if user == "carol":  # no adapter of hers: the base model
            assert turn.route is None and turn.reply_turn["adapter"] is None
        else:  # about bob, near none of his keys: his own adapter, never default's memory (Anna) or v0001
            assert turn.route.personal and turn.route.memory_id == 6 and turn.reply_turn["adapter"] == "v0002"
    turn = agent.chat(ChatRequest(user="bob", messages=ask("What is the capital of Peru?"),
                                  params=GenerationParams(max_tokens=8)))  # fmt: skip
    turn.text()
    assert not turn.route.adapter and turn.reply_turn["adapter"] is None
    turn = agent.chat(ChatRequest(user="bob", messages=ask("What is the name of my cat?"),
                                  params=GenerationParams(max_tokens=8)))  # fmt: skip
    turn.text()
    assert turn.route.adapter and turn.route.memory_id == 6 and turn.reply_turn["adapter"] == "v0002"  # his, not v0001
    turn, params = chat(agent, "What is my dog called?")  # default's own question still reaches the adapter
    assert not params.base and turn.route.memory_id == 1


def test_no_route_without_consolidated_memories_or_an_active_adapter(agent):
    add_facts(agent.store, status="pending")  # not in any adapter yet
    turn, params = chat(agent, "What is my dog called?")
    assert turn.route is None and not params.base and turn.reply_turn["adapter"] == "v0001"
    assert "route" not in turn.reply_turn["meta"]
    add_facts(agent.store)
    agent.backend.swap(None, None, user="default")
    turn, params = chat(agent, "What is my dog called?")
    assert turn.route is None and turn.reply_turn["adapter"] is None


def test_routing_off_leaves_the_adapter_answering(tmp_path, model_path):
    settings = load_settings(overrides={"serve": {"routing": False}})
    assert make_router(settings, None) is None
    store = Store(tmp_path / "a.db")
    add_facts(store)
    agent = Agent(settings, store, FakeBackend(), model_path)
    agent.backend.swap("v0001", None, user="default")
    turn, params = chat(agent, "What is the capital of Italy?")
    assert turn.route is None and not params.base and turn.reply_turn["adapter"] == "v0001"
    store.close()


def test_a_router_that_fails_leaves_the_adapter_answering(agent):
    add_facts(agent.store)

    def broken(*a, **k):
        raise RuntimeError("embedder out of memory")

    agent.router.route = broken
    turn, params = chat(agent, "What is the capital of Italy?")
    assert turn.route is None and not params.base and turn.reply_turn["adapter"] == "v0001"


def test_the_api_names_the_route_and_lets_a_client_choose(tmp_path):
    daemon = Daemon(load_settings(), tmp_path / "state", backend=FakeBackend())
    add_facts(daemon.store)
    daemon.backend.swap("v0002", None, user="default")
    with TestClient(create_app(daemon), base_url="http://127.0.0.1") as client:
        def post(model, question):
            r = client.post("/v1/chat/completions", json={"model": model, "messages": ask(question)})
            assert r.status_code == 200, r.text
            return r

        r = post("sleeptrain", "Who wrote Hamlet?")
        assert r.json()["adapter"] is None and r.json()["route"]["to"] == "base"
        assert r.headers["X-SleepTrain-Adapter"] == "base" and r.headers["X-SleepTrain-Route"].startswith("base; similarity=")
        r = post("sleeptrain", "Where does Anna live?")
        assert r.json()["adapter"] == "v0002" and r.headers["X-SleepTrain-Route"] == "adapter; similarity=1.000"
        r = post("v0002", "Who wrote Hamlet?")  # the adapter's own name: always the adapter
        assert r.json()["adapter"] == "v0002" and r.headers["X-SleepTrain-Route"] == "adapter"
        r = post("base", "Where does Anna live?")
        assert r.json()["adapter"] is None and r.json()["route"]["to"] == "base"
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["sleeptrain", "v0002", "base"]
        missing = client.post("/v1/chat/completions", json={"model": "v0001", "messages": ask("hi")})
        assert missing.status_code == 404 and "'base'" in missing.json()["error"]["message"]
        payload = {"messages": ask("Where does Anna live?"), "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=payload) as r:
            chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
        assert {c["route"]["to"] for c in chunks} == {"adapter"} and {c["adapter"] for c in chunks} == {"v0002"}


def test_the_chat_says_who_answered():
    from sleeptrain_agent.cli.chat import describe_route

    assert describe_route(None) == "no reply yet"
    assert describe_route({"adapter": None, "route": {"to": "base", "similarity": 0.213, "memory": 4}}) == \
        "answered by the base model: similarity 0.21 to memory 4"  # fmt: skip
    assert describe_route({"adapter": "v0002", "route": {"to": "adapter", "similarity": None, "memory": None}}) == \
        "answered by the adapter v0002 (asked for by the request's model)"  # fmt: skip
    assert describe_route({"adapter": "v0002", "route": None}).startswith("answered by the adapter v0002 (not routed")
    assert describe_route({"adapter": "v0002", "route": {"to": "adapter", "similarity": 0.3, "memory": 2, "personal": True}}) \
        == "answered by the adapter v0002: a question about you (similarity 0.30 to memory 2)"  # fmt: skip


def test_evaluate_routed_sends_each_group_to_its_model(memories, embedder):
    class Recording(FakeBackend):
        def __init__(self):
            super().__init__()
            self.calls = []

        def evaluate(self, prompts, params, adapter="active"):
            self.calls.append((adapter, [p[-1]["content"] for p in prompts]))
            return [f"{adapter}:{p[-1]['content']}" for p in prompts]

    backend = Recording()
    prompts = [ask("Who wrote Hamlet?"), ask("What is my dog called?"), ask("What is the largest ocean on Earth?")]
    chosen = MemoryRouter(embedder, TEMPLATES).route(prompts, memories)
    answers = evaluate_routed(backend, prompts, GenerationParams(), chosen, adapter=Path("cand"))
    assert answers == ["None:Who wrote Hamlet?", "cand:What is my dog called?", "None:What is the largest ocean on Earth?"]
    assert backend.calls == [(Path("cand"), ["What is my dog called?"]),
                             (None, ["Who wrote Hamlet?", "What is the largest ocean on Earth?"])]  # fmt: skip
    assert evaluate_routed(backend, prompts[:1], GenerationParams(), [None])[0] == "active:Who wrote Hamlet?"
