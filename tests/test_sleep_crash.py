"""Crash safety of the sleep on the real stack: kill -9 the daemon during training and
during promotion, restart, and check the store, the active adapter and the next sleep.
(A module of its own so that no other daemon runs beside these.)

The daemons serve with the embedded backend: what a kill must not break is the store, the adapter
directories and the trainer child, the same for both backends; a vLLM server killed with its daemon,
and the instant restart beside it, are `test_api_hostile`'s and `test_serving`'s (three vLLM starts
and vLLM's gate here were half of this test's four minutes)."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.daemons import start_daemon
from tests.test_sleep import FACTS, sleep, teach, wait_step

pytestmark = [pytest.mark.real, pytest.mark.slow]


# Crash safety is about what survives a kill, not about learning: these sleeps are short (two epochs,
# no anchor conversations, short probe answers) and their gate is open, so that every one that is not
# killed is promoted.
QUICK = {"min_epochs": 2, "max_epochs": 2, "anchors": False, "probe_max_tokens": 12,
         "min_recall": 0.0, "min_locality": 0.0, "min_adapter_locality": 0.0}  # fmt: skip


def test_kill_during_training_and_promotion_then_recover(tmp_path, model_path):
    state = tmp_path / "state"
    daemon = start_daemon(state, "embedded")
    teach(daemon, [f for f, _, _ in FACTS[:3]])
    r = httpx.post(daemon.url + "/v1/sleep", json={"overrides": QUICK}, timeout=60)
    first = r.json()["id"]
    wait_step(daemon, "train")
    os.kill(daemon.proc.pid, signal.SIGKILL)  # kill -9 mid-training
    daemon.proc.wait()
    time.sleep(1)

    daemon = start_daemon(state, "embedded", pause_at="promote")
    store = daemon.store()
    assert store.integrity_check() == "ok"
    assert store.sleep(first)["status"] == "failed" and "interrupted" in store.sleep(first)["error"]
    assert len(store.memories(status="pending")) == 3 and store.active_adapter("default") is None
    r = httpx.post(daemon.url + "/v1/sleep", json={"overrides": QUICK}, timeout=60)
    second = r.json()["id"]
    wait_step(daemon, "promote", timeout=900)  # the adapter dir is in place; nothing recorded yet
    os.kill(daemon.proc.pid, signal.SIGKILL)  # kill -9 mid-promotion
    daemon.proc.wait()
    time.sleep(1)

    daemon = start_daemon(state, "embedded")
    try:
        assert store.integrity_check() == "ok"
        assert store.sleep(second)["status"] == "failed"
        assert store.active_adapter("default") is None and daemon.health()["adapters"] == {}  # the last promoted: none
        assert len(store.memories(status="pending")) == 3
        assert not [p for p in (state / "adapters").iterdir() if p.name.startswith("v")]  # set aside
        row = sleep(daemon, QUICK)  # the next sleep succeeds
        assert row["status"] == "promoted", row
        assert daemon.health()["adapters"]["default"] == row["adapter"] == store.active_adapter("default")["version"]
    finally:
        daemon.stop()
        store.close()
