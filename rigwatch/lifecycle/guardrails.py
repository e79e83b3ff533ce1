"""Checks a candidate model passes before it may serve a deployment; each one a :class:`GuardrailResult`.

Pure functions of packages, schemas and rows: no store, broker or clock, so the
promotion and its unit tests run the very same code. A failed check names what
failed (the feature, the class, the figures), because the operator reads it in
the refusal and on the audit topic.

========================  ===========================================================
``same_features``         feature names and their order equal the champion's
``features_in_schema``    every feature is a numeric field of the current SensorReading
``same_classes``          the class labels equal the champion's
``loads_and_scores``      the package loads and scores sample rows into probabilities
``reference_profile``     reference.json gives the drift profile and has a calibration
``accuracy``              on labelled rows, accuracy at most *tolerance* below the champion's
========================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rigwatch.data.columns import SENSOR_COLUMNS, Dataset
from rigwatch.exceptions import RigwatchError
from rigwatch.model.package import ModelPackage

__all__ = [
    "DEFAULT_TOLERANCE",
    "EvalData",
    "GuardrailResult",
    "accuracy_not_worse",
    "features_in_schema",
    "loads_and_scores",
    "reference_profile",
    "run_guardrails",
    "same_classes",
    "same_features",
]

#: How much lower (absolute) a candidate's accuracy may be than the champion's.
DEFAULT_TOLERANCE = 0.01
#: Rows of the reference sample scored by ``loads_and_scores``.
SAMPLE_ROWS = 200
_NUMERIC = frozenset({"int", "long", "float", "double"})


@dataclass(frozen=True)
class GuardrailResult:
    """One check: its name, whether it passed, and what it found.

    Examples
    --------
    >>> print(same_classes(("3", "20"), ("3", "20", "100")).detail)
    classes differ: candidate ('3', '20') vs champion ('3', '20', '100'): class '100' missing from candidate
    """

    name: str
    passed: bool
    detail: str

    def to_record(self) -> dict[str, Any]:
        """The AuditEvent ``guardrails`` item."""
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class EvalData:
    """Labelled rows to compare candidate and champion on: sensor columns by name and the true labels.

    Examples
    --------
    >>> rows = EvalData({"psa_bar": np.array([1.0, 2.0])}, np.array(["3", "100"]), "doc")
    >>> rows.matrix(("psa_bar",)).shape, rows.matrix(("tsb_temp",))
    ((2, 1), None)
    """

    columns: Mapping[str, np.ndarray]
    labels: np.ndarray
    source: str

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> EvalData:
        """The sensor columns and the cooler label (``cool_cond_y``) of *dataset*."""
        columns = {name: dataset.sensors[:, j] for j, name in enumerate(SENSOR_COLUMNS)}
        return cls(columns, dataset.cool_cond.astype(str), dataset.source)

    def __len__(self) -> int:
        return len(self.labels)

    def matrix(self, features: Sequence[str]) -> np.ndarray | None:
        """The rows in *features* order; None when a feature is not a column."""
        if any(f not in self.columns for f in features):
            return None
        return np.column_stack([np.asarray(self.columns[f], dtype=np.float64) for f in features])


def _names(values: Sequence[str]) -> str:
    return "(" + ", ".join(repr(v) for v in values) + ")"


def same_features(candidate: Sequence[str], champion: Sequence[str]) -> GuardrailResult:
    """The candidate reads the same features as the champion, in the same order.

    Examples
    --------
    >>> same_features(("psa_bar",), ("psa_bar", "tsb_temp")).detail
    "feature 'tsb_temp' missing from candidate"
    """
    name = "same_features"
    problems = [f"feature {f!r} missing from candidate" for f in champion if f not in candidate]
    problems += [f"feature {f!r} not read by the champion" for f in candidate if f not in champion]
    if not problems and tuple(candidate) != tuple(champion):
        at = next(i for i, (a, b) in enumerate(zip(candidate, champion, strict=True)) if a != b)
        problems.append(
            f"same features in another order: position {at} is {candidate[at]!r} in the candidate,"
            f" {champion[at]!r} in the champion"
        )
    if problems:
        return GuardrailResult(name, False, "; ".join(problems))
    return GuardrailResult(name, True, f"the champion's {len(champion)} features in its order")


def features_in_schema(features: Sequence[str], reading_schema: Mapping[str, Any]) -> GuardrailResult:
    """Every feature is a numeric field (or a nullable one) of the SensorReading schema producers write.

    Examples
    --------
    >>> schema = {"name": "SensorReading", "fields": [{"name": "rig_id", "type": "string"}]}
    >>> for problem in features_in_schema(("rig_id", "ts1_temp"), schema).detail.split("; "):
    ...     print(problem)
    feature 'rig_id' is a string field of SensorReading, not a number
    feature 'ts1_temp' is not a field of SensorReading
    """
    name, record = "features_in_schema", reading_schema.get("name", "SensorReading")
    types = {f["name"]: f["type"] for f in reading_schema["fields"]}
    problems = []
    for feature in features:
        if feature not in types:
            problems.append(f"feature {feature!r} is not a field of {record}")
            continue
        branches = types[feature] if isinstance(types[feature], list) else [types[feature]]
        kinds = [b if isinstance(b, str) else b.get("type") for b in branches]
        if not any(k in _NUMERIC for k in kinds) or any(k not in _NUMERIC | {"null"} for k in kinds):
            problems.append(
                f"feature {feature!r} is a {'/'.join(map(str, kinds))} field of {record}, not a number"
            )
    if problems:
        return GuardrailResult(name, False, "; ".join(problems))
    return GuardrailResult(name, True, f"all {len(features)} features are numeric fields of {record}")


def same_classes(candidate: Sequence[str], champion: Sequence[str]) -> GuardrailResult:
    """The candidate predicts the champion's classes (the labels consumers and the accuracy join know)."""
    name = "same_classes"
    if tuple(candidate) == tuple(champion):
        return GuardrailResult(name, True, f"classes {_names(champion)}")
    if set(candidate) == set(champion):
        # Probabilities travel as a map label -> value: the column order does not reach consumers.
        return GuardrailResult(
            name, True, f"classes {_names(champion)} (candidate's order {_names(candidate)})"
        )
    problems = [f"class {c!r} missing from candidate" for c in champion if c not in candidate]
    problems += [f"class {c!r} unknown to the champion" for c in candidate if c not in champion]
    return GuardrailResult(
        name,
        False,
        f"classes differ: candidate {_names(candidate)} vs champion {_names(champion)}:"
        f" {'; '.join(problems)}",
    )


