"""The confidence calibration: isotonic fit, estimates, storage in the model package."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rigwatch.data import CLASSES, simulate
from rigwatch.exceptions import DataError, ModelError
from rigwatch.model import ModelPackage, metrics, stratified_split, train
from rigwatch.model.calibration import ConfidenceCalibration, fit_isotonic
from rigwatch.model.package import REFERENCE_FILE


def _brute_isotonic(confidence: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """The isotonic fit at every row by the min-max formula, O(m^3) in distinct confidences.

    Fit at point i = max over j <= i of min over k >= i of the weighted mean of
    points j..k (Robertson, Wright & Dykstra, *Order Restricted Statistical
    Inference*, 1988, thm 1.4.4); rows with equal confidence are one point.
    """
    xs, inverse, weights = np.unique(confidence, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=correct.astype(float), minlength=xs.size)
    m = xs.size
    fitted = np.empty(m)
    for i in range(m):
        fitted[i] = max(
            min(sums[j : k + 1].sum() / weights[j : k + 1].sum() for k in range(i, m)) for j in range(i + 1)
        )
    return fitted[inverse]


# --- the fit ------------------------------------------------------------------------------


def test_fit_isotonic_textbook_example_by_hand():
    # Correctness in confidence order 1 0 1 0 0 1 1. PAV: (1,0) pool to 0.5; 1 is
    # fine; 0 pools with it to 0.5, which ties the block before -> 0.5 over 4;
    # the next 0 pools -> 2/5 = 0.4 over 5; 1, 1 tie -> one block at 1.0.
    confidence = np.array([0.40, 0.45, 0.50, 0.60, 0.70, 0.80, 0.95])
    correct = np.array([1, 0, 1, 0, 0, 1, 1], dtype=bool)
    cal = fit_isotonic(confidence, correct)
    assert cal.method == "isotonic" and cal.rows == 7
    assert cal.confidence == (0.40, 0.70, 0.80, 0.95)
    assert cal.p_correct == (0.4, 0.4, 1.0, 1.0)
    # Isotonic regression keeps the mean: the mean estimate is the accuracy, 4/7.
    assert cal.estimate(confidence).mean() == pytest.approx(4 / 7, abs=1e-15)


def test_fit_isotonic_order_of_rows_does_not_matter_and_ties_are_averaged():
    confidence = np.array([0.9, 0.5, 0.9, 0.7, 0.5])
    correct = np.array([True, False, False, True, True])
    cal = fit_isotonic(confidence, correct)
    # Confidence 0.5 holds one right of two (0.5), 0.7 one of one, 0.9 one of two:
    # 1.0 then 0.5 violate and pool to 2/3 over 0.7..0.9.
    assert cal.confidence == (0.5, 0.7, 0.9)
    assert cal.p_correct == pytest.approx((0.5, 2 / 3, 2 / 3), abs=1e-15)
    order = np.argsort(-confidence, kind="stable")
    assert fit_isotonic(confidence[order], correct[order]) == cal


def test_fit_isotonic_of_all_right_or_one_row_is_flat():
    cal = fit_isotonic(np.array([0.6, 0.99, 0.8]), np.ones(3, dtype=bool))
    assert cal.confidence == (0.6, 0.99) and cal.p_correct == (1.0, 1.0)
    one = fit_isotonic(np.array([0.7]), np.array([False]))
    assert one.confidence == (0.7,) and one.p_correct == (0.0,)
    assert one.estimate([0.1, 0.7, 1.0]).tolist() == [0.0, 0.0, 0.0]


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.sampled_from(np.round(np.linspace(0.34, 1.0, 12), 4).tolist()), st.booleans()),
        min_size=1,
        max_size=40,
    )
)
def test_fit_isotonic_equals_the_brute_force_fit_on_small_inputs(data):
    confidence = np.array([c for c, _ in data])
    correct = np.array([r for _, r in data])
    cal = fit_isotonic(confidence, correct)
    fitted = cal.estimate(confidence)
    np.testing.assert_allclose(fitted, _brute_isotonic(confidence, correct), rtol=0, atol=1e-12)
    assert np.all(np.diff(cal.confidence) > 0) and np.all(np.diff(cal.p_correct) >= 0)
    assert fitted.mean() == pytest.approx(correct.mean(), abs=1e-12)
    # Equal neighbouring blocks are pooled, so the knots are at most two per distinct mean.
    assert len(cal.confidence) <= 2 * len(set(cal.p_correct))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60))
def test_fit_isotonic_with_fractional_weights_equals_the_brute_force_fit(seed, n):
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(1 / 3, 1, size=n)
    correct = rng.uniform(0, 1, size=n)
    fitted = fit_isotonic(confidence, correct).estimate(confidence)
    np.testing.assert_allclose(fitted, _brute_isotonic(confidence, correct), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("confidence", "correct", "message"),
    [
        (np.array([]), np.array([], dtype=bool), r"confidence: shape \(0,\), expected \(n,\) with n >= 1"),
        (np.array([0.5, 0.6]), np.array([True]), r"correct: shape \(1,\), expected \(2,\)"),
        (np.array([0.5, 1.2]), np.array([True, True]), r"confidence: value 1\.2 at row 1, expected finite"),
        (np.array([0.5, np.nan]), np.array([True, True]), r"confidence: value nan"),
        (
            np.array([0.5, 0.6]),
            np.array([1.0, 2.0]),
            r"correct: value 2\.0 at row 1, expected finite values in \[0, 1\]",
        ),
    ],
)
def test_fit_isotonic_errors_name_the_argument_and_value(confidence, correct, message):
    with pytest.raises(DataError, match=message):
        fit_isotonic(confidence, correct)


# --- estimates ----------------------------------------------------------------------------


def test_estimate_interpolates_between_knots_and_clips_to_the_ends():
    cal = ConfidenceCalibration((0.5, 0.7, 0.9), (0.25, 0.75, 1.0), rows=10, method="isotonic")
    values = cal.estimate([0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    np.testing.assert_allclose(values, [0.25, 0.25, 0.5, 0.75, 0.875, 1.0, 1.0], rtol=0, atol=1e-15)
    assert values.dtype == np.float64
    assert cal.estimate(np.full((2, 3), 0.7)).shape == (2, 3)
    assert cal.estimate(0.6).shape == () and float(cal.estimate(0.6)) == pytest.approx(0.5)
    assert np.isnan(cal.estimate([np.nan])[0])
    assert cal.estimate([]).shape == (0,)


def test_identity_takes_the_confidence_at_its_word():
    cal = ConfidenceCalibration.identity()
    assert cal.method == "identity" and cal.rows == 0
    x = np.linspace(1 / 3, 1, 9)
    np.testing.assert_allclose(cal.estimate(x), x, rtol=0, atol=1e-15)


# --- storage --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    confidence=st.lists(st.floats(0, 1), min_size=1, max_size=30),
    correct=st.data(),
)
def test_dict_round_trip_through_json_is_exact(confidence, correct):
    flags = correct.draw(st.lists(st.booleans(), min_size=len(confidence), max_size=len(confidence)))
    cal = fit_isotonic(np.array(confidence), np.array(flags))
    text = json.dumps(cal.to_dict(), allow_nan=False)
    again = ConfidenceCalibration.from_dict(json.loads(text))
    assert again == cal
    assert pickle.loads(pickle.dumps(cal)) == cal


def test_identity_round_trips_and_lists_become_tuples():
    assert ConfidenceCalibration.from_dict(ConfidenceCalibration.identity().to_dict()) == (
        ConfidenceCalibration.identity()
    )
    cal = ConfidenceCalibration([0.5, 1], np.array([0.5, 1.0]), rows=3, method="isotonic")  # type: ignore[arg-type]
    assert cal.confidence == (0.5, 1.0) and type(cal.confidence[1]) is float
    assert hash(cal) == hash(ConfidenceCalibration((0.5, 1.0), (0.5, 1.0), rows=3, method="isotonic"))


_GOOD = {"method": "isotonic", "rows": 5, "confidence": [0.5, 0.9], "p_correct": [0.6, 1.0]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rows": None}, r"calibration: missing rows"),
        ({"confidence": [0.5]}, r"calibration\.p_correct: 2 values for 1 confidence knots"),
        (
            {"confidence": [], "p_correct": []},
            r"0 values for 0 confidence knots, expected the same number, at least",
        ),
        (
            {"confidence": [0.9, 0.5]},
            r"calibration\.confidence: 0\.5 after 0\.9, expected strictly increasing",
        ),
        ({"confidence": [0.5, 0.5]}, r"calibration\.confidence: 0\.5 after 0\.5"),
        ({"p_correct": [0.9, 0.6]}, r"calibration\.p_correct: 0\.6 after 0\.9, expected non-decreasing"),
        (
            {"p_correct": [0.6, 1.5]},
            r"calibration\.p_correct: value 1\.5, expected finite values in \[0, 1\]",
        ),
        ({"confidence": [0.5, float("nan")]}, r"calibration\.confidence: value nan"),
        ({"confidence": "0.5"}, r"calibration\.confidence: '0\.5', expected a list of numbers"),
        ({"p_correct": [0.6, "high"]}, r"calibration\.p_correct: .*'high'.*, expected a list of numbers"),
        ({"rows": -1}, r"calibration\.rows: -1, expected a non-negative integer"),
        ({"rows": 5.0}, r"calibration\.rows: 5\.0, expected a non-negative integer"),
        ({"rows": True}, r"calibration\.rows: True"),
        (
            {"method": "platt"},
            r"calibration\.method: 'platt', expected one of isotonic, ",
        ),
    ],
)
def test_from_dict_errors_name_the_field_and_value(change, message):
    d = {**_GOOD, **change}
    if change.get("rows", 0) is None:
        del d["rows"]
    with pytest.raises(ModelError, match=message):
        ConfidenceCalibration.from_dict(d)


def test_from_dict_rejects_a_non_object():
    with pytest.raises(ModelError, match=r"calibration: list \[0\.5\], expected an object"):
        ConfidenceCalibration.from_dict([0.5])  # type: ignore[arg-type]


# --- in the model package -------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated_package(tmp_path_factory) -> Path:
    """A small package trained on simulated data: these tests run without the real data."""
    return train(simulate(300, seed=1), seed=1, num_threads=1).write(tmp_path_factory.mktemp("sim") / "pkg")


def _edit_reference(package: Path, target: Path, edit) -> Path:
    target.mkdir()
    for path in package.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    reference = json.loads((target / REFERENCE_FILE).read_text())
    edit(reference)
    (target / REFERENCE_FILE).write_text(json.dumps(reference))
    return target


def test_package_carries_an_isotonic_calibration_of_its_test_rows(simulated_package):
    loaded = ModelPackage.load(simulated_package)
    cal = loaded.calibration
    assert cal.method == "isotonic+prior"
    assert cal.rows == loaded.metadata["row_counts"]["test"]
    assert loaded.reference["calibration"] == cal.to_dict()


def test_package_without_calibration_loads_with_the_identity(simulated_package, tmp_path):
    old = _edit_reference(simulated_package, tmp_path / "old", lambda ref: ref.pop("calibration"))
    assert ModelPackage.load(old).calibration == ConfidenceCalibration.identity()


def test_package_with_a_broken_calibration_fails_to_load_naming_file_and_field(simulated_package, tmp_path):
    def break_it(ref):
        ref["calibration"]["p_correct"] = [*reversed(ref["calibration"]["p_correct"]), 2.0]

    broken = _edit_reference(simulated_package, tmp_path / "broken", break_it)
    with pytest.raises(ModelError, match=r"reference\.json: calibration\.p_correct"):
        ModelPackage.load(broken)


def test_real_model_calibration_estimates_the_held_out_accuracy(real_model, real_dataset):
    cal = real_model.calibration
    assert cal.method == "isotonic+prior" and cal.rows == real_model.metadata["row_counts"]["test"] == 442
    assert np.all(np.diff(cal.confidence) > 0) and np.all(np.diff(cal.p_correct) >= 0)
    # The same held-out rows training used (seed 42 split of the real data).
    y = np.searchsorted(CLASSES, real_dataset.cool_cond)
    test_rows = stratified_split(y, seed=42)[2]
    proba = real_model.predict_proba(real_dataset.features()[test_rows])
    held_out_accuracy = metrics.accuracy(y[test_rows], proba.argmax(axis=1))
    assert held_out_accuracy == real_model.metadata["test_metrics"]["accuracy"]
    assert abs(cal.estimate(proba.max(axis=1)).mean() - held_out_accuracy) <= 0.02
    assert cal.confidence[0] == 1 / 3 and cal.confidence[-1] <= 1.0
    # One held-out mistake must not make every less confident prediction "0 % correct".
    lowest = proba.max(axis=1).min()
    assert 0.5 < cal.estimate(lowest) <= lowest + 1e-9


def test_prior_rows_shrink_each_block_toward_its_claimed_confidence_and_lowest_anchors_at_one_over_k():
    conf = np.array([0.8, 0.9, 0.9, 1.0])
    right = np.array([False, True, True, True])
    pure = fit_isotonic(conf, right)
    assert pure.p_correct == (0.0, 1.0, 1.0)
    shrunk = fit_isotonic(conf, right, prior_rows=4.0, lowest=1 / 3)
    # Block {0.8}: (0 + 4 * 0.8) / (1 + 4); block {0.9, 0.9, 1.0}: (3 + 4 * 2.8 / 3) / (3 + 4).
    assert shrunk.confidence == (1 / 3, 0.8, 0.9, 1.0)
    assert shrunk.p_correct == pytest.approx((1 / 3, 0.64, (3 + 4 * 2.8 / 3) / 7, (3 + 4 * 2.8 / 3) / 7))
    assert shrunk.method == "isotonic+prior"
    assert shrunk.estimate(0.5) == pytest.approx(1 / 3 + (0.5 - 1 / 3) / (0.8 - 1 / 3) * (0.64 - 1 / 3))
