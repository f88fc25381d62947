"""A fake backend implementing the real `Backend` interface, for unit tests of pure logic
(the agent loop, the API's request handling). Real-stack tests use the real backends."""

from __future__ import annotations

import threading
from pathlib import Path

from sleeptrain_agent.backends import GenerationParams, Reply, each_prompt


class FakeBackend:
    name = "fake"

    def __init__(self, on_generate=None):
        self.replies: list[str] = []
        self.history: list[tuple[list[dict], GenerationParams]] = []
        self.swaps: list[tuple[str | None, Path | None, str]] = []
        self.on_generate = on_generate  # called with the messages, before replying
        self.fail_swap: Exception | None = None
        self._served: dict[str, str] = {}  # user -> version
        self._ready = threading.Event()

    def enqueue(self, *replies: str) -> None:
        self.replies.extend(replies)

    def start(self) -> None:
        self._ready.set()

    def stop(self) -> None:
        self._ready.clear()

    def healthy(self) -> bool:
        return self._ready.is_set()

    def busy(self) -> bool:
        return False

    def status(self) -> dict:
        return {"backend": self.name}

    def active_for(self, user: str | None) -> str | None:
        return self._served.get(user) if user is not None else None

    @property
    def serving(self) -> dict[str, str]:
        return dict(self._served)

    def generate(self, messages: list[dict], params: GenerationParams) -> Reply:
        self.history.append((messages, params))
        if self.on_generate:
            self.on_generate(messages)
        text = self.replies.pop(0) if self.replies else "ok"
        words = [w + " " for w in text.split(" ")]
        words[-1] = words[-1].rstrip(" ")
        reply = Reply(iter(words), None if params.base else self.active_for(params.user))
        reply.finish_reason = "stop"
        reply.completion_tokens = len(words)
        return reply

    def evaluate(self, prompts, params, adapter="active") -> list[str]:
        return [self.generate(m, p).text() for m, p in zip(prompts, each_prompt(params, prompts), strict=True)]

    def swap(self, version: str | None, path: Path | None, user: str, lazy: bool = False) -> float:
        if self.fail_swap:
            raise self.fail_swap
        self.swaps.append((version, path, user))
        if version is None:
            self._served.pop(user, None)
        else:
            self._served[user] = version
        return 0.001
