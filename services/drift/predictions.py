"""The five fields drift counts of a batch of Predictions, read with numpy a field at a time.

Drift uses only ``event_time``, ``rig_id``, ``model_version``, ``predicted_label``
and ``confidence``, but :meth:`Codec.decode <rigwatch.codec.Codec.decode>` builds
a dict per record (its probability map, its flags...), a few microseconds each.
:class:`PredictionReader` parses every field of every record written with the
current schema, one numpy step per field over the whole batch (the readers of
:mod:`rigwatch.fastcodec`), compares the version and the label as bytes and
decodes only the distinct rig ids. Whatever it is not sure of — another writer
schema, a bad header, a body that does not parse or leaves bytes over, a string
that is not ASCII, a map or array block it does not read — goes through
``codec.decode``, so a record is used, or counted as unusable, exactly as the
codec decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rigwatch.codec import MARKER, Codec
from rigwatch.exceptions import DecodeError
from rigwatch.fastcodec._schema import base_type
from rigwatch.fastcodec._vector import Reader

__all__ = ["PredictionColumns", "PredictionReader", "factorize"]

_HEADER = len(MARKER) + 8
_SCALARS = frozenset({"string", "long", "int", "double", "boolean"})
#: The fields drift needs, and the kind each must have for the fast path.
_NEEDED = {
    "event_time": "long",
    "rig_id": "string",
    "model_version": "string",
    "predicted_label": "string",
    "confidence": "double",
}
#: Rig ids up to this many bytes are grouped as fixed-width byte blocks, longer ones in Python.
_RIG_BLOCK = 64
#: Most entries of a map or array block read here, and most blocks per map or array.
_MAX_ITEMS, _MAX_BLOCKS = 64, 8
_INT32 = (-(2**31), 2**31 - 1)
#: The high bits of the first k bytes of a little-endian 8-byte word.
_HIGH = np.array([sum(0x80 << (8 * i) for i in range(k)) for k in range(9)], dtype=np.uint64)

#: Where the string spans of a field are: rows (None: every row), starts, stops.
_Spans = list[tuple[np.ndarray | None, np.ndarray, np.ndarray]]


@dataclass(frozen=True, eq=False)
class PredictionColumns:
    """The usable predictions of a batch, row ``i`` being input position ``index[i]``.

    ``rig`` indexes ``rigs`` (distinct, sorted), ``label`` indexes the reader's
    classes; ``unusable`` counts the inputs that did not decode or predicted a
    label that is not one of the classes.
    """

    index: np.ndarray
    event_time: np.ndarray
    rigs: list[str]
    rig: np.ndarray
    same_version: np.ndarray
    label: np.ndarray
    confidence: np.ndarray
    unusable: int

    def __len__(self) -> int:
        return len(self.index)


def factorize(values: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The distinct *values*, sorted, and each value's index among them.

    Examples
    --------
    >>> factorize(["b", "a", "b"])
    (['a', 'b'], array([1, 0, 1]))
    """
    first: dict[str, int] = {}
    codes = np.fromiter((first.setdefault(v, len(first)) for v in values), np.int64, len(values))
    distinct = sorted(first)
    if distinct != list(first):
        rank = np.empty(len(distinct), np.int64)
        rank[[first[v] for v in distinct]] = np.arange(len(distinct))
        codes = rank[codes]
    return distinct, codes


def _program(schema: dict[str, Any]) -> tuple[tuple[str, str, str], ...] | None:
    """``(name, kind, item kind)`` per field, or None when the fast path cannot read the schema."""
    out = []
    for f in schema.get("fields", ()):
        t = base_type(f["type"])
        if isinstance(t, str) and t in _SCALARS:
            out.append((f["name"], t, ""))
            continue
        container = t.get("type") if isinstance(t, dict) else None
        item = base_type(t.get("values" if container == "map" else "items")) if container else None
        if container in ("map", "array") and isinstance(item, str) and item in _SCALARS:
            out.append((f["name"], container, item))
        else:
            return None
    kinds = {name: kind for name, kind, _ in out}
    if any(kinds.get(name) != kind for name, kind in _NEEDED.items()):
        return None
    return tuple(out)


