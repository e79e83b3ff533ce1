"""Column-at-a-time Avro readers: one numpy step reads a field of every record in a batch.

Records sit back to back in one buffer; ``pos`` holds each record's read position and
``end`` where its body stops. A row whose bytes leave the fast shape (a varint longer
than 10 bytes, an unexpected union branch, a read past its end, ...) is only flagged in
``bad``: the caller hands those rows to the exact per-record decoder, which decides.
"""

from __future__ import annotations

import copy

import numpy as np

__all__ = ["PAD", "Reader"]

#: Zero bytes after the last record, so no read of a flagged row leaves the buffer.
PAD = bytes(16)
_MAX_VARINT = 10


class Reader:
    """Read positions over selected records of one joined buffer (which must end with :data:`PAD`).

    Parameters
    ----------
    buf
        Every record of the batch, back to back, then :data:`PAD`.
    pos, end
        Per row: where its next field starts and where its body ends (exclusive).
    """

    def __init__(self, buf: bytes, pos: np.ndarray, end: np.ndarray) -> None:
        self.buf = buf
        self.u8 = np.frombuffer(buf, dtype=np.uint8)
        # A float64 at every byte offset (stride 1): f8[p] is the double stored at byte p.
        self.f8 = np.ndarray((len(buf) - 7,), dtype="<f8", buffer=buf, strides=(1,))
        self.pos = pos.astype(np.int64, copy=True)
        self.end = end
        self.bad = np.zeros(len(pos), dtype=bool)

    def subset(self, rows: np.ndarray) -> Reader:
        """A reader over *rows* of this one, starting where they stand."""
        sub = copy.copy(self)  # shares the buffer and its views
        sub.pos, sub.end, sub.bad = self.pos[rows], self.end[rows], self.bad[rows]
        return sub

    def _advance(self, step: np.ndarray | int) -> None:
        self.pos += step
        # Past its end a row is bad; pinning it there keeps its later reads inside the PAD.
        over = self.pos > self.end
        self.bad |= over
        np.minimum(self.pos, self.end, out=self.pos)

    def varint(self) -> np.ndarray:
        """A zigzag varint (long or int) per row, as int64."""
        u8, pos = self.u8, self.pos
        byte = u8[pos]
        value = (byte & 0x7F).astype(np.uint64)
        more = byte >= 0x80
        size = np.ones(len(pos), dtype=np.int64)
        for k in range(1, _MAX_VARINT):
            if not more.any():
                break
            byte = np.where(more, u8[pos + k], 0)
            value |= (byte & 0x7F).astype(np.uint64) << np.uint64(7 * k)
            size += more
            if k == _MAX_VARINT - 1:
                # Bit 63 is the only one a tenth byte may carry; more would overflow int64.
                self.bad |= more & (byte > 1)
            more &= byte >= 0x80
        self.bad |= more
        self._advance(size)
        half = (value >> np.uint64(1)).view(np.int64)
        return half ^ -(value & np.uint64(1)).view(np.int64)

    def string(self) -> tuple[np.ndarray, np.ndarray]:
        """Start and stop offsets of a length-prefixed string per row (decoded later)."""
        length = self.varint()
        wrong = (length < 0) | (length > self.end - self.pos)
        self.bad |= wrong
        length[wrong] = 0
        start = self.pos.copy()
        self._advance(length)
        return start, self.pos.copy()

    def double(self) -> np.ndarray:
        value = self.f8[self.pos]
        self._advance(8)
        return value

    def nullable_double(self, null_byte: int, value_byte: int) -> tuple[np.ndarray, np.ndarray]:
        """Values (NaN where null) and the null mask of a union of null and double."""
        branch = self.u8[self.pos]
        present = branch == value_byte
        null = branch == null_byte
        self.bad |= ~(present | null)
        value = self.f8[self.pos + 1]
        value[~present] = np.nan
        self._advance(1 + 8 * present.astype(np.int64))
        return value, null

    def boolean(self) -> np.ndarray:
        byte = self.u8[self.pos]
        self.bad |= byte > 1
        self._advance(1)
        return byte == 1
