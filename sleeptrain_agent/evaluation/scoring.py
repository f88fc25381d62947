"""Scoring an answer against what it should say: keyword, semantic, hybrid, and optional Gemini rescoring.

- keyword: 1 when any accepted alternative appears in the answer word by word
  (case, punctuation and articles ignored; "August 4, 1961" needs all three words);
- similarity: cosine of the answer and a reference sentence (the fact as the
  user stated it), all-MiniLM-L6-v2; `semantic` is 1 at or above
  `SEMANTIC_THRESHOLD`. Beware: "Zara lives in Bergen" and "Zara lives in
  Tromsø" are very similar sentences, so semantic scores are lenient on
  wrong values -- the seed moved from keyword to semantic scoring for
  paraphrased *right* answers, not to catch wrong ones;
- hybrid: 1 when the keyword matches, or when the answer is near-identical in
  meaning to the reference (`HYBRID_THRESHOLD`), which credits right answers
  written another way ("4th of August 1961") without crediting most wrong values;
- gemini (`--rescore gemini`): an LLM grader asked whether the answer gives
  the expected value, one cached call per distinct (question, expected,
  answer).
"""

from __future__ import annotations

import hashlib
import json
import logging

from memory.answers import keyword_hit
from memory.store import Store

log = logging.getLogger(__name__)
SEMANTIC_THRESHOLD = 0.75
HYBRID_THRESHOLD = 0.9
SCORERS = ("keyword", "semantic", "hybrid", "gemini")


def keyword(answer: str, alternatives: list[str]) -> int:
    """1 when every word of some alternative occurs in the answer (`memory.answers.keyword_hit`)."""
    return int(keyword_hit(answer, alternatives))


class Scorer:
    """Scores items in batches (one embedder call per batch)."""

    def __init__(self, embedder):
        self.embedder = embedder

    def score(self, items: list[dict]) -> None:
        """Adds `keyword`, `similarity`, `semantic` and `hybrid` to each item dict (which has
        `answer`, `expected` (list) and `reference`); `forbidden` items also get `old_value`."""
        if not items:
            return
        answers = self.embedder.encode([i["answer"] or " " for i in items])
        references = self.embedder.encode([i["reference"] for i in items])
        for item, a, r in zip(items, answers, references, strict=True):
            sim = round(float((a * r).sum()), 4)
            item["keyword"] = keyword(item["answer"], item["expected"])
            item["similarity"] = sim
            item["semantic"] = int(sim >= SEMANTIC_THRESHOLD)
            item["hybrid"] = int(item["keyword"] == 1 or sim >= HYBRID_THRESHOLD)
            if item.get("forbidden"):
                item["old_value"] = keyword(item["answer"], item["forbidden"])


GRADER_PROMPT = (
    "You grade a chat model's answer. Question: {question}\nExpected answer (must be given): {expected}\n"
    "Model's answer: {answer}\nDoes the model's answer give the expected answer (other wording is fine, a "
    'different value is not)? Reply as JSON: {{"correct": true or false}}.'
)


class GeminiGrader:
    """Rescoring with Gemini, cached in the store's `judge_cache` table (a rerun costs no calls)."""

    def __init__(self, store: Store, api_key: str, model: str = "gemini-2.0-flash", base_url: str | None = None,
                 attempts: int = 4):  # fmt: skip
        from google.genai import types

        from memory.judges import gemini_client

        self.client = gemini_client(api_key, base_url, attempts=attempts)
        self.types = types
        self.store = store
        self.model = model
        self.calls = 0
        self.cache_hits = 0

    def grade(self, question: str, expected: list[str], answer: str) -> int | None:
        prompt = GRADER_PROMPT.format(question=question, expected=" / ".join(expected), answer=answer)
        key = "grade:" + hashlib.sha256(f"{self.model}\n{prompt}".encode()).hexdigest()
        cached = self.store.cached(key)
        if cached is None:
            try:
                response = self.client.models.generate_content(
                    model=self.model, contents=prompt,
                    config=self.types.GenerateContentConfig(response_mime_type="application/json", temperature=0.0),
                )  # fmt: skip
                cached = response.text or ""
                json.loads(cached)
            except Exception as e:  # noqa: BLE001 - network, quota, auth, bad JSON: unscored, never fatal
                log.warning("gemini rescoring failed (%s): item left unscored", type(e).__name__)
                return None
            self.calls += 1
            self.store.cache(key, "gemini-grader", cached)
        else:
            self.cache_hits += 1
        try:
            return int(bool(json.loads(cached).get("correct")))
        except (ValueError, AttributeError):
            return None

    def score(self, items: list[dict]) -> None:
        for item in items:
            item["gemini"] = self.grade(item["question"], item["expected"], item["answer"])
