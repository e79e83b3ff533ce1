"""Column buffers the batch decoder fills, and their merge with records decoded one by one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rigwatch.exceptions import DecodeError
from rigwatch.fastcodec._schema import Field
from rigwatch.fastcodec._vector import Reader
from rigwatch.fastcodec.batch import ColumnBatch

__all__ = ["Columns"]

_INT32 = (-(2**31), 2**31 - 1)


class Columns:
    """One array per field for *n* rows; strings stay byte spans until :meth:`compact`."""

    def __init__(self, n: int, fields: Sequence[Field], double_names: tuple[str, ...]) -> None:
        self.fields = tuple(fields)
        self.double_names = double_names
        self.column = {name: j for j, name in enumerate(double_names)}
        kinds = {f.name: f.kind for f in fields}
        self.spans = {
            name: (np.zeros(n, np.int64), np.zeros(n, np.int64)) for name, k in kinds.items() if k == "string"
        }
        self.strings: dict[str, list[str]] = {}
        self.longs = {name: np.zeros(n, np.int64) for name, k in kinds.items() if k in ("long", "int")}
        self.booleans = {name: np.zeros(n, bool) for name, k in kinds.items() if k == "boolean"}
        self.doubles = np.empty((n, len(double_names)), np.float64)
        self.nulls = np.zeros((n, len(double_names)), bool)

    def read(self, reader: Reader, fields: Sequence[Field], at: Any = slice(None)) -> None:
        """Read *fields* of every row of *reader* into rows *at*."""
        for f in fields:
            if f.kind == "string":
                self.spans[f.name][0][at], self.spans[f.name][1][at] = reader.string()
            elif f.kind in ("long", "int"):
                value = reader.varint()
                if f.kind == "int":
                    reader.bad |= (value < _INT32[0]) | (value > _INT32[1])
                self.longs[f.name][at] = value
            elif f.kind == "boolean":
                self.booleans[f.name][at] = reader.boolean()
            else:
                j = self.column[f.name]
                if f.kind == "double":
                    self.doubles[at, j] = reader.double()
                else:
                    self.doubles[at, j], self.nulls[at, j] = reader.nullable_double(f.null_byte, f.value_byte)

    def compact(self, buf: bytes, ok: np.ndarray) -> np.ndarray:
        """Keep only rows *ok* whose strings are valid UTF-8, decoding them; returns the rows kept."""
        rows = np.flatnonzero(ok)
        text = buf.decode("latin-1")
        strings = {}
        for name, (start, stop) in self.spans.items():
            starts, stops = start[rows].tolist(), stop[rows].tolist()
            # Slicing a str is cheaper than slicing and decoding bytes; a latin-1 slice is
            # the UTF-8 string when it is ASCII, which one check of the joined column tells.
            column = [text[a:b] for a, b in zip(starts, stops, strict=True)]
            if "".join(column).isascii():
                strings[name] = column
                continue
            try:
                strings[name] = [buf[a:b].decode() for a, b in zip(starts, stops, strict=True)]
            except UnicodeDecodeError:
                # Rare: drop the rows with invalid UTF-8 (the codec will reject them) and start over.
                spans = zip(rows.tolist(), starts, stops, strict=True)
                ok = ok.copy()
                ok[[row for row, a, b in spans if not _is_utf8(buf[a:b])]] = False
                return self.compact(buf, ok)
        self.strings = strings
        if len(rows) < len(ok):
            self.longs = {name: column[rows] for name, column in self.longs.items()}
            self.booleans = {name: column[rows] for name, column in self.booleans.items()}
            self.doubles, self.nulls = self.doubles[rows], self.nulls[rows]
        return ok

    def to_batch(
        self,
        index: np.ndarray,
        resolved: list[tuple[int, dict[str, Any]]],
        rejects: list[tuple[int, DecodeError]],
    ) -> ColumnBatch:
        """The batch of the compacted rows (input positions *index*) and records decoded one by one."""
        strings, longs, booleans = self.strings, self.longs, self.booleans
        doubles, nulls = self.doubles, self.nulls
        if resolved:
            records = [record for _, record in resolved]
            index = np.concatenate([index, np.array([i for i, _ in resolved], np.int64)])
            order = np.argsort(index, kind="stable")
            index = index[order]
            picks = order.tolist()
            strings = {
                name: _pick(column + [r[name] for r in records], picks) for name, column in strings.items()
            }
            longs = {
                name: np.concatenate([column, np.array([r[name] for r in records], np.int64)])[order]
                for name, column in longs.items()
            }
            booleans = {
                name: np.concatenate([column, np.array([r[name] for r in records], bool)])[order]
                for name, column in booleans.items()
            }
            values = [[r[name] for name in self.double_names] for r in records]
            extra = np.array([[np.nan if v is None else v for v in row] for row in values], np.float64)
            missing = np.array([[v is None for v in row] for row in values], bool)
            shape = (len(records), len(self.double_names))
            doubles = np.concatenate([doubles, extra.reshape(shape)])[order]
            nulls = np.concatenate([nulls, missing.reshape(shape)])[order]
        return ColumnBatch(
            index=index.astype(np.int64, copy=False),
            strings=strings,
            longs=longs,
            booleans=booleans,
            doubles=doubles,
            nulls=nulls,
            double_names=self.double_names,
            rejects=sorted(rejects, key=lambda pair: pair[0]),
            fields=tuple((f.name, f.kind) for f in self.fields),
        )


def _pick(items: list[str], picks: list[int]) -> list[str]:
    return [items[i] for i in picks]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True
