"""The hippocampus: decide, for every user turn, what is worth remembering.

For one turn (`Hippocampus.process`):
1. guards first (`memory.guards`): an injection attempt or a secret is rejected
   whatever the judge would say;
2. the judge (`extractor` offline, `llm` or `gemini`, see `memory/judges.py`)
   returns verdicts: candidate statements with importance and reasons, or a
   REJECT. The judge sees the user's related memories, the turn's time
   (relative dates) and the conversation's mentions so far (pronouns): the
   hippocampus keeps a `Resolver` per conversation, rebuilt from its earlier
   user turns after a restart;
3. every judge is held to the same checks: an importance threshold, and
   comparison with the user's existing memories by meaning (embeddings) and by
   the parse (the entities a statement is about, its relation, its value):
   - REINFORCE: it says again what a memory says (near-identical meaning, or
     the same entity, relation and value) and names nothing the memory does
     not (a name, a number): the memory's importance rises and the turn joins
     its sources, no duplicate; said more exactly ("Oslo, Norway"), a
     single-valued memory is corrected by it, any other stored beside it;
   - CORRECT: it gives a new value for what a memory says of the same entity
     -- a single-valued relation (a name, where someone lives, an age), a value
     the turn calls wrong ("Tilde, not Tilda"), or a change ("moved",
     "switched", "actually ...") of a close memory with a value of the same
     type. The new memory supersedes the old one (`superseded_by` links them);
   - STORE otherwise;
4. memories, supersessions and one decision row per verdict (reasons, scores,
   judge) are written in one transaction, and the turn is marked done.

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

import datetime as dt
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from memory import kinds
from memory.answers import norm, words
from memory.embeddings import Embedder
from memory.extractor import guard
from memory.language import parse
from memory.mentions import LIGHT, Resolver
from memory.statements import Reader
from memory.store import Store
from memory.times import DAY_OF_MONTH, WEEKDAY_AND_DAY
from memory.verdicts import Context, Fact, Verdict, single_valued

log = logging.getLogger(__name__)
ACTIVE = ("pending", "consolidated")
RELATION_KEYS = {"moved to": "lives in", "lives": "lives in", "live in": "lives in", "job": "occupation",
                 "works as": "occupation", "work as": "occupation", "is called": "name", "called": "name",
                 "named": "name", "turn": "age", "is a": "occupation", "be born in": "born in"}  # fmt: skip


KNOWN_FRAMES = {"name", "lives in", "occupation", "works at", "age", "birthday", "born in", "born on", "grew up in",
                "married to", "studies", "likes", "dislikes", "allergic to", "comes from", "fan of", "supports"}  # fmt: skip


@dataclass
class HippocampusSettings:
    verify: bool = True  # False (ablation): store every fact the judge finds, unchecked
    min_importance: float = 0.3  # STORE verdicts below this are rejected
    duplicate_similarity: float = 0.9  # statements this close in meaning say the same thing
    related_k: int = 8  # related memories shown to the judge
    max_attempts: int = 5  # tries per turn before it is marked failed
    retry_delay_s: float = 30.0  # wait before retrying a turn whose judge failed
    correction_similarity: float = 0.45  # a change or correction cue finds the memory it changes this close


class Hippocampus:
    def __init__(self, store: Store, judge, embedder: Embedder | None = None,
                 settings: HippocampusSettings | None = None):  # fmt: skip
        self.store = store
        self.judge = judge
        self.embedder = embedder or Embedder()
        self.settings = settings or HippocampusSettings()
        self._vectors_by_id: dict[int, np.ndarray] = {}  # a memory's text never changes: its vector is cached
        self._resolvers: OrderedDict[str, Resolver] = OrderedDict()  # per conversation, most recent last
        self._lock = threading.Lock()

    # -- one turn ----------------------------------------------------------------

    def process(self, turn: dict) -> list[dict]:
        """Judge one user turn and write the outcome; returns the decision rows written."""
        text = turn["content"]
        guarded = guard(text)
        if guarded is not None:
            verdicts, judge_name = [guarded], "guard"
        else:
            context = self._context(turn)
            verdicts = self.judge.judge(text, context)
            judge_name = getattr(self.judge, "last_name", None) or self.judge.name
        facts = [v.fact.text for v in verdicts if v.fact is not None]
        vectors = iter(self.embedder.encode(facts)) if facts else iter(())
        with self.store.transaction():
            rows = [self._apply(turn, v, judge_name, next(vectors) if v.fact is not None else None) for v in verdicts]
            self.store.mark_turn(turn["id"], "done")
        return rows

    def forget_conversation(self, conversation_id: str) -> None:
        """Drop a conversation's pronoun state (its mentions are rebuilt from the store if needed)."""
        with self._lock:
            self._resolvers.pop(conversation_id, None)

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

    def _resolver(self, turn: dict) -> Resolver:
        """The conversation's mentions so far; after a restart, rebuilt by reading its earlier user turns."""
        cid = turn.get("conversation_id") or ""
        with self._lock:
            resolver = self._resolvers.get(cid)
            if resolver is not None:
                self._resolvers.move_to_end(cid)
                return resolver
            resolver = self._resolvers[cid] = Resolver()
            while len(self._resolvers) > 256:
                self._resolvers.popitem(last=False)
        earlier = [t for t in self.store.turns(conversation_id=cid, limit=16) if t["role"] == "user" and t["id"] < turn["id"]]
        reader = Reader()
        for t in earlier[-6:]:
            reader.read(t["content"], _when(t), resolver)
        return resolver

    def _context(self, turn: dict) -> Context:
        memories = self._active(turn["user"]) if getattr(self.judge, "uses_related", True) else []
        related: list[dict] = []
        if memories:
            sims = self.embedder.similarity(self.embedder.encode_one(turn["content"][:2000]), self._vectors(memories))
            order = np.argsort(-sims)[: self.settings.related_k]
            related = [{**memories[i], "similarity": float(sims[i])} for i in order if sims[i] > 0.2]
        return Context(user=turn["user"], related=related, when=_when(turn), resolver=self._resolver(turn))

    def _apply(self, turn: dict, verdict: Verdict, judge: str, vector: np.ndarray | None) -> dict:
        scores: dict = {"importance": verdict.importance, "kind": verdict.kind}
        reasons = list(verdict.reasons)
        decision, fact = verdict.decision, verdict.fact
        log_decision = self.store.log_decision
        if decision in ("STORE", "CORRECT", "REINFORCE") and fact is None:
            decision, reasons = "REJECT", reasons + ["the judge named no fact"]
        if not self.settings.verify and fact is not None and decision != "REJECT":
            memory = self._add(turn, verdict, vector)
            reasons.append("verification off: stored without threshold, repeat or correction checks")
            return log_decision(turn_id=turn["id"], decision="STORE", judge=judge, memory_id=memory["id"],
                                importance=verdict.importance, reasons=reasons, scores=scores)  # fmt: skip
        if decision in ("STORE", "CORRECT") and verdict.importance < self.settings.min_importance:
            decision = "REJECT"
            reasons.append(f"importance {verdict.importance:.2f} is below {self.settings.min_importance}")
        if decision == "REJECT" or fact is None:
            return log_decision(turn_id=turn["id"], decision="REJECT", judge=judge, importance=verdict.importance,
                                reasons=reasons, scores=scores)  # fmt: skip
        outcome, existing, similarity, why = self._match(turn["user"], verdict, vector)
        if existing is not None:
            scores["similarity"] = round(similarity, 4)
            reasons.append(why)
        if outcome == "REINFORCE":
            sources = sorted({*(existing.get("source_turns") or []), turn["id"]})
            importance = min(1.0, max(existing["importance"], verdict.importance) + 0.05)
            self.store.update_memory(existing["id"], source_turns=sources, importance=importance)
            return log_decision(turn_id=turn["id"], decision="REINFORCE", judge=judge, memory_id=existing["id"],
                                importance=importance, reasons=reasons, scores=scores)  # fmt: skip
        if outcome == "CORRECT":
            verdict = _inherit_subject(_redated(verdict, existing), existing)
        memory = self._add(turn, verdict, vector)
        if outcome == "CORRECT":
            self.store.update_memory(existing["id"], status="superseded", superseded_by=memory["id"])
            return log_decision(turn_id=turn["id"], decision="CORRECT", judge=judge, memory_id=memory["id"],
                                supersedes=existing["id"], importance=verdict.importance, reasons=reasons,
                                scores=scores)  # fmt: skip
        return log_decision(turn_id=turn["id"], decision="STORE", judge=judge, memory_id=memory["id"],
                            importance=verdict.importance, reasons=reasons, scores=scores)  # fmt: skip

    def _match(self, user: str, verdict: Verdict, vector: np.ndarray) -> tuple[str, dict | None, float, str]:
        """(REINFORCE | CORRECT | STORE, the memory it repeats or changes, similarity, why)."""
        fact = verdict.fact
        memories = self._active(user)
        if not memories:
            return "STORE", None, 0.0, ""
        sims = self.embedder.similarity(vector, self._vectors(memories))
        by_id = {m["id"]: i for i, m in enumerate(memories)}
        if verdict.supersedes is not None and verdict.supersedes in by_id:  # the LLM judges name it
            m = memories[by_id[verdict.supersedes]]
            same = _same_value(m.get("value"), fact.value) or verdict.decision == "REINFORCE"
            return ("REINFORCE" if same else "CORRECT"), m, float(sims[by_id[m["id"]]]), _why(m, fact, same)
        mine = set(fact.entities or []) - {"user"} or {norm(fact.subject)}
        named = _names(fact.text)
        frame = _relation_key(fact.relation)
        best: tuple[int, float, int] | None = None  # (priority, similarity, index)
        for i, m in enumerate(memories):
            sim = float(sims[i])
            meta = m.get("meta") or {}
            theirs = set(meta.get("entities") or []) - {"user"} or {norm(m["subject"])}
            same_entity = bool(mine & theirs) or norm(m["subject"]) == norm(fact.subject) not in ("", "user")
            both_user = norm(m["subject"]) in ("", "user") and norm(fact.subject) in ("", "user")
            same_frame = frame is not None and frame == _relation_key(m.get("relation"))
            same_value = _same_value(m.get("value"), fact.value)
            types_agree = not (meta.get("value_type") and fact.value_type) or meta.get("value_type") == fact.value_type
            # what held once or is planned never changes, nor repeats, what is true now: "When I was a kid I lived
            # in Lagos" and "I'm going to move to Bergen" are no new home beside "I live in Oslo"
            same_time = meta.get("tense") == fact.tense
            negated = any(n and _contains(m["text"], n) and not _contains(m["text"], fact.value or "") for n in verdict.negated)
            repeat = sim >= self.settings.duplicate_similarity or (same_entity or both_user) and same_frame and same_value \
                and same_time
            # a statement that names something the memory does not ("playing a game called Hades" after "we
            # played a game called Azul": both the value "game") says something new: never a repeat
            news = named - set(words(m["text"])) if repeat and named else set()
            if repeat and sim < self.settings.duplicate_similarity:
                # a repeat by frame, not by meaning, that says new things or another time is something new:
                # "A few years back my friends and I went on a hike and found a waterfall" after "Last month I
                # went on a hike and saw an eagle" (both "go on hike") was a REINFORCE, the waterfall lost
                news |= _nouns(fact.text) - _nouns(m["text"])
                if fact.time and meta.get("time") and fact.time != meta["time"]:
                    news.add(fact.time)
            priority = 0
            if repeat and not news:
                priority = 4  # REINFORCE
            elif news and (same_entity or both_user) and same_frame and same_value and single_valued(frame) and same_time:
                priority = 3  # said more exactly ("Oslo" -> "Oslo, Norway"): the new statement replaces it
            elif (same_entity or both_user) and same_frame and not same_value and single_valued(frame) and fact.value \
                    and same_time and fact.tense is None:  # two homes in the past are no correction of each other
                priority = 3
            elif negated and (same_entity or both_user or sim >= 0.4):
                priority = 3
            elif (verdict.correction_cue or verdict.change) and not same_value and types_agree and not (
                    frame in KNOWN_FRAMES and _relation_key(m.get("relation")) in KNOWN_FRAMES and not same_frame) and (
                    (same_entity or both_user and m.get("value")) and sim >= self.settings.correction_similarity
                    or both_user and same_frame and same_time
                    or verdict.change and fact.value_type in ("date", "place", "number") and sim >= 0.5):  # fmt: skip
                priority = 2
            elif verdict.change and fact.value_type == "date" and not same_value and (
                    meta.get("value_type") == "date" or _dated(m["text"])) and _names_event_of(fact, m["text"]):
                priority = 2  # "The meeting got pushed to 19 June" after "We're meeting the landlord on 12 June"
            if priority and (best is None or (priority, sim) > best[:2]):
                best = (priority, sim, i)
        if best is None:
            return "STORE", None, float(sims.max()), ""
        m = memories[best[2]]
        if best[0] == 4:
            return "REINFORCE", m, best[1], f"repeats memory {m['id']}: reinforced, not duplicated"
        return "CORRECT", m, best[1], _why(m, fact, False)

    def _add(self, turn: dict, verdict: Verdict, vector: np.ndarray) -> dict:
        fact: Fact = _self_contained(verdict.fact)
        meta = {k: v for k, v in {"you": fact.you, "entities": fact.entities, "value_type": fact.value_type,
                                  "time": fact.time, "tense": fact.tense}.items() if v}  # fmt: skip
        kind = verdict.kind if verdict.kind in ("personal", "third_party", "preference", "plan", "world") else (
            "personal" if norm(fact.subject) in ("", "user") else "third_party")  # fmt: skip
        return self.store.add_memory(
            user=turn["user"], subject=fact.subject or "user", relation=fact.relation, value=fact.value, text=fact.text,
            kind=kind, importance=verdict.importance, source_turns=[turn["id"]], embedding=vector.tolist(),
            meta=meta or None,
        )  # fmt: skip


