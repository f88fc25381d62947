"""Child processes (vLLM, the trainer) that must not outlive the daemon."""

from __future__ import annotations

import ctypes
import os
import signal


def die_with_parent() -> None:
    """Between fork and exec: own session, and SIGTERM when the forking thread's process dies."""
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
