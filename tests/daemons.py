"""Real daemons for real-stack tests: `sleeptrain daemon run` as a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from memory.store import Store
from sleeptrain_agent.backends.vllm import free_port


@dataclass
class Running:
    backend: str
    url: str
    state: Path
    proc: subprocess.Popen
    log: Path

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, timeout=300)

    def health(self) -> dict:
        try:
            return httpx.get(self.url + "/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return {"status": "unreachable"}

    def wait_ok(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"daemon exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            health = self.health()
            if health.get("status") == "ok":
                return health
            time.sleep(0.5)
        pytest.fail(f"daemon not healthy after {timeout} s: {self.health()}\n{self.log.read_text()[-3000:]}")

    def store(self) -> Store:
        return Store(self.state / "sleeptrain.db")

    def wait_hippocampus(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.health().get("hippocampus_queue", 1) != 0:
            if time.monotonic() > deadline:
                pytest.fail(f"hippocampus queue not empty after {timeout} s: {self.health()}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_daemon(state: Path, backend: str, pause_at: str | None = None, port: int | None = None,
                 **env_overrides: str) -> Running:
    """Start `sleeptrain daemon run` as a child process and wait until /health is ok. `pause_at`: its
    sleeps pause at that step (`tests/paused_daemon.py`), so a test can kill it there."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLEEPTRAIN_") or k == "SLEEPTRAIN_MODEL_DIR"}
    env.update(env_overrides)
    state.mkdir(parents=True, exist_ok=True)
    log = state / "daemon-test.out"
    proc = subprocess.Popen(
        [sys.executable, "-m", *(("tests.paused_daemon", pause_at) if pause_at else ("sleeptrain_agent",)),
         "daemon", "run", "--state-dir", str(state), "--port", str(port), "--backend", backend],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    running = Running(backend, f"http://127.0.0.1:{port}", state, proc, log)
    running.wait_ok(420)
    return running
