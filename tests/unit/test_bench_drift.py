"""``rigwatch bench drift`` without a broker: its report, and its scipy baseline against evaluate()."""

from __future__ import annotations

import numpy as np
import pytest

from loadgen.bench import summary
from loadgen.bench_drift import baseline_statistics, markdown, redis_fields, summarize
from rigwatch.data import FEATURES
from rigwatch.drift.counts import DriftLayout
from rigwatch.drift.evaluate import evaluate
from rigwatch.drift.profile import DriftProfile


def _s(*values: float) -> dict[str, float]:
    return summary(list(values))


def _fake_result() -> dict:
    update = {
        "events_per_s": _s(90_000.0, 110_000.0, 120_000.0),
        "events_per_cpu_s": _s(95_000.0, 105_000.0, 125_000.0),
        "cpu_per_wall": _s(1.0, 1.0, 1.0),
        "us_per_event": _s(9.0, 9.5, 10.0),
        "hash_fields_per_event": _s(35.0, 35.0, 35.0),
    }
    for part in ("decode", "group", "count", "fields", "other"):
        update[f"{part}_us_per_event"] = _s(1.0, 2.0, 3.0)
    close = {k: _s(1.0, 2.0, 4.0) for k in ("totals_ms", "evaluate_ms", "window_ms", "cold_first_window_ms")}
    close["hash_fields"] = _s(3000.0, 3000.0, 3000.0)
    return {
        "created_at": "2026-11-22T00:00:00Z",
        "machine": {"cpus": 2},
        "data": "csv:x",
        "options": {
            "events": "100000",
            "repeats": "3",
            "rigs": "4",
            "interval_ms": "100",
            "window_ms": "30000",
        }
        | {"batch": "2000"},
        "update_path": update,
        "window_close": {"300": close},
        "baseline_scipy": {
            "events_per_s": _s(2000.0, 2500.0, 3000.0),
            "decode_us_per_event": _s(17.0, 17.0, 17.0),
            "statistics_us_per_event": _s(370.0, 370.0, 370.0),
            "statistics_ms_per_window": _s(22.0, 22.0, 22.0),
            "windows": _s(1667.0, 1667.0, 1667.0),
        },
        "ratios": {"update_path/baseline": _s(40.0, 44.0, 48.0)},
        "agreement": {"max_abs_diff.psi": 0.0, "windows_compared": 10.0, "windows_with_psi_diff": 0.0},
        "redis_apply": {},
        "end_to_end": {"events_per_s": _s(8000.0, 9000.0, 10_000.0), "startup_s": _s(4.0, 5.0, 6.0)},
        "profile": {},
    }


def test_summarize_takes_median_min_max_per_key() -> None:
    runs = [{"a": 3.0, "b": 10.0}, {"a": 1.0, "b": 30.0}, {"a": 2.0, "b": 20.0}]
    assert summarize(runs) == {"a": _s(1.0, 2.0, 3.0), "b": _s(10.0, 20.0, 30.0)}
    assert summarize([]) == {}


def test_markdown_reports_medians_ranges_target_and_ratios() -> None:
    table = markdown(_fake_result())
    assert "| events/s (wall) | 110,000 (90,000–120,000) |" in table
    assert "| target ≥ 100,000 events/s/core | met |" in table
    assert "| | 300 | 3,000 | 2.00 (1.00–4.00) |" in table
    assert "| events/s | 2,500 (2,000–3,000) |" in table
    assert "| update_path/baseline | 44.00 (40.00–48.00) |" in table
    assert "| windows with a PSI difference > 1e-9 | 0 of 10 |" in table
    assert "| start-up s (process start → first batch applied) | 5.0 (4.0–6.0) |" in table
    # Parts that did not run are left out rather than shown empty.
    assert "Redis: WindowStore.apply" not in table
    assert "Profiled child" not in table


def test_markdown_says_when_the_target_is_missed() -> None:
    result = _fake_result()
    result["update_path"]["events_per_cpu_s"] = _s(50_000.0, 60_000.0, 70_000.0)
    assert "| target ≥ 100,000 events/s/core | NOT met |" in markdown(result)


@pytest.fixture(scope="module")
def profile(real_model) -> DriftProfile:
    m = real_model
    return DriftProfile.from_reference(m.reference, m.version, m.features, m.classes)


def test_baseline_statistics_agree_with_evaluate_on_one_window(real_dataset, profile) -> None:
    """PSI, JS, rates and mean shift to 1e-9; KS and Wasserstein within the sketch's documented error."""
    rng = np.random.default_rng(3)
    columns = [FEATURES.index(f) for f in profile.features]
    # 100 readings: a count on the null-threshold grid, so evaluate() bootstraps one count only.
    x = real_dataset.features()[rng.integers(len(real_dataset), size=100)][:, columns].astype(np.float64)
    x[:5, 0] = np.nan  # missing values
    x[5:9, 1] = profile.high[1] + 1.0  # out of the training range
    x[9:11, 2] = profile.low[2] - 1.0
    layout = DriftLayout(profile)
    metrics, _ = evaluate(profile, layout.totals(redis_fields(layout, x)), min_count=30)  # type: ignore[arg-type]
    raw = baseline_statistics(profile, x)

    def ours(name: str) -> np.ndarray:
        return np.array([metrics[f"{name}.{f}"] for f in profile.features])

    for name in ("psi", "js", "missing_rate", "out_of_range_rate", "mean_shift"):
        np.testing.assert_allclose(ours(name), raw[name], rtol=0, atol=1e-9, err_msg=name)
    assert raw["missing_rate"][0] == 0.05 and raw["out_of_range_rate"][1] == 0.04

    # KS from fine bins: never above the raw statistic, short of it by at most max_i min(p_i, q_i).
    fine = np.array(
        [
            np.bincount(
                np.searchsorted(profile.fine_edges[j], col[~np.isnan(col)], side="left"),
                minlength=profile.fine_edges.shape[1] + 1,
            )
            for j, col in enumerate(x.T)
        ]
    )
    p = profile.fine_reference / profile.fine_reference.sum(axis=1, keepdims=True)
    q = fine / fine.sum(axis=1, keepdims=True)
    bound = np.minimum(p, q).max(axis=1)
    assert np.all(ours("ks") <= raw["ks"] + 1e-12)
    assert np.all(raw["ks"] - ours("ks") <= bound + 1e-12)

    # Wasserstein from bin means: off by at most the window's mean distance to its bin means.
    for j, col in enumerate(x.T):
        col = col[~np.isnan(col)]
        bins = np.searchsorted(profile.fine_edges[j], col, side="left")
        means = np.bincount(bins, weights=col) / np.maximum(np.bincount(bins), 1)
        error = np.mean(np.abs(col - means[bins])) / profile.scale[j]
        assert abs(ours("wasserstein")[j] - raw["wasserstein"][j]) <= error + 1e-9, profile.features[j]
