"""pytest's log capture while daemon threads create loggers (the conftest's `_SnapshotLoggers`)."""

from __future__ import annotations

import logging
import sys
import threading

from _pytest.logging import LogCaptureHandler, catching_logs


def test_log_capture_starts_while_another_thread_adds_loggers():
    def add_loggers():
        for n in range(20_000):
            logging.getLogger(f"sleeptrain.test.many.{n}")

    thread = threading.Thread(target=add_loggers, daemon=True)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often, as on a busy machine
    thread.start()
    try:
        while thread.is_alive():  # what each test phase does as it starts
            with catching_logs(LogCaptureHandler(), level=logging.INFO):
                pass
    finally:
        thread.join()
        sys.setswitchinterval(interval)
        manager = logging.Logger.manager
        for name in [n for n in manager.loggerDict if n.startswith("sleeptrain.test.many")]:
            del manager.loggerDict[name]
