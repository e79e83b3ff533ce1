"""What the runtime hands a service (:class:`Batch`) and takes back (:class:`Output`): no Kafka types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Batch", "Output", "source_name"]


def source_name(topic: str, partition: int) -> str:
    """A record's source, ``topic/partition``: the unit of offsets, checkpoints and watermarks."""
    return f"{topic}/{partition}"


@dataclass(frozen=True)
class Batch:
    """Consecutive records of one input topic, as plain columns.

    ``headers`` and ``timestamps_ms`` (the Kafka record timestamps) are there
    for services that read them (the DLQ); ``keys`` for those that re-key.

    Examples
    --------
    >>> b = Batch("rig.actuals", [b"x"], ["rig.actuals/0"], [7], [None], [0], [[]])
    >>> len(b), b.sources[0]
    (1, 'rig.actuals/0')
    """

    topic: str
    values: Sequence[bytes | None]
    sources: Sequence[str]
    offsets: Sequence[int]
    keys: Sequence[bytes | None]
    timestamps_ms: Sequence[int]
    headers: Sequence[Sequence[tuple[str, bytes | None]]]

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Output:
    """One record to produce: topic, value, key, headers, timestamp (0: now)."""

    topic: str
    value: bytes
    key: str | bytes | None = None
    headers: list[tuple[str, str | bytes | None]] = field(default_factory=list)
    timestamp_ms: int = 0
