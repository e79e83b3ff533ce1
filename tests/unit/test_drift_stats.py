"""The drift statistics match scipy / plain numpy, and their null thresholds hold their level."""

from __future__ import annotations

import pickle
from typing import Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from rigwatch.drift import (
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
from rigwatch.model.reference import assign_bins

TOL = 1e-9
counts_pair = st.integers(1, 12).flatmap(
    lambda k: st.tuples(
        st.lists(st.integers(0, 500), min_size=k, max_size=k).filter(lambda c: sum(c) > 0),
        st.lists(st.integers(0, 500), min_size=k, max_size=k).filter(lambda c: sum(c) > 0),
    )
)
# Rounded values so that ties (point masses, 7-digit samples) are exercised.
samples = st.lists(st.floats(-50, 50, allow_nan=False).map(lambda v: round(v, 1)), min_size=1, max_size=60)


def _psi_reference(expected: list[int], actual: list[int], eps: float = 0.5) -> float:
    """PSI written out bin by bin, the smoothing rule of the docstring."""
    ne, na = sum(expected), sum(actual)
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        if e == 0 and a == 0:
            continue
        pe = (e if e > 0 else eps) / ne
        pa = (a if a > 0 else eps) / na
        total += (pa - pe) * np.log(pa / pe)
    return total


# ---------------------------------------------------------------- PSI / JS


@settings(max_examples=200, deadline=None)
@given(counts_pair)
def test_psi_matches_bin_by_bin_reference(pair: tuple[list[int], list[int]]) -> None:
    expected, actual = pair
    assert psi(expected, actual) == pytest.approx(_psi_reference(expected, actual), abs=TOL, rel=TOL)
    assert psi(expected, actual) >= 0


def test_psi_identical_histograms_is_zero_even_with_empty_bins() -> None:
    assert psi([10, 0, 5, 0], [20, 0, 10, 0]) == 0.0


def test_psi_empty_actual_window_is_nan_not_error() -> None:
    assert np.isnan(psi([10, 10], [0, 0]))


def test_psi_batched_rows_equal_single_calls_and_padding_is_neutral() -> None:
    expected = np.array([[10, 20, 30, 0], [5, 5, 0, 0]])
    actual = np.array([[12, 18, 29, 0], [9, 1, 0, 0]])
    batched = psi(expected, actual)
    assert batched[0] == pytest.approx(psi([10, 20, 30], [12, 18, 29]), abs=TOL)
    assert batched[1] == pytest.approx(psi([5, 5], [9, 1]), abs=TOL)


def test_psi_rejects_non_positive_eps() -> None:
    with pytest.raises(ValueError, match="eps"):
        psi([1, 2], [2, 1], eps=0)


@settings(max_examples=200, deadline=None)
@given(counts_pair)
def test_js_distance_matches_scipy_base_2(pair: tuple[list[int], list[int]]) -> None:
    p, q = pair
    want = jensenshannon(np.asarray(p, float), np.asarray(q, float), base=2)
    got = js_distance(p, q)
    if np.isnan(want):  # scipy's sqrt of a -1e-17 divergence; ours clips to 0
        assert got == pytest.approx(0.0, abs=1e-7)
    else:
        assert got == pytest.approx(want, abs=TOL)


def test_js_distance_batched_matches_scipy_along_last_axis() -> None:
    rng = np.random.default_rng(1)
    p, q = rng.integers(0, 30, size=(16, 10)), rng.integers(0, 30, size=(16, 10))
    want = jensenshannon(p.astype(float), q.astype(float), base=2, axis=1)
    np.testing.assert_allclose(js_distance(p, q), want, atol=TOL)
    assert js_distance([4, 0, 4], [1, 0, 1]) == 0.0
    assert np.isnan(js_distance([1, 1], [0, 0]))


# ---------------------------------------------------------------- binning


def test_bin_counts_follows_reference_assign_bins_per_padded_feature() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(size=(300, 3))
    values[rng.random((300, 3)) < 0.1] = np.nan
    edges: list[np.ndarray] = [
        np.quantile(values[:, 0][~np.isnan(values[:, 0])], np.linspace(0.1, 0.9, 9)),
        np.array([0.0]),
        np.array([-1.0, 1.0]),
    ]
    got = np.asarray(bin_counts(values, pad_edges(edges)))
    assert got.shape == (3, 10)
    for j, e in enumerate(edges):
        col = values[:, j][~np.isnan(values[:, j])]
        want = np.bincount(assign_bins(col, e), minlength=len(e) + 1)
        np.testing.assert_array_equal(got[j, : len(e) + 1], want)
        assert got[j, len(e) + 1 :].sum() == 0


# ---------------------------------------------------------------- KS / Wasserstein


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's own, for 1-value samples
@settings(max_examples=150, deadline=None)
@given(samples, samples)
def test_ks_2samp_matches_scipy_default_and_asymp(a: list[float], b: list[float]) -> None:
    for method in ("auto", "asymp"):
        want = sps.ks_2samp(a, b, method=method)
        d, p = ks_2samp(np.asarray(a), np.asarray(b), method=method)  # type: ignore[arg-type]
        assert d == pytest.approx(want.statistic, abs=TOL)
        # Both give NaN where Smirnov's distribution is undefined (n = m = 1).
        np.testing.assert_allclose(p, want.pvalue, atol=TOL, equal_nan=True)


def test_ks_2samp_batched_drops_missing_per_feature() -> None:
    rng = np.random.default_rng(3)
    ref, win = rng.normal(size=(1000, 4)), rng.normal(0.2, 1.0, size=(150, 4))
    win[::7, 1] = np.nan
    win[:, 3] = np.nan  # an all-missing feature: no verdict, not an error
    d, p = ks_2samp(ref, win)
    for j in range(3):
        col = win[:, j][~np.isnan(win[:, j])]
        want = sps.ks_2samp(ref[:, j], col)
        assert d[j] == pytest.approx(want.statistic, abs=TOL)
        assert p[j] == pytest.approx(want.pvalue, abs=TOL)
    assert np.isnan(d[3]) and np.isnan(p[3])


def test_ks_2samp_identical_samples_give_zero_statistic_and_p_one() -> None:
    x = np.arange(50.0)
    assert ks_2samp(x, x) == (0.0, 1.0)


@settings(max_examples=150, deadline=None)
@given(samples, samples, st.floats(0.1, 10))
def test_wasserstein_matches_scipy_divided_by_scale(a: list[float], b: list[float], scale: float) -> None:
    want = sps.wasserstein_distance(a, b) / scale
    assert wasserstein(np.asarray(a), np.asarray(b), scale) == pytest.approx(want, abs=TOL, rel=TOL)


def test_wasserstein_batched_with_reference_scale() -> None:
    rng = np.random.default_rng(4)
    ref, win = rng.normal(size=(500, 3)) * [1, 10, 100], rng.normal(size=(80, 3)) * [1, 10, 100]
    scale = reference_scale(ref)
    got = wasserstein(ref, win, scale)
    for j in range(3):
        assert got[j] == pytest.approx(sps.wasserstein_distance(ref[:, j], win[:, j]) / scale[j], abs=TOL)
    assert wasserstein(ref, ref, scale).tolist() == [0.0, 0.0, 0.0]


def test_reference_scale_falls_back_for_point_masses_and_constants() -> None:
    point_mass = np.r_[np.zeros(90), np.arange(1.0, 11.0)]  # IQR 0, like psd_bar
    constant = np.full(100, 3.0)
    scale = reference_scale(np.c_[point_mass, constant])
    assert scale[0] == pytest.approx(np.std(point_mass, ddof=1))
    assert scale[1] == 1.0


# ---------------------------------------------------------------- data quality


def test_missing_and_out_of_range_rates_per_feature() -> None:
    values = np.array([[1.0, np.nan], [20.0, np.nan], [np.nan, np.nan], [5.0, np.nan]])
    np.testing.assert_allclose(missing_rate(values), [0.25, 1.0])
    rate = out_of_range_rate(values, lo=[0.0, 0.0], hi=[10.0, 10.0])
    assert rate[0] == pytest.approx(1 / 3)
    assert np.isnan(rate[1])  # all missing: no present value to judge
    assert np.isnan(missing_rate(np.empty((0, 2)))).all()
    assert out_of_range_rate(np.array([-np.inf, np.inf, 0.0]), -1.0, 1.0) == pytest.approx(2 / 3)


# ---------------------------------------------------------------- null thresholds


def _population(rng: np.random.Generator, size: int) -> np.ndarray:
    """Three sensor-like features: normal, skewed, and one with a point mass at 0."""
    return np.c_[
        rng.normal(150.0, 10.0, size),
        rng.gamma(2.0, 3.0, size),
        np.where(rng.random(size) < 0.6, 0.0, rng.exponential(1.0, size)),
    ]


@pytest.mark.parametrize("statistic", ["psi", "js", "ks", "wasserstein"])
def test_null_threshold_holds_its_level_and_catches_a_two_std_shift(
    statistic: Literal["psi", "js", "ks", "wasserstein"],
) -> None:
    rng = np.random.default_rng(5)
    train = _population(rng, 2000)
    sample = train[rng.choice(2000, 1000, replace=False)]
    edges = pad_edges([np.unique(np.quantile(train[:, j], np.linspace(0.1, 0.9, 9))) for j in range(3)])
    expected = bin_counts(train, edges)
    scale = reference_scale(sample)
    n, windows = 100, 600
    threshold = null_threshold(
        sample, n, statistic, resamples=1000, seed=1, inner_edges=edges, expected_counts=expected
    )

    def stat(window: np.ndarray) -> np.ndarray:
        if statistic == "psi":
            return np.asarray(psi(expected, bin_counts(window, edges)))
        if statistic == "js":
            return np.asarray(js_distance(expected, bin_counts(window, edges)))
        if statistic == "ks":
            return np.asarray(ks_2samp(sample, window, method="asymp")[0])
        return np.asarray(wasserstein(sample, window, scale))

    live = _population(rng, n * windows).reshape(windows, n, 3)
    stationary = np.array([stat(w) for w in live])
    false_alarms = (stationary > threshold).mean(axis=0)
    # Nominal 1 %; 600 windows x 3 features, seeded: allow the binomial spread.
    assert (false_alarms <= 0.03).all(), false_alarms
    shifted = live[:50].copy()
    shifted[:, :, 0] += 2 * train[:, 0].std()
    hits = np.array([stat(w) for w in shifted]) > threshold
    assert hits[:, 0].all()
    assert hits[:, 1:].mean() <= 0.05


def test_null_threshold_shrinks_with_count_and_is_deterministic() -> None:
    sample = np.random.default_rng(6).normal(size=(800, 2))
    t30 = null_threshold(sample, 30, "wasserstein", resamples=400, seed=3)
    t300 = null_threshold(sample, 300, "wasserstein", resamples=400, seed=3)
    assert (t300 < t30).all()
    np.testing.assert_array_equal(t30, null_threshold(sample, 30, "wasserstein", resamples=400, seed=3))


def test_null_threshold_validates_arguments() -> None:
    sample = np.zeros(10)
    with pytest.raises(ValueError, match="inner_edges"):
        null_threshold(sample, 10, "psi")
    with pytest.raises(ValueError, match="statistic"):
        null_threshold(sample, 10, "chi2")  # type: ignore[arg-type]


def test_null_thresholds_table_interpolates_caches_and_pickles() -> None:
    sample = np.random.default_rng(7).normal(size=(500, 2))
    null = NullThresholds(sample, "ks", resamples=300, seed=2, grid=[50, 100, 200])
    mid = null(70)
    lo, hi = null.table[50], null.table[100]
    w = np.log(70 / 50) / np.log(2)
    np.testing.assert_allclose(mid, (1 - w) * lo + w * hi, atol=TOL)
    # Off the grid's ends: computed exactly, order of requests does not matter.
    other = NullThresholds(sample, "ks", resamples=300, seed=2, grid=[50, 100, 200])
    np.testing.assert_array_equal(other(400), null(400))
    np.testing.assert_array_equal(null(400), null_threshold(sample, 400, "ks", resamples=300, seed=2))
    clone = pickle.loads(pickle.dumps(null))
    np.testing.assert_array_equal(clone(70), mid)
    per_feature = null(np.array([50, 0]))
    assert per_feature[0] == null.table[50][0] and np.isnan(per_feature[1])


# ---------------------------------------------------------------- scoring


def test_drift_score_weights_by_importance_and_skips_missing_verdicts() -> None:
    assert drift_score([4.0, 0.5, 0.5], [0.5, 0.25, 0.25]) == pytest.approx(2.25)
    assert drift_score([np.nan, 2.0], [0.9, 0.1]) == pytest.approx(2.0)
    assert np.isnan(drift_score([np.nan, np.nan], [0.5, 0.5]))
    batched = drift_score(np.array([[1.0, 3.0], [0.0, 0.0]]), [1.0, 1.0])
    np.testing.assert_allclose(batched, [2.0, 0.0])


def test_top_drifting_ranks_by_value_or_weighted_contribution() -> None:
    names = ["psa_bar", "tsb_temp", "fs1_lpm"]
    assert top_drifting([1.0, 5.0, np.nan], names) == [("tsb_temp", 5.0), ("psa_bar", 1.0)]
    ranked = top_drifting([3.0, 2.0, 1.0], names, k=1, importance=[0.1, 0.8, 0.1])
    assert ranked == [("tsb_temp", 2.0)]
