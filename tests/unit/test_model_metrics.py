"""The numpy metrics agree with scikit-learn and with their definitions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rigwatch.exceptions import DataError
from rigwatch.model.metrics import accuracy, confusion_matrix, log_loss, mcc

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
