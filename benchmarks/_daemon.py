"""Start a real `sleeptrain daemon` for a benchmark and wait until it is healthy."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sleeptrain_agent.backends.vllm import free_port


@contextlib.contextmanager
def running_daemon(state: Path, backend: str = "vllm", **env_overrides: str):
    """Yield (url, health) of a daemon on a free port; stop it afterwards. `health["ready_s"]`: seconds
    from launch until /health said ok."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLEEPTRAIN_") or k == "SLEEPTRAIN_MODEL_DIR"}
    env.update(env_overrides)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sleeptrain_agent", "daemon", "run", "--state-dir", str(state), "--port", str(port),
         "--backend", backend],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        health: dict = {}
        while health.get("status") != "ok":
            if proc.poll() is not None or time.monotonic() - t0 > 600:
                sys.exit(f"daemon did not start; see {state / 'logs'}")
            time.sleep(0.5)
            with contextlib.suppress(httpx.HTTPError, ValueError):
                health = httpx.get(url + "/health", timeout=5).json()
        ready_s = time.monotonic() - t0
        print(f"daemon ready in {ready_s:.1f} s ({backend} backend)")
        yield url, {**health, "ready_s": ready_s}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]
