"""Drift thresholds on the real hydraulic data: quiet on a stationary stream, loud on a real shift."""

from __future__ import annotations

import numpy as np
import pytest

from rigwatch.data import FEATURES
from rigwatch.drift import NullThresholds, bin_counts, pad_edges, psi, top_drifting

WINDOW = 100


@pytest.fixture(scope="module")
def psi_setup(real_model):
    profile = real_model.reference["features"]
    edges = pad_edges([profile[f]["inner_edges"] for f in FEATURES])
    expected = np.array(
        [profile[f]["counts"] + [0] * (edges.shape[1] + 1 - len(profile[f]["counts"])) for f in FEATURES]
    )
    sample = np.column_stack([real_model.reference["sample"]["values"][f] for f in FEATURES])
    null = NullThresholds(sample, "psi", inner_edges=edges, expected_counts=expected, seed=1)
    return edges, expected, null


def _window_psi(rows: np.ndarray, edges: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return psi(expected, bin_counts(rows, edges))


def test_stationary_real_windows_rarely_cross_the_threshold(real_dataset, psi_setup) -> None:
    edges, expected, null = psi_setup
    threshold = null(WINDOW)
    rng = np.random.default_rng(7)
    features = real_dataset.features()
    crossings = np.zeros(len(FEATURES))
    windows = 400
    for _ in range(windows):
        rows = features[rng.integers(len(features), size=WINDOW)]
        crossings += _window_psi(rows, edges, expected) > threshold
    # A 99th-percentile threshold: ~1 % per feature (measured 1.1 % mean, 2.75 % worst of 16);
    # the bounds leave room for the sampling noise of 400 windows.
    assert (crossings / windows).mean() <= 0.02
    assert (crossings / windows).max() <= 0.04
    # Measured before: a stationary PSI p99 of about 0.22 at n=100 with decile bins.
    assert 0.1 < float(np.median(threshold)) < 0.4


def test_two_degrees_on_tsb_temp_is_flagged_with_tsb_temp_on_top(real_dataset, psi_setup) -> None:
    edges, expected, null = psi_setup
    threshold = null(WINDOW)
    rng = np.random.default_rng(8)
    features = real_dataset.features()
    column = FEATURES.index("tsb_temp")
    for _ in range(20):
        rows = features[rng.integers(len(features), size=WINDOW)].copy()
        rows[:, column] += 2.0
        ratio = _window_psi(rows, edges, expected) / threshold
        assert ratio[column] > 1.0
        assert top_drifting(ratio, FEATURES, k=1)[0][0] == "tsb_temp"
