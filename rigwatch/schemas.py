"""The wire contract: Avro schemas from ``schemas/`` and a codec per record type."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rigwatch.codec import Codec
from rigwatch.exceptions import ConfigError

__all__ = ["SCHEMA_FILES", "Codecs", "load_schema", "schema_dir"]

#: Record name -> file name in ``schemas/``.
SCHEMA_FILES = {
    "SensorReading": "sensor_reading.avsc",
    "Prediction": "prediction.avsc",
    "Actual": "actual.avsc",
    "MetricWindow": "metric_window.avsc",
    "Alert": "alert.avsc",
    "Deployment": "deployment.avsc",
    "AuditEvent": "audit_event.avsc",
    "ScorerStatus": "scorer_status.avsc",
}


def schema_dir() -> Path:
    """Where the ``.avsc`` files are: inside an installed wheel, or the repository's ``schemas/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_schemas", here.parent / "schemas"):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"no schemas folder at {here / '_schemas'} or {here.parent / 'schemas'}")


def load_schema(name: str) -> dict[str, Any]:
    """The current schema of record *name* (e.g. ``"SensorReading"``)."""
    try:
        file = SCHEMA_FILES[name]
    except KeyError:
        raise ConfigError(f"unknown record {name!r}; expected one of {sorted(SCHEMA_FILES)}") from None
    return json.loads((schema_dir() / file).read_text())


def _history(name: str) -> list[dict[str, Any]]:
    """Earlier versions of *name*, kept in ``schemas/history/<file stem>.v<N>.avsc``."""
    folder = schema_dir() / "history"
    stem = SCHEMA_FILES[name].removesuffix(".avsc")
    return [json.loads(p.read_text()) for p in sorted(folder.glob(f"{stem}.v*.avsc"))]


@dataclass(frozen=True)
class Codecs:
    """One codec per record type, each knowing its schema's history.

    Examples
    --------
    >>> codecs = Codecs.load()
    >>> actual = {"event_id": "e1", "rig_id": "r1", "label": "3", "observed_time": 0}
    >>> codecs.actual.decode(codecs.actual.encode(actual)) == actual
    True
    """

    sensor_reading: Codec
    prediction: Codec
    actual: Codec
    metric_window: Codec
    alert: Codec
    deployment: Codec
    audit_event: Codec
    scorer_status: Codec

    @classmethod
    def load(cls) -> Codecs:
        made = {name: Codec(load_schema(name), _history(name)) for name in SCHEMA_FILES}
        return cls(
            sensor_reading=made["SensorReading"],
            prediction=made["Prediction"],
            actual=made["Actual"],
            metric_window=made["MetricWindow"],
            alert=made["Alert"],
            deployment=made["Deployment"],
            audit_event=made["AuditEvent"],
            scorer_status=made["ScorerStatus"],
        )

    def all(self) -> tuple[Codec, ...]:
        return (
            self.sensor_reading,
            self.prediction,
            self.actual,
            self.metric_window,
            self.alert,
            self.deployment,
            self.audit_event,
            self.scorer_status,
        )