def _sample_rows(package: ModelPackage, eval_data: EvalData | None) -> tuple[np.ndarray | None, str]:
    values = package.reference.get("sample", {}).get("values", {})
    if values and all(f in values for f in package.features):
        rows = np.column_stack(
            [np.asarray(values[f][:SAMPLE_ROWS], dtype=np.float64) for f in package.features]
        )
        return rows, "rows of its reference sample"
    labelled = None if eval_data is None else eval_data.matrix(package.features)
    if eval_data is not None and labelled is not None:
        return labelled[:SAMPLE_ROWS], f"rows of {eval_data.source}"
    return None, "no rows: the reference has no sample of every feature and no labelled data was given"


def loads_and_scores(
    load: Callable[[], ModelPackage], eval_data: EvalData | None = None
) -> tuple[GuardrailResult, ModelPackage | None]:
    """Load the package and score sample rows: one finite probability per class, summing to 1 per row.

    Returns the result and the package (None when it did not load).
    """
    name = "loads_and_scores"
    try:
        package = load()
    except RigwatchError as exc:
        return GuardrailResult(name, False, f"does not load: {exc}"), None
    rows, where = _sample_rows(package, eval_data)
    if rows is None:
        return GuardrailResult(name, False, f"loads; cannot score: {where}"), package
    try:
        proba = package.predict_proba(rows)
    except Exception as exc:  # LightGBM raises its own errors; any of them means "cannot serve"
        return GuardrailResult(name, False, f"loads; scoring {len(rows)} {where} failed: {exc}"), package
    if proba.shape != (len(rows), len(package.classes)) or not np.isfinite(proba).all():
        return GuardrailResult(
            name,
            False,
            f"loads; scoring {len(rows)} {where} gave shape {proba.shape} with"
            f" {int((~np.isfinite(proba)).sum())} non-finite values,"
            f" expected ({len(rows)}, {len(package.classes)})",
        ), package
    worst = float(np.abs(proba.sum(axis=1) - 1).max()) if len(rows) else 0.0
    if worst > 1e-6:
        return GuardrailResult(name, False, f"loads; probabilities of a row sum to 1 ± {worst:.3g}"), package
    return GuardrailResult(name, True, f"loads and scores {len(rows)} {where}"), package


