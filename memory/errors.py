"""Exception classes of the memory library.

`memory/` is the lower layer (it never imports `sleeptrain_agent`), so the base
class of every SleepTrain error lives here; `sleeptrain_agent.errors` re-exports
these and adds the daemon's own.
"""


class SleepTrainError(Exception):
    """Base class for every error SleepTrain raises on purpose."""


class InvalidInput(SleepTrainError):
    """Input that cannot be stored or processed as given (bad text, bad JSON)."""


class NotFound(SleepTrainError):
    """A memory, turn, conversation, sleep or adapter that does not exist."""


class TooLarge(InvalidInput):
    """Input over a configured size limit (a turn over `store.max_text_bytes`, a huge request)."""


class DreamError(InvalidInput):
    """The dream data failed validation; nothing is trained on it."""


class JudgeError(SleepTrainError):
    """A judge's answer did not fit the verdict schema, or the judge could not be reached."""
