"""Routing: which questions the adapter answers, and which the base model.

A sleep's adapter knows the user's memories, but on this small model it also
disturbs general answers: about a quarter of the general questions the base
model gets right come out wrong through a 5-fact adapter (BENCHMARKS.md,
"Locality"), and four sessions of training levers only traded recall for
locality. The base model *is* the reference for general answers, so the
agent answers with the adapter only when a question is about something it
was taught, and with the base model otherwise.

"About something it was taught" is measured with the memory embeddings: each
memory has *keys* -- the questions a sleep trains on (from its statement's
parse and `qa_templates.yaml`, never the held-out probe phrasings, so the
gate's probes also test the router), its reference answer and its text -- and a
question goes to the adapter when its cosine similarity to any key reaches
`threshold`. In a conversation the last `turns` user messages count, so a
follow-up ("and where does she work?") stays with the adapter. A question
near no key still goes to the adapter when it asks for a fact about the
asker (`personal`, memory/personal.py: "What's my trade?", "What fruit can't
I eat?"): only the user's memories can answer it, the base model invents.

Measured (`python -m benchmarks.routing_bench`, all-MiniLM-L6-v2) on the 32
memories of the sleep tests' 5 facts and the people benchmark's 27: every
held-out probe and people-benchmark paraphrase scored >= 0.51 against its
memory's keys; of the 75 general prompts of `configs/anchors.yaml`, 6.7%
scored >= 0.45, with 32 memories and with 532.

A forgotten memory's keys leave the index, so questions about it go to the
base model from the next request on, before any sleep retrains the adapter.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from memory.dreams import rehearsals
from memory.embeddings import Embedder
from memory.personal import asks_about_user


@dataclass(frozen=True)
class Route:
    adapter: bool  # True: the adapter answers; False: the base model
    similarity: float | None = None  # the best cosine of the recent user messages to a key (None: asked for)
    memory_id: int | None = None  # the memory of the best key
    personal: bool = False  # sent to the adapter because it asks about the user, though near no key

    def as_dict(self) -> dict:
        similarity = None if self.similarity is None else round(self.similarity, 3)
        return {"to": "adapter" if self.adapter else "base", "similarity": similarity, "memory": self.memory_id,
                "personal": self.personal}  # fmt: skip


class MemoryRouter:
    """Routes questions to the adapter when they are near a memory's keys. Key vectors are cached per
    memory (id and value), so a request embeds only its own messages and memories new since the last."""

    def __init__(self, embedder: Embedder, templates: dict, threshold: float = 0.45, held_out: int = 2,
                 turns: int = 2, questions: int = 8, personal: bool = True):  # fmt: skip
        self.embedder = embedder
        self.personal = personal
        self.templates = templates
        self.threshold = threshold
        self.held_out = held_out
        self.questions = questions
        self.turns = turns
        self._keys: dict[tuple, np.ndarray] = {}
        self._topics: dict[tuple, set[str]] = {}
        self._lock = threading.Lock()

    def keys(self, memory: dict) -> list[str]:
        """The texts a question about this memory is compared with: the trained questions (from the
        statement's parse and the templates; the sleep's held-out probes are left out, so they test the
        router too), the answer, the memory's text."""
        trained, _ = rehearsals(memory, self.templates, questions=self.questions, probes=self.held_out)
        answers = [qa.answer for qa in trained[:1]]
        return list(dict.fromkeys([qa.question for qa in trained] + answers + [memory["text"]]))

    def _index(self, memories: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """All key vectors of `memories` stacked, and the memory id of each row."""
        with self._lock:
            missing = [m for m in memories if (m["id"], m.get("value") or m["text"]) not in self._keys]
            if missing:
                texts = [self.keys(m) for m in missing]
                vectors = self.embedder.encode([t for ts in texts for t in ts])
                start = 0
                for m, ts in zip(missing, texts, strict=True):
                    self._keys[(m["id"], m.get("value") or m["text"])] = vectors[start : start + len(ts)]
                    # what the statement says, and what only its questions say ("dog" for a terrier)
                    self._topics[(m["id"], m.get("value") or m["text"])] = (topics([m["text"]]), topics(ts))
                    start += len(ts)
            blocks = [self._keys[(m["id"], m.get("value") or m["text"])] for m in memories]
        if not blocks:
            return np.zeros((0, self.embedder.dim), dtype=np.float32), np.zeros(0, dtype=np.int64)
        ids = np.concatenate([np.full(len(b), m["id"]) for m, b in zip(memories, blocks, strict=True)])
        return np.concatenate(blocks), ids

    def route(self, conversations: list[list[dict]], memories: list[dict], personal: bool = True) -> list[Route]:
        """One route per conversation (OpenAI-style messages; its last `turns` user messages count).
        `personal=False`: no question goes to the adapter for being about the user (after a forget, until
        the deep sleep, the adapter still knows the forgotten memory)."""
        matrix, ids = self._index(memories)
        recent = [[m["content"] for m in messages if m["role"] == "user"][-self.turns :] for messages in conversations]
        texts = [t for ts in recent for t in ts]
        if not texts or not len(matrix):
            return [Route(False, 0.0) for _ in conversations]
        sims = self.embedder.encode(texts) @ matrix.T  # texts x keys
        routes, start = [], 0
        by_id = {m["id"]: m for m in memories}
        for ts in recent:
            block = sims[start : start + len(ts)]
            start += len(ts)
            if not len(ts):
                routes.append(Route(False, 0.0))
                continue
            route = self._choose(block.max(axis=0), ids, by_id, topics(ts), _first_person(ts))
            if not route.adapter and self.personal and personal and asks_about_user(ts[-1]):  # the message being answered
                route = Route(True, route.similarity, route.memory_id, personal=True)
            routes.append(route)
        return routes

    def _choose(self, sims: np.ndarray, ids: np.ndarray, by_id: dict[int, dict], asked: set[str],
                mine: bool) -> Route:  # fmt: skip
        """The best memory near enough: one that shares a topic word with the question at `threshold`,
        any other at `threshold + TOPIC_MARGIN` ("What is my dog called?" is near "What is my sister
        called?", 0.48, but it is not about the sister; "What town was I raised in?" is 0.59 from "Where did I
        grow up?" and is about it). Only a question in the first person (`mine`) gets there by a word only
        the memory's questions use (its kind: "instrument" for the cello) or by the margin: "What
        instrument do I play?" is about the memory, "What instrument has black and white keys?" (0.56 from
        it) is not; a question about the world names something the statement names ("How long is Lake
        Virsa?")."""
        order = np.argsort(-sims)
        best = float(sims[order[0]])
        with self._lock:
            for col in order:
                sim = float(sims[col])
                if sim < self.threshold:
                    break
                m = by_id[int(ids[col])]
                said, questioned = self._topics.get((m["id"], m.get("value") or m["text"]), (set(), set()))
                if not asked or asked & said or mine and (asked & questioned or sim >= self.threshold + TOPIC_MARGIN):
                    return Route(True, sim, int(ids[col]))
        return Route(False, best, int(ids[order[0]]))


TOPIC_MARGIN = 0.10
_POS = ("NOUN", "PROPN", "NUM")
_GENERIC = {"name", "thing", "something", "anything", "lot", "time", "way", "kind", "bit", "one"}


FIRST_PERSON = {"i", "me", "my", "mine", "myself", "we", "us", "our", "ours", "ourselves"}


def _first_person(texts: list[str]) -> bool:
    from memory.language import parse

    return any(t.lower_ in FIRST_PERSON for doc in parse(list(texts)) for t in doc)


def topics(texts: list[str]) -> set[str]:
    """The nouns, names and numbers of some texts (lowercased lemmas): what they are about."""
    from memory.language import parse

    out: set[str] = set()
    for doc in parse(list(texts)):
        out |= {t.lemma_.lower() for t in doc if t.pos_ in _POS and t.lemma_.lower() not in _GENERIC}
        out |= {t.lower_ for t in doc if t.pos_ in _POS and t.lower_ not in _GENERIC}
        # a name the parse made one token ("How long is Lake Virsa?": a title after "is") is its words too,
        # as the statement says them ("Lake Virsa is about 40 kilometres long": lake, virsa)
        out |= {w for t in doc if t.pos_ in _POS and " " in t.text for w in t.lower_.split() if w not in _GENERIC}
    return out
