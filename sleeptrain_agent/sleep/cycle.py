"""One sleep, from pending memories to a promoted (or rejected) adapter.

Steps, each recorded in the sleep's `details` as it goes:
1. select: the pending memories + a prioritized replay sample of consolidated ones;
2. anchors: the base model's answers to the general prompts of
   `configs/anchors.yaml` (cached in `state/anchors.json`);
3. dream + validate the dream data (`memory/dreams.py`);
4. plan: probe the current adapter on the new memories; the worse it recalls
   them, the more epochs (between `sleep.min_epochs` and `sleep.max_epochs`);
5. train: `sleeptrain_agent.sleep.trainer` in a child process (progress lines
   on its stdout), continuing the active adapter, into a temp directory;
6. gate: held-out probes of new memories (recall), of replayed ones
   (retention), and general prompts vs the base model's answers (locality),
   all through the serving backend with the candidate loaded under a
   temporary name, and scored twice: as served (with `serve.routing`, each
   probe answered by the candidate or the base model as the router would
   send it, with the candidate's memories) and by the candidate alone
   (`adapter_locality`, against `sleep.min_adapter_locality`). A candidate
   that recalls the new memories but fails locality (or retention) is gated
   again with its LoRA update scaled by each of `sleep.fallback_scales`
   (interpolating towards the base model); the strongest that passes the
   whole gate is the one promoted;
7. promote: rename the temp dir to `adapters/vNNNN/`, hot-swap it in, then in
   one transaction record it, make it active, mark the memories consolidated
   and the sleep `promoted`. A rejected candidate is moved to
   `adapters/rejected/` for inspection; its memories stay pending, with their
   measured recall recorded so they get more replay.

Crash safety: nothing is marked consolidated and no adapter is activated
until the final transaction, so a crash anywhere leaves the store at the last
promoted adapter. At start-up `recover()` marks interrupted sleeps `failed`
and sets aside adapter directories the store does not know.
One sleep runs at a time (`SleepBusy` otherwise).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import yaml

from memory import replay
from memory.dreams import DreamSet, dream, validate
from memory.embeddings import Embedder
from memory.routing import MemoryRouter
from memory.rules import norm
from memory.store import Store
from sleeptrain_agent.backends import Backend, GenerationParams
from sleeptrain_agent.children import die_with_parent
from sleeptrain_agent.config import CONFIG_DIR, Settings
from sleeptrain_agent.errors import SleepTrainError
from sleeptrain_agent.routing import ROUTED_STATUSES, make_router
from sleeptrain_agent.sleep.trainer import TrainJob

log = logging.getLogger(__name__)


class SleepBusy(SleepTrainError):
    """A sleep is already running; only one runs at a time."""


class NothingToLearn(SleepTrainError):
    """No pending memories: there is nothing for a sleep to learn."""


class SleepFailed(SleepTrainError):
    """A step of the sleep failed (the active adapter is unchanged)."""


def recall_hit(answer: str, expected: str, forbidden: str | None = None) -> bool:
    """Keyword scoring: the expected value's words appear in the answer (and the old value's do not)."""
    got = f" {norm(answer)} "
    ok = all(f" {w} " in got for w in norm(expected).split())
    if ok and forbidden and norm(forbidden) != norm(expected):
        ok = f" {norm(forbidden)} " not in got
    return ok


def keyword_hit(answer: str, alternatives: list[str]) -> bool:
    """Any of the expected words appears in the answer (word boundaries, case-insensitive)."""
    got = f" {norm(answer)} "
    return any(f" {norm(str(w))} " in got for w in alternatives)


_SENTENCE_END = re.compile(r"(?<!\b[A-Z]\.)(?<!\bDr\.)(?<!\bMr\.)(?<!\bMs\.)(?<!\bSt\.)(?<=[.!?])\s+")


def first_sentence(text: str) -> str:
    """The answer's first sentence (initials like "J.R.R." and titles like "Dr." do not end one)."""
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0]


