"""``rigwatch tail``: decode any rig topic for people, one JSON object a line."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Message

from rigwatch.exceptions import DecodeError
from rigwatch.schemas import Codecs

__all__ = ["decode_any", "describe", "json_lines"]


def decode_any(codecs: Codecs, value: bytes | None) -> tuple[str, dict[str, Any]]:
    """Decode *value* with whichever record codec its fingerprint names.

    Examples
    --------
    >>> codecs = Codecs.load()
    >>> actual = {"event_id": "e", "rig_id": "r", "label": "3", "observed_time": 1}
    >>> decode_any(codecs, codecs.actual.encode(actual))[0]
    'Actual'
    """
    error: DecodeError | None = None
    for codec in codecs.all():
        try:
            return codec.name, codec.decode(value)
        except DecodeError as exc:
            # unknown_schema just means "another record type": keep looking.
            if exc.reason != "unknown_schema" or error is None:
                error = exc
    assert error is not None
    raise error


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


def describe(codecs: Codecs, msg: Message) -> dict[str, Any]:
    """A JSON-ready view of one message: position, key, headers and the decoded record."""
    value = msg.value() or b""
    out: dict[str, Any] = {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "key": _text(msg.key()),
    }
    headers = msg.headers()
    if headers:
        out["headers"] = {k: _text(v) for k, v in headers}  # type: ignore[str-unpack]
    try:
        out["type"], out["value"] = decode_any(codecs, value)
    except DecodeError as exc:
        out["type"] = "undecodable"
        out["decode_error"] = str(exc)
        out["value_base64"] = base64.b64encode(value).decode()
    return out


def json_lines(codecs: Codecs, messages: Iterator[Message], limit: int | None) -> Iterator[str]:
    for n, msg in enumerate(messages, start=1):
        yield json.dumps(describe(codecs, msg), default=str)
        if limit is not None and n >= limit:
            return
