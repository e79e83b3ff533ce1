"""Drift statistics from fine histograms match scipy on the sketch and stay close to the raw-value ones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from rigwatch.drift.sketch import binned_sums, fine_edges, ks_from_counts, wasserstein_from_bins
from rigwatch.drift.stats import bin_counts, ks_2samp, pad_edges, reference_scale, wasserstein

TOL = 1e-9
# Rounded values so that ties and values exactly on an edge are exercised.
samples = st.lists(st.floats(-50, 50, allow_nan=False).map(lambda v: round(v, 0)), min_size=1, max_size=80)


def _draw(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    """``(n, 4)``: normal, skewed, a point mass at 0.0 (70 %), integers; ~2 % missing."""
    x = np.column_stack(
        [
            rng.normal(shift, 1.0, n),
            rng.lognormal(0.0, 0.8, n) + shift,
            np.where(rng.random(n) < 0.7, 0.0, rng.exponential(2.0, n) + shift),
            np.round(rng.normal(10 + shift, 3.0, n)),
        ]
    )
    x[rng.random(x.shape) < 0.02] = np.nan
    return x


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference sample, a mildly shifted window and the reference's fine edges."""
    rng = np.random.default_rng(7)
    ref = _draw(rng, 4000)
    win = _draw(rng, 900, shift=0.3)
    return ref, win, fine_edges(ref, bins=100)


def _present(col: np.ndarray) -> np.ndarray:
    return col[~np.isnan(col)]


def _real_edges(row: np.ndarray) -> np.ndarray:
    return row[np.isfinite(row)]


# ---------------------------------------------------------------- edges


