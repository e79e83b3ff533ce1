"""Guardrails: each failing case names the feature, the class or the figures that failed it."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from model_packages import tiny_package

from rigwatch.data import FEATURES, Dataset
from rigwatch.exceptions import ModelError
from rigwatch.lifecycle.guardrails import (
    EvalData,
    accuracy_not_worse,
    features_in_schema,
    loads_and_scores,
    reference_profile,
    run_guardrails,
    same_classes,
    same_features,
)
from rigwatch.model import ModelPackage
from rigwatch.schemas import load_schema

READING = load_schema("SensorReading")


def _by_name(results: list[Any]) -> dict[str, Any]:
    return {r.name: r for r in results}


def test_same_features_names_a_missing_an_extra_and_a_moved_feature() -> None:
    assert same_features(FEATURES, FEATURES).passed
    missing = same_features(FEATURES[:-1], FEATURES)
    assert not missing.passed and missing.detail == "feature 'eff_fact_pct' missing from candidate"
    extra = same_features((*FEATURES, "cool_eff_pct"), FEATURES)
    assert not extra.passed and "feature 'cool_eff_pct' not read by the champion" in extra.detail
    swapped = same_features((FEATURES[1], FEATURES[0], *FEATURES[2:]), FEATURES)
    assert not swapped.passed
    assert "position 0 is 'psb_bar' in the candidate, 'psa_bar' in the champion" in swapped.detail


def test_features_must_be_numeric_fields_of_the_sensor_reading() -> None:
    assert features_in_schema(FEATURES, READING).passed
    result = features_in_schema(("psa_bar", "ts1_temp", "rig_id"), READING)
    assert not result.passed
    assert "feature 'ts1_temp' is not a field of SensorReading" in result.detail
    assert "feature 'rig_id' is a string field of SensorReading, not a number" in result.detail


def test_same_classes_names_the_missing_class_and_ignores_the_order() -> None:
    result = same_classes(("3", "20"), ("3", "20", "100"))
    assert not result.passed
    assert result.detail.startswith("classes differ: candidate ('3', '20') vs champion ('3', '20', '100')")
    assert "class '100' missing from candidate" in result.detail
    assert (
        "class '50' unknown to the champion"
        in same_classes(("3", "20", "100", "50"), ("3", "20", "100")).detail
    )
    assert same_classes(("100", "20", "3"), ("3", "20", "100")).passed


@pytest.fixture(scope="module")
def without_tsb_temp(real_dataset: Dataset) -> ModelPackage:
    return tiny_package(real_dataset, features=[f for f in FEATURES if f != "tsb_temp"])


def test_a_candidate_without_a_feature_fails_only_same_features(
    real_model: ModelPackage, without_tsb_temp: ModelPackage
) -> None:
    results = _by_name(run_guardrails(lambda: without_tsb_temp, real_model, READING))

    assert results["same_features"].detail == "feature 'tsb_temp' missing from candidate"
    assert [name for name, r in results.items() if not r.passed] == ["same_features"]


def test_a_candidate_with_other_classes_fails_same_classes(
    real_dataset: Dataset, real_model: ModelPackage
) -> None:
    two_classes = tiny_package(real_dataset, classes=("3", "20"))

    results = _by_name(run_guardrails(lambda: two_classes, real_model, READING))

    assert not results["same_classes"].passed
    assert (
        "classes differ: candidate ('3', '20') vs champion ('3', '20', '100')"
        in results["same_classes"].detail
    )
    assert [name for name, r in results.items() if not r.passed] == ["same_classes"]


def test_a_renamed_feature_fails_the_schema_and_the_feature_checks(
    real_dataset: Dataset, real_model: ModelPackage
) -> None:
    renamed = tiny_package(real_dataset, names=[("ts1_temp" if f == "tsa_temp" else f) for f in FEATURES])

    results = _by_name(run_guardrails(lambda: renamed, real_model, READING))

    assert results["features_in_schema"].detail == "feature 'ts1_temp' is not a field of SensorReading"
    assert "feature 'tsa_temp' missing from candidate" in results["same_features"].detail
    assert "feature 'ts1_temp' not read by the champion" in results["same_features"].detail


def test_a_package_that_does_not_load_fails_and_nothing_else_runs(real_model: ModelPackage) -> None:
    def broken() -> ModelPackage:
        raise ModelError("model.txt: not a LightGBM model")

    results = run_guardrails(broken, real_model, READING)

    assert [(r.name, r.passed) for r in results] == [("loads_and_scores", False)]
    assert results[0].detail == "does not load: model.txt: not a LightGBM model"
    result, package = loads_and_scores(lambda: real_model)
    assert result.passed and package is real_model and "200 rows of its reference sample" in result.detail


def _without(package: ModelPackage, key: str) -> ModelPackage:
    reference = copy.deepcopy(package.reference)
    del reference[key]
    return ModelPackage(package.booster, package.metadata, reference)


def test_the_reference_profile_needs_its_drift_statistics_and_a_calibration(real_model: ModelPackage) -> None:
    assert reference_profile(real_model).passed

    no_calibration = reference_profile(_without(real_model, "calibration"))
    assert not no_calibration.passed and "no calibration" in no_calibration.detail
    no_sample = reference_profile(_without(real_model, "sample"))
    assert not no_sample.passed and "'sample'" in no_sample.detail
    reference = copy.deepcopy(real_model.reference)
    del reference["features"]["vs_vib"]
    no_profile = reference_profile(ModelPackage(real_model.booster, real_model.metadata, reference))
    assert not no_profile.passed and "feature(s) 'vs_vib'" in no_profile.detail


def test_accuracy_is_compared_on_labelled_rows_within_the_tolerance(
    real_dataset: Dataset, real_model: ModelPackage
) -> None:
    rows = EvalData.from_dataset(real_dataset)
    weak = tiny_package(real_dataset, features=("vs_vib",), rounds=1)

    worse = accuracy_not_worse(weak, real_model, rows)
    same = accuracy_not_worse(real_model, real_model, rows)

    assert not worse.passed
    assert worse.detail.startswith("accuracy 0.") and f"on {len(real_dataset)} labelled rows" in worse.detail
    assert same.passed and "tolerance 0.01" in same.detail
    assert accuracy_not_worse(weak, real_model, rows, tolerance=1.0).passed
    skipped = accuracy_not_worse(weak, real_model, None)
    assert skipped.passed and skipped.detail.startswith("skipped: no labelled rows")
