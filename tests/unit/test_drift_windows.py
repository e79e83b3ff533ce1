"""Window counts, their evaluation, the change detectors and the drift handler: pure, on the real model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from rigwatch.drift import (
    ChangeDetectors,
    DriftLayout,
    DriftProfile,
    bin_counts,
    binned_sums,
    evaluate,
    ks_from_counts,
    psi,
)
from rigwatch.schemas import Codecs
from rigwatch.windowing import Pending, Update, Updates, pack_counts
from services.drift.handler import DriftHandler


@pytest.fixture(scope="module")
def profile(real_model) -> DriftProfile:
    return DriftProfile.from_reference(
        real_model.reference, real_model.version, real_model.features, real_model.classes
    )


@pytest.fixture(scope="module")
def features(real_dataset, real_model) -> np.ndarray:
    return real_dataset.features()


def _window(layout: DriftLayout, x: np.ndarray):
    ints, floats = layout.readings(x, [np.zeros(len(x), dtype=int)], 1)
    i, f = layout.fields(ints[0], floats[0])
    # As Redis returns a hash: bytes keys and values.
    return layout.totals({k.encode(): str(v).encode() for k, v in (i | f).items()})


def test_batch_counts_per_group_equal_direct_histograms(profile, features) -> None:
    layout = DriftLayout(profile)
    rng = np.random.default_rng(3)
    x = features[rng.integers(len(features), size=500)].astype(np.float64)
    x[rng.random(x.shape) < 0.02] = np.nan
    x[:5, 0] = profile.high[0] + 1.0
    groups = rng.integers(3, size=500)
    ints, floats = layout.readings(x, [groups], 3)
    s, f = layout.int_slots, layout.float_slots
    for g in range(3):
        rows = x[groups == g]
        assert ints[g, s["readings"]][0] == len(rows)
        np.testing.assert_array_equal(
            ints[g, s["coarse"]].reshape(16, -1), bin_counts(rows, profile.coarse_edges)
        )
        counts, sums = binned_sums(rows, profile.fine_edges)
        np.testing.assert_array_equal(ints[g, s["fine"]].reshape(16, -1), counts)
        np.testing.assert_allclose(floats[g, f["fine_sums"]].reshape(16, -1), sums, rtol=1e-12, atol=1e-9)
        np.testing.assert_array_equal(ints[g, s["missing"]], np.isnan(rows).sum(axis=0))
        np.testing.assert_array_equal(ints[g, s["above"]], (rows > profile.high).sum(axis=0))
        np.testing.assert_array_equal(ints[g, s["below"]], (rows < profile.low).sum(axis=0))
        np.testing.assert_allclose(floats[g, f["sums"]], np.nansum(rows, axis=0), rtol=1e-12)


def test_window_totals_are_the_sum_of_its_batches(profile, features) -> None:
    layout = DriftLayout(profile)
    x = features[:300].astype(np.float64)
    whole = _window(layout, x)
    merged: dict[str, float] = {}
    for part in (x[:120], x[120:]):
        ints, floats = layout.readings(part, [np.zeros(len(part), dtype=int)], 1)
        i, f = layout.fields(ints[0], floats[0])
        for key, value in (i | f).items():
            merged[key] = merged.get(key, 0) + value
    parts = layout.totals(merged)
    assert parts.readings == whole.readings == 300
    np.testing.assert_array_equal(parts.coarse, whole.coarse)
    np.testing.assert_array_equal(parts.fine, whole.fine)
    np.testing.assert_allclose(parts.sums, whole.sums, rtol=1e-12)


def test_prediction_counts_keep_other_versions_apart(profile) -> None:
    layout = DriftLayout(profile)
    ints, floats = layout.predictions(
        [0, 2, 2, 1], [0.99, 0.5, 1.0, 0.7], [True, True, True, False], [[0] * 4], 1
    )
    i, f = layout.fields(ints[0], floats[0])
    t = layout.totals(i | f)
    assert (t.predictions, t.other_version, t.classes.tolist()) == (3, 1, [1, 0, 2])
    assert t.confidence.sum() == 3 and t.confidence[-1] == 2
    assert t.confidence_sum == pytest.approx(2.49)


def test_stationary_real_windows_give_no_verdict_of_drift(profile, features) -> None:
    layout = DriftLayout(profile)
    rng = np.random.default_rng(11)
    flagged = 0
    for _ in range(20):
        metrics, detail = evaluate(
            profile, _window(layout, features[rng.integers(len(features), size=300)]), 30
        )
        assert metrics["drift_score"] < 1.0
        flagged += metrics["drifted_features"] > 0
        assert detail["verdict"] in ("ok", "drift")
    assert flagged <= 1


def test_tsb_temp_offset_is_the_top_drifting_feature(profile, features, real_model) -> None:
    layout = DriftLayout(profile)
    x = features[np.random.default_rng(5).integers(len(features), size=300)].astype(np.float64)
    x[:, real_model.features.index("tsb_temp")] += 2.0
    metrics, detail = evaluate(profile, _window(layout, x), 30)
    assert detail["verdict"] == "drift"
    assert detail["top_features"][0][0] == "tsb_temp"
    assert metrics["psi_ratio.tsb_temp"] > 5
    assert metrics["drifted_features"] >= 1


def test_window_statistics_match_the_exact_ones_on_the_raw_values(profile, features) -> None:
    layout = DriftLayout(profile)
    x = features[np.random.default_rng(2).integers(len(features), size=400)].astype(np.float64)
    metrics, _ = evaluate(profile, _window(layout, x), 30)
    for j, name in enumerate(profile.features):
        exact_psi = psi(profile.coarse_expected[j], bin_counts(x[:, j], profile.coarse_edges[j]))
        assert metrics[f"psi.{name}"] == pytest.approx(exact_psi, abs=1e-9)
        exact_ks = sps.ks_2samp(profile.sample[:, j], x[:, j]).statistic
        sketch_ks, _ = ks_from_counts(profile.fine_reference[j], bin_counts(x[:, j], profile.fine_edges[j]))
        assert metrics[f"ks.{name}"] == pytest.approx(sketch_ks, abs=1e-12)
        # The fine histogram has ~1 % of the reference per bin: KS is at most that far below the exact one.
        assert exact_ks - 0.02 <= metrics[f"ks.{name}"] <= exact_ks + 1e-12


def test_a_window_below_min_count_reports_counts_without_verdict(profile, features) -> None:
    metrics, detail = evaluate(profile, _window(DriftLayout(profile), features[:10]), 30)
    assert detail["verdict"] == "no_verdict"
    assert "drift" not in metrics and "drift_score" not in metrics
    assert metrics["readings"] == 10


def test_class_change_is_detected_in_the_window_where_it_happens() -> None:
    detectors = ChangeDetectors(["3", "20", "100"], ["t"])
    fired = []
    for window in range(14):
        classes = [100, 0, 0] if window < 7 else [0, 100, 0]
        fired.append(detectors.update(classes, [0, 100], [0.9, 1.0], [0.0]).changes)
    assert all(not changes for changes in fired[:7])
    assert {"class.3", "class.20"} <= set(fired[7])


def test_page_hinkley_ignores_noise_and_fires_on_a_sustained_mean_shift() -> None:
    rng = np.random.default_rng(0)
    detectors = ChangeDetectors(["3"], ["a", "b"])
    noise = [detectors.update([0], [0], [1.0], rng.normal(size=2)).changes for _ in range(300)]
    assert not any(noise)
    shifted = [detectors.update([0], [0], [1.0], [4.0, rng.normal()]).changes for _ in range(5)]
    first = next(i for i, changes in enumerate(shifted) if changes)
    assert first <= 3 and shifted[first] == ["mean.a"]


def test_handler_counts_each_reading_for_its_version_and_its_rig(profile, real_dataset) -> None:
    codecs = Codecs.load()
    handler = DriftHandler(profile, codecs.sensor_reading, codecs.prediction, size_ms=1000, min_count=1)
    readings = []
    for i, (rig, t) in enumerate([("a", 100), ("b", 900), ("a", 1500)]):
        record = {"event_id": f"e{i}", "rig_id": rig, "cycle": i, "event_time": t}
        record |= {
            name: float(v) for name, v in zip(profile.features, real_dataset.features()[i], strict=True)
        }
        readings.append(codecs.sensor_reading.encode(record | {"cool_eff_pct": None}))
    updates = handler.readings([*readings, b"not avro"], ["r/0", "r/1", "r/0", "r/1"])
    got = sorted((u.subject, u.start_ms, u.records) for u in updates.updates)
    version = profile.model_version
    assert got == [(version, 0, 2), (version, 1000, 1), ("rig:a", 0, 1), ("rig:a", 1000, 1), ("rig:b", 0, 1)]
    assert updates.max_event_ms == {"r/0": 1500, "r/1": 900}
    assert updates.undecodable == 1

    # The window's counts go to Redis as one packed item (no hash fields).
    (window,) = [u for u in updates.updates if (u.subject, u.start_ms) == (version, 0)]
    assert not window.ints and not window.floats and window.counts is not None
    packed = [pack_counts(*window.counts)]
    record = handler.window(version, 0, {}, late=4, detectors=handler.new_detectors(), items=packed)
    decoded = codecs.metric_window.decode(codecs.metric_window.encode(record))
    assert (decoded["kind"], decoded["count"], decoded["window_end"]) == ("drift", 2, 1000)
    assert decoded["metrics"]["late_records"] == 4
    assert json.loads(decoded["detail"])["model_version"] == version


def test_packed_counts_give_the_totals_and_statistics_of_the_hash_fields(profile, features) -> None:
    """Batches merged per checkpoint (Pending) and packed add up to what HINCRBY fields held."""
    layout = DriftLayout(profile)
    rng = np.random.default_rng(8)
    checkpoints: list[Pending] = []
    hash_: dict[str, float] = {}
    for k in range(9):
        if k % 3 == 0:
            checkpoints.append(Pending())
        x = features[rng.integers(len(features), size=150)].astype(np.float64)
        x[rng.random(x.shape) < 0.03] = np.nan
        ints, floats = layout.readings(x, [np.zeros(len(x), dtype=int)], 1)
        p_ints, p_floats = layout.predictions(
            rng.integers(0, 3, 60), rng.random(60), rng.random(60) < 0.9, [np.zeros(60, dtype=int)], 1
        )
        for i, f in ((ints[0], floats[0]), (p_ints[0], p_floats[0])):
            checkpoints[-1].add(Updates([Update("v", 0, 1, counts=(i, f))], {}), records=1)
            fields_i, fields_f = layout.fields(i, f)
            for name, value in (fields_i | fields_f).items():
                hash_[name] = hash_.get(name, 0) + value
    items = []
    for pending in checkpoints:
        (update,) = pending.updates()
        assert update.counts is not None
        items.append(pack_counts(*update.counts))
    from_fields = layout.totals({k.encode(): repr(v).encode() for k, v in hash_.items()})
    from_items = layout.totals({}, items)
    for name in ("coarse", "fine", "missing", "below", "above", "classes", "confidence"):
        np.testing.assert_array_equal(getattr(from_items, name), getattr(from_fields, name))
    for name in ("readings", "predictions", "other_version"):
        assert getattr(from_items, name) == getattr(from_fields, name)
    np.testing.assert_allclose(from_items.sums, from_fields.sums, rtol=1e-14)
    np.testing.assert_allclose(from_items.fine_sums, from_fields.fine_sums, rtol=1e-14, atol=1e-12)
    assert from_items.confidence_sum == pytest.approx(from_fields.confidence_sum, rel=1e-14)
    m_items, d_items = evaluate(profile, from_items, 30)
    m_fields, d_fields = evaluate(profile, from_fields, 30)
    assert m_items.keys() == m_fields.keys() and d_items["verdict"] == d_fields["verdict"]
    for name, value in m_fields.items():
        assert m_items[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    # A window with both (fields of an older worker, items of a newer one) adds them.
    half = layout.totals({k.encode(): repr(v).encode() for k, v in hash_.items()}, items)
    np.testing.assert_array_equal(half.fine, 2 * from_fields.fine)
    # An item of another layout is refused, not misread.
    with pytest.raises(ValueError, match="another layout"):
        layout.totals({}, [pack_counts(np.ones(3, np.int64), np.ones(2))])
