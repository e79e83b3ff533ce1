"""The reference profile a model package carries for drift and accuracy monitoring.

Built once at training time from the training rows (feature distributions, a
row sample, class priors) and the held-out test rows (what the model predicts,
how confident it is, and how often that confidence was right), so the drift
and accuracy services compare live windows against what the model saw,
without needing the training data.

Binning rule (shared with the drift code through :func:`assign_bins`): each
feature has ``inner_edges``, the distinct training deciles (at most 9). Bin
``i`` holds ``inner_edges[i-1] < x <= inner_edges[i]``; the first and last bins
are open-ended, so every finite live value lands in a bin even outside the
training range (which ``min``/``max`` record separately). Distinct deciles can
be fewer than 9 when a feature has a point mass (``psd_bar`` is exactly 0 for
most cycles); such a feature has fewer than 10 bins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rigwatch.data.columns import CLASS_LABELS, FEATURES
from rigwatch.exceptions import DataError
from rigwatch.model.calibration import fit_isotonic

__all__ = ["CONFIDENCE_BINS", "SAMPLE_SIZE", "assign_bins", "build_reference"]

FORMAT_VERSION = 1
#: Rows kept in the reference sample (for bootstrap thresholds at any window size).
SAMPLE_SIZE = 1000
#: Pseudo-rows shrinking each calibration block toward the model's own confidence.
CALIBRATION_PRIOR_ROWS = 20.0
#: Confidence histogram edges: the top probability of 3 classes lies in [1/3, 1].
CONFIDENCE_BINS = np.linspace(1 / 3, 1, 21)
# Sample values keep 7 significant digits: far below sensor noise, and it keeps
# reference.json under 200 KB.
_SAMPLE_DIGITS = 7


def assign_bins(values: np.ndarray, inner_edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """Bin index of each value under the reference rule (right-closed bins).

    Examples
    --------
    >>> assign_bins(np.array([-5.0, 0.0, 0.5, 1.0, 9.0]), [0.0, 1.0]).tolist()
    [0, 0, 1, 1, 2]
    """
    return np.searchsorted(np.asarray(inner_edges, dtype=np.float64), values, side="left")


def _round_sig(values: np.ndarray, digits: int) -> list[float]:
    return [float(f"{v:.{digits}g}") for v in values.tolist()]


def _feature_profile(column: np.ndarray) -> dict[str, Any]:
    finite = column[np.isfinite(column)]
    deciles = np.quantile(finite, np.linspace(0.1, 0.9, 9))
    inner = np.unique(deciles)
    counts = np.bincount(assign_bins(finite, inner), minlength=len(inner) + 1)
    return {
        "inner_edges": inner.tolist(),
        "counts": counts.tolist(),
        "fractions": (counts / counts.sum()).tolist(),
        "min": float(finite.min()),
        "max": float(finite.max()),
        "mean": float(finite.mean()),
        "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        "missing": int(column.size - finite.size),
    }


def _class_shares(indices: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    counts = np.bincount(indices, minlength=len(classes))
    total = max(int(counts.sum()), 1)
    return {
        "counts": dict(zip(classes, counts.tolist(), strict=True)),
        "fractions": dict(zip(classes, (counts / total).tolist(), strict=True)),
    }


def build_reference(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    proba_test: np.ndarray,
    importance_gain: np.ndarray,
    *,
    features: Sequence[str] = FEATURES,
    classes: Sequence[str] = CLASS_LABELS,
    seed: int = 42,
) -> dict[str, Any]:
    """Build the JSON-serialisable reference profile.

    Parameters
    ----------
    x_train, y_train
        Training features ``(n, len(features))`` and class indices.
    x_test, y_test, proba_test
        Held-out features, their true class indices and the model's
        probabilities for them.
    importance_gain
        Total gain per feature, in ``features`` order (normalised here to sum 1).
    features, classes
        Names, in model order.
    seed
        Seed of the uniform row sample.

    Returns
    -------
    dict
        ``features`` (per-feature bins, counts, range, mean/std), ``sample``
        (up to :data:`SAMPLE_SIZE` training rows, per feature), ``class_priors``,
        ``test_predictions`` (class mix and confidence histogram),
        ``calibration`` (:meth:`~rigwatch.model.calibration.ConfidenceCalibration.to_dict`
        of :func:`~rigwatch.model.calibration.fit_isotonic` of the top probability
        against "argmax is the true class", on the held-out rows, with
        :data:`CALIBRATION_PRIOR_ROWS`) and
        ``feature_importance``.

    Raises
    ------
    DataError
        ``y_test`` and ``proba_test`` have different row counts.
    """
    y_test = np.asarray(y_test)
    if y_test.shape != (len(proba_test),):
        raise DataError(f"y_test: shape {y_test.shape}, expected ({len(proba_test)},) like proba_test rows")
    rng = np.random.default_rng(seed)
    n_train = len(x_train)
    # Uniform without replacement: every training row equally likely, order kept.
    keep = np.sort(rng.choice(n_train, size=min(SAMPLE_SIZE, n_train), replace=False))
    predicted = np.argmax(proba_test, axis=1)
    top = proba_test.max(axis=1)
    confidence = np.clip(top, CONFIDENCE_BINS[0], CONFIDENCE_BINS[-1])
    gain = np.asarray(importance_gain, dtype=np.float64)
    share = gain / gain.sum() if gain.sum() > 0 else np.full(len(features), 1 / len(features))
    return {
        "format": FORMAT_VERSION,
        "binning": (
            "bin = searchsorted(inner_edges, x, side='left'): bin i holds "
            "inner_edges[i-1] < x <= inner_edges[i]; outer bins are open-ended"
        ),
        "training_rows": int(n_train),
        "features": {name: _feature_profile(x_train[:, j]) for j, name in enumerate(features)},
        "sample": {
            "rows": len(keep),
            "seed": seed,
            "digits": _SAMPLE_DIGITS,
            "values": {name: _round_sig(x_train[keep, j], _SAMPLE_DIGITS) for j, name in enumerate(features)},
            "labels": [classes[i] for i in y_train[keep].tolist()],
        },
        "class_priors": _class_shares(y_train, classes)["fractions"],
        "test_predictions": {
            "rows": len(predicted),
            "predicted_class": _class_shares(predicted, classes),
            "confidence_edges": CONFIDENCE_BINS.tolist(),
            "confidence_counts": np.histogram(confidence, CONFIDENCE_BINS)[0].tolist(),
        },
        # The raw top probability: the clip above only keeps histogram counts inside the edges.
        # Shrunk toward the model's own confidence where the held-out rows say little
        # (a good model makes one or two held-out mistakes), anchored at 1/k.
        "calibration": fit_isotonic(
            top, predicted == y_test, prior_rows=CALIBRATION_PRIOR_ROWS, lowest=1 / len(classes)
        ).to_dict(),
        "feature_importance": {
            "type": "gain",
            "values": dict(zip(features, share.tolist(), strict=True)),
        },
    }