def reference_profile(package: ModelPackage) -> GuardrailResult:
    """reference.json gives the drift profile of every feature, and has a confidence calibration."""
    from rigwatch.drift.profile import DriftProfile

    name, reference = "reference_profile", package.reference
    profiles = reference.get("features", {})
    missing = [f for f in package.features if f not in profiles]
    if missing:
        listed = ", ".join(repr(f) for f in missing)
        return GuardrailResult(name, False, f"reference.json has no profile of feature(s) {listed}")
    try:
        DriftProfile.from_reference(reference, package.version, package.features, package.classes)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        return GuardrailResult(
            name, False, f"reference.json cannot give the drift profile: {type(exc).__name__} {exc}"
        )
    if "calibration" not in reference:
        return GuardrailResult(
            name,
            False,
            "reference.json has no calibration: the accuracy estimate would have nothing to go on",
        )
    return GuardrailResult(name, True, f"drift profile of {len(package.features)} features and a calibration")


def _accuracy(package: ModelPackage, eval_data: EvalData) -> float | None:
    rows = eval_data.matrix(package.features)
    if rows is None:
        return None
    predicted = np.asarray(package.classes)[package.predict_proba(rows).argmax(axis=1)]
    return float((predicted == eval_data.labels).mean())


def accuracy_not_worse(
    candidate: ModelPackage,
    champion: ModelPackage | None,
    eval_data: EvalData | None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> GuardrailResult:
    """On labelled rows, the candidate's accuracy is at most *tolerance* below the champion's.

    Skipped (passed, saying why) without labelled rows or a champion to compare with.
    """
    name = "accuracy"
    if eval_data is None or len(eval_data) == 0:
        return GuardrailResult(name, True, "skipped: no labelled rows (give --eval-data FILE)")
    if champion is None:
        return GuardrailResult(name, True, "skipped: no champion to compare with")
    ours, theirs = _accuracy(candidate, eval_data), _accuracy(champion, eval_data)
    if ours is None or theirs is None:
        who = candidate if ours is None else champion
        absent = [f for f in who.features if f not in eval_data.columns]
        return GuardrailResult(
            name, False, f"{eval_data.source} has no column {absent[0]!r} that model {who.version} reads"
        )
    figures = (
        f"accuracy {ours:.4f} vs champion {theirs:.4f} on {len(eval_data)} labelled rows of"
        f" {eval_data.source} (tolerance {tolerance:g})"
    )
    return GuardrailResult(name, ours >= theirs - tolerance, figures)


def run_guardrails(
    load: Callable[[], ModelPackage],
    champion: ModelPackage | None,
    reading_schema: Mapping[str, Any],
    eval_data: EvalData | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> list[GuardrailResult]:
    """Every check, in the order of the module's table; comparisons with no champion are skipped.

    A candidate that does not load fails ``loads_and_scores``; the checks that need it are not run.
    """
    loaded, package = loads_and_scores(load, eval_data)
    if package is None:
        return [loaded]
    results = []
    if champion is not None:
        results.append(same_features(package.features, champion.features))
    results.append(features_in_schema(package.features, reading_schema))
    if champion is not None:
        results.append(same_classes(package.classes, champion.classes))
    results += [
        loaded,
        reference_profile(package),
        accuracy_not_worse(package, champion, eval_data, tolerance),
    ]
    return results
