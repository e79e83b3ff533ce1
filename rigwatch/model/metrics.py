"""Classification metrics in plain numpy (scikit-learn is a test-only dependency).

Every function takes ``y_true`` as class indices ``0..k-1``, or a confusion
matrix ``C[true, predicted]`` of such classes (what a window accumulates).
Results match ``sklearn.metrics`` (``log_loss``, ``accuracy_score``,
``matthews_corrcoef``, ``confusion_matrix``, ``precision_recall_fscore_support``
and ``f1_score`` with ``zero_division=0``); the unit tests hold them to 1e-12.
"""

from __future__ import annotations

import numpy as np

from rigwatch.exceptions import DataError

__all__ = [
    "accuracy",
    "confusion_matrix",
    "log_loss",
    "macro_f1",
    "mcc",
    "mcc_from_confusion",
    "precision_recall_f1",
]


def _indices(y: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-d array of class indices, got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or not np.issubdtype(arr.dtype, np.integer)):
        raise DataError(f"{name}: expected non-negative integer class indices, got {arr.dtype}")
    return arr.astype(np.intp, copy=False)


def _confusion(confusion: np.ndarray) -> np.ndarray:
    c = np.asarray(confusion)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] == 0:
        raise DataError(f"confusion: expected a square k x k matrix with k >= 1, got shape {c.shape}")
    if not np.issubdtype(c.dtype, np.number) or np.issubdtype(c.dtype, np.complexfloating):
        raise DataError(f"confusion: expected real counts, got dtype {c.dtype}")
    c = c.astype(np.float64)
    if not np.isfinite(c).all() or (c < 0).any():
        raise DataError(f"confusion: expected finite non-negative counts, got min {c.min()}")
    return c


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # 0/0 is 0.0, scikit-learn's zero_division=0: a class never predicted has
    # precision 0, not NaN that would poison a macro average.
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


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


def precision_recall_f1(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 from a confusion matrix.

    Parameters
    ----------
    confusion
        ``(k, k)`` counts ``C[true, predicted]`` (:func:`confusion_matrix`).

    Returns
    -------
    tuple of numpy.ndarray
        Precision, recall and F1, float64 ``(k,)`` each. A ratio with a zero
        denominator is 0.0 (scikit-learn's ``zero_division=0``): a class never
        predicted has precision 0, a class absent from the truth has recall 0.

    Examples
    --------
    >>> p, r, f = precision_recall_f1(np.array([[2, 1], [0, 1]]))
    >>> p.tolist(), r.round(4).tolist(), f.round(4).tolist()
    ([1.0, 0.5], [0.6667, 1.0], [0.8, 0.6667])
    """
    c = _confusion(confusion)
    hits = np.diag(c).copy()
    true_per_class, pred_per_class = c.sum(axis=1), c.sum(axis=0)
    # F1 as 2 tp / (true + predicted) rather than from P and R: it is the same
    # where both are defined and gives scikit-learn's 0 where one of them is 0/0.
    return (
        _ratio(hits, pred_per_class),
        _ratio(hits, true_per_class),
        _ratio(2 * hits, true_per_class + pred_per_class),
    )


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean F1 over the classes that occur, like ``f1_score(average="macro")``.

    A class with no true and no predicted rows is left out of the mean, as
    scikit-learn leaves out labels absent from both ``y_true`` and ``y_pred``:
    a window of one class, all predicted right, scores 1.0, not 1/k. Returns
    NaN for an empty matrix (no rows), like :func:`accuracy`.

    Examples
    --------
    >>> macro_f1(np.array([[2, 0, 0], [0, 0, 0], [1, 0, 2]]))
    0.8
    """
    c = _confusion(confusion)
    present = (c.sum(axis=0) + c.sum(axis=1)) > 0
    if not present.any():
        return float("nan")
    return float(np.mean(precision_recall_f1(c)[2][present]))


def mcc_from_confusion(confusion: np.ndarray) -> float:
    """Matthews correlation coefficient for k classes (Gorodkin's R_K) from a confusion matrix.

    Returns 0.0 when it is undefined (all true or all predicted labels in one
    class, or no rows), like scikit-learn.

    Examples
    --------
    >>> mcc_from_confusion(np.array([[2, 1], [0, 1]]))  # doctest: +ELLIPSIS
    0.577350269189...
    """
    c = _confusion(confusion)
    true_per_class, pred_per_class = c.sum(axis=1), c.sum(axis=0)
    correct, total = np.trace(c), c.sum()
    cov_tp = correct * total - pred_per_class @ true_per_class
    cov_pp = total**2 - pred_per_class @ pred_per_class
    cov_tt = total**2 - true_per_class @ true_per_class
    if cov_pp == 0 or cov_tt == 0:
        return 0.0
    return float(cov_tp / np.sqrt(cov_tt * cov_pp))


def mcc(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> float:
    """Matthews correlation coefficient for k classes (Gorodkin's R_K).

    Returns 0.0 when it is undefined (all true or all predicted labels in one
    class), like scikit-learn. See :func:`mcc_from_confusion`.

    Examples
    --------
    >>> mcc(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 2]))
    1.0
    """
    t, p = _indices(y_true, "y_true"), _indices(y_pred, "y_pred")
    k = n_classes if n_classes is not None else int(max(t.max(initial=0), p.max(initial=0))) + 1
    return mcc_from_confusion(confusion_matrix(t, p, k))
