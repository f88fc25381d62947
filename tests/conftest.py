"""Shared fixtures. Every test runs with its own state directory (SLEEPTRAIN_HOME
points at a tmp dir) and without any SLEEPTRAIN_* setting from the caller's
environment, except the shared model cache."""

from __future__ import annotations

import logging
import os

import pytest

from memory.store import Store
from sleeptrain_agent.config import load_settings, model_dir


class _SnapshotLoggers(dict):
    """`logging`'s table of loggers, whose `values()` is a copy taken at once.

    pytest's log capture walks `loggerDict.values()` as each test phase starts, without logging's lock;
    a daemon thread a fixture started (the hippocampus loading spaCy, the standby trainer's start)
    imports modules that add loggers meanwhile, and the phase failed with "dictionary changed size
    during iteration" (CI, test_api.py). Copying a dict's values is one C call: no thread runs within."""

    def values(self):
        return list(super().values())


def pytest_configure(config):
    manager = logging.Logger.manager
    logging._acquireLock()
    try:
        manager.loggerDict = _SnapshotLoggers(manager.loggerDict)
    finally:
        logging._releaseLock()


def pytest_addoption(parser):
    parser.addoption("--sleep-seed", default=None, help="sleep.seed for the real-stack learning tests that take it "
                     "(tests/test_natural.py), to measure them at other seeds")  # fmt: skip


@pytest.fixture(scope="session")
def sleep_seed(request) -> dict[str, str]:
    """`start_daemon` overrides for `--sleep-seed` (none without it: the configured seed)."""
    seed = request.config.getoption("--sleep-seed")
    return {"SLEEPTRAIN_SLEEP__SEED": str(seed)} if seed is not None else {}


@pytest.fixture(autouse=True)
def env_setup(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("SLEEPTRAIN_") and key != "SLEEPTRAIN_MODEL_DIR":
            monkeypatch.delenv(key)
    state = tmp_path / "state"
    monkeypatch.setenv("SLEEPTRAIN_HOME", str(state))
    return state


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "test.db")
    yield s
    s.close()


@pytest.fixture(scope="session")
def model_path():
    """The real SmolLM2 safetensors copy in the shared cache (`make install` fetches it)."""
    from sleeptrain_agent import models

    settings = load_settings()
    path = model_dir(settings)
    if not models.is_fetched(path):
        models.fetch(settings)
    return path
