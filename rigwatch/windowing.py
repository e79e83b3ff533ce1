"""Window arithmetic and the records a windowed handler makes: pure, no I/O.

Every windowed service (drift, latency, accuracy) counts into tumbling windows
per *subject*: a model version, or a rig's segment ``rig:<rig_id>``. A handler
turns a batch into :class:`Updates`; the runtime accumulates them in process
(:class:`Pending`) and checkpoints them to the shared Redis windows.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from rigwatch.codec import Codec
from rigwatch.exceptions import DecodeError

__all__ = [
    "SEGMENT_PREFIX",
    "Counts",
    "Pending",
    "Update",
    "Updates",
    "decode_valid",
    "is_segment",
    "max_event_per_source",
    "metric_window",
    "namespace",
    "pack_counts",
    "rig_of",
    "segment",
    "unpack_counts",
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


#: Dense counts: an integer and a float vector, each of one fixed length per window.
Counts = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]


@dataclass(frozen=True)
class Update:
    """What a batch adds to one window of one subject.

    ``ints`` and ``floats`` are added to the window's fields, ``maxes`` raise a
    field to the value when it is larger, ``items`` are appended to the
    window's list (for statistics that need the values themselves).

    ``counts`` is for windows of thousands of additive slots (histogram bins):
    the vectors are added element-wise in process (:class:`Pending`), and each
    checkpoint appends their sum to the window's list as one packed item
    (:func:`pack_counts`) instead of writing a hash field per slot. Whoever
    reads the window adds the items up (:func:`unpack_counts`).
    """

    subject: str
    start_ms: int
    records: int
    ints: Mapping[str, int] = field(default_factory=dict)
    floats: Mapping[str, float] = field(default_factory=dict)
    maxes: Mapping[str, float] = field(default_factory=dict)
    items: Sequence[str | bytes] = ()
    counts: Counts | None = None


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

    Dense counts of the same window are added element-wise:

    >>> ones = (np.ones(3, np.int64), np.full(2, 0.5))
    >>> p.add(Updates([Update("v1", 0, 1, counts=ones), Update("v1", 0, 1, counts=ones)], {}), records=2)
    >>> [(u.records, u.counts[0].tolist(), u.counts[1].tolist()) for u in p.updates()]
    [(5, [2, 2, 2], [1.0, 1.0])]
    """

    def __init__(self) -> None:
        # (subject, start) -> ([records], ints, floats, maxes, items, [counts])
        self._windows: dict[tuple[str, int], tuple[list[int], dict, dict, dict, list, list]] = {}  # type: ignore[type-arg]
        self.max_event_ms: dict[str, int] = {}
        self.extension: dict[str, list[Any]] = {}
        self.records = 0
        self.undecodable = 0

    def add(self, updates: Updates, records: int) -> None:
        """Merge one batch's *updates* (of *records* consumed records)."""
        for u in updates.updates:
            acc = self._windows.get((u.subject, u.start_ms))
            if acc is None:
                acc = self._windows[(u.subject, u.start_ms)] = ([0], {}, {}, {}, [], [None])
            count, ints, floats, maxes, items, counts = acc
            count[0] += u.records
            if u.counts is not None:
                counts[0] = _add_counts(counts[0], u.counts, u.subject, u.start_ms)
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
            Update(subject, start, count[0], ints, floats, maxes, items, counts[0])
            for (subject, start), (count, ints, floats, maxes, items, counts) in self._windows.items()
        ]

    def __bool__(self) -> bool:
        return bool(self.records or self._windows)


def _add_counts(total: Counts | None, add: Counts, subject: str, start_ms: int) -> Counts:
    """*total* + *add* element-wise (a copy of *add* when there is no total yet: it is the caller's)."""
    ints, floats = np.asarray(add[0]), np.asarray(add[1])
    if ints.ndim != 1 or floats.ndim != 1 or ints.dtype.kind not in "iu" or floats.dtype.kind not in "iuf":
        raise ValueError(
            f"window {subject}@{start_ms}: counts must be a 1-d integer and a 1-d float vector,"
            f" got {ints.dtype}{ints.shape} and {floats.dtype}{floats.shape}"
        )
    if total is None:
        return ints.astype(np.int64, copy=True), floats.astype(np.float64, copy=True)
    if total[0].shape != ints.shape or total[1].shape != floats.shape:
        raise ValueError(
            f"window {subject}@{start_ms}: counts of lengths {len(ints)}, {len(floats)} cannot be added"
            f" to counts of lengths {len(total[0])}, {len(total[1])}"
        )
    np.add(total[0], ints, out=total[0], casting="unsafe")
    np.add(total[1], floats, out=total[1])
    return total


# ---------------------------------------------------------------------------- packed counts

#: A packed :data:`Counts`: magic and format version, the two vector lengths, then two sections.
_COUNTS_HEAD = struct.Struct("<4sII")
_COUNTS_MAGIC = b"rwc1"
#: A section: its form (dense, or sparse with 2- or 4-byte slot numbers), the stored values'
#: type code, how many values are stored.
_SECTION = struct.Struct("<BcI")
_DENSE = 0
_INDEX: dict[int, np.dtype[Any]] = {1: np.dtype("<u4"), 2: np.dtype("<u2")}
_INT_CODES: dict[bytes, np.dtype[Any]] = {
    b"b": np.dtype("<i1"),
    b"h": np.dtype("<i2"),
    b"i": np.dtype("<i4"),
    b"q": np.dtype("<i8"),
}
_FLOAT_CODE = b"d"
_CODES: dict[bytes, np.dtype[Any]] = {**_INT_CODES, _FLOAT_CODE: np.dtype("<f8")}


