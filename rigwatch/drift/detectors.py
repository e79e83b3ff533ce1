"""Streaming change detectors (river) fed once per closed window.

The window statistics say "this window differs from training"; these say
"the stream just changed", which is what a run-order replay crossing a cooler
change looks like even when every window already differs from the balanced
training mix.

- ADWIN per predicted class on the indicator "predicted this class", and on
  the confidence: a window's histogram is fed as up to ``per_window`` values
  spread evenly through the window (order inside a window is not kept, and
  an even spread does not invent a change inside it).
- Page-Hinkley per feature on the z-score of the window mean against the
  training mean (``(mean - mu) / (sigma / sqrt(n))``): about N(0, 1) for a
  stationary iid stream at any count, so one threshold serves every window size.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from river import drift

__all__ = ["ChangeDetectors", "spread"]


def spread(values: Sequence[float], counts: npt.ArrayLike, total: int) -> list[float]:
    """``values`` repeated by ``counts`` scaled to ``total``, interleaved evenly.

    Examples
    --------
    >>> spread([0.0, 1.0], [2, 2], 4)
    [0.0, 1.0, 0.0, 1.0]
    >>> spread([0.0, 1.0], [300, 100], 4)
    [0.0, 0.0, 1.0, 0.0]
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.sum() <= 0:
        return []
    scaled = c * min(1.0, total / c.sum())
    # Largest remainder: the scaled counts keep the histogram's shares.
    whole = np.floor(scaled).astype(int)
    short = round(scaled.sum()) - int(whole.sum())
    whole[np.argsort(-(scaled - whole), kind="stable")[:short]] += 1
    positions = np.concatenate([(np.arange(k) + 0.5) / k for k in whole if k > 0])
    labels = np.concatenate([np.full(k, v) for v, k in zip(values, whole, strict=True) if k > 0])
    return [float(v) for v in labels[np.argsort(positions, kind="stable")]]


class ChangeDetectors:
    """River detectors of one subject, updated with each closed window in order.

    Parameters
    ----------
    classes
        Predicted-class labels.
    features
        Feature names.
    per_window
        Values fed to each ADWIN per window.
    ph_threshold, ph_delta
        Page-Hinkley alarm threshold and tolerated drift, in z units (the
        default fires after 2-3 windows at z ~ 4, and almost never on noise).

    Examples
    --------
    >>> d = ChangeDetectors(["3", "20"], ["t"], per_window=50)
    >>> for _ in range(5):
    ...     _ = d.update([50, 0], [0, 50], [0.9, 1.0], [0.0])
    >>> d.update([0, 50], [0, 50], [0.9, 1.0], [0.0]).changes
    ['class.3', 'class.20']
    """

    def __init__(
        self,
        classes: Sequence[str],
        features: Sequence[str],
        *,
        per_window: int = 200,
        ph_threshold: float = 8.0,
        ph_delta: float = 0.5,
    ) -> None:
        self.classes = tuple(classes)
        self.features = tuple(features)
        self.per_window = per_window
        self.ph_threshold = ph_threshold
        self.ph_delta = ph_delta
        # clock=1: check for a cut after every value, since a window feeds few.
        self._class = [drift.ADWIN(clock=1) for _ in self.classes]
        self._confidence = drift.ADWIN(clock=1)
        self._mean = [
            drift.PageHinkley(min_instances=3, delta=ph_delta, threshold=ph_threshold, mode="both")
            for _ in self.features
        ]
        self._changes: list[str] = []

    def update(
        self,
        class_counts: npt.ArrayLike,
        confidence_counts: npt.ArrayLike,
        confidence_values: Sequence[float],
        mean_z: npt.ArrayLike,
    ) -> ChangeDetectors:
        """Feed one closed window; :attr:`changes` names what changed in it."""
        changes: list[str] = []
        classes = np.asarray(class_counts, dtype=np.int64)
        if classes.sum() > 0:
            for k, (label, detector) in enumerate(zip(self.classes, self._class, strict=True)):
                indicator = np.zeros(len(self.classes))
                indicator[k] = 1.0
                if self._feed(detector, spread(indicator.tolist(), classes, self.per_window)):
                    changes.append(f"class.{label}")
            if self._feed(self._confidence, spread(confidence_values, confidence_counts, self.per_window)):
                changes.append("confidence")
        for name, page_hinkley, value in zip(self.features, self._mean, np.asarray(mean_z), strict=True):
            if np.isfinite(value):
                page_hinkley.update(float(value))
                if page_hinkley.drift_detected:
                    changes.append(f"mean.{name}")
        self._changes = changes
        return self

    @staticmethod
    def _feed(detector: drift.ADWIN, values: list[float]) -> bool:
        detected = False
        for v in values:
            detector.update(v)
            detected = detected or detector.drift_detected
        return detected

    @property
    def changes(self) -> list[str]:
        """Detectors that fired on the last window (``class.<label>``, ``confidence``, ``mean.<feature>``)."""
        return list(self._changes)

    def clone(self) -> ChangeDetectors:
        """A deep copy (state included)."""
        return copy.deepcopy(self)
