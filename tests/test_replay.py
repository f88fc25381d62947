"""The prioritized replay buffer (pure logic)."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from memory.replay import budget, priority, sample

NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)


def mem(i, importance=0.5, recall=None, replayed=0, days=0):
    created = (NOW - dt.timedelta(days=days)).isoformat()
    return {"id": i, "importance": importance, "last_recall": recall, "times_replayed": replayed, "created_at": created}


def test_measured_failures_rank_higher():
    assert priority(mem(1, recall=0.0), NOW) > priority(mem(2, recall=1.0), NOW)
    assert priority(mem(1, importance=0.9), NOW) > priority(mem(2, importance=0.1), NOW)
    assert priority(mem(1, days=60), NOW) > priority(mem(2, days=0), NOW)
    assert priority(mem(1, replayed=0), NOW) > priority(mem(2, replayed=10), NOW)


def test_sample_is_bounded_deterministic_and_weighted():
    memories = [mem(i, recall=0.0 if i < 50 else 1.0) for i in range(500)]
    picked = sample(memories, 10, seed=1)
    assert len(picked) == 10 and len({m["id"] for m in picked}) == 10
    assert picked == sample(memories, 10, seed=1)
    counts = Counter()
    for seed in range(200):
        counts.update("failed" if m["id"] < 50 else "known" for m in sample(memories, 10, seed=seed))
    # 10% of the memories are failures, but they get far more than 10% of the replay
    assert counts["failed"] / sum(counts.values()) > 0.25


def test_small_or_empty_buffers():
    assert sample([], 10) == []
    assert sample([mem(1)], 0) == []
    assert [m["id"] for m in sample([mem(1), mem(2)], 10)] == [1, 2]


def test_replay_grows_with_the_new_memories_up_to_the_budget():
    assert [budget(10, 2.0, n) for n in (0, 1, 2, 5, 12)] == [0, 2, 4, 10, 10]
    assert budget(10, 1.5, 3) == 5  # rounded up: a sleep over new memories always replays some
    assert budget(10, 0.0, 1) == budget(10, 0.0, 50) == 10  # 0: the budget whatever the sleep's size
    assert budget(0, 2.0, 5) == 0  # no replay