def pack_counts(ints: npt.ArrayLike, floats: npt.ArrayLike) -> bytes:
    """*ints* and *floats* as one compact binary item (what a checkpoint appends to a window).

    Each vector is stored densely or as ``(slot, value)`` pairs of its non-zero
    slots, whichever is smaller; integers in the narrowest type that holds
    them, floats as float64 (exact). Dropping a zero (or ``-0.0``) slot changes no
    sum started from zeros, so :func:`unpack_counts` gives vectors whose sums
    equal the originals' exactly.

    Examples
    --------
    >>> blob = pack_counts(np.array([0, 3, 0, 0, 0, 0, 0, 0]), np.array([0.25, 0.0]))
    >>> ints, floats = unpack_counts(blob)
    >>> ints.tolist(), floats.tolist(), len(blob)
    ([0, 3, 0, 0, 0, 0, 0, 0], [0.25, 0.0], 37)
    """
    i = np.asarray(ints)
    f = np.asarray(floats, dtype=np.float64)
    if i.ndim != 1 or f.ndim != 1 or i.dtype.kind not in "iu":
        raise ValueError(f"expected a 1-d integer and a 1-d float vector, got {i.dtype}{i.shape}, {f.shape}")
    lo, hi = (int(i.min()), int(i.max())) if len(i) else (0, 0)
    code = next((c for c, t in _INT_CODES.items() if _fits(t, lo, hi)), None)
    if code is None:
        raise ValueError(f"integer counts from {lo} to {hi} do not fit in int64")
    return b"".join(
        [_COUNTS_HEAD.pack(_COUNTS_MAGIC, len(i), len(f)), *_section(i, code), *_section(f, _FLOAT_CODE)]
    )


def _fits(dtype: np.dtype[Any], lo: int, hi: int) -> bool:
    info = np.iinfo(dtype)
    return int(info.min) <= lo and hi <= int(info.max)


def _section(values: np.ndarray, code: bytes) -> list[bytes]:
    dtype = _CODES[code]
    nonzero = np.flatnonzero(values)
    form = 2 if len(values) <= 1 << 16 else 1
    if len(nonzero) * (_INDEX[form].itemsize + dtype.itemsize) < len(values) * dtype.itemsize:
        return [
            _SECTION.pack(form, code, len(nonzero)),
            nonzero.astype(_INDEX[form]).tobytes(),
            values[nonzero].astype(dtype).tobytes(),
        ]
    return [_SECTION.pack(_DENSE, code, len(values)), values.astype(dtype).tobytes()]


def unpack_counts(
    data: bytes, n_int: int | None = None, n_float: int | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The dense int64 and float64 vectors of an item made by :func:`pack_counts`.

    Raises
    ------
    ValueError
        *data* is not a packed counts item, is cut short or has bytes left over,
        or its lengths are not *n_int* / *n_float* (when given).
    """
    view = memoryview(data)
    if len(view) < _COUNTS_HEAD.size or bytes(view[:4]) != _COUNTS_MAGIC:
        raise ValueError(f"not a packed counts item: starts {bytes(view[:8])!r} ({len(view)} bytes)")
    _, length_i, length_f = _COUNTS_HEAD.unpack_from(view)
    if (n_int is not None and length_i != n_int) or (n_float is not None and length_f != n_float):
        raise ValueError(
            f"packed counts of lengths {length_i}, {length_f}; expected {n_int}, {n_float}"
            " (written for another layout)"
        )
    at = _COUNTS_HEAD.size
    ints, at = _read_section(view, at, length_i, np.int64, _INT_CODES)
    floats, at = _read_section(view, at, length_f, np.float64, {_FLOAT_CODE: _CODES[_FLOAT_CODE]})
    if at != len(view):
        raise ValueError(f"packed counts: {len(view) - at} bytes left after the item")
    return ints, floats


def _read_section(
    view: memoryview, at: int, length: int, out_type: type, codes: Mapping[bytes, np.dtype[Any]]
) -> tuple[Any, int]:
    if len(view) - at < _SECTION.size:
        raise ValueError("packed counts: cut short")
    form, code, stored = _SECTION.unpack_from(view, at)
    at += _SECTION.size
    valid = form in _INDEX or (form == _DENSE and stored == length)
    if code not in codes or not valid or stored > length:
        raise ValueError(f"packed counts: bad section (form {form}, type {code!r}, {stored} of {length})")
    dtype = codes[code]
    index_bytes = stored * _INDEX[form].itemsize if form in _INDEX else 0
    end = at + index_bytes + stored * dtype.itemsize
    if end > len(view):
        raise ValueError("packed counts: cut short")
    values: np.ndarray = np.frombuffer(view, dtype, stored, at + index_bytes).astype(out_type)
    if form == _DENSE:
        return values, end
    index = np.frombuffer(view, _INDEX[form], stored, at)
    if stored and int(index.max()) >= length:
        raise ValueError(f"packed counts: slot {int(index.max())} beyond the length {length}")
    out: np.ndarray = np.zeros(length, out_type)
    out[index] = values
    return out, end


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