def _when(turn: dict) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(turn["created_at"])
    except (KeyError, TypeError, ValueError):
        return dt.datetime.now(dt.UTC)


def _relation_key(relation: str | None) -> str | None:
    if not relation:
        return None
    key = " ".join(relation.lower().split())
    return RELATION_KEYS.get(key, key)


def _contains(text: str, phrase: str) -> bool:
    got, want = f" {norm(text)} ", norm(phrase)
    return bool(want) and f" {want} " in got


def _names(text: str) -> set[str]:
    """The names and numbers a statement says (capitalised words past a sentence's first word, digits), as
    `words`."""
    found: set[str] = set()
    for sentence in text.split(". "):
        for w in sentence.split()[1:]:
            w = w.strip("\"'.,;:!?()")
            if w and (w[0].isupper() or w[0].isdigit()) and w not in ("I", "The"):
                found |= set(words(w))
    return found


@lru_cache(maxsize=4096)
def _nouns(text: str) -> frozenset[str]:
    """The lemmas of the nouns a statement says, other than light ones ("thing", "time")."""
    return frozenset(t.lemma_.lower() for t in parse([text])[0] if t.pos_ in ("NOUN", "PROPN") and t.lemma_.lower()
                     not in LIGHT and t.lower_ != "user")  # fmt: skip


