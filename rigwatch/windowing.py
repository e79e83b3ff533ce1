"""Window arithmetic and the records a windowed handler makes: pure, no I/O.

Every windowed service (drift, latency, accuracy) counts into tumbling windows
per *subject*: a model version, or a rig's segment ``rig:<rig_id>``. A handler
turns a batch into :class:`Updates`; the runtime accumulates them in process
(:class:`Pending`) and checkpoints them to the shared Redis windows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rigwatch.codec import Codec
from rigwatch.exceptions import DecodeError

__all__ = [
    "SEGMENT_PREFIX",
    "Pending",
    "Update",
    "Updates",
    "decode_valid",
    "is_segment",
    "max_event_per_source",
    "metric_window",
    "namespace",
    "rig_of",
    "segment",
    "window_start",
]

#: Subjects that start with this are a rig's segment; any other subject is a model version.
SEGMENT_PREFIX = "rig:"


def segment(rig_id: str) -> str:
    """The subject of a rig's segment windows.

    Examples
    --------
    >>> segment("rig-003"), rig_of("rig:rig-003"), is_segment("9f2c1a")
    ('rig:rig-003', 'rig-003', False)
    """
    return f"{SEGMENT_PREFIX}{rig_id}"


def is_segment(subject: str) -> bool:
    """Whether *subject* is a rig segment (not a model version)."""
    return subject.startswith(SEGMENT_PREFIX)


def rig_of(subject: str) -> str:
    """The rig id of a segment subject."""
    return subject.removeprefix(SEGMENT_PREFIX)


def window_start(t_ms: Any, size_ms: int) -> Any:
    """Start of the tumbling window of *size_ms* that holds *t_ms* (an int, or a numpy array of them).

    Examples
    --------
    >>> window_start(61_500, 30_000)
    60000
    """
    return t_ms - t_ms % size_ms


def namespace(group: str, topic_prefix: str) -> str:
    """The Redis key prefix of one consumer group's state on one deployment's topics.

    Examples
    --------
    >>> namespace("rigwatch-drift", "rig.")
    'rigwatch:rigwatch-drift:rig.'
    """
    return f"rigwatch:{group}:{topic_prefix}"


@dataclass(frozen=True)
class Update:
    """What a batch adds to one window of one subject.

    ``ints`` and ``floats`` are added to the window's fields, ``maxes`` raise a
    field to the value when it is larger, ``items`` are appended to the
    window's list (for statistics that need the values themselves).
    """

    subject: str
    start_ms: int
    records: int
    ints: Mapping[str, int] = field(default_factory=dict)
    floats: Mapping[str, float] = field(default_factory=dict)
    maxes: Mapping[str, float] = field(default_factory=dict)
    items: Sequence[str] = ()


@dataclass
class Updates:
    """What a handler makes of one batch.

    ``updates`` go to the windows, ``max_event_ms`` is the largest event time
    per source (the watermark), ``undecodable`` counts records that could not
    be used, ``extension`` holds named argument lists for the store's Lua
    extension (the accuracy join); lists of the same name are concatenated
    when batches are accumulated.
    """

    updates: list[Update]
    max_event_ms: dict[str, int]
    undecodable: int = 0
    extension: dict[str, list[Any]] = field(default_factory=dict)


class Pending:
    """Updates accumulated since the last checkpoint, merged per window.

    Examples
    --------
    >>> p = Pending()
    >>> p.add(Updates([Update("v1", 0, 2, {"n": 2})], {"t/0": 5}), records=2)
    >>> p.add(Updates([Update("v1", 0, 1, {"n": 1}, maxes={"m": 3.0})], {"t/0": 9}, 1), records=1)
    >>> [(u.subject, u.records, dict(u.ints), dict(u.maxes)) for u in p.updates()], p.max_event_ms
    ([('v1', 3, {'n': 3}, {'m': 3.0})], {'t/0': 9})
    >>> p.records, p.undecodable
    (3, 1)
    """

    def __init__(self) -> None:
        # (subject, start) -> ([records], ints, floats, maxes, items)
        self._windows: dict[tuple[str, int], tuple[list[int], dict, dict, dict, list]] = {}  # type: ignore[type-arg]
        self.max_event_ms: dict[str, int] = {}
        self.extension: dict[str, list[Any]] = {}
        self.records = 0
        self.undecodable = 0

    def add(self, updates: Updates, records: int) -> None:
        """Merge one batch's *updates* (of *records* consumed records)."""
        for u in updates.updates:
            acc = self._windows.get((u.subject, u.start_ms))
            if acc is None:
                acc = self._windows[(u.subject, u.start_ms)] = ([0], {}, {}, {}, [])
            count, ints, floats, maxes, items = acc
            count[0] += u.records
            for k, n in u.ints.items():
                ints[k] = ints.get(k, 0) + n
            for k, x in u.floats.items():
                floats[k] = floats.get(k, 0.0) + x
            for k, x in u.maxes.items():
                if k not in maxes or maxes[k] < x:
                    maxes[k] = x
            items.extend(u.items)
        for source, t in updates.max_event_ms.items():
            if t > self.max_event_ms.get(source, -1):
                self.max_event_ms[source] = t
        for name, args in updates.extension.items():
            self.extension.setdefault(name, []).extend(args)
        self.records += records
        self.undecodable += updates.undecodable

    def updates(self) -> list[Update]:
        """One :class:`Update` per window touched since the last checkpoint."""
        return [
            Update(subject, start, count[0], ints, floats, maxes, items)
            for (subject, start), (count, ints, floats, maxes, items) in self._windows.items()
        ]

    def __bool__(self) -> bool:
        return bool(self.records or self._windows)


def decode_valid(
    codec: Codec,
    values: Sequence[bytes | None],
    sources: Sequence[str],
    valid: Callable[[dict[str, Any]], bool] = lambda record: True,
) -> tuple[list[dict[str, Any]], list[str], int]:
    """The records of a batch that decode and are *valid*, their sources, and how many were not.

    A bad record is counted, never raised: one record must not stop a partition.
    """
    records, used, bad = [], [], 0
    for value, source in zip(values, sources, strict=True):
        try:
            record = codec.decode(value)
        except DecodeError:
            bad += 1
            continue
        if valid(record):
            records.append(record)
            used.append(source)
        else:
            bad += 1
    return records, used, bad


def max_event_per_source(sources: Iterable[str], times: Iterable[int]) -> dict[str, int]:
    """The largest event time per source, for :attr:`Updates.max_event_ms`."""
    out: dict[str, int] = {}
    for source, t in zip(sources, times, strict=True):
        if t > out.get(source, -1):
            out[source] = t
    return out


def metric_window(
    kind: str,
    subject: str,
    start_ms: int,
    end_ms: int,
    count: int,
    metrics: Mapping[str, float],
    detail: dict[str, Any],
) -> dict[str, Any]:
    """A MetricWindow record: non-finite metrics left out, a rig segment named in ``detail``."""
    if is_segment(subject):
        detail = {**detail, "segment": {"rig_id": rig_of(subject)}}
    return {
        "kind": kind,
        "subject": subject,
        "window_start": start_ms,
        "window_end": end_ms,
        "count": count,
        "metrics": {name: float(v) for name, v in metrics.items() if math.isfinite(v)},
        "detail": json.dumps(detail, sort_keys=True, default=float),
    }