def locality_hit(answer: str, alternatives: list[str]) -> bool:
    """A general question answered right: an expected word in the *first sentence*. A small model's
    64-token answers ramble; "The closest star is Proxima Centauri ... However, the Sun ..." is not
    an answer the base model gets right, and counting it would make locality measure luck."""
    return keyword_hit(first_sentence(answer), alternatives)


def sentences_only(text: str) -> str:
    """The text up to its last complete sentence (answers cut at a token limit end mid-sentence)."""
    text = text.strip()
    cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
    if text[-1:] in ".!?":
        return text
    return text[: cut + 1] if cut > 0 else ""


class SleepCycle:
    def __init__(self, settings: Settings, store: Store, backend: Backend, model_path: Path, state_dir: Path,
                 embedder: Embedder | None = None, router: MemoryRouter | None = None):  # fmt: skip
        self.settings = settings
        self.cfg = settings.sleep
        self.store = store
        self.backend = backend
        self.model_path = model_path
        self.state_dir = state_dir
        self.adapters_dir = state_dir / "adapters"
        self.embedder = embedder or Embedder()
        self.router = router or make_router(settings, self.embedder)  # None: routing off
        self._lock = threading.Lock()
        self.current: int | None = None
        self.progress: dict = {}
        self._proc: subprocess.Popen | None = None

    # -- entry points ----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._lock.locked()

    def start(self, trigger: str, overrides: dict | None = None) -> dict:
        """Start a sleep on a thread; returns its row (status running). Raises SleepBusy / NothingToLearn."""
        if not self._lock.acquire(blocking=False):
            raise SleepBusy(f"sleep {self.current} is running; one sleep at a time")
        try:
            pending = self.store.memories(status="pending")
            if not pending:
                raise NothingToLearn("no pending memories: nothing to learn")
            row = self.store.start_sleep(trigger, {"new": [m["id"] for m in pending]})
            self.current = row["id"]
        except BaseException:
            self._lock.release()
            raise
        threading.Thread(target=self._run_locked, args=(row["id"], pending, overrides or {}),
                         name=f"sleep-{row['id']}", daemon=True).start()  # fmt: skip
        return row

    def run(self, trigger: str, overrides: dict | None = None) -> dict:
        """Run a sleep to the end in this thread; returns the final row."""
        row = self.start(trigger, overrides)
        while self.running:
            time.sleep(0.2)
        return self.store.sleep(row["id"])

    def _run_locked(self, sleep_id: int, pending: list[dict], overrides: dict) -> None:
        try:
            self._run(sleep_id, pending, overrides)
        except Exception as e:  # any failure: recorded with its traceback, the active adapter stays
            log.exception("sleep %s failed", sleep_id)
            self.store.finish_sleep(sleep_id, "failed", error=f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        finally:
            self.current = None
            self.progress = {}
            self._lock.release()

    # -- the steps ---------------------------------------------------------------

    def _note(self, sleep_id: int, step: str, **details) -> None:
        self.progress = {"step": step, **details}
        if os.environ.get("SLEEPTRAIN_FAULT_PAUSE_AT") == step:  # fault injection for the crash tests
            log.warning("SLEEPTRAIN_FAULT_PAUSE_AT=%s: pausing 120 s", step)
            time.sleep(120)
        log.info("sleep %s: %s %s", sleep_id, step, details or "")
        row = self.store.sleep(sleep_id)
        merged = {**(row.get("details") or {}), "step": step, **details}
        with self.store.transaction() as db:
            db["sleeps"].update(sleep_id, {"details": json.dumps(merged)})

    def _run(self, sleep_id: int, pending: list[dict], overrides: dict) -> None:
        cfg = self.cfg.model_copy(update=overrides)
        t0 = time.monotonic()
        consolidated = self.store.memories(status="consolidated")
        replayed = replay.sample(consolidated, cfg.replay_budget, seed=cfg.seed + sleep_id)
        self._note(sleep_id, "select", new=[m["id"] for m in pending], replay=[m["id"] for m in replayed])

        anchors, locality = self._anchors(cfg.anchors)
        corrections = self._corrections(pending)
        templates = yaml.safe_load((CONFIG_DIR / "qa_templates.yaml").read_text())
        dreams = dream(
            pending, replayed, templates, anchors * cfg.anchor_repeats, system_prompt=self.settings.serve.system_prompt,
            questions=cfg.questions_per_memory, probes=cfg.probes_per_memory, dialogues=cfg.dialogues_per_memory,
            corrections=corrections, order=cfg.order, seed=cfg.seed + sleep_id,
        )  # fmt: skip
        tokenizer = self._tokenizer()
        counts = validate(dreams, [m["id"] for m in pending + replayed],
                          lambda msgs: len(tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=False)),
                          cfg.max_length)  # fmt: skip
        self._note(sleep_id, "dream", **counts)

        new_probes = [p for p in dreams.probes if p.kind == "new"]
        active = self.store.active_adapter()
        # the store's active adapter, not whatever the backend serves: they differ when a backend is shared
        before = self._score(new_probes, Path(active["path"]) if active else None, cfg)
        deficit = 1.0 - before
        epochs = cfg.min_epochs + (cfg.max_epochs - cfg.min_epochs) * deficit
        self._note(sleep_id, "plan", recall_before=round(before, 3), epochs=round(epochs, 2))

        tmp_dir = self.adapters_dir / f".tmp-sleep-{sleep_id:04d}"
        shutil.rmtree(tmp_dir, ignore_errors=True)
        train = self._train(sleep_id, dreams, cfg, epochs, active, tmp_dir)
        self._note(sleep_id, "trained", **{f"train_{k}": v for k, v in train.items()})

        known = consolidated + pending  # what the candidate knows: the router's memories if it is promoted
        scores, per_memory = self._gate(dreams, locality, tmp_dir, cfg, known)
        self._note(sleep_id, "validated", scores=scores)
        self._record_recall(per_memory)
        passed = _passes(scores, cfg)
        if not passed and scores["recall"] >= cfg.min_recall and (cfg.fallback_scales or cfg.fallback_directions):
            start = Path(active["path"]) if active else None
            tmp_dir, scores, passed = self._weaker(sleep_id, dreams, locality, tmp_dir, cfg, scores, start, known)
            self._note(sleep_id, "validated", scores=scores)  # the scores of the adapter promoted or rejected
        duration = round(time.monotonic() - t0, 1)
        if not passed:
            kept = self.adapters_dir / "rejected" / f"sleep-{sleep_id:04d}"
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(kept, ignore_errors=True)
            tmp_dir.rename(kept)
            reasons = [f"{k} {scores[k]:.2f} < {limit}" for k, limit in
                       (("recall", cfg.min_recall), ("locality", cfg.min_locality), ("retention", cfg.min_retention),
                        ("adapter_locality", cfg.min_adapter_locality))
                       if scores.get(k) is not None and scores[k] < limit]  # fmt: skip
            self.store.finish_sleep(sleep_id, "rejected", details={"step": "rejected", "duration_s": duration,
                                                                   "rejected_because": reasons,
                                                                   "candidate_path": str(kept)})  # fmt: skip
            log.warning("sleep %s rejected: %s", sleep_id, "; ".join(reasons))
            return
        self._promote(sleep_id, tmp_dir, active, pending, replayed, scores, duration)

    def _weaker(self, sleep_id, dreams, locality, candidate: Path, cfg, scores: dict,
                start: Path | None = None, known: list[dict] | None = None) -> tuple[Path, dict, bool]:  # fmt: skip
        """The candidate learned the new memories but disturbs general answers too much: gate it again
        weakened (`weaken_adapter`: the sleep's change from `start`, the adapter it continued), first
        kept to its `fallback_directions` strongest directions per layer, then scaled down by each of
        `fallback_scales`, strongest first. Each weakened candidate passes the whole gate (recall,
        retention, locality) or is dropped. Returns the directory to promote (or reject), its scores,
        and whether it passed."""
        keys = ("recall", "retention", "locality", "adapter_locality")
        tried = [{"scale": 1.0, "directions": None, **{k: scores[k] for k in keys}}]
        tries = [(1.0, cfg.fallback_directions)] if cfg.fallback_directions else []
        for scale, directions in tries + [(scale, 0) for scale in cfg.fallback_scales]:
            weaker = candidate.with_name(f"{candidate.name}{f'-k{directions}' if directions else ''}-x{scale:g}")
            weaken_adapter(candidate, weaker, scale, directions, start)
            s, _ = self._gate(dreams, locality, weaker, cfg, known)
            tried.append({"scale": scale, "directions": directions or None, **{k: s[k] for k in keys}})
            self._note(sleep_id, "rescaled", scales_tried=tried)
            if _passes(s, cfg):
                shutil.rmtree(candidate, ignore_errors=True)
                return weaker, {**s, "scale": scale, "directions": directions or None, "scales_tried": tried}, True
            shutil.rmtree(weaker, ignore_errors=True)
            if s["recall"] < cfg.min_recall and not directions:
                break  # weaker still forgets the new memories: stop
        return candidate, {**scores, "scales_tried": tried}, False

    def _promote(self, sleep_id, tmp_dir, active, pending, replayed, scores, duration) -> None:
        version = self._next_version()
        final = self.adapters_dir / version
        _fsync_dir(tmp_dir)
        tmp_dir.rename(final)  # atomic on one filesystem
        _fsync_dir(self.adapters_dir)
        self._note(sleep_id, "promote", adapter=version)
        swap_s = self.backend.swap(version, final)  # a corrupt adapter fails here, before anything is recorded
        with self.store.transaction():
            self.store.add_adapter(version, final, sleep_id=sleep_id, parent=active["version"] if active else None,
                                   scores=scores)  # fmt: skip
            self.store.activate_adapter(version)
            for m in pending:
                self.store.update_memory(m["id"], status="consolidated", consolidated_in=sleep_id)
            for m in replayed:
                self.store.update_memory(m["id"], times_replayed=(m.get("times_replayed") or 0) + 1)
            self.store.finish_sleep(sleep_id, "promoted", adapter=version,
                                    details={"step": "promoted", "duration_s": duration, "swap_s": round(swap_s, 4)})  # fmt: skip
        log.info("sleep %s promoted %s (%s)", sleep_id, version, scores)

    # -- helpers -------------------------------------------------------------

    def _tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.model_path)

    def _corrections(self, pending: list[dict]) -> dict[int, str]:
        out = {}
        for m in pending:
            for d in self.store.decisions(memory_id=m["id"]):
                if d["decision"] == "CORRECT" and d["memory_id"] == m["id"] and d["supersedes"]:
                    out[m["id"]] = self.store.memory(d["supersedes"])["value"]
        return out

    def _anchors(self, enabled: bool) -> tuple[list[tuple[str, str]], list[dict]]:
        """Train anchors as (prompt, the base model's answer), and the locality probes the base model
        gets right ({q, expect, base}); base answers are cached per model in `anchors.json`."""
        spec = yaml.safe_load((CONFIG_DIR / "anchors.yaml").read_text())
        cache_file = self.state_dir / "anchors.json"
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
        key = f"{self.settings.model.name}|{self.settings.serve.system_prompt}|{self.cfg.probe_max_tokens}|v3"
        answers = cache.get(key, {})
        probes = spec["probe"]
        prompts = list(spec["train"] if enabled else []) + [p["q"] for p in probes]
        missing = [p for p in prompts if p not in answers]
        if missing:
            outs = self.backend.evaluate([self._messages(p) for p in missing], self._params(), adapter=None)
            answers.update(dict(zip(missing, outs, strict=True)))
            cache[key] = answers
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(cache, indent=1))
            tmp.replace(cache_file)
        train = [(p, sentences_only(answers[p])) for p in (spec["train"] if enabled else [])]
        locality = [{**p, "base": answers[p["q"]]} for p in probes if locality_hit(answers[p["q"]], p["expect"])]
        return [(p, a) for p, a in train if a], locality

    def _messages(self, question: str) -> list[dict]:
        return [{"role": "system", "content": self.settings.serve.system_prompt}, {"role": "user", "content": question}]

    def _params(self) -> GenerationParams:
        return GenerationParams(max_tokens=self.cfg.probe_max_tokens, temperature=0.0)

    def _score(self, probes, adapter, cfg) -> float:
        if not probes:
            return 1.0
        answers = self.backend.evaluate([self._messages(p.question) for p in probes], self._params(), adapter=adapter)
        return sum(recall_hit(a, p.expected, p.forbidden) for a, p in zip(answers, probes, strict=True)) / len(probes)

    def _gate(self, dreams: DreamSet, locality: list[dict], candidate: Path, cfg,
              known: list[dict] | None = None) -> tuple[dict, dict[int, float]]:  # fmt: skip
        """The candidate's scores, and each probed memory's recall by the candidate (for replay priority).

        Scored as served: with routing on, each question is answered by the candidate or the base model
        as the router sends it when the candidate serves and knows `known` (default: the consolidated and
        pending memories). `adapter_locality` is the candidate answering every general question."""
        probes = dreams.probes
        questions = [self._messages(p.question) for p in probes] + [self._messages(p["q"]) for p in locality]
        answers = self.backend.evaluate(questions, self._params(), adapter=candidate)
        served, routed = list(answers), None
        if self.router is not None and known is None:
            known = self.store.memories(status=(*ROUTED_STATUSES, "pending"))
        if self.router is not None and known:  # no memories, no keys: the adapter answers, as in the chat
            chosen = self.router.route(questions, known)
            routed = [r.adapter for r in chosen]
            to_base = [i for i in range(len(probes)) if not routed[i]]
            if to_base:
                outs = self.backend.evaluate([questions[i] for i in to_base], self._params(), adapter=None)
                for i, a in zip(to_base, outs, strict=True):
                    served[i] = a
            for j, p in enumerate(locality):  # the base model's answers are the reference itself
                if not routed[len(probes) + j]:
                    served[len(probes) + j] = p["base"]
        probe_answers, local_answers = served[: len(probes)], served[len(probes):]
        hits: dict[str, list[bool]] = {"new": [], "replay": [], "alone": []}
        per_memory: dict[int, list[bool]] = {}
        for p, a, own in zip(probes, probe_answers, answers[: len(probes)], strict=True):
            hits[p.kind].append(recall_hit(a, p.expected, p.forbidden))
            ok = recall_hit(own, p.expected, p.forbidden)
            per_memory.setdefault(p.memory_id, []).append(ok)
            if p.kind == "new":
                hits["alone"].append(ok)
        # locality: of the general questions the base model answers right, the share still answered right
        kept = [locality_hit(a, p["expect"]) for a, p in zip(local_answers, locality, strict=True)]
        alone = [locality_hit(a, p["expect"]) for a, p in zip(answers[len(probes):], locality, strict=True)]
        similarity = None
        if locality:
            base = self.embedder.encode([p["base"] for p in locality])
            cand = self.embedder.encode(local_answers)
            similarity = round(float((base * cand).sum(axis=1).mean()), 3)
        recall_by_memory = {k: sum(v) / len(v) for k, v in per_memory.items()}
        scores = {
            "recall": sum(hits["new"]) / len(hits["new"]) if hits["new"] else 1.0,
            "retention": sum(hits["replay"]) / len(hits["replay"]) if hits["replay"] else None,
            "locality": sum(kept) / len(kept) if kept else 1.0,
            "adapter_recall": sum(hits["alone"]) / len(hits["alone"]) if hits["alone"] else 1.0,
            "adapter_locality": sum(alone) / len(alone) if alone else 1.0,
            "probes": len(probes),
            "locality_probes": len(kept),
            "locality_similarity": similarity,
            "locality_lost": [{"q": p["q"], "base": p["base"][:120], "a": a[:120]}
                              for p, a, ok in zip(locality, local_answers, kept, strict=True) if not ok][:12],
            "examples": [{"q": p.question, "a": a, "ok": recall_hit(a, p.expected, p.forbidden)}
                         for p, a in list(zip(probes, probe_answers, strict=True))[:6]],  # fmt: skip
        }
        if routed is not None:
            scores["routed_to_adapter"] = {"probes": [sum(routed[: len(probes)]), len(probes)],
                                           "locality": [sum(routed[len(probes):]), len(locality)]}  # fmt: skip
        return scores, recall_by_memory

    def _record_recall(self, recall_by_memory: dict[int, float]) -> None:
        for memory_id, recall in recall_by_memory.items():
            if memory_id is not None:
                self.store.update_memory(memory_id, last_recall=recall)

    def _train(self, sleep_id: int, dreams: DreamSet, cfg, epochs: float, active: dict | None, out: Path) -> dict:
        job = TrainJob(
            model_path=str(self.model_path), output_dir=str(out), conversations=[e.messages for e in dreams.examples],
            init_adapter=active["path"] if active else None, rank=cfg.rank, alpha=cfg.alpha, layers=cfg.layers,
            target_modules=cfg.target_modules, learning_rate=cfg.learning_rate, adam_epsilon=cfg.adam_epsilon,
            epochs=epochs, batch_size=cfg.batch_size, max_length=cfg.max_length,
            packing=cfg.packing, padding_free=cfg.padding_free, time_budget_s=cfg.time_budget_s, seed=cfg.seed, dtype=self.settings.model.dtype,
        )  # fmt: skip
        work = self.state_dir / "sleeps" / f"{sleep_id:04d}"
        work.mkdir(parents=True, exist_ok=True)
        job_file = work / "job.json"
        job_file.write_text(job.model_dump_json())
        log_file = work / "trainer.log"
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        with open(log_file, "wb") as err:
            self._proc = proc = subprocess.Popen(
                [sys.executable, "-m", "sleeptrain_agent.sleep.trainer", str(job_file)],
                stdout=subprocess.PIPE, stderr=err, env=env, text=True,
                preexec_fn=die_with_parent,  # a killed daemon takes its training with it
            )  # fmt: skip
            timer = threading.Timer(cfg.train_timeout_s, proc.kill)
            timer.start()
            summary = None
            try:
                for line in proc.stdout:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if event.get("event") == "step":
                        self.progress = {"step": "train", "train_step": event["step"], "total": event["total"],
                                         "loss": event["loss"], "elapsed": event.get("elapsed")}  # fmt: skip
                    elif event.get("event") == "done":
                        summary = event
                proc.wait()
            finally:
                timer.cancel()
                self._proc = None
        if proc.returncode != 0 or summary is None:
            tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
            why = "timed out" if proc.returncode == -9 else f"exited with {proc.returncode}"
            raise SleepFailed(f"training {why}; last lines of {log_file}:\n{tail}")
        summary.pop("event", None)
        return summary

    def _next_version(self) -> str:
        numbers = [int(m[1]) for a in self.store.adapters() if (m := re.fullmatch(r"v(\d+)", a["version"]))]
        if self.adapters_dir.exists():
            numbers += [int(m[1]) for p in self.adapters_dir.iterdir() if (m := re.fullmatch(r"v(\d+)", p.name))]
        return f"v{max(numbers, default=0) + 1:04d}"

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()

    # -- start-up recovery -----------------------------------------------------

    def recover(self) -> list[str]:
        """After a crash: interrupted sleeps become `failed`; unknown adapter directories are set aside."""
        notes = []
        for row in self.store.sleeps():
            if row["status"] == "running":
                self.store.finish_sleep(row["id"], "failed", error="interrupted: the daemon stopped during this sleep")
                notes.append(f"sleep {row['id']} was interrupted; marked failed")
        if self.adapters_dir.exists():
            known = {Path(a["path"]).name for a in self.store.adapters()}
            for p in self.adapters_dir.iterdir():
                if p.is_dir() and (p.name.startswith(".tmp-") or (re.fullmatch(r"v\d+", p.name) and p.name not in known)):
                    target = self.adapters_dir / "orphaned" / f"{p.name.lstrip('.')}-{int(time.time())}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    p.rename(target)
                    notes.append(f"set aside {p.name} (not a recorded adapter) in {target}")
        for note in notes:
            log.warning("recovery: %s", note)
        return notes