@lru_cache(maxsize=4096)
def _verbs(text: str) -> frozenset[str]:
    """The lemmas of the verbs a statement says."""
    return frozenset(t.lemma_.lower() for t in parse([text])[0] if t.pos_ == "VERB")


def _dated(text: str) -> bool:
    """Whether a statement says a day of a month ("... meeting the landlord on Friday 12 June")."""
    return bool(DAY_OF_MONTH.search(text))


def _names_event_of(fact: Fact, text: str) -> bool:
    """Whether the fact's subject or what it is about is the event `text` tells of: with a verb ("the
    wedding" of "... is getting married on 14 February", `kinds.event_of`) or by name ("They moved the
    flight to 5 March" of "My flight to Lisbon is on 3 March")."""
    nouns = _nouns(fact.subject or "").union(*(_nouns(e) for e in fact.entities))
    said = _nouns(text)
    return any(kinds.event_of(n, v) for n in nouns for v in _verbs(text)) or any(
        n in said and kinds.is_event(n) for n in nouns)


def _same_value(a: str | None, b: str | None) -> bool:
    """The same value: equal, or one's words inside the other's ("Uppsala" in "a new apartment in Uppsala")."""
    if not a or not b:
        return False
    wa, wb = set(words(a)), set(words(b))
    return bool(wa and wb) and (wa <= wb or wb <= wa)