class PredictionReader:
    """Read the fields drift needs from Prediction bytes; equal to ``codec.decode`` per record.

    Parameters
    ----------
    codec
        The Prediction codec. If its current schema has a field type the fast
        path does not read, every record goes through ``codec.decode``.
    classes
        The model's class labels: a prediction of another label is unusable.
    model_version
        ``same_version`` tells which predictions are of this version.

    Examples
    --------
    >>> from rigwatch.schemas import Codecs
    >>> codec = Codecs.load().prediction
    >>> p = {"event_id": "e1", "rig_id": "rig-1", "cycle": 1, "event_time": 5, "model_name": "m",
    ...      "model_version": "v1", "probabilities": {"3": 0.9}, "predicted_label": "3",
    ...      "confidence": 0.9, "scored_time": 6}
    >>> reader = PredictionReader(codec, ["3", "20"], "v1")
    >>> out = reader.read([codec.encode(p), b"junk", codec.encode(p | {"predicted_label": "7"})])
    >>> out.index.tolist(), out.rigs, out.label.tolist(), out.same_version.tolist(), out.unusable
    ([0], ['rig-1'], [0], [True], 2)
    """

    def __init__(self, codec: Codec, classes: Sequence[str], model_version: str) -> None:
        self.codec = codec
        self.classes = list(classes)
        self.model_version = model_version
        self._class_index = {label: k for k, label in enumerate(self.classes)}
        self._program = _program(codec.schema)
        self._header = MARKER + codec.fingerprint
        self._version = model_version.encode()
        self._labels = [label.encode() for label in self.classes]
        widest = max([_RIG_BLOCK, len(self._version), *map(len, self._labels)])
        # Zero bytes after the last record: every fixed-width read of any row stays in the buffer.
        self._pad = bytes(widest + 16)

    @property
    def fast(self) -> bool:
        """Whether records of the current schema are read here (else all go through the codec)."""
        return self._program is not None

    def read(self, values: Sequence[bytes | None]) -> PredictionColumns:
        """The usable predictions among *values*, in input order."""
        n = len(values)
        fast = _empty_columns()
        done = np.zeros(n, dtype=bool)
        if self._program is not None and n:
            fast, rows = self._read_fast(values)
            done[rows] = True
        rest = np.flatnonzero(~done).tolist()
        return self._merge(fast, self._read_slow(values, rest), len(rest))

    # ------------------------------------------------------------ the fast path

    def _read_fast(self, values: Sequence[bytes | None]) -> tuple[dict[str, Any], np.ndarray]:
        """Columns of the records read here (with their label index, -1 for another label), and their rows."""
        buf, lengths = self._join(values)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        headers = np.ndarray((len(buf) - _HEADER + 1,), f"S{_HEADER}", buf, strides=(1,))
        rows = np.flatnonzero((lengths >= _HEADER) & (headers[starts] == self._header))
        reader = Reader(buf, starts[rows] + _HEADER, ends[rows])
        spans: _Spans = []
        wanted: dict[str, Any] = {}
        for name, kind, item in self._program or ():
            if kind in ("map", "array"):
                _blocks(reader, kind == "map", item, spans)
            else:
                value = _scalar(reader, kind, None, spans)
                if name in _NEEDED:
                    wanted[name] = value
        ok = ~reader.bad & (reader.pos == reader.end)
        ok &= _ascii(reader, spans, ok)
        keep = np.flatnonzero(ok)
        columns = {
            "event_time": wanted["event_time"][keep],
            "confidence": wanted["confidence"][keep],
            "same_version": self._equal(reader, wanted["model_version"], keep, self._version),
            "label": np.full(len(keep), -1, np.int64),
        }
        for k, label in enumerate(self._labels):
            columns["label"][self._equal(reader, wanted["predicted_label"], keep, label)] = k
        rig_start, rig_stop = wanted["rig_id"]
        columns["rigs"], columns["rig"] = _rig_groups(reader, rig_start, rig_stop, keep)
        columns["index"] = rows[keep]
        return columns, rows[keep]

    def _join(self, values: Sequence[bytes | None]) -> tuple[bytes, np.ndarray]:
        """All values back to back, then the pad, and each one's length (0 for what is not bytes)."""
        try:
            joined = b"".join([*values, self._pad])  # type: ignore[list-item]
            lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))  # type: ignore[arg-type]
            if int(lengths.sum()) + len(self._pad) == len(joined):
                return joined, lengths
        except TypeError:
            pass
        # None, str or a memoryview of wider items: no bytes here, so it fails the header
        # check and the codec treats it as it always does.
        usable = [v if isinstance(v, bytes | bytearray) else b"" for v in values]
        lengths = np.fromiter(map(len, usable), dtype=np.int64, count=len(usable))
        return b"".join([*usable, self._pad]), lengths

    @staticmethod
    def _equal(
        reader: Reader, span: tuple[np.ndarray, np.ndarray], keep: np.ndarray, text: bytes
    ) -> np.ndarray:
        """Whether the string *span* of each kept row is *text* (bytes compared)."""
        start, stop = span[0][keep], span[1][keep]
        same = stop - start == len(text)
        if len(text):
            block = np.ndarray((len(reader.buf) - len(text) + 1, len(text)), np.uint8, reader.buf, 0, (1, 1))
            same &= (block[start] == np.frombuffer(text, np.uint8)).all(axis=1)
        return same

    # ------------------------------------------------------------ the codec's path and the merge

    def _read_slow(self, values: Sequence[bytes | None], rows: list[int]) -> list[tuple[int, dict[str, Any]]]:
        """Records the codec decodes (one by one), with their input positions."""
        out = []
        for i in rows:
            try:
                out.append((i, self.codec.decode(values[i])))
            except DecodeError:
                continue
        return out

    def _merge(
        self, fast: dict[str, Any], slow: list[tuple[int, dict[str, Any]]], tried: int
    ) -> PredictionColumns:
        unusable = tried - len(slow)
        label = fast["label"]
        index = fast["index"]
        if slow:
            labels = [self._class_index.get(r["predicted_label"], -1) for _, r in slow]
            index = np.concatenate([index, np.array([i for i, _ in slow], np.int64)])
            order = np.argsort(index, kind="stable")
            index = index[order]
            label = np.concatenate([label, np.array(labels, np.int64)])[order]
            event_time = np.concatenate([fast["event_time"], [r["event_time"] for _, r in slow]])[order]
            confidence = np.concatenate([fast["confidence"], [r["confidence"] for _, r in slow]])[order]
            version = [r["model_version"] == self.model_version for _, r in slow]
            same_version = np.concatenate([fast["same_version"], np.array(version, bool)])[order]
            slow_rigs = [r["rig_id"] for _, r in slow]
            rigs = sorted({*fast["rigs"], *slow_rigs})
            at = {r: k for k, r in enumerate(rigs)}
            fast_at = np.array([at[r] for r in fast["rigs"]], np.int64)
            rig = np.concatenate([fast_at[fast["rig"]], np.array([at[r] for r in slow_rigs], np.int64)])[
                order
            ]
        else:
            event_time, confidence = fast["event_time"], fast["confidence"]
            same_version, rigs, rig = fast["same_version"], fast["rigs"], fast["rig"]
        known = label >= 0
        unusable += int(np.count_nonzero(~known))
        if not known.all():
            index, event_time, rig = index[known], event_time[known], rig[known]
            same_version, label, confidence = same_version[known], label[known], confidence[known]
            used = np.unique(rig)
            rigs = [rigs[k] for k in used.tolist()]
            rig = np.searchsorted(used, rig)
        return PredictionColumns(
            index=index.astype(np.int64, copy=False),
            event_time=np.asarray(event_time, dtype=np.int64),
            rigs=rigs,
            rig=rig.astype(np.int64, copy=False),
            same_version=same_version.astype(bool, copy=False),
            label=label,
            confidence=np.asarray(confidence, dtype=np.float64),
            unusable=unusable,
        )


