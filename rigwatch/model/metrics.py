"""Classification metrics in plain numpy (scikit-learn is a test-only dependency).

Every function takes ``y_true`` as class indices ``0..k-1``. Results match
``sklearn.metrics`` (``log_loss``, ``accuracy_score``, ``matthews_corrcoef``,
``confusion_matrix``); the unit tests hold them to 1e-12.
"""

from __future__ import annotations

import numpy as np

from rigwatch.exceptions import DataError

__all__ = ["accuracy", "confusion_matrix", "log_loss", "mcc"]


def _indices(y: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-d array of class indices, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or not np.issubdtype(arr.dtype, np.integer)):
        raise DataError(f"{name}: expected non-negative integer class indices, got {arr.dtype}")
    return arr.astype(np.intp, copy=False)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``C[i, j]`` of rows with true class ``i`` predicted as ``j``.

    Examples
    --------
    >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), 2).tolist()
    [[1, 0], [1, 1]]
    """
    t, p = _indices(y_true, "y_true"), _indices(y_pred, "y_pred")
    if t.shape != p.shape:
        raise DataError(f"y_pred: {p.shape[0]} rows, expected {t.shape[0]} like y_true")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of rows predicted right.

    Examples
    --------
    >>> accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 0]))
    0.75
    """
    t, p = _indices(y_true, "y_true"), _indices(y_pred, "y_pred")
    if t.shape != p.shape:
        raise DataError(f"y_pred: {p.shape[0]} rows, expected {t.shape[0]} like y_true")
    return float(np.mean(t == p)) if t.size else float("nan")


def log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log probability of the true class (natural log).

    Probabilities are clipped to ``[eps, 1 - eps]`` (``eps`` of float64), as
    scikit-learn does, so a confident mistake costs ~36, not infinity.

    Examples
    --------
    >>> round(log_loss(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]])), 6)
    0.164252
    """
    t = _indices(y_true, "y_true")
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != t.shape[0] or (t.size and t.max() >= p.shape[1]):
        raise DataError(f"proba: shape {p.shape}, expected ({t.shape[0]}, k) with k > every class index")
    eps = np.finfo(np.float64).eps
    picked = np.clip(p[np.arange(t.size), t], eps, 1 - eps)
    return float(-np.mean(np.log(picked))) if t.size else float("nan")


def mcc(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> float:
    """Matthews correlation coefficient for k classes (Gorodkin's R_K).

    Returns 0.0 when it is undefined (all true or all predicted labels in one
    class), like scikit-learn.

    Examples
    --------
    >>> mcc(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 2]))
    1.0
    """
    t, p = _indices(y_true, "y_true"), _indices(y_pred, "y_pred")
    k = n_classes if n_classes is not None else int(max(t.max(initial=0), p.max(initial=0))) + 1
    c = confusion_matrix(t, p, k).astype(np.float64)
    true_per_class, pred_per_class = c.sum(axis=1), c.sum(axis=0)
    correct, total = np.trace(c), c.sum()
    cov_tp = correct * total - pred_per_class @ true_per_class
    cov_pp = total**2 - pred_per_class @ pred_per_class
    cov_tt = total**2 - true_per_class @ true_per_class
    if cov_pp == 0 or cov_tt == 0:
        return 0.0
    return float(cov_tp / np.sqrt(cov_tt * cov_pp))