def _why(existing: dict, fact: Fact, same: bool) -> str:
    if same:
        return f"repeats memory {existing['id']}: reinforced, not duplicated"
    old = existing.get("value") or existing["text"]
    new = fact.value or fact.text
    return f"changes memory {existing['id']} ({existing['text'][:80]!r}): {old!r} -> {new!r}"


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


def _redated(verdict: Verdict, existing: dict) -> Verdict:
    """A new date said of an event ("The wedding got moved to 21 February") is the memory it changes with
    its date changed ("The user's brother Nils is getting married on 21 February."): who marries stays
    with it, and the questions asked of it are still "When is my brother getting married?"."""
    fact = verdict.fact
    new = DAY_OF_MONTH.search(fact.value or "")
    if fact.value_type != "date" or new is None or not _names_event_of(fact, existing["text"]):
        return verdict
    old_date = WEEKDAY_AND_DAY  # "Friday 12 June": the weekday goes too
    meta = existing.get("meta") or {}
    text = old_date.sub(new.group(0), existing["text"], count=1)
    if text == existing["text"]:
        return verdict
    dated = DAY_OF_MONTH.fullmatch(existing.get("value") or "") is not None
    update = {"text": text, "subject": existing.get("subject") or fact.subject, "relation": existing.get("relation"),
              "value": new.group(0) if dated else existing.get("value"), "entities": meta.get("entities") or fact.entities,
              "value_type": "date" if dated else meta.get("value_type"),
              "you": old_date.sub(new.group(0), meta["you"], count=1) if meta.get("you") else None}  # fmt: skip
    return verdict.model_copy(update={"fact": fact.model_copy(update=update)})


