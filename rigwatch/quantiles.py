"""Mergeable relative-error quantile sketch for latency windows (DDSketch-style log buckets).

A sketch is nothing but integer counts per bucket index, ``{bucket: count}``, so
a stream processor can keep one per window in a Redis hash (field = bucket,
value = count, ``HINCRBY`` from any number of workers) and merge partitions or
windows by adding counts. :class:`LogBuckets` maps latencies to buckets and
reads quantiles back with a relative error of at most ``alpha``.

Buckets are only comparable between sketches built with the same ``alpha`` and
``min_value``: nothing in the counts records them, so keep them fixed per
metric (the defaults are meant to be that fixed choice).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["BucketCounts", "LogBuckets"]

_Value: TypeAlias = int | str | bytes
#: Bucket counts as :meth:`LogBuckets.counts` makes them (``int`` keys and
#: values) or as Redis returns a hash (``bytes``, or ``str`` with
#: ``decode_responses=True``), or as JSON decodes them (``str`` keys).
BucketCounts: TypeAlias = Mapping[int, _Value] | Mapping[str, _Value] | Mapping[bytes, _Value]


@dataclass(frozen=True)
class LogBuckets:
    """Logarithmic buckets of relative width ``gamma``: latency (ms) to bucket and back.

    Bucket ``0`` holds every value below ``min_value`` (including 0) and is
    reported as 0. Bucket ``i >= 1`` holds ``[min_value * gamma**(i-1),
    min_value * gamma**i)`` and is reported as ``min_value * 2 * gamma**i /
    (gamma + 1)``, the DDSketch representative, which is within ``alpha``
    relative of every value in the bucket. (Plain DDSketch keys,
    ``ceil(log_gamma(x))``, would put values near 1 ms in bucket 0 as well; the
    ``min_value`` scale keeps bucket 0 for the values below it only, and every
    key a small non-negative integer.)

    Parameters
    ----------
    alpha
        Relative accuracy of every quantile, in ``(0, 1)``; ``gamma = (1 + alpha) / (1 - alpha)``.
    min_value
        Smallest latency (ms) told apart from 0.

    Examples
    --------
    >>> b = LogBuckets()
    >>> c = b.counts([0.0, 1.0, 2.0, 2.0, 250.0])
    >>> c
    {0: 1, 461: 1, 530: 2, 1013: 1}
    >>> b.quantiles(c, [50, 100]).round(3).tolist()
    [1.993, 249.61]
    >>> b.quantiles({b"461": b"1", b"530": b"2"}, [50]).round(3).tolist()  # a Redis hash
    [1.993]
    """

    alpha: float = 0.005
    min_value: float = 0.01

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if not (math.isfinite(self.min_value) and self.min_value > 0.0):
            raise ValueError(f"min_value must be finite and > 0, got {self.min_value!r}")

    @property
    def gamma(self) -> float:
        """Ratio of a bucket's upper to its lower bound, ``(1 + alpha) / (1 - alpha)``."""
        return (1.0 + self.alpha) / (1.0 - self.alpha)

    def index(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Bucket index of every value, same shape as ``values``.

        Parameters
        ----------
        values
            Latencies in milliseconds: finite and ``>= 0``.

        Returns
        -------
        numpy.ndarray
            ``int64`` bucket indices, ``0`` for values below ``min_value``.

        Raises
        ------
        ValueError
            If any value is negative, NaN or infinite; the message names the first one.

        Examples
        --------
        >>> LogBuckets().index([0.0, 0.009, 0.01, 1.0]).tolist()
        [0, 0, 1, 461]
        >>> LogBuckets().index([3.0, -1.5])
        Traceback (most recent call last):
        ...
        ValueError: latency must be finite and >= 0 ms, got -1.5 (position 1; 1 bad of 2)
        """
        x = np.asarray(values, dtype=np.float64)
        bad = ~((x >= 0.0) & (x < np.inf))  # NaN fails both comparisons
        if bad.any():
            flat = bad.ravel()
            pos = int(np.argmax(flat))
            raise ValueError(
                f"latency must be finite and >= 0 ms, got {float(x.ravel()[pos])!r} "
                f"(position {pos}; {int(flat.sum())} bad of {flat.size})"
            )
        small = x < self.min_value
        # x / min_value >= 1 exactly when x >= min_value (division rounds monotonically),
        # so the logarithm is >= 0 there and every such value lands in a bucket >= 1.
        scaled = np.where(small, 1.0, x / self.min_value)
        idx = np.floor(np.log(scaled) / math.log(self.gamma)) + 1.0
        return np.asarray(np.where(small, 0, idx), dtype=np.int64)

    def counts(self, values: npt.ArrayLike) -> dict[int, int]:
        """Count of values per bucket, ready for ``HINCRBY`` (plain ``int`` keys and values).

        Examples
        --------
        >>> LogBuckets().counts([1.0, 1.001, 5.0])
        {461: 2, 622: 1}
        """
        keys, n = np.unique(self.index(values), return_counts=True)
        # .tolist() gives Python ints: redis-py rejects numpy integers.
        return dict(zip(keys.tolist(), n.tolist(), strict=True))

    @staticmethod
    def merge(a: BucketCounts, b: BucketCounts) -> dict[int, int]:
        """Counts of the union of two sketches: the sum per bucket, keys sorted.

        Examples
        --------
        >>> LogBuckets.merge({461: 2, 622: 1}, {"622": "4", "700": "1"})
        {461: 2, 622: 5, 700: 1}
        """
        out: dict[int, int] = {}
        for counts in (a, b):
            for key, n in _parse(counts):
                out[key] = out.get(key, 0) + n
        return dict(sorted(out.items()))

    def representative(self, buckets: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Value reported for each bucket: 0 for bucket 0, else ``min_value * 2 gamma**i / (gamma + 1)``.

        Examples
        --------
        >>> LogBuckets().representative([0, 1, 461]).round(5).tolist()
        [0.0, 0.01005, 0.99986]
        """
        i = np.asarray(buckets, dtype=np.int64)
        g = self.gamma
        rep = self.min_value * 2.0 / (g + 1.0) * np.exp(i * math.log(g))
        return np.where(i == 0, 0.0, rep)

    def quantiles(self, counts: BucketCounts, qs: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Percentiles of the sketched values, each within ``alpha`` relative of ``np.percentile``.

        Parameters
        ----------
        counts
            Bucket counts; ``str``/``bytes`` keys and values (a Redis hash) are accepted.
            Zero counts are ignored.
        qs
            Percentile(s) in ``[0, 100]``.

        Returns
        -------
        numpy.ndarray
            One value per percentile, shaped like ``qs``; NaN when ``counts`` is empty.

        Examples
        --------
        >>> b = LogBuckets()
        >>> b.quantiles(b.counts([10.0, 20.0]), [0, 50, 100]).round(3).tolist()
        [9.973, 15.028, 20.083]
        >>> b.quantiles({}, [50, 99]).tolist()
        [nan, nan]
        """
        keys, cum = self._cumulative(counts)
        return self._quantiles(keys, cum, qs)

    def max_value(self, counts: BucketCounts) -> float:
        """Representative of the highest non-empty bucket (within ``alpha`` of the maximum); NaN if empty.

        Examples
        --------
        >>> b = LogBuckets()
        >>> round(b.max_value(b.counts([1.0, 300.0])), 2), b.max_value({})
        (298.84, nan)
        """
        keys, _ = self._cumulative(counts)
        return float(self.representative(keys[-1])) if keys.size else math.nan

    def summary(self, counts: BucketCounts, qs: Iterable[float] = (50, 95, 99)) -> dict[str, float]:
        """``p50``/``p95``/``p99`` (one ``p<q>`` key per percentile), ``max`` and ``count``.

        Examples
        --------
        >>> b = LogBuckets()
        >>> {k: round(v, 2) for k, v in b.summary(b.counts([1.0, 2.0, 3.0, 4.0])).items()}
        {'p50': 2.5, 'p95': 3.86, 'p99': 3.98, 'max': 4.01, 'count': 4.0}
        >>> b.summary({}, qs=[99.9])
        {'p99.9': nan, 'max': nan, 'count': 0.0}
        """
        qs = list(qs)
        keys, cum = self._cumulative(counts)
        values = self._quantiles(keys, cum, qs) if qs else np.empty(0)
        out = {f"p{q:g}": float(v) for q, v in zip(qs, values, strict=True)}
        out["max"] = float(self.representative(keys[-1])) if keys.size else math.nan
        out["count"] = float(cum[-1]) if cum.size else 0.0
        return out

    def _quantiles(
        self, keys: npt.NDArray[np.int64], cum: npt.NDArray[np.int64], qs: npt.ArrayLike
    ) -> npt.NDArray[np.float64]:
        """Percentiles ``qs`` from non-empty bucket indices and their cumulative counts."""
        q = np.asarray(qs, dtype=np.float64)
        if not ((q >= 0.0) & (q <= 100.0)).all():
            raise ValueError(f"percentiles must be in [0, 100], got {q.tolist()!r}")
        if cum.size == 0:
            return np.full(q.shape, np.nan)
        n = int(cum[-1])
        # Rank rule: numpy's default ("linear") percentile of the values with each
        # value replaced by its bucket's representative. The fractional rank is
        # h = (n - 1) q / 100 (0-based); the result interpolates linearly between
        # the representatives of order statistics floor(h) and floor(h) + 1. Each
        # representative is within alpha of its order statistic, so the
        # interpolation is within alpha of np.percentile for every n. Reporting the
        # bucket of the nearest rank alone would be off by half a gap between
        # neighbouring order statistics: measured up to 8 % at n = 100.
        h = (n - 1) * q / 100.0
        lo = np.floor(h)
        frac = h - lo
        lo_rank = lo.astype(np.int64)
        hi_rank = np.minimum(lo_rank + 1, n - 1)
        rep = self.representative(keys)
        # Order statistic r (0-based) sits in the first bucket whose cumulative count exceeds r.
        v_lo = rep[np.searchsorted(cum, lo_rank, side="right")]
        v_hi = rep[np.searchsorted(cum, hi_rank, side="right")]
        return np.asarray(v_lo + frac * (v_hi - v_lo), dtype=np.float64)

    def _cumulative(self, counts: BucketCounts) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Non-empty bucket indices in ascending order and their cumulative counts."""
        merged = self.merge(counts, {})
        pairs = [(k, n) for k, n in merged.items() if n > 0]
        keys = np.array([k for k, _ in pairs], dtype=np.int64)
        cum = np.cumsum(np.array([n for _, n in pairs], dtype=np.int64))
        return keys, cum


def _parse(counts: BucketCounts) -> Iterator[tuple[int, int]]:
    """``(bucket, count)`` pairs as ints; ValueError naming any field that is not one."""
    for key, value in counts.items():
        try:
            k, n = _as_int(key), _as_int(value)
        except (TypeError, ValueError):
            raise ValueError(f"bucket counts must be integers, got {key!r}: {value!r}") from None
        if k < 0 or n < 0:
            raise ValueError(f"bucket index and count must be >= 0, got {key!r}: {value!r}")
        yield k, n


def _as_int(x: _Value) -> int:
    """``x`` as an exact int: ``int()`` for text, ``operator.index`` otherwise (no float truncation)."""
    return int(x) if isinstance(x, str | bytes) else operator.index(x)
