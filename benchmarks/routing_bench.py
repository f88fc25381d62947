"""Routing (`serve.routing`, memory/routing.py): how well the router separates questions about
memories from general ones, and what it costs per request.

    python -m benchmarks.routing_bench [--thresholds 0.35 0.4 0.45 0.5 0.55] [--extra 0 100 500]

Memories: the 5 facts of the sleep tests and the 27 of the people benchmark, as the rules judge
stores them (taught through the real hippocampus), plus `--extra` synthetic memories
(benchmarks.sleep_bench.synthetic: fictional pets, people, places) to see how false positives grow
with the store. Questions about memories: each memory's held-out probe phrasings (never among the
router's keys) and the people benchmark's direct questions and paraphrases (written apart from the
templates). General questions: the 75 prompts of the anchors file (sleeptrain_agent/data/anchors.yaml) (train and probe). Prints,
per threshold and store size, the share of memory questions routed to the adapter (want 1.0) and of
general questions routed to the base model (want ~1.0); then the router's latency for one chat
message (median of 50, keys cached) and the one-off cost of embedding the keys.

Then the fallback for questions about the user (`serve.routing_personal`, memory/personal.py) on
first-person questions written before it and never changed to suit it
(benchmarks/data/personal_questions.yaml: questions asking for a fact about the asker, and
first-person requests for help; `tune` was looked at while writing the rule, `held_out` never):
the share of each sent the right way, with the fallback and without it (similarity alone), at the
configured threshold over the same memories.

`--locomo PATH` (a local copy of LoCoMo, `data/locomo10.zip`; never committed): the fallback's rule on
text nobody here wrote -- of the question sentences in the first person in its conversations (friends
talking, so few ask the other for their own facts), the share it reads as asking about the asker,
with a sample of them to judge by eye.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.sleep_bench import FIVE_FACTS, synthetic
from memory.dreams import rehearsals
from memory.embeddings import Embedder
from memory.extractor import ExtractorJudge
from memory.hippocampus import Hippocampus
from memory.routing import MemoryRouter
from memory.store import Store
from sleeptrain_agent.config import data, load_settings
from sleeptrain_agent.evaluation.people import load
from sleeptrain_agent.routing import routes


def taught(embedder: Embedder, texts: list[str], store: Store) -> list[dict]:
    """Teach `texts` through the real hippocampus; its memories, marked consolidated."""
    hippo = Hippocampus(store, ExtractorJudge(embed=embedder.encode), embedder)
    conv = store.start_conversation("default")
    for text in texts:
        hippo.process(store.log_turn(conv, "user", text))
    for m in store.memories(status="pending"):
        store.update_memory(m["id"], status="consolidated")
    return store.memories(status="consolidated")


class _Serving:
    def active_for(self, user):  # routes() routes only while the user has an adapter
        return "v0001"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.35, 0.4, 0.45, 0.5, 0.55])
    ap.add_argument("--extra", type=int, nargs="+", default=[0, 100, 500])
    ap.add_argument("--locomo", type=Path, help="a local copy of LoCoMo (data/locomo10.zip): the fallback on its questions")
    args = ap.parse_args()
    if args.locomo:
        locomo_questions(args.locomo)
    settings = load_settings()
    templates = data("qa_templates.yaml")
    anchors = data("anchors.yaml")
    general = [p["q"] for p in anchors["probe"]] + anchors["train"]
    people = load()
    embedder = Embedder()
    tmp = tempfile.TemporaryDirectory()
    store = Store(Path(tmp.name) / "bench.db")
    facts = taught(embedder, FIVE_FACTS + [f.teach for p in people.personas for f in p.facts], store)
    held = settings.sleep.probes_per_memory
    about = [qa.question for m in facts for qa in rehearsals(m, templates, probes=held)[1]]
    natural = [q for p in people.personas if p.free_form for f in p.facts for q in [f.ask, *f.paraphrases]]
    about += [q for p in people.personas if not p.free_form for f in p.facts for q in [f.ask, *f.paraphrases]] + natural
    print(f"{len(facts)} taught memories; {len(about)} questions about them, {len(general)} general questions")

    print(f"{'threshold':>9} {'extra':>6} {'memories':>8} {'about->adapter':>15} {'natural':>8} {'general->base':>14}  "
          "general sent to the adapter")  # fmt: skip
    router = MemoryRouter(embedder, templates, held_out=held)
    added = 0
    for extra in sorted(args.extra):
        for m in synthetic(extra - added, start=added):
            store.add_memory(subject=m["subject"], relation=m["relation"], value=m["value"], text=m["text"],
                             status="consolidated")  # fmt: skip
        added = extra
        memories = store.memories(status="consolidated")
        t0 = time.perf_counter()
        router.route([[{"role": "user", "content": "warm"}]], memories)
        keys_s = time.perf_counter() - t0
        for threshold in args.thresholds:  # the router's own decision (similarity and the topic-word check)
            router.threshold = threshold
            routes_about = router.route([[{"role": "user", "content": q}] for q in about], memories)
            routes_general = router.route([[{"role": "user", "content": q}] for q in general], memories)
            hit = sum(r.adapter for r in routes_about) / len(about)
            hit_natural = sum(r.adapter for r in routes_about[len(about) - len(natural):]) / max(1, len(natural))
            kept = [q for q, r in zip(general, routes_general, strict=True) if not r.adapter]
            sent = [f"{q} ({r.similarity:.2f})" for q, r in zip(general, routes_general, strict=True) if r.adapter]
            print(f"{threshold:>9.2f} {extra:>6} {len(memories):>8} {hit:>15.3f} {hit_natural:>8.3f} "
                  f"{len(kept) / len(general):>14.3f}  {'; '.join(sent[:4])}{' ...' if len(sent) > 4 else ''}")  # fmt: skip
        router.threshold = settings.serve.routing_similarity
        routes_about = router.route([[{"role": "user", "content": q}] for q in about], memories)
        worst, question = min(zip(routes_about, about, strict=True), key=lambda rq: rq[0].similarity)
        print(f"{'':>9} {extra:>6} lowest question about a memory: {worst.similarity:.3f} ({question!r}); "
              f"keys embedded once in {keys_s:.1f} s")  # fmt: skip
        times = []
        for q in general[:50]:  # as the agent does it: the store's consolidated memories, then the router
            t0 = time.perf_counter()
            routes(router, store, _Serving(), [[{"role": "user", "content": q}]], user="default")
            times.append(time.perf_counter() - t0)
        print(f"{'':>9} {extra:>6} one chat message routed in {statistics.median(times) * 1000:.1f} ms "
              "(median of 50; store read + embedding + similarity)")  # fmt: skip
    personal_questions(router, store.memories(status="consolidated"), settings.serve.routing_similarity)
    store.close()
    tmp.cleanup()


def locomo_questions(path: Path, sample: int = 12) -> None:
    import random
    import re

    from benchmarks.locomo_bench import load, sessions
    from memory.personal import asks_about_user

    asked = [sent for conv in load(path) for _, _, turns in sessions(conv) for t in turns
             for sent in re.split(r"(?<=[.!?])\s+", t.get("text") or "")
             if sent.endswith("?") and re.search(r"\b(I|my|me|I'm|I've|mine)\b", sent)]  # fmt: skip
    about = [q for q in asked if asks_about_user(q)]
    print(f"LoCoMo: {len(asked)} question sentences in the first person; read as asking about the asker: "
          f"{len(about)} ({len(about) / max(1, len(asked)):.3f})")  # fmt: skip
    for q in random.Random(0).sample(about, min(sample, len(about))):
        print(f"  {q}")


def personal_questions(router: MemoryRouter, memories: list[dict], threshold: float) -> None:
    import yaml

    questions = yaml.safe_load((Path(__file__).parent / "data" / "personal_questions.yaml").read_text())
    router.threshold = threshold
    print(f"questions in the first person (benchmarks/data/personal_questions.yaml), threshold {threshold}, "
          f"{len(memories)} memories:")  # fmt: skip
    for part in ("tune", "held_out"):
        for kind, want in (("personal", True), ("general", False)):
            qs = questions[part][kind]
            line = []
            for on in (True, False):
                got = router.route([[{"role": "user", "content": q}] for q in qs], memories, personal=on)
                right = [r.adapter == want for r in got]
                line.append(f"{sum(right)}/{len(qs)} {'with' if on else 'without'} the fallback")
                if on:
                    wrong = [q for q, ok in zip(qs, right, strict=True) if not ok]
            print(f"  {part:>8} {kind:>8} -> {'adapter' if want else 'base':>7}: {', '.join(line)}"
                  f"{'; wrong: ' + ' | '.join(wrong) if wrong else ''}")  # fmt: skip


if __name__ == "__main__":
    main()
