"""Paraphrases of dream questions, written by a capable model (the seed's way), cached in the store.

`Paraphraser(generate_json, store, model)` asks a model -- the served one on
the GPU profile, or Gemini -- for other ways a person would ask a question,
as JSON (`{"questions": [...]}`, schema-constrained), and keeps the answer in
the store's `judge_cache` so a memory rehearsed again costs no call. A reply
that is not that JSON, or a model that fails, gives no paraphrases: the
parsed questions still stand. `memory.dreams.dream` filters what comes back
(no held-out probe, no question that names its own answer, nothing twice).

`memory/` never imports the daemon: the caller hands in `generate_json(prompt,
schema) -> str`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

from pydantic import BaseModel, ValidationError

from memory.store import Store

log = logging.getLogger(__name__)

PROMPT = (
    "Rewrite the question below in {n} different ways a person might ask it in a chat, keeping its meaning "
    "and who it is about (\"I\" and \"my\" stay the speaker). Vary the wording and the sentence frame. "
    "Do not answer it.\nQuestion: {question}\nReply as JSON: {{\"questions\": [...]}}"
)


class Paraphrases(BaseModel):
    questions: list[str]


class Paraphraser:
    def __init__(self, generate_json: Callable[[str, dict], str], store: Store | None = None, model: str = ""):
        self.generate_json = generate_json
        self.store = store
        self.model = model
        self.calls = 0

    def __call__(self, question: str, n: int) -> list[str]:
        """Up to `n` rewordings of `question` (fewer, or none, when the model gives less)."""
        prompt = PROMPT.format(n=n, question=question)
        key = "paraphrase:" + hashlib.sha256(f"{self.model}\n{prompt}".encode()).hexdigest()
        raw = self.store.cached(key) if self.store is not None else None
        if raw is None:
            try:
                raw = self.generate_json(prompt, Paraphrases.model_json_schema())
                self.calls += 1
            except Exception as e:  # noqa: BLE001 - a model that fails leaves the parsed questions
                log.warning("paraphrases unavailable (%s)", type(e).__name__)
                return []
        try:
            questions = Paraphrases.model_validate(json.loads(raw)).questions
        except (ValueError, ValidationError):
            return []
        if self.store is not None:
            self.store.cache(key, "paraphrase", raw)
        out = [q.strip() for q in questions if isinstance(q, str) and q.strip().endswith("?") and len(q) < 200]
        return out[:n]
