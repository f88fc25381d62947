"""How the vLLM backend talks to its server, against a stand-in HTTP server that misbehaves on purpose
(the real server's behaviour is `tests/test_serving.py`'s): an evaluation request whose connection the
server dropped without a response is sent again.

The natural profile's fourth sleep failed once on exactly that ("Server disconnected", vLLM alive and
answering the next request): a keep-alive connection closed by the server as the client reused it."""

from __future__ import annotations

import json
import socket
import threading

import openai
import pytest

from sleeptrain_agent.backends import GenerationParams
from sleeptrain_agent.backends.vllm import VLLMBackend
from sleeptrain_agent.config import Settings
from sleeptrain_agent.errors import BackendError

ANSWER = {"id": "c", "object": "chat.completion", "created": 0, "model": "base",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "Oslo"}, "finish_reason": "stop"}]}  # fmt: skip


def _server(drops: int) -> tuple[int, list[bytes]]:
    """A server on 127.0.0.1 that closes its first `drops` connections unanswered, then answers one."""
    srv = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        with srv:
            for k in range(drops + 1):
                conn, _ = srv.accept()
                with conn:
                    seen.append(conn.recv(65536).split(b"\r\n", 1)[0])
                    if k < drops:
                        continue
                    body = json.dumps(ANSWER).encode()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1], seen


def _backend(port: int, tmp_path) -> VLLMBackend:
    backend = VLLMBackend(Settings(), tmp_path, tmp_path)
    backend.port = port
    backend._client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    backend._ready.set()
    return backend


def test_an_evaluation_is_sent_again_after_the_server_dropped_the_connection(tmp_path):
    port, seen = _server(drops=1)
    answers = _backend(port, tmp_path).evaluate([[{"role": "user", "content": "Capital of Norway?"}]],
                                                GenerationParams(max_tokens=8), adapter=None)  # fmt: skip
    assert answers == ["Oslo"]
    assert seen == [b"POST /v1/chat/completions HTTP/1.1"] * 2


def test_a_chat_reply_is_not_retried(tmp_path):
    """A reply streams to a person: a server that drops the request is a one-line error at once."""
    port, seen = _server(drops=1)
    backend = _backend(port, tmp_path)
    with pytest.raises(BackendError, match="vLLM request failed"):
        backend.generate([{"role": "user", "content": "Hi"}], GenerationParams(max_tokens=8, base=True))
    assert len(seen) == 1
