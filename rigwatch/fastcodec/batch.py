"""The decoded form of a batch: one array or list per field, plus the rejects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rigwatch.exceptions import DecodeError

__all__ = ["ColumnBatch"]


@dataclass(frozen=True, eq=False)
class ColumnBatch:
    """Records of one batch as columns, row ``i`` being input position ``index[i]``.

    Attributes
    ----------
    index
        int64, the input positions that decoded, ascending.
    strings, longs, booleans
        Per field name: ``list[str]``, int64 array (long and int fields), bool array.
    doubles
        float64 ``(len(index), len(double_names))``: the double and nullable-double
        fields in schema order; NaN where null (and where a NaN was sent).
    nulls
        bool, same shape as ``doubles``: True only where the field was null, so a
        NaN or infinity that was sent as a value is told apart from a missing one.
    double_names
        Column names of ``doubles``.
    rejects
        ``(input position, DecodeError)`` of every input that did not decode, ascending.
    fields
        ``(name, kind)`` of every field in schema order, to rebuild records.

    Examples
    --------
    >>> from rigwatch.fastcodec import BatchDecoder
    >>> from rigwatch.schemas import Codecs
    >>> codec = Codecs.load().actual
    >>> data = codec.encode({"event_id": "e1", "rig_id": "r", "label": "3", "observed_time": 5})
    >>> batch = BatchDecoder(codec).decode([data, b"junk"])
    >>> batch.index.tolist(), batch.strings["label"], [(i, e.reason) for i, e in batch.rejects]
    ([0], ['3'], [(1, 'not_single_object')])
    >>> batch.record(0)
    {'event_id': 'e1', 'rig_id': 'r', 'label': '3', 'observed_time': 5}
    """

    index: np.ndarray
    strings: dict[str, list[str]]
    longs: dict[str, np.ndarray]
    booleans: dict[str, np.ndarray]
    doubles: np.ndarray
    nulls: np.ndarray
    double_names: tuple[str, ...]
    rejects: list[tuple[int, DecodeError]]
    fields: tuple[tuple[str, str], ...]

    def __len__(self) -> int:
        return len(self.index)

    def record(self, row: int) -> dict[str, Any]:
        """Row *row* as the dict :meth:`Codec.decode <rigwatch.codec.Codec.decode>` gives."""
        out: dict[str, Any] = {}
        column = 0
        for name, kind in self.fields:
            if kind == "string":
                out[name] = self.strings[name][row]
            elif kind in ("long", "int"):
                out[name] = int(self.longs[name][row])
            elif kind == "boolean":
                out[name] = bool(self.booleans[name][row])
            else:
                null = kind == "nullable_double" and self.nulls[row, column]
                out[name] = None if null else float(self.doubles[row, column])
                column += 1
        return out

    def records(self) -> list[dict[str, Any]]:
        """Every row as a dict (the slow way back, for tests and fallbacks)."""
        return [self.record(row) for row in range(len(self))]
