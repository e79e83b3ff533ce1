"""Compile a record schema into a plain-Python encoder that writes what ``Codec.encode`` writes.

The encoder is Python source generated once from the schema: one straight-line
function with the field names, union branch bytes and struct formats baked in,
so encoding a record is a few attribute-free calls per field and one ``bytes.join``.
Any value the generated code is not sure to write exactly as fastavro would (an
``int`` where a union expects a ``float``, a ``bool`` for a long, a non-dict record,
...) makes it hand the whole record to ``Codec.encode``, which writes it or raises.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from rigwatch.codec import MARKER, Codec
from rigwatch.fastcodec._emit import Emitter

__all__ = ["compile_encoder"]

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
#: Zigzag varints of 0..63, which are single bytes; string lengths mostly fall here.
_LENGTHS = tuple(bytes((2 * n,)) for n in range(64))
_BYTES = tuple(bytes((n,)) for n in range(128))
#: The continuation bits of a varint of n bytes: 0x80 in every byte but the last.
_CONTINUED = tuple(sum(0x80 << (8 * i) for i in range(n - 1)) for n in range(9))
_pack_h = struct.Struct("<H").pack
_KEY_CACHE_SIZE = 1024
_HIGH_CACHE_SIZE = 4096


class _Fallback(Exception):
    """This record needs ``Codec.encode``."""


def _fail() -> Any:
    raise _Fallback


def _varint(z: int) -> bytes:
    """Avro varint of the already zigzagged non-negative *z*."""
    if z < 0x80:
        return _BYTES[z]
    if z < 0x4000:
        return bytes((z & 0x7F | 0x80, z >> 7))
    if z < 1 << 56:
        # Spread the 7-bit groups into bytes in three mask-and-shift steps (28, 14, 7 bits)
        # instead of a loop per byte: a millisecond timestamp is 6 bytes.
        x = (z & 0xFFFFFFF) | ((z & 0xFFFFFFF0000000) << 4)
        x = (x & 0x00003FFF00003FFF) | ((x & 0x0FFFC0000FFFC000) << 2)
        x = (x & 0x007F007F007F007F) | ((x & 0x3F803F803F803F80) << 1)
        size = (z.bit_length() + 6) // 7
        return (x | _CONTINUED[size]).to_bytes(size, "little")
    out = bytearray()
    while z >= 0x80:
        out.append(z & 0x7F | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _size(n: int) -> bytes:
    """Varint of a length or count (never negative)."""
    return _LENGTHS[n] if n < 64 else _varint(2 * n)


def _long(value: int, high: dict[int, bytes]) -> bytes:
    # Exactly int: fastavro writes a bool as 0/1 and truncates a float, the fallback does that.
    if value.__class__ is not int or not _LONG_MIN <= value <= _LONG_MAX:
        raise _Fallback
    z = (value << 1) ^ (value >> 63)
    if z < 0x4000:
        return _BYTES[z] if z < 0x80 else bytes((z & 0x7F | 0x80, z >> 7))
    # Past two bytes a varint is its low 14 bits then the varint of the rest. The rest of
    # a millisecond timestamp changes every 16 s, so its bytes are worth remembering.
    rest = high.get(z >> 14)
    if rest is None:
        rest = _varint(z >> 14)
        if len(high) >= _HIGH_CACHE_SIZE:
            high.clear()
        high[z >> 14] = rest
    return _pack_h((z & 0x7F) | ((z & 0x3F80) << 1) | 0x8080) + rest


def _int(value: int) -> bytes:
    if value.__class__ is not int or not _INT_MIN <= value <= _INT_MAX:
        raise _Fallback
    return _varint((value << 1) ^ (value >> 63))


def _boolean(value: bool) -> bytes:
    if value is True:
        return b"\x01"
    if value is False:
        return b"\x00"
    raise _Fallback


def _key(key: str, cache: dict[str, bytes]) -> bytes:
    """A map key with its length prefix, remembered (up to a bound) for the next record."""
    data = key.encode()
    size = len(data)
    out = _size(size) + data
    if key.__class__ is str and len(cache) < _KEY_CACHE_SIZE:
        cache[key] = out
    return out


def compile_encoder(codec: Codec) -> Callable[[dict[str, Any]], bytes]:
    """A function writing *codec*'s current schema, byte for byte what ``codec.encode`` writes.

    Supports records of string, long, int, double and boolean fields, unions of
    null and one of those, maps and arrays of them, and nested records (logical
    types are ignored, as the codec ignores them). Records it cannot write
    exactly as fastavro would go to ``codec.encode``, so errors are the codec's too.

    Raises
    ------
    UnsupportedSchemaError
        For a schema using any other type, naming the field.

    Examples
    --------
    >>> from rigwatch.schemas import Codecs
    >>> codec = Codecs.load().actual
    >>> encode = compile_encoder(codec)
    >>> record = {"event_id": "e1", "rig_id": "r", "label": "3", "observed_time": 1_700_000_000_000}
    >>> encode(record) == codec.encode(record)
    True
    """
    emitter = Emitter()
    body = emitter.record_body(codec.schema, "record")
    lines = [
        "def encode(record):",
        "    try:",
        *(f"        {line}" for line in body.lines),
        f"        return b''.join(({', '.join(['_PREFIX', *body.parts])},))",
        "    except Exception:",
        # Whatever went wrong, the codec decides: it writes the record or raises its own error.
        "        pass",
        "    return _codec_encode(record)",
    ]
    namespace: dict[str, Any] = {
        "_PREFIX": MARKER + codec.fingerprint,
        "_codec_encode": codec.encode,
        "_Fallback": _Fallback,
        "_fail": _fail,
        "_long": _long,
        "_high": {},
        "_size": _size,
        "_int": _int,
        "_boolean": _boolean,
        "_LEN": _LENGTHS,
        "_pack_d": struct.Struct("<d").pack,
        "_pack_bd": struct.Struct("<Bd").pack,
        "_key": _key,
        "_keys": {},
        **emitter.constants,
    }
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<rigwatch.fastcodec encoder of {codec.name}>", "exec"), namespace)
    encode: Callable[[dict[str, Any]], bytes] = namespace["encode"]
    encode.__doc__ = f"Encode one {codec.name} record; generated from its schema:\n\n{source}"
    return encode
