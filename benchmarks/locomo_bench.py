"""The hippocampus on LoCoMo: does it keep what people actually say?

    python -m benchmarks.locomo_bench PATH [--conversations 26 30] [--json OUT.json]

PATH is a local copy of LoCoMo (snap-research/locomo: `data/locomo10.zip`, the
folder it unzips to, or one conversation's JSON file). LoCoMo has no license
file: it is read from where you put it and never committed, and no test needs
it. Ten long two-person conversations; each QA item names the turn(s) holding
its answer and a category (1 multi-hop, 2 temporal, 3 open-domain, 4
single-hop, 5 adversarial).

Each speaker is a user of their own; their turns are fed in order, one
conversation per session, through the real hippocampus in process (a fresh
SQLite store, the configured offline extractor, the real embedder), each turn
dated with its session's time. Reported per conversation and overall:
- capture: of the single-hop items (category 4) with one evidence turn, the
  share whose answer has at least half of its content words in one live
  memory of the speaker of that turn (the gated figure: target >= 0.8);
  words are compared as spaCy lemmas ("hoodies" = "hoodie"), stop words
  left out, numbers as digits;
- chatter: of the short turns (<= 8 words) that are evidence for nothing, the
  share that got a memory stored (target <= 0.1);
- memories per turn, and the hippocampus' latency per turn (p50, p95; target
  p95 <= 100 ms on a 2-core CPU);
- the same capture over the multi-hop and temporal items, reported, not gated.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

from memory.answers import words
from memory.embeddings import Embedder
from memory.extractor import ExtractorJudge
from memory.hippocampus import ACTIVE, Hippocampus
from memory.store import Store
from memory.times import parse_time

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}


def load(path: Path) -> list[dict]:
    """The conversations of a LoCoMo copy: a zip, a folder of JSON files, or one JSON file."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            return [json.loads(z.read(n)) for n in sorted(z.namelist()) if n.endswith(".json")]
    if path.is_dir():
        return [json.loads(p.read_text()) for p in sorted(path.rglob("*.json"))]
    data = json.loads(path.read_text())
    return data if isinstance(data, list) else [data]


def sessions(conv: dict) -> list[tuple[int, dt.datetime, list[dict]]]:
    """(number, time, turns) for each session, in order (both the flat and the `conversation` layouts)."""
    c = conv.get("conversation", conv)
    out = []
    for key, turns in c.items():
        if key.startswith("session_") and isinstance(turns, list):
            n = int(key.split("_")[1])
            when = parse_time(c.get(f"session_{n}_date_time", "")) or dt.datetime(2023, 1, 1)
            out.append((n, when.replace(tzinfo=dt.UTC), turns))
    return sorted(out, key=lambda s: s[0])


def _stop_words() -> set[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return set(STOP_WORDS)


def lemmas(text: str) -> list[str]:
    """The text's words as lemmas ("hoodies" -> "hoodie", "expressing" -> "express"), numbers as digits."""
    from memory.language import nlp

    return words(" ".join(t.lemma_ for t in nlp()(str(text))))


def content_words(text: str, stop: set[str]) -> list[str]:
    return [w for w in lemmas(text) if w not in stop and len(w) > 1 or w.isdigit()]


def captured(answer: str, memories: list[set[str]], stop: set[str]) -> bool:
    """At least half of the answer's content words (lemmas) in one memory (a set of lemmas)."""
    want = set(content_words(str(answer), stop))
    if not want:
        return False
    return any(len(want & m) * 2 >= len(want) for m in memories)


def run_conversation(conv: dict, index: int, embedder: Embedder, judge) -> dict:
    qa = conv.get("qa", [])
    evidence = {e for q in qa for e in q.get("evidence", [])}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "locomo.db")
        hippo = Hippocampus(store, judge, embedder)
        speaker_of: dict[str, str] = {}
        latencies: list[float] = []
        short_idle = short_idle_stored = turns = 0
        for n, when, session in sessions(conv):
            for t in session:
                speaker, text = t["speaker"], t.get("text") or ""
                speaker_of[t["dia_id"]] = speaker
                cid = store.start_conversation(speaker, conversation_id=f"c{index}-{speaker}-s{n}")
                turn = store.log_turn(cid, "user", text)
                turn["created_at"] = when.isoformat()  # the session's time: relative dates resolve against it
                t0 = time.perf_counter()
                rows = hippo.process(turn)
                latencies.append((time.perf_counter() - t0) * 1000)
                turns += 1
                if len(text.split()) <= 8 and t["dia_id"] not in evidence:
                    short_idle += 1
                    short_idle_stored += any(r["decision"] in ("STORE", "CORRECT") for r in rows)
        live = {s: [set(lemmas(m["text"])) for m in store.memories(status=ACTIVE, user=s)] for s in set(speaker_of.values())}
        memories = sum(len(v) for v in live.values())
        store.close()
    stop = _stop_words()
    caps: dict[str, list[bool]] = {}
    for q in qa:
        ev = [e for e in q.get("evidence", []) if e in speaker_of]
        cat = CATEGORIES.get(q.get("category"))
        if not ev or "answer" not in q or cat not in ("single-hop", "multi-hop", "temporal"):
            continue
        if cat == "single-hop" and len(q["evidence"]) != 1:
            continue
        hit = any(captured(q["answer"], live[speaker_of[e]], stop) for e in ev)
        caps.setdefault(cat, []).append(hit)
    return {
        "conversation": conv.get("sample_id") or index, "turns": turns, "memories": memories,
        "capture": {k: [sum(v), len(v)] for k, v in caps.items()}, "chatter": [short_idle_stored, short_idle],
        "latency_ms": latencies,
    }  # fmt: skip


