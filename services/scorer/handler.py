"""The scorer's pure batch logic: raw bytes in, encoded predictions and rejects out, no I/O."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

import numpy as np

from rigwatch.codec import Codec
from rigwatch.exceptions import SCORING_FAILED
from rigwatch.fastcodec import BatchDecoder, ColumnBatch, compile_encoder
from services.scorer.humility import HumilityRules, judge, training_range

__all__ = ["Model", "Reject", "ScoredBatch", "Scorer", "feature_matrix"]

#: Fields without which a reading cannot be keyed or joined.
REQUIRED_IDS = ("event_id", "rig_id")


class Model(Protocol):
    """What the scorer needs of a model package.

    A ``reference`` attribute (the reference profile of a
    :class:`~rigwatch.model.ModelPackage`) is optional: its ``features.<name>.min``
    and ``max`` are the training ranges of the ``outlying`` humility rule, which is
    skipped for a model without one.
    """

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
    """One batch's outputs: ``(key, Prediction bytes)`` in input order, and the rejects.

    ``indices[i]`` is the input position ``outputs[i]`` answers; every input
    position is in exactly one of ``indices`` or ``rejects``.
    """

    outputs: list[tuple[str, bytes]] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def feature_matrix(doubles: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model's float32 input (NaN where missing) and the boolean missing mask.

    A null or a non-finite value (NaN, ±inf) is missing: LightGBM scores it as
    missing and the prediction gets a ``missing:<feature>`` flag.

    Examples
    --------
    >>> x, missing = feature_matrix(np.array([[1.0, np.nan, np.inf]]), np.array([2, 0, 1]))
    >>> x.tolist(), missing.tolist()
    ([[nan, 1.0, nan]], [[True, False, True]])
    """
    picked = doubles[:, columns]
    missing = ~np.isfinite(picked)
    x = np.empty(picked.shape, dtype=np.float32)
    np.copyto(x, picked, casting="same_kind")
    x[missing] = np.nan
    return x, missing


