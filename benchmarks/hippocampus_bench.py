"""Hippocampus throughput and its cost on the reply path.

    python -m benchmarks.hippocampus_bench [--rounds 5] [--requests 16] [--backend vllm]

1. turns/s through the offline `extractor` judge, in process (real store, real
   embedder, spaCy): the natural labelled script of tests/data/ replayed
   `--rounds` times by fresh users, each in its own conversations.
2. chat latency through a real daemon with the hippocampus on vs off: the
   same fact-bearing turns, greedy, `--requests` each; p50/p95 and the p50
   ratio (target <= 1.05). The hippocampus runs on a worker thread, so the
   ratio measures only the CPU it competes for.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks._daemon import percentile, running_daemon
from memory.embeddings import Embedder
from memory.extractor import ExtractorJudge
from memory.hippocampus import Hippocampus
from memory.store import Store
from tests.hippo_script import NATURAL, script


def throughput(rounds: int) -> None:
    items = script(NATURAL)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        embedder = Embedder()
        hippo = Hippocampus(store, ExtractorJudge(embed=embedder.encode), embedder)
        hippo.process(store.log_turn(store.start_conversation("warmup"), "user", "My dog is called Rex."))
        turns = []
        for r in range(rounds):
            for item in items:
                conv = store.start_conversation(f"{item['user']}-{r}", conversation_id=f"{item['conversation']}-{r}")
                turns.append(store.log_turn(conv, "user", item["text"]))
        t0 = time.perf_counter()
        each = []
        for turn in turns:
            start = time.perf_counter()
            hippo.process(turn)
            each.append(time.perf_counter() - start)
        elapsed = time.perf_counter() - t0
        print(f"extractor: {len(turns)} turns in {elapsed:.2f} s = {len(turns) / elapsed:.1f} turns/s, p50 "
              f"{statistics.median(each) * 1000:.0f} ms, p95 {percentile(each, 0.95) * 1000:.0f} ms per turn "
              f"({store.stats()['memories']} memories, {len(store.decisions())} decisions)")  # fmt: skip
        store.close()


def latency(backend: str, requests: int, max_tokens: int) -> None:
    texts = [i["text"] for i in script(NATURAL) if i["expect"] != "REJECT"][:requests]
    medians = {}
    for enabled in ("true", "false"):
        with tempfile.TemporaryDirectory() as tmp, running_daemon(
            Path(tmp) / "state", backend, SLEEPTRAIN_HIPPOCAMPUS__ENABLED=enabled, SLEEPTRAIN_HIPPOCAMPUS__JUDGE="extractor"
        ) as (url, _):
            http = httpx.Client(timeout=600)
            body = {"model": "sleeptrain", "max_tokens": max_tokens, "temperature": 0}
            http.post(url + "/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": "Hi"}]})
            values = []
            for text in texts:
                start = time.perf_counter()
                http.post(url + "/v1/chat/completions",
                          json={**body, "messages": [{"role": "user", "content": text}]}).raise_for_status()  # fmt: skip
                values.append(time.perf_counter() - start)
            queue = http.get(url + "/health").json()["hippocampus_queue"]
            label = "on " if enabled == "true" else "off"
            medians[enabled] = statistics.median(values)
            print(f"hippocampus {label}: p50 {medians[enabled] * 1000:6.0f} ms  p95 {percentile(values, 0.95) * 1000:6.0f} ms"
                  f"  ({len(values)} turns, {max_tokens} tokens; queue after: {queue})")  # fmt: skip
    print(f"latency ratio on/off (p50): {medians['true'] / medians['false']:.3f}  (target <= 1.05)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--backend", default="vllm", choices=["vllm", "embedded"])
    args = ap.parse_args()
    throughput(args.rounds)
    latency(args.backend, args.requests, args.max_tokens)


if __name__ == "__main__":
    main()
