"""Exception classes of the daemon, on top of those of the memory library.

The library raises these; the CLI turns them into a one-line message and an exit
code (`cli.main`), and the HTTP API maps each class to a status code in one place.
"""

from memory.errors import InvalidInput, NotFound, SleepTrainError, TooLarge

__all__ = [
    "SleepTrainError", "InvalidInput", "TooLarge", "NotFound", "ConfigError", "ModelError", "BackendError", "AdapterError", "AuthError",
]


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
