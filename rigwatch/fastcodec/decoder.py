"""Decode a whole batch of single-object records into columns, a numpy step per field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rigwatch.codec import MARKER, Codec
from rigwatch.exceptions import DecodeError
from rigwatch.fastcodec._columns import Columns
from rigwatch.fastcodec._schema import flat_fields
from rigwatch.fastcodec._tail import Tail, split_tail
from rigwatch.fastcodec._vector import PAD, Reader
from rigwatch.fastcodec.batch import ColumnBatch

__all__ = ["BatchDecoder"]

_HEADER = len(MARKER) + 8


class BatchDecoder:
    """Decode batches of one record type with numpy, equal to :meth:`Codec.decode` per record.

    Records written with the codec's current schema are read column by column; the
    trailing run of fixed-width fields (doubles, nullable doubles, booleans) is read
    in one step when every value in it is present. Anything else - an older writer
    schema, a bad header, a body that does not parse - goes through ``codec.decode``,
    so results, reject reasons and details are the codec's own.

    Parameters
    ----------
    codec
        Its current schema must be a flat record of string, long, int, double,
        boolean and ``["null", "double"]`` fields.

    Raises
    ------
    UnsupportedSchemaError
        At construction, naming the first field of another type.

    Examples
    --------
    >>> from rigwatch.schemas import Codecs
    >>> codec = Codecs.load().sensor_reading
    >>> reading = {"event_id": "e1", "rig_id": "rig-1", "cycle": 3, "event_time": 0, "psa_bar": 151.5}
    >>> decoder = BatchDecoder(codec)
    >>> batch = decoder.decode([codec.encode(reading), None])
    >>> batch.index.tolist(), batch.longs["cycle"].tolist(), batch.doubles[0, :2].tolist()
    ([0], [3], [151.5, nan])
    >>> batch.double_names[:2], [(i, e.reason) for i, e in batch.rejects]
    (('psa_bar', 'psb_bar'), [(1, 'not_single_object')])
    """

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.fields = flat_fields(codec.schema)
        self.double_names = tuple(f.name for f in self.fields if f.kind in ("double", "nullable_double"))
        self._header = MARKER + codec.fingerprint
        self._head, tail = split_tail(self.fields)
        self._tail = Tail(tail, len(self.double_names)) if tail else None

    def decode(self, values: Sequence[bytes | None]) -> ColumnBatch:
        """Decode *values*; every position ends in exactly one of ``index`` or ``rejects``."""
        buf, lengths = _join(values)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        # The 10 header bytes at every byte offset, as fixed-width byte strings: two of
        # the same width are equal exactly when their bytes are.
        headers = np.ndarray((len(buf) - _HEADER + 1,), f"S{_HEADER}", buf, strides=(1,))
        rows = np.flatnonzero((lengths >= _HEADER) & (headers[starts] == self._header))
        reader = Reader(buf, starts[rows] + _HEADER, ends[rows])
        columns = Columns(len(rows), self.fields, self.double_names)
        columns.read(reader, self._head)
        if self._tail is not None:
            self._tail.read(reader, columns)
        ok = columns.compact(buf, ~reader.bad & (reader.pos == reader.end))
        fast = np.zeros(len(lengths), dtype=bool)
        fast[rows[ok]] = True
        rejects: list[tuple[int, DecodeError]] = []
        resolved: list[tuple[int, dict[str, Any]]] = []
        for i in np.flatnonzero(~fast).tolist():
            try:
                resolved.append((i, self.codec.decode(values[i])))
            except DecodeError as exc:
                rejects.append((i, exc))
        return columns.to_batch(rows[ok], resolved, rejects)


def _join(values: Sequence[bytes | None]) -> tuple[bytes, np.ndarray]:
    """All values back to back (then :data:`PAD`) and each one's length."""
    try:
        joined = b"".join([*values, PAD])  # type: ignore[list-item]
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))  # type: ignore[arg-type]
        if int(lengths.sum()) + len(PAD) == len(joined):
            return joined, lengths
    except TypeError:
        pass
    # None, str or a memoryview of wider items: give it no bytes here, so it fails the
    # header check and ``Codec.decode`` treats it as it always does.
    usable = [v if isinstance(v, bytes | bytearray) else b"" for v in values]
    return b"".join([*usable, PAD]), np.fromiter(map(len, usable), dtype=np.int64, count=len(usable))