def _share(pair: list[int]) -> float:
    return pair[0] / pair[1] if pair[1] else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path, help="data/locomo10.zip of snap-research/locomo, its folder, or a JSON file")
    ap.add_argument("--conversations", type=int, nargs="*", help="only these (0-based) conversation indexes")
    ap.add_argument("--json", type=Path, help="also write the figures (no LoCoMo text) to this file")
    args = ap.parse_args()
    convs = load(args.path)
    chosen = args.conversations if args.conversations else range(len(convs))
    embedder = Embedder()
    judge = ExtractorJudge(embed=embedder.encode)
    judge.judge("warm up the parser", __import__("memory.verdicts").verdicts.Context())
    results = []
    print(f"{'conv':>5} {'turns':>6} {'memories':>8} {'mem/turn':>8} {'capture':>12} {'chatter':>10} {'p50 ms':>7} {'p95 ms':>7}")
    for i in chosen:
        r = run_conversation(convs[i], i, embedder, judge)
        results.append(r)
        cap = r["capture"].get("single-hop", [0, 0])
        lat = sorted(r["latency_ms"])
        print(f"{i:>5} {r['turns']:>6} {r['memories']:>8} {r['memories'] / r['turns']:>8.2f} "
              f"{_share(cap):>6.3f} ({cap[0]}/{cap[1]}) {_share(r['chatter']):>6.3f} "
              f"{statistics.median(lat):>7.1f} {lat[int(0.95 * (len(lat) - 1))]:>7.1f}", flush=True)  # fmt: skip
    total = {k: [sum(r["capture"].get(k, [0, 0])[0] for r in results), sum(r["capture"].get(k, [0, 0])[1] for r in results)]
             for k in ("single-hop", "multi-hop", "temporal")}  # fmt: skip
    chatter = [sum(r["chatter"][0] for r in results), sum(r["chatter"][1] for r in results)]
    lat = sorted(x for r in results for x in r["latency_ms"])
    turns, memories = sum(r["turns"] for r in results), sum(r["memories"] for r in results)
    p50, p95 = statistics.median(lat), lat[int(0.95 * (len(lat) - 1))]
    print(f"\nall {len(results)} conversations: capture (single-hop, one evidence turn) {_share(total['single-hop']):.3f} "
          f"({total['single-hop'][0]}/{total['single-hop'][1]}; target >= 0.8), chatter {_share(chatter):.3f} "
          f"({chatter[0]}/{chatter[1]}; target <= 0.1), {memories / turns:.2f} memories per turn, latency per turn "
          f"p50 {p50:.1f} ms, p95 {p95:.1f} ms (target <= 100)")  # fmt: skip
    print(f"reported, not gated: capture multi-hop {_share(total['multi-hop']):.3f} ({total['multi-hop'][0]}/"
          f"{total['multi-hop'][1]}), temporal {_share(total['temporal']):.3f} ({total['temporal'][0]}/"
          f"{total['temporal'][1]})")  # fmt: skip
    if args.json:
        summary = {"capture": total, "chatter": chatter, "turns": turns, "memories": memories, "p50_ms": p50,
                   "p95_ms": p95, "conversations": [{k: v for k, v in r.items() if k != "latency_ms"} for r in results]}
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
