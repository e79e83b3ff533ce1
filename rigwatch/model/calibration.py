"""Estimated accuracy from the model's confidence, calibrated on held-out rows.

Live labels arrive late or never, so the accuracy service also reports what
the model's own confidence implies: the mean over a window of
``P(prediction correct | top probability)``. The raw top probability is a poor
estimate of that (boosted trees are over- or under-confident in places), so
training fits an isotonic map from confidence to "the prediction was right" on
the held-out test rows and stores it in ``reference.json`` under
``calibration``.

Isotonic regression (pool adjacent violators) is the least-squares
non-decreasing fit: no bins or bandwidth to choose, it keeps the held-out mean
exactly (the mean estimate over the fitting rows is their accuracy), and the
result is a handful of knots. Between knots :meth:`ConfidenceCalibration.estimate`
interpolates linearly, outside them it holds the end values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from rigwatch.exceptions import DataError, ModelError

__all__ = ["METHODS", "ConfidenceCalibration", "fit_isotonic"]

#: Ways a calibration can have been made.
METHODS = ("isotonic", "isotonic+prior", "identity")


@dataclass(frozen=True)
class ConfidenceCalibration:
    """A non-decreasing map from top probability to P(prediction correct).

    Parameters
    ----------
    confidence
        Knots, strictly increasing, in ``[0, 1]``.
    p_correct
        Estimated probability that the prediction is right at each knot,
        non-decreasing, in ``[0, 1]``.
    rows
        Held-out rows it was fitted on (0 for :meth:`identity`).
    method
        ``"isotonic"`` or ``"isotonic+prior"`` (:func:`fit_isotonic`) or ``"identity"``.

    Raises
    ------
    ModelError
        A field breaks the rules above; the message names it and its value.

    Examples
    --------
    >>> cal = ConfidenceCalibration((0.5, 0.9), (0.5, 1.0), rows=40, method="isotonic")
    >>> cal.estimate([0.4, 0.7, 0.95]).tolist()
    [0.5, 0.75, 1.0]
    """

    confidence: tuple[float, ...]
    p_correct: tuple[float, ...]
    rows: int
    method: str

    def __post_init__(self) -> None:
        # Coerce sequences (lists from JSON, numpy arrays) to tuples of floats so
        # the frozen instance compares, hashes and pickles the same way every time.
        for name in ("confidence", "p_correct"):
            value = getattr(self, name)
            try:
                floats = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise ModelError(f"calibration.{name}: {value!r}, expected a list of numbers") from None
            object.__setattr__(self, name, floats)
        knots, p = self.confidence, self.p_correct
        if not knots or len(knots) != len(p):
            raise ModelError(
                f"calibration.p_correct: {len(p)} values for {len(knots)} confidence knots, "
                "expected the same number, at least one"
            )
        for name, values in (("confidence", knots), ("p_correct", p)):
            bad = [v for v in values if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
            if bad:
                raise ModelError(f"calibration.{name}: value {bad[0]!r}, expected finite values in [0, 1]")
        for a, b in pairwise(knots):
            if not a < b:
                raise ModelError(
                    f"calibration.confidence: {b!r} after {a!r}, expected strictly increasing knots"
                )
        for a, b in pairwise(p):
            if not a <= b:
                raise ModelError(f"calibration.p_correct: {b!r} after {a!r}, expected non-decreasing values")
        if isinstance(self.rows, bool) or not isinstance(self.rows, int | np.integer) or self.rows < 0:
            raise ModelError(f"calibration.rows: {self.rows!r}, expected a non-negative integer")
        object.__setattr__(self, "rows", int(self.rows))
        if self.method not in METHODS:
            raise ModelError(f"calibration.method: {self.method!r}, expected one of {', '.join(METHODS)}")

    def estimate(self, confidence: npt.ArrayLike) -> np.ndarray:
        """P(prediction correct) at each confidence (top class probability).

        Linear between knots, the end values outside them; NaN stays NaN.

        Returns
        -------
        numpy.ndarray
            float64, the shape of ``confidence``.
        """
        x = np.asarray(confidence, dtype=np.float64)
        # np.interp holds fp[0] / fp[-1] beyond the first / last knot: the clipping.
        return np.asarray(np.interp(x, self.confidence, self.p_correct), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, read back by :meth:`from_dict`."""
        return {
            "method": self.method,
            "rows": self.rows,
            "confidence": list(self.confidence),
            "p_correct": list(self.p_correct),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConfidenceCalibration:
        """Read :meth:`to_dict` output (``reference["calibration"]``).

        Raises
        ------
        ModelError
            A key is missing or a value breaks the class rules; the message
            names the field and the value.
        """
        if not isinstance(d, Mapping):
            raise ModelError(f"calibration: {type(d).__name__} {d!r}, expected an object")
        missing = [key for key in ("confidence", "p_correct", "rows", "method") if key not in d]
        if missing:
            raise ModelError(f"calibration: missing {', '.join(missing)}; keys present: {sorted(d)}")
        for name in ("confidence", "p_correct"):
            # A string iterates as characters and a number does not iterate: neither is a knot list.
            if not isinstance(d[name], list | tuple):
                raise ModelError(f"calibration.{name}: {d[name]!r}, expected a list of numbers")
        return cls(tuple(d["confidence"]), tuple(d["p_correct"]), rows=d["rows"], method=d["method"])

    @classmethod
    def identity(cls) -> ConfidenceCalibration:
        """P(correct) = confidence: the fallback for packages trained before calibration.

        Examples
        --------
        >>> ConfidenceCalibration.identity().estimate([0.5, 0.99]).tolist()
        [0.5, 0.99]
        """
        return cls((0.0, 1.0), (0.0, 1.0), rows=0, method="identity")


def fit_isotonic(
    confidence: np.ndarray, correct: np.ndarray, *, prior_rows: float = 0.0, lowest: float | None = None
) -> ConfidenceCalibration:
    """Isotonic fit of "prediction correct" on confidence (pool adjacent violators).

    Rows with equal confidence are first merged into one point (their mean
    correctness, weighted by their count), as scikit-learn's
    ``IsotonicRegression`` does. Points are then taken in increasing confidence
    and adjacent blocks whose means decrease (or tie) are pooled until the
    means strictly increase. Each block contributes its first and last
    confidence as knots, both at the block mean, so :meth:`~ConfidenceCalibration.estimate`
    reproduces the fit exactly at every fitting point.

    Parameters
    ----------
    confidence
        ``(n,)`` top class probabilities of held-out rows, finite, in ``[0, 1]``.
    correct
        ``(n,)`` whether each prediction was right (bool, or weights in ``[0, 1]``).
    prior_rows
        Shrink each block toward the model's own confidence, as if it held this
        many more rows that were right as often as they claim. A model right on
        nearly every held-out row leaves blocks of one or two mistakes; pure
        isotonic would call everything below them 0 % correct. 0: pure isotonic.
    lowest
        The lowest possible confidence (``1 / classes``): a knot there at
        itself, so confidences below the held-out ones fall back toward the
        model's own instead of taking the first block's value.

    Raises
    ------
    DataError
        No rows, shapes differ, or values outside ``[0, 1]``.

    Examples
    --------
    >>> cal = fit_isotonic(np.array([0.5, 0.6, 0.7, 0.9]), np.array([True, False, True, True]))
    >>> cal.confidence, cal.p_correct
    ((0.5, 0.6, 0.7, 0.9), (0.5, 0.5, 1.0, 1.0))
    """
    x = np.asarray(confidence, dtype=np.float64)
    y = np.asarray(correct)
    if x.ndim != 1 or x.size == 0:
        raise DataError(f"confidence: shape {x.shape}, expected (n,) with n >= 1 held-out rows")
    if y.shape != x.shape:
        raise DataError(f"correct: shape {y.shape}, expected {x.shape} like confidence")
    y = y.astype(np.float64)
    for name, values in (("confidence", x), ("correct", y)):
        bad = np.flatnonzero(~(np.isfinite(values) & (values >= 0) & (values <= 1)))
        if bad.size:
            row = int(bad[0])
            raise DataError(
                f"{name}: value {float(values[row])!r} at row {row}, expected finite values in [0, 1]"
            )

    knots, counts = np.unique(x, return_counts=True)
    sums = np.bincount(np.searchsorted(knots, x), weights=y, minlength=knots.size)
    conf_sums = knots * counts
    # Blocks as running sums, not means: pooling adds, and each mean is one
    # division of exact sums (0/1 rows give integer sums) rather than a chain of reweightings.
    block_sum: list[float] = []
    block_weight: list[float] = []
    block_lo: list[int] = []
    for i in range(knots.size):
        block_sum.append(float(sums[i]))
        block_weight.append(float(counts[i]))
        block_lo.append(i)
        # Pool ties too: fewer knots, same fit. Comparing the very means that are
        # stored keeps them strictly increasing in floating point.
        while len(block_sum) > 1 and block_sum[-2] / block_weight[-2] >= block_sum[-1] / block_weight[-1]:
            s, w = block_sum.pop(), block_weight.pop()
            block_lo.pop()
            block_sum[-1] += s
            block_weight[-1] += w

    out_x: list[float] = []
    out_p: list[float] = []
    ends = [*block_lo[1:], knots.size]
    for lo, end, s, w in zip(block_lo, ends, block_sum, block_weight, strict=True):
        claimed = float(conf_sums[lo:end].sum())  # what the block's rows claim, summed
        # min(): fractional weights can sum to a rounding step above their count.
        mean = min((s + prior_rows * claimed / w) / (w + prior_rows), 1.0)
        out_x.append(float(knots[lo]))
        out_p.append(mean)
        if end - 1 > lo:
            out_x.append(float(knots[end - 1]))
            out_p.append(mean)
    # Shrinking blocks by different amounts can undo the order by a hair: keep it monotone.
    out_p = np.maximum.accumulate(out_p).tolist()
    if lowest is not None and lowest < out_x[0]:
        out_x.insert(0, float(lowest))
        out_p.insert(0, min(float(lowest), out_p[0]))
    method = "isotonic" if prior_rows == 0 and lowest is None else "isotonic+prior"
    return ConfidenceCalibration(tuple(out_x), tuple(out_p), rows=int(x.size), method=method)