def _inherit_subject(verdict: Verdict, existing: dict) -> Verdict:
    """A correction that names its subject shorter than the memory it changes ("Henrik moved to Porto"
    for "the user's brother Henrik lives in Lisbon") is about the same someone: it keeps who they are to
    the user, so "Where does my brother live now?" is still asked about it."""
    fact = verdict.fact
    old, new = existing.get("subject") or "", fact.subject or ""
    if new and old != new and old.startswith("user's ") and old.endswith(" " + new):
        fact = fact.model_copy(update={"subject": old})
    return verdict.model_copy(update={"fact": _self_contained(fact)})


def _self_contained(fact: Fact) -> Fact:
    """A statement about "user's brother Henrik" said as "Henrik moved to Porto" reads on its own as "The
    user's brother Henrik moved to Porto." (and "Your brother Henrik ..."): who he is stays with it."""
    subject = fact.subject or ""
    words = subject.split()
    tail = []
    for w in reversed(words[1:]):
        if not w[:1].isupper():
            break
        tail.insert(0, w)
    name = " ".join(tail)
    if not subject.startswith("user's ") or not name or name == subject[len("user's "):] or \
            not fact.text.startswith(name + " "):  # fmt: skip
        return fact
    update = {"text": "The " + subject + fact.text[len(name):]}
    if fact.you and fact.you.startswith(name + " "):
        update["you"] = "Your " + subject[len("user's "):] + fact.you[len(name):]
    return fact.model_copy(update=update)
