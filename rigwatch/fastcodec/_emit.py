"""Python source for writing Avro values of one schema, emitted once per schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rigwatch.fastcodec._schema import base_type, null_branch
from rigwatch.fastcodec.exceptions import UnsupportedSchemaError

__all__ = ["Code", "Emitter"]

_SCALARS = ("string", "long", "int", "double", "boolean")


@dataclass
class Code:
    """Statements to run, then the expressions of the bytes they write, in order."""

    lines: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)


def _indent(lines: list[str], depth: int = 1) -> list[str]:
    return [" " * (4 * depth) + line for line in lines]


class Emitter:
    """Emit code for values of a schema; constants the code needs collect in :attr:`constants`."""

    def __init__(self) -> None:
        self.constants: dict[str, Any] = {}
        self._count = 0

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}{self._count}"

    def _constant(self, value: Any) -> str:
        name = self._name("_c")
        self.constants[name] = value
        return name

    def record_body(self, schema: dict[str, Any], expr: str) -> Code:
        """Code writing the record named *expr* (a local variable)."""
        get = self._name("get")
        # fastavro writes any Mapping via .get; only a plain dict is sure to behave the same here.
        code = Code([f"if {expr}.__class__ is not dict:", "    raise _Fallback", f"{get} = {expr}.get"])
        for f in schema["fields"]:
            where = f"{schema.get('name')}.{f['name']}"
            # fastavro writes a missing field's default, or None when it has none.
            default = f", {self._constant(f['default'])}" if f.get("default") is not None else ""
            value = self.value(f["type"], f"{get}({f['name']!r}{default})", where)
            code.lines += value.lines
            code.parts += value.parts
        return code

    def value(self, avro_type: Any, expr: str, where: str) -> Code:
        """Code writing the value of *expr* (evaluated once) as *avro_type*."""
        kind = base_type(avro_type)
        if kind == "string":
            data, size = self._name("s"), self._name("n")
            return Code(
                [f"{data} = {expr}.encode()", f"{size} = len({data})"],
                [f"(_LEN[{size}] if {size} < 64 else _size({size}))", data],
            )
        if kind == "long":
            return Code([], [f"_long({expr}, _high)"])
        if kind in ("int", "boolean"):
            return Code([], [f"_{kind}({expr})"])
        if kind == "double":
            return Code([], [f"_pack_d({expr})"])
        union = null_branch(kind)
        if union is not None and union[1] in _SCALARS:
            return self._nullable(union[0], union[1], expr, where)
        if isinstance(kind, dict) and kind.get("type") == "record":
            name = self._name("r")
            body = self.record_body(kind, name)
            return Code([f"{name} = {expr}", *body.lines], body.parts)
        if isinstance(kind, dict) and kind.get("type") in ("map", "array"):
            return self._blocks(kind, expr, where)
        raise UnsupportedSchemaError(
            f"{where}: type {avro_type!r} is not supported by the compiled encoder; expected string,"
            " long, int, double, boolean, a union of null and one of those, a map, an array or a record"
        )

    def _nullable(self, null_at: int, other: str, expr: str, where: str) -> Code:
        value, out = self._name("u"), self._name("e")
        null_byte, branch = bytes((2 * null_at,)), 2 * (1 - null_at)
        if other == "double":
            # fastavro writes an int here as a double too, but picks the branch by validation;
            # only a float is sure to land on the double branch without it.
            return Code(
                [f"{value} = {expr}"],
                [
                    f"({null_byte!r} if {value} is None else _pack_bd({branch}, {value})"
                    f" if {value}.__class__ is float else _fail())"
                ],
            )
        inner = self.value(other, value, where)
        return Code(
            [
                f"{value} = {expr}",
                f"if {value} is None:",
                f"    {out} = {null_byte!r}",
                "else:",
                *_indent(inner.lines),
                f"    {out} = b''.join(({bytes((branch,))!r}, {', '.join(inner.parts)}))",
            ],
            [out],
        )

    def _blocks(self, schema: dict[str, Any], expr: str, where: str) -> Code:
        """A map or array: one block with the item count, its items, then the empty block."""
        items, parts, out = self._name("m"), self._name("p"), self._name("e")
        item = self._name("x")
        if schema["type"] == "map":
            key, head = self._name("k"), self._name("kb")
            inner = self.value(schema["values"], item, f"{where}[]")
            guard = f"{items}.__class__ is not dict"
            loop = [
                f"for {key}, {item} in {items}.items():",
                # Map keys repeat from record to record (class labels): keep their encodings.
                f"    {head} = _keys.get({key})",
                f"    if {head} is None:",
                f"        {head} = _key({key}, _keys)",
                *_indent(inner.lines),
                f"    {parts} += ({', '.join([head, *inner.parts])},)",
            ]
        else:
            inner = self.value(schema["items"], item, f"{where}[]")
            guard = f"{items}.__class__ is not list and {items}.__class__ is not tuple"
            loop = [
                f"for {item} in {items}:",
                *_indent(inner.lines),
                f"    {parts} += ({', '.join(inner.parts)},)",
            ]
        return Code(
            [
                f"{items} = {expr}",
                f"if {guard}:",
                "    raise _Fallback",
                f"if {items}:",
                f"    {parts} = [_size(len({items}))]",
                *_indent(loop),
                f"    {parts}.append(b'\\x00')",
                f"    {out} = b''.join({parts})",
                "else:",
                f"    {out} = b'\\x00'",
            ],
            [out],
        )