class Scorer:
    """Decode, validate, score and encode one batch of SensorReading bytes.

    Parameters
    ----------
    model
        Anything with the :class:`Model` shape (a :class:`~rigwatch.model.ModelPackage`).
    readings, predictions
        Codecs of the input and output records; decoding and encoding use the
        schema-driven fast paths of :mod:`rigwatch.fastcodec`, which give exactly
        what the codecs give.
    role
        ``champion`` or ``challenger``, written on every prediction.
    rules
        The humility rules applied to every prediction (see
        :mod:`services.scorer.humility`); None means the defaults, which flag only.

    Raises
    ------
    ConfigError
        The rules override with a ``fallback_label`` that is not one of the model's classes.
    ModelError
        The model's reference profile has a training range that is not a pair of numbers.
    """

    def __init__(
        self,
        model: Model,
        readings: Codec,
        predictions: Codec,
        role: str = "champion",
        rules: HumilityRules | None = None,
    ) -> None:
        self.model, self.role = model, role
        self.rules = rules if rules is not None else HumilityRules()
        self.rules.check_classes(model.classes)
        self._low, self._high = training_range(getattr(model, "reference", None), model.features)
        self._decoder = BatchDecoder(readings)
        self._encode = compile_encoder(predictions)
        self._columns: np.ndarray | None = None

    @property
    def outlying_features(self) -> tuple[str, ...]:
        """Features the ``outlying`` rule checks: those with a training range (none if the rule is off)."""
        if self.rules.outlying_margin is None:
            return ()
        known = np.isfinite(self._low).tolist()
        return tuple(f for f, ok in zip(self.model.features, known, strict=True) if ok)

    def score(
        self, values: Sequence[bytes | None], now_ms: int, *, started: float | None = None
    ) -> ScoredBatch:
        """Score *values*; nothing is dropped (see :class:`ScoredBatch`).

        The humility rules run on the batch after the model: their flags go on the
        prediction, an ``override`` replaces its label, a ``reject`` makes the
        reading a :class:`Reject` with reason ``humility:<rule>`` instead.

        Every prediction's ``processing_ms`` is the time from *started* (a
        :func:`time.perf_counter` reading taken when the batch came off the consumer;
        the start of this call if None) to just before the batch's predictions are
        encoded. It is read once per batch, not per record, so all predictions of a
        batch carry the same value; it leaves out the loop that builds and encodes
        the predictions (a few microseconds a record).
        """
        if started is None:
            started = time.perf_counter()
        batch = self._decoder.decode(values)
        out = ScoredBatch(rejects=[Reject(i, e.reason, e.detail) for i, e in batch.rejects])
        rows = self._valid_rows(batch, out)
        if rows.size == 0:
            out.rejects.sort(key=lambda r: r.index)
            return out
        x, missing = feature_matrix(batch.doubles[rows], self._feature_columns(batch))
        try:
            proba = self.model.predict_proba(x)
        except Exception as exc:
            detail = f"model {self.model.version} raised {type(exc).__name__}: {exc}"
            out.rejects += [Reject(int(batch.index[row]), SCORING_FAILED, detail) for row in rows.tolist()]
            out.rejects.sort(key=lambda r: r.index)
            return out
        best = proba.argmax(axis=1)
        features, classes, encode = self.model.features, self.model.classes, self._encode
        verdicts = judge(self.rules, x, missing, proba.max(axis=1), self._low, self._high, features)
        fallback = self.rules.fallback_label
        event_ids, rig_ids = batch.strings["event_id"], batch.strings["rig_id"]
        cycles, times = batch.longs["cycle"].tolist(), batch.longs["event_time"].tolist()
        processing_ms = (time.perf_counter() - started) * 1000.0
        for i, (row, probs, top) in enumerate(zip(rows.tolist(), proba.tolist(), best.tolist(), strict=True)):
            label, verdict = classes[top], verdicts[i]
            flags: list[str] = []
            if verdict is not None:
                if verdict.action == "reject":
                    out.rejects.append(Reject(int(batch.index[row]), verdict.reason, verdict.detail))
                    continue
                flags = list(verdict.flags)
                if verdict.action == "override":
                    # Only the label is replaced: probabilities and confidence stay the
                    # model's, so drift and calibration keep measuring the model itself
                    # and the override:<rule> flag says the label is not its argmax.
                    label = cast(str, fallback)
            rig_id = rig_ids[row]
            prediction = {
                "event_id": event_ids[row],
                "rig_id": rig_id,
                "cycle": cycles[row],
                "event_time": times[row],
                "model_name": self.model.name,
                "model_version": self.model.version,
                "role": self.role,
                "probabilities": dict(zip(classes, probs, strict=True)),
                "predicted_label": label,
                "confidence": probs[top],
                "scored_time": now_ms,
                "flags": flags,
                "processing_ms": processing_ms,
            }
            out.outputs.append((rig_id, encode(prediction)))
            out.indices.append(int(batch.index[row]))
        out.rejects.sort(key=lambda r: r.index)
        return out

    def _valid_rows(self, batch: ColumnBatch, out: ScoredBatch) -> np.ndarray:
        """Rows with both ids; the others become ``missing_field`` rejects."""
        ok = np.ones(len(batch), dtype=bool)
        columns = [batch.strings[name] for name in REQUIRED_IDS]
        for row, ids in enumerate(zip(*columns, strict=True)):
            if all(ids):
                continue
            ok[row] = False
            detail = ", ".join(f"{name}={v!r}" for name, v in zip(REQUIRED_IDS, ids, strict=True) if not v)
            out.rejects.append(Reject(int(batch.index[row]), "missing_field", f"expected non-empty {detail}"))
        return np.flatnonzero(ok)

    def _feature_columns(self, batch: ColumnBatch) -> np.ndarray:
        if self._columns is None:
            names = batch.double_names
            self._columns = np.array([names.index(f) for f in self.model.features], dtype=np.intp)
        return self._columns
