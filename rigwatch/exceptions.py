"""The exceptions rigwatch raises; every one derives from :class:`RigwatchError`."""

from __future__ import annotations

__all__ = [
    "SCORING_FAILED",
    "ConfigError",
    "DataError",
    "DecodeError",
    "DeliveryError",
    "ModelError",
    "ProcessError",
    "RigwatchError",
    "StackError",
]

#: DLQ ``error`` reason of a record the scorer could not score through no fault of
#: its data (the model raised): a *system* error. Every other reason is a data error.
SCORING_FAILED = "scoring_failed"


class RigwatchError(Exception):
    """Root of every error rigwatch raises on purpose."""


class ConfigError(RigwatchError):
    """A setting is missing or has a value that cannot work."""


class DataError(RigwatchError):
    """Input data cannot be found, read or trusted (wrong shape, checksum, columns)."""


class ModelError(RigwatchError):
    """A model package is missing, incomplete or inconsistent."""


class StackError(RigwatchError):
    """The local broker or Redis could not be started, reached or stopped."""


class ProcessError(RigwatchError):
    """A child process (a service run by a benchmark or a test) exited when or how it should not have."""


class DeliveryError(RigwatchError):
    """Kafka did not acknowledge a produced record; the batch must not be committed."""


class DecodeError(RigwatchError):
    """Bytes that are not a valid record of the expected schema.

    Parameters
    ----------
    reason
        A short machine-readable reason (``not_single_object``, ``unknown_schema``,
        ``bad_body``, ``missing_field``); it becomes the DLQ ``error`` header.
    detail
        What was wrong, naming the field and the value where there is one.

    Examples
    --------
    >>> err = DecodeError("unknown_schema", "fingerprint 0x01 is not a known writer schema")
    >>> err.reason
    'unknown_schema'
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[DecodeError], tuple[str, str]]:
        # Two constructor arguments: the default pickling would pass only the message.
        return (type(self), (self.reason, self.detail))
