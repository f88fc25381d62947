"""Exception classes of the daemon, on top of those of the memory library.

The library raises these; the CLI turns them into a one-line message and an exit
code (`cli.main`), and the HTTP API maps each class to a status code in one place.
"""

from memory.errors import InvalidInput, NotFound, SleepTrainError

__all__ = ["SleepTrainError", "InvalidInput", "NotFound", "ConfigError", "ModelError"]


class ConfigError(SleepTrainError):
    """The configuration (YAML file, `SLEEPTRAIN_*` environment or flags) is invalid."""


class ModelError(SleepTrainError):
    """The model could not be fetched, found or loaded."""
