"""The numpy metrics agree with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rigwatch.exceptions import DataError
from rigwatch.model.metrics import accuracy, confusion_matrix, log_loss, mcc

sk_metrics = pytest.importorskip("sklearn.metrics")


def _random_case(seed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, size=n)
    y_true[:k] = np.arange(k)  # every class present, as scikit-learn needs for log_loss
    logits = rng.normal(scale=rng.uniform(0.1, 8), size=(n, k))
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    return y_true, proba, proba.argmax(axis=1)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(3, 400), k=st.integers(2, 5))
def test_metrics_match_sklearn_on_random_data(seed, n, k):
    y_true, proba, y_pred = _random_case(seed, max(n, k), k)
    labels = list(range(k))
    assert log_loss(y_true, proba) == pytest.approx(
        sk_metrics.log_loss(y_true, proba, labels=labels), rel=1e-12, abs=1e-12
    )
    assert accuracy(y_true, y_pred) == pytest.approx(sk_metrics.accuracy_score(y_true, y_pred), abs=1e-12)
    assert mcc(y_true, y_pred, k) == pytest.approx(sk_metrics.matthews_corrcoef(y_true, y_pred), abs=1e-12)
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred, k),
        sk_metrics.confusion_matrix(y_true, y_pred, labels=labels),
    )


def test_log_loss_clips_a_zero_probability_like_sklearn():
    y = np.array([0, 1, 2])
    proba = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert log_loss(y, proba) == pytest.approx(sk_metrics.log_loss(y, proba), rel=1e-12)


def test_mcc_is_zero_when_undefined_like_sklearn():
    y_true, y_pred = np.array([0, 1, 2, 1]), np.zeros(4, dtype=int)
    assert mcc(y_true, y_pred, 3) == sk_metrics.matthews_corrcoef(y_true, y_pred) == 0.0


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
