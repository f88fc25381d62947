"""The awake agent loop: one user turn in, one reply out, both in the store.

Order of work for a turn (the data flow's step 1):
1. validate everything (roles, text, sizes, and that the new message fits the
   model's context) -- a refused request writes nothing;
2. write the user turn to the store *before* generating (a client's retry of
   the same message within `RETRY_WINDOW_S` reuses the turn instead); if the
   backend refuses or fails before it answers, the turn is removed again, so
   a failed request leaves nothing behind;
3. hand the turn to the hippocampus queue (off the reply's critical path),
   once the backend has accepted the request;
4. build the prompt: the configured system prompt (unless the client sent its
   own) plus as many of the most recent messages as fit in
   `model.context_length` minus the reply budget (oldest dropped first);
5. route it (`serve.routing`, `memory/routing.py`): the user's own adapter
   answers when the recent user messages are close to one of their
   consolidated memories, the base model otherwise (a request can also ask
   for either); a user with no adapter is answered by the base model;
6. stream the reply from the backend, then log it with the adapter version
   that produced it (none: the base model), the route, its finish reason and
   token counts. A reply cut short (a client that disconnects, Ctrl-C in the
   chat) is logged as far as it got, marked `interrupted`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from memory.routing import MemoryRouter, Route
from memory.store import Store
from memory.times import absolute
from sleeptrain_agent.backends import Backend, GenerationParams
from sleeptrain_agent.config import Settings
from sleeptrain_agent.errors import BackendError, InvalidInput
from sleeptrain_agent.routing import routes

log = logging.getLogger(__name__)
ROLES = ("system", "user", "assistant")
RETRY_WINDOW_S = 60.0  # the same message again this soon is a client's retry, not a new turn


@dataclass
class ChatRequest:
    user: str
    messages: list[dict]
    params: GenerationParams
    conversation_id: str | None = None
    route: Literal["auto", "adapter", "base"] = "auto"  # auto: the router decides (`serve.routing`)


class ChatTurn:
    """A reply in progress: iterate for text deltas; `user_turn` is already stored,
    `reply_turn` is set once the reply is logged."""

    def __init__(self, agent: Agent, conversation_id: str, user_turn: dict, prompt: list[dict], params: GenerationParams,
                 route: Route | None = None):  # fmt: skip
        self.agent = agent
        self.conversation_id = conversation_id
        self.user_turn = user_turn
        self.route = route
        self.reply_turn: dict | None = None
        self.reply = agent.backend.generate(prompt, params)
        self.adapter = self.reply.adapter
        self._text: list[str] = []

    def __iter__(self) -> Iterator[str]:
        completed = False
        try:
            for delta in self.reply:
                self._text.append(delta)
                yield delta
            completed = True
        finally:
            self._log(interrupted=not completed)

    def text(self) -> str:
        return "".join(self)

    def close(self) -> None:
        """Stop generating; the part produced so far is logged (once)."""
        self.reply.close()
        self._log(interrupted=True)

    def _log(self, interrupted: bool) -> None:
        if self.reply_turn is not None:
            return
        meta = {
            "finish_reason": "interrupted" if interrupted else self.reply.finish_reason,
            "prompt_tokens": self.reply.prompt_tokens,
            "completion_tokens": self.reply.completion_tokens,
        }
        if self.route is not None:
            meta["route"] = self.route.as_dict()
        self.reply_turn = self.agent.store.log_turn(
            self.conversation_id, "assistant", "".join(self._text), adapter=self.adapter, meta=meta
        )


class Agent:
    def __init__(self, settings: Settings, store: Store, backend: Backend, model_path: Path,
                 on_user_turn: Callable[[dict], None] | None = None, router: MemoryRouter | None = None):  # fmt: skip
        from transformers import AutoTokenizer

        self.settings = settings
        self.store = store
        self.backend = backend
        self.router = router
        self.on_user_turn = on_user_turn or (lambda turn: None)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)  # when a question is asked

    def _check(self, messages: list[dict]) -> list[dict]:
        if not isinstance(messages, list) or not messages:
            raise InvalidInput("messages must be a non-empty list")
        clean = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                raise InvalidInput(f"messages[{i}].role must be one of {', '.join(ROLES)}")
            content = m.get("content")
            if isinstance(content, list):  # OpenAI content parts: text only
                parts = []
                for j, part in enumerate(content):
                    if not isinstance(part, dict) or part.get("type") != "text":
                        raise InvalidInput(f"messages[{i}].content[{j}]: only text parts are supported")
                    if not isinstance(part.get("text"), str):
                        raise InvalidInput(f"messages[{i}].content[{j}].text must be text")
                    parts.append(part["text"])
                content = "".join(parts)
            if not isinstance(content, str):
                raise InvalidInput(f"messages[{i}].content must be text")
            clean.append({"role": m["role"], "content": self.store.check_text(f"messages[{i}].content", content)})
        if clean[-1]["role"] != "user":
            raise InvalidInput("the last message must come from the user")
        if not clean[-1]["content"].strip():
            raise InvalidInput("the user message is empty")
        return clean

    def _tokens(self, messages: list[dict]) -> int:
        return len(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))

    def prompt(self, messages: list[dict], max_tokens: int) -> list[dict]:
        """System prompt + the most recent messages that fit in the context with room for the reply."""
        system = [m for m in messages[:1] if m["role"] == "system"] or [
            {"role": "system", "content": self.settings.serve.system_prompt}
        ]
        history = [m for m in messages if m["role"] != "system"]
        budget = self.settings.model.context_length - max_tokens
        last = history[-1:]
        needed = self._tokens(system + last)
        if needed > budget:
            raise InvalidInput(
                f"the message is too long for the model: {needed} tokens with the system prompt, and "
                f"{self.settings.model.context_length} - {max_tokens} (reply) = {budget} fit"
            )
        # binary search for the longest suffix of the history that fits
        lo, hi = 1, len(history)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._tokens(system + history[-mid:]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        kept = history[-lo:]
        while kept and kept[0]["role"] != "user":  # a prompt starts with a user turn
            kept = kept[1:]
        if lo < len(history):
            log.debug("dropped %d old messages to fit the context", len(history) - len(kept))
        return system + kept

    def asked(self, content: str) -> str:
        """A question as the model and the router get it: its relative times said as dates ("What am I doing
        next month?" -> "... in January 2027?"), the way memories are stored and rehearsed; a memory of next
        month's marathon is never trained on "next month", which means another month once it has passed."""
        if "?" not in content:
            return content
        try:
            return absolute(content, self.clock())
        except Exception:  # the parse is a help to recall, never a reason to fail a reply
            log.exception("relative times in the question not resolved")
            return content

    def route(self, messages: list[dict], user: str) -> Route | None:
        """Their adapter or the base model for this conversation of `user` (only their memories are keys);
        None when there is nothing to route (routing off, or no adapter of theirs). A router that fails
        leaves their adapter answering."""
        try:
            return routes(self.router, self.store, self.backend, [messages], user=user)[0]
        except Exception:  # the embedder is an optimisation of locality, never a reason to fail a reply
            log.exception("routing failed; the adapter answers")
            return None

    def chat(self, request: ChatRequest) -> ChatTurn:
        """Validate, log the user turn, queue it for the hippocampus and start the reply."""
        messages = self._check(request.messages)
        max_tokens = min(request.params.max_tokens, self.settings.model.context_length // 2)
        request.params.max_tokens = max_tokens
        content = messages[-1]["content"]  # logged as said; the hippocampus resolves its times itself
        prompt = self.prompt(messages[:-1] + [{"role": "user", "content": self.asked(content)}], max_tokens)
        repeat = self.store.repeated_turn(request.user, content, RETRY_WINDOW_S, request.conversation_id)
        if repeat is not None:  # the client retried (after a timeout or a 5xx): answer it, do not store it twice
            cid, user_turn = repeat["conversation_id"], repeat
        else:
            cid = self.store.start_conversation(request.user, request.conversation_id)
            user_turn = self.store.log_turn(cid, "user", content)
        route = self.route(prompt, request.user) if request.route == "auto" else Route(request.route == "adapter")
        request.params.base = route is not None and not route.adapter
        request.params.user = request.user  # their adapter, never another user's
        try:
            turn = ChatTurn(self, cid, user_turn, prompt, request.params, route)
        except (BackendError, InvalidInput) as e:
            if repeat is None:
                self.store.remove_turn(user_turn["id"])
            log.warning("the backend did not answer (%s); the user turn was not kept", e)
            raise
        if repeat is None:
            self.on_user_turn(user_turn)
        return turn
