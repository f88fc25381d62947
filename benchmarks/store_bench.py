"""Episodic store throughput: batched insert of N turns and FTS query latency at that size.

    python benchmarks/store_bench.py [--turns 100000] [--queries 300]

Targets (issue 2): >= 20,000 turns/s batched insert; FTS search p95 < 50 ms at 100,000 turns.
Single-turn `log_turn` throughput is printed too (the daemon's path: one turn per call).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from memory.store import Store

WORDS = (
    "dog cat sister brother Oslo Bergen Uppsala Paris coffee tea luthier baker teacher piano violin "
    "birthday June March garden bicycle train mountain river novel recipe holiday football chess "
    "yesterday tomorrow remember because really think maybe actually please thanks hello weather"
).split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 30)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--single", type=int, default=2_000, help="turns written one call at a time")
    args = ap.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        convs = [store.start_conversation(f"user{u}") for u in range(20)]
        rows = [
            {"conversation_id": convs[i % len(convs)], "role": ("user", "assistant")[i % 2], "content": sentence(rng)}
            for i in range(args.turns)
        ]
        t0 = time.perf_counter()
        store.log_turns(rows, batch_size=2000)
        insert_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for i in range(args.single):
            store.log_turn(convs[i % len(convs)], "user", sentence(rng))
        single_s = time.perf_counter() - t0

        latencies = []
        for _ in range(args.queries):
            query = " ".join(rng.sample(WORDS, rng.randint(1, 2)))
            t0 = time.perf_counter()
            store.search_turns(query, limit=20)
            latencies.append((time.perf_counter() - t0) * 1000)
        latencies.sort()
        p50 = statistics.median(latencies)
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        size_mb = (Path(tmp) / "bench.db").stat().st_size / 1e6
        print(f"turns inserted (batched):   {args.turns:,} in {insert_s:.2f} s = {args.turns / insert_s:,.0f} turns/s  (target >= 20,000)")
        print(f"turns inserted (one by one): {args.single:,} in {single_s:.2f} s = {args.single / single_s:,.0f} turns/s")
        print(f"FTS search over {args.turns + args.single:,} turns, {args.queries} queries: p50 {p50:.1f} ms, p95 {p95:.1f} ms  (target p95 < 50 ms)")
        print(f"database size: {size_mb:.0f} MB; integrity: {store.integrity_check()}")
        store.close()


if __name__ == "__main__":
    main()
