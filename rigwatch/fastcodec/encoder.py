"""Compile a record schema into a plain-Python encoder that writes what ``Codec.encode`` writes.

The encoder is Python source generated once from the schema: one straight-line
function with the field names, defaults, union branch bytes and struct formats baked
in, so encoding a record is a few calls per field and one ``bytes.join``.
Any value the generated code is not sure to write exactly as fastavro would (an
``int`` where a union expects a ``float``, a ``bool`` for a long, a non-dict record,
...) makes it hand the whole record to ``Codec.encode``, which writes it or raises.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from rigwatch.codec import MARKER, Codec
from rigwatch.fastcodec import _wire
from rigwatch.fastcodec._emit import Emitter

__all__ = ["compile_encoder"]


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
        "_Fallback": _wire.Fallback,
        "_fail": _wire.fail,
        "_long": _wire.long_writer(),
        "_int": _wire.write_int,
        "_boolean": _wire.boolean,
        "_key": _wire.key_writer(),
        "_size": _wire.size,
        "_LEN": _wire.LENGTHS,
        "_pack_d": struct.Struct("<d").pack,
        "_pack_bd": struct.Struct("<Bd").pack,
        **emitter.constants,
    }
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<rigwatch.fastcodec encoder of {codec.name}>", "exec"), namespace)
    encode: Callable[[dict[str, Any]], bytes] = namespace["encode"]
    encode.__doc__ = f"Encode one {codec.name} record; generated from its schema:\n\n{source}"
    return encode
