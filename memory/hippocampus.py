"""The hippocampus: decide, for every user turn, what is worth remembering.

For one turn (`Hippocampus.process`):
1. retrieve the user's related active memories (sentence embeddings, cosine);
2. ask the judge (`rules`, `llm` or `gemini`, see `memory/judges.py`) for
   verdicts: candidate facts with importance and reasons, or a REJECT;
3. apply the checks every judge is held to: injection and secret guards, an
   importance threshold, and comparison with existing memories -- a repeat
   (same subject, relation and value) REINFORCEs the existing memory instead
   of duplicating it; a new value for a single-valued relation (a name, where
   someone lives) is a CORRECT that supersedes the old memory and links them;
4. write memories, supersessions and one decision row per verdict, with its
   reasons, scores and judge, in one transaction, and mark the turn done.

`HippocampusWorker` runs this off the reply path: a thread fed by a queue,
which also waits for a pause in the conversation (the backend idle for
`quiet_s`, at most `max_defer_s`), so on a 2-core CPU it does not slow the
replies it is meant to stay off the path of.
Turns are also marked `pending` in the store when logged, so those not
processed before a crash or restart are picked up at the next start. A turn
whose judge raises is retried after `retry_delay_s`, up to `max_attempts`,
and then marked `failed` (visible, never silently dropped).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from memory.answers import norm
from memory.embeddings import Embedder
from memory.rules import Context, RulesJudge, single_valued
from memory.store import Store
from memory.verdicts import Verdict

log = logging.getLogger(__name__)
ACTIVE = ("pending", "consolidated")


@dataclass
class HippocampusSettings:
    verify: bool = True  # False (ablation): store every fact the judge finds, unchecked
    min_importance: float = 0.3  # STORE verdicts below this are rejected
    duplicate_similarity: float = 0.9  # same-subject memories this close in meaning are repeats
    related_k: int = 8  # related memories shown to the judge
    max_attempts: int = 5  # tries per turn before it is marked failed
    retry_delay_s: float = 30.0  # wait before retrying a turn whose judge failed


class Hippocampus:
    def __init__(self, store: Store, judge, embedder: Embedder | None = None,
                 settings: HippocampusSettings | None = None):  # fmt: skip
        self.store = store
        self.judge = judge
        self.embedder = embedder or Embedder()
        self.settings = settings or HippocampusSettings()
        self.guard = RulesJudge()
        self._vectors_by_id: dict[int, np.ndarray] = {}  # a memory's text never changes: its vector is cached

    # -- one turn ----------------------------------------------------------------

    def process(self, turn: dict) -> list[dict]:
        """Judge one user turn and write the outcome; returns the decision rows written."""
        text, user = turn["content"], turn["user"]
        guarded = self.guard.guard(text)
        if guarded is not None:
            verdicts, judge_name = [guarded], "guard"
        else:
            context = self._context(text, user)
            verdicts = self.judge.judge(text, context)
            judge_name = getattr(self.judge, "last_name", None) or self.judge.name
        with self.store.transaction():
            rows = [self._apply(turn, v, judge_name) for v in verdicts]
            self.store.mark_turn(turn["id"], "done")
        return rows

    def _active(self, user: str) -> list[dict]:
        return self.store.memories(status=ACTIVE, user=user)

    def _vectors(self, memories: list[dict]) -> np.ndarray:
        vectors = []
        for m in memories:
            v = self._vectors_by_id.get(m["id"])
            if v is None:
                stored = self.store.embedding(m["id"])
                if stored is None:
                    stored = self.embedder.encode_one(m["text"]).tolist()
                    self.store.update_memory(m["id"], embedding=stored)
                v = self._vectors_by_id[m["id"]] = np.asarray(stored, dtype=np.float32)
            vectors.append(v)
        return np.asarray(vectors, dtype=np.float32).reshape(len(memories), self.embedder.dim)

    def _context(self, text: str, user: str) -> Context:
        memories = self._active(user)
        related: list[dict] = []
        if memories:
            sims = self.embedder.similarity(self.embedder.encode_one(text), self._vectors(memories))
            order = np.argsort(-sims)[: self.settings.related_k]
            related = [{**memories[i], "similarity": float(sims[i])} for i in order if sims[i] > 0.2]
        people: list[str] = []  # for pronouns: third-party subjects, most recently remembered first
        for m in reversed(memories):
            if m["subject"] != "user" and m["subject"] not in people:
                people.append(m["subject"])
        return Context(user=user, related=related, people=people)

    def _apply(self, turn: dict, verdict: Verdict, judge: str) -> dict:
        scores: dict = {"importance": verdict.importance, "kind": verdict.kind}
        reasons = list(verdict.reasons)
        decision = verdict.decision
        fact = verdict.fact
        if decision in ("STORE", "CORRECT", "REINFORCE") and fact is None:
            decision, reasons = "REJECT", reasons + ["the judge named no fact"]
        if not self.settings.verify and fact is not None and decision != "REJECT":
            memory = self._add(turn, fact, verdict.importance, self.embedder.encode_one(fact.text))
            reasons.append("verification off: stored without threshold, repeat or correction checks")
            return self.store.log_decision(turn_id=turn["id"], decision="STORE", judge=judge, memory_id=memory["id"],
                                           importance=verdict.importance, reasons=reasons, scores=scores)  # fmt: skip
        if decision in ("STORE", "CORRECT") and verdict.importance < self.settings.min_importance:
            decision = "REJECT"
            reasons.append(f"importance {verdict.importance:.2f} is below {self.settings.min_importance}")
        if decision == "REJECT" or fact is None:
            return self.store.log_decision(turn_id=turn["id"], decision="REJECT", judge=judge,
                                           importance=verdict.importance, reasons=reasons, scores=scores)  # fmt: skip

        vector = self.embedder.encode_one(fact.text)
        existing, similarity = self._match(turn["user"], fact, vector, verdict.supersedes)
        if existing is not None:
            scores["similarity"] = round(similarity, 4)
            same_value = norm(existing["value"]) == norm(fact.value)
            if same_value:
                sources = sorted({*(existing.get("source_turns") or []), turn["id"]})
                importance = min(1.0, max(existing["importance"], verdict.importance) + 0.05)
                self.store.update_memory(existing["id"], source_turns=sources, importance=importance)
                reasons.append(f"repeats memory {existing['id']}: reinforced, not duplicated")
                return self.store.log_decision(turn_id=turn["id"], decision="REINFORCE", judge=judge,
                                               memory_id=existing["id"], importance=importance,
                                               reasons=reasons, scores=scores)  # fmt: skip
            if single_valued(fact.relation) or decision == "CORRECT":
                memory = self._add(turn, fact, verdict.importance, vector)
                self.store.update_memory(existing["id"], status="superseded", superseded_by=memory["id"])
                reasons.append(f"changes {existing['relation']} of {existing['subject']} from "
                               f"{existing['value']!r} to {fact.value!r}")  # fmt: skip
                return self.store.log_decision(turn_id=turn["id"], decision="CORRECT", judge=judge,
                                               memory_id=memory["id"], supersedes=existing["id"],
                                               importance=verdict.importance, reasons=reasons, scores=scores)  # fmt: skip
        memory = self._add(turn, fact, verdict.importance, vector)
        return self.store.log_decision(turn_id=turn["id"], decision="STORE", judge=judge, memory_id=memory["id"],
                                       importance=verdict.importance, reasons=reasons, scores=scores)  # fmt: skip

    def _match(self, user: str, fact, vector: np.ndarray, hint: int | None) -> tuple[dict | None, float]:
        """The active memory this fact repeats or corrects: same subject and relation, or very close in meaning."""
        memories = self._active(user)
        if not memories:
            return None, 0.0
        sims = self.embedder.similarity(vector, self._vectors(memories))
        by_id = {m["id"]: i for i, m in enumerate(memories)}
        if hint is not None and hint in by_id:
            return memories[by_id[hint]], float(sims[by_id[hint]])
        subject, relation = norm(fact.subject), _relation_key(fact.relation)
        same = [i for i, m in enumerate(memories)
                if norm(m["subject"]) == subject and _relation_key(m["relation"]) == relation]  # fmt: skip
        if same:
            values = [i for i in same if norm(memories[i]["value"]) == norm(fact.value)]
            best = values[0] if values else max(same, key=lambda i: sims[i])
            return memories[best], float(sims[best])
        best = int(np.argmax(sims))
        if sims[best] >= self.settings.duplicate_similarity and norm(memories[best]["value"]) == norm(fact.value):
            return memories[best], float(sims[best])
        return None, float(sims[best])

    def _add(self, turn: dict, fact, importance: float, vector: np.ndarray) -> dict:
        return self.store.add_memory(
            user=turn["user"], subject=fact.subject, relation=fact.relation, value=fact.value, text=fact.text,
            importance=importance, source_turns=[turn["id"]], embedding=vector.tolist(),
        )  # fmt: skip


def _relation_key(relation: str) -> str:
    key = norm(relation)
    return {"moved to": "lives in", "lives": "lives in", "job": "occupation", "works as": "occupation",
            "is called": "name", "called": "name", "named": "name"}.get(key, key)  # fmt: skip


class HippocampusWorker:
    """Runs the hippocampus on a thread, fed by a queue of user turns; retries turns whose judge fails."""

    def __init__(self, hippocampus: Hippocampus, turns: queue.Queue | None = None,
                 busy: Callable[[], bool] | None = None, quiet_s: float = 0.3, max_defer_s: float = 30.0):  # fmt: skip
        self.hippocampus = hippocampus
        self.busy = busy or (lambda: False)  # true while replies are being generated
        self.quiet_s = quiet_s  # work starts after the backend has been idle this long
        self.max_defer_s = max_defer_s  # ... or after this long regardless
        self.turns: queue.Queue = turns if turns is not None else queue.Queue()
        self.settings = hippocampus.settings
        self._retrying: set[int] = set()
        self._queued: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.processed = 0
        self.failures = 0

    def submit(self, turn: dict) -> None:
        if turn.get("role", "user") != "user":
            return
        with self._lock:
            if turn["id"] in self._queued:
                return
            self._queued.add(turn["id"])
        self.turns.put(turn)

    def depth(self) -> int:
        """Turns waiting: queued plus those waiting for a retry."""
        with self._lock:
            return len(self._queued) + len(self._retrying)

    def start(self) -> None:
        for turn in self.hippocampus.store.pending_turns(self.settings.max_attempts):
            self.submit(turn)  # left over from before a restart
        self._thread = threading.Thread(target=self._run, name="hippocampus", daemon=True)
        self._thread.start()

    def _wait_quiet(self) -> None:
        """Work in the pauses of the conversation: wait until the backend has been idle for
        `quiet_s` (at most `max_defer_s`). On a small CPU the hippocampus would otherwise
        slow the very replies it is meant to stay off the path of."""
        deadline = time.monotonic() + self.max_defer_s
        quiet_since = None
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.busy():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= self.quiet_s:
                return
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or retrying (for tests and evaluation)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.depth() == 0:
                return True
            time.sleep(0.05)
        return False

    def _run(self) -> None:
        self.hippocampus.embedder.encode_one("warm up")  # load the embedder before the first turn
        while not self._stop.is_set():
            try:
                turn = self.turns.get(timeout=0.2)
            except queue.Empty:
                continue
            self._wait_quiet()
            try:
                self.hippocampus.process(turn)
                self.processed += 1
            except Exception:  # noqa: BLE001 - any judge failure: keep the turn and retry it later
                self.failures += 1
                self._retry(turn)
            finally:
                with self._lock:
                    self._queued.discard(turn["id"])

    def _retry(self, turn: dict) -> None:
        store = self.hippocampus.store
        attempts = store.turn(turn["id"]).get("hippocampus_attempts", 0) + 1
        if attempts >= self.settings.max_attempts:
            store.mark_turn(turn["id"], "failed", attempts)
            log.exception("hippocampus gave up on turn %s after %d attempts", turn["id"], attempts)
            return
        store.mark_turn(turn["id"], "pending", attempts)
        log.warning("hippocampus failed on turn %s (attempt %d); retrying in %.0f s", turn["id"], attempts,
                    self.settings.retry_delay_s, exc_info=True)  # fmt: skip
        with self._lock:
            self._retrying.add(turn["id"])

        def again() -> None:
            with self._lock:
                self._retrying.discard(turn["id"])
            if not self._stop.is_set():
                self.submit(turn)

        timer = threading.Timer(self.settings.retry_delay_s, again)
        timer.daemon = True
        timer.start()
