"""Request fields, declared once: each :class:`Param` both checks a request and describes itself in OpenAPI.

Parsing is strict, because a typo must not pass as a default: an unknown field
is refused, a string where a number is expected is refused (``"12.5"`` is not
a number), ``true`` is no number either. Every refusal is a 400
:class:`~services.console.errors.ApiError` naming the field by its path
(``readings[3].psa_bar``) and echoing the value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rigwatch.exceptions import RigwatchError
from rigwatch.lifecycle.audit import parse_since
from services.console.errors import ApiError

__all__ = ["TYPES", "Param", "parse_body", "parse_object", "parse_query"]

#: What a :class:`Param` may be. ``time`` is an instant: epoch milliseconds, a span back from
#: now (``10m``, ``2h``, ``1d``) or an ISO time (UTC without a zone); it parses to epoch ms.
TYPES = ("string", "number", "integer", "boolean", "time", "array")
_LONG = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Param:
    """One request field (body or query) or path parameter.

    Parameters
    ----------
    name
        The field's name.
    type
        One of :data:`TYPES`; an ``array`` holds objects whose fields are *items*.
    description
        For the OpenAPI description.
    required
        Absent is an error (else it is ``default``).
    nullable
        ``null`` is a value (else ``null`` counts as absent).
    default
        The value when absent.
    enum
        The allowed values of a string.
    minimum, maximum
        Bounds of a number or integer; ``exclusive`` makes them strict.
    min_length
        Shortest string.
    pattern
        A string must match it whole.
    finite
        A number must be finite (JSON readers accept ``NaN`` and ``Infinity``).
    items
        The fields of each object of an ``array``.
    one_or_many
        An ``array`` that also takes a single object (as a list of one).
    max_items
        Longest ``array``.

    Examples
    --------
    >>> percent = Param("percent", "number", minimum=0, maximum=100, exclusive=True)
    >>> parse_object({"percent": 10}, [percent])
    {'percent': 10.0}
    >>> parse_object({"percent": "10"}, [percent])
    Traceback (most recent call last):
    ...
    services.console.errors.ApiError: percent: expected a number, got a string
    """

    name: str
    type: str
    description: str = ""
    required: bool = False
    nullable: bool = False
    default: Any = None
    enum: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False
    min_length: int | None = None
    pattern: str | None = None
    finite: bool = True
    items: tuple[Param, ...] = ()
    one_or_many: bool = False
    max_items: int | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"param {self.name}: type {self.type!r} is not one of {TYPES}")

    def schema(self) -> dict[str, Any]:
        """This field as a JSON Schema (OpenAPI 3.0 flavour: ``nullable`` rather than a type list)."""
        out: dict[str, Any]
        if self.type == "array":
            obj = object_schema(self.items)
            out = {"type": "array", "items": obj}
            if self.max_items is not None:
                out["maxItems"] = self.max_items
            if self.one_or_many:
                out = {"oneOf": [out, obj]}
        elif self.type == "time":
            out = {"type": "string", "example": "10m"}
        else:
            out = {"type": self.type}
        if self.description:
            out["description"] = self.description
        if self.enum:
            out["enum"] = list(self.enum)
        if self.nullable:
            out["nullable"] = True
        if self.default is not None:
            out["default"] = self.default
        if self.minimum is not None:
            out["minimum"] = self.minimum
            if self.exclusive:
                out["exclusiveMinimum"] = True
        if self.maximum is not None:
            out["maximum"] = self.maximum
            if self.exclusive:
                out["exclusiveMaximum"] = True
        if self.min_length is not None:
            out["minLength"] = self.min_length
        if self.pattern is not None:
            out["pattern"] = self.pattern
        return out

    # ------------------------------------------------------------------ parsing

    def parse(self, value: Any, where: str) -> Any:
        """*value* (from JSON) checked and converted; *where* is its path, for errors."""
        if value is None:
            if self.nullable:
                return None
            raise ApiError(400, f"{where}: expected {self._expected()}, got null", field=where, value=None)
        parse = getattr(self, f"_{self.type}")
        return parse(value, where)

    def _expected(self) -> str:
        if self.type == "array":
            return "a list of objects" + (" (or one object)" if self.one_or_many else "")
        if self.type == "time":
            return "a time (epoch ms, a span like 10m, or an ISO time)"
        if self.enum:
            return "one of " + ", ".join(self.enum)
        return {"integer": "an integer", "string": "a string", "number": "a number"}.get(
            self.type, f"a {self.type}"
        )

    def _refuse(self, where: str, value: Any, why: str | None = None) -> ApiError:
        why = why or f"expected {self._expected()}, got {_kind(value)}"
        return ApiError(400, f"{where}: {why}", field=where, value=value)

    def _string(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self._refuse(where, value)
        if self.enum and value not in self.enum:
            raise self._refuse(where, value, f"{value!r} is not one of {', '.join(self.enum)}")
        if self.min_length is not None and len(value.strip()) < self.min_length:
            raise self._refuse(where, value, "expected a non-empty string")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise self._refuse(where, value, f"{value!r} does not match {self.pattern}")
        return value

    def _number(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._refuse(where, value)
        try:
            number = float(value)
        except OverflowError:
            raise self._refuse(where, value, "number too large for a double") from None
        if self.finite and not math.isfinite(number):
            raise self._refuse(where, value, f"expected a finite number, got {number}")
        self._bounds(number, where, value)
        return number

    def _integer(self, value: Any, where: str) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 1e12 or 5.0 from a JSON writer that only has doubles
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._refuse(where, value)
        low, high = _LONG
        if not low <= value <= high:
            raise self._refuse(where, value, "integer out of the 64-bit range")
        self._bounds(value, where, value)
        return value

    def _bounds(self, number: float, where: str, value: Any) -> None:
        low, high = self.minimum, self.maximum
        if self.exclusive:
            bad = (low is not None and number <= low) or (high is not None and number >= high)
            span = f"between {low:g} and {high:g} (exclusive)" if low is not None and high is not None else ""
        else:
            bad = (low is not None and number < low) or (high is not None and number > high)
            span = f"between {low:g} and {high:g}" if low is not None and high is not None else ""
        if bad:
            span = span or (f"at least {low:g}" if low is not None else f"at most {high:g}")
            raise self._refuse(where, value, f"{value} is out of range: expected {span}")

    def _boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self._refuse(where, value)
        return value

    def _time(self, value: Any, where: str) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if not isinstance(value, str):
            raise self._refuse(where, value)
        if value.strip().lstrip("-").isdigit():
            return int(value)
        try:
            return parse_since(value)
        except RigwatchError:
            raise self._refuse(
                where, value, f"{value!r}: expected epoch ms, a span like 10m, 2h, 1d or an ISO time"
            ) from None

    def _array(self, value: Any, where: str) -> list[dict[str, Any]]:
        if isinstance(value, dict) and self.one_or_many:
            value = [value]
        if not isinstance(value, list) or not value:
            raise self._refuse(where, value, None if not isinstance(value, list) else "expected at least one")
        if self.max_items is not None and len(value) > self.max_items:
            raise self._refuse(
                where, f"{len(value)} items", f"{len(value)} items, at most {self.max_items} per request"
            )
        return [parse_object(item, self.items, f"{where}[{i}]") for i, item in enumerate(value)]


def object_schema(params: Sequence[Param]) -> dict[str, Any]:
    """The JSON Schema of an object with *params* as its fields (no others)."""
    out: dict[str, Any] = {
        "type": "object",
        "properties": {p.name: p.schema() for p in params},
        "additionalProperties": False,
    }
    required = [p.name for p in params if p.required]
    if required:
        out["required"] = required
    return out


def _kind(value: Any) -> str:
    """What JSON calls *value*'s type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def parse_object(data: Any, params: Sequence[Param], where: str = "") -> dict[str, Any]:
    """*data* (a decoded JSON object) checked against *params*: every param's value, defaults filled in.

    Raises
    ------
    ApiError
        400 naming the first field that is missing, unknown or wrong.

    Examples
    --------
    >>> params = [Param("reason", "string", default="other"), Param("text", "string", required=True)]
    >>> parse_object({"text": "ok"}, params)
    {'reason': 'other', 'text': 'ok'}
    >>> parse_object({"txt": "ok"}, params)
    Traceback (most recent call last):
    ...
    services.console.errors.ApiError: txt: unknown field; expected some of: reason, text
    """
    prefix = f"{where}." if where else ""
    if not isinstance(data, dict):
        name = where or "body"
        raise ApiError(400, f"{name}: expected a JSON object, got {_kind(data)}", field=name, value=data)
    known = {p.name for p in params}
    for key in data:
        if key not in known:
            listed = ", ".join(p.name for p in params) or "none"
            raise ApiError(
                400,
                f"{prefix}{key}: unknown field; expected some of: {listed}",
                field=f"{prefix}{key}",
                value=data[key],
            )
    out: dict[str, Any] = {}
    for param in params:
        path = f"{prefix}{param.name}"
        if param.name not in data or (data[param.name] is None and not param.nullable):
            if param.required:
                raise ApiError(400, f"{path}: missing; expected {param._expected()}", field=path, value=None)
            out[param.name] = param.default
            continue
        out[param.name] = param.parse(data[param.name], path)
    return out


