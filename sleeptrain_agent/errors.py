"""Every exception class of SleepTrain, on top of those of the memory library.

The library raises these; the CLI turns them into a one-line message and an exit
code (`cli._Group`), and the HTTP API maps each class to a status code in one
place (`api.STATUS`).
"""

from memory.errors import DreamError, InvalidInput, JudgeError, NotFound, SleepTrainError, TooLarge

__all__ = [
    "SleepTrainError", "InvalidInput", "TooLarge", "NotFound", "DreamError", "JudgeError", "ConfigError",
    "ModelError", "BackendError", "AdapterError", "AuthError", "SleepBusy", "NothingToLearn", "SleepFailed",
    "EvalError", "DaemonError",
]  # fmt: skip


class ConfigError(SleepTrainError):
    """The configuration (YAML file, `SLEEPTRAIN_*` environment or flags) is invalid."""


class ModelError(SleepTrainError):
    """The model could not be fetched, found or loaded."""


class BackendError(SleepTrainError):
    """The inference backend is not running, failed to start, or failed a request."""


class AdapterError(SleepTrainError):
    """An adapter directory is missing, corrupt, or cannot be served."""


class AuthError(SleepTrainError):
    """A request to a non-loopback daemon came without the right bearer token."""


class SleepBusy(SleepTrainError):
    """A sleep is already running; only one runs at a time."""


class NothingToLearn(SleepTrainError):
    """No pending memories: there is nothing for a sleep to learn."""


class SleepFailed(SleepTrainError):
    """A step of the sleep failed (the active adapter is unchanged)."""


class EvalError(SleepTrainError):
    """The Sleep Benchmark could not run (bad people file, a step that failed)."""


class DaemonError(SleepTrainError):
    """The daemon could not be reached, or answered a CLI request with an error."""