def _passes(scores: dict, cfg) -> bool:
    return (scores["recall"] >= cfg.min_recall and scores["locality"] >= cfg.min_locality
            and scores.get("adapter_locality", scores["locality"]) >= cfg.min_adapter_locality
            and (scores["retention"] is None or scores["retention"] >= cfg.min_retention))  # fmt: skip


def weaken_adapter(source: Path, target: Path, scale: float, directions: int = 0, start: Path | None = None) -> None:
    """Copy the PEFT LoRA adapter `source` with the change its sleep made weakened: the change from
    `start` (the adapter the sleep continued; None: the base model) kept to its `directions` strongest
    singular directions in every layer (0: all of them) and scaled by `scale` (weight-space
    interpolation from `start`, as in WiSE-FT). The top 2 directions keep a 5-fact sleep's recall
    (BENCHMARKS.md, "Locality, fourth session"). The result is re-factored at the adapter's rank:
    A's rows orthonormal directions (at the source's row norm), so every direction stays trainable
    in the next sleep."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    weights = target / "adapter_model.safetensors"
    tensors = load_file(weights)
    before = load_file(start / "adapter_model.safetensors") if start else {}
    for b_name in [k for k in tensors if ".lora_B." in k]:
        a_name = b_name.replace(".lora_B.", ".lora_A.")
        b, a = tensors[b_name].double(), tensors[a_name].double()
        b0, a0 = (before[b_name].double(), before[a_name].double()) if b_name in before else (b[:, :0], a[:0])
        u, s, vh = _lowrank_svd(torch.cat([b, -b0], 1), torch.cat([a, a0]))  # the change B·A - B0·A0
        if directions:
            u, s, vh = u[:, :directions], s[:directions], vh[:directions]
        u, s, vh = _lowrank_svd(torch.cat([b0, scale * u * s], 1), torch.cat([a0, vh]))
        rank, norm = a.shape[0], float(a.norm(dim=1).mean()) or 1.0
        new_b, new_a = (u * s)[:, :rank], vh[:rank]
        if len(s) < rank:  # fewer directions than the rank: complete A with orthonormal rows, B with zeros
            rest = torch.randn(rank - len(s), a.shape[1], generator=torch.Generator().manual_seed(0), dtype=a.dtype)
            q, _ = torch.linalg.qr((rest - rest @ vh.T @ vh).T)
            new_b, new_a = torch.cat([new_b, b.new_zeros(b.shape[0], rank - len(s))], 1), torch.cat([vh, q.T])
        tensors[b_name] = (new_b / norm).to(tensors[b_name].dtype)
        tensors[a_name] = (new_a * norm).to(tensors[a_name].dtype)
    save_file(tensors, weights, metadata={"format": "pt"})


def _lowrank_svd(b, a):
    """U, S, V^T of the product b @ a (b: out x m, a: m x in, m small) without forming it."""
    import torch

    qb, rb = torch.linalg.qr(b)
    qa, ra = torch.linalg.qr(a.T)
    u, s, vh = torch.linalg.svd(rb @ ra.T)
    return qb @ u, s, vh @ qa.T


def _fsync_dir(path: Path) -> None:
    try:
        for f in path.iterdir() if path.is_dir() else []:
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
