"""The daemon: the store, the backend, the agent and the hippocampus queue, wired together.

`Daemon.start()` returns at once and brings the backend up in a thread (vLLM
takes about 50 s on the CPU), so the HTTP API can answer `/health` with
`"starting"` meanwhile; chat requests wait for the backend up to
`serve.request_timeout_s`. Once the backend is up, each user's active adapter
recorded in the store is assigned to them (loaded on their first request); a
user whose adapter cannot be served is answered by the base model and
`/health` says why.

`daemon.json` in the state directory records the pid, host and port of the
running daemon, for `sleeptrain daemon status|stop` and the terminal chat. It
is written once the HTTP server is bound and removed on a clean stop.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from memory.embeddings import Embedder
from memory.extractor import ExtractorJudge
from memory.hippocampus import Hippocampus, HippocampusSettings, HippocampusWorker
from memory.judges import GeminiJudge, LLMJudge
from memory.store import Store
from sleeptrain_agent import models
from sleeptrain_agent.agent import Agent
from sleeptrain_agent.backends import Backend, GenerationParams, create_backend
from sleeptrain_agent.config import Settings, gemini_api_key
from sleeptrain_agent.dtypes import resolve
from sleeptrain_agent.errors import AdapterError, BackendError, ConfigError, InvalidInput, SleepTrainError
from sleeptrain_agent.forget import forget, forget_user
from sleeptrain_agent.routing import make_router
from sleeptrain_agent.sleep.cycle import SleepCycle
from sleeptrain_agent.sleep.scheduler import SleepScheduler

log = logging.getLogger(__name__)
DAEMON_FILE = "daemon.json"


def make_hippocampus(settings: Settings, store: Store, backend: Backend) -> Hippocampus:
    """The hippocampus with the configured judge (`auto`: Gemini when a key is set, else the extractor)."""
    cfg = settings.hippocampus
    embedder = Embedder()
    extractor = ExtractorJudge(embed=embedder.encode)
    key = gemini_api_key(settings)
    kind = cfg.judge if cfg.judge != "auto" else ("gemini" if key else "extractor")
    if kind == "gemini":
        if not key:
            raise ConfigError("hippocampus.judge is gemini but no API key is set (GEMINI_API_KEY)")
        judge = GeminiJudge(store, key, model=cfg.gemini_model, fallback=extractor, base_url=cfg.gemini_base_url)
    elif kind == "llm":

        def generate_json(prompt: str, schema: dict) -> str:
            params = GenerationParams(max_tokens=512, temperature=0.0, json_schema=schema)
            return backend.generate([{"role": "user", "content": prompt}], params).text()

        judge = LLMJudge(generate_json)
    else:  # extractor (its old name: rules)
        judge = extractor
    hs = HippocampusSettings(
        verify=cfg.verify, min_importance=cfg.min_importance, duplicate_similarity=cfg.duplicate_similarity, related_k=cfg.related_k,
        max_attempts=cfg.max_attempts, retry_delay_s=cfg.retry_delay_s,
    )  # fmt: skip
    return Hippocampus(store, judge, embedder, hs)


class Daemon:
    def __init__(self, settings: Settings, state_dir: Path, backend: Backend | None = None,
                 on_sleep_step: Callable[[str], None] | None = None):  # fmt: skip
        self.settings = settings
        self.state_dir = state_dir
        self.log_dir = state_dir / "logs"
        self.store = Store(
            state_dir / settings.store.filename,
            busy_timeout_ms=settings.store.busy_timeout_ms,
            max_text_bytes=settings.store.max_text_bytes,
        )
        self.model_path = models.require(settings)
        self.backend = backend or create_backend(settings, self.model_path, self.log_dir)
        if self.backend.name == "vllm":
            import torch

            torch.set_num_threads(1)  # the embedder must not fight vLLM's threads for the cores
        self.hippocampus = HippocampusWorker(make_hippocampus(settings, self.store, self.backend), busy=self.backend.busy)
        on_turn = self.hippocampus.submit if settings.hippocampus.enabled else None
        embedder = self.hippocampus.hippocampus.embedder
        self.router = make_router(settings, embedder)  # one key cache for the chat and the gate
        self.agent = Agent(settings, self.store, self.backend, self.model_path, on_turn, self.router)
        self.sleep = SleepCycle(settings, self.store, self.backend, self.model_path, state_dir, embedder, self.router,
                                on_step=on_sleep_step)  # fmt: skip
        self.scheduler = SleepScheduler(settings.sleep, self.start_sleep, self.store, self._last_activity)
        self.error: str | None = None
        self.adapter_error: str | None = None
        self.started_at = time.time()
        self._starter: threading.Thread | None = None
        self._swap_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------

    def start(self, wait: bool = False, schedule: bool = True) -> None:
        """Recover from a crash, start the hippocampus, and bring the backend up (then load the active
        adapter and start the scheduler) on a thread; with `wait`, return only once the backend is up
        (`BackendError` if it failed). `schedule=False`: no scheduled sleeps (a one-off CLI sleep)."""
        self.sleep.recover()
        if not schedule:  # a one-off sleep comes next: its trainer imports while the backend starts
            self.sleep.prepare_trainer()
        self._starter = threading.Thread(target=self._start_backend, args=(schedule,), name="backend-start",
                                         daemon=True)  # fmt: skip
        self._starter.start()
        if self.settings.hippocampus.enabled:
            self.hippocampus.start()
        if wait:
            self._starter.join()
            if self.error:
                raise BackendError(self.error)

    def _start_backend(self, schedule: bool = True) -> None:
        try:
            self.backend.start()
        except SleepTrainError as e:
            self.error = str(e)
            log.error("backend failed to start: %s", e)
            return
        if schedule:
            self.sleep.prepare_trainer()  # after the backend's start, not competing with it for the CPU
        errors = []
        for active in self.store.active_adapters():
            try:
                self.backend.swap(active["version"], Path(active["path"]), user=active["user"], lazy=True)
            except (AdapterError, BackendError) as e:
                errors.append(f"could not load the adapter {active['version']} of user {active['user']!r}: {e}")
                log.error("%s; the base model answers them", errors[-1])
        self.adapter_error = "; ".join(errors) or None
        for active in self.store.active_adapters():  # embeds each user's memories' keys once
            self.agent.route([{"role": "user", "content": "warm up"}], active["user"])
        if schedule:
            self.scheduler.start()  # only once the backend can train and validate

    def stop(self) -> None:
        self.scheduler.stop()
        self.sleep.stop()
        self.hippocampus.stop()
        self.backend.stop()
        self.store.close()

    # -- state -------------------------------------------------------------------

    def health(self) -> dict:
        healthy = self.backend.healthy()
        status = "ok" if healthy else ("error" if self.error else "starting")
        if not healthy and self._starter is not None and not self._starter.is_alive() and not self.error:
            status = "unavailable"  # was up, is down (a crashed child being restarted)
        return {
            "status": status,
            "adapters": self.backend.serving,  # user -> the version answering them
            "sleeping": self.sleep.running,
            "sleep": {"id": self.sleep.current, **self.sleep.progress} if self.sleep.running else None,
            "hippocampus_queue": self.hippocampus.depth(),
            "hippocampus_judge": self.hippocampus.hippocampus.judge.name if self.settings.hippocampus.enabled else None,
            "backend": self.backend.status(),
            "model": self.settings.model.name,
            "dtype": {"serving": getattr(self.backend, "dtype", None), "training": resolve(self.settings.model.dtype)},
            "error": self.error,
            "adapter_error": self.adapter_error,
            "uptime_s": round(time.time() - self.started_at, 1),
        }

    def start_sleep(self, trigger: str = "manual", overrides: dict | None = None, user: str | None = None) -> dict:
        """Start sleeping now: `user`, or every user with work in turn (SleepBusy if a sleep runs,
        NothingToLearn if nothing is pending)."""
        return self.sleep.start(trigger, overrides, user)

    def _last_activity(self):
        import datetime as dt

        turns = self.store.turns(limit=1)
        return dt.datetime.fromisoformat(turns[-1]["created_at"]) if turns else None

    def forget(self, memory_id: int) -> dict:
        """Erase a memory from the store and the state directory (`sleeptrain_agent/forget.py`)."""
        return forget(self.store, self.state_dir, memory_id)

    def forget_user(self, user: str) -> dict:
        """Delete a user entirely (`sleeptrain_agent/forget.py`); their adapter is no longer served."""
        with self._swap_lock:
            result = forget_user(self.store, self.state_dir, user)
            self.backend.swap(None, None, user=user)
        return result

    def activate(self, version: str | None, user: str | None = None) -> dict:
        """Roll a user's lineage forward or back to a recorded version (None, with `user`: the base model
        answers them). A version names its user; `user`, when given, must be it."""
        with self._swap_lock:
            path = None
            if version is not None:
                row = self.store.servable_adapter(version, user)
                user, path = row["user"], Path(row["path"])
            elif user is None:
                raise InvalidInput("name the user who is to be answered by the base model")
            seconds = self.backend.swap(version, path, user=user)
            self.store.activate_adapter(version, user=user)
        return {"adapter": version, "user": user, "swap_seconds": round(seconds, 4)}


def write_daemon_file(state_dir: Path, host: str, port: int) -> Path:
    path = state_dir / DAEMON_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "host": host, "port": port, "started_at": time.time()}))
    tmp.replace(path)
    return path


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal test is all there is
    return state not in ("Z", "X")


def read_daemon_file(state_dir: Path) -> dict | None:
    """The running daemon's pid/host/port, or None if none is recorded or its process is gone (a stale
    file left by a crash is removed)."""
    path = state_dir / DAEMON_FILE
    try:
        info = json.loads(path.read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not pid_alive(pid):
        path.unlink(missing_ok=True)
        return None
    return info


def remove_daemon_file(state_dir: Path) -> None:
    path = state_dir / DAEMON_FILE
    info = None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if info.get("pid") == os.getpid():
        path.unlink(missing_ok=True)
