"""The HTTP API's request handling, through FastAPI's test client, with the real store
and tokenizer and a fake backend (the real backends are in test_serving.py)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from memory.store import Store
from sleeptrain_agent.api import create_app
from sleeptrain_agent.config import load_settings
from sleeptrain_agent.daemon import Daemon
from sleeptrain_agent.errors import AdapterError
from tests.fakes import FakeBackend

CHAT = "/v1/chat/completions"


def make(tmp_path, **serve):
    settings = load_settings(overrides={"serve": serve} if serve else None)
    daemon = Daemon(settings, tmp_path / "state", backend=FakeBackend())
    client = TestClient(create_app(daemon), base_url="http://127.0.0.1")
    return daemon, client


@pytest.fixture
def api(tmp_path):
    daemon, client = make(tmp_path)
    with client:
        yield daemon, client


def test_chat_round_trip_and_store(api):
    daemon, client = api
    daemon.backend.enqueue("Paris is the capital.")
    r = client.post(CHAT, json={"model": "sleeptrain", "messages": [{"role": "user", "content": "Capital of France?"}],
                                "user": "alice"}, headers={"X-Conversation-Id": "conv-1"})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["message"]["content"] == "Paris is the capital."
    assert body["choices"][0]["finish_reason"] == "stop"
    assert r.headers["X-Conversation-Id"] == "conv-1" == body["conversation_id"]
    rows = daemon.store.turns(conversation_id="conv-1")
    assert [(t["role"], t["user"]) for t in rows] == [("user", "alice"), ("assistant", "alice")]


def test_streaming_sse(api):
    daemon, client = api
    daemon.backend.enqueue("one two three")
    payload = {"messages": [{"role": "user", "content": "count"}], "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", CHAT, json=payload) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "one two three"
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert daemon.store.turns()[-1]["content"] == "one two three"


def test_health_and_models(api):
    daemon, client = api
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["adapters"] == {} and health["sleeping"] is False
    assert health["hippocampus_queue"] == 0
    daemon.backend.swap("v0002", None, user="default")
    daemon.backend.swap("v0003", None, user="bob")
    assert client.get("/health").json()["adapters"] == {"default": "v0002", "bob": "v0003"}
    models = client.get("/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["sleeptrain", "v0003", "v0002", "base"]
    assert [m.get("user") for m in models[1:3]] == ["bob", "default"]


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "JSON"),
        ({"json": {"model": "sleeptrain"}}, 400, "messages"),
        ({"json": {"messages": []}}, 400, "messages"),
        ({"json": {"messages": [{"role": "user", "content": ""}]}}, 400, "empty"),
        ({"json": {"messages": [{"role": "user", "content": "x" * 2_000_000}]}}, 413, "limit"),
        ({"json": {"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4"}}, 404, "gpt-4"),
        ({"json": {"messages": [{"role": "user", "content": "hi"}], "temperature": 9}}, 400, "temperature"),
        ({"json": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}}, 400, "max_tokens"),
    ],
    ids=["invalid-json", "no-messages", "empty-messages", "empty-content", "2MB", "unknown-model", "temperature",
         "max-tokens"],  # fmt: skip
)
def test_bad_requests_get_clear_4xx_and_store_nothing(api, kwargs, status, message):
    daemon, client = api
    r = client.post(CHAT, **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]
    assert daemon.store.stats()["turns"] == 0


def test_body_over_request_limit_is_413(tmp_path):
    daemon, client = make(tmp_path, max_request_bytes=10_000)
    with client:
        r = client.post(CHAT, json={"messages": [{"role": "user", "content": "y" * 20_000}]})
    assert r.status_code == 413 and "serve.max_request_bytes" in r.json()["error"]["message"]
    assert daemon.store.stats()["turns"] == 0


def test_token_required_when_configured(tmp_path):
    daemon, client = make(tmp_path, token="s3cret")
    msg = {"messages": [{"role": "user", "content": "hi"}]}
    with client:
        assert client.get("/health").status_code == 200  # health stays open
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            r = client.post(CHAT, json=msg, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
            assert client.post("/v1/adapters/v0001/activate", headers=headers).status_code == 401
            assert client.get("/v1/memories", headers=headers).status_code == 401
        assert daemon.store.stats()["turns"] == 0
        ok = client.post(CHAT, json=msg, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_activate_and_rollback(api, tmp_path):
    daemon, client = api
    store: Store = daemon.store
    store.add_adapter("v0001", tmp_path / "v0001")
    store.add_adapter("v0002", tmp_path / "v0002")
    store.add_adapter("v0003", tmp_path / "v0003", user="bob")
    assert client.post("/v1/adapters/v0002/activate").json()["adapter"] == "v0002"
    assert client.post("/v1/adapters/v0001/activate").json()["adapter"] == "v0001"
    assert client.post("/v1/adapters/v0003/activate").json()["user"] == "bob"
    assert store.active_adapter("default")["version"] == "v0001" and daemon.backend.active_for("default") == "v0001"
    assert store.active_adapter("bob")["version"] == "v0003" and daemon.backend.active_for("bob") == "v0003"
    listing = client.get("/v1/adapters").json()
    assert listing["active"] == {"default": "v0001", "bob": "v0003"} and len(listing["data"]) == 3
    mine = client.get("/v1/adapters", params={"user": "bob"}).json()
    assert mine["active"] == {"bob": "v0003"} and [a["version"] for a in mine["data"]] == ["v0003"]
    assert client.post("/v1/adapters/v0099/activate").status_code == 404
    wrong = client.post("/v1/adapters/v0003/activate", json={"user": "default"})  # bob's adapter for default: no
    assert wrong.status_code == 400 and daemon.backend.active_for("default") == "v0001"
    assert client.post("/v1/adapters/base/activate").status_code == 400  # whose? not said
    assert client.post("/v1/adapters/base/activate", json={"user": "default"}).json()["adapter"] is None
    assert store.active_adapter("default") is None and store.active_adapter("bob")["version"] == "v0003"


def test_failed_swap_keeps_the_active_adapter(api, tmp_path):
    daemon, client = api
    daemon.store.add_adapter("v0001", tmp_path / "v0001")
    daemon.store.add_adapter("v0002", tmp_path / "broken")
    client.post("/v1/adapters/v0001/activate")
    daemon.backend.fail_swap = AdapterError("weights are corrupt")
    r = client.post("/v1/adapters/v0002/activate")
    assert r.status_code == 422 and "corrupt" in r.json()["error"]["message"]
    assert daemon.store.active_adapter("default")["version"] == "v0001" and daemon.backend.active_for("default") == "v0001"


def test_memories_endpoint_and_forget(api):
    daemon, client = api
    m = daemon.store.add_memory(user="alice", subject="alice", relation="likes", value="tea", text="Alice likes tea")
    daemon.store.add_memory(user="bob", subject="bob", relation="likes", value="coffee", text="Bob likes coffee")
    assert [x["value"] for x in client.get("/v1/memories", params={"user": "alice"}).json()] == ["tea"]
    assert client.get("/v1/memories", params={"status": "bogus"}).status_code == 400
    assert client.post(f"/v1/memories/{m['id']}/forget").json()["status"] == "forgotten"
    assert client.post("/v1/memories/999/forget").status_code == 404
    assert [u["id"] for u in client.get("/v1/users").json()] == ["alice", "bob"]
    r = client.post("/v1/users/bob/forget")
    assert r.status_code == 200 and r.json()["memories"] == 1, r.text
    assert [u["id"] for u in client.get("/v1/users").json()] == ["alice"] and daemon.store.memories(user="bob") == []
    assert client.post("/v1/users/bob/forget").status_code == 404


def test_sleep_endpoints_refuse_clearly(api):
    daemon, client = api
    r = client.post("/v1/sleep")
    assert r.status_code == 409 and "nothing to learn" in r.json()["error"]["message"]
    daemon.store.add_memory(user="alice", subject="user", relation="likes", value="tea", text="Alice likes tea")
    r = client.post("/v1/sleep", json={"overrides": {"learning_rate": -1}})
    assert r.status_code == 400 and "learning_rate" in r.json()["error"]["message"]
    r = client.post("/v1/sleep", json={"overrides": {"no_such_key": 1}})
    assert r.status_code == 400
    assert client.get("/v1/sleeps/999").status_code == 404
    assert client.get("/v1/sleeps").json() == []
    assert daemon.store.sleeps() == []


def _counts(store: Store) -> dict:
    db = store.db
    return {t: db[t].count for t in ("users", "conversations", "turns", "memories", "decisions", "sleeps")}


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"messages": HI, "seed": 18446744073709551616}, 400, "seed"),
    ({"messages": HI, "seed": 2**63}, 400, "seed"),
    ({"messages": HI, "stop": [""]}, 400, "stop"),
    ({"messages": HI, "stop": ["x"] * 100}, 400, "stop"),
    ({"messages": HI, "n": 2}, 400, "n > 1"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 123}]}]}, 400, "content[0].text"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}, 400, "content[0].text"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400, "text parts"),
    ({"messages": HI, "max_tokens": 99999999999999999999}, 400, "max_tokens"),
], ids=["seed-2**64", "seed-2**63", "empty-stop", "100-stops", "n-2", "text-int", "text-null",
        "image-part", "max-tokens-huge"])  # fmt: skip
def test_client_mistakes_are_4xx_before_anything_is_stored(api, body, status, message):
    daemon, client = api
    before = _counts(daemon.store)
    r = client.post(CHAT, json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"] and set(r.json()["error"]) == {"message", "type", "code"}
    assert _counts(daemon.store) == before


def test_a_lone_surrogate_stop_string_is_a_400(api):
    daemon, client = api
    raw = b'{"messages": [{"role": "user", "content": "hi"}], "stop": ["\\ud800"]}'
    r = client.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "stop" in r.json()["error"]["message"]
    assert daemon.store.stats()["turns"] == 0


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/sleeps/99999999999999999999", 400), ("GET", "/v1/sleeps?limit=99999999999999999999", 400),
    ("POST", "/v1/memories/99999999999999999999/forget", 400), ("GET", "/v1/no/such/route", 404),
    ("DELETE", CHAT, 405), ("GET", "/v1/models/gpt-9", 404),
])  # fmt: skip
def test_every_error_has_openais_shape(api, method, path, status):
    daemon, client = api
    r = client.request(method, path)
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) == {"message", "type", "code"} and r.json()["error"]["code"] == status


@pytest.mark.parametrize("overrides", ["x", [1], {"nope": 1}, {"probe_max_tokens": 1}])
def test_sleep_overrides_must_be_an_object_of_sleep_settings(api, overrides):
    daemon, client = api
    daemon.store.add_memory(user="alice", text="The user likes tea.", relation="likes", value="tea")
    r = client.post("/v1/sleep", json={"overrides": overrides})
    assert r.status_code == 400, r.text
    assert daemon.store.sleeps() == []


def test_an_unexpected_exception_is_a_logged_500_in_openais_shape(api, caplog):
    daemon, client = api

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    daemon.store.sleeps = broken
    r = TestClient(client.app, base_url="http://127.0.0.1", raise_server_exceptions=False).get("/v1/sleeps")
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert "a bug" not in r.text and "Traceback" not in r.text and "a bug" in caplog.text


def test_models_retrieve_created_and_the_developer_role(api):
    daemon, client = api
    m = client.get("/v1/models/sleeptrain").json()
    assert m["id"] == "sleeptrain" and isinstance(m["created"], int) and m["created"] > 0
    assert all(isinstance(x["created"], int) for x in client.get("/v1/models").json()["data"])
    daemon.backend.enqueue("ok")
    r = client.post(CHAT, json={"messages": [{"role": "developer", "content": "Be brief."}, *HI]})
    assert r.status_code == 200, r.text
    assert daemon.backend.history[-1][0][0] == {"role": "system", "content": "Be brief."}


def test_a_failed_backend_leaves_no_turn_and_a_retry_one(api):
    from sleeptrain_agent.errors import BackendError

    daemon, client = api
    real = daemon.backend.generate
    calls = []

    def flaky(messages, params):
        calls.append(1)
        if len(calls) <= 2:
            raise BackendError("vLLM is restarting")
        return real(messages, params)

    daemon.backend.generate = flaky
    body = {"messages": [{"role": "user", "content": "My cat is called Miso."}], "user": "alice"}
    for _ in range(2):  # what the openai SDK does after a 503: the same request again
        assert client.post(CHAT, json=body).status_code == 503
    assert daemon.store.stats()["turns"] == 0
    assert client.post(CHAT, json=body).status_code == 200
    assert [t["role"] for t in daemon.store.turns()] == ["user", "assistant"]
    # a retry of a request that did succeed (the client timed out) answers again but stores no new user turn
    assert client.post(CHAT, json=body).status_code == 200
    assert [t["role"] for t in daemon.store.turns()] == ["user", "assistant", "assistant"]


def test_a_refused_conversation_id_writes_no_user(api):
    daemon, client = api
    daemon.backend.enqueue("hi")
    client.post(CHAT, json={"messages": HI, "user": "alice"}, headers={"X-Conversation-Id": "c1"})
    before = _counts(daemon.store)
    r = client.post(CHAT, json={"messages": HI, "user": "mallory"}, headers={"X-Conversation-Id": "c1"})
    assert r.status_code == 400 and "another user" in r.json()["error"]["message"]
    assert _counts(daemon.store) == before


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/memories/1/forget"), ("POST", "/v1/adapters/base/activate"), ("POST", "/v1/sleep"), ("POST", CHAT),
    ("POST", "/v1/users/default/forget"),
])  # fmt: skip
def test_no_web_page_can_drive_the_daemon(api, method, path):
    """A form on any page can POST form-encoded bodies with its own Origin; a DNS-rebinding page sends its
    own Host. Each is refused before anything runs, and nothing changes."""
    daemon, client = api
    m = daemon.store.add_memory(user="default", text="The user likes tea.", relation="likes", value="tea")
    before = _counts(daemon.store)
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = client.request(method, path, content=b"a=1", headers={**form, "origin": "http://evil.example"})
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert client.request(method, path, content=b"a=1", headers=form).status_code == 415
    assert client.request(method, path, content=b"", headers={"origin": "null"}).status_code == 403
    assert client.request(method, path, json={}, headers={"host": "evil.example"}).status_code == 403
    assert _counts(daemon.store) == before and daemon.store.memory(m["id"])["status"] == "pending"


def test_a_foreign_host_cannot_read_and_loopback_origins_can(api):
    daemon, client = api
    for path in ("/v1/memories", "/v1/models", "/v1/sleeps", "/v1/adapters", "/v1/users"):
        assert client.get(path, headers={"host": "evil.example:8765"}).status_code == 403
        assert client.get(path, headers={"host": "localhost:8765", "origin": "http://127.0.0.1:8765"}).status_code == 200


def test_the_token_lets_a_client_through_the_web_checks(tmp_path):
    daemon, client = make(tmp_path, token="s3cret", host="0.0.0.0")
    with client:
        r = client.get("/v1/memories", headers={"host": "my-server.lan", "Authorization": "Bearer s3cret"})
        assert r.status_code == 200
        assert client.get("/v1/memories", headers={"host": "my-server.lan"}).status_code == 403


def test_a_chunked_body_is_refused_as_it_arrives(tmp_path):
    daemon, client = make(tmp_path, max_request_bytes=10_000)

    def chunks():
        for _ in range(1000):
            yield b"x" * 1000

    with client:
        r = client.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and daemon.store.stats()["turns"] == 0  # (that it stops reading: test_api_hostile)


def test_chat_defaults_apply_to_chat_replies_and_a_request_may_override(tmp_path):
    daemon, client = make(tmp_path, frequency_penalty=0.4, max_tokens=64)
    with client:
        daemon.backend.enqueue("a", "b")
        client.post(CHAT, json={"messages": HI})
        client.post(CHAT, json={"messages": HI, "frequency_penalty": 0.0, "max_tokens": 8})
    (_, first), (_, second) = daemon.backend.history
    assert (first.frequency_penalty, first.max_tokens) == (0.4, 64)
    assert (second.frequency_penalty, second.max_tokens) == (0.0, 8)
