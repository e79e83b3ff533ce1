"""``POST /score``: JSON readings through the streaming scorer's own batch code, no I/O.

Each reading is checked against the SensorReading schema (the request fields
are made from it), completed the way a producer would (an ``event_id`` when it
has none, ``event_time`` now), encoded as the producer's bytes and scored by
:meth:`Scorer.score <services.scorer.handler.Scorer.score>` with the
streaming humility rules; predictions are decoded back from the bytes the
scorer would publish. So a reading gets here exactly what it gets on
``rig.predictions`` (``rigwatch score`` does the same for a file), and the
bytes scored are the bytes the console publishes to the readings topic.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rigwatch.exceptions import ConfigError
from services.console.validation import Param
from services.scorer.handler import Scorer

__all__ = ["Scored", "complete", "reading_params", "score_readings"]

#: Filled in when a reading has none: producers must send unique ids, so the console makes one.
_GENERATED = {"event_id": "unique id; a new uuid4 when absent", "event_time": "epoch ms; now when absent"}


def reading_params(schema: Mapping[str, Any]) -> tuple[Param, ...]:
    """The fields of one JSON reading: the SensorReading schema's, typed as the schema types them.

    ``rig_id`` is required (the readings topic is keyed by it); ``event_id``,
    ``cycle`` (0) and ``event_time`` get defaults; a sensor left out is null, as
    on Kafka. Sensors may be ``NaN`` or infinite: the scorer scores them as missing.

    Raises
    ------
    ConfigError
        The schema has a field of a type the console cannot take from JSON.

    Examples
    --------
    >>> from rigwatch.schemas import load_schema
    >>> params = {p.name: p for p in reading_params(load_schema("SensorReading"))}
    >>> params["rig_id"].required, params["psa_bar"].type, params["psa_bar"].nullable
    (True, 'number', True)
    """
    out = []
    for f in schema["fields"]:
        name, kind, doc = f["name"], f["type"], f.get("doc", "")
        if kind == "string":
            out.append(
                Param(name, "string", _GENERATED.get(name, doc), required=name == "rig_id", min_length=1)
            )
        elif kind == "long" or (isinstance(kind, dict) and kind.get("type") == "long"):
            out.append(
                Param(name, "integer", _GENERATED.get(name, doc), default=0 if name == "cycle" else None)
            )
        elif isinstance(kind, list) and sorted(kind) == ["double", "null"]:
            out.append(
                Param(
                    name,
                    "number",
                    doc or "sensor value; null or absent: missing",
                    nullable=True,
                    finite=False,
                )
            )
        else:
            raise ConfigError(f"SensorReading field {name}: type {kind!r} cannot be read from JSON")
    return tuple(out)


def complete(reading: dict[str, Any], now_ms: int, new_id: Callable[[], str] | None = None) -> dict[str, Any]:
    """*reading* (parsed) as a producer sends it: an ``event_id`` and an ``event_time`` always set.

    Examples
    --------
    >>> r = complete({"event_id": None, "rig_id": "rig-7", "cycle": 0, "event_time": None}, 5, lambda: "e1")
    >>> r["event_id"], r["event_time"]
    ('e1', 5)
    """
    out = dict(reading)
    if out.get("event_id") is None:
        out["event_id"] = (new_id or _uuid)()
    if out.get("event_time") is None:
        out["event_time"] = now_ms
    return out


def _uuid() -> str:
    return str(uuid.uuid4())


@dataclass
class Scored:
    """What one request's readings gave.

    ``values`` are the encoded readings (what is published), in input order;
    ``predictions`` the decoded Prediction of every scored reading with its
    ``index`` in the request; ``rejects`` every reading the scorer would send to
    the DLQ, with ``index``, ``event_id``, ``reason`` and ``detail``.
    """

    values: list[bytes] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)


def score_readings(
    scorer: Scorer,
    encode: Callable[[dict[str, Any]], bytes],
    decode: Callable[[bytes], dict[str, Any]],
    readings: Sequence[dict[str, Any]],
    now_ms: int,
) -> Scored:
    """Encode *readings* (completed), score the bytes with *scorer*, decode its predictions.

    Parameters
    ----------
    scorer
        The streaming scorer of the champion, with the streaming humility rules.
    encode
        The SensorReading encoder (``compile_encoder(codecs.sensor_reading)``).
    decode
        The Prediction decoder (``codecs.prediction.decode``).
    readings
        Readings as :func:`complete` returns them.
    now_ms
        The ``scored_time`` of every prediction.
    """
    out = Scored(values=[encode(r) for r in readings])
    batch = scorer.score(out.values, now_ms=now_ms)
    for index, (_, value) in zip(batch.indices, batch.outputs, strict=True):
        out.predictions.append({"index": index, **decode(value)})
    out.rejects = [
        {"index": r.index, "event_id": readings[r.index]["event_id"], "reason": r.reason, "detail": r.detail}
        for r in batch.rejects
    ]
    return out
