"""The calibrated simulator and its calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rigwatch.data import CLASSES, SENSOR_COLUMNS, load_calibration, simulate
from rigwatch.data.calibrate import calibrate, main
from rigwatch.exceptions import DataError


def test_shapes_dtypes_and_finite_values():
    ds = simulate(500, seed=3)
    assert ds.sensors.shape == (500, 17)
    assert ds.labels.shape == (500, 5)
    assert ds.sensors.dtype == np.float64 and ds.labels.dtype == np.int64
    assert np.isfinite(ds.sensors).all()
    assert ds.cycle.tolist() == list(range(500))
    assert ds.source == "simulator(seed=3, n=500, order=run)"


def test_same_seed_same_rows_other_seed_other_rows():
    a, b, c = simulate(300, seed=7), simulate(300, seed=7), simulate(300, seed=8)
    assert a.sha256() == b.sha256()
    assert a.sha256() != c.sha256()


def test_default_size_has_the_real_class_counts_in_run_order():
    ds = simulate()
    y = ds.cool_cond
    assert len(ds) == 2205
    assert [int((y == c).sum()) for c in CLASSES] == [732, 732, 741]
    # Blocks 3, then 20, then 100, like the rig's run order.
    assert (np.diff(np.searchsorted(CLASSES, y)) >= 0).all()


def test_iid_order_shuffles_the_same_class_mix():
    run, iid = simulate(900, seed=1), simulate(900, seed=1, order="iid")
    assert np.bincount(iid.cool_cond).tolist() == np.bincount(run.cool_cond).tolist()
    assert (np.diff(np.searchsorted(CLASSES, iid.cool_cond)) < 0).any()


def test_class_counts_always_add_up_to_n():
    for n in (0, 1, 2, 3, 10, 101):
        assert len(simulate(n)) == n


def test_physically_non_negative_sensors_are_never_negative():
    ds = simulate(3000, seed=2)
    non_negative = [j for j, c in enumerate(SENSOR_COLUMNS) if not c.startswith("ts")]
    assert (ds.sensors[:, non_negative] >= 0).all()


def test_per_class_means_match_the_calibration():
    calibration = load_calibration()
    ds = simulate(9000, seed=11)
    for params in calibration["per_class"]:
        rows = ds.cool_cond == params["cool_cond_y"]
        mean = np.asarray(params["mean"])
        sd = np.sqrt(np.diag(np.asarray(params["cov"])))
        error = np.abs(ds.sensors[rows].mean(axis=0) - mean) / sd
        # 3000 rows a class: the standard error is 0.018 sd; allow 0.1 sd. psd_bar
        # is left out: it sits at 0 in classes 3 and 20, so clipping shifts its mean.
        unclipped = np.array([c != "psd_bar" for c in SENSOR_COLUMNS])
        assert (error[unclipped] < 0.1).all(), (params["cool_cond_y"], error)


def test_other_labels_follow_the_calibrated_combinations():
    calibration = load_calibration()
    ds = simulate(3000, seed=5)
    for params in calibration["per_class"]:
        allowed = {tuple(c) for c in params["label_combos"]}
        rows = ds.labels[ds.cool_cond == params["cool_cond_y"], 1:]
        assert {tuple(r) for r in rows.tolist()} <= allowed


def test_bad_order_is_rejected():
    with pytest.raises(DataError, match=r"order='sorted', expected 'run' or 'iid'"):
        simulate(10, order="sorted")


def test_packaged_calibration_is_what_calibrate_computes_on_the_real_data(real_dataset):
    fresh = calibrate(real_dataset)
    packaged = load_calibration()
    assert packaged["data_sha256"] == real_dataset.sha256()
    for new, old in zip(fresh["per_class"], packaged["per_class"], strict=True):
        np.testing.assert_allclose(new["mean"], old["mean"], rtol=1e-12)
        np.testing.assert_allclose(new["cov"], old["cov"], rtol=1e-9, atol=1e-12)
        assert new["label_counts"] == old["label_counts"]


def test_calibrate_cli_writes_a_loadable_file(hydraulic_dir, tmp_path, capsys):
    out = tmp_path / "calibration.json"
    assert main([str(hydraulic_dir / "hydraulic_cycles.csv"), "--out", str(out)]) == 0
    assert "calibrated on 2205 rows" in capsys.readouterr().out
    calibration = load_calibration(out)
    assert calibration["data_source"] == "csv:hydraulic_cycles.csv"
    assert json.loads(out.read_text())["sensor_columns"] == list(SENSOR_COLUMNS)
    assert len(simulate(30, calibration=calibration)) == 30


def test_calibration_for_other_columns_is_rejected(tmp_path):
    calibration = load_calibration()
    calibration["sensor_columns"] = calibration["sensor_columns"][:-1]
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(calibration))
    with pytest.raises(DataError, match="sensor_columns"):
        load_calibration(path)


def test_a_model_trained_on_real_data_recognises_simulated_cycles(real_model):
    ds = simulate(3000, seed=21, order="iid")
    proba = real_model.predict_proba(ds.features())
    predicted = np.asarray(CLASSES)[proba.argmax(axis=1)]
    accuracy = float((predicted == ds.cool_cond).mean())
    assert accuracy >= 0.9, accuracy