def parse_body(raw: bytes, params: Sequence[Param] | None) -> dict[str, Any]:
    """A request body: JSON decoded, then :func:`parse_object`; an empty body is ``{}``.

    *params* None: the route takes no body, and a non-empty one is refused.

    Examples
    --------
    >>> parse_body(b'{"text": "fine on rig 7"}', [Param("text", "string", required=True)])
    {'text': 'fine on rig 7'}
    >>> parse_body(b'{"text": ', [Param("text", "string")])
    Traceback (most recent call last):
    ...
    services.console.errors.ApiError: body: not JSON: Expecting value: line 1 column 10 (char 9)
    """
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ApiError(400, f"body: not JSON: {exc}", field="body", value=None) from None
    if params is None:
        if data != {}:
            raise ApiError(400, "body: this request takes no body", field="body", value=data)
        return {}
    return parse_object(data, params)


def parse_query(query: Mapping[str, str], params: Sequence[Param]) -> dict[str, Any]:
    """Query parameters (text) checked against *params*, converted to their types.

    Examples
    --------
    >>> parse_query({"limit": "20"}, [Param("limit", "integer", minimum=1, default=100)])
    {'limit': 20}
    >>> parse_query({"limit": "many"}, [Param("limit", "integer", minimum=1, default=100)])
    Traceback (most recent call last):
    ...
    services.console.errors.ApiError: limit: expected an integer, got 'many'
    """
    typed: dict[str, Any] = {}
    by_name = {p.name: p for p in params}
    for key, text in query.items():
        param = by_name.get(key)
        if param is None or param.type in ("number", "integer", "boolean"):
            typed[key] = _from_text(param, key, text)
        else:
            typed[key] = text
    return parse_object(typed, params)


def _from_text(param: Param | None, key: str, text: str) -> Any:
    if param is None:
        return text  # parse_object names it as unknown
    try:
        if param.type == "integer":
            return int(text)
        if param.type == "number":
            return float(text)
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
    except ValueError:
        pass
    raise ApiError(400, f"{key}: expected {param._expected()}, got {text!r}", field=key, value=text)
