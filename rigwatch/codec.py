"""Avro single-object encoding: ``C3 01`` + 8-byte schema fingerprint + Avro body.

The fingerprint tells a reader which schema wrote a record, so no registry server
is needed: a :class:`Codec` knows the current schema (used to write and as the
reader schema) and every earlier writer schema of the same record, and resolves
old records to the current shape (fields added since get their defaults).
"""

from __future__ import annotations

import copy
import io
import struct
from collections.abc import Iterable
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

from rigwatch.exceptions import DecodeError

__all__ = ["MARKER", "Codec", "fingerprint"]

MARKER = b"\xc3\x01"
_HEADER = len(MARKER) + 8
_EMPTY = 0xC15D213AA4D7A795


def _rabin_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


_TABLE = _rabin_table()


def fingerprint(schema: dict[str, Any]) -> bytes:
    """CRC-64-AVRO (Rabin) fingerprint of a schema's parsing canonical form, little-endian.

    Examples
    --------
    >>> fingerprint({"type": "record", "name": "R", "fields": []}).hex()
    '39f160b814c962bb'
    """
    fp = _EMPTY
    for byte in to_parsing_canonical_form(schema).encode():
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return struct.pack("<Q", fp)


def _without_logical_types(schema: Any) -> Any:
    """Drop ``logicalType`` so timestamps stay epoch-millisecond ints in Python.

    Converting every timestamp to ``datetime`` costs more than the rest of the
    decode; the canonical form (and so the fingerprint) ignores logical types anyway.
    """
    if isinstance(schema, dict):
        return {k: _without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_without_logical_types(v) for v in schema]
    return schema


class Codec:
    """Encode and decode one record type in Avro single-object encoding.

    Parameters
    ----------
    schema
        The current schema: it writes every record and is the reader schema.
    writers
        Earlier versions of the same record that producers may still write.

    Examples
    --------
    >>> schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}
    >>> codec = Codec(schema)
    >>> codec.decode(codec.encode({"a": 7}))
    {'a': 7}
    """

    def __init__(self, schema: dict[str, Any], writers: Iterable[dict[str, Any]] = ()) -> None:
        self.schema = copy.deepcopy(schema)
        self.name: str = schema["name"]
        self.fingerprint = fingerprint(schema)
        self._prefix = MARKER + self.fingerprint
        self._reader = fastavro.parse_schema(_without_logical_types(schema))
        # fingerprint -> parsed writer schema; None means "same as the reader".
        self._writers: dict[bytes, Any] = {self.fingerprint: None}
        for writer in writers:
            self.register_writer(writer)

    def register_writer(self, schema: dict[str, Any]) -> None:
        """Accept records written with *schema* (an earlier or later version of this record)."""
        fp = fingerprint(schema)
        if fp != self.fingerprint:
            self._writers[fp] = fastavro.parse_schema(_without_logical_types(schema))

    def encode(self, record: dict[str, Any]) -> bytes:
        """Serialise *record* with the current schema."""
        buf = io.BytesIO()
        buf.write(self._prefix)
        fastavro.schemaless_writer(buf, self._reader, record)
        return buf.getvalue()

    def decode(self, data: bytes | None) -> dict[str, Any]:
        """Deserialise *data*, resolving its writer schema to the current one.

        Raises
        ------
        DecodeError
            ``not_single_object`` (no ``C3 01`` marker), ``unknown_schema``
            (fingerprint of no known writer) or ``bad_body`` (the body does not
            parse, or bytes remain after it).
        """
        if data is None or len(data) < _HEADER or data[:2] != MARKER:
            head = bytes(data[:4]).hex() if data else "<empty>"
            raise DecodeError(
                "not_single_object",
                f"{self.name}: expected marker c301 and an 8-byte fingerprint, got {head!r}"
                f" ({len(data) if data else 0} bytes)",
            )
        fp = bytes(data[2:_HEADER])
        if fp not in self._writers:
            raise DecodeError(
                "unknown_schema",
                f"{self.name}: fingerprint {fp.hex()} is not a known writer schema"
                f" (known: {', '.join(k.hex() for k in self._writers)})",
            )
        writer = self._writers[fp]
        buf = io.BytesIO(data)
        buf.seek(_HEADER)
        try:
            if writer is None:
                record = fastavro.schemaless_reader(buf, self._reader, None)
            else:
                record = fastavro.schemaless_reader(buf, writer, self._reader)
        except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError...
            raise DecodeError(
                "bad_body", f"{self.name}: body does not parse: {type(exc).__name__}: {exc}"
            ) from exc
        rest = len(data) - buf.tell()
        if rest:
            raise DecodeError("bad_body", f"{self.name}: {rest} bytes left after the record")
        return record  # type: ignore[return-value]
