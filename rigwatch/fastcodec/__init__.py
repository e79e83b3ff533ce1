"""Schema-driven fast paths around :class:`~rigwatch.codec.Codec` for the scorer's hot loop.

:class:`BatchDecoder` turns a batch of single-object records into numpy columns;
:func:`compile_encoder` builds a plain-Python encoder for one schema. Both give exactly
what the codec gives (bytes, records, reject reasons and details): whatever they are
not sure of, they hand to the codec.
"""

from __future__ import annotations

from rigwatch.fastcodec.batch import ColumnBatch
from rigwatch.fastcodec.decoder import BatchDecoder
from rigwatch.fastcodec.encoder import compile_encoder
from rigwatch.fastcodec.exceptions import UnsupportedSchemaError

__all__ = ["BatchDecoder", "ColumnBatch", "UnsupportedSchemaError", "compile_encoder"]
