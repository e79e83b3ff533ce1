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
        self._named: dict[str, dict[str, Any]] = {}  # records by name and full name
        self._open: list[str] = []  # records being emitted, to refuse recursive ones

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}{self._count}"

    def _constant(self, value: Any) -> str:
        name = self._name("_c")
        self.constants[name] = value
        return name

    def record_body(self, schema: dict[str, Any], expr: str, namespace: str = "") -> Code:
        """Code writing the record named *expr* (a local variable)."""
        name = schema["name"]
        namespace = schema.get("namespace", namespace) if "." not in name else name.rpartition(".")[0]
        full = name if "." in name else f"{namespace}.{name}".lstrip(".")
        if full in self._open:
            raise UnsupportedSchemaError(
                f"{name}: a recursive record is not supported by the compiled encoder"
            )
        self._named[name.rpartition(".")[2]] = self._named[full] = schema
        self._open.append(full)
        get = self._name("get")
        # fastavro writes any Mapping via .get; only a plain dict is sure to behave the same here.
        code = Code([f"if {expr}.__class__ is not dict:", "    raise _Fallback"])
        if any("default" in f for f in schema["fields"]):
            code.lines.append(f"{get} = {expr}.get")
        for f in schema["fields"]:
            where = f"{schema.get('name')}.{f['name']}"
            if "default" in f:
                # fastavro writes a missing field's default.
                access = f"{get}({f['name']!r}, {self._constant(f['default'])})"
            else:
                # Missing, it is null for fastavro or an error; a KeyError sends it to the codec.
                access = f"{expr}[{f['name']!r}]"
            value = self.value(f["type"], access, where, namespace)
            code.lines += value.lines
            code.parts += value.parts
        self._open.pop()
        return code

    def value(self, avro_type: Any, expr: str, where: str, namespace: str = "") -> Code:
        """Code writing the value of *expr* (evaluated once) as *avro_type*."""
        kind = base_type(avro_type)
        if isinstance(kind, str) and (kind in self._named or f"{namespace}.{kind}" in self._named):
            kind = self._named.get(f"{namespace}.{kind}", self._named.get(kind))
        if kind == "string":
            data, size = self._name("s"), self._name("n")
            return Code(
                [f"{data} = {expr}.encode()", f"{size} = len({data})"],
                [f"(_LEN[{size}] if {size} < 64 else _size({size}))", data],
            )
        if kind == "long":
            return Code([], [f"_long({expr})"])
        if kind in ("int", "boolean"):
            return Code([], [f"_{kind}({expr})"])
        if kind == "double":
            return Code([], [f"_pack_d({expr})"])
        union = null_branch(kind)
        if union is not None and union[1] in _SCALARS:
            return self._nullable(union[0], union[1], expr, where)
        if isinstance(kind, dict) and kind.get("type") == "record":
            name = self._name("r")
            body = self.record_body(kind, name, namespace)
            return Code([f"{name} = {expr}", *body.lines], body.parts)
        if isinstance(kind, dict) and kind.get("type") in ("map", "array"):
            return self._blocks(kind, expr, where, namespace)
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
        # A plain long takes a bool or a numpy integer; fastavro's union validation does not.
        guard = (
            [f"if {value}.__class__ is not int:", "    raise _Fallback"] if other in ("long", "int") else []
        )
        return Code(
            [
                f"{value} = {expr}",
                f"if {value} is None:",
                f"    {out} = {null_byte!r}",
                "else:",
                *_indent(guard + inner.lines),
                f"    {out} = b''.join(({bytes((branch,))!r}, {', '.join(inner.parts)}))",
            ],
            [out],
        )

    def _blocks(self, schema: dict[str, Any], expr: str, where: str, namespace: str) -> Code:
        """A map or array: one block with the item count, its items, then the empty block."""
        items, parts, out = self._name("m"), self._name("p"), self._name("e")
        item = self._name("x")
        if schema["type"] == "map":
            key = self._name("k")
            inner = self.value(schema["values"], item, f"{where}[]", namespace)
            guard = f"{items}.__class__ is not dict"
            loop = [
                f"for {key}, {item} in {items}.items():",
                *_indent(inner.lines),
                f"    {parts} += (_key({key}), {', '.join(inner.parts)})",
            ]
        else:
            inner = self.value(schema["items"], item, f"{where}[]", namespace)
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
