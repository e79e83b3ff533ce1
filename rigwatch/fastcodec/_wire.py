"""Writers of Avro primitives for the generated encoders, each exact or raising :class:`Fallback`."""

from __future__ import annotations

import functools
import operator
import struct
from collections.abc import Callable

__all__ = ["Fallback", "boolean", "fail", "key_writer", "long_writer", "size", "varint", "write_int"]

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
#: Zigzag varints of 0..63 (single bytes): most string lengths.
LENGTHS = tuple(bytes((2 * n,)) for n in range(64))
_BYTES = tuple(bytes((n,)) for n in range(128))
#: The continuation bits of a varint of n bytes: 0x80 in every byte but the last.
_CONTINUED = tuple(sum(0x80 << (8 * i) for i in range(n - 1)) for n in range(9))
_pack_h = struct.Struct("<H").pack
_MEMO_SIZE = 4096


class Fallback(Exception):
    """This record needs ``Codec.encode``: it writes it exactly as fastavro does, or raises."""


def fail() -> bytes:
    raise Fallback


def varint(z: int) -> bytes:
    """Avro varint of the already zigzagged non-negative *z*."""
    if z < 0x80:
        return _BYTES[z]
    if z < 0x4000:
        return bytes((z & 0x7F | 0x80, z >> 7))
    if z < 1 << 56:
        # Spread the 7-bit groups into bytes in three mask-and-shift steps instead of a loop.
        x = (z & 0xFFFFFFF) | ((z & 0xFFFFFFF0000000) << 4)
        x = (x & 0x00003FFF00003FFF) | ((x & 0x0FFFC0000FFFC000) << 2)
        x = (x & 0x007F007F007F007F) | ((x & 0x3F803F803F803F80) << 1)
        n = (z.bit_length() + 6) // 7
        return (x | _CONTINUED[n]).to_bytes(n, "little")
    out = bytearray()
    while z >= 0x80:
        out.append(z & 0x7F | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def size(n: int) -> bytes:
    """Varint of a length or count (never negative)."""
    return LENGTHS[n] if n < 64 else varint(2 * n)


@functools.cache
def _low_bytes() -> tuple[bytes, ...]:
    """The first two bytes of the varint of every long >= 8192, by its low 13 bits."""
    return tuple(bytes(((2 * u) & 0x7F | 0x80, (2 * u) >> 7 | 0x80)) for u in range(0x2000))


def long_writer() -> Callable[[int], bytes]:
    """A function writing a long, remembering the high-order bytes of large ones.

    A long >= 8192 is two bytes from its low 13 bits, then the varint of the rest; the
    rest of a millisecond timestamp changes every 8 s, so it is looked up, not computed.
    """
    low = _low_bytes()
    high: dict[int, bytes] = {}

    def write_long(value: int) -> bytes:
        if value.__class__ is not int:
            value = _as_int(value)
        if value >= 0:
            if value < 64:
                return _BYTES[value << 1]
            if value < 0x2000:
                return _pack_h(((value << 1) & 0x7E) | 0x80 | ((value >> 6) << 8))
            if value > _LONG_MAX:
                raise Fallback
            rest = high.get(value >> 13)
            if rest is None:
                if len(high) >= _MEMO_SIZE:
                    high.clear()
                rest = high[value >> 13] = varint(value >> 13)
            return low[value & 0x1FFF] + rest
        if value < _LONG_MIN:
            raise Fallback
        return varint(~(value << 1))  # zigzag of a negative v: (v << 1) ^ -1

    return write_long


def _as_int(value: object) -> int:
    """A numpy integer or a bool as the int fastavro writes for it; a float is the codec's to truncate."""
    if isinstance(value, float):
        raise Fallback
    return operator.index(value)  # type: ignore[arg-type]


def write_int(value: int) -> bytes:
    if value.__class__ is not int:
        value = _as_int(value)
    if not _INT_MIN <= value <= _INT_MAX:
        raise Fallback
    return varint((value << 1) ^ (value >> 63))


def boolean(value: bool) -> bytes:
    if value is True:
        return b"\x01"
    if value is False:
        return b"\x00"
    raise Fallback


def key_writer() -> Callable[[str], bytes]:
    """A function writing a map key with its length, remembering keys (class labels repeat)."""
    known: dict[str, bytes] = {}

    def write_key(key: str) -> bytes:
        out = known.get(key)
        if out is None:
            data = key.encode()
            out = size(len(data)) + data
            if key.__class__ is str and len(known) < _MEMO_SIZE:
                known[key] = out
        return out

    return write_key
