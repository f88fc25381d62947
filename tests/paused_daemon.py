"""`sleeptrain ...` whose daemon's sleeps pause for 120 s at one step, for the crash tests:

    python -m tests.paused_daemon STEP daemon run --state-dir DIR ...

The pause is the sleep cycle's `on_step` hook, passed in through `Daemon(on_sleep_step=...)`."""

from __future__ import annotations

import functools
import logging
import sys
import time

from sleeptrain_agent import daemon
from sleeptrain_agent.cli import main

STEP = sys.argv.pop(1)


def pause(step: str) -> None:
    if step == STEP:
        logging.getLogger(__name__).warning("test hook: the sleep pauses 120 s at %s", step)
        time.sleep(120)


_init = daemon.Daemon.__init__


@functools.wraps(_init)
def _with_pause(self, *args, **kwargs):
    kwargs.setdefault("on_sleep_step", pause)
    _init(self, *args, **kwargs)


daemon.Daemon.__init__ = _with_pause
main()
