"""One sleep, from a user's pending memories to a promoted (or rejected) adapter of that user.

Each user has an adapter lineage of their own (`sleep/adapters.py`): a sleep
consolidates one user's pending memories into that user's adapter, with that
user's replay sample, probes and gate, and swaps it in for that user only.
`start(trigger)` with no user sleeps every user with work, one after another
(one sleep at a time on this machine), oldest pending memory first.

Steps, each recorded in the sleep's `details` as it goes (and passed to the
`on_step` hook, which the crash tests use to pause a sleep at a step):
1. select: the pending memories + a prioritized replay sample of consolidated ones;
2. anchors: the base model's answers to the general prompts (`Gate.anchors`);
3. dream + validate the dream data (`memory/dreams.py`);
4. plan: with the early stop (`sleep.stop_recall`, the default) up to
   `sleep.max_epochs`, the trainer checking the new memories' probes at every
   epoch's end (stopping when they are answered, or when their recall has
   passed `min_recall` and stopped rising, when it continues an adapter:
   `sleep.stop_patience`); without
   it, probe the current adapter first: the worse it recalls them, the more
   epochs (`sleep.min_epochs`..`sleep.max_epochs`);
5. train: `TrainerChild` runs the trainer in a child process (progress lines
   on its stdout), continuing the active adapter, into a temp directory; the
   child is the one `StandbyTrainer` started ahead of time, its libraries
   already imported (`sleep.standby_trainer`);
6. gate (`sleep/gate.py`): recall, retention and locality through the serving
   backend, as served and by the candidate alone; a candidate that recalls but
   fails the rest is gated again weakened (`Gate.weaker`);
7. promote: rename the temp dir to `adapters/vNNNN/` (`sleep/adapters.py`),
   hot-swap it in for the user, then in one transaction record it, make it active, mark
   the memories consolidated and the sleep `promoted`. A rejected candidate is
   kept in `adapters/rejected/`; its memories stay pending, with their
   measured recall recorded so they get more replay.

A *deep* sleep trains from the base model instead of continuing the active
adapter, on the pending memories and a replay sample of the consolidated
ones (`deep_replay_budget`, by priority, larger than `replay_budget`: it
rebuilds the adapter); consolidated memories left out of the sample go back
to pending (the new adapter does not know them; the next sleeps learn them
again). A sleep is deep when asked (`sleep.deep`), after `sleep.deep_every`
continued sleeps, and always after a forget (`users.deep_sleep_due`): the
user's adapter still knows the forgotten memory, so once a deep sleep is
promoted every older version of their lineage is erased
(`sleeptrain_agent/forget.py`). A deep sleep may run with nothing pending. A
memory forgotten while a sleep trains on it fails that sleep's promotion (the
candidate knows it).

A continued sleep whose candidate learned the new memories but fails
locality or retention, weakened too, is retried at once as a deep sleep
(`sleep.deep_retry`, recorded as `deep: "retry"` with the continued
candidate's scores under `continued`): continued sleeps drift a small
model's adapter, and rejecting them leaves the new memories, a correction
among them, unlearned.

Every step reads this sleep's configuration (`sleep.*` with the overrides of
`POST /v1/sleep` applied), never the daemon's defaults.

Crash safety: nothing is marked consolidated and no adapter is activated
until the final transaction, so a crash anywhere leaves the store at the last
promoted adapter. At start-up `recover()` marks interrupted sleeps `failed`
and sets aside adapter directories the store does not know.
One sleep (or queue of users' sleeps) runs at a time (`SleepBusy` otherwise).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from memory import replay
from memory.dreams import DreamSet, dream, validate
from memory.embeddings import Embedder
from memory.paraphrase import Paraphraser
from memory.routing import MemoryRouter
from memory.store import Store
from sleeptrain_agent.backends import Backend, GenerationParams
from sleeptrain_agent.config import Settings, SleepConfig, data, gemini_api_key
from sleeptrain_agent.errors import InvalidInput, NothingToLearn, SleepBusy
from sleeptrain_agent.forget import erase_superseded
from sleeptrain_agent.routing import make_router
from sleeptrain_agent.sleep.adapters import AdapterFiles
from sleeptrain_agent.sleep.gate import SCORE_KEYS, Gate
from sleeptrain_agent.sleep.trainer import StandbyTrainer, StopProbe, TrainerChild, TrainJob

log = logging.getLogger(__name__)


class SleepCycle:
    def __init__(self, settings: Settings, store: Store, backend: Backend, model_path: Path, state_dir: Path,
                 embedder: Embedder | None = None, router: MemoryRouter | None = None,
                 on_step: Callable[[str], None] | None = None, standby: StandbyTrainer | None = None):  # fmt: skip
        self.settings = settings
        self.store = store
        self.backend = backend
        self.model_path = model_path
        self.state_dir = state_dir
        self.adapters = AdapterFiles(state_dir / "adapters", store)
        self.embedder = embedder or Embedder()
        self.router = router or make_router(settings, self.embedder)  # None: routing off
        self.on_step = on_step  # called with each step's name as it starts (test hook)
        self._lock = threading.Lock()
        self.current: int | None = None
        self.progress: dict = {}
        self._trainer: TrainerChild | None = None
        self._stopping = False
        # the next sleep's training child, started ahead (`prepare_trainer`): given (shared, the caller
        # stops it) or this cycle's own
        self._owns_standby = standby is None
        self.standby = standby or StandbyTrainer(state_dir / "logs" / "trainer-standby.log")

    def prepare_trainer(self) -> None:
        """Start the next sleep's training child now, in the background (`sleep.standby_trainer`)."""
        if self.settings.sleep.standby_trainer:
            self.standby.prepare()

    # -- entry points ----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._lock.locked()

    def config(self, overrides: dict | None = None) -> SleepConfig:
        """This sleep's configuration: `sleep.*` with `overrides` applied (validated)."""
        if not isinstance(overrides or {}, dict):
            raise InvalidInput(f"sleep overrides must be an object of sleep.* settings, not {type(overrides).__name__}")
        try:
            return SleepConfig(**{**self.settings.sleep.model_dump(), **(overrides or {})})
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
            raise InvalidInput(f"bad sleep override {where}: {msg}") from None

    def gate(self, cfg: SleepConfig | None = None) -> Gate:
        """The gate of a sleep run with `cfg` (default: the configured `sleep.*`)."""
        return Gate(self.settings, cfg or self.settings.sleep, self.backend, self.embedder, self.router,
                    self.state_dir, self.store)  # fmt: skip

    def start(self, trigger: str, overrides: dict | None = None, user: str | None = None) -> dict:
        """Start sleeping on a thread: `user`'s sleep, or (None) each user with work in turn, oldest
        pending memory first. Returns the first sleep's row (status running), with `queue`: the users to
        sleep, in order. Raises SleepBusy / NothingToLearn (no user has anything to learn)."""
        cfg = self.config(overrides)
        if not self._lock.acquire(blocking=False):
            raise SleepBusy(f"sleep {self.current} is running; one sleep at a time")
        try:
            if user is not None:
                self.check_work(cfg, user)
                queue = [user]
            else:
                queue = self.queue(cfg)
                if not queue:
                    raise NothingToLearn("no pending memories: nothing to learn")
            row = self._begin(trigger, cfg, queue[0])
        except BaseException:
            self._lock.release()
            raise
        threading.Thread(target=self._run_queue, args=(row, cfg, trigger, queue[1:]),
                         name=f"sleep-{row['id']}", daemon=True).start()  # fmt: skip
        return {**row, "queue": queue}

    def queue(self, cfg: SleepConfig) -> list[str]:
        """The users a sleep of everyone would sleep, in order: those with pending memories, oldest pending
        first, then those due a deep sleep (or asked for one) with consolidated memories to rebuild from."""
        rows = self.store.db.execute(
            "select user, min(id) from memories where status = 'pending' group by user order by min(id)").fetchall()
        users = [r[0] for r in rows]
        for u in self.store.deep_sleep_due() if not cfg.deep else [r[0] for r in self.store.db.execute(
                "select distinct user from memories where status = 'consolidated' order by user")]:  # fmt: skip
            if u not in users and self.store.memories(status="consolidated", user=u, limit=1):
                users.append(u)
        return users

    def _begin(self, trigger: str, cfg: SleepConfig, user: str) -> dict:
        """Record `user`'s sleep as running (with what it will learn) and make it the current one."""
        pending = self.store.memories(status="pending", user=user)
        deep = self.deep_reason(cfg, user)
        row = self.store.start_sleep(trigger, {"new": [m["id"] for m in pending], "deep": deep}, user=user)
        self.current = row["id"]
        return row

    def check_work(self, cfg: SleepConfig, user: str) -> str | None:
        """Raise NothingToLearn unless `user` has pending memories or a deep sleep has consolidated ones
        to rebuild from; returns `deep_reason(cfg, user)`."""
        deep = self.deep_reason(cfg, user)
        if not self.store.memories(status="pending", user=user, limit=1) and not (
            deep and self.store.memories(status="consolidated", user=user, limit=1)
        ):
            raise NothingToLearn(f"no pending memories of user {user!r}: nothing to learn")
        return deep

    def deep_reason(self, cfg: SleepConfig, user: str) -> str | None:
        """Why `user`'s next sleep is deep (None: it continues their active adapter)."""
        if user in self.store.deep_sleep_due():
            return "forget"
        if cfg.deep:
            return "asked"
        if cfg.deep_every:
            continued = 0
            for s in self.store.sleeps(user=user):  # newest first
                if s["status"] != "promoted":
                    continue
                if (s.get("details") or {}).get("deep"):
                    break
                continued += 1
            if continued >= cfg.deep_every:
                return "deep_every"
        return None

    def run(self, trigger: str, overrides: dict | None = None, user: str | None = None) -> list[dict]:
        """Sleep (`user`, or every user with work) to the end in this thread; returns the final rows."""
        first = self.start(trigger, overrides, user)
        while self.running:
            time.sleep(0.2)
        return [r for r in reversed(self.store.sleeps()) if r["id"] >= first["id"] and r["user"] in first["queue"]]

    def stop(self) -> None:
        self._stopping = True
        if self._trainer is not None:
            self._trainer.kill()
        if self._owns_standby:
            self.standby.stop()

    def _run_queue(self, row: dict, cfg: SleepConfig, trigger: str, rest: list[str]) -> None:
        """Run `row`'s sleep, then each user of `rest` that still has work, one at a time."""
        try:
            self._run_locked(row, cfg)
            for user in rest:
                if self._stopping:
                    break
                try:
                    self.check_work(cfg, user)
                except NothingToLearn:
                    continue
                self._run_locked(self._begin(trigger, cfg, user), cfg)
        finally:
            self.current = None
            self.progress = {}
            self._lock.release()

    def _run_locked(self, row: dict, cfg: SleepConfig) -> None:
        sleep_id, user = row["id"], row["user"]
        try:
            pending = [self.store.memory(i) for i in row["details"]["new"]]
            cfg = cfg.model_copy(update={"deep": row["details"]["deep"] is not None})
            self._run(sleep_id, user, pending, cfg)
        except Exception as e:  # any failure: recorded with its traceback, the active adapter stays
            log.exception("sleep %s failed", sleep_id)
            self.store.finish_sleep(sleep_id, "failed", error=f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        finally:
            self.progress = {}
            if self.standby.prepared and not self._stopping:  # the next sleep's trainer, while this one's gone
                self.prepare_trainer()

    # -- the steps ---------------------------------------------------------------

    def _note(self, sleep_id: int, step: str, **details) -> None:
        self.progress = {"step": step, **details}
        if self.on_step is not None:
            self.on_step(step)
        log.info("sleep %s: %s %s", sleep_id, step, _figures(details) or "")
        row = self.store.sleep(sleep_id)
        merged = {**(row.get("details") or {}), "step": step, **details}
        # seconds each step took (since the previous note): where a sleep's time goes
        now_s, last = time.monotonic(), getattr(self, "_last_note", None)
        if last is not None and last[0] == sleep_id:
            merged["step_times"] = {**merged.get("step_times", {}), step: round(now_s - last[1], 1)}
        self._last_note = (sleep_id, now_s)
        with self.store.transaction() as db:
            db["sleeps"].update(sleep_id, {"details": json.dumps(merged)})

    def _run(self, sleep_id: int, user: str, pending: list[dict], cfg: SleepConfig, t0: float | None = None) -> None:
        t0 = time.monotonic() if t0 is None else t0
        gate = self.gate(cfg)
        consolidated = self.store.memories(status="consolidated", user=user)  # only this user's: their adapter
        budget = cfg.deep_replay_budget if cfg.deep else replay.budget(cfg.replay_budget, cfg.replay_per_new, len(pending))
        replayed = replay.sample(consolidated, budget, seed=cfg.seed + sleep_id)
        dropped = [m for m in consolidated if m["id"] not in {r["id"] for r in replayed}] if cfg.deep else []
        self._note(sleep_id, "select", new=[m["id"] for m in pending], replay=[m["id"] for m in replayed],
                   **({"relearn": [m["id"] for m in dropped]} if cfg.deep else {}))  # fmt: skip

        anchors, locality = gate.anchors()
        # deep: the new adapter starts from nothing, so every memory it keeps is rehearsed (and gated) as new
        learn, rehearse = (pending + replayed, []) if cfg.deep else (pending, replayed)
        dreams = self._dream(learn, rehearse, anchors, cfg, seed=cfg.seed + sleep_id)
        self._note(sleep_id, "dream", **self._validate(dreams, pending + replayed, cfg))

        active = self.store.active_adapter(user)
        start = Path(active["path"]) if active and not cfg.deep else None  # deep: from the base model
        # the store's active adapter, not whatever the backend serves: they differ when a backend is shared
        if cfg.stop_recall is None:  # no early stop: the less the current adapter recalls, the more epochs
            before = gate.recall([p for p in dreams.probes if p.kind == "new"], start)
            epochs = cfg.min_epochs + (cfg.max_epochs - cfg.min_epochs) * (1.0 - before)
        else:  # the trainer checks the probes at every epoch's end and stops when they are answered
            before, epochs = None, cfg.max_epochs
        self._note(sleep_id, "plan", recall_before=None if before is None else round(before, 3), epochs=round(epochs, 2))

        candidate = self.adapters.scratch(user, sleep_id)
        train = self._train(sleep_id, dreams, cfg, epochs, start, candidate)
        self._note(sleep_id, "trained", **{f"train_{k}": v for k, v in train.items()})

        # what the candidate knows: the router's memories if it is promoted
        known = (replayed if cfg.deep else consolidated) + pending
        scores, per_memory = gate.score(dreams, locality, candidate, known)
        self._note(sleep_id, "validated", scores=scores)
        for memory_id, recall in per_memory.items():
            if memory_id is not None:
                self.store.update_memory(memory_id, last_recall=recall)
        passed = gate.passes(scores)
        if not passed and scores["recall"] >= cfg.min_recall and cfg.fallback_scales:
            candidate, scores, passed = gate.weaker(
                dreams, locality, candidate, scores, start, known,
                on_try=lambda tried: self._note(sleep_id, "rescaled", scales_tried=tried),
            )  # fmt: skip
            self._note(sleep_id, "validated", scores=scores)  # the scores of the adapter promoted or rejected
        if not passed and cfg.deep_retry and start is not None and scores["recall"] >= cfg.min_recall:
            # it learned the new memories but the continued adapter has drifted (general answers or older
            # memories lost, even weakened): rebuild it from the base model, in this sleep, on everything
            reasons = gate.failures(scores)
            shutil.rmtree(candidate, ignore_errors=True)
            continued = {k: scores[k] for k in (*SCORE_KEYS, "scales_tried") if k in scores}
            continued["step_times"] = (self.store.sleep(sleep_id).get("details") or {}).get("step_times", {})
            self._note(sleep_id, "deep_retry", deep="retry", continued={**continued, "rejected_because": reasons},
                       step_times={})  # fmt: skip
            log.warning("sleep %s: the continued candidate failed (%s); retrying as a deep sleep", sleep_id, "; ".join(reasons))
            return self._run(sleep_id, user, pending, cfg.model_copy(update={"deep": True, "deep_retry": False}), t0)
        duration = round(time.monotonic() - t0, 1)
        if not passed:
            kept = self.adapters.reject(candidate, sleep_id)
            reasons = gate.failures(scores)
            self.store.finish_sleep(sleep_id, "rejected", details={"step": "rejected", "duration_s": duration,
                                                                   "rejected_because": reasons,
                                                                   "candidate_path": str(kept)})  # fmt: skip
            log.warning("sleep %s rejected: %s", sleep_id, "; ".join(reasons))
            return
        erased = [m["id"] for m in pending + replayed if self.store.memory(m["id"])["status"] == "forgotten"]
        if erased:  # forgotten while this sleep trained on them: the candidate must not be served
            shutil.rmtree(candidate, ignore_errors=True)
            self.store.finish_sleep(sleep_id, "rejected", details={
                "step": "rejected", "duration_s": duration,
                "rejected_because": [f"memories {erased} were forgotten during the sleep"]})  # fmt: skip
            return
        self._promote(sleep_id, user, candidate, active, pending, replayed, dropped, scores, duration, cfg.deep)

    def _dream(self, pending: list[dict], replayed: list[dict], anchors: list[tuple[str, str]], cfg: SleepConfig,
               seed: int) -> DreamSet:  # fmt: skip
        return dream(
            pending, replayed, data("qa_templates.yaml"), anchors * cfg.anchor_repeats,
            system_prompt=self.settings.serve.system_prompt, questions=cfg.questions_per_memory,
            probes=cfg.probes_per_memory, dialogues=cfg.dialogues_per_memory,
            corrections=self._corrections(pending), order=cfg.order, seed=seed,
            paraphrase=self._paraphraser() if cfg.paraphrases else None, paraphrases=cfg.paraphrases,
        )  # fmt: skip

    def _paraphraser(self) -> Paraphraser:
        """Rewordings by Gemini when a key is set, else by the served base model (JSON-schema output)."""
        key = gemini_api_key(self.settings)
        if key:
            from google.genai import types

            from memory.judges import gemini_client

            client = gemini_client(key, self.settings.hippocampus.gemini_base_url)
            model = self.settings.hippocampus.gemini_model

            def generate_json(prompt: str, schema: dict) -> str:
                config = types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=schema,
                                                     temperature=0.7)  # fmt: skip
                return client.models.generate_content(model=model, contents=prompt, config=config).text or ""
        else:
            model = self.settings.model.name

            def generate_json(prompt: str, schema: dict) -> str:
                params = GenerationParams(max_tokens=256, temperature=0.7, seed=0, json_schema=schema)
                return self.backend.evaluate([[{"role": "user", "content": prompt}]], params, adapter=None)[0]
        return Paraphraser(generate_json, self.store, model=model)

    def _validate(self, dreams: DreamSet, memories: list[dict], cfg: SleepConfig) -> dict:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        count = lambda msgs: len(tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=False))  # noqa: E731
        return validate(dreams, [m["id"] for m in memories], count, cfg.max_length)

    def _corrections(self, pending: list[dict]) -> dict[int, str]:
        """For each pending memory that CORRECTed an older one, the value it superseded."""
        out = {}
        for m in pending:
            for d in self.store.decisions(memory_id=m["id"]):
                if d["decision"] == "CORRECT" and d["memory_id"] == m["id"] and d["supersedes"]:
                    out[m["id"]] = self.store.memory(d["supersedes"])["value"]
        return out

    def _train(self, sleep_id: int, dreams: DreamSet, cfg: SleepConfig, epochs: float, start: Path | None,
               out: Path) -> dict:  # fmt: skip
        job = TrainJob(
            model_path=str(self.model_path), output_dir=str(out), conversations=[e.messages for e in dreams.examples],
            init_adapter=str(start) if start else None, rank=cfg.rank, alpha=cfg.alpha, layers=cfg.layers,
            target_modules=cfg.target_modules, learning_rate=cfg.learning_rate, adam_epsilon=cfg.adam_epsilon,
            epochs=epochs, batch_size=cfg.batch_size, min_steps_per_epoch=cfg.min_steps_per_epoch,
            max_length=cfg.max_length, packing=cfg.packing, padding_free=cfg.padding_free, attention=cfg.attention,
            time_budget_s=cfg.time_budget_s, seed=cfg.seed,
            dtype=self.settings.model.dtype, stop_recall=cfg.stop_recall, stop_after_epochs=cfg.stop_after_epochs if start else cfg.stop_after_epochs_new,
            stop_patience=cfg.stop_patience if start else None, stop_floor=cfg.min_recall,  # drift: continued only
            stop_probes=[StopProbe(messages=[{"role": "system", "content": self.settings.serve.system_prompt},
                                             {"role": "user", "content": p.question}],
                                   answer=p.answer, expected=p.expected, forbidden=p.forbidden)
                         for p in dreams.probes if p.kind == "new"],
        )  # fmt: skip

        def on_step(event: dict) -> None:
            self.progress = {"step": "train", "train_step": event["step"], "total": event["total"],
                             "loss": event["loss"], "elapsed": event.get("elapsed")}  # fmt: skip

        standby = self.standby if cfg.standby_trainer else None
        self._trainer = TrainerChild(job, self.state_dir / "sleeps" / f"{sleep_id:04d}", cfg.train_timeout_s, standby)
        try:
            return {**self._trainer.run(on_step), "warm": self._trainer.warm}
        finally:
            self._trainer = None

    def _promote(self, sleep_id, user, candidate, active, pending, replayed, dropped, scores, duration, deep) -> None:
        version = self.adapters.next_version()
        final = self.adapters.promote(candidate, version)
        self._note(sleep_id, "promote", adapter=version)
        swap_s = self.backend.swap(version, final, user=user)  # a corrupt adapter fails here, before anything is recorded
        with self.store.transaction():
            parent = active["version"] if active and not deep else None  # deep: trained from the base model
            self.store.add_adapter(version, final, user=user, sleep_id=sleep_id, parent=parent, scores=scores)
            self.store.activate_adapter(version)
            for m in pending:
                self.store.update_memory(m["id"], status="consolidated", consolidated_in=sleep_id)
            for m in replayed:
                self.store.update_memory(m["id"], times_replayed=(m.get("times_replayed") or 0) + 1)
            for m in dropped:  # a deep sleep's adapter does not know them: the next sleeps learn them again
                self.store.update_memory(m["id"], status="pending")
            self.store.finish_sleep(sleep_id, "promoted", adapter=version,
                                    details={"step": "promoted", "duration_s": duration, "swap_s": round(swap_s, 4)})  # fmt: skip
        if deep and user in self.store.deep_sleep_due():  # their older versions descend from weights that knew a forgotten memory
            erased = erase_superseded(self.store, self.state_dir, keep=version, user=user)
            self.store.clear_deep_sleep([user])  # only now: a crash before leaves the next sleep deep again
            self._note(sleep_id, "promoted", erased_adapters=erased)
        log.info("sleep %s promoted %s (%s)", sleep_id, version, _figures(scores))

    # -- start-up recovery -----------------------------------------------------

    def recover(self) -> list[str]:
        """After a crash: interrupted sleeps become `failed`; unknown adapter directories are set aside."""
        notes = []
        for row in self.store.sleeps():
            if row["status"] == "running":
                self.store.finish_sleep(row["id"], "failed", error="interrupted: the daemon stopped during this sleep")
                notes.append(f"sleep {row['id']} was interrupted; marked failed")
        notes += self.adapters.migrate_layout()
        notes += self.adapters.set_aside_unknown()
        for note in notes:
            log.warning("recovery: %s", note)
        return notes


def _figures(details: dict) -> dict:
    """The numbers of a step's details, for the log: never the probes' questions and answers, which
    quote memories (a forgotten memory's words must not survive in a log file)."""
    out = {}
    for k, v in details.items():
        if isinstance(v, dict):
            v = _figures(v)
        elif isinstance(v, list | tuple):
            v = len(v) if v and not all(isinstance(x, int | float) for x in v) else v
        elif isinstance(v, str) and k != "step":
            continue
        out[k] = v
    return out
