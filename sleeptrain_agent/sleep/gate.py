"""The validation gate: does a candidate adapter recall what it learned and keep what the base model knew?

A `Gate` is built for one sleep from that sleep's configuration (the
settings with the `POST /v1/sleep` overrides applied), so every setting it
uses -- `probe_max_tokens`, the thresholds, the fallback scales -- is the one
this sleep was asked to run with.

- `anchors()`: the base model's answers to the general prompts of
  `anchors.yaml` (train anchors, and the locality probes the base model gets
  right), cached beside the model (`anchors.json` in the model cache) per
  model, backend, served dtype, system prompt and answer length;
- `recall(probes, adapter)`: the share of probes an adapter answers right;
- `score(dreams, locality, candidate, known)`: recall of the new memories,
  retention of the replayed ones and locality, through the serving backend,
  *as served* (with routing, each question answered by the candidate or the
  base model as the router would send it once the candidate serves `known`)
  and by the candidate alone (`adapter_recall`, `adapter_locality`);
- `passes(scores)` / `failures(scores)`: against `sleep.min_*`;
- `weaker(...)`: a candidate that recalls but fails locality or retention is
  gated again with the sleep's change scaled by each of
  `sleep.fallback_scales`, strongest first; the first that passes wins.

What counts as a right answer is `memory.answers` (shared with the Sleep
Benchmark and the tests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from memory.answers import SENTENCE_STOPS, first_sentence, locality_hit, recall_hit, sentences_only, stopped_short
from memory.dreams import DreamSet, Probe
from memory.embeddings import Embedder
from memory.routing import MemoryRouter
from memory.store import Store
from sleeptrain_agent.backends import Backend, GenerationParams
from sleeptrain_agent.config import Settings, SleepConfig, data, model_cache_dir
from sleeptrain_agent.routing import ROUTED_STATUSES
from sleeptrain_agent.sleep.adapters import weaken_adapter

SCORE_KEYS = ("recall", "retention", "locality", "adapter_locality")


class Gate:
    def __init__(self, settings: Settings, cfg: SleepConfig, backend: Backend, embedder: Embedder,
                 router: MemoryRouter | None, state_dir: Path, store: Store):  # fmt: skip
        self.settings = settings
        self.cfg = cfg  # this sleep's configuration, overrides applied
        self.backend = backend
        self.embedder = embedder
        self.router = router
        self.state_dir = state_dir
        self.store = store

    # -- questions -----------------------------------------------------------

    def messages(self, question: str) -> list[dict]:
        return [{"role": "system", "content": self.settings.serve.system_prompt}, {"role": "user", "content": question}]

    @property
    def params(self) -> GenerationParams:
        """Greedy answers of `probe_max_tokens`: the same for every probe, anchor and candidate."""
        return GenerationParams(max_tokens=self.cfg.probe_max_tokens, temperature=0.0)

    @property
    def first_sentence_params(self) -> GenerationParams:
        """A locality probe's answer up to its first sentence: all that `locality_hit` reads (a small
        model's answers ramble on to `probe_max_tokens`; the gate's candidate answers were most of a
        sleep's validation time)."""
        return dataclasses.replace(self.params, stop=list(SENTENCE_STOPS))

    def answers(self, questions: list[list[dict]], params: list[GenerationParams], adapter: Path | None) -> list[str]:
        """`backend.evaluate`, with every answer that the first-sentence stops ended inside its first
        sentence (after "Dr.", an initial) asked again without them: `locality_hit` reads the same
        sentence either way."""
        answers = self.backend.evaluate(questions, params, adapter=adapter)
        again = [i for i, (a, p) in enumerate(zip(answers, params, strict=True)) if p.stop and stopped_short(a)]
        if again:
            outs = self.backend.evaluate([questions[i] for i in again], self.params, adapter=adapter)
            for i, a in zip(again, outs, strict=True):
                answers[i] = a
        return answers

    def anchors(self) -> tuple[list[tuple[str, str]], list[dict]]:
        """Train anchors as (prompt, the base model's answer) when `sleep.anchors` is on, and the
        locality probes the base model gets right ({q, expect, base}); base answers are cached."""
        spec = data("anchors.yaml")
        # the base model's answers to general prompts hold nothing of anyone's: one cache beside the model,
        # shared by every state directory (a fresh state's first sleep does not recompute them); a test
        # double's answers stay in its own state directory
        name = getattr(self.backend, "name", "")
        shared = name in ("vllm", "embedded")
        cache_file = (model_cache_dir(self.settings) if shared else self.state_dir) / "anchors.json"
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
        # keyed by the dtype served: a bf16 base model may answer a general question differently, and
        # locality is measured against the base model as served
        dtype = getattr(self.backend, "dtype", "float32")
        key = f"{self.settings.model.name}|{name}|{dtype}|{self.settings.serve.system_prompt}|{self.cfg.probe_max_tokens}|v4"
        answers = cache.get(key, {})
        train_prompts = list(spec["train"]) if self.cfg.anchors else []
        probes = spec["probe"]
        missing = [p for p in train_prompts + [p["q"] for p in probes] if p not in answers]
        if missing:
            outs = self.backend.evaluate([self.messages(p) for p in missing], self.params, adapter=None)
            answers.update(dict(zip(missing, outs, strict=True)))
            cache[key] = answers
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(cache, indent=1))
            tmp.replace(cache_file)
        train = [(p, sentences_only(answers[p])) for p in train_prompts]
        locality = [{**p, "base": answers[p["q"]]} for p in probes if locality_hit(answers[p["q"]], p["expect"])]
        return [(p, a) for p, a in train if a], locality

    # -- scores --------------------------------------------------------------

    def recall(self, probes: list[Probe], adapter: Path | None) -> float:
        """The share of `probes` that `adapter` (None: the base model) answers right."""
        if not probes:
            return 1.0
        answers = self.backend.evaluate([self.messages(p.question) for p in probes], self.params, adapter=adapter)
        return sum(recall_hit(a, p.expected, p.forbidden) for a, p in zip(answers, probes, strict=True)) / len(probes)

    def score(self, dreams: DreamSet, locality: list[dict], candidate: Path,
              known: list[dict] | None = None) -> tuple[dict, dict[int, float]]:  # fmt: skip
        """The candidate's scores, and each probed memory's recall by the candidate (for replay priority).

        Scored as served: with routing on, each question is answered by the candidate or the base model
        as the router sends it when the candidate serves and knows `known` (default: the consolidated and
        pending memories). `adapter_locality` is the candidate answering every general question."""
        probes = dreams.probes
        questions = [self.messages(p.question) for p in probes] + [self.messages(p["q"]) for p in locality]
        seconds: dict[str, float] = {}  # where the gate's time goes, in its scores
        params = [self.params] * len(probes) + [self.first_sentence_params] * len(locality)
        with _timed(seconds, "candidate"):
            answers = self.answers(questions, params, candidate)
        served, routed = list(answers), None
        if self.router is not None and known is None:
            known = self.store.memories(status=(*ROUTED_STATUSES, "pending"))
        if self.router is not None and known:  # no memories, no keys: the adapter answers, as in the chat
            with _timed(seconds, "route"):
                routed = [r.adapter for r in self.router.route(questions, known)]
            to_base = [i for i in range(len(probes)) if not routed[i]]
            if to_base:
                with _timed(seconds, "base"):
                    outs = self.backend.evaluate([questions[i] for i in to_base], self.params, adapter=None)
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
            with _timed(seconds, "similarity"):
                base = self.embedder.encode([first_sentence(p["base"]) for p in locality])  # what was answered
                cand = self.embedder.encode([first_sentence(a) for a in local_answers])
                similarity = round(float((base * cand).sum(axis=1).mean()), 3)
        scores = {
            "recall": _share(hits["new"]),
            "retention": _share(hits["replay"], empty=None),
            "locality": _share(kept),
            "adapter_recall": _share(hits["alone"]),
            "adapter_locality": _share(alone),
            "probes": len(probes),
            "locality_probes": len(kept),
            "locality_similarity": similarity,
            "seconds": seconds,
            "locality_lost": [{"q": p["q"], "base": p["base"][:120], "a": a[:120]}
                              for p, a, ok in zip(locality, local_answers, kept, strict=True) if not ok][:12],
            "examples": [{"q": p.question, "a": a, "ok": recall_hit(a, p.expected, p.forbidden)}
                         for p, a in list(zip(probes, probe_answers, strict=True))[:6]],  # fmt: skip
        }
        if routed is not None:
            scores["routed_to_adapter"] = {"probes": [sum(routed[: len(probes)]), len(probes)],
                                           "locality": [sum(routed[len(probes):]), len(locality)]}  # fmt: skip
        return scores, {k: sum(v) / len(v) for k, v in per_memory.items()}

    def failures(self, scores: dict) -> list[str]:
        """Why `scores` do not pass, one phrase per threshold missed (empty: it passes)."""
        limits = (("recall", self.cfg.min_recall), ("locality", self.cfg.min_locality),
                  ("retention", self.cfg.min_retention), ("adapter_locality", self.cfg.min_adapter_locality))  # fmt: skip
        return [f"{k} {scores[k]:.2f} < {limit}" for k, limit in limits if scores.get(k) is not None and scores[k] < limit]

    def passes(self, scores: dict) -> bool:
        return not self.failures(scores)

    def weaker(self, dreams: DreamSet, locality: list[dict], candidate: Path, scores: dict, start: Path | None = None,
               known: list[dict] | None = None,
               on_try: Callable[[list[dict]], None] | None = None) -> tuple[Path, dict, bool]:  # fmt: skip
        """The candidate learned the new memories but disturbs general answers (or replayed memories) too
        much: gate it again with the sleep's change (from `start`, the adapter it continued) scaled by each
        of `fallback_scales`, strongest first, until one passes the whole gate or forgets the new memories.
        Returns the directory to promote (or reject), its scores, and whether it passed; `on_try` sees the
        growing list of what was tried."""
        tried = [{"scale": 1.0, **{k: scores[k] for k in SCORE_KEYS}}]
        for scale in self.cfg.fallback_scales:
            weaker = candidate.with_name(f"{candidate.name}-x{scale:g}")
            weaken_adapter(candidate, weaker, scale, start)
            s, _ = self.score(dreams, locality, weaker, known)
            tried.append({"scale": scale, **{k: s[k] for k in SCORE_KEYS}})
            if on_try is not None:
                on_try(tried)
            if self.passes(s):
                shutil.rmtree(candidate, ignore_errors=True)
                return weaker, {**s, "scale": scale, "scales_tried": tried}, True
            shutil.rmtree(weaker, ignore_errors=True)
            if s["recall"] < self.cfg.min_recall:
                break  # weaker still forgets the new memories: stop
        return candidate, {**scores, "scales_tried": tried}, False


@contextlib.contextmanager
def _timed(seconds: dict[str, float], key: str):
    """Record the block's wall time, in seconds (2 decimals), as `seconds[key]`."""
    t0 = time.monotonic()
    yield
    seconds[key] = round(time.monotonic() - t0, 2)


def _share(hits: list[bool], empty: float | None = 1.0) -> float | None:
    return sum(hits) / len(hits) if hits else empty
