"""The scorer's pure batch logic: raw bytes in, predictions and rejects out, no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from rigwatch.codec import Codec
from rigwatch.exceptions import DecodeError

__all__ = ["Model", "Reject", "ScoredBatch", "assemble_features", "score_batch"]

#: Fields without which a reading cannot be keyed or joined.
REQUIRED_IDS = ("event_id", "rig_id")


class Model(Protocol):
    """What the scorer needs of a model package."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def features(self) -> tuple[str, ...]: ...
    @property
    def classes(self) -> tuple[str, ...]: ...

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Reject:
    """Input record *index* of the batch could not be scored; it goes to the DLQ."""

    index: int
    reason: str
    detail: str


@dataclass
class ScoredBatch:
    """Predictions (with the input index each answers) and rejects of one batch."""

    predictions: list[dict[str, Any]] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def assemble_features(
    records: Sequence[dict[str, Any]], features: Sequence[str]
) -> tuple[np.ndarray, list[list[str]]]:
    """Feature matrix (float32, NaN for missing) and each row's ``missing:<feature>`` flags.

    Examples
    --------
    >>> x, flags = assemble_features([{"a": 1.0, "b": None}], ["a", "b"])
    >>> x.tolist(), flags
    ([[1.0, nan]], [['missing:b']])
    """
    x = np.empty((len(records), len(features)), dtype=np.float32)
    flags: list[list[str]] = []
    for i, record in enumerate(records):
        row_flags = []
        for j, name in enumerate(features):
            value = record.get(name)
            if value is None or not math.isfinite(value):
                x[i, j] = np.nan
                row_flags.append(f"missing:{name}")
            else:
                x[i, j] = value
        flags.append(row_flags)
    return x, flags


def score_batch(
    values: Sequence[bytes | None],
    *,
    codec: Codec,
    model: Model,
    now_ms: int,
    role: str = "champion",
) -> ScoredBatch:
    """Decode, validate and score one batch of SensorReading bytes.

    Every input index ends up in exactly one of ``predictions`` (via ``indices``)
    or ``rejects``: nothing is dropped.
    """
    out = ScoredBatch()
    records: list[dict[str, Any]] = []
    for index, value in enumerate(values):
        try:
            record = codec.decode(value)
        except DecodeError as exc:
            out.rejects.append(Reject(index, exc.reason, exc.detail))
            continue
        missing = [name for name in REQUIRED_IDS if not record.get(name)]
        if missing:
            detail = ", ".join(f"{name}={record.get(name)!r}" for name in missing)
            out.rejects.append(Reject(index, "missing_field", f"expected non-empty {detail}"))
            continue
        records.append(record)
        out.indices.append(index)
    if not records:
        return out
    x, flags = assemble_features(records, model.features)
    proba = model.predict_proba(x)
    best = proba.argmax(axis=1)
    classes = model.classes
    for record, row, top, row_flags in zip(records, proba.tolist(), best.tolist(), flags, strict=True):
        out.predictions.append(
            {
                "event_id": record["event_id"],
                "rig_id": record["rig_id"],
                "cycle": record["cycle"],
                "event_time": record["event_time"],
                "model_name": model.name,
                "model_version": model.version,
                "role": role,
                "probabilities": dict(zip(classes, row, strict=True)),
                "predicted_label": classes[top],
                "confidence": row[top],
                "scored_time": now_ms,
                "flags": row_flags,
            }
        )
    return out