def _empty_columns() -> dict[str, Any]:
    return {
        "index": np.zeros(0, np.int64),
        "event_time": np.zeros(0, np.int64),
        "confidence": np.zeros(0, np.float64),
        "same_version": np.zeros(0, bool),
        "label": np.zeros(0, np.int64),
        "rigs": [],
        "rig": np.zeros(0, np.int64),
    }


# ---------------------------------------------------------------------------- field readers


def _scalar(reader: Reader, kind: str, rows: np.ndarray | None, spans: _Spans) -> Any:
    """Read one value of *kind* for every row of *reader* (which are *rows* of the batch, or all)."""
    if kind == "string":
        start, stop = reader.string()
        spans.append((rows, start, stop))
        return start, stop
    if kind == "long":
        return reader.varint()
    if kind == "int":
        value = reader.varint()
        reader.bad |= (value < _INT32[0]) | (value > _INT32[1])
        return value
    if kind == "double":
        return reader.double()
    return reader.boolean()


def _blocks(reader: Reader, is_map: bool, item: str, spans: _Spans) -> None:
    """Skip a map (string keys) or an array of *item* values in every row, checking it parses.

    A block of a negative count (followed by its byte size) or of very many entries,
    or more than a few blocks, marks the row bad: the codec reads those.
    """
    rows = np.flatnonzero(~reader.bad)
    everyone = len(rows) == len(reader.pos)
    for _ in range(_MAX_BLOCKS):
        if not len(rows):
            return
        sub = reader if everyone else reader.subset(rows)
        count = sub.varint()
        sub.bad |= (count < 0) | (count > _MAX_ITEMS) | (count > sub.end - sub.pos)
        count[sub.bad] = 0
        for j in range(int(count.max(initial=0))):
            has = count > j
            if has.all():
                part, at = sub, None
            else:
                at = np.flatnonzero(has)
                part = sub.subset(at)
            batch_rows = rows if at is None else rows[at]
            if is_map:
                _scalar(part, "string", None if everyone and at is None else batch_rows, spans)
            _scalar(part, item, None if everyone and at is None else batch_rows, spans)
            if at is not None:
                sub.pos[at], sub.bad[at] = part.pos, part.bad
        if sub is not reader:
            reader.pos[rows], reader.bad[rows] = sub.pos, sub.bad
        more = (count > 0) & ~sub.bad
        rows = rows[more]
        everyone = everyone and bool(more.all())
    reader.bad[rows] = True


