"""Rows of a per-cycle CSV as SensorReading sensor values, and what is wrong with the rows that are not.

The header is checked once: every model feature must be a column (in any
order); columns that are sensors of the SensorReading schema are read as
numbers, every other column is the caller's to carry through untouched.

A value is what a producer would put on the wire: a number, or an empty cell
for a sensor without a value (``null``, which the scorer scores and flags
``missing:<sensor>``, as it does for ``nan`` and ``inf``). A cell that is not a
number, or a row with fewer or more values than the header, is a
:class:`BadRow`: the streaming contract has no way to say it, so it is never
scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rigwatch.exceptions import DataError

__all__ = ["BadRow", "BadRowError", "RowReader", "sensor_fields"]


def sensor_fields(schema: Mapping[str, Any]) -> tuple[str, ...]:
    """The SensorReading fields that hold a sensor value: the nullable doubles.

    Examples
    --------
    >>> from rigwatch.schemas import load_schema
    >>> fields = sensor_fields(load_schema("SensorReading"))
    >>> len(fields), fields[0], "event_id" in fields
    (17, 'psa_bar', False)
    """
    return tuple(
        f["name"]
        for f in schema["fields"]
        if isinstance(f["type"], list) and sorted(f["type"]) == ["double", "null"]
    )


@dataclass(frozen=True)
class BadRow:
    """Data row *row* (1-based, header excluded), ending on file line *line*, cannot be scored.

    *column* and *value* name the offending cell; *value* is None when the row
    has no value for *column* at all.
    """

    row: int
    line: int
    column: str | None
    value: str | None
    reason: str

    def __str__(self) -> str:
        return f"row {self.row} (line {self.line}): {self.reason}"


class BadRowError(DataError):
    """A bad row met under ``--on-error fail``; :attr:`bad` says where and what."""

    def __init__(self, source: str, bad: BadRow) -> None:
        super().__init__(f"{source}: {bad}")
        self.bad = bad


class RowReader:
    """Check a header once, then turn each row into ``{sensor: float | None}`` or a :class:`BadRow`.

    Parameters
    ----------
    header
        The file's column names.
    sensors
        The SensorReading sensor fields (:func:`sensor_fields`); those in the
        header are read as numbers.
    required
        The model's features: each must be in the header.
    source
        The file's name, for messages.

    Raises
    ------
    DataError
        A required column is missing (each one is named), or a name repeats.

    Examples
    --------
    >>> reader = RowReader(["id", "b", "a"], sensors=("a", "b", "c"), required=("a", "b"), source="f.csv")
    >>> reader.parse(["x1", "2.5", ""], row=1, line=2)
    {'b': 2.5, 'a': None}
    >>> print(reader.parse(["x2", "2,5", "1"], row=2, line=3))
    row 2 (line 3): b='2,5' is not a number
    >>> RowReader(["a"], sensors=("a", "b"), required=("a", "b"), source="f.csv")
    Traceback (most recent call last):
    ...
    rigwatch.exceptions.DataError: f.csv: no column b (the model needs a, b; any order, other ...
    """

    def __init__(
        self, header: Sequence[str], sensors: Sequence[str], required: Sequence[str], source: str
    ) -> None:
        self.header = tuple(header)
        repeated = sorted({name for name in self.header if self.header.count(name) > 1})
        if repeated:
            raise DataError(f"{source}: column {', '.join(repeated)} appears more than once in the header")
        absent = [name for name in required if name not in self.header]
        if absent:
            shown = ", ".join(self.header)
            # A file with another delimiter reads as one long column name: showing it says so.
            shown = shown if len(shown) <= 200 else shown[:200] + " ..."
            raise DataError(
                f"{source}: no column {', '.join(absent)} (the model needs {', '.join(required)}; "
                f"any order, other columns kept); the header has: {shown}"
            )
        wanted = set(sensors)
        self._cells = [(name, i) for i, name in enumerate(self.header) if name in wanted]

    def parse(self, fields: Sequence[str], row: int, line: int) -> dict[str, float | None] | BadRow:
        """The sensor values of one row, or why it cannot be scored."""
        if len(fields) != len(self.header):
            return self._wrong_width(fields, row, line)
        values: dict[str, float | None] = {}
        for name, i in self._cells:
            text = fields[i].strip()
            if not text:
                values[name] = None
                continue
            try:
                # float() also takes "1_000"; no CSV writer means that, so it is refused.
                if "_" in text:
                    raise ValueError(text)
                values[name] = float(text)
            except ValueError:
                return BadRow(row, line, name, fields[i], f"{name}={fields[i]!r} is not a number")
        return values

    def _wrong_width(self, fields: Sequence[str], row: int, line: int) -> BadRow:
        have, want = len(fields), len(self.header)
        if have < want:
            column = self.header[have]
            reason = f"{have} values, the header has {want}: no value for {column}"
            if want - have > 1:
                reason += f" and {want - have - 1} more column(s)"
            return BadRow(row, line, column, None, reason)
        extra = fields[want]
        return BadRow(
            row, line, None, extra, f"{have} values, the header has {want} (first extra: {extra!r})"
        )
