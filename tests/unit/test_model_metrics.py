"""The numpy metrics agree with scikit-learn and with their definitions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rigwatch.exceptions import DataError
from rigwatch.model.metrics import (
    accuracy,
    confusion_matrix,
    log_loss,
    macro_f1,
    mcc,
    mcc_from_confusion,
    precision_recall_f1,
)

# Reference values computed with scikit-learn 1.9.1 (log_loss with labels=range(k),
# accuracy_score, matthews_corrcoef, confusion_matrix) on the cases below. scikit-learn
# is not a test dependency: lightgbm imports it whenever it is installed, which costs
# every scorer process ~1.5 s of start-up and ~70 MB of memory.
SKLEARN_REFERENCE = [
    # seed, n, k, log_loss, accuracy, mcc, confusion matrix
    (1, 50, 3, 4.043791454584942, 0.32, -0.0018405406754956025, [[5, 8, 7], [2, 5, 6], [4, 7, 6]]),
    (3, 7, 2, 0.46180075457035835, 0.7142857142857143, 0.4166666666666667, [[3, 1], [1, 2]]),
    (4, 120, 3, 3.087862400594487, 0.4, 0.10826228440058847, [[17, 7, 11], [15, 14, 16], [13, 10, 17]]),
    (
        5,
        33,
        4,
        4.028867358902177,
        0.30303030303030304,
        0.07063636314476651,
        [[4, 2, 3, 2], [3, 2, 2, 2], [0, 1, 2, 2], [1, 4, 1, 2]],
    ),
    (
        2,
        400,
        5,
        9.12916739960574,
        0.175,
        -0.03095905154081448,
        [
            [15, 21, 14, 18, 9],
            [14, 12, 16, 8, 19],
            [22, 13, 13, 15, 26],
            [17, 20, 16, 17, 14],
            [22, 11, 18, 17, 13],
        ],
    ),
]

# Same cases, scikit-learn 1.9.1: precision_recall_fscore_support(labels=range(k),
# average=None, zero_division=0) and f1_score(average="macro", zero_division=0).
SKLEARN_PRF_REFERENCE = [
    # seed, n, k, precision, recall, f1, macro f1
    (
        1,
        50,
        3,
        [0.45454545454545453, 0.25, 0.3157894736842105],
        [0.25, 0.38461538461538464, 0.35294117647058826],
        [0.3225806451612903, 0.30303030303030304, 0.3333333333333333],
        0.3196480938416422,
    ),
    (
        3,
        7,
        2,
        [0.75, 0.6666666666666666],
        [0.75, 0.6666666666666666],
        [0.75, 0.6666666666666666],
        0.7083333333333333,
    ),
    (
        4,
        120,
        3,
        [0.37777777777777777, 0.45161290322580644, 0.38636363636363635],
        [0.4857142857142857, 0.3111111111111111, 0.425],
        [0.425, 0.3684210526315789, 0.40476190476190477],
        0.39939431913116125,
    ),
    (
        5,
        33,
        4,
        [0.5, 0.2222222222222222, 0.25, 0.25],
        [0.36363636363636365, 0.2222222222222222, 0.4, 0.25],
        [0.42105263157894735, 0.2222222222222222, 0.3076923076923077, 0.25],
        0.3002417903733693,
    ),
    (
        2,
        400,
        5,
        [
            0.16666666666666666,
            0.15584415584415584,
            0.16883116883116883,
            0.22666666666666666,
            0.16049382716049382,
        ],
        [
            0.19480519480519481,
            0.17391304347826086,
            0.14606741573033707,
            0.20238095238095238,
            0.16049382716049382,
        ],
        [
            0.17964071856287425,
            0.1643835616438356,
            0.1566265060240964,
            0.2138364779874214,
            0.16049382716049382,
        ],
        0.1749962182757443,
    ),
]


def _random_case(seed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, size=n)
    y_true[:k] = np.arange(k)  # every class present
    logits = rng.normal(scale=rng.uniform(0.1, 8), size=(n, k))
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    return y_true, proba, proba.argmax(axis=1)


@pytest.mark.parametrize(("seed", "n", "k", "loss", "acc", "corr", "matrix"), SKLEARN_REFERENCE)
def test_metrics_match_sklearn_reference_values(seed, n, k, loss, acc, corr, matrix):
    y_true, proba, y_pred = _random_case(seed, n, k)
    assert log_loss(y_true, proba) == pytest.approx(loss, rel=1e-12, abs=1e-12)
    assert accuracy(y_true, y_pred) == pytest.approx(acc, abs=1e-12)
    assert mcc(y_true, y_pred, k) == pytest.approx(corr, abs=1e-12)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, k), matrix)


@pytest.mark.parametrize(("seed", "n", "k", "precision", "recall", "f1", "macro"), SKLEARN_PRF_REFERENCE)
def test_precision_recall_f1_match_sklearn_reference_values(seed, n, k, precision, recall, f1, macro):
    y_true, _, y_pred = _random_case(seed, n, k)
    confusion = confusion_matrix(y_true, y_pred, k)
    got = precision_recall_f1(confusion)
    for name, values, expected in zip(
        ("precision", "recall", "f1"), got, (precision, recall, f1), strict=True
    ):
        assert values.shape == (k,) and values.dtype == np.float64, name
        np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12, err_msg=name)
    assert macro_f1(confusion) == pytest.approx(macro, abs=1e-12)
    assert mcc_from_confusion(confusion) == mcc(y_true, y_pred, k)


def test_precision_recall_f1_by_hand():
    # Class 0: 2 of 2 predicted right (P 1), 2 of 3 found (R 2/3), F1 2*2/(3+2) = 0.8.
    # Class 1: 1 of 2 predicted right (P 1/2), 1 of 1 found (R 1), F1 2*1/(1+2) = 2/3.
    precision, recall, f1 = precision_recall_f1(np.array([[2, 1], [0, 1]]))
    np.testing.assert_allclose(precision, [1.0, 0.5], atol=1e-15)
    np.testing.assert_allclose(recall, [2 / 3, 1.0], atol=1e-15)
    np.testing.assert_allclose(f1, [0.8, 2 / 3], atol=1e-15)
    assert macro_f1(np.array([[2, 1], [0, 1]])) == pytest.approx((0.8 + 2 / 3) / 2, abs=1e-15)
    # scikit-learn 1.9.1 matthews_corrcoef on the same rows: 1/sqrt(3).
    assert mcc_from_confusion(np.array([[2, 1], [0, 1]])) == pytest.approx(0.5773502691896258, abs=1e-15)


def test_zero_division_gives_zero_like_sklearn():
    # y_true [0, 1, 2, 2], y_pred [0, 0, 2, 2]: class 1 is never predicted, so
    # its precision is 0/0 -> 0.0; scikit-learn 1.9.1 gives macro F1 5/9.
    precision, recall, f1 = precision_recall_f1(np.array([[1, 0, 0], [1, 0, 0], [0, 0, 2]]))
    assert precision.tolist() == [0.5, 0.0, 1.0]
    assert recall.tolist() == [1.0, 0.0, 1.0]
    np.testing.assert_allclose(f1, [2 / 3, 0.0, 1.0], atol=1e-15)
    assert macro_f1(np.array([[1, 0, 0], [1, 0, 0], [0, 0, 2]])) == pytest.approx(5 / 9, abs=1e-15)


def test_macro_f1_leaves_out_classes_absent_from_truth_and_predictions_like_sklearn():
    # y_true [0, 2, 2, 0, 2], y_pred [0, 2, 0, 0, 2]: class 1 never occurs.
    # scikit-learn 1.9.1 f1_score(average="macro") 0.8; with labels=range(3) 0.5333.
    confusion = np.array([[2, 0, 0], [0, 0, 0], [1, 0, 2]])
    assert precision_recall_f1(confusion)[2].tolist() == [0.8, 0.0, 0.8]
    assert macro_f1(confusion) == pytest.approx(0.8, abs=1e-15)
    # One class, all right: 1.0 (not 1/3); all wrong: 0.0; no rows: NaN, like accuracy().
    assert macro_f1(np.diag([0, 0, 3])) == 1.0
    assert macro_f1(np.array([[0, 0, 0], [0, 0, 0], [3, 0, 0]])) == 0.0
    assert np.isnan(macro_f1(np.zeros((3, 3), dtype=int)))
    assert mcc_from_confusion(np.zeros((3, 3), dtype=int)) == 0.0


def test_metrics_accept_float_confusion_matrices():
    counts = np.array([[5, 8, 7], [2, 5, 6], [4, 7, 6]])
    for left, right in zip(
        precision_recall_f1(counts), precision_recall_f1(counts.astype(float)), strict=True
    ):
        np.testing.assert_array_equal(left, right)
    assert mcc_from_confusion(counts.astype(np.float32)) == mcc_from_confusion(counts)


def test_confusion_errors_name_the_argument_and_value():
    with pytest.raises(DataError, match=r"confusion: expected a square k x k matrix .* shape \(2, 3\)"):
        precision_recall_f1(np.zeros((2, 3)))
    with pytest.raises(DataError, match=r"confusion: .* shape \(0, 0\)"):
        macro_f1(np.zeros((0, 0)))
    with pytest.raises(DataError, match="confusion: expected finite non-negative counts, got min -1"):
        mcc_from_confusion(np.array([[1, -1], [0, 2]]))
    with pytest.raises(DataError, match="confusion: expected real counts, got dtype <U1"):
        macro_f1(np.array([["a", "b"], ["c", "d"]]))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(3, 400), k=st.integers(2, 5))
def test_mcc_matches_the_covariance_definition(seed, n, k):
    y_true, _, y_pred = _random_case(seed, max(n, k), k)
    # MCC is the Pearson correlation of the one-hot label and prediction matrices.
    a = np.eye(k)[y_true] - np.eye(k)[y_true].mean(axis=0)
    b = np.eye(k)[y_pred] - np.eye(k)[y_pred].mean(axis=0)
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    expected = (a * b).sum() / denominator if denominator else 0.0
    assert mcc(y_true, y_pred, k) == pytest.approx(expected, abs=1e-12)


def test_log_loss_clips_a_zero_probability_like_sklearn():
    y = np.array([0, 1, 2])
    proba = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert log_loss(y, proba) == pytest.approx(12.014551129705717, rel=1e-12)


def test_mcc_is_zero_when_undefined_like_sklearn():
    y_true, y_pred = np.array([0, 1, 2, 1]), np.zeros(4, dtype=int)
    assert mcc(y_true, y_pred, 3) == 0.0


def test_perfect_and_inverted_binary_predictions():
    y = np.array([0, 1, 0, 1])
    assert mcc(y, y) == 1.0
    assert mcc(y, 1 - y) == -1.0
    assert accuracy(y, y) == 1.0


def test_shape_errors_name_the_argument():
    with pytest.raises(DataError, match="y_pred: 2 rows, expected 3"):
        accuracy(np.array([0, 1, 2]), np.array([0, 1]))
    with pytest.raises(DataError, match=r"proba: shape \(3, 2\)"):
        log_loss(np.array([0, 1, 2]), np.full((3, 2), 0.5))
    with pytest.raises(DataError, match="y_true: expected non-negative integer"):
        mcc(np.array([0.5, 1.0]), np.array([0, 1]))
