"""When the daemon sleeps: APScheduler 3.x triggers around one `SleepCycle`.

Triggers (all optional, from `sleep.*`): `cron` (default nightly 03:00),
`interval_minutes`, `idle_minutes` (no turn for that long and memories
waiting) and `pending_threshold` (that many memories pending); the last two
are checked every 30 s. Jobs coalesce and never overlap (`max_instances=1`),
and the cycle itself refuses a second sleep (`SleepBusy`), so a trigger that
fires during a sleep is skipped and logged, never queued behind it.

Missed sleeps: the job store is in memory, so APScheduler cannot know about a
night the daemon was down. With `run_missed`, start-up compares the last cron
fire time before now with the last sleep in the store and, if that night's
sleep never started and memories are pending, sleeps right away.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from memory.store import Store
from sleeptrain_agent.config import SleepConfig
from sleeptrain_agent.errors import ConfigError, NothingToLearn, SleepBusy

log = logging.getLogger(__name__)


class SleepScheduler:
    def __init__(self, cfg: SleepConfig, start_sleep: Callable[[str], dict], store: Store,
                 last_activity: Callable[[], dt.datetime | None]):  # fmt: skip
        self.cfg = cfg
        self.start_sleep = start_sleep
        self.store = store
        self.last_activity = last_activity
        self.scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}
        )
        self.fired: list[tuple[str, str]] = []  # (trigger, outcome), for status and tests
        self._lifecycle = threading.Lock()  # start() runs on the backend-start thread, stop() on another
        self._stopped = False
        self.cron = None
        if cfg.cron:
            try:
                self.cron = CronTrigger.from_crontab(cfg.cron)
            except ValueError as e:
                raise ConfigError(f"sleep.cron {cfg.cron!r} is not a crontab expression: {e}") from None

    def start(self) -> None:
        with self._lifecycle:
            if not self._stopped:
                self._start()

    def _start(self) -> None:
        if self.cron is not None:
            self.scheduler.add_job(self.fire, self.cron, args=["cron"], id="cron")
        if self.cfg.interval_minutes:
            self.scheduler.add_job(self.fire, IntervalTrigger(minutes=self.cfg.interval_minutes), args=["interval"],
                                   id="interval")  # fmt: skip
        if self.cfg.idle_minutes or self.cfg.pending_threshold:
            self.scheduler.add_job(self.check, IntervalTrigger(seconds=30), id="conditions")
        self.scheduler.start()
        if self.cfg.run_missed and self.missed():
            self.scheduler.add_job(self.fire, args=["missed"], id="missed")  # runs now, on the scheduler's thread

    def stop(self) -> None:
        # under the lock: a stop during start() would otherwise join APScheduler's thread before it started
        with self._lifecycle:
            self._stopped = True
            if self.scheduler.running:
                self.scheduler.shutdown(wait=False)

    def jobs(self) -> list[dict]:
        return [{"id": j.id, "next_run": j.next_run_time.isoformat() if j.next_run_time else None}
                for j in self.scheduler.get_jobs()]  # fmt: skip

    def fire(self, trigger: str) -> None:
        try:
            row = self.start_sleep(trigger)
            outcome = f"started sleep {row['id']}"
        except SleepBusy as e:
            outcome = f"skipped: {e}"
        except NothingToLearn:
            outcome = "skipped: no pending memories"
        self.fired.append((trigger, outcome))
        log.info("sleep trigger %s: %s", trigger, outcome)

    def check(self) -> None:
        pending = len(self.store.memories(status="pending"))
        if not pending:
            return
        if self.cfg.pending_threshold and pending >= self.cfg.pending_threshold:
            self.fire("pending")
            return
        last = self.last_activity()
        if self.cfg.idle_minutes and last is not None:
            idle = (dt.datetime.now(dt.UTC) - last).total_seconds() / 60
            if idle >= self.cfg.idle_minutes:
                self.fire("idle")

    def missed(self, now: dt.datetime | None = None) -> bool:
        """Did the last scheduled (cron) sleep before `now` not happen, with memories that were pending then?"""
        pending = self.store.memories(status="pending")
        if self.cron is None or not pending:
            return False
        now = now or dt.datetime.now(dt.UTC).astimezone()
        last_fire, t = None, self.cron.get_next_fire_time(None, now - dt.timedelta(days=8))
        while t is not None and t <= now:
            last_fire = t
            t = self.cron.get_next_fire_time(t, t + dt.timedelta(seconds=1))
        if last_fire is None:
            return False
        if not any(dt.datetime.fromisoformat(m["created_at"]) < last_fire for m in pending):
            return False  # everything pending arrived after that night
        sleeps = self.store.sleeps(limit=1)
        return not sleeps or dt.datetime.fromisoformat(sleeps[0]["started_at"]) < last_fire