def _ascii(reader: Reader, spans: _Spans, ok: np.ndarray) -> np.ndarray:
    """Per row: whether every string of it is ASCII (only rows *ok* are looked at).

    Eight bytes are tested at a time; a string with any other byte is left to the
    codec, which decodes valid UTF-8 and rejects the rest.
    """
    n = len(ok)
    every = np.arange(n)
    row_list, start_list, length_list = [], [], []
    for rows, start, stop in spans:
        rows = every if rows is None else rows
        keep = ok[rows]
        row_list.append(rows[keep])
        start_list.append(start[keep])
        length_list.append((stop - start)[keep])
    result = np.ones(n, dtype=bool)
    if not row_list:
        return result
    row, pos, rest = np.concatenate(row_list), np.concatenate(start_list), np.concatenate(length_list)
    words = np.ndarray((len(reader.buf) - 7,), "<u8", reader.buf, strides=(1,))
    while len(row):
        high = (words[pos] & _HIGH[np.minimum(rest, 8)]) != 0
        result[row[high]] = False
        more = (rest > 8) & ~high
        row, pos, rest = row[more], pos[more] + 8, rest[more] - 8
    return result


def _rig_groups(
    reader: Reader, start: np.ndarray, stop: np.ndarray, keep: np.ndarray
) -> tuple[list[str], np.ndarray]:
    """The distinct rig ids of the kept rows (ASCII, checked), sorted, and each row's index among them."""
    start, length = start[keep], (stop - start)[keep]
    width = int(length.max(initial=0))
    if not len(keep) or width > _RIG_BLOCK or width == 0:
        text = reader.buf.decode("latin-1")
        return factorize([text[a : a + k] for a, k in zip(start.tolist(), length.tolist(), strict=True)])
    block = np.ndarray((len(reader.buf) - width + 1, width), np.uint8, reader.buf, 0, (1, 1))[start]
    block[np.arange(width) >= length[:, None]] = 0
    # Fixed-width byte strings drop trailing zero bytes when compared: a rig id that ends in
    # NUL characters would be taken for a shorter one, so such a batch is grouped in Python.
    distinct, codes = np.unique(block.view(f"S{width}").ravel(), return_inverse=True)
    if (np.array([len(d) for d in distinct.tolist()])[codes] != length).any():
        text = reader.buf.decode("latin-1")
        return factorize([text[a : a + k] for a, k in zip(start.tolist(), length.tolist(), strict=True)])
    # np.unique sorts bytes, which for ASCII is the order of the strings.
    return [d.decode() for d in distinct.tolist()], codes.astype(np.int64).reshape(-1)
