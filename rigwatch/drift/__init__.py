"""Pure, I/O-free drift code shared by the drift service and the tests.

- :mod:`~rigwatch.drift.stats`: PSI, JS, KS, Wasserstein, rates, null thresholds, drift score.
- :mod:`~rigwatch.drift.sketch`: KS and Wasserstein from fine histograms (what a window keeps).
- :mod:`~rigwatch.drift.profile`: a model's reference profile as arrays.
- :mod:`~rigwatch.drift.counts`: a batch as additive window counts, and a window's totals.
- :mod:`~rigwatch.drift.evaluate`: a closed window's totals -> metrics and verdict.
- :mod:`~rigwatch.drift.detectors`: river change detectors fed once per window.

Nothing here touches Kafka, Redis or the clock.
"""

from __future__ import annotations

from rigwatch.drift.counts import DriftLayout, WindowTotals
from rigwatch.drift.detectors import ChangeDetectors
from rigwatch.drift.evaluate import PER_FEATURE, evaluate
from rigwatch.drift.profile import ALPHA, DriftProfile
from rigwatch.drift.sketch import binned_sums, fine_edges, ks_from_counts, wasserstein_from_bins
from rigwatch.drift.stats import (
    STATISTICS,
    NullThresholds,
    bin_counts,
    drift_score,
    js_distance,
    ks_2samp,
    missing_rate,
    null_threshold,
    out_of_range_rate,
    pad_edges,
    psi,
    reference_scale,
    top_drifting,
    wasserstein,
)

__all__ = [
    "ALPHA",
    "PER_FEATURE",
    "STATISTICS",
    "ChangeDetectors",
    "DriftLayout",
    "DriftProfile",
    "NullThresholds",
    "WindowTotals",
    "bin_counts",
    "binned_sums",
    "drift_score",
    "evaluate",
    "fine_edges",
    "js_distance",
    "ks_2samp",
    "ks_from_counts",
    "missing_rate",
    "null_threshold",
    "out_of_range_rate",
    "pad_edges",
    "psi",
    "reference_scale",
    "top_drifting",
    "wasserstein",
    "wasserstein_from_bins",
]
