"""Sleep scheduling with the real APScheduler; the sleep itself is a stand-in with the
cycle's one-at-a-time semantics (the real cycle is in test_sleep.py)."""

from __future__ import annotations

import datetime as dt
import threading
import time

from memory.store import Store
from sleeptrain_agent.config import SleepConfig
from sleeptrain_agent.sleep.cycle import SleepBusy
from sleeptrain_agent.sleep.scheduler import SleepScheduler


class Cycle:
    """Starts a 'sleep' that lasts `seconds`; refuses a second one like SleepCycle does."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.lock = threading.Lock()
        self.started: list[str] = []

    def start(self, trigger: str) -> dict:
        if not self.lock.acquire(blocking=False):
            raise SleepBusy("a sleep is running")
        self.started.append(trigger)
        threading.Timer(self.seconds, self.lock.release).start()
        return {"id": len(self.started)}


def test_interval_trigger_fires_and_never_overlaps(store):
    cycle = Cycle(seconds=2.5)
    scheduler = SleepScheduler(SleepConfig(cron=None, interval_minutes=1 / 60), cycle.start, store, lambda: None)
    scheduler.start()
    time.sleep(4.6)
    scheduler.stop()
    assert cycle.started[:1] == ["interval"] and 1 <= len(cycle.started) <= 2
    assert any(outcome.startswith("skipped") for _, outcome in scheduler.fired)  # fired during a sleep: skipped


def test_pending_threshold_and_idle(store):
    conv = store.start_conversation("alice")
    store.log_turn(conv, "user", "hi")
    for i in range(3):
        store.add_memory(user="alice", subject="user", relation=f"r{i}", value="v", text="t")
    cycle = Cycle(seconds=0.1)
    SleepScheduler(SleepConfig(cron=None, pending_threshold=3), cycle.start, store, lambda: None).check()
    assert cycle.started == ["pending"]
    time.sleep(0.2)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    SleepScheduler(SleepConfig(cron=None, idle_minutes=10), cycle.start, store, lambda: long_ago).check()
    assert cycle.started == ["pending", "idle"]


def test_missed_nightly_sleep_runs_after_startup(tmp_path):
    store = Store(tmp_path / "s.db")
    cfg = SleepConfig(cron="0 3 * * *")
    scheduler = SleepScheduler(cfg, Cycle(0.1).start, store, lambda: None)
    now = dt.datetime.now(dt.UTC).astimezone()
    assert not scheduler.missed(now)  # nothing pending
    store.add_memory(user="a", subject="user", relation="r", value="v", text="t")
    with store.transaction() as db:  # the memory has waited since two days ago
        db.execute("update memories set created_at = ?", [(now - dt.timedelta(days=2)).isoformat()])
    assert scheduler.missed(now)
    store.start_sleep("cron")  # a sleep started after the last 03:00: nothing missed
    assert not scheduler.missed(now)
    cycle = Cycle(0.1)
    with store.transaction() as db:
        db.execute("update sleeps set started_at = ?", [(now - dt.timedelta(days=3)).isoformat()])
    runner = SleepScheduler(cfg, cycle.start, store, lambda: None)
    runner.start()
    time.sleep(1.0)
    runner.stop()
    assert cycle.started == ["missed"]
