"""The prioritized replay buffer: which consolidated memories a sleep rehearses.

A memory's priority grows with its importance, with how badly the model
recalled it at the last validation (`last_recall`, measured, not guessed),
and with age (old memories are the ones at risk of being forgotten), and
shrinks with how often it was already replayed. Each sleep draws a bounded
sample (`budget`) without replacement, weighted by priority, so a sleep's
cost grows with the new memories, not with the whole history.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np


def priority(memory: dict, now: dt.datetime | None = None) -> float:
    now = now or dt.datetime.now(dt.UTC)
    try:
        created = dt.datetime.fromisoformat(memory["created_at"])
        age_days = max(0.0, (now - created).total_seconds() / 86400)
    except (KeyError, TypeError, ValueError):
        age_days = 0.0
    recall = memory.get("last_recall")
    deficit = 0.5 if recall is None else 1.0 - float(recall)
    importance = float(memory.get("importance") or 0.5)
    age = min(1.0, age_days / 30.0)
    replayed = int(memory.get("times_replayed") or 0)
    return (0.25 * importance + 0.6 * deficit + 0.15 * age + 0.05) / (1.0 + 0.2 * replayed)


def budget(most: int, per_new: float, new: int) -> int:
    """How many consolidated memories a sleep over `new` memories rehearses: `per_new` for each new one
    (rounded up), never more than `most`; `per_new` 0 is always `most`. Old memories are replayed in
    proportion to what is learned, so a 2-memory sleep is not mostly replay."""
    return most if per_new <= 0 else min(most, math.ceil(per_new * new))


def sample(memories: list[dict], budget: int, seed: int = 0) -> list[dict]:
    """Up to `budget` memories, drawn without replacement with probability proportional to priority."""
    if budget <= 0 or not memories:
        return []
    if len(memories) <= budget:
        return list(memories)
    weights = np.array([priority(m) for m in memories], dtype=np.float64)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(memories), size=budget, replace=False, p=weights / weights.sum())
    return [memories[i] for i in sorted(picked)]
