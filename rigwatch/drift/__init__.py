"""Pure, I/O-free drift statistics shared by the drift service and the tests.

The service (``services/drift``) windows decoded records and calls these
functions on numpy arrays; nothing here touches Kafka, Redis or the clock.
"""

from __future__ import annotations

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
from rigwatch.drift.windows import LATE, TumblingWindows

__all__ = [
    "LATE",
    "STATISTICS",
    "NullThresholds",
    "TumblingWindows",
    "bin_counts",
    "drift_score",
    "js_distance",
    "ks_2samp",
    "missing_rate",
    "null_threshold",
    "out_of_range_rate",
    "pad_edges",
    "psi",
    "reference_scale",
    "top_drifting",
    "wasserstein",
]