def test_fine_edges_are_unique_quantiles_of_present_values_padded_with_inf(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    ref, _, edges = data
    probs = np.linspace(0, 1, 101)[1:-1]
    rows = [np.unique(np.quantile(_present(ref[:, j]), probs)) for j in range(ref.shape[1])]
    np.testing.assert_array_equal(edges, pad_edges(rows))
    assert edges.shape == (4, 99)
    # The point mass at 0.0 collapses 70 quantiles into one edge; integers collapse too.
    assert len(rows[2]) < 35 and 0.0 in rows[2]
    assert len(rows[3]) < 30


def test_fine_edges_one_feature_is_1d_and_missing_or_degenerate_features_get_no_edges() -> None:
    assert fine_edges(np.arange(9.0), bins=4).tolist() == [2.0, 4.0, 6.0]
    assert fine_edges(np.arange(9.0), bins=1).shape == (0,)
    both = fine_edges(np.c_[np.arange(5.0), np.full(5, np.nan)], bins=4)
    assert both.shape == (2, 3)
    assert np.isinf(both[1]).all()
    with pytest.raises(ValueError, match="bins"):
        fine_edges(np.arange(3.0), bins=0)


# ---------------------------------------------------------------- binned sums


def test_binned_sums_counts_equal_bin_counts_and_sums_equal_weighted_bincount(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    _, win, edges = data
    counts, sums = binned_sums(win, edges)
    assert counts.dtype == np.int64 and counts.shape == sums.shape == (4, 100)
    np.testing.assert_array_equal(counts, bin_counts(win, edges))
    for j in range(4):
        col = _present(win[:, j])
        idx = np.searchsorted(edges[j], col, side="left")
        np.testing.assert_allclose(sums[j], np.bincount(idx, weights=col, minlength=100), rtol=0, atol=TOL)
        n_real = len(_real_edges(edges[j])) + 1
        assert counts[j, n_real:].sum() == 0 and sums[j, n_real:].sum() == 0  # padded bins stay empty


@settings(max_examples=150, deadline=None)
@given(samples, samples)
def test_binned_sums_with_ties_on_edges_matches_bincount(values: list[float], ref: list[float]) -> None:
    edges = np.unique(ref)  # every edge equals some values: exercises the "x <= edge" side
    counts, sums = binned_sums(np.asarray(values), edges)
    idx = np.searchsorted(edges, values, side="left")
    np.testing.assert_array_equal(counts, np.bincount(idx, minlength=len(edges) + 1))
    want = np.bincount(idx, weights=values, minlength=len(edges) + 1)
    np.testing.assert_allclose(sums, want, rtol=0, atol=TOL)


def test_binned_sums_of_batches_add_up_to_the_whole_window(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    _, win, edges = data
    whole_counts, whole_sums = binned_sums(win, edges)
    parts = [binned_sums(batch, edges) for batch in np.array_split(win, [1, 250, 251, 600])]
    np.testing.assert_array_equal(sum(c for c, _ in parts), whole_counts)
    np.testing.assert_allclose(sum(s for _, s in parts), whole_sums, rtol=0, atol=TOL)


def test_binned_sums_of_empty_or_all_missing_batch_is_all_zero() -> None:
    edges = pad_edges([[0.0, 1.0], [2.0]])
    for batch in (np.empty((0, 2)), np.full((3, 2), np.nan)):
        counts, sums = binned_sums(batch, edges)
        assert counts.shape == (2, 3) and not counts.any() and not sums.any()
    with pytest.raises(ValueError, match="rows"):
        binned_sums(np.zeros((3, 3)), edges)


# ---------------------------------------------------------------- KS


def test_ks_from_counts_statistic_is_exactly_the_ecdf_gap_at_the_edges(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    ref, win, edges = data
    d, _ = ks_from_counts(bin_counts(ref, edges), binned_sums(win, edges)[0])
    for j in range(4):
        a, b, e = np.sort(_present(ref[:, j])), np.sort(_present(win[:, j])), _real_edges(edges[j])
        gap = np.abs(
            np.searchsorted(a, e, side="right") / a.size - np.searchsorted(b, e, side="right") / b.size
        )
        assert d[j] == gap.max()


def test_ks_from_counts_pvalue_is_scipy_asymptotic_kstwo_formula(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    ref, win, edges = data
    ref_counts, win_counts = bin_counts(ref, edges), binned_sums(win, edges)[0]
    d, p = ks_from_counts(ref_counts, win_counts)
    for j in range(4):
        m, n = ref_counts[j].sum(), win_counts[j].sum()
        assert p[j] == pytest.approx(sps.kstwo.sf(d[j], np.round(m * n / (m + n))), rel=TOL, abs=1e-300)
    assert ((p > 0) & (p < 1)).all()


def test_ks_from_counts_equals_scipy_asymp_when_every_value_is_an_edge() -> None:
    rng = np.random.default_rng(11)
    a, b = rng.integers(0, 30, 700).astype(float), rng.integers(2, 31, 300).astype(float)
    edges = np.arange(0.0, 31.0)  # one bin per integer: the sketch loses nothing
    d, p = ks_from_counts(bin_counts(a, edges), bin_counts(b, edges))
    want = sps.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(want.statistic, abs=TOL)
    assert p == pytest.approx(want.pvalue, rel=TOL, abs=TOL)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's p-value for 1-value samples
@settings(max_examples=200, deadline=None)
@given(samples, samples, st.integers(1, 25))
def test_ks_from_counts_is_below_exact_ks_by_at_most_the_smaller_bin_mass(
    a: list[float], b: list[float], bins: int
) -> None:
    ref, win = np.asarray(a), np.asarray(b)
    edges = fine_edges(ref, bins)
    p_mass, q_mass = bin_counts(ref, edges) / ref.size, bin_counts(win, edges) / win.size
    sketch, _ = ks_from_counts(bin_counts(ref, edges), bin_counts(win, edges))
    exact = sps.ks_2samp(ref, win, method="asymp").statistic  # the statistic does not depend on method
    assert sketch <= exact + 1e-12
    # Inside bin i both ECDFs move by at most their bin mass, and the gap by the smaller one.
    assert exact - sketch <= np.minimum(p_mass, q_mass).max() + 1e-12
    assert exact - sketch <= p_mass.max() + q_mass.max() + 1e-12


def test_ks_from_counts_under_exact_scipy_ks_on_real_edges(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    ref, win, edges = data
    ref_counts, win_counts = bin_counts(ref, edges), binned_sums(win, edges)[0]
    sketch, _ = ks_from_counts(ref_counts, win_counts)
    exact, _ = ks_2samp(ref, win, method="asymp")
    p_mass = ref_counts / ref_counts.sum(axis=1, keepdims=True)
    q_mass = win_counts / win_counts.sum(axis=1, keepdims=True)
    assert (sketch <= exact + 1e-12).all()
    assert (exact - sketch <= p_mass.max(axis=1) + q_mass.max(axis=1)).all()
    # Away from the point masses a bin holds ~1 % of the reference.
    assert exact[0] - sketch[0] <= 0.011 and exact[1] - sketch[1] <= 0.011


def test_ks_from_counts_detects_a_two_std_shift_close_to_exact_statistic() -> None:
    rng = np.random.default_rng(5)
    ref, win = rng.normal(size=5000), rng.normal(2.0, 1.0, size=400)
    edges = fine_edges(ref)
    d, p = ks_from_counts(bin_counts(ref, edges), binned_sums(win, edges)[0])
    exact = sps.ks_2samp(ref, win)
    assert p < 1e-6
    assert 0 <= exact.statistic - d <= 0.011  # one reference bin is 1 % of the sample


def test_ks_from_counts_empty_side_is_nan_and_rows_are_independent() -> None:
    d, p = ks_from_counts([[5, 5, 0], [3, 3, 4]], [[0, 0, 0], [3, 3, 4]])
    assert np.isnan(d[0]) and np.isnan(p[0])
    assert d[1] == 0.0 and p[1] == 1.0
    single_d, single_p = ks_from_counts([0, 0], [1, 1])
    assert np.isnan(single_d) and np.isnan(single_p)


# ---------------------------------------------------------------- Wasserstein


def _scipy_on_bins(ref_col: np.ndarray, counts: np.ndarray, sums: np.ndarray, scale: float) -> float:
    filled = counts > 0
    means = sums[filled] / counts[filled]
    return float(sps.wasserstein_distance(_present(ref_col), means, v_weights=counts[filled]) / scale)


def test_wasserstein_from_bins_matches_scipy_weighted_bin_means(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    ref, win, edges = data
    counts, sums = binned_sums(win, edges)
    scale = reference_scale(ref)
    got = wasserstein_from_bins(ref, counts, sums, scale)
    for j in range(4):
        assert got[j] == pytest.approx(_scipy_on_bins(ref[:, j], counts[j], sums[j], scale[j]), abs=TOL)


@settings(max_examples=200, deadline=None)
@given(samples, samples, st.integers(1, 25), st.floats(0.1, 10))
def test_wasserstein_from_bins_matches_scipy_with_ties_and_point_masses(
    a: list[float], b: list[float], bins: int, scale: float
) -> None:
    ref, win = np.asarray(a), np.asarray(b)
    counts, sums = binned_sums(win, fine_edges(ref, bins))
    got = wasserstein_from_bins(ref, counts, sums, scale)
    assert got == pytest.approx(_scipy_on_bins(ref, counts, sums, scale), abs=TOL, rel=TOL)


def test_wasserstein_from_bins_is_within_the_within_bin_deviation_of_raw_distance(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    ref, win, edges = data
    counts, sums = binned_sums(win, edges)
    scale = reference_scale(ref)
    sketch = wasserstein_from_bins(ref, counts, sums, scale)
    exact = wasserstein(ref, win, scale)
    for j in range(4):
        col, real = _present(win[:, j]), _real_edges(edges[j])
        idx = np.searchsorted(edges[j], col, side="left")
        deviation = np.abs(col - sums[j, idx] / counts[j, idx])
        # Moving every value to its bin mean is an optimal plan from the raw window to the
        # sketch (ordered bins, means inside them), so by the triangle inequality the two
        # distances differ by at most its cost, the mean |x - bin mean| ...
        bound = deviation.mean() / scale[j]
        assert abs(sketch[j] - exact[j]) <= bound + TOL
        # ... which inside an inner bin is at most the bin's width (outer bins are open).
        inner = (idx > 0) & (idx < len(real))
        assert (deviation[inner] <= np.diff(real)[idx[inner] - 1] + TOL).all()
    # Normal feature: 100 quantile bins put the sketch within 0.02 reference std.
    assert abs(sketch[0] - exact[0]) <= 0.02


def test_wasserstein_from_bins_empty_window_is_nan() -> None:
    ref = np.c_[np.arange(10.0), np.zeros(10)]
    got = wasserstein_from_bins(ref, [[0, 0, 0], [2, 0, 0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], 1.0)
    assert np.isnan(got[0]) and got[1] == 0.0
    assert np.isnan(wasserstein_from_bins(np.full(4, np.nan), [1, 0], [1.0, 0.0], 1.0))
    with pytest.raises(ValueError, match="features"):
        wasserstein_from_bins(ref, [1, 0], [1.0, 0.0], 1.0)
