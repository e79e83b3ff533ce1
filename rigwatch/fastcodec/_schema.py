"""Reading a record schema into the flat field layout the batch decoder works on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rigwatch.fastcodec.exceptions import UnsupportedSchemaError

__all__ = ["FIXED_KINDS", "Field", "base_type", "flat_fields", "null_branch"]

#: Kinds whose present value has a fixed width on the wire (nullable doubles when not null).
FIXED_KINDS = frozenset({"double", "nullable_double", "boolean"})
_PLAIN = {"string": "string", "long": "long", "int": "int", "double": "double", "boolean": "boolean"}


@dataclass(frozen=True)
class Field:
    """One top-level field: its name, kind and, for a nullable double, its two branch bytes."""

    name: str
    kind: str
    null_byte: int = 0
    value_byte: int = 0


def base_type(avro_type: Any) -> Any:
    """*avro_type* without a ``logicalType`` wrapper.

    :class:`~rigwatch.codec.Codec` drops every logical type, so a ``timestamp-millis``
    long is a plain long on both paths.
    """
    if isinstance(avro_type, dict) and avro_type.get("type") in _PLAIN:
        return avro_type["type"]
    return avro_type


def null_branch(avro_type: Any) -> tuple[int, Any] | None:
    """``(index of "null", other branch)`` for a two-branch union with ``"null"``, else None."""
    if isinstance(avro_type, list) and len(avro_type) == 2 and "null" in avro_type:
        null_at = avro_type.index("null")
        return null_at, base_type(avro_type[1 - null_at])
    return None


def flat_fields(schema: dict[str, Any]) -> tuple[Field, ...]:
    """The fields of a flat record of strings, longs, ints, doubles, booleans and nullable doubles.

    Raises
    ------
    UnsupportedSchemaError
        For any other field type, naming the field and its type.
    """
    if schema.get("type") != "record":
        raise UnsupportedSchemaError(f"{schema.get('name')}: expected a record schema, got {schema!r}")
    fields = []
    for field in schema["fields"]:
        avro_type = base_type(field["type"])
        union = null_branch(avro_type)
        if isinstance(avro_type, str) and avro_type in _PLAIN:
            fields.append(Field(field["name"], _PLAIN[avro_type]))
        elif union is not None and union[1] == "double":
            # A branch index is a zigzag varint: index i is the single byte 2 * i.
            null_at = union[0]
            fields.append(Field(field["name"], "nullable_double", 2 * null_at, 2 * (1 - null_at)))
        else:
            raise UnsupportedSchemaError(
                f"{schema['name']}.{field['name']}: type {field['type']!r} is not supported by the batch"
                " decoder; expected string, long, int, double, boolean or a union of null and double"
            )
    return tuple(fields)
